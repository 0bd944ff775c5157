"""A realistic report for the gate and report tests, built from real Finding objects.

A failing run of project ``shop``: two stage runs (``onebox``, ``rollback:1-mixed``), three check items
(contracts and properties in onebox, data in the rollback's mixed step, which crashed), three findings
(one waived by ``waiver[0]``, one of them carrying a planted bearer token and ``<script>`` in its message),
three user tests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from compat.checks.finding import Finding, to_curl
from compat.gate.evaluate import GatePolicy
from compat.gate.waivers import Waiver
from compat.report.jsonreport import ReportBuilder

TOKEN = "s3cr3t-t0ken-PLANTED-9f8e7d"
API_KEY = "key-PLANTED-abcdef"
TODAY = dt.date(2026, 6, 1)
STARTED = dt.datetime(2026, 6, 1, 9, 30, 0, tzinfo=dt.UTC)
VERSIONS = {"orders": "v1+v2-rename-field"}

CONTRACT = Finding(
    check="contracts",
    rule="a request for order 7",
    message="GET /orders/7: body.total missing <script>alert('x')</script>",
    stage="onebox",
    versions=VERSIONS,
    operation="GET /orders/{id}",
    request={
        "method": "GET",
        "url": "http://127.0.0.1:49153/orders/7",
        "headers": {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY, "Accept": "application/json"},
        "body": None,
    },
    response={
        "status": 200,
        "headers": {"Content-Type": "application/json", "X-Served-By": "orders@v2-rename-field"},
        "body": '{"id": 7, "amount": 12.5}',
    },
    expected='{"id": 7, "total": 12.5}',
    actual='{"id": 7, "amount": 12.5}',
    seed=1234,
    curl=to_curl(
        "GET",
        "http://127.0.0.1:49153/orders/7",
        {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY},
        redact=["X-Api-Key"],
    ),
    details={
        "location": "$.total",
        "provider_log": f"auth ok for Bearer {TOKEN}; key {API_KEY} accepted",
        "diff": [{"op": "remove", "path": "/total"}, {"op": "add", "path": "/amount", "value": 12.5}],
    },
)

SCHEMA = Finding(
    check="properties",
    rule="response_schema_conformance",
    message="POST /orders -> 201: 'currency' is a required property",
    stage="onebox",
    versions=VERSIONS,
    operation="POST /orders",
    request={"method": "POST", "url": "http://127.0.0.1:49153/orders", "headers": {}, "body": '{"qty": 1}'},
    response={"status": 201, "headers": {}, "body": '{"id": 8}'},
    seed=1234,
    curl=to_curl("POST", "http://127.0.0.1:49153/orders", {"Content-Type": "application/json"}, '{"qty": 1}'),
    details={"location": "$.currency"},
)

STATUS = Finding(
    check="properties",
    rule="status_code_conformance",
    message="DELETE /orders/8 -> 500, not documented (documented: 204, 404)",
    stage="onebox",
    versions=VERSIONS,
    operation="DELETE /orders/{id}",
    request={"method": "DELETE", "url": "http://127.0.0.1:49153/orders/8", "headers": {}, "body": None},
    response={"status": 500, "headers": {}, "body": "Internal Server Error"},
    seed=1234,
    curl=to_curl("DELETE", "http://127.0.0.1:49153/orders/8"),
)

WAIVER = Waiver(
    index=0,
    reason="currency becomes required in v2; all consumers send it (JIRA-123)",
    expires=dt.date(2027, 1, 31),
    rule="response_schema_*",
    service="orders",
    file="compat-waivers.toml",
)


def sample_builder(*, extra_findings: int = 0, crashed: bool = True) -> ReportBuilder:
    """The builder of the sample run; ``extra_findings`` adds that many more blocking property findings.

    With ``crashed`` (the default) the rollback's data check has an ``error``, so the run is ERROR (fail
    closed beats FAIL); without it that check passes and the run is FAIL.
    """
    builder = ReportBuilder(redact=["X-Api-Key"])
    builder.set_run(
        id="r-20260601-0930-ab12",
        project="shop",
        seed=1234,
        runtime="docker",
        started_at=STARTED,
        finished_at=STARTED + dt.timedelta(seconds=83.4),
        config="compat.toml",
        argv=["pytest", "--compat", "--compat-seed=1234"],
        candidates={"orders": "v2-rename-field"},
    )
    builder.add_version(
        "orders", "v1", "v2-rename-field", baseline_image="shop-orders:v1", candidate_image="shop-orders:v2"
    )
    builder.add_version("web", "v1", None, baseline_image="shop-web:v1")
    builder.add_stage("onebox", kind="onebox", versions={"orders": "v1+v2-rename-field", "web": "v1"})
    builder.add_stage(
        "rollback:1-mixed", stage="rollback", kind="rollback", versions={"orders": "v1+v2-rename-field"}
    )
    builder.add_check(
        id="onebox-contracts-orders",
        check="contracts",
        service="orders",
        stage="onebox",
        findings=[CONTRACT],
        notes=["1 of 4 interactions failed"],
        duration_s=3.2,
        metrics={"interactions": 4},
    )
    extra = [
        dataclasses.replace(STATUS, details={"location": f"$.extra[{i}]"}, message=f"extra finding {i}")
        for i in range(extra_findings)
    ]
    builder.add_check(
        id="onebox-properties-orders",
        check="properties",
        service="orders",
        stage="onebox",
        findings=[SCHEMA, STATUS, *extra],
        duration_s=21.9,
        metrics={"examples": 100, "requests": 412},
    )
    builder.add_check(
        id="rollback:1-mixed-data-orders",
        check="data",
        service="orders",
        stage="rollback:1-mixed",
        error=(
            "InfrastructureError: instance 'orders-v2-1' exited with status 137 during the check"
            if crashed
            else None
        ),
        notes=[] if crashed else ["wrote 12 records through v1, read them back through v2 and v1"],
        duration_s=7.0,
    )
    builder.add_test("tests/test_orders.py::test_create[onebox]", "passed", stage="onebox", duration_s=0.4)
    builder.add_test(
        "tests/test_orders.py::test_list[rollback:1-mixed]",
        "passed",
        stage="rollback:1-mixed",
        duration_s=0.2,
    )
    builder.add_test(
        "tests/test_orders.py::test_export[onebox]", "skipped", stage="onebox", message="needs S3"
    )
    return builder


def sample_report(
    policy: GatePolicy | None = None, *, extra_findings: int = 0, crashed: bool = True
) -> dict[str, Any]:
    """The sample run's report, evaluated with ``policy`` and :data:`WAIVER` on :data:`TODAY`."""
    return sample_builder(extra_findings=extra_findings, crashed=crashed).build(policy, [WAIVER], TODAY)
