"""Administration of the database behind the service: migrations, API keys, maintenance mode, the reaper."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from facequeue.cli.child_processes import EmbeddedStackError
from facequeue.cli.console import announce, console, fail
from facequeue.cli.database import operator_session, redact, require_data_dir
from facequeue.cli.embedded_stack import embedded_stack
from facequeue.core.settings import Settings, get_settings

LEGACY_SQLITE_FILE = "facequeue.db"  # where releases before the one stack kept the embedded database

keys_app = typer.Typer(help="API keys: create, list, revoke", no_args_is_help=True)


def migrate() -> None:
    """Apply database migrations (the embedded Postgres is created on first use), then copy in what an embedded
    data dir of an earlier release kept in SQLite."""
    from db.migrate import PgvectorMissing, upgrade_to_head
    from facequeue.core.logs import configure_logging

    settings = get_settings()
    configure_logging(settings)  # alembic's lines too: in JSON when FACEQUEUE_LOG_FORMAT=json (a migration Job)
    try:
        with embedded_stack(settings, redis=False):
            upgrade_to_head(settings.resolved_database_url)
            database = redact(settings.resolved_database_url)
            announce("database_up_to_date", f"database at [bold]{database}[/] is up to date", database=database)
            _import_legacy_sqlite(settings)
    except (EmbeddedStackError, PgvectorMissing) as error:
        fail(str(error))


def _import_legacy_sqlite(settings: Settings) -> None:
    """An embedded data dir of an earlier release keeps its data in facequeue.db (SQLite): copied into Postgres
    once, the file left in place (a second run copies nothing)."""
    legacy = settings.data_dir / LEGACY_SQLITE_FILE
    if settings.database_url is not None or not legacy.is_file():
        return
    from db.engine import build_engine
    from db.legacy_sqlite_import import LegacyImportError, import_legacy_sqlite

    engine = build_engine(settings)
    try:
        report = import_legacy_sqlite(legacy.resolve(), engine)
    except LegacyImportError as error:
        fail(str(error))
    finally:
        engine.dispose()
    announce("legacy_sqlite_imported", report.summary(), file=str(legacy))


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="tenant name; created when new")],
    credits: Annotated[int | None, typer.Option(help="set the tenant's credit balance (default: unlimited)")] = None,
    rate: Annotated[str | None, typer.Option(help="rate limit of this key, e.g. 10/second")] = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from db import tenants

    if rate is not None:
        _check_rate(rate)
    with operator_session() as session:
        record = tenants.get_or_create_tenant(session, tenant)
        if credits is not None:
            record.credits = credits
        api_key, key = tenants.create_key(session, record, rate)
        prefix = api_key.prefix
    console.print(f"key [bold]{prefix}[/] for tenant [bold]{tenant}[/] (shown once, store it now):")
    print(key)


def _check_rate(rate: str) -> None:
    from limits import parse

    try:
        parse(rate)
    except ValueError as error:
        raise typer.BadParameter(f"{rate!r} is not a rate like 10/second: {error}") from error


@keys_app.command("list")
def keys_list() -> None:
    """List keys by display prefix (the keys themselves are not stored)."""
    from rich.table import Table

    from db import tenants

    table = Table("prefix", "tenant", "credits", "rate", "created", "revoked")
    with operator_session() as session:
        for key, tenant in tenants.list_keys(session):
            credits = "unlimited" if tenant.credits is None else str(tenant.credits)
            rate = key.rate_limit or tenant.rate_limit or f"{get_settings().default_rate_limit} (default)"
            revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
            table.add_row(key.prefix, tenant.name, credits, rate, key.created_at.isoformat(timespec="seconds"), revoked)
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(prefix_or_id: str) -> None:
    """Revoke a key by its display prefix or id."""
    from db import tenants

    with operator_session() as session:
        count = tenants.revoke_key(session, prefix_or_id)
    if count == 0:
        console.print(f"[red]no active key {prefix_or_id}[/]")
        raise typer.Exit(1)
    console.print(f"revoked {count} key(s)")


def maintenance(state: Annotated[str, typer.Argument(help="on or off")]) -> None:
    """Turn maintenance mode on (new work answers 455; polling still works) or off, for every API process."""
    from db import flags

    if state not in ("on", "off"):
        raise typer.BadParameter("state must be on or off")
    with operator_session() as session:
        flags.set_flag(session, flags.MAINTENANCE_FLAG, state)
    console.print(f"maintenance {state}")


def webhook_secret() -> None:
    """Print the whsec_ secret that signs webhooks of tasks without a tenant (FACEQUEUE_AUTH=off)."""
    from facequeue.core.webhooks import default_secret

    settings = get_settings()
    if settings.webhook_secret is None and settings.signing_secret is None:
        require_data_dir(settings)  # the secret derives from the signing key kept there
    print(default_secret(settings))


def reap() -> None:
    """Run the reaper once: re-publish lost messages, re-queue or fail tasks whose worker died."""
    from facequeue.lifecycle.reaper import reap as reap_once

    with operator_session(broker=True) as session:
        report = reap_once(session, get_settings())
    if report is None:
        console.print("another process is running a reaper pass: this one did nothing")
        return
    console.print(vars(report))
