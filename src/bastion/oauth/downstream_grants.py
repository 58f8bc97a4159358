"""People's downstream tokens for per-user OAuth origins (scenario B), resolved on the data plane.

For each call to an origin with auth mode `oauth`, `DownstreamGrants.bearer` answers the
access token of the person the call is made for, from their own grant at the origin's
authorization server, and from nothing else: the cache is keyed by (tenant, user,
origin, issuer, resource), so no call can carry another person's token.

* The hot path reads an in-memory cache. The store is read when a grant is first used on
  this replica, and again whenever the snapshot epoch moved (a disconnect bumps it, so a
  withdrawn grant stops working on the next request everywhere).
* A token is refreshed just in time: once less than a fifth of its life (at most 30 s) is
  left. The refresh runs under the grant's row lock in the store, so replicas never spend
  one rotated refresh token twice; a replica that waited finds the new token and uses it.
* A refresh the server answers `invalid_grant` marks that one grant lost: its owner must
  connect again (`ConnectionRequired`, carrying the URL). Other people's grants and the
  origin itself are untouched. A server that cannot be reached is a plain upstream error,
  and the grant stays as it was.
* The person must have approved the MCP client making the call for this origin (the MCP
  spec's per-user registry of approved clients): a grant is never lent to an application
  its owner did not name.
* Requests made for no person (handshake, discovery, the notification stream) use the
  origin's service client (client_credentials) when one is configured, never a person's grant.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from ssl import SSLContext
from typing import Protocol

import anyio
import structlog

from bastion.errors import ConnectionRequired, UpstreamError, UpstreamRefused, UpstreamUnavailable
from bastion.net.egress import EgressPolicy
from bastion.oauth.downstream import DownstreamGrantLost, DownstreamTokens, client_credentials, refresh
from bastion.vault.downstream_oauth import OAuthOrigin, grant_owner, open_tokens, seal_tokens
from bastion.vault.envelope import MasterKeys, VaultError, VaultUnavailable

__all__ = [
    "DownstreamGrants",
    "GrantKey",
    "GrantStore",
    "GrantUpdate",
    "StoredGrant",
    "client_key",
    "due",
]

log = structlog.get_logger(__name__)

_MAX_CACHED = 50_000
_MARGIN_CAP = 30.0  # seconds: refresh at most this long before expiry
_LOST = "lost"


def client_key(client_id: str | None, token_id: str) -> str:
    """What a person approves to use their connection: an OAuth client, or one API token."""
    return client_id if client_id is not None else f"api-token:{token_id}"


@dataclass(frozen=True, slots=True)
class GrantKey:
    tenant_id: str
    user_id: str
    origin_id: str
    issuer: str
    resource: str

    @property
    def owner(self) -> str:
        return grant_owner(self.tenant_id, self.user_id, self.origin_id, self.issuer, self.resource)


@dataclass(frozen=True, slots=True)
class StoredGrant:
    id: str
    sealed: str
    status: str  # "active" | "lost"
    version: int
    approved: frozenset[str]  # client keys the person approved for this origin


@dataclass(frozen=True, slots=True)
class GrantUpdate:
    """What to write under the row lock: new sealed tokens, or that the grant is lost."""

    sealed: str | None = None
    expires_at: float | None = None
    scope: str = ""
    lost: bool = False


class GrantStore(Protocol):
    async def load(self, key: GrantKey) -> StoredGrant | None: ...

    async def update_locked(
        self, key: GrantKey, decide: Callable[[StoredGrant], Awaitable[GrantUpdate | None]]
    ) -> StoredGrant | None:
        """Lock the grant's row, call `decide` with it, write what it answers (None: nothing), and
        return the grant as stored afterwards (None when there is no grant)."""
        ...


@dataclass(slots=True)
class _Entry:
    grant: StoredGrant
    tokens: DownstreamTokens | None  # None: the grant is lost
    epoch: int


def due(tokens: DownstreamTokens, now: float) -> bool:
    """Time to refresh: less than a fifth of the token's life (at most _MARGIN_CAP seconds) is left."""
    if tokens.expires_at is None:
        return False  # the server said nothing: use it until the origin refuses it
    life = tokens.expires_at - (tokens.issued_at if tokens.issued_at is not None else tokens.expires_at)
    return tokens.expires_at - now <= min(_MARGIN_CAP, max(life, 0.0) / 5)


class DownstreamGrants:
    def __init__(
        self,
        store: GrantStore,
        keys: Callable[[], MasterKeys | None],
        *,
        egress: EgressPolicy,
        connect_url: Callable[[GrantKey, str], str],
        ssl: SSLContext | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._keys = keys
        self._egress = egress
        self._connect_url = connect_url  # (grant key, client key) → the page where the person connects
        self._ssl = ssl
        self._now = now
        self._cache: dict[GrantKey, _Entry] = {}
        self._locks: dict[GrantKey, anyio.Lock] = {}
        # (origin id, client id, token endpoint) → Bastion's own token there: a reconfigured origin
        # (another client or server) never gets the token of its previous configuration.
        self._service: dict[tuple[str, str, str], DownstreamTokens] = {}

    # --- people's tokens ---------------------------------------------------------------------------
    async def bearer(
        self,
        origin_id: str,
        name: str,
        config: OAuthOrigin,
        *,
        tenant_id: str,
        user_id: str,
        client: str,
        epoch: int,
        refused: str | None = None,
    ) -> str:
        """The access token of `user_id` at this origin, for a call made by MCP client `client`.

        `refused`: a token the origin just answered 401 to; it is refreshed whatever its expiry says
        (a refresh the server refuses then marks the grant lost)."""
        key = GrantKey(tenant_id, user_id, origin_id, config.server.issuer, config.server.resource)
        entry = self._cache.get(key)
        if entry is None or entry.epoch < epoch:
            entry = await self._load(key, epoch)
        tokens = self._usable(key, entry, client, name)
        if not due(tokens, self._now()) and tokens.access_token != refused:
            return tokens.access_token
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            return (await self._refresh(key, config, epoch, client, name, refused)).access_token

    def _usable(self, key: GrantKey, entry: _Entry | None, client: str, name: str) -> DownstreamTokens:
        if entry is None:
            raise self._required(key, client, f"connect your account at {name!r} first")
        if entry.tokens is None:
            raise self._required(key, client, f"your connection to {name!r} expired or was revoked: connect it again")
        if client not in entry.grant.approved:
            raise self._required(key, client, f"approve this application's use of your connection to {name!r}")
        return entry.tokens

    def _required(self, key: GrantKey, client: str, message: str) -> ConnectionRequired:
        return ConnectionRequired(
            message, url=self._connect_url(key, client), elicitation_id=f"connect:{key.origin_id}"
        )

    async def _load(self, key: GrantKey, epoch: int) -> _Entry | None:
        grant = await self._store.load(key)
        if grant is None:
            self._cache.pop(key, None)
            return None
        cached = self._cache.get(key)
        if cached is not None and cached.grant.version == grant.version and cached.grant.sealed == grant.sealed:
            tokens = cached.tokens  # unchanged: no need to open it again (a key service call, maybe)
        else:
            tokens = self._open(key, grant)
        entry = _Entry(grant, tokens, epoch)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = entry
        return entry

    def _open(self, key: GrantKey, grant: StoredGrant) -> DownstreamTokens | None:
        if grant.status == _LOST:
            return None
        keys = self._keys()
        if keys is None:
            raise UpstreamRefused("per-user connections are sealed, and no master key is configured")
        try:
            return open_tokens(keys, key.owner, grant.sealed)
        except VaultUnavailable as exc:  # nothing learnt about the grant: fail this call, cache nothing
            raise UpstreamUnavailable(f"the vault could not open your connection right now ({exc})") from None
        except VaultError as exc:  # a row that does not open for its owner is not used, for anyone
            log.warning("downstream_grant_unreadable", grant_id=grant.id, error=str(exc))
            return None

    async def _refresh(
        self, key: GrantKey, config: OAuthOrigin, epoch: int, client: str, name: str, refused: str | None
    ) -> DownstreamTokens:
        outcome: list[DownstreamTokens | None] = []

        async def decide(grant: StoredGrant) -> GrantUpdate | None:
            current = self._open(key, grant)
            stale = current is not None and current.access_token == refused
            if current is None or (not stale and not due(current, self._now())):
                outcome.append(current)  # lost, or another replica refreshed it while we waited
                return None
            if current.refresh_token is None:
                if stale or (current.expires_at is not None and current.expires_at <= self._now()):
                    outcome.append(None)
                    return GrantUpdate(lost=True)
                outcome.append(current)  # nothing to refresh with: use it while it lasts
                return None
            try:
                fresh = await refresh(
                    config.server,
                    config.client,
                    current.refresh_token,
                    egress=self._egress,
                    ssl=self._ssl,
                    scope=config.scope,
                )
            except DownstreamGrantLost:
                log.info("downstream_grant_lost", origin_id=key.origin_id, user_id=key.user_id)
                outcome.append(None)
                return GrantUpdate(lost=True)
            except UpstreamError:
                if not stale and current.expires_at is not None and current.expires_at > self._now():
                    outcome.append(current)  # the server is down: the old token still has a moment
                    return None
                raise
            outcome.append(fresh)
            keys = self._keys()
            assert keys is not None  # `_open` succeeded, so there is a key
            return GrantUpdate(
                sealed=seal_tokens(keys, key.owner, fresh), expires_at=fresh.expires_at, scope=fresh.scope or ""
            )

        # Not cancelled halfway (a client that cancels its call, or goes): once the server rotated the
        # refresh token, only the write keeps the new one; lost, the person would have to connect again.
        with anyio.CancelScope(shield=True):
            stored = await self._store.update_locked(key, decide)
        if stored is None or not outcome:
            self._cache.pop(key, None)
            raise self._required(key, client, f"connect your account at {name!r} first")
        entry = _Entry(stored, outcome[0], epoch)
        self._cache[key] = entry
        return self._usable(key, entry, client, name)

    def forget(self, user_id: str | None = None) -> None:
        """Drop cached grants (one person's, or everyone's): the next use reads the store."""
        for key in [k for k in self._cache if user_id is None or k.user_id == user_id]:
            del self._cache[key]

    # --- Bastion's own token, for requests made for no person ----------------------------------------
    async def service_bearer(self, origin_id: str, config: OAuthOrigin) -> str | None:
        """A client_credentials token of the origin's service client, or None when it has none."""
        if config.service is None:
            return None
        key = (origin_id, config.service.client_id, config.server.token_endpoint)
        tokens = self._service.get(key)
        if tokens is None or due(tokens, self._now()):
            tokens = await client_credentials(
                config.server, config.service, egress=self._egress, ssl=self._ssl, scope=config.scope
            )
            self._service[key] = tokens
        return tokens.access_token
