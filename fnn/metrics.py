"""Metrics: pure, jittable ``metric(y_true, y_pred) -> scalar`` functions.

Argument order follows Keras (targets first). Classification metrics take
class scores (logits or probabilities, argmax is the same) or, for the binary
ones, a score and a ``threshold`` (``0.5`` for probabilities, ``0.0`` for logits).

Every metric here also has additive statistics (:func:`statistics`): summed
over batches, they give the metric of all the data exactly, which is how
:func:`fnn.evaluate` scores sets bigger than memory.

Example:
    >>> import jax.numpy as jnp
    >>> from fnn import metrics
    >>> float(metrics.sparse_categorical_accuracy(jnp.array([0, 1]), jnp.array([[2.0, 1.0], [3.0, 0.0]])))
    0.5
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from fnn._checks import check_class_labels, check_float, check_int, check_same_shape, resolve, shape
from fnn.losses import named_outputs, sparse_categorical_crossentropy

Metric = Callable[[ArrayLike, ArrayLike], jax.Array]


def _above(a: ArrayLike, threshold: float) -> jax.Array:
    # Integer 0/1 labels compare as floats, without implicit promotion.
    a = jnp.asarray(a)
    return (a if jnp.issubdtype(a.dtype, jnp.floating) else a.astype(jnp.float32)) > threshold


def binary_accuracy(y_true: ArrayLike, y_pred: ArrayLike, *, threshold: float = 0.5) -> jax.Array:
    """Fraction of ``(y_pred > threshold) == (y_true > 0.5)``; identical shapes.

    Examples:
        >>> float(binary_accuracy(jnp.array([1, 0]), jnp.array([0.9, 0.7])))
        0.5
    """
    return jnp.mean(_binary_hits(y_true, y_pred, threshold))


def _binary_hits(y_true: ArrayLike, y_pred: ArrayLike, threshold: float) -> jax.Array:
    check_same_shape("binary_accuracy", y_true, y_pred)
    return _above(y_pred, threshold) == _above(y_true, 0.5)


def categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """Fraction of examples whose top score is the one-hot target's class.

    Examples:
        >>> float(categorical_accuracy(jnp.eye(2), jnp.array([[0.9, 0.1], [0.8, 0.2]])))
        0.5
    """
    return jnp.mean(_categorical_hits(y_true, y_pred))


def _categorical_hits(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    check_same_shape("categorical_accuracy", y_true, y_pred)
    return jnp.argmax(y_true, axis=-1) == jnp.argmax(y_pred, axis=-1)


def sparse_categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """Fraction of integer labels ``(batch, ...)`` equal to the argmax of ``(batch, ..., classes)``."""
    return jnp.mean(_sparse_hits(y_true, y_pred))


def _sparse_hits(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    check_class_labels("sparse_categorical_accuracy", y_true, y_pred)
    return jnp.asarray(y_true) == jnp.argmax(y_pred, axis=-1)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """Sparse or categorical accuracy, chosen by the shapes (Keras's ``"accuracy"``).

    Integer labels of shape ``y_pred.shape[:-1]`` use sparse accuracy; targets
    of ``y_pred``'s shape use categorical accuracy. Binary problems must say
    their threshold, so they use :func:`binary_accuracy` instead.

    Raises:
        ValueError: for binary-looking inputs (one score per example).

    Examples:
        >>> float(accuracy(jnp.array([1]), jnp.array([[0.2, 0.8]])))
        1.0
    """
    return jnp.mean(_accuracy_hits(y_true, y_pred))


def _accuracy_hits(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    if shape(y_true) == shape(y_pred) and len(shape(y_pred)) >= 2 and shape(y_pred)[-1] > 1:
        return _categorical_hits(y_true, y_pred)
    if shape(y_true) == shape(y_pred)[:-1] and shape(y_pred)[-1:] != (1,):
        return _sparse_hits(y_true, y_pred)
    raise ValueError(
        f"accuracy: cannot tell sparse from categorical for y_true {shape(y_true)} and y_pred "
        f"{shape(y_pred)}; for one score per example use binary_accuracy with a threshold "
        "(0.5 for probabilities, 0.0 for logits)"
    )


def top_k_accuracy(y_true: ArrayLike, y_pred: ArrayLike, *, k: int = 5) -> jax.Array:
    """Fraction of integer labels among the ``k`` highest scores of ``(batch, classes)``.

    Examples:
        >>> float(top_k_accuracy(jnp.array([2]), jnp.array([[0.5, 0.1, 0.4]]), k=2))
        1.0
    """
    return jnp.mean(_top_k_hits(y_true, y_pred, k))


def _top_k_hits(y_true: ArrayLike, y_pred: ArrayLike, k: int) -> jax.Array:
    check_class_labels("top_k_accuracy", y_true, y_pred)
    classes = shape(y_pred)[-1]
    k = check_int("top_k_accuracy", "k", k, high=classes, what=f"classes={classes}")
    _, top = jax.lax.top_k(jnp.asarray(y_pred), k)
    return jnp.any(top == jnp.asarray(y_true)[..., None], axis=-1)


def _as_labels(metric: str, y_true: ArrayLike, y_pred: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Integer labels from labels or from class scores (argmax)."""
    if not jnp.issubdtype(jnp.result_type(y_true), jnp.integer):
        raise TypeError(f"{metric}: y_true must hold integer class indices, got {jnp.result_type(y_true)}")
    if shape(y_pred) == shape(y_true) + shape(y_pred)[-1:] and len(shape(y_pred)) > len(shape(y_true)):
        y_pred = jnp.argmax(y_pred, axis=-1)
    elif shape(y_pred) != shape(y_true) or not jnp.issubdtype(jnp.result_type(y_pred), jnp.integer):
        raise ValueError(
            f"{metric}: y_pred must be integer labels of y_true's shape {shape(y_true)} or "
            f"scores of shape {(*shape(y_true), 'classes')}, got {shape(y_pred)} "
            f"{jnp.result_type(y_pred)}"
        )
    return jnp.ravel(y_true), jnp.ravel(y_pred)


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, *, num_classes: int) -> jax.Array:
    """Counts ``C[i, j]`` of examples of true class ``i`` predicted as ``j`` (scikit-learn's layout).

    Args:
        y_true: integer labels ``(batch, ...)``.
        y_pred: integer labels of the same shape, or scores ``(batch, ..., num_classes)``.
        num_classes: number of classes ``C``.

    Returns:
        An int32 array ``(C, C)``. Labels outside ``[0, C)`` are not counted.

    Examples:
        >>> confusion_matrix(jnp.array([0, 1, 1]), jnp.array([0, 0, 1]), num_classes=2)
        Array([[1, 0],
               [1, 1]], dtype=int32)
    """
    return _confusion("confusion_matrix", y_true, y_pred, num_classes)


def _confusion(
    metric: str,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    num_classes: int,
    sample_weight: ArrayLike | None = None,
) -> jax.Array:
    """:func:`confusion_matrix`, with errors naming ``metric``; each example counts with its weight."""
    num_classes = check_int(metric, "num_classes", num_classes)
    t, p = _as_labels(metric, y_true, y_pred)
    weight = _element_weights(metric, sample_weight, shape(y_true))
    dtype = jnp.int32 if weight is None else weight.dtype
    one_hot_t = jax.nn.one_hot(t, num_classes, dtype=dtype)
    one_hot_p = jax.nn.one_hot(p, num_classes, dtype=dtype)
    if weight is not None:
        one_hot_p = one_hot_p * jnp.ravel(weight)[:, None]
    return one_hot_t.T @ one_hot_p


def _at_least_float32(dtype: Any) -> Any:
    # Explicit, since strict dtype promotion refuses promote_types(bfloat16, float32).
    return dtype if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits >= 32 else jnp.float32


def _element_weights(metric: str, sample_weight: ArrayLike | None, like: tuple[int, ...]) -> jax.Array | None:
    """Per-example weights ``(batch,)`` spread over the other axes of ``like``, as counts.

    Bool and integer weights count in int32, so counts stay exact; floating ones
    in at least float32 (a bfloat16 count would stop growing at 256).
    """
    if sample_weight is None:
        return None
    if not like or shape(sample_weight) != like[:1]:
        raise ValueError(
            f"{metric}: sample_weight must have shape {like[:1]} (one weight per example), "
            f"got {shape(sample_weight)}"
        )
    weight = jnp.asarray(sample_weight)
    floating = jnp.issubdtype(weight.dtype, jnp.floating)
    weight = weight.astype(_at_least_float32(weight.dtype) if floating else jnp.int32)
    return jnp.broadcast_to(weight.reshape(weight.shape + (1,) * (len(like) - 1)), like)


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    # An empty class scores 0 (scikit-learn's zero_division=0), never NaN.
    return jnp.where(den > 0, num / jnp.maximum(den, 1), 0.0)


def _counts(
    metric: str,
    y_true: ArrayLike,
    y_pred: ArrayLike,
    threshold: float,
    num_classes: int | None,
    sample_weight: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """True positives, predicted positives and actual positives, per class (weighted counts)."""
    if num_classes is None:
        check_same_shape(metric, y_true, y_pred)
        t = jnp.ravel(_above(y_true, 0.5))
        p = jnp.ravel(_above(y_pred, threshold))
        weight = _element_weights(metric, sample_weight, shape(y_true))
        if weight is None:
            return jnp.sum(t & p)[None], jnp.sum(p)[None], jnp.sum(t)[None]
        weight = jnp.ravel(weight)
        return tuple(jnp.sum(jnp.where(hit, weight, 0))[None] for hit in (t & p, p, t))
    cm = _confusion(metric, y_true, y_pred, num_classes, sample_weight)
    return jnp.diag(cm), jnp.sum(cm, axis=0), jnp.sum(cm, axis=1)


_AVERAGES = ("macro", "micro", "weighted", None)


def _check_average(metric: str, average: str | None, num_classes: int | None) -> None:
    if average not in _AVERAGES:
        raise ValueError(f"{metric}: average must be 'macro', 'micro', 'weighted' or None, got {average!r}")
    if average is None and num_classes is None:
        # scikit-learn would return [negative class, positive class] here, fnn's binary mode
        # only the positive class: refuse rather than guess which one is meant.
        raise ValueError(
            f"{metric}: average=None returns one value per class, so it needs num_classes; for a "
            "binary problem pass integer labels (e.g. y_pred > threshold) with num_classes=2"
        )


def _average(num: jax.Array, den: jax.Array, support: jax.Array, average: str | None) -> jax.Array:
    """Per-class ratios ``num / den`` combined as scikit-learn's ``average`` (zero_division=0)."""
    if average == "micro":
        return _safe_div(jnp.sum(num), jnp.sum(den))
    per_class = _safe_div(num, den)
    if average is None:
        return per_class
    if average == "weighted":
        # Weighted by support (true examples per class); no support at all scores 0.
        weights = support.astype(per_class.dtype)
        return _safe_div(jnp.sum(per_class * weights), jnp.sum(weights))
    return jnp.mean(per_class)


def precision(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    threshold: float = 0.5,
    num_classes: int | None = None,
    average: str | None = "macro",
) -> jax.Array:
    """Precision ``tp / (tp + fp)``: binary, or averaged over ``num_classes``.

    Binary (``num_classes=None``): ``y_true`` in ``{0, 1}`` and scores of the
    same shape, positive above ``threshold``. Multi-class: integer labels and
    labels or scores as for :func:`confusion_matrix`. Classes with no predicted
    example score 0 (scikit-learn's ``zero_division=0``).

    Args:
        y_true: targets, as above.
        y_pred: scores or labels, as above.
        threshold: the binary decision threshold (unused with ``num_classes``).
        num_classes: ``None`` for binary, else the number of classes ``C``.
        average: as scikit-learn's ``precision_score(labels=range(C), average=...)``:
            ``"macro"`` (the unweighted mean over all ``C`` classes), ``"micro"``
            (from counts pooled over classes), ``"weighted"`` (mean weighted by
            each class's number of true examples) or ``None`` (the per-class
            vector ``(C,)``; needs ``num_classes``). Binary problems have one
            class, so every average gives the binary value.

    Raises:
        ValueError: for an unknown ``average``, or ``average=None`` without ``num_classes``.

    Examples:
        >>> float(precision(jnp.array([1, 0, 1]), jnp.array([0.9, 0.8, 0.1])))
        0.5
        >>> precision(jnp.array([0, 1, 1]), jnp.array([0, 0, 1]), num_classes=2, average=None)
        Array([0.5, 1. ], dtype=float32)
    """
    _check_average("precision", average, num_classes)
    tp, predicted, actual = _counts("precision", y_true, y_pred, threshold, num_classes)
    return _average(tp, predicted, actual, average)


def recall(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    threshold: float = 0.5,
    num_classes: int | None = None,
    average: str | None = "macro",
) -> jax.Array:
    """Recall ``tp / (tp + fn)``: binary, or averaged over ``num_classes``.

    Arguments as for :func:`precision`. Micro-averaged multi-class recall is
    the accuracy.

    Examples:
        >>> float(recall(jnp.array([1, 0, 1]), jnp.array([0.9, 0.8, 0.1])))
        0.5
    """
    _check_average("recall", average, num_classes)
    tp, _, actual = _counts("recall", y_true, y_pred, threshold, num_classes)
    return _average(tp, actual, actual, average)


def f1_score(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    threshold: float = 0.5,
    num_classes: int | None = None,
    average: str | None = "macro",
) -> jax.Array:
    """F1 ``2 tp / (2 tp + fp + fn)``: binary, or averaged over ``num_classes``.

    Arguments as for :func:`precision`; ``"micro"`` pools ``tp``, ``fp`` and
    ``fn`` over classes before the ratio, as scikit-learn does.

    Examples:
        >>> float(f1_score(jnp.array([1, 0, 1]), jnp.array([0.9, 0.8, 0.1])))
        0.5
    """
    _check_average("f1_score", average, num_classes)
    tp, predicted, actual = _counts("f1_score", y_true, y_pred, threshold, num_classes)
    return _average(2 * tp, predicted + actual, actual, average)


_CURVES = ("ROC", "PR")


def _auc_thresholds(num_thresholds: int) -> np.ndarray:
    # Keras's AUC grid: evenly spaced interior thresholds, ends just past 0 and 1 so that
    # scores of exactly 0 or 1 still fall between two thresholds.
    epsilon = 1e-7
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    return np.asarray([-epsilon, *inner, 1.0 + epsilon])


def auc_counts(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    num_thresholds: int = 200,
    *,
    from_logits: bool = False,
    sample_weight: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Confusion counts of a binary problem at Keras's ``AUC`` thresholds.

    The thresholds are ``num_thresholds`` points: ``-1e-7``, then
    ``i / (num_thresholds - 1)`` for ``i = 1 .. num_thresholds - 2``, then
    ``1 + 1e-7``; a score counts as positive at a threshold when it is strictly
    above it. The counts are sufficient statistics of :func:`auc`: summed over
    batches they give :func:`auc_from_counts` the AUC of the whole set.

    Args:
        y_true: labels in ``{0, 1}`` (positive above 0.5), any shape.
        y_pred: floating scores of the same shape: probabilities in ``[0, 1]``,
            or logits with ``from_logits=True`` (passed through a sigmoid).
        num_thresholds: number of thresholds ``T``, at least 2.
        from_logits: whether ``y_pred`` holds logits.
        sample_weight: optional per-example weights ``(batch,)``: each example
            counts with its weight (weight 0: not at all, e.g. padding).

    Returns:
        int32 arrays ``(tp, fp, tn, fn)``, each ``(T,)``, by increasing threshold
        (float for floating ``sample_weight``).

    Raises:
        ValueError: for mismatched shapes or ``num_thresholds`` < 2.
        TypeError: for non-floating ``y_pred``.

    Examples:
        >>> tp, fp, tn, fn = auc_counts(jnp.array([0, 1]), jnp.array([0.2, 0.7]), 3)
        >>> tp, fp
        (Array([1, 1, 0], dtype=int32), Array([1, 0, 0], dtype=int32))
    """
    check_same_shape("auc_counts", y_true, y_pred)
    check_float("auc_counts", "y_pred", y_pred)
    num_thresholds = check_int("auc_counts", "num_thresholds", num_thresholds, low=2)
    # Compare in at least float32: a bfloat16 grid would merge neighbouring thresholds.
    scores = jnp.ravel(y_pred).astype(_at_least_float32(jnp.result_type(y_pred)))
    positive = jnp.ravel(_above(y_true, 0.5))
    weight = _element_weights("auc_counts", sample_weight, shape(y_true))
    weight = None if weight is None else jnp.ravel(weight)
    return _threshold_counts(positive, scores, weight, num_thresholds, from_logits)


# Jitted so that an eager call compiles once, not once per primitive; inlined under an outer jit.
@functools.partial(jax.jit, static_argnums=(3, 4))
def _threshold_counts(
    positive: jax.Array, scores: jax.Array, weight: jax.Array | None, num_thresholds: int, from_logits: bool
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    # Each example adds its weight (1 without weights) to the counts.
    weight = jnp.ones(positive.shape, jnp.int32) if weight is None else weight
    positive = jnp.where(positive, weight, 0)
    if from_logits:
        scores = jax.nn.sigmoid(scores)
    thresholds = jnp.asarray(_auc_thresholds(num_thresholds), scores.dtype)
    # Number of thresholds strictly below each score: O(n log T) time and O(T) memory,
    # rather than an (n, T) comparison.
    bucket = jnp.searchsorted(thresholds, scores, side="left", method="scan_unrolled")  # compiles fastest
    pos_hist = jnp.zeros(num_thresholds + 1, weight.dtype).at[bucket].add(positive)
    all_hist = jnp.zeros(num_thresholds + 1, weight.dtype).at[bucket].add(weight)
    # Above threshold i means bucket > i: reverse cumulative sums, dropping bucket 0.
    tp = jnp.cumsum(pos_hist[::-1])[::-1][1:]
    predicted = jnp.cumsum(all_hist[::-1])[::-1][1:]
    fp = predicted - tp
    fn = jnp.sum(positive) - tp
    tn = (jnp.sum(weight) - jnp.sum(positive)) - fp
    return tp, fp, tn, fn


def _div_no_nan(num: jax.Array, den: jax.Array) -> jax.Array:
    # tf.math.divide_no_nan: 0 where the denominator is 0, for fractional counts too.
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0.0)


def auc_from_counts(counts: Sequence[ArrayLike], curve: str = "ROC") -> jax.Array:
    """Area under the ROC or precision-recall curve from :func:`auc_counts`.

    As Keras's ``AUC(summation_method="interpolation")``: ROC by the
    trapezoidal rule over the thresholds; PR by integrating precision with
    ``tp`` and ``fp`` linear between thresholds (Davis & Goadrich, 2006).
    Without positives (or, for ROC, without negatives) the missing rate is 0.

    Args:
        counts: ``(tp, fp, tn, fn)``, each ``(T,)`` by increasing threshold,
            e.g. summed over batches.
        curve: ``"ROC"`` or ``"PR"``.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: for an unknown ``curve`` or counts not of four equal ``(T,)`` shapes, ``T >= 2``.

    Examples:
        >>> counts = auc_counts(jnp.array([0, 1]), jnp.array([0.2, 0.7]))
        >>> float(auc_from_counts(counts, "ROC"))
        1.0
    """
    if curve not in _CURVES:
        raise ValueError(f"auc_from_counts: curve must be 'ROC' or 'PR', got {curve!r}")
    if len(counts) != 4:
        raise ValueError(f"auc_from_counts: counts must be (tp, fp, tn, fn), got {len(counts)} arrays")
    shapes = [shape(c) for c in counts]
    if len(set(shapes)) != 1 or len(shapes[0]) != 1 or shapes[0][0] < 2:
        raise ValueError(
            f"auc_from_counts: counts must be four arrays of one shape (num_thresholds,), "
            f"num_thresholds >= 2, got shapes {shapes}"
        )
    return _area(tuple(jnp.asarray(c) for c in counts), curve)


@functools.partial(jax.jit, static_argnums=1)
def _area(counts: tuple[jax.Array, ...], curve: str) -> jax.Array:
    # Integer counts become float32; float counts (e.g. float64) keep their precision.
    tp, fp, tn, fn = (c if jnp.issubdtype(c.dtype, jnp.floating) else c.astype(jnp.float32) for c in counts)
    if curve == "PR":
        # Between thresholds A (lower) and B, tp is linear in p = tp + fp; precision tp/p
        # integrates in closed form to slope * (dtp + intercept * log(p_A / p_B)).
        p = tp + fp
        dtp = tp[:-1] - tp[1:]
        dp = p[:-1] - p[1:]
        slope = _div_no_nan(dtp, jnp.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = jnp.where(both, _div_no_nan(p[:-1], jnp.maximum(p[1:], 0)), 1.0)
        increments = _div_no_nan(slope * (dtp + intercept * jnp.log(ratio)), tp[1:] + fn[1:])
        return jnp.sum(increments)
    recall_ = _div_no_nan(tp, tp + fn)
    fp_rate = _div_no_nan(fp, fp + tn)
    return jnp.sum((fp_rate[:-1] - fp_rate[1:]) * (recall_[:-1] + recall_[1:]) / 2)


def auc(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    curve: str = "ROC",
    num_thresholds: int = 200,
    from_logits: bool = False,
) -> jax.Array:
    """Area under the ROC or precision-recall curve of binary scores (Keras's ``AUC``).

    ``auc_from_counts(auc_counts(y_true, y_pred, num_thresholds), curve)``: the
    curve is sampled at ``num_thresholds`` evenly spaced thresholds, so scores
    closer than ``1 / (num_thresholds - 1)`` count as tied. To evaluate a set
    batch by batch, sum :func:`auc_counts` over the batches and call
    :func:`auc_from_counts` once; averaging per-batch AUCs would not be the AUC.

    Args:
        y_true: labels in ``{0, 1}``, any shape.
        y_pred: probabilities (or logits with ``from_logits=True``) of the same shape.
        curve: ``"ROC"`` (default) or ``"PR"``.
        num_thresholds: number of thresholds, at least 2.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: for mismatched shapes, an unknown ``curve`` or ``num_thresholds`` < 2.

    Examples:
        >>> y_true, y_pred = jnp.array([0, 0, 1, 1]), jnp.array([0.1, 0.4, 0.35, 0.8])
        >>> round(float(auc(y_true, y_pred)), 4)
        0.75
    """
    if curve not in _CURVES:
        raise ValueError(f"auc: curve must be 'ROC' or 'PR', got {curve!r}")
    return auc_from_counts(auc_counts(y_true, y_pred, num_thresholds, from_logits=from_logits), curve)


def iou(
    y_true: ArrayLike, y_pred: ArrayLike, *, num_classes: int, average: str | None = "macro"
) -> jax.Array:
    """Intersection over union ``tp / (tp + fp + fn)`` per class (Keras's ``MeanIoU``).

    Computed from :func:`confusion_matrix`. ``"macro"`` averages over the
    classes that occur in ``y_true`` or ``y_pred``: as in Keras, a class absent
    from both is left out of the mean (scikit-learn's ``jaccard_score`` counts
    it as 0). ``None`` gives the per-class vector, 0 for absent classes.
    Not in the by-name registry, since ``num_classes`` has no default: pass
    ``functools.partial(iou, num_classes=C)`` in a dict of metrics.

    Args:
        y_true: integer labels ``(batch, ...)``.
        y_pred: integer labels of the same shape, or scores ``(batch, ..., num_classes)``.
        num_classes: number of classes ``C``.
        average: ``"macro"`` or ``None``.

    Returns:
        A float32 scalar, or ``(C,)`` for ``average=None``.

    Raises:
        ValueError: for an unknown ``average`` or inputs as for :func:`confusion_matrix`.

    Examples:
        >>> float(iou(jnp.array([0, 1, 1]), jnp.array([0, 0, 1]), num_classes=3))
        0.5
        >>> iou(jnp.array([0, 1, 1]), jnp.array([0, 0, 1]), num_classes=3, average=None)
        Array([0.5, 0.5, 0. ], dtype=float32)
    """
    if average not in ("macro", None):
        raise ValueError(f"iou: average must be 'macro' or None, got {average!r}")
    return _iou(_counts("iou", y_true, y_pred, 0.5, num_classes), average)


@functools.partial(jax.jit, static_argnums=1)
def _iou(counts: tuple[jax.Array, jax.Array, jax.Array], average: str | None) -> jax.Array:
    intersection, predicted, actual = counts
    union = predicted + actual - intersection
    per_class = _safe_div(intersection, union)
    if average is None:
        return per_class
    return _safe_div(jnp.sum(per_class), jnp.sum(union > 0).astype(per_class.dtype))


def perplexity(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """``exp`` of the mean cross-entropy of integer labels against logits (a language model's).

    Labels outside ``[0, classes)`` make it NaN, as for
    :func:`fnn.losses.sparse_categorical_crossentropy`.

    Args:
        y_true: integer class indices ``(batch, ...)``.
        y_pred: logits ``(batch, ..., classes)``.

    Returns:
        A scalar of ``y_pred``'s dtype, at least 1.

    Raises:
        TypeError: for non-integer ``y_true`` or non-floating ``y_pred``.
        ValueError: when ``y_true``'s shape is not ``y_pred.shape[:-1]``.

    Examples:
        >>> float(perplexity(jnp.array([0, 3]), jnp.zeros((2, 4))))  # uniform over 4 classes
        4.0
    """
    check_float("perplexity", "y_pred", y_pred)
    check_class_labels("perplexity", y_true, y_pred)
    return _perplexity(y_true, y_pred)


@jax.jit
def _perplexity(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    return jnp.exp(sparse_categorical_crossentropy(y_true, y_pred, from_logits=True))


def _check_regression(metric: str, y_true: ArrayLike, y_pred: ArrayLike) -> tuple[jax.Array, jax.Array]:
    check_same_shape(metric, y_true, y_pred)
    y_pred = jnp.asarray(y_pred)
    return jnp.asarray(y_true, y_pred.dtype), y_pred


def mean_absolute_error(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """Mean of ``|y_pred - y_true|``.

    Examples:
        >>> float(mean_absolute_error(jnp.zeros(2), jnp.array([1.0, -3.0])))
        2.0
    """
    return jnp.mean(_absolute_errors(y_true, y_pred))


def _absolute_errors(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    t, p = _check_regression("mean_absolute_error", y_true, y_pred)
    return jnp.abs(p - t)


def root_mean_squared_error(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """Square root of the mean of ``(y_pred - y_true)**2``.

    Examples:
        >>> float(root_mean_squared_error(jnp.zeros(2), jnp.array([3.0, -3.0])))
        3.0
    """
    return jnp.sqrt(jnp.mean(_squared_errors(y_true, y_pred)))


def _squared_errors(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    t, p = _check_regression("root_mean_squared_error", y_true, y_pred)
    return jnp.square(p - t)


def r2_score(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """Coefficient of determination ``1 - SS_res / SS_tot`` over all elements.

    Constant targets give 0 when predicted imperfectly and 1 when perfectly
    (scikit-learn's convention), never NaN.

    Examples:
        >>> float(r2_score(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 2.0, 3.0])))
        1.0
    """
    t, p = _check_regression("r2_score", y_true, y_pred)
    ss_res = jnp.sum(jnp.square(t - p))
    ss_tot = jnp.sum(jnp.square(t - jnp.mean(t)))
    safe_tot = jnp.where(ss_tot > 0, ss_tot, 1.0)
    return jnp.where(ss_tot > 0, 1 - ss_res / safe_tot, jnp.where(ss_res > 0, 0.0, 1.0))


METRICS: dict[str, Metric] = {
    "accuracy": accuracy,
    "acc": accuracy,
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "top_k_accuracy": top_k_accuracy,
    "precision": precision,
    "recall": recall,
    "f1_score": f1_score,
    "f1": f1_score,
    "auc": auc,
    "perplexity": perplexity,
    "mean_absolute_error": mean_absolute_error,
    "mae": mean_absolute_error,
    "root_mean_squared_error": root_mean_squared_error,
    "rmse": root_mean_squared_error,
    "r2_score": r2_score,
    "r2": r2_score,
}


_HIGHER_IS_BETTER = (
    "acc",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "f1_score",
    "r2",
    "r2_score",
    "auc",
    "iou",
)


def better(name: str) -> str:
    """``"max"`` for log entries where higher is better (accuracy, F1, R², ...), else ``"min"``.

    Examples:
        >>> better("val_accuracy"), better("val_loss")
        ('max', 'min')
    """
    return "max" if name.removeprefix("val_").endswith(_HIGHER_IS_BETTER) else "min"


def get(metric: str | Metric) -> Metric:
    """Resolves a metric by name, or passes a function through.

    A name gives the metric with its default options (``"precision"`` is
    binary, ``"auc"`` is ROC with 200 thresholds). For other options, or for
    metrics with a required one (:func:`iou`, :func:`confusion_matrix`), pass a
    function, e.g. in a dict that names it:
    ``metrics={"pr_auc": functools.partial(auc, curve="PR"),
    "iou": functools.partial(iou, num_classes=3)}``.

    Raises:
        ValueError: for an unknown name, listing the known ones.

    Examples:
        >>> get("rmse") is root_mean_squared_error
        True
    """
    return resolve("metric", METRICS, metric)


def resolve_all(metrics: Sequence[str | Metric] | Mapping[str, str | Metric] | None) -> dict[str, Metric]:
    """Turns a list of names/functions (or a dict of them) into ``{display name: fn}``.

    Examples:
        >>> list(resolve_all(["accuracy", "mae"]))
        ['accuracy', 'mae']
    """
    if metrics is None:
        return {}
    if isinstance(metrics, Mapping):
        items: list[tuple[str, Any]] = list(metrics.items())
    elif isinstance(metrics, (str,)) or callable(metrics):
        raise TypeError(f"metrics must be a list or a dict of metrics, got {metrics!r}")
    else:
        items = [(m if isinstance(m, str) else getattr(m, "__name__", "metric"), m) for m in metrics]
    out: dict[str, Metric] = {}
    for label, m in items:
        if label in out or label == "loss":
            raise ValueError(f"metric name {label!r} is used twice (or is 'loss'); pass a dict to rename")
        out[label] = get(m)
    return out


def _labelled(metrics: Any) -> dict[str, Metric]:
    """One output's metrics: a name or function, a list of them, or a dict ``{display name: metric}``."""
    return resolve_all([metrics] if isinstance(metrics, str) or callable(metrics) else metrics)


def check_spec(metrics: Any) -> None:
    """Resolves every metric named in a metrics spec, so an unknown name fails before any tracing.

    Raises:
        ValueError: for an unknown metric name, listing the known ones.
    """
    if isinstance(metrics, Mapping) and any(isinstance(v, (Mapping, list, tuple)) for v in metrics.values()):
        for value in metrics.values():
            _labelled(value)
    else:
        resolve_all(metrics)


def per_output(metrics: Any, y_pred: Any) -> dict[str, tuple[str | None, Metric]]:
    """Resolves metrics against a model's outputs: ``{log name: (output name, metric)}``.

    For one array output (output name ``None``), ``metrics`` is as for
    :func:`resolve_all` and the log names are unchanged. For a tuple, list or
    dict of outputs (names from :func:`fnn.losses.named_outputs`), it is either:

    - a dict keyed by output name, each value a list of metrics (or one metric,
      or a dict ``{display name: metric}``); outputs left out get none, as in
      Keras's ``compile(metrics={"age": ["mae"], "kind": ["accuracy"]})``;
    - a list (or a dict ``{display name: metric}``) applied to every output.

    Either way each is logged as ``"<output>_<metric>"`` (``"kind_accuracy"``).

    Raises:
        ValueError: for a dict whose keys mix output names with other names (or
            that holds lists under names that are no outputs), listing the output
            names, or for two metrics that would share a log name.

    Examples:
        >>> outputs = {"age": jnp.zeros((4, 1)), "kind": jnp.zeros((4, 3))}
        >>> list(per_output({"age": ["mae"], "kind": ["accuracy"]}, outputs))
        ['age_mae', 'kind_accuracy']
        >>> list(per_output(["mae"], (jnp.zeros((4, 1)), jnp.zeros((4, 1)))))
        ['output_0_mae', 'output_1_mae']
    """
    outputs = named_outputs(y_pred, "the model's outputs")
    per_key = isinstance(metrics, Mapping) and any(
        isinstance(v, (Mapping, list, tuple)) for v in metrics.values()
    )
    if outputs is None:
        if per_key:
            raise ValueError(
                f"metrics: the model has one output, so it takes a list of metrics (or a dict "
                f"{{display name: metric}}), not lists keyed by output name; got {metrics!r}"
            )
        return {label: (None, fn) for label, fn in resolve_all(metrics).items()}
    if metrics is None:
        return {}
    names = list(outputs)
    if isinstance(metrics, Mapping) and all(k in outputs for k in metrics):
        chosen = {name: _labelled(metrics[name]) for name in names if name in metrics}
    elif isinstance(metrics, Mapping) and (per_key or any(k in outputs for k in metrics)):
        others = [k for k in metrics if k not in outputs]
        raise ValueError(
            f"metrics: keys {others} are not output names; the model's outputs are {names}. Key the "
            "dict by output name only (each value a list of metrics), or pass one list (or dict "
            "{display name: metric}) for every output"
        )
    else:
        every = resolve_all(metrics)
        chosen = {name: every for name in names}
    out: dict[str, tuple[str | None, Metric]] = {}
    taken = {"loss", *(f"{name}_loss" for name in names)}
    for name, fns in chosen.items():
        for label, fn in fns.items():
            log = f"{name}_{label}"
            if log in out or log in taken:
                raise ValueError(f"metrics: two log entries would be named {log!r}; pass a dict to rename")
            out[log] = (name, fn)
    return out


# --------------------------------------------------------------------------- sufficient statistics


class Statistics(NamedTuple):
    """A metric as additive statistics: exact over data seen one batch at a time.

    ``stats(y_true, y_pred, sample_weight=None)`` maps one batch to a pytree of
    arrays; the statistics of several batches (or devices, or processes)
    combine by summing leaf by leaf; ``result(summed)`` is the metric of all
    of them together. An example of weight 0 does not count at all, so padded
    rows can be masked out.

    Attributes:
        stats: ``(y_true, y_pred, sample_weight=None) -> pytree``, with
            ``sample_weight`` an optional ``(batch,)`` array.
        result: ``summed pytree -> value``, the metric's value (a scalar, or
            ``(C,)`` for per-class metrics).

    Examples:
        >>> stats, result = statistics("mae")  # a Statistics unpacks as a pair
        >>> isinstance(statistics("mae"), Statistics)
        True
    """

    stats: Callable[..., Any]
    result: Callable[[Any], jax.Array]


def with_statistics(make: Callable[..., Statistics]) -> Callable[[Metric], Metric]:
    """Decorator giving a metric exact :class:`Statistics` (sets ``metric.statistics = make``).

    Args:
        make: called by :func:`statistics` with the metric's keyword options
            (those after ``y_true, y_pred``: their defaults, updated by what a
            ``functools.partial`` binds), returns the metric's statistics.

    Returns:
        A decorator returning the metric itself.

    Examples:
        >>> def hit_stats(y_true, y_pred, sample_weight=None):
        ...     weight = jnp.ones(y_true.shape) if sample_weight is None else sample_weight
        ...     return jnp.sum(jnp.where(y_true == y_pred, weight, 0.0))
        >>> @with_statistics(lambda: Statistics(hit_stats, lambda total: total))
        ... def hits(y_true, y_pred):  # a count over the whole set, not a mean of batches
        ...     return jnp.sum(y_true == y_pred).astype(jnp.float32)
        >>> stats, result = statistics(hits)
        >>> float(result(stats(jnp.array([1, 2]), jnp.array([1, 0])) + stats(jnp.array([3]), jnp.array([3]))))
        2.0
    """

    def attach(metric: Metric) -> Metric:
        metric.statistics = make  # type: ignore[attr-defined]
        return metric

    return attach


def statistics(metric: str | Metric) -> Statistics:
    """The additive statistics of a metric (by name or function), with its bound options.

    fnn's metrics carry exact statistics: mean-type metrics (the accuracies,
    ``top_k_accuracy``, ``mae``) sum their per-element values and count them;
    ``rmse`` sums squared errors; ``r2_score`` the sums of targets, of their
    squares and of squared residuals (Keras's ``R2Score`` formula, so
    ``SS_tot = sum(t^2) - sum(t)^2 / n`` loses precision for targets far from
    0 relative to their spread); ``precision``, ``recall``, ``f1_score`` and
    ``iou`` count true, predicted and actual positives per class (any
    ``average``); ``auc`` sums :func:`auc_counts`; ``perplexity`` sums
    cross-entropies. A ``functools.partial`` of one keeps its options
    (``partial(auc, curve="PR")``, ``partial(iou, num_classes=3)``).

    Any other function (and a partial binding positional arguments) falls back
    to ``(value * batch, batch)``: the example-weighted mean of its batch
    values, exact only for a mean over the batch's examples. That fallback
    cannot weigh single examples, so it refuses ``sample_weight``; give such
    a metric exact statistics with :func:`with_statistics`.

    Args:
        metric: a name from :data:`METRICS` or a function ``(y_true, y_pred) -> value``.

    Returns:
        ``Statistics(stats, result)``.

    Raises:
        ValueError: for an unknown name, or bad options (as the metric raises them).
        TypeError: for an option the metric does not take, or a required one
            left out (``iou`` without ``num_classes``).

    Examples:
        >>> stats, result = statistics("precision")
        >>> y_true, y_pred = jnp.array([1, 0, 1, 1]), jnp.array([0.9, 0.8, 0.1, 0.7])
        >>> parts = [stats(y_true[:2], y_pred[:2]), stats(y_true[2:], y_pred[2:])]  # two batches
        >>> summed = jax.tree.map(lambda a, b: a + b, *parts)
        >>> float(result(summed)), float(precision(y_true, y_pred))
        (0.6666666, 0.6666666)
    """
    metric = get(metric)
    fn, args, options = metric, (), {}
    if isinstance(metric, functools.partial):
        fn, args, options = metric.func, metric.args, dict(metric.keywords)
    make = getattr(fn, "statistics", None)
    if make is None or args:
        return _fallback(metric)
    name = getattr(fn, "__name__", "metric")
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    known = [p for p in list(inspect.signature(fn).parameters.values())[2:] if p.kind in kinds]
    unknown = [k for k in options if k not in {p.name for p in known}]
    if unknown:
        raise TypeError(
            f"statistics: {name} takes no option {unknown[0]!r}; its options are {[p.name for p in known]}"
        )
    bound = {p.name: options.get(p.name, p.default) for p in known}
    missing = [k for k, v in bound.items() if v is inspect.Parameter.empty]
    if missing:
        raise TypeError(
            f"statistics: {name} needs {missing[0]}=...; pass functools.partial({name}, {missing[0]}=...)"
        )
    return make(**bound)


def _fallback(metric: Metric) -> Statistics:
    name = getattr(getattr(metric, "func", metric), "__name__", "metric")

    def stats(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> dict:
        if sample_weight is not None:
            raise ValueError(
                f"statistics: {name} has no statistics of its own, and its fallback (value * batch, "
                "batch) cannot weigh single examples: pass sample_weight=None, or give it exact "
                "statistics with fnn.metrics.with_statistics"
            )
        if not shape(y_pred):
            raise ValueError(f"statistics: {name} expects a batch axis, got scalar y_pred")
        batch = shape(y_pred)[0]
        return {"total": jnp.asarray(metric(y_true, y_pred)) * batch, "count": jnp.asarray(batch, jnp.int32)}

    return Statistics(stats, _mean_result)


def _ratio(total: ArrayLike, count: ArrayLike) -> jax.Array:
    # Counts and totals may be integers (exact counts) or floats (summed on the host).
    total = jnp.asarray(total)
    dtype = total.dtype if jnp.issubdtype(total.dtype, jnp.floating) else jnp.float32
    return total.astype(dtype) / jnp.asarray(count).astype(dtype)


def _mean_result(summed: Mapping[str, Any]) -> jax.Array:
    return _ratio(summed["total"], summed["count"])


def _as_float(a: ArrayLike) -> jax.Array:
    a = jnp.asarray(a)
    return a if jnp.issubdtype(a.dtype, jnp.floating) else a.astype(jnp.float32)


def _weighted_total(metric: str, values: jax.Array, sample_weight: ArrayLike | None) -> dict[str, jax.Array]:
    """``{"total": sum of values, "count": number of values}``, each value counted with its example's weight.

    Bool values with bool or integer weights sum in int32: exact counts.
    """
    weight = _element_weights(metric, sample_weight, shape(values))
    if weight is None:
        total = jnp.sum(
            values, dtype=jnp.int32 if values.dtype == jnp.bool_ else _at_least_float32(values.dtype)
        )
        return {"total": total, "count": jnp.asarray(values.size, jnp.int32)}
    if values.dtype == jnp.bool_ and not jnp.issubdtype(weight.dtype, jnp.floating):
        return {"total": jnp.sum(jnp.where(values, weight, 0)), "count": jnp.sum(weight)}
    dtype = _at_least_float32(values.dtype)
    if jnp.issubdtype(weight.dtype, jnp.floating) and jnp.finfo(weight.dtype).bits > jnp.finfo(dtype).bits:
        dtype = weight.dtype
    # where, not a product: a padded row's NaN or inf times weight 0 would still be NaN.
    total = jnp.sum(jnp.where(weight != 0, values.astype(dtype) * weight.astype(dtype), 0))
    return {"total": total, "count": jnp.sum(weight)}


def _mean_of(metric: str, values: Callable[..., jax.Array]) -> Callable[..., Statistics]:
    """Statistics of the mean of ``values(y_true, y_pred, **options)`` over all its elements."""

    def make(**options: Any) -> Statistics:
        def stats(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> dict:
            return _weighted_total(metric, values(y_true, y_pred, **options), sample_weight)

        return Statistics(stats, _mean_result)

    return make


def _counts_statistics(metric: str, ratio: Callable[..., jax.Array]) -> Callable[..., Statistics]:
    """Statistics of precision, recall or F1: ``(tp, predicted, actual)`` per class."""

    def make(*, threshold: float, num_classes: int | None, average: str | None) -> Statistics:
        _check_average(metric, average, num_classes)

        def stats(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> dict:
            tp, predicted, actual = _counts(metric, y_true, y_pred, threshold, num_classes, sample_weight)
            return {"tp": tp, "predicted": predicted, "actual": actual}

        def result(summed: Mapping[str, Any]) -> jax.Array:
            tp, predicted, actual = (jnp.asarray(summed[k]) for k in ("tp", "predicted", "actual"))
            return ratio(tp, predicted, actual, average)

        return Statistics(stats, result)

    return make


def _iou_statistics(*, num_classes: int, average: str | None) -> Statistics:
    if average not in ("macro", None):
        raise ValueError(f"iou: average must be 'macro' or None, got {average!r}")

    def stats(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> dict:
        tp, predicted, actual = _counts("iou", y_true, y_pred, 0.5, num_classes, sample_weight)
        return {"tp": tp, "predicted": predicted, "actual": actual}

    def result(summed: Mapping[str, Any]) -> jax.Array:
        return _iou(tuple(jnp.asarray(summed[k]) for k in ("tp", "predicted", "actual")), average)

    return Statistics(stats, result)


def _auc_statistics(*, curve: str, num_thresholds: int, from_logits: bool) -> Statistics:
    if curve not in _CURVES:
        raise ValueError(f"auc: curve must be 'ROC' or 'PR', got {curve!r}")

    def stats(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> tuple:
        return auc_counts(
            y_true, y_pred, num_thresholds, from_logits=from_logits, sample_weight=sample_weight
        )

    return Statistics(stats, lambda counts: auc_from_counts(counts, curve))


def _cross_entropies(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """Per-element cross-entropy of integer labels against logits; NaN for a label out of range."""
    check_float("perplexity", "y_pred", y_pred)
    check_class_labels("perplexity", y_true, y_pred)
    y_true = jnp.asarray(y_true)
    logits = jnp.asarray(y_pred)
    valid = (y_true >= 0) & (y_true < logits.shape[-1])
    return jnp.where(valid, optax.softmax_cross_entropy_with_integer_labels(logits, y_true), jnp.nan)


def _perplexity_statistics() -> Statistics:
    def result(summed: Mapping[str, Any]) -> jax.Array:
        return jnp.exp(_mean_result(summed))

    return Statistics(_mean_of("perplexity", _cross_entropies)().stats, result)


def _r2_statistics() -> Statistics:
    def stats(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> dict:
        t, p = _check_regression("r2_score", y_true, y_pred)
        sums = {
            key: _weighted_total("r2_score", values, sample_weight)
            for key, values in (("t", t), ("t2", jnp.square(t)), ("residual2", jnp.square(t - p)))
        }
        return {"count": sums["t"]["count"], **{f"sum_{k}": v["total"] for k, v in sums.items()}}

    def result(summed: Mapping[str, Any]) -> jax.Array:
        count, sum_t, sum_t2, ss_res = (
            _as_float(summed[k]) for k in ("count", "sum_t", "sum_t2", "sum_residual2")
        )
        # Rounding can leave a constant target's SS_tot a hair below 0: it is 0.
        ss_tot = jnp.maximum(sum_t2 - sum_t * (sum_t / count), 0.0)
        safe_tot = jnp.where(ss_tot > 0, ss_tot, 1.0)
        return jnp.where(ss_tot > 0, 1 - ss_res / safe_tot, jnp.where(ss_res > 0, 0.0, 1.0))

    return Statistics(stats, result)


def _rmse_statistics() -> Statistics:
    squares = _mean_of("root_mean_squared_error", _squared_errors)()
    return Statistics(squares.stats, lambda summed: jnp.sqrt(_mean_result(summed)))


def _confusion_statistics(*, num_classes: int) -> Statistics:
    def stats(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> jax.Array:
        return _confusion("confusion_matrix", y_true, y_pred, num_classes, sample_weight)

    return Statistics(stats, jnp.asarray)


for _metric, _make in (
    (binary_accuracy, _mean_of("binary_accuracy", _binary_hits)),
    (categorical_accuracy, _mean_of("categorical_accuracy", _categorical_hits)),
    (sparse_categorical_accuracy, _mean_of("sparse_categorical_accuracy", _sparse_hits)),
    (accuracy, _mean_of("accuracy", _accuracy_hits)),
    (top_k_accuracy, _mean_of("top_k_accuracy", _top_k_hits)),
    (mean_absolute_error, _mean_of("mean_absolute_error", _absolute_errors)),
    (root_mean_squared_error, _rmse_statistics),
    (r2_score, _r2_statistics),
    (precision, _counts_statistics("precision", lambda tp, pred, act, avg: _average(tp, pred, act, avg))),
    (recall, _counts_statistics("recall", lambda tp, pred, act, avg: _average(tp, act, act, avg))),
    (
        f1_score,
        _counts_statistics("f1_score", lambda tp, pred, act, avg: _average(2 * tp, pred + act, act, avg)),
    ),
    (iou, _iou_statistics),
    (auc, _auc_statistics),
    (perplexity, _perplexity_statistics),
    (confusion_matrix, _confusion_statistics),
):
    with_statistics(_make)(_metric)
