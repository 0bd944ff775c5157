"""The canary check: the judgement (pure), the bake (against a local server), and whole stages.

The stage tests run the bundled example's onebox with the session's own bake: first on the process runtime
(fast, no Docker), then on Docker (marker ``docker``), where the issue asks for them.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from compat.checks._openapi import load_spec
from compat.checks.canary import (
    SESSION_KEYS,
    Bake,
    BakeTarget,
    Tally,
    Thresholds,
    judge,
    one_sided_z_test,
    read_stats,
    run_canary,
    safe_paths,
)
from compat.checks.context import StageContext
from compat.config.model import Config
from compat.errors import InfrastructureError
from compat.session import CompatSession, Options, resolve_config
from tests.conftest import REPO

DEFAULTS = Thresholds(max_p99_ratio=1.5, p99_slack_ms=50.0)  # tighter than the defaults, for the edges


# --- the judgement --------------------------------------------------------------------------------------


def test_twenty_percent_errors_against_none_over_200_requests_fails() -> None:
    verdict = judge(Tally("v1", 100, 0, p99_ms=5), Tally("v2", 100, 20, p99_ms=5), DEFAULTS)
    assert verdict.inconclusive is None
    assert [b.rule for b in verdict.breaches] == ["error-rate"]
    breach = verdict.breaches[0]
    assert breach.actual.startswith("20.0% (20 of 100) vs baseline 0.0% (0 of 100)")
    assert breach.expected.startswith("5xx rate <= 0.0% + 2.0 points")
    assert verdict.p_value is not None
    assert verdict.p_value < 1e-4


def test_one_error_in_a_hundred_passes() -> None:
    verdict = judge(Tally("v1", 100, 0, p99_ms=5), Tally("v2", 100, 1, p99_ms=5), DEFAULTS)
    assert (verdict.breaches, verdict.inconclusive) == ((), None)


def test_an_increase_above_the_threshold_that_is_not_significant_passes_with_a_note() -> None:
    # 6 points more, but 3 errors in 50 is within chance (one-sided p ~ 0.04 > 0.01)
    verdict = judge(Tally("v1", 50, 0), Tally("v2", 50, 3), DEFAULTS)
    assert verdict.breaches == ()
    assert verdict.p_value is not None
    assert 0.01 < verdict.p_value < 0.1
    assert any("not significantly" in n for n in verdict.notes)


def test_a_significant_increase_below_the_threshold_passes() -> None:
    verdict = judge(Tally("v1", 100_000, 0), Tally("v2", 100_000, 1_000), DEFAULTS)  # +1 point, p ~ 0
    assert verdict.p_value is not None
    assert verdict.p_value < 1e-9
    assert verdict.breaches == ()


def test_z_test_matches_the_normal_distribution() -> None:
    z, p = one_sided_z_test(20, 100, 5, 100)
    pooled = 25 / 200
    expected_z = (0.20 - 0.05) / (pooled * (1 - pooled) * (2 / 100)) ** 0.5
    assert z == pytest.approx(expected_z)
    assert p == pytest.approx(1 - statistics.NormalDist().cdf(expected_z))
    assert one_sided_z_test(0, 100, 0, 100) == (0.0, 1.0)  # nothing failed: no evidence
    assert one_sided_z_test(100, 100, 100, 100) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("baseline", "candidate", "fails"),
    [
        (10.0, 100.0, True),  # 10x and +90 ms
        (5.0, 40.0, False),  # 8x, but only +35 ms: within the slack
        (150.0, 200.0, False),  # +50 ms but only 1.33x
        (150.0, 260.0, True),  # 1.73x and +110 ms
    ],
)
def test_latency_rule_needs_both_the_ratio_and_the_slack(
    baseline: float, candidate: float, fails: bool
) -> None:
    verdict = judge(Tally("v1", 200, 0, p99_ms=baseline), Tally("v2", 100, 0, p99_ms=candidate), DEFAULTS)
    assert [b.rule for b in verdict.breaches] == (["latency-p99"] if fails else [])
    if fails:
        assert f"vs baseline {baseline:.1f} ms" in verdict.breaches[0].actual


def test_below_min_requests_is_inconclusive_never_pass() -> None:
    verdict = judge(Tally("v1", 398, 0), Tally("v2", 49, 40), DEFAULTS)
    assert verdict.breaches == ()
    assert verdict.inconclusive is not None
    assert "v1: 398, v2: 49" in verdict.inconclusive
    assert "min_requests = 50" in verdict.inconclusive
    assert judge(Tally("v1", 0, 0), Tally("v2", 0, 0), DEFAULTS).inconclusive


def test_tally_from_router_stats_does_not_count_a_router_502_twice() -> None:
    stats = {
        "requests": 100,
        "status": {"2xx": 90, "5xx": 7},  # 5 app/fault 5xx + 2 router-written 502
        "upstream_errors": 3,  # the two 502s + one response cut after its 200 head
        "faults": {"drop": 3, "error": 4, "delay": 0},
        "latency_ms": {"p50": 1.5, "p99": 9.0},
    }
    tally = Tally.from_stats("v2", stats)
    assert (tally.failures, tally.p99_ms, tally.p50_ms) == (7 + 3 + 0, 9.0, 1.5)
    assert Tally.from_stats("v3", None).requests == 0


def test_safe_paths_of_the_example_and_of_required_parameters() -> None:
    spec = load_spec(REPO / "fixtures" / "orders" / "openapi" / "v1.yaml")
    assert safe_paths(spec, "/health") == ("/health", "/orders")  # /orders/{id} needs a parameter
    doc = {
        "openapi": "3.0.3",
        "paths": {
            "/a": {"get": {"parameters": [{"$ref": "#/components/parameters/q"}]}},
            "/b": {"parameters": [{"name": "x", "in": "header", "required": True}], "get": {}},
            "/c": {"get": {"parameters": [{"name": "q", "in": "query"}]}},
            "/d": {"post": {}},
            "/e/{id}": {"get": {}},
        },
        "components": {"parameters": {"q": {"name": "q", "in": "query", "required": True}}},
    }
    assert safe_paths(doc, "/healthz") == ("/c", "/healthz")
    assert safe_paths(None, "/health") == ("/health",)


# --- the bake against a local server ---------------------------------------------------------------------


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[float, str, str | None, str | None]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle stalls

    def do_GET(self) -> None:
        server: Any = self.server
        with server.lock:
            server.seen.append(
                (
                    time.monotonic(),
                    self.path,
                    self.headers.get("X-Compat-Session"),
                    self.headers.get("X-Compat-Bake"),
                )
            )
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Compat-Version", "v9")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Recorder]:
    srv = _Recorder()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def test_bake_paces_rotates_session_keys_and_paths(server: _Recorder) -> None:
    bake = Bake([BakeTarget("svc", server.url, ("/a", "/b"))], rate=50)
    with bake:
        assert bake.wait(1.0, 40, timeout=10)
        elapsed = bake.elapsed()
        sent = bake.sent["svc"]
    assert bake.errors == {"svc": 0}
    assert elapsed >= 1.0
    assert 40 <= sent <= 50 * elapsed + 2  # never faster than the rate (a busy machine may be slower)
    seen = list(server.seen)
    assert len(seen) == bake.sent["svc"]  # every request arrived, none after stop
    keys = [s[2] for s in seen]
    assert keys[:20] == [*SESSION_KEYS, *SESSION_KEYS[:4]]
    assert [s[1] for s in seen[:4]] == ["/a", "/b", "/a", "/b"]
    assert {s[3] for s in seen} == {"1"}
    assert bake.summary()["services"]["svc"]["answers"] == {"v9 2xx": sent}


def test_stop_joins_is_idempotent_and_wakes_waiters(server: _Recorder) -> None:
    bake = Bake([BakeTarget("svc", server.url, ("/a",))], rate=20).start()
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(bake.wait(0, 10**9, timeout=60)))
    waiter.start()
    assert bake.wait(0, 2, timeout=5)
    started = time.monotonic()
    bake.stop()
    bake.stop()
    waiter.join(5)
    assert time.monotonic() - started < 5  # woken by stop(), not by the timeout
    assert outcome == [False]
    assert not waiter.is_alive()
    assert not any(t.name.startswith("compat-bake-") for t in threading.enumerate())
    count = len(server.seen)
    started = time.monotonic()
    assert not bake.wait(0, 10**9, timeout=5)  # a stopped bake never gets there: no waiting
    assert time.monotonic() - started < 3  # returns at once, not after the timeout
    assert len(server.seen) == count


def test_wait_times_out_without_busy_waiting(server: _Recorder) -> None:
    with Bake([BakeTarget("svc", server.url, ("/a",))], rate=5) as bake:
        started = time.process_time(), time.monotonic()
        assert not bake.wait(0, 1000, timeout=0.5)
        cpu, wall = time.process_time() - started[0], time.monotonic() - started[1]
    assert wall >= 0.5
    assert cpu < 0.3  # blocked on a condition, not spinning


def test_connection_errors_are_counted_not_raised() -> None:
    with _Recorder() as dead:
        url = dead.url  # closed on leaving: nothing listens there any more
    with Bake([BakeTarget("svc", url, ("/a",))], rate=50) as bake:
        assert bake.wait(0, 5, timeout=10)
    assert bake.errors["svc"] == bake.sent["svc"] >= 5
    assert "ConnectionError" in str(bake.summary()["services"]["svc"]["last_error"])


def test_unreadable_router_stats_are_an_infrastructure_error(server: _Recorder) -> None:
    with _Recorder() as dead:
        url = dead.url
    with pytest.raises(InfrastructureError, match="cannot read the router's stats"):
        read_stats(url)
    with pytest.raises(InfrastructureError, match="no per-version counters"):
        read_stats(server.url)  # answers 200 with JSON that is not the router's


# --- whole stages ---------------------------------------------------------------------------------------


def _config(
    runtime: str, candidate: str, faults: dict[str, dict[str, float]], policy: str = "yoyo", **canary: Any
) -> Config:
    opts = Options(config=REPO / "compat.toml", candidates={"orders": candidate}, runtime=runtime)
    config = resolve_config(REPO, opts)
    stage = replace(config.stages["onebox"], services=("orders",), faults=faults, policy=policy)
    return _canary_options(replace(config, stages={**config.stages, "onebox": stage}), **canary)


def _canary_options(config: Config, **canary: Any) -> Config:
    settings = config.checks.get("canary")
    options = {**settings.options, **canary}
    checks = replace(
        config.checks, settings={**config.checks.settings, "canary": replace(settings, options=options)}
    )
    return replace(config, checks=checks)


@contextmanager
def onebox(
    runtime: str, candidate: str = "v2", faults: dict[str, Any] | None = None, **canary: Any
) -> Iterator[StageContext]:
    """The example's onebox with only ``orders`` under change; the session starts the bake."""
    options = {"bake_seconds": 2.0, "bake_requests": 100, "rate": 60.0, **canary}
    config = _config(runtime, candidate, faults or {}, **options)
    opts = Options(config=REPO / "compat.toml", runtime=runtime, stages=("onebox",))
    session = CompatSession(config, opts, echo=lambda s: None)
    try:
        run = next(r for r in session.runs() if r.id == "onebox")
        yield session.stage_context(run)
    finally:
        session.close()


def _with_options(ctx: StageContext, **canary: Any) -> StageContext:
    return replace(ctx, config=_canary_options(ctx.config, **canary))


def _faulted(runtime: str) -> None:
    with onebox(runtime, faults={"candidate": {"error_rate": 0.2}}) as ctx:
        assert isinstance(ctx.bake, Bake)
        assert ctx.bake.running
        started = time.monotonic()
        result = run_canary(ctx, "orders")
        took = time.monotonic() - started
    assert result.inconclusive is None, result.inconclusive
    assert [f.rule for f in result.findings] == ["error-rate"], [f.render() for f in result.findings]
    finding = result.findings[0]
    assert (finding.check, finding.level, finding.stage) == ("canary", "ERR", "onebox")
    assert finding.expected is not None
    assert finding.expected.startswith("5xx rate <= 0.0% + 2.0 points")
    assert finding.actual is not None
    assert "vs baseline 0.0%" in finding.actual
    assert "orders-v2-0" in finding.message
    assert finding.curl is not None
    assert "/_compat/router/stats" in finding.curl
    details = finding.details
    assert details["candidate"]["requests"] >= 50
    assert details["baseline"]["failures"] == 0
    assert details["router_stats"]["versions"]["v2"]["faults"]["error"] == details["candidate"]["failures"]
    rate = result.metrics["versions"]["v2"]["error_rate"]
    assert 0.08 < rate < 0.4
    assert took < 15
    print(f"{runtime} faulted: {result.metrics} in {took:.1f} s")


def _compatible(runtime: str) -> None:
    with onebox(runtime) as ctx:
        result = run_canary(ctx, "orders")
        assert result.inconclusive is None
        assert result.findings == [], [f.render() for f in result.findings]
        versions = result.metrics["versions"]
        assert versions["v1"]["requests"] >= 50
        assert versions["v2"]["requests"] >= 50
        assert versions["v2"]["error_rate"] == 0
        assert versions["v2"]["p99_ms"] is not None
        assert result.metrics["bake"]["services"]["orders"]["sent"] >= 100
        print(f"{runtime} compatible: {result.metrics}")
        # the same stage cannot be judged when the options ask for far more traffic than there is
        started = time.monotonic()
        starved = run_canary(_with_options(ctx, min_requests=100_000), "orders")
        assert time.monotonic() - started < 5  # it sees at once the bake cannot get there in time
    assert starved.findings == []
    assert starved.inconclusive is not None
    assert "min_requests = 100000" in starved.inconclusive


def test_process_onebox_faulted_candidate_fails_error_rate() -> None:
    _faulted("process")


def test_process_onebox_compatible_candidate_passes_and_starved_is_inconclusive() -> None:
    _compatible("process")


def test_a_short_version_is_topped_up_by_the_running_bake() -> None:
    # round-robin over 2 x v1 + 1 x v2: the first 30 bake requests give v2 only 10
    with onebox("process", policy="round-robin", bake_seconds=0.2, bake_requests=30, min_requests=40) as ctx:
        result = run_canary(ctx, "orders")
    assert result.inconclusive is None, result.inconclusive
    versions = result.metrics["versions"]
    assert versions["v2"]["requests"] >= 40
    assert versions["v1"]["requests"] >= 2 * 40 - 2
    print(f"topped up: {versions} after {result.metrics['waited_s']} s")


def test_no_router_is_inconclusive() -> None:
    config = _config("process", "v2", {})
    opts = Options(config=REPO / "compat.toml", runtime="process", stages=("zeta",))
    session = CompatSession(config, opts, echo=lambda s: None)
    try:
        run = next(r for r in session.runs() if r.id == "zeta")
        ctx = session.stage_context(run)
        assert ctx.bake is None
        result = run_canary(ctx, "web")
    finally:
        session.close()
    assert result.findings == []
    assert result.inconclusive is not None
    assert "no router in front of web" in result.inconclusive


def test_no_bake_when_the_options_ask_for_none() -> None:
    config = _config("process", "v2", {}, bake_seconds=0.0, bake_requests=0, min_requests=100_000)
    opts = Options(config=REPO / "compat.toml", runtime="process", stages=("onebox",))
    session = CompatSession(config, opts, echo=lambda s: None)
    try:
        run = next(r for r in session.runs() if r.id == "onebox")
        ctx = session.stage_context(run)
        assert ctx.bake is None
        result = run_canary(ctx, "orders")
    finally:
        session.close()
    assert result.inconclusive is not None
    assert "v1: 0, v2: 0" in result.inconclusive


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_docker_onebox_faulted_candidate_fails_error_rate(docker_client: Any) -> None:
    _faulted("docker")


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_docker_onebox_compatible_candidate_passes_and_starved_is_inconclusive(docker_client: Any) -> None:
    _compatible("docker")


def test_the_judgements_defaults_are_the_configs() -> None:
    from compat.config.checks import CHECK_OPTIONS

    options = CHECK_OPTIONS["canary"]
    defaults = Thresholds()
    for name in ("max_error_rate_increase", "max_p99_ratio", "p99_slack_ms", "min_requests"):
        assert getattr(defaults, name) == options[name].default, name
