"""Two replicas, one PostgreSQL, one Redis: a change on A binds B's next request; Redis down fails closed.

Clients keep calling while the change happens; every call records when it started and ended
(one monotonic clock, this process), so "the first request that starts after A's call returned"
is a plain comparison of timestamps.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.bus.redis import RedisBus
from bastion.store.db import Database, bump_epoch
from bastion.store.repos import servers, tokens
from bastion.store.tenancy import SYSTEM
from tests.conftest import require_service
from tests.harness import ADMIN_PASSWORD, postgres_url
from tests.redis_server import RedisServer, namespace, private_redis, shared_redis_url
from tests.replicas.cluster import TOOL, Cluster, Replica, fresh_database, mcp_call, running_cluster

pytestmark = pytest.mark.anyio

_MAX_CALLS_PER_WORKER = 20_000  # a bound on every request loop, whatever happens to the waits


@dataclass(frozen=True)
class Call:
    replica: str
    label: str
    started: float
    ended: float
    status: int
    body: bytes


class Recorder:
    """Every call's timing and answer, and a way to wait until the calls so far satisfy a condition."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.stop = anyio.Event()
        self._added = anyio.Event()

    def add(self, call: Call) -> None:
        self.calls.append(call)
        self._added.set()
        self._added = anyio.Event()

    async def wait_until(self, condition: Callable[[list[Call]], bool], *, seconds: float = 30) -> None:
        with anyio.fail_after(seconds):
            while not condition(self.calls):
                await self._added.wait()


async def keep_calling(http: httpx.AsyncClient, replica: Replica, slug: str, label: str, token: str,
                       recorder: Recorder) -> None:  # fmt: skip
    for request_id in range(_MAX_CALLS_PER_WORKER):
        if recorder.stop.is_set():
            return
        started = time.monotonic()
        response = await mcp_call(http, replica.mcp_url(slug), token, request_id)
        recorder.add(Call(replica.name, label, started, time.monotonic(), response.status_code, response.content))


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope: both change cases share one pair of replicas


@pytest.fixture(scope="module")
async def cluster(anyio_backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    base = require_service("PostgreSQL", postgres_url())
    redis_url = shared_redis_url()
    async with (
        fresh_database(base) as database_url,
        running_cluster(database_url, redis_url, namespace(), tmp_path_factory.mktemp("replicas")) as running,
    ):
        yield running


CHANGES = [
    ("revoke the token", 401),
    ("unpublish the server", 404),
    # The token stays valid; its user's roles no longer allow the tool (a JSON-RPC error, HTTP 400).
    ("remove the user's role", 400),
    # No event at all: only the per-request epoch check can make B refuse (the store poll is hourly).
    ("revoke the token in the store and announce its epoch without an event", 401),
    # The tool leaves the server: "unknown tool", a JSON-RPC error (HTTP 400).
    ("disable the tool", 400),
    # Last: the module's replicas share this one origin, and a rejected origin stays rejected.
    ("reject the connector", 400),
]


async def test_the_token_endpoint_on_replica_b_follows_a_change_announced_without_an_event(cluster: Cluster) -> None:
    """The token endpoint decides from a snapshot no older than the shared epoch, as the MCP endpoint
    does: a server unpublished in the store, its epoch announced but no event sent (the store poll
    is hourly), is refused by B's very next token request. First in the module: the parametrized
    cases end by rejecting the origin every server here is composed from."""
    slug = f"t-{uuid.uuid4().hex[:8]}"
    server_id = await cluster.publish(slug)  # on A: B's first token request below must see it too
    client = await cluster.a.ok("POST", "/api/oauth/clients", json={"name": "replicas", "servers": [slug]})

    async def token_on_b() -> httpx.Response:
        form = {"grant_type": "client_credentials", "resource": cluster.b.mcp_url(slug)}
        return await cluster.b.http.post("/oauth/token", data=form, auth=(client["client_id"], client["client_secret"]))

    issued = await token_on_b()
    assert issued.status_code == 200, issued.text

    async def unpublish(session: AsyncSession) -> None:
        (await servers.get(session, server_id)).published = False

    await _announce_only(cluster, unpublish)
    refused = await token_on_b()
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_target", refused.text


@pytest.mark.parametrize(("change", "refused_with"), CHANGES)
async def test_the_first_request_on_replica_b_that_starts_after_replica_a_commits_a_change_is_refused(
    cluster: Cluster, change: str, refused_with: int, record_property: Callable[[str, object], None]
) -> None:
    slug = f"s-{uuid.uuid4().hex[:8]}"
    server_id = await cluster.publish(slug)
    token_id, token, method, path, body = await _prepare(cluster, change, slug, server_id)
    recorder = Recorder()
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http, anyio.create_task_group() as tasks:
        for _ in range(3):
            tasks.start_soon(keep_calling, http, cluster.b, slug, "client", token, recorder)
        await recorder.wait_until(lambda calls: len(calls) >= 30)

        began = time.monotonic()
        if change.startswith("revoke the token in the store"):
            await _revoke_and_announce_only(cluster, token_id)
        else:
            response = await http.request(
                method,
                f"{cluster.a.base_url}{path}",
                json=body,
                headers={"authorization": f"Bearer {cluster.a.admin_token}"},
            )
            assert response.status_code == 200, response.text
        returned = time.monotonic()
        await recorder.wait_until(lambda calls: sum(c.started >= returned for c in calls) >= 30)
        recorder.stop.set()

    calls = recorder.calls
    before = [c for c in calls if c.ended <= began]
    after = [c for c in calls if c.started >= returned]
    assert before and {c.status for c in before} == {200}, "B served the token before the change"
    assert {c.status for c in after} == {refused_with}, [(c.status, c.body[:120]) for c in after if c.status == 200]

    allowed = [c.started for c in calls if c.status == 200]
    refused = [c for c in calls if c.status == refused_with]
    first_after = min(after, key=lambda c: c.started)
    report = {
        "a_call_ms": (returned - began) * 1e3,
        "last_allowed_start_ms": (max(allowed) - returned) * 1e3,  # negative: before A's call returned
        "first_refused_start_ms": (min(c.started for c in refused) - returned) * 1e3,
        "first_after_latency_ms": (first_after.ended - first_after.started) * 1e3,
        "median_latency_ms": median(c.ended - c.started for c in before) * 1e3,
    }
    for name, value in report.items():
        record_property(name, round(value, 2))
    print(f"\n{change}; observed on B: " + ", ".join(f"{k}={v:.2f}" for k, v in report.items()))


async def test_while_redis_is_down_protected_requests_get_503_and_service_resumes_when_it_returns(
    tmp_path: Path, pg_url: str
) -> None:
    with private_redis() as redis:
        async with (
            fresh_database(pg_url) as database_url,
            running_cluster(database_url, redis.url, namespace(), tmp_path) as cluster,
        ):
            await _outage(redis, database_url, cluster)


async def _outage(redis: RedisServer, database_url: str, cluster: Cluster) -> None:
    slug = "outage"
    await cluster.publish(slug)
    _, kept = await cluster.token(slug)
    gone_id, gone = await cluster.token(slug)
    recorder = Recorder()
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http, anyio.create_task_group() as tasks:
        for replica in (cluster.a, cluster.b):
            for label, token in (("kept", kept), ("gone", gone)):
                tasks.start_soon(keep_calling, http, replica, slug, label, token, recorder)
        await recorder.wait_until(lambda calls: sum(c.status == 200 for c in calls) >= 20)

        redis.kill()
        down = time.monotonic()
        await recorder.wait_until(lambda calls: sum(c.started >= down for c in calls) >= 40)
        admin = await http.get(
            f"{cluster.a.base_url}/api/tokens", headers={"authorization": f"Bearer {cluster.a.admin_token}"}
        )
        # A write that nobody could announce (its writer's publish failed with Redis down).
        await _revoke_in_store(database_url, gone_id)
        revoked = time.monotonic()
        await recorder.wait_until(lambda calls: sum(c.started >= revoked for c in calls) >= 20)

        restarting = time.monotonic()
        redis.start()  # the same port, and empty: the shared epoch is gone with it
        up = time.monotonic()
        await recorder.wait_until(lambda calls: _resumed(calls, up))
        recorder.stop.set()

    outage = [c for c in recorder.calls if c.started >= down and c.ended <= restarting]
    assert outage and {c.status for c in outage} == {503}
    assert all(b"Redis" in c.body for c in outage), outage[0].body
    assert admin.status_code == 503 and "Redis" in admin.json()["error"]["message"]
    assert admin.headers["retry-after"] == "1"
    assert not [c for c in recorder.calls if c.label == "gone" and c.started >= revoked and c.status == 200]
    after = [c for c in recorder.calls if c.started >= up]
    assert {c.status for c in after if c.label == "gone"} == {401}  # the unannounced revocation holds
    assert {c.status for c in after if c.label == "kept"} == {200}  # no restart of Bastion needed


def _resumed(calls: list[Call], up: float) -> bool:
    after = [c for c in calls if c.started >= up]
    return all(
        sum(c.replica == replica and c.label == label for c in after) >= 5
        for replica in ("a", "b")
        for label in ("kept", "gone")
    )


async def _prepare(
    cluster: Cluster, change: str, slug: str, server_id: str
) -> tuple[str, str, str, str, dict[str, Any] | None]:
    """The token B's callers use, and the admin request on A that makes the change."""
    if change == "remove the user's role":
        user = await cluster.a.ok("POST", "/api/users", json={"username": slug, "password": ADMIN_PASSWORD})
        token_id, token = await cluster.token(slug, user=slug)
        return token_id, token, "PATCH", f"/api/users/{user['id']}", {"roles": []}
    token_id, token = await cluster.token(slug)  # minted on A, used on B at once: also a change B must see
    if change == "revoke the token":
        return token_id, token, "POST", f"/api/tokens/{token_id}/revoke", None
    if change == "unpublish the server":
        return token_id, token, "POST", f"/api/servers/{server_id}/unpublish", None
    if change == "disable the tool":
        server = await cluster.a.ok("GET", f"/api/servers/{server_id}")
        item = next(i for i in server["items"] if i["exposed_name"] == TOOL)
        return token_id, token, "PATCH", f"/api/servers/{server_id}/items/{item['id']}", {"enabled": False}
    if change == "reject the connector":
        [origin] = await cluster.a.ok("GET", "/api/origins")
        return token_id, token, "POST", f"/api/origins/{origin['id']}/review", {"decision": "reject"}
    return token_id, token, "", "", None  # the store-only revocation: no admin request


async def _revoke_and_announce_only(cluster: Cluster, token_id: str) -> None:
    await _announce_only(cluster, lambda session: tokens.revoke(session, token_id))


async def _announce_only(cluster: Cluster, change: Callable[[AsyncSession], Awaitable[object]]) -> None:
    """Commit a change with its epoch, then raise the shared epoch the way a writer does, minus the event."""
    database = Database(cluster.database_url)
    bus = RedisBus(cluster.redis_url, read_epoch=database.read_epoch, namespace=cluster.namespace, timeout=1.0)
    try:
        async with database.session(SYSTEM) as session:
            await change(session)
            await bump_epoch(session)
        await bus.announce(await database.read_epoch())
    finally:
        await bus.aclose()
        await database.close()


async def _revoke_in_store(database_url: str, token_id: str) -> None:
    database = Database(database_url)
    try:
        async with database.session(SYSTEM) as session:
            await tokens.revoke(session, token_id)
            await bump_epoch(session)
    finally:
        await database.close()
