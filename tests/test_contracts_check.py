"""The consumer-contract check against the example orders service, run as local processes (no Docker)."""

from __future__ import annotations

import http.server
import json
import shlex
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from compat.checks.contracts import ProviderStateSetup, contracts_for, load_contract, verify
from compat.checks.finding import Finding
from compat.errors import ConfigError, InfrastructureError
from tests.example_apps import OrdersByVersion, free_port

REPO = Path(__file__).resolve().parents[1]
ORDERS_APP = REPO / "fixtures" / "orders" / "app.py"
DATA = REPO / "tests" / "data" / "contracts"
PACT_V3 = REPO / "contracts" / "web-orders.pact.json"
PACT_V2 = DATA / "web-orders.v2.pact.json"
PACT_V4 = DATA / "web-orders.v4.pact.json"  # the v3 contract plus a pending history interaction
STATES = "/_compat/provider-states"
HEALTH_DEADLINE = 10.0


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrdersByVersion]:
    running = OrdersByVersion(tmp_path_factory.mktemp("orders"))
    yield running
    running.close()


def check(contract: Path, url: str, **kwargs: Any) -> list[Finding]:
    kwargs.setdefault("states", ProviderStateSetup(url=url + STATES))
    return verify(contract, provider="orders", base_url=url, **kwargs)


# -- verification ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("contract", [PACT_V3, PACT_V2], ids=["pact-v3", "pact-v2"])
@pytest.mark.parametrize("version", ["v1", "v2", "v2-cursor-format"])
def test_compatible_versions_have_no_findings(orders: OrdersByVersion, version: str, contract: Path) -> None:
    # v2-cursor-format breaks paging across versions, but no single-version contract can see that: by design
    assert check(contract, orders(version)) == []


def test_the_v4_contract_verifies_against_v2_including_its_pending_interaction(
    orders: OrdersByVersion,
) -> None:
    assert check(PACT_V4, orders("v2")) == []


def test_a_renamed_field_is_one_error_per_failed_interaction(orders: OrdersByVersion) -> None:
    url = orders("v2-rename-field")
    started = time.monotonic()
    findings = check(PACT_V3, url, stage="canary", versions={"orders": "v1 -> v2-rename-field"})
    assert time.monotonic() - started < 10
    assert [f.rule for f in findings] == [
        "a request for the first page of orders",
        "a request for the next page of orders, with the cursor of the previous page",
        "a request for one order",
        "a request to create an order",
    ]
    for finding in findings:
        assert (finding.check, finding.level, finding.pending, finding.blocking) == (
            "contracts",
            "ERR",
            False,
            True,
        )
        assert "missing the following keys: item" in finding.message
        assert finding.message.startswith("body $")
        assert (finding.stage, dict(finding.versions)) == ("canary", {"orders": "v1 -> v2-rename-field"})
        assert finding.operation is not None
        assert finding.request is not None
        assert finding.request["url"].startswith(url + "/orders")
        assert finding.curl is not None
        assert "product" in (finding.actual or "")
        assert finding.details["mismatches"]
        assert "reproduce: curl" in finding.render()
    assert findings[0].message == "body $.items[*]: Actual map is missing the following keys: item"
    assert findings[0].operation == "GET /orders"
    assert findings[0].request is not None
    assert findings[0].request["url"] == f"{url}/orders?limit=5"
    assert findings[2].operation == "GET /orders/6d1b8a2e-4f3c-4b5a-9c7d-0e1f2a3b4c5d"
    assert len({f.id for f in findings}) == len(findings)


def test_the_curl_line_parses_and_reproduces_the_renamed_field(orders: OrdersByVersion) -> None:
    url = orders("v2-rename-field")
    create = next(f for f in check(PACT_V3, url) if f.rule == "a request to create an order")
    assert create.operation == "POST /orders"
    assert create.curl is not None
    argv = shlex.split(create.curl)
    assert argv[:5] == ["curl", "-sS", "-i", "-X", "POST"]
    assert argv[-1] == f"{url}/orders"
    headers = dict(argv[i + 1].split(": ", 1) for i, arg in enumerate(argv) if arg == "-H")
    body = argv[argv.index("--data-raw") + 1]
    assert json.loads(body) == {"item": "coffee", "quantity": 1}
    response = requests.request(argv[4], argv[-1], headers=headers, data=body, timeout=5)
    assert response.status_code == 201
    assert response.json()["product"] == "coffee"
    assert "item" not in response.json()


def test_the_v2_and_v4_contracts_see_the_renamed_field_too(orders: OrdersByVersion) -> None:
    url = orders("v2-rename-field")
    v2 = check(PACT_V2, url)
    assert [f.rule for f in v2] == ["a request for the first page of orders", "a request to create an order"]
    v4 = check(PACT_V4, url)
    assert [f.rule for f in v4 if f.blocking] == [f.rule for f in check(PACT_V3, url)]
    assert all("item" in f.message for f in v4 if f.blocking)


def test_a_failing_pending_v4_interaction_is_a_warning(orders: OrdersByVersion) -> None:
    findings = check(PACT_V4, orders("v1"))  # v1 has no history endpoint
    assert len(findings) == 1
    (pending,) = findings
    assert (pending.rule, pending.level, pending.pending, pending.blocking) == (
        "a request for the history of an order",
        "WARN",
        True,
        False,
    )
    assert pending.operation == "GET /orders/6d1b8a2e-4f3c-4b5a-9c7d-0e1f2a3b4c5d/history"
    assert pending.message.startswith("status: expected 200, got 404")
    assert (pending.expected, pending.actual) == ("200", "404")


# -- provider states from a Python callable --------------------------------------------------------------


@pytest.fixture
def state_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(DATA))
    import orders_states

    orders_states.CALLS.clear()
    return orders_states


@pytest.mark.parametrize(
    ("target", "version"),
    [
        ("orders_states:set_state", "v1"),
        (f"{DATA / 'orders_states.py'}:set_state", "v1"),
        # the next-page request carries the cursor the state set-up returned, in this version's format
        ("orders_states:set_state", "v2-cursor-format"),
    ],
)
def test_python_callable_provider_states(
    orders: OrdersByVersion, state_module: Any, monkeypatch: pytest.MonkeyPatch, target: str, version: str
) -> None:
    url = orders(version)
    monkeypatch.setenv("ORDERS_STATE_URL", url + STATES)
    assert check(PACT_V3, url, states=ProviderStateSetup(callable=target)) == []
    if target.startswith("orders_states"):  # the file form loads its own copy of the module
        calls = state_module.CALLS
        assert ("several orders exist", {"count": 12, "page_size": 5}, "setup") in calls
        assert ("no orders exist", {}, "teardown") in calls
        assert all(state for state, _params, _action in calls)  # Pact's generic "" state is not passed on


def test_python_callable_states_still_find_the_renamed_field(
    orders: OrdersByVersion, state_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = orders("v2-rename-field")
    monkeypatch.setenv("ORDERS_STATE_URL", url + STATES)
    findings = check(PACT_V3, url, states=ProviderStateSetup(callable="orders_states:set_state"))
    assert len(findings) == 4
    assert state_module.CALLS


def test_a_failing_state_callable_is_an_infrastructure_error(
    orders: OrdersByVersion, state_module: Any
) -> None:
    with pytest.raises(InfrastructureError, match="cannot set up"):
        check(PACT_V3, orders("v1"), states=ProviderStateSetup(callable="orders_states:broken"))


def test_an_unknown_state_callable_is_a_config_error(orders: OrdersByVersion) -> None:
    with pytest.raises(ConfigError, match="no_such_module_here"):
        check(PACT_V3, orders("v1"), states=ProviderStateSetup(callable="no_such_module_here:f"))
    with pytest.raises(ConfigError, match="module:function"):
        check(PACT_V3, orders("v1"), states=ProviderStateSetup(callable="nocolon"))


def test_a_state_setup_needs_exactly_one_of_url_and_callable() -> None:
    with pytest.raises(ConfigError):
        ProviderStateSetup()
    with pytest.raises(ConfigError):
        ProviderStateSetup(url="http://127.0.0.1:1/x", callable="m:f")


# -- fail closed ------------------------------------------------------------------------------------------


def test_an_unreachable_provider_is_an_infrastructure_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(InfrastructureError, match="not reachable"):
        check(PACT_V3, url)


def test_a_failing_state_endpoint_is_an_infrastructure_error_not_a_pass(orders: OrdersByVersion) -> None:
    url = orders("v1")
    with pytest.raises(InfrastructureError, match="HTTP 404"):
        check(PACT_V3, url, states=ProviderStateSetup(url=url + "/no-such-state-endpoint"))


def test_a_state_endpoint_answering_500_fails_fast(tmp_path: Path) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    started = time.monotonic()
    try:
        with pytest.raises(InfrastructureError, match="HTTP 500"):
            check(PACT_V3, url)  # the Pact verifier alone retries a 500 for minutes
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert time.monotonic() - started < 10


def test_a_contract_for_another_provider_is_a_config_error(orders: OrdersByVersion) -> None:
    with pytest.raises(ConfigError, match="not 'billing'"):
        verify(PACT_V3, provider="billing", base_url=orders("v1"), states=None)


# -- reading contracts ------------------------------------------------------------------------------------


def test_load_contract_summarises_each_spec_version() -> None:
    v3, v2, v4 = (load_contract(p) for p in (PACT_V3, PACT_V2, PACT_V4))
    assert (v3["consumer"], v3["provider"], v3["spec_version"]) == ("web", "orders", 3)
    assert v3["interactions"][0] == {
        "description": "a request for the first page of orders",
        "states": ["several orders exist"],
        "pending": False,
    }
    assert v3["interactions"][4]["states"] == []
    assert (v2["spec_version"], len(v2["interactions"])) == (2, 4)
    assert v2["interactions"][0]["states"] == ["several orders exist"]  # v2's single providerState
    assert v4["spec_version"] == 4
    assert [i["pending"] for i in v4["interactions"]] == [False] * 6 + [True]


def write(tmp_path: Path, doc: Any, name: str = "pact.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def minimal(version: Any = ..., **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"consumer": {"name": "web"}, "provider": {"name": "orders"}, "interactions": []}
    if version is not ...:
        doc["metadata"] = {"pactSpecification": {"version": version}}
    return {**doc, **extra}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (minimal("3"), 3),
        (minimal("3.0"), 3),
        (minimal("3.0.0"), 3),
        (minimal("V4"), 4),
        (minimal("v2.0.0"), 2),
        (minimal(" 4.0 "), 4),
        (minimal(3), 3),
        (minimal("1.1.0"), 1),
        (minimal(), 2),  # no metadata
        (minimal(None), 2),  # no version
        (minimal(metadata={"pact-specification": {"version": "2.0.0"}}), 2),
        (minimal(metadata={"pactSpecificationVersion": "1.1.0"}), 1),
    ],
)
def test_lenient_spec_versions(tmp_path: Path, doc: dict[str, Any], expected: int) -> None:
    assert load_contract(write(tmp_path, doc))["spec_version"] == expected


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ('{"consumer": {"name": "web"},\n  "provider": }', "invalid JSON at line 2 column 15"),
        ("[1, 2]", "must be a JSON object"),
        ({"consumer": {"name": "web"}, "interactions": []}, "provider.name: missing the provider name"),
        (minimal(provider={"name": ""}), "missing the provider name"),
        (minimal(consumer="web"), "consumer.name"),
        (minimal(interactions={"a": 1}), "interactions: must be a list"),
        (minimal(interactions=None), "interactions: must be a list"),
        (minimal("three"), "not a Pact specification version"),
        (minimal("9.0"), "not a Pact specification version"),
        (minimal("3.0.0.0"), "not a Pact specification version"),
        (minimal(True), "not a Pact specification version"),
        (minimal(metadata=[]), "metadata: must be an object"),
        (minimal(interactions=[1]), r"interactions\[0\]"),
        (minimal(interactions=[{"request": {}}]), r"interactions\[0\].description"),
        (minimal(interactions=[{"description": "x"}]), r"interactions\[0\].request"),
    ],
)
def test_load_contract_errors_name_the_file(tmp_path: Path, doc: Any, match: str) -> None:
    path = write(tmp_path, doc, "bad.pact.json")
    with pytest.raises(ConfigError, match=match) as err:
        load_contract(path)
    assert str(err.value).startswith(str(path))


def test_a_missing_or_binary_contract_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_contract(tmp_path / "absent.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe{")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_contract(binary)


def test_an_unparseable_contract_fails_verify_with_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid JSON"):
        verify(write(tmp_path, "{"), provider="orders", base_url="http://127.0.0.1:1", states=None)


def test_contracts_for_selects_by_provider(tmp_path: Path) -> None:
    billing = write(tmp_path, minimal(provider={"name": "billing"}), "billing.json")
    assert contracts_for([PACT_V3, billing, PACT_V4], "orders") == [PACT_V3, PACT_V4]
    assert contracts_for([PACT_V3, billing], "billing") == [billing]
    assert contracts_for([], "orders") == []
