"""Argument checks shared across fnn: losses, metrics, registries and hyper-parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

T = TypeVar("T")


def shape(a: ArrayLike) -> tuple[int, ...]:
    return tuple(jnp.shape(a))


def lookup(kind: str, registry: Mapping[str, T], name: str) -> T:
    """``registry[name]``, or a ValueError that lists the known names."""
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}") from None


def check_same_shape(fn: str, y_true: ArrayLike, y_pred: ArrayLike) -> None:
    """Targets and predictions must have identical shapes with a batch axis."""
    if shape(y_true) != shape(y_pred):
        raise ValueError(
            f"{fn}: y_true shape {shape(y_true)} and y_pred shape {shape(y_pred)} differ; "
            "fnn never broadcasts them silently: reshape one (e.g. y_pred[:, 0] or "
            "y_true[:, None])"
        )
    if not shape(y_pred):
        raise ValueError(f"{fn}: expects a batch axis, got scalar y_pred")


def check_class_labels(fn: str, y_true: ArrayLike, y_pred: ArrayLike) -> None:
    """Integer labels ``(batch, ...)`` against scores ``(batch, ..., classes)``."""
    if not jnp.issubdtype(jnp.result_type(y_true), jnp.integer):
        raise TypeError(f"{fn}: y_true must hold integer class indices, got {jnp.result_type(y_true)}")
    if len(shape(y_pred)) < 2 or shape(y_true) != shape(y_pred)[:-1]:
        raise ValueError(
            f"{fn}: expects y_true of shape y_pred.shape[:-1] = {shape(y_pred)[:-1]} "
            f"(y_pred {shape(y_pred)} has a trailing class axis), got {shape(y_true)}"
        )


def check_float(fn: str, arg: str, a: ArrayLike) -> None:
    if not jnp.issubdtype(jnp.result_type(a), jnp.floating):
        raise TypeError(f"{fn}: {arg} must be floating point, got {jnp.result_type(a)}")


def resolve(kind: str, registry: Mapping[str, T], value: Any) -> T:
    """A registry entry by name, or a callable passed through; TypeError otherwise."""
    if isinstance(value, str):
        return lookup(kind, registry, value)
    if callable(value):
        return value
    raise TypeError(f"{kind} must be a name or a callable, got {value!r}")


def check_int(
    owner: str, name: str, value: Any, *, low: int | None = 1, high: int | None = None, what: str = ""
) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (either bound ``None``: open), or a clear error.

    Bools are refused (``True`` is no batch size) and NumPy integers accepted.
    ``what`` names the upper bound in the message, e.g. ``"epochs=10"``.

    Raises:
        ValueError: ``"{owner}: {name} must be a positive int, got {value!r}"`` and the like.

    Examples:
        >>> check_int("fit", "epochs", 3, low=0)
        3
        >>> check_int("fit", "batch_size", True)
        Traceback (most recent call last):
        ...
        ValueError: fit: batch_size must be a positive int, got True
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        ok = False
    else:
        ok = (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        if high is not None:
            expected = f"an int in [{low}, {what or high}]"
        elif low == 1:
            expected = "a positive int"
        else:
            expected = "an int" if low is None else f"an int >= {low}"
        raise ValueError(f"{owner}: {name} must be {expected}, got {value!r}")
    return int(value)


def check_fraction(owner: str, name: str, value: Any) -> float:
    """``value`` as a ``float`` in ``[0, 1)`` (a dropout rate, a momentum), or a clear error.

    Bools are refused and NumPy scalars accepted; NaN is out of range.

    Raises:
        ValueError: ``"{owner}: {name} must be in [0, 1), got {value!r}"``.

    Examples:
        >>> check_fraction("Dropout 'dropout'", "rate", 0.5)
        0.5
        >>> check_fraction("Dropout 'dropout'", "rate", 1.0)
        Traceback (most recent call last):
        ...
        ValueError: Dropout 'dropout': rate must be in [0, 1), got 1.0
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not 0 <= value < 1
    ):
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {value!r}")
    return float(value)


def check_positive_float(owner: str, name: str, value: Any) -> float:
    """``value`` as a finite ``float`` > 0 (a base wavelength, a cap), or a clear error.

    Bools are refused and NumPy scalars accepted; NaN and infinity are refused.

    Raises:
        ValueError: ``"{owner}: {name} must be a finite number > 0, got {value!r}"``.

    Examples:
        >>> check_positive_float("MultiHeadAttention 'mha'", "soft_cap", 50)
        50.0
        >>> check_positive_float("MultiHeadAttention 'mha'", "soft_cap", 0.0)
        Traceback (most recent call last):
        ...
        ValueError: MultiHeadAttention 'mha': soft_cap must be a finite number > 0, got 0.0
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not 0 < value < float("inf")
    ):
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return float(value)
