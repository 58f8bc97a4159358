"""Where master keys come from: the environment (`BASTION_MASTER_KEY`) or a key file.

Environment: comma-separated `kid:key` entries (key: 32 bytes, base64url); the first
seals, all open. A bare key gets an id derived from it. Rotation: put a new key
first and keep the old ones until `bastion keys rewrap` has run.

Key file (`BASTION_MASTER_KEY_FILE`): JSON `{"current": kid, "keys": [{"kid", "key"}]}`,
mode 0600, created with one fresh key when missing. `bastion keys rotate` adds a key and
makes it current, keeping every older key; the file is replaced atomically, never
truncated in place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bastion.vault.envelope import MasterKey, MasterKeys, VaultError

__all__ = ["KeyFile", "encode_key", "keys_from_env"]


def _decode(text: str, what: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        # The value itself is never echoed: a malformed key is nearly a real one.
        raise VaultError(f"{what}: each key is 32 random bytes in base64url")
    return key


def keys_from_env(value: str) -> MasterKeys:
    keys: list[MasterKey] = []
    for entry in (part.strip() for part in value.split(",") if part.strip()):
        kid, sep, encoded = entry.rpartition(":")
        key = _decode(encoded if sep else entry, "BASTION_MASTER_KEY")
        keys.append(MasterKey(kid if sep else "env-" + hashlib.sha256(key).hexdigest()[:12], key))
    if not keys:
        raise VaultError("BASTION_MASTER_KEY is empty")
    return MasterKeys(keys[0], keys[1:])


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


class KeyFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, *, create: bool = False) -> MasterKeys:
        if not self.path.exists():
            if not create:
                raise VaultError(f"master key file {self.path} does not exist")
            first = MasterKey.generate()
            self._write(first.kid, [first], exclusive=True)
        try:
            document = self._read()
            entries = [MasterKey(str(e["kid"]), _decode(str(e["key"]), str(self.path))) for e in document["keys"]]
            current = next(k for k in entries if k.kid == document["current"])
        except (OSError, ValueError, KeyError, TypeError, StopIteration):
            raise VaultError(f"master key file {self.path} is unreadable or malformed") from None
        return MasterKeys(current, entries)

    def _read(self) -> Any:
        # A file another process is creating in place (`_create_in_place`) may be read short: read
        # again for up to a second, then take what the file says (a malformed file is malformed).
        for _ in range(19):
            try:
                return json.loads(self.path.read_text(encoding="utf-8"))
            except ValueError:
                time.sleep(0.05)
        return json.loads(self.path.read_text(encoding="utf-8"))

    def rotate(self) -> MasterKey:
        """Add a fresh key and make it current; every older key stays (old secrets still open)."""
        keys = self.load()
        fresh = MasterKey.generate()
        local = [k for k in keys.kids.values() if isinstance(k, MasterKey)]  # a key file holds only these
        self._write(fresh.kid, [*local, fresh])
        return fresh

    def _create_in_place(self, document: Mapping[str, object]) -> None:
        """Create the file only if absent, written in place (a reader meanwhile may find it short:
        `load` reads again then)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())

    def _write(self, current: str, keys: list[MasterKey], *, exclusive: bool = False) -> None:
        """Write the key file whole, atomically. `exclusive` (its creation): only if there is none
        yet. Two processes starting at once (a server and a CLI command, replicas on one volume)
        would otherwise each make a key and the last write win, leaving what the other sealed
        (its canary, its signing keys) unreadable; the second one reads the first one's file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {"current": current, "keys": [{"kid": k.kid, "key": encode_key(k.key)} for k in keys]}
        temporary = self.path.with_name(f"{self.path.name}.new-{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            if exclusive:
                try:
                    os.link(temporary, self.path)  # atomic, and refused when the file exists
                except FileExistsError:
                    pass  # made by another process meanwhile: `load` reads that one
                except OSError:  # a filesystem without hard links (SMB, some FUSE mounts)
                    self._create_in_place(document)
            else:
                os.replace(temporary, self.path)  # atomic: a crash leaves the old file or the new, never half
        finally:
            temporary.unlink(missing_ok=True)
