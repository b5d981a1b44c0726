"""Breast cancer: binary classification with a sigmoid output and binary cross-entropy.

The model ends in a sigmoid, so the loss takes probabilities
(``from_logits=False``) and accuracy thresholds them at 0.5.

Run: python examples/breast_cancer.py   (prints `test accuracy: X` last)
"""

import os

import numpy as np
from sklearn.datasets import load_breast_cancer

import fnn

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the data split stays fixed
features, labels = load_breast_cancer(return_X_y=True)
x_train, x_test, y_train, y_test = fnn.data.train_test_split(
    features.astype(np.float32), labels.astype(np.float32)[:, None], test_size=0.2, seed=0, stratify=labels
)
mean, std = x_train.mean(axis=0), x_train.std(axis=0)
x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

model = fnn.Sequential([fnn.Dense(16, "relu"), fnn.Dense(1, "sigmoid")])
loss = fnn.losses.get("binary_crossentropy", from_logits=False)
history = fnn.fit(
    model, x_train, y_train, loss=loss, metrics=["binary_accuracy"],
    epochs=40, batch_size=32, validation_split=0.15, seed=SEED, verbose=2,
)  # fmt: skip
test = fnn.evaluate(
    model,
    history.params,
    history.state,
    x_test,
    y_test,
    loss=loss,
    metrics=["binary_accuracy", "precision", "recall"],
)
print(f"test precision: {test['precision']:.3f}, recall: {test['recall']:.3f}")
print(f"test accuracy: {test['binary_accuracy']:.3f}")
