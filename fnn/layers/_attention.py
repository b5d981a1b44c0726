"""Attention: MultiHeadAttention, positional embeddings, TransformerEncoderBlock.

Sequences are ``(batch, time, features)``; like the RNNs, these layers take
``x`` or ``(x, mask)`` with a bool padding mask ``(batch, time)`` (``True`` =
a real token) and pass the mask on, so they stack in a :func:`~fnn.Sequential`
after ``Embedding(..., mask_index=0)``. ``MultiHeadAttention`` also takes a dict
``{"query", "value", "key", "query_mask", "value_mask", "attention_mask"}`` for
cross-attention and arbitrary masks, as Keras's call arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

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


# Keys of the dict (cross-attention) input, named as Keras's MultiHeadAttention.call arguments.
_CROSS_KEYS = ("query", "value", "key", "query_mask", "value_mask", "attention_mask")


def _check_cross_keys(kind: str, name: str, x: Mapping) -> None:
    unknown = set(x) - set(_CROSS_KEYS)
    if "query" not in x or "value" not in x or unknown:
        raise ValueError(
            f"{kind} '{name}': a dict input needs 'query' and 'value' and may have 'key', 'query_mask', "
            f"'value_mask', 'attention_mask'; got {sorted(x)}"
        )


def _cross_features(kind: str, name: str, input_shape: Mapping) -> dict[str, int]:
    """Per-example dict input_shape -> the feature sizes of query, key and value, checked."""
    _check_cross_keys(kind, name, input_shape)
    shapes = {part: tuple(input_shape[part]) for part in ("query", "value")}
    shapes["key"] = shapes["value"] if input_shape.get("key") is None else tuple(input_shape["key"])
    for part, shape in shapes.items():
        if len(shape) != 2:
            raise ValueError(
                f"{kind} '{name}' expects a per-example input_shape (time, features) for '{part}', got {shape}"
            )
    if shapes["key"][0] != shapes["value"][0]:
        raise ValueError(
            f"{kind} '{name}': key and value must have the same time axis, "
            f"got key {shapes['key']} and value {shapes['value']}"
        )
    return {part: shape[1] for part, shape in shapes.items()}


class _Attending(NamedTuple):
    """A checked input: the sequences, the masks, and how to pack the output."""

    query: jax.Array
    key: jax.Array
    value: jax.Array
    query_mask: jax.Array | None  # (batch, Tq): False rows attend to nothing
    value_mask: jax.Array | None  # (batch, Tkv): False keys receive no attention
    attention_mask: jax.Array | None  # (batch, Tq, Tkv) or (batch, heads, Tq, Tkv)
    passed_on: jax.Array | None  # the mask the output carries
    form: str  # "array", "tuple" or "dict"


def _check_mask(kind: str, name: str, arg: str, mask: Any, expected: tuple[int, ...], axes: str) -> jax.Array:
    mask = jnp.asarray(mask)
    if mask.shape != expected or mask.dtype != jnp.bool_:
        raise ValueError(
            f"{kind} '{name}': {arg} must be bool {axes} = {expected}, got {mask.dtype} {mask.shape}"
        )
    return mask


def _attention_inputs(kind: str, name: str, num_heads: int, x: Any) -> _Attending:
    """``x`` | ``(x, mask)`` | ``{"query", "value", ...}`` -> :class:`_Attending`, shapes checked."""
    if not isinstance(x, Mapping):
        seqs, mask = _unpack(kind, name, x)
        form = "tuple" if isinstance(x, (tuple, list)) else "array"
        return _Attending(seqs, seqs, seqs, None, mask, None, mask, form)
    _check_cross_keys(kind, name, x)
    query, value = jnp.asarray(x["query"]), jnp.asarray(x["value"])
    key = value if x.get("key") is None else jnp.asarray(x["key"])
    for part, seqs in (("query", query), ("key", key), ("value", value)):
        if seqs.ndim != 3:
            raise ValueError(
                f"{kind} '{name}' expects {part} of shape (batch, time, features), got {seqs.shape}"
            )
    if key.shape[:2] != value.shape[:2] or query.shape[0] != value.shape[0]:
        raise ValueError(
            f"{kind} '{name}': query, key and value must share the batch axis and key and value the time "
            f"axis, got query {query.shape}, key {key.shape}, value {value.shape}"
        )
    (batch, q_time), kv_time = query.shape[:2], value.shape[1]
    query_mask, value_mask, attention_mask = (
        x.get(k) for k in ("query_mask", "value_mask", "attention_mask")
    )
    if query_mask is not None:
        query_mask = _check_mask(kind, name, "query_mask", query_mask, (batch, q_time), "(batch, Tq)")
    if value_mask is not None:
        value_mask = _check_mask(kind, name, "value_mask", value_mask, (batch, kv_time), "(batch, Tkv)")
    if attention_mask is not None:
        attention_mask = jnp.asarray(attention_mask)
        shapes = ((batch, q_time, kv_time), (batch, num_heads, q_time, kv_time))
        if attention_mask.shape not in shapes or attention_mask.dtype != jnp.bool_:
            raise ValueError(
                f"{kind} '{name}': attention_mask must be bool (batch, Tq, Tkv) = {shapes[0]} or "
                f"(batch, heads, Tq, Tkv) = {shapes[1]}, got {attention_mask.dtype} {attention_mask.shape}"
            )
    return _Attending(query, key, value, query_mask, value_mask, attention_mask, query_mask, "dict")


def MultiHeadAttention(
    num_heads: int,
    *,
    key_dim: int | None = None,
    value_dim: int | None = None,
    output_dim: int | None = None,
    dropout: float = 0.0,
    causal: bool = False,
    return_attention_scores: bool = False,
    use_bias: bool = True,
    kernel_init: Any = "glorot_uniform",
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Multi-head attention, ``softmax(q k^T / sqrt(key_dim)) v`` per head, as in Keras.

    Self-attention takes one sequence; cross-attention (Keras's ``mha(query,
    value, key=None, ...)``) takes a dict. Every mask is ``True`` where attention
    is allowed, and all given masks are combined with AND.

    Args:
        num_heads: attention heads.
        key_dim: size of each head's queries and keys; the query's ``features //
            num_heads`` by default (then the heads must divide them).
        value_dim: size of each head's values; ``key_dim`` by default.
        output_dim: output features; the query's by default.
        dropout: dropout rate on the attention weights (training only, needs a key).
        causal: query ``t`` attends to keys ``s <= t`` only (Keras's
            ``use_causal_mask``: the lower triangle of ``(Tq, Tkv)``).
        return_attention_scores: also return the attention weights ``(batch,
            heads, Tq, Tkv)``: after the softmax and the masks, before dropout
            (as Keras 3 returns them).
        use_bias: biases on the projections.
        kernel_init: initialiser of the projections.
        dtype: parameter dtype.
        name: layer name; ``"multi_head_attention"`` by default.

    Inputs, each with its per-example ``input_shape`` for ``init``:

    - ``x`` ``(batch, time, features)``: self-attention.
    - ``(x, mask)`` with a bool ``mask`` ``(batch, time)``: self-attention in
      which padded keys (``mask`` False) receive no attention (padded queries
      still attend, like PyTorch's ``key_padding_mask``); ``init`` takes
      ``((time, features), (time,))``.
    - a dict (Keras's call arguments): ``"query"`` ``(batch, Tq, Fq)`` and
      ``"value"`` ``(batch, Tkv, Fv)``, required; optional ``"key"`` ``(batch,
      Tkv, Fk)`` (``value`` when absent), ``"query_mask"`` ``(batch, Tq)``,
      ``"value_mask"`` ``(batch, Tkv)`` (padded keys) and ``"attention_mask"``
      ``(batch, Tq, Tkv)`` or ``(batch, heads, Tq, Tkv)``, all bool. ``init``
      takes a dict of per-example shapes with the same keys (only the
      sequences' matter, e.g. ``{"query": (Tq, Fq), "value": (Tkv, Fv)}``).

    A query row with no allowed key (say a padded query, or ``causal`` with its
    first keys padded) gets all-zero attention weights, so its output is the
    output bias (zeros without ``use_bias``), as in Keras's masked softmax; never
    NaN. (Keras 3's fused inference path, taken without dropout or returned
    scores, gives such rows a uniform average of all values instead.)

    Output: ``(batch, Tq, output_dim)``; ``(y, mask)`` for ``(x, mask)`` inputs
    and ``(y, query_mask)`` for dict inputs with a ``query_mask``, so masks
    flow on in a :func:`~fnn.Sequential`. With ``return_attention_scores`` the
    output is ``(that, scores)``.

    Params ``{"query": {"w": (Fq, heads, key_dim), "b": (heads, key_dim)}, "key":
    {"w": (Fk, heads, key_dim), "b"}, "value": {"w": (Fv, heads, value_dim), "b":
    (heads, value_dim)}, "output": {"w": (heads, value_dim, output_dim), "b":
    (output_dim,)}}`` (Keras's EinsumDense layout; no ``"b"`` without ``use_bias``).

    Raises:
        ValueError: for a size, dict key, sequence or mask shape (or a mask's
            dtype) that does not fit, naming the layer, the expected and the
            actual value.
        TypeError: for a non-bool ``return_attention_scores``, or sequences
            not in the params' dtype.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> mha = MultiHeadAttention(2, causal=True)
        >>> params, state = mha.init(jax.random.key(0), (5, 8))
        >>> mha.apply(params, state, jnp.ones((3, 5, 8)), train=False)[0].shape
        (3, 5, 8)

        Cross-attention from 4 queries of 8 features to 6 values of 3 features,
        with a per-head mask and the attention weights:

        >>> cross = MultiHeadAttention(2, key_dim=4, return_attention_scores=True)
        >>> params, _ = cross.init(jax.random.key(0), {"query": (4, 8), "value": (6, 3)})
        >>> x = {"query": jnp.ones((3, 4, 8)), "value": jnp.ones((3, 6, 3)),
        ...      "attention_mask": jnp.ones((3, 2, 4, 6), bool)}
        >>> (y, scores), _ = cross.apply(params, {}, x, train=False)
        >>> y.shape, scores.shape
        ((3, 4, 8), (3, 2, 4, 6))
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
    if not isinstance(return_attention_scores, bool):  # it fixes the output's structure
        raise TypeError(
            f"{kind} '{name}': return_attention_scores must be a bool, got {return_attention_scores!r}"
        )
    w_init = initializers.get(kernel_init)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        if isinstance(input_shape, Mapping):
            features = _cross_features(kind, name, input_shape)
            which = "the query features"
        else:
            features = dict.fromkeys(
                ("query", "key", "value"), _per_example_features(kind, name, input_shape)[1]
            )
            which = "the features"
        if key_dim is None and features["query"] % num_heads:
            raise ValueError(
                f"{kind} '{name}': num_heads ({num_heads}) must divide {which} ({features['query']}) "
                "when key_dim is not given"
            )
        k_dim = key_dim or features["query"] // num_heads
        v_dim, out_dim = value_dim or k_dim, output_dim or features["query"]
        keys = jax.random.split(key, 4)

        def projection(k: jax.Array, shape: tuple[int, ...], bias: tuple[int, ...]) -> dict:
            p = {"w": w_init(k, shape, dtype)}
            if use_bias:
                p["b"] = jnp.zeros(bias, dtype)
            return p

        params = {
            "query": projection(keys[0], (features["query"], num_heads, k_dim), (num_heads, k_dim)),
            "key": projection(keys[1], (features["key"], num_heads, k_dim), (num_heads, k_dim)),
            "value": projection(keys[2], (features["value"], num_heads, v_dim), (num_heads, v_dim)),
            "output": projection(keys[3], (num_heads, v_dim, out_dim), (out_dim,)),
        }
        return params, {}

    def project(p: dict, x: jax.Array) -> jax.Array:
        y = jnp.einsum("btf,fhd->bthd", x, p["w"])
        return y + p["b"][None, None] if "b" in p else y

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        inputs = _attention_inputs(kind, name, num_heads, x)
        projected = []
        for part in ("query", "key", "value"):
            seqs = getattr(inputs, part)
            check_input_dtype(kind, name, seqs, params[part]["w"].dtype)
            features = params[part]["w"].shape[0]
            if seqs.shape[-1] != features:
                what = f"{part} inputs" if inputs.form == "dict" else "inputs"
                raise ValueError(
                    f"{kind} '{name}' expects {what} of shape (batch, time, {features}), got {seqs.shape}"
                )
            projected.append(project(params[part], seqs))
        q, k, v = projected
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        q_time, kv_time = q.shape[1], k.shape[1]
        allowed = None  # (batch or 1, heads or 1, Tq, Tkv) once any mask applies

        def restrict(mask: jax.Array) -> None:
            nonlocal allowed
            allowed = mask if allowed is None else allowed & mask

        if causal:
            restrict(jnp.tril(jnp.ones((q_time, kv_time), bool))[None, None])
        if inputs.value_mask is not None:
            restrict(inputs.value_mask[:, None, None, :])
        if inputs.query_mask is not None:
            restrict(inputs.query_mask[:, None, :, None])
        if inputs.attention_mask is not None:
            m = inputs.attention_mask
            restrict(m[:, None] if m.ndim == 3 else m)
        if allowed is None:
            weights = jax.nn.softmax(logits, axis=-1)
        else:
            weights = jax.nn.softmax(jnp.where(allowed, logits, jnp.finfo(logits.dtype).min), axis=-1)
            # A row with no allowed key would be uniform over the masked keys: zero it, as Keras does.
            weights = jnp.where(allowed, weights, jnp.zeros_like(weights))
        attention = weights
        if train and dropout > 0:
            keep = jax.random.bernoulli(require_key(kind, name, key), 1 - dropout, weights.shape)
            attention = jnp.where(keep, weights / (1 - dropout), jnp.zeros_like(weights))
        attended = jnp.einsum("bhqk,bkhd->bqhd", attention, v)
        y = jnp.einsum("bqhd,hdo->bqo", attended, params["output"]["w"])
        if "b" in params["output"]:
            y = y + params["output"]["b"][None, None]
        out = _repack(y, inputs.passed_on)
        return ((out, weights) if return_attention_scores else out), state

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
