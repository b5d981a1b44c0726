"""'Show code': the fnn script that reproduces a playground configuration."""

from __future__ import annotations

from collections.abc import Sequence

from fnn.playground._engine import Config

_TEMPLATE = '''"""Reproduces an fnn Playground run: {dataset}, {problem}, hidden layers {hidden}."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fnn
from fnn.playground import feature_columns, make_dataset
from fnn.playground._engine import with_weight

SEED, EPOCHS, BATCH = {seed}, {epochs}, {batch_size}
FEATURES = {features!r}
EDITS = {edits!r}  # weights set by hand: (before epoch, layer, from, to, value)

x, y = make_dataset({dataset!r}, 500, noise={noise!r}, seed=SEED)
cut = int(round(500 * {train_ratio!r}))
x_train, y_train = jnp.asarray(feature_columns(x[:cut], FEATURES)), jnp.asarray(y[:cut])
x_test, y_test = jnp.asarray(feature_columns(x[cut:], FEATURES)), jnp.asarray(y[cut:])

model = fnn.Sequential([{layers}fnn.Dense(1)])
params, state = model.init(jax.random.key(SEED), (len(FEATURES),))
optimizer = fnn.optimizers.get({optimizer!r}, learning_rate={learning_rate!r})
opt_state = optimizer.init(params)


def loss(params, x, y):
    out = model.apply(params, state, x, train=False)[0][:, 0]
    data = {data_loss}
    weights = [p["w"] for p in params.values()]
    return data{penalty}, data


@jax.jit
def epoch(params, opt_state, order):
    def step(carry, rows):
        params, opt_state = carry
        grads = jax.grad(lambda p: loss(p, x_train[rows], y_train[rows])[0])(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    return jax.lax.scan(step, (params, opt_state), order.reshape(-1, BATCH))[0]


def edited(params, before):
    for at, *where, value in EDITS:
        if at == before:
            params = with_weight(params, *where, value)
    return params


steps = max(cut // BATCH, 1)
for e in range(EPOCHS):
    params = edited(params, e)
    order = np.random.default_rng([SEED, e]).permutation(cut)[: steps * BATCH].astype(np.int32)
    params, opt_state = epoch(params, opt_state, order)
params = edited(params, EPOCHS)
print(f"train loss: {{float(loss(params, x_train, y_train)[1]):.4f}}")
print(f"test loss: {{float(loss(params, x_test, y_test)[1]):.4f}}")
'''


def script(config: Config, epochs: int, edits: Sequence[tuple[int, int, int, int, float]] = ()) -> str:
    """The runnable script for ``config`` trained ``epochs`` epochs, with the weights set by hand
    (``edits``: ``(before epoch, layer, from, to, value)``) set again; it prints the test loss last.

    Examples:
        >>> "fnn.Dense(4, 'tanh')" in script(Config(), 10)
        True
    """
    activation = None if config.activation == "linear" else config.activation
    layers = "".join(f"fnn.Dense({n}, {activation!r}), " for n in config.hidden)
    if config.problem == "classification":
        data_loss = "jnp.mean(optax.sigmoid_binary_cross_entropy(out, y))"
    else:
        data_loss = "jnp.mean((out - y) ** 2)"
    penalty = {
        "none": "",
        "l1": f" + {config.regularization_rate!r} * sum(jnp.sum(jnp.abs(w)) for w in weights)",
        "l2": f" + {config.regularization_rate!r} * sum(0.5 * jnp.sum(w**2) for w in weights)",
    }[config.regularization]
    return _TEMPLATE.format(
        **{k: getattr(config, k) for k in ("dataset", "problem", "seed", "batch_size", "noise", "train_ratio")},
        hidden=list(config.hidden), features=config.features, epochs=epochs, layers=layers, edits=list(edits),
        optimizer=config.optimizer, learning_rate=config.learning_rate, data_loss=data_loss, penalty=penalty,
    )  # fmt: skip
