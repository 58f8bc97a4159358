"""The audit trail of a running gateway: one correlation id from the client's request through the
upstream call to the export, and no acknowledged call lost when Bastion is killed under load."""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from bastion.audit.chain import digest_arguments
from bastion.store.db import Database
from bastion.store.repos.audit import verify_chain
from tests.harness import Bastion, eventually, inventory_gateway, origin_process
from tests.oauth.flows import own_database
from tests.replicas.cluster import TOOL, mcp_call, replica_environment, start_replica

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with inventory_gateway(tmp_path_factory.mktemp("trail")) as bastion:
        yield bastion


def _call(
    gw: Bastion, token: str, name: str, arguments: dict[str, Any], trace_id: str, slug: str = "demo"
) -> httpx.Response:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": meta},
    }
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": name,
        "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
    }
    return gw.http.post(f"/servers/{slug}/mcp", json=body, headers=headers)


async def test_one_correlation_id_runs_from_the_request_through_the_upstream_call_to_the_export(gw: Bastion) -> None:
    token, trace_id = gw.token("demo"), secrets.token_hex(16)
    arguments = {"order_id": "ORD-1001"}
    answered = _call(gw, token, "get_order", arguments, trace_id)
    assert answered.status_code == 200 and "result" in answered.json(), answered.text
    assert answered.headers["x-request-id"] == trace_id  # the client's trace id is the correlation id

    records: list[dict[str, Any]] = []

    async def stored() -> bool:  # journaled before the answer; in the store within a fraction of a second
        records[:] = gw.ok("GET", f"/api/audit/records?correlation_id={trace_id}")
        return len(records) == 2

    await eventually(stored)
    by_kind = {record["kind"]: record for record in records}
    assert set(by_kind) == {"mcp.request", "upstream.call"}, records
    inbound, upstream = by_kind["mcp.request"], by_kind["upstream.call"]
    assert inbound["server"] == "demo" and inbound["target"] == "get_order" and inbound["decision"] == "allow"
    assert upstream["origin"] == "inventory" and upstream["status"] == "ok" and upstream["latency_us"] > 0
    # The arguments are kept as a digest only; the token never.
    assert inbound["args_digest"] == digest_arguments(arguments) and "ORD-1001" not in json.dumps(records)
    assert token not in json.dumps(records) and inbound["principal"]

    refused = _call(gw, token, "no_such_tool", {}, trace_id)
    assert "error" in refused.json()
    lines: list[dict[str, Any]] = []

    async def exported() -> bool:
        answer = gw.http.get(
            f"/api/audit/export?correlation_id={trace_id}", headers={"authorization": f"Bearer {gw.admin_token}"}
        )
        assert answer.headers["content-type"].startswith("application/x-ndjson")
        lines[:] = [orjson.loads(line) for line in answer.text.splitlines()]
        return len(lines) == 3

    await eventually(exported)
    assert [(r["kind"], r["decision"]) for r in lines] == [
        ("upstream.call", "allow"),
        ("mcp.request", "allow"),
        ("mcp.request", "error"),
    ]
    async with own_database(gw) as db:
        checked, broken = await verify_chain(db, "default")
    assert broken is None and checked >= 3


async def test_the_export_cursor_returns_what_reached_the_chain_after_it(gw: Bastion) -> None:
    token = gw.token("demo")
    first, second = secrets.token_hex(16), secrets.token_hex(16)
    assert _call(gw, token, "get_order", {"order_id": "ORD-1001"}, first).status_code == 200

    def export(**params: Any) -> list[dict[str, Any]]:
        answer = gw.api("GET", "/api/audit/export", params=params)
        assert answer.status_code == 200, answer.text
        return [orjson.loads(line) for line in answer.text.splitlines()]

    async def stored(trace_id: str) -> bool:
        return len(export(correlation_id=trace_id)) == 2

    await eventually(lambda: stored(first))
    cursor = max(line["seq"] for line in export())
    assert _call(gw, token, "get_order", {"order_id": "ORD-1002"}, second).status_code == 200
    await eventually(lambda: stored(second))

    since = export(after_seq=cursor)
    assert second in {line["correlation_id"] for line in since}
    assert first not in {line["correlation_id"] for line in since}
    assert [line["seq"] for line in since] == list(range(cursor + 1, cursor + 1 + len(since)))
    page = gw.ok("GET", "/api/audit/records", params={"after_seq": cursor, "limit": 1})
    assert [r["seq"] for r in page] == [cursor + 1]  # a cursor's page: the first after it, not the newest
    pages = gw.ok("GET", "/api/audit/records", params={"after_seq": cursor})
    assert [r["seq"] for r in pages] == [line["seq"] for line in since]


async def test_requests_the_endpoint_answers_itself_are_in_the_trail_too(gw: Bastion) -> None:
    """A session's handshake, its notifications, its event stream and its end, and a refused HTTP
    method: each an inbound request, each with its record under its own correlation id."""
    token = gw.token("demo")
    base = {"authorization": f"Bearer {token}", "accept": "application/json, text/event-stream"}
    ids = {name: secrets.token_hex(16) for name in ("initialize", "initialized", "delete", "put")}

    def traced(name: str) -> dict[str, str]:
        return {**base, "traceparent": f"00-{ids[name]}-{secrets.token_hex(8)}-01"}

    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    opened = gw.http.post(
        "/servers/demo/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params},
        headers=traced("initialize"),
    )
    assert opened.status_code == 200, opened.text
    session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    notified = gw.http.post(
        "/servers/demo/mcp",
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers={**traced("initialized"), **session},
    )
    assert notified.status_code == 202
    assert gw.http.delete("/servers/demo/mcp", headers={**traced("delete"), **session}).status_code == 204
    refused = gw.http.put("/servers/demo/mcp", headers=traced("put"))
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, POST, DELETE"
    assert refused.json()["error"]["message"] == "HTTP PUT is not served here"
    expected = {
        "initialize": ("initialize", "allow"),
        "initialized": ("notifications/initialized", "allow"),
        "delete": ("session end (HTTP DELETE)", "allow"),
        "put": ("HTTP PUT", "error"),
    }
    for name, (method, decision) in expected.items():

        async def stored(trace: str = ids[name]) -> bool:
            return len(gw.ok("GET", f"/api/audit/records?correlation_id={trace}")) == 1

        await eventually(stored)
        [record] = gw.ok("GET", f"/api/audit/records?correlation_id={ids[name]}")
        assert (record["method"], record["decision"], record["server"]) == (method, decision, "demo"), record


async def test_a_call_refused_after_its_origin_answered_is_answered_once_its_record_is_durable(gw: Bastion) -> None:
    """The origin acted, then the client got an error (here the origin's own, relayed): like a
    success, the answer waits until its record is in the journal (or already in the store)."""
    with origin_process("tests.origins.faulty") as url:
        gw.add_origin("faulty-trail", url=url)
        gw.publish_server("faulty-trail", {"origin": "faulty-trail", "items": ["rpc_error"]})
        token, trace_id = gw.token("faulty-trail"), secrets.token_hex(16)
        answered = _call(gw, token, "rpc_error", {}, trace_id, slug="faulty-trail")
        assert answered.json()["error"]["code"] == -32050
        journal = gw.settings.audit_journal_path()
        journaled = any(
            trace_id in line and '"mcp.request"' in line
            for path in journal.glob("audit-journal-*.jsonl")
            for line in path.read_text(errors="replace").splitlines()
        )
        stored = any(r["kind"] == "mcp.request" for r in gw.ok("GET", f"/api/audit/records?correlation_id={trace_id}"))
    assert journaled or stored


async def test_no_route_edits_or_deletes_a_record(gw: Bastion) -> None:
    (record,) = gw.ok("GET", "/api/audit/records?limit=1")
    for method in ("PUT", "PATCH", "DELETE"):
        response = gw.http.request(
            method, f"/api/audit/records/{record['id']}", headers={"authorization": f"Bearer {gw.admin_token}"}
        )
        assert response.status_code in (404, 405)


async def test_killed_under_load_every_acknowledged_call_has_its_record(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/bastion.db"
    env = replica_environment(database)
    acknowledged: list[str] = []
    enough = anyio.Event()
    with origin_process() as inventory:
        replica = await start_replica("crash", env, tmp_path)
        body = {"name": "inventory", "transport": "http", "url": inventory}
        origin = await replica.ok("POST", "/api/origins", json=body)
        await replica.ok("POST", f"/api/origins/{origin['id']}/review", json={"decision": "approve"})
        server = await replica.ok("POST", "/api/servers", json={"slug": "demo", "title": "demo"})
        await replica.ok("POST", f"/api/servers/{server['id']}/compose", json={"origin": "inventory", "items": [TOOL]})
        await replica.ok("POST", f"/api/servers/{server['id']}/publish")
        token = (await replica.ok("POST", "/api/tokens", json={"name": "load", "servers": ["demo"]}))["token"]

        async def client(worker: int) -> None:
            for n in range(100_000):
                correlation = f"crash-{worker}-{n}"
                try:
                    answer = await mcp_call(
                        replica.http, replica.mcp_url("demo"), token, n, extra={"x-request-id": correlation}
                    )
                except httpx.TransportError:
                    return  # killed
                if answer.status_code == 200 and "result" in answer.json():
                    acknowledged.append(correlation)
                    if len(acknowledged) >= 150:
                        enough.set()

        async with anyio.create_task_group() as load:
            for worker in range(8):
                load.start_soon(client, worker)
            await enough.wait()
            replica.process.send_signal(signal.SIGKILL)  # mid-load: calls are in flight
        await replica.process.wait()
        await replica.http.aclose()

        again = await start_replica("restarted", env, tmp_path)  # writes the killed process's journal first
        missing: list[str] = []

        async def all_there() -> bool:  # the journal is written to the store as the restart begins
            exported = await again.http.get(
                "/api/audit/export?kind=mcp.request&decision=allow",
                headers={"authorization": f"Bearer {again.admin_token}"},
            )
            audited = {orjson.loads(line)["correlation_id"] for line in exported.text.splitlines()}
            missing[:] = [c for c in acknowledged if c not in audited]
            return not missing

        try:
            with contextlib.suppress(TimeoutError):
                await eventually(all_there)
        finally:
            await again.stop()
    assert len(acknowledged) >= 150 and not missing, f"{len(missing)} acknowledged calls without a record"
    db = Database(database)
    try:
        checked, broken = await verify_chain(db, "default")
    finally:
        await db.close()
    assert broken is None and checked >= len(acknowledged)
