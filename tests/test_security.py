"""Security properties of a run: ports published on 127.0.0.1 only; no privileged container, no added
capability, no host network; planted secrets never reach a report, JUnit XML or the terminal; config values
are never run through a shell."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, managed_resources, run_compat

SCRATCH = REPO / "tests" / "data" / "scratch"
PROJECT_LABEL = "io.pytest-compat.project"
TOKEN = "compat-planted-SECRET-123"
API_KEY = "compat-planted-KEY-456"


def scratch_project(root: Path, *, tests: str = "test_scratch.py", extra: str = "", top: str = "") -> str:
    shutil.copytree(SCRATCH, root)
    project = f"sec-{uuid.uuid4().hex[:8]}"
    text = (root / "compat.toml").read_text().replace('project = "scratch"', f'project = "{project}"')
    (root / "compat.toml").write_text(f'tests = ["{tests}"]\n{top}\n' + text + extra)
    return project


@pytest.mark.docker
def test_containers_publish_on_loopback_only_and_are_not_privileged(
    tmp_path: Path, docker_client: Any
) -> None:
    root = tmp_path / "p"
    project = scratch_project(root)
    up = run_compat("up", "--stage", "onebox", "--runtime", "docker", "--detach", "--json", cwd=root)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        rows = json.loads(up.stdout)["instances"]
        assert rows
        assert all(row["url"].startswith("http://127.0.0.1:") for row in rows), rows
        infos = docker_client.api.containers(filters={"label": [f"{PROJECT_LABEL}={project}"]})
        assert len(infos) == len(rows)
        for info in infos:
            inspected = docker_client.api.inspect_container(info["Id"])
            host = inspected["HostConfig"]
            name = inspected["Name"]
            assert host["Privileged"] is False, name
            assert not host.get("CapAdd"), (name, host.get("CapAdd"))
            assert host["NetworkMode"] not in ("host",), name
            assert host.get("PidMode") in ("", None), name
            assert not any(
                b.get("HostIp") != "127.0.0.1"
                for bs in (host["PortBindings"] or {}).values()
                for b in bs or []
            ), (name, host["PortBindings"])
            published = inspected["NetworkSettings"]["Ports"] or {}
            bindings = [b for bs in published.values() for b in bs or []]
            assert bindings, name
            assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, (name, published)
            assert "host" not in inspected["NetworkSettings"]["Networks"], name
    finally:
        down = run_compat("down", cwd=root)
    assert down.returncode == 0, down.stderr
    assert not any(managed_resources(docker_client, **{PROJECT_LABEL: project}).values())


# the secrets come from the environment, as in a real suite (a literal would be shown by pytest's own
# traceback of the test's source, which is the user's text, not the harness's)
USER_TEST = """
import os, pytest

@pytest.mark.compat(stage="onebox")
def test_sends_secrets(compat_client):
    store = compat_client("store", "candidate")
    secrets = {"Authorization": "Bearer " + os.environ["PLANTED_TOKEN"],
               "X-Api-Key": os.environ["PLANTED_KEY"]}
    answer = store.get("/hello", headers=secrets)
    assert answer.status_code == 418  # fails on purpose: the failure report lists the requests
"""


def test_planted_secrets_never_reach_reports_junit_or_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTED_TOKEN", TOKEN)
    monkeypatch.setenv("PLANTED_KEY", API_KEY)
    root = tmp_path / "p"
    scratch_project(
        root,
        tests="test_secrets.py",
        top='redact_headers = ["X-Api-Key"]',
        extra='\n[checks.differential]\ntraffic = ["traffic.jsonl"]\n',
    )
    (root / "test_secrets.py").write_text(USER_TEST)
    line = {
        "method": "GET",
        "path": "/hello",
        "headers": {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY},
    }
    (root / "traffic.jsonl").write_text(json.dumps(line) + "\n")
    result = run_compat(
        "run",
        "--runtime",
        "process",
        "--stage",
        "onebox",
        "--report-dir",
        "out",
        "--",
        "--junitxml=junit.xml",
        "-rA",
        cwd=root,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]  # the user test failed
    report = json.loads((root / "out" / "compat-report.json").read_text())
    differential = [f for f in report["findings"] if f["check"] == "differential" and f.get("request")]
    assert differential, "the traffic must have produced a finding with its request as evidence"
    written = [p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".md", ".html", ".xml")]
    assert {p.name for p in written} >= {
        "compat-report.json",
        "compat-report.md",
        "compat-report.html",
        "junit.xml",
    }
    for secret in (TOKEN, API_KEY):
        assert secret not in result.stdout, secret
        assert secret not in result.stderr, secret
        for path in written:
            if path.name in ("traffic.jsonl",):
                continue
            assert secret not in path.read_text(errors="replace"), f"{secret} leaked into {path}"


@pytest.mark.parametrize("runtime", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_config_values_are_never_run_through_a_shell(
    tmp_path: Path, runtime: str, request: pytest.FixtureRequest
) -> None:
    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex[:8]}")
    evil_env = f"$(touch {marker})`touch {marker}`"
    evil_arg = f"v2; touch {marker}"
    root = tmp_path / "p"
    project = scratch_project(root, tests="test_literal.py")
    text = (root / "compat.toml").read_text()
    block = "[services.store.versions.v2]\n"
    text = text.replace(block, block + f"env = {{ APP_VERSION = {json.dumps(evil_env)} }}\n", 1)
    text = text.replace(
        '"--state", "{state_dir}", "--version", "v2"]',
        f'"--state", "{{state_dir}}", "--version", {json.dumps(evil_arg)}]',
        1,
    )
    (root / "compat.toml").write_text(text)
    expected = evil_arg if runtime == "process" else evil_env  # process: argv wins; docker: the image's CMD
    (root / "test_literal.py").write_text(
        "import pytest, requests\n"
        "@pytest.mark.compat(stage='onebox')\n"
        "def test_literal(compat_topology):\n"
        "    body = requests.get(compat_topology.url('store', 'candidate') + '/health', timeout=10).json()\n"
        f"    assert body['version'] == {expected!r}\n"
    )
    result = run_compat("run", "--runtime", runtime, "--stage", "onebox", "--check", "none", cwd=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert not marker.exists(), "a config value went through a shell"
    if runtime == "docker":
        client = request.getfixturevalue("docker_client")
        assert not any(managed_resources(client, **{PROJECT_LABEL: project}).values())
