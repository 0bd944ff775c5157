"""How the harness scales: 16 services x 2 versions vs 2 services — time to a verdict and peak RSS.

    python bench/scale.py [--services 16] [--rounds 2] [--runtime process] [--quick]

A synthetic project is generated in a temporary directory: ``--services`` copies of a tiny stdlib service
(``tests/data/scratch/app.py``: ``/health``, ``/hello``), each with a baseline ``v1`` and a candidate
``v2``, and one compat test that calls every service through ``compat_client``. Each measurement is
``compat run --runtime process --stage onebox`` (so per service: a baseline box, a candidate box and a
router, and the default checks) in a fresh wrapper process that reports the wall time and
``RUSAGE_CHILDREN`` ``ru_maxrss`` — the largest single process of the run's tree, which is the harness
(the CLI's pytest), not the services (a few MB each).

Rounds alternate the small and the large project. Targets: large / small time <= 3x; peak RSS of the
large run <= 150 MB. Everything runs on 127.0.0.1; processes end with the run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, machine, median, sigterm_as_interrupt, table

TARGET_RATIO = 3.0
TARGET_RSS_MB = 150.0

WRAPPER = """
import json, resource, subprocess, sys, time
began = time.perf_counter()
rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": rc, "wall": wall, "maxrss_kb": peak}))
"""

TEST = """
import pytest

SERVICES = {services!r}


@pytest.mark.compat
def test_every_service_answers(compat_client):
    for name in SERVICES:
        answer = compat_client(name).get("/hello")
        assert answer.status_code == 200, (name, answer.text)
"""


def project(root: Path, count: int) -> Path:
    root.mkdir(parents=True)
    shutil.copy(REPO / "tests" / "data" / "scratch" / "app.py", root / "app.py")
    names = [f"svc{index:02d}" for index in range(count)]
    lines = [f'project = "scale{count}"', 'tests = ["tests"]', ""]
    for name in names:
        lines += [f"[services.{name}]", "port = 8080", 'baseline = "v1"', 'candidate = "v2"', ""]
        for version in ("v1", "v2"):
            lines += [
                f"[services.{name}.versions.{version}]",
                (
                    'command = ["python3", "app.py", "--port", "{port}", "--host", "{host}", "--state", '
                    f'"{{state_dir}}", "--version", "{version}"]'
                ),
                "",
            ]
    (root / "compat.toml").write_text("\n".join(lines))
    (root / "tests").mkdir()
    (root / "tests" / "test_scale.py").write_text(TEST.format(services=names))
    return root


def measure(root: Path, runtime: str) -> dict[str, float]:
    argv = ["compat", "run", "--runtime", runtime, "--stage", "onebox", "-q"]
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv], cwd=root, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    report = root / "compat-report" / "compat-report.json"
    result["verdict"] = json.loads(report.read_text())["verdict"]["result"] if report.exists() else "none"  # type: ignore[assignment]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runtime", choices=("process", "docker"), default="process")
    parser.add_argument("--quick", action="store_true", help="1 round (~40 s)")
    args = parser.parse_args()
    rounds = 1 if args.quick else max(1, min(args.rounds, 5))
    large = max(2, min(args.services, 64))
    sigterm_as_interrupt()
    results: dict[int, list[dict[str, float]]] = {2: [], large: []}
    with tempfile.TemporaryDirectory(prefix="compat-scale-") as tmp:
        roots = {n: project(Path(tmp) / f"p{n}", n) for n in results}
        for index in range(rounds):
            order = [2, large] if index % 2 == 0 else [large, 2]
            for count in order:
                results[count].append(measure(roots[count], args.runtime))
    rows: list[list[object]] = [
        ["services", "time to verdict (median)", "samples (s)", "peak RSS (max)", "verdict"]
    ]
    for count, runs in results.items():
        rows.append(
            [
                f"{count} x 2 versions",
                f"{median([r['wall'] for r in runs]):.1f} s",
                " ".join(f"{r['wall']:.1f}" for r in runs),
                f"{max(r['maxrss_kb'] for r in runs) / 1024:.0f} MB",
                ", ".join(sorted({str(r["verdict"]) for r in runs})),
            ]
        )
    ratio = median([r["wall"] for r in results[large]]) / median([r["wall"] for r in results[2]])
    rss = max(r["maxrss_kb"] for r in results[large]) / 1024
    print(machine())
    print(f"compat run --runtime {args.runtime} --stage onebox, synthetic project, {rounds} round(s)")
    print(table(rows))
    print(
        f"time ratio {large} / 2 services: {ratio:.2f}x   "
        f"(target <= {TARGET_RATIO:g}x: {'met' if ratio <= TARGET_RATIO else 'NOT met'})"
    )
    print(
        f"peak RSS with {large} services: {rss:.0f} MB   "
        f"(target <= {TARGET_RSS_MB:g} MB: {'met' if rss <= TARGET_RSS_MB else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
