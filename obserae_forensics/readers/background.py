"""Reading ahead on a thread of its own, so that decoding overlaps the sessionizer.

The decoders spend their time in numpy, numba (nogil) and the decompressors, which release
the GIL: on a two-core machine the next batches are decoded while the current one is
sessionized. The batches, their order and everything the readers count are exactly those
of reading inline; only *when* the work happens changes.

The surprising thing: an exception raised while reading (a strict run's first damaged
record, a file that vanished) is handed over in the batch stream and raised in the
consumer at the point it would have been raised inline, and a consumer that stops early
(an error of its own) stops the thread instead of leaving it blocked on a full queue.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    """An exception raised by the producer, carried to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield `items`, produced by a background thread at most `depth` items ahead."""
    if depth < 1:
        yield from items
        return
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # re-raised in the consumer, where it belongs
            put(_Failure(error))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator: its files close on this thread
                close()
        put(_DONE)

    worker = threading.Thread(target=produce, name="read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            entry = handoff.get()
            if entry is _DONE:
                return
            if isinstance(entry, _Failure):
                raise entry.error
            yield entry  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
