"""Reading OpenAPI 3.0 / 3.1 documents: load a file, follow local ``$ref``s, flatten simple ``allOf``s.

Only what the spec-diff check needs. Schemas are plain dicts as the document holds them; :func:`view` turns
one into a :class:`SchemaView` that hides the differences between 3.0 (``nullable: true``) and 3.1
(``type: [..., "null"]``) and merges ``allOf`` parts for property and ``required`` purposes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compat.errors import ConfigError

SUPPORTED_VERSIONS = ("3.0", "3.1")
MAX_REF_HOPS = 64  # a chain of $ref -> $ref longer than this is a cycle


def load_spec(path: Path) -> dict[str, Any]:
    """Read an OpenAPI 3.0 or 3.1 document (YAML or JSON); every problem is a ConfigError naming the file."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("OpenAPI spec not found", file=name) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read OpenAPI spec: {exc}", file=name) from None
    if Path(path).suffix.lower() == ".json":
        try:
            data: object = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=name
            ) from None
    else:
        import yaml  # lazily: only the spec-diff check needs PyYAML

        try:
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = exc.problem or exc.context or "unparsable"
            raise ConfigError(f"invalid YAML{where}: {problem}", file=name) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML: {exc}", file=name) from None
    return check_document(data, name)


def check_document(data: object, name: str) -> dict[str, Any]:
    """Validate the few top-level facts the diff relies on."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"not an OpenAPI document: the top level is {_kind(data)}, expected a mapping", file=name
        )
    if "openapi" not in data:
        if "swagger" in data:
            raise ConfigError(
                "unsupported OpenAPI version",
                file=name,
                key="swagger",
                value=str(data["swagger"]),
                has_value=True,
                hint="convert the Swagger 2.0 document to OpenAPI 3.0 or 3.1",
            )
        raise ConfigError(
            "not an OpenAPI document: no `openapi` key", file=name, hint="add e.g. `openapi: 3.0.3`"
        )
    version = str(data["openapi"])
    if (
        not version.startswith(tuple(v + "." for v in SUPPORTED_VERSIONS))
        and version not in SUPPORTED_VERSIONS
    ):
        raise ConfigError(
            "unsupported OpenAPI version",
            file=name,
            key="openapi",
            value=version,
            has_value=True,
            hint="supported: " + ", ".join(f"{v}.x" for v in SUPPORTED_VERSIONS),
        )
    paths = data.get("paths", {})
    if paths is None:
        data["paths"] = {}
    elif not isinstance(paths, dict):
        raise ConfigError(f"`paths` must be a mapping, not {_kind(paths)}", file=name, key="paths")
    return data


def _kind(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


class Resolver:
    """Follows local ``$ref``s (``#/components/...``) within one document."""

    def __init__(self, doc: Mapping[str, Any], name: str) -> None:
        self.doc = doc
        self.name = name

    def lookup(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ConfigError(
                "only local $refs (starting with '#') are supported",
                file=self.name,
                key="$ref",
                value=ref,
                has_value=True,
            )
        node: Any = self.doc
        for token in (t for t in ref[1:].split("/") if t):
            key = _unescape(token)
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise ConfigError("unresolvable $ref", file=self.name, key="$ref", value=ref, has_value=True)
        return node

    def deref(self, node: Any) -> Any:
        """The node a (chain of) ``$ref`` points at; a non-ref node is returned as is."""
        hops = 0
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            node = self.lookup(ref)
            hops += 1
            if hops > MAX_REF_HOPS:
                raise ConfigError("$ref cycle", file=self.name, key="$ref", value=ref, has_value=True)
        return node


_BOUNDS = ("maxLength", "minLength", "maximum", "minimum", "maxItems", "minItems")


@dataclass
class SchemaView:
    """One schema with ``allOf`` merged and nullability normalised. ``key`` identifies it for cycle checks."""

    key: int
    types: frozenset[str] | None  # None: no `type` given (anything); never contains "null"
    nullable: bool
    properties: dict[str, Any] = field(default_factory=dict)  # name -> raw (possibly $ref) schema
    required: frozenset[str] = frozenset()
    items: Any = None
    enum: list[Any] | None = None
    pattern: str | None = None
    bounds: dict[str, Any] = field(default_factory=dict)
    read_only: bool = False
    write_only: bool = False


def view(resolver: Resolver, raw: Any) -> SchemaView:
    node = resolver.deref(raw)
    if not isinstance(node, Mapping):
        node = {}
    result = SchemaView(key=id(node), types=None, nullable=False)
    _merge(resolver, node, result, seen=set())
    return result


def _merge(resolver: Resolver, node: Mapping[str, Any], out: SchemaView, seen: set[int]) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    raw_type = node.get("type")
    if raw_type is not None:
        names = [raw_type] if isinstance(raw_type, str) else [str(t) for t in raw_type]
        if "null" in names:
            out.nullable = True
        types = frozenset(t for t in names if t != "null")
        out.types = types if out.types is None else (out.types & types)
    if node.get("nullable") is True:
        out.nullable = True
    props = node.get("properties")
    if isinstance(props, Mapping):
        for name, schema in props.items():
            out.properties.setdefault(str(name), schema)
    req = node.get("required")
    if isinstance(req, list):
        out.required = out.required | {str(r) for r in req}
    if "items" in node and out.items is None:
        out.items = node["items"]
    if isinstance(node.get("enum"), list) and out.enum is None:
        out.enum = list(node["enum"])
    if isinstance(node.get("pattern"), str) and out.pattern is None:
        out.pattern = node["pattern"]
    for bound in _BOUNDS:
        if isinstance(node.get(bound), int | float) and bound not in out.bounds:
            out.bounds[bound] = node[bound]
    out.read_only = out.read_only or node.get("readOnly") is True
    out.write_only = out.write_only or node.get("writeOnly") is True
    parts = node.get("allOf")
    if isinstance(parts, list):
        for part in parts:
            sub = resolver.deref(part)
            if isinstance(sub, Mapping):
                _merge(resolver, sub, out, seen)
