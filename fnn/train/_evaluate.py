"""predict and evaluate: a model's outputs and its loss and metrics over a whole dataset."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn import data as data_lib
from fnn import losses as losses_lib
from fnn import metrics as metrics_lib
from fnn._checks import check_int
from fnn._core import Layer, Shape, apply_shape
from fnn.train._step import MetricsArg, check_output_activation, summed_metrics


def place(tree: Any) -> Any:
    """Puts a batch (or a dataset) on the device: the one place data crosses to it.

    Data-parallel training will shard here; everything else only sees placed pytrees.
    """
    return jax.device_put(tree)


def example_shapes(x: Any) -> Any:
    return jax.tree.map(lambda a: Shape(np.shape(a)[1:], jnp.result_type(a)), x)


@functools.lru_cache(maxsize=64)
def _compiled_forward(model: Layer) -> Callable:
    # Cached per model so repeated predict/evaluate calls (every epoch's validation)
    # reuse one compiled function per batch shape.
    return jax.jit(lambda params, state, x: model.apply(params, state, x, train=False)[0])


def _pad_rows(tree: Any, size: int) -> Any:
    def pad(a: Any) -> Any:
        a = np.asarray(a) if not isinstance(a, jax.Array) else a
        extra = size - a.shape[0]
        return a if extra == 0 else jnp.concatenate([a, jnp.zeros((extra, *a.shape[1:]), a.dtype)])

    return jax.tree.map(pad, tree)


def predict(model: Layer, params: Any, state: Any, x: Any, *, batch_size: int = 256) -> Any:
    """Model outputs for every example of ``x``, computed in batches (``train=False``).

    The last partial batch is padded to ``batch_size`` and the padding dropped,
    so one compiled function serves every batch and no example is lost.

    Args:
        model: the model.
        params: its params.
        state: its state.
        x: inputs ``(n, ...)``, an array or pytree of arrays with the examples on axis 0;
            or a stream: an iterable of batches (not a list or tuple, which are
            pytrees of inputs), each ``x`` or ``(x, y[, sample_weight])``, read
            once, ahead of the device (:func:`fnn.data.prefetch`).
        batch_size: examples per compiled call (for arrays; a stream's batches are its own).

    Returns:
        The outputs for all ``n`` examples, ``(n, ...)`` (a pytree for several outputs).

    Examples:
        >>> import jax, numpy as np, fnn
        >>> model = fnn.Dense(2)
        >>> params, state = model.init(jax.random.key(0), (3,))
        >>> fnn.predict(model, params, state, np.ones((5, 3), np.float32), batch_size=2).shape
        (5, 2)
    """
    if is_stream(x):
        return stream_outputs("predict", model, params, state, x)[0]
    n = data_lib.num_examples(x, "x")
    size = check_batch_size("predict", batch_size, n)
    forward = _compiled_forward(model)
    outputs = []
    for start in range(0, n, size):
        batch = data_lib.take(x, slice(start, start + size))
        outputs.append(forward(params, state, place(_pad_rows(batch, size))))
    merged = jax.tree.map(lambda *parts: jnp.concatenate(parts), *outputs)
    return jax.tree.map(lambda a: a[:n], merged)


def evaluate(
    model: Layer,
    params: Any,
    state: Any,
    x: Any,
    y: Any = None,
    *,
    loss: losses_lib.LossSpec,
    metrics: MetricsArg = None,
    sample_weight: Any = None,
    batch_size: int = 256,
    loss_weights: losses_lib.WeightsSpec = None,
) -> dict[str, float]:
    """Loss and metrics over a whole dataset (``train=False``), in memory independent of its size.

    Each batch goes through one compiled call (forward pass, loss, and each
    metric's additive statistics, :func:`fnn.metrics.statistics`), and the
    statistics are summed over the batches (in float64, on the host); no
    output is kept. So the logs are the exact dataset values, equal (up to
    float32 rounding) to computing them once on all ``n`` outputs, not
    averages of batch values: accuracy, precision, F1, IoU, AUC, R² and
    perplexity included. The loss is summed as ``loss * batch``, exact for a
    loss that is a mean over the batch's examples (every fnn loss:
    ``sum(w_i * loss_i) / batch``); a metric function without statistics
    counts as the example-weighted mean of its batch values. The last, smaller
    batch compiles once more (as it does in ``fit``); a stream compiles once
    per batch shape it holds.

    Args:
        model: the model.
        params: its params.
        state: its state.
        x: inputs ``(n, ...)``, an array or pytree of arrays with the examples on axis 0;
            or, with ``y=None``, an iterable of ``(x, y[, sample_weight])``
            batches, read once, ahead of the device: the result is the one the
            same data gives as arrays, and nothing of a batch is kept.
        y: targets ``(n, ...)`` as the loss takes them (integer labels ``(n,)``
            for sparse cross-entropy, checked to lie in ``[0, classes)``); for
            several outputs, a tuple, list or dict of them like the outputs.
        loss: a loss name or function, or one per output, as for :func:`fnn.make_train_step`.
        metrics: names or functions (or a dict of them); per output as for
            :func:`fnn.make_train_step`.
        sample_weight: optional per-example weights ``(n,)`` for the loss (every output's).
        batch_size: examples per compiled call.
        loss_weights: weights of several outputs' losses, as for :func:`fnn.make_train_step`.

    Returns:
        ``{"loss": ..., metric name: ...}`` as Python floats, named as by
        :func:`fnn.make_train_step` (``"<output>_loss"``, ``"<output>_<metric>"``
        for several outputs).

    Raises:
        ValueError: for ``x`` and ``y`` of different lengths, no examples, labels
            out of range (a stream's are checked as each batch is read), or a
            softmax/sigmoid output given to a loss that takes logits.

    Examples:
        >>> import jax, numpy as np, fnn
        >>> model = fnn.Dense(1)
        >>> params, state = model.init(jax.random.key(0), (2,))
        >>> logs = fnn.evaluate(model, params, state, np.ones((3, 2), np.float32),
        ...                     np.ones((3, 1), np.float32), loss="mse", metrics=["mae"])
        >>> sorted(logs)
        ['loss', 'mae']
    """
    if y is None:  # a stream of (x, y[, sample_weight]) batches
        if sample_weight is not None:
            raise ValueError("evaluate: with a stream of batches, put the sample weights in the batches")
        return evaluate_stream(model, params, state, x, loss, metrics, loss_weights=loss_weights)[0]
    n_x, n_y = data_lib.num_examples(x, "x"), data_lib.num_examples(y, "y")
    if n_x != n_y:
        raise ValueError(f"evaluate: x has {n_x} examples but y has {n_y}")
    check_batch_size("evaluate", batch_size, n_x)
    check_output_activation(model, loss, params, state, x)
    check_labels("evaluate", loss, {"y": (y, sample_weight)}, model, params, state, example_shapes(x))
    return evaluate_unchecked(
        model, params, state, x, y, loss, metrics, sample_weight, batch_size, loss_weights=loss_weights
    )


def evaluate_unchecked(
    model: Layer, params: Any, state: Any, x: Any, y: Any, loss: losses_lib.LossSpec,
    metrics: MetricsArg, sample_weight: Any, batch_size: int, *,
    loss_weights: losses_lib.WeightsSpec = None, combine: Callable[[Any], Any] | None = None,
) -> dict[str, float]:  # fmt: skip
    """:func:`evaluate` without its checks, which ``fit`` makes once rather than every epoch.

    ``combine`` maps the summed statistics before they become logs (``fit``
    sums them over processes, so every process gets the logs of all the data).
    """
    n = data_lib.num_examples(x, "x")
    size = min(batch_size, n)
    weights = (
        sample_weight
        if sample_weight is None or isinstance(sample_weight, jax.Array)
        else np.asarray(sample_weight)
    )
    if weights is not None and np.shape(weights) != (n,):
        # Checked whole: cut into batches, a wrong length would fail at some batch, or not at all.
        raise ValueError(
            f"evaluate: sample_weight must have shape ({n},) (one weight per example), got {np.shape(weights)}"
        )

    def batches() -> Iterator[tuple[Any, Any, Any]]:
        for start in range(0, n, size):
            rows = slice(start, start + size)
            weight = None if weights is None else weights[rows]
            yield data_lib.take(x, rows), data_lib.take(y, rows), weight

    logs, _ = _score(
        model, params, state, batches(), loss, metrics, loss_weights, check=False, combine=combine
    )
    return logs


def statistics_of_logs(
    loss: losses_lib.LossSpec,
    loss_weights: losses_lib.WeightsSpec,
    metrics: MetricsArg,
    y: Any,
    y_pred: Any,
    sample_weight: Any = None,
) -> dict[str, Any]:
    """Additive statistics of one batch's logs (those of ``compute_logs``); jittable.

    Summed leaf by leaf over batches (or devices, or processes), they give
    :func:`logs_of_statistics` the logs of all the data together.

    Args:
        loss: as for :func:`fnn.make_train_step`.
        loss_weights: as for :func:`fnn.make_train_step`.
        metrics: as for :func:`fnn.make_train_step`.
        y: targets, with the structure of ``y_pred``.
        y_pred: the model's outputs, ``(batch, ...)`` each.
        sample_weight: optional per-example weights ``(batch,)`` for the losses
            (as in ``compute_logs``, the metrics take none).

    Returns:
        ``{"count": batch, "loss": {log name: loss * batch}, "metrics": {log name: stats}}``.

    Examples:
        >>> import jax.numpy as jnp
        >>> stats = statistics_of_logs("mse", None, ["mae"], jnp.zeros((2, 1)), jnp.ones((2, 1)))
        >>> jax.tree.map(int, stats)
        {'count': 2, 'loss': {'loss': 2}, 'metrics': {'mae': {'count': 2, 'total': 2}}}
    """
    batch = jnp.shape(jax.tree.leaves(y_pred)[0])[0]
    losses = losses_lib.total_loss(loss, y, y_pred, loss_weights=loss_weights, sample_weight=sample_weight)
    # Every fnn loss is sum(w_i * loss_i) / batch: times the batch, it adds up over batches.
    summed_losses = {name: _at_least_float32(value) * batch for name, value in losses.items()}
    stats = {label: log.stats for label, log in summed_metrics(metrics, y, y_pred, {}).items()}
    return {"count": jnp.asarray(batch, jnp.int32), "loss": summed_losses, "metrics": stats}


def _at_least_float32(value: Any) -> jax.Array:
    # Explicitly (strict promotion refuses bfloat16 with float32): low precision would not add up.
    value = jnp.asarray(value)
    if jnp.issubdtype(value.dtype, jnp.floating) and jnp.finfo(value.dtype).bits >= 32:
        return value
    return value.astype(jnp.float32)


def logs_of_statistics(metrics: MetricsArg, y: Any, summed: Mapping[str, Any]) -> dict[str, float]:
    """The logs from :func:`statistics_of_logs` summed over batches, as Python floats.

    Args:
        metrics: as given to :func:`statistics_of_logs`.
        y: targets of one batch (only their structure is read: the output names).
        summed: the summed statistics.

    Examples:
        >>> import jax.numpy as jnp
        >>> parts = [statistics_of_logs("mse", None, ["mae"], jnp.zeros((2, 1)), jnp.full((2, 1), value))
        ...          for value in (1.0, 3.0)]
        >>> logs_of_statistics(["mae"], jnp.zeros((2, 1)), jax.tree.map(lambda a, b: a + b, *parts))
        {'loss': 5.0, 'mae': 2.0}
    """
    count = summed["count"]
    logs = {name: float(np.asarray(total) / np.asarray(count)) for name, total in summed["loss"].items()}
    for label, (_, fn) in metrics_lib.per_output(metrics, y).items():
        logs[label] = float(metrics_lib.statistics(fn).result(summed["metrics"][label]))
    return logs


def _hashable(spec: Any) -> Any:
    # Loss and metric specs are lists and dicts: a hashable twin caches one compiled call per spec.
    if isinstance(spec, Mapping):
        return ("dict", tuple((k, _hashable(v)) for k, v in spec.items()))
    if type(spec) in (list, tuple):
        return (type(spec).__name__, tuple(_hashable(v) for v in spec))
    return ("leaf", type(spec), spec)  # the type too: 1, 1.0 and True are equal keys, not equal options


def _restored(frozen: Any) -> Any:
    kind, value = frozen[0], frozen[-1]
    if kind == "dict":
        return {k: _restored(v) for k, v in value}
    if kind in ("list", "tuple"):
        return {"list": list, "tuple": tuple}[kind](_restored(v) for v in value)
    return value


def _compiled_statistics(
    model: Layer, loss: Any, metrics: Any, loss_weights: Any
) -> Callable[[Any, Any, Any, Any, Any], dict]:
    frozen = _hashable((loss, metrics, loss_weights))
    try:
        hash(frozen)
    except TypeError:  # an unhashable option somewhere: compile for this call only
        return _statistics_call(model, frozen)
    return _cached_statistics_call(model, frozen)


def _statistics_call(model: Layer, frozen: Any) -> Callable[[Any, Any, Any, Any, Any], dict]:
    loss, metrics, loss_weights = _restored(frozen)

    def batch_statistics(params: Any, state: Any, x: Any, y: Any, weight: Any) -> dict:
        y_pred = model.apply(params, state, x, train=False)[0]
        return statistics_of_logs(loss, loss_weights, metrics, y, y_pred, weight)

    return jax.jit(batch_statistics)


# Cached per model and spec, so every epoch's validation reuses one compiled call per batch shape.
_cached_statistics_call = functools.lru_cache(maxsize=64)(_statistics_call)


def _to_host(tree: Any) -> Any:
    # float64 on the host: sums of many float32 batch sums (and int32 counts) lose nothing.
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _score(
    model: Layer, params: Any, state: Any, items: Iterable, loss: Any, metrics: Any, loss_weights: Any,
    *, check: bool, combine: Callable[[Any], Any] | None = None,
) -> tuple[dict[str, float], int]:  # fmt: skip
    """The logs of ``(x, y, weight or None)`` batches from summed statistics, and the number of examples.

    With ``check``, the first batch's outputs are checked against the loss and
    every batch's labels as it is read (a stream's y is never all in memory).
    """
    compiled = _compiled_statistics(model, loss, metrics, loss_weights)
    summed, pending, seen, weighted, check_batch, first_y = None, None, 0, None, None, None
    put = (lambda item: item) if not check else _unpack_item
    for x, y, weight in data_lib.prefetch(items, put=put):
        if y is None:
            raise ValueError("evaluate: each batch of the stream must be (x, y) or (x, y, sample_weight)")
        if weighted is not None and weighted != (weight is not None):
            raise ValueError("evaluate: either every batch of the stream has a sample_weight or none has")
        weighted = weight is not None
        n = data_lib.num_examples(x, "evaluate: a batch's x")
        if data_lib.num_examples(y, "evaluate: a batch's y") != n:
            raise ValueError(
                f"evaluate: a batch's x has {n} examples but its y has {data_lib.num_examples(y)} "
                f"(the batch after example {seen})"
            )
        if check:
            if check_batch is None:
                check_output_activation(model, loss, params, state, x)
                check_batch = label_checker("evaluate", loss, model, params, state, example_shapes(x))
            check_batch({"y": (y, weight)}, offset=seen)
        stats = compiled(params, state, place(x), place(y), None if weight is None else place(weight))
        if pending is not None:  # one batch behind, so the device runs on while the host adds
            summed = _add(summed, _to_host(pending))
        pending, seen, first_y = stats, seen + n, y if first_y is None else first_y
    if pending is None:
        raise ValueError("evaluate: the stream of batches is empty")
    summed = _add(summed, _to_host(pending))
    if combine is not None:
        summed = combine(summed)
    return logs_of_statistics(metrics, first_y, summed), seen


def _add(summed: Any, stats: Any) -> Any:
    return stats if summed is None else jax.tree.map(np.add, summed, stats)


def check_labels(
    owner: str, loss: Any, labels: Mapping[str, Any], model: Layer, params: Any, state: Any, input_shape: Any
) -> None:
    """Class labels must lie in ``[0, classes)``: checked once on the host, before anything compiles.

    Under ``jit`` a bad label can only turn the loss into NaN; here it is named.
    ``labels`` maps a name to ``(y, sample_weight or None)``: an example of weight
    0 is padding, whose label may be anything (as the loss allows). With several
    outputs (``loss`` one per output, as for :func:`fnn.make_train_step`), each
    output whose loss takes class labels is checked against its own classes.
    """
    label_checker(owner, loss, model, params, state, input_shape)(labels)


def label_checker(
    owner: str, loss: Any, model: Layer, params: Any, state: Any, input_shape: Any
) -> Callable[..., None]:
    """:func:`check_labels` for many batches: ``check(labels, offset=0)``, the model traced once.

    ``offset`` is the index of the batch's first example, so an error names the
    label's index in the whole stream.
    """
    if not any(losses_lib.takes_class_labels(fn) for fn in losses_lib.losses_of(loss)):
        return lambda labels, offset=0: None
    out_shape = apply_shape(model, params, state, input_shape)
    shapes = losses_lib.named_outputs(out_shape, "the model's outputs") or {None: out_shape}
    checked = [
        (i, output)
        for i, (output, fn, _) in enumerate(losses_lib.per_output(loss, out_shape))
        if losses_lib.takes_class_labels(fn) and shapes[output]
    ]

    def check(labels: Mapping[str, Any], offset: int = 0) -> None:
        for i, output in checked:
            for name, (y, weight) in labels.items():
                targets = losses_lib.match_outputs(y, out_shape, what=f"{owner}: {name}")
                classes = shapes[output][-1]
                if output is None:
                    need = f"the model's {classes} outputs need"
                    _check_label_range(owner, name, y, weight, classes, need, offset)
                else:
                    label = f"{name}[{output!r}]" if isinstance(y, Mapping) else f"{name}[{i}]"
                    need = f"output {output!r} has {classes} classes and needs"
                    _check_label_range(owner, label, targets[0][output], weight, classes, need, offset)

    return check


def _check_label_range(
    owner: str, name: str, y: Any, weight: Any, classes: int, need: str, offset: int = 0
) -> None:
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer) or y.size == 0:
        return  # the loss names a wrong dtype itself
    out = (y < 0) | (y >= classes)
    if weight is not None and np.shape(weight) == y.shape[:1]:
        out &= (np.asarray(weight) != 0).reshape((-1,) + (1,) * (y.ndim - 1))
    bad = np.flatnonzero(out)
    if bad.size:
        where = np.unravel_index(bad[0], y.shape)
        hint = " (they look 1-based: pass y - 1)" if y.min() == 1 and y.max() == classes else ""
        index = (int(where[0]) + offset, *(int(i) for i in where[1:]))
        raise ValueError(
            f"{owner}: {name} holds label {y[where]} at index {index} "
            f"({bad.size} out of range in all); {need} class labels in [0, {classes}){hint}"
        )


def check_batch_size(owner: str, batch_size: Any, n: int) -> int:
    """``batch_size`` checked, and cut to the ``n`` examples there are (as Keras does)."""
    check_int(owner, "batch_size", batch_size)
    if n == 0:
        raise ValueError(f"{owner}: the data holds 0 examples; there is nothing to run on")
    return int(min(batch_size, n))


def is_stream(x: Any) -> bool:
    """Whether ``x`` is an iterable of batches rather than arrays (lists and tuples are pytrees of inputs)."""
    return isinstance(x, Iterable) and not isinstance(
        x, (np.ndarray, jax.Array, Mapping, tuple, list, str, bytes)
    )


def _unpack_item(item: Any) -> tuple[Any, Any, Any]:
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        return (*item, None) if len(item) == 2 else tuple(item)
    return item, None, None


def stream_outputs(
    owner: str, model: Layer, params: Any, state: Any, batches: Iterable
) -> tuple[Any, list, list, Any]:
    """The forward pass over a stream: all outputs ``(n, ...)``, each batch's ``y`` and weights, and the first ``x``.

    Batches smaller than the first are padded to its size, so one compiled
    function serves them all (as :func:`predict` pads the last batch of arrays).
    """
    forward = _compiled_forward(model)
    outputs, targets, weights, first, size = [], [], [], None, 0
    for item in data_lib.prefetch(batches, put=lambda b: _unpack_item(b)):
        x, y, weight = item
        n = data_lib.num_examples(x, f"{owner}: a batch's x")
        first, size = (x, n) if first is None else (first, size)
        out = forward(params, state, place(_pad_rows(x, max(n, size))))
        outputs.append(jax.tree.map(lambda a: a[:n], out))
        targets.append(y)
        weights.append(weight)
    if first is None:
        raise ValueError(f"{owner}: the stream of batches is empty")
    merged = jax.tree.map(lambda *parts: jnp.concatenate(parts), *outputs)
    return merged, targets, weights, first


def evaluate_stream(
    model: Layer, params: Any, state: Any, batches: Iterable, loss: losses_lib.LossSpec, metrics: MetricsArg,
    *, loss_weights: losses_lib.WeightsSpec = None, combine: Callable[[Any], Any] | None = None,
) -> tuple[dict[str, float], int]:  # fmt: skip
    """:func:`evaluate` over a stream of ``(x, y[, sample_weight])`` batches, and the number of examples.

    Each batch's statistics are summed as it is read (nothing of it is kept), so
    the logs are the exact dataset values, equal to those of the same data given
    as arrays. Each batch's labels are checked as it is read.
    """
    if not isinstance(batches, Iterable) or isinstance(batches, (np.ndarray, jax.Array, Mapping, str, bytes)):
        raise ValueError(
            f"evaluate: pass y, or x as an iterable of (x, y) or (x, y, sample_weight) batches; got x of type "
            f"{type(batches).__name__} and no y"
        )
    return _score(model, params, state, batches, loss, metrics, loss_weights, check=True, combine=combine)
