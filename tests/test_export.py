"""fnn.export / fnn.load_exported: StableHLO with the weights, run without the model's code."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn import _random
from fnn._export import FUNCTION_FILE
from fnn.checkpoint import MANIFEST, MANIFEST_DIGEST, CheckpointError

ROOT = Path(__file__).resolve().parents[1]


def cnn():
    model = fnn.Sequential(
        [fnn.Conv2D(4, 3, activation="relu"), fnn.BatchNorm(), fnn.MaxPool2D(2), fnn.Dropout(0.5),
         fnn.Flatten(), fnn.Dense(3)]
    )  # fmt: skip
    params, state = model.init(jax.random.key(0), (8, 8, 1))
    # Non-trivial running statistics, so that exporting them matters.
    x = _random.normal(jax.random.key(1), (16, 8, 8, 1))
    _, state = model.apply(params, state, x, train=True, key=jax.random.key(2))
    return model, params, state


def forward(model, params, state, x):
    return jax.jit(lambda p, s, x: model.apply(p, s, x, train=False)[0])(params, state, x)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, params, state = cnn()
    path = fnn.export(tmp_path_factory.mktemp("export") / "cnn", model, params, state, (8, 8, 1))
    return path, model, params, state


@pytest.mark.parametrize("batch", [1, 7, 32])
def test_the_loaded_function_equals_the_model_for_any_batch_size(exported, batch):
    path, model, params, state = exported
    loaded = fnn.load_exported(path)
    x = _random.normal(jax.random.key(batch), (batch, 8, 8, 1))
    np.testing.assert_array_equal(loaded(x), forward(model, params, state, x))
    assert loaded.name == "sequential" and "cpu" in repr(loaded)
    assert str(loaded.input_structs.shape) == "(batch, 8, 8, 1)"


def test_it_runs_in_a_new_process_without_the_model_code(exported, tmp_path):
    path, model, params, state = exported
    x = np.asarray(_random.normal(jax.random.key(5), (4, 8, 8, 1)))
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from fnn import load_exported
        y = load_exported({str(path)!r})(np.load({str(tmp_path / "x.npy")!r}))
        np.save({str(tmp_path / "y.npy")!r}, np.asarray(y))
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), forward(model, params, state, x))


def test_integer_and_several_inputs(tmp_path):
    tokens = fnn.Sequential([fnn.Embedding(20, 4), fnn.GlobalAvgPool(), fnn.Dense(2)])
    two = fnn.Parallel([tokens, fnn.Dense(2)])
    shape = (fnn.Shape((5,), jnp.int32), (3,))
    params, state = two.init(jax.random.key(0), shape)
    path = fnn.export(tmp_path / "m", two, params, state, shape)
    x = (jnp.arange(15).reshape(3, 5) % 20, jnp.ones((3, 3)))
    got, want = fnn.load_exported(path)(x), forward(two, params, state, x)
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_corrupted_or_mismatched_exports_are_refused(exported, tmp_path):
    path, model, params, state = exported
    copy = tmp_path / "copy"
    fnn.export(copy, model, params, state, (8, 8, 1))
    data = bytearray((copy / "function.jax_exported").read_bytes())
    data[len(data) // 2] ^= 1
    (copy / "function.jax_exported").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"function.jax_exported: its bytes do not match"):
        fnn.load_exported(copy)
    with pytest.raises(CheckpointError, match=r"exists; pass overwrite=True"):
        fnn.export(copy, model, params, state, (8, 8, 1))
    with pytest.raises(CheckpointError, match=r"lists no file 'function.jax_exported'"):
        fnn.checkpoint.save(tmp_path / "plain", {"w": jnp.ones(1)})
        fnn.load_exported(tmp_path / "plain")
    loaded = fnn.load_exported(path)
    with pytest.raises(Exception, match=r"shape"):
        loaded(jnp.ones((2, 8, 8, 3)))


def replace_function(path, data):
    """Writes ``data`` as the exported function with its size and digests recomputed as the format
    defines them, so that only the deserialiser can tell it is not a valid function."""
    (path / FUNCTION_FILE).write_bytes(data)
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"][FUNCTION_FILE] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    manifest[MANIFEST_DIGEST] = hashlib.sha256(canonical).hexdigest()
    (path / MANIFEST).write_text(json.dumps(manifest))


def flip(data, position):
    return data[:position] + bytes([data[position] ^ 0x41]) + data[position + 1 :]


MALFORMED = {
    "garbage": lambda data: np.random.default_rng(0).bytes(len(data)),
    "empty": lambda data: b"",
    "the first half": lambda data: data[: len(data) // 2],
    "a flipped byte in the root offset": lambda data: flip(data, 2),
    "a flipped byte in the StableHLO": lambda data: flip(data, data.index(b"ML\xefR") + 4),
}


@pytest.mark.parametrize("how", list(MALFORMED))
def test_a_malformed_function_with_valid_digests_is_a_checkpoint_error_naming_the_file(
    exported, tmp_path, how
):
    """Issue 20: garbage with a recomputed digest raised a raw struct.error from load_exported."""
    path, model, params, state = exported
    copy = tmp_path / "copy"
    fnn.export(copy, model, params, state, (8, 8, 1))
    replace_function(copy, MALFORMED[how]((copy / FUNCTION_FILE).read_bytes()))
    with pytest.raises(CheckpointError, match=rf"{FUNCTION_FILE}: not a valid exported function \("):
        fnn.load_exported(copy)
