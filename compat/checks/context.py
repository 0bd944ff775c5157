"""What a stage check gets (:class:`StageContext`) and what it gives back (:class:`TaskResult`).

The stage checks (``differential``, ``yoyo``, ``data``, ``canary``) need more than an entry URL: the
individual instances of each version, the router in front of them, data that survives the steps of a
rollback, the noise rules and their own options. They get all of it here and nothing else; they never touch
the runtime or pytest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compat.checks.finding import Finding

if TYPE_CHECKING:
    from compat.checks._noise import NoiseRules
    from compat.config.model import CheckConfig, Config
    from compat.runtime.base import Instance
    from compat.topology.builder import StageRun
    from compat.topology.model import Topology


@dataclass
class TaskResult:
    """The outcome of one check task.

    ``findings``: what is wrong (blocking or not, by level). ``notes``: what the check did not do and why
    (skipped requests, a calibration that was impossible) and what it measured — reported, never failing.
    ``inconclusive``: the check could not judge (too little traffic); the verdict is INCONCLUSIVE, never
    PASS. ``metrics``: numbers for the report (requests sent, pages walked, error rates).
    """

    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inconclusive: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageContext:
    """One stage run as a check sees it."""

    run: StageRun
    topology: Topology
    config: Config
    seed: int
    data: dict[str, object]  # lives as long as the topology: rollback steps share it
    bake: Any = None  # the stage's background traffic (compat.checks.canary.Bake), if any

    @property
    def stage(self) -> str:
        return self.run.id

    def settings(self, check: str) -> CheckConfig:
        return self.config.checks.get(check)

    def option(self, check: str, name: str) -> Any:
        return self.config.checks.option(check, name)

    @property
    def noise(self) -> NoiseRules:
        from compat.checks._noise import NoiseRules

        noise = self.config.checks.noise
        return NoiseRules(noise.ignore, noise.unordered, noise.ignore_headers)

    def entry(self, service: str) -> str:
        """The service's entry URL in this stage (its router in mixed stages)."""
        return self.topology.url(service)

    def instances(self, service: str, *, role: str | None = None) -> list[Instance]:
        """The service's boxes (never its router), optionally one role: ``baseline`` or ``candidate``."""
        return [i for i in self.topology.select(service, role=role) if i.spec.role != "router"]

    def by_version(self, service: str) -> dict[str, list[Instance]]:
        """version -> its boxes, baseline version first."""
        svc = self.config.services[service]
        found: dict[str, list[Instance]] = {}
        for inst in sorted(self.instances(service), key=lambda i: (i.spec.version != svc.baseline, i.name)):
            found.setdefault(inst.spec.version, []).append(inst)
        return found

    def router_url(self, service: str) -> str | None:
        """The base URL of the router in front of ``service`` (admin API under ``/_compat/router/``)."""
        routers = self.topology.select(service, role="router")
        return routers[0].url if routers else None

    def spec_path(self, service: str) -> Path | None:
        """The baseline spec: what existing clients were written against."""
        return self.config.services[service].baseline_version.spec

    def spec(self, service: str) -> Mapping[str, Any] | None:
        """The baseline spec, loaded (and validated as OpenAPI 3); None when the service has none."""
        path = self.spec_path(service)
        if path is None:
            return None
        from compat.checks._openapi import load_spec

        return load_spec(path)

    def versions(self, service: str) -> dict[str, str]:
        """``{service: "v1+v2"}``: the versions a finding in this stage is about."""
        present = list(self.by_version(service))
        return {service: "+".join(present)}

    def role_of(self, service: str, version: str) -> str:
        return self.config.services[service].role_of(version)
