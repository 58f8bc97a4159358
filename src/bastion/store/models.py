"""Tables. One class per table; relationships are explicit ids, loaded by repos."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "DEFAULT_TENANT",
    "ApiToken",
    "ApiTokenUse",
    "AuditCheckpoint",
    "AuditCheckpointKey",
    "AuditEntry",
    "AuditHead",
    "Base",
    "DownstreamClientApproval",
    "DownstreamConnect",
    "DownstreamGrant",
    "LoginEvent",
    "McpSessionEnd",
    "Meta",
    "OAuthClient",
    "OAuthCode",
    "OAuthConsent",
    "OAuthToken",
    "Origin",
    "OriginItem",
    "Policy",
    "Role",
    "ServerItem",
    "SigningKey",
    "StateEpoch",
    "Team",
    "TeamMember",
    "Tenant",
    "TenantOwned",
    "User",
    "VirtualServer",
    "new_id",
    "utcnow",
]


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


DEFAULT_TENANT = "default"  # the id of the tenant every installation starts with


class TenantOwned:
    """Rows that belong to a tenant. A tenant-scoped session (`bastion.store.tenancy`) filters
    every query on them by the caller's tenant and refuses writes into another tenant."""

    # System-scope writes (bootstrap, the CLI on a single node) land in the default tenant.
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True, default=DEFAULT_TENANT
    )


class Tenant(Base):
    """An organization: users, origins, virtual servers, tokens and clients belong to one."""

    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Team(TenantOwned, Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamMember(TenantOwned, Base):
    __tablename__ = "team_members"
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class Role(TenantOwned, Base):
    """A custom role: a named set of permissions (`bastion.governance.permissions`) in one tenant."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(500), default="")
    permissions: Mapped[list[Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(TenantOwned, Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # Federated users: the identity provider's name and its subject; local users: None.
    provider: Mapped[str | None] = mapped_column(String(64), default=None)
    subject: Mapped[str | None] = mapped_column(String(255), default=None)
    roles: Mapped[list[Any]] = mapped_column(default=list)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Origin(TenantOwned, Base):
    """An upstream MCP server. Registering one is a connector request: nothing of it is
    reachable until a connector admin approves it."""

    __tablename__ = "origins"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64))
    owner_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    visibility: Mapped[str] = mapped_column(String(8), default="tenant")  # private | team | tenant
    team_ids: Mapped[list[Any]] = mapped_column(default=list)  # "selected spaces" when visibility is team
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | approved | rejected
    reviewed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    reviewed_at: Mapped[datetime | None] = mapped_column(default=None)
    review_note: Mapped[str] = mapped_column(String(500), default="")
    # How Bastion authenticates to it (`none`, `bearer`, `header`, `basic`); the secret itself is
    # sealed by the vault (`bastion.vault`), bound to this origin: it never leaves Bastion.
    auth_mode: Mapped[str] = mapped_column(String(16), default="none")
    credential: Mapped[str | None] = mapped_column(Text, default=None)
    transport: Mapped[str] = mapped_column(String(16))  # "http" | "stdio"
    url: Mapped[str | None] = mapped_column(String(2048), default=None)
    command: Mapped[list[Any] | None] = mapped_column(default=None)
    timeout_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    protocol_version: Mapped[str | None] = mapped_column(String(32), default=None)
    discovered_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OriginItem(Base):
    """A tool, resource, resource template or prompt an origin offered at discovery."""

    __tablename__ = "origin_items"
    __table_args__ = (UniqueConstraint("origin_id", "kind", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    origin_id: Mapped[str] = mapped_column(ForeignKey("origins.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))  # tool | resource | resource_template | prompt
    name: Mapped[str] = mapped_column(String(512))  # tool/prompt name, resource URI or URI template
    definition: Mapped[dict[str, Any]] = mapped_column()
    digest: Mapped[str] = mapped_column(String(64))
    # What an administrator approved: a later definition with another digest is quarantined.
    pinned_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    pinned_definition: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    flags: Mapped[list[Any]] = mapped_column(default=list)  # the poisoning scan's findings (rule, where, severity)

    @property
    def unapproved(self) -> bool:
        """Offered as no administrator approved it (changed, or new): quarantined on an approved origin."""
        return self.pinned_digest != self.digest


class Policy(TenantOwned, Base):
    """One stage's settings at one scope (`bastion.pipeline.config`): only the fields set there."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("tenant_id", "scope", "stage"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    scope: Mapped[str] = mapped_column(String(600))  # global | server:<slug> | origin:<name> | tool:<origin>/<name>
    stage: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]] = mapped_column()
    updated_by: Mapped[str | None] = mapped_column(String(64), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class VirtualServer(TenantOwned, Base):
    __tablename__ = "virtual_servers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(64), unique=True)  # global: it is the MCP URL's path
    owner_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    visibility: Mapped[str] = mapped_column(String(8), default="tenant")  # private | team | tenant
    team_ids: Mapped[list[Any]] = mapped_column(default=list)
    title: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ServerItem(Base):
    """One origin item selected into a virtual server, under the name clients see."""

    __tablename__ = "server_items"
    __table_args__ = (UniqueConstraint("server_id", "kind", "exposed_name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    server_id: Mapped[str] = mapped_column(ForeignKey("virtual_servers.id", ondelete="CASCADE"), index=True)
    origin_id: Mapped[str] = mapped_column(ForeignKey("origins.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    name: Mapped[str] = mapped_column(String(512))  # the origin's name for it
    exposed_name: Mapped[str] = mapped_column(String(512))  # prefix + name, or an alias
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class ApiToken(TenantOwned, Base):
    """An API token: only its SHA-256 is stored; the secret is shown once at creation.

    Optional limits narrow it below its user's roles: permissions, source CIDRs,
    a validity window and a usage quota. Each use is logged in `api_token_uses`.
    """

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    scopes: Mapped[list[Any]] = mapped_column()  # "mcp" and/or "admin"
    server_ids: Mapped[list[Any]] = mapped_column()  # virtual servers an "mcp" token may reach
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    permissions: Mapped[list[Any] | None] = mapped_column(default=None)  # None: all of the user's
    allowed_cidrs: Mapped[list[Any]] = mapped_column(default=list)  # empty: any address
    not_before: Mapped[datetime | None] = mapped_column(default=None)
    max_uses: Mapped[int | None] = mapped_column(Integer, default=None)
    uses: Mapped[int] = mapped_column(Integer, default=0)  # counted uses, written with the use log


class ApiTokenUse(TenantOwned, Base):
    """One use of an API token, allowed or blocked (then with the reason)."""

    __tablename__ = "api_token_uses"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_id: Mapped[str] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(2048))
    ip: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    block_reason: Mapped[str | None] = mapped_column(String(200), default=None)


class OAuthClient(TenantOwned, Base):
    """A registered OAuth client (RFC 7591 or created by an admin). CIMD clients are not stored.

    Service clients belong to their creator's tenant; dynamically registered ones to none
    (they act for whichever user signs in), so no tenant-scoped session sees them.
    """

    __tablename__ = "oauth_clients"
    tenant_id: Mapped[str | None] = mapped_column(  # type: ignore[assignment]
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True, default=None
    )
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str | None] = mapped_column(String(64), default=None)  # SHA-256 of a 256-bit secret
    kind: Mapped[str] = mapped_column(String(16))  # "dynamic" | "service"
    client_name: Mapped[str] = mapped_column(String(200), default="")
    redirect_uris: Mapped[list[Any]] = mapped_column(default=list)
    grant_types: Mapped[list[Any]] = mapped_column(default=list)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    application_type: Mapped[str] = mapped_column(String(16), default="web")
    scope: Mapped[str] = mapped_column(String(512), default="")
    metadata_json: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the full registration response
    owner_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), default=None)
    server_ids: Mapped[list[Any]] = mapped_column(default=list)  # service clients: servers they may reach
    # Its permission limit acting as its owner, when someone else set it up (see `within_minter`).
    permissions: Mapped[list[Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OAuthCode(Base):
    """An authorization code, stored as a hash; single use (RFC 6749 §4.1.2)."""

    __tablename__ = "oauth_codes"
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(32), default=new_id)  # the tokens it issued share it
    client_id: Mapped[str] = mapped_column(String(2048))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    server_id: Mapped[str] = mapped_column(ForeignKey("virtual_servers.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    scopes: Mapped[list[Any]] = mapped_column()
    code_challenge: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str | None] = mapped_column(String(255), default=None)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class OAuthToken(Base):
    """An access or refresh token issued by the authorization server, stored as a hash.

    Tokens of one grant share a family: a replayed refresh token revokes the family.
    """

    __tablename__ = "oauth_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))  # "access" | "refresh"
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    client_id: Mapped[str] = mapped_column(String(2048))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    server_id: Mapped[str] = mapped_column(ForeignKey("virtual_servers.id", ondelete="CASCADE"))
    scopes: Mapped[list[Any]] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)  # refresh: rotated
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OAuthFamily(Base):
    """One grant's tokens as a unit: what their rotation and their revocation agree on.

    Saving tokens of a family and revoking it both update this row first, so the database puts
    them in order (a row lock on PostgreSQL, the single writer on SQLite): a rotation that saved
    first has its tokens revoked by the revocation's next statement, which sees them; one that
    comes second finds the family revoked and saves nothing. Without it, a refresh token presented
    twice at once could leave the winner's new tokens live, saved just after the loser revoked the
    family."""

    __tablename__ = "oauth_families"
    family_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # Token exchange (RFC 8693): the hash of the subject token this family was issued for. Revoking
    # that token, or its family, revokes this one too: a delegated token never outlives its source.
    source_token: Mapped[str | None] = mapped_column(String(64), default=None, index=True)


class SpentId(Base):
    """An id that may not be used again until `expires_at`: a single-use assertion's issuer and
    `jti` (RFC 7523 §3 item 7: an ID-JAG, a token exchange's JWT subject token), a signed-out
    session's id. In the store, not in a process: another replica, or this one after a restart,
    refuses it too (`bastion.store.repos.spent`)."""

    __tablename__ = "spent_ids"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the id and its kind
    expires_at: Mapped[datetime] = mapped_column(index=True)


class OAuthConsent(Base):
    """A user's approval of a client for a virtual server and scopes; withdrawable."""

    __tablename__ = "oauth_consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id", "server_id"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(2048))
    server_id: Mapped[str] = mapped_column(ForeignKey("virtual_servers.id", ondelete="CASCADE"))
    scopes: Mapped[list[Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SigningKey(Base):
    """Bastion's JWS signing keys (published in JWKS while not pruned)."""

    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(128), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    private_jwk: Mapped[str] = mapped_column(Text)  # in the clear until the vault wraps it
    status: Mapped[str] = mapped_column(String(16))  # "active" | "retired"
    created_at: Mapped[float] = mapped_column(Float)


class LoginEvent(TenantOwned, Base):
    """Every login attempt: success, failure or lockout, with where it came from.

    The tenant is the user's; an attempt for an unknown name belongs to none.
    """

    __tablename__ = "login_events"
    tenant_id: Mapped[str | None] = mapped_column(  # type: ignore[assignment]
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True, default=None
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(32), default=None)
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure | locked
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class StateEpoch(Base):
    """One row; bumped by every committed change so other processes notice it."""

    __tablename__ = "state_epoch"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class McpSessionEnd(Base):
    """An MCP session ended by DELETE: every replica refuses its id until it would have expired anyway."""

    __tablename__ = "mcp_session_ends"
    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # The database's clock, not a replica's: replicas read "ended since" against one clock.
    ended_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


class DownstreamGrant(TenantOwned, Base):
    """A person's connection to a per-user OAuth origin: their tokens at its authorization server.

    Keyed by (user, origin, issuer, resource). The tokens are sealed by the vault, bound to exactly
    that key (a ciphertext copied to another row does not open). `version` grows with each write,
    so two replicas refreshing at once cannot both store a rotated refresh token.
    """

    __tablename__ = "downstream_grants"
    __table_args__ = (UniqueConstraint("user_id", "origin_id", "issuer", "resource"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    origin_id: Mapped[str] = mapped_column(ForeignKey("origins.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(2048))
    resource: Mapped[str] = mapped_column(String(2048))
    sealed: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | lost (connect again)
    scope: Mapped[str] = mapped_column(String(1024), default="")
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DownstreamClientApproval(TenantOwned, Base):
    """A person's approval of one MCP client to use their connection to one origin (the MCP spec's
    per-user registry of approved clients, against the confused deputy)."""

    __tablename__ = "downstream_client_approvals"
    __table_args__ = (UniqueConstraint("user_id", "origin_id", "client_key"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    origin_id: Mapped[str] = mapped_column(ForeignKey("origins.id", ondelete="CASCADE"))
    client_key: Mapped[str] = mapped_column(String(2048))  # an OAuth client_id, or `api-token:<id>`
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DownstreamConnect(TenantOwned, Base):
    """One connection attempt in flight, written only after the person consented.

    Found by the hash of its `state`, used once, and bound to the browser that consented: the row
    keeps the hash of a secret that only that browser's cookie holds. The PKCE verifier is sealed.
    """

    __tablename__ = "downstream_connects"
    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    origin_id: Mapped[str] = mapped_column(ForeignKey("origins.id", ondelete="CASCADE"))
    browser_hash: Mapped[str] = mapped_column(String(64))
    sealed_verifier: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class AuditEntry(TenantOwned, Base):
    """One audit record, in its tenant's hash chain (`bastion.audit.chain`). Append-only: no code
    path updates or deletes one (retention is an export-then-prune operation of its own)."""

    __tablename__ = "audit_records"
    __table_args__ = (UniqueConstraint("tenant_id", "seq"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    at_us: Mapped[int] = mapped_column(BigInteger, index=True)
    correlation_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    principal: Mapped[str] = mapped_column(String(255), index=True)
    client: Mapped[str] = mapped_column(String(2048))
    server: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(512), index=True)
    args_digest: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(32))
    latency_us: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any]] = mapped_column()
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(TenantOwned, Base):
    """The head of a tenant's audit chain: locked by the writer that appends the next batch."""

    __tablename__ = "audit_heads"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))
    # The last checkpoint (when the next is due; the checkpoints themselves are what is trusted).
    checkpoint_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    checkpoint_at_us: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class AuditCheckpoint(TenantOwned, Base):
    """A signed statement of a chain's head (seq and hash), made at intervals with Bastion's key."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (UniqueConstraint("tenant_id", "seq"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    at_us: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(Text)  # a compact JWS over {tenant, seq, hash, at_us}


class AuditCheckpointKey(Base):
    """The public key of each signing key that signed a checkpoint, kept after the key ring prunes it;
    sealed with the vault so a database writer cannot plant one (`bastion.audit.checkpoints`)."""

    __tablename__ = "audit_checkpoint_keys"
    kid: Mapped[str] = mapped_column(String(128), primary_key=True)
    public_jwk: Mapped[str] = mapped_column(Text)  # sealed (v1.…), or JSON without a master key
    added_at_us: Mapped[int] = mapped_column(BigInteger)
