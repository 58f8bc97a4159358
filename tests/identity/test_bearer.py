"""Bearer authentication against the snapshot's token map."""

from __future__ import annotations

import time

import pytest

from bastion.errors import Unauthenticated
from bastion.identity.bearer import BearerResolver, authenticate_bearer
from bastion.identity.principal import Principal
from bastion.identity.tokens import ACCESS_TOKEN_PREFIX, TOKEN_PREFIX, hash_token, new_token


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


class _Store:
    """The store's side of OAuth access tokens: what it holds, and how often it was asked."""

    def __init__(self, held: dict[str, Principal]) -> None:
        self.held = held
        self.asked: list[str] = []

    async def __call__(self, token_hash: str) -> Principal | None:
        self.asked.append(token_hash)
        return self.held.get(token_hash)


@pytest.mark.anyio
async def test_made_up_tokens_cost_no_lookup_or_one_and_never_push_out_a_real_one() -> None:
    real = ACCESS_TOKEN_PREFIX + "real"
    principal = _principal(expires_at=time.time() + 60)
    store = _Store({hash_token(real): principal})
    resolver = BearerResolver(store, max_entries=8)

    async def present(token: str) -> Principal:
        return await resolver.authenticate({}, 1, f"Bearer {token}")

    assert await present(real) is principal and len(store.asked) == 1
    with pytest.raises(Unauthenticated):
        await present("not-shaped-like-an-access-token")
    assert len(store.asked) == 1  # refused without asking the store
    made_up = [f"{ACCESS_TOKEN_PREFIX}guess-{n}" for n in range(30)]
    for token in made_up:
        with pytest.raises(Unauthenticated):
            await present(token)
    assert len(store.asked) == 31  # each looked up once
    assert await present(real) is principal and len(store.asked) == 31  # still known: not asked again
    with pytest.raises(Unauthenticated):
        await present(made_up[-1])  # a recent miss is remembered
    assert len(store.asked) == 31
    with pytest.raises(Unauthenticated):
        await present(made_up[0])  # the oldest misses were forgotten: asked again
    assert len(store.asked) == 32
    await resolver.authenticate({}, 2, f"Bearer {real}")  # a new epoch (a revocation) asks again
    assert len(store.asked) == 33
