"""Tables too large for memory, done in buckets: route rows to bucket files, one at a time.

`sessions_consolidated` groups sessions of the same conversation across the whole run;
held at once, a day of flows is millions of sessions and gigabytes. Every session of one
conversation has the same protocol and endpoint pair, so a hash of those routes them to
one bucket; each bucket is transformed alone and the results are written bucket after
bucket. Memory is then bounded by one bucket, not by the run.

The route (for consolidation: matching.Consolidation.rows, a hash that is the same on
every machine and under every PYTHONHASHSEED) decides what is kept of each row and its
bucket, so buckets, and with them the output, never depend on anything but the input.
Scratch files are Arrow IPC: what goes in is fixed-width numbers and a few texts, written
and read back as memory copies (recombine compresses its own with LZ4: its rows are whole
sessions, and a day of them is tens of GB of disk uncompressed).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa

from .parquet import MAX_QUEUED_ROW_GROUPS, TableWriter

# Routing hands each bucket a few hundred rows per sessions batch; written straight to the
# file, every buffer of those small record batches was a write call of its own.
SCRATCH_BUFFER_BYTES = 1 << 16


class ScratchWriter:
    """Arrow IPC file for data this run writes once and reads back once: no encoding cost,
    and no compression unless asked (`compression`: "lz4" or "zstd", per record batch)."""

    def __init__(self, path: Path, schema: pa.Schema, *, compression: str | None = None) -> None:
        self.path = path
        self.schema = schema
        self._file = pa.OSFile(str(path), "wb")
        self._sink = pa.BufferedOutputStream(self._file, SCRATCH_BUFFER_BYTES)
        self._writer = pa.ipc.new_file(
            self._sink,
            schema,
            options=pa.ipc.IpcWriteOptions(
                compression=cast("Literal['lz4', 'zstd'] | None", compression)
            ),
        )
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            if table.schema != self.schema:
                table = table.cast(self.schema)
            self._writer.write_table(table)
            self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
        self._sink.close()
        if not self._file.closed:
            self._file.close()


# Scratch files are read with plain reads, not memory maps: pages of a mapped file stay
# resident (and count in the process's RSS) until it is unmapped, so a merge over mapped
# buckets would hold every bucket in memory by the end.


def read_scratch(path: Path) -> pa.Table:
    with pa.OSFile(str(path), "r") as source:
        return pa.ipc.open_file(source).read_all()


class BucketedWriter:
    """Writes rows to `buckets` scratch files under `directory`.

    `route(table, buckets, *context)` turns what `write` receives into the rows to keep,
    grouped by bucket (bucket 0 first), and the number of rows of each bucket. With an
    `executor` (the run's single writer thread) the routing happens there, in submission
    order, while the caller goes on; `close` waits for it.
    """

    def __init__(
        self,
        directory: Path,
        buckets: int,
        route: Callable[..., tuple[pa.Table, np.ndarray]],
        *,
        executor: Executor | None = None,
        compression: str | None = None,
    ) -> None:
        self.directory = directory
        self.compression = compression
        self.buckets = buckets
        self._route_rows = route
        self._executor = executor
        self._queued: deque[Future[None]] = deque()
        self._writers: dict[int, ScratchWriter] = {}

    def write(self, table: pa.Table, *context: Any) -> None:
        """Route `table`'s rows; `context` goes to the route after (table, buckets)."""
        if table.num_rows == 0:
            return
        if self._executor is None:
            self._route(table, *context)
            return
        while len(self._queued) >= MAX_QUEUED_ROW_GROUPS:
            self._queued.popleft().result()
        self._queued.append(self._executor.submit(self._route, table, *context))

    def _route(self, table: pa.Table, *context: Any) -> None:
        rows, counts = self._route_rows(table, self.buckets, *context)
        start = 0
        for number in np.flatnonzero(counts).tolist():
            writer = self._writers.get(number)
            if writer is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                writer = self._writers[number] = ScratchWriter(
                    self.directory / f"bucket-{number:04d}.arrow",
                    rows.schema,
                    compression=self.compression,
                )
            writer.write(rows.slice(start, int(counts[number])))
            start += int(counts[number])

    def close(self) -> list[Path]:
        """Wait for queued routing, close every bucket; return their files in bucket order."""
        while self._queued:
            self._queued.popleft().result()
        for writer in self._writers.values():
            writer.close()
        return [self._writers[n].path for n in sorted(self._writers)]


def transform_buckets(
    paths: Sequence[Path], transform: Callable[[pa.Table], pa.Table], writer: TableWriter
) -> None:
    """Apply `transform` to each bucket alone and write its result, bucket after bucket;
    every bucket file is removed once done.

    The rows come out grouped by bucket, in the order `transform` gives them. A global
    order would need a k-way merge of every bucket's result, which cost as much as the
    rest of a run; readers sort anyway.
    """
    for path in paths:
        writer.write(transform(read_scratch(path)))
        path.unlink()
