"""Each stage kind's plan: which instances, which routers, how dependants are wired.

Plans are pure data; the only runtime call a plan makes is ``reserve()`` (addresses), so these tests use a
reserve-only runtime. Starting plans for real is covered by the Docker/process integration tests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from compat.config import apply_overrides, load_config
from compat.config.model import Config
from compat.errors import ConfigError
from compat.runtime.base import Instance, InstanceSpec, RunContext, Runtime
from compat.topology.builder import ROUTER_CONFIG_ENV, PlanBuilder, StageRun, fleet_change, stage_runs
from compat.topology.model import Plan

SCRATCH = Path(__file__).parent / "data" / "scratch" / "compat.toml"


class ReserveOnly(Runtime):
    """Addresses like the docker runtime's (name:port); starts nothing."""

    name = "docker"

    def reserve(self, specs: Sequence[InstanceSpec]) -> dict[str, str]:
        return {s.name: f"{s.name}:{s.port}" for s in specs}

    def start(self, specs: Sequence[InstanceSpec]) -> list[Instance]:
        raise AssertionError("plans must not start anything")

    def stop(self, instances: Sequence[Instance]) -> None:
        raise AssertionError("plans must not stop anything")

    def logs(self, instance: Instance, tail: int = 50) -> list[str]:
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def config() -> Config:
    return load_config(SCRATCH, environ={})


def plan_of(config: Config, run_id: str, stages: Sequence[str] = ()) -> Plan:
    runs = {r.id: r for r in stage_runs(config, stages)}
    assert run_id in runs, f"{run_id} not in {list(runs)}"
    return PlanBuilder(config, ReserveOnly(RunContext.new("t"))).plan(runs[run_id])


def fleet(plan: Plan, service: str) -> list[str]:
    return sorted(s.version for s in plan.specs if s.service == service and s.role != "router")


def router_upstreams(plan: Plan, service: str) -> list[str]:
    spec = plan.spec(f"{service}-router")
    return [u["name"] for u in json.loads(spec.env[ROUTER_CONFIG_ENV])["upstreams"]]


def test_default_stages_follow_the_config(config: Config) -> None:
    ids = [r.id for r in stage_runs(config)]
    assert ids[:3] == ["onebox", "zeta", "reverse-zeta"]
    assert [i for i in ids if i.startswith("rollback")] == [
        "rollback:0-before",
        "rollback:1-mixed",
        "rollback:2-after-upgrade",
        "rollback:3-after-rollback",
    ]


def test_onebox_puts_one_candidate_among_baselines_behind_a_router(config: Config) -> None:
    plan = plan_of(config, "onebox")
    assert fleet(plan, "store") == ["v1", "v1", "v2"]
    assert plan.entry["store"] == "store-router"
    assert sorted(router_upstreams(plan, "store")) == ["store-v1-0", "store-v1-1", "store-v2-0"]
    # dependants call the router, so the whole chain sees the mixed fleet
    api = [s for s in plan.specs if s.service == "api"]
    assert all(s.env["BACKEND_URL"] == "http://store-router:8080" for s in api)


def test_onebox_router_policy_and_weights_come_from_the_stage(tmp_path: Path) -> None:
    text = SCRATCH.read_text().replace('context = "."', f'context = "{SCRATCH.parent}"')
    text += '\n[stages.canary]\nkind = "onebox"\nservices = ["store"]\n'
    text += 'policy = "weighted"\nweight = 0.1\nseed = 5\n'
    (tmp_path / "compat.toml").write_text(text)
    cfg = load_config(tmp_path / "compat.toml", environ={})
    plan = plan_of(cfg, "canary")
    router = json.loads(plan.spec("store-router").env[ROUTER_CONFIG_ENV])
    assert router["policy"] == "weighted"
    assert router["seed"] == 5
    assert router["weights"] == {"v2": 0.1, "v1": pytest.approx(0.9)}


def test_zeta_runs_the_candidate_consumer_against_production(config: Config) -> None:
    plan = plan_of(config, "zeta")
    assert fleet(plan, "api") == ["v2"]
    assert fleet(plan, "store") == ["v1"]
    assert plan.spec("api-v2-0").env["BACKEND_URL"] == "http://store-v1-0:8080"
    assert not [s for s in plan.specs if s.role == "router"]


def test_reverse_zeta_runs_production_consumers_against_the_candidate(config: Config) -> None:
    plan = plan_of(config, "reverse-zeta")
    assert fleet(plan, "store") == ["v2"]
    assert fleet(plan, "api") == ["v1"]
    assert plan.spec("api-v1-0").env["BACKEND_URL"] == "http://store-v2-0:8080"


def test_rollback_steps_change_the_fleet_and_keep_the_router(config: Config) -> None:
    runs = [r for r in stage_runs(config, ["rollback"])]
    builder = PlanBuilder(config, ReserveOnly(RunContext.new("t")))
    plans = [builder.plan(r) for r in runs]
    assert [fleet(p, "store") for p in plans] == [
        ["v1", "v1", "v1"],
        ["v1", "v1", "v2"],
        ["v2", "v2", "v2"],
        ["v1", "v1", "v1"],
    ]
    assert router_upstreams(plans[1], "store") == ["store-v2-0", "store-v1-1", "store-v1-2"]
    stop, start = fleet_change(plans[0], plans[1])
    assert stop == ["store-v1-0"]
    assert [s.name for s in start] == ["store-v2-0"]
    stop, start = fleet_change(plans[2], plans[3])
    assert sorted(stop) == ["store-v2-0", "store-v2-1", "store-v2-2"]
    assert all(s.role != "router" for s in start), "the router is re-pointed, never restarted"


def test_rollback_steps_replay_from_the_seed(config: Config) -> None:
    from compat.topology.stages import rollback_steps

    seeded = [r.step for r in stage_runs(apply_overrides(config, seed=42), ["rollback"])]
    again = [r.step for r in stage_runs(apply_overrides(config, seed=42), ["rollback"])]
    assert seeded == again == rollback_steps(3, "v1", "v2", seed=42)
    assert seeded != [r.step for r in stage_runs(config, ["rollback"])]


def test_skew_runs_every_combination_of_the_chain(config: Config) -> None:
    runs = stage_runs(config, ["skew"])
    assert [r.id for r in runs] == [
        "skew:api=old,store=old",
        "skew:api=old,store=new",
        "skew:api=new,store=old",
        "skew:api=new,store=new",
    ]
    plan = plan_of(config, "skew:api=new,store=old", ["skew"])
    assert plan.spec("api-v2-0").env["BACKEND_URL"] == "http://store-v1-0:8080"


def test_unknown_stage_names_the_choices(config: Config) -> None:
    with pytest.raises(ConfigError, match=r"--compat-stage: no such stage \(got 'gamma'\); choose one of"):
        stage_runs(config, ["gamma"])


def test_stage_runs_are_in_a_stable_order(config: Config) -> None:
    runs = stage_runs(config)
    assert [r.order for r in runs] == list(range(len(runs)))
    keys = [r.topology_key for r in runs]
    for key in set(keys):  # runs sharing a topology are consecutive
        idx = [i for i, k in enumerate(keys) if k == key]
        assert idx == list(range(idx[0], idx[-1] + 1))


def test_stage_run_is_hashable_for_pytest_ids(config: Config) -> None:
    run = stage_runs(config)[0]
    assert isinstance(run, StageRun)
    assert run.id == "onebox"
