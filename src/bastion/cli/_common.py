"""What every CLI command shares: settings, running Services for one operation, output."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import typer
from pydantic import BaseModel, ValidationError

from bastion.admin.actor import Actor
from bastion.config import Settings
from bastion.observability.logging import configure_logging
from bastion.support.process import hide_process

if TYPE_CHECKING:
    from bastion.services import Services

__all__ = ["OPERATOR", "JsonOption", "emit", "run_with_services"]

# The CLI acts as the operator, who holds the database itself, in the default tenant.
OPERATOR = Actor.operator()

T = TypeVar("T")

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


def run_with_services(operation: Callable[[Services], Awaitable[T]]) -> T:
    """Migrate if needed, run one control-plane operation, exit 1 with the message on a Bastion error."""

    # The gateway's modules load here, not at import: `bastion --help` stays quick.
    from bastion.errors import BastionError
    from bastion.services import Services
    from bastion.store.repos.audit_directory import command_directory
    from bastion.vault.envelope import VaultError

    settings = Settings()
    # A directory of its own for this command's audit journal: the server's is held by the server.
    journal = command_directory(settings.audit_journal_path())
    settings = settings.model_copy(update={"audit_journal_dir": journal})
    configure_logging(settings.log_level, settings.log_file)
    hide_process()  # discovery may start stdio origins here too (see bastion.support.process)

    async def main() -> T:
        services = Services(settings)
        await services.db.migrate()
        failure: Exception | None = None
        async with services.running(poll_epoch=False):
            try:
                return await operation(services)
            except (BastionError, ValidationError) as error:
                failure = error  # raised outside the task group, which would wrap it in an ExceptionGroup
        assert failure is not None
        raise failure

    try:
        return anyio.run(main)
    except VaultError as error:
        typer.secho(f"refusing to run: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except BastionError as error:
        typer.secho(f"error: {error.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except ValidationError as error:
        _report(error)
        raise typer.Exit(2) from None


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], **fields: Any) -> M:
    """Build an input model from command-line values; exit 2 with field-level messages if invalid."""
    try:
        return model(**fields)
    except ValidationError as error:
        _report(error)
        raise typer.Exit(2) from None


def _report(error: ValidationError) -> None:
    for problem in error.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "input"
        typer.secho(f"error: {where}: {problem['msg']}", fg=typer.colors.RED, err=True)


def emit(value: BaseModel | Sequence[BaseModel], as_json: bool, columns: Sequence[str]) -> None:
    """Print models as JSON or as an aligned table of `columns`."""
    rows = [value] if isinstance(value, BaseModel) else list(value)
    if as_json:
        data: Any = [r.model_dump(mode="json") for r in rows]
        typer.echo(json.dumps(data[0] if isinstance(value, BaseModel) else data, indent=2))
        return
    table = [[str(r.model_dump(mode="json").get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in table)]) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in table:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
