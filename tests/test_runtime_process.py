"""The process runtime passes the same topology tests as the docker runtime, plus its own.

``TestTopology`` runs against both runtimes (the docker half on a real engine, guarded by ``no_leaks``);
the functions below it are process-specific: ports, argv placeholders without a shell, env, group
kills, and reaping the processes of a SIGKILLed run.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from compat.errors import ConfigError, StartupError
from compat.runtime import cleanup
from compat.runtime.base import Runtime
from compat.runtime.cleanup import pid_alive, reap_dead_runs
from compat.runtime.process import ProcessRuntime
from tests.conftest import managed_resources
from tests.runtime_support import DATA, AppSpecs, Harness, context, get, live_instances, put


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("no_leaks")  # set up first, so it checks after every runtime is closed
    return str(request.param)


@pytest.fixture
def app(kind: str, request: pytest.FixtureRequest) -> AppSpecs:
    if kind == "docker":
        return AppSpecs(kind, request.getfixturevalue("base_image"))
    return AppSpecs(kind)


@pytest.fixture
def make_runtime(kind: str, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    made: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        ctx = context("rt-suite", **overrides)
        runtime: Runtime
        if kind == "process":
            runtime = ProcessRuntime(ctx, base_dir=tmp_path / "runs")
        else:
            from compat.runtime.docker import DockerRuntime

            runtime = DockerRuntime(ctx)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


@pytest.fixture
def live(kind: str, request: pytest.FixtureRequest) -> Callable[[Runtime], list[str]]:
    client = request.getfixturevalue("docker_client") if kind == "docker" else None
    return lambda runtime: live_instances(runtime, client)


class TestTopology:
    """Same behaviour on both runtimes."""

    def test_three_instances_of_two_versions_share_state_and_reach_each_other(
        self, app: AppSpecs, make_runtime: Callable[..., Runtime]
    ) -> None:
        runtime = make_runtime()
        writer, reader = app("app-v1-0", "v1"), app("app-v2-0", "v2")
        addresses = runtime.reserve([writer, reader])
        caller = app("app-v2-1", "v2", env={"BACKEND_URL": f"http://{addresses['app-v1-0']}"})
        assert runtime.reserve([writer, reader, caller])["app-v1-0"] == addresses["app-v1-0"]

        instances = runtime.start([writer, reader, caller])

        by_name = {i.name: i for i in instances}
        assert list(by_name) == ["app-v1-0", "app-v2-0", "app-v2-1"]
        assert all(i.url.startswith("http://127.0.0.1:") for i in instances)
        assert by_name["app-v1-0"].internal == addresses["app-v1-0"]
        assert get(by_name["app-v1-0"].url + "/health").json()["version"] == "v1"
        assert get(by_name["app-v2-0"].url + "/health").json()["version"] == "v2"
        assert put(by_name["app-v1-0"].url + "/state/greeting", "written by v1").ok
        read = get(by_name["app-v2-0"].url + "/state/greeting").json()
        assert read == {"value": "written by v1", "read_by": "v2"}
        called = get(by_name["app-v2-1"].url + "/call").json()
        assert called["backend"]["version"] == "v1"
        assert called["backend_url"] == f"http://{addresses['app-v1-0']}"
        assert any("listening on" in line for line in runtime.logs(by_name["app-v2-1"], tail=5))

    def test_health_failure_is_a_startup_error_with_logs_and_nothing_is_left_running(
        self, app: AppSpecs, make_runtime: Callable[..., Runtime], live: Callable[[Runtime], list[str]]
    ) -> None:
        runtime = make_runtime()
        good = app("app-v1-0")
        bad = app("app-v1-1", flags=("--fail-health",), health_timeout=1.5)

        with pytest.raises(StartupError) as info:
            runtime.start([good, bad])

        err = info.value
        assert err.instance == "app-v1-1"
        assert "never answered 2xx within 1.5 s" in err.reason
        assert "HTTP 503" in err.reason
        assert any("failing health on purpose" in line for line in err.logs), err.logs
        assert err.status is not None
        assert err.status.startswith("running")
        assert err.hint
        assert "/health" in err.hint
        assert live(runtime) == [], "the healthy instance of a failed start must be stopped too"

    def test_an_app_that_exits_at_once_fails_fast_with_its_exit_code(
        self, app: AppSpecs, make_runtime: Callable[..., Runtime], live: Callable[[Runtime], list[str]]
    ) -> None:
        runtime = make_runtime()
        runtime.start([app("app-v1-0")])  # warm (image built) so the timing measures the failure only
        began = time.monotonic()

        with pytest.raises(StartupError) as info:
            runtime.start([app("app-v1-1", flags=("--exit-at-once", "3"), health_timeout=30)])

        elapsed = time.monotonic() - began
        assert elapsed < 5, f"an exit must fail the start at once, not at the timeout ({elapsed:.1f} s)"
        err = info.value
        assert "exited with code 3" in err.reason
        assert err.status is not None
        assert "exit code 3" in err.status
        assert any("exiting at once with code 3" in line for line in err.logs), err.logs
        assert len(live(runtime)) == 1  # the earlier instance, untouched by the failed start

    def test_stop_keeps_shared_state_and_close_is_idempotent(
        self,
        kind: str,
        app: AppSpecs,
        make_runtime: Callable[..., Runtime],
        live: Callable[[Runtime], list[str]],
        request: pytest.FixtureRequest,
    ) -> None:
        runtime = make_runtime()
        (writer,) = runtime.start([app("app-v1-0")])
        assert put(writer.url + "/state/order-1", "kept").ok

        runtime.stop([writer])
        assert live(runtime) == []
        runtime.stop([writer])  # stopping twice is harmless

        again, reader = runtime.start([app("app-v1-0"), app("app-v2-0", "v2")])  # the name is free again
        assert get(reader.url + "/state/order-1").json()["value"] == "kept"
        assert get(again.url + "/state/order-1").json()["value"] == "kept"

        runtime.close()
        runtime.close()
        assert live(runtime) == []
        if kind == "process":
            assert isinstance(runtime, ProcessRuntime)
            assert not runtime.run_dir.exists()
        else:
            left = managed_resources(
                request.getfixturevalue("docker_client"), **{"io.pytest-compat.run": runtime.context.run_id}
            )
            assert left == {"containers": [], "networks": [], "volumes": []}

    def test_a_running_name_cannot_start_twice(
        self, app: AppSpecs, make_runtime: Callable[..., Runtime]
    ) -> None:
        runtime = make_runtime()
        runtime.start([app("app-v1-0")])
        with pytest.raises(StartupError, match="already running in this runtime"):
            runtime.start([app("app-v1-0")])


# -- process runtime only --------------------------------------------------------------------------------


@pytest.fixture
def proc_runtime(tmp_path: Path) -> Iterator[ProcessRuntime]:
    runtime = ProcessRuntime(context("rt-process"), base_dir=tmp_path / "runs")
    yield runtime
    runtime.close()


APP_SPECS = AppSpecs("process")


def test_reserve_hands_out_distinct_loopback_ports_stable_until_started(proc_runtime: ProcessRuntime) -> None:
    specs = [APP_SPECS(f"app-v1-{i}") for i in range(3)]
    first = proc_runtime.reserve(specs)
    assert len(set(first.values())) == 3
    assert all(addr.startswith("127.0.0.1:") for addr in first.values())
    assert proc_runtime.reserve(specs) == first

    (instance,) = proc_runtime.start(specs[:1])

    assert instance.internal == first["app-v1-0"]
    assert instance.url == f"http://{first['app-v1-0']}"
    assert instance.ident.isdigit()
    assert proc_runtime.reserve(specs[:1]) == {"app-v1-0": first["app-v1-0"]}  # a running one keeps its port


def test_argv_placeholders_are_substituted_per_item_never_through_a_shell(
    proc_runtime: ProcessRuntime, tmp_path: Path
) -> None:
    marker = tmp_path / "shell-ran"
    spec = APP_SPECS("app-v1-0", flags=(f"$(touch {marker}); {{service}}", "{{literal}}"))

    (instance,) = proc_runtime.start([spec])

    seen = get(instance.url + "/argv").json()
    port = instance.url.rsplit(":", 1)[1]
    state_dir = str(proc_runtime.state_dir("notes"))
    assert seen["argv"] == [
        "--port",
        port,
        "--host",
        "127.0.0.1",
        "--state",
        state_dir,
        "--version",
        "v1",
        f"$(touch {marker}); app",
        "{literal}",
    ]
    assert seen["cwd"] == str(DATA)
    assert not marker.exists()


def test_env_inherits_the_environment_adds_spec_env_and_port(
    proc_runtime: ProcessRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPAT_TEST_INHERITED", "from-the-harness")
    router_config = '{"service": "app", "upstreams": [{"address": "x"}]}'
    spec = APP_SPECS("app-v1-0", env={"GREETING": "hi", "SELF": "http://{host}:{port}", "CFG": router_config})

    (instance,) = proc_runtime.start([spec])

    def env(name: str) -> object:
        return get(f"{instance.url}/env/{name}").json()["value"]

    assert env("COMPAT_TEST_INHERITED") == "from-the-harness"
    assert env("GREETING") == "hi"
    assert env("PORT") == instance.url.rsplit(":", 1)[1]
    assert env("SELF") == instance.url
    assert env("CFG") == router_config  # JSON braces are not placeholders
    assert env("COMPAT_RUN_ID") == proc_runtime.context.run_id


def test_a_version_without_command_is_a_config_error(proc_runtime: ProcessRuntime) -> None:
    from compat.runtime.base import InstanceSpec

    spec = InstanceSpec(name="app-v9-0", service="app", version="v9", role="candidate", port=8080, image="x")
    with pytest.raises(ConfigError) as info:
        proc_runtime.start([spec])
    assert info.value.key == "services.app.versions.v9.command"
    assert "process runtime needs a `command`" in str(info.value)


def test_a_missing_executable_is_a_startup_error(proc_runtime: ProcessRuntime) -> None:
    from compat.runtime.base import InstanceSpec

    spec = InstanceSpec(
        name="app-v1-0",
        service="app",
        version="v1",
        role="baseline",
        port=8080,
        command=("/nonexistent/compat-app", "{port}"),
    )
    with pytest.raises(StartupError, match="cannot run '/nonexistent/compat-app'"):
        proc_runtime.start([spec])
    assert live_instances(proc_runtime) == []


def test_stop_escalates_to_sigkill_and_kills_the_whole_group(proc_runtime: ProcessRuntime) -> None:
    proc_runtime.term_grace = 0.5
    (instance,) = proc_runtime.start([APP_SPECS("app-v1-0", flags=("--ignore-term", "--spawn-child"))])
    child = next(int(line.rsplit(" ", 1)[1]) for line in proc_runtime.logs(instance) if "child pid" in line)
    assert pid_alive(child)
    began = time.monotonic()

    proc_runtime.stop([instance])

    assert time.monotonic() - began >= 0.5
    assert not pid_alive(int(instance.ident))
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.01)  # the orphaned child is reaped by init; poll until it is gone
    assert not pid_alive(child), "a child left in the instance's process group must be killed too"
    assert any("ignoring SIGTERM" in line for line in proc_runtime.logs(instance))


def test_the_processes_of_a_sigkilled_run_are_reaped_by_the_next_one(monkeypatch: pytest.MonkeyPatch) -> None:
    host = f"compat-test-{os.getpid()}-{time.monotonic_ns()}"  # no other session reaps this fake host
    monkeypatch.setattr(cleanup, "_HOSTNAME", host)
    monkeypatch.setenv("COMPAT_HARNESS_HOST", host)
    harness = Harness.start("process", "rt-reap-process", "hang")
    pids = [int(i["ident"]) for i in harness.report["instances"]]
    run_dir = Path(harness.report["run_dir"])
    assert all(pid_alive(p) for p in pids)
    assert run_dir.exists()

    harness.proc.send_signal(signal.SIGKILL)
    harness.finish()
    assert all(pid_alive(p) for p in pids), "SIGKILL leaves the instances behind: that is the point"
    lines: list[str] = []

    report = reap_dead_runs(project="rt-reap-process", echo=lines.append)

    assert report.processes == pids
    assert report.run_dirs == [str(run_dir)]
    assert not run_dir.exists()
    assert not any(pid_alive(p) for p in pids)
    assert len(lines) == 1
    assert "reaped leftovers of dead runs" in lines[0]


def test_importing_compat_runtime_stays_light() -> None:
    import subprocess

    code = (
        "import sys, compat.runtime, compat.runtime.cleanup;"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'docker', 'testcontainers', 'requests'});"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
