"""Verdicts, their precedence and exit codes, and the gate's evaluation of a report (policy, dry run)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from compat.checks.finding import Finding
from compat.errors import UsageError
from compat.gate import ExitCode, GatePolicy, Verdict, combine, evaluate, exit_code
from compat.gate.verdict import parse, soften
from compat.gate.waivers import Waiver
from tests.report_samples import TODAY, WAIVER, sample_report

P, F, INC, E = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.ERROR


# -- verdicts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], P),
        ([P, P], P),
        ([P, INC], INC),
        ([INC, F, P], F),
        ([F, E, INC], E),
        ([E, P], E),
        (["FAIL", "pass"], F),
    ],
)
def test_combine_takes_the_worst(verdicts: list[Any], expected: Verdict) -> None:
    assert combine(verdicts) is expected


def test_exit_codes_match_the_pipeline_contract() -> None:
    assert [exit_code(v) for v in (P, F, E, INC)] == [0, 1, 2, 3]
    assert exit_code("INCONCLUSIVE") == ExitCode.INCONCLUSIVE
    assert ExitCode.USAGE == 4  # separate: never produced from a verdict


def test_verdict_is_a_string_and_parse_names_the_valid_ones() -> None:
    assert Verdict.FAIL == "FAIL"
    assert str(Verdict.ERROR) == "ERROR"
    assert parse("inconclusive") is INC
    with pytest.raises(
        ValueError, match=r"not a verdict: 'MAYBE' \(valid: PASS, FAIL, INCONCLUSIVE, ERROR\)"
    ):
        parse("MAYBE")


def test_soften_only_turns_fail_into_pass() -> None:
    assert soften(F, dry_run=True) is P
    assert soften(E, dry_run=True) is E
    assert soften(INC, dry_run=True) is INC
    assert soften(F, dry_run=False) is F


# -- evaluate on small reports --------------------------------------------------------------------------


def finding(level: str = "ERR", check: str = "contracts", rule: str = "r", **kw: Any) -> dict[str, Any]:
    return Finding(check=check, rule=rule, message="m", level=level, stage="onebox", **kw).to_dict()


def report(
    checks: list[dict[str, Any]] | None = None,
    findings: list[dict[str, Any]] | None = None,
    tests: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "stages": [{"id": "onebox", "stage": "onebox", "kind": "onebox", "verdict": "PASS", "versions": {}}],
        "checks": checks or [],
        "tests": tests or [],
        "findings": findings or [],
    }


def check(cid: str = "onebox-contracts-orders", *findings: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"id": cid, "check": "contracts", "stage": "onebox", "findings": [f["id"] for f in findings], **kw}


def test_a_blocking_finding_fails_its_check_stage_and_run() -> None:
    f = finding()
    out = evaluate(report([check("c", f)], [f]), GatePolicy(), today=TODAY)
    assert out["findings"][0]["status"] == "blocking"
    assert out["checks"][0]["verdict"] == "FAIL"
    assert out["stages"][0]["verdict"] == "FAIL"
    assert out["verdict"]["result"] == "FAIL"
    assert out["verdict"]["exit_code"] == 1
    assert out["verdict"]["reasons"] == ["check c: FAIL (1 blocking finding(s))"]


def test_warnings_block_only_with_fail_on_warn() -> None:
    f = finding("WARN")
    rep = report([check("c", f)], [f])
    assert evaluate(rep, GatePolicy(), today=TODAY)["verdict"]["result"] == "PASS"
    assert evaluate(rep, GatePolicy(), today=TODAY)["findings"][0]["status"] == "warning"
    strict = evaluate(rep, GatePolicy(fail_on="WARN"), today=TODAY)
    assert strict["verdict"]["result"] == "FAIL"
    assert strict["verdict"]["fail_on"] == "WARN"
    info = finding("INFO", rule="i")
    assert (
        evaluate(report([check("c", info)], [info]), GatePolicy(fail_on="WARN"), today=TODAY)["verdict"][
            "result"
        ]
        == "PASS"
    )


def test_pending_findings_never_block() -> None:
    f = finding(pending=True)
    out = evaluate(report([check("c", f)], [f]), today=TODAY)
    assert out["findings"][0]["status"] == "pending"
    assert out["verdict"]["result"] == "PASS"


def test_error_and_inconclusive_checks() -> None:
    f = finding()
    out = evaluate(
        report(
            [check("crashed", f, error="boom\nsecond line"), check("thin", inconclusive="only 3 requests")],
            [f],
        ),
        today=TODAY,
    )
    assert [c["verdict"] for c in out["checks"]] == ["ERROR", "INCONCLUSIVE"]
    assert out["verdict"]["result"] == "ERROR"
    assert out["verdict"]["exit_code"] == 2
    assert "check crashed: ERROR (boom second line)" in out["verdict"]["reasons"]
    assert "check thin: INCONCLUSIVE (only 3 requests)" in out["verdict"]["reasons"]


def test_dry_run_softens_fail_but_never_error() -> None:
    f = finding()
    rep = report([check("c", f)], [f])
    out = evaluate(rep, GatePolicy(dry_run=True), today=TODAY)
    assert out["findings"][0]["status"] == "dry-run"
    assert out["checks"][0]["verdict"] == "PASS"
    assert out["checks"][0]["would_be"] == "FAIL"
    assert out["stages"][0]["would_be"] == "FAIL"
    assert out["verdict"]["result"] == "PASS"
    assert out["verdict"]["exit_code"] == 0
    assert out["verdict"]["softened_from"] == "FAIL"
    assert any(
        r.startswith("dry run: FAIL softened to PASS (1 finding(s)") for r in out["verdict"]["reasons"]
    )

    crashed = report([check("c", f), check("d", error="engine went away")], [f])
    out = evaluate(crashed, GatePolicy(dry_run=True), today=TODAY)
    assert out["verdict"]["result"] == "ERROR"
    assert out["verdict"]["exit_code"] == 2
    assert out["verdict"]["softened_from"] is None  # the worst (ERROR) was not softened


def test_dry_run_keeps_inconclusive() -> None:
    out = evaluate(report([check("c", inconclusive="no traffic")]), GatePolicy(dry_run=True), today=TODAY)
    assert out["verdict"]["result"] == "INCONCLUSIVE"


def test_per_check_dry_run_by_policy_or_by_the_check_item() -> None:
    canary = finding(check="canary", rule="p99")
    contract = finding()
    rep = report(
        [
            {**check("canary", canary), "check": "canary"},
            check("contracts", contract),
        ],
        [canary, contract],
    )
    out = evaluate(rep, GatePolicy(dry_run_checks=frozenset({"canary"})), today=TODAY)
    assert [f["status"] for f in out["findings"]] == ["dry-run", "blocking"]
    assert [c["verdict"] for c in out["checks"]] == ["PASS", "FAIL"]
    assert out["verdict"]["result"] == "FAIL"

    rep["checks"][1]["dry_run"] = True
    out = evaluate(rep, GatePolicy(dry_run_checks=frozenset({"canary"})), today=TODAY)
    assert out["verdict"]["result"] == "PASS"
    assert out["verdict"]["softened_from"] == "FAIL"
    assert "dry-run checks: FAIL softened to PASS (2 finding(s) would block)" in out["verdict"]["reasons"]

    rep["checks"].append(check("crashed", error="boom"))
    out = evaluate(rep, GatePolicy(dry_run_checks=frozenset({"canary"})), today=TODAY)
    assert out["verdict"]["result"] == "ERROR"
    assert "dry-run checks: 2 finding(s) would block (not counted)" in out["verdict"]["reasons"]


@pytest.mark.parametrize(
    ("outcome", "message", "verdict", "run"),
    [
        ("passed", None, "PASS", "PASS"),
        ("failed", "assert 500 == 200", "FAIL", "FAIL"),
        ("error", "fixture 'db' failed", "ERROR", "ERROR"),
        ("skipped", "INCONCLUSIVE: only 2 of 50 requests answered", "INCONCLUSIVE", "INCONCLUSIVE"),
        ("skipped", "needs S3", None, "INCONCLUSIVE"),  # nothing counted: nothing to judge by
    ],
)
def test_user_tests(outcome: str, message: str | None, verdict: str | None, run: str) -> None:
    test = {"nodeid": "t.py::t[onebox]", "stage": "onebox", "outcome": outcome, "message": message}
    out = evaluate(report(tests=[test]), today=TODAY)
    assert out["tests"][0]["verdict"] == verdict
    assert out["verdict"]["result"] == run
    assert out["stages"][0]["verdict"] == (verdict or "PASS")


def test_a_skipped_test_does_not_hide_a_pass() -> None:
    tests = [
        {"nodeid": "a", "stage": "onebox", "outcome": "passed"},
        {"nodeid": "b", "stage": "onebox", "outcome": "skipped", "message": "no S3"},
    ]
    out = evaluate(report(tests=tests), today=TODAY)
    assert out["verdict"]["result"] == "PASS"
    assert out["verdict"]["reasons"] == ["every check (0) and test (1) passed"]
    assert out["verdict"]["counts"]["tests"] == {"passed": 1, "failed": 0, "error": 0, "skipped": 1}


def test_nothing_ran_is_inconclusive() -> None:
    out = evaluate(report(), today=TODAY)
    assert out["verdict"]["result"] == "INCONCLUSIVE"
    assert out["verdict"]["exit_code"] == 3
    assert out["verdict"]["reasons"] == ["no check or test ran: nothing to judge the candidate by"]


def test_a_blocking_finding_outside_any_check_still_fails() -> None:
    f = finding()
    out = evaluate(report([check("c")], [f]), today=TODAY)
    assert out["verdict"]["result"] == "FAIL"
    assert "1 blocking finding(s) not attached to any check" in out["verdict"]["reasons"]


def test_waivers_in_evaluate_and_expiry() -> None:
    f = finding(rule="response-property-removed")
    rep = report([check("c", f)], [f])
    waiver = Waiver(index=0, reason="migrated", expires=dt.date(2026, 10, 1), rule="response-*")
    out = evaluate(rep, GatePolicy(), [waiver], dt.date(2026, 10, 1))  # in force on its last day
    assert out["findings"][0]["status"] == "waived"
    assert out["findings"][0]["waiver"] == {"index": 0, "reason": "migrated", "expires": "2026-10-01"}
    assert out["verdict"]["result"] == "PASS"
    assert out["verdict"]["counts"]["waived"] == 1

    out = evaluate(rep, GatePolicy(), [waiver], dt.date(2026, 10, 2))
    assert out["findings"][0]["status"] == "blocking"
    assert out["findings"][0]["waiver"] is None
    assert out["verdict"]["result"] == "FAIL"
    assert out["waivers"]["notes"] == [
        f"waiver[0] (reason 'migrated') expired on 2026-10-01; finding {f['id']} is no longer waived"
    ]


def test_policy_rejects_an_unknown_level() -> None:
    with pytest.raises(
        UsageError, match=r"--fail-on: not a valid level \(got 'ERROR'\); choose one of: ERR, WARN"
    ):
        GatePolicy(fail_on="ERROR")


def test_evaluate_does_not_mutate_its_input() -> None:
    f = finding()
    rep = report([check("c", f)], [f])
    before = repr(rep)
    evaluate(rep, GatePolicy(dry_run=True), today=TODAY)
    assert repr(rep) == before


# -- the sample run -------------------------------------------------------------------------------------


def test_sample_run_verdicts() -> None:
    rep = sample_report()
    assert [(c["id"], c["verdict"]) for c in rep["checks"]] == [
        ("onebox-contracts-orders", "FAIL"),
        ("onebox-properties-orders", "FAIL"),
        ("rollback:1-mixed-data-orders", "ERROR"),
    ]
    assert [(s["id"], s["verdict"]) for s in rep["stages"]] == [
        ("onebox", "FAIL"),
        ("rollback:1-mixed", "ERROR"),
    ]
    assert rep["verdict"]["result"] == "ERROR"  # a crashed check fails closed, above FAIL
    counts = rep["verdict"]["counts"]
    assert (counts["findings"], counts["blocking"], counts["waived"]) == (3, 2, 1)
    assert counts["checks"] == {"PASS": 0, "INCONCLUSIVE": 0, "FAIL": 2, "ERROR": 1}

    assert sample_report(crashed=False)["verdict"]["result"] == "FAIL"


def test_regating_a_report_is_stable_and_honours_a_new_policy() -> None:
    rep = sample_report(crashed=False)
    again = evaluate(rep, GatePolicy(), [WAIVER], TODAY, waivers_file="compat-waivers.toml")
    assert again == rep
    without_waivers = evaluate(rep, GatePolicy(), [], TODAY)
    assert without_waivers["verdict"]["counts"]["blocking"] == 3
    assert without_waivers["waivers"]["file"] is None
    dry = evaluate(rep, GatePolicy(dry_run=True), [WAIVER], TODAY)
    assert (dry["verdict"]["result"], dry["verdict"]["exit_code"]) == ("PASS", 0)
