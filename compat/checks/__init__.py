"""Checks: each module produces :class:`~compat.checks.finding.Finding` objects and imports no pytest."""

from compat.checks.finding import Finding, to_curl
from compat.config.model import CHECK_NAMES

#: the built-in checks, in the order they are collected (canary last: it judges the whole stage)
CHECKS: tuple[str, ...] = CHECK_NAMES


def chosen_checks(names: list[str], flag: str) -> tuple[str, ...] | None:
    """The checks a command line names (``flag``: the option, for the error): None when it names none
    (the config decides), ``()`` for ``none``; an unknown name is a :class:`~compat.errors.UsageError`."""
    from compat.errors import UsageError

    if not names:
        return None
    if names == ["none"]:
        return ()
    for name in names:
        if name not in CHECKS:
            raise UsageError(f"{flag}: {name!r} is not a check; choose from {', '.join(CHECKS)}, or none")
    return tuple(names)


__all__ = ["CHECKS", "Finding", "chosen_checks", "to_curl"]
