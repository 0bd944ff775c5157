"""Shared test fixtures.

Docker tests run against a real engine. ``COMPAT_REQUIRE_DOCKER=1`` (set by ``.ci/run``) turns a
missing engine into a failure; elsewhere such tests are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")

pytest_plugins = ["pytester"]
collect_ignore = ["data"]  # scratch projects that pytester copies; not tests of this repo

REPO = Path(__file__).resolve().parent.parent
# Builds in tests use the locally built base image (no registry is reachable); child processes inherit it.
BASE_IMAGE = os.environ.setdefault("COMPAT_BASE_IMAGE", "compat-base:bookworm")
MANAGED = "io.pytest-compat.managed=true"


def _engine_problem() -> str | None:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__}: {exc}); run ci/setup-docker.sh"
    try:
        client.images.get(BASE_IMAGE)
    except Exception:
        return f"base image {BASE_IMAGE!r} is missing; run ci/setup-docker.sh"
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker SDK client for a real engine with the local base image, or skip/fail (see module doc)."""
    problem = _engine_problem()
    if problem:
        if os.environ.get("COMPAT_REQUIRE_DOCKER") == "1":
            pytest.fail(f"COMPAT_REQUIRE_DOCKER=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    import docker

    client = docker.from_env(timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    return BASE_IMAGE


def managed_resources(client: Any, **extra: str) -> dict[str, list[str]]:
    """Names of containers, networks and volumes that carry the harness's labels (optionally more)."""
    filters = {"label": [MANAGED, *(f"{k}={v}" for k, v in extra.items())]}
    # the low-level calls list without inspecting each item, so a resource removed meanwhile is no error
    return {
        "containers": [c["Names"][0].lstrip("/") for c in client.api.containers(all=True, filters=filters)],
        "networks": [n["Name"] for n in client.api.networks(filters=filters)],
        "volumes": [v["Name"] for v in (client.api.volumes(filters=filters).get("Volumes") or [])],
    }


@pytest.fixture
def no_leaks(docker_client: Any) -> Iterator[None]:
    """Assert that a test leaves no labelled container, network or volume behind that it did not find."""
    before = managed_resources(docker_client)
    yield
    after = managed_resources(docker_client)
    leaked = {kind: sorted(set(after[kind]) - set(before[kind])) for kind in after}
    assert not any(leaked.values()), f"test leaked Docker resources: {leaked}"


def run_compat(*args: str, cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The `compat` command as a user runs it (a child process), with the local base image for builds."""
    env = dict(os.environ)
    env.setdefault("COMPAT_BASE_IMAGE", "compat-base:bookworm")
    return subprocess.run(
        [sys.executable, "-m", "compat.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
