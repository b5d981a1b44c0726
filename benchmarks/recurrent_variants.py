"""Ways to write the LSTM's train step on XLA:CPU, and the loop cost underneath them.

The model is ``frameworks.py``'s "lstm" recurrence (LSTM(32 -> 128) over 50 steps,
batch 32); each variant is ``jit(grad)`` of ``mean(h_T ** 2)`` with respect to the
weights (the Adam update and the head are the same for all, so they are left out):

- ``scan``: autodiff of ``lax.scan`` over ``[x_t, h] @ W``, fnn's form; ``unroll`` 2,
  5 and 10 unroll the loop body that many times.
- ``input projection first``: ``x @ W_x`` for every step in one matmul before the
  loop, ``h @ W_h`` inside it.
- ``hand-written backward``: a ``custom_vjp`` that stores the gate activations,
  runs the backward loop with one ``(B, 4U) @ (4U, U)`` matmul a step and sums
  ``W``'s gradient in one ``(T*B, F+U)^T @ (T*B, 4U)`` matmul after the loop.

The loop floor: 50 steps of ``tanh((h @ A) @ B)`` with ``h`` (32, 128), ``A`` (128,
512), ``B`` (512, 128), forward only, as ``lax.scan`` and, where torch is
installed (``make bench``'s environment), as a PyTorch eager loop; and PyTorch's
``nn.LSTM`` forward and backward of the same shapes.

Run: python benchmarks/recurrent_variants.py [--rounds 9] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from _common import machine, timed_pair, write_report

B, T, F, U = 32, 50, 32, 128


def lstm_gates(z, c):
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def scan_lstm(w, b, xs, unroll=1):
    def step(carry, x_t):
        h, c = carry
        return lstm_gates(jnp.concatenate([x_t, h], -1) @ w + b, c), None

    zeros = jnp.zeros((xs.shape[1], U))
    return jax.lax.scan(step, (zeros, zeros), xs, unroll=unroll)[0][0]


def projected_lstm(w, b, xs):
    w_h = w[F:]

    def step(carry, zx_t):
        h, c = carry
        return lstm_gates(zx_t + h @ w_h, c), None

    zeros = jnp.zeros((xs.shape[1], U))
    return jax.lax.scan(step, (zeros, zeros), xs @ w[:F] + b)[0][0]


def _forward_saving(w, b, xs):
    def step(carry, x_t):
        h, c = carry
        i, f, g, o = jnp.split(jnp.concatenate([x_t, h], -1) @ w + b, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c_new = f * c + i * g
        return (o * jnp.tanh(c_new), c_new), (h, c, i, f, g, o, c_new)

    zeros = jnp.zeros((xs.shape[1], U))
    return jax.lax.scan(step, (zeros, zeros), xs)


@jax.custom_vjp
def hand_lstm(w, b, xs):
    return _forward_saving(w, b, xs)[0][0]


def _hand_fwd(w, b, xs):
    (h, _), saved = _forward_saving(w, b, xs)
    return h, (w, xs, saved)


def _hand_bwd(res, d_h):
    w, xs, (h_prev, c_prev, i, f, g, o, c) = res
    w_h_t = w[F:].T

    def step(carry, at_t):
        d_h, d_c = carry
        h_prev_t, c_prev_t, i_t, f_t, g_t, o_t, c_t = at_t
        tanh_c = jnp.tanh(c_t)
        d_c = d_c + d_h * o_t * (1 - tanh_c**2)
        d_z = jnp.concatenate(
            [
                d_c * g_t * i_t * (1 - i_t),
                d_c * c_prev_t * f_t * (1 - f_t),
                d_c * i_t * (1 - g_t**2),
                d_h * tanh_c * o_t * (1 - o_t),
            ],
            axis=-1,
        )
        return (d_z @ w_h_t, d_c * f_t), d_z

    _, d_zs = jax.lax.scan(step, (d_h, jnp.zeros_like(d_h)), (h_prev, c_prev, i, f, g, o, c), reverse=True)
    rows = jnp.concatenate([xs, h_prev], -1).reshape(-1, F + U)
    d_z2 = d_zs.reshape(-1, 4 * U)
    return rows.T @ d_z2, d_z2.sum(0), d_zs @ w[:F].T


hand_lstm.defvjp(_hand_fwd, _hand_bwd)


def torch_figures(rounds: int) -> dict | None:
    """PyTorch eager: the same GEMM loop, and nn.LSTM forward + backward; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    h0, a, b = torch.randn(B, U), 0.05 * torch.randn(U, 4 * U), 0.05 * torch.randn(4 * U, U)
    lstm = torch.nn.LSTM(F, U, batch_first=True)
    xs = torch.randn(B, T, F)

    def loop():
        h = h0
        for _ in range(T):
            h = torch.tanh((h @ a) @ b)
        return h

    def lstm_grad():
        lstm.zero_grad()
        (lstm(xs)[0][:, -1] ** 2).mean().backward()

    figures = {}
    for name, fn in (("loop", loop), ("lstm", lstm_grad)):
        fn()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(5):
                fn()
            times.append((time.perf_counter() - start) / 5)
        figures[name] = 1e3 * statistics.median(times)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    key = jax.random.key(0)
    w = jax.nn.initializers.glorot_uniform()(key, (F + U, 4 * U))
    b = jnp.zeros((4 * U,))
    xs = jax.random.normal(jax.random.fold_in(key, 1), (T, B, F))
    variants = {
        "scan": scan_lstm,
        "scan, unroll 2": lambda w, b, xs: scan_lstm(w, b, xs, 2),
        "scan, unroll 5": lambda w, b, xs: scan_lstm(w, b, xs, 5),
        "scan, unroll 10": lambda w, b, xs: scan_lstm(w, b, xs, 10),
        "input projection first": projected_lstm,
        "hand-written backward": hand_lstm,
    }
    grads = {
        name: jax.jit(jax.grad(lambda w, b, f=f: jnp.mean(f(w, b, xs) ** 2), argnums=(0, 1)))
        for name, f in variants.items()
    }
    got = timed_pair(grads, (w, b), args.rounds)
    a = 0.05 * jax.random.normal(jax.random.fold_in(key, 2), (U, 4 * U))
    bb = 0.05 * jax.random.normal(jax.random.fold_in(key, 3), (4 * U, U))
    loop = jax.jit(lambda h: jax.lax.scan(lambda h, _: (jnp.tanh((h @ a) @ bb), None), h, None, length=T)[0])
    floor = timed_pair({"scan": loop}, (jnp.ones((B, U)),), args.rounds)["scan"]
    torch = torch_figures(args.rounds)
    results = {"lstm_grad": got, "loop_floor": floor, "torch": torch}
    base = got["scan"]["ms"]
    table = [
        f"LSTM(32 -> 128) x 50 steps, batch 32: gradient of the weights, {machine()}. Median of "
        f"{args.rounds} rounds of 5 synced calls (first call, with its compile, in brackets).",
        "",
        "| variant | ms | vs `scan` |",
        "|---|---:|---:|",
        *(
            f"| {name} | {v['ms']:.2f} ({v['first_s']:.2f} s) | {v['ms'] / base:.2f} |"
            for name, v in got.items()
        ),
    ]
    if torch:
        table.append(f"| PyTorch eager `nn.LSTM` | {torch['lstm']:.2f} | {torch['lstm'] / base:.2f} |")
    table += [
        "",
        f"Loop floor, 50 steps of `tanh((h @ A) @ B)` forward: `lax.scan` {floor['ms']:.2f} ms"
        + (f", PyTorch eager loop {torch['loop']:.2f} ms." if torch else " (PyTorch not installed)."),
    ]
    write_report(args.out, "recurrent_variants", results, table)


if __name__ == "__main__":
    main()
