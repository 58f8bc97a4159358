"""Two Bastion replicas as real processes sharing one fresh PostgreSQL database and one Redis.

Each replica is `python -m bastion serve` on its own loopback port, as an operator runs it. The
store's epoch poll is set to an hour, so a change can only reach the other replica through
Redis: a broken Redis path fails the tests instead of being papered over by the poll.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
from anyio.abc import Process

from tests.harness import ADMIN_PASSWORD, free_port, origin_process
from tests.pg import scratch_database

__all__ = [
    "TOOL",
    "Cluster",
    "Replica",
    "fresh_database",
    "mcp_call",
    "replica_environment",
    "running_cluster",
    "start_replica",
]

_START_SECONDS = 30.0
TOOL = "get_order"
_META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2026-07-28",
    "mcp-method": "tools/call",
    "mcp-name": TOOL,
}


def fresh_database(base_url: str) -> AbstractAsyncContextManager[str]:
    """A migrated PostgreSQL database of the test's own, dropped afterwards."""
    return scratch_database(base_url, migrated=True, prefix="bastion_replicas")


@dataclass
class Replica:
    name: str
    process: Process
    base_url: str
    log_path: Path
    http: httpx.AsyncClient = field(init=False)
    admin_token: str = ""

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=30, trust_env=False)

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"authorization": f"Bearer {self.admin_token}"}
        response = await self.http.request(method, path, headers=headers, **kwargs)
        assert response.status_code < 300, (self.name, response.status_code, response.text)
        return response.json() if response.content else None

    def mcp_url(self, slug: str) -> str:
        return f"{self.base_url}/servers/{slug}/mcp"

    async def stop(self) -> None:
        await self.http.aclose()
        self.process.terminate()
        try:
            with anyio.fail_after(15):
                await self.process.wait()
        except TimeoutError:  # a stuck shutdown must not hang the suite
            self.process.kill()
            await self.process.wait()


@dataclass(frozen=True)
class Cluster:
    a: Replica
    b: Replica
    database_url: str
    redis_url: str
    namespace: str

    async def publish(self, slug: str) -> str:
        """Through A: the inventory origin composed into a published server; returns its id."""
        server = await self.a.ok("POST", "/api/servers", json={"slug": slug, "title": slug})
        await self.a.ok("POST", f"/api/servers/{server['id']}/compose", json={"origin": "inventory"})
        await self.a.ok("POST", f"/api/servers/{server['id']}/publish")
        return str(server["id"])

    async def token(self, slug: str, *, user: str | None = None) -> tuple[str, str]:
        """Through A: an MCP token for `slug` (the admin's, or `user`'s); returns (id, secret)."""
        body = {"name": "replicas", "servers": [slug], "expires_in_days": 1, "user": user}
        created = await self.a.ok("POST", "/api/tokens", json=body)
        return str(created["id"]), str(created["token"])


def _body(request_id: int) -> bytes:
    params = {"name": TOOL, "arguments": {"order_id": "ORD-1001"}, "_meta": _META}
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})


async def mcp_call(
    http: httpx.AsyncClient, url: str, token: str, request_id: int, *, extra: dict[str, str] | None = None
) -> httpx.Response:
    """One stateless 2026-07-28 `tools/call`: no session, so any replica can answer it."""
    headers = {**_HEADERS, "authorization": f"Bearer {token}", **(extra or {})}
    return await http.post(url, content=_body(request_id), headers=headers)


def replica_environment(database_url: str, redis_url: str | None = None, namespace: str = "") -> dict[str, str]:
    """A `bastion serve` process's environment (no Redis: a single process with the in-process bus)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    shared = {"BASTION_REDIS_URL": redis_url, "BASTION_REDIS_NAMESPACE": namespace} if redis_url else {}
    return (
        inherited
        | shared
        | {
            "BASTION_DATABASE_URL": database_url,
            "BASTION_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "BASTION_LOG_LEVEL": "warning",
            "BASTION_EPOCH_POLL_SECONDS": "3600",
            "BASTION_EGRESS_ALLOW_CIDRS": '["127.0.0.0/8"]',  # the test origin listens on loopback
            "BASTION_RATE_LIMIT_SIGN_IN": "10000/minute",
        }
    )


async def start_replica(name: str, env: dict[str, str], log_dir: Path) -> Replica:
    port = free_port()
    log_path = log_dir / f"replica-{name}.log"
    with log_path.open("wb") as log:
        process = await anyio.open_process(
            [sys.executable, "-m", "bastion", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    replica = Replica(name, process, f"http://127.0.0.1:{port}", log_path)
    try:
        with anyio.fail_after(_START_SECONDS):
            while not await _ready(replica):  # another process's state: nothing to await but its answer
                assert process.returncode is None, "the replica exited"
                await anyio.sleep(0.05)
    except (TimeoutError, AssertionError):
        exited = "" if process.returncode is None else f" (it exited with {process.returncode})"
        await replica.stop()
        raise RuntimeError(
            f"replica {name} did not start{exited}:\n{log_path.read_text(errors='replace')[-3000:]}"
        ) from None
    login = await replica.http.post("/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    replica.admin_token = str(login.json()["token"])
    return replica


async def _ready(replica: Replica) -> bool:
    try:
        return (await replica.http.get("/readyz")).status_code == 200
    except httpx.TransportError:
        return False


@asynccontextmanager
async def running_cluster(database_url: str, redis_url: str, namespace: str, log_dir: Path) -> AsyncIterator[Cluster]:
    """Replica A (started first: it creates the first admin), then B, and the inventory origin on A."""
    env = replica_environment(database_url, redis_url, namespace)
    async with AsyncExitStack() as stack:
        origin_url = stack.enter_context(origin_process())
        # Each replica its own audit journal directory, as on separate machines (one process per directory).
        a = await start_replica("a", env | {"BASTION_AUDIT_JOURNAL_DIR": str(log_dir / "journal-a")}, log_dir)
        stack.push_async_callback(a.stop)
        b = await start_replica("b", env | {"BASTION_AUDIT_JOURNAL_DIR": str(log_dir / "journal-b")}, log_dir)
        stack.push_async_callback(b.stop)
        origin = await a.ok("POST", "/api/origins", json={"name": "inventory", "transport": "http", "url": origin_url})
        await a.ok("POST", f"/api/origins/{origin['id']}/review", json={"decision": "approve"})
        yield Cluster(a, b, database_url, redis_url, namespace)
