"""fnn.checkpoint: round trips, corruption, crash safety, mismatch reports, manager, transfer."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import importlib
import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import tokenize
import uuid
from pathlib import Path
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

import fnn
from fnn.checkpoint import (
    MANIFEST,
    MANIFEST_DIGEST,
    TENSORS,
    CheckpointError,
    CheckpointManager,
    restore,
    save,
    transfer,
)

ROOT = Path(__file__).resolve().parents[1]


class Pair(NamedTuple):
    first: object
    second: object


def tree():
    return {
        "f32": jnp.arange(6, dtype=jnp.float32).reshape(2, 3),
        "bf16": jnp.linspace(-1, 1, 5, dtype=jnp.bfloat16),
        "scalar": jnp.asarray(3, jnp.int32),
        "empty": jnp.zeros((0, 4), jnp.float16),
        "bools": jnp.asarray([True, False]),
        "keys": [jax.random.key(1), jax.random.split(jax.random.key(2), 3), jax.random.key(3, impl="rbg")],
        "pair": Pair(np.full((2,), 7, np.uint8), (None, 1.5, "text", True, 4)),
        "none": None,
        "nested": {"list": [jnp.ones(1, jnp.int8)], "tuple": (jnp.ones(2, jnp.complex64),)},
    }


def same(a, b):
    """Bitwise equality of two pytrees, typed keys compared by their data."""
    unwrap = lambda t: jax.tree.map(lambda x: jax.random.key_data(x) if fnn.checkpoint._is_key(x) else x, t)
    chex.assert_trees_all_equal(unwrap(a), unwrap(b), strict=True)


@pytest.fixture
def ckpt(tmp_path):
    return save(tmp_path / "ckpt", tree(), metadata={"epoch": 3, "loss": float("nan")})


# ------------------------------------------------------------------ round trips


def test_round_trip_into_a_target_is_bitwise_and_keeps_containers(ckpt):
    back = restore(ckpt, tree())
    same(back, tree())
    assert isinstance(back["pair"], Pair) and back["keys"][2].dtype == jax.random.key(0, impl="rbg").dtype
    assert fnn.checkpoint.read_metadata(ckpt)["epoch"] == 3


def test_round_trip_without_a_target_rebuilds_plain_containers(ckpt):
    back = restore(ckpt)
    expected = {**tree(), "pair": {"first": tree()["pair"].first, "second": tree()["pair"].second}}
    same(back, expected)
    assert type(back["pair"]) is dict and type(back["nested"]["tuple"]) is tuple


@pytest.mark.parametrize(
    "dtype",
    [np.bool_, np.int8, np.uint16, np.int32, np.uint32, np.float16, ml_dtypes.bfloat16, np.float32,
     ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, np.complex64, np.int64, np.float64],
)  # fmt: skip
@pytest.mark.parametrize("shape", [(), (3,), (2, 0), (2, 3, 4)])
def test_every_dtype_and_shape_round_trips(tmp_path, dtype, shape):
    with jax.enable_x64(True):
        x = jnp.asarray((np.arange(int(np.prod(shape))) % 3).reshape(shape).astype(dtype))
        save(tmp_path / "c", {"x": x})
        back = restore(tmp_path / "c")["x"]
        assert back.dtype == x.dtype and back.shape == shape
        np.testing.assert_array_equal(np.asarray(back), np.asarray(x))


def test_a_train_state_with_optimiser_state_round_trips(tmp_path):
    model = fnn.Sequential([fnn.Dense(4), fnn.BatchNorm(), fnn.Dense(2)])
    ts = fnn.TrainState.create(model, fnn.optimizers.get("adamw"), (3,), jax.random.key(0))
    save(tmp_path / "c", ts)
    back = restore(tmp_path / "c", ts)
    same(back, ts)
    assert isinstance(back, fnn.TrainState) and isinstance(back.opt_state[0][0], optax.ScaleByAdamState)


def test_64_bit_tensors_without_x64_are_refused_not_cast(tmp_path):
    with jax.enable_x64(True):
        save(tmp_path / "c", {"w": jnp.ones(2, jnp.float64)})
    with pytest.raises(CheckpointError, match=r"'w' is float64, which needs jax_enable_x64"):
        restore(tmp_path / "c")


def test_unsaveable_trees_are_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot save object at 'a/0'"):
        save(tmp_path / "c", {"a": [object()]})
    with pytest.raises(CheckpointError, match=r"dict keys must be strings"):
        save(tmp_path / "c", {1: jnp.ones(1)})
    with pytest.raises(CheckpointError, match=r"metadata must be plain JSON"):
        save(tmp_path / "c", {"a": jnp.ones(1)}, metadata={"f": print})
    assert not (tmp_path / "c").exists()
    save(tmp_path / "c", {"a": jnp.ones(1)})
    with pytest.raises(CheckpointError, match=r"exists; pass overwrite=True"):
        save(tmp_path / "c", {"a": jnp.ones(1)})
    save(tmp_path / "c", {"a": jnp.zeros(1)}, overwrite=True)
    assert restore(tmp_path / "c")["a"].tolist() == [0.0]
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary directories left


def test_save_removes_what_a_crashed_save_of_the_same_path_left(tmp_path):
    token = uuid.uuid4().hex
    (tmp_path / f".c.tmp-{token}").mkdir()
    (tmp_path / f".other.tmp-{token}").mkdir()
    save(tmp_path / "c", {"a": jnp.ones(1)})
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.tmp-{token}", "c"]


# ------------------------------------------------------------------ mismatches


def test_restoring_into_a_different_structure_lists_every_mismatch(tmp_path):
    save(tmp_path / "c", {"dense": {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}, "old": jnp.ones(1)})
    target = {
        "dense": {"w": jnp.ones((4, 2)), "b": jnp.ones(2, jnp.int32)},
        "new": jax.ShapeDtypeStruct((5,), jnp.float32),
    }
    with pytest.raises(CheckpointError) as info:
        restore(tmp_path / "c", target)
    message = str(info.value)
    for line in [
        "dense/b: the checkpoint has float32[2], the target expects int32[2]",
        "dense/w: the checkpoint has float32[3, 2], the target expects float32[4, 2]",
        "missing from the checkpoint: new (float32[5])",
        "not in the target: old (float32[1])",
    ]:
        assert line in message


def test_restore_into_abstract_target(tmp_path):
    params = {"w": jnp.arange(3.0)}
    save(tmp_path / "c", params)
    same(restore(tmp_path / "c", jax.eval_shape(lambda: params)), params)


# ------------------------------------------------------------------ corruption


def header(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return raw, n, json.loads(raw[8 : 8 + n])


def write_header(path, raw, n, new):
    text = json.dumps(new, separators=(",", ":")).encode()
    assert len(text) <= n
    path.write_bytes(raw[:8] + text.ljust(n) + raw[8 + n :])


def reseal(path, edit):
    """Edits a checkpoint's manifest and writes it with a matching digest, as a buggy writer would.

    The digest is computed here from the file format's definition, not by fnn.
    """
    manifest = json.loads((path / MANIFEST).read_text())
    edit(manifest)
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    manifest[MANIFEST_DIGEST] = hashlib.sha256(canonical).hexdigest()
    (path / MANIFEST).write_text(json.dumps(manifest))


def corrupt(path, how):
    file = path / TENSORS
    raw, n, head = header(file)
    if how == "flip a data bit":
        start = 8 + n + head["f32"]["data_offsets"][0] + 5
        file.write_bytes(raw[:start] + bytes([raw[start] ^ 0x10]) + raw[start + 1 :])
    elif how == "change a dtype":
        head["f32"]["dtype"] = "I32"
        write_header(file, raw, n, head)
    elif how == "change a shape":
        head["f32"]["shape"] = [3, 2]
        write_header(file, raw, n, head)
    elif how == "rename a key":
        head["f33"] = head.pop("f32")
        write_header(file, raw, n, head)
    elif how == "empty file":
        file.write_bytes(b"")
    elif how == "foreign file":
        file.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "foreign file of the declared size":
        file.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    elif how == "append a byte":
        file.write_bytes(raw + b"\0")
    elif how.startswith("truncate"):
        file.write_bytes(raw[: int(how.split()[-1]) if how[-1].isdigit() else len(raw) - 1])
    elif how == "remove tensors":
        file.unlink()
    elif how == "remove manifest":
        (path / MANIFEST).unlink()
    elif how == "manifest not JSON":
        (path / MANIFEST).write_text("{")
    elif how == "manifest edited":
        (path / MANIFEST).write_text((path / MANIFEST).read_text().replace('"epoch": 3', '"epoch": 4'))
    elif how == "manifest drops a tensor":
        reseal(path, lambda m: m["tensors"].pop("bools"))
    elif how == "manifest digest edited":
        reseal(path, lambda m: m["tensors"]["f32"].update(sha256="0" * 64))
    elif how == "manifest dtype unknown":
        reseal(path, lambda m: m["tensors"]["f32"].update(dtype="object"))
    elif how == "manifest dtype not a string":
        reseal(path, lambda m: m["tensors"]["f32"].update(dtype={"F32": 1}))
    elif how == "manifest names a tensor by a number":
        reseal(path, lambda m: m["tree"]["dict"]["bf16"].update(tensor=1.5))
    elif how == "manifest key_impl edited":
        reseal(path, lambda m: m["tensors"]["keys/0"].update(key_impl="rbg"))
    elif how == "manifest declares another size":
        reseal(path, lambda m: m.update(tensors_bytes=m["tensors_bytes"] + 1))
    elif how == "manifest is a directory":
        (path / MANIFEST).unlink()
        (path / MANIFEST).mkdir()
    elif how == "tensors is a directory":
        file.unlink()
        file.mkdir()
    elif how == "manifest is too large":
        with open(path / MANIFEST, "r+b") as f:
            f.truncate(fnn.checkpoint.MAX_MANIFEST_BYTES + 1)  # sparse: takes no disk space


CORRUPTIONS = {
    "flip a data bit": r"tensor 'f32': its bytes do not match the manifest's sha256",
    "change a dtype": r"tensor 'f32': the file's header says I32\[2, 3\], the manifest F32\[2, 3\]",
    "change a shape": r"tensor 'f32': the file's header says F32\[3, 2\]",
    "rename a key": r"tensor 'f33' is in the file but not in the manifest; tensor 'f32' is in the manifest",
    "empty file": r"tensors.safetensors: 0 bytes, but the manifest declares \d+ \(truncated\)",
    "foreign file": r"tensors.safetensors: 4096 bytes, more than the \d+ expected",
    "foreign file of the declared size": r"tensors.safetensors: not a valid safetensors file",
    "append a byte": r"tensors.safetensors: \d+ bytes, more than the \d+ expected",
    "truncate 0": r"0 bytes, but the manifest declares",
    "truncate 7": r"7 bytes, but the manifest declares",
    "truncate 100": r"100 bytes, but the manifest declares",
    "truncate last byte": r"tensors.safetensors: \d+ bytes, but the manifest declares \d+ \(truncated\)",
    "remove tensors": r"tensors.safetensors: missing",
    "remove manifest": r"manifest.json: missing; .* is not a complete fnn checkpoint",
    "manifest not JSON": r"manifest.json: not valid JSON",
    "manifest edited": r"manifest.json: its content does not match its manifest_sha256",
    "manifest drops a tensor": r"manifest.json: inconsistent: the tree names tensors \['bools'\] that are not listed",
    "manifest digest edited": r"tensor 'f32': its bytes do not match",
    "manifest dtype unknown": r"manifest.json: malformed entry for tensor 'f32'",
    "manifest dtype not a string": r"manifest.json: malformed entry for tensor 'f32'",
    "manifest names a tensor by a number": r"manifest.json: malformed tree node \{'tensor': 1.5\}",
    "manifest key_impl edited": r"manifest.json: tensor 'keys/0': rbg keys are uint32 data ending in \[4\]",
    "manifest declares another size": r"tensors.safetensors: \d+ bytes, but the manifest declares",
    "manifest is a directory": r"manifest.json: not a regular file but a directory",
    "tensors is a directory": r"tensors.safetensors: not a regular file but a directory",
    "manifest is too large": r"manifest.json: 67108865 bytes, more than the 67108864 expected",
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_corruption_raises_one_checkpoint_error_naming_file_and_path(ckpt, how):
    corrupt(ckpt, how)
    for target in (None, tree()):
        with pytest.raises(CheckpointError, match=CORRUPTIONS[how]):
            restore(ckpt, target)


def test_verify_false_skips_digests_only(ckpt):
    corrupt(ckpt, "flip a data bit")
    assert restore(ckpt, verify=False)["f32"].shape == (2, 3)
    corrupt(ckpt, "change a dtype")
    with pytest.raises(CheckpointError, match="header says I32"):
        restore(ckpt, verify=False)


def test_the_manifest_digest_is_the_sha256_of_its_canonical_json(ckpt):
    digest = json.loads((ckpt / MANIFEST).read_text())[MANIFEST_DIGEST]
    reseal(ckpt, lambda manifest: None)  # computes it from the definition, and writes compact JSON
    assert json.loads((ckpt / MANIFEST).read_text())[MANIFEST_DIGEST] == digest
    same(restore(ckpt, tree()), tree())  # whitespace is not covered: it carries no value


def test_a_flipped_bit_anywhere_in_the_manifest_is_an_error_never_a_different_value(tmp_path):
    """Issue 20: a flip in the metadata's epoch or position made a resumed run train another run."""
    saved = {"w": jnp.arange(3.0), "key": jax.random.key(0), "step": 5, "name": "run", "rate": 0.001}
    metadata = {"epoch": 3, "position": 17, "history": {"loss": [0.5, 0.25]}, "callbacks": [{"wait": 1}]}
    path = save(tmp_path / "c", saved, metadata=metadata)
    raw = (path / MANIFEST).read_bytes()
    numbers = [raw.index(b'"epoch": 3') + 9, raw.index(b'"position": 17') + 12, raw.index(b"0.25") + 3]
    flips = [(i, i % 8) for i in range(len(raw))] + [(i, bit) for i in numbers for bit in range(8)]
    for i, bit in flips:
        (path / MANIFEST).write_bytes(raw[:i] + bytes([raw[i] ^ 1 << bit]) + raw[i + 1 :])
        for load, expected in [(fnn.checkpoint.read_metadata, metadata), (restore, saved)]:
            try:
                back = load(path)
            except CheckpointError:
                continue
            same(back, expected)


class MustNotBlock(BaseException):
    pass


@contextlib.contextmanager
def must_not_block(seconds=30):
    """Fails what blocks for ``seconds`` (with a BaseException no loader catches)."""

    def fail(signum, frame):
        raise MustNotBlock(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def memory_capped(extra_bytes=2 << 30):
    """Fails what allocates more than ``extra_bytes`` with a MemoryError, not the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (in_use + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("name", [MANIFEST, TENSORS])
def test_a_fifo_in_place_of_either_file_is_refused_without_waiting(ckpt, name):
    (ckpt / name).unlink()
    os.mkfifo(ckpt / name)
    for load in (restore, fnn.checkpoint.read_metadata)[: 2 if name == MANIFEST else 1]:
        with (
            must_not_block(),
            pytest.raises(CheckpointError, match=rf"{name}: not a regular file but a FIFO"),
        ):
            load(ckpt)


@pytest.mark.skipif(not (Path("/dev/zero").exists() and Path("/proc/self/statm").exists()), reason="Linux")
@pytest.mark.parametrize("name", [MANIFEST, TENSORS])
def test_a_symlink_to_dev_zero_is_refused_before_reading(ckpt, name):
    restore(ckpt)  # JAX's lazy set-up happens outside the memory cap
    (ckpt / name).unlink()
    os.symlink("/dev/zero", ckpt / name)
    with (
        memory_capped(),
        pytest.raises(CheckpointError, match=rf"{name}: not a regular file but a character"),
    ):
        restore(ckpt)


def test_deeply_nested_manifests_are_refused_not_recursion_errors(ckpt, tmp_path):
    (ckpt / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match=r"manifest.json: nested too deeply"):
        restore(ckpt)

    def nest(manifest):
        for _ in range(300):
            manifest["tree"] = {"list": [manifest["tree"]]}

    path = save(tmp_path / "c", {"w": jnp.ones(1)})
    reseal(path, nest)
    with pytest.raises(CheckpointError, match=r"manifest.json: the tree is nested deeper than 100 levels"):
        restore(path)
    deepest = jnp.ones(1)
    for _ in range(fnn.checkpoint.MAX_DEPTH):
        deepest = [deepest]
    save(tmp_path / "deepest", deepest)
    same(restore(tmp_path / "deepest"), deepest)
    with pytest.raises(CheckpointError, match=r"cannot save a tree nested deeper than 100 levels"):
        save(tmp_path / "deeper", [deepest])


def test_a_format_1_checkpoint_loads_with_a_warning_and_upgrades_by_saving(ckpt, tmp_path):
    manifest = json.loads((ckpt / MANIFEST).read_text())
    (ckpt / MANIFEST).write_text(json.dumps({**manifest, "version": 1}))
    with pytest.raises(
        CheckpointError, match=r"says format version 1 but holds format 2's fields \(edited\)"
    ):
        restore(ckpt)  # a digest check cannot be skipped by editing the version down
    del manifest[MANIFEST_DIGEST], manifest["tensors_bytes"]
    (ckpt / MANIFEST).write_text(json.dumps({**manifest, "version": 1}))
    warning = r"format version 1 .* an edit of its manifest cannot be detected; save it again to upgrade it"
    with pytest.warns(UserWarning, match=warning):
        assert fnn.checkpoint.read_metadata(ckpt)["epoch"] == 3
    with pytest.warns(UserWarning, match=warning):
        save(tmp_path / "upgraded", restore(ckpt, tree()))
    same(restore(tmp_path / "upgraded", tree()), tree())


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_in_place_of_the_tensors_never_runs(ckpt, tmp_path):
    payload = Payload()
    payload.marker = tmp_path / "pwned"
    (ckpt / TENSORS).write_bytes(pickle.dumps(payload))
    (ckpt / MANIFEST).write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError):
        restore(ckpt)
    (ckpt / MANIFEST).unlink()
    with pytest.raises(CheckpointError):
        restore(ckpt)
    assert not payload.marker.exists()


def test_loading_never_unpickles_evaluates_or_imports(ckpt, monkeypatch):
    restore(ckpt, tree())  # first, so that JAX's own lazy imports are done

    def forbidden(*args, **kwargs):
        raise AssertionError("the load path used a forbidden function")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (builtins, "eval"),
                         (builtins, "exec"), (importlib, "import_module"), (np, "load")]:  # fmt: skip
        monkeypatch.setattr(module, name, forbidden)
    real_import = builtins.__import__

    def no_new_imports(name, *args, **kwargs):
        if name not in sys.modules:
            raise AssertionError(f"the load path imported {name}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_new_imports)
    restore(ckpt)
    restore(ckpt, tree())
    fnn.checkpoint.read_metadata(ckpt)


def test_the_checkpoint_module_has_no_code_execution_paths():
    with open(ROOT / "fnn" / "checkpoint.py", "rb") as f:
        names = {t.string for t in tokenize.tokenize(f.readline) if t.type == tokenize.NAME}
    assert not names & {"pickle", "eval", "exec", "import_module", "__import__", "allow_pickle"}


# ------------------------------------------------------------------ crash safety

CRASH_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, shutil
    import numpy as np
    import fnn.checkpoint as ck

    base, steps = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]

    def saves(directory, kill_at):
        manager = ck.CheckpointManager(directory, max_to_keep=1)
        calls = [0]

        def tripwire(fn, partial_write=False):
            def wrapped(*args, **kwargs):
                calls[0] += 1
                if calls[0] == kill_at:
                    if partial_write:  # die halfway through writing the file
                        with open(args[0], "xb") as f:
                            f.write(args[1][: len(args[1]) // 2])
                    os.kill(os.getpid(), signal.SIGKILL)
                return fn(*args, **kwargs)
            return wrapped

        ck._write_file = tripwire(ck._write_file, partial_write=True)
        for module, name in [(os, "fsync"), (os, "rename"), (os, "mkdir"), (shutil, "rmtree")]:
            setattr(module, name, tripwire(getattr(module, name)))
        counts = []
        for i, step in enumerate(steps):  # the i-th save writes the value i + 1
            manager.save(step, {"w": np.full((1000,), i + 1, np.float32)})
            counts.append(calls[0])
        return counts

    def in_a_child(directory, kill_at):
        # A fork of this process, which has imported fnn but started no JAX backend: each run is a
        # new process to kill, without a new interpreter's imports.
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.write(write, " ".join(map(str, saves(directory, kill_at))).encode())
            os._exit(0)
        os.close(write)
        counts = os.read(read, 4096).decode()
        os.close(read)
        return counts, os.waitpid(pid, 0)[1]

    counts, _ = in_a_child(os.path.join(base, "probe"), 0)
    *_, before_last, total = map(int, counts.split())
    for kill_at in range(before_last + 1, total + 1):  # every point of the last save
        _, status = in_a_child(os.path.join(base, f"run{kill_at}"), kill_at)
        print(kill_at, os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL)
    """
)


def kill_the_last_save_at_every_point(tmp_path, steps):
    """Runs the saves of ``steps`` once for each call the last one makes, killed at that call.

    Yields ``(kill_at, manager)``: the run's directory opened by a new manager, as a rerun would.
    """
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    # Without the suite's compilation cache: its file writes would shift the counted calls.
    inherited = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env = {**inherited, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, script, tmp_path, ",".join(map(str, steps))], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    points = [line.split() for line in done.stdout.splitlines()]
    assert len(points) >= 8 and all(killed == "True" for _, killed in points), done.stdout
    for kill_at, _ in points:
        directory = tmp_path / f"run{kill_at}"
        manager = CheckpointManager(directory)  # also clears what the killed save left
        yield int(kill_at), manager
        assert all(not p.name.startswith(".") for p in directory.iterdir()), kill_at


def test_a_save_killed_at_any_point_leaves_the_previous_checkpoint_loadable(tmp_path):
    for kill_at, manager in kill_the_last_save_at_every_point(tmp_path, [1, 2]):
        latest = manager.latest()
        assert latest in (1, 2), kill_at
        assert manager.restore()["w"][0] == latest


def test_overwrite_killed_at_any_point_keeps_the_old_or_the_new_copy(tmp_path):
    """Issue 20: a kill between the two renames of an overwrite left only scratch, then deleted it."""
    for kill_at, manager in kill_the_last_save_at_every_point(tmp_path, [1, 2, 2]):
        assert manager.steps() == [2], kill_at
        assert manager.restore()["w"][0] in (2, 3), kill_at  # the old copy of step 2, or the new one


def test_an_overwrite_that_fails_between_its_renames_puts_the_old_copy_back(tmp_path, monkeypatch):
    save(tmp_path / "c", {"w": jnp.zeros(2)})
    real_rename, calls = os.rename, []

    def failing_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the old copy is aside, the new one not yet in
            raise OSError("the disk went away")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="the disk went away"):
        save(tmp_path / "c", {"w": jnp.ones(2)}, overwrite=True)
    assert restore(tmp_path / "c")["w"].tolist() == [0.0, 0.0]
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_a_lone_old_copy_is_put_back_never_deleted(tmp_path):
    manager = CheckpointManager(tmp_path)
    for step in (1, 2):
        manager.save(step, {"w": jnp.full(1, step)})
    # An overwrite of step 2 killed between its renames; and a finished one of step 1 killed before
    # deleting the old copy; and a prune of a step 3 killed before deleting it.
    scratch = {kind: f"{kind}-{uuid.uuid4().hex}" for kind in ("old", "tmp", "del")}
    os.rename(manager.path(2), tmp_path / f".ckpt_000000002.{scratch['old']}")
    (tmp_path / f".ckpt_000000002.{scratch['tmp']}").mkdir()
    shutil.copytree(manager.path(1), tmp_path / f".ckpt_000000001.{scratch['old']}")
    shutil.copytree(manager.path(1), tmp_path / f".ckpt_000000003.{scratch['del']}")
    (tmp_path / ".notes.old-v1").write_text("a user's file, not a save's scratch")
    manager = CheckpointManager(tmp_path)
    assert manager.steps() == [1, 2] and manager.restore()["w"].tolist() == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.old-v1", "ckpt_000000001", "ckpt_000000002"]
    os.rename(manager.path(2), tmp_path / f".ckpt_000000002.{scratch['old']}")
    with pytest.raises(CheckpointError, match="exists"):  # save puts it back first
        save(manager.path(2), {"w": jnp.full(1, 5)})
    assert manager.restore()["w"].tolist() == [2]


# ------------------------------------------------------------------ manager


def test_manager_keeps_the_newest_and_the_best_and_saves_every_n(tmp_path):
    manager = CheckpointManager(tmp_path, max_to_keep=2, every=2, monitor="val_accuracy")
    accuracies = {2: 0.5, 4: 0.9, 6: 0.7, 8: 0.6, 10: float("nan")}
    for step in range(1, 11):
        saved = manager.save(
            step, {"w": jnp.full(1, step)}, metrics={"val_accuracy": accuracies.get(step, 0)}
        )
        assert (saved is not None) == (step % 2 == 0)
    assert manager.steps() == [4, 8, 10] and manager.best() == 4 and manager.latest() == 10
    assert manager.restore(step=4)["w"].tolist() == [4]
    assert (
        manager.metadata()["metrics"]["val_accuracy"] != manager.metadata()["metrics"]["val_accuracy"]
    )  # NaN


def test_manager_ignores_incomplete_directories_and_cleans_scratch(tmp_path):
    manager = CheckpointManager(tmp_path)
    assert manager.latest() is None
    with pytest.raises(CheckpointError, match="no checkpoints"):
        manager.restore()
    manager.save(1, {"w": jnp.ones(1)})
    (tmp_path / "ckpt_000000009").mkdir()  # no manifest: an interrupted foreign copy
    scratch = tmp_path / f".ckpt_000000005.tmp-{uuid.uuid4().hex}"
    scratch.mkdir()
    assert CheckpointManager(tmp_path).latest() == 1
    assert not scratch.exists()


def test_manager_never_deletes_the_newest(tmp_path):
    manager = CheckpointManager(tmp_path, max_to_keep=1, monitor="loss", keep_best=1)
    manager.save(1, {"w": jnp.ones(1)}, metrics={"loss": 0.1})
    manager.save(2, {"w": jnp.ones(1)}, metrics={"loss": 0.9})
    assert manager.steps() == [1, 2]
    with pytest.raises(ValueError, match=r"CheckpointManager: every must be a positive int, got 0"):
        CheckpointManager(tmp_path, every=0)


# ------------------------------------------------------------------ transfer


def test_transfer_copies_matching_paths_and_reports_the_rest(tmp_path):
    old = {"features": {"w": jnp.ones((3, 4))}, "head": {"w": jnp.ones((4, 10))}}
    new = {"features": {"w": jnp.zeros((3, 4))}, "head": {"w": jnp.zeros((4, 5))}, "extra": jnp.zeros(2)}
    save(tmp_path / "c", {"params": old})
    params, report = transfer(new, tmp_path / "c", include="features", source_prefix="params")
    assert params["features"]["w"].sum() == 12 and params["head"]["w"].sum() == 0
    assert report.loaded == ("features/w",) and report.initialised == ("extra", "head/w")
    assert report.unused == ("head/w",)
    assert "loaded from the source (1):\n  features/w" in str(report)
    with pytest.raises(
        ValueError, match=r"head/w: the source has float32\[4, 10\], the target expects float32\[4, 5\]"
    ):
        transfer(new, old)
    with pytest.raises(ValueError, match=r"pattern 'featurs' matches no parameter"):
        transfer(new, old, include="featurs")
    with pytest.raises(ValueError, match=r"extra: matched by include but not in the source"):
        transfer(new, old, include=["features", "extra"])
    with pytest.raises(ValueError, match=r"no paths under source_prefix 'model'"):
        transfer(new, tmp_path / "c", source_prefix="model")
    keras_named = {"dense": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)}}  # issue 23: was a silent no-op
    with pytest.raises(ValueError, match=r"no source path is a target path .* use fnn.interop.load_torch"):
        transfer(new, keras_named)


def test_the_version_comes_from_the_package_metadata_and_goes_into_the_manifest(tmp_path):
    from importlib import metadata

    assert fnn.__version__ == metadata.version("fnn")
    save(tmp_path / "c", {"w": jnp.ones(1)})
    assert json.loads((tmp_path / "c" / MANIFEST).read_text())["fnn_version"] == fnn.__version__


def sharded_checkpoint(path):
    """A checkpoint in the sharded layout (format 3); on one device each array is one shard (the
    suite's 8-device worker writes real shards: tests/parallel_worker.py)."""
    from fnn.checkpoint import _describe, _save_sharded

    tensors = {}
    structure = _describe(tree(), (), tensors)
    return _save_sharded(path, tensors, structure, {"epoch": 3}, {}, overwrite=False)


def test_the_sharded_layout_restores_the_same_tree(tmp_path):
    path = sharded_checkpoint(tmp_path / "c")
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, "shards-00000.safetensors"]
    same(restore(path, tree()), tree())
    assert fnn.checkpoint.read_metadata(path) == {"epoch": 3}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["shard_files"].update({"../evil.safetensors": 1}), r"field 'shard_files' is missing or malformed"),
        (lambda m: m["tensors"]["f32"]["shards"][0].update(index=[[0, 2], [0, 4]]), r"tensor 'f32': malformed shard"),
        (lambda m: m["tensors"]["f32"]["shards"][0].update(file="shards-00001.safetensors"), r"malformed shard"),
        (lambda m: m["tensors"]["f32"]["shards"].append(m["tensors"]["f32"]["shards"][0]), r"'f32'\[2, 3\]: its shards overlap"),
        (lambda m: m["tensors"]["f32"]["shards"].clear(), r"'f32'\[2, 3\]: its shards cover 0 of its 6 elements"),
        (lambda m: m.update(version=4), r"format version 4; this fnn reads 2, 3 \(sharded\) and 1"),
    ],
)  # fmt: skip
def test_a_sharded_manifest_whose_shards_do_not_tile_each_array_is_refused(tmp_path, edit, message):
    path = sharded_checkpoint(tmp_path / "c")
    reseal(path, edit)
    with pytest.raises(CheckpointError, match=message):
        restore(path)


def test_a_shards_file_that_lacks_a_listed_shard_is_refused(tmp_path):
    path = sharded_checkpoint(tmp_path / "c")
    file = path / "shards-00000.safetensors"
    raw, n, head = header(file)
    head["f32@0:2,0:9"] = head.pop("f32@0:2,0:3")  # same length: the header keeps its size
    write_header(file, raw, n, head)
    with pytest.raises(
        CheckpointError,
        match=r"holds shards \['f32@0:2,0:9'\] the manifest does not list and lacks \['f32@0:2,0:3'\]",
    ):
        restore(path)
