"""HTTP origins obey the egress policy (SSRF): loopback, private and metadata destinations are
refused at connect time, before any packet is sent, unless allowlisted; redirects are never followed.

The harness allows loopback so that ordinary tests can use origins on 127.0.0.1; these tests
set their own allowlist. A refused destination is a bare listening socket: a connection Bastion
made to it would wait in its accept queue, so "nothing connected" is observed, not assumed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError

from bastion.store.repos import origins
from bastion.store.tenancy import SYSTEM
from tests.harness import Bastion, origin_process, run_bastion
from tests.oauth.flows import bump_and_wait, own_database


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Bastion]:
    """Bastion with the product's default egress policy: nothing special-use is allowlisted."""
    with run_bastion(tmp_path, egress_allow_cidrs=[]) as bastion:
        yield bastion


@pytest.fixture
def by_host(tmp_path: Path) -> Iterator[Bastion]:
    """Bastion that may reach 127.0.0.1 by that exact host only: not localhost, not the rest of 127/8."""
    with run_bastion(tmp_path, egress_allow_cidrs=[], egress_allow_hosts=["127.0.0.1"]) as bastion:
        yield bastion


ALLOWLISTS = {
    "by-cidr": ("127.0.0.1", {"egress_allow_cidrs": ["127.0.0.1/32"]}),
    "by-host-name": ("localhost", {"egress_allow_cidrs": [], "egress_allow_hosts": ["localhost"]}),
}


@pytest.fixture(params=list(ALLOWLISTS))
def allowlisted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Bastion, str]]:
    """Bastion with loopback allowlisted one way or another, and the host name to reach it by."""
    host, settings = ALLOWLISTS[request.param]
    with run_bastion(tmp_path, **settings) as bastion:
        yield bastion, host


@contextmanager
def trap() -> Iterator[socket.socket]:
    """A loopback port that accepts nothing: connections made to it wait in its backlog."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def was_connected(sock: socket.socket) -> bool:
    try:
        connection, _ = sock.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


def register(bastion: Bastion, name: str, url: str) -> dict[str, Any]:
    response = bastion.api("POST", "/api/origins", json={"name": name, "transport": "http", "url": url})
    assert response.status_code == 201, response.text
    # Approved at once: the connector review is not what these tests are about.
    origin: dict[str, Any] = bastion.ok(
        "POST", f"/api/origins/{response.json()['id']}/review", json={"decision": "approve"}
    )
    return origin


def test_an_origin_on_127_0_0_1_is_refused_when_loopback_is_not_allowlisted(strict: Bastion) -> None:
    with trap() as sock:
        origin = register(strict, "loopback", f"http://127.0.0.1:{port_of(sock)}/mcp")

        assert origin["items"] == []
        assert "refused to connect to 127.0.0.1 (loopback address)" in origin["last_error"]
        assert not was_connected(sock)


def test_the_metadata_address_is_refused_at_once_without_waiting_on_a_timeout(strict: Bastion) -> None:
    started = time.monotonic()
    origin = register(strict, "metadata", "http://169.254.169.254/mcp")
    elapsed = time.monotonic() - started

    assert "refused to connect to 169.254.169.254 (cloud metadata address)" in origin["last_error"]
    # The connect timeout is 10 s: a refusal that waited on the network would take that long.
    assert elapsed < 5, elapsed


def test_a_host_name_that_resolves_to_loopback_is_refused(strict: Bastion) -> None:
    with trap() as sock:
        origin = register(strict, "named", f"http://localhost:{port_of(sock)}/mcp")

        assert "(loopback address) for host localhost" in origin["last_error"]
        assert not was_connected(sock)


def test_refreshing_a_refused_origin_records_the_refusal_again(strict: Bastion) -> None:
    origin = register(strict, "again", "http://10.0.0.1/mcp")

    refreshed = strict.ok("POST", f"/api/origins/{origin['id']}/refresh")

    assert "refused to connect to 10.0.0.1 (private address)" in refreshed["last_error"]
    assert strict.ok("GET", f"/api/origins/{origin['id']}")["last_error"] == refreshed["last_error"]


def test_a_redirect_to_a_refused_address_is_not_followed(by_host: Bastion) -> None:
    # The redirecting origin itself is allowlisted; where it points is not.
    with trap() as sock:
        target = f"http://localhost:{port_of(sock)}/mcp"
        with origin_process("tests.origins.redirect", "--to", target) as url:
            origin = register(by_host, "redirecting", url)

        assert origin["items"] == []
        assert f"redirected to {target!r}, which Bastion does not follow" in origin["last_error"]
        assert not was_connected(sock)


@pytest.mark.anyio
async def test_an_allowlisted_private_origin_is_reached_and_serves_calls(allowlisted: tuple[Bastion, str]) -> None:
    bastion, host = allowlisted
    with origin_process() as url:
        origin = register(bastion, "inventory", url.replace("127.0.0.1", host))
        assert origin["last_error"] is None and origin["items"]
        bastion.publish_server("inv", {"origin": "inventory", "items": ["list_stock"]})
        async with bastion.client("inv", bastion.token("inv")) as client:
            result = await client.call_tool("list_stock", {})
        # Closes Bastion's connection (and its open stream) first, so the origin stops at once.
        bastion.ok("DELETE", f"/api/origins/{origin['id']}")
    assert not result.is_error


@pytest.mark.anyio
async def test_an_mcp_client_learns_the_origin_is_refused_but_not_its_address(by_host: Bastion) -> None:
    with origin_process() as url:
        register(by_host, "inventory", url)
        by_host.publish_server("inv", {"origin": "inventory", "items": ["list_stock"]})
        # The origin's address changes to one the policy refuses (as a rebinding DNS name would).
        async with own_database(by_host) as db:
            async with db.session(SYSTEM) as session:
                (await origins.get(session, "inventory")).url = url.replace("127.0.0.1", "localhost")
            await bump_and_wait(by_host, db)
        async with by_host.client("inv", by_host.token("inv")) as client:
            with pytest.raises(MCPError) as refused:
                await client.call_tool("list_stock", {})
    message = refused.value.error.message
    assert "origin 'inventory' is not reachable under Bastion's egress policy (loopback address)" in message
    assert "127.0.0.1" not in message and "localhost" not in message
