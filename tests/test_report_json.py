"""The report document: builder, schema validation, secret scrubbing, writing, reloading, JUnit properties."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from compat.checks.finding import Finding
from compat.errors import UsageError
from compat.gate import GatePolicy, evaluate
from compat.report import (
    ReportBuilder,
    ReportSchemaError,
    junit_properties,
    load_report,
    schema,
    scrub,
    validate,
    write_reports,
)
from compat.report.jsonreport import secret_values
from tests.report_samples import API_KEY, CONTRACT, TODAY, TOKEN, WAIVER, sample_builder, sample_report


def test_the_sample_report_has_the_documented_shape() -> None:
    rep = sample_report()
    validate(rep)
    assert list(rep) == [
        "schema_version",
        "tool",
        "run",
        "versions",
        "stages",
        "checks",
        "tests",
        "findings",
        "waivers",
        "verdict",
    ]
    assert rep["schema_version"] == 1
    assert rep["tool"]["name"] == "pytest-compat"
    assert rep["run"]["started_at"] == "2026-06-01T09:30:00.000+00:00"
    assert rep["run"]["duration_s"] == 83.4
    assert rep["versions"]["orders"]["candidate"] == {
        "version": "v2-rename-field",
        "image": "shop-orders:v2",
        "digest": None,
    }
    assert rep["versions"]["web"]["candidate"] is None
    assert rep["stages"][1] == {
        "id": "rollback:1-mixed",
        "stage": "rollback",
        "kind": "rollback",
        "verdict": "ERROR",
        "versions": {"orders": "v1+v2-rename-field"},
        "would_be": None,
    }
    statuses = {f["rule"]: f["status"] for f in rep["findings"]}
    assert statuses == {
        "a request for order 7": "blocking",
        "response_schema_conformance": "waived",
        "status_code_conformance": "blocking",
    }
    waived = next(f for f in rep["findings"] if f["status"] == "waived")
    assert waived["waiver"] == {"index": 0, "reason": WAIVER.reason, "expires": "2027-01-31"}
    assert waived["check_id"] == "onebox-properties-orders"
    assert rep["checks"][0]["findings"] == [CONTRACT.id]
    assert rep["waivers"]["file"] == "compat-waivers.toml"
    assert rep["tests"][2]["verdict"] is None  # an ordinary skip is not counted


def test_schema_is_draft_2020_12_and_versioned() -> None:
    doc = schema()
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["properties"]["schema_version"] == {"const": 1}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["checks"][2].update(verdict="MAYBE"), "at $.checks[2].verdict: 'MAYBE' is not one of"),
        (
            lambda r: r["findings"][0].update(status="ignored"),
            "at $.findings[0].status: 'ignored' is not one of",
        ),
        (lambda r: r.pop("verdict"), "at $: 'verdict' is a required property"),
        (lambda r: r.update(schema_version=2), "at $.schema_version: 1 was expected"),
        (lambda r: r["run"].update(seed="42"), "at $.run.seed: '42' is not of type 'integer'"),
        (lambda r: r.update(extra=1), "Additional properties are not allowed ('extra' was unexpected)"),
        (lambda r: r["waivers"]["applied"][0].update(expires="31.01.2027"), "'31.01.2027' is not a 'date'"),
    ],
)
def test_validate_says_where_the_report_is_wrong(mutate: Any, expected: str) -> None:
    rep = sample_report()
    mutate(rep)
    with pytest.raises(ReportSchemaError) as info:
        validate(rep, source="out/compat-report.json")
    assert str(info.value).startswith("out/compat-report.json: not a valid pytest-compat report")
    assert expected in str(info.value)
    assert isinstance(info.value, UsageError)  # `compat gate` on a bad report: exit 4


def test_secrets_are_redacted_in_headers_and_scrubbed_everywhere_else() -> None:
    rep = sample_report()
    text = json.dumps(rep)
    assert TOKEN not in text
    assert API_KEY not in text  # a configured redact header (X-Api-Key), also inside details
    contract = next(f for f in rep["findings"] if f["check"] == "contracts")
    assert contract["request"]["headers"]["Authorization"] == "[redacted]"
    assert contract["request"]["headers"]["X-Api-Key"] == "[redacted]"
    assert contract["request"]["headers"]["Accept"] == "application/json"
    assert contract["details"]["provider_log"] == "auth ok for [redacted]; key [redacted] accepted"
    assert "Authorization: [redacted]" in contract["curl"]


def test_scrub_replaces_a_planted_token_anywhere() -> None:
    planted = {
        "a": f"curl -H 'Authorization: Bearer {TOKEN}' http://x",
        "b": [f"token={TOKEN}", {"deep": TOKEN}, 7, None],
        "c": {"n": 1.5, "ok": True},
    }
    out = scrub(planted, [TOKEN, "", "abc"])  # empty and too-short secrets are ignored
    assert out == {
        "a": "curl -H 'Authorization: Bearer [redacted]' http://x",
        "b": ["token=[redacted]", {"deep": "[redacted]"}, 7, None],
        "c": {"n": 1.5, "ok": True},
    }
    assert planted["b"][1] == {"deep": TOKEN}  # the input is not modified
    assert scrub(planted, []) is planted


def test_secret_values_include_cookie_values_and_token_parts() -> None:
    f = Finding(
        check="contracts",
        rule="r",
        message="m",
        request={
            "headers": {"Cookie": "theme=dark; session=sess-PLANTED-1", "Authorization": "Basic dXNlcjpwdw=="}
        },
        response={"headers": {"Set-Cookie": "session=sess-PLANTED-2; Path=/; HttpOnly", "X-Trace": "t-1"}},
    )
    values = secret_values(f)
    assert {"sess-PLANTED-1", "sess-PLANTED-2", "dXNlcjpwdw==", "Basic dXNlcjpwdw=="} <= values
    assert "t-1" not in values
    assert "dark" in values  # every cookie value is treated as secret
    assert "/" not in values
    assert "Path=/" not in values


def test_builder_deduplicates_findings_and_rejects_duplicate_checks() -> None:
    builder = sample_builder()
    builder.add_check(
        id="onebox-contracts-web", check="contracts", service="web", stage="onebox", findings=[CONTRACT]
    )
    rep = builder.build(GatePolicy(), [WAIVER], TODAY)
    contract = next(f for f in rep["findings"] if f["id"] == CONTRACT.id)
    assert contract["occurrences"] == 2
    assert len(rep["findings"]) == 3
    with pytest.raises(ValueError, match="check 'onebox-contracts-web' was added twice"):
        builder.add_check(id="onebox-contracts-web", check="contracts")
    with pytest.raises(ValueError, match="outcome 'xfailed' is not one of passed, failed, error, skipped"):
        builder.add_test("t.py::t", "xfailed")


def test_build_needs_a_run() -> None:
    with pytest.raises(ValueError, match=r"call set_run\(\) first"):
        ReportBuilder().build()


def test_a_minimal_run_validates() -> None:
    builder = ReportBuilder()
    builder.set_run(id="r1", project="p", seed=0, started_at="2026-06-01T00:00:00Z")
    rep = builder.build(today=TODAY)
    assert rep["verdict"]["result"] == "INCONCLUSIVE"
    assert rep["run"]["finished_at"] is None


def test_naive_times_become_local_times_with_an_offset() -> None:
    builder = ReportBuilder()
    builder.set_run(id="r1", project="p", seed=0, started_at=dt.datetime(2026, 6, 1, 12, 0))
    started = builder.build(today=TODAY)["run"]["started_at"]
    assert started.startswith("2026-06-01T12:00:00.000")
    assert dt.datetime.fromisoformat(started).tzinfo is not None


def test_write_and_reload(tmp_path: Path) -> None:
    rep = sample_report()
    paths = write_reports(rep, tmp_path / "out")
    assert [p.name for p in paths] == ["compat-report.json", "compat-report.md", "compat-report.html"]
    for path in paths:
        assert TOKEN not in path.read_text(encoding="utf-8")
        assert API_KEY not in path.read_text(encoding="utf-8")
    assert load_report(paths[0]) == rep


def test_regating_a_written_report_gives_the_same_exit_code(tmp_path: Path) -> None:
    rep = sample_report(crashed=False)
    [path, *_] = write_reports(rep, tmp_path)
    loaded = load_report(path)
    again = evaluate(loaded, GatePolicy(), [WAIVER], TODAY)
    assert again["verdict"]["exit_code"] == rep["verdict"]["exit_code"] == 1
    validate(again)
    strict = evaluate(loaded, GatePolicy(fail_on="WARN"), [], TODAY)
    assert strict["verdict"]["counts"]["blocking"] == 3


def test_load_report_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="report not found"):
        load_report(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1,', encoding="utf-8")
    with pytest.raises(UsageError, match=r"bad\.json: not JSON \(line 1, column 22"):
        load_report(bad)
    future = tmp_path / "future.json"
    future.write_text(json.dumps({**sample_report(), "schema_version": 9}), encoding="utf-8")
    with pytest.raises(ReportSchemaError, match=r"at \$\.schema_version: 9 is not 1"):
        load_report(future)
    broken = copy.deepcopy(sample_report())
    broken["checks"][0]["verdict"] = "OK"
    (tmp_path / "broken.json").write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(ReportSchemaError, match=r"broken\.json: .*\n  at \$\.checks\[0\]\.verdict"):
        load_report(tmp_path / "broken.json")


def test_junit_properties() -> None:
    props = dict(junit_properties(sample_report()))
    assert props["compat.verdict"] == "ERROR"
    assert props["compat.exit_code"] == "2"
    assert props["compat.run_id"] == "r-20260601-0930-ab12"
    assert props["compat.seed"] == "1234"
    assert props["compat.findings"] == "3"
    assert props["compat.findings.blocking"] == "2"
    assert props["compat.findings.waived"] == "1"
    assert props["compat.checks.FAIL"] == "2"
    assert props["compat.checks.ERROR"] == "1"
    assert props["compat.dry_run"] == "false"
    assert all(isinstance(v, str) for _, v in junit_properties(sample_report()))
