"""OAuth clients an administrator manages: service clients for machine-to-machine access.

A service client is confidential (RFC 6749 §2.1): its secret is shown once, in
the creation response, and stored only as a SHA-256 hash. It acts as its owner
user and reaches only the virtual servers named here (and, by token exchange,
the server of a user's token it was handed), with at most the scopes named
here. Deleting a client revokes every token it holds, on every replica at once.
"""

from __future__ import annotations

import builtins
import secrets
import time
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from bastion.admin.actor import Actor
from bastion.admin.control import visible_server
from bastion.admin.token_bounds import unbounded_only
from bastion.admin.users import acting_as, check_may_act_for, within_minter
from bastion.errors import NotFound
from bastion.identity.tokens import TOKEN_PREFIX, hash_token
from bastion.oauth.provider import Client
from bastion.store.db import Database
from bastion.store.models import OAuthClient
from bastion.store.repos.oauth import SqlOAuthStore, stored_client
from bastion.store.tenancy import SYSTEM

__all__ = ["ClientOut", "OAuthClients", "ServiceClientCreated", "ServiceClientIn"]

# bastion.oauth's client_credentials, TOKEN_EXCHANGE (RFC 8693) and JWT_BEARER (RFC 7523, for ID-JAGs).
ServiceGrant = Literal[
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
]
DataScope = Literal["mcp", "mcp:read", "mcp:write"]
SecretMethod = Literal["client_secret_basic", "client_secret_post"]  # RFC 6749 §2.3.1


class ServiceClientIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    servers: list[str] = Field(min_length=1, max_length=100, description="virtual server slugs or ids it may reach")
    scopes: list[DataScope] = Field(default_factory=lambda: list[DataScope](["mcp"]), min_length=1)
    grant_types: list[ServiceGrant] = Field(
        default_factory=lambda: list[ServiceGrant](["client_credentials"]),
        min_length=1,
        description="client_credentials (acts as its owner), token exchange (RFC 8693), jwt-bearer (ID-JAG)",
    )
    owner: str | None = Field(None, min_length=1, max_length=64, description="user it acts as; default: you")
    token_endpoint_auth_method: SecretMethod = "client_secret_basic"  # noqa: S105 — a method name, not a secret


class ClientOut(BaseModel):
    client_id: str
    kind: str
    client_name: str
    grant_types: list[str]
    scope: str
    token_endpoint_auth_method: str
    owner_user_id: str | None
    server_ids: list[str]
    redirect_uris: list[str]
    permissions: list[str] | None = Field(
        None, description="what it may do as its owner at most (set up by someone else: what they held)"
    )
    created_at: datetime


class ServiceClientCreated(ClientOut):
    client_secret: str = Field(description="the secret: shown this once, stored only as a hash")


class OAuthClients:
    def __init__(self, db: Database, store: SqlOAuthStore) -> None:
        self._db = db
        self._store = store

    async def create_service(self, actor: Actor, data: ServiceClientIn) -> ServiceClientCreated:
        """A service client acting as its owner: the caller, or (with tokens:manage, as for an API
        token) another user of the tenant; its client_credentials tokens act as that person."""
        unbounded_only(actor.token, "service clients")
        if any(grant != "client_credentials" for grant in data.grant_types):
            # Token exchange and ID-JAGs give tokens acting as other people (whoever's token it
            # holds, whomever the identity provider names), not as its owner: what minting a token
            # for someone else takes.
            actor.require("tokens:manage")
        async with self._db.session(actor.scope) as session:
            owner = await acting_as(session, actor, data.owner)
            if owner.id != actor.user_id:
                actor.require("tokens:manage")
            await check_may_act_for(session, actor, owner)  # its tokens act as the owner
            # Set up for someone else: never beyond its creator, whatever the owner is given later.
            limit = within_minter(actor, None) if owner.id != actor.user_id else None
            server_ids = tuple(dict.fromkeys([(await visible_server(session, actor, ref)).id for ref in data.servers]))
        secret = TOKEN_PREFIX + "cs_" + secrets.token_urlsafe(32)  # the prefix lets secret scanners find leaks
        client = Client(
            client_id="svc_" + secrets.token_urlsafe(18),
            kind="service",
            client_name=data.name,
            redirect_uris=(),  # no person signs in through a service client
            grant_types=tuple(dict.fromkeys(data.grant_types)),
            token_endpoint_auth_method=data.token_endpoint_auth_method,
            scope=" ".join(dict.fromkeys(data.scopes)),
            secret_hash=hash_token(secret),  # 256 random bits: SHA-256 is enough (nothing to brute-force)
            owner_user_id=owner.id,
            server_ids=server_ids,
            permissions=None if limit is None else tuple(limit),
        )
        # The registration record, as RFC 7591 §3.2.1 would echo it (never the secret).
        registration = {
            "client_id": client.client_id,
            "client_id_issued_at": int(time.time()),
            "client_name": client.client_name,
            "grant_types": list(client.grant_types),
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
            "scope": client.scope,
        }
        await self._store.add_client(client, registration, tenant_id=actor.tenant_id)
        [(stored, created_at)] = await self._store.list_clients(client_id=client.client_id)
        return ServiceClientCreated(**_out(stored, created_at).model_dump(), client_secret=secret)

    async def list(self, actor: Actor) -> list[ClientOut]:
        """The tenant's service clients (dynamically registered clients belong to no tenant)."""
        async with self._db.session(actor.scope) as session:
            rows = (await session.scalars(select(OAuthClient).order_by(OAuthClient.created_at))).all()
        return [_out(stored_client(row), row.created_at) for row in rows]

    async def list_registered(self, actor: Actor) -> builtins.list[ClientOut]:  # `list` is a method here
        """The dynamically registered clients (RFC 7591): they belong to no tenant, so only a platform
        administrator (tenants:manage) sees them."""
        actor.require("tenants:manage")
        async with self._db.session(SYSTEM) as session:
            query = select(OAuthClient).where(OAuthClient.tenant_id.is_(None)).order_by(OAuthClient.created_at)
            rows = (await session.scalars(query)).all()
        return [_out(stored_client(row), row.created_at) for row in rows]

    async def delete(self, actor: Actor, client_id: str) -> None:
        """Delete one of the tenant's clients, or (a platform administrator) a registered one."""
        async with self._db.session(actor.scope) as session:
            found = await session.get(OAuthClient, client_id) is not None
        if not found and actor.may("tenants:manage"):
            async with self._db.session(SYSTEM) as session:
                row = await session.get(OAuthClient, client_id)
                found = row is not None and row.tenant_id is None
        if not found or not await self._store.delete_client(client_id):
            raise NotFound(f"no OAuth client {client_id!r}")


def _out(client: Client, created_at: datetime) -> ClientOut:
    return ClientOut(
        client_id=client.client_id,
        kind=client.kind,
        client_name=client.client_name,
        grant_types=list(client.grant_types),
        scope=client.scope,
        token_endpoint_auth_method=client.token_endpoint_auth_method,
        owner_user_id=client.owner_user_id,
        server_ids=list(client.server_ids),
        redirect_uris=list(client.redirect_uris),
        permissions=None if client.permissions is None else list(client.permissions),
        created_at=created_at,
    )
