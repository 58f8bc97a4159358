"""Wire models of the admin API (input validated here, with field-level errors)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

__all__ = [
    "ComposeIn",
    "ItemOut",
    "ItemPatch",
    "LoginIn",
    "OriginIn",
    "OriginOut",
    "ServerIn",
    "ServerItemOut",
    "ServerOut",
    "TokenCreated",
    "TokenIn",
    "TokenOut",
]

Scope = Literal["mcp", "admin"]
Slug = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="lowercase letters, digits, '-' and '_'")
Alias = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
OfferedName = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OriginIn(_In):
    name: str = Slug
    transport: Literal["http", "stdio"]
    url: str | None = Field(None, max_length=2048, pattern=r"^https?://[^\s]+$", validate_default=True)
    command: list[str] | None = Field(None, min_length=1, max_length=64, validate_default=True)
    timeout_seconds: float | None = Field(None, gt=0, le=600)

    @field_validator("url")
    @classmethod
    def _url_for_http(cls, url: str | None, info: ValidationInfo) -> str | None:
        transport = info.data.get("transport")
        if transport == "http" and url is None:
            raise ValueError("an http origin needs url")
        if transport == "stdio" and url is not None:
            raise ValueError("a stdio origin takes command, not url")
        if url is not None and "@" in urlsplit(url).netloc:
            # Origin URLs are shown in API responses; credentials belong in the vault, never here.
            raise ValueError("the url must not carry credentials (user:password@)")
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
        return command


class ItemOut(BaseModel):
    kind: str
    name: str
    digest: str
    definition: dict[str, Any]


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
    items: list[ItemOut] = []


class ServerIn(_In):
    slug: str = Slug
    title: str = Field("", max_length=200)
    description: str = Field("", max_length=4096)


class ComposeIn(_In):
    origin: str = Field(min_length=1, max_length=64, description="origin id or name")
    prefix: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")
    items: list[str] | None = Field(None, max_length=1000, description="names to select; omitted: all")
    aliases: dict[OfferedName, Alias] = Field(default_factory=dict, max_length=1000)


class ItemPatch(_In):
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
    items: list[ServerItemOut] = []


class TokenIn(_In):
    name: str = Field(min_length=1, max_length=100)
    servers: list[str] = Field(default_factory=list, max_length=100, description="virtual server slugs or ids")
    scopes: list[Scope] = Field(default_factory=lambda: list[Scope](["mcp"]), min_length=1)
    expires_in_days: int = Field(30, ge=1, le=365)


class TokenOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    server_ids: list[str]
    expires_at: datetime
    revoked_at: datetime | None
    created_at: datetime


class TokenCreated(TokenOut):
    token: str = Field(description="the secret: shown this once, stored only as a hash")


class LoginIn(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserIn(_In):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=1, max_length=1024)
    is_admin: bool = False


class UserOut(BaseModel):
    id: str
    username: str
    is_admin: bool
    provider: str | None
    roles: list[str]
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime
