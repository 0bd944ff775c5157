"""pytest items for the built-in checks: one item per (stage run, check, service) task.

Loaded only under ``--compat`` (from ``compat.plugin``). The work is done by :mod:`compat.checks.tasks`;
an item only runs its task on the session's topology and turns blocking findings into a failure whose
text is the findings themselves (stage, versions, request, expected vs. got, the ``curl`` to reproduce).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from compat.checks.context import TaskResult
from compat.checks.finding import Finding
from compat.checks.tasks import CheckTask, run_task

if TYPE_CHECKING:
    from compat.session import CompatSession


class FindingsFailed(Exception):
    def __init__(self, findings: list[Finding]) -> None:
        super().__init__(f"{len(findings)} finding(s)")
        self.findings = findings


class CompatCheckItem(pytest.Item):
    def __init__(self, *, task: CheckTask, compat: CompatSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.compat = compat
        self.compat_run = task.run  # lets the plugin order and release topologies with the stage's tests
        self.findings: list[Finding] = []
        self.result: TaskResult | None = None

    @property
    def dry_run(self) -> bool:
        """Findings of this check are reported, never failing (``--compat-dry-run`` or ``dry_run = true``)."""
        return self.compat.options.dry_run or self.compat.config.checks.get(self.task.check).dry_run

    def runtest(self) -> None:
        session = self.compat
        if session.progress is not None and self.task.check in ("properties", "differential", "canary"):
            session.progress("check", f"{self.task.id}: running")  # the long ones
        self.result = result = run_task(self.task, config=session.config, context=session.stage_context)
        self.findings = result.findings
        self.user_properties.append(("compat_findings", len(self.findings)))
        if result.notes:
            self.add_report_section("call", "compat notes", "\n".join(result.notes))
        blocking = [f for f in self.findings if f.blocking]
        if blocking and not self.dry_run:
            raise FindingsFailed(self.findings)
        if blocking:
            self.add_report_section(
                "call", "compat", f"dry run: {len(blocking)} blocking finding(s) not failing"
            )
        for finding in self.findings:  # pending / WARN / dry run: reported, not failing
            self.add_report_section("call", "compat", finding.render())
        if result.inconclusive:
            pytest.skip(f"INCONCLUSIVE: {result.inconclusive}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, FindingsFailed):
            blocking = [f for f in excinfo.value.findings if f.blocking]
            noun = "incompatibility" if len(blocking) == 1 else "incompatibilities"
            head = f"{self.task.check} found {len(blocking)} blocking {noun}"
            return "\n\n".join([head, *(f.render() for f in excinfo.value.findings)])
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"compat {self.task.check} [{self.task.id}]"


class CompatChecks(pytest.Collector):
    """The parent of the check items, so their node ids read ``compat-checks::onebox-contracts-orders``."""

    def collect(self) -> list[pytest.Item]:
        return []  # items are made by make_items, from the session's stage runs


def make_items(session: pytest.Session, compat: CompatSession, tasks: list[CheckTask]) -> list[pytest.Item]:
    parent = CompatChecks.from_parent(session, name="compat-checks", nodeid="compat-checks")
    return [CompatCheckItem.from_parent(parent, name=task.id, task=task, compat=compat) for task in tasks]
