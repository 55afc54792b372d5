"""nfdump 1.6 nfcapd files (LAYOUT_VERSION_1): header, stat record, extension maps, common records.

Sources: nfdump v1.6.25 `bin/nffile.h` L92-235 (header, stat, common record), `bin/nfx.h`
L120-158 and `bin/nfx.c` L58-121 (extension IDs and sizes); how 1.7 reads them:
`src/libnffile/compat_1_6_x.c` L66-125 and `src/nfdump/compat_1_6_x/convert.c` L52-485 at
v1.7.8. Digest: docs/formats.md §7 and §8.5.

A 1.6 common record (type 10) has a 32-byte fixed part, then three *required* extensions whose
width its flags choose (addresses v4/v6, packets 32/64 bit, bytes 32/64 bit), then the optional
extensions listed by the extension map it names. So the layout of a record is (flags, map ID,
record size) — and the map in force, which is why a block is cut into segments at every
extension-map record.

The surprising thing: a map ID can be redefined later in the same file, even in the same
block, and the new definition applies from that point on; the file header carries the
compression as flag bits (0x1 LZO, 0x8 BZ2, 0x10 LZ4), not as a code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import IO, TYPE_CHECKING, Final

import numpy as np

from ..errors import MalformedInput, TruncatedInput
from ..report import RunReport
from .compression import BZ2, LZ4, LZO, NONE
from .nfcapd_v3 import FLAG_SAMPLED, Layout, decode_layout, placed_dtype

if TYPE_CHECKING:
    from .nfcapd import _FileState

HEADER_V1: Final = np.dtype(
    [
        ("magic", "<u2"),
        ("version", "<u2"),
        ("flags", "<u4"),
        ("num_blocks", "<u4"),
        ("ident", "S128"),
    ]
)
# stat_record_t's 15 counters, the same in LAYOUT_VERSION_1 and 2 (nfdump.h L97-122); the
# layouts differ in the first/last seen and sequence failures after them
STAT_COUNTERS: Final = (
    "flows",
    "bytes",
    "packets",
    "flows_tcp",
    "flows_udp",
    "flows_icmp",
    "flows_other",
    "bytes_tcp",
    "bytes_udp",
    "bytes_icmp",
    "bytes_other",
    "packets_tcp",
    "packets_udp",
    "packets_icmp",
    "packets_other",
)
STAT_V1: Final = np.dtype(
    [(name, "<u8") for name in STAT_COUNTERS]
    + [
        ("first_seen", "<u4"),
        ("last_seen", "<u4"),
        ("msec_first", "<u2"),
        ("msec_last", "<u2"),
        ("sequence_failures", "<u4"),
    ]
)
assert HEADER_V1.itemsize == 140 and STAT_V1.itemsize == 136

FLAG_LZO: Final = 0x1
FLAG_ANONYMIZED: Final = 0x2
FLAG_BZ2: Final = 0x8
FLAG_LZ4: Final = 0x10
_COMPRESSION_BY_FLAG: Final = {0: NONE, FLAG_LZO: LZO, FLAG_BZ2: BZ2, FLAG_LZ4: LZ4}

# common record flags (byte @4)
RECORD_IPV6: Final = 0x1
RECORD_PACKETS_64: Final = 0x2
RECORD_BYTES_64: Final = 0x4
RECORD_SAMPLED: Final = 0x80  # counters already multiplied by the sampling rate

COMMON_FIXED: Final = (  # (name, numpy code, offset) of the 32-byte fixed part
    ("record_type", "<u2", 0),
    ("record_size", "<u2", 2),
    ("flags", "u1", 4),
    ("nfversion", "u1", 5),
    ("ext_map", "<u2", 6),
    ("msec_first_part", "<u2", 8),
    ("msec_last_part", "<u2", 10),
    ("first_s", "<u4", 12),
    ("last_s", "<u4", 16),
    ("fwd_status", "u1", 20),
    ("tcp_flags", "u1", 21),
    ("protocol", "u1", 22),
    ("src_tos", "u1", 23),
    ("src_port", "<u2", 24),
    ("dst_port", "<u2", 26),
    ("exporter_sysid", "<u2", 28),
    ("biflow_direction", "u1", 30),
    ("flow_end_reason", "u1", 31),
)
COMMON_FIXED_SIZE: Final = 32

# Optional extension ID -> (payload bytes, fields (name, code, offset)); bin/nfx.c L61-121.
EXTENSIONS: Final[dict[int, tuple[int, tuple[tuple[str, str, int], ...]]]] = {
    4: (4, (("input_if", "<u2", 0), ("output_if", "<u2", 2))),
    5: (8, (("input_if", "<u4", 0), ("output_if", "<u4", 4))),
    6: (4, (("src_as", "<u2", 0), ("dst_as", "<u2", 2))),
    7: (8, (("src_as", "<u4", 0), ("dst_as", "<u4", 4))),
    8: (
        4,
        (
            ("dst_tos", "u1", 0),
            ("direction", "u1", 1),
            ("src_mask", "u1", 2),
            ("dst_mask", "u1", 3),
        ),
    ),
    9: (4, (("next_hop4", "<u4", 0),)),
    10: (16, (("next_hop6_hi", "<u8", 0), ("next_hop6_lo", "<u8", 8))),
    11: (4, (("bgp_next_hop4", "<u4", 0),)),
    12: (16, (("bgp_next_hop6_hi", "<u8", 0), ("bgp_next_hop6_lo", "<u8", 8))),
    13: (4, ()),  # VLAN
    14: (4, (("out_packets", "<u4", 0),)),
    15: (8, (("out_packets", "<u8", 0),)),
    16: (4, (("out_bytes", "<u4", 0),)),
    17: (8, (("out_bytes", "<u8", 0),)),
    18: (4, (("aggregated_flows", "<u4", 0),)),
    19: (8, (("aggregated_flows", "<u8", 0),)),
    20: (16, ()),
    21: (16, ()),
    22: (40, ()),  # MAC addresses, MPLS labels
    23: (4, (("router4", "<u4", 0),)),
    24: (16, (("router6_hi", "<u8", 0), ("router6_lo", "<u8", 8))),
    25: (4, ()),  # router ID: fill, engine type, engine ID
    26: (8, ()),  # BGP adjacent AS
    27: (8, (("msec_received", "<u8", 0),)),
    **{reserved: (0, ()) for reserved in range(28, 37)},
    37: (20, ()),
    38: (4, ()),
    39: (8, ()),
    40: (32, ()),
    41: (24, ()),
    42: (24, ()),
    43: (72, ()),
    44: (0, ()),
    45: (24, ()),
    46: (12, ()),
    47: (0, ()),
    48: (8, ()),
    49: (0, ()),
}


@dataclass(frozen=True)
class HeaderV1:
    compression: int
    num_blocks: int
    ident: str
    stat: dict[str, int]
    data_start: int


def read_header_v1(f: IO[bytes], source: str, order: str) -> HeaderV1:
    """The 140-byte header and 136-byte stat record; raises on a cut or unknown-compression file."""
    f.seek(0)
    raw = f.read(HEADER_V1.itemsize + STAT_V1.itemsize)
    if len(raw) < HEADER_V1.itemsize + STAT_V1.itemsize:
        raise TruncatedInput(
            f"1.6 header and stat record need 276 bytes, file has {len(raw)}",
            source=source,
            offset=0,
        )
    header = np.frombuffer(raw, HEADER_V1.newbyteorder(">") if order == ">" else HEADER_V1, 1)[0]
    flags = int(header["flags"])
    compression = _COMPRESSION_BY_FLAG.get(flags & (FLAG_LZO | FLAG_BZ2 | FLAG_LZ4))
    if compression is None:
        raise MalformedInput(
            f"1.6 header names several compressions (flags {flags:#x})",
            source=source,
            offset=4,
            reason="bad_compression",
        )
    stat_dtype = STAT_V1.newbyteorder(">") if order == ">" else STAT_V1
    stat = np.frombuffer(raw, stat_dtype, 1, HEADER_V1.itemsize)[0]
    counters = {name: int(stat[name]) for name in (STAT_V1.names or ())[:15]}
    counters["msec_first"] = int(stat["first_seen"]) * 1000 + int(stat["msec_first"])
    counters["msec_last"] = int(stat["last_seen"]) * 1000 + int(stat["msec_last"])
    counters["sequence_failures"] = int(stat["sequence_failures"])
    ident = bytes(header["ident"]).split(b"\0", 1)[0].decode("utf-8", "replace")
    return HeaderV1(
        compression,
        int(header["num_blocks"]),
        ident,
        counters,
        HEADER_V1.itemsize + STAT_V1.itemsize,
    )


def extension_map(record: bytes, order: str) -> tuple[int, tuple[int, ...]] | None:
    """(map ID, extension IDs) of a type-2 record, or None if nfdump would reject it.

    nfdump checks: size a multiple of 4, known IDs, a zero terminator, and the extension sizes
    adding up to the map's extension_size (`compat_1_6_x/nfx.c` L294-337).
    """
    if len(record) < 8 or len(record) % 4:
        return None
    map_id, extension_size = (int(v) for v in np.frombuffer(record, f"{order}u2", 2, 4))
    ids = np.frombuffer(record, f"{order}u2", (len(record) - 8) // 2, 8).tolist()
    if 0 not in ids:
        return None
    ids = ids[: ids.index(0)]
    if any(i not in EXTENSIONS for i in ids):
        return None
    if sum(EXTENSIONS[i][0] for i in ids) != extension_size:
        return None
    return map_id, tuple(ids)


@lru_cache(maxsize=4096)
def common_layout(
    flags: int, extensions: tuple[int, ...], record_size: int, big_endian: bool
) -> Layout | None:
    """Structured dtype of a common record; None if the record is too short for its map."""
    placed: dict[str, tuple[str, int]] = {name: (code, at) for name, code, at in COMMON_FIXED}
    at = COMMON_FIXED_SIZE
    if flags & RECORD_IPV6:
        for name in ("src6_hi", "src6_lo", "dst6_hi", "dst6_lo"):
            placed[name] = ("<u8", at)
            at += 8
    else:
        placed["src4"], placed["dst4"] = ("<u4", at), ("<u4", at + 4)
        at += 8
    placed["in_packets"] = ("<u8", at) if flags & RECORD_PACKETS_64 else ("<u4", at)
    at += 8 if flags & RECORD_PACKETS_64 else 4
    placed["in_bytes"] = ("<u8", at) if flags & RECORD_BYTES_64 else ("<u4", at)
    at += 8 if flags & RECORD_BYTES_64 else 4
    for extension in extensions:
        size, fields = EXTENSIONS[extension]
        for name, code, offset in fields:
            placed[name] = (code, at + offset)
        at += size
    if at > record_size:
        return None
    return Layout(placed_dtype(placed, record_size, big_endian), frozenset(placed), 0, 0)


def decode_common(rows: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """FLOW columns of 1.6 common records, converted the way nfdump 1.7 converts them.

    Reuses the V3 decoder for what both share (addresses, next hops, router, counters) after
    deriving what 1.6 stores differently (seconds + milliseconds, the sampled flag bit).
    """
    present = layout.fields
    n = len(rows)
    first = rows["first_s"].astype(np.int64) * 1000 + rows["msec_first_part"]
    last = rows["last_s"].astype(np.int64) * 1000 + rows["msec_last_part"]
    out = decode_layout(rows, Layout(layout.dtype, present - {"msec_first"}, 0, 0))
    out["first_seen"] = first * 1000
    out["last_seen"] = last * 1000
    out["_msec_received"] = (
        rows["msec_received"].astype(np.int64)
        if "msec_received" in present
        else np.zeros(n, dtype=np.int64)
    )
    out["packets"] = rows["in_packets"].astype(np.uint64)
    out["octets"] = rows["in_bytes"].astype(np.uint64)
    out["src_port"] = rows["src_port"].astype(np.uint16)
    out["dst_port"] = rows["dst_port"].astype(np.uint16)
    out["protocol"] = rows["protocol"].astype(np.uint8)
    out["tcp_flags"] = rows["tcp_flags"].astype(np.uint16)
    out["tos"] = rows["src_tos"].astype(np.uint8)
    out["flow_end_reason"] = rows["flow_end_reason"].astype(np.uint8)
    out["_flags"] = np.where(rows["flags"] & RECORD_SAMPLED, FLAG_SAMPLED, 0).astype(np.uint8)
    return out


def decode_v1_block(
    state: _FileState,
    buf: np.ndarray,
    offsets: np.ndarray,
    types: np.ndarray,
    sizes: np.ndarray,
    layouts: np.ndarray,
    layout_first: np.ndarray,
    flow_index: np.ndarray,
    columns: dict[str, np.ndarray],
    report: RunReport,
    frame: int,
    offset: int,
) -> None:
    """Decode a 1.6 block's common records into `columns`, applying maps in block order."""
    from .nfcapd import place, records_view

    order = state.order
    map_positions = np.flatnonzero(types == 2)
    snapshots = [dict(state.v1_maps)]
    for index in map_positions.tolist():
        start = int(offsets[index])
        parsed = extension_map(bytes(buf[start : start + int(sizes[index])]), order)
        current = dict(snapshots[-1])
        if parsed is None:
            report.skip(
                MalformedInput(
                    f"record {index}: invalid extension map",
                    source=state.source,
                    offset=offset,
                    frame=frame,
                    reason="bad_extension_map",
                ),
                nbytes=int(sizes[index]),
            )
        else:
            current[parsed[0]] = parsed[1]
        snapshots.append(current)
    state.v1_maps = snapshots[-1]
    segment = np.searchsorted(map_positions, flow_index, side="right")
    key = layouts[flow_index].astype(np.int64) * (len(snapshots) + 1) + segment
    unique, inverse = np.unique(key, return_inverse=True)
    valid = np.zeros(len(flow_index), dtype=bool)
    for group, value in enumerate(unique.tolist()):
        positions = np.flatnonzero(inverse == group)
        layout_id, seg = divmod(value, len(snapshots) + 1)
        first = int(layout_first[layout_id])
        start, size = int(offsets[first]), int(sizes[first])
        flags = int(buf[start + 4])
        map_id = int(np.frombuffer(buf, f"{order}u2", 1, start + 6)[0])
        extensions = snapshots[seg].get(map_id)
        layout = (
            None if extensions is None else common_layout(flags, extensions, size, order == ">")
        )
        if layout is None:
            why = (
                f"extension map {map_id} is not defined"
                if extensions is None
                else f"record size {size} is too short for extension map {map_id}"
            )
            report.skip(
                MalformedInput(
                    f"{len(positions)} common record(s): {why}",
                    source=state.source,
                    offset=offset,
                    frame=frame,
                    reason="no_extension_map",
                ),
                nbytes=size * len(positions),
                count=len(positions),
            )
            continue
        rows = records_view(buf, offsets[flow_index[positions]], size, layout.dtype)
        place(columns, decode_common(rows, layout), positions)
        valid[positions] = True
    if not valid.all():
        columns["_valid"] = valid
