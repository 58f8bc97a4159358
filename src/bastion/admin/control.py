"""Control-plane operations shared by the admin API and the CLI.

Each write runs in one transaction that also bumps the change epoch, then
publishes a change event: this process's snapshot is fresh when the call
returns, other processes notice the epoch on their next poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from ssl import SSLContext
from urllib.parse import urlsplit

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.admin.actor import Actor
from bastion.admin.item_review import catalog_digest, origin_out, scan_flags
from bastion.admin.schemas import (
    ComposeIn,
    ItemApprovalIn,
    ItemPatch,
    OriginAuthIn,
    OriginIn,
    OriginOut,
    ReviewIn,
    ServerIn,
    ServerItemOut,
    ServerOut,
    TokenCreated,
    TokenIn,
    TokenOut,
)
from bastion.admin.token_bounds import bounded, within_servers
from bastion.admin.users import acting_as, check_may_act_for, within_minter
from bastion.bus.base import Bus, ChangeEvent, Topic
from bastion.catalog.discovery import DiscoveredItem, discover
from bastion.catalog.snapshot import OriginSpec
from bastion.errors import BadRequest, Conflict, Forbidden, NotFound, UpstreamError, UpstreamRefused
from bastion.identity.principal import SCOPE_ADMIN
from bastion.logins import Attempt, Logins
from bastion.mcp.upstream import OriginPool, StdioPolicy
from bastion.net.egress import EgressPolicy
from bastion.oauth import downstream
from bastion.oauth.downstream import DownstreamClient
from bastion.store.db import Database, bump_epoch
from bastion.store.models import ApiToken, OAuthToken, Origin, ServerItem, User, VirtualServer
from bastion.store.repos import origins, servers, teams, tokens
from bastion.store.repos.oauth import revoke_families
from bastion.store.repos.snapshot import origin_spec, placement
from bastion.store.tenancy import SYSTEM, Tenancy
from bastion.vault.credentials import JWT_LIFETIME, jwt_config, seal_credential
from bastion.vault.downstream_oauth import OAuthOrigin
from bastion.vault.envelope import MasterKeys

__all__ = ["Control"]

log = structlog.get_logger(__name__)

_LOGIN_TOKEN_LIFETIME = timedelta(hours=1)
_HTTP_ONLY = "a stdio origin takes its credential as mode env (variables set in its process's environment)"
_STDIO_ONLY = "mode env sets a stdio origin's environment: an HTTP origin takes a header credential"


class Control:
    def __init__(
        self,
        *,
        db: Database,
        bus: Bus,
        pool: OriginPool,
        stdio: StdioPolicy,
        logins: Logins,
        base_url: str,
        egress: EgressPolicy | None = None,
        ssl_context: SSLContext | None = None,
        hold_flagged: bool = True,
    ) -> None:
        self._db = db
        self._hold_flagged = hold_flagged  # BASTION_POISONING_SCAN=block: flagged items wait for a person
        self._egress = egress or EgressPolicy()  # discovery of per-user OAuth origins' servers
        self._ssl = ssl_context
        self._logins = logins
        self._bus = bus
        self._pool = pool
        self._stdio = stdio
        self._base_url = base_url

    async def _changed(self, topic: Topic, subject_id: str | None = None) -> None:
        await self._bus.publish(ChangeEvent(topic, subject_id))

    # --- origins (connectors) ------------------------------------------------------------
    async def create_origin(self, actor: Actor, data: OriginIn) -> OriginOut:
        """Register an origin: a connector request, pending until a connector admin approves it.

        The operator (CLI, bootstrap) holds the database itself: what it registers is approved.
        """
        # The stdio allowlist is checked, and the executable pinned, before anything is stored.
        command = self._stdio.pin(data.command) if data.command is not None else None
        async with self._db.session(actor.scope) as s:
            team_ids = await teams.resolve(s, data.team_ids)
            origin = await origins.create(
                s,
                name=data.name,
                transport=data.transport,
                url=data.url,
                command=command,
                timeout_seconds=data.timeout_seconds,
            )
            origin.owner_user_id = actor.user_id
            origin.visibility, origin.team_ids = data.visibility, team_ids
            if data.auth is not None:
                if data.auth.mode in ("oauth", "exchange"):
                    raise BadRequest(f"register the origin first, then set mode {data.auth.mode} on it (PUT …/auth)")
                _check_audience(actor, origin, data.auth)
                self._seal_auth(origin, data.auth)
            if actor.is_operator:
                origin.status, origin.reviewed_by, origin.reviewed_at = "approved", actor.username, datetime.now(UTC)
            await bump_epoch(s)
        await self._changed("catalog", origin.id)
        return await self.refresh_origin(actor, origin.id)

    async def list_origins(self, actor: Actor, status: str | None = None) -> list[OriginOut]:
        async with self._db.session(actor.scope) as s:
            return [origin_out(o) for o in await origins.list_all(s) if status is None or o.status == status]

    async def get_origin(self, actor: Actor, origin_id: str) -> OriginOut:
        async with self._db.session(actor.scope) as s:
            origin = await origins.get(s, origin_id)
            return origin_out(origin, await origins.items_of(s, origin.id))

    async def refresh_origin(self, actor: Actor, origin_id: str) -> OriginOut:
        await self._refresh(actor.scope, origin_id)
        return await self.get_origin(actor, origin_id)

    async def rediscover(self, origin_id: str) -> None:
        """An origin announced a change (any tenant's): discover it again, in the system scope."""
        await self._refresh(SYSTEM, origin_id)

    async def _refresh(self, scope: Tenancy, origin_id: str) -> None:
        """Ask the origin what it offers now; a failure is recorded, the last good list kept.

        A pending origin is discovered too, so its reviewer sees what it would offer.
        """
        async with self._db.session(scope) as s:
            origin = await origins.get(s, origin_id)
            if origin.status == "rejected":
                raise Conflict(f"origin {origin.name!r} was rejected: nothing is fetched from it")
            spec = origin_spec(origin, self._db.vault)
        items, error, version = await self._discover(spec)
        async with self._db.session(scope) as s:
            origin = await origins.get(s, origin_id)
            await origins.save_discovery(
                s,
                origin,
                items=items,
                protocol_version=version,
                error=error,
                flags=scan_flags(items) if items is not None else None,
                hold_flagged=self._hold_flagged,
            )
            await bump_epoch(s)
        await self._changed("catalog", origin_id)

    async def set_origin_auth(self, actor: Actor, origin_id: str, auth: OriginAuthIn) -> OriginOut:
        """Set, replace or (mode none) remove how Bastion authenticates to an origin. The old secret is
        overwritten in the same transaction; the origin's connection restarts with the new one.

        On an approved origin that is a connector decision (`connectors:approve`): whose account
        upstream every user's calls act in is what the approval was about."""
        async with self._db.session(actor.scope) as s:
            _check_credential_change(actor, await origins.get(s, origin_id))
        oauth = None
        if auth.mode in ("oauth", "exchange"):  # the origin's authorization server is found before any write
            self._need_vault()  # before registering there: a registration nothing could keep is not made
            async with self._db.session(actor.scope) as s:
                origin = await origins.get(s, origin_id)
                if origin.transport != "http" or origin.url is None:
                    raise BadRequest(_HTTP_ONLY)
                url, found_id = origin.url, origin.id  # the path may name it: the callback needs its id
            oauth = await self._join_authorization_server(found_id, url, auth)
        async with self._db.session(actor.scope) as s:
            origin = await origins.get(s, origin_id)
            await origins.lock(s, origin)  # an approval waits for this change, or this one sees it
            _check_credential_change(actor, origin)  # again: approved meanwhile
            _check_audience(actor, origin, auth)
            self._seal_auth(origin, auth, oauth)
            await bump_epoch(s)
        await self._changed("catalog", origin_id)
        log.info("origin_auth_set", origin_id=origin_id, mode=auth.mode, by=actor.username)  # never the secret
        return await self.get_origin(actor, origin_id)

    async def _join_authorization_server(self, origin_id: str, url: str, auth: OriginAuthIn) -> OAuthOrigin:
        """Discover the origin's authorization server (RFC 9728, RFC 8414) and Bastion's client there:
        the one configured, or a new RFC 7591 registration for this origin's callback."""
        server = await downstream.discover(url, egress=self._egress, ssl=self._ssl)
        if auth.mode == "exchange":  # one confidential client: exchanges for people, credentials for itself
            assert auth.client_id is not None and auth.client_secret is not None  # the schema requires both
            client = DownstreamClient(auth.client_id, (), auth.client_secret.get_secret_value(), "client_secret_basic")
            return OAuthOrigin(server=server, client=client, scope=auth.scope, service=client)
        callback = f"{self._base_url}/connect/{origin_id}/callback"
        if auth.client_id is not None:
            secret = auth.client_secret.get_secret_value() if auth.client_secret is not None else None
            client = DownstreamClient(auth.client_id, (callback,), secret, "client_secret_basic" if secret else "none")
        else:
            client = await downstream.register(
                server, callback, "Bastion", egress=self._egress, scope=auth.scope, ssl=self._ssl
            )
        service = None
        if auth.service_client_id is not None and auth.service_client_secret is not None:
            service = DownstreamClient(
                auth.service_client_id, (), auth.service_client_secret.get_secret_value(), "client_secret_basic"
            )
        return OAuthOrigin(server=server, client=client, scope=auth.scope, service=service)

    def _need_vault(self) -> MasterKeys:
        if self._db.vault is None:
            raise BadRequest(
                "the vault has no master key: set BASTION_MASTER_KEY or BASTION_MASTER_KEY_FILE to store credentials"
            )
        return self._db.vault

    def _seal_auth(self, origin: Origin, auth: OriginAuthIn, oauth: OAuthOrigin | None = None) -> None:
        if auth.mode == "none":
            origin.auth_mode, origin.credential = "none", None
            return
        if (origin.transport == "stdio") != (auth.mode == "env"):
            raise BadRequest(_HTTP_ONLY if origin.transport == "stdio" else _STDIO_ONLY)
        if auth.mode == "jwt":  # nothing secret to seal: minted per user from Bastion's signing key
            assert origin.url is not None
            origin.auth_mode = "jwt"
            origin.credential = jwt_config(auth.audience or origin.url, auth.lifetime_seconds or JWT_LIFETIME)
            return
        vault = self._need_vault()
        origin.auth_mode = auth.mode
        secret = oauth.to_secret(auth.mode) if oauth is not None else auth.secret()
        origin.credential = seal_credential(vault, origin.tenant_id, origin.id, secret)

    async def review_origin(self, actor: Actor, origin_id: str, review: ReviewIn) -> OriginOut:
        """Approve or reject a connector request. Rejecting an approved origin withdraws every item
        of it from every virtual server on the next request, on every replica."""
        async with self._db.session(actor.scope) as s:
            origin = await origins.get(s, origin_id)
            await origins.lock(s, origin)  # no rediscovery between the items read here and their pins
            items = await origins.items_of(s, origin.id)
            if review.decision == "approve" and review.catalog_digest is not None:
                now = catalog_digest(items)
                if now != review.catalog_digest:
                    raise Conflict(
                        f"origin {origin.name!r} offers other items than the ones you reviewed (its catalog is now "
                        f"{now[:12]}…): look at them again before approving"
                    )
            origin.status = "approved" if review.decision == "approve" else "rejected"
            origin.reviewed_by, origin.reviewed_at, origin.review_note = actor.username, datetime.now(UTC), review.note
            if origin.status == "approved":  # what the reviewer saw is what is pinned
                await origins.pin_all(s, items, hold_flagged=self._hold_flagged)
            await bump_epoch(s)
        await self._changed("catalog", origin_id)
        log.info("connector_reviewed", origin_id=origin_id, decision=review.decision, reviewer=actor.username)
        return await self.get_origin(actor, origin_id)

    async def approve_item(self, actor: Actor, origin_id: str, item: ItemApprovalIn) -> OriginOut:
        """Approve one item's current definition (a quarantined change, or a flagged item): pinned as it is."""
        async with self._db.session(actor.scope) as s:
            origin = await origins.get(s, origin_id)
            await origins.lock(s, origin)  # no rediscovery between the item read and its pin
            if origin.status != "approved":
                raise Conflict(f"origin {origin.name!r} is {origin.status}: review the connector itself first")
            await origins.pin_one(s, origin, item.kind, item.name, item.digest)
            await bump_epoch(s)
        await self._changed("catalog", origin_id)
        log.info("item_approved", origin_id=origin_id, kind=item.kind, name=item.name[:128], by=actor.username)
        return await self.get_origin(actor, origin_id)

    async def _discover(self, spec: OriginSpec) -> tuple[list[DiscoveredItem] | None, str | None, str | None]:
        client = self._pool.client(spec)
        try:
            capabilities = await client.connect()
            return await discover(client, capabilities), None, client.protocol_version
        except UpstreamError as exc:
            # Administrators read last_error: a refusal's detail (the address refused) is for them.
            error = exc.detail if isinstance(exc, UpstreamRefused) else exc.message
            log.warning("discovery_failed", origin=spec.name, error=error)
            return None, error, None
        except Exception as exc:  # the origin is stored already: its error is recorded, not a 500
            log.exception("discovery_crashed", origin=spec.name)
            return None, f"discovery failed ({type(exc).__name__})", None

    async def delete_origin(self, actor: Actor, origin_id: str) -> None:
        async with self._db.session(actor.scope) as s:
            await origins.remove(s, await origins.get(s, origin_id))
            await bump_epoch(s)
        await self._changed("catalog", origin_id)

    # --- virtual servers ------------------------------------------------------------------
    async def create_server(self, actor: Actor, data: ServerIn) -> ServerOut:
        async with self._db.session(actor.scope) as s:
            team_ids = await teams.resolve(s, data.team_ids)
            server = await servers.create(s, slug=data.slug, title=data.title, description=data.description)
            server.owner_user_id = actor.user_id
            server.visibility, server.team_ids = data.visibility, team_ids
            await bump_epoch(s)
        await self._changed("catalog", server.id)
        return self._server_out(server, [])

    async def list_servers(self, actor: Actor) -> list[ServerOut]:
        async with self._db.session(actor.scope) as s:
            return [self._server_out(v, await servers.items_of(s, v.id)) for v in await servers.list_all(s)]

    async def get_server(self, actor: Actor, server_id: str) -> ServerOut:
        async with self._db.session(actor.scope) as s:
            server = await servers.get(s, server_id)
            return self._server_out(server, await servers.items_of(s, server.id))

    async def compose(self, actor: Actor, server_id: str, data: ComposeIn) -> ServerOut:
        async with self._db.session(actor.scope) as s:
            server = await servers.get(s, server_id)
            origin = await origins.get(s, data.origin)
            if origin.status != "approved":
                raise Conflict(
                    f"origin {origin.name!r} is {origin.status}: a connector admin must approve it before use"
                )
            await servers.compose(
                s, server, origin_id=origin.id, prefix=data.prefix, names=data.items, aliases=data.aliases
            )
            await bump_epoch(s)
        await self._changed("catalog", server.id)
        return await self.get_server(actor, server.id)

    async def patch_item(self, actor: Actor, server_id: str, item_id: str, data: ItemPatch) -> ServerOut:
        async with self._db.session(actor.scope) as s:
            server = await servers.get(s, server_id)
            item = await servers.get_item(s, server.id, item_id)
            if data.enabled is not None:
                item.enabled = data.enabled
            if data.alias is not None:
                if item.kind not in ("tool", "prompt"):
                    raise BadRequest("only tools and prompts can be aliased; resources keep their URI")
                item.exposed_name = data.alias
            await servers.flush_item(s, item)
            await bump_epoch(s)
        await self._changed("catalog", server.id)
        return await self.get_server(actor, server.id)

    async def set_published(self, actor: Actor, server_id: str, published: bool) -> ServerOut:
        async with self._db.session(actor.scope) as s:
            server = await servers.get(s, server_id)
            server.published = published
            await bump_epoch(s)
        await self._changed("catalog", server.id)
        return await self.get_server(actor, server.id)

    async def delete_server(self, actor: Actor, server_id: str) -> None:
        async with self._db.session(actor.scope) as s:
            server = await servers.get(s, server_id)
            # Its OAuth tokens go with it (the rows cascade); revoked first, so that what was exchanged
            # for them on other servers (RFC 8693) is revoked too, not left naming a deleted source.
            await revoke_families(s, select(OAuthToken.family_id).where(OAuthToken.server_id == server.id))
            await servers.remove(s, server)
            await bump_epoch(s)
        await self._changed("catalog", server_id)

    def mcp_url(self, slug: str) -> str:
        return f"{self._base_url}/servers/{slug}/mcp"

    def _server_out(self, server: VirtualServer, items: Sequence[ServerItem]) -> ServerOut:
        return ServerOut(
            id=server.id,
            slug=server.slug,
            title=server.title,
            description=server.description,
            published=server.published,
            mcp_url=self.mcp_url(server.slug),
            visibility=server.visibility,
            team_ids=list(server.team_ids),
            owner_user_id=server.owner_user_id,
            items=[_item_out(i) for i in items],
        )

    # --- tokens -------------------------------------------------------------------------------
    async def create_token(self, actor: Actor, data: TokenIn) -> TokenCreated:
        """An API token for the caller, or (with tokens:manage) for another user of the tenant."""
        async with self._db.session(actor.scope) as s:
            user_id = (await acting_as(s, actor, data.user)).id
        if user_id != actor.user_id:
            actor.require("tokens:manage")
            # Before `bounded`, which fills in the creating token's own limit when none is asked.
            data = data.model_copy(update={"permissions": within_minter(actor, data.permissions)})
        expires_at = datetime.now(UTC) + timedelta(days=data.expires_in_days)
        data, expires_at = bounded(actor.token, data, expires_at)
        return await self._mint(actor.scope, user_id, data, expires_at, actor=actor)

    async def _mint(
        self, scope: Tenancy, user_id: str, data: TokenIn, expires_at: datetime, actor: Actor | None = None
    ) -> TokenCreated:
        async with self._db.session(scope) as s:
            user = await s.get(User, user_id)
            if user is None:
                raise NotFound("the user is gone")
            if actor is not None:
                await check_may_act_for(s, actor, user)  # a token acts as its user: no one above the actor
            server_ids = [(await visible_server(s, actor, ref)).id for ref in data.servers]
            within_servers(actor.token if actor is not None else None, server_ids)
            token, secret = await tokens.create_token(
                s,
                user=user,
                name=data.name,
                scopes=list(data.scopes),
                server_ids=server_ids,
                expires_at=expires_at,
            )
            token.permissions = data.permissions
            token.allowed_cidrs = data.allowed_cidrs
            token.not_before = data.not_before
            token.max_uses = data.max_uses
            await bump_epoch(s)
        await self._changed("tokens", token.id)
        return TokenCreated(**_token_out(token).model_dump(), token=secret)

    async def list_tokens(self, actor: Actor) -> list[TokenOut]:
        """Every token of the tenant with tokens:manage; otherwise the caller's own."""
        everyone = actor.may("tokens:manage")
        async with self._db.session(actor.scope) as s:
            return [_token_out(t) for t in await tokens.list_tokens(s) if everyone or t.user_id == actor.user_id]

    async def revoke_token(self, actor: Actor, token_id: str) -> TokenOut:
        async with self._db.session(actor.scope) as s:
            token = await tokens.get(s, token_id)
            if token.user_id != actor.user_id and not actor.may("tokens:manage"):
                raise NotFound(f"no API token {token_id!r}")  # another user's token is not theirs to see
            # Anyone with tokens:manage may revoke (it only takes power away: a leaked token of
            # someone above them included); minting one for someone is `check_may_act_for`'s.
            await tokens.revoke(s, token.id)
            await bump_epoch(s)
        await self._changed("tokens", token_id)
        return _token_out(token)

    async def login(self, attempt: Attempt) -> TokenCreated:
        """Exchange a password for a one-hour admin-scoped token (with lockout). What it may do on the
        control plane is what the user's roles grant, route by route."""
        user = await self._logins.verify(attempt)
        expires_at = datetime.now(UTC) + _LOGIN_TOKEN_LIFETIME
        return await self._mint(
            Tenancy.of(user.tenant_id), user.id, TokenIn(name="login", scopes=[SCOPE_ADMIN]), expires_at
        )


def _check_credential_change(actor: Actor, origin: Origin) -> None:
    if origin.status == "approved" and not actor.may("connectors:approve"):
        raise Forbidden(
            f"origin {origin.name!r} is approved: changing how Bastion authenticates to it needs connectors:approve"
        )


def _check_audience(actor: Actor, origin: Origin, auth: OriginAuthIn) -> None:
    """A minted JWT's audience other than the origin's own URL names a service the token would be
    valid at: another origin, say (one on the same host under another path included), which would
    then take tokens that Bastion signed for this one, as any user. Choosing whom an origin's tokens
    are for is a connector decision."""
    if auth.mode != "jwt" or auth.audience is None or origin.url is None:
        return
    own = _resource(origin.url)
    if (own is not None and _resource(auth.audience) == own) or actor.may("connectors:approve"):
        return
    raise Forbidden(
        f"audience {auth.audience!r} is not this origin's own URL: another audience needs connectors:approve"
    )


def _resource(url: str) -> tuple[str, str, int | None, str, str] | None:
    """A URL as a resource: scheme and host without case, the default port spelled out, an empty
    path as `/`, no fragment."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port, parts.path or "/", parts.query


async def visible_server(session: AsyncSession, actor: Actor | None, ref: str) -> VirtualServer:
    """The server `ref` names, as the actor may know it: one it cannot see (private, another team's)
    is missing, unless it may read every server of the tenant anyway (servers:read)."""
    server = await servers.get(session, ref)
    if actor is None or actor.member is None or actor.may("servers:read"):
        return server
    if not actor.member.sees(placement(server)):
        raise NotFound(f"no virtual server {ref!r}")
    return server


def _item_out(item: ServerItem) -> ServerItemOut:
    return ServerItemOut.model_validate(item, from_attributes=True)


def _token_out(token: ApiToken) -> TokenOut:
    return TokenOut.model_validate(token, from_attributes=True)
