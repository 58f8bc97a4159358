"""The origin token-exchange cache forgets what an origin refused: the next call exchanges afresh."""

from __future__ import annotations

from typing import Any, cast

from bastion.net import EgressPolicy
from bastion.oauth.downstream import DownstreamTokens
from bastion.oauth.downstream_exchange import TokenExchanger


def test_forgetting_a_users_token_at_one_origin_drops_theirs_there_and_nothing_else() -> None:
    exchanger = TokenExchanger(cast(Any, None), egress=EgressPolicy())  # forgetting mints nothing
    cache = exchanger._cache  # what `bearer` serves from before exchanging
    for origin, user in (("o1", "u1"), ("o1", "u2"), ("o2", "u1")):
        for scopes in (("read",), ("read", "write")):
            key = (origin, "https://as.example", "bastion-client", user, f"name-of-{user}", scopes)
            cache[key] = DownstreamTokens(
                access_token=f"{origin}-{user}", refresh_token=None, expires_at=None, scope=None
            )
    exchanger.forget("o1", "u1")
    assert sorted({(k[0], k[3]) for k in cache}) == [("o1", "u2"), ("o2", "u1")]
