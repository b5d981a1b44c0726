"""VGG-16 as torchvision builds it (no batch normalisation), so its weights load unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

from fnn._checks import check_int
from fnn._core import Layer, check_name
from fnn.layers._basic import Relu
from fnn.layers._combinators import Sequential
from fnn.layers._conv import Conv2D
from fnn.layers._dropout import Dropout
from fnn.layers._pool import MaxPool2D
from fnn.models._common import (
    HE_FAN_OUT,
    AdaptiveAvgPool2D,
    FlattenChannelsFirst,
    check_dropout,
    check_top,
    classifier_dense,
    pooling_layers,
)

# torchvision's cfgs["D"]: output channels of each 3x3 convolution, "M" a 2x2 max pool
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def VGG(
    cfg: Sequence[int | str],
    *,
    hidden: int = 4096,
    dropout: float = 0.5,
    num_classes: int = 1000,
    include_top: bool = True,
    pooling: str | None = None,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A VGG laid out as torchvision's ``VGG(make_layers(cfg))``, so its ``state_dict`` loads unchanged.

    ``features``: for each entry of ``cfg``, a 3x3 convolution (padding 1) and a
    ReLU, or ``"M"``, a 2x2 max pool; its children keep their default names, so
    they are numbered as in ``nn.Sequential`` (``features/conv2d_1`` is PyTorch's
    ``features.2``). The top is torchvision's: an adaptive average pool to 7x7
    (PyTorch's bins; the identity for 224x224 inputs), a flatten in PyTorch's
    channels-first order (so ``classifier.0.weight`` loads unchanged), and
    ``classifier``: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
    Initialised as torchvision does.

    Args:
        cfg: convolution widths (positive ints) and ``"M"`` (max pools);
            :data:`VGG16_CFG` is VGG-16's.
        hidden: units of the two hidden classifier layers; torchvision's 4096.
            Other values are for tests and experiments (no published weights).
        dropout: the classifier's dropout rate.
        num_classes: outputs of the last classifier layer (logits).
        include_top: keep the pool, flatten and ``classifier``; ``False`` ends at
            ``features``, for transfer learning.
        pooling: with ``include_top=False``: ``None`` (the feature map),
            ``"avg"`` or ``"max"`` (a global pooling to ``(batch, channels)``).
        dtype: dtype of params and inputs.
        name: the model's name; ``"vgg"`` by default.

    Returns:
        A :class:`~fnn.Layer` mapping images ``(batch, H, W, 3)`` (channels last,
        normalised with :func:`preprocess_input`) to logits ``(batch, num_classes)``.

    Raises:
        ValueError: for a bad ``cfg``, ``hidden``, ``dropout``, ``num_classes`` or
            ``pooling``, or ``pooling``/``num_classes`` that need the other
            ``include_top``.

    Examples:
        >>> import jax
        >>> from fnn import models
        >>> tiny = models.VGG([4, "M", 8, "M"], hidden=16, num_classes=3)
        >>> params, state = jax.eval_shape(lambda key: tiny.init(key, (32, 32, 3)), jax.random.key(0))
        >>> sorted(params["classifier"])  # PyTorch's classifier.0 ... classifier.6
        ['dense', 'dense_1', 'dense_2', 'dropout', 'dropout_1', 'relu', 'relu_1']
        >>> params["classifier"]["dense"]["w"].shape  # 8 channels x 7 x 7, channels first
        (392, 16)
    """
    owner = f"VGG '{name or 'vgg'}'"
    name = check_name("VGG", name or "vgg")
    if isinstance(cfg, str) or not isinstance(cfg, Sequence) or not cfg:
        raise ValueError(f"{owner}: cfg must be a non-empty list of ints and 'M', got {cfg!r}")
    for v in cfg:
        if v != "M" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(
                f"{owner}: cfg entries must be positive ints (channels) or 'M' (a max pool), got {v!r}"
            )
    hidden = check_int(owner, "hidden", hidden)
    dropout = check_dropout(owner, dropout)
    check_top(owner, include_top, pooling, num_classes)

    layers: list[Layer] = []
    for v in cfg:
        if v == "M":
            layers.append(MaxPool2D(2, strides=2))
        else:
            layers += [Conv2D(v, 3, padding=1, kernel_init=HE_FAN_OUT, dtype=dtype), Relu()]
    features = Sequential(layers, name="features")
    if not include_top:
        return Sequential([features, *pooling_layers(pooling)], name=name)
    classifier = Sequential(
        [
            classifier_dense(hidden, dtype),
            Relu(),
            Dropout(dropout),
            classifier_dense(hidden, dtype),
            Relu(),
            Dropout(dropout),
            classifier_dense(num_classes, dtype),
        ],
        name="classifier",
    )
    return Sequential(
        [
            features,
            AdaptiveAvgPool2D((7, 7), name="avgpool"),
            FlattenChannelsFirst(name="flatten"),
            classifier,
        ],
        name=name,
    )


def vgg16(
    *,
    num_classes: int = 1000,
    include_top: bool = True,
    pooling: str | None = None,
    dtype: Any = jnp.float32,
    name: str = "vgg16",
) -> Layer:
    """VGG-16 as torchvision's ``vgg16()`` (no batch normalisation): :func:`VGG` ``(VGG16_CFG)``, 138M params.

    Its PyTorch weights load with :func:`fnn.interop.load_torch`; inputs are
    images ``(batch, H, W, 3)`` normalised by :func:`preprocess_input`. Arguments
    as for :func:`VGG`.

    Examples:
        >>> from fnn import models
        >>> models.vgg16(num_classes=10).name
        'vgg16'
    """
    return VGG(
        VGG16_CFG, num_classes=num_classes, include_top=include_top, pooling=pooling, dtype=dtype, name=name
    )
