"""Attention: MultiHeadAttention (GQA, RoPE, decoding cache), positional embeddings, Transformer blocks.

Sequences are ``(batch, time, features)``; like the RNNs, these layers take
``x`` or ``(x, mask)`` with a bool padding mask ``(batch, time)`` (``True`` =
a real token) and pass the mask on, so they stack in a :func:`~fnn.Sequential`
after ``Embedding(..., mask_index=0)``. ``MultiHeadAttention`` also takes a dict
``{"query", "value", "key", "query_mask", "value_mask", "attention_mask"}`` for
cross-attention and arbitrary masks, as Keras's call arguments.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fnn import activations, initializers
from fnn._checks import check_fraction, check_positive_float
from fnn._core import Layer, check_input_dtype, check_name, check_positive_int, make_layer, require_key
from fnn._random import inverted_dropout
from fnn.layers._norm import LayerNorm, RMSNorm


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
    num_key_value_heads: int | None = None,
    dropout: float = 0.0,
    causal: bool = False,
    rope: bool = False,
    rope_base: float = 10_000.0,
    soft_cap: float | None = None,
    return_attention_scores: bool = False,
    use_bias: bool = True,
    kernel_init: Any = "glorot_uniform",
    implementation: str | None = None,
    cache_length: int | None = None,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """Multi-head attention, ``softmax(q k^T / sqrt(key_dim)) v`` per head, as in Keras.

    Self-attention takes one sequence; cross-attention (Keras's ``mha(query,
    value, key=None, ...)``) takes a dict. Every mask is ``True`` where attention
    is allowed, and all given masks are combined with AND.

    It runs on :func:`jax.nn.dot_product_attention` (XLA's implementation on
    CPU; a fused cuDNN kernel on GPUs where JAX has one and ``implementation``
    allows it), except when it must see the weights: with
    ``return_attention_scores``, attention dropout in training, or
    ``soft_cap``, it computes them explicitly (the slower path, with the
    ``(batch, heads, Tq, Tkv)`` weights in memory), and so it does in float64,
    which JAX's kernel computes in float32.

    Args:
        num_heads: attention heads.
        key_dim: size of each head's queries and keys; the query's ``features //
            num_heads`` by default (then the heads must divide them).
        value_dim: size of each head's values; ``key_dim`` by default.
        output_dim: output features; the query's by default.
        num_key_value_heads: heads of the keys and values, ``num_heads`` by
            default; fewer is grouped-query attention (GQA: query head ``n``
            uses key/value head ``n // (num_heads // num_key_value_heads)``), 1
            is multi-query attention. It must divide ``num_heads``.
        dropout: dropout rate on the attention weights (training only, needs a key).
        causal: query ``t`` attends to keys ``s <= t`` only (Keras's
            ``use_causal_mask``: the lower triangle of ``(Tq, Tkv)``).
        rope: rotary position embeddings (RoPE, Su et al. 2021) on the queries
            and keys of each head, by :func:`rotary_embedding` with positions
            ``0 .. T - 1``; ``key_dim`` must be even.
        rope_base: RoPE's base wavelength (10,000 as in RoFormer and Llama).
        soft_cap: if given, the scaled logits become ``soft_cap * tanh(logits /
            soft_cap)`` (Gemma 2's attention soft-capping).
        return_attention_scores: also return the attention weights ``(batch,
            heads, Tq, Tkv)``: after the softmax and the masks, before dropout
            (as Keras 3 returns them).
        use_bias: biases on the projections.
        kernel_init: initialiser of the projections.
        implementation: :func:`jax.nn.dot_product_attention`'s: ``None`` (JAX
            picks), ``"xla"`` or ``"cudnn"`` (GPU only; JAX raises where the
            inputs do not suit it).
        cache_length: build the layer for autoregressive decoding (causal
            self-attention only): its state holds a key/value cache of
            ``cache_length`` positions for one sequence, ``{"cache": {"key": (1,
            cache_length, kv_heads, key_dim), "value": (1, cache_length,
            kv_heads, value_dim), "length": int32 ()}}``, and each ``apply``
            (``train=False``, inputs ``(1, t, features)`` without masks) attends
            from its ``t`` new positions to every cached one, appends their keys
            and values and advances ``length``: the one documented exception to
            "eval leaves the state unchanged". Outputs past ``cache_length`` are
            NaN, never silently wrong. A batch of other than 1 sequence is
            attended as by the layer without a cache, the state unchanged (so
            shape inference works), and is NaN once the cache holds anything.
            The params are those of the same layer without a cache: train that
            one, decode with this one, and decode a batch with
            :func:`fnn.generate` (or ``jax.vmap`` over sequences).
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
    {"w": (Fk, kv_heads, key_dim), "b"}, "value": {"w": (Fv, kv_heads,
    value_dim), "b": (kv_heads, value_dim)}, "output": {"w": (heads, value_dim,
    output_dim), "b": (output_dim,)}}`` (Keras's EinsumDense layout, and its
    GroupedQueryAttention's with ``num_key_value_heads``; no ``"b"`` without
    ``use_bias``).

    Raises:
        ValueError: for a size, dict key, sequence or mask shape (or a mask's
            dtype) that does not fit, naming the layer, the expected and the
            actual value.
        TypeError: for a non-bool ``return_attention_scores`` or ``rope``, or
            sequences not in the params' dtype.

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

        Grouped-query attention with rotary positions: 4 query heads share 2
        key/value heads.

        >>> gqa = MultiHeadAttention(4, num_key_value_heads=2, rope=True, causal=True)
        >>> params, _ = gqa.init(jax.random.key(0), (5, 16))
        >>> params["query"]["w"].shape, params["key"]["w"].shape
        ((16, 4, 4), (16, 2, 4))
    """
    kind = "MultiHeadAttention"
    name = check_name(kind, name or "multi_head_attention")
    num_heads = check_positive_int(kind, name, "num_heads", num_heads)
    # Optional sizes: None means "derived from the input", never a silent fallback from 0.
    key_dim, value_dim, output_dim = (
        None if v is None else check_positive_int(kind, name, arg, v)
        for arg, v in (("key_dim", key_dim), ("value_dim", value_dim), ("output_dim", output_dim))
    )
    kv_heads = num_heads
    if num_key_value_heads is not None:
        kv_heads = check_positive_int(kind, name, "num_key_value_heads", num_key_value_heads)
        if num_heads % kv_heads:
            raise ValueError(
                f"{kind} '{name}': num_key_value_heads ({kv_heads}) must divide num_heads ({num_heads})"
            )
    dropout = check_fraction(f"{kind} '{name}'", "dropout", dropout)
    for arg, flag in (("return_attention_scores", return_attention_scores), ("rope", rope)):
        if not isinstance(flag, bool):  # they fix the output's structure and the params' checks
            raise TypeError(f"{kind} '{name}': {arg} must be a bool, got {flag!r}")
    rope_base = check_positive_float(f"{kind} '{name}'", "rope_base", rope_base)
    if soft_cap is not None:
        soft_cap = check_positive_float(f"{kind} '{name}'", "soft_cap", soft_cap)
    if cache_length is not None:
        cache_length = check_positive_int(kind, name, "cache_length", cache_length)
        if not causal:
            raise ValueError(
                f"{kind} '{name}': cache_length is for causal self-attention: pass causal=True too"
            )
    if implementation not in _IMPLEMENTATIONS:
        raise ValueError(
            f"{kind} '{name}': implementation must be one of {_IMPLEMENTATIONS}, got {implementation!r}"
        )
    w_init = initializers.get(kernel_init)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        if isinstance(input_shape, Mapping) and cache_length is not None:
            raise ValueError(
                f"{kind} '{name}': cache_length is for self-attention; init it with a (time, features) "
                f"input_shape, got {input_shape}"
            )
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
        if rope and k_dim % 2:
            raise ValueError(f"{kind} '{name}': rope needs an even key_dim, got {k_dim}")
        v_dim, out_dim = value_dim or k_dim, output_dim or features["query"]
        keys = jax.random.split(key, 4)

        def projection(k: jax.Array, shape: tuple[int, ...], bias: tuple[int, ...]) -> dict:
            p = {"w": w_init(k, shape, dtype)}
            if use_bias:
                p["b"] = jnp.zeros(bias, dtype)
            return p

        params = {
            "query": projection(keys[0], (features["query"], num_heads, k_dim), (num_heads, k_dim)),
            "key": projection(keys[1], (features["key"], kv_heads, k_dim), (kv_heads, k_dim)),
            "value": projection(keys[2], (features["value"], kv_heads, v_dim), (kv_heads, v_dim)),
            "output": projection(keys[3], (num_heads, v_dim, out_dim), (out_dim,)),
        }
        if cache_length is None:
            return params, {}
        cache = {
            "key": jnp.zeros((1, cache_length, kv_heads, k_dim), dtype),
            "value": jnp.zeros((1, cache_length, kv_heads, v_dim), dtype),
            "length": jnp.zeros((), jnp.int32),
        }
        return params, {"cache": cache}

    def project(p: dict, x: jax.Array) -> jax.Array:
        y = jnp.einsum("btf,fhd->bthd", x, p["w"])
        return y + p["b"][None, None] if "b" in p else y

    def check_decoding(inputs: _Attending, train: bool) -> None:
        if train:
            raise ValueError(
                f"{kind} '{name}' holds a decoding cache (cache_length={cache_length}): apply it with "
                "train=False, and train the same layer built without cache_length (its params are the same)"
            )
        if inputs.query.shape[0] != 1:
            return  # not decoding: attends as the cache-free layer
        if inputs.form != "array":
            raise ValueError(
                f"{kind} '{name}' decodes plain (1, time, features) inputs, without masks; got a {inputs.form}"
            )
        if inputs.query.shape[1] > cache_length:
            raise ValueError(
                f"{kind} '{name}' decodes at most cache_length={cache_length} positions a call, got inputs "
                f"{inputs.query.shape}"
            )

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        inputs = _attention_inputs(kind, name, num_heads, x)
        if cache_length is not None:
            check_decoding(inputs, train)
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
        decoding = cache_length is not None and q.shape[0] == 1
        q_positions, k_positions = jnp.arange(q.shape[1]), jnp.arange(k.shape[1])
        if decoding:
            start = state["cache"]["length"]
            q_positions = k_positions = start + q_positions
        if rope:
            q = rotary_embedding(q, q_positions, base=rope_base)
            k = rotary_embedding(k, k_positions, base=rope_base)
        if not decoding:
            allowed = _allowed(inputs, causal, q.shape[1], k.shape[1])
        else:  # attend to every cached position up to the query's own
            cache = {
                "key": jax.lax.dynamic_update_slice(state["cache"]["key"], k, (0, start, 0, 0)),
                "value": jax.lax.dynamic_update_slice(state["cache"]["value"], v, (0, start, 0, 0)),
                "length": start + q.shape[1],
            }
            k, v, state = cache["key"], cache["value"], {"cache": cache}
            allowed = (jnp.arange(cache_length)[None, :] <= q_positions[:, None])[None, None]
        # float64 too: jax.nn.dot_product_attention computes in float32 inside.
        explicit = (
            return_attention_scores
            or soft_cap is not None
            or (train and dropout > 0)
            or q.dtype == jnp.float64
        )
        if explicit:
            drop_key = require_key(kind, name, key) if train and dropout > 0 else None
            attended, weights = _attention_weighed(q, k, v, allowed, soft_cap, dropout, drop_key)
        else:
            # Causal alone (no other mask, no cache) is the kernel's own flag: fused kernels skip blocks.
            unmasked = all(m is None for m in (inputs.value_mask, inputs.query_mask, inputs.attention_mask))
            only_causal = causal and unmasked and not decoding and q.shape[1] == k.shape[1]
            attended = _fused_attention(
                q, k, v, None if only_causal else allowed, only_causal, implementation
            )
        y = jnp.einsum("bqhd,hdo->bqo", attended, params["output"]["w"])
        if "b" in params["output"]:
            y = y + params["output"]["b"][None, None]
        if decoding:  # past the cache's end: NaN, never a silently wrong output
            y = jnp.where(state["cache"]["length"] <= cache_length, y, jnp.full_like(y, jnp.nan))
        elif cache_length is not None:  # a batch, attended without the cache: right for an empty one only
            y = jnp.where(state["cache"]["length"] == 0, y, jnp.full_like(y, jnp.nan))
        out = _repack(y, inputs.passed_on)
        return ((out, weights) if return_attention_scores else out), state

    return make_layer(kind, name, init, apply)


_IMPLEMENTATIONS = (None, "xla", "cudnn")


def _allowed(inputs: _Attending, causal: bool, q_time: int, kv_time: int) -> jax.Array | None:
    """All masks ANDed: bool (batch or 1, heads or 1, Tq, Tkv), or None when there is none."""
    masks = []
    if causal:
        masks.append(jnp.tril(jnp.ones((q_time, kv_time), bool))[None, None])
    if inputs.value_mask is not None:
        masks.append(inputs.value_mask[:, None, None, :])
    if inputs.query_mask is not None:
        masks.append(inputs.query_mask[:, None, :, None])
    if inputs.attention_mask is not None:
        m = inputs.attention_mask
        masks.append(m[:, None] if m.ndim == 3 else m)
    return functools.reduce(jnp.logical_and, masks) if masks else None


def _by_query_head(a: jax.Array, heads: int) -> jax.Array:
    """(batch, T, kv_heads, d) -> (batch, T, heads, d): each key/value head repeated for its group."""
    return a if a.shape[2] == heads else jnp.repeat(a, heads // a.shape[2], axis=2)


def _attention_weighed(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    allowed: jax.Array | None,
    soft_cap: float | None,
    dropout: float,
    key: Any,
) -> tuple[jax.Array, jax.Array]:
    """Attention with its weights in hand: ``(attended (B, Tq, H, dv), weights (B, H, Tq, Tkv))``.

    ``weights`` come after the softmax and the masks, before dropout (``key``
    None: none). A query row with no allowed key gets all-zero weights.
    """
    heads = q.shape[2]
    k, v = _by_query_head(k, heads), _by_query_head(v, heads)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if soft_cap is not None:
        logits = soft_cap * jnp.tanh(logits / soft_cap)
    if allowed is None:
        weights = jax.nn.softmax(logits, axis=-1)
    else:
        weights = jax.nn.softmax(jnp.where(allowed, logits, jnp.finfo(logits.dtype).min), axis=-1)
        # A row with no allowed key would be uniform over the masked keys: zero it, as Keras does.
        weights = jnp.where(allowed, weights, jnp.zeros_like(weights))
    attention = weights
    if key is not None:
        attention = inverted_dropout(key, dropout, weights)
    return jnp.einsum("bhqk,bkhd->bqhd", attention, v), weights


def _fused_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, allowed: jax.Array | None, causal: bool, implementation: Any
) -> jax.Array:
    """:func:`jax.nn.dot_product_attention`, (B, Tq, H, dv); rows with no allowed key are zeros."""
    # The kernel promotes bfloat16 with float32 inside: allowed even where a user runs strict promotion.
    with jax.numpy_dtype_promotion("standard"):
        if allowed is None:
            return jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=implementation)
        attended = jax.nn.dot_product_attention(q, k, v, mask=allowed, implementation=implementation)
    # The kernel spreads a row with no allowed key uniformly over all keys; fnn's rows are zeros.
    anything = jnp.any(allowed, axis=-1)  # (batch or 1, heads or 1, Tq)
    return jnp.where(jnp.swapaxes(anything, 1, 2)[..., None], attended, jnp.zeros_like(attended))


def rotary_embedding(x: ArrayLike, positions: ArrayLike, *, base: float = 10_000.0) -> jax.Array:
    """Rotary position embedding (RoPE) of per-head features, the "rotate half" form.

    Feature pairs ``(i, i + d/2)`` of each head turn by the angle ``position *
    base ** (-2i / d)``: ``[x1 cos - x2 sin, x2 cos + x1 sin]`` for the halves
    ``x1, x2``, as in GPT-NeoX, Llama and Hugging Face's ``rotate_half``. The dot
    product of a rotated query and key depends on their positions only through
    their difference.

    Args:
        x: ``(batch, time, heads, d)`` queries or keys, ``d`` even.
        positions: ``(time,)`` or ``(batch, time)`` positions (ints or floats).
        base: the base wavelength.

    Returns:
        ``x`` rotated, same shape and dtype (the angles are computed in float32).

    Raises:
        ValueError: for an odd ``d`` or positions whose shape does not fit.

    Examples:
        >>> import jax.numpy as jnp
        >>> x = jnp.ones((1, 3, 1, 2))
        >>> rotary_embedding(x, jnp.arange(3))[0, :, 0].round(3).tolist()  # turns by 0, 1 and 2 radians
        [[1.0, 1.0], [-0.301, 1.382], [-1.325, 0.493]]
    """
    x, positions = jnp.asarray(x), jnp.asarray(positions)
    if x.ndim != 4 or x.shape[-1] % 2:
        raise ValueError(f"rotary_embedding expects x of shape (batch, time, heads, even d), got {x.shape}")
    if positions.shape not in ((x.shape[1],), x.shape[:2]):
        raise ValueError(
            f"rotary_embedding expects positions of shape (time,) = ({x.shape[1]},) or (batch, time) = "
            f"{x.shape[:2]}, got {positions.shape}"
        )
    half = x.shape[-1] // 2
    rates = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    rates = rates.reshape((1,) * positions.ndim + (half,))
    angles = positions.astype(jnp.float32)[..., None] * rates  # (time, half) or (batch, time, half)
    angles = angles[None, :, None, :] if positions.ndim == 1 else angles[:, :, None, :]
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


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
        glorot = initializers.glorot_uniform()
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
            return inverted_dropout(k, dropout, h)

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


_NORMS = {"rms": RMSNorm, "layer": LayerNorm}
_MLPS = ("swiglu", "gelu", "relu")
_DECODER_KEYS = ("x", "mask", "memory", "memory_mask")


def _check_decoder_input(kind: str, name: str, cross: bool, x: Any) -> None:
    """A decoder block's input (or its per-example shape) has the form its cross-attention needs."""
    if not isinstance(x, Mapping):
        if cross:
            raise ValueError(
                f"{kind} '{name}' has cross-attention: it takes a dict {{'x', 'memory'}} (and optional "
                f"'mask', 'memory_mask'), got {type(x).__name__}"
            )
        return
    unknown = set(x) - set(_DECODER_KEYS)
    if "x" not in x or unknown or ("memory" in x) != cross:
        need = "'x' and 'memory'" if cross else "'x' and no 'memory' (it has no cross-attention)"
        raise ValueError(
            f"{kind} '{name}': a dict input needs {need} and may have 'mask'"
            f"{', memory_mask' if cross else ''}; got {sorted(x)}"
        )


def _decoder_inputs(kind: str, name: str, cross: bool, x: Any) -> tuple[jax.Array, Any, Any, Any]:
    """``x`` | ``(x, mask)`` | ``{"x", "mask", "memory", "memory_mask"}`` -> (x, mask, memory, memory_mask)."""
    _check_decoder_input(kind, name, cross, x)
    if not isinstance(x, Mapping):
        return (*_unpack(kind, name, x), None, None)
    seqs, mask = _unpack(kind, name, (x["x"], x["mask"]) if x.get("mask") is not None else x["x"])
    return seqs, mask, x.get("memory"), x.get("memory_mask")


def TransformerDecoderBlock(
    num_heads: int,
    ff_dim: int,
    *,
    num_key_value_heads: int | None = None,
    cross_attention: bool = False,
    norm: str = "rms",
    mlp: str = "swiglu",
    rope: bool = True,
    rope_base: float = 10_000.0,
    use_bias: bool = False,
    dropout: float = 0.0,
    epsilon: float = 1e-6,
    cache_length: int | None = None,
    implementation: str | None = None,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A pre-norm decoder block: causal self-attention, optional cross-attention, an MLP.

    ``h = x + attn(norm(x))``; with ``cross_attention``, ``h = h + cross(norm(h),
    memory)``; then ``y = h + mlp(norm(h))``. The defaults are Llama's block
    (RMSNorm, SwiGLU ``down(silu(gate(h)) * up(h))``, rotary positions, no
    biases); ``norm="layer", mlp="gelu", rope=False, use_bias=True`` is GPT-2's.
    Stack it with :func:`~fnn.Repeat` to compile a deep model once.

    Args:
        num_heads: attention heads; they must divide the features.
        ff_dim: hidden width of the MLP.
        num_key_value_heads: grouped-query attention, as for
            :func:`MultiHeadAttention` (self-attention only).
        cross_attention: attend to an encoder's output (``"memory"``) too.
        norm: ``"rms"`` (:func:`~fnn.RMSNorm`) or ``"layer"`` (:func:`~fnn.LayerNorm`).
        mlp: ``"swiglu"``, ``"gelu"`` or ``"relu"`` (the latter two: ``down(act(up(h)))``).
        rope: rotary position embeddings in the self-attention.
        rope_base: RoPE's base wavelength.
        use_bias: biases in the attention projections and the MLP.
        dropout: dropout rate on each branch's output in training (needs a key).
        epsilon: of the norms.
        cache_length: build the block for decoding with a key/value cache of
            this many positions (see :func:`MultiHeadAttention`).
        implementation: of :func:`jax.nn.dot_product_attention`.
        dtype: dtype of all its params.
        name: layer name; ``"transformer_decoder_block"`` by default.

    Inputs: ``x`` ``(batch, time, features)`` or ``(x, mask)`` with a bool
    padding mask ``(batch, time)``; with ``cross_attention``, a dict ``{"x",
    "memory", "mask" (optional), "memory_mask" (optional)}`` with ``memory``
    ``(batch, Tm, Fm)``. The output has the input's form (the dict passes
    ``memory`` on), so blocks stack in a :func:`~fnn.Sequential` or
    :func:`~fnn.Repeat`.

    Params ``{"norm_attention", "attention", "norm_cross", "cross_attention",
    "norm_mlp", "mlp": {"gate", "up", "down"}}`` (no cross parts without
    ``cross_attention``; no ``"gate"`` but for SwiGLU).

    Raises:
        ValueError: for an unknown ``norm`` or ``mlp``, or an input that does
            not fit, naming the layer.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> block = TransformerDecoderBlock(4, 64, num_key_value_heads=2)
        >>> params, state = block.init(jax.random.key(0), (10, 32))
        >>> block.apply(params, state, jnp.ones((2, 10, 32)), train=False)[0].shape
        (2, 10, 32)
        >>> sorted(params["mlp"])
        ['down', 'gate', 'up']
    """
    kind = "TransformerDecoderBlock"
    name = check_name(kind, name or "transformer_decoder_block")
    ff_dim = check_positive_int(kind, name, "ff_dim", ff_dim)
    dropout = check_fraction(f"{kind} '{name}'", "dropout", dropout)
    if norm not in _NORMS:
        raise ValueError(f"{kind} '{name}': norm must be one of {sorted(_NORMS)}, got {norm!r}")
    if mlp not in _MLPS:
        raise ValueError(f"{kind} '{name}': mlp must be one of {_MLPS}, got {mlp!r}")
    common = {"use_bias": use_bias, "implementation": implementation, "dtype": dtype}
    attention = MultiHeadAttention(
        num_heads, num_key_value_heads=num_key_value_heads, causal=True, rope=rope, rope_base=rope_base,
        cache_length=cache_length, name="attention", **common,
    )  # fmt: skip
    cross = MultiHeadAttention(num_heads, name="cross_attention", **common) if cross_attention else None
    norms = {part: _NORMS[norm](epsilon=epsilon, dtype=dtype) for part in ("attention", "cross", "mlp")}
    act = jax.nn.silu if mlp == "swiglu" else activations.get(mlp)

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict]:
        _check_decoder_input(kind, name, cross is not None, input_shape)
        if isinstance(input_shape, Mapping):
            x_shape = _per_example_features(kind, name, input_shape["x"])
            memory_shape = input_shape.get("memory")
        else:
            x_shape, memory_shape = _per_example_features(kind, name, input_shape), None
        features = x_shape[-1]
        keys = jax.random.split(key, 6)
        params, state = {}, {}
        params["norm_attention"] = norms["attention"].init(keys[0], (features,))[0]
        params["attention"], attention_state = attention.init(keys[1], tuple(x_shape))
        if attention_state:
            state["attention"] = attention_state
        if cross is not None:
            params["norm_cross"] = norms["cross"].init(keys[0], (features,))[0]
            params["cross_attention"] = cross.init(keys[2], {"query": x_shape, "value": tuple(memory_shape)})[
                0
            ]
        params["norm_mlp"] = norms["mlp"].init(keys[0], (features,))[0]
        glorot = initializers.glorot_uniform()

        def dense(k: jax.Array, fan_in: int, fan_out: int) -> dict:
            p = {"w": glorot(k, (fan_in, fan_out), dtype)}
            return {**p, "b": jnp.zeros((fan_out,), dtype)} if use_bias else p

        params["mlp"] = {"up": dense(keys[3], features, ff_dim), "down": dense(keys[4], ff_dim, features)}
        if mlp == "swiglu":
            params["mlp"]["gate"] = dense(keys[5], features, ff_dim)
        return params, state

    def apply(params: dict, state: dict, x: Any, *, train: bool, key: Any = None):
        seqs, mask, memory, memory_mask = _decoder_inputs(kind, name, cross is not None, x)
        check_input_dtype(kind, name, seqs, params["mlp"]["up"]["w"].dtype)
        features = params["mlp"]["up"]["w"].shape[0]
        if seqs.shape[-1] != features:
            raise ValueError(
                f"{kind} '{name}' expects inputs of shape (batch, time, {features}), got {seqs.shape}"
            )
        if train and dropout > 0:
            require_key(kind, name, key)
        keys = [None] * 4 if key is None else list(jax.random.split(key, 4))

        def normed(part: str, h: jax.Array) -> jax.Array:
            return norms[part].apply(params[f"norm_{part}"], {}, h, train=False)[0]

        def drop(h: jax.Array, k: Any) -> jax.Array:
            if not train or dropout == 0:
                return h
            return inverted_dropout(k, dropout, h)

        def dense(p: dict, h: jax.Array) -> jax.Array:
            y = h @ p["w"]
            return y + p["b"][None, None] if "b" in p else y

        new_state = dict(state)
        y, attention_state = attention.apply(
            params["attention"], state.get("attention", {}), _repack(normed("attention", seqs), mask),
            train=train, key=keys[0],
        )  # fmt: skip
        if "attention" in state:
            new_state["attention"] = attention_state
        h = seqs + drop(y[0] if isinstance(y, tuple) else y, keys[1])
        if cross is not None:
            attend = {"query": normed("cross", h), "value": memory}
            if mask is not None:
                attend["query_mask"] = mask
            if memory_mask is not None:
                attend["value_mask"] = memory_mask
            y, _ = cross.apply(params["cross_attention"], {}, attend, train=train)
            h = h + drop(y[0] if isinstance(y, tuple) else y, keys[2])
        hidden = normed("mlp", h)
        up = dense(params["mlp"]["up"], hidden)
        hidden = act(dense(params["mlp"]["gate"], hidden)) * up if mlp == "swiglu" else act(up)
        h = h + drop(dense(params["mlp"]["down"], hidden), keys[3])
        if isinstance(x, Mapping):
            return {**x, "x": h}, new_state
        return _repack(h, mask), new_state

    return make_layer(kind, name, init, apply)
