"""`recombine --out` over runs larger than memory: chain a bucket of keys at a time.

Holding every session of the runs (the sessions table, then both output tables: about
1.3 KB a session at the peak) bounds recombine to runs of a few million sessions on a
laptop; a day of flows is hundreds of millions. No chain crosses a key (exporter, protocol,
unordered endpoint pair), so the sessions are routed, a batch at a time, to bucket files by
a hash of their endpoint pair, and each bucket is chained alone (chain.chain_sessions) with
the context that needs all of them (RunsContext: each exporter's window and its latest
record in each run, gathered on the same pass).

The surprising thing: the output is the one chaining everything at once writes, byte for
byte, whatever the number of buckets. Each bucket's conversations come out in the global
order (first_seen, exporter, conversation_id) restricted to it, so the global order is a
merge that reads every bucket's results front to back; it is computed from those three
keys alone (about 40 bytes a conversation, with the report's columns the part of memory
that still grows with the runs), and the rows are gathered a row group at a time. What a
bucket cannot know is settled over all of them: a session id appearing twice (the same
capture in two runs is refused before any chaining), whether a late session's
`follows_session_id` that its bucket lacks names a session of another key
(late_follows_other_key) or none at all (late_follows_missing), and which session a loop
of late sessions is named by (the first in the runs' tables, as the whole table names it;
each session carries its place there, ROW). The errors an edited table gets are the whole
table's too (runs.session_batches).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import LinkCycle, UsageError
from ..ids import endpoint_pair_hashes, text_hashes
from ..protocols import PORT_PROTOCOLS
from ..tables.layout import SESSIONS_FILE
from ..tables.parquet import (
    PAGE_CHECKSUMS,
    WRITE_TABLE_ROWS,
    RowGroupWriter,
    iter_parquet,
    read_parquet,
)
from ..tables.partitioned import BucketedWriter, ScratchWriter, read_scratch
from ..tables.scratch import owned_directory
from .chain import (
    ANOMALIES,
    FRAGMENTS_SCHEMA,
    RECOMBINED_SCHEMA,
    Chains,
    RunsContext,
    chain_sessions,
    numpy_of,
    overlap,
)
from .overlap import OverlapCheck, Twins, twin_counts
from .report import Source, build_report
from .runs import Run, session_batches, session_rows

if TYPE_CHECKING:
    import numpy.typing as npt

BUCKET_SESSIONS = 1 << 18  # sessions chained at once: ~0.5 GB at the peak
READ_ROWS = 1 << 17  # sessions read, and routed, at a time
SCRATCH_ROWS = 1 << 14  # rows per record batch of a bucket's results: what a merge holds
OUTPUT_ROWS = WRITE_TABLE_ROWS  # rows per row group of the outputs, as write_parquet has them
MERGE_ROWS = 1 << 18  # conversations put in order at a time
SCRATCH_COMPRESSION = "lz4"  # the work files: 2.3x smaller, and no slower (5.19 M sessions)
CHAIN_WORKERS = 2  # buckets chained at once
MAX_BUCKETS = 512  # files open at once while routing and merging (ulimit -n is often 1024)
ROW = "_row"  # each session's place in the runs' tables, read one after the other


def bucket_count(sessions: int, bucket_sessions: int | None = None) -> int:
    """Buckets of about `bucket_sessions` sessions; past MAX_BUCKETS (134 M sessions at the
    default), or half the files the process may open, larger ones."""
    wanted = math.ceil(sessions / max(bucket_sessions or BUCKET_SESSIONS, 1))
    return max(1, min(wanted, MAX_BUCKETS, (_open_files() - 64) // 2))


def _open_files() -> int:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):
        return 1024
    return 1 << 20 if soft == resource.RLIM_INFINITY else int(soft)


def _route(table: pa.Table, buckets: int) -> tuple[pa.Table, np.ndarray]:
    """Rows grouped by the bucket of their endpoint pair (stable), and rows per bucket."""
    pair = endpoint_pair_hashes(table, port_protocols=PORT_PROTOCOLS)
    bucket = (pair % np.uint64(buckets)).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    # (the stubs type pa.array of any ndarray as a BooleanArray: these are positions)
    return (
        table.take(cast(pa.Int64Array, pa.array(order))),
        np.bincount(bucket, minlength=buckets),
    )


class Partitioned:
    """The runs' sessions in bucket files, and what chaining needs from all of them."""

    def __init__(self, runs: list[Run], scratch: Path, buckets: int) -> None:
        self.runs = runs
        self.buckets = buckets
        writer = BucketedWriter(
            scratch / "sessions", buckets, _route, compression=SCRATCH_COMPRESSION
        )
        reduced: list[pa.Table] = []
        hashes: list[np.ndarray] = []
        self.overlaps = OverlapCheck()  # twins are found as the buckets are chained
        self.sessions = 0
        try:
            for run in runs:
                for batch in session_batches(run, READ_ROWS):
                    reduced.append(RunsContext.reduce(batch))
                    self.overlaps.count(batch)
                    hashes.append(text_hashes(batch.column("session_id")))
                    rows = np.arange(self.sessions, self.sessions + batch.num_rows)
                    self.sessions += batch.num_rows
                    writer.write(batch.append_column(ROW, pa.array(rows, pa.int64())))
        finally:
            self.files = writer.close()  # (its files open: none left, even on an error)
        self.context = RunsContext.from_reduced(reduced, len(runs))
        _refuse_duplicates(runs, np.concatenate(hashes) if hashes else np.zeros(0, np.uint64))

    def existing(self, ids: pa.Array[Any]) -> int:
        """How many of `ids` (with repeats) are sessions of the runs."""
        if len(ids) == 0:
            return 0
        wanted = pc.unique(ids)
        found = np.zeros(len(wanted), dtype=bool)
        for batch in _id_batches(self.runs):
            found |= np.asarray(
                pc.is_in(wanted, value_set=batch).to_numpy(zero_copy_only=False), dtype=bool
            )
        known = pc.filter(wanted, pa.array(found))
        return int(pc.sum(pc.is_in(ids, value_set=known).cast(pa.int64())).as_py() or 0)


def _id_batches(runs: Sequence[Run]) -> Iterator[pa.Array[Any]]:
    for run in runs:
        for batch in iter_parquet(run.path / SESSIONS_FILE, READ_ROWS, columns=["session_id"]):
            column = batch.column(0)
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            yield column.cast(pa.string())


def _refuse_duplicates(runs: Sequence[Run], hashes: np.ndarray) -> None:
    """A session id seen twice means one capture was given in two runs (chain_sessions'
    check, over all buckets): the hashes find candidates, the texts decide."""
    ordered = np.sort(hashes)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if len(repeated) == 0:
        return
    texts: list[pa.Array[Any]] = []
    run_of: list[np.ndarray] = []
    for run in runs:
        for batch in _id_batches([run]):
            hit = np.isin(text_hashes(batch), repeated)
            if hit.any():
                texts.append(pc.filter(batch, pa.array(hit)))
                run_of.append(np.full(int(hit.sum()), run.index))
    ids = pa.concat_arrays(texts)
    where_run = np.concatenate(run_of)
    counts = pc.value_counts(ids)
    # (compute functions take Python scalars, as pa.scalar makes them; the stubs only Arrow
    # ones: here and below)
    twice = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))  # type: ignore[call-overload]
    if len(twice) == 0:
        return  # hashes alike, texts not
    session = min(cast(list[str], twice.to_pylist()))  # (ids repeated: none is null)
    equal = pc.equal(ids, session)  # type: ignore[call-overload]
    where = np.flatnonzero(np.asarray(equal.to_numpy(zero_copy_only=False)))
    raise overlap(session, len(where), sorted({str(runs[int(where_run[i])].path) for i in where}))


class _Rows:
    """A bucket's results read front to back, a few rows at a time."""

    def __init__(self, path: Path) -> None:
        self._source = pa.OSFile(str(path), "r")  # (the default mode)
        self._reader = pa.ipc.open_file(self._source)
        self._next = 0
        self._held: list[pa.RecordBatch] = []
        self._held_rows = 0
        self._start = 0  # rows of the first held batch already given out

    def take(self, rows: int) -> pa.Table:
        while self._held_rows - self._start < rows:
            batch = self._reader.get_batch(self._next)
            self._next += 1
            self._held.append(batch)
            self._held_rows += batch.num_rows
        table = pa.Table.from_batches(self._held, schema=self._reader.schema).slice(
            self._start, rows
        )
        self._start += rows
        while self._held and self._start >= self._held[0].num_rows:  # drop what was given
            self._start -= self._held[0].num_rows
            self._held_rows -= self._held[0].num_rows
            self._held.pop(0)
        return table

    def close(self) -> None:
        self._source.close()


def chain_buckets(
    parts: Partitioned, scratch: Path, conversations_path: Path, fragments_path: Path
) -> Source:
    """Chain every bucket, then write both tables in the global order; the report's source."""
    anomalies = dict.fromkeys(ANOMALIES, 0)
    first: list[np.ndarray] = []
    exporter: list[np.ndarray] = []
    ids: list[pa.Array[Any]] = []
    counts: list[np.ndarray] = []
    results: list[tuple[Path, Path]] = []
    unfollowed: list[pa.Array[Any]] = []
    cycles: list[tuple[np.ndarray, str]] = []  # per bucket: the stuck rows, the first's id
    for number, (chains, twins) in enumerate(_chained(parts)):
        parts.overlaps.add(twins)
        if isinstance(chains, tuple):  # said for all buckets at once, as for the whole table
            cycles.append(chains)
            continue
        if cycles:  # the run is refused: the other buckets are chained only to count
            continue
        for name, value in chains.anomalies.items():
            anomalies[name] += value
        unfollowed.append(chains.unfollowed)
        conversations = chains.conversations
        first.append(numpy_of(conversations.column("first_seen"), "int64"))
        exporter.append(
            np.asarray(
                pc.index_in(
                    conversations.column("exporter"), value_set=parts.context.exporters
                ).to_numpy(),
                dtype=np.int32,
            )
        )
        ids.append(conversations.column("conversation_id").combine_chunks())
        counts.append(np.asarray(conversations.column("fragment_count").to_numpy(), dtype=np.int64))
        results.append(
            (
                _scratch(scratch / f"conversations-{number:04d}.arrow", conversations),
                _scratch(scratch / f"fragments-{number:04d}.arrow", chains.fragments),
            )
        )
        del chains, conversations
        release_memory()
    release_memory()  # (what the workers' heaps kept)
    if cycles:
        _, example = min(cycles, key=lambda cycle: int(cycle[0].min()))
        stuck = np.sort(np.concatenate([rows for rows, _ in cycles]))
        raise LinkCycle(stuck, example, len(stuck))
    moved = parts.existing(
        pa.concat_arrays(unfollowed) if unfollowed else pa.array([], pa.string())
    )
    anomalies["late_follows_missing"] -= moved  # they name a session, of another key
    anomalies["late_follows_other_key"] += moved

    bucket = (
        np.concatenate([np.full(len(f), i, dtype=np.int32) for i, f in enumerate(first)])
        if first
        else np.zeros(0, np.int32)
    )
    # pa.table(dict) hands it to from_pydict, whose stubs (not pa.table's) take ndarrays and
    # chunked arrays
    keys = pa.Table.from_pydict(
        {
            "first_seen": np.concatenate(first) if first else np.zeros(0, np.int64),
            "exporter": np.concatenate(exporter) if exporter else np.zeros(0, np.int32),
            "conversation_id": pa.chunked_array(ids, pa.string()),
        }
    )
    del first, exporter, ids
    order = np.asarray(
        pc.sort_indices(
            keys,
            sort_keys=[
                ("first_seen", "ascending"),
                ("exporter", "ascending"),
                ("conversation_id", "ascending"),
            ],
        ).to_numpy(),
        dtype=np.int64,
    )
    del keys
    fragment_count = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    # one table at a time: each holds a row group (a million rows) while it is written
    _merge(
        [c for c, _ in results],
        RECOMBINED_SCHEMA,
        bucket,
        order,
        np.ones(len(order), dtype=np.int64),
        conversations_path,
    )
    release_memory()
    _merge([f for _, f in results], FRAGMENTS_SCHEMA, bucket, order, fragment_count, fragments_path)
    release_memory()
    return _file_source(
        conversations_path,
        fragments_path,
        sessions=parts.sessions,
        windows=parts.context.windows(),
        anomalies=anomalies,
    )


def _chained(parts: Partitioned) -> Iterator[tuple[Chains | tuple[np.ndarray, str], Twins]]:
    """Each bucket's chains, in bucket order, CHAIN_WORKERS buckets chained at once (numpy
    and Arrow leave the interpreter while they sort and take: two cores, both busy), and
    no more in hand than that and the one given out."""
    with ThreadPoolExecutor(max_workers=CHAIN_WORKERS) as pool:
        pending: deque[Future[tuple[Chains | tuple[np.ndarray, str], Twins]]] = deque()
        for path in parts.files:
            pending.append(pool.submit(_chain_bucket, parts, path))
            if len(pending) >= CHAIN_WORKERS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _chain_bucket(parts: Partitioned, path: Path) -> tuple[Chains | tuple[np.ndarray, str], Twins]:
    """One bucket's chains, or its loop of late sessions: (their rows in the runs' tables,
    the first one's session id); and its sessions' twins in earlier runs (overlap.py)."""
    sessions = read_scratch(path)
    path.unlink()
    twins = twin_counts(sessions, parts.runs)
    try:
        return chain_sessions(sessions, parts.runs, parts.context), twins
    except LinkCycle as cycle:
        rows = sessions.column(ROW).to_numpy()[cycle.stuck]
        earliest = int(np.argmin(rows))
        return (rows, str(sessions.column("session_id")[int(cycle.stuck[earliest])].as_py())), twins
    finally:
        del sessions
        release_memory()


def release_memory() -> None:
    """Hand what the allocators keep for reuse back to the system between phases: a
    bucket's chaining peaks at several hundred MB, which the next phase need not find
    still counted against the process. Arrow's pool, and the C library's heaps, where
    numpy's arrays live (glibc keeps freed memory in each thread's arena)."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc() -> Any:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (glibc only)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def _scratch(path: Path, table: pa.Table) -> Path:
    writer = ScratchWriter(path, table.schema, compression=SCRATCH_COMPRESSION)
    for batch in table.to_batches(max_chunksize=SCRATCH_ROWS):
        writer.write(pa.Table.from_batches([batch], schema=table.schema))
    writer.close()
    return path


def _merge(
    paths: list[Path],
    schema: pa.Schema,
    bucket: np.ndarray,
    order: np.ndarray,
    width: np.ndarray,
    out_path: Path,
) -> None:
    """Write the buckets' rows (`width` rows a conversation) in the global `order` of
    conversations; within a bucket it is the bucket's own, so every bucket's file is read
    front to back once."""
    out = RowGroupWriter(out_path, schema, row_group_rows=OUTPUT_ROWS)
    readers = [_Rows(path) for path in paths]
    try:
        for start in range(0, len(order), MERGE_ROWS):
            chosen = order[start : start + MERGE_ROWS]
            which, widths = bucket[chosen], width[chosen]
            # each bucket's rows of this chunk, read in bucket order, then interleaved
            per_bucket = np.bincount(which, weights=widths, minlength=len(readers)).astype(np.int64)
            taken = np.flatnonzero(per_bucket)
            parts = [readers[b].take(int(per_bucket[b])) for b in taken.tolist()]
            offsets = np.zeros(len(readers), dtype=np.int64)
            offsets[taken] = np.cumsum(per_bucket[taken]) - per_bucket[taken]
            # a conversation's first row among the parts: its bucket's offset, plus the
            # rows of the bucket's conversations before it in the chunk
            first = offsets[which] + _cumsum_within(which, widths)
            rows = np.repeat(first - (np.cumsum(widths) - widths), widths) + np.arange(
                int(widths.sum())
            )
            out.write(pa.concat_tables(parts).take(cast(pa.Int64Array, pa.array(rows))))
            del parts
    finally:
        for reader in readers:
            reader.close()
    out.close()


def _cumsum_within(
    group: npt.NDArray[np.int32], values: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """For each element, the sum of `values` of earlier elements of its group."""
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    sorted_values = values[order]
    running = np.cumsum(sorted_values) - sorted_values
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    lengths = np.diff(np.r_[starts, len(group)])
    out = np.empty(len(group), dtype=np.int64)
    out[order] = running - np.repeat(running[starts], lengths)
    return out


class RowsByPosition:
    """Rows of a written table by position, reading only the row groups that hold them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = pq.ParquetFile(path, page_checksum_verification=PAGE_CHECKSUMS)
        sizes = [self.file.metadata.row_group(i).num_rows for i in range(self.file.num_row_groups)]
        self.sizes = np.array(sizes, dtype=np.int64)
        self.starts = np.cumsum([0, *sizes])

    def take(self, rows: np.ndarray) -> pa.Table:
        """The rows, in the order given; one row group held at a time."""
        rows = np.asarray(rows, dtype=np.int64)
        group_of = np.searchsorted(self.starts, rows, side="right") - 1
        groups = np.unique(group_of)
        parts = []
        for group in groups.tolist():
            mine = group_of == group
            parts.append(
                self.file.read_row_group(group).take(
                    cast(pa.Int64Array, pa.array(rows[mine] - self.starts[group]))
                )
            )
        if not parts:
            return self.file.schema_arrow.empty_table()
        taken = pa.concat_tables(parts)  # by row group: back into the order given
        by_group = np.argsort(group_of, kind="stable")
        place = np.empty(len(rows), dtype=np.int64)
        place[by_group] = np.arange(len(rows))
        return taken.take(cast(pa.Int64Array, pa.array(place)))

    def where(self, values: pa.Array[Any], *columns: str) -> np.ndarray:
        """Positions of the rows where any of `columns` is one of `values`, in one pass
        over those columns, a batch at a time."""
        found: list[np.ndarray] = []
        at = 0
        for batch in iter_parquet(self.path, READ_ROWS, columns=list(columns)):
            hit = np.zeros(batch.num_rows, dtype=bool)
            for column in batch.columns:
                hit |= np.asarray(
                    pc.is_in(column, value_set=values).to_numpy(zero_copy_only=False), dtype=bool
                )
            found.append(at + np.flatnonzero(hit))
            at += batch.num_rows
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def _file_source(
    conversations_path: Path,
    fragments_path: Path,
    *,
    sessions: int,
    windows: dict[str, tuple[int, int]],
    anomalies: dict[str, int],
) -> Source:
    """The report reads the written tables: a column, or the row groups of a few rows."""
    conversations = RowsByPosition(conversations_path)
    fragments = RowsByPosition(fragments_path)
    return Source(
        column=lambda name: read_parquet(conversations_path, columns=[name]).column(name),
        take=conversations.take,
        fragments_of=lambda ids: fragments.take(fragments.where(ids, "conversation_id")),
        conversation_count=int(conversations.file.metadata.num_rows),
        sessions=sessions,
        exporter_windows=windows,
        anomalies=anomalies,
    )


def recombine_partitioned(
    runs: list[Run],
    scratch_parent: Path,
    conversations_path: Path,
    fragments_path: Path,
    *,
    bucket_sessions: int | None = None,
) -> dict[str, Any]:
    """Chain the runs a bucket at a time into the two tables; return the report."""
    total = 0
    for index, run in enumerate(runs):
        try:
            total += session_rows(run)
        except UsageError:  # an earlier run's error first, as they are read in order
            for earlier in runs[:index]:
                for _ in session_batches(earlier, READ_ROWS):
                    pass
            raise
    with owned_directory(scratch_parent, ".recombine.", ".scratch") as scratch:
        parts = Partitioned(runs, scratch, bucket_count(total, bucket_sessions))
        source = chain_buckets(parts, scratch, conversations_path, fragments_path)
        parts.overlaps.note(runs)
        return build_report(runs, source)
