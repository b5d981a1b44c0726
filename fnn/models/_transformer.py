"""What the zoo's Hugging Face transformers share: the block combinator, attention, inputs, settings.

Each Hugging Face module (``BertSelfAttention``, ``GPT2Block``, ...) is one
:func:`~fnn.models._common.module`: a combinator whose children are keyed by the module's attribute
names, so that a layer's fnn path with ``.`` for ``/`` is its Hugging Face
weight name and :func:`fnn.interop.load_torch` needs no name map. The repeated
blocks (``encoder.layer``, ``h``) are a :func:`~fnn.Sequential` of blocks with
default names, which PyTorch numbers as ``nn.ModuleList`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fnn import initializers
from fnn._checks import check_fraction, check_int
from fnn._core import Layer
from fnn.layers._dense import Dense
from fnn.layers._norm import LayerNorm

# Hugging Face's _init_weights: Linear and Embedding weights normal(0, initializer_range=0.02),
# zero biases, LayerNorm scale 1 and offset 0 (fnn's defaults).
HF_INIT = initializers.normal(0.02)

# Hugging Face's ACT2FN names of the activations these models use.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # exact, erf: BERT, ViT
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),  # tanh approximation: GPT-2
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


# ------------------------------------------------------------------ pieces


def dense(units: int, name: str, dtype: Any, *, use_bias: bool = True, init: Any = HF_INIT) -> Layer:
    """An ``nn.Linear`` initialised as Hugging Face does."""
    return Dense(units, use_bias=use_bias, kernel_init=init, dtype=dtype, name=name)


def layer_norm(epsilon: float, name: str, dtype: Any) -> Layer:
    """An ``nn.LayerNorm(eps=epsilon)``."""
    return LayerNorm(epsilon=epsilon, dtype=dtype, name=name)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    heads: int,
    keep: jax.Array,
    dropout: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """Scaled dot-product attention of ``heads`` heads: ``(batch, T, D)`` each -> ``(batch, T, D)``.

    ``keep`` (bool, broadcastable to ``(batch, heads, Tq, Tk)``) says which keys
    each query sees. A masked score becomes the dtype's lowest value (not
    ``-inf``), as in Hugging Face, so a query that sees no key averages them all
    instead of returning NaN. ``dropout`` is applied to the probabilities.
    """
    batch, time, features = q.shape
    head_dim = features // heads
    q, k, v = (a.reshape(batch, a.shape[1], heads, head_dim) for a in (q, k, v))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (head_dim**-0.5)
    scores = jnp.where(keep, scores, jnp.asarray(jnp.finfo(scores.dtype).min, scores.dtype))
    probs = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", dropout(probs), v)
    return out.reshape(batch, time, features)


def padding_keep(mask: jax.Array) -> jax.Array:
    """``(batch, T)`` bool key mask -> ``(batch, 1, 1, T)``, for :func:`attention`."""
    return mask[:, None, None, :]


def causal_keep(mask: jax.Array) -> jax.Array:
    """Key mask and causality: query ``t`` sees the unmasked keys ``<= t``. ``(batch, 1, T, T)``."""
    time = mask.shape[1]
    return jnp.tril(jnp.ones((time, time), bool))[None, None] & padding_keep(mask)


# ------------------------------------------------------------------ checks


def check_config(owner: str, ints: Mapping[str, Any], rates: Mapping[str, Any], epsilon: Any) -> None:
    """Validates a config's sizes (positive ints), dropout rates and LayerNorm epsilon."""
    for arg, value in ints.items():
        check_int(owner, arg, value)
    for arg, value in rates.items():
        check_fraction(owner, arg, value)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(f"{owner}: the LayerNorm epsilon must be a positive float, got {epsilon!r}")


def check_heads(owner: str, hidden_arg: str, hidden: int, heads_arg: str, heads: int) -> None:
    if hidden % heads:
        raise ValueError(
            f"{owner}: {hidden_arg}={hidden} must be a multiple of {heads_arg}={heads} (each head gets "
            f"{hidden_arg} // {heads_arg} features)"
        )


def check_activation(owner: str, arg: str, value: Any) -> Callable[[jax.Array], jax.Array]:
    if value not in ACTIVATIONS:
        raise ValueError(f"{owner}: {arg} must be one of {sorted(ACTIVATIONS)}, got {value!r}")
    return ACTIVATIONS[value]


def token_inputs(
    kind: str, name: str, x: Any, keys: Sequence[str], max_positions: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(input_ids, attention_mask, token_type_ids)`` from ids ``(batch, T)`` or a dict of such arrays.

    The mask is bool (``True``: a token to attend to), all ``True`` when not
    given; the token types are zeros when not given.
    """
    if isinstance(x, Mapping):
        unknown = sorted(set(x) - set(keys))
        if "input_ids" not in x or unknown:
            raise ValueError(
                f"{kind} '{name}' takes token ids (batch, T) or a dict with 'input_ids' and optionally "
                f"{', '.join(repr(k) for k in keys[1:])}; got keys {sorted(x)}"
            )
        ids = x["input_ids"]
    else:
        ids = x
    if not jnp.issubdtype(jnp.result_type(ids), jnp.integer):
        raise TypeError(
            f"{kind} '{name}' expects integer input_ids (token ids), got {jnp.result_type(ids)} of shape "
            f"{tuple(jnp.shape(ids))}; fnn never casts inputs silently: cast them, e.g. x.astype(jnp.int32)"
        )
    ids = jnp.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"{kind} '{name}' expects input_ids of shape (batch, T), got shape {ids.shape}")
    if ids.shape[1] > max_positions:
        raise ValueError(
            f"{kind} '{name}' has position embeddings for at most {max_positions} tokens, got "
            f"input_ids of shape {tuple(ids.shape)}"
        )
    extra = dict(x) if isinstance(x, Mapping) else {}
    for arg, kinds in (("attention_mask", (jnp.integer, jnp.bool_)), ("token_type_ids", (jnp.integer,))):
        if arg not in extra:
            continue
        value = extra[arg]
        if not any(jnp.issubdtype(jnp.result_type(value), t) for t in kinds):
            raise TypeError(
                f"{kind} '{name}': {arg} must be {'integer or bool' if len(kinds) == 2 else 'integer'}, "
                f"got {jnp.result_type(value)}"
            )
        if jnp.shape(value) != ids.shape:
            raise ValueError(
                f"{kind} '{name}': {arg} must have input_ids' shape {tuple(ids.shape)}, got {tuple(jnp.shape(value))}"
            )
    mask = extra.get("attention_mask")
    mask = jnp.ones(ids.shape, bool) if mask is None else jnp.asarray(mask) != 0
    types = extra.get("token_type_ids")
    types = jnp.zeros(ids.shape, jnp.int32) if types is None else jnp.asarray(types)
    return ids, mask, types
