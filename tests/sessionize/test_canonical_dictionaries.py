"""The flows' dictionary columns are re-encoded from their values whatever dictionaries the
held batches brought: the index-level re-encoding against dictionary_encode of the values."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.sessionize.sessionizer import _canonical_dictionaries

TEXTS = ["a.pcap", "b.pcap", "192.0.2.1", "", "c", None]
DICT = pa.dictionary(pa.int32(), pa.string())


def _chunk(
    values: list[str | None], extra: list[str | None], draw_null_indices: bool
) -> pa.DictionaryArray:
    """`values` encoded over a dictionary of its own order, with unused entries (`extra`);
    a null is a dictionary entry, or with `draw_null_indices` a null index."""
    dictionary = list(dict.fromkeys(extra + values))
    indices = pa.array([dictionary.index(v) for v in values], pa.int32())
    if draw_null_indices:
        # a null value as a null index, not as a dictionary entry
        dictionary = [d for d in dictionary if d is not None]
        indices = pa.array([None if v is None else dictionary.index(v) for v in values], pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(dictionary, pa.string()))


@settings(max_examples=80, deadline=None)  # the first call loads numba code
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(TEXTS), max_size=12),
            st.lists(st.sampled_from(TEXTS), max_size=3),
            st.booleans(),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_equals_dictionary_encoding_the_values(
    chunks: list[tuple[list[str | None], list[str | None], bool]],
) -> None:
    column = pa.chunked_array([_chunk(*chunk) for chunk in chunks], DICT)
    other = pa.chunked_array([pa.array(range(len(v)), pa.int64()) for v, _, _ in chunks])
    table = pa.table({"n": other, "source_file": column})
    got = _canonical_dictionaries(table)
    expected = pc.dictionary_encode(column.cast(pa.string()).combine_chunks())
    assert got.column("source_file").num_chunks == 1
    assert got.column("source_file").chunk(0).equals(expected)
    assert got.column("n").to_pylist() == other.to_pylist()


def test_a_dictionary_holding_a_value_twice_is_encoded_by_value() -> None:
    twice = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, 0], pa.int32()), pa.array(["x", "x"], pa.string())
    )
    got = _canonical_dictionaries(pa.table({"exporter": twice}))
    assert got.column("exporter").chunk(0).equals(pc.dictionary_encode(pa.array(["x", "x", "x"])))
