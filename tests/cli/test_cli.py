"""The real `bastion` command line, run as a subprocess against a temporary SQLite database.

Each invocation starts a Python process that imports the whole gateway (a few seconds), so
invocations that do not depend on one another run concurrently, and the module shares one
database in which every test uses its own names.

The CLI cannot create the first admin user (`migrate` does not, and only `serve`/`demo`
bootstrap one), so the module creates it in-process with `bastion.bootstrap.ensure_admin`.
"""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from bastion.admin.schemas import ServerIn
from bastion.bootstrap import ensure_admin
from bastion.cli._common import OPERATOR
from bastion.config import Settings
from bastion.services import Services
from bastion.store.repos import origins
from bastion.store.tenancy import SYSTEM
from tests.harness import ADMIN_PASSWORD, STDIO_INVENTORY, free_port, run_bastion, schema_head


@dataclass(frozen=True)
class Workspace:
    directory: Path
    database: Path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        env.update(
            BASTION_DATABASE_URL=f"sqlite+aiosqlite:///{self.database}",
            BASTION_ADMIN_PASSWORD=ADMIN_PASSWORD,
            BASTION_LOG_LEVEL="warning",
            # The "unreachable" origin is a free port on 127.0.0.1: loopback must be allowed to try it.
            BASTION_EGRESS_ALLOW_CIDRS='["127.0.0.0/8"]',
        )
        return env


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The JSON document in stdout.

        Lines before it are skipped: the CLI leaves structlog unconfigured, so log lines land on
        stdout (test_origins_add_prints_only_json_even_when_discovery_fails shows it); the other
        tests check what the commands do, not that.
        """
        assert self.returncode == 0, self
        lines = self.stdout.splitlines(keepends=True)
        start = next(i for i, line in enumerate(lines) if line[:1] in ("{", "["))
        return json.loads("".join(lines[start:]))


def _run(workspace: Workspace, args: Sequence[str], extra_env: dict[str, str] | None = None) -> Result:
    completed = subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        cwd=workspace.directory,
        env={**workspace.env, **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(tuple(args), completed.returncode, completed.stdout, completed.stderr)


def run_cli(workspace: Workspace, *commands: Sequence[str]) -> list[Result]:
    """Run `python -m bastion <args>` once per command, all at the same time; results in order."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda args: _run(workspace, args), commands))


def cli(workspace: Workspace, *args: str) -> Result:
    return _run(workspace, args)


class Background:
    """Runs CLI invocations one at a time on a worker thread while the tests run others.

    Every invocation spends seconds importing the gateway, so the module's independent one-shot
    checks (help, error cases) run here, overlapping with the tests that must run commands one
    after another; the tests that check them come last in the module and collect their results.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._futures: dict[str, Future[Result]] = {}

    def submit(self, label: str, workspace: Workspace, args: Sequence[str]) -> None:
        self._futures[label] = self._pool.submit(_run, workspace, args)

    def result(self, label: str) -> Result:
        return self._futures[label].result(timeout=300)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _workspace(directory: Path) -> Workspace:
    return Workspace(directory=directory, database=directory / "bastion.db")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A migrated database with the first admin, a draft virtual server `draft` and an origin `fixed`
    whose (synthetic) discovery offers one tool, `ping`."""
    space = _workspace(tmp_path_factory.mktemp("cli"))

    async def prepare() -> None:
        services = Services(
            Settings(database_url=f"sqlite+aiosqlite:///{space.database}", admin_password=ADMIN_PASSWORD)
        )
        try:
            await services.db.migrate()
            await ensure_admin(services)
            await services.control.create_server(OPERATOR, ServerIn(slug="draft"))
            async with services.db.session(SYSTEM) as session:
                origin = await origins.create(
                    session, name="fixed", transport="stdio", url=None, command=["true"], timeout_seconds=None
                )
                origin.status = "approved"
                ping = {"name": "ping", "inputSchema": {"type": "object"}}
                await origins.save_discovery(
                    session, origin, items=[("tool", "ping", ping)], protocol_version=None, error=None
                )
        finally:
            await services.db.close()

    anyio.run(prepare)
    return space


@pytest.fixture(scope="module")
def inventory(workspace: Workspace) -> dict[str, Any]:
    """The bundled demo origin registered over stdio through the CLI (`--command` repeats per argument)."""
    args = ["origins", "add", "inventory", "--json"]
    for part in STDIO_INVENTORY:
        args += ["--command", part]
    origin: dict[str, Any] = cli(workspace, *args).json()
    return origin


# --- the independent one-shot invocations, run in the background ---------------------------------------

HELP: dict[tuple[str, ...], set[str]] = {
    (): {"serve", "demo", "migrate", "origins", "servers", "tokens"},
    ("origins",): {"add", "list", "show", "refresh", "delete"},
    ("servers",): {"create", "list", "show", "compose", "item", "publish", "unpublish", "delete"},
    ("tokens",): {"create", "list", "revoke"},
}

BAD_INPUT: dict[str, tuple[tuple[str, ...], str]] = {
    # label: (arguments, what the error message must mention)
    "origin name that is not a slug": (("origins", "add", "Bad Name", "--command", "python"), "name"),
    "unknown virtual server": (("servers", "show", "no-such-server"), "no virtual server 'no-such-server'"),
    "alias without '='": (("servers", "compose", "draft", "--origin", "fixed", "--alias", "ping"), "alias"),
}

UNREACHABLE = unique("unreachable")


@pytest.fixture(scope="module", autouse=True)
def background(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    jobs = Background()
    blank = _workspace(tmp_path_factory.mktemp("cli-help"))
    for group in HELP:
        jobs.submit(f"help {group}", blank, (*group, "--help"))
    unreachable_url = f"http://127.0.0.1:{free_port()}/mcp"
    jobs.submit("add unreachable", workspace, ("origins", "add", UNREACHABLE, "--url", unreachable_url, "--json"))
    for label, (args, _) in BAD_INPUT.items():
        jobs.submit(label, workspace, args)
    yield jobs
    jobs.close()


# --- origins ---------------------------------------------------------------------------------------------


def test_origins_add_registers_a_stdio_origin_and_discovers_its_items(inventory: dict[str, Any]) -> None:
    assert inventory["name"] == "inventory"
    assert inventory["transport"] == "stdio"
    assert inventory["command"] == STDIO_INVENTORY
    assert inventory["last_error"] is None and inventory["protocol_version"]
    names = {(i["kind"], i["name"]) for i in inventory["items"]}
    assert {("tool", "get_order"), ("tool", "refund_order"), ("resource", "inventory://warehouses")} <= names


def test_origins_list_and_show_print_json(workspace: Workspace, inventory: dict[str, Any]) -> None:
    listed, shown = run_cli(workspace, ("origins", "list", "--json"), ("origins", "show", "inventory", "--json"))

    assert {"inventory", "fixed"} <= {o["name"] for o in listed.json()}
    assert (shown.json()["id"], shown.json()["items"]) == (inventory["id"], inventory["items"])


# --- migrate -------------------------------------------------------------------------------------------


def test_migrate_creates_the_schema_in_a_fresh_database_file(tmp_path: Path) -> None:
    space = _workspace(tmp_path)

    result = cli(space, "migrate")

    assert result.returncode == 0, result
    assert "newest schema revision" in result.stdout
    with sqlite3.connect(space.database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"origins", "virtual_servers", "server_items", "api_tokens", "users", "state_epoch"} <= tables
    assert version == [(schema_head(),)]


def test_migrate_with_strong_secrets_required_creates_no_admin_with_a_weak_password(tmp_path: Path) -> None:
    space = _workspace(tmp_path)
    weak = {"BASTION_REQUIRE_STRONG_SECRETS": "true", "BASTION_ADMIN_USER": "weak", "BASTION_ADMIN_PASSWORD": "admin"}
    refused = _run(space, ("migrate",), weak)
    assert refused.returncode == 1 and "refusing to migrate: BASTION_REQUIRE_STRONG_SECRETS" in refused.stderr
    assert "BASTION_ADMIN_PASSWORD is a default or guessable value" in refused.stderr
    assert not space.database.exists()  # nothing was written


# --- virtual servers -------------------------------------------------------------------------------------------


def test_servers_create_compose_publish_and_show(workspace: Workspace, inventory: dict[str, Any]) -> None:
    slug = unique("shop")

    created = cli(workspace, "servers", "create", slug, "--title", "Shop", "--json").json()
    composed = cli(
        workspace,
        "servers", "compose", slug, "--origin", "inventory", "--prefix", "inv_",
        "--item", "get_order", "--item", "list_stock", "--alias", "list_stock=stock", "--json",
    ).json()  # fmt: skip
    published = cli(workspace, "servers", "publish", slug, "--json").json()
    shown = cli(workspace, "servers", "show", created["id"], "--json").json()

    assert (created["slug"], created["title"], created["published"], created["items"]) == (slug, "Shop", False, [])
    assert created["mcp_url"].endswith(f"/servers/{slug}/mcp")
    assert {(i["exposed_name"], i["name"]) for i in composed["items"]} == {
        ("inv_get_order", "get_order"),
        ("stock", "list_stock"),
    }
    assert all(i["origin_id"] == inventory["id"] for i in composed["items"])
    assert published["published"] is True
    assert shown == published


# --- tokens ---------------------------------------------------------------------------------------------------


def test_tokens_create_shows_the_secret_once_list_never_shows_it_and_revoke_stamps_it(workspace: Workspace) -> None:
    name = unique("client")

    created = cli(workspace, "tokens", "create", "--name", name, "--server", "draft", "--days", "7", "--json").json()
    revoked = cli(workspace, "tokens", "revoke", created["id"])
    listed_result = cli(workspace, "tokens", "list", "--json")

    secret = created["token"]
    assert secret.startswith("bst_")
    assert created["name"] == name and created["scopes"] == ["mcp"] and len(created["server_ids"]) == 1
    assert revoked.returncode == 0 and created["id"] in revoked.stdout
    listed = [t for t in listed_result.json() if t["id"] == created["id"]]
    assert len(listed) == 1 and listed[0]["revoked_at"] is not None
    assert all("token" not in t and "token_hash" not in t for t in listed_result.json())
    assert secret not in listed_result.stdout
    with sqlite3.connect(workspace.database) as conn:
        stored = conn.execute("SELECT * FROM api_tokens WHERE id = ?", (created["id"],)).fetchone()
    assert secret not in repr(stored)


def test_each_command_leaves_a_record_in_the_audit_trail_naming_what_it_did_and_who_ran_it(
    workspace: Workspace,
) -> None:
    name = unique("audited")
    created = cli(workspace, "tokens", "create", "--name", name, "--server", "draft", "--json").json()
    claimed = {"USER": "mallory", "LOGNAME": "mallory"}  # the environment does not say who ran it
    revoked = _run(workspace, ("tokens", "revoke", created["id"]), claimed)
    unknown = cli(workspace, "tokens", "revoke", "no-such-token")
    assert revoked.returncode == 0 and unknown.returncode == 1

    with sqlite3.connect(workspace.database) as conn:
        rows = conn.execute(
            "SELECT method, target, decision, reason, status, client FROM audit_records "
            "WHERE kind = 'cli.command' AND target IN (?, ?, 'no-such-token') ORDER BY seq",
            (name, created["id"]),
        ).fetchall()
    assert [r[:3] for r in rows] == [
        ("tokens create", name, "allow"),
        ("tokens revoke", created["id"], "allow"),
        ("tokens revoke", "no-such-token", "error"),
    ]
    assert rows[2][3] == "no API token 'no-such-token'" and rows[2][4] == "NotFound"
    account = pwd.getpwuid(os.geteuid()).pw_name
    assert {r[5] for r in rows} == {f"cli:{account}"}  # the account that ran it
    assert not any(created["token"] in repr(r) for r in rows)


# --- beside a running server ------------------------------------------------------------------------------------


def test_commands_work_beside_a_running_server_and_a_second_server_on_its_journal_is_refused(tmp_path: Path) -> None:
    """The server holds its audit journal directory for its life: a command journals in a directory of
    its own (it waited forever on the server's before), and a second `serve` with the same settings
    stops at once with one line saying why."""
    space = _workspace(tmp_path)
    with run_bastion(tmp_path) as gateway:
        created, second = run_cli(
            space, ("servers", "create", "beside", "--json"), ("serve", "--port", str(free_port()))
        )
        assert created.json()["slug"] == "beside"
        assert [s["slug"] for s in gateway.ok("GET", "/api/servers")] == ["beside"]
        assert second.returncode == 1, second
        [line] = [line for line in second.stderr.splitlines() if line.startswith("refusing to start")]
        assert "is in use by another Bastion process" in line and "Traceback" not in second.stderr
        assert list((tmp_path / "audit-journal" / "commands").iterdir()) == []  # each command's, removed


# --- the background checks (last, so that they overlap with the tests above) -------------------------------------


def test_help_works_for_the_cli_and_each_command_group(background: Background) -> None:
    for group, commands in HELP.items():
        result = background.result(f"help {group}")

        assert result.returncode == 0, result
        assert "Usage" in result.stdout, result
        assert all(command in result.stdout for command in commands), (group, result.stdout)


def test_origins_add_prints_only_json_even_when_discovery_fails(background: Background) -> None:
    result = background.result("add unreachable")

    assert result.returncode == 0, result
    origin = json.loads(result.stdout)  # log lines belong on stderr, not in machine-readable output
    assert origin["name"] == UNREACHABLE and origin["transport"] == "http"
    assert "unreachable" in origin["last_error"]


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gives_a_clear_error_and_a_non_zero_exit(background: Background, case: str) -> None:
    result = background.result(case)
    _, mentions = BAD_INPUT[case]

    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    assert "error" in result.stderr.lower(), result.stderr
    assert mentions in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 5, result.stderr


def test_origins_review_approves_the_catalog_shown_and_refuses_another(workspace: Workspace) -> None:
    shown = cli(workspace, "origins", "show", "fixed")
    assert shown.returncode == 0, shown
    [digest] = [line.split()[1] for line in shown.stdout.splitlines() if line.startswith("catalog ")]
    other = cli(workspace, "origins", "review", "fixed", "--approve", "--catalog", "0" * 64)
    assert other.returncode == 1 and "other items than the ones you reviewed" in other.stderr, other
    approved = cli(workspace, "origins", "review", "fixed", "--approve", "--catalog", digest, "--json")
    assert approved.json()["status"] == "approved"


def test_audit_verify_refuses_a_tenant_that_does_not_exist_instead_of_calling_its_chain_intact(
    workspace: Workspace,
) -> None:
    unknown = cli(workspace, "audit", "verify", "--tenant", "no-such-tenant")
    assert unknown.returncode == 1 and "no tenant 'no-such-tenant'" in unknown.stderr, unknown
    assert "intact" not in unknown.stdout
    known = cli(workspace, "audit", "verify", "--tenant", "default")
    assert known.returncode == 0 and "default:" in known.stdout and "intact" in known.stdout, known
