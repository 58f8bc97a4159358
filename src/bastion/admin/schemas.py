"""Wire models of the admin API (input validated here, with field-level errors)."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bastion.catalog.snapshot import SLUG_PATTERN
from bastion.errors import BadRequest
from bastion.governance.permissions import parse_permission
from bastion.pipeline.dlp_detectors import BASELINE, find_all
from bastion.vault.credentials import ENV_NAME_RULE, check_env

__all__ = [
    "ComposeIn",
    "ItemApprovalIn",
    "ItemOut",
    "ItemPatch",
    "LoginIn",
    "OriginAuthIn",
    "OriginIn",
    "OriginOut",
    "ServerIn",
    "ServerItemOut",
    "ServerOut",
    "TokenCreated",
    "TokenIn",
    "TokenOut",
]

Scope = Literal["mcp", "mcp:read", "mcp:write", "admin"]
Visibility = Literal["private", "team", "tenant"]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Slug = Field(pattern=SLUG_PATTERN, description="lowercase letters, digits, '-' and '_'")
Alias = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
OfferedName = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class StrictIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Placed(StrictIn):
    @field_validator("team_ids", check_fields=False)
    @classmethod
    def _teams_for_team_visibility(cls, team_ids: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("visibility") == "team" and not team_ids:
            raise ValueError("team visibility needs at least one team")
        return team_ids


# Headers Bastion itself sets on requests to an origin: a credential may not replace them.
_RESERVED_HEADERS = {
    "accept",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "cookie",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
}


_SECRET_DETECTORS = tuple(d for d in BASELINE if d.name in {"private_key", "jwt", "api_token", "aws_access_key"})
_SECRET_FLAG = re.compile(r"(?i)--?(?:token|secret|password|passwd|api[-_]?key|access[-_]?key)")
# `--token=...`, `API_KEY=...`, `password=...`: a value given under a name that says it is a secret.
_NAMED_SECRET = re.compile(r"(?i)(?:^|[-_.&?\s])(?:token|secret|password|passwd|api[-_]?key|access[-_]?key)=[^&\s]+")


HIDDEN = "[hidden]"


def shown_command(command: list[str] | None) -> list[str] | None:
    """A stdio command as responses show it: a secret an older registration put in it (refused
    since, see `OriginIn`) is replaced by `[hidden]`, as the value after a secret-named flag."""
    if command is None:
        return None
    shown: list[str] = []
    for part in command:
        if shown and _SECRET_FLAG.fullmatch(shown[-1]) and not part.startswith("-"):
            shown.append(HIDDEN)
        elif "=" in part and secret_in(part) is not None:
            shown.append(part.split("=", 1)[0] + "=" + HIDDEN)
        else:
            shown.append(HIDDEN if secret_in(part) is not None else part)
    return shown


def shown_url(url: str | None) -> str | None:
    """An origin URL as responses show it: each query value that is a secret is `[hidden]`."""
    if url is None or "?" not in url:
        return url
    parts = urlsplit(url)
    if _query_secret(parts.query) is None:
        return url
    pairs = [(k, HIDDEN if secret_in(f"{k}={v}") is not None else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(query=urlencode(pairs, safe="[]")))


def _query_secret(query: str) -> str | None:
    """What kind of secret one of a URL query's parameters holds, or None."""
    return next((kind for k, v in parse_qsl(query, True) if (kind := secret_in(f"{k}={v}")) is not None), None)


def secret_in(text: str) -> str | None:
    """What kind of secret `text` holds (a known token's shape, or a value named as a secret), or None."""
    if _NAMED_SECRET.search(text):
        return "a value named as a secret"
    findings = find_all(text, _SECRET_DETECTORS)
    return findings[0].detector if findings else None


class OriginAuthIn(StrictIn):
    """How Bastion authenticates to an HTTP origin. Secrets are write-only: sealed by the vault,
    never returned (responses show only `auth_mode`). Mode `jwt` has no secret: Bastion mints a
    short-lived token per user, signed with its published key. Mode `oauth` connects each person's
    own account at the origin's authorization server (discovered from the origin's RFC 9728
    metadata; Bastion registers itself there unless a client_id is given). Mode `exchange` trades,
    per person, a JWT Bastion signs for a token of the origin's server (RFC 8693), as the
    confidential client `client_id` / `client_secret` there. Mode `env` is for stdio origins: the
    variables are set in the process's environment at each start, never on its command line."""

    mode: Literal["none", "bearer", "header", "basic", "jwt", "oauth", "exchange", "env"]
    token: SecretStr | None = Field(None, description="bearer: the token Bastion sends")
    name: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9-]+$", description="header: its name")
    value: SecretStr | None = Field(None, description="header: its value")
    username: str | None = Field(None, max_length=256, description="basic: the user name")
    password: SecretStr | None = Field(None, description="basic: the password")
    audience: str | None = Field(None, max_length=2048, description="jwt: the `aud` claim; default: the origin URL")
    lifetime_seconds: int | None = Field(None, ge=30, le=3600, description="jwt: token life; default 300")
    scope: str | None = Field(
        None,
        max_length=1024,
        pattern=r"^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$",
        description="oauth: the scopes to ask for (RFC 6749 §3.3)",
    )
    client_id: str | None = Field(
        None, max_length=2048, description="oauth: Bastion's client at the origin's server; default: register"
    )
    client_secret: SecretStr | None = Field(None, description="oauth: that client's secret, if it has one")
    service_client_id: str | None = Field(
        None, max_length=2048, description="oauth: a client_credentials client for Bastion's own requests"
    )
    service_client_secret: SecretStr | None = Field(None, description="oauth: that service client's secret")
    env: dict[str, SecretStr] | None = Field(
        None, description=f"env (stdio origins): variables to set, by name ({ENV_NAME_RULE}); values are secrets"
    )

    @model_validator(mode="after")
    def _fields_for_mode(self) -> OriginAuthIn:
        needed = {
            "none": (),
            "bearer": ("token",),
            "header": ("name", "value"),
            "basic": ("username", "password"),
            "exchange": ("client_id", "client_secret"),
            "env": ("env",),
        }
        allowed = {
            "jwt": ("audience", "lifetime_seconds"),
            "oauth": ("scope", "client_id", "client_secret", "service_client_id", "service_client_secret"),
            "exchange": ("scope",),
        }
        fields = (
            "token",
            "name",
            "value",
            "username",
            "password",
            "audience",
            "lifetime_seconds",
            *allowed["oauth"],
            "env",
        )
        given = {f for f in fields if getattr(self, f) is not None}
        if missing := [f for f in needed.get(self.mode, ()) if f not in given]:
            raise ValueError(f"mode {self.mode!r} needs {', '.join(missing)}")
        if extra := sorted(given - set(needed.get(self.mode, ())) - set(allowed.get(self.mode, ()))):
            raise ValueError(f"mode {self.mode!r} takes no {', '.join(extra)}")
        if self.client_secret is not None and self.client_id is None:
            raise ValueError("client_secret needs the client_id it belongs to")
        if (self.service_client_id is None) != (self.service_client_secret is None):
            raise ValueError("a service client needs both service_client_id and service_client_secret")
        if self.name is not None and self.name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"{self.name!r} is set by Bastion itself")
        for secret in (self.token, self.value, self.password, self.client_secret, self.service_client_secret):
            if secret is not None and not 0 < len(secret.get_secret_value()) <= 8192:
                raise ValueError("a secret is 1 to 8192 characters")
            if secret is not None and any(c in secret.get_secret_value() for c in "\r\n\0"):
                raise ValueError("a secret may not contain line breaks or NUL")
        if self.env is not None:
            check_env({name: value.get_secret_value() for name, value in self.env.items()})
        for sent_as_is in (self.token, self.value):  # header values on the wire: HTTP/1.1 carries Latin-1 only
            if sent_as_is is not None and not all(ord(c) < 256 for c in sent_as_is.get_secret_value()):
                raise ValueError("a token or header value may hold only Latin-1 characters (all HTTP headers carry)")
        return self

    def secret(self) -> dict[str, Any]:
        """What the vault seals (mode included); empty for mode none."""
        if self.mode == "bearer" and self.token is not None:
            return {"mode": "bearer", "token": self.token.get_secret_value()}
        if self.mode == "header" and self.name is not None and self.value is not None:
            return {"mode": "header", "name": self.name, "value": self.value.get_secret_value()}
        if self.mode == "basic" and self.username is not None and self.password is not None:
            return {"mode": "basic", "username": self.username, "password": self.password.get_secret_value()}
        if self.mode == "env" and self.env is not None:
            return {"mode": "env", "env": {name: value.get_secret_value() for name, value in self.env.items()}}
        return {}


class OriginIn(_Placed):
    name: str = Slug
    transport: Literal["http", "stdio"]
    url: str | None = Field(None, max_length=2048, pattern=r"^https?://[^\s]+$", validate_default=True)
    command: list[str] | None = Field(None, min_length=1, max_length=64, validate_default=True)
    timeout_seconds: float | None = Field(None, gt=0, le=600)
    visibility: Visibility = Field("tenant", description="who sees its items: private (you), team, tenant")
    team_ids: list[Name] = Field(
        default_factory=list, max_length=100, description="selected spaces: teams (names or ids) that may use it"
    )
    auth: OriginAuthIn | None = Field(
        None, description="how Bastion authenticates to it (HTTP origins; mode env for stdio origins)"
    )

    @field_validator("url")
    @classmethod
    def _url_for_http(cls, url: str | None, info: ValidationInfo) -> str | None:
        transport = info.data.get("transport")
        if transport == "http" and url is None:
            raise ValueError("an http origin needs url")
        if transport == "stdio" and url is not None:
            raise ValueError("a stdio origin takes command, not url")
        if url is None:
            return None
        parts = urlsplit(url)
        if "@" in parts.netloc:
            # Origin URLs are shown in API responses; credentials belong in the vault, never here.
            raise ValueError("the url must not carry credentials (user:password@)")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the url's port must be a number from 1 to 65535") from None
        if port == 0:  # read as 80 by one HTTP client and as 0 by another: no single place
            raise ValueError("the url's port must be a number from 1 to 65535")
        if not parts.hostname:
            raise ValueError("the url needs a host")
        if (kind := _query_secret(parts.query)) is not None:
            raise ValueError(f"the url's query holds a secret ({kind}): give it as the origin's auth (header) instead")
        if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):  # %2e%2e too
            # Sent as written by one HTTP client and resolved by another: requests carrying the
            # credential would reach two different paths. Register the path it resolves to.
            raise ValueError("the url's path must not hold '.' or '..' segments: give the path they lead to")
        try:
            parts.hostname.encode("idna")
        except UnicodeError:
            raise ValueError(f"the url's host {parts.hostname!r} is not a valid host name") from None
        return url

    @field_validator("command")
    @classmethod
    def _command_for_stdio(cls, command: list[str] | None, info: ValidationInfo) -> list[str] | None:
        transport = info.data.get("transport")
        if transport == "stdio" and command is None:
            raise ValueError("a stdio origin needs command")
        if transport == "http" and command is not None:
            raise ValueError("an http origin takes url, not command")
        if command is not None and any(not part or len(part) > 4096 for part in command):
            raise ValueError("command parts must be non-empty strings of at most 4096 characters")
        if command is not None and shown_command(command) != command:
            # A command is stored in the clear and shown to every reader of the origin (and to
            # anyone on the host, in `ps`): a secret goes in the sealed environment instead.
            raise ValueError(
                "the command carries a secret (a named value, a flag's value or a token's shape): "
                "give it as auth mode env instead"
            )
        return command


class ReviewIn(StrictIn):
    decision: Literal["approve", "reject"]
    note: str = Field("", max_length=500)
    catalog_digest: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="the origin's catalog_digest as you reviewed it: an approval is refused (409) when the "
        "origin's items changed since, instead of pinning what you did not see",
    )


class ItemOut(BaseModel):
    kind: str
    name: str
    digest: str
    definition: dict[str, Any]
    pinned_digest: str | None = Field(None, description="the digest an administrator approved")
    quarantined: bool = Field(False, description="changed (or new and flagged) since approval: hidden, uncallable")
    flags: list[dict[str, str]] = Field(default_factory=list, description="the poisoning scan's findings")
    change: str | None = Field(None, description="for a quarantined item: unified diff, approved → offered now")


class ItemApprovalIn(StrictIn):
    kind: Literal["tool", "resource", "resource_template", "prompt"]
    name: str = Field(min_length=1, max_length=512)
    digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="the item's digest as reviewed (from its `digest`)")


class OriginOut(BaseModel):
    id: str
    name: str
    transport: str
    url: str | None
    command: list[str] | None
    timeout_seconds: float | None
    protocol_version: str | None
    discovered_at: datetime | None
    last_error: str | None
    status: str = Field(description="connector request: pending, approved or rejected")
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str
    visibility: str
    team_ids: list[str]
    owner_user_id: str | None
    auth_mode: str = Field(description="how Bastion authenticates to it; the secret is never shown")
    items: list[ItemOut] = []
    catalog_digest: str = Field("", description="one digest of the items offered now: name it when approving")


class ServerIn(_Placed):
    slug: str = Slug
    title: str = Field("", max_length=200)
    description: str = Field("", max_length=4096)
    visibility: Visibility = Field("tenant", description="who may use it: private (you), team, tenant")
    team_ids: list[Name] = Field(default_factory=list, max_length=100, description="teams, for team visibility")


class ComposeIn(StrictIn):
    origin: str = Field(min_length=1, max_length=64, description="origin id or name")
    prefix: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")
    items: list[str] | None = Field(None, max_length=1000, description="names to select; omitted: all")
    aliases: dict[OfferedName, Alias] = Field(default_factory=dict, max_length=1000)


class ItemPatch(StrictIn):
    enabled: bool | None = None
    alias: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")


class ServerItemOut(BaseModel):
    id: str
    kind: str
    origin_id: str
    name: str
    exposed_name: str
    enabled: bool


class ServerOut(BaseModel):
    id: str
    slug: str
    title: str
    description: str
    published: bool
    mcp_url: str
    visibility: str
    team_ids: list[str]
    owner_user_id: str | None
    items: list[ServerItemOut] = []


class TokenIn(StrictIn):
    name: str = Field(min_length=1, max_length=100)
    servers: list[str] = Field(default_factory=list, max_length=100, description="virtual server slugs or ids")
    scopes: list[Scope] = Field(default_factory=lambda: list[Scope](["mcp"]), min_length=1)
    expires_in_days: int = Field(30, ge=1, le=365)
    user: str | None = Field(None, min_length=1, max_length=64, description="whose token; default: yours")
    permissions: list[str] | None = Field(
        None, max_length=200, description="limit below the user's roles (see the permission syntax); omitted: none"
    )
    allowed_cidrs: list[str] = Field(default_factory=list, max_length=100, description="source networks; empty: any")
    not_before: datetime | None = Field(None, description="not valid before this instant (UTC)")
    max_uses: int | None = Field(None, ge=1, le=1_000_000_000, description="usage quota; omitted: unlimited")

    @field_validator("permissions")
    @classmethod
    def _known_permissions(cls, permissions: list[str] | None) -> list[str] | None:
        if permissions is not None:
            for text in permissions:
                try:
                    parse_permission(text)
                except BadRequest as exc:
                    raise ValueError(exc.message) from None
        return permissions

    @field_validator("allowed_cidrs")
    @classmethod
    def _networks(cls, cidrs: list[str]) -> list[str]:
        try:
            return [str(ipaddress.ip_network(cidr, strict=False)) for cidr in cidrs]
        except ValueError as exc:
            raise ValueError(f"not an IP network: {exc}") from None

    @field_validator("not_before")
    @classmethod
    def _aware(cls, when: datetime | None) -> datetime | None:
        if when is None:
            return None
        if when.tzinfo is None:
            raise ValueError("give a time zone (for example 2026-01-01T09:00:00Z)")
        try:
            return when.astimezone(UTC)  # stored in UTC; one that UTC cannot hold is refused here
        except OverflowError:
            raise ValueError("the instant is out of range") from None


class TokenOut(BaseModel):
    id: str
    name: str
    user_id: str
    scopes: list[str]
    server_ids: list[str]
    expires_at: datetime
    revoked_at: datetime | None
    created_at: datetime
    permissions: list[str] | None
    allowed_cidrs: list[str]
    not_before: datetime | None
    max_uses: int | None
    uses: int


class TokenCreated(TokenOut):
    token: str = Field(description="the secret: shown this once, stored only as a hash")


class LoginIn(StrictIn):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserIn(StrictIn):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=1, max_length=1024)
    roles: list[Name] = Field(default_factory=lambda: ["member"], max_length=50, description="built-in or custom")
    teams: list[Name] = Field(default_factory=list, max_length=100, description="team names or ids")


class UserPatch(StrictIn):
    roles: list[Name] | None = Field(None, max_length=50)
    teams: list[Name] | None = Field(None, max_length=100)
    is_admin: Literal[False] | None = Field(
        None,
        description="false: take the first administrator's platform-admin flag, which holds whatever roles "
        "are set (only a platform administrator may, and never from the last one)",
    )


class UserOut(BaseModel):
    id: str
    username: str
    is_admin: bool
    provider: str | None
    tenant_id: str
    roles: list[str]
    teams: list[str] = []
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime
