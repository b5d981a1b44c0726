"""``python -m fnn.playground [--host 127.0.0.1] [--port 8765]``: serve the playground locally."""

from __future__ import annotations

import argparse

from fnn.playground._server import make_server


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m fnn.playground", description=__doc__)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (loopback by default); open the page at it, or at localhost "
        "(it answers only to those names: bound to 0.0.0.0, it refuses the machine's LAN address)",
    )
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
    args = parser.parse_args()
    server = make_server(args.host, args.port)
    host, port = server.server_address[:2]
    print(f"fnn Playground: http://{host}:{port}/  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
