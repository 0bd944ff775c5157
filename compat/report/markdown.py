"""The report as a short Markdown summary (a GitHub step summary, a PR comment).

Short by design (under 60 lines for a typical run): the verdict and why, a stage x check matrix, the top
ten findings that block (with a curl line to reproduce each), and what the waivers did. The full evidence
is in the HTML and JSON reports. Everything taken from the report is escaped: text cannot inject links,
HTML or table cells.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from compat.report.jsonreport import matrix, ordered_findings

MAX_FINDINGS = 10
MAX_REASONS = 5
MAX_CURL = 400
NONE_CELL = "—"
_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")


def render_markdown(report: Mapping[str, Any]) -> str:
    """A Markdown summary of ``report`` (see the module doc)."""
    lines: list[str] = []
    run: Mapping[str, Any] = report.get("run", {})
    verdict: Mapping[str, Any] = report.get("verdict", {})
    result = verdict.get("result", "ERROR")
    lines.append(f"### pytest-compat: {text(run.get('project', ''))} (run {code(run.get('id', '?'))})")
    lines.append("")
    head = f"**Verdict: {result}** (exit {verdict.get('exit_code', '?')})"
    if verdict.get("softened_from"):
        head += f" — dry run: would be {verdict['softened_from']}"
    lines.append(head)
    reasons = list(verdict.get("reasons", []))
    lines.extend(f"- {text(r)}" for r in reasons[:MAX_REASONS])
    if len(reasons) > MAX_REASONS:
        lines.append(f"- … and {len(reasons) - MAX_REASONS} more")
    lines.append("")
    lines.append(_facts(run, verdict))
    lines.append("")
    lines.extend(_matrix(report))
    lines.extend(_findings(report))
    lines.extend(_waivers(report.get("waivers", {})))
    return "\n".join(lines).rstrip() + "\n"


def _facts(run: Mapping[str, Any], verdict: Mapping[str, Any]) -> str:
    counts: Mapping[str, Any] = verdict.get("counts", {})
    parts = [f"seed {code(run.get('seed', '?'))}"]
    if run.get("runtime"):
        parts.append(f"runtime {text(run['runtime'])}")
    if isinstance(run.get("duration_s"), int | float):
        parts.append(f"{run['duration_s']:.1f} s")
    parts.append(
        f"findings: {counts.get('findings', 0)} ({counts.get('blocking', 0)} blocking, "
        f"{counts.get('waived', 0)} waived)"
    )
    if verdict.get("fail_on") == "WARN":
        parts.append("fail on WARN")
    return " · ".join(parts)


def _matrix(report: Mapping[str, Any]) -> list[str]:
    columns, rows = matrix(report)
    if not rows:
        return []
    lines = [
        "| stage | versions | " + " | ".join(cell_text(c) for c in columns) + " |",
        "| --- | --- |" + " --- |" * len(columns),
    ]
    for row in rows:
        versions = ", ".join(f"{s}={v}" for s, v in sorted(row.versions.items()))
        cells = []
        for cell in row.cells:
            shown = cell.verdict or NONE_CELL
            if cell.would_be:
                shown += f" (would be {cell.would_be})"
            cells.append(shown)
        lines.append(f"| {cell_text(row.label)} | {cell_text(versions)} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _findings(report: Mapping[str, Any]) -> list[str]:
    findings = [f for f in ordered_findings(report) if f.get("status") in ("blocking", "dry-run")]
    if not findings:
        return []
    label = "Blocking findings" if findings[0].get("status") == "blocking" else "Findings that would block"
    lines = [f"#### {label} ({len(findings)})", ""]
    for number, finding in enumerate(findings[:MAX_FINDINGS], 1):
        where = [f"**{text(finding.get('check'))}/{text(finding.get('rule'))}**"]
        if finding.get("status") == "dry-run":
            where.append("dry run")
        if finding.get("stage"):
            where.append(f"stage {code(finding['stage'])}")
        versions: Mapping[str, Any] = finding.get("versions") or {}
        if versions:
            where.append(", ".join(f"{text(s)}: {text(v)}" for s, v in sorted(versions.items())))
        if finding.get("operation"):
            where.append(code(finding["operation"]))
        line = f"{number}. {' · '.join(where)} — {text(finding.get('message'))} ({code(finding.get('id'))})"
        if finding.get("curl"):  # a trailing backslash is a hard line break
            line += "\\\n    " + code(_clip(str(finding["curl"]), MAX_CURL))
        lines.append(line)
    if len(findings) > MAX_FINDINGS:
        lines.append(f"… and {len(findings) - MAX_FINDINGS} more (see the HTML or JSON report)")
    lines.append("")
    return lines


def _waivers(waivers: Mapping[str, Any]) -> list[str]:
    applied = list(waivers.get("applied", []))
    expired = list(waivers.get("expired", []))
    unused = list(waivers.get("unused", []))
    if not (applied or expired or unused):
        return []
    lines = ["#### Waivers", ""]
    for w in applied:
        lines.append(
            f"- applied: waiver[{w.get('index')}] ({text(w.get('reason'))}), until {w.get('expires')}: "
            f"{len(w.get('findings', []))} finding(s)"
        )
    for w in expired:
        lost = len(w.get("findings", []))
        lines.append(
            f"- **expired** on {w.get('expires')}: waiver[{w.get('index')}] ({text(w.get('reason'))})"
            + (f", {lost} finding(s) no longer waived" if lost else "")
        )
    for w in unused:
        lines.append(f"- unused: waiver[{w.get('index')}] ({text(w.get('reason'))}) waived no finding")
    return lines


# -- escaping -------------------------------------------------------------------------------------------


def text(value: object) -> str:
    """``value`` as one line of inert Markdown: no HTML, links, emphasis or table breaks."""
    line = " ".join(str(value if value is not None else "").split())
    line = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", line)


def cell_text(value: object) -> str:
    return text(value)


def code(value: object) -> str:
    """``value`` as an inline code span (a fence longer than any backtick run inside it)."""
    line = " ".join(str(value if value is not None else "").split())
    longest = max((len(m) for m in re.findall(r"`+", line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
