"""`bastion tokens ...`: create (shown once), list, revoke."""

from __future__ import annotations

import typer

from bastion.admin.schemas import TokenIn
from bastion.cli._common import OPERATOR, JsonOption, emit, run_with_services, validated
from bastion.config import Settings

app = typer.Typer(help="API tokens: bearer credentials for MCP clients and the admin API.", no_args_is_help=True)
_COLUMNS = ("id", "name", "scopes", "server_ids", "expires_at", "revoked_at")


@app.command("create")
def create(
    name: str = typer.Option("cli", help="What the token is for."),
    server: list[str] | None = typer.Option(None, "--server", help="Virtual server it may reach (repeat)."),
    admin: bool = typer.Option(False, "--admin", help="Admin-API scope instead of MCP scope."),
    days: int = typer.Option(30, help="Lifetime in days (1-365)."),
    user: str | None = typer.Option(None, help="Owner (default: the bootstrap admin)."),
    as_json: bool = JsonOption,
) -> None:
    """Create a token; the secret is printed once and stored only as a hash."""
    scopes = ["admin"] if admin else ["mcp"]
    owner = user or Settings().admin_user
    data = validated(TokenIn, name=name, servers=server or [], scopes=scopes, expires_in_days=days, user=owner)
    created = run_with_services(lambda s: s.control.create_token(OPERATOR, data), "tokens create", name)
    if as_json:
        emit(created, True, _COLUMNS)
    else:
        typer.echo(f"token {created.id} ({created.name}), expires {created.expires_at:%Y-%m-%d}")
        typer.echo(f"secret (shown once): {created.token}")


@app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """List tokens (never their secrets)."""
    emit(run_with_services(lambda s: s.control.list_tokens(OPERATOR), "tokens list"), as_json, _COLUMNS)


@app.command("revoke")
def revoke(token_id: str = typer.Argument(..., help="Token id.")) -> None:
    """Revoke a token: refused on its next request."""
    run_with_services(lambda s: s.control.revoke_token(OPERATOR, token_id), "tokens revoke", token_id)
    typer.echo(f"revoked token {token_id}")
