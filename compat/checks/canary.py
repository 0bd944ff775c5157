"""The ``canary`` check: background traffic (the *bake*) through a mixed stage, then a statistical verdict.

Bake
    When a mixed stage's topology starts, the session starts a :class:`Bake` (see :func:`bake_for`): one
    daemon thread per service under change sends safe requests through that service's router at ``rate``
    requests per second — every ``GET`` of the service's *baseline* spec that needs no path parameter and no
    required parameter of any kind, plus the health path — round-robin, on a keep-alive session. Each
    request carries ``X-Compat-Bake: 1`` and an ``X-Compat-Session`` key from a pool of 16
    (``compat-bake-0`` .. ``compat-bake-15``, one after another), so the router's policy spreads the bake
    over the versions (yoyo alternates per key, sticky pins each key) without moving the router's anonymous
    rotation that the stage's own tests may depend on. Pacing is a fixed schedule (request *n* is due at
    ``start + n / rate``; a thread that fell more than a second behind restarts its schedule instead of
    bursting); waiting is on the stop :class:`threading.Event`, so ``stop()`` interrupts it at once. The
    bake never raises: connection errors and timeouts are counted.

Verdict
    :func:`run_canary` runs last in its stage run. It waits (on a condition variable, never polling) until
    the bake has run ``bake_seconds`` and sent ``bake_requests`` per service, reads the router's counters
    (``GET /_compat/router/stats``: everything the router saw in this stage — bake, the stage's tests and
    the other checks — as a real canary judges all traffic), and compares the candidate version with the
    baseline version:

    * **error-rate** — a version's failure rate is ``(5xx + dropped + upstream errors that are not 5xx) /
      requests``. The router counts a 502/504 it writes for a failed upstream both as ``5xx`` and as an
      upstream error, so the errors not already among the 5xx are estimated as ``max(0, upstream_errors -
      5xx)``. The candidate fails when its rate exceeds the baseline's by more than
      ``max_error_rate_increase`` *and* the excess is significant: a one-sided two-proportion z-test with a
      pooled proportion, ``z = (p_c - p_b) / sqrt(p (1 - p) (1/n_c + 1/n_b))``, ``p-value = 1 - Phi(z) =
      erfc(z / sqrt 2) / 2``, significant below :data:`ALPHA` (0.01). The normal approximation is rough
      for a handful of errors; the threshold on the difference keeps it from failing on one stray 500.
    * **latency-p99** — the candidate fails when its p99 exceeds ``max_p99_ratio`` times the baseline's
      *and* the gap is more than ``p99_slack_ms`` (a few ms of jitter on a 2 ms p99 is not a regression).
      It is judged only with at least :data:`MIN_LATENCY_SAMPLES` timed requests per version: below that,
      a nearest-rank p99 is the single slowest request, and one stall on a busy machine would decide.

    Fewer than ``min_requests`` for either version is INCONCLUSIVE (the reason names the counts and the
    option), never PASS. When the bake is still running and a version is short, the check lets the bake top
    it up, if the observed share of that version says it can within the timeout. A stage without a router in
    front of the service is INCONCLUSIVE; a router whose stats cannot be read is an
    :class:`~compat.errors.InfrastructureError` (never a pass).

The judgement itself (:func:`judge`) is a pure function of two :class:`Tally` and :class:`Thresholds`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

from compat.checks.context import StageContext, TaskResult
from compat.checks.finding import Finding, to_curl
from compat.config.checks import CHECK_OPTIONS
from compat.errors import InfrastructureError
from compat.router.config import DEFAULT_SESSION_HEADER as SESSION_HEADER

if TYPE_CHECKING:
    import requests

    from compat.config.model import Config
    from compat.topology.builder import StageRun
    from compat.topology.model import Topology

CHECK = "canary"
BAKE_HEADER = "X-Compat-Bake"
SESSION_KEYS = tuple(f"compat-bake-{i}" for i in range(16))
STATS_PATH = "/_compat/router/stats"
ALPHA = 0.01  # one-sided significance level of the error-rate test
REQUEST_TIMEOUT = 5.0  # per bake request; a slower answer counts as an error
MAX_LAG = 1.0  # seconds a bake thread may fall behind its schedule before it restarts the schedule
STATS_TIMEOUT = 10.0


# --- the bake -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BakeTarget:
    """Where one service's background traffic goes: its router and the paths sent round-robin."""

    service: str
    url: str
    paths: tuple[str, ...]


def safe_paths(spec: Mapping[str, Any] | None, health: str | None = None) -> tuple[str, ...]:
    """``GET`` paths of an OpenAPI document that need no input: no path template, no required parameter
    (path-level or operation-level, ``$ref``s followed), in document order; then ``health`` if not listed."""
    from compat.checks._openapi import Resolver

    found: list[str] = []
    paths = spec.get("paths") if isinstance(spec, Mapping) else None
    if isinstance(paths, Mapping):
        resolver = Resolver(spec or {}, "spec")
        for path, item in paths.items():
            item = resolver.deref(item)
            if not isinstance(path, str) or "{" in path or not isinstance(item, Mapping):
                continue
            operation = resolver.deref(item.get("get"))
            if not isinstance(operation, Mapping):
                continue
            params = [*(item.get("parameters") or ()), *(operation.get("parameters") or ())]
            if any(_required(resolver.deref(p)) for p in params):
                continue
            found.append(path)
    if health and health not in found:
        found.append(health)
    return tuple(found)


def _required(param: object) -> bool:
    return isinstance(param, Mapping) and (param.get("in") == "path" or param.get("required") is True)


@dataclass
class _Counts:
    sent: int = 0
    errors: int = 0
    status: dict[str, int] = field(default_factory=dict)  # "v2 5xx" -> n, from the router's stamp
    last_error: str | None = None


class Bake:
    """Background traffic through the routers of a mixed stage; see the module docstring.

    ``start()`` once, ``stop()`` any number of times (it joins the threads); ``wait()`` blocks until the bake
    has run long enough. Usable as a context manager.
    """

    def __init__(
        self,
        targets: Sequence[BakeTarget],
        *,
        rate: float,
        timeout: float = REQUEST_TIMEOUT,
        stage: str = "",
    ) -> None:
        if rate <= 0:
            raise ValueError(f"bake rate must be positive, not {rate!r}")
        self.targets = tuple(t for t in targets if t.paths)
        self.rate = float(rate)
        self.timeout = timeout
        self.stage = stage
        self.started_at: float | None = None  # time.monotonic() at start()
        self._counts = {t.service: _Counts() for t in self.targets}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle

    def start(self) -> Bake:
        with self._cond:
            if self.started_at is not None:
                return self
            self.started_at = time.monotonic()
        for target in self.targets:
            thread = threading.Thread(
                target=self._run, args=(target,), name=f"compat-bake-{target.service}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self) -> None:
        """Stop sending and join the threads (each finishes at most its request in flight). Idempotent."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(self.timeout + 5.0)

    @property
    def running(self) -> bool:
        return self.started_at is not None and not self._stop.is_set()

    def __enter__(self) -> Bake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what it did

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(self._counts)

    @property
    def sent(self) -> dict[str, int]:
        with self._cond:
            return {s: c.sent for s, c in self._counts.items()}

    @property
    def errors(self) -> dict[str, int]:
        """Requests per service that got no answer (connection error, drop, timeout)."""
        with self._cond:
            return {s: c.errors for s, c in self._counts.items()}

    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    def summary(self, service: str | None = None) -> dict[str, Any]:
        """Client-side view for reports: requests sent, errors, answers by version and status class."""
        with self._cond:
            counts = {s: c for s, c in self._counts.items() if service is None or s == service}
            return {
                "rate": self.rate,
                "seconds": round(self.elapsed(), 3),
                "services": {
                    s: {
                        "sent": c.sent,
                        "errors": c.errors,
                        "answers": dict(sorted(c.status.items())),
                        "last_error": c.last_error,
                        "paths": list(next(t.paths for t in self.targets if t.service == s)),
                    }
                    for s, c in counts.items()
                },
            }

    def wait(
        self, min_seconds: float, min_requests: int, timeout: float, *, service: str | None = None
    ) -> bool:
        """Block until the bake has run ``min_seconds`` and sent ``min_requests`` to every service (or to
        ``service``); ``False`` when ``timeout`` passes first or the bake is not running."""
        deadline = time.monotonic() + timeout
        names = [service] if service is not None else list(self._counts)
        with self._cond:
            while True:
                elapsed = self.elapsed()
                enough = all(n in self._counts and self._counts[n].sent >= min_requests for n in names)
                if self.started_at is not None and elapsed >= min_seconds and enough:
                    return True
                if not self.running:
                    return False
                now = time.monotonic()
                if now >= deadline:
                    return False
                wake = deadline - now
                if elapsed < min_seconds:
                    wake = min(wake, min_seconds - elapsed)
                self._cond.wait(wake)

    # -- the sender

    def _run(self, target: BakeTarget) -> None:
        import requests

        http = requests.Session()
        http.headers[BAKE_HEADER] = "1"
        base = target.url.rstrip("/")
        counts = self._counts[target.service]
        interval = 1.0 / self.rate
        origin = time.monotonic()
        n = 0
        try:
            while not self._stop.is_set():
                due = origin + n * interval
                now = time.monotonic()
                if due - now > 0:
                    if self._stop.wait(due - now):
                        break
                elif now - due > MAX_LAG:
                    origin, n = now, 0  # fell far behind (slow answers): no burst to catch up
                path = target.paths[n % len(target.paths)]
                key = SESSION_KEYS[n % len(SESSION_KEYS)]
                n += 1
                outcome, error = self._send(http, base + path, key)
                with self._cond:
                    counts.sent += 1
                    if error is not None:
                        counts.errors += 1
                        counts.last_error = error
                    else:
                        counts.status[outcome] = counts.status.get(outcome, 0) + 1
                    self._cond.notify_all()
        except Exception as exc:  # never raise in a background thread; say why it ended
            with self._cond:
                counts.last_error = f"bake thread ended: {type(exc).__name__}: {exc}"
                self._cond.notify_all()
        finally:
            http.close()

    def _send(self, http: requests.Session, url: str, key: str) -> tuple[str, str | None]:
        import requests

        try:
            with http.get(url, headers={SESSION_HEADER: key}, timeout=self.timeout, stream=True) as answer:
                for _ in answer.iter_content(64 * 1024):
                    pass  # read the body so the connection is reused
                version = answer.headers.get("X-Compat-Version", "?")
                return f"{version} {answer.status_code // 100}xx", None
        except requests.RequestException as exc:
            return "", f"{type(exc).__name__}: {exc}"[:300]


def bake_targets(config: Config, run: StageRun, topology: Topology) -> list[BakeTarget]:
    """The routers of the services under change in ``run`` and the safe paths of each."""
    from compat.checks._openapi import load_spec
    from compat.errors import ConfigError

    subjects = run.services or ((run.subject,) if run.subject else ())
    if not subjects:
        subjects = tuple(n for n, s in config.services.items() if s.candidate is not None)
    targets = []
    for name in subjects:
        svc = config.services.get(name)
        routers = topology.select(name, role="router")
        if svc is None or not routers:
            continue
        spec = None
        path = svc.baseline_version.spec
        if path is not None:
            try:
                spec = load_spec(path)
            except ConfigError:
                spec = None  # spec-diff reports a broken spec; the bake still has the health path
        paths = safe_paths(spec, svc.health)
        if paths:
            targets.append(BakeTarget(service=name, url=routers[0].url, paths=paths))
    return targets


def bake_for(config: Config, run: StageRun, topology: Topology) -> Bake | None:
    """The (not yet started) bake of a stage run, or None when no service under change has a router here
    or the options ask for no bake (``bake_seconds = 0`` and ``bake_requests = 0``)."""
    options: Mapping[str, Any] = config.checks.get(CHECK).options
    seconds = float(options["bake_seconds"])
    count = int(options["bake_requests"])
    if seconds <= 0 and count <= 0:
        return None
    targets = bake_targets(config, run, topology)
    if not targets:
        return None
    return Bake(targets, rate=float(options["rate"]), stage=run.id)


_DEFAULTS = CHECK_OPTIONS[CHECK]

#: below this many timed requests per version, p99 is the single slowest request: not judged
MIN_LATENCY_SAMPLES = 100


# --- the judgement ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """What the router counted for one version."""

    version: str
    requests: int
    failures: int  # 5xx + drops + upstream errors that are not 5xx
    p99_ms: float | None = None
    p50_ms: float | None = None
    status_5xx: int = 0
    drops: int = 0
    upstream_errors: int = 0
    timed: int | None = None  # latency samples behind p99 (None: not known, judged anyway)

    @property
    def rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def describe(self) -> str:
        return f"{self.rate:.1%} ({self.failures} of {self.requests})"

    @classmethod
    def from_stats(cls, version: str, stats: Mapping[str, Any] | None) -> Tally:
        """A version's entry of the router's ``/stats`` (``None``: the router never chose that version)."""
        if not stats:
            return cls(version=version, requests=0, failures=0)
        requests_ = int(stats.get("requests", 0))
        five = int((stats.get("status") or {}).get("5xx", 0))
        upstream = int(stats.get("upstream_errors", 0))
        drops = int((stats.get("faults") or {}).get("drop", 0))
        latency = stats.get("latency_ms") or {}
        return cls(
            version=version,
            requests=requests_,
            failures=min(requests_, five + drops + max(0, upstream - five)),
            p99_ms=_float(latency.get("p99")),
            p50_ms=_float(latency.get("p50")),
            status_5xx=five,
            drops=drops,
            upstream_errors=upstream,
        )


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


@dataclass(frozen=True)
class Thresholds:
    """The limits of the judgement; the defaults are ``[checks.canary]``'s (compat/config/checks.py)."""

    max_error_rate_increase: float = cast(float, _DEFAULTS["max_error_rate_increase"].default)
    max_p99_ratio: float = cast(float, _DEFAULTS["max_p99_ratio"].default)
    p99_slack_ms: float = cast(float, _DEFAULTS["p99_slack_ms"].default)
    min_requests: int = cast(int, _DEFAULTS["min_requests"].default)
    alpha: float = ALPHA

    @classmethod
    def from_options(cls, ctx: StageContext) -> Thresholds:
        def opt(name: str) -> Any:
            return ctx.option(CHECK, name)

        return cls(
            max_error_rate_increase=float(opt("max_error_rate_increase")),
            max_p99_ratio=float(opt("max_p99_ratio")),
            p99_slack_ms=float(opt("p99_slack_ms")),
            min_requests=int(opt("min_requests")),
        )


@dataclass(frozen=True)
class Breach:
    """One rule the candidate broke."""

    rule: str  # "error-rate" | "latency-p99"
    message: str
    expected: str
    actual: str


@dataclass(frozen=True)
class Judgement:
    breaches: tuple[Breach, ...] = ()
    inconclusive: str | None = None
    z: float | None = None
    p_value: float | None = None
    notes: tuple[str, ...] = ()


def one_sided_z_test(failures_a: int, n_a: int, failures_b: int, n_b: int) -> tuple[float, float]:
    """``(z, p)`` for H1 "A's failure proportion is greater than B's" (pooled two-proportion z-test).

    ``p = 1 - Phi(z)`` with ``Phi`` the standard normal CDF (``erfc`` from :mod:`math`). When both samples
    have the same all-or-nothing outcome there is no evidence of a difference: ``(0, 1)``.
    """
    if n_a <= 0 or n_b <= 0:
        return 0.0, 1.0
    pooled = (failures_a + failures_b) / (n_a + n_b)
    variance = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
    if variance <= 0:
        return 0.0, 1.0
    z = (failures_a / n_a - failures_b / n_b) / math.sqrt(variance)
    return z, 0.5 * math.erfc(z / math.sqrt(2))


def judge(baseline: Tally, candidate: Tally, thresholds: Thresholds) -> Judgement:
    """Compare the candidate's error rate and p99 with the baseline's (see the module docstring)."""
    t = thresholds
    short = [x for x in (baseline, candidate) if x.requests < t.min_requests]
    if short:
        counts = ", ".join(f"{x.version}: {x.requests}" for x in (baseline, candidate))
        return Judgement(
            inconclusive=(
                f"too little traffic to judge: {counts} requests, fewer than min_requests = "
                f"{t.min_requests} for {', '.join(x.version for x in short)}; send more traffic "
                "(bake_seconds, bake_requests, rate) or lower [checks.canary] min_requests"
            )
        )
    breaches = []
    notes = []
    z, p = one_sided_z_test(candidate.failures, candidate.requests, baseline.failures, baseline.requests)
    increase = candidate.rate - baseline.rate
    if increase > t.max_error_rate_increase and p < t.alpha:
        breaches.append(
            Breach(
                rule="error-rate",
                message=(
                    f"candidate {candidate.version} fails {candidate.describe()} of its requests, baseline "
                    f"{baseline.version} {baseline.describe()}: +{increase * 100:.1f} points "
                    f"(allowed +{t.max_error_rate_increase * 100:.1f}; one-sided z = {z:.2f}, "
                    f"p = {p:.2g} < {t.alpha:g})"
                ),
                expected=(
                    f"5xx rate <= {baseline.rate:.1%} + {t.max_error_rate_increase * 100:.1f} points "
                    f"(or a difference not significant at p < {t.alpha:g})"
                ),
                actual=(
                    f"{candidate.describe()} vs baseline {baseline.describe()} (z = {z:.2f}, p = {p:.2g})"
                ),
            )
        )
    elif increase > t.max_error_rate_increase:
        notes.append(
            f"candidate error rate {candidate.describe()} exceeds the baseline's {baseline.describe()} by "
            f"more than {t.max_error_rate_increase * 100:.1f} points, but not significantly "
            f"(p = {p:.2g} >= {t.alpha:g}); more traffic would tell"
        )
    cp, bp = candidate.p99_ms, baseline.p99_ms
    few = [x for x in (baseline, candidate) if x.timed is not None and x.timed < MIN_LATENCY_SAMPLES]
    if cp is None or bp is None:
        notes.append("latency not judged: the router has no latency sample for one of the versions")
    elif few:
        notes.append(
            "latency not judged: a p99 of fewer than "
            f"{MIN_LATENCY_SAMPLES} samples is just the slowest request ("
            + ", ".join(f"{x.version}: {x.timed}" for x in few)
            + "); raise [checks.canary] bake_requests"
        )
    elif cp > bp * t.max_p99_ratio and cp - bp > t.p99_slack_ms:
        ratio = f"{cp / bp:.2f}x" if bp > 0 else "far above"
        allowed = max(bp * t.max_p99_ratio, bp + t.p99_slack_ms)
        breaches.append(
            Breach(
                rule="latency-p99",
                message=(
                    f"candidate {candidate.version} p99 latency {cp:.1f} ms is {ratio} "
                    f"baseline {baseline.version}'s {bp:.1f} ms (+{cp - bp:.1f} ms; allowed "
                    f"{t.max_p99_ratio:g}x or +{t.p99_slack_ms:g} ms)"
                ),
                expected=(
                    f"p99 <= {allowed:.1f} ms (baseline {bp:.1f} ms x {t.max_p99_ratio:g}, "
                    f"or + {t.p99_slack_ms:g} ms)"
                ),
                actual=f"p99 {cp:.1f} ms vs baseline {bp:.1f} ms",
            )
        )
    return Judgement(breaches=tuple(breaches), z=z, p_value=p, notes=tuple(notes))


# --- the check ----------------------------------------------------------------------------------------


def read_stats(router_url: str) -> dict[str, Any]:
    """The router's counters; any failure to read them is an :class:`InfrastructureError`."""
    import requests

    url = router_url.rstrip("/") + STATS_PATH
    try:
        answer = requests.get(url, timeout=STATS_TIMEOUT)
    except requests.RequestException as exc:
        raise InfrastructureError(
            f"cannot read the router's stats at {url}: {type(exc).__name__}: {exc}"
        ) from exc
    if answer.status_code != 200:
        raise InfrastructureError(
            f"the router's stats at {url} answered {answer.status_code}: {answer.text[:300]}"
        )
    try:
        data = answer.json()
    except ValueError as exc:
        raise InfrastructureError(f"the router's stats at {url} are not JSON: {answer.text[:300]}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("versions"), dict):
        raise InfrastructureError(f"the router's stats at {url} have no per-version counters: {data!r:.300}")
    return data


def run_canary(ctx: StageContext, service: str) -> TaskResult:
    """Judge the candidate of ``service`` by the router's per-version counters after the bake."""
    result = TaskResult()
    svc = ctx.config.services[service]
    router = ctx.router_url(service)
    if router is None:
        result.inconclusive = (
            f"no router in front of {service} in stage {ctx.stage}: the canary compares versions behind a "
            "router (onebox, rollback's mixed step)"
        )
        return result
    if svc.candidate is None:
        result.inconclusive = f"{service} has no candidate version to compare with {svc.baseline}"
        return result
    thresholds = Thresholds.from_options(ctx)
    seconds = float(ctx.option(CHECK, "bake_seconds"))
    count = int(ctx.option(CHECK, "bake_requests"))
    rate = float(ctx.option(CHECK, "rate"))
    budget = max(30.0, 3 * (seconds + count / rate) + 10)
    deadline = time.monotonic() + budget
    bake: Bake | None = ctx.bake if isinstance(ctx.bake, Bake) and service in ctx.bake.services else None
    waited = time.monotonic()
    if bake is None:
        result.notes.append(f"no background traffic in {ctx.stage}: judging the traffic the router saw")
    elif not bake.wait(seconds, count, budget, service=service):
        result.notes.append(
            f"the bake did not reach {seconds:g} s and {count} requests within {budget:.0f} s "
            f"(sent {bake.sent.get(service, 0)} in {bake.elapsed():.1f} s)"
        )
    stats = read_stats(router)
    stats = _top_up(bake, service, router, stats, svc.baseline, svc.candidate, thresholds, deadline, rate)
    waited = time.monotonic() - waited
    baseline = Tally.from_stats(svc.baseline, stats["versions"].get(svc.baseline))
    candidate = Tally.from_stats(svc.candidate, stats["versions"].get(svc.candidate))
    verdict = judge(baseline, candidate, thresholds)
    result.metrics = {
        "versions": {t.version: _tally_metrics(t, svc.role_of(t.version)) for t in (baseline, candidate)},
        "z": None if verdict.z is None else round(verdict.z, 3),
        "p_value": verdict.p_value,
        "waited_s": round(waited, 3),
    }
    if bake is not None:
        result.metrics["bake"] = bake.summary(service)
    result.notes.extend(verdict.notes)
    if verdict.inconclusive:
        result.inconclusive = verdict.inconclusive
        return result
    stats_url = router.rstrip("/") + STATS_PATH
    instances = {
        name: {k: data.get(k) for k in ("version", "requests", "status", "upstream_errors", "faults")}
        | {"p99_ms": (data.get("latency_ms") or {}).get("p99")}
        for name, data in (stats.get("instances") or {}).items()
        if isinstance(data, Mapping)
    }
    for breach in verdict.breaches:
        answered = sorted(n for n, d in instances.items() if d.get("version") == candidate.version)
        result.findings.append(
            Finding(
                check=CHECK,
                rule=breach.rule,
                message=f"{breach.message}; answered by {', '.join(answered) or candidate.version}",
                level="ERR",
                stage=ctx.stage,
                versions=ctx.versions(service),
                request={"method": "GET", "url": stats_url, "headers": {}, "body": None},
                expected=breach.expected,
                actual=breach.actual,
                seed=ctx.seed,
                curl=to_curl("GET", stats_url, redact=ctx.config.redact_headers),
                details={
                    "location": f"{service} router",
                    "baseline": asdict(baseline) | {"rate": baseline.rate},
                    "candidate": asdict(candidate) | {"rate": candidate.rate},
                    "thresholds": asdict(thresholds),
                    "z": verdict.z,
                    "p_value": verdict.p_value,
                    "instances": instances,
                    "router_stats": stats,
                    "bake": bake.summary(service) if bake is not None else None,
                },
            )
        )
    return result


def _top_up(
    bake: Bake | None,
    service: str,
    router: str,
    stats: dict[str, Any],
    baseline: str,
    candidate: str,
    thresholds: Thresholds,
    deadline: float,
    rate: float,
) -> dict[str, Any]:
    """Let a running bake send more while a version is below ``min_requests`` — if the share of traffic
    each short version got so far says it will get there before ``deadline``."""
    for _ in range(3):
        versions = stats["versions"]
        counts = {v: int((versions.get(v) or {}).get("requests", 0)) for v in (baseline, candidate)}
        total = sum(int(d.get("requests", 0)) for d in versions.values() if isinstance(d, Mapping))
        short = {v: thresholds.min_requests - n for v, n in counts.items() if n < thresholds.min_requests}
        if not short or bake is None or not bake.running or total == 0:
            return stats
        if any(counts[v] == 0 for v in short):
            return stats  # the router never chose that version: more traffic will not help
        more = max(math.ceil(missing * total / counts[v]) for v, missing in short.items())
        left = deadline - time.monotonic()
        if more / rate * 1.5 > left:
            return stats
        sent = bake.sent.get(service, 0)
        bake.wait(0, sent + math.ceil(more * 1.1) + 1, left, service=service)
        stats = read_stats(router)
    return stats


def _tally_metrics(tally: Tally, role: str) -> dict[str, Any]:
    return {
        "role": role,
        "requests": tally.requests,
        "failures": tally.failures,
        "error_rate": round(tally.rate, 5),
        "p50_ms": tally.p50_ms,
        "p99_ms": tally.p99_ms,
    }
