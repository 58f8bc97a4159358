"""`bastion serve`, `bastion demo`, `bastion migrate`."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import typer

from bastion.config import Settings
from bastion.observability.logging import configure_logging
from bastion.posture import posture_findings
from bastion.support.process import hide_process

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("demo")(demo)
    app.command("migrate")(migrate)


def serve(
    host: str | None = typer.Option(None, help="Interface to bind (default BASTION_HOST or 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default BASTION_PORT or 8080)."),
    ssl_certfile: Path | None = typer.Option(None, help="PEM certificate: serve HTTPS."),
    ssl_keyfile: Path | None = typer.Option(None, help="PEM private key for --ssl-certfile."),
) -> None:
    """Serve the gateway (migrates the database and creates the first admin if needed)."""
    _serve(_settings(host, port, ssl_certfile, ssl_keyfile), demo_mode=False)


def demo(
    host: str | None = typer.Option(None, help="Interface to bind."),
    port: int | None = typer.Option(None, help="Port."),
) -> None:
    """Serve with the bundled demo origin and a published `demo` virtual server (what `make run` does)."""
    _serve(_settings(host, port, None, None), demo_mode=True)


def migrate() -> None:
    """Bring the database schema to the newest revision and create the first admin if there is none."""
    from bastion.bootstrap import ensure_admin
    from bastion.services import Services

    settings = Settings()
    # The same check as `serve`: the admin created here is the one a weak password would let in.
    _check_posture(settings, "refusing to migrate")

    # The database alone (no Redis, no audit journal, no origins): what a migration job can reach.
    async def main() -> str | None:
        services = Services(settings)
        try:
            await services.db.migrate()
            return await ensure_admin(services)
        finally:
            await services.db.close()

    password = anyio.run(main)
    typer.echo("database is at the newest schema revision")
    if password is not None:
        typer.echo(f"first admin created: {settings.admin_user} / {password}   (shown once)")


def _settings(host: str | None, port: int | None, certfile: Path | None, keyfile: Path | None) -> Settings:
    overrides = {
        k: v
        for k, v in {"host": host, "port": port, "ssl_certfile": certfile, "ssl_keyfile": keyfile}.items()
        if v is not None
    }
    return Settings(**overrides)  # type: ignore[arg-type]  # validated by pydantic-settings


def _check_posture(settings: Settings, refusal: str) -> None:
    """Warn of each posture finding; with BASTION_REQUIRE_STRONG_SECRETS, stop (exit 1)."""
    findings = posture_findings(settings)
    for finding in findings:
        typer.secho(f"security posture: {finding}", fg=typer.colors.YELLOW, err=True)
    if findings and settings.require_strong_secrets:
        typer.secho(f"{refusal}: BASTION_REQUIRE_STRONG_SECRETS=true", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def _serve(settings: Settings, *, demo_mode: bool) -> None:
    configure_logging(settings.log_level, settings.log_file)
    if not hide_process():  # before any stdio origin starts (see bastion.support.process)
        typer.secho(
            "security posture: could not hide this process from others of its user (prctl)",
            fg=typer.colors.YELLOW,
            err=True,
        )
    _check_posture(settings, "refusing to start")
    # The gateway's modules load here, not at import: `bastion --help` stays quick.
    from bastion.errors import AuditUnavailable
    from bastion.store.repos import audit_directory

    # The journal directory is this process's from here to the end, held once for the preparation
    # and the server both: no other process can take it in the moment between the two.
    journal = settings.audit_journal_path()
    try:
        held = audit_directory.hold(journal)
    except AuditUnavailable as error:  # another server's: nothing was started
        typer.secho(f"refusing to start: {error.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    try:
        _prepare_and_serve(settings, held, demo_mode=demo_mode)
    finally:
        audit_directory.release(journal, held, remove=False)


def _prepare_and_serve(settings: Settings, held: int, *, demo_mode: bool) -> None:
    import uvicorn

    from bastion.app import create_app
    from bastion.bootstrap import demo_banner, ensure_admin, ensure_demo
    from bastion.http.server import CoalescingHttpToolsProtocol, GatewayServer
    from bastion.services import Services
    from bastion.vault.envelope import VaultError

    async def prepare() -> None:
        services = Services(settings)
        services.audit.adopt_directory(held)
        await services.db.migrate()
        async with services.running(poll_epoch=False):
            password = await ensure_admin(services)
            if demo_mode:
                console = f"{settings.base_url()}/admin" if settings.admin_ui else None
                try:
                    result = await ensure_demo(services, password)
                except BaseException:
                    # The admin is stored already: the password would be lost with the banner.
                    if password is not None:
                        typer.echo(f"first start: admin login {settings.admin_user} / {password}   (shown once)")
                    raise
                typer.echo(demo_banner(result, settings.admin_user, console))
            elif password is not None:
                typer.echo(f"first start: admin login {settings.admin_user} / {password}   (shown once)")

    try:
        anyio.run(prepare)
    except VaultError as error:  # a missing, wrong or malformed master key: nothing was read or written
        typer.secho(f"refusing to start: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    services = Services(settings)  # fresh objects for the server's own event loop
    services.audit.adopt_directory(held)
    config = uvicorn.Config(
        create_app(settings, services),
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        server_header=False,
        # Bastion decides whose X-Forwarded-For to believe (BASTION_TRUSTED_PROXIES); uvicorn's own
        # default would believe any loopback peer and rewrite the client address before Bastion sees it.
        proxy_headers=False,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http=CoalescingHttpToolsProtocol,
    )
    typer.echo(f"serving on {settings.base_url()}  (Ctrl-C stops)")
    GatewayServer(config).run()
