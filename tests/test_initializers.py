"""fnn's initialisers give JAX's values bitwise; only how they draw (flat, fast to compile) differs."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn import _random, initializers

# Names whose fnn initialiser replaces JAX's own, with JAX's as the reference.
REFERENCES = {
    "glorot_uniform": jax.nn.initializers.glorot_uniform(),
    "glorot_normal": jax.nn.initializers.glorot_normal(),
    "he_uniform": jax.nn.initializers.he_uniform(),
    "he_normal": jax.nn.initializers.he_normal(),
    "lecun_uniform": jax.nn.initializers.lecun_uniform(),
    "lecun_normal": jax.nn.initializers.lecun_normal(),
    "normal": jax.nn.initializers.normal(),
    "uniform": jax.nn.initializers.uniform(),
    "truncated_normal": jax.nn.initializers.truncated_normal(),
}
SHAPES = [(7, 5), (2, 2, 3, 4)]  # dense and conv kernels (small: JAX compiles its 4-d draws slowly)


def all_draws(inits: dict, key: jax.Array) -> dict:
    keys = jax.random.split(key, len(inits))
    return {
        (name, shape): init(k, shape, jnp.float32)
        for k, (name, init) in zip(keys, inits.items())
        for shape in SHAPES
    }


def test_each_named_initializer_gives_jaxs_values_bitwise():
    # Compiled, as init runs in fit (eager draws are checked below); JAX's N-d draws take seconds.
    ours = {name: initializers.get(name) for name in REFERENCES}

    def run(inits):
        return jax.jit(functools.partial(all_draws, inits))(jax.random.key(3))

    got, want = run(ours), run(REFERENCES)
    for where in want:
        np.testing.assert_array_equal(got[where], want[where], err_msg=str(where))


def test_variance_scaling_axes_and_float64_match_jax():
    key, shape = jax.random.key(1), (4, 3, 2, 5)
    for axes in [dict(in_axis=0, out_axis=(2, 3)), dict(in_axis=-2, out_axis=-1, batch_axis=0)]:
        for mode in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg"):
            ours = initializers.variance_scaling(0.7, mode, "truncated_normal", **axes)
            theirs = jax.nn.initializers.variance_scaling(0.7, mode, "truncated_normal", **axes)
            np.testing.assert_array_equal(ours(key, shape), theirs(key, shape), err_msg=f"{mode} {axes}")
    with jax.enable_x64(True):
        ours = initializers.he_normal()(key, (6, 2), jnp.float64)
        assert ours.dtype == jnp.float64
        np.testing.assert_array_equal(ours, jax.nn.initializers.he_normal()(key, (6, 2), jnp.float64))


@pytest.mark.parametrize("partitionable", [True, False])
def test_flat_draws_equal_jax_randoms_nd_draws(partitionable):
    key, shape = jax.random.key(5), (2, 3, 4)
    with jax.threefry_partitionable(partitionable):
        pairs = [
            (_random.normal(key, shape, jnp.float32), jax.random.normal(key, shape, jnp.float32)),
            (
                _random.uniform(key, shape, jnp.float32, -2, 3),
                jax.random.uniform(key, shape, jnp.float32, -2, 3),
            ),
            (_random.truncated_normal(key, -1, 2, shape), jax.random.truncated_normal(key, -1, 2, shape)),
            (_random.bernoulli(key, 0.3, shape), jax.random.bernoulli(key, 0.3, shape)),
        ]
    for ours, theirs in pairs:
        assert ours.shape == shape
        np.testing.assert_array_equal(ours, theirs)


def test_bad_variance_scaling_arguments_are_named():
    with pytest.raises(ValueError, match="mode must be fan_in, fan_out, fan_avg or fan_geo_avg, got 'fan'"):
        initializers.variance_scaling(1.0, "fan", "normal")
    with pytest.raises(
        ValueError, match="distribution must be truncated_normal, normal or uniform, got 'gauss'"
    ):
        initializers.variance_scaling(1.0, "fan_in", "gauss")
    with pytest.raises(ValueError, match=r"needs a weights shape of 2 or more axes, got \(5,\)"):
        initializers.glorot_uniform()(jax.random.key(0), (5,))
