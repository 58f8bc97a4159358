"""The audit trail's hash chain: what each record's hash covers, and how a chain is verified.

Every record of a tenant carries `seq` (1, 2, ... with no gap), the hash of the record before it
(`prev_hash`; the first record's is 64 zeros) and its own `hash`: SHA-256 over `prev_hash` and
the record's canonical JSON (sorted keys, no whitespace, integers only: times and latencies in
microseconds), so changing any byte of any field, removing a record or reordering two breaks
every hash from there on. `verify` walks a chain and names the first record that does not
follow. Signed checkpoints (`bastion.audit.checkpoints`) pin the chain's head at intervals, so a
rewrite of the whole tail from some record on is caught as well.

Hand-written on purpose: the chaining is a few lines over `hashlib` and `orjson`; what it
covers is Bastion's own record format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["GENESIS", "AuditRecord", "Break", "canonical", "chain_hash", "digest_arguments", "verify"]

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit record as chained (the store adds tenant, seq, prev_hash and hash)."""

    id: str
    at_us: int  # POSIX microseconds
    correlation_id: str
    kind: str  # mcp.request | upstream.call | api.request | oauth.request | cli.command | audit.prune | ...
    principal: str = ""  # the user (id) the request was made for, or "" before authentication
    client: str = ""  # the OAuth client, or api-token:<id>
    server: str = ""  # virtual server slug
    origin: str = ""  # origin name (upstream calls)
    method: str = ""  # JSON-RPC method, or HTTP method and route
    target: str = ""  # tool / prompt name or resource URI
    args_digest: str = ""  # SHA-256 of the canonical arguments, never the arguments
    decision: str = ""  # allow | deny | error
    reason: str = ""
    status: str = ""  # ok, a JSON-RPC error code, or an HTTP status
    latency_us: int = 0
    detail: Mapping[str, Any] = field(default_factory=dict)  # small, secret-free extras

    def fields(self) -> dict[str, Any]:
        """The record as a dict, shallow: `dataclasses.asdict` deep-copies every value, which
        cost about 100 µs a record, several times per call (measured in `make bench`)."""
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    def canonical(self) -> bytes:
        return canonical(self.fields())


def canonical(fields: Mapping[str, Any]) -> bytes:
    """What a record's hash covers: its fields as JSON, keys sorted, no whitespace."""
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


_FIELD_NAMES = tuple(AuditRecord.__dataclass_fields__)


def chain_hash(prev_hash: str, record: AuditRecord | bytes) -> str:
    body = record if isinstance(record, bytes) else record.canonical()
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + body).hexdigest()


def digest_arguments(arguments: Any) -> str:
    """What the trail keeps of a call's arguments: a digest (equal arguments, equal digest)."""
    try:
        canonical = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        canonical = repr(arguments).encode()
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class Break:
    """The first record of a chain that does not follow from the one before it."""

    seq: int
    reason: str


def verify(
    rows: Iterable[tuple[int, str, str, bytes]], *, start_seq: int = 1, start_hash: str = GENESIS
) -> Break | None:
    """Walk `(seq, prev_hash, hash, canonical record)` rows in seq order; None when every link holds."""
    expected_seq, expected_prev = start_seq, start_hash
    for seq, prev_hash, stored_hash, canonical in rows:
        if seq != expected_seq:
            return Break(expected_seq, f"record {expected_seq} is missing (found {seq} next)")
        if prev_hash != expected_prev:
            return Break(seq, "its prev_hash is not the hash of the record before it")
        if chain_hash(prev_hash, canonical) != stored_hash:
            return Break(seq, "its content does not match its hash (the record was changed)")
        expected_seq, expected_prev = seq + 1, stored_hash
    return None
