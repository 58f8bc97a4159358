"""Bastion's signing keys: published as public JWKS, rotated without breaking tokens they signed."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import httpx

from bastion.oauth.keys import KeyRing
from bastion.store.db import Database
from bastion.store.repos.keys import rotate_keyring
from tests.harness import eventually, run_bastion


async def _rotate(url: str) -> KeyRing:
    db = Database(url)
    try:
        return await rotate_keyring(db, now=time.time(), keep_retired_seconds=3600)
    finally:
        await db.close()


def test_a_rotation_publishes_the_new_key_beside_the_old_one_and_old_session_tokens_still_verify(
    tmp_path: Path,
) -> None:
    with run_bastion(tmp_path, epoch_poll_seconds=0.1) as bastion:
        before = bastion.http.get("/oauth/jwks.json").json()["keys"]
        assert len(before) == 1 and before[0]["kty"] == "EC" and "d" not in before[0]
        sessions = bastion.services.auth.sessions
        issued = sessions.issue("someone", purpose="ui")

        ring = anyio.run(_rotate, bastion.settings.database_url)

        async def published() -> bool:
            async with httpx.AsyncClient(base_url=bastion.base_url) as http:
                keys = (await http.get("/oauth/jwks.json")).json()["keys"]
            return {key["kid"] for key in keys} == {before[0]["kid"], ring.active.kid}

        anyio.run(eventually, published)
        assert bastion.services.auth.keyring.active.kid == ring.active.kid
        assert sessions.verify(issued, purpose="ui")["sub"] == "someone"  # signed by the retired key
