"""Loaders for the data sets a TensorFlow/Keras course uses, from their published files.

Each loader reads the files as their authors publish them, from a local folder:
the ``path=`` you pass, or else the cache folder ``$FNN_DATA`` (default
``~/.cache/fnn/datasets``). Nothing is downloaded: a missing file raises
:class:`FileNotFoundError` naming the file, where it was looked for and the URL
to get it from. Nothing is unpickled or executed; the CIFAR "python version"
(pickles) is refused in favour of the binary version.

| loader | files | returns |
|---|---|---|
| :func:`mnist` | ``<cache>/mnist/train-images-idx3-ubyte.gz`` and the other three | ``(x, y), (x, y)``, uint8 |
| ``mnist(kind="fashion_mnist")`` | ``<cache>/fashion_mnist/`` (the same four names) | ``(x, y), (x, y)``, uint8 |
| :func:`cifar10` | ``<cache>/cifar-10-batches-bin/*.bin`` or ``cifar-10-binary.tar.gz`` | NHWC uint8, labels ``(n, 1)`` |
| :func:`cifar100` | ``<cache>/cifar-100-binary/{train,test}.bin`` or the tarball | NHWC uint8, labels ``(n, 1)`` |
| :func:`california_housing` | ``<cache>/california_housing/housing.csv`` | ``(x, y)``, float32 |
| :func:`imdb` | ``<cache>/aclImdb/{train,test}/{neg,pos}/*.txt`` | lists of str, int32 labels |
| :func:`csv` | any CSV file with a header row | ``(x, y)``, float32 |

Integrity: files whose official SHA-256 is in :data:`SHA256` (the published
MNIST, Fashion-MNIST and CIFAR archives; digests from TensorFlow Datasets'
checksum lists) are verified before use. Pass ``sha256={"file name": digest}``
to check other files, or ``sha256={}`` to check nothing (e.g. for files you
made yourself); :func:`verify` checks one file.

Example:
    >>> import gzip, pathlib, tempfile, numpy as np
    >>> from fnn import datasets
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> images, labels = np.zeros((3, 28, 28), np.uint8), np.array([7, 2, 1], np.uint8)
    >>> for split in ("train", "t10k"):
    ...     datasets.write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
    ...     datasets.write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    >>> (x_train, y_train), (x_test, y_test) = datasets.mnist(folder, sha256={})
    >>> x_train.shape, x_train.dtype, y_train.tolist()
    ((3, 28, 28), dtype('uint8'), [7, 2, 1])
"""

from __future__ import annotations

import csv as _csv
import gzip
import hashlib
import os
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "HOUSING_FEATURES",
    "HOUSING_LABEL",
    "SHA256",
    "cache_dir",
    "california_housing",
    "cifar10",
    "cifar100",
    "csv",
    "imdb",
    "mnist",
    "verify",
    "write_idx",
]

#: Official SHA-256 digests of the published files (from TensorFlow Datasets' url_checksums),
#: keyed ``"<kind>/<file>"`` for MNIST and Fashion-MNIST (which share file names), else by file name.
SHA256: Mapping[str, str] = MappingProxyType(
    {
        # MNIST (yann.lecun.com / storage.googleapis.com/cvdf-datasets/mnist)
        "mnist/train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "mnist/train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "mnist/t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "mnist/t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        # Fashion-MNIST (github.com/zalandoresearch/fashion-mnist)
        "fashion_mnist/train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "fashion_mnist/train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "fashion_mnist/t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "fashion_mnist/t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "cifar-10-binary.tar.gz": "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        "cifar-100-binary.tar.gz": "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
        "aclImdb_v1.tar.gz": "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
    }
)

_URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/ (mirror of http://yann.lecun.com/exdb/mnist/)",
    "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist (files at "
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/)",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    "housing": "https://raw.githubusercontent.com/ageron/handson-ml2/master/datasets/housing/housing.csv",
    "imdb": "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
}

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"); all big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}

#: The numeric columns of the published ``housing.csv`` (Géron, *Hands-On ML*); the
#: tenth column, ``ocean_proximity``, is text and is left out unless you select it.
HOUSING_FEATURES = (
    "longitude",
    "latitude",
    "housing_median_age",
    "total_rooms",
    "total_bedrooms",
    "population",
    "households",
    "median_income",
)
HOUSING_LABEL = "median_house_value"


def cache_dir() -> Path:
    """The folder loaders read when no ``path=`` is given.

    Returns:
        ``$FNN_DATA`` if that environment variable is set and not empty, else
        ``~/.cache/fnn/datasets``. The folder is not created.

    Example:
        >>> isinstance(cache_dir(), Path)
        True
    """
    env = os.environ.get("FNN_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fnn" / "datasets"


def verify(path: str | os.PathLike, expected_sha256: str) -> None:
    """Check that a file's SHA-256 digest is ``expected_sha256``.

    Args:
        path: the file.
        expected_sha256: 64 hexadecimal digits (case-insensitive).

    Raises:
        ValueError: if ``expected_sha256`` is not 64 hex digits, or the file's
            digest differs (the message names the file and both digests).
        FileNotFoundError: if the file does not exist.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "empty"
        >>> f.write_bytes(b"")
        0
        >>> verify(f, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    """
    expected = str(expected_sha256).lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(f"verify: expected_sha256 must be 64 hex digits, got {expected_sha256!r}")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise ValueError(
            f"{path}: sha256 is {digest.hexdigest()}, expected {expected} (a corrupted, partial or "
            "different file; download it again, or pass sha256={} to skip the check for files you made)"
        )


def _check_digest(file: Path, key: str, sha256: Mapping[str, str] | None) -> None:
    """Verify ``file`` if a digest is known for it: in ``sha256`` (by file name) or in SHA256 (by ``key``)."""
    if sha256 is None:
        expected = SHA256.get(key)
    elif not isinstance(sha256, Mapping):
        raise TypeError(
            f"sha256 must be a mapping from file name to digest or None, got {type(sha256).__name__}"
        )
    else:
        expected = sha256.get(file.name)
    if expected is not None:
        verify(file, expected)


def _root(path: str | os.PathLike | None, sub: str = "") -> Path:
    return Path(path).expanduser() if path is not None else cache_dir() / sub


def _missing(what: str, where: Path, url: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{what} not found in {where}; download it from {url} and put it there (or pass path=)"
    )


def _read_maybe_gzip(file: Path) -> bytes:
    data = file.read_bytes()
    if file.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{file}: not a valid gzip file ({e})") from None
    return data


# --------------------------------------------------------------------------- IDX (MNIST)


def _parse_idx(data: bytes, name: str) -> np.ndarray:
    """An IDX file's array, every header field checked against the file length."""
    if len(data) < 4:
        raise ValueError(f"{name}: {len(data)} bytes is too short for an IDX header (4 bytes)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{name}: bad IDX magic number 0x{data[:4].hex()}: the first two bytes must be 0 (not an IDX file?)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(
            f"{name}: unknown IDX type code 0x{code:02x}; expected one of {[f'0x{c:02x}' for c in _IDX_DTYPES]}"
        )
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{name}: truncated IDX header: {ndim} dimensions need {header} bytes, file has {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    need = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    have = len(data) - header
    if have < need:
        raise ValueError(
            f"{name}: truncated: dimensions {dims} need {need} bytes of data, the file has {have}"
        )
    if have > need:
        raise ValueError(
            f"{name}: dimensions {dims} need {need} bytes of data but the file has {have} "
            "(dimensions disagree with the file length)"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: Any) -> None:
    """Write an array as an IDX file (gzip-compressed when ``path`` ends in ``.gz``).

    The inverse of what :func:`mnist` reads: handy for making small MNIST-format
    files, or exporting arrays to tools that read IDX.

    Args:
        path: the file to write.
        array: a NumPy array of dtype uint8, int8, int16, int32, float32 or
            float64 with 1 to 255 dimensions.

    Raises:
        ValueError: for another dtype, a scalar, or more than 255 dimensions.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> write_idx(f, np.array([3, 1, 4], np.uint8))
        >>> f.read_bytes().hex()
        '0000080100000003030104'
    """
    a = np.asarray(array)
    code = _IDX_CODES.get(a.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(
            f"write_idx: array dtype must be one of uint8, int8, int16, int32, float32, float64; got {a.dtype}"
        )
    if not 1 <= a.ndim <= 255:
        raise ValueError(f"write_idx: array must have 1 to 255 dimensions, got shape {a.shape}")
    data = (
        bytes([0, 0, code, a.ndim])
        + np.asarray(a.shape, ">u4").tobytes()
        + a.astype(a.dtype.newbyteorder(">")).tobytes()
    )
    Path(path).write_bytes(gzip.compress(data, mtime=0) if str(path).endswith(".gz") else data)


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def mnist(
    path: str | os.PathLike | None = None, kind: str = "mnist", *, sha256: Mapping[str, str] | None = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST or Fashion-MNIST from the four published IDX files, like ``keras.datasets.mnist.load_data()``.

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each either
    gzip-compressed (``.gz``, as published) or not.

    Args:
        path: the folder holding the four files; default ``cache_dir() / kind``.
        kind: ``"mnist"`` or ``"fashion_mnist"`` (the same format and file names).
        sha256: digests to check by file name; ``None`` checks the official
            ``.gz`` files against :data:`SHA256`, ``{}`` checks nothing.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: images ``(n, 28, 28)`` and
        labels ``(n,)``, both uint8 (60000 and 10000 examples for the official files).

    Raises:
        FileNotFoundError: a file is missing (the message says where to get it).
        ValueError: a file is not a valid IDX file of the expected shape and
            dtype, labels and images disagree in count, or a digest differs.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for split, n in (("train", 2), ("t10k", 1)):
        ...     write_idx(folder / f"{split}-images-idx3-ubyte", np.full((n, 28, 28), 255, np.uint8))
        ...     write_idx(folder / f"{split}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8))
        >>> (x_train, y_train), (x_test, y_test) = mnist(folder)
        >>> x_train.shape, x_test.shape, y_train.tolist()
        ((2, 28, 28), (1, 28, 28), [0, 1])
    """
    if kind not in ("mnist", "fashion_mnist"):
        raise ValueError(f"mnist: kind must be 'mnist' or 'fashion_mnist', got {kind!r}")
    folder = _root(path, kind)
    arrays = []
    for stem in _MNIST_FILES:
        candidates = [folder / (stem + ".gz"), folder / stem]
        file = next((f for f in candidates if f.is_file()), None)
        if file is None:
            raise _missing(f"{stem}.gz (or {stem})", folder, _URLS[kind])
        _check_digest(file, f"{kind}/{file.name}", sha256)
        array = _parse_idx(_read_maybe_gzip(file), str(file))
        want = 3 if "images" in stem else 1
        if array.ndim != want or array.dtype != np.uint8:
            raise ValueError(
                f"{file}: expected a uint8 IDX array with {want} dimension(s), got {array.dtype} with shape {array.shape}"
            )
        arrays.append((file, array))
    pairs = []
    for (fx, x), (fy, y) in (arrays[0:2], arrays[2:4]):
        if len(x) != len(y):
            raise ValueError(f"{fy}: has {len(y)} labels but {fx.name} has {len(x)} images")
        pairs.append((x, y))
    return pairs[0], pairs[1]


# --------------------------------------------------------------------------- CIFAR (binary version)

_CIFAR = {
    "cifar10": {
        "folder": "cifar-10-batches-bin",
        "tar": "cifar-10-binary.tar.gz",
        "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
        "test": ["test_batch.bin"],
        "labels": 1,
        "classes": (10,),
        "pickle": ("cifar-10-batches-py", "cifar-10-python.tar.gz", "data_batch_1"),
    },
    "cifar100": {
        "folder": "cifar-100-binary",
        "tar": "cifar-100-binary.tar.gz",
        "train": ["train.bin"],
        "test": ["test.bin"],
        "labels": 2,
        "classes": (20, 100),  # coarse, fine: the order of the label bytes
        "pickle": ("cifar-100-python", "cifar-100-python.tar.gz", "train"),
    },
}


def _cifar_files(which: str, root: Path, sha256: Mapping[str, str] | None) -> dict[str, tuple[str, bytes]]:
    """Each record file's (where, bytes), from the extracted folder or the binary tarball."""
    spec = _CIFAR[which]
    names = spec["train"] + spec["test"]
    folder = root if (root / names[0]).is_file() else root / spec["folder"]
    tar = root if root.is_file() else root / spec["tar"]
    if folder.is_dir() and all((folder / n).is_file() for n in names):
        for n in names:
            _check_digest(folder / n, n, sha256)
        return {n: (str(folder / n), (folder / n).read_bytes()) for n in names}
    if tar.is_file() and tar.name.endswith((".tar.gz", ".tgz", ".tar")):
        _check_digest(tar, tar.name, sha256)
        out = {}
        # Read the members' bytes in memory: nothing is extracted to disk, so member paths cannot escape.
        with tarfile.open(tar) as archive:
            for member in archive.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in names:
                    out[name] = (f"{tar}:{member.name}", archive.extractfile(member).read())
        if missing := [n for n in names if n not in out]:
            raise ValueError(f"{tar}: the archive has no {missing[0]} (not the CIFAR binary version?)")
        return out
    for marker in spec["pickle"]:
        if (root / marker).exists() or root.name == marker:
            raise ValueError(
                f"{root / marker if root.name != marker else root} is the CIFAR python (pickle) version; fnn never "
                f"unpickles files (unpickling can run arbitrary code). Download the binary version {spec['tar']} "
                f"from {_URLS[which]} and put it (or its extracted {spec['folder']}/ folder) in {root}"
            )
    if folder.is_dir():
        absent = next(n for n in names if not (folder / n).is_file())
        raise _missing(absent, folder, _URLS[which])
    raise _missing(f"{spec['folder']}/ (or {spec['tar']})", root, _URLS[which])


def _cifar_records(where: str, data: bytes, spec: dict) -> tuple[np.ndarray, np.ndarray]:
    k = spec["labels"]
    size = k + 3072
    if len(data) % size:
        raise ValueError(
            f"{where}: {len(data)} bytes is not a whole number of {size}-byte records "
            f"({k} label byte(s) + 3072 pixel bytes; truncated or not the binary version?)"
        )
    records = np.frombuffer(data, np.uint8).reshape(-1, size)
    labels = records[:, :k]
    for j, classes in enumerate(spec["classes"]):
        bad = np.flatnonzero(labels[:, j] >= classes)
        if bad.size:
            raise ValueError(
                f"{where}: record {bad[0]} has label {labels[bad[0], j]}, expected 0..{classes - 1}"
            )
    # Each image is stored as 1024 red, 1024 green, 1024 blue bytes, rows first: CHW -> HWC as Keras returns.
    images = records[:, k:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.copy()


def _cifar(which: str, path, sha256) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    spec = _CIFAR[which]
    files = _cifar_files(which, _root(path), sha256)
    out = []
    for split in ("train", "test"):
        parts = [_cifar_records(*files[n], spec) for n in spec[split]]
        out.append((np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])))
    return out[0], out[1]


def cifar10(
    path: str | os.PathLike | None = None, *, sha256: Mapping[str, str] | None = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10 from its published *binary* version, like ``keras.datasets.cifar10.load_data()``.

    Reads ``cifar-10-batches-bin/data_batch_{1..5}.bin`` and ``test_batch.bin``
    (records of 1 label byte + 3072 pixel bytes), from the extracted folder or
    straight from ``cifar-10-binary.tar.gz`` (whose official digest is checked).
    The python version (pickles) is refused: fnn never unpickles.

    Args:
        path: a folder holding ``cifar-10-batches-bin/`` or
            ``cifar-10-binary.tar.gz``, that folder itself, or the tarball;
            default :func:`cache_dir`.
        sha256: digests to check by file name; ``None`` checks the official
            tarball against :data:`SHA256`, ``{}`` checks nothing.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: images ``(n, 32, 32, 3)``
        (NHWC) and labels ``(n, 1)``, both uint8 (50000 and 10000 examples).

    Raises:
        FileNotFoundError: no binary CIFAR-10 files were found.
        ValueError: the pickle version was found, a file is not whole
            records, a label is out of range, or a digest differs.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp()) / "cifar-10-batches-bin"
        >>> folder.mkdir()
        >>> for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        ...     _ = (folder / name).write_bytes(bytes([3]) + bytes(3072))  # one record, label 3
        >>> (x_train, y_train), (x_test, y_test) = cifar10(folder.parent)
        >>> x_train.shape, y_train.shape, y_test.tolist()
        ((5, 32, 32, 3), (5, 1), [[3]])
    """
    return _cifar("cifar10", path, sha256)


def cifar100(
    path: str | os.PathLike | None = None,
    label_mode: str = "fine",
    *,
    sha256: Mapping[str, str] | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """CIFAR-100 from its published *binary* version, like ``keras.datasets.cifar100.load_data()``.

    Reads ``cifar-100-binary/train.bin`` and ``test.bin`` (records of a coarse
    label byte, a fine label byte and 3072 pixel bytes), from the extracted
    folder or straight from ``cifar-100-binary.tar.gz``. The python version
    (pickles) is refused: fnn never unpickles.

    Args:
        path: a folder holding ``cifar-100-binary/`` or
            ``cifar-100-binary.tar.gz``, that folder itself, or the tarball;
            default :func:`cache_dir`.
        label_mode: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
        sha256: as for :func:`cifar10`.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: images ``(n, 32, 32, 3)``
        and labels ``(n, 1)``, uint8 (50000 and 10000 examples).

    Raises:
        FileNotFoundError: no binary CIFAR-100 files were found.
        ValueError: a bad ``label_mode``, or as for :func:`cifar10`.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("train.bin", "test.bin"):
        ...     _ = (folder / name).write_bytes(bytes([4, 42]) + bytes(3072))  # coarse 4, fine 42
        >>> (_, y_fine), _ = cifar100(folder)
        >>> (_, y_coarse), _ = cifar100(folder, label_mode="coarse")
        >>> y_fine.tolist(), y_coarse.tolist()
        ([[42]], [[4]])
    """
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"cifar100: label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    (x_train, y_train), (x_test, y_test) = _cifar("cifar100", path, sha256)
    j = 1 if label_mode == "fine" else 0
    return (x_train, y_train[:, j : j + 1]), (x_test, y_test[:, j : j + 1])


# --------------------------------------------------------------------------- CSV


def csv(
    path: str | os.PathLike,
    label: str,
    *,
    features: Sequence[str] | None = None,
    delimiter: str = ",",
    missing: str = "error",
    dtype: Any = np.float32,
    label_dtype: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Numeric features and labels from a CSV file with a header row.

    Only the selected columns are parsed, so a text column you do not select
    is fine. Rows that are completely empty (e.g. a trailing blank line) are skipped.

    Args:
        path: the CSV file.
        label: the name of the label column.
        features: the feature columns, in the order wanted; default every
            column except ``label``, in file order.
        delimiter: the field separator.
        missing: what an empty cell means: ``"error"`` (raise) or ``"nan"``
            (NaN; only for float dtypes).
        dtype: the features' NumPy dtype.
        label_dtype: the labels' dtype; default ``dtype``. An integer dtype
            requires whole-number labels.

    Returns:
        ``(x, y)``: ``x`` of shape ``(rows, len(features))`` and ``y`` of shape ``(rows,)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: no header, a missing label or feature column, a duplicated
            column name, a row with the wrong number of cells, or a non-numeric
            or (with ``missing="error"``) empty cell; messages name the line and column.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "data.csv"
        >>> _ = f.write_text("a,b,kind,y\\n1,2,cat,0\\n3,4.5,dog,1\\n")
        >>> x, y = csv(f, label="y", features=["a", "b"], label_dtype=np.int32)
        >>> x.tolist(), y.tolist()
        ([[1.0, 2.0], [3.0, 4.5]], [0, 1])
    """
    if missing not in ("error", "nan"):
        raise ValueError(f"csv: missing must be 'error' or 'nan', got {missing!r}")
    dtype, label_dtype = np.dtype(dtype), np.dtype(dtype if label_dtype is None else label_dtype)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"csv: {path} not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = _csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}: empty file; expected a header row of column names")
        header = [h.strip() for h in header]
        if dupes := sorted({h for h in header if header.count(h) > 1}):
            raise ValueError(f"{path}: column name(s) {dupes} appear more than once in the header")
        if label not in header:
            raise ValueError(f"{path}: no label column {label!r}; the columns are {header}")
        features = [h for h in header if h != label] if features is None else list(features)
        if unknown := [c for c in features if c not in header]:
            raise ValueError(f"{path}: no feature column(s) {unknown}; the columns are {header}")
        columns = [(header.index(c), c, dtype) for c in features] + [
            (header.index(label), label, label_dtype)
        ]
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}: line {reader.line_num} has {len(row)} cells, the header has {len(header)}"
                )
            rows.append(
                [_cell(row[i], name, kind, missing, path, reader.line_num) for i, name, kind in columns]
            )
    table = np.array(rows, np.float64).reshape(len(rows), len(columns))
    for j, (_, name, kind) in enumerate(columns):
        _check_fits(table[:, j], kind, f"{path}: column {name!r}")
    return table[:, :-1].astype(dtype), table[:, -1].astype(label_dtype)


def _check_fits(values: np.ndarray, dtype: np.dtype, where: str) -> None:
    """Refuse values the cast to ``dtype`` would turn into inf or wrap around (never cast silently)."""
    if dtype.kind == "f":
        bad = np.isfinite(values) & (np.abs(values) > np.finfo(dtype).max)
    else:
        info = np.iinfo(dtype)
        bad = (values < info.min) | (values > info.max)
    if bad.any():
        raise ValueError(f"{where}: {float(values[bad][0])!r} does not fit in {dtype}")


def _cell(text: str, column: str, dtype: np.dtype, missing: str, path: Path, line: int) -> float:
    text = text.strip()
    where = f"{path}: line {line}, column {column!r}"
    if not text:
        if missing == "error":
            raise ValueError(f"{where}: empty cell (pass missing='nan' to read empty cells as NaN)")
        if dtype.kind != "f":
            raise ValueError(f"{where}: empty cell, and {dtype} has no NaN")
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None
    if dtype.kind in "iu" and not value.is_integer():
        raise ValueError(f"{where}: {text!r} is not a whole number, needed for dtype {dtype}")
    return value


def california_housing(
    path: str | os.PathLike | None = None,
    *,
    features: Sequence[str] = HOUSING_FEATURES,
    missing: str = "nan",
    sha256: Mapping[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """California housing from the published ``housing.csv`` (Géron's *Hands-On Machine Learning*).

    The file's columns are ``longitude, latitude, housing_median_age,
    total_rooms, total_bedrooms, population, households, median_income,
    median_house_value, ocean_proximity``; the label is ``median_house_value``.
    Google's ``california_housing_train.csv`` (the same columns without
    ``ocean_proximity``) reads too. In the published file 207 ``total_bedrooms``
    cells are empty: they become NaN (``missing="nan"``), so impute or drop them.

    Args:
        path: ``housing.csv`` or a folder holding it; default
            ``cache_dir() / "california_housing"``.
        features: the feature columns; default the eight numeric ones.
        missing: ``"nan"`` or ``"error"``, as for :func:`csv`.
        sha256: digests to check by file name (no official digest is known).

    Returns:
        ``(x, y)``: float32 features ``(n, len(features))`` and prices ``(n,)``
        (20640 rows in the published file). Split them with
        :func:`fnn.data.train_test_split`.

    Raises:
        FileNotFoundError: the file is missing (the message says where to get it).
        ValueError: as for :func:`csv`.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "housing.csv"
        >>> _ = f.write_text(",".join(HOUSING_FEATURES) + ",median_house_value,ocean_proximity\\n"
        ...                  "-122.23,37.88,41,880,,322,126,8.3252,452600,NEAR BAY\\n")
        >>> x, y = california_housing(f)
        >>> x.shape, x[0, 4], y.tolist()
        ((1, 8), np.float32(nan), [452600.0])
    """
    file = _root(path, "california_housing")
    if file.is_dir() or path is None:
        file = file / "housing.csv"
    if not file.is_file():
        raise _missing(file.name, file.parent, _URLS["housing"])
    _check_digest(file, file.name, sha256)
    return csv(file, HOUSING_LABEL, features=features, missing=missing)


# --------------------------------------------------------------------------- IMDB


def imdb(
    path: str | os.PathLike | None = None,
) -> tuple[tuple[list[str], np.ndarray], tuple[list[str], np.ndarray]]:
    """The IMDB reviews from the published ``aclImdb`` folder layout (Maas et al., 2011).

    Reads ``aclImdb/{train,test}/{neg,pos}/*.txt`` (UTF-8) as raw text, the form
    ``keras.utils.text_dataset_from_directory`` reads; the unlabelled
    ``train/unsup`` reviews are not read. Order is deterministic: the ``neg``
    reviews then the ``pos`` reviews, each in sorted file-name order (shuffle
    with :func:`fnn.data.shuffle_indices`).

    Args:
        path: a folder holding ``aclImdb/``, or that folder itself; default
            :func:`cache_dir`. Extract ``aclImdb_v1.tar.gz`` first
            (``tar -xzf aclImdb_v1.tar.gz``; its digest is in :data:`SHA256`).

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: lists of review strings and
        int32 label arrays, 0 for negative and 1 for positive (25000 each).

    Raises:
        FileNotFoundError: a folder is missing (the message says where to get it).
        ValueError: a folder has no ``.txt`` files, or a file is not UTF-8.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()) / "aclImdb"
        >>> for split in ("train", "test"):
        ...     for sentiment in ("neg", "pos"):
        ...         (root / split / sentiment).mkdir(parents=True)
        ...         _ = (root / split / sentiment / "0_1.txt").write_text(f"a {sentiment} review")
        >>> (x_train, y_train), _ = imdb(root.parent)
        >>> x_train, y_train.tolist()
        (['a neg review', 'a pos review'], [0, 1])
    """
    root = _root(path)
    if root.name != "aclImdb" and not (root / "train").is_dir():
        root = root / "aclImdb"
    out = []
    for split in ("train", "test"):
        texts: list[str] = []
        labels: list[int] = []
        for label, sentiment in enumerate(("neg", "pos")):
            folder = root / split / sentiment
            if not folder.is_dir():
                raise _missing(
                    f"aclImdb/{split}/{sentiment}/", folder.parent, _URLS["imdb"] + " (then extract it)"
                )
            files = sorted(f for f in folder.iterdir() if f.suffix == ".txt" and f.is_file())
            if not files:
                raise ValueError(f"{folder}: no .txt reviews (an incomplete extraction?)")
            for f in files:
                try:
                    texts.append(f.read_text(encoding="utf-8"))
                except UnicodeDecodeError as e:
                    raise ValueError(f"{f}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            labels += [label] * len(files)
        out.append((texts, np.array(labels, np.int32)))
    return out[0], out[1]
