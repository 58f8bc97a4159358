"""Minted JWTs (scenario A): an origin that trusts no shared secret verifies Bastion's tokens
through its JWKS, sees each user's own identity, and keeps verifying across a key rotation."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jws

from bastion.store.db import Database
from bastion.store.repos.keys import rotate_keyring
from tests.governance.people import add_person
from tests.harness import Bastion, eventually, free_port, run_bastion, wait_for_port

pytestmark = pytest.mark.anyio


@contextmanager
def _world(tmp_path: Path, *flags: str) -> Iterator[tuple[Bastion, str, Path]]:
    with run_bastion(tmp_path, epoch_poll_seconds=0.1) as bastion:
        log = tmp_path / "origin.jsonl"
        port = free_port()
        origin = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.origins.jwt_origin",
                "--port",
                str(port),
                "--issuer",
                bastion.base_url,
                "--log",
                str(log),
                *flags,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            url = f"http://127.0.0.1:{port}/mcp"
            registered = bastion.add_origin("internal", url=url, auth={"mode": "jwt", "lifetime_seconds": 120})
            # Discovery ran with the gateway's own token: it never depends on a person's grant.
            assert registered["auth_mode"] == "jwt" and registered["last_error"] is None, registered
            bastion.publish_server("internal", {"origin": "internal"})
            yield bastion, url, log
        finally:
            origin.terminate()
            try:
                origin.wait(timeout=1)
            except subprocess.TimeoutExpired:  # Bastion's open event stream holds graceful shutdown
                origin.kill()
                origin.wait(timeout=5)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Bastion, str, Path]]:
    with _world(tmp_path) as made:
        yield made


def _entries(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


async def _call(bastion: Bastion, token: str) -> None:
    async with bastion.client("internal", token) as client:
        assert not (await client.call_tool("list_stock", {})).is_error


async def test_each_call_carries_a_jwt_for_its_own_user_verified_by_the_origin(
    world: tuple[Bastion, str, Path],
) -> None:
    bastion, url, log = world
    ann, bob = add_person(bastion, "ann", ["member"]), add_person(bastion, "bob", ["member"])
    tokens = {}
    for person in (ann, bob):
        body = {"name": "t", "servers": ["internal"], "user": person.name}
        tokens[person.id] = bastion.ok("POST", "/api/tokens", json=body)["token"]
        await _call(bastion, tokens[person.id])
    entries = _entries(log)
    assert not [e for e in entries if "refused" in e], entries
    subjects = {e["sub"] for e in entries}
    assert {ann.id, bob.id, "bastion"} <= subjects  # the gateway's own requests: handshake, discovery
    assert {e["org_id"] for e in entries} == {"default"} and {e["aud"] for e in entries} == {url}
    calls = [e for e in entries if e["sub"] in (ann.id, bob.id)]
    assert {e["scope"] for e in calls} == {"mcp"} and all(e["exp"] - e["iat"] == 120 for e in calls)
    # No client token ever reached the origin: only JWTs Bastion signed.
    assert not any(t in json.dumps(entries) for t in (*tokens.values(), bastion.admin_token))
    # The origin refuses anything else.
    async with httpx.AsyncClient() as http:
        refused = await http.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"authorization": f"Bearer {tokens[ann.id]}"},
        )
    assert refused.status_code == 401


async def test_after_a_key_rotation_old_and_new_tokens_verify(world: tuple[Bastion, str, Path]) -> None:
    bastion, _, log = world
    token = bastion.token("internal")
    await _call(bastion, token)
    before = {jws.extract_compact(e["token"].encode()).protected["kid"] for e in _entries(log) if "token" in e}
    db = Database(bastion.settings.database_url)
    try:
        await rotate_keyring(db, now=time.time(), keep_retired_seconds=3600)
    finally:
        await db.close()

    async def rotated() -> bool:
        return bastion.services.auth.keyring.active.kid not in before

    await eventually(rotated)
    await _call(bastion, bastion.token("internal"))  # a new user token: minted with the new key
    entries = _entries(log)
    kids = {jws.extract_compact(e["token"].encode()).protected["kid"] for e in entries if "token" in e}
    assert len(kids) >= 2 and not [e for e in entries if "refused" in e], entries


@pytest.fixture
def owned_world(tmp_path: Path) -> Iterator[tuple[Bastion, str, Path]]:
    with _world(tmp_path, "--owned-sessions", "--handshake-only") as made:
        yield made


async def test_an_origin_that_binds_its_sessions_to_people_gets_one_session_per_person(
    owned_world: tuple[Bastion, str, Path],
) -> None:
    """A handshake-era origin on the SDK's own session manager, which refuses a session used with
    another principal's token (the spec's "bind session IDs to user-specific information"): each
    person's calls run in a session that person opened, Bastion's own requests in its own, and a
    person's session is opened once, not again at every switch between people."""
    bastion, _, log = owned_world
    if True:
        ann, bob = add_person(bastion, "ann", ["member"]), add_person(bastion, "bob", ["member"])
        tokens = {}
        for person in (ann, bob):
            body = {"name": "t", "servers": ["internal"], "user": person.name}
            tokens[person.id] = bastion.ok("POST", "/api/tokens", json=body)["token"]
        for _ in range(3):
            for person in (ann, bob, ann):
                await _call(bastion, tokens[person.id])
        entries = _entries(log)
        assert not [e for e in entries if "refused" in e], entries
        assert not [e for e in entries if e["method"] == "server/discover" and e["session"]], entries
        owners: dict[str, set[str]] = {}
        for entry in entries:
            if entry["session"]:
                owners.setdefault(entry["session"], set()).add(entry["sub"])
        assert all(len(subjects) == 1 for subjects in owners.values()), owners
        by_person = {sub: {s for s, subjects in owners.items() if sub in subjects} for sub in (ann.id, bob.id)}
        assert all(len(sessions) == 1 for sessions in by_person.values()), by_person
        opened = [e["sub"] for e in entries if e["method"] == "initialize"]
        assert sorted(opened) == sorted(["bastion", ann.id, bob.id]), opened
        calls = [e for e in entries if e["method"] == "tools/call"]
        assert len(calls) == 9 and all(e["session"] in by_person[e["sub"]] for e in calls), calls
