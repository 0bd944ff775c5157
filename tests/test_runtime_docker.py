"""Docker-runtime specifics on a real engine: loopback-only ports, labels, names, network aliases, state
volumes, the content-addressed image cache, build and image errors, and runtime selection.

The topology behaviour shared with the process runtime is in ``test_runtime_process.py::TestTopology``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compat.config.model import BuildSpec
from compat.errors import BuildError, ConfigError, EngineUnavailable, UsageError
from compat.runtime import select_runtime
from compat.runtime.base import (
    LABEL_INSTANCE,
    LABEL_KEEP,
    LABEL_MANAGED,
    LABEL_PID,
    LABEL_PROJECT,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_SERVICE,
    LABEL_VERSION,
    InstanceSpec,
)
from compat.runtime.process import ProcessRuntime
from tests.runtime_support import DATA, AppSpecs, context

pytestmark = pytest.mark.docker


@pytest.fixture
def docker_runtime(docker_client: Any, no_leaks: None) -> Iterator[Any]:
    from compat.runtime.docker import DockerRuntime

    runtime = DockerRuntime(context("rt-docker"))
    yield runtime
    runtime.close()


@pytest.fixture
def app(base_image: str) -> AppSpecs:
    return AppSpecs("docker", base_image)


@pytest.fixture
def fresh_context(tmp_path: Path, docker_client: Any) -> Iterator[tuple[Path, list[str]]]:
    """A copy of the test app's build context with a unique file, so its first build is a real build
    (for our cache; docker's layer cache may still hand back an existing image id), and a list the test
    appends the tags it created to: they are untagged afterwards (never removed by id: the image may be
    shared with other tags)."""
    ctx = tmp_path / "ctx"
    shutil.copytree(DATA, ctx)
    (ctx / "nonce.txt").write_text(uuid.uuid4().hex)
    built: list[str] = []
    yield ctx, built
    for tag in dict.fromkeys(built):
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag)  # untags; deletes the image only if nothing else uses it


def test_ports_labels_name_aliases_and_state_volume(
    docker_runtime: Any, docker_client: Any, app: AppSpecs
) -> None:
    spec = app("app-v1-0", aliases=("app", "app-primary"))
    (instance,) = docker_runtime.start([spec])
    info = docker_client.api.inspect_container(instance.ident)

    assert info["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    published = info["NetworkSettings"]["Ports"]["8080/tcp"]
    assert published
    assert {b["HostIp"] for b in published} == {"127.0.0.1"}
    assert instance.url == f"http://127.0.0.1:{published[0]['HostPort']}"
    docker_port = subprocess.run(
        ["docker", "port", instance.ident], capture_output=True, text=True, check=True
    ).stdout.split()
    assert docker_port == ["8080/tcp", "->", f"127.0.0.1:{published[0]['HostPort']}"]
    assert info["HostConfig"]["Privileged"] is False

    ctx = docker_runtime.context
    labels = info["Config"]["Labels"]
    assert {k: labels[k] for k in ctx.labels()} == ctx.labels()
    assert labels[LABEL_INSTANCE] == "app-v1-0"
    assert labels[LABEL_SERVICE] == "app"
    assert labels[LABEL_VERSION] == "v1"
    assert labels[LABEL_ROLE] == "baseline"
    assert info["Name"] == f"/{ctx.prefix}-app-v1-0"
    assert instance.image == info["Image"]

    network = info["NetworkSettings"]["Networks"][f"{ctx.prefix}-net"]
    assert {"app-v1-0", "app", "app-primary"} <= set(network["Aliases"])
    net_labels = docker_client.networks.get(f"{ctx.prefix}-net").attrs["Labels"]
    assert net_labels[LABEL_RUN] == ctx.run_id

    (mount,) = [m for m in info["Mounts"] if m["Destination"] == "/data"]
    assert mount["Type"] == "volume"
    assert mount["RW"] is True
    assert mount["Name"] == f"{ctx.prefix}-state-notes"
    volume = docker_client.volumes.get(mount["Name"]).attrs["Labels"]
    assert volume[LABEL_RUN] == ctx.run_id
    assert volume[LABEL_PROJECT] == "rt-docker"
    assert volume[LABEL_PID] == str(ctx.pid)
    assert volume[LABEL_KEEP] == "false"


def test_images_are_cached_by_content_and_a_shared_build_runs_once(
    docker_client: Any, base_image: str, fresh_context: tuple[Path, list[str]]
) -> None:
    from compat.runtime.images import ImageResolver, ResolvedImage

    ctx, built = fresh_context
    spec = AppSpecs("docker", base_image, context=ctx)
    orders, web = spec("orders-v1-0", service="orders"), spec("web-v1-0", service="web")
    resolver = ImageResolver(docker_client)

    first = resolver.resolve([orders, web])  # same context + args: one build, tagged for both services
    digest = first["orders-v1-0"].ref.rsplit(":", 1)[1]
    built += [f"compat-build/orders:{digest}", f"compat-build/web:{digest}"]

    assert resolver.builds == 1
    assert first["orders-v1-0"].built
    assert first["orders-v1-0"].id == first["web-v1-0"].id
    ref = first["orders-v1-0"].ref
    assert ref == f"compat-build/orders:{digest}"
    assert len(digest) == 12
    image = docker_client.images.get(first["orders-v1-0"].id)
    assert {f"compat-build/orders:{digest}", f"compat-build/web:{digest}"} <= set(image.tags)
    assert image.labels.get(LABEL_MANAGED) == "true"
    assert LABEL_RUN not in image.labels

    again = ImageResolver(docker_client)
    second = again.resolve([orders])  # a later run: cache hit, same tag and image, no build

    assert second["orders-v1-0"] == ResolvedImage(ref, first["orders-v1-0"].id, built=False)
    assert again.builds == 0

    (ctx / "app.py").write_text((ctx / "app.py").read_text() + "\n# changed\n")
    changed = ImageResolver(docker_client)
    third = changed.resolve([orders])  # content changed: new tag, one new build
    built.append(third["orders-v1-0"].ref)
    assert changed.builds == 1
    assert third["orders-v1-0"].ref != ref

    (ctx / "__pycache__").mkdir()
    (ctx / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0junk")
    (ctx / ".dockerignore").write_text("notes/\n")
    (ctx / "notes").mkdir()
    (ctx / "notes" / "todo.txt").write_text("ignored")
    ignoring = ImageResolver(docker_client)
    built.append(ignoring.resolve([orders])["orders-v1-0"].ref)  # .dockerignore itself is content …
    (ctx / "notes" / "todo.txt").write_text("ignored, edited")
    ignoring.resolve([orders])  # … ignored files and __pycache__ are not
    assert ignoring.builds == 1


def test_a_failed_build_is_a_build_error_with_the_build_output(docker_runtime: Any, base_image: str) -> None:
    spec = InstanceSpec(
        name="app-v1-0",
        service="app",
        version="v1",
        role="baseline",
        port=8080,
        build=BuildSpec(context=DATA, dockerfile="Dockerfile.broken", args={"BASE_IMAGE": base_image}),
    )
    with pytest.raises(BuildError) as info:
        docker_runtime.start([spec])
    text = str(info.value)
    assert "app@v1 (instance 'app-v1-0')" in text
    assert "compat-marker: this build fails on purpose" in text
    assert "line(s) of build output" in text
    assert "docker build --build-arg BASE_IMAGE=" in text


def test_a_missing_image_is_a_build_error_naming_image_and_instance(docker_runtime: Any) -> None:
    # a registry on a closed loopback port: the pull is attempted and fails at once, no traffic leaves
    image = "127.0.0.1:9/compat-missing/app:never"
    spec = InstanceSpec(name="app-v1-0", service="app", version="v1", role="baseline", port=8080, image=image)
    with pytest.raises(BuildError) as info:
        docker_runtime.start([spec])
    text = str(info.value)
    assert repr(image) in text
    assert "'app-v1-0'" in text
    assert "could not be pulled" in text
    assert "hint:" in text


def test_a_version_without_image_or_build_is_a_config_error(docker_runtime: Any) -> None:
    spec = InstanceSpec(
        name="app-v1-0", service="app", version="v1", role="baseline", port=8080, command=("x",)
    )
    with pytest.raises(ConfigError, match="docker runtime needs `image` or `build`"):
        docker_runtime.start([spec])


def test_select_runtime(docker_client: Any, monkeypatch: pytest.MonkeyPatch, no_leaks: None) -> None:
    lines: list[str] = []
    with select_runtime("auto", context("rt-select"), echo=lines.append) as runtime:
        assert runtime.name == "docker"
        assert lines == []
    with select_runtime("process", context("rt-select"), echo=lines.append) as runtime:
        assert isinstance(runtime, ProcessRuntime)
    with pytest.raises(UsageError, match="'kubernetes' is not a valid runtime; choose one of auto"):
        select_runtime("kubernetes", context("rt-select"))

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/compat-docker.sock")
    with select_runtime("auto", context("rt-select"), echo=lines.append) as runtime:
        assert runtime.name == "process"
    assert len(lines) == 1
    assert "falling back to the process runtime" in lines[0]
    assert "no Docker engine answers" in lines[0]
    with pytest.raises(EngineUnavailable) as info:
        select_runtime("docker", context("rt-select"))
    assert "--compat-runtime process" in str(info.value)
    assert "dockerd" in str(info.value)


def test_a_base_image_missing_locally_is_named_in_the_build_error(docker_runtime: Any) -> None:
    # the engine tries to pull the FROM image from a registry on a closed loopback port: fails at once
    spec = InstanceSpec(
        name="app-v1-0",
        service="app",
        version="v1",
        role="baseline",
        port=8080,
        build=BuildSpec(context=DATA, args={"BASE_IMAGE": "127.0.0.1:9/compat-missing/base:never"}),
    )
    with pytest.raises(BuildError) as info:
        docker_runtime.start([spec])
    assert "'127.0.0.1:9/compat-missing/base:never' named by FROM are not present locally" in str(info.value)
