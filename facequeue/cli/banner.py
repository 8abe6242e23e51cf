"""The few lines `serve` starts with: where to reach the service (API, docs, console) and where its data lives."""

from __future__ import annotations

from rich.markup import escape

from facequeue.cli.console import announce
from facequeue.settings import Settings

# a service bound to every interface is reached from this machine on the loopback address
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}


def announce_service(settings: Settings, host: str, port: int, database: str) -> None:
    """`database` is the database URL fit to print (its password hidden)."""
    base = f"http://{_ANY_ADDRESS.get(host, host)}:{port}"
    data_dir = settings.data_dir.resolve()
    broker = settings.resolved_broker_url
    broker_folder = settings.broker_folder if settings.is_embedded else None
    form = "embedded: SQLite and a filesystem broker" if settings.is_embedded else "distributed"
    lines = [
        f"[bold]facequeue[/] ({form}); Ctrl-C stops it, --verbose shows the worker's startup logs",
        f"  API      {escape(base)}",
        f"  docs     {escape(base)}/docs",
        f"  console  {escape(base)}/console",
        f"  data lives in [bold]{escape(str(data_dir))}[/]: "
        + escape(
            f"database {database}, broker {broker}{f' {broker_folder}' if broker_folder else ''}, "
            f"media {settings.media_dir}"
        ),
    ]
    announce(
        "service_started",
        "\n".join(lines),
        url=base,
        docs=f"{base}/docs",
        console=f"{base}/console",
        data_dir=str(data_dir),
        database=database,
        broker=broker,
        broker_folder=str(broker_folder) if broker_folder else None,
        media=str(settings.media_dir),
    )
