"""The speed suite: fnn against hand-written JAX and the peers, every (framework, model)
pair in its own fresh subprocess, one after another.

Per pair it measures the framework's import time, the time to the first step
(model construction, init, trace, compile and one synced step), the steady-state
step time on one on-device batch (median and p10-p90 over rounds), and
samples/s of whole epochs over 12,800 host-side samples in the framework's own
way (fnn ``fit``, Keras ``fit``, a host-shuffled Python loop). For the MLP it
converts the step time to GFLOP/s of executed GEMM work and compares it with the
float32 matmul peak measured in the same run. A peer that is not installed is
reported as skipped. Ratios are to the hand-written JAX + optax reference.

Run:
    pip install -e '.[bench]'
    python benchmarks/run.py [--frameworks fnn jax ...] [--models tiny mlp cnn lstm]
                             [--sweeps 1] [--quick] [--out benchmarks]

Writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from frameworks import FRAMEWORKS, MODELS, SAMPLES, WIDTHS, data, mlp_gemm_flops

HERE = Path(__file__).resolve().parent
CHANNELS_FIRST = {"equinox", "torch"}
TARGETS = {
    "step": 1.05,
    "first_step": 1.2,
    "keras_fit": {"tiny": 3.0, "mlp": 1.5},
    "peak": 0.85,
    "import": 1.2,
}


# --- the worker: one (framework, model) pair in a fresh process ---------------------------


def _spread(values):
    return {
        "median": statistics.median(values),
        "p10": float(np.percentile(values, 10)),
        "p90": float(np.percentile(values, 90)),
    }


def work(framework, model, rounds, epochs, round_s):
    # `import jax` first (not for torch), so the ratio to it comes from the same process.
    start = time.perf_counter()
    if framework != "torch":
        importlib.import_module("jax")
    jax_import_s = time.perf_counter() - start
    for module in FRAMEWORKS[framework][1]:
        importlib.import_module(module)
    import_s = time.perf_counter() - start

    shape, batch, _ = MODELS[model]
    x, y = data(model, channels_first=framework in CHANNELS_FIRST)
    start = time.perf_counter()
    bench = FRAMEWORKS[framework][2](model)
    one = bench.put(x[:batch], y[:batch])
    bench.sync(bench.step(one))
    first_step_s = time.perf_counter() - start

    def timed(n):
        start = time.perf_counter()
        for _ in range(n):
            value = bench.step(one)
        bench.sync(value)
        return (time.perf_counter() - start) / n

    timed(3)
    per_round = int(np.clip(round(round_s / timed(5)), 3, 2000))
    step_s = [timed(per_round) for _ in range(rounds)]

    used = SAMPLES // batch * batch
    runners = {"loop": bench.loop_epochs, **bench.epochs}
    epoch_sps = {}
    for name, run in runners.items():
        times = run(x, y, batch, epochs + 1)[1:]  # the first epoch compiles
        epoch_sps[name] = used / statistics.median(times)
    result = {
        "framework": framework,
        "model": model,
        "batch": batch,
        "params": bench.params,
        "import_s": import_s,
        "import_ratio_to_jax": import_s / jax_import_s if framework != "torch" else None,
        "first_step_s": first_step_s,
        "steps_per_round": per_round,
        "step_ms": {k: 1e3 * v for k, v in _spread(step_s).items()},
        "epoch_samples_per_s": epoch_sps,
    }
    if model in WIDTHS:
        result["step_gflops"] = mlp_gemm_flops(WIDTHS[model], batch) / statistics.median(step_s) / 1e9
        result["epoch_gflops"] = {
            k: mlp_gemm_flops(WIDTHS[model], 1) * v / 1e9 for k, v in epoch_sps.items()
        }  # flops per sample x samples/s
    return result


def work_peak(rounds):
    """The float32 (and bfloat16) matmul peak XLA reaches on this machine: 2048x2048 GEMMs."""
    import jax
    import jax.numpy as jnp

    n, out = 2048, {"device": str(jax.devices()[0].device_kind), "backend": jax.default_backend()}
    for dtype in (jnp.float32, jnp.bfloat16):
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), dtype)
        matmul = jax.jit(lambda a, b: a @ b)
        matmul(a, b).block_until_ready()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(5):
                c = matmul(a, b)
            c.block_until_ready()
            times.append((time.perf_counter() - start) / 5)
        out[f"{jnp.dtype(dtype).name}_gflops"] = 2 * n**3 / statistics.median(times) / 1e9
    return out


# --- the driver ----------------------------------------------------------------------------


def installed(framework):
    return all(importlib.util.find_spec(m.split(".")[0]) is not None for m in FRAMEWORKS[framework][1])


def spawn(args, timeout):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(HERE)}
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / "run.py"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"error": f"exit {proc.returncode}: " + proc.stderr.strip()[-2000:]}
    return json.loads(lines[-1])


def run_pair(framework, model, args):
    if not installed(framework):
        return {"framework": framework, "model": model, "skipped": "not installed"}
    result = spawn(
        ["--worker", framework, model, "--rounds", str(args.rounds), "--epochs", str(args.epochs),
         "--round-s", str(args.round_s)],
        args.timeout,
    )  # fmt: skip
    result.update(framework=framework, model=model)
    expected = MODELS[model][2]
    if "params" in result and result["params"] != expected:
        result = {**result, "error": f"{result['params']:,} trainable parameters, expected {expected:,}"}
    status = result.get("error") or result.get("skipped") or f"step {result['step_ms']['median']:.3f} ms"
    print(f"  {framework:>10} {model:<5} {status}", file=sys.stderr, flush=True)
    return result


def median_of_sweeps(sweeps):
    """One result per pair: the median of each figure over the sweeps that measured it."""
    merged = []
    for results in zip(*sweeps):
        ok = [r for r in results if "step_ms" in r]
        merged.append(_median_tree(ok) if ok else results[0])
    return merged


def _median_tree(items):
    first = items[0]
    if isinstance(first, dict):
        return {k: _median_tree([i[k] for i in items]) for k in first}
    if isinstance(first, float):
        return statistics.median(items)
    return first


# --- the report ----------------------------------------------------------------------------


def _ratio(value, reference):
    return f"{value / reference:.2f}" if reference else "—"


def report(results, peak, meta):
    by = {(r["framework"], r["model"]): r for r in results}
    models = list(dict.fromkeys(r["model"] for r in results))
    frameworks = list(dict.fromkeys(r["framework"] for r in results))

    def missing(fw, model):
        """What stands in a table cell for a pair with no figure."""
        r = by.get((fw, model), {})
        return "skipped" if "skipped" in r else "error" if "error" in r else "—"

    head = "| framework | " + " | ".join(models) + " |"
    rule = "|---|" + "---:|" * len(models)
    lines = [f"Machine: {meta['machine']}. {meta['when']}. Command: `{meta['command']}`.", ""]

    lines += ["## Step time relative to hand-written JAX (lower is better)", "", head, rule]
    for fw in frameworks:
        row = []
        for m in models:
            r = by.get((fw, m), {})
            if "step_ms" in r:
                s = r["step_ms"]
                ref = by.get(("jax", m), {}).get("step_ms")
                ratio = f"{s['median'] / ref['median']:.2f} " if ref else ""
                row.append(f"{ratio}({s['median']:.3f} ms, p10-p90 {s['p10']:.3f}-{s['p90']:.3f})")
            else:
                row.append(missing(fw, m))
        lines.append(f"| {FRAMEWORKS[fw][0]} | " + " | ".join(row) + " |")

    lines += ["", "## Time to first step, seconds (ratio to hand-written JAX)", "", head, rule]
    for fw in frameworks:
        row = []
        for m in models:
            r, ref = by.get((fw, m), {}), by.get(("jax", m), {})
            if "first_step_s" in r:
                row.append(f"{r['first_step_s']:.2f} ({_ratio(r['first_step_s'], ref.get('first_step_s'))})")
            else:
                row.append(missing(fw, m))
        lines.append(f"| {FRAMEWORKS[fw][0]} | " + " | ".join(row) + " |")

    lines += [
        "",
        f"## Epoch throughput: samples/s over {SAMPLES:,} host-side samples (ratio to the JAX Python loop)",
        "",
        head,
        rule,
    ]
    for fw in frameworks:
        variants = next(
            (r["epoch_samples_per_s"] for r in results if r["framework"] == fw and "step_ms" in r), {}
        )
        for variant in variants or [None]:
            row = []
            for m in models:
                r, ref = by.get((fw, m), {}), by.get(("jax", m), {})
                sps = r.get("epoch_samples_per_s", {}).get(variant)
                if sps is None:
                    row.append(missing(fw, m))
                    continue
                loop = ref.get("epoch_samples_per_s", {}).get("loop")
                row.append(f"{sps:,.0f} ({_ratio(sps, loop)})")
            label = FRAMEWORKS[fw][0] + (f" `{variant}`" if variant else "")
            lines.append(f"| {label} | " + " | ".join(row) + " |")

    if "mlp" in models:
        f32 = peak.get("float32_gflops")
        lines += [
            "",
            f"## MLP GEMM work against the float32 matmul peak ({f32:.0f} GFLOP/s, 2048² GEMM)"
            if f32
            else "",
            "",
            "| framework | step GFLOP/s | % of peak | best epoch GFLOP/s | % of peak |",
            "|---|---:|---:|---:|---:|",
        ]
        for fw in frameworks:
            r = by.get((fw, "mlp"), {})
            if "step_gflops" not in r or not f32:
                continue
            name, best = max(r["epoch_gflops"].items(), key=lambda kv: kv[1])
            lines.append(
                f"| {FRAMEWORKS[fw][0]} | {r['step_gflops']:.1f} | {100 * r['step_gflops'] / f32:.0f}% | "
                f"{best:.1f} (`{name}`) | {100 * best / f32:.0f}% |"
            )

    lines += ["", "## Import time in a fresh process (ratio to `import jax` timed in the same process)", ""]
    lines += ["| framework | import s | ratio |", "|---|---:|---:|"]
    for fw in frameworks:
        times = [r["import_s"] for r in results if r["framework"] == fw and "import_s" in r]
        ratios = [
            r["import_ratio_to_jax"] for r in results if r["framework"] == fw and r.get("import_ratio_to_jax")
        ]
        if times:
            ratio = f"{statistics.median(ratios):.2f}" if ratios else "—"
            lines.append(f"| {FRAMEWORKS[fw][0]} | {statistics.median(times):.2f} | {ratio} |")

    lines += ["", "## Targets", ""] + targets(by, models, peak)
    return "\n".join(lines) + "\n"


def targets(by, models, peak):
    """Each target of the suite, checked against this run: 'met' or 'missed' with the figure."""
    out = []

    def check(ok, text):
        out.append(f"- {'met' if ok else '**missed**'}: {text}")

    for m in models:
        fnn, ref = by.get(("fnn", m), {}), by.get(("jax", m), {})
        if "step_ms" not in fnn or "step_ms" not in ref:
            continue
        ratio = fnn["step_ms"]["median"] / ref["step_ms"]["median"]
        check(
            ratio <= TARGETS["step"],
            f"{m}: step time {ratio:.2f}x hand-written JAX (target <= {TARGETS['step']})",
        )
        ratio = fnn["first_step_s"] / ref["first_step_s"]
        check(
            ratio <= TARGETS["first_step"],
            f"{m}: first step {ratio:.2f}x (target <= {TARGETS['first_step']})",
        )
        fit = fnn["epoch_samples_per_s"]["fit"]
        keras = by.get(("keras", m), {}).get("epoch_samples_per_s", {}).get("fit")
        if keras and m in TARGETS["keras_fit"]:
            goal = TARGETS["keras_fit"][m]
            check(
                fit / keras >= goal,
                f"{m}: `fnn.fit` {fit / keras:.2f}x Keras 3 `fit` samples/s (target >= {goal})",
            )
        for peer in ("flax_nnx", "equinox", "torch"):
            best = max(by.get((peer, m), {}).get("epoch_samples_per_s", {}).values(), default=None)
            if best:
                check(
                    fit > best, f"{m}: `fnn.fit` {fit / best:.2f}x {FRAMEWORKS[peer][0]}'s epoch (target > 1)"
                )
    ratios = [
        r["import_ratio_to_jax"] for (fw, _), r in by.items() if fw == "fnn" and r.get("import_ratio_to_jax")
    ]
    if ratios:
        ratio = statistics.median(ratios)
        check(
            ratio <= TARGETS["import"],
            f"`import fnn` {ratio:.2f}x `import jax` (target <= {TARGETS['import']})",
        )
    mlp = by.get(("fnn", "mlp"), {})
    if "epoch_gflops" in mlp and peak.get("float32_gflops"):
        share = mlp["epoch_gflops"]["fit fused"] / peak["float32_gflops"]
        check(
            share >= TARGETS["peak"],
            f"mlp: fused `fit` epoch at {100 * share:.0f}% of the matmul peak (target >= 85%)",
        )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="*", default=list(FRAMEWORKS), choices=list(FRAMEWORKS))
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds of steps per pair")
    parser.add_argument("--round-s", type=float, default=0.2, help="seconds a round of steps aims at")
    parser.add_argument(
        "--epochs", type=int, default=3, help="timed epochs per epoch runner (after one warm-up)"
    )
    parser.add_argument(
        "--sweeps", type=int, default=1, help="run every pair this many times; report medians"
    )
    parser.add_argument("--timeout", type=int, default=900, help="seconds one pair may take")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 rounds, 1 epoch")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.round_s, args.epochs = 2, 0.02, 1

    if args.worker:  # a child process: print one JSON line
        if args.worker == ["peak"]:
            print(json.dumps(work_peak(args.rounds)))
        else:
            print(json.dumps(work(*args.worker, args.rounds, args.epochs, args.round_s)))
        return

    peak = spawn(["--worker", "peak", "--rounds", str(args.rounds)], args.timeout)
    print(f"matmul peak: {peak}", file=sys.stderr)
    sweeps = []
    for sweep in range(args.sweeps):
        print(f"sweep {sweep + 1}/{args.sweeps}", file=sys.stderr)
        sweeps.append([run_pair(fw, m, args) for m in args.models for fw in args.frameworks])
    results = median_of_sweeps(sweeps)
    versions = {}
    for fw in args.frameworks:
        top = FRAMEWORKS[fw][1][0].split(".")[0]
        if installed(fw):
            from importlib.metadata import PackageNotFoundError, version

            dist = {"haiku": "dm-haiku"}.get(top, top)
            try:
                versions[top] = version(dist)
            except PackageNotFoundError:
                versions[top] = "?"
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {peak.get('backend', '?')} "
        f"({peak.get('device', '?')}); " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"meta": meta, "peak": peak, "sweeps": args.sweeps, "results": results}, indent=2) + "\n"
    )
    table = report(results, peak, meta)
    (args.out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
