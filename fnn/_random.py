"""``jax.random`` draws of N-d shapes, made as flat vectors and reshaped.

XLA:CPU unrolls JAX's counter-based generator over a small N-d shape: drawing a
3×3×3×8 kernel compiles in 1.7 s, the same 216 numbers drawn as a vector in
0.2 s. JAX numbers the counters in row-major order (with or without
``jax_threefry_partitionable``), so the reshaped vector holds bitwise the same
values as ``jax.random``'s own N-d draw; the tests check that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def _flat(shape: Sequence[int]) -> tuple[int]:
    return (math.prod(shape),)


def normal(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``, compiled as a flat draw."""
    return jax.random.normal(key, _flat(shape), dtype).reshape(shape)


def uniform(
    key: jax.Array,
    shape: Sequence[int],
    dtype: Any = jnp.float32,
    minval: ArrayLike = 0.0,
    maxval: ArrayLike = 1.0,
) -> jax.Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)``, compiled as a flat draw."""
    return jax.random.uniform(key, _flat(shape), dtype, minval, maxval).reshape(shape)


def truncated_normal(
    key: jax.Array, lower: ArrayLike, upper: ArrayLike, shape: Sequence[int], dtype: Any = jnp.float32
) -> jax.Array:
    """``jax.random.truncated_normal(key, lower, upper, shape, dtype)``, compiled as a flat draw."""
    return jax.random.truncated_normal(key, lower, upper, _flat(shape), dtype).reshape(shape)


def bernoulli(key: jax.Array, p: ArrayLike, shape: Sequence[int]) -> jax.Array:
    """``jax.random.bernoulli(key, p, shape)`` for a scalar ``p``, compiled as a flat draw."""
    return jax.random.bernoulli(key, p, _flat(shape)).reshape(shape)


def inverted_dropout(
    key: jax.Array, rate: float, x: jax.Array, mask_shape: Sequence[int] | None = None
) -> jax.Array:
    """``x`` with each entry zeroed with probability ``rate`` and the rest scaled by ``1 / (1 - rate)``.

    ``mask_shape`` (default ``x``'s) broadcasts against ``x``: SpatialDropout drops whole channels.
    """
    keep = bernoulli(key, 1.0 - rate, jnp.shape(x) if mask_shape is None else mask_shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
