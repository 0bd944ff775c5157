"""pytest entry point of pytest-compat (``pytest11: compat = compat.plugin``).

Kept thin and light on purpose: every pytest run of every project that has pytest-compat installed
imports this module, so it imports nothing heavy (no docker, testcontainers, schemathesis, pact, requests)
at module level. Options, ini keys and the ``compat`` marker are registered always (so
``--strict-markers`` runs pass with the flag off); the engine session is created and registered only
under ``--compat``. Without the flag, tests marked ``compat`` are skipped with a reason saying so.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

from compat.checks import CHECKS as CHECK_NAMES  # stdlib-only modules: the plugin stays light
from compat.config.model import RUNTIME_NAMES as RUNTIMES
from compat.topology.stages import PHASES

if TYPE_CHECKING:
    import requests

    from compat.client import ServiceClient
    from compat.session import CompatSession
    from compat.topology.builder import StageRun
    from compat.topology.model import Topology

SKIP_REASON = "mixed-version compatibility test: pass --compat to run it"
#: policies a client may ask the router for per request (X-Compat-Policy)
ROUTED_POLICIES = ("round-robin", "weighted", "sticky", "yoyo")
MARKER_KWARGS = ("stage", "stages", "phase", "phases")
STAGE_FIXTURES = ("compat_stage", "compat_topology", "compat_client", "compat_stage_data")

session_key = pytest.StashKey["CompatSession"]()
_previous_sigterm_key = pytest.StashKey[Any]()
_calls_key = pytest.StashKey[list["ServiceClient"]]()
_last_use_key = pytest.StashKey[dict[str, int]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("compat", "pytest-compat: can the old and the new version run at the same time")
    group.addoption(
        "--compat",
        action="store_true",
        default=False,
        help="start mixed-version topologies and run tests marked 'compat' against them",
    )
    group.addoption(
        "--compat-config",
        metavar="PATH",
        default=None,
        help="compat.toml or pyproject.toml to read (default: compat.toml, then [tool.compat] in rootdir)",
    )
    group.addoption(
        "--compat-stage",
        metavar="NAME",
        action="append",
        default=[],
        help="run only this stage (repeatable)",
    )
    group.addoption(
        "--compat-candidate",
        metavar="SERVICE=VERSION",
        action="append",
        default=[],
        help="make VERSION the candidate of SERVICE for this run (repeatable)",
    )
    group.addoption(
        "--compat-runtime",
        metavar="NAME",
        default=None,
        help=f"where instances run: {', '.join(RUNTIMES)} (default: config, else auto)",
    )
    group.addoption(
        "--compat-seed",
        metavar="N",
        default=None,
        help="seed for generated data, routing and plans (default: config, else 0)",
    )
    group.addoption(
        "--compat-check",
        metavar="NAME",
        action="append",
        default=[],
        help=f"built-in check to run: {', '.join(CHECK_NAMES)}, or none (repeatable; default: all)",
    )
    group.addoption(
        "--compat-report",
        metavar="DIR",
        default=None,
        help="directory for the compatibility reports (JSON, Markdown, HTML; the controller writes them)",
    )
    group.addoption(
        "--compat-dry-run",
        action="store_true",
        default=False,
        help="report findings without failing (for adopting new checks; errors still fail)",
    )
    group.addoption(
        "--compat-waivers",
        metavar="PATH",
        default=None,
        help="waivers file accepting known breaks (default: config's `waivers`)",
    )
    parser.addini("compat_config", "default for --compat-config", default=None)
    parser.addini("compat_runtime", "default for --compat-runtime", default=None)
    parser.addini("compat_seed", "default for --compat-seed", default=None)
    parser.addini("compat_stages", "default for --compat-stage", type="linelist", default=[])
    parser.addini("compat_report_dir", "default for --compat-report", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "compat(stage=None, stages=None, phase=None, phases=None): a mixed-version compatibility test, run "
        "once per selected stage (rollback: per step, or only in the given phases); runs only under --compat",
    )
    if not config.getoption("compat"):
        return
    from compat.errors import CompatError
    from compat.session import CompatSession, resolve_config

    options = _options(config)
    try:
        resolved = resolve_config(config.rootpath, options)
        waivers_file = options.waivers or resolved.waivers
        waivers = []
        if waivers_file is not None:  # read now: a bad waivers file is a usage error, not a late surprise
            from compat.gate.waivers import load_waivers

            waivers = load_waivers(waivers_file)
    except CompatError as exc:
        raise pytest.UsageError(f"pytest-compat: {exc}") from None
    session = CompatSession(resolved, options, echo=_echo(config), progress=_progress(config))
    config.stash[session_key] = session
    worker = hasattr(config, "workerinput")
    hooks = _SessionHooks(session, worker=worker, waivers=waivers, waivers_file=waivers_file)
    config.pluginmanager.register(hooks, "compat-session")
    _install_sigterm(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(session_key, None)
    if session is not None:
        session.close()
        del config.stash[session_key]
    previous = config.stash.get(_previous_sigterm_key, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
        del config.stash[_previous_sigterm_key]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Under --compat, a marked test that uses a topology runs once per selected stage run."""
    session = metafunc.config.stash.get(session_key, None)
    marks = list(metafunc.definition.iter_markers("compat"))
    if session is None or not marks or not set(STAGE_FIXTURES) & set(metafunc.fixturenames):
        return
    for mark in marks:
        _validate_marker(metafunc.definition.nodeid, mark)
    runs = [run for run in session.runs() if _wanted(run, marks)]
    if not runs:  # its stages are not selected in this run: one skipped instance that says so
        selected = ", ".join(dict.fromkeys(r.stage for r in session.runs())) or "none"
        reason = f"none of this test's stages runs here (selected stages: {selected})"
        nothing = pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-stage")
        metafunc.parametrize("compat_stage", [nothing], indirect=True)
        return
    metafunc.parametrize("compat_stage", runs, ids=[r.id for r in runs], indirect=True)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    enabled = bool(config.getoption("compat"))
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        for mark in item.iter_markers("compat"):
            _validate_marker(item.nodeid, mark)
        if not enabled and item.get_closest_marker("compat") is not None:
            item.add_marker(skip)
    if not enabled:
        return
    compat = config.stash[session_key]
    checks = compat.checks  # --compat-check names (explicit wins), else the checks [checks] enables
    if checks and not any("::" in arg for arg in config.args):  # not when the user picked test ids
        from compat.checks.tasks import check_tasks
        from compat.errors import CompatError
        from compat.pytest_items import make_items

        try:
            tasks = check_tasks(compat.config, compat.runs(), checks)
        except CompatError as exc:  # e.g. a Pact file that does not parse: the file and what is wrong
            raise pytest.UsageError(f"pytest-compat: {exc}") from None
        items.extend(make_items(session, compat, tasks))
    # Stage runs in plan order (a rollback's steps must run in sequence; each topology starts once).
    items.sort(key=lambda item: r.order if (r := _run_of(item)) else -1)
    grouped = config.pluginmanager.hasplugin("xdist")
    last_use: dict[str, int] = {}
    for index, item in enumerate(items):
        run = _run_of(item)
        if run is not None:
            last_use[run.topology_key] = index
            if grouped:  # with --dist loadgroup, all tests of one topology go to one worker, in order
                item.add_marker(pytest.mark.xdist_group(run.topology_key))
    config.stash[_last_use_key] = {k: id(items[i]) for k, i in last_use.items()}


class _SessionHooks:
    """Hooks that exist only under --compat."""

    def __init__(
        self, session: CompatSession, *, worker: bool, waivers: Any = (), waivers_file: Path | None = None
    ) -> None:
        from compat.pytest_report import Collector

        self.session = session
        self.waivers = waivers
        self.waivers_file = waivers_file
        self.collector = None if worker else Collector(session)  # the process that sees every report
        self._plans_printed = False

    def pytest_report_header(self) -> list[str]:
        cfg = self.session.config
        pairs = ", ".join(
            f"{name}: {svc.baseline} -> {svc.candidate or '(none)'}"
            for name, svc in sorted(cfg.services.items())
        )
        return [f"compat: config {cfg.path}, runtime {cfg.runtime}, seed {cfg.seed}", f"compat: {pairs}"]

    @pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown (and never called) without xdist
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist the controller collects nothing itself: it prints every selected run's plan once,
        when the first worker reports its collection."""
        if not self._plans_printed:
            self._plans_printed = True
            for line in self.session.plan_lines(self.session.runs()):
                _echo(node.config)(line)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Print the plans (rollback steps and their seed, skew combinations) before anything runs."""
        if hasattr(session.config, "workerinput"):
            return  # the controller prints them once
        runs = sorted(
            {r.id: r for item in session.items if (r := _run_of(item))}.values(), key=lambda r: r.order
        )
        for line in self.session.plan_lines(runs):
            _echo(session.config)(line)

    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Stop a stage's topology after its last test (not on xdist workers: they see a subset)."""
        run = _run_of(item)
        if run is None or hasattr(item.config, "workerinput"):
            return
        if item.config.stash.get(_last_use_key, {}).get(run.topology_key) == id(item):
            self.session.release(run)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if _is_compat_item(item):
            from compat.pytest_report import describe

            report.compat = describe(item, call, report)  # travels to the xdist controller with the report
        if report.failed and _calls_key in item.stash:
            lines = [line for client in item.stash[_calls_key] for line in client.journal()]
            if lines:
                run = _run_of(item)
                head = f"stage {run.id}" if run else "default topology"
                report.sections.append((f"compat: requests ({head}; who answered)", "\n".join(lines[-30:])))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.collector is not None:
            self.collector.add(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # First, not last: on an xdist worker, xdist's own sessionfinish tells the controller the worker
        # is done, and the controller may then end the worker process in the middle of our cleanup.
        try:
            self.session.close()
        finally:
            if self.collector is not None:
                self._report(session.config)

    def _report(self, config: pytest.Config) -> None:
        """The verdict and the report files (the process that saw every item: controller or single)."""
        import sys

        from compat.pytest_report import build_report

        assert self.collector is not None
        if not self.collector.tests and not self.collector.checks:
            return  # nothing of ours ran (e.g. --collect-only, or only unmarked tests)
        self.report = report = build_report(self.collector, sys.argv, self.waivers, self.waivers_file)
        directory = self.session.options.report_dir
        if directory is not None:
            from compat.report import write_reports

            self.written = write_reports(report, directory)
        xml = config.stash.get(_junit_key(), None)
        if xml is not None:
            from compat.report import junit_properties

            for name, value in junit_properties(report):
                xml.add_global_property(name, value)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        report = getattr(self, "report", None)
        if report is None:
            return
        from compat.report.text import render_table

        terminalreporter.write_sep("=", "compat verdict")
        for line in render_table(report).splitlines():
            terminalreporter.write_line(line)
        for path in getattr(self, "written", []):
            terminalreporter.write_line(f"report: {path}")


# -- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def compat_session(pytestconfig: pytest.Config) -> CompatSession:
    """The engine session of this run (skips the test when --compat is off)."""
    session = pytestconfig.stash.get(session_key, None)
    if session is None:
        pytest.skip(SKIP_REASON)
    return session


@pytest.fixture
def compat_stage(request: pytest.FixtureRequest) -> StageRun | None:
    """The stage run this test instance runs in (None: the default topology)."""
    return getattr(request, "param", None)


@pytest.fixture
def compat_topology(compat_session: CompatSession, compat_stage: StageRun | None) -> Topology:
    """The running topology of this test's stage run (started once per stage, shared by its tests).

    Without stages (an unmarked test, or no stage selected): every service's baseline and candidate.
    """
    return compat_session.topology(compat_stage or "default")


@pytest.fixture
def compat_stage_data(compat_session: CompatSession, compat_stage: StageRun | None) -> dict[str, Any]:
    """A dict kept for the whole stage: data written at an earlier rollback step is read at later ones."""
    return compat_session.stage_data(compat_stage.topology_key if compat_stage else "default")


@pytest.fixture
def compat_client(
    request: pytest.FixtureRequest, compat_topology: Topology
) -> Iterator[Callable[..., requests.Session]]:
    """Factory of HTTP clients bound to a service.

    ``compat_client("orders")`` goes to the service's entry point (its router in mixed stages);
    ``compat_client("orders", "candidate")`` to one version; ``session="alice"`` names the client session
    that the router's sticky and yo-yo policies key on, and ``policy="yoyo"`` asks the router to route
    this client's requests by that policy instead of the stage's. Failures list which instance answered
    each call.
    """
    from compat.client import ServiceClient

    made: list[ServiceClient] = []
    request.node.stash[_calls_key] = made

    def factory(
        service: str, which: str | None = None, *, session: str | None = None, policy: str | None = None
    ) -> requests.Session:
        if policy is not None and policy not in ROUTED_POLICIES:
            raise pytest.UsageError(
                f"compat_client: policy {policy!r}; choose one of {', '.join(ROUTED_POLICIES)}"
            )
        client = ServiceClient(
            compat_topology.url(service, which), session=session, label=service, policy=policy
        )
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


@pytest.fixture
def compat_yoyo(
    request: pytest.FixtureRequest, compat_topology: Topology, compat_client: Callable[..., requests.Session]
) -> Callable[..., requests.Session]:
    """Factory of yo-yo client sessions: ``compat_yoyo("orders")`` is a client whose consecutive requests
    the router sends to alternating versions (the canary without affinity); ``control=True`` gives the
    same client under ``sticky``, one version for good. Write multi-step flows with it as ordinary tests.

    In a stage without a router in front of ``service`` (zeta, reverse-zeta, skew), the test is skipped.
    """
    count = 0

    def factory(service: str, *, control: bool = False, session: str | None = None) -> requests.Session:
        nonlocal count
        if not compat_topology.select(service, role="router"):
            pytest.skip(
                f"stage {compat_topology.name!r} has no router in front of {service!r}: nothing to yo-yo"
            )
        count += 1
        key = session or f"yoyo-{request.node.nodeid}-{count}"
        return compat_client(service, session=key, policy="sticky" if control else "yoyo")

    return factory


# -- helpers --------------------------------------------------------------------------------------------


def _options(config: pytest.Config) -> Any:
    from compat.config import parse_candidate_option
    from compat.errors import CompatError
    from compat.session import Options

    def opt(name: str, ini: str) -> Any:
        value = config.getoption(name)
        return value if value not in (None, []) else config.getini(ini) or None

    runtime = opt("compat_runtime", "compat_runtime")
    if runtime is not None and runtime not in RUNTIMES:
        raise pytest.UsageError(
            f"--compat-runtime: {runtime!r} is not a valid runtime; choose one of {', '.join(RUNTIMES)}"
        )
    seed_text = opt("compat_seed", "compat_seed")
    seed: int | None = None
    if seed_text is not None:
        try:
            seed = int(seed_text)
        except ValueError:
            seed = -1
        if seed < 0:
            raise pytest.UsageError(f"--compat-seed: {seed_text!r} is not a valid seed; give an integer >= 0")
    candidates: dict[str, str] = {}
    for text in config.getoption("compat_candidate"):
        try:
            service, version = parse_candidate_option(text)
        except CompatError as exc:
            raise pytest.UsageError(f"pytest-compat: {exc}") from None
        candidates[service] = version
    cfg_path = opt("compat_config", "compat_config")
    report = opt("compat_report", "compat_report_dir")
    workerinput = getattr(config, "workerinput", None)
    return Options(
        config=Path(cfg_path) if cfg_path else None,
        candidates=candidates,
        runtime=runtime,
        seed=seed,
        stages=tuple(config.getoption("compat_stage") or config.getini("compat_stages")),
        report_dir=Path(report) if report else None,
        worker=workerinput["workerid"] if workerinput else "main",
        checks=_chosen_checks(config),
        dry_run=bool(config.getoption("compat_dry_run")),
        waivers=Path(w) if (w := config.getoption("compat_waivers")) else None,
    )


def _validate_marker(where: str, mark: pytest.Mark) -> None:
    unknown = sorted(set(mark.kwargs) - set(MARKER_KWARGS))
    if mark.args or unknown:
        bad = mark.args or {k: mark.kwargs[k] for k in unknown}
        raise pytest.UsageError(
            f"{where}: @pytest.mark.compat got {bad!r}; it takes only keyword arguments "
            f"{', '.join(MARKER_KWARGS)}"
        )
    for key in ("phase", "phases"):
        for phase in _names(mark.kwargs.get(key)):
            if phase not in PHASES:
                raise pytest.UsageError(
                    f"{where}: @pytest.mark.compat({key}={mark.kwargs[key]!r}): {phase!r} is not a rollback "
                    f"phase; choose from {', '.join(PHASES)}"
                )


def _names(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]  # type: ignore[attr-defined]


def _wanted(run: StageRun, marks: list[pytest.Mark]) -> bool:
    """A run is wanted when every compat mark that limits stages/phases admits it."""
    for mark in marks:
        stages = _names(mark.kwargs.get("stage")) + _names(mark.kwargs.get("stages"))
        if stages and run.stage not in stages and run.kind not in stages:
            return False
        phases = _names(mark.kwargs.get("phase")) + _names(mark.kwargs.get("phases"))
        if phases and run.phase not in phases:
            return False
    return True


def _run_of(item: pytest.Item) -> StageRun | None:
    run: StageRun | None = getattr(item, "compat_run", None)
    if run is not None:
        return run
    callspec = getattr(item, "callspec", None)
    found = callspec.params.get("compat_stage") if callspec is not None else None
    # a test whose stages were not selected gets pytest's empty-parameter-set placeholder: no stage run
    return found if hasattr(found, "topology_key") else None


def _junit_key() -> Any:
    """pytest's junitxml stash key (private API; without it the report just lacks the suite properties)."""
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - a future pytest
        return pytest.StashKey[Any]()
    return xml_key


def _is_compat_item(item: pytest.Item) -> bool:
    return hasattr(item, "compat_run") or item.get_closest_marker("compat") is not None


def _chosen_checks(config: pytest.Config) -> tuple[str, ...] | None:
    from compat.checks import chosen_checks
    from compat.errors import UsageError

    try:
        return chosen_checks(config.getoption("compat_check"), "--compat-check")
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


def _echo(config: pytest.Config) -> Callable[[str], None]:
    def echo(message: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            print(f"compat: {message}")
        elif capture is not None:  # inside a test phase: around pytest's output capture, like live logs
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"compat: {message}")
        else:
            reporter.write_line(f"compat: {message}")

    return echo


def _progress(config: pytest.Config) -> Callable[[str, str], None] | None:
    """Progress of long phases on the terminal: image builds, topology starts, rollback steps, checks.

    Quiet (``-q``) shows none; the default shows builds that really build, one line per topology start
    and each check as it begins; ``-v`` shows every instance.
    """
    verbosity = config.get_verbosity()
    if verbosity < 0:
        return None
    echo = _echo(config)

    def progress(phase: str, message: str) -> None:
        if verbosity < 1 and (
            phase in ("start", "stop")
            or (phase == "build" and "cached" in message)
            or (phase == "ready" and "instance(s) ready" not in message)
        ):
            return
        echo(f"[{phase}] {message}")

    return progress


def _install_sigterm(config: pytest.Config) -> None:
    """SIGTERM becomes KeyboardInterrupt, so pytest tears the topology down as it does on Ctrl-C."""
    if os.name != "posix":
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    with contextlib.suppress(ValueError):  # not the main thread (embedded use): atexit still cleans
        config.stash[_previous_sigterm_key] = signal.signal(signal.SIGTERM, on_sigterm)
