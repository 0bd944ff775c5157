"""The report's key facts as JUnit test-suite properties (``record_testsuite_property`` name/value pairs).

CI systems that only read JUnit XML still see the verdict, the exit code, the run id and seed (to rerun
exactly), and the finding counts. Names are stable: ``compat.verdict``, ``compat.exit_code``,
``compat.run_id``, ``compat.seed``, ``compat.project``, ``compat.dry_run``, ``compat.findings``,
``compat.findings.blocking``, ``compat.findings.waived``, ``compat.checks.<VERDICT>``,
``compat.waivers.expired``, ``compat.schema_version``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compat.gate.verdict import PRECEDENCE


def junit_properties(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Name/value pairs (all strings), in a fixed order."""
    run: Mapping[str, Any] = report.get("run", {})
    verdict: Mapping[str, Any] = report.get("verdict", {})
    counts: Mapping[str, Any] = verdict.get("counts", {})
    checks: Mapping[str, Any] = counts.get("checks", {})
    props: list[tuple[str, Any]] = [
        ("compat.verdict", verdict.get("result", "ERROR")),
        ("compat.exit_code", verdict.get("exit_code", 2)),
        ("compat.run_id", run.get("id", "")),
        ("compat.seed", run.get("seed", "")),
        ("compat.project", run.get("project", "")),
        ("compat.dry_run", "true" if verdict.get("dry_run") or run.get("dry_run") else "false"),
        ("compat.findings", counts.get("findings", 0)),
        ("compat.findings.blocking", counts.get("blocking", 0)),
        ("compat.findings.waived", counts.get("waived", 0)),
    ]
    props += [(f"compat.checks.{v.value}", checks.get(v.value, 0)) for v in PRECEDENCE]
    props.append(("compat.waivers.expired", len(report.get("waivers", {}).get("expired", []))))
    props.append(("compat.schema_version", report.get("schema_version", "")))
    return [(name, str(value)) for name, value in props]
