"""context.differing, the check behind every capture export's "decoded alone, N of M records
as in the run": it sorts both sides' keys together instead of joining them (a hash join
held ~400 bytes a record, and an export can check millions). Compared here with the rule
written plainly: each expected record against the first decoded record of its key."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.recombine.context import COMPARED, KEYS, differing

KEY = st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 2))
VALUES = st.tuples(st.integers(0, 2), st.sampled_from(["10.0.0.1", "10.0.0.2", None]))


def table(rows: list[tuple[tuple[int, int, int], tuple[int, str | None]]]) -> pa.Table:
    """A record table with COMPARED columns: two varied (one of them with nulls, which
    compare unequal), the rest constant."""
    columns: dict[str, pa.Array] = {
        key: pa.array([row[0][i] for row in rows], pa.int64()) for i, key in enumerate(KEYS)
    }
    for name in COMPARED:
        if name == "packets":
            columns[name] = pa.array([row[1][0] for row in rows], pa.uint64())
        elif name == "src_addr":
            columns[name] = pa.array([row[1][1] for row in rows], pa.string())
        else:
            columns[name] = pa.array([7] * len(rows), pa.int64())
    return pa.table(columns)


def plainly(expected: list, decoded: list) -> tuple[int, tuple[int, int, int] | None]:
    first: dict[tuple[int, int, int], tuple[int, str | None]] = {}
    for key, values in decoded:
        first.setdefault(key, values)
    wrong = [
        key
        for key, values in expected
        if key not in first or None in values or first[key] != values
    ]
    return len(wrong), (min(wrong) if wrong else None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(KEY, VALUES), max_size=25), st.lists(st.tuples(KEY, VALUES), max_size=25))
def test_differing_compares_each_expected_record_with_the_first_decoded_of_its_key(
    expected: list, decoded: list
) -> None:
    assert differing(table(expected), table(decoded)) == plainly(expected, decoded)


def test_a_record_decoded_otherwise_or_missing_is_counted_and_the_first_named() -> None:
    expected = [
        ((0, 40, 1), (5, "10.0.0.1")),
        ((0, 40, 0), (5, "10.0.0.1")),
        ((1, 8, 0), (5, "10.0.0.2")),
        ((0, 12, 3), (5, "10.0.0.2")),
    ]
    decoded = [
        ((0, 40, 1), (5, "10.0.0.1")),
        ((0, 40, 0), (6, "10.0.0.1")),
        ((1, 8, 0), (5, "10.0.0.2")),
        ((2, 0, 0), (1, "10.0.0.1")),
    ]
    assert differing(table(expected), table(decoded)) == (2, (0, 12, 3))
    assert differing(table(expected[:1]), table(decoded)) == (0, None)
    assert differing(table([]), table(decoded)) == (0, None)
    assert differing(table(expected), table([])) == (4, (0, 12, 3))
