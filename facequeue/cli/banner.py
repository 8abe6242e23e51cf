"""The few lines `serve` starts with: where to reach the service (API, docs, console) and where its data lives,
printed once the API answers."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from http.client import HTTPException

from rich.markup import escape

from facequeue.cli.console import announce
from facequeue.core.settings import Settings

# a service bound to every interface is reached from this machine on the loopback address
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}
# Seconds. The API answers within about 5 s of its start on a busy 2-core machine (its imports); a minute
# more is a server that is stuck, not slow.
STARTUP_TIMEOUT = 60.0
PROBE_TIMEOUT = 1.0  # /healthz is answered on the event loop in milliseconds
PROBE_INTERVAL = 0.1


def service_url(host: str, port: int) -> str:
    return f"http://{_ANY_ADDRESS.get(host, host)}:{port}"


class AnnounceWhenUp(threading.Thread):
    """Calls `on_up` (which prints the banner and the first key) once GET /healthz answers, never before: a script that
    waits for those lines can call the API at once. After STARTUP_TIMEOUT without an answer it says so and
    calls `give_up`. Set `server_ended` when the server stops, so a server that failed to start is not waited for.
    """

    def __init__(self, url: str, on_up: Callable[[], None], give_up: Callable[[], None]) -> None:
        super().__init__(name="announce-when-up", daemon=True)
        self.url = url
        self.on_up = on_up
        self.give_up = give_up
        self.up = False
        self.server_ended = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.server_ended.wait(PROBE_INTERVAL):
            if _answers(f"{self.url}/healthz"):
                self.up = True
                self.on_up()
                return
            if time.monotonic() > deadline:
                announce(
                    "api_startup_timeout",
                    f"[bold red]the API did not answer {escape(self.url)}/healthz within {STARTUP_TIMEOUT:.0f} s; "
                    "stopping[/]",
                    level="error",
                    url=self.url,
                    timeout=STARTUP_TIMEOUT,
                )
                self.give_up()
                return


# urllib, not httpx: httpx logs every request at INFO, and these probes are not the user's. No proxy from the
# environment stands between this process and its own port.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str) -> bool:
    try:
        with _DIRECT.open(url, timeout=PROBE_TIMEOUT) as response:
            return response.status == 200
    except (OSError, HTTPException):  # refused, timed out, an error status (HTTPError), a broken answer
        return False


def announce_service(settings: Settings, base: str, database: str) -> None:
    """`base` is the API's URL (service_url), `database` the database URL fit to print (its password hidden)."""
    data_dir = settings.data_dir.resolve()
    broker = settings.resolved_broker_url
    started = [name for name, url in (("Postgres", settings.database_url), ("Redis", settings.broker_url)) if not url]
    form = f"{' and '.join(started)} started in the data dir" if started else "on your Postgres and Redis"
    lines = [
        f"[bold]facequeue[/] ({form}); Ctrl-C stops it, --verbose shows each request and the worker's startup",
        f"  API      {escape(base)}",
        f"  docs     {escape(base)}/docs",
        f"  console  {escape(base)}/console",
        f"  data lives in [bold]{escape(str(data_dir))}[/]: "
        + escape(f"database {database}, broker {broker}, media {settings.media_dir}"),
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
        media=str(settings.media_dir),
    )
