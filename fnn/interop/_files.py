"""Reading and writing foreign weight files: PyTorch-layout safetensors and Keras 3 HDF5.

Only formats that hold nothing but tensors are read. Pickle-based files (``.pt``,
``.pth``, ``.bin``, ``.ckpt``, ...) can run code when loaded, so they are refused
by name and by content; a ``.keras`` archive is opened as a zip and only its
``model.weights.h5`` is read (its ``config.json``, which names code, never is).
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import safetensors
import safetensors.numpy

from fnn._io import atomic_write_bytes, read_regular_file
from fnn.checkpoint import _DTYPES

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".joblib", ".tar")
_FROM_CODE = {code: dtype for code, dtype in _DTYPES.values()}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
KERAS_WEIGHTS_MEMBER = "model.weights.h5"
MAX_KERAS_WEIGHTS = 1 << 36  # 64 GiB: a bound on the archive member a zip header claims


class ForeignFileError(ValueError):
    """A weights file fnn will not or cannot read (pickle-based, malformed, foreign format)."""


def _pickle_refusal(path: str | os.PathLike, why: str) -> ForeignFileError:
    return ForeignFileError(
        f"{path}: {why}. fnn never unpickles (a pickle can run any code when loaded). Convert it to "
        "safetensors once, outside fnn, in an environment you trust with the file, e.g.\n"
        "  import torch, safetensors.torch\n"
        f"  state = torch.load({str(path)!r}, map_location='cpu', weights_only=True)\n"
        "  safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, 'model.safetensors')\n"
        "(Hugging Face models: save_pretrained(..., safe_serialization=True) writes model.safetensors.)"
    )


def _as_arrays(tensors: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """A mapping of names to arrays (numpy, JAX, or torch CPU tensors) as numpy arrays, checked."""
    out = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise ForeignFileError(f"{where}: tensor names must be strings, got {name!r}")
        if hasattr(value, "detach"):  # a torch tensor: numpy without importing torch here
            value = value.detach().cpu()
            if str(value.dtype) == "torch.bfloat16":  # numpy has no bfloat16: through its bits
                value = value.view(sys.modules["torch"].int16).numpy().view(ml_dtypes.bfloat16)
            else:
                value = value.numpy()
        array = np.asarray(value)
        if array.dtype.kind not in "biuf" and array.dtype.name not in _DTYPES:
            raise ForeignFileError(f"{where}: tensor {name!r} has dtype {array.dtype}, not a numeric one")
        out[name] = array
    return out


def read_safetensors(source: str | os.PathLike | bytes) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file (bfloat16 and float8 included), by name.

    Args:
        source: a path, or the file's bytes.

    Returns:
        ``{name: numpy array}`` in the file's dtypes.

    Raises:
        ForeignFileError: for a pickle-based file (by suffix or content) or a
            malformed one.
    """
    where = "safetensors bytes" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        if Path(source).suffix.lower() in PICKLE_SUFFIXES:
            raise _pickle_refusal(source, f"a {Path(source).suffix} file is a Python pickle")
        try:
            source = read_regular_file(source)
        except ValueError as e:
            raise ForeignFileError(f"{where}: {e}") from None
    # A safetensors file opens with its header's length, then "{"; a pickle with \x80 and a protocol.
    if source.startswith(_ZIP_MAGIC) or (source[:1] == b"\x80" and source[8:9] != b"{"):
        raise _pickle_refusal(where, "this is a PyTorch pickle (zip or pickle bytes), not safetensors")
    if source.startswith(_HDF5_MAGIC):
        raise ForeignFileError(f"{where}: this is an HDF5 file (Keras weights?): read it with load_keras")
    try:
        stored = safetensors.deserialize(source)
    except Exception as e:  # safetensors raises its own error type for any malformed file
        raise ForeignFileError(f"{where}: not a valid safetensors file ({e})") from None
    out = {}
    for name, raw in stored:
        if raw["dtype"] not in _FROM_CODE:
            raise ForeignFileError(
                f"{where}: tensor {name!r} has dtype {raw['dtype']}, which fnn cannot read"
            )
        out[name] = np.frombuffer(raw["data"], _FROM_CODE[raw["dtype"]]).reshape(raw["shape"])
    return out


def write_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, Any], metadata: dict | None = None
) -> None:
    """Writes ``{name: array}`` as a safetensors file, atomically (PyTorch reads it with
    ``safetensors.torch.load_file``)."""
    arrays = {k: np.ascontiguousarray(a) for k, a in _as_arrays(tensors, str(path)).items()}
    atomic_write_bytes(path, safetensors.numpy.save(arrays, metadata=metadata))


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ImportError("reading and writing Keras weights needs h5py: pip install 'fnn[keras]'") from None
    return h5py


def _keras_bytes(path: str | os.PathLike) -> bytes:
    """The HDF5 bytes of a ``.weights.h5`` file or of the weights inside a ``.keras`` archive."""
    if Path(path).suffix.lower() in PICKLE_SUFFIXES:
        raise _pickle_refusal(path, f"a {Path(path).suffix} file is a Python pickle")
    try:
        data = read_regular_file(path)
    except ValueError as e:
        raise ForeignFileError(f"{path}: {e}") from None
    if data.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = archive.namelist()
                if KERAS_WEIGHTS_MEMBER not in names:
                    if any(n.endswith("data.pkl") for n in names):
                        raise _pickle_refusal(path, "this is a PyTorch pickle archive")
                    raise ForeignFileError(
                        f"{path}: a zip archive without {KERAS_WEIGHTS_MEMBER}; a Keras 3 .keras file has one "
                        f"(this one holds {sorted(names)[:8]})"
                    )
                if archive.getinfo(KERAS_WEIGHTS_MEMBER).file_size > MAX_KERAS_WEIGHTS:
                    raise ForeignFileError(f"{path}: {KERAS_WEIGHTS_MEMBER} claims an implausible size")
                data = archive.read(KERAS_WEIGHTS_MEMBER)
        except zipfile.BadZipFile as e:
            raise ForeignFileError(f"{path}: a damaged zip archive ({e})") from None
    if not data.startswith(_HDF5_MAGIC):
        what = "a pickle" if data[:1] == b"\x80" else "not HDF5"
        raise ForeignFileError(f"{path}: {what}; expected a Keras .weights.h5 file or a .keras archive")
    return data


def read_keras(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The weights of a Keras 3 ``.weights.h5`` file or ``.keras`` archive, by HDF5 path.

    Paths read as Keras writes them: ``layers/dense/vars/0`` (a kernel),
    ``layers/lstm/cell/vars/1``, ``optimizer/vars/3``.

    Args:
        path: a ``.weights.h5`` file or a ``.keras`` archive.

    Returns:
        ``{hdf5 path: numpy array}``.

    Raises:
        ForeignFileError: for a pickle, a legacy Keras 2 HDF5 file, a non-numeric
            dataset, or a file that is not HDF5.
    """
    h5py = _h5py()
    data = _keras_bytes(path)
    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                raise ForeignFileError(
                    f"{path}: a legacy Keras 2 (tf.keras) HDF5 file; load it in Keras 3 and save it again with "
                    "model.save_weights('model.weights.h5')"
                )

            links: list[tuple[str, Any]] = []  # checked afterwards: h5py mangles errors raised in callbacks
            f.visititems_links(lambda name, link: links.append((name, link)))
            for name, link in links:
                if not isinstance(link, h5py.HardLink):  # a soft or external link reads another place or file
                    raise ForeignFileError(
                        f"{path}: {name!r} is a {type(link).__name__}; Keras files have none"
                    )
                if isinstance(f[name], h5py.Dataset):
                    out[name] = _dataset(path, name, f[name])
    except OSError as e:
        raise ForeignFileError(f"{path}: not a readable HDF5 file ({e})") from None
    return out


def _dataset(path: Any, name: str, data: Any) -> np.ndarray:
    """A dataset's array, if it is what Keras writes: numeric (or Keras's bfloat16), stored in the
    file itself, contiguous and uncompressed, so that reading it takes no more memory than the file."""
    if data.is_virtual or data.external or data.chunks is not None or data.compression is not None:
        raise ForeignFileError(
            f"{path}: dataset {name!r} is virtual, external, chunked or compressed; Keras writes none such"
        )
    bfloat16 = data.dtype == np.dtype("V2") and data.attrs.get("dtype") in ("bfloat16", b"bfloat16")
    if data.dtype.kind not in "biuf" and not bfloat16:
        raise ForeignFileError(f"{path}: dataset {name!r} has dtype {data.dtype}, not a numeric one")
    if data.id.get_storage_size() != data.size * data.dtype.itemsize:  # claims more than the file holds
        raise ForeignFileError(f"{path}: dataset {name!r} declares {data.shape} but stores other bytes")
    array = np.asarray(data[()])
    return array.view(ml_dtypes.bfloat16) if bfloat16 else array


def write_keras(path: str | os.PathLike, tensors: Mapping[str, Any]) -> None:
    """Writes ``{hdf5 path: array}`` as a Keras 3 ``.weights.h5`` file, atomically.

    Every group gets an (empty when it has no weights) ``vars`` group, as Keras's
    own files have, so ``model.load_weights`` finds each layer's entry.
    """
    h5py = _h5py()
    arrays = _as_arrays(tensors, str(path))
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_group("vars")
        for name, array in arrays.items():
            if array.dtype == ml_dtypes.bfloat16:  # as Keras stores it: the bits, and the dtype's name
                f.create_dataset(name, data=array.view(np.dtype("V2"))).attrs["dtype"] = "bfloat16"
            else:
                f.create_dataset(name, data=array)
        groups: list[str] = []
        f.visit(lambda n: groups.append(n) if isinstance(f[n], h5py.Group) else None)
        for group in groups:
            container = group == "layers" or group.endswith("/layers")
            if not container and not group.endswith("vars") and "vars" not in f[group]:
                f[group].create_group("vars")
    atomic_write_bytes(path, buffer.getvalue())
