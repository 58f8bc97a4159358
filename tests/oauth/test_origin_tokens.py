"""Tokens Bastion mints for origins: cached per user while fresh; single-use assertions never reused."""

from __future__ import annotations

import base64
import json
from typing import Any

from bastion.oauth.keys import KeyRing
from bastion.oauth.origin_tokens import OriginTokens

NOW = 1_700_000_000.0


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def _mint(tokens: OriginTokens, **extra: Any) -> str:
    return tokens.mint(
        audience="https://as.example", subject="u1", tenant_id="t", scopes=("mcp",), lifetime=120, **extra
    )


def test_a_fresh_token_is_reused_but_a_single_use_one_is_new_every_time() -> None:
    ring = KeyRing.fresh(NOW)
    tokens = OriginTokens(lambda: ring, "https://bastion.example", now=lambda: NOW)
    assert _mint(tokens) == _mint(tokens)  # one signature per user while the token is fresh
    first, second = _mint(tokens, single_use=True), _mint(tokens, single_use=True)
    assert first != second and _claims(first)["jti"] != _claims(second)["jti"]
    assert _mint(tokens, single_use=True) not in (first, second, _mint(tokens))
