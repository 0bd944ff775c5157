"""Cleanup under abuse, on a real engine: whatever happens to a run, no container, network or volume with
its project's labels survives it (or, after SIGKILL, the next run / `compat down`).

Covered elsewhere, not repeated here: SIGTERM in the middle of a test (tests/test_plugin.py::
test_sigterm_mid_run_removes_the_topology), a container that exits at once during start-up
(tests/test_fail_closed.py), an image that does not build and a box that never gets healthy
(tests/test_gate_cli.py). Here: SIGKILL of `compat up` (then `compat down`, and the next run's reaper),
Ctrl-C during a property run, an xdist worker killed mid-run, and `compat down --all` leaving a
container alone that it did not create. Each test's project name is its own; checks go by that label.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import BASE_IMAGE, REPO, managed_resources, run_compat

SCRATCH = REPO / "tests" / "data" / "scratch"
PROJECT_LABEL = "io.pytest-compat.project"

COMPAT_RUN = [sys.executable, "-m", "compat.cli", "run", "--runtime", "docker"]
PYTEST_XDIST = [
    sys.executable,
    "-m",
    "pytest",
    "--compat",
    "--compat-runtime",
    "docker",
    "-p",
    "xdist",
    "-n",
    "2",
]

pytestmark = pytest.mark.docker


def scratch_project(root: Path, *, tests: str = "test_scratch.py", extra: str = "") -> str:
    shutil.copytree(SCRATCH, root)
    project = f"rc-{uuid.uuid4().hex[:8]}"
    text = (root / "compat.toml").read_text().replace('project = "scratch"', f'project = "{project}"')
    (root / "compat.toml").write_text(f'tests = ["{tests}"]\n' + text + extra)
    return project


def leftovers(client: Any, project: str, **labels: str) -> dict[str, list[str]]:
    return managed_resources(client, **{PROJECT_LABEL: project, **labels})


def env() -> dict[str, str]:
    return dict(os.environ, COMPAT_BASE_IMAGE=os.environ.get("COMPAT_BASE_IMAGE", BASE_IMAGE))


def wait_for(stream: IO[str], pattern: str, proc: subprocess.Popen[str], timeout: float = 300) -> str:
    """Read ``stream`` until a line matches ``pattern``; return that line (fail with what was read)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    for line in stream:
        seen.append(line)
        if re.search(pattern, line):
            return line
        assert time.monotonic() < deadline, f"no {pattern!r} within {timeout} s:\n" + "".join(seen[-50:])
    raise AssertionError(f"exited ({proc.wait()}) before {pattern!r}:\n" + "".join(seen[-50:]))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# -- SIGKILL ------------------------------------------------------------------------------------------


def compat_up(root: Path) -> subprocess.Popen[str]:
    """`compat up --stage onebox` in the foreground, its stdout piped (to wait for "up; press Ctrl-C")."""
    return subprocess.Popen(
        [sys.executable, "-m", "compat.cli", "up", "--stage", "onebox", "--runtime", "docker"],
        cwd=root,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_sigkilled_compat_up_is_collected_by_down_and_by_the_next_run(
    tmp_path: Path, docker_client: Any, procs: list[subprocess.Popen[str]]
) -> None:
    root = tmp_path / "p"
    project = scratch_project(root)
    runs = []
    for _ in range(2):
        proc = compat_up(root)
        procs.append(proc)
        assert proc.stdout is not None
        head = wait_for(proc.stdout, r"^stage onebox \(run \w+", proc)
        run_id = re.search(r"\(run (\w+)", head).group(1)  # type: ignore[union-attr]
        wait_for(proc.stdout, r"^up; press Ctrl-C", proc)
        proc.send_signal(signal.SIGKILL)  # nothing of ours runs: no teardown, no atexit
        proc.wait()
        proc.stdout.close()
        assert any(leftovers(docker_client, project, **{"io.pytest-compat.run": run_id}).values())
        runs.append(run_id)

    # the next run reaps the first killed run's leftovers (its owner pid is dead) before it starts
    status = run_compat("status", cwd=root)
    assert "owner gone" in status.stdout, status.stdout
    nxt = run_compat("run", "--runtime", "docker", "--stage", "onebox", "--check", "none", cwd=root)
    assert nxt.returncode == 0, nxt.stdout[-3000:] + nxt.stderr[-2000:]
    # (any run on this host reaps every dead run: under xdist another test's run may have been first)
    for run_id in runs:
        assert not any(leftovers(docker_client, project, **{"io.pytest-compat.run": run_id}).values())
    assert not any(leftovers(docker_client, project).values())


def test_compat_down_collects_a_sigkilled_run(
    tmp_path: Path, docker_client: Any, procs: list[subprocess.Popen[str]]
) -> None:
    root = tmp_path / "p"
    project = scratch_project(root)
    proc = compat_up(root)
    procs.append(proc)
    assert proc.stdout is not None
    wait_for(proc.stdout, r"^up; press Ctrl-C", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    found = leftovers(docker_client, project)
    assert found["containers"], found
    assert found["networks"], found
    assert found["volumes"], found  # the store's shared state
    down = run_compat("down", cwd=root)
    assert down.returncode == 0, down.stderr
    assert "removed" in down.stdout, down.stdout
    assert not any(leftovers(docker_client, project).values())


# -- Ctrl-C during a property run -----------------------------------------------------------------------

SPEC = """openapi: 3.0.3
info: {title: store, version: "1"}
paths:
  /hello:
    get:
      parameters:
        - {name: who, in: query, schema: {type: string}}
        - {name: n, in: query, schema: {type: integer}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {type: object}
"""


def test_ctrl_c_in_the_middle_of_a_property_run_removes_everything(
    tmp_path: Path, docker_client: Any, procs: list[subprocess.Popen[str]]
) -> None:
    root = tmp_path / "p"
    project = scratch_project(root, extra="\n[checks.properties]\nexamples = 10000\n")
    (root / "store.yaml").write_text(SPEC)
    text = (root / "compat.toml").read_text()
    for version in ("v1", "v2"):
        text = text.replace(
            f"[services.store.versions.{version}]\n",
            f'[services.store.versions.{version}]\nspec = "store.yaml"\n',
        )
    (root / "compat.toml").write_text(text)
    proc = subprocess.Popen(
        [*COMPAT_RUN, "--stage", "onebox", "--check", "properties", "--", "-k", "compat-checks"],
        cwd=root,
        env=env(),
        stdout=subprocess.PIPE,  # progress lines
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    procs.append(proc)
    assert proc.stdout is not None
    wait_for(proc.stdout, r"\[check\] onebox-properties-store: running", proc)
    time.sleep(1.0)  # well inside the property run (10000 examples)
    assert any(leftovers(docker_client, project).values())
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
    proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(timeout=120) == 2  # interrupted: the harness could not decide, never a pass
    assert not any(leftovers(docker_client, project).values())


# -- an xdist worker killed -----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_killed_xdist_worker_leaves_nothing_after_down(
    tmp_path: Path, docker_client: Any, procs: list[subprocess.Popen[str]]
) -> None:
    root = tmp_path / "p"
    project = scratch_project(root)
    marks = tmp_path / "marks"
    marks.mkdir()
    (root / "test_hang.py").write_text(
        "import os, pathlib, time, pytest\n"
        "@pytest.mark.compat\n"
        "def test_hang(compat_topology):\n"
        f"    pathlib.Path({str(marks)!r}, str(os.getpid())).touch()\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [*PYTEST_XDIST, "-p", "no:cacheprovider", "--compat-check", "none", "test_hang.py"],
        cwd=root,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    procs.append(proc)
    deadline = time.monotonic() + 300
    while len(list(marks.iterdir())) < 2:  # both workers have a topology up
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the workers never started their topologies"
        time.sleep(0.2)
    workers = [p for p in _children(proc.pid) if "execnet" in _cmdline(p) or "-c" in _cmdline(p)]
    assert {int(m.name) for m in marks.iterdir()} <= set(workers), (workers, _cmdline(workers[0]))
    victim = int(next(iter(marks.iterdir())).name)
    os.kill(victim, signal.SIGKILL)
    assert any(leftovers(docker_client, project, **{"io.pytest-compat.pid": str(victim)}).values())
    proc.send_signal(signal.SIGTERM)  # end the run (the other worker tears its topologies down)
    proc.communicate(timeout=180)
    down = run_compat("down", cwd=root)
    assert down.returncode == 0, down.stderr
    assert not any(leftovers(docker_client, project).values())


# -- compat down --all only touches what carries our labels --------------------------------------------


def test_down_all_leaves_a_container_it_did_not_create(docker_client: Any) -> None:
    name = f"not-compat-{uuid.uuid4().hex[:8]}"
    stranger = docker_client.containers.run(
        BASE_IMAGE,
        ["sleep", "300"],
        name=name,
        detach=True,
        labels={"io.example.owner": "someone-else", "io.pytest-compat.project": "lookalike"},
    )
    try:
        down = run_compat("down", "--all")
        assert down.returncode == 0, down.stderr
        stranger.reload()
        assert stranger.status == "running"
    finally:
        stranger.remove(force=True)
