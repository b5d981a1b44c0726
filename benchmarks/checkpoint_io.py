"""fnn.checkpoint save/restore against writing and reading the same arrays with bare safetensors.

The tree: an Adam TrainState of an MLP (params, two moment trees, counters,
key), about --megabytes of float32. The reference writes the same flat dict
of arrays with ``safetensors.numpy.save_file`` and reads it with
``safetensors.numpy.load_file``: no manifest, no digests, no fsync, no
atomic rename. fnn's extra cost is what those guarantees take.

Also: one epoch of fit with a backup every 10 steps against no backups.

Run: python benchmarks/checkpoint_io.py [--rounds 5] [--megabytes 64] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import safetensors.numpy
from _common import machine, write_report

import fnn


def train_state(megabytes: int) -> fnn.TrainState:
    width = int((megabytes * 2**20 / 4 / 3 / 4) ** 0.5)  # params + 2 Adam moments, 4 square layers
    model = fnn.Sequential([fnn.Dense(width) for _ in range(4)])
    ts = fnn.TrainState.create(model, fnn.optimizers.get("adam"), (width,), jax.random.key(0))
    return jax.block_until_ready(ts)


def flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(jax.tree.map(np.asarray, tree._replace(key=None)))[0]
    return {jax.tree_util.keystr(p): np.ascontiguousarray(a) for p, a in leaves}


def timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def fit_seconds(backup_dir: Path | None) -> float:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6400, 64)).astype(np.float32)
    y = rng.integers(0, 10, 6400).astype(np.int32)
    model = fnn.Sequential([fnn.Dense(256, "relu"), fnn.Dense(10)])
    options = dict(
        loss="sparse_categorical_crossentropy", epochs=2, batch_size=64, verbose=0, steps_per_execution=10
    )
    if backup_dir is not None:
        options.update(checkpoint_dir=backup_dir, checkpoint_every=10)
    start = time.perf_counter()
    fnn.fit(model, x, y, **options)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    ts = train_state(args.megabytes)
    arrays = flat(ts)
    size = sum(a.nbytes for a in arrays.values())
    work = Path(tempfile.mkdtemp())
    times: dict[str, list[float]] = {
        k: [] for k in ("fnn save", "fnn restore", "safetensors save", "safetensors load")
    }
    fit_times: dict[str, list[float]] = {"no backups": [], "backup every 10 steps": []}
    try:
        fit_seconds(None)  # a process's first compiles and runs are slow; keep them out of the figures
        for r in range(args.rounds):
            times["fnn save"].append(timed(lambda: fnn.checkpoint.save(work / f"c{r}", ts)))
            times["fnn restore"].append(timed(lambda: fnn.checkpoint.restore(work / f"c{r}", ts)))
            file = work / f"s{r}.safetensors"
            times["safetensors save"].append(timed(lambda: safetensors.numpy.save_file(arrays, file)))
            times["safetensors load"].append(timed(lambda: safetensors.numpy.load_file(file)))
            fit_times["no backups"].append(fit_seconds(None))
            fit_times["backup every 10 steps"].append(fit_seconds(work / f"fit{r}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    fit_med = {k: statistics.median(v) for k, v in fit_times.items()}
    results = {
        "machine": machine(),
        "bytes": size,
        "rounds": args.rounds,
        "median_seconds": med,
        "save_ratio_fnn_over_safetensors": med["fnn save"] / med["safetensors save"],
        "restore_ratio_fnn_over_safetensors": med["fnn restore"] / med["safetensors load"],
        "fit_median_seconds": fit_med,
        "fit_ratio_with_backups": fit_med["backup every 10 steps"] / fit_med["no backups"],
    }
    mb = size / 2**20
    table = [
        f"# Checkpoint I/O ({machine()}; {mb:.0f} MiB TrainState, median of {args.rounds})",
        "",
        "| operation | seconds | MiB/s |",
        "|---|---|---|",
        *(f"| {k} | {v:.3f} | {mb / v:.0f} |" for k, v in med.items()),
        "",
        f"save ratio fnn/safetensors: {results['save_ratio_fnn_over_safetensors']:.2f}; "
        f"restore ratio: {results['restore_ratio_fnn_over_safetensors']:.2f}",
        "",
        "| fit, 2 epochs of 100 steps (MLP 64-256-10) | seconds |",
        "|---|---|",
        *(f"| {k} | {v:.3f} |" for k, v in fit_med.items()),
        "",
        f"fit time ratio with backups every 10 steps: {results['fit_ratio_with_backups']:.2f}",
    ]
    write_report(args.out, "checkpoint_io", results, table)


if __name__ == "__main__":
    main()
