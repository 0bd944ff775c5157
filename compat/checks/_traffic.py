"""Recorded traffic for the ``differential`` check: JSONL or HAR files read into :class:`Recorded` requests.

Two formats, told apart by the file name (``.har`` / ``.jsonl``, ``.ndjson``) or, for any other name, by the
content (a JSON object with a ``log`` member is HAR, anything else is read as JSONL):

- **JSONL**: one JSON object per line: ``method`` (an HTTP method), ``path`` (``/orders?limit=5``: the
  query may be part of it; an absolute URL is cut to its path and query), optional ``headers`` (an object
  of name -> string) and optional ``body`` (any JSON value: sent as JSON, or a string: sent as is). Blank
  lines are skipped.
- **HAR** (HTTP Archive 1.2, what browsers and proxies export): ``log.entries[].request`` with ``method``,
  ``url`` (only its path and query are kept: the recorded host is not the box under test), ``headers``
  (a list of ``{"name", "value"}``) and ``postData.text``.

Only what the request *means* is kept: transport headers (``Host``, ``Content-Length``, ``Connection``,
HTTP/2 pseudo-headers …) are dropped, since they describe the recorded connection, not the request. A file
that does not parse raises :class:`~compat.errors.ConfigError` naming the file, the line (or the HAR entry)
and what is valid there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from compat.errors import ConfigError

#: headers of the recorded connection, not of the request: never replayed
TRANSPORT_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "proxy-connection",
        "accept-encoding",  # the replaying client picks its own
    }
)
_METHOD = re.compile(r"[A-Za-z]{1,20}\Z")
_JSONL_HINT = (
    'each line is a JSON object such as {"method": "GET", "path": "/orders?limit=5", '
    '"headers": {"Accept": "application/json"}, "body": {...}}'
)
_HAR_HINT = (
    'a HAR file is {"log": {"entries": [{"request": {"method": "GET", "url": "http://host/orders", '
    '"headers": [{"name": ..., "value": ...}], "postData": {"text": ...}}}]}}'
)


@dataclass(frozen=True)
class Recorded:
    """One recorded request: ``target`` is the path plus ``?query``; ``body`` is text or None."""

    method: str
    target: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    origin: str = ""  # "traffic.jsonl:3" or "session.har: log.entries[2]"


def load_traffic(paths: Iterable[Path]) -> list[Recorded]:
    """Every request of every file, in file order then line/entry order."""
    found: list[Recorded] = []
    for path in paths:
        found += load_file(Path(path))
    return found


def load_file(path: Path) -> list[Recorded]:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the traffic file: {exc.strerror or exc}", file=file) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", file=file) from exc
    suffix = path.suffix.lower()
    if suffix == ".har":
        return _har(text, file)
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl(text, file)
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return _jsonl(text, file)
        if isinstance(doc, dict) and "log" in doc:
            return _har(text, file)
    return _jsonl(text, file)


# -- JSONL ------------------------------------------------------------------------------------------------


def _jsonl(text: str, file: str) -> list[Recorded]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: not JSON ({exc})", file=file, hint=_JSONL_HINT) from exc
        if not isinstance(doc, dict):
            raise ConfigError(
                f"{where}: must be a JSON object", file=file, value=doc, has_value=True, hint=_JSONL_HINT
            )
        unknown = sorted(set(doc) - {"method", "path", "url", "headers", "body"})
        if unknown:
            raise ConfigError(
                f"{where}: unknown member(s) {', '.join(map(repr, unknown))}",
                file=file,
                hint="valid members are method, path, headers and body",
            )
        method = _method(doc.get("method"), file, where, _JSONL_HINT)
        raw_path = doc.get("path", doc.get("url"))
        target = _target(raw_path, file, f"{where}: path", "a path such as /orders?limit=5")
        headers = _header_object(doc.get("headers"), file, where)
        body = doc.get("body")
        text_body: str | None
        if body is None:
            text_body = None
        elif isinstance(body, str):
            text_body = body
        else:
            text_body = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        found.append(Recorded(method, target, headers, text_body, f"{Path(file).name}:{number}"))
    return found


def _header_object(raw: object, file: str, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}: headers must be an object of name -> string",
            file=file,
            value=raw,
            has_value=True,
            hint='e.g. "headers": {"Accept": "application/json"}',
        )
    headers = {}
    for name, value in raw.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(
                f"{where}: header {name!r} must be a string",
                file=file,
                value=value,
                has_value=True,
                hint='e.g. "headers": {"Accept": "application/json"}',
            )
        if _keep(name):
            headers[str(name)] = str(value)
    return headers


# -- HAR --------------------------------------------------------------------------------------------------


def _har(text: str, file: str) -> list[Recorded]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        where = f"line {line}: " if line else ""
        raise ConfigError(f"{where}not JSON ({exc})", file=file, hint=_HAR_HINT) from exc
    log = doc.get("log") if isinstance(doc, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise ConfigError("log.entries: must be a list of entries", file=file, hint=_HAR_HINT)
    found = []
    for index, entry in enumerate(entries):
        key = f"log.entries[{index}].request"
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict):
            raise ConfigError(f"{key}: must be an object", file=file, hint=_HAR_HINT)
        method = _method(request.get("method"), file, key, _HAR_HINT)
        target = _target(request.get("url"), file, f"{key}.url", "an absolute URL such as http://host/orders")
        headers: dict[str, str] = {}
        raw_headers = request.get("headers", [])
        if not isinstance(raw_headers, list):
            raise ConfigError(f"{key}.headers: must be a list", file=file, hint=_HAR_HINT)
        for n, header in enumerate(raw_headers):
            if (
                not isinstance(header, dict)
                or not isinstance(header.get("name"), str)
                or not isinstance(header.get("value"), str)
            ):
                raise ConfigError(
                    f"{key}.headers[{n}]: must be an object with string name and value",
                    file=file,
                    value=header,
                    has_value=True,
                    hint=_HAR_HINT,
                )
            if _keep(header["name"]):
                headers[header["name"]] = header["value"]
        body: str | None = None
        post = request.get("postData")
        if post is not None:
            if not isinstance(post, dict) or not isinstance(post.get("text", ""), str):
                raise ConfigError(
                    f"{key}.postData: must be an object whose text is a string", file=file, hint=_HAR_HINT
                )
            body = post.get("text") or None
            mime = post.get("mimeType")
            has_type = any(k.lower() == "content-type" for k in headers)
            if body is not None and isinstance(mime, str) and mime and not has_type:
                headers["Content-Type"] = mime
        found.append(Recorded(method, target, headers, body, f"{Path(file).name}: log.entries[{index}]"))
    return found


# -- shared -----------------------------------------------------------------------------------------------


def _method(raw: object, file: str, where: str, hint: str) -> str:
    if not isinstance(raw, str) or not _METHOD.match(raw):
        raise ConfigError(
            f"{where}: method must be an HTTP method such as GET or POST",
            file=file,
            value=raw,
            has_value=True,
            hint=hint,
        )
    return raw.upper()


def _target(raw: object, file: str, where: str, valid: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{where}: must be {valid}", file=file, value=raw, has_value=True)
    text = raw.strip()
    if text.startswith("/"):
        return text
    split = urlsplit(text)
    if split.scheme in ("http", "https") and split.netloc:
        return (split.path or "/") + (f"?{split.query}" if split.query else "")
    raise ConfigError(f"{where}: must be {valid}", file=file, value=raw, has_value=True)


def _keep(name: object) -> bool:
    text = str(name)
    return not text.startswith(":") and text.lower() not in TRANSPORT_HEADERS
