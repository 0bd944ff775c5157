"""Flakiness: the bundled example gated N times in a row with the same seed must give the same answers.

    python bench/flakiness.py [--runs 5] [--seed 7] [--keep DIR] [-- extra compat run arguments]

Each run is ``compat run --runtime docker --seed 7 --report-dir DIR/run-K`` from the repository root
(``COMPAT_BASE_IMAGE`` defaults to the local ``compat-base:bookworm``). Afterwards the reports are
compared: the run's verdict and exit code, the verdict of every check (by check id: stage, check,
service), the verdict of every test (by node id) and the set of finding ids (per check). A table with
one column per run is printed; every row that differs is marked ``<- differs``. Exit 0 when everything
agrees, 1 when anything differs (or a run wrote no report), 2 on a usage problem.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    """What one run decided."""

    exit_code: int
    seconds: float
    verdict: str = "NO REPORT"
    checks: dict[str, str] = field(default_factory=dict)  # check id -> verdict
    tests: dict[str, str] = field(default_factory=dict)  # node id -> verdict
    findings: dict[str, tuple[str, ...]] = field(default_factory=dict)  # check id -> sorted finding ids
    titles: dict[str, str] = field(default_factory=dict)  # finding id -> short description


def run_once(index: int, out: Path, seed: int, extra: list[str]) -> Outcome:
    report_dir = out / f"run-{index}"
    env = dict(os.environ)
    env.setdefault("COMPAT_BASE_IMAGE", "compat-base:bookworm")
    argv = [sys.executable, "-m", "compat.cli", "run", "--runtime", "docker", "--seed", str(seed)]
    argv += ["--report-dir", str(report_dir), "-q", *extra]
    began = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    outcome = Outcome(exit_code=proc.returncode, seconds=time.monotonic() - began)
    (out / f"run-{index}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    path = report_dir / "compat-report.json"
    if not path.exists():
        return outcome
    report: dict[str, Any] = json.loads(path.read_text())
    outcome.verdict = str(report["verdict"]["result"])
    for check in report.get("checks") or []:
        outcome.checks[str(check["id"])] = str(check["verdict"])
        outcome.findings[str(check["id"])] = tuple(sorted(str(i) for i in check.get("findings") or []))
    for test in report.get("tests") or []:
        outcome.tests[str(test["nodeid"])] = str(test["verdict"])
    for finding in report.get("findings") or []:
        outcome.titles[str(finding["id"])] = (
            f"{finding['check']}/{finding['rule']} in {finding['stage']}: " + str(finding["message"])[:140]
        )
    return outcome


def compare(outcomes: list[Outcome]) -> tuple[list[tuple[str, list[str], bool]], bool]:
    """Rows (name, value per run, differs) and whether anything differs."""
    rows: list[tuple[str, list[str], bool]] = []

    def add(name: str, values: list[str]) -> None:
        rows.append((name, values, len(set(values)) > 1))

    add("exit code", [str(o.exit_code) for o in outcomes])
    add("verdict", [o.verdict for o in outcomes])
    for key in sorted({k for o in outcomes for k in o.checks}):
        add(f"check {key}", [o.checks.get(key, "-") for o in outcomes])
    for key in sorted({k for o in outcomes for k in o.tests}):
        add(f"test {key}", [o.tests.get(key, "-") for o in outcomes])
    for key in sorted({k for o in outcomes for k in o.findings}):
        values = [",".join(i[:8] for i in o.findings.get(key, ())) or "none" for o in outcomes]
        add(f"findings {key}", values)
    return rows, any(differs for _, _, differs in rows) or any(o.verdict == "NO REPORT" for o in outcomes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="how many runs (default 5)")
    parser.add_argument("--seed", type=int, default=7, help="the seed every run gets (default 7)")
    parser.add_argument("--keep", type=Path, help="keep the reports and logs in this directory")
    parser.add_argument("extra", nargs="*", help="more `compat run` arguments (after --)")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs: compare at least 2 runs")
    out = args.keep or Path(tempfile.mkdtemp(prefix="compat-flakiness-"))
    out.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for index in range(1, args.runs + 1):
        outcome = run_once(index, out, args.seed, args.extra)
        print(
            f"run {index}: {outcome.verdict} (exit {outcome.exit_code}) in {outcome.seconds:.1f} s, "
            f"{sum(len(f) for f in outcome.findings.values())} finding(s)",
            flush=True,
        )
        outcomes.append(outcome)
    rows, differs = compare(outcomes)
    width = max(len(name) for name, _, _ in rows)
    cols = [max(6, *(len(values[i]) for _, values, _ in rows)) for i in range(len(outcomes))]
    head = "".join(f"  {'run ' + str(i + 1):<{w}}" for i, w in enumerate(cols))
    print(f"\n{'':<{width}}{head}")
    for name, values, bad in rows:
        cells = "".join(f"  {v:<{w}}" for v, w in zip(values, cols, strict=True))
        print(f"{name:<{width}}{cells}{'  <- differs' if bad else ''}")
    if differs:
        ids = {i for o in outcomes for ids in o.findings.values() for i in ids}
        unstable = sorted(
            i for i in ids if not all(any(i in f for f in o.findings.values()) for o in outcomes)
        )
        for finding in unstable:
            title = next(o.titles[finding] for o in outcomes if finding in o.titles)
            print(f"  not in every run: {finding[:12]} {title}")
    print(f"\nreports and logs: {out}")
    print("RESULT: " + ("runs DIFFER" if differs else f"all {len(outcomes)} runs agree"))
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
