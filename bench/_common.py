"""Helpers shared by the benchmark scripts: machine facts, medians, local processes, labelled containers.

Not a test module and not part of the ``compat`` package. Everything here talks to 127.0.0.1 only, and the
only containers it removes are the ones labelled with the calling script's own run id.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BASE_IMAGE = os.environ.get("COMPAT_BASE_IMAGE", "compat-base:bookworm")


def machine() -> str:
    """One line: CPUs, CPU model, RAM, Python, Docker engine (when one answers)."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    docker = "none"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode == 0:
            docker = out.stdout.strip()
    return (
        f"{os.cpu_count()} CPUs ({model}), {ram} RAM, Python {platform.python_version()}, "
        f"Docker {docker}, {platform.system()} {platform.release()}"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def sigterm_as_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt, so the scripts' ``finally`` clean-up runs on both."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - 127.0.0.1 only
            return 200 <= int(answer.status) < 300
    except (OSError, urllib.error.URLError):
        return False


def wait_http(url: str, deadline: float, proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll ``url`` until it answers 2xx (5 ms steps); RuntimeError past ``deadline`` (monotonic)."""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        if http_ok(url, 0.5):
            return
        time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer 2xx in time")


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    """A list to put started subprocesses in; all are terminated (then killed) on the way out."""
    procs: list[subprocess.Popen[Any]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_orders(version: str, db: Path, procs: list[subprocess.Popen[Any]]) -> str:
    """The example's orders service as a local process on a free loopback port; its base URL when healthy."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "fixtures" / "orders" / "app.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            str(db),
            "--version",
            version,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "INSTANCE": f"orders-{version}-bench", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", time.monotonic() + 20, proc)
    return url


def remove_labelled(client: Any, run_id: str, scope: str | None = None) -> int:
    """Remove the containers, networks and volumes labelled with this run id (ours only; of one topology
    scope when given); how many containers."""
    from compat.runtime.base import LABEL_RUN, LABEL_SCOPE

    selector = {"label": [f"{LABEL_RUN}={run_id}"] + ([f"{LABEL_SCOPE}={scope}"] if scope else [])}
    removed = 0
    for container in client.containers.list(all=True, filters=selector):
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)
            removed += 1
    for network in client.networks.list(filters=selector):
        with contextlib.suppress(Exception):
            network.remove()
    for volume in client.volumes.list(filters=selector):
        with contextlib.suppress(Exception):
            volume.remove(force=True)
    return removed


def table(rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns."""
    texts = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in texts if i < len(row)) for i in range(max(map(len, texts)))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in texts)


def sdk_start(
    client: Any,
    boxes: Sequence[dict[str, Any]],
    labels: dict[str, str],
    name_prefix: str,
) -> tuple[float, list[Any]]:
    """The floor: start ``boxes`` with the docker SDK alone, in parallel threads, on one new network, and
    wait until each answers its health path on its published 127.0.0.1 port.

    Each box: ``image``, ``port``, ``health`` (path), optional ``command`` (list), ``env`` (dict),
    ``aliases`` (list). Returns (seconds from the first API call to the last ready box, the containers);
    the caller removes them (:func:`remove_labelled`).
    """
    from concurrent.futures import ThreadPoolExecutor

    began = time.perf_counter()
    network = client.networks.create(f"{name_prefix}-net", labels=labels)
    made: list[Any] = []

    def one(index: int) -> None:
        box = boxes[index]
        port = int(box["port"])
        container = client.containers.create(
            box["image"],
            command=box.get("command"),
            environment=box.get("env") or {},
            name=f"{name_prefix}-{index}",
            labels=labels,
            ports={f"{port}/tcp": ("127.0.0.1",)},
            detach=True,
        )
        made.append(container)
        network.connect(container, aliases=list(box.get("aliases") or []))
        container.start()
        deadline = time.monotonic() + 60
        host_port = None
        while host_port is None:
            ports = client.api.inspect_container(container.id)["NetworkSettings"]["Ports"] or {}
            for binding in ports.get(f"{port}/tcp") or []:
                if binding.get("HostPort"):
                    host_port = binding["HostPort"]
            if host_port is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no published port for {box['image']}")
                time.sleep(0.01)
        wait_http(f"http://127.0.0.1:{host_port}{box['health']}", deadline)

    with ThreadPoolExecutor(max(1, min(32, len(boxes)))) as pool:
        for future in [pool.submit(one, i) for i in range(len(boxes))]:
            future.result()
    return time.perf_counter() - began, made
