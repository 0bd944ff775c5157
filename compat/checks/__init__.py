"""Checks: each module produces :class:`~compat.checks.finding.Finding` objects and imports no pytest."""

from compat.checks.finding import Finding, to_curl

#: the built-in checks, in the order they are collected
CHECKS: tuple[str, ...] = ("spec-diff", "contracts", "properties")

__all__ = ["CHECKS", "Finding", "to_curl"]
