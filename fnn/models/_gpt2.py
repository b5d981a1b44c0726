"""A GPT-2 decoder laid out as Hugging Face's ``GPT2Model`` / ``GPT2LMHeadModel``, so its weights load unchanged."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fnn import initializers
from fnn._core import Layer, check_name, default_name
from fnn.layers._combinators import Sequential
from fnn.layers._recurrent import Embedding
from fnn.models._common import module
from fnn.models._transformer import (
    HF_INIT,
    attention,
    causal_keep,
    check_activation,
    check_config,
    check_heads,
    dense,
    layer_norm,
    token_inputs,
)


def conv1d(units: int, name: str, dtype: Any, init: Any = HF_INIT) -> Layer:
    """Hugging Face's ``Conv1D`` (GPT-2's linear layer): a :func:`~fnn.Dense` of kind ``"GPT2Conv1D"``.

    ``Conv1D`` stores its weight as ``(in, out)``, fnn's ``Dense`` layout, not
    transposed like ``nn.Linear``'s: the kind selects the interop layout that
    copies it as it is (``w`` = ``weight``, ``b`` = ``bias``).
    """
    return dense(units, name, dtype, init=init)._replace(kind="GPT2Conv1D")


def _block(hidden: int, heads: int, inner: int, act: Any, eps: float, resid: float, attn_rate: float,
           layers_total: int, dtype: Any) -> Layer:  # fmt: skip
    """``GPT2Block`` (pre-norm): ``(h, mask) -> (h, mask)``."""
    # Hugging Face scales the residual projections' init by 1/sqrt(2 * n_layer) (GPT-2 paper).
    proj_init = initializers.normal(0.02 / math.sqrt(2 * layers_total))

    def attend(ctx: Any, x: Any) -> jax.Array:
        h, mask = x
        q, k, v = jnp.split(ctx("c_attn", h), 3, axis=-1)  # c_attn's outputs: query, key, value
        out = attention(q, k, v, heads, causal_keep(mask), lambda p: ctx.dropout(p, attn_rate))
        return ctx.dropout(ctx("c_proj", out), resid)

    attn = module(
        "GPT2Attention", "attn",
        {"c_attn": conv1d(3 * hidden, "c_attn", dtype), "c_proj": conv1d(hidden, "c_proj", dtype, proj_init)},
        attend,
    )  # fmt: skip
    mlp = module(
        "GPT2MLP", "mlp",
        {"c_fc": conv1d(inner, "c_fc", dtype), "c_proj": conv1d(hidden, "c_proj", dtype, proj_init)},
        lambda ctx, h: ctx.dropout(ctx("c_proj", act(ctx("c_fc", h))), resid),
    )  # fmt: skip
    layers = {
        "ln_1": layer_norm(eps, "ln_1", dtype),
        "attn": attn,
        "ln_2": layer_norm(eps, "ln_2", dtype),
        "mlp": mlp,
    }

    def forward(ctx: Any, x: Any) -> tuple[jax.Array, jax.Array]:
        h, mask = x
        h = h + ctx("attn", (ctx("ln_1", h), mask))
        return h + ctx("mlp", ctx("ln_2", h)), mask

    return module("GPT2Block", default_name("GPT2Block"), layers, forward)


def gpt2(
    *,
    vocab_size: int = 50257,
    n_positions: int = 1024,
    n_embd: int = 768,
    n_layer: int = 12,
    n_head: int = 12,
    n_inner: int | None = None,
    activation_function: str = "gelu_new",
    resid_pdrop: float = 0.1,
    embd_pdrop: float = 0.1,
    attn_pdrop: float = 0.1,
    layer_norm_epsilon: float = 1e-5,
    dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    """A GPT-2 decoder laid out as Hugging Face's ``GPT2Model``, so its weights load unchanged.

    The arguments are ``GPT2Config``'s fields, with GPT-2 small's (124M) values
    by default. The params are keyed by Hugging Face's attribute names: ``wte``,
    ``wpe``, ``h/<block>/{ln_1, attn/{c_attn, c_proj}, ln_2, mlp/{c_fc,
    c_proj}}`` and ``ln_f``, where the blocks of the ``Sequential`` ``h`` keep
    their default names (``gpt2_block``, ``gpt2_block_1``, ...) so that PyTorch
    numbers them (``h.0``). Hugging Face's ``Conv1D`` weights are ``(in, out)``,
    as fnn's ``Dense`` stores them (:func:`conv1d`); ``c_attn`` computes query,
    key and value in one product, split along its output axis. A
    ``GPT2Model``'s ``state_dict`` or ``save_pretrained`` file (published GPT-2
    files use these names) loads with :func:`fnn.interop.load_torch`; files
    written by older transformers also hold the causal-mask buffers
    ``h.N.attn.bias`` and ``h.N.attn.masked_bias``: pass
    ``ignore=["*.attn.bias", "*.attn.masked_bias"]``. Other ``GPT2Config``
    fields are taken at their defaults (no cross-attention, no layer-wise
    attention scaling). Initialised as Hugging Face does.

    Computation as ``GPT2Model``'s: pre-norm blocks, the tanh GELU
    (``"gelu_new"``), causal attention scaled by ``1/sqrt(head_dim)`` that
    also skips masked (padding) keys, dropout while training (``train=True``
    then needs a ``key``). Positions are ``0 .. T-1`` whatever the mask, as in
    Hugging Face without ``position_ids``: pad on the right.

    Args:
        vocab_size, n_positions, n_embd, n_layer, n_head: sizes, positive ints;
            ``n_embd`` a multiple of ``n_head``.
        n_inner: the MLP's hidden size; ``4 * n_embd`` when ``None``.
        activation_function: ``"gelu_new"`` (tanh approximation), ``"gelu"``
            (exact) or ``"relu"``.
        resid_pdrop, embd_pdrop, attn_pdrop: dropout rates in ``[0, 1)``.
        layer_norm_epsilon: the LayerNorms' epsilon (``1e-5``).
        dtype: the params' dtype.
        name: layer name; ``"gpt2"`` by default.

    Returns:
        A :class:`~fnn.Layer` taking integer token ids ``(batch, T)`` (``T <=
        n_positions``) or a dict ``{"input_ids", "attention_mask"}`` and
        returning ``last_hidden_state`` ``(batch, T, n_embd)`` (after ``ln_f``).

    Raises:
        ValueError: for bad config values, and in ``apply`` for too long a
            sequence, unknown dict keys or a mask of another shape.
        TypeError: in ``apply``, for ids that are not integers.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> from fnn.models import gpt2
        >>> model = gpt2(vocab_size=50, n_positions=16, n_embd=8, n_layer=2, n_head=2)
        >>> tokens = fnn.Shape((5,), jnp.int32)
        >>> fnn.output_shape(model, tokens)
        (5, 8)
        >>> params, state = jax.eval_shape(lambda key: model.init(key, tokens), jax.random.key(0))
        >>> list(params["h"]), params["h"]["gpt2_block"]["attn"]["c_attn"]["w"].shape
        (['gpt2_block', 'gpt2_block_1'], (8, 24))
    """
    kind = "GPT2Model"
    name = check_name(kind, name or "gpt2")
    owner = f"{kind} '{name}'"
    inner = 4 * n_embd if n_inner is None and isinstance(n_embd, int) else n_inner
    ints = {"vocab_size": vocab_size, "n_positions": n_positions, "n_embd": n_embd, "n_layer": n_layer,
            "n_head": n_head, "n_inner": inner}  # fmt: skip
    rates = {"resid_pdrop": resid_pdrop, "embd_pdrop": embd_pdrop, "attn_pdrop": attn_pdrop}
    check_config(owner, ints, rates, layer_norm_epsilon)
    check_heads(owner, "n_embd", n_embd, "n_head", n_head)
    act = check_activation(owner, "activation_function", activation_function)
    eps = float(layer_norm_epsilon)
    blocks = [
        _block(n_embd, n_head, inner, act, eps, float(resid_pdrop), float(attn_pdrop), n_layer, dtype)
        for _ in range(n_layer)
    ]
    layers = {
        "wte": Embedding(vocab_size, n_embd, embeddings_init=HF_INIT, dtype=dtype, name="wte"),
        "wpe": Embedding(n_positions, n_embd, embeddings_init=HF_INIT, dtype=dtype, name="wpe"),
        "h": Sequential(blocks, name="h"),
        "ln_f": layer_norm(eps, "ln_f", dtype),
    }

    def forward(ctx: Any, x: Any) -> jax.Array:
        ids, mask, _ = token_inputs(kind, name, x, ("input_ids", "attention_mask"), n_positions)
        positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
        h = ctx.dropout(ctx("wte", ids) + ctx("wpe", positions), float(embd_pdrop))
        h, _ = ctx("h", (h, mask))
        return ctx("ln_f", h)

    return module(kind, name, layers, forward)


def gpt2_lm_head(*, name: str | None = None, **config: Any) -> Layer:
    """GPT-2 with its language-model head, laid out as Hugging Face's ``GPT2LMHeadModel``.

    The decoder :func:`gpt2` (built from ``config``, ``GPT2Config``'s fields) is
    the child ``transformer``, so the weights are named
    ``transformer.wte.weight``, ``transformer.h.0...`` as ``GPT2LMHeadModel``'s
    ``save_pretrained`` writes them. The head is tied to the token embedding,
    as in Hugging Face: ``logits = last_hidden_state @ wte.T``, with no
    weight of its own (a ``state_dict`` that lists ``lm_head.weight``, the same
    tensor, loads with ``ignore="lm_head.weight"``; check first that it equals
    ``wte.weight``, as it does unless the config unties them). Back to
    ``transformers``: :func:`fnn.interop.save_torch`, then ``from_pretrained``,
    which ties the head itself (a strict ``load_state_dict`` would miss
    ``lm_head.weight``). A file without the prefix
    (a ``GPT2Model``'s, or the hub's ``gpt2``) loads as
    ``{"transformer." + k: v for k, v in read_safetensors(path).items()}``.

    Args:
        name: layer name; ``"gpt2_lm_head"`` by default.
        **config: the arguments of :func:`gpt2` but ``name``.

    Returns:
        A :class:`~fnn.Layer` taking what :func:`gpt2` takes and returning the
        next-token logits ``(batch, T, vocab_size)``.

    Examples:
        Save the weights once as safetensors, outside fnn, then load them::

            GPT2LMHeadModel.from_pretrained("gpt2").save_pretrained("gpt2")  # transformers
            model = models.gpt2_lm_head()
            params, state, report = interop.load_torch(model, fnn.Shape((64,), jnp.int32), "gpt2/model.safetensors")
            logits, _ = model.apply(params, state, ids, train=False)  # (batch, T, 50257)

        >>> import jax.numpy as jnp, fnn
        >>> from fnn.models import gpt2_lm_head
        >>> model = gpt2_lm_head(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=2)
        >>> fnn.output_shape(model, fnn.Shape((5,), jnp.int32))
        (5, 50)
    """
    kind = "GPT2LMHeadModel"
    name = check_name(kind, name or "gpt2_lm_head")
    transformer = gpt2(name="transformer", **config)

    def forward(ctx: Any, x: Any) -> jax.Array:
        h = ctx("transformer", x)
        return jnp.matmul(h, ctx.params["transformer"]["wte"]["table"].T)  # tied to the token embedding

    return module(kind, name, {"transformer": transformer}, forward)
