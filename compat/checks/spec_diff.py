"""Static OpenAPI spec diff: would clients of the old spec break against the new one?

The direction rule: requests must not narrow (everything the old version accepted, the new one accepts)
and responses must not widen (everything the new version returns, an old client understands). Each
incompatibility is a :class:`Finding` with ``check="spec-diff"``, an oasdiff rule id and oasdiff's level
for it; only oasdiff ids are emitted (a change oasdiff has no id for is not reported).

Operations are matched by method and path template with parameter names ignored (``/orders/{id}`` is
``/orders/{orderId}``); parameters by ``(name, in)``, path parameters by their position in the template.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compat.checks._openapi import Resolver, SchemaView, load_spec, view
from compat.checks.finding import LEVELS, Finding
from compat.errors import UsageError

__all__ = ["RULES", "diff_main", "diff_specs", "load_spec", "render_table"]

CHECK = "spec-diff"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_DEPTH = 64  # nesting deeper than this is not compared (a cycle through anonymous schemas)

# The oasdiff rule ids this check emits, with oasdiff's default level.
RULES: dict[str, str] = {
    # operations and paths
    "api-path-removed-without-deprecation": "ERR",
    "api-path-removed-before-sunset": "ERR",
    "api-path-removed-with-deprecation": "INFO",
    "api-path-sunset-parse": "ERR",
    "api-removed-without-deprecation": "ERR",
    "api-removed-before-sunset": "ERR",
    "api-removed-with-deprecation": "INFO",
    # parameters
    "new-required-request-parameter": "ERR",
    "request-parameter-removed": "WARN",
    "request-parameter-became-required": "ERR",
    # request body
    "request-body-added-required": "ERR",
    "request-body-became-required": "ERR",
    "request-body-removed": "ERR",
    "request-body-media-type-removed": "ERR",
    "new-required-request-property": "ERR",
    "request-property-became-required": "ERR",
    "request-property-removed": "WARN",
    # responses
    "response-success-status-removed": "ERR",
    "response-non-success-status-removed": "INFO",
    "response-media-type-removed": "ERR",
    "response-required-property-removed": "ERR",
    "response-optional-property-removed": "WARN",
    "response-property-became-optional": "ERR",
}
# Schema-level rules exist per prefix: request-body-, request-property-, request-parameter-,
# response-body-, response-property-.
_SCHEMA_RULES: dict[str, dict[str, str]] = {
    "type-changed": {
        "request-body": "ERR",
        "request-property": "ERR",
        "request-parameter": "ERR",
        "response-body": "ERR",
        "response-property": "ERR",
    },
    "became-not-nullable": {"request-body": "ERR", "request-property": "ERR", "request-parameter": "ERR"},
    "became-nullable": {"response-body": "ERR", "response-property": "ERR"},
    "became-enum": {"request-body": "ERR", "request-property": "ERR", "request-parameter": "ERR"},
    "enum-value-removed": {"request-body": "ERR", "request-property": "ERR", "request-parameter": "ERR"},
    "enum-value-added": {"response-property": "WARN"},
    "max-length-decreased": {"request-body": "ERR", "request-property": "ERR", "request-parameter": "ERR"},
    "max-length-set": {"request-body": "WARN", "request-property": "WARN", "request-parameter": "WARN"},
    "min-length-increased": {"request-body": "ERR", "request-property": "ERR", "request-parameter": "ERR"},
    "max-decreased": {"request-body": "ERR", "request-property": "ERR", "request-parameter": "ERR"},
    "max-set": {"request-body": "WARN", "request-property": "WARN", "request-parameter": "WARN"},
    "min-increased": {"request-body": "ERR", "request-property": "ERR", "request-parameter": "ERR"},
    "min-set": {"request-body": "WARN", "request-property": "WARN", "request-parameter": "WARN"},
    "min-items-increased": {"request-body": "ERR", "request-property": "ERR", "request-parameter": "ERR"},
    "min-items-set": {"request-body": "WARN", "request-property": "WARN", "request-parameter": "WARN"},
    "max-items-decreased": {"request-parameter": "ERR"},
    "pattern-added": {"request-property": "ERR", "request-parameter": "ERR"},
    "pattern-changed": {"request-property": "WARN", "request-parameter": "WARN"},
    "max-length-increased": {"response-body": "ERR", "response-property": "ERR"},
    "max-length-unset": {"response-body": "ERR", "response-property": "ERR"},
    "min-length-decreased": {"response-body": "ERR", "response-property": "ERR"},
    "max-increased": {"response-body": "ERR", "response-property": "ERR"},
    "min-decreased": {"response-body": "ERR", "response-property": "ERR"},
    "min-items-decreased": {"response-body": "ERR", "response-property": "ERR"},
    "min-items-unset": {"response-body": "ERR", "response-property": "ERR"},
}
for _suffix, _levels in _SCHEMA_RULES.items():
    for _prefix, _level in _levels.items():
        RULES[f"{_prefix}-{_suffix}"] = _level


def _param_key_path(path: str) -> tuple[str, list[str]]:
    """``/orders/{id}`` -> (``/orders/{}``, ``["id"]``)."""
    names = re.findall(r"\{([^}/]*)\}", path)
    return re.sub(r"\{[^}/]*\}", "{}", path), names


def _pointer(*tokens: str) -> str:
    return "#/" + "/".join(t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, frozenset | set):
        return "/".join(sorted(value)) or "none"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


@dataclass
class _Op:
    method: str
    path: str  # as written in the spec
    node: Mapping[str, Any]
    path_item: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path}"


@dataclass
class _Differ:
    old: Resolver
    new: Resolver
    today: dt.date
    findings: list[Finding] = field(default_factory=list)

    # -- reporting -----------------------------------------------------------------------------------

    def report(
        self,
        rule: str,
        op: str,
        message: str,
        *,
        location: str,
        expected: Any = None,
        actual: Any = None,
    ) -> None:
        self.findings.append(
            Finding(
                check=CHECK,
                rule=rule,
                level=RULES[rule],
                message=f"{message} (at {location})",
                operation=op,
                versions={"spec": f"{self.old.name} -> {self.new.name}"},
                expected=None if expected is None else _show(expected),
                actual=None if actual is None else _show(actual),
                details={"location": location},
            )
        )

    # -- operations ----------------------------------------------------------------------------------

    def operations(self, res: Resolver) -> dict[str, dict[str, _Op]]:
        """Normalised path template -> method -> operation."""
        out: dict[str, dict[str, _Op]] = {}
        for path, raw_item in (res.doc.get("paths") or {}).items():
            item = res.deref(raw_item)
            if not isinstance(item, Mapping):
                continue
            ops = out.setdefault(_param_key_path(str(path))[0], {})
            for method in METHODS:
                node = item.get(method)
                if isinstance(node, Mapping):
                    ops[method] = _Op(method, str(path), node, item)
        return out

    def run(self) -> list[Finding]:
        old_ops, new_ops = self.operations(self.old), self.operations(self.new)
        for key, old_methods in old_ops.items():
            new_methods = new_ops.get(key, {})
            for method, old_op in old_methods.items():
                new_op = new_methods.get(method)
                if new_op is None:
                    self.removed(old_op, whole_path=not new_methods)
                else:
                    self.operation(old_op, new_op)
        return self.findings

    def removed(self, op: _Op, *, whole_path: bool) -> None:
        kind = "api-path" if whole_path else "api"
        what = f"path {op.path}" if whole_path else f"operation {op.label}"
        location = _pointer("paths", op.path, op.method)
        if op.node.get("deprecated") is not True:
            self.report(
                f"{kind}-removed-without-deprecation",
                op.label,
                f"{what} removed without deprecation",
                location=location,
            )
            return
        sunset = op.node.get("x-sunset")
        if sunset is None:
            self.report(
                f"{kind}-removed-with-deprecation",
                op.label,
                f"deprecated {what} removed (no x-sunset)",
                location=location,
            )
            return
        date = _parse_date(sunset)
        if date is None:
            self.report(
                "api-path-sunset-parse",
                op.label,
                f"deprecated {what} removed; cannot parse x-sunset {sunset!r}",
                location=location,
            )
        elif date > self.today:
            self.report(
                f"{kind}-removed-before-sunset",
                op.label,
                f"{what} removed before its sunset date {date.isoformat()}",
                location=location,
                expected=date.isoformat(),
                actual=self.today.isoformat(),
            )
        else:
            self.report(
                f"{kind}-removed-with-deprecation",
                op.label,
                f"deprecated {what} removed after its sunset date {date.isoformat()}",
                location=location,
            )

    def operation(self, old: _Op, new: _Op) -> None:
        label = new.label
        base = ("paths", new.path, new.method)
        self.parameters(old, new, label, base)
        self.request_body(old, new, label, base)
        self.responses(old, new, label, base)

    # -- parameters ----------------------------------------------------------------------------------

    def params(self, res: Resolver, op: _Op) -> dict[tuple[str, str], Mapping[str, Any]]:
        names = _param_key_path(op.path)[1]
        out: dict[tuple[str, str], Mapping[str, Any]] = {}
        for source in (op.path_item.get("parameters"), op.node.get("parameters")):
            for raw in source or ():
                param = res.deref(raw)
                if not isinstance(param, Mapping) or "name" not in param:
                    continue
                where, name = str(param.get("in", "")), str(param["name"])
                if where == "path" and name in names:
                    key = (where, f"#{names.index(name)}")
                elif where == "header":
                    key = (where, name.lower())
                else:
                    key = (where, name)
                out[key] = param
        return out

    def parameters(self, old: _Op, new: _Op, label: str, base: tuple[str, ...]) -> None:
        old_params, new_params = self.params(self.old, old), self.params(self.new, new)
        for key, param in new_params.items():
            name = f"{param['in']} parameter '{param['name']}'"
            location = _pointer(*base, "parameters", f"{param['in']}:{param['name']}")
            before = old_params.get(key)
            required = param.get("required") is True
            if before is None:
                if required:
                    self.report(
                        "new-required-request-parameter", label, f"new required {name}", location=location
                    )
                continue
            if required and before.get("required") is not True:
                self.report(
                    "request-parameter-became-required",
                    label,
                    f"{name} became required",
                    location=location,
                    expected="optional",
                    actual="required",
                )
            self.schema(
                "request",
                "request-parameter",
                _param_schema(before),
                _param_schema(param),
                label=label,
                subject=name,
                names=(),
                pointer=(*base, "parameters", f"{param['in']}:{param['name']}", "schema"),
            )
        for key, param in old_params.items():
            if key not in new_params:
                self.report(
                    "request-parameter-removed",
                    label,
                    f"{param.get('in')} parameter '{param['name']}' removed",
                    location=_pointer(*base, "parameters", f"{param.get('in')}:{param['name']}"),
                )

    # -- request body --------------------------------------------------------------------------------

    def request_body(self, old: _Op, new: _Op, label: str, base: tuple[str, ...]) -> None:
        before = self.old.deref(old.node.get("requestBody"))
        after = self.new.deref(new.node.get("requestBody"))
        location = _pointer(*base, "requestBody")
        if not isinstance(after, Mapping):
            if isinstance(before, Mapping):
                self.report("request-body-removed", label, "request body removed", location=location)
            return
        if not isinstance(before, Mapping):
            if after.get("required") is True:
                self.report(
                    "request-body-added-required", label, "new required request body", location=location
                )
            return
        if after.get("required") is True and before.get("required") is not True:
            self.report(
                "request-body-became-required",
                label,
                "request body became required",
                location=location,
                expected="optional",
                actual="required",
            )
        old_content = before.get("content") or {}
        new_content = after.get("content") or {}
        for media, old_media in old_content.items():
            if media not in new_content:
                self.report(
                    "request-body-media-type-removed",
                    label,
                    f"request body media type '{media}' removed",
                    location=_pointer(*base, "requestBody", "content", media),
                )
                continue
            self.schema(
                "request",
                "request",
                _media_schema(old_media),
                _media_schema(new_content[media]),
                label=label,
                subject=f"request body {media}",
                names=(),
                pointer=(*base, "requestBody", "content", media, "schema"),
            )

    # -- responses -----------------------------------------------------------------------------------

    def responses(self, old: _Op, new: _Op, label: str, base: tuple[str, ...]) -> None:
        old_responses = old.node.get("responses") or {}
        new_responses = new.node.get("responses") or {}
        for status_raw, raw in old_responses.items():
            status = str(status_raw)
            location = _pointer(*base, "responses", status)
            if status not in {str(s) for s in new_responses}:
                success = status.startswith("2")
                rule = "response-success-status-removed" if success else "response-non-success-status-removed"
                self.report(rule, label, f"response status {status} removed", location=location)
                continue
            before = self.old.deref(raw)
            after = self.new.deref(next(v for s, v in new_responses.items() if str(s) == status))
            if not isinstance(before, Mapping) or not isinstance(after, Mapping):
                continue
            new_content = after.get("content") or {}
            for media, old_media in (before.get("content") or {}).items():
                if media not in new_content:
                    self.report(
                        "response-media-type-removed",
                        label,
                        f"response {status} media type '{media}' removed",
                        location=_pointer(*base, "responses", status, "content", media),
                    )
                    continue
                self.schema(
                    "response",
                    "response",
                    _media_schema(old_media),
                    _media_schema(new_content[media]),
                    label=label,
                    subject=f"response {status} {media}",
                    names=(),
                    pointer=(*base, "responses", status, "content", media, "schema"),
                )

    # -- schemas -------------------------------------------------------------------------------------

    def schema(
        self,
        direction: str,
        family: str,
        old_raw: Any,
        new_raw: Any,
        *,
        label: str,
        subject: str,
        names: tuple[str, ...],
        pointer: tuple[str, ...],
        stack: frozenset[tuple[int, int]] = frozenset(),
    ) -> None:
        """Compare two schemas. ``family`` is "request", "response" or "request-parameter"."""
        if old_raw is None or new_raw is None or len(names) > MAX_DEPTH:
            return
        old, new = view(self.old, old_raw), view(self.new, new_raw)
        pair = (old.key, new.key)
        if pair in stack:  # a recursive schema: this pair is already being compared further up
            return
        stack = stack | {pair}
        ctx = _Ctx(self, direction, family, label, subject, names, pointer)
        if (direction == "request" and (old.read_only or new.read_only)) or (
            direction == "response" and (old.write_only or new.write_only)
        ):
            return  # a readOnly property is never sent, a writeOnly one never returned
        if old.types is not None and new.types is not None:
            widened, narrowed = (new.types, old.types) if direction == "request" else (old.types, new.types)
            if not _accepts(widened, narrowed):  # a different type: comparing its keywords would be noise
                ctx.emit(
                    "type-changed",
                    "type",
                    f"type changed from {_show(old.types)} to {_show(new.types)}",
                    old.types,
                    new.types,
                )
                return
        if direction == "request":
            self.request_schema(ctx, old, new)
        else:
            self.response_schema(ctx, old, new)
        self.properties(ctx, old, new, stack)
        if old.items is not None and new.items is not None:
            self.schema(
                direction,
                family,
                old.items,
                new.items,
                label=label,
                subject=subject,
                names=names,
                pointer=(*pointer, "items"),
                stack=stack,
            )

    def request_schema(self, ctx: _Ctx, old: SchemaView, new: SchemaView) -> None:
        if old.nullable and not new.nullable:
            ctx.emit("became-not-nullable", "nullable", "became not nullable", True, False)
        if new.enum is not None:
            if old.enum is None:
                ctx.emit("became-enum", "enum", "became an enum", None, new.enum)
            else:
                for value in old.enum:
                    if value not in new.enum:
                        ctx.emit(
                            "enum-value-removed",
                            "enum",
                            f"enum value {_show(value)} removed",
                            old.enum,
                            new.enum,
                        )
        self.upper(ctx, old, new, "maxLength", "max-length-decreased", "max-length-set")
        self.upper(ctx, old, new, "maximum", "max-decreased", "max-set")
        self.upper(ctx, old, new, "maxItems", "max-items-decreased", None)
        self.lower_up(ctx, old, new, "minLength", "min-length-increased", "min-length-increased")
        self.lower_up(ctx, old, new, "minimum", "min-increased", "min-set")
        self.lower_up(ctx, old, new, "minItems", "min-items-increased", "min-items-set")
        if new.pattern is not None and new.pattern != old.pattern:
            if old.pattern is None:
                ctx.emit("pattern-added", "pattern", "pattern added", None, new.pattern)
            else:
                ctx.emit("pattern-changed", "pattern", "pattern changed", old.pattern, new.pattern)

    @staticmethod
    def upper(
        ctx: _Ctx, old: SchemaView, new: SchemaView, bound: str, decreased: str, added: str | None
    ) -> None:
        before, after = old.bounds.get(bound), new.bounds.get(bound)
        if after is None:
            return
        if before is None:
            if added:
                ctx.emit(added, bound, f"{bound} set to {_show(after)}", None, after)
        elif after < before:
            ctx.emit(
                decreased, bound, f"{bound} decreased from {_show(before)} to {_show(after)}", before, after
            )

    @staticmethod
    def lower_up(ctx: _Ctx, old: SchemaView, new: SchemaView, bound: str, increased: str, added: str) -> None:
        before, after = old.bounds.get(bound), new.bounds.get(bound)
        if after is None:
            return
        if before is None:
            if bound == "minLength":  # no minLength means 0
                if after > 0:
                    ctx.emit(increased, bound, f"{bound} increased from 0 to {_show(after)}", 0, after)
            elif not (bound == "minItems" and after == 0):
                ctx.emit(added, bound, f"{bound} set to {_show(after)}", None, after)
        elif after > before:
            ctx.emit(
                increased, bound, f"{bound} increased from {_show(before)} to {_show(after)}", before, after
            )

    def response_schema(self, ctx: _Ctx, old: SchemaView, new: SchemaView) -> None:
        if new.nullable and not old.nullable:
            ctx.emit("became-nullable", "nullable", "became nullable", False, True)
        if old.enum is not None and new.enum is not None:
            for value in new.enum:
                if value not in old.enum:
                    ctx.emit(
                        "enum-value-added", "enum", f"enum value {_show(value)} added", old.enum, new.enum
                    )
        for bound, grew, unset in (
            ("maxLength", "max-length-increased", "max-length-unset"),
            ("maximum", "max-increased", None),
        ):
            before, after = old.bounds.get(bound), new.bounds.get(bound)
            if before is None:
                continue
            if after is None:
                if unset:
                    ctx.emit(unset, bound, f"{bound} {_show(before)} removed", before, None)
            elif after > before:
                ctx.emit(
                    grew, bound, f"{bound} increased from {_show(before)} to {_show(after)}", before, after
                )
        for bound, shrank, unset in (
            ("minLength", "min-length-decreased", None),
            ("minimum", "min-decreased", None),
            ("minItems", "min-items-decreased", "min-items-unset"),
        ):
            before, after = old.bounds.get(bound), new.bounds.get(bound)
            if before is None:
                continue
            if after is None:
                if unset and before > 0:
                    ctx.emit(unset, bound, f"{bound} {_show(before)} removed", before, None)
                elif bound == "minLength" and before > 0:  # no minLength means 0
                    ctx.emit(shrank, bound, f"{bound} decreased from {_show(before)} to 0", before, 0)
            elif after < before:
                ctx.emit(
                    shrank, bound, f"{bound} decreased from {_show(before)} to {_show(after)}", before, after
                )

    def properties(
        self, ctx: _Ctx, old: SchemaView, new: SchemaView, stack: frozenset[tuple[int, int]]
    ) -> None:
        request = ctx.direction == "request"
        for name, raw in old.properties.items():
            prop_names = (*ctx.names, name)
            dotted = "/".join(prop_names)
            pointer = (*ctx.pointer, "properties", name)
            old_prop = view(self.old, raw)
            if name not in new.properties:
                if request:
                    if ctx.family != "request-parameter" and not old_prop.read_only:
                        ctx.report(
                            "request-property-removed", f"request property '{dotted}' removed", pointer, name
                        )
                elif not old_prop.write_only:
                    if name in old.required:
                        ctx.report(
                            "response-required-property-removed",
                            f"required response property '{dotted}' removed",
                            pointer,
                            name,
                        )
                    else:
                        ctx.report(
                            "response-optional-property-removed",
                            f"optional response property '{dotted}' removed",
                            pointer,
                            name,
                        )
                continue
            new_prop = view(self.new, new.properties[name])
            if request:
                if (
                    name in new.required
                    and name not in old.required
                    and not new_prop.read_only
                    and ctx.family != "request-parameter"
                ):
                    ctx.report(
                        "request-property-became-required",
                        f"request property '{dotted}' became required",
                        pointer,
                        "optional",
                        "required",
                    )
            elif name in old.required and name not in new.required and not new_prop.write_only:
                ctx.report(
                    "response-property-became-optional",
                    f"response property '{dotted}' became optional",
                    pointer,
                    "required",
                    "optional",
                )
            family = ctx.family if ctx.family == "request-parameter" else ctx.direction
            self.schema(
                ctx.direction,
                family,
                raw,
                new.properties[name],
                label=ctx.label,
                subject=ctx.subject,
                names=prop_names,
                pointer=pointer,
                stack=stack,
            )
        if request and ctx.family != "request-parameter":
            for name in sorted(new.required - set(old.properties)):
                raw = new.properties.get(name)
                if raw is not None and view(self.new, raw).read_only:
                    continue
                if name in old.required:  # required without a declared property before and after
                    continue
                dotted = "/".join((*ctx.names, name))
                ctx.report(
                    "new-required-request-property",
                    f"new required request property '{dotted}'",
                    (*ctx.pointer, "properties", name),
                    None,
                )


@dataclass
class _Ctx:
    differ: _Differ
    direction: str  # "request" | "response"
    family: str  # "request" | "response" | "request-parameter"
    label: str
    subject: str  # "request body application/json", "query parameter 'limit'", ...
    names: tuple[str, ...]  # property path below the schema root
    pointer: tuple[str, ...]

    def emit(self, suffix: str, keyword: str, change: str, expected: Any, actual: Any) -> None:
        """A schema-keyword rule: picks the body/property/parameter variant of the oasdiff id."""
        if self.family == "request-parameter":
            candidates = ["request-parameter"]
        elif self.names:
            candidates = [f"{self.direction}-property"]
        else:
            candidates = [f"{self.direction}-body", f"{self.direction}-property"]
        rule = next((f"{c}-{suffix}" for c in candidates if f"{c}-{suffix}" in RULES), None)
        if rule is None:  # oasdiff has no id for this change here: not reported
            return
        if self.names:
            what = f"{self.direction} property '{'/'.join(self.names)}'"
            if self.family == "request-parameter":
                what = f"{self.subject} property '{'/'.join(self.names)}'"
        else:
            what = self.subject
        self.differ.report(
            rule,
            self.label,
            f"{what}: {change}",
            location=_pointer(*self.pointer, keyword),
            expected=expected,
            actual=actual,
        )

    def report(
        self, rule: str, message: str, pointer: Sequence[str], expected: Any, actual: Any = None
    ) -> None:
        self.differ.report(
            rule,
            self.label,
            f"{message} in {self.subject}",
            location=_pointer(*pointer),
            expected=expected,
            actual=actual,
        )


def _accepts(wide: frozenset[str], narrow: frozenset[str]) -> bool:
    """Whether every value of the ``narrow`` types is a value of the ``wide`` types."""
    return all(t in wide or (t == "integer" and "number" in wide) for t in narrow)


def _param_schema(param: Mapping[str, Any]) -> Any:
    if "schema" in param:
        return param["schema"]
    content = param.get("content")
    if isinstance(content, Mapping):
        for media in content.values():
            if isinstance(media, Mapping):
                return media.get("schema")
    return None


def _media_schema(media: Any) -> Any:
    return media.get("schema") if isinstance(media, Mapping) else None


def _parse_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        return None


def diff_specs(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    old_name: str = "old",
    new_name: str = "new",
    today: dt.date | None = None,
) -> list[Finding]:
    """Every incompatibility of ``new`` for clients of ``old``, in document order."""
    differ = _Differ(Resolver(old, old_name), Resolver(new, new_name), today or dt.date.today())
    return differ.run()


def _sorted(findings: Iterable[Finding]) -> list[Finding]:
    order = {level: i for i, level in enumerate(LEVELS)}
    return sorted(findings, key=lambda f: (order.get(f.level, len(LEVELS)), f.operation or "", f.rule))


def render_table(findings: Iterable[Finding]) -> str:
    """LEVEL  RULE-ID  OPERATION  MESSAGE, errors first; ``no breaking changes`` when empty."""
    rows = [(f.level, f.rule, f.operation or "-", f.message) for f in _sorted(findings)]
    if not rows:
        return "no breaking changes"
    header = ("LEVEL", "RULE-ID", "OPERATION", "MESSAGE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]]).rstrip()
        for row in [header, *rows]
    )


def _iter_blocking(findings: Iterable[Finding], fail_on: str) -> Iterator[Finding]:
    limit = LEVELS.index(fail_on)
    return (f for f in findings if f.level in LEVELS and LEVELS.index(f.level) <= limit)


def diff_main(old: Path, new: Path, fail_on: str = "ERR", as_json: bool = False) -> int:
    """Print the diff of two spec files; 1 if any finding is at or above ``fail_on``, else 0."""
    level = fail_on.upper()
    if level not in LEVELS:
        raise UsageError(f"{fail_on!r} is not a valid --fail-on level; choose from {', '.join(LEVELS)}")
    findings = _sorted(diff_specs(load_spec(old), load_spec(new), old_name=str(old), new_name=str(new)))
    if as_json:
        print(json.dumps([f.to_dict() for f in findings], indent=2, default=str))
    else:
        print(render_table(findings))
    return 1 if any(True for _ in _iter_blocking(findings, level)) else 0
