"""compat.checks._spec_ops: operations, resources, ids, pagination and example values from small specs."""

from __future__ import annotations

from typing import Any

import pytest

from compat.checks._openapi import Resolver, load_spec
from compat.checks._spec_ops import (
    Examples,
    match_path,
    next_link,
    operations,
    pagination,
    paginations,
    resource_id,
    resources,
)

from .conftest import REPO


def spec(paths: dict[str, Any], schemas: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas or {}},
    }


def ok(schema: Any, code: str = "200", **extra: Any) -> dict[str, Any]:
    return {code: {"description": "ok", "content": {"application/json": {"schema": schema}}, **extra}}


def q(name: str, schema: Any = None, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema or {"type": "string"}}


THING = {"type": "object", "properties": {"thing_id": {"type": "string"}, "name": {"type": "string"}}}


def test_operations_follow_refs_merge_path_parameters_and_read_links() -> None:
    doc = spec(
        {
            "/things/{thingId}": {
                "parameters": [{"$ref": "#/components/parameters/Id"}],
                "get": {"operationId": "getThing", "parameters": [q("expand")], "responses": ok(THING)},
            },
            "/things": {
                "post": {
                    "operationId": "makeThing",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": THING}}},
                    "responses": ok(
                        THING,
                        "201",
                        headers={"Location": {"schema": {"type": "string"}}},
                        links={
                            "Get": {
                                "operationId": "getThing",
                                "parameters": {"thingId": "$response.body#/thing_id"},
                            }
                        },
                    ),
                }
            },
        }
    )
    doc["components"]["parameters"] = {"Id": {"name": "thingId", "in": "path", "schema": {"type": "string"}}}
    ops = {op.key: op for op in operations(doc)}
    read = ops["GET /things/{thingId}"]
    assert [(p.name, p.location, p.required) for p in read.parameters] == [
        ("thingId", "path", True),
        ("expand", "query", False),
    ]
    create = ops["POST /things"]
    assert create.success == "201"
    assert create.body_required
    assert create.response_headers == ("location",)
    assert set(create.links) == {"Get"}


def test_resources_pair_collection_and_item_and_skip_nested_collections() -> None:
    get = {"responses": ok(THING)}
    doc = spec(
        {
            "/things": {"get": {"responses": ok({"type": "array", "items": THING})}, "post": get},
            "/things/{id}": {"get": get, "patch": get, "put": get},
            "/widgets/{wid}": {"put": get},  # no collection
            "/users/{uid}/things/{tid}": {"get": get},  # needs a parent
        }
    )
    found = {r.item: r for r in resources(operations(doc))}
    assert set(found) == {"/things/{id}", "/widgets/{wid}"}
    things = found["/things/{id}"]
    assert things.collection == "/things"
    assert things.listing is not None
    assert things.create is not None
    assert things.read is not None
    assert [u.method for u in things.updates] == ["PATCH", "PUT"]
    assert things.id_members() == ["id", "thing_id", "thingId"]
    widgets = found["/widgets/{wid}"]
    assert widgets.collection is None
    assert widgets.create is None
    assert widgets.read is None


def _things(links: dict[str, Any] | None = None, param: str = "id") -> Any:
    post = {"operationId": "make", "responses": ok(THING, "201", **({"links": links} if links else {}))}
    doc = spec(
        {
            "/v1/things": {"post": post},
            f"/v1/things/{{{param}}}": {"get": {"operationId": "get", "responses": ok(THING)}},
        }
    )
    return resources(operations(doc))[0]


def test_new_ids_come_from_links_then_location_then_a_body_member() -> None:
    linked = _things({"Read": {"operationId": "get", "parameters": {"id": "$response.body#/data/key"}}})
    got = resource_id(linked, {"Location": "/v1/things/from-header"}, {"data": {"key": "k-1"}, "id": "x"})
    assert (got.value, got.how) == ("k-1", "links (Read: $response.body#/data/key)")
    by_header = _things({"Read": {"operationId": "get", "parameters": {"id": "$response.header.X-New-Id"}}})
    assert resource_id(by_header, {"x-new-id": "h-7"}, {}).value == "h-7"
    plain = _things()
    located = resource_id(plain, {"Location": "https://api.example.com/base/v1/things/a%20b"}, {"id": "x"})
    assert (located.value, located.how) == ("a b", "Location header")
    assert resource_id(plain, {}, {"thingId": 5}).value == "5"
    assert resource_id(_things(param="thing_id"), {}, {"thing_id": "t-1", "name": "n"}).value == "t-1"
    missing = resource_id(plain, {"Location": "/elsewhere/1"}, {"name": "n"})
    assert missing.value is None
    assert "no id" in missing.how
    assert "thing_id" in missing.how


def test_match_path_accepts_a_base_path_prefix() -> None:
    assert match_path("/things/{id}", "/api/things/42") == {"id": "42"}
    assert match_path("/things/{id}", "/things/42/parts") is None


def test_orders_spec_pages_by_next_cursor_and_limit() -> None:
    doc = load_spec(REPO / "fixtures/orders/openapi/v1.yaml")
    (page,) = paginations(doc)
    assert page.operation.key == "GET /orders"
    assert (page.items, page.cursor, page.cursor_param, page.size_param) == (
        ("items",),
        ("next_cursor",),
        "cursor",
        "limit",
    )
    assert not page.next_is_url
    assert page.items_of({"items": [1], "next_cursor": None}) == [1]
    assert page.cursor_of({"items": [], "next_cursor": "abc"}) == "abc"


@pytest.mark.parametrize(
    ("response", "params", "expected"),
    [
        pytest.param(
            {
                "type": "object",
                "properties": {
                    "data": {"type": "array", "items": THING},
                    "nextPageToken": {"type": "string"},
                },
            },
            [q("pageToken"), q("pageSize", {"type": "integer"})],
            (("data",), ("nextPageToken",), "pageToken", "pageSize", False),
            id="google-style",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/T"}},
                    "meta": {"type": "object", "properties": {"continuation": {"type": "string"}}},
                },
            },
            [q("continuation"), q("per_page", {"type": "integer"})],
            (("results",), ("meta", "continuation"), "continuation", "per_page", False),
            id="nested-continuation",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {
                    "items": {"type": "array", "items": THING},
                    "links": {"type": "object", "properties": {"next": {"type": "string", "format": "uri"}}},
                },
            },
            [q("size", {"type": "integer"})],
            (("items",), ("links", "next"), None, "size", True),
            id="links-next-url",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {
                    "entries": {"type": "array", "items": THING},
                    "_links": {
                        "type": "object",
                        "properties": {
                            "next": {"type": "object", "properties": {"href": {"type": "string"}}}
                        },
                    },
                },
            },
            [],
            (("entries",), ("_links", "next"), None, None, True),
            id="hal",
        ),
        pytest.param(
            {
                "type": "object",
                "properties": {
                    "data": {"type": "array", "items": THING},
                    "has_more": {"type": "boolean"},
                    "next_cursor": {"type": "string", "nullable": True},
                },
            },
            [q("starting_after"), q("limit", {"type": "integer"})],
            (("data",), ("next_cursor",), "starting_after", "limit", False),
            id="stripe-style",
        ),
    ],
)
def test_pagination_shapes(response: Any, params: list[Any], expected: tuple[Any, ...]) -> None:
    doc = spec({"/t": {"get": {"parameters": params, "responses": ok(response)}}}, {"T": THING})
    page = pagination(operations(doc)[0], Resolver(doc, "t"))
    assert page is not None
    assert (page.items, page.cursor, page.cursor_param, page.size_param, page.next_is_url) == expected


def test_link_header_paging_of_a_top_level_array_and_lists_that_do_not_page() -> None:
    link = ok({"type": "array", "items": THING}, headers={"Link": {"schema": {"type": "string"}}})
    doc = spec(
        {
            "/linked": {"get": {"parameters": [q("per_page")], "responses": link}},
            "/flat": {"get": {"responses": ok({"type": "array", "items": THING})}},
            "/one": {"get": {"responses": ok(THING)}},
            "/tags": {
                "get": {
                    "responses": ok(
                        {
                            "type": "object",
                            "properties": {
                                "tags": {"type": "array", "items": {"type": "string"}},
                                "next": {"type": "string"},
                            },
                        }
                    )
                }
            },
        }
    )
    found = {p.operation.path: p for p in paginations(doc)}
    assert set(found) == {"/linked"}
    assert found["/linked"].link_header
    assert found["/linked"].items == ()
    assert found["/linked"].size_param == "per_page"


def test_next_link_reads_rel_next_among_others() -> None:
    header = '<https://x/items?page=1>; rel="prev", <https://x/items?page=3>; rel="next last"'
    assert next_link({"Link": header}) == "https://x/items?page=3"
    assert next_link({"link": "</a?p=2>; rel=next"}) == "/a?p=2"
    assert next_link({"Link": '<https://x/?p=1>; rel="first"'}) is None
    assert next_link({}) is None


SCHEMAS = {
    "New": {
        "type": "object",
        "required": ["name", "qty", "kind", "when", "ref"],
        "properties": {
            "id": {"type": "string", "readOnly": True},
            "name": {"type": "string", "minLength": 3, "maxLength": 12},
            "qty": {"type": "integer", "minimum": 5, "maximum": 7},
            "kind": {"$ref": "#/components/schemas/Kind"},
            "when": {"type": "string", "format": "date-time"},
            "ref": {"type": "string", "format": "uuid"},
            "fixed": {"const": "c"},
            "hint": {"type": "string", "example": "an example"},
            "size": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "flag": {"type": "boolean", "default": True},
            "nested": {
                "allOf": [{"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}]
            },
        },
    },
    "Kind": {"type": "string", "enum": ["a", "b", "c"]},
}


def test_examples_satisfy_required_members_bounds_enums_and_formats() -> None:
    doc = spec({}, SCHEMAS)
    examples = Examples(Resolver(doc, "t"), seed=42)
    ref = {"$ref": "#/components/schemas/New"}
    first = examples.body(ref)
    assert set(first) == {"name", "qty", "kind", "when", "ref"}  # required only, never readOnly `id`
    assert 3 <= len(first["name"]) <= 12
    assert first["name"].startswith("compat-42-") or first["name"].endswith("42-1")
    assert 5 <= first["qty"] <= 7
    assert first["kind"] in ("a", "b", "c")
    assert first["when"].endswith("Z")
    assert len(first["ref"]) == 36
    full = examples.body(ref, full=True)
    assert "id" not in full
    assert full["fixed"] == "c"
    assert full["hint"] == "an example"
    assert full["flag"] is True
    assert 0 < full["size"] <= 1
    assert len(full["tags"]) == 2
    assert full["nested"] == {"n": full["nested"]["n"]}
    assert full["name"] != first["name"]  # every body is a new variant


def test_examples_are_deterministic_per_seed_and_distinct_per_call() -> None:
    doc = spec({}, SCHEMAS)
    ref = {"$ref": "#/components/schemas/New"}
    run1 = [Examples(Resolver(doc, "t"), seed=7).body(ref) for _ in range(1)]
    again = Examples(Resolver(doc, "t"), seed=7)
    bodies = [again.body(ref) for _ in range(3)]
    assert bodies[0] == run1[0]
    assert len({b["name"] for b in bodies}) == 3
    assert Examples(Resolver(doc, "t"), seed=8).body(ref)["name"] != bodies[0]["name"]
    assert {b["kind"] for b in bodies} == {"a", "b", "c"}  # enum members in turn


def test_orders_example_bodies_are_valid_for_the_orders_app() -> None:
    doc = load_spec(REPO / "fixtures/orders/openapi/v1.yaml")
    examples = Examples(Resolver(doc, "v1"), seed=0)
    body = examples.body({"$ref": "#/components/schemas/NewOrder"})
    assert set(body) == {"item", "quantity"}
    assert 1 <= body["quantity"] <= 1000
    patch = examples.body({"$ref": "#/components/schemas/OrderPatch"}, full=True)
    assert set(patch) == {"status", "quantity"}
    assert patch["status"] in ("pending", "shipped", "cancelled")
