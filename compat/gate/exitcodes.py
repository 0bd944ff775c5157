"""Exit codes of ``compat`` commands; a pipeline reads these, so they never change meaning."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    PASS = 0  # every check ran and found nothing that blocks promotion
    FAIL = 1  # at least one incompatibility
    ERROR = 2  # the harness could not decide (infrastructure failure): fail closed, never a pass
    INCONCLUSIVE = 3  # too little evidence to judge (e.g. no test ran)
    USAGE = 4  # bad command line or configuration
