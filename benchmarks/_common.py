"""What the single-topic benchmarks share: the machine's description, interleaved timing and the reports."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import jax


def machine():
    return f"{platform.machine()}, {jax.default_backend()}, {jax.device_count()} device(s), jax {jax.__version__}"


def write_report(out: Path, name: str, results: dict, table: list[str]) -> None:
    """Writes ``name.json`` and ``name.md`` under ``out`` and prints the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


def timed_pair(fns: dict, args: tuple, rounds: int) -> dict:
    """Median milliseconds per call of each function, interleaved, and its first call's seconds."""
    first, times = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        first[name] = time.perf_counter() - start
    for r in range(rounds):
        for name, fn in list(fns.items())[:: 1 if r % 2 else -1]:
            start = time.perf_counter()
            for _ in range(5):
                out = fn(*args)
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - start) / 5)
    return {name: {"ms": 1e3 * statistics.median(times[name]), "first_s": first[name]} for name in fns}
