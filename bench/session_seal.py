"""What sealed MCP session ids cost per request: `python -m bench.session_seal`.

A replica that holds the session finds it by id (a dict lookup, no cryptography).
A replica that meets the id for the first time (or after idling it out) opens
the seal: base64url decoding and one AES-256-GCM decryption, plus building the
local state. A forged id costs one failed decryption per key. Printed as
microseconds per operation, the best of five rounds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import anyio

from bastion.mcp.session_seal import SessionSeal
from bastion.mcp.sessions import SessionStore

_ROUNDS = 5
_N = 20_000
SERVER, OWNER = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"


class _NoEnds:
    """A store with no DELETEs recorded: what the hot path sees almost always."""

    async def record(self, nonce: str, expires_at: float) -> None:
        return None

    async def since(self, mark: float | None) -> tuple[dict[str, float], float | None]:
        return {}, mark


def _best_us(operation: Callable[[int], object], n: int = _N) -> float:
    best = float("inf")
    for _ in range(_ROUNDS):
        start = time.perf_counter()
        for i in range(n):
            operation(i)
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


async def _store(keys: list[bytes]) -> SessionStore:
    store = SessionStore(idle_seconds=3600, lifetime_seconds=86_400, ends=_NoEnds())
    await store.start(keys)
    return store


def main() -> None:
    key, old_key = os.urandom(32), os.urandom(32)
    seal = SessionSeal([key])
    rotated = SessionSeal([os.urandom(32), old_key])

    def sealed(sealer: SessionSeal) -> str:
        return sealer.seal(
            server_id=SERVER, owner=OWNER, protocol_version="2025-11-25", capabilities=[], issued_at=int(time.time())
        )[0]

    session_id, old_id = sealed(seal), sealed(SessionSeal([old_key]))
    forged = session_id[:30] + ("A" if session_id[30] != "A" else "B") + session_id[31:]

    holder = anyio.run(_store, [key])
    held = holder.create(server_id=SERVER, token_id=OWNER, protocol_version="2025-11-25", capabilities={})
    stranger = anyio.run(_store, [key])

    def first_sight(_: int) -> object:
        found = stranger.get(session_id, server_id=SERVER, token_id=OWNER)
        stranger.close(session_id)  # so that the next lookup is a first sight again
        return found

    rows = [
        ("seal a new id (initialize)", _best_us(lambda _: sealed(seal))),
        ("open an id", _best_us(lambda _: seal.open(session_id, server_id=SERVER, owner=OWNER))),
        ("open an id under the second key", _best_us(lambda _: rotated.open(old_id, server_id=SERVER, owner=OWNER))),
        ("refuse a forged id (2 keys)", _best_us(lambda _: rotated.open(forged, server_id=SERVER, owner=OWNER))),
        ("get: replica holds the session", _best_us(lambda _: holder.get(held.id, server_id=SERVER, token_id=OWNER))),
        ("get: first sight on this replica", _best_us(first_sight)),
    ]
    print(f"session id: {len(session_id)} characters")
    for label, micros in rows:
        print(f"{label:<36} {micros:7.2f} µs")


if __name__ == "__main__":
    main()
