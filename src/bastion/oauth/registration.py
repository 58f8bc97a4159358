"""RFC 7591 — OAuth 2.0 Dynamic Client Registration, under an operator's policy.

The request body is parsed with the MCP SDK's `OAuthClientMetadata` model; the
checks below are the ones an authorization server owes on top (RFC 7591 §2,
§3.2.2; OIDC Registration §2 for `application_type`; RFC 8252 for native apps).
Deprecated by MCP 2026-07-28 in favour of client ID metadata documents, and
still what older clients use.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from mcp.shared.auth import OAuthClientMetadata
from pydantic import ValidationError

from bastion.errors import AccessDenied, InvalidClient, InvalidClientMetadata, InvalidRedirectUri, InvalidScope
from bastion.identity.tokens import hash_token
from bastion.oauth.provider import Client, OAuthStore
from bastion.oauth.redirects import has_unsafe_characters, has_userinfo, is_loopback_redirect
from bastion.oauth.scopes import grantable_scopes

__all__ = ["Registrar", "RegistrationPolicy"]

RegistrationPolicy = Literal["open", "allowlist", "off"]
_GRANTS = {"authorization_code", "refresh_token"}
_AUTH_METHODS = {"none", "client_secret_basic", "client_secret_post"}


def _check_redirect(uri: str, application_type: str, allowed_hosts: Sequence[str] | None) -> None:
    if has_unsafe_characters(uri):
        # Stored as sent and shown on the consent page (see `has_unsafe_characters`).
        raise InvalidRedirectUri(f"redirect URI {uri[:200]!r} holds a backslash, a space or a control character")
    parts = urlsplit(uri)
    if parts.fragment:
        raise InvalidRedirectUri(f"redirect URI {uri} has a fragment (RFC 6749 §3.1.2)")
    if has_userinfo(uri):
        raise InvalidRedirectUri(f"redirect URI {uri} has a user name before its host: give the host alone")
    if parts.scheme == "https":
        if application_type == "web" and (parts.hostname or "") in ("localhost", "127.0.0.1", "::1"):
            raise InvalidRedirectUri(f"a web client may not redirect to {uri}; register as application_type native")
    elif parts.scheme == "http":
        if not is_loopback_redirect(uri):
            raise InvalidRedirectUri(f"redirect URI {uri} must use https (plain http only on loopback)")
        if application_type == "web":
            raise InvalidRedirectUri("a web client must use https redirect URIs; loopback is for native clients")
    elif "." not in parts.scheme or application_type != "native":
        # RFC 8252 §7.1: private-use schemes are reverse domain names, for native apps only.
        raise InvalidRedirectUri(f"redirect URI {uri}: use https, http on loopback, or a reverse-DNS native scheme")
    if allowed_hosts is not None:
        _check_allowlisted(uri, allowed_hosts)


def _check_allowlisted(uri: str, allowed_hosts: Sequence[str]) -> None:
    # The allowlist admits its hosts and loopback only: a private-use scheme names no host to list.
    parts = urlsplit(uri)
    if not is_loopback_redirect(uri) and (
        parts.scheme not in ("http", "https") or (parts.hostname or "") not in allowed_hosts
    ):
        where = f"redirect host {parts.hostname}" if parts.scheme in ("http", "https") else f"redirect URI {uri}"
        raise InvalidRedirectUri(f"{where} is not on this server's registration allowlist")


class Registrar:
    def __init__(self, store: OAuthStore, *, policy: RegistrationPolicy, allowed_hosts: Sequence[str] = ()) -> None:
        self._store = store
        self._policy = policy
        self._allowed_hosts = tuple(allowed_hosts)

    @property
    def enabled(self) -> bool:
        return self._policy != "off"

    def admit_document_client(self, client: Client) -> None:
        """A client ID metadata document names a new client as registration does, so the same policy
        holds: `off` admits none (no document is even fetched then: see `AuthServer`), `allowlist`
        only redirect URIs on its hosts (or loopback)."""
        if self._policy == "off":
            raise InvalidClient("this server admits no new clients (BASTION_REGISTRATION=off)")
        if self._policy == "allowlist":
            for uri in client.redirect_uris:
                try:
                    _check_allowlisted(uri, self._allowed_hosts)
                except InvalidRedirectUri as exc:
                    raise InvalidClient(f"{client.client_id}: {exc.message}") from None

    async def register(self, body: Any) -> dict[str, Any]:
        if not self.enabled:
            raise AccessDenied("dynamic client registration is turned off on this server")
        try:
            metadata = OAuthClientMetadata.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InvalidClientMetadata(f"{where}: {first['msg']}") from None
        method = metadata.token_endpoint_auth_method or "none"
        if method not in _AUTH_METHODS:
            raise InvalidClientMetadata(f"token_endpoint_auth_method {method} is not supported here")
        grants = list(metadata.grant_types)
        if not set(grants) <= _GRANTS or "authorization_code" not in grants:
            raise InvalidClientMetadata("grant_types must be authorization_code, optionally with refresh_token")
        if metadata.response_types != ["code"]:
            raise InvalidClientMetadata("response_types must be ['code']")
        try:
            scope = " ".join(grantable_scopes(metadata.scope)) if metadata.scope else ""
        except InvalidScope as exc:  # RFC 7591 §3.2.2 has no invalid_scope: the metadata is what is wrong
            raise InvalidClientMetadata(f"scope: {exc.message}") from None
        # The URIs as the client sent them: the model's URL type rewrites them (a host's case, dot
        # segments, a trailing slash), and the authorization request's is compared exactly
        # (OAuth 2.1 §4.1.1): the client's own URI would not match what the model made of it.
        sent = body.get("redirect_uris") if isinstance(body, dict) else None
        uris = [uri for uri in sent if isinstance(uri, str)] if isinstance(sent, list) else []
        if not uris:  # RFC 7591 §2: redirect-based grants need them; the model lets an explicit null through
            raise InvalidRedirectUri("redirect_uris is required for the authorization_code grant (RFC 7591 §2)")
        hosts = self._allowed_hosts if self._policy == "allowlist" else None
        for uri in uris:
            _check_redirect(uri, metadata.application_type, hosts)
        secret = secrets.token_urlsafe(32) if method != "none" else None
        client = Client(
            client_id=secrets.token_urlsafe(24),
            kind="dynamic",
            client_name=(metadata.client_name or "")[:200],
            redirect_uris=tuple(uris),
            grant_types=tuple(grants),
            token_endpoint_auth_method=method,
            application_type=metadata.application_type,
            scope=scope,
            secret_hash=hash_token(secret) if secret else None,
        )
        # RFC 7591 §3.2.1: the response echoes the registered metadata, as registered.
        response = metadata.model_dump(mode="json", exclude_none=True)
        response.update(
            client_id=client.client_id,
            client_id_issued_at=int(time.time()),
            redirect_uris=uris,
            grant_types=grants,
            token_endpoint_auth_method=method,
        )
        if scope:
            response["scope"] = scope
        await self._store.add_client(client, response)
        if secret is not None:
            response.update(client_secret=secret, client_secret_expires_at=0)
        return response
