"""The four verdicts, how several of them combine into one, and the exit code each one means.

A verdict answers "may this candidate be promoted?" for one check, one test, one stage or a whole run:

- ``PASS``: everything that ran found nothing that blocks promotion.
- ``FAIL``: at least one blocking incompatibility (an unwaived finding at a blocking level, a failed test).
- ``INCONCLUSIVE``: too little evidence to judge (a check saw too little traffic, nothing ran at all).
- ``ERROR``: the harness could not decide — a check crashed, a container never became healthy, the engine
  went away. This is the *fail-closed* rule: a run the harness could not observe is never a pass, and no
  option (not even a dry run) turns an ERROR into anything else.

Combining takes the worst: ERROR > FAIL > INCONCLUSIVE > PASS. Combining nothing is PASS; whether "nothing
ran" is acceptable is decided where the evidence is counted (:mod:`compat.gate.evaluate`), not here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from compat.gate.exitcodes import ExitCode


class Verdict(enum.StrEnum):
    """A str: ``Verdict.FAIL == "FAIL"`` and it serialises to JSON as its name."""

    PASS = "PASS"  # noqa: S105 (a verdict, not a password)
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    ERROR = "ERROR"


#: worst last: ``combine`` picks the verdict with the highest rank
PRECEDENCE: tuple[Verdict, ...] = (Verdict.PASS, Verdict.INCONCLUSIVE, Verdict.FAIL, Verdict.ERROR)
_RANK = {v: i for i, v in enumerate(PRECEDENCE)}

_EXIT = {
    Verdict.PASS: ExitCode.PASS,
    Verdict.FAIL: ExitCode.FAIL,
    Verdict.ERROR: ExitCode.ERROR,
    Verdict.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
}


def parse(value: str | Verdict) -> Verdict:
    """A verdict from its name (``"FAIL"``, case-insensitive); ``ValueError`` names the valid ones."""
    if isinstance(value, Verdict):
        return value
    try:
        return Verdict(str(value).upper())
    except ValueError:
        valid = ", ".join(v.value for v in Verdict)
        raise ValueError(f"not a verdict: {value!r} (valid: {valid})") from None


def combine(verdicts: Iterable[Verdict | str]) -> Verdict:
    """The worst of ``verdicts`` (ERROR > FAIL > INCONCLUSIVE > PASS); ``combine([])`` is PASS."""
    worst = Verdict.PASS
    for item in verdicts:
        verdict = parse(item)
        if _RANK[verdict] > _RANK[worst]:
            worst = verdict
    return worst


def exit_code(verdict: Verdict | str) -> int:
    """The process exit code of a run with this verdict: PASS 0, FAIL 1, ERROR 2, INCONCLUSIVE 3."""
    return int(_EXIT[parse(verdict)])


def soften(verdict: Verdict, dry_run: bool) -> Verdict:
    """A dry run turns FAIL into PASS; ERROR and INCONCLUSIVE are never softened (fail closed)."""
    return Verdict.PASS if dry_run and verdict is Verdict.FAIL else verdict
