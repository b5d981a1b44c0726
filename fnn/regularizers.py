"""Weight and activity penalties by name, as Keras's ``kernel_regularizer=`` takes them.

A regularizer is a function ``array -> scalar``, the penalty a layer adds to
the training loss for one of its parameters (``kernel_regularizer=``) or for
its output (``activity_regularizer=``). The formulas and default rates are
Keras's: ``l2`` is ``rate * sum(x ** 2)``, with no ``1/2``. Any function of
that form works too, e.g. ``lambda w: 1e-3 * jnp.sum(jnp.abs(w))``.

Layers write their penalties into their state under ``"losses"`` when
``train=True`` (see :func:`fnn.add_loss`); :func:`fnn.make_train_step` and
:func:`fnn.fit` add them to the loss they minimise.

Example:
    >>> import jax.numpy as jnp
    >>> from fnn import regularizers
    >>> regularizers.l2(0.5)(jnp.array([1.0, -2.0]))
    Array(2.5, dtype=float32)
    >>> regularizers.get("l1")(jnp.array([1.0, -2.0]))  # Keras's default rate, 0.01
    Array(0.03, dtype=float32)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import lookup, resolve

Regularizer = Callable[[jax.Array], jax.Array]


def _rate(owner: str, arg: str, value: Any) -> float:
    """A penalty rate: a non-negative, finite real number (Keras's check)."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: {arg} must be a non-negative finite number, got {value!r}")
    return float(value)


def l1(rate: float = 0.01) -> Regularizer:
    """The L1 penalty ``rate * sum(abs(x))`` (Keras's ``L1``).

    Args:
        rate: the factor, a non-negative finite number; Keras's 0.01 by default.

    Returns:
        A function mapping an array of any shape to a scalar of its dtype.

    Raises:
        ValueError: for a negative, infinite, NaN or non-numeric ``rate``.

    Examples:
        >>> l1(0.1)(jnp.array([[1.0, -3.0]]))
        Array(0.4, dtype=float32)
    """
    rate = _rate("fnn.regularizers.l1", "rate", rate)

    def l1_penalty(x: jax.Array) -> jax.Array:
        return rate * jnp.sum(jnp.abs(x))

    return l1_penalty


def l2(rate: float = 0.01) -> Regularizer:
    """The L2 penalty ``rate * sum(x ** 2)`` (Keras's ``L2``; no factor 1/2).

    Its gradient is ``2 * rate * x``: as weight decay with an SGD learning
    rate ``lr``, it is a decay of ``2 * lr * rate`` per step.

    Args:
        rate: the factor, a non-negative finite number; Keras's 0.01 by default.

    Returns:
        A function mapping an array of any shape to a scalar of its dtype.

    Raises:
        ValueError: for a negative, infinite, NaN or non-numeric ``rate``.

    Examples:
        >>> l2(0.1)(jnp.array([[1.0, -3.0]]))
        Array(1., dtype=float32)
    """
    rate = _rate("fnn.regularizers.l2", "rate", rate)

    def l2_penalty(x: jax.Array) -> jax.Array:
        return rate * jnp.sum(jnp.square(x))

    return l2_penalty


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> Regularizer:
    """``l1 * sum(abs(x)) + l2 * sum(x ** 2)`` (Keras's ``l1_l2``; a zero rate drops its term).

    Args:
        l1: the L1 factor, a non-negative finite number.
        l2: the L2 factor, a non-negative finite number.

    Returns:
        A function mapping an array of any shape to a scalar of its dtype.

    Raises:
        ValueError: for a negative, infinite, NaN or non-numeric rate.

    Examples:
        >>> l1_l2(l1=0.1, l2=0.1)(jnp.array([1.0, -3.0]))
        Array(1.4, dtype=float32)
    """
    owner = "fnn.regularizers.l1_l2"
    l1_rate, l2_rate = _rate(owner, "l1", l1), _rate(owner, "l2", l2)

    def l1_l2_penalty(x: jax.Array) -> jax.Array:
        total = jnp.zeros((), jnp.result_type(x))
        if l1_rate:  # Keras skips a zero rate's term; so does its gradient
            total = total + l1_rate * jnp.sum(jnp.abs(x))
        if l2_rate:
            total = total + l2_rate * jnp.sum(jnp.square(x))
        return total

    return l1_l2_penalty


# Names as Keras resolves them, each with Keras's default rates.
REGULARIZERS: dict[str, Callable[[], Regularizer]] = {"l1": l1, "l2": l2, "l1_l2": l1_l2}


def get(regularizer: str | Regularizer | None) -> Regularizer | None:
    """Resolves a regularizer given by name, as a function, or ``None`` (no penalty).

    Args:
        regularizer: ``"l1"``, ``"l2"`` or ``"l1_l2"`` (Keras's default rates,
            0.01), a function ``array -> scalar`` such as ``l2(1e-4)``, or ``None``.

    Returns:
        The penalty function, or ``None``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
        TypeError: for anything that is neither a name, a callable nor ``None``
            (a bare rate such as ``0.01`` included: write ``l2(0.01)``).

    Examples:
        >>> get("l2")(jnp.ones((2, 2)))
        Array(0.04, dtype=float32)
        >>> get(None) is None
        True
    """
    if regularizer is None:
        return None
    if isinstance(regularizer, str):
        return lookup("regularizer", REGULARIZERS, regularizer)()
    if isinstance(regularizer, (int, float)):
        raise TypeError(
            f"regularizer must be a name ('l1', 'l2', 'l1_l2'), a function or None, got the number "
            f"{regularizer!r}; give the rate to a regularizer, e.g. fnn.regularizers.l2({regularizer!r})"
        )
    return resolve("regularizer", {}, regularizer)
