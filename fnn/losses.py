"""Losses: ``loss(y_true, y_pred, *, sample_weight=None) -> scalar``.

Argument order follows Keras (targets first). Each loss averages over the
per-example axes, then takes the (weighted) mean over the batch, Keras's
``sum_over_batch_size``: ``sum(w_i * loss_i) / batch``. Shapes must agree
exactly; nothing is broadcast silently (``(n, 1)`` against ``(n,)`` is an error).

Cross-entropies take **logits by default** (``from_logits=True``, unlike Keras):
models end in a linear layer and the fused log-softmax is the stable form.
Pass ``from_logits=False`` for probabilities.

Example:
    >>> import jax.numpy as jnp
    >>> from fnn import losses
    >>> float(losses.mean_squared_error(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0])))
    2.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from fnn._checks import check_class_labels, check_float, check_same_shape, resolve, shape

Loss = Callable[..., jax.Array]

# Keras clips probabilities by the same epsilon before taking logs.
_EPSILON = 1e-7


def _as_logits(y_pred: ArrayLike, from_logits: bool) -> jax.Array:
    # softmax(log p) = p / sum(p): probabilities are renormalised, as Keras does.
    y_pred = jnp.asarray(y_pred)
    return y_pred if from_logits else jnp.log(jnp.clip(y_pred, _EPSILON, 1.0))


def _weighted_mean(loss: str, per_element: jax.Array, sample_weight: ArrayLike | None) -> jax.Array:
    batch = per_element.shape[0]
    per_example = jnp.mean(per_element.reshape(batch, -1), axis=1)
    if sample_weight is None:
        return jnp.mean(per_example)
    if shape(sample_weight) != (batch,):
        raise ValueError(
            f"{loss}: sample_weight must have shape ({batch},) (one weight per example), "
            f"got {shape(sample_weight)}"
        )
    return jnp.mean(per_example * sample_weight)


def mean_squared_error(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> jax.Array:
    """Mean of ``(y_pred - y_true)**2``; shapes ``(batch, ...)``, identical.

    Examples:
        >>> float(mean_squared_error(jnp.zeros((2, 1)), jnp.ones((2, 1))))
        1.0
    """
    check_same_shape("mean_squared_error", y_true, y_pred)
    check_float("mean_squared_error", "y_pred", y_pred)
    return _weighted_mean("mean_squared_error", optax.squared_error(y_pred, y_true), sample_weight)


def mean_absolute_error(
    y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None
) -> jax.Array:
    """Mean of ``|y_pred - y_true|``; shapes ``(batch, ...)``, identical.

    Examples:
        >>> float(mean_absolute_error(jnp.zeros(2), jnp.array([1.0, -3.0])))
        2.0
    """
    check_same_shape("mean_absolute_error", y_true, y_pred)
    check_float("mean_absolute_error", "y_pred", y_pred)
    y_pred = jnp.asarray(y_pred)
    return _weighted_mean("mean_absolute_error", jnp.abs(y_pred - y_true), sample_weight)


def huber(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    delta: float = 1.0,
    sample_weight: ArrayLike | None = None,
) -> jax.Array:
    """Huber loss: quadratic for ``|error| <= delta``, linear beyond (Keras's scale).

    Examples:
        >>> float(huber(jnp.zeros(2), jnp.array([0.5, 3.0])))  # (0.125 + 2.5) / 2
        1.3125
    """
    check_same_shape("huber", y_true, y_pred)
    check_float("huber", "y_pred", y_pred)
    if delta <= 0:
        raise ValueError(f"huber: delta must be positive, got {delta!r}")
    return _weighted_mean("huber", optax.huber_loss(y_pred, y_true, delta=delta), sample_weight)


def binary_crossentropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    from_logits: bool = True,
    sample_weight: ArrayLike | None = None,
) -> jax.Array:
    """Binary cross-entropy of targets in ``[0, 1]`` against logits (or probabilities).

    Args:
        y_true: targets, ``(batch, ...)``, same shape as ``y_pred``.
        y_pred: logits (default) or probabilities with ``from_logits=False``.
        from_logits: whether ``y_pred`` holds logits.
        sample_weight: optional ``(batch,)`` weights.

    Examples:
        >>> round(float(binary_crossentropy(jnp.ones(1), jnp.zeros(1))), 4)  # log 2
        0.6931
    """
    check_same_shape("binary_crossentropy", y_true, y_pred)
    check_float("binary_crossentropy", "y_pred", y_pred)
    y_pred = jnp.asarray(y_pred)
    y_true = jnp.asarray(y_true, y_pred.dtype)
    if from_logits:
        per_element = optax.sigmoid_binary_cross_entropy(y_pred, y_true)
    else:
        p = jnp.clip(y_pred, _EPSILON, 1 - _EPSILON)
        per_element = -(y_true * jnp.log(p) + (1 - y_true) * jnp.log1p(-p))
    return _weighted_mean("binary_crossentropy", per_element, sample_weight)


def categorical_crossentropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    from_logits: bool = True,
    label_smoothing: float = 0.0,
    sample_weight: ArrayLike | None = None,
) -> jax.Array:
    """Cross-entropy of one-hot (or soft) targets ``(batch, ..., classes)``.

    Args:
        y_true: target distributions, same shape as ``y_pred``.
        y_pred: logits (default) or probabilities with ``from_logits=False``.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: in ``[0, 1)``; mixes targets with the uniform distribution.
        sample_weight: optional ``(batch,)`` weights.

    Examples:
        >>> round(float(categorical_crossentropy(jnp.array([[0.0, 1.0]]), jnp.zeros((1, 2)))), 4)
        0.6931
    """
    check_same_shape("categorical_crossentropy", y_true, y_pred)
    check_float("categorical_crossentropy", "y_pred", y_pred)
    _check_label_smoothing("categorical_crossentropy", label_smoothing)
    y_pred = jnp.asarray(y_pred)
    y_true = jnp.asarray(y_true, y_pred.dtype)
    if label_smoothing:
        y_true = optax.smooth_labels(y_true, label_smoothing)
    per_example = optax.softmax_cross_entropy(_as_logits(y_pred, from_logits), y_true)
    return _weighted_mean("categorical_crossentropy", per_example, sample_weight)


def sparse_categorical_crossentropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    from_logits: bool = True,
    label_smoothing: float = 0.0,
    sample_weight: ArrayLike | None = None,
) -> jax.Array:
    """Cross-entropy of integer class labels ``(batch, ...)`` against ``(batch, ..., classes)``.

    Labels must lie in ``[0, classes)``. Under ``jit`` that cannot raise, so an
    example whose label is outside (``-1``, or ``classes`` for 1-based labels)
    makes the loss NaN, never the loss of another class, unless its
    ``sample_weight`` is 0 (padding may carry any label, e.g. ``-1``);
    :func:`fnn.fit` and :func:`fnn.evaluate` check the labels on the host first
    and name the bad one.

    Args:
        y_true: integer class indices, ``y_pred.shape[:-1]``.
        y_pred: logits (default) or probabilities with ``from_logits=False``.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: in ``[0, 1)``; the one-hot target of each label is mixed
            with the uniform distribution, as in :func:`categorical_crossentropy`
            (and PyTorch's ``CrossEntropyLoss(label_smoothing=...)``).
        sample_weight: optional ``(batch,)`` weights.

    Examples:
        >>> round(float(sparse_categorical_crossentropy(jnp.array([1]), jnp.zeros((1, 2)))), 4)
        0.6931
    """
    loss = "sparse_categorical_crossentropy"
    check_float(loss, "y_pred", y_pred)
    check_class_labels(loss, y_true, y_pred)
    _check_label_smoothing(loss, label_smoothing)
    logits = _as_logits(y_pred, from_logits)
    y_true = jnp.asarray(y_true)
    if label_smoothing:
        targets = optax.smooth_labels(
            jax.nn.one_hot(y_true, logits.shape[-1], dtype=logits.dtype), label_smoothing
        )
        per_example = optax.softmax_cross_entropy(logits, targets)
    else:
        per_example = optax.softmax_cross_entropy_with_integer_labels(logits, y_true)
    # A label outside [0, classes) is NaN, never another class's loss (-1 would index the last),
    # unless its example weighs 0: padding marked by weight 0 may carry any label (e.g. -1).
    valid = (y_true >= 0) & (y_true < logits.shape[-1])
    if sample_weight is not None and shape(sample_weight) == shape(y_true)[:1]:
        ignored = jnp.asarray(sample_weight).reshape((-1,) + (1,) * (y_true.ndim - 1)) == 0
        valid = valid | jnp.broadcast_to(ignored, y_true.shape)
    per_example = jnp.where(valid, per_example, jnp.nan)
    return _weighted_mean(loss, per_example, sample_weight)


def _check_label_smoothing(loss: str, label_smoothing: float) -> None:
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"{loss}: label_smoothing must be in [0, 1), got {label_smoothing!r}")


LOSSES: dict[str, Loss] = {
    "mean_squared_error": mean_squared_error,
    "mse": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "mae": mean_absolute_error,
    "huber": huber,
    "binary_crossentropy": binary_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
}


def _unwrapped(loss: str | Loss) -> tuple[Any, dict[str, Any]]:
    """The function under a name or a :func:`get` partial, and its bound options."""
    if isinstance(loss, str):
        loss = LOSSES.get(loss, loss)
    if isinstance(loss, functools.partial):
        return loss.func, dict(loss.keywords)
    return loss, {}


def takes_logits(loss: str | Loss) -> bool:
    """Whether ``loss`` is one of fnn's cross-entropies reading logits (``from_logits=True``).

    Examples:
        >>> takes_logits("binary_crossentropy"), takes_logits(get("categorical_crossentropy", from_logits=False))
        (True, False)
    """
    fn, options = _unwrapped(loss)
    crossentropies = (binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy)
    return fn in crossentropies and options.get("from_logits", True)


def takes_class_labels(loss: str | Loss) -> bool:
    """Whether ``loss`` reads integer class labels in ``[0, classes)`` (sparse cross-entropy).

    Examples:
        >>> takes_class_labels("sparse_categorical_crossentropy"), takes_class_labels("mse")
        (True, False)
    """
    return _unwrapped(loss)[0] is sparse_categorical_crossentropy


def get(loss: str | Loss, **kwargs: Any) -> Loss:
    """Resolves a loss by name (or passes a function through), binding ``kwargs``.

    Args:
        loss: a name from :data:`LOSSES` or a function ``(y_true, y_pred, *, sample_weight)``.
        **kwargs: options of the loss (``from_logits=False``, ``delta=2.0``, ...).

    Raises:
        ValueError: for an unknown name, listing the known ones.

    Examples:
        >>> get("mse") is mean_squared_error
        True
    """
    loss = resolve("loss", LOSSES, loss)
    return functools.partial(loss, **kwargs) if kwargs else loss
