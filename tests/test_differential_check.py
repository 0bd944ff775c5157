"""The differential check: calibration and judging on fake answers, traffic files, and real boxes.

Unit tests build :class:`Observation` objects from hand-made snapshots (no server). Integration tests run
the ``onebox`` stage of the bundled example (baseline orders v1 x2 + one candidate box): under the process
runtime (fast) and under Docker (module-scoped topologies, marker ``docker``).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from compat.checks._noise import NoiseRules, Snapshot
from compat.checks._traffic import load_file, load_traffic
from compat.checks.context import StageContext
from compat.checks.differential import (
    Observation,
    Operations,
    Request,
    contract_requests,
    generated_requests,
    judge,
    run_differential,
    suspicious,
)
from compat.errors import ConfigError
from compat.session import CompatSession, Options, resolve_config
from tests.conftest import REPO, managed_resources

TRAFFIC = REPO / "tests" / "data" / "traffic"
JSON = {"Content-Type": "application/json"}


def snap(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Snapshot:
    return Snapshot(status, headers if headers is not None else JSON, body)


def obs(
    op: str, a: Any, b: Any, c: Any, *, status: tuple[int, int, int] = (200, 200, 200), **resent: Any
) -> Observation:
    method, _, path = op.partition(" ")
    request = Request(method, path, operation=op, source="traffic", origin="test")
    return Observation(
        request,
        snap(a, status[0]),
        snap(c, status[2]),
        None if b is None else snap(b, status[1]),
        **{k: snap(v) for k, v in resent.items()},
    )


def order(id: str = "1", created: str = "t1", **extra: Any) -> dict[str, Any]:
    return {"id": id, "item": "tea", "quantity": 1, "created_at": created, **extra}


# -- calibration and judging -------------------------------------------------------------------------------


def test_ids_and_timestamps_that_differ_between_the_baseline_boxes_are_noise() -> None:
    seen = [obs("POST /orders", order("a", "t1"), order("b", "t2"), order("c", "t3"))]
    judged = judge(seen, NoiseRules())
    assert judged.divergences == {}
    assert judged.noise_of("POST /orders") == ["$.created_at", "$.id"]
    # without calibration the same answers are two findings: calibration earns its keep
    blind = judge(seen, NoiseRules(), calibrate=False)
    assert sorted(p for _, p in blind.divergences) == ["$.created_at", "$.id"]


def test_a_value_that_differs_only_in_the_candidate_is_a_finding() -> None:
    seen = [obs("GET /orders/{id}", order(), order(), order(quantity=2))]
    judged = judge(seen, NoiseRules())
    assert list(judged.divergences) == [("GET /orders/{id}", "$.quantity")]
    div = judged.divergences[("GET /orders/{id}", "$.quantity")]
    assert (div.kind, div.baseline_a, div.baseline_b, div.candidate) == ("changed", 1, 1, 2)


def test_a_difference_where_the_candidate_agrees_with_one_baseline_box_is_no_finding() -> None:
    seen = [obs("GET /x", {"v": 1}, {"v": 2}, {"v": 2})]
    assert judge(seen, NoiseRules(), calibrate=False).divergences == {}


def test_noise_is_learned_across_all_requests_of_an_operation() -> None:
    seen = [
        obs("GET /orders", {"n": 1, "took": 3}, {"n": 1, "took": 3}, {"n": 1, "took": 9}),  # A == B here
        obs("GET /orders", {"n": 1, "took": 4}, {"n": 1, "took": 5}, {"n": 1, "took": 6}),  # ... not here
    ]
    judged = judge(seen, NoiseRules())
    assert judged.divergences == {}
    assert judged.noise_of("GET /orders") == ["$.took"]


def test_noise_learned_on_one_operation_applies_to_a_thinly_sampled_other_and_is_noted() -> None:
    seen = [
        obs("POST /orders", {"at": "1"}, {"at": "2"}, {"at": "3"}),
        obs("PATCH /orders/{id}", {"at": "5"}, {"at": "5"}, {"at": "6"}),
    ]
    judged = judge(seen, NoiseRules())
    assert judged.divergences == {}
    assert judged.borrowed == {("PATCH /orders/{id}", "$.at"): {"POST /orders"}}


def test_a_well_sampled_operation_keeps_a_path_that_is_noise_elsewhere() -> None:
    # the writes' timestamps differ per box (noise there); the reads agree on A and B every time, so a
    # candidate that formats the same timestamp differently changed something
    seen = [obs("POST /orders", {"at": f"{n}a"}, {"at": f"{n}b"}, {"at": f"{n}c"}) for n in range(3)]
    seen += [
        obs(
            "GET /orders/{id}",
            {"at": "2026-11-26T10:00:00.123Z"},
            {"at": "2026-11-26T10:00:00.123Z"},
            {"at": "2026-11-26T10:00:00Z"},
        )
        for _ in range(3)
    ]
    judged = judge(seen, NoiseRules())
    assert [op for op, _ in judged.divergences] == ["GET /orders/{id}"]
    assert judged.borrowed == {}


def test_additive_members_are_compatible_and_listed_once() -> None:
    seen = [obs("GET /orders/{id}", order(), order(), order(note=None)) for _ in range(3)]
    judged = judge(seen, NoiseRules(), calibrate=False)
    assert judged.divergences == {}
    assert judged.additions == {("GET /orders/{id}", "$.note"): 3}


def test_a_removed_member_is_a_finding_and_its_replacement_is_an_addition() -> None:
    renamed = {k if k != "item" else "product": v for k, v in order().items()}
    judged = judge([obs("GET /orders/{id}", order(), order(), renamed)], NoiseRules())
    (div,) = judged.divergences.values()
    assert (div.pattern, div.kind, div.baseline_a, div.candidate) == ("$.item", "missing", "tea", None)
    assert list(judged.additions) == [("GET /orders/{id}", "$.product")]


def test_declared_ignore_and_unordered_rules_apply_without_calibration() -> None:
    rules = NoiseRules(ignore=("$..created_at",), unordered=("$.tags",))
    seen = [
        obs(
            "GET /orders/{id}",
            {**order(created="t1"), "tags": ["a", "b"]},
            {**order(created="t2"), "tags": ["a", "b"]},
            {**order(created="t3"), "tags": ["b", "a"]},
        )
    ]
    assert judge(seen, rules, calibrate=False).divergences == {}
    assert judge(seen, NoiseRules(), calibrate=False).divergences  # the same answers, undeclared


def test_one_finding_per_operation_and_pattern_with_the_count_and_first_example() -> None:
    seen = [
        obs(
            "GET /orders",
            {"items": [{"q": 1}, {"q": 2}]},
            {"items": [{"q": 1}, {"q": 2}]},
            {"items": [{"q": "1"}, {"q": "2"}]},
        ),
        obs("GET /orders", {"items": [{"q": 3}]}, {"items": [{"q": 3}]}, {"items": [{"q": "3"}]}),
    ]
    judged = judge(seen, NoiseRules())
    assert list(judged.divergences) == [("GET /orders", "$.items[*].q")]
    div = judged.divergences[("GET /orders", "$.items[*].q")]
    assert (div.count, div.kind, div.path, div.first) == (2, "type", "$.items[0].q", seen[0])


def test_a_changed_status_is_one_finding_not_one_per_body_member() -> None:
    seen = [obs("GET /orders/{id}", order(), order(), {"error": "gone"}, status=(200, 200, 404))]
    judged = judge(seen, NoiseRules())
    (div,) = judged.divergences.values()
    assert (div.pattern, div.baseline_a, div.candidate) == ("status", 200, 404)


def test_a_value_that_moves_on_the_baseline_when_resent_is_noise() -> None:
    seen = [obs("GET /stats", {"hits": 1}, {"hits": 1}, {"hits": 2}, a2={"hits": 3}, c2={"hits": 4})]
    assert suspicious(seen[0], NoiseRules())
    judged = judge(seen, NoiseRules())
    assert judged.divergences == {}
    assert judged.noise_of("GET /stats") == ["$.hits"]


def test_a_candidate_difference_gone_on_resend_is_not_confirmed() -> None:
    seen = [obs("GET /x", {"v": 1}, {"v": 1}, {"v": 2}, a2={"v": 1}, c2={"v": 1})]
    judged = judge(seen, NoiseRules())
    assert judged.divergences == {}
    assert judged.unconfirmed == {("GET /x", "$.v"): 1}


def test_a_confirmed_difference_is_a_finding() -> None:
    seen = [obs("GET /x", {"v": 1}, {"v": 1}, {"v": 2}, a2={"v": 1}, c2={"v": 2})]
    assert list(judge(seen, NoiseRules()).divergences) == [("GET /x", "$.v")]


def test_only_additions_are_not_worth_a_resend() -> None:
    assert not suspicious(obs("GET /x", {"v": 1}, {"v": 1}, {"v": 1, "w": 2}), NoiseRules())


def test_with_one_baseline_box_the_declared_rules_are_all_there_is() -> None:
    seen = [obs("POST /orders", order("a", "t1"), None, order("c", "t3"))]
    assert sorted(p for _, p in judge(seen, NoiseRules()).divergences) == ["$.created_at", "$.id"]
    assert judge(seen, NoiseRules(ignore=("$.id", "$.created_at"))).divergences == {}


def test_a_changed_content_type_is_a_header_finding() -> None:
    seen = [obs("GET /x", {"v": 1}, {"v": 1}, {"v": 1})]
    seen[0].c = Snapshot(200, {"Content-Type": "text/plain"}, {"v": 1})
    (div,) = judge(seen, NoiseRules()).divergences.values()
    assert (div.pattern, div.baseline_a, div.candidate) == (
        "header:content-type",
        "application/json",
        "text/plain",
    )


# -- requests --------------------------------------------------------------------------------------------


def test_requests_are_named_by_the_spec_operation() -> None:
    spec = {
        "paths": {"/orders": {"get": {}, "post": {}}, "/orders/{id}": {"get": {}}, "/orders/new": {"get": {}}}
    }
    ops = Operations(spec)
    assert ops.label("get", "/orders/6d1b8a2e") == "GET /orders/{id}"
    assert ops.label("GET", "/orders/new") == "GET /orders/new"  # a literal path beats a template
    assert ops.label("HEAD", "/orders") == "HEAD /orders"
    assert (
        Operations(None).label("GET", "/a/42/b/6d1b8a2e-4f3c-4b5a-9c7d-0e1f2a3b4c5d") == "GET /a/{id}/b/{id}"
    )


def test_provider_state_generators_fill_the_request() -> None:
    request = Request(
        "GET",
        "/orders?limit=5&cursor=example",
        {"X-Token": "old"},
        generators={
            "query": {"cursor": {"type": "ProviderState", "expression": "${next_cursor}"}},
            "header": {"x-token": {"type": "ProviderState", "expression": "t-${token}"}},
        },
    )
    filled = request.with_values({"next_cursor": "abc=", "token": 7})
    assert filled.target == "/orders?limit=5&cursor=abc%3D"
    assert filled.headers == {"X-Token": "t-7"}
    assert request.with_values({}) is request


def test_contract_requests_carry_their_provider_states_and_generators() -> None:
    found = contract_requests([REPO / "contracts" / "web-orders.pact.json"], "orders")
    assert [r.source for r in found] == ["contracts"] * 6
    by_origin = {r.origin.split(": ", 1)[1]: r for r in found}
    one = by_origin["a request for one order"]
    assert one.states[0].name == "an order exists"
    assert one.states[0].params["item"] == "tea"
    assert one.target == "/orders/6d1b8a2e-4f3c-4b5a-9c7d-0e1f2a3b4c5d"
    assert one.safe
    assert (
        "query"
        in by_origin["a request for the next page of orders, with the cursor of the previous page"].generators
    )
    create = by_origin["a request to create an order"]
    assert (create.method, create.safe, create.states, json.loads(create.body or "")) == (
        "POST",
        False,
        (),
        {"item": "coffee", "quantity": 1},
    )
    assert contract_requests([REPO / "contracts" / "web-orders.pact.json"], "web") == []


def test_generated_requests_are_positive_deterministic_and_skip_the_health_path() -> None:
    spec = REPO / "fixtures" / "orders" / "openapi" / "v1.yaml"
    first = generated_requests(spec, 3, seed=11, skip_paths={"/health"})
    again = generated_requests(spec, 3, seed=11, skip_paths={"/health"})
    assert [(r.method, r.target, r.body) for r in first] == [(r.method, r.target, r.body) for r in again]
    assert {r.operation for r in first} == {
        "GET /orders",
        "POST /orders",
        "GET /orders/{id}",
        "PATCH /orders/{id}",
    }
    assert all(r.source == "properties" for r in first)
    for r in first:
        if r.operation == "POST /orders":
            body = json.loads(r.body or "")
            assert isinstance(body["item"], str)
            assert 1 <= body["quantity"] <= 1000
            assert r.headers["Content-Type"] == "application/json"
    assert generated_requests(spec, 0, seed=11) == []


# -- recorded traffic ----------------------------------------------------------------------------------------


def test_jsonl_traffic() -> None:
    found = load_file(TRAFFIC / "orders.jsonl")
    assert [(r.method, r.target, r.origin) for r in found] == [
        ("GET", "/orders?limit=3", "orders.jsonl:1"),
        ("GET", "/orders/00000000-0000-4000-8000-000000000001", "orders.jsonl:2"),
        ("POST", "/orders", "orders.jsonl:4"),  # the blank line 3 is skipped
        ("GET", "/health", "orders.jsonl:5"),
    ]
    assert found[0].headers == {"Accept": "application/json"}  # Host describes the recorded connection
    assert json.loads(found[2].body or "") == {"item": "recorded tea", "quantity": 3}
    assert found[2].headers["Content-Type"] == "application/json"


def test_har_traffic_keeps_only_path_and_query() -> None:
    found = load_file(TRAFFIC / "orders.har")
    assert [(r.method, r.target) for r in found] == [("GET", "/orders?limit=2"), ("POST", "/orders")]
    assert found[0].headers == {"accept": "application/json"}  # no pseudo-headers, no accept-encoding
    assert found[1].headers == {"accept": "application/json", "Content-Type": "application/json"}
    assert found[1].body == '{"item":"har tea","quantity":2}'
    assert found[1].origin == "orders.har: log.entries[1]"
    assert len(load_traffic([TRAFFIC / "orders.jsonl", TRAFFIC / "orders.har"])) == 6


def test_traffic_format_is_sniffed_when_the_name_does_not_say(tmp_path: Path) -> None:
    har = tmp_path / "capture.json"
    har.write_text((TRAFFIC / "orders.har").read_text())
    lines = tmp_path / "capture.log"
    lines.write_text('{"method": "GET", "path": "/a"}\n{"method": "GET", "path": "/b"}\n')
    assert [r.target for r in load_file(har)] == ["/orders?limit=2", "/orders"]
    assert [r.target for r in load_file(lines)] == ["/a", "/b"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"method": "GET", "path": "/a"}\n{"method": "GET", "path": \n', r"line 2: not JSON"),
        ('["GET", "/a"]\n', r"line 1: must be a JSON object"),
        ('{"path": "/a"}\n', r"line 1: method must be an HTTP method"),
        ('{"method": "GET", "path": "orders"}\n', r"line 1: path: must be a path such as /orders\?limit=5"),
        ('{"method": "GET", "path": "/a", "headers": ["Accept"]}\n', r"line 1: headers must be an object"),
        (
            '{"method": "GET", "path": "/a", "verb": "x"}\n',
            r"line 1: unknown member\(s\) 'verb'.*method, path",
        ),
    ],
)
def test_bad_jsonl_names_file_line_and_what_is_valid(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as caught:
        load_file(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"log": {}}, r"log.entries: must be a list"),
        ({"log": {"entries": [{"response": {}}]}}, r"log.entries\[0\].request: must be an object"),
        (
            {"log": {"entries": [{"request": {"method": "GET", "url": "orders"}}]}},
            r"\.url: must be an absolute",
        ),
        (
            {
                "log": {
                    "entries": [{"request": {"method": "GET", "url": "http://h/", "headers": [{"name": 1}]}}]
                }
            },
            r"log.entries\[0\].request.headers\[0\]: must be an object with string name and value",
        ),
    ],
)
def test_bad_har_names_file_entry_and_what_is_valid(tmp_path: Path, doc: Any, match: str) -> None:
    path = tmp_path / "bad.har"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=match) as caught:
        load_file(path)
    assert str(path) in str(caught.value)
    assert "log" in str(caught.value)


def test_a_har_that_is_not_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.har"
    path.write_text('{\n  "log": {\n    "entries": [,]\n  }\n}\n')
    with pytest.raises(ConfigError, match=r"bad.har: line 3: not JSON"):
        load_file(path)


def test_a_missing_traffic_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the traffic file"):
        load_file(tmp_path / "nope.jsonl")


# -- real boxes ---------------------------------------------------------------------------------------------


def with_options(ctx: StageContext, **options: Any) -> StageContext:
    """The same running stage, with other [checks.differential] options."""
    config = ctx.config
    check = config.checks.get("differential")
    settings = {
        **config.checks.settings,
        "differential": dataclasses.replace(check, options={**check.options, **options}),
    }
    return dataclasses.replace(
        ctx, config=dataclasses.replace(config, checks=dataclasses.replace(config.checks, settings=settings))
    )


def onebox(candidate: str, runtime: str) -> tuple[CompatSession, StageContext]:
    opts = Options(
        config=REPO / "compat.toml",
        candidates={"orders": candidate},
        runtime=runtime,
        stages=("onebox",),
        checks=("differential",),  # no background traffic: these tests reset the shared data
    )
    session = CompatSession(resolve_config(REPO, opts), opts, echo=lambda s: None)
    try:
        run = next(r for r in session.runs() if r.id == "onebox")
        return session, session.stage_context(run)
    except BaseException:
        session.close()
        raise


def test_process_runtime_compatible_candidate(tmp_path: Path) -> None:
    session, ctx = onebox("v2", "process")
    try:
        plain = run_differential(
            with_options(ctx, reset_state=""), "orders"
        )  # no reset: writes listed, not sent
        replayed = run_differential(
            with_options(
                ctx, reset_state="no orders exist", traffic=(TRAFFIC / "orders.jsonl", TRAFFIC / "orders.har")
            ),
            "orders",
        )
    finally:
        session.close()
    assert plain.findings == []
    assert plain.inconclusive is None
    assert any(
        n.startswith("skipped 12 state-changing requests (no reset): PATCH /orders/{id} x5, POST /orders x7")
        for n in plain.notes
    ), plain.notes
    assert "set [checks.differential] reset_state" in " ".join(plain.notes)
    assert plain.metrics["sent_by_source"] == {"contracts": 4, "traffic": 0, "properties": 10}
    assert "candidate adds $.note to GET /orders/{id} (compatible; 1 request)" in plain.notes

    assert replayed.findings == [], [f.render() for f in replayed.findings]
    assert replayed.metrics["skipped"] == 0
    assert replayed.metrics["sent_by_source"] == {"contracts": 6, "traffic": 5, "properties": 20}
    assert any("excluded 1 request(s) to the health path /health" in n for n in replayed.notes)
    assert replayed.metrics["noise"]["POST /orders"] == ["$.created_at", "$.id"]


# -- Docker --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_stages(docker_client: Any) -> Iterator[dict[str, StageContext]]:
    """onebox of the compatible candidate and of the renamed field, each started once for the module."""
    before = managed_resources(docker_client)
    sessions: list[CompatSession] = []
    contexts: dict[str, StageContext] = {}
    try:
        for candidate in ("v2", "v2-rename-field"):
            session, ctx = onebox(candidate, "docker")
            sessions.append(session)
            contexts[candidate] = with_options(ctx, reset_state="no orders exist")
        yield contexts
    finally:
        for session in sessions:
            session.close()
    after = managed_resources(docker_client)
    ours = {k: sorted(set(after[k]) - set(before[k])) for k in after}
    mine = [s.context.run_id for s in sessions]
    leaked = {k: [n for n in v if any(run in n for run in mine)] for k, v in ours.items()}
    assert not any(leaked.values()), f"differential tests leaked Docker resources: {leaked}"


def boxes(ctx: StageContext) -> dict[str, list[str]]:
    return {v: [i.name for i in found] for v, found in ctx.by_version("orders").items()}


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_docker_compatible_candidate_has_no_finding(docker_stages: dict[str, StageContext]) -> None:
    ctx = docker_stages["v2"]
    result = run_differential(ctx, "orders")
    assert [len(v) for v in boxes(ctx).values()] == [2, 1]
    assert result.findings == [], [f.render() for f in result.findings]
    assert result.metrics["sent"] == 26
    assert result.metrics["skipped"] == 0
    assert result.metrics["noise"]["POST /orders"] == ["$.created_at", "$.id"]
    assert any(n.startswith("noise learned from the baseline boxes") for n in result.notes)


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_docker_without_calibration_the_written_ids_and_timestamps_are_flagged(
    docker_stages: dict[str, StageContext],
) -> None:
    result = run_differential(with_options(docker_stages["v2"], calibrate=False), "orders")
    flagged = sorted((f.operation, f.details["location"]) for f in result.findings)
    assert flagged == [("POST /orders", "$.created_at"), ("POST /orders", "$.id")]
    assert any("calibration off" in n for n in result.notes)


@pytest.mark.docker
@pytest.mark.usefixtures("no_leaks")
def test_docker_a_renamed_field_is_caught(docker_stages: dict[str, StageContext]) -> None:
    ctx = docker_stages["v2-rename-field"]
    result = run_differential(ctx, "orders")
    found = {(f.operation, f.details["location"]): f for f in result.findings}
    assert set(found) == {
        ("GET /orders", "$.items[*].item"),
        ("GET /orders/{id}", "$.item"),
        ("POST /orders", "$.item"),
    }
    finding = found[("GET /orders/{id}", "$.item")]
    candidate = ctx.by_version("orders")["v2-rename-field"][0]
    assert finding.rule == "response-member-removed"
    assert finding.level == "ERR"
    assert finding.check == "differential"
    assert finding.stage == "onebox"
    assert finding.versions == {"orders": "v1 -> v2-rename-field"}
    assert (finding.expected, finding.actual) == ('"tea"', "(absent)")
    assert finding.details["source"] == "contracts"
    assert finding.details["baseline_a"] == finding.details["baseline_b"] == "tea"
    assert finding.details["answered_by"]["candidate"] == f"{candidate.name} (v2-rename-field)"
    assert candidate.name in finding.message
    assert "differs from both baseline boxes" in finding.message
    assert finding.request is not None
    assert finding.request["url"].startswith(candidate.url)
    assert "candidate adds $.product to GET /orders/{id} (compatible; 1 request)" in result.notes
    # the curl line of the write reproduces it against the candidate box
    created = found[("POST /orders", "$.item")]
    assert created.curl is not None
    argv = shlex.split(created.curl)
    assert argv[-1] == candidate.url + "/orders"
    assert "--data-raw" in argv
    body = argv[argv.index("--data-raw") + 1]
    answer = requests.post(argv[-1], data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 201
    assert "product" in answer.json()
    assert "item" not in answer.json()
