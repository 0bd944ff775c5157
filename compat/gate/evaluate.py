"""The gate: turn a report's checks, tests and findings into verdicts and an exit code.

:func:`evaluate` takes a report dict (the document :mod:`compat.report` writes), a :class:`GatePolicy` and
waivers, and recomputes everything that depends on them: each finding's ``status`` and ``waiver``, each
check's, test's and stage's verdict, the ``waivers`` section and the run ``verdict``. The same function
backs the end of a ``pytest --compat`` run and ``compat gate REPORT.json --waivers F --fail-on WARN``, so
both give the same exit code for the same evidence.

Finding status (first rule that applies):

- ``pending``: a pending contract interaction — reported, never blocking;
- ``waived``: an in-force waiver matches it;
- ``dry-run``: it would block, but the run is a dry run or its check is in dry-run mode;
- ``blocking``: level ERR (or WARN with ``fail_on="WARN"``);
- ``warning`` / ``info``: WARN / INFO levels that do not block.

Check verdict: ``error`` set (the check crashed or its infrastructure failed) -> ERROR; ``inconclusive``
set -> INCONCLUSIVE; a ``blocking`` finding -> FAIL; else PASS. Test verdict: failed -> FAIL, error ->
ERROR, skipped with a reason starting ``INCONCLUSIVE`` -> INCONCLUSIVE, other skips are not counted.
Stage verdict: the worst of the checks and tests run in it. Run verdict: the worst of all checks and
tests; INCONCLUSIVE when nothing at all was counted.

Dry run softens FAIL to PASS, never ERROR or INCONCLUSIVE (fail closed). A softened item keeps what it
would have been in ``would_be``; the run verdict records ``softened_from``.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from compat.errors import UsageError
from compat.gate.verdict import PRECEDENCE, Verdict, combine, exit_code, soften
from compat.gate.waivers import Waiver, apply_waivers

FAIL_ON = ("ERR", "WARN")
STATUSES = ("blocking", "waived", "warning", "info", "pending", "dry-run")
OUTCOMES = ("passed", "failed", "error", "skipped")


@dataclass(frozen=True)
class GatePolicy:
    """What blocks promotion.

    ``fail_on``: the lowest finding level that blocks — ``"ERR"`` (default) or ``"WARN"``.
    ``dry_run``: report everything, but soften FAIL to PASS (ERROR and INCONCLUSIVE stay).
    ``dry_run_checks``: check names (``"canary"``) whose findings never block; a check item can also ask
    for it itself (its ``dry_run`` field).
    """

    fail_on: str = "ERR"
    dry_run: bool = False
    dry_run_checks: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.fail_on not in FAIL_ON:
            raise UsageError(
                f"--fail-on: not a valid level (got {self.fail_on!r}); choose one of: {', '.join(FAIL_ON)} "
                "(ERR: only errors block; WARN: warnings block too)"
            )
        object.__setattr__(self, "dry_run_checks", frozenset(self.dry_run_checks))

    def blocks(self, level: str) -> bool:
        """Whether a finding at ``level`` blocks (before waivers, pending and dry run)."""
        return level == "ERR" or (self.fail_on == "WARN" and level == "WARN")


def evaluate(
    report: Mapping[str, Any],
    policy: GatePolicy | None = None,
    waivers: Sequence[Waiver] = (),
    today: dt.date | None = None,
    *,
    waivers_file: str | None = None,
) -> dict[str, Any]:
    """A copy of ``report`` with statuses, verdicts, the waivers section and the run verdict recomputed.

    ``today`` decides which waivers have expired (default: the local date). ``waivers_file`` names the
    waiver file in the report (default: the file the waivers were loaded from, if any).
    """
    policy = policy or GatePolicy()
    today = today or dt.date.today()
    out: dict[str, Any] = copy.deepcopy(dict(report))
    findings: list[dict[str, Any]] = out.setdefault("findings", [])
    checks: list[dict[str, Any]] = out.setdefault("checks", [])
    tests: list[dict[str, Any]] = out.setdefault("tests", [])
    stages: list[dict[str, Any]] = out.setdefault("stages", [])

    owner = _owners(checks)
    waived = apply_waivers(findings, waivers, today)
    for finding, outcome in zip(findings, waived.findings, strict=True):
        check = owner.get(str(finding.get("id")))
        dry = policy.dry_run or finding.get("check") in policy.dry_run_checks
        if check is not None:
            dry = dry or bool(check.get("dry_run")) or check.get("check") in policy.dry_run_checks
        finding["waiver"] = None
        if outcome.waiver is not None:
            w = outcome.waiver
            finding["waiver"] = {"index": w.index, "reason": w.reason, "expires": w.expires.isoformat()}
        finding["status"] = _status(finding, policy, waived=outcome.waived, dry_run=dry)

    by_id: dict[str, list[dict[str, Any]]] = {}
    for finding in findings:
        by_id.setdefault(str(finding.get("id")), []).append(finding)
    raw: dict[int, Verdict] = {}  # id(item) -> verdict before dry-run softening
    for check in checks:
        mine = [f for fid in check.get("findings", []) for f in by_id.get(str(fid), [])]
        check_dry = (
            policy.dry_run or bool(check.get("dry_run")) or check.get("check") in policy.dry_run_checks
        )
        verdict = _check_verdict(check, mine)
        raw[id(check)] = verdict
        _set(check, verdict, soften(verdict, check_dry))
        check["blocking"] = sum(f["status"] == "blocking" for f in mine)
    for test in tests:
        verdict_or_none = _test_verdict(test)
        if verdict_or_none is None:
            test["verdict"] = None
            test["would_be"] = None
            continue
        raw[id(test)] = verdict_or_none
        _set(test, verdict_or_none, soften(verdict_or_none, policy.dry_run))

    counted = [item for item in [*checks, *tests] if id(item) in raw]
    for stage in stages:
        members = [item for item in counted if item.get("stage") == stage.get("id")]
        _set(stage, combine(raw[id(m)] for m in members), combine(m["verdict"] for m in members))

    out["waivers"] = waived.to_dict(waivers_file or next((w.file for w in waivers if w.file), None))
    out["verdict"] = _run_verdict(findings, checks, tests, counted, raw, policy, today)
    return out


def _owners(checks: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    owner: dict[str, Mapping[str, Any]] = {}
    for check in checks:
        for fid in check.get("findings", []):
            owner.setdefault(str(fid), check)
    return owner


def _status(finding: Mapping[str, Any], policy: GatePolicy, *, waived: bool, dry_run: bool) -> str:
    level = str(finding.get("level", "ERR"))
    if finding.get("pending"):
        return "pending"
    if waived:
        return "waived"
    if policy.blocks(level):
        return "dry-run" if dry_run else "blocking"
    return "warning" if level == "WARN" else "info"


def _check_verdict(check: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]) -> Verdict:
    if check.get("error"):
        return Verdict.ERROR
    if check.get("inconclusive"):
        return Verdict.INCONCLUSIVE
    if any(f["status"] in ("blocking", "dry-run") for f in findings):
        return Verdict.FAIL
    return Verdict.PASS


def _test_verdict(test: Mapping[str, Any]) -> Verdict | None:
    outcome = test.get("outcome")
    if outcome == "passed":
        return Verdict.PASS
    if outcome == "failed":
        return Verdict.FAIL
    if outcome == "error":
        return Verdict.ERROR
    if outcome == "skipped":
        message = str(test.get("message") or "")
        return Verdict.INCONCLUSIVE if message.lstrip().upper().startswith("INCONCLUSIVE") else None
    return Verdict.ERROR  # an outcome we do not know: never a pass


def _set(item: dict[str, Any], raw: Verdict, effective: Verdict) -> None:
    item["verdict"] = effective.value
    item["would_be"] = raw.value if raw is not effective else None


def _run_verdict(
    findings: Sequence[Mapping[str, Any]],
    checks: Sequence[Mapping[str, Any]],
    tests: Sequence[Mapping[str, Any]],
    counted: Sequence[Mapping[str, Any]],
    raw: Mapping[int, Verdict],
    policy: GatePolicy,
    today: dt.date,
) -> dict[str, Any]:
    reasons: list[str] = []
    if counted:
        result = combine(item["verdict"] for item in counted)
        unsoftened = combine(raw[id(item)] for item in counted)
    else:
        result = unsoftened = Verdict.INCONCLUSIVE
        reasons.append("no check or test ran: nothing to judge the candidate by")

    statuses = Counter(str(f.get("status")) for f in findings)
    for check in checks:
        verdict = check["verdict"]
        if verdict == Verdict.ERROR:
            reasons.append(f"check {check.get('id')}: ERROR ({_one_line(check.get('error'))})")
        elif verdict == Verdict.INCONCLUSIVE:
            reasons.append(f"check {check.get('id')}: INCONCLUSIVE ({_one_line(check.get('inconclusive'))})")
        elif verdict == Verdict.FAIL:
            reasons.append(f"check {check.get('id')}: FAIL ({check.get('blocking', 0)} blocking finding(s))")
    for test in tests:
        if test.get("verdict") in (Verdict.FAIL, Verdict.ERROR, Verdict.INCONCLUSIVE):
            text = f"test {test.get('nodeid')}: {test.get('outcome')}"
            if test.get("message"):
                text += f" ({_one_line(test.get('message'))})"
            reasons.append(text)
    unowned = [f for f in findings if f.get("status") == "blocking" and not _owned(f, checks)]
    if unowned:
        reasons.append(f"{len(unowned)} blocking finding(s) not attached to any check")
        if counted:
            result = combine([result, soften(Verdict.FAIL, policy.dry_run)])
            unsoftened = combine([unsoftened, Verdict.FAIL])
    what = "dry run" if policy.dry_run else "dry-run checks"
    if result is not unsoftened:
        reasons.append(
            f"{what}: {unsoftened.value} softened to {result.value} "
            f"({statuses['dry-run']} finding(s) would block)"
        )
    elif statuses["dry-run"]:
        reasons.append(f"{what}: {statuses['dry-run']} finding(s) would block (not counted)")
    if result is Verdict.PASS and counted and not reasons:
        ids = {id(item) for item in counted}
        n_checks = sum(1 for c in checks if id(c) in ids)
        n_tests = sum(1 for t in tests if id(t) in ids)
        reasons.append(f"every check ({n_checks}) and test ({n_tests}) passed")

    return {
        "result": result.value,
        "exit_code": exit_code(result),
        "reasons": reasons,
        "softened_from": unsoftened.value if unsoftened is not result else None,
        "fail_on": policy.fail_on,
        "dry_run": policy.dry_run,
        "dry_run_checks": sorted(policy.dry_run_checks),
        "evaluated_on": today.isoformat(),
        "counts": {
            "findings": len(findings),
            "blocking": statuses["blocking"],
            "waived": statuses["waived"],
            "statuses": {s: statuses[s] for s in STATUSES},
            "checks": {v.value: sum(c["verdict"] == v for c in checks) for v in PRECEDENCE},
            "tests": {o: sum(t.get("outcome") == o for t in tests) for o in OUTCOMES},
        },
    }


def _owned(finding: Mapping[str, Any], checks: Sequence[Mapping[str, Any]]) -> bool:
    fid = str(finding.get("id"))
    return any(fid in map(str, c.get("findings", [])) for c in checks)


def _one_line(text: object) -> str:
    line = " ".join(str(text or "").split())
    return line if len(line) <= 200 else line[:199] + "…"
