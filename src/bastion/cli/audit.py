"""`bastion audit ...`: the audit trail (verify its chains and exports, prune old records, follow it live)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bastion.cli._common import run_with_services

if TYPE_CHECKING:
    from bastion.services import Services
    from bastion.store.repos.audit_retention import Pruned
    from bastion.store.repos.audit_verify import ChainReport

app = typer.Typer(help="The audit trail: verify its hash chains, prune old records, follow it.", no_args_is_help=True)


async def _tenants(services: Services, tenant: str | None) -> list[str]:
    """Every tenant's id, or the one `tenant` names (its id or slug): a typo is an error, never
    an empty chain reported intact."""
    from sqlalchemy import or_, select

    from bastion.errors import NotFound
    from bastion.store.models import Tenant
    from bastion.store.tenancy import SYSTEM

    async with services.db.session(SYSTEM) as session:
        if not tenant:
            return list(await session.scalars(select(Tenant.id).order_by(Tenant.id)))
        found = await session.scalar(select(Tenant.id).where(or_(Tenant.id == tenant, Tenant.slug == tenant)))
    if found is None:
        raise NotFound(f"no tenant {tenant!r} (give its id or its slug)")
    return [found]


@app.command("verify")
def verify(
    tenant: str | None = typer.Option(None, help="one tenant's chain (id); default: every tenant"),
    file: Path | None = typer.Option(
        None, "--file", exists=True, dir_okay=False, help="verify an exported JSON Lines file offline instead"
    ),
) -> None:
    """Verify each tenant's chain and signed checkpoints; exit 1 at the first break.

    With --file, check an exported file's links and hashes offline, without the store."""
    if file is not None:
        _verify_file(file, tenant)
    from bastion.store.repos.audit import verify_report

    async def run(services: Services) -> tuple[list[tuple[str, ChainReport]], int]:
        reports = [(t, await verify_report(services.db, t)) for t in await _tenants(services, tenant)]
        return reports, services.settings.audit_checkpoint_every

    reports, every = run_with_services(run, "audit verify", tenant or "")
    failed = False
    for tenant_id, report in reports:
        broken = report.broken
        if broken is not None:
            failed = True
            typer.echo(
                f"{tenant_id}: BROKEN at record {broken.seq}: {broken.reason} "
                f"({report.checked} records verified before it)"
            )
            continue
        start = f" from record {report.start_seq} (a prune's signed anchor)" if report.start_seq > 1 else ""
        signed = (
            f"{report.checkpoints} signed checkpoints, the newest at record {report.last_checkpoint}"
            if report.checkpoints
            else "no signed checkpoint yet"
        )
        typer.echo(f"{tenant_id}: {report.checked} records, chain intact{start}; {signed}")
        if report.head_seq - report.last_checkpoint >= every:
            typer.echo(
                f"{tenant_id}: WARNING: {report.head_seq - report.last_checkpoint} records after the newest "
                f"checkpoint, more than one every {every}: checkpoints may have been removed, or none were signed"
            )
    if reports and not reports[0][1].keys_sealed:
        typer.echo(
            "note: no master key is configured, so checkpoint keys are stored unsealed and so are the signing "
            "keys: someone who can write the database could sign checkpoints of their own"
        )
    raise typer.Exit(1 if failed else 0)


def _verify_file(path: Path, tenant: str | None) -> None:
    import hashlib

    from bastion.audit.exported import verify_export

    data = path.read_bytes()
    # A break anywhere is reported: reading stops there, so what follows it was not checked.
    chains = [c for c in verify_export(data.splitlines()) if tenant in (None, c.tenant_id) or c.broken]
    typer.echo(f"{path} (sha256 {hashlib.sha256(data).hexdigest()})")
    if not chains:
        typer.echo("no records to verify")
        raise typer.Exit(1)
    for chain in chains:
        if chain.broken is not None:
            typer.echo(f"{chain.tenant_id}: BROKEN at record {chain.broken.seq}: {chain.broken.reason}")
            raise typer.Exit(1)
        start = "the genesis" if chain.first_seq == 1 else f"hash {chain.start_hash} (the previous prune's anchor)"
        typer.echo(
            f"{chain.tenant_id}: records {chain.first_seq}-{chain.last_seq} after {start}, chain intact, "
            f"ends at hash {chain.end_hash}"
        )
    raise typer.Exit(0)


def _cutoff(value: str) -> int:
    """An ISO 8601 date or date-time (UTC when it names no offset), in POSIX microseconds."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        typer.secho(f"error: --before: {value!r} is not an ISO date or date-time", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


@app.command("prune")
def prune(
    before: str = typer.Option(..., "--before", help="ISO date or date-time (UTC unless it says): prune older"),
    export: Path = typer.Option(..., "--export", dir_okay=False, help="JSON Lines file for what is pruned (new)"),
    tenant: str | None = typer.Option(None, help="one tenant's chain (id); default: every tenant"),
) -> None:
    """Export the records before a cutoff to a new file, then delete them from the store.

    The cut is made at the newest signed checkpoint whose record is older than the cutoff; an
    audit.prune record naming the range and the file's SHA-256 is appended to the chain."""
    before_us = _cutoff(before)
    export = export.resolve()  # the prune record names the file by its absolute path
    from bastion.store.repos.audit_retention import prune as prune_chains

    async def run(services: Services) -> tuple[list[Pruned], str]:
        tenants = await _tenants(services, tenant)
        return await prune_chains(services.db, services.audit.checkpointer, tenants, before_us=before_us, export=export)

    results, digest = run_with_services(run, "audit prune", tenant or "")
    for result in results:
        if result.through_seq:
            typer.echo(
                f"{result.tenant_id}: pruned records {result.first_seq}-{result.through_seq} "
                f"(cut at the signed checkpoint at record {result.through_seq})"
            )
        else:
            typer.echo(f"{result.tenant_id}: nothing pruned: {result.reason}")
    pruned = sum(result.records for result in results)
    if pruned:
        typer.echo(f"exported {pruned} records to {export} (sha256 {digest})")
    else:
        typer.echo(
            f"nothing pruned before {datetime.fromtimestamp(before_us / 1e6, UTC).isoformat()}; {export} not written"
        )


@app.command("tail")
def tail(
    tenant: str | None = typer.Option(None, help="one tenant's records (id); default: every tenant"),
    kind: str | None = typer.Option(None, help="only records of this kind (mcp.request, upstream.call, ...)"),
    correlation_id: str | None = typer.Option(None, "--correlation-id", help="only this request's records"),
    since_seq: int | None = typer.Option(None, "--since-seq", min=1, help="start each chain at this record"),
    last: int | None = typer.Option(None, "-n", "--last", min=1, help="start with the newest N matching records"),
    poll: float = typer.Option(0.5, min=0.05, help="seconds between looks at the store"),
) -> None:
    """Print each new audit record as one JSON line as it reaches the store, until Ctrl-C."""
    import anyio

    from bastion.audit.exported import export_line
    from bastion.config import Settings
    from bastion.observability.logging import configure_logging
    from bastion.store.db import Database
    from bastion.store.repos.audit_tail import TailQuery, follow
    from bastion.store.repos.audit_verify import entry_record

    if since_seq is not None and last is not None:
        typer.secho("error: --since-seq and -n/--last exclude each other", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    settings = Settings()
    configure_logging(settings.log_level)
    query = TailQuery(tenant, kind, correlation_id, since_seq, last)

    def ready() -> None:  # on stderr: stdout holds only records
        typer.echo("following the audit trail (Ctrl-C to stop)", err=True)

    async def run() -> None:
        db = Database(settings.database_url)  # reads only: no migration, no services
        try:
            async for row in follow(db, query, poll=poll, on_ready=ready):
                line = export_line(row.tenant_id, row.seq, row.prev_hash, row.hash, entry_record(row))
                typer.echo(line.decode().rstrip("\n"))
        finally:
            with anyio.CancelScope(shield=True):
                await db.close()

    try:
        anyio.run(run)
    except KeyboardInterrupt:  # Ctrl-C is how a tail ends
        raise typer.Exit(0) from None
    except BrokenPipeError:  # `bastion audit tail | head`: the reader left
        raise typer.Exit(0) from None
