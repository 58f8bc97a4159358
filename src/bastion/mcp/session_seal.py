"""Sealed MCP session ids: what a replica needs to know about a session travels inside its id.

The id is base64url(nonce ‖ AES-256-GCM(payload) ‖ tag) (NIST SP 800-38D), 60
characters of the visible ASCII that Streamable HTTP requires of a session id
(0x21 to 0x7E). The payload is 17 bytes: format, issue time, the names of the
client's capabilities as bits, and the protocol version. The virtual server
and the session's owner are the associated data: they are not in the id, yet
an id presented on another server or by another owner fails to open, exactly
as a forged id or one sealed under another key does.

The first key seals; every key opens, so a new key can be put first while ids
sealed under the old one keep working until they expire. Nonces are random
96-bit values: SP 800-38D §8.3 allows 2^32 of them per key (a million sessions
a day for over ten thousand years).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_BYTES", "Opened", "SessionSeal"]

KEY_BYTES = 32
_NONCE_BYTES = 12
_FORMAT = 1
_HEADER = struct.Struct(">BIH")  # format, issued_at (POSIX seconds), capability bits
# Client capability names, one bit each. Append only: a bit's meaning is part of every id in use.
_CAPABILITIES = ("experimental", "sampling", "elicitation", "roots", "extensions", "tasks")
_SHAPE = re.compile(r"[A-Za-z0-9_-]{40,200}")  # cheap refusal before any decoding


@dataclass(frozen=True, slots=True)
class Opened:
    """What a sealed id says about its session."""

    nonce: str  # unique per session: what a DELETE records
    issued_at: int
    protocol_version: str
    capabilities: frozenset[str]


class SessionSeal:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(key) != KEY_BYTES for key in keys):
            raise ValueError(f"session sealing needs one or more {KEY_BYTES}-byte keys")
        self._ciphers = [AESGCM(key) for key in keys]

    def seal(
        self, *, server_id: str, owner: str, protocol_version: str, capabilities: Iterable[str], issued_at: int
    ) -> tuple[str, Opened]:
        """A new session id, and what opening it will give back."""
        names = frozenset(capabilities) & frozenset(_CAPABILITIES)
        bits = sum(1 << i for i, name in enumerate(_CAPABILITIES) if name in names)
        payload = _HEADER.pack(_FORMAT, issued_at, bits) + protocol_version.encode("ascii")
        nonce = os.urandom(_NONCE_BYTES)
        box = self._ciphers[0].encrypt(nonce, payload, _bound_to(server_id, owner))
        return _encode(nonce + box), Opened(_encode(nonce), issued_at, protocol_version, names)

    def open(self, session_id: str, *, server_id: str, owner: str) -> Opened | None:
        """The session's facts, or None for anything not sealed by us for this server and owner."""
        if not _SHAPE.fullmatch(session_id):
            return None
        try:
            raw = base64.urlsafe_b64decode(session_id + "=" * (-len(session_id) % 4))
        except binascii.Error:
            return None
        if _encode(raw) != session_id:
            return None  # one spelling per id: local state is kept by id
        nonce, box = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        bound = _bound_to(server_id, owner)
        for cipher in self._ciphers:
            try:
                payload = cipher.decrypt(nonce, box, bound)
            except InvalidTag:
                continue
            return _parse(nonce, payload)
        return None


def _bound_to(server_id: str, owner: str) -> bytes:
    # A JSON array: unambiguous whatever characters the owner string holds.
    return orjson.dumps(["mcp-session", server_id, owner])


def _parse(nonce: bytes, payload: bytes) -> Opened | None:
    if len(payload) < _HEADER.size:
        return None
    form, issued_at, bits = _HEADER.unpack_from(payload)
    if form != _FORMAT:
        return None
    names = frozenset(name for i, name in enumerate(_CAPABILITIES) if bits & (1 << i))
    return Opened(_encode(nonce), issued_at, payload[_HEADER.size :].decode("ascii"), names)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
