"""`bastion keys ...`: the vault's master keys (rotation, re-wrapping, status)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from bastion.cli._common import run_with_services
from bastion.config import Settings

if TYPE_CHECKING:
    from bastion.services import Services

app = typer.Typer(help="The vault's master keys: rotate, re-wrap secrets, status.", no_args_is_help=True)


@app.command("rotate")
def rotate() -> None:
    """Add a new master key and make it current (old secrets still open; then run `keys rewrap`)."""
    from bastion.vault.envelope import MasterKey
    from bastion.vault.keys import KeyFile, encode_key

    settings = Settings()
    if settings.master_key_file is not None:
        fresh = KeyFile(settings.master_key_file).rotate()
        typer.echo(f"new current master key {fresh.kid} in {settings.master_key_file}; run `bastion keys rewrap`")
        return
    # From the environment Bastion cannot change its own configuration: print the new entry.
    fresh = MasterKey.generate()
    typer.echo("put this entry first in BASTION_MASTER_KEY (keep the old ones), restart, then `bastion keys rewrap`:")
    typer.echo(f"{fresh.kid}:{encode_key(fresh.key)}")


@app.command("rewrap")
def rewrap() -> None:
    """Re-wrap every sealed secret under the current master key (and seal signing keys stored in the clear)."""
    from bastion.store.repos.vault import rewrap_all

    async def run(services: Services) -> tuple[int, str]:
        if services.db.vault is None:
            from bastion.vault.envelope import VaultError

            raise VaultError("no master key configured (BASTION_MASTER_KEY or BASTION_MASTER_KEY_FILE)")
        return await rewrap_all(services.db, services.db.vault), services.db.vault.current.kid

    changed, kid = run_with_services(run, "keys rewrap")
    typer.echo(f"{changed} secrets re-wrapped; every sealed secret now uses master key {kid}")
