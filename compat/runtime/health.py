"""Waiting until an instance answers its HTTP health path, shared by every runtime.

A published Docker port accepts TCP connections before the app listens (docker-proxy answers for it), so
readiness is *only* ever an HTTP 2xx on the health path, never "port open". The waiter polls fast at
first (5 ms, backing off to 100 ms), gives up at the deadline, and stops at once when the runtime says
the instance died (``alive`` returns a reason) or when the caller cancels (another instance of the same
``start()`` failed).

Requests ignore proxy environment variables (``trust_env = False``): health traffic goes to 127.0.0.1
only, never through a proxy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import requests

FIRST_INTERVAL = 0.005
MAX_INTERVAL = 0.1
BACKOFF = 1.5

Outcome = Literal["ready", "exited", "timeout", "cancelled"]


@dataclass(frozen=True)
class HealthResult:
    """How a wait ended. ``last`` is the last thing the health path said (``HTTP 503``, ``refused`` …)."""

    outcome: Outcome
    url: str
    elapsed: float
    attempts: int
    last: str = ""
    reason: str = ""  # why the instance is gone (outcome "exited"), from the runtime

    @property
    def ok(self) -> bool:
        return self.outcome == "ready"

    def describe(self, timeout: float) -> str:
        """One line for a StartupError."""
        if self.outcome == "exited":
            return f"{self.reason} before GET {self.url} answered 2xx (after {self.elapsed:.2f} s)"
        if self.outcome == "timeout":
            last = f"; last answer: {self.last}" if self.last else ""
            return f"GET {self.url} never answered 2xx within {timeout:g} s ({self.attempts} attempts{last})"
        if self.outcome == "cancelled":
            return "start cancelled: another instance of the same start failed"
        return f"ready after {self.elapsed:.2f} s"


def _describe_error(exc: requests.RequestException) -> str:
    text = str(exc)
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if "refused" in text.lower():
        return "connection refused"
    if "reset" in text.lower() or "aborted" in text.lower() or "RemoteDisconnected" in text:
        return "connection closed without an answer"
    return type(exc).__name__


def wait_healthy(
    url: str,
    *,
    timeout: float,
    alive: Callable[[], str | None] | None = None,
    alive_every: float = 0.05,
    cancel: threading.Event | None = None,
) -> HealthResult:
    """Poll ``GET url`` until it answers 2xx, the deadline passes, ``alive()`` reports death, or cancel.

    ``alive`` returns ``None`` while the instance runs, else a reason ("exited with code 3"); it is
    asked at most every ``alive_every`` seconds (0: before every attempt) and once more before a timeout
    is declared, so a crash is reported as a crash, not as a timeout.
    """
    cancel = cancel or threading.Event()
    start = time.monotonic()
    deadline = start + timeout
    interval = FIRST_INTERVAL
    attempts = 0
    last = ""
    next_alive_check = start

    def result(outcome: Outcome, reason: str = "") -> HealthResult:
        return HealthResult(outcome, url, time.monotonic() - start, attempts, last, reason)

    with requests.Session() as session:
        session.trust_env = False  # never through a proxy: health traffic stays on 127.0.0.1
        while True:
            now = time.monotonic()
            if cancel.is_set():
                return result("cancelled")
            if alive is not None and now >= next_alive_check:
                gone = alive()
                if gone is not None:
                    return result("exited", gone)
                next_alive_check = now + alive_every
            remaining = deadline - now
            if remaining <= 0:
                gone = alive() if alive is not None else None
                return result("exited", gone) if gone is not None else result("timeout")
            attempts += 1
            try:
                response = session.get(url, timeout=(min(1.0, remaining), min(5.0, remaining)))
            except requests.RequestException as exc:
                last = _describe_error(exc)
            else:
                response.close()
                if 200 <= response.status_code < 300:
                    return result("ready")
                last = f"HTTP {response.status_code}"
            cancel.wait(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(MAX_INTERVAL, interval * BACKOFF)
