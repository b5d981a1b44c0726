"""FSDP and tensor parallelism on 8 simulated CPU devices: memory per device, step time, equality.

The model: Embedding(1024, 256) -> 4 x TransformerDecoderBlock(8 heads, MLP 1024)
under ``fnn.Repeat`` -> Dense(1024), tokens (16, 32), Adam. For each placement,
replicated (data parallel), FSDP (``fsdp()`` on an 8-device ``"data"`` axis) and
FSDP + tensor parallel (``tensor_parallel(), fsdp()`` on ``data=4, model=2``),
the batch split along ``"data"`` as ``fit`` splits it:
the largest device's bytes of params + Adam state (``fnn.parallel.device_bytes``),
against a stated per-device budget; the jitted train step's median time over
``--rounds`` rounds of 3 steps; and the largest parameter difference from one
device after 3 steps. Simulated devices share the machine's cores, so step
times show the partitioned program's overhead, not a speed-up. Then ``fit``
under FSDP, checkpointed and resumed on 8, 4 and 1 devices; and the FSDP
state's checkpoint (written in parts) saved and restored onto the same
placement, onto FSDP + tensor parallel and onto one device, against the arrays
gathered into one plain safetensors file.

Run: python benchmarks/sharding.py [--rounds 5] [--budget-mb 16] [--out benchmarks/results]
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")  # before JAX starts

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from _common import machine, write_report  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

import fnn  # noqa: E402
from fnn import parallel  # noqa: E402

VOCAB, FEATURES, BATCH, TIME = 1024, 256, 16, 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget-mb", type=float, default=16.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    model = fnn.Sequential(
        [
            fnn.Embedding(VOCAB, FEATURES),
            fnn.Repeat(fnn.TransformerDecoderBlock(8, 4 * FEATURES), 4),
            fnn.Dense(VOCAB),
        ]
    )
    params, state = model.init(jax.random.key(0), fnn.Shape((TIME,), jnp.int32))
    tx = optax.adam(1e-3)
    tokens = jax.random.randint(jax.random.key(1), (BATCH, TIME + 1), 0, VOCAB)

    def step(params, opt_state, tokens):
        def loss(p):
            logits = model.apply(p, state, tokens[:, :-1], train=False)[0]
            return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def three(train_step, carry, tokens):
        for _ in range(3):
            carry = train_step(*carry, tokens)
        return jax.block_until_ready(carry)

    reference = three(jax.jit(step), (params, tx.init(params)), tokens)
    total = sum(a.nbytes for a in jax.tree.leaves((params, tx.init(params))))
    placements = {
        "replicated (data parallel)": ({"data": 8}, ()),
        "FSDP": ({"data": 8}, (parallel.fsdp(),)),
        "FSDP + tensor parallel": ({"data": 4, "model": 2}, (parallel.tensor_parallel(), parallel.fsdp())),
    }
    results = {"total_bytes": total, "budget_bytes": args.budget_mb * 2**20, "placements": {}}
    placed = {}
    for name, (axes, policies) in placements.items():
        mesh = parallel.make_mesh(**axes)
        specs = parallel.partition_specs(params, mesh, *policies)
        carry = parallel.shard(
            (params, tx.init(params)), mesh, (specs, parallel.optimizer_specs(tx, tx.init(params), specs))
        )
        train_step = jax.jit(step, out_shardings=jax.tree.map(lambda a: a.sharding, carry))
        batch = jax.device_put(tokens, NamedSharding(mesh, PartitionSpec("data")))  # split as fit splits it
        out = three(train_step, carry, batch)  # compiles
        placed[name] = carry
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            three(train_step, carry, batch)
            times.append((time.perf_counter() - start) / 3)
        results["placements"][name] = {
            "largest_device_bytes": max(parallel.device_bytes(carry).values()),
            "step_ms": 1e3 * statistics.median(times),
            "max_difference": max(
                float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(out))
            ),
        }
    results["fit"] = fit_and_resume(model, tokens)
    results["checkpoint"] = checkpoint_times(placed["FSDP"], placed["FSDP + tensor parallel"], args.rounds)
    base = results["placements"]["replicated (data parallel)"]["step_ms"]
    table = [
        f"{len(jax.devices())} simulated devices; {machine()}. Params + Adam state: {total / 2**20:.1f} MB; "
        f"per-device budget {args.budget_mb:g} MB. Step: median of {args.rounds} rounds of 3 steps.",
        "",
        "| placement | largest device MB | share of the whole | fits the budget | step ms | vs data parallel | "
        "max difference from one device |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, r in results["placements"].items():
        held = r["largest_device_bytes"]
        table.append(
            f"| {name} | {held / 2**20:.1f} | {held / total:.3f} | {'yes' if held <= args.budget_mb * 2**20 else 'no'} "
            f"| {r['step_ms']:.1f} | {r['step_ms'] / base:.2f} | {r['max_difference']:.1e} |"
        )
    f = results["fit"]
    table += [
        "",
        f"`fit` under FSDP on 8 devices, 2 epochs: the fullest device holds {f['largest_device_bytes'] / 2**20:.1f} MB "
        f"of params + Adam state ({'within' if f['largest_device_bytes'] <= args.budget_mb * 2**20 else 'over'} the "
        f"budget). Checkpointed after epoch 1 and resumed: on the same mesh bitwise equal to the uninterrupted run: "
        f"{f['resumed_bitwise_on_8']}; on 4 devices and on 1, largest difference "
        f"{f['max_difference_on_4']:.1e} and {f['max_difference_on_1']:.1e}.",
    ]
    c = results["checkpoint"]
    table += [
        "",
        "Checkpoint of the FSDP params + Adam state (median of "
        f"{args.rounds}; reference: the arrays gathered to the host and written as one safetensors file, then "
        "read and placed with `jax.device_put`, no digests):",
        "",
        "| operation | fnn s | reference s | ratio |",
        "|---|---:|---:|---:|",
        *(
            f"| {name} | {c[name]['fnn']:.3f} | {c[name]['reference']:.3f} | "
            f"{c[name]['fnn'] / c[name]['reference']:.2f} |"
            for name in c
            if name != "files"
        ),
        "",
        f"Files: {', '.join(c['files'])} (format 3: each process writes the shards its devices own).",
    ]
    write_report(args.out, "sharding", results, table)


def checkpoint_times(fsdp: tuple, fsdp_tp: tuple, rounds: int) -> dict:
    """Seconds to save the FSDP carry in parts and to restore it onto the same placement, onto
    FSDP + tensor parallel (4 x 2) and onto one device, against gather + one safetensors file."""
    import tempfile

    import numpy as np
    import safetensors.numpy

    folder = Path(tempfile.mkdtemp())
    path, reference_file = folder / "ckpt", folder / "reference.safetensors"
    leaves = jax.tree.leaves(fsdp)
    named = lambda values: {str(i): v for i, v in enumerate(values)}  # noqa: E731

    def like(carry: tuple) -> list:
        return [jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding) for a in jax.tree.leaves(carry)]

    def read_reference(shardings: list | None) -> list:
        loaded = safetensors.numpy.load_file(reference_file)
        values = [loaded[str(i)] for i in range(len(leaves))]
        if shardings is None:
            return [jnp.asarray(v) for v in values]
        return [jax.device_put(v, t.sharding) for v, t in zip(values, shardings)]

    def median(fn) -> float:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    out = {
        "save": {
            "fnn": median(lambda: fnn.checkpoint.save(path, leaves, overwrite=True) and 0),
            "reference": median(
                lambda: safetensors.numpy.save_file(
                    named(np.asarray(a) for a in jax.device_get(leaves)), reference_file
                )
            ),
        }
    }
    for name, target in [
        ("restore onto the same FSDP placement", like(fsdp)),
        ("restore onto FSDP + tensor parallel (4 x 2)", like(fsdp_tp)),
        ("restore onto one device", None),
    ]:
        out[name] = {
            "fnn": median(lambda t=target: fnn.checkpoint.restore(path, t)),
            "reference": median(lambda t=target: read_reference(t)),
        }
    out["restore onto one device, verify=False"] = {
        "fnn": median(lambda: fnn.checkpoint.restore(path, verify=False)),
        "reference": out["restore onto one device"]["reference"],
    }
    out["files"] = sorted(p.name for p in path.iterdir())
    return out


def fit_and_resume(model: fnn.Layer, tokens: jax.Array) -> dict:
    """fit under FSDP on 8 devices; a checkpoint after epoch 1 resumed on 8 (bitwise?), 4 and 1 device."""
    import tempfile

    import numpy as np

    data = np.asarray(jax.random.randint(jax.random.key(3), (64, tokens.shape[1]), 0, VOCAB))
    x, y = data[:, :-1], data[:, 1:]
    kw = {"loss": "sparse_categorical_crossentropy", "optimizer": "adam", "batch_size": 16, "verbose": 0}
    on = {
        n: {"mesh": parallel.make_mesh(jax.devices()[:n], data=n), "sharding": [parallel.fsdp()]}
        for n in (8, 4)
    }
    on[1] = {}
    whole = fnn.fit(model, x, y, epochs=2, **kw, **on[8])
    checkpoint = fnn.ModelCheckpoint(tempfile.mkdtemp(), monitor="loss")
    fnn.fit(model, x, y, epochs=1, callbacks=[checkpoint], **kw, **on[8])
    saved = checkpoint.manager.path(checkpoint.manager.latest())
    resumed = {n: fnn.fit(model, x, y, epochs=2, resume_from=saved, **kw, **on[n]) for n in (8, 4, 1)}

    def difference(h: fnn.History) -> float:
        pairs = zip(jax.tree.leaves(whole.params), jax.tree.leaves(h.params))
        return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in pairs)

    same = jax.tree.leaves(whole.train_state[:4]), jax.tree.leaves(resumed[8].train_state[:4])
    return {
        "largest_device_bytes": max(parallel.device_bytes(whole.train_state[:3]).values()),
        "resumed_bitwise_on_8": all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(*same)),
        "max_difference_on_4": difference(resumed[4]),
        "max_difference_on_1": difference(resumed[1]),
    }


if __name__ == "__main__":
    main()
