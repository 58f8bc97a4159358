"""`bastion origins ...`: register, list, show, review, refresh discovery, delete.

The CLI acts as the operator (who holds the database) in the default tenant: what
it registers is approved at once; `review` decides requests made through the API.
"""

from __future__ import annotations

import typer

from bastion.admin.schemas import OriginIn, ReviewIn
from bastion.cli._common import OPERATOR, JsonOption, emit, run_with_services, validated

app = typer.Typer(help="Origins: the upstream MCP servers Bastion connects to.", no_args_is_help=True)
_COLUMNS = ("id", "name", "transport", "status", "protocol_version", "last_error")


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Short unique name (lowercase, digits, - and _)."),
    url: str | None = typer.Option(None, help="Streamable HTTP endpoint of the origin."),
    command: list[str] | None = typer.Option(None, "--command", "-c", help="stdio: program and arguments, repeat."),
    timeout: float | None = typer.Option(None, help="Per-call timeout in seconds."),
    as_json: bool = JsonOption,
) -> None:
    """Register an origin and discover what it offers."""
    data = validated(
        OriginIn,
        name=name,
        transport="http" if url else "stdio",
        url=url,
        command=command or None,
        timeout_seconds=timeout,
    )
    emit(run_with_services(lambda s: s.control.create_origin(OPERATOR, data), "origins add", name), as_json, _COLUMNS)


@app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """List origins."""
    emit(run_with_services(lambda s: s.control.list_origins(OPERATOR), "origins list"), as_json, _COLUMNS)


@app.command("show")
def show(origin: str = typer.Argument(..., help="Origin id or name."), as_json: bool = JsonOption) -> None:
    """Show an origin and the items it offers."""
    result = run_with_services(lambda s: s.control.get_origin(OPERATOR, origin), "origins show", origin)
    if as_json:
        emit(result, True, _COLUMNS)
        return
    emit(result, False, _COLUMNS)
    for item in result.items:
        typer.echo(f"  {item.kind:<18} {item.name}")
    typer.echo(f"catalog {result.catalog_digest}   (approve what you saw: origins review --approve --catalog ...)")


@app.command("review")
def review(
    origin: str = typer.Argument(..., help="Origin id or name."),
    approve: bool = typer.Option(..., "--approve/--reject", help="Approve or reject the connector request."),
    note: str = typer.Option("", help="Why (kept with the decision)."),
    catalog: str | None = typer.Option(
        None, help="The catalog digest `origins show` printed: refused if the origin's items changed since."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Approve or reject a connector request (a rejected origin's items leave every server)."""
    data = validated(ReviewIn, decision="approve" if approve else "reject", note=note, catalog_digest=catalog)
    emit(
        run_with_services(lambda s: s.control.review_origin(OPERATOR, origin, data), "origins review", origin),
        as_json,
        _COLUMNS,
    )


@app.command("refresh")
def refresh(origin: str = typer.Argument(..., help="Origin id or name."), as_json: bool = JsonOption) -> None:
    """Discover the origin's items again."""
    emit(
        run_with_services(lambda s: s.control.refresh_origin(OPERATOR, origin), "origins refresh", origin),
        as_json,
        _COLUMNS,
    )


@app.command("delete")
def delete(origin: str = typer.Argument(..., help="Origin id or name.")) -> None:
    """Delete an origin (its items leave every virtual server)."""
    run_with_services(lambda s: s.control.delete_origin(OPERATOR, origin), "origins delete", origin)
    typer.echo(f"deleted origin {origin}")
