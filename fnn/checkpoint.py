"""Checkpoints you can trust: atomic, verified, and unable to run code.

A checkpoint is a directory holding two files:

- ``tensors.safetensors``: every array of the pytree, keyed by its path
  (``params/dense_1/w``); typed PRNG keys are stored as their key data.
- ``manifest.json``, written last: the tree's structure as data, each
  tensor's dtype, shape and SHA-256 digest, the tensors file's size, plain
  metadata (step, epoch, config ...), the fnn and jax versions, and
  ``manifest_sha256``: the SHA-256 of the manifest's canonical JSON without
  that field (``json.dumps(manifest, sort_keys=True, separators=(",", ":"))``),
  so that a change anywhere in the manifest, its digest included, is detected.

A tree with arrays split over devices (FSDP, tensor parallel: see
:mod:`fnn.parallel`) is saved in parts instead of ``tensors.safetensors``
(format 3): each process writes the shards its devices hold (the first copy of
each) to ``shards-<process>.safetensors``, and the manifest lists every shard's
file, place (``[[start, stop], ...]`` per axis) and digest. Every process calls
:func:`save` for such a tree. :func:`restore` assembles, for each device of the
target's sharding, just the part it needs, so a checkpoint restores onto any
mesh or onto one device; the shards must tile each array exactly.

Writes go to a hidden temporary directory that is fsynced and then renamed, so
a crash at any point leaves either the complete new checkpoint or none; an
overwrite that dies between moving the old copy aside and the new one in
leaves the old copy, which is put back (see :func:`save`).

Loading reads only regular files, bounded before they are read (the manifest
at most 64 MiB, the other files exactly the sizes it declares), so a FIFO, a
device or a huge file is refused, never waited on. It checks the manifest's
digest before using anything in it, then the tensors' digests (safetensors
has none of its own) and the header against the manifest, and raises one
:class:`CheckpointError` naming the file and the parameter path for any
corruption. Nothing is unpickled, evaluated or imported by a name read from
a file: containers are rebuilt from a fixed set (dict, list, tuple;
NamedTuples and other pytree nodes come back as dicts unless a ``target``
gives the structure), dtypes from a fixed table.

Checkpoints of format version 1 (written by fnn before the manifest had a
digest) still load, so a run resumes and a manager keeps its best after an
upgrade, with a warning: their tensors are verified, their manifest cannot
be. Save what :func:`restore` returns to upgrade one.

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
import hashlib
import json
import math
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import safetensors
import safetensors.numpy
from jax.experimental import multihost_utils

from fnn._checks import check_int
from fnn._core import path_str, select_paths
from fnn._io import fsync_dir, read_regular_file
from fnn._version import __version__
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
VERSION = 2  # 2: the manifest carries its own digest and the tensors file's size
SHARDED_VERSION = 3  # arrays split over devices: each process's shards in a file of its own
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
MANIFEST_DIGEST = "manifest_sha256"
MAX_MANIFEST_BYTES = 64 << 20
MAX_DEPTH = 100  # levels of nesting a saved tree may have

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
_SHARDS_FILE = re.compile(r"shards-\d{5}\.safetensors")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SCRATCH = re.compile(r"\.(?P<name>.+)\.(?P<kind>tmp|old|del)-[0-9a-f]{32}")  # .<name>.<kind>-<uuid hex>


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
    if len(path) > MAX_DEPTH:
        raise CheckpointError(f"cannot save a tree nested deeper than {MAX_DEPTH} levels (at {name!r})")
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


def _dtype_name(leaf: Any) -> str:
    """The numpy dtype name a leaf is stored as (a typed key's data is uint32), if it can be stored."""
    name = "uint32" if _is_key(leaf) else np.dtype(leaf.dtype).name
    if name not in _DTYPES:
        raise CheckpointError(f"cannot save dtype {leaf.dtype}; supported: {sorted(_DTYPES)}")
    return name


def _entry(leaf: Any) -> tuple[Any, dict]:
    """A leaf's stored array (a typed key's data) and its manifest entry (dtype, shape, key_impl)."""
    entry: dict[str, Any] = {}
    if _is_key(leaf):
        entry["key_impl"] = str(jax.random.key_impl(leaf))
        leaf = jax.random.key_data(leaf)
    entry.update(dtype=_dtype_name(leaf), shape=list(np.shape(leaf)))
    return leaf, entry


def _to_numpy(leaf: Any) -> tuple[np.ndarray, dict]:
    """The bytes to store for a leaf and its manifest entry (without the digest)."""
    leaf, entry = _entry(leaf)
    return np.asarray(jax.device_get(leaf), order="C"), entry  # (ascontiguousarray makes 0-d arrays 1-d)


def _is_split(leaf: Any) -> bool:
    """Whether a leaf is a jax.Array whose devices each hold only part of it."""
    return isinstance(leaf, jax.Array) and not leaf.sharding.is_fully_replicated


def _digest(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    """The SHA-256 of a manifest's canonical JSON, without its own digest field."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    return _digest(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


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


def _clean_scratch(directory: Path, name: str | None = None) -> None:
    """Clears what crashed saves left in ``directory`` (for checkpoint ``name`` only, if given).

    A temporary or half-deleted directory is removed. An old copy moved aside
    by an overwrite is removed when its checkpoint exists, and otherwise (the
    overwrite died between its two renames) renamed back: it is the checkpoint.
    """
    for entry in sorted(directory.iterdir()):
        match = _SCRATCH.fullmatch(entry.name)
        if not match or name not in (None, match["name"]) or entry.is_symlink() or not entry.is_dir():
            continue  # only the directories a save makes
        checkpoint = directory / match["name"]
        if match["kind"] == "old" and not os.path.lexists(checkpoint):
            os.rename(entry, checkpoint)
            fsync_dir(directory)
        else:
            shutil.rmtree(entry, ignore_errors=True)


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
            existing path is an error. The new copy is written completely
            first; then the old one is renamed aside, the new one renamed in,
            and the old one deleted. A crash between the renames leaves the old
            copy aside, and the next :func:`save` of ``path`` or
            :class:`CheckpointManager` opening its directory renames it back, so
            ``path`` always ends up with the old or the new checkpoint.

    A tree with arrays split over several devices is written in parts, one file
    per process (see the module's notes). Every process of a multi-process run
    must then call :func:`save` with its part of the same tree: it is a
    collective, and an error in any process ends it in all of them.

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
        metadata = json.loads(json.dumps(dict(metadata or {})))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"metadata must be plain JSON data: {e}") from None
    files = dict(files or {})
    for name, data in files.items():
        if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or name in (MANIFEST, TENSORS):
            raise CheckpointError(f"file name {name!r} must be a plain name other than {MANIFEST}, {TENSORS}")
        if not isinstance(data, (bytes, bytearray)):
            raise CheckpointError(f"file {name!r} must be bytes, got {type(data).__name__}")
    for leaf in tensors.values():
        _dtype_name(leaf)
    if any(_is_split(leaf) for leaf in tensors.values()):
        return _save_sharded(path, tensors, structure, metadata, files, overwrite)
    if path.parent.is_dir():
        _clean_scratch(path.parent, path.name)  # from a crashed save: may put back an overwritten copy
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path} exists; pass overwrite=True to replace it")
    arrays, entries = {}, {}
    for name, leaf in tensors.items():
        arrays[name], entries[name] = _to_numpy(leaf)
        entries[name]["sha256"] = _digest(arrays[name].reshape(-1).view(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _scratch(path, "tmp", uuid.uuid4().hex)
    tmp.mkdir()
    try:
        safetensors.numpy.save_file(arrays, tmp / TENSORS)  # straight to the file: no copy in memory
        _fsync_file(tmp / TENSORS)
        _write_files(tmp, files)
        manifest = _manifest(VERSION, entries, structure, metadata, files)
        manifest["tensors_bytes"] = (tmp / TENSORS).stat().st_size
        _commit(tmp, path, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _clean_scratch(path.parent, path.name)  # puts the old copy back if it was moved aside
        raise
    return path


def _scratch(path: Path, kind: str, token: str) -> Path:
    return path.parent / f".{path.name}.{kind}-{token}"


def _write_files(tmp: Path, files: Mapping[str, bytes]) -> None:
    for name, data in files.items():
        _write_file(tmp / name, bytes(data))


def _manifest(
    version: int, entries: dict, structure: Any, metadata: dict, files: Mapping[str, bytes]
) -> dict:
    return {
        "format": FORMAT,
        "version": version,
        "fnn_version": __version__,
        "jax_version": jax.__version__,
        "tensors": entries,
        "tree": structure,
        "metadata": metadata,
        "files": {name: {"sha256": _digest(data), "bytes": len(data)} for name, data in files.items()},
    }


def _commit(tmp: Path, path: Path, manifest: dict) -> None:
    """Writes ``manifest`` into the finished ``tmp`` directory, last, then renames it to ``path``."""
    manifest = json.loads(json.dumps(manifest))  # the digest covers exactly what a reader parses
    manifest[MANIFEST_DIGEST] = _manifest_digest(manifest)
    _write_file(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())  # last: it marks completion
    fsync_dir(tmp)
    if path.exists():
        old = _scratch(path, "old", uuid.uuid4().hex)
        os.rename(path, old)  # from here until the next rename, only `old` holds the checkpoint
        os.rename(tmp, path)
        fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)
        fsync_dir(path.parent)


# ------------------------------------------------------------- sharded checkpoints


def _bounds(index: tuple, shape: Sequence[int]) -> list[list[int]]:
    """A shard's ``index`` (slices) as ``[[start, stop], ...]`` within ``shape``."""
    return [list(s.indices(d)[:2]) for s, d in zip(index, shape)]


def _shard_key(name: str, bounds: Sequence[Sequence[int]]) -> str:
    """The name of one shard of tensor ``name`` in a shards file: ``params/w@0:4,0:8``."""
    return f"{name}@" + ",".join(f"{a}:{b}" for a, b in bounds)


def _shards_file(process: int) -> str:
    return f"shards-{process:05d}.safetensors"


def _owned_shards(tensors: Mapping[str, Any], process: int) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """The parts of ``tensors`` this process writes: of each array, the shards of its devices that are
    the first copy (``replica_id == 0``); host values and whole arrays go to process 0."""
    arrays: dict[str, np.ndarray] = {}
    listing: dict[str, list] = {}
    for name, leaf in tensors.items():
        leaf, _ = _entry(leaf)
        if isinstance(leaf, jax.Array) and (_is_split(leaf) or not leaf.is_fully_addressable):
            parts = [(s.index, s.data) for s in leaf.addressable_shards if s.replica_id == 0]
        else:
            parts = [((), leaf)] if process == 0 else []
        for index, data in parts:
            bounds = _bounds(index, leaf.shape) if index else [[0, d] for d in leaf.shape]
            array = np.asarray(jax.device_get(data), order="C")
            arrays[_shard_key(name, bounds)] = array
            listing.setdefault(name, []).append(
                {"index": bounds, "sha256": _digest(array.reshape(-1).view(np.uint8))}
            )
    return arrays, listing


def _all_ok(ok: bool) -> list[int]:
    """Which processes failed (every process calls it and gets the same answer)."""
    if jax.process_count() == 1:
        return [] if ok else [0]
    flags = np.asarray(multihost_utils.process_allgather(np.int32(ok))).reshape(-1)
    return [p for p, flag in enumerate(flags) if not flag]


def _token_from_process_0() -> str:
    token = np.frombuffer(uuid.uuid4().bytes, np.uint8)
    if jax.process_count() > 1:
        token = np.asarray(multihost_utils.broadcast_one_to_all(token), np.uint8)
    return token.tobytes().hex()


def _save_sharded(
    path: Path, tensors: dict[str, Any], structure: Any, metadata: dict, files: dict, overwrite: bool
) -> Path:
    """:func:`save` for trees with arrays split over devices: a collective, every process calls it.

    Process 0 prepares a temporary directory; each process writes the shards it
    owns into ``shards-<process>.safetensors`` with a listing of their places and
    digests; process 0 merges the listings into the manifest (format 3), writes
    it last and renames the directory into place. A failure in any process ends
    the save in every process, and leaves no partial checkpoint.
    """
    me = jax.process_index()
    token = _token_from_process_0()
    tmp = _scratch(path, "tmp", token)
    error: BaseException | None = None

    def step(action: Any, what: str) -> None:
        nonlocal error
        if error is None:
            try:
                action()
            except BaseException as e:
                error = e
        failed = _all_ok(error is None)
        if failed:
            if me == 0:
                shutil.rmtree(tmp, ignore_errors=True)
                _clean_scratch(path.parent, path.name)
            if error is not None:
                raise error
            raise CheckpointError(f"{path}: process(es) {failed} failed {what}; see their errors")

    def begin() -> None:
        if me != 0:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        _clean_scratch(path.parent, path.name)
        if path.exists() and not overwrite:
            raise CheckpointError(f"{path} exists; pass overwrite=True to replace it")
        tmp.mkdir()

    def write_shards() -> None:
        arrays, listing = _owned_shards(tensors, me)
        file = tmp / _shards_file(me)
        safetensors.numpy.save_file(arrays, file)
        _fsync_file(file)
        part = {"file": file.name, "bytes": file.stat().st_size, "shards": listing}
        _write_file(file.with_suffix(".json"), json.dumps(part).encode())
        if me == 0:
            _write_files(tmp, files)

    def finish() -> None:
        if me != 0:
            return
        entries = {name: {**_entry(leaf)[1], "shards": []} for name, leaf in tensors.items()}
        shard_files = {}
        for process in range(jax.process_count()):
            listing = (tmp / _shards_file(process)).with_suffix(".json")
            part = json.loads(_read(listing, MAX_MANIFEST_BYTES))
            shard_files[part["file"]] = part["bytes"]
            for name, shards in part["shards"].items():
                entries[name]["shards"] += [{"file": part["file"], **shard} for shard in shards]
            os.remove(listing)
        manifest = _manifest(SHARDED_VERSION, entries, structure, metadata, files)
        manifest["shard_files"] = shard_files
        _check_tiling(tmp / MANIFEST, manifest)
        _commit(tmp, path, manifest)

    step(begin, "to start the save")
    step(write_shards, "to write their shards")
    step(finish, "to finish the save")
    return path


def _read(file: Path, max_bytes: int | None, *, exact: bool = False) -> bytes:
    """A regular file's bytes, at most ``max_bytes`` (exactly, with ``exact``), or a CheckpointError."""
    try:
        data = read_regular_file(file, max_bytes)
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    except OSError as e:
        raise CheckpointError(f"{file}: cannot be read ({e.strerror or e})") from None
    except ValueError as e:
        raise CheckpointError(f"{file}: {e}") from None
    if exact and len(data) != max_bytes:
        raise CheckpointError(f"{file}: {len(data)} bytes, but the manifest declares {max_bytes} (truncated)")
    return data


def _read_manifest(path: Path) -> dict:
    """The manifest of the checkpoint at ``path``, its digest and consistency checked first."""
    file = path / MANIFEST
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    if not os.path.lexists(file):
        raise CheckpointError(f"{file}: missing; {path} is not a complete fnn checkpoint")
    data = _read(file, MAX_MANIFEST_BYTES)
    try:
        return _parse_manifest(file, data)
    except RecursionError:
        raise CheckpointError(f"{file}: nested too deeply") from None


def _is_size(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _parse_manifest(file: Path, data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not an fnn checkpoint manifest")
    version = manifest.get("version")
    if version == 1:
        if MANIFEST_DIGEST in manifest or "tensors_bytes" in manifest:  # a version edited down
            raise CheckpointError(f"{file}: says format version 1 but holds format 2's fields (edited)")
        warnings.warn(
            f"{file}: format version 1 (fnn before the manifest had a digest): its tensors are "
            "verified but an edit of its manifest cannot be detected; save it again to upgrade it",
            stacklevel=4,
        )
    if version not in (1, VERSION, SHARDED_VERSION):
        raise CheckpointError(
            f"{file}: format version {version!r}; this fnn reads {VERSION}, {SHARDED_VERSION} (sharded) and 1"
        )
    if version != 1 and manifest.get(MANIFEST_DIGEST) != _manifest_digest(manifest):
        raise CheckpointError(
            f"{file}: its content does not match its {MANIFEST_DIGEST} (corrupted or edited)"
        )
    manifest.setdefault("files", {})
    manifest.setdefault("tensors_bytes", None)  # format 1 declares no sizes
    for field, kind in [("tensors", dict), ("metadata", dict), ("files", dict)]:
        if not isinstance(manifest.get(field), kind):
            raise CheckpointError(f"{file}: field {field!r} is missing or malformed")
    if version == VERSION and not _is_size(manifest["tensors_bytes"]):
        raise CheckpointError(f"{file}: field 'tensors_bytes' is missing or malformed")
    shard_files = manifest.get("shard_files")
    if version == SHARDED_VERSION and not (
        isinstance(shard_files, dict)
        and all(_SHARDS_FILE.fullmatch(k) and _is_size(v) for k, v in shard_files.items())
    ):
        raise CheckpointError(f"{file}: field 'shard_files' is missing or malformed")
    for name, entry in manifest["files"].items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and (_is_size(entry.get("bytes")) or version == 1)
        ):
            raise CheckpointError(f"{file}: malformed entry for file {name!r}: {entry!r}")
    for name, entry in manifest["tensors"].items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("dtype"), str)
            and entry["dtype"] in _DTYPES
            and isinstance(entry.get("shape"), list)
            and all(_is_size(d) for d in entry["shape"])
            and (
                isinstance(entry.get("shards"), list)
                if version == SHARDED_VERSION
                else isinstance(entry.get("sha256"), str)
            )
            and entry.get("key_impl", "threefry2x32") in _KEY_IMPLS
        ):
            raise CheckpointError(f"{file}: malformed entry for tensor {name!r}: {entry!r}")
        if "key_impl" in entry:
            data_shape = _key_data_shape(entry["key_impl"])
            if entry["dtype"] != "uint32" or entry["shape"][-len(data_shape) :] != data_shape:
                raise CheckpointError(
                    f"{file}: tensor {name!r}: {entry['key_impl']} keys are uint32 data ending in "
                    f"{data_shape}, the manifest has {entry['dtype']}{entry['shape']}"
                )
    if version == SHARDED_VERSION:
        _check_tiling(file, manifest)
    named = _tensor_refs(manifest.get("tree"), file)
    if sorted(named) != sorted(manifest["tensors"]):
        raise CheckpointError(
            f"{file}: inconsistent: the tree names tensors {sorted(set(named) - set(manifest['tensors']))} "
            f"that are not listed, and lists {sorted(set(manifest['tensors']) - set(named))} it does not name"
        )
    return manifest


def _check_tiling(file: Path, manifest: dict) -> None:
    """Checks that each tensor's shards lie inside it, in listed files, and cover it exactly once."""
    for name, entry in manifest["tensors"].items():
        shape = entry["shape"]
        boxes = []
        for shard in entry["shards"]:
            index = shard.get("index") if isinstance(shard, dict) else None
            if not (
                isinstance(index, list)
                and len(index) == len(shape)
                and all(
                    isinstance(b, list) and len(b) == 2 and all(_is_size(x) for x in b) and b[0] <= b[1] <= d
                    for b, d in zip(index, shape)
                )
                and isinstance(shard.get("sha256"), str)
                and shard.get("file") in manifest["shard_files"]
            ):
                raise CheckpointError(f"{file}: tensor {name!r}: malformed shard {shard!r}")
            boxes.append(index)
        covered = sum(math.prod(b - a for a, b in box) for box in boxes)
        overlapping = any(
            all(max(a[0], b[0]) < min(a[1], b[1]) for a, b in zip(one, other))
            for i, one in enumerate(boxes)
            for other in boxes[:i]
        )
        if overlapping or covered != math.prod(shape):
            raise CheckpointError(
                f"{file}: tensor {name!r}{shape}: its shards "
                + ("overlap" if overlapping else f"cover {covered} of its {math.prod(shape)} elements")
            )


def _tensor_refs(node: Any, file: Path, depth: int = 0) -> list[str]:
    """The tensors a tree names, checking that it is nested at most ``MAX_DEPTH`` levels."""
    if depth > MAX_DEPTH:
        raise CheckpointError(f"{file}: the tree is nested deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict):
        return []
    if "tensor" in node:
        if not isinstance(node["tensor"], str):
            raise CheckpointError(f"{file}: malformed tree node {node!r}")
        return [node["tensor"]]
    children = node.get("dict", {})
    children = list(children.values()) if isinstance(children, dict) else []
    sequence = node.get("list", node.get("tuple", []))
    return [
        ref
        for child in children + (sequence if isinstance(sequence, list) else [])
        for ref in _tensor_refs(child, file, depth + 1)
    ]


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata saved with a checkpoint (reads the manifest only, checking its digest).

    Args:
        path: a directory written by :func:`save`.

    Raises:
        CheckpointError: when the manifest is missing, malformed or corrupted.
    """
    return _read_manifest(Path(path))["metadata"]


@functools.cache
def _key_dtype(impl: str) -> str:
    return str(jax.eval_shape(lambda: jax.random.key(0, impl=impl)).dtype)  # e.g. key<fry>


@functools.cache
def _key_data_shape(impl: str) -> list[int]:
    return list(jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl))).shape)


def read_file(path: str | os.PathLike, name: str, *, verify: bool = True) -> bytes:
    """A file stored with :func:`save`'s ``files``, checked against its size and digest.

    Args:
        path: a directory written by :func:`save`.
        name: the file's name.
        verify: check its SHA-256 digest (on by default).

    Raises:
        CheckpointError: when the file is not listed, missing, or corrupted.
    """
    path = Path(path)
    entry = _read_manifest(path)["files"].get(name)
    if not isinstance(entry, dict) or not _FILE_NAME.fullmatch(name):
        raise CheckpointError(f"{path / MANIFEST}: lists no file {name!r}")
    size = entry.get("bytes")  # None only in format 1
    data = _read(path / name, size, exact=size is not None)
    if verify and _digest(data) != entry["sha256"]:
        raise CheckpointError(f"{path / name}: its bytes do not match the manifest's sha256 (corrupted)")
    return data


def _spec(entry: Mapping) -> str:
    """``float32[3, 2]``; a typed key's shape excludes its key data's trailing axis."""
    if "key_impl" in entry:
        return f"{_key_dtype(entry['key_impl'])}{list(entry['shape'][:-1])}"
    return f"{entry['dtype']}{list(entry['shape'])}"


def _read_tensors(path: Path, manifest: dict, names: Iterable[str], verify: bool) -> dict[str, np.ndarray]:
    """The named tensors of a one-file checkpoint as NumPy arrays, checked against the manifest."""
    file = path / TENSORS
    size = manifest["tensors_bytes"]  # None only in format 1
    data = _read(file, size, exact=size is not None)
    try:
        stored = dict(safetensors.deserialize(data))
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
        out[name] = np.frombuffer(raw["data"], dtype).reshape(entry["shape"])
    if problems:
        raise CheckpointError(f"{file}: " + "; ".join(problems))
    return out


class _ShardReader:
    """Regions of the tensors of a sharded checkpoint, read from the files that hold them.

    Each shards file is read (bounded by its declared size) the first time a
    region needs one of its shards, and each shard's digest is checked the
    first time it is used; a process restoring its own part reads only the
    files holding that part.
    """

    def __init__(self, path: Path, manifest: dict, verify: bool):
        self.path, self.manifest, self.verify = path, manifest, verify
        self.files: dict[str, dict[str, Any]] = {}
        self.shards: dict[str, np.ndarray] = {}

    def _file(self, name: str) -> dict[str, Any]:
        if name not in self.files:
            file = self.path / name
            data = _read(file, self.manifest["shard_files"][name], exact=True)
            try:
                stored = dict(safetensors.deserialize(data))
            except Exception as e:  # safetensors raises its own error type for any malformed file
                raise CheckpointError(f"{file}: not a valid safetensors file ({e})") from None
            listed = {
                _shard_key(tensor, shard["index"])
                for tensor, entry in self.manifest["tensors"].items()
                for shard in entry["shards"]
                if shard["file"] == name
            }
            if set(stored) != listed:
                raise CheckpointError(
                    f"{file}: holds shards {sorted(set(stored) - listed)} the manifest does not list and "
                    f"lacks {sorted(listed - set(stored))}"
                )
            self.files[name] = stored
        return self.files[name]

    def _shard(self, tensor: str, shard: dict) -> np.ndarray:
        key = _shard_key(tensor, shard["index"])
        if key not in self.shards:
            raw = self._file(shard["file"])[key]
            code, dtype = _DTYPES[self.manifest["tensors"][tensor]["dtype"]]
            shape = [b - a for a, b in shard["index"]]
            where = f"{self.path / shard['file']}: shard {key!r}"
            if raw["dtype"] != code or list(raw["shape"]) != shape:
                raise CheckpointError(
                    f"{where}: the file's header says {raw['dtype']}{list(raw['shape'])}, the manifest {code}{shape}"
                )
            if self.verify and _digest(raw["data"]) != shard["sha256"]:
                raise CheckpointError(
                    f"{where}: its bytes do not match the manifest's sha256 (corrupted data)"
                )
            self.shards[key] = np.frombuffer(raw["data"], dtype).reshape(shape)
        return self.shards[key]

    def region(self, tensor: str, index: tuple) -> np.ndarray:
        """The part ``index`` (a tuple of slices, as ``jax.make_array_from_callback`` passes) of a tensor."""
        entry = self.manifest["tensors"][tensor]
        want = _bounds(index, entry["shape"]) + [[0, d] for d in entry["shape"][len(index) :]]
        exact = [shard for shard in entry["shards"] if shard["index"] == want]
        if exact:  # the common case: a device's part is a shard as saved, on the same mesh or one device
            return self._shard(tensor, exact[0])
        out = np.empty([b - a for a, b in want], _DTYPES[entry["dtype"]][1])
        for shard in entry["shards"]:
            common = [[max(a, c), min(b, d)] for (a, b), (c, d) in zip(want, shard["index"])]
            if out.size == 0 or any(a >= b for a, b in common):
                continue
            source = self._shard(tensor, shard)[
                tuple(slice(a - s, b - s) for (a, b), (s, _) in zip(common, shard["index"]))
            ]
            out[tuple(slice(a - s, b - s) for (a, b), (s, _) in zip(common, want))] = source
        return out


def _load(path: Path, manifest: dict, names: Sequence[str], verify: bool, like: Mapping[str, Any]) -> dict:
    """The named tensors as arrays (typed keys rewrapped), each placed like its leaf in ``like``.

    A leaf with a sharding (a placed ``jax.Array``, a ``ShapeDtypeStruct`` with
    one) gets the same sharding, built from the parts each device needs
    (``jax.make_array_from_callback``): a checkpoint restores onto any mesh, or
    onto one device, whatever mesh wrote it.
    """
    entries = manifest["tensors"]
    wide = [
        f"tensor {n!r} is {entries[n]['dtype']}, which needs jax_enable_x64 (it would be cast to 32 bits)"
        for n in names
        if not jax.config.jax_enable_x64 and entries[n]["dtype"] in ("int64", "uint64", "float64")
    ]
    if wide:
        raise CheckpointError(f"{path}: " + "; ".join(wide))
    if manifest["version"] == SHARDED_VERSION:
        reader = _ShardReader(path, manifest, verify)
        region = reader.region
    else:
        whole = _read_tensors(path, manifest, names, verify)
        region = lambda name, index: whole[name][index]  # noqa: E731
    out = {}
    for name in names:
        entry, leaf = entries[name], like.get(name)
        sharding = (
            getattr(leaf, "sharding", None) if isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)) else None
        )
        if sharding is None:
            value = jnp.asarray(region(name, ()))
        else:
            value = jax.make_array_from_callback(
                tuple(entry["shape"]), sharding, functools.partial(region, name)
            )
        out[name] = jax.random.wrap_key_data(value, impl=entry["key_impl"]) if "key_impl" in entry else value
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
            A leaf with a sharding (a placed array, or a ``ShapeDtypeStruct``
            with ``sharding=``) comes back with that sharding, whatever mesh
            wrote the checkpoint; each device gets only its part.
            Without a target, the tree is rebuilt from the manifest with plain
            dicts, lists and tuples (NamedTuples come back as dicts).
        verify: check each tensor's SHA-256 digest (on by default). The
            manifest's own digest is always checked (format 1 has none: it
            loads with a warning).

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
        arrays = _load(path, manifest, list(manifest["tensors"]), verify, {})
        return _rebuild(manifest.get("tree"), arrays, str(path / MANIFEST))
    specs, values = _saved_leaves(manifest, str(path / MANIFEST))
    wanted = _target_specs(target)
    problems = _mismatches(wanted, specs)
    if problems:
        raise CheckpointError(f"{path} does not fit the target:\n  " + "\n  ".join(problems))
    arrays = _load(path, manifest, [n for n in wanted if n not in values], verify, wanted)
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
    so a crash while saving leaves the earlier ones untouched, and one while
    saving a step again (which overwrites it) leaves its old or its new copy;
    leftover temporary directories are ignored and cleared when a manager
    opens the directory (an old copy moved aside by an overwrite is put
    back). One process should write to a directory at a time: in a
    multi-process run (:mod:`fnn.parallel`) every process calls :meth:`save`,
    which waits for all of them and lets process 0 write (or, for arrays
    split over the processes, each process its parts), so the directory must
    be one all processes see if they are to resume from it. Opening a
    manager clears scratch, so a program that only watches a directory
    another one writes (an evaluator, say) reads with :func:`restore` and
    :func:`read_metadata` on its ``ckpt_*`` directories instead.

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
        every = check_int("CheckpointManager", "every", every)
        keep_best = check_int("CheckpointManager", "keep_best", keep_best, low=0)
        if max_to_keep is not None:
            max_to_keep = check_int("CheckpointManager", "max_to_keep", max_to_keep)
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"CheckpointManager: mode must be 'auto', 'min' or 'max', got {mode!r}")
        from fnn.metrics import better

        self.directory = Path(directory)
        self.max_to_keep, self.every, self.keep_best = max_to_keep, every, keep_best
        self.monitor = monitor
        self.mode = (better(monitor) if mode == "auto" else mode) if monitor else None
        self.directory.mkdir(parents=True, exist_ok=True)
        if is_primary():  # another process's scratch may be process 0's save in progress
            _clean_scratch(self.directory)

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
        """The step of the best checkpoint by ``monitor`` (``None`` when none has the metric).

        A manager made without ``monitor`` uses the one the newest checkpoint
        was saved with (:class:`fnn.ModelCheckpoint` records it), so another
        script needs only the directory.
        """
        monitor, mode = self.monitor, self.mode
        if monitor is None:
            latest = self.latest()
            recorded = read_metadata(self.path(latest)).get("monitor") if latest is not None else None
            if not isinstance(recorded, dict) or recorded.get("mode") not in ("min", "max"):
                raise ValueError(
                    f"CheckpointManager.best needs a monitor: no checkpoint in {self.directory} records "
                    "one; pass CheckpointManager(directory, monitor=...)"
                )
            monitor, mode = str(recorded["name"]), recorded["mode"]
        scored = self._scores(monitor)
        if not scored:
            return None
        pick = min if mode == "min" else max
        return pick(scored, key=scored.__getitem__)

    def _scores(self, monitor: str | None = None) -> dict[int, float]:
        monitor = monitor or self.monitor
        scores = {}
        for step in self.steps():
            try:
                metrics = read_metadata(self.path(step)).get("metrics")
            except CheckpointError:
                continue
            value = metrics.get(monitor) if isinstance(metrics, dict) else None
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
        step = check_int("CheckpointManager.save", "step", step, low=0)
        if not force and step % self.every:
            return None
        meta = {
            **(metadata or {}),
            "step": step,
            "metrics": {k: float(v) for k, v in (metrics or {}).items()},
            **({"monitor": {"name": self.monitor, "mode": self.mode}} if self.monitor else {}),
        }
        if any(_is_split(a) and not a.is_fully_addressable for a in jax.tree.leaves(tree)):
            save(self.path(step), tree, metadata=meta, overwrite=True)  # each process writes its parts
        else:
            barrier(f"fnn.checkpoint {self.directory.name} {step}")  # every process has reached this state
            if is_primary():
                save(self.path(step), tree, metadata=meta, overwrite=True)
        if is_primary():
            self._prune()
        return self.path(step)

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
        """The metadata of the checkpoint of ``step`` (the newest by default); see :func:`read_metadata`."""
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

    def _repr_html_(self) -> str:
        from fnn import _display

        return _display.sections(
            "transfer",
            [
                ("loaded from the source", self.loaded),
                ("freshly initialised", self.initialised),
                ("not used from the source", self.unused),
            ],
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
            a pattern or the prefix matches nothing, or no path is shared at all
            (foreign names such as Keras's ``kernel``: see :mod:`fnn.interop`).
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
    if not take and include is None:  # nothing in common: never a silent no-op
        raise ValueError(
            f"transfer: no source path is a target path (source: {sorted(source_leaves)[:4]}..., target: "
            f"{names[:4]}...); for PyTorch or Keras weights use fnn.interop.load_torch or load_keras"
        )
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
