"""The fetch stage: a task's URLs are downloaded on the worker's I/O pool, so no CPU slot waits on a server.

A task with URLs is published to Queue.FETCH first (`publish_detect`). The I/O pool (Celery threads, many
downloads at once, no CPU work) claims it like any run, downloads every URL under one deadline, stores the
files as the task's upload (`workers/media/staging.py`) and hands the run over: the row goes back to queued
with its upload_key set, and its detect message goes to the task's own queue, where a CPU slot claims it and
finds its media ready. A CPU slot that gets a task whose media are not downloaded yet (a message sent before
this stage existed) hands it to this stage the same way, at once.

Both stages are one attempt: the hand-over gives back the attempt its claim counted, and the next claim
counts it again, fenced as always (a stale run's writes match no row). A fetch run that dies is recovered
like any run (heartbeat, or its restarted worker's name); nothing is downloaded twice once stored.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import structlog

from db import tasks
from db.engine import DATABASE_UNAVAILABLE
from facequeue.core.enums import TaskStatus
from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.logs import bind_task_context
from facequeue.core.schemas import DetectOptions
from facequeue.core.settings import Settings
from facequeue.core.storage import get_storage
from facequeue.plumbing import task_events
from facequeue.plumbing.broker import log_failed_publish, media_to_fetch, publish_detect, time_limits
from facequeue.plumbing.sessions import session_scope
from workers.media.fetch import fetch_all, fetch_to_file
from workers.media.sniff import sniff
from workers.media.staging import store_downloads
from workers.pinned_http import Deadline
from workers.run_control import RunControl, TaskAbandoned, through_database_outage, write_final

log = structlog.get_logger(__name__)

# Downloads may use this share of the run's soft time limit (FACEQUEUE_FETCH_TOTAL_TIMEOUT caps it further);
# the rest is for storing them and handing over, so a slow server ends in a precise download_failed.
DOWNLOAD_SHARE_OF_SOFT_LIMIT = 0.8


def download_budget(kind: str | None, settings: Settings) -> float:
    """Seconds all of a task's downloads together may take: one deadline for the whole task."""
    soft_limit, _ = time_limits(kind, settings)
    return min(settings.fetch_total_timeout, DOWNLOAD_SHARE_OF_SOFT_LIMIT * soft_limit)


def run_fetch_task(task_id: str, settings: Settings, worker_name: str) -> None:
    """Entry point for the fetch Celery task: claim, download, store, and hand the run to a CPU slot, or write
    the failure (download_failed, url_forbidden, ...) as the task's final status."""
    with session_scope() as session:
        claimed = tasks.claim_task(session, task_id, worker_name, os.getpid())
    if claimed is None:
        log.info("detect_skipped", task_id=task_id, stage="fetch", reason="not queued (canceled, finished or taken)")
        return
    attempt = claimed.attempt
    bind_task_context(task_id, claimed.tenant_id, attempt)
    if not media_to_fetch(claimed.source_url, claimed.params, claimed.upload_key):
        pass_on(task_id, attempt, settings, fetch_first=False)  # a duplicate message: stored already
        return
    task_events.announce_status(task_id, TaskStatus.PROCESSING, settings)
    started = time.perf_counter()
    storage = get_storage(settings)
    failure: TaskError | None = None
    with RunControl(task_id, attempt, settings) as control:
        try:
            options = DetectOptions.from_params(claimed.params)
            urls = options.frame_urls or (claimed.source_url or "",)
            # frame_urls are images (the CPU run refuses anything else); one URL is what its extension hints
            deadline = Deadline(download_budget("image" if options.frame_urls else claimed.kind, settings))
            # fetch_all raises at the first failure without waiting for the other downloads, so the folders exist
            # before any starts: a download making one while the directory was removed turned a download_failed
            # into an internal_error (OSError: Directory not empty), found by fuzzing analyze_frames
            with tempfile.TemporaryDirectory(prefix="facequeue-fetch-", ignore_cleanup_errors=True) as workdir:
                folders = [Path(workdir, f"input-{position}") for position in range(len(urls))]
                for folder in folders:
                    folder.mkdir()

                def fetch(position: int, url: str) -> Path:
                    return fetch_to_file(url, folders[position], settings, deadline).path

                paths = fetch_all(fetch, urls, settings.fetch_concurrency, deadline, control.check)
                kind = sniff(paths[0]).kind  # the CPU run's time limits follow the bytes, not the URL
                key = store_downloads(task_id, paths, bool(options.frame_urls), storage, Path(workdir))
        except TaskAbandoned:
            log.info("detect_abandoned", task_id=task_id, attempt=attempt, stage="fetch")
            return
        except TaskError as error:
            failure = error
        except DATABASE_UNAVAILABLE:
            raise  # the database is away: the message is retried, or the reaper recovers the run
        except Exception as exc:  # a bug must end the task, never strand it
            log.exception("detect_crashed", task_id=task_id, stage="fetch")
            failure = TaskError(ErrorCode.INTERNAL_ERROR, type(exc).__name__)
    took = round(time.perf_counter() - started, 4)
    timings = {"download": took, "total": took}
    if failure is not None:
        values = {"timings": timings, "error_code": failure.code, "error_msg": failure.message}
        written = write_final(task_id, attempt, TaskStatus.FAILED, values, settings)
        log.info(
            "detect_finished", task_id=task_id, attempt=attempt, written=written, error=failure.code, stage="fetch"
        )
        return
    if not pass_on(task_id, attempt, settings, fetch_first=False, upload_key=key, kind=kind, timings=timings):
        storage.delete_keys([key])  # canceled meanwhile: the row will never point at it
        log.info("detect_abandoned", task_id=task_id, attempt=attempt, stage="fetch")
        return
    log.info("detect_fetched", task_id=task_id, attempt=attempt, seconds=took)


def pass_on(task_id: str, attempt: int, settings: Settings, fetch_first: bool, **values: object) -> bool:
    """Hand this run of the task to its other stage (`fetch_first`: the fetch stage, else a CPU slot on the task's
    queue), writing `values` with it; False when the run no longer owned the task."""
    handed = through_database_outage(_hand_over, task_id, attempt, values, settings=settings, step="hand-over")
    if handed is None:
        return False
    queue, kind = handed
    task_events.announce_status(task_id, TaskStatus.QUEUED, settings)
    try:
        publish_detect(task_id, queue, kind, settings, fetch_first=fetch_first)
    except Exception as error:  # committed as published: unmarked, the reaper publishes it soon, nothing is lost
        log_failed_publish("publish_failed", error, task_id=task_id)
        with session_scope() as session:
            tasks.mark_unpublished(session, task_id)
    return True


def _hand_over(task_id: str, attempt: int, values: dict[str, object]) -> tuple[str, str | None] | None:
    with session_scope() as session:
        return tasks.hand_over(session, task_id, attempt, **values)
