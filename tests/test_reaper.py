"""The reaper under a backlog (issue 18): one pass at a time per deployment, and no copy of a task that merely
waits. Real Postgres, Redis and API processes; no worker runs, so every message stays in the broker."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import insert

from tests.support import REDIS_URL, REPO_ROOT, api_process, queue_key, wait_until

pytestmark = pytest.mark.integration

BACKLOG = 3000
HOLD_SECONDS = 8.0  # 40 passes per API process at 0.2 s: as many as 10 minutes at the default 15 s


def _rows(count: int, queue: str, url_tasks: bool, waited: timedelta) -> list[dict]:
    """Queued tasks submitted `2 * waited` ago and published `waited` ago: URL tasks (their message waits on
    Queue.FETCH) or uploads (on `queue`)."""
    from db.models import utcnow
    from facequeue.core.storage import upload_key

    now = utcnow()
    rows = []
    for _ in range(count):
        task_id = uuid.uuid4().hex
        source = {"source_url": f"http://127.0.0.1/{task_id}.jpg"} if url_tasks else {"upload_key": upload_key(task_id)}
        rows.append(
            {
                "id": task_id,
                "status": "queued",
                "queue": queue,
                "params": {},
                "created_at": now - 2 * waited,
                "published_at": now - waited,
                **source,
            }
        )
    return rows


def _store(rows: list[dict]) -> None:
    from db.models import DetectTask
    from facequeue.plumbing.sessions import session_scope

    with session_scope() as session:
        session.execute(insert(DetectTask), rows)


def _publish(rows: list[dict], url_tasks: bool) -> None:
    """One message each, as the submits that committed the rows sent."""
    from facequeue.core.settings import get_settings
    from facequeue.plumbing.broker import publish_detect

    for row in rows:
        publish_detect(row["id"], row["queue"], None, get_settings(), fetch_first=url_tasks)


def _message_counts(broker: redis.Redis, queue: str) -> Counter:
    """How many messages the queue's Redis list holds for each task id."""
    return Counter(json.loads(raw)["headers"]["argsrepr"] for raw in broker.lrange(queue_key(queue), 0, -1))


def _one_each(rows: list[dict]) -> Counter:
    return Counter(repr([row["id"]]) for row in rows)


def test_a_backlog_under_two_api_reapers_keeps_one_message_per_task(clean_state, tmp_path: Path) -> None:
    """3,000 queued tasks (1,500 URL tasks on the fetch queue, 1,500 uploads on default) with no worker,
    held while two API processes run their reaper loops: afterwards the broker holds exactly one message
    per task. Time is compressed: the rows were published 10 minutes ago (the old timer rule re-sent every
    task waiting over 60 s, so each would have been sent again at the first pass), and each reaper runs
    every 0.2 s instead of 15 s, for HOLD_SECONDS. Two lost messages, on queues the backlog leaves empty,
    show the reapers at work, before and after the hold: each is sent again exactly once."""
    from facequeue.core.settings import get_settings
    from facequeue.plumbing.broker import mark_broker_intact

    waited = timedelta(minutes=10)
    fetch_rows = _rows(BACKLOG // 2, "default", url_tasks=True, waited=waited)
    upload_rows = _rows(BACKLOG // 2, "default", url_tasks=False, waited=waited)
    _store(fetch_rows + upload_rows)
    _publish(fetch_rows, url_tasks=True)
    _publish(upload_rows, url_tasks=False)
    mark_broker_intact(get_settings())  # a running deployment's broker: nothing lost as a whole
    # committed marked published, never sent: an API killed between its commit and its publish
    lost_before_hold = _rows(1, "interactive", url_tasks=False, waited=waited)
    _store(lost_before_hold)
    broker = redis.Redis.from_url(REDIS_URL)

    with (
        api_process(tmp_path / "api-1.log", FACEQUEUE_REAPER_INTERVAL="0.2") as (_, first),
        api_process(tmp_path / "api-2.log", FACEQUEUE_REAPER_INTERVAL="0.2") as (_, second),
    ):
        wait_until(lambda: broker.llen(queue_key("interactive")), timeout=30, what="the lost message sent again")
        time.sleep(HOLD_SECONDS)  # the hold itself: nothing is awaited, the reapers run meanwhile
        lost_after_hold = _rows(1, "batch", url_tasks=False, waited=waited)
        _store(lost_after_hold)
        wait_until(lambda: broker.llen(queue_key("batch")), timeout=30, what="the second lost message sent again")
        assert first.poll() is None and second.poll() is None

    assert _message_counts(broker, "fetch") == _one_each(fetch_rows)
    assert _message_counts(broker, "default") == _one_each(upload_rows)
    assert _message_counts(broker, "interactive") == _one_each(lost_before_hold)
    assert _message_counts(broker, "batch") == _one_each(lost_after_hold)
    for log in ("api-1.log", "api-2.log"):
        text = (tmp_path / log).read_text(errors="replace")
        assert "reaper_failed" not in text and "reaper_waits_for_backend" not in text, text


def test_a_pass_runs_while_no_other_does(clean_state, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second pass, in this process or in `facequeue reap`, does nothing while one runs; the lock is free
    again after a pass, also one that failed."""
    from facequeue.core.settings import get_settings
    from facequeue.lifecycle import reaper
    from facequeue.plumbing.sessions import session_scope

    settings = get_settings()
    inside, release = threading.Event(), threading.Event()
    run_pass = reaper._reap_pass

    def held_pass(session, settings):
        inside.set()
        release.wait(timeout=30)
        return run_pass(session, settings)

    def reap_in_thread() -> None:
        with session_scope() as session:
            reports.append(reaper.reap(session, settings))

    reports: list = []
    monkeypatch.setattr(reaper, "_reap_pass", held_pass)
    running = threading.Thread(target=reap_in_thread)
    running.start()
    try:
        assert inside.wait(timeout=30)
        with session_scope() as session:
            assert reaper.reap(session, settings) is None  # the other pass holds the lock
        cli = subprocess.run(
            [sys.executable, "-m", "facequeue", "reap"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )
    finally:
        release.set()
        running.join(timeout=30)
    assert cli.returncode == 0, cli.stderr
    assert "another process is running a reaper pass: this one did nothing" in cli.stdout + cli.stderr
    assert len(reports) == 1 and isinstance(reports[0], reaper.ReapReport)

    def failing_pass(session, settings):
        raise RuntimeError("the pass dies")

    monkeypatch.setattr(reaper, "_reap_pass", failing_pass)
    with session_scope() as session, pytest.raises(RuntimeError, match="the pass dies"):
        reaper.reap(session, settings)
    monkeypatch.setattr(reaper, "_reap_pass", run_pass)
    with session_scope() as session:
        assert isinstance(reaper.reap(session, settings), reaper.ReapReport)  # released by the failed pass


def test_the_lock_has_one_holder(database) -> None:
    from db.engine import build_engine
    from db.locks import try_exclusive
    from facequeue.core.settings import get_settings

    engine = build_engine(get_settings())
    try:
        with try_exclusive(engine, 7) as first:
            with try_exclusive(engine, 7) as second, try_exclusive(engine, 8) as other_key:
                assert (first, second, other_key) == (True, False, True)
        with try_exclusive(engine, 7) as again:
            assert again
    finally:
        engine.dispose()


def test_a_waiting_webhook_attempt_is_sent_again_only_when_the_broker_lost_everything(clean_state) -> None:
    """An attempt due 10 minutes ago whose message waits in the queue (a slow webhook worker) is not copied; once
    Redis lost everything, it is sent again, once."""
    from sqlalchemy import select

    from db.models import WebhookEvent, utcnow
    from facequeue.core.settings import get_settings
    from facequeue.lifecycle.reaper import reap
    from facequeue.plumbing.broker import BROKER_SENTINEL_KEY, mark_broker_intact
    from facequeue.plumbing.sessions import session_scope

    settings = get_settings()
    long_ago = utcnow() - timedelta(minutes=10)
    with session_scope() as session:  # due 10 minutes ago, its message waiting in the queue since
        session.add(
            WebhookEvent(
                id="wh_waiting",
                task_id="t",
                type="detect_task.succeeded",
                url="http://127.0.0.1:9/hook",
                body="{}",
                state="pending",
                attempts=0,
                round_start=0,
                next_attempt_at=long_ago,
                published_at=long_ago,
                created_at=long_ago,
            )
        )
    mark_broker_intact(settings)
    with session_scope() as session:
        assert reap(session, settings).webhooks_republished == 0
    redis.Redis.from_url(REDIS_URL).delete(settings.broker_key_prefix + BROKER_SENTINEL_KEY)  # Redis lost it all
    with session_scope() as session:
        assert reap(session, settings).webhooks_republished == 1
    assert _message_counts(redis.Redis.from_url(REDIS_URL), "webhooks") == Counter({repr(["wh_waiting", 0]): 1})
    with session_scope() as session:
        assert session.scalar(select(WebhookEvent.published_at).where(WebhookEvent.id == "wh_waiting")) is not None
