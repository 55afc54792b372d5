"""Flow records held for open sessions, and how an emit gathers those of closing sessions."""

from __future__ import annotations

import pyarrow as pa
import pytest

from obserae_forensics.sessionize import sessionizer as S

from .scenario import ACK, rec, run


def test_few_records_picked_from_many_held_come_out_as_from_one_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five long TCP sessions keep their records held across many small batches while short
    UDP exchanges, each over two batches, close among them: the emits pick a few records
    from several held tables, each table's first and then into output order (one take over
    the held tables as chunks read every held record). The flows and sessions are those of
    the run in one batch."""
    flows = []
    for i in range(300):
        flows.append(rec(i * 1.0, src=f"10.0.{i % 5}.1", flags=ACK))
        if i % 10 in (0, 3):  # two records 3 s apart, closed by idle 30 s later
            start = i - i % 10
            flows.append(rec(i * 1.0, src=f"10.9.{start // 250}.{start % 250}", dport=53, proto=17))
    gathers: list[int] = []
    real = S.pa.concat_tables

    def counted(tables: list[pa.Table], *args: object, **kwargs: object) -> pa.Table:
        gathers.append(sum(table.num_rows for table in tables))
        return real(tables, *args, **kwargs)

    monkeypatch.setattr(S.pa, "concat_tables", counted)
    sessions, flows_out, _ = run(flows, batch_size=4)
    monkeypatch.undo()
    one_sessions, one_flows, _ = run(flows)
    assert sessions.equals(one_sessions) and flows_out.equals(one_flows)
    assert sessions.num_rows == 35
    assert min(gathers) <= 4  # a few picked records joined, not the tables holding them
