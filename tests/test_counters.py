"""counters.exact_sum, and the pipeline's sums of Arrow counter columns, against Python's
own integers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.counters import exact_sum
from obserae_forensics.pipeline import _column_sum


@settings(deadline=None)  # the first call loads numba code
@given(st.lists(st.integers(0, 2**64 - 1), max_size=200))
def test_exact_sum_is_pythons_sum(values: list[int]) -> None:
    assert exact_sum(np.array(values, dtype=np.uint64)) == sum(values)


def test_where_numpy_wraps() -> None:
    values = np.array([2**63 + 8, 2**63 + 1], dtype=np.uint64)
    assert int(values.sum()) == 9  # numpy wraps
    assert exact_sum(values) == 2**64 + 9


@settings(deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.integers(0, 2**64 - 1)), max_size=20), max_size=4))
def test_column_sums_count_nulls_as_zero_across_chunks(chunks: list[list[int | None]]) -> None:
    column = pa.chunked_array([pa.array(chunk, pa.uint64()) for chunk in chunks], pa.uint64())
    expected = sum(value or 0 for chunk in chunks for value in chunk)
    assert _column_sum(column) == expected
    assert _column_sum(column.combine_chunks()) == expected


def test_any_shape_sums_all_its_values() -> None:
    values = np.array([[2**63, 1], [2**63, 2]], dtype=np.uint64)
    assert exact_sum(values) == 2**64 + 3
    assert exact_sum(values.T) == 2**64 + 3
    assert exact_sum(np.uint64(7)) == 7
