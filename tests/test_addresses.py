"""Address columns to text: the numba dotted quads and the general path agree with ipaddress."""

from __future__ import annotations

import ipaddress

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.addresses import (
    address_array,
    address_text,
    address_text_array,
    ipv6_text_array,
    parse_address,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)), max_size=40))
def test_address_texts_equal_ipaddress(addresses: list[ipaddress._BaseAddress]) -> None:
    matrix = np.array([list(parse_address(str(a))) for a in addresses], dtype=np.uint8).reshape(
        -1, 16
    )
    texts = address_text_array(address_array(matrix)).to_pylist()
    expected = [
        str(a.ipv4_mapped) if getattr(a, "ipv4_mapped", None) else str(a) for a in addresses
    ]
    assert texts == expected


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["::", "2001:db8::1", "2001:db8::2", "10.0.0.1", "fe80::1", "::ffff:0:1", "192.0.2.255"]
        ),
        max_size=60,
    )
)
def test_repeated_addresses_each_keep_their_text(texts: list[str]) -> None:
    """Distinct non-IPv4 addresses are formatted once and handed back to every row."""
    matrix = np.array([list(parse_address(t)) for t in texts], dtype=np.uint8).reshape(-1, 16)
    parsed = [ipaddress.ip_address(t) for t in texts]
    expected = [str(a.ipv4_mapped) if getattr(a, "ipv4_mapped", None) else str(a) for a in parsed]
    assert address_text_array(address_array(matrix)).to_pylist() == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(
            st.sampled_from([0, 0, 0, 1, 0xA, 0xF0, 0x100, 0xDB8, 0xFFFF]), min_size=8, max_size=8
        ),
        min_size=1,
        max_size=30,
    )
)
def test_ipv6_texts_equal_ipaddress(groups: list[list[int]]) -> None:
    """The numba RFC 5952 formatter (it replaced ipaddress, ~4-20 µs an address) against
    ipaddress, on addresses made of zero runs of every length and place (ties between runs
    of one length: the first is compressed; a run of one zero group is not) and groups of
    every width. IPv4-mapped addresses are left out: ipaddress shows them dotted since
    Python 3.13, and the callers do."""
    packed = [b"".join(g.to_bytes(2, "big") for g in address) for address in groups]
    packed = [p for p in packed if p[:12] != bytes(10) + b"\xff\xff"]
    words = np.frombuffer(b"".join(packed), dtype=">u8").astype(np.uint64).reshape(-1, 2)
    texts = ipv6_text_array(words[:, 0], words[:, 1]).to_pylist()
    expected = [str(ipaddress.IPv6Address(p)) for p in packed]
    assert texts == expected
    assert [address_text(p) for p in packed] == expected
