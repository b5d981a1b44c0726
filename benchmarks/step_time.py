"""fnn's jitted train step against a hand-written JAX + optax step of the same model.

Both steps are jitted with donated params and optimiser state, run on the same
on-device batch, and timed in alternating rounds so machine noise hits both
alike. Reports medians and ratios (fnn / reference) as JSON and Markdown.

Run: python benchmarks/step_time.py [--rounds 7] [--steps 200] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import (
    LENET_BATCH,
    LENET_INPUT,
    LSTM_BATCH,
    LSTM_INPUT,
    MODELS,
    fnn_lenet,
    fnn_lstm,
    fnn_mlp,
    machine,
    reference_lenet,
    reference_lstm,
    reference_mlp,
    write_report,
)

import fnn


def models():
    """name -> (hand-written (init, step) builder, fnn model, per-example input shape, classes, batch)."""
    table = {
        name: (lambda tx, w=widths: reference_mlp(w, tx), fnn_mlp(widths), (widths[0],), widths[-1], batch)
        for name, (widths, batch) in MODELS.items()
    }
    table["cnn"] = (reference_lenet, fnn_lenet(), LENET_INPUT, 10, LENET_BATCH)
    table["lstm"] = (reference_lstm, fnn_lstm(), LSTM_INPUT, 10, LSTM_BATCH)
    return table


def reference_step(build, tx):
    """Hand-written: pure functions, one jitted step, donated buffers."""
    init, step = build(tx)
    run = jax.jit(step, donate_argnums=0)
    carry = [init(jax.random.key(0))]

    def call(x, y):
        carry[0], value = run(carry[0], (x, y))
        return value

    return call


def fnn_step(model, input_shape, tx):
    params, state = model.init(jax.random.key(0), input_shape)
    run = jax.jit(fnn.make_train_step(model, "sparse_categorical_crossentropy", tx), donate_argnums=(0, 2))
    carry = [params, state, tx.init(params)]

    def call(x, y):
        carry[0], carry[1], carry[2], logs = run(carry[0], carry[1], carry[2], (x, y), None)
        return logs["loss"]

    return call


def measure(call, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        value = call(x, y)
    value.block_until_ready()
    return (time.perf_counter() - start) / steps


def bench(name, rounds, steps):
    build, model, input_shape, classes, batch = models()[name]
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, *input_shape)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(1).integers(0, classes, batch), jnp.int32)
    tx = optax.adam(1e-3)
    runners = {"jax": reference_step(build, tx), "fnn": fnn_step(model, input_shape, tx)}
    first = {}
    for label, call in runners.items():
        start = time.perf_counter()
        call(x, y).block_until_ready()
        first[label] = time.perf_counter() - start
    times = {label: [] for label in runners}
    for _ in range(rounds):
        for label, call in runners.items():
            times[label].append(measure(call, x, y, steps))
    med = {label: statistics.median(t) for label, t in times.items()}
    return {
        "model": name,
        "batch": batch,
        "step_ms": {k: 1e3 * v for k, v in med.items()},
        "first_step_s": first,
        "step_ratio": med["fnn"] / med["jax"],
        "first_step_ratio": first["fnn"] / first["jax"],
        "samples_per_s": {k: batch / v for k, v in med.items()},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--models", nargs="*", default=["tiny", "mlp", "cnn", "lstm"])
    args = parser.parse_args()
    results = {
        "machine": machine(),
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "models": [bench(name, args.rounds, args.steps) for name in args.models],
    }
    lines = [
        "| model | jax step (ms) | fnn step (ms) | step ratio fnn/jax | first-step ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results["models"]:
        lines.append(
            f"| {r['model']} | {r['step_ms']['jax']:.3f} | {r['step_ms']['fnn']:.3f} | "
            f"{r['step_ratio']:.3f} | {r['first_step_ratio']:.2f} |"
        )
    write_report(args.out, "step_time", results, lines)


if __name__ == "__main__":
    main()
