"""Bucketed tables: buckets keep conversations whole, the merge gives one total order."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from obserae_forensics.matching import consolidate_sessions
from obserae_forensics.pipeline import ReadOptions, SessionizeConfig, sessionize_inputs
from obserae_forensics.report import RunReport
from obserae_forensics.sessionize import SessionPolicy
from obserae_forensics.tables.partitioned import endpoint_buckets


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


def test_bucketed_consolidation_equals_consolidating_everything(corpus: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "run"
    sessionize_inputs(SessionizeConfig(inputs=(corpus / "exports", corpus / "nfcapd"),
                                       out=out, policy=SessionPolicy(),
                                       read=ReadOptions(batch_size=4096)), RunReport())
    whole = consolidate_sessions(pq.read_table(out / "sessions.parquet"), 30_000_000)
    whole = whole.take(pc.sort_indices(whole, sort_keys=[("first_seen", "ascending"),
                                                         ("consolidated_id", "ascending")]))
    got = pq.read_table(out / "sessions_consolidated.parquet").cast(whole.schema)
    assert got.num_rows == whole.num_rows > 1000
    in_order = got.take(pc.sort_indices(got, sort_keys=[("first_seen", "ascending"),
                                                        ("consolidated_id", "ascending")]))
    assert in_order.equals(whole)
