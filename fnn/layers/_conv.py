"""Convolutions (channels-last): Conv1D/2D/3D, their transposes, depthwise and separable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn import activations, initializers
from fnn._core import Layer, check_input_dtype, check_name, check_positive_int, make_layer
from fnn._layer_losses import penalties
from fnn.layers._combinators import Sequential

Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]

_AXES = {1: "length", 2: "height, width", 3: "depth, height, width"}
_SPEC = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def input_layout(ndim: int) -> str:
    """``(batch, height, width, channels)`` for 2 spatial dimensions, and so on."""
    return f"(batch, {_AXES[ndim]}, channels)"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def as_tuple(kind: str, name: str, arg: str, value: Any, ndim: int) -> tuple[int, ...]:
    """A positive int or a tuple of ``ndim`` positive ints, as a tuple of ``ndim`` ints."""
    values = (value,) * ndim if _is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(values) != ndim or not all(_is_int(v) and v > 0 for v in values):
        raise ValueError(
            f"{kind} '{name}': {arg} must be a positive int or a tuple of {ndim} positive "
            f"int{'s' if ndim > 1 else ''}, got {value!r}"
        )
    return tuple(int(v) for v in values)


def _padding_pairs(padding: Any, ndim: int) -> tuple[tuple[int, int], ...] | None:
    """Explicit padding as ``ndim`` ``(low, high)`` pairs of non-negative ints; None if malformed."""
    items = (padding,) * ndim if _is_int(padding) else padding if isinstance(padding, (tuple, list)) else ()
    pairs = []
    for p in items:
        pair = (p, p) if _is_int(p) else tuple(p) if isinstance(p, (tuple, list)) else ()
        if len(pair) != 2 or not all(_is_int(v) and v >= 0 for v in pair):
            return None
        pairs.append((int(pair[0]), int(pair[1])))
    return tuple(pairs) if len(pairs) == ndim else None


def as_padding(
    kind: str, name: str, padding: Padding, ndim: int, *, causal: bool = False
) -> str | tuple[tuple[int, int], ...]:
    """``"SAME"``/``"VALID"``, or explicit ``(low, high)`` pairs per spatial axis.

    ``causal=True`` only adds ``'causal'`` to the error message: the caller resolves that padding.
    """
    if isinstance(padding, str) and padding.lower() in ("same", "valid"):
        return padding.upper()
    pairs = None if isinstance(padding, str) else _padding_pairs(padding, ndim)
    if pairs is None:
        names = "'same', 'valid', 'causal'" if causal else "'same', 'valid'"
        raise ValueError(
            f"{kind} '{name}': padding must be {names}, a non-negative int, or {ndim} non-negative "
            f"ints or (low, high) pairs, got {padding!r}"
        )
    return pairs


def check_rank(kind: str, name: str, shape: Sequence[int], ndim: int, per_example: bool) -> None:
    """Inputs must be ``(batch, *spatial, channels)``; the per-example shape one rank less."""
    expected = ndim + (1 if per_example else 2)
    if len(shape) != expected:
        what = "per-example input_shape" if per_example else "inputs"
        layout = input_layout(ndim).replace("batch, ", "") if per_example else input_layout(ndim)
        raise ValueError(
            f"{kind} '{name}' expects {what} of shape {layout} (rank {expected}), got {tuple(shape)}"
        )


def check_window_fits(
    kind: str, name: str, what: str, spatial: Sequence[int], window: Sequence[int], padding: Any
) -> None:
    """A kernel or pool window must fit in the (padded) input."""
    if padding == "SAME":
        return
    pads = [0] * len(spatial) if padding == "VALID" else [lo + hi for lo, hi in padding]
    padded = tuple(s + p for s, p in zip(spatial, pads))
    if any(w > p for w, p in zip(window, padded)):
        raise ValueError(
            f"{kind} '{name}': the {what} {tuple(window)} is larger than the padded input {padded} "
            f"(spatial shape {tuple(spatial)}, padding {padding!r})"
        )


def _penalties(kind: str, name: str, use_bias: bool, kernel: Any, bias: Any, activity: Any) -> Any:
    weights = {"kernel_regularizer": (kernel, lambda p: p["w"]), "bias_regularizer": (bias, lambda p: p["b"])}
    return penalties(kind, name, weights, activity, use_bias=use_bias)


def _dilated(kernel: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    return tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))


def _conv(
    kind: str,
    default: str,
    ndim: int,
    filters: int | None,
    kernel_size: int | Sequence[int],
    *,
    strides: int | Sequence[int],
    padding: Padding,
    dilation: int | Sequence[int],
    groups: int,
    depth_multiplier: int | None,
    use_bias: bool,
    activation: Any,
    kernel_init: Any,
    bias_init: Any,
    dtype: Any,
    name: str | None,
    kernel_regularizer: Any = None,
    bias_regularizer: Any = None,
    activity_regularizer: Any = None,
) -> Layer:
    """Convolution over ``ndim`` spatial axes; ``depth_multiplier`` makes it depthwise."""
    name = check_name(kind, name or default)
    if filters is not None:
        filters = check_positive_int(kind, name, "filters", filters)
    kernel = as_tuple(kind, name, "kernel_size", kernel_size, ndim)
    strides = as_tuple(kind, name, "strides", strides, ndim)
    dilation = as_tuple(kind, name, "dilation", dilation, ndim)
    groups = check_positive_int(kind, name, "groups", groups)
    # Keras's "causal" (Conv1D only): left-pad by the dilated kernel's reach, so y[t] sees only x[:t+1].
    causal = ndim == 1 and depth_multiplier is None
    if isinstance(padding, str) and padding.lower() == "causal":
        if not causal:
            raise ValueError(f"{kind} '{name}': padding='causal' works only with Conv1D, got {padding!r}")
        pad = ((dilation[0] * (kernel[0] - 1), 0),)
    else:
        pad = as_padding(kind, name, padding, ndim, causal=causal)
    act, w_init, b_init = (
        activations.get(activation),
        initializers.get(kernel_init),
        initializers.get(bias_init),
    )
    if filters is not None and filters % groups:
        raise ValueError(f"{kind} '{name}': filters ({filters}) must be divisible by groups ({groups})")
    regularized = _penalties(kind, name, use_bias, kernel_regularizer, bias_regularizer, activity_regularizer)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        check_rank(kind, name, input_shape, ndim, per_example=True)
        channels = input_shape[-1]
        check_window_fits(kind, name, "dilated kernel", input_shape[:-1], _dilated(kernel, dilation), pad)
        if depth_multiplier is not None:  # depthwise: one group per input channel
            in_per_group, out = 1, channels * depth_multiplier
        else:
            if channels % groups:
                raise ValueError(
                    f"{kind} '{name}': input channels ({channels}) must be divisible by groups ({groups}); "
                    f"input_shape {tuple(input_shape)}"
                )
            in_per_group, out = channels // groups, filters
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, (*kernel, in_per_group, out), dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (out,), dtype)
        return params, regularized.init({})

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del key
        w = params["w"]
        check_input_dtype(kind, name, x, w.dtype)
        check_rank(kind, name, jnp.shape(x), ndim, per_example=False)
        # The channels the params were built for: a depthwise kernel has one group per channel.
        depthwise = depth_multiplier is not None
        channels = w.shape[-1] // depth_multiplier if depthwise else w.shape[-2] * groups
        if jnp.shape(x)[-1] != channels:
            raise ValueError(
                f"{kind} '{name}' expects inputs of shape {input_layout(ndim).replace('channels', str(channels))} "
                f"(its params were built for {channels} input channels), got shape {tuple(jnp.shape(x))}"
            )
        check_window_fits(kind, name, "dilated kernel", jnp.shape(x)[1:-1], _dilated(kernel, dilation), pad)
        y = jax.lax.conv_general_dilated(
            x,
            w,
            window_strides=strides,
            padding=pad,
            rhs_dilation=dilation,
            dimension_numbers=_SPEC[ndim],
            feature_group_count=channels if depthwise else groups,
        )
        if use_bias:
            y = y + params["b"].reshape((1,) * (ndim + 1) + (-1,))
        y = act(y)
        return y, regularized.apply(state, params, y, train=train)

    return make_layer(kind, name, init, apply)


_CONV_DOC = """A {nd}D convolution over inputs ``{layout}`` (channels last).

    Args:
        filters: output channels.
        kernel_size: an int or {nd} ints.
        strides: an int or {nd} ints.
        padding: ``"valid"`` (no padding), ``"same"`` (output size ``ceil(in / stride)``),{causal}
            an int, {nd} ints, or {nd} ``(low, high)`` pairs.
        dilation: kernel dilation, an int or {nd} ints.
        groups: split channels into groups convolved separately; input channels
            and ``filters`` must both divide by it.
        use_bias: add a bias per output channel.
        activation: applied to the output, by name or function.
        kernel_init: the kernel's initialiser, by name or function.
        bias_init: the bias's initialiser, by name or function.
        kernel_regularizer: a penalty on the kernel added to the training loss,
            as for :func:`~fnn.Dense`: ``"l1"``, ``"l2"``, ``"l1_l2"``, a function
            ``array -> scalar`` (see :mod:`fnn.regularizers`) or ``None``.
        bias_regularizer: a penalty on the bias, likewise.
        activity_regularizer: a penalty on the output, divided by the batch size.
        dtype: parameter dtype.
        name: layer name; ``"{default}"`` by default.

    Returns:
        A :class:`~fnn.Layer` with params ``{{"w": (*kernel_size, in_channels // groups,
        filters), "b": (filters,)}}`` (Keras's layout) and no state; with
        regularizers, the state ``{{"losses": {{...}}}}`` (see :func:`fnn.add_loss`).

    Raises:
        ValueError: for bad hyper-parameters, inputs of the wrong rank, channels
            that do not divide into groups or differ from those the params were
            built for, or a kernel larger than the padded input.
        TypeError: in ``apply``, for inputs whose dtype is not the params' ``dtype``.
"""


def _conv_constructor(ndim: int) -> Any:
    kind = f"Conv{ndim}D"

    def constructor(
        filters: int,
        kernel_size: int | Sequence[int],
        *,
        strides: int | Sequence[int] = 1,
        padding: Padding = "valid",
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        use_bias: bool = True,
        activation: Any = None,
        kernel_init: Any = "glorot_uniform",
        bias_init: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        dtype: Any = jnp.float32,
        name: str | None = None,
    ) -> Layer:
        return _conv(
            kind, kind.lower(), ndim, filters, kernel_size, strides=strides, padding=padding, dilation=dilation,
            groups=groups, depth_multiplier=None, use_bias=use_bias, activation=activation,
            kernel_init=kernel_init, bias_init=bias_init, dtype=dtype, name=name,
            kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
        )  # fmt: skip

    constructor.__name__ = constructor.__qualname__ = kind
    causal = (
        '\n            ``"causal"`` (Keras\'s: left-pad by ``dilation * (kernel_size - 1)``, so output'
        "\n            step ``t`` sees only inputs up to ``t * stride``; output size ``ceil(in / stride)``),"
    )
    constructor.__doc__ = _CONV_DOC.format(
        nd=ndim, layout=input_layout(ndim), default=kind.lower(), causal=causal if ndim == 1 else ""
    )
    return constructor


Conv1D, Conv2D, Conv3D = (_conv_constructor(n) for n in (1, 2, 3))
Conv1D.__doc__ += """
    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = Conv1D(4, 3, padding="causal", dilation=2)
        >>> params, state = layer.init(jax.random.key(0), (10, 2))
        >>> layer.apply(params, state, jnp.ones((1, 10, 2)), train=False)[0].shape
        (1, 10, 4)
"""
Conv2D.__doc__ += """
    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = Conv2D(6, 5, padding="same", activation="relu")
        >>> params, state = layer.init(jax.random.key(0), (28, 28, 1))
        >>> params["w"].shape
        (5, 5, 1, 6)
        >>> layer.apply(params, state, jnp.ones((2, 28, 28, 1)), train=False)[0].shape
        (2, 28, 28, 6)
"""


def DepthwiseConv2D(
    kernel_size: int | Sequence[int],
    *,
    depth_multiplier: int = 1,
    strides: int | Sequence[int] = 1,
    padding: Padding = "valid",
    dilation: int | Sequence[int] = 1,
    use_bias: bool = True,
    activation: Any = None,
    kernel_init: Any = "glorot_uniform",
    bias_init: Any = "zeros",
    kernel_regularizer: Any = None,
    bias_regularizer: Any = None,
    activity_regularizer: Any = None,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A depthwise 2D convolution: each input channel convolved by its own ``depth_multiplier`` kernels.

    Params ``{"w": (kh, kw, 1, channels * depth_multiplier), "b": (channels * depth_multiplier,)}``;
    output channel ``c * depth_multiplier + m`` comes from input channel ``c``.
    Other arguments as for :func:`Conv2D` (``kernel_init`` and
    ``kernel_regularizer`` are Keras's ``depthwise_initializer`` and
    ``depthwise_regularizer``).

    Examples:
        >>> import jax
        >>> layer = DepthwiseConv2D(3, depth_multiplier=2)
        >>> layer.init(jax.random.key(0), (8, 8, 3))[0]["w"].shape
        (3, 3, 1, 6)
    """
    name = name or "depthwise_conv2d"
    multiplier = check_positive_int("DepthwiseConv2D", name, "depth_multiplier", depth_multiplier)
    return _conv(
        "DepthwiseConv2D", name, 2, None, kernel_size, strides=strides, padding=padding, dilation=dilation,
        groups=1, depth_multiplier=multiplier, use_bias=use_bias, activation=activation,
        kernel_init=kernel_init, bias_init=bias_init, dtype=dtype, name=name,
        kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
        activity_regularizer=activity_regularizer,
    )  # fmt: skip


def SeparableConv2D(
    filters: int,
    kernel_size: int | Sequence[int],
    *,
    depth_multiplier: int = 1,
    strides: int | Sequence[int] = 1,
    padding: Padding = "valid",
    dilation: int | Sequence[int] = 1,
    use_bias: bool = True,
    activation: Any = None,
    kernel_init: Any = "glorot_uniform",
    bias_init: Any = "zeros",
    depthwise_regularizer: Any = None,
    pointwise_regularizer: Any = None,
    bias_regularizer: Any = None,
    activity_regularizer: Any = None,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A depthwise convolution followed by a pointwise (1x1) one, as in Keras.

    Params ``{"depthwise": {"w": (kh, kw, 1, channels * depth_multiplier)},
    "pointwise": {"w": (1, 1, channels * depth_multiplier, filters), "b": (filters,)}}``.
    Arguments as for :func:`Conv2D` and :func:`DepthwiseConv2D`; as in Keras,
    ``depthwise_regularizer`` and ``pointwise_regularizer`` penalise the two
    kernels, ``bias_regularizer`` the bias and ``activity_regularizer`` the
    output (their terms live in the state of ``depthwise`` and ``pointwise``).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = SeparableConv2D(4, 3, padding="same")
        >>> params, state = layer.init(jax.random.key(0), (8, 8, 3))
        >>> layer.apply(params, state, jnp.ones((1, 8, 8, 3)), train=False)[0].shape
        (1, 8, 8, 4)
    """
    name = check_name("SeparableConv2D", name or "separable_conv2d")
    penalties(  # only to check the arguments here, so that errors name this layer and its arguments
        "SeparableConv2D",
        name,
        {arg: (spec, None) for arg, spec in [("depthwise_regularizer", depthwise_regularizer),
                                             ("pointwise_regularizer", pointwise_regularizer),
                                             ("bias_regularizer", bias_regularizer)]},
        activity_regularizer,
        use_bias=use_bias,
    )  # fmt: skip
    depthwise = DepthwiseConv2D(
        kernel_size, depth_multiplier=depth_multiplier, strides=strides, padding=padding, dilation=dilation,
        use_bias=False, kernel_init=kernel_init, kernel_regularizer=depthwise_regularizer, dtype=dtype,
        name="depthwise",
    )  # fmt: skip
    pointwise = Conv2D(
        filters, 1, use_bias=use_bias, activation=activation, kernel_init=kernel_init, bias_init=bias_init,
        kernel_regularizer=pointwise_regularizer, bias_regularizer=bias_regularizer,
        activity_regularizer=activity_regularizer, dtype=dtype, name="pointwise",
    )  # fmt: skip
    # its own kind, so that tools (fnn.interop) see one layer, as Keras and PyTorch users do
    return Sequential([depthwise, pointwise], name=name)._replace(kind="SeparableConv2D")


def _transpose_padding(
    kind: str,
    name: str,
    padding: str | tuple[int, ...],
    output_padding: Any,
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[tuple[int, int], ...]:
    """The explicit ``(low, high)`` padding of the stride-dilated input for a given ``output_padding``.

    With ``"valid"``/``"same"`` these are Keras's numbers: the output is
    ``(in - 1) * stride + k + output_padding`` with ``"valid"`` and
    ``(in - 1) * stride + k % 2 + output_padding`` with ``"same"`` (``k`` the dilated
    kernel), as Keras 3 computes them for its JAX backend. With PyTorch's ints ``p``
    they are ``(k - 1 - p, k - 1 - p + output_padding)``, negative (a crop) when ``p >= k``.
    """
    ndim = len(kernel)
    values = (output_padding,) * ndim if _is_int(output_padding) else output_padding
    values = tuple(values) if isinstance(values, (tuple, list)) else ()
    if len(values) != ndim or not all(_is_int(v) and v >= 0 for v in values):
        raise ValueError(
            f"{kind} '{name}': output_padding must be None, a non-negative int or a tuple of {ndim} "
            f"non-negative int{'s' if ndim > 1 else ''}, got {output_padding!r}"
        )
    # PyTorch's rule (Keras's is the stricter `< strides`): more would add rows no input reaches.
    limits = tuple(max(s, d) for s, d in zip(strides, dilation))
    if any(v >= lim for v, lim in zip(values, limits)):
        raise ValueError(
            f"{kind} '{name}': output_padding must be smaller than max(strides, dilation) = {limits} "
            f"on each axis, got output_padding={tuple(values)}"
        )
    pads = []
    for i, (k, op) in enumerate(zip(_dilated(kernel, dilation), values)):
        if not isinstance(padding, str):
            pads.append((k - 1 - padding[i], k - 1 - padding[i] + int(op)))
        elif padding == "VALID":
            pads.append((k - 1, k - 1 + int(op)))
        else:
            total = k + k % 2 - 2 + int(op)
            low = min((total + 1) // 2, k - 1)
            pads.append((low, total - low))
    return tuple(pads)


def _torch_padding(kind: str, name: str, padding: Any, ndim: int) -> tuple[int, ...]:
    """PyTorch's ConvTranspose ``padding``: a non-negative int or ``ndim`` of them, as a tuple."""
    values = (padding,) * ndim if _is_int(padding) else padding
    values = tuple(values) if isinstance(values, (tuple, list)) else ()
    if len(values) != ndim or not all(_is_int(v) and v >= 0 for v in values):
        raise ValueError(
            f"{kind} '{name}': padding must be 'same', 'valid', a non-negative int or a tuple of {ndim} "
            f"non-negative int{'s' if ndim > 1 else ''} (PyTorch's ConvTranspose padding), got {padding!r}"
        )
    return tuple(int(v) for v in values)


def _conv_transpose(
    kind: str,
    default: str,
    ndim: int,
    filters: int,
    kernel_size: int | Sequence[int],
    *,
    strides: int | Sequence[int],
    padding: str | int | Sequence[int],
    output_padding: int | Sequence[int] | None,
    dilation: int | Sequence[int],
    use_bias: bool,
    activation: Any,
    kernel_init: Any,
    bias_init: Any,
    dtype: Any,
    name: str | None,
    kernel_regularizer: Any = None,
    bias_regularizer: Any = None,
    activity_regularizer: Any = None,
) -> Layer:
    name = check_name(kind, name or default)
    filters = check_positive_int(kind, name, "filters", filters)
    kernel = as_tuple(kind, name, "kernel_size", kernel_size, ndim)
    strides = as_tuple(kind, name, "strides", strides, ndim)
    dilation = as_tuple(kind, name, "dilation", dilation, ndim)
    if isinstance(padding, str) and padding.lower() in ("same", "valid"):
        pad = padding.upper()
        if output_padding is not None:
            pad = _transpose_padding(kind, name, pad, output_padding, kernel, strides, dilation)
    else:  # PyTorch's ConvTranspose padding: crop p from each side of the full scatter
        torch_pad = _torch_padding(kind, name, padding, ndim)
        op = 0 if output_padding is None else output_padding
        pad = _transpose_padding(kind, name, torch_pad, op, kernel, strides, dilation)

    def check_output_size(spatial: Sequence[int], what: str) -> None:
        # Only PyTorch's padding can crop the output away: (in - 1) * s + 1 + low + high - (k - 1) rows.
        if isinstance(pad, str):
            return
        reach = _dilated(kernel, dilation)
        sizes = tuple(
            (n - 1) * s + 2 + lo + hi - k for n, s, (lo, hi), k in zip(spatial, strides, pad, reach)
        )
        if min(sizes) < 1:
            raise ValueError(
                f"{kind} '{name}': padding={padding!r} leaves an output of spatial size {sizes} for "
                f"{what} {tuple(spatial)}; it must be at least 1 on each axis"
            )

    regularized = _penalties(kind, name, use_bias, kernel_regularizer, bias_regularizer, activity_regularizer)
    act, w_init, b_init = (
        activations.get(activation),
        initializers.get(kernel_init),
        initializers.get(bias_init),
    )

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        check_rank(kind, name, input_shape, ndim, per_example=True)
        check_output_size(input_shape[:-1], "input spatial shape")
        w_key, b_key = jax.random.split(key)
        # Keras's layout: (*kernel, filters, in_channels), the forward conv this transposes.
        params = {"w": w_init(w_key, (*kernel, filters, input_shape[-1]), dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (filters,), dtype)
        return params, regularized.init({})

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del key
        w = params["w"]
        check_input_dtype(kind, name, x, w.dtype)
        check_rank(kind, name, jnp.shape(x), ndim, per_example=False)
        if jnp.shape(x)[-1] != w.shape[-1]:
            raise ValueError(
                f"{kind} '{name}' expects inputs of shape {input_layout(ndim)} with {w.shape[-1]} channels, "
                f"got shape {tuple(jnp.shape(x))}"
            )
        check_output_size(jnp.shape(x)[1:-1], "input spatial shape")
        y = jax.lax.conv_transpose(
            x, w, strides, pad, rhs_dilation=dilation, dimension_numbers=_SPEC[ndim], transpose_kernel=True
        )
        if use_bias:
            y = y + params["b"].reshape((1,) * (ndim + 1) + (-1,))
        y = act(y)
        return y, regularized.apply(state, params, y, train=train)

    return make_layer(kind, name, init, apply)


_TRANSPOSE_DOC = """A {nd}D transposed convolution (the gradient of :func:`Conv{nd}D` with respect to its input).

    Output spatial size, as in Keras (``k`` the dilated kernel ``(kernel_size - 1) * dilation + 1``):
    without ``output_padding``, ``in * stride`` with ``"same"`` padding and
    ``in * stride + max(k - stride, 0)`` with ``"valid"``; with it,
    ``(in - 1) * stride + k + output_padding`` with ``"valid"`` and
    ``(in - 1) * stride + k % 2 + output_padding`` with ``"same"``. With
    PyTorch's integer ``padding=p``, as in PyTorch:
    ``(in - 1) * stride - 2 * p + k + output_padding``.

    Args:
        filters: output channels.
        kernel_size: an int or {nd} ints.
        strides: an int or {nd} ints.
        dilation: an int or {nd} ints.
        padding: ``"same"`` or ``"valid"`` (Keras's), or PyTorch's
            ``ConvTranspose{nd}d`` padding: a non-negative int or {nd} of them,
            ``p`` rows cropped from each side of the full output (any ``p``, as
            long as some output is left), which makes this layer the gradient of
            :func:`Conv{nd}D` with ``padding=p``. Keras's ``"same"`` is *not*
            PyTorch's ``p = (kernel_size - 1) // 2`` in general: PyTorch's
            upsampling ``ConvTranspose2d(kernel_size=3, stride=2, padding=1,
            output_padding=1)`` gives the size of ``"same"`` with the output
            shifted by one row; port it as ``padding=1, output_padding=1``.
        output_padding: ``None`` (the sizes above; ``0`` with an int
            ``padding``), or an int or {nd} ints, each
            smaller than ``max(stride, dilation)`` on its axis: extra output rows
            on the high side, choosing among the input sizes that a strided
            :func:`Conv{nd}D` maps to the same size. With an int ``padding``
            (``"valid"`` is ``0``) this is PyTorch's
            ``ConvTranspose{nd}d(padding=..., output_padding=...)``; with
            ``"same"`` it places the window as Keras and TensorFlow do (for
            ``output_padding=stride - 1`` and an odd kernel, the gradient of a
            ``"same"`` :func:`Conv{nd}D` on an input of ``in * stride``).
        use_bias: as for :func:`Conv{nd}D`.
        activation: as for :func:`Conv{nd}D`.
        kernel_init: as for :func:`Conv{nd}D`.
        bias_init: as for :func:`Conv{nd}D`.
        kernel_regularizer: as for :func:`Conv{nd}D`.
        bias_regularizer: as for :func:`Conv{nd}D`.
        activity_regularizer: as for :func:`Conv{nd}D`.
        dtype: as for :func:`Conv{nd}D`.
        name: layer name; ``"{default}"`` by default.

    Returns:
        A :class:`~fnn.Layer` with params ``{{"w": (*kernel_size, filters, in_channels),
        "b": (filters,)}}`` (Keras's layout).

    Raises:
        ValueError: for bad hyper-parameters (``output_padding`` not below
            ``max(stride, dilation)``, negative ``padding``), inputs of the wrong
            rank or channels, or a ``padding`` that crops the whole output.
        TypeError: in ``apply``, for inputs whose dtype is not the params' ``dtype``.
"""


def _conv_transpose_constructor(ndim: int) -> Any:
    kind = f"Conv{ndim}DTranspose"
    default = f"conv{ndim}d_transpose"

    def constructor(
        filters: int,
        kernel_size: int | Sequence[int],
        *,
        strides: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] = "valid",
        output_padding: int | Sequence[int] | None = None,
        dilation: int | Sequence[int] = 1,
        use_bias: bool = True,
        activation: Any = None,
        kernel_init: Any = "glorot_uniform",
        bias_init: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        dtype: Any = jnp.float32,
        name: str | None = None,
    ) -> Layer:
        return _conv_transpose(
            kind, default, ndim, filters, kernel_size, strides=strides, padding=padding,
            output_padding=output_padding, dilation=dilation,
            use_bias=use_bias, activation=activation, kernel_init=kernel_init, bias_init=bias_init,
            dtype=dtype, name=name, kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
        )  # fmt: skip

    constructor.__name__ = constructor.__qualname__ = kind
    constructor.__doc__ = _TRANSPOSE_DOC.format(nd=ndim, default=default)
    return constructor


Conv1DTranspose, Conv2DTranspose, Conv3DTranspose = (_conv_transpose_constructor(n) for n in (1, 2, 3))
Conv2DTranspose.__doc__ += """
    Examples:
        >>> import jax, jax.numpy as jnp
        >>> layer = Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=(0, 1))
        >>> params, state = layer.init(jax.random.key(0), (5, 5, 3))
        >>> params["w"].shape
        (3, 3, 4, 3)
        >>> layer.apply(params, state, jnp.ones((1, 5, 5, 3)), train=False)[0].shape
        (1, 9, 10, 4)
        >>> # PyTorch's ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1): doubles the size
        >>> torch_like = Conv2DTranspose(4, 3, strides=2, padding=1, output_padding=1)
        >>> params, state = torch_like.init(jax.random.key(0), (5, 5, 3))
        >>> torch_like.apply(params, state, jnp.ones((1, 5, 5, 3)), train=False)[0].shape
        (1, 10, 10, 4)
"""
