"""Tables too large for memory, done in buckets: route rows to bucket files, then merge.

`sessions_consolidated` groups sessions of the same conversation across the whole run;
held at once, a day of flows is millions of sessions and gigabytes. Every session of one
conversation has the same protocol and endpoint pair, so a hash of those routes them to
one bucket; each bucket is consolidated alone and the sorted results are merged into one
file. Memory is then bounded by one bucket and one merge window, not by the run.

The bucket hash reads the endpoint texts' bytes (FNV-1a, then splitmix64 folds): it is
the same on every machine and under every PYTHONHASHSEED, so buckets, and with them the
output, never depend on anything but the input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .parquet import TableWriter

SCRATCH_COMPRESSION = "lz4"  # files read back once by this run: speed over size
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@numba.njit(cache=True)
def _mix(h: np.uint64) -> np.uint64:
    z = h + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _text_hashes(offsets: np.ndarray, data: np.ndarray, start: int, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        h = _FNV_OFFSET
        for k in range(offsets[start + i], offsets[start + i + 1]):
            h = (h ^ np.uint64(data[k])) * _FNV_PRIME
        out[i] = h
    return out


@numba.njit(cache=True)
def _pair_buckets(protocol: np.ndarray, a: np.ndarray, port_a: np.ndarray, b: np.ndarray,
                  port_b: np.ndarray, buckets: int) -> np.ndarray:
    out = np.empty(len(a), dtype=np.int64)
    for i in range(len(a)):
        end_a = _mix(a[i] ^ np.uint64(port_a[i]))
        end_b = _mix(b[i] ^ np.uint64(port_b[i]))
        low, high = (end_a, end_b) if end_a <= end_b else (end_b, end_a)
        h = _mix(_mix(_mix(np.uint64(protocol[i])) ^ low) ^ high)
        out[i] = np.int64(h % np.uint64(buckets))
    return out


def _string_hashes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    array = array.cast(pa.large_string())
    if len(array) == 0:
        return np.zeros(0, dtype=np.uint64)
    _validity, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)
    data = (np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
            else np.zeros(0, dtype=np.uint8))
    return _text_hashes(offsets, data, array.offset, len(array))


def endpoint_buckets(sessions: pa.Table, buckets: int) -> np.ndarray:
    """Bucket per session from (protocol, unordered endpoint pair): both directions agree."""
    ports_a = sessions.column("port_a").to_numpy().astype(np.int64)
    ports_b = sessions.column("port_b").to_numpy().astype(np.int64)
    return _pair_buckets(sessions.column("protocol_number").to_numpy().astype(np.int64),
                         _string_hashes(sessions.column("ip_a")), ports_a,
                         _string_hashes(sessions.column("ip_b")), ports_b, buckets)


class BucketedWriter:
    """Routes rows to `buckets` Parquet files under `directory` by `endpoint_buckets`."""

    def __init__(self, directory: Path, schema: pa.Schema, buckets: int,
                 *, executor: Executor | None = None) -> None:
        self.directory = directory
        self.executor = executor
        self.schema = schema
        self.buckets = buckets
        self._writers: dict[int, TableWriter] = {}

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
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
                writer = self._writers[number] = TableWriter(
                    self.directory / f"bucket-{number:04d}.parquet", self.schema,
                    compression=SCRATCH_COMPRESSION, executor=self.executor)
            writer.write(taken.slice(int(start), int(end - start)))

    def close(self) -> list[Path]:
        """Close every bucket; return their files in bucket order."""
        for writer in self._writers.values():
            writer.close()
        return [self._writers[n].path for n in sorted(self._writers)]


def transform_buckets(paths: Sequence[Path], transform: Callable[[pa.Table], pa.Table],
                      sort_keys: Sequence[str], directory: Path) -> list[Path]:
    """Apply `transform` to each bucket alone; write each result sorted by `sort_keys`."""
    directory.mkdir(parents=True, exist_ok=True)
    results = []
    for index, path in enumerate(paths):
        table = transform(pq.read_table(path))
        order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in sort_keys])
        out = directory / f"sorted-{index:04d}.parquet"
        writer = TableWriter(out, table.schema, compression=SCRATCH_COMPRESSION)
        writer.write(table.take(order))
        writer.close()
        results.append(out)
        path.unlink()
    return results


def merge_sorted(paths: Sequence[Path], writer: TableWriter, sort_keys: Sequence[str],
                 *, chunk_rows: int = 65_536) -> None:
    """k-way merge of files each sorted by `sort_keys` (a total order) into `writer`.

    Vectorized by windows: the smallest of the buffers' last keys bounds what can be
    written now; every buffer gives its rows up to that bound, the window is sorted and
    written, and a drained buffer reads its next chunk.
    """
    readers = [pq.ParquetFile(p).iter_batches(batch_size=chunk_rows) for p in paths]
    buffers: list[pa.Table | None] = [None] * len(readers)

    def refill(i: int) -> None:
        while buffers[i] is None or buffers[i].num_rows == 0:  # type: ignore[union-attr]
            batch = next(readers[i], None)
            if batch is None:
                buffers[i] = None
                return
            buffers[i] = pa.Table.from_batches([batch])

    live = []
    for i in range(len(readers)):
        refill(i)
        if buffers[i] is not None:
            live.append(i)
    while live:
        bound = min(_key_at(buffers[i], -1, sort_keys) for i in live)  # type: ignore[arg-type]
        window = []
        for i in live:
            table = buffers[i]
            assert table is not None
            cut = _count_at_most(table, bound, sort_keys)
            if cut:
                window.append(table.slice(0, cut))
                buffers[i] = table.slice(cut)
        merged = pa.concat_tables(window)
        order = pc.sort_indices(merged, sort_keys=[(k, "ascending") for k in sort_keys])
        writer.write(merged.take(order))
        still = []
        for i in live:
            refill(i)
            if buffers[i] is not None:
                still.append(i)
        live = still


def _key_at(table: pa.Table, row: int, sort_keys: Sequence[str]) -> tuple[object, ...]:
    row = row % table.num_rows
    return tuple(table.column(k)[row].as_py() for k in sort_keys)


def _count_at_most(table: pa.Table, bound: tuple[object, ...], sort_keys: Sequence[str]) -> int:
    """Rows at the head of `table` (sorted by sort_keys) whose key is <= bound."""
    low, high = 0, table.num_rows
    while low < high:  # binary search on the sorted table: O(log n) row reads
        middle = (low + high) // 2
        if _key_at(table, middle, sort_keys) <= bound:
            low = middle + 1
        else:
            high = middle
    return low
