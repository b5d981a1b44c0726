"""A BERT encoder laid out as Hugging Face's ``BertModel``, so its safetensors weights load unchanged."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fnn._core import Layer, check_name, default_name
from fnn.layers._combinators import Sequential
from fnn.layers._recurrent import Embedding
from fnn.models._common import module
from fnn.models._transformer import (
    HF_INIT,
    attention,
    check_activation,
    check_config,
    check_heads,
    dense,
    layer_norm,
    padding_keep,
    token_inputs,
)


def _embeddings(vocab: int, hidden: int, positions: int, types: int, eps: float, rate: float, dtype: Any):
    """``BertEmbeddings``: word + token-type + position embeddings, LayerNorm, dropout."""
    layers = {
        "word_embeddings": Embedding(
            vocab, hidden, embeddings_init=HF_INIT, dtype=dtype, name="word_embeddings"
        ),
        "position_embeddings": Embedding(
            positions, hidden, embeddings_init=HF_INIT, dtype=dtype, name="position_embeddings"
        ),
        "token_type_embeddings": Embedding(
            types, hidden, embeddings_init=HF_INIT, dtype=dtype, name="token_type_embeddings"
        ),
        "LayerNorm": layer_norm(eps, "LayerNorm", dtype),
    }

    def forward(ctx: Any, x: Any) -> jax.Array:
        ids, token_types = x
        positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
        h = ctx("word_embeddings", ids) + ctx("token_type_embeddings", token_types)
        h = h + ctx("position_embeddings", positions)
        return ctx.dropout(ctx("LayerNorm", h), rate)

    return module("BertEmbeddings", "embeddings", layers, forward)


def _add_norm(kind: str, name: str, hidden: int, eps: float, rate: float, dtype: Any) -> Layer:
    """``BertSelfOutput`` / ``BertOutput``: ``LayerNorm(dropout(dense(h)) + residual)`` of ``(h, residual)``."""
    layers = {"dense": dense(hidden, "dense", dtype), "LayerNorm": layer_norm(eps, "LayerNorm", dtype)}

    def forward(ctx: Any, x: Any) -> jax.Array:
        h, residual = x
        return ctx("LayerNorm", ctx.dropout(ctx("dense", h), rate) + residual)

    return module(kind, name, layers, forward)


def _layer(
    hidden: int, heads: int, inner: int, act: Any, eps: float, rate: float, attn_rate: float, dtype: Any
):
    """``BertLayer`` (post-norm): ``(h, mask) -> (h, mask)``."""
    self_attention = module(
        "BertSelfAttention",
        "self",
        {part: dense(hidden, part, dtype) for part in ("query", "key", "value")},
        lambda ctx, x: attention(
            ctx("query", x[0]), ctx("key", x[0]), ctx("value", x[0]), heads, padding_keep(x[1]),
            lambda p: ctx.dropout(p, attn_rate),
        ),
    )  # fmt: skip
    bert_attention = module(
        "BertAttention",
        "attention",
        {"self": self_attention, "output": _add_norm("BertSelfOutput", "output", hidden, eps, rate, dtype)},
        lambda ctx, x: ctx("output", (ctx("self", x), x[0])),
    )
    intermediate = module(
        "BertIntermediate",
        "intermediate",
        {"dense": dense(inner, "dense", dtype)},
        lambda ctx, h: act(ctx("dense", h)),
    )
    layers = {
        "attention": bert_attention,
        "intermediate": intermediate,
        "output": _add_norm("BertOutput", "output", hidden, eps, rate, dtype),
    }

    def forward(ctx: Any, x: Any) -> tuple[jax.Array, jax.Array]:
        h, mask = x
        a = ctx("attention", (h, mask))
        return ctx("output", (ctx("intermediate", a), a)), mask

    return module("BertLayer", default_name("BertLayer"), layers, forward)


def bert(
    *,
    vocab_size: int = 30522,
    hidden_size: int = 768,
    num_hidden_layers: int = 12,
    num_attention_heads: int = 12,
    intermediate_size: int = 3072,
    hidden_act: str = "gelu",
    hidden_dropout_prob: float = 0.1,
    attention_probs_dropout_prob: float = 0.1,
    max_position_embeddings: int = 512,
    type_vocab_size: int = 2,
    layer_norm_eps: float = 1e-12,
    add_pooling_layer: bool = True,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A BERT encoder laid out as Hugging Face's ``BertModel``, so its weights load unchanged.

    The arguments are ``BertConfig``'s fields, with bert-base-uncased's values
    by default. The params are keyed by Hugging Face's attribute names:
    ``embeddings/{word_embeddings, position_embeddings, token_type_embeddings,
    LayerNorm}``, ``encoder/layer/<block>/attention/self/{query, key, value}``,
    ``.../attention/output/{dense, LayerNorm}``, ``.../intermediate/dense``,
    ``.../output/{dense, LayerNorm}`` and ``pooler/dense``, where the blocks of
    the ``Sequential`` ``encoder/layer`` keep their default names
    (``bert_layer``, ``bert_layer_1``, ...) so that PyTorch numbers them
    (``encoder.layer.0``); a ``BertModel``'s ``state_dict`` or
    ``save_pretrained`` file loads with :func:`fnn.interop.load_torch`. Weights
    of a ``BertFor...`` model are under ``bert.``: load
    ``{k.removeprefix("bert."): v for k, v in read_safetensors(path).items()}``
    with ``ignore=["cls.*", "classifier.*", "qa_outputs.*"]`` (the task heads:
    ``BertForMaskedLM``'s and ``BertForPreTraining``'s ``cls``, the sequence and
    token classifiers' ``classifier``); ``BertForMaskedLM`` has no pooler, so
    build it with ``add_pooling_layer=False``. Other ``BertConfig`` fields are taken
    at their defaults (absolute positions, an encoder: no cross-attention).
    Initialised as Hugging Face does (``normal(0, 0.02)`` weights, zero biases).

    Computation as ``BertModel``'s (post-norm blocks, exact erf GELU,
    ``1/sqrt(head_dim)``-scaled attention; masked keys get the dtype's lowest
    score, as Hugging Face's mask does), with dropout while training
    (``train=True`` then needs a ``key``).

    Args:
        vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
            intermediate_size, max_position_embeddings, type_vocab_size: sizes,
            positive ints; ``hidden_size`` a multiple of ``num_attention_heads``.
        hidden_act: ``"gelu"`` (exact), ``"gelu_new"`` (tanh approximation) or ``"relu"``.
        hidden_dropout_prob, attention_probs_dropout_prob: dropout rates in ``[0, 1)``.
        layer_norm_eps: the LayerNorms' epsilon (Hugging Face's ``1e-12``).
        add_pooling_layer: add ``pooler`` (dense + tanh on the first token), as
            ``BertModel`` does by default.
        dtype: the params' dtype.
        name: layer name; ``"bert"`` by default.

    Returns:
        A :class:`~fnn.Layer` taking integer token ids ``(batch, T)`` (``T <=
        max_position_embeddings``) or a dict ``{"input_ids", "attention_mask",
        "token_type_ids"}`` of ``(batch, T)`` arrays (the last two optional; the
        mask is integer or bool, nonzero for tokens to attend to). It returns
        ``last_hidden_state`` ``(batch, T, hidden_size)``, or with the pooler
        the tuple ``(last_hidden_state, pooler_output (batch, hidden_size))``
        (Hugging Face's output as a tuple). Its per-example input shape is
        ``fnn.Shape((T,), jnp.int32)`` or a dict of those.

    Raises:
        ValueError: for bad config values, and in ``apply`` for too long a
            sequence, unknown dict keys or a mask of another shape.
        TypeError: in ``apply``, for ids that are not integers.

    Examples:
        Save the weights once as safetensors, outside fnn, then load them::

            BertModel.from_pretrained("bert-base-uncased").save_pretrained("bert")  # transformers
            model = models.bert()
            params, state, report = interop.load_torch(model, fnn.Shape((128,), jnp.int32), "bert/model.safetensors")
            (hidden, pooled), _ = model.apply(params, state, tokenizer_output, train=False)

        >>> import jax, jax.numpy as jnp, fnn
        >>> from fnn.models import bert
        >>> model = bert(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
        ...              intermediate_size=16, max_position_embeddings=16)
        >>> tokens = fnn.Shape((6,), jnp.int32)
        >>> fnn.output_shape(model, {"input_ids": tokens, "attention_mask": tokens})
        ((6, 8), (8,))
        >>> params, state = jax.eval_shape(lambda key: model.init(key, tokens), jax.random.key(0))
        >>> sorted(params["encoder"]["layer"]), sorted(params["encoder"]["layer"]["bert_layer"]["attention"])
        (['bert_layer', 'bert_layer_1'], ['output', 'self'])
    """
    kind = "BertModel"
    name = check_name(kind, name or "bert")
    owner = f"{kind} '{name}'"
    ints = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": max_position_embeddings,
        "type_vocab_size": type_vocab_size,
    }
    rates = {
        "hidden_dropout_prob": hidden_dropout_prob,
        "attention_probs_dropout_prob": attention_probs_dropout_prob,
    }
    check_config(owner, ints, rates, layer_norm_eps)
    check_heads(owner, "hidden_size", hidden_size, "num_attention_heads", num_attention_heads)
    act = check_activation(owner, "hidden_act", hidden_act)
    if not isinstance(add_pooling_layer, bool):
        raise TypeError(f"{owner}: add_pooling_layer must be a bool, got {add_pooling_layer!r}")
    rate, eps = float(hidden_dropout_prob), float(layer_norm_eps)
    blocks = [
        _layer(hidden_size, num_attention_heads, intermediate_size, act, eps, rate,
               float(attention_probs_dropout_prob), dtype)
        for _ in range(num_hidden_layers)
    ]  # fmt: skip
    layers = {
        "embeddings": _embeddings(
            vocab_size, hidden_size, max_position_embeddings, type_vocab_size, eps, rate, dtype
        ),
        "encoder": module(
            "BertEncoder",
            "encoder",
            {"layer": Sequential(blocks, name="layer")},
            lambda ctx, x: ctx("layer", x)[0],
        ),
    }
    if add_pooling_layer:
        layers["pooler"] = module(
            "BertPooler", "pooler", {"dense": dense(hidden_size, "dense", dtype)},
            lambda ctx, h: jnp.tanh(ctx("dense", h[:, 0])),
        )  # fmt: skip
    keys = ("input_ids", "attention_mask", "token_type_ids")

    def forward(ctx: Any, x: Any) -> Any:
        ids, mask, token_types = token_inputs(kind, name, x, keys, max_position_embeddings)
        h = ctx("encoder", (ctx("embeddings", (ids, token_types)), mask))
        return (h, ctx("pooler", h)) if add_pooling_layer else h

    return module(kind, name, layers, forward)
