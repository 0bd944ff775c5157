"""The yoyo check: pagination walks and create/read/update chains under yoyo vs sticky.

Unit tests drive the walk and chain logic with a fake session object (two in-process "versions" of a
small API, answering in turn like the router's yoyo policy does); integration tests run the check on the
bundled example in a real onebox topology (process runtime for speed, Docker as the issue demands).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from compat.checks._noise import NoiseRules
from compat.checks._openapi import Resolver
from compat.checks._spec_ops import Examples, operations, paginations, resources
from compat.checks.yoyo import _Flow, _judge, judge_walk, run_chain, walk

from .conftest import REPO

# -- a fake two-version API -------------------------------------------------------------------------------


@dataclass
class Version:
    """How one version behaves: its cursor format, and optional planted faults."""

    name: str
    cursor: str = "after"  # "after": "a.<n>"; "offset": "o.<n>"; each version rejects the other's
    ignore_cursor: bool = False  # answers page 1 whatever the cursor (duplicates)
    drop_member: str | None = None  # reads lack this member
    next_as: str = "cursor"  # "cursor" | "url" | "link"
    endless: bool = False
    shift: int = 0  # reads a cursor this many items off (-1: repeats an item, 1: skips one)


@dataclass
class FakeApp:
    items: list[dict[str, Any]] = field(default_factory=list)

    def handle(
        self, v: Version, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        if path == "/things" and method == "GET":
            size = int(query.get("limit", "10"))
            start = 0
            if "cursor" in query and not v.ignore_cursor:
                kind, _, n = query["cursor"].partition(".")
                if kind != v.cursor[0]:
                    return 400, {}, {"error": "invalid cursor"}
                start = int(n) + v.shift
            page = self.items[start : start + size]
            more = v.endless or start + size < len(self.items)
            token = f"{v.cursor[0]}.{start + size}" if more else None
            body_out: dict[str, Any] = {"items": page, "next_cursor": None}
            headers: dict[str, str] = {}
            if token and v.next_as == "cursor":
                body_out["next_cursor"] = token
            elif token and v.next_as == "url":
                body_out["next_cursor"] = f"http://internal-name:8080/things?limit={size}&cursor={token}"
            elif token:
                headers["Link"] = f'</things?limit={size}&cursor={token}>; rel="next"'
            return 200, headers, body_out
        if path == "/things" and method == "POST":
            thing = {"id": f"t{len(self.items)}", **body}
            self.items.append(thing)
            return 201, {"Location": f"/things/{thing['id']}"}, thing
        if path.startswith("/things/"):
            found = next((t for t in self.items if t["id"] == path.rsplit("/", 1)[1]), None)
            if found is None:
                return 404, {}, {"error": "no such thing"}
            if method == "PATCH":
                found.update(body)
            shown = {k: val for k, val in found.items() if k != v.drop_member}
            return 200, {}, shown
        return 404, {}, {"error": "no such endpoint"}


class FakeClient:
    """Enough of ``ServiceClient`` for the check: ``request()`` answered by the versions in turn."""

    def __init__(self, app: FakeApp, versions: list[Version], policy: str = "yoyo") -> None:
        self.app = app
        self.turn: Iterator[Version] = itertools.cycle(versions)
        self.base_url = "http://router.test/"
        self.headers = {"X-Compat-Session": f"s-{policy}", "X-Compat-Policy": policy}
        self.sent = 0

    def request(self, method: str, url: str, params: Any = None, json: Any = None) -> requests.Response:
        version = next(self.turn)
        full = url if "://" in url else self.base_url.rstrip("/") + url
        prepared = requests.Request(method, full, params=params, json=json, headers=self.headers).prepare()
        split = urlsplit(prepared.url)
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        status, headers, body = self.app.handle(version, method, split.path, query, json)
        self.sent += 1
        response = requests.Response()
        response.status_code = status
        response._content = _dumps(body)
        response.headers = CaseInsensitiveDict(
            {
                "Content-Type": "application/json",
                "X-Compat-Upstream": f"things-{version.name}-0",
                "X-Compat-Version": version.name,
                **headers,
            }
        )
        response.request = prepared
        response.url = str(prepared.url)
        return response


def _dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


THING = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "id": {"type": "string", "readOnly": True},
        "name": {"type": "string"},
        "size": {"type": "integer"},
    },
}
SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "things", "version": "1"},
    "paths": {
        "/things": {
            "get": {
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "page",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "items": {"type": "array", "items": THING},
                                        "next_cursor": {"type": "string", "nullable": True},
                                    },
                                }
                            }
                        },
                    }
                },
            },
            "post": {
                "requestBody": {"content": {"application/json": {"schema": THING}}},
                "responses": {
                    "201": {"description": "made", "content": {"application/json": {"schema": THING}}}
                },
            },
        },
        "/things/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "responses": {
                    "200": {"description": "one", "content": {"application/json": {"schema": THING}}}
                }
            },
            "patch": {
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1, "maximum": 9}},
                            }
                        }
                    }
                },
                "responses": {
                    "200": {"description": "done", "content": {"application/json": {"schema": THING}}}
                },
            },
        },
    },
}
PAGE = paginations(SPEC)[0]
RESOURCE = resources(operations(SPEC))[0]


def app_with(n: int) -> FakeApp:
    return FakeApp([{"id": f"t{i}", "name": f"thing {i}"} for i in range(n)])


def do_walk(app: FakeApp, versions: list[Version], **kw: Any) -> Any:
    return walk(
        FakeClient(app, versions),
        PAGE,
        page_size=kw.pop("page_size", 2),
        max_pages=kw.pop("max_pages", 50),
        **kw,
    )


# -- walks ------------------------------------------------------------------------------------------------


def test_a_walk_across_compatible_versions_sees_every_item_once() -> None:
    result = do_walk(app_with(5), [Version("v1"), Version("v2")])
    assert result.pages == 3
    assert result.keys == [f"id=t{i}" for i in range(5)]
    assert result.versions() == ["v1", "v2"]
    assert [s.label for s in result.steps] == ["page 1", "page 2 (cursor from v1)", "page 3 (cursor from v2)"]
    assert judge_walk(result, {f"id=t{i}" for i in range(5)}) == []


def test_a_cursor_the_other_version_rejects_fails_the_page_and_names_who_answered() -> None:
    result = do_walk(app_with(5), [Version("v1"), Version("v2-cursor", cursor="offset")])
    assert result.failed is not None
    assert result.failed.label == "page 2 (cursor from v1)"
    assert result.failure.startswith("answered 400 by things-v2-cursor-0 (v2-cursor)")
    (problem,) = judge_walk(result, None)
    assert problem.rule == "pagination-page-failed"
    assert "page 2 (cursor from v1) answered 400 by things-v2-cursor-0 (v2-cursor)" in problem.summary
    # the same versions, one at a time (sticky), walk fine
    assert do_walk(app_with(5), [Version("v2-cursor", cursor="offset")]).failed is None


def test_duplicated_and_lost_items_are_found() -> None:
    everything = {f"id=t{i}" for i in range(6)}
    repeats = do_walk(app_with(6), [Version("v1"), Version("v2", shift=-1)])
    assert repeats.duplicates() == ["id=t1", "id=t4"]  # v2 reads each of its two cursors one back
    assert [p.rule for p in judge_walk(repeats, everything)] == ["pagination-item-duplicated"]
    skips = do_walk(app_with(6), [Version("v1"), Version("v2", shift=1)])
    (lost,) = judge_walk(skips, everything)
    assert lost.rule == "pagination-item-lost"
    assert "id=t2" in lost.actual
    assert judge_walk(skips, None) == []  # the control walk is the reference: never judged for loss


def test_a_version_ignoring_the_cursor_loops_until_max_pages_with_duplicates() -> None:
    result = do_walk(app_with(6), [Version("v1"), Version("v2", ignore_cursor=True)], max_pages=8)
    assert result.truncated
    assert [p.rule for p in judge_walk(result, None)] == ["pagination-item-duplicated"]


def test_a_page_without_the_items_array_fails() -> None:
    class Broken(FakeApp):
        def handle(self, v: Version, method: str, path: str, query: dict[str, str], body: Any) -> Any:
            status, headers, out = super().handle(v, method, path, query, body)
            if v.name == "v2" and "cursor" in query:
                return status, headers, {"rows": out["items"]}
            return status, headers, out

    result = walk(
        FakeClient(Broken(app_with(5).items), [Version("v1"), Version("v2")]), PAGE, page_size=2, max_pages=9
    )
    assert result.failed is not None
    assert "without the items array (items)" in result.failure


@pytest.mark.parametrize("how", ["url", "link"])
def test_next_urls_and_link_headers_are_followed_on_our_own_base_url(how: str) -> None:
    client = FakeClient(app_with(5), [Version("v1", next_as=how)])
    result = walk(client, PAGE, page_size=2, max_pages=9)
    assert result.failed is None
    assert len(result.keys) == 5
    assert all(s.url.startswith("http://router.test/things") for s in result.steps)


def test_a_walk_stops_at_max_pages() -> None:
    result = do_walk(app_with(3), [Version("v1", endless=True)], page_size=1, max_pages=4)
    assert result.truncated
    assert result.pages == 4
    assert judge_walk(result, {"id=t0", "id=t77"}) == []  # a truncated walk is never judged for lost items


# -- chains -----------------------------------------------------------------------------------------------


def chain(versions: list[Version]) -> Any:
    examples = Examples(Resolver(SPEC, "t"), seed=3)
    return run_chain(FakeClient(FakeApp(), versions), RESOURCE, examples, Resolver(SPEC, "t"), NoiseRules())


def test_a_chain_across_compatible_versions_passes_and_alternates() -> None:
    result = chain([Version("v1"), Version("v2")])
    assert result.rule is None
    assert [s.label for s in result.steps] == [
        "create",
        "read after create",
        "patch (PATCH /things/{id})",
        "read after patch",
    ]
    assert [s.version for s in result.steps] == ["v1", "v2", "v1", "v2"]


def test_a_read_that_does_not_show_what_was_written_is_a_mismatch() -> None:
    result = chain([Version("v1"), Version("v2", drop_member="size")])
    assert result.rule == "chain-read-mismatch"
    assert result.failed is not None
    assert result.failed.label == "read after patch"
    assert result.operation == "GET /things/{id}"
    assert "$.size: written" in result.problem


def test_a_failing_step_stops_the_chain() -> None:
    class NoPatch(FakeApp):
        def handle(self, v: Version, method: str, path: str, query: dict[str, str], body: Any) -> Any:
            if method == "PATCH":
                return 405, {}, {"error": "nope"}
            return super().handle(v, method, path, query, body)

    examples = Examples(Resolver(SPEC, "t"), seed=3)
    result = run_chain(
        FakeClient(NoPatch(), [Version("v1")]), RESOURCE, examples, Resolver(SPEC, "t"), NoiseRules()
    )
    assert result.rule == "chain-step-failed"
    assert len(result.steps) == 3
    assert "answered 405" in result.problem


# -- judging yoyo against sticky --------------------------------------------------------------------------


def fake_ctx() -> Any:
    return SimpleNamespace(
        stage="onebox",
        seed=11,
        config=SimpleNamespace(redact_headers=("X-Token",)),
        versions=lambda service: {service: "v1+v2"},
    )


def test_failing_under_yoyo_only_is_an_error_that_says_sticky_passes() -> None:
    bad = do_walk(app_with(5), [Version("v1"), Version("v2", cursor="offset")])
    good = do_walk(app_with(5), [Version("v1")])
    yo = _Flow(
        "yoyo",
        "s-yoyo",
        bad.steps,
        [(p.rule, p.summary, p.step, p.expected, p.actual) for p in judge_walk(bad, None)],
    )
    co = _Flow("sticky", "s-sticky", good.steps, [])
    (finding,) = _judge(fake_ctx(), "things", PAGE.operation.key, "walk GET /things", yo, co)
    assert finding.level == "ERR"
    assert finding.rule == "pagination-page-failed"
    assert "passes under sticky" in finding.message
    assert "page 2 (cursor from v1) answered 400 by things-v2-0 (v2)" in finding.message
    assert finding.curl is not None
    assert "cursor=a.2" in finding.curl
    assert finding.details["steps"][1].startswith("page 2 (cursor from v1): GET")
    assert finding.details["control"]["passed"] is True
    assert finding.seed == 11


def test_failing_under_sticky_too_is_a_warning() -> None:
    bad = do_walk(app_with(5), [Version("v1"), Version("v2", cursor="offset")])
    problems = [(p.rule, p.summary, p.step, p.expected, p.actual) for p in judge_walk(bad, None)]
    yo = _Flow("yoyo", "a", bad.steps, problems)
    co = _Flow("sticky", "b", bad.steps, problems)
    (finding,) = _judge(fake_ctx(), "things", PAGE.operation.key, "walk GET /things", yo, co)
    assert finding.level == "WARN"
    assert "fails under sticky too: not a mixed-version problem" in finding.message


# -- on the bundled example -------------------------------------------------------------------------------


def onebox(candidate: str, runtime: str) -> Iterator[Any]:
    from compat.session import CompatSession, Options, resolve_config

    opts = Options(
        config=REPO / "compat.toml",
        candidates={"orders": candidate},
        runtime=runtime,
        stages=("onebox",),
        checks=("yoyo", "data"),
    )
    session = CompatSession(resolve_config(REPO, opts), opts, echo=lambda s: None)
    try:
        run = next(r for r in session.runs() if r.id == "onebox")
        yield session.stage_context(run)
    finally:
        session.close()


def _check_cursor_format(ctx: Any) -> None:
    from compat.checks.yoyo import run_yoyo

    result = run_yoyo(ctx, "orders")
    errors = [f for f in result.findings if f.level == "ERR"]
    assert [f.rule for f in errors] == ["pagination-page-failed"], [f.render() for f in result.findings]
    finding = errors[0]
    assert finding.operation == "GET /orders"
    assert "passes under sticky" in finding.message
    assert "v2-cursor-format" in finding.message
    assert "answered 400 by orders-" in finding.message
    assert finding.details["control"]["passed"] is True
    assert finding.curl is not None
    assert "cursor=" in finding.curl
    assert result.metrics["pages walked"] >= 3
    assert result.metrics["flows"] == 2


def _check_compatible(ctx: Any) -> None:
    from compat.checks.data import run_data
    from compat.checks.yoyo import run_yoyo

    yoyo = run_yoyo(ctx, "orders")
    assert yoyo.findings == [], [f.render() for f in yoyo.findings]
    assert yoyo.metrics["pages walked"] >= 3 * 3  # control, yo-yo and the second control, >= min_pages each
    data = run_data(ctx, "orders")
    assert data.findings == [], [f.render() for f in data.findings]
    assert data.metrics["writes"] == 4  # POST and PATCH, by v1 and v2


@pytest.fixture(scope="module")
def process_cursor_format() -> Iterator[Any]:
    yield from onebox("v2-cursor-format", "process")


@pytest.fixture(scope="module")
def process_compatible() -> Iterator[Any]:
    yield from onebox("v2", "process")


def test_process_cursor_format_is_caught_by_yoyo_and_sticky_passes(process_cursor_format: Any) -> None:
    _check_cursor_format(process_cursor_format)


def test_process_compatible_v2_gives_no_yoyo_and_no_data_finding(process_compatible: Any) -> None:
    _check_compatible(process_compatible)


def _docker_onebox(docker_client: Any, candidate: str) -> Iterator[Any]:
    from .conftest import managed_resources

    for ctx in onebox(candidate, "docker"):
        run_id = ctx.topology.runtime.context.run_id
        assert managed_resources(docker_client, **{"io.pytest-compat.run": run_id})["containers"]
        yield ctx
    assert managed_resources(docker_client, **{"io.pytest-compat.run": run_id}) == {
        "containers": [],
        "networks": [],
        "volumes": [],
    }


@pytest.fixture(scope="module")
def docker_cursor_format(docker_client: Any) -> Iterator[Any]:
    yield from _docker_onebox(docker_client, "v2-cursor-format")


@pytest.fixture(scope="module")
def docker_compatible(docker_client: Any) -> Iterator[Any]:
    yield from _docker_onebox(docker_client, "v2")


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_docker_cursor_format_is_caught_by_yoyo_and_sticky_passes(docker_cursor_format: Any) -> None:
    _check_cursor_format(docker_cursor_format)


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_docker_compatible_v2_gives_no_yoyo_and_no_data_finding(docker_compatible: Any) -> None:
    _check_compatible(docker_compatible)
