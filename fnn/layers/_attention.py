"""Attention: MultiHeadAttention, positional embeddings, TransformerEncoderBlock.

Sequences are ``(batch, time, features)``; like the RNNs, these layers take
``x`` or ``(x, mask)`` with a bool padding mask ``(batch, time)`` (``True`` =
a real token) and pass the mask on, so they stack in a :func:`~fnn.Sequential`
after ``Embedding(..., mask_index=0)``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fnn import activations, initializers
from fnn._checks import check_fraction
from fnn._core import Layer, check_input_dtype, check_name, check_positive_int, make_layer, require_key
from fnn.layers._norm import LayerNorm


def _unpack(kind: str, name: str, x: Any) -> tuple[jax.Array, jax.Array | None]:
    """``x`` or ``(x, mask)`` -> (sequences, bool mask or None), both checked."""
    seqs, mask = (x[0], x[1]) if isinstance(x, (tuple, list)) else (x, None)
    seqs = jnp.asarray(seqs)
    if seqs.ndim != 3:
        raise ValueError(f"{kind} '{name}' expects inputs of shape (batch, time, features), got {seqs.shape}")
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != seqs.shape[:2] or mask.dtype != jnp.bool_:
            raise ValueError(
                f"{kind} '{name}': the mask must be bool (batch, time) = {seqs.shape[:2]}, got {mask.dtype} {mask.shape}"
            )
    return seqs, mask


def _repack(y: jax.Array, mask: jax.Array | None) -> Any:
    return y if mask is None else (y, mask)


def _per_example_features(kind: str, name: str, input_shape: Any) -> tuple[int, int]:
    shape = input_shape[0] if input_shape and isinstance(input_shape[0], tuple) else input_shape
    if len(shape) != 2:
        raise ValueError(
            f"{kind} '{name}' expects a per-example input_shape (time, features), got {tuple(shape)}"
        )
    return shape[0], shape[1]


def MultiHeadAttention(
    num_heads: int,
    *,
    key_dim: int | None = None,
    value_dim: int | None = None,
    output_dim: int | None = None,
    dropout: float = 0.0,
    causal: bool = False,
    use_bias: bool = True,
    kernel_init: Any = "glorot_uniform",
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Multi-head self-attention, ``softmax(q k^T / sqrt(key_dim)) v`` per head, as in Keras.

    Args:
        num_heads: attention heads.
        key_dim: size of each head's queries and keys; ``features // num_heads``
            by default (then the heads must divide the features).
        value_dim: size of each head's values; ``key_dim`` by default.
        output_dim: output features; the input's by default.
        dropout: dropout rate on the attention weights (training only, needs a key).
        causal: position ``t`` attends to positions ``<= t`` only.
        use_bias: biases on the projections.
        kernel_init: initialiser of the projections.
        dtype: parameter dtype.
        name: layer name; ``"multi_head_attention"`` by default.

    Input: ``x`` ``(batch, time, features)`` or ``(x, mask)``; padded keys
    (``mask`` False) receive no attention. Output: ``(batch, time, output_dim)``
    (with the mask passed on). Params ``{"query", "key", "value": {"w": (F, heads,
    dim), "b": (heads, dim)}, "output": {"w": (heads, value_dim, output_dim), "b"}}``
    (Keras's EinsumDense layout).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> mha = MultiHeadAttention(2, causal=True)
        >>> params, state = mha.init(jax.random.key(0), (5, 8))
        >>> mha.apply(params, state, jnp.ones((3, 5, 8)), train=False)[0].shape
        (3, 5, 8)
    """
    kind = "MultiHeadAttention"
    name = check_name(kind, name or "multi_head_attention")
    num_heads = check_positive_int(kind, name, "num_heads", num_heads)
    # Optional sizes: None means "derived from the input", never a silent fallback from 0.
    key_dim, value_dim, output_dim = (
        None if v is None else check_positive_int(kind, name, arg, v)
        for arg, v in (("key_dim", key_dim), ("value_dim", value_dim), ("output_dim", output_dim))
    )
    dropout = check_fraction(f"{kind} '{name}'", "dropout", dropout)
    w_init = initializers.get(kernel_init)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        _, features = _per_example_features(kind, name, input_shape)
        if key_dim is None and features % num_heads:
            raise ValueError(
                f"{kind} '{name}': num_heads ({num_heads}) must divide the features ({features}) "
                "when key_dim is not given"
            )
        k_dim = key_dim or features // num_heads
        v_dim, out_dim = value_dim or k_dim, output_dim or features
        keys = jax.random.split(key, 4)

        def projection(k: jax.Array, shape: tuple[int, ...], bias: tuple[int, ...]) -> dict:
            p = {"w": w_init(k, shape, dtype)}
            if use_bias:
                p["b"] = jnp.zeros(bias, dtype)
            return p

        params = {
            "query": projection(keys[0], (features, num_heads, k_dim), (num_heads, k_dim)),
            "key": projection(keys[1], (features, num_heads, k_dim), (num_heads, k_dim)),
            "value": projection(keys[2], (features, num_heads, v_dim), (num_heads, v_dim)),
            "output": projection(keys[3], (num_heads, v_dim, out_dim), (out_dim,)),
        }
        return params, {}

    def project(p: dict, x: jax.Array) -> jax.Array:
        y = jnp.einsum("btf,fhd->bthd", x, p["w"])
        return y + p["b"][None, None] if "b" in p else y

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        seqs, mask = _unpack(kind, name, x)
        check_input_dtype(kind, name, seqs, params["query"]["w"].dtype)
        features = params["query"]["w"].shape[0]
        if seqs.shape[-1] != features:
            raise ValueError(
                f"{kind} '{name}' expects inputs of shape (batch, time, {features}), got {seqs.shape}"
            )
        q, k, v = (project(params[part], seqs) for part in ("query", "key", "value"))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        time = seqs.shape[1]
        allowed = jnp.ones((1, 1, time, time), bool)
        if causal:
            allowed = allowed & jnp.tril(jnp.ones((time, time), bool))[None, None]
        if mask is not None:
            allowed = allowed & mask[:, None, None, :]
        logits = jnp.where(allowed, logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1)
        if train and dropout > 0:
            keep = jax.random.bernoulli(require_key(kind, name, key), 1 - dropout, weights.shape)
            weights = jnp.where(keep, weights / (1 - dropout), jnp.zeros_like(weights))
        attended = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        y = jnp.einsum("bqhd,hdo->bqo", attended, params["output"]["w"])
        if "b" in params["output"]:
            y = y + params["output"]["b"][None, None]
        return _repack(y, mask), state

    return make_layer(kind, name, init, apply)


def sinusoidal_positions(time: int, features: int, dtype: Any = jnp.float32) -> jax.Array:
    """The fixed ``(time, features)`` sine/cosine encoding of Vaswani et al.

    Even features hold ``sin(t / 10000^(2i/F))``, odd ones the cosine.
    """
    positions = jnp.arange(time, dtype=jnp.float32)[:, None]
    rates = jnp.exp(-math.log(10000.0) * jnp.arange(0, features, 2, dtype=jnp.float32) / features)[None, :]
    table = jnp.zeros((time, features), jnp.float32)
    table = table.at[:, 0::2].set(jnp.sin(positions * rates))
    table = table.at[:, 1::2].set(jnp.cos(positions * rates)[:, : features // 2])
    return table.astype(dtype)


def SinusoidalPositionalEmbedding(*, name: str | None = None) -> Layer:
    """Adds :func:`sinusoidal_positions` to ``(batch, time, features)`` inputs (no params)."""
    kind = "SinusoidalPositionalEmbedding"
    name = check_name(kind, name or "sinusoidal_positional_embedding")

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        del key
        _per_example_features(kind, name, input_shape)
        return {}, {}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del params, train, key
        seqs, mask = _unpack(kind, name, x)
        check_input_dtype(kind, name, seqs, jnp.floating)
        table = sinusoidal_positions(seqs.shape[1], seqs.shape[2], seqs.dtype)
        return _repack(seqs + table[None], mask), state

    return make_layer(kind, name, init, apply)


def LearnedPositionalEmbedding(
    max_length: int, *, dtype: Any = jnp.float32, name: str | None = None
) -> Layer:
    """Adds a learned ``(max_length, features)`` table's first ``time`` rows to the inputs.

    Raises:
        ValueError: for sequences longer than ``max_length``.
    """
    kind = "LearnedPositionalEmbedding"
    name = check_name(kind, name or "learned_positional_embedding")
    max_length = check_positive_int(kind, name, "max_length", max_length)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        _, features = _per_example_features(kind, name, input_shape)
        return {"table": 0.02 * jax.random.normal(key, (max_length, features), dtype)}, {}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        del train, key
        seqs, mask = _unpack(kind, name, x)
        check_input_dtype(kind, name, seqs, params["table"].dtype)
        if seqs.shape[1] > max_length or seqs.shape[2] != params["table"].shape[1]:
            raise ValueError(
                f"{kind} '{name}' holds positions for (time <= {max_length}, features {params['table'].shape[1]}), "
                f"got inputs {seqs.shape}"
            )
        return _repack(seqs + params["table"][None, : seqs.shape[1]], mask), state

    return make_layer(kind, name, init, apply)


def TransformerEncoderBlock(
    num_heads: int,
    ff_dim: int,
    *,
    dropout: float = 0.1,
    norm_first: bool = True,
    causal: bool = False,
    activation: Any = "relu",
    epsilon: float = 1e-5,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Self-attention and a feed-forward network, each in a residual branch with LayerNorm.

    Pre-norm (``norm_first=True``, the stable default): ``x + attn(norm(x))``,
    then ``x + ff(norm(x))``. Post-norm (the original Transformer):
    ``norm(x + attn(x))``, then ``norm(x + ff(x))``. Dropout follows the
    attention and the feed-forward network in training.

    Args:
        num_heads: attention heads; they must divide the features.
        ff_dim: hidden width of the feed-forward network.
        dropout: dropout rate (needs a key in training when positive).
        norm_first: pre-norm (True) or post-norm (False).
        causal: causal self-attention (for language models).
        activation: of the feed-forward network.
        epsilon: of the LayerNorms.
        dtype: dtype of all its params.
        name: layer name; ``"transformer_encoder_block"`` by default.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> block = TransformerEncoderBlock(2, 16)
        >>> params, state = block.init(jax.random.key(0), (6, 8))
        >>> sorted(params)
        ['attention', 'ff_in', 'ff_out', 'norm_attention', 'norm_ff']
    """
    kind = "TransformerEncoderBlock"
    name = check_name(kind, name or "transformer_encoder_block")
    ff_dim = check_positive_int(kind, name, "ff_dim", ff_dim)
    dropout = check_fraction(f"{kind} '{name}'", "dropout", dropout)
    attention = MultiHeadAttention(num_heads, causal=causal, dtype=dtype, name="attention")
    norms = {k: LayerNorm(epsilon=epsilon, dtype=dtype) for k in ("norm_attention", "norm_ff")}
    act = activations.get(activation)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        _, features = _per_example_features(kind, name, input_shape)
        keys = jax.random.split(key, 3)
        glorot = jax.nn.initializers.glorot_uniform()
        params = {
            "attention": attention.init(keys[0], input_shape)[0],
            **{k: norm.init(key, (features,))[0] for k, norm in norms.items()},
            "ff_in": {"w": glorot(keys[1], (features, ff_dim), dtype), "b": jnp.zeros((ff_dim,), dtype)},
            "ff_out": {"w": glorot(keys[2], (ff_dim, features), dtype), "b": jnp.zeros((features,), dtype)},
        }
        return params, {}

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        seqs, mask = _unpack(kind, name, x)
        check_input_dtype(kind, name, seqs, params["ff_in"]["w"].dtype)
        features = params["ff_in"]["w"].shape[0]
        if seqs.shape[-1] != features:
            raise ValueError(
                f"{kind} '{name}' expects inputs of shape (batch, time, {features}), got {seqs.shape}"
            )
        keys = [None, None, None] if key is None else list(jax.random.split(key, 3))
        if train and dropout > 0 and key is None:
            require_key(kind, name, key)

        def norm(part: str, h: jax.Array) -> jax.Array:
            return norms[part].apply(params[part], {}, h, train=False)[0]

        def drop(h: jax.Array, k: Any) -> jax.Array:
            if not train or dropout == 0:
                return h
            keep = jax.random.bernoulli(k, 1 - dropout, h.shape)
            return jnp.where(keep, h / (1 - dropout), jnp.zeros_like(h))

        def attend(h: jax.Array) -> jax.Array:
            y, _ = attention.apply(params["attention"], {}, _repack(h, mask), train=train, key=keys[0])
            return drop(y[0] if isinstance(y, tuple) else y, keys[1])

        def feed_forward(h: jax.Array) -> jax.Array:
            hidden = act(h @ params["ff_in"]["w"] + params["ff_in"]["b"][None, None])
            return drop(hidden @ params["ff_out"]["w"] + params["ff_out"]["b"][None, None], keys[2])

        h = seqs
        if norm_first:
            h = h + attend(norm("norm_attention", h))
            h = h + feed_forward(norm("norm_ff", h))
        else:
            h = norm("norm_attention", h + attend(h))
            h = norm("norm_ff", h + feed_forward(h))
        return _repack(h, mask), state

    return make_layer(kind, name, init, apply)
