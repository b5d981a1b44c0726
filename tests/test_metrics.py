"""Metrics against scikit-learn's implementations, and their errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given
from hypothesis import strategies as st

from fnn import metrics

cases = st.tuples(st.integers(2, 40), st.integers(2, 5), st.integers(0, 10_000))


def draw(n, classes, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n).astype(np.int32)
    scores = rng.normal(size=(n, classes)).astype(np.float32)
    return labels, scores


@given(cases)
def test_classification_metrics_match_sklearn(case):
    n, classes, seed = case
    labels, scores = draw(n, classes, seed)
    pred = scores.argmax(-1)
    expect = {
        "acc": skm.accuracy_score(labels, pred),
        "cm": skm.confusion_matrix(labels, pred, labels=range(classes)),
        "precision": skm.precision_score(
            labels, pred, labels=range(classes), average="macro", zero_division=0
        ),
        "recall": skm.recall_score(labels, pred, labels=range(classes), average="macro", zero_division=0),
        "f1": skm.f1_score(labels, pred, labels=range(classes), average="macro", zero_division=0),
        "top2": np.mean([label in np.argsort(-row)[:2] for label, row in zip(labels, scores)]),
    }
    np.testing.assert_allclose(metrics.sparse_categorical_accuracy(labels, scores), expect["acc"], rtol=1e-6)
    np.testing.assert_allclose(metrics.accuracy(labels, scores), expect["acc"], rtol=1e-6)
    np.testing.assert_allclose(
        metrics.categorical_accuracy(np.eye(classes)[labels], scores), expect["acc"], rtol=1e-6
    )
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, scores, num_classes=classes), expect["cm"])
    np.testing.assert_array_equal(
        metrics.confusion_matrix(labels, pred.astype(np.int32), num_classes=classes), expect["cm"]
    )
    for name in ("precision", "recall", "f1"):
        fn = {"precision": metrics.precision, "recall": metrics.recall, "f1": metrics.f1_score}[name]
        np.testing.assert_allclose(
            fn(labels, scores, num_classes=classes), expect[name], rtol=1e-5, atol=1e-7
        )
    np.testing.assert_allclose(metrics.top_k_accuracy(labels, scores, k=2), expect["top2"], rtol=1e-6)


@given(st.integers(2, 40), st.integers(0, 10_000), st.floats(0.2, 0.8))
def test_binary_metrics_match_sklearn(n, seed, threshold):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, size=n).astype(np.float32)
    p = rng.uniform(size=n).astype(np.float32)
    hard = (p > threshold).astype(int)
    np.testing.assert_allclose(
        metrics.binary_accuracy(t, p, threshold=threshold), skm.accuracy_score(t, hard), rtol=1e-6
    )
    for fn, ref in (
        (metrics.precision, skm.precision_score),
        (metrics.recall, skm.recall_score),
        (metrics.f1_score, skm.f1_score),
    ):
        np.testing.assert_allclose(
            fn(t, p, threshold=threshold), ref(t, hard, zero_division=0), rtol=1e-5, atol=1e-7
        )


@given(st.integers(2, 40), st.integers(0, 10_000))
def test_regression_metrics_match_sklearn(n, seed):
    rng = np.random.default_rng(seed)
    t, p = rng.normal(size=(2, n)).astype(np.float32)
    np.testing.assert_allclose(metrics.mean_absolute_error(t, p), skm.mean_absolute_error(t, p), rtol=1e-5)
    np.testing.assert_allclose(
        metrics.root_mean_squared_error(t, p), skm.root_mean_squared_error(t, p), rtol=1e-5
    )
    np.testing.assert_allclose(metrics.r2_score(t, p), skm.r2_score(t, p), rtol=1e-4, atol=1e-5)


def test_r2_of_constant_targets_is_never_nan():
    t = jnp.ones(3)
    assert float(metrics.r2_score(t, t)) == 1.0
    assert float(metrics.r2_score(t, jnp.zeros(3))) == 0.0


def test_metrics_are_jittable():
    labels, scores = draw(10, 3, 0)
    jitted = jax.jit(lambda t, s: metrics.f1_score(t, s, num_classes=3))
    np.testing.assert_allclose(jitted(labels, scores), metrics.f1_score(labels, scores, num_classes=3))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: metrics.accuracy(jnp.ones(4), jnp.ones((4, 1))), ValueError,
         r"accuracy: cannot tell sparse from categorical for y_true \(4,\) and y_pred \(4, 1\); .*binary_accuracy"),
        (lambda: metrics.binary_accuracy(jnp.ones(4), jnp.ones((4, 1))), ValueError,
         r"binary_accuracy: y_true shape \(4,\) and y_pred shape \(4, 1\) differ"),
        (lambda: metrics.sparse_categorical_accuracy(jnp.ones(4), jnp.ones((4, 3))), TypeError,
         r"y_true must hold integer class indices, got float32"),
        (lambda: metrics.top_k_accuracy(jnp.ones(4, jnp.int32), jnp.ones((4, 3)), k=4), ValueError,
         r"top_k_accuracy: k must be an int in \[1, classes=3\], got 4"),
        (lambda: metrics.confusion_matrix(jnp.ones(4, jnp.int32), jnp.ones((4, 3)), num_classes=0), ValueError,
         r"num_classes must be a positive int, got 0"),
        (lambda: metrics.confusion_matrix(jnp.ones(4, jnp.int32), jnp.ones(5, jnp.int32), num_classes=2), ValueError,
         r"confusion_matrix: y_pred must be integer labels of y_true's shape \(4,\) .* got \(5,\)"),
        (lambda: metrics.get("accurracy"), ValueError, r"unknown metric 'accurracy'; known: "),
        (lambda: metrics.resolve_all(["mae", "mae"]), ValueError, r"metric name 'mae' is used twice"),
        (lambda: metrics.resolve_all("mae"), TypeError, r"metrics must be a list or a dict of metrics, got 'mae'"),
    ],
)  # fmt: skip
def test_metric_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
