"""Autoregressive generation: sampling from logits and decoding with a key/value cache."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fnn._checks import check_int
from fnn._core import Layer


def _check_sampling(temperature: Any, top_k: Any, top_p: Any) -> tuple[float, int | None, float | None]:
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature < 1e30
    ):
        raise ValueError(f"sampling: temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None:
        top_k = check_int("sampling", "top_k", top_k)
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1
    ):
        raise ValueError(f"sampling: top_p must be in (0, 1], got {top_p!r}")
    return float(temperature), top_k, None if top_p is None else float(top_p)


def _sample(
    key: Any, logits: jax.Array, temperature: float, top_k: int | None, top_p: float | None
) -> jax.Array:
    if temperature == 0:
        return jnp.argmax(logits, axis=-1)
    logits = logits.astype(jnp.float32) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p is not None:
        ordered = jnp.flip(jnp.sort(logits, axis=-1), axis=-1)
        probs = jax.nn.softmax(ordered, axis=-1)
        # Keep the most likely tokens until their mass reaches top_p (the first always).
        kept = jnp.cumsum(probs, axis=-1) - probs < top_p
        cutoff = jnp.min(jnp.where(kept, ordered, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1)


def sample_logits(
    key: Any,
    logits: ArrayLike,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> jax.Array:
    """Draws token ids from ``(..., vocab)`` logits: greedy, temperature, top-k and top-p (nucleus).

    ``temperature`` 0 is greedy (``argmax``; ``key`` may be ``None``); otherwise
    the logits are divided by it, restricted to the ``top_k`` largest (ties with
    the k-th kept) and to the smallest set of most likely tokens whose
    probability reaches ``top_p``, and sampled with :func:`jax.random.categorical`.

    Args:
        key: a PRNG key (``None`` for greedy).
        logits: ``(..., vocab)`` unnormalised log-probabilities.
        temperature: ``>= 0``.
        top_k: keep this many tokens, or ``None`` for all.
        top_p: in ``(0, 1]``, or ``None`` for no nucleus cut.

    Returns:
        ``(...)`` int32 token ids.

    Raises:
        ValueError: for a hyper-parameter out of range, or no key with a
            temperature above 0.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> logits = jnp.log(jnp.array([0.1, 0.6, 0.3]))
        >>> int(sample_logits(None, logits, temperature=0))
        1
        >>> int(sample_logits(jax.random.key(0), logits, top_k=1))  # top-1: greedy too
        1
    """
    temperature, top_k, top_p = _check_sampling(temperature, top_k, top_p)
    if key is None and temperature > 0:
        raise ValueError(
            "sample_logits needs a key to sample at a temperature above 0 (temperature=0 is greedy)"
        )
    return _sample(key, jnp.asarray(logits), temperature, top_k, top_p).astype(jnp.int32)


def _caches(state: Any) -> list[jax.Array]:
    """The ``key`` arrays of every decoding cache in a model's state (``.../cache/key``)."""
    found = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        names = [getattr(p, "key", None) for p in path]
        if names[-2:] == ["cache", "key"]:
            found.append(leaf)
    return found


@functools.lru_cache(maxsize=32)
def _generator(model: Layer, steps: int, temperature: float, top_k: int | None, top_p: float | None):
    """One compiled program per model and sampling setup: prefill, then ``steps - 1`` cached steps."""

    def next_token(params: Any, state: Any, tokens: jax.Array, key: Any) -> tuple[jax.Array, Any]:
        logits, state = model.apply(params, state, tokens[None], train=False)
        if jnp.ndim(logits) != 3:
            raise ValueError(
                f"generate: the model '{model.name}' must map tokens (1, t) to logits (1, t, vocab), "
                f"got {jax.tree.map(jnp.shape, logits)}"
            )
        return _sample(key, logits[0, -1], temperature, top_k, top_p).astype(jnp.int32), state

    def one(params: Any, state: Any, prompt: jax.Array, key: Any) -> jax.Array:
        keys = jax.random.split(key, steps)
        first, state = next_token(params, state, prompt, keys[0])

        def step(carry: tuple, k: Any) -> tuple[tuple, jax.Array]:
            state, token = carry
            token, state = next_token(params, state, token[None], k)
            return (state, token), token

        _, rest = jax.lax.scan(step, (state, first), keys[1:])
        return jnp.concatenate([first[None], rest])

    @jax.jit
    def run(params: Any, state: Any, prompts: jax.Array, key: Any) -> jax.Array:
        keys = jax.random.split(key, prompts.shape[0])
        return jax.vmap(one, in_axes=(None, None, 0, 0))(params, state, prompts, keys)

    return run


def generate(
    model: Layer,
    params: Any,
    state: Any,
    prompts: ArrayLike,
    steps: int,
    *,
    key: Any = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> jax.Array:
    """Continues each prompt by ``steps`` tokens, one compiled program with a key/value cache.

    ``model`` maps token ids ``(1, t)`` to logits ``(1, t, vocab)`` and is built
    for decoding: its attention layers have ``cache_length`` (e.g.
    ``TransformerDecoderBlock(..., cache_length=256)``) and ``state`` is its
    fresh state from ``init`` (empty caches), with the params of the same model
    trained without caches. Each prompt is fed once (prefill); then each new
    token is fed alone, attending to the cache, and drawn by
    :func:`sample_logits`. The prompts of a batch are decoded independently
    (``jax.vmap`` over sequences); the result is the same as re-running the
    whole sequence for every token, to float32 rounding.

    Args:
        model: the decoding model.
        params: its params.
        state: its state with empty caches.
        prompts: ``(batch, time)`` int token ids, ``time >= 1``.
        steps: tokens to generate per prompt.
        key: PRNG key; the same key gives the same tokens. ``None`` only with
            ``temperature=0`` (greedy).
        temperature, top_k, top_p: as for :func:`sample_logits`.

    Returns:
        ``(batch, steps)`` int32 token ids (the prompts not included).

    Raises:
        ValueError: for bad prompts or sampling settings, a state without a
            decoding cache, or a prompt plus ``steps`` longer than the cache.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> def lm(cache_length=None):
        ...     return fnn.Sequential([fnn.Embedding(11, 8),
        ...         fnn.TransformerDecoderBlock(2, 16, cache_length=cache_length), fnn.Dense(11)])
        >>> params, _ = lm().init(jax.random.key(0), fnn.Shape((5,), jnp.int32))
        >>> _, state = lm(cache_length=12).init(jax.random.key(0), fnn.Shape((5,), jnp.int32))
        >>> tokens = generate(lm(cache_length=12), params, state, jnp.array([[1, 2, 3]]), 4, temperature=0)
        >>> tokens.shape, tokens.dtype
        ((1, 4), dtype('int32'))
    """
    steps = check_int("generate", "steps", steps)
    temperature, top_k, top_p = _check_sampling(temperature, top_k, top_p)
    prompts = jnp.asarray(prompts)
    if prompts.ndim != 2 or prompts.shape[1] < 1 or not jnp.issubdtype(prompts.dtype, jnp.integer):
        raise ValueError(
            f"generate: prompts must be int (batch, time >= 1), got {prompts.dtype} {prompts.shape}"
        )
    caches = _caches(state)
    if not caches:
        raise ValueError(
            f"generate: the state of '{model.name}' holds no decoding cache; build the model for decoding "
            "with cache_length in its attention (e.g. TransformerDecoderBlock(..., cache_length=512)) and pass "
            "that model's fresh state"
        )
    room = min(c.shape[-3] for c in caches)
    if prompts.shape[1] + steps - 1 > room:
        raise ValueError(
            f"generate: a prompt of {prompts.shape[1]} tokens and {steps} steps feed "
            f"{prompts.shape[1] + steps - 1} positions, more than the cache_length {room}"
        )
    if key is None:
        if temperature > 0:
            raise ValueError(
                "generate needs a key to sample at a temperature above 0 (temperature=0 is greedy)"
            )
        key = jax.random.key(0)  # unused by greedy decoding
    return _generator(model, steps, temperature, top_k, top_p)(params, state, prompts, key)
