"""The mixing router: a small reverse proxy in front of the replicas (versions) of one service.

It decides which version answers each request (policies: round-robin, weighted, sticky, yoyo, pinned),
stamps who answered (``X-Compat-Upstream``, ``X-Compat-Version``, ``Via``), counts per version and per
instance, and injects faults (delay, error, drop). Admin endpoints live under ``/_compat/router/``.

This package uses the standard library only and imports nothing else of ``compat``: the router's container
image is a bare Python image plus a copy of this directory (and an empty ``compat/__init__.py``).

In process::

    with Router({"upstreams": [{"name": "a-0", "version": "v1", "address": "127.0.0.1:8001"}]}) as r:
        ...  # r.url, r.stats(), r.update(policy="yoyo")

As a program: ``python -m compat.router --listen 0.0.0.0:8080 --config FILE_OR_JSON`` (or the
``COMPAT_ROUTER_CONFIG`` environment variable).

The pin header (``X-Compat-Pin``) is forwarded upstream unchanged. Services should propagate it to their own
downstream calls like a trace header, so that pinning the entry point pins every routed hop behind it (a
router whose service has no such version answers 421, it never silently falls back).
"""

from .config import (
    DEFAULT_PIN_HEADER,
    DEFAULT_SESSION_HEADER,
    POLICIES,
    POLICY_HEADER,
    Fault,
    RouterConfig,
    RouterConfigError,
    Upstream,
)
from .policy import FaultDice, Policy, RequestKey, UnknownPin, make_policy, stable_hash
from .proxy import ADMIN_PREFIX, FAULT_HEADER, UPSTREAM_HEADER, VERSION_HEADER, Router
from .stats import Stats

__all__ = [
    "ADMIN_PREFIX",
    "DEFAULT_PIN_HEADER",
    "DEFAULT_SESSION_HEADER",
    "FAULT_HEADER",
    "POLICIES",
    "POLICY_HEADER",
    "UPSTREAM_HEADER",
    "VERSION_HEADER",
    "Fault",
    "FaultDice",
    "Policy",
    "RequestKey",
    "Router",
    "RouterConfig",
    "RouterConfigError",
    "Stats",
    "UnknownPin",
    "Upstream",
    "make_policy",
    "stable_hash",
]
