"""Reading a run directory (recombine/runs.py): a sessions table with only the columns
recombine needs, as another tool or a trimmed export writes it, is read with the optional
ones filled from the columns present."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from obserae_forensics.errors import UsageError
from obserae_forensics.recombine import recombine_tables
from obserae_forensics.recombine.runs import (
    REQUIRED_SESSION_COLUMNS,
    read_run,
    read_sessions,
    session_batches,
)

from .conftest import session, write_run


def trimmed_run(tmp_path: Path) -> Path:
    rows = [
        session("A", 0, 10, client=("10.0.0.2", 443), server=("10.0.0.1", 40000)),
        session("B", 1, 5, protocol=17, a=("10.0.0.3", 53), b=("10.0.0.4", 5353)),
        session("C", 2, 4, protocol=200, a=("10.0.0.5", 0), b=("10.0.0.6", 0)),
    ]
    path = write_run(tmp_path / "run", rows)
    sessions = pq.read_table(path / "sessions.parquet").select(list(REQUIRED_SESSION_COLUMNS))
    pq.write_table(sessions, path / "sessions.parquet")
    return path


def test_a_sessions_table_of_the_required_columns_only_is_read_with_the_others_filled(
    tmp_path: Path,
) -> None:
    """Client and server are the a and b sides (no role was inferred), the protocol its IANA
    keyword as sessionize writes it (it was the number as text: "6" beside every other
    run's "TCP"), the counters of what was not kept 0."""
    run = read_run(trimmed_run(tmp_path))
    table = read_sessions(run)
    assert table.column("protocol").to_pylist() == ["TCP", "UDP", "200"]
    assert table.column("client_ip").equals(table.column("ip_a"))
    assert table.column("client_port").equals(table.column("port_a"))
    assert table.column("server_ip").equals(table.column("ip_b"))
    assert table.column("server_port").equals(table.column("port_b"))
    assert set(table.column("role_method").to_pylist()) == {"unknown"}
    assert set(table.column("role_confidence").to_pylist()) == {0.0}
    for name in ("flow_count", "late_records", "exporter_domain", "ab_flags", "ba_flags"):
        assert set(table.column(name).to_pylist()) == {0}, name
    batches = pa.concat_tables(list(session_batches(run, 2)))
    assert batches.equals(table)


def test_a_trimmed_run_is_recombined(tmp_path: Path) -> None:
    result = recombine_tables([trimmed_run(tmp_path)])
    assert sorted(result.conversations.column("protocol").to_pylist()) == ["200", "TCP", "UDP"]


def test_a_protocol_number_out_of_range_is_refused_with_its_words(tmp_path: Path) -> None:
    """Found by review: the protocol keyword was filled from the raw column before its type
    was checked, so a number past 255 raised pyarrow's ArrowInvalid, not the refusal every
    other column out of its type gets."""
    path = trimmed_run(tmp_path)
    sessions = pq.read_table(path / "sessions.parquet")
    at = sessions.schema.get_field_index("protocol_number")
    numbers = pa.array([6, 17, 300], pa.int64())
    pq.write_table(sessions.set_column(at, "protocol_number", numbers), path / "sessions.parquet")
    run = read_run(path)
    with pytest.raises(UsageError, match=r"column protocol_number \(int64\) is not uint8"):
        read_sessions(run)
    with pytest.raises(UsageError, match=r"column protocol_number \(int64\) is not uint8"):
        list(session_batches(run, 2))
