"""Upstream faults become the client's clear error: never a hang, never a crash."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPError

from tests.harness import Bastion, eventually, free_port, origin_process, run_bastion
from tests.origins.faulty import LEAKED_KEY

pytestmark = pytest.mark.anyio


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Bastion]:
    with run_bastion(tmp_path, upstream_max_response_bytes=1024 * 1024) as bastion:
        yield bastion


async def _error_of(client: object, tool: str) -> str:
    with pytest.raises(MCPError) as caught:
        await client.call_tool(tool, {})  # type: ignore[attr-defined]
    return caught.value.error.message


async def test_an_origin_that_never_takes_the_handshakes_last_message_is_a_timeout_not_a_hang(gw: Bastion) -> None:
    """`notifications/initialized` is sent holding the lock every caller of the origin waits on:
    discovery (and every call) ends at the origin's timeout with its error."""
    with origin_process("tests.origins.faulty", "--hang-on-initialized") as url, anyio.fail_after(15):
        origin = await anyio.to_thread.run_sync(lambda: gw.add_origin("stalls", url=url, timeout_seconds=1.0))
    assert "did not take a notifications/initialized within 1 s" in str(origin["last_error"]), origin


async def test_a_session_the_origin_lost_for_one_call_leaves_the_others_calls_running(gw: Bastion) -> None:
    """A 404 for one call makes a new handshake, on the connections in use: a call another caller
    has under way on another connection ends as it would have (a full reconnect closed them all)."""
    with origin_process("tests.origins.faulty") as url:
        gw.add_origin("forgetful", url=url, timeout_seconds=5.0)
        gw.publish_server("forgetful", {"origin": "forgetful"})
        token = gw.token("forgetful")
        results: dict[str, Any] = {}
        async with gw.client("forgetful", token) as first, gw.client("forgetful", token) as second:
            await first.list_tools()

            async def slow_call() -> None:
                results["slow"] = await first.call_tool("takes_a_second", {})

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(slow_call)
                await anyio.sleep(0.3)
                assert "did not know the MCP session" in await _error_of(second, "lost_session")
        assert not results["slow"].is_error and results["slow"].content[0].text == "fine"


def test_an_origins_session_id_that_is_not_visible_ascii_is_a_protocol_error(gw: Bastion) -> None:
    """It would go back in a header on every request: spec, visible ASCII (0x21-0x7E) only."""
    with origin_process("tests.origins.faulty", "--session-id", "has space") as url:
        origin = gw.add_origin("odd-session", url=url, timeout_seconds=2.0)
    assert "not 1 to 256 visible ASCII characters" in str(origin["last_error"]), origin


async def test_each_misbehaving_reply_is_a_precise_error_and_the_origin_stays_usable(gw: Bastion) -> None:
    with origin_process("tests.origins.faulty") as url:
        gw.add_origin("faulty", url=url, timeout_seconds=1.0)
        gw.publish_server("faulty", {"origin": "faulty"})
        async with gw.client("faulty", gw.token("faulty")) as client:
            await client.list_tools()
            assert "not valid JSON" in await _error_of(client, "malformed")
            assert "more than 1048576 bytes" in await _error_of(client, "huge")
            with anyio.fail_after(5):
                assert "did not answer tools/call within 1s" in await _error_of(client, "slow")
            assert "malformed result" in await _error_of(client, "bad_result")
            assert "HTTP 500" in await _error_of(client, "http_500")
            assert "did not know the MCP session it had just opened" in await _error_of(client, "lost_session")
            with anyio.fail_after(5):  # the result is the answer, whatever the stream does after it
                lingered = await client.call_tool("lingers", {})
            assert lingered.content[0].text == "done"  # type: ignore[union-attr]
            with pytest.raises(MCPError) as relayed:
                await client.call_tool("rpc_error", {})
            assert relayed.value.error.code == -32050
            assert relayed.value.error.message == "inventory backend says no"
            with pytest.raises(MCPError) as leaky:  # relayed with its code, screened like a result
                await client.call_tool("leaky_error", {})
            assert leaky.value.error.code == -32051
            assert leaky.value.error.message == "backend refused key [REDACTED:aws_access_key]"
            assert leaky.value.error.data == {"key": "[REDACTED:aws_access_key]"}
            assert (await client.call_tool("ok", {})).content[0].text == "fine"  # type: ignore[union-attr]

    async def recorded() -> list[dict[str, object]]:
        records: list[dict[str, object]] = gw.ok("GET", "/api/audit/records", params={"target": "leaky_error"})
        return records

    async def both_stored() -> bool:
        return {r["kind"] for r in await recorded()} >= {"mcp.request", "upstream.call"}

    await eventually(both_stored)
    # The origin's own words are its content: the trail keeps its code, never its text (a key here).
    assert LEAKED_KEY not in json.dumps(await recorded())
    outcomes = {r["kind"]: r["reason"] for r in await recorded() if r["kind"] != "upstream.intent"}
    assert outcomes == {k: "the origin answered with error -32051" for k in ("mcp.request", "upstream.call")}


async def test_messages_no_origin_should_send_are_dropped_and_the_gateway_keeps_working(gw: Bastion) -> None:
    """Requests with an object or array id and a notification with a numeric method, on the origin's
    own stream and on a call's reply stream: dropped, while the call, the stream and the gateway's
    background work (here: the audit writer) go on."""
    with origin_process("tests.origins.faulty") as url:
        gw.add_origin("faulty", url=url, timeout_seconds=5.0)
        gw.publish_server("faulty", {"origin": "faulty"})
        async with gw.client("faulty", gw.token("faulty")) as client:
            await client.list_tools()  # the origin's GET stream is open, and has sent the odd messages
            result = await client.call_tool("odd_messages", {})
            assert result.content[0].text == "odd"  # type: ignore[union-attr]
            await anyio.sleep(0.3)
            assert (await client.call_tool("ok", {})).content[0].text == "fine"  # type: ignore[union-attr]

        async def stored() -> bool:
            records = gw.ok("GET", "/api/audit/records", params={"target": "ok"})
            return any(r["kind"] == "upstream.call" for r in records)

        await eventually(stored)  # the writers still run: their task group was not torn down


async def test_a_call_the_origin_took_and_dropped_is_repeated_only_when_the_tool_is_read_only(gw: Bastion) -> None:
    """The origin reads a call on a kept connection, then closes it unanswered. A read-only tool's
    call goes once more on a new connection; a tool that may change something is not sent twice:
    the client gets the error, and the origin saw the call once."""
    with origin_process("tests.origins.dropper") as url:
        gw.add_origin("dropper", url=url, timeout_seconds=5.0)
        gw.publish_server("dropper", {"origin": "dropper"})
        async with gw.client("dropper", gw.token("dropper")) as client:
            await client.call_tool("warm", {})  # a kept connection to the origin
            assert (await client.call_tool("read", {})).content[0].text == "done read"  # type: ignore[union-attr]
            await client.call_tool("warm", {})
            assert "unreachable" in await _error_of(client, "write")
            seen = json.loads((await client.call_tool("seen", {})).content[0].text)  # type: ignore[union-attr]
    assert (seen["read"], seen["write"]) == (2, 1)


async def test_unreachable_origin_fails_fast_with_a_clear_error(gw: Bastion) -> None:
    with origin_process() as url:
        gw.add_origin("gone", url=url)
        gw.publish_server("gone", {"origin": "gone", "items": ["list_stock"]})
    # the origin process has stopped: its port refuses connections now
    async with gw.client("gone", gw.token("gone")) as client:
        await client.list_tools()  # lists come from Bastion's catalog, not the origin
        with anyio.fail_after(5):
            message = await _error_of(client, "list_stock")
    assert "origin 'gone' is unreachable" in message


async def test_unreachable_origin_at_registration_is_recorded_not_fatal(gw: Bastion) -> None:
    created = gw.add_origin("nowhere", url=f"http://127.0.0.1:{free_port()}/mcp")
    assert created["items"] == []
    assert "unreachable" in created["last_error"]


async def test_a_stdio_origin_that_dies_mid_call_is_an_error_and_restarts_for_the_next_call(gw: Bastion) -> None:
    gw.add_origin("crashy", command=[sys.executable, "-m", "tests.origins.probe"])
    gw.publish_server("crashy", {"origin": "crashy", "items": ["crash", "status"]})
    async with gw.client("crashy", gw.token("crashy")) as client:
        await client.list_tools()
        with anyio.fail_after(10):
            message = await _error_of(client, "crash")
        assert "stdio process exited" in message and "exit code 3" in message
        with anyio.fail_after(10):
            status = await client.call_tool("status", {})
        assert not status.is_error


@pytest.fixture
def allows_missing(tmp_path: Path) -> Iterator[Bastion]:
    """The operator allowlisted an executable that is not installed."""
    with run_bastion(tmp_path, stdio_commands=[["/nonexistent/bin/origin"]]) as bastion:
        yield bastion


async def test_a_stdio_origin_that_cannot_start_is_a_clear_error(allows_missing: Bastion) -> None:
    created = allows_missing.add_origin("missing", command=["/nonexistent/bin/origin"])
    assert "cannot start '/nonexistent/bin/origin'" in created["last_error"]
