"""The topology model (what runs, and how instances find each other) and the plans that build it."""

from compat.topology.model import Plan, Topology
from compat.topology.planner import plan_default

__all__ = ["Plan", "Topology", "plan_default"]
