"""RFC 6749 §4.4 — the client_credentials grant, as the MCP "OAuth Client Credentials" extension profiles it.

Machine-to-machine access with no person in the loop: a service client an
administrator created authenticates with its secret and gets an access token
for one of its virtual servers. The token acts as the client's owner user
(its `sub`), so every policy keyed on users applies to it unchanged.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping

from bastion.catalog.snapshot import Snapshot
from bastion.errors import InvalidScope, UnauthorizedClient
from bastion.identity.principal import SCOPE_MCP, scope_satisfied
from bastion.oauth.provider import Client, Grant
from bastion.oauth.resources import InvalidTarget, server_for_resource
from bastion.oauth.scopes import grantable_scopes
from bastion.oauth.token import TokenIssuer, TokenResponse

__all__ = ["CLIENT_CREDENTIALS", "ClientCredentialsGrant", "held_scopes", "scopes_within"]

CLIENT_CREDENTIALS = "client_credentials"


def held_scopes(client: Client) -> tuple[str, ...]:
    """The scopes an administrator gave a service client; none written means the default, `mcp`."""
    return tuple(client.scope.split()) or (SCOPE_MCP,)


def scopes_within(requested: str | None, held: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 6749 §3.3: the requested scopes, narrowed to what is held; none requested means all held.

    Scopes nest (`mcp` covers `mcp:read`), so the overlap is taken both ways: a requested
    scope the holder covers is kept, and a held scope inside a requested one is kept too
    (asking for `mcp` while holding `mcp:read` yields `mcp:read`). The token response's
    `scope` then tells the client what it got (§5.1).
    """
    if not requested:
        return held
    wanted = grantable_scopes(requested)  # invalid_scope for names this server does not grant
    kept = [scope for scope in wanted if scope_satisfied(scope, held)]
    kept += [scope for scope in held if any(scope_satisfied(scope, (want,)) for want in wanted)]
    overlap = tuple(dict.fromkeys(kept))
    if not overlap:
        raise InvalidScope(f"none of the requested scopes is granted to this client; it holds {' '.join(held)}")
    return overlap


class ClientCredentialsGrant:
    def __init__(self, issuer: TokenIssuer, snapshot: Callable[[], Snapshot], url: str) -> None:
        self._issuer = issuer
        self._snapshot = snapshot
        self._url = url

    async def __call__(self, form: Mapping[str, str], client: Client, now: float) -> TokenResponse:
        # RFC 6749 §4.4.2 / OAuth 2.1 §4.2: only confidential clients may use this grant. The token
        # endpoint has already checked the secret; a public client has none to check.
        if client.secret_hash is None or client.owner_user_id is None:
            raise UnauthorizedClient("the client_credentials grant is only for service clients with a client secret")
        # MCP authorization: `resource` is required and binds the token to one server (RFC 8707 §2).
        server = server_for_resource(self._snapshot(), self._url, form.get("resource"))
        if server.id not in client.server_ids:
            raise InvalidTarget(f"this client is not allowed to reach {form['resource']}")
        scopes = scopes_within(form.get("scope"), held_scopes(client))
        grant = Grant(
            family_id=secrets.token_hex(16),
            client_id=client.client_id,
            user_id=client.owner_user_id,  # the service acts as the user who owns it
            server_id=server.id,
            scopes=scopes,
        )
        # RFC 6749 §4.4.3: a refresh token SHOULD NOT be included; the client just asks again.
        return await self._issuer.issue(grant, refresh=False, now=now)
