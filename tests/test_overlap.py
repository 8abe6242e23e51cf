"""Overlapping I/O with compute: frames decoded ahead on a thread, frame URLs downloaded together.

Overlap is shown by ordering, never by timing: each test would deadlock (and fail on its timeout) if the
two sides ran one after the other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing

import pytest

from workers.overlap import fetch_all, prefetched

WAIT = 10.0  # seconds before a missing overlap counts as a failure


def test_prefetched_yields_everything_in_order() -> None:
    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))
    assert list(prefetched(iter(range(5)), depth=0)) == list(range(5))
    assert list(prefetched(iter([]), depth=3)) == []


def test_next_item_is_produced_while_the_current_one_is_consumed() -> None:
    producing_second = threading.Event()

    def items() -> Iterator[int]:
        yield 0
        producing_second.set()
        yield 1

    frames = prefetched(items(), depth=1)
    assert next(frames) == 0
    # still holding item 0: the producer must already be working on item 1
    assert producing_second.wait(WAIT)
    assert list(frames) == [1]


def test_an_error_surfaces_at_its_position() -> None:
    def items() -> Iterator[int]:
        yield 0
        yield 1
        raise ValueError("frame 2 is damaged")

    got = []
    with pytest.raises(ValueError, match="frame 2 is damaged"):
        for item in prefetched(items(), depth=2):
            got.append(item)
    assert got == [0, 1]


def test_stopping_early_stops_the_producer_and_closes_the_source() -> None:
    closed = threading.Event()
    produced = []

    def items() -> Iterator[int]:
        try:
            for index in range(1000):
                produced.append(index)
                yield index
        finally:
            closed.set()

    with closing(prefetched(items(), depth=2)) as frames:
        assert next(frames) == 0
    assert closed.wait(WAIT)
    assert len(produced) <= 4  # the one taken, the two buffered, at most one more in hand
    assert not any(thread.name == "frame-prefetch" for thread in threading.enumerate())


def test_fetch_all_downloads_together_and_keeps_url_order() -> None:
    both_running = threading.Barrier(2, timeout=WAIT)  # breaks (and fails the test) unless two run at once

    def fetch(position: int, url: str) -> str:
        both_running.wait()
        return f"{position}:{url}"

    assert fetch_all(fetch, ["a", "b"], concurrency=2) == ["0:a", "1:b"]
    assert fetch_all(lambda position, url: url, ["x", "y", "z"], concurrency=1) == ["x", "y", "z"]


def test_fetch_all_raises_the_first_failure_in_url_order() -> None:
    second_failed = threading.Event()

    def fetch(position: int, url: str) -> str:
        if position == 2:
            raise RuntimeError("third URL failed")
        if position == 1:
            second_failed.set()
            raise RuntimeError("second URL failed")
        assert second_failed.wait(WAIT)
        return url

    with pytest.raises(RuntimeError, match="second URL failed"):
        fetch_all(fetch, ["a", "b", "c", "d"], concurrency=4)
