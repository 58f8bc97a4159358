"""API token secrets: 256 random bits, shown once, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["TOKEN_PREFIX", "hash_token", "new_token"]

TOKEN_PREFIX = "bst_"  # noqa: S105 — a public marker, not a secret


def new_token() -> str:
    """A fresh secret: the prefix makes leaked tokens easy to find by secret scanners."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # A fast hash is right here: the input has 256 bits of entropy, so there is
    # nothing to brute-force, and the hot path hashes on every request.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
