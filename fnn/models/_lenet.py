"""LeNet-5, with the layer names of the usual PyTorch LeNet (``conv1``, ``conv2``, ``fc1``..``fc3``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

from fnn._checks import check_int
from fnn._core import Layer, check_name
from fnn.layers._combinators import Sequential
from fnn.layers._conv import Conv2D
from fnn.layers._dense import Dense
from fnn.layers._pool import AvgPool2D
from fnn.models._common import FlattenChannelsFirst, check_top, pooling_layers


def lenet5(
    *,
    num_classes: int = 10,
    include_top: bool = True,
    pooling: str | None = None,
    widths: Sequence[int] = (6, 16, 120, 84),
    dtype: Any = jnp.float32,
    name: str = "lenet5",
) -> Layer:
    """LeNet-5 (LeCun et al., 1998) as PyTorch tutorials write it, for 32x32 grey images.

    ``conv1``: 6 filters 5x5 and tanh, a 2x2 average pool; ``conv2``: 16 filters
    5x5 and tanh, a 2x2 average pool (5x5x16 left); then the top: a flatten in
    PyTorch's channels-first order, ``fc1`` (120, tanh), ``fc2`` (84, tanh) and
    ``fc3`` (``num_classes`` logits). The layer names are those of the usual
    PyTorch module (``self.conv1 = nn.Conv2d(1, 6, 5)`` ... ``self.fc3``, with
    tanh and ``F.avg_pool2d(x, 2)`` in ``forward``), so its ``state_dict`` loads
    with :func:`fnn.interop.load_torch`. (The 1998 network's trainable
    subsampling, scaled tanh and sparse C3 connections are left out, as there.)

    The input is ``(batch, 32, 32, C)`` (the paper's 32x32): pad 28x28 MNIST
    digits by 2 on each side first (``jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))``),
    which is what ``nn.Conv2d(1, 6, 5, padding=2)`` does on 28x28 inputs.
    Inputs are not normalised (no :func:`preprocess_input`).

    Args:
        num_classes: outputs of ``fc3`` (logits); 10 digits by default.
        include_top: keep the flatten and ``fc1``..``fc3``; ``False`` ends at the
            second pool's ``(batch, 5, 5, 16)`` feature map.
        pooling: with ``include_top=False``: ``None``, ``"avg"`` or ``"max"``.
        widths: channels of ``conv1``, ``conv2`` and units of ``fc1``, ``fc2``;
            ``(6, 16, 120, 84)`` is LeNet-5. Other values are for tests and
            experiments.
        dtype: dtype of params and inputs.
        name: the model's name.

    Returns:
        A :class:`~fnn.Layer` mapping ``(batch, 32, 32, C)`` to ``(batch, num_classes)``.

    Raises:
        ValueError: for bad ``widths``, ``num_classes`` or ``pooling``, or
            ``pooling``/``num_classes`` that need the other ``include_top``.

    Examples:
        >>> import jax, fnn
        >>> from fnn import models
        >>> model = models.lenet5()
        >>> fnn.output_shape(model, (32, 32, 1))
        (10,)
        >>> params, state = jax.eval_shape(lambda key: model.init(key, (32, 32, 1)), jax.random.key(0))
        >>> sorted(params), params["fc1"]["w"].shape
        (['average_pool', 'average_pool_1', 'conv1', 'conv2', 'fc1', 'fc2', 'fc3', 'flatten'], (400, 120))
    """
    owner = f"lenet5 '{name}'"
    name = check_name("lenet5", name)
    if isinstance(widths, str) or not isinstance(widths, Sequence) or len(widths) != 4:
        raise ValueError(f"{owner}: widths must be 4 positive ints (conv1, conv2, fc1, fc2), got {widths!r}")
    c1, c2, f1, f2 = (check_int(owner, "widths", w) for w in widths)
    check_top(owner, include_top, pooling, num_classes, default=10)
    body = [
        Conv2D(c1, 5, activation="tanh", dtype=dtype, name="conv1"),
        AvgPool2D(2, name="average_pool"),
        Conv2D(c2, 5, activation="tanh", dtype=dtype, name="conv2"),
        AvgPool2D(2, name="average_pool"),
    ]
    if not include_top:
        return Sequential([*body, *pooling_layers(pooling)], name=name)
    top = [
        FlattenChannelsFirst(name="flatten"),
        Dense(f1, "tanh", dtype=dtype, name="fc1"),
        Dense(f2, "tanh", dtype=dtype, name="fc2"),
        Dense(num_classes, dtype=dtype, name="fc3"),
    ]
    return Sequential([*body, *top], name=name)
