"""How many refusals of requests nobody could be identified for (no token or a bad one, an `Origin`
not allowed) one client address gets recorded in the audit trail, per window: the MCP endpoint's,
and the control plane's (`request_audit`), each a budget of its own (`label`).

Why: each such refusal is a record in the trail of the server's tenant, written by whoever can
reach the endpoint. Without a bound, anyone could grow a tenant's trail (and its journal on disk)
at the rate they can send requests. Past the budget the request is answered as before (401 with
its challenge: a client behind the same address still learns how to get a token) and counted in
the metrics, not recorded. Counted in the limiter's storage (Redis across replicas); when that
cannot be reached, refusals are recorded as before.
"""

from __future__ import annotations

from collections.abc import Callable

from limits import RateLimitItem, parse

from bastion.errors import Unavailable
from bastion.http.asgi import Scope
from bastion.http.client_ip import address_group
from bastion.pipeline.windows import LimiterStorage, Windows, spend

__all__ = ["RefusalBudget"]


class RefusalBudget:
    def __init__(
        self, rule: str, storage: LimiterStorage, client_address: Callable[[Scope], str], label: str = "mcp-refusals"
    ) -> None:
        """`label`: whose budget (the MCP endpoint's, the control plane's): each its own window."""
        self._item: RateLimitItem = parse(rule)
        self._windows: Windows = storage.moving()
        self._address = client_address
        self._label = label

    async def recorded(self, scope: Scope) -> bool:
        """Whether this refusal goes in the trail: within the address's budget."""
        try:
            group = address_group(self._address(scope))  # an IPv6 client by its /64
            return await spend(self._windows, self._item, self._label, group) is None
        except Unavailable:
            return True  # the limiter is out of reach: record, as before there was a budget
