"""Waivers: accepted findings, each with a reason and an expiry date (``compat-waivers.toml``).

::

    [[waiver]]
    check = "spec-diff"                      # a check name
    rule = "response-*"                      # a rule id, exact or a glob
    finding = "3fa2c1d0e9ab"                 # a finding id (12 hex digits)
    operation = "GET /orders/{id}"           # exact or a glob
    stage = "rollback"                       # a stage run id, or its stage name ("rollback:1-mixed")
    service = "orders"                       # the finding's versions mention this service
    versions = "v1 -> v2*"                   # any of the finding's versions, exact or a glob
    reason = "consumers migrated, JIRA-123"  # required
    expires = 2027-01-31                     # required: a TOML date or "YYYY-MM-DD"

Every matcher given must match (they are ANDed) and at least one is required. A waiver is in force up to
and including its ``expires`` day. A waiver past its date never applies: a finding it would have waived
blocks again, with a note saying so. Waivers that waive nothing are reported as unused (a note, not an
error). Waivers are numbered from 0 in file order (``waiver[0]``), as errors name them.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compat.checks.finding import Finding
from compat.config._check import Source, check_keys, choice_hint, join, type_name
from compat.config.model import CHECK_NAMES

DEFAULT_FILE = "compat-waivers.toml"
MATCHERS = ("check", "rule", "finding", "operation", "stage", "service", "versions")
KEYS = (*MATCHERS, "reason", "expires")
_FINDING_ID = re.compile(r"[0-9a-f]{12}\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Waiver:
    """One ``[[waiver]]`` table; ``None`` matchers match anything."""

    index: int
    reason: str
    expires: dt.date
    check: str | None = None
    rule: str | None = None
    finding: str | None = None
    operation: str | None = None
    stage: str | None = None
    service: str | None = None
    versions: str | None = None
    file: str | None = None

    @property
    def label(self) -> str:
        """``waiver[1] ("consumers migrated, JIRA-123")`` — how notes name it."""
        reason = self.reason if len(self.reason) <= 60 else self.reason[:59] + "…"
        return f"waiver[{self.index}] (reason {reason!r})"

    def expired(self, today: dt.date) -> bool:
        """In force up to and including ``expires``; expired from the day after."""
        return today > self.expires

    def matches(self, finding: Finding | Mapping[str, Any]) -> bool:
        """Whether every matcher this waiver sets matches ``finding`` (a Finding or its report dict)."""
        view = _view(finding)
        if self.check is not None and view["check"] != self.check:
            return False
        if self.rule is not None and not _glob(view["rule"], self.rule):
            return False
        if self.finding is not None and view["id"] != self.finding:
            return False
        if self.operation is not None and not _glob(view["operation"], self.operation):
            return False
        if self.stage is not None and not _stage_matches(view["stage"], self.stage):
            return False
        versions: Mapping[str, str] = view["versions"]
        if self.service is not None and self.service not in versions:
            return False
        return self.versions is None or any(_glob(str(v), self.versions) for v in versions.values())

    def to_dict(self) -> dict[str, Any]:
        """Index, reason, expiry (ISO) and the matchers that are set."""
        data: dict[str, Any] = {
            "index": self.index,
            "reason": self.reason,
            "expires": self.expires.isoformat(),
        }
        for name in MATCHERS:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data


@dataclass
class FindingWaiver:
    """What the waivers did to one finding (aligned with the findings given to :func:`apply_waivers`)."""

    finding_id: str
    waiver: Waiver | None = None  # the first in-force waiver that matches: the finding is waived
    expired: list[Waiver] = field(default_factory=list)  # expired waivers that would have matched

    @property
    def waived(self) -> bool:
        return self.waiver is not None


@dataclass
class WaiverResult:
    """The outcome of :func:`apply_waivers`.

    ``findings[i]`` belongs to the i-th finding given. ``applied``: in-force waivers that waived at least
    one finding. ``expired``: every waiver past its date. ``unused``: in-force waivers that waived nothing.
    ``notes``: one line per expired waiver that lets a finding block again and per waiver that did nothing.
    """

    findings: list[FindingWaiver]
    applied: list[Waiver]
    expired: list[Waiver]
    unused: list[Waiver]
    notes: list[str]
    today: dt.date

    def waived_ids(self, waiver: Waiver) -> list[str]:
        return list(dict.fromkeys(f.finding_id for f in self.findings if f.waiver is waiver))

    def unwaived_by(self, waiver: Waiver) -> list[str]:
        """Finding ids this expired waiver would have waived and that no other waiver waives."""
        return list(
            dict.fromkeys(f.finding_id for f in self.findings if not f.waived and waiver in f.expired)
        )

    def to_dict(self, file: str | None = None) -> dict[str, Any]:
        """The report's ``waivers`` section."""
        return {
            "file": file,
            "checked_on": self.today.isoformat(),
            "applied": [{**w.to_dict(), "findings": self.waived_ids(w)} for w in self.applied],
            "expired": [{**w.to_dict(), "findings": self.unwaived_by(w)} for w in self.expired],
            "unused": [w.to_dict() for w in self.unused],
            "notes": list(self.notes),
        }


def apply_waivers(
    findings: Sequence[Finding | Mapping[str, Any]], waivers: Sequence[Waiver], today: dt.date
) -> WaiverResult:
    """Classify each finding: waived by the first in-force waiver that matches it, or not (see module doc)."""
    active = [w for w in waivers if not w.expired(today)]
    expired = [w for w in waivers if w.expired(today)]
    outcomes: list[FindingWaiver] = []
    for finding in findings:
        outcome = FindingWaiver(finding_id=_view(finding)["id"])
        outcome.waiver = next((w for w in active if w.matches(finding)), None)
        outcome.expired = [w for w in expired if w.matches(finding)]
        outcomes.append(outcome)
    used = {id(o.waiver) for o in outcomes if o.waiver is not None}
    result = WaiverResult(
        findings=outcomes,
        applied=[w for w in active if id(w) in used],
        expired=expired,
        unused=[w for w in active if id(w) not in used],
        notes=[],
        today=today,
    )
    for waiver in expired:
        lost = result.unwaived_by(waiver)
        for finding_id in lost:
            result.notes.append(
                f"{waiver.label} expired on {waiver.expires.isoformat()}; "
                f"finding {finding_id} is no longer waived"
            )
        if not lost and not any(waiver in o.expired for o in outcomes):
            result.notes.append(
                f"{waiver.label} expired on {waiver.expires.isoformat()} and matches no finding; remove it"
            )
    for waiver in result.unused:
        result.notes.append(f"{waiver.label} waived no finding; remove it or correct its matchers")
    return result


# -- loading --------------------------------------------------------------------------------------------


def load_waivers(path: Path | str) -> list[Waiver]:
    """Read and validate a waiver file; every problem is a ConfigError naming file, key, value and fix."""
    path = Path(path)
    src = Source(path)
    if not path.is_file():
        what = "is a directory, not a waiver file" if path.is_dir() else "waiver file not found"
        src.fail(what, None, hint=f"looked for {path.resolve()}; write [[waiver]] tables in {DEFAULT_FILE}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        src.fail(f"not UTF-8 text ({exc.reason} at byte {exc.start})", None)
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        pos = _TOML_POS.search(text)
        where = f" at line {pos.group(1)}, column {pos.group(2)}" if pos else ""
        detail = _TOML_POS.sub("", text).strip()
        src.fail(f"invalid TOML{where}: {detail}", None, hint="see https://toml.io for the syntax")
    return parse_waivers(data, src)


def parse_waivers(data: Mapping[str, object], src: Source) -> list[Waiver]:
    """Waivers from the parsed TOML document ``data`` of ``src``."""
    check_keys(src, data, ("waiver",), "")
    raw = data.get("waiver", [])
    if not isinstance(raw, list):
        src.fail(
            f"expected an array of tables, got {type_name(raw)}",
            "waiver",
            raw,
            "write each waiver as a [[waiver]] table with at least `reason`, `expires` and one matcher",
        )
    return [_waiver(src, item, index) for index, item in enumerate(raw)]


def _waiver(src: Source, raw: object, index: int) -> Waiver:
    key = join("waiver", index)
    if not isinstance(raw, dict):
        src.fail(f"expected a table, got {type_name(raw)}", key, raw, "write it as a [[waiver]] table")
    check_keys(src, raw, KEYS, key)
    values: dict[str, str] = {}
    for name in MATCHERS:
        if name in raw:
            values[name] = _text(src, raw[name], join(key, name))
    if not values:
        src.fail(
            "a waiver needs at least one matcher",
            key,
            hint=f"add one or more of: {', '.join(MATCHERS)} (a waiver without one would waive everything)",
        )
    if "check" in values and values["check"] not in CHECK_NAMES:
        name = values["check"]
        src.fail("unknown check", join(key, "check"), name, choice_hint(name, CHECK_NAMES))
    if "finding" in values and not _FINDING_ID.match(values["finding"]):
        src.fail(
            "not a finding id",
            join(key, "finding"),
            values["finding"],
            "a finding id is 12 lower-case hex digits, as shown in the report (e.g. '3fa2c1d0e9ab')",
        )
    if "reason" not in raw:
        src.fail("missing `reason`", key, hint='say why the finding is acceptable: reason = "JIRA-123: …"')
    reason = _text(src, raw["reason"], join(key, "reason"))
    if "expires" not in raw:
        src.fail("missing `expires`", key, hint="give the last day the waiver holds: expires = 2027-01-31")
    expires = _date(src, raw["expires"], join(key, "expires"))
    return Waiver(index=index, reason=reason, expires=expires, file=src.display, **values)


def _text(src: Source, value: object, key: str) -> str:
    if not isinstance(value, str):
        src.fail(f"expected a string, got {type_name(value)}", key, value, "write the value in quotes")
    if not value.strip():
        src.fail("must not be empty", key, value)
    return value.strip()


def _date(src: Source, value: object, key: str) -> dt.date:
    hint = 'write a date: expires = 2027-01-31 (or the string "2027-01-31")'
    if isinstance(value, dt.datetime):
        src.fail("expected a date without a time", key, value.isoformat(), hint)
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _DATE.match(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError as exc:
            src.fail(f"not a valid date ({exc})", key, value, hint)
    src.fail(f"expected a date (YYYY-MM-DD), got {type_name(value)}", key, value, hint)


# -- matching -------------------------------------------------------------------------------------------


def _view(finding: Finding | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(finding, Finding):
        return {
            "id": finding.id,
            "check": finding.check,
            "rule": finding.rule,
            "operation": finding.operation,
            "stage": finding.stage,
            "versions": dict(finding.versions),
        }
    versions = finding.get("versions") or {}
    return {
        "id": str(finding.get("id", "")),
        "check": finding.get("check"),
        "rule": finding.get("rule"),
        "operation": finding.get("operation"),
        "stage": finding.get("stage"),
        "versions": {str(k): str(v) for k, v in versions.items()} if isinstance(versions, Mapping) else {},
    }


def _glob(value: object, pattern: str) -> bool:
    if value is None:
        return False
    text = str(value)
    if text == pattern:
        return True
    return bool(_GLOB_CHARS & set(pattern)) and fnmatch.fnmatchcase(text, pattern)


def _stage_matches(stage: object, pattern: str) -> bool:
    """``onebox`` matches ``onebox``; ``rollback`` matches ``rollback:1-mixed``; globs work too."""
    if stage is None:
        return False
    text = str(stage)
    return text.split(":", 1)[0] == pattern or _glob(text, pattern)
