"""A Python provider-state set-up for the contracts check tests: forwards to the orders app's endpoint.

The tests set ``ORDERS_STATE_URL``; every call is recorded in ``CALLS``.
"""

from __future__ import annotations

import os
from typing import Any

import requests

CALLS: list[tuple[str, dict[str, Any], str]] = []


def set_state(state: str, params: dict[str, Any], action: str) -> dict[str, Any]:
    """Returns the app's answer: its ``next_cursor`` feeds the contract's ProviderState generator."""
    CALLS.append((state, params, action))
    response = requests.post(
        os.environ["ORDERS_STATE_URL"], json={"state": state, "params": params, "action": action}, timeout=5
    )
    response.raise_for_status()
    return dict(response.json())


def broken(state: str, params: dict[str, Any], action: str) -> None:
    raise RuntimeError(f"cannot set up {state!r}")
