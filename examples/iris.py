"""Iris: a small classifier on scikit-learn's bundled iris data.

Stratified train/dev/test split, standardised features, a two-layer MLP trained
with Adam by a jit-compiled fnn train step; the dev set picks the best epoch.

Run: python examples/iris.py   (prints `test accuracy: X` last)
"""

import os

import jax
import numpy as np
from sklearn.datasets import load_iris

import fnn

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the data split stays fixed
EPOCHS = 300

features, labels = load_iris(return_X_y=True)
x_train, x_dev, x_test, y_train, y_dev, y_test = fnn.data.train_dev_test_split(
    features.astype(np.float32), labels.astype(np.int32),
    dev_size=0.2, test_size=0.2, seed=0, stratify=labels,
)  # fmt: skip
mean, std = x_train.mean(axis=0), x_train.std(axis=0)
x_train, x_dev, x_test = ((x - mean) / std for x in (x_train, x_dev, x_test))

model = fnn.Sequential([fnn.Dense(16, "relu"), fnn.Dropout(0.1), fnn.Dense(3)])
optimizer = fnn.optimizers.get("adam", learning_rate=0.01)
loss = "sparse_categorical_crossentropy"  # fnn's cross-entropies take logits by default
train_step = jax.jit(fnn.make_train_step(model, loss, optimizer, ["accuracy"]))
eval_step = jax.jit(fnn.make_eval_step(model, loss, ["accuracy"]))

key = jax.random.key(SEED)
params, state = model.init(key, x_train.shape[1:])
opt_state = optimizer.init(params)
best = (-1.0, params, state)
for epoch in range(EPOCHS):  # full-batch training: 90 examples
    step_key = jax.random.fold_in(key, epoch)
    params, state, opt_state, logs = train_step(params, state, opt_state, (x_train, y_train), step_key)
    dev_accuracy = float(eval_step(params, state, (x_dev, y_dev))["accuracy"])
    if dev_accuracy > best[0]:
        best = (dev_accuracy, params, state)
    if epoch % 50 == 0 or epoch == EPOCHS - 1:
        print(f"epoch {epoch:3d}  loss {float(logs['loss']):.4f}  dev accuracy {dev_accuracy:.3f}")

dev_accuracy, params, state = best
test_logs = eval_step(params, state, (x_test, y_test))
print(f"best dev accuracy: {dev_accuracy:.3f}")
print(f"test accuracy: {float(test_logs['accuracy']):.3f}")
