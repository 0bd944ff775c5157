"""One harness run, without pytest: resolved config, the runtime, and the topologies it started.

Both front ends drive this object: ``compat.plugin`` (``pytest --compat``) and ``compat.cli``. It starts
topologies lazily (the first test that needs one pays), keeps them for the run, and closes everything on
``close()`` — which the front ends call in teardown, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compat.config import apply_overrides, find_config, load_config
from compat.config.model import Config
from compat.runtime.base import Progress, RunContext, Runtime
from compat.topology.builder import PlanBuilder, StageRun, fleet_change, stage_runs
from compat.topology.model import Plan, Topology
from compat.topology.planner import plan_default

if TYPE_CHECKING:
    from compat.checks.context import StageContext

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    """What a user can set on the command line (pytest options or CLI flags)."""

    config: Path | None = None
    candidates: Mapping[str, str] = field(default_factory=dict)
    runtime: str | None = None
    seed: int | None = None
    stages: tuple[str, ...] = ()
    report_dir: Path | None = None
    worker: str = "main"
    keep: bool = False
    checks: tuple[str, ...] | None = None  # None: the checks [checks] enables
    dry_run: bool = False  # findings never block (the verdict says what would have)
    waivers: Path | None = None  # overrides the config's waivers file
    candidate_flag: str = "--compat-candidate"  # the option candidates came from (for error messages)


def resolve_config(start: Path, options: Options) -> Config:
    """Find, load, validate and override the config; raises ConfigError/UsageError."""
    path = find_config(start, options.config)
    config = load_config(path)
    return apply_overrides(
        config,
        candidates=options.candidates,
        runtime=options.runtime,
        seed=options.seed,
        flag=options.candidate_flag,
    )


class CompatSession:
    """The engine side of one run."""

    def __init__(
        self,
        config: Config,
        options: Options,
        *,
        echo: Echo = print,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.options = options
        self.echo = echo
        self.progress = progress
        self.context = RunContext.new(config.project, worker=options.worker, keep=options.keep)
        self._runtimes: dict[str, Runtime] = {}
        self._runtime_lock = threading.Lock()
        self._kind: str | None = None
        self._topologies: dict[str, Topology] = {}
        self._failed: dict[str, BaseException] = {}
        self._runs: list[StageRun] | None = None
        self._stage_data: dict[str, dict[str, object]] = {}
        self._bakes: dict[str, Any] = {}  # topology key -> its background traffic (canary)
        self._images: dict[str, dict[str, str]] = {}  # service -> version -> image id it ran
        self._announced: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def checks(self) -> tuple[str, ...]:
        """The checks this session runs."""
        return self.options.checks if self.options.checks is not None else self.config.checks.enabled()

    @property
    def runtime_name(self) -> str:
        """``docker`` or ``process`` (``auto`` is decided, once, when the first topology starts)."""
        return self._kind or self.config.runtime

    def runtime_for(self, key: str) -> Runtime:
        """The runtime of one topology. Every topology gets its own (own network, state and name scope),
        so stages never see each other's instances, data or DNS names."""
        with self._runtime_lock:
            runtime = self._runtimes.get(key)
            if runtime is None:
                from compat.runtime import select_runtime

                if self._kind is None:
                    from compat.runtime.cleanup import reap_dead_runs

                    reap_dead_runs(project=None, echo=self.echo)
                kind = self._kind or self.config.runtime
                runtime = select_runtime(
                    kind, self.context.scoped(key), progress=self.progress, echo=self.echo
                )
                self._kind = runtime.name
                self._runtimes[key] = runtime
            return runtime

    def runs(self) -> list[StageRun]:
        """The stage runs selected for this session (``--compat-stage``, config, or defaults), in order."""
        if self._runs is None:
            self._runs = stage_runs(self.config, self.options.stages)
        return self._runs

    def plan(self, stage: str | StageRun = "default") -> Plan:
        """The plan of a stage run (or ``default``), built for the runtime of its topology."""
        run = stage if isinstance(stage, StageRun) else self._run_named(stage)
        if run is None:
            return plan_default(self.config, self.runtime_for("default"))
        return PlanBuilder(self.config, self.runtime_for(run.topology_key)).plan(run)

    def topology(self, stage: str | StageRun = "default") -> Topology:
        """The running topology of a stage run, started on first request and shared afterwards.

        Rollback steps share one topology: asking for a later step changes the fleet in place (new boxes
        start, the router is re-pointed, old boxes stop; shared state is kept). Steps only go forward.
        """
        run = stage if isinstance(stage, StageRun) else self._run_named(stage)
        key = run.topology_key if run else "default"
        with self._lock:
            if self._closed:
                raise RuntimeError("the compat session is closed")
            if key in self._failed:
                raise self._failed[key]
            try:
                topology = self._topologies.get(key)
                if topology is None:
                    plan = self.plan(run or "default")
                    self._announce(run, plan)
                    runtime = self.runtime_for(key)
                    topology = Topology(plan, runtime, runtime.start(plan.specs), run=run)
                    self._topologies[key] = topology
                    self._note_images(topology.instances)
                    if run is not None:
                        self._start_bake(key, run, topology)
                elif run is not None and topology.run is not None and run.step and topology.run.step:
                    if run.step.index < topology.run.step.index:
                        raise RuntimeError(
                            f"stage run {run.id!r} comes after {topology.run.id!r} already ran: "
                            "rollback steps "
                            "only go forward (under xdist, use --dist loadgroup)"
                        )
                    if run.step.index > topology.run.step.index:
                        self._advance(topology, run)
            except Exception as exc:
                from compat.errors import InfrastructureError

                if isinstance(exc, InfrastructureError):
                    self._failed[key] = exc  # don't retry a start that failed for every later test
                raise
            return topology

    def versions_in(self, run: StageRun) -> dict[str, str]:
        """service -> the versions its boxes run now in ``run``'s topology (``v1+v2``); {} if not started."""
        with self._lock:
            topology = self._topologies.get(run.topology_key)
            instances = list(topology.instances) if topology is not None else []
        found: dict[str, list[str]] = {}
        for inst in instances:
            if inst.spec.role != "router" and inst.spec.version not in found.setdefault(
                inst.spec.service, []
            ):
                found[inst.spec.service].append(inst.spec.version)
        return {service: "+".join(versions) for service, versions in sorted(found.items())}

    def images(self) -> dict[str, dict[str, str]]:
        """service -> version -> the image id its boxes ran (docker runtime; for the report)."""
        with self._runtime_lock:
            return {service: dict(versions) for service, versions in self._images.items()}

    def _note_images(self, instances: Any) -> None:
        with self._runtime_lock:
            for inst in instances:
                if inst.image and inst.spec.role != "router":
                    self._images.setdefault(inst.spec.service, {})[inst.spec.version] = inst.image

    def stage_context(self, run: StageRun) -> StageContext:
        """What a stage check sees of ``run`` (its topology is started, or advanced, on demand)."""
        from compat.checks.context import StageContext

        topology = self.topology(run)
        return StageContext(
            run=run,
            topology=topology,
            config=self.config,
            seed=self.seed,
            data=self.stage_data(run.topology_key),
            bake=self._bakes.get(run.topology_key),
        )

    def _start_bake(self, key: str, run: StageRun, topology: Topology) -> None:
        """Background traffic through the routers of a mixed stage, for canary to judge (if it runs)."""
        if "canary" not in self.checks:
            return
        from compat.checks.canary import bake_for
        from compat.checks.tasks import runs_here

        if not runs_here("canary", run) and run.kind != "rollback":
            return
        bake = bake_for(self.config, run, topology)
        if bake is not None:
            bake.start()
            self._bakes[key] = bake

    def _stop_bake(self, key: str) -> None:
        bake = self._bakes.pop(key, None)
        if bake is not None:
            bake.stop()

    def stage_data(self, key: str) -> dict[str, object]:
        """A dict that lives as long as the session, one per topology (rollback steps share it)."""
        with self._lock:
            return self._stage_data.setdefault(key, {})

    def release(self, run: StageRun) -> None:
        """Remove the topology of ``run`` and everything its runtime made (when no later test needs it)."""
        self._stop_bake(run.topology_key)
        with self._lock:
            self._topologies.pop(run.topology_key, None)
            with self._runtime_lock:
                runtime = self._runtimes.pop(run.topology_key, None)
        if runtime is not None:
            runtime.close()

    def _run_named(self, stage: str) -> StageRun | None:
        if stage == "default":
            return None
        for run in self.runs():
            if stage in (run.id, run.stage):
                return run
        from compat.errors import UsageError

        names = [*dict.fromkeys(r.stage for r in self.runs()), *(r.id for r in self.runs())]
        known = ", ".join(["default", *dict.fromkeys(names)])
        raise UsageError(f"unknown stage {stage!r}; choose one of {known}")

    def plan_lines(self, runs: list[StageRun]) -> list[str]:
        """What will run, printed before it runs: each rollback's steps (with the seed that replays them)
        and each skew's combinations. Each plan is described once per session."""
        from compat.topology.stages import format_rollback

        lines: list[str] = []
        for run in runs:
            key = run.topology_key if run.kind == "rollback" else run.stage
            if run.kind not in ("rollback", "skew") or key in self._announced:
                continue
            self._announced.add(key)
            if run.kind == "rollback":
                steps = [r.step for r in self.runs() if r.topology_key == key and r.step]
                lines += format_rollback(
                    steps, service=run.subject or "?", seed=self.config.seed
                ).splitlines()
            else:
                combos = [r.id for r in self.runs() if r.stage == run.stage]
                lines.append(f"skew {run.stage}: {len(combos)} combination(s): {'; '.join(combos)}")
        return lines

    def _announce(self, run: StageRun | None, plan: Plan) -> None:
        if run is not None:
            for line in self.plan_lines([run]):
                self.echo(line)

    def _advance(self, topology: Topology, run: StageRun) -> None:
        """Rolling change of a rollback fleet to ``run``'s step: start new boxes, re-point the router,
        then stop the old boxes."""
        new_plan = self.plan(run)
        stop_names, start_specs = fleet_change(topology.plan, new_plan)
        started = topology.runtime.start(start_specs) if start_specs else []
        topology.instances.extend(started)
        self._note_images(started)
        for spec in new_plan.specs:
            if spec.role == "router":
                topology.reconfigure_router(spec)
        leaving = [i for i in topology.instances if i.name in stop_names]
        if leaving:
            topology.runtime.stop(leaving)
        topology.instances = [i for i in topology.instances if i.name not in stop_names]
        topology.plan = new_plan
        topology.run = run
        if self.progress:
            self.progress("step", f"{run.id}: {run.step.describe() if run.step else ''}")

    def detach(self) -> None:
        """Leave everything running after this process exits (``compat up --detach``)."""
        from compat.runtime.cleanup import forget

        for runtime in self._take_runtimes():
            forget(runtime)

    def close(self) -> None:
        """Stop every topology and remove everything the runtimes created. Idempotent."""
        errors = []
        for runtime in self._take_runtimes():
            try:
                runtime.close()
            except Exception as exc:  # close the others, then report
                errors.append(exc)
        if errors:
            raise errors[0]

    def _take_runtimes(self) -> list[Runtime]:
        for key in list(self._bakes):
            self._stop_bake(key)
        with self._lock:
            self._closed = True
            self._topologies.clear()
            with self._runtime_lock:
                runtimes, self._runtimes = list(self._runtimes.values()), {}
        return runtimes
