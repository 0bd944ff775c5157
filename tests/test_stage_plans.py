"""Pure stage plans: rollback steps (canonical and seeded replay) and skew combinations."""

from __future__ import annotations

import itertools

import pytest

from compat.topology.stages import (
    PHASES,
    format_rollback,
    is_pairwise_covering,
    rollback_steps,
    skew_combinations,
)


def test_canonical_rollback_is_baseline_onebox_all_candidate_all_baseline() -> None:
    steps = rollback_steps(3, "v1", "v2", seed=0)
    assert [s.boxes for s in steps] == [
        ("v1", "v1", "v1"),
        ("v2", "v1", "v1"),
        ("v2", "v2", "v2"),
        ("v1", "v1", "v1"),
    ]
    assert [s.phase for s in steps] == ["before", "mixed", "after-upgrade", "after-rollback"]


@pytest.mark.parametrize("seed", [1, 2, 7, 42, 1234])
@pytest.mark.parametrize("boxes", [1, 2, 3, 5])
def test_every_seeded_plan_is_a_valid_rollout(seed: int, boxes: int) -> None:
    steps = rollback_steps(boxes, "old", "new", seed=seed)
    assert steps[0].boxes == ("old",) * boxes
    assert steps[0].phase == "before"
    assert steps[-1].boxes == ("old",) * boxes
    assert steps[-1].phase == "after-rollback"
    assert ("new",) * boxes in [s.boxes for s in steps], "the plan never reaches all-candidate"
    upgraded = [s for s in steps if s.phase == "after-upgrade"]
    assert len(upgraded) == 1
    for a, b in itertools.pairwise(steps):
        assert a.boxes != b.boxes, "every step changes the fleet"
    assert {s.phase for s in steps} <= set(PHASES)
    if boxes > 1:
        assert steps[1].count("new") == 1, "the first upgrade is a one-box"


def test_same_seed_replays_the_same_plan_and_seeds_differ() -> None:
    plans = {seed: [s.boxes for s in rollback_steps(4, "a", "b", seed=seed)] for seed in range(1, 30)}
    assert plans[5] == [s.boxes for s in rollback_steps(4, "a", "b", seed=5)]
    assert len({tuple(p) for p in plans.values()}) > 5, "seeds should produce different plans"


def test_rollback_plan_is_printed_with_its_seed() -> None:
    text = format_rollback(rollback_steps(2, "v1", "v2", seed=9), service="orders", seed=9)
    assert "seed 9" in text
    assert "--compat-seed 9" in text
    assert "step 0: before" in text


def test_rollback_needs_a_box() -> None:
    with pytest.raises(ValueError, match="at least one box"):
        rollback_steps(0, "v1", "v2")


@pytest.mark.parametrize("n", [2, 3])
def test_short_chains_run_every_combination(n: int) -> None:
    chain = tuple(f"s{i}" for i in range(n))
    combos = skew_combinations(chain)
    assert len(combos) == 2**n
    assert len({tuple(c.values()) for c in combos}) == 2**n


@pytest.mark.parametrize("n", [4, 5, 8, 12, 20])
def test_long_chains_get_a_pairwise_covering_subset(n: int) -> None:
    chain = tuple(f"s{i}" for i in range(n))
    combos = skew_combinations(chain)
    assert is_pairwise_covering(combos, chain)
    assert len(combos) < 2**n
    assert combos == skew_combinations(chain), "deterministic"


def test_pairwise_check_detects_a_gap() -> None:
    chain = ("a", "b", "c")
    rows = [
        {"a": "baseline", "b": "baseline", "c": "baseline"},
        {"a": "candidate", "b": "candidate", "c": "candidate"},
    ]
    assert not is_pairwise_covering(rows, chain)


def test_skew_needs_two_hops() -> None:
    with pytest.raises(ValueError, match="at least two services"):
        skew_combinations(("web",))
