"""The data check: write with one version, read with every version, and again after a rollback.

Unit tests judge reads directly and run the whole matrix against two tiny in-process HTTP servers that
share a dict (``v2`` stores records in a form ``v1`` cannot read); integration tests run it on the bundled
example's storage-format break in onebox and through a rollback (process runtime, and Docker).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from compat.checks._noise import NoiseRules
from compat.checks._spec_ops import Exchange, operations, resources
from compat.checks.data import Write, judge_later_read, judge_read, plans, run_data, shape

from .conftest import REPO


def read(status: int | None, body: Any, *, is_json: bool = True) -> Exchange:
    return Exchange(
        "read back", "GET", "http://box/things/1", {}, None, status, {}, body, is_json, "box-0 (v1)", "v1"
    )


WRITTEN = {"id": "1", "name": "a", "size": 2, "extra": {"deep": 1}}


def test_a_read_showing_the_written_members_passes_whatever_the_shapes() -> None:
    control = shape({"id": "1", "name": "a", "size": 2})
    assert (
        judge_read(
            WRITTEN, read(200, {"id": "1", "name": "a", "size": 2, "new": None}), control, NoiseRules()
        )
        is None
    )


def test_a_member_the_readers_control_shows_but_this_read_lacks_is_a_mismatch() -> None:
    control = shape({"id": "1", "name": "a", "size": 2})
    verdict = judge_read(WRITTEN, read(200, {"id": "1", "size": 2}), control, NoiseRules())
    assert verdict is not None
    rule, problem, diffs = verdict
    assert rule == "read-mismatch"
    assert diffs == ['$.name: writer has "a", reader lacks it']
    assert "answered 200 by box-0 (v1) but" in problem


def test_different_values_are_a_mismatch_unless_declared_noise() -> None:
    verdict = judge_read(WRITTEN, read(200, {"id": "1", "name": "b", "size": 2}), None, NoiseRules())
    assert verdict is not None
    assert verdict[0] == "read-mismatch"
    assert verdict[2] == ['$.name: writer "a" != reader "b"']
    assert (
        judge_read(WRITTEN, read(200, {"id": "1", "name": "b"}), None, NoiseRules(ignore=("$.name",))) is None
    )


@pytest.mark.parametrize(
    ("exchange", "why"),
    [
        (read(500, {"error": "boom"}), 'answered 500 by box-0 (v1): {"error":"boom"}'),
        (read(200, "<html>", is_json=False), "answered 200 by box-0 (v1) with a body that is not JSON"),
        (
            Exchange("read back", "GET", "u", {}, None, error="ConnectionError: refused"),
            "failed (ConnectionError: refused)",
        ),
    ],
)
def test_failed_reads(exchange: Exchange, why: str) -> None:
    assert judge_read(WRITTEN, exchange, None, NoiseRules()) == ("read-failed", why, [])


GET_ONE = {"responses": {"200": {"description": "one"}}}


def earlier_write(body: Any) -> Write:
    return Write(
        "orders",
        "POST /things",
        "GET /things/{id}",
        "/things/1",
        "v2",
        "things-v2-0",
        "rollback:1-mixed",
        body,
    )


def test_a_later_step_tolerates_changes_others_made_but_not_broken_reads() -> None:
    noise = NoiseRules()
    write = earlier_write({"id": "1", "status": "pending"})
    changed = read(200, {"id": "1", "status": "shipped"})  # someone shipped it since: not a finding
    assert judge_later_read(write, "v1", {"v1": changed}, {"$.id", "$.status"}, noise) is None
    broken = read(500, {"error": "cannot decode row"})
    rule, _, _ = judge_later_read(write, "v1", {"v1": broken}, None, noise)  # type: ignore[misc]
    assert rule == "read-failed"
    lacking = read(200, {"id": "1"})  # the reader shows `status` for its own writes, not for this one
    assert judge_later_read(write, "v1", {"v1": lacking}, {"$.id", "$.status"}, noise)[0] == "read-mismatch"  # type: ignore[index]


def test_a_later_step_notes_a_resource_gone_everywhere_but_flags_one_gone_in_one_version() -> None:
    noise = NoiseRules()
    write = earlier_write({"id": "1"})
    gone = read(404, {"error": "not found"})
    note = judge_later_read(write, "v1", {"v1": gone}, None, noise)
    assert isinstance(note, str)
    assert "deleted since? not judged" in note
    found = read(200, {"id": "1"})
    verdict = judge_later_read(write, "v1", {"v1": gone, "v2": found}, None, noise)
    assert isinstance(verdict, tuple)
    assert verdict[0] == "read-failed"
    disagree = judge_later_read(
        write,
        "v1",
        {"v1": read(200, {"id": "1", "qty": 1}), "v2": read(200, {"id": "1", "qty": 2})},
        None,
        noise,
    )
    assert isinstance(disagree, tuple)
    assert "disagrees with v2" in disagree[1]


def test_plans_note_every_write_that_cannot_be_read_back() -> None:
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/things": {"post": GET_ONE},
            "/things/{id}": {"get": GET_ONE, "patch": GET_ONE, "put": GET_ONE},
            "/logs": {"post": GET_ONE},  # nothing to read it with
            "/blobs/{id}": {"put": GET_ONE},  # no read, no create
            "/tags/{id}": {"get": GET_ONE, "patch": GET_ONE},  # no create
        },
    }
    ops = operations(doc)
    todo, notes = plans(ops, resources(ops), limit=2)
    assert [(p.write.key, p.update) for p in todo] == [("POST /things", False), ("PUT /things/{id}", True)]
    assert notes == [
        "PATCH /things/{id}: not exercised (max_operations 2 reached)",
        "POST /logs: no item path with a GET to read what it writes; not checked",
        "PUT /blobs/{id}: no GET /blobs/{id} to read what it writes; not checked",
        "PATCH /tags/{id}: no POST (collection) to create a tag to update; not checked",
    ]


# -- the matrix against two tiny servers ------------------------------------------------------------------

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "things", "version": "1"},
    "paths": {
        "/things": {
            "post": {
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}},
                            }
                        }
                    }
                },
                "responses": {"201": {"description": "made"}},
            }
        },
        "/things/{id}": {
            "get": {"responses": {"200": {"description": "one"}}},
            "patch": {
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1, "maximum": 5}},
                            }
                        }
                    }
                },
                "responses": {"200": {"description": "done"}},
            },
        },
    },
}


@dataclass
class Box:
    name: str
    url: str


class Store:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()


def serve(version: str, store: Store) -> ThreadingHTTPServer:
    """``v2*`` writes rows as {"packed": json}; v1 cannot read those (500), v2 reads both."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, body: Any, **headers: str) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Service-Version", version)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self) -> Any:
            return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

        def show(self, ident: str) -> Any:
            row = store.rows[ident]
            if "packed" in row:
                if version == "v1":
                    raise KeyError("name")
                row = json.loads(row["packed"])
            out = {"id": ident, **row}
            if version != "v1":
                out["extra"] = None  # a v2-only member
            return out

        def save(self, ident: str, row: dict[str, Any]) -> None:
            store.rows[ident] = {"packed": json.dumps(row)} if version != "v1" else row

        def do_POST(self) -> None:
            with store.lock:
                ident = f"t{len(store.rows)}"
                self.save(ident, {"name": self.body()["name"]})
                self.answer(201, self.show(ident), Location=f"/things/{ident}")

        def do_GET(self) -> None:
            ident = self.path.rsplit("/", 1)[1]
            if ident not in store.rows:
                return self.answer(404, {"error": "not found"})
            try:
                self.answer(200, self.show(ident))
            except KeyError:
                self.answer(500, {"error": "cannot decode row"})

        def do_PATCH(self) -> None:
            ident = self.path.rsplit("/", 1)[1]
            with store.lock:
                current = self.show(ident)
                row = {k: v for k, v in {**current, **self.body()}.items() if k not in ("id", "extra")}
                self.save(ident, row)
                self.answer(200, self.show(ident))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def boxes() -> Iterator[dict[str, Box]]:
    store = Store()
    servers = {v: serve(v, store) for v in ("v1", "v2-packed")}
    try:
        yield {v: Box(f"things-{v}-0", f"http://127.0.0.1:{s.server_address[1]}") for v, s in servers.items()}
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


def fake_ctx(stage: str, present: dict[str, Box], data: dict[str, object]) -> Any:
    return SimpleNamespace(
        stage=stage,
        seed=5,
        data=data,
        noise=NoiseRules(),
        config=SimpleNamespace(redact_headers=()),
        spec=lambda service: SPEC,
        spec_path=lambda service: None,
        option=lambda check, name: {"max_operations": 20}[name],
        by_version=lambda service: {v: [b] for v, b in present.items()},
    )


def test_the_matrix_names_writer_and_reader_of_an_unreadable_write(boxes: dict[str, Box]) -> None:
    result = run_data(fake_ctx("onebox", boxes, {}), "things")
    assert result.metrics["writes"] == 4
    assert result.metrics["reads"] == 8
    assert {(f.rule, f.level, f.versions["things"]) for f in result.findings} == {
        ("read-failed", "ERR", "v2-packed -> v1")
    }
    assert len(result.findings) == 2  # what POST and PATCH wrote
    finding = result.findings[0]
    assert finding.message.startswith(
        "written by things@v2-packed (things-v2-packed-0), read by things@v1 (things-v1-0): answered 500"
    )
    assert finding.details["writer"]["instance"] == "things-v2-packed-0"
    assert finding.details["reader"]["instance"] == "things-v1-0"
    assert finding.details["write"]["response"]["status"] == 201
    assert finding.curl is not None
    assert boxes["v1"].url in finding.curl


def test_earlier_writes_are_read_back_by_the_versions_present_later(boxes: dict[str, Box]) -> None:
    data: dict[str, object] = {}
    before = run_data(fake_ctx("rollback:0-before", {"v1": boxes["v1"]}, data), "things")
    assert before.findings == []
    upgraded = run_data(
        fake_ctx("rollback:2-after-upgrade", {"v2-packed": boxes["v2-packed"]}, data), "things"
    )
    assert upgraded.findings == []  # v2 reads v1's rows
    assert upgraded.metrics["earlier writes read"] == 2
    after = run_data(fake_ctx("rollback:3-after-rollback", {"v1": boxes["v1"]}, data), "things")
    assert after.metrics["earlier writes read"] == 4
    assert len(after.findings) == 2
    assert {f.versions["things"] for f in after.findings} == {"v2-packed -> v1"}
    message = after.findings[0].message
    assert "written by things@v2-packed (things-v2-packed-0) in rollback:2-after-upgrade" in message
    assert "read by things@v1 (things-v1-0) in rollback:3-after-rollback: answered 500" in message
    assert len({f.id for f in after.findings}) == 2


def test_writes_that_cannot_be_made_are_noted(boxes: dict[str, Box]) -> None:
    ctx = fake_ctx("onebox", {"v1": boxes["v1"]}, {})
    ctx.spec = lambda service: {**SPEC, "paths": {**SPEC["paths"], "/audit": {"post": GET_ONE}}}
    result = run_data(ctx, "things")
    assert "POST /audit: no item path with a GET to read what it writes; not checked" in result.notes


# -- on the bundled example -------------------------------------------------------------------------------


def session_for(candidate: str, runtime: str, stage: str) -> Any:
    from compat.session import CompatSession, Options, resolve_config

    opts = Options(
        config=REPO / "compat.toml",
        candidates={"orders": candidate},
        runtime=runtime,
        stages=(stage,),
        checks=("data",),
    )
    return CompatSession(resolve_config(REPO, opts), opts, echo=lambda s: None)


def check_onebox_storage_format(runtime: str) -> None:
    session = session_for("v2-storage-format", runtime, "onebox")
    try:
        ctx = session.stage_context(next(r for r in session.runs() if r.id == "onebox"))
        result = run_data(ctx, "orders")
    finally:
        session.close()
    assert result.findings, result.notes
    assert {(f.rule, f.level, f.versions["orders"]) for f in result.findings} == {
        ("read-failed", "ERR", "v2-storage-format -> v1")
    }, [f.render() for f in result.findings]
    assert {f.details["location"] for f in result.findings} == {"POST /orders", "PATCH /orders/{id}"}
    message = result.findings[0].message
    assert message.startswith(
        "written by orders@v2-storage-format (orders-v2-storage-format-0), read by orders@v1 (orders-v1-"
    )
    assert ": answered 500" in message


def check_rollback_storage_format(runtime: str) -> dict[str, Any]:
    session = session_for("v2-storage-format", runtime, "rollback")
    results = {}
    try:
        for run in session.runs():  # in order: the fleet changes in place, the database is kept
            results[run.id] = run_data(session.stage_context(run), "orders")
    finally:
        session.close()
    assert list(results) == [
        "rollback:0-before",
        "rollback:1-mixed",
        "rollback:2-after-upgrade",
        "rollback:3-after-rollback",
    ]
    assert results["rollback:0-before"].findings == []
    assert results["rollback:2-after-upgrade"].findings == []  # the candidate reads everything
    after = results["rollback:3-after-rollback"]
    assert after.metrics["versions"] == ["v1"]
    assert after.findings
    for finding in after.findings:
        assert finding.rule == "read-failed"
        assert finding.level == "ERR"
        assert finding.versions == {"orders": "v2-storage-format -> v1"}
        assert finding.details["writer"]["stage"] in ("rollback:1-mixed", "rollback:2-after-upgrade")
        assert " in rollback:3-after-rollback: answered 500" in finding.message
    written_by = {f.details["writer"]["stage"] for f in after.findings}
    assert written_by == {"rollback:1-mixed", "rollback:2-after-upgrade"}
    return results


def test_process_storage_format_is_caught_naming_writer_and_reader() -> None:
    check_onebox_storage_format("process")


def test_process_rollback_reports_the_candidates_writes_unreadable_by_v1() -> None:
    results = check_rollback_storage_format("process")
    mixed = results["rollback:1-mixed"]
    assert {f.versions["orders"] for f in mixed.findings} == {"v2-storage-format -> v1"}


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_docker_storage_format_is_caught_naming_writer_and_reader(docker_client: Any) -> None:
    check_onebox_storage_format("docker")


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_docker_rollback_reports_the_candidates_writes_unreadable_by_v1(docker_client: Any) -> None:
    check_rollback_storage_format("docker")
