"""One distributed facequeue per test, run as real processes with the `facequeue` command against the
private Postgres and Redis, with a tenant whose webhooks go to a real receiver."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook, WebhookVerificationError
from werkzeug import Request, Response

from facequeue.plumbing.broker import BROKER_SENTINEL_KEY
from tests.faults.servers import FACEQUEUE, FacequeueProcess, PrivatePostgres, PrivateRedis
from tests.support import FINAL_STATUSES, free_port, wait_until

TENANT = "faults"
INITIAL_CREDITS = 1_000_000
KEY_RATE = "1000/second"  # bursts are the point here, not the rate limiter
WORKER_NAME = "faults@%h"  # the same on every restart, as a supervisor would start it
QUEUES = ("interactive", "default", "webhooks", "batch", "fetch")  # every queue a task's message can wait in
HTTP_TIMEOUT = 10.0  # a request slower than this counts as hung
STALL_BOUND = 45.0  # three reaper passes (every 15 s by default) in which no task moved


@dataclass(frozen=True)
class ReceivedEvent:
    webhook_id: str
    task_id: str
    status: str


@dataclass
class WebhookReceiver:
    """The tenant's webhook endpoint: checks each signature and records the event; always answers 204."""

    secret: str
    events: list[ReceivedEvent] = field(default_factory=list)
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Request) -> Response:
        body = request.get_data()
        try:
            event = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:  # counted, never trusted
            with self._lock:
                self.rejected += 1
            return Response(status=400)
        data = event["data"]
        with self._lock:
            self.events.append(ReceivedEvent(request.headers["webhook-id"], data["detect_task_id"], data["status"]))
        return Response(status=204)

    def webhook_ids_by_task(self) -> dict[str, set[str]]:
        by_task: dict[str, set[str]] = {}
        with self._lock:
            for event in self.events:
                by_task.setdefault(event.task_id, set()).add(event.webhook_id)
        return by_task


@dataclass
class SubmitResult:
    sent_at: float  # monotonic
    latency: float
    status: int | None  # None: no answer (connection refused or reset, or HTTP_TIMEOUT passed)
    headers: httpx.Headers | None = None
    body: Any = None
    error: str | None = None
    idempotency_key: str | None = None

    @property
    def task_id(self) -> str | None:
        return self.body["detect_task_id"] if self.status == 202 else None

    @property
    def replayed(self) -> bool:
        """The key's task already existed: an earlier attempt committed it without getting its answer."""
        return self.status == 202 and self.headers.get("idempotent-replayed") == "true"


@dataclass(frozen=True)
class FinalWait:
    seconds: float | None  # until every task was final; None if they were not
    gave_up: str = ""

    def describe(self, after: str) -> str:
        if self.seconds is not None:
            return f"all final {self.seconds:.1f}s after {after}"
        return f"not all final ({self.gave_up})"


class FaultStack:
    def __init__(self, postgres: PrivatePostgres, redis: PrivateRedis, workdir: Path, webhooks: HTTPServer) -> None:
        self.postgres, self.redis, self.workdir = postgres, redis, workdir
        self.database = f"faults_{uuid.uuid4().hex[:10]}"
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.api: FacequeueProcess | None = None
        self.worker: FacequeueProcess | None = None
        self._starts: dict[str, int] = {}
        # Only what a distributed deployment must set; every reliability setting keeps its default.
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("FACEQUEUE_")} | {
            "FACEQUEUE_DATABASE_URL": postgres.url(self.database, "postgresql+psycopg"),
            "FACEQUEUE_BROKER_URL": redis.url,
            "FACEQUEUE_DATA_DIR": str(workdir / "data"),
            "FACEQUEUE_ALLOWED_HOSTS": "127.0.0.1",  # media and webhook receiver are on loopback
            "FACEQUEUE_PUBLIC_BASE_URL": self.base_url,
        }
        postgres.create_database(self.database)
        self.cli("migrate")
        self.key = self.cli(
            "keys", "create", "--tenant", TENANT, "--credits", str(INITIAL_CREDITS), "--rate", KEY_RATE
        ).strip()
        with self.db() as connection:
            tenant = connection.execute(
                "UPDATE tenants SET webhook_url = %s WHERE name = %s RETURNING id, webhook_secrets",
                (webhooks.url_for("/hooks"), TENANT),
            ).fetchone()
        self.tenant_id = tenant["id"]
        self.receiver = WebhookReceiver(tenant["webhook_secrets"][0])
        webhooks.expect_request("/hooks", method="POST").respond_with_handler(self.receiver)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [FACEQUEUE, *args], env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"facequeue {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    def _process(self, kind: str, args: list[str]) -> FacequeueProcess:
        count = self._starts[kind] = self._starts.get(kind, 0) + 1
        return FacequeueProcess(f"{kind}{count}", args, self.env, self.workdir)

    def start_api(self) -> None:
        self.api = self._process("api", ["api", "--host", "127.0.0.1", "--port", str(self.api_port)])
        deadline = time.monotonic() + 60
        while not self._serving():
            if not self.api.running() or time.monotonic() > deadline:
                raise RuntimeError(f"API did not start serving:\n{self.api.log()[-3000:]}")
            time.sleep(0.1)
        # One request before any burst: concurrent first requests race in the rate limiter's lazy import of
        # redis and get 500 (seen with the machine's load at 8 to 20); that is not what these tests measure.
        with self.client() as client:
            client.get("/v1/detect", params={"limit": 1}).raise_for_status()
        # The API's first reaper pass marks the emptied broker intact. Before it every queued task counts as lost
        # with the broker, so a burst submitted meanwhile would be published twice.
        wait_until(lambda: self.redis.client().exists(BROKER_SENTINEL_KEY), timeout=60, what="the first reaper pass")

    def _serving(self) -> bool:
        """Liveness, not /readyz: readiness also wants a worker, and the API may be started before one."""
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self) -> None:
        self.worker = self._process("worker", ["worker", "--concurrency", "2", "--name", WORKER_NAME])
        self.worker.wait_for_log("worker_ready")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self._auth(), timeout=HTTP_TIMEOUT)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def submit(self, body: dict) -> str:
        with self.client() as client:
            response = client.post("/v1/detect", json=body)
        assert response.status_code == 202, response.text
        return response.json()["detect_task_id"]

    def submit_all(
        self,
        bodies: list[dict],
        concurrency: int,
        after_each: Callable[[SubmitResult], bool] | None = None,
        idempotency_keys: list[str] | None = None,
    ) -> list[SubmitResult]:
        """POST every body, `concurrency` at a time; `after_each` returning False stops sending more."""
        keys = idempotency_keys or [None] * len(bodies)
        return asyncio.run(self._submit_all(list(zip(bodies, keys, strict=True)), concurrency, after_each))

    async def _submit_all(self, requests, concurrency, after_each) -> list[SubmitResult]:
        results: list[SubmitResult] = []
        pending = iter(requests)
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=self._auth(), timeout=HTTP_TIMEOUT, limits=limits
        ) as client:

            async def sender() -> None:
                for body, key in pending:
                    if stop.is_set():
                        return
                    result = await post_detect(client, body, key)
                    results.append(result)
                    if after_each is not None and not after_each(result):
                        stop.set()

            await asyncio.gather(*(sender() for _ in range(concurrency)))
        return results

    def db(self) -> psycopg.Connection:
        return psycopg.connect(
            self.postgres.url(self.database), autocommit=True, connect_timeout=5, row_factory=dict_row
        )

    def tasks(self) -> dict[str, dict]:
        with self.db() as connection:
            rows = connection.execute(
                "SELECT id, status, attempts, progress_done, cost, credit_state, started_at, heartbeat_at, error_code,"
                " (result->>'frame_count')::int AS frame_count FROM detect_tasks"
            ).fetchall()
        return {row["id"]: row for row in rows}

    def wait_final(self, task_ids: Iterable[str], bound: float, since: float | None = None) -> float | None:
        """Seconds from `since` (monotonic; default now) until every task is final, or None (see wait_for_final)."""
        return self.wait_for_final(task_ids, bound, since).seconds

    def wait_for_final(self, task_ids: Iterable[str], bound: float, since: float | None = None) -> FinalWait:
        """Wait until every task is final; give up after `bound` seconds, or after STALL_BOUND with no task
        changing status, attempt, progress or heartbeat: on a busy machine slow work still moves, while what is
        left then is stuck."""
        wanted, started = set(task_ids), time.monotonic()
        moved_at, previous = started, None
        while True:
            tasks = self.tasks()
            now = time.monotonic()
            if all(tasks[task_id]["status"] in FINAL_STATUSES for task_id in wanted):
                return FinalWait(now - (started if since is None else since))
            snapshot = {
                task_id: (task["status"], task["attempts"], task["progress_done"], task["heartbeat_at"])
                for task_id, task in tasks.items()
            }
            if snapshot != previous:
                moved_at, previous = now, snapshot
            if now - moved_at > STALL_BOUND:
                return FinalWait(None, f"no task moved for {STALL_BOUND:.0f}s")
            if now - started > bound:
                return FinalWait(None, f"still moving when the {bound:.0f}s bound passed")
            time.sleep(0.5)

    def close(self) -> None:
        for process in (self.api, self.worker):
            if process is not None:
                process.stop()
        if self.postgres.accepts_connections():
            self.postgres.drop_database(self.database)


async def post_detect(client: httpx.AsyncClient, body: dict, idempotency_key: str | None = None) -> SubmitResult:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    sent_at = time.monotonic()
    try:
        response = await client.post("/v1/detect", json=body, headers=headers)
    except httpx.HTTPError as error:
        return SubmitResult(
            sent_at, time.monotonic() - sent_at, None, error=type(error).__name__, idempotency_key=idempotency_key
        )
    try:
        payload = response.json()
    except ValueError:
        payload = response.text
    return SubmitResult(
        sent_at, time.monotonic() - sent_at, response.status_code, response.headers, payload, None, idempotency_key
    )
