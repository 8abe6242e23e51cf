"""The asyncio client. Its logic lives in _api.py and _flows.py, shared with Client; this file only
performs the flows' requests and pauses with httpx.AsyncClient and asyncio.sleep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from contextlib import aclosing
from typing import Any, TypeVar

import httpx

from facequeue_client import models
from facequeue_client._api import (
    BatchWide,
    Index,
    Search,
    Source,
    TaskRef,
    async_jsonl_lines,
    parse_match_line,
    parse_person_line,
    parse_result_line,
)
from facequeue_client._config import ClientBase
from facequeue_client._flows import CloseStream, Emit, Flow, ReadLine, Send, Sleep, single, step
from facequeue_client.errors import connection_failed

T = TypeVar("T")


class AsyncClient(ClientBase):
    """Client's asyncio twin: the same methods, awaited (`list`, `batch_results`, `batch_matches`,
    `batch_persons` and `recent_deliveries` are async iterators). Use it as an async context manager, or await
    `aclose()`."""

    http_class = httpx.AsyncClient
    _http: httpx.AsyncClient

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- driving flows ---------------------------------------------------------
    async def _send(self, send: Send) -> httpx.Response:
        self.request_count += 1
        try:
            response = await self._http.send(self._http.build_request(**send.arguments()), stream=send.stream)
        except httpx.TransportError as error:
            raise connection_failed(self.base_url, error) from error
        if send.stream and not response.is_success:
            await response.aread()  # an error's envelope is read whole; only a success is streamed
        return response

    async def _iterate(self, flow: Flow[Any]) -> AsyncIterator[Any]:
        outcome = None
        lines: dict[httpx.Response, AsyncIterator[str]] = {}  # the streams this flow reads, closed when it ends
        try:
            while (action := step(flow, outcome)) is not None:
                if isinstance(action, Emit):
                    outcome = None
                    yield action.item
                elif isinstance(action, Sleep):
                    outcome = await asyncio.sleep(action.seconds)
                elif isinstance(action, ReadLine):
                    outcome = await _next_line(lines.setdefault(action.response, action.response.aiter_lines()))
                elif isinstance(action, CloseStream):
                    lines.pop(action.response, None)
                    outcome = await action.response.aclose()
                else:
                    outcome = await self._send(action)
        finally:
            for response in lines:
                await response.aclose()

    async def _run(self, flow: Flow[Any]) -> Any:
        async with aclosing(self._iterate(single(flow))) as items:
            return await anext(items)

    # --- tasks -------------------------------------------------------------------
    async def detect(
        self,
        source: Source = None,
        *,
        idempotency_key: str | None = None,
        index: Index | None = None,
        search: Search | None = None,
        **options: Any,
    ) -> models.Task:
        """See Client.detect."""
        return await self._run(self._api.detect(source, idempotency_key, options, index, search))

    async def get(self, task: TaskRef) -> models.Task:
        return await self._run(self._api.get(task))

    def list(self, status: str | None = None, *, page_size: int = 50) -> AsyncIterator[models.TaskSummary]:
        """See Client.list; iterate with `async for`."""
        return self._iterate(self._api.list(status, page_size))

    async def cancel(self, task: TaskRef) -> models.Task:
        """See Client.cancel."""
        return await self._run(self._api.cancel(task))

    async def delete(self, task: TaskRef) -> models.Task:
        """See Client.delete."""
        return await self._run(self._api.delete(task))

    async def wait(
        self, task: TaskRef, timeout: float | None = None, on_progress: Callable[[models.Task], Any] | None = None
    ) -> models.Task:
        """See Client.wait; `on_progress` is a plain function, called in the event loop."""
        return await self._run(self._api.wait(task, timeout, on_progress))

    async def preview(self, task: TaskRef, frame: str | None = None) -> bytes:
        """See Client.preview."""
        return await self._run(self._api.preview(task, frame))

    async def contact_sheet(self, task: TaskRef) -> bytes:
        """See Client.contact_sheet."""
        return await self._run(self._api.contact_sheet(task))

    # --- batches -----------------------------------------------------------------
    async def submit_batch(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        defaults: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        search: Search | None = None,
        persons: bool = False,
    ) -> models.BatchAccepted:
        """See Client.submit_batch."""
        return await self._run(self._api.submit_batch(items, defaults, BatchWide(callback_url, search, persons)))

    async def stream_batch(
        self,
        items: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        defaults: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        search: Search | None = None,
        persons: bool = False,
    ) -> models.BatchAccepted:
        """See Client.stream_batch; `items` may also be an async iterable."""
        batch_wide = BatchWide(callback_url, search, persons)
        return await self._run(self._api.stream_batch(async_jsonl_lines(items), defaults, batch_wide))

    async def batch_status(self, batch_id: str) -> models.BatchStatus:
        return await self._run(self._api.batch_status(batch_id))

    def batch_results(self, batch_id: str) -> AsyncIterator[models.BatchItemResult]:
        """See Client.batch_results; iterate with `async for`."""
        return self._lines(self._api.batch_results(batch_id), parse_result_line)

    def batch_matches(self, batch_id: str, external_id: str | None = None) -> AsyncIterator[models.BatchItemMatches]:
        """See Client.batch_matches; iterate with `async for`."""
        return self._lines(self._api.batch_matches(batch_id, external_id), parse_match_line)

    def batch_persons(self, batch_id: str) -> AsyncIterator[models.BatchPerson]:
        """See Client.batch_persons; iterate with `async for`."""
        return self._lines(self._api.batch_persons(batch_id), parse_person_line)

    async def _lines(self, flow: Flow[httpx.Response], parse: Callable[[str], T]) -> AsyncIterator[T]:
        response = await self._run(flow)
        try:
            async for line in response.aiter_lines():
                if line:
                    yield parse(line)
        finally:
            await response.aclose()

    async def wait_batch(
        self,
        batch_id: str,
        timeout: float | None = None,
        on_progress: Callable[[models.BatchStatus], Any] | None = None,
    ) -> models.BatchStatus:
        """See Client.wait_batch."""
        return await self._run(self._api.wait_batch(batch_id, timeout, on_progress))

    async def cancel_batch(self, batch_id: str) -> models.BatchStatus:
        return await self._run(self._api.cancel_batch(batch_id))

    # --- webhooks ----------------------------------------------------------------
    async def deliveries(self, task: TaskRef) -> models.DeliveryLog:
        return await self._run(self._api.deliveries(task))

    async def redeliver(self, task: TaskRef) -> models.WebhookEventRecord:
        return await self._run(self._api.redeliver(task))

    async def webhook_endpoint(self) -> models.WebhookEndpoint:
        return await self._run(self._api.webhook_endpoint())

    async def set_webhook_endpoint(self, url: str) -> models.WebhookEndpoint:
        return await self._run(self._api.set_webhook_endpoint(url))

    async def delete_webhook_endpoint(self) -> None:
        await self._run(self._api.delete_webhook_endpoint())

    async def webhook_secret(self) -> models.WebhookSecret:
        return await self._run(self._api.webhook_secret())

    async def rotate_webhook_secret(self) -> models.RotatedSecret:
        return await self._run(self._api.rotate_webhook_secret())

    def recent_deliveries(
        self,
        *,
        status: str | None = None,
        event_type: str | None = None,
        detect_task_id: str | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[models.Delivery]:
        """See Client.recent_deliveries; iterate with `async for`."""
        return self._iterate(self._api.recent_deliveries(status, event_type, detect_task_id, page_size))

    # --- face collections --------------------------------------------------------
    async def create_collection(self, collection_id: str, description: str | None = None) -> models.CollectionView:
        """See Client.create_collection."""
        return await self._run(self._api.create_collection(collection_id, description))

    def list_collections(self, *, page_size: int = 50) -> AsyncIterator[models.CollectionView]:
        """See Client.list_collections; iterate with `async for`."""
        return self._iterate(self._api.list_collections(page_size))

    async def get_collection(self, collection_id: str) -> models.CollectionView:
        return await self._run(self._api.get_collection(collection_id))

    async def delete_collection(self, collection_id: str) -> None:
        await self._run(self._api.delete_collection(collection_id))

    def list_faces(
        self, collection_id: str, external_id: str | None = None, *, page_size: int = 50
    ) -> AsyncIterator[models.Face]:
        """See Client.list_faces; iterate with `async for`."""
        return self._iterate(self._api.list_faces(collection_id, external_id, page_size))

    async def delete_face(self, collection_id: str, face_id: str) -> None:
        await self._run(self._api.delete_face(collection_id, face_id))

    async def search_faces(
        self, collection_id: str, face_id: str, threshold: float = 0.5, max_matches: int = 5
    ) -> models.FaceSearchResult:
        """See Client.search_faces."""
        return await self._run(self._api.search_faces(collection_id, face_id, threshold, max_matches))

    async def index_faces_from_task(
        self,
        collection_id: str,
        task: TaskRef,
        faces: list[tuple[str | int, int]],
        external_id: str | None = None,
    ) -> models.IndexReport:
        """See Client.index_faces_from_task."""
        return await self._run(self._api.index_faces_from_task(collection_id, task, faces, external_id))


async def _next_line(lines: AsyncIterator[str]) -> str | None:
    try:
        return await anext(lines)
    except StopAsyncIteration:
        return None
    except (httpx.HTTPError, httpx.StreamError):  # broke or went silent: the flow opens it again
        return None
