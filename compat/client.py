"""A ``requests.Session`` bound to one base URL, the HTTP client tests and checks use.

It keeps a short journal of its calls with the instance and version that answered (the router stamps
``X-Compat-Upstream``/``X-Compat-Version``; a direct call is stamped with the service's own
``X-Service-Version`` where it sends one), so a failing test can say which version broke.
"""

from __future__ import annotations

from collections import deque
from typing import Any
from urllib.parse import urljoin

import requests

from compat.router.config import DEFAULT_SESSION_HEADER as SESSION_HEADER
from compat.router.config import POLICY_HEADER


class ServiceClient(requests.Session):
    """``client.get("/orders")`` goes to ``base_url + "/orders"``; absolute URLs pass through."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        session: str | None = None,
        label: str = "",
        policy: str | None = None,
    ) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.label = label or self.base_url
        self.calls: deque[tuple[str, str, int | str, str]] = deque(maxlen=200)
        if session is not None:
            self.headers[SESSION_HEADER] = session
        if policy is not None:  # the router routes this client's requests by another policy than the stage's
            self.headers[POLICY_HEADER] = policy

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        verb = method.decode() if isinstance(method, bytes) else method
        kwargs.setdefault("timeout", self.timeout)
        full = urljoin(self.base_url, target.lstrip("/"))
        try:
            response = super().request(verb, full, *args, **kwargs)
        except requests.RequestException as exc:
            self.calls.append((verb, full, type(exc).__name__, "-"))
            raise
        self.calls.append((verb, response.url, response.status_code, answered_by(response)))
        return response

    def journal(self) -> list[str]:
        return [f"{self.label}: {verb} {url} -> {status} from {who}" for verb, url, status, who in self.calls]


def answered_by(response: requests.Response) -> str:
    """``"orders-v2-0 (v2)"`` from the router's stamp, else the service's own version header."""
    upstream = response.headers.get("X-Compat-Upstream")
    version = response.headers.get("X-Compat-Version") or response.headers.get("X-Service-Version")
    if upstream:
        return f"{upstream} ({version})" if version else upstream
    return f"version {version}" if version else "unknown"
