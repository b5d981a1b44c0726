"""The spread of every example's headline figure over training seeds and CPU code paths.

The same seed is bitwise reproducible on one machine, but XLA compiles different
float code for different CPUs, so a run on another machine is, in effect, another
draw. A test's bar must sit below the spread of those draws, not below one of them.
This script runs each example (``python examples/NAME.py``) with
``FNN_EXAMPLE_SEED`` = 0..N-1 and, with ``--isa``, also with XLA told to use no
instruction set newer than the one named (``--xla_cpu_max_isa``), which stands in
for an older CPU. It writes the figures, per example the minimum, median, mean and
maximum, as JSON and Markdown.

Run: python benchmarks/example_seeds.py --seeds 8 --isa AVX2 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import write_report

ROOT = Path(__file__).resolve().parents[1]
# The examples whose test checks a figure, and the label of the figure each prints last.
HEADLINES = {
    "digits_cnn": "test accuracy",
    "iris": "test accuracy",
    "digits_mlp": "test accuracy",
    "diabetes_regression": "test R2",
    "breast_cancer": "test accuracy",
    "sequence_classification": "test accuracy",
    "data_parallel": "test accuracy",
    "two_moons_boundary": "test accuracy",
    "transfer_learning": "test accuracy",
}


def headline(name: str, seed: int, isa: str | None, cache: str) -> float:
    """The figure ``examples/NAME.py`` prints last, trained with ``seed``."""
    env = {**os.environ, "FNN_EXAMPLE_SEED": str(seed), "JAX_COMPILATION_CACHE_DIR": cache}
    if isa:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_max_isa={isa}".strip()
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / f"{name}.py")],
            env={**env, "FNN_EXAMPLE_OUT": out}, capture_output=True, text=True, check=True,
        )  # fmt: skip
    last = done.stdout.strip().splitlines()[-1]
    return float(re.match(rf"{HEADLINES[name]}: ([-0-9.]+)", last).group(1))


def summary(values: list[float]) -> dict:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "mean": round(statistics.fmean(values), 4),
        "max": max(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="+", default=list(HEADLINES), choices=list(HEADLINES))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--isa", default=None, help="also run with --xla_cpu_max_isa=ISA (e.g. AVX2, SSE4_2)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    code_paths = [None, args.isa] if args.isa else [None]
    runs = [(n, s, isa) for n in args.examples for isa in code_paths for s in range(args.seeds)]
    with tempfile.TemporaryDirectory() as cache, concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        figures = dict(zip(runs, pool.map(lambda run: headline(*run, cache), runs)))

    results = []
    for name in args.examples:
        row = {"example": name, "figure": HEADLINES[name]}
        for isa in code_paths:
            row[isa or "native"] = [figures[(name, s, isa)] for s in range(args.seeds)]
        row.update(summary([v for isa in code_paths for v in row[isa or "native"]]))
        results.append(row)

    meta = {"seeds": args.seeds, "code_paths": [isa or "native" for isa in code_paths], "cpu": cpu_name()}
    table = [
        f"# Example figures over seeds 0-{args.seeds - 1} ({', '.join(meta['code_paths'])} code; {meta['cpu']})",
        "",
        "| example | figure | min | median | mean | max | seed 0 |",
        "|---|---|---|---|---|---|---|",
    ]
    table += [
        f"| {r['example']} | {r['figure']} | {r['min']:.3f} | {r['median']:.3f} | {r['mean']:.3f} | "
        f"{r['max']:.3f} | {r['native'][0]:.3f} |"
        for r in results
    ]
    write_report(args.out, "example_seeds", {**meta, "results": results}, table)


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return found.group(1).strip() if found else "unknown CPU"


if __name__ == "__main__":
    main()
