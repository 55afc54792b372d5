"""read_ahead: same items, same order, errors where they belong, no thread left behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from obserae_forensics.readers.background import read_ahead


def _counting(n: int, fail_at: int | None = None) -> Iterator[int]:
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"damaged at {i}")
        yield i


@pytest.mark.parametrize("depth", [0, 1, 2, 8])
def test_items_arrive_unchanged_and_in_order(depth: int) -> None:
    assert list(read_ahead(_counting(100), depth)) == list(range(100))


def test_an_error_is_raised_after_the_items_before_it() -> None:
    seen = []
    with pytest.raises(ValueError, match="damaged at 7"):
        for item in read_ahead(_counting(20, fail_at=7), 3):
            seen.append(item)
    assert seen == list(range(7))


def test_a_consumer_that_stops_early_stops_the_thread() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    items = read_ahead(endless(), 2)
    assert [next(items) for _ in range(5)] == list(range(5))
    items.close()  # what a for loop left by an exception does
    assert closed.is_set()
    assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())
