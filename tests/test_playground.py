"""fnn Playground's training side: configuration checks, sessions, datasets and 'show code'."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from fnn.playground import DATASETS, ConfigError, Session, make_dataset, parse_config, script

pytestmark = pytest.mark.standard_promotion  # optax optimisers inside


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"learning_rate": 50}, r"learning_rate must be in \[1e-05, 10\], got 50"),
        ({"learning_rate": "fast"}, r"learning_rate must be a number in \[1e-05, 10\], got 'fast'"),
        ({"hidden": [4] * 7}, r"hidden must be a list of at most 6 layer sizes, got \[4, 4, 4, 4, 4, 4, 4\]"),
        ({"hidden": [4, 9]}, r"hidden\[1\] must be in \[1, 8\], got 9"),
        ({"hidden": [2.5]}, r"hidden\[0\] must be an int in \[1, 8\], got 2.5"),
        (
            {"dataset": "moons"},
            r"dataset must be one of \['circle', 'xor', 'gauss', 'spiral', 'plane'\], got 'moons'",
        ),
        ({"features": []}, r"features must be a non-empty list drawn from \['x1', 'x2'"),
        ({"features": ["x1", "x1"]}, r"features must be a list without repeats, got \['x1', 'x1'\]"),
        ({"batch_size": True}, r"batch_size must be an int in \[1, 30\], got True"),
        ({"speed": 3}, r"configuration must be made of the fields of Config \(unknown: \['speed'\]\)"),
        ([1, 2], r"configuration must be a JSON object, got \[1, 2\]"),
    ],
)
def test_bad_configurations_name_the_field_and_both_values(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_a_config_keeps_the_pages_feature_order_and_defaults():
    config = parse_config({"features": ["sin(x2)", "x1"], "hidden": []})
    assert config.features == ("x1", "sin(x2)") and config.hidden == () and config.dataset == "circle"


@pytest.mark.parametrize("name", DATASETS)
def test_datasets_are_seeded_and_shaped(name):
    x, y = make_dataset(name, 200, noise=20, seed=3)
    again = make_dataset(name, 200, noise=20, seed=3)
    assert x.shape == (200, 2) and y.shape == (200,) and x.dtype == np.float32
    assert np.array_equal(x, again[0]) and np.array_equal(y, again[1])
    assert not np.array_equal(x, make_dataset(name, 200, noise=20, seed=4)[0])
    if name == "plane":
        assert np.abs(y).max() < 1.5
    else:
        assert set(np.unique(y)) == {0.0, 1.0} and abs(y.mean() - 0.5) < 0.15


def test_training_lowers_the_loss_and_reset_restores_the_seeds_start():
    session = Session(parse_config({"dataset": "spiral", "hidden": [8, 8], "optimizer": "adam",
                                    "features": ["x1", "x2", "sin(x1)", "sin(x2)"]}))  # fmt: skip
    start = session.snapshot()
    session.train(1)
    assert session.snapshot()["train_loss"] != start["train_loss"] and session.epoch == 1
    session.train(150)
    trained = session.snapshot()
    assert trained["test_loss"] < 0.5 * start["test_loss"]
    assert trained["surface"] != start["surface"] and len(trained["surface"]) == trained["grid"] ** 2
    session.reset()
    assert session.snapshot() == start
    json.dumps(trained)  # what the server streams


def test_regularisation_shrinks_the_weights():
    def weight_norm(regularization):
        session = Session(parse_config({"dataset": "gauss", "hidden": [6], "regularization": regularization,
                                        "regularization_rate": 0.05, "learning_rate": 0.1}))  # fmt: skip
        session.train(30)
        return sum(np.abs(np.asarray(w)).sum() for w in session.snapshot()["weights"])

    assert weight_norm("l1") < weight_norm("none") and weight_norm("l2") < weight_norm("none")


def test_show_code_reproduces_the_sessions_losses(tmp_path):
    config = parse_config({"dataset": "circle", "hidden": [4, 4], "regularization": "l2",
                           "regularization_rate": 0.001, "noise": 10, "problem": "classification"})  # fmt: skip
    session = Session(config)
    session.train(40)
    path = tmp_path / "run.py"
    path.write_text(script(config, 40))
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    test_loss = float(re.search(r"test loss: ([0-9.]+)", done.stdout.splitlines()[-1]).group(1))
    assert test_loss == pytest.approx(session.snapshot()["test_loss"], abs=1e-3)


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def server():
    import threading

    from fnn.playground._server import make_server

    srv = make_server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def request(url, method="GET", body=None, raw=None):
    import urllib.error
    import urllib.request

    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_the_server_binds_loopback_and_serves_only_its_own_files(server):
    assert server.startswith("http://127.0.0.1:")
    status, kind, page = request(server + "/")
    assert status == 200 and kind.startswith("text/html") and b"fnn Playground" in page
    assert request(server + "/app.js")[0] == 200 and request(server + "/style.css")[0] == 200
    for path in ("/../fnn/__init__.py", "/static/app.js", "/%2e%2e/etc/passwd", "/index.html/.."):
        status, _, body = request(server + path)
        assert status == 404 and b"no such page" in body


def test_training_endpoints_step_reset_and_reject_bad_requests(server):
    status, _, body = request(server + "/api/config", "POST", {"dataset": "xor", "hidden": [4], "seed": 1})
    start = json.loads(body)
    assert status == 200 and start["epoch"] == 0 and start["config"]["dataset"] == "xor"
    stepped = json.loads(request(server + "/api/step", "POST", {})[2])
    assert stepped["epoch"] == 1 and stepped["train_loss"] != start["train_loss"]
    reset = json.loads(request(server + "/api/reset", "POST", {})[2])
    assert reset["weights"] == start["weights"] and reset["train_loss"] == start["train_loss"]

    status, _, body = request(server + "/api/config", "POST", {"learning_rate": 100})
    assert status == 400 and json.loads(body) == {
        "error": "learning_rate must be in [1e-05, 10], got 100",
        "field": "learning_rate",
    }
    assert json.loads(request(server + "/api/state")[2])["config"]["dataset"] == "xor"  # unchanged
    status, _, body = request(server + "/api/config", "POST", raw=b"{not json")
    assert status == 400 and b"the body is not JSON" in body
    assert request(server + "/api/train", "POST", {})[0] == 404
    assert request(server + "/api/config", "POST", raw=b" " * (65 * 1024))[0] == 413


def test_play_streams_frames_and_code_describes_the_run(server):
    import urllib.request

    request(server + "/api/config", "POST", {"dataset": "gauss", "hidden": [2]})
    assert json.loads(request(server + "/api/play", "POST", {})[2])["playing"] is True
    with urllib.request.urlopen(server + "/api/stream", timeout=60) as stream:
        epochs = []
        for line in stream:
            if line.startswith(b"data: "):
                epochs.append(json.loads(line[6:])["epoch"])
                if len(epochs) == 2:
                    break
    assert epochs[1] > epochs[0]  # training goes on while playing
    assert json.loads(request(server + "/api/pause", "POST", {})[2])["playing"] is False
    status, kind, code = request(server + "/api/code")
    assert status == 200 and kind.startswith("text/x-python") and b"make_dataset('gauss'" in code
