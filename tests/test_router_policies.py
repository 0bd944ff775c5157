"""Pure unit tests of the router's policies, fault dice, config validation and stats (no sockets)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat.router import (
    FaultDice,
    RequestKey,
    RouterConfig,
    RouterConfigError,
    Stats,
    UnknownPin,
    Upstream,
    make_policy,
    stable_hash,
)
from compat.router.config import Fault
from compat.router.policy import Pinned, RoundRobin, Sticky, Weighted, Yoyo

REPO = Path(__file__).resolve().parent.parent

V1A = Upstream("orders-v1-0", "v1", "127.0.0.1:9001")
V1B = Upstream("orders-v1-1", "v1", "127.0.0.1:9002")
V2A = Upstream("orders-v2-0", "v2", "127.0.0.1:9003")
V3A = Upstream("orders-v3-0", "v3", "127.0.0.1:9004")
FLEET = (V1A, V1B, V2A)


def names(policy: object, keys: list[RequestKey]) -> list[str]:
    choose = policy.choose  # type: ignore[attr-defined]
    return [choose(k).name for k in keys]


def versions(policy: object, keys: list[RequestKey]) -> list[str]:
    choose = policy.choose  # type: ignore[attr-defined]
    return [choose(k).version for k in keys]


def anonymous(n: int) -> list[RequestKey]:
    return [RequestKey(None, "10.0.0.1", None)] * n


def session(key: str, n: int = 1) -> list[RequestKey]:
    return [RequestKey(key, "10.0.0.1", None)] * n


# --- round-robin ------------------------------------------------------------------------------------------


def test_round_robin_cycles_over_instances_in_config_order() -> None:
    policy = RoundRobin(FLEET, seed=1)
    assert names(policy, anonymous(7)) == [u.name for u in FLEET * 3][:7]


def test_round_robin_ignores_sessions() -> None:
    policy = RoundRobin(FLEET)
    assert names(policy, session("a") + session("a") + session("a")) == [u.name for u in FLEET]


# --- weighted ---------------------------------------------------------------------------------------------


def test_weighted_same_seed_same_sequence() -> None:
    weights = {"v1": 0.7, "v2": 0.3}
    first = names(Weighted(FLEET, seed=42, weights=weights), anonymous(500))
    second = names(Weighted(FLEET, seed=42, weights=weights), anonymous(500))
    assert first == second


def test_weighted_different_seeds_differ() -> None:
    weights = {"v1": 0.5, "v2": 0.5}
    first = versions(Weighted(FLEET, seed=1, weights=weights), anonymous(200))
    second = versions(Weighted(FLEET, seed=2, weights=weights), anonymous(200))
    assert first != second


def test_weighted_ten_percent_canary_over_10000_draws() -> None:
    policy = Weighted(FLEET, seed=7, weights={"v1": 0.9, "v2": 0.1})
    counts = collections.Counter(versions(policy, anonymous(10_000)))
    # binomial sd = sqrt(0.1 * 0.9 / 10000) = 0.003; allow 5 sd
    assert abs(counts["v2"] / 10_000 - 0.1) < 0.015, counts


def test_weighted_round_robin_within_a_version() -> None:
    policy = Weighted(FLEET, seed=3, weights={"v1": 1.0})
    assert names(policy, anonymous(4)) == ["orders-v1-0", "orders-v1-1", "orders-v1-0", "orders-v1-1"]


def test_weighted_without_weights_is_even_per_version() -> None:
    policy = Weighted(FLEET, seed=3)
    counts = collections.Counter(versions(policy, anonymous(4_000)))
    assert abs(counts["v1"] - counts["v2"]) < 300, counts


def test_weighted_version_without_weight_is_never_chosen() -> None:
    policy = Weighted((*FLEET, V3A), seed=3, weights={"v1": 1, "v3": 1})
    assert "v2" not in set(versions(policy, anonymous(500)))


# --- sticky -----------------------------------------------------------------------------------------------


def test_sticky_session_always_gets_the_same_version() -> None:
    policy = Sticky(FLEET, seed=5)
    for key in ("alice", "bob", "carol", "dave"):
        assert len(set(versions(policy, session(key, 30)))) == 1


def test_sticky_round_robins_within_its_version() -> None:
    policy = Sticky(FLEET, seed=5)
    key = next(k for k in (f"user-{i}" for i in range(100)) if policy.version_of(k) == "v1")
    assert names(policy, session(key, 4)) == ["orders-v1-0", "orders-v1-1", "orders-v1-0", "orders-v1-1"]


def test_sticky_spreads_sessions_over_versions_and_respects_weights() -> None:
    even = Sticky(FLEET, seed=5)
    assert {even.version_of(f"user-{i}") for i in range(50)} == {"v1", "v2"}
    canary = Sticky(FLEET, seed=5, weights={"v1": 0.9, "v2": 0.1})
    share = sum(canary.version_of(f"user-{i}") == "v2" for i in range(5_000)) / 5_000
    assert abs(share - 0.1) < 0.03


def test_sticky_falls_back_to_the_client_address() -> None:
    policy = Sticky(FLEET, seed=5)
    a = [RequestKey(None, "10.1.1.1", None)] * 20
    assert len(set(versions(policy, a))) == 1
    assert policy.choose(RequestKey(None, "10.1.1.1", None)).version == policy.version_of("10.1.1.1")


def test_sticky_mapping_is_the_same_in_a_fresh_process() -> None:
    """Python's ``hash()`` of a str differs per process; the sticky mapping must not."""
    here = [Sticky(FLEET, seed=11).version_of(f"user-{i}") for i in range(40)]
    code = (
        "from compat.router import Upstream; from compat.router.policy import Sticky\n"
        "f = (Upstream('orders-v1-0', 'v1', 'h:1'), Upstream('orders-v1-1', 'v1', 'h:2'),\n"
        "     Upstream('orders-v2-0', 'v2', 'h:3'))\n"
        "print(','.join(Sticky(f, seed=11).version_of(f'user-{i}') for i in range(40)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().split(",") == here


def test_stable_hash_is_a_fixed_function() -> None:
    assert stable_hash(0, "sticky", "alice") == stable_hash(0, "sticky", "alice")
    assert stable_hash(0, "sticky", "alice") != stable_hash(1, "sticky", "alice")
    assert 0 <= stable_hash("x") < 2**64


# --- yo-yo ------------------------------------------------------------------------------------------------


def test_yoyo_alternates_versions_within_a_session() -> None:
    policy = Yoyo(FLEET, seed=9)
    got = versions(policy, session("s1", 6))
    assert got in (["v1", "v2"] * 3, ["v2", "v1"] * 3)
    assert got[0] == policy.first_version("s1")


def test_yoyo_cycles_through_more_than_two_versions() -> None:
    policy = Yoyo((*FLEET, V3A), seed=9)
    got = versions(policy, session("s1", 6))
    assert sorted(got[:3]) == ["v1", "v2", "v3"]
    assert got[3:] == got[:3]


def test_yoyo_sessions_are_independent() -> None:
    alone_a = versions(Yoyo(FLEET, seed=9), session("a", 5))
    alone_b = versions(Yoyo(FLEET, seed=9), session("b", 5))
    policy = Yoyo(FLEET, seed=9)
    mixed = versions(policy, [RequestKey(k, "", None) for k in "abbabaabab"])
    got_a = [v for v, k in zip(mixed, "abbabaabab", strict=True) if k == "a"]
    got_b = [v for v, k in zip(mixed, "abbabaabab", strict=True) if k == "b"]
    assert got_a == alone_a
    assert got_b == alone_b


def test_yoyo_first_version_depends_on_seed_and_key() -> None:
    firsts = {Yoyo(FLEET, seed=s).first_version(f"user-{i}") for s in range(3) for i in range(20)}
    assert firsts == {"v1", "v2"}
    assert Yoyo(FLEET, seed=4).first_version("k") == Yoyo(FLEET, seed=4).first_version("k")


def test_yoyo_without_session_alternates_globally() -> None:
    got = versions(Yoyo(FLEET, seed=9), anonymous(4))
    assert got[0] != got[1]
    assert got[0::2] == [got[0]] * 2


def test_yoyo_round_robins_within_a_version() -> None:
    policy = Yoyo(FLEET, seed=9)
    got = [n for n in names(policy, session("s", 8)) if n.startswith("orders-v1")]
    assert got == ["orders-v1-0", "orders-v1-1"] * 2


# --- pinned -----------------------------------------------------------------------------------------------


def pin(value: str | None) -> RequestKey:
    return RequestKey(None, "10.0.0.1", value)


def test_pinned_by_version_round_robins_within_it() -> None:
    policy = Pinned(FLEET)
    assert names(policy, [pin("v1")] * 3) == ["orders-v1-0", "orders-v1-1", "orders-v1-0"]
    assert names(policy, [pin("v2")] * 2) == ["orders-v2-0", "orders-v2-0"]


def test_pinned_by_instance() -> None:
    policy = Pinned(FLEET)
    assert names(policy, [pin("orders-v1-1")] * 3) == ["orders-v1-1"] * 3


def test_pinned_unknown_pin_lists_what_is_known() -> None:
    with pytest.raises(UnknownPin) as info:
        Pinned(FLEET).choose(pin("v9"))
    assert info.value.pin == "v9"
    assert info.value.versions == ("v1", "v2")
    assert "orders-v2-0" in info.value.instances
    assert "'v9'" in str(info.value)
    assert "v1, v2" in str(info.value)


def test_pinned_without_pin_uses_the_fallback() -> None:
    assert names(Pinned(FLEET), [pin(None)] * 3) == [u.name for u in FLEET]
    yoyo = Pinned(FLEET, seed=9, fallback="yoyo")
    assert versions(yoyo, [RequestKey("s", "", None)] * 4) == versions(Yoyo(FLEET, seed=9), session("s", 4))
    assert names(Pinned(FLEET), [pin("  ")]) == ["orders-v1-0"]  # blank pin = no pin


def test_make_policy_builds_the_configured_policy() -> None:
    config = RouterConfig.from_dict(
        {"upstreams": [u.as_dict() for u in FLEET], "policy": "pinned", "fallback": "sticky", "seed": 3}
    )
    policy = make_policy(config)
    assert isinstance(policy, Pinned)
    assert isinstance(policy.fallback, Sticky)


# --- fault dice -------------------------------------------------------------------------------------------


def test_fault_dice_are_deterministic_per_seed_and_upstream() -> None:
    fault = Fault(error_rate=0.3, drop_rate=0.1)
    first = [FaultDice(4).roll(V1A, fault) for _ in range(1)]
    dice_a, dice_b = FaultDice(4), FaultDice(4)
    seq_a = [dice_a.roll(V1A, fault) for _ in range(300)]
    seq_b = [dice_b.roll(V1A, fault) for _ in range(300)]
    assert seq_a == seq_b
    assert seq_a[:1] == first
    other = FaultDice(5)
    assert [other.roll(V1A, fault) for _ in range(300)] != seq_a
    counts = collections.Counter(seq_a)
    assert 45 < counts["error"] < 135
    assert 10 < counts["drop"] < 60


def test_fault_dice_do_not_roll_for_delay_only_faults() -> None:
    dice = FaultDice(1)
    assert dice.roll(V1A, Fault(delay_ms=5)) is None
    assert dice.rngs == {}


# --- config validation ------------------------------------------------------------------------------------


def base(**extra: object) -> dict[str, object]:
    return {"upstreams": [u.as_dict() for u in FLEET], **extra}


def test_config_defaults_and_round_trip() -> None:
    config = RouterConfig.from_dict(base())
    assert config.policy == "round-robin"
    assert config.session_header == "X-Compat-Session"
    assert config.pin_header == "X-Compat-Pin"
    assert config.versions == ("v1", "v2")
    assert RouterConfig.from_dict(config.as_dict()) == config


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        (base(policy="weigthed"), "policy", "choose one of: pinned, round-robin, sticky, weighted, yoyo"),
        (base(fallback="pinned"), "fallback", "choose one of: round-robin, sticky, weighted, yoyo"),
        (base(weights={"v9": 1}), "weights.v9", "choose one of: v1, v2"),
        (base(weights={"v1": -1}), "weights.v1", "finite number >= 0"),
        (base(policy="weighted", weights={"v1": 0, "v2": 0}), "weights", "weight 0"),
        (base(seed="x"), "seed", "not an integer"),
        (base(faults={"nope": {"error_rate": 0.1}}), "faults.nope", "orders-v1-0"),
        (base(faults={"v1": {"error_rate": 1.5}}), "faults.v1.error_rate", "between 0 and 1"),
        (base(faults={"v1": {"error_status": 200}}), "faults.v1.error_status", "400..599"),
        (base(faults={"v1": {"error_rate": 0.6, "drop_rate": 0.6}}), "faults.v1", "> 1"),
        (base(faults={"v1": {"delay": 5}}), "faults.v1.delay", "delay_ms"),
        (base(surprise=1), "surprise", "choose one of:"),
        (base(session_header="bad header"), "session_header", "header"),
        ({"upstreams": []}, "upstreams", "non-empty"),
        ({}, "upstreams", "missing"),
        (
            {"upstreams": [{"name": "a", "version": "v1", "address": "nohost"}]},
            "upstreams[0].address",
            "host:port",
        ),
        ({"upstreams": [{"name": "a", "version": "v1"}]}, "upstreams[0].address", "missing"),
        (
            {"upstreams": [{"name": "a", "version": "v1", "address": "h:1"}] * 2},
            "upstreams[1].name",
            "duplicate",
        ),
    ],
)
def test_config_errors_name_the_key_the_value_and_the_choices(
    data: dict[str, object], key: str, fragment: str
) -> None:
    with pytest.raises(RouterConfigError) as info:
        RouterConfig.from_dict(data)
    assert info.value.key == key
    assert f"`{key}`" in str(info.value)
    assert fragment in str(info.value)


def test_config_update_merges_and_validates() -> None:
    config = RouterConfig.from_dict(base(service="orders"))
    changed = config.updated({"policy": "weighted", "weights": {"v2": 0.1, "v1": 0.9}, "seed": 3})
    assert (changed.policy, changed.seed, dict(changed.weights)) == ("weighted", 3, {"v2": 0.1, "v1": 0.9})
    assert changed.upstreams == config.upstreams
    assert config.updated(config.as_dict()) == config  # a whole GET config can be PUT back
    with pytest.raises(RouterConfigError, match="`service`"):
        config.updated({"service": "web"})
    with pytest.raises(RouterConfigError, match="`policy`"):
        config.updated({"policy": 3})


def test_fault_for_prefers_the_instance_over_its_version() -> None:
    config = RouterConfig.from_dict(
        base(faults={"v1": {"error_rate": 0.5}, "orders-v1-1": {"delay_ms": 10}, "v2": {"delay_ms": 0}})
    )
    assert config.fault_for(V1A) == Fault(error_rate=0.5)
    assert config.fault_for(V1B) == Fault(delay_ms=10)
    assert config.fault_for(V2A) is None  # an inactive fault is no fault


# --- stats ------------------------------------------------------------------------------------------------


def test_stats_count_per_version_and_instance() -> None:
    stats = Stats(sample_size=100)
    for i in range(10):
        stats.record("orders-v1-0", "v1", 200, float(i + 1))
    stats.record("orders-v1-1", "v1", 503, 1.0, faults=("error",))
    stats.record("orders-v2-0", "v2", 502, 2.0, upstream_error=True)
    stats.record("orders-v2-0", "v2", None, None, faults=("delay", "drop"))
    stats.reject("unknown_pin")
    snap = stats.snapshot()
    v1, v2 = snap["versions"]["v1"], snap["versions"]["v2"]
    assert v1["requests"] == 11
    assert v1["status"] == {"1xx": 0, "2xx": 10, "3xx": 0, "4xx": 0, "5xx": 1}
    assert v1["faults"] == {"delay": 0, "error": 1, "drop": 0}
    assert v2["upstream_errors"] == 1
    assert v2["faults"] == {"delay": 1, "error": 0, "drop": 1}
    assert v2["latency_ms"]["count"] == 1
    assert snap["instances"]["orders-v1-0"]["version"] == "v1"
    assert snap["instances"]["orders-v1-0"]["latency_ms"] == {
        "count": 10,
        "mean": 5.5,
        "p50": 5.0,
        "p90": 9.0,
        "p99": 10.0,
        "max": 10.0,
        "sample": 10,
    }
    assert snap["total"]["requests"] == 13
    assert snap["rejected"] == {"unknown_pin": 1}
    stats.reset()
    assert stats.snapshot()["versions"] == {}


def test_stats_latency_sample_is_bounded_but_counts_are_not() -> None:
    stats = Stats(sample_size=50)
    for i in range(200):
        stats.record("a", "v1", 200, float(i))
    latency = stats.snapshot()["versions"]["v1"]["latency_ms"]
    assert latency["count"] == 200
    assert latency["sample"] == 50
    assert latency["max"] == 199.0
    assert latency["p50"] >= 150  # percentiles describe the most recent sample
