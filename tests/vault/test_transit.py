"""HashiCorp Vault transit as the master key (`bastion.vault.transit`), through the real hvac client
against a stand-in of Vault's transit API (`tests.vault.transit_standin`; Vault cannot run here)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import hvac
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.config import Settings
from bastion.store.models import Origin
from bastion.store.repos.snapshot import OpenedCredentials
from bastion.vault.credentials import open_credential, seal_credential
from bastion.vault.envelope import MasterKey, MasterKeys, VaultError, VaultUnavailable, kid_of
from bastion.vault.keys import encode_key
from bastion.vault.transit import TransitKey
from tests.harness import free_port, run_bastion
from tests.vault.transit_standin import Transit, running_transit

OWNER = "tenant=default;origin=o1;purpose=service-credential"


@pytest.fixture
def transit() -> Iterator[Transit]:
    with running_transit() as server:
        yield server


def test_data_keys_are_wrapped_by_vault_and_the_owner_is_authenticated(transit: Transit) -> None:
    keys = MasterKeys(TransitKey.connect(transit.url, transit.token, "bastion"))
    sealed = keys.seal(b"origin-secret-42", OWNER)
    assert kid_of(sealed) == "vault:bastion"
    assert keys.open(sealed, OWNER) == b"origin-secret-42"
    # Vault saw data keys and owners, never the secret itself.
    assert transit.requests and not any("origin-secret-42" in str(r) for r in transit.requests)
    with pytest.raises(VaultError, match="refused to decrypt"):
        keys.open(sealed, OWNER.replace("o1", "o2"))  # moved to another row: Vault's AEAD refuses


def test_a_vault_key_rotation_then_rewrap_keeps_every_secret_open(transit: Transit) -> None:
    keys = MasterKeys(TransitKey.connect(transit.url, transit.token, "bastion"))
    sealed = keys.seal(b"s", OWNER)
    hvac.Client(url=transit.url, token=transit.token).secrets.transit.rotate_key(name="bastion")
    assert keys.open(sealed, OWNER) == b"s"  # the older key version still decrypts
    local = MasterKey.generate("k1")
    migrated = MasterKeys(TransitKey.connect(transit.url, transit.token, "bastion"), [local])
    old = MasterKeys(local).seal(b"before vault", OWNER)
    moved = migrated.rewrap(old, OWNER)  # a secret sealed locally moves under Vault's key
    assert kid_of(moved) == "vault:bastion" and migrated.open(moved, OWNER) == b"before vault"
    # One sealed under Vault's first version moves to its newest, so the first can be retired there.
    fresh = keys.rewrap(sealed, OWNER)
    transit.versions[0] = AESGCM.generate_key(bit_length=256)  # version 1 trimmed at Vault
    assert keys.open(fresh, OWNER) == b"s"
    with pytest.raises(VaultError):
        keys.open(sealed, OWNER)


def test_a_wrong_token_or_an_unreachable_vault_is_a_clear_refusal(transit: Transit) -> None:
    with pytest.raises(VaultUnavailable, match=r"refused to encrypt .*Forbidden"):
        MasterKeys(TransitKey.connect(transit.url, "s.wrong", "bastion")).seal(b"x", OWNER)
    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(VaultUnavailable, match="could not be reached"):
        MasterKeys(TransitKey.connect(nowhere, transit.token, "bastion")).seal(b"x", OWNER)


def test_settings_put_vault_first_and_keep_local_keys_for_older_secrets(transit: Transit) -> None:
    local = MasterKey.generate("k1")
    settings = Settings(master_key=f"k1:{encode_key(local.key)}", vault_addr=transit.url, vault_token=transit.token)
    keys = settings.master_keys()
    assert keys is not None and keys.current.kid == "vault:bastion" and set(keys.kids) == {"vault:bastion", "k1"}
    sealed = seal_credential(keys, "default", "o1", {"mode": "bearer", "token": "t"})
    credential = open_credential(keys, "default", "o1", "bearer", sealed)
    assert credential is not None and dict(credential.headers)["authorization"] == "Bearer t"


def test_bastion_starts_on_vault_and_seals_its_signing_keys_there(tmp_path: Path, transit: Transit) -> None:
    with run_bastion(tmp_path, vault_addr=transit.url, vault_token=transit.token) as bastion:
        assert bastion.ok("GET", "/api/origins") == []
    decrypts = [r for r in transit.requests if "/decrypt/" in r["path"]]
    encrypts = [r for r in transit.requests if "/encrypt/" in r["path"]]
    assert encrypts and decrypts  # the canary and the signing keys went through Vault


class _ThreadNoting(TransitKey):
    """The real transit key, noting which thread each unwrap runs on."""

    threads: ClassVar[list[str]] = []

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        self.threads.append(threading.current_thread().name)
        return super().unwrap(wrapped, aad)


def test_a_snapshot_reload_opens_only_changed_credentials_and_off_the_event_loop(transit: Transit) -> None:
    """Every change reloads the snapshot: with Vault as the master key each open is a round trip, and
    hvac blocks. Unchanged credentials are not opened again, and opens run in a worker thread."""
    keys = MasterKeys(_ThreadNoting.connect(transit.url, transit.token, "bastion"))
    rows = [
        Origin(id=f"o{n}", tenant_id="default", auth_mode="bearer", credential=seal(keys, f"o{n}", f"t{n}"))
        for n in range(3)
    ]
    opened = OpenedCredentials()

    async def load() -> dict[str, Any]:
        return await opened.of(rows, keys)

    first = anyio.run(load)
    assert [dict(first[f"o{n}"].headers)["authorization"] for n in range(3)] == [f"Bearer t{n}" for n in range(3)]
    assert len(_ThreadNoting.threads) == 3 and threading.main_thread().name not in _ThreadNoting.threads
    anyio.run(load)
    assert len(_ThreadNoting.threads) == 3  # nothing changed: nothing opened
    rows[1].credential = seal(keys, "o1", "t7")
    assert dict(anyio.run(load)["o1"].headers)["authorization"] == "Bearer t7" and len(_ThreadNoting.threads) == 4
    # One that does not open (Vault refusing) is tried again at the next load, not kept.
    rows[2].credential = seal(keys, "o2", "t8")
    transit.token = "s.revoked"
    assert "cannot be opened" in str(anyio.run(load)["o2"].error)
    transit.token = "s.test-token"
    assert dict(anyio.run(load)["o2"].headers)["authorization"] == "Bearer t8"


def seal(keys: MasterKeys, origin_id: str, token: str) -> str:
    return seal_credential(keys, "default", origin_id, {"mode": "bearer", "token": token})
