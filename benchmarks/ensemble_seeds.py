"""N seeds at once (``fnn.fit_ensemble``) against N ``fnn.fit`` calls one after another.

The model is examples/digits_mlp.py's (Dense 128 relu, Dropout 0.2, Dense 64 relu,
Dense 10; Adam; batches of 32; 15% held out for validation), trained for
``--epochs`` epochs from ``--seeds`` seeds. Each way runs in a fresh process, as a
user's script would (compiles included), ``--rounds`` times, interleaved; medians
are reported:

- ``fit x N``: ``fnn.fit`` once per seed, one after the other;
- ``fit_ensemble``: the members mapped one by one inside one compiled program
  (bitwise each seed's ``fit``, checked here);
- ``fit_ensemble(vectorize=True)``: the members side by side (``jax.vmap``);
- ``jax+optax vmap``: the same model and training written by hand in JAX and
  optax, ``jax.jit(jax.vmap(epoch))`` over the seeds: the bar.

Run: python benchmarks/ensemble_seeds.py --seeds 8 --epochs 10 --rounds 3 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

WAYS = ("fit x N", "fit_ensemble", "fit_ensemble(vectorize=True)", "jax+optax vmap")


def digits():
    import numpy as np
    from sklearn.datasets import load_digits

    import fnn

    images, labels = load_digits(return_X_y=True)
    x, _, y, _ = fnn.data.train_test_split(
        (images / 16.0).astype(np.float32), labels.astype(np.int32), test_size=0.2, seed=0, stratify=labels
    )
    return x, y


def run_way(way: str, seeds: int, epochs: int) -> dict:
    """Trains the seeds one way in this process; its wall time and final validation accuracies."""
    import jax
    import numpy as np

    import fnn

    x, y = digits()
    options = dict(
        loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"], epochs=epochs,
        batch_size=32, validation_split=0.15, verbose=0,
    )  # fmt: skip

    def model():
        return fnn.Sequential(
            [fnn.Dense(128, "relu"), fnn.Dropout(0.2), fnn.Dense(64, "relu"), fnn.Dense(10)]
        )

    start = time.perf_counter()
    params = None
    if way == "fit x N":
        runs = [fnn.fit(model(), x, y, seed=s, **options) for s in range(seeds)]
        accuracy = [r.history["val_accuracy"][-1] for r in runs]
        params = [jax.tree.leaves(r.params) for r in runs]
    elif way.startswith("fit_ensemble"):
        runs = fnn.fit_ensemble(
            model(), x, y, seeds=list(range(seeds)), vectorize="vectorize" in way, **options
        )
        accuracy = [m.history["val_accuracy"][-1] for m in runs.members]
        params = [jax.tree.leaves(m.params) for m in runs.members]
    else:
        accuracy = hand_written(x, y, seeds, epochs)
    seconds = time.perf_counter() - start
    found = {"seconds": seconds, "val_accuracy": accuracy}
    if params is not None:  # for the comparison with fit x N, made by the driver
        found["params"] = [[np.asarray(a).tolist() for a in member] for member in params]
    return found


def hand_written(x, y, seeds: int, epochs: int) -> list[float]:
    """The same model and training by hand: ``jit(vmap(epoch))`` over the seeds (the JAX way)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    n_val = int(len(x) * 0.15)
    x, y = jnp.asarray(x), jnp.asarray(y)
    x_train, y_train, x_val, y_val = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
    steps = len(x_train) // 32
    tx = optax.adam(1e-3)
    sizes = [(64, 128), (128, 64), (64, 10)]

    def init(key):
        keys = jax.random.split(key, len(sizes))
        return [
            {"w": jax.nn.initializers.glorot_uniform()(k, s), "b": jnp.zeros(s[1])}
            for k, s in zip(keys, sizes)
        ]

    def forward(params, x, key):
        h = jax.nn.relu(x @ params[0]["w"] + params[0]["b"])
        if key is not None:
            keep = jax.random.bernoulli(key, 0.8, h.shape)
            h = jnp.where(keep, h / 0.8, 0.0)
        h = jax.nn.relu(h @ params[1]["w"] + params[1]["b"])
        return h @ params[2]["w"] + params[2]["b"]

    def loss(params, x, y, key):
        return optax.softmax_cross_entropy_with_integer_labels(forward(params, x, key), y).mean()

    def epoch(carry, key):
        params, opt_state = carry
        shuffle, drop = jax.random.split(key)
        order = jax.random.permutation(shuffle, len(x_train))[: steps * 32].reshape(steps, 32)

        def step(c, inputs):
            p, o = c
            rows, k = inputs
            grads = jax.grad(loss)(p, x_train[rows], y_train[rows], k)
            updates, o = tx.update(grads, o, p)
            return (optax.apply_updates(p, updates), o), None

        (params, opt_state), _ = jax.lax.scan(
            step, (params, opt_state), (order, jax.random.split(drop, steps))
        )
        accuracy = jnp.mean(jnp.argmax(forward(params, x_val, None), -1) == y_val)
        return (params, opt_state), accuracy

    def train(key):
        params = init(key)
        _, accuracies = jax.lax.scan(epoch, (params, tx.init(params)), jax.random.split(key, epochs))
        return accuracies[-1]

    keys = jax.vmap(jax.random.key)(jnp.arange(seeds))
    return np.asarray(jax.jit(jax.vmap(train))(keys)).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)  # one way, in this process
    args = parser.parse_args()
    if args.way:
        print(json.dumps(run_way(args.way, args.seeds, args.epochs)))
        return

    sys.path.insert(0, str(Path(__file__).parent))
    from _common import machine, write_report

    found: dict[str, list[dict]] = {way: [] for way in WAYS}
    for r in range(args.rounds):
        for way in WAYS[:: 1 if r % 2 == 0 else -1]:
            done = subprocess.run(
                [sys.executable, __file__, "--way", way, "--seeds", str(args.seeds), "--epochs", str(args.epochs)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            found[way].append(json.loads(done.stdout.strip().splitlines()[-1]))
    alone = found["fit x N"][0]["params"]

    def largest_difference(params) -> float:
        import numpy as np

        return max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for member, reference in zip(params, alone)
            for a, b in zip(member, reference)
        )

    train_examples = 1437 - int(1437 * 0.15)  # digits_mlp's training split, less the validation split
    rows, results = [], {"machine": machine(), "seeds": args.seeds, "epochs": args.epochs, "ways": {}}
    base = statistics.median(f["seconds"] for f in found["fit x N"])
    for way in WAYS:
        seconds = statistics.median(f["seconds"] for f in found[way])
        accuracy = found[way][0]["val_accuracy"]
        difference = largest_difference(found[way][0]["params"]) if "params" in found[way][0] else None
        results["ways"][way] = {
            "seconds": seconds,
            "all_seconds": [f["seconds"] for f in found[way]],
            "samples_per_s": args.seeds * args.epochs * train_examples / seconds,
            "speedup_over_fit_x_n": base / seconds,
            "val_accuracy_mean": statistics.mean(accuracy),
            "val_accuracy_std": statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
            "largest_param_difference_from_fit": difference,
        }
        r = results["ways"][way]
        rows.append(
            f"| {way} | {seconds:.2f} | {r['samples_per_s']:,.0f} | {r['speedup_over_fit_x_n']:.2f} | "
            f"{r['val_accuracy_mean']:.4f} ± {r['val_accuracy_std']:.4f} | "
            + ("-" if difference is None else ("0 (bitwise)" if difference == 0 else f"{difference:.1e}"))
            + " |"
        )
    table = [
        f"# {args.seeds} seeds of the digits MLP, {args.epochs} epochs each",
        "",
        f"{machine()}; wall time of a fresh process's training (compiles included), median of {args.rounds} "
        "interleaved rounds. `python benchmarks/ensemble_seeds.py "
        f"--seeds {args.seeds} --epochs {args.epochs} --rounds {args.rounds}`",
        "",
        "| way | seconds | samples/s | speed-up over fit x N | val accuracy (mean ± std) | params vs fit |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    write_report(args.out, "ensemble_seeds", results, table)


if __name__ == "__main__":
    main()
