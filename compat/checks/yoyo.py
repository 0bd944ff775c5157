"""The ``yoyo`` check: multi-request flows whose consecutive requests land on different versions.

A rolling deploy has no session affinity: page 1 of a list may come from the old version and page 2 from
the new one, a resource created by one version is read by the other a moment later. The router's ``yoyo``
policy makes that happen on purpose (per session key, consecutive requests alternate versions); the
``sticky`` policy keeps a session on one version and is the control. Every flow runs under both, each with
its own session key (``X-Compat-Session``); the policy is asked for per request (``X-Compat-Policy``), so
the stage's own policy does not matter.

Flows, derived from the service's *baseline* OpenAPI spec (:mod:`compat.checks._spec_ops`):

- **pagination walk** of every paginated list: first the list is made to span at least ``min_pages``
  pages of ``page_size`` (counted by a sticky walk; missing items are created through the collection's
  POST on a baseline box), then walked to the end (at most ``max_pages``). A page that fails (non-2xx, or
  no items array), an item seen twice, or an item of the control walk the yo-yo walk never saw is a
  problem. Items are told apart by their ``id``-like member, else canonical JSON. The control walk runs
  before *and* after the yo-yo walk; only items both control walks saw can be "lost", so writes by other
  traffic meanwhile are no false alarm.
- **create -> read -> update -> read** for each resource with a POST and a GET item (PATCH/PUT if the spec
  has them): every step 2xx, every read shows the members the create/update sent (compared with the
  noise rules).

A flow failing under yoyo and passing under sticky is an ERR finding (a mixed-version problem); a flow
failing under sticky too is a WARN ("not a mixed-version problem"). Every finding lists each step with
the version that answered it and a curl line for the failing step.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from compat.checks._noise import Snapshot, compare
from compat.checks._openapi import Resolver, view
from compat.checks._spec_ops import (
    Examples,
    Exchange,
    Operation,
    Pagination,
    Resource,
    looks_like_url,
    next_link,
    operations,
    paginations,
    path_params,
    relative,
    resource_id,
    resources,
    send,
)
from compat.checks.context import StageContext, TaskResult
from compat.checks.finding import Finding, to_curl

CHECK = "yoyo"
POLICIES = ("yoyo", "sticky")


# -- pagination walk --------------------------------------------------------------------------------------


@dataclass
class Walk:
    """One walk of a paginated list: its pages, the item keys in order, and the first failed page."""

    steps: list[Exchange] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    failed: Exchange | None = None
    failure: str = ""  # why ``failed`` failed
    truncated: bool = False

    @property
    def pages(self) -> int:
        return len(self.steps)

    def duplicates(self) -> list[str]:
        return [k for k, n in Counter(self.keys).items() if n > 1]

    def versions(self) -> list[str]:
        return list(dict.fromkeys(s.version or "?" for s in self.steps))


def walk(
    client: Any,
    page: Pagination,
    *,
    page_size: int,
    max_pages: int,
    params: Mapping[str, Any] | None = None,
    key_members: Sequence[str] = (),
) -> Walk:
    """Follow ``page`` from the first page to the last (or ``max_pages``) through ``client``."""
    from compat.checks._spec_ops import item_key

    base: dict[str, Any] = dict(params or {})
    if page.size_param:
        base[page.size_param] = page_size
    result = Walk()
    url = page.operation.path
    query: dict[str, Any] | None = base
    source: str | None = None
    while True:
        number = result.pages + 1
        label = f"page {number}" + (f" (cursor from {source})" if source else "")
        step = send(client, label, "GET", url, params=query)
        result.steps.append(step)
        if not step.ok:
            result.failed, result.failure = step, step.outcome(detail=True)
            return result
        items = page.items_of(step.response_body) if step.json else None
        if items is None:
            where = ".".join(page.items) or "a top-level array"
            result.failed = step
            result.failure = f"answered {step.status} by {step.answered_by} without the items array ({where})"
            return result
        result.keys += [item_key(item, key_members) for item in items]
        target = _next(page, step, base)
        if target is None:
            return result
        if result.pages >= max_pages:
            result.truncated = True
            return result
        url, query = target
        source = step.version or step.answered_by


def _next(
    page: Pagination, step: Exchange, base: Mapping[str, Any]
) -> tuple[str, dict[str, Any] | None] | None:
    """Where the page after ``step`` is: the cursor in a query parameter, a next URL, or a Link header."""
    cursor = page.cursor_of(step.response_body)
    if cursor not in (None, "", False):
        text = str(cursor)
        absolute = text.startswith(("http://", "https://"))
        if page.cursor_param and not absolute and not (page.next_is_url and looks_like_url(text)):
            return page.operation.path, {**base, page.cursor_param: cursor}
        if looks_like_url(text):  # an absolute URL is one even where a cursor was expected
            return relative(text), None
    link = next_link(step.response_headers)
    if link:
        return relative(link), None
    return None


@dataclass
class WalkProblem:
    rule: str
    summary: str  # what went wrong, one clause
    step: Exchange | None
    expected: str
    actual: str


def judge_walk(result: Walk, reference: set[str] | None) -> list[WalkProblem]:
    """A walk's problems: a failed page, duplicated items, items of ``reference`` it never saw."""
    problems = []
    if result.failed is not None:
        problems.append(
            WalkProblem(
                "pagination-page-failed",
                f"{result.failed.label} {result.failure}",
                result.failed,
                "every page 2xx with the items array",
                result.failure,
            )
        )
    dups = result.duplicates()
    if dups:
        problems.append(
            WalkProblem(
                "pagination-item-duplicated",
                f"{len(dups)} item(s) appeared on more than one page ({', '.join(dups[:5])})",
                None,
                "each item exactly once",
                f"duplicated: {', '.join(dups[:10])}",
            )
        )
    if reference is not None and result.failed is None and not result.truncated:
        lost = sorted(reference - set(result.keys))
        if lost:
            problems.append(
                WalkProblem(
                    "pagination-item-lost",
                    f"{len(lost)} item(s) the control walk saw never appeared ({', '.join(lost[:5])})",
                    None,
                    f"all {len(reference)} item(s) of the control walk",
                    f"missing: {', '.join(lost[:10])}",
                )
            )
    return problems


# -- chains -----------------------------------------------------------------------------------------------


@dataclass
class Chain:
    steps: list[Exchange] = field(default_factory=list)
    rule: str | None = None
    problem: str = ""
    failed: Exchange | None = None
    expected: str | None = None
    actual: str | None = None
    note: str | None = None  # the chain could not go on for a reason that is no failure
    operation: str | None = None  # the failing step's operation, "GET /things/{id}"


def written_members(resolver: Resolver, schema: Any, body: Any) -> dict[str, Any]:
    """The members of a request body a read should show again (not writeOnly ones)."""
    if not isinstance(body, Mapping):
        return {}
    props = view(resolver, schema).properties if schema is not None else {}
    return {k: v for k, v in body.items() if not (k in props and view(resolver, props[k]).write_only)}


def read_shows(expected: Mapping[str, Any], body: Any, ctx_noise: Any) -> list[str]:
    """Differences between what was written and what a read shows (only the written members)."""
    if not isinstance(body, Mapping):
        return [f"the read body is not a JSON object: {str(body)[:80]!r}"]
    got = {k: body[k] for k in expected if k in body}
    diffs = compare(Snapshot(200, {}, dict(expected)), Snapshot(200, {}, got), ctx_noise, headers=())
    return [d.describe("written", "read") for d in diffs if d.kind != "added"]


def run_chain(
    client: Any,
    resource: Resource,
    examples: Examples,
    resolver: Resolver,
    noise: Any,
) -> Chain:
    """create -> read -> (update -> read)* through ``client``."""
    assert resource.create is not None
    assert resource.read is not None
    chain = Chain()
    create = resource.create
    body = examples.body(create.body) if create.body is not None else None
    step = send(client, "create", create.method, resource.collection or create.path, json_body=body)
    chain.steps.append(step)
    chain.operation = create.key
    if not step.ok:
        return _fail(
            chain, "chain-step-failed", step, f"create {step.outcome(True)}", "2xx", step.outcome(True)
        )
    ident = resource_id(resource, step.response_headers, step.response_body)
    if ident.value is None:
        chain.note = f"{create.key}: {ident.how}; the chain stops after the create"
        return chain
    path = resource.item_path(ident.value)
    expected = written_members(resolver, create.body, body)
    chain.operation = resource.read.key
    if not _read(chain, client, "read after create", path, expected, noise):
        return chain
    for update in resource.updates:
        patch = examples.body(update.body, full=True) if update.body is not None else None
        label = f"{update.method.lower()} ({update.method} {update.path})"
        step = send(client, label, update.method, path, json_body=patch)
        chain.steps.append(step)
        chain.operation = update.key
        if not step.ok:
            return _fail(
                chain, "chain-step-failed", step, f"{label} {step.outcome(True)}", "2xx", step.outcome(True)
            )
        sent = written_members(resolver, update.body, patch)
        expected = {**expected, **sent} if update.method == "PATCH" else sent
        chain.operation = resource.read.key
        if not _read(chain, client, f"read after {update.method.lower()}", path, expected, noise):
            return chain
    chain.operation = None
    return chain


def _read(chain: Chain, client: Any, label: str, path: str, expected: Mapping[str, Any], noise: Any) -> bool:
    step = send(client, label, "GET", path)
    chain.steps.append(step)
    if not step.ok:
        _fail(chain, "chain-step-failed", step, f"{label} {step.outcome(True)}", "2xx", step.outcome(True))
        return False
    diffs = read_shows(expected, step.response_body, noise)
    if diffs:
        _fail(
            chain,
            "chain-read-mismatch",
            step,
            f"{label} ({step.answered_by}) does not show what was written: {'; '.join(diffs[:3])}",
            f"the written members {sorted(expected)} as sent",
            "; ".join(diffs),
        )
        return False
    return True


def _fail(chain: Chain, rule: str, step: Exchange, problem: str, expected: str, actual: str) -> Chain:
    chain.rule, chain.failed, chain.problem = rule, step, problem
    chain.expected, chain.actual = expected, actual
    return chain


# -- the check --------------------------------------------------------------------------------------------


@dataclass
class _Flow:
    """One flow's outcome under one policy."""

    policy: str
    session: str
    steps: list[Exchange]
    problems: list[tuple[str, str, Exchange | None, str, str]]  # rule, summary, step, expected, actual


def run_yoyo(ctx: StageContext, service: str) -> TaskResult:
    """Run every pagination walk and create/read/update chain of ``service`` under yoyo and sticky."""
    from compat.client import ServiceClient

    result = TaskResult()
    spec = ctx.spec(service)
    if spec is None:
        result.notes.append(f"{service} has no OpenAPI spec: no flows to run")
        return result
    present = list(ctx.by_version(service))
    if len(present) < 2:
        result.notes.append(
            f"only {'+'.join(present) or 'no version'} of {service} is present in {ctx.stage}: "
            "a yo-yo session cannot mix versions"
        )
    name = str(ctx.spec_path(service) or service)
    resolver = Resolver(spec, name)
    ops = operations(spec, name)
    res = resources(ops)
    examples = Examples(resolver, ctx.seed)
    page_size = int(ctx.option(CHECK, "page_size"))
    min_pages = int(ctx.option(CHECK, "min_pages"))
    max_pages = int(ctx.option(CHECK, "max_pages"))
    entry = ctx.entry(service)
    stats = {"flows": 0, "pages walked": 0, "requests": 0}

    @contextlib.contextmanager
    def client(policy: str, flow: str) -> Iterator[Any]:
        key = re.sub(r"[^A-Za-z0-9._:-]+", "-", f"compat-yoyo-{ctx.seed}-{ctx.stage}-{flow}-{policy}")
        with ServiceClient(entry, session=key, policy=policy, label=f"{service} ({policy})") as c:
            yield c

    baseline = ctx.instances(service, role="baseline")
    filler_url = baseline[0].url if baseline else entry

    for page in paginations(spec, name):
        op = page.operation
        if path_params(op.path):
            result.notes.append(f"{op.key}: needs path parameters {path_params(op.path)}; not walked")
            continue
        owner = next((r for r in res if r.collection == op.path), None)
        ids = owner.id_members() if owner else []
        params = _required_query(op, page, examples)
        flow = f"walk {op.key}"
        stats["flows"] += 1

        def one(
            policy: str, page: Pagination = page, params: dict[str, Any] = params, ids: list[str] = ids
        ) -> Walk:
            with client(policy, page.operation.key) as c:
                return walk(c, page, page_size=page_size, max_pages=max_pages, params=params, key_members=ids)

        control = one("sticky")
        wanted = page_size * (min_pages - 1) + 1
        if control.failed is None and len(control.keys) < wanted:
            made = _fill(filler_url, owner, wanted - len(control.keys), examples, result, op, stats)
            if made:
                control = one("sticky")
        if control.failed is None and len(set(control.keys)) < wanted:
            result.notes.append(
                f"{op.key}: the list spans {control.pages} page(s) of {page_size}, fewer than min_pages "
                f"{min_pages}; the walk is weaker for it"
            )
        mixed = one("yoyo")
        after = one("sticky")
        for w in (control, mixed, after):
            stats["pages walked"] += w.pages
            stats["requests"] += w.pages
        for w, what in ((mixed, "yo-yo"), (control, "control")):
            if w.truncated:
                result.notes.append(f"{op.key}: the {what} walk stopped at max_pages {max_pages}")
        reference = set(control.keys) & set(after.keys)
        yo = _Flow(
            "yoyo",
            _session_of(mixed),
            mixed.steps,
            [(p.rule, p.summary, p.step, p.expected, p.actual) for p in judge_walk(mixed, reference)],
        )
        co = _Flow(
            "sticky",
            _session_of(control),
            control.steps,
            [(p.rule, p.summary, p.step, p.expected, p.actual) for p in judge_walk(control, None)],
        )
        if len(mixed.versions()) < 2 and mixed.pages > 1 and len(present) > 1:
            result.notes.append(f"{op.key}: the yo-yo walk was answered by one version only")
        result.findings += _judge(ctx, service, op.key, flow, yo, co)

    for resource in res:
        if resource.create is None or resource.read is None:
            continue
        flow = f"chain {resource.item}"
        stats["flows"] += 1
        outcomes: dict[str, Chain] = {}
        for policy in POLICIES:
            with client(policy, flow) as c:
                outcomes[policy] = run_chain(c, resource, examples, resolver, ctx.noise)
            stats["requests"] += len(outcomes[policy].steps)
        for policy, chain in outcomes.items():
            if chain.note:
                result.notes.append(f"{flow} ({policy}): {chain.note}")
        yo, co = (_chain_flow(p, outcomes[p]) for p in POLICIES)
        failing = outcomes["yoyo"].operation or outcomes["sticky"].operation or resource.create.key
        result.findings += _judge(ctx, service, failing, flow, yo, co)
    if stats["flows"] == 0:
        result.notes.append(
            f"{service}'s spec has no paginated list and no create/read resource: nothing to run"
        )
    result.metrics.update(stats)
    return result


def _required_query(op: Operation, page: Pagination, examples: Examples) -> dict[str, Any]:
    skip = {page.size_param, page.cursor_param}
    return {p.name: examples.value(p.schema, 0) for p in op.query() if p.required and p.name not in skip}


def _fill(
    url: str,
    owner: Resource | None,
    count: int,
    examples: Examples,
    result: TaskResult,
    op: Operation,
    stats: dict[str, int],
) -> int:
    """Create ``count`` items through the collection's POST on ``url``; how many were created."""
    from compat.client import ServiceClient

    if owner is None or owner.create is None:
        result.notes.append(
            f"{op.key}: too few items to span several pages and no POST {op.path} to add some"
        )
        return 0
    made = 0
    with ServiceClient(url, label="yoyo fill") as c:
        for _ in range(count):
            body = examples.body(owner.create.body) if owner.create.body is not None else None
            step = send(c, "fill", "POST", op.path, json_body=body)
            stats["requests"] += 1
            if not step.ok:
                result.notes.append(
                    f"{op.key}: creating items to page through failed: POST {op.path} {step.outcome()}"
                )
                break
            made += 1
    return made


def _chain_flow(policy: str, chain: Chain) -> _Flow:
    problems = []
    if chain.rule:
        problems.append((chain.rule, chain.problem, chain.failed, chain.expected or "", chain.actual or ""))
    return _Flow(policy, _session_of_steps(chain.steps), chain.steps, problems)


def _session_of(w: Walk) -> str:
    return _session_of_steps(w.steps)


def _session_of_steps(steps: Sequence[Exchange]) -> str:
    for step in steps:
        for key, value in step.headers.items():
            if key.lower() == "x-compat-session":
                return value
    return "-"


def _judge(ctx: StageContext, service: str, operation: str, flow: str, yo: _Flow, co: _Flow) -> list[Finding]:
    findings = []
    control_versions = ", ".join(dict.fromkeys(s.version or "?" for s in co.steps)) or "-"
    control_ok = not co.problems
    for rule, summary, step, expected, actual in yo.problems:
        if control_ok:
            level = "ERR"
            message = (
                f"{flow} under the yoyo policy: {summary}; the same flow passes under sticky "
                f"({len(co.steps)} request(s), all answered by {control_versions})"
            )
        else:
            level = "WARN"
            message = f"{flow}: {summary}; fails under sticky too: not a mixed-version problem"
        findings.append(
            _finding(ctx, service, operation, flow, rule, level, message, step, expected, actual, yo, co)
        )
    if not yo.problems:
        for rule, summary, step, expected, actual in co.problems:
            message = (
                f"{flow} fails under sticky ({summary}) but passes under yoyo: not a mixed-version problem"
            )
            findings.append(
                _finding(ctx, service, operation, flow, rule, "WARN", message, step, expected, actual, co, yo)
            )
    return findings


def _finding(
    ctx: StageContext,
    service: str,
    operation: str,
    flow: str,
    rule: str,
    level: str,
    message: str,
    step: Exchange | None,
    expected: str,
    actual: str,
    failing: _Flow,
    other: _Flow,
) -> Finding:
    shown = step or (failing.steps[-1] if failing.steps else None)
    curl = None
    if shown is not None:
        curl = to_curl(shown.method, shown.url, shown.headers, shown.body, redact=ctx.config.redact_headers)
    return Finding(
        check=CHECK,
        rule=rule,
        message=message,
        level=level,
        stage=ctx.stage,
        versions=ctx.versions(service),
        operation=operation,
        request=shown.request_dict() if shown else None,
        response=shown.response_dict() if shown else None,
        expected=expected,
        actual=actual,
        seed=ctx.seed,
        curl=curl,
        details={
            "location": flow,
            "flow": flow,
            "policy": failing.policy,
            "session": failing.session,
            "steps": [s.summary() for s in failing.steps],
            "step_details": [s.to_dict() for s in failing.steps],
            "control": {
                "policy": other.policy,
                "session": other.session,
                "passed": not other.problems,
                "steps": [s.summary() for s in other.steps],
            },
        },
    )
