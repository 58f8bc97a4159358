"""First-start bootstrap: the admin user, and for `bastion demo` the demo origin, server and token.

Each step checks whether its result already exists, so a second start (or a
start after a half-finished first one) creates nothing twice.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import structlog
from sqlalchemy import select

from bastion.admin.actor import Actor
from bastion.admin.schemas import ComposeIn, OriginIn, ServerIn, TokenIn
from bastion.errors import NotFound
from bastion.identity.passwords import generate_password, hash_password
from bastion.services import Services
from bastion.store.db import bump_epoch
from bastion.store.models import User
from bastion.store.repos import tokens
from bastion.store.tenancy import SYSTEM

__all__ = ["DemoBootstrap", "ensure_admin", "ensure_demo"]

log = structlog.get_logger(__name__)

DEMO_SLUG = "demo"
DEMO_ORIGIN = "inventory"


@dataclass(frozen=True)
class DemoBootstrap:
    admin_password: str | None  # set only when generated now (printed once)
    token: str | None  # set only when created now (printed once)
    mcp_url: str


async def ensure_admin(services: Services) -> str | None:
    """Create the first admin if there is none; return a generated password to print once.

    Only the first: once any platform administrator exists, a `BASTION_ADMIN_USER` naming someone
    else (renamed, mistyped) creates nobody, and says so in the log."""
    settings = services.settings
    async with services.db.session(SYSTEM) as s:
        if await tokens.user_by_name(s, settings.admin_user) is not None:
            return None
        if await s.scalar(select(User.id).where(User.is_admin.is_(True)).limit(1)) is not None:
            log.warning("admin_user_not_created", admin_user=settings.admin_user, reason="an administrator exists")
            return None
        generated = settings.admin_password is None
        password = settings.admin_password or generate_password()
        hashed = hash_password(password, time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib)
        await tokens.create_user(s, username=settings.admin_user, password_hash=hashed, is_admin=True)
        await bump_epoch(s)
    return password if generated else None


async def ensure_demo(services: Services, admin_password: str | None = None) -> DemoBootstrap:
    """The demo origin, the published `demo` server and a token for it, each step done unless it
    was: a start that failed halfway finishes the rest on the next. `admin_password`: one
    `ensure_admin` generated, for the banner."""
    control = services.control
    operator = Actor.operator()  # bootstrap writes as the operator, in the default tenant
    try:
        await control.get_origin(operator, DEMO_ORIGIN)
    except NotFound:
        command = [sys.executable, "-m", "bastion.demo.inventory"]
        await control.create_origin(operator, OriginIn(name=DEMO_ORIGIN, transport="stdio", command=command))
    token: str | None = None
    try:
        server = await control.get_server(operator, DEMO_SLUG)
    except NotFound:
        server = await control.create_server(
            operator,
            ServerIn(
                slug=DEMO_SLUG,
                title="Demo inventory",
                description="A small supply-chain system: stock, orders, reorders and refunds.",
            ),
        )
    if not server.items:  # new, or a start stopped before composing it (one an admin unpublished stays so)
        await control.compose(operator, server.id, ComposeIn(origin=DEMO_ORIGIN))
        server = await control.set_published(operator, server.id, True)
        created = await control.create_token(
            operator,
            TokenIn(name="demo client", servers=[DEMO_SLUG], expires_in_days=30, user=await _demo_user(services)),
        )
        token = created.token
    return DemoBootstrap(admin_password=admin_password, token=token, mcp_url=server.mcp_url)


async def _demo_user(services: Services) -> str:
    """Who the demo token acts as: the configured admin, or (that name renamed since) the first
    platform administrator there is."""
    async with services.db.session(SYSTEM) as s:
        if await tokens.user_by_name(s, services.settings.admin_user) is not None:
            return services.settings.admin_user
        first = await s.scalar(select(User.username).where(User.is_admin.is_(True)).order_by(User.created_at).limit(1))
    return first or services.settings.admin_user


def demo_banner(result: DemoBootstrap, admin_user: str, console_url: str | None = None) -> str:
    lines = ["", "Bastion is ready.", f"  MCP endpoint : {result.mcp_url}"]
    if console_url:
        lines.append(f"  admin console: {console_url}")
    if result.admin_password:
        lines.append(f"  admin login  : {admin_user} / {result.admin_password}   (shown once)")
    if result.token:
        lines += [
            f"  API token    : {result.token}   (shown once; stored only as a hash)",
            "",
            "Client configuration (paste into an MCP client):",
            "{",
            '  "mcpServers": {',
            '    "bastion-demo": {',
            '      "type": "http",',
            f'      "url": "{result.mcp_url}",',
            f'      "headers": {{"Authorization": "Bearer {result.token}"}}',
            "    }",
            "  }",
            "}",
        ]
    else:
        lines.append("  (bootstrapped earlier; make a new client token with: bastion tokens create --server demo)")
    return "\n".join(lines) + "\n"
