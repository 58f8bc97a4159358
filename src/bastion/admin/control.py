"""Control-plane operations shared by the admin API and the CLI.

Each write runs in one transaction that also bumps the change epoch, then
publishes a change event: this process's snapshot is fresh when the call
returns, other processes notice the epoch on their next poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog

from bastion.admin.schemas import (
    ComposeIn,
    ItemOut,
    ItemPatch,
    OriginIn,
    OriginOut,
    ServerIn,
    ServerItemOut,
    ServerOut,
    TokenCreated,
    TokenIn,
    TokenOut,
)
from bastion.bus.base import Bus, ChangeEvent, Topic
from bastion.catalog.discovery import DiscoveredItem, discover
from bastion.catalog.snapshot import OriginSpec
from bastion.errors import BadRequest, NotFound, Unauthenticated, UpstreamError, UpstreamRefused
from bastion.identity.principal import SCOPE_ADMIN
from bastion.logins import Attempt, Logins
from bastion.mcp.upstream import OriginPool, StdioPolicy
from bastion.store.db import Database, bump_epoch
from bastion.store.models import ApiToken, Origin, OriginItem, ServerItem, VirtualServer
from bastion.store.repos import origins, servers, tokens
from bastion.store.repos.snapshot import origin_spec

__all__ = ["Control"]

log = structlog.get_logger(__name__)

_LOGIN_TOKEN_LIFETIME = timedelta(hours=1)


class Control:
    def __init__(
        self, *, db: Database, bus: Bus, pool: OriginPool, stdio: StdioPolicy, logins: Logins, base_url: str
    ) -> None:
        self._db = db
        self._logins = logins
        self._bus = bus
        self._pool = pool
        self._stdio = stdio
        self._base_url = base_url

    async def _changed(self, topic: Topic, subject_id: str | None = None) -> None:
        await self._bus.publish(ChangeEvent(topic, subject_id))

    # --- origins ----------------------------------------------------------------------
    async def create_origin(self, data: OriginIn) -> OriginOut:
        # The stdio allowlist is checked, and the executable pinned, before anything is stored.
        command = self._stdio.pin(data.command) if data.command is not None else None
        async with self._db.session() as s:
            origin = await origins.create(
                s,
                name=data.name,
                transport=data.transport,
                url=data.url,
                command=command,
                timeout_seconds=data.timeout_seconds,
            )
            await bump_epoch(s)
        await self._changed("catalog", origin.id)
        return await self.refresh_origin(origin.id)

    async def list_origins(self) -> list[OriginOut]:
        async with self._db.session() as s:
            return [_origin_out(o) for o in await origins.list_all(s)]

    async def get_origin(self, origin_id: str) -> OriginOut:
        async with self._db.session() as s:
            origin = await origins.get(s, origin_id)
            return _origin_out(origin, await origins.items_of(s, origin.id))

    async def refresh_origin(self, origin_id: str) -> OriginOut:
        """Ask the origin what it offers now; a failure is recorded, the last good list kept."""
        async with self._db.session() as s:
            spec = origin_spec(await origins.get(s, origin_id))
        items, error, version = await self._discover(spec)
        async with self._db.session() as s:
            origin = await origins.get(s, origin_id)
            await origins.save_discovery(s, origin, items=items, protocol_version=version, error=error)
            await bump_epoch(s)
        await self._changed("catalog", origin_id)
        return await self.get_origin(origin_id)

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

    async def delete_origin(self, origin_id: str) -> None:
        async with self._db.session() as s:
            await origins.remove(s, await origins.get(s, origin_id))
            await bump_epoch(s)
        await self._changed("catalog", origin_id)

    # --- virtual servers ------------------------------------------------------------------
    async def create_server(self, data: ServerIn) -> ServerOut:
        async with self._db.session() as s:
            server = await servers.create(s, slug=data.slug, title=data.title, description=data.description)
            await bump_epoch(s)
        await self._changed("catalog", server.id)
        return self._server_out(server, [])

    async def list_servers(self) -> list[ServerOut]:
        async with self._db.session() as s:
            return [self._server_out(v, await servers.items_of(s, v.id)) for v in await servers.list_all(s)]

    async def get_server(self, server_id: str) -> ServerOut:
        async with self._db.session() as s:
            server = await servers.get(s, server_id)
            return self._server_out(server, await servers.items_of(s, server.id))

    async def compose(self, server_id: str, data: ComposeIn) -> ServerOut:
        async with self._db.session() as s:
            server = await servers.get(s, server_id)
            origin = await origins.get(s, data.origin)
            await servers.compose(
                s, server, origin_id=origin.id, prefix=data.prefix, names=data.items, aliases=data.aliases
            )
            await bump_epoch(s)
        await self._changed("catalog", server.id)
        return await self.get_server(server.id)

    async def patch_item(self, server_id: str, item_id: str, data: ItemPatch) -> ServerOut:
        async with self._db.session() as s:
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
        return await self.get_server(server.id)

    async def set_published(self, server_id: str, published: bool) -> ServerOut:
        async with self._db.session() as s:
            server = await servers.get(s, server_id)
            server.published = published
            await bump_epoch(s)
        await self._changed("catalog", server.id)
        return await self.get_server(server.id)

    async def delete_server(self, server_id: str) -> None:
        async with self._db.session() as s:
            await servers.remove(s, await servers.get(s, server_id))
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
            items=[_item_out(i) for i in items],
        )

    # --- tokens -------------------------------------------------------------------------------
    async def create_token(self, username: str, data: TokenIn) -> TokenCreated:
        expires_at = datetime.now(UTC) + timedelta(days=data.expires_in_days)
        return await self._mint(username, data.name, list(data.scopes), data.servers, expires_at)

    async def _mint(
        self, username: str, name: str, scopes: list[str], server_refs: list[str], expires_at: datetime
    ) -> TokenCreated:
        async with self._db.session() as s:
            user = await tokens.user_by_name(s, username)
            if user is None:
                raise NotFound(f"no user {username!r}")
            if SCOPE_ADMIN in scopes and not user.is_admin:
                raise BadRequest("only administrators can hold admin-scoped tokens")
            server_ids = [(await servers.get(s, ref)).id for ref in server_refs]
            token, secret = await tokens.create_token(
                s, user=user, name=name, scopes=scopes, server_ids=server_ids, expires_at=expires_at
            )
            await bump_epoch(s)
        await self._changed("tokens", token.id)
        return TokenCreated(**_token_out(token).model_dump(), token=secret)

    async def list_tokens(self) -> list[TokenOut]:
        async with self._db.session() as s:
            return [_token_out(t) for t in await tokens.list_tokens(s)]

    async def revoke_token(self, token_id: str) -> TokenOut:
        async with self._db.session() as s:
            token = await tokens.revoke(s, token_id)
            await bump_epoch(s)
        await self._changed("tokens", token_id)
        return _token_out(token)

    async def login(self, attempt: Attempt) -> TokenCreated:
        """Exchange an administrator's password for a short-lived admin token (with lockout)."""
        user = await self._logins.verify(attempt)
        if not user.is_admin:
            raise Unauthenticated("unknown user or wrong password")
        expires_at = datetime.now(UTC) + _LOGIN_TOKEN_LIFETIME
        return await self._mint(user.username, "login", [SCOPE_ADMIN], [], expires_at)


def _origin_out(origin: Origin, items: Sequence[OriginItem] = ()) -> OriginOut:
    out = OriginOut.model_validate(origin, from_attributes=True)
    out.items = [ItemOut.model_validate(i, from_attributes=True) for i in items]
    return out


def _item_out(item: ServerItem) -> ServerItemOut:
    return ServerItemOut.model_validate(item, from_attributes=True)


def _token_out(token: ApiToken) -> TokenOut:
    return TokenOut.model_validate(token, from_attributes=True)
