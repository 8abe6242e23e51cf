"""Running the service: the API and the worker on their own (distributed form), or both on one machine
(`serve`, embedded form) with the worker kept alive by a supervisor (`worker_supervisor.py`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Annotated

import typer

from facequeue.cli.admin import migrate
from facequeue.cli.banner import AnnounceWhenUp, announce_service, service_url
from facequeue.cli.child_processes import EmbeddedStackError
from facequeue.cli.console import announce, fail, hide_request_lines, hide_startup_noise
from facequeue.cli.database import redact
from facequeue.cli.embedded_stack import embedded_stack, serve_claim
from facequeue.cli.worker_pools import FetchPoolChild, Pools, celery_argv, exit_with_parent
from facequeue.cli.worker_supervisor import WorkerSupervisor
from facequeue.core.enums import CPU_QUEUES
from facequeue.core.settings import Settings, get_settings
from facequeue.core.storage import ensure_data_dir

# uvicorn's loggers go through our root handler (facequeue/core/logs.py) instead of formatters of its own; the
# API's RequestIds middleware writes each request's line, so uvicorn's access log would only repeat it.
UVICORN_LOGGING: dict = {"log_config": None, "access_log": False, "log_level": "warning"}
DRAIN_MARGIN_SECONDS = 5.0


def uvicorn_options(settings: Settings) -> dict:
    """Told to stop, the API lets open requests finish: a synchronous compat call (FACEQUEUE_SYNC_TIMEOUT) at
    most. A task event stream lasts as long as its task, so it is cut then (its client resumes with
    Last-Event-ID) instead of holding the shutdown until the process is killed."""
    return {**UVICORN_LOGGING, "timeout_graceful_shutdown": settings.sync_timeout + DRAIN_MARGIN_SECONDS}


def api(
    host: str = "127.0.0.1",
    port: int = 8000,
    migrate_first: bool = typer.Option(False, "--migrate"),
    workers: Annotated[int, typer.Option(help="API processes (each serves requests; one per core is typical)")] = 1,
) -> None:
    """Run the HTTP API only (distributed form)."""
    import uvicorn

    from facequeue.core.logs import configure_logging
    from facequeue.plumbing.exposition import use_private_multiprocess_dir

    if workers > 1:  # /metrics, whichever process answers it, adds up every API process's counters
        use_private_multiprocess_dir("api")
    configure_logging(get_settings())
    if migrate_first:
        migrate()
    uvicorn.run(
        "api.app:create_app", factory=True, host=host, port=port, workers=workers, **uvicorn_options(get_settings())
    )


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="CPU pool processes, default FACEQUEUE_WORKER_CONCURRENCY (--pools fetch: threads, default "
            "FACEQUEUE_FETCH_POOL_THREADS)"
        ),
    ] = None,
    queues: Annotated[str, typer.Option(help="the CPU pool's queues, highest priority first")] = ",".join(CPU_QUEUES),
    name: str = "facequeue@%h",
    pools: Annotated[
        Pools,
        typer.Option(help="both: detection here and downloads in a child process; cpu or fetch: that pool alone"),
    ] = Pools.BOTH,
    quiet: Annotated[
        bool, typer.Option("--quiet", help="no Celery banner, no warnings about the broker's hostname or root")
    ] = False,
    child_of: Annotated[int | None, typer.Option(hidden=True)] = None,  # the worker that started this fetch pool
    in_serve: Annotated[bool, typer.Option(hidden=True)] = False,  # `serve`'s worker: metrics in serve's folder
) -> None:
    """Run a Celery worker (distributed form): detection, and a fetch pool downloading tasks' URLs."""
    from facequeue.plumbing.exposition import use_private_multiprocess_dir

    if pools != Pools.FETCH:
        require_execution_providers(get_settings())

    if child_of is None and not in_serve:  # a fetch pool started by its worker writes to that worker's folder
        use_private_multiprocess_dir("worker")  # before the imports below load prometheus_client, and the pool forks
    fetch_pool = FetchPoolChild(name, quiet) if pools == Pools.BOTH else None
    if fetch_pool is not None:
        fetch_pool.start()  # before the imports below, which it then makes at the same time
    from facequeue.core.logs import configure_logging
    from workers.celery_app import worker_app

    settings = get_settings()
    configure_logging(settings)
    if quiet:
        hide_startup_noise()
    if pools == Pools.FETCH:
        if child_of is not None:
            exit_with_parent(child_of)
        argv = celery_argv(pools, concurrency or settings.fetch_pool_threads, queues, name, quiet, settings)
        worker_app().worker_main(argv)
        return
    try:
        worker_app().worker_main(
            celery_argv(pools, concurrency or settings.worker_concurrency, queues, name, quiet, settings)
        )
    finally:
        if fetch_pool is not None:
            fetch_pool.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    demo: Annotated[
        bool, typer.Option(help="once up, detect faces in a generated demo video and print the result")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="also show a line per request, Celery's banner, migrations and the libraries' start warnings",
        ),
    ] = False,
) -> None:
    """Run everything on one machine: migrations, API, a worker pool; without FACEQUEUE_DATABASE_URL and
    FACEQUEUE_BROKER_URL, on a Postgres and a Redis it starts in the data dir and stops with it."""
    from facequeue.core.logs import configure_logging
    from facequeue.plumbing.exposition import use_private_multiprocess_dir

    # One folder for the API and the worker's processes, so one scrape of the API's /metrics shows them all.
    use_private_multiprocess_dir("serve")
    settings = get_settings()
    configure_logging(settings)
    require_execution_providers(settings)  # before the supervisor would restart a failing worker forever
    if not verbose:
        hide_startup_noise()
        # a client polling a task would fill the terminal; FACEQUEUE_LOG_LEVEL, when set, decides as everywhere
        if settings.log_format == "console" and "log_level" not in settings.model_fields_set:
            hide_request_lines()
    ensure_data_dir(settings)
    # uvicorn re-raises the SIGTERM it shut down on once it returns; as SystemExit the `finally`s still run and
    # stop the worker and the embedded servers, instead of the default action ending this process first.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    # A shell starts a background job with SIGINT ignored. uvicorn stops on SIGINT all the same, then raises it again:
    # with the default handler serve ends as after Ctrl-C (130, its `finally`s run), not as a clean exit (0).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with serve_claim(settings), embedded_stack(settings):
            watch = _run(settings, host, port, demo, verbose)
    except EmbeddedStackError as error:
        fail(str(error))
    if not watch.up:  # stopped by the watch
        raise typer.Exit(1)


def _run(settings: Settings, host: str, port: int, demo: bool, verbose: bool) -> AnnounceWhenUp:
    """Migrations, the worker, then the API until it stops; the worker is stopped before the embedded servers."""
    import uvicorn

    migrate()
    # The worker's exporter would serve the same folder as the API's /metrics: two targets, everything counted twice.
    worker_env = {**os.environ, "FACEQUEUE_WORKER_METRICS_PORT": "0"}
    worker_command = [sys.executable, "-m", "facequeue", "worker", "--name", "embedded@%h", "--in-serve"]
    worker = WorkerSupervisor(worker_command + ([] if verbose else ["--quiet"]), worker_env)
    worker.start()
    server = uvicorn.Server(
        uvicorn.Config("api.app:create_app", factory=True, host=host, port=port, **uvicorn_options(settings))
    )
    base = service_url(host, port)
    demos: list[subprocess.Popen] = []

    def when_up() -> None:
        # the first key is made only now: made before a start that fails (the port is taken), it was never shown
        first_key = _make_first_key(settings)
        announce_service(settings, base, redact(settings.resolved_database_url))
        _announce_keys(settings, first_key)
        if demo:
            demo_env = {**os.environ, **({"FACEQUEUE_API_KEY": first_key} if first_key else {})}
            demos.append(subprocess.Popen([sys.executable, "-m", "facequeue", "demo", "--server", base], env=demo_env))

    watch = AnnounceWhenUp(base, when_up, give_up=lambda: setattr(server, "should_exit", True))
    watch.start()
    try:
        server.run()  # a start that fails (the port is taken) logs why and exits non-zero
    finally:
        watch.server_ended.set()
        worker.stop()
        for demo_process in demos:
            if demo_process.poll() is None:
                demo_process.send_signal(signal.SIGTERM)
                demo_process.wait(timeout=30)
        if watch.up:
            announce("service_stopped", "facequeue stopped")
        else:
            announce("service_never_up", "[bold red]facequeue stopped: its API never answered[/]", level="error")
    return watch


def require_execution_providers(settings: Settings) -> None:
    """Exit with one line naming what to install when FACEQUEUE_EXECUTION_PROVIDERS asks for a provider this
    ONNX Runtime lacks: at start, not at the first task."""
    from workers.runtimes import ExecutionProviderError, onnx_providers

    try:
        onnx_providers(settings.execution_providers)
    except ExecutionProviderError as error:
        fail(str(error))


def _make_first_key(settings: Settings) -> str | None:
    """On first start with auth on, a key for tenant 'default', so the service is usable at once (None: auth is
    off, or keys exist)."""
    if settings.auth == "off":
        return None
    from db import tenants
    from facequeue.plumbing.sessions import session_scope

    with session_scope() as session:
        if tenants.any_key_exists(session):
            return None
        _, key = tenants.create_key(session, tenants.get_or_create_tenant(session, "default"))
    return key


def _announce_keys(settings: Settings, first_key: str | None) -> None:
    """Below the banner, once the API answers: the first key is printed this once and never again."""
    from facequeue.core.logs import ShownOnPurpose

    if settings.auth == "off":
        announce(
            "auth_off",
            "[bold red]WARNING: FACEQUEUE_AUTH=off — every request is served without an API key.[/]",
            level="warning",
        )
    elif first_key is None:
        announce("api_keys_exist", "  API keys: `facequeue keys create --tenant NAME` makes one")
    else:
        announce(
            "first_api_key",
            f"  first API key, for tenant 'default' (shown once, store it now): [bold]{first_key}[/]",
            level="warning",
            tenant="default",
            api_key=ShownOnPurpose(first_key),  # every other line has keys redacted (facequeue/core/logs.py)
        )


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)
