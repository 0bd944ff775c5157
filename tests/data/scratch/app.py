"""A minimal versioned service for plugin tests: /health, /hello, and a note kept in shared state."""

import argparse
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--state", default="/data")
    ap.add_argument("--version", default=os.environ.get("APP_VERSION", "v1"))
    args = ap.parse_args()
    note = Path(args.state) / "note.txt"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.path = self.path.split("?", 1)[0]
            if self.path == "/health":
                self._send(200, {"status": "ok", "version": args.version})
            elif self.path == "/hello":
                backend = os.environ.get("BACKEND_URL")
                self._send(200, {"version": args.version, "backend": backend})
            elif self.path == "/note":
                self._send(200, {"note": note.read_text() if note.exists() else None})
            else:
                self._send(404, {"error": "not found"})

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            note.write_text(self.rfile.read(length).decode())
            self._send(200, {"written_by": args.version})

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
