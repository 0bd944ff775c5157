"""The gate as a pipeline sees it: `compat run` exit codes (an image that cannot build and a box that never
gets healthy are ERROR, exit 2, never a pass), `compat gate` re-evaluating a saved report with waivers and
thresholds, and `compat repro` replaying a finding from a saved report on a fresh stage."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, run_compat
from tests.report_samples import sample_report

SCRATCH = REPO / "tests" / "data" / "scratch"


compat = run_compat


# -- compat gate: a saved report, re-evaluated -------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "compat-report.json"
    path.write_text(json.dumps(sample_report(crashed=False)))
    return path


def test_gate_reproduces_the_saved_verdict(saved: Path) -> None:
    result = compat("gate", str(saved), "--today", "2026-06-01")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verdict: FAIL (exit 1)" in result.stdout
    assert re.search(r"^onebox\s+PASS\s+FAIL\s+FAIL", result.stdout, re.MULTILINE), result.stdout


def test_gate_with_waivers_for_every_blocking_finding_passes(saved: Path, tmp_path: Path) -> None:
    waivers = tmp_path / "compat-waivers.toml"
    waivers.write_text(
        '[[waiver]]\ncheck = "contracts"\nreason = "consumer migrated, SHOP-12"\nexpires = 2027-01-31\n'
        '[[waiver]]\ncheck = "properties"\nstage = "onebox"\nreason = "known, SHOP-13"\n'
        "expires = 2027-01-31\n"
    )
    result = compat("gate", str(saved), "--waivers", str(waivers), "--today", "2026-06-01", "--json")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"]["result"] == "PASS"
    assert {f["status"] for f in report["findings"]} == {"waived"}


def test_an_expired_waiver_stops_applying_and_says_so(saved: Path, tmp_path: Path) -> None:
    waivers = tmp_path / "compat-waivers.toml"
    waivers.write_text('[[waiver]]\ncheck = "contracts"\nreason = "SHOP-12"\nexpires = 2026-01-31\n')
    result = compat("gate", str(saved), "--waivers", str(waivers), "--today", "2026-06-01", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert any("expired on 2026-01-31" in note for note in report["waivers"]["notes"]), report["waivers"]


def test_gate_dry_run_reports_but_passes_and_fail_on_warn_is_stricter(saved: Path) -> None:
    assert compat("gate", str(saved), "--dry-run", "-q").returncode == 0
    assert compat("gate", str(saved), "--fail-on", "WARN", "-q").returncode == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gate", "missing.json"], "missing.json"),
        (["gate", "{report}", "--waivers", "{bad}"], "waiver[0]"),
        (["gate", "{report}", "--today", "tomorrow"], "--today"),
        (["repro", "abc", "--report", "missing.json"], "missing.json"),
        (["repro", "nosuchid", "--report", "{report}"], "matches no finding"),
    ],
)
def test_bad_gate_and_repro_input_is_one_line_and_exit_4(
    saved: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    bad = tmp_path / "bad-waivers.toml"
    bad.write_text('[[waiver]]\nrule = "x"\nexpires = 2027-01-01\n')  # no reason
    result = compat(*(a.format(report=saved, bad=bad) for a in args), cwd=tmp_path)
    assert result.returncode == 4, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# -- compat run: infrastructure failures are ERROR (exit 2) --------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The scratch project plus two candidates of `store` that cannot work: one whose image does not build,
    one whose box never answers its health path."""
    root = tmp_path / "scratch"
    shutil.copytree(SCRATCH, root)
    (root / "Dockerfile.broken").write_text(
        "ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\nRUN echo 'dependency missing' && exit 3\n"
    )
    (root / "Dockerfile.silent").write_text(
        "ARG BASE_IMAGE=python:3.12-slim\nFROM ${BASE_IMAGE}\n"
        'CMD ["python3", "-c", "import time; time.sleep(600)"]\n'
    )
    text = 'tests = ["test_scratch.py"]\n' + (root / "compat.toml").read_text()
    text = text.replace('state = "notes"\n', 'state = "notes"\nhealth_timeout = 4\n', 1)
    base = '{ BASE_IMAGE = "${COMPAT_BASE_IMAGE:-python:3.12-slim}" }'
    text += (
        f'\n[services.store.versions.broken]\nbuild = {{ context = ".", dockerfile = "Dockerfile.broken", '
        f"args = {base} }}\n"
        f'\n[services.store.versions.silent]\nbuild = {{ context = ".", dockerfile = "Dockerfile.silent", '
        f"args = {base} }}\n"
    )
    (root / "compat.toml").write_text(text)
    return root


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
@pytest.mark.parametrize(
    ("candidate", "cause"),
    [("broken", r"BuildError: building the image of store@broken"), ("silent", r"store@silent|silent")],
)
def test_a_candidate_that_cannot_run_is_error_not_pass(
    project: Path, docker_client: Any, candidate: str, cause: str
) -> None:
    result = compat(
        "run", "--runtime", "docker", "--candidate", f"store={candidate}", "--stage", "onebox", cwd=project
    )
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-2000:]
    assert "verdict: ERROR (exit 2)" in result.stdout
    assert re.search(cause, result.stdout), result.stdout[-3000:]
    report = json.loads((project / "compat-report" / "compat-report.json").read_text())
    assert report["verdict"]["result"] == "ERROR"
    assert all(t["verdict"] == "ERROR" for t in report["tests"] if t["stage"] == "onebox")


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_compatible_candidates_pass_and_the_report_is_written(project: Path, docker_client: Any) -> None:
    result = compat("run", "--runtime", "docker", "--stage", "onebox", "--report-dir", "out", cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "verdict: PASS (exit 0)" in result.stdout
    assert {p.name for p in (project / "out").iterdir()} >= {
        "compat-report.json",
        "compat-report.md",
        "compat-report.html",
    }


# -- compat repro ------------------------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_repro_replays_a_saved_finding_on_a_fresh_stage(tmp_path: Path, docker_client: Any) -> None:
    reports = tmp_path / "reports"
    run = compat(
        "run",
        "--runtime",
        "docker",
        "--candidate",
        "orders=v2-rename-field",
        "--stage",
        "onebox",
        "--check",
        "differential",
        "--report-dir",
        str(reports),
        "--",
        "-k",
        "compat-checks",
    )
    assert run.returncode == 1, run.stdout[-3000:]
    report = json.loads((reports / "compat-report.json").read_text())
    finding = next(f for f in report["findings"] if f["check"] == "differential" and f["request"])
    repro = compat("repro", finding["id"][:8], "--report", str(reports / "compat-report.json"))
    assert repro.returncode == 1, repro.stdout[-3000:] + repro.stderr[-2000:]  # still broken
    assert f"finding {finding['id']}" in repro.stdout
    assert "replaying" in repro.stdout
    assert "-> reproduced" in repro.stdout
