"""A stdio origin's process as Bastion manages it, with real processes: its log is read however it
writes it, what it starts goes with it, and a handshake that always fails is retried with backoff."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from bastion.catalog.snapshot import OriginSpec, Snapshot
from bastion.errors import UpstreamError, UpstreamUnavailable
from bastion.mcp.upstream.base import OriginGuard
from bastion.mcp.upstream.commands import StdioPolicy
from bastion.mcp.upstream.pool import OriginPool
from bastion.mcp.upstream.stdio import StdioOriginClient
from bastion.net.egress import EgressPolicy
from tests.harness import eventually

pytestmark = pytest.mark.anyio

PROBE = (sys.executable, "-m", "tests.origins.probe")


async def _ignore(*_args: Any) -> None:
    return None


def _guard(command: tuple[str, ...]) -> OriginGuard:
    return OriginGuard(egress=EgressPolicy(), stdio=StdioPolicy(allowed=(command,)))


def _client(command: tuple[str, ...], tasks: Any) -> StdioOriginClient:
    spec = OriginSpec("o1", "probe", "stdio", None, command, None)
    guard = _guard(command)
    return StdioOriginClient(spec, timeout=10, max_bytes=1_000_000, notify=_ignore, task_group=tasks, guard=guard)


@pytest.fixture
async def tasks() -> AsyncIterator[Any]:
    async with anyio.create_task_group() as group:
        yield group
        group.cancel_scope.cancel()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _call(client: StdioOriginClient, tool: str, **arguments: Any) -> dict[str, Any]:
    return await client.request("tools/call", {"name": tool, "arguments": arguments})


async def test_a_log_line_longer_than_any_buffer_does_not_wedge_the_origin(tasks: Any) -> None:
    client = _client(PROBE, tasks)
    try:
        with anyio.fail_after(15):
            said = await _call(client, "shout", kib=96)  # one 96 KiB line, then 768 KiB more
            assert said["content"][0]["text"] == "said"
            again = await _call(client, "status")  # and the origin still answers
        assert "started" in again["content"][0]["text"]
    finally:
        await client.aclose()


@pytest.mark.parametrize("ending", ["the origin dies", "Bastion closes it"])
async def test_what_the_origin_started_goes_with_it(tasks: Any, ending: str) -> None:
    client = _client(PROBE, tasks)
    try:
        reply = await _call(client, "spawn_sleeper")
        sleeper = int(reply["content"][0]["text"])
        assert not _gone(sleeper)
        if ending == "the origin dies":
            with pytest.raises(UpstreamError, match="exit code 3"):
                await _call(client, "crash")
        else:
            await client.aclose()
            # Closed for good: a holder calling again gets an error, not a process nobody would stop.
            with pytest.raises(UpstreamError, match="its connection was closed"):
                await _call(client, "status")

        async def reaped() -> bool:
            return _gone(sleeper)

        await eventually(reaped, deadline=5)
    finally:
        await client.aclose()


async def test_an_origin_whose_handshake_always_fails_is_restarted_with_backoff(tasks: Any, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    client = _client((sys.executable, "-m", "tests.origins.refuser", str(starts)), tasks)
    began = time.monotonic()
    try:
        for _ in range(4):
            with pytest.raises(UpstreamError, match="not today"):
                await _call(client, "anything")
    finally:
        await client.aclose()
    # Four starts, the last three each after a longer wait (0.1, 0.2, 0.4 s): not four at once.
    assert starts.read_text().count("started") == 4
    assert time.monotonic() - began >= 0.6


async def test_a_client_replaced_in_the_pool_by_a_changed_origin_is_closed_after_the_timeout(tasks: Any) -> None:
    """A request with a changed origin can reach the pool before the snapshot's listeners do: the
    client it replaces is closed once its calls have had their time, not left running for good."""
    pool = OriginPool(timeout=2.0, max_bytes=1_000_000, guard=_guard(PROBE))
    pool.attach(tasks)
    try:
        before = pool.client(OriginSpec("o1", "probe", "stdio", None, PROBE, None))
        first = int((await _call(before, "pid"))["content"][0]["text"])  # type: ignore[arg-type]
        after = pool.client(OriginSpec("o1", "probe", "stdio", None, PROBE, 5.0))  # its timeout changed
        assert after is not before and pool.count() == 1
        second = int((await _call(after, "pid"))["content"][0]["text"])  # type: ignore[arg-type]

        async def closed() -> bool:
            return _gone(first)

        await eventually(closed, deadline=10)
        assert not _gone(second)
    finally:
        await pool.aclose()


async def test_a_request_on_an_older_snapshot_gets_the_origin_as_configured_since(tasks: Any) -> None:
    """A request decided on a snapshot older than one the pool has seen, or than the client in it,
    uses the newer client: it never replaces it (the stdio process restarted, the old settings back)."""
    pool = OriginPool(timeout=2.0, max_bytes=1_000_000, guard=_guard(PROBE))
    pool.attach(tasks)
    old, new = (
        OriginSpec("o1", "probe", "stdio", None, PROBE, None),
        OriginSpec("o1", "probe", "stdio", None, PROBE, 5.0),
    )
    try:
        newer = pool.client(new, 8)  # a request on snapshot 8 got here before the pool's sync
        assert pool.client(old, 7) is newer
        await pool.sync(Snapshot.empty(), Snapshot(epoch=8, servers={}, origins={"o1": new}, tokens={}))
        assert pool.client(old, 7) is newer and pool.count() == 1  # gone from the pool: the one of snapshot 8
        # A sync for an older snapshot that runs late (listeners run outside the holder's lock) changes nothing.
        await pool.sync(Snapshot.empty(), Snapshot(epoch=7, servers={}, origins={"o1": old}, tokens={}))
        assert pool.client(new, 8) is newer and pool.count() == 1
        await pool.sync(Snapshot.empty(), Snapshot(epoch=9, servers={}, origins={}, tokens={}))
        with pytest.raises(UpstreamUnavailable, match="removed meanwhile"):
            pool.client(new, 8)
        assert pool.count() == 0
    finally:
        await pool.aclose()
