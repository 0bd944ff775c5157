"""Shared helpers for the runtime tests: specs of the tiny test app for either runtime, and probes of
what a runtime left running. (Not a test module: pytest collects ``test_*.py`` only.)"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from compat.config.model import BuildSpec, State
from compat.runtime.base import LABEL_RUN, InstanceSpec, RunContext, Runtime
from compat.runtime.cleanup import pid_alive
from compat.runtime.process import ProcessRuntime

DATA = Path(__file__).resolve().parent / "data" / "runtime"
APP = DATA / "app.py"
HARNESS = DATA / "harness.py"
NOTES = State(name="notes", kind="volume", mount="/data")


@dataclass
class AppSpecs:
    """Builds InstanceSpecs of tests/data/runtime/app.py for one runtime kind.

    Two versions of one app: docker gets them from a build arg (APP_VERSION), the process runtime from
    the ``{version}`` placeholder in argv.
    """

    kind: str
    base_image: str = "python:3.12-slim"
    context: Path = DATA

    def __call__(
        self,
        name: str,
        version: str = "v1",
        *,
        flags: tuple[str, ...] = (),
        state: State | None = NOTES,
        env: dict[str, str] | None = None,
        health_timeout: float = 20.0,
        service: str = "app",
        aliases: tuple[str, ...] = (),
    ) -> InstanceSpec:
        common: dict[str, Any] = {
            "name": name,
            "service": service,
            "version": version,
            "role": "baseline" if version == "v1" else "candidate",
            "port": 8080,
            "env": env or {},
            "state": state,
            "health_timeout": health_timeout,
            "aliases": aliases,
        }
        if self.kind == "process":
            command = (
                sys.executable,
                str(APP),
                "--port",
                "{port}",
                "--host",
                "{host}",
                "--state",
                "{state_dir}",
                "--version",
                "{version}",
                *flags,
            )
            return InstanceSpec(command=command, cwd=self.context, **common)
        build = BuildSpec(context=self.context, args={"BASE_IMAGE": self.base_image, "APP_VERSION": version})
        container_command = None
        if flags:
            container_command = ("python3", "/app/app.py", "--port", "8080", "--state", "/data", *flags)
        return InstanceSpec(build=build, container_command=container_command, **common)


def get(url: str, **kwargs: Any) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False  # loopback only, never through a proxy
        return session.get(url, timeout=10, **kwargs)


def put(url: str, data: str) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.put(url, data=data, timeout=10)


def live_instances(runtime: Runtime, docker_client: Any = None) -> list[str]:
    """What still runs for this runtime's run: container names (docker) or pids (process)."""
    if runtime.name == "docker":
        found = docker_client.containers.list(
            all=True, filters={"label": f"{LABEL_RUN}={runtime.context.run_id}"}
        )
        return sorted(c.name for c in found)
    assert isinstance(runtime, ProcessRuntime)
    record_path = runtime.run_dir / "run.json"
    pids = []
    if record_path.exists():
        pids = [i["pid"] for i in json.loads(record_path.read_text())["instances"].values()]
    pids += [int(p.instance.ident) for p in runtime._running.values()]
    return sorted(str(pid) for pid in set(pids) if pid_alive(pid))


def dead_pid() -> int:
    """A pid that existed a moment ago and is gone (waited for, so not even a zombie)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def context(project: str, **kwargs: Any) -> RunContext:
    """A RunContext of ``project`` (worker "t"); ``pid``, ``host``, ``keep`` … may be overridden."""
    kwargs.setdefault("worker", "t")
    return RunContext(run_id=uuid.uuid4().hex[:10], project=project, **kwargs)


@dataclass
class Harness:
    """A separate Python process running tests/data/runtime/harness.py."""

    proc: subprocess.Popen[str]
    report: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, kind: str, project: str, mode: str, base_image: str = "python:3.12-slim") -> Harness:
        proc = subprocess.Popen(
            [sys.executable, str(HARNESS), kind, project, mode, base_image],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        harness = cls(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait(10)
            stderr = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"harness died before reporting: {stderr}")
        harness.report = json.loads(line)
        return harness

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


def iter_pids(report: dict[str, Any]) -> Iterator[int]:
    for inst in report["instances"]:
        yield int(inst["ident"])
