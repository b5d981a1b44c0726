"""fnn's LSTM train step against the hand-written JAX one: compile time and steady step time.

The model is ``frameworks.py``'s "lstm" (LSTM(in 32, hidden 128) over 50 steps, the
last hidden state -> Dense 10, batch 32, Adam, sparse softmax cross-entropy), built
by ``setup_jax("lstm")`` (the reference) and ``setup_fnn("lstm")``.

- Compile: in a fresh process per run (no compilation cache), the train step's
  ``jit(...).lower(*args)`` and ``.compile()`` are timed on its first call;
  ``--repeats`` processes per variant, run interleaved, and the median is reported.
- Step: one process holds both the reference and fnn and times ``--rounds`` rounds
  of synced steps, alternating which goes first; the medians of the per-step times
  and of the per-round fnn/reference ratios are reported.

``--before DIR`` adds "fnn before": the same measures with the ``fnn`` package
found in ``DIR`` (e.g. ``git archive HEAD fnn | tar -x -C /tmp/fnn_before``), so a
change is compared with the code it replaces on the same machine in the same run.

Run: python benchmarks/recurrent_compile.py [--before /tmp/fnn_before] [--repeats 3]
     [--rounds 21] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class _Timed:
    """A jitted function lowered and compiled explicitly (and timed) on its first call."""

    events: list = []

    def __init__(self, jitted):
        self.jitted, self.compiled = jitted, None

    def __call__(self, *args):
        if self.compiled is None:
            start, cpu = time.perf_counter(), time.process_time()
            lowered = self.jitted.lower(*args)
            lowered_at = time.perf_counter()
            self.compiled = lowered.compile()
            now = time.perf_counter()
            _Timed.events.append((lowered_at - start, now - lowered_at, time.process_time() - cpu))
        return self.compiled(*args)


def _setup(variant: str, timed: bool):
    import jax
    from frameworks import setup_fnn, setup_jax

    real_jit = jax.jit
    if timed:  # both train steps are the jits that donate (their carry); others run as they are
        jax.jit = lambda *args, **kwargs: (_Timed if "donate_argnums" in kwargs else lambda f: f)(
            real_jit(*args, **kwargs)
        )
    try:
        return (setup_jax if variant == "jax" else setup_fnn)("lstm")
    finally:
        jax.jit = real_jit


def _batch(bench):
    from frameworks import MODELS, data

    x, y = data("lstm")
    batch = MODELS["lstm"][1]
    return bench.put(x[:batch], y[:batch])


def work_compile(variant: str) -> dict:
    """Sets up one variant and times the lowering and compiling of its train step."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    bench = _setup(variant, timed=True)
    batch = _batch(bench)
    _Timed.events.clear()
    loss = float(bench.sync(bench.step(batch)))
    (lower_s, compile_s, cpu_s), *_ = _Timed.events
    total_s = lower_s + compile_s
    return {
        "lower_s": lower_s,
        "compile_s": compile_s,
        "total_s": total_s,
        "cpu_s": cpu_s,
        "first_loss": loss,
    }


def work_steady(rounds: int) -> dict:
    """Both variants in one process, timed in alternating rounds of synced steps."""
    benches = {v: _setup(v, timed=False) for v in ("jax", "fnn")}
    batches = {v: _batch(b) for v, b in benches.items()}

    def timed(variant, n):
        bench, batch = benches[variant], batches[variant]
        start = time.perf_counter()
        for _ in range(n):
            value = bench.step(batch)
        bench.sync(value)
        return (time.perf_counter() - start) / n

    for v in benches:
        timed(v, 3)  # compile, warm up
    n = max(3, round(0.3 / timed("jax", 5)))  # about 0.3 s a round
    per_step = {v: [] for v in benches}
    for r in range(rounds):
        for v in ("jax", "fnn") if r % 2 == 0 else ("fnn", "jax"):
            per_step[v].append(timed(v, n))
    ratios = [f / j for f, j in zip(per_step["fnn"], per_step["jax"])]
    return {
        "steps_per_round": n,
        "jax_step_ms": 1e3 * statistics.median(per_step["jax"]),
        "fnn_step_ms": 1e3 * statistics.median(per_step["fnn"]),
        "fnn_over_jax": statistics.median(ratios),
    }


def _worker(args: list[str], fnn_dir: str | None) -> dict:
    env = dict(os.environ)
    if fnn_dir:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [fnn_dir, env.get("PYTHONPATH")]))
    command = [sys.executable, __file__, "--worker", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a folder holding the fnn package to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import fnn

        kind, *rest = args.worker
        result = work_compile(rest[0]) if kind == "compile" else work_steady(int(rest[0]))
        print(json.dumps({**result, "fnn": str(Path(fnn.__file__).parent)}))
        return

    from _common import machine

    variants = {"jax": ("jax", None), "fnn": ("fnn", None)}
    if args.before:
        variants["fnn before"] = ("fnn", str(args.before.resolve()))
    compiles = {v: [] for v in variants}
    for _ in range(args.repeats):  # interleaved: a slow spell of the machine hits every variant
        for v, (setup, fnn_dir) in variants.items():
            compiles[v].append(_worker(["compile", setup], fnn_dir))
    steady = {"fnn": _worker(["steady", str(args.rounds)], None)}
    if args.before:
        steady["fnn before"] = _worker(["steady", str(args.rounds)], variants["fnn before"][1])

    results = {"machine": machine(), "compile": compiles, "steady": steady}
    med = {v: statistics.median(r["total_s"] for r in runs) for v, runs in compiles.items()}
    table = [
        f"LSTM(32 -> 128) x 50 steps -> Dense 10, batch 32, Adam; {machine()}.",
        f"Compile: lower + compile of the train step, median of {args.repeats} fresh processes.",
        f"Step: median synced step time, {args.rounds} interleaved rounds against the reference in one process.",
        "",
        "| variant | lower + compile (s) | vs reference | step (ms) | reference step (ms) | step vs reference |",
        "|---|---:|---:|---:|---:|---:|",
        f"| hand-written JAX (reference) | {med['jax']:.3f} | 1.00 | | | 1.00 |",
    ]
    for v in [v for v in variants if v != "jax"][::-1]:
        s = steady[v]
        table.append(
            f"| {v} | {med[v]:.3f} | {med[v] / med['jax']:.2f} | {s['fnn_step_ms']:.2f} | "
            f"{s['jax_step_ms']:.2f} | {s['fnn_over_jax']:.3f} |"
        )
    losses = {v: runs[0]["first_loss"] for v, runs in compiles.items()}
    table += ["", "First-step loss: " + ", ".join(f"{v} {loss:.6f}" for v, loss in losses.items())]
    results["summary"] = {"compile_s": med, "first_loss": losses}
    from _common import write_report

    write_report(args.out, "recurrent_compile", results, table)


if __name__ == "__main__":
    main()
