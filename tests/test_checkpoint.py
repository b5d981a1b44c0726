"""fnn.checkpoint: round trips, corruption, crash safety, mismatch reports, manager, transfer."""

from __future__ import annotations

import builtins
import importlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import tokenize
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
from fnn.checkpoint import MANIFEST, TENSORS, CheckpointError, CheckpointManager, restore, save, transfer

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
    (tmp_path / ".c.tmp-0123").mkdir()
    (tmp_path / ".other.tmp-0123").mkdir()
    save(tmp_path / "c", {"a": jnp.ones(1)})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-0123", "c"]


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
    elif how.startswith("truncate"):
        file.write_bytes(raw[: int(how.split()[-1]) if how[-1].isdigit() else len(raw) - 1])
    elif how == "remove tensors":
        file.unlink()
    elif how == "remove manifest":
        (path / MANIFEST).unlink()
    elif how == "manifest not JSON":
        (path / MANIFEST).write_text("{")
    elif how == "manifest drops a tensor":
        manifest = json.loads((path / MANIFEST).read_text())
        del manifest["tensors"]["bools"]
        (path / MANIFEST).write_text(json.dumps(manifest))
    elif how == "manifest digest edited":
        manifest = json.loads((path / MANIFEST).read_text())
        manifest["tensors"]["f32"]["sha256"] = "0" * 64
        (path / MANIFEST).write_text(json.dumps(manifest))
    elif how == "manifest dtype unknown":
        manifest = json.loads((path / MANIFEST).read_text())
        manifest["tensors"]["f32"]["dtype"] = "object"
        (path / MANIFEST).write_text(json.dumps(manifest))


CORRUPTIONS = {
    "flip a data bit": r"tensor 'f32': its bytes do not match the manifest's sha256",
    "change a dtype": r"tensor 'f32': the file's header says I32\[2, 3\], the manifest F32\[2, 3\]",
    "change a shape": r"tensor 'f32': the file's header says F32\[3, 2\]",
    "rename a key": r"tensor 'f33' is in the file but not in the manifest; tensor 'f32' is in the manifest",
    "empty file": r"tensors.safetensors: not a valid safetensors file",
    "foreign file": r"tensors.safetensors: not a valid safetensors file",
    "truncate 0": r"not a valid safetensors file",
    "truncate 7": r"not a valid safetensors file",
    "truncate 100": r"not a valid safetensors file",
    "truncate last byte": r"not a valid safetensors file",
    "remove tensors": r"tensors.safetensors: missing",
    "remove manifest": r"manifest.json: missing; .* is not a complete fnn checkpoint",
    "manifest not JSON": r"manifest.json: not valid JSON",
    "manifest drops a tensor": r"manifest.json: inconsistent: the tree names tensors \['bools'\] that are not listed",
    "manifest digest edited": r"tensor 'f32': its bytes do not match",
    "manifest dtype unknown": r"manifest.json: malformed entry for tensor 'f32'",
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
    import os, signal, sys, shutil, builtins
    import jax.numpy as jnp
    import fnn.checkpoint as ck

    directory, kill_at = sys.argv[1], int(sys.argv[2])
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
    for step in (1, 2):
        manager.save(step, {"w": jnp.full((1000,), step, jnp.float32)})
    print("calls", calls[0])
    """
)


def test_a_save_killed_at_any_point_leaves_the_previous_checkpoint_loadable(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    # Without the suite's compilation cache: its file writes would shift the counted calls.
    inherited = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env = {**inherited, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    total = subprocess.run(
        [sys.executable, script, tmp_path / "probe", "0"], env=env, capture_output=True, text=True, check=True
    )
    n_calls = int(total.stdout.split()[-1])
    first_save_calls = n_calls // 2
    assert n_calls >= 10
    for kill_at in range(first_save_calls + 1, n_calls + 1):  # every point of the second save
        directory = tmp_path / f"run{kill_at}"
        proc = subprocess.run([sys.executable, script, directory, str(kill_at)], env=env, capture_output=True)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        manager = CheckpointManager(directory)  # also removes leftover temporary directories
        latest = manager.latest()
        assert latest in (1, 2), kill_at
        assert manager.restore()["w"][0] == latest
        assert all(not p.name.startswith(".") for p in directory.iterdir())


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
    (tmp_path / ".ckpt_000000005.tmp-abc").mkdir()
    assert CheckpointManager(tmp_path).latest() == 1
    assert not (tmp_path / ".ckpt_000000005.tmp-abc").exists()


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
