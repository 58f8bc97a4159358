"""The hash chain alone: every changed byte, missing or reordered record is named by `verify`."""

from __future__ import annotations

import dataclasses

from bastion.audit.chain import GENESIS, AuditRecord, Break, chain_hash, digest_arguments, verify


def _chain(n: int) -> list[tuple[int, str, str, bytes]]:
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        record = AuditRecord(id=f"r{seq}", at_us=1_700_000_000_000_000 + seq, correlation_id="c", kind="mcp.request")
        digest = chain_hash(prev, record)
        rows.append((seq, prev, digest, record.canonical()))
        prev = digest
    return rows


def test_an_intact_chain_verifies() -> None:
    assert verify(_chain(5)) is None


def test_one_changed_byte_is_found_at_its_record() -> None:
    rows = _chain(5)
    seq, prev, digest, canonical = rows[2]
    rows[2] = (seq, prev, digest, canonical.replace(b'"c"', b'"d"'))
    assert verify(rows) == Break(3, "its content does not match its hash (the record was changed)")


def test_a_rewritten_record_with_a_fresh_hash_breaks_the_next_link() -> None:
    rows = _chain(5)
    seq, prev, _, canonical = rows[1]
    forged = canonical.replace(b'"c"', b'"x"')
    rows[1] = (seq, prev, chain_hash(prev, forged), forged)
    assert verify(rows) == Break(3, "its prev_hash is not the hash of the record before it")


def test_a_missing_record_is_named() -> None:
    rows = _chain(5)
    del rows[3]
    assert verify(rows) == Break(4, "record 4 is missing (found 5 next)")


def test_arguments_are_kept_as_a_digest_equal_for_equal_arguments() -> None:
    assert digest_arguments({"b": 1, "a": [1, 2]}) == digest_arguments({"a": [1, 2], "b": 1})
    assert digest_arguments({"card": "4111 1111 1111 1111"}) != digest_arguments({"card": "4111"})
    record = AuditRecord(id="r", at_us=1, correlation_id="c", kind="k", args_digest=digest_arguments({"x": 1}))
    assert b"4111" not in dataclasses.replace(record).canonical()
