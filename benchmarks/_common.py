"""What the benchmarks share: the models, the hand-written JAX reference, fnn's model, reports."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import fnn

MODELS = {  # name: (layer widths, batch size)
    "tiny": ((32, 64, 10), 32),
    "mlp": ((784, 256, 256, 10), 128),
}


def optax_step(loss, tx):
    """The hand-written step: ``((params, opt_state), (x, y)) -> ((params, opt_state), loss)``."""

    def step(carry, batch):
        params, opt_state = carry
        value, grads = jax.value_and_grad(loss)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    return step


def reference_mlp(widths, tx):
    """Hand-written JAX + optax: ``init(key) -> (params, opt_state)`` and a pure
    ``step((params, opt_state), (x, y)) -> ((params, opt_state), loss)``."""

    def init(key):
        params = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            w = jax.nn.initializers.glorot_uniform()(jax.random.fold_in(key, i), (n_in, n_out))
            params.append({"w": w, "b": jnp.zeros((n_out,))})
        return params, tx.init(params)

    def loss(params, x, y):
        for layer in params[:-1]:
            x = jax.nn.relu(x @ layer["w"] + layer["b"])
        logits = x @ params[-1]["w"] + params[-1]["b"]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    return init, optax_step(loss, tx)


def fnn_mlp(widths):
    """The same MLP built from fnn layers."""
    return fnn.Sequential([fnn.Dense(n, "relu") for n in widths[1:-1]] + [fnn.Dense(widths[-1])])


# LeNet-like on 28x28x1 (61,706 params): conv 5x5x6 same, relu, max-pool 2,
# conv 5x5x16 valid, relu, max-pool 2, dense 120, 84, 10.
LENET_INPUT, LENET_BATCH = (28, 28, 1), 64


def reference_lenet(tx):
    """Hand-written LeNet: ``init(key) -> (params, opt_state)`` and a pure step, as for the MLP."""
    glorot = jax.nn.initializers.glorot_uniform()
    shapes = {"c1": (5, 5, 1, 6), "c2": (5, 5, 6, 16), "d1": (400, 120), "d2": (120, 84), "d3": (84, 10)}

    def init(key):
        params = {
            name: {"w": glorot(jax.random.fold_in(key, i), shape), "b": jnp.zeros((shape[-1],))}
            for i, (name, shape) in enumerate(shapes.items())
        }
        return params, tx.init(params)

    def conv(x, p, padding):
        y = jax.lax.conv_general_dilated(
            x, p["w"], (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jax.nn.relu(y + p["b"].reshape(1, 1, 1, -1))

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def loss(params, x, y):
        h = pool(conv(x, params["c1"], "SAME"))
        h = pool(conv(h, params["c2"], "VALID")).reshape(x.shape[0], -1)
        h = jax.nn.relu(h @ params["d1"]["w"] + params["d1"]["b"])
        h = jax.nn.relu(h @ params["d2"]["w"] + params["d2"]["b"])
        logits = h @ params["d3"]["w"] + params["d3"]["b"]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    return init, optax_step(loss, tx)


def fnn_lenet():
    return fnn.Sequential(
        [
            fnn.Conv2D(6, 5, padding="same", activation="relu"),
            fnn.MaxPool2D(2),
            fnn.Conv2D(16, 5, activation="relu"),
            fnn.MaxPool2D(2),
            fnn.Flatten(),
            fnn.Dense(120, "relu"),
            fnn.Dense(84, "relu"),
            fnn.Dense(10),
        ]
    )


def machine():
    return f"{platform.machine()}, {jax.default_backend()}, {jax.device_count()} device(s), jax {jax.__version__}"


def write_report(out: Path, name: str, results: dict, table: list[str]) -> None:
    """Writes ``name.json`` and ``name.md`` under ``out`` and prints the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


# LSTM(input 32, hidden 128) over 50 steps, last hidden state -> dense 10 (83,722 params).
LSTM_INPUT, LSTM_BATCH, LSTM_UNITS = (50, 32), 32, 128


def reference_lstm(tx):
    """Hand-written LSTM: one [x_t, h] @ W matmul per step inside lax.scan (Keras's gate order)."""
    features, units = LSTM_INPUT[1], LSTM_UNITS

    def init(key):
        k_w, k_d = jax.random.split(key)
        params = {
            "w": jax.nn.initializers.glorot_uniform()(k_w, (features + units, 4 * units)),
            "b": jnp.zeros((4 * units,)),
            "dense": {"w": jax.nn.initializers.glorot_uniform()(k_d, (units, 10)), "b": jnp.zeros((10,))},
        }
        return params, tx.init(params)

    def loss(params, x, y):
        def step(carry, x_t):
            h, c = carry
            z = jnp.concatenate([x_t, h], axis=-1) @ params["w"] + params["b"]
            i, f, g, o = jnp.split(z, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        zeros = jnp.zeros((x.shape[0], units))
        (h, _), _ = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(x, 0, 1))
        logits = h @ params["dense"]["w"] + params["dense"]["b"]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

    return init, optax_step(loss, tx)


def fnn_lstm():
    return fnn.Sequential([fnn.LSTM(LSTM_UNITS), fnn.Dense(10)])
