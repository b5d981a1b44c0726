"""Data-parallel fit: samples/s on 1, 2, 4 and 8 devices for the MLP and the CNN.

Each device count runs in its own subprocess (JAX fixes the count at start-up).
On a CPU the devices are simulated (``JAX_NUM_CPU_DEVICES``) and share the same
cores, so the figures measure what splitting a batch over a mesh costs, not a
speed-up. The 1-device row without a mesh is the baseline; on a GPU machine
the same command gives the real devices' figures.

Run: python benchmarks/data_parallel.py [--devices 1 2 4 8] [--models mlp cnn] [--epochs 3]
     [--samples 12800] [--out benchmarks/results]
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


def worker(model: str, epochs: int, samples: int, use_mesh: bool) -> dict:
    import jax
    import optax
    from frameworks import LR, MODELS, data, fnn_model

    import fnn

    x, y = (a[:samples] for a in data(model))
    batch = MODELS[model][1]

    class EpochTimer(fnn.Callback):
        def on_train_begin(self, run):
            self.times, self.last = [], time.perf_counter()

        def on_epoch_end(self, epoch, logs, run):
            jax.block_until_ready(run.train_state)
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now

    timer = EpochTimer()
    fnn.fit(
        fnn_model(model, fnn), x, y, loss="sparse_categorical_crossentropy", optimizer=optax.adam(LR),
        epochs=epochs + 1, batch_size=batch, verbose=0, callbacks=[timer],
        mesh=fnn.parallel.data_mesh() if use_mesh else None,
    )  # fmt: skip
    used = samples // batch * batch
    return {
        "model": model,
        "devices": jax.device_count(),
        "mesh": use_mesh,
        "backend": jax.default_backend(),
        "samples_per_s": used / statistics.median(timer.times[1:]),  # the first epoch compiles
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--models", nargs="*", default=["mlp", "cnn"])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one that compiles)")
    parser.add_argument("--samples", type=int, default=12_800, help="examples per epoch (a multiple of 128)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)  # model, "mesh" or "plain"
    args = parser.parse_args()
    if args.worker:
        model, mode = args.worker
        print(json.dumps(worker(model, args.epochs, args.samples, mode == "mesh")))
        return

    from _common import write_report

    runs = [(m, 1, "plain") for m in args.models] + [
        (m, d, "mesh") for m in args.models for d in args.devices
    ]
    results = []
    for model, devices, mode in runs:
        env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices)}
        command = [
            sys.executable, __file__, "--worker", model, mode, "--epochs", str(args.epochs),
            "--samples", str(args.samples),
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=HERE)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)

    base = {r["model"]: r["samples_per_s"] for r in results if not r["mesh"]}
    table = [
        f"# Data-parallel fit ({results[0]['backend']}; devices simulated on CPU share its cores)",
        "",
        "| model | devices | mesh | samples/s | vs 1 device, no mesh |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        ratio = r["samples_per_s"] / base[r["model"]]
        table.append(
            f"| {r['model']} | {r['devices']} | {'yes' if r['mesh'] else 'no'} | "
            f"{r['samples_per_s']:,.0f} | {ratio:.2f} |"
        )
    write_report(args.out, "data_parallel", {"results": results}, table)


if __name__ == "__main__":
    main()
