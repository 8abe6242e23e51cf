"""`facequeue tenants`: an operator sees tenants and manages their webhook endpoint and secret, as a tenant
does with its key through /v1/webhook-endpoint (the same service does both)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from facequeue.cli.console import console, fail
from facequeue.cli.database import operator_session
from facequeue.core.durations import DURATION_UNITS, parse_duration
from facequeue.core.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from api.services.webhook_endpoints import WebhookEndpointService
    from db.models import Tenant

tenants_app = typer.Typer(
    help="Tenants: list, show, set their webhook endpoint, rotate their secret, set their retention",
    no_args_is_help=True,
)


def _named(session: Session, name: str) -> Tenant:
    from db import tenants

    tenant = tenants.find_tenant(session, name)
    if tenant is None:
        fail(f"no tenant named {name!r} (`facequeue tenants list` shows them)")
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
    with operator_session() as session:
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

    with operator_session() as session:
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
            "retention": _retention(tenant.retention_seconds),
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
        fail("give either a URL or --clear")
    with operator_session() as session:
        tenant = _named(session, name)
        if clear:
            _endpoints(session).clear_url(tenant.id)
        else:
            try:
                _endpoints(session).set_url(tenant.id, url)
            except ServiceError as error:
                fail(f"{url!r}: {error.message}")
    console.print(f"tenant [bold]{name}[/]: webhook endpoint {'removed' if clear else url}", highlight=False)


@tenants_app.command("rotate-secret")
def tenants_rotate_secret(name: str) -> None:
    """Make a new whsec_ secret and print it on stdout; the previous one keeps signing during
    FACEQUEUE_WEBHOOK_SECRET_GRACE."""
    from api.errors import ServiceError

    with operator_session() as session:
        tenant = _named(session, name)
        try:
            rotated = _endpoints(session).rotate_secret(tenant.id)
        except ServiceError as error:
            fail(error.message)
    expires = rotated.previous_secret_expires_at
    previous = f"also signs until {_when(expires)}" if expires else "no longer signs"
    console.print(f"new secret for tenant [bold]{name}[/] (the previous one {previous}):", highlight=False)
    print(rotated.secret)


@tenants_app.command("set-retention")
def tenants_set_retention(
    name: str,
    duration: Annotated[
        str | None, typer.Argument(help="how long its final tasks are kept: 30d, 720h, 15m or seconds")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="keep them FACEQUEUE_RETENTION instead")] = False,
) -> None:
    """Set (or --clear) how long the tenant's final tasks, results, crops and webhook log are kept; the
    reaper purges them after that."""
    from db import retention

    if clear == (duration is not None):
        fail("give either a duration or --clear")
    try:
        seconds = None if clear else parse_duration(duration)
    except ValueError as error:
        fail(str(error))
    with operator_session() as session:
        retention.set_tenant_retention(session, _named(session, name).id, seconds)
    console.print(f"tenant [bold]{name}[/]: final tasks kept {_retention(seconds)}", highlight=False)


def _retention(seconds: int | None) -> str:
    if seconds is None:
        return f"{_duration(get_settings().retention)} (default)"
    return _duration(seconds)


def _duration(seconds: int) -> str:
    """In the largest unit that divides it: 30d, 36h, 90s."""
    unit, size = next((unit, size) for unit, size in reversed(DURATION_UNITS.items()) if seconds % size == 0)
    return f"{seconds // size}{unit}"
