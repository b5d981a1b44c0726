"""ResNet-18 and ResNet-50 as torchvision builds them (ResNet v1.5), so its weights load unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fnn._checks import check_int
from fnn._core import Layer, check_name, default_name
from fnn.layers._basic import Relu
from fnn.layers._combinators import Sequential
from fnn.layers._dense import Dense
from fnn.layers._pool import GlobalAvgPool, MaxPool2D
from fnn.models._common import (
    add_residual,
    batch_norm,
    check_top,
    conv,
    module,
    pooling_layers,
    torch_linear_init,
)

_EXPANSION = {"basic": 1, "bottleneck": 4}
_FIX = "build the block with downsample=True when it changes the stride or the channels"


def _downsample(filters: int, stride: int, dtype: Any) -> Layer:
    # default child names, so that PyTorch numbers them: downsample.0 (conv), downsample.1 (bn)
    return Sequential([conv(filters, 1, strides=stride, dtype=dtype), batch_norm(dtype)], name="downsample")


def _basic_block(planes: int, stride: int, downsample: bool, dtype: Any) -> Layer:
    """torchvision's ``BasicBlock``: two 3x3 convolutions and a skip connection."""
    kind = "BasicBlock"
    name = default_name(kind)
    layers = {
        "conv1": conv(planes, 3, strides=stride, dtype=dtype),
        "bn1": batch_norm(dtype),
        "conv2": conv(planes, 3, dtype=dtype),
        "bn2": batch_norm(dtype),
    }
    if downsample:
        layers["downsample"] = _downsample(planes, stride, dtype)

    def forward(call: Any, x: Any) -> Any:
        out = jax.nn.relu(call("bn1", call("conv1", x)))
        out = call("bn2", call("conv2", out))
        identity = call("downsample", x) if downsample else x
        return jax.nn.relu(add_residual(kind, name, identity, out, _FIX))

    return module(kind, name, layers, forward)


def _bottleneck(planes: int, stride: int, downsample: bool, dtype: Any) -> Layer:
    """torchvision's ``Bottleneck`` (v1.5: the stride is in the 3x3 convolution, not the first 1x1)."""
    kind = "Bottleneck"
    name = default_name(kind)
    layers = {
        "conv1": conv(planes, 1, dtype=dtype),
        "bn1": batch_norm(dtype),
        "conv2": conv(planes, 3, strides=stride, dtype=dtype),
        "bn2": batch_norm(dtype),
        "conv3": conv(planes * 4, 1, dtype=dtype),
        "bn3": batch_norm(dtype),
    }
    if downsample:
        layers["downsample"] = _downsample(planes * 4, stride, dtype)

    def forward(call: Any, x: Any) -> Any:
        out = jax.nn.relu(call("bn1", call("conv1", x)))
        out = jax.nn.relu(call("bn2", call("conv2", out)))
        out = call("bn3", call("conv3", out))
        identity = call("downsample", x) if downsample else x
        return jax.nn.relu(add_residual(kind, name, identity, out, _FIX))

    return module(kind, name, layers, forward)


def ResNet(
    block: str,
    layers: Sequence[int],
    *,
    width: int = 64,
    num_classes: int = 1000,
    include_top: bool = True,
    pooling: str | None = None,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A ResNet laid out as torchvision's ``ResNet(block, layers)``, so its ``state_dict`` loads unchanged.

    A 7x7/2 convolution ``conv1``, ``bn1``, ReLU and a 3x3/2 max pool (padding 1,
    which pads with -inf as PyTorch does), four stages ``layer1``..``layer4`` of
    residual blocks with ``width * (1, 2, 4, 8)`` channels (times 4 after a
    ``"bottleneck"``), the stages after the first halving the resolution, then
    a global average pool and the classifier ``fc``. Each block's params are keyed
    by torchvision's attribute names (``conv1``, ``bn1``, ..., ``downsample``), and
    ``layerK.i`` is the i-th block: the fnn path ``layer2/basic_block_1/conv1`` is
    PyTorch's ``layer2.1.conv1`` (:func:`fnn.interop.load_torch` maps it). Batch
    normalisation is PyTorch's (momentum 0.1, epsilon 1e-5, unbiased running
    variance); convolutions and ``fc`` are initialised as torchvision does.

    Args:
        block: ``"basic"`` (two 3x3 convolutions: ResNet-18/34) or
            ``"bottleneck"`` (1x1, 3x3, 1x1 with 4x expansion: ResNet-50/101/152),
            torchvision's v1.5 form with the stride in the 3x3 convolution.
        layers: blocks per stage, 4 positive ints (``[2, 2, 2, 2]`` for ResNet-18).
        width: channels of ``conv1`` and of the first stage; torchvision's 64.
            Other values are for tests and experiments (no published weights).
        num_classes: outputs of ``fc`` (logits).
        include_top: keep the average pool and ``fc``; ``False`` ends at
            ``layer4``'s feature map, for transfer learning.
        pooling: with ``include_top=False``: ``None`` (the feature map),
            ``"avg"`` or ``"max"`` (a global pooling to ``(batch, channels)``).
        dtype: dtype of params, state and inputs.
        name: the model's name; ``"resnet"`` by default.

    Returns:
        A :class:`~fnn.Layer` mapping images ``(batch, H, W, 3)`` (channels last,
        normalised with :func:`preprocess_input`) to logits ``(batch, num_classes)``;
        without the top, to ``(batch, H/32, W/32, 8 * width * expansion)`` or,
        pooled, ``(batch, 8 * width * expansion)``.

    Raises:
        ValueError: for a bad ``block``, ``layers``, ``width``, ``num_classes`` or
            ``pooling``, or ``pooling``/``num_classes`` that need the other
            ``include_top``.

    Examples:
        >>> import jax, fnn
        >>> from fnn import models
        >>> tiny = models.ResNet("basic", [1, 1, 1, 1], width=4, num_classes=3)
        >>> fnn.output_shape(tiny, (32, 32, 3))
        (3,)
        >>> params, state = jax.eval_shape(lambda key: tiny.init(key, (32, 32, 3)), jax.random.key(0))
        >>> sorted(params["layer2"]["basic_block"])  # PyTorch's layer2.0.bn1, ...
        ['bn1', 'bn2', 'conv1', 'conv2', 'downsample']
    """
    owner = f"ResNet '{name or 'resnet'}'"
    name = check_name("ResNet", name or "resnet")
    if block not in _EXPANSION:
        raise ValueError(f"{owner}: block must be 'basic' or 'bottleneck', got {block!r}")
    if isinstance(layers, str) or not isinstance(layers, Sequence) or len(layers) != 4:
        raise ValueError(f"{owner}: layers must be 4 ints (blocks per stage), got {layers!r}")
    for n in layers:
        check_int(owner, "layers", n)
    width = check_int(owner, "width", width)
    check_top(owner, include_top, pooling, num_classes)
    expansion = _EXPANSION[block]
    make_block = _basic_block if block == "basic" else _bottleneck

    stages, channels = [], width
    for i, (n, factor) in enumerate(zip(layers, (1, 2, 4, 8))):
        planes, stride = width * factor, 1 if i == 0 else 2
        blocks = []
        for j in range(n):
            s = stride if j == 0 else 1
            blocks.append(make_block(planes, s, s != 1 or channels != planes * expansion, dtype))
            channels = planes * expansion
        stages.append(Sequential(blocks, name=f"layer{i + 1}"))

    body = [
        conv(width, 7, strides=2, dtype=dtype, name="conv1"),
        batch_norm(dtype, "bn1"),
        Relu(name="relu"),
        MaxPool2D(3, strides=2, padding=1, name="maxpool"),
        *stages,
    ]
    if include_top:
        kernel_init, bias_init = torch_linear_init(channels)
        fc = Dense(num_classes, kernel_init=kernel_init, bias_init=bias_init, dtype=dtype, name="fc")
        return Sequential([*body, GlobalAvgPool(name="avgpool"), fc], name=name)
    return Sequential([*body, *pooling_layers(pooling)], name=name)


def resnet18(
    *,
    num_classes: int = 1000,
    include_top: bool = True,
    pooling: str | None = None,
    dtype: Any = jnp.float32,
    name: str = "resnet18",
) -> Layer:
    """ResNet-18 as torchvision's ``resnet18()``: :func:`ResNet` ``("basic", [2, 2, 2, 2])``, 11.7M params.

    Its PyTorch weights (``resnet18(weights=...).state_dict()``, saved as
    safetensors) load with :func:`fnn.interop.load_torch`; inputs are images
    ``(batch, H, W, 3)`` normalised by :func:`preprocess_input`. Arguments as for
    :func:`ResNet`.

    Examples:
        >>> from fnn import models
        >>> features = models.resnet18(include_top=False, pooling="avg")  # (batch, 512) features
        >>> features.name
        'resnet18'
    """
    return ResNet(
        "basic", [2, 2, 2, 2], num_classes=num_classes, include_top=include_top, pooling=pooling,
        dtype=dtype, name=name,
    )  # fmt: skip


def resnet50(
    *,
    num_classes: int = 1000,
    include_top: bool = True,
    pooling: str | None = None,
    dtype: Any = jnp.float32,
    name: str = "resnet50",
) -> Layer:
    """ResNet-50 as torchvision's ``resnet50()`` (v1.5): :func:`ResNet` ``("bottleneck", [3, 4, 6, 3])``, 25.6M params.

    Its PyTorch weights load with :func:`fnn.interop.load_torch`; inputs are
    images ``(batch, H, W, 3)`` normalised by :func:`preprocess_input`. Arguments
    as for :func:`ResNet`.

    Examples:
        >>> from fnn import models
        >>> model = models.resnet50(num_classes=10)  # a new 10-class fc on the ImageNet features
        >>> model.name
        'resnet50'
    """
    return ResNet(
        "bottleneck", [3, 4, 6, 3], num_classes=num_classes, include_top=include_top, pooling=pooling,
        dtype=dtype, name=name,
    )  # fmt: skip
