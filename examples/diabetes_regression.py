"""Diabetes: regression on scikit-learn's bundled diabetes data with fnn.fit.

Standardised features and targets, an MLP trained on MSE with an MAE metric;
the R2 score is computed on the held-out test set in the original units. (On
this split, scikit-learn's LinearRegression scores R2 0.43: the data is noisy.)

Run: python examples/diabetes_regression.py   (prints `test R2: X` last)
"""

import os

import numpy as np
from sklearn.datasets import load_diabetes

import fnn

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the data split stays fixed
features, target = load_diabetes(return_X_y=True)
x_train, x_test, y_train, y_test = fnn.data.train_test_split(
    features.astype(np.float32), target.astype(np.float32)[:, None], test_size=0.2, seed=1
)
x_mean, x_std = x_train.mean(axis=0), x_train.std(axis=0)
y_mean, y_std = y_train.mean(), y_train.std()
x_train, x_test = (x_train - x_mean) / x_std, (x_test - x_mean) / x_std

model = fnn.Sequential([fnn.Dense(32, "relu"), fnn.Dropout(0.3), fnn.Dense(1)])
history = fnn.fit(
    model, x_train, (y_train - y_mean) / y_std,
    loss="mse", optimizer=fnn.optimizers.get("adam", learning_rate=1e-3), metrics=["mae"],
    epochs=200, batch_size=32, validation_split=0.15, seed=SEED, verbose=0,
    callbacks=[fnn.EarlyStopping("val_loss", patience=20, restore_best_weights=True)],
)  # fmt: skip
print(f"epochs: {len(history.epochs)}, final val_mae (standardised): {history.history['val_mae'][-1]:.3f}")
prediction = fnn.predict(model, history.params, history.state, x_test) * y_std + y_mean
print(f"test MAE: {float(fnn.metrics.mean_absolute_error(y_test, prediction)):.1f}")
print(f"test R2: {float(fnn.metrics.r2_score(y_test, prediction)):.3f}")
