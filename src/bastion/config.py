"""Settings: one validated object built from `BASTION_*` environment variables.

The variables are flat (`BASTION_HOST`, `BASTION_DATABASE_URL`, ...) because they
are what operators type; the sections below group them by area. `posture()`
is the start-up security check.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bastion.oauth.oidc_discovery import OidcProviders
from bastion.vault.envelope import MasterKeys, VaultError
from bastion.vault.keys import KeyFile, keys_from_env

__all__ = ["Settings"]

# Lists that operators write comma-separated ("a,b") or as JSON; NoDecode keeps
# pydantic-settings from insisting on JSON before `_split_csv` sees the value.
CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Secrets, as `bastion support bundle` shows them (bastion.support.settings_view): a SecretStr field
    or a field marked json_schema_extra={"secret": True} as "<redacted>"; in a field marked
    {"secret": "url"}, the password of each URL it holds."""

    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="ignore", frozen=True)

    # --- listener -----------------------------------------------------------
    host: str = Field("127.0.0.1", description="Interface to bind. Loopback unless you mean otherwise.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on (0 picks a free one).")
    ssl_certfile: Path | None = Field(None, description="PEM certificate; enables TLS with ssl_keyfile.")
    ssl_keyfile: Path | None = Field(None, description="PEM private key for ssl_certfile.")
    public_url: str | None = Field(
        None,
        json_schema_extra={"secret": "url"},
        description="Externally visible base URL (for printed client configs); derived if unset.",
    )

    # --- storage --------------------------------------------------------------
    database_url: str = Field(
        "sqlite+aiosqlite:///./var/bastion.db",
        json_schema_extra={"secret": "url"},
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    epoch_poll_seconds: float = Field(
        0.5, gt=0, description="How often a replica checks the store's change epoch for writes made elsewhere."
    )

    # --- replicas -------------------------------------------------------------
    redis_url: str | None = Field(
        None,
        json_schema_extra={"secret": "url"},
        description="Redis for change events and the shared change epoch (redis://host:6379/0): every request "
        "is checked against it, so a change committed on any replica binds the next request on all. "
        "Unset: one process, in-process events.",
    )
    redis_namespace: str = Field(
        "bastion",
        min_length=1,
        description="Prefix of Bastion's Redis key and channel: the same for one deployment's replicas, "
        "different for deployments that share a Redis.",
    )
    redis_timeout_seconds: float = Field(
        1.0, gt=0, description="Longest wait for Redis before a request is refused with 503."
    )

    # --- bootstrap ------------------------------------------------------------
    admin_user: str = Field("admin", min_length=1, max_length=64, description="First admin's user name.")
    admin_password: str | None = Field(
        None,
        repr=False,
        json_schema_extra={"secret": True},
        description="First admin's password; generated and printed once when unset.",
    )

    # --- transport hardening ----------------------------------------------------
    allowed_origins: CsvList = Field(
        default_factory=lambda: ["http://localhost", "http://127.0.0.1", "https://localhost"],
        description="Browser Origin values accepted on MCP endpoints (scheme://host, any port). "
        "Requests without an Origin header (non-browser clients) are accepted.",
    )
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest accepted request body (413 beyond).")
    max_json_depth: int = Field(32, gt=0, description="Deepest JSON nesting accepted in a request body.")
    session_idle_seconds: float = Field(
        3600, gt=0, description="A replica frees an idle MCP session's local state after this (the id stays valid)."
    )
    session_lifetime_seconds: float = Field(
        86_400, gt=0, description="Every replica refuses an MCP session id this long after its initialize."
    )
    session_local_max: int = Field(
        10_000,
        ge=16,
        description="MCP sessions whose local state one replica keeps; past it, the least recently used that "
        "hold nothing (no stream, no request in flight) are freed and reopen from their sealed id when used.",
    )
    rate_limit_mcp_sessions: str = Field(
        "120/minute",
        description="MCP sessions one person may open (initialize, 2026-07-28 subscriptions/listen), across "
        "replicas (limits notation): what bounds the record of ended sessions every replica keeps.",
    )
    rate_limit_mcp_refusals: str = Field(
        "120/minute",
        description="Refusals of MCP requests nobody could be identified for (no or a bad token, an Origin not "
        "allowed) recorded per client address (limits notation); past it answered as before, counted, not recorded.",
    )
    rate_limit_request_refusals: str = Field(
        "120/minute",
        description="Refusals (4xx) of admin API, OAuth and console requests nobody could be identified for, "
        "recorded per client address (limits notation); past it answered as before, not recorded.",
    )
    mcp_streams_per_token: int = Field(
        32, gt=0, description="MCP notification streams (GET, listen) one token may hold open on one replica."
    )
    session_key: SecretStr | None = Field(
        None,
        description="Keys sealing MCP session ids so that any replica opens any session: comma-separated "
        "base64url 256-bit keys; the first seals, all open (rotation). Unset: one key generated at the "
        "first start and kept in the store.",
    )
    master_key: SecretStr | None = Field(
        None,
        description="The vault's master keys: comma-separated `kid:key` (32 random bytes, base64url); the first "
        "seals, all open (rotation: put the new key first, run `bastion keys rewrap`, then drop the old).",
    )
    master_key_file: Path | None = Field(
        None,
        description="A JSON master key file (mode 0600), created with one fresh key when missing; "
        "`bastion keys rotate` adds a key to it. Alternative to BASTION_MASTER_KEY.",
    )
    vault_addr: str | None = Field(
        None,
        json_schema_extra={"secret": "url"},
        description="HashiCorp Vault's address: its transit engine then holds the current master key "
        "(the `vault` extra, hvac); keys from BASTION_MASTER_KEY(_FILE) still open older secrets.",
    )
    vault_token: SecretStr | None = Field(None, description="The Vault token Bastion uses for transit.")
    vault_transit_key: str = Field("bastion", max_length=128, description="The transit key's name in Vault.")
    vault_transit_mount: str = Field("transit", max_length=128, description="Where the transit engine is mounted.")
    audit_journal_dir: Path | None = Field(
        None,
        description="Where audit records are journaled (fdatasync'ed) before the store has them; files "
        "left by a crash or a store outage are written to the store at the next start. Default: "
        "audit-journal/ beside a SQLite database, else ./var/audit-journal/.",
    )
    audit_checkpoint_every: int = Field(
        1000, ge=1, description="A signed checkpoint of a tenant's audit chain every this many records."
    )
    audit_checkpoint_seconds: float = Field(
        60.0, gt=0, description="A signed checkpoint after this many seconds when records came since the last one."
    )
    audit_store_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often journaled audit records are appended to the store's chains (and their journal "
        "files deleted). Each round costs about 5 ms of CPU whatever its size; shorter shows records in "
        "searches sooner and costs more per call.",
    )
    token_use_flush_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="How often the API token use log is written to the store (sooner once 500 uses wait). "
        "Each write costs about 5 ms of CPU whatever its size.",
    )
    audit_store_first: Literal["unless-read-only", "destructive", "never"] = Field(
        "unless-read-only",
        description="Which tool calls reach their origin only once a record of the call is in the store (a "
        "store outage then refuses them): every tool not annotated readOnlyHint, only destructive ones, or "
        "none. The rest are answered once their record is in the local journal, and reach the store on "
        "recovery.",
    )
    cors_origins: CsvList = Field(
        default_factory=list,
        description="Browser origins (scheme://host[:port], exactly as the browser sends them) answered with CORS on "
        "every route, MCP endpoints included (and accepted by their Origin check); empty = CORS off.",
    )
    admin_ui: bool = Field(
        False,
        description="Serve the admin console at /admin (server-rendered pages; the same permissions as /api).",
    )
    trusted_proxies: CsvList = Field(
        default_factory=list,
        description="Reverse proxies (CIDRs) whose X-Forwarded-For is believed: a request from one of them is "
        "attributed to the rightmost address in that header that is not itself a trusted proxy. Empty: the "
        "socket peer is the client and X-Forwarded-For is ignored.",
    )

    # --- upstream ---------------------------------------------------------------
    upstream_timeout_seconds: float = Field(30.0, gt=0, description="Default per-origin call timeout.")
    upstream_max_response_bytes: int = Field(
        4_194_304, gt=0, description="Largest upstream reply accepted (the client gets an error beyond)."
    )
    stdio_commands: list[list[str]] = Field(
        default_factory=lambda: [[sys.executable, "-m", "bastion.demo.inventory"]],
        description="Commands stdio origins may run, as a JSON list of argv prefixes, each starting with an "
        "absolute executable path; a command must begin with one of them, element by element. "
        "Default: the bundled demo origin only.",
    )
    stdio_max_data_bytes: int = Field(
        2 * 1024**3, ge=0, description="Data segment limit (RLIMIT_DATA) of each stdio origin process; 0: none."
    )
    stdio_max_open_files: int = Field(
        1024, ge=0, description="Open file limit (RLIMIT_NOFILE) of each stdio origin process; 0: none."
    )
    stdio_max_cpu_seconds: int = Field(
        0, ge=0, description="CPU seconds (RLIMIT_CPU) over a stdio origin process's whole life; 0: none."
    )

    # --- OAuth authorization server ---------------------------------------------------
    access_token_ttl_seconds: int = Field(600, ge=30, le=86_400, description="Lifetime of OAuth access tokens.")
    refresh_token_ttl_seconds: int = Field(
        30 * 86_400, ge=300, description="Lifetime of each refresh token (rotated on every use)."
    )
    auth_code_ttl_seconds: int = Field(60, ge=10, le=600, description="Lifetime of authorization codes.")
    login_session_seconds: int = Field(
        900,
        ge=60,
        le=86_400,
        description="How long a browser sign-in lasts (the consent flow, the admin console) unless renewed by use.",
    )
    console_session_max_seconds: int = Field(
        8 * 3600,
        ge=60,
        le=7 * 86_400,
        description="The admin console renews a session in use (a page past half of BASTION_LOGIN_SESSION_SECONDS "
        "gets a fresh one) until this long after signing in; then the person signs in again.",
    )
    registration: Literal["open", "allowlist", "off"] = Field(
        "open",
        description="Dynamic client registration (RFC 7591): open, allowlist (redirect hosts in "
        "BASTION_REGISTRATION_REDIRECT_HOSTS; loopback always allowed) or off.",
    )
    registration_redirect_hosts: CsvList = Field(
        default_factory=list, description="Redirect hosts dynamic clients may use when registration=allowlist."
    )
    client_metadata_documents: bool = Field(
        True, description="Accept Client ID Metadata Documents (HTTPS URLs as client_id), fetched SSRF-safely."
    )
    enterprise_idps: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra={"secret": "url"},
        description="Enterprise-Managed Authorization: trusted IdP issuer → its JWKS URL, as JSON "
        '(e.g. {"https://acme.okta.com": "https://acme.okta.com/oauth2/v1/keys"}); their ID-JAG '
        "assertions are exchanged for hub tokens at the token endpoint.",
    )
    egress_allow_hosts: CsvList = Field(
        default_factory=list,
        description="Host patterns Bastion may fetch from even when they resolve to private addresses.",
    )
    egress_allow_cidrs: CsvList = Field(
        default_factory=list,
        description="Address ranges Bastion may connect to although private, loopback or link-local.",
    )
    egress_ca_file: Path | None = Field(
        None, description="Extra CA bundle (PEM) trusted for outbound HTTPS (client metadata documents, IdPs)."
    )
    rate_limit_registration: str = Field(
        "10/minute", description="Dynamic client registrations per client address (limits notation)."
    )
    rate_limit_sign_in: str = Field("20/minute", description="Password sign-in attempts per client address.")
    rate_limit_authorize: str = Field("60/minute", description="Authorization requests per client address.")
    rate_limit_token: str = Field("120/minute", description="Token endpoint requests per client address.")
    password_min_length: int = Field(12, ge=8, le=128, description="Shortest password a new local user may have.")
    argon2_time_cost: int = Field(3, ge=1, le=20, description="Argon2id passes for new password hashes.")
    argon2_memory_kib: int = Field(65_536, ge=8_192, description="Argon2id memory (KiB) for new password hashes.")
    lockout_threshold: int = Field(
        5, ge=1, description="Sign-in attempts per name and client network (IPv6: /64) within the lockout period."
    )
    lockout_seconds: float = Field(
        300, gt=0, description="The lockout period; an account lock's first duration, doubling per further failure."
    )
    lockout_account_threshold: int = Field(
        100, ge=1, description="Failed logins in a row, from anywhere, that lock the account itself."
    )

    # --- policy pipeline ----------------------------------------------------------------
    pipeline: bool = Field(
        True,
        description="Run the policy pipeline (rate limits, approval, schema guard, anonymization, DLP, response "
        "checks) around every forwarded call. Off only to measure the bare proxy: the posture check warns.",
    )
    poisoning_scan: Literal["block", "flag"] = Field(
        "block",
        description="An item whose description or schema carries hidden instructions (high-severity scan "
        "finding): block keeps it quarantined until an administrator approves it by name; flag only records it.",
    )

    # --- posture ----------------------------------------------------------------
    require_strong_secrets: bool = Field(
        False, description="Refuse to start (instead of warning) when the posture check finds problems."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log threshold.")
    log_file: Path | None = Field(
        None,
        description="Also write the JSON log lines to this file (rotated at 10 MB, three kept); "
        "`bastion support bundle` collects its last lines. Unset: stderr only.",
    )

    # --- observability: metrics and traces ------------------------------------------------
    otel_exporter: Literal["none", "otlp", "console"] = Field(
        "none",
        description="OpenTelemetry traces of each request, its dispatch and its upstream calls: `otlp` "
        "(OTLP/HTTP, the `otel` extra), `console` (stdout), or `none` (off).",
    )
    otel_endpoint: str | None = Field(
        None,
        json_schema_extra={"secret": "url"},
        description="The OTLP/HTTP traces URL (e.g. http://127.0.0.1:4318/v1/traces); unset: the exporter's "
        "own OTEL_EXPORTER_OTLP_* variables decide.",
    )
    otel_service_name: str = Field("bastion", max_length=128, description="service.name of Bastion's spans.")

    # --- federation: sign-in through external OpenID Connect providers -------------------
    oidc_providers: OidcProviders = Field(
        default_factory=list,
        description="OpenID providers offered on the sign-in page, as a JSON list of {name, issuer, client_id, "
        "client_secret, scopes, group_claim, role_map: {group: role}}. Their users are created on first sign-in "
        "and take their roles from their groups at every sign-in.",
    )

    @field_validator(
        "allowed_origins",
        "cors_origins",
        "registration_redirect_hosts",
        "egress_allow_hosts",
        "egress_allow_cidrs",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        # Operators write comma-separated lists in environment variables.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)  # the JSON form is accepted too
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        # A browser's Origin is scheme://host[:port], compared as a string: "https://app.example/"
        # would never match, so a path (or anything else) is a mistake to stop on, not to ignore.
        for entry in value:
            if entry != _browser_origin(entry):
                raise ValueError(
                    f"{entry!r} is not an origin as a browser sends it (scheme://host[:port], lower case, no "
                    "default port, such as https://app.example); a wildcard would let every site read responses"
                )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        # A typo must stop the start, not silently trust nobody (or everybody).
        try:
            return [str(ipaddress.ip_network(cidr, strict=False)) for cidr in value]
        except ValueError as exc:
            raise ValueError(f"not an IP network: {exc}") from None

    @field_validator(
        "rate_limit_registration",
        "rate_limit_sign_in",
        "rate_limit_token",
        "rate_limit_authorize",
        "rate_limit_mcp_sessions",
        "rate_limit_mcp_refusals",
        "rate_limit_request_refusals",
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse  # validated at start-up, not at the first refused request

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit such as '10/minute'") from None
        return value

    @field_validator("stdio_commands")
    @classmethod
    def _absolute_commands(cls, value: list[list[str]]) -> list[list[str]]:
        # A bare name would be looked up on PATH at each start: exactly what pinning rules out.
        for entry in value:
            if not entry or not os.path.isabs(entry[0]) or not all(entry):
                raise ValueError(f"{entry!r}: each entry is a non-empty argv starting with an absolute path")
        return value

    def master_keys(self) -> MasterKeys | None:
        """The vault's master keys (None: none configured). VaultError names what is wrong, never a key."""
        if self.master_key is not None and self.master_key_file is not None:
            raise VaultError("set BASTION_MASTER_KEY or BASTION_MASTER_KEY_FILE, not both")
        local = None
        if self.master_key is not None:
            local = keys_from_env(self.master_key.get_secret_value())
        elif self.master_key_file is not None:
            local = KeyFile(self.master_key_file).load(create=True)
        if self.vault_addr is None:
            return local
        from bastion.vault.transit import TransitKey  # the optional `vault` extra

        token = self.vault_token.get_secret_value() if self.vault_token is not None else None
        transit = TransitKey.connect(self.vault_addr, token, self.vault_transit_key, self.vault_transit_mount)
        return MasterKeys(transit, local.kids.values() if local is not None else ())

    def audit_journal_path(self) -> Path:
        if self.audit_journal_dir is not None:
            return self.audit_journal_dir
        prefix = "sqlite+aiosqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url.removeprefix(prefix)).parent / "audit-journal"
        return Path("var") / "audit-journal"

    def session_keys(self) -> list[bytes]:
        """The configured session-sealing keys, first the one that seals; empty: use the stored key.

        Not a field validator: pydantic would echo a malformed key (nearly a real one) in its error.
        Services calls this at start-up.
        """
        return [] if self.session_key is None else _session_keys(self.session_key.get_secret_value())

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None and self.ssl_keyfile is not None

    def base_url(self) -> str:
        if self.public_url:
            # Scheme and host lowercased: clients compare issuer URLs as plain strings (RFC 8414 §3.3).
            scheme, sep, rest = self.public_url.rstrip("/").partition("://")
            host, slash, path = rest.partition("/")
            return f"{scheme.lower()}{sep}{host.lower()}{slash}{path}"
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def _browser_origin(entry: str) -> str | None:
    """`entry` as a browser serializes an origin (RFC 6454 §6.2), or None when it is not one."""
    try:
        parts = urlsplit(entry)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username is not None:
        return None
    if parts.path or parts.query or parts.fragment:
        return None
    default = 80 if parts.scheme == "http" else 443
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _session_keys(text: str) -> list[bytes]:
    keys = []
    for item in (part.strip() for part in text.split(",")):
        try:
            key = base64.urlsafe_b64decode(item + "=" * (-len(item) % 4))
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ValueError("BASTION_SESSION_KEY: each key is 32 random bytes in base64url, keys separated by commas")
        keys.append(key)
    return keys
