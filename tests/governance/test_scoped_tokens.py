"""Scoped API tokens: source networks, validity start and quotas enforced on both planes, every
use logged (allowed or blocked), and the client address behind trusted proxies.

The end-to-end tests drive a real Bastion over HTTP with raw `initialize` POSTs (one request,
one use) so that uses can be counted exactly; the rules, the address resolver, the quota and the
recorder also have pure unit tests below.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select

from bastion.bus.token_quota import RedisQuota
from bastion.errors import Forbidden, Unavailable
from bastion.http.client_ip import ClientIp, client_address, parse_hop
from bastion.identity.principal import Principal
from bastion.identity.token_rules import (
    REASON_NOT_YET_VALID,
    REASON_QUOTA_EXHAUSTED,
    REASON_SOURCE_ADDRESS,
    LocalQuota,
    TokenGate,
    TokenRefused,
    TokenRules,
    TokenUse,
    check_use,
)
from bastion.store.db import Database
from bastion.store.models import ApiToken, ApiTokenUse
from bastion.store.repos.token_uses import TokenUseWriter
from bastion.store.tenancy import SYSTEM
from tests.harness import STDIO_INVENTORY, Bastion, free_port, run_bastion
from tests.redis_server import namespace, shared_redis_url

UA = "scoped-token-test/1.0"
# What the use log's batch writer runs (per batch): everything else would be request handling.
WRITER_STATEMENTS = (
    "SELECT api_tokens.id, api_tokens.tenant_id",
    "INSERT INTO api_token_uses",
    "UPDATE api_tokens SET uses=",
)
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bastion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    """One Bastion for the module; no proxy is trusted (uvicorn runs with proxy_headers off, as
    `bastion serve` does, so only Bastion decides whose X-Forwarded-For to believe)."""
    # The epoch poll is pushed out so that the SQL counted below comes from requests and the writer.
    with run_bastion(tmp_path_factory.mktemp("scoped"), epoch_poll_seconds=3600) as running:
        running.add_origin("inventory", command=STDIO_INVENTORY)
        running.publish_server("scoped", {"origin": "inventory", "items": ["list_stock"]})
        yield running


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    """A Bastion that trusts the loopback network as its reverse proxy."""
    with run_bastion(tmp_path_factory.mktemp("proxied"), trusted_proxies=["127.0.0.0/8"]) as running:
        running.add_origin("inventory", command=STDIO_INVENTORY)
        running.publish_server("scoped", {"origin": "inventory", "items": ["list_stock"]})
        yield running


def make_token(bastion: Bastion, **limits: Any) -> tuple[str, str]:
    """(id, secret) of a fresh token for the `scoped` server with the given limits."""
    body = {"name": f"t-{uuid.uuid4().hex[:8]}", "servers": ["scoped"], "expires_in_days": 1, **limits}
    created = bastion.ok("POST", "/api/tokens", json=body)
    return created["id"], created["token"]


def mcp(bastion: Bastion, secret: str, **headers: str) -> httpx.Response:
    return bastion.http.post(
        "/servers/scoped/mcp",
        json=INITIALIZE,
        headers={
            "authorization": f"Bearer {secret}",
            "accept": "application/json, text/event-stream",
            "user-agent": UA,
            **headers,
        },
    )


def uses_of(bastion: Bastion, token_id: str, count: int) -> list[dict[str, Any]]:
    """The token's logged uses, oldest first, once `count` of them are written (batch writer)."""
    deadline = time.monotonic() + 10
    while True:
        rows: list[dict[str, Any]] = bastion.ok("GET", "/api/audit/token-uses", params={"token_id": token_id})
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, rows
            return sorted(rows, key=lambda row: row["at"])
        time.sleep(0.1)


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 403, (response.status_code, response.text)
    assert "www-authenticate" not in response.headers  # no OAuth step-up for a token's own rule
    return str(response.json()["error"]["message"])


def test_a_token_outside_its_networks_is_refused_and_inside_works(bastion: Bastion) -> None:
    outside, outside_secret = make_token(bastion, allowed_cidrs=["10.0.0.0/8", "2001:db8::/32"])
    inside, inside_secret = make_token(bastion, allowed_cidrs=["10.0.0.0/8", "127.0.0.0/8"])

    message = refusal(mcp(bastion, outside_secret))
    assert "may not be used from 127.0.0.1" in message
    assert mcp(bastion, inside_secret).status_code == 200

    # Without trusted proxies, a forged X-Forwarded-For claiming an allowed address is ignored.
    forged = mcp(bastion, outside_secret, **{"x-forwarded-for": "10.1.2.3"})
    assert "may not be used from 127.0.0.1" in refusal(forged)

    [blocked, blocked_again] = uses_of(bastion, outside, 2)
    for row in (blocked, blocked_again):
        assert row["block_reason"] == REASON_SOURCE_ADDRESS
        assert (row["method"], row["path"], row["ip"], row["status"]) == (
            "POST",
            "/servers/scoped/mcp",
            "127.0.0.1",
            403,
        )
        assert row["user_agent"] == UA
        assert row["latency_ms"] > 0
    [allowed] = uses_of(bastion, inside, 1)
    assert (allowed["status"], allowed["block_reason"], allowed["ip"]) == (200, None, "127.0.0.1")
    assert allowed["user_agent"] == UA and allowed["latency_ms"] > 0


def test_not_before_refuses_until_the_instant(bastion: Bastion) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    future, future_secret = make_token(bastion, not_before=later.isoformat())
    past, past_secret = make_token(bastion, not_before=(datetime.now(UTC) - timedelta(minutes=1)).isoformat())

    message = refusal(mcp(bastion, future_secret))
    assert f"not valid before {later.strftime('%Y-%m-%dT%H:%M:%SZ')}" in message
    assert mcp(bastion, past_secret).status_code == 200

    [row] = uses_of(bastion, future, 1)
    assert (row["status"], row["block_reason"]) == (403, REASON_NOT_YET_VALID)
    [row] = uses_of(bastion, past, 1)
    assert (row["status"], row["block_reason"]) == (200, None)


def test_max_uses_allows_exactly_that_many_then_refuses_and_refusals_do_not_count(bastion: Bastion) -> None:
    token_id, secret = make_token(bastion, max_uses=3)
    statuses = [mcp(bastion, secret).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    for _ in range(2):
        assert "quota of 3 uses is used up" in refusal(mcp(bastion, secret))

    rows = uses_of(bastion, token_id, 5)
    assert [(r["status"], r["block_reason"]) for r in rows] == [(200, None)] * 3 + [(403, REASON_QUOTA_EXHAUSTED)] * 2
    # The counted uses reach the token's row: the three allowed ones, not the refusals.
    [listed] = [t for t in bastion.ok("GET", "/api/tokens") if t["id"] == token_id]
    assert listed["uses"] == 3 and listed["max_uses"] == 3


def test_a_use_refused_by_another_rule_is_logged_and_does_not_use_up_the_quota(bastion: Bastion) -> None:
    token_id, secret = make_token(bastion, max_uses=1)
    wrong_server = bastion.http.post(
        "/servers/nowhere/mcp", json=INITIALIZE, headers={"authorization": f"Bearer {secret}", "user-agent": UA}
    )
    assert wrong_server.status_code == 404
    assert mcp(bastion, secret).status_code == 200  # the 404 did not take the single use
    assert "used up" in refusal(mcp(bastion, secret))
    rows = uses_of(bastion, token_id, 3)
    assert [(r["path"], r["status"], r["block_reason"]) for r in rows] == [
        ("/servers/nowhere/mcp", 404, None),
        ("/servers/scoped/mcp", 200, None),
        ("/servers/scoped/mcp", 403, REASON_QUOTA_EXHAUSTED),
    ]


def test_the_admin_api_enforces_and_logs_the_same_rules(bastion: Bastion) -> None:
    outside_id, outside = make_token(bastion, scopes=["admin"], allowed_cidrs=["192.0.2.0/24"])
    quota_id, quota = make_token(bastion, scopes=["admin"], max_uses=2)

    refused = bastion.http.get("/api/servers", headers={"authorization": f"Bearer {outside}", "user-agent": UA})
    assert refused.status_code == 403
    assert "may not be used from 127.0.0.1" in refused.json()["error"]["message"]
    for _ in range(2):
        assert bastion.http.get("/api/servers", headers={"authorization": f"Bearer {quota}"}).status_code == 200
    exhausted = bastion.http.get("/api/servers", headers={"authorization": f"Bearer {quota}"})
    assert exhausted.status_code == 403 and "used up" in exhausted.json()["error"]["message"]

    [row] = uses_of(bastion, outside_id, 1)
    assert (row["method"], row["path"], row["ip"], row["user_agent"]) == ("GET", "/api/servers", "127.0.0.1", UA)
    assert (row["status"], row["block_reason"]) == (403, REASON_SOURCE_ADDRESS) and row["latency_ms"] > 0
    rows = uses_of(bastion, quota_id, 3)
    assert [(r["status"], r["block_reason"]) for r in rows] == [(200, None), (200, None), (403, REASON_QUOTA_EXHAUSTED)]


def test_behind_a_trusted_proxy_the_forwarded_address_decides(behind_proxy: Bastion) -> None:
    token_id, secret = make_token(behind_proxy, allowed_cidrs=["203.0.113.0/24"])

    # The peer (127.0.0.1) is a trusted proxy: the address it forwarded is the client.
    assert mcp(behind_proxy, secret, **{"x-forwarded-for": "203.0.113.9"}).status_code == 200
    # Entries left of the first untrusted one are the client's own claims: not believed.
    spoofed = mcp(behind_proxy, secret, **{"x-forwarded-for": "203.0.113.9, 198.51.100.4"})
    assert "may not be used from 198.51.100.4" in refusal(spoofed)
    # Trusted hops are skipped from the right.
    assert mcp(behind_proxy, secret, **{"x-forwarded-for": "203.0.113.10, 127.0.0.5"}).status_code == 200
    # No header: the request is the proxy's own, from 127.0.0.1.
    assert "may not be used from 127.0.0.1" in refusal(mcp(behind_proxy, secret))

    rows = uses_of(behind_proxy, token_id, 4)
    assert [(r["ip"], r["status"]) for r in rows] == [
        ("203.0.113.9", 200),
        ("198.51.100.4", 403),
        ("203.0.113.10", 200),
        ("127.0.0.1", 403),
    ]


def test_logging_uses_adds_no_sql_to_request_handling(bastion: Bastion) -> None:
    """Request handling issues no SQL; the only statements are the batch writers' (the use log's, a
    few per batch, and the audit trail's: each request, `initialize` included, has its record)."""
    from sqlalchemy import event

    _token_id, secret = make_token(bastion)
    mcp(bastion, secret)  # warm-up
    time.sleep(0.7)  # let the writer drain the warm-up's record
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = bastion.services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(100):
            assert mcp(bastion, secret).status_code == 200
        time.sleep(0.7)  # the last batch
    finally:
        event.remove(engine, "before_cursor_execute", count)
    writer = [s for s in statements if s.startswith(WRITER_STATEMENTS)]
    audit = [s for s in statements if "audit_" in s.split("\n", 1)[0] or "audit_heads" in s]  # the trail's writer
    assert writer, "the use log wrote nothing"
    assert [s for s in statements if s not in writer and s not in audit] == []
    assert len(writer) <= 3 * 10  # SELECT, INSERT, UPDATE per batch; far fewer batches than calls


def test_uses_still_queued_at_shutdown_reach_the_store(tmp_path: Path) -> None:
    with run_bastion(tmp_path, epoch_poll_seconds=3600) as running:
        running.add_origin("inventory", command=STDIO_INVENTORY)
        running.publish_server("scoped", {"origin": "inventory", "items": ["list_stock"]})
        token_id, secret = make_token(running, max_uses=5)
        writer = running.services.token_uses
        current = writer._full
        writer._interval = 3600  # after the current round, the writer only writes when stopped
        deadline = time.monotonic() + 10
        while writer._full is current:  # a new round starts with the new interval (the writer's thread)
            assert time.monotonic() < deadline, "the use log writer did not start a new round"
            time.sleep(0.02)
        assert mcp(running, secret).status_code == 200
        time.sleep(0.2)
        queued = [use.token_id for use in writer._queue]
        assert token_id in queued, queued  # not written yet: only the shutdown can write it
        database_url = running.settings.database_url

    async def stored() -> tuple[list[tuple[str, int, str]], int]:
        db = Database(database_url)
        try:
            async with db.session(SYSTEM) as session:
                rows = await session.execute(
                    select(ApiTokenUse.path, ApiTokenUse.status, ApiTokenUse.user_agent).where(
                        ApiTokenUse.token_id == token_id
                    )
                )
                uses = await session.scalar(select(ApiToken.uses).where(ApiToken.id == token_id))
                return [(str(path), int(status), str(agent)) for path, status, agent in rows], int(uses or 0)
        finally:
            await db.close()

    assert anyio.run(stored) == ([("/servers/scoped/mcp", 200, UA)], 1)


@pytest.mark.anyio
async def test_the_redis_quota_is_exact_across_replicas() -> None:
    """Two replicas' counters on one Redis: together they allow exactly `max_uses`, concurrently too."""
    url, ns = shared_redis_url(), namespace()
    first, second = (RedisQuota(url, namespace=ns, timeout=1.0) for _ in range(2))
    token = f"tok-{uuid.uuid4().hex[:8]}"
    five = rules(max_uses=5, uses_at_load=1)  # one use was already persisted when the snapshot loaded
    outcomes: list[bool] = []

    async def use(quota: RedisQuota) -> None:
        try:
            await quota.take(token, five, time.time() + 60)
            outcomes.append(True)
        except TokenRefused as refused:
            assert refused.reason == REASON_QUOTA_EXHAUSTED
            outcomes.append(False)

    try:
        async with anyio.create_task_group() as tasks:
            for n in range(12):
                tasks.start_soon(use, first if n % 2 else second)
        assert outcomes.count(True) == 4 and outcomes.count(False) == 8
        # A replica whose snapshot loaded a higher stored count (Redis lost the key) starts from it.
        other = f"tok-{uuid.uuid4().hex[:8]}"
        with pytest.raises(TokenRefused):
            await first.take(other, rules(max_uses=2, uses_at_load=2), time.time() + 60)
        await first.take(other, rules(), time.time() + 60)  # no quota: Redis is not asked
    finally:
        await first.aclose()
        await second.aclose()


def test_with_redis_configured_the_quota_is_counted_there(tmp_path: Path) -> None:
    url, ns = shared_redis_url(), namespace()
    with run_bastion(tmp_path, redis_url=url, redis_namespace=ns) as running:
        running.add_origin("inventory", command=STDIO_INVENTORY)
        running.publish_server("scoped", {"origin": "inventory", "items": ["list_stock"]})
        token_id, secret = make_token(running, max_uses=3)
        assert [mcp(running, secret).status_code for _ in range(4)] == [200, 200, 200, 403]
        rows = uses_of(running, token_id, 4)
        assert [r["block_reason"] for r in rows] == [None, None, None, REASON_QUOTA_EXHAUSTED]

    async def counter() -> bytes | None:
        from redis.asyncio import Redis

        client = Redis.from_url(url)
        try:
            value = await client.get(f"{ns}:token-uses:{token_id}")
            assert value is None or isinstance(value, bytes)
            await client.delete(f"{ns}:token-uses:{token_id}")
            return value
        finally:
            await client.aclose()

    assert anyio.run(counter) == b"3"


@pytest.mark.anyio
async def test_an_unreachable_redis_refuses_quota_limited_uses() -> None:
    quota = RedisQuota(f"redis://127.0.0.1:{free_port()}/0", namespace="x", timeout=0.5)
    try:
        with pytest.raises(Unavailable, match="quota"):
            await quota.take("tok", rules(max_uses=1), time.time() + 60)
    finally:
        await quota.aclose()


# --- the rules, pure -------------------------------------------------------------------------


def rules(**values: Any) -> TokenRules:
    return TokenRules(**values)


def reason_of(rules: TokenRules, ip: str, now: float) -> str | None:
    try:
        check_use(rules, ip, now)
    except TokenRefused as refused:
        assert isinstance(refused, Forbidden) and refused.http_status == 403
        return refused.reason
    return None


def test_check_use_source_networks() -> None:
    limited = rules(networks=(ip_network("10.0.0.0/8"), ip_network("2001:db8::/32")))
    assert reason_of(limited, "10.2.3.4", 0) is None
    assert reason_of(limited, "2001:db8::7", 0) is None
    assert reason_of(limited, "::ffff:10.2.3.4", 0) is None  # a dual-stack socket's IPv4 peer
    assert reason_of(limited, "11.0.0.1", 0) == REASON_SOURCE_ADDRESS
    assert reason_of(limited, "", 0) == REASON_SOURCE_ADDRESS  # unknown address: refused, not waved through
    assert reason_of(limited, "testclient", 0) == REASON_SOURCE_ADDRESS
    assert reason_of(rules(), "", 0) is None  # no networks: any address
    with pytest.raises(TokenRefused, match=r"may not be used from 11\.0\.0\.1"):
        check_use(limited, "11.0.0.1", 0)


def test_check_use_validity_start_and_quota_at_load() -> None:
    start = datetime(2030, 1, 1, 9, tzinfo=UTC).timestamp()
    assert reason_of(rules(not_before=start), "1.2.3.4", start - 1) == REASON_NOT_YET_VALID
    assert reason_of(rules(not_before=start), "1.2.3.4", start) is None
    with pytest.raises(TokenRefused, match="not valid before 2030-01-01T09:00:00Z"):
        check_use(rules(not_before=start), "1.2.3.4", start - 1)
    assert reason_of(rules(max_uses=3, uses_at_load=2), "1.2.3.4", 0) is None
    assert reason_of(rules(max_uses=3, uses_at_load=3), "1.2.3.4", 0) == REASON_QUOTA_EXHAUSTED
    # The address is checked first: a caller from elsewhere learns nothing about validity or quota.
    elsewhere = rules(networks=(ip_network("10.0.0.0/8"),), not_before=start, max_uses=1, uses_at_load=1)
    assert reason_of(elsewhere, "1.2.3.4", 0) == REASON_SOURCE_ADDRESS


def test_rules_from_stored_columns() -> None:
    built = TokenRules.build(["10.0.0.0/8"], datetime(2030, 1, 1, tzinfo=UTC), 5, 2)
    assert built == TokenRules((ip_network("10.0.0.0/8"),), datetime(2030, 1, 1, tzinfo=UTC).timestamp(), 5, 2)
    assert TokenRules.build([], None, None, 0) == TokenRules()
    # Ranges that no longer parse make the token usable from nowhere, never from anywhere.
    broken = TokenRules.build(["not-a-network"], None, None, 0)
    assert reason_of(broken, "10.0.0.1", 0) == REASON_SOURCE_ADDRESS
    assert reason_of(broken, "::1", 0) == REASON_SOURCE_ADDRESS


@pytest.mark.anyio
async def test_local_quota_counts_on_top_of_the_stored_count() -> None:
    quota = LocalQuota()
    three = rules(max_uses=3, uses_at_load=1)
    await quota.take("a", three, 0)
    await quota.take("a", three, 0)
    with pytest.raises(TokenRefused) as refused:
        await quota.take("a", three, 0)
    assert refused.value.reason == REASON_QUOTA_EXHAUSTED
    # A later snapshot that loaded more uses (another process's, persisted) raises the count.
    await quota.take("b", rules(max_uses=3, uses_at_load=0), 0)
    with pytest.raises(TokenRefused):
        await quota.take("b", rules(max_uses=3, uses_at_load=3), 0)
    for _ in range(5):
        await quota.take("c", rules(), 0)  # no quota: never refused


class _Log:
    def __init__(self) -> None:
        self.uses: list[TokenUse] = []

    def record(self, use: TokenUse) -> None:
        self.uses.append(use)


def _principal(**values: Any) -> Principal:
    base: dict[str, Any] = {
        "token_id": "tok",
        "user_id": "u",
        "username": "u",
        "is_admin": False,
        "scopes": frozenset({"mcp"}),
        "server_ids": frozenset(),
        "expires_at": time.time() + 60,
    }
    return Principal(**{**base, **values})


@pytest.mark.anyio
async def test_the_gate_records_one_use_with_status_latency_and_reason() -> None:
    log, sent = _Log(), []

    async def send(message: Any) -> None:
        sent.append(message)

    gate = TokenGate(quota=LocalQuota(), log=log, client_address=ClientIp())
    scope = {"method": "POST", "path": "/p", "client": ("10.0.0.1", 1), "headers": [(b"user-agent", b"ua")]}
    principal = _principal(rules=rules(networks=(ip_network("10.0.0.0/8"),), max_uses=1))

    allowed = gate.recorder(send, time.perf_counter())
    gate.admit(principal, scope, allowed)
    await gate.count(principal, allowed)
    await allowed({"type": "http.response.start", "status": 200, "headers": []})
    await allowed({"type": "http.response.body", "body": b""})
    allowed.close()  # already recorded: nothing more

    refused = gate.recorder(send, time.perf_counter())
    gate.admit(principal, scope, refused)
    with pytest.raises(TokenRefused):
        await gate.count(principal, refused)
    refused.close()  # no response was sent: recorded as 500

    oauth = gate.recorder(send, time.perf_counter())
    gate.admit(_principal(client_id="app"), scope, oauth)  # no rules: not attached, not logged
    await oauth({"type": "http.response.start", "status": 200, "headers": []})

    assert [(u.status, u.block_reason, u.counted, u.ip, u.user_agent) for u in log.uses] == [
        (200, None, True, "10.0.0.1", "ua"),
        (500, REASON_QUOTA_EXHAUSTED, False, "10.0.0.1", "ua"),
    ]
    assert all(u.latency_ms >= 0 and u.method == "POST" and u.path == "/p" for u in log.uses)
    assert len(sent) == 3


@pytest.mark.anyio
async def test_the_writer_truncates_and_drops_the_oldest_when_full() -> None:
    writer = TokenUseWriter(None, max_queue=3)  # type: ignore[arg-type]  # nothing is written here
    written: list[TokenUse] = []
    counted: Counter[str] = Counter()

    async def capture(batch: list[TokenUse], owed: Counter[str]) -> None:
        written.extend(batch)
        counted.update(owed)

    writer._write = capture  # type: ignore[method-assign]
    for n in range(5):
        writer.record(TokenUse(f"t{n}", 0, "GET", "/", "1.2.3.4", "x" * 2000, 200, 1.0, None, True))
    assert writer.dropped == 2
    await writer.flush()
    assert [u.token_id for u in written] == ["t2", "t3", "t4"]
    assert all(len(u.user_agent) == 512 for u in written)
    assert counted == Counter({f"t{n}": 1 for n in range(5)})  # the dropped rows' uses still count


@pytest.mark.anyio
async def test_counted_uses_survive_a_failed_write_and_go_with_the_next() -> None:
    """A token's `max_uses` is read back from its stored count after a restart: a write that failed
    (the store was slow, or down) must not make the count fall behind."""
    writer = TokenUseWriter(None)  # type: ignore[arg-type]  # nothing is written here
    counted: Counter[str] = Counter()
    down = True

    async def write(batch: list[TokenUse], owed: Counter[str]) -> None:
        if down:
            raise ConnectionResetError("the store went away")
        counted.update(owed)

    writer._write = write  # type: ignore[method-assign]
    for counts in (True, True, False):  # a refused use is logged, not counted
        writer.record(TokenUse("t1", 0, "POST", "/", "1.2.3.4", "ua", 200, 1.0, None, counts))
    await writer.flush()
    assert writer.lost == 3 and counted == Counter()
    down = False
    await writer.aclose()  # nothing queued now (a shutdown, say): the counts go alone
    assert counted == Counter({"t1": 2})
    await writer.flush()
    assert counted == Counter({"t1": 2})  # once


# --- the client address, pure -----------------------------------------------------------------

PROXIES = (ip_network("10.0.0.0/8"), ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.1", ["203.0.113.7"], "198.51.100.1"),  # untrusted peer: its header is ignored
        ("10.0.0.1", [], "10.0.0.1"),  # a proxy's own request
        ("10.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("10.0.0.1", ["1.1.1.1, 203.0.113.7"], "203.0.113.7"),  # left of the client: its own claims
        ("10.0.0.1", ["203.0.113.7, 10.0.0.2"], "203.0.113.7"),  # trusted hops skipped from the right
        ("10.0.0.1", ["203.0.113.7", "10.0.0.2"], "203.0.113.7"),  # several header lines, in order
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # all trusted: the leftmost
        ("10.0.0.1", ["203.0.113.7, garbage"], "10.0.0.1"),  # malformed: stop at the last trusted hop
        ("10.0.0.1", ["203.0.113.7, garbage, 10.0.0.2"], "10.0.0.2"),
        ("10.0.0.1", ["203.0.113.7,"], "10.0.0.1"),  # an empty entry is malformed too
        ("10.0.0.1", ["203.0.113.7:4711"], "203.0.113.7"),
        ("10.0.0.1", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("fd00::1", ["2001:db8::5"], "2001:db8::5"),
        ("::ffff:10.0.0.1", ["203.0.113.7"], "203.0.113.7"),  # a dual-stack socket's IPv4 peer
        ("testclient", ["203.0.113.7"], "testclient"),  # not an IP peer: nothing to trust
    ],
)
def test_client_address(peer: str, forwarded: list[str], expected: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected


def test_client_address_without_trusted_proxies_is_the_peer() -> None:
    assert client_address("10.0.0.1", ["203.0.113.7"], ()) == "10.0.0.1"
    resolver = ClientIp()
    scope = {"client": ("127.0.0.1", 5), "headers": [(b"x-forwarded-for", b"203.0.113.7")]}
    assert resolver(scope) == "127.0.0.1"
    assert resolver({"client": None, "headers": []}) == ""
    trusting = ClientIp(["127.0.0.0/8"])
    assert trusting(scope) == "203.0.113.7"


def test_a_long_chain_of_trusted_hops_stops_at_a_bound() -> None:
    chain = ", ".join(["203.0.113.7"] + ["10.0.0.9"] * 40)
    assert client_address("10.0.0.1", [chain], PROXIES) == "10.0.0.9"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4 ", "1.2.3.4"),
        ("1.2.3.4:80", "1.2.3.4"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:80", "2001:db8::1"),
        ("1.2.3.4:http", None),
        ("[2001:db8::1", None),
        ("[2001:db8::1]x", None),
        ("unknown", None),
        ("", None),
    ],
)
def test_parse_hop(text: str, parsed: str | None) -> None:
    hop = parse_hop(text)
    assert (None if hop is None else str(hop)) == parsed
