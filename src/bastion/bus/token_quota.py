"""API token quotas shared by the replicas: one Redis counter per quota-limited token.

The key `{ns}:token-uses:{token_id}` holds the token's total counted uses. One Lua script
(atomic: replicas never overshoot together) raises it to at least the count the replica's
snapshot loaded from the store (which covers a key lost in a Redis restart, up to the uses not
yet persisted by the batch writers), refuses when the quota is reached, and otherwise counts the
use. The key expires shortly after the token does. Tokens without a quota never reach Redis.

Fail closed: when Redis cannot be reached the use is refused with `Unavailable` (503), as every
other request is whose freshness cannot be confirmed.
"""

from __future__ import annotations

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from bastion.errors import Unavailable
from bastion.identity.token_rules import TokenRules, quota_exhausted

__all__ = ["RedisQuota"]

log = structlog.get_logger(__name__)

# KEYS: counter. ARGV: count in the store at snapshot load, max uses, expiry (ms since epoch).
# Returns the new count, or -1 when the quota is used up (nothing counted).
_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > used then used = floor end
if used >= tonumber(ARGV[2]) then return -1 end
redis.call('SET', KEYS[1], used + 1)
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return used + 1
"""

_UNREACHABLE = "cannot count this use against the token's quota: Redis is unreachable; retry shortly"
_GRACE_MS = 3_600_000  # the counter outlives the token by an hour (clock skew between replicas)


class RedisQuota:
    def __init__(self, url: str, *, namespace: str, timeout: float) -> None:
        self._redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1)
        )
        self._script = self._redis.register_script(_TAKE)
        self._prefix = f"{namespace}:token-uses:"

    async def take(self, token_id: str, rules: TokenRules, expires_at: float) -> None:
        if rules.max_uses is None:
            return
        expiry_ms = int(expires_at * 1000) + _GRACE_MS
        try:
            count = await self._script(
                keys=[self._prefix + token_id], args=[rules.uses_at_load, rules.max_uses, expiry_ms]
            )
        except (RedisError, OSError) as exc:
            log.warning("token_quota_unreachable", error=type(exc).__name__)
            raise Unavailable(_UNREACHABLE) from None
        if int(count) < 0:
            raise quota_exhausted(rules)

    async def aclose(self) -> None:
        await self._redis.aclose()
