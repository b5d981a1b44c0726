"""Splits: sizes, disjointness, determinism, stratification and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.datasets import load_iris, load_wine

from fnn import data


def test_train_test_split_partitions_and_is_deterministic():
    x = np.arange(100)
    a_train, a_test = data.train_test_split(x, test_size=0.3, seed=4)
    b_train, b_test = data.train_test_split(x, test_size=0.3, seed=4)
    c_train, _ = data.train_test_split(x, test_size=0.3, seed=5)
    assert len(a_test) == 30 and sorted(np.concatenate([a_train, a_test])) == list(range(100))
    np.testing.assert_array_equal(a_train, b_train)
    np.testing.assert_array_equal(a_test, b_test)
    assert not np.array_equal(a_train, c_train)
    unshuffled, _ = data.train_test_split(x, test_size=10, shuffle=False)
    np.testing.assert_array_equal(unshuffled, np.arange(90))


def test_splits_keep_arrays_aligned():
    x, y = load_wine(return_X_y=True)
    x_train, x_dev, x_test, y_train, y_dev, y_test = data.train_dev_test_split(x, y, seed=0)
    for xs, ys in ((x_train, y_train), (x_dev, y_dev), (x_test, y_test)):
        rows = {tuple(r): label for r, label in zip(x, y)}
        assert all(rows[tuple(r)] == label for r, label in zip(xs, ys))


@given(st.integers(0, 1000), st.floats(0.1, 0.3), st.floats(0.1, 0.3))
def test_stratified_three_way_split_keeps_class_proportions(seed, dev, test):
    _, y = load_iris(return_X_y=True)
    y_train, y_dev, y_test = data.train_dev_test_split(y, dev_size=dev, test_size=test, seed=seed, stratify=y)
    assert len(y_dev) == round(dev * 150) and len(y_test) == round(test * 150)
    assert len(y_train) + len(y_dev) + len(y_test) == 150
    for part in (y_train, y_dev, y_test):
        counts = np.bincount(part, minlength=3)
        assert counts.max() - counts.min() <= 2  # iris has 50 of each class


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: data.train_test_split(np.ones(10), np.ones(9)), ValueError,
         r"all arrays must have the same number of examples, got lengths \[10, 9\]"),
        (lambda: data.train_test_split(np.ones(10), test_size=1.5), ValueError, r"test_size as a fraction must be in \(0, 1\), got 1.5"),
        (lambda: data.train_test_split(np.ones(10), test_size=10), ValueError, r"test_size=10 gives 10 of 10 examples"),
        (lambda: data.train_test_split(np.ones(10), test_size="a"), TypeError, r"test_size must be a fraction"),
        (lambda: data.train_dev_test_split(np.ones(10), dev_size=5, test_size=5), ValueError, r"leaving no training data"),
        (lambda: data.train_test_split(np.ones(10), stratify=np.ones(3)), ValueError,
         r"stratify must hold one label per example \(10\), got shape \(3,\)"),
        (lambda: data.train_test_split(), ValueError, r"pass at least one array"),
    ],
)  # fmt: skip
def test_split_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_batches_cover_every_example_once_in_a_seeded_order():
    x, y = np.arange(10.0)[:, None], np.arange(10)
    got = list(data.batches((x, y), 4, seed=1, epoch=2))
    assert [len(by) for _, by in got] == [4, 4, 2]
    order = np.concatenate([by for _, by in got])
    np.testing.assert_array_equal(order, data.shuffle_indices(10, 1, 2))
    np.testing.assert_array_equal(np.concatenate([bx[:, 0] for bx, _ in got]), order)
    assert not np.array_equal(order, data.shuffle_indices(10, 1, 3))
    assert [len(b) for b in data.batches(y, 4, drop_remainder=True)] == [4, 4]
    dicts = list(data.batches({"a": x, "b": y}, 5))
    assert sorted(dicts[0]) == ["a", "b"] and len(dicts) == 2


def test_batching_errors():
    with pytest.raises(ValueError, match=r"batch_size must be a positive int, got 0"):
        list(data.batches(np.ones(3), 0))
    with pytest.raises(
        ValueError,
        match=r"all arrays in data must have the same number of examples, got \{'\[0\]': 3, '\[1\]': 2\}",
    ):
        data.num_examples((np.ones(3), np.ones(2)))
    with pytest.raises(ValueError, match=r"data\['a'\] is a scalar; arrays need an example axis"):
        data.num_examples({"a": np.float32(1.0)})
    with pytest.raises(ValueError, match=r"data holds no arrays"):
        data.num_examples({})
