"""Typed configuration objects: what the harness understood from ``[tool.compat]`` / ``compat.toml``.

These are plain frozen dataclasses: every other layer reads them, none writes them. The loader in
:mod:`compat.config.loader` is the only place that builds them, after validating every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

RuntimeName = Literal["auto", "docker", "process"]
RUNTIME_NAMES: tuple[str, ...] = ("auto", "docker", "process")

#: Stage kinds the harness knows (issue: stages). A stage table's name is its kind unless ``kind`` is set.
STAGE_KINDS: tuple[str, ...] = ("onebox", "zeta", "reverse-zeta", "rollback", "skew")
ROUTER_POLICIES: tuple[str, ...] = ("round-robin", "weighted", "sticky", "yoyo", "pinned")

#: Placeholders a process-runtime command and env values may use.
COMMAND_PLACEHOLDERS: tuple[str, ...] = ("port", "host", "state_dir", "service", "version")


@dataclass(frozen=True)
class BuildSpec:
    """A Dockerfile build: context directory, Dockerfile path (relative to the context) and build args."""

    context: Path
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass(frozen=True)
class Version:
    """One concrete build of a service.

    Exactly one container source (``image`` or ``build``) may be set, and/or ``command`` for the process
    runtime. ``spec`` is this version's OpenAPI document, if any.
    """

    name: str
    service: str
    image: str | None = None
    build: BuildSpec | None = None
    command: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    spec: Path | None = None
    cwd: Path | None = None  # working directory for ``command`` (default: the config file's directory)

    @property
    def label(self) -> str:
        return f"{self.service}@{self.name}"


@dataclass(frozen=True)
class Dependency:
    """``service`` depends on ``target``; ``env`` (if set) receives the target's base URL."""

    target: str
    env: str | None = None


@dataclass(frozen=True)
class ProviderStates:
    """How provider states (Pact) are set up: an HTTP path on the service, or a Python callable."""

    url: str | None = None  # a path such as "/_compat/provider-states", POSTed on the service
    callable: str | None = None  # "module:function"


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    health: str
    versions: dict[str, Version]
    baseline: str
    candidate: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[Dependency, ...] = ()
    state: str | None = None  # name of a [state.*] entry this service shares
    replicas: int = 2  # baseline instances in a mixed stage (onebox: baseline x replicas + candidate x 1)
    provider_states: ProviderStates | None = None
    contracts: tuple[Path, ...] = ()  # Pact files in which this service is the provider
    health_timeout: float = 60.0
    from_compose: bool = False

    @property
    def baseline_version(self) -> Version:
        return self.versions[self.baseline]

    @property
    def candidate_version(self) -> Version | None:
        return self.versions[self.candidate] if self.candidate else None

    def role_of(self, version: str) -> str:
        if version == self.baseline:
            return "baseline"
        if version == self.candidate:
            return "candidate"
        return "other"


@dataclass(frozen=True)
class State:
    """Shared state every replica of the services using it sees.

    ``kind = "volume"``: a Docker volume mounted at ``mount`` (docker runtime) or a directory that
    replaces ``{state_dir}`` (process runtime). ``kind = "service"``: a database service of this config
    (named by ``service``) that is started once per topology at its baseline and never mixed.
    """

    name: str
    kind: Literal["volume", "service"]
    mount: str = "/data"
    service: str | None = None


@dataclass(frozen=True)
class Stage:
    """A named stage plan (``[stages.NAME]``); interpreted by :mod:`compat.topology`."""

    name: str
    kind: str
    enabled: bool = True
    services: tuple[str, ...] = ()  # services under change; empty = every service with a candidate
    policy: str = "round-robin"
    weight: float = 0.5  # candidate share of traffic under the weighted policy
    replicas: int | None = None  # overrides Service.replicas
    chain: tuple[str, ...] = ()  # for skew: the call chain, frontmost first
    seed: int | None = None
    options: dict[str, object] = field(default_factory=dict)  # kind-specific extras, validated by the planner
    faults: dict[str, dict[str, float]] = field(default_factory=dict)  # role or version -> router fault


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration."""

    path: Path  # the file it came from
    root: Path  # directory relative paths are resolved against
    project: str
    services: dict[str, Service]
    state: dict[str, State] = field(default_factory=dict)
    stages: dict[str, Stage] = field(default_factory=dict)
    runtime: RuntimeName = "auto"
    seed: int = 0
    contracts: tuple[Path, ...] = ()
    tests: tuple[Path, ...] = ()  # test paths `compat run` hands to pytest
    compose_file: Path | None = None
    startup_timeout: float = 60.0
    redact_headers: tuple[str, ...] = ()
    checks: Checks = field(default_factory=lambda: Checks())
    waivers: Path | None = None  # a compat-waivers.toml accepting known breaks

    def service(self, name: str) -> Service:
        return self.services[name]

    def dependency_order(self) -> list[str]:
        """Service names, dependencies before dependants (the loader rejects cycles)."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            for dep in self.services[name].depends_on:
                visit(dep.target)
            order.append(name)

        for name in sorted(self.services):
            visit(name)
        return order


#: Every built-in check, in collection order (``compat.checks.CHECKS`` re-exports this).
CHECK_NAMES: tuple[str, ...] = (
    "spec-diff",
    "contracts",
    "properties",
    "differential",
    "yoyo",
    "data",
    "canary",
)


@dataclass(frozen=True)
class Noise:
    """``[checks.noise]``: what differs between any two answers without meaning anything."""

    ignore: tuple[str, ...] = ()  # JSON paths whose values are never compared
    unordered: tuple[str, ...] = ()  # JSON paths of arrays compared as multisets
    ignore_headers: tuple[str, ...] = ()  # header names never compared


@dataclass(frozen=True)
class CheckConfig:
    """``[checks.NAME]``: whether the check runs, whether its findings may fail the run, its options."""

    name: str
    enabled: bool = True
    dry_run: bool = False  # findings are reported, never blocking (for adopting a new check)
    options: dict[str, object] = field(default_factory=dict)  # every option, defaults filled in


@dataclass(frozen=True)
class Checks:
    """``[checks]``: per-check settings and the shared noise rules."""

    settings: dict[str, CheckConfig] = field(default_factory=dict)
    noise: Noise = field(default_factory=Noise)

    def get(self, name: str) -> CheckConfig:
        from compat.config.checks import default_check

        return self.settings.get(name) or default_check(name)

    def enabled(self) -> tuple[str, ...]:
        return tuple(n for n in CHECK_NAMES if self.get(n).enabled)

    def option(self, check: str, name: str) -> object:
        return self.get(check).options[name]
