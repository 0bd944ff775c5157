"""Findings to verdict, waivers and exit codes."""

from compat.gate.exitcodes import ExitCode

__all__ = ["ExitCode"]
