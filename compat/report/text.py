"""The verdict table printed at the end of a run (terminal width, plain text).

Rows are stage runs (plus ``static`` for checks that need no topology), columns are the checks that ran and
the stage's own tests; a cell is the verdict of that check in that stage (``-`` where it did not run). Below
it: the run's verdict, its exit code and the first blocking findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STATIC = "static"
TESTS = "tests"
_ORDER = {"PASS": 0, "INCONCLUSIVE": 1, "FAIL": 2, "ERROR": 3}


def matrix(report: Mapping[str, Any]) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
    """(stage rows, check columns, (stage, column) -> verdict) from a report document."""
    cells: dict[tuple[str, str], str] = {}
    rows: list[str] = []
    columns: list[str] = []

    def put(stage: str, column: str, verdict: str | None) -> None:
        if verdict is None:
            return
        if stage not in rows:
            rows.append(stage)
        if column not in columns:
            columns.append(column)
        old = cells.get((stage, column))
        if old is None or _ORDER.get(verdict, 0) > _ORDER.get(old, 0):
            cells[(stage, column)] = verdict

    for stage in report.get("stages", []):
        if stage.get("id") not in rows:
            rows.append(stage["id"])
    for check in report.get("checks", []):
        put(check.get("stage") or STATIC, check["check"], check.get("verdict"))
    for test in report.get("tests", []):
        put(test.get("stage") or "default", TESTS, test.get("verdict"))
    if STATIC in rows:
        rows.remove(STATIC)
        rows.insert(0, STATIC)
    if TESTS in columns:
        columns.remove(TESTS)
        columns.insert(0, TESTS)
    return rows, columns, cells


def render_table(report: Mapping[str, Any], *, findings: int = 5) -> str:
    rows, columns, cells = matrix(report)
    lines = []
    if rows and columns:
        head = ["stage", *columns]
        body = [[row, *(cells.get((row, col), "-") for col in columns)] for row in rows]
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body]
    verdict = report.get("verdict", {})
    lines.append(f"verdict: {verdict.get('result', '?')} (exit {verdict.get('exit_code', '?')})")
    for reason in verdict.get("reasons", [])[:5]:
        lines.append(f"  - {reason}")
    blocking = [f for f in report.get("findings", []) if f.get("status") == "blocking"]
    for finding in _top(blocking, findings):
        where = finding.get("stage") or STATIC
        lines.append(f"  [{finding.get('id')}] {finding.get('check')}/{finding.get('rule')} in {where}: ")
        lines[-1] += str(finding.get("message", ""))[:160]
    if len(blocking) > findings:
        lines.append(f"  … and {len(blocking) - findings} more blocking finding(s) (see the report)")
    return "\n".join(lines)


def _top(findings: Sequence[Mapping[str, Any]], count: int) -> list[Mapping[str, Any]]:
    return list(findings[:count])
