"""16-byte addresses (IPv4 mapped into IPv6) to and from text, a whole column at a time.

Readers store every address as 16 bytes so that v4 and v6 share one column and one key;
outputs show the usual text forms (`10.0.0.1`, `2001:db8::1`).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .jit_cache import drop_stale_jit_cache, njit

if TYPE_CHECKING:
    from typing_extensions import Buffer

V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def v4_to_mapped(addresses: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """uint32 host-order IPv4 addresses -> (n, 16) uint8 IPv4-mapped addresses."""
    n = len(addresses)
    out = np.zeros((n, 16), dtype=np.uint8)
    out[:, 10] = 0xFF
    out[:, 11] = 0xFF
    out[:, 12:16] = addresses.astype(">u4").view(np.uint8).reshape(n, 4)
    return out


def address_array(matrix: npt.NDArray[Any]) -> pa.FixedSizeBinaryArray:
    """(n, 16) uint8 -> Arrow binary(16) array without copying row by row."""
    matrix = np.ascontiguousarray(matrix, dtype=np.uint8)
    buffer = pa.py_buffer(matrix.tobytes())
    # from_buffers makes an array of the type given: the stubs type it as a generic Array
    return cast(
        pa.FixedSizeBinaryArray,
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(matrix), [None, buffer]),
    )


def address_matrix(column: pa.Array[Any] | pa.ChunkedArray[Any]) -> npt.NDArray[np.uint8]:
    """Arrow binary(16) column -> (n, 16) uint8 matrix."""
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 0:
            return np.zeros((0, 16), dtype=np.uint8)
        return np.concatenate([address_matrix(chunk) for chunk in column.chunks])
    data = column.buffers()[1]
    start = column.offset * 16
    # ignored: numpy's stubs, before Python 3.12, let np.frombuffer read only the builtin
    # bytes-like types, not an Arrow buffer (which has the buffer protocol)
    raw: npt.NDArray[np.uint8] = np.frombuffer(  # type: ignore[call-overload]
        data, dtype=np.uint8, count=len(column) * 16, offset=start
    )
    return raw.reshape(len(column), 16)


def address_text(address: bytes) -> str:
    """One 16-byte address to its text form (IPv4-mapped shown as dotted quad)."""
    if len(address) != 16:
        raise ValueError(f"an address is 16 bytes, not {len(address)}")
    words = np.frombuffer(address, dtype=">u8").astype(np.uint64)
    return str(word_text_array(words[:1], words[1:])[0])


def address_texts(matrix: npt.NDArray[Any]) -> list[str]:
    """(n, 16) uint8 (or n 16-byte strings) -> text forms, as address_text_array gives
    them."""
    if len(matrix) == 0:
        return []
    rows = np.ascontiguousarray(matrix).view(np.uint8).reshape(len(matrix), 16)
    # every address has a text (no nulls)
    return cast("list[str]", address_text_array(address_array(rows)).to_pylist())


def parse_address(text: str) -> bytes:
    """Text address (v4 or v6) -> 16 bytes."""
    parsed = ipaddress.ip_address(text)
    if parsed.version == 4:
        return V4_MAPPED_PREFIX + parsed.packed
    return parsed.packed


@njit(cache=True, nogil=True)
def _dotted_quads(
    values: npt.NDArray[np.uint32], offsets: npt.NDArray[np.int32]
) -> npt.NDArray[np.uint8]:
    """IPv4 addresses (uint32 values) as dotted quads into one buffer at `offsets`."""
    out = np.empty(offsets[-1], dtype=np.uint8)
    for i in range(len(values)):
        at = offsets[i]
        for k in range(3, -1, -1):
            octet = (values[i] >> np.uint32(8 * k)) & np.uint32(255)
            if octet >= 100:
                out[at] = 48 + octet // 100
                at += 1
            if octet >= 10:
                out[at] = 48 + (octet // 10) % 10
                at += 1
            out[at] = 48 + octet % 10
            at += 1
            if k:
                out[at] = 46  # "."
                at += 1
    return out


def dotted_quad_array(values: npt.NDArray[Any]) -> pa.StringArray:
    """uint32 IPv4 addresses -> Arrow strings, formatted in numba: scans meet millions of
    distinct hosts, so no Python object per address."""
    values = np.ascontiguousarray(values, dtype=np.uint32)
    octets = [(values >> np.uint32(8 * k)) & np.uint32(255) for k in range(4)]
    lengths = 3 + sum((1 + (octet >= 10) + (octet >= 100)).astype(np.int32) for octet in octets)
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = _dotted_quads(values, offsets)
    # numpy's stubs declare ndarray's buffer protocol (__buffer__) only for Python 3.12 on
    return pa.StringArray.from_buffers(
        len(values), pa.py_buffer(cast("Buffer", offsets)), pa.py_buffer(cast("Buffer", data))
    )


@njit(cache=True, nogil=True)
def _ipv6_texts(
    high: npt.NDArray[np.uint64], low: npt.NDArray[np.uint64]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """IPv6 addresses (two big-endian 64-bit words each) in RFC 5952 text: lowercase hex
    without leading zeros, the longest run of two or more zero groups (the first of equal
    ones) as "::". -> (UTF-8 bytes, offsets)."""
    n = len(high)
    out = np.empty(n * 39, dtype=np.uint8)
    offsets = np.zeros(n + 1, dtype=np.int64)
    groups = np.empty(8, dtype=np.int64)
    at = 0
    for i in range(n):
        for k in range(4):
            groups[k] = np.int64((high[i] >> np.uint64(48 - 16 * k)) & np.uint64(0xFFFF))
            groups[4 + k] = np.int64((low[i] >> np.uint64(48 - 16 * k)) & np.uint64(0xFFFF))
        best_start, best_length, start, length = -1, 1, -1, 0
        for k in range(8):
            if groups[k] == 0:
                if length == 0:
                    start = k
                length += 1
                if length > best_length:
                    best_start, best_length = start, length
            else:
                length = 0
        colon = False
        k = 0
        while k < 8:
            if k == best_start:
                out[at] = 58  # "::"
                out[at + 1] = 58
                at += 2
                colon = False
                k += best_length
                continue
            if colon:
                out[at] = 58
                at += 1
            for shift in range(12, -1, -4):
                nibble = (groups[k] >> shift) & 0xF
                if nibble or shift == 0 or groups[k] >> (shift + 4):
                    out[at] = 48 + nibble if nibble < 10 else 87 + nibble  # 0-9, a-f
                    at += 1
            colon = True
            k += 1
        offsets[i + 1] = at
    return out[:at].copy(), offsets  # not a view: the scratch is up to twice the text


def ipv6_text_array(high: npt.NDArray[Any], low: npt.NDArray[Any]) -> pa.StringArray:
    """uint64 word pairs (bytes 0-7, 8-15 of each address) -> their RFC 5952 texts, formatted
    in numba: ipaddress took ~20 µs an address, and hosts with privacy addresses or a scan
    over IPv6 bring millions of distinct ones. An IPv4-mapped address comes out in hex
    (::ffff:a00:1), as ipaddress gave it before Python 3.13: callers show those dotted."""
    data, offsets = _ipv6_texts(
        np.ascontiguousarray(high, dtype=np.uint64), np.ascontiguousarray(low, dtype=np.uint64)
    )
    if len(data) >= 2**31:  # at most 39 bytes an address: some 55 million distinct ones
        raise ValueError(
            f"{len(high)} IPv6 addresses make {len(data)} bytes of text, more "
            "than an Arrow string array holds (2 GiB)"
        )
    # numpy's stubs declare ndarray's buffer protocol (__buffer__) only for Python 3.12 on
    return pa.StringArray.from_buffers(
        len(high),
        pa.py_buffer(cast("Buffer", offsets.astype(np.int32))),
        pa.py_buffer(cast("Buffer", data)),
    )


@njit(cache=True, nogil=True)
def distinct_pairs(
    high: npt.NDArray[np.uint64], low: npt.NDArray[np.uint64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(first row of each distinct (high, low) pair in order of first use, index of each
    row's pair among them), by open addressing: addresses given as two 64-bit words repeat
    a lot (next_hop is :: on every record, a scan's sessions share few hosts), and a sort
    would compare them millions of times."""
    n = len(high)
    size = 16
    while size < 2 * n:
        size *= 2
    table = np.full(size, -1, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    index = np.empty(n, dtype=np.int64)
    count = 0
    for i in range(n):
        h = (high[i] * np.uint64(0x9E3779B97F4A7C15)) ^ (low[i] * np.uint64(0xBF58476D1CE4E5B9))
        b = np.int64((h ^ (h >> np.uint64(29))) & np.uint64(size - 1))
        while table[b] >= 0 and not (
            high[first[table[b]]] == high[i] and low[first[table[b]]] == low[i]
        ):
            b = (b + 1) & (size - 1)
        if table[b] < 0:
            table[b] = count
            first[count] = i
            count += 1
        index[i] = table[b]
    return first[:count], index


def address_text_array(column: pa.Array[Any] | pa.ChunkedArray[Any]) -> pa.StringArray:
    """binary(16) column -> string column (word_text_array), each distinct address
    formatted once when not all are IPv4."""
    matrix = np.ascontiguousarray(address_matrix(column))
    if len(matrix) == 0:
        return pa.array([], pa.string())
    words = matrix.view(">u8")  # (n, 2): bytes 0..7 and 8..15 as big-endian words
    high = words[:, 0].astype(np.uint64)
    low = words[:, 1].astype(np.uint64)
    if _ipv4_mapped(high, low).all():
        return word_text_array(high, low)
    first, inverse = distinct_pairs(high, low)
    # pa.array of int64 values is an Int64Array (the stubs read any ndarray as booleans)
    return word_text_array(high[first], low[first]).take(cast(pa.Int64Array, pa.array(inverse)))


def word_text_array(high: npt.NDArray[np.uint64], low: npt.NDArray[np.uint64]) -> pa.StringArray:
    """Addresses given as uint64 word pairs (bytes 0-7, 8-15) -> their texts, formatted in
    numba (scans meet millions of distinct hosts): IPv4-mapped ones as dotted quads, the
    others in RFC 5952 text."""
    v4 = _ipv4_mapped(high, low)
    values = (low & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    if v4.all():
        return dotted_quad_array(values)
    mapped = np.flatnonzero(v4)
    other = np.flatnonzero(~v4)
    texts = pa.concat_arrays(
        [dotted_quad_array(values[mapped]), ipv6_text_array(high[other], low[other])]
    )
    position = np.empty(len(high), dtype=np.int64)
    position[mapped] = np.arange(len(mapped))
    position[other] = len(mapped) + np.arange(len(other))
    return texts.take(cast(pa.Int64Array, pa.array(position)))  # as in address_text_array


def _ipv4_mapped(
    high: npt.NDArray[np.uint64], low: npt.NDArray[np.uint64]
) -> npt.NDArray[np.bool_]:
    # numpy's stubs type an array comparison as Any
    return cast(
        "npt.NDArray[np.bool_]", (high == 0) & ((low >> np.uint64(32)) == np.uint64(0xFFFF))
    )


def with_text_addresses(table: pa.Table, names: tuple[str, ...]) -> pa.Table:
    """Replace the binary(16) address columns `names` of `table` by their text forms."""
    for name in names:
        index = table.schema.get_field_index(name)
        if index < 0 or not pa.types.is_fixed_size_binary(table.schema.field(index).type):
            continue
        table = table.set_column(
            index,
            pa.field(name, pa.string(), nullable=False),
            address_text_array(table.column(index)),
        )
    return table


# numba's cache ignores the modules this one compiles in (jit_cache.py): last, so that
# every name is bound
drop_stale_jit_cache(globals())
