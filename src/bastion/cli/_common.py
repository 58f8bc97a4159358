"""What every CLI command shares: settings, running Services for one operation, output."""

from __future__ import annotations

import json
import os
import pwd
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import typer
from pydantic import BaseModel, ValidationError

from bastion.admin.actor import Actor
from bastion.audit.chain import AuditRecord
from bastion.audit.sink import now_us
from bastion.config import Settings
from bastion.ids import unique_id
from bastion.observability.logging import configure_logging
from bastion.store.models import DEFAULT_TENANT
from bastion.support.process import hide_process

if TYPE_CHECKING:
    from bastion.services import Services

__all__ = ["CLI_KIND", "OPERATOR", "JsonOption", "command_record", "emit", "run_with_services"]

CLI_KIND = "cli.command"  # the audit record of a CLI command

# The CLI acts as the operator, who holds the database itself, in the default tenant.
OPERATOR = Actor.operator()

T = TypeVar("T")

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


def run_with_services(operation: Callable[[Services], Awaitable[T]], action: str, target: str = "") -> T:
    """Migrate if needed, run one control-plane operation, exit 1 with the message on a Bastion error.

    Every run leaves a `cli.command` record in the audit trail (`action` is the command, `target`
    what it names), as the admin API's requests do: what it did, or why it failed, and which
    account on this machine ran it. The command reports success only once its record is durable;
    a change made whose record could not be written is reported as such (exit 1)."""

    # The gateway's modules load here, not at import: `bastion --help` stays quick.
    from bastion.errors import AuditUnavailable, BastionError
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
            started = time.perf_counter()
            try:
                result = await operation(services)
            except Exception as error:  # any failure is on the record, then raised as it was
                failure = error  # raised outside the task group, which would wrap it in an ExceptionGroup
            try:
                await services.audit.record(DEFAULT_TENANT, command_record(action, target, started, failure)).wait()
            except BastionError as error:
                if failure is None:  # neither a success nor a failure: done, and not on the record
                    failure = AuditUnavailable(
                        f"{action} was done, but its audit record could not be written ({error.message})"
                    )
            if failure is None:
                return result
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


def command_record(action: str, target: str, started: float, failure: Exception | None) -> AuditRecord:
    """The audit record of one CLI command: by whom on this machine, what, and how it ended."""
    from bastion.errors import BastionError
    from bastion.vault.envelope import VaultError

    if failure is None:
        decision, reason, status = "allow", "", "ok"
    elif isinstance(failure, BastionError):
        decision, reason, status = "error", failure.message, type(failure).__name__
    elif isinstance(failure, ValidationError):  # invalid input: the fields at fault, never the values given
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in failure.errors()})
        decision, reason, status = "error", f"invalid input: {', '.join(fields)}", "ValidationError"
    elif isinstance(failure, VaultError):  # Bastion's own words about its keys, never a key
        decision, reason, status = "error", str(failure), "VaultError"
    else:  # another library's failure: its class only (its message may quote a statement's values)
        decision, reason, status = "error", "failed unexpectedly", type(failure).__name__
    return AuditRecord(
        id=unique_id(),
        at_us=now_us(),
        correlation_id=unique_id(),
        kind=CLI_KIND,
        client=f"cli:{_account()}",
        method=action[:128],
        target=target[:512],
        decision=decision,
        reason=reason[:500],
        status=status,
        latency_us=int((time.perf_counter() - started) * 1_000_000),
    )


def _account() -> str:
    """Who ran the command: the process's effective user by the system's account database, not by
    `USER`/`LOGNAME` (which whoever runs it sets as they like)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # no account for this uid (a container without a passwd entry)
        return f"uid {uid}"


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
