"""predict and evaluate: a model's outputs and its loss and metrics over a whole dataset."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn import data as data_lib
from fnn import losses as losses_lib
from fnn._checks import check_int
from fnn._core import Layer, Shape, apply_shape
from fnn.train._step import MetricsArg, check_output_activation, compute_logs


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
    """Loss and metrics over a whole dataset (``train=False``).

    Outputs come from :func:`predict`; the loss and metrics are then computed
    once on all ``n`` examples, so they are exact dataset values (precision,
    F1 and R² included), not averages of batch values.

    Args:
        model: the model.
        params: its params.
        state: its state.
        x: inputs ``(n, ...)``, an array or pytree of arrays with the examples on axis 0;
            or, with ``y=None``, an iterable of ``(x, y[, sample_weight])``
            batches, read once: the result is the one the same data gives as
            arrays (every batch's outputs are kept, the inputs are not).
        y: targets ``(n, ...)`` as the loss takes them (integer labels ``(n,)``
            for sparse cross-entropy, checked to lie in ``[0, classes)``); for
            several outputs, a tuple, list or dict of them like the outputs.
        loss: a loss name or function, or one per output, as for :func:`fnn.make_train_step`.
        metrics: names or functions (or a dict of them); per output as for
            :func:`fnn.make_train_step`.
        sample_weight: optional per-example weights ``(n,)`` for the loss (every output's).
        batch_size: examples per compiled forward call.
        loss_weights: weights of several outputs' losses, as for :func:`fnn.make_train_step`.

    Returns:
        ``{"loss": ..., metric name: ...}`` as Python floats, named as by
        :func:`fnn.make_train_step` (``"<output>_loss"``, ``"<output>_<metric>"``
        for several outputs).

    Raises:
        ValueError: for ``x`` and ``y`` of different lengths, no examples, labels
            out of range, or a softmax/sigmoid output given to a loss that takes logits.

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
    loss_weights: losses_lib.WeightsSpec = None,
) -> dict[str, float]:  # fmt: skip
    """:func:`evaluate` without its checks, which ``fit`` makes once rather than every epoch."""
    y_pred = predict(model, params, state, x, batch_size=batch_size)
    y = jax.tree.map(jnp.asarray, y)
    weight = None if sample_weight is None else jnp.asarray(sample_weight)
    logs = compute_logs(loss, loss_weights, metrics, y, y_pred, weight)
    return {name: float(value) for name, value in logs.items()}


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
    if not any(losses_lib.takes_class_labels(fn) for fn in losses_lib.losses_of(loss)):
        return
    out_shape = apply_shape(model, params, state, input_shape)
    shapes = losses_lib.named_outputs(out_shape, "the model's outputs") or {None: out_shape}
    for i, (output, fn, _) in enumerate(losses_lib.per_output(loss, out_shape)):
        if not losses_lib.takes_class_labels(fn) or not shapes[output]:
            continue
        for name, (y, weight) in labels.items():
            targets = losses_lib.match_outputs(y, out_shape, what=f"{owner}: {name}")
            classes = shapes[output][-1]
            if output is None:
                _check_label_range(owner, name, y, weight, classes, f"the model's {classes} outputs need")
            else:
                label = f"{name}[{output!r}]" if isinstance(y, Mapping) else f"{name}[{i}]"
                need = f"output {output!r} has {classes} classes and needs"
                _check_label_range(owner, label, targets[0][output], weight, classes, need)


def _check_label_range(owner: str, name: str, y: Any, weight: Any, classes: int, need: str) -> None:
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
        raise ValueError(
            f"{owner}: {name} holds label {y[where]} at index {tuple(int(i) for i in where)} "
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
    *, loss_weights: losses_lib.WeightsSpec = None,
) -> tuple[dict[str, float], int]:  # fmt: skip
    """:func:`evaluate` over a stream of ``(x, y[, sample_weight])`` batches, and the number of examples.

    The batches' outputs and targets are joined and scored once, so the logs are
    the exact dataset values, equal to those of the same data given as arrays.
    """
    if not isinstance(batches, Iterable) or isinstance(batches, (np.ndarray, jax.Array, Mapping, str, bytes)):
        raise ValueError(
            f"evaluate: pass y, or x as an iterable of (x, y) or (x, y, sample_weight) batches; got x of type "
            f"{type(batches).__name__} and no y"
        )
    y_pred, targets, weights, first = stream_outputs("evaluate", model, params, state, batches)
    if any(y is None for y in targets):
        raise ValueError("evaluate: each batch of the stream must be (x, y) or (x, y, sample_weight)")
    if any(w is None for w in weights) and not all(w is None for w in weights):
        raise ValueError("evaluate: either every batch of the stream has a sample_weight or none has")
    y = jax.tree.map(lambda *parts: np.concatenate([np.asarray(p) for p in parts]), *targets)
    weight = None if weights[0] is None else np.concatenate([np.asarray(w) for w in weights])
    check_output_activation(model, loss, params, state, first)
    check_labels("evaluate", loss, {"y": (y, weight)}, model, params, state, example_shapes(first))
    weight = None if weight is None else jnp.asarray(weight)
    logs = compute_logs(loss, loss_weights, metrics, jax.tree.map(jnp.asarray, y), y_pred, weight)
    return {name: float(value) for name, value in logs.items()}, data_lib.num_examples(y)
