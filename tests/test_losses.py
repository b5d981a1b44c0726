"""Losses against NumPy references, sample weights, shape checks and errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnn
from fnn import losses, testing


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def weighted(per_example, w):
    return np.mean(per_example if w is None else per_example * w)


batch_and_weights = st.integers(1, 6).flatmap(
    lambda n: st.tuples(st.just(n), st.none() | testing.arrays((n,)).map(np.abs))
)


@given(bw=batch_and_weights, features=st.integers(1, 4), seed=st.integers(0, 99))
def test_regression_losses_match_numpy(bw, features, seed):
    n, w = bw
    rng = np.random.default_rng(seed)
    t, p = rng.normal(size=(2, n, features)).astype(np.float32) * 2
    err = p.astype(np.float64) - t
    np.testing.assert_allclose(
        losses.mean_squared_error(t, p, sample_weight=w), weighted(np.mean(err**2, 1), w), rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.mean_absolute_error(t, p, sample_weight=w), weighted(np.mean(np.abs(err), 1), w), rtol=1e-5
    )
    delta = 1.5
    hub = np.where(np.abs(err) <= delta, 0.5 * err**2, delta * (np.abs(err) - 0.5 * delta))
    np.testing.assert_allclose(
        losses.huber(t, p, delta=delta, sample_weight=w), weighted(np.mean(hub, 1), w), rtol=1e-5
    )


@given(bw=batch_and_weights, seed=st.integers(0, 99))
def test_binary_crossentropy_logits_and_probabilities(bw, seed):
    n, w = bw
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, size=(n, 1)).astype(np.float32)
    z = rng.normal(size=(n, 1)).astype(np.float32) * 3
    prob = np_sigmoid(z.astype(np.float64))
    ref = -(t * np.log(prob) + (1 - t) * np.log(1 - prob))[:, 0]
    np.testing.assert_allclose(
        losses.binary_crossentropy(t, z, sample_weight=w), weighted(ref, w), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        losses.binary_crossentropy(t, prob.astype(np.float32), from_logits=False, sample_weight=w),
        weighted(ref, w), rtol=1e-4, atol=1e-6,
    )  # fmt: skip


@given(bw=batch_and_weights, classes=st.integers(2, 5), seed=st.integers(0, 99))
def test_categorical_crossentropies_match_numpy(bw, classes, seed):
    n, w = bw
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    onehot = np.eye(classes, dtype=np.float32)[labels]
    z = rng.normal(size=(n, classes)).astype(np.float32) * 2
    ref = -np_log_softmax(z.astype(np.float64))[np.arange(n), labels]
    expected = weighted(ref, w)
    probs = np.exp(np_log_softmax(z.astype(np.float64))).astype(np.float32)
    # Compiled: one program per shape, not one per operation (the suite's time).
    cce = jax.jit(losses.categorical_crossentropy, static_argnames="from_logits")
    sparse = jax.jit(losses.sparse_categorical_crossentropy, static_argnames="from_logits")
    for got in (
        cce(onehot, z, sample_weight=w),
        cce(onehot, probs, from_logits=False, sample_weight=w),
        sparse(labels.astype(np.int32), z, sample_weight=w),
        sparse(labels.astype(np.int32), probs, from_logits=False, sample_weight=w),
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_label_smoothing_mixes_with_uniform():
    t = jnp.array([[0.0, 1.0]])
    z = jnp.array([[1.0, 2.0]])
    smoothed = jnp.array([[0.1, 0.9]])
    np.testing.assert_allclose(
        losses.categorical_crossentropy(t, z, label_smoothing=0.2),
        losses.categorical_crossentropy(smoothed, z),
        rtol=1e-6,
    )


def test_sparse_label_smoothing_matches_numpy():
    rng = np.random.default_rng(0)
    labels, logits = rng.integers(0, 4, size=6), rng.standard_normal((6, 4)).astype(np.float32)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    targets = np.full((6, 4), 0.2 / 4)
    targets[np.arange(6), labels] += 0.8
    expected = -(targets * log_p).sum(-1).mean()
    got = losses.sparse_categorical_crossentropy(jnp.asarray(labels, jnp.int32), logits, label_smoothing=0.2)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_losses_are_differentiable_and_jittable():
    t = jnp.array([0, 2], jnp.int32)
    z = jnp.ones((2, 3))
    g = jax.jit(jax.grad(lambda z: losses.sparse_categorical_crossentropy(t, z)))(z)
    np.testing.assert_allclose(g, (jax.nn.softmax(z) - jax.nn.one_hot(t, 3)) / 2, rtol=1e-6)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: losses.mean_squared_error(jnp.ones(4), jnp.ones((4, 1))), ValueError,
         r"mean_squared_error: y_true shape \(4,\) and y_pred shape \(4, 1\) differ; fnn never broadcasts"),
        (lambda: losses.binary_crossentropy(jnp.ones((4, 1)), jnp.ones(4)), ValueError,
         r"binary_crossentropy: y_true shape \(4, 1\) and y_pred shape \(4,\) differ"),
        (lambda: losses.sparse_categorical_crossentropy(jnp.ones(4, jnp.int32)[:, None], jnp.ones((4, 3))), ValueError,
         r"expects y_true of shape y_pred.shape\[:-1\] = \(4,\) .* got \(4, 1\)"),
        (lambda: losses.sparse_categorical_crossentropy(jnp.ones(4), jnp.ones((4, 3))), TypeError,
         r"y_true must hold integer class indices, got float32"),
        (lambda: losses.mean_squared_error(jnp.ones(4), jnp.ones(4), sample_weight=jnp.ones((4, 1))), ValueError,
         r"sample_weight must have shape \(4,\) \(one weight per example\), got \(4, 1\)"),
        (lambda: losses.huber(jnp.ones(2), jnp.ones(2), delta=0.0), ValueError, r"huber: delta must be positive, got 0.0"),
        (lambda: losses.mean_squared_error(jnp.ones(2), jnp.ones(2, jnp.int32)), TypeError,
         r"mean_squared_error: y_pred must be floating point, got int32"),
        (lambda: losses.get("crossentropy"), ValueError, r"unknown loss 'crossentropy'; known: .*mse"),
        (lambda: losses.categorical_crossentropy(jnp.ones((1, 2)), jnp.ones((1, 2)), label_smoothing=1.0), ValueError,
         r"label_smoothing must be in \[0, 1\), got 1.0"),
        (lambda: losses.sparse_categorical_crossentropy(jnp.ones(1, jnp.int32), jnp.ones((1, 2)), label_smoothing=-0.1),
         ValueError, r"sparse_categorical_crossentropy: label_smoothing must be in \[0, 1\), got -0.1"),
    ],
)  # fmt: skip
def test_loss_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_get_binds_options():
    loss = losses.get("binary_crossentropy", from_logits=False)
    np.testing.assert_allclose(loss(jnp.ones(1), jnp.full(1, 0.5)), np.log(2), rtol=1e-6)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_out_of_range_labels_give_nan_under_jit_never_another_class(label_smoothing):
    loss = jax.jit(lambda y, p: losses.sparse_categorical_crossentropy(y, p, label_smoothing=label_smoothing))
    logits = jnp.log(jnp.array([[0.2, 0.3, 0.5]] * 2))
    assert np.isfinite(float(loss(jnp.array([2, 0]), logits)))
    for bad in (-1, 3, -4):  # -1 would be the last class's loss, -4 the second-to-last with wrapping
        assert np.isnan(float(loss(jnp.array([bad, 0]), logits))), bad


def test_padding_of_weight_zero_may_carry_any_label():
    logits = jnp.zeros((2, 3))
    padded = losses.sparse_categorical_crossentropy(
        jnp.array([0, -1]), logits, sample_weight=jnp.array([1.0, 0.0])
    )
    np.testing.assert_allclose(padded, np.log(3) / 2, rtol=1e-6)  # the padding adds 0, as a valid label would


def test_takes_logits_and_takes_class_labels_see_through_names_and_options():
    assert losses.takes_logits(losses.get("sparse_categorical_crossentropy", label_smoothing=0.1))
    assert not losses.takes_logits(losses.get("binary_crossentropy", from_logits=False))
    assert not losses.takes_logits("mse") and not losses.takes_logits(lambda y, p: p)
    assert losses.takes_class_labels(losses.get("sparse_categorical_crossentropy", from_logits=False))
    assert not losses.takes_class_labels("categorical_crossentropy")


# --- reduction (issue 23): Keras 3's names, checked against Keras's own test values.

KERAS_T = np.array([[1, 9, 2], [-5, -2, 6]], np.float32)
KERAS_P = np.array([[4, 8, 12], [8, 1, 3]], np.float32)  # per-example MSE 110/3 and 187/3


def test_reductions_match_keras_values():
    w = np.array([2.3, 2.3], np.float32)  # Keras's tests pass the scalar 2.3
    mse = functools.partial(losses.mean_squared_error, KERAS_T, KERAS_P)
    np.testing.assert_allclose(mse(sample_weight=w, reduction="none"), [84.3333, 143.3666], rtol=1e-5)
    np.testing.assert_allclose(mse(sample_weight=w, reduction="sum"), 227.69998, rtol=1e-6)
    w2 = np.array([1.2, 3.4], np.float32)
    np.testing.assert_allclose(
        mse(sample_weight=w2, reduction="mean_with_sample_weight"),
        (110 / 3 * 1.2 + 187 / 3 * 3.4) / (1.2 + 3.4), rtol=1e-6,
    )  # fmt: skip
    # "mean" is the default, bit for bit; Keras's "sum_over_batch_size" is the same.
    for weight in (None, w2):
        default = mse(sample_weight=weight)
        np.testing.assert_array_equal(mse(sample_weight=weight, reduction="mean"), default)
        np.testing.assert_array_equal(mse(sample_weight=weight, reduction="sum_over_batch_size"), default)
        np.testing.assert_allclose(mse(sample_weight=weight, reduction="sum"), 2 * default, rtol=1e-6)
    no_weights = mse(reduction="mean_with_sample_weight")  # the mean, as in Keras
    np.testing.assert_allclose(no_weights, mse(), rtol=1e-6)


def test_every_loss_reduces_the_same_way():
    rng = np.random.default_rng(0)
    t, p = rng.normal(size=(2, 3, 4)).astype(np.float32)
    labels, w = np.array([0, 3, 1], np.int32), np.array([0.5, 0.0, 2.0], np.float32)
    calls = {
        "mean_squared_error": (t, p),
        "mean_absolute_error": (t, p),
        "huber": (t, p),
        "binary_crossentropy": ((t > 0).astype(np.float32), p),
        "categorical_crossentropy": (np.eye(4, dtype=np.float32)[labels], p),
        "sparse_categorical_crossentropy": (labels, p),
    }

    @jax.jit  # one program for all of them (the suite's time)
    def reduced(calls, w):
        return {
            name: [losses.get(name)(*args, sample_weight=w, reduction=r) for r in ("none", "mean")]
            for name, args in calls.items()
        }

    for name, (per_example, default) in reduced(calls, w).items():  # the reduction itself: checked above
        assert per_example.shape == (3,) and per_example[1] == 0, name
        np.testing.assert_allclose(default, np.mean(per_example), rtol=1e-6, err_msg=name)


def test_reduction_under_jit_vmap_and_grad():
    t, p = jnp.asarray(KERAS_T), jnp.asarray(KERAS_P)
    none = jax.jit(jax.vmap(functools.partial(losses.mean_absolute_error, reduction="none")))
    np.testing.assert_allclose(none(t[None], p[None]), [[4.666667, 6.333333]], rtol=1e-6)
    # All weights 0: 0, as Keras's divide_no_nan gives, with a finite (zero) gradient.
    loss = functools.partial(
        losses.mean_squared_error, t, sample_weight=jnp.zeros(2), reduction="mean_with_sample_weight"
    )
    value, grad = jax.jit(jax.value_and_grad(loss))(p)
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, np.zeros((2, 3)))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: losses.huber(jnp.ones(2), jnp.ones(2), reduction="avg"),
         r"huber: reduction must be 'mean' \(the default; Keras's 'sum_over_batch_size' is the same\), "
         r"'sum', 'mean_with_sample_weight' or 'none', got 'avg'"),
        (lambda: losses.get("sparse_categorical_crossentropy", reduction=None),
         r"sparse_categorical_crossentropy: reduction must be .*got None \(Keras's reduction=None is "
         r"reduction='none' here\)"),
        (lambda: losses.losses_of({"a": "mse", "b": losses.get("mae", reduction="none")}),
         r"loss mean_absolute_error: reduction='none' gives one loss per example \(batch,\), but fit, evaluate "
         r"and the train steps need one number per batch"),
        (lambda: losses.total_loss(lambda y, p: (y - p)[:, 0] ** 2, jnp.ones((2, 1)), jnp.zeros((2, 1))),
         r"loss <lambda> returned shape \(2,\); a model's loss must be one number per batch"),
    ],
)  # fmt: skip
def test_reduction_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_fit_refuses_per_example_losses():
    x, y = np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)
    with pytest.raises(
        ValueError, match=r"loss mean_squared_error: reduction='none' gives one loss per example"
    ):
        fnn.fit(fnn.Dense(1), x, y, loss=losses.get("mse", reduction="none"), optimizer="sgd", verbose=0)
