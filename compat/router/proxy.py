"""The reverse proxy: an HTTP/1.1 keep-alive server in front of the upstreams of one service.

Per request: choose an upstream with the policy, roll the fault dice, forward (request body streamed, or
buffered when small so a stale pooled connection can be retried), stream the response back in blocks as
they arrive, stamp ``X-Compat-Upstream``/``X-Compat-Version``/``Via``, count it per version and per instance.

Framing
  * A request body with ``Content-Length`` up to :data:`SMALL_BODY` is read first (the request can then be
    replayed once on a stale pooled connection); a larger one is streamed block by block.
  * A chunked request body up to :data:`SMALL_BODY` is de-chunked and sent with ``Content-Length`` (plain
    ``http.server`` upstreams cannot read chunked bodies); a larger one is streamed on, re-chunked.
  * A response with ``Content-Length`` keeps it; a chunked or close-delimited response is re-chunked to an
    HTTP/1.1 client (close-delimited to an HTTP/1.0 one). Small responses leave with their head in one send.
  * Hop-by-hop fields (RFC 7230 §6.1: ``Connection`` and the fields it names, ``Keep-Alive``, ``TE``,
    ``Trailer``, ``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``) are not forwarded in either direction;
    ``Expect: 100-continue`` is answered by the router. ``X-Forwarded-For`` gets the client appended,
    ``X-Forwarded-Host``/``-Proto`` are set unless present, ``Via`` is appended to in both directions;
    ``Host`` passes through unchanged.

Connections
  * Clients: ``ThreadingHTTPServer`` (a daemon thread per connection), keep-alive, TCP_NODELAY (the stdlib
    server stalls ~40 ms per keep-alive request with Nagle on); idle connections close after
    :data:`CLIENT_IDLE_TIMEOUT`. Heads are parsed by :mod:`compat.router.wire`, not ``parse_request``.
  * Upstreams: a LIFO pool of idle keep-alive connections per upstream, shared by all handler threads (a
    client that opens a connection per request still reuses upstream connections). An idle connection the
    upstream has closed is detected (``MSG_PEEK``) and replaced before anything is sent. When a reused
    connection fails anyway, the request is retried once on a fresh one if it is replayable (no body, or a
    buffered one) and idempotent or not completely sent. ``upstream_timeout`` bounds connecting and every
    wait on the upstream (504 before the response head; a cut connection after it).
"""

from __future__ import annotations

import contextlib
import http
import io
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

from .config import POLICY_HEADER, RouterConfig, RouterConfigError, Upstream
from .policy import FALLBACKS, FaultDice, Policy, RequestKey, UnknownPin, make_policy
from .stats import Stats
from .wire import (
    LAST_CHUNK,
    TOKEN,
    Headers,
    LineTooLong,
    MessageError,
    Truncated,
    UpstreamConnection,
    UpstreamResponse,
    chunk,
    iter_chunked,
    iter_length,
    read_head,
    reader,
    request_framing,
    set_kernel_timeout,
)

ADMIN_PREFIX = "/_compat/router/"
UPSTREAM_HEADER = "X-Compat-Upstream"
VERSION_HEADER = "X-Compat-Version"
FAULT_HEADER = "X-Compat-Fault"
VIA = "1.1 compat-router"

SMALL_BODY = 256 * 1024  # request bodies up to this size are buffered (replayable); larger are streamed
SMALL_RESPONSE = 64 * 1024  # responses up to this size are read whole and sent with their head in one send
MAX_ADMIN_BODY = 1024 * 1024
MAX_DISCARD = 1024 * 1024  # unread request bodies up to this size are drained to keep the connection
MAX_IDLE_PER_UPSTREAM = 64
CLIENT_IDLE_TIMEOUT = 300.0

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_STAMPS = frozenset({UPSTREAM_HEADER.lower(), VERSION_HEADER.lower(), FAULT_HEADER.lower()})
# request fields the router rewrites or answers itself; response fields it replaces
_DROP_REQUEST = HOP_BY_HOP | {"expect", "x-forwarded-for", "via", "content-length"}
_DROP_RESPONSE = HOP_BY_HOP | _STAMPS | {"content-length", "via"}


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class _ClientGone(Exception):
    """The client disconnected (or broke its body's framing) while the router was reading its request."""

    def __init__(self, problem: MessageError | None = None) -> None:
        super().__init__(str(problem or "client closed the connection"))
        self.problem = problem  # a framing error to answer with 400, or None when the client is gone


class _Unsupported(MessageError):
    """An HTTP version other than 1.0 and 1.1 (505)."""


_POLICY_KEY = POLICY_HEADER.lower()


@dataclass(frozen=True)
class _State:
    """What a request needs, swapped as one object when the config changes or the router is reset."""

    config: RouterConfig
    policy: Policy
    dice: FaultDice
    stamps: Mapping[str, bytes]  # instance name -> its stamp header lines
    session_header: str  # lower-cased
    pin_header: str | None  # lower-cased; None unless the policy is "pinned"
    overrides: dict[str, Policy] = field(default_factory=dict)  # per-request policies (POLICY_HEADER)

    def policy_for(self, name: str | None) -> Policy:
        """The stage's policy, or the one a request asks for by name (created once, from the seed)."""
        if name is None or name == self.policy.name:
            return self.policy
        found = self.overrides.get(name)
        if found is None:
            weights = self.config.weights if name in ("weighted", "sticky") else None
            found = self.overrides[name] = FALLBACKS[name](
                self.config.upstreams, seed=self.config.seed, weights=weights
            )
        return found


def _state(config: RouterConfig) -> _State:
    stamps = {
        u.name: f"{UPSTREAM_HEADER}: {u.name}\r\n{VERSION_HEADER}: {u.version}\r\n".encode("latin-1")
        for u in config.upstreams
    }
    return _State(
        config=config,
        policy=make_policy(config),
        dice=FaultDice(config.seed),
        stamps=stamps,
        session_header=config.session_header.lower(),
        pin_header=config.pin_header.lower() if config.policy == "pinned" else None,
    )


class _Pool:
    """Idle keep-alive connections per upstream, shared by all handler threads (LIFO)."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str], list[UpstreamConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self, upstream: Upstream, timeout: float) -> tuple[UpstreamConnection, bool]:
        """A connection to ``upstream`` and whether it is a reused one (``False``: it opens on first send)."""
        key = (upstream.name, upstream.address)
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                return UpstreamConnection(upstream.host, upstream.port, timeout), False
            if conn.idle_and_healthy():
                return conn, True
            conn.close()

    def release(self, upstream: Upstream, conn: UpstreamConnection) -> None:
        key = (upstream.name, upstream.address)
        with self._lock:
            if not self._closed and conn.is_open:
                idle = self._idle.setdefault(key, [])
                if len(idle) < MAX_IDLE_PER_UPSTREAM:
                    idle.append(conn)
                    return
        conn.close()

    def retain(self, upstreams: tuple[Upstream, ...]) -> None:
        """Close idle connections to upstreams that are no longer configured."""
        keep = {(u.name, u.address) for u in upstreams}
        with self._lock:
            gone = [key for key in self._idle if key not in keep]
            conns = [c for key in gone for c in self._idle.pop(key)]
        for conn in conns:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], router: Router) -> None:
        self.router = router
        self.clients: set[socket.socket] = set()
        self.clients_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS look-up that can hang without DNS
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.clients_lock:
            self.clients.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.clients_lock:
            self.clients.discard(request)
        super().shutdown_request(request)

    def disconnect_clients(self) -> None:
        """Wake every handler thread blocked on its client (used when the router stops)."""
        with self.clients_lock:
            clients = list(self.clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        kind = sys.exc_info()[0]
        if kind is not None and issubclass(kind, ConnectionError | TimeoutError):
            return  # a client that went away is not the router's error
        super().handle_error(request, client_address)


class _Handler(socketserver.StreamRequestHandler):
    """One client connection: requests are read and answered in turn (HTTP/1.1 keep-alive)."""

    router: Router
    reader: io.BufferedReader
    _pending: tuple[Upstream, float, tuple[str, ...]] | None  # the request not counted yet
    close_connection: bool
    # the current request
    method: str
    target: str
    http10: bool
    headers: Headers
    framing: str  # "none" | "length" | "chunked"
    length: int
    expect_continue: bool

    def setup(self) -> None:
        self.connection = sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        set_kernel_timeout(sock, CLIENT_IDLE_TIMEOUT)
        self.rfile = self.reader = reader(sock)  # responses go out with sock.sendall: no wfile

    def finish(self) -> None:
        self.reader.close()

    def handle(self) -> None:
        self.router = cast(_Server, self.server).router
        self.close_connection = False
        while not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        self.http10 = False
        self.expect_continue = False
        self._pending = None
        try:
            if not self._read_request():
                self.close_connection = True
                return
            if self.target.startswith(ADMIN_PREFIX):
                self._admin()
            else:
                self._proxy()
        except (TimeoutError, ConnectionError, Truncated):
            self._record(None, timed=False)
            self.close_connection = True
        except _ClientGone as exc:
            self.close_connection = True
            if exc.problem is None:
                self._record(None, timed=False)
            else:
                self._record(400)
                self._send_json(400, {"error": f"bad request: {exc.problem}"})
        except MessageError as exc:
            self.close_connection = True
            self._send_json(400, {"error": f"bad request: {exc}"})

    def _read_request(self) -> bool:
        """Read a request head into ``self``; ``False`` when the connection is to be closed."""
        try:
            head = read_head(self.reader, unfold=False)
        except LineTooLong as exc:
            self.close_connection = True
            self._send_json(414, {"error": str(exc)})
            return False
        if head is None:
            return False
        line, headers = head
        parts = line.split()
        if len(parts) != 3 or not TOKEN.fullmatch(parts[0]):
            raise MessageError(f"invalid request line {line[:80]!r}")
        version = parts[2]
        if version != "HTTP/1.1" and version != "HTTP/1.0":
            if not version.startswith("HTTP/"):
                raise MessageError(f"invalid request line {line[:80]!r}")
            self.close_connection = True
            self._send_json(505, {"error": f"{version} is not supported; use HTTP/1.1"})
            return False
        self.method, self.target = parts[0], parts[1]
        self.http10 = http10 = version == "HTTP/1.0"
        self.headers = headers
        connection = headers.tokens("connection")
        if http10:
            self.close_connection = "keep-alive" not in connection
        else:
            self.close_connection = "close" in connection
            expect = headers.get("expect")
            self.expect_continue = expect is not None and expect.lower() == "100-continue"
        self.framing, self.length = request_framing(headers)
        return True

    # --- proxying -------------------------------------------------------------------------------------

    def _proxy(self) -> None:
        started = time.perf_counter()
        router = self.router
        state = router._state
        config = state.config
        if self.method == "CONNECT":
            self.close_connection = True
            self._send_json(405, {"error": "CONNECT is not supported by the compat router"})
            return
        headers = self.headers
        session = headers.get(state.session_header)
        if session is None and config.session_cookie:
            session = _cookie(headers.get_all("cookie"), config.session_cookie)
        pin = headers.get(state.pin_header) if state.pin_header else None
        key = RequestKey(session, self.client_address[0], pin)
        asked = headers.get(_POLICY_KEY)
        if asked is not None and asked.strip() not in FALLBACKS:
            router._stats.reject("unknown_policy")
            self._discard_body()
            self._send_json(
                400,
                {
                    "error": f"{POLICY_HEADER} {asked!r} is not a policy",
                    "valid": sorted(FALLBACKS),
                    "header": POLICY_HEADER,
                },
            )
            return
        fault = None
        outcome = None
        with router._choice_lock:
            try:
                upstream = state.policy_for(asked.strip() if asked else None).choose(key)
            except UnknownPin as exc:
                unknown: UnknownPin | None = exc
            else:
                unknown = None
                fault = config.fault_for(upstream)
                if fault is not None:
                    outcome = state.dice.roll(upstream, fault)
        if unknown is not None:
            router._stats.reject("unknown_pin")
            self._discard_body()
            body: dict[str, object] = {
                "error": str(unknown),
                "header": config.pin_header,
                "pin": unknown.pin,
                "versions": list(unknown.versions),
                "instances": list(unknown.instances),
            }
            self._send_json(421, body)
            return
        stamps = state.stamps[upstream.name]
        faults: tuple[str, ...] = ()
        if fault is not None and fault.delay_ms > 0:
            faults = ("delay",)
            time.sleep(fault.delay_ms / 1000.0)
        self._pending = (upstream, started, faults)
        if fault is not None:
            if outcome == "drop":
                self._record(None, faults=("drop",), timed=False)
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if outcome == "error":
                self._discard_body()
                body = {
                    "error": "fault injected by the compat router",
                    "status": fault.error_status,
                    "upstream": upstream.name,
                    "version": upstream.version,
                }
                self._record(fault.error_status, faults=("error",))
                self._send_json(fault.error_status, body, stamps + f"{FAULT_HEADER}: error\r\n".encode())
                return
        status, upstream_error = self._forward(upstream, config, stamps)
        self._record(status, upstream_error=upstream_error)

    def _record(
        self,
        status: int | None,
        *,
        upstream_error: bool = False,
        faults: tuple[str, ...] = (),
        timed: bool = True,
    ) -> None:
        """Count the current request once, just before its last byte goes out (so a client that has its
        answer always finds it counted)."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        upstream, started, earlier = pending
        elapsed = (time.perf_counter() - started) * 1000
        self.router._stats.record(
            upstream.name,
            upstream.version,
            status,
            elapsed if timed else None,
            upstream_error=upstream_error,
            faults=earlier + faults,
        )
        if self.router.access_log:
            sys.stderr.write(
                f'{self.client_address[0]} "{self.method} {self.target}" {status or "dropped"} '
                f"{upstream.name} ({upstream.version}) {elapsed:.1f} ms\n"
            )

    def _forward_head(self, upstream: Upstream, framing: str, length: int) -> bytes:
        """The request head for ``upstream``: hop-by-hop fields out, forwarding fields in."""
        headers = self.headers
        drop = _DROP_REQUEST
        connection = headers.tokens("connection")
        if connection:
            drop = drop | connection
        target = self.target
        if not target.startswith("/") and "://" in target:  # absolute-form (RFC 7230 §5.3.2) -> origin-form
            parts = urlsplit(target)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{self.method} {target} HTTP/1.1\r\n"]
        for name, value in headers.fields:
            if name.lower() not in drop:
                lines.append(f"{name}: {value}\r\n")
        index = headers.index
        forwarded_for = index.get("x-forwarded-for")
        client = self.client_address[0]
        lines.append(
            f"X-Forwarded-For: {', '.join([*forwarded_for, client]) if forwarded_for else client}\r\n"
        )
        if "x-forwarded-host" not in index:
            lines.append(f"X-Forwarded-Host: {headers.get('host') or upstream.address}\r\n")
        if "x-forwarded-proto" not in index:
            lines.append("X-Forwarded-Proto: http\r\n")
        via = index.get("via")
        lines.append(f"Via: {', '.join([*via, VIA])}\r\n" if via else f"Via: {VIA}\r\n")
        if "host" not in index:
            lines.append(f"Host: {upstream.address}\r\n")
        if framing == "length":
            lines.append(f"Content-Length: {length}\r\n")
        elif framing == "chunked":
            lines.append("Transfer-Encoding: chunked\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    def _forward(self, upstream: Upstream, config: RouterConfig, stamps: bytes) -> tuple[int | None, bool]:
        """Send the request to ``upstream`` and relay its answer: ``(status, upstream_error)``."""
        body = b""
        rest: Iterator[bytes] | None = None  # the streamed remainder of a large body
        framing = self.framing
        if framing != "none":
            self._continue()
        if framing == "length":
            if self.length <= SMALL_BODY:
                body = self._read_exactly(self.length)
            else:
                rest = self._client_blocks(iter_length(self.reader, self.length))
        elif framing == "chunked":
            body, rest = self._buffer_chunks(SMALL_BODY)
            if rest is None:
                framing = "length"  # de-chunked: the whole body is here
            else:
                rest = _prepend(body, rest)
                body = b""
        head = self._forward_head(upstream, framing, len(body) if rest is None else self.length)
        replayable = rest is None
        method = self.method
        pool = self.router._pool
        attempt = 0
        while True:
            attempt += 1
            conn, reused = pool.acquire(upstream, config.upstream_timeout)
            sent = False
            small = b""
            try:
                if rest is None:
                    conn.send(head + body if body else head)
                else:
                    conn.send(head)
                    for block in rest:
                        conn.send(chunk(block) if framing == "chunked" else block)
                    if framing == "chunked":
                        conn.send(LAST_CHUNK)
                sent = True
                response = conn.response(method)
                if response.framing == "length" and 0 < response.length <= SMALL_RESPONSE:
                    small = response.read()
            except _ClientGone:
                conn.close()
                raise
            except TimeoutError:
                conn.close()
                self.close_connection = self.close_connection or rest is not None
                problem = f"upstream timed out after {config.upstream_timeout:g} s"
                self._upstream_failed(504, upstream, problem, stamps)
                return 504, True
            except (OSError, MessageError) as exc:
                conn.close()
                if reused and replayable and attempt == 1 and (method in IDEMPOTENT or not sent):
                    continue
                self.close_connection = self.close_connection or rest is not None
                problem = f"upstream connection failed: {type(exc).__name__}: {exc}"
                self._upstream_failed(502, upstream, problem, stamps)
                return 502, True
            break
        return self._relay(upstream, conn, response, small, stamps)

    def _relay(
        self,
        upstream: Upstream,
        conn: UpstreamConnection,
        response: UpstreamResponse,
        small: bytes,
        stamps: bytes,
    ) -> tuple[int | None, bool]:
        """Send ``response`` to the client (streaming its body); pool ``conn`` again when reusable."""
        status = response.status
        headers = response.headers
        drop = _DROP_RESPONSE
        connection = headers.tokens("connection")
        if connection:
            drop = drop | connection
        framing = response.framing
        lines = [f"HTTP/1.1 {status} {response.reason}\r\n"]
        for name, value in headers.fields:
            low = name.lower()
            if low not in drop:
                lines.append(f"{name}: {value}\r\n")
            elif low == "content-length" and framing == "none":
                lines.append(f"{name}: {value}\r\n")  # HEAD/304: describes the body that was not sent
        via = headers.index.get("via")
        lines.append(f"Via: {', '.join([*via, VIA])}\r\n" if via else f"Via: {VIA}\r\n")
        chunked = False
        if framing == "length":
            lines.append(f"Content-Length: {response.length}\r\n")
        elif framing != "none":
            if self.http10:
                self.close_connection = True  # close-delimited
            else:
                chunked = True
                lines.append("Transfer-Encoding: chunked\r\n")
        if self.close_connection:
            lines.append("Connection: close\r\n")
        elif self.http10:
            lines.append("Connection: keep-alive\r\n")
        head = "".join(lines).encode("latin-1") + stamps + b"\r\n"
        sendall = self.connection.sendall
        pooled = False  # the upstream connection is given back as soon as its response is consumed
        try:
            if framing == "none" or small or (framing == "length" and response.length == 0):
                self._record(status)
                pooled = self._give_back(upstream, conn, response)
                sendall(head + small)
            else:
                sendall(head)
                blocks = response.blocks()
                left = response.length if framing == "length" else -1
                while True:
                    try:
                        block = next(blocks, None)
                    except (OSError, MessageError):
                        # the status line is out: cutting the client off is all that is left
                        self._record(status, upstream_error=True)
                        conn.close()
                        self.close_connection = True
                        with contextlib.suppress(OSError):
                            self.connection.shutdown(socket.SHUT_RDWR)
                        return status, True
                    if block is None:
                        break
                    left -= len(block)
                    if left == 0:
                        self._record(status)
                        pooled = self._give_back(upstream, conn, response)
                    sendall(chunk(block) if chunked else block)
                self._record(status)
                if not pooled:
                    pooled = self._give_back(upstream, conn, response)
                if chunked:
                    sendall(LAST_CHUNK)
        except OSError:  # towards the client
            self._record(status)
            if not pooled:
                conn.close()
            self.close_connection = True
        return status, False

    def _give_back(self, upstream: Upstream, conn: UpstreamConnection, response: UpstreamResponse) -> bool:
        """Pool (or close) an upstream connection whose response has been read to the end."""
        if response.will_close:
            conn.close()
        else:
            self.router._pool.release(upstream, conn)
        return True

    def _upstream_failed(self, code: int, upstream: Upstream, error: str, stamps: bytes) -> None:
        self._record(code, upstream_error=True)
        self._send_json(
            code, {"error": error, "upstream": upstream.name, "version": upstream.version}, stamps
        )

    # --- request bodies -------------------------------------------------------------------------------

    def _continue(self) -> None:
        """Answer ``Expect: 100-continue`` before the router starts reading the body."""
        if self.expect_continue:
            self.expect_continue = False
            self.connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_exactly(self, length: int) -> bytes:
        data = self.reader.read(length)
        if len(data) < length:
            raise _ClientGone()
        return data

    def _client_blocks(self, blocks: Iterator[bytes]) -> Iterator[bytes]:
        """Client body blocks; the client's failures become :class:`_ClientGone` (not upstream errors)."""
        try:
            yield from blocks
        except Truncated:
            raise _ClientGone() from None
        except MessageError as exc:
            raise _ClientGone(exc) from None
        except OSError:
            raise _ClientGone() from None

    def _buffer_chunks(self, limit: int) -> tuple[bytes, Iterator[bytes] | None]:
        """Read a chunked body up to ``limit`` bytes: ``(body, None)`` if it ended, else ``(start, rest)``."""
        chunks = self._client_blocks(iter_chunked(self.reader))
        buffered = bytearray()
        for block in chunks:
            buffered += block
            if len(buffered) > limit:
                return bytes(buffered), chunks
        return bytes(buffered), None

    def _discard_body(self) -> None:
        """Drain a request body the router answers itself, or close the connection when it is large."""
        if self.framing == "none":
            return
        if self.expect_continue or (self.framing == "length" and self.length > MAX_DISCARD):
            self.close_connection = True  # the client has not sent the body / it is not worth reading
            return
        if self.framing == "length":
            self._read_exactly(self.length)
            return
        total = 0
        for block in self._client_blocks(iter_chunked(self.reader)):
            total += len(block)
            if total > MAX_DISCARD:
                self.close_connection = True
                return

    def _read_body(self, limit: int) -> bytes:
        if self.framing == "none":
            return b""
        if self.framing == "length" and self.length > limit:
            self.close_connection = True
            raise MessageError(f"body of {self.length} bytes is larger than {limit}")
        self._continue()
        if self.framing == "length":
            return self._read_exactly(self.length)
        body, rest = self._buffer_chunks(limit)
        if rest is not None:
            self.close_connection = True
            raise MessageError(f"body is larger than {limit} bytes")
        return body

    # --- responses the router writes itself -----------------------------------------------------------

    def _send_json(self, status: int, body: object, extra: bytes = b"", *, head_only: bool = False) -> None:
        payload = json.dumps(body, indent=2, sort_keys=True).encode() + b"\n"
        connection = ""
        if self.close_connection:
            connection = "Connection: close\r\n"
        elif self.http10:
            connection = "Connection: keep-alive\r\n"
        head = (
            f"HTTP/1.1 {status} {_phrase(status)}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n"
            "Cache-Control: no-store\r\n"
            f"Via: {VIA}\r\n{connection}"
        ).encode("latin-1")
        try:
            self.connection.sendall(head + extra + b"\r\n" + (b"" if head_only else payload))
        except OSError:
            self.close_connection = True

    # --- admin ----------------------------------------------------------------------------------------

    def _admin(self) -> None:
        router = self.router
        endpoint = urlsplit(self.target).path[len(ADMIN_PREFIX) :].strip("/")
        method = self.method
        allowed = {"health": ("GET", "HEAD"), "stats": ("GET",), "reset": ("POST",), "config": ("GET", "PUT")}
        if endpoint not in allowed:
            self._discard_body()
            endpoints = [ADMIN_PREFIX + e for e in allowed]
            self._send_json(404, {"error": f"no admin endpoint {endpoint!r}", "endpoints": endpoints})
            return
        if method not in allowed[endpoint]:
            self._discard_body()
            error = f"{method} is not allowed on {ADMIN_PREFIX}{endpoint}"
            allow = ", ".join(allowed[endpoint])
            self._send_json(
                405, {"error": error, "allowed": allowed[endpoint]}, f"Allow: {allow}\r\n".encode()
            )
            return
        body = self._read_body(MAX_ADMIN_BODY)
        if endpoint == "health":
            config = router.config
            health = {
                "status": "ok",
                "service": config.service,
                "policy": config.policy,
                "upstreams": [u.name for u in config.upstreams],
                "versions": list(config.versions),
            }
            self._send_json(200, health, head_only=method == "HEAD")
        elif endpoint == "stats":
            self._send_json(200, router.stats())
        elif endpoint == "reset":
            router.reset()
            self._send_json(200, {"status": "reset"})
        elif method == "GET":
            self._send_json(200, router.config.as_dict())
        else:
            try:
                changes = json.loads(body or b"null")
            except ValueError as exc:
                self._send_json(400, {"error": f"body is not JSON: {exc}"})
                return
            try:
                config = router.update(changes)
            except RouterConfigError as exc:
                self._send_json(400, exc.as_json())
                return
            self._send_json(200, config.as_dict())


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _cookie(headers: list[str], name: str) -> str | None:
    """The value of cookie ``name`` in the ``Cookie`` header(s), without the slow ``http.cookies`` parser."""
    for header in headers:
        for pair in header.split(";"):
            key, sep, value = pair.partition("=")
            if sep and key.strip() == name:
                return value.strip().strip('"')
    return None


class Router:
    """A mixing reverse proxy, served from a background thread (``start``/``stop`` or a ``with`` block).

    >>> with Router({"upstreams": [...], "policy": "yoyo"}) as router:   # doctest: +SKIP
    ...     requests.get(router.url + "/orders")

    ``stats()``, ``reset()`` and ``update()`` may be called from any thread.
    """

    def __init__(self, config: RouterConfig | Mapping[str, Any], *, access_log: bool = False) -> None:
        self._config = config if isinstance(config, RouterConfig) else RouterConfig.from_dict(config)
        self._choice_lock = threading.Lock()  # policies and fault dice are not thread-safe
        self._config_lock = threading.Lock()
        self._state = _state(self._config)
        self._pool = _Pool()
        self._stats = Stats()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.access_log = access_log

    @property
    def config(self) -> RouterConfig:
        return self._config

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port) and serve in a daemon thread; returns the address.

        Raises ``OSError`` when the address cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError(f"router already listening on {self.url}")
        self._server = _Server((host, port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="compat-router",
            daemon=True,
        )
        self._thread.start()
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("router is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, cut off connected clients, close pooled upstream connections."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.disconnect_clients()
        if thread is not None:
            thread.join(timeout)
        deadline = time.monotonic() + timeout
        while server.clients and time.monotonic() < deadline:
            time.sleep(0.01)
        self._pool.close()
        self._pool = _Pool()

    def __enter__(self) -> Router:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        """Counters per version and per instance (see :mod:`compat.router.stats`)."""
        snapshot = self._stats.snapshot()
        snapshot["policy"] = self._config.policy
        snapshot["seed"] = self._config.seed
        return snapshot

    def reset(self) -> None:
        """Clear the counters and restart the policy, session and fault state from the seed."""
        with self._config_lock:
            self._state = _state(self._config)
            self._stats.reset()

    def update(self, changes: object = None, **more: Any) -> RouterConfig:
        """Replace top-level config keys (policy, weights, faults, seed, upstreams …), validated as a whole.

        Policy, session and fault state restart from the seed; counters are kept. Raises
        :class:`RouterConfigError` (and changes nothing) on bad input.
        """
        if changes is None:
            changes = {}
        if more:
            if not isinstance(changes, Mapping):
                raise RouterConfigError("", changes, "is not an object", "give a JSON object of config keys")
            changes = {**changes, **more}
        with self._config_lock:
            config = self._config.updated(changes)
            self._config = config
            self._state = _state(config)
        self._pool.retain(config.upstreams)
        return config
