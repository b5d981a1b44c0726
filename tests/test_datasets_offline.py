"""fnn.datasets' offline real data (vega_datasets' Auto MPG and Seattle weather, MNIST-1D) and its
downloads, which these tests serve from file:// URLs: no test touches the network."""

from __future__ import annotations

import collections
import csv
import hashlib
import importlib.util
import io
import json
import random
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fnn import datasets


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vega_file(name: str) -> Path:
    return Path(importlib.util.find_spec("vega_datasets").submodule_search_locations[0]) / "_data" / name


def test_auto_mpg_reads_every_record_of_the_bundled_file():
    cars = datasets.auto_mpg()
    records = json.loads(vega_file("cars.json").read_text())
    assert list(cars) == list(records[0]) and len(records) == 406
    for key, column in cars.items():
        assert column.shape == (406,)
        if key in ("Name", "Origin"):
            assert column.dtype.kind == "U" and column.tolist() == [r[key] for r in records]
        elif key == "Year":
            assert column.dtype == np.int32 and column.tolist() == [int(r[key][:4]) for r in records]
        else:
            want = np.array([np.nan if r[key] is None else r[key] for r in records], np.float32)
            assert column.dtype == np.float32
            np.testing.assert_array_equal(column, want)  # NaN where the file has null
    # What the TensorFlow tutorial's readers know about the set.
    assert int(np.isnan(cars["Miles_per_Gallon"]).sum()) == 8 and int(np.isnan(cars["Horsepower"]).sum()) == 6
    assert (cars["Year"].min(), cars["Year"].max()) == (1970, 1982)
    assert collections.Counter(cars["Origin"].tolist()) == {"USA": 254, "Japan": 79, "Europe": 73}


def test_seattle_weather_reads_every_row_of_the_bundled_file():
    weather = datasets.seattle_weather()
    with open(vega_file("seattle-weather.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(weather) == ["date", "precipitation", "temp_max", "temp_min", "wind", "weather"]
    assert len(rows) == 1461 and weather["date"][[0, -1]].tolist() == ["2012-01-01", "2015-12-31"]
    assert weather["date"].tolist() == [r["date"].replace("/", "-") for r in rows]
    assert weather["weather"].tolist() == [r["weather"] for r in rows]
    for key in ("precipitation", "temp_max", "temp_min", "wind"):
        assert weather[key].dtype == np.float32
        np.testing.assert_array_equal(weather[key], np.array([float(r[key]) for r in rows], np.float32))


def test_a_changed_bundled_file_is_an_error_naming_it(tmp_path):
    for name, loader in (("cars.json", datasets.auto_mpg), ("seattle-weather.csv", datasets.seattle_weather)):
        changed = tmp_path / name
        shutil.copy(vega_file(name), changed)
        loader(tmp_path)  # a folder holding an unchanged copy reads
        changed.write_bytes(changed.read_bytes().replace(b"1", b"2", 1))
        with pytest.raises(
            ValueError, match=rf"{changed}: sha256 is [0-9a-f]{{64}}, expected [0-9a-f]{{64}}"
        ):
            loader(changed)
        loader(changed, sha256={})  # unchecked on request


def test_offline_loaders_need_their_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(
        ModuleNotFoundError, match=r"auto_mpg reads cars.json .*pip install 'fnn\[examples\]'"
    ):
        datasets.auto_mpg()
    with pytest.raises(ModuleNotFoundError, match=r"seattle_weather .*pip install vega_datasets"):
        datasets.seattle_weather()
    with pytest.raises(ModuleNotFoundError, match=r"mnist1d needs the mnist1d package.*pip install mnist1d"):
        datasets.mnist1d(num_samples=10)


def test_malformed_files_are_errors_naming_the_record_or_line(tmp_path):
    good = {"Name": "ford pinto", "Miles_per_Gallon": 25, "Cylinders": 4, "Displacement": 98,
            "Horsepower": None, "Weight_in_lbs": 2046, "Acceleration": 19, "Year": "1971-01-01",
            "Origin": "USA"}  # fmt: skip
    f = tmp_path / "cars.json"
    for change, message in [
        ({"Origin": None}, r"record 1: Origin must be a string, got None"),
        ({"Cylinders": True}, r"record 1: Cylinders must be a number or null, got True"),
        ({"Year": "71"}, r"record 1: Year must be a date 'YYYY-MM-DD', got '71'"),
        ({"Extra": 1}, r"record 1: expected the keys \['Acceleration', .*\], got \[.*'Extra'"),
    ]:
        f.write_text(json.dumps([good, {**good, **change}]))
        with pytest.raises(ValueError, match=rf"{f}: {message}"):
            datasets.auto_mpg(f, sha256={})
    f = tmp_path / "weather.csv"
    for text, message in [
        ("date,rain\n", r"expected the columns \['date', .*\], got \['date', 'rain'\]"),
        ("date,precipitation,temp_max,temp_min,wind,weather\n2012/01/01,x,1,1,1,sun\n",
         r"line 2, column 'precipitation': 'x' is not a number"),
        ("date,precipitation,temp_max,temp_min,wind,weather\nJan 1,0,1,1,1,sun\n",
         r"line 2, column 'date': expected YYYY/MM/DD, got 'Jan 1'"),
    ]:  # fmt: skip
        f.write_text(text)
        with pytest.raises(ValueError, match=rf"{f}: {message}"):
            datasets.seattle_weather(f, sha256={})


def test_mnist1d_is_the_packages_generator_and_restores_the_global_rngs():
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(7)
    random.seed(7)
    (x_train, y_train), (x_test, y_test) = datasets.mnist1d(num_samples=100, seed=3)
    # The global generators are where they were: the next draws are those of seed 7.
    after = (np.random.random(), random.random())
    np.random.seed(7)
    random.seed(7)
    assert after == (np.random.random(), random.random())

    args = get_dataset_args()
    args.num_samples, args.seed = 100, 3
    reference = make_dataset(args)
    assert (x_train.shape, x_train.dtype, y_train.dtype) == ((80, 40), np.float32, np.int32)
    np.testing.assert_array_equal(x_train, reference["x"].astype(np.float32))
    np.testing.assert_array_equal(x_test, reference["x_test"].astype(np.float32))
    assert y_train.tolist() == reference["y"].tolist() and y_test.tolist() == reference["y_test"].tolist()
    assert np.bincount(np.concatenate([y_train, y_test])).tolist() == [10] * 10
    with pytest.raises(ValueError, match="mnist1d: num_samples must be a multiple of 10 .*got 15"):
        datasets.mnist1d(num_samples=15)
    with pytest.raises(ValueError, match="mnist1d: seed"):
        datasets.mnist1d(seed=-1)


def test_download_checks_the_digest_and_writes_atomically(tmp_path):
    server, cache = tmp_path / "server", tmp_path / "cache"
    server.mkdir()
    (server / "data.bin").write_bytes(b"published bytes")
    url, digest = (server / "data.bin").as_uri(), sha256(b"published bytes")

    with pytest.raises(ValueError, match=rf"download: {url} has sha256 {digest}, expected {'0' * 64}"):
        datasets.download(url, "0" * 64, cache / "data.bin")
    assert list(cache.iterdir()) == []  # neither the file nor a partial one is left

    got = datasets.download(url, digest.upper(), cache)  # a folder: the URL's file name
    assert got == cache / "data.bin" and got.read_bytes() == b"published bytes"
    # Already there with the right digest: returned without fetching (this URL does not exist).
    assert datasets.download((server / "gone.bin").as_uri(), digest, got) == got
    got.write_bytes(b"stale")  # a wrong cached file is fetched again and replaced
    assert datasets.download(url, digest, got).read_bytes() == b"published bytes"

    with pytest.raises(OSError, match=r"download: could not fetch file://.*gone\.bin"):
        datasets.download((server / "gone.bin").as_uri(), digest, cache / "gone.bin")
    assert sorted(p.name for p in cache.iterdir()) == ["data.bin"]
    with pytest.raises(ValueError, match="download: sha256 must be 64 hex digits, got 'abc'"):
        datasets.download(url, "abc")
    with pytest.raises(
        ValueError, match=r"download: url must be an https://, http:// or file:// URL, got 'ftp://x/y'"
    ):
        datasets.download("ftp://x/y", digest)


def serve(tmp_path: Path, monkeypatch, files: dict[str, tuple[str, bytes]]) -> None:
    """Point download=True's table at file:// copies of ``files`` ({key: (file name, bytes)})."""
    server = tmp_path / "server"
    server.mkdir(exist_ok=True)
    for key, (name, data) in files.items():
        (server / name).write_bytes(data)
        monkeypatch.setitem(datasets._DOWNLOADS, key, ((server / name).as_uri(), sha256(data)))


def test_loaders_download_their_missing_files(tmp_path, monkeypatch):
    # MNIST: the four IDX files.
    arrays = {"train-images-idx3-ubyte": np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28),
              "train-labels-idx1-ubyte": np.array([3, 1], np.uint8),
              "t10k-images-idx3-ubyte": np.full((1, 28, 28), 9, np.uint8),
              "t10k-labels-idx1-ubyte": np.array([4], np.uint8)}  # fmt: skip
    for name, a in arrays.items():
        datasets.write_idx(tmp_path / f"{name}.gz", a)
    serve(
        tmp_path,
        monkeypatch,
        {f"fashion_mnist/{n}.gz": (f"{n}.gz", (tmp_path / f"{n}.gz").read_bytes()) for n in arrays},
    )
    folder = tmp_path / "cache" / "fashion"
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz .*not found"):
        datasets.mnist(folder, kind="fashion_mnist")  # nothing is fetched unless asked
    (x_train, y_train), (x_test, y_test) = datasets.mnist(
        folder, kind="fashion_mnist", sha256={}, download=True
    )
    np.testing.assert_array_equal(x_train, arrays["train-images-idx3-ubyte"])
    assert y_train.tolist() == [3, 1] and y_test.tolist() == [4] and x_test.shape == (1, 28, 28)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.gz" for n in arrays)

    # IMDB: the tarball is fetched beside aclImdb/ and extracted there.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for split in ("train", "test"):
            for sentiment in ("neg", "pos"):
                text = f"{split} {sentiment}".encode()
                member = tarfile.TarInfo(f"aclImdb/{split}/{sentiment}/0_1.txt")
                member.size = len(text)
                tar.addfile(member, io.BytesIO(text))
    serve(tmp_path, monkeypatch, {"aclImdb_v1.tar.gz": ("aclImdb_v1.tar.gz", buffer.getvalue())})
    (texts, labels), (test_texts, _) = datasets.imdb(tmp_path / "cache", download=True)
    assert texts == ["train neg", "train pos"] and labels.tolist() == [0, 1] and test_texts[1] == "test pos"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "aclImdb",
        "aclImdb_v1.tar.gz",
        "fashion",
    ]


def test_imdb_download_refuses_an_archive_that_escapes_its_folder(tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        member = tarfile.TarInfo("../escaped.txt")
        tar.addfile(member, io.BytesIO(b""))
    serve(tmp_path, monkeypatch, {"aclImdb_v1.tar.gz": ("aclImdb_v1.tar.gz", buffer.getvalue())})
    with pytest.raises(tarfile.FilterError):
        datasets.imdb(tmp_path / "cache", download=True)
    # Nothing escaped, and no half-extracted aclImdb/ (or temporary folder) is left behind.
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["aclImdb_v1.tar.gz"]
    assert not (tmp_path / "escaped.txt").exists()


def test_cifar_and_housing_download_their_published_files(tmp_path, monkeypatch):
    record = bytes([7]) + bytes(range(256)) * 12  # one CIFAR-10 record: label 7, 3072 pixel bytes
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
            member = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            member.size = len(record)
            tar.addfile(member, io.BytesIO(record))
    housing = b"longitude,latitude,housing_median_age,total_rooms,total_bedrooms,population,households,"
    housing += b"median_income,median_house_value,ocean_proximity\n-122.23,37.88,41,880,,322,126,8.3252,452600,NEAR BAY\n"
    serve(tmp_path, monkeypatch, {"cifar-10-binary.tar.gz": ("c.tgz", buffer.getvalue()),
                                  "housing.csv": ("housing.csv", housing)})  # fmt: skip
    (x_train, y_train), _ = datasets.cifar10(tmp_path / "cache", sha256={}, download=True)
    assert x_train.shape == (5, 32, 32, 3) and y_train.tolist() == [[7]] * 5
    assert (tmp_path / "cache" / "cifar-10-binary.tar.gz").is_file()
    x, y = datasets.california_housing(tmp_path / "cache" / "housing.csv", download=True)
    assert x.shape == (1, 8) and np.isnan(x[0, 4]) and y.tolist() == [452600.0]
