"""Checks: each module produces :class:`~compat.checks.finding.Finding` objects and imports no pytest."""

from compat.checks.finding import Finding, to_curl
from compat.config.model import CHECK_NAMES

#: the built-in checks, in the order they are collected (canary last: it judges the whole stage)
CHECKS: tuple[str, ...] = CHECK_NAMES

__all__ = ["CHECKS", "Finding", "to_curl"]
