"""The `bastion` command line: one Typer module per command group."""

from __future__ import annotations

import typer

from bastion.cli import audit, origins, serve, servers, signing_keys, support, tokens, vault_keys

__all__ = ["app", "main"]

app = typer.Typer(
    name="bastion",
    help="Bastion: a security gateway for MCP. Serve it, and manage origins, virtual servers and tokens.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
serve.register(app)
app.add_typer(origins.app, name="origins")
app.add_typer(servers.app, name="servers")
app.add_typer(tokens.app, name="tokens")
app.add_typer(signing_keys.app, name="signing-keys")
app.add_typer(vault_keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(support.app, name="support")


def main() -> None:
    app()
