"""Subprocess side of tests/test_parallel.py: JAX's device count is fixed at start-up.

python -m tests.parallel_worker devices          # one process, JAX_NUM_CPU_DEVICES devices
python -m tests.parallel_worker sharded          # FSDP and tensor parallel on 8 devices
python -m tests.parallel_worker train PID PORT DIR   # one of two processes on 127.0.0.1
python -m tests.parallel_worker die PID PORT DIR     # as fsdp; process 1 dies before epoch 1's backup
python -m tests.parallel_worker fsdp PID PORT DIR    # as train, the params split over the processes
python -m tests.parallel_worker hang PID PORT DIR    # as fsdp; process 1 hangs in epoch 2, watchdogs end both
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np

PROCESSES, EXAMPLES, BATCH, EPOCHS = 2, 240, 48, 2
# The watchdog's timeout: well above an epoch here (compile included) on a loaded machine. The stuck
# process gets twice as long, so that the waiting one (process 0) reports first, as the test expects.
HANG_TIMEOUT_S = 10


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x[:EXAMPLES] / 16).astype(np.float32), y[:EXAMPLES].astype(np.int32)


def shard(arrays: tuple, pid: int) -> tuple:
    """Process ``pid``'s contiguous shard."""
    size = EXAMPLES // PROCESSES
    return tuple(a[pid * size : (pid + 1) * size] for a in arrays)


def single_process_order(arrays: tuple) -> tuple:
    """The data in the order one process sees the multi-process run's global batches (no shuffle).

    Global batch k is every process's k-th part, in process order.
    """
    part = BATCH // PROCESSES
    shards = [shard(arrays, p) for p in range(PROCESSES)]
    steps = EXAMPLES // PROCESSES // part
    return tuple(
        np.concatenate([s[i][k * part : (k + 1) * part] for k in range(steps) for s in shards])
        for i in range(len(arrays))
    )


def batchnorm_model():
    import fnn

    return fnn.Sequential([fnn.Dense(32), fnn.BatchNorm(), fnn.Activation("relu"), fnn.Dense(10)])


def mlp_model():
    import fnn

    return fnn.Sequential([fnn.Dense(32, "relu"), fnn.Dense(10)])


FIT = {"loss": "sparse_categorical_crossentropy", "epochs": EPOCHS, "batch_size": BATCH, "verbose": 0}


def max_difference(a, b) -> float:
    import jax

    return max(
        float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def bitwise_equal(a, b) -> bool:
    import jax

    return all(
        np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def devices() -> dict:
    import jax

    import fnn

    x, y = digits()
    mesh = fnn.parallel.data_mesh()
    report = {"devices": len(jax.devices())}
    for name, model, optimizer in [
        ("batchnorm_sgd", batchnorm_model, "sgd"),
        ("mlp_adam", mlp_model, "adam"),
    ]:
        kw = {**FIT, "optimizer": optimizer, "metrics": ["accuracy"], "validation_split": 0.1}
        one = fnn.fit(model(), x, y, **kw)
        repeats = (1, "auto", 1) if optimizer == "sgd" else (1, "auto")  # run-to-run: one model is enough
        many = [fnn.fit(model(), x, y, mesh=mesh, steps_per_execution=s, **kw) for s in repeats]
        ts = [h.train_state for h in many]
        report[name] = {
            "max_difference": max_difference(
                (one.train_state.params, one.train_state.state), (ts[0].params, ts[0].state)
            ),
            "repeat_bitwise": bitwise_equal(ts[0][:3], ts[-1][:3]),  # params, state, opt_state
            "fused_bitwise": bitwise_equal(ts[0][:3], ts[1][:3]),
            "val_loss": [one.history["val_loss"][-1], many[0].history["val_loss"][-1]],
            "replicated": all(a.sharding.is_fully_replicated for a in jax.tree.leaves(ts[0].params)),
        }
    try:
        fnn.fit(mlp_model(), x, y, mesh=mesh, **{**FIT, "optimizer": "sgd", "batch_size": 36})
    except ValueError as e:
        report["indivisible_error"] = str(e)
    try:
        fnn.fit(mlp_model(), x[:100], y[:100], mesh=mesh, **{**FIT, "optimizer": "sgd", "batch_size": 32})
    except ValueError as e:
        report["last_batch_error"] = str(e)
    return report


def train(pid: int, port: str, directory: str, mode: str) -> None:
    import threading

    import jax

    import fnn

    fnn.parallel.initialize(f"127.0.0.1:{port}", PROCESSES, pid, heartbeat_timeout_s=5)
    fsdp = mode in ("fsdp", "hang", "die")

    class FailInEpochTwo(fnn.Callback):
        def on_epoch_end(self, epoch, logs, run):
            if mode == "die" and pid == 1 and epoch == 0:
                os._exit(17)

        def on_epoch_begin(self, epoch, run):
            if mode == "hang" and pid == 1 and epoch == 1:
                threading.Event().wait()  # stuck for good, alive (its heartbeats go on)

    callbacks = (
        [fnn.Watchdog(timeout_s=HANG_TIMEOUT_S * (1 + pid)), FailInEpochTwo()]
        if mode == "hang"
        else [FailInEpochTwo()]
    )

    x, y = shard(digits(), pid)
    start = fnn.checkpoint.restore(os.path.join(directory, "start"))  # written by a single process
    run = {
        "model": batchnorm_model(), "x": x, "y": y, "optimizer": "sgd", "shuffle": False,
        "params": start["params"], "state": start["state"], "validation_data": shard(digits(), 1 - pid),
        "checkpoint_dir": os.path.join(directory, "backup"), "callbacks": callbacks, **FIT,
    }  # fmt: skip
    # FSDP splits the params over both processes; each writes its part of the backups.
    sharding = {"sharding": [fnn.parallel.fsdp(min_size=16)]} if fsdp else {}
    history = fnn.fit(**run, mesh=fnn.parallel.data_mesh(), **sharding)
    sharded_params = not all(a.is_fully_addressable for a in jax.tree.leaves(history.train_state.params))
    results = {"": history}
    if fsdp:  # one epoch more, resumed from those backups onto another mesh: 2 x 2, split within processes
        results["_longer"] = fnn.fit(
            **{**run, "epochs": EPOCHS + 1},
            mesh=fnn.parallel.make_mesh(data=2, model=2),
            sharding=[fnn.parallel.fsdp("model", min_size=16)],
        )
    for name, h in results.items():
        ts = fnn.parallel.gathered(h.train_state) if fsdp else jax.device_get(h.train_state)
        leaves = {str(i): np.asarray(a) for i, a in enumerate(jax.tree.leaves((ts.params, ts.state)))}
        np.savez(os.path.join(directory, f"result{name}_{pid}.npz"), **leaves)
        with open(os.path.join(directory, f"history{name}_{pid}.json"), "w") as f:
            json.dump({**h.history, "sharded_params": sharded_params}, f)


def sharded() -> dict:
    """fit of a decoder LM with FSDP (8 x 1) and FSDP + tensor parallel (4 x 2) against one device;
    checkpoints across meshes; docs/scaling.md."""
    import jax
    import jax.numpy as jnp

    import fnn
    from fnn import parallel

    model = fnn.Sequential(
        [fnn.Embedding(64, 64), fnn.Repeat(fnn.TransformerDecoderBlock(4, 256), 2), fnn.Dense(64)]
    )
    params, _ = model.init(jax.random.key(0), fnn.Shape((16,), jnp.int32))
    report: dict = {"devices": len(jax.devices())}
    # fit: the same run on one device, under FSDP, and under FSDP + tensor parallel.
    data = np.asarray(jax.random.randint(jax.random.key(2), (64, 17), 0, 64))
    kw = {"loss": "sparse_categorical_crossentropy", "optimizer": "sgd", "epochs": 2, "batch_size": 16,
          "verbose": 0, "validation_split": 0.25}  # fmt: skip
    one = fnn.fit(model, data[:, :-1], data[:, 1:], **kw)
    # Under FSDP on 8 devices, checkpointed at each epoch's end: resumed from epoch 1's on 8 (bitwise).
    # On one device: sharded_files restores it whole, docs/scaling.md resumes on it, and
    # benchmarks/sharding.py resumes on 4 and 1.
    import tempfile

    checkpoint = fnn.ModelCheckpoint(tempfile.mkdtemp())
    fsdp8 = {"mesh": parallel.make_mesh(data=8), "sharding": [parallel.fsdp()]}
    fits = [
        fnn.fit(model, data[:, :-1], data[:, 1:], **kw, callbacks=[checkpoint], **fsdp8),
        fnn.fit(
            model, data[:, :-1], data[:, 1:], mesh=parallel.make_mesh(data=4, model=2),
            sharding=[parallel.tensor_parallel(), parallel.fsdp()], **kw,
        ),
    ]  # fmt: skip
    saved = checkpoint.manager.path(1)
    resumed = fnn.fit(model, data[:, :-1], data[:, 1:], **kw, resume_from=saved, **fsdp8)
    report["resumed_bitwise_on_8"] = bitwise_equal(resumed.train_state[:4], fits[0].train_state[:4])
    split = fits[0].params
    report["fsdp"] = {
        "largest_device_share": max(parallel.device_bytes(split).values())
        / sum(a.nbytes for a in jax.tree.leaves(split)),
        "query_spec": str(split["repeat"]["attention"]["query"]["w"].sharding.spec),
    }
    report["fit"] = {
        "max_difference": [max_difference(one.params, h.params) for h in fits],
        "sharded": [not h.params["repeat"]["mlp"]["up"]["w"].sharding.is_fully_replicated for h in fits],
        "val_loss": [one.history["val_loss"][-1]] + [h.history["val_loss"][-1] for h in fits],
        # predict takes the split params as they are (FSDP + TP), and gives what one device's give.
        "predict": max_difference(
            *(fnn.predict(model, h.params, h.state, data[:16, :-1], batch_size=16) for h in (one, fits[1]))
        ),
    }
    report["files"] = sharded_files(params, parallel.make_mesh(data=8), parallel.make_mesh(data=4, model=2))
    report["scaling_page"] = scaling_page()
    return report


def sharded_files(params, mesh8, mesh42) -> dict:
    """A checkpoint of params split over 8 devices: its files, restored onto 4 x 2 and whole, and what
    corruption, an edited manifest and a failed save do."""
    import tempfile
    from pathlib import Path

    import jax

    from fnn import checkpoint, parallel

    placed = parallel.shard(params, mesh8, parallel.partition_specs(params, mesh8, parallel.fsdp()))
    path = checkpoint.save(Path(tempfile.mkdtemp()) / "ckpt", {"params": placed, "key": jax.random.key(4)})
    manifest = json.loads((path / checkpoint.MANIFEST).read_text())
    specs = parallel.partition_specs(params, mesh42, parallel.tensor_parallel(), parallel.fsdp())
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        params,
        parallel.named_shardings(mesh42, specs),
    )
    onto = checkpoint.restore(path, {"params": target, "key": jax.random.key(0)})
    whole = checkpoint.restore(path)
    report = {
        "listing": sorted(p.name for p in path.iterdir()),
        "version": manifest["version"],
        "up_shards": len(manifest["tensors"]["params/repeat/mlp/up/w"]["shards"]),
        "onto_4x2": bitwise_equal(onto["params"], params)
        and jax.tree.map(lambda a: a.sharding, onto["params"]) == jax.tree.map(lambda t: t.sharding, target),
        "whole": bitwise_equal(whole["params"], params) and bitwise_equal(jax.random.key_data(whole["key"]),
                                                                          jax.random.key_data(jax.random.key(4))),
    }  # fmt: skip

    def error(edit) -> str:
        copy = Path(tempfile.mkdtemp()) / "ckpt"
        shutil.copytree(path, copy)
        edit(copy)
        try:
            checkpoint.restore(copy)
        except checkpoint.CheckpointError as e:
            return str(e).replace(str(copy), "CKPT")
        return "restored"

    def flip(copy) -> None:
        data = bytearray((copy / "shards-00000.safetensors").read_bytes())
        data[-1] ^= 1
        (copy / "shards-00000.safetensors").write_bytes(bytes(data))

    def drop_shard(copy) -> None:  # a consistent manifest (digest recomputed) that misses one part
        edited = json.loads((copy / checkpoint.MANIFEST).read_text())
        edited["tensors"]["params/repeat/mlp/up/w"]["shards"].pop()
        edited[checkpoint.MANIFEST_DIGEST] = checkpoint._manifest_digest(edited)
        (copy / checkpoint.MANIFEST).write_text(json.dumps(edited))

    truncate = lambda copy: os.truncate(copy / "shards-00000.safetensors", 1000)  # noqa: E731
    report["errors"] = {"flipped": error(flip), "truncated": error(truncate), "dropped": error(drop_shard)}

    def crash(*args):
        raise OSError("disk full")

    real, checkpoint._commit = checkpoint._commit, crash
    try:
        checkpoint.save(path, {"params": placed}, overwrite=True)
    except OSError as e:
        report["crash"] = str(e)
    finally:
        checkpoint._commit = real
    report["after_crash"] = (
        sorted(p.name for p in path.parent.iterdir()),
        bitwise_equal(checkpoint.restore(path)["params"], params),
    )
    return report


def scaling_page() -> list[str]:
    """What docs/scaling.md's ``scaling.py`` blocks print, run on these devices in a folder of their own
    (tests/test_docs.py shows titled blocks without running them: one device would not do)."""
    import contextlib
    import io
    import tempfile
    from pathlib import Path

    from tests.test_docs import FENCE

    page = Path(__file__).resolve().parent.parent / "docs" / "scaling.md"
    blocks = [m["body"] for m in FENCE.finditer(page.read_text()) if m["info"] == 'python title="scaling.py"']
    out, here = io.StringIO(), os.getcwd()
    os.chdir(tempfile.mkdtemp())
    try:
        with contextlib.redirect_stdout(out):
            exec(compile("\n".join(blocks), str(page), "exec"), {"__name__": "__main__"})
    finally:
        os.chdir(here)
    return out.getvalue().splitlines()


if __name__ == "__main__":
    if sys.argv[1] == "devices":
        print(json.dumps(devices()))
    elif sys.argv[1] == "sharded":
        print(json.dumps(sharded()))
    else:
        train(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[1])
