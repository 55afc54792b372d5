"""Bucketed tables: buckets keep conversations whole, the merge gives one total order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.matching import consolidate_sessions
from obserae_forensics.pipeline import ReadOptions, SessionizeConfig, sessionize_inputs
from obserae_forensics.report import RunReport
from obserae_forensics.sessionize import SessionPolicy
from obserae_forensics.tables.parquet import TableWriter
from obserae_forensics.tables.partitioned import ScratchWriter, endpoint_buckets, merge_sorted


def test_both_directions_of_a_pair_share_a_bucket() -> None:
    table = pa.table({
        "protocol_number": pa.array([6, 6, 17, 6], pa.uint8()),
        "ip_a": ["10.0.0.1", "10.0.0.2", "10.0.0.1", "2001:db8::1"],
        "port_a": pa.array([1234, 80, 1234, 5], pa.uint16()),
        "ip_b": ["10.0.0.2", "10.0.0.1", "10.0.0.2", "10.0.0.1"],
        "port_b": pa.array([80, 1234, 80, 6], pa.uint16()),
    })
    buckets = endpoint_buckets(table, 1024)
    assert buckets[0] == buckets[1]
    assert len(set(buckets.tolist())) == 3
    assert (endpoint_buckets(table, 1024) == buckets).all()  # no hash seed involved


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 10**6)), max_size=60),
                min_size=1, max_size=6), st.integers(1, 17))
def test_merge_sorted_is_a_total_sort(tmp_path_factory: object, parts: list, chunk: int
                                      ) -> None:
    directory = tmp_path_factory.mktemp("merge")  # type: ignore[attr-defined]
    paths = []
    everything = []
    for index, rows in enumerate(parts):
        rows = sorted(set(rows))
        everything += rows
        path = directory / f"p{index}.arrow"
        scratch = ScratchWriter(path, pa.schema([("t", pa.int64()), ("id", pa.string())]))
        scratch.write(pa.table({"t": pa.array([r[0] for r in rows], pa.int64()),
                                "id": pa.array([f"{r[1]:016x}" for r in rows])}))
        scratch.close()
        paths.append(path)
    out = directory / "out.parquet"
    writer = TableWriter(out, pa.schema([("t", pa.int64()), ("id", pa.string())]))
    merge_sorted(paths, writer, ("t", "id"), chunk_rows=chunk)
    writer.close()
    merged = pq.read_table(out)
    assert list(zip(merged["t"].to_pylist(), merged["id"].to_pylist(), strict=True)) == sorted(
        (t, f"{i:016x}") for t, i in everything)


def test_bucketed_consolidation_equals_consolidating_everything(corpus: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "run"
    sessionize_inputs(SessionizeConfig(inputs=(corpus / "exports", corpus / "nfcapd"),
                                       out=out, policy=SessionPolicy(),
                                       read=ReadOptions(batch_size=4096)), RunReport())
    whole = consolidate_sessions(pq.read_table(out / "sessions.parquet"), 30_000_000)
    whole = whole.take(pc.sort_indices(whole, sort_keys=[("first_seen", "ascending"),
                                                         ("consolidated_id", "ascending")]))
    got = pq.read_table(out / "sessions_consolidated.parquet")
    assert got.num_rows == whole.num_rows > 1000
    assert got.cast(whole.schema).equals(whole)
    assert np.all(np.diff(got["first_seen"].cast(pa.int64()).to_numpy()) >= 0)
