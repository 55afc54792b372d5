"""counters.exact_sum against Python's own integers."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from obserae_forensics.counters import exact_sum


@given(st.lists(st.integers(0, 2**64 - 1), max_size=200))
def test_exact_sum_is_pythons_sum(values: list[int]) -> None:
    assert exact_sum(np.array(values, dtype=np.uint64)) == sum(values)


def test_where_numpy_wraps() -> None:
    values = np.array([2**63 + 8, 2**63 + 1], dtype=np.uint64)
    assert int(values.sum()) == 9  # numpy wraps
    assert exact_sum(values) == 2**64 + 9
