"""The bundled example system (fixtures/) does what fixtures/README.md says each version does.

Every service version runs as a local subprocess on a free 127.0.0.1 port (no Docker); replicas that share
state get the same SQLite file, as they would get the same volume in Docker. Each test proves one version's
intended behaviour, and that its break is real: the checks of pytest-compat are tested against these apps,
so an example that breaks in the wrong way (or not at all) would make those tests meaningless.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.example_apps import REPO, Launcher, free_port

PACT = REPO / "contracts" / "web-orders.pact.json"
ORDERS_VERSIONS = (
    "v1",
    "v2",
    "v2-rename-field",
    "v2-cursor-format",
    "v2-storage-format",
    "v2-strict-validation",
)
WEB_VERSIONS = ("v1", "v2", "v2-needs-history")


# -- running the apps -------------------------------------------------------------------------------------


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.close()


class StubOrders:
    """A fake orders that records what web sends and answers with whatever a test sets."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.answer: tuple[int, bytes] = (200, b'{"items": [], "next_cursor": null}')
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stub.requests.append((self.command, self.path, dict(self.headers.items())))
                status, body = stub.answer
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def stub_orders() -> Iterator[StubOrders]:
    stub = StubOrders()
    yield stub
    stub.close()


# -- orders ----------------------------------------------------------------------------------------------


def test_every_version_starts_on_one_shared_database_and_names_itself(launch: Launcher) -> None:
    with ThreadPoolExecutor(len(ORDERS_VERSIONS)) as pool:  # concurrent schema set-up on one file
        apps = list(pool.map(launch.orders, ORDERS_VERSIONS))
    web = launch.web("v1", orders=None)
    for app in [*apps, web]:
        health = app.get("/health")
        assert health.status_code == 200
        assert health.json() == {
            "status": "ok",
            "service": app.service,
            "version": app.version,
            "instance": app.instance,
        }
        assert health.headers["X-Service-Version"] == app.version
        assert health.headers["X-Instance"] == health.json()["instance"]
        assert health.headers["Content-Type"] == "application/json"
        missing = app.get("/nope")
        assert missing.status_code == 404
        assert missing.headers["X-Service-Version"] == app.version


def test_orders_v1_api(launch: Launcher) -> None:
    v1 = launch.orders("v1")
    created = v1.post("/orders", json={"item": "tea", "quantity": 2, "unknown": "ignored"})
    assert created.status_code == 201
    order = created.json()
    assert set(order) == {"id", "item", "quantity", "status", "created_at"}
    assert (order["item"], order["quantity"], order["status"]) == ("tea", 2, "pending")
    assert order["created_at"].endswith("Z")
    assert "." in order["created_at"]
    assert created.headers["Location"] == f"/orders/{order['id']}"
    assert v1.get(f"/orders/{order['id']}").json() == order

    patched = v1.patch(f"/orders/{order['id']}", json={"status": "shipped", "quantity": 3})
    assert patched.status_code == 200
    assert (patched.json()["status"], patched.json()["quantity"]) == ("shipped", 3)
    assert v1.patch(f"/orders/{order['id']}", json={}).json() == patched.json()  # nothing to change

    assert v1.get("/orders/00000000-0000-4000-8000-000000000000").status_code == 404
    missing = "/orders/00000000-0000-4000-8000-000000000000"
    assert v1.patch(missing, json={"status": "shipped"}).status_code == 404
    assert v1.post("/orders", data=b'{"item": ').status_code == 400
    invalid: list[Any] = [
        [],
        {"item": "tea"},
        {"item": "", "quantity": 1},
        {"item": "x" * 201, "quantity": 1},
        {"item": "tea", "quantity": 0},
        {"item": "tea", "quantity": 1001},
        {"item": "tea", "quantity": True},
        {"item": "tea", "quantity": 1.5},
        {"item": 7, "quantity": 1},
    ]
    for bad in invalid:
        response = v1.post("/orders", json=bad)
        assert response.status_code == 422, bad
        assert isinstance(response.json()["error"], str)
    assert v1.patch(f"/orders/{order['id']}", json={"status": "lost"}).status_code == 422

    listed = v1.get("/orders")
    assert listed.json() == {"items": [patched.json()], "next_cursor": None}
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"cursor": "garbage"}):
        response = v1.get("/orders", params=params)
        assert response.status_code == 400, params
        assert "error" in response.json()

    not_allowed = v1.request("DELETE", "/orders")
    assert not_allowed.status_code == 405
    assert not_allowed.headers["Allow"] == "GET, POST, HEAD, OPTIONS"
    assert v1.request("HEAD", "/health").status_code == 200
    assert v1.get("/orders/anything/history").status_code == 404  # v1 has no history endpoint


def test_v1_and_v2_share_one_database_and_page_with_each_others_cursors(launch: Launcher) -> None:
    v1, v2 = launch.orders("v1"), launch.orders("v2")
    ids = []
    for n in range(7):
        writer = (v1, v2)[n % 2]
        ids.append(writer.create(f"item-{n}", n + 1, **({"note": f"note {n}"} if writer is v2 else {}))["id"])

    from_v2 = v1.get(f"/orders/{ids[1]}").json()
    assert "note" not in from_v2
    assert from_v2["item"] == "item-1"
    assert v2.get(f"/orders/{ids[0]}").json()["note"] is None  # v2 reads v1's rows: no note yet
    assert v1.patch(f"/orders/{ids[1]}", json={"status": "shipped"}).status_code == 200
    assert v2.get(f"/orders/{ids[1]}").json()["note"] == "note 1"  # v1's update keeps v2's note
    assert v2.patch(f"/orders/{ids[0]}", json={"note": "later"}).json()["note"] == "later"

    seen, params, n = [], {"limit": 2}, 0
    while True:  # alternate the version on every page: session yo-yo
        page = (v1, v2)[n % 2].get("/orders", params=params)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        if page.json()["next_cursor"] is None:
            break
        params["cursor"], n = page.json()["next_cursor"], n + 1
    assert seen == ids
    assert [o["id"] for o in v1.page_all(3)] == [o["id"] for o in v2.page_all(3)] == ids


def test_concurrent_writers_of_different_versions_share_the_database(launch: Launcher) -> None:
    apps = [launch.orders("v1"), launch.orders("v2"), launch.orders("v1")]

    def write(n: int) -> int:
        return apps[n % 3].post("/orders", json={"item": f"c-{n}", "quantity": 1}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(write, range(60))) == {201}
    assert sorted(o["item"] for o in apps[0].page_all(100)) == sorted(f"c-{n}" for n in range(60))


def test_v2_history(launch: Launcher) -> None:
    v1, v2 = launch.orders("v1"), launch.orders("v2")
    order = v2.create()
    v2.patch(f"/orders/{order['id']}", json={"status": "shipped"})
    events = v2.get(f"/orders/{order['id']}/history").json()["events"]
    assert [e["status"] for e in events] == ["pending", "shipped"]
    assert events[0]["at"] == order["created_at"]

    legacy = v1.create()  # v1 keeps no history: v2 shows what it can
    v1.patch(f"/orders/{legacy['id']}", json={"status": "cancelled"})
    assert v2.get(f"/orders/{legacy['id']}/history").json()["events"] == [
        {"at": legacy["created_at"], "status": "pending"},
        {"at": None, "status": "cancelled"},
    ]
    assert v2.get("/orders/00000000-0000-4000-8000-000000000000/history").status_code == 404


def test_cursor_format_versions_reject_each_others_cursors_but_page_themselves(launch: Launcher) -> None:
    v1, offset = launch.orders("v1"), launch.orders("v2-cursor-format")
    ids = [v1.create(f"item-{n}")["id"] for n in range(5)]
    assert [o["id"] for o in v1.page_all()] == [o["id"] for o in offset.page_all()] == ids

    for issuer, reader in ((v1, offset), (offset, v1)):
        cursor = issuer.get("/orders", params={"limit": 2}).json()["next_cursor"]
        response = reader.get("/orders", params={"limit": 2, "cursor": cursor})
        assert response.status_code == 400, f"{reader.version} accepted {issuer.version}'s cursor {cursor!r}"
        assert response.json()["error"] == "invalid cursor"


def test_storage_format_breaks_rollback(launch: Launcher) -> None:
    v1, new = launch.orders("v1"), launch.orders("v2-storage-format")
    old_order, new_order = v1.create("old"), new.create("new")
    assert new.get(f"/orders/{old_order['id']}").json() == old_order  # reads both formats
    assert new.get(f"/orders/{new_order['id']}").json() == new_order
    assert [o["item"] for o in new.page_all()] == ["old", "new"]

    assert v1.get(f"/orders/{old_order['id']}").status_code == 200
    unreadable = v1.get(f"/orders/{new_order['id']}")  # rolled back: v1 can't read what the new one wrote
    assert unreadable.status_code == 500
    assert "internal error" in unreadable.json()["error"]
    assert v1.get("/orders").status_code == 500

    assert new.patch(f"/orders/{old_order['id']}", json={"status": "shipped"}).status_code == 200
    assert v1.get(f"/orders/{old_order['id']}").status_code == 500  # rewritten in the new format


def test_rename_field_answers_product_instead_of_item(launch: Launcher) -> None:
    v1, renamed = launch.orders("v1"), launch.orders("v2-rename-field")
    order = renamed.create("tea")  # requests still say `item`
    assert order["product"] == "tea"
    assert "item" not in order
    assert renamed.get(f"/orders/{order['id']}").json() == order
    assert v1.get(f"/orders/{order['id']}").json()["item"] == "tea"  # same data, old name
    assert "product" in renamed.get("/orders").json()["items"][0]


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("POST", {"item": "x" * 41, "quantity": 1}),
        ("POST", {"item": "tea", "quantity": 101}),
        ("POST", {"item": "x" * 200, "quantity": 1000}),
        ("PATCH", {"quantity": 500}),
    ],
)
def test_strict_validation_rejects_what_v1_accepts(
    launch: Launcher, method: str, body: dict[str, Any]
) -> None:
    v1, strict = launch.orders("v1"), launch.orders("v2-strict-validation")
    for app, expected in ((v1, 201 if method == "POST" else 200), (strict, 422)):
        path = "/orders" if method == "POST" else f"/orders/{app.create()['id']}"
        response = app.request(method, path, json=body)
        assert response.status_code == expected, f"{app.version}: {response.status_code} {response.text}"
    assert strict.create("x" * 40, 100)["quantity"] == 100


@pytest.mark.parametrize("version", ["v1", "v2-cursor-format", "v2-storage-format"])
def test_provider_states(launch: Launcher, version: str) -> None:
    app = launch.orders(version)
    app.create()
    cleared = app.state("no orders exist")
    assert cleared.status_code == 200
    assert cleared.json()["deleted"] == 1
    assert app.get("/orders").json()["items"] == []

    order_id = "6d1b8a2e-4f3c-4b5a-9c7d-0e1f2a3b4c5d"
    for _ in range(2):  # setting a state twice replaces the order
        assert app.state("an order exists", id=order_id, item="cake", quantity=3).json()["id"] == order_id
    order = app.get(f"/orders/{order_id}").json()
    assert (order["id"], order["item"], order["quantity"], order["status"]) == (
        order_id,
        "cake",
        3,
        "pending",
    )
    assert app.state("an order exists").status_code == 200  # all params optional

    several = app.state("several orders exist", count=7, page_size=5).json()
    assert len(several["ids"]) == 7
    cursor = several["next_cursor"]  # in this version's own format
    page = app.get("/orders", params={"limit": 5, "cursor": cursor})
    assert [o["id"] for o in page.json()["items"]] == several["ids"][5:]
    assert app.state("several orders exist").json()["next_cursor"] is not None  # default: 12 orders

    assert app.state("an order exists", action="teardown").status_code == 200
    assert app.post("/_compat/provider-states", json={"state": "", "action": "setup"}).status_code == 200
    unknown = app.state("a unicorn exists")
    assert unknown.status_code == 400
    assert "several orders exist" in unknown.json()["error"]
    assert unknown.json()["known_states"] == ["an order exists", "no orders exist", "several orders exist"]
    assert app.state("an order exists", quantity="lots").status_code == 400


def test_sigterm_stops_both_services_cleanly(launch: Launcher) -> None:
    orders = launch.orders("v2")
    web = launch.web("v1", orders)
    orders.get("/orders")  # leave a keep-alive connection open
    for app in (web, orders):
        started = time.monotonic()
        assert launch.stop(app) == 0, app.logs()  # SIGTERM -> exit status 0: a clean shutdown
        assert time.monotonic() - started < 3
        assert "stopped" in app.logs()


# -- web -------------------------------------------------------------------------------------------------


def test_web_v1_over_orders_v1(launch: Launcher) -> None:
    orders = launch.orders("v1")
    web = launch.web("v1", orders)
    placed = web.post("/api/checkout", json={"item": "coffee", "quantity": 2})
    assert placed.status_code == 201
    order = placed.json()["order"]
    assert set(order) == {"id", "item", "quantity", "status"}
    assert (order["item"], order["quantity"], order["status"]) == ("coffee", 2, "pending")
    assert web.get(f"/api/orders/{order['id']}").json() == {"order": order}
    assert orders.get(f"/orders/{order['id']}").json()["item"] == "coffee"

    for n in range(6):
        orders.create(f"more-{n}")
    first = web.get("/api/orders").json()
    assert len(first["orders"]) == 5
    assert first["next"]
    second = web.get("/api/orders", params={"cursor": first["next"]}).json()
    assert [o["item"] for o in second["orders"]] == ["more-4", "more-5"]
    assert second["next"] is None

    missing = web.get("/api/orders/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    rejected = web.post("/api/checkout", json={"item": "coffee", "quantity": 0})
    assert rejected.status_code == 422
    assert "quantity" in rejected.json()["error"]
    assert web.post("/api/checkout", data=b"{").status_code == 400
    bad_cursor = web.get("/api/orders", params={"cursor": "garbage"})
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["error"] == "invalid cursor"


def test_web_health_does_not_need_orders_and_its_api_reports_502(launch: Launcher) -> None:
    web = launch.web("v1", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert web.get("/health").status_code == 200
    for response in (web.get("/api/orders"), web.post("/api/checkout", json={"item": "tea", "quantity": 1})):
        assert response.status_code == 502
        assert response.json()["upstream_status"] is None
        assert "unreachable" in response.json()["error"]
    unconfigured = launch.web("v1", orders=None)
    assert unconfigured.get("/health").status_code == 200
    assert unconfigured.get("/api/orders").status_code == 502


def test_web_forwards_x_compat_headers_and_maps_upstream_failures(
    launch: Launcher, stub_orders: StubOrders
) -> None:
    web = launch.web("v1", stub_orders.url)
    headers = {"X-Compat-Trace": "trace-1", "X-Other": "private", "Authorization": "Bearer secret"}
    assert web.get("/api/orders", params={"cursor": "c1"}, headers=headers).status_code == 200
    method, target, sent = stub_orders.requests[-1]
    assert (method, target) == ("GET", "/orders?limit=5&cursor=c1")  # what the Pact contract says web sends
    assert sent["X-Compat-Trace"] == "trace-1"
    assert sent["Accept"] == "application/json"
    assert "X-Other" not in sent
    assert "Authorization" not in sent

    for answer, upstream_status in (
        ((503, b"{}"), 503),
        ((200, b"not json"), 200),
        ((200, b'{"items": 1}'), 200),
    ):
        stub_orders.answer = answer
        failed = web.get("/api/orders")
        assert failed.status_code == 502, answer
        assert failed.json()["upstream_status"] == upstream_status
    stub_orders.answer = (
        404,
        b'{"error": "no such endpoint"}',
    )  # orders lost POST /orders: not the client's fault
    assert web.post("/api/checkout", json={"item": "tea", "quantity": 1}).status_code == 502


def test_web_v2_adds_links_and_works_against_production_orders(launch: Launcher) -> None:
    web = launch.web("v2", launch.orders("v1"))
    order = web.post("/api/checkout", json={"item": "tea", "quantity": 1}).json()["order"]
    shown = web.get(f"/api/orders/{order['id']}")
    assert shown.status_code == 200
    assert shown.json() == {"order": order, "links": {"self": f"/api/orders/{order['id']}"}}


@pytest.mark.parametrize(("orders_version", "expected"), [("v1", 502), ("v2", 200)])
def test_web_needs_history_only_works_against_orders_v2(
    launch: Launcher, orders_version: str, expected: int
) -> None:
    web = launch.web("v2-needs-history", launch.orders(orders_version))
    placed = web.post("/api/checkout", json={"item": "tea", "quantity": 1})
    assert placed.status_code == 201  # checkout and the list don't need the new endpoint
    assert web.get("/api/orders").status_code == 200
    shown = web.get(f"/api/orders/{placed.json()['order']['id']}")
    assert shown.status_code == expected, shown.text
    if expected == 502:
        assert shown.json()["upstream_status"] == 404
        assert "/history" in shown.json()["error"]
    else:
        assert shown.json()["history"] == [{"at": shown.json()["history"][0]["at"], "status": "pending"}]


def test_web_v1_cannot_use_orders_with_a_renamed_field(launch: Launcher) -> None:
    web = launch.web("v1", launch.orders("v2-rename-field"))
    failed = web.post("/api/checkout", json={"item": "tea", "quantity": 1})
    assert failed.status_code == 502
    assert "item" in failed.json()["error"]
    assert failed.json()["upstream_status"] == 201


# -- the contract ----------------------------------------------------------------------------------------


def test_the_pact_file_is_v3_between_web_and_orders_with_states_orders_knows(launch: Launcher) -> None:
    pact = json.loads(PACT.read_text())
    assert pact["metadata"]["pactSpecification"]["version"] == "3.0.0"
    assert (pact["consumer"]["name"], pact["provider"]["name"]) == ("web", "orders")
    known = set(launch.orders("v1").state("?").json()["known_states"])
    states = {s["name"] for i in pact["interactions"] for s in i.get("providerStates", [])}
    assert states <= known
    assert 4 <= len(pact["interactions"]) <= 6


@pytest.mark.parametrize(
    ("version", "passes"),
    [
        ("v1", True),
        ("v2", True),
        ("v2-cursor-format", True),
        ("v2-storage-format", True),
        ("v2-rename-field", False),
    ],
)
def test_the_pact_verifies_against_orders(launch: Launcher, version: str, passes: bool) -> None:
    from pact import Verifier

    orders = launch.orders(version)
    verifier = (
        Verifier("orders", host="127.0.0.1")
        .add_transport(url=orders.url)
        .add_source(PACT)
        .state_handler(f"{orders.url}/_compat/provider-states", teardown=True, body=True)
    )
    try:
        verifier.verify()
        verified = True
    except RuntimeError:
        verified = False
    mismatches = json.dumps(verifier.results.get("errors", []))
    assert verified is passes, mismatches
    if not passes:
        assert "missing the following keys: item" in mismatches
