"""Builds the data plane's Snapshot from the store (a handful of queries, off the hot path)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.catalog import param_headers
from bastion.catalog.snapshot import ItemKind, OriginAccess, OriginSpec, Route, ServerView, Snapshot
from bastion.errors import BadRequest
from bastion.governance.access import Member, Placement
from bastion.governance.permissions import PLATFORM_ADMIN, Grants, parse_permission
from bastion.identity.principal import Principal
from bastion.identity.token_rules import TokenRules
from bastion.store.models import (
    ApiToken,
    Origin,
    OriginItem,
    Policy,
    Role,
    ServerItem,
    StateEpoch,
    TeamMember,
    Tenant,
    User,
    VirtualServer,
)
from bastion.vault.credentials import OriginCredential, open_credential
from bastion.vault.envelope import MasterKeys

__all__ = ["OpenedCredentials", "effective_roles", "load_snapshot", "origin_spec", "placement"]


async def load_snapshot(
    session: AsyncSession, vault: MasterKeys | None = None, opened: OpenedCredentials | None = None
) -> Snapshot:
    """The snapshot as the store holds it now; `opened` keeps origin credentials from one load to
    the next (a new one each time without it)."""
    epoch = int(await session.scalar(select(StateEpoch.value).where(StateEpoch.id == 1)) or 0)
    origin_rows = (await session.scalars(select(Origin))).all()
    kept = [o for o in origin_rows if o.status != "rejected"]
    credentials = await (opened or OpenedCredentials()).of(kept, vault)
    # A rejected origin leaves the snapshot, so the origin pool closes its connection or process.
    origins = {o.id: _spec(o, credentials[o.id]) for o in kept}
    access = {
        o.id: OriginAccess(name=o.name, placement=placement(o), approved=o.status == "approved") for o in origin_rows
    }
    definitions = {(i.origin_id, i.kind, i.name): i for i in await session.scalars(select(OriginItem))}
    by_server: dict[str, list[ServerItem]] = defaultdict(list)
    disabled: dict[str, set[str]] = defaultdict(set)  # resources switched off, per server
    for item in await session.scalars(select(ServerItem)):
        if item.enabled:
            by_server[item.server_id].append(item)
        elif item.kind == "resource":
            disabled[item.server_id].add(item.exposed_name)
    servers = {
        s.slug: _server_view(s, by_server[s.id], definitions, access, frozenset(disabled[s.id]))
        for s in await session.scalars(select(VirtualServer))
    }
    return Snapshot(
        epoch=epoch,
        servers=servers,
        origins=origins,
        tokens=await _tokens(session),
        members=await _members(session),
        origin_access=access,
        tenants={t.slug: t.id for t in await session.scalars(select(Tenant))},
        policies=await _policies(session),
    )


async def _policies(session: AsyncSession) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    policies: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for row in await session.scalars(select(Policy)):
        policies.setdefault(row.tenant_id, {}).setdefault(row.scope, {})[row.stage] = dict(row.settings)
    return policies


def placement(row: Origin | VirtualServer) -> Placement:
    """Where a stored origin or server sits: tenant, visibility, owner, teams (what `Member.sees` reads)."""
    visibility = row.visibility if row.visibility in ("private", "team", "tenant") else "private"
    return Placement(
        tenant_id=row.tenant_id,
        visibility=cast(Any, visibility),
        owner_id=row.owner_user_id,
        team_ids=frozenset(row.team_ids),
    )


def effective_roles(user: User) -> list[str]:
    """The user's roles; the `is_admin` flag of the first administrator is the platform-admin role."""
    return [*user.roles, PLATFORM_ADMIN] if user.is_admin else list(user.roles)


def _pairs(texts: list[str]) -> frozenset[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for text in texts:
        try:
            pairs.add(parse_permission(text))
        except BadRequest:
            continue  # validated when stored; a permission unknown to this version grants nothing
    return frozenset(pairs)


async def _members(session: AsyncSession) -> dict[str, Member]:
    custom: dict[str, dict[str, frozenset[tuple[str, str]]]] = defaultdict(dict)
    for role in await session.scalars(select(Role)):
        custom[role.tenant_id][role.name] = _pairs(role.permissions)
    teams: dict[str, set[str]] = defaultdict(set)
    for membership in await session.scalars(select(TeamMember)):
        teams[membership.user_id].add(membership.team_id)
    return {
        user.id: Member(
            user_id=user.id,
            tenant_id=user.tenant_id,
            grants=Grants.of_roles(effective_roles(user), custom[user.tenant_id]),
            team_ids=frozenset(teams[user.id]),
            username=user.username,
        )
        for user in await session.scalars(select(User))
    }


_Sealed = tuple[str, str, str, str | None]  # tenant, origin id, credential mode, the stored value


class OpenedCredentials:
    """Origin credentials as the last snapshot load opened them, by what was stored. Every change
    reloads the snapshot, which needs every origin's credential: only those whose stored value
    changed are opened again (with Vault's transit as the master key, each open is a round trip),
    and with a key service they are opened in a worker thread (its client blocks: a slow Vault
    must not stall every request on the event loop). One that did not open (Vault unreachable,
    say) is tried again at the next load."""

    def __init__(self) -> None:
        self._kept: dict[_Sealed, OriginCredential | None] = {}

    async def of(self, rows: Sequence[Origin], vault: MasterKeys | None) -> dict[str, OriginCredential | None]:
        wanted: dict[str, _Sealed] = {o.id: (o.tenant_id, o.id, o.auth_mode, o.credential) for o in rows}
        missing = [sealed for sealed in wanted.values() if sealed not in self._kept]

        def open_missing() -> dict[_Sealed, OriginCredential | None]:
            return {sealed: open_credential(vault, *sealed) for sealed in missing}

        remote = vault is not None and vault.remote and bool(missing)
        opened = {**self._kept, **(await anyio.to_thread.run_sync(open_missing) if remote else open_missing())}
        self._kept = {
            sealed: credential
            for sealed in wanted.values()
            if (credential := opened[sealed]) is None or credential.error is None
        }
        return {origin_id: opened[sealed] for origin_id, sealed in wanted.items()}


def origin_spec(origin: Origin, vault: MasterKeys | None = None) -> OriginSpec:
    """The data plane's view of `origin`, its credential opened with `vault`."""
    return _spec(origin, open_credential(vault, origin.tenant_id, origin.id, origin.auth_mode, origin.credential))


def _spec(origin: Origin, credential: OriginCredential | None) -> OriginSpec:
    return OriginSpec(
        id=origin.id,
        name=origin.name,
        transport=cast(Any, origin.transport),
        url=origin.url,
        command=tuple(origin.command) if origin.command else None,
        timeout_seconds=origin.timeout_seconds,
        credential=credential,
        tenant_id=origin.tenant_id,
    )


def _server_view(
    server: VirtualServer,
    items: list[ServerItem],
    definitions: dict[tuple[str, str, str], OriginItem],
    access: dict[str, OriginAccess],
    disabled: frozenset[str] = frozenset(),
) -> ServerView:
    maps: dict[str, dict[str, Route]] = {"tool": {}, "prompt": {}, "resource": {}, "resource_template": {}}
    quarantined: set[tuple[str, str]] = set()
    for item in items:
        origin = access.get(item.origin_id)
        if origin is None or not origin.approved or origin.placement.tenant_id != server.tenant_id:
            continue  # nothing of an unapproved connector, or of another tenant's, is reachable
        found = definitions.get((item.origin_id, item.kind, item.name))
        if found is None:  # the origin no longer offers it: not reachable
            continue
        if found.unapproved:  # changed since approval, or never approved: hidden
            quarantined.add((item.kind, item.exposed_name))
            continue
        exposed = dict(found.definition)
        if item.kind in ("tool", "prompt"):
            exposed["name"] = item.exposed_name
        maps[item.kind][item.exposed_name] = Route(
            origin_id=item.origin_id,
            kind=cast(ItemKind, item.kind),
            upstream_name=item.name,
            exposed_name=item.exposed_name,
            definition=exposed,
            param_headers=param_headers.declared(exposed) if item.kind == "tool" else {},
        )
    return ServerView(
        id=server.id,
        slug=server.slug,
        title=server.title,
        description=server.description,
        published=server.published,
        tools=maps["tool"],
        prompts=maps["prompt"],
        resources=maps["resource"],
        templates=tuple(maps["resource_template"].values()),
        placement=placement(server),
        quarantined=frozenset(quarantined),
        disabled=disabled,
    )


async def _tokens(session: AsyncSession) -> dict[str, Principal]:
    now = datetime.now(UTC)
    rows = await session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.revoked_at.is_(None), ApiToken.expires_at > now)
    )
    return {
        token.token_hash: Principal(
            token_id=token.id,
            user_id=user.id,
            username=user.username,
            is_admin=user.is_admin,
            scopes=frozenset(token.scopes),
            server_ids=frozenset(token.server_ids),
            expires_at=token.expires_at.timestamp(),
            limit=None if token.permissions is None else Grants(_pairs(token.permissions)),
            # Loaded even before `not_before`, so such a use is refused with its reason, not as unknown.
            rules=TokenRules.build(token.allowed_cidrs or (), token.not_before, token.max_uses, token.uses or 0),
        )
        for token, user in rows
    }
