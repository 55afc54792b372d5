"""The kernel's endpoint occupancy table against a dict: counts, peaks and deletions.

The table is open addressing with backward-shift deletion, whose bug would lose or
misplace an entry only after a particular sequence of collisions; a table of 16 entries
holding up to 8 endpoints collides all the time, so hypothesis finds such sequences. The
whole-kernel properties (test_properties.py) cover it too, but with few endpoints.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.sessionize import kernel as K

ENDPOINTS = [(6, hi, lo, port) for hi in (0, -5) for lo in range(10) for port in (0, 80)]


def _table(entries: int) -> tuple[np.ndarray, np.ndarray]:
    return K._endpoint_table(entries), np.zeros(K.SCALAR_COUNT, dtype=np.int64)


def _assert_same(E: np.ndarray, C: np.ndarray, model: dict[tuple, list[int]]) -> None:
    assert C[K.S_ENDPOINTS] == len(model)
    assert np.count_nonzero(E[:, K.E_TAG]) == len(model)
    for (proto, hi, lo, port), (count, peak) in model.items():
        e = K._endpoint_find(E, K.ENDPOINT_USED | proto << 16 | port, hi, lo)
        assert E[e, K.E_COUNTS] == count | peak << 32


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, len(ENDPOINTS) - 1)), max_size=200))
def test_endpoint_table_equals_a_dict(steps: list[tuple[bool, int]]) -> None:
    E, C = _table(16)
    model: dict[tuple, list[int]] = {}
    steps = steps + [(False, which) for _, which in steps]  # and empty it again
    for acquire, which in steps:
        endpoint = ENDPOINTS[which]
        if acquire:
            if endpoint not in model and len(model) == 8:
                continue  # the kernel keeps the table at most half full
            K._endpoint_acquire(E, C, *endpoint)
            entry = model.setdefault(endpoint, [0, 0])
            entry[0] += 1
            entry[1] = max(entry[1], entry[0])
        elif endpoint in model:
            assert K._endpoint_release(E, C, *endpoint) == model[endpoint][1]
            model[endpoint][0] -= 1
            if model[endpoint][0] == 0:
                del model[endpoint]
        _assert_same(E, C, model)


def test_endpoint_table_keeps_entries_when_it_grows() -> None:
    E, C = _table(16)
    for endpoint in ENDPOINTS[:8]:
        K._endpoint_acquire(E, C, *endpoint)
        K._endpoint_acquire(E, C, *endpoint)
    K._endpoint_release(E, C, *ENDPOINTS[0])
    grown, _ = _table(32)
    K._endpoint_rehash(E, grown)
    model = {endpoint: [2, 2] for endpoint in ENDPOINTS[1:8]}
    model[ENDPOINTS[0]] = [1, 2]
    _assert_same(grown, C, model)
