"""OAuth Client ID Metadata Documents: an https client_id naming the client's own metadata document.

Follows draft-ietf-oauth-client-id-metadata-document-02 ("CIMD §n"), as the MCP authorization spec
(2025-11-25 on, "Client ID Metadata Documents") requires. Fetches go through `bastion.net.egress`,
so a client_id can never point Bastion at its own network (CIMD §8.6)."""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from ssl import SSLContext
from typing import Any
from urllib.parse import unquote

import anyio
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from bastion.errors import InvalidClient, InvalidClientMetadata, UpstreamError, UpstreamTimeout, UpstreamTooLarge
from bastion.net import EgressPolicy, EgressRefused, FetchedDocument, fetch_limited
from bastion.oauth.redirects import has_unsafe_characters, has_userinfo, is_loopback_redirect

__all__ = [
    "ClientMetadataDocument",
    "ClientMetadataResolver",
    "is_client_id_url",
    "parse_client_metadata",
    "redirect_uri_allowed",
]

# RFC 3986 §2: anything else would be re-encoded on the wire, so the URL fetched would
# differ from the client_id compared (CIMD §3: simple string comparison).
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]{1,2048}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_UNSAFE_SCHEMES = frozenset({"javascript", "data", "vbscript", "file"})  # CIMD §8.6
_PUBLIC_KEY_METHODS = frozenset({"none", "private_key_jwt"})  # CIMD §4.1: no shared secrets
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})  # RFC 7518 §6.2.2, §6.3.2, §6.4


def is_client_id_url(client_id: str) -> bool:
    """CIMD §3: https, a path other than "/", no userinfo, fragment or dot segments; port and query allowed."""
    if not client_id.startswith("https://") or not _URL_CHARS.fullmatch(client_id) or "#" in client_id:
        return False
    authority, _, path = client_id.removeprefix("https://").partition("/")
    if "@" in authority or not path or path.startswith("?"):  # no userinfo; a path beyond "/"
        return False
    try:  # yarl parses lazily: a bad port or bracket fails on first access
        url = URL(client_id, encoded=True)
        host, segments = url.raw_host, url.raw_path.split("/")
    except ValueError:
        return False
    # %2e is "." to a server that decodes before resolving, so it counts as a dot segment too.
    return bool(host) and not any(unquote(s) in (".", "..") for s in segments)


@dataclass(frozen=True)
class ClientMetadataDocument:
    """The RFC 7591 §2 metadata a client publishes at its client_id URL, validated."""

    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    client_uri: str | None = None
    logo_uri: str | None = None
    grant_types: tuple[str, ...] = ("authorization_code",)  # RFC 7591 §2 defaults
    response_types: tuple[str, ...] = ("code",)
    # RFC 7591 §2's default, client_secret_basic, cannot apply: a public document holds no secret.
    token_endpoint_auth_method: str = "none"  # noqa: S105 - an auth method's name, not a password
    scope: str | None = None
    jwks_uri: str | None = None
    jwks: Mapping[str, Any] | None = field(default=None, hash=False)


def redirect_uri_allowed(document: ClientMetadataDocument, redirect_uri: str) -> bool:
    """CIMD §4.2 (after RFC 9700): a redirect URI must equal a registered one, by simple string comparison."""
    return redirect_uri in document.redirect_uris


class _Fields:  # typed reads from the decoded JSON object, each refusal saying what to fix
    def __init__(self, client_id: str, data: dict[str, Any]) -> None:
        self.where = f"client metadata document at {client_id}"
        self.data = data

    def refuse(self, problem: str) -> InvalidClientMetadata:
        return InvalidClientMetadata(f"{self.where}: {problem}")

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise self.refuse(f"{key} must be a non-empty string")
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise self.refuse(f"{key} must be a non-empty list of strings")
        return tuple(value)

    def url(self, key: str, schemes: frozenset[str]) -> str | None:
        value = self.string(key)
        scheme = _SCHEME.match(value or "")
        if value is not None and (scheme is None or scheme.group()[:-1].lower() not in schemes):
            raise self.refuse(f"{key} must be an absolute {' or '.join(sorted(schemes))} URL")
        return value


def _redirect_uris(fields: _Fields) -> tuple[str, ...]:
    uris = fields.strings("redirect_uris", ())
    if not uris:
        raise fields.refuse("redirect_uris is required and must list at least one URI")
    for uri in uris:
        if has_unsafe_characters(uri):
            # As dynamic registration refuses them: shown on the consent page, put in its CSP.
            raise fields.refuse(f"redirect URI {uri[:200]!r} holds a backslash, a space or a control character")
        scheme = _SCHEME.match(uri)
        if scheme is None or "#" in uri or scheme.group()[:-1].lower() in _UNSAFE_SCHEMES:
            # RFC 6749 §3.1.2: absolute, no fragment; CIMD §8.6: no script or data schemes.
            raise fields.refuse(f"redirect URI {uri!r} must be absolute, without a fragment or script scheme")
        name = scheme.group()[:-1].lower()
        if has_userinfo(uri):
            raise fields.refuse(f"redirect URI {uri!r} has a user name before its host: give the host alone")
        if (name == "http" and not is_loopback_redirect(uri)) or (name not in ("http", "https") and "." not in name):
            # What dynamic registration accepts too (RFC 8252 §7): https, plain http on loopback
            # only, or a native app's private-use scheme, which is a reverse domain name.
            raise fields.refuse(
                f"redirect URI {uri!r}: use https, http on loopback, or a reverse-DNS private-use scheme"
            )
    return uris


def _jwks(fields: _Fields, method: str, jwks_uri: str | None) -> Mapping[str, Any] | None:
    jwks = fields.data.get("jwks")
    if jwks is not None:
        keys = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
            raise fields.refuse("jwks must be a JWK Set: an object with a keys list")
        if any(_PRIVATE_JWK_MEMBERS & key.keys() for key in keys):
            raise fields.refuse("jwks holds private or symmetric key material; publish public keys only (CIMD §4.1)")
    if method == "private_key_jwt" and jwks is None and jwks_uri is None:
        raise fields.refuse("private_key_jwt needs the client's public keys in jwks or jwks_uri (CIMD §8.2)")
    return jwks


def parse_client_metadata(client_id: str, data: dict[str, Any]) -> ClientMetadataDocument:
    """Validate a decoded document fetched from `client_id` (CIMD §4, §4.1; MCP's required fields)."""
    fields = _Fields(client_id, data)
    if data.get("client_id") != client_id:
        raise fields.refuse(f"its client_id {data.get('client_id')!r} differs from the URL it was fetched from")
    if "client_secret" in data or "client_secret_expires_at" in data:
        raise fields.refuse("it must not carry a client_secret: the document is public (CIMD §4.1)")
    method = fields.string("token_endpoint_auth_method") or "none"
    if method not in _PUBLIC_KEY_METHODS:
        raise fields.refuse(f"token_endpoint_auth_method {method!r} is not allowed; use none or private_key_jwt")
    https = frozenset({"https"})
    jwks_uri = fields.url("jwks_uri", https)
    return ClientMetadataDocument(
        client_id=client_id,
        client_name=str(fields.string("client_name", required=True)),
        redirect_uris=_redirect_uris(fields),
        client_uri=fields.url("client_uri", frozenset({"http", "https"})),
        logo_uri=fields.url("logo_uri", https),
        grant_types=fields.strings("grant_types", ClientMetadataDocument.grant_types),
        response_types=fields.strings("response_types", ClientMetadataDocument.response_types),
        token_endpoint_auth_method=method,
        scope=fields.string("scope"),
        jwks_uri=jwks_uri,
        jwks=_jwks(fields, method, jwks_uri),
    )


def _lifetime(headers: CIMultiDictProxy[str], default: float) -> float:
    """Seconds the response stays fresh, from its RFC 9111 §4.2.1 headers; `default` without any."""
    cache_control = ",".join(headers.getall("Cache-Control", [])).split(",")
    directives = {n.strip().lower(): v.strip().strip('"') for n, _, v in (d.partition("=") for d in cache_control)}
    try:
        if "no-store" in directives or "no-cache" in directives:
            return 0.0  # we never revalidate, so no-cache means "do not reuse" here
        if "max-age" in directives:  # RFC 9111 §4.2.3: less the age it already has
            return float(int(directives["max-age"]) - int(headers.get("Age", "0")))
        if "Expires" in headers:
            expires = parsedate_to_datetime(headers["Expires"])
            date = parsedate_to_datetime(headers["Date"]).timestamp() if "Date" in headers else time.time()
            return (expires if expires.tzinfo else expires.replace(tzinfo=UTC)).timestamp() - date
    except (ValueError, TypeError):
        return 0.0  # RFC 9111 §5.3: an invalid value means already stale
    return default


def _decode(where: str, fetched: FetchedDocument) -> dict[str, Any]:
    """The JSON object in a fetched document, or the reason it is not one (CIMD §4, §5)."""
    if 300 <= fetched.status < 400:  # CIMD §5: redirects are not followed
        raise InvalidClient(f"{where} answered with a redirect; the document must be served at its own URL")
    if fetched.status != 200:
        raise InvalidClient(f"{where} answered HTTP {fetched.status}, not 200")
    media = fetched.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise InvalidClientMetadata(f"{where} is not served as application/json")
    try:
        data = orjson.loads(fetched.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidClientMetadata(f"{where} is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidClientMetadata(f"{where} is not a JSON object")
    return data


@dataclass
class _Flight:  # a fetch in progress: concurrent resolves of one client_id share it, not fetch again
    done: anyio.Event = field(default_factory=anyio.Event)
    document: ClientMetadataDocument | None = None
    error: InvalidClient | InvalidClientMetadata | None = None


class ClientMetadataResolver:
    """Fetches, validates and caches client metadata documents (CIMD §5, §5.2)."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        max_bytes: int = 5 * 1024,  # CIMD §8.7 recommends reading at most 5 kilobytes
        timeout_seconds: float = 5.0,
        ssl_context: SSLContext | None = None,
        min_ttl: float = 60.0,
        max_ttl: float = 24 * 3600.0,
        default_ttl: float = 300.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy, self._ssl = policy, ssl_context
        self._max_bytes, self._timeout = max_bytes, timeout_seconds
        self._min_ttl, self._max_ttl, self._default_ttl = min_ttl, max_ttl, default_ttl
        self._max_entries, self._clock = max_entries, clock
        self._cache: OrderedDict[str, tuple[ClientMetadataDocument, float]] = OrderedDict()  # LRU, with expiry
        self._flights: dict[str, _Flight] = {}

    async def resolve(self, client_id: str) -> ClientMetadataDocument:
        if not is_client_id_url(client_id):
            reason = "it must be an https URL with a path, and no fragment, userinfo or dot segments"
            raise InvalidClient(f"client_id {client_id!r} is not a client metadata document URL: {reason}")
        while (cached := self._cached(client_id)) is None:
            flight = self._flights.get(client_id)
            if flight is None:
                return await self._fetch_and_cache(client_id)
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if flight.document is not None:
                return flight.document
            # the task fetching it was cancelled: look again, and fetch ourselves if need be
        return cached

    def forget(self, client_id: str) -> None:
        self._cache.pop(client_id, None)  # the next resolve fetches it afresh

    def _cached(self, client_id: str) -> ClientMetadataDocument | None:
        entry = self._cache.get(client_id)
        if entry is None or entry[1] <= self._clock():
            return None
        self._cache.move_to_end(client_id)
        return entry[0]

    async def _fetch_and_cache(self, client_id: str) -> ClientMetadataDocument:
        flight = self._flights[client_id] = _Flight()
        try:
            fetched = await self._download(client_id)
            document = parse_client_metadata(client_id, _decode(f"client metadata document at {client_id}", fetched))
            flight.document = document
        except (InvalidClient, InvalidClientMetadata) as exc:
            flight.error = exc  # CIMD §5.2: errors and invalid documents are never cached
            raise
        finally:
            del self._flights[client_id]
            flight.done.set()
        lifetime = min(max(_lifetime(fetched.headers, self._default_ttl), self._min_ttl), self._max_ttl)
        if lifetime > 0:
            self._cache[client_id] = (document, self._clock() + lifetime)
            self._cache.move_to_end(client_id)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return document

    async def _download(self, client_id: str) -> FetchedDocument:
        where = f"client metadata document at {client_id}"
        try:
            return await fetch_limited(
                self._policy,
                URL(client_id, encoded=True),  # verbatim: the URL fetched is the client_id compared
                max_bytes=self._max_bytes,
                timeout_seconds=self._timeout,
                ssl=self._ssl,
                headers={"Accept": "application/json"},
                max_redirects=0,  # CIMD §5: MUST NOT follow redirects
            )
        except EgressRefused as exc:  # the address it resolved to stays in the log (the cause), not the reply
            raise InvalidClient(f"{where} was not fetched: its host is not a public address") from exc
        except UpstreamTooLarge as exc:
            raise InvalidClientMetadata(f"{where} is larger than {self._max_bytes} bytes") from exc
        except UpstreamTimeout as exc:
            raise InvalidClient(f"{where} did not answer within {self._timeout:g} seconds") from exc
        except UpstreamError as exc:
            raise InvalidClient(f"{where} could not be fetched: connection or TLS failure") from exc
