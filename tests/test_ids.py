"""ids: the 16-hex-digit texts id columns are written as, and the text hashes of pair keys."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.ids import hex_ids, id_sort_keys, text_hashes


@settings(deadline=None)  # the first call loads numba code
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.booleans()), max_size=50))
def test_hex_ids_are_the_values_in_16_lowercase_hex_digits(pairs: list[tuple[int, bool]]) -> None:
    values = np.array([v for v, _ in pairs], dtype=np.uint64)
    valid = np.array([ok for _, ok in pairs], dtype=bool)
    assert hex_ids(values).to_pylist() == [f"{v:016x}" for v, _ in pairs]
    assert hex_ids(values, valid).to_pylist() == [f"{v:016x}" if ok else None for v, ok in pairs]


@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_sort_keys_sort_like_the_values(values: list[int]) -> None:
    keys = id_sort_keys(hex_ids(np.array(values, dtype=np.uint64)))
    assert [int(k, 16) for k in np.sort(keys)] == sorted(values)


def _fnv1a(text: str) -> int:
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return h


@settings(deadline=None)  # the first call may compile numba code (seen: 300 ms > 200)
@given(st.lists(st.text(max_size=12), max_size=30), st.integers(0, 5), st.booleans())
def test_text_hashes_are_fnv1a_of_the_utf8_bytes(texts: list[str], skip: int, large: bool) -> None:
    """string columns are read in place (offsets and slices included), others cast."""
    array = pa.array(texts, pa.large_string() if large else pa.string())[skip:]
    assert [int(h) for h in text_hashes(array)] == [_fnv1a(t) for t in texts[skip:]]
