"""output.py's vectorized pieces against their plain definitions."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.addresses import address_text
from obserae_forensics.sessionize.keys import address_halves
from obserae_forensics.sessionize.output import (
    _address_text_array,
    _output_order,
    exporter_seed,
    id_texts,
)

V4_MAPPED = bytes(10) + b"\xff\xff"

addresses = st.one_of(
    st.binary(min_size=4, max_size=4).map(lambda b: V4_MAPPED + b),
    st.binary(min_size=16, max_size=16),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(addresses, max_size=40))
def test_address_texts_equal_address_text(values: list[bytes]) -> None:
    matrix = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), 16)
    high, low = address_halves(matrix)
    assert _address_text_array(high, low).to_pylist() == [address_text(v) for v in values]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=20), st.data())
def test_id_texts_are_16_hex_digits_of_the_value(ids: list[int], data: st.DataObject) -> None:
    valid = np.array(
        data.draw(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids))), dtype=bool
    )
    texts = id_texts(np.array(ids, dtype=np.uint64), valid).to_pylist()
    assert texts == [f"{i:016x}" if ok else None for i, ok in zip(ids, valid, strict=True)]


def test_exporter_seed_is_blake2b_64_little_endian() -> None:
    digest = hashlib.blake2b(b"192.0.2.1", digest_size=8).digest()
    assert exporter_seed("192.0.2.1") == int.from_bytes(digest, "little")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 4), st.integers(0, 2)), max_size=80))
def test_output_order_is_the_lexicographic_order(keys: list[tuple[int, int, int]]) -> None:
    emit = np.array([k[0] for k in keys], dtype=np.int64)
    ids = np.array([k[1] for k in keys], dtype=np.uint64)
    rank = np.array([k[2] for k in keys], dtype=np.int64)
    serial = np.arange(len(keys), dtype=np.int64)[::-1].copy()
    expected = np.lexsort((serial, rank, ids, emit))
    assert _output_order(emit, ids, rank, serial).tolist() == expected.tolist()


@settings(deadline=None)  # the first call loads numba code
@given(st.lists(st.integers(0, 9), max_size=60), st.booleans(), st.randoms())
def test_flow_order_is_by_session_then_arrival(
    ranks: list[int], shuffled: bool, random: Any
) -> None:
    """Emitted flows: the counting sort (arrival order given) and the general case both
    equal a lexsort by (session rank, arrival index)."""
    from obserae_forensics.sessionize.sessionizer import _by_session_then_arrival

    rank = np.array(ranks, dtype=np.int64)
    index = np.arange(len(ranks), dtype=np.int64) * 3 + 7
    if shuffled:
        random.shuffle(index)
    order = _by_session_then_arrival(rank, index, 10)
    assert (order == np.lexsort((index, rank))).all()
