"""numba kernels that walk the records of one uncompressed nfcapd block and sort them into layouts.

Source: record framing `type u16 | size u16` (nfdump `nffileV2.h` recordHeader), V3 element
framing `type u16 | length u16` (`nfxV3.h` elementHeader, `nffile_inline.c` L97-153), 1.6 common
record header (`nfdump@v1.6.25:bin/nffile.h`).

The one surprising thing: nfcapd records have variable length and no alignment, so the only
way to find record N is to walk records 0..N-1. That walk is the one per-record loop in the
nfcapd reader; it runs here, compiled, and everything after it is numpy over whole groups of
records. A *layout* is everything that decides where each field sits in a record: for a V3
record the exact sequence of (element type, element length) plus the record size; for a 1.6
common record its flags byte, extension map ID and size. Records of one layout decode together
through one structured dtype. Layouts are identified exactly (hash, then a field-by-field
comparison with the layout's first record), so a hash collision can never merge two layouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..jit_cache import drop_stale_jit_cache, njit

if TYPE_CHECKING:
    import numpy.typing as npt

V3_RECORD = 11
COMMON_RECORD_V1 = 10
EXPORTER_STAT_RECORD = 8
EXPORTER_STAT_ENTRY = 24  # sysid u32, sequence failures u32, packets u64, flows u64

# scan status
SCAN_OK = 0
SCAN_TRUNCATED_HEADER = 1  # fewer than 4 bytes left where a record header should be
SCAN_BAD_SIZE = 2  # record size < 4 or runs past the end of the block

# per-record layout ids below zero
NOT_A_FLOW = -1  # any record type other than 11 and 10
BAD_ELEMENTS = -2  # V3 record whose element list is inconsistent with its size

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True, nogil=True, inline="always")
def _u16(buf: np.ndarray, at: int | np.int64, big_endian: bool) -> int:
    if big_endian:
        return int((np.int64(buf[at]) << 8) | np.int64(buf[at + 1]))
    return int(np.int64(buf[at]) | (np.int64(buf[at + 1]) << 8))


@njit(cache=True, nogil=True)
def _stat_record_size(
    buf: np.ndarray, pos: int | np.int64, end: int, size: int | np.int64, big_endian: bool
) -> int | np.int64:
    """An exporter statistics record's size. nfcapd writes it in the record header's 16 bits
    whatever its count: with more than 2,730 exporters the size wraps around (nfcapd 1.7.1,
    4,800 exporters: 49,672 for 115,208), and the walk went on inside its entries. When the
    count's size is the written one modulo 2**16 and the block holds it, that is the size
    (nfcapd.py counts the record as repaired)."""
    count: int | np.int64 = 0
    for k in range(4):
        byte = np.int64(buf[pos + 4 + (k if big_endian else 3 - k)])
        count = (count << 8) | byte
    wanted = 8 + EXPORTER_STAT_ENTRY * max(count, 1)
    if wanted > 0xFFFF and (wanted & 0xFFFF) == size and pos + wanted <= end:
        return wanted
    return size


@njit(cache=True, nogil=True, inline="always")
def _mix(h: np.uint64, value: int | np.int64) -> np.uint64:
    return (h ^ np.uint64(value)) * _FNV_PRIME


@njit(cache=True, nogil=True)
def _v3_layout_hash(
    buf: np.ndarray, pos: int | np.int64, size: int | np.int64, big_endian: bool
) -> tuple[bool, np.uint64]:
    """(valid, hash) of a V3 record's element list; invalid = an element overruns the record
    or is shorter than 4 bytes, or non-zero bytes follow the counted elements."""
    end = pos + size
    if size < 12:
        return False, np.uint64(0)
    count = _u16(buf, pos + 4, big_endian)
    h = _mix(_mix(_FNV_OFFSET, size), count)
    at = pos + 12
    for _ in range(count):
        if at + 4 > end:
            return False, h
        element_type = _u16(buf, at, big_endian)
        length = _u16(buf, at + 2, big_endian)
        if length < 4 or at + length > end:
            return False, h
        h = _mix(h, (element_type << 16) | length)
        at += length
    # nfdump sizes a record to its elements; what is left after the counted ones is elements
    # the count no longer covers (a damaged count): it left a flow without its addresses
    for k in range(at, end):
        if buf[k] != 0:
            return False, h
    return True, h


@njit(cache=True, nogil=True)
def _same_v3_layout(
    buf: np.ndarray, a: int | np.int64, b: int | np.int64, size: int | np.int64, big_endian: bool
) -> bool:
    if _u16(buf, a + 4, big_endian) != _u16(buf, b + 4, big_endian):
        return False
    count = _u16(buf, a + 4, big_endian)
    at_a = a + 12
    at_b = b + 12
    for _ in range(count):
        for k in range(4):
            if buf[at_a + k] != buf[at_b + k]:
                return False
        length = _u16(buf, at_a + 2, big_endian)
        at_a += length
        at_b += length
    return True


@njit(cache=True, nogil=True)
def scan_block(
    buf: np.ndarray, start: int, end: int, max_records: int, big_endian: bool
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    npt.NDArray[np.int64],
    int,
    int,
    int | np.int64,
]:
    """Walk at most `max_records` records in buf[start:end].

    Returns (offsets, types, sizes, layout_ids, layout_first, count, status, status_offset):
    one entry per record walked (`count` of them), layout ids 0..L-1 for V3 and 1.6 common
    records (`layout_first[l]` = index of its first record) and the negative codes above for
    the rest; `status` says why the walk stopped early and where.
    """
    offsets = np.empty(max_records, dtype=np.int64)
    types = np.empty(max_records, dtype=np.int32)
    sizes = np.empty(max_records, dtype=np.int32)
    layouts = np.empty(max_records, dtype=np.int32)
    hashes = np.empty(max_records, dtype=np.uint64)
    layout_first = np.empty(max_records, dtype=np.int64)
    table_size = 16
    while table_size < 2 * max_records:
        table_size *= 2
    table = np.full(table_size, -1, dtype=np.int64)  # slot -> first record of a layout
    mask = np.uint64(table_size - 1)
    n_layouts = 0
    count = 0
    status = SCAN_OK
    status_offset: int | np.int64 = end
    pos: int | np.int64 = start
    while count < max_records:
        if pos + 4 > end:
            status = SCAN_TRUNCATED_HEADER
            status_offset = pos
            break
        record_type = _u16(buf, pos, big_endian)
        size: int | np.int64 = _u16(buf, pos + 2, big_endian)
        if record_type == EXPORTER_STAT_RECORD and pos + 8 <= end:
            size = _stat_record_size(buf, pos, end, size, big_endian)
        if size < 4 or pos + size > end:
            status = SCAN_BAD_SIZE
            status_offset = pos
            break
        offsets[count] = pos
        types[count] = record_type
        sizes[count] = size
        layout = NOT_A_FLOW
        h = np.uint64(0)
        valid = False
        if record_type == V3_RECORD:
            valid, h = _v3_layout_hash(buf, pos, size, big_endian)
            if not valid:
                layout = BAD_ELEMENTS
        elif record_type == COMMON_RECORD_V1 and size >= 32:
            valid = True
            # flags byte @4 and extension map id @6 decide the layout; nfversion @5 does not
            h = _mix(_mix(_mix(_FNV_OFFSET, size), buf[pos + 4]), _u16(buf, pos + 6, big_endian))
        elif record_type == COMMON_RECORD_V1:
            layout = BAD_ELEMENTS
        if valid:
            hashes[count] = h
            slot = h & mask
            while True:
                first = table[slot]
                if first < 0:
                    table[slot] = count
                    layout_first[n_layouts] = count
                    layout = n_layouts
                    n_layouts += 1
                    break
                other = offsets[first]
                if hashes[first] == h and sizes[first] == size and types[first] == record_type:
                    if record_type == V3_RECORD:
                        same = _same_v3_layout(buf, other, pos, size, big_endian)
                    else:
                        same = buf[other + 4] == buf[pos + 4] and (
                            _u16(buf, other + 6, big_endian) == _u16(buf, pos + 6, big_endian)
                        )
                    if same:
                        layout = layouts[first]
                        break
                slot = (slot + np.uint64(1)) & mask
        layouts[count] = layout
        count += 1
        pos += size
    return (
        offsets[:count],
        types[:count],
        sizes[:count],
        layouts[:count],
        layout_first[:n_layouts],
        count,
        status,
        status_offset,
    )


@njit(cache=True, nogil=True)
def gather_records(buf: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    """Copy equal-sized records at `offsets` into one contiguous array, for a structured view."""
    out = np.empty(len(offsets) * size, dtype=np.uint8)
    for i in range(len(offsets)):
        o = offsets[i]
        out[i * size : (i + 1) * size] = buf[o : o + size]
    return out


# numba's cache ignores the modules this one compiles in (jit_cache.py): last, so that
# every name is bound
drop_stale_jit_cache(globals())
