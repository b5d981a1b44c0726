"""The playground's local web server: the page, its files, and a small JSON API.

Standard library only (``http.server``). One session per server: the page is a
local tool for one student. Training runs here, with fnn; the page shows what
the API returns, and ``/api/stream`` pushes a frame (server-sent events) after
every ``FRAME_TRAINING_S`` of training while playing, and after every change while paused.

API (JSON in and out; a refused request gets a 4xx with ``{"error", "field"}``):

- ``GET /api/state``: the configuration and the current frame.
- ``POST /api/config``: a new configuration (validated), a fresh session.
- ``POST /api/step``: one epoch. ``POST /api/reset``: back to the seed's start.
- ``POST /api/weight``: ``{"layer", "from", "to", "value"}`` sets one weight.
- ``POST /api/play`` / ``POST /api/pause``: start or stop streaming training.
- ``GET /api/datasets``: a few points of each dataset, for its thumbnail.
- ``GET /api/code``: the fnn script that reproduces the run (text/x-python).
- ``GET /api/stream``: server-sent events, one frame each, sent once: a frame's
  ``id`` is its ``version``, and a client that sends ``Last-Event-ID`` gets only
  newer frames (a ``: unchanged`` comment now and then meanwhile).

Every request must name this server in ``Host`` (and in ``Origin`` when it sends
one), so that no other site can script it (DNS rebinding, cross-site POSTs). A POST
carries ``Content-Type: application/json`` and a ``Content-Length`` of at most
:data:`MAX_BODY` bytes of strict JSON: no ``NaN`` or ``Infinity``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from fnn.playground._data import DATASETS, REGRESSION_DATASETS, make_dataset
from fnn.playground._engine import Config, ConfigError, Session, parse_config

STATIC = Path(__file__).resolve().parent / "static"
FILES = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css"}  # all the server will read
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
MAX_BODY = 64 * 1024
# While playing, each frame follows this much training (at least one epoch): as many epochs as the
# machine manages, where TensorFlow Playground trains one per animation frame (60 a second at most).
FRAME_TRAINING_S = 0.05
FRAME_PAUSE_S = 0.01


class Playground:
    """The state behind the API: one session, whether it is playing, and a count of changes. Thread-safe."""

    def __init__(self, config: Config | None = None):
        self.changed = threading.Condition()  # the lock around all of it; notified at every change
        self.session = Session(config or Config())
        self.playing = False
        self.version = 0  # one more at every change: a frame's id

    def state(self) -> dict[str, Any]:
        with self.changed:
            return self._state()

    def _state(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.session.config),
            "playing": self.playing,
            "version": self.version,
            **self.session.snapshot(),
        }

    def _change(self) -> dict[str, Any]:
        self.version += 1
        self.changed.notify_all()
        return self._state()

    def configure(self, raw: Any) -> dict[str, Any]:
        config = parse_config(raw)  # raises ConfigError before anything changes
        session = Session(config)
        with self.changed:
            self.session, self.playing = session, False
            return self._change()

    def step(self, epochs: int = 1) -> dict[str, Any]:
        with self.changed:
            self.session.train(epochs)
            return self._change()

    def set_weight(self, raw: Any) -> dict[str, Any]:
        with self.changed:
            self.session.set_weight(raw)  # raises ConfigError before anything changes
            return self._change()

    def reset(self) -> dict[str, Any]:
        with self.changed:
            self.session.reset()
            self.playing = False
            return self._change()

    def set_playing(self, playing: bool) -> dict[str, Any]:
        with self.changed:
            self.playing = playing
            return self._change()

    def frame(self, since: int | None = None, wait: float = 0.0) -> dict[str, Any] | None:
        """The next frame to stream to a client that has version ``since``.

        While playing, trains for ``FRAME_TRAINING_S`` first (and pauses once
        training has diverged: NaN does not get better).

        Args:
            since: the version the client has; ``None`` for a client that has none.
            wait: seconds to wait, while paused, for a change.

        Returns:
            The state, or ``None`` when nothing changed since ``since`` within ``wait`` seconds.
        """
        with self.changed:
            if self.playing:
                deadline = time.perf_counter() + FRAME_TRAINING_S
                self.session.train(1)
                while time.perf_counter() < deadline and not self.session.diverged:
                    self.session.train(1)
                self.playing = not self.session.diverged
                return self._change()
            if self.changed.wait_for(lambda: self.version != since, wait):
                return self._state()
            return None

    def code(self) -> str:
        with self.changed:
            return self.session.code()


THUMBNAIL_POINTS = 120


def dataset_thumbnails() -> dict[str, Any]:
    """Each dataset's look for its thumbnail: ``THUMBNAIL_POINTS`` noise-free points (seed 0) and targets,
    and whether it is a regression set (choosing it chooses that problem)."""
    out = {}
    for name in DATASETS:
        x, y = make_dataset(name, THUMBNAIL_POINTS, 0.0, 0)
        out[name] = {
            "points": np.round(x, 2).tolist(),
            "targets": np.round(y, 2).tolist(),
            "regression": name in REGRESSION_DATASETS,
        }
    return out


class Refused(Exception):
    """A request the server refuses, with the status and the JSON error it answers."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.field = status, field


def non_finite(data: Any) -> tuple[str, float] | None:
    """The path (``learning_rate``, ``hidden[1]``) and value of a NaN or infinite number in parsed JSON.

    Python's JSON reads ``NaN``, ``Infinity`` and ``1e400`` as floats; JSON itself has no such numbers.

    Examples:
        >>> non_finite({"hidden": [4, float("nan")]})
        ('hidden[1]', nan)
        >>> non_finite({"hidden": [4, 4]}) is None
        True
    """
    todo = [("body", data)]  # a loop, not recursion: nesting is bounded only by the parser
    while todo:
        path, value = todo.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return path.removeprefix("body."), value
        if isinstance(value, dict):
            todo += [(f"{path}.{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            todo += [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    return None


class _Handler(BaseHTTPRequestHandler):
    playground: Playground
    hosts: frozenset[str]  # the Host headers this server answers: its address by number, or localhost
    heartbeat: float  # seconds between ": unchanged" comments on an idle stream
    timeout: float  # seconds a connection may stall (the base class puts it on the socket)
    server_version = "fnn-playground"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the terminal shows the address only
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, allow_nan=False).encode(), "application/json")

    def _error(self, status: int, message: str, field: str | None = None) -> None:
        self.close_connection = True  # a refused body may be unread: the connection cannot go on
        self._json(status, {"error": message, "field": field})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own refusals (a bad request line, an unknown method), as JSON too."""
        self._error(code, message or HTTPStatus(code).phrase)

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route: Callable[[], None]) -> None:
        """Runs ``route`` so that every request gets an answer: a JSON error when it is refused or fails."""
        self._headers_sent = False
        try:
            self._check_origin()
            route()
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away or stalled while we answered
        except Refused as e:
            self._error(e.status, str(e), e.field)
        except ConfigError as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e), e.field)
        except Exception as e:  # a bug of ours: say so, never drop the connection
            if self._headers_sent:
                self.close_connection = True
            else:
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"the server failed: {type(e).__name__}: {e}")

    def send_response(self, code: int, message: str | None = None) -> None:
        self._headers_sent = True
        super().send_response(code, message)

    def _check_origin(self) -> None:
        """Refuses (403) a request for another host name, or from a page of another origin."""
        if self.headers.get("Host") not in self.hosts:
            raise Refused(HTTPStatus.FORBIDDEN, f"this server answers only to {sorted(self.hosts)}", "Host")
        origin = self.headers.get("Origin")
        if origin is not None and origin not in {f"http://{host}" for host in self.hosts}:
            raise Refused(HTTPStatus.FORBIDDEN, "requests from other sites are refused", "Origin")

    def _get(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in FILES:
            name = FILES[path]
            self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), TYPES[Path(name).suffix])
        elif path == "/api/state":
            self._json(HTTPStatus.OK, self.playground.state())
        elif path == "/api/datasets":
            self._json(HTTPStatus.OK, dataset_thumbnails())
        elif path == "/api/code":
            self._send(HTTPStatus.OK, self.playground.code().encode(), "text/x-python; charset=utf-8")
        elif path == "/api/stream":
            self._stream()
        else:
            raise Refused(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    def _post(self) -> None:
        routes = {
            "/api/config": lambda body: self.playground.configure(body),
            "/api/step": lambda body: self.playground.step(),
            "/api/reset": lambda body: self.playground.reset(),
            "/api/weight": lambda body: self.playground.set_weight(body),
            "/api/play": lambda body: self.playground.set_playing(True),
            "/api/pause": lambda body: self.playground.set_playing(False),
        }
        if self.path not in routes:
            raise Refused(HTTPStatus.NOT_FOUND, f"no such endpoint: {self.path}")
        self._json(HTTPStatus.OK, routes[self.path](self._body()))

    def _body(self) -> Any:
        """The POST's body: JSON of a declared, bounded length, with finite numbers only.

        Raises:
            Refused: 415 for another Content-Type, 411 for a chunked body or none declared, 413 for too
                long, 408 for a body that does not arrive, 400 for anything but strict JSON.
        """
        if self.headers.get_content_type() != "application/json":
            raise Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "a POST sends application/json", "Content-Type")
        if "Transfer-Encoding" in self.headers:
            raise Refused(
                HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length", "Transfer-Encoding"
            )
        length = self.headers.get("Content-Length")
        if length is None or not (length.isascii() and length.isdigit()):
            raise Refused(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length", "Content-Length")
        if int(length) > MAX_BODY:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body must be at most {MAX_BODY} bytes")
        try:
            raw = self.rfile.read(int(length))
        except TimeoutError:
            raise Refused(
                HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive within {self.timeout} s"
            ) from None
        if len(raw) < int(length):
            raise Refused(HTTPStatus.BAD_REQUEST, "the body is shorter than its Content-Length")
        try:
            body = json.loads(raw) if raw else {}
        except RecursionError:
            raise Refused(HTTPStatus.BAD_REQUEST, "the body is not JSON: it is nested too deeply") from None
        except ValueError as e:  # a JSONDecodeError, bad UTF-8, an integer of over 4300 digits
            raise Refused(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {e}") from None
        bad = non_finite(body)
        if bad is not None:
            raise Refused(HTTPStatus.BAD_REQUEST, f"{bad[0]} must be a finite number, got {bad[1]}", bad[0])
        return body

    def _stream(self) -> None:
        since = self.headers.get("Last-Event-ID", "")
        version = int(since) if since.isascii() and since.isdigit() else None
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        while True:
            frame = self.playground.frame(version, self.heartbeat)
            if frame is None:
                self.wfile.write(b": unchanged\n\n")  # a comment: tells a closed page from an open one
            else:
                version = frame["version"]
                self.wfile.write(f"id: {version}\ndata: {json.dumps(frame, allow_nan=False)}\n\n".encode())
                if frame["playing"]:
                    # Off the lock a moment: else this loop takes it back at once, and a Pause or
                    # a new configuration from the page waits for the lock without end.
                    time.sleep(FRAME_PAUSE_S)
            self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog: at the default 5, a burst of connections is dropped


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    config: Config | None = None,
    *,
    timeout: float = 10.0,
    heartbeat: float = 15.0,
) -> ThreadingHTTPServer:
    """A server for the playground bound to ``host:port``; not yet serving.

    Args:
        host: the address to bind; the page must be opened at it, or at ``localhost`` or ``127.0.0.1``.
        port: the port; 0 for any free one.
        config: the first configuration; :class:`Config`'s defaults if ``None``.
        timeout: seconds a connection may stall before the server gives up on it.
        heartbeat: seconds between ``: unchanged`` comments on a stream with nothing new.

    Returns:
        The server; ``server.server_address`` has the port it got.
    """
    server = _Server((host, port), _Handler)
    port = server.server_address[1]
    names = {host, "127.0.0.1", "localhost"}
    hosts = {f"{name}:{port}" for name in names} | (names if port == 80 else set())
    attributes = {"playground": Playground(config), "hosts": frozenset(hosts), "timeout": timeout}
    server.RequestHandlerClass = type("Handler", (_Handler,), {**attributes, "heartbeat": heartbeat})
    return server
