"""fnn.fit (fused and unfused) against hand-written JAX + optax training loops.

Models: tiny MLP 32-64-10 (batch 32) and MLP 784-256-256-10 (batch 128), Adam
1e-3, softmax cross-entropy, 12,800 synthetic samples held on the host.

- jax loop: a jitted, donating step called from Python; each epoch shuffles on
  the host and feeds every batch (the usual hand-written loop).
- jax scan: the data on the device once; each epoch one jitted lax.scan over
  the shuffled batches (the fastest hand-written form for small models).
- fnn fit: steps_per_execution=1 (unfused), the whole epoch (fused), and "auto".

Every variant runs in each round, one after another; each round trains a fresh
model for several epochs and the first (compiling) epoch is dropped. Medians
over rounds and epochs; ratios are to the hand-written Python loop.

Run: python benchmarks/fit_overhead.py [--rounds 3] [--epochs 4] [--out benchmarks/results]
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
from _common import MODELS, fnn_mlp, machine, reference_mlp, write_report

import fnn

SAMPLES = 12_800


def synthetic(widths):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((SAMPLES, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], SAMPLES).astype(np.int32)
    return x, y


def reference(widths):
    return reference_mlp(widths, optax.adam(1e-3))


def time_jax_loop(widths, batch, epochs):
    init, step = reference(widths)
    x, y = synthetic(widths)
    run = jax.jit(step, donate_argnums=0)
    carry, times = init(jax.random.key(0)), []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = np.random.default_rng([0, epoch]).permutation(SAMPLES)
        for i in range(0, SAMPLES, batch):
            rows = order[i : i + batch]
            carry, value = run(carry, (jax.device_put(x[rows]), jax.device_put(y[rows])))
        value.block_until_ready()
        times.append(time.perf_counter() - start)
    return times[1:]


def time_jax_scan(widths, batch, epochs):
    init, step = reference(widths)
    x, y = synthetic(widths)
    data = jax.device_put((x, y))

    def epoch_fn(carry, data, rows):
        return jax.lax.scan(lambda c, r: step(c, (data[0][r], data[1][r])), carry, rows)

    run = jax.jit(epoch_fn, donate_argnums=0)
    carry, times = init(jax.random.key(0)), []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = np.random.default_rng([0, epoch]).permutation(SAMPLES).astype(np.int32)
        carry, values = run(carry, data, jnp.asarray(order.reshape(-1, batch)))
        values.block_until_ready()
        times.append(time.perf_counter() - start)
    return times[1:]


class EpochTimer(fnn.Callback):
    def on_train_begin(self, run):
        self.times, self.last = [], time.perf_counter()

    def on_epoch_end(self, epoch, logs, run):
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now


def time_fnn(widths, batch, epochs, steps_per_execution):
    x, y = synthetic(widths)
    model = fnn_mlp(widths)
    timer = EpochTimer()
    history = fnn.fit(
        model, x, y, loss="sparse_categorical_crossentropy", optimizer="adam", epochs=epochs,
        batch_size=batch, verbose=0, callbacks=[timer], steps_per_execution=steps_per_execution,
    )  # fmt: skip
    time_fnn.last_steps_per_execution = history.steps_per_execution
    return timer.times[1:]


VARIANTS = {
    "jax loop": time_jax_loop,
    "jax scan": time_jax_scan,
    "fnn fit unfused": lambda w, b, e: time_fnn(w, b, e, 1),
    "fnn fit fused": lambda w, b, e: time_fnn(w, b, e, SAMPLES // b),
    "fnn fit auto": lambda w, b, e: time_fnn(w, b, e, "auto"),
}


def bench(name, rounds, epochs):
    widths, batch = MODELS[name]
    times = {label: [] for label in VARIANTS}
    auto_choice = None
    for _ in range(rounds):
        for label, fn in VARIANTS.items():
            times[label] += fn(widths, batch, epochs)
            if label == "fnn fit auto":
                auto_choice = time_fnn.last_steps_per_execution
    steps = SAMPLES // batch
    med = {label: statistics.median(t) for label, t in times.items()}
    return {
        "model": name,
        "batch": batch,
        "steps_per_epoch": steps,
        "auto_steps_per_execution": auto_choice,
        "samples_per_s": {k: SAMPLES / v for k, v in med.items()},
        "step_us": {k: 1e6 * v / steps for k, v in med.items()},
        "ratio_to_jax_loop": {k: med["jax loop"] / v for k, v in med.items()},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is dropped")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    results = {
        "machine": machine(),
        "fnn_cpu_fuse_max_flops": fnn.train.CPU_FUSE_MAX_FLOPS,
        "rounds": args.rounds,
        "epochs_timed_per_round": args.epochs - 1,
        "models": [bench(name, args.rounds, args.epochs) for name in args.models],
    }
    lines = ["| model | variant | samples/s | µs/step | × jax loop |", "|---|---|---:|---:|---:|"]
    for r in results["models"]:
        for label in VARIANTS:
            lines.append(
                f"| {r['model']} | {label} | {r['samples_per_s'][label]:,.0f} | "
                f"{r['step_us'][label]:.1f} | {r['ratio_to_jax_loop'][label]:.2f} |"
            )
        lines.append(
            f"| {r['model']} | (auto chose steps_per_execution={r['auto_steps_per_execution']}) | | | |"
        )
    write_report(args.out, "fit_overhead", results, lines)


if __name__ == "__main__":
    main()
