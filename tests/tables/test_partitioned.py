"""Bucketed tables: buckets keep conversations whole, scratch files give back what went in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from obserae_forensics.matching import consolidate_sessions
from obserae_forensics.pipeline import ReadOptions, SessionizeConfig, sessionize_inputs
from obserae_forensics.report import RunReport
from obserae_forensics.sessionize import SessionPolicy
from obserae_forensics.tables.parquet import TableWriter
from obserae_forensics.tables.partitioned import (
    BucketedWriter,
    ScratchWriter,
    read_scratch,
    transform_buckets,
)


def numbers(n: int, start: int = 0) -> pa.Table:
    values = np.arange(start, start + n, dtype=np.int64)
    return pa.table({"value": values, "text": pa.array([f"v{v}" for v in values], pa.string())})


def by_last_digit(table: pa.Table, buckets: int) -> tuple[pa.Table, np.ndarray]:
    """A route: bucket = value % buckets, rows of a bucket in their order."""
    bucket = table.column("value").to_numpy() % buckets
    order = np.argsort(bucket, kind="stable")
    return table.take(pa.array(order)), np.bincount(bucket, minlength=buckets)


def test_scratch_gives_back_the_rows_in_order(tmp_path: Path) -> None:
    writer = ScratchWriter(tmp_path / "s.arrow", numbers(0).schema)
    for start in range(0, 49, 7):  # small batches, then more than the write buffer
        writer.write(numbers(7, start))
    writer.write(numbers(0))
    writer.write(numbers(20_000, 49))
    writer.close()
    assert writer.rows == 20_049
    assert read_scratch(tmp_path / "s.arrow").equals(numbers(20_049))


def test_every_row_lands_in_its_bucket_in_arrival_order(tmp_path: Path) -> None:
    writer = BucketedWriter(tmp_path / "buckets", 10, by_last_digit)
    for start in range(0, 1000, 97):
        writer.write(numbers(97, start))
    paths = writer.close()
    assert [p.name for p in paths] == [f"bucket-{n:04d}.arrow" for n in range(10)]
    for number, path in enumerate(paths):
        values = read_scratch(path).column("value").to_pylist()
        assert values == [v for v in range(97 * 11) if v % 10 == number]


def test_transform_buckets_writes_bucket_after_bucket_and_removes_them(tmp_path: Path) -> None:
    writer = BucketedWriter(tmp_path / "buckets", 3, by_last_digit)
    writer.write(numbers(10))
    paths = writer.close()
    out = TableWriter(tmp_path / "out.parquet", numbers(0).schema)
    transform_buckets(paths, lambda table: table.slice(0, 2), out)
    out.close()
    assert pq.read_table(tmp_path / "out.parquet").column("value").to_pylist() == [0, 3, 1, 4, 2, 5]
    assert not any(path.exists() for path in paths)


def test_bucketed_consolidation_equals_consolidating_everything(
    corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    sessionize_inputs(
        SessionizeConfig(
            inputs=(corpus / "exports", corpus / "nfcapd"),
            out=out,
            policy=SessionPolicy(),
            read=ReadOptions(batch_size=4096),
        ),
        RunReport(),
    )
    whole = consolidate_sessions(pq.read_table(out / "sessions.parquet"), 30_000_000)
    got = pq.read_table(out / "sessions_consolidated.parquet").cast(whole.schema)
    assert got.num_rows == whole.num_rows > 1000
    in_order = got.take(
        pc.sort_indices(
            got, sort_keys=[("first_seen", "ascending"), ("consolidated_id", "ascending")]
        )
    )
    assert in_order.equals(whole)
