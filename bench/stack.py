"""The system under test: the echo origin and Bastion as real processes, provisioned over the admin API.

Bastion is started with the real CLI (`python -m bastion serve`: migrations, first admin, uvicorn
with uvloop + httptools, access log off) so the bench measures what operators run, with only a
temporary SQLite file and `log_level=warning` set through `BASTION_*` variables.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.floor import PARTS
from bench.procs import Child, free_port, wait_until
from bench.wire import check_reply, request_body, request_headers

__all__ = [
    "ROOT", "SLUG", "Stack", "Target", "provision", "running_stack", "smoke",
    "start_bastion", "start_floor", "start_origin",
]  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent
SLUG = "bench"
_START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Target:
    """One endpoint the load generator hits, and the server process that answers it."""

    name: str
    url: str
    token: str | None
    server_pid: int


@dataclass(frozen=True)
class Stack:
    origin: Child
    bastion: Child
    direct: Target
    gateway: Target
    floor: Target  # the bare CPython relay (bench.floor): the yardstick for Bastion's own cost
    lean: Target  # the same relay with the per-call parts every such gateway needs (bench.floor --with ...)
    upstream_protocol: str | None  # what Bastion negotiated with the origin (server/discover, else initialize)


def _clean_env() -> dict[str, str]:
    # Inherited BASTION_* settings (the Makefile exports host/port) must not leak into the run.
    return {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_origin(stack: ExitStack, log_dir: Path, started: list[Child]) -> tuple[Child, str]:
    port = free_port()
    child = Child(
        "origin",
        [sys.executable, "-m", "bastion.demo.echo", "--host", "127.0.0.1", "--port", str(port)],
        log_dir=log_dir,
        env=_clean_env(),
        cwd=ROOT,
    )
    stack.callback(child.stop)
    started.append(child)
    wait_until(lambda: _port_open(port), what="echo origin", timeout=_START_TIMEOUT, alive=child.alive)
    return child, f"http://127.0.0.1:{port}/mcp"


def start_floor(
    stack: ExitStack,
    log_dir: Path,
    started: list[Child],
    origin_url: str,
    *,
    name: str = "floor",
    parts: str = "",
    asgi: bool = False,
) -> Target:
    """`bench.floor` in front of the origin: what relaying costs in CPython on this machine now, bare or
    with `parts` (`bench.floor.PARTS`) of a gateway's per-call work; `asgi`: under uvicorn."""
    port = free_port()
    token = "floor_" + secrets.token_urlsafe(32) if parts else None  # never taken for an option (a leading "-")
    argv = [sys.executable, "-m", "bench.floor", "--port", str(port), "--origin", origin_url, "--with", parts]
    argv += ["--asgi"] if asgi else []
    child = Child(name, [*argv, "--token", token] if token else argv, log_dir=log_dir, env=_clean_env(), cwd=ROOT)
    stack.callback(child.stop)
    started.append(child)
    wait_until(lambda: _port_open(port), what=f"{name} relay", timeout=_START_TIMEOUT, alive=child.alive)
    return Target(name, f"http://127.0.0.1:{port}/mcp", token, child.pid)


def start_bastion(
    stack: ExitStack,
    work: Path,
    password: str,
    started: list[Child],
    *,
    name: str = "bastion",
    extra: Mapping[str, str] | None = None,
    wrapper: tuple[str, ...] = (),
    start_timeout: float = _START_TIMEOUT,
) -> tuple[Child, str]:
    """`bastion serve` on a free port, stopped with `stack`; `extra` are more BASTION_* variables.
    `wrapper`: a command the server runs under (`valgrind ...`), with `start_timeout` to match."""
    port = free_port()
    env = _clean_env() | {
        "BASTION_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'bastion.db'}",
        "BASTION_ADMIN_USER": "admin",
        "BASTION_ADMIN_PASSWORD": password,
        "BASTION_LOG_LEVEL": "warning",
        # The echo origin listens on 127.0.0.1, which the egress policy refuses unless allowlisted.
        "BASTION_EGRESS_ALLOW_CIDRS": '["127.0.0.0/8"]',  # JSON: list settings are parsed as JSON from the environment
    }
    env |= extra or {}
    child = Child(
        name,
        [*wrapper, sys.executable, "-m", "bastion", "serve", "--host", "127.0.0.1", "--port", str(port)],
        log_dir=work,
        env=env,
        cwd=ROOT,
    )
    stack.callback(child.stop)
    started.append(child)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _http_ok(f"{base}/readyz"), what=name, timeout=start_timeout, alive=child.alive)
    return child, base


def provision(base: str, password: str, origin_url: str) -> tuple[str, str | None]:
    """Admin API: register and approve the origin, compose + publish `bench`, mint an MCP token.

    Returns the token and the protocol version Bastion negotiated with the origin.
    """
    with httpx.Client(base_url=base, timeout=30.0, trust_env=False) as http:

        def ok(method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            response = http.request(method, path, json=body, headers=headers)
            if response.status_code >= 300:
                raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
            return response.json() if response.content else None

        admin = ok("POST", "/api/login", {"username": "admin", "password": password})["token"]
        origin = ok("POST", "/api/origins", {"name": "echo", "transport": "http", "url": origin_url}, admin)
        if not any(item["kind"] == "tool" and item["name"] == "echo" for item in origin["items"]):
            raise RuntimeError(f"Bastion did not discover the echo tool: last_error={origin['last_error']!r}")
        ok("POST", f"/api/origins/{origin['id']}/review", {"decision": "approve"}, admin)  # a connector request
        server = ok("POST", "/api/servers", {"slug": SLUG, "title": "bench"}, admin)
        ok("POST", f"/api/servers/{server['id']}/compose", {"origin": "echo"}, admin)
        ok("POST", f"/api/servers/{server['id']}/publish", None, admin)
        # One principal sends every call: the per-person limit (600/minute by default) is raised for
        # `bench` so the limiter still runs, and counts, without refusing the load.
        unlimited = {"settings": {"per_principal": "1000000000/minute"}}
        ok("PUT", f"/api/policies/rate_limit?scope=server:{SLUG}", unlimited, admin)
        created = ok("POST", "/api/tokens", {"name": "bench", "servers": [SLUG], "expires_in_days": 1}, admin)
        return str(created["token"]), origin["protocol_version"]


def smoke(target: Target) -> None:
    """One call before any load: a wiring mistake should fail loudly, not as 100% errors."""
    response = httpx.post(
        target.url, content=request_body(1), headers=request_headers(target.token), timeout=30.0, trust_env=False
    )
    problem = check_reply(response.status_code, response.content, 1)
    if problem is not None:
        raise RuntimeError(f"smoke call to {target.name} failed: {problem}")


@contextmanager
def running_stack(work: Path) -> Iterator[Stack]:
    """Start both servers, provision Bastion, smoke-test both targets; stop everything on exit."""
    password = secrets.token_urlsafe(24)
    with ExitStack() as stack:
        started: list[Child] = []
        try:
            origin, origin_url = start_origin(stack, work, started)
            # BENCH_PIPELINE=off measures the bare proxy (no stages) for the end-to-end comparison.
            bare = os.environ.get("BENCH_PIPELINE", "on") == "off"
            bastion, base = start_bastion(
                stack, work, password, started, extra={"BASTION_PIPELINE": "false"} if bare else None
            )
            token, upstream_protocol = provision(base, password, origin_url)
            direct = Target("direct", origin_url, None, origin.pid)
            gateway = Target("bastion", f"{base}/servers/{SLUG}/mcp", token, bastion.pid)
            floor = start_floor(stack, work, started, origin_url)
            lean = start_floor(stack, work, started, origin_url, name="lean", parts=",".join(PARTS))
            for target in (direct, gateway, floor, lean):
                smoke(target)
        except Exception:
            for child in started:  # the servers' own words are the quickest diagnosis
                print(f"--- {child.name} log ({child.log_path}) ---\n{child.log_tail()}", file=sys.stderr)
            raise
        yield Stack(origin, bastion, direct, gateway, floor, lean, upstream_protocol)
