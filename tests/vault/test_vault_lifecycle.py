"""The vault across restarts: a missing or wrong master key stops Bastion before it touches
anything, and rotation plus re-wrap moves every secret to the new key (the real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
from sqlalchemy import select

from bastion.oauth.downstream import DownstreamTokens
from bastion.oauth.downstream_grants import GrantKey
from bastion.store.db import Database
from bastion.store.models import DownstreamGrant, Meta, Origin, SigningKey, User
from bastion.store.tenancy import SYSTEM
from bastion.vault.credentials import origin_owner, seal_credential
from bastion.vault.downstream_oauth import open_tokens, seal_tokens
from bastion.vault.envelope import MasterKey, MasterKeys, is_sealed, kid_of
from bastion.vault.keys import KeyFile, encode_key
from tests.harness import ADMIN_PASSWORD


def _bastion(directory: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    environment.update(
        BASTION_DATABASE_URL=f"sqlite+aiosqlite:///{directory / 'bastion.db'}",
        BASTION_ADMIN_PASSWORD=ADMIN_PASSWORD,
        BASTION_LOG_LEVEL="warning",
        BASTION_PORT="1",  # never reached: every run here stops before serving or is not `serve`
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _seed(directory: Path, keys: MasterKeys) -> str:
    """A migrated store with one origin whose credential is sealed with `keys`; returns the sealed value."""

    async def seed() -> str:
        db = Database(f"sqlite+aiosqlite:///{directory / 'bastion.db'}")
        db.vault = keys
        try:
            await db.migrate()
            async with db.session(SYSTEM) as session:
                origin = Origin(name="crm", transport="http", url="http://127.0.0.1:9/mcp", auth_mode="bearer")
                session.add(origin)
                await session.flush()
                origin.credential = seal_credential(keys, origin.tenant_id, origin.id, {"mode": "bearer", "token": "t"})
                sealed = origin.credential
                # A person's downstream grant (per-user OAuth), sealed under its own owner.
                user = User(username="ann", password_hash="-")
                session.add(user)
                await session.flush()
                key = GrantKey(origin.tenant_id, user.id, origin.id, "https://as.example", "https://api.example/mcp")
                grant = DownstreamTokens(access_token="grant-token", refresh_token="r", expires_at=None, scope=None)
                session.add(
                    DownstreamGrant(
                        user_id=user.id,
                        origin_id=origin.id,
                        issuer=key.issuer,
                        resource=key.resource,
                        sealed=seal_tokens(keys, key.owner, grant),
                    )
                )
            from bastion.store.repos.vault import check_vault

            await check_vault(db, keys)  # writes the canary of the current key
            return sealed
        finally:
            await db.close()

    return anyio.run(seed)


def _stored(directory: Path) -> tuple[list[str], list[str], list[str]]:
    """(origin credentials, signing private keys, canary names) as stored."""

    async def read() -> tuple[list[str], list[str], list[str]]:
        db = Database(f"sqlite+aiosqlite:///{directory / 'bastion.db'}")
        try:
            async with db.session(SYSTEM) as session:
                credentials = [c for c in await session.scalars(select(Origin.credential)) if c]
                credentials += list(await session.scalars(select(DownstreamGrant.sealed)))
                signing = list(await session.scalars(select(SigningKey.private_jwk)))
                canaries = [m.key for m in await session.scalars(select(Meta)) if m.key.startswith("vault_canary:")]
            return credentials, signing, canaries
        finally:
            await db.close()

    return anyio.run(read)


def test_a_missing_or_wrong_master_key_refuses_to_start_and_changes_nothing(tmp_path: Path) -> None:
    right = MasterKey.generate("k1")
    sealed = _seed(tmp_path, MasterKeys(right))
    before = _stored(tmp_path)

    missing = _bastion(tmp_path, "serve")
    assert missing.returncode == 1
    assert "refusing to start" in missing.stderr and "sealed with master key(s) k1" in missing.stderr

    wrong = _bastion(tmp_path, "serve", BASTION_MASTER_KEY=f"k1:{encode_key(os.urandom(32))}")
    assert wrong.returncode == 1 and "refusing to start" in wrong.stderr and "'k1'" in wrong.stderr

    malformed = _bastion(tmp_path, "serve", BASTION_MASTER_KEY="k1:short")
    assert malformed.returncode == 1 and "32 random bytes" in malformed.stderr and "short" not in malformed.stderr

    after = _stored(tmp_path)
    assert after == before and after[0][0] == sealed  # nothing was overwritten


def test_rotate_then_rewrap_moves_every_secret_to_the_new_key(tmp_path: Path) -> None:
    key_file = tmp_path / "master.json"
    first = KeyFile(key_file).load(create=True)
    _seed(tmp_path, first)
    env = {"BASTION_MASTER_KEY_FILE": str(key_file)}
    # A start on the key file creates the signing keys, sealed (tokens list is a quick run of Services).
    assert _bastion(tmp_path, "tokens", "list", **env).returncode == 0
    credentials, signing, _ = _stored(tmp_path)
    assert signing and all(is_sealed(k) and kid_of(k) == first.current.kid for k in signing)

    rotated = _bastion(tmp_path, "keys", "rotate", **env)
    assert rotated.returncode == 0, rotated.stderr
    second = KeyFile(key_file).load()
    assert second.current.kid != first.current.kid and first.current.kid in second.kids

    rewrapped = _bastion(tmp_path, "keys", "rewrap", **env)
    assert rewrapped.returncode == 0, rewrapped.stderr
    credentials, signing, canaries = _stored(tmp_path)
    assert {kid_of(v) for v in credentials + signing} == {second.current.kid}
    assert canaries == [f"vault_canary:{second.current.kid}"]

    # The old key can now be dropped: the secrets open with the new one alone.
    document = json.loads(key_file.read_text())
    document["keys"] = [k for k in document["keys"] if k["kid"] == second.current.kid]
    key_file.write_text(json.dumps(document))
    only_new = KeyFile(key_file).load()
    [origin_credential, grant] = credentials
    assert json.loads(only_new.open(origin_credential, _owner_of_seeded(tmp_path)))["token"] == "t"
    assert open_tokens(only_new, _grant_owner_of_seeded(tmp_path), grant).access_token == "grant-token"
    assert _bastion(tmp_path, "tokens", "list", **env).returncode == 0  # starts fine on the new key alone


def _owner_of_seeded(directory: Path) -> str:
    async def read() -> str:
        db = Database(f"sqlite+aiosqlite:///{directory / 'bastion.db'}")
        try:
            async with db.session(SYSTEM) as session:
                origin = await session.scalar(select(Origin).where(Origin.name == "crm"))
                assert origin is not None
                return origin_owner(origin.tenant_id, origin.id)
        finally:
            await db.close()

    return anyio.run(read)


def _grant_owner_of_seeded(directory: Path) -> str:
    async def read() -> str:
        db = Database(f"sqlite+aiosqlite:///{directory / 'bastion.db'}")
        try:
            async with db.session(SYSTEM) as session:
                grant = (await session.scalars(select(DownstreamGrant))).one()
                return GrantKey(grant.tenant_id, grant.user_id, grant.origin_id, grant.issuer, grant.resource).owner
        finally:
            await db.close()

    return anyio.run(read)
