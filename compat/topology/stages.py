"""Stage plans as pure data: which stages run, the rollback's steps, the skew's combinations.

Nothing here starts anything; :mod:`compat.topology.builder` turns these plans into instance specs.

- ``default_stages``: the stages a config implies when it configures none.
- ``rollback_steps``: baseline -> one candidate box -> all candidate -> all baseline, keeping state. A seed
  other than 0 randomises which box goes first and the batch sizes of the remaining upgrade/rollback
  (after CockroachDB's mixedversion plans); the same seed always gives the same plan.
- ``skew_combinations``: every old/new combination of a call chain's hops, or for chains longer than
  three a pairwise-covering subset (every pair of hops sees all four old/new pairings).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from compat.config.model import Config, Stage

PHASES = ("before", "mixed", "after-upgrade", "after-rollback")


def changed_services(config: Config) -> tuple[str, ...]:
    """Names of the services that have a candidate (the ones a change touches), sorted."""
    return tuple(sorted(n for n, s in config.services.items() if s.candidate))


def default_stages(config: Config) -> dict[str, Stage]:
    """Configured stages, or sensible defaults: onebox where a service has a candidate, zeta/reverse-zeta
    where dependencies are declared, rollback where a changed service shares state."""
    if config.stages:
        return {name: st for name, st in config.stages.items() if st.enabled}
    changed = changed_services(config)
    stages: dict[str, Stage] = {}
    if not changed:
        return stages
    stages["onebox"] = Stage(name="onebox", kind="onebox", services=changed)
    consumers = tuple(n for n in changed if config.services[n].depends_on)
    providers = tuple(
        n for n in changed if any(d.target == n for s in config.services.values() for d in s.depends_on)
    )
    if consumers:
        stages["zeta"] = Stage(name="zeta", kind="zeta", services=consumers)
    if providers:
        stages["reverse-zeta"] = Stage(name="reverse-zeta", kind="reverse-zeta", services=providers)
    stateful = tuple(n for n in changed if config.services[n].state)
    if stateful:
        stages["rollback"] = Stage(name="rollback", kind="rollback", services=stateful)
    return stages


@dataclass(frozen=True)
class RolloutStep:
    """One step of a rollback plan: which version each box slot runs, and the phase it represents."""

    index: int
    phase: str
    boxes: tuple[str, ...]  # version per box slot, slot i is box i
    action: str  # what changed to reach this step, e.g. "upgrade box 2"

    def count(self, version: str) -> int:
        return sum(1 for b in self.boxes if b == version)

    def describe(self) -> str:
        fleet = " ".join(self.boxes)
        return f"step {self.index}: {self.phase:<14} [{fleet}]  ({self.action})"


def rollback_steps(boxes: int, baseline: str, candidate: str, seed: int = 0) -> list[RolloutStep]:
    """The rollback plan for ``boxes`` slots. Seed 0 is the canonical plan; other seeds shuffle."""
    if boxes < 1:
        raise ValueError(f"a rollback needs at least one box (got {boxes})")
    rng = random.Random(seed)
    order = list(range(boxes))
    if seed:
        rng.shuffle(order)
    fleet = [baseline] * boxes
    steps = [RolloutStep(0, "before", tuple(fleet), "all boxes at the baseline")]

    def add(phase: str, action: str) -> None:
        steps.append(RolloutStep(len(steps), phase, tuple(fleet), action))

    first, rest = order[0], order[1:]
    fleet[first] = candidate
    if rest:
        add("mixed", f"upgrade box {first} (one-box)")
    for batch in _batches(rest, rng, seed):
        for slot in batch:
            fleet[slot] = candidate
        done = all(v == candidate for v in fleet)
        add(
            "after-upgrade" if done else "mixed",
            f"upgrade box{'es' if len(batch) > 1 else ''} " + ", ".join(map(str, batch)),
        )
    if not rest:
        add("after-upgrade", f"upgrade box {first}")
    back = list(reversed(order)) if not seed else rng.sample(order, len(order))
    for batch in _batches(back, rng, seed):
        for slot in batch:
            fleet[slot] = baseline
        done = all(v == baseline for v in fleet)
        add(
            "after-rollback" if done else "mixed",
            f"roll back box{'es' if len(batch) > 1 else ''} " + ", ".join(map(str, batch)),
        )
    return steps


def _batches(slots: list[int], rng: random.Random, seed: int) -> list[list[int]]:
    """Seed 0: all at once (the canonical plan); else random batch sizes."""
    if not slots:
        return []
    if not seed:
        return [list(slots)]
    out: list[list[int]] = []
    i = 0
    while i < len(slots):
        size = rng.randint(1, len(slots) - i)
        out.append(slots[i : i + size])
        i += size
    return out


def format_rollback(steps: list[RolloutStep], *, service: str, seed: int) -> str:
    lines = [f"rollback plan for {service} (seed {seed}; replay with --compat-seed {seed}):"]
    lines += [f"  {s.describe()}" for s in steps]
    return "\n".join(lines)


def skew_combinations(chain: tuple[str, ...]) -> list[dict[str, str]]:
    """Old/new per hop of ``chain``: all 2**n for n <= 3, else a pairwise-covering subset.

    Each combination maps service -> "baseline"/"candidate". Deterministic.
    """
    n = len(chain)
    if n < 2:
        raise ValueError(f"a skew chain needs at least two services (got {list(chain)})")
    rows = list(itertools.product((0, 1), repeat=n))
    if n > 3:
        rows = _pairwise_cover(n)
    roles = ("baseline", "candidate")
    return [{svc: roles[bit] for svc, bit in zip(chain, row, strict=True)} for row in rows]


def _pairwise_cover(n: int) -> list[tuple[int, ...]]:
    """Greedy covering array of strength 2 over n binary factors (deterministic)."""
    uncovered = {(i, j, a, b) for i, j in itertools.combinations(range(n), 2) for a in (0, 1) for b in (0, 1)}
    chosen: list[tuple[int, ...]] = []

    def covers(row: tuple[int, ...]) -> set[tuple[int, int, int, int]]:
        return {(i, j, row[i], row[j]) for i, j in itertools.combinations(range(n), 2)} & uncovered

    candidates: list[tuple[int, ...]]
    if n <= 14:
        candidates = list(itertools.product((0, 1), repeat=n))
    else:
        rng = random.Random(n)
        candidates = [tuple(rng.randint(0, 1) for _ in range(n)) for _ in range(4096)]
        candidates += [tuple([0] * n), tuple([1] * n)]
    for row in (tuple([0] * n), tuple([1] * n)):
        chosen.append(row)
        uncovered -= covers(row)
    while uncovered:
        best = max(candidates, key=lambda r: len(covers(r)))
        gained = covers(best)
        if not gained:  # cannot happen with the full product; guard the sampled case
            i, j, a, b = sorted(uncovered)[0]
            fill = [0] * n
            fill[i], fill[j] = a, b
            best, gained = tuple(fill), covers(tuple(fill))
        chosen.append(best)
        uncovered -= gained
    return chosen


def is_pairwise_covering(rows: list[dict[str, str]], chain: tuple[str, ...]) -> bool:
    """True when every pair of hops sees all four (old/new, old/new) pairings."""
    for a, b in itertools.combinations(chain, 2):
        seen = {(r[a], r[b]) for r in rows}
        if len(seen) < 4:
            return False
    return True
