"""Shared helpers for the fit tests: a small digits dataset, a dropout MLP, one run of fit."""

from __future__ import annotations

import chex
import numpy as np
from sklearn.datasets import load_digits

import fnn

LOSS = "sparse_categorical_crossentropy"


def digits(n=300):
    x, y = load_digits(return_X_y=True)
    return (x[:n] / 16.0).astype(np.float32), y[:n].astype(np.int32)


def mlp():
    return fnn.Sequential([fnn.Dense(16, "relu"), fnn.Dropout(0.3), fnn.Dense(10)])


def run(**kwargs):
    """fit on ``data`` (default: 300 digits) for 3 epochs; keyword arguments override."""
    x, y = kwargs.pop("data", None) or digits()
    options = dict(loss=LOSS, metrics=["accuracy"], epochs=3, batch_size=32, verbose=0, seed=0)
    return fnn.fit(kwargs.pop("model", None) or mlp(), x, y, **{**options, **kwargs})


def assert_same_run(a, b):
    assert a.history == b.history and a.epochs == b.epochs
    chex.assert_trees_all_equal(a.train_state._replace(key=None), b.train_state._replace(key=None))
