"""Per-user OAuth origins (scenario B): what the vault seals for them.

Two kinds of secret:

* the origin's OAuth configuration, sealed like a service credential under the origin's
  owner: its authorization server's endpoints as discovered, Bastion's client registration
  there (its secret, when it has one), the scopes to ask for, and optionally a service
  client whose client_credentials grant Bastion uses for its own requests (handshake,
  discovery), so that those never depend on one person's grant;
* each person's tokens at that server, sealed under `grant_owner(...)`: the tenant, the
  user, the origin, the issuer and the resource. A ciphertext copied to another person's
  row, or to another origin's, does not open.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from bastion.oauth.downstream import DownstreamClient, DownstreamServer, DownstreamTokens
from bastion.vault.envelope import MasterKeys, VaultError

__all__ = ["OAuthOrigin", "connect_owner", "grant_owner", "open_tokens", "parse_oauth_origin", "seal_tokens"]


@dataclass(frozen=True)
class OAuthOrigin:
    server: DownstreamServer
    client: DownstreamClient  # for people's authorization code grants
    scope: str | None = None
    service: DownstreamClient | None = None  # client_credentials, for requests made for no person

    def to_secret(self, mode: str = "oauth") -> dict[str, Any]:
        secret: dict[str, Any] = {
            "mode": mode,
            "server": asdict(self.server),
            "client": asdict(self.client),
            "scope": self.scope,
        }
        if self.service is not None:
            secret["service"] = asdict(self.service)
        return secret


def _client(data: dict[str, Any]) -> DownstreamClient:
    return DownstreamClient(
        client_id=str(data["client_id"]),
        redirect_uris=tuple(data.get("redirect_uris") or ()),
        client_secret=data.get("client_secret"),
        token_endpoint_auth_method=str(data.get("token_endpoint_auth_method") or "none"),
    )


def parse_oauth_origin(secret: dict[str, Any]) -> OAuthOrigin:
    """The configuration back from its sealed JSON; KeyError/TypeError/ValueError when malformed."""
    server = dict(secret["server"])
    server["scopes_supported"] = tuple(server.get("scopes_supported") or ())
    service = secret.get("service")
    return OAuthOrigin(
        server=DownstreamServer(**server),
        client=_client(secret["client"]),
        scope=secret.get("scope"),
        service=_client(service) if service else None,
    )


def grant_owner(tenant_id: str, user_id: str, origin_id: str, issuer: str, resource: str) -> str:
    # JSON, so no value (an issuer URL may hold any character) can shift into another field.
    return (
        json.dumps(
            {"tenant": tenant_id, "user": user_id, "origin": origin_id, "issuer": issuer, "resource": resource},
            separators=(",", ":"),
        )
        + ";purpose=downstream-grant"
    )


def connect_owner(state_hash: str, issuer: str) -> str:
    """The owner of a connection attempt's sealed PKCE verifier: the attempt's state and server."""
    return json.dumps({"state": state_hash, "issuer": issuer}, separators=(",", ":")) + ";purpose=connect"


def seal_tokens(keys: MasterKeys, owner: str, tokens: DownstreamTokens) -> str:
    return keys.seal(json.dumps(asdict(tokens), separators=(",", ":")).encode(), owner)


def open_tokens(keys: MasterKeys, owner: str, sealed: str) -> DownstreamTokens:
    try:
        data = json.loads(keys.open(sealed, owner))
        return DownstreamTokens(
            access_token=str(data["access_token"]),
            refresh_token=data.get("refresh_token"),
            expires_at=data.get("expires_at"),
            scope=data.get("scope"),
            issued_at=data.get("issued_at"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise VaultError(f"a sealed grant is malformed ({type(exc).__name__})") from exc
