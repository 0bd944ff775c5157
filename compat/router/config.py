"""The router's configuration: a JSON-able dict in, a validated frozen :class:`RouterConfig` out.

Every error names the key path, the bad value and the valid choices, e.g.::

    router config: `policy`: 'rr' is not valid; choose one of: pinned, round-robin, sticky, weighted, yoyo

Standard library only (this package is copied alone into the router's container).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

POLICIES: tuple[str, ...] = ("round-robin", "weighted", "sticky", "yoyo", "pinned")
FALLBACK_POLICIES: tuple[str, ...] = tuple(p for p in POLICIES if p != "pinned")
DEFAULT_SESSION_HEADER = "X-Compat-Session"
DEFAULT_PIN_HEADER = "X-Compat-Pin"
#: a request may ask for another policy than the stage's (round-robin, weighted, sticky, yoyo) by name;
#: forwarded like the pin, so every routed hop behind the entry point follows it
POLICY_HEADER = "X-Compat-Policy"

CONFIG_KEYS: tuple[str, ...] = (
    "service",
    "upstreams",
    "policy",
    "fallback",
    "seed",
    "weights",
    "session_header",
    "session_cookie",
    "pin_header",
    "faults",
    "upstream_timeout",
)
# keys `PUT /_compat/router/config` and `Router.update()` may change on a running router
UPDATABLE_KEYS: tuple[str, ...] = tuple(k for k in CONFIG_KEYS if k != "service")
UPSTREAM_KEYS: tuple[str, ...] = ("name", "version", "address", "role")
FAULT_KEYS: tuple[str, ...] = ("delay_ms", "error_status", "error_rate", "drop_rate")

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP header field name (RFC 7230 token)


class RouterConfigError(ValueError):
    """A router configuration problem: ``key`` (a dotted path), the bad ``value`` and a ``hint``."""

    def __init__(self, key: str, value: object, problem: str, hint: str = "") -> None:
        self.key = key
        self.value = value
        self.problem = problem
        self.hint = hint
        text = f"router config: `{key}`: {value!r} {problem}" if key else f"router config: {problem}"
        super().__init__(f"{text}; {hint}" if hint else text)

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"error": str(self), "key": self.key, "problem": self.problem}
        if _jsonable(self.value):
            body["value"] = self.value
        if self.hint:
            body["hint"] = self.hint
        return body


@dataclass(frozen=True)
class Upstream:
    """One replica: an instance ``name`` of service version ``version`` listening on ``address``."""

    name: str
    version: str
    address: str  # "host:port"
    role: str = ""

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "address": self.address, "role": self.role}


@dataclass(frozen=True)
class Fault:
    """Faults injected in front of one upstream (see the package docstring for the dice)."""

    delay_ms: float = 0.0
    error_status: int = 503
    error_rate: float = 0.0
    drop_rate: float = 0.0

    @property
    def active(self) -> bool:
        return self.delay_ms > 0 or self.error_rate > 0 or self.drop_rate > 0

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RouterConfig:
    """A validated router configuration. Build it with :meth:`from_dict`; change it with :meth:`updated`."""

    upstreams: tuple[Upstream, ...]
    policy: str = "round-robin"
    fallback: str = "round-robin"  # the policy `pinned` uses for requests without a pin
    seed: int = 0
    weights: Mapping[str, float] = field(default_factory=dict)  # version -> weight (weighted, sticky)
    session_header: str = DEFAULT_SESSION_HEADER
    session_cookie: str | None = None
    pin_header: str = DEFAULT_PIN_HEADER
    faults: Mapping[str, Fault] = field(default_factory=dict)  # instance name or version -> Fault
    upstream_timeout: float = 60.0  # seconds to connect to / wait on an upstream
    service: str = ""  # informational: the service this router fronts

    @property
    def versions(self) -> tuple[str, ...]:
        """The distinct versions, in the order of their first upstream."""
        return tuple(dict.fromkeys(u.version for u in self.upstreams))

    def fault_for(self, upstream: Upstream) -> Fault | None:
        """The fault for an instance: its own entry wins over its version's."""
        found = self.faults.get(upstream.name) or self.faults.get(upstream.version)
        return found if found is not None and found.active else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "upstreams": [u.as_dict() for u in self.upstreams],
            "policy": self.policy,
            "fallback": self.fallback,
            "seed": self.seed,
            "weights": dict(self.weights),
            "session_header": self.session_header,
            "session_cookie": self.session_cookie,
            "pin_header": self.pin_header,
            "faults": {k: f.as_dict() for k, f in self.faults.items()},
            "upstream_timeout": self.upstream_timeout,
        }

    @classmethod
    def from_dict(cls, data: object) -> RouterConfig:
        """Validate a JSON-like mapping (unknown keys are errors, not ignored)."""
        raw = _mapping(data, "")
        _known_keys(raw, CONFIG_KEYS, "")
        if "upstreams" not in raw:
            raise RouterConfigError(
                "upstreams", None, "is missing", 'give a list of {"name", "version", "address"} objects'
            )
        upstreams = _upstreams(raw["upstreams"])
        versions = tuple(dict.fromkeys(u.version for u in upstreams))
        names = tuple(u.name for u in upstreams)
        policy = _choice(raw.get("policy", "round-robin"), "policy", POLICIES)
        fallback = _choice(raw.get("fallback", "round-robin"), "fallback", FALLBACK_POLICIES)
        seed = raw.get("seed", 0)
        if seed is None:
            seed = 0
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise RouterConfigError("seed", seed, "is not an integer", "give a whole number, e.g. 0")
        weights = _weights(raw.get("weights") or {}, versions)
        if policy == "weighted" and weights and not any(weights.get(v, 0.0) > 0 for v in versions):
            raise RouterConfigError("weights", dict(weights), "gives every version weight 0")
        session_header = _header_name(raw.get("session_header", DEFAULT_SESSION_HEADER), "session_header")
        pin_header = _header_name(raw.get("pin_header", DEFAULT_PIN_HEADER), "pin_header")
        cookie = raw.get("session_cookie")
        if cookie is not None:
            cookie = _header_name(cookie, "session_cookie")
        timeout = raw.get("upstream_timeout", 60.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
            raise RouterConfigError("upstream_timeout", timeout, "is not a number of seconds in (0, 3600]")
        service = raw.get("service", "")
        if not isinstance(service, str):
            raise RouterConfigError("service", service, "is not a string")
        return cls(
            upstreams=upstreams,
            policy=policy,
            fallback=fallback,
            seed=seed,
            weights=weights,
            session_header=session_header,
            session_cookie=cookie,
            pin_header=pin_header,
            faults=_faults(raw.get("faults") or {}, names, versions),
            upstream_timeout=float(timeout),
            service=service,
        )

    def updated(self, changes: object) -> RouterConfig:
        """A new config with the top-level keys of ``changes`` replaced, validated as a whole.

        ``service`` is accepted when it is unchanged (so a whole config from ``GET config`` can be PUT back).
        """
        raw = _mapping(changes, "")
        _known_keys(raw, CONFIG_KEYS, "")
        if "service" in raw and raw["service"] != self.service:
            raise RouterConfigError(
                "service", raw["service"], "cannot change on a running router", f"it fronts {self.service!r}"
            )
        merged = self.as_dict()
        merged.update(raw)
        return RouterConfig.from_dict(merged)


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> ``(host, port)``; raises ``ValueError``."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


def choice_hint(choices: tuple[str, ...] | list[str]) -> str:
    return "choose one of: " + ", ".join(sorted(choices))


def _jsonable(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


def _mapping(value: object, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise RouterConfigError(key, value, "is not an object with string keys", "give a JSON object")
    return value


def _known_keys(raw: Mapping[str, Any], valid: tuple[str, ...], prefix: str) -> None:
    for key in raw:
        if key not in valid:
            raise RouterConfigError(_join(prefix, key), raw[key], "is not a known key", choice_hint(valid))


def _join(prefix: str, key: object) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def _choice(value: object, key: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise RouterConfigError(key, value, "is not valid", choice_hint(choices))
    return value


def _header_name(value: object, key: str) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise RouterConfigError(key, value, "is not a valid header/cookie name", "e.g. X-Compat-Session")
    return value


def _upstreams(value: object) -> tuple[Upstream, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise RouterConfigError("upstreams", value, "is not a non-empty list", "give at least one upstream")
    found: list[Upstream] = []
    for index, item in enumerate(value):
        key = _join("upstreams", index)
        if isinstance(item, Upstream):
            item = item.as_dict()
        raw = _mapping(item, key)
        _known_keys(raw, UPSTREAM_KEYS, key)
        fields: dict[str, str] = {}
        for name in ("name", "version", "address"):
            text = raw.get(name)
            if not isinstance(text, str) or not text.strip():
                raise RouterConfigError(_join(key, name), text, "is missing or not a non-empty string")
            fields[name] = text.strip()
        try:
            split_address(fields["address"])
        except ValueError:
            raise RouterConfigError(
                _join(key, "address"), fields["address"], "is not host:port", "e.g. 127.0.0.1:8001"
            ) from None
        role = raw.get("role", "")
        if not isinstance(role, str):
            raise RouterConfigError(_join(key, "role"), role, "is not a string")
        if any(u.name == fields["name"] for u in found):
            raise RouterConfigError(_join(key, "name"), fields["name"], "is a duplicate instance name")
        found.append(Upstream(role=role, **fields))
    return tuple(found)


def _rate(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise RouterConfigError(key, value, "is not a rate between 0 and 1")
    return float(value)


def _weights(value: object, versions: tuple[str, ...]) -> dict[str, float]:
    raw = _mapping(value, "weights")
    weights: dict[str, float] = {}
    for version, weight in raw.items():
        key = _join("weights", version)
        if version not in versions:
            raise RouterConfigError(key, weight, f"names unknown version {version!r}", choice_hint(versions))
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or weight < 0
        ):
            raise RouterConfigError(key, weight, "is not a finite number >= 0")
        weights[version] = float(weight)
    return weights


def _faults(value: object, names: tuple[str, ...], versions: tuple[str, ...]) -> dict[str, Fault]:
    raw = _mapping(value, "faults")
    faults: dict[str, Fault] = {}
    for target, spec in raw.items():
        key = _join("faults", target)
        if target not in names and target not in versions:
            raise RouterConfigError(
                key, target, "is neither an upstream name nor a version", choice_hint([*names, *versions])
            )
        tbl = _mapping(spec, key)
        _known_keys(tbl, FAULT_KEYS, key)
        delay = tbl.get("delay_ms", 0)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 600_000:
            raise RouterConfigError(
                _join(key, "delay_ms"), delay, "is not a delay in ms between 0 and 600000"
            )
        status = tbl.get("error_status", 503)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise RouterConfigError(
                _join(key, "error_status"), status, "is not an HTTP error status 400..599"
            )
        error_rate = _rate(tbl.get("error_rate", 0.0), _join(key, "error_rate"))
        drop_rate = _rate(tbl.get("drop_rate", 0.0), _join(key, "drop_rate"))
        if error_rate + drop_rate > 1.0:
            raise RouterConfigError(
                key, {"error_rate": error_rate, "drop_rate": drop_rate}, "has error_rate + drop_rate > 1"
            )
        faults[target] = Fault(
            delay_ms=float(delay), error_status=status, error_rate=error_rate, drop_rate=drop_rate
        )
    return faults
