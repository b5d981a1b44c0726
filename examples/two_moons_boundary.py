"""Two moons: a small MLP learns a curved decision boundary (the TensorFlow Playground picture).

The data is scikit-learn's generated two-moons set with noise. The plot of the
learnt regions with the points on top is saved as a PNG (to $FNN_EXAMPLE_OUT,
default: the current directory).

Run: python examples/two_moons_boundary.py   (prints `test accuracy: X` last)
"""

import os
from pathlib import Path

import numpy as np
from sklearn.datasets import make_moons

import fnn
from fnn import plot

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the data split stays fixed
x, y = make_moons(n_samples=1000, noise=0.2, random_state=0)
x_train, x_test, y_train, y_test = fnn.data.train_test_split(
    x.astype(np.float32), y.astype(np.int32), test_size=0.3, seed=0
)

model = fnn.Sequential([fnn.Dense(16, "tanh"), fnn.Dense(16, "tanh"), fnn.Dense(1)])
loss = "binary_crossentropy"  # from logits
history = fnn.fit(
    model, x_train, y_train[:, None].astype(np.float32), loss=loss, optimizer="adam",
    epochs=100, batch_size=32, seed=SEED, verbose=0,
)  # fmt: skip

out = Path(os.environ.get("FNN_EXAMPLE_OUT", ".")) / "two_moons_boundary.png"
plot.decision_boundary(model, history.params, history.state, x_test, y_test, threshold=0.0, path=out)
print(f"decision boundary: {out}")

logits = fnn.predict(model, history.params, history.state, x_test)
accuracy = float(fnn.metrics.binary_accuracy(y_test[:, None].astype(np.float32), logits, threshold=0.0))
print(f"test accuracy: {accuracy:.3f}")
