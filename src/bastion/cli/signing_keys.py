"""`bastion signing-keys ...`: Bastion's JWS signing keys (published in its JWKS)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer
from pydantic import BaseModel

from bastion.cli._common import JsonOption, emit, run_with_services

if TYPE_CHECKING:
    from bastion.services import Services

app = typer.Typer(help="Signing keys for Bastion's own JWTs (auth-session tokens).", no_args_is_help=True)
_COLUMNS = ("kid", "algorithm", "status", "created_at")


class SigningKeyOut(BaseModel):
    kid: str
    algorithm: str
    status: str
    created_at: float


@app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """List the keys (public facts only, never the private key)."""
    from bastion.store.repos.keys import load_keyring

    async def keys(services: Services) -> list[SigningKeyOut]:
        ring = await load_keyring(services.db)
        return [
            SigningKeyOut(kid=k.kid, algorithm=k.algorithm, status=k.status, created_at=k.created_at) for k in ring.keys
        ]

    emit(run_with_services(keys, "signing-keys list"), as_json, _COLUMNS)


@app.command("rotate")
def rotate(
    keep_hours: float = typer.Option(24.0, help="How long retired keys stay published for verification."),
) -> None:
    """Make a new active key; running servers pick it up on their next change check."""
    from bastion.store.repos.keys import rotate_keyring

    async def run(services: Services) -> str:
        ring = await rotate_keyring(services.db, now=time.time(), keep_retired_seconds=keep_hours * 3600)
        return ring.active.kid

    typer.echo(f"new active signing key {run_with_services(run, 'signing-keys rotate')}")
