"""TableWriter: the encodings it chooses per column, and files that do not depend on how the
rows were handed to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from obserae_forensics.errors import UsageError
from obserae_forensics.schema import TIMESTAMP
from obserae_forensics.tables.parquet import TableWriter, read_parquet, read_parquet_head

SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("record_index", pa.uint32(), nullable=False),
        pa.field("first_seen", TIMESTAMP, nullable=False),
        pa.field("port", pa.uint16(), nullable=False),
    ]
)


def _table(n: int) -> pa.Table:
    rng = np.random.default_rng(7)
    steps = rng.integers(-5, 50, n)  # mostly growing, sometimes back
    return pa.Table.from_arrays(
        [
            pa.array([f"{v:016x}" for v in rng.integers(0, 2**63, n)]),
            pa.array((np.cumsum(steps) + 1000).astype(np.uint32)),
            pa.array(1_700_000_000_000_000 + np.cumsum(steps * 1000), TIMESTAMP),
            pa.array(rng.integers(0, 65536, n).astype(np.uint16)),
        ],
        schema=SCHEMA,
    )


def column_chunks(path: Path) -> dict[str, list[Any]]:
    """Each Parquet column's chunks (metadata), row group after row group."""
    meta = pq.ParquetFile(path).metadata
    found: dict[str, list[Any]] = {}
    for group in range(meta.num_row_groups):
        for column in range(meta.num_columns):
            chunk = meta.row_group(group).column(column)
            found.setdefault(chunk.path_in_schema, []).append(chunk)
    return found


def _encodings(path: Path) -> dict[str, set[str]]:
    return {
        column: {e for chunk in chunks for e in chunk.encodings}
        for column, chunks in column_chunks(path).items()
    }


def test_delta_columns_are_delta_packed_and_read_back(tmp_path: Path) -> None:
    table = _table(10_000)
    path = tmp_path / "t.parquet"
    writer = TableWriter(
        path, SCHEMA, row_group_rows=4096, delta_columns=("record_index", "first_seen")
    )
    writer.write(table)
    writer.close()
    encodings = _encodings(path)
    assert "DELTA_BINARY_PACKED" in encodings["record_index"]
    assert "DELTA_BINARY_PACKED" in encodings["first_seen"]
    assert "RLE_DICTIONARY" not in encodings["record_index"]
    assert "DELTA_LENGTH_BYTE_ARRAY" in encodings["session_id"]  # an id column
    assert "RLE_DICTIONARY" in encodings["port"]  # everything else as before
    assert pq.read_table(path).equals(table)


def test_list_columns_take_the_options_of_their_values(tmp_path: Path) -> None:
    """A list column's values are the Parquet column `name.list.element`, and pyarrow ignores
    an option keyed by the list's own name without a word: the session ids of
    sessions_consolidated were written PLAIN and the rule names of sessions without a
    dictionary until the options were keyed by the values' path."""
    schema = pa.schema(
        [
            pa.field("session_ids", pa.list_(pa.string()), nullable=False),
            pa.field("matched_rules", pa.list_(pa.string()), nullable=False),
            pa.field("splits", pa.list_(pa.uint32()), nullable=False),
        ]
    )
    rng = np.random.default_rng(3)
    rules = ["dns-to-resolvers", "smb-lateral", "web-out"]
    table = pa.Table.from_pylist(
        [
            {
                "session_ids": [f"{v:016x}" for v in rng.integers(0, 2**63, 1 + i % 3)],
                "matched_rules": rules[: i % 4],
                "splits": list(range(1 + i % 3)),
            }
            for i in range(3000)
        ],
        schema=schema,
    )
    path = tmp_path / "t.parquet"
    writer = TableWriter(path, schema, row_group_rows=1024)
    writer.write(table)
    writer.close()
    encodings = _encodings(path)
    assert set(encodings) == {
        "session_ids.list.element",
        "matched_rules.list.element",
        "splits.list.element",
    }
    assert "DELTA_LENGTH_BYTE_ARRAY" in encodings["session_ids.list.element"]  # ids
    assert "RLE_DICTIONARY" not in encodings["session_ids.list.element"]
    assert "RLE_DICTIONARY" in encodings["matched_rules.list.element"]  # repeated texts
    assert "RLE_DICTIONARY" in encodings["splits.list.element"]
    assert pq.read_table(path).equals(table)


def test_the_file_does_not_depend_on_the_batches(tmp_path: Path) -> None:
    table = _table(10_000)
    files = []
    for size in (10_000, 999, 4096, 1):
        path = tmp_path / f"{size}.parquet"
        writer = TableWriter(
            path, SCHEMA, row_group_rows=4096, delta_columns=("record_index", "first_seen")
        )
        for batch in table.to_batches(max_chunksize=size):
            writer.write(batch)
        writer.close()
        files.append(path.read_bytes())
    assert all(data == files[0] for data in files[1:])


def test_delta_packing_keeps_the_extremes(tmp_path: Path) -> None:
    """Steps that overflow 64 (or 32) bits wrap in the encoder and come back exact."""
    schema = pa.schema(
        [
            pa.field("source_frame", pa.uint64(), nullable=False),
            pa.field("record_index", pa.uint32(), nullable=False),
            pa.field("arrival", TIMESTAMP, nullable=False),
        ]
    )
    table = pa.Table.from_arrays(
        [
            pa.array(np.array([0, 2**64 - 1, 5, 2**63, 2**63 - 1, 1, 2**64 - 2], dtype=np.uint64)),
            pa.array(np.array([0, 2**32 - 1, 7, 2**31, 2**31 - 1, 3, 0], dtype=np.uint32)),
            pa.array(np.array([-(2**63) + 1, 2**63 - 1, 0, -5, 10**18, -(10**18), 3]), TIMESTAMP),
        ],
        schema=schema,
    )
    path = tmp_path / "t.parquet"
    writer = TableWriter(path, schema, delta_columns=tuple(schema.names))
    writer.write(table)
    writer.close()
    assert all("DELTA_BINARY_PACKED" in e for e in _encodings(path).values())
    assert pq.read_table(path).equals(table)


def test_the_head_spans_row_groups_and_reads_no_more(tmp_path: Path) -> None:
    """`show` on a day of flows wants ten rows: the head stops at the row group holding the
    last one (counted by the reads of the file's row groups)."""
    path = tmp_path / "t.parquet"
    table = _table(1000)
    pq.write_table(table, path, row_group_size=100)
    head, total = read_parquet_head(path, 150, ["port", "session_id"])
    assert total == 1000
    assert head.column_names == ["port", "session_id"]
    assert head.equals(table.select(["port", "session_id"]).slice(0, 150))
    whole, _ = read_parquet_head(path, 5000)
    assert whole.equals(table)
    # the last row group's pages overwritten: the head never decodes them, the whole read does
    meta = pq.ParquetFile(path).metadata
    last = meta.row_group(meta.num_row_groups - 1)
    data = bytearray(path.read_bytes())
    for c in range(last.num_columns):
        chunk = last.column(c)
        begin = chunk.dictionary_page_offset or chunk.data_page_offset
        data[begin : begin + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(data))
    head, _ = read_parquet_head(path, 150)
    assert head.equals(table.slice(0, 150))
    with pytest.raises(UsageError, match="unreadable Parquet"):
        read_parquet(path)


def test_unreadable_tables_are_one_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(_table(100), path)
    whole = path.read_bytes()
    for damaged in (b"", b"PAR1", whole[:-9], whole[: len(whole) // 2] + whole[-8:]):
        path.write_bytes(damaged)
        for read in (lambda: read_parquet(path), lambda: read_parquet_head(path, 5)):
            with pytest.raises(UsageError, match="unreadable Parquet"):
                read()
    pq.write_table(_table(10), path)
    with pytest.raises(UsageError, match="has no column"):
        read_parquet_head(path, 5, ["nope"])


def test_a_rotten_page_is_an_error_not_other_values(tmp_path: Path) -> None:
    """Found by fuzzing: bytes flipped inside a page of sessions_consolidated read back
    without a word, as other times (2006 and 2038 for 2011 data). Pages carry a CRC-32
    now, and reading back checks it."""
    path = tmp_path / "t.parquet"
    writer = TableWriter(path, SCHEMA)
    table = _table(5000).cast(SCHEMA)
    writer.write(table)
    writer.close()
    whole = path.read_bytes()
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(2)  # first_seen
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    silent = []
    for at in range(start + 30, start + chunk.total_compressed_size - 8):
        damaged = bytearray(whole)
        damaged[at] ^= 0x5A
        path.write_bytes(bytes(damaged))
        try:
            unchecked = pq.read_table(path, page_checksum_verification=False)
        except (OSError, pa.ArrowException):
            continue
        if not unchecked.equals(table):
            silent.append(at)
            with pytest.raises(UsageError, match="unreadable Parquet"):
                read_parquet(path)
        if len(silent) >= 5:
            break
    assert silent  # the damage that reads back as other values without the checksums


def test_a_row_group_has_the_same_bytes_however_its_rows_were_handed_in(tmp_path: Path) -> None:
    """Found reading a run of 1 M IPv6 sessions at two batch sizes: same rows, other bytes.
    Parquet cuts pages, and falls back from a dictionary grown past its page, at the chunks
    it is handed as well; a row group joined from the pieces of other emits was written
    chunk by chunk. Here 100,000 distinct 32-character texts (past the dictionary page)
    and counters, written whole and in pieces of 7,777 rows."""
    values = np.arange(100_000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    table = pa.table(
        {
            "text": pa.array([f"{v:016x}{v ^ 0xFFFF:016x}" for v in values]),
            "count": pa.array(values),
        }
    )
    written = []
    for piece in (100_000, 7_777):
        path = tmp_path / f"pieces_{piece}.parquet"
        writer = TableWriter(path, table.schema, row_group_rows=65_536)
        for start in range(0, table.num_rows, piece):
            writer.write(table.slice(start, piece))
        writer.close()
        written.append(path.read_bytes())
    assert written[0] == written[1]
    assert read_parquet(tmp_path / "pieces_7777.parquet").equals(table)
