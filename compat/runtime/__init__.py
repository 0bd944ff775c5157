"""Runtimes: how a planned topology becomes real (see :mod:`compat.runtime.base` for the interface).

``import compat.runtime`` stays light: docker, testcontainers and requests load only when a runtime is
selected, so the pytest plugin costs nothing for runs without ``--compat``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from compat.config.model import RUNTIME_NAMES
from compat.errors import EngineUnavailable, UsageError
from compat.runtime.base import Instance, InstanceSpec, Progress, RunContext, Runtime

__all__ = [
    "Instance",
    "InstanceSpec",
    "RunContext",
    "Runtime",
    "engine_problem",
    "select_runtime",
]

RUNTIMES = RUNTIME_NAMES  # one list: compat.config.model
#: How long ``auto`` waits for a Docker engine to answer before it falls back to the process runtime.
PROBE_TIMEOUT = 3.0
#: API version of the probe's client: old enough for every engine that still answers /_ping.
PROBE_API_VERSION = "1.24"


def engine_problem(timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when a Docker engine answers a ping within ``timeout`` seconds, else why not.

    A unix socket is tried with a plain socket first, and the SDK probe pins an old API version: the
    docker SDK leaks the socket of a failed unix connect, and an auto-negotiating client connects inside
    its constructor, before there is a client to close.
    """
    unix_problem = _unix_socket_problem(timeout)
    if unix_problem is not None:
        return unix_problem
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError as exc:
        return f"the docker package is not installed ({exc})"
    client = None
    try:
        client = docker.from_env(timeout=timeout, version=PROBE_API_VERSION)
        client.ping()
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    finally:
        if client is not None:
            client.close()
    return None


def _unix_socket_problem(timeout: float) -> str | None:
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        return None
    path = "/" + host.removeprefix("unix://").lstrip("/")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            return f"cannot connect to {path}: {exc.strerror or exc}"
    return None


def select_runtime(
    name: str,
    context: RunContext,
    *,
    progress: Progress | None = None,
    echo: Callable[[str], None] = print,
) -> Runtime:
    """The runtime called ``name``: ``docker``, ``process``, or ``auto`` (docker when an engine answers
    within :data:`PROBE_TIMEOUT` seconds, else process — saying so in one line through ``echo``).

    ``docker`` without an engine raises :class:`~compat.errors.EngineUnavailable` with a hint.
    """
    if name == "process":
        from compat.runtime.process import ProcessRuntime

        return ProcessRuntime(context, progress=progress)
    if name == "docker":
        from compat.runtime.docker import DockerRuntime

        return DockerRuntime(context, progress=progress)
    if name == "auto":
        problem = engine_problem()
        if problem is None:
            from compat.runtime.docker import DockerRuntime

            try:
                return DockerRuntime(context, progress=progress)
            except EngineUnavailable as exc:  # answered the probe, then went away
                problem = str(exc)
        from compat.runtime.process import ProcessRuntime

        echo(f"no Docker engine answers ({problem}); falling back to the process runtime")
        return ProcessRuntime(context, progress=progress)
    raise UsageError(f"{name!r} is not a valid runtime; choose one of {', '.join(RUNTIMES)}")
