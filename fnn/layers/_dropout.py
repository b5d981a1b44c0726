"""Dropout and SpatialDropout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fnn._checks import check_fraction
from fnn._core import Layer, check_input_dtype, check_name, default_name, make_layer, require_key
from fnn._random import inverted_dropout


def _dropout(kind: str, rate: float, name: str | None, mask_shape: Callable[[tuple], tuple]) -> Layer:
    name = check_name(kind, name or default_name(kind))
    rate = check_fraction(f"{kind} '{name}'", "rate", rate)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key, input_shape
        return {}, {}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del params
        check_input_dtype(kind, name, x, jnp.floating)  # in eval too, so a wrong dtype shows at once
        if not train or rate == 0:
            return x, state
        return inverted_dropout(require_key(kind, name, key), rate, x, mask_shape(jnp.shape(x))), state

    return make_layer(kind, name, init, apply)


def Dropout(rate: float, *, name: str | None = None) -> Layer:
    """Inverted dropout: zeroes each input with probability ``rate`` while training.

    Kept inputs are scaled by ``1 / (1 - rate)`` so eval needs no rescaling;
    with ``train=False`` it is the identity. ``rate`` is the probability of
    *dropping* (Keras and PyTorch convention, unlike stax's keep-rate).

    Args:
        rate: drop probability in ``[0, 1)``.
        name: layer name; ``"dropout"`` by default.

    Returns:
        A :class:`~fnn.Layer` with no params or state; ``apply`` needs ``key``
        when ``train=True`` and ``rate > 0``. Any input shape.

    Raises:
        ValueError: for a rate outside ``[0, 1)``, or a missing key in training.
        TypeError: in ``apply``, for inputs that are not floating point.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = Dropout(0.5)
        >>> y, _ = layer.apply({}, {}, jnp.ones((1, 4)), train=True, key=jax.random.key(1))
        >>> sorted(set(y[0].tolist())) in ([0.0, 2.0], [0.0], [2.0])
        True
    """
    return _dropout("Dropout", rate, name, lambda shape: shape)


def SpatialDropout(rate: float, *, name: str | None = None) -> Layer:
    """Drops whole channels: one draw per example and channel, shared over the spatial axes.

    For inputs ``(batch, *spatial, channels)`` of any spatial rank (Keras's
    SpatialDropout1D/2D/3D in one). Arguments as for :func:`Dropout`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> y, _ = SpatialDropout(0.5).apply({}, {}, jnp.ones((1, 4, 4, 8)), train=True, key=jax.random.key(0))
        >>> bool(jnp.all((y == 0).all(axis=(1, 2)) | (y == 2).all(axis=(1, 2))))
        True
    """
    return _dropout(
        "SpatialDropout", rate, name, lambda shape: (shape[0], *([1] * (len(shape) - 2)), shape[-1])
    )
