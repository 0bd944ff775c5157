"""Shared test fixtures.

Docker tests run against a real engine. ``COMPAT_REQUIRE_DOCKER=1`` (set by ``.ci/run``) turns a
missing engine into a failure; elsewhere such tests are skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = os.environ.get("COMPAT_BASE_IMAGE", "compat-base:bookworm")
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
    filters = [MANAGED, *(f"{k}={v}" for k, v in extra.items())]
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters={"label": filters})],
        "networks": [n.name for n in client.networks.list(filters={"label": filters})],
        "volumes": [v.name for v in client.volumes.list(filters={"label": filters})],
    }


@pytest.fixture
def no_leaks(docker_client: Any) -> Iterator[None]:
    """Assert that a test leaves no labelled container, network or volume behind that it did not find."""
    before = managed_resources(docker_client)
    yield
    after = managed_resources(docker_client)
    leaked = {kind: sorted(set(after[kind]) - set(before[kind])) for kind in after}
    assert not any(leaked.values()), f"test leaked Docker resources: {leaked}"
