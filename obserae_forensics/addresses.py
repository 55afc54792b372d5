"""16-byte addresses (IPv4 mapped into IPv6) to and from text, a whole column at a time.

Readers store every address as 16 bytes so that v4 and v6 share one column and one key;
outputs show the usual text forms (`10.0.0.1`, `2001:db8::1`).
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa

V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def v4_to_mapped(addresses: np.ndarray) -> np.ndarray:
    """uint32 host-order IPv4 addresses -> (n, 16) uint8 IPv4-mapped addresses."""
    n = len(addresses)
    out = np.zeros((n, 16), dtype=np.uint8)
    out[:, 10] = 0xFF
    out[:, 11] = 0xFF
    out[:, 12:16] = addresses.astype(">u4").view(np.uint8).reshape(n, 4)
    return out


def address_array(matrix: np.ndarray) -> pa.FixedSizeBinaryArray:
    """(n, 16) uint8 -> Arrow binary(16) array without copying row by row."""
    matrix = np.ascontiguousarray(matrix, dtype=np.uint8)
    buffer = pa.py_buffer(matrix.tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(matrix), [None, buffer])


def address_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow binary(16) column -> (n, 16) uint8 matrix."""
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 0:
            return np.zeros((0, 16), dtype=np.uint8)
        return np.concatenate([address_matrix(chunk) for chunk in column.chunks])
    data = column.buffers()[1]
    start = column.offset * 16
    raw = np.frombuffer(data, dtype=np.uint8, count=len(column) * 16, offset=start)
    return raw.reshape(len(column), 16)


def address_text(address: bytes) -> str:
    """One 16-byte address to its text form (IPv4-mapped shown as dotted quad)."""
    if address[:12] == V4_MAPPED_PREFIX:
        return ".".join(str(b) for b in address[12:])
    return str(ipaddress.IPv6Address(address))


def address_texts(matrix: np.ndarray) -> list[str]:
    """(n, 16) uint8 -> text forms; each distinct address is formatted once."""
    if len(matrix) == 0:
        return []
    rows = np.ascontiguousarray(matrix).view("V16").ravel()
    unique, inverse = np.unique(rows, return_inverse=True)
    texts = [address_text(bytes(u)) for u in unique]
    return [texts[i] for i in inverse.ravel()]


def parse_address(text: str) -> bytes:
    """Text address (v4 or v6) -> 16 bytes."""
    parsed = ipaddress.ip_address(text)
    if parsed.version == 4:
        return V4_MAPPED_PREFIX + parsed.packed
    return parsed.packed


def address_text_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """binary(16) column -> string column; each distinct address is formatted once."""
    matrix = address_matrix(column)
    if len(matrix) == 0:
        return pa.array([], pa.string())
    rows = np.ascontiguousarray(matrix).view("V16").ravel()
    unique, inverse = np.unique(rows, return_inverse=True)
    texts = pa.array([address_text(bytes(u)) for u in unique], pa.string())
    return texts.take(pa.array(inverse.ravel().astype(np.int64)))


def with_text_addresses(table: pa.Table, names: tuple[str, ...]) -> pa.Table:
    """Replace the binary(16) address columns `names` of `table` by their text forms."""
    for name in names:
        index = table.schema.get_field_index(name)
        if index < 0 or not pa.types.is_fixed_size_binary(table.schema.field(index).type):
            continue
        table = table.set_column(index, pa.field(name, pa.string(), nullable=False),
                                 address_text_array(table.column(index)))
    return table
