"""A multi-tensor ("fused") Adam over one flattened parameter vector against ``optax.adam``.

The MLP of ``frameworks.py`` (784-256-256-10, batch 128) takes jitted train steps
(gradient, optimizer update, ``optax.apply_updates``) with each optimizer.
``flat adam`` keeps its moments as single vectors, ravels the gradient with
``jax.flatten_util.ravel_pytree`` and unravels the update: one elementwise pass
instead of one per array, paid for with a concatenation and a split per step.
Reported: the median step time, interleaved, and whether the parameters after
5 steps are bitwise equal to optax's.

Run: python benchmarks/fused_optimizer.py [--rounds 15] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from _common import machine, timed_pair, write_report
from jax.flatten_util import ravel_pytree

WIDTHS = (784, 256, 256, 10)


def flat_adam(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8) -> optax.GradientTransformation:
    def init(params):
        flat = ravel_pytree(params)[0]
        return jnp.zeros_like(flat), jnp.zeros_like(flat), jnp.zeros([], jnp.int32)

    def update(grads, state, params=None):
        del params
        mu, nu, count = state
        flat, unravel = ravel_pytree(grads)
        count = count + 1
        mu = (1 - b1) * flat + b1 * mu
        nu = (1 - b2) * flat * flat + b2 * nu
        step = count.astype(jnp.float32)
        mu_hat, nu_hat = mu / (1 - b1**step), nu / (1 - b2**step)
        return unravel(-lr * mu_hat / (jnp.sqrt(nu_hat) + eps)), (mu, nu, count)

    return optax.GradientTransformation(init, update)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    key = jax.random.key(0)
    params = [
        {"w": jax.nn.initializers.glorot_uniform()(jax.random.fold_in(key, i), (a, b)), "b": jnp.zeros((b,))}
        for i, (a, b) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:]))
    ]
    x = jax.random.normal(key, (128, WIDTHS[0]))
    y = jax.random.randint(key, (128,), 0, WIDTHS[-1])

    def loss(params):
        h = x
        for i, layer in enumerate(params):
            h = h @ layer["w"] + layer["b"][None, :]
            h = jax.nn.relu(h) if i < len(params) - 1 else h
        return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()

    def steps(tx):
        @jax.jit
        def step(state):
            params, opt_state = state
            updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        return step, (params, tx.init(params))

    runs = {"optax.adam": steps(optax.adam(1e-3)), "flat adam": steps(flat_adam(1e-3))}
    after = {}
    for name, (step, state) in runs.items():
        for _ in range(5):
            state = step(state)
        after[name] = state[0]
    bitwise = all(bool((a == b).all()) for a, b in zip(*(jax.tree.leaves(p) for p in after.values())))
    fns = {name: lambda step=step, state=state: step(state) for name, (step, state) in runs.items()}
    got = timed_pair(fns, (), args.rounds)
    ratio = got["flat adam"]["ms"] / got["optax.adam"]["ms"]
    table = [
        f"MLP 784-256-256-10 train step, batch 128, {machine()}; median of {args.rounds} rounds of 5 synced steps.",
        "",
        "| optimizer | step ms | vs optax.adam |",
        "|---|---:|---:|",
        *(f"| {name} | {v['ms']:.3f} | {v['ms'] / got['optax.adam']['ms']:.2f} |" for name, v in got.items()),
        "",
        f"Parameters after 5 steps bitwise equal to optax's: {bitwise}.",
    ]
    write_report(args.out, "fused_optimizer", {"steps": got, "ratio": ratio, "bitwise": bitwise}, table)


if __name__ == "__main__":
    main()
