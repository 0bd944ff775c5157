"""The property check: schemathesis cases from the *baseline* spec, sent to the candidate (or a mixed fleet).

Every request is generated from the old (baseline) spec and its response is validated against that same spec,
so a finding means "a client written against the old spec sees something the old spec does not allow".

How it runs (deterministic for a given spec, seed and server behaviour):

1. **Stateless phase.** For each operation (in spec order, optionally filtered by ``options.operations``), a
   Hypothesis run over ``operation.as_strategy()`` with ``@seed(options.seed)``, ``database=None``, only the
   *generate* phase (no shrinking, no replay of stored examples) and ``max_examples``. The test body never
   raises, so Hypothesis never switches into shrinking and the request sequence depends only on the seed.
2. **Stateful phase** (``options.stateful`` and the spec has OpenAPI links): ``schema.as_state_machine()``
   subclassed to send to ``base_url``, run with the same seed, ``stateful_examples`` scenarios of at most
   ``STATEFUL_STEPS`` steps. Server-generated values (ids from ``$response.body#/id``) flow into later
   requests, so URLs differ between runs only where the server's own answers differ.

Findings are deduplicated by (operation, failure code): one :class:`Finding` per distinct failure, the first
request that showed it (with its ``curl``) as the evidence.

``positive_data_acceptance`` and opaque parameters: the check says "a request the spec calls valid must not be
rejected". A parameter documented as *opaque* (e.g. a paging cursor: any string is schema-valid, but only the
server's own tokens are meaningful) makes that promise false for random strings, so for a case that carries a
value for an opaque parameter the check is **not applied** (every other check still is: a random cursor must
still not cause a 500 or an undocumented status). A parameter is opaque when it is named in
``options.opaque_parameters`` (``"cursor"`` or ``"GET /orders cursor"``), carries ``x-opaque: true``, or its
description contains the word "opaque". Cases without such values are still checked, so a request body that
the old spec accepts and the candidate rejects (422) is still found.

Connection problems (refused, reset, timeout) raise :class:`~compat.errors.InfrastructureError`: an
unreachable server is never "no findings".
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import requests

from compat.checks.finding import REDACTED, SECRET_HEADERS, Finding, redact_headers
from compat.errors import ConfigError, InfrastructureError, UsageError

CHECK = "properties"
DEFAULT_CHECKS: tuple[str, ...] = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "positive_data_acceptance",
)
STATEFUL_STEPS = 6  # steps per stateful scenario (Hypothesis' stateful_step_count)
BODY_PREVIEW = 500  # characters of a request/response body kept in a finding
_OPAQUE_WORD = re.compile(r"\bopaque\b", re.IGNORECASE)

OnRequest = Callable[[str, str], None]


@dataclass(frozen=True)
class PropertyOptions:
    max_examples: int = 25  # per operation (stateless)
    stateful_examples: int | None = None  # stateful scenarios (None: max_examples)
    seed: int = 0
    checks: tuple[str, ...] = DEFAULT_CHECKS
    stateful: bool = True
    operations: tuple[str, ...] = ()  # only these, e.g. ("GET /orders", "POST /orders"); empty: all
    timeout: float = 10.0  # seconds per request
    # parameters whose schema-valid random values may legitimately be rejected (see the module doc)
    opaque_parameters: tuple[str, ...] = field(default=())


def run_properties(
    spec: Path,
    base_url: str,
    options: PropertyOptions,
    *,
    stage: str | None = None,
    versions: Mapping[str, str] | None = None,
    on_request: OnRequest | None = None,
) -> list[Finding]:
    """Generate requests from the baseline ``spec``, send them to ``base_url``, validate against ``spec``."""
    run = _Run(spec, base_url.rstrip("/"), options, stage, dict(versions or {}), on_request)
    return run.execute()


# -- implementation -----------------------------------------------------------------------------------------


class _RecordingSession(requests.Session):
    """A session that reports every request it sends (after schemathesis has prepared it)."""

    def __init__(self, on_request: OnRequest | None) -> None:
        super().__init__()
        self._on_request = on_request

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if self._on_request is not None:
            self._on_request(str(request.method), str(request.url))
        return super().send(request, **kwargs)


class _Run:
    def __init__(
        self,
        spec: Path,
        base_url: str,
        options: PropertyOptions,
        stage: str | None,
        versions: dict[str, str],
        on_request: OnRequest | None,
    ) -> None:
        self.spec = Path(spec)
        self.base_url = base_url
        self.options = options
        self.stage = stage
        self.versions = versions
        self.session = _RecordingSession(on_request)
        self.findings: dict[tuple[str, str], Finding] = {}
        self.requests_sent = 0
        self.infra_error: InfrastructureError | None = None

    # setup ----------------------------------------------------------------------------------------------

    def execute(self) -> list[Finding]:
        import schemathesis
        from schemathesis.core.result import Ok

        if self.options.max_examples < 1:
            raise UsageError(f"max_examples must be at least 1 (got {self.options.max_examples})")
        try:
            schema = schemathesis.openapi.from_path(self.spec)
        except FileNotFoundError:
            raise ConfigError("spec file not found", file=str(self.spec)) from None
        except Exception as exc:
            raise ConfigError(f"cannot load OpenAPI spec: {exc}", file=str(self.spec)) from None
        self.checks = _resolve_checks(self.options.checks)
        self.positive_check = _check_by_name("positive_data_acceptance")
        self.raw: dict[str, Any] = dict(schema.raw_schema)
        operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
        if self.options.operations:
            known = {op.label for op in operations}
            unknown = [name for name in self.options.operations if _norm_label(name) not in known]
            if unknown:
                raise UsageError(
                    f"unknown operation(s) {', '.join(map(repr, unknown))} in {self.spec}; "
                    f"known: {', '.join(sorted(known))}"
                )
            wanted = {_norm_label(name) for name in self.options.operations}
            operations = [op for op in operations if op.label in wanted]
        self._preflight()
        try:
            with _pinned_constants():
                for operation in operations:
                    self._run_operation(operation)
                if self.options.stateful and self._has_links(operations):
                    self._run_stateful(schema, {op.label for op in operations})
        finally:
            self.session.close()
        return list(self.findings.values())

    def _preflight(self) -> None:
        """Fail fast (and closed) when nothing answers at ``base_url``."""
        try:
            requests.get(self.base_url + "/", timeout=self.options.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise InfrastructureError(
                f"property check: {self.base_url} is not reachable ({type(exc).__name__}: {exc})"
            ) from exc

    def _has_links(self, operations: list[Any]) -> bool:
        for operation in operations:
            for response in (operation.definition.raw.get("responses") or {}).values():
                if isinstance(response, Mapping) and response.get("links"):
                    return True
        return False

    # stateless --------------------------------------------------------------------------------------------

    def _run_operation(self, operation: Any) -> None:
        from hypothesis import given, seed

        @seed(self.options.seed)
        @_hypothesis_settings(self.options.max_examples)
        @given(operation.as_strategy())
        def explore(case: Any) -> None:
            if self.infra_error is None:
                self._send(case)

        explore()
        if self.infra_error is not None:
            raise self.infra_error

    def _send(self, case: Any) -> Any:
        """Send one case, validate it, record failures. Returns the response (or None on an infra error)."""
        from schemathesis.core.failures import FailureGroup

        try:
            response = case.call(base_url=self.base_url, session=self.session, timeout=self.options.timeout)
        except requests.RequestException as exc:
            self.infra_error = InfrastructureError(
                f"property check: {case.method} {self.base_url}{case.formatted_path} failed "
                f"({type(exc).__name__}: {exc})"
            )
            self.infra_error.__cause__ = exc
            return None
        self.requests_sent += 1
        checks = self.checks
        if self.positive_check in checks and self._carries_opaque_value(case):
            checks = [c for c in checks if c is not self.positive_check]
        try:
            case.validate_response(
                response,
                checks=checks,
                transport_kwargs={"base_url": self.base_url, "session": self.session},
            )
        except FailureGroup as group:
            for failure in group.exceptions:
                self._record(case, response, failure)
        return response

    # stateful ---------------------------------------------------------------------------------------------

    def _run_stateful(self, schema: Any, labels: set[str]) -> None:
        from hypothesis import seed

        run = self
        base = schema.as_state_machine()

        class Machine(base):  # type: ignore[misc, valid-type]
            def step(self, input: Any) -> Any:
                from schemathesis.generation.stateful.state_machine import StepOutput

                case = input.case
                if run.infra_error is not None:
                    raise run.infra_error  # stops the run; re-raised below
                response = run._send(case) if case.operation.label in labels else None
                if response is None:
                    if run.infra_error is not None:
                        raise run.infra_error
                    response = case.call(
                        base_url=run.base_url, session=run.session, timeout=run.options.timeout
                    )
                self.after_call(response, case)
                return StepOutput(response, case)

        seed(self.options.seed)(Machine)
        try:
            Machine.run(
                settings=_hypothesis_settings(
                    self.options.stateful_examples or self.options.max_examples, steps=STATEFUL_STEPS
                ),
            )
        except InfrastructureError:
            raise
        except BaseException as exc:
            if self.infra_error is not None:
                raise self.infra_error from exc
            if not _is_flaky(exc):
                raise
            # Behind a mixed-version router the same steps get different answers on replay, which
            # Hypothesis calls flaky. Findings were recorded as they happened; note why exploring stopped.
            self.findings[("(stateful)", "flaky")] = Finding(
                check="properties",
                rule="stateful-not-reproducible",
                level="INFO",
                message="stateful exploration stopped early: the same steps got different answers on replay "
                f"(expected behind a mixed fleet): {_one_line(str(exc), 200)}",
                stage=self.stage,
                versions=dict(self.versions),
                seed=self.options.seed,
            )
        if self.infra_error is not None:
            raise self.infra_error

    # findings ---------------------------------------------------------------------------------------------

    def _carries_opaque_value(self, case: Any) -> bool:
        opaque = self._opaque_names(case.operation)
        if not opaque:
            return False
        for location in ("query", "headers", "cookies", "path_parameters"):
            values = getattr(case, location, None) or {}
            if any(str(name).lower() in opaque for name in values):
                return True
        return False

    def _opaque_names(self, operation: Any) -> set[str]:
        names: set[str] = set()
        for entry in self.options.opaque_parameters:
            label, _, name = entry.rpartition(" ")
            if not label or _norm_label(label) == operation.label:
                names.add(name.lower())
        path_item = (self.raw.get("paths") or {}).get(operation.path) or {}
        op_def = path_item.get(operation.method.lower()) or {}
        for param in [*(path_item.get("parameters") or []), *(op_def.get("parameters") or [])]:
            if not isinstance(param, Mapping) or "name" not in param:
                continue
            text = f"{param.get('description') or ''} {(param.get('schema') or {}).get('description') or ''}"
            if param.get("x-opaque") is True or _OPAQUE_WORD.search(text):
                names.add(str(param["name"]).lower())
        return names

    def _record(self, case: Any, response: Any, failure: Any) -> None:
        operation = case.operation.label
        rule = str(getattr(failure, "code", "") or type(failure).__name__)
        key = (operation, rule)
        if key in self.findings:
            return
        names = ", ".join(getattr(failure, "checks", ()) or ())
        title = str(getattr(failure, "title", "") or type(failure).__name__)
        detail = _one_line(str(getattr(failure, "message", "") or ""), 300)
        message = f"{title} ({names or rule}): {detail}" if detail else f"{title} ({names or rule})"
        request = response.request
        body = request.body
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        self.findings[key] = Finding(
            check=CHECK,
            rule=rule,
            message=message,
            level="ERR",
            stage=self.stage,
            versions=dict(self.versions),
            operation=operation,
            request={
                "method": str(request.method),
                "url": str(request.url),
                "headers": redact_headers(dict(request.headers)),
                "body": _preview(body),
            },
            response={
                "status": response.status_code,
                "headers": redact_headers({k: ", ".join(v) for k, v in dict(response.headers).items()}),
                "body": _preview(response.content.decode("utf-8", "replace")),
            },
            expected=_expected(failure),
            actual=f"{response.status_code} {_preview(response.content.decode('utf-8', 'replace'), 200)}",
            seed=self.options.seed,
            curl=self._curl(case),
            details={"checks": list(getattr(failure, "checks", ()) or ()), "title": title},
        )

    def _curl(self, case: Any) -> str:
        command = str(case.as_curl_command(base_url=self.base_url)).split("\n\n", 1)[0]
        try:
            parts = shlex.split(command)
        except ValueError:
            return command
        for index in range(len(parts) - 1):
            if parts[index] == "-H" and ":" in parts[index + 1]:
                name = parts[index + 1].split(":", 1)[0].strip()
                if name.lower() in SECRET_HEADERS:
                    parts[index + 1] = f"{name}: {REDACTED}"
        return " ".join(shlex.quote(p) for p in parts)


# -- helpers ------------------------------------------------------------------------------------------------


@contextmanager
def _pinned_constants() -> Iterator[None]:
    """Keep Hypothesis from mixing string/number literals of *locally imported modules* into generated data.

    Hypothesis draws ~5% of values from constants found in the caller's own source files, so the requests
    would depend on which project/test modules happen to be imported. Pinning that pool to empty makes the
    sequence a function of spec + seed alone. Private Hypothesis API: if it moves, this is a no-op.
    """
    try:
        from hypothesis.internal.conjecture import providers as _providers

        providers: Any = _providers
        empty = providers.Constants(
            integers=providers.SortedSet(),
            floats=providers.SortedSet(key=providers.float_to_int),
            bytes=providers.SortedSet(),
            strings=providers.SortedSet(),
        )
        original = providers._get_local_constants
        cache = providers.CONSTANTS_CACHE.cache
    except Exception:  # pragma: no cover - a Hypothesis version without this machinery
        yield
        return
    providers._get_local_constants = lambda: empty
    cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.clear()


def _is_flaky(exc: BaseException) -> bool:
    from hypothesis.errors import Flaky

    if isinstance(exc, Flaky):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.subgroup(Flaky) is not None


def _hypothesis_settings(max_examples: int, steps: int | None = None) -> hypothesis.settings:
    from hypothesis import HealthCheck, Phase, Verbosity, settings

    extra: dict[str, Any] = {} if steps is None else {"stateful_step_count": steps}
    return settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
        print_blob=False,
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        **extra,
    )


def _check_by_name(name: str) -> Any:
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    try:
        return CHECKS.get_one(name)
    except KeyError:
        raise UsageError(
            f"unknown property check {name!r}; known: {', '.join(sorted(CHECKS.get_all_names()))}"
        ) from None


def _resolve_checks(names: Iterable[str]) -> list[Any]:
    checks = [_check_by_name(name) for name in names]
    if not checks:
        raise UsageError("no property checks selected")
    return checks


def _norm_label(label: str) -> str:
    method, _, path = label.strip().partition(" ")
    return f"{method.upper()} {path.strip()}"


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _preview(body: str | None, limit: int = BODY_PREVIEW) -> str | None:
    if body is None:
        return None
    return body if len(body) <= limit else body[:limit] + "…"


def _expected(failure: Any) -> str | None:
    for attr in ("allowed_statuses", "defined_status_codes", "defined_content_types", "expected_statuses"):
        value = getattr(failure, attr, None)
        if value:
            return f"{attr.replace('_', ' ')}: {', '.join(map(str, value))}"
    return None
