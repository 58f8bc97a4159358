"""How many refusals of MCP requests nobody could be identified for (no token or a bad one, an
`Origin` not allowed) one client address gets recorded in the audit trail, per window.

Why: each such refusal is a record in the trail of the server's tenant, written by whoever can
reach the endpoint. Without a bound, anyone could grow a tenant's trail (and its journal on disk)
at the rate they can send requests. Past the budget the request is answered 429 with
`Retry-After` and counted in the metrics, not recorded. Counted in the limiter's storage (Redis
across replicas); when that cannot be reached, refusals are recorded as before.
"""

from __future__ import annotations

from collections.abc import Callable

from limits import RateLimitItem, parse

from bastion.errors import TooManyRequests, Unavailable
from bastion.http.asgi import Scope
from bastion.pipeline.windows import LimiterStorage, Windows, spend

__all__ = ["RefusalBudget"]


class RefusalBudget:
    def __init__(self, rule: str, storage: LimiterStorage, client_address: Callable[[Scope], str]) -> None:
        self._item: RateLimitItem = parse(rule)
        self._windows: Windows = storage.moving()
        self._address = client_address

    async def exhausted(self, scope: Scope) -> TooManyRequests | None:
        """None while this address's refusals are still recorded; else the 429 to answer instead."""
        try:
            retry_after = await spend(self._windows, self._item, "mcp-refusals", self._address(scope))
        except Unavailable:
            return None  # the limiter is out of reach: record, as before there was a budget
        if retry_after is None:
            return None
        return TooManyRequests(
            f"too many refused requests from this address: at most {self._item}; retry in {retry_after} s "
            "with a valid token",
            retry_after=retry_after,
        )
