"""First-start bootstrap: the first administrator only once, and a demo start that failed halfway
neither loses the generated password nor leaves the demo half made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from bastion.admin.actor import Actor
from bastion.admin.schemas import ServerIn
from bastion.bootstrap import DEMO_SLUG, ensure_admin, ensure_demo
from bastion.config import Settings
from bastion.services import Services
from bastion.store.models import User
from bastion.store.tenancy import SYSTEM

pytestmark = pytest.mark.anyio


def _services(tmp_path: Path, **settings: object) -> Services:
    database = f"sqlite+aiosqlite:///{tmp_path}/bastion.db"
    return Services(Settings(database_url=database, audit_journal_dir=tmp_path / "journal", **settings))  # type: ignore[arg-type]


async def test_a_renamed_admin_user_setting_creates_no_second_administrator(tmp_path: Path) -> None:
    first = _services(tmp_path)
    await first.db.migrate()
    assert await ensure_admin(first) is not None  # generated, shown once
    await first.db.close()
    renamed = _services(tmp_path, admin_user="ops")  # a restart with BASTION_ADMIN_USER changed
    try:
        assert await ensure_admin(renamed) is None
        async with renamed.db.session(SYSTEM) as session:
            names = list(await session.scalars(select(User.username).where(User.is_admin.is_(True))))
        async with renamed.running(poll_epoch=False):
            demo = await ensure_demo(renamed)  # its token acts as the administrator there is
    finally:
        await renamed.db.close()
    assert names == ["admin"]
    assert demo.token is not None


async def test_a_demo_server_left_without_items_is_composed_published_and_given_a_token(tmp_path: Path) -> None:
    services = _services(tmp_path)
    await services.db.migrate()
    try:
        await ensure_admin(services)
        async with services.running(poll_epoch=False):
            await services.control.create_server(Actor.operator(), ServerIn(slug=DEMO_SLUG))  # a start stopped here
            result = await ensure_demo(services)
            server = await services.control.get_server(Actor.operator(), DEMO_SLUG)
    finally:
        await services.db.close()
    assert server.published and server.items and result.token is not None


def test_a_demo_start_that_fails_after_creating_the_admin_still_prints_its_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        BASTION_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/bastion.db",
        BASTION_PORT="0",
        BASTION_LOG_LEVEL="warning",
        BASTION_STDIO_COMMANDS='[["/bin/true"]]',  # the demo origin's command is not allowed: it fails there
    )
    failed = subprocess.run(
        [sys.executable, "-m", "bastion", "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert failed.returncode != 0
    assert "first start: admin login admin / " in failed.stdout, failed.stdout + failed.stderr
