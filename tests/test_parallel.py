"""Data-parallel fit: simulated devices, two processes on loopback, a peer that dies.

JAX fixes its device count and its distributed client when it starts, so those
runs happen in subprocesses (tests/parallel_worker.py); the checks are here.

Tolerance: a mesh splits each batch's sums (the gradient mean, BatchNorm's
statistics) into per-device partial sums, so the float32 results differ from one
device's in the last bits (observed: a few 1e-8 after 30 steps). The models are
trained with SGD, or with Adam where no parameter's gradient is zero: Adam
divides a zero gradient's rounding noise by its own size and turns it into
full-size steps, which says nothing about data parallelism.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from tests import parallel_worker as worker

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-6  # max abs difference of params and state; float32 eps is 1.2e-7


def run_worker(*args: str, devices: int, timeout: float = 300) -> subprocess.Popen:
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices), "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.parallel_worker", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_fit_on_8_simulated_devices_matches_one_device_and_repeats_bitwise():
    proc = run_worker("devices", devices=8)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["devices"] == 8
    for name in ("batchnorm_sgd", "mlp_adam"):
        result = report[name]
        assert result["max_difference"] < TOLERANCE, (name, result)
        assert result["repeat_bitwise"] and result["fused_bitwise"] and result["replicated"], (name, result)
        np.testing.assert_allclose(*result["val_loss"], rtol=1e-5)
    assert re.fullmatch(
        r"fit: batch_size has 36 examples, which do not split evenly over the mesh's 8 devices along "
        r"'data'; use a multiple of 8 \(nothing is padded or dropped silently\)",
        report["indivisible_error"],
    )
    assert re.fullmatch(
        r"fit: the last batch \(100 examples in batches of 32\) has 4 examples, which do not split evenly "
        r"over the mesh's 8 devices along 'data'; pick a batch_size that leaves a multiple of 8, or trim the "
        r"data \(nothing is padded or dropped silently\)",
        report["last_batch_error"],
    )


def start_checkpoint(directory: Path) -> dict:
    params, state = worker.batchnorm_model().init(jax.random.key(5), (64,))
    fnn.checkpoint.save(directory / "start", {"params": params, "state": state})
    return {"params": params, "state": state}


def leaves(ts) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves((ts.params, ts.state))]


def one_process(start: dict, epochs: int = worker.EPOCHS) -> fnn.History:
    """The two processes' run, in one process on one device."""
    x, y = worker.single_process_order(worker.digits())
    return fnn.fit(
        worker.batchnorm_model(), x, y, optimizer="sgd", shuffle=False, validation_data=worker.digits(),
        params=start["params"], state=start["state"], **{**worker.FIT, "epochs": epochs},
    )  # fmt: skip


def results_of(tmp_path: Path, name: str = "") -> list[np.ndarray]:
    """What both processes saved as ``result{name}``, checked to be the same bytes."""
    results = [np.load(tmp_path / f"result{name}_{pid}.npz") for pid in (0, 1)]
    assert all(results[0][k].tobytes() == results[1][k].tobytes() for k in results[0].files)
    return [results[0][str(i)] for i in range(len(results[0].files))]


def assert_matches(multi: list[np.ndarray], single: fnn.History, history: dict) -> None:
    for a, b in zip(multi, leaves(single.train_state), strict=True):
        np.testing.assert_allclose(a, b, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(history["loss"], single.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(history["val_loss"], single.history["val_loss"], rtol=1e-5)  # over processes


def two_processes_match_one(tmp_path: Path, mode: str) -> tuple[list[np.ndarray], dict, dict]:
    """Runs worker ``mode`` in two processes on loopback; checks they end identical and match one process."""
    start = start_checkpoint(tmp_path)  # a single-process checkpoint both processes restore
    port = free_port()
    procs = [run_worker(mode, str(pid), port, str(tmp_path), devices=2) for pid in (0, 1)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    multi = results_of(tmp_path)
    history = json.loads((tmp_path / "history_0.json").read_text())
    assert_matches(multi, one_process(start), history)
    return multi, history, start


def backup_equals(manager: fnn.checkpoint.CheckpointManager, step: int, multi: list[np.ndarray]) -> bool:
    restored = manager.restore(step)["train_state"]  # on one device, whatever wrote it
    got = jax.tree.leaves((restored["params"], restored["state"]))
    return len(got) == len(multi) and all(np.array_equal(np.asarray(a), b) for a, b in zip(got, multi))


def test_two_processes_on_loopback_end_identical_and_match_one_process(tmp_path):
    multi, _, _ = two_processes_match_one(tmp_path, "train")
    # Process 0 alone wrote the backups of the replicated state; a single process restores them.
    backup = fnn.checkpoint.CheckpointManager(tmp_path / "backup")
    assert backup.latest() == worker.EPOCHS * (worker.EXAMPLES // worker.BATCH)
    assert backup_equals(backup, backup.latest(), multi)


def test_two_processes_train_split_params_back_them_up_in_parts_and_resume_on_another_mesh(tmp_path):
    # FSDP over 2 processes x 2 devices: each process holds only its parts of the params.
    multi, history, start = two_processes_match_one(tmp_path, "fsdp")
    assert history["sharded_params"]
    # Each process wrote its parts of each backup, in a file of its own.
    backup = fnn.checkpoint.CheckpointManager(tmp_path / "backup")
    steps = [epochs * (worker.EXAMPLES // worker.BATCH) for epochs in (worker.EPOCHS, worker.EPOCHS + 1)]
    assert backup.steps() == steps
    for step in steps:
        manifest = json.loads((backup.path(step) / fnn.checkpoint.MANIFEST).read_text())
        assert (manifest["version"], sorted(manifest["shard_files"])) == (
            3,
            ["shards-00000.safetensors", "shards-00001.safetensors"],
        )
    assert backup_equals(backup, steps[0], multi)
    # The run went on for an epoch from those backups on a 2 x 2 mesh, its params now split along
    # "model" inside each process, as one process would have, and backed up what it ended with.
    longer = results_of(tmp_path, "_longer")
    history = json.loads((tmp_path / "history_longer_0.json").read_text())
    assert_matches(longer, one_process(start, worker.EPOCHS + 1), history)
    assert backup_equals(backup, steps[1], longer)


def run_pair(tmp_path: Path, mode: str, devices: int, timeout: float) -> tuple[list, list[str]]:
    """Worker ``mode`` in two processes on loopback, from a start checkpoint: the processes and outputs."""
    start_checkpoint(tmp_path)
    port = free_port()
    procs = [run_worker(mode, str(pid), port, str(tmp_path), devices=devices) for pid in (0, 1)]
    return procs, [p.communicate(timeout=timeout)[0] for p in procs]  # a hang fails here


def test_a_peer_that_dies_makes_the_survivor_fail_instead_of_hanging(tmp_path):
    procs, outs = run_pair(tmp_path, "die", devices=1, timeout=120)
    assert procs[1].returncode == 17, outs[1][-2000:]
    assert procs[0].returncode != 0
    assert re.search(r"heartbeat timeout|Connection reset by peer|another task died", outs[0]), outs[0][
        -3000:
    ]
    assert not (tmp_path / "result_0.npz").exists()
    # Process 1 died just before the backup both write parts of: none is left half-written.
    assert fnn.checkpoint.CheckpointManager(tmp_path / "backup").steps() == []


def test_a_peer_that_hangs_ends_both_processes_within_the_watchdog_timeout_and_the_backup_restores(tmp_path):
    # Process 1 stops (alive: JAX's heartbeats go on) at epoch 2's start; process 0 waits in the step's
    # collective, which has no timeout of its own. Each process's fnn.Watchdog ends it.
    procs, outs = run_pair(tmp_path, "hang", devices=2, timeout=150)
    assert procs[0].returncode == 70, outs[0][-3000:]
    assert re.search(
        rf"fnn\.Watchdog: no progress for {worker.HANG_TIMEOUT_S} s since epoch 1 began \(process 0\): a peer "
        r"process is stuck or dead, or this one is; ending the run",
        outs[0],
    ), outs[0][-3000:]
    assert "Thread" in outs[0]  # where each thread was stuck
    # Process 1 ends by its own watchdog, or by the coordinator once process 0 is gone.
    assert procs[1].returncode != 0, outs[1][-3000:]
    # The last complete backup (epoch 1's, in both processes' parts) restores, on one device.
    backup = fnn.checkpoint.CheckpointManager(tmp_path / "backup")
    assert backup.steps() == [worker.EXAMPLES // worker.BATCH]
    restored = backup.restore()["train_state"]
    assert int(restored["step"]) == worker.EXAMPLES // worker.BATCH
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(restored["params"]))


def test_a_one_device_mesh_trains_exactly_as_no_mesh():
    x, y = worker.digits()
    kw = {**worker.FIT, "optimizer": "adam", "metrics": ["accuracy"]}
    plain = fnn.fit(worker.mlp_model(), x, y, **kw)
    meshed = fnn.fit(worker.mlp_model(), x, y, mesh=fnn.parallel.data_mesh(jax.devices()[:1]), **kw)
    for a, b in zip(leaves(plain.train_state), leaves(meshed.train_state)):
        np.testing.assert_array_equal(a, b)
    assert plain.history == meshed.history


def test_fit_names_a_bad_mesh():
    x, y = worker.digits()
    with pytest.raises(TypeError, match=r"fit: mesh must be a jax.sharding.Mesh .* got 'data'"):
        fnn.fit(worker.mlp_model(), x, y, loss="mse", mesh="data")
    other = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match=r"fit: mesh must have a 'data' axis .* got axes \('batch',\)"):
        fnn.fit(worker.mlp_model(), x, y, loss="mse", mesh=other)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"coordinator_address": "localhost"}, r"coordinator_address must be 'host:port' .* got 'localhost'"),
        ({"num_processes": 0}, r"num_processes must be a positive int, got 0"),
        (
            {"num_processes": 2, "process_id": 2},
            r"initialize: process_id must be an int in \[0, num_processes-1=1\], got 2",
        ),
        ({"heartbeat_timeout_s": 0}, r"initialize: heartbeat_timeout_s must be a positive int, got 0"),
    ],
)
def test_initialize_checks_its_arguments_before_starting_anything(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fnn.parallel.initialize(**{"coordinator_address": "127.0.0.1:1234", **kwargs})


def test_initialize_reads_counts_from_the_environment(monkeypatch):
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match=r"environment variable JAX_NUM_PROCESSES must be an int, got 'two'"):
        fnn.parallel.initialize("127.0.0.1:1234")


def test_single_process_helpers():
    assert fnn.parallel.is_primary()
    fnn.parallel.barrier("no-op in one process")
    with pytest.raises(ValueError, match=r"data_mesh: devices is empty"):
        fnn.parallel.data_mesh([])
    mesh = fnn.parallel.data_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    assert jnp.ones(()).sharding.is_fully_replicated


def test_fused_steps_need_arrays_or_a_stream_on_one_device():
    x, y = worker.digits()
    with pytest.raises(
        ValueError,
        match=r"steps_per_execution > 1 needs in-memory arrays \(x and y\) in one process, or a stream of batches on one device",
    ):
        fnn.fit(
            worker.mlp_model(),
            [(x[:48], y[:48])],
            loss="sparse_categorical_crossentropy",
            steps_per_execution=2,
            mesh=fnn.parallel.data_mesh(jax.devices()[:1]),
        )


def test_fsdp_and_tensor_parallel_training_matches_one_device_on_8_simulated_devices():
    proc = run_worker("sharded", devices=8)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["devices"] == 8
    # Under FSDP each device holds about 1/8 of the params (small arrays stay replicated).
    assert report["fsdp"]["largest_device_share"] < 0.15, report["fsdp"]
    assert report["fsdp"]["query_spec"] == "P(None, 'data', None, None)"  # (copies, features, heads, dim)
    # fit(mesh=..., sharding=...): FSDP on 8 x 1 and FSDP + tensor parallel on 4 x 2 train as one device
    # does (SGD: 1.5e-8 here) and keep the params split.
    fit = report["fit"]
    assert max(fit["max_difference"]) < 1e-6 and all(fit["sharded"]) and fit["predict"] < 1e-5, fit
    np.testing.assert_allclose(fit["val_loss"][1:], fit["val_loss"][0], rtol=1e-6)
    # A checkpoint written under FSDP on 8 devices resumes bitwise there.
    assert report["resumed_bitwise_on_8"], report
    # A checkpoint of params split over 8 devices: one file of shards from the one process, each shard
    # listed; restored onto a 4 x 2 mesh (placed as asked) and whole, bitwise; each corruption named.
    files = report["files"]
    assert files["listing"] == ["manifest.json", "shards-00000.safetensors"], files
    assert (files["version"], files["up_shards"], files["onto_4x2"], files["whole"]) == (3, 8, True, True)
    errors = files["errors"]
    assert re.fullmatch(
        r"CKPT/shards-00000\.safetensors: shard '[^']+@[0-9:,]*': its bytes do not match the manifest's "
        r"sha256 \(corrupted data\)",
        errors["flipped"],
    ), errors
    assert re.fullmatch(
        r"CKPT/shards-00000\.safetensors: 1000 bytes, but the manifest declares \d+ \(truncated\)",
        errors["truncated"],
    )
    assert errors["dropped"] == (
        "CKPT/manifest.json: tensor 'params/repeat/mlp/up/w'[2, 64, 256]: its shards cover 28672 of its "
        "32768 elements"
    )
    # A save that fails before its rename leaves the previous checkpoint, and no scratch.
    assert files["crash"] == "disk full" and files["after_crash"] == [["ckpt"], True], files
    # docs/scaling.md, run on the 8 devices it describes.
    printed = report["scaling_page"]
    assert "FSDP over 8 devices: the fullest device holds 0.1" in "\n".join(printed), printed
    assert printed[-1] == "resumed on one device, epoch [1]", printed
