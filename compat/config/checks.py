"""``[checks]``: which built-in checks run, their options (with documented defaults) and the noise rules.

Every option of every check is declared once in :data:`CHECK_OPTIONS` (type, default, bounds, one line of
help); the loader validates against it, and ``docs/configuration.md`` lists the same table. ::

    [checks]
    enabled = ["spec-diff", "contracts", "properties", "differential", "yoyo", "data", "canary"]

    [checks.noise]
    ignore = ["$..created_at", "$.meta"]      # JSON paths never compared
    unordered = ["$.tags"]                    # arrays compared as multisets
    ignore_headers = ["Date"]

    [checks.canary]
    max_error_rate_increase = 0.02
    dry_run = true                            # report, never fail (adopting a new check)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from compat.config._check import (
    Source,
    boolean,
    check_keys,
    glob_files,
    integer,
    join,
    number,
    string,
    string_list,
    table,
)
from compat.config.model import CHECK_NAMES, CheckConfig, Checks, Noise

_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


@dataclass(frozen=True)
class Option:
    """One option of a check: ``kind`` is int, float, bool, str, paths (globs) or strings."""

    kind: str
    default: object
    help: str
    lo: float | None = None
    hi: float | None = None


#: check -> option -> declaration. ``enabled`` and ``dry_run`` exist for every check.
CHECK_OPTIONS: dict[str, dict[str, Option]] = {
    "spec-diff": {},
    "contracts": {},
    "properties": {
        "examples": Option("int", 25, "generated cases per operation", 1, 10_000),
        "stateful_examples": Option(
            "int", 10, "stateful scenarios (chains of linked operations, up to 6 steps each)", 1, 10_000
        ),
    },
    "differential": {
        "examples": Option(
            "int", 5, "generated requests per operation (besides contracts and traffic)", 0, 1000
        ),
        "traffic": Option("paths", (), "recorded requests to replay: JSONL files or HAR files (globs)"),
        "reset_state": Option(
            "str",
            "",
            "provider state that resets data before each side of a state-changing request; "
            "without it (and without a contract's own state) such requests are skipped and listed",
        ),
        "calibrate": Option("bool", True, "learn noise from two baseline instances (A/B) before judging"),
        "max_requests": Option("int", 200, "cap on requests replayed per service", 1, 100_000),
    },
    "yoyo": {
        "page_size": Option("int", 2, "page size asked for when walking paginated lists", 1, 1000),
        "min_pages": Option(
            "int", 3, "items are created until a walk spans at least this many pages", 1, 100
        ),
        "max_pages": Option("int", 50, "a walk stops (and reports) after this many pages", 2, 10_000),
    },
    "data": {
        "max_operations": Option("int", 20, "write operations exercised per service", 1, 1000),
    },
    "canary": {
        "max_error_rate_increase": Option(
            "float", 0.02, "candidate 5xx rate may exceed the baseline's by this much (0.02 = 2 points)", 0, 1
        ),
        "max_p99_ratio": Option(
            "float", 2.0, "candidate p99 latency may be this many times the baseline's", 1
        ),
        "p99_slack_ms": Option("float", 100.0, "p99 differences below this many ms never fail", 0),
        "min_requests": Option("int", 50, "requests per version before judging; fewer is INCONCLUSIVE", 1),
        "bake_seconds": Option("float", 3.0, "background traffic runs at least this long in a stage", 0),
        "bake_requests": Option("int", 240, "background traffic sends at least this many requests", 0),
        "rate": Option(
            "float", 60.0, "background requests per second (per service under change)", 0.1, 10_000
        ),
    },
}

COMMON_KEYS = ("enabled", "dry_run")
NOISE_KEYS = ("ignore", "unordered", "ignore_headers")
CHECKS_KEYS = ("enabled", "noise", *CHECK_NAMES)


def default_check(name: str) -> CheckConfig:
    return CheckConfig(name=name, options={k: o.default for k, o in CHECK_OPTIONS[name].items()})


def load_checks(src: Source, raw: object) -> Checks:
    """Validate the ``[checks]`` table."""
    tbl = table(src, raw, "checks", "write a [checks] table")
    check_keys(src, tbl, CHECKS_KEYS, "checks")
    enabled = (
        set(string_list(src, tbl["enabled"], "checks.enabled", choices=CHECK_NAMES, unique=True))
        if "enabled" in tbl
        else set(CHECK_NAMES)
    )
    settings = {}
    for name in CHECK_NAMES:
        key = join("checks", name)
        sub = table(src, tbl[name], key, f"write a [checks.{name}] table") if name in tbl else {}
        allowed = (*COMMON_KEYS, *CHECK_OPTIONS[name])
        check_keys(src, sub, allowed, key)
        on = boolean(src, sub["enabled"], join(key, "enabled")) if "enabled" in sub else name in enabled
        if "enabled" in sub and "enabled" in tbl and on != (name in enabled):
            src.fail(
                "contradicts checks.enabled",
                join(key, "enabled"),
                sub["enabled"],
                f"checks.enabled {'lists' if name in enabled else 'omits'} {name!r}; say it in one place",
            )
        options = {
            opt: _option(src, sub[opt], join(key, opt), decl) if opt in sub else decl.default
            for opt, decl in CHECK_OPTIONS[name].items()
        }
        settings[name] = CheckConfig(
            name=name,
            enabled=on,
            dry_run=boolean(src, sub["dry_run"], join(key, "dry_run")) if "dry_run" in sub else False,
            options=options,
        )
    noise = _noise(src, tbl["noise"]) if "noise" in tbl else Noise()
    return Checks(settings=settings, noise=noise)


def _option(src: Source, value: object, key: str, decl: Option) -> object:
    lo = decl.lo
    hi = decl.hi
    if decl.kind == "int":
        return integer(
            src, value, key, lo=int(lo) if lo is not None else None, hi=int(hi) if hi is not None else None
        )
    if decl.kind == "float":
        below = hi + 1e-12 if hi is not None else None
        above = lo - 1e-12 if lo is not None else None
        return number(src, value, key, above=above, below=below)
    if decl.kind == "bool":
        return boolean(src, value, key)
    if decl.kind == "str":
        return string(src, value, key)
    if decl.kind == "paths":
        return glob_files(src, value, key)
    return tuple(string_list(src, value, key))


def _noise(src: Source, raw: object) -> Noise:
    from compat.checks._noise import PathSyntaxError, compile_path

    tbl = table(src, raw, "checks.noise", "write a [checks.noise] table")
    check_keys(src, tbl, NOISE_KEYS, "checks.noise")
    paths: dict[str, tuple[str, ...]] = {}
    for name in ("ignore", "unordered"):
        key = join("checks.noise", name)
        items = string_list(src, tbl.get(name, []), key, unique=True)
        for index, item in enumerate(items):
            try:
                compile_path(item)
            except PathSyntaxError as exc:
                src.fail("not a JSON path", join(key, index), item, str(exc))
        paths[name] = tuple(items)
    headers = string_list(
        src,
        tbl.get("ignore_headers", []),
        "checks.noise.ignore_headers",
        pattern=_HEADER,
        expected="an HTTP header name such as 'Date'",
    )
    return Noise(ignore=paths["ignore"], unordered=paths["unordered"], ignore_headers=tuple(headers))
