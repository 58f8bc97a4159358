"""Service credentials for origins (scenario C): what is sealed, and the headers it becomes on egress.

A credential is sealed as JSON under the owner `origin_owner(...)`, so it opens only for
the origin row it was written for. The headers it produces live in the snapshot's
`OriginSpec` (process memory), are added by the HTTP origin client to each request to
that origin and to nothing else, and are masked in every repr.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

from bastion.vault.downstream_oauth import OAuthOrigin, parse_oauth_origin
from bastion.vault.envelope import MasterKeys, VaultError

__all__ = [
    "ENV_NAME",
    "ENV_NAME_RULE",
    "JWT_LIFETIME",
    "MODES",
    "OriginCredential",
    "check_env",
    "credential_headers",
    "jwt_config",
    "open_credential",
    "origin_owner",
    "seal_credential",
]

MODES = ("none", "bearer", "header", "basic", "jwt", "oauth", "exchange", "env")
JWT_LIFETIME = 300  # seconds: the default life of a JWT Bastion mints for an origin


def origin_owner(tenant_id: str, origin_id: str) -> str:
    return f"tenant={tenant_id};origin={origin_id};purpose=service-credential"


@dataclass(frozen=True, slots=True)
class OriginCredential:
    """The headers injected on each request to one origin, or why there are none."""

    mode: str
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False, compare=True)
    error: str | None = None  # the sealed credential could not be opened: calls fail with this
    # Mode `jwt` (scenario A): nothing is sealed; Bastion mints a token per user with these.
    audience: str | None = None
    lifetime: int = JWT_LIFETIME
    # Mode `oauth` (scenario B): each person's own token, from their grant at the origin's server;
    # mode `exchange`: each person's token from an RFC 8693 exchange there (no grant stored).
    oauth: OAuthOrigin | None = field(default=None, repr=False)
    # Mode `env`: variables set in a stdio origin's process environment (never its command line).
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)


# What a stdio origin's sealed environment may name: variables that carry a secret, by their usual
# suffix. Not a denylist of the names that load code into the process (LD_PRELOAD, PYTHONPATH,
# NODE_OPTIONS, BASH_ENV, ... every runtime has its own): those would run code the stdio allowlist
# never admitted, and no list of them is complete. No `_URL`: a package manager's index
# (PIP_INDEX_URL, UV_INDEX_URL, ...) is one, and an allowlisted `uvx pkg` would install from it.
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,62}_(?:KEY|TOKEN|SECRET|PASSWORD|PAT|USER|USERNAME)")
ENV_NAME_RULE = "upper case, ending _KEY, _TOKEN, _SECRET, _PASSWORD, _PAT, _USER or _USERNAME"


def check_env(env: dict[str, str]) -> None:
    """ValueError unless `env` is a stdio origin's sealed environment this version accepts."""
    if not 0 < len(env) <= 32:
        raise ValueError("env holds 1 to 32 variables")
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            raise ValueError(f"env variable {name[:70]!r}: {ENV_NAME_RULE}")
        if not 0 < len(value) <= 8192 or "\0" in value:
            raise ValueError(f"env variable {name}: a value is 1 to 8192 characters, without NUL")


def credential_headers(secret: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    mode = secret.get("mode")
    if mode == "bearer":
        return (("authorization", f"Bearer {secret['token']}"),)
    if mode == "header":
        return ((str(secret["name"]).lower(), str(secret["value"])),)
    if mode == "basic":
        pair = f"{secret['username']}:{secret['password']}".encode()
        return (("authorization", "Basic " + base64.b64encode(pair).decode("ascii")),)
    if mode in ("oauth", "exchange"):  # no fixed header: each request carries its person's token
        parse_oauth_origin(secret)
        return ()
    if mode == "env":  # a stdio origin's: no header at all
        check_env(secret["env"])
        return ()
    raise VaultError(f"unknown credential mode {mode!r}")


def jwt_config(audience: str, lifetime: int) -> str:
    return json.dumps({"audience": audience, "lifetime": lifetime}, separators=(",", ":"))


def seal_credential(keys: MasterKeys, tenant_id: str, origin_id: str, secret: dict[str, Any]) -> str:
    credential_headers(secret)  # refuses an unknown mode before anything is sealed
    return keys.seal(json.dumps(secret, separators=(",", ":")).encode(), origin_owner(tenant_id, origin_id))


def open_credential(
    keys: MasterKeys | None, tenant_id: str, origin_id: str, mode: str, sealed: str | None
) -> OriginCredential | None:
    """The origin's credential for the snapshot; None for an origin that takes none."""
    if mode == "none" or sealed is None:
        return None
    if mode == "jwt":  # no secret: the stored value is the minting configuration, in the clear
        try:
            config = json.loads(sealed)
            return OriginCredential("jwt", audience=str(config["audience"]), lifetime=int(config["lifetime"]))
        except (ValueError, KeyError, TypeError):
            return OriginCredential("jwt", error="its JWT configuration is malformed")
    if keys is None:
        return OriginCredential(mode, error="its credential is sealed, and no master key is configured")
    try:
        secret = json.loads(keys.open(sealed, origin_owner(tenant_id, origin_id)))
        if mode in ("oauth", "exchange"):
            return OriginCredential(mode, oauth=parse_oauth_origin(secret))
        if mode == "env":
            check_env(secret["env"])  # checked again: a row written past the API is not trusted
            return OriginCredential(mode, env=tuple(sorted(secret["env"].items())))
        return OriginCredential(mode, headers=credential_headers(secret))
    except (VaultError, ValueError, KeyError, TypeError) as exc:
        return OriginCredential(mode, error=f"its credential cannot be opened ({exc})")
