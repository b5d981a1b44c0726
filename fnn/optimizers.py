"""Optimisers by name, as optax ``GradientTransformation`` s.

fnn adds names, Keras's default learning rates and argument checks; the
optimisers themselves are optax's, so anything optax builds (chains, clipping,
masks, schedules) can be passed wherever fnn takes an optimiser.

Named optimisers keep their learning rate in the optimiser state (see
:func:`learning_rate` and :func:`set_learning_rate`), so callbacks such as
``ReduceLROnPlateau`` can change it between steps without recompiling.

By default a name gives optax's optimiser with optax's hyper-parameters and
Keras's default learning rate. ``get(name, defaults="keras")`` gives Keras 3's
hyper-parameters and update rule instead, and takes Keras's argument names
(``beta_1``, ``epsilon``, ``rho``, ``amsgrad``, ``centered``,
``initial_accumulator_value``, ``weight_decay``), so a Keras optimiser ported
unchanged updates the same way (checked step by step against Keras's rules).
Side by side (``t`` is the step, ``m``, ``v`` moving averages of ``g``, ``g**2``;
``m_hat``, ``v_hat`` bias-corrected):

| name | default (``defaults="optax"``) | ``defaults="keras"`` (Keras 3) |
|---|---|---|
| ``sgd`` | ``optax.sgd``, rate 0.01 | ``SGD()``, rate 0.01: the same updates |
| ``momentum`` | ``optax.sgd(momentum=0.9)``, rate 0.01 | ``SGD(momentum=0.9)``: the same (Keras keeps ``lr * g`` in its velocity, equal for a constant rate) |
| ``nesterov`` | ``optax.sgd(momentum=0.9, nesterov=True)`` | ``SGD(momentum=0.9, nesterov=True)``: the same |
| ``adam`` | ``optax.adam``: ``eps=1e-8``, ``m_hat / (sqrt(v_hat) + eps)`` | ``Adam()``: ``epsilon=1e-7`` added to the uncorrected ``sqrt(v)``: ``sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + epsilon)`` (:func:`scale_by_keras_adam`), optax's form with ``eps = epsilon / sqrt(1 - b2**t)``; ``amsgrad`` |
| ``adamw`` | ``optax.adamw``: ``eps=1e-8``, ``weight_decay=1e-4`` | ``AdamW()``: Keras's Adam with ``weight_decay=0.004`` (``w -= lr * wd * w``, as optax decouples it) |
| ``adamax`` | ``optax.adamax``: ``eps=1e-8`` inside the max, ``u = max(b2 * u, abs(g) + eps)``, ``m_hat / u`` | ``Adamax()``: ``u = max(b2 * u, abs(g))``, ``m_hat / (u + 1e-7)`` (:func:`scale_by_keras_adamax`) |
| ``nadam`` | ``optax.nadam``: Adam with a Nesterov step, ``eps=1e-8`` | ``Nadam()``: Dozat's momentum schedule ``b1 * (1 - 0.5 * 0.96**t)``, ``epsilon=1e-7`` (:func:`scale_by_keras_nadam`) |
| ``rmsprop`` | ``optax.rmsprop``: ``decay=0.9``, ``eps=1e-8``, ``g / sqrt(v + eps)`` | ``RMSprop()``: ``rho=0.9``, ``epsilon=1e-7``, the same rule; ``momentum``, ``centered`` |
| ``adadelta`` | ``optax.adadelta``: ``rho=0.9``, ``eps=1e-6`` | ``Adadelta()``: ``rho=0.95``, ``epsilon=1e-7``, the same rule |
| ``adagrad`` | ``optax.adagrad``: ``initial_accumulator_value=0.1``, ``eps=1e-7`` | ``Adagrad()``: the same values and rule |
| ``lamb`` | ``optax.lamb``: ``eps=1e-6`` | ``Lamb()``: ``epsilon=1e-7``, the same rule (its ``weight_decay`` is not offered) |
| ``lion`` | ``optax.lion``: rate 1e-4, ``weight_decay=1e-3`` | ``Lion()``: rate 1e-3, no weight decay |

Every Keras option ``weight_decay`` (except Lamb's) is Keras's decoupled
``w -= lr * wd * w``. With a schedule or a rate changed by a callback,
Keras's SGD and RMSprop momentum (which store ``lr * g``) drift slightly from
these forms (which store ``g`` and scale by the current rate); with a constant
rate they agree.

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


# --------------------------------------------------------------------------- Keras's rules


class ScaleByKerasAdamState(NamedTuple):
    """State of :func:`scale_by_keras_adam` and :func:`scale_by_keras_adamax`.

    ``nu`` holds Adam's second moment or Adamax's infinity norm; ``nu_max`` the
    running maximum of ``nu`` with ``amsgrad=True`` (``None`` otherwise).
    """

    count: jax.Array
    mu: Any
    nu: Any
    nu_max: Any = None


class ScaleByKerasNadamState(NamedTuple):
    """State of :func:`scale_by_keras_nadam`: the step, the moments and ``prod(mu_1..mu_t)``."""

    count: jax.Array
    mu: Any
    nu: Any
    mu_product: jax.Array


def _ema(moment: Any, value: Any, decay: float) -> Any:
    # Keras's form, m += (g - m) * (1 - beta), for the same rounding.
    return jax.tree.map(lambda m, v: m + (v - m) * (1 - decay), moment, value)


def _powers(count: jax.Array, dtype: Any, *bases: float) -> list[jax.Array]:
    step = count.astype(dtype)
    return [jnp.power(jnp.asarray(base, dtype), step) for base in bases]


def scale_by_keras_adam(
    beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7, amsgrad: bool = False
) -> optax.GradientTransformation:
    """Adam's direction as Keras computes it: ``epsilon`` added to the un-corrected ``sqrt(v)``.

    Keras's step is ``lr * a_t * m / (sqrt(v) + epsilon)`` with
    ``a_t = sqrt(1 - beta_2**t) / (1 - beta_1**t)`` and ``m``, ``v`` the plain
    moving averages. That is optax's ``m_hat / (sqrt(v_hat) + eps)`` with
    ``eps = epsilon / sqrt(1 - beta_2**t)``, an epsilon that changes with the
    step (about 32x ``epsilon`` at the first step), which no optax option gives.
    ``amsgrad=True`` uses the running maximum of ``v``, as Keras does.

    Returns:
        An optax transformation giving the direction (multiply by ``-learning_rate``).

    Examples:
        >>> import jax.numpy as jnp
        >>> tx = scale_by_keras_adam()
        >>> updates, _ = tx.update({"w": jnp.array([0.5])}, tx.init({"w": jnp.zeros(1)}))
        >>> # a_1 * m / (sqrt(v) + epsilon) = 0.316 * 0.05 / (0.0158 + 1e-7), about 1 at the first step
        >>> round(float(updates["w"][0]), 4)
        1.0
    """

    def init(params: Any) -> ScaleByKerasAdamState:
        zeros = optax.tree.zeros_like(params)
        return ScaleByKerasAdamState(jnp.zeros([], jnp.int32), zeros, zeros, zeros if amsgrad else None)

    def update(updates: Any, state: ScaleByKerasAdamState, params: Any = None) -> tuple[Any, Any]:
        del params
        count = optax.safe_int32_increment(state.count)
        mu = _ema(state.mu, updates, beta_1)
        nu = _ema(state.nu, jax.tree.map(jnp.square, updates), beta_2)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu) if amsgrad else None

        def direction(m: jax.Array, v: jax.Array) -> jax.Array:
            b1_power, b2_power = _powers(count, m.dtype, beta_1, beta_2)
            alpha = jnp.sqrt(1 - b2_power) / (1 - b1_power)
            return m * alpha / (jnp.sqrt(v) + epsilon)

        updates = jax.tree.map(direction, mu, nu_max if amsgrad else nu)
        return updates, ScaleByKerasAdamState(count, mu, nu, nu_max)

    return optax.GradientTransformation(init, update)


def scale_by_keras_adamax(
    beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> optax.GradientTransformation:
    """Adamax's direction as Keras computes it: ``m / ((1 - beta_1**t) * (u + epsilon))``.

    ``u = max(beta_2 * u, |g|)``; optax adds ``eps`` inside the maximum
    (``max(beta_2 * u, |g| + eps)``), so its ``eps`` also decays into ``u``.

    Examples:
        >>> import jax.numpy as jnp
        >>> tx = scale_by_keras_adamax()
        >>> updates, _ = tx.update({"w": jnp.array([-2.0])}, tx.init({"w": jnp.zeros(1)}))
        >>> round(float(updates["w"][0]), 5)
        -1.0
    """

    def init(params: Any) -> ScaleByKerasAdamState:
        zeros = optax.tree.zeros_like(params)
        return ScaleByKerasAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(updates: Any, state: ScaleByKerasAdamState, params: Any = None) -> tuple[Any, Any]:
        del params
        count = optax.safe_int32_increment(state.count)
        mu = _ema(state.mu, updates, beta_1)
        nu = jax.tree.map(lambda u, g: jnp.maximum(beta_2 * u, jnp.abs(g)), state.nu, updates)

        def direction(m: jax.Array, u: jax.Array) -> jax.Array:
            (b1_power,) = _powers(count, m.dtype, beta_1)
            return m / ((1 - b1_power) * (u + epsilon))

        return jax.tree.map(direction, mu, nu), ScaleByKerasAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def scale_by_keras_nadam(
    beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> optax.GradientTransformation:
    """Nadam's direction as Keras computes it (Dozat's momentum schedule).

    Keras's Nadam uses the momentum schedule ``mu_t = beta_1 * (1 - 0.5 * 0.96**t)``:
    ``m_hat = mu_{t+1} m / (1 - prod(mu_1..mu_{t+1})) + (1 - mu_t) g / (1 - prod(mu_1..mu_t))``,
    ``v_hat = v / (1 - beta_2**t)``, direction ``m_hat / (sqrt(v_hat) + epsilon)``.
    ``optax.nadam`` is Adam with a Nesterov step and no schedule; the two differ
    in every step.

    Examples:
        >>> import jax.numpy as jnp
        >>> tx = scale_by_keras_nadam()
        >>> updates, state = tx.update({"w": jnp.array([1.0])}, tx.init({"w": jnp.zeros(1)}))
        >>> round(float(state.mu_product), 5)  # mu_1 = 0.9 * (1 - 0.5 * 0.96)
        0.468
    """

    def init(params: Any) -> ScaleByKerasNadamState:
        zeros = optax.tree.zeros_like(params)
        return ScaleByKerasNadamState(jnp.zeros([], jnp.int32), zeros, zeros, jnp.ones([], jnp.float32))

    def update(updates: Any, state: ScaleByKerasNadamState, params: Any = None) -> tuple[Any, Any]:
        del params
        count = optax.safe_int32_increment(state.count)
        step = count.astype(jnp.float32)
        mu_t = beta_1 * (1 - 0.5 * jnp.power(jnp.float32(0.96), step))
        mu_next = beta_1 * (1 - 0.5 * jnp.power(jnp.float32(0.96), step + 1))
        product = state.mu_product * mu_t  # Keras updates it before the step, as here
        mu = _ema(state.mu, updates, beta_1)
        nu = _ema(state.nu, jax.tree.map(jnp.square, updates), beta_2)

        def direction(g: jax.Array, m: jax.Array, v: jax.Array) -> jax.Array:
            u_t, u_next, u_prod = (a.astype(m.dtype) for a in (mu_t, mu_next, product))
            m_hat = u_next * m / (1 - u_prod * u_next) + (1 - u_t) * g / (1 - u_prod)
            (b2_power,) = _powers(count, m.dtype, beta_2)
            return m_hat / (jnp.sqrt(v / (1 - b2_power)) + epsilon)

        updates = jax.tree.map(direction, updates, mu, nu)
        return updates, ScaleByKerasNadamState(count, mu, nu, product)

    return optax.GradientTransformation(init, update)


def _keras(
    direction: optax.GradientTransformation, learning_rate: Any, weight_decay: float | None
) -> optax.GradientTransformation:
    # Keras decays weights outside the rule (w -= lr * wd * w), like optax's decoupled decay.
    decay = [] if weight_decay is None else [optax.add_decayed_weights(weight_decay)]
    return optax.chain(direction, *decay, optax.scale(-learning_rate))


def _keras_sgd(
    learning_rate: Any, *, momentum: float = 0.0, nesterov: bool = False, weight_decay: float | None = None
) -> optax.GradientTransformation:
    # Keras keeps lr * g in its momentum; with the rate factored out it is optax's trace.
    trace = optax.trace(decay=momentum, nesterov=nesterov) if momentum else optax.identity()
    return _keras(trace, learning_rate, weight_decay)


def _keras_adam(
    learning_rate: Any,
    *,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    amsgrad: bool = False,
    weight_decay: float | None = None,
) -> optax.GradientTransformation:
    return _keras(scale_by_keras_adam(beta_1, beta_2, epsilon, amsgrad), learning_rate, weight_decay)


def _keras_adamax(
    learning_rate: Any,
    *,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    weight_decay: float | None = None,
) -> optax.GradientTransformation:
    return _keras(scale_by_keras_adamax(beta_1, beta_2, epsilon), learning_rate, weight_decay)


def _keras_nadam(
    learning_rate: Any,
    *,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    weight_decay: float | None = None,
) -> optax.GradientTransformation:
    return _keras(scale_by_keras_nadam(beta_1, beta_2, epsilon), learning_rate, weight_decay)


def _keras_rmsprop(
    learning_rate: Any,
    *,
    rho: float = 0.9,
    momentum: float = 0.0,
    epsilon: float = 1e-7,
    centered: bool = False,
    weight_decay: float | None = None,
) -> optax.GradientTransformation:
    # Keras: g / sqrt(v + eps) (or sqrt(v - mean(g)**2 + eps)), optax's eps_in_sqrt=True.
    scale = optax.scale_by_stddev if centered else optax.scale_by_rms
    steps = [scale(decay=rho, eps=epsilon, eps_in_sqrt=True)]
    if momentum:
        steps.append(optax.trace(decay=momentum))
    return _keras(optax.chain(*steps), learning_rate, weight_decay)


def _keras_adadelta(
    learning_rate: Any, *, rho: float = 0.95, epsilon: float = 1e-7, weight_decay: float | None = None
) -> optax.GradientTransformation:
    return _keras(optax.scale_by_adadelta(rho=rho, eps=epsilon), learning_rate, weight_decay)


def _keras_adagrad(
    learning_rate: Any,
    *,
    initial_accumulator_value: float = 0.1,
    epsilon: float = 1e-7,
    weight_decay: float | None = None,
) -> optax.GradientTransformation:
    rule = optax.scale_by_rss(initial_accumulator_value=initial_accumulator_value, eps=epsilon)
    return _keras(rule, learning_rate, weight_decay)


def _keras_lamb(
    learning_rate: Any, *, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> optax.GradientTransformation:
    # Keras: m_hat / (sqrt(v_hat) + eps), then the trust ratio |w| / |update|: optax.lamb's rule.
    # Its weight decay (applied before the trust ratio reads w) is not offered.
    return optax.lamb(learning_rate, b1=beta_1, b2=beta_2, eps=epsilon, weight_decay=0.0)


def _keras_lion(
    learning_rate: Any, *, beta_1: float = 0.9, beta_2: float = 0.99, weight_decay: float | None = None
) -> optax.GradientTransformation:
    return _keras(optax.scale_by_lion(b1=beta_1, b2=beta_2), learning_rate, weight_decay)


# name -> (builder, Keras's default learning rate, fixed keyword arguments): Keras 3's
# hyper-parameters, argument names (beta_1, epsilon, rho, ...) and update rules.
KERAS_OPTIMIZERS: dict[str, tuple[Callable[..., optax.GradientTransformation], float, dict[str, Any]]] = {
    "sgd": (_keras_sgd, 0.01, {}),
    "momentum": (_keras_sgd, 0.01, {"momentum": 0.9}),
    "nesterov": (_keras_sgd, 0.01, {"momentum": 0.9, "nesterov": True}),
    "adam": (_keras_adam, 0.001, {}),
    "adamw": (_keras_adam, 0.001, {"weight_decay": 0.004}),
    "adamax": (_keras_adamax, 0.001, {}),
    "nadam": (_keras_nadam, 0.001, {}),
    "rmsprop": (_keras_rmsprop, 0.001, {}),
    "adadelta": (_keras_adadelta, 0.001, {}),
    "adagrad": (_keras_adagrad, 0.001, {}),
    "lamb": (_keras_lamb, 0.001, {}),
    "lion": (_keras_lion, 0.001, {}),
}


def get(
    optimizer: str | optax.GradientTransformation,
    *,
    learning_rate: float | Schedule | None = None,
    clipnorm: float | None = None,
    clipvalue: float | None = None,
    global_clipnorm: float | None = None,
    defaults: str = "optax",
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
        defaults: ``"optax"`` (fnn's default): optax's optimiser with its
            hyper-parameters and Keras's default rate. ``"keras"``: Keras 3's
            hyper-parameters and update rule (epsilon placement included), with
            Keras's argument names in ``kwargs``; see the table in
            :mod:`fnn.optimizers`.
        **kwargs: further arguments of the optax constructor (``momentum=0.8``,
            ``b1=0.95``, ``weight_decay=1e-4``, ...), or with ``defaults="keras"``
            of the Keras class (``beta_1=0.95``, ``epsilon=1e-8``, ``rho=0.9``,
            ``amsgrad=True``, ``weight_decay=0.01``, ...).

    Returns:
        An ``optax.GradientTransformation``.

    Raises:
        ValueError: for an unknown name or ``defaults``, or a learning rate that is not positive.
        TypeError: for options given with an optax object, or unknown options.

    Examples:
        >>> import optax
        >>> schedule = optax.exponential_decay(0.1, transition_steps=100, decay_rate=0.5)
        >>> opt = get("momentum", learning_rate=schedule)
        >>> keras_like = get("adadelta", defaults="keras")  # keras.optimizers.Adadelta(): rho=0.95, epsilon=1e-7
    """
    if defaults not in ("optax", "keras"):
        raise ValueError(f"optimizer {optimizer!r}: defaults must be 'optax' or 'keras', got {defaults!r}")
    clipping = _clipping(optimizer, clipnorm=clipnorm, clipvalue=clipvalue, global_clipnorm=global_clipnorm)
    if callable(getattr(optimizer, "gradient_transformation", None)):  # optax.MultiSteps and its kind
        optimizer = optimizer.gradient_transformation()
    if isinstance(optimizer, optax.GradientTransformation):
        if learning_rate is not None or kwargs or defaults != "optax":
            raise TypeError(
                "optimizer is already an optax GradientTransformation; set its learning rate "
                f"and options when building it, not here (got learning_rate={learning_rate!r}, "
                f"{kwargs}{', defaults=' + repr(defaults) if defaults != 'optax' else ''})"
            )
        return optax.chain(*clipping, optimizer) if clipping else optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name or an optax GradientTransformation, got {optimizer!r}")
    build, default_rate, fixed = lookup(
        "optimizer", KERAS_OPTIMIZERS if defaults == "keras" else OPTIMIZERS, optimizer
    )
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
        # Every optimiser here ends in scaling by -learning_rate; building it with
        # rate 1 (a sign flip) and scaling by an injected rate afterwards gives the same
        # updates bit for bit, with the rate in the state where callbacks can read and
        # change it without recompiling.
        inner = build(learning_rate=1.0, **{**fixed, **kwargs})
    except TypeError as e:
        names = " (Keras's argument names with defaults='keras')" if defaults == "keras" else ""
        raise TypeError(f"optimizer {optimizer!r}: bad options {kwargs}{names}: {e}") from None
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
    return _with_value(opt_state, holder, name, value)


def set_hyperparam(opt_state: Any, name: str, value: float) -> Any:
    """A copy of ``opt_state`` with the injected hyper-parameter ``name`` set (nothing is mutated).

    For optimisers built with ``optax.inject_hyperparams``, which keep their
    hyper-parameters in their state (``"learning_rate"`` goes through
    :func:`set_learning_rate`, which also finds the rate of a named optimiser).

    Raises:
        ValueError: when no injected hyper-parameter has that name (the message
            lists those there are), or it follows a schedule.

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> opt = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=1e-4)
        >>> state = set_hyperparam(opt.init({"w": jnp.zeros(2)}), "weight_decay", 0.1)
        >>> round(float(state.hyperparams["weight_decay"]), 6)
        0.1
    """
    if name == "learning_rate":
        return set_learning_rate(opt_state, value)
    holders: list[Any] = []

    def visit(node: Any) -> bool:
        if isinstance(node, optax.InjectStatefulHyperparamsState):
            holders.append(node)
            return True
        return False

    jax.tree.leaves(opt_state, is_leaf=visit)
    holder = next((h for h in holders if name in h.hyperparams), None)
    if holder is None:
        known = sorted({k for h in holders for k in h.hyperparams})
        raise ValueError(
            f"hyper-parameter {name!r} is not in the optimiser's state (it holds {known}); build the "
            f"optimiser with optax.inject_hyperparams, e.g. optax.inject_hyperparams(optax.adamw)("
            f"learning_rate=1e-3, {name}=...)"
        )
    if name in holder.hyperparams_states:
        raise ValueError(f"hyper-parameter {name!r} follows a schedule; it cannot also be set by hand")
    return _with_value(opt_state, holder, name, value)


def _with_value(opt_state: Any, holder: Any, name: str, value: Any) -> Any:
    """``opt_state`` with ``holder``'s hyper-parameter ``name`` replaced, in its dtype."""
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
