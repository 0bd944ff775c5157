"""Findings to verdict, waivers and exit codes.

- :mod:`~compat.gate.exitcodes`: the exit codes a pipeline reads;
- :mod:`~compat.gate.verdict`: PASS/FAIL/INCONCLUSIVE/ERROR, combining them, their exit codes;
- :mod:`~compat.gate.waivers`: ``compat-waivers.toml``: accepted findings with a reason and an expiry;
- :mod:`~compat.gate.evaluate`: the policy (what blocks, dry run) and the report's verdicts.

Note: the package attribute ``evaluate`` is the function (imported here), not the submodule.
"""

from compat.gate.evaluate import GatePolicy, evaluate
from compat.gate.exitcodes import ExitCode
from compat.gate.verdict import Verdict, combine, exit_code
from compat.gate.waivers import Waiver, WaiverResult, apply_waivers, load_waivers

__all__ = [
    "ExitCode",
    "GatePolicy",
    "Verdict",
    "Waiver",
    "WaiverResult",
    "apply_waivers",
    "combine",
    "evaluate",
    "exit_code",
    "load_waivers",
]
