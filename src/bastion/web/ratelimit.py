"""Per-client-address rate limits on the identity plane's public endpoints (authorize, sign-in,
registration, token); an IPv6 client is counted by its /64 (`address_group`).

Moving windows from the `limits` library, in the same storage as the pipeline's limiter: in
memory on one node, in Redis across replicas (so an attacker cannot multiply the budget by the
number of replicas). Refusals are 429 with `Retry-After`; a limiter that cannot be reached refuses.
"""

from __future__ import annotations

from limits import RateLimitItem, parse

from bastion.errors import TooManyRequests
from bastion.http.client_ip import address_group
from bastion.pipeline.windows import LimiterStorage, limiter_storage, spend

__all__ = ["RouteLimits"]


class RouteLimits:
    def __init__(self, rules: dict[str, str], storage: LimiterStorage | None = None) -> None:
        """`rules` maps a route name to a limit in the `limits` notation, e.g. "10/minute"; `storage`
        is shared with the pipeline's limiter (`bastion.pipeline.windows`)."""
        self._limiter = (storage or limiter_storage(None, "", 1.0)).moving()
        self._items: dict[str, RateLimitItem] = {route: parse(rule) for route, rule in rules.items()}

    async def hit(self, route: str, client: str) -> None:
        item = self._items.get(route)
        retry_after = None if item is None else await spend(self._limiter, item, "route", route, address_group(client))
        if retry_after is None:
            return
        raise TooManyRequests(
            f"too many {route} requests from this address: at most {item}; retry in {retry_after} s",
            retry_after=retry_after,
        )
