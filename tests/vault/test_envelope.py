"""The vault's envelope encryption and key sources (pure: no server, no store)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.vault.envelope import MasterKey, MasterKeys, VaultError, kid_of
from bastion.vault.keys import KeyFile, encode_key, keys_from_env

OWNER = "tenant=default;origin=o1;purpose=service-credential"


def test_a_sealed_secret_opens_for_its_owner_and_holds_no_plaintext() -> None:
    keys = MasterKeys(MasterKey.generate("k1"))
    sealed = keys.seal(b"s3cr3t-token", OWNER)
    assert sealed.startswith("v1.k1.") and b"s3cr3t" not in sealed.encode()
    assert keys.open(sealed, OWNER) == b"s3cr3t-token"
    assert keys.seal(b"s3cr3t-token", OWNER) != sealed  # fresh data key and nonces each time


def test_a_ciphertext_moved_to_another_owner_does_not_open() -> None:
    keys = MasterKeys(MasterKey.generate("k1"))
    sealed = keys.seal(b"s3cr3t", OWNER)
    with pytest.raises(VaultError, match="does not open"):
        keys.open(sealed, OWNER.replace("o1", "o2"))
    # Swapping the wrapped data keys of two secrets breaks both.
    other = keys.seal(b"other", OWNER)
    a, b = sealed.split("."), other.split(".")
    with pytest.raises(VaultError):
        keys.open(".".join([a[0], a[1], b[2], a[3]]), OWNER)


def test_a_wrong_or_missing_master_key_is_named_without_key_material() -> None:
    sealed = MasterKeys(MasterKey.generate("k1")).seal(b"s3cr3t", OWNER)
    impostor = MasterKeys(MasterKey(kid="k1", key=os.urandom(32)))
    with pytest.raises(VaultError, match="'k1' does not open"):
        impostor.open(sealed, OWNER)
    with pytest.raises(VaultError, match="'k1' is not configured"):
        MasterKeys(MasterKey.generate("k2")).open(sealed, OWNER)


def test_rotation_keeps_old_secrets_open_and_rewrap_moves_them_to_the_new_key() -> None:
    old = MasterKey.generate("k1")
    sealed = MasterKeys(old).seal(b"s3cr3t", OWNER)
    rotated = MasterKeys(MasterKey.generate("k2"), [old])
    assert rotated.open(sealed, OWNER) == b"s3cr3t"
    assert kid_of(rotated.seal(b"new", OWNER)) == "k2"
    rewrapped = rotated.rewrap(sealed, OWNER)
    assert kid_of(rewrapped) == "k2" and rewrapped.split(".")[3] == sealed.split(".")[3]  # same ciphertext
    assert MasterKeys(rotated.current).open(rewrapped, OWNER) == b"s3cr3t"  # the old key is no longer needed


def test_keys_from_the_environment() -> None:
    first, second = MasterKey.generate("a"), MasterKey.generate("b")
    keys = keys_from_env(f"a:{encode_key(first.key)}, b:{encode_key(second.key)}")
    assert keys.current.kid == "a" and set(keys.kids) == {"a", "b"}
    bare = keys_from_env(encode_key(first.key))
    assert isinstance(bare.current, MasterKey) and bare.current.kid.startswith("env-")
    assert bare.current.key == first.key
    with pytest.raises(VaultError) as malformed:
        keys_from_env("a:not-a-key-but-almost")
    assert "not-a-key" not in str(malformed.value)


def test_the_key_file_is_created_private_and_rotation_keeps_every_old_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.json"
    created = KeyFile(path).load(create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = created.seal(b"s3cr3t", OWNER)
    fresh = KeyFile(path).rotate()
    reloaded = KeyFile(path).load()
    assert reloaded.current.kid == fresh.kid and created.current.kid in reloaded.kids
    assert reloaded.open(sealed, OWNER) == b"s3cr3t"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text(json.dumps({"current": "zz", "keys": []}))
    with pytest.raises(VaultError, match="unreadable or malformed"):
        KeyFile(path).load()
    with pytest.raises(VaultError, match="does not exist"):
        KeyFile(tmp_path / "absent.json").load()


def test_a_leftover_file_where_a_key_file_is_written_does_not_lend_it_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "master.json"
    leftover = tmp_path / "master.json.new"  # from a write that crashed, readable by all
    leftover.write_text("{}")
    leftover.chmod(0o644)
    KeyFile(path).load(create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_opened_credential_never_shows_its_secret_in_a_repr() -> None:
    from bastion.catalog.snapshot import OriginSpec
    from bastion.vault.credentials import open_credential, seal_credential

    keys = MasterKeys(MasterKey.generate("k1"))
    sealed = seal_credential(keys, "default", "o1", {"mode": "bearer", "token": "s3cr3t-value"})
    credential = open_credential(keys, "default", "o1", "bearer", sealed)
    assert credential is not None and credential.headers == (("authorization", "Bearer s3cr3t-value"),)
    spec = OriginSpec("o1", "crm", "http", "http://x/mcp", None, None, credential=credential)
    assert "s3cr3t" not in repr(spec) and "s3cr3t" not in str(credential)
    # Opened for another origin, it does not open, and the error says so without the value.
    failed = open_credential(keys, "default", "o2", "bearer", sealed)
    assert failed is not None and failed.headers == () and failed.error is not None and "s3cr3t" not in failed.error


def test_processes_creating_the_key_file_at_once_all_end_up_with_the_same_key(tmp_path: Path) -> None:
    """A server and a CLI command (or replicas on one volume) starting together: one creates the file,
    every other reads that one; none overwrites a key another may already have sealed with."""
    path = tmp_path / "keys" / "master.json"
    script = (
        "import sys, time; from pathlib import Path; from bastion.vault.keys import KeyFile; "
        "start = float(sys.argv[2]); time.sleep(max(0.0, start - time.time())); "
        "print(KeyFile(Path(sys.argv[1])).load(create=True).current.kid)"
    )
    start = time.time() + 1.0
    runs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(start)], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    kids = {run.communicate(timeout=60)[0].strip() for run in runs}
    assert len(kids) == 1 and kids == {KeyFile(path).load().current.kid}
    assert [p.name for p in path.parent.iterdir()] == ["master.json"]  # no temporary file left


def test_on_a_filesystem_without_hard_links_the_key_file_is_still_created_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SMB shares and some FUSE mounts refuse `link`: the file is then created in place, only if absent."""

    def no_links(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "master.json"
    created = KeyFile(path).load(create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KeyFile(path).load(create=True).current.kid == created.current.kid  # not made twice
    assert [p.name for p in tmp_path.iterdir()] == ["master.json"]
