"""What ``steps_per_execution="auto"`` costs against fixed choices, end to end (compiling included).

Two runs stand at the ends of the choice: an 8-epoch convnet on digits (a heavy step:
a fused epoch can never repay its compile) and a small MLP for 300 epochs (an
overhead-bound step over 16,800 steps: fusing pays). Each (model, choice) runs in a
fresh process, so no compile is shared, ``--repeats`` times; the table gives the
median wall time of ``fit`` and the ``steps_per_execution`` it used.

Run: python benchmarks/auto_execution.py --repeats 3 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _common import write_report

RUN = """
import json, sys, time
import numpy as np, fnn
from sklearn.datasets import load_digits
model_name, choice = sys.argv[1], sys.argv[2]
x, y = load_digits(return_X_y=True)
x, y = (x / 16.0).astype(np.float32), y.astype(np.int32)
if model_name == "convnet":
    x = x.reshape(-1, 8, 8, 1)
    model, epochs = fnn.Sequential([
        fnn.Conv2D(16, 3, padding="same"), fnn.Relu(), fnn.Conv2D(32, 3, padding="same"), fnn.Relu(),
        fnn.MaxPool2D(2), fnn.Flatten(), fnn.Dense(64, "relu"), fnn.Dense(10)]), 8
else:
    model, epochs = fnn.Sequential([fnn.Dense(32, "relu"), fnn.Dense(10)]), 300
steps = {"auto": "auto", "1": 1, "epoch": len(x) // 32}[choice]
start = time.perf_counter()
history = fnn.fit(model, x, y, loss="sparse_categorical_crossentropy", epochs=epochs, batch_size=32,
                  verbose=0, steps_per_execution=steps)
print(json.dumps({"seconds": time.perf_counter() - start, "used": history.steps_per_execution}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results, table = (
        {},
        ["| model | steps_per_execution | median fit wall time (s) | used |", "|---|---|---:|---:|"],
    )
    for model in ("convnet", "mlp"):
        for choice in ("auto", "1", "epoch"):
            runs = [
                json.loads(subprocess.run([sys.executable, "-c", RUN, model, choice], capture_output=True,
                                          text=True, check=True).stdout.splitlines()[-1])
                for _ in range(args.repeats)
            ]  # fmt: skip
            seconds = statistics.median(r["seconds"] for r in runs)
            results[f"{model} {choice}"] = {"seconds": [r["seconds"] for r in runs], "used": runs[0]["used"]}
            table.append(f"| {model} | {choice} | {seconds:.1f} | {runs[0]['used']} |")
    write_report(args.out, "auto_execution", results, table)


if __name__ == "__main__":
    main()
