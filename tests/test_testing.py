"""fnn.testing: the gradient checker finds wrong gradients and names their paths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import fnn
from fnn import testing


@jax.custom_vjp
def wrong_square(x):
    return x**2


wrong_square.defvjp(lambda x: (x**2, x), lambda x, g: (3 * x * g,))  # true derivative is 2x


def test_check_grads_passes_correct_gradients_in_float64():
    params = {"a": {"w": jnp.array([0.3, -1.2])}, "b": jnp.array(0.7)}
    report = testing.check_grads(lambda p: jnp.sum(jnp.sin(p["a"]["w"]) * p["b"] ** 3), params)
    assert report.ok
    assert {e.path for e in report.worst} == {"a/w", "b"}
    assert all(e.rel_error < 1e-7 for e in report.worst)


def test_check_grads_names_the_wrong_path_first():
    params = {"good": jnp.array([1.0, 2.0]), "bad": jnp.array([0.5, -1.5])}

    def f(p):
        return jnp.sum(p["good"] ** 2) + jnp.sum(wrong_square(p["bad"]))

    with pytest.raises(
        AssertionError, match=r"gradients disagree with finite differences\n.*\n  FAIL bad: autodiff"
    ):
        testing.check_grads(f, params)
    report = testing.check_grads(f, params, raise_on_failure=False)
    assert [e.path for e in report.worst] == ["bad", "good"]
    assert not report.worst[0].ok and report.worst[1].ok


def test_check_layer_grads_covers_the_input():
    bad_layer = fnn.Lambda(wrong_square, name="bad")
    with pytest.raises(AssertionError, match=r"FAIL input"):
        testing.check_layer_grads(bad_layer, {}, {}, jnp.ones((2, 3)))


def test_check_grads_leaves_float64_disabled_afterwards():
    testing.check_grads(lambda p: jnp.sum(p**2), jnp.ones(2))
    assert jnp.ones(1).dtype == jnp.float32


@given(testing.shapes(min_rank=2, max_rank=2, max_side=3).flatmap(lambda s: testing.arrays(s)))
def test_arrays_strategy_draws_finite_arrays_of_the_shape(array):
    assert array.ndim == 2 and array.dtype == np.float32 and np.all(np.isfinite(array))


@given(testing.dense_configs())
def test_dense_configs_build_layers(config):
    assert config["activation"] in testing.SMOOTH_ACTIVATIONS
    fnn.Dense(**config)
