"""From pytest's reports to the run's verdict and report (loaded only under ``--compat``).

Each compat item's report carries a ``compat`` attribute (set where the item ran, so it travels from an xdist
worker to the controller with the report): the stage run, the check's result (findings, notes, inconclusive
reason, metrics) and the item's verdict. The process that sees every report (the controller under xdist, the
only process otherwise) collects them here; at the end it builds the report document
(:mod:`compat.report`), writes it under ``--compat-report DIR`` and prints the verdict table.

Verdicts per item follow the fail-closed rule: a finding is FAIL; an item that could not run (a setup
error, an infrastructure error, a check that crashed) is ERROR, never PASS; a check that could not judge is
INCONCLUSIVE.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from compat.errors import InfrastructureError

if TYPE_CHECKING:
    from compat.gate.waivers import Waiver
    from compat.session import CompatSession

INCONCLUSIVE_PREFIX = "INCONCLUSIVE: "


def item_verdict(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> str | None:
    """PASS / FAIL / ERROR / INCONCLUSIVE for one phase of one item (None: nothing to say)."""
    from compat.pytest_items import CompatCheckItem, FindingsFailed

    if report.passed:
        return "PASS" if report.when == "call" else None
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if INCONCLUSIVE_PREFIX in reason:
            return "INCONCLUSIVE"
        return None
    if report.when != "call":
        return "ERROR"  # setup or teardown failed: the item could not be decided
    exc = call.excinfo.value if call.excinfo is not None else None
    if isinstance(exc, FindingsFailed):
        return "FAIL"
    if isinstance(exc, InfrastructureError):
        return "ERROR"
    if isinstance(item, CompatCheckItem):
        return "ERROR"  # a check that crashed decided nothing
    return "FAIL"  # a user test's assertion


def describe(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> dict[str, Any]:
    """The ``compat`` attribute of a report: JSON-able, so xdist can carry it to the controller."""
    from compat.plugin import _run_of
    from compat.pytest_items import CompatCheckItem

    run = _run_of(item)
    data: dict[str, Any] = {
        "stage": run.id if run is not None else None,
        "stage_name": run.stage if run is not None else None,
        "kind": run.kind if run is not None else None,
        "verdict": item_verdict(item, call, report),
        "message": _message(call, report),
    }
    session = getattr(item, "compat", None) or item.config.stash.get(_session_key(), None)
    if session is not None:
        data["images"] = session.images()
        if run is not None:
            data["versions"] = session.versions_in(run)
    if isinstance(item, CompatCheckItem):
        from compat.report.jsonreport import secret_values

        task = item.task
        redact = item.compat.config.redact_headers
        result = item.result
        # the values behind redacted headers, so the report can scrub them wherever else they appear
        data["secrets"] = sorted(
            {v for f in (result.findings if result else []) for v in secret_values(f, redact)}
        )
        data["check"] = {
            "id": task.id,
            "check": task.check,
            "service": task.service,
            "versions": dict(task.versions),
            "dry_run": item.dry_run,
            "findings": [f.to_dict(redact) for f in result.findings] if result else [],
            "notes": list(result.notes) if result else [],
            "inconclusive": result.inconclusive if result else None,
            "metrics": dict(result.metrics) if result else {},
        }
    return data


def _session_key() -> Any:
    from compat.plugin import session_key

    return session_key


def _message(call: pytest.CallInfo[None], report: pytest.TestReport) -> str | None:
    if report.passed:
        return None
    if report.skipped:
        return report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if call.excinfo is not None:
        text = str(call.excinfo.value)
        return f"{call.excinfo.typename}: {text.splitlines()[0] if text else ''}"
    return None


class Collector:
    """Gathers the compat part of every report (controller / single process) into report entries."""

    def __init__(self, session: CompatSession) -> None:
        self.session = session
        self.started = time.time()
        self.checks: dict[str, dict[str, Any]] = {}
        self.tests: dict[str, dict[str, Any]] = {}
        self.stages: dict[str, dict[str, Any]] = {}
        self.images: dict[str, dict[str, str]] = {}
        self.secrets: set[str] = set()

    def add(self, report: pytest.TestReport) -> None:
        info = getattr(report, "compat", None)
        if not isinstance(info, dict):
            return
        for service, versions in (info.get("images") or {}).items():
            self.images.setdefault(service, {}).update(versions)
        self.secrets.update(info.get("secrets") or ())
        if info.get("stage"):
            stage = self.stages.setdefault(
                info["stage"],
                {"id": info["stage"], "stage": info["stage_name"], "kind": info["kind"], "versions": {}},
            )
            stage["versions"].update(info.get("versions") or {})
        verdict = info.get("verdict")
        check = info.get("check")
        if check is not None:
            entry = self.checks.setdefault(
                report.nodeid,
                {**check, "stage": info.get("stage"), "verdict": None, "error": None, "duration_s": 0.0},
            )
            entry["duration_s"] += report.duration
            if report.when == "call":
                entry.update({k: v for k, v in check.items()})
            entry["verdict"] = _worse(entry["verdict"], verdict)
            if verdict == "ERROR":
                entry["error"] = info.get("message") or "the check could not run"
            return
        if report.when == "call" or verdict is not None:
            entry = self.tests.setdefault(
                report.nodeid,
                {
                    "nodeid": report.nodeid,
                    "stage": info.get("stage"),
                    "outcome": "passed",
                    "verdict": None,
                    "message": None,
                    "duration_s": 0.0,
                },
            )
            entry["duration_s"] += report.duration
            if report.when == "call" or report.failed:
                entry["outcome"] = "error" if (report.failed and report.when != "call") else report.outcome
            entry["verdict"] = _worse(entry["verdict"], verdict)
            entry["message"] = entry["message"] or info.get("message")


def _worse(a: str | None, b: str | None) -> str | None:
    """The worse of two phase verdicts (None: the phase said nothing), by the gate's precedence."""
    from compat.gate.verdict import combine

    present = [v for v in (a, b) if v is not None]
    return combine(present).value if present else None


def build_report(
    collector: Collector, argv: list[str], waivers: Sequence[Waiver] = (), waivers_file: Path | None = None
) -> dict[str, Any]:
    """The run's report document (evaluated: statuses, ``waivers``, verdicts, exit code; validated)."""
    import dataclasses
    from datetime import date

    from compat.checks.finding import Finding
    from compat.gate.evaluate import GatePolicy
    from compat.report.jsonreport import ReportBuilder

    session = collector.session
    config = session.config
    builder = ReportBuilder(redact=config.redact_headers)
    started = datetime.fromtimestamp(collector.started, UTC)
    builder.set_run(
        id=session.context.run_id,
        project=config.project,
        seed=session.seed,
        started_at=started,
        finished_at=datetime.now(UTC),
        runtime=session.runtime_name,
        config=str(config.path),
        argv=argv,
        dry_run=session.options.dry_run,
        candidates={name: svc.candidate for name, svc in sorted(config.services.items()) if svc.candidate},
    )
    for name, svc in sorted(config.services.items()):
        images = collector.images.get(name, {})
        builder.add_version(
            name,
            svc.baseline,
            svc.candidate,
            baseline_image=svc.baseline_version.image,
            baseline_digest=images.get(svc.baseline),
            candidate_image=svc.candidate_version.image if svc.candidate_version else None,
            candidate_digest=images.get(svc.candidate) if svc.candidate else None,
        )
    for stage in collector.stages.values():
        builder.add_stage(stage["id"], stage=stage["stage"], kind=stage["kind"], versions=stage["versions"])
    names = {f.name for f in dataclasses.fields(Finding)}
    for entry in collector.checks.values():
        findings = [Finding(**{k: v for k, v in f.items() if k in names}) for f in entry["findings"]]
        verdict = entry.get("verdict")
        builder.add_check(
            id=entry["id"],
            check=entry["check"],
            service=entry.get("service"),
            stage=entry.get("stage"),
            findings=findings,
            notes=entry.get("notes", []),
            error=entry.get("error") if verdict == "ERROR" else None,
            inconclusive=entry.get("inconclusive"),
            duration_s=entry.get("duration_s", 0.0),
            dry_run=bool(entry.get("dry_run")),
            metrics=entry.get("metrics") or {},
        )
    for test in collector.tests.values():
        builder.add_test(
            test["nodeid"],
            test["outcome"],
            stage=test.get("stage"),
            message=test.get("message"),
            duration_s=test.get("duration_s", 0.0),
        )
    builder.add_secrets(collector.secrets)
    dry_checks = frozenset(name for name in config.checks.settings if config.checks.get(name).dry_run)
    policy = GatePolicy(dry_run=session.options.dry_run, dry_run_checks=dry_checks)
    return builder.build(
        policy, waivers, date.today(), waivers_file=str(waivers_file) if waivers_file else None
    )
