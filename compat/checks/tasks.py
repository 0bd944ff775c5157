"""Which checks run where: (stage run x check x service) tasks, each producing findings. No pytest here.

- ``spec-diff`` is static: once per service that has a candidate and a spec on both sides.
- ``contracts`` replays the Pact files in which a service is the provider against that service's entry
  point in a stage run: its router in ``onebox`` and rollback steps, the candidate in ``reverse-zeta``.
- ``properties`` sends cases generated from the service's *baseline* spec to the same entry point and
  validates them against that baseline spec: what old clients send, checked against what they expect.

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
from compat.checks.finding import Finding
from compat.config.model import Config
from compat.topology.builder import StageRun

#: stage kinds whose topology puts the candidate of the service under change behind its entry point
PROVIDER_STAGES = ("onebox", "reverse-zeta", "rollback")


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


def check_tasks(config: Config, runs: Sequence[StageRun], checks: Sequence[str] = CHECKS) -> list[CheckTask]:
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
        if run.kind not in PROVIDER_STAGES:
            continue
        if run.kind == "rollback" and run.phase not in ("mixed",):
            continue  # the fully upgraded/rolled back fleets are covered by reverse-zeta and production
        for name, svc in sorted(config.services.items()):
            if svc.candidate is None or name not in run.services:
                continue
            versions = {
                name: f"{svc.baseline}+{svc.candidate}" if run.kind != "reverse-zeta" else svc.candidate
            }
            pacts = _contracts_of(config, name)
            if "contracts" in checks and pacts and run.kind != "rollback":
                tasks.append(
                    CheckTask(
                        id=f"{run.id}-contracts-{name}",
                        check="contracts",
                        service=name,
                        run=run,
                        contracts=pacts,
                        versions=versions,
                    )
                )
            if "properties" in checks and svc.baseline_version.spec:
                tasks.append(
                    CheckTask(
                        id=f"{run.id}-properties-{name}",
                        check="properties",
                        service=name,
                        run=run,
                        spec=svc.baseline_version.spec,
                        versions=versions,
                    )
                )
    return tasks


def _contracts_of(config: Config, service: str) -> tuple[Path, ...]:
    """Pact files naming ``service`` as provider: the service's own globs, else the top-level ones."""
    from compat.checks.contracts import contracts_for

    svc = config.services[service]
    return tuple(contracts_for(svc.contracts or config.contracts, service))


def run_task(
    task: CheckTask, *, config: Config, url_of: Callable[[StageRun, str], str], seed: int
) -> list[Finding]:
    """Execute one task. ``url_of(run, service)`` gives the service's entry URL in that stage run."""
    if task.check == "spec-diff":
        from compat.checks.spec_diff import diff_specs, load_spec

        assert task.spec is not None
        assert task.new_spec is not None
        findings = diff_specs(load_spec(task.spec), load_spec(task.new_spec))
        return [_with(f, task) for f in findings]
    assert task.run is not None
    base_url = url_of(task.run, task.service)
    if task.check == "contracts":
        from compat.checks.contracts import ProviderStateSetup, verify

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
    if task.check == "properties":
        from compat.checks.properties import PropertyOptions, run_properties

        assert task.spec is not None
        return run_properties(
            task.spec, base_url, PropertyOptions(seed=seed), stage=task.run.id, versions=task.versions
        )
    raise ValueError(f"unknown check {task.check!r}")


def _with(finding: Finding, task: CheckTask) -> Finding:
    import dataclasses

    return dataclasses.replace(finding, versions={**task.versions, **finding.versions})
