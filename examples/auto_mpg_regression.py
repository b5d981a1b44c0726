"""Auto MPG: TensorFlow's "Basic regression: Predict fuel efficiency" tutorial, end to end in fnn.

https://www.tensorflow.org/tutorials/keras/regression, step by step: the Auto MPG
data (406 cars, read offline from vega_datasets' bundled cars.json), rows with
missing values dropped, the Origin column one-hot encoded, the tutorial's own
80/20 train/test split (the same 314 and 78 cars), a Normalization layer adapted
on the training features, then three models trained on mean absolute error with
a 20% validation split:

- a linear model on Horsepower alone (Adam, learning rate 0.1),
- a linear model on all nine features (Adam, learning rate 0.1),
- a DNN, 64-64-1 with relu, on all features (Adam, learning rate 0.001).

Plots of the loss curves and of the DNN's test predictions against the true
values (with its error histogram) are saved as PNGs in $FNN_EXAMPLE_OUT
(default: the current directory; drawn on matplotlib Figures, rendered by Agg,
no pyplot). The TensorFlow tutorial's DNN reaches a test MAE of about 1.6-1.8 MPG
(its linear models about 3.65 and 2.5). Here, over training seeds 0-4: DNN
1.711-1.825, linear 2.426-2.509, horsepower linear 3.644-3.672.

FNN_EXAMPLE_SEED sets the training seed (the split stays fixed), FNN_EXAMPLE_EPOCHS
the epochs (default 100, as in the tutorial).

Run: python examples/auto_mpg_regression.py   (prints `test MAE: X` last, in MPG)
"""

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import fnn
from fnn import plot
from fnn.preprocessing import StringLookup

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the data split stays fixed
EPOCHS = int(os.environ.get("FNN_EXAMPLE_EPOCHS", 100))
OUT = Path(os.environ.get("FNN_EXAMPLE_OUT", "."))

# The data: Keras's `pd.read_csv(url, na_values="?")`, then `dataset.dropna()`.
cars = fnn.datasets.auto_mpg()
numeric = ["Cylinders", "Displacement", "Horsepower", "Weight_in_lbs", "Acceleration"]
table = np.stack([cars[c] for c in numeric] + [cars["Year"].astype(np.float32)], axis=1)
mpg = cars["Miles_per_Gallon"]
complete = ~np.isnan(table).any(axis=1) & ~np.isnan(mpg)
print(f"{len(mpg)} cars, {complete.sum()} without missing values")

# `pd.get_dummies(dataset, columns=["Origin"])`: one float column per origin.
origins = ["USA", "Europe", "Japan"]
one_hot = StringLookup(vocabulary=origins, num_oov_indices=0, output_mode="one_hot")
features = np.concatenate([table[complete], one_hot(cars["Origin"][complete])], axis=1)
names = [*numeric, "Year", *origins]
labels = mpg[complete][:, None]
# The tutorial's split, `dataset.sample(frac=0.8, random_state=0)`, drawn as pandas draws it (with a
# local RandomState: no global state). These 392 rows are the tutorial's UCI rows in the same order,
# so both train and test on the same cars. The sampled order is kept: validation_split takes its
# 20% from the end, as Keras's does.
train_rows = np.random.RandomState(0).choice(len(labels), round(0.8 * len(labels)), replace=False)
test_rows = np.setdiff1d(np.arange(len(labels)), train_rows)
x_train, y_train = features[train_rows], labels[train_rows]
x_test, y_test = features[test_rows], labels[test_rows]
horsepower = names.index("Horsepower")
hp_train, hp_test = x_train[:, [horsepower]], x_test[:, [horsepower]]

# `normalizer.adapt(train_features)`: the statistics become the layer's state.
normalizer = fnn.Normalization(**fnn.normalization_state(x_train))
hp_normalizer = fnn.Normalization(**fnn.normalization_state(hp_train))


def train(model, x, learning_rate):
    """`model.compile(Adam(learning_rate), loss="mean_absolute_error"); model.fit(..., validation_split=0.2)`."""
    return fnn.fit(
        model, x, y_train,
        loss="mean_absolute_error", optimizer=fnn.optimizers.get("adam", learning_rate=learning_rate),
        epochs=EPOCHS, batch_size=32, validation_split=0.2, seed=SEED, verbose=0,
    )  # fmt: skip


def mae_on_test(model, history, x):
    return fnn.evaluate(model, history.params, history.state, x, y_test, loss="mean_absolute_error")["loss"]


models = {
    "horsepower linear": (fnn.Sequential([hp_normalizer, fnn.Dense(1)]), hp_train, hp_test, 0.1),
    "linear": (fnn.Sequential([normalizer, fnn.Dense(1)]), x_train, x_test, 0.1),
    "dnn": (
        fnn.Sequential([normalizer, fnn.Dense(64, "relu"), fnn.Dense(64, "relu"), fnn.Dense(1)]),
        x_train, x_test, 0.001,
    ),
}  # fmt: skip
histories, results = {}, {}
for label, (model, x_fit, x_eval, learning_rate) in models.items():
    histories[label] = train(model, x_fit, learning_rate)
    results[label] = mae_on_test(model, histories[label], x_eval)

# The tutorial's plot_loss, one panel per model.
figure = Figure(figsize=(13, 3.5))
for i, (label, history) in enumerate(histories.items()):
    axes = figure.add_subplot(1, len(histories), i + 1)
    axes.plot(history.epochs, history.history["loss"], label="loss")
    axes.plot(history.epochs, history.history["val_loss"], label="val_loss")
    axes.set(title=label, xlabel="Epoch", ylabel="Error [MPG]", ylim=(0, 10))
    axes.legend()
figure.tight_layout()
loss_png = plot.save(figure, OUT / "auto_mpg_loss.png")  # written atomically

# The DNN's test predictions against the true values, and its error distribution.
dnn, _, _, _ = models["dnn"]
predicted = fnn.predict(dnn, histories["dnn"].params, histories["dnn"].state, x_test)[:, 0]
truth = y_test[:, 0]
figure = Figure(figsize=(9, 4))
axes = figure.add_subplot(1, 2, 1)
axes.scatter(truth, predicted, s=12)
axes.plot([0, 50], [0, 50], color="gray", linewidth=1)
axes.set(xlabel="True Values [MPG]", ylabel="Predictions [MPG]", xlim=(0, 50), ylim=(0, 50), aspect="equal")
axes = figure.add_subplot(1, 2, 2)
axes.hist(np.asarray(predicted) - truth, bins=25)
axes.set(xlabel="Prediction Error [MPG]", ylabel="Count")
figure.tight_layout()
predictions_png = plot.save(figure, OUT / "auto_mpg_predictions.png")
print(f"plots: {loss_png}, {predictions_png}")

print("Mean absolute error [MPG] on the test set:")
for label, mae in results.items():
    print(f"  {label:<18} {mae:6.3f}")
print(f"test MAE: {results['dnn']:.3f}")
