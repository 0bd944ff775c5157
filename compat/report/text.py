"""The verdict table printed at the end of a run (terminal width, plain text).

The same matrix as the Markdown and HTML reports (:func:`compat.report.jsonreport.matrix`): rows are stage
runs (plus ``static`` for checks that need no topology), columns the stage's own tests and then the checks
that ran; a cell is the verdict there (``-`` where nothing ran). Below it: the run's verdict, its exit code
and the first blocking findings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compat.report.jsonreport import TESTS_COLUMN, matrix

STATIC = "static"  # the row of checks that need no topology (the Markdown and HTML call it "(no stage)")


def render_table(report: Mapping[str, Any], *, findings: int = 5) -> str:
    columns, rows = matrix(report)
    if TESTS_COLUMN in columns:  # on a terminal the stage's own tests come first
        columns = [TESTS_COLUMN, *(c for c in columns if c != TESTS_COLUMN)]
    lines = []
    if rows and columns:
        head = ["stage", *columns]
        body = []
        for row in rows:
            cells = {cell.column: cell.verdict or "-" for cell in row.cells}
            body.append([row.stage if row.stage is not None else STATIC, *(cells[c] for c in columns)])
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body]
    verdict = report.get("verdict", {})
    lines.append(f"verdict: {verdict.get('result', '?')} (exit {verdict.get('exit_code', '?')})")
    for reason in verdict.get("reasons", [])[:5]:
        lines.append(f"  - {reason}")
    blocking = [f for f in report.get("findings", []) if f.get("status") == "blocking"]
    for finding in blocking[:findings]:
        where = finding.get("stage") or STATIC
        message = str(finding.get("message", ""))[:160]
        lines.append(
            f"  [{finding.get('id')}] {finding.get('check')}/{finding.get('rule')} in {where}: {message}"
        )
    if len(blocking) > findings:
        lines.append(f"  … and {len(blocking) - findings} more blocking finding(s) (see the report)")
    return "\n".join(lines)
