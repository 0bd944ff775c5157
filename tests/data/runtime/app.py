"""A tiny versioned HTTP service for the runtime tests (stdlib only; runs in a container or as a process).

GET /health          200 {"version"} (503 with --fail-health)
GET /state/KEY       the value another instance stored in the shared state directory (404 if none)
PUT /state/KEY       store the request body there
GET /call            GET $BACKEND_URL/health and return what it said (one instance reaching another)
GET /argv, /env/NAME what the process was started with
"""

import argparse
import json
import os
import signal
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--state", default="/data")
    ap.add_argument("--version", default=os.environ.get("APP_VERSION", "v1"))
    ap.add_argument("--fail-health", action="store_true", help="answer /health with 503, forever")
    ap.add_argument("--exit-at-once", type=int, default=None, metavar="CODE", help="exit before listening")
    ap.add_argument("--ignore-term", action="store_true", help="ignore SIGTERM (stop must escalate)")
    ap.add_argument("--spawn-child", action="store_true", help="leave a sleeping child in the group")
    ap.add_argument("extra", nargs="*", help="ignored; echoed by /argv")
    args = ap.parse_args()
    say = lambda text: print(f"[app {args.version}] {text}", flush=True)  # noqa: E731

    if args.exit_at_once is not None:
        say(f"exiting at once with code {args.exit_at_once} (on purpose)")
        sys.exit(args.exit_at_once)
    if args.fail_health:
        say("failing health on purpose")
    state = Path(args.state)
    if args.spawn_child:
        import subprocess

        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        say(f"child pid {child.pid}")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                if args.fail_health:
                    self._send(503, {"status": "failing on purpose"})
                else:
                    self._send(200, {"status": "ok", "version": args.version})
            elif self.path.startswith("/state/"):
                path = state / self.path[len("/state/") :]
                if path.is_file():
                    self._send(200, {"value": path.read_text(), "read_by": args.version})
                else:
                    self._send(404, {"error": f"no {path}"})
            elif self.path == "/call":
                backend = os.environ["BACKEND_URL"]
                # the http:// address the runtime wired in (a name on the run's network, or loopback)
                with urllib.request.urlopen(backend + "/health", timeout=5) as answer:  # noqa: S310
                    self._send(200, {"backend_url": backend, "backend": json.load(answer)})
            elif self.path == "/argv":
                self._send(200, {"argv": sys.argv[1:], "cwd": os.getcwd()})
            elif self.path.startswith("/env/"):
                self._send(200, {"value": os.environ.get(self.path[len("/env/") :])})
            else:
                self._send(404, {"error": "not found"})

        def do_PUT(self):
            length = int(self.headers.get("Content-Length", "0"))
            state.mkdir(parents=True, exist_ok=True)
            (state / self.path[len("/state/") :]).write_bytes(self.rfile.read(length))
            self._send(200, {"written_by": args.version})

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, lambda *_: say("ignoring SIGTERM"))
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    say(f"listening on {args.host}:{args.port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
