"""ViT-Tiny laid out as Hugging Face's ``ViTModel`` / ``ViTForImageClassification``, so its weights load unchanged."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fnn._checks import check_int
from fnn._core import Layer, check_name, default_name
from fnn.layers._combinators import Sequential
from fnn.layers._conv import Conv2D
from fnn.models._common import module, normalized_images
from fnn.models._transformer import (
    HF_INIT,
    attention,
    check_activation,
    check_config,
    check_heads,
    dense,
    layer_norm,
)

VIT_MEAN = (0.5, 0.5, 0.5)
VIT_STD = (0.5, 0.5, 0.5)


def vit_preprocess_input(x: Any) -> jax.Array:
    """Hugging Face's ``ViTImageProcessor`` normalisation of RGB images with values in ``[0, 255]``.

    ``(x / 255 - 0.5) / 0.5`` (``image_mean = image_std = 0.5``), so values lie
    in ``[-1, 1]``. The processor first resizes to the model's size (224x224,
    bilinear): do that before, e.g. with ``jax.image.resize(x, (n, 224, 224,
    3), "bilinear")`` (PIL's resampling differs slightly).

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
        >>> from fnn.models import vit_preprocess_input
        >>> vit_preprocess_input(jnp.array([[[[0, 255, 255]]]], jnp.uint8))
        Array([[[[-1.,  1.,  1.]]]], dtype=float32)
    """
    return normalized_images("vit_preprocess_input", x, VIT_MEAN, VIT_STD)


def _embeddings(image: int, patch: int, hidden: int, rate: float, dtype: Any) -> Layer:
    """``ViTEmbeddings``: patches, the ``[CLS]`` token in front, position embeddings, dropout.

    Its own params ``cls_token (1, 1, hidden)`` and ``position_embeddings (1,
    patches + 1, hidden)`` have Hugging Face's shapes; the interop layout of
    kind ``"ViTEmbeddings"`` maps them with ``patch_embeddings.projection``.
    """
    grid = image // patch
    projection = Conv2D(hidden, patch, strides=patch, kernel_init=HF_INIT, dtype=dtype, name="projection")

    def patches(ctx: Any, x: jax.Array) -> jax.Array:
        y = ctx("projection", x)  # (batch, grid, grid, hidden): row-major, as torch's flatten(2)
        return y.reshape(y.shape[0], grid * grid, hidden)

    patch_embeddings = module("ViTPatchEmbeddings", "patch_embeddings", {"projection": projection}, patches)
    own = {
        "cls_token": lambda key: HF_INIT(key, (1, 1, hidden), dtype),
        "position_embeddings": lambda key: HF_INIT(key, (1, grid * grid + 1, hidden), dtype),
    }

    def forward(ctx: Any, x: jax.Array) -> jax.Array:
        h = ctx("patch_embeddings", x)
        cls = jnp.broadcast_to(ctx.params["cls_token"], (h.shape[0], 1, hidden))
        h = jnp.concatenate([cls, h], axis=1) + ctx.params["position_embeddings"]
        return ctx.dropout(h, rate)

    return module("ViTEmbeddings", "embeddings", {"patch_embeddings": patch_embeddings}, forward, own)


def _layer(hidden: int, heads: int, inner: int, act: Any, eps: float, rate: float, attn_rate: float,
           qkv_bias: bool, dtype: Any) -> Layer:  # fmt: skip
    """``ViTLayer`` (pre-norm)."""
    self_attention = module(
        "ViTSelfAttention",
        "attention",
        {part: dense(hidden, part, dtype, use_bias=qkv_bias) for part in ("query", "key", "value")},
        lambda ctx, h: attention(
            ctx("query", h), ctx("key", h), ctx("value", h), heads, jnp.ones((), bool),
            lambda p: ctx.dropout(p, attn_rate),
        ),
    )  # fmt: skip
    self_output = module(
        "ViTSelfOutput", "output", {"dense": dense(hidden, "dense", dtype)},
        lambda ctx, h: ctx.dropout(ctx("dense", h), rate),
    )  # fmt: skip
    vit_attention = module(
        "ViTAttention", "attention", {"attention": self_attention, "output": self_output},
        lambda ctx, h: ctx("output", ctx("attention", h)),
    )  # fmt: skip
    intermediate = module(
        "ViTIntermediate", "intermediate", {"dense": dense(inner, "dense", dtype)},
        lambda ctx, h: act(ctx("dense", h)),
    )  # fmt: skip
    output = module(
        "ViTOutput", "output", {"dense": dense(hidden, "dense", dtype)},
        lambda ctx, x: ctx.dropout(ctx("dense", x[0]), rate) + x[1],
    )  # fmt: skip
    layers = {
        "attention": vit_attention,
        "intermediate": intermediate,
        "output": output,
        "layernorm_before": layer_norm(eps, "layernorm_before", dtype),
        "layernorm_after": layer_norm(eps, "layernorm_after", dtype),
    }

    def forward(ctx: Any, h: jax.Array) -> jax.Array:
        h = ctx("attention", ctx("layernorm_before", h)) + h
        return ctx("output", (ctx("intermediate", ctx("layernorm_after", h)), h))

    return module("VitLayer", default_name("VitLayer"), layers, forward)


def vit(
    *,
    image_size: int = 224,
    patch_size: int = 16,
    num_channels: int = 3,
    hidden_size: int = 192,
    num_hidden_layers: int = 12,
    num_attention_heads: int = 3,
    intermediate_size: int = 768,
    hidden_act: str = "gelu",
    hidden_dropout_prob: float = 0.0,
    attention_probs_dropout_prob: float = 0.0,
    layer_norm_eps: float = 1e-12,
    qkv_bias: bool = True,
    include_top: bool = True,
    num_classes: int = 1000,
    add_pooling_layer: bool = False,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A Vision Transformer laid out as Hugging Face's ``ViTForImageClassification`` or ``ViTModel``.

    The arguments are ``ViTConfig``'s fields, with ViT-Tiny's values by default
    (patch 16, 224x224, hidden 192, 12 layers, 3 heads, MLP 768). With
    ``include_top`` the model is a ``ViTForImageClassification``: the encoder
    is the child ``vit`` and ``classifier`` (a Dense on the ``[CLS]`` token's
    final state) gives the logits; its weights are named ``vit.embeddings...``,
    ``classifier.weight``. Without it, a ``ViTModel`` (no prefix): the params
    ``embeddings`` (``cls_token``, ``position_embeddings``,
    ``patch_embeddings/projection``), ``encoder/layer/<block>/{attention/
    attention/{query, key, value}, attention/output/dense, intermediate/dense,
    output/dense, layernorm_before, layernorm_after}``, ``layernorm`` and,
    with ``add_pooling_layer``, ``pooler/dense``. The blocks of the
    ``Sequential`` ``encoder/layer`` keep their default names (``vit_layer``,
    ``vit_layer_1``, ...) so that PyTorch numbers them (``encoder.layer.0``).
    Files written by ``save_pretrained`` (the hub's too; transformers 5
    renames the modules internally but writes these names) load with
    :func:`fnn.interop.load_torch`; a classifier's file loads into
    ``include_top=False`` as ``{k.removeprefix("vit."): v ...}`` with
    ``ignore="classifier.*"``, and into a new head with ``keep="classifier"``
    and ``ignore="classifier.*"``. Initialised as Hugging Face does.

    The patch embedding is a ``Conv2D`` on channels-last images (its PyTorch
    weight converts as any ``Conv2d``'s); computation as Hugging Face's:
    pre-norm blocks, exact GELU, ``1/sqrt(head_dim)``-scaled attention.
    Inputs are normalised as :func:`vit_preprocess_input` does.

    Args:
        image_size, patch_size, num_channels, hidden_size, num_hidden_layers,
            num_attention_heads, intermediate_size: sizes, positive ints;
            ``image_size`` a multiple of ``patch_size`` and ``hidden_size`` of
            ``num_attention_heads``.
        hidden_act: ``"gelu"`` (exact), ``"gelu_new"`` or ``"relu"``.
        hidden_dropout_prob, attention_probs_dropout_prob: dropout rates in ``[0, 1)``.
        layer_norm_eps: the LayerNorms' epsilon (``1e-12``).
        qkv_bias: whether query, key and value have biases.
        include_top: the classifier (``ViTForImageClassification``) or not (``ViTModel``).
        num_classes: the classifier's outputs (``config.num_labels``).
        add_pooling_layer: ``ViTModel``'s ``pooler`` (dense + tanh on the
            ``[CLS]`` token), only without the top. ``False`` by default,
            unlike ``ViTModel``: the published classifiers have none.
        dtype: the params' dtype.
        name: layer name; ``"vit"`` by default.

    Returns:
        A :class:`~fnn.Layer` taking images ``(batch, image_size, image_size,
        num_channels)`` (Hugging Face's ``pixel_values`` transposed from NCHW)
        of ``dtype``, and returning logits ``(batch, num_classes)``; without the
        top ``last_hidden_state`` ``(batch, patches + 1, hidden_size)`` or, with
        the pooler, ``(last_hidden_state, pooler_output (batch, hidden_size))``.

    Raises:
        ValueError: for bad config values, and in ``apply`` for images of another size.

    Examples:
        Save the weights once as safetensors, outside fnn, then load them::

            ViTForImageClassification.from_pretrained(checkpoint).save_pretrained("vit")  # transformers
            model = models.vit_tiny()
            params, state, report = interop.load_torch(model, (224, 224, 3), "vit/model.safetensors")
            logits, _ = model.apply(params, state, models.vit_preprocess_input(images), train=False)

        >>> import fnn
        >>> from fnn.models import vit
        >>> model = vit(image_size=32, patch_size=8, hidden_size=12, num_hidden_layers=1,
        ...             num_attention_heads=3, intermediate_size=24, num_classes=10)
        >>> fnn.output_shape(model, (32, 32, 3))
        (10,)
        >>> fnn.output_shape(vit(image_size=32, patch_size=8, num_hidden_layers=1, include_top=False), (32, 32, 3))
        (17, 192)
    """
    kind = "ViTForImageClassification" if include_top is True else "ViTModel"
    name = check_name(kind, name or "vit")
    owner = f"{kind} '{name}'"
    ints = {
        "image_size": image_size,
        "patch_size": patch_size,
        "num_channels": num_channels,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "intermediate_size": intermediate_size,
        "num_classes": num_classes,
    }
    rates = {
        "hidden_dropout_prob": hidden_dropout_prob,
        "attention_probs_dropout_prob": attention_probs_dropout_prob,
    }
    check_config(owner, ints, rates, layer_norm_eps)
    check_heads(owner, "hidden_size", hidden_size, "num_attention_heads", num_attention_heads)
    if image_size % patch_size:
        raise ValueError(f"{owner}: image_size={image_size} must be a multiple of patch_size={patch_size}")
    act = check_activation(owner, "hidden_act", hidden_act)
    for arg, value in (
        ("qkv_bias", qkv_bias),
        ("include_top", include_top),
        ("add_pooling_layer", add_pooling_layer),
    ):
        if not isinstance(value, bool):
            raise TypeError(f"{owner}: {arg} must be a bool, got {value!r}")
    if include_top and add_pooling_layer:
        raise ValueError(
            f"{owner}: add_pooling_layer=True needs include_top=False (ViTForImageClassification has no pooler)"
        )
    if include_top:
        num_classes = check_int(owner, "num_classes", num_classes)
        base = vit(
            image_size=image_size, patch_size=patch_size, num_channels=num_channels, hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size, hidden_act=hidden_act, hidden_dropout_prob=hidden_dropout_prob,
            attention_probs_dropout_prob=attention_probs_dropout_prob, layer_norm_eps=layer_norm_eps,
            qkv_bias=qkv_bias, include_top=False, dtype=dtype, name="vit",
        )  # fmt: skip
        layers = {"vit": base, "classifier": dense(num_classes, "classifier", dtype)}
        return module(kind, name, layers, lambda ctx, x: ctx("classifier", ctx("vit", x)[:, 0]))

    rate, eps = float(hidden_dropout_prob), float(layer_norm_eps)
    blocks = [
        _layer(hidden_size, num_attention_heads, intermediate_size, act, eps, rate,
               float(attention_probs_dropout_prob), qkv_bias, dtype)
        for _ in range(num_hidden_layers)
    ]  # fmt: skip
    layers = {
        "embeddings": _embeddings(image_size, patch_size, hidden_size, rate, dtype),
        "encoder": module(
            "ViTEncoder",
            "encoder",
            {"layer": Sequential(blocks, name="layer")},
            lambda ctx, h: ctx("layer", h),
        ),
        "layernorm": layer_norm(eps, "layernorm", dtype),
    }
    if add_pooling_layer:
        layers["pooler"] = module(
            "ViTPooler", "pooler", {"dense": dense(hidden_size, "dense", dtype)},
            lambda ctx, h: jnp.tanh(ctx("dense", h[:, 0])),
        )  # fmt: skip
    expected = (image_size, image_size, num_channels)

    def forward(ctx: Any, x: Any) -> Any:
        if jnp.ndim(x) != 4 or tuple(jnp.shape(x)[1:]) != expected:
            raise ValueError(
                f"{owner} expects images (batch, {', '.join(map(str, expected))}) (channels last: Hugging "
                f"Face's pixel_values transposed from NCHW), got shape {tuple(jnp.shape(x))}"
            )
        h = ctx("layernorm", ctx("encoder", ctx("embeddings", x)))
        return (h, ctx("pooler", h)) if add_pooling_layer else h

    return module(kind, name, layers, forward)


def vit_tiny(
    *,
    num_classes: int = 1000,
    include_top: bool = True,
    add_pooling_layer: bool = False,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """ViT-Tiny/16 at 224x224 (hidden 192, 12 layers, 3 heads, MLP 768): :func:`vit` with its defaults.

    The configuration of ViT-Tiny (DeiT-Ti's architecture); 5.7M params with a 1000-class top.

    Examples:
        >>> from fnn.models import vit_tiny
        >>> model = vit_tiny(num_classes=10)  # fnn.output_shape(model, (224, 224, 3)) == (10,)
        >>> model.kind, model.name
        ('ViTForImageClassification', 'vit')
    """
    return vit(num_classes=num_classes, include_top=include_top, add_pooling_layer=add_pooling_layer,
               dtype=dtype, name=name)  # fmt: skip
