"""A streamed epoch against the in-memory one: how close host batches come to data already on the device.

For an MLP and a CNN it trains with ``fnn.fit`` on the same synthetic data:
arrays held on the device (a whole epoch fused into one compiled call, or one
step per call) and a stream of host NumPy batches (a re-iterable read, stacked
and placed ahead of the device by ``fnn.data.prefetch``; one step per call, or
``--chunk`` batches stacked into one fused call). Throughput is samples/s over
the epochs after the first (which compiles), timed at epoch ends; the report
gives the best stream's ratio to the best in-memory way.

Run: python benchmarks/streaming.py --epochs 4 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from _common import machine, write_report

import fnn


class HostBatches:
    """Batches of host NumPy arrays, shuffled per epoch: what a loader hands over."""

    def __init__(self, x, y, batch_size, seed=0):
        self.x, self.y, self.batch_size, self.epoch, self.seed = x, y, batch_size, 0, seed

    def __iter__(self):
        order = fnn.data.shuffle_indices(len(self.x), self.seed, self.epoch)
        self.epoch += 1
        for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
            rows = order[start : start + self.batch_size]
            yield self.x[rows], self.y[rows]


class EpochTimes(fnn.Callback):
    def on_train_begin(self, run):
        self.times = [time.perf_counter()]

    def on_epoch_end(self, epoch, logs, run):
        self.times.append(time.perf_counter())


def model_and_data(name, samples):
    rng = np.random.default_rng(0)
    if name == "mlp":
        x = rng.normal(size=(samples, 784)).astype(np.float32)
        model = fnn.Sequential([fnn.Dense(256, "relu"), fnn.Dense(256, "relu"), fnn.Dense(10)])
    else:
        x = rng.normal(size=(samples, 28, 28, 1)).astype(np.float32)
        model = fnn.Sequential([
            fnn.Conv2D(16, 3, padding="same"), fnn.Relu(), fnn.MaxPool2D(2),
            fnn.Conv2D(32, 3, padding="same"), fnn.Relu(), fnn.MaxPool2D(2),
            fnn.Flatten(), fnn.Dense(10),
        ])  # fmt: skip
    return model, x, rng.integers(0, 10, samples).astype(np.int32)


def samples_per_s(model, data, epochs, batch_size, samples, **options):
    timer = EpochTimes()
    fnn.fit(model, *data, loss="sparse_categorical_crossentropy", optimizer="sgd", epochs=epochs,
            batch_size=batch_size, verbose=0, callbacks=[timer], **options)  # fmt: skip
    per_epoch = np.diff(timer.times)[1:]  # the first epoch compiles
    return samples / statistics.median(per_epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12_800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--chunk", type=int, default=10, help="steps per fused call of the stream")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    steps = args.samples // args.batch_size
    results = {"machine": machine(), "samples": args.samples, "batch_size": args.batch_size}
    table = [
        f"Streamed vs in-memory `fit` epochs ({machine()}; {args.samples} samples, batch {args.batch_size}, "
        f"median of epochs 2..{args.epochs})",
        "",
        "| model | in memory, fused epoch | in memory, 1 step/call | stream, 1 step/call "
        f"| stream, {args.chunk} steps/call | best stream / best in memory |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in args.models:
        model, x, y = model_and_data(name, steps * args.batch_size)
        common = (args.epochs, args.batch_size, steps * args.batch_size)
        row = {
            "fused": samples_per_s(model, (x, y), *common, steps_per_execution=steps),
            "one_step": samples_per_s(model, (x, y), *common, steps_per_execution=1),
            "stream": samples_per_s(model, (HostBatches(x, y, args.batch_size),), *common),
            "stream_chunks": samples_per_s(
                model, (HostBatches(x, y, args.batch_size),), *common, steps_per_execution=args.chunk
            ),
        }
        row["ratio"] = max(row["stream"], row["stream_chunks"]) / max(row["fused"], row["one_step"])
        results[name] = row
        cells = " | ".join(f"{row[k]:,.0f}" for k in ("fused", "one_step", "stream", "stream_chunks"))
        table.append(f"| {name} | {cells} | {row['ratio']:.2f} |")
    write_report(args.out, "streaming", results, table)


if __name__ == "__main__":
    main()
