"""Black-box tests of the pytest plugin with pytester: flag off, flag on (both runtimes), bad options,
xdist, SIGTERM. The scratch project (tests/data/scratch) has only a compat.toml, an app and a test file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, managed_resources

SCRATCH = REPO / "tests" / "data" / "scratch"
HEAVY = ("docker", "testcontainers", "schemathesis", "pact", "requests", "yaml")


@pytest.fixture
def scratch(pytester: pytest.Pytester) -> Path:
    for item in SCRATCH.iterdir():
        if item.is_file():
            shutil.copy(item, pytester.path / item.name)
    return pytester.path


def test_flag_off_skips_marked_tests_with_the_reason(pytester: pytest.Pytester, scratch: Path) -> None:
    result = pytester.runpytest("-rs", "--strict-markers")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["*pass --compat to run it*"])


def test_fixture_outside_a_marked_test_skips_without_the_flag(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_t(compat_topology):\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*pass --compat to run it*"])


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = f"import sys, compat.plugin\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_options_are_listed_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    for option in (
        "--compat ",
        "--compat-config",
        "--compat-stage",
        "--compat-candidate",
        "--compat-runtime",
        "--compat-seed",
        "--compat-report",
    ):
        result.stdout.fnmatch_lines([f"*{option}*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--compat-runtime", "vm"],
            "*--compat-runtime: 'vm' is not a valid runtime; choose one of auto, docker, process*",
        ),
        (["--compat-seed", "x1"], "*--compat-seed: 'x1' is not a valid seed; give an integer >= 0*"),
        (["--compat-seed", "-3"], "*--compat-seed: '-3' is not a valid seed*"),
        (["--compat-candidate", "store"], "*store*SERVICE=VERSION*"),
        (["--compat-candidate", "store=v9"], "*--compat-candidate*v9*v1*v2*"),
        (["--compat-candidate", "nosuch=v1"], "*--compat-candidate*nosuch*api*store*"),
        (["--compat-config", "missing.toml"], "*missing.toml*"),
    ],
)
def test_bad_options_are_usage_errors(
    pytester: pytest.Pytester, scratch: Path, args: list[str], message: str
) -> None:
    result = pytester.runpytest("--compat", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_ini_runtime_is_validated(pytester: pytest.Pytester, scratch: Path) -> None:
    pytester.makeini("[pytest]\ncompat_runtime = vm\n")
    result = pytester.runpytest("--compat")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'vm' is not a valid runtime*"])


def test_no_config_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_t():\n    pass\n")
    result = pytester.runpytest("--compat")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*compat.toml*"])


def test_bad_marker_arguments_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("import pytest\n@pytest.mark.compat('onebox')\ndef test_t():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*mark.compat got ('onebox',)*stage, stages*"])


def test_process_runtime_end_to_end(pytester: pytest.Pytester, scratch: Path) -> None:
    result = pytester.runpytest_subprocess("--compat", "--compat-runtime", "process", "-v")
    # 2 onebox-only tests + 1 test in each of the 7 default stage runs + 1 unmarked test, and the one
    # check that needs neither a spec nor contracts: canary, for both services in onebox and for the
    # rollback's subject at its mixed step
    result.assert_outcomes(passed=13)
    result.stdout.fnmatch_lines(
        ["*= compat verdict =*", "stage*tests*canary", "onebox*PASS*PASS", "verdict: PASS (exit 0)"]
    )
    result.stdout.fnmatch_lines(
        [
            "*test_every_stage_answers?onebox? PASSED*",
            "*test_every_stage_answers?rollback:3-after-rollback? PASSED*",
        ]
    )
    result.stdout.fnmatch_lines(["*compat: config*compat.toml, runtime process, seed 0*", "*api: v1 -> v2*"])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("COMPAT_BASE_IMAGE", "compat-base:bookworm")
    return env


def test_a_test_whose_stages_are_not_selected_is_skipped_with_the_reason(
    pytester: pytest.Pytester, scratch: Path
) -> None:
    result = pytester.runpytest_subprocess(
        "--compat",
        "--compat-runtime",
        "process",
        "--compat-stage",
        "zeta",
        "--compat-check",
        "none",
        "-rs",
        "-p",
        "no:xdist",  # and the plugin's optional xdist hook is fine without xdist
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*none of this test's stages runs here (selected stages: zeta)*"])
    assert "INTERNALERROR" not in result.stdout.str()


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_docker_runtime_end_to_end(pytester: pytest.Pytester, scratch: Path, docker_client: Any) -> None:
    result = pytester.runpytest_subprocess(
        "--compat", "--compat-runtime", "docker", "--junitxml=out.xml", "--compat-report", "reports"
    )
    result.assert_outcomes(passed=13)
    xml = (scratch / "out.xml").read_text()
    assert '<property name="compat.verdict" value="PASS"' in xml
    report = json.loads((scratch / "reports" / "compat-report.json").read_text())
    assert report["verdict"]["result"] == "PASS"
    assert report["run"]["runtime"] == "docker"
    # the images the boxes ran are recorded by id
    assert all(v["baseline"]["digest"].startswith("sha256:") for v in report["versions"].values())
    assert {c["check"] for c in report["checks"]} == {"canary"}
    assert (scratch / "reports" / "compat-report.md").exists()
    assert (scratch / "reports" / "compat-report.html").exists()


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_xdist_workers_get_isolated_topologies(
    pytester: pytest.Pytester, scratch: Path, docker_client: Any
) -> None:
    # --dist each: every worker runs every test, so both start a topology at the same time.
    result = pytester.runpytest_subprocess(
        "--compat",
        "--compat-runtime",
        "docker",
        "-p",
        "xdist",
        "-n",
        "2",
        "--dist",
        "each",
        "--compat-report",
        "reports",
    )
    result.assert_outcomes(passed=26)
    # the controller writes the one report, from what both workers sent it
    report = json.loads((scratch / "reports" / "compat-report.json").read_text())
    assert report["verdict"]["result"] == "PASS"
    assert len(report["tests"]) == 9  # the compat-marked ones (the unmarked test is not the gate's)
    # the controller prints the rollback plan (the workers run it)
    result.stdout.fnmatch_lines(["*rollback plan for store (seed 0; replay with --compat-seed 0)*"])


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_sigterm_mid_run_removes_the_topology(
    pytester: pytest.Pytester, scratch: Path, docker_client: Any
) -> None:
    (scratch / "test_wait.py").write_text(
        "import pytest, time\n"
        "@pytest.mark.compat\n"
        "def test_hang(compat_topology):\n"
        "    print('TOPOLOGY-UP', flush=True)\n"
        "    time.sleep(120)\n"
    )
    label = {"io.pytest-compat.project": "scratch"}
    before = managed_resources(docker_client, **label)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--compat", "--compat-runtime", "docker", "-s", "test_wait.py"],
        cwd=scratch,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "TOPOLOGY-UP" in line:
            break
        assert time.monotonic() < deadline, "the topology never came up:\n" + "".join(seen)
    assert set(managed_resources(docker_client, **label)["containers"]) - set(before["containers"])
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    after = managed_resources(docker_client, **label)
    left = {kind: sorted(set(after[kind]) - set(before[kind])) for kind in after}
    assert not any(left.values()), f"left behind after SIGTERM: {left}"


CHECKED_CONFIG = """
[services.store]
port = 8080
baseline = "v1"
candidate = "v2"

[services.store.versions.v1]
command = ["python3", "app.py", "--port", "{port}", "--host", "{host}",
           "--state", "{state_dir}", "--version", "v1"]
spec = "v1.yaml"

[services.store.versions.v2]
command = ["python3", "app.py", "--port", "{port}", "--host", "{host}",
           "--state", "{state_dir}", "--version", "v2"]
spec = "v2.yaml"
"""


def _spec(with_note_param: bool) -> str:
    required = "\n          required: true" if with_note_param else ""
    return f"""openapi: 3.0.3
info: {{title: store, version: "1"}}
paths:
  /hello:
    get:
      parameters:
        - name: who
          in: query{required}
          schema: {{type: string}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {{type: object}}
"""


@pytest.fixture
def checked(pytester: pytest.Pytester) -> Path:
    shutil.copy(SCRATCH / "app.py", pytester.path / "app.py")
    (pytester.path / "compat.toml").write_text(CHECKED_CONFIG)
    (pytester.path / "v1.yaml").write_text(_spec(False))
    (pytester.path / "v2.yaml").write_text(_spec(True))
    pytester.makepyfile("def test_plain():\n    pass\n")
    return pytester.path


def test_checks_are_collected_items_per_stage_and_fail_with_findings(
    pytester: pytest.Pytester, checked: Path
) -> None:
    result = pytester.runpytest_subprocess(
        "--compat", "--compat-runtime", "process", "-rA", "--junitxml=junit.xml"
    )
    for line in (
        "*FAILED compat-checks::spec-diff-store*",
        "*request-parameter-became-required*",
        "*who*",
        "*PASSED compat-checks::onebox-properties-store*",
    ):
        result.stdout.fnmatch_lines([line])
    junit = (checked / "junit.xml").read_text()
    assert 'name="spec-diff-store"' in junit
    assert "request-parameter-became-required" in junit


def test_compat_check_none_collects_no_check_items(pytester: pytest.Pytester, checked: Path) -> None:
    result = pytester.runpytest_subprocess(
        "--compat", "--compat-runtime", "process", "--compat-check", "none"
    )
    result.assert_outcomes(passed=1)


def test_compat_check_selects_and_validates(pytester: pytest.Pytester, checked: Path) -> None:
    result = pytester.runpytest_subprocess(
        "--compat", "--compat-runtime", "process", "--compat-check", "spec-diff", "-rA"
    )
    result.assert_outcomes(passed=1, failed=1)
    bad = pytester.runpytest("--compat", "--compat-check", "fuzz")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(
        ["*--compat-check: 'fuzz' is not a check; choose from spec-diff, contracts, properties*"]
    )


def test_a_contract_that_does_not_parse_is_a_usage_error_naming_the_file(
    pytester: pytest.Pytester, checked: Path
) -> None:
    (checked / "broken.pact.json").write_text('{"consumer": {"name": "web"}, ')
    config = (checked / "compat.toml").read_text()
    (checked / "compat.toml").write_text('contracts = ["broken.pact.json"]\n' + config)
    result = pytester.runpytest("--compat", "--compat-runtime", "process")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*broken.pact.json*"])
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
