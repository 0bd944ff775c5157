"""The report as one self-contained HTML page: inline CSS and JS, no network, everything escaped.

The page shows the verdict and why, a compatibility matrix (rows: stage runs with their versions; columns:
checks, then the user's tests; each cell coloured by verdict and carrying ``data-stage``, ``data-check``
and ``data-verdict``), every finding as a collapsed ``<details id="finding-ID" data-finding-id="ID">``
that expands to the request, response, expected/actual, details and the curl line, then the checks, the
tests and the waivers.

Opening the page with ``#finding-ID`` expands that finding and scrolls to it. A Content-Security-Policy
admits only the page's own style and script (by hash): the page loads nothing, and text that escaped
escaping still could not run.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any
from urllib.parse import quote

from compat.report.jsonreport import NO_STAGE, TESTS_COLUMN, Cell, matrix, ordered_findings

VERDICTS = ("PASS", "FAIL", "INCONCLUSIVE", "ERROR")
NONE_VERDICT = "NONE"  # data-verdict of a matrix cell where nothing of that column ran

CSS = """
:root { --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#cf222e; --fail-bg:#ffebe9; --inc:#9a6700;
  --inc-bg:#fff8c5; --err:#fff; --err-bg:#6e40c9; --none:#6e7781; --none-bg:#f6f8fa; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 20px 48px; }
h1 { font-size: 24px; margin: 0 0 6px; } h2 { font-size: 18px; margin: 28px 0 10px; }
h3 { font-size: 13px; margin: 12px 0 4px; text-transform: uppercase; color: #57606a; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px;
  overflow: auto; max-height: 420px; white-space: pre-wrap; word-break: break-word; margin: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; }
.banner { border-radius: 8px; padding: 14px 18px; margin-bottom: 12px; }
.banner ul { margin: 6px 0 0; padding-left: 20px; }
.v-PASS { background: var(--pass-bg); color: var(--pass); }
.v-FAIL { background: var(--fail-bg); color: var(--fail); }
.v-INCONCLUSIVE { background: var(--inc-bg); color: var(--inc); }
.v-ERROR { background: var(--err-bg); color: var(--err); }
.v-NONE { background: var(--none-bg); color: var(--none); }
.banner.v-PASS { border: 1px solid var(--pass); } .banner.v-FAIL { border: 1px solid var(--fail); }
.matrix td.cell { text-align: center; font-weight: 600; min-width: 96px; }
.matrix td.cell a { color: inherit; }
.matrix td.cell .items { display: block; font-weight: 400; font-size: 12px; }
.muted { color: #57606a; font-weight: 400; }
.matrix th small { color: inherit; opacity: .8; font-weight: 400; }
.would { display: block; font-size: 11px; font-weight: 400; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
dl.facts dt { color: #57606a; } dl.facts dd { margin: 0; }
details.finding { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; }
details.finding > summary { cursor: pointer; padding: 8px 10px; list-style-position: inside; }
details.finding[open] > summary { border-bottom: 1px solid var(--line); background: #f6f8fa; }
details.finding:target, details.finding.target { outline: 2px solid #0969da; }
details.finding .body { padding: 8px 12px 12px; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600;
  border: 1px solid currentColor; }
.badge.s-blocking { color: var(--fail); } .badge.s-dry-run, .badge.s-warning { color: var(--inc); }
.badge.s-waived { color: var(--pass); } .badge.s-info, .badge.s-pending { color: var(--none); }
details.s-blocking { border-left: 4px solid var(--fail); }
details.s-dry-run { border-left: 4px solid var(--inc); }
details.s-waived { border-left: 4px solid var(--pass); }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.tools { margin: 6px 0 10px; display: flex; gap: 10px; align-items: center; }
button { font: inherit; padding: 2px 10px; border: 1px solid var(--line); border-radius: 6px;
  background: #f6f8fa; cursor: pointer; }
.hidden { display: none; }
footer { margin-top: 36px; color: #57606a; font-size: 12px; }
"""

JS = """
(function () {
  "use strict";
  function findings() { return Array.prototype.slice.call(document.querySelectorAll("details.finding")); }
  function openFromHash() {
    var name = decodeURIComponent(window.location.hash.slice(1));
    if (name.indexOf("finding-") !== 0) { return; }
    var el = document.getElementById(name);
    if (!el) { return; }
    el.open = true;
    el.classList.add("target");
    el.scrollIntoView({block: "start"});
  }
  document.getElementById("expand-all").addEventListener("click", function () {
    findings().forEach(function (d) { d.open = true; });
  });
  document.getElementById("collapse-all").addEventListener("click", function () {
    findings().forEach(function (d) { d.open = false; });
  });
  document.getElementById("only-blocking").addEventListener("change", function (ev) {
    findings().forEach(function (d) {
      var show = !ev.target.checked || d.getAttribute("data-status") === "blocking";
      d.classList.toggle("hidden", !show);
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("button.copy"), function (b) {
    b.addEventListener("click", function () {
      var text = b.getAttribute("data-copy");
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { b.textContent = "copied"; });
      }
    });
  });
  window.addEventListener("hashchange", openFromHash);
  openFromHash();
})();
"""


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page for ``report`` (see the module doc)."""
    run: Mapping[str, Any] = report.get("run", {})
    verdict: Mapping[str, Any] = report.get("verdict", {})
    result = str(verdict.get("result", "ERROR"))
    title = f"pytest-compat: {result} — {run.get('project', '')} ({run.get('id', '')})"
    csp = (
        "default-src 'none'; img-src data:; "
        f"style-src '{_sha256(CSS)}'; script-src '{_sha256(JS)}'; base-uri 'none'; form-action 'none'"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_a(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        _banner(report),
        _run_facts(report),
        _versions(report.get("versions", {})),
        _matrix(report),
        _findings(report),
        _checks(report.get("checks", [])),
        _tests(report.get("tests", [])),
        _waivers(report.get("waivers", {})),
        _footer(report),
        f"</main><script>{JS}</script></body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


# -- sections -------------------------------------------------------------------------------------------


def _banner(report: Mapping[str, Any]) -> str:
    verdict: Mapping[str, Any] = report.get("verdict", {})
    result = _verdict(verdict.get("result"))
    head = f"Verdict: {result} <small>(exit {_e(verdict.get('exit_code', '?'))})</small>"
    if verdict.get("softened_from"):
        head += f" <small>— dry run: would be {_e(verdict['softened_from'])}</small>"
    reasons = "".join(f"<li>{_e(r)}</li>" for r in verdict.get("reasons", []))
    return (
        f'<header id="verdict" class="banner v-{result}" data-verdict="{result}">'
        f"<h1>{head}</h1><ul>{reasons}</ul></header>"
    )


def _run_facts(report: Mapping[str, Any]) -> str:
    run: Mapping[str, Any] = report.get("run", {})
    counts: Mapping[str, Any] = report.get("verdict", {}).get("counts", {})
    statuses: Mapping[str, Any] = counts.get("statuses", {})
    facts = [
        ("project", run.get("project")),
        ("run", run.get("id")),
        ("seed", run.get("seed")),
        ("runtime", run.get("runtime")),
        ("started", run.get("started_at")),
        (
            "duration",
            f"{run['duration_s']:.1f} s" if isinstance(run.get("duration_s"), int | float) else None,
        ),
        ("config", run.get("config")),
        ("command", " ".join(run.get("argv", [])) or None),
        ("dry run", "yes" if run.get("dry_run") or report.get("verdict", {}).get("dry_run") else None),
        ("fail on", report.get("verdict", {}).get("fail_on")),
        (
            "findings",
            f"{counts.get('findings', 0)} — " + ", ".join(f"{n} {s}" for s, n in statuses.items() if n)
            if counts.get("findings")
            else "none",
        ),
    ]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts if v is not None and v != "")
    return f'<section id="run"><dl class="facts">{rows}</dl></section>'


def _versions(versions: Mapping[str, Any]) -> str:
    if not versions:
        return ""
    rows = []
    for service, sides in sorted(versions.items()):
        cells = [f'<th scope="row">{_e(service)}</th>']
        for side in ("baseline", "candidate"):
            info = sides.get(side) or None
            if info is None:
                cells.append('<td class="muted">—</td>')
                continue
            extra = " ".join(_e(info[k]) for k in ("image", "digest") if info.get(k))
            cells.append(
                f'<td><code>{_e(info.get("version"))}</code> <small class="muted">{extra}</small></td>'
            )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        '<section id="versions"><h2>Versions</h2><table><thead><tr><th>service</th><th>baseline</th>'
        f"<th>candidate</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _matrix(report: Mapping[str, Any]) -> str:
    columns, rows = matrix(report)
    if not rows:
        return '<section id="matrix"><h2>Compatibility matrix</h2><p class="muted">Nothing ran.</p></section>'
    head = "".join(f'<th scope="col" data-check="{_a(c)}">{_e(c)}</th>' for c in columns)
    body = []
    for row in rows:
        versions = ", ".join(f"{s}={v}" for s, v in sorted(row.versions.items()))
        stage_attr = _a(row.stage or "")
        row_verdict = _verdict(row.verdict) if row.verdict else NONE_VERDICT
        label = f"<em>{_e(NO_STAGE)}</em>" if row.stage is None else _e(row.label)
        cells = "".join(_cell(cell) for cell in row.cells)
        body.append(
            f'<tr data-stage="{stage_attr}" data-verdict="{row_verdict}">'
            f'<th scope="row" class="v-{row_verdict}">{label}<br><small>{_e(versions)}</small></th>'
            f"{cells}</tr>"
        )
    return (
        '<section id="matrix"><h2>Compatibility matrix</h2><table class="matrix"><thead><tr>'
        f'<th scope="col">stage</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></section>'
    )


def _cell(cell: Cell) -> str:
    verdict = _verdict(cell.verdict) if cell.verdict else NONE_VERDICT
    attrs = (
        f'id="{_a(cell_id(cell.stage, cell.column))}" class="cell v-{verdict}" '
        f'data-stage="{_a(cell.stage or "")}" data-check="{_a(cell.column)}" data-verdict="{verdict}"'
    )
    if cell.would_be:
        attrs += f' data-would-be="{_a(cell.would_be)}"'
    if not cell.items:
        return f"<td {attrs}>—</td>"
    inner = [verdict]
    if cell.would_be:
        inner.append(f'<span class="would">would be {_e(cell.would_be)}</span>')
    links = []
    if cell.column == TESTS_COLUMN:
        failed = sum(1 for t in cell.items if t.get("verdict") not in ("PASS", None))
        links.append(f"{len(cell.items)} test(s)" + (f", {failed} not passed" if failed else ""))
    else:
        for item in cell.items:
            label = _e(item.get("service") or item.get("id"))
            count = len(item.get("findings", []))
            suffix = f" ({count})" if count else ""
            title = f"{count} finding(s), {item.get('blocking', 0)} blocking"
            links.append(
                f'<a href="#{_href("check-" + str(item.get("id")))}" title="{_a(title)}">{label}</a>{suffix}'
            )
    inner.append(f'<span class="items">{" ".join(links)}</span>')
    return f"<td {attrs}>{''.join(inner)}</td>"


def _findings(report: Mapping[str, Any]) -> str:
    findings = ordered_findings(report)
    tools = (
        '<div class="tools"><button type="button" id="expand-all">Expand all</button>'
        '<button type="button" id="collapse-all">Collapse all</button>'
        '<label><input type="checkbox" id="only-blocking"> blocking only</label></div>'
    )
    if not findings:
        return (
            f'<section id="findings"><h2>Findings (0)</h2>{tools}<p class="muted">No findings.</p></section>'
        )
    items = "".join(_finding(f) for f in findings)
    return f'<section id="findings"><h2>Findings ({len(findings)})</h2>{tools}{items}</section>'


def _finding(f: Mapping[str, Any]) -> str:
    fid = str(f.get("id", ""))
    status = str(f.get("status", ""))
    versions: Mapping[str, Any] = f.get("versions") or {}
    where = " · ".join(
        p
        for p in (
            _e(f.get("stage") or ""),
            _e(", ".join(f"{s}: {v}" for s, v in sorted(versions.items()))),
            f"<code>{_e(f['operation'])}</code>" if f.get("operation") else "",
        )
        if p
    )
    summary = (
        f'<summary><span class="badge s-{_a(status)}">{_e(status)}</span> '
        f"<code>{_e(f.get('level'))}</code> <strong>{_e(f.get('check'))}/{_e(f.get('rule'))}</strong> "
        f'<span class="muted">{where}</span><br>{_e(f.get("message"))}</summary>'
    )
    facts = [
        ("finding id", fid),
        ("check item", f.get("check_id")),
        ("operation", f.get("operation")),
        ("stage", f.get("stage")),
        ("versions", ", ".join(f"{s}: {v}" for s, v in sorted(versions.items())) or None),
        ("seed", f.get("seed")),
        ("seen", f"{f['occurrences']} times" if (f.get("occurrences") or 1) > 1 else None),
    ]
    waiver = f.get("waiver")
    if isinstance(waiver, Mapping):
        facts.append(
            (
                "waived by",
                f"waiver[{waiver.get('index')}]: {waiver.get('reason')} (until {waiver.get('expires')})",
            )
        )
    body = ['<div class="body"><dl class="facts">']
    body += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts if v is not None and v != ""]
    body.append("</dl>")
    if f.get("expected") is not None or f.get("actual") is not None:
        body.append(
            '<div class="grid2">'
            f"<div><h3>expected</h3><pre>{_e(f.get('expected'))}</pre></div>"
            f"<div><h3>actual</h3><pre>{_e(f.get('actual'))}</pre></div></div>"
        )
    if f.get("request"):
        body.append(f'<h3>request</h3><pre class="request">{_e(pretty(f["request"]))}</pre>')
    if f.get("response"):
        body.append(f'<h3>response</h3><pre class="response">{_e(pretty(f["response"]))}</pre>')
    details: Mapping[str, Any] = f.get("details") or {}
    if details:
        body.append(f'<h3>details</h3><pre class="details">{_e(pretty(details))}</pre>')
    if f.get("curl"):
        curl = str(f["curl"])
        body.append(
            f'<h3>reproduce</h3><pre class="curl">{_e(curl)}</pre>'
            f'<button type="button" class="copy" data-copy="{_a(curl)}">copy</button>'
        )
    body.append("</div>")
    return (
        f'<details class="finding s-{_a(status)}" id="finding-{_a(fid)}" data-finding-id="{_a(fid)}" '
        f'data-status="{_a(status)}" data-check="{_a(f.get("check"))}" '
        f'data-stage="{_a(f.get("stage") or "")}" '
        f'data-level="{_a(f.get("level"))}">{summary}{"".join(body)}</details>'
    )


def _checks(checks: Iterable[Mapping[str, Any]]) -> str:
    rows = []
    for c in checks:
        verdict = _verdict(c.get("verdict"))
        notes = []
        if c.get("error"):
            notes.append(f"<pre>{_e(c['error'])}</pre>")
        if c.get("inconclusive"):
            notes.append(f"<div>inconclusive: {_e(c['inconclusive'])}</div>")
        notes += [f"<div>{_e(n)}</div>" for n in c.get("notes", [])]
        if c.get("metrics"):
            notes.append(
                f"<details><summary>metrics</summary><pre>{_e(pretty(c['metrics']))}</pre></details>"
            )
        links = " ".join(
            f'<a href="#finding-{_href(str(fid))}">{_e(fid)}</a>' for fid in c.get("findings", [])
        )
        would = f'<span class="would">would be {_e(c["would_be"])}</span>' if c.get("would_be") else ""
        dry = ' <small class="muted">(dry run)</small>' if c.get("dry_run") else ""
        rows.append(
            f'<tr id="check-{_a(c.get("id"))}" data-check-id="{_a(c.get("id"))}" data-verdict="{verdict}">'
            f"<td><code>{_e(c.get('id'))}</code>{dry}</td><td>{_e(c.get('check'))}</td>"
            f"<td>{_e(c.get('service') or '')}</td><td>{_e(c.get('stage') or '')}</td>"
            f'<td class="v-{verdict}">{verdict}{would}</td><td>{_e(_seconds(c.get("duration_s")))}</td>'
            f"<td>{links}</td><td>{''.join(notes)}</td></tr>"
        )
    if not rows:
        return ""
    return (
        '<section id="checks"><h2>Checks</h2><table><thead><tr><th>check item</th><th>check</th>'
        "<th>service</th><th>stage</th><th>verdict</th><th>time</th><th>findings</th><th>notes</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _tests(tests: Iterable[Mapping[str, Any]]) -> str:
    items = list(tests)
    if not items:
        return ""
    rank = {"failed": 0, "error": 0, "skipped": 1, "passed": 2}
    rows = []
    for t in sorted(items, key=lambda t: rank.get(str(t.get("outcome")), 0)):
        verdict = _verdict(t["verdict"]) if t.get("verdict") else NONE_VERDICT
        rows.append(
            f'<tr data-nodeid="{_a(t.get("nodeid"))}" data-verdict="{verdict}">'
            f"<td><code>{_e(t.get('nodeid'))}"
            f'</code></td><td>{_e(t.get("stage") or "")}</td><td class="v-{verdict}">{_e(t.get("outcome"))}'
            f"</td><td>{_e(_seconds(t.get('duration_s')))}</td><td>{_e(t.get('message') or '')}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>test</th><th>stage</th><th>outcome</th><th>time</th><th>message</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )
    open_attr = " open" if any(t.get("outcome") in ("failed", "error") for t in items) else ""
    return (
        f'<section id="tests"><h2>Tests ({len(items)})</h2><details{open_attr}><summary>show tests</summary>'
        f"{table}</details></section>"
    )


def _waivers(waivers: Mapping[str, Any]) -> str:
    lines = []
    for w in waivers.get("applied", []):
        lines.append(
            f"<li>applied: waiver[{_e(w.get('index'))}] — {_e(w.get('reason'))} "
            f"(until {_e(w.get('expires'))})"
            f": {_finding_links(w.get('findings', []))}</li>"
        )
    for w in waivers.get("expired", []):
        lines.append(
            f"<li><strong>expired</strong> on {_e(w.get('expires'))}: waiver[{_e(w.get('index'))}] — "
            f"{_e(w.get('reason'))} {_finding_links(w.get('findings', []))}</li>"
        )
    for w in waivers.get("unused", []):
        lines.append(f"<li>unused: waiver[{_e(w.get('index'))}] — {_e(w.get('reason'))}</li>")
    notes = "".join(f"<li>{_e(n)}</li>" for n in waivers.get("notes", []))
    if not lines and not notes:
        return ""
    source = f' <small class="muted">{_e(waivers.get("file"))}</small>' if waivers.get("file") else ""
    notes_html = f"<h3>notes</h3><ul>{notes}</ul>" if notes else ""
    return f'<section id="waivers"><h2>Waivers{source}</h2><ul>{"".join(lines)}</ul>{notes_html}</section>'


def _footer(report: Mapping[str, Any]) -> str:
    version = report.get("tool", {}).get("version", "")
    return (
        f"<footer>pytest-compat {_e(version)} · report schema {_e(report.get('schema_version', ''))}</footer>"
    )


# -- helpers --------------------------------------------------------------------------------------------


def cell_id(stage: str | None, column: str) -> str:
    """The element id of a matrix cell: ``cell-onebox--contracts`` (``cell---spec-diff`` without stage)."""
    return f"cell-{stage or ''}--{column}"


def pretty(value: Any) -> str:
    """JSON pretty-printed; a string body that is JSON is parsed first so it is indented too."""
    return json.dumps(_parse_bodies(value), indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _parse_bodies(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _parse_bodies(v) if k != "body" else _maybe_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_parse_bodies(v) for v in value]
    return value


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return _parse_bodies(value)


def _finding_links(ids: Iterable[Any]) -> str:
    return " ".join(f'<a href="#finding-{_href(str(i))}">{_e(i)}</a>' for i in ids)


def _verdict(value: object) -> str:
    text = str(value)
    return text if text in VERDICTS else "ERROR"


def _seconds(value: object) -> str:
    return f"{value:.2f} s" if isinstance(value, int | float) else ""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _a(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _href(fragment: str) -> str:
    return escape(quote(fragment, safe="-_.:~=,+!*()"), quote=True)


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
