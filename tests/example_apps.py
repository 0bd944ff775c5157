"""Running the bundled example's services as local subprocesses, for tests that need a real one.

``Launcher`` starts a service version on a free loopback port, waits for its health path with a deadline,
and stops everything it started (SIGTERM, then SIGKILL) in teardown. ``OrdersByVersion`` keeps one orders
process (with its own database) per version, started on first use.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
ORDERS_APP = REPO / "fixtures" / "orders" / "app.py"
WEB_APP = REPO / "fixtures" / "web" / "app.py"
HEALTH_DEADLINE = 10.0
TIMEOUT = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class App:
    """One running service version: ``app.get("/orders")`` and friends go to its loopback URL."""

    service: str
    version: str
    url: str
    instance: str
    proc: subprocess.Popen[bytes]
    log: Path
    session: requests.Session = field(default_factory=requests.Session)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.url + path, timeout=TIMEOUT, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def create(self, item: str = "tea", quantity: int = 1, **extra: Any) -> dict[str, Any]:
        response = self.post("/orders", json={"item": item, "quantity": quantity, **extra})
        assert response.status_code == 201, f"{self.version}: {response.status_code} {response.text}"
        return dict(response.json())

    def state(self, state: str, action: str = "setup", **params: Any) -> requests.Response:
        return self.post(
            "/_compat/provider-states", json={"state": state, "params": params, "action": action}
        )

    def page_all(self, limit: int = 2) -> list[dict[str, Any]]:
        """Every order, following this version's own cursors."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": limit}
        while True:
            page = self.get("/orders", params=params)
            assert page.status_code == 200, f"{self.version}: {page.status_code} {page.text}"
            items += page.json()["items"]
            if page.json()["next_cursor"] is None:
                return items
            params["cursor"] = page.json()["next_cursor"]

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


class Launcher:
    """Starts service versions as subprocesses and stops them all (SIGTERM, then SIGKILL) in teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.apps: list[App] = []
        self.lock = threading.Lock()
        self.started = itertools.count()

    def orders(self, version: str, db: Path | None = None) -> App:
        db = db or self.tmp_path / "orders.db"
        return self._start("orders", version, [str(ORDERS_APP), "--db", str(db)], {})

    def web(self, version: str, orders: App | str | None) -> App:
        env = {} if orders is None else {"ORDERS_URL": orders if isinstance(orders, str) else orders.url}
        return self._start("web", version, [str(WEB_APP)], env)

    def _start(self, service: str, version: str, argv: list[str], env: dict[str, str]) -> App:
        for _attempt in range(3):  # a free port can be taken by someone else before the app binds it
            port = free_port()
            with self.lock:
                instance = f"{service}-{version}-{next(self.started)}"
            log = self.tmp_path / f"{instance}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, *argv, "--host", "127.0.0.1", "--port", str(port), "--version", version],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "INSTANCE": instance, "PYTHONDONTWRITEBYTECODE": "1", **env},
                )
            app = App(service, version, f"http://127.0.0.1:{port}", instance, proc, log)
            with self.lock:
                self.apps.append(app)
            if self._wait_healthy(app):
                return app
            if "Address already in use" not in app.logs():
                break
        pytest.fail(f"{service} {version} did not get healthy:\n{app.logs()}", pytrace=False)

    @staticmethod
    def _wait_healthy(app: App) -> bool:
        deadline = time.monotonic() + HEALTH_DEADLINE
        while time.monotonic() < deadline:
            if app.proc.poll() is not None:
                return False
            try:
                if app.session.get(app.url + "/health", timeout=1).status_code == 200:
                    return True
            except requests.ConnectionError:
                pass
            time.sleep(0.02)  # poll interval, bounded by the deadline above
        return False

    def stop(self, app: App) -> int:
        if app.proc.poll() is None:
            app.proc.terminate()
            try:
                app.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                app.proc.kill()
                app.proc.wait()
        app.session.close()
        return int(app.proc.returncode)

    def close(self) -> None:
        for app in self.apps:  # signal them all first: they stop in parallel
            if app.proc.poll() is None:
                app.proc.terminate()
        for app in self.apps:
            self.stop(app)


class OrdersByVersion:
    """``orders("v2")`` -> base URL of a running orders process of that version, each with its own db."""

    def __init__(self, tmp_path: Path) -> None:
        self.launcher = Launcher(tmp_path)
        self.apps: dict[str, App] = {}

    def __call__(self, version: str) -> str:
        return self.app(version).url

    def app(self, version: str) -> App:
        if version not in self.apps:
            db = self.launcher.tmp_path / f"orders-{version}.db"
            self.apps[version] = self.launcher.orders(version, db=db)
        return self.apps[version]

    def close(self) -> None:
        self.launcher.close()
