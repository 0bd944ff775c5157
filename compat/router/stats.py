"""Per-version and per-instance counters and latency samples; thread-safe.

Counts, the mean and the maximum cover every request since the last reset; percentiles come from a bounded
sample of the most recent latencies (``sample_size`` per version and per instance).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
FAULT_KINDS = ("delay", "error", "drop")


class _Tally:
    __slots__ = ("faults", "latencies", "max_ms", "requests", "status", "sum_ms", "timed", "upstream_errors")

    def __init__(self, sample_size: int) -> None:
        self.requests = 0
        self.status = dict.fromkeys(STATUS_CLASSES, 0)
        self.upstream_errors = 0
        self.faults = dict.fromkeys(FAULT_KINDS, 0)
        self.latencies: deque[float] = deque(maxlen=sample_size)
        self.timed = 0
        self.sum_ms = 0.0
        self.max_ms = 0.0

    def add(
        self, status: int | None, latency_ms: float | None, upstream_error: bool, faults: tuple[str, ...]
    ) -> None:
        self.requests += 1
        if status is not None and 100 <= status <= 599:
            self.status[f"{status // 100}xx"] += 1
        if upstream_error:
            self.upstream_errors += 1
        for kind in faults:
            self.faults[kind] += 1
        if latency_ms is not None:
            self.timed += 1
            self.sum_ms += latency_ms
            self.max_ms = max(self.max_ms, latency_ms)
            self.latencies.append(latency_ms)

    def snapshot(self) -> dict[str, Any]:
        sample = sorted(self.latencies)
        latency: dict[str, Any] = {
            "count": self.timed,
            "mean": round(self.sum_ms / self.timed, 3) if self.timed else None,
            "p50": percentile(sample, 50),
            "p90": percentile(sample, 90),
            "p99": percentile(sample, 99),
            "max": round(self.max_ms, 3) if self.timed else None,
            "sample": len(sample),
        }
        return {
            "requests": self.requests,
            "status": dict(self.status),
            "upstream_errors": self.upstream_errors,
            "faults": dict(self.faults),
            "latency_ms": latency,
        }


def percentile(ordered: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list (``None`` when empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return round(ordered[min(rank, len(ordered)) - 1], 3)


class Stats:
    """Request counters of one router. ``record`` is called once per proxied request."""

    def __init__(self, sample_size: int = 10_000) -> None:
        self.sample_size = sample_size
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._total = _Tally(self.sample_size)
        self._versions: dict[str, _Tally] = {}
        self._instances: dict[str, _Tally] = {}
        self._instance_version: dict[str, str] = {}
        self._rejected: dict[str, int] = {}

    def reset(self) -> None:
        with self._lock:
            self._reset()

    def record(
        self,
        instance: str,
        version: str,
        status: int | None,
        latency_ms: float | None,
        *,
        upstream_error: bool = False,
        faults: tuple[str, ...] = (),
    ) -> None:
        """One request answered by (or blamed on) ``instance`` of ``version``; ``status`` None = no answer."""
        with self._lock:
            tally = self._versions.get(version)
            if tally is None:
                tally = self._versions[version] = _Tally(self.sample_size)
            tally.add(status, latency_ms, upstream_error, faults)
            tally = self._instances.get(instance)
            if tally is None:
                tally = self._instances[instance] = _Tally(self.sample_size)
                self._instance_version[instance] = version
            tally.add(status, latency_ms, upstream_error, faults)
            self._total.add(status, latency_ms, upstream_error, faults)

    def reject(self, reason: str) -> None:
        """A request the router refused before choosing an upstream (e.g. an unknown pin)."""
        with self._lock:
            self._rejected[reason] = self._rejected.get(reason, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            instances = {}
            for name, tally in self._instances.items():
                instances[name] = {"version": self._instance_version[name], **tally.snapshot()}
            return {
                "total": self._total.snapshot(),
                "versions": {v: t.snapshot() for v, t in self._versions.items()},
                "instances": instances,
                "rejected": dict(self._rejected),
            }
