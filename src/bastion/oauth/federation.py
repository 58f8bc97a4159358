"""OpenID Connect 1.0 relying party: people sign in to Bastion through an external identity provider.

Discovery (OIDC Discovery 1.0 §4) → authentication request with state, nonce and PKCE S256
(OIDC Core 1.0 §3.1.2.1, RFC 7636) → code exchange (Core §3.1.3.1) → ID token validation
(Core §3.1.3.7) → the person's (subject, username, groups), the groups mapped to Bastion roles.

One random secret in an HttpOnly cookie binds a flow to the browser that started it: the
state binding, the nonce and the PKCE verifier are all derived from it (Core §15.5.2), so
nothing secret travels in a URL. Network access goes through `bastion.net.egress`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio
import orjson
from joserfc.jwk import KeySet

from bastion.errors import (
    Unauthenticated,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnavailable,
)
from bastion.net.egress import EgressPolicy, egress_session, fetch_limited
from bastion.oauth.jwt import InvalidToken, JwksCache, peek_kid, verify_jwt
from bastion.oauth.oidc_discovery import OidcProviderConfig, ProviderMetadata, discovery_url, parse_metadata
from bastion.oauth.redirects import with_params

__all__ = [
    "BrowserBinding",
    "FederatedIdentity",
    "RelyingParty",
    "identity_from_claims",
    "json_object",
    "map_roles",
    "validate_id_token",
]

_MAX_BYTES = 256 * 1024  # discovery, JWKS, token and userinfo replies are a few kilobytes
_LEEWAY_SECONDS = 60  # the provider's clock is not ours
_MAX_ID_TOKEN_AGE = 600  # Core §3.1.3.7 step 10: an ID token fresh from the token endpoint is seconds old


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class BrowserBinding:
    """The per-flow secret kept in the browser's cookie, and the values derived from it."""

    secret: str = field(repr=False)

    @classmethod
    def new(cls) -> BrowserBinding:
        return cls(secrets.token_urlsafe(32))

    def _derive(self, label: str) -> str:
        return _b64(hashlib.sha256(f"bastion-federation-{label}:{self.secret}".encode()).digest())

    @property
    def state_binding(self) -> str:  # RFC 6749 §10.12: the state is valid only with this browser's cookie
        return self._derive("state")

    @property
    def nonce(self) -> str:  # Core §15.5.2: the nonce is a hash of a cookie value
        return self._derive("nonce")

    @property
    def code_verifier(self) -> str:  # RFC 7636 §4.1: 43 unreserved characters, 256 bits
        return self._derive("pkce")

    @property
    def code_challenge(self) -> str:  # RFC 7636 §4.2: S256
        return _b64(hashlib.sha256(self.code_verifier.encode("ascii")).digest())


@dataclass(frozen=True)
class FederatedIdentity:
    provider: str
    subject: str
    username: str
    groups: tuple[str, ...]
    roles: tuple[str, ...]
    tenant: str = "default"  # the provider's tenant (slug): its users belong to it


def map_roles(role_map: Mapping[str, str], groups: tuple[str, ...]) -> tuple[str, ...]:
    """Bastion roles for a person in `groups`: unmapped groups grant nothing."""
    return tuple(sorted({role_map[group] for group in groups if group in role_map}))


def identity_from_claims(config: OidcProviderConfig, claims: Mapping[str, Any]) -> FederatedIdentity:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:  # Core §2: sub, at most 255 characters
        raise InvalidToken("The ID token's sub claim is missing or longer than 255 characters (OIDC Core §2).")
    # Core §5.7: preferred_username is for display; only (iss, sub) identifies the person.
    preferred = claims.get("preferred_username")
    shown = preferred if isinstance(preferred, str) and preferred and preferred.isprintable() else subject
    raw = claims.get(config.group_claim)
    values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    groups = tuple(value for value in values if isinstance(value, str))
    return FederatedIdentity(
        provider=config.name,
        subject=subject,
        username=f"{config.name}:{shown}"[:64],
        groups=groups,
        roles=map_roles(config.role_map, groups),
        tenant=config.tenant,
    )


def validate_id_token(
    token: str, keys: KeySet, *, metadata: ProviderMetadata, client_id: str, nonce: str, now: float
) -> dict[str, Any]:
    """Core §3.1.3.7: the ID token's claims, once signature, iss, aud, azp, exp, iat and nonce all pass."""
    claims = verify_jwt(  # steps 2 (iss), 3 (aud), 6-8 (signature, alg), 9 (exp), 10 (iat)
        token,
        keys,
        issuer=metadata.issuer,
        audience=client_id,
        algorithms=metadata.signing_algorithms,
        now=now,
        leeway=_LEEWAY_SECONDS,
        max_age=_MAX_ID_TOKEN_AGE,
        required=("iss", "sub", "aud", "exp", "iat"),
    )
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if len(audiences) > 1 and azp is None:  # Core 1.0 §3.1.3.7 step 4 (errata 2 leaves azp to extensions)
        raise InvalidToken("The ID token names several audiences but no authorized party (OIDC Core §3.1.3.7).")
    if azp is not None and azp != client_id:  # step 5
        raise InvalidToken("The ID token was issued to another authorized party (OIDC Core §3.1.3.7).")
    claimed = claims.get("nonce")
    if not isinstance(claimed, str) or not secrets.compare_digest(claimed.encode(), nonce.encode()):  # step 11
        raise InvalidToken("The ID token's nonce does not match this sign-in (OIDC Core §3.1.3.7): start again.")
    return claims


def json_object(body: bytes, where: str) -> dict[str, Any]:
    """A provider's JSON answer, which must be an object; UpstreamProtocolError names `where` otherwise."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamProtocolError(f"{where} is not a JSON object")
    return data


class RelyingParty:
    """Bastion as a client of one OpenID provider; discovery and keys are cached, fetched SSRF-safely."""

    def __init__(
        self,
        config: OidcProviderConfig,
        egress: EgressPolicy,
        *,
        redirect_uri: str,
        ssl_context: SSLContext | None = None,
        now: Callable[[], float] = time.time,
        timeout_seconds: float = 10.0,
        metadata_ttl_seconds: float = 3600.0,
    ) -> None:
        self.config = config
        self.redirect_uri = redirect_uri
        self._egress, self._ssl, self._now = egress, ssl_context, now
        self._timeout, self._ttl = timeout_seconds, metadata_ttl_seconds
        self._jwks = JwksCache(self._fetch_jwks, now=now)
        self._metadata: tuple[ProviderMetadata, float] | None = None

    async def metadata(self) -> ProviderMetadata:
        if self._metadata is None or self._now() - self._metadata[1] >= self._ttl:
            url = discovery_url(self.config.issuer)
            document = await self._get_json(url, f"{self.config.name}'s discovery document")
            self._metadata = (parse_metadata(self.config.issuer, document), self._now())
        return self._metadata[0]

    async def authorization_url(self, *, state: str, binding: BrowserBinding) -> str:
        """Core §3.1.2.1: where to send the browser; the answer comes back to `redirect_uri`."""
        metadata = await self.metadata()
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": binding.nonce,
            "code_challenge": binding.code_challenge,
            "code_challenge_method": "S256",
        }
        return with_params(metadata.authorization_endpoint, params)

    async def finish(self, *, code: str, iss: str | None, binding: BrowserBinding) -> FederatedIdentity:
        """Exchange the code from the callback and validate what comes back: the person it names."""
        metadata = await self.metadata()
        if (iss is not None or metadata.iss_parameter) and iss != metadata.issuer:  # RFC 9207 §2.4: mix-up defence
            raise Unauthenticated(f"the sign-in answer did not come from {self.config.name} (RFC 9207 §2.4)")
        tokens = await self._exchange(metadata, code, binding.code_verifier)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):  # Core §3.1.3.3: an OpenID token response carries an ID token
            raise UpstreamProtocolError(f"{self.config.name}'s token response has no ID token")
        keys = await self._jwks.key_set(metadata.jwks_uri, kid=peek_kid(id_token))
        claims = validate_id_token(
            id_token, keys, metadata=metadata, client_id=self.config.client_id, nonce=binding.nonce, now=self._now()
        )
        access_token = tokens.get("access_token")
        wanted = ("preferred_username", self.config.group_claim)
        if metadata.userinfo_endpoint and isinstance(access_token, str) and any(c not in claims for c in wanted):
            userinfo = await self._get_json(
                metadata.userinfo_endpoint, "userinfo", headers={"Authorization": f"Bearer {access_token}"}
            )
            if userinfo.get("sub") != claims["sub"]:  # Core §5.3.2: or the answer is about someone else
                raise UpstreamProtocolError(f"{self.config.name}'s userinfo describes another subject")
            claims = {**userinfo, **claims}  # the signed ID token wins where both speak
        return identity_from_claims(self.config, claims)

    async def _exchange(self, metadata: ProviderMetadata, code: str, verifier: str) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri}
        form["code_verifier"] = verifier  # RFC 7636 §4.5
        headers = {"Accept": "application/json"}
        secret = self.config.client_secret
        if secret is None:  # a public client identifies itself only (RFC 6749 §4.1.3)
            form["client_id"] = self.config.client_id
        elif "client_secret_basic" in metadata.auth_methods:  # RFC 6749 §2.3.1: form-encode, then Basic
            pair = f"{quote(self.config.client_id, safe='')}:{quote(secret.get_secret_value(), safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        elif "client_secret_post" in metadata.auth_methods:
            form |= {"client_id": self.config.client_id, "client_secret": secret.get_secret_value()}
        else:
            raise UpstreamProtocolError(f"{self.config.name} accepts neither client_secret_basic nor _post")
        status, body = await self._post(metadata.token_endpoint, form, headers)
        answer = json_object(body, f"{self.config.name}'s token response")
        if status != 200:  # RFC 6749 §5.2: the error code says why; its description is the provider's prose
            error = answer.get("error")
            reason = error if isinstance(error, str) and error.isidentifier() else f"HTTP {status}"
            raise Unauthenticated(f"{self.config.name} refused to complete the sign-in ({reason}); start again")
        return answer

    async def _post(self, url: str, form: dict[str, str], headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            with anyio.fail_after(self._timeout):
                async with (
                    egress_session(self._egress, timeout=aiohttp.ClientTimeout(total=self._timeout)) as session,
                    session.post(
                        url, data=form, headers=headers, ssl=self._ssl or True, allow_redirects=False
                    ) as response,
                ):
                    body = bytearray()
                    while chunk := await response.content.read(_MAX_BYTES + 1 - len(body)):
                        body += chunk
                        if len(body) > _MAX_BYTES:
                            raise UpstreamTooLarge(f"{url} answered with more than {_MAX_BYTES} bytes; refused")
                    return response.status, bytes(body)
        except TimeoutError as error:
            raise UpstreamTimeout(f"{url} did not answer within {self._timeout:g} seconds") from error
        except aiohttp.ClientError as error:  # the cause stays in the chain; the message names no secret
            raise UpstreamUnavailable(f"could not reach {url}: {type(error).__name__}") from error

    async def _fetch_jwks(self, url: str) -> dict[str, Any]:
        return await self._get_json(url, f"{self.config.name}'s JWK Set")

    async def _get_json(self, url: str, what: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        fetched = await fetch_limited(
            self._egress,
            url,
            max_bytes=_MAX_BYTES,
            timeout_seconds=self._timeout,
            ssl=self._ssl,
            headers={"Accept": "application/json", **(headers or {})},
        )
        if fetched.status != 200:
            raise UpstreamProtocolError(f"{what} at {url} answered HTTP {fetched.status}")
        return json_object(fetched.body, f"{what} at {url}")
