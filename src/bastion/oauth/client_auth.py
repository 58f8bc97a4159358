"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).

Public clients (`none`) identify with `client_id` alone; confidential clients
prove their secret with HTTP Basic (§2.3.1, form-urlencoded parts) or in the body.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from urllib.parse import unquote_plus

from bastion.errors import InvalidClient
from bastion.identity.tokens import hash_token
from bastion.oauth.clients import ClientDirectory
from bastion.oauth.provider import Client

__all__ = ["ClientAuthenticator"]


def _basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text b64decode refuses
        raise InvalidClient("the Basic authorization header is not valid base64") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("the Basic authorization header must be client_id:client_secret")
    # RFC 6749 §2.3.1: both parts are application/x-www-form-urlencoded before encoding.
    return unquote_plus(client_id), unquote_plus(secret)


class ClientAuthenticator:
    def __init__(self, clients: ClientDirectory) -> None:
        self._clients = clients

    async def authenticate(self, form: Mapping[str, str], authorization: str | None) -> Client:
        basic = _basic(authorization)
        if basic is not None:
            client_id, secret = basic
            if form.get("client_id") not in (None, client_id):
                raise InvalidClient("client_id in the body differs from the Basic credentials")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = await self._clients.get(client_id)
        if client.secret_hash is None:
            if client.token_endpoint_auth_method != "none":  # noqa: S105 — an auth method name
                raise InvalidClient(f"{client.token_endpoint_auth_method} is not supported for this client")
            if secret:
                raise InvalidClient("this is a public client: it has no client_secret")
            return client
        if not secret or not secrets.compare_digest(hash_token(secret), client.secret_hash):
            raise InvalidClient("client authentication failed")
        return client
