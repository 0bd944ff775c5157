"""The router over real sockets: upstreams are stdlib HTTP servers on 127.0.0.1 in threads (no Docker).

Timing assertions are loose lower bounds only; waits are on events with deadlines.
"""

from __future__ import annotations

import ast
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from compat.router import FaultDice, Router, RouterConfigError, Upstream
from compat.router.config import Fault

REPO = Path(__file__).resolve().parent.parent
ROUTER_DIR = REPO / "compat" / "router"
BIG = 20 * 1024 * 1024


# --- upstream test server ---------------------------------------------------------------------------------


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: TestUpstream

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> tuple[bytes, str]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data), "chunked"
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length), "length" if self.headers.get("Content-Length") else "none"

    def _reply(self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        server = self.server
        body, framing = self._body()
        with server.lock:
            server.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": list(self.headers.items()),
                    "body": body,
                }
            )
        path = self.path.split("?")[0]
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self.send_response(code)
            if code in (204, 304):
                self.end_headers()
                return
            extra = {"Location": "/elsewhere"} if 300 <= code < 400 else {}
            data = json.dumps({"status": code}).encode()
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if path == "/big":
            half = BIG // 2
            self.send_response(200)
            self.send_header("Content-Length", str(BIG))
            self.end_headers()
            block = b"x" * 65536
            for _ in range(half // len(block)):
                self.wfile.write(block)
            server.released_in_time = server.release.wait(30)
            for _ in range(half // len(block)):
                self.wfile.write(block)
            return
        if path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world" * 1000):
                self.wfile.write(b"%x\r\n%b\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if path == "/slow":
            server.release.wait(10)
        if path == "/hop":
            extra = {"Connection": "X-Secret", "X-Secret": "1", "Keep-Alive": "timeout=5", "X-Kept": "yes"}
            self._reply(200, {"ok": True}, extra)
            return
        if path == "/close-after":
            self._reply(200, {"server": server.name})
            self.close_connection = True  # closes an idle keep-alive connection without saying so
            return
        self._reply(
            200,
            {
                "server": server.name,
                "method": self.command,
                "path": self.path,
                "framing": framing,
                "body_length": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            },
        )

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class TestUpstream(ThreadingHTTPServer):
    """A stdlib HTTP/1.1 server that records requests and counts accepted connections."""

    __test__ = False
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.name = name
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.closed = 0
        self.release = threading.Event()
        self.released_in_time: bool | None = None
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self.lock:
            self.closed += 1

    def wait_closed(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.closed < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"upstream {self.name} closed {self.closed} connections, not {count}")
            time.sleep(0.005)

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        self.thread.join(5)


@pytest.fixture
def upstreams() -> Iterator[Callable[..., list[TestUpstream]]]:
    made: list[TestUpstream] = []

    def make(*names: str) -> list[TestUpstream]:
        servers = [TestUpstream(n) for n in names]
        made.extend(servers)
        return servers

    yield make
    for server in made:
        server.close()


@pytest.fixture
def router() -> Iterator[Callable[..., Router]]:
    made: list[Router] = []

    def make(config: dict[str, Any]) -> Router:
        r = Router(config)
        r.start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def fleet(servers: list[TestUpstream], versions: list[str]) -> list[dict[str, str]]:
    return [
        {"name": s.name, "version": v, "address": s.address} for s, v in zip(servers, versions, strict=True)
    ]


class Client:
    """One keep-alive ``http.client`` connection to a router."""

    def __init__(self, r: Router) -> None:
        host, port = r.address
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[http.client.HTTPResponse, bytes]:
        self.conn.request(method, path, body=body, headers=headers or {}, **kw)
        response = self.conn.getresponse()
        return response, response.read()

    def json(self, method: str, path: str, **kw: Any) -> tuple[http.client.HTTPResponse, Any]:
        response, data = self.request(method, path, **kw)
        return response, json.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def client() -> Iterator[Callable[[Router], Client]]:
    made: list[Client] = []

    def make(r: Router) -> Client:
        c = Client(r)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def dead_address() -> str:
    """An address on 127.0.0.1 that refuses connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


# --- stamping and forwarding ------------------------------------------------------------------------------


def test_every_response_is_stamped_with_instance_and_version(upstreams, router, client) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router({"upstreams": fleet(servers, ["v1", "v2"])})
    c = client(r)
    seen = []
    for _ in range(4):
        response, body = c.json("GET", "/orders?page=2")
        assert response.status == 200
        assert response.getheader("X-Compat-Upstream") == body["server"]
        assert (
            response.getheader("X-Compat-Version")
            == {"orders-v1-0": "v1", "orders-v2-0": "v2"}[body["server"]]
        )
        assert response.getheader("Via") == "1.1 compat-router"
        assert body["path"] == "/orders?page=2"
        seen.append(body["server"])
    assert seen == ["orders-v1-0", "orders-v2-0"] * 2


def test_forwarding_headers_and_hop_by_hop_fields(upstreams, router, client) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    c = client(r)
    headers = {
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "secret",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Upgrade": "websocket",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "X-Compat-Pin": "v1",
        "X-Forwarded-For": "203.0.113.7",
        "Via": "1.1 edge",
        "X-End-To-End": "kept",
    }
    response, _ = c.request("GET", "/x", headers=headers)
    assert response.status == 200
    got = {k.lower(): v for k, v in server.requests[-1]["headers"]}
    for hop in ("x-hop", "keep-alive", "te", "upgrade", "proxy-authorization", "connection"):
        assert hop not in got, hop
    assert got["x-end-to-end"] == "kept"
    assert got["x-compat-pin"] == "v1"  # forwarded unchanged, like a trace header
    assert got["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert got["x-forwarded-host"] == f"{r.address[0]}:{r.address[1]}"
    assert got["x-forwarded-proto"] == "http"
    assert got["via"] == "1.1 edge, 1.1 compat-router"
    assert got["host"] == f"{r.address[0]}:{r.address[1]}"  # Host passes through

    response, _ = c.request("GET", "/hop")
    assert response.getheader("X-Kept") == "yes"
    assert response.getheader("X-Secret") is None  # named in the upstream's Connection header
    assert response.getheader("Keep-Alive") is None


def test_head_and_no_body_statuses_keep_their_framing(upstreams, router, client) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    c = client(r)
    response, body = c.request("HEAD", "/thing")
    assert (response.status, body) == (200, b"")
    assert int(response.getheader("Content-Length")) > 0
    response, body = c.request("GET", "/status/204")
    assert (response.status, body) == (204, b"")
    response, body = c.request("GET", "/status/200")  # the connection is still in sync
    assert response.status == 200


def test_http10_client_gets_a_length_framed_answer_and_a_close(upstreams, router) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    with socket.create_connection(r.address, timeout=10) as sock:
        sock.sendall(b"GET /chunked HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in head.lower()
    assert b"transfer-encoding" not in head.lower()
    assert body == b"hello chunked " + b"world" * 1000


def test_malformed_request_is_answered_400(upstreams, router) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    with socket.create_connection(r.address, timeout=10) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost : x\r\n\r\n")
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 400")
    assert b"invalid header line" in data
    assert server.requests == []


# --- policies over the wire -------------------------------------------------------------------------------


def test_yoyo_alternates_within_a_session_header(upstreams, router, client) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router({"upstreams": fleet(servers, ["v1", "v2"]), "policy": "yoyo", "seed": 3})
    c = client(r)
    got = {
        key: [
            c.request("GET", "/", headers={"X-Compat-Session": key})[0].getheader("X-Compat-Version")
            for _ in range(4)
        ]
        for key in ("alice", "bob")
    }
    for versions in got.values():
        assert versions in (["v1", "v2"] * 2, ["v2", "v1"] * 2)


def test_a_request_may_ask_for_another_policy_by_header(upstreams, router, client) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router({"upstreams": fleet(servers, ["v1", "v2"]), "policy": "round-robin", "seed": 3})
    c = client(r)

    def walk(policy: str, key: str) -> list[str]:
        headers = {"X-Compat-Session": key, "X-Compat-Policy": policy}
        return [c.request("GET", "/", headers=headers)[0].getheader("X-Compat-Version") for _ in range(4)]

    assert walk("yoyo", "alice") in (["v1", "v2"] * 2, ["v2", "v1"] * 2)
    sticky = walk("sticky", "alice")
    assert len(set(sticky)) == 1
    response, body = c.request("GET", "/", headers={"X-Compat-Policy": "sometimes"})
    assert response.status == 400
    assert b"X-Compat-Policy" in body
    assert b"yoyo" in body
    assert r.stats()["rejected"] == {"unknown_policy": 1}


def test_sticky_by_cookie(upstreams, router, client) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router({"upstreams": fleet(servers, ["v1", "v2"]), "policy": "sticky", "session_cookie": "sid"})
    c = client(r)
    for user in ("u1", "u2", "u3"):
        cookie = {"Cookie": f"theme=dark; sid={user}"}
        versions = {c.request("GET", "/", headers=cookie)[0].getheader("X-Compat-Version") for _ in range(5)}
        assert len(versions) == 1


def test_pinned_by_version_and_instance_and_unknown_pin(upstreams, router, client) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router({"upstreams": fleet(servers, ["v1", "v2"]), "policy": "pinned"})
    c = client(r)
    assert (
        c.request("GET", "/", headers={"X-Compat-Pin": "v2"})[0].getheader("X-Compat-Upstream")
        == "orders-v2-0"
    )
    assert (
        c.request("GET", "/", headers={"X-Compat-Pin": "orders-v1-0"})[0].getheader("X-Compat-Version")
        == "v1"
    )
    response, body = c.json("GET", "/", headers={"X-Compat-Pin": "v7"})
    assert response.status == 421
    assert body["versions"] == ["v1", "v2"]
    assert body["pin"] == "v7"
    assert "v7" in body["error"]
    assert c.request("GET", "/")[0].status == 200  # no pin: fallback round-robin
    assert r.stats()["rejected"] == {"unknown_pin": 1}


# --- stats ------------------------------------------------------------------------------------------------


def test_stats_count_versions_instances_status_classes_and_latency(upstreams, router, client) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router({"upstreams": fleet(servers, ["v1", "v2"])})
    c = client(r)
    for path in (
        "/ok",
        "/ok",
        "/status/302",
        "/status/302",
        "/status/404",
        "/status/404",
        "/status/500",
        "/ok",
    ):
        c.request("GET", path)
    c.request("GET", "/_compat/router/health")  # admin: not counted
    stats = c.json("GET", "/_compat/router/stats")[1]
    v1, v2 = stats["versions"]["v1"], stats["versions"]["v2"]
    assert v1["requests"] == v2["requests"] == 4
    assert v1["status"] == {"1xx": 0, "2xx": 1, "3xx": 1, "4xx": 1, "5xx": 1}
    assert v2["status"] == {"1xx": 0, "2xx": 2, "3xx": 1, "4xx": 1, "5xx": 0}
    assert stats["instances"]["orders-v1-0"]["requests"] == 4
    assert stats["total"]["requests"] == 8
    latency = v1["latency_ms"]
    assert latency["count"] == 4
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert latency["mean"] > 0
    assert r.stats()["versions"]["v1"]["requests"] == 4
    response, _ = c.json("POST", "/_compat/router/reset")
    assert response.status == 200
    assert r.stats()["versions"] == {}


# --- faults -----------------------------------------------------------------------------------------------


def test_delay_fault_delays_at_least_the_configured_time(upstreams, router, client) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router({"upstreams": fleet(servers, ["v1", "v2"]), "faults": {"v2": {"delay_ms": 150}}})
    c = client(r)
    timings = {}
    for _ in range(2):
        start = time.perf_counter()
        response, _ = c.request("GET", "/")
        timings[response.getheader("X-Compat-Version")] = time.perf_counter() - start
    assert timings["v2"] >= 0.15
    assert r.stats()["versions"]["v2"]["faults"]["delay"] == 1


def test_error_rate_is_seeded_and_exact(upstreams, router, client) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    config = {
        "upstreams": fleet(servers, ["v1", "v2"]),
        "seed": 1234,
        "faults": {"orders-v2-0": {"error_rate": 0.25, "error_status": 503}},
    }
    # what the dice say for the 50 requests orders-v2-0 gets out of 100 round-robin requests
    dice = FaultDice(1234)
    victim = Upstream("orders-v2-0", "v2", servers[1].address)
    expected = sum(dice.roll(victim, Fault(error_rate=0.25)) == "error" for _ in range(50))
    assert 0 < expected < 50
    counts = []
    for _ in range(2):  # a second router with the same seed injects the same errors
        r = router(config)
        c = client(r)
        errors = 0
        for _ in range(100):
            response, body = c.request("GET", "/")
            if response.status == 503:
                errors += 1
                assert response.getheader("X-Compat-Upstream") == "orders-v2-0"
                assert response.getheader("X-Compat-Fault") == "error"
                assert json.loads(body)["version"] == "v2"
        counts.append(errors)
        faults = r.stats()["versions"]["v2"]
        assert faults["faults"]["error"] == errors
        assert faults["status"]["5xx"] == errors
    assert counts == [expected, expected]
    assert len(servers[1].requests) == 2 * (50 - expected)  # injected errors never reach the upstream


def test_drop_fault_closes_the_connection_without_a_response(upstreams, router, client) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"]), "faults": {"v1": {"drop_rate": 1.0}}})
    c = client(r)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        c.request("GET", "/")
    assert server.requests == []
    stats = r.stats()["versions"]["v1"]
    assert stats["faults"]["drop"] == 1
    assert sum(stats["status"].values()) == 0


# --- upstream failures ------------------------------------------------------------------------------------


def test_dead_upstream_gives_502_blamed_on_its_version(upstreams, router, client) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router(
        {
            "upstreams": [
                {"name": "orders-v1-0", "version": "v1", "address": server.address},
                {"name": "orders-v2-0", "version": "v2", "address": dead_address()},
            ]
        }
    )
    c = client(r)
    assert c.request("GET", "/")[0].status == 200
    response, body = c.json("GET", "/")
    assert response.status == 502
    assert response.getheader("X-Compat-Upstream") == "orders-v2-0"
    assert response.getheader("X-Compat-Version") == "v2"
    assert body["upstream"] == "orders-v2-0"
    assert body["version"] == "v2"
    assert "Connection" in body["error"] or "refused" in body["error"]
    stats = r.stats()["versions"]["v2"]
    assert stats["upstream_errors"] == 1
    assert stats["status"]["5xx"] == 1
    assert c.request("GET", "/")[0].status == 200  # the client connection survives


def test_upstream_timeout_gives_504(upstreams, router, client) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"]), "upstream_timeout": 0.3})
    c = client(r)
    start = time.perf_counter()
    response, body = c.json("GET", "/slow")
    assert response.status == 504
    assert time.perf_counter() - start >= 0.3
    assert body["version"] == "v1"
    assert r.stats()["versions"]["v1"]["upstream_errors"] == 1
    server.release.set()


def test_idle_connection_closed_by_the_upstream_is_not_reused(upstreams, router, client) -> None:
    """A pooled connection the upstream has closed is replaced before a request is sent on it."""
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    c = client(r)
    for count in range(1, 4):
        assert c.request("POST", "/close-after", body=b"{}")[0].status == 200
        server.wait_closed(count)  # POST is not retried: it must never be sent on a closed connection
    assert len(server.requests) == 3
    assert server.connections == 3


def test_get_is_retried_once_when_a_reused_connection_fails(upstreams, router, client) -> None:
    """Closed just after its answer (a race the pre-check cannot always see): idempotent requests retry."""
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    c = client(r)
    for _ in range(20):
        assert c.request("GET", "/close-after")[0].status == 200
    assert len(server.requests) == 20
    assert r.stats()["versions"]["v1"]["upstream_errors"] == 0


# --- streaming and bodies ---------------------------------------------------------------------------------


def test_large_response_streams_without_buffering(upstreams, router, client) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    c = client(r)
    c.conn.request("GET", "/big")
    response = c.conn.getresponse()
    assert response.status == 200
    assert int(response.getheader("Content-Length")) == BIG
    first = response.read(65536)  # arrives while the upstream still holds back its second half
    assert first
    server.release.set()
    rest = 0
    while block := response.read(1 << 20):
        rest += len(block)
    assert len(first) + rest == BIG
    assert server.released_in_time is True


def test_chunked_response_is_relayed_chunked(upstreams, router, client) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    c = client(r)
    response, body = c.request("GET", "/chunked")
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert body == b"hello chunked " + b"world" * 1000
    assert c.request("GET", "/")[0].status == 200


@pytest.mark.parametrize(("size", "framing"), [(10_000, "length"), (3 * 1024 * 1024, "chunked")])
def test_chunked_request_body(upstreams, router, client, size: int, framing: str) -> None:
    """Small chunked bodies reach the upstream de-chunked; large ones are streamed on chunked."""
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    c = client(r)
    data = os.urandom(size)
    parts = (data[i : i + 100_000] for i in range(0, size, 100_000))
    response, body = c.json("POST", "/upload", body=parts, encode_chunked=True)
    assert response.status == 200
    assert body["body_length"] == size
    assert body["body_sha256"] == hashlib.sha256(data).hexdigest()
    assert body["framing"] == framing


def test_large_content_length_request_body_is_streamed(upstreams, router, client) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    c = client(r)
    data = os.urandom(5 * 1024 * 1024)
    response, body = c.json("PUT", "/upload", body=data)
    assert response.status == 200
    assert body["body_sha256"] == hashlib.sha256(data).hexdigest()
    assert body["framing"] == "length"


def test_expect_100_continue(upstreams, router) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    with socket.create_connection(r.address, timeout=10) as sock:
        sock.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200")
    assert server.requests[0]["body"] == b"hello"
    assert "expect" not in {k.lower() for k, _ in server.requests[0]["headers"]}


# --- keep-alive -------------------------------------------------------------------------------------------


def test_keep_alive_one_client_connection_reuses_upstream_connections(upstreams, router, client) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router({"upstreams": fleet(servers, ["v1", "v2"])})
    c = client(r)
    for i in range(60):
        assert c.request("POST" if i % 3 else "GET", "/", body=b"x" * i)[0].status == 200
    assert [len(s.requests) for s in servers] == [30, 30]
    assert [s.connections for s in servers] == [1, 1]


def test_clients_without_keep_alive_still_share_upstream_connections(upstreams, router) -> None:
    (server,) = upstreams("orders-v1-0")
    r = router({"upstreams": fleet([server], ["v1"])})
    for _ in range(10):
        conn = http.client.HTTPConnection(*r.address, timeout=10)
        conn.request("GET", "/", headers={"Connection": "close"})
        assert conn.getresponse().read()
        conn.close()
    assert server.connections == 1


# --- admin ------------------------------------------------------------------------------------------------


def test_admin_health_and_config(upstreams, router, client) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router(
        {"service": "orders", "upstreams": fleet(servers, ["v1", "v2"]), "policy": "sticky", "seed": 5}
    )
    c = client(r)
    response, health = c.json("GET", "/_compat/router/health")
    assert response.status == 200
    assert health == {
        "status": "ok",
        "service": "orders",
        "policy": "sticky",
        "upstreams": ["orders-v1-0", "orders-v2-0"],
        "versions": ["v1", "v2"],
    }
    config = c.json("GET", "/_compat/router/config")[1]
    assert config["policy"] == "sticky"
    assert config["seed"] == 5
    assert config["upstreams"][1]["address"] == servers[1].address
    assert c.json("GET", "/_compat/router/nope")[0].status == 404
    response, body = c.json("DELETE", "/_compat/router/config")
    assert response.status == 405
    assert body["allowed"] == ["GET", "PUT"]
    assert response.getheader("Allow") == "GET, PUT"
    assert r.stats()["total"]["requests"] == 0
    assert servers[0].requests == servers[1].requests == []


def test_admin_put_config_replaces_policy_at_runtime(upstreams, router, client) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router({"upstreams": fleet(servers, ["v1", "v2"])})
    c = client(r)
    body = json.dumps({"policy": "weighted", "weights": {"v1": 0, "v2": 1}, "seed": 9})
    response, config = c.json("PUT", "/_compat/router/config", body=body)
    assert response.status == 200
    assert config["policy"] == "weighted"
    assert {c.request("GET", "/")[0].getheader("X-Compat-Version") for _ in range(10)} == {"v2"}
    # the whole GET config can be PUT back (the topology re-points routers this way)
    whole = c.json("GET", "/_compat/router/config")[1]
    whole["upstreams"] = whole["upstreams"][:1]
    assert c.json("PUT", "/_compat/router/config", body=json.dumps({**whole, "weights": {}}))[0].status == 200
    assert {c.request("GET", "/")[0].getheader("X-Compat-Upstream") for _ in range(4)} == {"orders-v1-0"}


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        ({"policy": "roundrobin"}, "policy", "choose one of: pinned, round-robin, sticky, weighted, yoyo"),
        ({"weights": {"v3": 1}}, "weights.v3", "choose one of: v1, v2"),
        ({"faults": {"v1": {"error_rate": 2}}}, "faults.v1.error_rate", "between 0 and 1"),
        ({"colour": "red"}, "colour", "choose one of:"),
        (["policy"], "", "not an object"),
    ],
)
def test_admin_put_config_rejects_bad_input(
    upstreams, router, client, change: Any, key: str, fragment: str
) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router({"upstreams": fleet(servers, ["v1", "v2"])})
    c = client(r)
    response, body = c.json("PUT", "/_compat/router/config", body=json.dumps(change))
    assert response.status == 400
    assert body["key"] == key
    assert fragment in body["error"]
    assert r.config.policy == "round-robin"  # unchanged
    response, body = c.json("PUT", "/_compat/router/config", body=b"{not json")
    assert response.status == 400
    assert "not JSON" in body["error"]


def test_in_process_update_and_validation(upstreams, router) -> None:
    servers = upstreams("orders-v1-0", "orders-v2-0")
    r = router({"upstreams": fleet(servers, ["v1", "v2"])})
    assert r.update(policy="yoyo", seed=4).policy == "yoyo"
    with pytest.raises(RouterConfigError, match=r"`weights\.v9`"):
        r.update({"weights": {"v9": 1.0}})
    assert r.config.policy == "yoyo"


def test_router_as_context_manager(upstreams) -> None:
    (server,) = upstreams("orders-v1-0")
    with Router({"upstreams": fleet([server], ["v1"])}) as r:
        conn = http.client.HTTPConnection(*r.address, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().read()
        conn.close()
        assert r.url == f"http://127.0.0.1:{r.address[1]}"
    with pytest.raises(RuntimeError, match="not started"):
        _ = r.url


# --- the program ------------------------------------------------------------------------------------------


def _spawn(args: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "compat.router", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=cwd,
    )


def _banner(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    assert proc.stdout is not None
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"router printed no banner within {timeout} s; stderr: {err}")
    return result[0]


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"router did not exit on SIGTERM; stderr: {err}")
    return proc.returncode, out, err


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/" + url.removeprefix("http://").partition("/")[2])
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_cli_serves_and_exits_cleanly_on_sigterm(upstreams, tmp_path: Path) -> None:
    (server,) = upstreams("orders-v1-0")
    config = {"upstreams": fleet([server], ["v1"]), "policy": "round-robin"}
    path = tmp_path / "router.json"
    path.write_text(json.dumps(config))
    for args, env in (
        (["--config", json.dumps(config)], None),
        (["--config", str(path)], None),
        ([], {"COMPAT_ROUTER_CONFIG": json.dumps(config)}),
    ):
        proc = _spawn(["--listen", "127.0.0.1:0", *args], env)
        banner = _banner(proc)
        url = banner.split("listening on ")[1].split()[0]
        status, headers, _ = _get(url + "/orders")
        assert status == 200
        assert headers["X-Compat-Upstream"] == "orders-v1-0"
        assert _get(url + "/_compat/router/health")[0] == 200
        code, out, err = _stop(proc)
        assert code == 0, err
        assert "stopped" in out


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (
            ["--config", '{"upstreams": [{"name": "a", "version": "v1", "address": "h:1"}], "policy": "rr"}'],
            {},
            "`policy`: 'rr' is not valid; choose one of: pinned, round-robin",
        ),
        (["--config", "{not json"], {}, "is not valid JSON"),
        (["--config", "/nonexistent/router.json"], {}, "neither a JSON object nor a readable file"),
        ([], {"COMPAT_ROUTER_CONFIG": ""}, "no config"),
        (["--listen", "nowhere", "--config", "{}"], {}, "--listen: 'nowhere' is not HOST:PORT"),
        (["--config", '{"upstreams": []}'], {}, "`upstreams`"),
    ],
)
def test_cli_bad_config_exits_2_with_a_message(args: list[str], env: dict[str, str], fragment: str) -> None:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    if "COMPAT_ROUTER_CONFIG" not in env:
        full_env.pop("COMPAT_ROUTER_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "compat.router", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr


def test_cli_port_in_use_exits_1(upstreams) -> None:
    (server,) = upstreams("orders-v1-0")
    config = json.dumps({"upstreams": fleet([server], ["v1"])})
    result = subprocess.run(
        [sys.executable, "-m", "compat.router", "--listen", server.address, "--config", config],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


def test_router_runs_from_a_copy_of_its_own_directory(upstreams, tmp_path: Path) -> None:
    """What the container gets: ``compat/__init__.py`` (near empty) + ``compat/router/``, stdlib only."""
    (server,) = upstreams("orders-v1-0")
    (tmp_path / "compat").mkdir()
    (tmp_path / "compat" / "__init__.py").write_text('"""Only the router is shipped in this image."""\n')
    shutil.copytree(ROUTER_DIR, tmp_path / "compat" / "router", ignore=shutil.ignore_patterns("__pycache__"))
    config = json.dumps({"upstreams": fleet([server], ["v1"])})
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONNOUSERSITE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-S", "-m", "compat.router", "--listen", "127.0.0.1:0", "--config", config],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    url = _banner(proc).split("listening on ")[1].split()[0]
    assert _get(url + "/x")[1]["X-Compat-Version"] == "v1"
    code, _, err = _stop(proc)
    assert code == 0, err


def test_router_imports_only_the_standard_library_and_itself() -> None:
    stdlib = sys.stdlib_module_names
    for path in sorted(ROUTER_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: inside compat.router
                    assert node.level == 1, f"{path.name}: import reaches outside compat/router"
                    continue
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                assert root == "__future__" or root in stdlib, f"{path.name} imports {root}"
