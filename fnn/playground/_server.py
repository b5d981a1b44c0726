"""The playground's local web server: the page, its files, and a small JSON API.

Standard library only (``http.server``). One session per server: the page is a
local tool for one student. Training runs here, with fnn; the page shows what
the API returns, and ``/api/stream`` pushes a frame (server-sent events) after
every few epochs while playing.

API (JSON in and out; a bad request gets a 4xx with ``{"error", "field"}``):

- ``GET /api/state``: the configuration and the current frame.
- ``POST /api/config``: a new configuration (validated), a fresh session.
- ``POST /api/step``: one epoch. ``POST /api/reset``: back to the seed's start.
- ``POST /api/play`` / ``POST /api/pause``: start or stop streaming training.
- ``GET /api/code``: the fnn script that reproduces the run (text/x-python).
- ``GET /api/stream``: server-sent events, one frame each.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fnn.playground._code import script
from fnn.playground._engine import Config, ConfigError, Session, parse_config

STATIC = Path(__file__).resolve().parent / "static"
FILES = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css"}  # all the server will read
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
MAX_BODY = 64 * 1024
EPOCHS_PER_FRAME = 5


class Playground:
    """The state behind the API: one session, and whether it is playing. Thread-safe."""

    def __init__(self, config: Config | None = None):
        self.lock = threading.Lock()
        self.session = Session(config or Config())
        self.playing = False

    def state(self) -> dict[str, Any]:
        with self.lock:
            return self._state()

    def _state(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.session.config),
            "playing": self.playing,
            **self.session.snapshot(),
        }

    def configure(self, raw: Any) -> dict[str, Any]:
        config = parse_config(raw)  # raises ConfigError before anything changes
        session = Session(config)
        with self.lock:
            self.session, self.playing = session, False
            return self._state()

    def step(self, epochs: int = 1) -> dict[str, Any]:
        with self.lock:
            self.session.train(epochs)
            return self._state()

    def reset(self) -> dict[str, Any]:
        with self.lock:
            self.session.reset()
            self.playing = False
            return self._state()

    def set_playing(self, playing: bool) -> dict[str, Any]:
        with self.lock:
            self.playing = playing
            return self._state()

    def frame(self) -> dict[str, Any]:
        """Trains a few epochs when playing, then returns the frame to stream."""
        with self.lock:
            if self.playing:
                self.session.train(EPOCHS_PER_FRAME)
            return self._state()

    def code(self) -> str:
        with self.lock:
            return script(self.session.config, self.session.epoch)


class _Handler(BaseHTTPRequestHandler):
    playground: Playground
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
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str, field: str | None = None) -> None:
        self._json(status, {"error": message, "field": field})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in FILES:
            name = FILES[path]
            self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), TYPES[Path(name).suffix])
        elif path == "/api/state":
            self._json(HTTPStatus.OK, self.playground.state())
        elif path == "/api/code":
            self._send(HTTPStatus.OK, self.playground.code().encode(), "text/x-python; charset=utf-8")
        elif path == "/api/stream":
            self._stream()
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    def do_POST(self) -> None:
        routes = {
            "/api/config": lambda body: self.playground.configure(body),
            "/api/step": lambda body: self.playground.step(),
            "/api/reset": lambda body: self.playground.reset(),
            "/api/play": lambda body: self.playground.set_playing(True),
            "/api/pause": lambda body: self.playground.set_playing(False),
        }
        if self.path not in routes:
            return self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {self.path}")
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_BODY:
            return self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body must be at most {MAX_BODY} bytes"
            )
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return self._error(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {e}")
        try:
            self._json(HTTPStatus.OK, routes[self.path](body))
        except ConfigError as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e), e.field)

    def _stream(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        try:
            while True:
                frame = self.playground.frame()
                self.wfile.write(f"data: {json.dumps(frame)}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.03 if frame["playing"] else 0.25)  # pacing of a live view, not of training
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away


def make_server(host: str = "127.0.0.1", port: int = 0, config: Config | None = None) -> ThreadingHTTPServer:
    """A server for the playground bound to ``host:port`` (port 0: any free one); not yet serving."""
    handler = type("Handler", (_Handler,), {"playground": Playground(config)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
