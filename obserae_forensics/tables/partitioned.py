"""Tables too large for memory, done in buckets: route rows to bucket files, one at a time.

`sessions_consolidated` groups sessions of the same conversation across the whole run;
held at once, a day of flows is millions of sessions and gigabytes. Every session of one
conversation has the same protocol and endpoint pair, so a hash of those routes them to
one bucket; each bucket is consolidated alone and the sorted results are merged into one
file. Memory is then bounded by one bucket and one merge window, not by the run.

The bucket comes from ids.endpoint_pair_hashes (FNV-1a of the endpoint texts, splitmix64
folds): the same on every machine and under every PYTHONHASHSEED, so buckets, and with
them the output, never depend on anything but the input.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..ids import endpoint_pair_hashes
from .parquet import MAX_QUEUED_ROW_GROUPS, TableWriter


def endpoint_buckets(sessions: pa.Table, buckets: int) -> np.ndarray:
    """Bucket per session from (protocol, unordered endpoint pair): both directions agree."""
    return (endpoint_pair_hashes(sessions) % np.uint64(buckets)).astype(np.int64)


class ScratchWriter:
    """Arrow IPC file for data this run writes once and reads back once: no encoding cost."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, schema)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table.cast(self.schema))
            self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
        self._sink.close()


# Scratch files are read with plain reads, not memory maps: pages of a mapped file stay
# resident (and count in the process's RSS) until it is unmapped, so a merge over mapped
# buckets would hold every bucket in memory by the end.


def read_scratch(path: Path) -> pa.Table:
    with pa.OSFile(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


class BucketedWriter:
    """Routes rows to `buckets` scratch files under `directory` by `endpoint_buckets`.

    With an `executor` (the run's single writer thread) the routing happens there, in
    submission order, while the caller goes on; `close` waits for it.
    """

    def __init__(self, directory: Path, schema: pa.Schema, buckets: int,
                 *, executor: Executor | None = None) -> None:
        self.directory = directory
        self.schema = schema
        self.buckets = buckets
        self._executor = executor
        self._queued: deque[Future[None]] = deque()
        self._writers: dict[int, ScratchWriter] = {}

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._executor is None:
            self._route(table)
            return
        while len(self._queued) >= MAX_QUEUED_ROW_GROUPS:
            self._queued.popleft().result()
        self._queued.append(self._executor.submit(self._route, table))

    def _route(self, table: pa.Table) -> None:
        bucket = endpoint_buckets(table, self.buckets)
        order = np.argsort(bucket, kind="stable")
        sorted_buckets = bucket[order]
        bounds = np.flatnonzero(np.r_[True, sorted_buckets[1:] != sorted_buckets[:-1]])
        taken = table.take(pa.array(order))
        for start, end in zip(bounds, np.r_[bounds[1:], len(order)], strict=True):
            number = int(sorted_buckets[start])
            writer = self._writers.get(number)
            if writer is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                writer = self._writers[number] = ScratchWriter(
                    self.directory / f"bucket-{number:04d}.arrow", self.schema)
            writer.write(taken.slice(int(start), int(end - start)))

    def close(self) -> list[Path]:
        """Wait for queued routing, close every bucket; return their files in bucket order."""
        while self._queued:
            self._queued.popleft().result()
        for writer in self._writers.values():
            writer.close()
        return [self._writers[n].path for n in sorted(self._writers)]


def transform_buckets(paths: Sequence[Path], transform: Callable[[pa.Table], pa.Table],
                      writer: TableWriter) -> None:
    """Apply `transform` to each bucket alone and write its result, bucket after bucket;
    every bucket file is removed once done.

    The rows come out grouped by bucket, in the order `transform` gives them. A global
    order would need a k-way merge of every bucket's result, which cost as much as the
    rest of a run; readers sort anyway.
    """
    for path in paths:
        writer.write(transform(read_scratch(path)))
        path.unlink()
