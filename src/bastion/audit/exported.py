"""Audit records outside the store: one JSON line per chained record, and its offline verification.

A line holds the record's fields plus `tenant_id`, `seq`, `prev_hash` and `hash`, so a file written
by `bastion audit prune` (or printed by `bastion audit tail`) is checked with nothing but itself:
each tenant's records must follow one another (seq + 1, prev_hash = the hash before) and each hash
must be the one its content gives. A file's first record of a tenant is taken as it comes when it
does not start at the chain's genesis: its `prev_hash` is the hash of the signed checkpoint the
previous prune kept as its anchor, which only the store (or the previous export) can confirm.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bastion.audit.chain import GENESIS, AuditRecord, Break, verify

__all__ = ["FileChain", "export_line", "verify_export"]

_FIELDS = frozenset(AuditRecord.__dataclass_fields__)


def export_line(tenant_id: str, seq: int, prev_hash: str, hash_: str, record: AuditRecord) -> bytes:
    body = {**record.fields(), "tenant_id": tenant_id, "seq": seq, "prev_hash": prev_hash, "hash": hash_}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS) + b"\n"


@dataclass(slots=True)
class FileChain:
    """One tenant's records in a file: where they start and end, and the first break if any."""

    tenant_id: str
    first_seq: int
    start_hash: str  # the prev_hash of the first record (64 zeros from the genesis)
    last_seq: int = 0
    end_hash: str = ""
    records: int = 0
    broken: Break | None = field(default=None)


def verify_export(lines: Iterable[bytes]) -> list[FileChain]:
    """Each tenant's chain in the file, in order of first appearance; stops at the first break."""
    chains: dict[str, FileChain] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parsed = _parse(line)
        if isinstance(parsed, str):
            return _broken_at_line(chains, number, parsed)
        tenant_id, seq, prev_hash, stored_hash, record = parsed
        chain = chains.get(tenant_id)
        if chain is None:
            chain = chains[tenant_id] = FileChain(tenant_id, seq, GENESIS if seq == 1 else prev_hash)
            expected_seq, expected_prev = seq, chain.start_hash
        else:
            expected_seq, expected_prev = chain.last_seq + 1, chain.end_hash
        broken = verify(
            [(seq, prev_hash, stored_hash, record.canonical())], start_seq=expected_seq, start_hash=expected_prev
        )
        if broken is not None:
            chain.broken = Break(broken.seq, f"line {number}: {broken.reason}")
            return list(chains.values())
        chain.last_seq, chain.end_hash, chain.records = seq, stored_hash, chain.records + 1
    return list(chains.values())


def _parse(line: bytes) -> tuple[str, int, str, str, AuditRecord] | str:
    try:
        data: Any = orjson.loads(line)
        tenant_id, seq, prev_hash, stored_hash = (data.pop(k) for k in ("tenant_id", "seq", "prev_hash", "hash"))
        if set(data) != _FIELDS or not isinstance(seq, int) or not isinstance(data["detail"], dict):
            raise ValueError
        return str(tenant_id), seq, str(prev_hash), str(stored_hash), AuditRecord(**data)
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        return "it is not a readable audit record (not JSON, or fields missing, added or mistyped)"


def _broken_at_line(chains: dict[str, FileChain], number: int, reason: str) -> list[FileChain]:
    """A line that cannot be read breaks the file there; it is charged to the chain read last."""
    chain = next(reversed(chains.values()), None)
    if chain is None:
        chain = chains["?"] = FileChain("?", 1, GENESIS)
    chain.broken = Break(chain.last_seq + 1 if chain.records else chain.first_seq, f"line {number}: {reason}")
    return list(chains.values())
