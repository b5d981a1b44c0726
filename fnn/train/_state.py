"""TrainState: everything a training run carries, as one pytree."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fnn import checkpoint, optimizers
from fnn._core import Layer


@jax.jit  # one program per tree, not a dispatch (and a compile) per leaf
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

    @classmethod
    def restore(
        cls,
        path: str | os.PathLike,
        model: Layer,
        optimizer: str | optax.GradientTransformation,
        input_shape: Any,
        *,
        key: jax.Array | None = None,
    ) -> TrainState:
        """Continues a run in another script: the TrainState a checkpoint holds, checked and typed.

        A checkpoint restored without a target comes back as plain dicts; this
        builds the target from ``model`` and ``optimizer`` (no FLOPs), so the
        result can go straight to ``fnn.fit(train_state=...)``. It reads a whole
        TrainState (:class:`fnn.ModelCheckpoint`'s default, or
        ``fnn.checkpoint.save(path, train_state)``), or just ``{"params",
        "state"}`` (``save_weights_only=True``), which then get a fresh
        optimiser state, step 0 and the run key of ``key``.

        Args:
            path: a checkpoint directory (e.g. ``manager.path(manager.best())``).
            model: the model it was saved from.
            optimizer: the optimiser to go on with (a name or an optax transformation).
            input_shape: the per-example input shape.
            key: for weights-only checkpoints, the key of the run to start (``key(0)``).

        Raises:
            fnn.checkpoint.CheckpointError: when the checkpoint fits neither
                layout, listing what differs.

        Examples:
            >>> import tempfile, os, fnn
            >>> model = fnn.Dense(2)
            >>> ts = TrainState.create(model, fnn.optimizers.get("sgd"), (3,), jax.random.key(0))
            >>> path = fnn.checkpoint.save(os.path.join(tempfile.mkdtemp(), "ckpt"), ts)
            >>> int(TrainState.restore(path, model, "sgd", (3,)).step)
            0
        """
        tx = optimizers.get(optimizer)
        fresh = jax.eval_shape(
            lambda k: cls.create(model, tx, input_shape, k), jax.random.key(0) if key is None else key
        )
        try:
            return checkpoint.restore(path, fresh)
        except checkpoint.CheckpointError as whole:
            try:
                weights = checkpoint.restore(path, {"params": fresh.params, "state": fresh.state})
            except checkpoint.CheckpointError as partial:
                raise checkpoint.CheckpointError(
                    f"{path} holds neither a TrainState nor {{'params', 'state'}} of this model and "
                    f"optimiser:\n{whole}\n{partial}"
                ) from None
        return cls.create(model, tx, input_shape, jax.random.key(0) if key is None else key, **weights)


def initial_train_state(
    model: Layer, tx: optax.GradientTransformation, input_shape: Any, seed: int, params: Any, state: Any,
    train_state: Any, resume_from: Any, initial_epoch: int,
) -> tuple[TrainState, int]:  # fmt: skip
    """``fit``'s starting TrainState, and its starting epoch, from whichever of its arguments says so.

    ``resume_from`` (a checkpoint) goes on from the epoch after the one it saved,
    unless ``initial_epoch`` says otherwise; ``train_state`` is used as given;
    else a fresh one is made from ``seed`` (with ``params``/``state`` if given).
    """
    if resume_from is not None:
        if train_state is not None:
            raise ValueError("fit: pass resume_from or train_state, not both")
        saved_epoch = checkpoint.read_metadata(resume_from).get("epoch")
        if initial_epoch == 0 and isinstance(saved_epoch, int):
            initial_epoch = saved_epoch + 1
        train_state = TrainState.restore(resume_from, model, tx, input_shape, key=jax.random.key(seed))
    if train_state is None:
        return TrainState.create(
            model, tx, input_shape, jax.random.key(seed), params=params, state=state
        ), initial_epoch
    if params is not None or state is not None:
        raise ValueError("fit: pass train_state (or resume_from) or params/state, not both")
    if not isinstance(train_state, TrainState):
        raise TypeError(
            f"fit: train_state must be a TrainState, got {type(train_state).__name__}; a checkpoint "
            "restored without a target is plain dicts: use fnn.TrainState.restore(path, model, "
            "optimizer, input_shape), or fit(resume_from=path)"
        )
    return train_state, initial_epoch
