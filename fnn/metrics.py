"""Metrics: pure, jittable ``metric(y_true, y_pred) -> scalar`` functions.

Argument order follows Keras (targets first). Classification metrics take
class scores (logits or probabilities, argmax is the same) or, for the binary
ones, a score and a ``threshold`` (``0.5`` for probabilities, ``0.0`` for logits).

Example:
    >>> import jax.numpy as jnp
    >>> from fnn import metrics
    >>> float(metrics.sparse_categorical_accuracy(jnp.array([0, 1]), jnp.array([[2.0, 1.0], [3.0, 0.0]])))
    0.5
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fnn._checks import check_class_labels, check_int, check_same_shape, resolve, shape
from fnn.losses import named_outputs

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
    check_same_shape("binary_accuracy", y_true, y_pred)
    return jnp.mean(_above(y_pred, threshold) == _above(y_true, 0.5))


def categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """Fraction of examples whose top score is the one-hot target's class.

    Examples:
        >>> float(categorical_accuracy(jnp.eye(2), jnp.array([[0.9, 0.1], [0.8, 0.2]])))
        0.5
    """
    check_same_shape("categorical_accuracy", y_true, y_pred)
    return jnp.mean(jnp.argmax(y_true, axis=-1) == jnp.argmax(y_pred, axis=-1))


def sparse_categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """Fraction of integer labels ``(batch, ...)`` equal to the argmax of ``(batch, ..., classes)``."""
    check_class_labels("sparse_categorical_accuracy", y_true, y_pred)
    return jnp.mean(jnp.asarray(y_true) == jnp.argmax(y_pred, axis=-1))


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
    if shape(y_true) == shape(y_pred) and len(shape(y_pred)) >= 2 and shape(y_pred)[-1] > 1:
        return categorical_accuracy(y_true, y_pred)
    if shape(y_true) == shape(y_pred)[:-1] and shape(y_pred)[-1:] != (1,):
        return sparse_categorical_accuracy(y_true, y_pred)
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
    check_class_labels("top_k_accuracy", y_true, y_pred)
    classes = shape(y_pred)[-1]
    k = check_int("top_k_accuracy", "k", k, high=classes, what=f"classes={classes}")
    _, top = jax.lax.top_k(jnp.asarray(y_pred), k)
    return jnp.mean(jnp.any(top == jnp.asarray(y_true)[..., None], axis=-1))


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
    num_classes = check_int("confusion_matrix", "num_classes", num_classes)
    t, p = _as_labels("confusion_matrix", y_true, y_pred)
    one_hot_t = jax.nn.one_hot(t, num_classes, dtype=jnp.int32)
    one_hot_p = jax.nn.one_hot(p, num_classes, dtype=jnp.int32)
    return one_hot_t.T @ one_hot_p


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    # An empty class scores 0 (scikit-learn's zero_division=0), never NaN.
    return jnp.where(den > 0, num / jnp.maximum(den, 1), 0.0)


def _counts(
    metric: str, y_true: ArrayLike, y_pred: ArrayLike, threshold: float, num_classes: int | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """True positives, predicted positives and actual positives, per class."""
    if num_classes is None:
        check_same_shape(metric, y_true, y_pred)
        t = jnp.ravel(_above(y_true, 0.5))
        p = jnp.ravel(_above(y_pred, threshold))
        return jnp.sum(t & p)[None], jnp.sum(p)[None], jnp.sum(t)[None]
    cm = confusion_matrix(y_true, y_pred, num_classes=num_classes)
    return jnp.diag(cm), jnp.sum(cm, axis=0), jnp.sum(cm, axis=1)


def precision(
    y_true: ArrayLike, y_pred: ArrayLike, *, threshold: float = 0.5, num_classes: int | None = None
) -> jax.Array:
    """Precision ``tp / (tp + fp)``: binary, or macro-averaged over ``num_classes``.

    Binary (``num_classes=None``): ``y_true`` in ``{0, 1}`` and scores of the
    same shape, positive above ``threshold``. Multi-class: integer labels and
    labels or scores as for :func:`confusion_matrix`. Classes with no predicted
    example score 0.

    Examples:
        >>> float(precision(jnp.array([1, 0, 1]), jnp.array([0.9, 0.8, 0.1])))
        0.5
    """
    tp, predicted, _ = _counts("precision", y_true, y_pred, threshold, num_classes)
    return jnp.mean(_safe_div(tp, predicted))


def recall(
    y_true: ArrayLike, y_pred: ArrayLike, *, threshold: float = 0.5, num_classes: int | None = None
) -> jax.Array:
    """Recall ``tp / (tp + fn)``: binary, or macro-averaged over ``num_classes``.

    Arguments as for :func:`precision`.

    Examples:
        >>> float(recall(jnp.array([1, 0, 1]), jnp.array([0.9, 0.8, 0.1])))
        0.5
    """
    tp, _, actual = _counts("recall", y_true, y_pred, threshold, num_classes)
    return jnp.mean(_safe_div(tp, actual))


def f1_score(
    y_true: ArrayLike, y_pred: ArrayLike, *, threshold: float = 0.5, num_classes: int | None = None
) -> jax.Array:
    """F1 ``2 tp / (2 tp + fp + fn)``: binary, or macro-averaged over ``num_classes``.

    Arguments as for :func:`precision`.

    Examples:
        >>> float(f1_score(jnp.array([1, 0, 1]), jnp.array([0.9, 0.8, 0.1])))
        0.5
    """
    tp, predicted, actual = _counts("f1_score", y_true, y_pred, threshold, num_classes)
    return jnp.mean(_safe_div(2 * tp, predicted + actual))


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
    t, p = _check_regression("mean_absolute_error", y_true, y_pred)
    return jnp.mean(jnp.abs(p - t))


def root_mean_squared_error(y_true: ArrayLike, y_pred: ArrayLike) -> jax.Array:
    """Square root of the mean of ``(y_pred - y_true)**2``.

    Examples:
        >>> float(root_mean_squared_error(jnp.zeros(2), jnp.array([3.0, -3.0])))
        3.0
    """
    t, p = _check_regression("root_mean_squared_error", y_true, y_pred)
    return jnp.sqrt(jnp.mean(jnp.square(p - t)))


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
    "mean_absolute_error": mean_absolute_error,
    "mae": mean_absolute_error,
    "root_mean_squared_error": root_mean_squared_error,
    "rmse": root_mean_squared_error,
    "r2_score": r2_score,
    "r2": r2_score,
}


_HIGHER_IS_BETTER = ("acc", "accuracy", "precision", "recall", "f1", "f1_score", "r2", "r2_score", "auc")


def better(name: str) -> str:
    """``"max"`` for log entries where higher is better (accuracy, F1, R², ...), else ``"min"``.

    Examples:
        >>> better("val_accuracy"), better("val_loss")
        ('max', 'min')
    """
    return "max" if name.removeprefix("val_").endswith(_HIGHER_IS_BETTER) else "min"


def get(metric: str | Metric) -> Metric:
    """Resolves a metric by name, or passes a function through.

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
