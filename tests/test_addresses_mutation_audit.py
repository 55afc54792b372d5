"""Behaviour of addresses.py that no test pinned, found by a mutation audit (the
audit-recombine-buckets branch's: 27 small changes, A01-A27, 10 of which no test noticed:
7 real gaps, killed here, and 3 equivalent). The equivalent ones: A06 (address_texts
without its empty case: the general path gives []), A17 (distinct_pairs' table filled up
to n slots, not 2n: more probing, the same pairs), A19 (address_text_array without its
all-IPv4 shortcut: the distinct addresses give the same texts). Each test fails with its
change applied and names it. The module's own tests are in tests/test_addresses.py;
recombine's buckets audit is in tests/recombine/test_buckets_mutation_audit.py."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from obserae_forensics import addresses
from obserae_forensics.addresses import (
    address_array,
    address_text,
    address_text_array,
    ipv6_text_array,
    parse_address,
    with_text_addresses,
)


def column(texts: list[str]) -> pa.FixedSizeBinaryArray:
    """The binary(16) column of `texts`, as readers store addresses."""
    matrix = np.array([list(parse_address(t)) for t in texts], dtype=np.uint8).reshape(-1, 16)
    return address_array(matrix)


def test_only_the_ffff_prefix_makes_an_address_ipv4() -> None:
    """Kills A21 (_ipv4_mapped masking `low >> 32` with 0xFFFF): ::1:ffff:a00:1 is an IPv6
    address whose fifth and sixth groups are 1 and ffff, not 10.0.0.1."""
    texts = ["::1:ffff:a00:1", "10.0.0.1", "::ffff:ffff:a00:1"]
    assert address_text_array(column(texts)).to_pylist() == texts
    assert [address_text(parse_address(t)) for t in texts] == texts


def test_a_slice_of_an_address_column_reads_its_own_rows() -> None:
    """Kills A03 (address_matrix ignoring the array's `offset`): a column sliced (a batch
    of a table, a take's chunk) starts where its offset says, not at its buffer's start."""
    texts = ["10.0.0.1", "2001:db8::1", "10.0.0.3", "fe80::9"]
    whole = column(texts)
    assert address_text_array(whole.slice(1, 2)).to_pylist() == texts[1:3]
    chunked = pa.chunked_array([whole.slice(0, 1), whole.slice(2)])
    assert address_text_array(chunked).to_pylist() == [texts[0], *texts[2:]]


def test_a_chunked_column_of_no_chunks_has_no_texts() -> None:
    """Kills A04 (address_matrix without its `num_chunks == 0` case): a table of no rows
    read from Parquet can hold an address column of no chunks."""
    assert address_text_array(pa.chunked_array([], pa.binary(16))).to_pylist() == []
    table = pa.table({"src_addr": pa.chunked_array([], pa.binary(16))})
    assert with_text_addresses(table, ("src_addr",)).column(0).to_pylist() == []


def test_an_address_of_another_length_is_refused_by_name() -> None:
    """Kills A05 (address_text's `len(address) != 16` -> `> 16`): four bytes (an IPv4
    address not mapped) are refused as what they are, not read as a half address."""
    with pytest.raises(ValueError, match="an address is 16 bytes, not 4"):
        address_text(bytes([10, 0, 0, 1]))
    with pytest.raises(ValueError, match="an address is 16 bytes, not 8"):
        address_text(bytes(8))


def test_text_addresses_are_not_null_and_columns_of_text_are_left_alone() -> None:
    """Kills A23 (with_text_addresses without its binary(16) check) and A24 (the text
    field made nullable): an address column already in text, or absent, is kept as it
    is; a converted one is a string column that holds no null, as every address has a
    text."""
    table = pa.table(
        {"src_addr": column(["10.0.0.1", "::1"]), "dst_addr": pa.array(["10.0.0.2", "::2"])}
    )
    texts = with_text_addresses(table, ("src_addr", "dst_addr", "next_hop"))
    assert texts.schema.field("src_addr") == pa.field("src_addr", pa.string(), nullable=False)
    assert texts.column("src_addr").to_pylist() == ["10.0.0.1", "::1"]
    assert texts.column("dst_addr").to_pylist() == ["10.0.0.2", "::2"]
    assert texts.column_names == ["src_addr", "dst_addr"]


def test_ipv6_text_past_what_an_arrow_string_array_holds_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills A16 (ipv6_text_array's bound `len(data) >= 2**31` -> `>`): Arrow's string
    offsets are int32, 2**31 bytes of text is already one too many (a 2 GiB scratch,
    given here without its memory)."""
    data = np.broadcast_to(np.uint8(48), (2**31,))
    offsets = np.array([0, 2**31], dtype=np.int64)
    monkeypatch.setattr(addresses, "_ipv6_texts", lambda high, low: (data, offsets))
    one = np.ones(1, dtype=np.uint64)
    with pytest.raises(ValueError, match="more than an Arrow string array holds"):
        ipv6_text_array(one, one)
