"""Transfer learning from a PyTorch checkpoint: LeNet-5 weights in, a new head on digits 5-9.

1. The "published weights": a LeNet-5 trained on the digits 0-4 and written as a
   PyTorch ``state_dict`` in safetensors (what ``safetensors.torch.save_file(
   net.state_dict(), ...)`` writes for the usual PyTorch LeNet-5; made here with
   ``fnn.interop.save_torch``, since nothing is downloaded).
2. ``fnn.models.lenet5(num_classes=5)`` for the digits 5-9 loads that file with
   ``fnn.interop.load_torch``: every layer but the head (``keep="fc3"``), the
   old head's tensors left out on purpose (``ignore="fc3"``); the report says so.
3. Train only the head on 5 images per class, the rest frozen
   (``fnn.optimizers.freeze``), then fine-tune everything at a low rate.
4. Compare with the same model trained from scratch on the same 25 images.

With seeds 0-2 the transferred, fine-tuned model scores 0.88-0.90 on the
digits 5-9 and the one from scratch 0.86-0.88.

The weights file goes to $FNN_EXAMPLE_OUT (default: a temporary directory).

Run: python examples/pretrained_transfer.py   (prints `test accuracy: X (from scratch: Y)` last)
"""

import os
import tempfile
from pathlib import Path

import jax
import numpy as np
from sklearn.datasets import load_digits

import fnn
from fnn import interop, models

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the data split stays fixed
EPOCHS = int(os.environ.get("FNN_EXAMPLE_EPOCHS", 30))  # of the source task; the others scale with it
HEAD, TUNE = 2 * EPOCHS, max(1, 2 * EPOCHS // 3)  # epochs on the frozen base, then of fine-tuning
SHAPE = (32, 32, 1)  # LeNet-5's input
PER_CLASS = 5  # training images per class of the target task
images, labels = load_digits(return_X_y=True)
images = np.kron((images / 16.0).reshape(-1, 8, 8, 1), np.ones((1, 4, 4, 1))).astype(
    np.float32
)  # 8x8 -> 32x32
labels = labels.astype(np.int32)
first, second = labels < 5, labels >= 5

rng = np.random.default_rng(0)
few = np.concatenate(
    [rng.choice(np.flatnonzero(labels == c), PER_CLASS, replace=False) for c in range(5, 10)]
)
rest = np.setdiff1d(np.flatnonzero(second), few)
x_few, y_few, x_test, y_test = images[few], labels[few] - 5, images[rest], labels[rest] - 5
loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
options = dict(loss=loss, metrics=metrics, verbose=0, seed=SEED)

# 1. The source model, trained with random shifts of up to a pixel (for more general features), and its
#    weights file in PyTorch's names and layouts.
source = models.lenet5(num_classes=5)
augmented = fnn.Sequential([fnn.RandomTranslation(0.125, 0.125), source])
trained = fnn.fit(augmented, images[first], labels[first], epochs=EPOCHS, batch_size=64, **options)
out = Path(os.environ.get("FNN_EXAMPLE_OUT") or tempfile.mkdtemp())
weights = out / "lenet5_digits_0_4.safetensors"
interop.save_torch(weights, source, SHAPE, trained.params["lenet5"], trained.state["lenet5"])
print(f"digits 0-4: train accuracy {trained.history['accuracy'][-1]:.3f}; weights in {weights}")
print(sorted(interop.read_safetensors(weights)))  # conv1.weight, ..., fc3.bias: the PyTorch module's names

# 2. The target model: the file's layers, a fresh head.
model = models.lenet5(num_classes=5)
fresh, state = model.init(jax.random.key(SEED + 1), SHAPE)
params, state, report = interop.load_torch(
    model, SHAPE, weights, params=fresh, state=state, keep="fc3", ignore="fc3"
)
print(report)
base = ["conv1", "conv2", "fc1", "fc2"]
print(fnn.summary(model, SHAPE, frozen=base))


def test_accuracy(history):
    scores = fnn.evaluate(model, history.params, history.state, x_test, y_test, loss=loss, metrics=metrics)
    return scores["accuracy"]


# 3. Train the head on the frozen base, then fine-tune everything gently.
head_only = fnn.fit(
    model, x_few, y_few, epochs=HEAD, batch_size=10, params=params, state=state,
    optimizer=fnn.optimizers.freeze(fnn.optimizers.get("adam", learning_rate=3e-3), base), **options,
)  # fmt: skip
print(f"head on the frozen base: test accuracy {test_accuracy(head_only):.3f}")
tuned = fnn.fit(
    model, x_few, y_few, epochs=TUNE, batch_size=10, params=head_only.params, state=head_only.state,
    optimizer=fnn.optimizers.get("adam", learning_rate=1e-3), **options,
)  # fmt: skip

# 4. The same model from scratch on the same 25 images (as many epochs as step 3 together).
scratch = fnn.fit(model, x_few, y_few, epochs=HEAD + TUNE, batch_size=10, **options)
print(f"test accuracy: {test_accuracy(tuned):.3f} (from scratch: {test_accuracy(scratch):.3f})")
