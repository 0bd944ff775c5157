"""The consumer-contract check: replay Pact contracts against one provider version.

A contract is a Pact file (specification v1 to v4) written by a consumer. :func:`verify` replays its
interactions against a running provider with pact-python's ``Verifier`` (the Rust Pact verifier: real
matching rules, generators, provider states) and reports one :class:`~compat.checks.finding.Finding` per
failed interaction: level ERR, or WARN with ``pending=True`` for a v4 interaction marked ``pending``.

Fail closed: when the verifier cannot decide (the provider does not answer, a provider state cannot be
set up, the verifier crashes) :func:`verify` raises :class:`~compat.errors.InfrastructureError`; it never
returns "no findings" for a run that did not happen. A contract that cannot be read raises
:class:`~compat.errors.ConfigError` naming the file.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from compat.checks.finding import Finding, to_curl
from compat.errors import ConfigError, InfrastructureError

CHECK = "contracts"
STATE_PATH = "/_compat/provider-states"
STATE_TIMEOUT = 10.0  # seconds for one state change
SUPPORTED_SPECS = (1, 2, 3, 4)
_SPEC_RE = re.compile(r"[vV]?(\d+)(?:\.\d+){0,2}")
_INDEX_RE = re.compile(r"\[\d+\]")
_ORDER = {"StatusMismatch": 0, "HeaderMismatch": 1, "BodyTypeMismatch": 2, "BodyMismatch": 3}

StateCallable = Callable[[str, dict[str, Any], str], object]


@dataclass(frozen=True)
class ProviderStateSetup:
    """How to put the provider into a contract's provider state: exactly one of the two.

    ``url``: an absolute URL the verifier POSTs ``{"state", "params", "action"}`` to.
    ``callable``: ``"module:function"`` (or ``"path/to/file.py:function"``), called as
    ``function(state, params, action)`` with ``action`` ``"setup"`` or ``"teardown"``.
    """

    url: str | None = None
    callable: str | None = None

    def __post_init__(self) -> None:
        if (self.url is None) == (self.callable is None):
            raise ConfigError(
                "a provider state setup needs exactly one of `url` and `callable`",
                value={"url": self.url, "callable": self.callable},
                has_value=True,
            )


# -- reading contracts ------------------------------------------------------------------------------------


def _spec_version(doc: Mapping[str, Any], file: str) -> int:
    metadata = doc.get("metadata")
    if metadata is None:
        return 2
    if not isinstance(metadata, Mapping):
        raise ConfigError("must be an object", file=file, key="metadata", value=metadata, has_value=True)
    raw: object = None
    key = "metadata.pactSpecification.version"
    for name in ("pactSpecification", "pact-specification", "pactSpecificationVersion"):
        if name in metadata:
            entry = metadata[name]
            key = f"metadata.{name}"
            if isinstance(entry, Mapping):
                raw, key = entry.get("version"), f"metadata.{name}.version"
            else:
                raw = entry
            break
    if raw is None:
        return 2  # no version: Pact readers assume v2
    text = str(raw).strip() if isinstance(raw, str | int | float) and not isinstance(raw, bool) else ""
    match = _SPEC_RE.fullmatch(text)
    if not match or int(match.group(1)) not in SUPPORTED_SPECS:
        raise ConfigError(
            "not a Pact specification version",
            file=file,
            key=key,
            value=raw,
            has_value=True,
            hint='use "2.0.0", "3.0.0" or "4.0" (Pact specifications 1 to 4)',
        )
    return int(match.group(1))


def _states(interaction: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The interaction's provider states as ``[{"name", "params"}]`` (v2's single ``providerState`` too)."""
    states = interaction.get("providerStates")
    if isinstance(states, list):
        return [
            {"name": str(s.get("name", "")), "params": dict(s.get("params") or {})}
            for s in states
            if isinstance(s, Mapping)
        ]
    single = interaction.get("providerState", interaction.get("provider_state"))
    return [{"name": single, "params": {}}] if isinstance(single, str) and single else []


#: matcher types of the Pact specification (v2 to v4)
MATCHERS = (
    "equality", "regex", "type", "min", "max", "minmax", "include", "integer", "decimal", "number",
    "timestamp", "time", "date", "datetime", "null", "boolean", "contentType", "values", "arrayContains",
    "statusCode", "notEmpty", "semver", "eachKey", "eachValue",
)  # fmt: skip


def _check_rules(rules: object, file: str, key: str) -> None:
    """Matching rules that the verifier would choke on mid-run are a usage error when the file is read:
    an unknown matcher, a regex that does not compile, a min/max that is not a count."""
    if not isinstance(rules, Mapping):
        raise ConfigError("matching rules must be an object", file=file, key=key, value=rules, has_value=True)
    for where, rule in _matchers(rules, key, file):
        kind = rule.get("match", "type" if ("min" in rule or "max" in rule) else None)
        if kind not in MATCHERS:
            import difflib

            close = difflib.get_close_matches(str(kind), MATCHERS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid matchers: {', '.join(MATCHERS)}"
            raise ConfigError(
                "unknown matcher", file=file, key=f"{where}.match", value=kind, has_value=True, hint=hint
            )
        if kind == "regex":
            pattern = rule.get("regex")
            if not isinstance(pattern, str):
                raise ConfigError("a regex matcher needs a regex string", file=file, key=f"{where}.regex")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(
                    f"the regex does not compile: {exc}",
                    file=file,
                    key=f"{where}.regex",
                    value=pattern,
                    has_value=True,
                ) from None
        for bound in ("min", "max"):
            value = rule.get(bound)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(
                    f"{bound} must be a count >= 0",
                    file=file,
                    key=f"{where}.{bound}",
                    value=value,
                    has_value=True,
                )


def _matchers(rules: Mapping[str, Any], key: str, file: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every matcher in v2 (``{"$.body.x": {...}}``) or v3/v4 (``{"body": {"$.x": {"matchers": [...]}}}``)
    matching rules, with the key path it sits at."""
    for name, value in rules.items():
        where = f"{key}.{name}"
        if not isinstance(value, Mapping):
            raise ConfigError(
                "a matching rule must be an object", file=file, key=where, value=value, has_value=True
            )
        if "matchers" in value or "match" in value or "min" in value or "max" in value:
            yield from _rule_list(value, where, file)
            continue
        for path, rule in value.items():  # v3/v4: a category (body, header, query) of paths
            inner = f"{where}.{path}"
            if not isinstance(rule, Mapping):
                raise ConfigError(
                    "a matching rule must be an object", file=file, key=inner, value=rule, has_value=True
                )
            yield from _rule_list(rule, inner, file)


def _rule_list(rule: Mapping[str, Any], where: str, file: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    matchers = rule.get("matchers")
    if matchers is None:
        yield where, rule
        return
    if not isinstance(matchers, list):
        raise ConfigError(
            "matchers must be a list", file=file, key=f"{where}.matchers", value=matchers, has_value=True
        )
    for index, matcher in enumerate(matchers):
        if not isinstance(matcher, Mapping):
            raise ConfigError("a matcher must be an object", file=file, key=f"{where}.matchers[{index}]")
        yield f"{where}.matchers[{index}]", matcher


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The raw document and its validated summary."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the contract: {exc.strerror or exc}", file=file) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", file=file) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", file=file
        ) from exc
    except RecursionError as exc:
        raise ConfigError("invalid JSON: nested too deeply", file=file) from exc
    if not isinstance(doc, dict):
        raise ConfigError(
            "a Pact contract must be a JSON object", file=file, value=type(doc).__name__, has_value=True
        )
    names: dict[str, str] = {}
    for role in ("consumer", "provider"):
        party = doc.get(role)
        if not isinstance(party, Mapping) or not isinstance(party.get("name"), str) or not party["name"]:
            raise ConfigError(
                f"missing the {role} name",
                file=file,
                key=f"{role}.name",
                hint=f'add "{role}": {{"name": ...}}',
            )
        names[role] = party["name"]
    interactions = doc.get("interactions")
    if not isinstance(interactions, list):
        raise ConfigError(
            "must be a list of interactions",
            file=file,
            key="interactions",
            value=type(interactions).__name__ if interactions is not None else None,
            has_value=True,
        )
    spec = _spec_version(doc, file)
    summary = []
    for n, interaction in enumerate(interactions):
        key = f"interactions[{n}]"
        if not isinstance(interaction, Mapping):
            raise ConfigError("an interaction must be an object", file=file, key=key)
        description = interaction.get("description")
        if not isinstance(description, str) or not description:
            raise ConfigError("an interaction needs a description", file=file, key=f"{key}.description")
        kind = interaction.get("type", "Synchronous/HTTP")
        if kind == "Synchronous/HTTP" and not isinstance(interaction.get("request"), Mapping):
            raise ConfigError("an HTTP interaction needs a request object", file=file, key=f"{key}.request")
        for part in ("request", "response"):
            section = interaction.get(part)
            if isinstance(section, Mapping) and "matchingRules" in section:
                _check_rules(section["matchingRules"], file, f"{key}.{part}.matchingRules")
        summary.append(
            {
                "description": description,
                "states": [s["name"] for s in _states(interaction)],
                "pending": interaction.get("pending") is True,
            }
        )
    return doc, {
        "consumer": names["consumer"],
        "provider": names["provider"],
        "spec_version": spec,
        "interactions": summary,
    }


def load_contract(path: Path) -> dict[str, Any]:
    """Parse and validate a Pact file.

    Returns ``{"consumer", "provider", "spec_version" (the major version, an int), "interactions":
    [{"description", "states", "pending"}]}``. Raises :class:`ConfigError` naming the file.
    """
    return _read(Path(path))[1]


def contracts_for(paths: Iterable[Path], provider: str) -> list[Path]:
    """The contracts among ``paths`` whose provider is ``provider`` (a bad file raises ConfigError)."""
    return [Path(p) for p in paths if load_contract(Path(p))["provider"] == provider]


# -- requests of an interaction ---------------------------------------------------------------------------


def _body(raw: object, spec: int) -> str | None:
    if raw is None:
        return None
    if spec >= 4 and isinstance(raw, Mapping) and "content" in raw:
        content = raw["content"]
        if raw.get("encoded") not in (None, False):  # base64 or similar: show as is
            return str(content)
        return content if isinstance(content, str) else json.dumps(content, separators=(",", ":"))
    return raw if isinstance(raw, str) else json.dumps(raw, separators=(",", ":"))


def _request(interaction: Mapping[str, Any], spec: int, base_url: str) -> dict[str, Any]:
    """The interaction's request against ``base_url``, as the contract's examples write it."""
    req = interaction.get("request") or {}
    method = str(req.get("method", "GET")).upper()
    path = str(req.get("path", "/")) or "/"
    query = req.get("query")
    if isinstance(query, Mapping):
        pairs = [
            (k, v) for k, vs in query.items() for v in (vs if isinstance(vs, list) else [vs]) if v is not None
        ]
        qs = urlencode(pairs)
    else:
        qs = str(query or "")
    headers = {
        str(k): ", ".join(map(str, v)) if isinstance(v, list) else str(v)
        for k, v in (req.get("headers") or {}).items()
    }
    url = base_url.rstrip("/") + (path if path.startswith("/") else "/" + path) + (f"?{qs}" if qs else "")
    return {
        "method": method,
        "url": url,
        "path": path,
        "headers": headers,
        "body": _body(req.get("body"), spec),
    }


# -- findings from the verifier's results -----------------------------------------------------------------


def _describe(mismatch: Mapping[str, Any]) -> str:
    kind = str(mismatch.get("type", ""))
    text = str(mismatch.get("mismatch", "")).strip()
    if kind == "BodyMismatch":
        path = _INDEX_RE.sub("[*]", str(mismatch.get("path", "$")))
        return f"body {path}: {text}"
    if kind == "StatusMismatch":
        return f"status: expected {mismatch.get('expected')}, got {mismatch.get('actual')}"
    if kind == "HeaderMismatch":
        return f"header {mismatch.get('key', '')}: {text}"
    if kind == "BodyTypeMismatch":
        return f"body type: {text}"
    return f"{kind or 'mismatch'}: {text}" if text else kind or "mismatch"


def _finding(
    interaction: Mapping[str, Any],
    result: Mapping[str, Any],
    *,
    spec: int,
    base_url: str,
    contract: Path,
    consumer: str,
    stage: str | None,
    versions: Mapping[str, str],
) -> Finding:
    request = _request(interaction, spec, base_url)
    detail = result.get("mismatch") or {}
    mismatches = sorted(
        (m for m in detail.get("mismatches", []) if isinstance(m, Mapping)),
        key=lambda m: _ORDER.get(str(m.get("type")), len(_ORDER)),
    )  # status first, then headers, then the body: the order a reader checks them in
    parts = list(dict.fromkeys(_describe(m) for m in mismatches))  # ordered, without the per-item repeats
    message = "; ".join(parts) if parts else str(detail.get("message") or "the interaction failed")
    first = mismatches[0] if mismatches else {}
    pending = result.get("pending") is True or interaction.get("pending") is True
    states = _states(interaction)
    return Finding(
        check=CHECK,
        rule=str(interaction.get("description")),
        message=message,
        level="WARN" if pending else "ERR",
        stage=stage,
        versions=dict(versions),
        operation=f"{request['method']} {request['path']}",
        request={k: request[k] for k in ("method", "url", "headers", "body")},
        expected=None if first.get("expected") is None else str(first["expected"]),
        actual=None if first.get("actual") is None else str(first["actual"]),
        curl=to_curl(request["method"], request["url"], request["headers"], request["body"]),
        pending=pending,
        details={
            "contract": str(contract),
            "consumer": consumer,
            "provider_states": states,
            "mismatches": [dict(m) for m in mismatches],
        },
    )


# -- provider state set-up by a Python callable ------------------------------------------------------------


def _resolve(spec: str) -> StateCallable:
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ConfigError(
            "a state callable is written module:function", key="callable", value=spec, has_value=True
        )
    try:
        if target.endswith(".py"):
            location = importlib.util.spec_from_file_location(f"_compat_states_{abs(hash(target))}", target)
            if location is None or location.loader is None:
                raise ImportError(f"cannot load {target}")
            module = importlib.util.module_from_spec(location)
            location.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        func = getattr(module, name)
    except (ImportError, AttributeError, OSError, SyntaxError) as exc:
        raise ConfigError(
            f"cannot import the state callable: {exc}", key="callable", value=spec, has_value=True
        ) from exc
    if not callable(func):
        raise ConfigError("the state callable is not callable", key="callable", value=spec, has_value=True)
    return func  # type: ignore[no-any-return]


@contextmanager
def _state_server(func: StateCallable, *, skip_generic: bool) -> Iterator[tuple[str, list[BaseException]]]:
    """A loopback HTTP endpoint that turns the verifier's state-change POSTs into calls of ``func``.

    A mapping that ``func`` returns is the answer: values for ``ProviderState`` generators.
    """
    errors: list[BaseException] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
                doc = json.loads(self.rfile.read(length) or b"{}")
                state = str(doc.get("state") or "")
                action = str(doc.get("action") or "setup")
                params = doc.get("params") or {}
                result = None
                if state or not skip_generic:  # "": Pact's generic set-up around every interaction
                    result = func(state, dict(params), action)
                status = 200
                answer = json.dumps(dict(result) if isinstance(result, Mapping) else {}).encode()
            except Exception as exc:
                errors.append(exc)
                status, answer = 400, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, args=(0.02,), name="compat-provider-states", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{STATE_PATH}", errors
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _forwarder(url: str) -> StateCallable:
    """POST the state change to the provider's own endpoint; its JSON object answer is the result."""

    def forward(state: str, params: dict[str, Any], action: str) -> object:
        body = json.dumps({"state": state, "params": params, "action": action}).encode()
        request = urllib.request.Request(  # noqa: S310 (the configured http(s) URL)
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=STATE_TIMEOUT) as response:  # noqa: S310
                text = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", "replace")
            raise RuntimeError(f"state {state!r} ({action}): HTTP {exc.code} {detail}".strip()) from exc
        except OSError as exc:
            raise RuntimeError(f"state {state!r} ({action}): {exc}") from exc
        try:
            return json.loads(text) if text.strip() else None
        except ValueError:
            return None

    return forward


# -- verification -----------------------------------------------------------------------------------------


def _probe(base_url: str, provider: str) -> None:
    split = urlsplit(base_url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ConfigError("the provider URL must be an absolute http(s) URL", value=base_url, has_value=True)
    port = split.port or (443 if split.scheme == "https" else 80)
    try:
        with socket.create_connection((split.hostname, port), timeout=5):
            pass
    except OSError as exc:
        raise InfrastructureError(f"provider {provider!r} is not reachable at {base_url}: {exc}") from exc


def verify(
    contract: Path,
    *,
    provider: str,
    base_url: str,
    states: ProviderStateSetup | None,
    stage: str | None = None,
    versions: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Replay ``contract`` against the provider at ``base_url``: one finding per failed interaction."""
    contract = Path(contract)
    doc, summary = _read(contract)
    if summary["provider"] != provider:
        raise ConfigError(
            f"the contract is for provider {summary['provider']!r}, not {provider!r}",
            file=str(contract),
            key="provider.name",
        )
    _probe(base_url, provider)
    os.environ.setdefault("PACT_DO_NOT_TRACK", "true")  # the verifier phones home otherwise
    if states is None:
        results, crash = _run(contract, provider, base_url, None)
    else:
        # Both kinds go through a local endpoint: the verifier retries a failed (5xx) state change for
        # minutes, so the endpoint answers every failure with a 400, which it does not retry.
        if states.callable is not None:
            func, what = _resolve(states.callable), f"the provider state callable {states.callable!r}"
        else:
            func, what = _forwarder(str(states.url)), f"the provider state endpoint {states.url}"
        with _state_server(func, skip_generic=states.callable is not None) as (state_url, state_errors):
            results, crash = _run(contract, provider, base_url, state_url)
        if state_errors:
            first = state_errors[0]
            raise InfrastructureError(f"{what} failed: {type(first).__name__}: {first}") from first
    return _findings(doc, summary, results, crash, contract, base_url, stage, versions or {})


def _run(
    contract: Path, provider: str, base_url: str, state_url: str | None
) -> tuple[dict[str, Any], str | None]:
    """Run the verifier; its JSON results and, when it reported failure, why."""
    try:
        from pact import Verifier

        verifier = Verifier(provider, host=urlsplit(base_url).hostname).add_transport(url=base_url)
        verifier.add_source(contract)
        if state_url is not None:
            verifier.state_handler(state_url, teardown=True, body=True)
    except Exception as exc:
        raise InfrastructureError(f"could not set up the Pact verifier for {contract}: {exc}") from exc
    crash: str | None = None
    try:
        verifier.verify()
    except RuntimeError as exc:  # also what a failed verification raises: the results say which
        crash = str(exc)
    except Exception as exc:
        raise InfrastructureError(f"the Pact verifier crashed on {contract}: {exc}") from exc
    try:
        results = verifier.results
    except Exception as exc:
        raise InfrastructureError(f"the Pact verifier gave no results for {contract}: {exc}") from exc
    if not isinstance(results, dict):
        raise InfrastructureError(f"the Pact verifier gave unexpected results for {contract}: {results!r}")
    return results, crash


def _findings(
    doc: Mapping[str, Any],
    summary: Mapping[str, Any],
    results: Mapping[str, Any],
    crash: str | None,
    contract: Path,
    base_url: str,
    stage: str | None,
    versions: Mapping[str, str],
) -> list[Finding]:
    spec = int(summary["spec_version"])
    raw = results.get("interactionResults")
    if not isinstance(raw, list):
        raise InfrastructureError(
            f"the Pact verifier reported no interaction results for {contract}: {crash}"
        )
    http = [i for i in doc["interactions"] if i.get("type", "Synchronous/HTTP") == "Synchronous/HTTP"]
    if http and not raw:
        output = "\n".join(map(str, results.get("output") or []))[-2000:]
        raise InfrastructureError(f"the Pact verifier verified nothing in {contract} ({crash}):\n{output}")
    # Results are keyed by description (and states); a contract may repeat a description: take in order.
    pool: dict[tuple[str, tuple[str, ...]], list[Mapping[str, Any]]] = {}
    for interaction in http:
        key = (str(interaction["description"]), tuple(s["name"] for s in _states(interaction)))
        pool.setdefault(key, []).append(interaction)
    findings: list[Finding] = []
    failed = False
    for result in raw:
        if not isinstance(result, Mapping) or result.get("result") == "OK":
            continue
        failed = True
        description = str(result.get("description", ""))
        key = (description, tuple(map(str, result.get("providerStates") or [])))
        candidates = pool.get(key) or [i for (d, _), found in pool.items() if d == description for i in found]
        mismatch = result.get("mismatch") or {}
        if mismatch.get("type") == "error" or not candidates:
            # The verifier could not decide: unreachable provider, failed state set-up, a crash.
            raise InfrastructureError(
                f"the Pact verifier could not verify {description!r} of {contract} against {base_url}: "
                f"{mismatch.get('message') or result.get('result')}"
            )
        interaction = candidates.pop(0) if len(candidates) > 1 else candidates[0]
        findings.append(
            _finding(
                interaction,
                result,
                spec=spec,
                base_url=base_url,
                contract=contract,
                consumer=str(summary["consumer"]),
                stage=stage,
                versions=versions,
            )
        )
    if crash is not None and not failed:
        raise InfrastructureError(
            f"the Pact verifier failed on {contract} without a failed interaction: {crash}"
        )
    return findings
