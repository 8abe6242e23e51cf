"""`facequeue tenants`: an operator sees tenants and manages their webhook endpoint and secret, as a tenant
does with its key through /v1/webhook-endpoint (the same service does both)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from facequeue.cli.console import console
from facequeue.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from api.services.webhook_endpoints import WebhookEndpointService
    from db.models import Tenant

tenants_app = typer.Typer(
    help="Tenants: list, show, set their webhook endpoint, rotate their secret", no_args_is_help=True
)


@contextmanager
def _database() -> Iterator[Session]:
    """A session; a database that can't be read is one line and exit status 1, not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from facequeue.cli.admin import redact
    from facequeue.lifecycle.sessions import session_scope

    try:
        with session_scope() as session:
            yield session
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        url = redact(get_settings().resolved_database_url)
        _fail(f"cannot use the database at {url}: {reason} (is it migrated? run `facequeue migrate`)")


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _named(session: Session, name: str) -> Tenant:
    from db import tenants

    tenant = tenants.find_tenant(session, name)
    if tenant is None:
        _fail(f"no tenant named {name!r} (`facequeue tenants list` shows them)")
    return tenant


def _endpoints(session: Session) -> WebhookEndpointService:
    from api.services.webhook_endpoints import WebhookEndpointService

    return WebhookEndpointService(session, get_settings())


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


@tenants_app.command("list")
def tenants_list() -> None:
    """Every tenant with its credits, active keys and webhook endpoint."""
    from db import tenants

    table = Table("name", "id", "credits", "keys", "webhook endpoint", "secret rotated", "created")
    with _database() as session:
        keys = tenants.active_key_counts(session)
        for tenant in tenants.list_tenants(session):
            credits = "unlimited" if tenant.credits is None else str(tenant.credits)
            table.add_row(
                tenant.name,
                tenant.id,
                credits,
                str(keys.get(tenant.id, 0)),
                tenant.webhook_url or "-",
                _when(tenant.webhook_secret_rotated_at),
                _when(tenant.created_at),
            )
    Console().print(table)


@tenants_app.command("show")
def tenants_show(
    name: str,
    secret: Annotated[
        bool, typer.Option("--secret", help="print only the current whsec_ secret (for scripts)")
    ] = False,
) -> None:
    """One tenant: limits, keys, webhook endpoint and secret rotation."""
    from db import tenants

    with _database() as session:
        tenant = _named(session, name)
        endpoints = _endpoints(session)
        if secret:
            print(endpoints.secret(tenant.id).secret)
            return
        endpoint = endpoints.view(tenant.id)
        disabled = f"{_when(endpoint.disabled_at)} (it answered 410 Gone)" if endpoint.disabled_at else "no"
        rows = {
            "name": tenant.name,
            "id": tenant.id,
            "credits": "unlimited" if tenant.credits is None else str(tenant.credits),
            "rate limit": tenant.rate_limit or f"{get_settings().default_rate_limit} (default)",
            "active keys": str(tenants.active_key_counts(session).get(tenant.id, 0)),
            "webhook endpoint": endpoint.url or "- (only tasks with a callback_url notify)",
            "endpoint disabled": disabled,
            "secret rotated": _when(endpoint.secret_rotated_at),
            "previous secret signs until": _when(endpoint.previous_secret_expires_at),
        }
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows.items():
        table.add_row(label, value)
    Console().print(table)


@tenants_app.command("set-webhook")
def tenants_set_webhook(
    name: str,
    url: Annotated[str | None, typer.Argument(help="http(s) URL of the tenant's default endpoint")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="remove the default endpoint instead")] = False,
) -> None:
    """Set (or --clear) where the events of the tenant's tasks without a callback_url go."""
    from api.errors import ServiceError

    if clear == (url is not None):
        _fail("give either a URL or --clear")
    with _database() as session:
        tenant = _named(session, name)
        if clear:
            _endpoints(session).clear_url(tenant.id)
        else:
            try:
                _endpoints(session).set_url(tenant.id, url)
            except ServiceError as error:
                _fail(f"{url!r}: {error.message}")
    console.print(f"tenant [bold]{name}[/]: webhook endpoint {'removed' if clear else url}", highlight=False)


@tenants_app.command("rotate-secret")
def tenants_rotate_secret(name: str) -> None:
    """Make a new whsec_ secret and print it on stdout; the previous one keeps signing during
    FACEQUEUE_WEBHOOK_SECRET_GRACE."""
    from api.errors import ServiceError

    with _database() as session:
        tenant = _named(session, name)
        try:
            rotated = _endpoints(session).rotate_secret(tenant.id)
        except ServiceError as error:
            _fail(error.message)
    expires = rotated.previous_secret_expires_at
    previous = f"also signs until {_when(expires)}" if expires else "no longer signs"
    console.print(f"new secret for tenant [bold]{name}[/] (the previous one {previous}):", highlight=False)
    print(rotated.secret)
