"""RFC 7636 — Proof Key for Code Exchange, S256 only (OAuth 2.1 §4.1.1; MCP authorization)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

from bastion.errors import BadRequest, InvalidGrant

__all__ = ["check_challenge", "verify"]

# RFC 7636 §4.1: 43-128 characters of [A-Z a-z 0-9 - . _ ~]; §4.2: S256 challenges are 43.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


def check_challenge(challenge: str | None, method: str | None) -> str:
    """The authorization request's challenge, refused unless it is S256."""
    if not challenge:
        raise BadRequest("code_challenge is required: PKCE with S256 protects every authorization code")
    if method != "S256":
        # RFC 7636 §4.3 would default a missing method to "plain"; OAuth 2.1 and MCP require S256.
        raise BadRequest("code_challenge_method must be S256 (plain is not accepted)")
    if not _CHALLENGE.fullmatch(challenge):
        raise BadRequest("code_challenge must be the 43-character base64url SHA-256 of the verifier")
    return challenge


def verify(verifier: str | None, challenge: str) -> None:
    """RFC 7636 §4.6: BASE64URL(SHA256(verifier)) must equal the stored challenge."""
    if not verifier or not _VERIFIER.fullmatch(verifier):
        raise InvalidGrant("code_verifier is missing or malformed (RFC 7636 §4.1)")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    if not secrets.compare_digest(computed, challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")
