"""What the zoo's models share: the block combinator (:func:`module`), torchvision's layer settings,
the classification top, the two layers torchvision's heads need, and ``preprocess_input``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn import initializers
from fnn._checks import check_fraction, check_int
from fnn._core import (
    Layer,
    Shape,
    _shape_token,
    as_shape,
    batched_struct,
    check_name,
    make_layer,
    require_key,
    shape_of,
)
from fnn._random import inverted_dropout
from fnn.layers._basic import stateless
from fnn.layers._combinators import _check_children, _child, _child_key
from fnn.layers._conv import Conv2D
from fnn.layers._dense import Dense
from fnn.layers._norm import BatchNorm
from fnn.layers._pool import GlobalAvgPool, GlobalMaxPool

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's convolutions: kaiming_normal_(mode="fan_out", nonlinearity="relu").
HE_FAN_OUT = initializers.variance_scaling(2.0, "fan_out", "normal")
# torchvision's VGG and MobileNetV2 classifiers: normal_(0, 0.01), zero bias.
SMALL_NORMAL = initializers.normal(0.01)


def preprocess_input(x: Any) -> jax.Array:
    """torchvision's ImageNet normalisation of RGB images with values in ``[0, 255]``.

    ``(x / 255 - mean) / std`` per channel, with ImageNet's ``mean = (0.485,
    0.456, 0.406)`` and ``std = (0.229, 0.224, 0.225)``: what torchvision's
    ``transforms.ToTensor()`` followed by ``Normalize(mean, std)`` compute (the
    ``transforms`` of its published weights, less the resize and crop). Every
    model of :mod:`fnn.models` but LeNet-5 expects its inputs so. (Keras
    Applications normalise VGG and ResNet otherwise, "caffe" style: these
    models carry torchvision's weights and take torchvision's inputs.)

    Args:
        x: images ``(..., H, W, 3)``, channels last, RGB, values in ``[0, 255]``;
            integers (``uint8`` pixels) become float32, floats keep their dtype.

    Returns:
        An array of ``x``'s shape.

    Raises:
        ValueError: when the last axis is not 3 (RGB).
        TypeError: for a boolean or complex ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from fnn import models
        >>> models.preprocess_input(jnp.full((1, 2, 2, 3), 255, jnp.uint8))[0, 0, 0]
        Array([2.2489083, 2.4285715, 2.64     ], dtype=float32)
    """
    return normalized_images("preprocess_input", x, IMAGENET_MEAN, IMAGENET_STD)


def normalized_images(what: str, x: Any, mean: tuple, std: tuple) -> jax.Array:
    """``(x / 255 - mean) / std`` per channel of RGB images ``(..., 3)`` in ``[0, 255]``, checked."""
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"{what} expects RGB images (..., 3), channels last; got shape {x.shape}")
    if jnp.issubdtype(x.dtype, jnp.integer):
        x = x.astype(jnp.float32)  # pixels: the documented conversion, not a silent cast
    elif not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{what} expects integer or floating images, got {x.dtype}")
    per_channel = (1,) * (x.ndim - 1) + (3,)  # explicit: nothing is broadcast by rank
    mean_, std_ = (jnp.asarray(v, x.dtype).reshape(per_channel) for v in (mean, std))
    return (x / jnp.asarray(255, x.dtype) - mean_) / std_


# ------------------------------------------------------------------ torchvision's layers


def conv(
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    groups: int = 1,
    use_bias: bool = False,
    dtype: Any,
    name: str | None = None,
) -> Layer:
    """``nn.Conv2d(..., padding=(k - 1) // 2)`` (torchvision's ``conv3x3``/``conv1x1``), initialised as torchvision does."""
    return Conv2D(
        filters, kernel_size, strides=strides, padding=(kernel_size - 1) // 2, groups=groups,
        use_bias=use_bias, kernel_init=HE_FAN_OUT, dtype=dtype, name=name,
    )  # fmt: skip


def batch_norm(dtype: Any, name: str | None = None) -> Layer:
    """``nn.BatchNorm2d``: PyTorch's momentum 0.1, epsilon 1e-5 and unbiased running variance."""
    return BatchNorm(momentum=0.9, epsilon=1e-5, running_variance="unbiased", dtype=dtype, name=name)


def torch_linear_init(fan_in: int) -> tuple[Callable, Callable]:
    """``nn.Linear``'s default initialisation: weight and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / np.sqrt(fan_in)

    def bias(key: jax.Array, shape: Any, dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return initializers.variance_scaling(1 / 3, "fan_in", "uniform"), bias


# ------------------------------------------------------------------ blocks


def add_residual(kind: str, name: str, identity: jax.Array, out: jax.Array, fix: str) -> jax.Array:
    """``identity + out``, refusing to broadcast (a block built for other channels or strides)."""
    if jnp.shape(identity) != jnp.shape(out):
        raise ValueError(
            f"{kind} '{name}' adds its input (or downsampled input) of per-example shape "
            f"{shape_of(identity)} to its branch's output of shape {shape_of(out)}; {fix}"
        )
    return identity + out


class Context:
    """What a block's ``forward(ctx, x)`` gets.

    ``ctx(key, h)`` applies the child ``key`` to ``h``; ``ctx.params`` are the
    block's params (its own arrays and its children's); ``ctx.train`` the
    ``train`` flag; ``ctx.dropout(h, rate)`` inverted dropout while training,
    each call with its own key.
    """

    def __init__(self, call: Callable, params: dict, train: bool, dropout_key: Callable[[int], jax.Array]):
        self._call, self.params, self.train, self._dropout_key = call, params, train, dropout_key
        self._dropouts = 0

    def __call__(self, key: str, h: Any) -> Any:
        return self._call(key, h)

    def dropout(self, h: jax.Array, rate: float) -> jax.Array:
        if not self.train or rate == 0:
            return h
        key = self._dropout_key(self._dropouts)
        self._dropouts += 1
        return inverted_dropout(key, rate, h)


def _shapes(x: Any) -> Any:
    """Per-example :class:`Shape` s (with dtypes) of a batch: an array, or a tuple or dict of them."""
    if isinstance(x, (tuple, list)):
        return tuple(_shapes(v) for v in x)
    if isinstance(x, Mapping):
        return {k: _shapes(v) for k, v in x.items()}
    return Shape(jnp.shape(x)[1:], x.dtype)


def module(
    kind: str,
    name: str,
    layers: Mapping[str, Layer],
    forward: Callable[[Context, Any], Any],
    own: Mapping[str, Callable[[jax.Array], jax.Array]] | None = None,
) -> Layer:
    """A combinator over named children wired by ``forward(ctx, x)`` (see :class:`Context`).

    It keeps the combinators' contract (DESIGN.md): params and state are dicts
    keyed by the children's keys (torchvision's or Hugging Face's attribute names, so a PyTorch name is the
    fnn path), child ``i``
    (in ``layers``' order) gets ``fold_in(key, i)`` and runs under
    ``jax.named_scope``, and errors name the child. ``own`` adds the block's own
    arrays (``nn.Parameter`` s such as ViT's ``cls_token``) to its params: each
    is ``init(key)`` with ``fold_in(key, len(layers) + j)``; dropout keys follow.

    ``children`` traces ``forward`` (``jax.eval_shape``: no FLOPs) to find each
    child's input shape, once per input shape, so ``forward`` must call every
    child, with arrays whose shapes depend on the input's shape only.
    """
    keys = list(layers)
    own = dict(own or {})
    if set(own) & set(keys):
        raise ValueError(f"{kind} '{name}': own params {sorted(set(own) & set(keys))} clash with children")
    all_keys = keys + list(own)
    index = {k: i for i, k in enumerate(keys)}

    def trace(key: jax.Array, x: Any) -> dict:
        """Runs ``forward`` on ``x``, initialising each child when first called: its input shapes."""
        params = {k: make(jax.random.fold_in(key, len(keys) + j)) for j, (k, make) in enumerate(own.items())}
        state: dict = {}
        seen: dict = {}

        def call(k: str, h: Any) -> Any:
            seen[k] = shape = _shapes(h)
            with _child(kind, name, index[k], k, shape):
                if k not in state:
                    params[k], state[k] = layers[k].init(jax.random.fold_in(key, index[k]), shape)
                return layers[k].apply(params[k], state[k], h, train=False)[0]

        forward(Context(call, params, False, lambda j: key), x)
        if set(seen) != set(keys):
            raise RuntimeError(f"{kind} '{name}': forward never called {sorted(set(keys) - set(seen))}")
        return seen

    cache: dict = {}  # children's input shapes, per input shape: the layers never change

    def children(input_shape: Any) -> list[tuple[str, Layer, Any]]:
        shape = as_shape(input_shape)
        token = _shape_token(shape)
        if token not in cache:
            seen: dict = {}

            def run(key: jax.Array) -> None:
                x = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), batched_struct(shape))
                seen.update(trace(key, x))

            jax.eval_shape(run, jax.random.key(0))
            cache[token] = [(k, layers[k], seen[k]) for k in keys]
        return cache[token]

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        params = {k: make(jax.random.fold_in(key, len(keys) + j)) for j, (k, make) in enumerate(own.items())}
        state = {}
        for i, (k, layer, shape) in enumerate(children(input_shape)):
            with _child(kind, name, i, k, shape):
                params[k], state[k] = layer.init(jax.random.fold_in(key, i), shape)
        return {k: params[k] for k in all_keys}, state

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        _check_children(kind, name, "params", all_keys, params)
        _check_children(kind, name, "state", keys, state)
        new_state: dict = {}

        def call(k: str, h: Any) -> Any:
            i = index[k]
            with _child(kind, name, i, k, shape_of(h)):
                y, new_state[k] = layers[k].apply(params[k], state[k], h, train=train, key=_child_key(key, i))
            return y

        def dropout_key(j: int) -> jax.Array:
            return jax.random.fold_in(require_key(kind, name, key), len(all_keys) + j)

        y = forward(Context(call, params, train, dropout_key), x)
        return y, {k: new_state.get(k, state[k]) for k in keys}

    return make_layer(kind, name, init, apply, children)


# ------------------------------------------------------------------ heads


def AdaptiveAvgPool2D(output_size: tuple[int, int], *, name: str) -> Layer:
    """PyTorch's ``nn.AdaptiveAvgPool2d``: bin ``i`` of ``out`` averages rows ``floor(i * in / out)``
    to ``ceil((i + 1) * in / out)`` (exclusive), so bins overlap when ``out`` does not divide ``in``
    and repeat rows when ``out > in``. The identity when the sizes agree (VGG at 224x224).

    ``(batch, H, W, C)`` -> ``(batch, *output_size, C)``.
    """
    kind = "AdaptiveAvgPool2D"
    out_h, out_w = output_size

    def pool(x: Any) -> jax.Array:
        if jnp.ndim(x) != 4:
            raise ValueError(f"{kind} '{name}' expects inputs (batch, H, W, C), got shape {jnp.shape(x)}")
        h, w = x.shape[1:3]
        if (h, w) == (out_h, out_w):
            return x
        rows, cols = adaptive_bins(h, out_h, x.dtype), adaptive_bins(w, out_w, x.dtype)
        return jnp.einsum("ih,jw,nhwc->nijc", rows, cols, x, precision=jax.lax.Precision.HIGHEST)

    return stateless(kind, check_name(kind, name), pool, floating=True)


def adaptive_bins(size: int, out: int, dtype: Any) -> np.ndarray:
    """``(out, size)``: row ``i`` averages PyTorch's adaptive-pooling bin ``i``."""
    bins = np.zeros((out, size), np.float64)
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        bins[i, start:end] = 1.0 / (end - start)
    return bins.astype(dtype)


def FlattenChannelsFirst(*, name: str) -> Layer:
    """Flattens ``(batch, H, W, C)`` in PyTorch's order, channels first: ``x.transpose(0, 3, 1, 2).reshape(batch, -1)``.

    PyTorch flattens NCHW feature maps, so a ``Linear`` after ``torch.flatten``
    (VGG's ``classifier.0``, LeNet's ``fc1``) reads its inputs channel by
    channel; flattening in this order lets its weight load unchanged.
    """
    kind = "FlattenChannelsFirst"

    def flatten(x: Any) -> jax.Array:
        if jnp.ndim(x) != 4:
            raise ValueError(f"{kind} '{name}' expects inputs (batch, H, W, C), got shape {jnp.shape(x)}")
        return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)

    return stateless(kind, check_name(kind, name), flatten)


def check_top(owner: str, include_top: Any, pooling: Any, num_classes: Any, default: int = 1000) -> None:
    """Validates ``include_top``/``pooling``/``num_classes`` (``default`` unless there is a top)."""
    if not isinstance(include_top, bool):
        raise TypeError(f"{owner}: include_top must be a bool, got {include_top!r}")
    check_int(owner, "num_classes", num_classes)
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"{owner}: pooling must be None, 'avg' or 'max', got {pooling!r}")
    if include_top and pooling is not None:
        raise ValueError(
            f"{owner}: pooling={pooling!r} applies only with include_top=False (the top pools already)"
        )
    if not include_top and num_classes != default:
        raise ValueError(
            f"{owner}: num_classes={num_classes} needs include_top=True (without the top there is no "
            "classifier); add your own head on the features instead"
        )


def pooling_layers(pooling: str | None) -> list[Layer]:
    """The optional global pooling after the features of a model built with ``include_top=False``."""
    if pooling == "avg":
        return [GlobalAvgPool(name="avgpool")]
    if pooling == "max":
        return [GlobalMaxPool(name="maxpool")]
    return []


def check_dropout(owner: str, dropout: Any) -> float:
    return check_fraction(owner, "dropout", dropout)


def classifier_dense(units: int, dtype: Any) -> Layer:
    """A ``Linear`` of torchvision's VGG/MobileNetV2 classifiers: ``normal(0, 0.01)`` weight, zero bias."""
    return Dense(units, kernel_init=SMALL_NORMAL, dtype=dtype)
