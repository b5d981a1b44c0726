"""TensorBoard without TensorFlow: log a digits CNN's training, its graph and its filters.

Writes the event files to $FNN_EXAMPLE_OUT/tensorboard (default: ./runs) and
the model's dataflow graph as Graphviz DOT beside them, then prints the
command that opens TensorBoard on them.

Run: python examples/tensorboard_demo.py   (prints `test accuracy: X` last)
"""

import os
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

import fnn

images, labels = load_digits(return_X_y=True)
images = (images / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
x_train, x_test, y_train, y_test = fnn.data.train_test_split(
    images, labels.astype(np.int32), test_size=0.2, seed=0, stratify=labels
)

model = fnn.Sequential(
    [
        fnn.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        fnn.MaxPool2D(2, name="pool1"),
        fnn.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
        fnn.MaxPool2D(2, name="pool2"),
        fnn.Flatten(),
        fnn.Dense(64, "relu", name="hidden"),
        fnn.Dense(10, name="logits"),
    ]
)
out = Path(os.environ.get("FNN_EXAMPLE_OUT") or "runs")
logdir = out / "tensorboard"
epochs = int(os.environ.get("FNN_EXAMPLE_EPOCHS", 15))  # the tests run fewer
hparams = {"optimizer": "adam", "batch_size": 64, "epochs": epochs}
board = fnn.TensorBoard(logdir, histogram_freq=5, update_freq=10, write_images=True, hparams=hparams)
loss = "sparse_categorical_crossentropy"
history = fnn.fit(
    model, x_train, y_train, loss=loss, optimizer="adam", metrics=["accuracy"], epochs=epochs,
    batch_size=64, validation_split=0.1, seed=0, verbose=0, callbacks=[board],
)  # fmt: skip

graph = fnn.graph(model, (8, 8, 1))
print(graph.collapse().to_text())
graph.to_dot(out / "digits_cnn_graph.dot")  # render with: dot -Tsvg -O digits_cnn_graph.dot
print(f"event files: {logdir}\nview them with: tensorboard --logdir {logdir}")
test = fnn.evaluate(model, history.params, history.state, x_test, y_test, loss=loss, metrics=["accuracy"])
print(f"test accuracy: {test['accuracy']:.3f}")
