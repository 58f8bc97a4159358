"""An API token's own limits (source networks, validity start, usage quota) and its per-use record.

`TokenRules` lives in the snapshot, on the token's `Principal` (OAuth tokens have none), and
`check_use` decides a use from it without I/O. The quota needs a count shared by the requests
(and, with Redis, by the replicas), so it is a separate step (`UseQuota.take`), run once the
request is otherwise authorized: a refused use is never counted.

Every use of an API token, allowed or blocked, becomes one `TokenUse`, handed to a `UseLog`
(the store's batch writer; this package never imports the store). `TokenGate` ties the steps
together for the two planes that accept API tokens; `UseRecorder` wraps the ASGI `send` to read
the response status and the latency.

Nothing here imports the store, a web framework or SQLAlchemy (import-linter contract).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import TYPE_CHECKING, Any, Protocol

from bastion.errors import Forbidden, Unavailable

if TYPE_CHECKING:  # principal.py imports TokenRules at run time
    from bastion.identity.principal import Principal

__all__ = [
    "REASON_NOT_YET_VALID",
    "REASON_QUOTA_EXHAUSTED",
    "REASON_QUOTA_UNAVAILABLE",
    "REASON_SOURCE_ADDRESS",
    "RECORDER_SCOPE_KEY",
    "LocalQuota",
    "TokenGate",
    "TokenRefused",
    "TokenRules",
    "TokenUse",
    "UseLog",
    "UseQuota",
    "UseRecorder",
    "check_use",
    "quota_exhausted",
]

Network = IPv4Network | IPv6Network

# Short machine reasons, stored with a blocked use (`api_token_uses.block_reason`).
REASON_SOURCE_ADDRESS = "source_address"
REASON_NOT_YET_VALID = "not_yet_valid"
REASON_QUOTA_EXHAUSTED = "quota_exhausted"
REASON_QUOTA_UNAVAILABLE = "quota_unavailable"  # the shared counter (Redis) could not be reached

# No client connects from the unspecified address: the networks of a token whose stored
# ranges all failed to parse, so that it is usable from nowhere rather than from anywhere.
_NOWHERE: tuple[Network, ...] = (ip_network("0.0.0.0/32"), ip_network("::/128"))


class TokenRefused(Forbidden):
    """A token's own rules refused this use; `reason` is the short machine reason that is logged."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenRules:
    """An API token's limits as loaded into the snapshot."""

    networks: tuple[Network, ...] = ()  # empty: any source address
    not_before: float | None = None  # POSIX seconds
    max_uses: int | None = None  # None: unlimited
    uses_at_load: int = 0  # counted uses persisted in the store when the snapshot was built

    @classmethod
    def build(cls, cidrs: Iterable[str], not_before: datetime | None, max_uses: int | None, uses: int) -> TokenRules:
        """From the stored columns. Ranges are validated when stored; one that does not parse
        (edited by hand) is dropped, and a token left with none is usable from nowhere."""
        texts = list(cidrs)
        networks: list[Network] = []
        for text in texts:
            try:
                networks.append(ip_network(str(text), strict=False))
            except ValueError:
                continue
        if texts and not networks:
            networks = list(_NOWHERE)
        return cls(
            networks=tuple(networks),
            not_before=None if not_before is None else not_before.timestamp(),
            max_uses=max_uses,
            uses_at_load=uses,
        )


def _address(ip: str) -> IPv4Address | IPv6Address | None:
    try:
        address = ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 on a dual-stack socket is 10.0.0.1
    return address


def _instant(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def quota_exhausted(rules: TokenRules) -> TokenRefused:
    return TokenRefused(
        f"this token's quota of {rules.max_uses} uses is used up: ask its owner for a new token",
        reason=REASON_QUOTA_EXHAUSTED,
    )


def check_use(rules: TokenRules, ip: str, now: float) -> None:
    """Decide one use of a token from `ip` at `now` (POSIX seconds); TokenRefused when refused.

    Checks the source address, then the validity start, then whether the quota was already
    used up when the snapshot was loaded (the exact count is `UseQuota.take`'s job).
    """
    if rules.networks:
        address = _address(ip)
        if address is None or not any(address in network for network in rules.networks):
            shown = ip or "an unknown address"
            raise TokenRefused(
                f"this token may not be used from {shown}: it is limited to other source networks; "
                "use it from an allowed network or ask its owner to allow this one",
                reason=REASON_SOURCE_ADDRESS,
            )
    if rules.not_before is not None and now < rules.not_before:
        raise TokenRefused(
            f"this token is not valid before {_instant(rules.not_before)}: retry after that time",
            reason=REASON_NOT_YET_VALID,
        )
    if rules.max_uses is not None and rules.uses_at_load >= rules.max_uses:
        raise quota_exhausted(rules)


class UseQuota(Protocol):
    """Counts quota-limited uses: in this process, or shared by the replicas (Redis)."""

    async def take(self, token_id: str, rules: TokenRules, expires_at: float) -> None:
        """Count one use; `TokenRefused` (quota_exhausted) without counting when none is left,
        `Unavailable` when the count cannot be made."""
        ...

    async def aclose(self) -> None: ...


class LocalQuota:
    """The quota counted in this process.

    Each token's count is the larger of what this process counted and what the store held
    when the snapshot was loaded (`uses_at_load`, which includes other processes' uses once the
    batch writer persisted them and a later snapshot loaded them). So across replicas without
    Redis the quota is exact only per replica until then: a token may be used up to `max_uses`
    times on each replica in the window between persisting and reloading. Take-and-count has no
    await in between, so concurrent requests of one process never overshoot.
    """

    def __init__(self) -> None:
        self._used: dict[str, int] = {}

    async def take(self, token_id: str, rules: TokenRules, expires_at: float) -> None:
        if rules.max_uses is None:
            return
        used = max(self._used.get(token_id, 0), rules.uses_at_load)
        if used >= rules.max_uses:
            raise quota_exhausted(rules)
        self._used[token_id] = used + 1

    async def aclose(self) -> None:
        return None


@dataclass(slots=True)
class TokenUse:
    """One use of an API token, as the use log stores it."""

    token_id: str
    at: float  # POSIX seconds, when the request arrived
    method: str
    path: str
    ip: str
    user_agent: str
    status: int
    latency_ms: float
    block_reason: str | None  # None: allowed
    counted: bool  # added to the token's `uses` (authorized uses only)


class UseLog(Protocol):
    def record(self, use: TokenUse) -> None:
        """Take one record without blocking (the hot path calls this)."""
        ...


Message = MutableMapping[str, Any]
# Where the control plane's outer ASGI layer leaves a request's UseRecorder for the admin API's
# authorization dependency, which attaches the token once it knows it.
RECORDER_SCOPE_KEY = "bastion.token_use"
Send = Callable[[Message], Awaitable[None]]
ClientAddress = Callable[[MutableMapping[str, Any]], str]  # ASGI scope → client address


class UseRecorder:
    """An ASGI `send` wrapper that records a token use when the response starts.

    Made per request; a request that never presents an API token is never attached and records
    nothing. The status is read from `http.response.start`; the latency is from the request's
    arrival to that message (for an event stream: until the stream opened).
    """

    __slots__ = ("_at", "_log", "_scope", "_send", "_started", "block_reason", "counted", "ip", "token_id")

    def __init__(self, send: Send, log: UseLog, started: float) -> None:
        self._send = send
        self._log = log
        self._started = started  # time.perf_counter() at arrival
        self._at = time.time()
        self._scope: MutableMapping[str, Any] | None = None
        self.token_id: str | None = None
        self.ip = ""
        self.block_reason: str | None = None
        self.counted = False

    def attach(self, token_id: str, scope: MutableMapping[str, Any], ip: str) -> None:
        self.token_id = token_id
        self._scope = scope
        self.ip = ip

    async def __call__(self, message: Message) -> None:
        if self.token_id is not None and message["type"] == "http.response.start":
            self._finish(int(message["status"]))
        await self._send(message)

    def close(self) -> None:
        """At the end of the request: a use that got no response at all is recorded as 500."""
        if self.token_id is not None:
            self._finish(500)

    def _finish(self, status: int) -> None:
        scope, token_id = self._scope, self.token_id
        self.token_id = None  # once per request
        if scope is None or token_id is None:
            return
        user_agent = ""
        for key, value in scope.get("headers", ()):
            if key == b"user-agent":
                user_agent = value.decode("latin-1")
                break
        self._log.record(
            TokenUse(
                token_id=token_id,
                at=self._at,
                method=str(scope.get("method", "")),
                path=str(scope.get("path", "")),
                ip=self.ip,
                user_agent=user_agent,
                status=status,
                latency_ms=round((time.perf_counter() - self._started) * 1000, 3),
                block_reason=self.block_reason,
                counted=self.counted and self.block_reason is None,
            )
        )


class TokenGate:
    """Applies an API token's rules to a request and records the use (MCP endpoint, admin API).

    Order per request: `admit` right after the bearer token is known (address, validity start),
    the plane's own authorization, then `count` (the quota), so a refused use is never counted.
    """

    def __init__(
        self,
        *,
        quota: UseQuota,
        log: UseLog,
        client_address: ClientAddress,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._quota = quota
        self._log = log
        self._client_address = client_address
        self._clock = clock

    def recorder(self, send: Send, started: float) -> UseRecorder:
        return UseRecorder(send, self._log, started)

    def admit(self, principal: Principal, scope: MutableMapping[str, Any], recorder: UseRecorder | None) -> None:
        """Check the token's rules (a principal without rules passes); TokenRefused otherwise."""
        rules = principal.rules
        if rules is None:
            return
        ip = self._client_address(scope)
        if recorder is not None:
            recorder.attach(principal.token_id, scope, ip)
        try:
            check_use(rules, ip, self._clock())
        except TokenRefused as refused:
            if recorder is not None:
                recorder.block_reason = refused.reason
            raise

    def still_admits(self, principal: Principal, scope: MutableMapping[str, Any]) -> None:
        """A stream's admission checked again on a newer snapshot: the token's networks and start
        (its quota was spent by the request that opened it); TokenRefused otherwise."""
        rules = principal.rules
        if rules is not None:
            check_use(replace(rules, max_uses=None), self._client_address(scope), self._clock())

    async def count(self, principal: Principal, recorder: UseRecorder | None) -> None:
        """Count the use against the quota (after every other check passed)."""
        rules = principal.rules
        if rules is None or (recorder is not None and recorder.counted):
            return  # no rules, or this request's use is counted already
        try:
            await self._quota.take(principal.token_id, rules, principal.expires_at)
        except TokenRefused as refused:
            if recorder is not None:
                recorder.block_reason = refused.reason
            raise
        except Unavailable:
            if recorder is not None:
                recorder.block_reason = REASON_QUOTA_UNAVAILABLE
            raise
        if recorder is not None:
            recorder.counted = True

    async def aclose(self) -> None:
        await self._quota.aclose()
