"""MobileNetV2 as torchvision builds it, so its weights load unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

from fnn._checks import check_int
from fnn._core import Layer, check_name, default_name
from fnn.layers._basic import Relu6
from fnn.layers._combinators import Sequential
from fnn.layers._dropout import Dropout
from fnn.layers._pool import GlobalAvgPool
from fnn.models._common import (
    batch_norm,
    check_dropout,
    check_top,
    classifier_dense,
    conv,
    module,
    pooling_layers,
)

# torchvision's: expansion t, output channels c, blocks n, first stride s
MOBILENET_V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int) -> int:
    """torchvision's ``_make_divisible``: ``value`` rounded to a multiple of ``divisor``, losing at most 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn_relu6(filters: int, kernel_size: int, stride: int, groups: int, dtype: Any) -> Layer:
    """torchvision's ``Conv2dNormActivation(..., activation_layer=nn.ReLU6)``: numbered ``.0``, ``.1``, ``.2``."""
    return Sequential(
        [conv(filters, kernel_size, strides=stride, groups=groups, dtype=dtype), batch_norm(dtype), Relu6()]
    )


def _inverted_residual(
    in_channels: int, out_channels: int, stride: int, expand_ratio: int, dtype: Any
) -> Layer:
    """torchvision's ``InvertedResidual``: its one child ``conv`` is PyTorch's ``conv`` Sequential."""
    kind = "InvertedResidual"
    name = default_name(kind)
    hidden = int(round(in_channels * expand_ratio))
    layers = [_conv_bn_relu6(hidden, 1, 1, 1, dtype)] if expand_ratio != 1 else []
    layers += [
        _conv_bn_relu6(hidden, 3, stride, hidden, dtype),  # depthwise
        conv(out_channels, 1, dtype=dtype),  # pointwise, linear
        batch_norm(dtype),
    ]
    residual = stride == 1 and in_channels == out_channels

    def forward(call: Any, x: Any) -> Any:
        if x.shape[-1] != in_channels:
            raise ValueError(
                f"{kind} '{name}' was built for {in_channels} input channels, got inputs of shape "
                f"{tuple(x.shape)}"
            )
        y = call("conv", x)
        return x + y if residual else y  # same shapes: stride 1 and in_channels == out_channels

    return module(kind, name, {"conv": Sequential(layers, name="conv")}, forward)


def MobileNetV2(
    *,
    width_mult: float = 1.0,
    inverted_residual_setting: Sequence[Sequence[int]] | None = None,
    round_nearest: int = 8,
    last_channel: int | None = None,
    dropout: float = 0.2,
    num_classes: int = 1000,
    include_top: bool = True,
    pooling: str | None = None,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """MobileNetV2 laid out as torchvision's ``MobileNetV2``, so its ``state_dict`` loads unchanged.

    ``features``: a 3x3/2 convolution, batch norm and ReLU6 (``features.0``), the
    inverted residual blocks (``features.1`` ... ``features.17``: an optional 1x1
    expansion, a 3x3 depthwise convolution, a linear 1x1 projection, each with
    batch norm, ReLU6 after the first two; a skip connection where stride and
    channels allow), and a 1x1 convolution to ``last_channel`` (``features.18``).
    The top is a global average pool and ``classifier``: Dropout, Linear
    (``classifier.1``). Batch normalisation is PyTorch's; initialised as
    torchvision does.

    Args:
        width_mult: torchvision's width multiplier of every layer's channels,
            rounded by :func:`make_divisible` to multiples of ``round_nearest``.
        inverted_residual_setting: rows ``(t, c, n, s)``: expansion, output
            channels, blocks and the first block's stride;
            :data:`MOBILENET_V2_SETTING` (torchvision's) by default.
        round_nearest: the channel multiple (1 turns rounding off).
        last_channel: channels of the last 1x1 convolution; ``None`` for
            torchvision's ``1280 * max(1, width_mult)`` (rounded). Other values
            are for tests and experiments (no published weights).
        dropout: the classifier's dropout rate.
        num_classes: outputs of the classifier (logits).
        include_top: keep the pool and ``classifier``; ``False`` ends at
            ``features``, for transfer learning.
        pooling: with ``include_top=False``: ``None`` (the feature map),
            ``"avg"`` or ``"max"`` (a global pooling to ``(batch, channels)``).
        dtype: dtype of params, state and inputs.
        name: the model's name; ``"mobilenet_v2"`` by default.

    Returns:
        A :class:`~fnn.Layer` mapping images ``(batch, H, W, 3)`` (channels last,
        normalised with :func:`preprocess_input`) to logits ``(batch, num_classes)``.

    Raises:
        ValueError: for a bad setting, width, ``dropout``, ``num_classes`` or
            ``pooling``, or ``pooling``/``num_classes`` that need the other
            ``include_top``.

    Examples:
        >>> import jax
        >>> from fnn import models
        >>> tiny = models.MobileNetV2(inverted_residual_setting=[(1, 8, 1, 1), (2, 8, 2, 2)], last_channel=16)
        >>> params, state = jax.eval_shape(lambda key: tiny.init(key, (32, 32, 3)), jax.random.key(0))
        >>> sorted(params["features"])  # PyTorch's features.0 ... features.4
        ['inverted_residual', 'inverted_residual_1', 'inverted_residual_2', 'sequential', 'sequential_1']
        >>> sorted(params["features"]["inverted_residual_1"]["conv"])  # its conv.0 ... conv.3
        ['batch_norm', 'conv2d', 'sequential', 'sequential_1']
    """
    owner = f"MobileNetV2 '{name or 'mobilenet_v2'}'"
    name = check_name("MobileNetV2", name or "mobilenet_v2")
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
        raise ValueError(f"{owner}: width_mult must be a positive number, got {width_mult!r}")
    round_nearest = check_int(owner, "round_nearest", round_nearest)
    setting = MOBILENET_V2_SETTING if inverted_residual_setting is None else inverted_residual_setting
    rows = list(setting) if isinstance(setting, Sequence) and not isinstance(setting, str) else []
    for row in rows or [None]:
        ok = isinstance(row, Sequence) and len(row) == 4 and row[3] in (1, 2)
        if not ok or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in row):
            raise ValueError(
                f"{owner}: inverted_residual_setting must be a non-empty list of rows (t, c, n, s) of "
                f"positive ints with stride s 1 or 2, got {inverted_residual_setting!r}"
            )
    if last_channel is not None:
        check_int(owner, "last_channel", last_channel)
    dropout = check_dropout(owner, dropout)
    check_top(owner, include_top, pooling, num_classes)

    channels = make_divisible(32 * width_mult, round_nearest)
    last = last_channel or make_divisible(1280 * max(1.0, width_mult), round_nearest)
    layers = [_conv_bn_relu6(channels, 3, 2, 1, dtype)]
    for t, c, n, s in rows:
        out = make_divisible(c * width_mult, round_nearest)
        for i in range(n):
            layers.append(_inverted_residual(channels, out, s if i == 0 else 1, t, dtype))
            channels = out
    layers.append(_conv_bn_relu6(last, 1, 1, 1, dtype))
    features = Sequential(layers, name="features")
    if not include_top:
        return Sequential([features, *pooling_layers(pooling)], name=name)
    classifier = Sequential([Dropout(dropout), classifier_dense(num_classes, dtype)], name="classifier")
    return Sequential([features, GlobalAvgPool(name="avgpool"), classifier], name=name)


def mobilenet_v2(
    *,
    num_classes: int = 1000,
    include_top: bool = True,
    pooling: str | None = None,
    dtype: Any = jnp.float32,
    name: str = "mobilenet_v2",
) -> Layer:
    """MobileNetV2 as torchvision's ``mobilenet_v2()``: :func:`MobileNetV2` with its defaults, 3.5M params.

    Its PyTorch weights load with :func:`fnn.interop.load_torch`; inputs are
    images ``(batch, H, W, 3)`` normalised by :func:`preprocess_input`. Arguments
    as for :func:`MobileNetV2`.

    Examples:
        >>> from fnn import models
        >>> models.mobilenet_v2(include_top=False, pooling="avg").name  # (batch, 1280) features
        'mobilenet_v2'
    """
    return MobileNetV2(
        num_classes=num_classes, include_top=include_top, pooling=pooling, dtype=dtype, name=name
    )
