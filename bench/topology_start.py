"""How well compat's docker runtime starts a topology in parallel: N containers vs one, in one run.

    python bench/topology_start.py [--sizes 2,8,32] [--rounds 3] [--quick]

Every measurement is one ``DockerRuntime.start(specs)`` call (compat's own runtime: image look-up, network,
container create + start, published-port look-up and HTTP health wait, all in parallel), timed from the
call to its return; the runtime is closed (containers and network removed) outside the timed part. The
instance is the base image running ``python3 -m http.server`` (health path ``/``), so the figure is the
harness and the engine, not an app's own start-up.

Rounds alternate the order of the sizes (1, 2, 8, 32 then 32, 8, 2, 1 …) so machine noise hits them alike.
The ratio is the median N-container start over the median single-container start (the slowest single
container of a parallel start cannot be faster than one started alone). Target: <= 1.3x for N = 8.

Containers carry compat's labels (a run id of their own) and are removed at the end, on Ctrl-C and SIGTERM
too; only this run's are touched. Health traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from _common import BASE_IMAGE, machine, median, remove_labelled, sdk_start, sigterm_as_interrupt, table

from compat.runtime import select_runtime
from compat.runtime.base import InstanceSpec, RunContext
from compat.runtime.docker import connect

PORT = 8080
TARGET = 1.3


def specs(count: int, tag: str) -> list[InstanceSpec]:
    return [
        InstanceSpec(
            name=f"box-{tag}-{index}",
            service="box",
            version="v1",
            role="baseline",
            port=PORT,
            health="/",
            image=BASE_IMAGE,
            container_command=("python3", "-m", "http.server", str(PORT), "--bind", "0.0.0.0"),
            health_timeout=60.0,
        )
        for index in range(count)
    ]


def start_once(context: RunContext, count: int, tag: str) -> float:
    """Seconds for one runtime.start() of ``count`` containers (clean-up not timed)."""
    runtime = select_runtime("docker", context.scoped(tag))
    try:
        began = time.perf_counter()
        runtime.start(specs(count, tag))
        return time.perf_counter() - began
    finally:
        runtime.close()


def sdk_once(client: Any, context: RunContext, count: int, tag: str) -> float:
    """Seconds for the same ``count`` containers started with the docker SDK alone (the floor)."""
    scoped = context.scoped(f"sdk-{tag}")
    box = {
        "image": BASE_IMAGE,
        "port": PORT,
        "health": "/",
        "command": ["python3", "-m", "http.server", str(PORT), "--bind", "0.0.0.0"],
    }
    try:
        seconds, _ = sdk_start(client, [box] * count, scoped.labels(), scoped.prefix)
        return seconds
    finally:
        remove_labelled(client, context.run_id, scope=scoped.scope)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2,8,32", help="topology sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--quick", action="store_true", help="sizes 2,8 and 2 rounds (~30 s)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rounds = max(1, min(args.rounds, 10))
    if args.quick:
        sizes, rounds = [n for n in sizes if n <= 8] or [2, 8], 2
    sizes = [1, *sorted(n for n in set(sizes) if 1 < n <= 64)]
    sigterm_as_interrupt()
    context = RunContext.new("bench-topology")
    times: dict[int, list[float]] = {n: [] for n in sizes}
    floor: dict[int, list[float]] = {n: [] for n in sizes}
    client = connect()
    try:
        start_once(context, 1, "warm")  # first docker calls, imports, image look-up
        for index in range(rounds):
            order = sizes if index % 2 == 0 else list(reversed(sizes))
            for count in order:
                times[count].append(start_once(context, count, f"r{index}-n{count}"))
                floor[count].append(sdk_once(client, context, count, f"r{index}-n{count}"))
    finally:
        left = remove_labelled(client, context.run_id)
        client.close()
        if left:
            print(f"(removed {left} leftover container(s) of this run)", file=sys.stderr)
    single = median(times[1])
    rows: list[list[object]] = [
        ["containers", "compat start (median)", "samples (s)", "ratio vs 1", "docker SDK alone", "compat/SDK"]
    ]
    for count in sizes:
        ratio = median(times[count]) / single
        rows.append(
            [
                count,
                f"{median(times[count]):.2f} s",
                " ".join(f"{t:.2f}" for t in times[count]),
                f"{ratio:.2f}x" + ("" if count != 8 else f" (target <= {TARGET}x)"),
                f"{median(floor[count]):.2f} s ({median(floor[count]) / median(floor[1]):.2f}x)",
                f"{median(times[count]) / median(floor[count]):.2f}x",
            ]
        )
    print(machine())
    print(f"compat DockerRuntime.start(), image {BASE_IMAGE} (python3 -m http.server), {rounds} rounds")
    print(table(rows))
    if 8 in times:
        ratio8 = median(times[8]) / single
        print(f"N=8: {ratio8:.2f}x the single container ({'met' if ratio8 <= TARGET else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
