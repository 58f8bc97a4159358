"""The per-request read of the shared epoch: one GET over one dedicated connection, shared by waiters.

Why not the Redis client library for this one command: every protected request pays it, and on
the 2-core dev VM (uvloop, loopback Redis) a redis-py asyncio GET costs 60-100 µs of CPU (its pool,
retry wrapper, parser, extra loop turns), this reader about 40 µs with its timeout (~25 µs of it
the two system calls). The library still does everything else (pub/sub, the announce script),
where a few µs do not matter.

Coalescing keeps strictness: a caller may use the answer of a GET *sent after it arrived* (which
therefore saw every change committed before the caller began); callers queued behind one GET share
the next one, so at high concurrency most requests pay a lock, not a round trip.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import unquote, urlsplit

__all__ = ["EpochReader", "ReplyError", "supports"]


class ReplyError(ConnectionError):
    """Redis answered something other than the expected reply: the connection is not trusted again."""


def supports(url: str) -> bool:
    """Plain `redis://` / `rediss://` URLs; anything with options (unix sockets, query flags) uses the library."""
    parts = urlsplit(url)
    return parts.scheme in ("redis", "rediss") and not parts.query


def _command(*words: str) -> bytes:
    encoded = [word.encode() for word in words]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in encoded)


class EpochReader:
    def __init__(self, url: str, key: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._tls = ssl.create_default_context() if parts.scheme == "rediss" else None
        self._handshake: list[bytes] = []
        if parts.password is not None:
            credentials = [unquote(parts.username)] if parts.username else []
            self._handshake.append(_command("AUTH", *credentials, unquote(parts.password)))
        database = parts.path.lstrip("/")
        if database and database != "0":
            self._handshake.append(_command("SELECT", database))
        self._get = _command("GET", key)
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._sent = 0  # GETs sent so far, numbered
        self._answered = 0  # the number of the newest GET answered
        self._value: bytes | None = None

    async def get(self) -> bytes | None:
        """The key's value as of a GET sent after this call began. Raises OSError/EOFError."""
        ticket = self._sent
        # asyncio's own timeout and lock: this module is asyncio-only (its streams), and here they
        # cost ~15 µs less per request than anyio's cancel scope and checkpointing lock.
        async with asyncio.timeout(self._timeout):  # the whole wait, queueing included
            async with self._lock:
                if self._answered > ticket:
                    return self._value
                return await self._request()

    async def aclose(self) -> None:
        self._drop()

    async def _request(self) -> bytes | None:
        try:
            reader, writer = self._connection or await self._connect()
            self._sent += 1
            number = self._sent
            writer.write(self._get)
            value = await _bulk(reader)
        except BaseException:
            # Failed, timed out or cancelled mid-reply: the stream's position is unknown.
            self._drop()
            raise
        self._answered, self._value = number, value
        return value

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self._host, self._port, ssl=self._tls)
        self._connection = reader, writer
        for command in self._handshake:
            writer.write(command)
            line = await reader.readuntil(b"\r\n")
            if not line.startswith(b"+"):
                raise ReplyError(f"Redis refused the connection set-up: {line[:80]!r}")
        return reader, writer

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection[1].close()
            self._connection = None


async def _bulk(reader: asyncio.StreamReader) -> bytes | None:
    """One RESP bulk-string reply (`$n` + data, or `$-1` for a missing key)."""
    line = await reader.readuntil(b"\r\n")
    try:
        length = int(line[1:-2]) if line.startswith(b"$") else None
    except ValueError:
        length = None
    if length is None:
        raise ReplyError(f"unexpected reply to GET: {line[:80]!r}")
    if length < 0:
        return None
    return (await reader.readexactly(length + 2))[:-2]
