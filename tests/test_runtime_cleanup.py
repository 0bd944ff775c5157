"""Cleanup without Ryuk: liveness, signals, atexit, reaping dead runs, ``compat down`` / ``status``.

Tests that reap give their resources a fake host label and point the reaper at it (``_HOSTNAME``), so
no other test session on this machine reaps them first, and they never reap anyone else's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compat.runtime import cleanup
from compat.runtime.base import LABEL_HOST, LABEL_MANAGED, LABEL_PID, LABEL_PROJECT, LABEL_RUN
from compat.runtime.cleanup import (
    deferred_signals,
    install_signal_handlers,
    list_managed,
    pid_alive,
    reap_dead_runs,
    remove_all,
)
from compat.runtime.process import ProcessRuntime
from tests.conftest import managed_resources
from tests.runtime_support import AppSpecs, Harness, context, dead_pid


@pytest.fixture
def fake_host(monkeypatch: pytest.MonkeyPatch) -> str:
    host = f"compat-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(cleanup, "_HOSTNAME", host)
    monkeypatch.setenv("COMPAT_HARNESS_HOST", host)
    return host


@pytest.fixture
def project() -> str:
    return f"rt-cleanup-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


# -- liveness -------------------------------------------------------------------------------------------


def test_pid_alive_tells_live_dead_zombie_and_reused_pids() -> None:
    assert pid_alive(os.getpid())
    assert pid_alive(os.getpid(), started=time.time())
    assert not pid_alive(dead_pid())
    assert not pid_alive(0)
    # this process started long after the epoch: as the owner of a run stamped then, its pid was reused
    assert not pid_alive(os.getpid(), started=0.0)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while cleanup._proc_state(zombie.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.005)  # poll until it has exited (and, not waited for, is a zombie)
    assert not pid_alive(zombie.pid), "an exited, unwaited child is a zombie: dead"
    zombie.wait()


# -- signals --------------------------------------------------------------------------------------------


def test_sigterm_and_sighup_become_keyboard_interrupt(restore_signals: None) -> None:
    assert install_signal_handlers()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with pytest.raises(KeyboardInterrupt, match=signal.Signals(sig).name):
            os.kill(os.getpid(), sig)  # a signal to ourselves is handled before os.kill returns


def test_deferred_signals_hold_an_interrupt_until_cleanup_is_done(restore_signals: None) -> None:
    install_signal_handlers()
    steps = []

    def close_like() -> None:
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("cleanup went on")

    with pytest.raises(KeyboardInterrupt, match="during cleanup"):
        close_like()
    assert steps == ["cleanup went on"]
    assert signal.getsignal(signal.SIGTERM) is cleanup._raise_interrupt


@pytest.mark.parametrize("kind", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_sigterm_tears_a_run_down_and_atexit_closes_an_unclosed_one(
    kind: str, request: pytest.FixtureRequest, fake_host: str, project: str
) -> None:
    client = None
    base_image = "python:3.12-slim"
    if kind == "docker":
        request.getfixturevalue("no_leaks")
        client = request.getfixturevalue("docker_client")
        base_image = request.getfixturevalue("base_image")

    def left(report: dict[str, Any]) -> list[str]:
        if client is not None:
            found = managed_resources(client, **{LABEL_RUN: report["run_id"]})
            return [name for names in found.values() for name in names]
        pids = [str(i["ident"]) for i in report["instances"] if pid_alive(int(i["ident"]))]
        return pids + ([report["run_dir"]] if Path(report["run_dir"]).exists() else [])

    hanging = Harness.start(kind, project, "hang", base_image)
    assert left(hanging.report), "the harness must have started something"
    hanging.proc.send_signal(signal.SIGTERM)
    code, out, err = hanging.finish()
    assert code == 130, err
    assert "tearing down" in out
    assert left(hanging.report) == []

    exiting = Harness.start(kind, project, "exit", base_image)
    code, out, err = exiting.finish()
    assert code == 0, err
    assert left(exiting.report) == [], "the atexit hook must close a runtime nobody closed"


# -- reaping docker leftovers ---------------------------------------------------------------------------


@pytest.mark.docker
def test_reap_removes_dead_runs_only(
    docker_client: Any, base_image: str, no_leaks: None, fake_host: str, project: str
) -> None:
    from compat.runtime.docker import DockerRuntime

    app = AppSpecs("docker", base_image)
    gone = dead_pid()
    dead = DockerRuntime(context(project, pid=gone, host=fake_host))
    kept = DockerRuntime(context(project, pid=gone, host=fake_host, keep=True))
    live = DockerRuntime(context(project, host=fake_host))
    strangers = []
    try:
        for runtime in (dead, kept, live):
            runtime.start([app("app-v1-0")])
        sleeper = ["python3", "-c", "import time; time.sleep(120)"]
        strangers.append(
            docker_client.containers.run(
                base_image, sleeper, detach=True, labels={"org.example.unrelated": "yes"}
            )
        )
        strangers.append(
            docker_client.containers.run(  # ours, but another host's (say, a shared engine)
                base_image,
                sleeper,
                detach=True,
                labels={
                    LABEL_MANAGED: "true",
                    LABEL_RUN: "elsewhere",
                    LABEL_HOST: "another-host",
                    LABEL_PID: str(gone),
                    LABEL_PROJECT: project,
                },
            )
        )
        lines: list[str] = []

        report = reap_dead_runs(project=project, echo=lines.append)

        prefix = dead.context.prefix
        assert report.runs == {dead.context.run_id}
        assert report.containers == [f"{prefix}-app-v1-0"]
        assert report.networks == [f"{prefix}-net"]
        assert report.volumes == [f"{prefix}-state-notes"]
        assert len(lines) == 1
        assert "1 container(s), 1 network(s), 1 volume(s)" in lines[0]

        def names(runtime: DockerRuntime) -> list[str]:
            found = managed_resources(docker_client, **{LABEL_RUN: runtime.context.run_id})
            return sorted(n for kind in found.values() for n in kind)

        assert names(dead) == []
        assert len(names(kept)) == 3
        assert len(names(live)) == 3
        for stranger in strangers:
            stranger.reload()
            assert stranger.status == "running"

        assert reap_dead_runs(project=project, echo=None).total == 0  # nothing dead left
        with_kept = reap_dead_runs(project=project, include_kept=True, echo=None)
        assert with_kept.runs == {kept.context.run_id}
        assert names(kept) == []
        assert len(names(live)) == 3
    finally:
        for runtime in (dead, kept, live):
            runtime.close()  # after a reap: everything is NotFound, and that is fine
        for stranger in strangers:
            stranger.remove(force=True)


@pytest.mark.docker
def test_a_sigkilled_docker_run_is_reaped_by_the_next_one(
    docker_client: Any, base_image: str, no_leaks: None, fake_host: str, project: str
) -> None:
    harness = Harness.start("docker", project, "hang", base_image)
    run_id = harness.report["run_id"]
    harness.proc.send_signal(signal.SIGKILL)
    harness.finish()
    left = managed_resources(docker_client, **{LABEL_RUN: run_id})
    assert [len(v) for v in left.values()] == [1, 1, 1], "SIGKILL leaves everything behind"

    report = reap_dead_runs(project=project, echo=None)

    assert report.runs == {run_id}
    assert managed_resources(docker_client, **{LABEL_RUN: run_id}) == {
        "containers": [],
        "networks": [],
        "volumes": [],
    }


# -- compat down / status -------------------------------------------------------------------------------


@pytest.mark.docker
def test_status_lists_and_down_removes_live_runs_of_both_runtimes(
    docker_client: Any, base_image: str, no_leaks: None, fake_host: str, project: str, tmp_path: Path
) -> None:
    from compat.runtime.docker import DockerRuntime

    docker_rt = DockerRuntime(context(project, host=fake_host))
    process_rt = ProcessRuntime(context(project, host=fake_host))
    other = ProcessRuntime(context(project, host=fake_host))
    try:
        (box,) = docker_rt.start([AppSpecs("docker", base_image)("app-v1-0")])
        (proc,) = process_rt.start([AppSpecs("process")("app-v2-0", "v2")])
        other.start([AppSpecs("process")("app-v1-0")])

        rows = [r for r in list_managed() if r["project"] == project]

        by_kind = {(r["kind"], r["run"]): r for r in rows}
        container = by_kind[("container", docker_rt.context.run_id)]
        assert container["name"] == "app-v1-0"
        assert container["url"] == box.url
        assert container["state"] == "running"
        assert container["role"] == "baseline"
        assert ("network", docker_rt.context.run_id) in by_kind
        assert ("volume", docker_rt.context.run_id) in by_kind
        process = by_kind[("process", process_rt.context.run_id)]
        assert process["url"] == proc.url
        assert process["version"] == "v2"
        assert process["state"] == f"running (pid {proc.ident})"

        only_other = remove_all(run_id=other.context.run_id)
        assert only_other.runs == {other.context.run_id}
        assert len(only_other.processes) == 1

        report = remove_all(project=project)

        assert report.runs == {docker_rt.context.run_id, process_rt.context.run_id}
        assert report.processes == [int(proc.ident)]
        assert not pid_alive(int(proc.ident))
        assert not process_rt.run_dir.exists()
        assert [r for r in list_managed() if r["project"] == project] == []
        assert "removed 1 container(s), 1 network(s), 1 volume(s), 1 process(es)" in report.summary()
    finally:
        for runtime in (docker_rt, process_rt, other):
            runtime.close()
