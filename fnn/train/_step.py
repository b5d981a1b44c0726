"""Pure train and eval steps, ready for ``jax.jit``."""

from __future__ import annotations

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

Batch = tuple[Any, Any] | tuple[Any, Any, Any]
Logs = dict[str, jax.Array]
MetricsArg = Sequence[str | metrics_lib.Metric] | Mapping[str, str | metrics_lib.Metric] | None


def _unpack(batch: Any) -> tuple[Any, Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        return (*batch, None) if len(batch) == 2 else tuple(batch)
    raise ValueError(
        "batch must be a tuple (x, y) or (x, y, sample_weight), got "
        f"{type(batch).__name__}{f' of {len(batch)} items' if isinstance(batch, (tuple, list)) else ''}"
    )


def check_output_activation(
    model: Layer, loss: str | losses_lib.Loss, params: Any, state: Any, x: Any
) -> None:
    """Raises when a model ending in softmax or sigmoid meets a loss that reads logits.

    Keras's losses take probabilities, fnn's take logits: a Keras model moved
    over as it is would apply the activation twice and train on the wrong loss
    without a sign. The check traces the forward pass once (shapes only).

    Raises:
        ValueError: naming the loss, the activation and both fixes.
    """
    loss = losses_lib.get(loss)
    if not losses_lib.takes_logits(loss):
        return
    structs = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), (params, state, x)
    )
    kind = probability_output(graph(lambda p, s, x: model.apply(p, s, x, train=False)[0], *structs))
    if kind is not None:
        name = getattr(loss, "func", loss).__name__
        raise ValueError(
            f"{name}: model '{model.name}' ends in a {kind}, but the loss takes logits "
            "(from_logits=True, fnn's default, unlike Keras), so it would apply the "
            f"{kind} twice and train on the wrong loss. End the model without the activation "
            f"(e.g. Dense(10) instead of Dense(10, '{kind}')) and apply jax.nn.{kind} to its "
            f"predictions, or pass loss=fnn.losses.get('{name}', from_logits=False)"
        )


def _make_objective(
    model: Layer, loss: str | losses_lib.Loss, metrics: MetricsArg
) -> Callable[..., tuple[jax.Array, tuple[Logs, Any]]]:
    loss_fn = losses_lib.get(loss)
    metric_fns = metrics_lib.resolve_all(metrics)
    checked = False  # the model's output activation, at the first trace only

    def objective(params: Any, state: Any, batch: Any, key: Any, train: bool):
        nonlocal checked
        x, y, weight = _unpack(batch)
        if not checked:
            check_output_activation(model, loss_fn, params, state, x)
            checked = True
        y_pred, new_state = model.apply(params, state, x, train=train, key=key)
        value = loss_fn(y, y_pred) if weight is None else loss_fn(y, y_pred, sample_weight=weight)
        logs = {"loss": value, **{n: fn(y, y_pred) for n, fn in metric_fns.items()}}
        return value, (logs, new_state)

    return objective


def make_train_step(
    model: Layer,
    loss: str | losses_lib.Loss,
    optimizer: str | optax.GradientTransformation,
    metrics: MetricsArg = None,
) -> Callable[..., tuple[Any, Any, Any, Logs]]:
    """Builds a pure training step: forward, loss, gradients, optimiser update.

    Args:
        model: the :class:`~fnn.Layer` to train.
        loss: a loss name (``"sparse_categorical_crossentropy"``) or a function
            ``(y_true, y_pred, *, sample_weight=None) -> scalar``.
        optimizer: a name (``"adam"``, Keras's default rate) or an optax
            ``GradientTransformation`` (use :func:`fnn.optimizers.get` for
            a name with options).
        metrics: names or functions ``(y_true, y_pred) -> scalar``, or a dict of them.

    Returns:
        ``train_step(params, state, opt_state, batch, key) -> (params, state,
        opt_state, logs)``, where ``batch`` is ``(x, y)`` or ``(x, y,
        sample_weight)``, ``key`` feeds dropout (``None`` if the model needs
        none) and ``logs`` maps ``"loss"`` and each metric to a scalar computed
        on the batch before the update. Pure: wrap it in ``jax.jit`` (donate
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
    objective = _make_objective(model, loss, metrics)
    tx = optimizers.get(optimizer)

    def train_step(params: Any, state: Any, opt_state: Any, batch: Any, key: Any):
        scale = optimizers.current_loss_scale(opt_state)

        def scaled(*args):  # float16: the scaled loss; the optimiser unscales (optimizers.loss_scale)
            value, aux = objective(*args)
            return value * scale.astype(value.dtype), aux

        loss = objective if scale is None else scaled
        grads, (logs, new_state) = jax.grad(loss, has_aux=True)(params, state, batch, key, True)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state, logs

    return train_step


def make_grad_fn(model: Layer, loss: str | losses_lib.Loss) -> Callable[..., Any]:
    """Builds ``grad_fn(params, state, batch, key=None) -> grads``: the training loss's gradients.

    The same gradients :func:`make_train_step` feeds the optimiser (``train=True``),
    e.g. to log their histograms or check them in a custom loop.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> model = fnn.Dense(1)
        >>> params, state = model.init(jax.random.key(0), (2,))
        >>> grads = fnn.make_grad_fn(model, "mse")(params, state, (jnp.ones((4, 2)), jnp.ones((4, 1))))
        >>> jax.tree.map(jnp.shape, grads)
        {'b': (1,), 'w': (2, 1)}
    """
    objective = _make_objective(model, loss, None)

    def grad_fn(params: Any, state: Any, batch: Any, key: Any = None) -> Any:
        return jax.grad(objective, has_aux=True)(params, state, batch, key, True)[0]

    return grad_fn


def make_eval_step(
    model: Layer, loss: str | losses_lib.Loss, metrics: MetricsArg = None
) -> Callable[..., Logs]:
    """Builds a pure evaluation step (``train=False``, no key, state unchanged).

    Args:
        model: as for :func:`make_train_step`.
        loss: as for :func:`make_train_step`.
        metrics: as for :func:`make_train_step`.

    Returns:
        ``eval_step(params, state, batch) -> logs`` with the loss and metrics of the batch.

    Examples:
        >>> import jax, jax.numpy as jnp, fnn
        >>> model = fnn.Dense(2)
        >>> params, state = model.init(jax.random.key(0), (3,))
        >>> step = fnn.make_eval_step(model, "sparse_categorical_crossentropy", ["accuracy"])
        >>> sorted(step(params, state, (jnp.ones((4, 3)), jnp.zeros(4, jnp.int32))))
        ['accuracy', 'loss']
    """
    objective = _make_objective(model, loss, metrics)

    def eval_step(params: Any, state: Any, batch: Any) -> Logs:
        return objective(params, state, batch, None, False)[1][0]

    return eval_step
