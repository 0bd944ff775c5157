"""Time to a verdict: the bundled example gated with ``compat run`` (warm images) vs its floor, in one run.

    python bench/time_to_verdict.py [--examples 50] [--quick]

The run: ``compat run --runtime docker --stage onebox --stage zeta --stage rollback`` on a copy of the
repository's ``compat.toml`` with ``[checks.properties] examples = 50``, in a temporary directory (the
example's ``fixtures/`` and ``contracts/`` linked in, so the reports land there, not in the checkout).
Images must already be built (run it once, or ``ci/example.sh``): the first, warming run is not timed
unless ``--no-warm`` is given. Its output is read line by line and time-stamped, which splits the wall
time into: CLI + pytest start-up (to the first line of the session), each topology start (``[ready]``),
tests and checks (the report's ``duration_s`` of each), and the tail (reports, teardown, exit).

The floor: every container the run started (seen on the engine's event stream, inspected as it starts:
image, command, env, network aliases, port) started again at once with the docker SDK alone, in parallel
threads on one network, each waited for on its health path; plus the time to send, directly to one
orders container, as many HTTP requests as the run made (counted from the report: requests the routers
counted, differential's direct requests, the data/yoyo checks outside mixed stages), one keep-alive
client at a time. Ratio = run wall time / floor. Targets: <= 30 s and <= 1.3x the floor.

Everything the floor starts carries compat's labels with a run id of its own and is removed at the end
(also on Ctrl-C / SIGTERM). Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import REPO, machine, remove_labelled, sdk_start, sigterm_as_interrupt, table

from compat.runtime.base import LABEL_PROJECT, LABEL_ROLE, LABEL_SERVICE, RunContext
from compat.runtime.docker import connect

TARGET_SECONDS = 30.0
TARGET_RATIO = 1.3
PROJECT = "compat-example"


def workdir(examples: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="compat-ttv-"))
    for name in ("fixtures", "contracts"):
        (root / name).symlink_to(REPO / name)
    config = (REPO / "compat.toml").read_text()
    (root / "compat.toml").write_text(config + f"\n[checks.properties]\nexamples = {examples}\n")
    return root


class Watcher:
    """Records every container of the example project that starts while it listens (engine events)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.boxes: list[dict[str, Any]] = []
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._stream = self.client.events(decode=True, filters={"type": "container", "event": "start"})
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()
        self._thread.join(5)

    def _run(self) -> None:
        with contextlib.suppress(Exception):
            for event in self._stream:
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                if attributes.get(LABEL_PROJECT) != PROJECT:
                    continue
                with contextlib.suppress(Exception):
                    self.boxes.append(self._describe(event["Actor"]["ID"], attributes))

    def _describe(self, cid: str, labels: dict[str, str]) -> dict[str, Any]:
        info = self.client.api.inspect_container(cid)
        config = info["Config"]
        port = int(next(iter(config.get("ExposedPorts") or {"8080/tcp": {}})).split("/")[0])
        aliases: list[str] = []
        for net in (info["NetworkSettings"].get("Networks") or {}).values():
            aliases += [a for a in net.get("Aliases") or [] if not cid.startswith(a)]
        role = labels.get(LABEL_ROLE, "")
        return {
            "image": config["Image"],
            "command": config.get("Cmd"),
            "env": dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e),
            "aliases": sorted(set(aliases)),
            "port": port,
            "health": "/_compat/router/health" if role == "router" else "/health",
            "role": role,
            "service": labels.get(LABEL_SERVICE, ""),
        }


def run_compat(root: Path, quick: bool) -> tuple[float, int, list[tuple[float, str]]]:
    stages = (
        ["--stage", "onebox"] if quick else ["--stage", "onebox", "--stage", "zeta", "--stage", "rollback"]
    )
    argv = ["compat", "run", "--runtime", "docker", *stages]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "COMPAT_BASE_IMAGE": os.environ.get("COMPAT_BASE_IMAGE", "compat-base:bookworm"),
    }
    lines: list[tuple[float, str]] = []
    began = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - began, line.rstrip("\n")))
        rc = proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    return time.perf_counter() - began, rc, lines


def count_requests(report: dict[str, Any]) -> dict[str, int]:
    """Requests the run made, by source (see the module doc)."""
    counted = {"via routers (router stats)": 0, "differential, direct": 0, "other checks, no router": 0}
    canary_stages = {c["stage"] for c in report["checks"] if c["check"] == "canary"}
    for check in report["checks"]:
        metrics = check.get("metrics") or {}
        if check["check"] == "canary":
            counted["via routers (router stats)"] += sum(
                int(v.get("requests", 0)) for v in (metrics.get("versions") or {}).values()
            )
        elif check["check"] == "differential":
            counted["differential, direct"] += int(metrics.get("http_requests", 0))
        elif check["stage"] not in canary_stages and isinstance(metrics.get("requests"), int):
            counted["other checks, no router"] += int(metrics["requests"])
    return counted


def direct_requests(client: Any, image: str, count: int, labels: dict[str, str], prefix: str) -> float:
    """Seconds to send ``count`` GET /orders?limit=2 to one orders container, one keep-alive client."""
    box = {"image": image, "port": 8080, "health": "/health", "env": {}}
    _, made = sdk_start(client, [box], labels, prefix)
    ports = client.api.inspect_container(made[0].id)["NetworkSettings"]["Ports"]["8080/tcp"]
    conn = http.client.HTTPConnection("127.0.0.1", int(ports[0]["HostPort"]), timeout=10)
    sample = max(50, min(count, 2000))
    for _ in range(20):
        conn.request("GET", "/orders?limit=2")
        conn.getresponse().read()
    began = time.perf_counter()
    for _ in range(sample):
        conn.request("GET", "/orders?limit=2")
        conn.getresponse().read()
    conn.close()
    return (time.perf_counter() - began) / sample * count


def breakdown(wall: float, lines: list[tuple[float, str]], report: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    first = next((t for t, text in lines if text.startswith("compat: config")), 0.0)
    rows.append(["CLI + pytest start-up (to the session's first line)", f"{first:.2f} s"])
    starts = [
        (t, float(m.group(2)), int(m.group(1)))
        for t, text in lines
        if (m := re.search(r"\[ready\] (\d+) instance\(s\) ready in ([\d.]+) s", text))
    ]
    rows.append(
        [
            (
                f"topology starts ({len(starts)} start() calls, {sum(s[2] for s in starts)} instances; "
                "image resolve + create + health)"
            ),
            f"{sum(s[1] for s in starts):.2f} s  (" + ", ".join(f"{s[2]}: {s[1]:.2f}" for s in starts) + ")",
        ]
    )
    tests = sum(float(t.get("duration_s") or 0) for t in report.get("tests") or [])
    rows.append([f"tests ({len(report.get('tests') or [])})", f"{tests:.2f} s"])
    by_check: dict[str, float] = {}
    for check in report["checks"]:
        by_check[check["check"]] = by_check.get(check["check"], 0.0) + float(check.get("duration_s") or 0)
    for name, seconds in sorted(by_check.items(), key=lambda kv: -kv[1]):
        rows.append([f"check {name}", f"{seconds:.2f} s"])
    accounted = first + sum(s[1] for s in starts) + tests + sum(by_check.values())
    rows.append(
        ["rest (collection, teardown/stop, rollback re-pointing, reports, exit)", f"{wall - accounted:.2f} s"]
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=50, help="[checks.properties] examples")
    parser.add_argument("--quick", action="store_true", help="onebox only, 10 examples (~40 s)")
    parser.add_argument("--no-warm", action="store_true", help="do not run once untimed first")
    args = parser.parse_args()
    examples = 10 if args.quick else args.examples
    sigterm_as_interrupt()
    client = connect()
    context = RunContext.new("bench-ttv")
    root = workdir(examples)
    try:
        if not args.no_warm and not args.quick:
            run_compat(root, quick=True)  # builds or finds the images; not timed
        with Watcher(client) as watcher:
            wall, rc, lines = run_compat(root, args.quick)
            time.sleep(0.5)  # the last events
        report = json.loads((root / "compat-report" / "compat-report.json").read_text())
        boxes = list(watcher.boxes)
        start_floor, _ = sdk_start(client, boxes, context.labels(), context.prefix)
        remove_labelled(client, context.run_id)
        counted = count_requests(report)
        total = sum(counted.values())
        orders = next((b["image"] for b in boxes if b["service"] == "orders" and b["role"] != "router"), None)
        scoped = context.scoped("requests")
        request_floor = (
            direct_requests(client, orders, total, scoped.labels(), scoped.prefix) if orders else 0.0
        )
    finally:
        remove_labelled(client, context.run_id)
        client.close()
        shutil.rmtree(root, ignore_errors=True)
    floor = start_floor + request_floor
    verdict = next((text for _, text in reversed(lines) if text.startswith("verdict:")), f"exit {rc}")
    print(machine())
    stages = "onebox" if args.quick else "onebox, zeta, rollback"
    print(f"compat run --runtime docker (stages {stages}), properties examples = {examples}: {verdict}")
    print(table([["where the time goes", "seconds"], *breakdown(wall, lines, report)]))
    print()
    rows: list[list[object]] = [["", "seconds", "target", ""]]
    rows.append(
        [
            "time to verdict (wall)",
            f"{wall:.1f}",
            f"<= {TARGET_SECONDS:g}",
            "met" if wall <= TARGET_SECONDS else "NOT met",
        ]
    )
    rows.append([f"floor: start {len(boxes)} containers at once (docker SDK)", f"{start_floor:.2f}", "", ""])
    rows.append(
        [
            f"floor: {total} requests direct (" + ", ".join(f"{k} {v}" for k, v in counted.items()) + ")",
            f"{request_floor:.2f}",
            "",
            "",
        ]
    )
    ratio = wall / floor if floor else float("nan")
    rows.append(
        [
            "ratio to floor",
            f"{ratio:.2f}x",
            f"<= {TARGET_RATIO:g}x",
            "met" if ratio <= TARGET_RATIO else "NOT met",
        ]
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
