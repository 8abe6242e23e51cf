"""Every endpoint of the native API as a flow (see _flows.py): the request it sends and how its answer is read."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from facequeue_client._events import EventStream
from facequeue_client._flows import Flow, Poller, PollPolicy, RetryPolicy, Send, call, paged, waiting
from facequeue_client.errors import Conflict
from facequeue_client.models import (
    BatchAccepted,
    BatchItemMatches,
    BatchItemResult,
    BatchPerson,
    BatchStatus,
    CollectionView,
    Delivery,
    DeliveryLog,
    Face,
    FaceSearchResult,
    IndexOptions,
    IndexReport,
    RotatedSecret,
    SearchOptions,
    Task,
    TaskSummary,
    WebhookEndpoint,
    WebhookEventRecord,
    WebhookSecret,
)

M = TypeVar("M", bound=BaseModel)

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | None
TaskRef = str | Task  # a task id, or a task as returned by detect/get
Index = IndexOptions | Mapping[str, Any]  # detect's `index` option, as a model or as its JSON
Search = SearchOptions | Mapping[str, Any]
JSONL_CONTENT_TYPE = "application/x-ndjson"
# POST /v1/detect options the raw-bytes upload (options in the query string) does not take: only its JSON body
JSON_ONLY_OPTIONS = ("index", "search")


def _task_id(task: TaskRef) -> str:
    return task.detect_task_id if isinstance(task, Task) else task


def detect_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The body's fields: `index` and `search` given as models (IndexOptions, SearchOptions) become their JSON,
    their unset fields left to the server's defaults; options set to None are left out."""
    return {
        name: value.model_dump(mode="json", exclude_none=True) if isinstance(value, BaseModel) else value
        for name, value in options.items()
        if value is not None
    }


def detect_request(source: Source, options: Mapping[str, Any], key: str) -> Send:
    """POST /v1/detect: an http(s) URL (or no media, for `frame_urls` tasks) as JSON; bytes, or the bytes of a
    file path, as the body itself with the options in the query string (no base64: a third fewer bytes, and no
    decode in the API), except with `index` or `search`, which only the JSON body takes: then as base64 `img`."""
    headers = {"Idempotency-Key": key}
    options = detect_options(options)
    if source is None:
        return Send("POST", "/v1/detect", json=options, headers=headers)
    if isinstance(source, str) and source.lower().startswith(("http://", "https://")):
        return Send("POST", "/v1/detect", json={**options, "url": source}, headers=headers)
    data = bytes(source) if isinstance(source, bytes | bytearray | memoryview) else Path(source).read_bytes()
    if any(name in options for name in JSON_ONLY_OPTIONS):
        return Send("POST", "/v1/detect", json={**options, "img": base64.b64encode(data).decode()}, headers=headers)
    headers["Content-Type"] = "application/octet-stream"
    return Send("POST", "/v1/detect", params=options, content=data, headers=headers)


@dataclass(frozen=True)
class BatchWide:
    """A batch's own fields beside its items: its webhook, the search every item runs with, and persons."""

    callback_url: str | None = None
    search: Search | None = None
    persons: bool = False

    def body(self) -> dict[str, Any]:
        persons = {"persons": True} if self.persons else {}
        return {"callback_url": self.callback_url, **detect_options({"search": self.search}), **persons}

    def query(self) -> dict[str, Any]:
        """The same as a JSONL upload's query parameters."""
        search = detect_options({"search": self.search}).get("search")
        return {
            "callback_url": self.callback_url,
            "search": _compact_json(search) if search is not None else None,
            "persons": "true" if self.persons else None,
        }


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _jsonl_line(item: Mapping[str, Any]) -> bytes:
    return (_compact_json(item) + "\n").encode()


def jsonl_lines(items: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """The manifest, one item at a time as httpx sends it: never held whole in memory."""
    return (_jsonl_line(item) for item in items)


async def async_jsonl_lines(
    items: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
) -> AsyncIterator[bytes]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield _jsonl_line(item)
    else:
        for item in items:
            yield _jsonl_line(item)


def parse_result_line(line: str) -> BatchItemResult:
    return BatchItemResult.model_validate_json(line)


def parse_match_line(line: str) -> BatchItemMatches:
    return BatchItemMatches.model_validate_json(line)


def parse_person_line(line: str) -> BatchPerson:
    return BatchPerson.model_validate_json(line)


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate_json(response.content)


def _no_content(_response: httpx.Response) -> None:
    return None


def _unread(response: httpx.Response) -> httpx.Response:
    return response


def _content(response: httpx.Response) -> bytes:
    return response.content


def _task_path(task: TaskRef, *rest: str) -> str:
    return "/".join(("/v1/detect", quote(_task_id(task), safe=""), *rest))


def _batch_path(batch_id: str, *rest: str) -> str:
    return "/".join(("/v1/batches", quote(batch_id, safe=""), *rest))


def _collection_path(collection_id: str, *rest: str) -> str:
    return "/".join(("/v1/collections", quote(collection_id, safe=""), *(quote(part, safe="") for part in rest)))


class Api:
    """The native API, without I/O: each method returns the flow of one client method."""

    def __init__(self, retry: RetryPolicy, poll: PollPolicy) -> None:
        self.retry = retry
        self.poll = poll

    def _call(self, send: Send, parse: Callable[[httpx.Response], Any]) -> Flow[Any]:
        return call(send, parse, self.retry)

    # --- tasks ---------------------------------------------------------------
    def detect(
        self,
        source: Source,
        idempotency_key: str | None,
        options: Mapping[str, Any],
        index: Index | None = None,
        search: Search | None = None,
    ) -> Flow[Task]:
        options = {**options, "index": index, "search": search}
        # One key per detect() call, made here once: every retry of this submit carries it, so a retry
        # whose first try did reach the server is answered with the same task instead of a second one.
        key = idempotency_key or uuid.uuid4().hex
        return self._call(detect_request(source, options, key), _model(Task))

    def get(self, task: TaskRef) -> Flow[Task]:
        return self._call(Send("GET", _task_path(task)), _model(Task))

    def list(self, status: str | None, page_size: int) -> Flow[None]:
        return paged("/v1/detect", {"status": status, "limit": page_size}, TaskSummary.model_validate, self.retry)

    def _delete_task(self, task: TaskRef) -> Flow[Task]:
        return self._call(Send("DELETE", _task_path(task)), _model(Task))

    def cancel(self, task: TaskRef) -> Flow[Task]:
        try:
            return (yield from self._call(Send("POST", _task_path(task, "cancel")), _model(Task)))
        except Conflict as error:
            if error.code != "task_final":
                raise
        # The server left the task as it was: final states never change, so reading it now races nothing.
        return (yield from self.get(task))

    def delete(self, task: TaskRef) -> Flow[Task]:
        current = yield from self._delete_task(task)
        if current.status == "canceled":  # a live task is only canceled by the first DELETE; the next deletes its data
            current = yield from self._delete_task(task)
        return current

    def wait(self, task: TaskRef, timeout: float | None, on_progress: Callable[[Task], Any] | None) -> Flow[Task]:
        """On the task's event stream while the server has one, else polling (see _events.py)."""
        events = EventStream(_task_id(task), _task_path(task, "events"), self._call, lambda: self.get(task), self.poll)
        return waiting(events, timeout, on_progress)

    def preview(self, task: TaskRef, frame: str | None) -> Flow[bytes]:
        return self._call(Send("GET", _task_path(task, "preview.jpg"), params={"frame": frame}), _content)

    def contact_sheet(self, task: TaskRef) -> Flow[bytes]:
        return self._call(Send("GET", _task_path(task, "contact.jpg")), _content)

    # --- batches -------------------------------------------------------------
    def submit_batch(
        self, items: Iterable[Mapping[str, Any]], defaults: Mapping[str, Any] | None, batch_wide: BatchWide
    ) -> Flow[BatchAccepted]:
        body = {"items": list(items), "defaults": dict(defaults or {}), **batch_wide.body()}
        return self._call(Send("POST", "/v1/batches", json=body), _model(BatchAccepted))

    def stream_batch(
        self,
        lines: Iterable[bytes] | AsyncIterable[bytes],
        defaults: Mapping[str, Any] | None,
        batch_wide: BatchWide,
    ) -> Flow[BatchAccepted]:
        params = {"defaults": _compact_json(dict(defaults)) if defaults else None, **batch_wide.query()}
        send = Send("POST", "/v1/batches", params=params, headers={"Content-Type": JSONL_CONTENT_TYPE}, content=lines)
        return self._call(send, _model(BatchAccepted))

    def batch_status(self, batch_id: str) -> Flow[BatchStatus]:
        return self._call(Send("GET", _batch_path(batch_id)), _model(BatchStatus))

    def batch_results(self, batch_id: str) -> Flow[httpx.Response]:
        """The open response; the client reads its JSONL lines as they arrive (parse_result_line)."""
        return self._call(Send("GET", _batch_path(batch_id, "results"), stream=True), _unread)

    def batch_matches(self, batch_id: str, external_id: str | None) -> Flow[httpx.Response]:
        """The open response; the client reads its JSONL lines as they arrive (parse_match_line)."""
        params = {"external_id": external_id}
        return self._call(Send("GET", _batch_path(batch_id, "matches"), params=params, stream=True), _unread)

    def batch_persons(self, batch_id: str) -> Flow[httpx.Response]:
        """The open response; the client reads its JSONL lines as they arrive (parse_person_line)."""
        return self._call(Send("GET", _batch_path(batch_id, "persons"), stream=True), _unread)

    def wait_batch(
        self, batch_id: str, timeout: float | None, on_progress: Callable[[BatchStatus], Any] | None
    ) -> Flow[BatchStatus]:
        return waiting(Poller(lambda: self.batch_status(batch_id), self.poll), timeout, on_progress)

    def cancel_batch(self, batch_id: str) -> Flow[BatchStatus]:
        return self._call(Send("DELETE", _batch_path(batch_id)), _model(BatchStatus))

    # --- webhooks ------------------------------------------------------------
    def deliveries(self, task: TaskRef) -> Flow[DeliveryLog]:
        return self._call(Send("GET", _task_path(task, "deliveries")), _model(DeliveryLog))

    def redeliver(self, task: TaskRef) -> Flow[WebhookEventRecord]:
        return self._call(Send("POST", _task_path(task, "redeliver")), _model(WebhookEventRecord))

    def webhook_endpoint(self) -> Flow[WebhookEndpoint]:
        return self._call(Send("GET", "/v1/webhook-endpoint"), _model(WebhookEndpoint))

    def set_webhook_endpoint(self, url: str) -> Flow[WebhookEndpoint]:
        return self._call(Send("PUT", "/v1/webhook-endpoint", json={"url": url}), _model(WebhookEndpoint))

    def delete_webhook_endpoint(self) -> Flow[None]:
        return self._call(Send("DELETE", "/v1/webhook-endpoint"), _no_content)

    def webhook_secret(self) -> Flow[WebhookSecret]:
        return self._call(Send("GET", "/v1/webhook-endpoint/secret"), _model(WebhookSecret))

    def rotate_webhook_secret(self) -> Flow[RotatedSecret]:
        return self._call(Send("POST", "/v1/webhook-endpoint/rotate-secret"), _model(RotatedSecret))

    def recent_deliveries(
        self, status: str | None, event_type: str | None, detect_task_id: str | None, page_size: int
    ) -> Flow[None]:
        params = {"status": status, "event_type": event_type, "detect_task_id": detect_task_id, "limit": page_size}
        return paged("/v1/deliveries", params, Delivery.model_validate, self.retry)

    # --- face collections ----------------------------------------------------
    def create_collection(self, collection_id: str, description: str | None) -> Flow[CollectionView]:
        body = {"collection_id": collection_id, "description": description}
        return self._call(Send("POST", "/v1/collections", json=body), _model(CollectionView))

    def list_collections(self, page_size: int) -> Flow[None]:
        return paged("/v1/collections", {"limit": page_size}, CollectionView.model_validate, self.retry)

    def get_collection(self, collection_id: str) -> Flow[CollectionView]:
        return self._call(Send("GET", _collection_path(collection_id)), _model(CollectionView))

    def delete_collection(self, collection_id: str) -> Flow[None]:
        return self._call(Send("DELETE", _collection_path(collection_id)), _no_content)

    def list_faces(self, collection_id: str, external_id: str | None, page_size: int) -> Flow[None]:
        params = {"external_id": external_id, "limit": page_size}
        return paged(_collection_path(collection_id, "faces"), params, Face.model_validate, self.retry)

    def delete_face(self, collection_id: str, face_id: str) -> Flow[None]:
        return self._call(Send("DELETE", _collection_path(collection_id, "faces", face_id)), _no_content)

    def search_faces(
        self, collection_id: str, face_id: str, threshold: float, max_matches: int
    ) -> Flow[FaceSearchResult]:
        body = {"face_id": face_id, "threshold": threshold, "max_matches": max_matches}
        send = Send("POST", _collection_path(collection_id, "search"), json=body)
        return self._call(send, _model(FaceSearchResult))

    def index_faces_from_task(
        self, collection_id: str, task: TaskRef, faces: list[tuple[str | int, int]], external_id: str | None
    ) -> Flow[IndexReport]:
        body = {
            "detect_task_id": _task_id(task),
            "faces": [[str(frame), index] for frame, index in faces],
            "external_id": external_id,
        }
        send = Send("POST", _collection_path(collection_id, "faces"), json=body)
        return self._call(send, _model(IndexReport))
