"""The report document: build it from a run, check it against the shipped schema, scrub secrets, write it.

:class:`ReportBuilder` collects what a run did (versions, stages, checks with their findings, the user's
tests) and :meth:`ReportBuilder.build` turns it into the report dict, with verdicts computed by
:func:`compat.gate.evaluate.evaluate`. :func:`write_reports` writes the JSON next to its Markdown and HTML
renderings. The shape is described by ``schema/compat-report.schema.json`` (draft 2020-12, versioned by
``schema_version``); :func:`validate` checks a dict against it.

Secrets: findings are rendered with :meth:`Finding.to_dict` (secret headers redacted); in addition every
value of such a header that appears anywhere else in the report (a curl line, a message, a diff) is
replaced by ``[redacted]`` (:func:`scrub`).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from compat import __version__
from compat.checks.finding import REDACTED, SECRET_HEADERS, Finding
from compat.errors import UsageError
from compat.gate.evaluate import GatePolicy, evaluate
from compat.gate.verdict import combine
from compat.gate.waivers import Waiver

SCHEMA_VERSION = 1
SCHEMA_FILE = "compat-report.schema.json"
JSON_NAME = "compat-report.json"
MARKDOWN_NAME = "compat-report.md"
HTML_NAME = "compat-report.html"
#: secrets shorter than this are redacted in headers but not searched for elsewhere (they would match
#: ordinary text such as a status code)
MIN_SECRET_LENGTH = 4


class ReportSchemaError(UsageError):
    """A report does not match the schema (a usage error for ``compat gate``: exit 4)."""

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        shown = self.problems[:5]
        more = f"\n  … and {len(self.problems) - 5} more" if len(self.problems) > 5 else ""
        super().__init__(
            f"{head}not a valid pytest-compat report (schema version {SCHEMA_VERSION}):\n  "
            + "\n  ".join(shown)
            + more
        )


class ReportBuilder:
    """Collects one run; :meth:`build` returns the report dict.

    ``redact``: extra header names whose values are secret (Authorization, Cookie, Set-Cookie and
    Proxy-Authorization always are).
    """

    def __init__(self, *, redact: Iterable[str] = (), tool_version: str = __version__) -> None:
        self.redact = tuple(redact)
        self.tool_version = tool_version
        self._run: dict[str, Any] | None = None
        self._versions: dict[str, dict[str, Any]] = {}
        self._stages: dict[str, dict[str, Any]] = {}
        self._checks: dict[str, dict[str, Any]] = {}
        self._tests: list[dict[str, Any]] = []
        self._findings: dict[str, dict[str, Any]] = {}
        self._secrets: set[str] = set()

    def set_run(
        self,
        *,
        id: str,
        project: str,
        seed: int,
        started_at: dt.datetime | str,
        finished_at: dt.datetime | str | None = None,
        duration_s: float | None = None,
        runtime: str | None = None,
        config: str | Path | None = None,
        argv: Sequence[str] = (),
        dry_run: bool = False,
        candidates: Mapping[str, str] | None = None,
    ) -> None:
        """The run: id, project, seed, times (datetimes or ISO strings), runtime, config file, argv."""
        if (
            duration_s is None
            and isinstance(started_at, dt.datetime)
            and isinstance(finished_at, dt.datetime)
        ):
            duration_s = max(0.0, (finished_at - started_at).total_seconds())
        self._run = {
            "id": id,
            "project": project,
            "seed": int(seed),
            "runtime": runtime,
            "started_at": _iso(started_at),
            "finished_at": _iso(finished_at) if finished_at is not None else None,
            "duration_s": round(duration_s, 3) if duration_s is not None else None,
            "config": str(config) if config is not None else None,
            "argv": [str(a) for a in argv],
            "dry_run": dry_run,
            "candidates": dict(candidates or {}),
        }

    def add_version(
        self,
        service: str,
        baseline: str,
        candidate: str | None = None,
        *,
        baseline_image: str | None = None,
        baseline_digest: str | None = None,
        candidate_image: str | None = None,
        candidate_digest: str | None = None,
    ) -> None:
        """A service's baseline and candidate versions (with their images and digests when known)."""
        self._versions[service] = {
            "baseline": {"version": baseline, "image": baseline_image, "digest": baseline_digest},
            "candidate": (
                {"version": candidate, "image": candidate_image, "digest": candidate_digest}
                if candidate is not None
                else None
            ),
        }

    def add_stage(
        self,
        id: str,
        *,
        stage: str | None = None,
        kind: str | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> None:
        """A stage run (``onebox``, ``rollback:1-mixed``); ``stage`` and ``kind`` default to its name."""
        name = stage or id.split(":", 1)[0]
        self._stages[id] = {
            "id": id,
            "stage": name,
            "kind": kind or name,
            "verdict": "PASS",
            "versions": dict(versions or {}),
        }

    def add_check(
        self,
        *,
        id: str,
        check: str,
        service: str | None = None,
        stage: str | None = None,
        findings: Iterable[Finding] = (),
        notes: Iterable[str] = (),
        error: str | None = None,
        inconclusive: str | None = None,
        duration_s: float = 0.0,
        dry_run: bool = False,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        """One check item and its findings. ``error``: it crashed or its infrastructure failed (ERROR);
        ``inconclusive``: why it could not judge (INCONCLUSIVE); ``dry_run``: its findings never block."""
        if id in self._checks:
            raise ValueError(f"check {id!r} was added twice; check ids are unique within a run")
        ids: list[str] = []
        for finding in findings:
            ids.append(self._add_finding(finding, id))
        self._checks[id] = {
            "id": id,
            "check": check,
            "service": service,
            "stage": stage,
            "verdict": "PASS",
            "duration_s": round(max(0.0, float(duration_s)), 3),
            "findings": list(dict.fromkeys(ids)),
            "notes": [str(n) for n in notes],
            "error": error,
            "inconclusive": inconclusive,
            "dry_run": dry_run,
            "metrics": _jsonable(dict(metrics or {})),
        }

    def add_test(
        self,
        nodeid: str,
        outcome: str,
        *,
        stage: str | None = None,
        message: str | None = None,
        duration_s: float = 0.0,
    ) -> None:
        """One of the user's tests: ``outcome`` is passed, failed, error or skipped (``message``: the skip
        reason or the first line of the failure; a skip reason starting ``INCONCLUSIVE`` counts as such)."""
        if outcome not in ("passed", "failed", "error", "skipped"):
            raise ValueError(
                f"test {nodeid}: outcome {outcome!r} is not one of passed, failed, error, skipped"
            )
        self._tests.append(
            {
                "nodeid": nodeid,
                "stage": stage,
                "outcome": outcome,
                "verdict": None,
                "message": message,
                "duration_s": round(max(0.0, float(duration_s)), 3),
            }
        )

    def add_secrets(self, values: Iterable[str]) -> None:
        """Further values to scrub from the whole report (tokens the run used)."""
        self._secrets.update(v for v in values if v)

    def _add_finding(self, finding: Finding, check_id: str) -> str:
        fid = finding.id
        if fid in self._findings:
            self._findings[fid]["occurrences"] += 1
            return fid
        data = _jsonable(finding.to_dict(redact=self.redact))
        data["check_id"] = check_id
        data["occurrences"] = 1
        data["status"] = "blocking"
        data["waiver"] = None
        self._findings[fid] = data
        self._secrets.update(secret_values(finding, self.redact))
        return fid

    def build(
        self,
        policy: GatePolicy | None = None,
        waivers: Sequence[Waiver] = (),
        today: dt.date | None = None,
        *,
        waivers_file: str | None = None,
        check: bool = True,
    ) -> dict[str, Any]:
        """The report dict: evaluated (statuses, verdicts, exit code), scrubbed and (``check``) validated."""
        if self._run is None:
            raise ValueError("ReportBuilder.build(): call set_run() first (the run id, project and seed)")
        report: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "pytest-compat", "version": self.tool_version},
            "run": dict(self._run),
            "versions": dict(self._versions),
            "stages": list(self._stages.values()),
            "checks": list(self._checks.values()),
            "tests": list(self._tests),
            "findings": list(self._findings.values()),
            "waivers": {"file": None, "applied": [], "expired": [], "unused": [], "notes": []},
            "verdict": {},
        }
        report = evaluate(report, policy, waivers, today, waivers_file=waivers_file)
        report = scrub(report, self._secrets)
        if check:
            validate(report)
        return report


# -- secrets --------------------------------------------------------------------------------------------


def secret_values(finding: Finding, redact: Iterable[str] = ()) -> set[str]:
    """The values of secret headers in a finding's request and response, and their token parts."""
    names = SECRET_HEADERS | {h.lower() for h in redact}
    found: set[str] = set()
    for part in (finding.request, finding.response):
        headers = part.get("headers") if isinstance(part, Mapping) else None
        if not isinstance(headers, Mapping):
            continue
        for key, value in headers.items():
            if str(key).lower() in names and value is not None:
                values = value if isinstance(value, list | tuple) else [value]
                for item in values:
                    found.update(_secret_parts(str(key).lower(), str(item)))
    return found


def _secret_parts(name: str, value: str) -> set[str]:
    parts = {value.strip()}
    if name in ("cookie", "set-cookie"):
        pairs = value.split(";") if name == "cookie" else value.split(";")[:1]
        for pair in pairs:
            if "=" in pair:
                parts.add(pair.split("=", 1)[1].strip())
    else:
        scheme, _, token = value.strip().partition(" ")
        if token and scheme.isalpha():
            parts.add(token.strip())
    return {p for p in parts if len(p) >= MIN_SECRET_LENGTH and p != REDACTED}


def scrub(report: Any, secrets: Iterable[str]) -> Any:
    """A copy of ``report`` (any JSON value) with every occurrence of each secret replaced by [redacted]."""
    ordered = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
    if not ordered:
        return report

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            for secret in ordered:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, Mapping):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(report)


# -- schema ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The shipped JSON schema of the report."""
    text = resources.files("compat.report").joinpath("schema", SCHEMA_FILE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def validate(report: Mapping[str, Any], *, source: str | None = None) -> None:
    """Raise :class:`ReportSchemaError` listing where ``report`` breaks the schema (paths like
    ``$.checks[2].verdict``)."""
    jsonschema: Any = importlib.import_module("jsonschema")  # untyped library; loaded only when needed
    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(report), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ReportSchemaError([f"at {_path(e.absolute_path)}: {e.message}" for e in errors], source)


def _path(parts: Iterable[Any]) -> str:
    text = "$"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def load_report(path: Path | str) -> dict[str, Any]:
    """Read and validate a report written by :func:`write_reports` (errors name the file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: report not found (write one with pytest --compat)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the report: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise ReportSchemaError([f"at $: expected an object, got {type(data).__name__}"], str(path))
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ReportSchemaError(
            [f"at $.schema_version: {data.get('schema_version')!r} is not {SCHEMA_VERSION} (this tool's)"],
            str(path),
        )
    validate(data, source=str(path))
    return data


# -- writing --------------------------------------------------------------------------------------------


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def write_reports(report: Mapping[str, Any], directory: Path | str) -> list[Path]:
    """Write compat-report.json, compat-report.md and compat-report.html into ``directory`` (created)."""
    from compat.report.html import render_html
    from compat.report.markdown import render_markdown

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        (JSON_NAME, to_json(report)),
        (MARKDOWN_NAME, render_markdown(report)),
        (HTML_NAME, render_html(report)),
    ):
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# -- helpers --------------------------------------------------------------------------------------------


def _iso(value: dt.datetime | str) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.astimezone()  # a naive time is local time
    return value.isoformat(timespec="milliseconds")


def _jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, bytes as text and anything else unknown as its str."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# -- views shared by the renderers ----------------------------------------------------------------------

TESTS_COLUMN = "tests"
NO_STAGE = "(no stage)"


@dataclass
class Cell:
    """One matrix cell: the check items (or tests) of one column in one stage run."""

    stage: str | None
    column: str
    items: list[Mapping[str, Any]]
    verdict: str | None  # None: nothing of this column ran here
    would_be: str | None = None


@dataclass
class Row:
    stage: str | None  # None: checks that need no topology (spec-diff) and tests outside any stage
    label: str
    versions: dict[str, str]
    verdict: str | None
    cells: list[Cell] = field(default_factory=list)


def matrix(report: Mapping[str, Any]) -> tuple[list[str], list[Row]]:
    """Columns (check names in first-seen order, then ``tests`` if any counted) and rows (stages in order;
    a first ``(no stage)`` row for stage-less checks and tests, and rows for stages no stage entry names)."""
    checks: list[Mapping[str, Any]] = list(report.get("checks", []))
    tests = [t for t in report.get("tests", []) if t.get("verdict")]
    columns = list(dict.fromkeys(str(c.get("check")) for c in checks))
    if tests:
        columns.append(TESTS_COLUMN)
    stages: dict[str | None, Mapping[str, Any] | None] = {}
    if any(c.get("stage") is None for c in checks) or any(t.get("stage") is None for t in tests):
        stages[None] = None
    for stage in report.get("stages", []):
        stages[str(stage.get("id"))] = stage
    for item in [*checks, *tests]:
        if item.get("stage") is not None:
            stages.setdefault(str(item["stage"]), None)
    rows: list[Row] = []
    for key, entry in stages.items():
        mine = [c for c in checks if c.get("stage") == key]
        mine_tests = [t for t in tests if t.get("stage") == key]
        cells = []
        for column in columns:
            items = mine_tests if column == TESTS_COLUMN else [c for c in mine if c.get("check") == column]
            verdict = combine(i["verdict"] for i in items).value if items else None
            raw = combine(i.get("would_be") or i["verdict"] for i in items).value if items else None
            cells.append(Cell(key, column, items, verdict, raw if raw != verdict else None))
        if entry is not None:
            verdict_of_row: str | None = str(entry.get("verdict"))
        else:
            present = [c.verdict for c in cells if c.verdict]
            verdict_of_row = combine(present).value if present else None
        versions = dict(entry.get("versions") or {}) if entry is not None else {}
        rows.append(Row(key, key if key is not None else NO_STAGE, versions, verdict_of_row, cells))
    return columns, rows


def ordered_findings(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Findings, most important first: blocking, dry-run, warning, waived, pending, info; ERR before WARN."""
    order = ("blocking", "dry-run", "warning", "waived", "pending", "info")
    status_rank = {s: i for i, s in enumerate(order)}
    level_rank = {"ERR": 0, "WARN": 1, "INFO": 2}
    findings: list[Mapping[str, Any]] = list(report.get("findings", []))
    return sorted(
        findings,
        key=lambda f: (status_rank.get(str(f.get("status")), 9), level_rank.get(str(f.get("level")), 9)),
    )
