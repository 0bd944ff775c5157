"""The property check against real orders processes (no Docker): each version a subprocess on a free port."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from compat.checks.properties import PropertyOptions, run_properties
from compat.errors import InfrastructureError, UsageError
from tests.example_apps import Launcher, OrdersByVersion, free_port

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "fixtures" / "orders" / "app.py"
SPECS = REPO / "fixtures" / "orders" / "openapi"
V1 = SPECS / "v1.yaml"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrdersByVersion]:
    """``orders("v2")`` -> base URL of a running orders process of that version (one per version, own db)."""
    running = OrdersByVersion(tmp_path_factory.mktemp("orders"))
    yield running
    running.close()


def _rules(findings: list[Any]) -> set[tuple[str, str]]:
    return {(f.operation, f.rule) for f in findings}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_compatible_versions_have_no_findings(orders: Callable[[str], str], version: str) -> None:
    findings = run_properties(V1, orders(version), PropertyOptions(seed=1))
    assert findings == [], "\n\n".join(f.render() for f in findings)


def test_renamed_field_breaks_response_schema(orders: Callable[[str], str]) -> None:
    url = orders("v2-rename-field")
    findings = run_properties(
        V1, url, PropertyOptions(), stage="candidate", versions={"orders": "v1 -> v2-rename-field"}
    )
    schema = [f for f in findings if "response_schema_conformance" in f.details["checks"]]
    assert schema, [f.render() for f in findings]
    assert {f.operation for f in schema} >= {"POST /orders", "GET /orders/{id}"}
    for finding in schema:
        assert finding.check == "properties"
        assert finding.level == "ERR"
        assert finding.rule == "ST108"
        assert "'item'" in finding.message or '"item"' in finding.message
        assert finding.stage == "candidate"
        assert finding.versions == {"orders": "v1 -> v2-rename-field"}
        assert finding.seed == 0
        assert finding.request is not None
        assert finding.response is not None
    # deduplicated: one finding per (operation, failure code)
    assert len(_rules(findings)) == len(findings)


def test_strict_validation_rejects_requests_v1_accepts(orders: Callable[[str], str]) -> None:
    findings = run_properties(V1, orders("v2-strict-validation"), PropertyOptions())
    rejected = [f for f in findings if f.rule == "ST202"]
    assert "POST /orders" in {f.operation for f in rejected}, [f.render() for f in findings]
    post = next(f for f in rejected if f.operation == "POST /orders")
    assert post.response is not None
    assert post.response["status"] == 422
    assert "positive_data_acceptance" in post.message


def test_opaque_cursor_is_not_counted_as_rejected_positive_data(orders: Callable[[str], str]) -> None:
    url = orders("v1")
    options = PropertyOptions(operations=("GET /orders",), stateful=False)
    assert run_properties(V1, url, options) == []
    # without the exemption (user says nothing is opaque and the description is ignored) random cursors
    # are "valid data rejected": this is exactly what the exemption is for
    from compat.checks import properties

    original = properties._OPAQUE_WORD
    properties._OPAQUE_WORD = re.compile(r"(?!)")
    try:
        findings = run_properties(V1, url, options)
    finally:
        properties._OPAQUE_WORD = original
    assert _rules(findings) == {("GET /orders", "ST202")}


def _recorder(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Record (method, url, body) of every request the harness sends, at the transport adapter."""
    sent: list[tuple[str, str, str]] = []
    original = requests.adapters.HTTPAdapter.send

    def send(self: Any, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        body = request.body.decode("utf-8", "replace") if isinstance(request.body, bytes) else request.body
        # server-generated ids (created by earlier requests) differ between runs by design
        sent.append(
            (str(request.method), UUID.sub("<uuid>", str(request.url)), UUID.sub("<uuid>", body or ""))
        )
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return sent


def test_same_seed_same_requests_different_seed_different(
    orders: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = orders("v1")
    sent = _recorder(monkeypatch)

    def run(seed: int) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
        sent.clear()
        calls: list[tuple[str, str]] = []
        options = PropertyOptions(seed=seed, max_examples=10)
        run_properties(V1, url, options, on_request=lambda m, u: calls.append((m, UUID.sub("<uuid>", u))))
        return list(sent[1:]), calls  # sent[0] is the reachability probe

    first, first_calls = run(7)
    second, second_calls = run(7)
    other, _ = run(8)
    assert len(first) > 50
    assert first == second
    assert first_calls == second_calls == [(m, u) for m, u, _ in first]
    assert first != other


def test_curl_lines_parse_and_target_the_base_url(orders: Callable[[str], str]) -> None:
    url = orders("v2-rename-field")
    findings = run_properties(V1, url, PropertyOptions(max_examples=10))
    assert findings
    for finding in findings:
        assert finding.curl is not None
        argv = shlex.split(finding.curl)
        assert argv[0] == "curl"
        assert any(arg.startswith(url + "/") for arg in argv), finding.curl


def test_unreachable_base_url_is_an_infrastructure_error() -> None:
    with pytest.raises(InfrastructureError, match="not reachable"):
        run_properties(V1, f"http://127.0.0.1:{free_port()}", PropertyOptions(max_examples=2))


def test_server_dying_mid_run_is_an_infrastructure_error(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path)
    app = launcher.orders("v1", db=tmp_path / "o.db")
    proc, url = app.proc, app.url
    try:
        count = 0

        def on_request(method: str, target: str) -> None:
            nonlocal count
            count += 1
            if count == 5:
                proc.terminate()
                proc.wait(timeout=5)

        with pytest.raises(InfrastructureError):
            run_properties(V1, url, PropertyOptions(max_examples=5), on_request=on_request)
    finally:
        launcher.close()


def test_bad_options_are_usage_errors(orders: Callable[[str], str]) -> None:
    url = orders("v1")
    with pytest.raises(UsageError, match="unknown operation"):
        run_properties(V1, url, PropertyOptions(operations=("DELETE /nope",)))
    with pytest.raises(UsageError, match="unknown property check"):
        run_properties(V1, url, PropertyOptions(checks=("no_such_check",)))
