"""Parquet outputs written atomically and byte-identically.

Atomic: a run writes into a hidden staging directory beside the output and renames it into
place only when every table and the manifest are complete, so a run that dies leaves no
half-written output directory.

Byte-identical: Parquet bytes depend on row-group boundaries and dictionary pages, which
would otherwise follow the batch sizes of the run. Rows are re-chunked into fixed-size row
groups and dictionary columns are written as plain strings, so the same rows give the same
file whatever the batch size.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zoneinfo
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import UsageError
from ..signals import Interrupted, held
from .layout import RUN_FILES
from .scratch import claim, staged_file, work_prefix

if TYPE_CHECKING:
    # what pa.schema takes as metadata, where a schema's own is dict[bytes, bytes] (a dict
    # is invariant: pyarrow-stubs refuse one schema's metadata for another)
    _Metadata: TypeAlias = dict[bytes | str, bytes | str]

# the codecs Parquet writes (pyarrow-stubs' spelling of what ParquetWriter takes)
Compression: TypeAlias = Literal["gzip", "brotli", "lz4", "zstd", "snappy", "none"]

ROW_GROUP_ROWS = 131_072
# CRC-32 of every data page, written and checked on reading back (read_parquet*): evidence
# that rots on a disk between the incident and the report is an error, not a table that
# reads back with other times (found by flipping bytes of a table: without checksums
# `show` printed 2006 and 2038 for 2011 data). About 1% of the writing time.
PAGE_CHECKSUMS = True


def _plain(table: pa.Table | pa.RecordBatch) -> pa.Table:
    """Decode dictionary columns to plain ones: dictionaries depend on batching."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    columns = []
    fields = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_dictionary(field.type):
            column = column.cast(field.type.value_type)
            field = pa.field(field.name, field.type.value_type, field.nullable, field.metadata)
        columns.append(column)
        fields.append(field)
    return pa.Table.from_arrays(
        columns, schema=pa.schema(fields, cast("_Metadata", table.schema.metadata))
    )


def plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [
            pa.field(
                f.name,
                f.type.value_type if pa.types.is_dictionary(f.type) else f.type,
                f.nullable,
                f.metadata,
            )
            for f in schema
        ],
        cast("_Metadata", schema.metadata),
    )


# id columns: unique random-looking strings, where dictionaries and min/max statistics cost
# time and buy nothing
_ID_SUFFIXES = ("_id", "_ids")
MAX_QUEUED_ROW_GROUPS = 2  # per writer, when encoding runs on a background thread


def _text_values(kind: pa.DataType) -> bool:
    """Text, or a list of text (the leaf values Parquet encodes are then strings)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _leaf(field: pa.Field[Any]) -> str:
    """The Parquet column path of `field`'s values, which is what ParquetWriter's per-column
    options (dictionary, encoding, statistics) are keyed by: a list column's values are
    `name.list.element` (the nested layout pyarrow writes by default), and an option keyed
    by the bare name of a list column is ignored without a word (pyarrow 26: the session ids
    of sessions_consolidated were written PLAIN, and the rule names of sessions without a
    dictionary)."""
    if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
        return f"{field.name}.list.element"
    return field.name


def _statistics_pay(kind: pa.DataType) -> bool:
    """Min/max statistics let a reader (DuckDB, pyarrow filters) skip row groups by times,
    ports, counters. On text and lists they cost a comparison of every value and prune
    nothing here: rows come in emit order, so every row group holds every state, protocol
    and address range (measured: a fifth to a quarter of the sessions and flows tables'
    encoding time)."""
    return not (
        _text_values(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
    )


def writer_options(
    schema: pa.Schema, *, compression: Compression = "zstd", delta_columns: Sequence[str] = ()
) -> dict[str, Any]:
    """How every table this tool writes is encoded, column by column: ParquetWriter's (and
    pq.write_table's) keyword arguments for `schema`. One policy for the run's tables and
    recombine's alike: recombine's, written with pyarrow's defaults (snappy, a dictionary
    and statistics for every column) until the thirty-seventh session, came out twice the
    size for a third more encoding time (5.19 M conversations: sessions_recombined
    206.8 -> 102.4 MB, 2.8 -> 2.1 CPU-seconds)."""
    plain_columns = [n for n in schema.names if not n.endswith(_ID_SUFFIXES)]
    # microsecond times are nearly all distinct: a dictionary attempt costs time and,
    # measured on sessions_consolidated, gives a larger file than plain zstd
    dictionary_columns = [
        n
        for n in plain_columns
        if not pa.types.is_timestamp(schema.field(n).type) and n not in delta_columns
    ]
    # ids are 16 hex digits each: lengths delta-encoded and the digits left to zstd
    # whole encode 15-30% faster than PLAIN and come out ~5% smaller
    encodings = {
        n: "DELTA_LENGTH_BYTE_ARRAY"
        for n in schema.names
        if n not in plain_columns and _text_values(schema.field(n).type)
    }
    encodings.update({n: "DELTA_BINARY_PACKED" for n in delta_columns if n in schema.names})
    leaf = {f.name: _leaf(f) for f in schema}
    return {
        "compression": compression,
        # (pyarrow takes a list of columns where its stubs say bool)
        "use_dictionary": [leaf[n] for n in dictionary_columns],
        "write_statistics": [
            leaf[n] for n in plain_columns if _statistics_pay(schema.field(n).type)
        ],
        "column_encoding": {leaf[n]: e for n, e in encodings.items()} or None,
        "store_schema": True,
        "write_page_checksum": PAGE_CHECKSUMS,
    }


class TableWriter:
    """Streams batches into one Parquet file in fixed-size row groups.

    With an `executor` (one worker thread, shared by a run's writers), encoding and writing
    happen there while the caller goes on computing: pyarrow releases the GIL while it
    encodes, so the two cores of a small machine both work. Row groups are submitted in
    order to a single worker, so the file is the same as when written inline.
    """

    def __init__(
        self,
        path: Path,
        schema: pa.Schema,
        *,
        row_group_rows: int = ROW_GROUP_ROWS,
        compression: Compression = "zstd",
        executor: Executor | None = None,
        prepare: Callable[[pa.Table], pa.Table] | None = None,
        delta_columns: Sequence[str] = (),
    ):
        """`prepare`, if given, turns each row group of the written tables into `schema`'s
        columns on the executor (e.g. address texts), off the caller's thread; written tables
        must then all share one schema. `delta_columns` are integer or time columns whose
        values mostly grow in row order (row numbers, times of rows sorted by them): Parquet's
        DELTA_BINARY_PACKED stores their small steps, which beats a dictionary or PLAIN
        in both time and size there, and loses size anywhere else."""
        self.path = path
        self._prepare = prepare
        self.schema = plain_schema(schema)
        self.row_group_rows = row_group_rows
        self._writer = pq.ParquetWriter(
            path,
            self.schema,
            **writer_options(self.schema, compression=compression, delta_columns=delta_columns),
        )
        self._executor = executor
        self._queued: deque[Future[None]] = deque()
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    def _normalized(self, table: pa.Table | pa.RecordBatch) -> pa.Table:
        return _plain(table).select(self.schema.names).cast(self.schema)

    def _write_group(self, table: pa.Table) -> None:
        if self._prepare is not None:
            table = self._normalized(self._prepare(table))
        # one chunk: Parquet cuts pages, and falls back from a dictionary grown too large,
        # at the chunks it is handed as well, so a row group joined from the pieces of
        # other batches gave other bytes for the same rows (1 M IPv6 sessions at
        # --batch-size 10000 and 65536)
        self._writer.write_table(table.combine_chunks(), row_group_size=self.row_group_rows)

    def _emit(self, table: pa.Table) -> None:
        if self._executor is None:
            self._write_group(table)
            return
        while len(self._queued) >= MAX_QUEUED_ROW_GROUPS:  # bound memory: wait for the oldest
            self._queued.popleft().result()
        self._queued.append(self._executor.submit(self._write_group, table))

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        if data.num_rows == 0:
            return
        if self._prepare is None:
            table = self._normalized(data)
        elif isinstance(data, pa.RecordBatch):
            table = pa.Table.from_batches([data])
        else:
            table = data
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        while self._pending_rows >= self.row_group_rows:
            merged = pa.concat_tables(self._pending)
            self._emit(merged.slice(0, self.row_group_rows))
            rest = merged.slice(self.row_group_rows)
            self._pending = [rest] if rest.num_rows else []
            self._pending_rows = rest.num_rows

    def close(self) -> None:
        if self._pending_rows:
            self._emit(pa.concat_tables(self._pending))
        self._pending = []
        self._pending_rows = 0
        while self._queued:
            self._queued.popleft().result()
        self._writer.close()


# what Arrow raises on a table the user hands back to us (a run's output, possibly edited,
# truncated or not Parquet at all): each read_parquet* turns it into one line naming the file
# a damaged footer can also hold text that is not UTF-8 (its schema, pandas' metadata)
_UNREADABLE = (OSError, pa.ArrowException, UnicodeDecodeError)
_OFFSET = re.compile(r"[+-]\d\d:\d\d")


def _known_zones(path: Path, schema: pa.Schema) -> pa.Schema:
    """`schema`, once each time column's time zone is one Arrow and pandas can read: a bit
    flipped in a footer made `UTC` into `5TC`, which reads, and fails later as a traceback
    when the times are shown or written as text."""
    for field in schema:
        zone = field.type.tz if pa.types.is_timestamp(field.type) else None
        if zone is None or zone == "UTC" or _OFFSET.fullmatch(zone):
            continue
        try:
            zoneinfo.ZoneInfo(zone)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
            raise UsageError(
                f"{path}: unreadable Parquet: column {field.name} has the time "
                f"zone {zone!r}, which is none (a damaged footer?)"
            ) from exc
    return schema


def _unreadable(path: Path, exc: Exception) -> UsageError:
    return UsageError(f"{path}: unreadable Parquet: {exc}")


def read_parquet(path: Path, *, columns: list[str] | None = None, filters: Any = None) -> pa.Table:
    try:
        table = pq.read_table(
            path, columns=columns, filters=filters, page_checksum_verification=PAGE_CHECKSUMS
        )
    except _UNREADABLE as exc:
        raise _unreadable(path, exc) from exc
    _known_zones(path, table.schema)
    return table


def _open(path: Path) -> pq.ParquetFile:
    """The file's footer, or the error read_parquet gives for it (its words, not
    ParquetFile's)."""
    try:
        file = pq.ParquetFile(path, page_checksum_verification=PAGE_CHECKSUMS)
        _known_zones(path, file.schema_arrow)
        return file
    except _UNREADABLE as exc:
        try:
            pq.read_table(path, columns=[])
        except _UNREADABLE as again:
            raise _unreadable(path, again) from exc
        raise _unreadable(path, exc) from exc


def iter_parquet(
    path: Path, rows: int, *, columns: Sequence[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """The table `rows` at a time, its pages checked as read_parquet checks them."""
    file = _open(path)
    try:
        yield from file.iter_batches(batch_size=rows, columns=list(columns) if columns else None)
    except _UNREADABLE as exc:
        raise _unreadable(path, exc) from exc


def parquet_rows(path: Path) -> int:
    """A table's row count, from its footer alone."""
    return int(_open(path).metadata.num_rows)


def read_parquet_schema(path: Path) -> pa.Schema:
    """The Arrow schema of a table a user hands back, from its footer alone."""
    try:
        schema = pq.ParquetFile(path, page_checksum_verification=PAGE_CHECKSUMS).schema_arrow
    except _UNREADABLE as exc:
        raise _unreadable(path, exc) from exc
    return _known_zones(path, schema)


def write_parquet(table: pa.Table, path: Path) -> None:
    """A table as it is (types, one file), encoded as every output is (writer_options)."""
    pq.write_table(table, path, **writer_options(table.schema))


WRITE_TABLE_ROWS = 1 << 20  # the row groups pq.write_table makes (pyarrow's default)


class RowGroupWriter:
    """A Parquet file written as pq.write_table writes a whole table (write_parquet): rows
    of `row_group_rows`-row groups, whatever the pieces handed in, so that a table written
    in pieces (recombine's merge) is the same file byte for byte. A group is built whole
    before it is written, as pq.write_table builds it."""

    def __init__(
        self, path: Path, schema: pa.Schema, *, row_group_rows: int = WRITE_TABLE_ROWS
    ) -> None:
        self._writer = pq.ParquetWriter(path, schema, **writer_options(schema))
        self._group_rows = row_group_rows
        self._pending: list[pa.Table] = [schema.empty_table()]
        self._rows = 0
        self._groups = 0

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._rows += table.num_rows
        while self._rows >= self._group_rows:
            merged = pa.concat_tables(self._pending)
            self._writer.write_table(merged.slice(0, self._group_rows).combine_chunks())
            self._groups += 1
            rest = merged.slice(self._group_rows)
            self._pending, self._rows = [rest], rest.num_rows

    def close(self) -> None:
        if self._rows or not self._groups:  # an empty table is one empty row group
            self._writer.write_table(pa.concat_tables(self._pending).combine_chunks())
        self._writer.close()


def same_kind(found: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether a column of type `found` may stand for `wanted` once cast: the same family
    (text, integer, time, float, bool, list), so an edited table's integer ids or text times
    are refused rather than cast into something that only looks right."""
    if pa.types.is_dictionary(found):
        found = found.value_type
    if pa.types.is_dictionary(wanted):
        wanted = wanted.value_type
    if pa.types.is_null(found):  # a column of nulls only, as pandas writes an all-None one
        return True  # (follows_session_id in most runs); `non_null` still catches it
    families = (
        lambda t: (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or getattr(pa.types, "is_string_view", lambda _: False)(t)
        ),
        pa.types.is_integer,
        pa.types.is_timestamp,
        pa.types.is_boolean,
        lambda t: pa.types.is_list(t) or pa.types.is_large_list(t),
    )
    if pa.types.is_floating(wanted):
        return pa.types.is_floating(found) or pa.types.is_integer(found)
    return any(family(found) and family(wanted) for family in families)


def check_columns(
    path: Path,
    table: pa.Table | pa.Schema,
    wanted: dict[str, pa.DataType],
    *,
    what: str,
    non_null: Sequence[str] = (),
) -> None:
    """Refuse a table lacking a column recombine or an export needs, holding it in another
    type family, or holding nulls where the writer never puts one: one line naming them."""
    schema = table if isinstance(table, pa.Schema) else table.schema
    missing = [name for name in wanted if name not in schema.names]
    if missing:
        raise UsageError(f"{path}: {what} lacks column(s) {', '.join(missing)}")
    for name, kind in wanted.items():
        found = schema.field(name).type
        if not same_kind(found, kind):
            raise UsageError(f"{path}: column {name} is {found}, not {kind}")
    if isinstance(table, pa.Table):
        for name in non_null:
            nulls = table.column(name).null_count
            if nulls:
                raise UsageError(
                    f"{path}: column {name} has {nulls} null value(s); "
                    f"the {what} written by sessionize has none"
                )


def _parquet_with(path: Path, columns: Sequence[str]) -> pq.ParquetFile:
    """The file opened to be read with its pages' checksums checked, refused unless it holds
    every one of `columns`."""
    file = pq.ParquetFile(path, page_checksum_verification=PAGE_CHECKSUMS)
    names = _known_zones(path, file.schema_arrow).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise UsageError(f"{path} has no column(s) {', '.join(missing)}")
    return file


def read_parquet_head(
    path: Path, rows: int, columns: Sequence[str] | None = None
) -> tuple[pa.Table, int]:
    """The first `rows` rows of `columns` (all when None) and the file's row count, reading
    only the row groups that hold them: a day of flows is gigabytes, `show` wants ten."""
    try:
        file = _parquet_with(path, columns or ())
        batches = []
        taken = 0
        for batch in file.iter_batches(
            batch_size=max(min(rows, 65_536), 1), columns=list(columns) if columns else None
        ):
            batches.append(batch.slice(0, rows - taken))
            taken += batches[-1].num_rows
            if taken >= rows:
                break
        schema = (
            file.schema_arrow
            if columns is None
            else pa.schema([file.schema_arrow.field(c) for c in columns])
        )
        return pa.Table.from_batches(batches, schema=schema), file.metadata.num_rows
    except _UNREADABLE as exc:
        raise _unreadable(path, exc) from exc


def read_parquet_sorted(
    path: Path, rows: int, columns: Sequence[str], key: str, *, descending: bool = False
) -> tuple[pa.Table, int]:
    """The first `rows` rows of `columns` in `key` order (ties in the file's order, nulls
    last) and the file's row count. The key and the columns are read whole: `show --sort`
    of a day of flows reads those columns, not the file."""
    try:
        wanted = list(dict.fromkeys([*columns, key]))
        file = _parquet_with(path, wanted)
        table = file.read(columns=wanted)
        # (nulls come last by default; naming it is deprecated from pyarrow 25 on and
        # per key not understood before it)
        order = pc.sort_indices(
            table, sort_keys=[(key, "descending" if descending else "ascending")]
        )
        kept = table.take(order[:rows]).select(list(columns))
        return kept, file.metadata.num_rows
    except _UNREADABLE as exc:
        raise _unreadable(path, exc) from exc


def write_table(path: Path, table: pa.Table, schema: pa.Schema | None = None) -> None:
    writer = TableWriter(path, schema or table.schema)
    writer.write(table)
    writer.close()


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file beside `path` (scratch.staged_file), renamed when
    whole: a reader never sees half, and a run that dies (an unreadable input, a full
    disk) leaves none behind (an export's CSV half-written by a failed run then refused
    the next run as "already exists"); one killed outright leaves it to the next."""
    with staged_file(path) as temporary:
        write(temporary)
        try:
            with held():
                os.replace(temporary, path)
        except Interrupted as stop:
            stop.kept.append(path)
            raise


def check_replaceable(out: Path) -> None:
    """--force replaces an earlier output directory whole: refuse anything else. A
    directory holding other files (`--out ~/cases --force`) lost them all, and the current
    directory (`--out .`) failed at the rename, after the whole run, leaving its staging
    beside it."""
    if not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise UsageError(
            f"{out} is the current directory or holds it, which cannot be "
            "replaced: give another output directory"
        )
    others = sorted(
        entry.name
        for entry in out.iterdir()
        if entry.name not in RUN_FILES and not _leftover(entry.name)
    )
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise UsageError(
            f"{out} holds {shown}, which no run writes; --force replaces only "
            "an earlier output directory: give another output "
            "directory, or move them out"
        )


_LEFTOVER = re.compile(r"\.recombine\..+\.(partial|scratch)")


def _leftover(name: str) -> bool:
    """Whether `name` is what this tool leaves in an output directory when it is killed
    (recombine's work directories, a table's temporary file, `inspect --flows`' partial
    file): replaced with the rest (a review: --force refused its own leftovers as files no
    run writes)."""
    return bool(_LEFTOVER.fullmatch(name)) or any(
        name.startswith(f".{output}.") for output in RUN_FILES
    )


@contextmanager
def staged_directory(out: Path, *, force: bool, swept: list[Path] | None = None) -> Iterator[Path]:
    """A staging directory that becomes `out` only if the block completes; an existing `out`
    only with `force`, and only an earlier output (check_replaceable). The staging
    directories that killed runs into `out` left beside it are removed first, and added
    to `swept` (scratch.py)."""
    if out.exists() and not out.is_dir():  # --force would not help (an audit: it said so)
        raise UsageError(f"{out} exists and is not a directory: give a directory for the tables")
    if out.exists() and not force:
        raise UsageError(f"{out} already exists (use --force to replace it)")
    if out.exists():
        check_replaceable(out)
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = claim(parent, work_prefix(out.name), ".partial", swept, private=False)
    try:
        yield staging.path
        try:
            with held():  # a signal waits: the old output out, the new in, the old removed
                staging.release()
                try:
                    _commit(staging.path, out, parent, force=force)
                finally:
                    staging.close()  # only now: a sweep never takes the output for ours
        except Interrupted as stop:  # it came while the run was put in place
            stop.kept.append(out)
            raise
    except BaseException:
        staging.remove()
        raise


def _commit(staging: Path, out: Path, parent: Path, *, force: bool) -> None:
    """Put the run in place. `out` is checked again: another run into it may have put its
    own there meanwhile, which this one replaced without a word, --force or not."""
    if not out.exists():
        try:
            os.replace(staging, out)  # refused for a directory that is not empty
        except OSError as error:
            if out.exists():
                raise _appeared(out) from error
            raise
        return
    if not force:
        raise _appeared(out)
    check_replaceable(out)
    retired = Path(tempfile.mkdtemp(prefix=work_prefix(out.name), suffix=".old", dir=parent))
    os.replace(out, retired / "old")
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(retired / "old", out)  # the earlier output back where it was
        retired.rmdir()
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _appeared(out: Path) -> UsageError:
    return UsageError(
        f"{out} appeared while this run went on (another run into it?): it is "
        "left as it is, and this run's tables were not written; give another "
        "output directory, or --force to replace it"
    )


@contextmanager
def made_directory(path: Path) -> Iterator[Path]:
    """`path` made (with its missing parents) for the block; on an error, the directories
    it made are removed again if they are empty: a refused run leaves nothing behind."""
    path = Path(path).resolve()  # (x/../y makes no x)
    made: list[Path] = []
    for directory in [path, *path.parents]:
        if directory.exists():
            break
        made.append(directory)
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for directory in made:  # deepest first
            try:
                directory.rmdir()
            except OSError:
                break
        raise
