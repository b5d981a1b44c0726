"""Compile time of a deep Transformer: N decoder blocks in a Sequential against ``fnn.Repeat``.

The model: Embedding(256, 64) -> N x TransformerDecoderBlock(4 heads, MLP 128, RoPE,
SwiGLU) -> Dense(256), tokens (8, 32). For N in ``--depths``, the train step
(``jax.value_and_grad`` of the cross-entropy, an Adam update) is traced, lowered
and compiled once with the N blocks written out (``Sequential``) and once stacked
and scanned (``Repeat``, with and without remat); also reported: the step time
(median of ``--rounds`` rounds of 5 steps). One process, a small warm-up model first.

Run: python benchmarks/scan_layers.py [--depths 2 8 32] [--rounds 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from _common import machine, write_report

import fnn

VOCAB, FEATURES, BATCH, TIME = 256, 64, 8, 32


def model(depth: int, way: str) -> fnn.Layer:
    block = fnn.TransformerDecoderBlock(4, 128)
    if way == "Sequential":
        body = fnn.Sequential([block] * depth)
    else:
        body = fnn.Repeat(block, depth, remat=way == "Repeat, remat")
    return fnn.Sequential([fnn.Embedding(VOCAB, FEATURES), body, fnn.Dense(VOCAB)])


def measure(depth: int, way: str, rounds: int) -> dict:
    net = model(depth, way)
    params, state = net.init(jax.random.key(0), fnn.Shape((TIME,), jnp.int32))
    tx = optax.adam(1e-3)
    tokens = jax.random.randint(jax.random.key(1), (BATCH, TIME + 1), 0, VOCAB)

    def loss(p, x, y):
        logits = net.apply(p, state, x, train=False)[0]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(p, o, x, y):
        value, grads = jax.value_and_grad(loss)(p, x, y)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, value

    args = (params, tx.init(params), tokens[:, :-1], tokens[:, 1:])
    start = time.perf_counter()
    lowered = step.lower(*args)
    traced = time.perf_counter() - start
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start - traced
    p, o, value = compiled(*args)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(5):
            p, o, value = compiled(p, o, *args[2:])
        value.block_until_ready()
        times.append((time.perf_counter() - start) / 5)
    return {"trace_lower_s": traced, "compile_s": compile_s, "step_ms": 1e3 * statistics.median(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    measure(1, "Repeat", 1)  # warm-up: JAX's own first-use costs
    ways = ("Sequential", "Repeat", "Repeat, remat")
    results = {way: {str(d): measure(d, way, args.rounds) for d in args.depths} for way in ways}
    table = [
        f"Train step of Embedding -> N decoder blocks (4 heads, 64 features, MLP 128) -> Dense, tokens "
        f"({BATCH}, {TIME}), Adam; {machine()}.",
        "",
        "| blocks | way | trace + lower s | compile s | step ms |",
        "|---:|---|---:|---:|---:|",
    ]
    for d in args.depths:
        for way in ways:
            r = results[way][str(d)]
            table.append(
                f"| {d} | `{way}` | {r['trace_lower_s']:.2f} | {r['compile_s']:.2f} | {r['step_ms']:.2f} |"
            )
    write_report(args.out, "scan_layers", results, table)


if __name__ == "__main__":
    main()
