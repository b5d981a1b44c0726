"""Hyper-parameter search with Optuna: a digits MLP's rate, width and dropout, with pruning.

Each trial trains with fnn.fit on the training split, keeping 20% for
validation; fnn.tracking.OptunaPruning reports the validation loss after every
epoch, and Optuna's median pruner stops the trials that trail the others at
the same epoch. The best configuration is then trained on the whole training
split and scored once on the test split, which the search never saw.

Run: python examples/optuna_search.py   (prints `test accuracy: X` last; needs `pip install optuna`)
"""

import os

import numpy as np
import optuna
from sklearn.datasets import load_digits

import fnn

TRIALS = int(os.environ.get("FNN_EXAMPLE_TRIALS", 16))
EPOCHS = int(os.environ.get("FNN_EXAMPLE_EPOCHS", 15))
SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the sampler's and the training's seed

images, labels = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = fnn.data.train_test_split(
    (images / 16.0).astype(np.float32), labels.astype(np.int32), test_size=0.2, seed=0, stratify=labels
)
LOSS = "sparse_categorical_crossentropy"


def mlp(units: int, dropout: float) -> fnn.Layer:
    return fnn.Sequential([fnn.Dense(units, "relu"), fnn.Dropout(dropout), fnn.Dense(10)])


def objective(trial: optuna.Trial) -> float:
    rate = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
    # The rate lives in the optimiser's state (fnn.optimizers.get), not in the compiled program: trials
    # that differ only in it run the same program (from the compilation cache, where one is enabled).
    units = trial.suggest_categorical("units", [32, 128])
    dropout = trial.suggest_categorical("dropout", [0.0, 0.3])
    history = fnn.fit(
        mlp(units, dropout), x_train, y_train, loss=LOSS, optimizer=fnn.optimizers.get("adam", learning_rate=rate),
        metrics=["accuracy"], epochs=EPOCHS, batch_size=32, validation_split=0.2, seed=SEED, verbose=0,
        callbacks=[fnn.tracking.OptunaPruning(trial, monitor="val_loss")],
    )  # fmt: skip
    return min(history.history["val_loss"])


optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(
    direction="minimize",
    sampler=optuna.samplers.TPESampler(seed=SEED),
    pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=3),
)
study.optimize(objective, n_trials=TRIALS)

print(
    f"{'trial':>5}  {'state':<8} {'learning rate':>13} {'units':>5} {'dropout':>7} {'epochs':>6} {'val loss':>8}"
)
for t in study.trials:
    value = "-" if t.value is None else f"{t.value:.4f}"
    print(
        f"{t.number:>5}  {t.state.name.lower():<8} {t.params['learning_rate']:>13.2e} {t.params['units']:>5} "
        f"{t.params['dropout']:>7.1f} {len(t.intermediate_values):>6} {value:>8}"
    )
pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
print(f"{pruned} of {len(study.trials)} trials pruned; best: {study.best_params}")

best = study.best_params
history = fnn.fit(
    mlp(best["units"], best["dropout"]), x_train, y_train, loss=LOSS, metrics=["accuracy"], epochs=EPOCHS,
    optimizer=fnn.optimizers.get("adam", learning_rate=best["learning_rate"]), batch_size=32, seed=SEED, verbose=0,
)  # fmt: skip
test = fnn.evaluate(mlp(best["units"], best["dropout"]), history.params, history.state, x_test, y_test, loss=LOSS,
                    metrics=["accuracy"])  # fmt: skip
print(f"test accuracy: {test['accuracy']:.3f}")
