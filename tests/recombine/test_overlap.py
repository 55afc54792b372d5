"""overlap.twin_counts: which sessions repeat one of an earlier run (the same traffic in two
runs), on hand-made sessions."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from obserae_forensics.recombine.overlap import OverlapCheck, twin_counts
from obserae_forensics.recombine.runs import DEFAULT_SETTINGS, Run
from obserae_forensics.schema import TIMESTAMP

RUNS = [Run(Path(f"r{i}"), index=i, settings=dict(DEFAULT_SETTINGS)) for i in range(3)]


def sessions(rows: list[tuple[int, str, int, int, int]]) -> pa.Table:
    """(run, ip_a, port_a, opened s, ab_bytes); ip_b 10.0.0.9:80, ba_bytes 7."""
    return pa.table(
        {
            "run_index": pa.array([r[0] for r in rows], pa.uint32()),
            "exporter": ["192.0.2.1"] * len(rows),
            "protocol_number": pa.array([6] * len(rows), pa.uint8()),
            "ip_a": [r[1] for r in rows],
            "port_a": pa.array([r[2] for r in rows], pa.uint16()),
            "ip_b": ["10.0.0.9"] * len(rows),
            "port_b": pa.array([80] * len(rows), pa.uint16()),
            "opened_at": pa.array([r[3] * 1_000_000 for r in rows], TIMESTAMP),
            "ab_bytes": pa.array([r[4] for r in rows], pa.uint64()),
            "ba_bytes": pa.array([7] * len(rows), pa.uint64()),
            "ab_packets": pa.array([1] * len(rows), pa.uint64()),
            "ba_packets": pa.array([1] * len(rows), pa.uint64()),
        }
    )


def test_a_copy_in_a_later_run_is_a_twin_and_a_continuation_is_not() -> None:
    table = sessions(
        [
            (0, "10.0.0.1", 5000, 100, 50),
            (1, "10.0.0.1", 5000, 101, 50),  # the same within the grace: a twin
            (1, "10.0.0.1", 5000, 200, 50),  # the same counters 100 s later: not
            (0, "10.0.0.2", 5001, 100, 60),
            (1, "10.0.0.2", 5001, 110, 61),  # other counters: a continuation
            (1, "10.0.0.3", 5002, 100, 70),
            (1, "10.0.0.3", 5002, 100, 70),  # a copy in its own run: not
        ]
    )
    counts, earlier = twin_counts(table, RUNS)
    assert counts == {(1, "192.0.2.1"): 1} and earlier == {(1, "192.0.2.1"): 0}


def test_a_twin_seen_the_other_way_round_and_earlier_is_a_twin() -> None:
    """Each copy names its own first sender `a`; and the later run's copy may open first."""
    swapped = sessions([(0, "10.0.0.1", 5000, 100, 50)])
    other = (
        swapped.set_column(3, "ip_a", pa.array(["10.0.0.9"]))
        .set_column(4, "port_a", pa.array([80], pa.uint16()))
        .set_column(5, "ip_b", pa.array(["10.0.0.1"]))
        .set_column(6, "port_b", pa.array([5000], pa.uint16()))
    )
    other = other.set_column(8, "ab_bytes", pa.array([7], pa.uint64())).set_column(
        9, "ba_bytes", pa.array([50], pa.uint64())
    )
    other = other.set_column(0, "run_index", pa.array([2], pa.uint32())).set_column(
        7, "opened_at", pa.array([99_000_000], TIMESTAMP)
    )
    counts, earlier = twin_counts(pa.concat_tables([swapped, other]), RUNS)
    assert counts == {(2, "192.0.2.1"): 1} and earlier == {(2, "192.0.2.1"): 0}
    assert twin_counts(pa.concat_tables([swapped, other]), RUNS[:1]) == ({}, {})


def test_a_run_is_noted_when_half_its_sessions_of_an_exporter_are_twins() -> None:
    """At least half, and at least MIN_TWINS (a periodic probe on fixed ports makes a twin
    now and then)."""

    def noted(copies: int, others: int) -> list[str]:
        runs = [Run(Path(f"r{i}"), index=i, settings=dict(DEFAULT_SETTINGS)) for i in range(2)]
        rows = [(run, f"10.0.0.{n}", 5000, 100, 50) for n in range(copies) for run in (0, 1)]
        rows += [(1, f"10.0.1.{n}", 5000, 100, 50) for n in range(others)]
        check = OverlapCheck()
        table = sessions(rows)
        check.count(table)
        check.add(twin_counts(table, runs))
        check.note(runs)
        assert runs[0].overlaps == []
        return runs[1].overlaps

    assert noted(1, 1) == [] and noted(4, 0) == [] and noted(5, 6) == []
    [note] = noted(5, 5)
    assert note.startswith("5 of its 10 sessions of exporter 192.0.2.1 repeat one of run 0")
