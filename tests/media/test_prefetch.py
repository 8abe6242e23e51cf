"""Frames decoded ahead on a thread while the current one is detected.

Overlap is shown by ordering, never by timing: each test would deadlock (and fail on its timeout) if the
two sides ran one after the other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing

import pytest

from workers.media.video import prefetched

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
