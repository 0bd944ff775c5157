"""Fail closed: every infrastructure fault ends in ERROR (exit 2 from `compat run`, verdict ERROR in the
report) with a message naming the cause — never PASS, never FAIL.

Covered elsewhere, not repeated here: an image that does not build and a box whose health path never
answers (tests/test_gate_cli.py::test_a_candidate_that_cannot_run_is_error_not_pass), an image that does
not exist (tests/test_bad_input.py). Here: a container that exits at once, the engine going away in the
middle of a run, the router dying in the middle of a stage, and ports (the harness picks free host ports,
so a busy port cannot happen: two concurrent runs of one project must not collide instead).

Each run uses a project name of its own and checks by that label that nothing is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, managed_resources, run_compat

SCRATCH = REPO / "tests" / "data" / "scratch"
PROJECT_LABEL = "io.pytest-compat.project"
BASE_ARG = '{ BASE_IMAGE = "${COMPAT_BASE_IMAGE:-python:3.12-slim}" }'

pytestmark = pytest.mark.docker


def scratch_project(root: Path, *, tests: str = "test_scratch.py", extra: str = "") -> str:
    """The scratch project under ``root`` with a unique project name; returns that name."""
    shutil.copytree(SCRATCH, root)
    project = f"fc-{uuid.uuid4().hex[:8]}"
    text = (root / "compat.toml").read_text().replace('project = "scratch"', f'project = "{project}"')
    text = f'tests = ["{tests}"]\n' + text.replace(
        'state = "notes"\n', 'state = "notes"\nhealth_timeout = 8\n', 1
    )
    (root / "compat.toml").write_text(text + extra)
    return project


def leftovers(client: Any, project: str) -> dict[str, list[str]]:
    return managed_resources(client, **{PROJECT_LABEL: project})


def report_of(root: Path, directory: str = "compat-report") -> dict[str, Any]:
    return dict(json.loads((root / directory / "compat-report.json").read_text()))


def test_a_container_that_exits_at_once_is_error(tmp_path: Path, docker_client: Any) -> None:
    root = tmp_path / "p"
    extra = (
        '\n[services.store.versions.crash]\nbuild = { context = ".", dockerfile = "Dockerfile.crash", '
        f"args = {BASE_ARG} }}\n"
    )
    project = scratch_project(root, extra=extra)
    (root / "Dockerfile.crash").write_text(
        "ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\n"
        'CMD ["python3", "-c", "import sys; print(\'config file missing\', flush=True); sys.exit(3)"]\n'
    )
    result = run_compat(
        "run", "--runtime", "docker", "--candidate", "store=crash", "--stage", "onebox", cwd=root
    )
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-2000:]
    assert "verdict: ERROR (exit 2)" in result.stdout
    assert "store-crash" in result.stdout or "store@crash" in result.stdout, result.stdout[-3000:]
    assert "exited with code 3" in result.stdout, result.stdout[-3000:]
    assert "config file missing" in result.stdout, "the container's last log lines are shown"
    report = report_of(root)
    assert report["verdict"]["result"] == "ERROR"
    assert all(t["verdict"] == "ERROR" for t in report["tests"])
    assert all(c["verdict"] == "ERROR" for c in report["checks"] if c["stage"] == "onebox")
    assert not any(leftovers(docker_client, project).values())


def test_two_concurrent_runs_of_one_project_do_not_collide(tmp_path: Path, docker_client: Any) -> None:
    """Host ports are chosen by the engine (127.0.0.1, random) and names carry the run id, so a port or
        name that is already taken cannot happen; two runs of the same project at once both pass. (Tests only:
    the canary's latency comparison is load-sensitive and two runs at once are load.)"""
    roots = [tmp_path / "a", tmp_path / "b"]
    project = scratch_project(roots[0])
    shutil.copytree(roots[0], roots[1])
    env = dict(os.environ, COMPAT_BASE_IMAGE=os.environ.get("COMPAT_BASE_IMAGE", "compat-base:bookworm"))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "compat.cli",
                "run",
                "--runtime",
                "docker",
                "--stage",
                "onebox",
                "--check",
                "none",
                "-q",
            ],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for root in roots
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out[-3000:]
    runs = {report_of(root)["run"]["id"] for root in roots}
    assert len(runs) == 2
    assert not any(leftovers(docker_client, project).values())


# -- the engine goes away mid-run ------------------------------------------------------------------------


class SocketProxy:
    """A unix socket that forwards to the real engine's socket until :meth:`cut`: then it stops
    accepting, removes its socket file and closes every open connection (dockerd itself keeps running)."""

    def __init__(self, path: Path, target: str = "/var/run/docker.sock") -> None:
        self.path = path
        self.target = target
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(64)
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.alive = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.alive:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.alive = False
        self.server.close()
        self.path.unlink(missing_ok=True)
        with self.lock:
            for s in self.open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


def test_the_engine_going_away_mid_run_is_error(tmp_path: Path, docker_client: Any) -> None:
    root = tmp_path / "p"
    project = scratch_project(root, tests="test_engine.py")
    up, cut = tmp_path / "up", tmp_path / "cut"
    (root / "test_engine.py").write_text(
        "import pathlib, time, pytest\n"
        "@pytest.mark.compat(stage='onebox')\n"
        "def test_onebox(compat_topology):\n"
        f"    pathlib.Path({str(up)!r}).touch()\n"
        f"    while not pathlib.Path({str(cut)!r}).exists():\n"
        "        time.sleep(0.1)\n"
        "@pytest.mark.compat(stage='reverse-zeta')\n"
        "def test_reverse_zeta(compat_topology):\n"
        "    pass\n"
    )
    proxy = SocketProxy(tmp_path / "engine.sock")
    env = dict(os.environ, DOCKER_HOST=f"unix://{proxy.path}")
    env.setdefault("COMPAT_BASE_IMAGE", "compat-base:bookworm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "compat.cli", "run", "--runtime", "docker", "--check", "none"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not up.exists():
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the onebox topology never came up"
            time.sleep(0.1)
        proxy.cut()
        cut.touch()
        out = proc.communicate(timeout=300)[0]
    finally:
        proc.kill()
        subprocess.run(  # the real engine: remove what the cut-off run could not
            [sys.executable, "-m", "compat.cli", "down"], cwd=root, capture_output=True, check=False
        )
    assert proc.returncode == 2, out[-4000:]
    assert "verdict: ERROR (exit 2)" in out, out[-4000:]
    assert "engine" in out.lower() or "docker" in out.lower(), out[-4000:]
    report = report_of(root)
    assert report["verdict"]["result"] == "ERROR"
    verdicts = {t["stage"]: t["verdict"] for t in report["tests"]}
    assert verdicts["reverse-zeta"] == "ERROR", verdicts
    assert not any(leftovers(docker_client, project).values())


# -- the router dies mid-stage ---------------------------------------------------------------------------


def test_the_router_dying_mid_stage_is_error(tmp_path: Path, docker_client: Any) -> None:
    """A user test removes the onebox routers; the canary check that follows reads the router's
    counters (and its bake sent traffic through it): it cannot judge, so ERROR — never PASS."""
    root = tmp_path / "p"
    project = scratch_project(root, tests="test_router.py")
    (root / "test_router.py").write_text(
        "import docker, pytest\n"
        "@pytest.mark.compat(stage='onebox')\n"
        "def test_remove_the_routers(compat_topology, compat_session):\n"
        "    client = docker.from_env()\n"
        "    labels = ['io.pytest-compat.role=router',\n"
        "              f'io.pytest-compat.run={compat_session.context.run_id}']\n"
        "    routers = client.containers.list(filters={'label': labels})\n"
        "    assert routers\n"
        "    for router in routers:\n"
        "        router.remove(force=True)\n"
        "    client.close()\n"
    )
    result = run_compat("run", "--runtime", "docker", "--stage", "onebox", "--check", "canary", cwd=root)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out[-4000:]
    assert "verdict: ERROR (exit 2)" in result.stdout
    report = report_of(root)
    assert report["verdict"]["result"] == "ERROR"
    canary = [c for c in report["checks"] if c["check"] == "canary"]
    assert canary, report["checks"]
    assert all(c["verdict"] == "ERROR" for c in canary), canary
    assert all("router" in (c["error"] or "").lower() for c in canary), canary
    assert not any(leftovers(docker_client, project).values())
