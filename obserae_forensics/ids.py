"""Deterministic 64-bit ids and their 16-hex-digit text, whole columns at a time.

Ids in the tables are hashes of what identifies a row (sessions.md: "the same input always
gives the same ids"), so they must not depend on Python's hash seed, the platform or the
row's position. splitmix64 folds over uint64 columns are cheap, well mixed and portable;
numpy's uint64 arithmetic wraps exactly as the algorithm needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .jit_cache import drop_stale_jit_cache, njit, read_only

if TYPE_CHECKING:
    from typing_extensions import Buffer

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).copy()


def fold(h: npt.NDArray[np.uint64], value: npt.NDArray[Any]) -> npt.NDArray[np.uint64]:
    """One splitmix64 round folding `value` into `h`, elementwise (uint64, wrapping)."""
    with np.errstate(over="ignore"):
        z = h + value.astype(np.uint64) + _K1
        z = (z ^ (z >> np.uint64(30))) * _K2
        z = (z ^ (z >> np.uint64(27))) * _K3
    return z ^ (z >> np.uint64(31))


def text_seed(text: str) -> int:
    """A text's part of a hash: BLAKE2b-64 of its UTF-8 bytes, read little-endian."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def dictionary_text(column: pa.Array[Any] | pa.ChunkedArray[Any]) -> pa.DictionaryArray[Any, Any]:
    """A text column as one dictionary array: FLOW_SCHEMA's text columns are dictionaries,
    in chunks once batches are joined into a table, and a plain one is encoded."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    return cast("pa.DictionaryArray[Any, Any]", column)


def text_seeds(
    column: pa.Array[Any] | pa.ChunkedArray[Any], name: Callable[[str], str] = str
) -> npt.NDArray[np.uint64]:
    """text_seed of each row's `name(text)`, hashed once per distinct text (a null is the
    first text's: FLOW_SCHEMA's text columns hold none)."""
    encoded = dictionary_text(column)
    texts = cast("list[str]", encoded.dictionary.to_pylist())
    seeds = np.array([text_seed(name(text)) for text in texts], dtype=np.uint64)
    return seeds[np.asarray(encoded.indices.fill_null(0), dtype=np.int64)]


def hash_words(words: npt.NDArray[Any], seed: int = 0) -> npt.NDArray[np.uint64]:
    """(n, k) uint64 words -> n uint64 hashes, folding the k columns in order."""
    h = np.full(len(words), seed, dtype=np.uint64)
    for column in range(words.shape[1]):
        h = fold(h, words[:, column])
    return h


@njit(cache=True, nogil=True)
def _hex_digits(
    values: npt.NDArray[np.uint64], digits: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """16 lowercase hex digits per value, most significant first, in one flat buffer."""
    out = np.empty(16 * len(values), dtype=np.uint8)
    for i in range(len(values)):
        value = values[i]
        for k in range(15, -1, -1):
            out[16 * i + k] = digits[value & np.uint64(15)]
            value >>= np.uint64(4)
    return out


def hex_ids(values: npt.NDArray[Any], valid: npt.NDArray[np.bool_] | None = None) -> pa.StringArray:
    """uint64 -> Arrow strings of 16 lowercase hex digits, most significant first (null
    where `valid` is False); rendered in numba, no Python object per id."""
    n = len(values)
    data = _hex_digits(np.ascontiguousarray(values, dtype=np.uint64), _HEX)
    offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int32)
    validity = None
    null_count = 0
    if valid is not None:
        null_count = int(n - np.count_nonzero(valid))
        if null_count:
            validity = pa.array(valid, pa.bool_()).buffers()[1]
    # numpy's stubs declare ndarray's buffer protocol (__buffer__) only for Python 3.12 on
    return pa.StringArray.from_buffers(
        n,
        pa.py_buffer(cast("Buffer", offsets)),
        pa.py_buffer(cast("Buffer", data)),
        validity,
        null_count,
    )


def id_sort_keys(ids: pa.Array[Any] | pa.ChunkedArray[Any]) -> npt.NDArray[np.bytes_]:
    """16-hex-digit ids as numpy 'S16' values (no copy when possible): fixed-width bytes
    sort like the numbers, and far faster than Arrow sorts strings."""
    array = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    n = len(array)
    if n == 0:
        return np.zeros(0, dtype="S16")
    # ignored: numpy's stubs, for Python before 3.12, let np.frombuffer read only the
    # builtin bytes-like types, not an Arrow buffer (which has the buffer protocol)
    offsets: npt.NDArray[np.int32] = np.frombuffer(  # type: ignore[call-overload]
        array.buffers()[1], dtype=np.int32
    )[array.offset : array.offset + n + 1]
    if not (np.diff(offsets) == 16).all():
        raise ValueError("ids must be 16 hex digits each")
    data: npt.NDArray[np.uint8] = np.frombuffer(  # type: ignore[call-overload]
        array.buffers()[2], dtype=np.uint8
    )[offsets[0] : offsets[0] + 16 * n]
    return data.view("S16")


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True, nogil=True)
def _mix(h: np.uint64) -> np.uint64:
    z = h + _K1
    z = (z ^ (z >> np.uint64(30))) * _K2
    z = (z ^ (z >> np.uint64(27))) * _K3
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _text_hashes(
    offsets: npt.NDArray[np.int64], data: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint64]:
    n = len(offsets) - 1
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        h = _FNV_OFFSET
        for k in range(offsets[i], offsets[i + 1]):
            h = (h ^ np.uint64(data[k])) * _FNV_PRIME
        out[i] = h
    return out


@njit(cache=True, nogil=True)
def _pair_hashes(
    protocol: npt.NDArray[np.int64],
    a: npt.NDArray[np.uint64],
    port_a: npt.NDArray[np.int64],
    b: npt.NDArray[np.uint64],
    port_b: npt.NDArray[np.int64],
) -> npt.NDArray[np.uint64]:
    out = np.empty(len(a), dtype=np.uint64)
    for i in range(len(a)):
        end_a = _mix(a[i] ^ np.uint64(port_a[i]))
        end_b = _mix(b[i] ^ np.uint64(port_b[i]))
        low, high = (end_a, end_b) if end_a <= end_b else (end_b, end_a)
        out[i] = _mix(_mix(_mix(np.uint64(protocol[i])) ^ low) ^ high)
    return out


def text_hashes(column: pa.ChunkedArray[Any] | pa.Array[Any]) -> npt.NDArray[np.uint64]:
    """FNV-1a of each string's UTF-8 bytes: the same on every machine and hash seed."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_string(array.type):  # string is read in place, anything else cast
        array = array.cast(pa.large_string())
    if len(array) == 0:
        return np.zeros(0, dtype=np.uint64)
    _validity, offsets_buffer, data_buffer = array.buffers()
    # ignored: numpy's stubs refuse an Arrow buffer before Python 3.12 (id_sort_keys)
    offsets: npt.NDArray[np.signedinteger[Any]] = np.frombuffer(  # type: ignore[call-overload]
        offsets_buffer, dtype=np.int32 if pa.types.is_string(array.type) else np.int64
    )
    # one compiled _text_hashes for string and large_string (the offsets as int64)
    offsets = read_only(offsets[array.offset : array.offset + len(array) + 1], np.int64)
    data: npt.NDArray[np.uint8] = (
        np.frombuffer(data_buffer, dtype=np.uint8)  # type: ignore[call-overload]
        if data_buffer is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return _text_hashes(offsets, read_only(data, np.uint8))


def endpoint_pair_hashes(
    table: pa.Table, *, port_protocols: Iterable[int] | None = None
) -> npt.NDArray[np.uint64]:
    """uint64 per row of (protocol_number, ip_a, port_a, ip_b, port_b): one value for a
    protocol and unordered endpoint pair, whichever side is a. Addresses must be the
    canonical texts the sessionizer writes. With `port_protocols`, ports of other
    protocols are ignored (ICMP sessions are keyed by addresses alone)."""
    return pair_hash_values(
        table.column("protocol_number").to_numpy(),
        text_hashes(table.column("ip_a")),
        table.column("port_a").to_numpy(),
        text_hashes(table.column("ip_b")),
        table.column("port_b").to_numpy(),
        port_protocols=port_protocols,
    )


def pair_hash_values(
    protocol: npt.NDArray[Any],
    address_a: npt.NDArray[np.uint64],
    port_a: npt.NDArray[Any],
    address_b: npt.NDArray[np.uint64],
    port_b: npt.NDArray[Any],
    *,
    port_protocols: Iterable[int] | None = None,
) -> npt.NDArray[np.uint64]:
    """endpoint_pair_hashes from numbers: the addresses as their text_hashes."""
    protocol = np.asarray(protocol).astype(np.int64)
    port_a = np.asarray(port_a).astype(np.int64)
    port_b = np.asarray(port_b).astype(np.int64)
    if port_protocols is not None:
        keep = np.isin(protocol, list(port_protocols))
        port_a, port_b = np.where(keep, port_a, 0), np.where(keep, port_b, 0)
    return _pair_hashes(protocol, address_a, port_a, address_b, port_b)


# numba's cache ignores the modules this one compiles in (jit_cache.py): last, so that
# every name is bound
drop_stale_jit_cache(globals())
