"""The client's address, behind trusted reverse proxies (`BASTION_TRUSTED_PROXIES`).

The address is the socket peer, unless the peer is inside a trusted proxy network. Then
`X-Forwarded-For` is read from the right (each proxy appends the address it received the
connection from), trusted proxies are skipped, and the first untrusted address is the client.
Everything to its left was written by the client itself or by proxies nobody vouches for, so
it is never read: a forged `X-Forwarded-For` decides nothing unless a trusted proxy passed it on,
and then only its rightmost untrusted entry counts.

Malformed entries (not an IP address, optionally with a port), and chains longer than
`_MAX_HOPS`, stop the walk: the answer is then the last trusted hop that was reached. That
is the safe choice: the request is attributed to a proxy (which no token's source networks
should list, and whose rate limit is shared) instead of to an address nobody vouched for.
When every entry is a trusted proxy, the leftmost is the client (a proxy's own request).

Only `X-Forwarded-For` is read; the RFC 7239 `Forwarded` header is not. Run uvicorn without
its own proxy-header handling (`proxy_headers=False`), or it rewrites the peer before Bastion
sees it.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

__all__ = ["ClientIp", "address_group", "client_address", "parse_hop"]

_MAX_HOPS = 32  # more proxies than this in one chain: stop reading (bounded work per request)

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


_NAT64 = IPv6Network("64:ff9b::/96")  # RFC 6052: a translator's IPv4 client, in the last 32 bits


def address_group(client: str) -> str:
    """What a per-address budget counts: an IPv4 address itself, an IPv6 address's /64 (one
    client network is handed a /64 and may send from any of its 2^64 addresses, each a fresh
    budget otherwise), and an IPv6 address that carries an IPv4 one (NAT64, 6to4, Teredo) that
    IPv4 address: behind a translator, each IPv4 client its own. Anything else as it is."""
    try:
        address = ip_address(client)
    except ValueError:
        return client
    if not isinstance(address, IPv6Address):
        return client
    if address in _NAT64:
        return str(IPv4Address(int(address) & 0xFFFFFFFF))
    carried = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
    if carried is not None:
        return str(carried)
    return str(IPv6Network((int(address) >> 64 << 64, 64)))


def _canonical(address: Address) -> Address:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return address


def parse_hop(text: str) -> Address | None:
    """One `X-Forwarded-For` entry: `a.b.c.d`, `a.b.c.d:port`, an IPv6 address, `[v6]` or `[v6]:port`."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else "x"
        if end <= 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port (a bare IPv6 address has several colons)
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        return _canonical(ip_address(text))
    except ValueError:
        return None


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client address from the socket `peer`, the `X-Forwarded-For` header values (in the
    order received) and the trusted proxy networks. See the module docstring for the rules."""
    if not trusted:
        return peer
    try:
        current = _canonical(ip_address(peer))
    except ValueError:
        return peer  # not an IP peer (a Unix socket, a test transport): nothing to trust
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for count, text in enumerate(reversed(hops)):
        if not any(current in network for network in trusted):
            return str(current)  # the nearest address no trusted proxy stands for
        hop = parse_hop(text)
        if hop is None or count >= _MAX_HOPS:
            return str(current)  # malformed or too long: stop at the last trusted hop
        current = hop
    return str(current)


class ClientIp:
    """Resolves an ASGI scope's client address; built once from `BASTION_TRUSTED_PROXIES`."""

    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.trusted: tuple[Network, ...] = tuple(ip_network(cidr, strict=False) for cidr in trusted_proxies)

    def __call__(self, scope: MutableMapping[str, Any]) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        if not self.trusted:
            return peer  # the common case: no proxy is trusted, the header is never read
        forwarded = [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == b"x-forwarded-for"]
        return client_address(peer, forwarded, self.trusted)
