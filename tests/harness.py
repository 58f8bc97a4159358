"""Real parts for tests: Bastion on a free loopback port, origins as real processes, SDK clients.

Bastion runs in-process (uvicorn in a thread with its own event loop) so tests
can reach its Services (to count SQL statements, for instance) while talking to
it over real HTTP like any client.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from bastion.app import create_app
from bastion.bootstrap import ensure_admin
from bastion.config import Settings
from bastion.http.server import CoalescingHttpToolsProtocol
from bastion.services import Services

ADMIN_PASSWORD = "correct-horse-battery-staple-42"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextmanager
def origin_process(module: str = "bastion.demo.inventory", *args: str) -> Iterator[str]:
    """Run a bundled origin over Streamable HTTP; yields its MCP URL."""
    port = free_port()
    http_flag = ["--http"] if module in ("bastion.demo.inventory", "tests.origins.probe") else []
    process = subprocess.Popen(
        [sys.executable, "-m", module, *http_flag, "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            # Test origins keep nothing to flush (their logs are appended per request), so a stream
            # still open to them (Bastion's, when it outlives the origin) is not waited out.
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:  # a handler still sleeping, or a stream, holds graceful shutdown
            process.kill()
            process.wait(timeout=5)


STDIO_INVENTORY = [sys.executable, "-m", "bastion.demo.inventory"]

# The stdio origins tests register: Bastion's allowlist names each one (exact argv prefixes).
STDIO_COMMANDS = [
    STDIO_INVENTORY,
    *([sys.executable, "-m", f"tests.origins.{name}"] for name in ("probe", "many_tools", "limited")),
]


async def eventually(check: Callable[[], Awaitable[bool]], *, deadline: float = 10.0) -> None:
    """Poll state owned by another thread or process until `check()` holds, failing after `deadline` s.

    Used only where no event can be awaited (the state lives in another process or thread).
    """
    with anyio.fail_after(deadline):
        while not await check():  # noqa: ASYNC110 — cross-process state has no event to await
            await anyio.sleep(0.02)


class Bastion:
    """A running Bastion and the helpers tests use to drive it."""

    def __init__(self, settings: Settings, services: Services, server: uvicorn.Server) -> None:
        self.settings = settings
        self.services = services
        self.server = server
        self.base_url = settings.base_url()
        # Tests' TLS uses a throwaway self-signed certificate: verification is off for it only.
        self.http = httpx.Client(base_url=self.base_url, timeout=30, verify=not settings.tls)
        self.admin_token = self.http.post(
            "/api/login", json={"username": settings.admin_user, "password": ADMIN_PASSWORD}
        ).json()["token"]

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.admin_token}", **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.api(method, path, **kwargs)
        assert response.status_code < 300, (response.status_code, response.text)
        return response.json() if response.content else None

    def add_origin(self, name: str, *, url: str | None = None, command: list[str] | None = None, **extra: Any) -> Any:
        """Register an origin and approve the connector request (the admin holds connectors:approve)."""
        body = {"name": name, "transport": "http" if url else "stdio", "url": url, "command": command, **extra}
        origin = self.ok("POST", "/api/origins", json=body)
        return self.ok("POST", f"/api/origins/{origin['id']}/review", json={"decision": "approve"})

    def publish_server(self, slug: str, *compositions: dict[str, Any]) -> Any:
        server = self.ok("POST", "/api/servers", json={"slug": slug, "title": slug})
        for composition in compositions:
            server = self.ok("POST", f"/api/servers/{server['id']}/compose", json=composition)
        return self.ok("POST", f"/api/servers/{server['id']}/publish")

    def token(self, *servers: str, name: str = "test", days: int = 1) -> str:
        body = {"name": name, "servers": list(servers), "expires_in_days": days}
        return str(self.ok("POST", "/api/tokens", json=body)["token"])

    def mcp_url(self, slug: str) -> str:
        return f"{self.base_url}/servers/{slug}/mcp"

    @asynccontextmanager
    async def client(self, slug: str, token: str, *, mode: str = "legacy", **options: Any) -> AsyncIterator[Client]:
        """The official SDK client, as a user would configure it (URL + Authorization header)."""
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with (
            http,
            Client(
                streamable_http_client(self.mcp_url(slug), http_client=http), mode=mode, cache=None, **options
            ) as client,
        ):
            yield client

    def close(self) -> None:
        self.http.close()


@contextmanager
def run_bastion(tmp_path: Path, **overrides: Any) -> Iterator[Bastion]:
    port = free_port()
    values: dict[str, Any] = {
        "port": port,
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/bastion.db",
        "admin_password": ADMIN_PASSWORD,
        "log_level": "warning",
        # Every test client comes from 127.0.0.1: per-address limits would count the whole suite
        # as one caller. Tests of the limits set their own.
        "rate_limit_sign_in": "10000/minute",
        "rate_limit_token": "10000/minute",
        "rate_limit_registration": "10000/minute",
        "rate_limit_authorize": "10000/minute",
        "rate_limit_mcp_sessions": "10000/minute",  # one admin opens the suite's sessions
        "rate_limit_mcp_refusals": "10000/minute",
        # Test origins listen on 127.0.0.1; the SSRF tests set their own egress allowlist.
        "egress_allow_cidrs": ["127.0.0.0/8"],
        "stdio_commands": STDIO_COMMANDS,
        # Tests that read the audit trail or the token use log from the store wait for its writers:
        # shorter rounds than the defaults (1 s, 2 s) keep those waits short.
        "audit_store_seconds": 0.25,
        "token_use_flush_seconds": 0.5,
        **overrides,
    }
    settings = Settings(**values)

    async def prepare() -> None:
        services = Services(settings)
        await services.db.migrate()
        await ensure_admin(services)
        await services.db.close()

    anyio.run(prepare)
    services = Services(settings)
    config = uvicorn.Config(
        create_app(settings, services),
        host="127.0.0.1",
        port=settings.port,  # a test may choose it (a peer configured before this Bastion starts)
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # as `bastion serve`: BASTION_TRUSTED_PROXIES alone decides
        lifespan="on",
        http=CoalescingHttpToolsProtocol,  # as `bastion serve`
        # A stream a test client left open would hold the stop for as long as the join below waits.
        timeout_graceful_shutdown=3,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="bastion", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("Bastion did not start")
        time.sleep(0.02)
    bastion = Bastion(settings, services, server)
    try:
        yield bastion
    finally:
        bastion.close()
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def inventory_gateway(tmp_path: Path, **overrides: Any) -> Iterator[Bastion]:
    """A running Bastion publishing the demo inventory origin (over HTTP) as virtual server `demo`."""
    with origin_process() as inventory, run_bastion(tmp_path, **overrides) as bastion:
        bastion.add_origin("inventory", url=inventory)
        bastion.publish_server("demo", {"origin": "inventory"})
        yield bastion


def postgres_url() -> str | None:
    """The PostgreSQL test database, or None (skip) when not reachable and not under CI."""
    url = os.environ.get("BASTION_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    host_port = url.split("@", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host, int(port or 5432)), timeout=1):
            return url
    except OSError:
        return None


def schema_head() -> str:
    """The newest Alembic revision shipped with the package (what `migrate` brings a store to)."""
    from alembic.script import ScriptDirectory

    import bastion.store

    head = ScriptDirectory(str(Path(bastion.store.__file__).parent / "migrations")).get_current_head()
    assert head is not None
    return head
