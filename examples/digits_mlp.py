"""Digits: an MLP on scikit-learn's bundled 8x8 digit images, trained with fnn.fit.

validation_split holds out the last 15% of the training data, EarlyStopping
watches the validation loss and restores the best weights, and a progress bar
shows each epoch.

Run: python examples/digits_mlp.py   (prints `test accuracy: X` last)
"""

import os

import numpy as np
from sklearn.datasets import load_digits

import fnn

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the data split stays fixed
images, labels = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = fnn.data.train_test_split(
    (images / 16.0).astype(np.float32), labels.astype(np.int32), test_size=0.2, seed=0, stratify=labels
)

model = fnn.Sequential([fnn.Dense(128, "relu"), fnn.Dropout(0.2), fnn.Dense(64, "relu"), fnn.Dense(10)])
print(fnn.summary(model, (64,)))
loss = "sparse_categorical_crossentropy"  # from logits
history = fnn.fit(
    model, x_train, y_train,
    loss=loss, optimizer="adam", metrics=["accuracy"],
    epochs=60, batch_size=32, validation_split=0.15, seed=SEED,
    callbacks=[fnn.EarlyStopping("val_loss", patience=5, restore_best_weights=True)],
)  # fmt: skip
print(history.stop_reason or f"trained {len(history.epochs)} epochs")
test = fnn.evaluate(model, history.params, history.state, x_test, y_test, loss=loss, metrics=["accuracy"])
print(f"test accuracy: {test['accuracy']:.3f}")
