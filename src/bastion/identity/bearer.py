"""Bearer authentication: API tokens from the snapshot, OAuth access tokens on first sight.

The hot path touches no store: API tokens live in the snapshot's map, and an
OAuth access token is looked up once, then served from a cache that belongs to
one snapshot epoch. Every revocation bumps the epoch, so the next request on
any replica sees a fresh, empty cache and asks the store again.

Unknown tokens cost as little as can be: one not shaped like Bastion's access
tokens is refused without a lookup, and the ones that were looked up in vain
are kept apart from the found ones (oldest forgotten first), so a client
sending made-up tokens by the thousand never pushes a real one out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from bastion.errors import Unauthenticated
from bastion.identity.principal import Principal
from bastion.identity.tokens import ACCESS_TOKEN_PREFIX, hash_token

__all__ = ["BearerResolver", "TokenLookup", "authenticate_bearer", "bearer_token"]


class TokenLookup(Protocol):
    """The store's answer for an OAuth access token hash: its principal, or None."""

    async def __call__(self, token_hash: str) -> Principal | None: ...


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer …` header (RFC 6750 §2.1); Unauthenticated otherwise."""
    if authorization is None:
        raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _live(principal: Principal | None) -> Principal:
    # Expiry is checked here, per request: the snapshot or cache may predate the expiry instant.
    if principal is None or principal.expires_at <= time.time():
        raise Unauthenticated("the token is invalid, expired or revoked")
    return principal


def authenticate_bearer(tokens: Mapping[str, Principal], authorization: str | None) -> Principal:
    """The principal for an API token held in the snapshot; Unauthenticated otherwise."""
    return _live(tokens.get(hash_token(bearer_token(authorization))))


class BearerResolver:
    def __init__(self, lookup: TokenLookup | None, *, max_entries: int = 100_000) -> None:
        self._lookup = lookup
        self._max_entries = max_entries
        self._epoch = -1
        self._found: dict[str, Principal] = {}
        self._missing: dict[str, None] = {}  # looked up in vain, oldest first

    async def authenticate(self, tokens: Mapping[str, Principal], epoch: int, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        digest = hash_token(token)
        principal = tokens.get(digest)
        if principal is not None or self._lookup is None or not token.startswith(ACCESS_TOKEN_PREFIX):
            return _live(principal)
        if epoch != self._epoch:
            self._found.clear()
            self._missing.clear()
            self._epoch = epoch
        principal = self._found.get(digest)
        if principal is not None or digest in self._missing:
            return _live(principal)
        principal = await self._lookup(digest)
        if epoch == self._epoch:  # a newer epoch may have cleared the caches meanwhile
            if principal is None:
                if len(self._missing) >= self._max_entries:
                    del self._missing[next(iter(self._missing))]
                self._missing[digest] = None
            else:
                if len(self._found) >= self._max_entries:
                    self._found.clear()  # bounded; only live tokens, looked up once each, fill it
                self._found[digest] = principal
        return _live(principal)
