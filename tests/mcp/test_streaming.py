"""What a proxy must carry both ways: progress, cancellation, list_changed."""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import httpx
import mcp_types as mt
import pytest

from tests.harness import STDIO_INVENTORY, Bastion, eventually, origin_process

pytestmark = pytest.mark.anyio

PROBE = [sys.executable, "-m", "tests.origins.probe"]


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_progress_from_the_origin_reaches_the_client_under_its_own_token(bastion: Bastion, mode: str) -> None:
    bastion.add_origin("local", command=STDIO_INVENTORY)
    bastion.publish_server("prog", {"origin": "local", "items": ["slow_count"]})
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with bastion.client("prog", bastion.token("prog"), mode=mode) as client:
        result = await client.call_tool("slow_count", {"n": 4}, progress_callback=on_progress)
    assert not result.is_error
    assert seen == [(1.0, 4.0), (2.0, 4.0), (3.0, 4.0), (4.0, 4.0)]


async def test_progress_passes_through_an_http_origin_too(bastion: Bastion) -> None:
    with origin_process() as url:
        bastion.add_origin("web", url=url)
        bastion.publish_server("webprog", {"origin": "web", "items": ["slow_count"]})
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        async with bastion.client("webprog", bastion.token("webprog")) as client:
            await client.call_tool("slow_count", {"n": 3}, progress_callback=on_progress)
        assert seen == [1.0, 2.0, 3.0]


async def test_the_origins_notifications_during_a_call_pass_dlp_and_the_injection_check(bastion: Bastion) -> None:
    """Progress (the SDK origin) and log messages on a call's reply stream (a hand-written one):
    secrets redacted, a line aimed at the model withheld (`injection: block`), other
    notifications not relayed, and each decision in the call's audit record."""
    bastion.ok("PUT", "/api/policies/inspect", json={"settings": {"injection": "block"}})
    messages: list[str | None] = []
    logged: list[Any] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message)

    async def on_log(params: Any) -> None:
        logged.append(params.data)

    with origin_process("tests.origins.probe") as probe, origin_process("tests.origins.faulty") as faulty:
        bastion.add_origin("probe", url=probe)
        bastion.add_origin("faulty", url=faulty)
        bastion.publish_server(
            "chat", {"origin": "probe", "items": ["chatty"]}, {"origin": "faulty", "items": ["chatty"], "prefix": "f_"}
        )
        async with bastion.client("chat", bastion.token("chat"), logging_callback=on_log) as client:
            first = await client.call_tool("chatty", {}, progress_callback=on_progress)
            second = await client.call_tool("f_chatty", {}, progress_callback=on_progress)
    assert first.content[0].text == second.content[0].text == "chatted"  # type: ignore[union-attr]
    assert messages == ["found key [REDACTED:aws_access_key]", "done"]
    assert logged == ["half way, key [REDACTED:aws_access_key]"]  # the line aimed at the model was withheld
    records = bastion.ok("GET", "/api/audit/records", params={"kind": "mcp.request"})
    for target in ("chatty", "f_chatty"):
        [record] = [r for r in records if r["target"] == target]
        stages = {(d["stage"], d["action"]) for d in record["detail"]["pipeline"]}
        assert ("dlp", "modify") in stages, stages
    assert ("inspect", "alert") in {
        (d["stage"], d["action"]) for r in records if r["target"] == "f_chatty" for d in r["detail"]["pipeline"]
    }


async def _probe_status(client: Any) -> dict[str, int]:
    result = await client.call_tool("status", {})
    return json.loads(result.content[0].text)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_cancelling_a_call_cancels_it_at_the_origin(bastion: Bastion, mode: str) -> None:
    bastion.add_origin("probe", command=PROBE)
    bastion.publish_server("cancel", {"origin": "probe", "items": ["wait", "status"]})
    async with bastion.client("cancel", bastion.token("cancel"), mode=mode) as client:
        await client.list_tools()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            pass

        with anyio.move_on_after(0.5):
            await client.call_tool("wait", {"seconds": 20}, progress_callback=on_progress)

        async def origin_saw_the_cancel() -> bool:
            return (await _probe_status(client))["cancelled"] >= 1

        await eventually(origin_saw_the_cancel)
        assert await _probe_status(client) == {"started": 1, "cancelled": 1, "finished": 0}


async def test_a_2026_client_that_closes_its_connection_cancels_a_plain_json_call(bastion: Bastion) -> None:
    """2026-07-28 has no notifications/cancelled over HTTP: closing the response is the cancellation,
    also for a call answered as plain JSON (no progress token, no event stream)."""
    bastion.add_origin("probe", command=PROBE)
    bastion.publish_server("gone", {"origin": "probe", "items": ["wait", "status"]})
    meta = {mt.PROTOCOL_VERSION_META_KEY: "2026-07-28", mt.CLIENT_CAPABILITIES_META_KEY: {}}
    headers = {
        "authorization": f"Bearer {bastion.token('gone')}",
        "accept": "application/json",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "wait",
    }
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "wait", "arguments": {"seconds": 20}, "_meta": meta},
    }
    async with httpx.AsyncClient(timeout=30) as http:
        with anyio.move_on_after(0.5):  # the client gives up: httpx closes the connection
            await http.post(bastion.mcp_url("gone"), json=body, headers=headers)
    async with bastion.client("gone", bastion.token("gone"), mode="2026-07-28") as client:

        async def origin_saw_the_cancel() -> bool:
            return (await _probe_status(client))["cancelled"] >= 1

        await eventually(origin_saw_the_cancel)
        assert await _probe_status(client) == {"started": 1, "cancelled": 1, "finished": 0}


async def test_a_2026_call_with_a_request_pipelined_behind_it_is_cancelled_too_when_the_client_leaves(
    bastion: Bastion,
) -> None:
    """HTTP/1.1 pipelining: a second request sent on the connection before the first was answered waits
    behind it. Closing the connection cancels the one being answered all the same."""
    bastion.add_origin("probe", command=PROBE)
    bastion.publish_server("piped", {"origin": "probe", "items": ["wait", "status"]})
    token = bastion.token("piped")
    meta = {mt.PROTOCOL_VERSION_META_KEY: "2026-07-28", mt.CLIENT_CAPABILITIES_META_KEY: {}}

    def request(request_id: int, seconds: int) -> bytes:
        params = {"name": "wait", "arguments": {"seconds": seconds}, "_meta": meta}
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}).encode()
        head = (
            "POST /servers/piped/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nAccept: application/json, text/event-stream\r\n"
            "Content-Type: application/json\r\nMcp-Protocol-Version: 2026-07-28\r\n"
            f"Mcp-Method: tools/call\r\nMcp-Name: wait\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    url = httpx.URL(bastion.base_url)
    assert url.port is not None
    async with await anyio.connect_tcp(url.host, url.port) as connection:
        await connection.send(request(1, 20) + request(2, 20))  # both at once: the second waits its turn
        await anyio.sleep(0.5)
    async with bastion.client("piped", token, mode="2026-07-28") as client:

        async def origin_saw_the_cancel() -> bool:
            return (await _probe_status(client))["cancelled"] >= 1

        await eventually(origin_saw_the_cancel)
        assert await _probe_status(client) == {"started": 1, "cancelled": 1, "finished": 0}


async def test_a_call_cancelled_after_its_event_stream_began_ends_that_stream_cleanly(bastion: Bastion) -> None:
    """The stream's response had started: the cancellation ends its body, and sends no second response
    (which the HTTP server refused, cutting the connection mid-stream)."""
    bastion.add_origin("probe", command=PROBE)
    bastion.publish_server("cut", {"origin": "probe", "items": ["wait"]})
    headers = {
        "authorization": f"Bearer {bastion.token('cut')}",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    async with httpx.AsyncClient(base_url=bastion.base_url, headers=headers, timeout=30) as http:
        opened = await http.post(
            "/servers/cut/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}
        )
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        await http.post(
            "/servers/cut/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
        )
        call = {"name": "wait", "arguments": {"seconds": 20}, "_meta": {"progressToken": 7}}
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call}
        with anyio.fail_after(10):
            async with http.stream("POST", "/servers/cut/mcp", json=body, headers=session) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}}
                assert (await http.post("/servers/cut/mcp", json=cancel, headers=session)).status_code == 202
                events = [line async for line in stream.aiter_lines() if line.startswith("data:")]
        assert not any('"result"' in event for event in events)  # a cancelled request gets no answer
        ping = await http.post("/servers/cut/mcp", json={"jsonrpc": "2.0", "id": 3, "method": "ping"}, headers=session)
        assert ping.json()["result"] == {}


async def test_list_changed_reaches_the_client_when_an_item_is_disabled(bastion: Bastion) -> None:
    bastion.add_origin("local", command=STDIO_INVENTORY)
    server = bastion.publish_server("changes", {"origin": "local", "items": ["list_stock", "get_order"]})
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, mt.ToolListChangedNotification):
            changed.set()

    async with bastion.client("changes", bastion.token("changes"), message_handler=on_message) as client:
        await client.list_tools()
        item = next(i for i in server["items"] if i["name"] == "get_order")

        async def stream_is_open() -> bool:  # the client opens its GET stream after initialize
            return any(s.outbox for s in bastion.services.sessions.of_server(server["id"]))

        await eventually(stream_is_open)
        await anyio.to_thread.run_sync(
            lambda: bastion.ok("PATCH", f"/api/servers/{server['id']}/items/{item['id']}", json={"enabled": False})
        )
        with anyio.fail_after(10):
            await changed.wait()
        assert [t.name for t in (await client.list_tools()).tools] == ["list_stock"]


async def test_list_changed_reaches_a_2026_client_on_its_listen_stream(bastion: Bastion) -> None:
    bastion.add_origin("local", command=STDIO_INVENTORY)
    server = bastion.publish_server("listen", {"origin": "local", "items": ["list_stock", "get_order"]})
    item = next(i for i in server["items"] if i["name"] == "get_order")
    async with bastion.client("listen", bastion.token("listen"), mode="2026-07-28") as client:
        async with client.listen(tools_list_changed=True) as subscription:
            await anyio.to_thread.run_sync(
                lambda: bastion.ok("PATCH", f"/api/servers/{server['id']}/items/{item['id']}", json={"enabled": False})
            )
            received = []
            with anyio.fail_after(10):
                async for event in subscription:
                    received.append(event)
                    break
            assert [type(e).__name__ for e in received] == ["ToolsListChanged"]
        assert [t.name for t in (await client.list_tools()).tools] == ["list_stock"]


async def test_origins_are_spoken_to_in_the_newest_revision_each_supports(bastion: Bastion) -> None:
    modern = bastion.add_origin("local", command=STDIO_INVENTORY)
    assert modern["protocol_version"] == "2026-07-28"
    with origin_process() as url:
        modern_http = bastion.add_origin("web", url=url)
        assert modern_http["protocol_version"] == "2026-07-28"
        bastion.publish_server("eras", {"origin": "web", "items": ["get_order"]})
        async with bastion.client("eras", bastion.token("eras"), mode="legacy") as client:
            assert not (await client.call_tool("get_order", {"order_id": "ORD-1001"})).is_error
    with origin_process("tests.origins.faulty") as url:
        legacy = bastion.add_origin("old", url=url)
    assert legacy["protocol_version"] == "2025-11-25"


async def test_origin_list_changed_triggers_rediscovery(bastion: Bastion) -> None:
    before = {i["name"] for i in bastion.add_origin("local", command=STDIO_INVENTORY)["items"]}
    bastion.publish_server("grow", {"origin": "local", "items": ["add_feature_tool"]})
    async with bastion.client("grow", bastion.token("grow")) as client:
        await client.call_tool("add_feature_tool", {})

    async def new_tool_discovered() -> bool:
        origin = await anyio.to_thread.run_sync(lambda: bastion.ok("GET", "/api/origins/local"))
        return bool({i["name"] for i in origin["items"]} - before)

    await eventually(new_tool_discovered)


async def test_under_the_default_alert_a_message_aimed_at_the_model_is_relayed_and_recorded(bastion: Bastion) -> None:
    logged: list[Any] = []

    async def on_log(params: Any) -> None:
        logged.append(params.data)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        return None

    with origin_process("tests.origins.faulty") as faulty:
        bastion.add_origin("faulty", url=faulty)
        bastion.publish_server("chat-alert", {"origin": "faulty", "items": ["chatty"]})
        async with bastion.client("chat-alert", bastion.token("chat-alert"), logging_callback=on_log) as client:
            await client.call_tool("chatty", {}, progress_callback=on_progress)
    assert len(logged) == 2 and logged[0].startswith("Ignore all previous instructions")
    [record] = [
        r for r in bastion.ok("GET", "/api/audit/records", params={"kind": "mcp.request"}) if r["target"] == "chatty"
    ]
    reasons = [d.get("reason", "") for d in record["detail"]["pipeline"] if d["stage"] == "inspect"]
    assert any("relayed with instructions aimed at the model" in reason for reason in reasons), reasons
