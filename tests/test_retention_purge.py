"""Retention purges on the test Postgres with real storage (the local backend, and S3 through moto's server):
old final tasks go with their objects, webhook events, delivery attempts and emptied batches, in bounded
batches; live and recent tasks stay; a tenant's own retention wins; a pass cut short is finished by the next
one with nothing orphaned."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Batch, DetectTask, Tenant, WebhookDelivery, WebhookEvent, utcnow
from facequeue.core.settings import Settings
from facequeue.core.storage import LocalStorage, MediaStorage, get_storage, task_prefix
from facequeue.lifecycle.retention import PurgeReport, purge_expired
from facequeue.plumbing.sessions import get_sessionmaker, session_scope
from tests.test_storage import s3_settings  # noqa: F401  (moto's S3 server, a fixture)

OBJECTS = ("upload", "crops/0-0.jpg", "previews/frame-0.jpg")


@pytest.fixture
def sessions(clean_state: None) -> sessionmaker[Session]:
    return get_sessionmaker()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media", b"k" * 32, url_ttl=60)


def settings(retention: str) -> Settings:
    return Settings(_env_file=None, retention=retention)


def add_task(
    session: Session,
    storage: MediaStorage,
    status: str,
    finished_ago: timedelta | None,
    tenant_id: str | None = None,
    batch_id: str | None = None,
) -> str:
    """A task with its stored objects, one webhook event and two delivery attempts."""
    now = utcnow()
    task_id = uuid.uuid4().hex[:24]
    finished_at = now - finished_ago if finished_ago is not None else None
    session.add(
        DetectTask(
            id=task_id,
            tenant_id=tenant_id,
            status=status,
            batch_id=batch_id,
            created_at=now - timedelta(days=90),
            finished_at=finished_at,
            upload_key=f"{task_prefix(task_id)}/upload" if finished_at is None else None,
            result={"faces_obj": {}} if status == "succeeded" else None,
        )
    )
    add_webhook_log(session, task_id, tenant_id)
    for name in OBJECTS:
        storage.put_bytes(f"{task_prefix(task_id)}/{name}", b"face bytes")
    return task_id


def add_webhook_log(session: Session, subject_id: str, tenant_id: str | None) -> None:
    event_id = "msg_" + uuid.uuid4().hex
    session.add(
        WebhookEvent(id=event_id, task_id=subject_id, tenant_id=tenant_id, type="t", url="https://h", body="{}")
    )
    for attempt in (1, 2):
        session.add(
            WebhookDelivery(
                event_id=event_id,
                task_id=subject_id,
                tenant_id=tenant_id,
                url="https://h",
                attempt=attempt,
                status_code=500,
                latency_ms=3,
            )
        )


def add_tenant(session: Session, retention_seconds: int | None) -> str:
    tenant = Tenant(name=f"rt-{uuid.uuid4().hex[:10]}", webhook_secrets=[], retention_seconds=retention_seconds)
    session.add(tenant)
    session.flush()
    return tenant.id


def stored(storage: MediaStorage, task_id: str) -> list[str]:
    """Which of the task's objects are still stored."""
    return [name for name in OBJECTS if _exists(storage, f"{task_prefix(task_id)}/{name}")]


def _exists(storage: MediaStorage, key: str) -> bool:
    try:
        storage.read_bytes(key)
    except FileNotFoundError:
        return False
    return True


def left(session: Session, ids: list[str]) -> dict[str, set[str]]:
    """Which of `ids` still have a task, batch, webhook event or delivery attempt row."""
    return {
        "tasks": set(session.scalars(select(DetectTask.id).where(DetectTask.id.in_(ids)))),
        "batches": set(session.scalars(select(Batch.id).where(Batch.id.in_(ids)))),
        "events": set(session.scalars(select(WebhookEvent.task_id).where(WebhookEvent.task_id.in_(ids)))),
        "deliveries": set(session.scalars(select(WebhookDelivery.task_id).where(WebhookDelivery.task_id.in_(ids)))),
    }


def test_old_final_tasks_go_with_everything_theirs_in_bounded_batches(sessions, storage) -> None:
    hour = timedelta(hours=1)
    with sessions() as session:
        batch = Batch(id="bt_" + uuid.uuid4().hex[:20], total=2, finished_at=utcnow() - 2 * hour)
        session.add(batch)
        add_webhook_log(session, batch.id, None)
        old = [add_task(session, storage, status, 2 * hour) for status in ("succeeded", "failed", "canceled")]
        old += [add_task(session, storage, "succeeded", 3 * hour, batch_id=batch.id) for _ in range(2)]
        recent = add_task(session, storage, "succeeded", timedelta(minutes=50))
        live = [add_task(session, storage, status, None) for status in ("queued", "processing")]
        session.commit()
        everything = [*old, recent, *live, batch.id]

        first = purge_expired(session, settings("1h"), storage, batch_rows=2, max_batches=1)
        assert first.tasks == 2  # one transaction of two rows: the bound holds
        assert len(left(session, old)["tasks"]) == 3

        rest = purge_expired(session, settings("1h"), storage, batch_rows=2, max_batches=5)
        assert rest.tasks == 3
        assert first.batches + rest.batches == 1  # the batch went once its last item had gone
        kept = {recent, *live}
        assert left(session, everything) == {"tasks": kept, "batches": set(), "events": kept, "deliveries": kept}
        assert {task_id: stored(storage, task_id) for task_id in everything if stored(storage, task_id)} == {
            task_id: list(OBJECTS) for task_id in kept
        }
        assert purge_expired(session, settings("1h"), storage) == PurgeReport(0, 0)  # nothing left to do


def test_a_tenants_own_retention_wins_over_the_default(sessions, storage) -> None:
    with sessions() as session:
        short, long, default = add_tenant(session, 3600), add_tenant(session, 60 * 86400), add_tenant(session, None)
        tasks = {
            (owner, age): add_task(session, storage, "succeeded", timedelta(hours=age), tenant_id=tenant_id)
            for owner, tenant_id in (("short", short), ("long", long), ("default", default), ("none", None))
            for age in (2, 72)
        }
        session.commit()
        report = purge_expired(session, settings("1d"), storage)
        assert report.tasks == 4
        kept = left(session, list(tasks.values()))["tasks"]
    assert {key for key, task_id in tasks.items() if task_id not in kept} == {
        ("short", 2),
        ("short", 72),
        ("default", 72),
        ("none", 72),
    }


class CrashingStorage:
    """Local storage whose process "dies" (raises) while deleting the `crash_at`-th task prefix."""

    def __init__(self, storage: LocalStorage, crash_at: int) -> None:
        self.storage, self.crash_at, self.calls = storage, crash_at, 0
        self.lock = threading.Lock()

    def delete_prefix(self, prefix: str) -> None:
        with self.lock:
            self.calls += 1
            if self.calls == self.crash_at:
                raise OSError("killed mid-purge")
        self.storage.delete_prefix(prefix)


def test_a_purge_cut_short_is_finished_by_the_next_pass(sessions, storage) -> None:
    with sessions() as session:
        old = [add_task(session, storage, "failed", timedelta(days=2)) for _ in range(6)]
        session.commit()
        with pytest.raises(OSError, match="killed mid-purge"):
            purge_expired(session, settings("1d"), CrashingStorage(storage, crash_at=4))
        session.rollback()
        # objects went first: every row is still there to be found again; every deletion but the crashed one ran
        assert left(session, old)["tasks"] == set(old)
        assert sum(not stored(storage, task_id) for task_id in old) == 5

        assert purge_expired(session, settings("1d"), storage).tasks == 6
        assert left(session, old) == {"tasks": set(), "batches": set(), "events": set(), "deliveries": set()}
    assert [task_id for task_id in old if stored(storage, task_id)] == []
    assert list((storage.root / "tasks").iterdir()) == []  # no object outlived its row


@pytest.mark.integration
def test_purge_deletes_the_objects_on_s3(s3_settings, clean_state) -> None:  # noqa: F811
    s3 = get_storage(s3_settings)
    with session_scope() as session:
        old = add_task(session, s3, "succeeded", timedelta(days=31))
        recent = add_task(session, s3, "succeeded", timedelta(days=29))
        session.commit()
        assert purge_expired(session, settings("30d"), s3).tasks == 1
    assert (stored(s3, old), stored(s3, recent)) == ([], list(OBJECTS))
    listed = s3.client.list_objects_v2(Bucket="faces", Prefix=f"facequeue/{task_prefix(old)}")
    assert listed["KeyCount"] == 0
