"""Overlapping I/O with compute inside one task.

- `prefetched`: frames are decoded on a background thread, a few ahead, while the current one is
  detected. PyAV decoding and OpenCV inference both release the GIL, so the two really overlap.
- `fetch_all`: a task's frame URLs are downloaded a few at once instead of one after another.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_PUT_POLL_SECONDS = 0.1  # how often a blocked producer looks for a consumer that went away


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """What ``items`` yields, produced up to ``depth`` items ahead on a background thread.

    An exception from ``items`` is raised here, at its position in the sequence. Closing this
    generator early (an error or a time limit in the consumer) stops the producer and closes
    ``items`` on the producer's thread, which is the only thread that ever touches it.
    """
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(kind: str, value: object) -> bool:
        while not stop.is_set():
            try:
                slots.put((kind, value), timeout=_PUT_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer("item", item):
                    return
            offer("end", None)
        except BaseException as error:  # handed to the consumer, which decides what it means
            offer("error", error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="frame-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        producer.join()  # at most one item's production: the producer checks `stop` between items


def fetch_all(fetch: Callable[[int, str], R], urls: Sequence[str], concurrency: int) -> list[R]:
    """``fetch(position, url)`` for every URL, ``concurrency`` at a time, results in URL order.

    The first failure in URL order is raised once the downloads already running have ended; the
    ones not started yet are dropped.
    """
    if concurrency <= 1 or len(urls) <= 1:
        return [fetch(position, url) for position, url in enumerate(urls)]
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(urls)), thread_name_prefix="fetch")
    futures = [pool.submit(fetch, position, url) for position, url in enumerate(urls)]
    try:
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
