"""Helpers of the tests that drive a `SessionStore` directly: a started store on this replica alone,
and a new session in it."""

from __future__ import annotations

import os
import time

from bastion.mcp.sessions import SessionStore

__all__ = ["NoEnds", "new_session", "started_store"]


class NoEnds:
    """No session was ended by DELETE anywhere (the shared record is the store's, tested elsewhere)."""

    async def record(self, nonce: str, expires_at: float) -> None:
        raise AssertionError("nothing is deleted here")

    async def since(self, mark: float | None) -> tuple[dict[str, float], float | None]:
        return {}, time.time()


async def started_store(idle_seconds: float = 3600, *, max_local: int | None = None) -> SessionStore:
    extra = {} if max_local is None else {"max_local": max_local}
    store = SessionStore(idle_seconds=idle_seconds, lifetime_seconds=3600, ends=NoEnds(), **extra)
    await store.start([os.urandom(32)])
    return store


def new_session(store: SessionStore, owner: str = "t", server: str = "s") -> str:
    """A handshake-era session of `owner` on `server`; its id."""
    return store.create(server_id=server, token_id=owner, protocol_version="2025-11-25", capabilities={}).id
