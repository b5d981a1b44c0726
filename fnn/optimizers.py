"""Optimisers by name, as optax ``GradientTransformation`` s.

fnn adds names, Keras's default learning rates and argument checks; the
optimisers themselves are optax's, so anything optax builds (chains, clipping,
masks, schedules) can be passed wherever fnn takes an optimiser.

Example:
    >>> from fnn import optimizers
    >>> opt = optimizers.get("adam", learning_rate=1e-3)
    >>> type(opt).__name__
    'GradientTransformationExtraArgs'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optax

from fnn._checks import lookup

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
    **kwargs: Any,
) -> optax.GradientTransformation:
    """Builds a named optimiser, or passes an optax one through unchanged.

    Args:
        optimizer: a name from :data:`OPTIMIZERS` (``"sgd"``, ``"momentum"``,
            ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"adadelta"``, ``"adagrad"``,
            ...) or an ``optax.GradientTransformation``.
        learning_rate: a positive float or an optax schedule (``step -> rate``);
            Keras's default for the optimiser when omitted.
        **kwargs: further arguments of the optax constructor (``momentum=0.8``,
            ``b1=0.95``, ``weight_decay=1e-4``, ...).

    Returns:
        An ``optax.GradientTransformation``.

    Raises:
        ValueError: for an unknown name or a learning rate that is not positive.
        TypeError: for options given with an optax object, or unknown options.

    Example:
        >>> import optax
        >>> schedule = optax.exponential_decay(0.1, transition_steps=100, decay_rate=0.5)
        >>> opt = get("momentum", learning_rate=schedule)
    """
    if isinstance(optimizer, optax.GradientTransformation):
        if learning_rate is not None or kwargs:
            raise TypeError(
                "optimizer is already an optax GradientTransformation; set its learning rate "
                f"and options when building it, not here (got learning_rate={learning_rate!r}, "
                f"{kwargs})"
            )
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer must be a name or an optax GradientTransformation, got {optimizer!r}")
    build, default_rate, fixed = lookup("optimizer", OPTIMIZERS, optimizer)
    rate = default_rate if learning_rate is None else learning_rate
    if not callable(rate) and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0):
        raise ValueError(
            f"optimizer {optimizer!r}: learning_rate must be a positive float or an optax "
            f"schedule, got {rate!r}"
        )
    try:
        return build(learning_rate=rate, **{**fixed, **kwargs})
    except TypeError as e:
        raise TypeError(f"optimizer {optimizer!r}: bad options {kwargs}: {e}") from None
