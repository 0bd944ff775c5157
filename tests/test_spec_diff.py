"""The static OpenAPI spec-diff check: rule by rule on minimal spec pairs, then on the bundled example."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from compat.checks.finding import Finding
from compat.checks.spec_diff import RULES, diff_main, diff_specs, load_spec, render_table
from compat.errors import ConfigError, UsageError

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "fixtures" / "orders" / "openapi"
TODAY = dt.date(2026, 6, 1)


def op_spec(
    *,
    path: str = "/orders",
    method: str = "post",
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    body_required: bool = False,
    media: str = "application/json",
    response: dict[str, Any] | None = None,
    status: str = "200",
    op_extra: dict[str, Any] | None = None,
    schemas: dict[str, Any] | None = None,
    version: str = "3.0.3",
) -> dict[str, Any]:
    """A one-operation OpenAPI document."""
    op: dict[str, Any] = {"responses": {status: {"description": "ok"}}}
    if params is not None:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {media: {"schema": body}}}
    if response is not None:
        op["responses"][status]["content"] = {"application/json": {"schema": response}}
    op.update(op_extra or {})
    doc: dict[str, Any] = {
        "openapi": version,
        "info": {"title": "t", "version": "1"},
        "paths": {path: {method: op}},
    }
    if schemas is not None:
        doc["components"] = {"schemas": schemas}
    return doc


def obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    return schema


def param(
    name: str, schema: dict[str, Any], *, where: str = "query", required: bool = False
) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema}


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[Finding]:
    return diff_specs(old, new, old_name="old.yaml", new_name="new.yaml", today=TODAY)


def only(findings: list[Finding], rule: str) -> Finding:
    assert [f.rule for f in findings] == [rule], render_table(findings)
    return findings[0]


STR = {"type": "string"}
INT = {"type": "integer"}

# (id, old request property schema of `item`, new one, rule) -- the property sits in a POST body
REQUEST_PROPERTY_CASES = [
    ("type", STR, INT, "request-property-type-changed"),
    ("not-nullable-30", {"type": "string", "nullable": True}, STR, "request-property-became-not-nullable"),
    ("enum", STR, {"type": "string", "enum": ["a"]}, "request-property-became-enum"),
    (
        "enum-removed",
        {"type": "string", "enum": ["a", "b"]},
        {"type": "string", "enum": ["a"]},
        "request-property-enum-value-removed",
    ),
    (
        "max-length",
        {"type": "string", "maxLength": 200},
        {"type": "string", "maxLength": 40},
        "request-property-max-length-decreased",
    ),
    ("max-length-set", STR, {"type": "string", "maxLength": 40}, "request-property-max-length-set"),
    (
        "min-length",
        {"type": "string", "minLength": 1},
        {"type": "string", "minLength": 3},
        "request-property-min-length-increased",
    ),
    ("min-length-set", STR, {"type": "string", "minLength": 3}, "request-property-min-length-increased"),
    (
        "max",
        {"type": "integer", "maximum": 1000},
        {"type": "integer", "maximum": 100},
        "request-property-max-decreased",
    ),
    ("max-set", INT, {"type": "integer", "maximum": 100}, "request-property-max-set"),
    (
        "min",
        {"type": "integer", "minimum": 1},
        {"type": "integer", "minimum": 5},
        "request-property-min-increased",
    ),
    ("min-set", INT, {"type": "integer", "minimum": 5}, "request-property-min-set"),
    (
        "min-items",
        {"type": "array", "items": STR, "minItems": 1},
        {"type": "array", "items": STR, "minItems": 2},
        "request-property-min-items-increased",
    ),
    (
        "min-items-set",
        {"type": "array", "items": STR},
        {"type": "array", "items": STR, "minItems": 2},
        "request-property-min-items-set",
    ),
    ("pattern-added", STR, {"type": "string", "pattern": "^[a-z]+$"}, "request-property-pattern-added"),
    (
        "pattern-changed",
        {"type": "string", "pattern": "^[a-z]+$"},
        {"type": "string", "pattern": "^[a-c]+$"},
        "request-property-pattern-changed",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [c[1:] for c in REQUEST_PROPERTY_CASES],
    ids=[c[0] for c in REQUEST_PROPERTY_CASES],
)
def test_request_property_rules(old: dict[str, Any], new: dict[str, Any], rule: str) -> None:
    finding = only(diff(op_spec(body=obj(item=old)), op_spec(body=obj(item=new))), rule)
    assert finding.check == "spec-diff"
    assert finding.level == RULES[rule]
    assert finding.operation == "POST /orders"
    assert "'item'" in finding.message
    assert "requestBody/content/application~1json/schema/properties/item" in finding.message


def test_request_property_levels_follow_oasdiff() -> None:
    assert RULES["request-property-max-length-decreased"] == "ERR"
    assert RULES["request-property-max-length-set"] == "WARN"
    assert RULES["request-property-pattern-changed"] == "WARN"
    assert RULES["response-property-enum-value-added"] == "WARN"
    assert RULES["response-non-success-status-removed"] == "INFO"


def test_request_property_not_nullable_31_type_list() -> None:
    old = op_spec(body=obj(item={"type": ["string", "null"]}), version="3.1.0")
    new = op_spec(body=obj(item={"type": "string"}), version="3.1.0")
    finding = only(diff(old, new), "request-property-became-not-nullable")
    assert finding.level == "ERR"
    assert "'item'" in finding.message


def test_request_property_values_in_expected_and_actual() -> None:
    old = op_spec(body=obj(item={"type": "string", "maxLength": 200}))
    new = op_spec(body=obj(item={"type": "string", "maxLength": 40}))
    finding = only(diff(old, new), "request-property-max-length-decreased")
    assert (finding.expected, finding.actual) == ("200", "40")
    assert "from 200 to 40" in finding.message
    assert finding.versions == {"spec": "old.yaml -> new.yaml"}


def test_new_required_request_property() -> None:
    finding = only(
        diff(op_spec(body=obj(item=STR)), op_spec(body=obj(("qty",), item=STR, qty=INT))),
        "new-required-request-property",
    )
    assert (finding.level, finding.operation) == ("ERR", "POST /orders")
    assert "'qty'" in finding.message


def test_request_property_became_required() -> None:
    finding = only(
        diff(op_spec(body=obj(item=STR)), op_spec(body=obj(("item",), item=STR))),
        "request-property-became-required",
    )
    assert finding.level == "ERR"
    assert "'item'" in finding.message
    assert (finding.expected, finding.actual) == ("optional", "required")


def test_request_property_removed_is_a_warning() -> None:
    finding = only(
        diff(op_spec(body=obj(item=STR, note=STR)), op_spec(body=obj(item=STR))), "request-property-removed"
    )
    assert finding.level == "WARN"
    assert "'note'" in finding.message


def test_nested_request_property_is_reported_with_its_path() -> None:
    old = op_spec(body=obj(address=obj(zip={"type": "string", "maxLength": 10})))
    new = op_spec(body=obj(address=obj(zip={"type": "string", "maxLength": 5})))
    finding = only(diff(old, new), "request-property-max-length-decreased")
    assert "'address/zip'" in finding.message
    assert "properties/address/properties/zip/maxLength" in finding.message


def test_request_property_in_array_items() -> None:
    old = op_spec(body=obj(lines={"type": "array", "items": obj(sku=STR)}))
    new = op_spec(body=obj(lines={"type": "array", "items": obj(("sku",), sku=STR)}))
    finding = only(diff(old, new), "request-property-became-required")
    assert "'lines/sku'" in finding.message


def test_request_body_root_type_changed() -> None:
    finding = only(
        diff(op_spec(body=obj(item=STR)), op_spec(body={"type": "array", "items": STR})),
        "request-body-type-changed",
    )
    assert finding.level == "ERR"
    assert "request body application/json" in finding.message


def test_request_body_root_max_length() -> None:
    old = op_spec(body={"type": "string", "maxLength": 10}, media="text/plain")
    new = op_spec(body={"type": "string", "maxLength": 5}, media="text/plain")
    finding = only(diff(old, new), "request-body-max-length-decreased")
    assert "text/plain" in finding.message


def test_request_body_root_enum_value_removed() -> None:
    old = op_spec(body={"type": "string", "enum": ["a", "b"]})
    new = op_spec(body={"type": "string", "enum": ["b"]})
    finding = only(diff(old, new), "request-body-enum-value-removed")
    assert '"a"' not in finding.message
    assert "enum value a removed" in finding.message


def test_request_body_became_required() -> None:
    finding = only(
        diff(op_spec(body=obj(item=STR)), op_spec(body=obj(item=STR), body_required=True)),
        "request-body-became-required",
    )
    assert (finding.level, finding.operation) == ("ERR", "POST /orders")
    assert "request body" in finding.message


def test_request_body_added_required() -> None:
    finding = only(
        diff(op_spec(), op_spec(body=obj(item=STR), body_required=True)), "request-body-added-required"
    )
    assert finding.level == "ERR"
    assert "request body" in finding.message


def test_request_body_removed() -> None:
    finding = only(diff(op_spec(body=obj(item=STR)), op_spec()), "request-body-removed")
    assert "request body" in finding.message


def test_request_body_media_type_removed() -> None:
    finding = only(
        diff(op_spec(body=obj(item=STR)), op_spec(body=obj(item=STR), media="application/xml")),
        "request-body-media-type-removed",
    )
    assert finding.level == "ERR"
    assert "'application/json'" in finding.message


# (id, old parameter, new parameter or None, rule)
PARAMETER_CASES = [
    (
        "became-required",
        param("limit", INT),
        param("limit", INT, required=True),
        "request-parameter-became-required",
    ),
    ("type", param("limit", INT), param("limit", STR), "request-parameter-type-changed"),
    (
        "enum-removed",
        param("limit", {"type": "string", "enum": ["a", "b"]}),
        param("limit", {"type": "string", "enum": ["b"]}),
        "request-parameter-enum-value-removed",
    ),
    (
        "became-enum",
        param("limit", STR),
        param("limit", {"type": "string", "enum": ["b"]}),
        "request-parameter-became-enum",
    ),
    (
        "max",
        param("limit", {"type": "integer", "maximum": 100}),
        param("limit", {"type": "integer", "maximum": 10}),
        "request-parameter-max-decreased",
    ),
    (
        "min",
        param("limit", {"type": "integer", "minimum": 1}),
        param("limit", {"type": "integer", "minimum": 2}),
        "request-parameter-min-increased",
    ),
    (
        "max-length",
        param("limit", {"type": "string", "maxLength": 9}),
        param("limit", {"type": "string", "maxLength": 8}),
        "request-parameter-max-length-decreased",
    ),
    (
        "min-length",
        param("limit", {"type": "string", "minLength": 1}),
        param("limit", {"type": "string", "minLength": 2}),
        "request-parameter-min-length-increased",
    ),
    (
        "max-items",
        param("limit", {"type": "array", "items": STR, "maxItems": 5}),
        param("limit", {"type": "array", "items": STR, "maxItems": 2}),
        "request-parameter-max-items-decreased",
    ),
    (
        "pattern-added",
        param("limit", STR),
        param("limit", {"type": "string", "pattern": "^x"}),
        "request-parameter-pattern-added",
    ),
    (
        "pattern-changed",
        param("limit", {"type": "string", "pattern": "^x"}),
        param("limit", {"type": "string", "pattern": "^y"}),
        "request-parameter-pattern-changed",
    ),
    (
        "not-nullable",
        param("limit", {"type": "string", "nullable": True}),
        param("limit", STR),
        "request-parameter-became-not-nullable",
    ),
    ("removed", param("limit", INT), None, "request-parameter-removed"),
]


@pytest.mark.parametrize(
    ("old", "new", "rule"), [c[1:] for c in PARAMETER_CASES], ids=[c[0] for c in PARAMETER_CASES]
)
def test_request_parameter_rules(old: dict[str, Any], new: dict[str, Any] | None, rule: str) -> None:
    findings = diff(op_spec(method="get", params=[old]), op_spec(method="get", params=[new] if new else []))
    finding = only(findings, rule)
    assert finding.level == RULES[rule]
    assert finding.operation == "GET /orders"
    assert "'limit'" in finding.message
    assert "query parameter" in finding.message


def test_new_required_request_parameter() -> None:
    finding = only(
        diff(
            op_spec(method="get"),
            op_spec(method="get", params=[param("X-Tenant", STR, where="header", required=True)]),
        ),
        "new-required-request-parameter",
    )
    assert finding.level == "ERR"
    assert "header parameter 'X-Tenant'" in finding.message


def test_parameters_match_by_name_and_location() -> None:
    old = op_spec(method="get", params=[param("id", STR, where="query")])
    new = op_spec(method="get", params=[param("id", STR, where="header", required=True)])
    rules = sorted(f.rule for f in diff(old, new))
    assert rules == ["new-required-request-parameter", "request-parameter-removed"]


def test_path_level_parameters_are_compared() -> None:
    old = op_spec(path="/orders/{id}", method="get")
    new = copy.deepcopy(old)
    old["paths"]["/orders/{id}"]["parameters"] = [
        param("id", {"type": "string"}, where="path", required=True)
    ]
    new["paths"]["/orders/{id}"]["parameters"] = [
        param("id", {"type": "integer"}, where="path", required=True)
    ]
    finding = only(diff(old, new), "request-parameter-type-changed")
    assert finding.operation == "GET /orders/{id}"
    assert "path parameter 'id'" in finding.message


RESPONSE_PROPERTY_CASES = [
    ("type", STR, INT, "response-property-type-changed"),
    ("integer-to-number", INT, {"type": "number"}, "response-property-type-changed"),
    ("nullable-30", STR, {"type": "string", "nullable": True}, "response-property-became-nullable"),
    ("nullable-31", STR, {"type": ["string", "null"]}, "response-property-became-nullable"),
    (
        "enum-added",
        {"type": "string", "enum": ["a"]},
        {"type": "string", "enum": ["a", "b"]},
        "response-property-enum-value-added",
    ),
    (
        "max-length",
        {"type": "string", "maxLength": 5},
        {"type": "string", "maxLength": 9},
        "response-property-max-length-increased",
    ),
    ("max-length-unset", {"type": "string", "maxLength": 5}, STR, "response-property-max-length-unset"),
    (
        "max",
        {"type": "integer", "maximum": 5},
        {"type": "integer", "maximum": 9},
        "response-property-max-increased",
    ),
    (
        "min",
        {"type": "integer", "minimum": 5},
        {"type": "integer", "minimum": 1},
        "response-property-min-decreased",
    ),
    (
        "min-length",
        {"type": "string", "minLength": 5},
        {"type": "string", "minLength": 1},
        "response-property-min-length-decreased",
    ),
    (
        "min-items",
        {"type": "array", "items": STR, "minItems": 2},
        {"type": "array", "items": STR, "minItems": 1},
        "response-property-min-items-decreased",
    ),
    (
        "min-items-unset",
        {"type": "array", "items": STR, "minItems": 2},
        {"type": "array", "items": STR},
        "response-property-min-items-unset",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [c[1:] for c in RESPONSE_PROPERTY_CASES],
    ids=[c[0] for c in RESPONSE_PROPERTY_CASES],
)
def test_response_property_rules(old: dict[str, Any], new: dict[str, Any], rule: str) -> None:
    version = "3.1.0" if "null" in new.get("type", []) else "3.0.3"
    findings = diff(
        op_spec(method="get", response=obj(item=old), version=version),
        op_spec(method="get", response=obj(item=new), version=version),
    )
    finding = only(findings, rule)
    assert finding.level == RULES[rule]
    assert finding.operation == "GET /orders"
    assert "'item'" in finding.message
    assert "responses/200/content/application~1json/schema/properties/item" in finding.message


def test_response_required_property_removed() -> None:
    old = op_spec(method="get", response=obj(("id", "item"), id=STR, item=STR))
    new = op_spec(method="get", response=obj(("id",), id=STR))
    finding = only(diff(old, new), "response-required-property-removed")
    assert finding.level == "ERR"
    assert "'item'" in finding.message
    assert "response 200 application/json" in finding.message


def test_response_optional_property_removed_is_a_warning() -> None:
    finding = only(
        diff(
            op_spec(method="get", response=obj(id=STR, note=STR)), op_spec(method="get", response=obj(id=STR))
        ),
        "response-optional-property-removed",
    )
    assert finding.level == "WARN"
    assert "'note'" in finding.message


def test_response_property_became_optional() -> None:
    finding = only(
        diff(
            op_spec(method="get", response=obj(("item",), item=STR)),
            op_spec(method="get", response=obj(item=STR)),
        ),
        "response-property-became-optional",
    )
    assert finding.level == "ERR"
    assert "'item'" in finding.message


def test_response_nested_property_in_array_items() -> None:
    page = obj(("items",), items={"type": "array", "items": obj(("item",), item=STR)})
    renamed = obj(("items",), items={"type": "array", "items": obj(("product",), product=STR)})
    finding = only(
        diff(op_spec(method="get", response=page), op_spec(method="get", response=renamed)),
        "response-required-property-removed",
    )
    assert "'items/item'" in finding.message


def test_response_body_type_changed() -> None:
    finding = only(
        diff(
            op_spec(method="get", response=obj(item=STR)),
            op_spec(method="get", response={"type": "array", "items": STR}),
        ),
        "response-body-type-changed",
    )
    assert "response 200 application/json" in finding.message


def test_response_body_became_nullable() -> None:
    finding = only(
        diff(
            op_spec(method="get", response=obj(item=STR)),
            op_spec(method="get", response={**obj(item=STR), "nullable": True}),
        ),
        "response-body-became-nullable",
    )
    assert finding.level == "ERR"


def test_response_success_status_removed() -> None:
    finding = only(diff(op_spec(status="201"), op_spec(status="202")), "response-success-status-removed")
    assert (finding.level, finding.operation) == ("ERR", "POST /orders")
    assert "201" in finding.message


def test_response_non_success_status_removed_is_info() -> None:
    old = op_spec()
    old["paths"]["/orders"]["post"]["responses"]["422"] = {"description": "invalid"}
    finding = only(diff(old, op_spec()), "response-non-success-status-removed")
    assert finding.level == "INFO"
    assert "422" in finding.message


def test_response_media_type_removed() -> None:
    old = op_spec(method="get", response=obj(item=STR))
    new = copy.deepcopy(old)
    content = new["paths"]["/orders"]["get"]["responses"]["200"]["content"]
    content["application/xml"] = content.pop("application/json")
    finding = only(diff(old, new), "response-media-type-removed")
    assert finding.level == "ERR"
    assert "'application/json'" in finding.message


def two_operations() -> dict[str, Any]:
    doc = op_spec(method="get")
    doc["paths"]["/orders"]["post"] = {"responses": {"201": {"description": "created"}}}
    return doc


def test_api_path_removed_without_deprecation() -> None:
    old = op_spec(path="/legacy", method="get")
    finding = only(diff(old, {**old, "paths": {}}), "api-path-removed-without-deprecation")
    assert (finding.level, finding.operation) == ("ERR", "GET /legacy")
    assert "/legacy" in finding.message


def test_api_removed_without_deprecation() -> None:
    finding = only(diff(two_operations(), op_spec(method="get")), "api-removed-without-deprecation")
    assert (finding.level, finding.operation) == ("ERR", "POST /orders")
    assert "POST /orders" in finding.message


def deprecated(sunset: object | None) -> dict[str, Any]:
    doc = two_operations()
    doc["paths"]["/orders"]["post"]["deprecated"] = True
    if sunset is not None:
        doc["paths"]["/orders"]["post"]["x-sunset"] = sunset
    return doc


def test_api_removed_after_sunset_is_allowed() -> None:
    finding = only(diff(deprecated("2026-01-01"), op_spec(method="get")), "api-removed-with-deprecation")
    assert finding.level == "INFO"
    assert not finding.blocking


def test_api_removed_after_sunset_given_as_a_yaml_date() -> None:
    finding = only(
        diff(deprecated(dt.date(2026, 1, 1)), op_spec(method="get")), "api-removed-with-deprecation"
    )
    assert finding.level == "INFO"


def test_api_removed_before_sunset() -> None:
    finding = only(diff(deprecated("2027-01-01"), op_spec(method="get")), "api-removed-before-sunset")
    assert finding.level == "ERR"
    assert "2027-01-01" in finding.message


def test_api_path_removed_deprecated_without_sunset_is_info() -> None:
    old = op_spec(path="/legacy", method="get", op_extra={"deprecated": True})
    finding = only(diff(old, {**old, "paths": {}}), "api-path-removed-with-deprecation")
    assert finding.level == "INFO"


def test_api_removed_with_unparsable_sunset() -> None:
    finding = only(diff(deprecated("soon"), op_spec(method="get")), "api-path-sunset-parse")
    assert finding.level == "ERR"
    assert "'soon'" in finding.message


# -- changes that break nobody ----------------------------------------------------------------------------

NON_BREAKING = [
    ("optional-request-property-added", op_spec(body=obj(item=STR)), op_spec(body=obj(item=STR, note=STR))),
    ("request-property-became-optional", op_spec(body=obj(("item",), item=STR)), op_spec(body=obj(item=STR))),
    (
        "request-enum-value-added",
        op_spec(body=obj(s={"type": "string", "enum": ["a"]})),
        op_spec(body=obj(s={"type": "string", "enum": ["a", "b"]})),
    ),
    (
        "request-bounds-loosened",
        op_spec(
            body=obj(
                s={"type": "string", "minLength": 3, "maxLength": 5},
                n={"type": "integer", "minimum": 1, "maximum": 5},
                a={"type": "array", "items": STR, "minItems": 2, "maxItems": 3},
            )
        ),
        op_spec(
            body=obj(
                s={"type": "string", "minLength": 1, "maxLength": 50},
                n={"type": "integer", "minimum": 0},
                a={"type": "array", "items": STR},
            )
        ),
    ),
    ("request-integer-to-number", op_spec(body=obj(n=INT)), op_spec(body=obj(n={"type": "number"}))),
    (
        "request-became-nullable",
        op_spec(body=obj(n=INT)),
        op_spec(body=obj(n={"type": "integer", "nullable": True})),
    ),
    (
        "request-pattern-removed",
        op_spec(body=obj(s={"type": "string", "pattern": "^a"})),
        op_spec(body=obj(s=STR)),
    ),
    ("request-body-became-optional", op_spec(body=obj(s=STR), body_required=True), op_spec(body=obj(s=STR))),
    ("optional-request-body-added", op_spec(), op_spec(body=obj(s=STR))),
    ("optional-parameter-added", op_spec(method="get"), op_spec(method="get", params=[param("q", STR)])),
    (
        "read-only-required-property-added",
        op_spec(body=obj(item=STR)),
        op_spec(body=obj(("id",), item=STR, id={"type": "string", "readOnly": True})),
    ),
    (
        "response-property-added",
        op_spec(method="get", response=obj(("id",), id=STR)),
        op_spec(method="get", response=obj(("id", "note"), id=STR, note=STR)),
    ),
    (
        "response-property-became-required",
        op_spec(method="get", response=obj(id=STR)),
        op_spec(method="get", response=obj(("id",), id=STR)),
    ),
    (
        "response-enum-value-removed",
        op_spec(method="get", response=obj(s={"type": "string", "enum": ["a", "b"]})),
        op_spec(method="get", response=obj(s={"type": "string", "enum": ["a"]})),
    ),
    (
        "response-bounds-tightened",
        op_spec(method="get", response=obj(s={"type": "string", "maxLength": 9})),
        op_spec(method="get", response=obj(s={"type": "string", "maxLength": 3, "minLength": 1})),
    ),
    (
        "response-became-not-nullable",
        op_spec(method="get", response=obj(s={"type": "string", "nullable": True})),
        op_spec(method="get", response=obj(s=STR)),
    ),
    (
        "response-number-to-integer",
        op_spec(method="get", response=obj(n={"type": "number"})),
        op_spec(method="get", response=obj(n=INT)),
    ),
    ("new-operation", op_spec(method="get"), two_operations()),
    (
        "status-added",
        op_spec(status="200"),
        op_spec(status="200")
        | {
            "paths": {
                "/orders": {
                    "post": {"responses": {"200": {"description": "ok"}, "409": {"description": "conflict"}}}
                }
            }
        },
    ),
]


@pytest.mark.parametrize(("old", "new"), [c[1:] for c in NON_BREAKING], ids=[c[0] for c in NON_BREAKING])
def test_non_breaking_changes_yield_nothing(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert diff(old, new) == [], render_table(diff(old, new))


def test_new_path_yields_nothing() -> None:
    old = op_spec(method="get")
    new = copy.deepcopy(old)
    new["paths"]["/orders/{id}/history"] = {"get": {"responses": {"200": {"description": "ok"}}}}
    assert diff(old, new) == []


def test_path_parameter_renaming_is_not_a_removal() -> None:
    old = op_spec(
        path="/orders/{id}",
        method="get",
        params=[param("id", STR, where="path", required=True)],
        response=obj(item=STR),
    )
    new = op_spec(
        path="/orders/{orderId}",
        method="get",
        params=[param("orderId", STR, where="path", required=True)],
        response=obj(item=STR),
    )
    assert diff(old, new) == []


def test_path_parameter_renaming_still_compares_the_operation() -> None:
    old = op_spec(path="/orders/{id}", method="get", response=obj(("item",), item=STR))
    new = op_spec(path="/orders/{orderId}", method="get", response=obj(item=STR))
    finding = only(diff(old, new), "response-property-became-optional")
    assert finding.operation == "GET /orders/{orderId}"


# -- $ref, allOf, recursion -------------------------------------------------------------------------------


def with_refs(max_length: int, version: str = "3.0.3") -> dict[str, Any]:
    doc = op_spec(
        body={"$ref": "#/components/schemas/NewOrder"},
        version=version,
        schemas={
            "NewOrder": obj(item={"$ref": "#/components/schemas/Item"}),
            "Item": {"$ref": "#/components/schemas/Text"},
            "Text": {"type": "string", "maxLength": max_length},
        },
    )
    return doc


@pytest.mark.parametrize("version", ["3.0.3", "3.1.0"])
def test_refs_are_resolved(version: str) -> None:
    finding = only(
        diff(with_refs(200, version), with_refs(40, version)), "request-property-max-length-decreased"
    )
    assert "'item'" in finding.message


def test_refs_31_with_null_in_type_list() -> None:
    old = op_spec(
        method="get",
        response={"$ref": "#/components/schemas/Order"},
        version="3.1.0",
        schemas={"Order": obj(note={"type": "string"})},
    )
    new = op_spec(
        method="get",
        response={"$ref": "#/components/schemas/Order"},
        version="3.1.0",
        schemas={"Order": obj(note={"type": ["string", "null"]})},
    )
    finding = only(diff(old, new), "response-property-became-nullable")
    assert "'note'" in finding.message


def test_refs_to_parameters_request_bodies_and_responses() -> None:
    def doc(limit_max: int, item_type: str) -> dict[str, Any]:
        spec = op_spec()
        spec["paths"]["/orders"]["post"] = {
            "parameters": [{"$ref": "#/components/parameters/Limit"}],
            "requestBody": {"$ref": "#/components/requestBodies/New"},
            "responses": {"200": {"$ref": "#/components/responses/Ok"}},
        }
        spec["components"] = {
            "parameters": {"Limit": param("limit", {"type": "integer", "maximum": limit_max})},
            "requestBodies": {"New": {"content": {"application/json": {"schema": obj(item=STR)}}}},
            "responses": {
                "Ok": {
                    "description": "ok",
                    "content": {"application/json": {"schema": obj(item={"type": item_type})}},
                }
            },
        }
        return spec

    rules = sorted(f.rule for f in diff(doc(100, "string"), doc(10, "integer")))
    assert rules == ["request-parameter-max-decreased", "response-property-type-changed"]


def test_unresolvable_ref_is_a_config_error() -> None:
    new = op_spec(body={"$ref": "#/components/schemas/Missing"})
    with pytest.raises(
        ConfigError, match=r"new\.yaml: \$ref: unresolvable \$ref \(got '#/components/schemas/Missing'\)"
    ):
        diff(op_spec(body=obj(item=STR)), new)


def test_external_ref_is_a_config_error() -> None:
    new = op_spec(body={"$ref": "other.yaml#/Order"})
    with pytest.raises(ConfigError, match="only local"):
        diff(op_spec(body=obj(item=STR)), new)


def recursive(max_length: int) -> dict[str, Any]:
    return op_spec(
        body={"$ref": "#/components/schemas/Node"},
        schemas={
            "Node": obj(
                name={"type": "string", "maxLength": max_length},
                children={"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                other={"$ref": "#/components/schemas/Other"},
            ),
            "Other": obj(back={"$ref": "#/components/schemas/Node"}),
        },
    )


def test_recursive_schema_terminates() -> None:
    assert diff(recursive(10), recursive(10)) == []
    findings = diff(recursive(10), recursive(5))
    assert findings
    assert {f.rule for f in findings} == {"request-property-max-length-decreased"}
    assert any("'name'" in f.message for f in findings)


def test_self_referencing_all_of_terminates() -> None:
    schemas = {"A": {"allOf": [{"$ref": "#/components/schemas/A"}, obj(("x",), x=STR)]}}
    old = op_spec(method="get", response={"$ref": "#/components/schemas/A"}, schemas=schemas)
    new = op_spec(
        method="get",
        response={"$ref": "#/components/schemas/A"},
        schemas={"A": {"allOf": [{"$ref": "#/components/schemas/A"}, obj(x=STR)]}},
    )
    assert only(diff(old, new), "response-property-became-optional")


def test_all_of_parts_are_merged() -> None:
    def doc(extra_required: tuple[str, ...]) -> dict[str, Any]:
        return op_spec(
            body={"allOf": [{"$ref": "#/components/schemas/Base"}, obj(extra_required, qty=INT)]},
            schemas={"Base": obj(("item",), item={"type": "string", "maxLength": 9})},
        )

    finding = only(diff(doc(()), doc(("qty",))), "request-property-became-required")
    assert "'qty'" in finding.message
    old = op_spec(
        method="get",
        response={"allOf": [{"$ref": "#/components/schemas/Base"}]},
        schemas={"Base": obj(("item",), item=STR)},
    )
    new = op_spec(
        method="get",
        response={"allOf": [{"$ref": "#/components/schemas/Base"}]},
        schemas={"Base": obj(other=STR)},
    )
    assert "'item'" in only(diff(old, new), "response-required-property-removed").message


# -- load_spec --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        ("list.yaml", "- a\n- b\n", r"list\.yaml: not an OpenAPI document: the top level is a list"),
        ("empty.yaml", "", r"empty\.yaml: not an OpenAPI document: the top level is empty"),
        (
            "nokey.yaml",
            "info: {title: t}\npaths: {}\n",
            r"nokey\.yaml: not an OpenAPI document: no `openapi` key",
        ),
        (
            "swagger.yaml",
            "swagger: '2.0'\n",
            r"swagger\.yaml: swagger: unsupported OpenAPI version \(got '2\.0'\)",
        ),
        ("v2.yaml", "openapi: '2.0'\n", r"v2\.yaml: openapi: unsupported OpenAPI version \(got '2\.0'\)"),
        ("v4.yaml", "openapi: 4.0.0\n", r"v4\.yaml: openapi: unsupported OpenAPI version \(got '4\.0\.0'\)"),
        ("bad.yaml", "openapi: 3.0.3\npaths:\n  /a: [unclosed\n", r"bad\.yaml: invalid YAML at line 4"),
        ("bad.json", '{"openapi": "3.0.3",\n "paths": }', r"bad\.json: invalid JSON at line 2"),
        ("paths.yaml", "openapi: 3.0.3\npaths: [a]\n", r"paths\.yaml: paths: `paths` must be a mapping"),
    ],
)
def test_load_spec_errors(tmp_path: Path, name: str, text: str, pattern: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        load_spec(tmp_path / name)


def test_load_spec_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: OpenAPI spec not found"):
        load_spec(tmp_path / "nope.yaml")


def test_load_spec_reads_json_and_yaml(tmp_path: Path) -> None:
    doc = op_spec(version="3.1.0")
    (tmp_path / "a.json").write_text(json.dumps(doc))
    assert load_spec(tmp_path / "a.json") == doc
    assert load_spec(SPECS / "v1.yaml")["info"]["version"] == "v1"


# -- the bundled example ----------------------------------------------------------------------------------


def example(name: str) -> dict[str, Any]:
    return load_spec(SPECS / f"{name}.yaml")


def test_example_compatible_candidate_has_no_errors() -> None:
    assert [f for f in diff(example("v1"), example("v2")) if f.level == "ERR"] == []


def test_example_rename_field_is_an_error_about_item() -> None:
    errors = [f for f in diff(example("v1"), example("v2-rename-field")) if f.level == "ERR"]
    assert errors
    assert {f.rule for f in errors} == {"response-required-property-removed"}
    assert all("item'" in f.message for f in errors)
    assert {f.operation for f in errors} == {
        "GET /orders",
        "GET /orders/{id}",
        "PATCH /orders/{id}",
        "POST /orders",
    }


def test_example_strict_validation_errors_on_tightened_bounds() -> None:
    errors = [f for f in diff(example("v1"), example("v2-strict-validation")) if f.level == "ERR"]
    got = sorted((f.rule, f.operation) for f in errors)
    assert got == [
        ("request-property-max-decreased", "PATCH /orders/{id}"),
        ("request-property-max-decreased", "POST /orders"),
        ("request-property-max-length-decreased", "POST /orders"),
    ]
    assert any("'item'" in f.message and "from 200 to 40" in f.message for f in errors)
    assert any("'quantity'" in f.message and "from 1000 to 100" in f.message for f in errors)


def test_render_table() -> None:
    assert render_table([]) == "no breaking changes"
    findings = diff(example("v2"), example("v1"))
    table = render_table(findings).splitlines()
    assert table[0].split() == ["LEVEL", "RULE-ID", "OPERATION", "MESSAGE"]
    levels = [line.split()[0] for line in table[1:]]
    assert levels == sorted(levels, key=["ERR", "WARN", "INFO"].index)
    assert levels[0] == "ERR"
    assert "WARN" in levels


def test_diff_main_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert diff_main(SPECS / "v1.yaml", SPECS / "v2.yaml") == 0
    assert "no breaking changes" in capsys.readouterr().out
    assert diff_main(SPECS / "v1.yaml", SPECS / "v2-rename-field.yaml") == 1
    out = capsys.readouterr().out
    assert "response-required-property-removed" in out
    assert "GET /orders/{id}" in out


def test_diff_main_fail_on_warn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(op_spec(body=obj(item=STR, note=STR))))
    new.write_text(json.dumps(op_spec(body=obj(item=STR))))
    assert diff_main(old, new) == 0
    assert diff_main(old, new, fail_on="WARN") == 1
    assert diff_main(old, new, fail_on="INFO") == 1
    assert "request-property-removed" in capsys.readouterr().out


def test_diff_main_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert diff_main(SPECS / "v1.yaml", SPECS / "v2-strict-validation.yaml", as_json=True) == 1
    data = json.loads(capsys.readouterr().out)
    assert {d["rule"] for d in data} == {
        "request-property-max-decreased",
        "request-property-max-length-decreased",
    }
    assert all(d["check"] == "spec-diff" and d["level"] == "ERR" and d["id"] for d in data)


def test_diff_main_bad_input(tmp_path: Path) -> None:
    with pytest.raises(
        UsageError, match="'FATAL' is not a valid --fail-on level; choose from ERR, WARN, INFO"
    ):
        diff_main(SPECS / "v1.yaml", SPECS / "v2.yaml", fail_on="FATAL")
    with pytest.raises(ConfigError, match=r"missing\.yaml: OpenAPI spec not found"):
        diff_main(SPECS / "v1.yaml", tmp_path / "missing.yaml")


def test_response_min_length_removed_is_a_decrease_to_zero() -> None:
    old = op_spec(method="get", response=obj(s={"type": "string", "minLength": 2}))
    finding = only(
        diff(old, op_spec(method="get", response=obj(s=STR))), "response-property-min-length-decreased"
    )
    assert (finding.expected, finding.actual) == ("2", "0")


def test_header_parameters_match_case_insensitively() -> None:
    old = op_spec(method="get", params=[param("X-Tenant", STR, where="header")])
    new = op_spec(method="get", params=[param("x-tenant", STR, where="header")])
    assert diff(old, new) == []


def test_read_only_and_write_only_properties_are_skipped_in_their_direction() -> None:
    read_only = {"type": "string", "readOnly": True}
    old = op_spec(
        body=obj(id=read_only), response=obj(("secret",), secret={"type": "string", "writeOnly": True})
    )
    new = op_spec(body=obj(id={**read_only, "type": "integer"}), response=obj())
    assert diff(old, new) == []
