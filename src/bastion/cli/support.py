"""`bastion support ...`: a bundle for asking for help (settings, versions, health, logs; secrets redacted)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

app = typer.Typer(
    help="Support: collect what helps diagnose a problem, with every secret redacted.", no_args_is_help=True
)


@app.command("bundle")
def bundle(
    out: Path | None = typer.Option(
        None,
        "--out",
        help="archive to write (.tar.gz), or a directory for bastion-support-<UTC time>.tar.gz; default: here",
    ),
    log_lines: int = typer.Option(2000, "--log-lines", min=0, help="last lines of BASTION_LOG_FILE to include"),
) -> None:
    """Write a .tar.gz with config.json, versions.json, health.json, logs.jsonl and manifest.json.

    Works when Bastion does not: an unreachable database or invalid settings are reported in the
    bundle, not raised. Nothing is changed (no migration, no key file, no canary).
    """
    # Loaded here, not at import: `bastion --help` stays quick.
    from bastion.support.bundle import write_bundle

    name = f"bastion-support-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.tar.gz"
    target = out / name if out is not None and out.is_dir() else out or Path(name)
    try:
        written = write_bundle(target, log_lines=log_lines)
    except OSError as exc:  # a directory that cannot be written, a symlink in the way
        typer.secho(f"cannot write {target}: {exc.strerror or type(exc).__name__}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(str(written.path))
    typer.echo(written.summary)
