"""Rate limits across replicas: two `bastion serve` processes spend one budget kept in Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.harness import postgres_url
from tests.redis_server import namespace, shared_redis_url
from tests.replicas.cluster import Cluster, fresh_database, mcp_call, running_cluster

pytestmark = pytest.mark.anyio


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    base = require_service("PostgreSQL", postgres_url())
    async with (
        fresh_database(base) as database_url,
        running_cluster(database_url, shared_redis_url(), namespace(), tmp_path) as running,
    ):
        yield running


async def test_two_replicas_share_one_budget_and_a_burst_gets_429_with_retry_after(cluster: Cluster) -> None:
    await cluster.publish("limited")
    limit = {"settings": {"per_principal": "6/minute"}}
    await cluster.a.ok("PUT", "/api/policies/rate_limit", params={"scope": "server:limited"}, json=limit)
    _, token = await cluster.token("limited")
    statuses = []
    for n in range(6):  # alternating: each replica alone would allow all of these
        replica = cluster.a if n % 2 == 0 else cluster.b
        response = await mcp_call(replica.http, replica.mcp_url("limited"), token, n)
        statuses.append(response.status_code)
    assert statuses == [200] * 6
    refused = [
        await mcp_call(r.http, r.mcp_url("limited"), token, 10 + i) for i, r in enumerate((cluster.a, cluster.b))
    ]
    for response in refused:
        assert response.status_code == 429, response.text
        retry_after = int(response.headers["retry-after"])
        assert 1 <= retry_after <= 60
        error = response.json()["error"]
        assert "rate limit reached for you" in error["message"] and "6 per 1 minute" in error["message"]
