"""The ``compat`` command: ``config | up | down | status | diff | run | gate | repro``.

Exit codes (:class:`compat.gate.ExitCode`): 0 pass, 1 fail, 2 error (infrastructure), 3 inconclusive,
4 usage or configuration error. Configuration errors print one line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compat import __version__
from compat.errors import CompatError, ConfigError, InfrastructureError, UsageError
from compat.gate.exitcodes import ExitCode


def _err(message: str) -> None:
    print(f"compat: error: {message}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits with our USAGE code (4) instead of argparse's 2."""

    def error(self, message: str) -> Any:  # argparse's signature returns NoReturn
        self.print_usage(sys.stderr)
        _err(message)
        raise SystemExit(ExitCode.USAGE)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", type=Path, metavar="PATH", help="compat.toml or pyproject.toml")
    common.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="SERVICE=VERSION",
        help="make VERSION the candidate of SERVICE (repeatable)",
    )
    common.add_argument("--runtime", choices=("auto", "docker", "process"), help="where instances run")
    common.add_argument("--seed", type=int, metavar="N", help="seed for data, routing and plans")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = _Parser(prog="compat", description="pytest-compat: can the old and the new version run at once?")
    parser.add_argument("--version", action="version", version=f"pytest-compat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("config", parents=[common], help="print the resolved configuration")
    up = sub.add_parser("up", parents=[common], help="start a topology and print its URLs")
    up.add_argument("--stage", default="default", help="stage to start (default: baseline + candidates)")
    up.add_argument("--detach", action="store_true", help="return at once; `compat down` removes it")
    down = sub.add_parser("down", parents=[common], help="remove detached topologies and leftovers")
    down.add_argument("--all", action="store_true", help="every project's, not only this config's")
    sub.add_parser("status", parents=[common], help="list what pytest-compat runs on this machine")
    diff = sub.add_parser("diff", help="static OpenAPI diff: breaking changes from OLD to NEW")
    diff.add_argument("old", type=Path, help="the baseline's OpenAPI spec (YAML or JSON)")
    diff.add_argument("new", type=Path, help="the candidate's OpenAPI spec")
    diff.add_argument("--fail-on", choices=("ERR", "WARN"), default="ERR", help="exit 1 at this level or up")
    diff.add_argument("--json", action="store_true", help="findings as JSON")
    run = sub.add_parser("run", parents=[common], help="run the compatibility tests (pytest --compat)")
    run.add_argument("--stage", action="append", default=[], help="stage to run (repeatable)")
    run.add_argument("--report-dir", type=Path, help="directory for the reports (default: ./compat-report)")
    run.add_argument("--check", action="append", default=[], help="built-in check to run (repeatable)")
    run.add_argument("--dry-run", action="store_true", help="report findings without failing")
    run.add_argument("--waivers", type=Path, metavar="PATH", help="waivers file (default: config's)")
    run.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    gate = sub.add_parser("gate", help="re-evaluate a saved report with other waivers or thresholds")
    gate.add_argument("report", type=Path, help="compat-report.json of a run")
    gate.add_argument("--waivers", type=Path, metavar="PATH", help="waivers file to apply")
    gate.add_argument("--fail-on", choices=("ERR", "WARN"), default="ERR", help="finding level that blocks")
    gate.add_argument("--dry-run", action="store_true", help="findings never block (errors still do)")
    gate.add_argument("--today", metavar="YYYY-MM-DD", help="the date waivers expire against")
    gate.add_argument("--report-dir", type=Path, help="write the re-evaluated report here")
    gate.add_argument("--json", action="store_true", help="the re-evaluated report as JSON")
    gate.add_argument("-q", "--quiet", action="store_true", help="only the verdict line")
    repro = sub.add_parser("repro", help="bring up a finding's stage again and replay its request")
    repro.add_argument("finding", help="finding id (or an unambiguous prefix)")
    repro.add_argument("--report", type=Path, required=True, help="compat-report.json of the run")
    repro.add_argument("--runtime", choices=("auto", "docker", "process"), help="override the run's runtime")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        handler = _COMMANDS[args.command]
        return int(handler(args))
    except (ConfigError, UsageError) as exc:
        _err(str(exc))
        return ExitCode.USAGE
    except InfrastructureError as exc:
        _err(str(exc))
        return ExitCode.ERROR
    except CompatError as exc:
        _err(str(exc))
        return ExitCode.ERROR
    except KeyboardInterrupt:
        print("compat: interrupted", file=sys.stderr)
        return ExitCode.ERROR


# -- commands -------------------------------------------------------------------------------------------


def _session_options(args: argparse.Namespace, **extra: Any) -> Any:
    from compat.config import parse_candidate_option
    from compat.session import Options

    candidates = dict(parse_candidate_option(text, "--candidate") for text in args.candidate)
    return Options(
        config=args.config,
        candidates=candidates,
        runtime=args.runtime,
        seed=args.seed,
        candidate_flag="--candidate",
        **extra,
    )


def _config(args: argparse.Namespace) -> Any:
    from compat.session import resolve_config

    return resolve_config(Path.cwd(), _session_options(args))


def cmd_config(args: argparse.Namespace) -> int:
    from compat.config import describe, render_text

    config = _config(args)
    print(json.dumps(describe(config), indent=2) if args.json else render_text(config))
    return ExitCode.PASS


def _progress(args: argparse.Namespace) -> Any:
    if args.quiet or args.json:
        return None

    def progress(phase: str, message: str) -> None:
        print(f"  [{phase}] {message}", file=sys.stderr, flush=True)

    return progress


def cmd_up(args: argparse.Namespace) -> int:
    from compat.runtime.cleanup import install_signal_handlers
    from compat.session import CompatSession

    config = _config(args)
    session = CompatSession(
        config,
        _session_options(args, keep=args.detach, checks=()),
        echo=lambda m: print(f"compat: {m}", file=sys.stderr),
        progress=_progress(args),
    )
    install_signal_handlers()
    detached = False
    try:
        topology = session.topology(args.stage)
        rows = topology.describe()
        if args.json:
            print(
                json.dumps({"run": session.context.run_id, "stage": args.stage, "instances": rows}, indent=2)
            )
        else:
            print(f"stage {args.stage} (run {session.context.run_id}, runtime {session.runtime_name}):")
            print(_table(rows, ["service", "version", "role", "url", "name"]))
        if args.detach:
            session.detach()
            detached = True
            if not args.json:
                print("detached; remove it with: compat down")
            return ExitCode.PASS
        if not args.json:
            print("up; press Ctrl-C to stop and remove everything", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        print("\nstopping …", file=sys.stderr)
    finally:
        if not detached:
            session.close()
    return ExitCode.PASS


def cmd_down(args: argparse.Namespace) -> int:
    from compat.runtime.cleanup import remove_all

    project = None
    if not args.all:
        project = _config(args).project
    report = remove_all(project=project)
    print(json.dumps(report.as_dict()) if args.json else report.summary())
    return ExitCode.PASS


def cmd_status(args: argparse.Namespace) -> int:
    from compat.runtime.cleanup import list_managed

    rows = list_managed()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("nothing running")
    else:
        print(_table(rows, ["run", "project", "kind", "name", "service", "version", "role", "url", "state"]))
    return ExitCode.PASS


def cmd_diff(args: argparse.Namespace) -> int:
    from compat.checks.spec_diff import diff_main

    return diff_main(args.old, args.new, fail_on=args.fail_on, as_json=args.json)


#: where `compat run` writes its reports unless --report-dir says otherwise (relative to the working dir)
DEFAULT_REPORT_DIR = "compat-report"


def cmd_run(args: argparse.Namespace) -> int:
    """Run the config's tests with ``pytest --compat`` in a child process (so pytest imports and rewrites
    everything itself); SIGTERM/SIGINT are forwarded so its teardown removes the topologies."""
    import signal
    import subprocess

    config = _config(args)
    pytest_args = ["--compat", "-p", "no:cacheprovider", "--compat-config", str(config.path)]
    for text in args.candidate:
        pytest_args += ["--compat-candidate", text]
    if args.runtime:
        pytest_args += ["--compat-runtime", args.runtime]
    if args.seed is not None:
        pytest_args += ["--compat-seed", str(args.seed)]
    for stage in args.stage:
        pytest_args += ["--compat-stage", stage]
    for check in args.check:
        pytest_args += ["--compat-check", check]
    if args.dry_run:
        pytest_args.append("--compat-dry-run")
    if args.waivers:
        pytest_args += ["--compat-waivers", str(args.waivers)]
    if args.quiet or args.json:
        pytest_args.append("-q")
    paths = [str(p) for p in config.tests]
    if not paths and not args.pytest_args:
        raise ConfigError(
            "no tests to run",
            file=str(config.path),
            key="tests",
            hint='set tests = ["path/to/compat/tests"] or pass test paths after --',
        )
    _preflight(config, args)
    report_dir = (args.report_dir or Path(DEFAULT_REPORT_DIR)).resolve()
    pytest_args += ["--compat-report", str(report_dir)]
    stale = report_dir / "compat-report.json"
    if stale.exists():
        stale.unlink()  # the verdict must come from this run's report, never an earlier one
    argv = [
        sys.executable,
        "-m",
        "pytest",
        *pytest_args,
        "--rootdir",
        str(config.root),
        *paths,
        *args.pytest_args,
    ]
    child = subprocess.Popen(argv, cwd=config.root, stdout=sys.stderr if args.json else None)

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return _run_verdict(code, report_dir / "compat-report.json", as_json=args.json)


def _preflight(config: Any, args: argparse.Namespace) -> None:
    """Read every input file the run will need (waivers, Pact files, OpenAPI specs and their ``$ref``s,
    recorded traffic) before pytest starts: a bad one is a usage error here — one ``compat: error:`` line
    naming the file, exit 4 — instead of a pytest usage error in the child or an ERROR mid-run."""
    from compat.checks import chosen_checks
    from compat.checks._openapi import Resolver, load_spec
    from compat.checks.tasks import check_tasks
    from compat.gate.waivers import load_waivers
    from compat.topology.builder import stage_runs

    waivers = args.waivers or config.waivers
    if waivers is not None:
        load_waivers(waivers)
    chosen = chosen_checks(args.check, "--check")
    if chosen == ():
        return
    checks = chosen or config.checks.enabled()
    tasks = check_tasks(config, stage_runs(config, args.stage), checks)  # parses the Pact files
    specs = {p for t in tasks for p in (t.spec, t.new_spec) if p is not None}
    for path in sorted(specs):
        doc = load_spec(path)
        resolver = Resolver(doc, str(path))
        for ref in _refs(doc):
            resolver.lookup(ref)
    if "differential" in checks and any(t.check == "differential" for t in tasks):
        from compat.checks._traffic import load_traffic

        load_traffic(Path(p) for p in config.checks.option("differential", "traffic") or ())


def _refs(node: object) -> list[str]:
    """Every ``$ref`` string in an OpenAPI document."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.append(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _run_verdict(code: int, report_path: Path, *, as_json: bool) -> int:
    """The gate's exit code: the report's verdict; pytest's own code when there is no report.

    Fail closed: without a report a run that pytest calls a pass is ERROR (nothing was judged), and
    a usage error stays a usage error.
    """
    if code == 4:
        return ExitCode.USAGE
    if not report_path.exists():
        if code == 5:
            _err("no compat tests or checks were collected")
            return ExitCode.INCONCLUSIVE
        if code == 0:
            _err(f"pytest passed but wrote no report at {report_path}: nothing was judged")
        return ExitCode.ERROR if code != 1 else ExitCode.FAIL
    report = json.loads(report_path.read_text(encoding="utf-8"))
    verdict = report.get("verdict") or {}
    if as_json:
        print(json.dumps(report, indent=2))
    result = int(verdict.get("exit_code", ExitCode.ERROR))
    if result == ExitCode.PASS and code not in (0, 5):
        return ExitCode.ERROR if code != 1 else ExitCode.FAIL  # pytest failed something outside the gate
    return result


def cmd_gate(args: argparse.Namespace) -> int:
    """Re-evaluate a saved report: other waivers, another blocking level, a dry run."""
    import datetime as dt

    from compat.gate.evaluate import GatePolicy, evaluate
    from compat.gate.waivers import load_waivers
    from compat.report import load_report, validate, write_reports
    from compat.report.text import render_table

    report = load_report(args.report)
    waivers = load_waivers(args.waivers) if args.waivers else []
    try:
        today = dt.date.fromisoformat(args.today) if args.today else dt.date.today()
    except ValueError:
        raise UsageError(f"--today: {args.today!r} is not a date; write YYYY-MM-DD") from None
    policy = GatePolicy(fail_on=args.fail_on, dry_run=args.dry_run)
    result = evaluate(
        report, policy, waivers, today, waivers_file=str(args.waivers) if args.waivers else None
    )
    validate(result)
    if args.report_dir:
        for path in write_reports(result, args.report_dir):
            print(f"report: {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.quiet:
        print(f"verdict: {result['verdict']['result']} (exit {result['verdict']['exit_code']})")
    else:
        print(render_table(result))
    return int(result["verdict"]["exit_code"])


def cmd_repro(args: argparse.Namespace) -> int:
    from compat.repro import replay
    from compat.runtime.cleanup import install_signal_handlers

    install_signal_handlers()
    return replay(args.report, args.finding, echo=print, runtime=args.runtime)


_COMMANDS = {
    "config": cmd_config,
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "diff": cmd_diff,
    "run": cmd_run,
    "gate": cmd_gate,
    "repro": cmd_repro,
}


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(row.get(col, "") if row.get(col) is not None else "") for col in columns] for row in rows]
    widths = [max([len(col), *(len(r[i]) for r in cells)]) for i, col in enumerate(columns)]
    lines = ["  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
