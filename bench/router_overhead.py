"""What the mixing router adds: latency (p50/p99) and throughput, direct vs via the router, in one run.

    python bench/router_overhead.py [--requests 3000] [--rounds 10] [--clients 4] [--seconds 1.0]

A trivial upstream (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive, Nagle off, ~60-byte JSON body) and
the router (``python -m compat.router``, round-robin over that one upstream) run as separate processes on
127.0.0.1. The client is a lean raw-socket HTTP/1.1 client in this process, so its own cost stays small and
equal on both paths.

* latency: one keep-alive connection per path, 200 warm-up requests each; ``--requests`` per path split into
  ``--rounds`` rounds that alternate direct / router, so machine noise hits both alike; p50/p99 per path and
  the difference.
* throughput: ``--clients`` concurrent keep-alive clients (threads) for ``--seconds`` per round, alternating
  direct / router for ``min(--rounds, 6)`` rounds; the median requests/s per path and their ratio.

Bounded in count (at most 100,000 requests per path) and time (rounds of at most 10 s; ~15 s by default);
traffic goes to 127.0.0.1 only. Targets: added p50 <= 0.3 ms, throughput ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
BODY = json.dumps({"id": 1, "status": "ok", "items": [1, 2, 3], "pad": "x" * 16}).encode()


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


def serve_upstream() -> None:
    """Child process: the trivial upstream; prints its port, serves until stdin closes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()


class Client:
    """A minimal keep-alive HTTP/1.1 client for Content-Length responses (what both paths send here)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = f"GET /item HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bench\r\n\r\n".encode()
        self.buffer = b""

    def get(self) -> None:
        self.sock.sendall(self.request)
        buffer = self.buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buffer += chunk
        head = buffer[:end].lower()
        if not head.startswith(b"http/1.1 200"):
            raise RuntimeError(f"unexpected answer: {buffer[:200]!r}")
        at = head.index(b"content-length:") + 15
        length = int(head[at : head.index(b"\r\n", at) if b"\r\n" in head[at:] else len(head)])
        total = end + 4 + length
        while len(buffer) < total:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buffer += chunk
        self.buffer = buffer[total:]

    def close(self) -> None:
        self.sock.close()


def _spawn(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"{args} printed nothing")
    return proc, line.strip()


def _percentile(ordered: list[float], pct: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def latency(direct: int, routed: int, requests: int, rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"direct": [], "router": []}
    clients = {"direct": Client(direct), "router": Client(routed)}
    try:
        for client in clients.values():  # warm up: connections, pools, caches
            for _ in range(200):
                client.get()
        per_round = max(1, requests // rounds)
        clock = time.perf_counter
        for index in range(rounds):
            order = ("direct", "router") if index % 2 == 0 else ("router", "direct")
            for path in order:
                client, out = clients[path], samples[path]
                for _ in range(per_round):
                    start = clock()
                    client.get()
                    out.append((clock() - start) * 1000)
    finally:
        for client in clients.values():
            client.close()
    return samples


def throughput(port: int, clients: int, seconds: float) -> float:
    """Requests per second of ``clients`` concurrent keep-alive clients for ``seconds``."""
    counts = [0] * clients
    ready = threading.Barrier(clients + 1)
    stop = threading.Event()

    def run(slot: int) -> None:
        client = Client(port)
        try:
            for _ in range(20):
                client.get()
            ready.wait()
            done = 0
            while not stop.is_set():
                client.get()
                done += 1
            counts[slot] = done
        finally:
            client.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per path for latency")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for throughput")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one throughput round")
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream()
        return 0
    args.requests = min(args.requests, 100_000)
    args.seconds = min(args.seconds, 10.0)
    upstream, port_line = _spawn([sys.executable, __file__, "--serve-upstream"])
    upstream_port = int(port_line)
    config = {
        "upstreams": [{"name": "bench-0", "version": "v1", "address": f"127.0.0.1:{upstream_port}"}],
        "policy": "round-robin",
    }
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    router, banner = _spawn(
        [sys.executable, "-m", "compat.router", "--listen", "127.0.0.1:0", "--config", json.dumps(config)],
        env,
    )
    router_port = int(banner.split("http://127.0.0.1:")[1].split()[0])
    try:
        samples = latency(upstream_port, router_port, args.requests, args.rounds)
        rates: dict[str, list[float]] = {"direct": [], "router": []}
        for index in range(min(args.rounds, 6)):
            order = ("direct", "router") if index % 2 == 0 else ("router", "direct")
            for path in order:
                rates[path].append(
                    throughput(upstream_port if path == "direct" else router_port, args.clients, args.seconds)
                )
    finally:
        for proc in (router, upstream):
            stdin: IO[str] | None = proc.stdin
            if stdin is not None:
                stdin.close()
            proc.terminate()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
    direct, routed = sorted(samples["direct"]), sorted(samples["router"])
    d50, d99 = _percentile(direct, 50), _percentile(direct, 99)
    r50, r99 = _percentile(routed, 50), _percentile(routed, 99)
    td, tr = statistics.median(rates["direct"]), statistics.median(rates["router"])
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {len(direct)} requests per path "
        f"in {args.rounds} alternating rounds; "
        f"{args.clients} clients x {args.seconds:g} s per throughput round"
    )
    print(f"latency direct   p50 {d50:.3f} ms  p99 {d99:.3f} ms")
    print(f"latency router   p50 {r50:.3f} ms  p99 {r99:.3f} ms")
    print(f"added            p50 {r50 - d50:.3f} ms  p99 {r99 - d99:.3f} ms   (target p50 <= 0.3 ms)")
    print(
        f"throughput       direct {td:,.0f} req/s  router {tr:,.0f} req/s  "
        f"ratio {tr / td:.2f}   (target >= 0.9)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
