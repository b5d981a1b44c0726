"""Losses: ``loss(y_true, y_pred, *, sample_weight=None, reduction="mean") -> scalar``.

Argument order follows Keras (targets first). Each loss averages over the
per-example axes into one loss per example ``loss_i``, then reduces over the
batch as ``reduction`` says (Keras 3's names):

- ``"mean"`` (the default; Keras's ``"sum_over_batch_size"`` is accepted as
  the same): ``sum(w_i * loss_i) / batch``;
- ``"sum"``: ``sum(w_i * loss_i)``;
- ``"mean_with_sample_weight"``: ``sum(w_i * loss_i) / sum(w_i)`` (0 when
  the weights sum to 0; ``"mean"`` without weights);
- ``"none"``: the weighted per-example losses ``w_i * loss_i``, shape ``(batch,)``.

For ``(batch, features)`` targets (and ``(batch,)`` class labels) these are
Keras's values exactly. With more axes, fnn averages them into the
per-example loss, where Keras keeps them (``"none"`` gives ``(batch, steps)``
there and ``"sum"`` sums over the steps too); ``"mean"`` agrees at any rank.
:func:`fnn.fit`, :func:`fnn.evaluate` and the train steps need one number per
batch and refuse ``"none"``. Shapes must agree exactly; nothing is broadcast
silently (``(n, 1)`` against ``(n,)`` is an error).

Cross-entropies take **logits by default** (``from_logits=True``, unlike Keras):
models end in a linear layer and the fused log-softmax is the stable form.
Pass ``from_logits=False`` for probabilities.

Example:
    >>> import jax.numpy as jnp
    >>> from fnn import losses
    >>> float(losses.mean_squared_error(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0])))
    2.0
    >>> losses.mean_squared_error(jnp.array([1.0, 2.0]), jnp.array([1.0, 4.0]), reduction="none").tolist()
    [0.0, 4.0]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from fnn._checks import check_class_labels, check_float, check_same_shape, resolve, shape
from fnn._core import Shape

Loss = Callable[..., jax.Array]

# Keras clips probabilities by the same epsilon before taking logs.
_EPSILON = 1e-7


def _as_logits(y_pred: ArrayLike, from_logits: bool) -> jax.Array:
    # softmax(log p) = p / sum(p): probabilities are renormalised, as Keras does.
    y_pred = jnp.asarray(y_pred)
    return y_pred if from_logits else jnp.log(jnp.clip(y_pred, _EPSILON, 1.0))


Reduction = Literal["mean", "sum", "none", "sum_over_batch_size", "mean_with_sample_weight"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none", "sum_over_batch_size", "mean_with_sample_weight")


def _check_reduction(loss: str, reduction: Any) -> None:
    if isinstance(reduction, str) and reduction in REDUCTIONS:
        return
    hint = " (Keras's reduction=None is reduction='none' here)" if reduction is None else ""
    raise ValueError(
        f"{loss}: reduction must be 'mean' (the default; Keras's 'sum_over_batch_size' is the same), "
        f"'sum', 'mean_with_sample_weight' or 'none', got {reduction!r}{hint}"
    )


def _weighted_mean(
    loss: str, per_element: jax.Array, sample_weight: ArrayLike | None, reduction: str = "mean"
) -> jax.Array:
    batch = per_element.shape[0]
    per_example = jnp.mean(per_element.reshape(batch, -1), axis=1)
    if sample_weight is not None and shape(sample_weight) != (batch,):
        raise ValueError(
            f"{loss}: sample_weight must have shape ({batch},) (one weight per example), "
            f"got {shape(sample_weight)}"
        )
    weighted = per_example if sample_weight is None else per_example * sample_weight
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return jnp.sum(weighted)
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        # Keras's divide_no_nan; the safe divisor keeps the gradient finite when the weights sum to 0.
        total = jnp.sum(jnp.asarray(sample_weight, weighted.dtype))
        return jnp.where(total == 0, 0, jnp.sum(weighted) / jnp.where(total == 0, 1, total))
    return jnp.mean(weighted)  # "mean", "sum_over_batch_size": the default, unchanged


def mean_squared_error(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    sample_weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Mean of ``(y_pred - y_true)**2``; shapes ``(batch, ...)``, identical.

    Returns a scalar, or ``(batch,)`` with ``reduction="none"``; ``sample_weight``
    (``(batch,)``) and ``reduction`` are as for every loss (see :mod:`fnn.losses`).

    Examples:
        >>> float(mean_squared_error(jnp.zeros((2, 1)), jnp.ones((2, 1))))
        1.0
    """
    _check_reduction("mean_squared_error", reduction)
    check_same_shape("mean_squared_error", y_true, y_pred)
    check_float("mean_squared_error", "y_pred", y_pred)
    return _weighted_mean("mean_squared_error", optax.squared_error(y_pred, y_true), sample_weight, reduction)


def mean_absolute_error(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    sample_weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Mean of ``|y_pred - y_true|``; shapes ``(batch, ...)``, identical.

    ``sample_weight`` and ``reduction`` as for :func:`mean_squared_error`.

    Examples:
        >>> float(mean_absolute_error(jnp.zeros(2), jnp.array([1.0, -3.0])))
        2.0
    """
    _check_reduction("mean_absolute_error", reduction)
    check_same_shape("mean_absolute_error", y_true, y_pred)
    check_float("mean_absolute_error", "y_pred", y_pred)
    y_pred = jnp.asarray(y_pred)
    return _weighted_mean("mean_absolute_error", jnp.abs(y_pred - y_true), sample_weight, reduction)


def huber(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    delta: float = 1.0,
    sample_weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Huber loss: quadratic for ``|error| <= delta``, linear beyond (Keras's scale).

    ``sample_weight`` and ``reduction`` as for :func:`mean_squared_error`.

    Examples:
        >>> float(huber(jnp.zeros(2), jnp.array([0.5, 3.0])))  # (0.125 + 2.5) / 2
        1.3125
    """
    _check_reduction("huber", reduction)
    check_same_shape("huber", y_true, y_pred)
    check_float("huber", "y_pred", y_pred)
    if delta <= 0:
        raise ValueError(f"huber: delta must be positive, got {delta!r}")
    return _weighted_mean("huber", optax.huber_loss(y_pred, y_true, delta=delta), sample_weight, reduction)


def binary_crossentropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    from_logits: bool = True,
    sample_weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Binary cross-entropy of targets in ``[0, 1]`` against logits (or probabilities).

    Args:
        y_true: targets, ``(batch, ...)``, same shape as ``y_pred``.
        y_pred: logits (default) or probabilities with ``from_logits=False``.
        from_logits: whether ``y_pred`` holds logits.
        sample_weight: optional ``(batch,)`` weights.
        reduction: ``"mean"``, ``"sum"``, ``"mean_with_sample_weight"`` or
            ``"none"`` (per-example losses ``(batch,)``); see :mod:`fnn.losses`.

    Examples:
        >>> round(float(binary_crossentropy(jnp.ones(1), jnp.zeros(1))), 4)  # log 2
        0.6931
    """
    _check_reduction("binary_crossentropy", reduction)
    check_same_shape("binary_crossentropy", y_true, y_pred)
    check_float("binary_crossentropy", "y_pred", y_pred)
    y_pred = jnp.asarray(y_pred)
    y_true = jnp.asarray(y_true, y_pred.dtype)
    if from_logits:
        per_element = optax.sigmoid_binary_cross_entropy(y_pred, y_true)
    else:
        p = jnp.clip(y_pred, _EPSILON, 1 - _EPSILON)
        per_element = -(y_true * jnp.log(p) + (1 - y_true) * jnp.log1p(-p))
    return _weighted_mean("binary_crossentropy", per_element, sample_weight, reduction)


def categorical_crossentropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    from_logits: bool = True,
    label_smoothing: float = 0.0,
    sample_weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Cross-entropy of one-hot (or soft) targets ``(batch, ..., classes)``.

    Args:
        y_true: target distributions, same shape as ``y_pred``.
        y_pred: logits (default) or probabilities with ``from_logits=False``.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: in ``[0, 1)``; mixes targets with the uniform distribution.
        sample_weight: optional ``(batch,)`` weights.
        reduction: ``"mean"``, ``"sum"``, ``"mean_with_sample_weight"`` or
            ``"none"`` (per-example losses ``(batch,)``); see :mod:`fnn.losses`.

    Examples:
        >>> round(float(categorical_crossentropy(jnp.array([[0.0, 1.0]]), jnp.zeros((1, 2)))), 4)
        0.6931
    """
    _check_reduction("categorical_crossentropy", reduction)
    check_same_shape("categorical_crossentropy", y_true, y_pred)
    check_float("categorical_crossentropy", "y_pred", y_pred)
    _check_label_smoothing("categorical_crossentropy", label_smoothing)
    y_pred = jnp.asarray(y_pred)
    y_true = jnp.asarray(y_true, y_pred.dtype)
    if label_smoothing:
        y_true = optax.smooth_labels(y_true, label_smoothing)
    per_example = optax.softmax_cross_entropy(_as_logits(y_pred, from_logits), y_true)
    return _weighted_mean("categorical_crossentropy", per_example, sample_weight, reduction)


def sparse_categorical_crossentropy(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    from_logits: bool = True,
    label_smoothing: float = 0.0,
    sample_weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
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
        reduction: ``"mean"``, ``"sum"``, ``"mean_with_sample_weight"`` or
            ``"none"`` (per-example losses ``(batch,)``); see :mod:`fnn.losses`.

    Examples:
        >>> round(float(sparse_categorical_crossentropy(jnp.array([1]), jnp.zeros((1, 2)))), 4)
        0.6931
    """
    loss = "sparse_categorical_crossentropy"
    _check_reduction(loss, reduction)
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
    return _weighted_mean(loss, per_example, sample_weight, reduction)


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
        **kwargs: options of the loss (``from_logits=False``, ``delta=2.0``,
            ``reduction="sum"``, ...), as Keras's loss classes take them.

    Raises:
        ValueError: for an unknown name, listing the known ones, or a bad ``reduction``.

    Examples:
        >>> get("mse") is mean_squared_error
        True
        >>> get("mae", reduction="none")(jnp.zeros((2, 1)), jnp.array([[1.0], [-3.0]])).tolist()
        [1.0, 3.0]
    """
    loss = resolve("loss", LOSSES, loss)
    if "reduction" in kwargs and loss in LOSSES.values():  # fail here, not at the first call
        _check_reduction(loss.__name__, kwargs["reduction"])
    return functools.partial(loss, **kwargs) if kwargs else loss


def _loss_name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def _one_number(loss: Loss) -> Loss:
    """``loss`` if it gives one number per batch; a ``reduction="none"`` loss is an error."""
    fn, options = _unwrapped(loss)
    if options.get("reduction") == "none":
        raise ValueError(
            f"loss {_loss_name(fn)}: reduction='none' gives one loss per example (batch,), but fit, "
            "evaluate and the train steps need one number per batch: use reduction='mean' (the "
            "default) or 'sum' there, and reduction='none' in your own code"
        )
    return loss


# --------------------------------------------------------------------------- several outputs

LossSpec = str | Loss | Sequence[str | Loss] | Mapping[str, str | Loss]
WeightsSpec = float | Sequence[float] | Mapping[str, float] | None


def _is_structure(tree: Any) -> bool:
    # A Shape is a tuple too, but stands for one output's per-example shape.
    return isinstance(tree, Mapping) or (isinstance(tree, (tuple, list)) and not isinstance(tree, Shape))


def describe(tree: Any) -> str:
    """A model output's (or target's) structure in words, for error messages.

    Examples:
        >>> describe({"b": jnp.zeros((4, 1)), "a": jnp.zeros(4)}), describe((jnp.zeros(4),))
        ("a dict with keys ['a', 'b']", 'a tuple of 1 array')
    """
    if isinstance(tree, Mapping):
        return f"a dict with keys {sorted(map(str, tree))}"
    if _is_structure(tree):
        return f"a {type(tree).__name__} of {len(tree)} array{'s' if len(tree) != 1 else ''}"
    if isinstance(tree, Shape):
        return f"one array of per-example shape {tuple(tree)}"
    return f"one array of shape {shape(tree)}" if hasattr(tree, "shape") else f"a {type(tree).__name__}"


def named_outputs(tree: Any, what: str = "y_pred") -> dict[str, Any] | None:
    """A model's outputs (or its targets) by output name; ``None`` for one array.

    Output names are the keys of a dict (in sorted order, JAX's order for
    dicts) and ``"output_0"``, ``"output_1"``, ... for a tuple or list.

    Args:
        tree: an array, or a tuple, list or dict of arrays (one level deep).
        what: what ``tree`` is, for error messages.

    Raises:
        ValueError: for an empty or nested structure, or a dict with non-string keys.

    Examples:
        >>> list(named_outputs((jnp.zeros(2), jnp.ones(2))))
        ['output_0', 'output_1']
        >>> named_outputs(jnp.zeros(2)) is None
        True
    """
    if not _is_structure(tree):
        return None
    if isinstance(tree, Mapping):
        if not all(isinstance(k, str) for k in tree):
            raise ValueError(f"{what}: a dict of outputs needs string keys (output names), got {list(tree)}")
        named = {k: tree[k] for k in sorted(tree)}
    else:
        named = {f"output_{i}": v for i, v in enumerate(tree)}
    if not named:
        raise ValueError(f"{what} is an empty {type(tree).__name__}; a model needs at least one output")
    for name, leaf in named.items():
        if _is_structure(leaf):
            raise ValueError(
                f"{what}: output {name!r} is {describe(leaf)}; outputs must be one array, or a tuple, "
                "list or dict of arrays (one level deep)"
            )
    return named


def match_outputs(y_true: Any, y_pred: Any, what: str = "y") -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Targets and outputs paired by output name (``None`` for one array each).

    ``what`` names ``y_true`` in the error message.

    Raises:
        ValueError: when ``y_true`` does not have the structure of ``y_pred``, naming both.

    Examples:
        >>> t, p = match_outputs([jnp.zeros(2), jnp.ones(2)], (jnp.zeros(2), jnp.ones(2)))
        >>> list(t) == list(p) == ['output_0', 'output_1']
        True
    """
    outputs, targets = named_outputs(y_pred, "the model's outputs"), named_outputs(y_true, what)
    same_kind = isinstance(y_true, Mapping) == isinstance(y_pred, Mapping)
    if outputs is None and targets is None:
        return None
    if outputs is None or targets is None or not same_kind or list(targets) != list(outputs):
        raise ValueError(
            f"{what} is {describe(y_true)} but the model's outputs are {describe(y_pred)}; it must have the "
            "outputs' structure (a dict keyed like the outputs for dict outputs, a tuple or list of "
            "as many arrays for tuple outputs)"
        )
    return targets, outputs


class OutputLoss(NamedTuple):
    """One output's loss: the output's name (``None`` for one array output), loss and weight."""

    name: str | None
    loss: Loss
    weight: float


def _weight(value: Any, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(f"{where} must be a finite number >= 0, got {value!r}")
    return float(value)


def _by_output(arg: str, spec: Any, outputs: dict[str, Any], y_pred: Any) -> list[Any]:
    """A list (one per output, in order) or a dict (keyed by output name) as one value per output."""
    names = list(outputs)
    if isinstance(spec, Mapping):
        unknown = [k for k in spec if k not in outputs]
        missing = [n for n in names if n not in spec]
        if unknown or missing:
            problems = [f"unknown keys {unknown}"] if unknown else []
            problems += [f"no entry for {missing}"] if missing else []
            problem = " and ".join(problems)
            raise ValueError(f"{arg}: {problem}; the model's outputs are {names}, and every output needs one")
        return [spec[n] for n in names]
    if isinstance(y_pred, Mapping):
        raise ValueError(
            f"{arg}: the model's outputs are {describe(y_pred)}: pass a dict keyed by output name, "
            f"got a {type(spec).__name__}"
        )
    if len(spec) != len(names):
        raise ValueError(f"{arg}: got {len(spec)} entries for the model's {len(names)} outputs {names}")
    return list(spec)


def per_output(loss: LossSpec, y_pred: Any, loss_weights: WeightsSpec = None) -> tuple[OutputLoss, ...]:
    """Resolves ``loss`` and ``loss_weights`` against a model's outputs, as Keras's ``compile`` does.

    Args:
        loss: one loss (a name or function) for every output; a list or tuple,
            one per output in order (tuple or list outputs); or a dict keyed by
            output name (see :func:`named_outputs`), one for every output.
        y_pred: the model's outputs (arrays or ``jax.ShapeDtypeStruct`` s): one
            array, or a tuple, list or dict of arrays.
        loss_weights: ``None`` (all 1.0), or one finite weight ``>= 0`` per
            output as a list or dict like ``loss`` (a number for one array output).

    Returns:
        One :class:`OutputLoss` per output, in output order.

    Raises:
        ValueError: for a missing or unknown output name, a wrong count, or a bad weight,
            listing the output names.

    Examples:
        >>> outputs = {"age": jnp.zeros((4, 1)), "kind": jnp.zeros((4, 3))}
        >>> [(o.name, o.weight) for o in per_output({"age": "mse", "kind": "categorical_crossentropy"},
        ...                                          outputs, {"age": 0.5, "kind": 1.0})]
        [('age', 0.5), ('kind', 1.0)]
    """
    outputs = named_outputs(y_pred, "the model's outputs")
    structured_loss = isinstance(loss, (Mapping, tuple, list))
    if outputs is None:
        if isinstance(loss, Mapping) or (structured_loss and len(loss) != 1):
            raise ValueError(
                f"loss: the model has one output ({describe(y_pred)}), so it takes one loss, got {loss!r}"
            )
        if isinstance(loss_weights, Mapping) or (
            isinstance(loss_weights, (tuple, list)) and len(loss_weights) != 1
        ):
            raise ValueError(
                f"loss_weights: the model has one output ({describe(y_pred)}), so it takes one "
                f"weight, got {loss_weights!r}"
            )
        fn = _one_number(get(loss[0] if structured_loss else loss))
        weight = loss_weights[0] if isinstance(loss_weights, (tuple, list)) else loss_weights
        return (OutputLoss(None, fn, 1.0 if weight is None else _weight(weight, "loss_weights")),)
    fns = _by_output("loss", loss, outputs, y_pred) if structured_loss else [loss] * len(outputs)
    if loss_weights is None:
        weights = [1.0] * len(outputs)
    elif isinstance(loss_weights, (Mapping, tuple, list)):
        weights = _by_output("loss_weights", loss_weights, outputs, y_pred)
    else:
        raise ValueError(
            f"loss_weights: give one weight per output of {list(outputs)} as a list or dict, "
            f"got {loss_weights!r}"
        )
    return tuple(
        OutputLoss(name, _one_number(get(fn)), _weight(w, f"loss_weights[{name!r}]"))
        for name, fn, w in zip(outputs, fns, weights)
    )


def losses_of(loss: LossSpec) -> list[Loss]:
    """Every loss function named in a loss spec, resolved (no output structure needed).

    Raises:
        ValueError: for an unknown name, or a loss with ``reduction="none"``
            (a model's loss is one number per batch).

    Examples:
        >>> losses_of({"a": "mse", "b": "mae"}) == [mean_squared_error, mean_absolute_error]
        True
    """
    if isinstance(loss, Mapping):
        return [_one_number(get(v)) for v in loss.values()]
    if isinstance(loss, (tuple, list)):
        return [_one_number(get(v)) for v in loss]
    return [_one_number(get(loss))]


def named_error(error: Exception, name: str | None) -> Exception:
    """``error`` with the output's name in front, for a ValueError or TypeError from one output."""
    if name is None or type(error) not in (ValueError, TypeError):
        return error
    return type(error)(f"output {name!r}: {error}")


def total_loss(
    loss: LossSpec,
    y_true: Any,
    y_pred: Any,
    *,
    loss_weights: WeightsSpec = None,
    sample_weight: ArrayLike | None = None,
) -> dict[str, jax.Array]:
    """The weighted sum of a model's losses, and each output's loss.

    ``total = sum(weight_i * loss_i(y_true_i, y_pred_i))``, as Keras computes
    a model's loss from ``compile(loss=..., loss_weights=...)``.

    Args:
        loss: as for :func:`per_output`.
        y_true: targets with the structure of ``y_pred`` (a dict keyed like a
            dict of outputs, a tuple or list for tuple or list outputs).
        y_pred: the model's outputs: one array ``(batch, ...)``, or a tuple,
            list or dict of them.
        loss_weights: as for :func:`per_output`.
        sample_weight: optional per-example weights ``(batch,)``, applied to every output.

    Returns:
        ``{"loss": total}``, and for structured outputs also ``"<name>_loss"``: each
        output's unweighted loss (as Keras logs them).

    Raises:
        ValueError: when ``y_true`` and ``y_pred`` differ in structure (naming both),
            or for a loss spec that does not fit the outputs.

    Examples:
        >>> y_pred = {"age": jnp.array([[1.0], [3.0]]), "kind": jnp.zeros((2, 2))}
        >>> y_true = {"age": jnp.array([[1.0], [1.0]]), "kind": jnp.array([0, 1])}
        >>> logs = total_loss({"age": "mse", "kind": "sparse_categorical_crossentropy"}, y_true, y_pred,
        ...                   loss_weights={"age": 0.5, "kind": 1.0})
        >>> {k: round(float(v), 4) for k, v in logs.items()}  # 0.5 * 2 + log 2
        {'loss': 1.6931, 'age_loss': 2.0, 'kind_loss': 0.6931}
    """
    if _is_structure(sample_weight):
        raise ValueError(
            "sample_weight: one array of per-example weights (batch,) applies to every output; got "
            f"{describe(sample_weight)} (per-output weights are not supported)"
        )
    paired = match_outputs(y_true, y_pred)
    targets, outputs = paired if paired is not None else ({None: y_true}, {None: y_pred})
    total, logs = None, {}
    for name, fn, weight in per_output(loss, y_pred, loss_weights):
        try:
            value = (
                fn(targets[name], outputs[name])
                if sample_weight is None
                else fn(targets[name], outputs[name], sample_weight=sample_weight)
            )
        except (ValueError, TypeError) as e:
            raise named_error(e, name) from e
        if jnp.ndim(value) != 0:  # a custom loss that forgot to reduce: say so, not "grad needs a scalar"
            raise named_error(
                ValueError(
                    f"loss {_loss_name(getattr(fn, 'func', fn))} returned shape {jnp.shape(value)}; a "
                    "model's loss must be one number per batch (reduce it, e.g. with jnp.mean)"
                ),
                name,
            )
        if name is not None:
            logs[f"{name}_loss"] = value
        weighted = value if weight == 1.0 else weight * value  # 1.0 * x is x: keep the graph as it was
        total = weighted if total is None else total + weighted
    return {"loss": total, **logs}
