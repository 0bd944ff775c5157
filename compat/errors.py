"""The exception tree of pytest-compat.

Every error the harness raises on purpose derives from :class:`CompatError`::

    CompatError
    ├── ConfigError           bad configuration: names the file, the key path, the bad value, the fix
    ├── UsageError            a bad command-line option or marker argument
    └── InfrastructureError   the harness could not decide (fail closed: never a PASS)
        ├── EngineUnavailable     no container engine answers
        ├── BuildError            an image could not be built or found
        └── StartupError          an instance exited or never became healthy (status + last log lines)

``ConfigError`` and ``UsageError`` map to exit code 4; ``InfrastructureError`` to 2 (ERROR).
"""

from __future__ import annotations

from collections.abc import Sequence


class CompatError(Exception):
    """Base of every error pytest-compat raises on purpose."""


class UsageError(CompatError):
    """A command-line option, ini value or marker argument is invalid."""


class ConfigError(CompatError):
    """A configuration problem, located precisely.

    ``str(err)`` reads ``FILE: KEY.PATH: problem (got VALUE); hint``.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        key: str | None = None,
        value: object = None,
        has_value: bool = False,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.key = key
        self.value = value
        self.has_value = has_value
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file)
        if self.key:
            parts.append(self.key)
        text = ": ".join([*parts, self.problem])
        if self.has_value:
            text += f" (got {self.value!r})"
        if self.hint:
            text += f"; {self.hint}"
        return text


class InfrastructureError(CompatError):
    """The harness could not set up or observe the system under test. Never reported as a pass."""


class EngineUnavailable(InfrastructureError):
    """No container engine answers."""


class BuildError(InfrastructureError):
    """An image could not be built, or a referenced image does not exist and cannot be pulled."""


class StartupError(InfrastructureError):
    """An instance exited, or never answered its health path before the deadline."""

    def __init__(
        self,
        instance: str,
        reason: str,
        *,
        status: str | None = None,
        logs: Sequence[str] = (),
        hint: str | None = None,
    ) -> None:
        self.instance = instance
        self.reason = reason
        self.status = status
        self.logs = list(logs)
        self.hint = hint
        lines = [f"instance {instance!r} failed to start: {reason}"]
        if status:
            lines.append(f"  status: {status}")
        if self.logs:
            lines.append(f"  last {len(self.logs)} log line(s):")
            lines.extend(f"    | {line}" for line in self.logs)
        if hint:
            lines.append(f"  hint: {hint}")
        super().__init__("\n".join(lines))
