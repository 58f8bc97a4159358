"""HashiCorp Vault's transit engine as the vault's master key (the optional `vault` extra, `hvac`).

The key never leaves Vault: each data key is wrapped (`transit/encrypt/<key>`) and unwrapped
(`transit/decrypt/<key>`) by Vault, with the secret's owner as the AEAD's associated data, so
the envelope keeps its guarantee that a ciphertext moved to another row does not open. The
key id in a sealed secret is `vault:<key name>`; Vault's own key versions (`vault:vN:` in its
ciphertext) rotate underneath with `vault write -f transit/keys/<key>/rotate`, and a
`bastion keys rewrap` then moves every data key to the newest version.

Calls are synchronous (hvac uses `requests`); they happen when a secret is sealed or first
opened (a credential set, the snapshot loaded, a person's grant read into the cache), never
per forwarded request. The snapshot's loader opens origin credentials in a worker thread when a
key is remote (`remote`), and only those whose sealed value changed since its last load.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bastion.vault.envelope import VaultError, VaultUnavailable

__all__ = ["TransitKey"]

_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class TransitKey:
    # Vault's key versions change under one `kid`: `MasterKeys.rewrap` re-wraps through Vault always.
    rotates_underneath: ClassVar[bool] = True
    remote: ClassVar[bool] = True  # each unwrap is a network round trip

    kid: str
    _client: Any = field(repr=False)  # hvac.Client
    _name: str = ""
    _mount: str = "transit"

    @classmethod
    def connect(cls, addr: str, token: str | None, name: str, mount: str = "transit") -> TransitKey:
        if not name or "." in name:
            raise VaultError("the transit key name must be non-empty and without '.'")
        try:
            import hvac  # the optional `vault` extra
        except ImportError:
            raise VaultError("BASTION_VAULT_ADDR is set, but hvac is not: pip install 'bastion[vault]'") from None
        client = hvac.Client(url=addr, token=token, timeout=_TIMEOUT_SECONDS)
        return cls(f"vault:{name}", client, name, mount)

    def _call(self, action: str, **params: str) -> dict[str, Any]:
        import hvac.exceptions  # the optional `vault` extra

        transit = self._client.secrets.transit
        method = transit.encrypt_data if action == "encrypt" else transit.decrypt_data
        try:
            answer: dict[str, Any] = method(name=self._name, mount_point=self._mount, **params)["data"]
            return answer
        except hvac.exceptions.InvalidRequest:  # Vault's AEAD refused: another owner, or not its ciphertext
            raise VaultError(f"transit key {self._name!r} does not open this secret (refused to {action})") from None
        except hvac.exceptions.VaultError as exc:  # the message is Vault's; it carries no key material
            refusal = type(exc).__name__
            raise VaultUnavailable(f"Vault refused to {action} with transit key {self._name!r}: {refusal}") from None
        except Exception as exc:  # requests' connection errors: Vault is unreachable
            raise VaultUnavailable(f"Vault could not be reached to {action} ({type(exc).__name__})") from None

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        answer = self._call("encrypt", plaintext=_b64(data_key), associated_data=_b64(aad))
        return str(answer["ciphertext"]).encode()

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        answer = self._call("decrypt", ciphertext=wrapped.decode(), associated_data=_b64(aad))
        return base64.b64decode(answer["plaintext"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
