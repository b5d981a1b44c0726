"""TrainState: everything a training run carries, as one pytree."""

from __future__ import annotations

import collections
import functools
import hashlib
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn import checkpoint, optimizers
from fnn._core import Layer, _in_key_order, _key_order, _StaticShape, as_shape


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
        the per-step randomness (dropout). At most two compiled programs: the
        model's init (cached per model and input shape) and the rest. Every
        array is a fresh buffer (``params`` and ``state`` given are copied), so
        steps that donate their inputs leave the caller's arrays valid.

        Examples:
            >>> import fnn
            >>> model = fnn.Dense(2)
            >>> ts = TrainState.create(model, fnn.optimizers.get("sgd"), (3,), jax.random.key(0))
            >>> int(ts.step), ts.params["w"].shape
            (0, (3, 2))
        """
        return create_train_state(model, optimizer, input_shape, key, params, state)

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
        fresh = _abstract_train_state(model, tx, input_shape)
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


def _abstract_train_state(model: Layer, tx: optax.GradientTransformation, input_shape: Any) -> TrainState:
    """The shapes and dtypes of a fresh TrainState, its dicts in the model's key order (nothing runs)."""
    orders: dict[str, Any] = {}

    def create(key: jax.Array) -> TrainState:
        params, state = model.init(key, input_shape)
        orders.update(params=_key_order(params), state=_key_order(state))
        return _started(tx, params, state, key)

    return _in_orders(jax.eval_shape(create, jax.random.key(0)), orders["params"], orders["state"])


def _started(tx: optax.GradientTransformation, params: Any, state: Any, run_key: jax.Array) -> TrainState:
    """A TrainState at step zero: a fresh optimiser state for ``params``."""
    return TrainState(params, state, tx.init(params), jnp.zeros((), jnp.int32), run_key)


def _in_orders(ts: TrainState, params_order: Any, state_order: Any) -> TrainState:
    """``ts`` with its params and state dicts in the given key orders (jit and eval_shape sort them)."""
    return ts._replace(
        params=_in_key_order(ts.params, params_order), state=_in_key_order(ts.state, state_order)
    )


def seed_bits(seed: int) -> jax.Array:
    """The bits of ``seed`` that ``jax.random.key(seed)`` keeps (the low 32 without x64), placed.

    ``jax.random.key(bits)`` inside a compiled call is then ``jax.random.key(seed)``
    without compiling a program of its own.
    """
    return jax.device_put(
        np.asarray(seed, np.uint64) if jax.config.jax_enable_x64 else np.uint32(seed & 0xFFFFFFFF)
    )


def create_train_state(
    model: Layer, tx: optax.GradientTransformation, input_shape: Any, key: jax.Array, params: Any = None,
    state: Any = None,
) -> TrainState:  # fmt: skip
    """:meth:`TrainState.create` in at most two programs; ``key`` is a PRNG key or :func:`seed_bits`'s."""
    from_seed = not jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if params is None or state is None:
        init = _init_program(model, input_shape, from_seed)
        params, init_state = init(key) if params is None else (params, init(key)[1])
        state = init_state if state is None else state
    return _in_orders(
        _begin_program(tx, from_seed)(key, params, state), _key_order(params), _key_order(state)
    )


def _init_program(model: Layer, input_shape: Any, from_seed: bool) -> Any:
    try:
        static = _StaticShape(as_shape(input_shape))
        return _cached_init_program(model, static, from_seed)
    except TypeError:  # not a shape (the layer's own check names what is wrong), or an unhashable model
        return lambda key: model.init(jax.random.split(_key(key, from_seed))[0], input_shape)


@functools.lru_cache(maxsize=64)
def _cached_init_program(model: Layer, static: _StaticShape, from_seed: bool) -> Any:
    orders: dict[str, Any] = {}  # filled while tracing: jit hands dicts back with sorted keys

    def init(key: jax.Array) -> Any:
        out = model.init(jax.random.split(_key(key, from_seed))[0], static.shape)
        orders["out"] = _key_order(out)
        return out

    # As fnn's compiled init: LLVM's level 1 compiles random bits a third as long; an init runs once.
    jitted = _compiled_once(jax.jit(init, compiler_options={"xla_backend_optimization_level": 1}))
    return lambda key: _in_key_order(jitted(key), orders["out"])


def _begin_program(tx: optax.GradientTransformation, from_seed: bool) -> Any:
    def begin(key: jax.Array, params: Any, state: Any) -> TrainState:
        params, state = jax.tree.map(jnp.copy, (params, state))  # fresh buffers, whoever else holds these
        return _started(tx, params, state, jax.random.split(_key(key, from_seed))[1])

    return _compiled_once(jax.jit(begin))


# Setup programs compiled in this process, by the hash of their text, most recently used last.
_PROGRAMS: collections.OrderedDict[bytes, jax.stages.Compiled] = collections.OrderedDict()


def _compiled_once(jitted: Any) -> Callable:
    """``jitted``, its executable taken from this process's setup programs when one has the same text.

    So a new model just like an earlier one (a notebook cell run again, a test)
    reuses its init and TrainState programs instead of compiling them again.
    Identical program text with the same argument and result structures is the
    same computation, so this changes no result.
    """

    def call(*args: Any) -> Any:
        lowered = jitted.lower(*args)
        # The text holds no pytree structure (a dict's keys): that goes in too.
        text = hashlib.sha256(f"{lowered.in_tree}{lowered.out_tree}{lowered.as_text()}".encode()).digest()
        compiled = _PROGRAMS.pop(text, None) or lowered.compile()
        _PROGRAMS[text] = compiled
        while len(_PROGRAMS) > 32:
            _PROGRAMS.popitem(last=False)
        return compiled(*args)

    return call


def _key(key: jax.Array, from_seed: bool) -> jax.Array:
    return jax.random.key(key) if from_seed else key


@jax.jit
def _fresh_copy(tree: Any) -> Any:
    """A copy of ``tree`` in new buffers, in one program (steps that donate their inputs may then consume it)."""
    return jax.tree.map(jnp.copy, tree)


def initial_train_state(
    model: Layer, tx: optax.GradientTransformation, input_shape: Any, seed: int, params: Any, state: Any,
    train_state: Any, resume_from: Any, initial_epoch: int,
) -> tuple[TrainState, int]:  # fmt: skip
    """``fit``'s starting TrainState, and its starting epoch, from whichever of its arguments says so.

    ``resume_from`` (a checkpoint) goes on from the epoch after the one it saved,
    unless ``initial_epoch`` says otherwise; ``train_state`` is used as given;
    else a fresh one is made from ``seed`` (with ``params``/``state`` if given).
    Its arrays are new buffers (fit's steps donate them); at most two programs compile.
    """
    if resume_from is not None and train_state is not None:
        raise ValueError("fit: pass resume_from or train_state, not both")
    if (resume_from is not None or train_state is not None) and (params is not None or state is not None):
        raise ValueError("fit: pass train_state (or resume_from) or params/state, not both")
    if resume_from is not None:  # restored into new buffers
        saved_epoch = checkpoint.read_metadata(resume_from).get("epoch")
        if initial_epoch == 0 and isinstance(saved_epoch, int):
            initial_epoch = saved_epoch + 1
        return TrainState.restore(
            resume_from, model, tx, input_shape, key=jax.random.key(seed)
        ), initial_epoch
    if train_state is None:
        return create_train_state(model, tx, input_shape, seed_bits(seed), params, state), initial_epoch
    if not isinstance(train_state, TrainState):
        raise TypeError(
            f"fit: train_state must be a TrainState, got {type(train_state).__name__}; a checkpoint "
            "restored without a target is plain dicts: use fnn.TrainState.restore(path, model, "
            "optimizer, input_shape), or fit(resume_from=path)"
        )
    return _fresh_copy(train_state), initial_epoch
