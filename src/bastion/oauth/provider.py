"""What the authorization server keeps, as records and a storage `Protocol`.

`bastion.store.repos.oauth` implements `OAuthStore` on SQLAlchemy; the OAuth
modules depend only on this file. Secrets (codes, tokens, client secrets) are
passed and stored as SHA-256 hashes: the store never sees one in the clear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["Client", "CodeRecord", "Grant", "OAuthStore", "TokenRecord", "UserRecord"]

ClientKind = Literal["dynamic", "service", "metadata_document"]


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    kind: ClientKind
    client_name: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    token_endpoint_auth_method: str  # none | client_secret_basic | client_secret_post
    application_type: str = "web"  # RFC 7591 / OIDC Registration: web | native
    scope: str = ""
    secret_hash: str | None = field(default=None, repr=False)
    owner_user_id: str | None = None  # service clients act as their owner
    server_ids: tuple[str, ...] = ()  # service clients: the virtual servers they may reach
    # A service client set up by someone else for its owner: what it may do as the owner, at most
    # (what its creator held then). None: the owner's roles decide alone.
    permissions: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """Who was granted what: shared by a code and every token issued from it (one family)."""

    family_id: str
    client_id: str
    user_id: str
    server_id: str
    scopes: tuple[str, ...]
    # Token exchange: the hash of the subject token it was issued for (its tokens die with it).
    source: str | None = None


@dataclass(frozen=True, slots=True)
class CodeRecord:
    code_hash: str
    grant: Grant
    redirect_uri: str
    code_challenge: str
    expires_at: float
    nonce: str | None = None
    used: bool = False


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_hash: str
    kind: Literal["access", "refresh"]
    grant: Grant
    expires_at: float
    issued_at: float
    used: bool = False  # refresh tokens: already rotated
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    username: str
    is_admin: bool
    roles: tuple[str, ...] = ()
    tenant_id: str = "default"  # the organization the person belongs to


class OAuthStore(Protocol):
    async def get_client(self, client_id: str) -> Client | None: ...

    async def add_client(self, client: Client, registration: dict[str, Any]) -> None: ...

    async def save_code(self, code: CodeRecord) -> None: ...

    async def take_code(self, code_hash: str, now: float, client_id: str) -> CodeRecord | None:
        """The code as it was, marking it used in the same transaction (`used` tells a replay); None
        when it was not issued to `client_id`, which then leaves it as it was (RFC 9700 §4.14.2:
        another client, without this one's credentials, cannot spend it and so revoke its grant)."""
        ...

    async def save_tokens(
        self,
        grant: Grant,
        tokens: list[tuple[str, str, float]],
        issued_at: float,
        *,
        access_scopes: tuple[str, ...] | None = None,
    ) -> None:
        """Store (token_hash, kind, expires_at) rows of one grant, issued at `issued_at` (the clock
        reading their expiries were computed from, so `exp - iat` is exactly the lifetime), in one
        transaction: all of them or none. `access_scopes`: the access rows' scopes, when narrower
        than the grant's (RFC 6749 §6: a refresh token keeps the grant's).

        `InvalidGrant`, and nothing stored, when the grant's family was revoked, or its `source`
        token (or that token's family) was: ordered against `revoke_family` and `revoke_token`, so
        tokens saved while either runs are revoked with the rest."""
        ...

    async def take_refresh(self, token_hash: str, now: float, client_id: str) -> TokenRecord | None:
        """The refresh token as it was, marking it used in the same transaction; None, leaving it
        as it was, when it was not issued to `client_id` (as for `take_code`)."""
        ...

    async def give_back(self, kind: Literal["code", "refresh"], token_hash: str, taken_at: float) -> None:
        """Undo `take_code` (`kind` "code") or `take_refresh` ("refresh") made at `taken_at`, when
        what it was taken for was not issued because the store failed: the client's retry must not
        look like a replay, which revokes the grant. Only the take made then is undone."""
        ...

    async def find_token(self, token_hash: str) -> TokenRecord | None: ...

    async def revoke_family(self, family_id: str) -> None:
        """Revoke every token of a grant, and tell every replica (epoch bump)."""
        ...

    async def revoke_token(self, token_hash: str) -> TokenRecord | None:
        """Revoke one token as RFC 7009 asks: a refresh token takes its whole family with it, and
        every token exchanged for the revoked ones goes too.

        Returns the token as it was before, or None when there is no such token.
        """
        ...

    async def use_once(self, key: str, expires_at: float, now: float) -> bool:
        """Mark a single-use assertion (RFC 7523 §3 item 7) used until `expires_at`; False when it
        was already, by any replica."""
        ...

    async def get_user(self, user_id: str) -> UserRecord | None: ...

    async def find_user_by_name(self, username: str) -> UserRecord | None:
        """The local user with exactly this user name (identity assertions map to it)."""
        ...

    async def consented_scopes(self, user_id: str, client_id: str, server_id: str) -> frozenset[str] | None: ...

    async def save_consent(self, user_id: str, client_id: str, server_id: str, scopes: frozenset[str]) -> None: ...
