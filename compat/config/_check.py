"""Validation helpers shared by the loader and the compose importer.

Every helper takes a :class:`Source` (the file being read) and the dotted key of the value it checks, and
either returns the value in its typed form or raises :class:`~compat.errors.ConfigError` with the file, the
key, the bad value and what would be valid. Raw values are whatever ``tomllib``/``yaml`` produced.
"""

from __future__ import annotations

import difflib
import glob
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from compat.errors import ConfigError

_UNSET = object()
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ENV_NAME_HINT = "environment variable names match [A-Za-z_][A-Za-z0-9_]*"
SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
SERVICE_NAME_HINT = "service names match [a-z][a-z0-9-]* (lower-case, DNS-safe), e.g. 'orders' or 'web-api'"
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
VERSION_NAME_HINT = "version names match [A-Za-z0-9][A-Za-z0-9_.-]*, e.g. 'v1' or '2.0-rc1'"


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def join(key: str, part: str | int) -> str:
    """The dotted key of ``part`` inside ``key``: ``services.orders`` + ``port``, ``tests`` + ``0``."""
    if isinstance(part, int):
        return f"{key}[{part}]"
    name = part if _BARE_KEY.match(part) else json.dumps(part)
    return f"{key}.{name}" if key else name


def type_name(value: object) -> str:
    """What a raw value is, in the config's words."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if value is None:
        return "empty (null)"
    return f"a {type(value).__name__}"


def choice_hint(value: object, choices: Sequence[str]) -> str:
    """``did you mean 'x'?`` when something is close, then the valid choices."""
    listed = f"choose one of: {', '.join(choices)}"
    if isinstance(value, str):
        close = difflib.get_close_matches(value, choices, n=1)
        if close:
            return f"did you mean {close[0]!r}? ({listed})"
    return listed


class Source:
    """A file being read: how errors name it, and the directory its relative paths are resolved against."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.display = display_path(path)
        self.root = path.parent

    def fail(
        self, problem: str, key: str | None, value: object = _UNSET, hint: str | None = None
    ) -> NoReturn:
        raise ConfigError(
            problem,
            file=self.display,
            key=key or None,
            value=None if value is _UNSET else value,
            has_value=value is not _UNSET,
            hint=hint,
        )

    def relative(self, path: Path) -> str:
        """``path`` as the user would write it in this file (relative to its directory when below it)."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)


# -- tables and keys ------------------------------------------------------------------------------------


def table(src: Source, value: object, key: str, hint: str | None = None) -> dict[str, object]:
    if not isinstance(value, dict):
        src.fail(f"expected a table, got {type_name(value)}", key, value, hint)
    return {str(k): v for k, v in value.items()}


def check_keys(
    src: Source,
    tbl: Mapping[str, object],
    allowed: Sequence[str],
    key: str,
    *,
    misplaced: Mapping[str, str] | None = None,
) -> None:
    """Reject keys not in ``allowed``: did-you-mean, a special hint for known misplacements, or the list."""
    for name in tbl:
        if name in allowed:
            continue
        close = difflib.get_close_matches(name, allowed, n=1)
        if misplaced and name in misplaced:
            hint = misplaced[name]
        elif close:
            hint = f"did you mean {close[0]!r}?"
        else:
            hint = f"valid keys here: {', '.join(allowed)}"
        src.fail("unknown key", join(key, name), name, hint)


# -- scalars --------------------------------------------------------------------------------------------


def string(
    src: Source,
    value: object,
    key: str,
    *,
    pattern: re.Pattern[str] | None = None,
    expected: str | None = None,
    choices: Sequence[str] | None = None,
    problem: str = "invalid value",
) -> str:
    """A non-empty string; one of ``choices``, or matching ``pattern`` (explained by ``expected``)."""
    if not isinstance(value, str):
        hint = choice_hint(value, choices) if choices else expected or "write it in quotes"
        src.fail(f"expected a string, got {type_name(value)}", key, value, hint)
    if choices is not None and value not in choices:
        src.fail("not a valid choice", key, value, choice_hint(value, choices))
    if not value:
        src.fail("must not be empty", key, value, expected)
    if pattern is not None and not pattern.match(value):
        src.fail(problem, key, value, expected)
    return value


def integer(src: Source, value: object, key: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (booleans are not integers) within ``lo``..``hi`` inclusive."""
    rng = _range_text(lo, hi)
    if isinstance(value, bool) or not isinstance(value, int):
        src.fail(
            f"expected an integer, got {type_name(value)}", key, value, f"write an integer {rng}".strip()
        )
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        src.fail("out of range", key, value, f"give an integer {rng}")
    return value


def _range_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"from {lo} to {hi}"
    if lo is not None:
        return f">= {lo}"
    if hi is not None:
        return f"<= {hi}"
    return ""


def number(
    src: Source, value: object, key: str, *, above: float | None = None, below: float | None = None
) -> float:
    """An int or float strictly between ``above`` and ``below`` (booleans are not numbers)."""
    bounds = " and ".join(
        part
        for part in (f"> {above:g}" if above is not None else "", f"< {below:g}" if below is not None else "")
        if part
    )
    if isinstance(value, bool) or not isinstance(value, int | float):
        src.fail(f"expected a number, got {type_name(value)}", key, value, f"write a number {bounds}".strip())
    if (above is not None and not value > above) or (below is not None and not value < below):
        src.fail("out of range", key, value, f"give a number {bounds}")
    return float(value)


def boolean(src: Source, value: object, key: str) -> bool:
    if not isinstance(value, bool):
        src.fail(f"expected a boolean, got {type_name(value)}", key, value, "write true or false (no quotes)")
    return value


def scalar_text(src: Source, value: object, key: str) -> str:
    """A string; integers and booleans are converted (``true``/``false``), anything else is an error."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    src.fail(f"expected a string, got {type_name(value)}", key, value, "write the value in quotes")


# -- collections ----------------------------------------------------------------------------------------


def array(src: Source, value: object, key: str, *, of: str = "strings") -> list[object]:
    if not isinstance(value, list):
        hint = f'write an array of {of}: ["…"]' if isinstance(value, str) else f"write an array of {of}"
        src.fail(f"expected an array of {of}, got {type_name(value)}", key, value, hint)
    return list(value)


def string_list(
    src: Source,
    value: object,
    key: str,
    *,
    pattern: re.Pattern[str] | None = None,
    expected: str | None = None,
    choices: Sequence[str] | None = None,
    unique: bool = False,
) -> list[str]:
    items = array(src, value, key)
    result: list[str] = []
    for index, item in enumerate(items):
        text = string(src, item, join(key, index), pattern=pattern, expected=expected, choices=choices)
        if unique and text in result:
            src.fail("listed twice", join(key, index), text, "list each name once")
        result.append(text)
    return result


def str_map(src: Source, value: object, key: str) -> dict[str, str]:
    """A table of environment-style entries: names ``[A-Za-z_][A-Za-z0-9_]*``, values string/int/bool."""
    tbl = table(src, value, key, 'write a table: { NAME = "value" }')
    result: dict[str, str] = {}
    for name, item in tbl.items():
        if not ENV_NAME.match(name):
            src.fail("invalid variable name", join(key, name), name, ENV_NAME_HINT)
        result[name] = scalar_text(src, item, join(key, name))
    return result


# -- paths ----------------------------------------------------------------------------------------------


def path_value(src: Source, value: object, key: str) -> Path:
    """A path string, resolved against the file's directory (not checked for existence)."""
    text = string(src, value, key, expected="write a path in quotes")
    return (src.root / os.path.expanduser(text)).resolve()


def existing_file(src: Source, value: object, key: str, *, suffixes: Sequence[str] | None = None) -> Path:
    path = path_value(src, value, key)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        src.fail("unsupported file type", key, value, f"expected a file ending in {', '.join(suffixes)}")
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "file not found"
        src.fail(what, key, value, f"looked for {path} (relative paths start at {src.root})")
    return path


def existing_dir(src: Source, value: object, key: str) -> Path:
    path = path_value(src, value, key)
    if not path.is_dir():
        what = "is a file, not a directory" if path.exists() else "directory not found"
        src.fail(what, key, value, f"looked for {path} (relative paths start at {src.root})")
    return path


def existing_paths(src: Source, value: object, key: str) -> tuple[Path, ...]:
    """A list of files or directories that must exist."""
    result: list[Path] = []
    for index, item in enumerate(array(src, value, key, of="paths")):
        path = path_value(src, item, join(key, index))
        if not path.exists():
            src.fail(
                "path not found",
                join(key, index),
                item,
                f"looked for {path} (relative paths start at {src.root})",
            )
        result.append(path)
    return tuple(result)


def glob_files(src: Source, value: object, key: str) -> tuple[Path, ...]:
    """Files matched by a list of globs (``**`` recurses); each glob must match at least one file."""
    found: list[Path] = []
    for index, item in enumerate(array(src, value, key, of="globs")):
        pattern = string(
            src, item, join(key, index), expected='write a glob in quotes, e.g. "contracts/*.json"'
        )
        full = os.path.join(src.root, os.path.expanduser(pattern))
        matches = sorted(Path(m).resolve() for m in glob.glob(full, recursive=True) if os.path.isfile(m))
        if not matches:
            src.fail("glob matches no file", join(key, index), pattern, f"looked for {full}")
        found.extend(m for m in matches if m not in found)
    return tuple(found)


def check_dockerfile(src: Source, context: Path, dockerfile: str, key: str) -> None:
    """The Dockerfile of a build exists (``dockerfile`` is relative to the context, as docker reads it)."""
    path = context / dockerfile
    if not path.is_file():
        src.fail(
            "Dockerfile not found",
            key,
            dockerfile,
            f"looked for {path}; `dockerfile` is relative to the build context {context}",
        )


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The first dependency cycle (``[a, b, a]``), visiting nodes and edges in the mapping's order."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done or node not in graph:
            return None
        path.append(node)
        for target in graph[node]:
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in graph:
        cycle = visit(start)
        if cycle:
            return cycle
    return None
