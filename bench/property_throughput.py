"""What compat's properties check costs over schemathesis alone: requests per second, same spec and server.

    python bench/property_throughput.py [--examples 50] [--rounds 3] [--quick]

The server: the example's ``orders`` v1 as a local process on 127.0.0.1 (a fresh database per measurement,
started outside the timed part). Both variants explore every operation of ``fixtures/orders/openapi/v1.yaml``
statelessly with the same Hypothesis settings (``examples`` per operation, seed 0, no database, no
deadline, generate phase only) and validate every response with the same schemathesis checks:

* compat:       ``compat.checks.properties.run_properties(..., PropertyOptions(stateful=False))``
* schemathesis: its Python API alone — ``schema.get_all_operations()``, ``@given(op.as_strategy())``,
  ``case.call(session=...)``, ``case.validate_response(checks=...)`` — no findings kept.

Requests are counted at the session (every request sent, checks' own follow-up requests included). Rounds
alternate which variant goes first; the figure is the median requests/s of each and their ratio.
Target: compat >= 0.9x schemathesis alone.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from _common import REPO, machine, median, processes, start_orders, table

from compat.checks.properties import DEFAULT_CHECKS, PropertyOptions, run_properties

SPEC = REPO / "fixtures" / "orders" / "openapi" / "v1.yaml"
TARGET = 0.9


class CountingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent += 1
        return super().send(request, **kwargs)


def with_compat(url: str, examples: int) -> int:
    counter = [0]

    def count(method: str, target: str) -> None:
        counter[0] += 1

    run_properties(SPEC, url, PropertyOptions(max_examples=examples, stateful=False), on_request=count)
    return counter[0]


def with_schemathesis(url: str, examples: int) -> int:
    import schemathesis
    from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
    from schemathesis.checks import CHECKS, load_all_checks
    from schemathesis.core.failures import FailureGroup
    from schemathesis.core.result import Ok

    load_all_checks()
    checks = [CHECKS.get_one(name) for name in DEFAULT_CHECKS]
    schema = schemathesis.openapi.from_path(SPEC)
    session = CountingSession()
    options = settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            continue
        operation = result.ok()

        @seed(0)
        @options
        @given(operation.as_strategy())
        def explore(case: Any) -> None:
            response = case.call(base_url=url, session=session, timeout=10)
            with contextlib.suppress(FailureGroup):  # failures are not kept: only the work counts
                case.validate_response(
                    response, checks=checks, transport_kwargs={"base_url": url, "session": session}
                )

        explore()
    session.close()
    return session.sent


def measure(
    variant: Callable[[str, int], int], examples: int, work: Path, tag: str
) -> tuple[float, int, float]:
    """(requests/s, requests, seconds) of one variant against a fresh orders process."""
    with processes() as procs:
        url = start_orders("v1", work / f"{tag}.db", procs)
        began = time.perf_counter()
        sent = variant(url, examples)
        seconds = time.perf_counter() - began
    return sent / seconds, sent, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=50, help="examples per operation")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--quick", action="store_true", help="10 examples, 1 round (~15 s)")
    args = parser.parse_args()
    examples, rounds = (
        (10, 1) if args.quick else (max(1, min(args.examples, 1000)), max(1, min(args.rounds, 10)))
    )
    variants: dict[str, Callable[[str, int], int]] = {
        "compat": with_compat,
        "schemathesis": with_schemathesis,
    }
    results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="compat-props-") as tmp:
        work = Path(tmp)
        measure(with_schemathesis, 2, work, "warm")  # imports, schema parsing caches
        measure(with_compat, 2, work, "warm-compat")
        for index in range(rounds):
            order = list(variants) if index % 2 == 0 else list(reversed(variants))
            for name in order:
                results[name].append(measure(variants[name], examples, work, f"{name}-{index}"))
    rows: list[list[object]] = [["variant", "requests/s (median)", "requests", "seconds per round"]]
    for name, runs in results.items():
        rows.append(
            [
                name,
                f"{median([r[0] for r in runs]):.0f}",
                " ".join(str(r[1]) for r in runs),
                " ".join(f"{r[2]:.2f}" for r in runs),
            ]
        )
    ratio = median([r[0] for r in results["compat"]]) / median([r[0] for r in results["schemathesis"]])
    print(machine())
    print(
        f"stateless properties on {SPEC.relative_to(REPO)}, {examples} examples per operation, "
        f"{rounds} rounds"
    )
    print(table(rows))
    print(
        f"ratio compat / schemathesis alone: {ratio:.2f}x   "
        f"(target >= {TARGET}x: {'met' if ratio >= TARGET else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
