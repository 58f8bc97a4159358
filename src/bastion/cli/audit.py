"""`bastion audit ...`: the audit trail (verify each tenant's hash chain)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from bastion.cli._common import run_with_services

if TYPE_CHECKING:
    from bastion.audit.chain import Break
    from bastion.services import Services

app = typer.Typer(help="The audit trail: verify its hash chains.", no_args_is_help=True)


@app.command("verify")
def verify(tenant: str | None = typer.Option(None, help="one tenant's chain (id); default: every tenant")) -> None:
    """Walk each tenant's chain and report the first record that does not follow (exit 1 if any)."""
    from sqlalchemy import select

    from bastion.store.models import Tenant
    from bastion.store.repos.audit import verify_chain
    from bastion.store.tenancy import SYSTEM

    async def run(services: Services) -> list[tuple[str, int, Break | None]]:
        async with services.db.session(SYSTEM) as session:
            tenants = [tenant] if tenant else list(await session.scalars(select(Tenant.id).order_by(Tenant.id)))
        return [(t, *await verify_chain(services.db, t)) for t in tenants]

    failed = False
    for tenant_id, checked, broken in run_with_services(run):
        if broken is None:
            typer.echo(f"{tenant_id}: {checked} records, chain intact")
        else:
            failed = True
            typer.echo(
                f"{tenant_id}: BROKEN at record {broken.seq}: {broken.reason} ({checked} records verified before it)"
            )
    raise typer.Exit(1 if failed else 0)
