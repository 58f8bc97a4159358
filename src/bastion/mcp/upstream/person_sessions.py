"""The MCP sessions a handshake-era HTTP origin opened for each person, when it takes a per-person
credential (minted JWTs, people's own OAuth tokens).

Why one per person: the spec asks servers to bind a session to the user who opened it, and the
SDK's session manager does (a session used with another principal's token is "not found"): one
session shared by everyone, opened with the gateway's own credential, would be refused to every
person. The gateway's own requests (the handshake, discovery, the notification stream) keep the
origin's session; each person's calls run in the one opened with their credential.
"""

from __future__ import annotations

from collections import OrderedDict

import anyio

from bastion.mcp.upstream.base import OnBehalf

__all__ = ["PersonSessions", "person_of"]

Person = tuple[str, str]  # (tenant id, user id)


def person_of(who: OnBehalf) -> Person:
    return who.tenant_id, who.user_id


class PersonSessions:
    """Session ids by person, the least recently used forgotten past `limit` (the origin ends idle
    sessions itself; a forgotten one is opened again when its person calls). "" stands for an
    origin that answered a person's initialize without a session id: nothing to send back.

    A person's handshake runs under their lock (`lock`), which stays theirs while anyone may hold
    or wait on it: two handshakes of one person never overlap, so what one was answered
    (`started`) is read by that one alone (`opened`), whatever happens to the open sessions
    meanwhile (`lost`, `clear`)."""

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit
        self._ids: OrderedDict[Person, str] = OrderedDict()
        self._locks: dict[Person, anyio.Lock] = {}
        self._started: dict[Person, str] = {}  # the origin named it; the handshake has not ended

    def get(self, person: Person) -> str | None:
        """`person`'s session, once its handshake has ended."""
        session = self._ids.get(person)
        if session is not None:
            self._ids.move_to_end(person)
        return session

    def sent_with(self, person: Person) -> str | None:
        """The session id `person`'s messages carry: their open session, or the one being opened
        (its `notifications/initialized`)."""
        return self._ids.get(person) or self._started.get(person) or None

    def lock(self, person: Person) -> anyio.Lock:
        """Held while `person`'s session is opened: their concurrent first calls open one."""
        return self._locks.setdefault(person, anyio.Lock())

    def begin(self, person: Person) -> None:
        """`person`'s handshake starts (under their lock): one that did not end named nothing."""
        self._started.pop(person, None)

    def started(self, person: Person, session: str) -> None:
        """The origin answered `person`'s initialize with `session`."""
        self._started[person] = session

    def opened(self, person: Person) -> None:
        """`person`'s handshake ended (under their lock): their calls go in the session it named."""
        self._ids[person] = self._started.pop(person, "")
        self._ids.move_to_end(person)
        while len(self._ids) > self._limit:
            evicted, _ = self._ids.popitem(last=False)
            self._drop_lock(evicted)

    def lost(self, person: Person, session: str | None) -> None:
        """The origin no longer knows `session` (None: the person's calls carried none): forget it,
        unless it was renewed meanwhile."""
        if self._ids.get(person) == (session or ""):
            del self._ids[person]

    def clear(self) -> None:
        """A new connection: every open session is opened again on its person's next call."""
        self._ids.clear()
        for person in list(self._locks):
            self._drop_lock(person)

    def _drop_lock(self, person: Person) -> None:
        lock = self._locks.get(person)
        if lock is not None and not lock.locked() and lock.statistics().tasks_waiting == 0:
            del self._locks[person]
