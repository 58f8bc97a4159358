"""A new user's path: start the demo, paste the printed config into the SDK client, list and call tools."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.harness import free_port, wait_for_port

pytestmark = pytest.mark.anyio


def _start_demo(workdir: Path, port: int) -> subprocess.Popen[str]:
    # As `make run` does: the console on.
    env = {**os.environ, "BASTION_PORT": str(port), "BASTION_LOG_LEVEL": "warning", "BASTION_ADMIN_UI": "true"}
    env.pop("BASTION_ADMIN_PASSWORD", None)
    return subprocess.Popen(
        [sys.executable, "-m", "bastion", "demo"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=15)
    if process.stdout is not None:
        process.stdout.close()


def _read_banner(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("serving on"):
            return "".join(lines)
    raise AssertionError("the demo stopped before serving:\n" + "".join(lines))


async def test_printed_config_works_in_the_sdk_client_and_a_restart_does_not_bootstrap_again(tmp_path: Path) -> None:
    port = free_port()
    process = _start_demo(tmp_path, port)
    try:
        banner = _read_banner(process)
        wait_for_port(port)
        url = re.search(r'"url": "([^"]+)"', banner)
        header = re.search(r'"Authorization": "([^"]+)"', banner)
        assert url and header, banner
        assert url.group(1) == f"http://127.0.0.1:{port}/servers/demo/mcp"
        assert "admin login  : admin / " in banner
        assert f"admin console: http://127.0.0.1:{port}/admin" in banner
        async with httpx.AsyncClient() as browser:
            assert (await browser.get(f"http://127.0.0.1:{port}/admin/login")).status_code == 200
            # `bastion serve` froze its start-up heap out of the garbage collector's sight.
            password = re.search(r"admin login  : admin / (\S+)", banner)
            assert password, banner
            login = await browser.post(
                f"http://127.0.0.1:{port}/api/login", json={"username": "admin", "password": password.group(1)}
            )
            scraped = await browser.get(
                f"http://127.0.0.1:{port}/metrics", headers={"authorization": f"Bearer {login.json()['token']}"}
            )
            frozen = re.search(r"^bastion_gc_frozen_objects (\S+)$", scraped.text, re.MULTILINE)
            assert frozen and float(frozen.group(1)) > 100_000, scraped.text[:2000]
            assert 'python_gc_collections_total{generation="2"}' in scraped.text
            assert "process_cpu_seconds_total" in scraped.text

        http = create_mcp_http_client(headers={"Authorization": header.group(1)})
        async with http, Client(streamable_http_client(url.group(1), http_client=http), cache=None) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"list_stock", "get_order", "create_reorder", "refund_order"} <= names
            result = await client.call_tool("get_order", {"order_id": "ORD-1001"})
            assert not result.is_error
            assert "ORD-1001" in result.content[0].text  # type: ignore[union-attr]
    finally:
        _stop(process)

    assert (tmp_path / "var" / "bastion.db").exists()
    second = _start_demo(tmp_path, port)
    try:
        again = _read_banner(second)
        assert "API token" not in again and "admin login" not in again
        assert "bootstrapped earlier" in again
    finally:
        _stop(second)
