"""Redirect URIs: exact matching with RFC 8252 loopback port variance, and building responses."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "client_proven_by", "has_unsafe_characters", "has_userinfo", "is_loopback_redirect", "redirect_uri_matches",
    "with_params",
]  # fmt: skip

_LOOPBACK_HOSTS = {"127.0.0.1", "[::1]", "localhost"}


def is_loopback_redirect(uri: str) -> bool:
    """Plain http to a loopback host, with no userinfo (`http://trusted.example@127.0.0.1/` names
    loopback, but reads as another host on a consent page)."""
    parts = urlsplit(uri)
    if "@" in parts.netloc:
        return False
    host = (
        parts.netloc if parts.netloc.startswith("[") and parts.netloc.endswith("]") else parts.netloc.rsplit(":", 1)[0]
    )
    return parts.scheme == "http" and host.lower() in _LOOPBACK_HOSTS


def client_proven_by(uri: str) -> bool:
    """Whether only the client can receive what is sent to redirect URI `uri`: https to a host
    that is not this machine (TLS proves the host). Any local app can listen on a loopback port
    or claim a private-use scheme (RFC 8252 §8.6: "the identity of the client" is then not assured)."""
    parts = urlsplit(uri)
    return parts.scheme == "https" and not _this_machine(parts.hostname or "")


def _this_machine(host: str) -> bool:
    """`host` names this machine (or none): `localhost`, `x.localhost`, a loopback or unspecified
    address in any spelling a browser accepts (`127.1`, `[::ffff:127.0.0.1]`, `localhost.`)."""
    name = host.rstrip(".").lower()
    if not name or name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(name))  # 127.1, 0x7f.1: browsers read these too
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def has_unsafe_characters(uri: str) -> bool:
    """A backslash, a space or a control character: a browser reads `https://evil.example\\.app.com/`
    as host evil.example (the backslash is a slash to it) while a page would name another, and a
    space or a `;` in a host would end up in headers built from it (a CSP's form-action)."""
    return any(c == "\\" or c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in uri)


def has_userinfo(uri: str) -> bool:
    """`https://claude.ai@evil.example/cb` goes to evil.example but reads as claude.ai on a consent
    page: such a redirect URI is refused everywhere (RFC 3986 §3.2.1 userinfo; RFC 9700 §4.1.3)."""
    return "@" in urlsplit(uri).netloc


def _without_port(uri: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.hostname or ""))


def redirect_uri_matches(requested: str, registered: tuple[str, ...]) -> bool:
    """OAuth 2.1 §4.1.1: exact string match, except that a loopback redirect URI may use any port.

    RFC 8252 §7.3: native apps listen on an ephemeral loopback port, so the
    authorization server must allow any port for loopback IP redirect URIs;
    scheme, host, path and query must still match exactly.
    """
    if requested in registered:
        return True
    if not is_loopback_redirect(requested):
        return False
    bare = _without_port(requested)
    return any(is_loopback_redirect(uri) and _without_port(uri) == bare for uri in registered)


def with_params(uri: str, params: dict[str, str | None]) -> str:
    """`uri` with `params` added to its query (RFC 6749 §4.1.2: keep the existing query)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend((key, value) for key, value in params.items() if value is not None)
    return urlunsplit(parts._replace(query=urlencode(query)))
