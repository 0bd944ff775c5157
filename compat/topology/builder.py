"""Stage runs and their plans: which instances, which routers, how they are wired.

A *stage run* is one topology state the suite runs against: ``onebox``, ``zeta``, ``reverse-zeta``, one
step of a ``rollback`` (``rollback:2-after-upgrade``) or one combination of a ``skew``
(``skew:web=new,orders=old``). Runs that share a ``topology_key`` share instances: the steps of a rollback
are one fleet that is changed in place (state kept); everything else gets a topology of its own.

Routers are ordinary instances (role ``router``) running ``python -m compat.router``: a container built
from the base image with only ``compat/router`` copied in, or a local subprocess in the process runtime.
Dependants of a routed service are wired to its router, so the whole call chain sees the mixed fleet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from compat.config.model import BuildSpec, Config, Stage
from compat.errors import ConfigError
from compat.runtime.base import InstanceSpec, Runtime
from compat.topology.model import Plan
from compat.topology.planner import version_spec, wire
from compat.topology.stages import (
    RolloutStep,
    changed_services,
    default_stages,
    rollback_steps,
    skew_combinations,
)

ROUTER_PORT = 8080
ROUTER_HEALTH = "/_compat/router/health"
ROUTER_CONFIG_ENV = "COMPAT_ROUTER_CONFIG"
SHORT_ROLE = {"baseline": "old", "candidate": "new"}


@dataclass(frozen=True)
class StageRun:
    """One topology state of a stage that tests run against."""

    id: str  # pytest parameter id: "onebox", "rollback:1-mixed", "skew:web=new,orders=old"
    stage: str
    kind: str
    topology_key: str  # runs with the same key share (and mutate) one topology
    order: int  # position among all runs: runs of a key are consecutive and in step order
    step: RolloutStep | None = None
    subject: str | None = None  # the service whose fleet a rollback changes
    services: tuple[str, ...] = ()  # the services under change in this run
    combination: dict[str, str] = field(default_factory=dict)  # skew: service -> baseline/candidate

    @property
    def phase(self) -> str | None:
        return self.step.phase if self.step else None


def stage_runs(config: Config, selected: Iterable[str] = ()) -> list[StageRun]:
    """Every run of the selected stages (names or kinds), in execution order."""
    stages = default_stages(config)
    wanted = list(selected)
    if wanted:
        known = {**stages, **config.stages}
        picked: dict[str, Stage] = {}
        for name in wanted:
            matches = [s for s in known.values() if name in (s.name, s.kind)]
            if not matches:
                implied = _implied_stage(config, name)
                if implied is None:
                    choices = sorted({*known, *(s.kind for s in known.values())})
                    raise ConfigError(
                        "no such stage",
                        key="--compat-stage",
                        value=name,
                        has_value=True,
                        hint=f"choose one of {', '.join(choices) or '(none: no service has a candidate)'}",
                    )
                matches = [implied]
            for stage in matches:
                picked[stage.name] = stage
        stages = picked
    runs: list[StageRun] = []
    for stage in stages.values():
        runs.extend(_expand(config, stage, len(runs)))
    return runs


def _implied_stage(config: Config, kind: str) -> Stage | None:
    """A stage of a known kind the defaults did not include, built from the config (e.g. skew)."""
    changed = changed_services(config)
    if kind == "skew" and len(_default_chain(config)) >= 2:
        return Stage(name="skew", kind="skew", services=changed)
    if kind in ("onebox", "rollback", "zeta", "reverse-zeta") and changed:
        return Stage(name=kind, kind=kind, services=changed)
    return None


def _expand(config: Config, stage: Stage, start: int) -> list[StageRun]:
    subjects = stage.services or changed_services(config)
    runs: list[StageRun] = []
    if stage.kind == "rollback":
        for subject in subjects:
            svc = config.services[subject]
            assert svc.candidate is not None
            boxes = (stage.replicas or svc.replicas) + 1
            seed = stage.seed if stage.seed is not None else config.seed
            prefix = stage.name if len(subjects) == 1 else f"{stage.name}:{subject}"
            for step in rollback_steps(boxes, svc.baseline, svc.candidate, seed):
                runs.append(
                    StageRun(
                        id=f"{prefix}:{step.index}-{step.phase}",
                        stage=stage.name,
                        kind=stage.kind,
                        topology_key=prefix,
                        order=start + len(runs),
                        step=step,
                        subject=subject,
                        services=(subject,),
                    )
                )
        return runs
    if stage.kind == "skew":
        chain = stage.chain or _default_chain(config)
        if len(chain) < 2:
            raise ConfigError(
                "a skew stage needs a call chain of at least two services with candidates",
                file=str(config.path),
                key=f"stages.{stage.name}.chain",
                hint='set chain = ["frontend", "backend"] (each depends_on the next)',
            )
        for combo in skew_combinations(chain):
            label = ",".join(f"{svc}={SHORT_ROLE[role]}" for svc, role in combo.items())
            runs.append(
                StageRun(
                    id=f"{stage.name}:{label}",
                    stage=stage.name,
                    kind=stage.kind,
                    topology_key=f"{stage.name}:{label}",
                    order=start + len(runs),
                    combination=combo,
                    services=tuple(svc for svc, role in combo.items() if role == "candidate"),
                )
            )
        return runs
    return [
        StageRun(
            id=stage.name,
            stage=stage.name,
            kind=stage.kind,
            topology_key=stage.name,
            order=start,
            services=tuple(subjects),
        )
    ]


def _default_chain(config: Config) -> tuple[str, ...]:
    """The longest dependency path through services that have a candidate."""
    changed = set(changed_services(config))

    def longest(name: str) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        for dep in config.services[name].depends_on:
            if dep.target in changed:
                path = longest(dep.target)
                if len(path) > len(best):
                    best = path
        return (name, *best)

    paths = [longest(n) for n in sorted(changed)]
    return max(paths, key=len, default=())


# -- plans ----------------------------------------------------------------------------------------------


class PlanBuilder:
    """Builds the :class:`Plan` of a stage run for one runtime."""

    def __init__(self, config: Config, runtime: Runtime, *, seed: int | None = None) -> None:
        self.config = config
        self.runtime = runtime
        self.seed = config.seed if seed is None else seed

    def plan(self, run: StageRun) -> Plan:
        stage = self._stage(run)
        if run.kind == "onebox":
            return self._onebox(run, stage)
        if run.kind == "zeta":
            return self._zeta(run, stage)
        if run.kind == "reverse-zeta":
            return self._reverse_zeta(run, stage)
        if run.kind == "rollback":
            return self._rollback(run, stage)
        if run.kind == "skew":
            return self._skew(run)
        raise ValueError(f"unknown stage kind {run.kind!r}")

    def _stage(self, run: StageRun) -> Stage:
        return (
            default_stages(self.config).get(run.stage)
            or self.config.stages.get(run.stage)
            or Stage(name=run.stage, kind=run.kind)
        )

    def _subjects(self, stage: Stage) -> tuple[str, ...]:
        return stage.services or changed_services(self.config)

    # one box of the candidate among baseline boxes, behind one router per service under change
    def _onebox(self, run: StageRun, stage: Stage) -> Plan:
        fleets = {}
        for name in self._subjects(stage):
            svc = self.config.services[name]
            assert svc.candidate is not None
            k = stage.replicas or svc.replicas
            fleets[name] = [svc.baseline] * k + [svc.candidate]
        return self._assemble(run, stage, fleets, routed=set(fleets), everything=True)

    # the candidate consumer against production (baseline) versions of everything it calls
    def _zeta(self, run: StageRun, stage: Stage) -> Plan:
        subjects = self._subjects(stage)
        needed = self._closure(subjects, downstream=True)
        fleets = {n: [self._version(n, "candidate" if n in subjects else "baseline")] for n in needed}
        return self._assemble(run, stage, fleets, routed=set())

    # production (baseline) consumers against the candidate of the service under change
    def _reverse_zeta(self, run: StageRun, stage: Stage) -> Plan:
        subjects = self._subjects(stage)
        needed = self._closure(subjects, downstream=True) | self._closure(subjects, downstream=False)
        fleets = {n: [self._version(n, "candidate" if n in subjects else "baseline")] for n in needed}
        return self._assemble(run, stage, fleets, routed=set())

    def _rollback(self, run: StageRun, stage: Stage) -> Plan:
        assert run.step is not None
        assert run.subject is not None
        fleets = {run.subject: list(run.step.boxes)}
        return self._assemble(run, stage, fleets, routed={run.subject}, slot_names=True, everything=True)

    def _skew(self, run: StageRun) -> Plan:
        needed = self._closure(tuple(run.combination), downstream=True)
        fleets = {n: [self._version(n, run.combination.get(n, "baseline"))] for n in needed}
        return self._assemble(run, Stage(name=run.stage, kind="skew"), fleets, routed=set())

    def _version(self, service: str, role: str) -> str:
        svc = self.config.services[service]
        if role == "candidate" and svc.candidate:
            return svc.candidate
        return svc.baseline

    def _closure(self, roots: Iterable[str], *, downstream: bool) -> set[str]:
        """``roots`` plus everything they call (downstream) or everything that calls them (upstream)."""
        edges: dict[str, set[str]] = {n: set() for n in self.config.services}
        for name, svc in self.config.services.items():
            for dep in svc.depends_on:
                if downstream:
                    edges[name].add(dep.target)
                else:
                    edges[dep.target].add(name)
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(edges[name])
        return seen

    def _assemble(
        self,
        run: StageRun,
        stage: Stage,
        fleets: dict[str, list[str]],
        *,
        routed: set[str],
        slot_names: bool = False,
        everything: bool = False,
    ) -> Plan:
        """Instances for the services in ``fleets`` (with ``everything``: every other service too, as one
        baseline box), routers in front of ``routed`` services, everything wired to each service's entry."""
        specs: list[InstanceSpec] = []
        entry: dict[str, str] = {}
        upstreams: dict[str, list[InstanceSpec]] = {}
        runtime = self.runtime.name
        services = (
            fleets
            if not everything
            else {**{n: [self.config.services[n].baseline] for n in self.config.services}, **fleets}
        )
        for name in self.config.dependency_order():
            if name not in services:
                continue
            svc = self.config.services[name]
            boxes = []
            counters: dict[str, int] = {}
            for slot, version_name in enumerate(services[name]):
                index = slot if slot_names else counters.get(version_name, 0)
                counters[version_name] = counters.get(version_name, 0) + 1
                spec = version_spec(
                    self.config, svc, svc.versions[version_name], index, runtime, topology=run.topology_key
                )
                boxes.append(spec)
            specs.extend(boxes)
            if name in routed:
                upstreams[name] = boxes
                entry[name] = f"{name}-router"
            else:
                entry[name] = boxes[0].name
        # routers need their upstreams' addresses: reserve everything first
        addresses = self.runtime.reserve(specs)
        for name, boxes in upstreams.items():
            specs.append(self.router_spec(name, stage, boxes, addresses))
        notes: tuple[str, ...] = ()
        if run.step is not None and run.subject is not None:
            notes = (f"{run.subject}: {run.step.describe()}",)
        return Plan(
            name=run.id,
            specs=wire(self.config, self.runtime, specs, entry, addresses),
            entry=entry,
            notes=notes,
        )

    def router_spec(
        self, service: str, stage: Stage, boxes: list[InstanceSpec], addresses: dict[str, str]
    ) -> InstanceSpec:
        router_config = self.router_config(service, stage, boxes, addresses)
        env = {ROUTER_CONFIG_ENV: json.dumps(router_config, sort_keys=True)}
        if self.runtime.name == "process":
            return InstanceSpec(
                name=f"{service}-router",
                service=service,
                version="router",
                role="router",
                port=ROUTER_PORT,
                health=ROUTER_HEALTH,
                command=(sys.executable, "-m", "compat.router", "--listen", "127.0.0.1:{port}"),
                cwd=Path.cwd(),
                env={**env, "PYTHONPATH": _package_parent()},
            )
        return InstanceSpec(
            name=f"{service}-router",
            service=service,
            version="router",
            role="router",
            port=ROUTER_PORT,
            health=ROUTER_HEALTH,
            build=router_build(),
            container_command=("python3", "-m", "compat.router", "--listen", f"0.0.0.0:{ROUTER_PORT}"),
            env=env,
        )

    def router_config(
        self, service: str, stage: Stage, boxes: list[InstanceSpec], addresses: dict[str, str]
    ) -> dict[str, object]:
        svc = self.config.services[service]
        config: dict[str, object] = {
            "service": service,
            "policy": stage.policy,
            "seed": stage.seed if stage.seed is not None else self.seed,
            "upstreams": [
                {"name": b.name, "version": b.version, "role": b.role, "address": addresses[b.name]}
                for b in boxes
            ],
        }
        if stage.policy == "weighted" and svc.candidate:
            config["weights"] = {svc.candidate: stage.weight, svc.baseline: 1 - stage.weight}
        present = {b.version for b in boxes}
        faults = {}
        for target, fault in stage.faults.items():  # a role names this service's version in that role
            version = {"baseline": svc.baseline, "candidate": svc.candidate}.get(target, target)
            if version in present:
                faults[version] = dict(fault)
        if faults:
            config["faults"] = faults
        return config


def _package_parent() -> str:
    """Directory that holds the ``compat`` package (so a router subprocess can import it)."""
    import compat

    return str(Path(compat.__file__).resolve().parent.parent)


def router_build() -> BuildSpec:
    """A build context holding only ``compat/router`` (+ an empty ``compat/__init__.py``), cached by content.

    The router is stdlib-only, so the image is the base image plus these files: no registry needed.
    """
    import compat

    source = Path(compat.__file__).resolve().parent / "router"
    files = sorted(p for p in source.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pytest-compat" / "router"
    context = cache / digest.hexdigest()[:16]
    if not (context / "Dockerfile").exists():
        staging = context.with_name(context.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "compat" / "router").mkdir(parents=True)
        (staging / "compat" / "__init__.py").write_text('"""Only the router is shipped in this image."""\n')
        for path in files:
            target = staging / "compat" / "router" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
        (staging / "Dockerfile").write_text(
            "ARG BASE_IMAGE=python:3.12-slim\n"
            "FROM ${BASE_IMAGE}\n"
            "COPY compat /opt/compat-router/compat\n"
            "ENV PYTHONPATH=/opt/compat-router PYTHONUNBUFFERED=1\n"
            'CMD ["python3", "-m", "compat.router", "--listen", "0.0.0.0:8080"]\n'
        )
        try:
            staging.rename(context)
        except OSError:  # another worker won the race; its copy is identical
            shutil.rmtree(staging, ignore_errors=True)
    base = os.environ.get("COMPAT_BASE_IMAGE", "python:3.12-slim")
    return BuildSpec(context=context, args={"BASE_IMAGE": base})


def fleet_change(old: Plan, new: Plan) -> tuple[list[str], list[InstanceSpec]]:
    """Instance names to stop and specs to start to turn ``old`` into ``new`` (rollback steps)."""
    old_names = {s.name: s for s in old.specs}
    new_names = {s.name: s for s in new.specs}
    stop = [n for n, s in old_names.items() if n not in new_names or _differs(s, new_names[n])]
    start = [s for n, s in new_names.items() if n not in old_names or _differs(old_names[n], s)]
    return stop, start


def _differs(a: InstanceSpec, b: InstanceSpec) -> bool:
    if a.role == "router" and b.role == "router":
        return False  # routers are reconfigured in place, never restarted (their address must not change)
    return dataclasses.replace(a, env={}) != dataclasses.replace(b, env={}) or dict(a.env) != dict(b.env)
