"""Comparing two answers to the same request, modulo noise: the core of ``differential`` and ``data``.

An answer is a :class:`Snapshot` (status, headers, parsed body). Two snapshots are compared after
*normalising* their bodies with :class:`NoiseRules` (declared in ``[checks.noise]``): values at ignored JSON
paths are dropped, arrays declared unordered are sorted by their canonical JSON. The remaining differences
are :class:`Difference` objects with a concrete path (``$.items[3].id``) and a pattern (``$.items[*].id``)
that noise learned elsewhere (A/B calibration) is matched against.

JSON paths, as written in config: ``$`` the document, ``.name`` or ``['odd name']`` a member, ``[3]`` an
index, ``[*]`` / ``.*`` any index or member, ``..name`` ``name`` at any depth. A path covers everything below
it: ignoring ``$.meta`` ignores ``$.meta.took_ms``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

#: headers compared by default (others are transport detail); configured names are added
COMPARED_HEADERS = ("content-type",)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_MISSING = object()


class PathSyntaxError(ValueError):
    """A JSON path that this module cannot read; the message says what is valid."""


def member(parent: str, key: str) -> str:
    """The concrete path of ``parent``'s member ``key``."""
    if _IDENT.fullmatch(key):
        return f"{parent}.{key}"
    return f"{parent}[{json.dumps(key)}]"


def generalize(path: str) -> str:
    """``$.items[3].id`` -> ``$.items[*].id``: the pattern noise is learned and matched by."""
    return re.sub(r"\[\d+\]", "[*]", path)


def compile_path(pattern: str) -> re.Pattern[str]:
    """A regex matching the concrete paths ``pattern`` covers (the path itself and everything below)."""
    text = pattern.strip()
    if not text.startswith("$"):
        raise PathSyntaxError(
            f"JSON path {pattern!r} must start with $ (e.g. $.items[*].id or $..created_at)"
        )
    out = [r"\$"]
    pos = 1
    any_segment = r"(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[(?:\d+|\"(?:[^\"\\]|\\.)*\")\])"
    while pos < len(text):
        rest = text[pos:]
        if rest.startswith(".."):
            found = _IDENT.match(rest, 2)
            if not found:
                raise PathSyntaxError(f"JSON path {pattern!r}: `..` must be followed by a member name")
            out.append(f"{any_segment}*" + _member_regex(found.group()))
            pos += found.end()
        elif rest.startswith(".*") or rest.startswith("[*]"):
            out.append(any_segment)
            pos += 2 if rest.startswith(".*") else 3
        elif rest.startswith("."):
            found = _IDENT.match(rest, 1)
            if not found:
                raise PathSyntaxError(
                    f"JSON path {pattern!r}: a member name must follow `.` at position {pos} "
                    "(quote odd names: ['my name'])"
                )
            out.append(_member_regex(found.group()))
            pos += found.end()
        elif rest.startswith("["):
            found = re.match(r"\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]", rest)
            if not found:
                raise PathSyntaxError(
                    f"JSON path {pattern!r}: bad bracket at position {pos}; use [3], [*] or ['name']"
                )
            if found.group(1) is not None:
                out.append(r"\[" + found.group(1) + r"\]")
            else:
                name = found.group(2) if found.group(2) is not None else found.group(3)
                out.append(_member_regex(name))
            pos += found.end()
        else:
            raise PathSyntaxError(f"JSON path {pattern!r}: unexpected {rest[0]!r} at position {pos}")
    return re.compile("".join(out) + r"(?=$|[.\[])")


def _member_regex(name: str) -> str:
    forms = [re.escape("." + name)] if _IDENT.fullmatch(name) else []
    forms.append(re.escape(f"[{json.dumps(name)}]"))
    return "(?:" + "|".join(forms) + ")"


@dataclass(frozen=True)
class NoiseRules:
    """Declared noise: JSON paths to ignore, arrays to compare as sets, headers to ignore."""

    ignore: tuple[str, ...] = ()
    unordered: tuple[str, ...] = ()
    ignore_headers: tuple[str, ...] = ()

    @cached_property
    def _ignore(self) -> list[re.Pattern[str]]:
        return [compile_path(p) for p in self.ignore]

    @cached_property
    def _unordered(self) -> list[re.Pattern[str]]:
        return [compile_path(p) for p in self.unordered]

    def check(self) -> None:
        """Raise :class:`PathSyntaxError` for the first path that does not parse."""
        for path in (*self.ignore, *self.unordered):
            compile_path(path)

    def ignored(self, path: str) -> bool:
        return any(p.match(path) for p in self._ignore)

    def is_unordered(self, path: str) -> bool:
        return any(p.fullmatch(path) for p in self._unordered)

    def normalize(self, doc: Any, path: str = "$") -> Any:
        """``doc`` without ignored members and with unordered arrays sorted (canonical JSON order)."""
        if isinstance(doc, Mapping):
            return {
                k: self.normalize(v, member(path, str(k)))
                for k, v in doc.items()
                if not self.ignored(member(path, str(k)))
            }
        if isinstance(doc, list):
            items = [
                self.normalize(v, f"{path}[{i}]")
                for i, v in enumerate(doc)
                if not self.ignored(f"{path}[{i}]")
            ]
            if self.is_unordered(path):
                items.sort(key=canonical)
            return items
        return doc


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Difference:
    """One place where two answers differ.

    ``kind``: ``status`` / ``header`` / ``changed`` (same path, other value) / ``type`` (other JSON type) /
    ``missing`` (the second answer lacks it) / ``added`` (only the second answer has it) / ``length``
    (arrays of different lengths; the extra elements are also reported as missing/added).
    """

    path: str
    kind: str
    first: Any = None
    second: Any = None

    @property
    def pattern(self) -> str:
        return generalize(self.path)

    @property
    def additive(self) -> bool:
        """Only the second answer has this member: a compatible addition, not a break."""
        return self.kind == "added" and not self.path.startswith("header:")

    def describe(self, first: str = "baseline", second: str = "candidate") -> str:
        if self.kind == "missing":
            return f"{self.path}: {first} has {_short(self.first)}, {second} lacks it"
        if self.kind == "added":
            return f"{self.path}: only {second} has it ({_short(self.second)})"
        return f"{self.path}: {first} {_short(self.first)} != {second} {_short(self.second)}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "first": self.first, "second": self.second}


def _short(value: Any, limit: int = 80) -> str:
    text = canonical(value) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def diff_json(first: Any, second: Any, path: str = "$") -> Iterator[Difference]:
    """Every difference between two JSON documents, depth first, keys in a stable order."""
    if isinstance(first, Mapping) and isinstance(second, Mapping):
        for key in sorted(set(first) | set(second), key=str):
            where = member(path, str(key))
            a, b = first.get(key, _MISSING), second.get(key, _MISSING)
            if a is _MISSING:
                yield Difference(where, "added", None, b)
            elif b is _MISSING:
                yield Difference(where, "missing", a, None)
            else:
                yield from diff_json(a, b, where)
        return
    if isinstance(first, list) and isinstance(second, list):
        if len(first) != len(second):
            yield Difference(path, "length", len(first), len(second))
        for index in range(max(len(first), len(second))):
            where = f"{path}[{index}]"
            if index >= len(second):
                yield Difference(where, "missing", first[index], None)
            elif index >= len(first):
                yield Difference(where, "added", None, second[index])
            else:
                yield from diff_json(first[index], second[index], where)
        return
    if _json_type(first) != _json_type(second):
        yield Difference(path, "type", first, second)
    elif first != second:
        yield Difference(path, "changed", first, second)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


@dataclass(frozen=True)
class Snapshot:
    """One answer: status (None when the request failed outright), headers, body (JSON or text)."""

    status: int | None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    error: str | None = None  # why there is no answer (connection refused, timeout)
    answered_by: str = ""

    @classmethod
    def of(cls, response: Any) -> Snapshot:
        """From a ``requests.Response``."""
        from compat.client import answered_by

        body: Any
        text = response.text
        try:
            body = response.json() if text.strip() else None
        except ValueError:
            body = text
        return cls(response.status_code, dict(response.headers), body, None, answered_by(response))

    @classmethod
    def failed(cls, error: BaseException | str) -> Snapshot:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return cls(None, {}, None, text)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "headers": dict(self.headers), "body": self.body, "error": self.error}


def compare(
    first: Snapshot,
    second: Snapshot,
    rules: NoiseRules = NoiseRules(),
    *,
    headers: Iterable[str] = COMPARED_HEADERS,
) -> list[Difference]:
    """Differences between two answers: status, compared headers, then the normalised bodies."""
    found: list[Difference] = []
    if first.status != second.status:
        found.append(
            Difference("status", "status", first.status or first.error, second.status or second.error)
        )
    ignored = {h.lower() for h in rules.ignore_headers}
    for name in headers:
        if name.lower() in ignored:
            continue
        a, b = first.header(name), second.header(name)
        if a is not None and b is not None:
            a, b = a.split(";")[0].strip().lower(), b.split(";")[0].strip().lower()
        if a != b:
            found.append(Difference(f"header:{name.lower()}", "header", a, b))
    found += diff_json(rules.normalize(first.body), rules.normalize(second.body))
    return found


def covered(difference: Difference, noise: Iterable[str]) -> bool:
    """Whether learned noise (generalized paths) covers ``difference`` (its path or an ancestor)."""
    pattern = difference.pattern
    for learned in noise:
        if pattern == learned or pattern.startswith(learned + ".") or pattern.startswith(learned + "["):
            return True
    return False
