"""The CI templates (ci/templates/): valid YAML, and they do what the README promises — build the candidate,
run the gate with `pytest --compat`, publish the Markdown summary and the HTML report even when the gate
fails, and block promotion unless the report's verdict is PASS (INCONCLUSIVE included)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.report_samples import sample_report

TEMPLATES = REPO / "ci" / "templates"


def load(name: str) -> Any:
    return yaml.safe_load((TEMPLATES / name).read_text())


def test_github_actions_workflow_gates_and_publishes() -> None:
    steps = load("github-actions.yml")["jobs"]["gate"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert any("docker build" in r for r in runs)
    gate = next(s for s in steps if "python -m pytest" in s.get("run", ""))
    assert "--compat" in gate["run"]
    assert "--compat-report" in gate["run"]
    assert "if" not in gate  # a failing gate fails the job
    summary = next(s for s in steps if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert summary["if"] == "always()"
    assert "compat-report.md" in summary["run"]
    upload = next(s for s in steps if "upload-artifact" in s.get("uses", ""))
    assert upload["if"] == "always()"
    assert "COMPAT_REPORT_DIR" in upload["with"]["path"]


def test_gitlab_job_gates_keeps_artifacts_and_blocks_promotion() -> None:
    doc = load("gitlab-ci.yml")
    job = doc["compat-gate"]
    script = " ".join(job["script"])
    assert "pytest --compat" in script
    assert "--compat-report" in script
    assert job["artifacts"]["when"] == "always"
    assert "compat-report/" in job["artifacts"]["paths"]
    assert job["artifacts"]["reports"]["junit"].endswith("junit.xml")
    assert doc["promote"]["needs"] == ["compat-gate"]
    assert doc["stages"].index("gate") < doc["stages"].index("promote")


def _github_verdict_script() -> str:
    steps = load("github-actions.yml")["jobs"]["gate"]["steps"]
    block = next(s["run"] for s in steps if "verdict" in s.get("run", "") and "python" in s.get("run", ""))
    return re.search(r"<<'PY'\n(.*?)\n\s*PY", block, re.DOTALL).group(1)  # type: ignore[union-attr]


def _gitlab_verdict_script() -> str:
    job = load("gitlab-ci.yml")["compat-gate"]
    line = next(s for s in job["script"] if "sys.exit" in s)
    code = re.search(r'python -c "(.*)"', line.replace("\n", " "), re.DOTALL).group(1)  # type: ignore[union-attr]
    return code.replace("$COMPAT_REPORT_DIR", "compat-report")


@pytest.mark.parametrize("script", [_github_verdict_script, _gitlab_verdict_script], ids=["github", "gitlab"])
@pytest.mark.parametrize(("crashed", "expected"), [(False, 1), (True, 2)])
def test_the_promotion_step_exits_with_the_reports_verdict(
    tmp_path: Path, script: Any, crashed: bool, expected: int
) -> None:
    (tmp_path / "compat-report").mkdir()
    report = sample_report(crashed=crashed)
    (tmp_path / "compat-report" / "compat-report.json").write_text(json.dumps(report))
    code = subprocess.run([sys.executable, "-c", script()], cwd=tmp_path, capture_output=True, text=True)
    assert code.returncode == expected, code.stdout + code.stderr
    # and without a report (the gate never decided) it fails too
    (tmp_path / "compat-report" / "compat-report.json").unlink()
    missing = subprocess.run([sys.executable, "-c", script()], cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode != 0
