"""Transfer learning: carry a CNN's features from digits 0-4 to digits 5-9 learnt from 50 images.

1. Train a CNN on the digits 0-4 and save it as a checkpoint.
2. Build a new model for the digits 5-9 with the same feature extractor and a
   new head; copy the trained features in from the checkpoint
   (``fnn.checkpoint.transfer`` reports what was loaded and what is new).
3. Train only the head on 10 images per class, the features frozen
   (``fnn.optimizers.freeze``), then fine-tune everything at a low rate.
4. Compare with the same model trained from scratch on the same 50 images.

The checkpoint goes to $FNN_EXAMPLE_OUT (default: a temporary directory).

On these 8x8 digits a small CNN learns well even from 50 images, so the gain
is modest: with seeds 0-3 the transferred, fine-tuned model scores 0.95-0.96
and the one from scratch 0.94-0.955.

Run: python examples/transfer_learning.py   (prints `test accuracy: X (from scratch: Y)` last)
"""

import os
import tempfile
from pathlib import Path

import jax
import numpy as np
from sklearn.datasets import load_digits

import fnn

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the data split stays fixed
EPOCHS = int(os.environ.get("FNN_EXAMPLE_EPOCHS", 30))  # of the source task; the others scale with it
HEAD, TUNE = 2 * EPOCHS, max(1, 2 * EPOCHS // 3)  # epochs on the frozen features, then of fine-tuning
images, labels = load_digits(return_X_y=True)
images = (images / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
labels = labels.astype(np.int32)
first, second = labels < 5, labels >= 5

# The 5-9 task: 10 training images per class, the rest for testing.
rng = np.random.default_rng(0)
few = np.concatenate([rng.choice(np.flatnonzero(labels == c), 10, replace=False) for c in range(5, 10)])
rest = np.setdiff1d(np.flatnonzero(second), few)
x_few, y_few = images[few], labels[few] - 5
x_test, y_test = images[rest], labels[rest] - 5


def features():
    return fnn.Sequential(
        [fnn.Conv2D(32, 3, padding="same", activation="relu"), fnn.MaxPool2D(2),
         fnn.Conv2D(64, 3, padding="same", activation="relu"), fnn.MaxPool2D(2), fnn.Flatten()],
        name="features",
    )  # fmt: skip


def classifier():
    return fnn.Sequential([features(), fnn.Dense(64, "relu", name="hidden"), fnn.Dense(5, name="head")])


loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
options = dict(loss=loss, metrics=metrics, verbose=0, seed=SEED)

# 1. The source task, with random shifts of up to a pixel (in training only) for more general features.
source = fnn.Sequential([fnn.RandomTranslation(0.125, 0.125), classifier()])
trained = fnn.fit(source, images[first], labels[first], epochs=EPOCHS, batch_size=64, **options)
out = Path(os.environ.get("FNN_EXAMPLE_OUT") or tempfile.mkdtemp())
saved = fnn.checkpoint.save(out / "digits_0_4", {"params": trained.params}, overwrite=True)
print(f"digits 0-4: train accuracy {trained.history['accuracy'][-1]:.3f}; saved to {saved}")

# 2. The target model: the trained features, a fresh head.
model = classifier()
fresh, state = model.init(jax.random.key(SEED + 1), (8, 8, 1))
# The source's classifier sits under "sequential" (after the augmentation layer).
params, report = fnn.checkpoint.transfer(fresh, saved, include="features", source_prefix="params/sequential")
print(report)
print(fnn.summary(model, (8, 8, 1), frozen="features"))


def test_accuracy(history):
    return fnn.evaluate(model, history.params, history.state, x_test, y_test, loss=loss, metrics=metrics)[
        "accuracy"
    ]


# 3. Train the head on the frozen features, then fine-tune everything gently.
head_only = fnn.fit(
    model, x_few, y_few, epochs=HEAD, batch_size=10, params=params, state=state,
    optimizer=fnn.optimizers.freeze(fnn.optimizers.get("adam", learning_rate=3e-3), "features"), **options,
)  # fmt: skip
unchanged = jax.tree.leaves(jax.tree.map(np.array_equal, head_only.params["features"], params["features"]))
print(f"frozen features unchanged: {all(unchanged)}; test accuracy {test_accuracy(head_only):.3f}")
tuned = fnn.fit(
    model, x_few, y_few, epochs=TUNE, batch_size=10, params=head_only.params, state=head_only.state,
    optimizer=fnn.optimizers.get("adam", learning_rate=1e-3), **options,
)  # fmt: skip
print(f"fine-tuned: test accuracy {test_accuracy(tuned):.3f}")

# 4. The same model from scratch on the same 50 images (as many epochs as steps 3 together).
scratch = fnn.fit(model, x_few, y_few, epochs=HEAD + TUNE, batch_size=10, **options)
print(f"test accuracy: {test_accuracy(tuned):.3f} (from scratch: {test_accuracy(scratch):.3f})")
