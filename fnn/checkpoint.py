"""Checkpoints you can trust: atomic, verified, and unable to run code.

A checkpoint is a directory holding two files:

- ``tensors.safetensors``: every array of the pytree, keyed by its path
  (``params/dense_1/w``); typed PRNG keys are stored as their key data.
- ``manifest.json``, written last: the tree's structure as data, each
  tensor's dtype, shape and SHA-256 digest, plain metadata (step, epoch,
  config ...) and the fnn and jax versions.

Writes go to a hidden temporary directory that is fsynced and then renamed, so
a crash at any point leaves either the complete new checkpoint or none.
Loading checks the digests (safetensors has none of its own) and the header
against the manifest, and raises one :class:`CheckpointError` naming the file
and the parameter path for any corruption. Nothing is unpickled, evaluated or
imported by a name read from a file: containers are rebuilt from a fixed set
(dict, list, tuple; NamedTuples and other pytree nodes come back as dicts
unless a ``target`` gives the structure), dtypes from a fixed table.

Example:
    >>> import jax, jax.numpy as jnp, tempfile, os, fnn
    >>> tree = {"w": jnp.ones((2, 3)), "step": 7, "key": jax.random.key(0)}
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt")
    >>> _ = fnn.checkpoint.save(path, tree, metadata={"epoch": 3})
    >>> back = fnn.checkpoint.restore(path)
    >>> back["w"].shape, back["step"], fnn.checkpoint.read_metadata(path)
    ((2, 3), 7, {'epoch': 3})
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import safetensors
import safetensors.numpy

from fnn._core import path_str, select_paths
from fnn.parallel import barrier, is_primary

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "TransferReport",
    "read_file",
    "read_metadata",
    "restore",
    "save",
    "transfer",
]

FORMAT = "fnn.checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"

# numpy dtype name -> (safetensors code, numpy dtype). The only dtypes a file can name.
_DTYPES: dict[str, tuple[str, np.dtype]] = {
    np.dtype(t).name: (code, np.dtype(t))
    for code, t in [
        ("BOOL", np.bool_),
        ("U8", np.uint8),
        ("I8", np.int8),
        ("U16", np.uint16),
        ("I16", np.int16),
        ("U32", np.uint32),
        ("I32", np.int32),
        ("U64", np.uint64),
        ("I64", np.int64),
        ("F16", np.float16),
        ("BF16", ml_dtypes.bfloat16),
        ("F32", np.float32),
        ("F64", np.float64),
        ("F8_E4M3", ml_dtypes.float8_e4m3fn),
        ("F8_E5M2", ml_dtypes.float8_e5m2),
        ("C64", np.complex64),
    ]
}
_KEY_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
_SCALARS = (bool, int, float, str)
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, inconsistent, or does not fit the target."""


# ------------------------------------------------------------------ tree <-> data


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _describe(node: Any, path: tuple, tensors: dict[str, Any]) -> Any:
    """The structure of ``node`` as JSON data; array leaves go into ``tensors`` by path."""
    name = path_str(path) or "value"
    if node is None:
        return None
    if _is_array(node):
        if name in tensors:
            raise CheckpointError(f"two leaves have the same path {name!r}; rename a dict key")
        tensors[name] = node
        return {"tensor": name}
    if isinstance(node, _SCALARS):
        return {"value": node}
    children, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    if len(children) == 1 and children[0][1] is node:
        raise CheckpointError(
            f"cannot save {type(node).__name__} at {name!r}: leaves must be arrays, typed "
            "PRNG keys or Python bool/int/float/str"
        )
    if isinstance(node, dict) and not all(isinstance(k, str) for k in node):
        raise CheckpointError(f"dict keys must be strings to be saved, got {list(node)} at {name!r}")
    items = [(path_str(k), _describe(child, (*path, *k), tensors)) for k, child in children]
    if isinstance(node, list):
        return {"list": [v for _, v in items]}
    if isinstance(node, tuple) and not hasattr(node, "_fields"):
        return {"tuple": [v for _, v in items]}
    kind = "dict" if isinstance(node, dict) else type(node).__name__
    return {"dict": dict(items), "type": kind}


def _to_numpy(leaf: Any) -> tuple[np.ndarray, dict]:
    """The bytes to store for a leaf and its manifest entry (without the digest)."""
    entry: dict[str, Any] = {}
    if _is_key(leaf):
        entry["key_impl"] = str(jax.random.key_impl(leaf))
        leaf = jax.random.key_data(leaf)
    array = np.asarray(jax.device_get(leaf), order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
    if array.dtype.name not in _DTYPES:
        raise CheckpointError(f"cannot save dtype {array.dtype}; supported: {sorted(_DTYPES)}")
    entry.update(dtype=array.dtype.name, shape=list(array.shape))
    return array, entry


def _digest(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


def _rebuild(node: Any, arrays: Mapping[str, Any], where: str) -> Any:
    """The pytree a manifest's structure describes, with plain containers only."""
    if node is None:
        return None
    if not isinstance(node, dict):
        raise CheckpointError(f"{where}: malformed tree node {node!r}")
    if "tensor" in node:
        if node["tensor"] not in arrays:
            raise CheckpointError(f"{where}: the tree names tensor {node['tensor']!r}, which is not listed")
        return arrays[node["tensor"]]
    if "value" in node:
        if not isinstance(node["value"], _SCALARS):
            raise CheckpointError(f"{where}: malformed value {node['value']!r}")
        return node["value"]
    if "list" in node or "tuple" in node:
        items = node.get("list", node.get("tuple"))
        if not isinstance(items, list):
            raise CheckpointError(f"{where}: malformed sequence node")
        out = [_rebuild(child, arrays, where) for child in items]
        return out if "list" in node else tuple(out)
    if isinstance(node.get("dict"), dict):
        return {k: _rebuild(child, arrays, where) for k, child in node["dict"].items()}
    raise CheckpointError(f"{where}: malformed tree node with keys {sorted(node)}")


# ------------------------------------------------------------------------- files


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _remove_dir(path: Path) -> None:
    """Deletes a directory so that no reader ever sees it half-deleted: rename, then remove."""
    trash = path.parent / f".{path.name}.del-{uuid.uuid4().hex}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _is_scratch(name: str) -> bool:
    return name.startswith(".") and (".tmp-" in name or ".del-" in name or ".old-" in name)


def save(
    path: str | os.PathLike,
    tree: Any,
    *,
    metadata: Mapping[str, Any] | None = None,
    files: Mapping[str, bytes] | None = None,
    overwrite: bool = False,
) -> Path:
    """Saves a pytree of arrays (and JSON metadata) as a checkpoint directory, atomically.

    Args:
        path: the checkpoint directory to create.
        tree: a pytree of arrays (any dtype, 0-d included), typed PRNG keys and
            Python scalars, in dicts (string keys), lists, tuples, NamedTuples
            or other registered pytree nodes; e.g. a :class:`fnn.TrainState`.
        metadata: plain JSON data to keep with it (step, epoch, config ...).
        files: other files to store beside the tensors, ``{name: bytes}``, with
            digests in the manifest; read them back with :func:`read_file`.
        overwrite: replace an existing checkpoint at ``path``. Without it an
            existing path is an error. (Replacing is two renames, so a crash
            between them can leave neither; :class:`CheckpointManager` never
            overwrites, it writes a new directory per step.)

    Returns:
        The checkpoint's path.

    Raises:
        CheckpointError: for leaves or metadata that cannot be saved, or an
            existing ``path`` without ``overwrite``.
    """
    path = Path(path)
    tensors: dict[str, Any] = {}
    structure = _describe(tree, (), tensors)
    try:
        meta_text = json.dumps(dict(metadata or {}))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"metadata must be plain JSON data: {e}") from None
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path} exists; pass overwrite=True to replace it")
    files = dict(files or {})
    for name, data in files.items():
        if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or name in (MANIFEST, TENSORS):
            raise CheckpointError(f"file name {name!r} must be a plain name other than {MANIFEST}, {TENSORS}")
        if not isinstance(data, (bytes, bytearray)):
            raise CheckpointError(f"file {name!r} must be bytes, got {type(data).__name__}")
    arrays, entries = {}, {}
    for name, leaf in tensors.items():
        arrays[name], entries[name] = _to_numpy(leaf)
        entries[name]["sha256"] = _digest(arrays[name].reshape(-1).view(np.uint8))
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "fnn_version": _fnn_version(),
        "jax_version": jax.__version__,
        "tensors": entries,
        "tree": structure,
        "metadata": json.loads(meta_text),
        "files": {name: {"sha256": _digest(data), "bytes": len(data)} for name, data in files.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*-*"):  # from a crashed save
        if _is_scratch(leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        safetensors.numpy.save_file(arrays, tmp / TENSORS)  # straight to the file: no copy in memory
        _fsync_file(tmp / TENSORS)
        for name, data in files.items():
            _write_file(tmp / name, bytes(data))
        _write_file(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())  # last: it marks completion
        _fsync_dir(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _fnn_version() -> str:
    from fnn import __version__

    return __version__


def _read_manifest(path: Path) -> dict:
    file = path / MANIFEST
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    try:
        manifest = json.loads(file.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing; {path} is not a complete fnn checkpoint") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not an fnn checkpoint manifest")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{file}: format version {manifest.get('version')!r}; this fnn reads {VERSION}")
    manifest.setdefault("files", {})
    for field, kind in [("tensors", dict), ("metadata", dict), ("files", dict)]:
        if not isinstance(manifest.get(field), kind):
            raise CheckpointError(f"{file}: field {field!r} is missing or malformed")
    for name, entry in manifest["tensors"].items():
        if not (
            isinstance(entry, dict)
            and entry.get("dtype") in _DTYPES
            and isinstance(entry.get("shape"), list)
            and all(isinstance(d, int) and d >= 0 for d in entry["shape"])
            and isinstance(entry.get("sha256"), str)
            and entry.get("key_impl", "threefry2x32") in _KEY_IMPLS
        ):
            raise CheckpointError(f"{file}: malformed entry for tensor {name!r}: {entry!r}")
    named = _tensor_refs(manifest.get("tree"))
    if sorted(named) != sorted(manifest["tensors"]):
        raise CheckpointError(
            f"{file}: inconsistent: the tree names tensors {sorted(set(named) - set(manifest['tensors']))} "
            f"that are not listed, and lists {sorted(set(manifest['tensors']) - set(named))} it does not name"
        )
    return manifest


def _tensor_refs(node: Any) -> list[str]:
    if not isinstance(node, dict):
        return []
    if "tensor" in node:
        return [node["tensor"]]
    children = node.get("dict", {})
    children = list(children.values()) if isinstance(children, dict) else []
    sequence = node.get("list", node.get("tuple", []))
    return [
        ref
        for child in children + (sequence if isinstance(sequence, list) else [])
        for ref in _tensor_refs(child)
    ]


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata saved with a checkpoint (reads the manifest only).

    Raises:
        CheckpointError: when the manifest is missing or malformed.
    """
    return _read_manifest(Path(path))["metadata"]


@functools.cache
def _key_dtype(impl: str) -> str:
    return str(jax.eval_shape(lambda: jax.random.key(0, impl=impl)).dtype)  # e.g. key<fry>


def read_file(path: str | os.PathLike, name: str, *, verify: bool = True) -> bytes:
    """A file stored with :func:`save`'s ``files``, checked against its digest.

    Raises:
        CheckpointError: when the file is not listed, missing, or corrupted.
    """
    path = Path(path)
    entry = _read_manifest(path)["files"].get(name)
    if not isinstance(entry, dict) or not _FILE_NAME.fullmatch(name):
        raise CheckpointError(f"{path / MANIFEST}: lists no file {name!r}")
    try:
        data = (path / name).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path / name}: missing") from None
    if verify and _digest(data) != entry.get("sha256"):
        raise CheckpointError(f"{path / name}: its bytes do not match the manifest's sha256 (corrupted)")
    return data


def _spec(entry: Mapping) -> str:
    """``float32[3, 2]``; a typed key's shape excludes its key data's trailing axis."""
    if "key_impl" in entry:
        return f"{_key_dtype(entry['key_impl'])}{list(entry['shape'][:-1])}"
    return f"{entry['dtype']}{list(entry['shape'])}"


def _read_tensors(path: Path, manifest: dict, names: Iterable[str], verify: bool) -> dict[str, Any]:
    """The named tensors as device arrays (typed keys rewrapped), checked against the manifest."""
    file = path / TENSORS
    try:
        stored = dict(safetensors.deserialize(file.read_bytes()))
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    except Exception as e:  # safetensors raises its own error type for any malformed file
        raise CheckpointError(f"{file}: not a valid safetensors file ({e})") from None
    entries = manifest["tensors"]
    problems = [f"tensor {n!r} is in the file but not in the manifest" for n in stored if n not in entries]
    problems += [f"tensor {n!r} is in the manifest but not in the file" for n in entries if n not in stored]
    out = {}
    for name in names:
        if name not in stored:
            continue
        entry, raw = entries[name], stored[name]
        code, dtype = _DTYPES[entry["dtype"]]
        if raw["dtype"] != code or list(raw["shape"]) != entry["shape"]:
            problems.append(
                f"tensor {name!r}: the file's header says {raw['dtype']}{list(raw['shape'])}, "
                f"the manifest {code}{entry['shape']}"
            )
            continue
        if verify and _digest(raw["data"]) != entry["sha256"]:
            problems.append(f"tensor {name!r}: its bytes do not match the manifest's sha256 (corrupted data)")
            continue
        array = np.frombuffer(raw["data"], dtype).reshape(entry["shape"])
        if array.dtype.itemsize == 8 and not jax.config.jax_enable_x64 and array.dtype.kind in "iuf":
            problems.append(
                f"tensor {name!r} is {array.dtype}, which needs jax_enable_x64 (it would be cast to 32 bits)"
            )
            continue
        value = jnp.asarray(array)
        out[name] = jax.random.wrap_key_data(value, impl=entry["key_impl"]) if "key_impl" in entry else value
    if problems:
        raise CheckpointError(f"{file}: " + "; ".join(problems))
    return out


# ------------------------------------------------------------------------ restore


def _target_specs(target: Any) -> dict[str, Any]:
    """``{path: leaf}`` of a target pytree, leaves being arrays, structs, keys or scalars."""
    leaves = jax.tree_util.tree_flatten_with_path(target)[0]
    return {path_str(p) or "value": leaf for p, leaf in leaves}


def _leaf_spec(leaf: Any) -> str:
    if isinstance(leaf, _SCALARS):
        return f"{type(leaf).__name__} value"
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return f"{leaf.dtype}{list(np.shape(leaf))}"
    return f"{np.dtype(leaf.dtype).name}{list(np.shape(leaf))}"


def _mismatches(target_specs: Mapping[str, Any], saved: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, leaf in target_specs.items():
        expected = _leaf_spec(leaf)
        if name not in saved:
            problems.append(f"missing from the checkpoint: {name} ({expected})")
        elif saved[name] != expected:
            problems.append(f"{name}: the checkpoint has {saved[name]}, the target expects {expected}")
    problems += [f"not in the target: {n} ({s})" for n, s in saved.items() if n not in target_specs]
    return problems


class _Stored:
    """Stands in for a stored tensor in a tree rebuilt from a manifest (a pytree leaf)."""

    def __init__(self, spec: str):
        self.spec = spec


def _saved_leaves(manifest: dict, where: str) -> tuple[dict[str, str], dict[str, Any]]:
    """``({path: spec}, {path: python value})`` of every leaf in a manifest."""
    stored = {name: _Stored(_spec(entry)) for name, entry in manifest["tensors"].items()}
    leaves = _target_specs(_rebuild(manifest.get("tree"), stored, where))
    specs = {p: leaf.spec if isinstance(leaf, _Stored) else _leaf_spec(leaf) for p, leaf in leaves.items()}
    return specs, {p: leaf for p, leaf in leaves.items() if not isinstance(leaf, _Stored)}


def restore(path: str | os.PathLike, target: Any = None, *, verify: bool = True) -> Any:
    """Loads a checkpoint, verifying every byte, into ``target``'s structure or a plain one.

    Args:
        path: a directory written by :func:`save`.
        target: a pytree with the expected structure (arrays, ``jax.ShapeDtypeStruct``
            or typed keys as leaves), e.g. freshly initialised params or a
            :class:`fnn.TrainState`. Every difference (missing or unexpected paths,
            shapes, dtypes) is reported at once; nothing is cast or dropped.
            Leaves that are sharded arrays are placed with the same sharding.
            Without a target, the tree is rebuilt from the manifest with plain
            dicts, lists and tuples (NamedTuples come back as dicts).
        verify: check each tensor's SHA-256 digest (on by default).

    Returns:
        The restored pytree.

    Raises:
        CheckpointError: for a missing, truncated, corrupted or inconsistent
            checkpoint (naming the file and the tensor path), or a checkpoint
            that does not fit ``target`` (listing every mismatch).
    """
    path = Path(path)
    manifest = _read_manifest(path)
    if target is None:
        arrays = _read_tensors(path, manifest, manifest["tensors"], verify)
        return _rebuild(manifest.get("tree"), arrays, str(path / MANIFEST))
    specs, values = _saved_leaves(manifest, str(path / MANIFEST))
    wanted = _target_specs(target)
    problems = _mismatches(wanted, specs)
    if problems:
        raise CheckpointError(f"{path} does not fit the target:\n  " + "\n  ".join(problems))
    arrays = _read_tensors(path, manifest, [n for n in wanted if n not in values], verify)
    return _fill(target, {**arrays, **values})


def _fill(target: Any, values: Mapping[str, Any]) -> Any:
    def put(p: tuple, leaf: Any) -> Any:
        value = values[path_str(p) or "value"]
        sharding = getattr(leaf, "sharding", None)
        if isinstance(leaf, jax.Array) and sharding is not None and not _is_key(leaf):
            value = jax.device_put(value, sharding)
        return value

    return jax.tree_util.tree_map_with_path(put, target)


# ------------------------------------------------------------------------ manager


class CheckpointManager:
    """Numbered checkpoints in one directory: save every N, keep the last k and the best.

    Each checkpoint is a directory ``ckpt_000000123`` written by :func:`save`,
    so a crash while saving leaves the earlier ones untouched; leftover
    temporary directories are ignored and removed when a manager opens the
    directory. One process should write to a directory at a time: in a
    multi-process run (:mod:`fnn.parallel`) every process calls :meth:`save`,
    which waits for all of them and lets process 0 write, so the directory
    must be one all processes see if they are to resume from it.

    Args:
        directory: where the checkpoints live (created when missing).
        max_to_keep: how many of the newest checkpoints to keep (``None``: all).
        every: :meth:`save` writes when ``step % every == 0`` (or when forced).
            The step is whatever the caller counts: optimiser steps or epochs.
        monitor: a metric name passed to :meth:`save` in ``metrics``; the
            ``keep_best`` best checkpoints by it are kept besides the newest.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy-like names).
        keep_best: how many best checkpoints to keep when ``monitor`` is set.

    The newest checkpoint is never deleted.

    Examples:
        >>> import jax.numpy as jnp, tempfile
        >>> manager = CheckpointManager(tempfile.mkdtemp(), max_to_keep=2)
        >>> for step in range(1, 5):
        ...     _ = manager.save(step, {"w": jnp.full(2, step)})
        >>> manager.steps(), manager.restore()["w"].tolist()
        ([3, 4], [4, 4])
    """

    _NAME = re.compile(r"ckpt_(\d{9,})")

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int | None = 3,
        every: int = 1,
        monitor: str | None = None,
        mode: str = "auto",
        keep_best: int = 1,
    ):
        limits = {"every": (every, 1), "keep_best": (keep_best, 0)}
        if max_to_keep is not None:
            limits["max_to_keep"] = (max_to_keep, 1)
        for arg, (value, least) in limits.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                kind = "a positive int" if least else "an int >= 0"
                raise ValueError(f"CheckpointManager: {arg} must be {kind}, got {value!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"CheckpointManager: mode must be 'auto', 'min' or 'max', got {mode!r}")
        from fnn.metrics import better

        self.directory = Path(directory)
        self.max_to_keep, self.every, self.keep_best = max_to_keep, every, keep_best
        self.monitor = monitor
        self.mode = (better(monitor) if mode == "auto" else mode) if monitor else None
        self.directory.mkdir(parents=True, exist_ok=True)
        if is_primary():  # another process's scratch may be process 0's save in progress
            for entry in self.directory.iterdir():
                if _is_scratch(entry.name):
                    shutil.rmtree(entry, ignore_errors=True)

    def path(self, step: int) -> Path:
        """The directory of the checkpoint for ``step``."""
        return self.directory / f"ckpt_{step:09d}"

    def steps(self) -> list[int]:
        """The steps of the complete checkpoints (those with a manifest), oldest first."""
        found = []
        for entry in self.directory.iterdir():
            match = self._NAME.fullmatch(entry.name)
            if match and (entry / MANIFEST).is_file():
                found.append(int(match.group(1)))
        return sorted(found)

    def latest(self) -> int | None:
        """The newest checkpoint's step, or ``None`` when there is none."""
        steps = self.steps()
        return steps[-1] if steps else None

    def best(self) -> int | None:
        """The step of the best checkpoint by ``monitor`` (``None`` when none has the metric)."""
        if self.monitor is None:
            raise ValueError("CheckpointManager.best needs a monitor")
        scored = self._scores()
        if not scored:
            return None
        pick = min if self.mode == "min" else max
        return pick(scored, key=scored.__getitem__)

    def _scores(self) -> dict[int, float]:
        scores = {}
        for step in self.steps():
            try:
                value = read_metadata(self.path(step)).get("metrics", {}).get(self.monitor)
            except CheckpointError:
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                scores[step] = float(value)
        return scores

    def save(
        self,
        step: int,
        tree: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        force: bool = False,
    ) -> Path | None:
        """Saves ``tree`` as the checkpoint of ``step`` when it is due, then prunes old ones.

        Args:
            step: the step (or epoch) number; checkpoints are named and ordered by it.
            tree: the pytree to save (see :func:`save`).
            metadata: plain JSON data to keep with it.
            metrics: values for ``monitor`` (e.g. the epoch's logs).
            force: save even when ``step`` is not a multiple of ``every``.

        Returns:
            The checkpoint's path, or ``None`` when no save was due.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"CheckpointManager.save: step must be an int >= 0, got {step!r}")
        if not force and step % self.every:
            return None
        meta = {
            **(metadata or {}),
            "step": step,
            "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        }
        barrier(f"fnn.checkpoint {self.directory.name} {step}")  # every process has reached this state
        if not is_primary():
            return self.path(step)
        path = save(self.path(step), tree, metadata=meta, overwrite=True)
        self._prune()
        return path

    def _prune(self) -> None:
        steps = self.steps()
        if self.max_to_keep is None:
            return
        keep = set(steps[-self.max_to_keep :])
        if self.monitor is not None and self.keep_best:
            scores = self._scores()
            ranked = sorted(scores, key=scores.__getitem__, reverse=self.mode == "max")
            keep |= set(ranked[: self.keep_best])
        for step in steps:
            if step not in keep:
                _remove_dir(self.path(step))

    def _resolve(self, step: int | None) -> Path:
        step = self.latest() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoints")
        return self.path(step)

    def restore(self, step: int | None = None, target: Any = None, *, verify: bool = True) -> Any:
        """The checkpoint of ``step`` (the newest by default); see :func:`restore`."""
        return restore(self._resolve(step), target, verify=verify)

    def metadata(self, step: int | None = None) -> dict:
        """The metadata of the checkpoint of ``step`` (the newest by default)."""
        return read_metadata(self._resolve(step))

    def clear(self) -> None:
        """Deletes every checkpoint in the directory (process 0 does, in a multi-process run)."""
        if not is_primary():
            return
        for step in self.steps():
            _remove_dir(self.path(step))


# ----------------------------------------------------------------------- transfer


class TransferReport(NamedTuple):
    """What :func:`transfer` did, path by path; ``print`` it for a summary.

    Attributes:
        loaded: target paths whose values came from the source.
        initialised: target paths left as they were (freshly initialised).
        unused: source paths that no target path took.
    """

    loaded: tuple[str, ...]
    initialised: tuple[str, ...]
    unused: tuple[str, ...]

    def __str__(self) -> str:
        def block(title: str, paths: Sequence[str]) -> list[str]:
            return [f"{title} ({len(paths)}):", *(f"  {p}" for p in paths)] if paths else []

        return "\n".join(
            block("loaded from the source", self.loaded)
            + block("freshly initialised", self.initialised)
            + block("not used from the source", self.unused)
        )


def transfer(
    target: Any,
    source: Any,
    *,
    include: str | Sequence[str] | None = None,
    source_prefix: str = "",
) -> tuple[Any, TransferReport]:
    """Copies the matching part of a trained pytree (or checkpoint) into a new one.

    For transfer learning: build the new model, initialise it, then take the
    trained feature extractor from the old one. A target path takes the source
    value at the same path (after ``source_prefix`` is stripped from the source
    paths); shapes and dtypes must agree exactly.

    Args:
        target: the new pytree, e.g. freshly initialised params.
        source: a pytree, or the path of a checkpoint (read and verified).
        include: only these target paths take source values (patterns as in
            :func:`fnn.optimizers.freeze`: a path prefix such as ``"features"``
            or ``"0"``, or a glob); by default every path the source has.
        source_prefix: the source subtree to read, e.g. ``"params"`` for a
            checkpoint of ``{"params": ..., "state": ...}`` or
            ``"train_state/params"`` for one written by ``fit``.

    Returns:
        ``(new_target, report)``: the target with the values copied in, and a
        :class:`TransferReport` of what was loaded and what was not.

    Raises:
        ValueError: when a copied path differs in shape or dtype (all listed),
            or a pattern or the prefix matches nothing.
        CheckpointError: for a corrupt checkpoint.

    Examples:
        >>> import jax.numpy as jnp
        >>> old = {"features": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(10)}}
        >>> new = {"features": {"w": jnp.zeros(3)}, "head": {"w": jnp.zeros(5)}}
        >>> params, report = transfer(new, old, include="features")
        >>> params["features"]["w"].tolist(), report.initialised
        ([1.0, 1.0, 1.0], ('head/w',))
    """
    if isinstance(source, (str, os.PathLike)):
        source = restore(source)
    source_leaves = dict(zip(_target_specs(source), jax.tree.leaves(source)))
    if source_prefix:
        prefix = source_prefix.strip("/") + "/"
        source_leaves = {k[len(prefix) :]: v for k, v in source_leaves.items() if k.startswith(prefix)}
        if not source_leaves:
            raise ValueError(f"transfer: the source has no paths under source_prefix {source_prefix!r}")
    target_leaves = _target_specs(target)
    names = list(target_leaves)
    wanted = set(names) if include is None else select_paths("transfer", names, include)
    take = [n for n in names if n in wanted and n in source_leaves]
    problems = [
        f"{n}: the source has {_leaf_spec(source_leaves[n])}, the target expects {_leaf_spec(target_leaves[n])}"
        for n in take
        if _leaf_spec(source_leaves[n]) != _leaf_spec(target_leaves[n])
    ]
    if include is not None:
        problems += [
            f"{n}: matched by include but not in the source" for n in names if n in wanted - set(take)
        ]
    if problems:
        raise ValueError("transfer: cannot copy\n  " + "\n  ".join(problems))
    values = {**target_leaves, **{n: source_leaves[n] for n in take}}
    report = TransferReport(
        tuple(take),
        tuple(n for n in names if n not in take),
        tuple(n for n in source_leaves if n not in take),
    )
    return _fill(target, values), report
