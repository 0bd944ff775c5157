import pytest
import requests


@pytest.mark.compat(stage="onebox")
def test_versions_side_by_side(compat_topology):
    for which in ("baseline", "candidate"):
        body = requests.get(compat_topology.url("store", which) + "/health", timeout=10).json()
        assert body["version"] == {"baseline": "v1", "candidate": "v2"}[which]


@pytest.mark.compat(stage="onebox")
def test_shared_state_and_wiring(compat_topology, compat_client):
    assert compat_client("store", "baseline").put("/note", data="from-v1").ok
    assert compat_client("store", "candidate").get("/note").json() == {"note": "from-v1"}
    hello = compat_client("api", "candidate").get("/hello").json()
    assert hello["version"] == "v2"
    # in a one-box, dependants call the service's router, which mixes the versions
    entry = compat_topology.instance(compat_topology.plan.entry["store"])
    assert entry.spec.role == "router"
    assert hello["backend"] == f"http://{entry.internal}"
    versions = {
        compat_client("store", session="s").get("/health").headers["X-Compat-Version"] for _ in range(6)
    }
    assert versions == {"v1", "v2"}


@pytest.mark.compat
def test_every_stage_answers(compat_topology, compat_client):
    assert compat_client("api").get("/hello").status_code == 200
    assert compat_client("store").get("/health").status_code == 200


def test_unmarked_runs_always():
    assert True
