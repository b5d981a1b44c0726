"""TrainState: everything a training run carries, as one pytree."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fnn._core import Layer


def all_finite(tree: Any) -> jax.Array:
    """A bool scalar: whether every float leaf of ``tree`` is finite (integer leaves pass).

    One reduction, so it costs a single device-to-host transfer when read, and works under ``jit``.

    Examples:
        >>> bool(all_finite({"w": jnp.ones(2), "count": jnp.zeros((), jnp.int32)}))
        True
        >>> bool(all_finite([jnp.array([1.0, jnp.nan])]))
        False
    """
    checks = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def turned_non_finite(old: Any, new: Any) -> jax.Array:
    """A bool scalar: whether any float element of ``new`` is NaN or infinite where ``old``'s was finite.

    Values that are infinite by design (an optimiser's ``best_value=inf``, a
    running maximum from ``-inf``) stay so without counting; one reduction, ``jit``-safe.

    Examples:
        >>> state = {"best": jnp.asarray(jnp.inf), "w": jnp.ones(2)}
        >>> bool(turned_non_finite(state, state))
        False
        >>> bool(turned_non_finite([jnp.ones(2)], [jnp.array([1.0, jnp.nan])]))
        True
    """
    checks = [
        jnp.any(jnp.isfinite(a) & ~jnp.isfinite(b))
        for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new))
        if jnp.issubdtype(b.dtype, jnp.inexact)
    ]
    return jnp.any(jnp.stack(checks)) if checks else jnp.asarray(False)


class TrainState(NamedTuple):
    """What a run carries: the step maps it, a fused scan carries it, checkpoints save it.

    Attributes:
        params: the model's trainable parameters.
        state: the model's non-trainable state (e.g. running statistics).
        opt_state: the optimiser's state.
        step: int32 scalar, the number of optimiser steps taken.
        key: the run's PRNG key; step ``s`` uses ``fold_in(key, s)``, so a
            resumed run draws exactly the randomness the uninterrupted one would.
    """

    params: Any
    state: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array

    @classmethod
    def create(
        cls,
        model: Layer,
        optimizer: optax.GradientTransformation,
        input_shape: Any,
        key: jax.Array,
        *,
        params: Any = None,
        state: Any = None,
    ) -> TrainState:
        """Initialises a run: params and state from ``model.init`` (unless given).

        ``key`` is split in two: one half initialises the model, the other drives
        the per-step randomness (dropout).

        Examples:
            >>> import fnn
            >>> model = fnn.Dense(2)
            >>> ts = TrainState.create(model, fnn.optimizers.get("sgd"), (3,), jax.random.key(0))
            >>> int(ts.step), ts.params["w"].shape
            (0, (3, 2))
        """
        init_key, run_key = jax.random.split(key)
        if params is None:
            params, init_state = model.init(init_key, input_shape)
            state = init_state if state is None else state
        elif state is None:
            state = model.init(init_key, input_shape)[1]
        return cls(params, state, optimizer.init(params), jnp.zeros((), jnp.int32), run_key)
