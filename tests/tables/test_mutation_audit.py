"""Behaviour of the table writers that no test pinned, found by a mutation audit (the
audit-tables branch's: 66 small changes to tables/parquet.py, partitioned.py, scratch.py,
manifest.py, evidence.py, layout.py and sessionize/output.py, 35 of which no test
noticed, 10 of those equivalent). Most are in what a reader of the Parquet tables sees
and no test looked at: which columns carry statistics, dictionaries and ZSTD, the row
group sizes, a dictionary column written as text, columns handed in another order, a run
with no sessions, the manifest's key order; the rest in files written whole (a failed
write, the earlier output put back when --force's rename fails), --force's refusals
(before the run; a directory holding the current one or a linked input; every file a run
writes replaced), and the buckets (their order, their compression). Left: 10 changes
with no effect on any file the tool writes: no table carries schema or field metadata,
and their Parquet types read back as their Arrow schemas without the one stored; pyarrow
ignores per-column options named after a list column; a row group flushed at `>`
instead of `>=` gives the same groups; `show` never asks for 0 rows; work directory names
are 8 characters; a run file that does not exist is no input's same file; exporter ranks
only break ties of 64-bit ids. Each test fails with its change applied and names it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from obserae_forensics.errors import UsageError
from obserae_forensics.schema import TIMESTAMP
from obserae_forensics.tables.evidence import refuse_directory_over_evidence
from obserae_forensics.tables.manifest import read_manifest
from obserae_forensics.tables.parquet import (
    ROW_GROUP_ROWS,
    WRITE_TABLE_ROWS,
    RowGroupWriter,
    TableWriter,
    check_columns,
    read_parquet,
    same_kind,
    staged_directory,
    write_atomically,
    write_json,
    write_parquet,
)
from obserae_forensics.tables.partitioned import BucketedWriter, ScratchWriter, read_scratch
from obserae_forensics.tables.scratch import OwnedDirectory, sweep
from tests.tables.test_parquet import SCHEMA, _encodings, _table
from tests.tables.test_partitioned import by_last_digit, numbers
from tests.tables.test_scratch import dead

# every kind of column TableWriter treats apart: an id, a list of ids, text, a list of
# text, numbers, a time, a flag, and a dictionary column as the flows' `exporter` is
WIDE = pa.schema(
    [
        pa.field("session_id", pa.string(), nullable=False),
        pa.field("session_ids", pa.list_(pa.string()), nullable=False),
        pa.field("state", pa.string(), nullable=False),
        pa.field("rules", pa.list_(pa.string()), nullable=False),
        pa.field("port", pa.uint16(), nullable=False),
        pa.field("bytes", pa.uint64()),
        pa.field("opened_at", TIMESTAMP, nullable=False),
        pa.field("late", pa.bool_(), nullable=False),
        pa.field("exporter", pa.dictionary(pa.int32(), pa.string()), nullable=False),
    ]
)
PLAIN_WIDE = pa.schema(
    [pa.field("exporter", pa.string(), nullable=False) if f.name == "exporter" else f for f in WIDE]
)


def wide(n: int, start: int = 0) -> pa.Table:
    """`n` rows of WIDE; each batch's `exporter` dictionary holds its own values only."""
    rows = range(start, start + n)
    exporters = pa.array([f"192.0.2.{i % 3}" for i in rows]).dictionary_encode()
    return pa.Table.from_arrays(
        [
            pa.array([f"{i * 0x9E3779B97F4A7C15 % 2**64:016x}" for i in rows]),
            pa.array([[f"{i:016x}", f"{i + 1:016x}"] for i in rows]),
            pa.array(["closed" if i % 4 else "open" for i in rows]),
            pa.array([["r1"] if i % 5 == 0 else [] for i in rows], pa.list_(pa.string())),
            pa.array(np.array([i % 1024 for i in rows], dtype=np.uint16)),
            pa.array([None if i % 7 == 0 else i * 100 for i in rows], pa.uint64()),
            pa.array([1_700_000_000_000_000 + 1000 * i for i in rows], TIMESTAMP),
            pa.array([i % 2 == 0 for i in rows]),
            exporters.cast(pa.dictionary(pa.int32(), pa.string())),
        ],
        schema=WIDE,
    )


def written(path: Path, *tables: pa.Table, **options: Any) -> Path:
    """`path` as TableWriter writes `tables` (the schema of the first, or `schema`)."""
    writer = TableWriter(path, options.pop("schema", tables[0].schema), **options)
    for table in tables:
        writer.write(table)
    writer.close()
    return path


def chunks(path: Path) -> dict[str, Any]:
    """The first row group's column chunks by column path."""
    group = pq.ParquetFile(path).metadata.row_group(0)
    return {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}


# --- TableWriter: the schema written -----------------------------------------------------


def test_a_dictionary_column_is_written_and_read_back_as_plain_text(tmp_path: Path) -> None:
    """Kills P01 (`plain_schema` keeps dictionary types): README, Outputs: the flows'
    `exporter` and `source_file` are cast to plain strings before writing, since a
    dictionary follows the batches it was built in."""
    path = written(tmp_path / "t.parquet", wide(10), wide(20, 10))
    assert pq.read_schema(path).field("exporter").type == pa.string()
    assert read_parquet(path).equals(pa.concat_tables([wide(10), wide(20, 10)]).cast(PLAIN_WIDE))


def test_columns_handed_in_another_order_are_written_in_the_schemas(tmp_path: Path) -> None:
    """Kills P06 (`_normalized` without `.select(self.schema.names)`): a table whose
    columns come in another order, or with more columns than the schema, is written in the
    schema's columns and order."""
    table = _table(50)
    shuffled = table.select(["port", "first_seen", "session_id", "record_index"])
    extra = table.append_column("note", pa.array(["x"] * 50))
    path = written(tmp_path / "t.parquet", shuffled, extra, schema=SCHEMA)
    back = read_parquet(path)
    assert back.schema.names == SCHEMA.names
    assert back.equals(pa.concat_tables([table, table]))


def test_statistics_for_number_and_time_columns_only(tmp_path: Path) -> None:
    """Kills P10 (statistics on text), P12 (`_statistics_pay` negated) and P20
    (`write_statistics=True`): README, Outputs: row groups carry min/max statistics for
    number and time columns (a filter on `opened_at` skips row groups), not for text, list
    and id columns."""
    found = {
        name: chunk.is_stats_set
        for name, chunk in chunks(written(tmp_path / "t.parquet", wide(100))).items()
    }
    assert found == {
        "session_id": False,
        "session_ids.list.element": False,
        "state": False,
        "rules.list.element": False,
        "port": True,
        "bytes": True,
        "opened_at": True,
        "late": True,
        "exporter": False,
    }


def test_times_get_no_dictionary(tmp_path: Path) -> None:
    """Kills P13 (timestamps given a dictionary attempt): microsecond times are nearly all
    distinct, and a dictionary attempt cost time and gave a larger file (parquet.py)."""
    encodings = _encodings(written(tmp_path / "t.parquet", wide(1000)))
    assert not encodings["opened_at"] & {"RLE_DICTIONARY", "PLAIN_DICTIONARY"}
    assert "RLE_DICTIONARY" in encodings["state"] and "RLE_DICTIONARY" in encodings["port"]


def test_tables_are_zstd_compressed(tmp_path: Path) -> None:
    """Kills P17 (TableWriter's default compression `zstd` -> `snappy`): every column
    chunk of the tables a run writes is ZSTD."""
    path = written(tmp_path / "t.parquet", wide(100))
    assert {chunk.compression for chunk in chunks(path).values()} == {"ZSTD"}


# --- TableWriter: row groups --------------------------------------------------------------


def test_row_groups_are_131072_rows(tmp_path: Path) -> None:
    """Kills P22 (`ROW_GROUP_ROWS` 131,072 -> 131,071): the fixed row group size is part
    of the byte-identical files (a run's tables are the same file for the same input)."""
    assert ROW_GROUP_ROWS == 131_072
    table = pa.table({"port": pa.array(np.zeros(ROW_GROUP_ROWS + 1, dtype=np.uint16))})
    path = written(tmp_path / "t.parquet", table.slice(0, 1000), table.slice(1000))
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [131_072, 1]


def test_a_writer_given_no_rows_or_whole_row_groups_closes_cleanly(tmp_path: Path) -> None:
    """Kills P27 (`close` flushes with nothing pending: pa.concat_tables([]) raised): a
    table with no rows is a file with the schema (a run with no sessions), and rows that
    fill whole row groups leave no empty group behind."""
    empty = written(tmp_path / "empty.parquet", wide(0), schema=WIDE)
    assert read_parquet(empty).equals(PLAIN_WIDE.empty_table())
    full = written(tmp_path / "full.parquet", wide(6), row_group_rows=3)
    meta = pq.ParquetFile(full).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [3, 3]


# --- RowGroupWriter: the file pq.write_table writes ---------------------------------------


def test_the_default_row_groups_are_those_of_pq_write_table(tmp_path: Path) -> None:
    """Kills P37 (`WRITE_TABLE_ROWS` 1 << 20 -> 1 << 19): a table written in pieces is
    the file write_parquet writes byte for byte, row groups of 1,048,576 rows included."""
    table = pa.table({"flag": pa.array(np.zeros(WRITE_TABLE_ROWS + 5, dtype=np.int8))})
    write_parquet(table, tmp_path / "whole.parquet")
    writer = RowGroupWriter(tmp_path / "pieces.parquet", table.schema)
    for start in range(0, table.num_rows, 300_000):
        writer.write(table.slice(start, 300_000))
    writer.close()
    assert (tmp_path / "pieces.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    meta = pq.ParquetFile(tmp_path / "pieces.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1 << 20, 5]


# --- reading back: the head, column checks ------------------------------------------------


def test_integers_stand_for_floats(tmp_path: Path) -> None:
    """Kills P41 (`same_kind`: integers no longer stand for floats): a sessions table whose
    `role_confidence` an editor wrote as whole numbers (int64) is read as floats, where
    text standing for them is refused."""
    assert same_kind(pa.int64(), pa.float64()) and same_kind(pa.uint8(), pa.float64())
    assert same_kind(pa.float32(), pa.float64()) and not same_kind(pa.string(), pa.float64())
    wanted: dict[str, pa.DataType] = {"role_confidence": pa.float64()}
    check_columns(tmp_path, pa.table({"role_confidence": [1, 0]}), wanted, what="sessions table")
    with pytest.raises(UsageError, match="column role_confidence is string, not double"):
        check_columns(tmp_path, pa.table({"role_confidence": ["1"]}), wanted, what="sessions")


# --- JSON, files written whole, output directories ----------------------------------------


def test_json_keeps_the_order_it_is_given_and_ends_in_a_newline(tmp_path: Path) -> None:
    """Kills P42 (`write_json` `sort_keys=False` -> `True`): the manifest reads in the order
    it is written (the tool, the command and its settings first), not alphabetically."""
    write_json(tmp_path / "m.json", {"tool": {"version": 1, "name": "x"}, "command": "s"})
    text = (tmp_path / "m.json").read_text()
    assert list(json.loads(text)) == ["tool", "command"]
    assert list(json.loads(text)["tool"]) == ["version", "name"]
    assert text.endswith("}\n") and '\n  "command": "s"\n' in text


def test_a_failed_write_leaves_neither_half_a_file_nor_a_changed_one(tmp_path: Path) -> None:
    """Kills P53 (`write_atomically` renames the temporary into place even when the write
    fails): an export that fails half-way (a full disk) leaves no half file at its target,
    and an earlier file there as it was."""
    target = tmp_path / "conv.csv"

    def half(path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    target.write_text("earlier")
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half)
    assert target.read_text() == "earlier" and list(tmp_path.iterdir()) == [target]


def test_force_over_a_directory_of_other_files_is_refused_before_the_run(tmp_path: Path) -> None:
    """Kills P46 (staged_directory's first `check_replaceable(out)` dropped): `--out ~/cases
    --force` is refused before any work, not after the whole run at the rename."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "case.txt").write_text("keep me")
    entered = []
    with (
        pytest.raises(UsageError, match=r"holds case\.txt, which no run writes"),
        staged_directory(notes, force=True),
    ):
        entered.append(True)
    assert entered == [] and (notes / "case.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]


def test_an_earlier_output_is_put_back_when_the_new_one_cannot_be_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills P47 (`_commit` no longer puts the earlier output back): --force retires the
    earlier output, then renames the new one in; when that rename fails, the earlier
    output is where it was, whole, and nothing is left beside it."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text("earlier")
    real = os.replace

    def refused(source: Any, target: Any) -> None:
        if Path(target) == out and Path(source).name.endswith(".partial"):
            raise OSError("refused")
        real(source, target)

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(OSError, match="refused"), staged_directory(out, force=True) as staging:
        (staging / "manifest.json").write_text("new")
    assert (out / "manifest.json").read_text() == "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_directory_holding_the_current_one_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills P49 (`check_replaceable` without `out.resolve() in here.parents`): `--out ..
    --force` from inside an earlier run's subdirectory is refused, like `--out .`."""
    out = tmp_path / "run"
    (out / "sub").mkdir(parents=True)
    (out / "manifest.json").write_text("earlier")
    monkeypatch.chdir(out / "sub")
    with (
        pytest.raises(UsageError, match="is the current directory or holds it"),
        staged_directory(out, force=True),
    ):
        pass
    assert (out / "manifest.json").read_text() == "earlier"


# --- scratch files and buckets ------------------------------------------------------------


def test_scratch_rows_of_other_types_are_cast_to_the_files_schema(tmp_path: Path) -> None:
    """Kills T01 (ScratchWriter.write without its cast): rows handed in with other but
    castable types (int32 values, a dictionary text) are written in the file's schema."""
    schema = numbers(0).schema
    writer = ScratchWriter(tmp_path / "s.arrow", schema)
    loose = numbers(5)
    loose = loose.set_column(0, "value", loose.column("value").cast(pa.int32()))
    loose = loose.set_column(1, "text", loose.column("text").dictionary_encode())
    writer.write(loose)
    writer.close()
    assert read_scratch(tmp_path / "s.arrow").equals(numbers(5))


def test_buckets_come_back_in_bucket_order_whatever_was_written_first(tmp_path: Path) -> None:
    """Kills T02 (BucketedWriter.close returns its buckets in the order they were first
    written): transform_buckets writes them in that order, so the table's row order
    followed which conversations came first instead of the buckets alone."""
    writer = BucketedWriter(tmp_path / "buckets", 10, by_last_digit)
    writer.write(numbers(2, 7))  # buckets 7 and 8 first
    writer.write(numbers(10, 0))
    paths = writer.close()
    assert [p.name for p in paths] == [f"bucket-{n:04d}.arrow" for n in range(10)]


def test_buckets_are_compressed_when_asked(tmp_path: Path) -> None:
    """Kills T03 (BucketedWriter no longer hands `compression` to its files) and T05
    (ScratchWriter ignores it): recombine's buckets of whole sessions are LZ4, tens of GB
    of disk for a day of them otherwise."""
    table = pa.table(
        {"value": pa.array(np.zeros(50_000, dtype=np.int64)), "text": ["x" * 20] * 50_000}
    )
    sizes = {}
    for compression in (None, "lz4"):
        writer = BucketedWriter(
            tmp_path / str(compression),
            1,
            lambda t, buckets: (t, np.array([t.num_rows])),
            compression=compression,
        )
        writer.write(table)
        (path,) = writer.close()
        assert read_scratch(path).equals(table)
        sizes[compression] = path.stat().st_size
    assert sizes["lz4"] * 4 < sizes[None]


def test_sweep_returns_what_it_removed_in_name_order(tmp_path: Path) -> None:
    """Kills S03 (sweep lists the directory unsorted): the run says which work directories
    of killed runs it removed, in name order, the same on every filesystem."""
    gone = [dead(OwnedDirectory(tmp_path, ".run.", ".partial")) for _ in range(8)]
    removed = sweep(tmp_path, ".run.", ".partial")
    assert removed == sorted(gone) and len(removed) == 8


# --- manifests ------------------------------------------------------------------------------


def test_a_manifest_that_is_no_object_or_no_text_is_one_usage_error(tmp_path: Path) -> None:
    """Kills M02 (a manifest that is not a JSON object accepted) and M03 (one that is not
    UTF-8 raised UnicodeDecodeError): each is one line naming the file."""
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(UsageError, match="the manifest is not a JSON object"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_bytes(b'{"tool": "\xff"}')
    with pytest.raises(UsageError, match="unreadable manifest"):
        read_manifest(tmp_path)


# --- evidence and the files of a run -------------------------------------------------------


def test_force_replaces_a_directory_holding_every_file_a_run_writes(tmp_path: Path) -> None:
    """Kills L03 (SESSIONIZE_FILES without session_matches.parquet): an earlier run with a
    Flow Matrix (README, Outputs), recombined into its own directory, is an earlier output
    that --force replaces whole. The names are written out: RUN_FILES is what is tested."""
    out = tmp_path / "run"
    out.mkdir()
    for name in (
        "sessions.parquet",
        "flows.parquet",
        "exporters.parquet",
        "session_matches.parquet",
        "sessions_consolidated.parquet",
        "manifest.json",
        "sessions_recombined.parquet",
        "recombined_fragments.parquet",
        "report.md",
        "report.json",
        "timeline.png",
    ):
        (out / name).write_bytes(b"earlier")
    with staged_directory(out, force=True) as staging:
        (staging / "manifest.json").write_text("new")
    assert [p.name for p in out.iterdir()] == ["manifest.json"]


def test_a_directory_holding_an_input_named_through_a_link_is_not_replaced(
    tmp_path: Path,
) -> None:
    """Kills E02 (refuse_directory_over_evidence without the input's resolved parents): an
    input given as a symlink to a capture inside `--out` is still that capture."""
    caps = tmp_path / "caps"
    caps.mkdir()
    (caps / "a.pcap").write_bytes(b"capture")
    link = tmp_path / "link.pcap"
    link.symlink_to(caps / "a.pcap")
    with pytest.raises(UsageError, match="holds the input"):
        refuse_directory_over_evidence(caps, [link], "--out")
    refuse_directory_over_evidence(tmp_path / "other", [link], "--out")
