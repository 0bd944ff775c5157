"""The docker runtime: instances as containers on one private network per run (testcontainers + SDK).

- One labelled network ``{prefix}-net`` per runtime, created on first start; every container joins it
  with its instance name (and ``spec.aliases``) as DNS aliases, so ``reserve()`` can hand out
  ``name:port`` before anything runs.
- Containers are testcontainers ``DockerContainer`` objects named ``{prefix}-{instance}``, labelled with
  the run's labels plus instance/service/version/role, never privileged, their port published on
  **127.0.0.1 only** with a random host port (testcontainers' ``with_bind_ports`` cannot say which host
  address, so the ports mapping gets the docker SDK's ``("127.0.0.1",)`` form).
- Shared state of ``kind = "volume"`` is one labelled named volume per state name per runtime, mounted
  read-write at ``state.mount``; it survives ``stop()`` and ``close()`` removes it.
- ``start()`` resolves images first (:mod:`compat.runtime.images`), then creates and starts every
  container and waits on its health path, all in parallel; the first failure cancels the rest and every
  container of that call is removed before the error is raised.

testcontainers reads its configuration when it is first imported, hence the ``setdefault``\\ s at the top
of this module (Ryuk is off: it cannot be pulled here, and :mod:`compat.runtime.cleanup` does its job).
"""

from __future__ import annotations

import os

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")

import threading  # (after the environment: testcontainers reads it on import)
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import docker  # type: ignore[import-untyped]  # no stubs; the SDK is used through Any
from docker.errors import APIError, DockerException, NotFound  # type: ignore[import-untyped]
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from compat.errors import ConfigError, EngineUnavailable, InfrastructureError, StartupError
from compat.runtime.base import (
    LABEL_INSTANCE,
    LABEL_ROLE,
    LABEL_SERVICE,
    LABEL_VERSION,
    Instance,
    InstanceSpec,
    Progress,
    RunContext,
    Runtime,
)
from compat.runtime.images import ImageResolver, ResolvedImage
from compat.runtime.parallel import Cancelled, first_error, run_parallel

HOST = "127.0.0.1"
LABEL_STATE = "io.pytest-compat.state"
LOG_TAIL = 20
API_TIMEOUT = 120  # seconds per docker API call (builds stream, so this bounds silence, not build time)
ENGINE_HINT = "start the Docker engine (ci/setup-docker.sh, or dockerd &) or use --compat-runtime process"


def connect(timeout: float = API_TIMEOUT) -> Any:
    """A docker SDK client of an engine that answers, or EngineUnavailable with the reason and a hint."""
    from compat.runtime import engine_problem

    problem = engine_problem()  # first, so a missing engine leaks no half-built client
    if problem is None:
        try:
            return docker.from_env(timeout=timeout, max_pool_size=32)
        except DockerException as exc:
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    raise EngineUnavailable(f"no Docker engine answers ({problem}); {ENGINE_HINT}")


@dataclass
class _Box:
    """A container this runtime created (and, once it has a port, the instance it is)."""

    container: DockerContainer
    instance: Instance | None = None


class DockerRuntime(Runtime):
    """Instances as containers. See the module docstring."""

    name = "docker"

    def __init__(
        self,
        context: RunContext,
        *,
        progress: Progress | None = None,
        client: Any = None,
        pull: bool = True,
    ) -> None:
        super().__init__(context, progress=progress)
        self.client = client if client is not None else connect()
        self._own_client = client is None
        self.images = ImageResolver(self.client, progress=self.progress, pull=pull)
        self._lock = threading.RLock()
        self._network: Network | None = None
        self._volumes: dict[str, str] = {}  # state name -> volume name
        self._boxes: dict[str, _Box] = {}  # instance name -> container (registered right after start)
        self._starting: set[str] = set()  # names a start() in progress owns (validated, not yet boxes)
        self._inflight = 0
        self._idle = threading.Condition(self._lock)
        self._cancels: set[threading.Event] = set()
        self._closed = False
        from compat.runtime.cleanup import register

        register(self)

    # -- addresses, network, volumes --------------------------------------------------------------------

    def reserve(self, specs: Sequence[InstanceSpec]) -> dict[str, str]:
        """``name:port`` on the run's network (the instance name is a network alias)."""
        return {spec.name: f"{spec.name}:{spec.port}" for spec in specs}

    @property
    def network_name(self) -> str:
        return f"{self.context.prefix}-net"

    def _ensure_network(self) -> Network:
        with self._lock:
            if self._network is None:
                network = Network(docker_network_kw={"labels": self.context.labels()})
                network.name = self.network_name
                try:
                    network.create()
                except DockerException as exc:
                    network._docker.client.close()  # testcontainers opens a client per Network
                    raise InfrastructureError(f"cannot create network {network.name!r}: {exc}") from exc
                self._network = network
            return self._network

    def volume_name(self, state_name: str) -> str:
        return f"{self.context.prefix}-state-{state_name}"

    def _ensure_volume(self, state_name: str) -> str:
        with self._lock:
            if state_name not in self._volumes:
                name = self.volume_name(state_name)
                try:
                    self.client.volumes.create(
                        name=name, labels={**self.context.labels(), LABEL_STATE: state_name}
                    )
                except DockerException as exc:
                    raise InfrastructureError(f"cannot create volume {name!r}: {exc}") from exc
                self._volumes[state_name] = name
            return self._volumes[state_name]

    # -- start ------------------------------------------------------------------------------------------

    def _validate(self, specs: Sequence[InstanceSpec]) -> None:
        self.check_unique(specs, {*self._boxes, *self._starting})
        for spec in specs:
            if spec.image is None and spec.build is None:
                raise ConfigError(
                    f"the docker runtime needs `image` or `build` for this version (instance {spec.name!r})",
                    key=f"services.{spec.service}.versions.{spec.version}",
                    hint='add image = "name:tag" or build = { context = "dir" }, '
                    "or use --compat-runtime process",
                )

    def start(self, specs: Sequence[InstanceSpec]) -> list[Instance]:
        specs = list(specs)
        if not specs:
            return []
        cancel = threading.Event()
        with self._lock:
            if self._closed:
                raise InfrastructureError("this docker runtime is closed; start a new one")
            self._validate(specs)
            names = [s.name for s in specs]
            self._starting.update(names)
            self._inflight += 1
            self._cancels.add(cancel)
        began = time.monotonic()
        started: dict[str, Instance] = {}

        def start_one(spec: InstanceSpec) -> None:
            started[spec.name] = self._start_one(spec, images[spec.name], network, volumes, cancel)

        try:
            images = self.images.resolve(specs)
            network = self._ensure_network()
            volumes = {n: self._ensure_volume(n) for n in _volume_states(specs)}
            errors = run_parallel(specs, start_one, cancel, "compat-start")
            if errors:
                raise first_error(errors)
        except BaseException as exc:
            cancel.set()
            try:
                self._remove(names)  # this call owns these names: nobody else's containers
            except Exception as cleanup_error:
                exc.add_note(f"removing the containers of this start failed too: {cleanup_error}")
            raise
        finally:
            with self._lock:
                self._starting.difference_update(names)
                self._inflight -= 1
                self._cancels.discard(cancel)
                self._idle.notify_all()
        self.progress("ready", f"{len(specs)} instance(s) ready in {time.monotonic() - began:.2f} s")
        return [started[name] for name in names]

    def _container(
        self, spec: InstanceSpec, image: ResolvedImage, network: Network, volumes: dict[str, str]
    ) -> DockerContainer:
        labels = {
            **self.context.labels(),
            LABEL_INSTANCE: spec.name,
            LABEL_SERVICE: spec.service,
            LABEL_VERSION: spec.version,
            LABEL_ROLE: spec.role,
        }
        container = DockerContainer(
            image.ref, docker_client_kw={"timeout": API_TIMEOUT}, labels=labels, privileged=False
        )
        container.with_name(f"{self.context.prefix}-{spec.name}")
        container.with_network(network)
        container.with_network_aliases(spec.name, *spec.aliases)
        container.with_envs(**dict(spec.env))
        # docker SDK port binding ("127.0.0.1",): that host address, a random host port
        container.ports[f"{spec.port}/tcp"] = (HOST,)  # type: ignore[assignment]
        if spec.container_command:
            container.with_command(list(spec.container_command))
        if spec.state is not None and spec.state.name in volumes:
            container.with_volume_mapping(volumes[spec.state.name], spec.state.mount, "rw")
        return container

    def _start_one(
        self,
        spec: InstanceSpec,
        image: ResolvedImage,
        network: Network,
        volumes: dict[str, str],
        cancel: threading.Event,
    ) -> Instance:
        if cancel.is_set():
            raise Cancelled(spec.name)
        container = self._container(spec, image, network, volumes)
        self.progress("start", f"{spec.name}: {image.ref}")
        try:
            container.start()
        except Exception as exc:
            _discard(container)
            reason = getattr(exc, "explanation", None) or str(exc)
            raise StartupError(
                spec.name,
                f"docker could not create or start the container: {reason}",
                status="not started",
                hint="check the image, container_command and env of this version",
            ) from exc
        with self._lock:
            if self._closed:
                _discard(container)
                raise Cancelled(spec.name)
            box = self._boxes[spec.name] = _Box(container)
        cid = container.get_container_id()
        port = self._published_port(cid, spec)
        instance = Instance(
            spec=spec,
            url=f"http://{HOST}:{port}",
            internal=f"{spec.name}:{spec.port}",
            ident=cid,
            image=image.id,
        )
        box.instance = instance
        self._await_ready(instance, cancel)
        return instance

    def _published_port(self, cid: str, spec: InstanceSpec) -> int:
        key = f"{spec.port}/tcp"
        deadline = time.monotonic() + 10
        pause = threading.Event()
        while True:
            try:
                ports = self.client.api.inspect_container(cid)["NetworkSettings"]["Ports"] or {}
            except NotFound:
                ports = {}
            for binding in ports.get(key) or []:
                if binding.get("HostIp") == HOST and binding.get("HostPort"):
                    return int(binding["HostPort"])
            gone = self._gone(cid)
            if gone is not None or time.monotonic() > deadline:
                instance = Instance(spec=spec, url="", internal="", ident=cid)
                raise StartupError(
                    spec.name,
                    gone or f"docker published no {HOST} port for {key} within 10 s",
                    status=self._status(cid),
                    logs=self.logs(instance, LOG_TAIL),
                    hint="the container must keep running; see its last log lines",
                )
            pause.wait(0.01)

    def _gone(self, cid: str) -> str | None:
        """None while the container runs, else why it does not."""
        try:
            state = self.client.api.inspect_container(cid)["State"]
        except NotFound:
            return "the container was removed"
        except (APIError, DockerException):
            return None  # can't tell: keep waiting, the deadline still applies
        if state.get("Running"):
            return None
        oom = " (killed: out of memory)" if state.get("OOMKilled") else ""
        return f"the container exited with code {state.get('ExitCode')}{oom}"

    def _status(self, cid: str) -> str:
        try:
            state = self.client.api.inspect_container(cid)["State"]
        except NotFound:
            return "removed"
        except DockerException as exc:
            return f"unknown ({exc})"
        if state.get("Running"):
            return "running"
        return f"{state.get('Status')} (exit code {state.get('ExitCode')})"

    def _await_ready(self, instance: Instance, cancel: threading.Event) -> None:
        from compat.runtime.health import wait_healthy

        spec = instance.spec
        if spec.health is None:
            gone = self._gone(instance.ident)
            if gone is not None:
                raise self._failure(instance, gone, exited=True)
            self.progress("ready", f"{spec.name} at {instance.url} (no health path)")
            return
        path = spec.health if spec.health.startswith("/") else "/" + spec.health
        result = wait_healthy(
            instance.url + path,
            timeout=spec.health_timeout,
            alive=lambda: self._gone(instance.ident),
            alive_every=0.05,
            cancel=cancel,
        )
        if result.outcome == "cancelled":
            raise Cancelled(spec.name)
        if not result.ok:
            raise self._failure(
                instance, result.describe(spec.health_timeout), exited=result.outcome == "exited"
            )
        self.progress("ready", f"{spec.name} at {instance.url} ({result.elapsed:.2f} s)")

    def _failure(self, instance: Instance, reason: str, *, exited: bool) -> StartupError:
        spec = instance.spec
        if exited:
            hint = "the container's main process ended; check the image's CMD / container_command and env"
        else:
            hint = (
                f"the app must listen on 0.0.0.0:{spec.port} inside the container and answer GET "
                f"{spec.health} with 2xx within health_timeout ({spec.health_timeout:g} s); check the "
                "service's `port` and `health`"
            )
        return StartupError(
            spec.name,
            reason,
            status=self._status(instance.ident),
            logs=self.logs(instance, LOG_TAIL),
            hint=hint,
        )

    # -- stop, logs, close ------------------------------------------------------------------------------

    def _remove(self, names: Sequence[str]) -> None:
        with self._lock:
            boxes = [self._boxes.pop(n) for n in names if n in self._boxes]
        if not boxes:
            return
        errors = run_parallel(boxes, self._remove_box, threading.Event(), "compat-stop")
        if errors:
            raise first_error(errors)

    def _remove_box(self, box: _Box) -> None:
        _discard(box.container)
        if box.instance is not None:
            self.progress("stop", box.instance.name)

    def stop(self, instances: Sequence[Instance]) -> None:
        """Remove these containers (forced, in parallel); volumes and the network stay."""
        with self._lock:
            names = [
                i.name
                for i in instances
                if (box := self._boxes.get(i.name)) is not None
                and box.instance is not None
                and box.instance.ident == i.ident
            ]
        self._remove(names)

    def logs(self, instance: Instance, tail: int = 50) -> list[str]:
        if tail <= 0:
            return []
        try:
            raw = self.client.api.logs(instance.ident, stdout=True, stderr=True, tail=tail)
        except (NotFound, DockerException):
            return []
        return bytes(raw).decode(errors="replace").splitlines()[-tail:]

    def close(self) -> None:
        """Remove every container, the network and the volumes this runtime created. Idempotent."""
        from compat.runtime.cleanup import deferred_signals, forget

        with self._lock:
            self._closed = True
            for cancel in self._cancels:
                cancel.set()
            # starts in other threads finish (their containers get registered, or discarded) first
            self._idle.wait_for(lambda: self._inflight == 0, timeout=60)
        problems: list[str] = []
        with deferred_signals():
            try:
                self._remove(list(self._boxes))
            except Exception as exc:
                problems.append(f"containers: {exc}")
            with self._lock:
                network, self._network = self._network, None
                volumes = dict(self._volumes)
            if network is not None:
                try:
                    network.remove()
                except NotFound:
                    pass
                except DockerException as exc:
                    problems.append(f"network {network.name}: {exc}")
                finally:
                    network._docker.client.close()  # testcontainers opens a client per Network
            for state_name, volume in volumes.items():
                try:
                    self.client.api.remove_volume(volume)
                except NotFound:
                    pass
                except DockerException as exc:
                    problems.append(f"volume {volume}: {exc}")
                with self._lock:
                    self._volumes.pop(state_name, None)
            if self._own_client:
                self.client.close()
        forget(self)
        if problems:
            raise InfrastructureError(
                f"closing run {self.context.run_id} left resources behind ({'; '.join(problems)}); "
                "`compat down` removes them"
            )


def _volume_states(specs: Sequence[InstanceSpec]) -> list[str]:
    """Names of the volume-kind shared states these specs mount."""
    return sorted({s.state.name for s in specs if s.state is not None and s.state.kind == "volume"})


def _discard(container: DockerContainer) -> None:
    """Remove a testcontainers container (forced, anonymous volumes too) and close its client."""
    client = container.get_docker_client().client
    try:
        wrapped = container._container  # None when create failed: nothing to remove
        if wrapped is not None:
            wrapped.remove(force=True, v=True)
    except NotFound:
        pass
    except APIError as exc:
        if not (exc.status_code == 409 and "in progress" in str(exc)):  # else: someone else removes it
            raise
    finally:
        client.close()
