"""Sets of addresses as sorted disjoint intervals over the 128-bit address space.

Every address is 16 bytes, IPv4 mapped into IPv6 (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), so
one set can hold v4 and v6 ranges and one lookup serves both families. A CIDR is the
inclusive interval [network, broadcast]; a set is the union of such intervals, merged.

The surprising thing: numpy compares unstructured `V16` values byte by byte with unsigned
bytes (memcmp order), so 16 big-endian bytes viewed as `V16` sort and `searchsorted` exactly
like the 128-bit integers they encode. One `np.searchsorted` call then places a whole column
of addresses among the interval bounds without splitting them into two uint64 halves and
resolving ties on the high half in a second pass. `tests/matching/test_address_sets.py`
pins that ordering against Python integers.

`AddressCells` turns many sets into one lookup: the bounds of all the sets cut the address
space into elementary cells, each wholly inside or outside every set. Addresses are placed
in cells once; after that, membership in any of the sets is a gather from a small boolean
table per set.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..addresses import V4_MAPPED_PREFIX
from ..errors import UsageError

if TYPE_CHECKING:
    from pyarrow.lib import Int32Type, StringType

ADDRESS_BITS = 128
ADDRESS_TOP = (1 << ADDRESS_BITS) - 1
V4_MAPPED_BASE = int.from_bytes(V4_MAPPED_PREFIX + bytes(4), "big")
ADDRESS_VALUE = np.dtype("V16")  # 16 big-endian bytes, ordered like the 128-bit integer


def address_values(addresses: npt.NDArray[Any]) -> npt.NDArray[np.void]:
    """(n, 16) uint8 addresses (or an n-vector of V16) -> n-vector of V16 values."""
    if addresses.dtype == ADDRESS_VALUE:
        return np.ascontiguousarray(addresses).ravel()
    matrix = np.ascontiguousarray(addresses, dtype=np.uint8).reshape(-1, 16)
    return matrix.view(ADDRESS_VALUE).ravel()


def values_from_ints(numbers: Sequence[int]) -> npt.NDArray[np.void]:
    """128-bit Python integers -> n-vector of V16 values."""
    raw = b"".join(number.to_bytes(16, "big") for number in numbers)
    return np.frombuffer(raw, dtype=ADDRESS_VALUE).copy() if raw else np.empty(0, ADDRESS_VALUE)


def parse_network(text: str) -> tuple[int, int] | None:
    """`10.0.0.0/8`, `2001:db8::/32`, `10.0.0.1` or `::1` -> inclusive (first, last) integers.

    Returns None when `text` does not look like an address at all (then it is a name).
    Raises ValueError with the reason when it looks like one but is wrong: a bad prefix
    length, host bits set (`10.0.0.1/8` is refused rather than widened silently), an
    octet out of range.
    """
    text = text.strip()
    if not text or not (text[0].isdigit() or ":" in text):
        return None
    address_text, slash, prefix_text = text.partition("/")
    if "%" in address_text:  # ipaddress keeps a scope id apart and the value without it
        raise ValueError(f"{address_text!r} has a zone (scope) id; flow records carry none")
    try:
        address = ipaddress.ip_address(address_text)
    except ValueError:
        if ":" in address_text or address_text.replace(".", "").isdigit():
            raise ValueError(f"{address_text!r} is not an IPv4 or IPv6 address") from None
        return None
    bits = address.max_prefixlen
    if slash:
        # ASCII digits, no leading zero: `/٨` and `/08` passed for /8
        if (
            not (prefix_text.isascii() and prefix_text.isdigit())
            or int(prefix_text) > bits
            or (len(prefix_text) > 1 and prefix_text[0] == "0")
        ):
            raise ValueError(f"bad prefix length {prefix_text!r} in {text!r} (0..{bits})")
        prefix = int(prefix_text)
    else:
        prefix = bits
    host_bits = bits - prefix
    value = int(address)
    if value & ((1 << host_bits) - 1):
        network = ipaddress.ip_network(text, strict=False)
        raise ValueError(f"{text!r} has host bits set (did you mean {network}?)")
    if address.version == 4:
        value += V4_MAPPED_BASE
    return value, value + (1 << host_bits) - 1


V4_MAPPED_LAST = V4_MAPPED_BASE + (1 << 32) - 1


def network_intervals(text: str) -> list[tuple[int, int]] | None:
    """parse_network, with an IPv6 CIDR wider than ::ffff:0:0/96 covering IPv6 only: IPv4
    is held mapped into that /96, so `::/0` ("IPv6 traffic", as an analyst writes it) took
    in every IPv4 session too, in filters and in Flow Matrix rules (found by an audit).
    The mapped /96 itself, or a CIDR inside it (`::ffff:10.0.0.0/104`), still names IPv4;
    `any` is written as both families."""
    interval = parse_network(text)
    return None if interval is None else without_mapped(text, interval)


def without_mapped(text: str, interval: tuple[int, int]) -> list[tuple[int, int]]:
    """The interval parse_network gave for `text`, less the IPv4-mapped /96 when `text` is
    an IPv6 CIDR wider than it (network_intervals)."""
    first, last = interval
    if (
        ":" in text
        and first <= V4_MAPPED_BASE
        and V4_MAPPED_LAST <= last
        and ((first, last) != (V4_MAPPED_BASE, V4_MAPPED_LAST))
    ):
        return [
            part
            for part in ((first, V4_MAPPED_BASE - 1), (V4_MAPPED_LAST + 1, last))
            if part[0] <= part[1]
        ]
    return [interval]


@dataclass(frozen=True)
class AddressSet:
    """A set of addresses: sorted, disjoint, non-adjacent inclusive (first, last) intervals."""

    intervals: tuple[tuple[int, int], ...] = ()
    _starts: npt.NDArray[np.void] = field(init=False, repr=False, compare=False)
    _ends: npt.NDArray[np.void] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # one normal form whatever the caller passed: sorted, overlapping and adjacent
        # intervals merged, so that equal sets compare equal and lookups may bisect
        merged: list[tuple[int, int]] = []
        for first, last in sorted(self.intervals):
            if not 0 <= first <= last <= ADDRESS_TOP:
                raise ValueError(f"not an address interval: {first}..{last}")
            if merged and first <= merged[-1][1] + 1:
                if last > merged[-1][1]:
                    merged[-1] = (merged[-1][0], last)
            else:
                merged.append((first, last))
        object.__setattr__(self, "intervals", tuple(merged))
        object.__setattr__(self, "_starts", values_from_ints([s for s, _ in merged]))
        object.__setattr__(self, "_ends", values_from_ints([e for _, e in merged]))

    @classmethod
    def from_intervals(cls, intervals: Iterable[tuple[int, int]]) -> AddressSet:
        """Any inclusive intervals, in any order, overlapping or not."""
        return cls(tuple(intervals))

    @classmethod
    def from_networks(cls, texts: Iterable[str]) -> AddressSet:
        """Union of CIDRs or addresses given as text; ValueError on anything else."""
        intervals = []
        for text in texts:
            found = network_intervals(text)
            if found is None:
                raise ValueError(f"{text!r} is not an address or CIDR")
            intervals.extend(found)
        return cls.from_intervals(intervals)

    def union(self, *others: AddressSet) -> AddressSet:
        return AddressSet.from_intervals(
            [*self.intervals, *(i for other in others for i in other.intervals)]
        )

    def complement(self, within: AddressSet | None = None) -> AddressSet:
        """Addresses of `within` (default: all of them) that are not in this set."""
        universe = within.intervals if within is not None else ((0, ADDRESS_TOP),)
        result: list[tuple[int, int]] = []
        for first, last in universe:
            cursor = first
            for start, end in self.intervals:
                if end < cursor or start > last:
                    continue
                if start > cursor:
                    result.append((cursor, start - 1))
                cursor = max(cursor, end + 1)
            if cursor <= last:
                result.append((cursor, last))
        return AddressSet.from_intervals(result)

    @property
    def size(self) -> int:
        """How many addresses the set holds."""
        return sum(last - first + 1 for first, last in self.intervals)

    def contains(self, addresses: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """bool per address ((n, 16) uint8 or V16 values): is it in the set?"""
        values = address_values(addresses)
        if not self.intervals:
            return np.zeros(len(values), dtype=bool)
        # inside interval i <=> starts[i] <= v <= ends[i] <=> (starts <= v) == (ends < v) + 1;
        # numpy has no elementwise < for void values, but searchsorted orders them.
        started = np.searchsorted(self._starts, values, side="right")
        ended = np.searchsorted(self._ends, values, side="left")
        inside: npt.NDArray[np.bool_] = started == ended + 1
        return inside

    @property
    def families(self) -> frozenset[int]:
        """The IP versions (4, 6) the set holds addresses of: a session's two ends are always
        of one version, so a rule whose sides share none can never match."""
        v4_last = V4_MAPPED_LAST
        found = set()
        for first, last in self.intervals:
            if first <= v4_last and last >= V4_MAPPED_BASE:
                found.add(4)
            if first < V4_MAPPED_BASE or last > v4_last:
                found.add(6)
        return frozenset(found)

    def __contains__(self, text: str) -> bool:
        found = network_intervals(text)
        return found is not None and all(self.covers(interval) for interval in found)

    def covers(self, interval: tuple[int, int]) -> bool:
        """Is the whole inclusive interval inside one of the set's intervals?"""
        first, last = interval
        return any(start <= first and last <= end for start, end in self.intervals)


EMPTY = AddressSet()


class AddressCells:
    """The elementary cells cut by the bounds of many sets, for one-pass membership.

    Cell 0 starts at address 0; cell k (k >= 1) starts at the k-th smallest bound. Every
    cell lies wholly inside or outside each of the sets, so `table(s)[cell]` is membership.
    One extra cell, `NOWHERE`, is in no set: callers send rows that must not match there.
    """

    def __init__(self, sets: Iterable[AddressSet]) -> None:
        bounds: set[int] = set()
        for address_set in sets:
            for first, last in address_set.intervals:
                bounds.add(first)
                if last < ADDRESS_TOP:
                    bounds.add(last + 1)
        bounds.discard(0)
        ordered = sorted(bounds)
        self._bounds = values_from_ints(ordered)
        self._cell_starts = values_from_ints([0, *ordered])
        self.nowhere = len(ordered) + 1

    def locate(self, addresses: npt.NDArray[Any]) -> npt.NDArray[np.int32]:
        """int32 cell of each address ((n, 16) uint8 or V16 values)."""
        values = address_values(addresses)
        return np.searchsorted(self._bounds, values, side="right").astype(np.int32)

    def table(self, address_set: AddressSet) -> npt.NDArray[np.bool_]:
        """bool per cell (NOWHERE included, always False): is the cell in the set?"""
        table = np.zeros(self.nowhere + 1, dtype=bool)
        table[: self.nowhere] = address_set.contains(self._cell_starts)
        return table


# dotted quads as the sessionizer writes them (no leading zeros), parsed by Arrow in bulk
OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
DOTTED_QUAD = rf"^{OCTET}(\.{OCTET}){{3}}$"


def unique_address_values(
    texts: pa.Array[Any] | pa.ChunkedArray[Any], *, column: str
) -> tuple[npt.NDArray[np.void], npt.NDArray[np.int32]]:
    """Text addresses (a string column) -> (distinct V16 values, int index per row).

    Each distinct text is parsed once, so a million sessions between a few thousand hosts
    cost a few thousand parses; canonical dotted quads are split and cast by Arrow, the
    rest (IPv6, anything unusual) go through `ipaddress`. Raises UsageError naming the
    column and the text when one is not an address: such a sessions table did not come
    from a sessionizer.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
    # string texts encode to int32 indices into their distinct texts
    encoded = cast("pa.DictionaryArray[Int32Type, StringType]", pc.dictionary_encode(texts))
    dictionary = encoded.dictionary
    matrix = np.zeros((len(dictionary), 16), dtype=np.uint8)
    quad = pc.match_substring_regex(dictionary, DOTTED_QUAD).to_numpy(zero_copy_only=False)
    if quad.any():
        parts = pc.split_pattern(dictionary.filter(pa.array(quad)), ".")
        octets = pc.list_flatten(parts).cast(pa.uint8()).to_numpy(zero_copy_only=False)
        matrix[quad, 10:12] = 0xFF
        matrix[quad, 12:] = octets.reshape(-1, 4)
    others = np.flatnonzero(~quad)
    for row, text in zip(  # (the texts a dictionary encoding is of hold no null)
        others.tolist(),
        cast("list[str]", dictionary.take(cast(pa.Int64Array, pa.array(others))).to_pylist()),
        strict=True,
    ):
        try:
            parsed = ipaddress.ip_address(text)
        except ValueError:
            raise UsageError(f"sessions column {column}: {text!r} is not an address") from None
        packed = V4_MAPPED_PREFIX + parsed.packed if parsed.version == 4 else parsed.packed
        matrix[row] = np.frombuffer(packed, dtype=np.uint8)
    unique = matrix.view(ADDRESS_VALUE).ravel()
    return unique, encoded.indices.to_numpy(zero_copy_only=False)
