"""What ``fnn.enable_compilation_cache`` saves a script's second run: ``fit`` wall time, fresh processes.

Each model (the suite's mlp, cnn and lstm from ``frameworks.py``, 2 epochs over
2,048 samples with ``fnn.fit``) runs in fresh processes: without the cache, with
an empty cache folder (the first run, which fills it), and again with the filled
folder (the second run). ``--repeats`` rounds of the three, each with its own
folder; the table gives median seconds of ``fit`` (model init to the last step,
the import excluded) and the programs JAX compiled and loaded.

Run: python benchmarks/compilation_cache.py --repeats 3 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import write_report

HERE = Path(__file__).resolve().parent

RUN = """
import json, sys, time
import jax, fnn
from frameworks import MODELS, data, fnn_model
model_name, folder = sys.argv[1], sys.argv[2]
events = {"compiled": 0, "loaded": 0}
def count(event, *args, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        events["compiled"] += 1
    elif event == "/jax/compilation_cache/cache_hits":
        events["loaded"] += 1
jax.monitoring.register_event_duration_secs_listener(count)
jax.monitoring.register_event_listener(count)
if folder != "-":
    fnn.enable_compilation_cache(folder)
x, y = data(model_name)
start = time.perf_counter()
fnn.fit(fnn_model(model_name, fnn), x[:2048], y[:2048], loss="sparse_categorical_crossentropy",
        epochs=2, batch_size=MODELS[model_name][1], verbose=0)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "compiled": events["compiled"] - events["loaded"],
                  "loaded": events["loaded"]}))
"""


def _run(model: str, folder: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", RUN, model, folder], capture_output=True, text=True, check=True, cwd=HERE
    )
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=["mlp", "cnn", "lstm"])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    table = [
        "| model | no cache (s) | first run, filling the cache (s) | second run (s) | saved | "
        "programs compiled / loaded, second run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    results = {}
    for model in args.models:
        runs: dict[str, list] = {"none": [], "first": [], "second": []}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as scratch:
                folder = str(Path(scratch) / "cache")
                runs["none"].append(_run(model, "-"))
                runs["first"].append(_run(model, folder))
                runs["second"].append(_run(model, folder))
        median = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
        second = runs["second"][-1]
        results[model] = {"median_s": median, "runs": runs}
        table.append(
            f"| {model} | {median['none']:.2f} | {median['first']:.2f} | {median['second']:.2f} | "
            f"{1 - median['second'] / median['none']:.0%} | {second['compiled']} / {second['loaded']} |"
        )
        print(table[-1], file=sys.stderr, flush=True)
    intro = (
        f"`fnn.fit` wall time, 2 epochs over 2,048 samples, fresh processes, median of {args.repeats}: "
        "without a cache, then a first and a second run with `fnn.enable_compilation_cache(folder)`."
    )
    write_report(args.out, "compilation_cache", results, [intro, "", *table])


if __name__ == "__main__":
    main()
