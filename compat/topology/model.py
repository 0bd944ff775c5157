"""A plan (instances to start, and which instance answers for each service name) and a running topology.

A :class:`Plan` is pure data built from the config; a :class:`Topology` is a plan made real by a
:class:`~compat.runtime.base.Runtime`. Tests, checks and the CLI read URLs from the topology; they never
ask the runtime directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compat.runtime.base import Instance, InstanceSpec, Runtime

if TYPE_CHECKING:
    from compat.topology.builder import StageRun


@dataclass(frozen=True)
class Plan:
    """What to start for one stage.

    ``entry`` maps each service name to the instance that answers for it (the baseline box in the default
    plan; a router in mixed stages). Dependants are wired to their dependency's entry.
    """

    name: str
    specs: tuple[InstanceSpec, ...]
    entry: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def spec(self, name: str) -> InstanceSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(name)


class Topology:
    """Running instances of a plan. Closing it stops them (the runtime keeps shared state until closed)."""

    def __init__(
        self, plan: Plan, runtime: Runtime, instances: Sequence[Instance], *, run: StageRun | None = None
    ) -> None:
        self.plan = plan
        self.runtime = runtime
        self.instances = list(instances)
        self.run = run

    @property
    def name(self) -> str:
        return self.plan.name

    def select(self, service: str, *, version: str | None = None, role: str | None = None) -> list[Instance]:
        """Instances of ``service``, optionally only of one version or role (baseline/candidate)."""
        found = [
            i
            for i in self.instances
            if i.spec.service == service
            and (version is None or i.spec.version == version)
            and (role is None or i.spec.role == role)
        ]
        return found

    def instance(self, name: str) -> Instance:
        for inst in self.instances:
            if inst.name == name:
                return inst
        known = ", ".join(sorted(i.name for i in self.instances))
        raise KeyError(f"no instance {name!r} in topology {self.name!r}; known: {known}")

    def url(self, service: str, which: str | None = None) -> str:
        """Base URL (from the host) of ``service``.

        ``which`` is None for the service's entry point, ``"baseline"``/``"candidate"`` for a role, or a
        version name.
        """
        services = sorted({i.spec.service for i in self.instances})
        if service not in services:
            raise KeyError(f"no service {service!r} in topology {self.name!r}; known: {', '.join(services)}")
        if which is None:
            return self.instance(self.plan.entry[service]).url
        if which in ("baseline", "candidate", "router"):
            found = self.select(service, role=which)
        else:
            found = self.select(service, version=which)
        if not found:
            have = sorted({f"{i.spec.version} ({i.spec.role})" for i in self.select(service)})
            raise KeyError(
                f"service {service!r} has no {which!r} instance in topology {self.name!r}; "
                f"it runs: {', '.join(have)}"
            )
        return found[0].url

    def describe(self) -> list[dict[str, Any]]:
        """One row per instance: name, service, version, role, url, internal address, entry flag."""
        entries = set(self.plan.entry.values())
        return [
            {
                "name": i.name,
                "service": i.spec.service,
                "version": i.spec.version,
                "role": i.spec.role,
                "url": i.url,
                "internal": i.internal,
                "entry": i.name in entries,
                "image": i.image,
            }
            for i in self.instances
        ]

    def router(self, service: str) -> Instance:
        """The router in front of ``service`` (mixed stages only)."""
        found = self.select(service, role="router")
        if not found:
            raise KeyError(f"service {service!r} has no router in topology {self.name!r} (not a mixed stage)")
        return found[0]

    def reconfigure_router(self, spec: InstanceSpec) -> None:
        """Point a running router at the upstreams of ``spec`` (its config env), keeping its address."""
        import json

        import requests

        from compat.errors import InfrastructureError
        from compat.topology.builder import ROUTER_CONFIG_ENV

        router = self.instance(spec.name)
        body = json.loads(spec.env[ROUTER_CONFIG_ENV])
        body.pop("service", None)  # fixed for a router's lifetime; everything else may change
        answer = requests.put(f"{router.url}/_compat/router/config", json=body, timeout=10)
        if answer.status_code != 200:
            raise InfrastructureError(
                f"router {spec.name} refused its new upstreams: {answer.status_code} {answer.text[:300]}"
            )

    def stop(self) -> None:
        """Stop every instance (shared state stays until the runtime is closed)."""
        if self.instances:
            self.runtime.stop(self.instances)
            self.instances = []
