"""Sealed session ids: only the keys' holder makes them, and each opens for one server and one owner."""

from __future__ import annotations

import os
import re
import time

import pytest

from bastion.mcp.session_seal import SessionSeal

KEY, OTHER_KEY = os.urandom(32), os.urandom(32)


def _seal(seal: SessionSeal, *, server_id: str = "srv-1", owner: str = "tok-1") -> str:
    session_id, _ = seal.seal(
        server_id=server_id,
        owner=owner,
        protocol_version="2025-11-25",
        capabilities={"elicitation": {}, "roots": {"listChanged": True}, "someday": {}},
        issued_at=int(time.time()),
    )
    return session_id


def test_an_id_opens_to_what_was_sealed_for_its_server_and_owner() -> None:
    seal = SessionSeal([KEY])
    issued = int(time.time())
    session_id, sealed = seal.seal(
        server_id="srv-1", owner="tok-1", protocol_version="2025-06-18", capabilities=["sampling"], issued_at=issued
    )

    opened = seal.open(session_id, server_id="srv-1", owner="tok-1")

    assert opened == sealed
    assert opened is not None
    assert opened.protocol_version == "2025-06-18"
    assert opened.issued_at == issued
    assert opened.capabilities == frozenset({"sampling"})


def test_only_the_capability_names_the_spec_defines_travel() -> None:
    seal = SessionSeal([KEY])
    opened = seal.open(_seal(seal), server_id="srv-1", owner="tok-1")
    assert opened is not None and opened.capabilities == {"elicitation", "roots"}


def test_ids_are_short_visible_ascii_and_never_repeat() -> None:
    seal = SessionSeal([KEY])
    ids = {_seal(seal) for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{60}", session_id) for session_id in ids)


def test_an_id_does_not_open_for_another_server_or_another_owner() -> None:
    seal = SessionSeal([KEY])
    session_id = _seal(seal)
    assert seal.open(session_id, server_id="srv-2", owner="tok-1") is None
    assert seal.open(session_id, server_id="srv-1", owner="tok-2") is None
    # The binding is unambiguous: moving characters between server and owner does not help.
    assert seal.open(_seal(seal, server_id="a", owner="bc"), server_id="ab", owner="c") is None


def test_every_single_character_change_is_refused() -> None:
    seal = SessionSeal([KEY])
    session_id = _seal(seal)
    for i, char in enumerate(session_id):
        replacement = "A" if char != "A" else "B"
        tampered = session_id[:i] + replacement + session_id[i + 1 :]
        assert seal.open(tampered, server_id="srv-1", owner="tok-1") is None, i


@pytest.mark.parametrize("garbage", ["", "made-up", "x" * 500, "a b", "é" * 60, "=" * 60])
def test_garbage_is_refused_without_an_error(garbage: str) -> None:
    assert SessionSeal([KEY]).open(garbage, server_id="srv-1", owner="tok-1") is None


def test_an_id_sealed_under_another_key_is_refused() -> None:
    session_id = _seal(SessionSeal([OTHER_KEY]))
    assert SessionSeal([KEY]).open(session_id, server_id="srv-1", owner="tok-1") is None


def test_after_rotation_new_ids_use_the_new_key_and_old_ids_still_open() -> None:
    old_id = _seal(SessionSeal([KEY]))
    rotated = SessionSeal([OTHER_KEY, KEY])
    new_id = _seal(rotated)

    assert rotated.open(old_id, server_id="srv-1", owner="tok-1") is not None
    assert rotated.open(new_id, server_id="srv-1", owner="tok-1") is not None
    assert SessionSeal([KEY]).open(new_id, server_id="srv-1", owner="tok-1") is None


def test_keys_must_be_256_bits() -> None:
    for keys in ([], [os.urandom(16)], [KEY, b"short"]):
        with pytest.raises(ValueError, match="32-byte keys"):
            SessionSeal(keys)
