"""Address sets: V16 ordering, interval membership, CIDR parsing, elementary cells."""

from __future__ import annotations

import bisect
import ipaddress
import itertools

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.addresses import parse_address
from obserae_forensics.errors import UsageError
from obserae_forensics.matching.address_sets import (
    ADDRESS_TOP,
    AddressCells,
    AddressSet,
    address_values,
    parse_network,
    unique_address_values,
    values_from_ints,
)

addresses = st.integers(0, ADDRESS_TOP)
# addresses near each other and near the edges, so that bounds and points collide often
clustered = st.one_of(
    addresses,
    st.integers(0, 40),
    st.integers(ADDRESS_TOP - 40, ADDRESS_TOP),
    st.integers(0, 40).map(lambda x: (1 << 64) + x - 20),
)
intervals = st.lists(st.tuples(clustered, clustered).map(sorted).map(tuple), max_size=8)


@given(st.lists(addresses, max_size=50))
def test_v16_values_sort_like_the_integers_they_encode(numbers: list[int]) -> None:
    values = values_from_ints(numbers)
    assert [int.from_bytes(v.tobytes(), "big") for v in np.sort(values)] == sorted(numbers)


@given(st.lists(clustered, max_size=30), st.lists(clustered, max_size=30))
def test_searchsorted_on_v16_agrees_with_bisect(bounds: list[int], queries: list[int]) -> None:
    ordered = sorted(set(bounds))
    found = np.searchsorted(values_from_ints(ordered), values_from_ints(queries), side="right")
    assert found.tolist() == [bisect.bisect_right(ordered, q) for q in queries]


@settings(max_examples=200)
@given(intervals, st.lists(clustered, max_size=40))
def test_contains_agrees_with_a_plain_check(
    spans: list[tuple[int, int]], queries: list[int]
) -> None:
    address_set = AddressSet.from_intervals(spans)
    expected = [any(a <= q <= b for a, b in spans) for q in queries]
    assert address_set.contains(values_from_ints(queries)).tolist() == expected


@given(intervals)
def test_intervals_are_merged_sorted_and_disjoint(spans: list[tuple[int, int]]) -> None:
    merged = AddressSet.from_intervals(spans).intervals
    for (_, last), (first, _) in itertools.pairwise(merged):
        assert first > last + 1


@given(intervals, st.lists(clustered, max_size=30))
def test_complement_holds_exactly_the_other_addresses(
    spans: list[tuple[int, int]], queries: list[int]
) -> None:
    address_set = AddressSet.from_intervals(spans)
    values = values_from_ints(queries)
    assert (address_set.complement().contains(values) == ~address_set.contains(values)).all()


@settings(max_examples=100)
@given(st.lists(intervals, min_size=1, max_size=5), st.lists(clustered, max_size=40))
def test_cell_tables_give_the_same_membership_as_contains(
    many: list[list[tuple[int, int]]], queries: list[int]
) -> None:
    sets = [AddressSet.from_intervals(spans) for spans in many]
    cells = AddressCells(sets)
    values = values_from_ints(queries)
    located = cells.locate(values)
    for address_set in sets:
        table = cells.table(address_set)
        assert (table[located] == address_set.contains(values)).all()
        assert not table[cells.nowhere]


def test_ipv4_cidr_is_an_ipv4_mapped_interval() -> None:
    first, last = parse_network("10.0.0.0/8")
    assert first.to_bytes(16, "big") == parse_address("10.0.0.0")
    assert last.to_bytes(16, "big") == parse_address("10.255.255.255")
    assert parse_network("192.0.2.7") == (int.from_bytes(parse_address("192.0.2.7"), "big"),) * 2


def test_ipv6_cidr_and_address() -> None:
    first, last = parse_network("2001:db8::/32")
    assert first == int.from_bytes(parse_address("2001:db8::"), "big")
    assert last == first + (1 << 96) - 1
    assert parse_network("::/0") == (0, ADDRESS_TOP)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10.0.0.1/8", r"host bits set \(did you mean 10\.0\.0\.0/8\?\)"),
        ("10.0.0.0/33", r"bad prefix length '33'"),
        ("10.0.0.0/x", r"bad prefix length 'x'"),
        ("10.0.0.256", r"not an IPv4 or IPv6 address"),
        ("2001:db8::/129", r"bad prefix length"),
        ("2001:zz8::", r"not an IPv4 or IPv6 address"),
    ],
)
def test_bad_networks_say_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_network(text)


@pytest.mark.parametrize("text", ["lab", "db-1", "_x", "internal4", ""])
def test_names_are_not_networks(text: str) -> None:
    assert parse_network(text) is None


def test_membership_reads_uint8_matrices_and_text() -> None:
    lab = AddressSet.from_networks(["172.16.238.0/24", "fe80::/64"])
    matrix = np.frombuffer(
        b"".join(parse_address(t) for t in ["172.16.238.131", "172.16.239.1", "fe80::1"]),
        np.uint8,
    ).reshape(3, 16)
    assert lab.contains(matrix).tolist() == [True, False, True]
    assert address_values(matrix).dtype == np.dtype("V16")
    assert "172.16.238.0/25" in lab
    assert "172.16.0.0/16" not in lab
    assert "lab" not in lab


def test_unique_address_values_parse_each_text_once_and_map_back() -> None:
    column = pa.chunked_array([["10.0.0.1", "::1"], ["10.0.0.1", "2001:db8::1"]])
    unique, index = unique_address_values(column, column="client_ip")
    assert len(unique) == 3
    assert [unique[i].tobytes() for i in index] == [
        parse_address(t) for t in ["10.0.0.1", "::1", "10.0.0.1", "2001:db8::1"]
    ]


def test_a_text_that_is_not_an_address_names_the_column() -> None:
    with pytest.raises(UsageError, match=r"sessions column server_ip: 'db1' is not an address"):
        unique_address_values(pa.array(["10.0.0.1", "db1"]), column="server_ip")


@given(
    st.lists(
        st.one_of(
            st.integers(0, 2**32 - 1).map(lambda x: str(ipaddress.IPv4Address(x))),
            st.integers(0, 2**128 - 1).map(lambda x: str(ipaddress.IPv6Address(x))),
        ),
        max_size=30,
    )
)
def test_bulk_parsing_agrees_with_parse_address(texts: list[str]) -> None:
    unique, index = unique_address_values(pa.array(texts, pa.string()), column="ip_a")
    assert [unique[i].tobytes() for i in index] == [parse_address(t) for t in texts]


@pytest.mark.parametrize("text", ["010.0.0.1", "1.2.3.4 ", "256.1.1.1", "1.2.3", ""])
def test_texts_the_bulk_parser_leaves_alone_still_get_checked(text: str) -> None:
    with pytest.raises(UsageError, match="is not an address"):
        unique_address_values(pa.array(["10.0.0.1", text]), column="ip_b")


def test_any_intervals_are_put_in_normal_form() -> None:
    assert AddressSet(((8, 12), (5, 10), (13, 13), (20, 30))).intervals == ((5, 13), (20, 30))
    with pytest.raises(ValueError, match="not an address interval"):
        AddressSet(((3, 2),))
