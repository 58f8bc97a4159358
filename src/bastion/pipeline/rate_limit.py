"""Rate limits per person, per item and per virtual server: sliding windows from the `limits` library.

A sliding-window counter (two counters per key, the previous window weighted by how much of it
still overlaps) rather than a moving window, which keeps one entry per call: at a high limit, a
list of every call of the last minute, copied and trimmed as it goes.

In memory on a single node; in Redis when replicas share one (`BASTION_REDIS_URL`), so every
replica spends from one budget (`bastion.pipeline.windows`). A limiter that cannot be reached denies (503): a limit that
cannot be counted is not enforced by letting everything through.
"""

from __future__ import annotations

from limits import RateLimitItem, parse

from bastion.errors import TooManyRequests
from bastion.pipeline.base import ALLOW, CallContext, Decision, StageBase
from bastion.pipeline.config import RateLimitSettings
from bastion.pipeline.windows import LimiterStorage, spend

__all__ = ["RateLimit"]


class RateLimit(StageBase):
    name = "rate_limit"

    def __init__(self, storage: LimiterStorage) -> None:
        self._limiter = storage.sliding()
        self._parsed: dict[str, RateLimitItem] = {}

    async def on_request(self, ctx: CallContext) -> Decision:
        settings: RateLimitSettings = ctx.settings["rate_limit"]
        if not settings.enabled:
            return ALLOW
        # Most specific first: a call one person may not make spends nothing of the server's budget.
        # An item is counted by its origin's name for it, so two aliases share one budget.
        item = f"{ctx.item.origin}/{ctx.item.upstream_name}"
        checks = (
            ("per_tool", settings.per_tool, (ctx.tenant_id, ctx.server, ctx.principal_id, item)),
            ("per_principal", settings.per_principal, (ctx.tenant_id, ctx.server, ctx.principal_id)),
            ("per_server", settings.per_server, (ctx.tenant_id, ctx.server)),
        )
        for label, rule, key in checks:
            if rule is None:
                continue
            limit = self._item(rule)
            retry_after = await spend(self._limiter, limit, label, *key)  # Unavailable: the chain denies
            if retry_after is None:
                continue
            whom = {"per_server": "this server", "per_principal": "you", "per_tool": f"you on {ctx.item.exposed_name}"}
            return Decision.deny(
                TooManyRequests(
                    f"rate limit reached for {whom[label]}: at most {limit}; retry in {retry_after} s",
                    retry_after=retry_after,
                ),
                detail={"limit": label},
            )
        return ALLOW

    def _item(self, rule: str) -> RateLimitItem:
        item = self._parsed.get(rule)
        if item is None:
            item = self._parsed[rule] = parse(rule)
        return item
