"""The `compat` command's contract: exit codes and one-line errors (no traceback) for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def compat(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "compat.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )


def test_config_prints_services_versions_roles_and_stages() -> None:
    result = compat("config")
    assert result.returncode == 0, result.stderr
    for text in ("orders", "web", "baseline", "candidate", "v2-cursor-format", "onebox", "rollback"):
        assert text in result.stdout


def test_config_json_is_machine_readable() -> None:
    result = compat("config", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["services"]["orders"]["versions"]["v1"]["role"] == "baseline"
    assert data["services"]["orders"]["versions"]["v2"]["role"] == "candidate"


def test_candidate_override_shows_in_config() -> None:
    data = json.loads(compat("config", "--json", "--candidate", "orders=v2-cursor-format").stdout)
    assert data["services"]["orders"]["versions"]["v2-cursor-format"]["role"] == "candidate"


@pytest.mark.parametrize(
    ("where", "args", "files", "expected"),
    [
        ("tmp", ["config"], {"compat.toml": "[services.a]\nport = 'x'\n"}, "services.a.port"),
        ("tmp", ["config"], {"compat.toml": "servces = 1\n"}, "did you mean 'services'?"),
        ("tmp", ["config"], {"compat.toml": "[services\n"}, "compat.toml"),
        ("tmp", ["config"], {}, "compat.toml"),
        ("repo", ["config", "--candidate", "nope"], {}, "SERVICE=VERSION"),
        ("repo", ["up", "--stage", "gamma", "--runtime", "process"], {}, "unknown stage 'gamma'"),
        ("repo", ["run", "--seed", "x"], {}, "invalid int value: 'x'"),
        ("repo", ["frobnicate"], {}, "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_and_exit_4(
    tmp_path: Path, where: str, args: list[str], files: dict[str, str], expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = compat(*args, cwd=tmp_path if where == "tmp" else REPO)
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_tests_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "compat.toml").write_text(
        "[services.a]\nport = 80\n[services.a.versions.v1]\nimage = 'x:1'\n"
    )
    result = compat("run", cwd=tmp_path)
    assert result.returncode == 4
    assert "tests" in result.stderr
    assert "Traceback" not in result.stderr


SPECS = REPO / "fixtures" / "orders" / "openapi"


def test_diff_prints_rule_ids_and_exits_1_on_err() -> None:
    result = compat("diff", str(SPECS / "v1.yaml"), str(SPECS / "v2-rename-field.yaml"))
    assert result.returncode == 1, result.stderr
    assert "response-required-property-removed" in result.stdout
    assert "ERR" in result.stdout


def test_diff_of_a_compatible_version_exits_0() -> None:
    result = compat("diff", str(SPECS / "v1.yaml"), str(SPECS / "v2.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_diff_of_a_missing_spec_is_a_one_line_error(tmp_path: Path) -> None:
    result = compat("diff", str(tmp_path / "nope.yaml"), str(SPECS / "v2.yaml"))
    assert result.returncode == 4
    assert "nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr
