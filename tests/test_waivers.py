"""compat-waivers.toml: loading and validation (file, key, value, fix), matching, expiry, unused waivers."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

import pytest

from compat.checks.finding import Finding
from compat.errors import ConfigError
from compat.gate.waivers import Waiver, apply_waivers, load_waivers

TODAY = dt.date(2026, 6, 1)
GOOD = """
[[waiver]]
check = "spec-diff"
rule = "response-property-removed"
operation = "GET /orders/{id}"
reason = "consumers migrated, JIRA-123"
expires = 2027-01-31

[[waiver]]
finding = "3fa2c1d0e9ab"
stage = "rollback"
service = "orders"
versions = "v1 -> v2*"
reason = "known flake"
expires = "2026-10-01"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "compat-waivers.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_waivers(write(tmp_path, text))
    return str(info.value)


def finding(**kw: Any) -> Finding:
    base: dict[str, Any] = {
        "check": "spec-diff",
        "rule": "response-property-removed",
        "message": "GET /orders/{id} 200: property 'total' removed",
        "stage": "onebox",
        "operation": "GET /orders/{id}",
        "versions": {"orders": "v1 -> v2-rename-field"},
    }
    return Finding(**{**base, **kw})


# -- loading --------------------------------------------------------------------------------------------


def test_load_a_valid_file(tmp_path: Path) -> None:
    first, second = load_waivers(write(tmp_path, GOOD))
    assert first == Waiver(
        index=0,
        reason="consumers migrated, JIRA-123",
        expires=dt.date(2027, 1, 31),
        check="spec-diff",
        rule="response-property-removed",
        operation="GET /orders/{id}",
        file=first.file,
    )
    assert first.file is not None
    assert first.file.endswith("compat-waivers.toml")
    assert second.expires == dt.date(2026, 10, 1)  # the string form
    assert (second.finding, second.stage, second.service, second.versions) == (
        "3fa2c1d0e9ab",
        "rollback",
        "orders",
        "v1 -> v2*",
    )
    assert second.to_dict()["expires"] == "2026-10-01"


def test_an_empty_file_has_no_waivers(tmp_path: Path) -> None:
    assert load_waivers(write(tmp_path, "# nothing waived\n")) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'rule = "r"\nexpires = 2027-01-31',
            "waiver[0]: missing `reason`; say why the finding is acceptable",
        ),
        ('rule = "r"\nreason = "  "\nexpires = 2027-01-31', "waiver[0].reason: must not be empty (got '  ')"),
        ('rule = "r"\nreason = "x"', "waiver[0]: missing `expires`; give the last day the waiver holds"),
        (
            'rule = "r"\nreason = "x"\nexpires = "31/01/2027"',
            "waiver[0].expires: expected a date (YYYY-MM-DD), got a string (got '31/01/2027'); write a date",
        ),
        ('rule = "r"\nreason = "x"\nexpires = "2027-02-30"', "waiver[0].expires: not a valid date"),
        (
            'rule = "r"\nreason = "x"\nexpires = 2027-01-31T10:00:00',
            "waiver[0].expires: expected a date without a time (got '2027-01-31T10:00:00')",
        ),
        (
            'rule = "r"\nreason = "x"\nexpires = 20270131',
            "waiver[0].expires: expected a date (YYYY-MM-DD), got an integer (got 20270131)",
        ),
        (
            'reason = "x"\nexpires = 2027-01-31',
            "waiver[0]: a waiver needs at least one matcher; add one or more of: check, rule, finding,",
        ),
        (
            'rule = "r"\nreasn = "x"\nexpires = 2027-01-31',
            "waiver[0].reasn: unknown key (got 'reasn'); did you mean 'reason'?",
        ),
        (
            'check = "spec_diff"\nreason = "x"\nexpires = 2027-01-31',
            "waiver[0].check: unknown check (got 'spec_diff'); did you mean 'spec-diff'?",
        ),
        (
            'finding = "3FA2C1"\nreason = "x"\nexpires = 2027-01-31',
            "waiver[0].finding: not a finding id (got '3FA2C1'); a finding id is 12 lower-case hex digits",
        ),
        (
            'rule = 7\nreason = "x"\nexpires = 2027-01-31',
            "waiver[0].rule: expected a string, got an integer (got 7); write the value in quotes",
        ),
    ],
)
def test_invalid_waivers_name_file_key_value_and_fix(tmp_path: Path, body: str, expected: str) -> None:
    text = f'[[waiver]]\nrule = "ok"\nreason = "fine"\nexpires = 2027-01-31\n\n[[waiver]]\n{body}\n'
    message = error(tmp_path, text)
    assert "compat-waivers.toml: " in message
    assert expected.replace("waiver[0]", "waiver[1]") in message


def test_invalid_toml_names_line_and_column(tmp_path: Path) -> None:
    message = error(tmp_path, '[[waiver]]\nrule = "r"\nreason = "unterminated\nexpires = 2027-01-31\n')
    assert "compat-waivers.toml: invalid TOML at line 3, column " in message


def test_top_level_shape(tmp_path: Path) -> None:
    assert "waivers: unknown key (got 'waivers'); did you mean 'waiver'?" in error(tmp_path, "[[waivers]]\n")
    message = error(tmp_path, 'waiver = "x"\n')
    assert (
        "waiver: expected an array of tables, got a string (got 'x'); write each waiver as a [[waiver]]"
        in message
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"waiver file not found; looked for .*missing\.toml"):
        load_waivers(tmp_path / "missing.toml")


# -- matching -------------------------------------------------------------------------------------------


def waiver(index: int = 0, expires: dt.date = dt.date(2027, 1, 31), **kw: Any) -> Waiver:
    return Waiver(index=index, reason="accepted", expires=expires, **kw)


@pytest.mark.parametrize(
    ("matchers", "matches"),
    [
        ({"check": "spec-diff"}, True),
        ({"check": "contracts"}, False),
        ({"rule": "response-property-removed"}, True),
        ({"rule": "response-*"}, True),
        ({"rule": "request-*"}, False),
        ({"operation": "GET /orders/{id}"}, True),
        ({"operation": "GET /orders/*"}, True),
        ({"operation": "POST /orders"}, False),
        ({"stage": "onebox"}, True),
        ({"stage": "one"}, False),
        ({"service": "orders"}, True),
        ({"service": "web"}, False),
        ({"versions": "v1 -> v2-rename-field"}, True),
        ({"versions": "v1 -> v2*"}, True),
        ({"versions": "v2 -> v3"}, False),
        ({"check": "spec-diff", "rule": "response-*", "service": "web"}, False),  # all must match
    ],
)
def test_matchers(matchers: dict[str, str], matches: bool) -> None:
    assert waiver(**matchers).matches(finding()) is matches
    assert waiver(**matchers).matches(finding().to_dict()) is matches  # report dicts match the same way


def test_stage_matches_the_run_or_its_stage_name_and_finding_matches_the_id() -> None:
    mixed = finding(stage="rollback:1-mixed")
    assert waiver(stage="rollback").matches(mixed)
    assert waiver(stage="rollback:1-mixed").matches(mixed)
    assert not waiver(stage="rollback:2-old").matches(mixed)
    assert not waiver(stage="rollback").matches(finding(stage=None))
    assert waiver(finding=mixed.id).matches(mixed)
    assert not waiver(finding=mixed.id).matches(finding())


def test_apply_classifies_each_finding_and_reports_unused_and_expired() -> None:
    removed = finding()
    added = finding(rule="response-property-added", level="INFO")
    other = finding(check="contracts", rule="a request for order 7", stage="rollback:1-mixed")
    waivers = [
        waiver(0, rule="response-property-removed"),
        waiver(1, expires=dt.date(2026, 5, 31), check="contracts"),  # expired yesterday
        waiver(2, rule="response-*"),  # waives `added`; `removed` went to waiver[0] first
        waiver(3, check="properties"),  # matches nothing
        waiver(4, expires=dt.date(2026, 1, 1), check="yoyo"),  # expired and matches nothing
    ]
    result = apply_waivers([removed, added, other], waivers, TODAY)
    assert [o.waiver.index if o.waiver else None for o in result.findings] == [0, 2, None]
    assert [w.index for w in result.findings[2].expired] == [1]
    assert [w.index for w in result.applied] == [0, 2]
    assert [w.index for w in result.expired] == [1, 4]
    assert [w.index for w in result.unused] == [3]
    assert result.notes == [
        f"waiver[1] (reason 'accepted') expired on 2026-05-31; finding {other.id} is no longer waived",
        "waiver[4] (reason 'accepted') expired on 2026-01-01 and matches no finding; remove it",
        "waiver[3] (reason 'accepted') waived no finding; remove it or correct its matchers",
    ]
    section = result.to_dict("compat-waivers.toml")
    assert section["applied"][0]["findings"] == [removed.id]
    assert section["expired"][0]["findings"] == [other.id]
    assert section["expired"][1]["findings"] == []
    assert section["unused"] == [
        {"index": 3, "reason": "accepted", "expires": "2027-01-31", "check": "properties"}
    ]


def test_a_waiver_holds_through_its_expiry_day() -> None:
    w = waiver(expires=TODAY, rule="response-*")
    assert apply_waivers([finding()], [w], TODAY).findings[0].waived
    after = apply_waivers([finding()], [w], TODAY + dt.timedelta(days=1))
    assert not after.findings[0].waived
    assert after.findings[0].expired == [w]


def test_an_expired_waiver_superseded_by_a_valid_one_makes_no_note() -> None:
    result = apply_waivers(
        [finding()],
        [waiver(0, expires=dt.date(2026, 1, 1), check="spec-diff"), waiver(1, check="spec-diff")],
        TODAY,
    )
    assert result.findings[0].waiver is not None
    assert result.findings[0].waiver.index == 1
    assert result.notes == []


def test_long_reasons_are_shortened_in_notes() -> None:
    w = Waiver(index=5, reason="x" * 100, expires=TODAY, check="spec-diff")
    assert w.label == f"waiver[5] (reason '{'x' * 59}…')"
