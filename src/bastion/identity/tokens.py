"""API token secrets: 256 random bits, shown once, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

import orjson

__all__ = ["ACCESS_TOKEN_PREFIX", "TOKEN_PREFIX", "hash_token", "new_token", "same_secret", "spent_key"]

TOKEN_PREFIX = "bst_"  # noqa: S105 — a public marker, not a secret
ACCESS_TOKEN_PREFIX = TOKEN_PREFIX + "at_"  # every OAuth access token Bastion issues starts so


def new_token() -> str:
    """A fresh secret: the prefix makes leaked tokens easy to find by secret scanners."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # A fast hash is right here: the input has 256 bits of entropy, so there is
    # nothing to brute-force, and the hot path hashes on every request.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented secret (a CSRF token, say) with the expected one.
    As bytes: `secrets.compare_digest` raises TypeError (a 500) for text with non-ASCII characters."""
    return secrets.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def spent_key(kind: str, *parts: str) -> str:
    """The store's key for an id used up until it expires (`bastion.store.repos.spent`): a
    single-use assertion's issuer and `jti`, a signed-out session's id. A SHA-256 of the JSON of
    both, so no two different lists share a key and nothing stored is a usable id."""
    return hashlib.sha256(orjson.dumps([kind, *parts])).hexdigest()
