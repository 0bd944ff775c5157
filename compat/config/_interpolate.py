"""``${VAR}`` / ``${VAR:-default}`` in string values, replaced from the environment when a file is loaded.

``$$`` is a literal ``$``; a ``$`` not followed by ``{`` or ``$`` is kept as it is. ``${VAR:-default}``
uses the default when ``VAR`` is unset or empty (as the shell and docker compose do); ``${VAR}`` with
``VAR`` unset is an error naming the key and the variable. Keys are never interpolated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from compat.config._check import Source, join

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FORMS = "write ${VAR} or ${VAR:-default}, and $$ for a literal $"


def interpolate_tree(src: Source, data: object, environ: Mapping[str, str], key: str = "") -> object:
    """A copy of ``data`` (tables, arrays, scalars) with every string interpolated."""
    if isinstance(data, str):
        return interpolate(src, data, key, environ)
    if isinstance(data, dict):
        return {k: interpolate_tree(src, v, environ, join(key, str(k))) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate_tree(src, v, environ, join(key, i)) for i, v in enumerate(data)]
    return data


def interpolate(src: Source, text: str, key: str, environ: Mapping[str, str]) -> str:
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        nxt = text[i + 1 : i + 2]
        if text[i] != "$" or nxt not in ("$", "{"):
            out.append(text[i])
            i += 1
            continue
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        end = text.find("}", i + 2)
        if end < 0:
            src.fail("unterminated ${ in value", key, text, _FORMS)
        out.append(_lookup(src, text, text[i + 2 : end], key, environ))
        i = end + 1
    return "".join(out)


def _lookup(src: Source, text: str, body: str, key: str, environ: Mapping[str, str]) -> str:
    name, sep, default = body.partition(":-")
    if not _NAME.match(name) or "${" in default:
        src.fail(f"invalid variable reference ${{{body}}}", key, text, f"{_FORMS} (no nesting)")
    value = environ.get(name)
    if sep and not value:
        return default
    if value is None:
        src.fail(
            f"environment variable {name} is not set",
            key,
            text,
            f"set {name} in the environment, or give a default: ${{{name}:-value}}",
        )
    return value
