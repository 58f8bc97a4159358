"""`bastion servers ...`: create, compose, enable/alias items, publish, delete."""

from __future__ import annotations

import typer

from bastion.admin.schemas import ComposeIn, ItemPatch, ServerIn, ServerOut
from bastion.cli._common import OPERATOR, JsonOption, emit, run_with_services, validated

app = typer.Typer(help="Virtual servers: published MCP endpoints composed from origins.", no_args_is_help=True)
_COLUMNS = ("id", "slug", "published", "mcp_url")


def _show(server: ServerOut, as_json: bool) -> None:
    emit(server, as_json, _COLUMNS)
    if not as_json:
        for item in server.items:
            state = "on " if item.enabled else "off"
            typer.echo(f"  [{state}] {item.kind:<18} {item.exposed_name:<32} <- {item.name}  (item {item.id})")


@app.command("create")
def create(
    slug: str = typer.Argument(..., help="URL name: /servers/<slug>/mcp."),
    title: str = typer.Option("", help="Display title."),
    description: str = typer.Option("", help="Shown to clients as the server's instructions."),
    as_json: bool = JsonOption,
) -> None:
    """Create a virtual server (a draft until published)."""
    data = validated(ServerIn, slug=slug, title=title, description=description)
    _show(run_with_services(lambda s: s.control.create_server(OPERATOR, data), "servers create", slug), as_json)


@app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """List virtual servers."""
    emit(run_with_services(lambda s: s.control.list_servers(OPERATOR), "servers list"), as_json, _COLUMNS)


@app.command("show")
def show(server: str = typer.Argument(..., help="Slug or id."), as_json: bool = JsonOption) -> None:
    """Show a virtual server and its items."""
    _show(run_with_services(lambda s: s.control.get_server(OPERATOR, server), "servers show", server), as_json)


@app.command("compose")
def compose(
    server: str = typer.Argument(..., help="Slug or id."),
    origin: str = typer.Option(..., help="Origin id or name."),
    prefix: str = typer.Option("", help="Prefix for tool and prompt names."),
    item: list[str] | None = typer.Option(None, "--item", help="Select only these items (repeat); default all."),
    alias: list[str] | None = typer.Option(None, "--alias", help="name=alias (repeat)."),
    as_json: bool = JsonOption,
) -> None:
    """Select an origin's items into the server."""
    malformed = [a for a in alias or [] if "=" not in a]
    if malformed:
        typer.secho(f"error: --alias {malformed[0]!r}: expected name=alias", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    aliases = dict(a.split("=", 1) for a in alias or [])
    data = validated(ComposeIn, origin=origin, prefix=prefix, items=item or None, aliases=aliases)
    _show(run_with_services(lambda s: s.control.compose(OPERATOR, server, data), "servers compose", server), as_json)


@app.command("item")
def item(
    server: str = typer.Argument(..., help="Slug or id."),
    item_id: str = typer.Argument(..., help="Item id (see `servers show`)."),
    enable: bool | None = typer.Option(None, "--enable/--disable", help="Expose the item or hide it."),
    alias: str | None = typer.Option(None, help="New client-visible name."),
    as_json: bool = JsonOption,
) -> None:
    """Enable, disable or rename one item."""
    data = validated(ItemPatch, enabled=enable, alias=alias)
    _show(
        run_with_services(
            lambda s: s.control.patch_item(OPERATOR, server, item_id, data), "servers item", f"{server} {item_id}"
        ),
        as_json,
    )


@app.command("publish")
def publish(server: str = typer.Argument(..., help="Slug or id."), as_json: bool = JsonOption) -> None:
    """Publish: clients may connect."""
    _show(
        run_with_services(lambda s: s.control.set_published(OPERATOR, server, True), "servers publish", server), as_json
    )


@app.command("unpublish")
def unpublish(server: str = typer.Argument(..., help="Slug or id."), as_json: bool = JsonOption) -> None:
    """Unpublish: the endpoint answers 404 and open sessions end."""
    _show(
        run_with_services(lambda s: s.control.set_published(OPERATOR, server, False), "servers unpublish", server),
        as_json,
    )


@app.command("delete")
def delete(server: str = typer.Argument(..., help="Slug or id.")) -> None:
    """Delete a virtual server."""
    run_with_services(lambda s: s.control.delete_server(OPERATOR, server), "servers delete", server)
    typer.echo(f"deleted virtual server {server}")
