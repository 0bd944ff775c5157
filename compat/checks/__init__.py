"""Checks: each module produces :class:`~compat.checks.finding.Finding` objects and imports no pytest."""

from compat.checks.finding import Finding, to_curl

__all__ = ["Finding", "to_curl"]
