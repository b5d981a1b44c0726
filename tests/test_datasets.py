"""fnn.datasets reads tiny files written here in each published format, byte by byte."""

from __future__ import annotations

import gzip
import hashlib
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fnn import datasets

NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file by the spec: 0, 0, type code, ndim, big-endian int32 dims, then the data."""
    return (
        struct.pack(">BBBB", 0, 0, code, array.ndim)
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )


def write_mnist(folder: Path, compress: bool = True, n_train: int = 3, n_test: int = 2) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        NAMES[1]: np.array([5, 0, 4], np.uint8)[:n_train],
        NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        NAMES[3]: np.array([7, 2], np.uint8)[:n_test],
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        data = idx_bytes(a)
        (folder / (name + ".gz" if compress else name)).write_bytes(gzip.compress(data) if compress else data)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reads_idx_files_exactly(tmp_path, compress):
    arrays = write_mnist(tmp_path, compress)
    (x_train, y_train), (x_test, y_test) = datasets.mnist(tmp_path, sha256={})
    for got, name in zip((x_train, y_train, x_test, y_test), NAMES, strict=True):
        assert got.dtype == np.uint8 and got.flags.writeable
        np.testing.assert_array_equal(got, arrays[name])


def test_mnist_cache_dir_and_fashion_kind(tmp_path, monkeypatch):
    monkeypatch.setenv("FNN_DATA", str(tmp_path))
    arrays = write_mnist(tmp_path / "fashion_mnist")
    (x_train, _), _ = datasets.mnist(kind="fashion_mnist", sha256={})
    np.testing.assert_array_equal(x_train, arrays[NAMES[0]])
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\.gz .*mnist.*cvdf-datasets"):
        datasets.mnist()
    with pytest.raises(ValueError, match="kind must be 'mnist' or 'fashion_mnist', got 'digits'"):
        datasets.mnist(tmp_path, kind="digits")


def test_mnist_official_digest_is_checked_by_default(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: sha256 is .*expected 440fcabf"):
        datasets.mnist(tmp_path)


def test_idx_errors_name_the_file_and_the_problem(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    file = tmp_path / "train-images-idx3-ubyte"
    cases = [
        (b"\x08\x03" + idx_bytes(images)[2:], r"bad IDX magic number 0x0803"),
        (
            idx_bytes(images)[:-1],
            r"truncated: dimensions \(3, 28, 28\) need 2352 bytes of data, the file has 2351",
        ),
        (
            idx_bytes(images) + b"\0",
            r"dimensions \(3, 28, 28\) need 2352 bytes of data but the file has 2353",
        ),
        (idx_bytes(images)[:10], r"truncated IDX header: 3 dimensions need 16 bytes, file has 10"),
        (idx_bytes(images, code=0x07), r"unknown IDX type code 0x07"),
        (
            idx_bytes(images.astype(">i4"), code=0x0C),
            r"expected a uint8 IDX array with 3 dimension\(s\), got int32",
        ),
    ]
    write_mnist(tmp_path, compress=False)
    for data, message in cases:
        file.write_bytes(data)
        with pytest.raises(ValueError, match=rf"train-images-idx3-ubyte: {message}"):
            datasets.mnist(tmp_path, sha256={})
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: not a valid gzip file"):
        datasets.mnist(tmp_path, sha256={})


def test_mnist_label_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / (NAMES[3] + ".gz")).write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(
        ValueError, match=r"t10k-labels-idx1-ubyte\.gz: has 5 labels but t10k-images-idx3-ubyte\.gz has 2"
    ):
        datasets.mnist(tmp_path, sha256={})


def test_write_idx_round_trips_and_matches_the_spec(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    datasets.write_idx(tmp_path / "a", a)
    assert (tmp_path / "a").read_bytes() == idx_bytes(a.astype(">f4"), code=0x0D)
    with pytest.raises(ValueError, match="write_idx: array dtype must be one of .* got int64"):
        datasets.write_idx(tmp_path / "b", np.zeros(2, np.int64))


def test_verify(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    datasets.verify(f, hashlib.sha256(b"abc").hexdigest().upper())
    with pytest.raises(ValueError, match=r"f: sha256 is ba7816bf.*, expected 0{64}"):
        datasets.verify(f, "0" * 64)
    with pytest.raises(ValueError, match="expected_sha256 must be 64 hex digits, got 'abc'"):
        datasets.verify(f, "abc")


def cifar_records(labels: list[list[int]], seed: int) -> tuple[bytes, np.ndarray]:
    """Records as the CIFAR page specifies: label byte(s), then 1024 R, 1024 G, 1024 B bytes, rows first."""
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    data = b""
    for lab, img in zip(labels, images, strict=True):
        data += bytes(lab) + b"".join(img[:, :, c].tobytes() for c in range(3))
    return data, images


CIFAR10 = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def test_cifar10_folder_and_tarball(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    expected = {}
    for i, name in enumerate(CIFAR10):
        data, images = cifar_records([[i], [9 - i]], seed=i)  # 2 records per file
        (folder / name).write_bytes(data)
        expected[name] = images
    (x_train, y_train), (x_test, y_test) = datasets.cifar10(tmp_path)
    np.testing.assert_array_equal(x_train, np.concatenate([expected[n] for n in CIFAR10[:5]]))
    np.testing.assert_array_equal(x_test, expected["test_batch.bin"])
    assert y_train.shape == (10, 1) and y_train.dtype == np.uint8
    assert y_train[:, 0].tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5] and y_test[:, 0].tolist() == [5, 4]

    tar = tmp_path / "t" / "cifar-10-binary.tar.gz"
    tar.parent.mkdir()
    with tarfile.open(tar, "w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-bin")
    (x2, y2), (x3, y3) = datasets.cifar10(tar.parent, sha256={})
    np.testing.assert_array_equal(x2, x_train)
    np.testing.assert_array_equal(y3, y_test)
    with pytest.raises(ValueError, match=r"cifar-10-binary\.tar\.gz: sha256 is .*expected c4a38c50"):
        datasets.cifar10(tar)

    (folder / "test_batch.bin").write_bytes(b"\0" * 3074)
    with pytest.raises(
        ValueError, match=r"test_batch\.bin: 3074 bytes is not a whole number of 3073-byte records"
    ):
        datasets.cifar10(folder)
    (folder / "test_batch.bin").write_bytes(bytes([10]) + bytes(3072))
    with pytest.raises(ValueError, match=r"test_batch\.bin: record 0 has label 10, expected 0\.\.9"):
        datasets.cifar10(folder)
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"data_batch_3\.bin not found in .*cifar-10-binary\.tar\.gz"):
        datasets.cifar10(tmp_path)


def test_cifar100_fine_and_coarse(tmp_path):
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    train, images = cifar_records([[3, 30], [19, 99]], seed=0)
    (folder / "train.bin").write_bytes(train)
    (folder / "test.bin").write_bytes(cifar_records([[0, 7]], seed=1)[0])
    (x, y_fine), (_, y_test) = datasets.cifar100(tmp_path)
    (_, y_coarse), _ = datasets.cifar100(folder, label_mode="coarse")
    np.testing.assert_array_equal(x, images)
    assert y_fine.tolist() == [[30], [99]] and y_coarse.tolist() == [[3], [19]] and y_test.tolist() == [[7]]
    with pytest.raises(ValueError, match="label_mode must be 'fine' or 'coarse', got 'medium'"):
        datasets.cifar100(tmp_path, label_mode="medium")
    (folder / "test.bin").write_bytes(bytes([20, 0]) + bytes(3072))
    with pytest.raises(ValueError, match=r"test\.bin: record 0 has label 20, expected 0\.\.19"):
        datasets.cifar100(tmp_path)


def test_cifar_pickle_version_is_refused(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x04 not read")
    with pytest.raises(
        ValueError, match=r"python \(pickle\) version; fnn never unpickles.*cifar-10-binary\.tar\.gz"
    ):
        datasets.cifar10(tmp_path)
    with pytest.raises(ValueError, match="never unpickles"):
        datasets.cifar10(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-100-python").mkdir()
    with pytest.raises(ValueError, match=r"never unpickles.*cifar-100-binary\.tar\.gz"):
        datasets.cifar100(tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"cifar-10-batches-bin/ \(or cifar-10-binary\.tar\.gz\) not found"
    ):
        datasets.cifar10(tmp_path / "empty")


HOUSING = (
    "longitude,latitude,housing_median_age,total_rooms,total_bedrooms,population,households,"
    "median_income,median_house_value,ocean_proximity\n"
    "-122.23,37.88,41.0,880.0,129.0,322.0,126.0,8.3252,452600.0,NEAR BAY\n"
    "-122.22,37.86,21.0,7099.0,,2401.0,1138.0,8.3014,358500.0,NEAR BAY\n"
)


def test_california_housing(tmp_path, monkeypatch):
    (tmp_path / "california_housing").mkdir()
    (tmp_path / "california_housing" / "housing.csv").write_text(HOUSING)
    monkeypatch.setenv("FNN_DATA", str(tmp_path))
    x, y = datasets.california_housing()
    expected = [
        [-122.23, 37.88, 41, 880, 129, 322, 126, 8.3252],
        [-122.22, 37.86, 21, 7099, np.nan, 2401, 1138, 8.3014],
    ]
    np.testing.assert_array_equal(x, np.array(expected, np.float32))
    assert x.dtype == np.float32 and y.tolist() == [452600.0, 358500.0]
    with pytest.raises(ValueError, match=r"housing\.csv: line 3, column 'total_bedrooms': empty cell"):
        datasets.california_housing(tmp_path / "california_housing", missing="error")
    with pytest.raises(FileNotFoundError, match=r"housing\.csv not found in .*ageron/handson-ml2"):
        datasets.california_housing(tmp_path)


def test_csv_reader_and_its_errors(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,b,name,y\n1,2,x,0\n3,-4.5e1,y,2\n\n")
    x, y = datasets.csv(f, "y", features=["b", "a"], label_dtype=np.int32)
    np.testing.assert_array_equal(x, np.array([[2, 1], [-45, 3]], np.float32))
    assert y.dtype == np.int32 and y.tolist() == [0, 2]
    cases = [
        ("a,b\n1,2\n", {}, r"d\.csv: no label column 'y'; the columns are \['a', 'b'\]"),
        ("a,y\n1,2\n3\n", {}, r"d\.csv: line 3 has 1 cells, the header has 2"),
        ("a,n,y\n1,NEAR BAY,0\n", {}, r"d\.csv: line 2, column 'n': 'NEAR BAY' is not a number"),
        ("a,y\n1,0.5\n", {"label_dtype": np.int32}, r"line 2, column 'y': '0\.5' is not a whole number"),
        ("a,y\n1,2\n", {"features": ["c"]}, r"no feature column\(s\) \['c'\]"),
        ("a,a,y\n1,2,3\n", {}, r"column name\(s\) \['a'\] appear more than once"),
        ("", {}, r"d\.csv: empty file"),
        ("a,y\n1e39,0\n", {}, r"d\.csv: column 'a': 1e\+39 does not fit in float32"),
        ("a,y\n1,300\n", {"label_dtype": np.uint8}, r"column 'y': 300\.0 does not fit in uint8"),
    ]
    for text, kwargs, message in cases:
        f.write_text(text)
        with pytest.raises(ValueError, match=message):
            datasets.csv(f, "y", **kwargs)
    with pytest.raises(ValueError, match="missing must be 'error' or 'nan', got 'drop'"):
        datasets.csv(f, "y", missing="drop")


def test_imdb_folder_layout(tmp_path):
    root = tmp_path / "aclImdb"
    reviews = {
        ("train", "neg"): ["b", "a"],
        ("train", "pos"): ["c"],
        ("test", "neg"): ["d"],
        ("test", "pos"): ["é"],
    }
    for (split, sentiment), texts in reviews.items():
        (root / split / sentiment).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / split / sentiment / f"{i}_{i + 1}.txt").write_text(f"{split} {text}", encoding="utf-8")
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    (x_train, y_train), (x_test, y_test) = datasets.imdb(tmp_path)
    assert x_train == ["train b", "train a", "train c"] and y_train.tolist() == [0, 0, 1]
    assert y_train.dtype == np.int32 and x_test == ["test d", "test é"] and y_test.tolist() == [0, 1]
    assert datasets.imdb(root)[1][0] == x_test
    (root / "test" / "pos" / "0_1.txt").write_bytes(b"\xff")
    with pytest.raises(ValueError, match=r"0_1\.txt: not UTF-8 text"):
        datasets.imdb(root)
    (root / "test" / "pos" / "0_1.txt").unlink()
    with pytest.raises(ValueError, match=r"pos: no \.txt reviews"):
        datasets.imdb(root)
    with pytest.raises(FileNotFoundError, match=r"aclImdb/train/neg/ not found in .*aclImdb_v1\.tar\.gz"):
        datasets.imdb(tmp_path / "nowhere")
