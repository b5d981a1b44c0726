"""Pooling (channels-last): max and average pooling in 1-3D, and global pooling."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fnn._core import Layer, check_name
from fnn.layers._basic import stateless
from fnn.layers._conv import Padding, as_padding, as_tuple, check_rank, check_window_fits, input_layout


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
    """Max pooling over windows that tile the spatial axes (strides = window, no padding).

    A reshape and a max: XLA:CPU runs it and its gradient several times faster than
    ``reduce_window`` and its ``select_and_scatter``, and compiles it faster. The
    gradient goes to the first maximum of each window, as ``reduce_window``'s does
    (and Keras's and PyTorch's).
    """
    return jnp.max(_windows(x, window), axis=-1)


def _windows(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
    """``(batch, *spatial, channels)`` -> ``(batch, *spatial // window, channels, prod(window))``, cropped."""
    outer = [n // k for n, k in zip(x.shape[1:-1], window, strict=True)]
    x = x[(slice(None), *(slice(o * k) for o, k in zip(outer, window, strict=True)), slice(None))]
    split = x.reshape(
        x.shape[0], *(d for o, k in zip(outer, window, strict=True) for d in (o, k)), x.shape[-1]
    )
    n = len(window)
    order = (0, *range(1, 2 * n, 2), 2 * n + 1, *range(2, 2 * n + 1, 2))
    return split.transpose(order).reshape(x.shape[0], *outer, x.shape[-1], math.prod(window))


def _tiled_max_forward(x: jax.Array, window: tuple[int, ...]) -> tuple[jax.Array, tuple]:
    windows = _windows(x, window)
    return jnp.max(windows, axis=-1), (jnp.argmax(windows, axis=-1), x.shape)


def _tiled_max_backward(window: tuple[int, ...], saved: tuple, g: jax.Array) -> tuple[jax.Array]:
    first, shape = saved
    n, outer = len(window), first.shape[1:-1]
    onto = jax.nn.one_hot(first, math.prod(window), dtype=g.dtype) * g[..., None]
    split = onto.reshape(g.shape[0], *outer, g.shape[-1], *window)
    order = (0, *(i for j in range(n) for i in (1 + j, n + 2 + j)), n + 1)
    grads = split.transpose(order).reshape(g.shape[0], *(o * k for o, k in zip(outer, window)), g.shape[-1])
    missing = [(0, 0), *((0, full - o * k) for full, o, k in zip(shape[1:-1], outer, window)), (0, 0)]
    return (jnp.pad(grads, missing),)


_tiled_max.defvjp(_tiled_max_forward, _tiled_max_backward)


def _pool(
    kind: str,
    default: str,
    ndim: int,
    reducer: str,
    pool_size: int | Sequence[int],
    strides: int | Sequence[int] | None,
    padding: Padding,
    name: str | None,
) -> Layer:
    name = check_name(kind, name or default)
    window = as_tuple(kind, name, "pool_size", pool_size, ndim)
    steps = window if strides is None else as_tuple(kind, name, "strides", strides, ndim)
    pad = as_padding(kind, name, padding, ndim)
    full_window, full_steps = (1, *window, 1), (1, *steps, 1)
    full_pad = pad if isinstance(pad, str) else ((0, 0), *pad, (0, 0))

    def reduce(x: Any, init: Any, op: Any) -> jax.Array:
        return jax.lax.reduce_window(x, init, op, full_window, full_steps, full_pad)

    def pool(x: Any) -> jax.Array:
        check_rank(kind, name, jnp.shape(x), ndim, per_example=False)
        check_window_fits(kind, name, "pool window", jnp.shape(x)[1:-1], window, pad)
        x = jnp.asarray(x)
        if reducer == "max" and pad == "VALID" and steps == window:
            return _tiled_max(x, window)
        if reducer == "max":
            return reduce(x, -jnp.inf, jax.lax.max)
        total = reduce(x, 0.0, jax.lax.add)
        if pad == "VALID":
            return total / math.prod(window)
        # Average over the real elements only: padding does not count (as in Keras).
        ones = jnp.ones((1, *jnp.shape(x)[1:-1], 1), x.dtype)
        return total / reduce(ones, 0.0, jax.lax.add)

    return stateless(kind, name, pool, floating=True)


_POOL_DOC = """{what} pooling over {nd} spatial axes of inputs ``{layout}``.

    Args:
        pool_size: window size, an int or {nd} ints.
        strides: window step; ``pool_size`` by default.
        padding: ``"valid"``, ``"same"`` or explicit sizes, as for convolutions.{avg}
        name: layer name; ``"{default}"`` by default.

    Raises:
        ValueError: for bad hyper-parameters, inputs of the wrong rank, or a window
            larger than the padded input.
        TypeError: in ``apply``, for inputs that are not floating point.
"""


def _pool_constructor(kind: str, ndim: int, reducer: str):
    default = f"{reducer}_pool{ndim}d"

    def constructor(
        pool_size: int | Sequence[int] = 2,
        *,
        strides: int | Sequence[int] | None = None,
        padding: Padding = "valid",
        name: str | None = None,
    ) -> Layer:
        return _pool(kind, default, ndim, reducer, pool_size, strides, padding, name)

    constructor.__name__ = constructor.__qualname__ = kind
    constructor.__doc__ = _POOL_DOC.format(
        what="Max" if reducer == "max" else "Average",
        nd=ndim,
        layout=input_layout(ndim),
        avg="" if reducer == "max" else "\n            Padding never counts towards an average.",
        default=default,
    )
    return constructor


MaxPool1D = _pool_constructor("MaxPool1D", 1, "max")
MaxPool2D = _pool_constructor("MaxPool2D", 2, "max")
MaxPool3D = _pool_constructor("MaxPool3D", 3, "max")
AvgPool1D = _pool_constructor("AvgPool1D", 1, "avg")
AvgPool2D = _pool_constructor("AvgPool2D", 2, "avg")
AvgPool3D = _pool_constructor("AvgPool3D", 3, "avg")


def _global(kind: str, default: str, reducer: Any, keepdims: bool, name: str | None) -> Layer:
    name = check_name(kind, name or default)

    def pool(x: Any) -> jax.Array:
        if jnp.ndim(x) < 3:
            raise ValueError(
                f"{kind} '{name}' expects inputs of shape (batch, spatial..., channels), got {tuple(jnp.shape(x))}"
            )
        return reducer(x, axis=tuple(range(1, jnp.ndim(x) - 1)), keepdims=keepdims)

    return stateless(kind, name, pool, floating=True)


def GlobalMaxPool(*, keepdims: bool = False, name: str | None = None) -> Layer:
    """The maximum over all spatial axes: ``(batch, *spatial, channels)`` -> ``(batch, channels)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> GlobalMaxPool().apply({}, {}, jnp.ones((2, 4, 4, 3)), train=False)[0].shape
        (2, 3)
    """
    return _global("GlobalMaxPool", "global_max_pool", jnp.max, keepdims, name)


def GlobalAvgPool(*, keepdims: bool = False, name: str | None = None) -> Layer:
    """The mean over all spatial axes: ``(batch, *spatial, channels)`` -> ``(batch, channels)``."""
    return _global("GlobalAvgPool", "global_avg_pool", jnp.mean, keepdims, name)
