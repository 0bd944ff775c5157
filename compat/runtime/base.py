"""The runtime interface: how a planned set of instances becomes real, and goes away again.

Two implementations ship: :mod:`compat.runtime.docker` (testcontainers + docker SDK) and
:mod:`compat.runtime.process` (local subprocesses, the no-Docker fallback). The interface names no
container concept on purpose, so a cluster runtime (a stage as a Kubernetes namespace) can plug in.

Lifecycle::

    rt = DockerRuntime(RunContext.new(project="shop"))
    addrs = rt.reserve(specs)            # internal "host:port" per instance, known before anything starts
    instances = rt.start(specs)          # build/prepare, start all in parallel, wait on health paths
    rt.stop(instances[:1])               # stop some (shared state survives: rollback steps need that)
    rt.close()                           # remove everything this runtime created; idempotent

``start`` is all-or-nothing: when one instance fails, the ones it started are stopped and a
:class:`~compat.errors.StartupError` / :class:`~compat.errors.BuildError` is raised.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compat.config.model import BuildSpec, State

LABEL_PREFIX = "io.pytest-compat"
LABEL_MANAGED = f"{LABEL_PREFIX}.managed"
LABEL_RUN = f"{LABEL_PREFIX}.run"
LABEL_PROJECT = f"{LABEL_PREFIX}.project"
LABEL_WORKER = f"{LABEL_PREFIX}.worker"
LABEL_PID = f"{LABEL_PREFIX}.pid"
LABEL_HOST = f"{LABEL_PREFIX}.host"
LABEL_KEEP = f"{LABEL_PREFIX}.keep"
LABEL_STARTED = f"{LABEL_PREFIX}.started"
LABEL_INSTANCE = f"{LABEL_PREFIX}.instance"
LABEL_SERVICE = f"{LABEL_PREFIX}.service"
LABEL_VERSION = f"{LABEL_PREFIX}.version"
LABEL_ROLE = f"{LABEL_PREFIX}.role"
LABEL_SCOPE = f"{LABEL_PREFIX}.scope"

#: Progress callback: (phase, message), phase one of "build", "start", "ready", "stop".
Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class RunContext:
    """Identity of one harness run, stamped on everything it creates."""

    run_id: str
    project: str
    worker: str = "main"  # pytest-xdist worker id ("gw0") or "main"
    keep: bool = False  # detached `compat up`: not reaped as a dead run's leftovers, only by `compat down`
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started: float = field(default_factory=time.time)
    scope: str = ""  # the topology within the run ("onebox", "rollback"): its own network, state and names

    @classmethod
    def new(cls, project: str, *, worker: str = "main", keep: bool = False) -> RunContext:
        return cls(run_id=uuid.uuid4().hex[:10], project=project, worker=worker, keep=keep)

    @property
    def prefix(self) -> str:
        """Name prefix for resources: unique per run, per xdist worker and per topology."""
        return f"compat-{self.run_id}-{self.worker}" + (f"-{self.scope}" if self.scope else "")

    def scoped(self, topology: str) -> RunContext:
        """The context of one topology of this run: same identity, its own name scope."""
        slug = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in topology.lower()).strip("-.")
        return dataclasses.replace(self, scope=slug[:40])

    def labels(self) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_RUN: self.run_id,
            LABEL_PROJECT: self.project,
            LABEL_WORKER: self.worker,
            LABEL_PID: str(self.pid),
            LABEL_HOST: self.host,
            LABEL_KEEP: "true" if self.keep else "false",
            LABEL_STARTED: str(int(self.started)),
            LABEL_SCOPE: self.scope,
        }


@dataclass(frozen=True)
class InstanceSpec:
    """One instance to run. Self-contained: runtimes need nothing but this (and the RunContext).

    ``image``/``build`` are the container source; ``command`` is the process-runtime argv, whose items
    may hold ``{port}``, ``{host}``, ``{state_dir}``, ``{service}``, ``{version}``. ``container_command``
    overrides the image's CMD (docker only). ``env`` values are final: the planner has already put
    dependency URLs in (using :meth:`Runtime.reserve`'s addresses).
    """

    name: str  # unique within a run and DNS-safe, e.g. "orders-v1-0"
    service: str
    version: str
    role: str  # "baseline" | "candidate" | "other" | "router" | "state"
    port: int  # the port the app listens on (inside the container); process runtime allocates its own
    health: str | None = "/health"  # HTTP path answering 2xx when ready; None = wait for nothing
    image: str | None = None
    build: BuildSpec | None = None
    command: tuple[str, ...] | None = None
    container_command: tuple[str, ...] | None = None
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # extra DNS names on the run's network (docker)
    state: State | None = None
    health_timeout: float = 60.0


@dataclass
class Instance:
    """A started instance."""

    spec: InstanceSpec
    url: str  # base URL from the host, always http://127.0.0.1:PORT
    internal: str  # "host:port" other instances use to reach it
    ident: str  # container id, or process id
    image: str | None = None  # image id/digest the container ran (for findings)
    started_at: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.spec.name


class Runtime(abc.ABC):
    """Start and stop instances for one run. Instances of one runtime can reach each other."""

    name: str = "abstract"

    def __init__(self, context: RunContext, *, progress: Progress | None = None) -> None:
        self.context = context
        self.progress: Progress = progress or (lambda phase, msg: None)

    @abc.abstractmethod
    def reserve(self, specs: Sequence[InstanceSpec]) -> dict[str, str]:
        """Return the internal ``host:port`` of each spec (by name) before it starts."""

    @abc.abstractmethod
    def start(self, specs: Sequence[InstanceSpec]) -> list[Instance]:
        """Prepare (build), start all specs in parallel and wait until each answers its health path."""

    @abc.abstractmethod
    def stop(self, instances: Sequence[Instance]) -> None:
        """Stop and remove these instances; shared state stays."""

    @abc.abstractmethod
    def logs(self, instance: Instance, tail: int = 50) -> list[str]:
        """The last ``tail`` lines the instance wrote."""

    @abc.abstractmethod
    def close(self) -> None:
        """Remove everything this runtime created (instances, networks, state). Idempotent."""

    @staticmethod
    def check_unique(specs: Sequence[InstanceSpec], busy: set[str] | dict[str, object]) -> None:
        """Names are unique among a run's running instances: a start may not reuse a live one's name."""
        from compat.errors import StartupError

        seen: set[str] = set()
        for spec in specs:
            if spec.name in seen or spec.name in busy:
                raise StartupError(
                    spec.name,
                    "an instance with this name is already running in this runtime",
                    hint="stop it first: instance names are unique among the running instances of a run",
                )
            seen.add(spec.name)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
