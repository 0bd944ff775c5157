"""A finding: one incompatibility, with the evidence to believe it and the command to reproduce it.

A finding reads like a good assertion: which check and rule, which stage and versions, which request,
what was expected and what came back, the seed, and a ``curl`` line that shows the problem again.
Secrets in headers (Authorization, Cookie, Set-Cookie, Proxy-Authorization and configured names) are
redacted wherever a finding is rendered.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

LEVELS = ("ERR", "WARN", "INFO")
SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})
REDACTED = "[redacted]"


@dataclass(frozen=True)
class Finding:
    check: str  # "contracts" | "properties" | "spec-diff" | …
    rule: str  # oasdiff rule id, schemathesis failure code, or the Pact interaction's description
    message: str  # one line: what is wrong, expected vs. got
    level: str = "ERR"  # ERR blocks promotion; WARN and INFO are reported
    stage: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)  # service -> version (or "a -> b")
    operation: str | None = None  # "GET /orders/{id}"
    request: Mapping[str, Any] | None = None  # {"method", "url", "headers", "body"}
    response: Mapping[str, Any] | None = None  # {"status", "headers", "body"}
    expected: str | None = None
    actual: str | None = None
    seed: int | None = None
    curl: str | None = None
    pending: bool = False  # a pending contract interaction: reported, never failing
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Stable across runs for the same problem (not for a different request or version)."""
        key = json.dumps(
            [
                self.check,
                self.rule,
                self.stage,
                self.operation,
                sorted(self.versions.items()),
                str(self.details.get("location", "")),  # two properties removed from one response differ
            ],
            sort_keys=True,
        )
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    @property
    def blocking(self) -> bool:
        return self.level == "ERR" and not self.pending

    def to_dict(self, redact: Iterable[str] = ()) -> dict[str, Any]:
        data = asdict(self)
        data["id"] = self.id
        names = SECRET_HEADERS | {h.lower() for h in redact}
        for part in ("request", "response"):
            if data.get(part) and isinstance(data[part].get("headers"), Mapping):
                data[part]["headers"] = redact_headers(data[part]["headers"], names)
        return data

    def render(self) -> str:
        """A few lines for a terminal or a pytest failure."""
        where = ", ".join(f"{s}={v}" for s, v in sorted(self.versions.items()))
        head = f"[{self.level}] {self.check}/{self.rule}"
        if self.stage:
            head += f" in stage {self.stage}"
        if where:
            head += f" ({where})"
        lines = [head, f"  {self.message}"]
        if self.operation:
            lines.append(f"  operation: {self.operation}")
        if self.expected is not None or self.actual is not None:
            lines.append(f"  expected: {self.expected}")
            lines.append(f"  actual:   {self.actual}")
        if self.seed is not None:
            lines.append(f"  seed: {self.seed}")
        if self.curl:
            lines.append(f"  reproduce: {self.curl}")
        return "\n".join(lines)


def redact_headers(headers: Mapping[str, Any], names: Iterable[str] = SECRET_HEADERS) -> dict[str, Any]:
    secret = {n.lower() for n in names}
    return {k: (REDACTED if k.lower() in secret else v) for k, v in headers.items()}


def to_curl(
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: str | bytes | None = None,
    *,
    redact: Iterable[str] = (),
) -> str:
    """A shell-safe curl command line (secret headers redacted)."""
    parts = ["curl", "-sS", "-i", "-X", method.upper()]
    names = SECRET_HEADERS | {h.lower() for h in redact}
    for key, value in (headers or {}).items():
        shown = REDACTED if key.lower() in names else value
        parts += ["-H", f"{key}: {shown}"]
    if body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        parts += ["--data-raw", text]
    parts.append(url)
    return " ".join(shlex.quote(p) for p in parts)
