"""Bearer authentication against the snapshot's token map."""

from __future__ import annotations

import time

import pytest

from bastion.errors import Unauthenticated
from bastion.identity.bearer import authenticate_bearer
from bastion.identity.principal import Principal
from bastion.identity.tokens import TOKEN_PREFIX, hash_token, new_token


def _principal(expires_at: float) -> Principal:
    return Principal(
        token_id="t1",
        user_id="u1",
        username="ada",
        is_admin=False,
        scopes=frozenset({"mcp"}),
        server_ids=frozenset({"s1"}),
        expires_at=expires_at,
    )


def test_a_token_past_its_expiry_fails_even_while_the_snapshot_still_holds_it() -> None:
    token = new_token()
    tokens = {hash_token(token): _principal(expires_at=time.time() - 1)}
    with pytest.raises(Unauthenticated, match="expired"):
        authenticate_bearer(tokens, f"Bearer {token}")


def test_a_live_token_resolves_to_its_principal() -> None:
    token = new_token()
    principal = _principal(expires_at=time.time() + 60)
    assert authenticate_bearer({hash_token(token): principal}, f"bearer  {token}") is principal


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   "])
def test_missing_or_malformed_authorization_is_refused(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        authenticate_bearer({}, header)


def test_tokens_carry_256_random_bits_behind_a_scannable_prefix() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(t.startswith(TOKEN_PREFIX) and len(t) >= len(TOKEN_PREFIX) + 43 for t in tokens)
