"""stdio origins run only from the operator's allowlist, from a pinned absolute path, under limits.

The harness allowlists the test origins it uses (`tests.harness.STDIO_COMMANDS`); anything else
is refused when registered (400) and again when it would start, whoever wrote the row.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPError
from pydantic import ValidationError

from bastion.config import Settings
from bastion.store.repos import origins
from bastion.store.tenancy import SYSTEM
from tests.harness import STDIO_COMMANDS, Bastion, run_bastion
from tests.oauth.flows import bump_and_wait, own_database

PROBE = [sys.executable, "-m", "tests.origins.probe"]
LIMITED = [sys.executable, "-m", "tests.origins.limited"]
MiB = 1024 * 1024


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Bastion]:
    with run_bastion(tmp_path) as bastion:
        yield bastion


def register(bastion: Bastion, name: str, command: list[str]) -> Any:
    """The registration's answer, or (registered: 201) the approval's (200): the review is not under test."""
    response = bastion.api("POST", "/api/origins", json={"name": name, "transport": "stdio", "command": command})
    if response.status_code == 201:
        return bastion.api("POST", f"/api/origins/{response.json()['id']}/review", json={"decision": "approve"})
    return response


def text_of(result: Any) -> str:
    return str(result.content[0].text)


@pytest.mark.parametrize(
    "command",
    [
        ["/bin/sh", "-c", "echo pwned"],
        [sys.executable, "-c", "print('pwned')"],
        [sys.executable, "-m", "tests.origins.probe_", "--http"],  # a longer module name is no prefix match
        [sys.executable, "-m", "tests.origins"],  # nor is a shorter one
    ],
    ids=["shell", "interpreter-code", "longer-module", "shorter-module"],
)
def test_a_command_off_the_allowlist_is_refused_at_registration_with_a_clear_400(
    gw: Bastion, command: list[str]
) -> None:
    response = register(gw, "rogue", command)

    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "is not on the stdio allowlist" in message and "BASTION_STDIO_COMMANDS" in message
    assert "rogue" not in {origin["name"] for origin in gw.ok("GET", "/api/origins")}


def test_a_bare_name_that_is_not_on_path_is_refused_at_registration(gw: Bastion) -> None:
    response = register(gw, "nowhere", ["no-such-origin-binary-anywhere"])

    assert response.status_code == 400
    assert "was not found on Bastion's PATH" in response.json()["error"]["message"]


@pytest.fixture
def wrapper(tmp_path: Path) -> Path:
    """An executable `origin-python` in a directory of its own, running the test interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "origin-python"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    script.chmod(0o755)
    return script


@pytest.fixture
def wrapper_allowed(tmp_path: Path, wrapper: Path) -> Iterator[Bastion]:
    with run_bastion(tmp_path, stdio_commands=[[str(wrapper), "-m", "tests.origins.probe"]]) as bastion:
        yield bastion


@pytest.mark.anyio
async def test_a_bare_name_is_pinned_to_its_absolute_path_and_run_from_it_without_path(
    wrapper_allowed: Bastion, wrapper: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = wrapper_allowed
    with monkeypatch.context() as patch:
        patch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
        created = register(gw, "pinned", ["origin-python", "-m", "tests.origins.probe"])
    assert created.status_code == 200, created.text  # registered, then approved
    assert created.json()["command"] == [str(wrapper), "-m", "tests.origins.probe"]
    assert created.json()["last_error"] is None
    gw.publish_server("pinned", {"origin": "pinned", "items": ["crash", "status"]})
    async with gw.client("pinned", gw.token("pinned")) as client:
        with pytest.raises(MCPError), anyio.fail_after(10):
            await client.call_tool("crash", {})
        # Restarted with the wrapper's directory no longer on PATH: only the pinned path can work.
        with anyio.fail_after(10):
            status = await client.call_tool("status", {})
    assert not status.is_error


@pytest.mark.anyio
async def test_a_row_written_past_the_api_with_another_command_is_never_started(gw: Bastion, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    assert register(gw, "probe", PROBE).status_code == 200
    gw.publish_server("probe", {"origin": "probe", "items": ["status"]})
    async with own_database(gw) as db:
        async with db.session(SYSTEM) as session:
            (await origins.get(session, "probe")).command = ["/bin/sh", "-c", f"touch {marker}"]
        await bump_and_wait(gw, db)

    async with gw.client("probe", gw.token("probe")) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("status", {})
    refreshed = gw.ok("POST", "/api/origins/probe/refresh")

    assert "origin 'probe' was not started: its command is not on the stdio allowlist" in refused.value.error.message
    assert "/bin/sh" not in refused.value.error.message  # the command is for administrators only
    assert f'its command ["/bin/sh", "-c", "touch {marker}"] matches no entry' in refreshed["last_error"]
    assert not marker.exists()


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Bastion]:
    with run_bastion(tmp_path, stdio_max_open_files=64, stdio_max_data_bytes=512 * MiB) as bastion:
        bastion.add_origin("limited", command=LIMITED)
        bastion.publish_server("limited", {"origin": "limited"})
        yield bastion


@pytest.mark.anyio
async def test_a_stdio_origin_runs_under_the_configured_resource_limits(limited: Bastion) -> None:
    async with limited.client("limited", limited.token("limited")) as client:
        applied = json.loads(text_of(await client.call_tool("limits", {})))
        too_many = await client.call_tool("open_files", {"count": 100})
        too_much = await client.call_tool("allocate", {"megabytes": 1024})
        still_fine = await client.call_tool("open_files", {"count": 10})

    assert applied == {"data": [512 * MiB, 512 * MiB], "open_files": [64, 64], "core": [0, 0]}
    assert too_many.is_error and "Too many open files" in text_of(too_many)
    assert int(text_of(too_many).split("opened ")[1].split(" of")[0]) < 64
    assert too_much.is_error and "cannot allocate 1024 MiB: MemoryError" in text_of(too_much)
    assert not still_fine.is_error  # the limits fail the attempt, not the origin


def test_the_allowlist_setting_is_a_json_list_of_argv_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_STDIO_COMMANDS", json.dumps(STDIO_COMMANDS))

    assert Settings().stdio_commands == STDIO_COMMANDS


@pytest.mark.parametrize(
    "entry", [["python3", "-m", "x"], [], ["/usr/bin/python3", ""]], ids=["bare", "empty", "blank"]
)
def test_an_allowlist_entry_without_an_absolute_executable_stops_start_up(entry: list[str]) -> None:
    with pytest.raises(ValidationError, match="absolute path"):
        Settings(stdio_commands=[entry])
