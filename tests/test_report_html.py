"""The HTML report: self-contained, escaped, a matrix that matches the JSON, findings that expand.

The page is checked statically and in headless Chromium (``--dump-dom`` for the DOM after scripts ran,
``--screenshot`` for a rendering). Without ``chromium`` on PATH the browser tests are skipped with the
reason, unless ``COMPAT_REQUIRE_BROWSER=1`` (then they fail); ``ci/setup-chromium.sh`` installs it.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from compat.gate import GatePolicy, combine
from compat.report import render_html, write_reports
from compat.report.html import NONE_VERDICT, cell_id
from compat.report.jsonreport import TESTS_COLUMN, ReportBuilder
from tests.report_samples import API_KEY, CONTRACT, TODAY, TOKEN, WAIVER, sample_builder, sample_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def find(self, tag: str, **match: str) -> list[dict[str, str | None]]:
        want = {k.replace("_", "-"): v for k, v in match.items()}
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in want.items())]

    def with_class(self, tag: str, name: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == tag and name in (a.get("class") or "").split()]


def expected_cells(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(stage, column) -> verdict, from the JSON: the worst check item of that check in that stage."""
    cells: dict[tuple[str, str], list[str]] = {}
    for check in report["checks"]:
        cells.setdefault((check["stage"] or "", check["check"]), []).append(check["verdict"])
    for test in report["tests"]:
        if test["verdict"]:
            cells.setdefault((test["stage"] or "", TESTS_COLUMN), []).append(test["verdict"])
    return {key: combine(verdicts).value for key, verdicts in cells.items()}


def rendered_cells(doc: Elements) -> dict[tuple[str, str], str]:
    return {
        (str(a["data-stage"]), str(a["data-check"])): str(a["data-verdict"])
        for a in doc.with_class("td", "cell")
        if a["data-verdict"] != NONE_VERDICT
    }


# -- static ---------------------------------------------------------------------------------------------


def test_page_is_self_contained() -> None:
    page = render_html(sample_report())
    doc = Elements(page)
    assert page.startswith("<!DOCTYPE html>")
    assert not [a for _, a in doc.elements if a.get("src")]
    assert not [a for _, a in doc.elements if (a.get("href") or "#").split("#")[0]]  # in-page links only
    assert "@import" not in page
    assert "url(" not in page
    csp = doc.find("meta", http_equiv="Content-Security-Policy")
    assert csp
    assert "default-src 'none'" in str(csp[0]["content"])
    assert len(doc.find("script")) == 1
    assert len(doc.find("style")) == 1


def test_matrix_cells_carry_stage_check_verdict_and_a_unique_id() -> None:
    report = sample_report()
    doc = Elements(render_html(report))
    cells = doc.with_class("td", "cell")
    assert len(cells) == 2 * 4  # 2 stages x (contracts, properties, data, tests)
    assert rendered_cells(doc) == expected_cells(report)
    ids = [c["id"] for c in cells]
    assert len(set(ids)) == len(ids)
    assert doc.find("td", id=cell_id("rollback:1-mixed", "data"))[0]["data-verdict"] == "ERROR"
    assert doc.find("td", id=cell_id("rollback:1-mixed", "contracts"))[0]["data-verdict"] == NONE_VERDICT
    rows = doc.find("tr", data_stage="onebox")
    assert rows[0]["data-verdict"] == "FAIL"


def test_every_finding_is_a_collapsed_details_with_its_id() -> None:
    report = sample_report()
    page = render_html(report)
    doc = Elements(page)
    details = doc.with_class("details", "finding")
    assert [d["data-finding-id"] for d in details] == [
        f["id"] for f in sorted(report["findings"], key=lambda f: f["status"] != "blocking")
    ]
    assert all(d["id"] == f"finding-{d['data-finding-id']}" for d in details)
    assert all("open" not in d for d in details)
    assert {d["data-status"] for d in details} == {"blocking", "waived"}


def test_finding_evidence_is_pretty_printed_and_escaped() -> None:
    page = render_html(sample_report())
    assert "<script>alert" not in page
    assert "GET /orders/7: body.total missing &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&quot;amount&quot;: 12.5" in page  # the JSON body string was parsed and indented
    assert "&quot;Authorization&quot;: &quot;[redacted]&quot;" in page
    assert "curl -sS -i -X GET -H &#x27;Authorization: [redacted]&#x27;" in page
    assert TOKEN not in page
    assert API_KEY not in page


def test_attributes_cannot_be_broken_out_of() -> None:
    report = copy.deepcopy(sample_report())
    report["checks"][0]["check"] = 'contracts" onmouseover="alert(1)'
    report["stages"][0]["versions"] = {"orders": "<img src=x onerror=alert(1)>"}
    page = render_html(report)
    doc = Elements(page)
    assert not [a for _, a in doc.elements if "onmouseover" in a or "onerror" in a]
    assert doc.find("th", data_check='contracts" onmouseover="alert(1)')


def test_waivers_and_checks_sections() -> None:
    doc = Elements(render_html(sample_report()))
    assert doc.find("section", id="waivers")
    rows = {a["data-check-id"]: a["data-verdict"] for a in doc.find("tr") if "data-check-id" in a}
    assert rows == {
        "onebox-contracts-orders": "FAIL",
        "onebox-properties-orders": "FAIL",
        "rollback:1-mixed-data-orders": "ERROR",
    }


def test_static_checks_get_a_no_stage_row() -> None:
    builder = sample_builder(crashed=False)
    spec = dataclasses.replace(CONTRACT, check="spec-diff", rule="response-property-removed", stage=None)
    builder.add_check(id="spec-diff-orders", check="spec-diff", service="orders", findings=[spec])
    report = builder.build(GatePolicy(), [WAIVER], TODAY)
    doc = Elements(render_html(report))
    assert doc.find("td", id=cell_id(None, "spec-diff"))[0]["data-verdict"] == "FAIL"
    assert rendered_cells(doc) == expected_cells(report)


def test_an_empty_run_renders() -> None:
    builder = ReportBuilder()
    builder.set_run(id="r", project="p", seed=1, started_at="2026-06-01T00:00:00Z")
    page = render_html(builder.build(today=TODAY))
    assert "Nothing ran." in page
    assert "No findings." in page


# -- in a browser ---------------------------------------------------------------------------------------

Browser = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "chromium is not on PATH; run `bash ci/setup-chromium.sh` (as root) to install it"
        if os.environ.get("COMPAT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"COMPAT_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture
def chromium(chromium_path: str, tmp_path: Path) -> Browser:
    def run(*args: str, url: str) -> subprocess.CompletedProcess[str]:
        cmd = [
            chromium_path,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
            url,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
        return done

    return run


@pytest.fixture
def page(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    report = sample_report()
    paths = write_reports(report, tmp_path / "out")
    return paths[2], report


def test_rendered_matrix_matches_the_json(chromium: Browser, page: tuple[Path, dict[str, Any]]) -> None:
    path, report = page
    dom = chromium("--dump-dom", url=path.as_uri()).stdout
    doc = Elements(dom)
    assert rendered_cells(doc) == expected_cells(report)
    assert doc.find("header", id="verdict")[0]["data-verdict"] == report["verdict"]["result"]
    assert [d for d in doc.with_class("details", "finding") if "open" in d] == []


def test_fragment_expands_that_finding(chromium: Browser, page: tuple[Path, dict[str, Any]]) -> None:
    path, _ = page
    dom = chromium("--dump-dom", url=f"{path.as_uri()}#finding-{CONTRACT.id}").stdout
    details = {d["data-finding-id"]: d for d in Elements(dom).with_class("details", "finding")}
    assert "open" in details[CONTRACT.id]
    assert "target" in str(details[CONTRACT.id]["class"]).split()
    assert [fid for fid, d in details.items() if "open" in d] == [CONTRACT.id]


def test_injected_markup_does_not_run(chromium: Browser, tmp_path: Path) -> None:
    evil = dataclasses.replace(
        CONTRACT,
        rule="an <b>evil</b> interaction",
        message="<script>document.title='pwned'</script><img src=x onerror=\"document.title='img'\">",
    )
    builder = sample_builder()
    builder.add_check(
        id="onebox-contracts-web", check="contracts", service="web", stage="onebox", findings=[evil]
    )
    path = write_reports(builder.build(GatePolicy(), [WAIVER], TODAY), tmp_path / "evil")[2]
    dom = chromium("--dump-dom", url=path.as_uri()).stdout
    doc = Elements(dom)
    assert len(doc.find("script")) == 1
    assert not doc.find("img")
    assert "pwned" not in dom.split("</title>")[0]
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom
    assert "an &lt;b&gt;evil&lt;/b&gt; interaction" in dom
    assert not doc.find("b")


def test_screenshot(chromium: Browser, page: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, _ = page
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,900", url=path.as_uri())
    data = shot.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 900)
    assert len(data) > 20_000  # a rendered page, not a blank one
