"""Optimisers by name, as optax ``GradientTransformation`` s.

fnn adds names, Keras's default learning rates and argument checks; the
optimisers themselves are optax's, so anything optax builds (chains, clipping,
masks, schedules) can be passed wherever fnn takes an optimiser.

Named optimisers keep their learning rate in the optimiser state (see
:func:`learning_rate` and :func:`set_learning_rate`), so callbacks such as
``ReduceLROnPlateau`` can change it between steps without recompiling.

Example:
    >>> import jax
    >>> from fnn import optimizers
    >>> opt = optimizers.get("adam", learning_rate=1e-3)
    >>> params = {"w": jax.numpy.zeros(3)}
    >>> float(optimizers.learning_rate(opt.init(params)))
    0.001
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fnn._checks import check_int, lookup
from fnn._core import leaf_paths, path_str, select_paths

Schedule = Callable[[Any], Any]

# name -> (optax constructor, Keras's default learning rate, fixed keyword arguments)
OPTIMIZERS: dict[str, tuple[Callable[..., optax.GradientTransformation], float, dict[str, Any]]] = {
    "sgd": (optax.sgd, 0.01, {}),
    "momentum": (optax.sgd, 0.01, {"momentum": 0.9}),
    "nesterov": (optax.sgd, 0.01, {"momentum": 0.9, "nesterov": True}),
    "adam": (optax.adam, 0.001, {}),
    "adamw": (optax.adamw, 0.001, {}),
    "adamax": (optax.adamax, 0.001, {}),
    "nadam": (optax.nadam, 0.001, {}),
    "rmsprop": (optax.rmsprop, 0.001, {}),
    "adadelta": (optax.adadelta, 0.001, {}),
    "adagrad": (optax.adagrad, 0.001, {}),
    "lamb": (optax.lamb, 0.001, {}),
    "lion": (optax.lion, 0.0001, {}),
}


def get(
    optimizer: str | optax.GradientTransformation,
    *,
    learning_rate: float | Schedule | None = None,
    clipnorm: float | None = None,
    clipvalue: float | None = None,
    global_clipnorm: float | None = None,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """Builds a named optimiser, or passes an optax one through unchanged.

    Args:
        optimizer: a name from :data:`OPTIMIZERS` (``"sgd"``, ``"momentum"``,
            ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"adadelta"``, ``"adagrad"``,
            ...), an ``optax.GradientTransformation``, or an optax wrapper that
            makes one (``optax.MultiSteps`` for gradient accumulation).
        learning_rate: a positive float or an optax schedule (``step -> rate``);
            Keras's default for the optimiser when omitted.
        clipnorm: as in Keras, clip each gradient array to this L2 norm first
            (``optax.clip_by_block_rms`` would scale by size; this does not).
        clipvalue: as in Keras, clip every gradient element to ``[-clipvalue, clipvalue]`` first.
        global_clipnorm: as in Keras, scale all gradients together so their
            global L2 norm is at most this (``optax.clip_by_global_norm``).
        **kwargs: further arguments of the optax constructor (``momentum=0.8``,
            ``b1=0.95``, ``weight_decay=1e-4``, ...).

    Returns:
        An ``optax.GradientTransformation``.

    Raises:
        ValueError: for an unknown name or a learning rate that is not positive.
        TypeError: for options given with an optax object, or unknown options.

    Examples:
        >>> import optax
        >>> schedule = optax.exponential_decay(0.1, transition_steps=100, decay_rate=0.5)
        >>> opt = get("momentum", learning_rate=schedule)
    """
    clipping = _clipping(optimizer, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm)
    if callable(getattr(optimizer, "gradient_transformation", None)):  # optax.MultiSteps and its kind
        optimizer = optimizer.gradient_transformation()
    if isinstance(optimizer, optax.GradientTransformation):
        if learning_rate is not None or kwargs:
            raise TypeError(
                "optimizer is already an optax GradientTransformation; set its learning rate "
                f"and options when building it, not here (got learning_rate={learning_rate!r}, "
                f"{kwargs})"
            )
        return optax.chain(*clipping, optimizer) if clipping else optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name or an optax GradientTransformation, got {optimizer!r}")
    build, default_rate, fixed = lookup("optimizer", OPTIMIZERS, optimizer)
    rate = default_rate if learning_rate is None else learning_rate
    if not callable(rate) and not _is_positive_number(rate):
        raise ValueError(
            f"optimizer {optimizer!r}: learning_rate must be a positive, finite float or an optax "
            f"schedule, got {rate!r}"
        )
    for name, value in kwargs.items():
        # A NaN momentum or decay would turn every parameter into NaN at the first step.
        if isinstance(value, (float, jax.Array, np.ndarray, np.floating)) and not np.all(np.isfinite(value)):
            raise ValueError(f"optimizer {optimizer!r}: {name} must be finite, got {value!r}")
    try:
        # Every optax optimiser here ends in scale_by_learning_rate; building it with
        # rate 1 (a sign flip) and scaling by an injected rate afterwards gives the same
        # updates bit for bit, with the rate in the state where callbacks can read and
        # change it without recompiling.
        inner = build(learning_rate=1.0, **{**fixed, **kwargs})
    except TypeError as e:
        raise TypeError(f"optimizer {optimizer!r}: bad options {kwargs}: {e}") from None
    return optax.chain(*clipping, inner, optax.inject_hyperparams(optax.scale)(step_size=rate))


def _clipping(optimizer: Any, **limits: float | None) -> list[optax.GradientTransformation]:
    """Keras's gradient clipping options, as the optax transformations that go first."""
    for name, limit in limits.items():
        if limit is not None and not _is_positive_number(limit):
            raise ValueError(
                f"optimizer {optimizer!r}: {name} must be a positive, finite float, got {limit!r}"
            )
    if limits["clipnorm"] is not None and limits["global_clipnorm"] is not None:
        raise ValueError(f"optimizer {optimizer!r}: pass clipnorm or global_clipnorm, not both")
    clips = []
    if limits["clipvalue"] is not None:
        clips.append(optax.clip(limits["clipvalue"]))
    if limits["clipnorm"] is not None:  # per array, as Keras does
        clips.append(_clip_each_by_norm(limits["clipnorm"]))
    if limits["global_clipnorm"] is not None:
        clips.append(optax.clip_by_global_norm(limits["global_clipnorm"]))
    return clips


def _clip_each_by_norm(limit: float) -> optax.GradientTransformation:
    """Scales each gradient array whose L2 norm exceeds ``limit`` down to it."""

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params

        def clip(g: jax.Array) -> jax.Array:
            norm = jnp.sqrt(jnp.sum(jnp.square(g)))
            return g * jnp.minimum(1.0, limit / jnp.maximum(norm, 1e-30)).astype(g.dtype)

        return jax.tree.map(clip, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _rate_holder(opt_state: Any) -> Any:
    """The injected-hyperparameters state that holds the learning rate, or None."""
    found = []

    def visit(node: Any) -> Any:
        if isinstance(node, optax.InjectStatefulHyperparamsState):
            if not found and {"learning_rate", "step_size"} & set(node.hyperparams):
                found.append(node)
            return True
        return False

    jax.tree.leaves(opt_state, is_leaf=visit)
    return found[0] if found else None


def learning_rate(opt_state: Any) -> jax.Array | None:
    """The current learning rate stored in an optimiser state, or ``None``.

    Works for optimisers built by :func:`get` and for optax's
    ``inject_hyperparams(...)(learning_rate=...)``. With a schedule it is the
    rate of the last step taken.

    Examples:
        >>> import jax.numpy as jnp
        >>> opt = get("sgd", learning_rate=0.05)
        >>> float(learning_rate(opt.init({"w": jnp.zeros(2)})))
        0.05
    """
    holder = _rate_holder(opt_state)
    if holder is None:
        return None
    params = holder.hyperparams
    return params["learning_rate"] if "learning_rate" in params else params["step_size"]


def _is_positive_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def set_learning_rate(opt_state: Any, value: float) -> Any:
    """A copy of ``opt_state`` with a new learning rate (nothing is mutated).

    Raises:
        ValueError: when the state holds no learning rate, or the rate follows a
            schedule (it would be overwritten at the next step).

    Examples:
        >>> import jax.numpy as jnp
        >>> opt = get("adam")
        >>> state = set_learning_rate(opt.init({"w": jnp.zeros(2)}), 1e-4)
        >>> round(float(learning_rate(state)), 6)
        0.0001
    """
    concrete = not isinstance(value, jax.core.Tracer)  # a traced rate is checked where it is made
    if concrete and not _is_positive_number(value.item() if hasattr(value, "item") else value):
        raise ValueError(f"set_learning_rate: value must be a positive, finite float, got {value!r}")
    holder = _rate_holder(opt_state)
    if holder is None:
        raise ValueError(
            "the optimiser state holds no learning rate to change: pass the optimiser by "
            "name (fnn.optimizers.get) or build it with "
            "optax.inject_hyperparams(optax.adam)(learning_rate=...)"
        )
    name = "learning_rate" if "learning_rate" in holder.hyperparams else "step_size"
    if name in holder.hyperparams_states:
        raise ValueError("the learning rate follows a schedule; it cannot also be set by hand")
    old = holder.hyperparams[name]
    new_holder = holder._replace(
        hyperparams={**holder.hyperparams, name: jnp.asarray(value, jnp.result_type(old))}
    )
    return jax.tree.map(
        lambda node: new_holder if node is holder else node,
        opt_state,
        is_leaf=lambda node: node is holder,
    )


def freeze(
    optimizer: str | optax.GradientTransformation, frozen: str | Sequence[str]
) -> optax.GradientTransformation:
    """An optimiser that leaves the parameters matching ``frozen`` exactly as they are.

    For transfer learning and fine-tuning. Frozen parameters get zero updates
    (weight decay included, since it is part of the masked optimiser) and no
    optimiser state; XLA drops their unused gradients. Built on
    ``optax.multi_transform``. To unfreeze, train on with a plain optimiser.

    Args:
        optimizer: a name (see :func:`get`) or an optax transformation.
        frozen: patterns over parameter paths (``dense_1/w``): a path prefix of
            whole components (a layer name such as ``"features"``, or a child
            index such as ``"0"``) or a glob (``"*/conv*"``). Each pattern must
            match some parameter (a typo is an error, not a silent no-op).

    Returns:
        An optax transformation.

    Examples:
        >>> import jax.numpy as jnp
        >>> params = {"features": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}
        >>> opt = freeze("sgd", "features")
        >>> grads = jax.tree.map(jnp.ones_like, params)
        >>> updates, _ = opt.update(grads, opt.init(params), params)
        >>> updates["features"]["w"].tolist(), updates["head"]["w"].tolist()
        ([0.0, 0.0], [-0.01, -0.01])
    """
    tx = get(optimizer)

    def labels(params: Any) -> Any:
        chosen = select_paths("freeze", leaf_paths(params), frozen)
        return jax.tree_util.tree_map_with_path(
            lambda p, _: "frozen" if path_str(p) in chosen else "trainable", params
        )

    return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)


class LossScaleState(NamedTuple):
    """State of :func:`loss_scale`: the current scale, finite steps in a row, the inner state."""

    scale: jax.Array
    good_steps: jax.Array
    inner_state: Any


def loss_scale(
    optimizer: str | optax.GradientTransformation,
    *,
    initial_scale: float = 2.0**15,
    growth_interval: int = 2000,
    factor: float = 2.0,
) -> optax.GradientTransformation:
    """Dynamic loss scaling for float16 training, as an optimiser wrapper.

    float16 gradients underflow to zero below about 6e-8. Train steps built by
    :func:`fnn.make_train_step` (and so :func:`fnn.fit`) find this wrapper's
    state and differentiate ``loss * scale`` instead of ``loss``; the wrapper
    divides the gradients by the scale before the inner optimiser sees them.
    A step with non-finite gradients changes nothing (no update, inner state
    kept) and divides the scale by ``factor``; after ``growth_interval``
    finite steps in a row the scale grows by ``factor``. This is Keras's
    ``LossScaleOptimizer``. bfloat16 has float32's range and needs none of this.

    Args:
        optimizer: a name (see :func:`get`) or an optax transformation.
        initial_scale: the first scale, a positive number.
        growth_interval: finite steps before the scale grows, a positive int.
        factor: how much the scale grows or shrinks, above 1.

    Raises:
        ValueError: for a bad argument, naming it.

    Examples:
        >>> import jax.numpy as jnp
        >>> opt = loss_scale("sgd", initial_scale=8.0)
        >>> params = {"w": jnp.ones(2)}
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": jnp.array([8.0, jnp.inf])}, state, params)
        >>> updates["w"].tolist(), float(state.scale)
        ([0.0, 0.0], 4.0)
    """
    if (
        not isinstance(initial_scale, (int, float))
        or isinstance(initial_scale, bool)
        or not initial_scale > 0
    ):
        raise ValueError(f"loss_scale: initial_scale must be a positive number, got {initial_scale!r}")
    growth_interval = check_int("loss_scale", "growth_interval", growth_interval)
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor > 1:
        raise ValueError(f"loss_scale: factor must be a number above 1, got {factor!r}")
    tx = get(optimizer)

    def init(params: Any) -> LossScaleState:
        return LossScaleState(jnp.float32(initial_scale), jnp.int32(0), tx.init(params))

    def update(grads: Any, state: LossScaleState, params: Any = None) -> tuple[Any, LossScaleState]:
        grads = jax.tree.map(lambda g: g / state.scale.astype(g.dtype), grads)
        finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        updates, inner = tx.update(grads, state.inner_state, params)
        # A non-finite step is skipped: no update, the inner state kept, the scale shrunk.
        updates = jax.tree.map(lambda u: jnp.where(finite, u, 0), updates)
        inner = jax.tree.map(lambda new, old: jnp.where(finite, new, old), inner, state.inner_state)
        good = jnp.where(finite, state.good_steps + 1, 0)
        grow = good >= growth_interval
        scale = jnp.where(grow, state.scale * factor, jnp.where(finite, state.scale, state.scale / factor))
        return updates, LossScaleState(
            scale.astype(jnp.float32), jnp.where(grow, 0, good).astype(jnp.int32), inner
        )

    return optax.GradientTransformation(init, update)


def current_loss_scale(opt_state: Any) -> jax.Array | None:
    """The loss scale held by a :func:`loss_scale` optimiser's state, or ``None`` without one.

    Raises:
        ValueError: if the state holds more than one loss scale.

    Examples:
        >>> import jax.numpy as jnp
        >>> float(current_loss_scale(loss_scale("adam").init({"w": jnp.ones(2)})))
        32768.0
    """
    found = []
    jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(n, LossScaleState) and not found.append(n))
    if len(found) > 1:
        raise ValueError(f"the optimiser state holds {len(found)} loss scales; wrap the optimiser once")
    return found[0].scale if found else None
