"""GET /metrics: Prometheus text for platform administrators only, counting requests, denials by
reason, upstream calls, stage timings, and pool and queue sizes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.governance.people import add_person, as_person, mcp
from tests.harness import Bastion, inventory_gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with inventory_gateway(tmp_path_factory.mktemp("metrics")) as bastion:
        yield bastion


def _samples(gw: Bastion) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = gw.api("GET", "/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_need_a_platform_administrator(gw: Bastion) -> None:
    assert gw.http.get("/metrics").status_code == 401
    auditor = add_person(gw, "otto", roles=["auditor"])
    tenant_admin = add_person(gw, "tess", roles=["tenant-admin"])
    for person in (auditor, tenant_admin):  # counts span every tenant: not a tenant's to read
        refused = as_person(gw, person, "GET", "/metrics")
        assert refused.status_code == 403 and "metrics:read" in refused.json()["error"]["message"]
    custom = gw.api("POST", "/api/roles", json={"name": "scraper", "permissions": ["metrics:read"]})
    assert custom.status_code == 400 and "platform administrators" in custom.json()["error"]["message"]


def test_calls_denials_upstream_and_stages_are_counted(gw: Bastion) -> None:
    before = _samples(gw)
    token = gw.token("demo")
    for _ in range(3):
        answer = mcp(gw, "demo", token, "tools/call", name="get_order", arguments={"order_id": "ORD-1001"})
        assert "result" in answer.json(), answer.text
    assert mcp(gw, "demo", "bst_not-a-token", "tools/list").status_code == 401
    assert mcp(gw, "demo", token, "tools/call", name="no_such_tool", arguments={}).json()["error"]
    for made_up in ("made/up-1", "made/up-2"):  # unknown methods: one label, not one each
        assert mcp(gw, "demo", token, made_up).json()["error"]["code"] == -32601
    after = _samples(gw)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("bastion_mcp_requests_total", method="tools/call", outcome="ok") == 3
    assert grew("bastion_mcp_requests_total", method="tools/call", outcome="invalid_params") == 1  # unknown tool
    assert grew("bastion_mcp_requests_total", method="other", outcome="method_not_found") == 2
    assert not any(name.startswith("bastion_mcp") and ("method", "made/up-1") in labels for name, labels in after)
    assert grew("bastion_upstream_calls_total", origin="inventory", outcome="ok") == 3
    assert grew("bastion_upstream_call_duration_seconds_count", origin="inventory") == 3
    assert grew("bastion_denials_total", plane="mcp", reason="unauthenticated") == 1
    assert grew("bastion_http_requests_total", plane="mcp", method="POST", status="401") == 1
    for stage in ("authenticate", "authorize", "forward", "audit"):
        assert grew("bastion_stage_duration_seconds_count", stage=stage) >= 3, stage
    assert grew("bastion_stage_duration_seconds_sum", stage="forward") > 0
    # Gauges read at scrape time.
    assert _value(after, "bastion_origin_clients") >= 1
    assert _value(after, "bastion_snapshot_epoch") > 0
    assert ("bastion_audit_unstored_records", frozenset()) in after
    # No label carries a principal, a token or an argument.
    text = gw.api("GET", "/metrics").text
    assert token not in text and "ORD-1001" not in text
