"""The one core task service: every router (native and compat) submits, reads and cancels through it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import (
    FeatureDisabled,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidInput,
    InvalidUrl,
    Maintenance,
    MissingInput,
    NotFound,
    PayloadTooLarge,
)
from db import batches, queries, tenants
from db.models import Batch, DetectTask, TaskStatus, new_task_id, utcnow
from facequeue.schemas import MAX_SAMPLED_FRAMES, DetectOptions
from facequeue.settings import Settings
from facequeue.storage import MediaStorage, task_prefix, upload_key
from workers.celery_app import publish_detect
from workers.dispatch import dispatch
from workers.finalize import on_task_final
from workers.media.sniff import kind_from_extension

log = structlog.get_logger(__name__)

DATA_URI = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)

SYNC_POLL_SECONDS = 0.05
BASE64_WHITESPACE = b" \t\n\r\v\f"
BATCH_INSERT_CHUNK = 1000
MAINTENANCE_FLAG = "maintenance"
MAINTENANCE_MESSAGE = "Service is under maintenance: new tasks are not accepted; polling still works"
MISSING_INPUT_MESSAGE = "Either 'url' or 'img' parameter must be provided"
INVALID_URL_MESSAGE = "Invalid URL format"
_FLAG_CACHE: dict[str, tuple[str | None, float]] = {}  # name -> (value, monotonic expiry)


@dataclass(frozen=True)
class DetectSubmission:
    url: str | None = None
    img: str | None = None
    params: DetectOptions = field(default_factory=DetectOptions)
    queue: str = "default"
    tenant_id: str | None = None
    idempotency_key: str | None = None
    with_detect_id: bool = False
    callback_url: str | None = None


class DetectService:
    def __init__(self, session: Session, settings: Settings, storage: MediaStorage) -> None:
        self.session = session
        self.settings = settings
        self.storage = storage

    # --- submit ------------------------------------------------------------
    def submit(self, submission: DetectSubmission) -> tuple[DetectTask, bool]:
        """Store the task, then publish it. Returns (task, created); created is False for an idempotent replay."""
        self._check_open_for(submission.params)
        url, image_bytes, params = self._validated_input(submission)
        request_hash = _request_hash(url, image_bytes, params)
        if submission.idempotency_key:
            existing = self._idempotent_replay(submission, request_hash)
            if existing is not None:
                return existing, False
        kind = _kind_hint(params, url)
        cost = estimated_cost(params, kind, self.settings)

        task = DetectTask(
            id=new_task_id(),
            tenant_id=submission.tenant_id,
            kind=kind,
            source_url=url,
            params=asdict(params),
            queue=submission.queue,
            status=TaskStatus.QUEUED,
            progress_total=0,
            idempotency_key=submission.idempotency_key,
            request_hash=request_hash,
            detect_id=new_detect_id() if submission.with_detect_id else None,
            callback_url=submission.callback_url,
            # Marked published in the same commit (one commit per submit); a failed publish unmarks it.
            published_at=utcnow(),
        )
        if submission.tenant_id is not None:
            # reserved in the task's own transaction: both commit, or neither
            if not tenants.reserve_credits(self.session, submission.tenant_id, cost):
                self.session.rollback()
                raise InsufficientCredits(f"Insufficient Credits: this task needs {cost}")
            task.cost, task.credit_state = cost, "reserved"
        if image_bytes is not None:
            task.upload_key = upload_key(task.id)
            self.storage.put_bytes(task.upload_key, image_bytes)
        self.session.add(task)
        try:
            self.session.commit()
        except IntegrityError:
            # Lost a race on the same idempotency key: the other request's task is the answer.
            self.session.rollback()
            self.storage.delete_prefix(task_prefix(task.id))
            existing = self._idempotent_replay(submission, request_hash)
            if existing is None:
                raise
            return existing, False
        self.publish(task)
        return task, True

    def submit_batch(self, tenant_id: str | None, items: Iterable[DetectSubmission], callback_url: str | None) -> Batch:
        """Store every item as a held task (bulk inserts, one transaction, one credit reservation), then
        hand the tenant's first items to the fair dispatcher. A bad item refuses the whole batch."""
        self._check_not_in_maintenance()  # once per batch, not once per item
        if callback_url is not None:
            validate_url(callback_url)
        batch = Batch(tenant_id=tenant_id, total=0, callback_url=callback_url)
        self.session.add(batch)
        self.session.flush()
        rows, uploads, total_cost = [], [], 0
        try:
            for position, submission in enumerate(items):
                row = self._batch_row(batch, position, submission)
                if row["upload_key"]:
                    uploads.append(row["upload_key"])
                total_cost += row["cost"]
                rows.append(row)
                if len(rows) == BATCH_INSERT_CHUNK:
                    batches.insert_items(self.session, rows)
                    rows = []
                batch.total = position + 1
            batches.insert_items(self.session, rows)
            if batch.total == 0:
                raise InvalidInput("items must not be empty", field="items")
            if tenant_id is not None and not tenants.reserve_credits(self.session, tenant_id, total_cost):
                raise InsufficientCredits(f"Insufficient Credits: this batch needs {total_cost}")
            self.session.commit()
        except BaseException:
            self.session.rollback()
            for key in uploads:
                self.storage.delete_prefix(key)
            raise
        dispatch(self.session, self.settings, [tenant_id])
        self.session.commit()
        return batch

    def _batch_row(self, batch: Batch, position: int, submission: DetectSubmission) -> dict[str, Any]:
        try:
            self._check_features(submission.params)
            url, image_bytes, params = self._validated_input(submission)
        except InvalidInput as error:
            field = f"items[{position}].{error.field}" if error.field else f"items[{position}]"
            raise type(error)(f"items[{position}]: {error.message}", field=field) from error
        task_id, kind = new_task_id(), _kind_hint(params, url)
        key = upload_key(task_id) if image_bytes is not None else None
        if key is not None:
            self.storage.put_bytes(key, image_bytes)
        reserved = batch.tenant_id is not None
        return {
            "id": task_id,
            "tenant_id": batch.tenant_id,
            "kind": kind,
            "source_url": url,
            "upload_key": key,
            "params": asdict(params),
            "queue": batches.BATCH_QUEUE,
            "status": TaskStatus.QUEUED,
            "progress_done": 0,
            "progress_total": 0,
            "timings": {},
            "attempts": 0,
            "created_at": batch.created_at,
            "batch_id": batch.id,
            "batch_position": position,
            "cost": estimated_cost(params, kind, self.settings) if reserved else 0,
            "credit_state": "reserved" if reserved else "none",
        }

    def _check_open_for(self, options: DetectOptions) -> None:
        self._check_not_in_maintenance()
        self._check_features(options)

    def _check_not_in_maintenance(self) -> None:
        if self.settings.maintenance or self._flag(MAINTENANCE_FLAG) == "on":
            raise Maintenance(MAINTENANCE_MESSAGE)

    def _flag(self, name: str) -> str | None:
        """A service flag, read at most once per FACEQUEUE_FLAG_CACHE_SECONDS per process: it is checked
        on every submit, and flipping it is rare."""
        now = time.monotonic()
        cached = _FLAG_CACHE.get(name)
        if cached is None or now >= cached[1]:
            cached = (tenants.get_flag(self.session, name), now + self.settings.flag_cache_seconds)
            _FLAG_CACHE[name] = cached
        return cached[0]

    def _check_features(self, options: DetectOptions) -> None:
        for feature in requested_features(options):
            if feature in self.settings.disabled_features:
                raise FeatureDisabled(f"Feature '{feature}' is disabled", field=feature)

    def publish(self, task: DetectTask) -> None:
        try:
            publish_detect(task.id, task.queue, task.kind, self.settings)
        except Exception:  # the row is committed: unmarked, the reaper publishes it soon, nothing is lost
            log.exception("publish_failed", task_id=task.id)
            queries.mark_unpublished(self.session, task.id)
            self.session.commit()

    def _validated_input(self, submission: DetectSubmission) -> tuple[str | None, bytes | None, DetectOptions]:
        params = submission.params
        if params.detector == "upstream" and (params.landmarks == "90" or params.tiling):
            raise InvalidInput(
                "90-point landmarks and tiling are computed locally: use detector local or auto", field="detector"
            )
        if params.frame_urls:
            return None, None, validate_frames(params)
        if submission.url:  # url wins over img
            return validate_url(submission.url), None, params
        if submission.img:
            return None, self._decode_image_data(submission.img), params
        raise MissingInput(MISSING_INPUT_MESSAGE, field="url")

    def _decode_image_data(self, img: str) -> bytes:
        payload = DATA_URI.sub("", img.strip(), count=1)
        if len(payload) * 3 // 4 > self.settings.max_upload_bytes:
            raise PayloadTooLarge(f"img is larger than {self.settings.max_upload_bytes} bytes", field="img")
        try:
            # bytes.translate drops line breaks and spaces far faster than a regex over a large upload
            data = base64.b64decode(payload.encode("ascii").translate(None, BASE64_WHITESPACE), validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidInput(f"img is not valid base64: {error}", field="img") from error
        if not data:
            raise InvalidInput("img is empty", field="img")
        return data

    def _idempotent_replay(self, submission: DetectSubmission, request_hash: str) -> DetectTask | None:
        existing = queries.find_by_idempotency_key(self.session, submission.tenant_id, submission.idempotency_key)
        if existing is not None and existing.request_hash != request_hash:
            raise IdempotencyConflict(
                "Idempotency-Key was already used with a different request body", field="Idempotency-Key"
            )
        return existing

    # --- read --------------------------------------------------------------
    def get(self, task_id: str, tenant_id: str | None) -> DetectTask:
        task = queries.get_task(self.session, task_id, tenant_id)
        if task is None:
            raise NotFound(f"detect task {task_id} not found", field="detect_task_id")
        return task

    def list(
        self, tenant_id: str | None, status: str | None, cursor: str | None, limit: int
    ) -> tuple[Sequence[DetectTask], str | None]:
        try:
            return queries.list_tasks(self.session, tenant_id, status, cursor, limit)
        except ValueError as error:
            raise InvalidInput("cursor is malformed", field="cursor") from error

    def wait_until_final(self, task: DetectTask, timeout: float) -> bool:
        """Block until the task is final (for the synchronous compat APIs); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.session.refresh(task)
            if TaskStatus(task.status).is_final:
                return True
            if time.monotonic() >= deadline:
                return False
            self.session.rollback()  # end the read transaction so the next refresh sees the worker's commit
            time.sleep(SYNC_POLL_SECONDS)

    # --- cancel / delete ---------------------------------------------------
    def cancel_or_purge(self, task_id: str, tenant_id: str | None) -> DetectTask:
        """Cancel a live task; for a finished one, delete its result and stored media."""
        task = self.get(task_id, tenant_id)
        if queries.cancel_task(self.session, task.id):
            on_task_final(self.session, task.id)
        else:
            queries.purge_result(self.session, task.id)
        self.session.commit()
        if TaskStatus(task.status).is_final:
            self.storage.delete_prefix(task_prefix(task.id))
        self.session.refresh(task)
        return task


def validate_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidUrl(INVALID_URL_MESSAGE, field="url")
    return url.strip()


def validate_frames(params: DetectOptions) -> DetectOptions:
    """frame_urls input (analyze_frames): every URL valid; timestamps default to 0.0, 1.0, ..."""
    urls = tuple(validate_url(url) for url in params.frame_urls)
    timestamps = params.timestamps or tuple(float(i) for i in range(len(urls)))
    if len(timestamps) != len(urls):
        raise InvalidInput(
            f"timestamps length ({len(timestamps)}) must match frame_urls length ({len(urls)})", field="timestamps"
        )
    return replace(params, frame_urls=urls, timestamps=timestamps, media_type="image")


def requested_features(options: DetectOptions) -> list[str]:
    """The switchable features a task would use (FACEQUEUE_DISABLED_FEATURES names)."""
    wanted = {
        "upstream": options.detector == "upstream",
        "landmarks90": options.landmarks == "90",
        "persons": options.persons,
        "crops": options.return_face_url,
    }
    return [feature for feature, used in wanted.items() if used]


def estimated_cost(options: DetectOptions, kind: str | None, settings: Settings) -> int:
    """Credits reserved on submit: the most the task can cost (an unknown kind may be a video);
    the worker's outcome settles it and refunds the rest."""
    video_frames = MAX_SAMPLED_FRAMES if options.sample_fps else options.num_frames
    frames = len(options.frame_urls) or (1 if kind == "image" else video_frames)
    per_frame = 1 if options.detector == "local" else max(1, settings.upstream_credit_cost)
    return frames * per_frame


def new_detect_id() -> str:
    return secrets.token_urlsafe(8)


def _kind_hint(params: DetectOptions, url: str | None) -> str | None:
    if params.media_type != "auto":
        return params.media_type
    if url is not None:
        return kind_from_extension(url)
    return None


def _request_hash(url: str | None, image_bytes: bytes | None, params: DetectOptions) -> str:
    body = {
        "url": url,
        "img_sha256": hashlib.sha256(image_bytes).hexdigest() if image_bytes is not None else None,
        "params": asdict(params),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
