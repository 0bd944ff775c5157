"""The stages on the bundled example, on a real Docker engine: compatible candidates pass every stage;
each breaking version fails the stage that is meant to catch it, and the failure names the stage, the
versions that answered, and the request. `compat up --stage onebox` answers with the expected versions
and `compat down` leaves nothing behind."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests

from tests.conftest import managed_resources, run_compat

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leaks")]


compat = run_compat


def failed_ids(output: str) -> set[str]:
    return set(re.findall(r"^FAILED \S+::(\S+)", output, flags=re.MULTILINE))


def test_compatible_candidates_pass_every_stage(docker_client: Any) -> None:
    result = compat(
        "run",
        "--runtime",
        "docker",
        "--stage",
        "onebox",
        "--stage",
        "zeta",
        "--stage",
        "reverse-zeta",
        "--stage",
        "rollback",
        "--stage",
        "skew",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"\b(\d+) passed\b", result.stdout)
    # the rollback plan is printed before it runs, with the seed that replays it
    assert "rollback plan for orders (seed 0; replay with --compat-seed 0)" in result.stdout + result.stderr


def test_cursor_format_fails_only_in_a_mixed_session(docker_client: Any) -> None:
    result = compat(
        "run",
        "--runtime",
        "docker",
        "--candidate",
        "orders=v2-cursor-format",
        "--stage",
        "onebox",
        "--stage",
        "reverse-zeta",
    )
    assert result.returncode == 1, result.stdout[-3000:]
    # a one-client session paging through the yo-yo router, the contract's next-page interaction (its
    # cursor comes from one version, the request goes to the other), the yoyo check's walks of both
    # paginated lists (web's pages come from orders), and differential (the cursor itself changed);
    # nothing in reverse-zeta, where only the candidate answers
    failed = failed_ids(result.stdout)
    assert {
        "test_one_client_session_pages_through_all_orders[onebox]",
        "onebox-contracts-orders",
        "onebox-yoyo-orders",
        "onebox-yoyo-web",
    } <= failed, failed
    assert not any("reverse-zeta" in f for f in failed), failed
    # the report says which versions answered the session's requests
    assert re.search(r"orders-v1-\d \(v1\)", result.stdout)
    assert "orders-v2-cursor-format-0" in result.stdout
    # the yoyo finding names the failing page and who answered it, and that the sticky control passed
    assert re.search(r"page 2 \(cursor from v1\) answered 400 by orders-v2-cursor-format-0", result.stdout)
    assert "the same flow passes under sticky" in result.stdout


def test_storage_format_fails_at_the_rollback_step(docker_client: Any) -> None:
    result = compat(
        "run", "--runtime", "docker", "--candidate", "orders=v2-storage-format", "--stage", "rollback"
    )
    assert result.returncode == 1, result.stdout[-3000:]
    failed = failed_ids(result.stdout)
    assert "test_what_was_written_earlier_still_reads[rollback:3-after-rollback]" in failed
    assert "rollback:3-after-rollback-data-orders" in failed
    assert not any("0-before" in f or "2-after-upgrade" in f for f in failed), failed
    # the data check names the writer (and the step it wrote in) and the reader that cannot read it
    assert re.search(
        r"written by orders@v2-storage-format \(orders-v2-storage-format-0\) in rollback:\d-[a-z-]+, "
        r"read by orders@v1 \(orders-v1-\d\) in rollback:3-after-rollback: answered 500",
        result.stdout,
    ), result.stdout[-4000:]


def test_frontend_needing_a_new_endpoint_fails_zeta(docker_client: Any) -> None:
    result = compat(
        "run",
        "--runtime",
        "docker",
        "--candidate",
        "web=v2-needs-history",
        "--stage",
        "zeta",
        "--stage",
        "reverse-zeta",
    )
    assert result.returncode == 1, result.stdout[-3000:]
    assert failed_ids(result.stdout) == {"test_checkout_then_show_the_order[zeta]"}
    assert "/history" in result.stdout


def test_response_shape_break_is_caught_by_spec_diff_contracts_and_properties(docker_client: Any) -> None:
    result = compat(
        "run",
        "--runtime",
        "docker",
        "--candidate",
        "orders=v2-rename-field",
        "--stage",
        "onebox",
        "--",
        "-k",
        "compat-checks",
    )
    assert result.returncode == 1, result.stdout[-3000:]
    failed = failed_ids(result.stdout)
    assert {"spec-diff-orders", "onebox-contracts-orders", "onebox-properties-orders"} <= failed
    assert "response-required-property-removed" in result.stdout  # the oasdiff rule id
    assert "reproduce: curl" in result.stdout


def test_narrowed_request_validation_fails_the_gate(docker_client: Any) -> None:
    result = compat(
        "run", "--runtime", "docker", "--candidate", "orders=v2-strict-validation", "--stage", "reverse-zeta"
    )
    assert result.returncode == 1, result.stdout[-3000:]
    failed = failed_ids(result.stdout)
    assert {"spec-diff-orders", "reverse-zeta-properties-orders"} <= failed, failed
    assert "request-property-max-length-decreased" in result.stdout


def test_up_prints_urls_that_answer_with_their_versions_and_down_removes_it(docker_client: Any) -> None:
    up = compat("up", "--stage", "onebox", "--detach", "--json", "--runtime", "docker")
    try:
        assert up.returncode == 0, up.stderr
        rows = json.loads(up.stdout)["instances"]
        assert {(r["service"], r["role"]) for r in rows} >= {
            ("orders", "baseline"),
            ("orders", "candidate"),
            ("orders", "router"),
            ("web", "router"),
        }
        for row in rows:
            assert row["url"].startswith("http://127.0.0.1:")
            answer = requests.get(row["url"] + "/health", timeout=10)
            assert answer.status_code == 200
            if row["role"] != "router":
                assert answer.headers["X-Service-Version"] == row["version"]
            else:
                assert answer.headers["X-Compat-Version"] in {"v1", "v2"}
        status = compat("status", "--json")
        assert {r["name"] for r in json.loads(status.stdout)} >= {r["name"] for r in rows}
    finally:
        down = compat("down")
    assert down.returncode == 0, down.stderr
    left = managed_resources(docker_client, **{"io.pytest-compat.project": "compat-example"})
    assert not any(left.values()), left
