"""HashiCorp Vault transit as the master key (`bastion.vault.transit`), through the real hvac client
against a stand-in of Vault's transit API (`tests.vault.transit_standin`; Vault cannot run here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.config import Settings
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
