"""The egress policy against real servers on loopback, which it must refuse unless told otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from aiohttp import web
from yarl import URL

from bastion.errors import UpstreamProtocolError, UpstreamTimeout, UpstreamTooLarge
from bastion.net import EgressPolicy, EgressRefused, fetch_limited
from bastion.net.egress import egress_session
from tests.tls import serve

LOOPBACK = EgressPolicy(allow_cidrs=("127.0.0.0/8",))
SEEN = web.AppKey("seen", list[str])


def recording_app(body: bytes = b"hello", status: int = 200, headers: dict[str, str] | None = None) -> web.Application:
    """An app answering every path with `body`, recording the paths it was asked for in app[SEEN]."""
    app = web.Application()
    app[SEEN] = []

    async def handle(request: web.Request) -> web.Response:
        request.app[SEEN].append(request.path)
        return web.Response(body=body, status=status, headers=headers)

    app.router.add_get("/{tail:.*}", handle)
    return app


def redirecting_app(location: str) -> web.Application:
    return recording_app(b"", status=302, headers={"Location": location})


async def fetch(policy: EgressPolicy, url: str, *, max_bytes: int = 1024, max_redirects: int = 0) -> bytes:
    document = await fetch_limited(policy, url, max_bytes=max_bytes, timeout_seconds=5, max_redirects=max_redirects)
    assert document.status == 200
    return document.body


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "special-use"),
        ("2001:db8::1", "special-use"),
        ("::ffff:127.0.0.1", "loopback address embedded in IPv6"),
        ("::ffff:169.254.169.254", "cloud metadata address embedded in IPv6"),
        ("2002:a00:1::", "private address embedded in IPv6"),
        ("64:ff9b::7f00:1", "loopback address embedded in IPv6"),
    ],
)
def test_special_use_addresses_are_refused_with_the_reason(ip: str, reason: str) -> None:
    with pytest.raises(EgressRefused, match=reason) as refused:
        EgressPolicy().check_address("victim.example", ip)
    assert ip in refused.value.message
    assert "victim.example" in refused.value.message
    assert "allowlist" in refused.value.message


@pytest.mark.parametrize("ip", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34"])
def test_public_addresses_are_allowed(ip: str) -> None:
    EgressPolicy().check_address("public.example", ip)


def test_an_allowed_network_admits_its_addresses_and_no_others() -> None:
    policy = EgressPolicy(allow_cidrs=("10.1.0.0/16", "fd00:1::/32"))
    policy.check_address("db.internal", "10.1.2.3")
    policy.check_address("db.internal", "fd00:1::5")
    with pytest.raises(EgressRefused, match="private"):
        policy.check_address("db.internal", "10.2.0.1")


def test_host_patterns_match_exact_names_and_subdomains_but_not_the_bare_suffix() -> None:
    policy = EgressPolicy(allow_hosts=("api.example.com", "*.corp.example"))
    for host in ("api.example.com", "API.Example.com.", "a.corp.example", "a.b.corp.example"):
        policy.check_address(host, "10.0.0.1")
    for host in ("corp.example", "evilcorp.example", "x.api.example.com"):
        with pytest.raises(EgressRefused):
            policy.check_address(host, "10.0.0.1")


def test_an_allowed_name_never_admits_a_cloud_metadata_address_a_range_naming_it_does() -> None:
    """A name under an allowed pattern that resolves (or rebinds) to the metadata service would hand
    out the cloud's credentials: the name vouches for private networks only."""
    policy = EgressPolicy(allow_hosts=("*.corp.example",))
    policy.check_address("db.corp.example", "10.0.0.1")
    for ip in ("169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254", "169.254.170.23", "fd20:ce::254"):
        with pytest.raises(EgressRefused, match="cloud metadata"):
            policy.check_address("rebound.corp.example", ip)
    EgressPolicy(allow_cidrs=("169.254.169.254/32",)).check_address("metadata", "169.254.169.254")


def test_a_malformed_network_fails_when_the_policy_is_built() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        EgressPolicy(allow_cidrs=("10.0.0.0/33",))


def test_only_http_and_https_urls_are_fetched() -> None:
    with pytest.raises(EgressRefused, match="only http and https"):
        EgressPolicy().check_url(URL("file:///etc/passwd"))


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_loopback_server_is_refused_by_default(host: str) -> None:
    app = recording_app()
    async with serve(app) as port:
        with pytest.raises(EgressRefused, match="loopback"):
            await fetch(EgressPolicy(), f"http://{host}:{port}/doc")
    assert app[SEEN] == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("policy", "host"),
    [(LOOPBACK, "127.0.0.1"), (LOOPBACK, "localhost"), (EgressPolicy(allow_hosts=("localhost",)), "localhost")],
)
async def test_a_loopback_server_is_reachable_once_allowlisted(policy: EgressPolicy, host: str) -> None:
    async with serve(recording_app(b"the document")) as port:
        assert await fetch(policy, f"http://{host}:{port}/doc") == b"the document"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("allowed_host", "redirect_host"),
    [("localhost", "127.0.0.1"), ("127.0.0.1", "localhost")],  # an IP literal, then a name the resolver checks
)
async def test_a_redirect_from_an_allowed_server_to_a_refused_address_is_refused(
    allowed_host: str, redirect_host: str
) -> None:
    target = recording_app()
    async with serve(target) as target_port:
        async with serve(redirecting_app(f"http://{redirect_host}:{target_port}/internal")) as port:
            policy = EgressPolicy(allow_hosts=(allowed_host,))
            with pytest.raises(EgressRefused, match="loopback"):
                await fetch(policy, f"http://{allowed_host}:{port}/start", max_redirects=3)
    assert target[SEEN] == []


@pytest.mark.anyio
async def test_redirects_are_followed_only_when_asked_and_only_so_far() -> None:
    async with serve(recording_app(b"the end")) as end_port:
        async with serve(redirecting_app(f"http://127.0.0.1:{end_port}/end")) as port:
            url = f"http://127.0.0.1:{port}/start"
            unfollowed = await fetch_limited(LOOPBACK, url, max_bytes=100, timeout_seconds=5)
            assert unfollowed.status == 302
            assert await fetch(LOOPBACK, url, max_redirects=1) == b"the end"
    async with serve(redirecting_app("/again")) as loop_port:
        with pytest.raises(UpstreamProtocolError, match="redirected more than 3 times"):
            await fetch(LOOPBACK, f"http://127.0.0.1:{loop_port}/again", max_redirects=3)


@pytest.mark.anyio
async def test_a_body_announced_larger_than_the_limit_is_refused() -> None:
    async with serve(recording_app(b"x" * 2048)) as port:
        with pytest.raises(UpstreamTooLarge, match="more than 1024 bytes"):
            await fetch(LOOPBACK, f"http://127.0.0.1:{port}/big")
        assert await fetch(LOOPBACK, f"http://127.0.0.1:{port}/big", max_bytes=2048) == b"x" * 2048


@pytest.mark.anyio
async def test_a_streamed_body_is_cut_off_at_the_limit() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # no Content-Length: chunked, so only reading reveals the size
        await response.prepare(request)
        for _ in range(1024):
            await response.write(b"y" * 1024)
        return response

    app = web.Application()
    app.router.add_get("/stream", endless)
    async with serve(app) as port:
        with pytest.raises(UpstreamTooLarge, match="more than 4096 bytes"):
            await fetch(LOOPBACK, f"http://127.0.0.1:{port}/stream", max_bytes=4096)


@asynccontextmanager
async def silent_server(connected: anyio.Event) -> AsyncIterator[int]:
    """A server that accepts connections and never answers."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # returns once the client gives up and closes
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.anyio
async def test_a_server_that_never_answers_times_out() -> None:
    connected = anyio.Event()
    async with silent_server(connected) as port:
        with anyio.fail_after(5), pytest.raises(UpstreamTimeout, match=r"did not answer within 0\.2 seconds"):
            await fetch_limited(LOOPBACK, f"http://127.0.0.1:{port}/", max_bytes=100, timeout_seconds=0.2)
    assert connected.is_set()


@pytest.mark.anyio
async def test_a_cookie_a_server_sets_is_not_sent_back_on_the_next_request() -> None:
    """One egress session serves many people: what a server set for one request stays out of the next."""
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("cookie"))
        response = web.Response(text="ok")
        response.set_cookie("session", "for-whoever-asked-first")
        return response

    app = web.Application()
    app.router.add_get("/doc", handler)
    async with serve(app) as port, egress_session(LOOPBACK) as session:
        for _ in range(2):
            async with session.get(f"http://localhost:{port}/doc") as response:  # a name: IPs keep no cookie
                assert response.status == 200
    assert seen == [None, None]
