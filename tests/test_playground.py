"""fnn Playground's training side: configuration checks, sessions, datasets and 'show code'."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from fnn.playground import DATASETS, FEATURES, ConfigError, Session, make_dataset, parse_config, script

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
            r"dataset must be one of \['circle', 'xor', 'gauss', 'spiral', 'plane', 'multi_gauss'\], got 'moons'",
        ),
        ({"features": []}, r"features must be a non-empty list drawn from \['x1', 'x2'"),
        ({"features": ["x1", "x1"]}, r"features must be a list without repeats, got \['x1', 'x1'\]"),
        ({"batch_size": True}, r"batch_size must be an int in \[1, 30\], got True"),
        ({"speed": 3}, r"configuration must be made of the fields of Config \(unknown: \['speed'\]\)"),
        ([1, 2], r"configuration must be a JSON object, got \[1, 2\]"),
        ({"seed": float("nan")}, r"seed must be an int in \[0, 2147483647\], got nan"),
        ({"batch_size": float("inf")}, r"batch_size must be an int in \[1, 30\], got inf"),
        ({"hidden": [float("-inf")]}, r"hidden\[0\] must be an int in \[1, 8\], got -inf"),
        ({"features": [["x1"]]}, r"features must be a non-empty list drawn from .*, got \[\['x1'\]\]"),
        ({"features": [{"x1": 1}]}, r"features must be a non-empty list drawn from"),
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
    if name in ("plane", "multi_gauss"):
        assert np.abs(y).max() < 1.5 and len(np.unique(y)) > 100
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
    session.train(20)
    session.set_weight({"layer": 1, "from": 2, "to": 3, "value": -2.5})  # a weight set by hand, replayed
    session.train(20)
    assert session.edits == [(20, 1, 2, 3, -2.5)] and session.code().startswith(script(config, 40)[:60])
    path = tmp_path / "run.py"
    path.write_text(session.code())
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    test_loss = float(re.search(r"test loss: ([0-9.]+)", done.stdout.splitlines()[-1]).group(1))
    assert test_loss == pytest.approx(session.snapshot()["test_loss"], abs=1e-3)


# --------------------------------------------------------------------------- the server


@contextlib.contextmanager
def serving(**options):
    """A playground server on a free loopback port, serving in a thread until the block ends."""
    from fnn.playground._server import make_server

    srv = make_server(**options)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def served():
    with serving(heartbeat=0.05) as srv:  # an idle stream says ": unchanged" at once
        yield srv


@pytest.fixture
def server(served):
    return f"http://127.0.0.1:{served.server_address[1]}"


def strict_json(data: bytes):
    """``json.loads`` as a browser's ``JSON.parse``: no NaN, no Infinity."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(data, parse_constant=refuse)


def request(url, method="GET", body=None, raw=None, headers=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def send_raw(srv, head: str, body: bytes = b"", timeout: float = 30) -> tuple[int, dict]:
    """Sends ``head`` (lines, ``{port}`` filled in) and ``body`` as they are; the status and JSON answer."""
    port = srv.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.format(port=port).replace("\n", "\r\n").encode("latin-1") + b"\r\n\r\n" + body)
        answer = b"".join(iter(lambda: sock.recv(1 << 16), b""))
    status, _, content = answer.partition(b"\r\n\r\n")
    return int(status.split()[1]), strict_json(content)


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


def test_a_weight_set_by_hand_changes_that_weight_and_the_losses_and_bad_edits_are_named(server):
    start = json.loads(request(server + "/api/config", "POST", {"dataset": "xor", "hidden": [3]})[2])
    status, _, body = request(server + "/api/weight", "POST", {"layer": 1, "from": 2, "to": 0, "value": 4.0})
    edited = json.loads(body)
    assert status == 200 and edited["weights"][1][2][0] == 4.0 and edited["version"] > start["version"]
    assert edited["test_loss"] != start["test_loss"] and edited["epoch"] == 0
    unchanged = [[w for k, w in enumerate(row) if (layer, i, k) != (1, 2, 0)]
                 for layer, rows in enumerate(edited["weights"]) for i, row in enumerate(rows)]  # fmt: skip
    assert unchanged == [[w for k, w in enumerate(row) if (layer, i, k) != (1, 2, 0)]
                         for layer, rows in enumerate(start["weights"]) for i, row in enumerate(rows)]  # fmt: skip
    for bad, message in [
        ({"layer": 2, "from": 0, "to": 0, "value": 1}, "layer must be in [0, 1], got 2"),
        ({"layer": 0, "from": 2, "to": 0, "value": 1}, "from must be in [0, 1], got 2"),  # 2 features
        ({"layer": 0, "from": 0, "to": 0, "value": 11}, "value must be in [-10.0, 10.0], got 11"),
        ({"layer": 0, "from": 0, "to": 0}, "value must be given, got None"),
    ]:
        status, _, body = request(server + "/api/weight", "POST", bad)
        assert status == 400 and json.loads(body)["error"] == message, body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"seed": NaN}', "seed"),
        (b'{"batch_size": Infinity}', "batch_size"),
        (b'{"batch_size": 1e400}', "batch_size"),  # valid JSON, read as inf
        (b'{"hidden": [4, -Infinity]}', "hidden[1]"),
        (b'{"features": [["x1"]]}', "features"),  # unhashable where strings belong
        (b'{"features": [{"x1": 1}]}', "features"),
        (b"[" * 60_000, None),  # nested deeper than the parser goes
        (b'{"seed": 1' + b"0" * 5000 + b"}", None),  # more digits than Python reads
    ],
)
def test_server_answers_400_naming_the_field_for_bad_numbers_shapes_and_nesting(server, body, field):
    status, kind, answer = request(server + "/api/config", "POST", raw=body)
    assert status == 400 and kind == "application/json" and strict_json(answer)["field"] == field


def test_server_answers_500_json_when_a_handler_fails_and_json_for_unknown_methods(
    served, server, monkeypatch
):
    def broken():
        raise RuntimeError("a bug")

    monkeypatch.setattr(served.RequestHandlerClass.playground, "state", broken)
    status, kind, answer = request(server + "/api/state")
    assert status == 500 and kind == "application/json"
    assert strict_json(answer) == {"error": "the server failed: RuntimeError: a bug", "field": None}
    status, kind, answer = request(server + "/api/state", "PUT", {})
    assert status == 501 and kind == "application/json" and "PUT" in strict_json(answer)["error"]


def test_a_diverging_run_is_sent_as_valid_json_flagged_diverged_and_stops_playing(server):
    diverging = {"dataset": "plane", "problem": "regression", "learning_rate": 10, "hidden": [8, 8]}
    assert request(server + "/api/config", "POST", diverging)[0] == 200  # every value in its range
    status, _, body = request(server + "/api/step", "POST", {})
    frame = strict_json(body)
    assert status == 200 and frame["diverged"] is True and frame["test_loss"] is None
    assert frame["history"]["test"][-1] is None and None in frame["surface"]

    request(server + "/api/config", "POST", diverging)
    request(server + "/api/play", "POST", {})
    with urllib.request.urlopen(server + "/api/stream", timeout=60) as stream:
        line = next(line for line in stream if line.startswith(b"data: "))
    frame = strict_json(line[6:])
    assert frame["diverged"] is True and frame["playing"] is False  # NaN does not get better: paused


def test_server_answers_100_concurrent_clients_without_resets(served):
    port, clients = served.server_address[1], 100
    # A connection the listen backlog drops is retried by the kernel (slow) or reset: the backlog
    # must hold them all. No timing is asserted: every client just has to get its answer.
    assert served.request_queue_size >= clients
    everyone = threading.Barrier(clients)
    answers = [None] * clients

    def client(i):
        everyone.wait()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                sock.settimeout(60)
                sock.sendall(f"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                answers[i] = b"".join(iter(lambda: sock.recv(1 << 16), b""))[:12]
        except OSError as e:
            answers[i] = repr(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [b"HTTP/1.0 200"] * clients


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"Host": "evil.example:{port}"}, "Host"),  # DNS rebinding: evil.example now resolves to 127.0.0.1
        ({"Host": "127.0.0.1:1"}, "Host"),
        ({"Origin": "http://evil.example"}, "Origin"),  # another site's page posting here
        ({"Origin": "null"}, "Origin"),
    ],
)
def test_server_answers_403_for_a_foreign_host_or_origin(served, server, headers, field):
    port = served.server_address[1]
    headers = {k: v.format(port=port) for k, v in headers.items()}
    for method, path in (("GET", "/api/state"), ("POST", "/api/step")):
        status, _, answer = request(server + path, method, None if method == "GET" else {}, headers=headers)
        assert status == 403 and strict_json(answer)["field"] == field
    for own in ({"Host": f"localhost:{port}"}, {"Origin": f"http://127.0.0.1:{port}"}):
        assert request(server + "/api/step", "POST", {}, headers=own)[0] == 200


def test_server_answers_415_for_a_post_that_is_not_json(server):
    # text/plain is what a cross-site form or fetch may send without asking first (no CORS preflight)
    status, _, answer = request(server + "/api/play", "POST", {}, headers={"Content-Type": "text/plain"})
    assert status == 415 and strict_json(answer)["field"] == "Content-Type"
    assert strict_json(request(server + "/api/state")[2])["playing"] is False


@pytest.mark.parametrize(
    ("head", "body", "field"),
    [
        ("Transfer-Encoding: chunked", b'14\r\n{"dataset": "spiral"}\r\n0\r\n\r\n', "Transfer-Encoding"),
        ("X-Nothing: 1", b"", "Content-Length"),  # no Content-Length at all
        ("Content-Length: -1", b"", "Content-Length"),
        ("Content-Length: \u00b2", b"", "Content-Length"),  # a digit to str.isdigit, not to int()
    ],
)
def test_server_answers_411_for_chunked_or_unsized_bodies(served, head, body, field):
    status, answer = send_raw(
        served,
        f"POST /api/config HTTP/1.1\nHost: 127.0.0.1:{{port}}\nContent-Type: application/json\n{head}",
        body,
    )
    assert status == 411 and answer["field"] == field


def test_server_answers_408_when_a_body_stops_short_of_its_content_length():
    with serving(timeout=0.2) as srv:  # the handler's socket timeout: no thread waits forever
        head = "POST /api/config HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: application/json"
        status, answer = send_raw(srv, head + "\nContent-Length: 100", b"{}", timeout=30)
    assert status == 408 and "did not arrive" in answer["error"]


def test_a_paused_stream_sends_each_frame_once(served, server):
    version = strict_json(request(server + "/api/pause", "POST", {})[2])["version"]
    connection = http.client.HTTPConnection("127.0.0.1", served.server_address[1], timeout=60)
    connection.request("GET", "/api/stream", headers={"Last-Event-ID": str(version)})
    stream = connection.getresponse()
    assert stream.readline() == b": unchanged\n"  # not the ~60 KB frame the page already has
    stepped = strict_json(request(server + "/api/step", "POST", {})[2])
    lines = iter(stream.readline, b"")
    assert next(line for line in lines if not line.startswith(b":") and line != b"\n") == (
        f"id: {version + 1}\n".encode()
    )
    frame = strict_json(next(lines)[6:])
    assert frame["version"] == stepped["version"] == version + 1 and frame["epoch"] == stepped["epoch"]
    connection.close()


def test_play_streams_frames_and_code_describes_the_run(server):
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


def test_each_node_has_its_heatmap_and_the_last_hidden_layer_gives_the_output():
    from fnn.playground._data import RANGE, feature_columns
    from fnn.playground._engine import NEURON_GRID

    session = Session(parse_config({"dataset": "xor", "hidden": [3, 2], "features": ["x1", "x2", "x1*x2"]}))
    session.train(2)
    shot = session.snapshot()
    cells = NEURON_GRID * NEURON_GRID
    assert shot["neuron_grid"] == NEURON_GRID and list(shot["feature_maps"]) == list(FEATURES)
    for values in shot["feature_maps"].values():  # every feature, used or not, scaled to [-1, 1]
        assert len(values) == cells and max(abs(v) for v in values) == 1.0
    assert [[len(unit) for unit in layer] for layer in shot["neurons"]] == [[cells] * 3, [cells] * 2]
    # Through the output layer, the last hidden layer's heatmaps give the model's own output there.
    coarse = np.linspace(-RANGE, RANGE, NEURON_GRID, dtype=np.float32)
    plane = feature_columns(np.stack(np.meshgrid(coarse, coarse), -1).reshape(-1, 2), session.config.features)
    params = session.carry[0]
    expected = np.asarray(session.model.apply(params, session.state, plane, train=False)[0][:, 0])
    last = np.asarray(shot["neurons"][-1]).T  # (cells, 2), rounded to 2 decimals
    output = params[list(params)[-1]]
    np.testing.assert_allclose(
        last @ np.asarray(output["w"])[:, 0] + np.asarray(output["b"])[0], expected, atol=0.05
    )


def test_the_dataset_thumbnails_are_a_few_points_of_each_dataset(server):
    thumbnails = json.loads(urllib.request.urlopen(f"{server}/api/datasets").read())
    assert list(thumbnails) == list(DATASETS)
    for name, data in thumbnails.items():
        x, y = make_dataset(name, len(data["points"]), 0.0, 0)
        np.testing.assert_allclose(data["points"], x, atol=0.005)
        np.testing.assert_allclose(data["targets"], y, atol=0.005)
        assert data["regression"] == (name in ("plane", "multi_gauss"))
