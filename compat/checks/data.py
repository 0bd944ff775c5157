"""The ``data`` check: write with one version, read with another, on the state they share.

Versions of a service that share a database must understand each other's rows: during a rollout the old
version reads what the new one wrote, and after a rollback the old version is left alone with everything
the new one wrote. This check makes that happen directly, box by box (each version's first box, addressed
by its own URL, no router):

- **the matrix.** For each write operation of the baseline spec (POST create, PUT/PATCH on an item; at
  most ``max_operations``) that has a read for what it wrote (create -> GET item by the new id, PUT/PATCH
  ``/x/{id}`` -> GET ``/x/{id}``), every version present writes once (an update first creates its target
  through the baseline), and every version present reads each write back — the writer itself too: that
  read is the *control*.
- **judging a read.** A read that fails (non-2xx, or not JSON) is ``read-failed``. Otherwise the writer's
  answer is compared with the reader's body (noise rules applied): a member both have with different
  values is a ``read-mismatch``; a member only one side has is a difference in version *shape*, not a
  mismatch — unless the reader's own control read (the reader reading its own write) has it, then this
  read lost it. A failure the control shows as well is reported as a WARN: not a mixed-version problem.
- **across a rollback.** Each write (resource path, writer version and box, stage run, the writer's body)
  is recorded in ``ctx.data``, which all steps of one rollback share; every later step reads each earlier
  write back through every version present *then*. At the after-rollback step only the baseline is left:
  reading what the candidate wrote earlier is the rollback check.

Writes or reads that cannot be made (no read operation, no id in the answer, a failed write) are listed in
the notes, never skipped silently.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from compat.checks._noise import NoiseRules, Snapshot, compare, generalize, member
from compat.checks._openapi import Resolver
from compat.checks._spec_ops import (
    WRITE_METHODS,
    Examples,
    Exchange,
    Operation,
    Resource,
    operations,
    resource_id,
    resources,
    send,
)
from compat.checks.context import StageContext, TaskResult
from compat.checks.finding import Finding, to_curl

CHECK = "data"


@dataclass
class Write:
    """One recorded write, as later steps of a rollback read it back."""

    service: str
    operation: str  # "POST /things"
    read: str  # "GET /things/{id}"
    path: str  # "/things/123"
    writer: str  # version
    instance: str  # the writer's box
    stage: str  # the stage run it was written in
    body: Any  # the writer's answer (or its own read, when the write answered no JSON object)
    request: dict[str, Any] = field(default_factory=dict)
    response: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """How one write operation is exercised: the write, its resource, and how to get a target."""

    write: Operation
    resource: Resource
    update: bool  # PUT/PATCH an existing resource (created first) rather than create one


def plans(ops: list[Operation], res: list[Resource], limit: int) -> tuple[list[Plan], list[str]]:
    """The write operations that can be checked, and notes on those that cannot."""
    found: list[Plan] = []
    notes: list[str] = []
    writes = [op for op in ops if op.method in WRITE_METHODS]
    for op in writes:
        creates = [r for r in res if r.create is op]
        updates = [r for r in res if op in r.updates]
        plan: Plan | None = None
        if creates:
            target = creates[0]
            if target.read is None:
                notes.append(f"{op.key}: no GET {target.item} to read what it creates; not checked")
            else:
                plan = Plan(op, target, update=False)
        elif updates:
            target = updates[0]
            if target.read is None:
                notes.append(f"{op.key}: no GET {target.item} to read what it writes; not checked")
            elif target.create is None:
                notes.append(
                    f"{op.key}: no POST {target.collection or '(collection)'} to create a {target.singular} "
                    "to update; not checked"
                )
            else:
                plan = Plan(op, target, update=True)
        else:
            notes.append(f"{op.key}: no item path with a GET to read what it writes; not checked")
        if plan is not None and len(found) >= limit:
            notes.append(f"{op.key}: not exercised (max_operations {limit} reached)")
        elif plan is not None:
            found.append(plan)
    return found, notes


def shape(body: Any, path: str = "$") -> set[str]:
    """Every member path of ``body``, generalized (``$.items[*].id``)."""
    found: set[str] = set()
    if isinstance(body, Mapping):
        for key, value in body.items():
            where = member(path, str(key))
            found.add(generalize(where))
            found |= shape(value, where)
    elif isinstance(body, list):
        for index, value in enumerate(body):
            found |= shape(value, f"{path}[{index}]")
    return found


def judge_read(
    written: Any, read: Exchange, control: set[str] | None, noise: NoiseRules
) -> tuple[str, str, list[str]] | None:
    """``(rule, problem, differences)`` when ``read`` does not show ``written``, else None.

    ``control``: the member paths the reader's own control read had (None: no control to go by).
    """
    if not read.ok:
        return "read-failed", read.outcome(detail=True), []
    if not read.json:
        return "read-failed", f"{read.outcome()} with a body that is not JSON", []
    diffs = compare(Snapshot(200, {}, written), Snapshot(200, {}, read.response_body), noise, headers=())
    bad = []
    for diff in diffs:
        if diff.kind == "added":
            continue  # only the reader has it: its version's shape
        if diff.kind == "missing" and (control is None or diff.pattern not in control):
            continue  # only the writer has it, and the reader never shows it: shape
        bad.append(diff.describe("writer", "reader"))
    if bad:
        return "read-mismatch", f"{read.outcome()} but {'; '.join(bad[:3])}", bad
    return None


def judge_later_read(
    write: Write, reader: str, reads: Mapping[str, Exchange], control: set[str] | None, noise: NoiseRules
) -> tuple[str, str, list[str]] | str | None:
    """A write from an earlier step, read again now by ``reader`` (``reads``: by every version present).

    Shared data keeps changing between steps (the stage's tests, other checks, users of the old and the
    new version alike), so only what cannot be explained by a later write is a finding: a read that breaks
    (5xx, not JSON, no answer), a resource one version here finds and another does not, a member the
    reader shows for its own writes but not for this one, or a value two versions here disagree on.
    A resource every version here answers 404/410 for may have been deleted since: a note (a str).
    """
    read = reads[reader]
    if not read.ok:
        others_ok = [v for v, r in reads.items() if v != reader and r.ok and r.json]
        if read.status in (404, 410) and not others_ok:
            return (
                f"{write.operation} written by {write.writer} in {write.stage} ({write.path}) is gone in "
                f"{'every version' if len(reads) > 1 else reader} here ({read.status}): "
                "deleted since? not judged"
            )
        return "read-failed", read.outcome(detail=True), []
    if not read.json:
        return "read-failed", f"{read.outcome()} with a body that is not JSON", []
    if control is not None:
        missing = [
            d.describe("earlier read", "reader")
            for d in compare(
                Snapshot(200, {}, write.body), Snapshot(200, {}, read.response_body), noise, headers=()
            )
            if d.kind == "missing" and d.pattern in control
        ]
        if missing:
            return "read-mismatch", f"{read.outcome()} but {'; '.join(missing[:3])}", missing
    for other, theirs in reads.items():
        if other == reader or not (theirs.ok and theirs.json):
            continue
        diffs = [
            d.describe(other, reader)
            for d in compare(
                Snapshot(200, {}, theirs.response_body),
                Snapshot(200, {}, read.response_body),
                noise,
                headers=(),
            )
            if d.kind not in ("added", "missing")
        ]
        if diffs:
            return (
                "read-mismatch",
                f"{read.outcome()} but it disagrees with {other}: {'; '.join(diffs[:3])}",
                diffs,
            )
    return None


def run_data(ctx: StageContext, service: str) -> TaskResult:
    """The write-with-A / read-with-B matrix of ``service`` here, and earlier steps' writes read back."""
    from compat.client import ServiceClient

    result = TaskResult()
    spec = ctx.spec(service)
    if spec is None:
        result.notes.append(f"{service} has no OpenAPI spec: no write operations to exercise")
        return result
    name = str(ctx.spec_path(service) or service)
    resolver = Resolver(spec, name)
    ops = operations(spec, name)
    todo, notes = plans(ops, resources(ops), int(ctx.option(CHECK, "max_operations")))
    result.notes += notes
    boxes = {version: insts[0] for version, insts in ctx.by_version(service).items() if insts}
    if not boxes:
        result.notes.append(f"no box of {service} is running in {ctx.stage}")
        return result
    examples = Examples(resolver, ctx.seed)
    store = cast("list[Write]", ctx.data.setdefault(f"data:{service}", []))
    earlier = [w for w in store if w.stage != ctx.stage]
    stats = {"writes": 0, "reads": 0, "earlier writes read": 0, "requests": 0}
    controls: dict[tuple[str, str], set[str]] = {}  # (write operation, reader version) -> its control shape
    with contextlib.ExitStack() as stack:
        clients = {
            v: stack.enter_context(ServiceClient(inst.url, label=inst.name, timeout=15.0))
            for v, inst in boxes.items()
        }
        for plan in todo:
            written: list[Write] = []
            for version in boxes:
                write = _write(ctx, service, plan, version, boxes, clients, examples, result, stats)
                if write is not None:
                    written.append(write)
            reads: dict[tuple[int, str], Exchange] = {}
            for index, write in enumerate(written):
                for reader in boxes:
                    reads[index, reader] = send(clients[reader], "read back", "GET", write.path)
                    stats["reads"] += 1
                    stats["requests"] += 1
                    if reader == write.writer:
                        own = reads[index, reader]
                        if write.body is None and own.ok and own.json:
                            write.body = own.response_body
                        if own.ok and own.json:
                            controls[plan.write.key, reader] = shape(own.response_body)
            for index, write in enumerate(written):
                control_failed = _failed(write, reads.get((index, write.writer)))
                for reader in boxes:
                    read = reads[index, reader]
                    verdict = judge_read(write.body, read, controls.get((plan.write.key, reader)), ctx.noise)
                    if verdict is not None:
                        result.findings.append(
                            _finding(
                                ctx, service, write, reader, boxes[reader].name, read, verdict, control_failed
                            )
                        )
            store.extend(written)
        for write in earlier:
            again = {
                reader: send(clients[reader], "read back (written in an earlier step)", "GET", write.path)
                for reader in boxes
            }
            stats["reads"] += len(again)
            stats["earlier writes read"] += len(again)
            stats["requests"] += len(again)
            for reader, read in again.items():
                later = judge_later_read(
                    write, reader, again, controls.get((write.operation, reader)), ctx.noise
                )
                if isinstance(later, str):
                    result.notes.append(later)
                elif later is not None:
                    result.findings.append(
                        _finding(ctx, service, write, reader, boxes[reader].name, read, later, False)
                    )
            readable = [r for r in again.values() if r.ok and r.json]
            if readable:  # later steps compare with what this step read (others may change it meanwhile)
                write.body = readable[0].response_body
    if not todo:
        result.notes.append(f"{service}: no write operation could be checked in {ctx.stage}")
    result.metrics.update(stats)
    result.metrics["versions"] = list(boxes)
    return result


def _failed(write: Write, own: Exchange | None) -> bool:
    """Whether the writer failed to read its own write (then nothing here is about mixing versions)."""
    return own is None or not own.ok or not own.json


def _write(
    ctx: StageContext,
    service: str,
    plan: Plan,
    version: str,
    boxes: Mapping[str, Any],
    clients: Mapping[str, Any],
    examples: Examples,
    result: TaskResult,
    stats: dict[str, int],
) -> Write | None:
    res = plan.resource
    create = res.create
    assert create is not None
    assert res.read is not None
    box = boxes[version].name
    if plan.update:
        maker = next(iter(clients))  # the baseline when present (by_version lists it first)
        body = examples.body(create.body) if create.body is not None else None
        made = send(clients[maker], "create (to update)", "POST", create.path, json_body=body)
        stats["requests"] += 1
        if not made.ok:
            result.notes.append(
                f"{plan.write.key} by {version}: creating the {res.singular} to update through {maker} "
                f"{made.outcome(detail=True)}; not checked"
            )
            return None
        ident = resource_id(res, made.response_headers, made.response_body)
        if ident.value is None:
            result.notes.append(f"{plan.write.key} by {version}: {ident.how}; not checked")
            return None
        path = res.item_path(ident.value)
        payload = examples.body(plan.write.body, full=True) if plan.write.body is not None else None
        step = send(clients[version], "write", plan.write.method, path, json_body=payload)
    else:
        payload = examples.body(create.body) if create.body is not None else None
        step = send(clients[version], "write", "POST", create.path, json_body=payload)
    stats["requests"] += 1
    if not step.ok:
        result.notes.append(
            f"{plan.write.key} through {service}@{version} ({box}) {step.outcome(detail=True)}; "
            "nothing to read back"
        )
        return None
    stats["writes"] += 1
    if not plan.update:
        ident = resource_id(res, step.response_headers, step.response_body)
        if ident.value is None:
            result.notes.append(f"{plan.write.key} through {version}: {ident.how}; cannot read it back")
            return None
        path = res.item_path(ident.value)
    body = step.response_body if step.json and isinstance(step.response_body, Mapping) else None
    return Write(
        service=service,
        operation=plan.write.key,
        read=res.read.key,
        path=path,
        writer=version,
        instance=box,
        stage=ctx.stage,
        body=body,
        request=step.request_dict(),
        response=step.response_dict(),
    )


def _finding(
    ctx: StageContext,
    service: str,
    write: Write,
    reader: str,
    reader_box: str,
    read: Exchange,
    verdict: tuple[str, str, list[str]],
    control_failed: bool,
) -> Finding:
    rule, problem, diffs = verdict
    earlier = write.stage != ctx.stage
    written = f"written by {service}@{write.writer} ({write.instance})"
    if earlier:
        written += f" in {write.stage}"
    read_by = f"read by {service}@{reader} ({reader_box})" + (f" in {ctx.stage}" if earlier else "")
    message = f"{written}, {read_by}: {problem} (resource {write.path}, {write.operation})"
    level = "ERR"
    if reader == write.writer and not earlier:
        level = "WARN"
        message += "; the writer cannot read its own write: not a mixed-version problem"
    elif control_failed and not earlier:
        level = "WARN"
        message += f"; {write.writer} cannot read its own write either: not a mixed-version problem"
    return Finding(
        check=CHECK,
        rule=rule,
        message=message,
        level=level,
        stage=ctx.stage,
        versions={service: f"{write.writer} -> {reader}"},
        operation=write.read,
        request=read.request_dict(),
        response=read.response_dict(),
        expected=f"{write.read} answers 2xx JSON showing what {write.writer} wrote",
        actual="; ".join(diffs) if diffs else problem,
        seed=ctx.seed,
        curl=to_curl(read.method, read.url, read.headers, read.body, redact=ctx.config.redact_headers),
        details={
            "location": f"{write.operation} written in {write.stage}" if earlier else write.operation,
            "writer": {"version": write.writer, "instance": write.instance, "stage": write.stage},
            "reader": {"version": reader, "instance": reader_box, "stage": ctx.stage},
            "step": "read back after a later step" if earlier else "read back",
            "write": {"request": write.request, "response": write.response},
            "read": {"request": read.request_dict(), "response": read.response_dict()},
            "differences": diffs,
        },
    )
