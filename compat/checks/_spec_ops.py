"""What the stage checks ``yoyo`` and ``data`` read from an OpenAPI document: operations, resources,
pagination and example values. Pure functions over the spec dict; no HTTP.

- :func:`operations`: every (method, path) with its parameters, JSON request body schema, first 2xx
  response (schema, declared headers, ``links``), ``$ref``s followed with :class:`~._openapi.Resolver`.
- :func:`resources`: a collection path ``/things`` (GET list, POST create) paired with its item path
  ``/things/{param}`` (GET read, PUT/PATCH update). :func:`resource_id` gets a new resource's id from a
  create response: the create's OpenAPI ``links`` to the read operation first, else the ``Location``
  header matched against the item path, else a body member named like the path parameter (``id``,
  ``thing_id``, ``thingId`` or the parameter's own name).
- :func:`paginations`: a list GET whose success body has a cursor-like member (a name containing
  ``next``/``cursor``/``token``/``continuation``, also one level down as in ``links.next``) and a query
  parameter that takes it, or a next *URL* (followed as is), or a declared ``Link`` header
  (``rel="next"``); plus where the items are (the array-of-objects member, or a top-level array) and the
  page-size parameter. Names are matched generically, never against one API's spelling.
- :class:`Examples`: request values from a JSON schema — ``const``/``example``/``examples``/``default``/
  ``enum`` first, else minimal values satisfying type, format, length and numeric bounds and ``required``
  members. A counter and the seed vary them (``compat-<seed>-<n>`` strings, numbers within their bounds,
  enum members in turn), so created resources are distinguishable and a run is reproducible.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from compat.checks._openapi import Resolver, SchemaView, view

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
WRITE_METHODS = ("POST", "PUT", "PATCH")
_TEMPLATE = re.compile(r"\{([^{}/]+)\}")
_CURSOR_WORDS = ("next", "cursor", "token", "continuation")
_URL_WORDS = ("url", "href", "link", "uri")
#: query parameters that take a cursor, in order of preference (after the one named like the member)
CURSOR_PARAMS = (
    "cursor",
    "page_token",
    "pagetoken",
    "page-token",
    "after",
    "starting_after",
    "startingafter",
    "next",
    "token",
    "continuation",
    "continuation_token",
    "continuationtoken",
    "marker",
    "offset_token",
)
#: query parameters that set the page size, in order of preference
SIZE_PARAMS = (
    "limit",
    "page_size",
    "pagesize",
    "page-size",
    "per_page",
    "perpage",
    "size",
    "max_results",
    "maxresults",
    "max_items",
    "maxitems",
    "count",
    "first",
)


# -- operations -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path | query | header | cookie
    required: bool
    schema: Any  # raw (possibly $ref) schema


@dataclass(frozen=True)
class Operation:
    """One operation of the spec, with the parts the stage checks use."""

    method: str  # upper case
    path: str  # the template, "/things/{id}"
    operation_id: str | None = None
    parameters: tuple[Parameter, ...] = ()
    body: Any = None  # raw JSON request body schema, or None
    body_required: bool = False
    success: str | None = None  # the first 2xx status the spec gives ("201"), or None
    response: Any = None  # raw JSON schema of that response, or None
    response_headers: tuple[str, ...] = ()  # declared header names, lower case
    links: Mapping[str, Any] = field(default_factory=dict)  # that response's links (dereferenced)

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def param(self, name: str, location: str | None = None) -> Parameter | None:
        for p in self.parameters:
            if p.name == name and (location is None or p.location == location):
                return p
        return None

    def query(self) -> list[Parameter]:
        return [p for p in self.parameters if p.location == "query"]


def path_params(template: str) -> list[str]:
    return _TEMPLATE.findall(template)


def fill_path(template: str, values: Mapping[str, str]) -> str:
    """``/things/{id}`` with ``{"id": "a b"}`` -> ``/things/a%20b``."""
    from urllib.parse import quote

    return _TEMPLATE.sub(lambda m: quote(str(values[m.group(1)]), safe=""), template)


def operations(spec: Mapping[str, Any], name: str = "spec") -> list[Operation]:
    """Every operation of ``spec`` in document order."""
    resolver = Resolver(spec, name)
    found: list[Operation] = []
    for path, raw_item in (spec.get("paths") or {}).items():
        item = resolver.deref(raw_item)
        if not isinstance(item, Mapping):
            continue
        shared = _parameters(resolver, item.get("parameters"))
        for method in METHODS:
            raw_op = item.get(method)
            if not isinstance(raw_op, Mapping):
                continue
            own = _parameters(resolver, raw_op.get("parameters"))
            merged = {(p.name, p.location): p for p in (*shared, *own)}
            body, body_required = _request_body(resolver, raw_op.get("requestBody"))
            success, response, headers, links = _success(resolver, raw_op.get("responses"))
            op_id = raw_op.get("operationId")
            found.append(
                Operation(
                    method=method.upper(),
                    path=str(path),
                    operation_id=str(op_id) if op_id is not None else None,
                    parameters=tuple(merged.values()),
                    body=body,
                    body_required=body_required,
                    success=success,
                    response=response,
                    response_headers=headers,
                    links=links,
                )
            )
    return found


def _parameters(resolver: Resolver, raw: Any) -> list[Parameter]:
    out = []
    for entry in raw if isinstance(raw, list) else []:
        node = resolver.deref(entry)
        if not isinstance(node, Mapping) or "name" not in node:
            continue
        location = str(node.get("in", "query"))
        schema = node.get("schema")
        if schema is None and isinstance(node.get("content"), Mapping):
            media: Any = next(iter(node["content"].values()), {})
            schema = media.get("schema") if isinstance(media, Mapping) else None
        if "example" in node and isinstance(schema, Mapping) and "example" not in schema:
            schema = {**schema, "example": node["example"]}
        out.append(
            Parameter(
                name=str(node["name"]),
                location=location,
                required=bool(node.get("required")) or location == "path",
                schema=schema if schema is not None else {},
            )
        )
    return out


def _json_schema(resolver: Resolver, content: Any) -> Any:
    if not isinstance(content, Mapping):
        return None
    for media, entry in content.items():
        kind = str(media).split(";")[0].strip().lower()
        if kind == "application/json" or kind.endswith("+json") or kind == "*/*":
            node = resolver.deref(entry)
            if isinstance(node, Mapping):
                return node.get("schema", {})
    return None


def _request_body(resolver: Resolver, raw: Any) -> tuple[Any, bool]:
    node = resolver.deref(raw)
    if not isinstance(node, Mapping):
        return None, False
    return _json_schema(resolver, node.get("content")), bool(node.get("required"))


def _success(resolver: Resolver, raw: Any) -> tuple[str | None, Any, tuple[str, ...], dict[str, Any]]:
    if not isinstance(raw, Mapping):
        return None, None, (), {}
    codes = sorted(str(c) for c in raw if str(c).startswith("2") or str(c).upper() == "2XX")
    if not codes:
        return None, None, (), {}
    code = codes[0]
    node = resolver.deref(raw.get(code, raw.get(int(code)) if code.isdigit() else None))
    if not isinstance(node, Mapping):
        return code, None, (), {}
    headers = tuple(str(h).lower() for h in (node.get("headers") or {}))
    links = {str(k): resolver.deref(v) for k, v in (node.get("links") or {}).items()}
    return code, _json_schema(resolver, node.get("content")), headers, links


# -- resources --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """A collection path and its item path: ``/things`` + ``/things/{param}``."""

    item: str  # "/things/{id}"
    param: str  # "id"
    collection: str | None = None  # "/things", when the spec has it
    listing: Operation | None = None  # GET on the collection
    create: Operation | None = None
    read: Operation | None = None
    updates: tuple[Operation, ...] = ()  # PUT and PATCH on the item path

    @property
    def singular(self) -> str:
        """``things`` -> ``thing``, ``addresses`` -> ``address``, ``categories`` -> ``category``."""
        base = (self.collection or self.item.rsplit("/", 1)[0]).rstrip("/").rsplit("/", 1)[-1]
        if base.endswith("ies") and len(base) > 3:
            return base[:-3] + "y"
        if base.endswith(("sses", "xes", "ches", "shes")):
            return base[:-2]
        if base.endswith("s") and not base.endswith("ss"):
            return base[:-1]
        return base

    def id_members(self) -> list[str]:
        """Body member names that may carry the new resource's id, most specific last but one."""
        single = self.singular
        camel = re.sub(r"[-_](\w)", lambda m: m.group(1).upper(), single)
        names = ["id", f"{single}_id", f"{camel}Id", f"{single}Id", self.param]
        return list(dict.fromkeys(names))

    def item_path(self, ident: str) -> str:
        return fill_path(self.item, {self.param: ident})


def resources(ops: Sequence[Operation]) -> list[Resource]:
    """Item paths (ending in one ``{param}`` segment) with their collection, in document order.

    Only paths whose sole template parameter is the item's own are paired: a nested collection
    (``/users/{uid}/things``) needs a parent the checks do not create.
    """
    by_path: dict[str, dict[str, Operation]] = {}
    for op in ops:
        by_path.setdefault(op.path, {})[op.method] = op
    found = []
    for path, methods in by_path.items():
        match = re.fullmatch(r"(.*)/\{([^{}/]+)\}/?", path)
        if not match or path_params(match.group(1)):
            continue
        collection, param = match.group(1) or "/", match.group(2)
        coll = by_path.get(collection) or by_path.get(collection + "/") or {}
        found.append(
            Resource(
                item=path,
                param=param,
                collection=collection if coll else None,
                listing=coll.get("GET"),
                create=coll.get("POST"),
                read=methods.get("GET"),
                updates=tuple(methods[m] for m in ("PATCH", "PUT") if m in methods),
            )
        )
    return found


# -- ids from create responses --------------------------------------------------------------------------


def pointer(doc: Any, ref: str) -> Any:
    """RFC 6901 JSON pointer lookup; None when it does not resolve."""
    node = doc
    for token in (t for t in ref.lstrip("/").split("/") if ref.strip("/")):
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def runtime_expression(expr: str, headers: Mapping[str, str], body: Any) -> Any:
    """The value of an OpenAPI runtime expression over a response (``$response.body#/id``,
    ``$response.header.Location``); None when it does not apply or resolve."""
    text = expr.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text.startswith("$response.body"):
        rest = text[len("$response.body") :]
        return pointer(body, rest[1:] if rest.startswith("#") else "")
    if text.startswith("$response.header."):
        wanted = text[len("$response.header.") :].lower()
        for key, value in headers.items():
            if key.lower() == wanted:
                return value
    return None


def match_path(template: str, path: str) -> dict[str, str] | None:
    """Path parameters when ``path`` (or its tail, behind a base path) matches ``template``."""
    parts = re.split(r"(\{[^{}/]+\})", template)
    regex = "".join(f"(?P<p{i}>[^/]+)" if p.startswith("{") else re.escape(p) for i, p in enumerate(parts))
    found = re.search(regex + r"/?\Z", path)
    if not found:
        return None
    return {parts[int(k[1:])][1:-1]: unquote(v) for k, v in found.groupdict().items() if v is not None}


@dataclass(frozen=True)
class NewId:
    value: str | None
    how: str  # "links (GetThing: $response.body#/id)", "Location header", "body member `id`", or why not


def resource_id(resource: Resource, headers: Mapping[str, str], body: Any) -> NewId:
    """The id of the resource a create answered with, and where it came from."""
    create = resource.create
    read_id = resource.read.operation_id if resource.read else None
    if create is not None:
        for name, link in create.links.items():
            if not isinstance(link, Mapping):
                continue
            target = link.get("operationId")
            params = link.get("parameters") or {}
            if read_id is not None and target not in (None, read_id) and not link.get("operationRef"):
                continue
            expr = params.get(resource.param) if isinstance(params, Mapping) else None
            if isinstance(expr, str):
                value = runtime_expression(expr, headers, body)
                if isinstance(value, str | int) and not isinstance(value, bool):
                    return NewId(str(value), f"links ({name}: {expr})")
    location = next((v for k, v in headers.items() if k.lower() == "location"), None)
    if location:
        found = match_path(resource.item, urlsplit(location).path)
        if found and found.get(resource.param):
            return NewId(found[resource.param], "Location header")
    if isinstance(body, Mapping):
        for member in resource.id_members():
            value = body.get(member)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return NewId(str(value), f"body member `{member}`")
    return NewId(
        None,
        "no id in the create response (no usable links, no Location header matching "
        f"{resource.item}, no body member {', '.join(resource.id_members())})",
    )


def item_key(item: Any, preferred: Iterable[str] = ()) -> str:
    """How items of a list are told apart: the ``id``-like member, else canonical JSON."""
    from compat.checks._noise import canonical

    if isinstance(item, Mapping):
        for name in (*preferred, "id", "uuid", "key", "name"):
            value = item.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return f"{name}={value}"
        for name, value in item.items():
            if (str(name).endswith(("_id", "Id")) or str(name) == "ID") and isinstance(value, str | int):
                return f"{name}={value}"
    return canonical(item)


# -- pagination -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pagination:
    """How one list operation pages.

    ``items``: members leading to the items array (``()`` for a top-level array). ``cursor``: members
    leading to the next cursor or URL (None: only a ``Link`` header). ``cursor_param``: the query
    parameter taking a cursor (None: the cursor is a URL to follow). ``size_param``: the page size.
    """

    operation: Operation
    items: tuple[str, ...]
    cursor: tuple[str, ...] | None
    cursor_param: str | None
    size_param: str | None
    link_header: bool = False
    next_is_url: bool = False

    def describe(self) -> str:
        how = (
            f"cursor {'.'.join(self.cursor)} -> ?{self.cursor_param}="
            if self.cursor and self.cursor_param
            else f"next URL in {'.'.join(self.cursor)}"
            if self.cursor
            else "Link: rel=next"
        )
        size = f", page size ?{self.size_param}=" if self.size_param else ""
        where = ".".join(self.items) if self.items else "the top-level array"
        return f"{self.operation.key}: items in {where}, {how}{size}"

    def items_of(self, body: Any) -> list[Any] | None:
        node = body
        for name in self.items:
            node = node.get(name) if isinstance(node, Mapping) else None
        return node if isinstance(node, list) else None

    def cursor_of(self, body: Any) -> Any:
        if self.cursor is None:
            return None
        node = body
        for name in self.cursor:
            node = node.get(name) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping):  # {"next": {"href": ...}}
            node = next((node[k] for k in ("href", "url", "link", "uri") if k in node), None)
        return node


def _cursorish(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in _CURSOR_WORDS) and not low.startswith(("prev", "previous"))


def _urlish(name: str, sch: SchemaView, raw: Any) -> bool:
    fmt = raw.get("format") if isinstance(raw, Mapping) else None
    return fmt in ("uri", "url", "uri-reference", "iri") or any(w in name.lower() for w in _URL_WORDS)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def pagination(op: Operation, resolver: Resolver) -> Pagination | None:
    """The paging scheme of a GET, or None when its response is not a page of a list."""
    if op.method != "GET" or op.response is None:
        return None
    top = view(resolver, op.response)
    link_header = "link" in op.response_headers
    items: tuple[str, ...] | None = () if top.types and "array" in top.types else None
    cursor: tuple[str, ...] | None = None
    cursor_raw: Any = None
    if items is None:
        for name, raw in top.properties.items():
            sub = view(resolver, raw)
            if sub.types and "array" in sub.types and items is None:
                inner = view(resolver, sub.items) if sub.items is not None else None
                if inner is None or inner.types is None or "object" in inner.types or inner.properties:
                    items = (name,)
        found = _find_cursor(resolver, top, ())
        if found is not None:
            cursor, cursor_raw = found
    if items is None:
        return None
    size_param = _pick_param(op, SIZE_PARAMS)
    if cursor is None:
        if not link_header:
            return None
        return Pagination(op, items, None, None, size_param, link_header=True, next_is_url=True)
    leaf = cursor[-1]
    sub = view(resolver, cursor_raw)
    is_url = _urlish(leaf, sub, resolver.deref(cursor_raw)) or any(
        p.lower() in ("links", "_links") for p in cursor[:-1]
    )
    cursor_param = None if is_url else _cursor_param(op, leaf)
    if cursor_param is None and not is_url:
        # a cursor member but no parameter for it: a next URL, if it looks like one at run time
        is_url = True
    return Pagination(op, items, cursor, cursor_param, size_param, link_header, next_is_url=is_url)


def _find_cursor(
    resolver: Resolver, schema: SchemaView, prefix: tuple[str, ...]
) -> tuple[tuple[str, ...], Any] | None:
    for name, raw in schema.properties.items():
        sub = view(resolver, raw)
        scalar = sub.types is None or bool(sub.types & {"string", "integer"})
        if _cursorish(name) and scalar and not (sub.types and "object" in sub.types):
            return (*prefix, name), raw
        if _cursorish(name) and sub.types and "object" in sub.types:
            inner = {k: v for k, v in sub.properties.items() if k in ("href", "url", "link", "uri")}
            if inner:
                return (*prefix, name), next(iter(inner.values()))
    if len(prefix) < 1:
        for name, raw in schema.properties.items():
            sub = view(resolver, raw)
            if sub.types and "object" in sub.types and sub.properties:
                found = _find_cursor(resolver, sub, (*prefix, name))
                if found is not None:
                    return found
    return None


def _pick_param(op: Operation, names: Sequence[str]) -> str | None:
    query = {_norm(p.name): p.name for p in op.query()}
    for name in names:
        if _norm(name) in query:
            return query[_norm(name)]
    return None


def _cursor_param(op: Operation, member: str) -> str | None:
    """The query parameter taking the cursor in ``member``: the one named like it without ``next``
    (``next_cursor`` -> ``cursor``, ``nextPageToken`` -> ``pageToken``), else a known cursor name, else
    any parameter whose name contains cursor/token/after/continuation."""
    stripped = re.sub(r"^next[_-]?", "", member, flags=re.IGNORECASE)
    query = {_norm(p.name): p.name for p in op.query()}
    for candidate in (stripped, member):
        if _norm(candidate) in query and _norm(candidate) not in {_norm(s) for s in SIZE_PARAMS}:
            return query[_norm(candidate)]
    found = _pick_param(op, CURSOR_PARAMS)
    if found is not None:
        return found
    for p in op.query():
        low = p.name.lower()
        if any(w in low for w in ("cursor", "token", "after", "continuation")):
            return p.name
    return None


def paginations(spec: Mapping[str, Any], name: str = "spec") -> list[Pagination]:
    """Every paginated list operation of ``spec``."""
    resolver = Resolver(spec, name)
    found = []
    for op in operations(spec, name):
        page = pagination(op, resolver)
        if page is not None:
            found.append(page)
    return found


def next_link(headers: Mapping[str, str]) -> str | None:
    """The target of ``Link: <…>; rel="next"``, if any."""
    value = next((v for k, v in headers.items() if k.lower() == "link"), None)
    if not value:
        return None
    for part in value.split(","):
        found = re.match(r"\s*<([^>]*)>\s*;(.*)", part)
        if found and re.search(r'rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?', found.group(2), re.IGNORECASE):
            return found.group(1)
    return None


# -- example values ---------------------------------------------------------------------------------------


class Examples:
    """Deterministic request values from JSON schemas; each :meth:`body` call is a new variant."""

    def __init__(self, resolver: Resolver, seed: int) -> None:
        self.resolver = resolver
        self.seed = seed
        self.counter = 0

    def next_variant(self) -> int:
        self.counter += 1
        return self.counter

    def body(self, schema: Any, *, full: bool = False) -> Any:
        """A value for ``schema``: required members (all writable ones with ``full``)."""
        return self.value(schema, self.next_variant(), full=full)

    def value(self, schema: Any, variant: int, *, full: bool = False, depth: int = 0) -> Any:
        node = self.resolver.deref(schema)
        if not isinstance(node, Mapping):
            return f"compat-{self.seed}-{variant}"
        if "const" in node:
            return node["const"]
        if "example" in node:
            return node["example"]
        if isinstance(node.get("examples"), list) and node["examples"]:
            return node["examples"][0]
        if "default" in node:
            return node["default"]
        for combo in ("oneOf", "anyOf"):
            if isinstance(node.get(combo), list) and node[combo]:
                return self.value(node[combo][0], variant, full=full, depth=depth + 1)
        sch = view(self.resolver, node)
        if sch.enum:
            choices = [e for e in sch.enum if e is not None] or sch.enum
            return choices[variant % len(choices)]
        types = sch.types or (frozenset({"object"}) if sch.properties else frozenset({"string"}))
        fmt = _format(self.resolver, node)
        if "object" in types:
            return self._object(sch, variant, full, depth)
        if "array" in types:
            count = int(sch.bounds.get("minItems", 0))
            return [self.value(sch.items, variant + i, depth=depth + 1) for i in range(count)]
        if "integer" in types:
            return int(self._number(node, sch, variant, integer=True))
        if "number" in types:
            return self._number(node, sch, variant, integer=False)
        if "boolean" in types:
            return variant % 2 == 1
        return self._string(sch, fmt, variant)

    def _object(self, sch: SchemaView, variant: int, full: bool, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, raw in sch.properties.items():
            sub = view(self.resolver, raw)
            if sub.read_only:
                continue
            if name in sch.required or (full and depth < 3):
                out[name] = self.value(raw, variant, full=full, depth=depth + 1)
        return out

    def _number(self, node: Mapping[str, Any], sch: SchemaView, variant: int, *, integer: bool) -> float:
        lo = sch.bounds.get("minimum")
        hi = sch.bounds.get("maximum")
        ex_lo, ex_hi = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
        if isinstance(ex_lo, int | float) and not isinstance(ex_lo, bool):
            lo = ex_lo + (1 if integer else 0.5)
        elif ex_lo is True and lo is not None:
            lo = lo + (1 if integer else 0.5)
        if isinstance(ex_hi, int | float) and not isinstance(ex_hi, bool):
            hi = ex_hi - (1 if integer else 0.5)
        elif ex_hi is True and hi is not None:
            hi = hi - (1 if integer else 0.5)
        if lo is None:
            lo = 1 if hi is None or hi >= 1 else hi
        if integer:
            lo = int(-(-lo // 1))
        span = 100 if hi is None else max(0, min(100, int(hi - lo)))
        value = lo + (variant % (span + 1) if span else 0)
        multiple = node.get("multipleOf")
        if isinstance(multiple, int | float) and multiple > 0:
            value = -(-value // multiple) * multiple
        return value

    def _string(self, sch: SchemaView, fmt: str | None, variant: int) -> str:
        tag = f"compat-{self.seed}-{variant}"
        if fmt == "uuid":
            text = str(uuid.UUID(int=(self.seed * 1_000_003 + variant) % (1 << 122) | (4 << 76)))
        elif fmt == "date-time":
            text = f"2024-01-{1 + variant % 28:02d}T00:00:00Z"
        elif fmt == "date":
            text = f"2024-01-{1 + variant % 28:02d}"
        elif fmt == "time":
            text = "12:00:00Z"
        elif fmt == "email":
            text = f"{tag}@example.com"
        elif fmt in ("uri", "url", "iri"):
            text = f"https://example.com/{tag}"
        elif fmt == "ipv4":
            text = f"192.0.2.{variant % 250 + 1}"
        elif fmt == "ipv6":
            text = f"2001:db8::{variant % 65535:x}"
        elif fmt == "hostname":
            text = f"{tag}.example.com"
        else:
            text = tag
        lo = int(sch.bounds.get("minLength", 0))
        hi = sch.bounds.get("maxLength")
        if len(text) < lo:
            text = text + "x" * (lo - len(text))
        if hi is not None and len(text) > int(hi):
            text = text[-int(hi) :] if fmt is None else text[: int(hi)]
        return text


def _format(resolver: Resolver, node: Mapping[str, Any]) -> str | None:
    if isinstance(node.get("format"), str):
        return str(node["format"])
    for part in node.get("allOf") or []:
        sub = resolver.deref(part)
        if isinstance(sub, Mapping) and isinstance(sub.get("format"), str):
            return str(sub["format"])
    return None


# -- recorded exchanges (shared by yoyo and data) ---------------------------------------------------------

_TRANSPORT_HEADERS = frozenset({"user-agent", "accept-encoding", "accept", "connection", "content-length"})


@dataclass
class Exchange:
    """One request and its answer (or why there is none), as findings show it."""

    label: str  # "page 2 (cursor from v1)", "read after create"
    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: Any = None
    json: bool = False  # the answer's body parsed as JSON
    answered_by: str = "-"
    version: str | None = None  # the version that answered (router stamp or the service's header)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def outcome(self, detail: bool = False) -> str:
        """``answered 400 by orders-v2-0 (v2)``; with ``detail``, a failure's body (shortened) too."""
        if self.status is None:
            return f"failed ({self.error})"
        text = f"answered {self.status} by {self.answered_by}"
        if detail and not self.ok and self.response_body not in (None, ""):
            from compat.checks._noise import canonical

            body = (
                self.response_body if isinstance(self.response_body, str) else canonical(self.response_body)
            )
            text += f": {body[:160]}" + ("…" if len(body) > 160 else "")
        return text

    def request_dict(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "headers": dict(self.headers), "body": self.body}

    def response_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "headers": dict(self.response_headers),
            "body": self.response_body,
            "error": self.error,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.label,
            "request": f"{self.method} {self.url}",
            "status": self.status,
            "answered_by": self.answered_by,
            "version": self.version,
            **({"error": self.error} if self.error else {}),
        }

    def summary(self) -> str:
        return f"{self.label}: {self.method} {self.url} {self.outcome()}"


def send(
    client: Any,
    label: str,
    method: str,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
) -> Exchange:
    """Send one request through ``client`` (a ``requests.Session``) and record it; never raises for
    transport errors (they become an exchange without a status)."""
    import json as _json

    import requests

    from compat.client import answered_by

    try:
        if json_body is None:
            response = client.request(method, url, params=params)
        else:
            response = client.request(method, url, params=params, json=json_body)
    except requests.RequestException as exc:
        base = getattr(client, "base_url", "")
        target = url if "://" in url else base.rstrip("/") + "/" + url.lstrip("/")
        headers = {k: str(v) for k, v in getattr(client, "headers", {}).items()}
        return Exchange(
            label,
            method,
            target,
            {k: v for k, v in headers.items() if k.lower() not in _TRANSPORT_HEADERS},
            _json.dumps(json_body) if json_body is not None else None,
            error=f"{type(exc).__name__}: {exc}",
        )
    sent = response.request
    raw = sent.body
    body_text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    parsed: Any
    is_json = False
    try:
        parsed = response.json() if response.text.strip() else None
        is_json = response.text.strip() != ""
    except ValueError:
        parsed = response.text[:2000]
    version = response.headers.get("X-Compat-Version") or response.headers.get("X-Service-Version")
    return Exchange(
        label,
        method,
        str(sent.url),
        {k: str(v) for k, v in sent.headers.items() if k.lower() not in _TRANSPORT_HEADERS},
        body_text,
        response.status_code,
        dict(response.headers),
        parsed,
        is_json,
        answered_by(response),
        version,
    )


def looks_like_url(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith(("http://", "https://")) or value.startswith("/"))


def relative(url: str) -> str:
    """The path and query of ``url``: a next link is followed on our own base URL (the service may name
    itself by an internal host name)."""
    split = urlsplit(url)
    return split.path + (f"?{split.query}" if split.query else "")
