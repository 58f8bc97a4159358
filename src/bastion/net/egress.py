"""Outbound connections that cannot be steered at Bastion's own network (SSRF defence).

Every address a connection may use passes `EgressPolicy.check_address`. Host names
go through `EgressResolver`, which hands aiohttp only the addresses that passed, so
the check holds at connect time (a DNS answer that changes between check and
connect cannot slip through). aiohttp skips the resolver for IP-literal hosts, so
`egress_session` adds a middleware that checks those on every request, redirect
hops included. draft-ietf-oauth-client-id-metadata-document §8.6 requires this
for CIMD fetches: no fetch may reach a special-use address (RFC 6890).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import aiohttp
import anyio
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy
from yarl import URL

from bastion.errors import BadRequest, UpstreamProtocolError, UpstreamTimeout, UpstreamTooLarge, UpstreamUnavailable

__all__ = [
    "EgressPolicy",
    "EgressRefused",
    "EgressResolver",
    "FetchedDocument",
    "egress_session",
    "fetch_limited",
    "read_limited",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services hand out cloud credentials: named so the refusal says so.
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, ...
        "169.254.170.2",  # AWS ECS task credentials
        "169.254.170.23",  # AWS EKS Pod Identity agent
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::23",  # EKS Pod Identity over IPv6
        "fd20:ce::254",  # GCP over IPv6
    )
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: embeds an IPv4 address
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SCHEMES = frozenset({"http", "https"})
_MAX_REMEMBERED_HOSTS = 1024  # bounds check_url's memo: fetched URLs can name any host


class EgressRefused(BadRequest):
    """An outbound connection the egress policy does not allow.

    `reason` names the kind of destination ("loopback address") without the address
    itself, so callers can tell people who must not learn internal addresses why.
    """

    def __init__(self, message: str, *, reason: str = "destination not allowed") -> None:
        super().__init__(message)
        self.reason = reason


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # An IPv6 address that carries an IPv4 one reaches that IPv4 host on dual-stack,
    # 6to4 or NAT64 networks, so it is judged as that host.
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64 or (ip.packed[:12] == bytes(12) and int(ip) > 1):  # NAT64, or deprecated ::a.b.c.d
        return ipaddress.IPv4Address(ip.packed[12:])
    return None


def _refusal_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None when it is one."""
    if ip in _METADATA:
        return "cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(ip)) is not None:
        inner = _refusal_reason(embedded)
        return f"{inner} embedded in IPv6" if inner else None
    checks = (
        (ip.is_loopback, "loopback address"),
        (ip.is_link_local, "link-local address"),
        # Deprecated (RFC 3879) but still routed inside some sites; Python counts it as global.
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local address"),
        (ip.is_unspecified, "unspecified address"),
        (ip.is_multicast, "multicast address"),
        (ip in _SHARED, "carrier-grade NAT address"),
        (any(ip in net for net in _PRIVATE), "private address"),
        (ip.is_reserved, "reserved address"),
        (not ip.is_global, "special-use address"),  # the rest of RFC 6890: documentation, benchmarking...
    )
    return next((reason for hit, reason in checks if hit), None)


def _normalise_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class EgressPolicy:
    """Which special-use destinations are allowed anyway; public addresses always are.

    `allow_hosts` holds exact names ("api.example.com") or "*.suffix" patterns that
    match any name below the suffix (not the suffix itself); `allow_cidrs` holds networks.
    """

    allow_hosts: tuple[str, ...] = ()
    allow_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _ = self._networks  # a malformed CIDR fails when the policy is built, not on first use

    @cached_property
    def _networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in self.allow_cidrs)

    def host_allowed(self, host: str) -> bool:
        name = _normalise_host(host)
        for pattern in (_normalise_host(p) for p in self.allow_hosts):
            if pattern.startswith("*.") and name.endswith(pattern[1:]):  # ".suffix": the bare suffix is no match
                return True
            if name == pattern:
                return True
        return False

    def check_address(self, host: str, ip: str) -> None:
        """Raise EgressRefused unless connecting to `ip` on behalf of `host` is allowed."""
        address = ipaddress.ip_address(ip)
        reason = _refusal_reason(address)
        if reason is None:
            return
        # An allowed name vouches for the private network it lives on, never for a cloud metadata
        # service: a name under an allowed "*.corp.example" that resolves (or rebinds) there would
        # hand out the cloud's credentials. Only a range naming it (allow_cidrs) admits one.
        if self.host_allowed(host) and not reason.startswith("cloud metadata"):
            return
        if any(address.version == net.version and address in net for net in self._networks):
            return
        raise EgressRefused(
            f"refused to connect to {ip} ({reason}) for host {host}: add it to the egress allowlist if it is trusted",
            reason=reason,
        )

    def check_url(self, url: URL) -> None:
        """Check what aiohttp will not resolve: the scheme and IP-literal hosts."""
        if url.scheme not in _SCHEMES:
            raise EgressRefused(
                f"refused to fetch {url.scheme}: URLs: only http and https are allowed", reason="scheme not allowed"
            )
        host = url.raw_host
        if not host:
            raise EgressRefused(f"refused to fetch {url}: it has no host", reason="URL without a host")
        verdicts = self._host_verdicts
        if host not in verdicts:
            if len(verdicts) >= _MAX_REMEMBERED_HOSTS:
                verdicts.clear()
            verdicts[host] = self._literal_verdict(host)
        verdict = verdicts[host]
        if verdict is not None:
            raise EgressRefused(verdict[0], reason=verdict[1])

    @cached_property
    def _host_verdicts(self) -> dict[str, tuple[str, str] | None]:
        # check_url runs on every request to an origin: parsing and judging an IP literal
        # costs 10-35 µs, a lookup well under one. The verdict depends on the host alone.
        return {}

    def _literal_verdict(self, host: str) -> tuple[str, str] | None:
        """(message, reason) when `host` is a refused IP literal; None for allowed ones and names."""
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None  # a name: EgressResolver checks what it resolves to
        try:
            self.check_address(host, host.strip("[]"))
        except EgressRefused as refused:
            return refused.message, refused.reason
        return None


class EgressResolver(AbstractResolver):
    """Resolves with a threaded getaddrinfo, then keeps only the addresses the policy allows."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refusal: EgressRefused | None = None
        for result in results:
            try:
                self._policy.check_address(host, result["host"])
            except EgressRefused as exc:
                refusal = refusal or exc
            else:
                allowed.append(result)
        if not allowed and refusal is not None:
            raise refusal
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def egress_session(
    policy: EgressPolicy, *, timeout: aiohttp.ClientTimeout | None = None, keepalive_timeout: float = 15.0
) -> aiohttp.ClientSession:
    """A session whose every connection, redirect hops included, obeys `policy`.

    trust_env stays off: a proxy from the environment would connect on our behalf,
    past the resolver. `keepalive_timeout` (aiohttp's default: 15 s) is how long an
    idle pooled connection is kept; long-lived origin pools keep theirs longer. No
    cookie is kept: one session serves many people, and what a server set for one
    request must not go back with another's.
    """

    async def check_each_request(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        policy.check_url(request.url)
        return await handler(request)

    connector = aiohttp.TCPConnector(
        resolver=EgressResolver(policy), use_dns_cache=False, keepalive_timeout=keepalive_timeout
    )
    jar = aiohttp.DummyCookieJar()
    if timeout is None:  # aiohttp's own default (total 300 s), not an unbounded ClientTimeout()
        return aiohttp.ClientSession(connector=connector, cookie_jar=jar, middlewares=(check_each_request,))
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=jar, middlewares=(check_each_request,)
    )


@dataclass(frozen=True)
class FetchedDocument:
    url: URL  # where the body came from, after any redirects followed
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


async def read_limited(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    too_large = UpstreamTooLarge(f"{response.url} answered with more than {max_bytes} bytes; refused")
    if response.content_length is not None and response.content_length > max_bytes:
        raise too_large  # refused from the header, before reading any of it
    body = bytearray()
    while chunk := await response.content.read(max_bytes + 1 - len(body)):
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


def _follow(current: URL, location: str) -> URL:
    try:
        return current.join(URL(location))
    except ValueError as exc:
        raise UpstreamProtocolError(f"{current} redirected to a malformed location") from exc


async def fetch_limited(
    policy: EgressPolicy,
    url: str | URL,
    *,
    max_bytes: int,
    timeout_seconds: float,
    ssl: ssl.SSLContext | None = None,
    headers: Mapping[str, str] | None = None,
    max_redirects: int = 0,
) -> FetchedDocument:
    """GET `url` under `policy`, reading at most `max_bytes` of body within `timeout_seconds`.

    Redirects are followed by hand, at most `max_redirects` of them, each hop checked
    again; with `max_redirects=0` a redirect comes back as the document it is.
    A `str` url is normalised by yarl; pass `URL(..., encoded=True)` to send it verbatim.
    """
    target = url if isinstance(url, URL) else URL(url)
    request_headers = {"Accept-Encoding": "identity", **(headers or {})}
    per_request = aiohttp.ClientTimeout(total=timeout_seconds)
    try:  # one deadline for the whole fetch, redirect hops included
        with anyio.fail_after(timeout_seconds):
            async with egress_session(policy, timeout=per_request) as session:
                for _hop in range(max_redirects + 1):
                    policy.check_url(target)
                    async with session.get(
                        target, headers=request_headers, ssl=ssl if ssl is not None else True, allow_redirects=False
                    ) as response:
                        location = response.headers.get("Location")
                        if response.status not in _REDIRECTS or location is None or max_redirects == 0:
                            body = await read_limited(response, max_bytes)
                            return FetchedDocument(target, response.status, response.headers, body)
                    target = _follow(target, location)
    except TimeoutError as exc:
        raise UpstreamTimeout(f"{target} did not answer within {timeout_seconds:g} seconds") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(f"could not fetch {target}: {exc}") from exc
    raise UpstreamProtocolError(f"{url} redirected more than {max_redirects} times; refused")
