"""The blocking client. Its logic lives in _api.py and _flows.py, shared with AsyncClient; this file only
performs the flows' requests and pauses with httpx.Client and time.sleep."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from typing import Any, TypeVar

import httpx

from facequeue_client import models
from facequeue_client._api import (
    BatchWide,
    Index,
    Search,
    Source,
    TaskRef,
    jsonl_lines,
    parse_match_line,
    parse_person_line,
    parse_result_line,
)
from facequeue_client._config import ClientBase
from facequeue_client._flows import CloseStream, Emit, Flow, ReadLine, Send, Sleep, single, step
from facequeue_client.errors import connection_failed

T = TypeVar("T")


class Client(ClientBase):
    """A facequeue server over HTTP, blocking (see ClientBase for the arguments). Use it as a context manager,
    or call `close()`."""

    http_class = httpx.Client
    _http: httpx.Client

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- driving flows ---------------------------------------------------------
    def _send(self, send: Send) -> httpx.Response:
        self.request_count += 1
        try:
            response = self._http.send(self._http.build_request(**send.arguments()), stream=send.stream)
        except httpx.TransportError as error:
            raise connection_failed(self.base_url, error) from error
        if send.stream and not response.is_success:
            response.read()  # an error's envelope is read whole; only a success is streamed
        return response

    def _iterate(self, flow: Flow[Any]) -> Iterator[Any]:
        outcome = None
        lines: dict[httpx.Response, Iterator[str]] = {}  # the streams this flow reads, closed when it ends
        try:
            while (action := step(flow, outcome)) is not None:
                if isinstance(action, Emit):
                    outcome = None
                    yield action.item
                elif isinstance(action, Sleep):
                    outcome = time.sleep(action.seconds)
                elif isinstance(action, ReadLine):
                    outcome = _next_line(lines.setdefault(action.response, action.response.iter_lines()))
                elif isinstance(action, CloseStream):
                    lines.pop(action.response, None)
                    outcome = action.response.close()
                else:
                    outcome = self._send(action)
        finally:
            for response in lines:
                response.close()

    def _run(self, flow: Flow[Any]) -> Any:
        with closing(self._iterate(single(flow))) as items:
            return next(items)

    # --- tasks -------------------------------------------------------------------
    def detect(
        self,
        source: Source = None,
        *,
        idempotency_key: str | None = None,
        index: Index | None = None,
        search: Search | None = None,
        **options: Any,
    ) -> models.Task:
        """Submit an image or video: an http(s) URL, a file path, or bytes; `options` are POST /v1/detect's
        fields (num_frames=10, landmarks="90", ...). `index` adds the faces found to a collection, `search` finds
        each among a collection's faces (IndexOptions / SearchOptions, or dicts of their fields); with either, a
        file or bytes go as base64 JSON. Retries reuse one Idempotency-Key, so they make one task."""
        return self._run(self._api.detect(source, idempotency_key, options, index, search))

    def get(self, task: TaskRef) -> models.Task:
        return self._run(self._api.get(task))

    def list(self, status: str | None = None, *, page_size: int = 50) -> Iterator[models.TaskSummary]:
        """Every task, newest first (optionally of one status), following the cursors page by page."""
        return self._iterate(self._api.list(status, page_size))

    def cancel(self, task: TaskRef) -> models.Task:
        """Cancel a queued or running task; a task already final is returned as it is, its result kept
        (POST /v1/detect/{id}/cancel, never DELETE)."""
        return self._run(self._api.cancel(task))

    def delete(self, task: TaskRef) -> models.Task:
        """Delete a task's result and stored media, canceling it first if it still runs."""
        return self._run(self._api.delete(task))

    def wait(
        self, task: TaskRef, timeout: float | None = None, on_progress: Callable[[models.Task], Any] | None = None
    ) -> models.Task:
        """Until the task is final, on its event stream (one request; `on_progress(task)` at each change of status
        and each finished frame, `task.partial_faces_obj` holding the frames so far), or by polling with a
        growing pause (PollPolicy) where the server has no stream. Raises WaitTimeout after `timeout` seconds
        (None: no limit; on a stream, noticed at the next event or heartbeat)."""
        return self._run(self._api.wait(task, timeout, on_progress))

    def preview(self, task: TaskRef, frame: str | None = None) -> bytes:
        """A succeeded task's frame (a key of faces_obj; default the first) with its faces drawn on it, as JPEG."""
        return self._run(self._api.preview(task, frame))

    def contact_sheet(self, task: TaskRef) -> bytes:
        """All of a succeeded task's frames, annotated, in one JPEG grid."""
        return self._run(self._api.contact_sheet(task))

    # --- batches -----------------------------------------------------------------
    def submit_batch(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        defaults: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        search: Search | None = None,
        persons: bool = False,
    ) -> models.BatchAccepted:
        """A batch as one JSON request; items are POST /v1/detect bodies (plus an optional `name`, echoed in
        the results and failures), `defaults` fill what they leave out. `search` runs in every item (see
        batch_matches); `persons` gives the persons of all items batch-wide ids (see batch_persons)."""
        return self._run(self._api.submit_batch(items, defaults, BatchWide(callback_url, search, persons)))

    def stream_batch(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        defaults: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        search: Search | None = None,
        persons: bool = False,
    ) -> models.BatchAccepted:
        """A batch of any size, sent as JSONL while `items` is iterated (never held whole). Not retried:
        the items are consumed by the first try."""
        batch_wide = BatchWide(callback_url, search, persons)
        return self._run(self._api.stream_batch(jsonl_lines(items), defaults, batch_wide))

    def batch_status(self, batch_id: str) -> models.BatchStatus:
        return self._run(self._api.batch_status(batch_id))

    def batch_results(self, batch_id: str) -> Iterator[models.BatchItemResult]:
        """One result per item, in submit order, read from the JSONL stream as it arrives."""
        return self._lines(self._api.batch_results(batch_id), parse_result_line)

    def batch_matches(self, batch_id: str, external_id: str | None = None) -> Iterator[models.BatchItemMatches]:
        """Where the batch's items (run with the `search` option) met the collection's faces: one line per item
        with a match (only matches of `external_id`, if given), in submit order, each match with its frame and
        time; read from the JSONL stream as it arrives."""
        return self._lines(self._api.batch_matches(batch_id, external_id), parse_match_line)

    def batch_persons(self, batch_id: str) -> Iterator[models.BatchPerson]:
        """The batch-wide persons of a batch submitted with persons=True, each with the items' persons it is and
        their time ranges; complete once the batch is."""
        return self._lines(self._api.batch_persons(batch_id), parse_person_line)

    def _lines(self, flow: Flow[httpx.Response], parse: Callable[[str], T]) -> Iterator[T]:
        """A JSONL response's lines, parsed as they arrive; the request is sent when iteration starts."""
        response = self._run(flow)
        try:
            for line in response.iter_lines():
                if line:
                    yield parse(line)
        finally:
            response.close()

    def wait_batch(
        self,
        batch_id: str,
        timeout: float | None = None,
        on_progress: Callable[[models.BatchStatus], Any] | None = None,
    ) -> models.BatchStatus:
        """Poll the batch's status until every item is final, the pause growing as for `wait`; `on_progress(status)`
        on each change of the counts. Raises WaitTimeout after `timeout` seconds (None: no limit)."""
        return self._run(self._api.wait_batch(batch_id, timeout, on_progress))

    def cancel_batch(self, batch_id: str) -> models.BatchStatus:
        return self._run(self._api.cancel_batch(batch_id))

    # --- webhooks ----------------------------------------------------------------
    def deliveries(self, task: TaskRef) -> models.DeliveryLog:
        return self._run(self._api.deliveries(task))

    def redeliver(self, task: TaskRef) -> models.WebhookEventRecord:
        return self._run(self._api.redeliver(task))

    def webhook_endpoint(self) -> models.WebhookEndpoint:
        return self._run(self._api.webhook_endpoint())

    def set_webhook_endpoint(self, url: str) -> models.WebhookEndpoint:
        return self._run(self._api.set_webhook_endpoint(url))

    def delete_webhook_endpoint(self) -> None:
        self._run(self._api.delete_webhook_endpoint())

    def webhook_secret(self) -> models.WebhookSecret:
        return self._run(self._api.webhook_secret())

    def rotate_webhook_secret(self) -> models.RotatedSecret:
        return self._run(self._api.rotate_webhook_secret())

    def recent_deliveries(
        self,
        *,
        status: str | None = None,
        event_type: str | None = None,
        detect_task_id: str | None = None,
        page_size: int = 50,
    ) -> Iterator[models.Delivery]:
        """Deliveries across all tasks, newest first, following the cursors."""
        return self._iterate(self._api.recent_deliveries(status, event_type, detect_task_id, page_size))

    # --- face collections --------------------------------------------------------
    def create_collection(self, collection_id: str, description: str | None = None) -> models.CollectionView:
        """A new, empty collection; Conflict (collection_exists) if the tenant has one of that id."""
        return self._run(self._api.create_collection(collection_id, description))

    def list_collections(self, *, page_size: int = 50) -> Iterator[models.CollectionView]:
        """Every collection of the tenant, by id, following the cursors page by page."""
        return self._iterate(self._api.list_collections(page_size))

    def get_collection(self, collection_id: str) -> models.CollectionView:
        return self._run(self._api.get_collection(collection_id))

    def delete_collection(self, collection_id: str) -> None:
        """Delete a collection with its faces, their vectors and crops."""
        self._run(self._api.delete_collection(collection_id))

    def list_faces(
        self, collection_id: str, external_id: str | None = None, *, page_size: int = 50
    ) -> Iterator[models.Face]:
        """A collection's faces (only those of `external_id`, if given), following the cursors."""
        return self._iterate(self._api.list_faces(collection_id, external_id, page_size))

    def delete_face(self, collection_id: str, face_id: str) -> None:
        self._run(self._api.delete_face(collection_id, face_id))

    def search_faces(
        self, collection_id: str, face_id: str, threshold: float = 0.5, max_matches: int = 5
    ) -> models.FaceSearchResult:
        """The collection's other faces most like its face `face_id`, best first (no model run)."""
        return self._run(self._api.search_faces(collection_id, face_id, threshold, max_matches))

    def index_faces_from_task(
        self,
        collection_id: str,
        task: TaskRef,
        faces: list[tuple[str | int, int]],
        external_id: str | None = None,
    ) -> models.IndexReport:
        """Index faces ([frame, index] pairs) of a finished task run with `index` or `search`, from the embeddings
        kept with it: no model run (say, the face a search did not know)."""
        return self._run(self._api.index_faces_from_task(collection_id, task, faces, external_id))


def _next_line(lines: Iterator[str]) -> str | None:
    try:
        return next(lines)
    except StopIteration:
        return None
    except (httpx.HTTPError, httpx.StreamError):  # broke or went silent: the flow opens it again
        return None
