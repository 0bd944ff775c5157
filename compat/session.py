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

from compat.config import apply_overrides, find_config, load_config
from compat.config.model import Config
from compat.runtime.base import Progress, RunContext, Runtime
from compat.topology.builder import PlanBuilder, StageRun, fleet_change, stage_runs
from compat.topology.model import Plan, Topology
from compat.topology.planner import plan_default

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


def resolve_config(start: Path, options: Options) -> Config:
    """Find, load, validate and override the config; raises ConfigError/UsageError."""
    path = find_config(start, options.config)
    config = load_config(path)
    return apply_overrides(config, candidates=options.candidates, runtime=options.runtime, seed=options.seed)


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
        self._runtime: Runtime | None = None
        self._topologies: dict[str, Topology] = {}
        self._failed: dict[str, BaseException] = {}
        self._runs: list[StageRun] | None = None
        self._stage_data: dict[str, dict[str, object]] = {}
        self._announced: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def runtime(self) -> Runtime:
        """The runtime, chosen on first use (auto: docker when an engine answers, else process)."""
        if self._runtime is None:
            from compat.runtime import select_runtime
            from compat.runtime.cleanup import reap_dead_runs

            reap_dead_runs(project=None, echo=self.echo)
            self._runtime = select_runtime(
                self.config.runtime, self.context, progress=self.progress, echo=self.echo
            )
        return self._runtime

    def runs(self) -> list[StageRun]:
        """The stage runs selected for this session (``--compat-stage``, config, or defaults), in order."""
        if self._runs is None:
            self._runs = stage_runs(self.config, self.options.stages)
        return self._runs

    def plan(self, stage: str | StageRun = "default") -> Plan:
        if isinstance(stage, StageRun):
            return PlanBuilder(self.config, self.runtime).plan(stage)
        if stage == "default":
            return plan_default(self.config, self.runtime)
        for run in self.runs():
            if run.id == stage or (
                run.stage == stage and run.order == min(r.order for r in self.runs() if r.stage == stage)
            ):
                return PlanBuilder(self.config, self.runtime).plan(run)
        known = ", ".join(["default", *(r.id for r in self.runs())])
        raise KeyError(f"unknown stage {stage!r}; known: {known}")

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
                    topology = Topology(plan, self.runtime, self.runtime.start(plan.specs), run=run)
                    self._topologies[key] = topology
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

    def stage_data(self, key: str) -> dict[str, object]:
        """A dict that lives as long as the session, one per topology (rollback steps share it)."""
        with self._lock:
            return self._stage_data.setdefault(key, {})

    def release(self, run: StageRun) -> None:
        """Stop the topology of ``run`` (when no later test needs it)."""
        with self._lock:
            topology = self._topologies.pop(run.topology_key, None)
        if topology is not None:
            topology.stop()

    def _run_named(self, stage: str) -> StageRun | None:
        if stage == "default":
            return None
        for run in self.runs():
            if stage in (run.id, run.stage):
                return run
        known = ", ".join(["default", *(r.id for r in self.runs())])
        raise KeyError(f"unknown stage {stage!r}; known: {known}")

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
        started = self.runtime.start(start_specs) if start_specs else []
        topology.instances.extend(started)
        for spec in new_plan.specs:
            if spec.role == "router":
                topology.reconfigure_router(spec)
        leaving = [i for i in topology.instances if i.name in stop_names]
        if leaving:
            self.runtime.stop(leaving)
        topology.instances = [i for i in topology.instances if i.name not in stop_names]
        topology.plan = new_plan
        topology.run = run
        if self.progress:
            self.progress("step", f"{run.id}: {run.step.describe() if run.step else ''}")

    def detach(self) -> None:
        """Leave everything running after this process exits (``compat up --detach``)."""
        from compat.runtime.cleanup import forget

        with self._lock:
            runtime, self._runtime = self._runtime, None
            self._topologies.clear()
            self._closed = True
        if runtime is not None:
            forget(runtime)

    def close(self) -> None:
        """Stop every topology and remove everything the runtime created. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runtime, self._runtime = self._runtime, None
            self._topologies.clear()
        if runtime is not None:
            runtime.close()
