"""Bearer authentication against the snapshot's token map (no store access)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from bastion.errors import Unauthenticated
from bastion.identity.principal import Principal
from bastion.identity.tokens import hash_token

__all__ = ["authenticate_bearer"]


def authenticate_bearer(tokens: Mapping[str, Principal], authorization: str | None) -> Principal:
    """The principal for an `Authorization: Bearer …` header; Unauthenticated otherwise."""
    if authorization is None:
        raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    principal = tokens.get(hash_token(token.strip()))
    # Expiry is checked here, per request: the snapshot may predate the expiry instant.
    if principal is None or principal.expires_at <= time.time():
        raise Unauthenticated("the token is invalid, expired or revoked")
    return principal
