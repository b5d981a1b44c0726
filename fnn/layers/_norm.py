"""Normalisation: BatchNorm (running statistics in state), LayerNorm, GroupNorm, RMSNorm."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fnn._checks import check_fraction
from fnn._core import Layer, check_input_dtype, check_name, check_positive_int, make_layer


def _check_epsilon(kind: str, name: str, epsilon: Any) -> float:
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or epsilon <= 0:
        raise ValueError(f"{kind} '{name}': epsilon must be positive, got {epsilon!r}")
    return float(epsilon)


def _channels(kind: str, name: str, shape: Any) -> int:
    if len(shape) < 1:
        raise ValueError(
            f"{kind} '{name}' expects a per-example input_shape with a channel axis, got {tuple(shape)}"
        )
    return shape[-1]


def _affine_params(channels: int, center: bool, scale: bool, dtype: Any) -> dict:
    params = {}
    if scale:
        params["scale"] = jnp.ones((channels,), dtype)
    if center:
        params["offset"] = jnp.zeros((channels,), dtype)
    return params


def _channel_shape(ndim: int, axis: int) -> tuple[int, ...]:
    """``(1, ..., -1, ..., 1)``: a (channels,) vector reshaped to broadcast along ``axis``."""
    return tuple(-1 if i == axis % ndim else 1 for i in range(ndim))


def _affine(params: dict, y: jax.Array, axis: int = -1) -> jax.Array:
    # Params are (channels,); reshape them to y's rank instead of relying on rank promotion.
    shape = _channel_shape(y.ndim, axis)
    if "scale" in params:
        y = y * params["scale"].reshape(shape).astype(y.dtype)
    if "offset" in params:
        y = y + params["offset"].reshape(shape).astype(y.dtype)
    return y


def _at_least_float32(x: Any) -> jax.Array:
    # Statistics of bfloat16/float16 activations lose too much: normalise in float32 (as Keras and Flax do).
    x = jnp.asarray(x)
    wide = jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits >= 32
    return x if wide else x.astype(jnp.float32)


def _check_input(kind: str, name: str, x: Any, params: dict, channels: int | None, axis: int = -1) -> None:
    """Floating inputs in the params' dtype (if any) with ``channels`` on ``axis``."""
    check_input_dtype(kind, name, x, next(iter(params.values())).dtype if params else jnp.floating)
    if channels is None:
        return
    shape = tuple(jnp.shape(x))
    if axis == -1 and (len(shape) < 2 or shape[-1] != channels):
        raise ValueError(
            f"{kind} '{name}' expects inputs of shape (batch, ..., {channels}), got shape {shape}"
        )
    if axis != -1 and not (len(shape) >= 2 and -len(shape) <= axis < len(shape) and axis % len(shape) != 0):
        raise ValueError(
            f"{kind} '{name}': axis={axis} is not a non-batch axis of inputs of shape {shape} (rank {len(shape)})"
        )
    if axis != -1 and shape[axis] != channels:
        raise ValueError(
            f"{kind} '{name}' expects inputs with {channels} channels on axis {axis}, got shape {shape}"
        )


def BatchNorm(
    *,
    momentum: float = 0.99,
    epsilon: float = 1e-3,
    center: bool = True,
    scale: bool = True,
    axis: int = -1,
    running_variance: str = "biased",
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Batch normalisation over all axes but the channel axis (the last by default), Keras's defaults.

    With ``train=True`` it normalises by the batch's mean and (biased) variance
    and returns the running statistics moved towards them:
    ``running = momentum * running + (1 - momentum) * batch``. With
    ``train=False`` it normalises by the running statistics and returns the
    state unchanged.

    PyTorch's ``nn.BatchNorm*d`` differs in three numbers: its momentum weighs the
    batch, not the running value (fnn's ``momentum`` is ``1 - torch_momentum``), its
    epsilon is ``1e-5``, and it updates the running variance with the *unbiased*
    batch variance ``var * n / (n - 1)`` (``n`` the values per channel in the batch,
    batch size times spatial size) while still normalising by the biased one. So
    ``BatchNorm(momentum=0.9, epsilon=1e-5, running_variance="unbiased")`` is
    PyTorch's default, and with ``axis=1`` it takes PyTorch's channels-first
    ``(batch, C, ...)`` inputs. (PyTorch's ``momentum=None``, a cumulative average,
    has no counterpart.)

    Args:
        momentum: in ``[0, 1)``; how slowly the running statistics move.
        epsilon: added to the variance.
        center: learn an ``offset`` per channel.
        scale: learn a ``scale`` per channel.
        axis: the channel axis of the batched input, as Keras's ``axis``: ``-1``
            for channels last, ``1`` for channels first; never ``0``, the batch.
            Statistics are taken over all other axes.
        running_variance: ``"biased"`` (Keras) or ``"unbiased"`` (PyTorch): which
            batch variance moves the running ``var``.
        dtype: dtype of params and statistics.
        name: layer name; ``"batch_norm"`` by default.

    Returns:
        A :class:`~fnn.Layer` with params ``{"scale": (C,), "offset": (C,)}`` and
        state ``{"mean": (C,), "var": (C,)}``, ``C`` the size of ``axis``. Its
        ``apply`` maps ``x`` of shape ``(batch, ...)`` to ``y`` of the same shape.

    Raises:
        ValueError: for bad hyper-parameters; in ``init``/``apply`` for an ``axis``
            outside the input's non-batch axes or inputs with other channels; in
            training with ``running_variance="unbiased"`` when a channel has a
            single value in the batch.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> bn = BatchNorm()
        >>> params, state = bn.init(jax.random.key(0), (3,))
        >>> y, new_state = bn.apply(params, state, jnp.arange(6.0).reshape(2, 3), train=True)
        >>> new_state["mean"]
        Array([0.015, 0.025, 0.035], dtype=float32)
        >>> torch_like = BatchNorm(momentum=0.9, epsilon=1e-5, running_variance="unbiased", axis=1)
        >>> params, state = torch_like.init(jax.random.key(0), (2, 4, 4))  # (C, H, W)
        >>> params["scale"].shape, state["var"].shape
        ((2,), (2,))
    """
    kind = "BatchNorm"
    name = check_name(kind, name or "batch_norm")
    momentum = check_fraction(f"{kind} '{name}'", "momentum", momentum)
    epsilon = _check_epsilon(kind, name, epsilon)
    if not isinstance(axis, int) or isinstance(axis, bool) or axis == 0:
        raise ValueError(
            f"{kind} '{name}': axis must be a non-zero int (the channel axis of the batched input; "
            f"0 is the batch axis), got {axis!r}"
        )
    if running_variance not in ("biased", "unbiased"):
        raise ValueError(
            f"{kind} '{name}': running_variance must be 'biased' (Keras) or 'unbiased' (PyTorch), "
            f"got {running_variance!r}"
        )
    unbiased = running_variance == "unbiased"

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key
        shape, rank = tuple(input_shape), len(input_shape) + 1
        if not -rank <= axis < rank:
            raise ValueError(
                f"{kind} '{name}': axis={axis} is not a non-batch axis of inputs with per-example "
                f"input_shape {shape} (batched rank {rank})"
            )
        channels = _channels(kind, name, shape) if axis == -1 else shape[axis % rank - 1]
        state = {"mean": jnp.zeros((channels,), dtype), "var": jnp.ones((channels,), dtype)}
        return _affine_params(channels, center, scale, dtype), state

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del key
        _check_input(kind, name, x, params, state["mean"].shape[0], axis)
        in_dtype, x = jnp.result_type(x), _at_least_float32(x)
        shape = _channel_shape(x.ndim, axis)
        if train:
            axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
            mean, var = jnp.mean(x, axis=axes), jnp.var(x, axis=axes)
            running = var
            if unbiased:
                n = x.size // x.shape[axis]  # static: values per channel
                if n < 2:
                    raise ValueError(
                        f"{kind} '{name}': running_variance='unbiased' needs more than one value per "
                        f"channel in training, got inputs of shape {tuple(x.shape)}"
                    )
                running = var * (n / (n - 1))
            new_state = {
                "mean": momentum * state["mean"] + (1 - momentum) * mean.astype(state["mean"].dtype),
                "var": momentum * state["var"] + (1 - momentum) * running.astype(state["var"].dtype),
            }
        else:
            mean, var, new_state = state["mean"], state["var"], state
        y = (x - mean.reshape(shape).astype(x.dtype)) * jax.lax.rsqrt(
            var.reshape(shape).astype(x.dtype) + epsilon
        )
        return _affine(params, y, axis).astype(in_dtype), new_state

    return make_layer(kind, name, init, apply)


def _normalise_layer(
    kind: str,
    default: str,
    name: str | None,
    epsilon: float,
    center: bool,
    scale: bool,
    dtype: Any,
    normalise,
):
    """A stateless normalisation layer with per-channel affine params."""
    name = check_name(kind, name or default)
    epsilon = _check_epsilon(kind, name, epsilon)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key
        return _affine_params(_channels(kind, name, input_shape), center, scale, dtype), {}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del train, key
        _check_input(kind, name, x, params, next(iter(params.values())).shape[0] if params else None)
        y = _affine(params, normalise(name, _at_least_float32(x), epsilon))
        return y.astype(jnp.result_type(x)), state

    return make_layer(kind, name, init, apply)


def LayerNorm(
    *,
    epsilon: float = 1e-3,
    center: bool = True,
    scale: bool = True,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Normalises each example over its last axis, then scales and offsets per channel.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> ln = LayerNorm()
        >>> params, state = ln.init(jax.random.key(0), (4,))
        >>> y, _ = ln.apply(params, state, jnp.arange(8.0).reshape(2, 4), train=False)
        >>> [round(float(v), 3) for v in y.mean(axis=-1)]
        [0.0, 0.0]
    """

    def normalise(name: str, x: jax.Array, eps: float) -> jax.Array:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(jnp.var(x, axis=-1, keepdims=True) + eps)

    return _normalise_layer("LayerNorm", "layer_norm", name, epsilon, center, scale, dtype, normalise)


def RMSNorm(
    *, epsilon: float = 1e-6, scale: bool = True, dtype: Any = jnp.float32, name: str | None = None
) -> Layer:
    """Divides each example by the root mean square of its last axis, then scales per channel."""

    def normalise(name: str, x: jax.Array, eps: float) -> jax.Array:
        return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)

    return _normalise_layer("RMSNorm", "rms_norm", name, epsilon, False, scale, dtype, normalise)


def GroupNorm(
    groups: int,
    *,
    epsilon: float = 1e-3,
    center: bool = True,
    scale: bool = True,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Normalises each example over its spatial axes and channel groups (channels last).

    Args:
        groups: number of channel groups; the channels must divide by it.

    Raises:
        ValueError: when the input's channels do not divide into ``groups``.
    """
    kind = "GroupNorm"
    label = check_name(kind, name or "group_norm")
    groups = check_positive_int(kind, label, "groups", groups)

    def normalise(name: str, x: jax.Array, eps: float) -> jax.Array:
        channels = x.shape[-1]
        if x.ndim < 2 or channels % groups:
            raise ValueError(
                f"{kind} '{name}': channels ({channels}) must be divisible by groups ({groups}); "
                f"got input shape {tuple(x.shape)}"
            )
        grouped = x.reshape(*x.shape[:-1], groups, channels // groups)
        axes = (*range(1, x.ndim - 1), x.ndim)
        mean = jnp.mean(grouped, axis=axes, keepdims=True)
        var = jnp.var(grouped, axis=axes, keepdims=True)
        return ((grouped - mean) * jax.lax.rsqrt(var + eps)).reshape(x.shape)

    return _normalise_layer(kind, "group_norm", name, epsilon, center, scale, dtype, normalise)
