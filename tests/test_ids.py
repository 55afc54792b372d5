"""ids: the 16-hex-digit texts every id column is written as."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.ids import hex_ids, id_sort_keys


@settings(deadline=None)  # the first call loads numba code
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.booleans()), max_size=50))
def test_hex_ids_are_the_values_in_16_lowercase_hex_digits(pairs: list[tuple[int, bool]]
                                                           ) -> None:
    values = np.array([v for v, _ in pairs], dtype=np.uint64)
    valid = np.array([ok for _, ok in pairs], dtype=bool)
    assert hex_ids(values).to_pylist() == [f"{v:016x}" for v, _ in pairs]
    assert hex_ids(values, valid).to_pylist() == [f"{v:016x}" if ok else None
                                                  for v, ok in pairs]


@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_sort_keys_sort_like_the_values(values: list[int]) -> None:
    keys = id_sort_keys(hex_ids(np.array(values, dtype=np.uint64)))
    assert [int(k, 16) for k in np.sort(keys)] == sorted(values)
