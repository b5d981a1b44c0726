"""Pure train and eval steps, ready for ``jax.jit``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from fnn import losses as losses_lib
from fnn import metrics as metrics_lib
from fnn import optimizers
from fnn._core import Layer
from fnn._graph import graph, probability_output
from fnn._layer_losses import add_regularization, zeroed_losses
from fnn.train._run import Summed

Batch = tuple[Any, Any] | tuple[Any, Any, Any]
Logs = dict[str, jax.Array]
# A list or dict of metrics, or for several outputs a dict {output name: list of metrics}.
MetricsArg = Sequence[str | metrics_lib.Metric] | Mapping[str, Any] | None


def _unpack(batch: Any) -> tuple[Any, Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        return (*batch, None) if len(batch) == 2 else tuple(batch)
    raise ValueError(
        "batch must be a tuple (x, y) or (x, y, sample_weight), got "
        f"{type(batch).__name__}{f' of {len(batch)} items' if isinstance(batch, (tuple, list)) else ''}"
    )


def check_output_activation(model: Layer, loss: losses_lib.LossSpec, params: Any, state: Any, x: Any) -> None:
    """Raises when a model output ending in softmax or sigmoid meets a loss that reads logits.

    Keras's losses take probabilities, fnn's take logits: a Keras model moved
    over as it is would apply the activation twice and train on the wrong loss
    without a sign. The check traces the forward pass once (shapes only) and
    looks at each output whose loss takes logits.

    Args:
        model: the model.
        loss: its loss, or losses (as for :func:`fnn.losses.per_output`).
        params: its params (arrays or ``jax.ShapeDtypeStruct`` s).
        state: its state.
        x: a batch of inputs.

    Raises:
        ValueError: naming the loss, the output (for several), the activation and both fixes.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> model = fnn.Dense(3, "softmax")
        >>> params, state = model.init(jax.random.key(0), (2,))
        >>> check_output_activation(model, "mse", params, state, jnp.ones((1, 2)))  # mse reads no logits
    """
    if not any(losses_lib.takes_logits(fn) for fn in losses_lib.losses_of(loss)):
        return
    structs = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), (params, state, x)
    )
    seen = {}

    def forward(params: Any, state: Any, x: Any) -> list[Any]:
        y = model.apply(params, state, x, train=False)[0]
        seen["y"] = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), y)
        outputs = losses_lib.named_outputs(y, "the model's outputs")
        return [y] if outputs is None else list(outputs.values())  # one graph output each

    g = graph(forward, *structs)
    for i, (output, fn, _) in enumerate(losses_lib.per_output(loss, seen["y"])):
        if not losses_lib.takes_logits(fn):
            continue
        kind = probability_output(dataclasses.replace(g, outputs=(g.outputs[i],)))
        if kind is None:
            continue
        name = getattr(fn, "func", fn).__name__
        probabilities = f"fnn.losses.get('{name}', from_logits=False)"
        where, fix = (
            (f"model '{model.name}'", f"loss={probabilities}")
            if output is None
            else (f"output '{output}' of model '{model.name}'", f"{probabilities} as its loss")
        )
        raise ValueError(
            f"{name}: {where} ends in a {kind}, but the loss takes logits "
            "(from_logits=True, fnn's default, unlike Keras), so it would apply the "
            f"{kind} twice and train on the wrong loss. End the model without the activation "
            f"(e.g. Dense(10) instead of Dense(10, '{kind}')) and apply jax.nn.{kind} to its "
            f"predictions, or pass {fix}"
        )


def compute_logs(
    loss: losses_lib.LossSpec,
    loss_weights: losses_lib.WeightsSpec,
    metrics: MetricsArg,
    y: Any,
    y_pred: Any,
    sample_weight: Any = None,
) -> Logs:
    """The loss and metrics of a batch: ``"loss"`` (the weighted total), each metric, and for
    structured outputs ``"<output>_loss"`` and ``"<output>_<metric>"``.

    Args:
        loss: as for :func:`fnn.losses.per_output`.
        loss_weights: as for :func:`fnn.losses.per_output`.
        metrics: as for :func:`fnn.metrics.per_output`.
        y: targets, with the structure of ``y_pred``.
        y_pred: the model's outputs, ``(batch, ...)`` each.
        sample_weight: optional per-example weights ``(batch,)`` for every output's loss.

    Returns:
        ``{log name: scalar}``.

    Examples:
        >>> import jax.numpy as jnp
        >>> y_pred = (jnp.array([[1.0], [3.0]]), jnp.array([[2.0, 0.0], [0.0, 2.0]]))
        >>> y = (jnp.array([[1.0], [1.0]]), jnp.array([0, 0]))
        >>> logs = compute_logs(["mae", "sparse_categorical_crossentropy"], [1.0, 0.0],
        ...                     {"output_1": ["accuracy"]}, y, y_pred)
        >>> {k: round(float(v), 4) for k, v in logs.items()}
        {'loss': 1.0, 'output_0_loss': 1.0, 'output_1_loss': 1.1269, 'output_1_accuracy': 0.5}
    """
    logs = losses_lib.total_loss(loss, y, y_pred, loss_weights=loss_weights, sample_weight=sample_weight)
    targets, outputs = losses_lib.match_outputs(y, y_pred) or ({None: y}, {None: y_pred})
    for label, (output, fn) in metrics_lib.per_output(metrics, y_pred).items():
        try:
            logs[label] = fn(targets[output], outputs[output])
        except (ValueError, TypeError) as e:
            raise losses_lib.named_error(e, output) from e
    return logs


def summed_metrics(metrics: MetricsArg, y: Any, y_pred: Any, known: dict) -> dict[str, Summed]:
    """Each metric's statistics of the batch, as :class:`Summed` logs (``known`` keeps one per label)."""
    targets, outputs = losses_lib.match_outputs(y, y_pred) or ({None: y}, {None: y_pred})
    logs = {}
    for label, (output, fn) in metrics_lib.per_output(metrics, y_pred).items():
        # One Statistics per label for good: its result is static pytree data, equal at every trace.
        stats, result = known.setdefault(label, metrics_lib.statistics(fn))
        try:
            logs[label] = Summed(stats(targets[output], outputs[output]), result)
        except (ValueError, TypeError) as e:
            raise losses_lib.named_error(e, output) from e
    return logs


def _make_objective(
    model: Layer,
    loss: losses_lib.LossSpec,
    metrics: MetricsArg,
    loss_weights: losses_lib.WeightsSpec = None,
    summed: bool = False,
) -> Callable[..., tuple[jax.Array, tuple[Logs, Any]]]:
    # Unknown names fail here; the rest of the spec needs the outputs' structure (first trace).
    losses_lib.losses_of(loss)
    metrics_lib.check_spec(metrics)
    checked = False  # the model's output activation, at the first trace only
    known: dict = {}

    def objective(params: Any, state: Any, batch: Any, key: Any, train: bool):
        nonlocal checked
        x, y, weight = _unpack(batch)
        if not checked:
            check_output_activation(model, loss, params, state, x)
            checked = True
        if train:  # the layers' loss terms count for this call only (InferenceMode's write none)
            state = zeroed_losses(state)
        y_pred, new_state = model.apply(params, state, x, train=train, key=key)
        logs = compute_logs(loss, loss_weights, None if summed else metrics, y, y_pred, weight)
        if summed:
            logs.update(summed_metrics(metrics, y, y_pred, known))
        value = logs["loss"]
        if train:  # regularizers and fnn.add_loss terms: minimised with the data loss, and logged
            value, logs = add_regularization(value, logs, new_state)
        return value, (logs, new_state)

    return objective


def make_train_step(
    model: Layer,
    loss: losses_lib.LossSpec,
    optimizer: str | optax.GradientTransformation,
    metrics: MetricsArg = None,
    *,
    loss_weights: losses_lib.WeightsSpec = None,
) -> Callable[..., tuple[Any, Any, Any, Logs]]:
    """Builds a pure training step: forward, loss, gradients, optimiser update.

    Args:
        model: the :class:`~fnn.Layer` to train.
        loss: a loss name (``"sparse_categorical_crossentropy"``) or a function
            ``(y_true, y_pred, *, sample_weight=None) -> scalar``. For a model
            with several outputs (a tuple, list or dict of arrays, with ``y``
            of the same structure), one loss for every output, a list (one per
            output) or a dict keyed by output name (dict keys, or
            ``"output_0"``, ``"output_1"``, ... for tuples), as in Keras's
            ``compile(loss={...})``; see :func:`fnn.losses.per_output`.
        optimizer: a name (``"adam"``, Keras's default rate) or an optax
            ``GradientTransformation`` (use :func:`fnn.optimizers.get` for
            a name with options).
        metrics: names or functions ``(y_true, y_pred) -> scalar``, or a dict of
            them; for several outputs, a dict ``{output name: [metrics]}`` or one
            list for every output, logged as ``"<output>_<metric>"`` (see
            :func:`fnn.metrics.per_output`).
        loss_weights: for several outputs, a list or dict like ``loss`` of
            weights ``>= 0`` (default all 1.0): the loss is ``sum(weight * loss)``.

    Returns:
        ``train_step(params, state, opt_state, batch, key) -> (params, state,
        opt_state, logs)``, where ``batch`` is ``(x, y)`` or ``(x, y,
        sample_weight)``, ``key`` feeds dropout (``None`` if the model needs
        none) and ``logs`` maps ``"loss"`` and each metric to a scalar computed
        on the batch before the update (with several outputs also each
        output's unweighted ``"<output>_loss"``). The layers' loss terms
        (regularizers, :func:`fnn.add_loss`) are added to the loss that is
        differentiated and to ``"loss"``, and logged as ``"regularization_loss"``
        when the model has any. Pure: wrap it in ``jax.jit`` (donate
        params and opt_state for speed).

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> model = fnn.Dense(1)
        >>> params, state = model.init(jax.random.key(0), (2,))
        >>> opt = fnn.optimizers.get("sgd", learning_rate=0.1)
        >>> step = jax.jit(fnn.make_train_step(model, "mse", opt))
        >>> batch = (jnp.ones((4, 2)), jnp.ones((4, 1)))
        >>> params, state, opt_state, logs = step(params, state, opt.init(params), batch, None)
        >>> sorted(logs)
        ['loss']
    """
    objective = _make_objective(model, loss, metrics, loss_weights)
    return make_train_step_from_loss(lambda p, s, b, k: objective(p, s, b, k, True), optimizer)


def make_fit_step(
    model: Layer, loss: Any, optimizer: Any, metrics: MetricsArg, loss_weights: Any
) -> Callable[..., tuple[Any, Any, Any, Logs]]:
    """:func:`make_train_step` as ``fit`` runs it: each metric logged as :class:`Summed` statistics.

    ``fit`` sums them over the epoch (and over each callback's interval), so
    its training metrics are those of all the batches together (precision, F1,
    AUC exact), as Keras's stateful metrics are, not a mean of batch values.
    """
    objective = _make_objective(model, loss, metrics, loss_weights, summed=True)
    return make_train_step_from_loss(lambda p, s, b, k: objective(p, s, b, k, True), optimizer)


def make_train_step_from_loss(
    loss_fn: Callable[..., tuple[jax.Array, tuple[Logs, Any]]], optimizer: str | optax.GradientTransformation
) -> Callable[..., tuple[Any, Any, Any, Logs]]:
    """Builds a training step from your own loss: gradients and the optimiser update around it.

    For losses that are not a function of ``(y_true, y_pred)``: distillation,
    auxiliary or contrastive losses. The step is what :func:`make_train_step`
    returns, so ``fnn.fit(train_step=...)`` runs it with everything else of
    ``fit`` (and a float16 loss scale works as there).

    Args:
        loss_fn: ``loss_fn(params, state, batch, key) -> (loss, (logs, new_state))``:
            a scalar loss to minimise, a dict of scalar logs (``"loss"`` is
            added when missing) and the model's new state.
        optimizer: a name or an optax ``GradientTransformation``.

    Returns:
        ``train_step(params, state, opt_state, batch, key) -> (params, state, opt_state, logs)``.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> model = fnn.Dense(1)
        >>> def loss_fn(params, state, batch, key):
        ...     y, state = model.apply(params, state, batch[0], train=True, key=key)
        ...     return jnp.mean(jnp.abs(y - batch[1])), ({}, state)
        >>> step = fnn.make_train_step_from_loss(loss_fn, "sgd")
        >>> params, state = model.init(jax.random.key(0), (2,))
        >>> opt_state = fnn.optimizers.get("sgd").init(params)
        >>> sorted(step(params, state, opt_state, (jnp.ones((4, 2)), jnp.ones((4, 1))), None)[3])
        ['loss']
    """
    tx = optimizers.get(optimizer)

    def with_loss_logged(*args: Any) -> tuple[jax.Array, tuple[Logs, Any]]:
        value, (logs, new_state) = loss_fn(*args)
        return value, ({"loss": value, **logs}, new_state)

    def train_step(params: Any, state: Any, opt_state: Any, batch: Any, key: Any):
        scale = optimizers.current_loss_scale(opt_state)

        def scaled(*args):  # float16: the scaled loss; the optimiser unscales (optimizers.loss_scale)
            value, aux = with_loss_logged(*args)
            return value * scale.astype(value.dtype), aux

        loss = with_loss_logged if scale is None else scaled
        grads, (logs, new_state) = jax.grad(loss, has_aux=True)(params, state, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state, logs

    return train_step


def make_grad_fn(
    model: Layer, loss: losses_lib.LossSpec, *, loss_weights: losses_lib.WeightsSpec = None
) -> Callable[..., Any]:
    """Builds ``grad_fn(params, state, batch, key=None) -> grads``: the training loss's gradients.

    The same gradients :func:`make_train_step` feeds the optimiser (``train=True``),
    e.g. to log their histograms or check them in a custom loop. ``loss`` and
    ``loss_weights`` are as for :func:`make_train_step`.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> model = fnn.Dense(1)
        >>> params, state = model.init(jax.random.key(0), (2,))
        >>> grads = fnn.make_grad_fn(model, "mse")(params, state, (jnp.ones((4, 2)), jnp.ones((4, 1))))
        >>> jax.tree.map(jnp.shape, grads)
        {'b': (1,), 'w': (2, 1)}
    """
    objective = _make_objective(model, loss, None, loss_weights)

    def grad_fn(params: Any, state: Any, batch: Any, key: Any = None) -> Any:
        return jax.grad(objective, has_aux=True)(params, state, batch, key, True)[0]

    return grad_fn


def make_eval_step(
    model: Layer,
    loss: losses_lib.LossSpec,
    metrics: MetricsArg = None,
    *,
    loss_weights: losses_lib.WeightsSpec = None,
) -> Callable[..., Logs]:
    """Builds a pure evaluation step (``train=False``, no key, state unchanged).

    Args:
        model: as for :func:`make_train_step`.
        loss: as for :func:`make_train_step`.
        metrics: as for :func:`make_train_step`.
        loss_weights: as for :func:`make_train_step`.

    Returns:
        ``eval_step(params, state, batch) -> logs`` with the loss and metrics of
        the batch, named as by :func:`make_train_step`.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> model = fnn.Dense(2)
        >>> params, state = model.init(jax.random.key(0), (3,))
        >>> step = fnn.make_eval_step(model, "sparse_categorical_crossentropy", ["accuracy"])
        >>> sorted(step(params, state, (jnp.ones((4, 3)), jnp.zeros(4, jnp.int32))))
        ['accuracy', 'loss']
    """
    objective = _make_objective(model, loss, metrics, loss_weights)

    def eval_step(params: Any, state: Any, batch: Any) -> Logs:
        return objective(params, state, batch, None, False)[1][0]

    return eval_step
