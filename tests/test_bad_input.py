"""A corpus of malformed input, each fed to the `compat` command as a user would: the config (through the
CLI), Pact files, OpenAPI specs, waivers files, recorded traffic, saved reports and command-line arguments.

Every case must end the same way: exit code 4, exactly one ``compat: error: …`` line on stderr that names
the file / key / value, no traceback, and nothing left running (no container with the case's project
label). Malformed files live in ``tests/data/bad_inputs/``; config cases are written per test.

None of these needs a Docker engine (the bad input is found before anything starts); where an engine
answers, the "nothing left running" part is checked on it too. One case that needs the engine — an image
that does not exist — is the exception to exit 4, see :func:`test_an_image_that_does_not_exist_is_error`.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, managed_resources, run_compat

DATA = REPO / "tests" / "data" / "bad_inputs"
APP = REPO / "tests" / "data" / "scratch" / "app.py"

CONFIG = """project = "{project}"
tests = ["test_noop.py"]
{top}
[services.store]
port = 8080
baseline = "v1"
candidate = "v2"
{service}
[services.store.versions.v1]
command = ["python3", "app.py", "--port", "{{port}}", "--host", "{{host}}", "--version", "v1"]
spec = "{spec1}"

[services.store.versions.v2]
command = ["python3", "app.py", "--port", "{{port}}", "--host", "{{host}}", "--version", "v2"]
spec = "{spec2}"
{tail}
"""


@dataclass(frozen=True)
class Case:
    """One malformed input: the command (``{data}`` = the corpus dir, ``{report}`` = a valid saved report),
    changes to the scratch config, and text the error line must contain (``{data}`` expanded too)."""

    argv: tuple[str, ...]
    expected: tuple[str, ...]
    top: str = ""
    service: str = ""
    tail: str = ""
    spec1: str = "ok.yaml"
    spec2: str = "ok.yaml"
    files: dict[str, str] = field(default_factory=dict)


RUN = ("run", "--runtime", "process", "-q")


def _pact(name: str, *expected: str) -> Any:
    return pytest.param(
        Case(RUN, (f"pact/{name}", *expected), top=f'contracts = ["{{data}}/pact/{name}"]'), id=f"pact-{name}"
    )


def _spec_run(name: str, *expected: str) -> Any:
    return pytest.param(
        Case(RUN, (f"openapi/{name}", *expected), spec2=f"{{data}}/openapi/{name}"), id=f"spec-run-{name}"
    )


def _spec_diff(name: str, *expected: str) -> Any:
    argv = ("diff", f"{{data}}/openapi/{name}", "{data}/openapi/ok.yaml")
    return pytest.param(Case(argv, (f"openapi/{name}", *expected)), id=f"spec-diff-{name}")


def _waivers(name: str, *expected: str) -> Any:
    return pytest.param(
        Case((*RUN, "--waivers", f"{{data}}/waivers/{name}"), (f"waivers/{name}", *expected)),
        id=f"waivers-run-{name}",
    )


def _traffic(name: str, *expected: str) -> Any:
    tail = f'[checks.differential]\ntraffic = ["{{data}}/traffic/{name}"]'
    return pytest.param(Case(RUN, (f"traffic/{name}", *expected), tail=tail), id=f"traffic-{name}")


def _config(case_id: str, *expected: str, argv: tuple[str, ...] = ("config",), **parts: str) -> Any:
    return pytest.param(Case(argv, ("compat.toml", *expected), **parts), id=f"config-{case_id}")


def _cli(case_id: str, argv: tuple[str, ...], *expected: str) -> Any:
    return pytest.param(Case(argv, expected), id=f"cli-{case_id}")


CASES = [
    # -- Pact files (parsed before pytest starts: `compat run` checks every input first) ---------------
    _pact("truncated.json", "invalid JSON at line 1"),
    _pact("matcher-unknown.json", "unknown matcher", "integr", "did you mean 'integer'?"),
    _pact("matcher-bad-regex.json", "the regex does not compile", "v(1|2"),
    _pact("matcher-negative-min.json", "min must be a count >= 0", "matchers[0].min"),
    _pact("array.json", "must be a JSON object", "'list'"),
    _pact("no-consumer.json", "consumer.name"),
    _pact("no-provider.json", "provider.name"),
    _pact("interactions-object.json", "interactions", "must be a list"),
    _pact("spec-v9.json", "metadata.pactSpecification.version", "'9.0.0'"),
    _pact("spec-banana.json", "not a Pact specification version", "'banana'"),
    _pact("metadata-string.json", "metadata", "'v2'"),
    _pact("missing-request.json", "interactions[0].request", "needs a request"),
    _pact("no-description.json", "interactions[0].description"),
    _pact("interaction-string.json", "interactions[0]", "must be an object"),
    _pact("not-utf8.json", "not UTF-8"),
    # -- OpenAPI specs, as a version's `spec` in `compat run` and as `compat diff` arguments -------------
    _spec_run("unclosed-flow.yaml", "invalid YAML at line 3"),
    _spec_run("swagger2.yaml", "swagger", "'2.0'"),
    _spec_run("openapi4.yaml", "openapi", "'4.0.0'"),
    _spec_run("no-openapi-key.yaml", "no `openapi` key"),
    _spec_run("list.yaml", "not an OpenAPI document"),
    _spec_run("truncated.json", "invalid JSON"),
    _spec_run("paths-list.yaml", "paths"),
    _spec_run("bad-ref.yaml", "$ref", "#/components/schemas/Missing"),
    _spec_run("remote-ref.yaml", "$ref", "only local $refs"),
    _spec_diff("unclosed-flow.yaml", "invalid YAML"),
    _spec_diff("openapi4.yaml", "'4.0.0'"),
    _spec_diff("list.yaml", "the top level is a list"),
    _spec_diff("paths-list.yaml", "`paths` must be a mapping"),
    _spec_diff("truncated.json", "invalid JSON"),
    _spec_diff("swagger2.yaml", "'2.0'"),
    _spec_diff("no-openapi-key.yaml", "no `openapi` key"),
    _spec_diff("bad-ref.yaml", "unresolvable $ref", "#/components/schemas/Missing"),
    _spec_diff("remote-ref.yaml", "only local $refs"),
    # -- waivers files -----------------------------------------------------------------------------------
    _waivers("no-reason.toml", "waiver[0]", "reason"),
    _waivers("bad-date.toml", "waiver[0].expires", "'next week'"),
    _waivers("bad-toml.toml", "invalid TOML at line 1"),
    _waivers("unknown-key.toml", "waiver[0].colour", "unknown key"),
    _waivers("not-a-table.toml", "waiver", "'all of them'"),
    _waivers("matches-everything.toml", "waiver[0]", "needs at least one matcher"),
    _waivers("unknown-check.toml", "waiver[0].check", "'fuzz'"),
    _waivers("no-expiry.toml", "waiver[0]", "expires"),
    _waivers("not-utf8.toml", "not UTF-8"),
    pytest.param(
        Case(("gate", "{report}", "--waivers", "{data}/waivers/bad-date.toml"), ("waivers/bad-date.toml",)),
        id="waivers-gate-bad-date",
    ),
    # -- recorded traffic (differential's `traffic`) -----------------------------------------------------
    _traffic("not-json.jsonl", "line 2", "not JSON"),
    _traffic("array-line.jsonl", "line 1", "must be a JSON object"),
    _traffic("no-method.jsonl", "line 1", "method"),
    _traffic("no-path.jsonl", "line 1", "path"),
    _traffic("bad-method.jsonl", "'G E T'"),
    _traffic("headers-list.jsonl", "headers"),
    _traffic("entries-object.har", "log.entries"),
    _traffic("request-string.har", "log.entries[0].request"),
    _traffic("truncated.har", "not JSON"),
    _traffic("not-utf8.jsonl", "not UTF-8"),
    # -- the config, through the CLI (compat config / compat run) ------------------------------------------
    _config("unknown-key", "services.store.prot", "did you mean 'port'?", service="prot = 1"),
    _config(
        "no-source",
        "services.store.versions.v3",
        "no image, build or command",
        tail="[services.store.versions.v3]",
    ),
    _config("replicas-0", "services.store.replicas", "(got 0)", service="replicas = 0"),
    _config("depends-on-nobody", "depends_on.nosuch", service='depends_on = { nosuch = "X_URL" }'),
    _config("undefined-state", "services.store.state", "'db'", service='state = "db"'),
    _config("state-kind", "state.db.kind", "'tape'", tail='[state.db]\nkind = "tape"\nmount = "/d"'),
    _config("stage-kind", "stages.big.kind", "'big-bang'", tail='[stages.big]\nkind = "big-bang"'),
    _config(
        "examples-negative",
        "checks.properties.examples",
        "(got -1)",
        tail="[checks.properties]\nexamples = -1",
    ),
    _config("noise-path", "checks.noise.ignore[0]", "'$..['", tail='[checks.noise]\nignore = ["$..["]'),
    _config(
        "unset-env", "NOPE_COMPAT_UNSET", tail='[services.store.versions.v3]\nimage = "${NOPE_COMPAT_UNSET}"'
    ),
    _config("seed-string", "seed", "'abc'", top='seed = "abc"'),
    _config("runtime-vm", "runtime", "'vm'", top='runtime = "vm"'),
    _config("port-range", "services.store.port", "(got 70000)"),  # see _fixups
    _config("check-unknown", "checks.enabled[0]", "'fuzz'", tail='[checks]\nenabled = ["fuzz"]'),
    _config("health-int", "services.store.health", "(got 5)", service="health = 5"),
    _config(
        "contracts-glob", "contracts[0]", "nothing-here/*.json", top='contracts = ["nothing-here/*.json"]'
    ),
    _config("duplicate-key", "invalid TOML", service="port = 9090"),
    _config(
        "waivers-missing", "waivers", "missing-waivers.toml", argv=RUN, top='waivers = "missing-waivers.toml"'
    ),
    _config(
        "traffic-glob",
        "checks.differential.traffic",
        "missing/*.jsonl",
        tail='[checks.differential]\ntraffic = ["missing/*.jsonl"]',
    ),
    # -- command-line arguments ------------------------------------------------------------------------------
    _cli("unknown-subcommand", ("frobnicate",), "invalid choice: 'frobnicate'"),
    _cli("candidate-no-equals", (*RUN, "--candidate", "store"), "'store'", "SERVICE=VERSION"),
    _cli("candidate-no-version", (*RUN, "--candidate", "store=v9"), "'store=v9'", "v1, v2"),
    _cli("candidate-no-service", ("config", "--candidate", "nosuch=v1"), "'nosuch=v1'"),
    _cli("seed-not-int", (*RUN, "--seed", "x7"), "--seed", "'x7'"),
    _cli("seed-negative", (*RUN, "--seed", "-1"), "seed", "-1"),
    _cli("runtime-choice", ("run", "--runtime", "vm"), "--runtime", "'vm'"),
    _cli("check-unknown", (*RUN, "--check", "fuzz"), "--check", "'fuzz'"),
    _cli("stage-unknown", (*RUN, "--stage", "gamma"), "'gamma'"),
    _cli("config-missing", ("config", "--config", "nope.toml"), "nope.toml"),
    _cli("gate-missing-report", ("gate", "missing.json"), "missing.json"),
    _cli("gate-no-argument", ("gate",), "report"),
    _cli("gate-today", ("gate", "{report}", "--today", "soon"), "--today", "'soon'"),
    _cli("gate-fail-on", ("gate", "{report}", "--fail-on", "BLOCKER"), "--fail-on", "'BLOCKER'"),
    _cli("gate-truncated-report", ("gate", "{data}/report/truncated.json"), "report/truncated.json"),
    _cli("gate-not-a-report", ("gate", "{data}/report/not-a-report.json"), "report/not-a-report.json"),
    _cli("gate-array-report", ("gate", "{data}/report/array.json"), "report/array.json"),
    _cli("repro-missing-report", ("repro", "abc", "--report", "missing.json"), "missing.json"),
    _cli("repro-unknown-finding", ("repro", "nosuchid", "--report", "{report}"), "nosuchid"),
    _cli(
        "repro-bad-report",
        ("repro", "abc", "--report", "{data}/report/truncated.json"),
        "report/truncated.json",
    ),
    _cli("diff-one-spec", ("diff", "{data}/openapi/ok.yaml"), "new"),
    _cli("diff-missing-spec", ("diff", "nope.yaml", "{data}/openapi/ok.yaml"), "nope.yaml"),
]


def _engine() -> Any | None:
    """A docker client when an engine answers (for the "nothing left running" half), else None."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        return client
    except Exception:
        return None


@pytest.fixture(scope="module")
def engine() -> Any:
    client = _engine()
    yield client
    if client is not None:
        client.close()


@pytest.fixture(scope="module")
def saved_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.report_samples import sample_report

    path = tmp_path_factory.mktemp("report") / "compat-report.json"
    path.write_text(json.dumps(sample_report(crashed=False)))
    return path


def _project(root: Path, case: Case, project: str) -> None:
    shutil.copy(APP, root / "app.py")
    shutil.copy(DATA / "openapi" / "ok.yaml", root / "ok.yaml")
    (root / "test_noop.py").write_text("def test_noop():\n    pass\n")
    text = CONFIG.format(
        project=project,
        top=case.top,
        service=case.service,
        tail=case.tail,
        spec1=case.spec1,
        spec2=case.spec2,
    ).replace("{data}", DATA.as_posix())
    for name, content in case.files.items():
        (root / name).write_text(content)
    (root / "compat.toml").write_text(text)


def _fixups(case_id: str, root: Path) -> None:
    """Cases that are easier to write as a change to the rendered config."""
    path = root / "compat.toml"
    if case_id == "config-port-range":
        path.write_text(path.read_text().replace("port = 8080", "port = 70000"))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_4_and_leaves_nothing(
    case: Case, tmp_path: Path, saved_report: Path, engine: Any, request: pytest.FixtureRequest
) -> None:
    project = f"bad-input-{uuid.uuid4().hex[:8]}"
    _project(tmp_path, case, project)
    _fixups(request.node.callspec.id, tmp_path)
    fill = {"{data}": DATA.as_posix(), "{report}": str(saved_report)}

    def expand(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    result = run_compat(*(expand(a) for a in case.argv), cwd=tmp_path, timeout=120)
    err_lines = [line for line in result.stderr.splitlines() if line.startswith("compat: error:")]
    assert result.returncode == 4, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert len(err_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for text in case.expected:
        assert expand(text) in err_lines[0], (text, err_lines[0])
    assert not (tmp_path / "compat-report" / "compat-report.json").exists()
    if engine is not None:
        left = managed_resources(engine, **{"io.pytest-compat.project": project})
        assert not any(left.values()), f"left running after bad input: {left}"


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 50
    on_disk = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file()} - {"openapi/ok.yaml"}
    used = {
        text
        for param in CASES
        for case in param.values
        for text in (*case.argv, case.top, case.tail, case.spec2)
    }
    unused = sorted(f for f in on_disk if not any(f in text for text in used))
    assert not unused, f"corpus files no case uses: {unused}"


# -- an image that does not exist ------------------------------------------------------------------------


@pytest.mark.docker
def test_an_image_that_does_not_exist_is_error_naming_it(tmp_path: Path, docker_client: Any) -> None:
    """``image = "nosuch/image:1"`` cannot be told apart from a registry that is down or needs a login:
    the engine only says the pull failed. So it stays an infrastructure ERROR (exit 2, fail closed, like
    an image that will not build), with one message naming the image, the instance and the failed pull."""
    project = f"bad-image-{uuid.uuid4().hex[:8]}"
    (tmp_path / "test_noop.py").write_text(
        "import pytest\n@pytest.mark.compat\ndef test_up(compat_topology):\n    pass\n"
    )
    (tmp_path / "compat.toml").write_text(
        f'project = "{project}"\ntests = ["test_noop.py"]\n[services.store]\nport = 8080\nbaseline = "v1"\n'
        'candidate = "v2"\n[services.store.versions.v1]\nimage = "nosuch/image:1"\n'
        '[services.store.versions.v2]\nimage = "nosuch/image:2"\n'
    )
    result = run_compat("run", "--runtime", "docker", "--stage", "onebox", "--check", "none", cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-2000:]
    assert "verdict: ERROR (exit 2)" in result.stdout
    assert "nosuch/image:" in result.stdout, result.stdout[-3000:]
    assert "pull" in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in result.stderr
    report = json.loads((tmp_path / "compat-report" / "compat-report.json").read_text())
    assert report["verdict"]["result"] == "ERROR"
    left = managed_resources(docker_client, **{"io.pytest-compat.project": project})
    assert not any(left.values()), left
