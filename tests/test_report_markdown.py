"""The Markdown summary: verdict line, stage x check table, capped findings list, waivers, escaping."""

from __future__ import annotations

import copy
import datetime as dt

from compat.gate import GatePolicy, evaluate
from compat.gate.waivers import Waiver
from compat.report import render_markdown
from compat.report.markdown import code, text
from tests.report_samples import CONTRACT, TODAY, WAIVER, sample_report


def test_verdict_line_and_reasons() -> None:
    md = render_markdown(sample_report(crashed=False))
    lines = md.splitlines()
    assert lines[0] == "### pytest-compat: shop (run `r-20260601-0930-ab12`)"
    assert "**Verdict: FAIL** (exit 1)" in lines
    assert "- check onebox-contracts-orders: FAIL (1 blocking finding(s))" in lines
    assert "seed `1234` · runtime docker · 83.4 s · findings: 3 (2 blocking, 1 waived)" in lines
    assert "**Verdict: ERROR** (exit 2)" in render_markdown(sample_report())


def test_stage_by_check_table() -> None:
    lines = render_markdown(sample_report()).splitlines()
    start = lines.index("| stage | versions | contracts | properties | data | tests |")
    assert lines[start + 1] == "| --- | --- | --- | --- | --- | --- |"
    assert lines[start + 2] == "| onebox | orders=v1+v2-rename-field, web=v1 | FAIL | FAIL | — | PASS |"
    assert lines[start + 3] == "| rollback:1-mixed | orders=v1+v2-rename-field | — | — | ERROR | PASS |"


def test_findings_show_check_rule_stage_versions_message_and_curl() -> None:
    md = render_markdown(sample_report())
    assert "#### Blocking findings (2)" in md
    first = next(line for line in md.splitlines() if line.startswith("1. "))
    assert first.startswith(
        "1. **contracts/a request for order 7** · stage `onebox` · orders: v1+v2-rename-field"
    )
    assert f"(`{CONTRACT.id}`)\\" in first  # hard break before the curl line
    assert "    `curl -sS -i -X GET -H 'Authorization: [redacted]'" in md
    assert "response\\_schema\\_conformance" not in md  # waived: not listed among blocking findings


def test_user_text_cannot_inject_html_or_break_the_table() -> None:
    md = render_markdown(sample_report())
    assert "<script>" not in md
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in md
    rep = copy.deepcopy(sample_report())
    rep["stages"][0]["id"] = "evil|stage"
    rep["checks"][0]["stage"] = rep["checks"][1]["stage"] = "evil|stage"
    rep["tests"][0]["stage"] = "evil|stage"
    row = next(line for line in render_markdown(rep).splitlines() if line.startswith("| evil"))
    assert row.startswith("| evil\\|stage |")
    assert row.count(" | ") == 5  # still six cells


def test_escaping_helpers() -> None:
    assert text("a *b* [link](http://x) <b> & | `c`\nd") == (
        "a \\*b\\* \\[link\\](http://x) &lt;b&gt; &amp; \\| \\`c\\` d"
    )
    assert code("plain") == "`plain`"
    assert code("has `tick`") == "`` has `tick` ``"
    assert code("``x``") == "``` ``x`` ```"


def test_findings_are_capped_at_ten_and_stay_short() -> None:
    md = render_markdown(sample_report(extra_findings=14))
    lines = md.splitlines()
    assert "#### Blocking findings (16)" in lines
    assert sum(1 for line in lines if line.split(". ", 1)[0].isdigit()) == 10
    assert "… and 6 more (see the HTML or JSON report)" in lines
    assert len(lines) < 60
    assert len(render_markdown(sample_report()).splitlines()) < 60


def test_waivers_applied_expired_and_unused() -> None:
    expired = Waiver(index=1, reason="old exception", expires=dt.date(2026, 5, 1), rule="status_code_*")
    unused = Waiver(index=2, reason="nothing", expires=dt.date(2027, 1, 1), check="yoyo")
    rep = evaluate(sample_report(), GatePolicy(), [WAIVER, expired, unused], TODAY)
    md = render_markdown(rep)
    assert (
        "- applied: waiver[0] (currency becomes required in v2; all consumers send it (JIRA-123)), "
        "until 2027-01-31: 1 finding(s)"
    ) in md
    assert "- **expired** on 2026-05-01: waiver[1] (old exception), 1 finding(s) no longer waived" in md
    assert "- unused: waiver[2] (nothing) waived no finding" in md


def test_dry_run_lists_the_findings_that_would_block() -> None:
    md = render_markdown(sample_report(GatePolicy(dry_run=True), crashed=False))
    assert "**Verdict: PASS** (exit 0) — dry run: would be FAIL" in md
    assert "#### Findings that would block (2)" in md
    assert (
        "| onebox | orders=v1+v2-rename-field, web=v1 | PASS (would be FAIL) | PASS (would be FAIL) |" in md
    )


def test_a_passing_run_has_no_findings_section() -> None:
    rep = evaluate(
        sample_report(crashed=False), GatePolicy(dry_run_checks=frozenset({"contracts", "properties"}))
    )
    rep = evaluate(
        {**rep, "findings": [], "checks": [{**c, "findings": []} for c in rep["checks"]]},
        GatePolicy(),
        [],
        TODAY,
    )
    md = render_markdown(rep)
    assert "**Verdict: PASS** (exit 0)" in md
    assert "findings" not in md.split("| stage", 1)[1]
