"""XLA:CPU's convolution and max pooling against alternatives written in JAX, per shape.

- Convolution: ``lax.conv_general_dilated`` against im2col by shifted slices
  (``kh * kw`` slices of the padded input, concatenated on the channel axis, then
  one GEMM with the reshaped kernel). Timed as ``jit(grad)`` of ``sum(tanh(conv))``
  with respect to the kernel only (a first layer: nobody asks for the data's
  gradient) and with respect to both (a layer inside a network).
- Max pooling 2x2: ``lax.reduce_window`` (gradient: ``select_and_scatter``)
  against fnn's reshape path (``fnn.MaxPool2D`` for non-overlapping windows),
  forward and gradient.

Each figure is the median of ``--rounds`` rounds of 5 synced calls, the variants
interleaved; the first call (trace and compile) is reported too.

Run: python benchmarks/conv_cpu.py [--rounds 9] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
from _common import machine, timed_pair, write_report

import fnn

SHAPES = [  # batch, height = width, in channels, out channels, kernel, padding
    (64, 28, 1, 6, 5, "SAME"),  # the LeNet's first layer
    (64, 14, 6, 16, 5, "VALID"),  # its second
    (64, 32, 3, 32, 3, "SAME"),
    (64, 32, 3, 16, 5, "SAME"),
    (64, 28, 4, 8, 3, "SAME"),
    (64, 32, 32, 32, 3, "SAME"),
    (64, 16, 64, 64, 3, "SAME"),
    (32, 8, 128, 128, 3, "SAME"),
]


def conv_xla(x, w, padding):
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_slices(x, w, padding):
    kh, kw, c, o = w.shape
    if padding == "SAME":
        x = jnp.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    h, wd = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    patches = jnp.concatenate([x[:, i : i + h, j : j + wd, :] for i in range(kh) for j in range(kw)], axis=-1)
    return patches @ w.reshape(kh * kw * c, o)


def pool_reduce_window(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def pool_fnn(x):
    return fnn.MaxPool2D(2).apply({}, {}, x, train=False)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results: dict = {"conv": [], "pool": []}
    table = [
        f"XLA:CPU convolution and max pooling against JAX alternatives; {machine()}. Median of {args.rounds} "
        "rounds of 5 synced calls (first call, with its compile, in brackets). Ratio < 1: the alternative is faster.",
        "",
        "| conv (batch, size, in -> out, kernel, padding) | gradient of | XLA conv ms | shifted slices + GEMM ms | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for batch, size, cin, cout, k, pad in SHAPES:
        x = jax.random.normal(jax.random.key(0), (batch, size, size, cin))
        w = 0.1 * jax.random.normal(jax.random.key(1), (k, k, cin, cout))
        for wrt, argnums in (("kernel", (1,)), ("kernel and input", (0, 1))):
            fns = {
                name: jax.jit(jax.grad(lambda x, w, c=conv: jnp.sum(jnp.tanh(c(x, w, pad))), argnums=argnums))
                for name, conv in (("xla", conv_xla), ("slices", conv_slices))
            }
            got = timed_pair(fns, (x, w), args.rounds)
            shape = f"{batch}, {size}x{size}, {cin} -> {cout}, {k}x{k}, {pad}"
            results["conv"].append({"shape": shape, "wrt": wrt, **got})
            table.append(
                f"| {shape} | {wrt} | {got['xla']['ms']:.2f} ({got['xla']['first_s']:.2f} s) | "
                f"{got['slices']['ms']:.2f} ({got['slices']['first_s']:.2f} s) | "
                f"{got['slices']['ms'] / got['xla']['ms']:.2f} |"
            )
            print(table[-1], flush=True)
    table += [
        "",
        "| max pool 2x2 input | reduce_window: forward ms | fnn: forward ms | reduce_window: gradient ms | fnn: gradient ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for shape in ((64, 28, 28, 6), (64, 10, 10, 16), (64, 32, 32, 32), (32, 16, 16, 128)):
        x = jax.random.normal(jax.random.key(2), shape)
        forward = timed_pair(
            {"xla": jax.jit(pool_reduce_window), "fnn": jax.jit(pool_fnn)}, (x,), args.rounds
        )
        grads = {
            name: jax.jit(jax.grad(lambda x, p=pool: jnp.sum(jnp.tanh(p(x)))))
            for name, pool in (("xla", pool_reduce_window), ("fnn", pool_fnn))
        }
        backward = timed_pair(grads, (x,), args.rounds)
        results["pool"].append({"shape": shape, "forward": forward, "gradient": backward})
        table.append(
            f"| {shape} | {forward['xla']['ms']:.3f} | {forward['fnn']['ms']:.3f} | "
            f"{backward['xla']['ms']:.3f} | {backward['fnn']['ms']:.3f} |"
        )
        print(table[-1], flush=True)
    write_report(args.out, "conv_cpu", results, table)


if __name__ == "__main__":
    main()
