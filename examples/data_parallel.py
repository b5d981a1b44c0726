"""Data-parallel training: the digits MLP with BatchNorm, split over 8 devices.

On a machine with one CPU, JAX is asked for 8 simulated CPU devices (before it
starts), so the same script shows on a laptop what runs on 8 GPUs. fit splits
every batch of 64 over the mesh's "data" axis; XLA averages the gradients and
BatchNorm's batch statistics over all 8 parts, so the model trains as on one
device. The simulated devices share the CPU's cores: expect no speed-up here.

Run: python examples/data_parallel.py   (prints `test accuracy: X` last)
"""

import os

import jax
import numpy as np
from sklearn.datasets import load_digits

import fnn

if "JAX_NUM_CPU_DEVICES" not in os.environ:  # GPUs, where there are some, are used as they are
    jax.config.update("jax_num_cpu_devices", 8)  # before JAX starts its backends

SEED = int(os.environ.get("FNN_EXAMPLE_SEED", 0))  # the training seed; the data split stays fixed
images, labels = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = fnn.data.train_test_split(
    (images / 16.0).astype(np.float32), labels.astype(np.int32), test_size=0.2, seed=0, stratify=labels
)
mesh = fnn.parallel.data_mesh()
print(f"devices: {mesh.size} ({jax.default_backend()})")

model = fnn.Sequential([fnn.Dense(128), fnn.BatchNorm(), fnn.Activation("relu"), fnn.Dense(10)])
loss = "sparse_categorical_crossentropy"  # from logits
history = fnn.fit(
    model, x_train[:1432], y_train[:1432],  # 1,432 = 22 batches of 64 and a last one of 24: all split by 8
    loss=loss, optimizer="adam", metrics=["accuracy"], epochs=15, batch_size=64, seed=SEED, verbose=2, mesh=mesh,
)  # fmt: skip
params = history.train_state.params
print(
    "params replicated over the mesh:", all(a.sharding.is_fully_replicated for a in jax.tree.leaves(params))
)
test = fnn.evaluate(model, history.params, history.state, x_test, y_test, loss=loss, metrics=["accuracy"])
print(f"test accuracy: {test['accuracy']:.3f}")
