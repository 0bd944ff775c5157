"""Which checks run where: (stage run x check x service) tasks, each producing a :class:`TaskResult`.

- ``spec-diff`` is static: once per service that has a candidate and a spec on both sides.
- ``contracts`` replays the Pact files in which a service is the provider against that service's entry
  point in a stage run: its router in ``onebox``, the candidate in ``reverse-zeta``.
- ``properties`` sends cases generated from the service's *baseline* spec to the same entry point and
  validates them against that baseline spec: what old clients send, checked against what they expect.
- ``differential`` (onebox: two baseline boxes and the candidate) sends the same requests to baseline A,
  baseline B and the candidate; what differs between A and B is noise, what else differs is a finding.
- ``yoyo`` (onebox, rollback's mixed step) walks paginated lists and create/read/update chains through
  the router with the ``yoyo`` policy, and the same flows under ``sticky`` as the control.
- ``data`` (onebox, every rollback step) writes through each version and reads back through every other;
  a rollback remembers what was written in earlier steps and reads it again after rolling back.
- ``canary`` (onebox, rollback's mixed step) judges the router's per-version error rate and p99 latency
  after the stage's background traffic (the bake); it is collected last in its stage run.

Stages where the service under change is not in the path (``zeta`` runs the baseline provider) get no
provider-side checks: they would only re-test production. Contracts never run inside a ``rollback``:
provider states rewrite the shared data (``no orders exist``), and a rollback exists to keep it. Check
items run after the stage's own tests (they are collected last within their stage run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compat.checks import CHECKS
from compat.checks.context import StageContext, TaskResult
from compat.checks.finding import Finding
from compat.config.model import Config
from compat.topology.builder import StageRun

#: check -> (stage kind, rollback phase or None for any) pairs where it runs
WHERE: dict[str, tuple[tuple[str, str | None], ...]] = {
    "contracts": (("onebox", None), ("reverse-zeta", None)),
    "properties": (("onebox", None), ("reverse-zeta", None), ("rollback", "mixed")),
    "differential": (("onebox", None),),
    "yoyo": (("onebox", None), ("rollback", "mixed")),
    "data": (("onebox", None), ("rollback", None)),
    "canary": (("onebox", None), ("rollback", "mixed")),
}
#: stage kinds whose topology puts the candidate of the service under change behind its entry point
PROVIDER_STAGES = tuple(dict.fromkeys(kind for places in WHERE.values() for kind, _ in places))


@dataclass(frozen=True)
class CheckTask:
    """One collected check: ``id`` becomes the pytest item's name (``onebox-contracts-orders``)."""

    id: str
    check: str
    service: str
    run: StageRun | None = None  # None: static, needs no topology
    contracts: tuple[Path, ...] = ()
    spec: Path | None = None
    new_spec: Path | None = None
    versions: dict[str, str] = field(default_factory=dict)


def runs_here(check: str, run: StageRun) -> bool:
    return any(kind == run.kind and phase in (None, run.phase) for kind, phase in WHERE.get(check, ()))


def check_tasks(config: Config, runs: Sequence[StageRun], checks: Sequence[str] = CHECKS) -> list[CheckTask]:
    """Every task of ``checks``, static ones first, then per stage run in check order (canary last)."""
    tasks: list[CheckTask] = []
    for name, svc in sorted(config.services.items()):
        cand = svc.candidate_version
        if "spec-diff" in checks and cand is not None and svc.baseline_version.spec and cand.spec:
            tasks.append(
                CheckTask(
                    id=f"spec-diff-{name}",
                    check="spec-diff",
                    service=name,
                    spec=svc.baseline_version.spec,
                    new_spec=cand.spec,
                    versions={name: f"{svc.baseline} -> {svc.candidate}"},
                )
            )
    for run in runs:
        for check in CHECKS:
            if check not in checks or check == "spec-diff" or not runs_here(check, run):
                continue
            for name, svc in sorted(config.services.items()):
                if svc.candidate is None or name not in run.services:
                    continue
                task = _task(config, run, check, name)
                if task is not None:
                    tasks.append(task)
    return tasks


def _task(config: Config, run: StageRun, check: str, name: str) -> CheckTask | None:
    svc = config.services[name]
    versions = {name: f"{svc.baseline}+{svc.candidate}" if run.kind != "reverse-zeta" else str(svc.candidate)}
    common = {
        "id": f"{run.id}-{check}-{name}",
        "check": check,
        "service": name,
        "run": run,
        "versions": versions,
    }
    if check == "contracts":
        pacts = _contracts_of(config, name)
        return CheckTask(**common, contracts=pacts) if pacts else None  # type: ignore[arg-type]
    if check in ("properties", "differential", "yoyo", "data"):
        spec = svc.baseline_version.spec
        if check == "differential":
            traffic = config.checks.option("differential", "traffic")
            if spec is None and not traffic and not _contracts_of(config, name):
                return None  # nothing to replay: no spec to generate from, no contracts, no traffic
        elif spec is None:
            return None  # these derive their requests from the spec
        return CheckTask(**common, spec=spec)  # type: ignore[arg-type]
    return CheckTask(**common)  # type: ignore[arg-type]


def _contracts_of(config: Config, service: str) -> tuple[Path, ...]:
    """Pact files naming ``service`` as provider: the service's own globs, else the top-level ones."""
    from compat.checks.contracts import contracts_for

    svc = config.services[service]
    return tuple(contracts_for(svc.contracts or config.contracts, service))


def run_task(task: CheckTask, *, config: Config, context: Callable[[StageRun], StageContext]) -> TaskResult:
    """Execute one task. ``context(run)`` gives the stage run's :class:`StageContext` (starting it)."""
    if task.check == "spec-diff":
        from compat.checks.spec_diff import diff_specs, load_spec

        assert task.spec is not None
        assert task.new_spec is not None
        findings = diff_specs(load_spec(task.spec), load_spec(task.new_spec))
        return TaskResult([_with(f, task) for f in findings])
    assert task.run is not None
    ctx = context(task.run)
    if task.check == "contracts":
        return TaskResult(_contracts(task, config, ctx.entry(task.service)))
    if task.check == "properties":
        from compat.checks.properties import PropertyOptions, run_properties

        assert task.spec is not None
        # A rollback keeps its data across steps, for the stage's tests to read back after rolling back.
        # The stateful phase follows links from listed resources to their updates, so it would change
        # data it did not create: in a rollback only the stateless phase runs (random ids match nothing).
        stateful = task.run.kind != "rollback"
        options = PropertyOptions(
            seed=ctx.seed,
            max_examples=int(ctx.option("properties", "examples")),
            stateful_examples=int(ctx.option("properties", "stateful_examples")),
            stateful=stateful,
        )
        findings = run_properties(
            task.spec, ctx.entry(task.service), options, stage=task.run.id, versions=task.versions
        )
        notes = (
            []
            if stateful
            else ["stateful phase skipped: in a rollback it would change data it did not create"]
        )
        return TaskResult(findings, notes)
    if task.check == "differential":
        from compat.checks.differential import run_differential

        return run_differential(ctx, task.service)
    if task.check == "yoyo":
        from compat.checks.yoyo import run_yoyo

        return run_yoyo(ctx, task.service)
    if task.check == "data":
        from compat.checks.data import run_data

        return run_data(ctx, task.service)
    if task.check == "canary":
        from compat.checks.canary import run_canary

        return run_canary(ctx, task.service)
    raise ValueError(f"unknown check {task.check!r}")


def _contracts(task: CheckTask, config: Config, base_url: str) -> list[Finding]:
    from compat.checks.contracts import ProviderStateSetup, verify

    assert task.run is not None
    svc = config.services[task.service]
    states = None
    if svc.provider_states is not None:
        states = ProviderStateSetup(
            url=base_url + svc.provider_states.url if svc.provider_states.url else None,
            callable=svc.provider_states.callable,
        )
    findings = []
    for pact in task.contracts:
        findings += verify(
            pact,
            provider=task.service,
            base_url=base_url,
            states=states,
            stage=task.run.id,
            versions=task.versions,
        )
    return findings


def _with(finding: Finding, task: CheckTask) -> Finding:
    import dataclasses

    return dataclasses.replace(finding, versions={**task.versions, **finding.versions})
