"""A session's idle timeout frees one replica's state, but never while the client holds a stream open:
a client that only waits for notifications is not idle."""

from __future__ import annotations

import anyio
import pytest

from bastion.mcp.sessions import Session
from tests.mcp.session_kit import new_session, started_store

pytestmark = pytest.mark.anyio

IDLE = 0.05


async def test_a_session_with_an_open_stream_outlives_the_idle_timeout_and_ends_after_it_closes() -> None:
    store = await started_store(IDLE)
    waiting = new_session(store)
    session = store.get(waiting, server_id="s", token_id="t")
    assert session is not None
    inbox = session.open_stream()  # the client's GET stream
    await anyio.sleep(IDLE * 2)
    new_session(store)  # each new session sweeps the idle ones
    assert store.get(waiting, server_id="s", token_id="t") is session  # the same local state, stream and all
    session.push(b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}')
    assert inbox.receive_nowait().startswith(b'{"jsonrpc"')
    inbox.close()  # the client went away
    await anyio.sleep(IDLE * 2)
    new_session(store)
    assert store.count() == 1  # only the newest: the waiting one and the other idle one were freed


async def test_a_flood_of_sessions_keeps_the_local_table_bounded_and_loses_no_session() -> None:
    """Every `initialize` makes a session: past the bound, the least recently used that hold nothing
    are freed (they reopen from their sealed id); one with an open stream, or used lately, stays."""
    store = await started_store(max_local=16)

    def local(session_id: str, owner: str = "t") -> Session | None:
        return store.get(session_id, server_id="s", token_id=owner)

    streaming, used, unused = new_session(store), new_session(store), new_session(store)
    listening, recent, old = local(streaming), local(used), local(unused)
    assert listening is not None and recent is not None and old is not None
    inbox = listening.open_stream()
    for _ in range(13):
        new_session(store)
    assert store.count() == 16
    assert local(used) is recent  # used again: now the most recently used
    new_session(store)  # one past the bound: the least recently used holding nothing goes
    assert store.count() == 16 and local(used) is recent
    reopened = local(unused)  # freed, and reopened from its seal: the id still works
    assert reopened is not None and reopened is not old and reopened.protocol_version == "2025-11-25"
    flood = [new_session(store) for _ in range(200)]
    assert store.count() == 16
    assert local(streaming) is listening and listening.streaming  # its stream is still here
    assert local(flood[0]) is not None and local(flood[-1]) is not None
    assert local(unused, owner="someone else") is None  # still bound to its owner
    inbox.close()
    store.close(streaming)


async def test_a_new_session_is_kept_even_when_every_older_one_holds_a_stream() -> None:
    """Past the bound with nothing to free, the table grows (each stream is an open connection):
    the session just made was freed at once before, and its stream saw no notifications."""
    store = await started_store(max_local=16)
    listening = []
    for _ in range(16):
        session = store.create(server_id="s", token_id="t", protocol_version="2025-11-25", capabilities={})
        listening.append((session, session.open_stream()))
    newest = store.create(server_id="s", token_id="t", protocol_version="2025-11-25", capabilities={})
    inbox = newest.open_stream()
    assert store.count() == 17 and newest in store.of_server("s")
    newest.notify("notifications/tools/list_changed")
    assert b"list_changed" in inbox.receive_nowait()
    for session, stream in [*listening, (newest, inbox)]:
        stream.close()
        store.close(session.id)


async def test_a_session_with_a_call_under_way_outlives_the_idle_timeout() -> None:
    """A call running (or a question waiting for its person) past the idle limit is not idleness:
    freeing the session then cancelled it."""
    store = await started_store(IDLE)
    busy = new_session(store)
    session = store.get(busy, server_id="s", token_id="t")
    assert session is not None
    new_session(store)  # used after the busy one, then left: idle
    with anyio.CancelScope() as call:
        session.in_flight[1] = call  # what the transport does while it answers request 1
        await anyio.sleep(IDLE * 2)
        new_session(store)  # each new session sweeps the idle ones
        assert store.get(busy, server_id="s", token_id="t") is session
        assert not call.cancel_called
        assert store.count() == 2  # the busy one was stepped over, and the idle one after it freed
        del session.in_flight[1]
    await anyio.sleep(IDLE * 2)
    new_session(store)
    assert store.count() == 1  # idle once the call ended: freed like any other
