"""The `facequeue` command: run the service (embedded or as separate parts) and talk to it."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from facequeue.settings import get_settings
from workers.celery_app import QUEUES

app = typer.Typer(help="facequeue: asynchronous face detection", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create, list, revoke", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)

FINAL = {"succeeded", "failed", "canceled"}


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    from db.migrate import upgrade_to_head

    settings = get_settings()
    upgrade_to_head(settings.resolved_database_url)
    console.print(f"database at [bold]{_redact(settings.resolved_database_url)}[/] is up to date")


@app.command()
def api(
    host: str = "127.0.0.1",
    port: int = 8000,
    migrate_first: bool = typer.Option(False, "--migrate"),
    workers: Annotated[int, typer.Option(help="API processes (each serves requests; one per core is typical)")] = 1,
) -> None:
    """Run the HTTP API only (distributed form)."""
    import uvicorn

    if migrate_first:
        migrate()
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, log_level="warning", workers=workers)


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="pool processes; default FACEQUEUE_WORKER_CONCURRENCY")
    ] = None,
    queues: str = ",".join(QUEUES),
    name: str = "facequeue@%h",
) -> None:
    """Run a Celery worker (distributed form)."""
    from facequeue.logs import configure_logging
    from workers.celery_app import get_celery

    settings = get_settings()
    configure_logging(settings)
    get_celery().worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level}",
            f"--concurrency={concurrency or settings.worker_concurrency}",
            f"--queues={queues}",
            f"--hostname={name}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    demo: Annotated[
        bool, typer.Option(help="once up, detect faces in a generated demo video and print the result")
    ] = False,
) -> None:
    """Run everything on one machine: migrations, API, a worker pool (embedded default: SQLite + filesystem broker)."""
    import uvicorn

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate()
    console.print(
        f"data lives in [bold]{settings.data_dir.resolve()}[/]: database {_redact(settings.resolved_database_url)}, "
        f"broker {settings.resolved_broker_url}{' ' + str(settings.broker_folder) if settings.is_embedded else ''}, "
        f"media {settings.media_dir}"
    )
    first_key = _first_key(settings)
    worker = WorkerSupervisor([sys.executable, "-m", "facequeue", "worker", "--name", "embedded@%h"])
    worker.start()
    demo_process = None
    if demo:
        demo_env = {**os.environ, **({"FACEQUEUE_API_KEY": first_key} if first_key else {})}
        demo_process = subprocess.Popen(
            [sys.executable, "-m", "facequeue", "demo", "--server", f"http://{host}:{port}"], env=demo_env
        )
    # uvicorn re-raises the SIGTERM it shut down on once it returns; as SystemExit the `finally` below still
    # runs and stops the worker, instead of the default action ending this process and orphaning it.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run("api.app:create_app", factory=True, host=host, port=port, log_level="warning")
    finally:
        worker.stop()
        if demo_process is not None and demo_process.poll() is None:
            demo_process.send_signal(signal.SIGTERM)
            demo_process.wait(timeout=30)


WORKER_STOP_TIMEOUT = 30.0


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


class WorkerSupervisor(threading.Thread):
    """Keeps the embedded worker running: a worker that dies (killed, out of memory, a crash) is started
    again, and the pool processes it left behind are killed; its tasks are recovered by the reaper like
    any lost worker's."""

    def __init__(self, command: list[str]) -> None:
        super().__init__(name="worker-supervisor", daemon=True)
        self.command = command
        self.process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # stop() never misses a worker started at the same moment

    def run(self) -> None:
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                # its own process group, so stop() can end the pool processes with it
                self.process = subprocess.Popen(self.command, start_new_session=True)
            code = self.process.wait()
            if not self._stopping.is_set():
                _kill_group(self.process.pid)  # pool processes a killed worker left behind
                console.print(f"[bold red]worker exited with code {code}; starting a new one[/]")
                self._stopping.wait(1)

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish first
            try:
                process.wait(timeout=WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                console.print("[bold red]worker did not stop in time; killing it (the reaper re-runs its tasks)[/]")
        _kill_group(process.pid)  # whatever is left of it
        process.wait()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="tenant name; created when new")],
    credits: Annotated[int | None, typer.Option(help="set the tenant's credit balance (default: unlimited)")] = None,
    rate: Annotated[str | None, typer.Option(help="rate limit of this key, e.g. 10/second")] = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from db import tenants
    from db.engine import session_scope

    if rate is not None:
        _check_rate(rate)
    with session_scope() as session:
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
    from db.engine import session_scope

    table = Table("prefix", "tenant", "credits", "rate", "created", "revoked")
    with session_scope() as session:
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
    from db.engine import session_scope

    with session_scope() as session:
        count = tenants.revoke_key(session, prefix_or_id)
    if count == 0:
        console.print(f"[red]no active key {prefix_or_id}[/]")
        raise typer.Exit(1)
    console.print(f"revoked {count} key(s)")


@app.command()
def maintenance(state: Annotated[str, typer.Argument(help="on or off")]) -> None:
    """Turn maintenance mode on (new work answers 455; polling still works) or off, for every API process."""
    from api.service import MAINTENANCE_FLAG
    from db import tenants
    from db.engine import session_scope

    if state not in ("on", "off"):
        raise typer.BadParameter("state must be on or off")
    with session_scope() as session:
        tenants.set_flag(session, MAINTENANCE_FLAG, state)
    console.print(f"maintenance {state}")


def _first_key(settings) -> str | None:
    """On first start with auth on, make a key so the service is usable at once; print it once."""
    if settings.auth == "off":
        console.print("[bold red]WARNING: FACEQUEUE_AUTH=off — every request is served without an API key.[/]")
        return None
    from db import tenants
    from db.engine import session_scope

    with session_scope() as session:
        if tenants.any_key_exists(session):
            return os.environ.get("FACEQUEUE_API_KEY")
        _, key = tenants.create_key(session, tenants.get_or_create_tenant(session, "default"))
    console.print(f"first API key, for tenant 'default' (shown once, store it now): [bold]{key}[/]")
    return key


@app.command("webhook-secret")
def webhook_secret() -> None:
    """Print the whsec_ secret that signs webhooks of tasks without a tenant (FACEQUEUE_AUTH=off)."""
    from facequeue.webhooks import default_secret

    print(default_secret(get_settings()))


@app.command()
def reap() -> None:
    """Run the reaper once: re-publish lost messages, re-queue or fail tasks whose worker died."""
    from db.engine import session_scope
    from workers.reaper import reap as reap_once

    with session_scope() as session:
        report = reap_once(session, get_settings())
    console.print(vars(report))


@app.command()
def detect(
    path_or_url: str,
    server: str = typer.Option("http://127.0.0.1:8000", envvar="FACEQUEUE_SERVER"),
    api_key: str | None = typer.Option(None, envvar="FACEQUEUE_API_KEY", help="sent as Authorization: Bearer"),
    num_frames: int = 5,
    single_face: bool = False,
    timeout: float = 600.0,
) -> None:
    """Submit an image or video (local path or URL), wait, and print the result JSON."""
    body: dict = {"num_frames": num_frames, "single_face": single_face}
    if path_or_url.startswith(("http://", "https://")):
        body["url"] = path_or_url
    else:
        body["img"] = base64.b64encode(Path(path_or_url).read_bytes()).decode()
    task = _submit_and_wait(server, body, timeout, api_key)
    print(json.dumps(task, indent=2))
    if task["status"] != "succeeded":
        raise typer.Exit(1)


@app.command()
def demo(
    server: str = "http://127.0.0.1:8000",
    timeout: float = 300.0,
    api_key: str | None = typer.Option(None, envvar="FACEQUEUE_API_KEY", help="sent as Authorization: Bearer"),
) -> None:
    """Detect faces in a generated clip of a real face moving across the frame."""
    from facequeue.demo import write_demo_video

    video = write_demo_video(get_settings().data_dir / "demo.mp4")
    _wait_until_ready(server, timeout=60)
    console.print(f"submitting demo video [bold]{video}[/]")
    body = {"img": base64.b64encode(video.read_bytes()).decode(), "num_frames": 5}
    task = _submit_and_wait(server, body, timeout, api_key)
    print(json.dumps(task, indent=2))


def _wait_until_ready(server: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise typer.Exit(f"{server} did not become ready within {timeout:.0f}s")


def _submit_and_wait(server: str, body: dict, timeout: float, api_key: str | None) -> dict:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=server, timeout=30, headers=headers) as client:
        response = client.post("/v1/detect", json=body)
        if response.status_code != 202:
            console.print(f"[red]submit failed ({response.status_code}):[/] {response.text}")
            raise typer.Exit(1)
        task_id = response.json()["detect_task_id"]
        console.print(f"task [bold]{task_id}[/] queued")
        deadline = time.monotonic() + timeout
        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=console) as bar:
            progress = bar.add_task("queued", total=None)
            while time.monotonic() < deadline:
                task = client.get(f"/v1/detect/{task_id}").json()
                bar.update(
                    progress,
                    description=task["status"],
                    completed=task["progress"]["done"],
                    total=task["progress"]["total"] or None,
                )
                if task["status"] in FINAL:
                    return task
                time.sleep(0.25)
    console.print(f"[red]task {task_id} did not finish within {timeout:.0f}s[/]")
    raise typer.Exit(1)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
