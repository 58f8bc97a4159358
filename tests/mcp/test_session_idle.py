"""A session's idle timeout frees one replica's state, but never while the client holds a stream open:
a client that only waits for notifications is not idle."""

from __future__ import annotations

import os
import time

import anyio
import pytest

from bastion.mcp.sessions import SessionStore

pytestmark = pytest.mark.anyio

IDLE = 0.05


class _NoEnds:
    """No session was ended by DELETE anywhere (the shared record is the store's, tested elsewhere)."""

    async def record(self, nonce: str, expires_at: float) -> None:
        raise AssertionError("nothing is deleted here")

    async def since(self, mark: float | None) -> tuple[dict[str, float], float | None]:
        return {}, time.time()


async def test_a_session_with_an_open_stream_outlives_the_idle_timeout_and_ends_after_it_closes() -> None:
    store = SessionStore(idle_seconds=IDLE, lifetime_seconds=3600, ends=_NoEnds())
    await store.start([os.urandom(32)])

    def opened() -> str:
        return store.create(server_id="s", token_id="t", protocol_version="2025-11-25", capabilities={}).id

    waiting = opened()
    session = store.get(waiting, server_id="s", token_id="t")
    assert session is not None
    inbox = session.open_stream()  # the client's GET stream
    await anyio.sleep(IDLE * 2)
    opened()  # each new session sweeps the idle ones
    assert store.get(waiting, server_id="s", token_id="t") is session  # the same local state, stream and all
    session.push(b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}')
    assert inbox.receive_nowait().startswith(b'{"jsonrpc"')
    inbox.close()  # the client went away
    await anyio.sleep(IDLE * 2)
    opened()
    assert store.count() == 1  # only the newest: the waiting one and the other idle one were freed
