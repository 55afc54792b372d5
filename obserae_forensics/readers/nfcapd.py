"""Container reader for nfdump nfcapd files: file header → blocks → records → FLOW_SCHEMA batches.

Sources: nfdump `src/libnffile/nffileV2.h` (header, blocks), `nffile.c` (reading order,
appendix, compression), `src/include/exporter.h` (exporter/sampler records), nfdump 1.6.25
`bin/nffile.h`/`bin/nfx.h` for LAYOUT_VERSION_1 (nfcapd_v1.py). Digest: docs/formats.md §6-§8.

Layout 2 (nfdump 1.7): a 40-byte header, `NumBlocks` data blocks from offset 40, then
`appendixBlocks` blocks at `offAppendix` holding the ident and the stat record. Layout 1
(nfdump 1.6): a 140-byte header with the ident, a 136-byte stat record, data blocks from 276.
Every block is a 12-byte header and one compressed stream (compression.py) of records
`type u16 | size u16 | …`: V3 flow records (nfcapd_v3.py), 1.6 common records and extension
maps (nfcapd_v1.py), exporter info, exporter stats and sampler records.

The surprising things: everything is in the *writer's* byte order (the magic tells which; nfdump
itself refuses a foreign-order file, we read both); an exporter's `sysid` means something only
inside the file that defines it; and counters are already multiplied by the sampling rate when
the record's "sampled" flag is set (FLOW_SCHEMA `counters_scaled`).

Mapping decisions (the FLOW_SCHEMA docstring has the general conventions):

* `exporter` = the address of the exporter-info record of the record's sysid and
  `exporter_domain` its ID (v9 source ID / IPFIX ODID / v5 engine tag). Records whose sysid has
  no exporter info (nfpcapd writes sysid 0) take the record's own EXipReceived address, else
  the file's ident (else the file name), with domain 0. A record whose own EXipReceived
  address or nfversion contradicts its sysid's exporter record is read as the one exporter
  record of the file that agrees with it, and counted (`stale_sysid` under `repaired`):
  nfdump merging files (`-R dir -w`, `-M a:b:c -w`) appends each source file's exporter and
  sampler records under new sysids but leaves the records' sysids as they were, so they
  named another source file's exporter and took its sampling rate (a differential test
  against nfdump 1.7.1, whose `ra` kept the right address). With none or several that
  agree, the sysid's exporter stays (_stale_sysids).
* `arrival` = the record's msecReceived when non-zero, else the file's slot time: the header's
  `created` (when the collector opened the file, i.e. the start of its slot), else for 1.6 files
  and headers without it the stat record's last-seen time (the latest flow end the file knows).
* `source_frame` = block number (1-based, data blocks only), `source_offset` = byte offset of
  the block header, `record_index` = the record's place among all records of its block
  (exporter and sampler records included, so walking N records finds it).
* Time window `(from_us, to_us)`: every file is read whatever its stat record says
  (nfdump's CheckTimeWindow, `flist.c`, skips one it places wholly outside, but nfcapd 1.7
  gives NSEL files the collection slot there, not the flows' times: an audit); the
  records are selected by readers.read_flows, as a capture's are, like nfdump 1.7.1 `-t`
  (`nfdump.c` process_data, v1.7.1 L406): a record
  passes iff `first >= from` and `last <= to`, both inclusive (nfdump 1.7.8 made both
  comparisons strict; we follow the 1.7.1 oracle installed here), on the times the flow
  table holds: a record with one time missing is judged at the other, where nfdump drops
  it as 1970.
* RunReport: `report.file(path)` gets format "nfcapd-v2"/"nfcapd-v1", size, units = data blocks
  read, the ident, and from the stat record first/last seen and flows/packets/bytes.
  ExporterStats per (exporter, domain): records/packets/octets of the records decoded,
  inside the time window or not, as the export readers count what an exporter sent
  (packets and octets count forward + reverse, as nfdump's own totals and `nfdump -I`
  do), version, sampling rate, `datagrams` and `sequence_gaps` from the file's
  exporter-stats records (nfcapd's "packets" and "sequence failures"). `report.records`
  and the file's `records` are counted by the caller's loop (readers.read_flows), as for
  PCAP input.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import numpy as np
import pyarrow as pa

from ..addresses import V4_MAPPED_PREFIX, address_text, address_texts
from ..counters import exact_sum
from ..errors import InputError, MalformedInput, TruncatedInput, UnknownFormat
from ..report import FileStats, RunReport
from ..schema import FLOW_NUMERIC_DTYPES
from ..times import TIME_LIMIT_MS, time_faults
from ._batch import flow_batch
from .compression import (
    COMPRESSION_NAMES,
    MAX_BLOCK_BYTES,
    NONE,
    BadCompression,
    decompress_block,
)
from .nfcapd_scan import BAD_ELEMENTS, SCAN_OK, gather_records, scan_block
from .nfcapd_v1 import STAT_COUNTERS, decode_v1_block, read_header_v1
from .nfcapd_v3 import FLAG_SAMPLED, decode_layout, layout_for
from .nsel import COUNTERS as NSEL_COUNTERS
from .nsel import NselLedger, nsel_repair
from .packed import opened, packing_of_file, unpacked_head

MAGIC: Final = 0xA50C
LAYOUT_VERSION_1: Final = 1
LAYOUT_VERSION_2: Final = 2

# 40 bytes on 64-bit writers: time_t and off_t are 8 bytes (nffileV2.h L58-99). A 32-bit
# writer would differ; none is known to exist for 1.7.
FILE_HEADER_V2: Final = np.dtype(
    [
        ("magic", "<u2"),
        ("version", "<u2"),
        ("nfdversion", "<u4"),
        ("created", "<i8"),
        ("compression", "u1"),
        ("encryption", "u1"),
        ("appendix_blocks", "<u2"),
        ("creator", "<u4"),
        ("appendix_offset", "<i8"),
        ("block_size", "<u4"),
        ("num_blocks", "<u4"),
    ]
)
BLOCK_HEADER: Final = np.dtype(
    [
        ("num_records", "<u4"),
        ("size", "<u4"),  # size: stored bytes after the header
        ("type", "<u2"),
        ("flags", "<u2"),
    ]
)
# stat_record_t (nfdump.h L97-122): 15 counters, then first/last seen in ms, sequence failures
STAT_V2: Final = np.dtype(
    [(name, "<u8") for name in STAT_COUNTERS]
    + [("msec_first", "<u8"), ("msec_last", "<u8"), ("sequence_failures", "<u8")]
)
EXPORTER_INFO: Final = np.dtype(
    [
        ("type", "<u2"),
        ("size", "<u2"),
        ("version", "<u4"),
        ("ip_hi", "<u8"),
        ("ip_lo", "<u8"),  # 1.6-1.7.7: ip_addr_t, two host-order u64
        ("sa_family", "<u2"),  # 0 from 1.7.8 on: then ip is 16 network-order bytes
        ("sysid", "<u2"),
        ("id", "<u4"),
    ]
)
EXPORTER_STAT: Final = np.dtype(
    [
        ("sysid", "<u4"),
        ("sequence_failures", "<u4"),
        ("packets", "<u8"),
        ("flows", "<u8"),
    ]
)
SAMPLER_V0: Final = np.dtype(
    [  # record type 9 (1.6 and 1.7.0-1.7.1)
        ("type", "<u2"),
        ("size", "<u2"),
        ("id", "<i4"),
        ("interval", "<u4"),
        ("algorithm", "<u2"),
        ("sysid", "<u2"),
    ]
)
SAMPLER: Final = np.dtype(
    [  # record type 15 (from 1.7.2)
        ("type", "<u2"),
        ("size", "<u2"),
        ("sysid", "<u2"),
        ("algorithm", "<u2"),
        ("id", "<i8"),
        ("packet_interval", "<u4"),
        ("space_interval", "<u4"),
    ]
)
assert FILE_HEADER_V2.itemsize == 40 and BLOCK_HEADER.itemsize == 12
assert STAT_V2.itemsize == 144 and EXPORTER_INFO.itemsize == 32 and EXPORTER_STAT.itemsize == 24
assert SAMPLER_V0.itemsize == 16 and SAMPLER.itemsize == 24

# record types (id.h)
COMMON_RECORD_V0: Final = 1
EXTENSION_MAP: Final = 2
EXPORTER_INFO_RECORD: Final = 7
EXPORTER_STAT_RECORD: Final = 8
SAMPLER_V0_RECORD: Final = 9
COMMON_RECORD: Final = 10
V3_RECORD: Final = 11
SAMPLER_RECORD: Final = 15
APPENDIX_IDENT: Final = 0x8001
APPENDIX_STAT: Final = 0x8002
# block types
BLOCK_V1: Final = 2
BLOCK_V2: Final = 3
BLOCK_ARRAY: Final = 4

_AF_INET: Final = 2
_LATEST_MS: Final = 1 << 43  # year 2248: later stat or header times are garbage, not time


def is_nfcapd(head: bytes) -> bool:
    """True if `head` starts with the nfcapd magic in either byte order and layout 1 or 2."""
    if len(head) < 4:
        return False
    for order in ("<", ">"):
        magic, version = np.frombuffer(head[:4], dtype=f"{order}u2")
        if magic == MAGIC and version in (LAYOUT_VERSION_1, LAYOUT_VERSION_2):
            return True
    return False


def _byte_order(head: bytes) -> str:
    return "<" if np.frombuffer(head[:2], dtype="<u2")[0] == MAGIC else ">"


def _swap(dtype: np.dtype, order: str) -> np.dtype:
    return dtype if order == "<" else dtype.newbyteorder(">")


@dataclass
class _Exporter:
    text: str
    domain: int
    version: int


@dataclass
class _FileState:
    """Everything one file defines for its own records: exporters, samplers, codes."""

    source: str
    order: str
    slot_us: int  # arrival of records without a received time
    ident: str = ""
    exporters: dict[int, _Exporter] = field(default_factory=dict)  # sysid -> exporter
    default_rate: dict[int, int] = field(default_factory=dict)  # sysid -> rate
    default_rank: dict[int, int] = field(default_factory=dict)  # sysid -> its precedence
    sampler_rate: dict[tuple[int, int], int] = field(default_factory=dict)  # (sysid, id)
    streams: list[tuple[str, int]] = field(default_factory=list)  # (exporter text, domain)
    stream_index: dict[tuple[str, int], int] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    text_index: dict[str, int] = field(default_factory=dict)
    stream_text: list[int] = field(default_factory=list)
    stream_of_sysid: np.ndarray = field(default_factory=lambda: np.full(65536, -1, np.int32))
    # what each exporter record says of its exporter, to check the records naming it
    # against (_stale_sysids): version (0 unknown), address (16 bytes as two u64)
    version_of_sysid: np.ndarray = field(default_factory=lambda: np.zeros(65536, np.uint8))
    address_of_sysid: np.ndarray = field(default_factory=lambda: np.zeros((65536, 2), np.uint64))
    rate_of_sysid: np.ndarray = field(default_factory=lambda: np.ones(65536, np.uint32))
    v1_maps: dict[int, tuple[int, ...]] = field(default_factory=dict)  # 1.6 extension maps
    # streams whose timed records ended long before nfcapd received them: flows made offline
    offline: set[int] = field(default_factory=set)
    # the samplers the block being decoded defines, in its record order: (record index,
    # sysid, the exporter's rate from there), (record index, (sysid, id), rate), and what
    # was in force before the block; nfcapd writes them between the flows they sampled
    control_index: int = 0
    rate_changes: list[tuple[int, int, int]] = field(default_factory=list)
    sampler_changes: list[tuple[int, tuple[int, int], int]] = field(default_factory=list)
    rate_before: dict[int, int] = field(default_factory=dict)
    sampler_before: dict[tuple[int, int], int | None] = field(default_factory=dict)

    def stream(self, text: str, domain: int) -> int:
        key = (text, domain)
        index = self.stream_index.get(key)
        if index is None:
            index = self.stream_index[key] = len(self.streams)
            self.streams.append(key)
            code = self.text_index.get(text)
            if code is None:
                code = self.text_index[text] = len(self.texts)
                self.texts.append(text)
            self.stream_text.append(code)
        return index


@dataclass
class _Header:
    layout: int
    order: str
    compression: int
    encryption: int
    created: int
    data_start: int
    data_end: int
    num_blocks: int
    appendix_offset: int
    appendix_blocks: int
    ident: str
    stat: dict[str, int] | None
    nfdversion: int
    # what was wrong with the appendix or where the header places it, and the bytes
    # concerned: counted by the reader once it has the run's report
    problems: list[tuple[InputError, int]] = field(default_factory=list)


def read_nfcapd(
    path: Path,
    report: RunReport,
    *,
    batch_size: int = 65536,
    nsel: NselLedger | None = None,
) -> Iterator[pa.RecordBatch]:
    """FLOW_SCHEMA batches of every flow record in an nfcapd file (layout 1 or 2).

    Raises UnknownFormat at once if the file is not nfcapd. Bad blocks and records are counted
    in `report` and skipped; the rest of the file is still read.
    """
    return _read(path, _nfcapd_source(path), report, batch_size, nsel, _batch)


def first_arrival(path: Path, rows: int) -> tuple[int, int | None]:
    """The rows of the file's first batch of `rows` and their earliest arrival (µs): what
    readers._first_time orders the inputs by, as read_nfcapd's first batch would give it.

    The batch itself is not built: for a file of a few records, building it was near half of
    reading the file a second time (4,000 files of 43 records: 4.4 s, now 2.4 s). Raises what
    read_nfcapd raises; its counts go to a report of their own, thrown away (the file is
    counted when it is read for real)."""
    for arrival in _read(path, _nfcapd_source(path), RunReport(), rows, None, _arrivals):
        if len(arrival):
            return len(arrival), int(arrival.min())
    return 0, None


def _arrivals(state: _FileState, columns: dict[str, np.ndarray]) -> np.ndarray:
    # converted as flow_batch converts it, so that the earliest is the batch's
    return np.asarray(columns["arrival"]).astype(FLOW_NUMERIC_DTYPES["arrival"], copy=False)


def _nfcapd_source(path: Path) -> str:
    """The file's name as its records cite it, once its first bytes are an nfcapd file's."""
    source = str(path)
    with open(path, "rb") as f:
        head = f.read(4)
        kind = packing_of_file(f)
    if kind:  # compressed whole (packed.py), beside the blocks' own compression
        head = unpacked_head(path, kind, 4)[0]
    if not is_nfcapd(head):
        raise UnknownFormat(
            f"not an nfcapd file (starts {head.hex() or 'empty'}, expected "
            "magic 0ca5 with layout 1 or 2)",
            source=source,
            offset=0,
        )
    return source


def nfcapd_time_span(path: Path) -> tuple[int, int] | None:
    """(first_us, last_us) of the file's flows from its stat record; None when unknown."""
    try:
        with open(path, "rb") as f:
            header = _read_header(f, str(path), os.fstat(f.fileno()).st_size)
    except (UnknownFormat, MalformedInput):
        return None
    return _stat_span(header.stat)


def _stat_span(stat: dict[str, int] | None) -> tuple[int, int] | None:
    if stat is None:
        return None
    first, last = stat["msec_first"], stat["msec_last"]
    if not 0 < first <= last < _LATEST_MS:  # 0 / INT64_MAX mean "no flows seen"
        return None
    return first * 1000, last * 1000


def _read_header(f: IO[bytes], source: str, size: int) -> _Header:
    head = f.read(FILE_HEADER_V2.itemsize)
    if not is_nfcapd(head):
        raise UnknownFormat("not an nfcapd file", source=source, offset=0)
    order = _byte_order(head)
    layout = int(np.frombuffer(head[2:4], dtype=f"{order}u2")[0])
    if layout == LAYOUT_VERSION_1:
        v1 = read_header_v1(f, source, order)
        return _Header(
            LAYOUT_VERSION_1,
            order,
            v1.compression,
            0,
            0,
            v1.data_start,
            size,
            v1.num_blocks,
            0,
            0,
            v1.ident,
            v1.stat,
            0,
        )
    if len(head) < FILE_HEADER_V2.itemsize:
        raise TruncatedInput(
            f"file header needs {FILE_HEADER_V2.itemsize} bytes, file has {len(head)}",
            source=source,
            offset=0,
        )
    h = np.frombuffer(head, dtype=_swap(FILE_HEADER_V2, order))[0]
    appendix_offset = int(h["appendix_offset"])
    data_end = size
    if FILE_HEADER_V2.itemsize <= appendix_offset <= size and h["appendix_blocks"] > 0:
        data_end = appendix_offset
    header = _Header(
        LAYOUT_VERSION_2,
        order,
        int(h["compression"]),
        int(h["encryption"]),
        int(h["created"]),
        FILE_HEADER_V2.itemsize,
        data_end,
        int(h["num_blocks"]),
        appendix_offset if data_end != size else 0,
        int(h["appendix_blocks"]),
        "",
        None,
        int(h["nfdversion"]),
    )
    if header.appendix_offset:
        across = _block_across_appendix(f, header, size)
        if across is not None or not _read_appendix(f, header, source, size):
            # nfdump reads its NumBlocks data blocks from the header on, whatever the offset
            # says; taken as the end of the data, a damaged offset lost every record after
            # it with no more than a cut reported
            where = (
                f"inside the data block at {across[0]} (which ends at {across[1]})"
                if across is not None
                else "where no appendix block is"
            )
            header.problems[:] = [
                (
                    MalformedInput(
                        f"header places the appendix at {appendix_offset}, {where}: the offset is "
                        "damaged; data blocks read to the end of the file, ident and stat unknown",
                        source=source,
                        offset=24,
                        reason="bad_appendix",
                    ),
                    0,
                )
            ]
            header.data_end, header.appendix_offset = size, 0
            header.ident, header.stat = "", None
    elif appendix_offset >= size and h["appendix_blocks"] > 0:
        # the file was cut (at the appendix's first byte, too): its data blocks may end
        # cleanly, but ident and stat are gone
        header.problems.append(
            (
                TruncatedInput(
                    f"header places the appendix at {appendix_offset}, file ends at {size}",
                    source=source,
                    offset=size,
                ),
                0,
            )
        )
    return header


def _block_across_appendix(f: IO[bytes], header: _Header, size: int) -> tuple[int, int] | None:
    """(start, end) of a data block that runs past the header's appendix offset, walking the
    block headers from the data start (a damaged header stops the walk: the blocks' own
    reader says what is wrong there); None when the blocks end at or before it."""
    block_dtype = _swap(BLOCK_HEADER, header.order)
    pos = header.data_start
    while pos + BLOCK_HEADER.itemsize <= header.appendix_offset:
        f.seek(pos)
        block = np.frombuffer(f.read(BLOCK_HEADER.itemsize), dtype=block_dtype)[0]
        stored = int(block["size"])
        if not _plausible_block(
            stored, int(block["num_records"]), int(block["type"]), int(block["flags"])
        ):
            return None
        end = pos + BLOCK_HEADER.itemsize + stored
        if end > header.appendix_offset:
            return (pos, end) if end <= size else None  # past the end: a cut file
        pos = end
    return None


def _read_appendix(f: IO[bytes], header: _Header, source: str, size: int) -> bool:
    """Fill ident and stat from the appendix blocks; a bad appendix leaves them unknown and
    is a problem of header.problems (its flow records do not depend on it). False when the
    first block holds no ident or stat record at all: the offset points at something else
    (a data block), so it is the offset that is damaged."""
    pos = header.appendix_offset
    block_dtype = _swap(BLOCK_HEADER, header.order)
    stat_dtype = _swap(STAT_V2, header.order)
    for number in range(1, min(header.appendix_blocks, 16) + 1):
        f.seek(pos)
        raw = f.read(BLOCK_HEADER.itemsize)
        if len(raw) < BLOCK_HEADER.itemsize:
            header.problems.append(
                (
                    TruncatedInput(
                        f"appendix block {number}: header needs 12 bytes, {len(raw)} left",
                        source=source,
                        offset=pos,
                    ),
                    len(raw),
                )
            )
            return True
        block = np.frombuffer(raw, dtype=block_dtype)[0]
        stored = int(block["size"])
        if pos + 12 + stored > size:
            header.problems.append(
                (
                    TruncatedInput(
                        f"appendix block {number} promises {stored} bytes, {size - pos - 12} left",
                        source=source,
                        offset=pos,
                    ),
                    size - pos,
                )
            )
            return True
        if stored == 0 or stored > MAX_BLOCK_BYTES:
            header.problems.append(
                (
                    MalformedInput(
                        f"appendix block {number}: implausible size {stored}",
                        source=source,
                        offset=pos,
                        reason="bad_appendix",
                    ),
                    size - pos,
                )
            )
            return True
        payload = f.read(stored)
        code = _block_codec(int(block["flags"]), header)
        if code not in COMPRESSION_NAMES:
            # the file is refused whole for this code (_read): one problem, at byte 16, not a
            # second at its appendix that --strict stopped on first
            return True
        try:
            data = decompress_block(code, payload, source=source, offset=pos)
        except BadCompression as error:
            header.problems.append((error, 12 + stored))
            return True
        at = 0
        if (
            number == 1
            and len(data) >= 4
            and int(np.frombuffer(data, f"{header.order}u2", 1, 0)[0])
            not in (APPENDIX_IDENT, APPENDIX_STAT)
        ):
            return False
        for index in range(int(block["num_records"])):
            if at + 4 > len(data):
                header.problems.append(
                    (
                        MalformedInput(
                            f"appendix block {number}: record {index} of "
                            f"{int(block['num_records'])} starts past the block's "
                            f"{len(data)} bytes",
                            source=source,
                            offset=pos,
                            reason="bad_appendix",
                        ),
                        len(data) - at,
                    )
                )
                break
            # Python ints: a numpy uint16 beside an offset past 65,535 overflowed (NumPy 2
            # converts the int to the scalar's type)
            record_type, record_size = (
                int(value) for value in np.frombuffer(data, f"{header.order}u2", 2, at)
            )
            if record_size < 4 or at + record_size > len(data):
                header.problems.append(
                    (
                        MalformedInput(
                            f"appendix block {number}: record {index} has size {record_size}, "
                            f"{len(data) - at} bytes left",
                            source=source,
                            offset=pos,
                            reason="bad_appendix",
                        ),
                        len(data) - at,
                    )
                )
                break
            body = data[at + 4 : at + record_size]
            if record_type == APPENDIX_IDENT:
                header.ident = body.split(b"\0", 1)[0].decode("utf-8", "replace")
            elif record_type == APPENDIX_STAT and len(body) >= STAT_V2.itemsize:
                stat = np.frombuffer(body, stat_dtype, 1)[0]
                header.stat = {name: int(stat[name]) for name in STAT_V2.names or ()}
            at += int(record_size)
        else:
            if at < len(data) and any(data[at:]):
                # records past the count the block header gives (a damaged count)
                header.problems.append(
                    (
                        MalformedInput(
                            f"appendix block {number}: {len(data) - at} bytes after its "
                            f"{int(block['num_records'])} records",
                            source=source,
                            offset=pos,
                            reason="bad_appendix",
                        ),
                        len(data) - at,
                    )
                )
        pos += 12 + stored
    if pos < size:
        # nfcapd writes the appendix last; nothing after it is read, by nfdump either
        header.problems.append(
            (
                MalformedInput(
                    f"{size - pos} bytes after the appendix",
                    source=source,
                    offset=pos,
                    reason="bad_appendix",
                ),
                size - pos,
            )
        )
    return True


_Built = TypeVar("_Built")


def _read(
    path: Path,
    source: str,
    report: RunReport,
    batch_size: int,
    nsel: NselLedger | None,
    build: Callable[[_FileState, dict[str, np.ndarray]], _Built],
) -> Iterator[_Built]:
    stats = report.file(source)
    stats.size = path.stat().st_size
    with opened(path, report) as f:
        size = os.fstat(f.fileno()).st_size  # decompressed, when the file is compressed
        try:
            header = _read_header(f, source, size)
        except MalformedInput as error:
            report.skip(error, nbytes=size)
            return
        # a file skipped whole (encrypted, unknown compression) counts its bytes once
        whole = bool(header.encryption) or header.compression not in COMPRESSION_NAMES
        for problem, nbytes in header.problems:
            report.skip(problem, nbytes=0 if whole else nbytes)
        stats.format = "nfcapd-v1" if header.layout == LAYOUT_VERSION_1 else "nfcapd-v2"
        span = _stat_span(header.stat)
        if span is not None:
            stats.first_us, stats.last_us = span
        stats.ident = header.ident
        if header.stat is not None:
            stats.stat_flows = header.stat["flows"]
            stats.stat_packets = header.stat["packets"]
            stats.stat_bytes = header.stat["bytes"]
        if header.encryption:
            report.skip(
                MalformedInput(
                    f"encrypted file (method {header.encryption})",
                    source=source,
                    offset=17,
                    reason="encrypted",
                ),
                nbytes=size,
            )
            return
        if header.compression not in COMPRESSION_NAMES:
            report.skip(
                MalformedInput(
                    f"unknown compression code {header.compression}",
                    source=source,
                    offset=16,
                    reason="bad_compression",
                ),
                nbytes=size,
            )
            return
        # every file is read, whatever its stat record says of its times: nfcapd 1.7's
        # NSEL files give the collection slot there, not the flows' times, and a window
        # around the records of one left all of them out, and its exporters uncounted
        # (an audit); records outside are counted one by one, as from a capture
        if 0 < header.created < _LATEST_MS // 1000:
            slot_us = header.created * 1_000_000
        else:
            slot_us = span[1] if span else 0
        state = _FileState(source, header.order, slot_us, ident=header.ident)
        pending: list[dict[str, np.ndarray]] = []
        pending_rows = 0
        decoded = 0  # flow records in the blocks, for the stat record's count
        for frame, offset, block_type, claimed, payload, sized in _blocks(
            f, header, source, report
        ):
            stats.units += 1
            columns = _decode_block(
                state, payload, frame, offset, block_type, claimed, report, sized=sized
            )
            if columns is None:
                continue
            decoded += len(columns["first_seen"])
            # the time window is the caller's (readers.read_flows), on the times the flow
            # table holds, as for the export readers' records
            _settle_nsel(state, columns, nsel, frame, offset, report)
            rows = len(columns["first_seen"])
            if rows == 0:
                continue
            _count_exporters(state, columns, report)
            _count_aggregates(columns.pop("_aggregated_flows"), stats)
            # only records with times (one without is left out and said so); inside the
            # time window or not, as every repair the readers count
            put_back = columns.pop("_flags_put_back") & ~np.logical_or(
                *time_faults(columns["first_seen"], columns["last_seen"])[:2]
            )
            _count_flags_put_back(state, put_back, frame, offset, report)
            pending.append(columns)
            pending_rows += rows
            while pending_rows >= batch_size:
                merged = _concat(pending)
                yield build(state, _slice(merged, 0, batch_size))
                rest = pending_rows - batch_size
                pending = [_slice(merged, batch_size, pending_rows)] if rest else []
                pending_rows = rest
        if pending_rows:
            yield build(state, _concat(pending))
        _finish_exporters(state, report)
        _check_stat_flows(header, stats, decoded, source, report)


def _check_stat_flows(
    header: _Header, stats: FileStats, decoded: int, source: str, report: RunReport
) -> None:
    """The flows the file's stat record counts against those its blocks hold: equal in
    every file of the corpus and the vendor sets (127, nfdump 1.6 to 1.7.8), and zero in a
    file still being written. A difference nothing else explains (no block skipped or cut)
    is said: found by fuzzing, a block
    copied into a file, with its header's block count raised to match, doubled its
    records without a word."""
    claimed = stats.stat_flows
    if claimed is None or stats.skipped or decoded == claimed:
        return
    if claimed == 0 and header.num_blocks == 0:
        return  # a file still being written: nfcapd 1.6 fills both in when it closes it
    if stats.aggregated_records and (
        decoded - stats.aggregated_records + stats.aggregated_flows == claimed
    ):
        return  # (should nfdump count an aggregated record's flows)
    report.repair(
        MalformedInput(
            f"the stat record counts {claimed} flows, the data blocks hold {decoded} flow "
            "records: read as they are (blocks copied into the file or lost from it, or a "
            "stat record not updated)",
            source=source,
            offset=header.appendix_offset if header.layout == LAYOUT_VERSION_2 else 140,
            reason="nfcapd_stat_mismatch",
        )
    )


def _blocks(
    f: IO[bytes], header: _Header, source: str, report: RunReport
) -> Iterator[tuple[int, int, int, int, bytes, bool]]:
    """(block number, block offset, block type, records claimed, uncompressed payload, size
    borne out: the data's end or a plausible block header follows the block, so a record
    count its bytes fall short of is the count's damage, not records cut off by a size
    lowered onto a record's boundary)."""
    block_dtype = _swap(BLOCK_HEADER, header.order)
    pos = header.data_start
    frame = 0
    past_count = 0  # where the first block past the header's NumBlocks begins
    # damaged stretches skipped to the next good header that may or may not have been a
    # block of their own (a damaged header, or the tail of a block whose size was damaged)
    uncertain = 0
    f.seek(pos)
    while pos < header.data_end:
        frame += 1
        if frame == header.num_blocks + 1 and header.num_blocks:
            past_count = pos
        if header.data_end - pos < BLOCK_HEADER.itemsize:
            report.skip(
                TruncatedInput(
                    f"block header needs 12 bytes, {header.data_end - pos} left",
                    source=source,
                    offset=pos,
                    frame=frame,
                ),
                nbytes=header.data_end - pos,
            )
            return
        f.seek(pos)
        block = np.frombuffer(f.read(BLOCK_HEADER.itemsize), dtype=block_dtype)[0]
        stored, num_records = int(block["size"]), int(block["num_records"])
        block_type, flags = int(block["type"]), int(block["flags"])
        if not _plausible_block(stored, num_records, block_type, flags):
            resumed = _resync(f, pos + 1, header, block_dtype)
            what = (
                f"implausible block header (records {num_records}, size {stored}, type "
                f"{block_type}, flags {flags:#x})"
            )
            if resumed is None:
                report.skip(
                    MalformedInput(
                        what, source=source, offset=pos, frame=frame, reason="bad_block_header"
                    ),
                    nbytes=BLOCK_HEADER.itemsize,
                )
                report.skip(
                    MalformedInput(
                        "no further block header found after a bad one",
                        source=source,
                        offset=pos + BLOCK_HEADER.itemsize,
                        frame=frame,
                        reason="bad_block_header",
                    ),
                    nbytes=header.data_end - pos - BLOCK_HEADER.itemsize,
                )
                return
            # the bytes up to the next good header are lost with the bad one
            report.skip(
                MalformedInput(
                    f"{what}; the next block header is at {resumed}",
                    source=source,
                    offset=pos,
                    frame=frame,
                    reason="bad_block_header",
                ),
                nbytes=resumed - pos,
            )
            if resumed - pos < BLOCK_HEADER.itemsize:
                # a misread, not a block: the block before ended a few bytes early (its size
                # damaged), and the next block keeps its number (it was numbered one on, and
                # the file's last block read as one past the header's count: a review)
                frame -= 1
            elif resumed - pos != BLOCK_HEADER.itemsize + stored:
                uncertain += 1  # unless the damaged header's own size spans it: one block
            pos = resumed
            continue
        end = pos + BLOCK_HEADER.itemsize + stored
        if end > header.data_end:
            report.skip(
                TruncatedInput(
                    f"block promises {stored} bytes, {header.data_end - pos - 12} left"
                    # the records lost with it, which nothing else counts (a review: a cut
                    # file said "2 truncated", its 2,004 records unsaid)
                    + (
                        f": its header counts {num_records} record(s), lost with it"
                        if block_type in (BLOCK_V1, BLOCK_V2)
                        else ""
                    ),
                    source=source,
                    offset=pos,
                    frame=frame,
                ),
                nbytes=header.data_end - pos,
            )
            return
        raw = f.read(stored)
        if block_type == BLOCK_ARRAY:
            damage = _array_block_damage(raw, flags, num_records, header)
            if damage:
                # found by fuzzing: a flow block whose type was damaged to 4 was lost as
                # metadata without a word (25 records)
                report.skip(
                    MalformedInput(
                        damage, source=source, offset=pos, frame=frame, reason="unsupported_block"
                    ),
                    nbytes=end - pos,
                )
            else:
                report.ignore("nfcapd_array_block", source, BLOCK_HEADER.itemsize + stored)
            pos = end
            continue
        if block_type not in (BLOCK_V1, BLOCK_V2):
            reason = "unsupported_block"
            report.skip(
                MalformedInput(
                    f"block type {block_type} is not a data block nfdump 1.6/1.7 reads",
                    source=source,
                    offset=pos,
                    frame=frame,
                    reason=reason,
                ),
                nbytes=end - pos,
            )
            pos = end
            continue
        code = _block_codec(flags, header)
        try:
            payload = decompress_block(code, raw, source=source, offset=pos, frame=frame)
        except BadCompression as error:
            report.skip(error, nbytes=end - pos)
            pos = end
            continue
        sized = end == header.data_end
        if not sized and end + BLOCK_HEADER.itemsize <= header.data_end:
            f.seek(end)
            after = np.frombuffer(f.read(BLOCK_HEADER.itemsize), dtype=block_dtype)[0]
            sized = _plausible_block(
                int(after["size"]),
                int(after["num_records"]),
                int(after["type"]),
                int(after["flags"]),
            )
        yield frame, pos, block_type, num_records, payload, sized
        pos = end
    if frame < header.num_blocks:
        # cut at a block boundary: nothing else would notice (a file still being written
        # has 0 here until nfcapd closes it, so only fewer blocks than promised count)
        report.skip(
            TruncatedInput(
                f"header promises {header.num_blocks} data blocks, file holds {frame}",
                source=source,
                offset=pos,
                frame=frame + 1,
            ),
            nbytes=0,
        )
    elif past_count and frame - header.num_blocks > uncertain:
        # found by fuzzing: a block copied in after the counted ones doubled the file's
        # records without a word (nfdump reads NumBlocks blocks and stops); read, and said
        report.repair(
            MalformedInput(
                f"header says {header.num_blocks} data block(s), {frame - header.num_blocks} "
                "more follow: read (blocks copied into the file, or its header not updated); "
                "nfdump stops at the header's count",
                source=source,
                offset=past_count,
                frame=header.num_blocks + 1,
                reason="nfcapd_blocks_past_count",
            ),
            count=frame - header.num_blocks,
        )


def _block_codec(flags: int, header: _Header) -> int:
    """A block's compression: the file's, unless a 1.7 block's flag bit 0 says it is stored
    uncompressed (the 1.7.8 writer never sets it; `nfdump -v` honours it)."""
    return NONE if flags & 0x1 and header.layout == LAYOUT_VERSION_2 else header.compression


def _array_block_damage(raw: bytes, flags: int, num_records: int, header: _Header) -> str:
    """Why a block of type 4 (an array block: one record header giving the element size,
    then bare elements, as nfdump's GeoDB and TorDB files hold) cannot be one: nfdump 1.6
    files hold none, and one that reads whole as a block of records, exactly the number its
    header counts, flow records among them, is a flow block whose type was damaged (an
    array's elements, walked as records, end anywhere but there); '' when it may be one."""
    if header.layout != LAYOUT_VERSION_2:
        return "an array block (type 4), which nfdump 1.6 files never hold: a damaged type"
    code = _block_codec(flags, header)
    try:
        data = decompress_block(code, raw, source="", offset=0)
    except BadCompression:
        return "an array block (type 4) that does not decompress"
    at, records, flows = 0, 0, 0
    while at + 4 <= len(data):  # read as a block of records
        record_type, size = (int(v) for v in np.frombuffer(data, f"{header.order}u2", 2, at))
        if size < 4 or at + size > len(data):
            return ""
        flows += record_type in (COMMON_RECORD, V3_RECORD)
        records += 1
        at += size
    if at == len(data) and records == num_records and flows:
        return (
            f"an array block (type 4) that reads as {records} records, {flows} of them "
            "flow records: a flow block whose type was damaged"
        )
    return ""


def _records_lost(claimed: int, walked: int, size: int, where: int, *, sized: bool) -> int:
    """How many records a block lost where its walk stopped at byte `where` after `walked`
    of the `claimed` its header counts. The count's shortfall, unless the count is the
    damage: more than any block holds, or more than this one could whose size is borne out
    (a record is 4 bytes at least). Then the bytes left at the records' mean size (a
    count of 4,278,190,154 said as many lost). A block whose size was lowered loses its
    count's records past its end: its size is not borne out, and the count is kept."""
    shortfall = claimed - walked
    if claimed > MAX_BLOCK_BYTES // 4 or (sized and claimed > size // 4):
        left = max(size - where, 0)
        estimate = left * walked // where if walked and where else left // 4
        shortfall = min(shortfall, estimate)
    return max(shortfall, 1)


def _plausible_block(stored: int, num_records: int, block_type: int, flags: int) -> bool:
    return (
        0 < stored <= MAX_BLOCK_BYTES - BLOCK_HEADER.itemsize
        and 0 < num_records
        and block_type in (1, BLOCK_V1, BLOCK_V2, BLOCK_ARRAY)
        and flags <= 0x7
    )


def _resync(f: IO[bytes], start: int, header: _Header, block_dtype: np.dtype) -> int | None:
    """Offset of the next plausible block header after a bad one, or None.

    A candidate must be a plausible header whose block fits before the data end and whose
    payload decodes (for uncompressed files: whose first record header is plausible).
    """
    window = 8 * 1024 * 1024
    pos = start
    while pos + BLOCK_HEADER.itemsize <= header.data_end:
        f.seek(pos)
        chunk = f.read(min(window, header.data_end - pos))
        count = len(chunk) - BLOCK_HEADER.itemsize + 1
        if count <= 0:
            return None
        raw = np.frombuffer(chunk, dtype=np.uint8)
        sizes = _u32_at(raw, 4, count, header.order)
        records = _u32_at(raw, 0, count, header.order)
        types = _u16_at(raw, 8, count, header.order)
        flags = _u16_at(raw, 10, count, header.order)
        ok = (
            (sizes > 0)
            & (sizes <= MAX_BLOCK_BYTES - 12)
            & (records > 0)
            & np.isin(types, (BLOCK_V1, BLOCK_V2))
            & (flags <= 0x7)
            & (pos + np.arange(count) + 12 + sizes.astype(np.int64) <= header.data_end)
        )
        for index in np.flatnonzero(ok):
            candidate = pos + int(index)
            block = np.frombuffer(chunk[index : index + 12], dtype=block_dtype)[0]
            f.seek(candidate + 12)
            payload = f.read(int(block["size"]))
            code = _block_codec(int(block["flags"]), header)
            try:
                data = decompress_block(code, payload, source="", offset=0)
            except BadCompression:
                continue
            if len(data) >= 4:
                record_size = int(np.frombuffer(data[2:4], f"{header.order}u2")[0])
                if 4 <= record_size <= len(data):
                    return candidate
        pos += count
    return None


def _u32_at(raw: np.ndarray, at: int, count: int, order: str) -> np.ndarray:
    b = [raw[at + k : at + k + count].astype(np.uint32) for k in range(4)]
    if order == "<":
        return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)
    return b[3] | (b[2] << 8) | (b[1] << 16) | (b[0] << 24)


def _u16_at(raw: np.ndarray, at: int, count: int, order: str) -> np.ndarray:
    lo = raw[at : at + count].astype(np.uint32)
    hi = raw[at + 1 : at + 1 + count].astype(np.uint32)
    return lo | (hi << 8) if order == "<" else hi | (lo << 8)


def _decode_block(
    state: _FileState,
    payload: bytes,
    frame: int,
    offset: int,
    block_type: int,
    claimed: int,
    report: RunReport,
    *,
    sized: bool = True,
) -> dict[str, np.ndarray] | None:
    """Columns of the flow records of one block (None if it holds none). `sized`: the
    block's size is borne out by what follows it (_blocks)."""
    buf = np.frombuffer(payload, dtype=np.uint8)
    big_endian = state.order == ">"
    max_records = min(claimed, len(payload) // 4)
    offsets, types, sizes, layouts, layout_first, count, status, where = scan_block(
        buf, 0, len(payload), max_records, big_endian
    )
    walked = int(offsets[-1] + sizes[-1]) if count else 0  # where the last walked record ends
    left = max(len(payload) - int(where), 0)
    if count < claimed and count and walked == len(payload) and sized:
        # every byte of the block is in the records walked: its header's count is damaged,
        # and nothing is lost (a count of 4,278,190,154 said "skipped: 4278190080
        # bad_record" of a block whose 74 records were all read: a differential with nfdump)
        report.repair(
            MalformedInput(
                f"block header counts {claimed} records, its {len(payload)} bytes hold "
                f"{count}: all read",
                source=state.source,
                offset=offset,
                frame=frame,
                reason="nfcapd_record_count",
            )
        )
    elif status != SCAN_OK or count < claimed:
        report.skip(
            MalformedInput(
                f"record walk stops at byte {where} of the block after {count} of {claimed} records"
                f" ({'bad record size' if status else 'block ends early'})",
                source=state.source,
                offset=offset,
                frame=frame,
                reason="bad_record",
            ),
            nbytes=left,
            count=_records_lost(claimed, count, len(payload), int(where), sized=sized),
        )
    elif walked < len(payload) and any(payload[walked:]):
        # nfdump writes a block's records and nothing after them: bytes beyond the records
        # the header counts are records it no longer counts (a damaged count), or garbage
        report.skip(
            MalformedInput(
                f"{len(payload) - walked} bytes after the block's {claimed} records",
                source=state.source,
                offset=offset,
                frame=frame,
                reason="bad_record",
            ),
            nbytes=len(payload) - walked,
        )
    state.rate_changes.clear()
    state.sampler_changes.clear()
    state.rate_before.clear()
    state.sampler_before.clear()
    for index in np.flatnonzero(layouts < 0):
        state.control_index = int(index)
        record_type = int(types[index])
        record = payload[int(offsets[index]) : int(offsets[index]) + int(sizes[index])]
        if layouts[index] == BAD_ELEMENTS:
            report.skip(
                MalformedInput(
                    f"record {index} (type {record_type}) has elements inconsistent with its size "
                    f"{len(record)}",
                    source=state.source,
                    offset=offset,
                    frame=frame,
                    reason="bad_record",
                ),
                nbytes=len(record),
            )
        elif record_type == EXTENSION_MAP and block_type != BLOCK_V1:
            # 1.6 maps are applied in block order by nfcapd_v1; a 1.7 block has none
            report.skip(
                MalformedInput(
                    f"record {index} (type {record_type}, a 1.6 extension map) in a block of "
                    f"type {block_type}",
                    source=state.source,
                    offset=offset,
                    frame=frame,
                    reason="bad_record",
                ),
                nbytes=len(record),
            )
        else:
            _control_record(
                state, record_type, record, frame, offset, int(index), report, block_type
            )
    flow_mask = layouts >= 0
    # 1.6 blocks hold common records, 1.7 blocks V3 records; each decoder trusts what the
    # scan checked for its own record type only (a V3 element list, a common record's
    # extension map), so a record of the other kind is damage, not something to decode
    expected = COMMON_RECORD if block_type == BLOCK_V1 else V3_RECORD
    for index in np.flatnonzero(flow_mask & (types != expected)):
        report.skip(
            MalformedInput(
                f"record {index} (type {int(types[index])}) in a block of type {block_type}, "
                f"which holds type {expected} records",
                source=state.source,
                offset=offset,
                frame=frame,
                reason="bad_record",
            ),
            nbytes=int(sizes[index]),
        )
        flow_mask[index] = False
    n = int(np.count_nonzero(flow_mask))
    if n == 0:
        return None
    flow_index = np.flatnonzero(flow_mask)
    flow_layouts = layouts[flow_index]
    columns = _empty_columns(n)
    if block_type == BLOCK_V1:
        decode_v1_block(
            state,
            buf,
            offsets,
            types,
            sizes,
            layouts,
            layout_first,
            flow_index,
            columns,
            report,
            frame,
            offset,
        )
        valid = columns.pop("_valid", None)
        if valid is not None:  # records whose extension map is missing were counted there
            columns = {name: values[valid] for name, values in columns.items()}
            flow_index = flow_index[valid]
            n = len(flow_index)
            if n == 0:
                return None
    else:
        _decode_v3_groups(
            state,
            buf,
            offsets,
            sizes,
            flow_layouts,
            flow_index,
            layout_first,
            columns,
            report,
            frame,
            offset,
            big_endian,
        )
    _resolve_exporters(state, columns, flow_index, frame, offset, report)
    _event_times(columns)
    received = columns.pop("_msec_received")
    damaged = (received > TIME_LIMIT_MS) | (received < 0)  # < 0: u64 past 2**63
    if damaged.any():
        # the record is whole but its receive time is not: arrival falls back to the file's
        # slot time, as for a record without one, and says so
        report.skip(
            MalformedInput(
                f"{int(np.count_nonzero(damaged))} record(s) with a receive time past the µs range "
                "(arrival given the file's time slot instead)",
                source=state.source,
                offset=offset,
                frame=frame,
                reason="bad_timestamp",
            ),
            count=int(np.count_nonzero(damaged)),
        )
    received_ok = (received > 0) & ~damaged
    columns["arrival"] = np.where(received_ok, received * 1000, state.slot_us)
    _receive_times(state, columns, received_ok, frame, offset, report)
    columns["source_frame"] = np.full(n, frame, dtype=np.uint64)
    columns["source_offset"] = np.full(n, offset, dtype=np.uint64)
    columns["record_index"] = flow_index.astype(np.uint32)
    return columns


def _receive_times(
    state: _FileState,
    columns: dict[str, np.ndarray],
    received: np.ndarray,
    frame: int,
    offset: int,
    report: RunReport,
) -> None:
    """A record whose exporter sent no time nfcapd could use is stored with both times 0
    (nfdump prints 1970): Mikrotik's IPFIX gives uptimes without systemInitTime, Barracuda,
    Citrix NetScaler, Cisco's 1941 and WLC templates no flow times at all. The export
    readers place such records at their datagram's export time; here the nearest thing is
    when nfcapd received them, and they used to be left out (`no_times`) with every record
    of such an exporter. They are placed there, counted as `receive_time` under `repaired`,
    when the collection was live: unless the exporter's timed records beside them (in their
    block, or an earlier block that had timeless ones) all ended more than a day before
    they were received (flows made offline, `softflowd -r` or nfpcapd replaying an old
    capture, where the receive time is not the flow's: the corpus synscan's first SYN stays
    left out). Live, a record reaches nfcapd at most an active
    timeout after it ends: the least lag of a stream's timed records tells."""
    first, last = columns["first_seen"], columns["last_seen"]
    timeless = (first == 0) & (last == 0) & received
    if not timeless.any():
        return
    stream = columns["_stream"]
    # judged on the block's timed records of each stream that has timeless ones (and what
    # earlier such blocks showed): a block without timeless records costs nothing more
    timed = received & (last > 0)
    lag = columns["arrival"] - last
    streams = (
        [int(stream[0])] if stream.min() == stream.max() else np.unique(stream[timeless]).tolist()
    )
    for index in streams:
        mine = timed & (stream == index)
        if mine.any() and int(lag[mine].min()) > _OFFLINE_LAG_US:
            state.offline.add(index)
    place = timeless & ~np.isin(stream, np.array(sorted(state.offline), dtype=stream.dtype))
    count = int(np.count_nonzero(place))
    if not count:
        return
    arrival = columns["arrival"]
    columns["first_seen"] = np.where(place, arrival, first)
    columns["last_seen"] = np.where(place, arrival, last)
    report.repair(
        MalformedInput(
            f"{count} record(s) without a time (nfcapd stores 0 for a time its exporter did not "
            "send): placed at their receive time, as the export readers place them at their "
            "datagram's",
            source=state.source,
            offset=offset,
            frame=frame,
            reason="receive_time",
        ),
        count=count,
    )


_OFFLINE_LAG_US: Final = 86_400_000_000  # receive time - last_seen: a day
_COLUMN_DEFAULTS: Final[dict[str, tuple[str, int]]] = {
    "first_seen": ("int64", 0),
    "last_seen": ("int64", 0),
    "ip_version": ("uint8", 0),
    "src_port": ("uint16", 0),
    "dst_port": ("uint16", 0),
    "protocol": ("uint8", 0),
    "tcp_flags": ("uint16", 0),
    "tos": ("uint8", 0),
    "packets": ("uint64", 0),
    "octets": ("uint64", 0),
    "reverse_packets": ("uint64", 0),
    "reverse_octets": ("uint64", 0),
    "input_if": ("uint32", 0),
    "output_if": ("uint32", 0),
    "src_as": ("uint32", 0),
    "dst_as": ("uint32", 0),
    "flow_end_reason": ("uint8", 0),
    "export_version": ("uint8", 0),
    "_sysid": ("uint16", 0),
    "_flags": ("uint8", 0),
    "_msec_received": ("int64", 0),
    "_sampler_interval": ("uint32", 0),
    "_selector_id": ("int64", 0),
    "_sampler_sysid": ("uint16", 0),
    "_has_selector": ("bool", 0),
    "_has_router": ("bool", 0),
    "_aggregated_flows": ("uint64", 0),
    "reverse_tcp_flags": ("uint16", 0),
    "_flags_put_back": ("bool", 0),
}
# columns of rare elements, made only in a block that has them (Cisco NSEL's EXnselCommon)
_LAZY_COLUMNS: Final[dict[str, str]] = {
    "_nsel_event": "uint64",
    "_nsel_connection": "uint64",
    "_nsel_event_ms": "int64",
}
_ADDRESS_COLUMNS: Final = ("src_addr", "dst_addr", "next_hop", "_router")


def _empty_columns(n: int) -> dict[str, np.ndarray]:
    columns = {
        name: np.full(n, value, dtype=dtype) for name, (dtype, value) in _COLUMN_DEFAULTS.items()
    }
    for name in _ADDRESS_COLUMNS:
        columns[name] = np.zeros((n, 16), dtype=np.uint8)
    return columns


def place(
    columns: dict[str, np.ndarray], decoded: dict[str, np.ndarray], positions: np.ndarray | None
) -> None:
    """Write one layout's decoded columns into the block's columns at `positions` (None = all)."""
    for name, values in decoded.items():
        target = columns.get(name)
        if target is None:
            kind = _LAZY_COLUMNS.get(name)
            if kind is None:
                continue
            target = columns[name] = np.zeros(len(columns["first_seen"]), dtype=kind)
        if positions is None:  # the block's only layout: take the decoded array as it is
            columns[name] = values.astype(target.dtype, copy=False)
        else:
            target[positions] = values
    if "_router" in decoded:
        flag = columns["_has_router"]
        if positions is None:
            flag[...] = True
        else:
            flag[positions] = True
    if "_selector_id" in decoded:
        flag = columns["_has_selector"]
        if positions is None:
            flag[...] = True
        else:
            flag[positions] = True


def layout_groups(flow_layouts: np.ndarray, n_layouts: int) -> list[tuple[int, np.ndarray | None]]:
    """(layout id, positions among the block's flows) per layout; None = every flow."""
    if n_layouts == 1:
        return [(int(flow_layouts[0]), None)]
    order = np.argsort(flow_layouts, kind="stable")
    bounds = np.searchsorted(flow_layouts[order], np.arange(n_layouts + 1))
    return [
        (layout, order[bounds[layout] : bounds[layout + 1]])
        for layout in range(n_layouts)
        if bounds[layout + 1] > bounds[layout]
    ]


def records_view(buf: np.ndarray, offsets: np.ndarray, size: int, dtype: np.dtype) -> np.ndarray:
    """Equal-sized records at `offsets` as one structured array (no copy when evenly spaced)."""
    n = len(offsets)
    first = int(offsets[0])
    if n == 1 or (int(offsets[-1]) - first == (n - 1) * size and np.all(np.diff(offsets) == size)):
        return np.ndarray((n,), dtype=dtype, buffer=buf, offset=first, strides=(size,))
    return gather_records(buf, offsets, size).view(dtype)


def _decode_v3_groups(
    state: _FileState,
    buf: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
    flow_layouts: np.ndarray,
    flow_index: np.ndarray,
    layout_first: np.ndarray,
    columns: dict[str, np.ndarray],
    report: RunReport,
    frame: int,
    offset: int,
    big_endian: bool,
) -> None:
    for layout_id, positions in layout_groups(flow_layouts, len(layout_first)):
        first = int(layout_first[layout_id])
        size = int(sizes[first])
        elements = _element_list(buf, int(offsets[first]), size, big_endian)
        layout = layout_for(elements, size, big_endian)
        members = flow_index if positions is None else flow_index[positions]
        rows = records_view(buf, offsets[members], size, layout.dtype)
        if layout.unknown_elements:
            report.ignore(
                "nfcapd_unknown_element",
                state.source,
                layout.unknown_bytes * len(rows),
                count=layout.unknown_elements * len(rows),
            )
        place(columns, decode_layout(rows, layout), positions)


def _element_list(
    buf: np.ndarray, at: int, size: int, big_endian: bool
) -> tuple[tuple[int, int], ...]:
    """(type, length) of each element of the V3 record at `at` (already validated by the scan)."""
    order = ">" if big_endian else "<"
    count = int(np.frombuffer(buf, f"{order}u2", 1, at + 4)[0])
    elements: list[tuple[int, int]] = []
    pos = at + 12
    for _ in range(count):
        element_type, length = (int(v) for v in np.frombuffer(buf, f"{order}u2", 2, pos))
        elements.append((element_type, length))
        pos += length
    return tuple(elements)


# records nfdump defines that hold no flows: port and bytes-per-packet histograms (3, 4),
# nfdump 1.5's legacy records (5, 6), and the appendix's ident and statistics (0x8001,
# 0x8002), read as a data block when a damaged header points elsewhere
OTHER_RECORD_TYPES: Final = frozenset((3, 4, 5, 6, 0x8001, 0x8002))
LEGACY_RECORD_TYPES: Final = frozenset((3, 4, 5, 6))


def _array_record_fits(record: bytes, order: str) -> bool:
    """Whether an array record's header (type, size, number of elements, element size; u16
    each) adds up to its size (up to 8 bytes of alignment after the elements)."""
    if len(record) < 8:
        return False
    elements, element_size = (int(v) for v in np.frombuffer(record, f"{order}u2", 2, 4))
    used = 8 + elements * element_size
    return used <= len(record) < used + 8


def _control_record(
    state: _FileState,
    record_type: int,
    record: bytes,
    frame: int,
    offset: int,
    index: int,
    report: RunReport,
    block_type: int,
) -> None:
    """Apply an exporter, exporter-stats or sampler record; count what is not a flow at all."""
    wanted = _control_size(record_type, record, state.order)
    if (
        wanted is not None
        and len(record) != wanted
        and (len(record) > wanted or record_type == EXPORTER_STAT_RECORD)
    ):
        # nfdump writes these records at their exact size and refuses others (exporter.c);
        # a flow record retyped by damage passed for an exporter or a sampler (a shorter
        # exporter or sampler record is counted as cut below)
        report.skip(
            MalformedInput(
                f"record {index} (type {record_type}) has {len(record)} bytes, not {wanted}",
                reason=(
                    "bad_sampler_record"
                    if record_type in (SAMPLER_V0_RECORD, SAMPLER_RECORD)
                    else "bad_exporter_record"
                ),
                source=state.source,
                offset=offset,
                frame=frame,
            ),
            nbytes=len(record),
        )
        return
    if record_type == EXPORTER_INFO_RECORD and len(record) >= EXPORTER_INFO.itemsize:
        info = np.frombuffer(record, _swap(EXPORTER_INFO, state.order), 1)[0]
        address = _exporter_address(record, info)
        text = address_text(address)
        sysid, domain, version = int(info["sysid"]), int(info["id"]), int(info["version"])
        if version > 255:  # NetFlow/IPFIX versions are 1..10; the field is damaged
            report.skip(
                MalformedInput(
                    f"record {index}: exporter record with version {version}",
                    reason="bad_exporter_record",
                    source=state.source,
                    offset=offset,
                    frame=frame,
                ),
                nbytes=len(record),
            )
            return
        state.exporters[sysid] = _Exporter(text, domain, version)
        state.stream_of_sysid[sysid] = state.stream(text, domain)
        state.version_of_sysid[sysid] = _version_kind(version)
        state.address_of_sysid[sysid] = np.frombuffer(address, np.uint64)
        if version:
            report.exporter(text, domain).versions.add(version)
    elif record_type == EXPORTER_STAT_RECORD and len(record) >= 8:
        count = int(np.frombuffer(record, f"{state.order}u4", 1, 4)[0])  # its size checked above
        if len(record) > 0xFFFF:  # read at its count's size (nfcapd_scan._stat_record_size)
            report.repair(
                MalformedInput(
                    f"record {index}: exporter statistics of {count} exporters, {len(record)} "
                    f"bytes, its size written modulo 2**16 ({len(record) & 0xFFFF}) by nfcapd",
                    reason="nfcapd_stat_size_wrapped",
                    source=state.source,
                    offset=offset,
                    frame=frame,
                )
            )
        entries = np.frombuffer(record, _swap(EXPORTER_STAT, state.order), count, 8)
        for entry in entries:
            exporter = state.exporters.get(int(entry["sysid"]))
            if exporter is None:
                report.ignore("nfcapd_stats_unknown_exporter", state.source, EXPORTER_STAT.itemsize)
                continue
            stats = report.exporter(exporter.text, exporter.domain)
            stats.datagrams += int(entry["packets"])
            stats.sequence_gaps += int(entry["sequence_failures"])
            stats.nfcapd_failures += int(entry["sequence_failures"])
    elif record_type == SAMPLER_V0_RECORD and len(record) >= SAMPLER_V0.itemsize:
        sampler = np.frombuffer(record, _swap(SAMPLER_V0, state.order), 1)[0]
        rate = max(int(sampler["interval"]), 1)
        _add_sampler(state, int(sampler["sysid"]), int(sampler["id"]), rate, report)
    elif record_type == SAMPLER_RECORD and len(record) >= SAMPLER.itemsize:
        sampler = np.frombuffer(record, _swap(SAMPLER, state.order), 1)[0]
        packets, space = int(sampler["packet_interval"]), int(sampler["space_interval"])
        rate = (packets + space) // packets if packets else 1
        if rate > 0xFFFFFFFF:  # 1 in 2**32 packets: no sampling rate fits 32 bits
            report.skip(
                MalformedInput(
                    f"record {index}: sampler record with rate {rate} (packet interval {packets}, "
                    f"space {space})",
                    reason="bad_sampler_record",
                    source=state.source,
                    offset=offset,
                    frame=frame,
                ),
                nbytes=len(record),
            )
            return
        _add_sampler(state, int(sampler["sysid"]), int(sampler["id"]), max(rate, 1), report)
    elif record_type == COMMON_RECORD_V0:
        report.skip(
            MalformedInput(
                f"record {index}: nfdump 1.5 common record (type 1) is not "
                "supported, as in nfdump 1.6/1.7",
                reason="unsupported_record",
                source=state.source,
                offset=offset,
                frame=frame,
            ),
            nbytes=len(record),
        )
    elif record_type in (
        EXPORTER_INFO_RECORD,
        EXPORTER_STAT_RECORD,
        SAMPLER_V0_RECORD,
        SAMPLER_RECORD,
    ):
        report.skip(
            TruncatedInput(
                f"record {index} (type {record_type}) is only {len(record)} bytes",
                source=state.source,
                offset=offset,
                frame=frame,
            ),
            nbytes=len(record),
        )
    elif record_type == EXTENSION_MAP:
        return  # 1.6 maps are applied in block order by nfcapd_v1
    elif record_type in (12, 13, 14) and not _array_record_fits(record, state.order):
        # found by fuzzing: a flow record retyped 12 passed as metadata; an array record's
        # header (type, size, elements, element size) says its size
        report.skip(
            MalformedInput(
                f"record {index} (type {record_type}, an NBAR/interface/VRF name array) holds "
                f"{len(record)} bytes where its header says otherwise: a damaged type",
                source=state.source,
                offset=offset,
                frame=frame,
                reason="unknown_record_type",
            ),
            nbytes=len(record),
        )
    elif record_type in (12, 13, 14, 256):
        # NBAR/ifname/vrfname arrays and slack: metadata, not flows, but counted (a damaged
        # type turned a flow record into one without a word)
        report.ignore("nfcapd_metadata_record", state.source, len(record))
    elif record_type in LEGACY_RECORD_TYPES and block_type == BLOCK_V2:
        # found by fuzzing: nfdump 1.7 writes no histogram or 1.5 record, so one in a 1.7
        # block is a flow record whose type was damaged (it passed as other records)
        report.skip(
            MalformedInput(
                f"record {index} of type {record_type}, which only nfdump 1.5/1.6 wrote, in a "
                "1.7 block: a damaged type",
                source=state.source,
                offset=offset,
                frame=frame,
                reason="unknown_record_type",
            ),
            nbytes=len(record),
        )
    elif record_type in OTHER_RECORD_TYPES:
        report.ignore("nfcapd_other_record", state.source, len(record))
    else:
        # no nfdump writes this type in a data block (nfdump's id.h ends at MaxRecordID 15;
        # it skips others with an error): a damaged type, found by fuzzing a flow record
        # retyped 255 or 27, which passed as other records without a place
        report.skip(
            MalformedInput(
                f"record {index} of unknown type {record_type} ({len(record)} bytes)",
                source=state.source,
                offset=offset,
                frame=frame,
                reason="unknown_record_type",
            ),
            nbytes=len(record),
        )


def _control_size(record_type: int, record: bytes, order: str) -> int | None:
    """The only size nfdump writes (and accepts) for an exporter, exporter-stats or sampler
    record; None for other types, and for a stats record too short to hold its count."""
    if record_type == EXPORTER_INFO_RECORD:
        return EXPORTER_INFO.itemsize
    if record_type == SAMPLER_V0_RECORD:
        return SAMPLER_V0.itemsize
    if record_type == SAMPLER_RECORD:
        return SAMPLER.itemsize
    if record_type == EXPORTER_STAT_RECORD and len(record) >= 8:
        entries = int(np.frombuffer(record, f"{order}u4", 1, 4)[0])
        return 8 + EXPORTER_STAT.itemsize * max(entries, 1)  # nfdump refuses a count of 0
    return None


# which of an exporter's samplers nfcapd applies to a record that names none (netflow_v9.c
# and ipfix.c, 1.7.1): the overwrite sampler (-3, `nfcapd -s -N`), one with id 0 (what
# naming none matches), the exporter's generic one (-1), nfcapd's default (-2, `-s N`);
# any other id only when none of these exists
_SAMPLER_PRECEDENCE: Final = {-3: 0, 0: 1, -1: 2, -2: 3}


def _add_sampler(
    state: _FileState, sysid: int, sampler_id: int, rate: int, report: RunReport
) -> None:
    key = (sysid, sampler_id)
    state.sampler_before.setdefault(key, state.sampler_rate.get(key))
    state.sampler_changes.append((state.control_index, key, rate))
    state.sampler_rate[key] = rate
    rank = _SAMPLER_PRECEDENCE.get(sampler_id, len(_SAMPLER_PRECEDENCE))
    if rank <= state.default_rank.get(sysid, len(_SAMPLER_PRECEDENCE)):
        state.rate_before.setdefault(sysid, int(state.rate_of_sysid[sysid]))
        state.rate_changes.append((state.control_index, sysid, rate))
        state.default_rank[sysid] = rank
        state.default_rate[sysid] = rate
        state.rate_of_sysid[sysid] = rate
    exporter = state.exporters.get(sysid)
    if exporter is not None:
        report.exporter(exporter.text, exporter.domain).sampling_rate = rate


def _exporter_address(record: bytes, info: np.void) -> bytes:
    """Exporter-info address as 16 network-order bytes (IPv4 mapped), as the records'
    EXipReceived addresses are read: 1.6-1.7.7 ip_addr_t, or 1.7.8's 16 network bytes."""
    family = int(info["sa_family"])
    if family == 0:  # 1.7.8: network order, IPv4 mapped
        return bytes(record[8:24])
    hi, lo = int(info["ip_hi"]), int(info["ip_lo"])
    if family == _AF_INET:
        return V4_MAPPED_PREFIX + (lo & 0xFFFFFFFF).to_bytes(4, "big")
    return hi.to_bytes(8, "big") + lo.to_bytes(8, "big")


def _by_key(changes: list[tuple[int, Any, int]]) -> dict[Any, list[tuple[int, int]]]:
    """A block's (record index, key, value) changes as key -> [(record index, value)]."""
    grouped: dict[Any, list[tuple[int, int]]] = {}
    for index, key, value in changes:
        grouped.setdefault(key, []).append((index, value))
    return grouped


def _in_force(changes: list[tuple[int, int]], before: int, at: np.ndarray) -> np.ndarray:
    """The value of a setting changed at these record indexes (ascending) in a block, for
    the records at `at`: the last change before each, else `before`."""
    indexes = np.array([index for index, _ in changes], dtype=np.int64)
    values = np.array([before] + [value for _, value in changes], dtype=np.int64)
    return values[np.searchsorted(indexes, at)]


def _resolve_exporters(
    state: _FileState,
    columns: dict[str, np.ndarray],
    flow_index: np.ndarray,
    frame: int,
    offset: int,
    report: RunReport,
) -> None:
    """Stream (exporter, domain) and sampling rate of every flow of a block; the rate in
    force where the flow lies in it (an exporter's rate changed within a block gave every
    flow of the block its last rate: an audit, nfcapd writing the 1:10, 1:20 and 1:1
    samplers of one exporter between the flows each sampled)."""
    sysid = _stale_sysids(state, columns, columns.pop("_sysid"), flow_index, frame, offset, report)
    stream = state.stream_of_sysid[sysid]
    missing = stream < 0
    if missing.any():
        stream = stream.copy()
        routed = missing & columns["_has_router"]
        if routed.any():
            texts = address_texts(columns["_router"][routed])
            unique = {text: state.stream(text, 0) for text in set(texts)}
            stream[routed] = [unique[text] for text in texts]
        rest = missing & ~routed
        if rest.any():
            stream[rest] = state.stream(state.ident or Path(state.source).name, 0)
    columns["_stream"] = stream
    domains = np.array([domain for _, domain in state.streams], dtype=np.uint32)
    columns["exporter_domain"] = domains[stream]
    # nfcapd sets the sampled flag exactly when it applied a sampler (and scaled the
    # counters): a record without it was stored unsampled as far as the collector knew
    # (it came before the exporter's sampling options, or named a sampler nfcapd did not
    # know), as the export readers take such a record; only the sampler the record itself
    # names or carries gives it a rate then
    scaled = (columns.pop("_flags") & FLAG_SAMPLED) != 0
    in_force = state.rate_of_sysid[sysid]
    if state.rate_changes:
        in_force = in_force.astype(np.int64)
        for changed, changes in _by_key(state.rate_changes).items():
            mine = sysid == changed
            if mine.any():
                in_force[mine] = _in_force(changes, state.rate_before[changed], flow_index[mine])
    rate = np.where(scaled, in_force, 1).astype(np.uint32)
    selected = columns.pop("_has_selector")
    sampler_sysid = columns.pop("_sampler_sysid")
    selector = columns.pop("_selector_id")
    if selected.any():
        defined_here = _by_key(state.sampler_changes)
        for key_sysid, key_id in set(
            zip(sampler_sysid[selected].tolist(), selector[selected].tolist(), strict=True)
        ):
            key = (key_sysid, key_id)
            named = selected & (sampler_sysid == key_sysid) & (selector == key_id)
            defined = defined_here.get(key)
            if defined:  # defined in this block: from where it is (0: not yet known)
                known_at = _in_force(defined, state.sampler_before[key] or 0, flow_index[named])
                rate[named] = np.where(known_at > 0, known_at, rate[named])
                continue
            known = state.sampler_rate.get(key)
            if known is not None:
                rate[named] = known
    interval = columns.pop("_sampler_interval")
    columns["sampling_rate"] = np.where(interval > 0, interval, rate).astype(np.uint32)
    columns["counters_scaled"] = scaled
    del columns["_router"], columns["_has_router"]


def _stale_sysids(
    state: _FileState,
    columns: dict[str, np.ndarray],
    sysid: np.ndarray,
    flow_index: np.ndarray,
    frame: int,
    offset: int,
    report: RunReport,
) -> np.ndarray:
    """The block's sysids, each record whose own evidence contradicts the exporter record
    of its sysid given the one exporter record of the file that agrees with it.

    nfdump merging files (`nfdump -R dir -w`, `-M a:b:c -r f -w`) appends each source
    file's exporter and sampler records under new sysids but leaves every flow record's
    exporterID as its source file had it: found by a differential test against nfdump
    1.7.1, whose own `ra` kept the right address, records of 127.0.0.1 read as the ::1
    exporter's, 1-in-10 sampled v5 records at the v9 exporter's 1 in 5. A record
    contradicts its sysid when its EXipReceived address (v4 or v6) is not the exporter
    record's, or its nfversion (1.6: the common record's) is not the exporter record's
    version (0, either side: unknown, no evidence). It is re-attributed, exporter, domain
    and samplers, when exactly one exporter record of the file agrees with it on both
    (on the version alone when it carries no address), and counted as `stale_sysid` under
    `repaired`; with none or several it keeps its sysid's, as nfdump does. A file without a
    contradiction costs a compare of each record's address and version, nothing more."""
    if not state.exporters or not len(sysid):
        return sysid
    version = _version_kind(columns["export_version"])
    has_router = columns["_has_router"]
    # one sysid in the block (nearly always): its version and address, broadcast, and
    # array-by-scalar compares only (an array & a numpy bool scalar cost 50 µs a block)
    if sysid.min() == sysid.max():
        at: int | np.ndarray = int(sysid[0])
        if state.stream_of_sysid[at] < 0:
            return sysid
        expected = int(state.version_of_sysid[at])
        contradicts = (
            (version != expected) & (version != 0) if expected else np.zeros(len(sysid), bool)
        )
    else:
        at = sysid
        defined = state.stream_of_sysid[at] >= 0
        if not defined.any():
            return sysid
        expected_of = state.version_of_sysid[at]
        contradicts = (version != expected_of) & (version != 0) & (expected_of != 0) & defined
    router = None
    if has_router.any():
        # word by word: (n, 2) != ... .any(axis=1) was most of the cost
        router = np.ascontiguousarray(columns["_router"]).view(np.uint64)
        own = state.address_of_sysid[at]
        differs = router[:, 0] != own[..., 0]
        differs |= router[:, 1] != own[..., 1]
        if not has_router.all():
            differs &= has_router
        if not isinstance(at, int):
            differs &= defined
        contradicts |= differs
    if not contradicts.any():
        return sysid
    rows = np.flatnonzero(contradicts)
    candidates = np.fromiter(state.exporters, dtype=np.int64, count=len(state.exporters))
    versions = state.version_of_sysid[candidates]
    theirs = version[rows][:, None]
    agree = (theirs == versions) | (theirs == 0) | (versions == 0)  # (records, exporters)
    if router is not None:
        same = (router[rows][:, None, :] == state.address_of_sysid[candidates]).all(axis=2)
        agree &= same | ~has_router[rows][:, None]
    one = np.count_nonzero(agree, axis=1) == 1
    if not one.all():
        # kept under the exporter record they contradict: no other, or several, agree (a
        # router's several domains on one address); said, not kept silently (a review)
        kept = rows[~one]
        report.repair(
            MalformedInput(
                f"{len(kept)} record(s) whose own receive address or version contradicts the "
                "exporter record their sysid names, kept under it: no other exporter record "
                f"of the file agrees with them, or several do; the first record "
                f"{int(flow_index[int(kept[0])])} here, sysid {int(sysid[int(kept[0])])}",
                source=state.source,
                offset=offset,
                frame=frame,
                reason="stale_sysid_unresolved",
            ),
            count=len(kept),
        )
    if not one.any():
        return sysid
    moved = rows[one]
    old = sysid[moved]
    new = candidates[np.argmax(agree[one], axis=1)].astype(sysid.dtype)
    sysid = sysid.copy()
    sysid[moved] = new
    # a sampler the record names is its exporter's: the 1.7.1 element takes the record's
    # sysid, 1.7.8's names one, stale alike
    samplers = columns["_sampler_sysid"].copy()
    samplers[moved] = np.where(samplers[moved] == old, new, samplers[moved])
    columns["_sampler_sysid"] = samplers
    first = int(moved[0])
    exporter = state.exporters[int(new[0])]
    report.repair(
        MalformedInput(
            f"{len(moved)} record(s) whose exporter sysid names an exporter record their own "
            "receive address or version contradicts, read as the one exporter record that "
            "agrees (nfdump merging files renumbers the exporter records, not the records' "
            f"sysids): the first record {int(flow_index[first])} here, sysid {int(old[0])} "
            f"read as {int(new[0])} ({exporter.text}, v{exporter.version})",
            source=state.source,
            offset=offset,
            frame=frame,
            reason="stale_sysid",
        ),
        count=len(moved),
    )
    return sysid


def _version_kind(version: Any) -> Any:
    """An export version as exporter records and flow records can be compared on it:
    nfcapd gives a v7 exporter record version 7 and writes its records as nfversion 5 (its
    netflow_v5_v7.c), and sfcapd writes 0x80 | the version; either read as a contradiction,
    a v7 exporter's records moved to a v5 exporter of the same address (a review)."""
    kind = np.asarray(version) & 0x7F
    return np.where(kind == 7, 5, kind).astype(np.uint8)


def _event_times(columns: dict[str, np.ndarray]) -> None:
    """Cisco NSEL's event time (EXnselCommon's msecEvent, NF_F_EVENT_TIME_MSEC) for a time
    nfcapd stored as 0: an ASA sends no flow end, so nfcapd keeps a teardown's start and 0,
    and the record ended where it began; as the export readers read 323 (templates.py)."""
    event_ms = columns.pop("_nsel_event_ms", None)
    if event_ms is None:
        return
    known = (event_ms > 0) & (event_ms <= TIME_LIMIT_MS)
    # an event without its time is not the ASA's (Palo Alto's records carry 233 and 148 in
    # EXnselCommon, but deltas and no event time): its counters are not settled (nsel.py)
    columns["_nsel_event"] = np.where(known, columns["_nsel_event"], 0).astype(np.uint64)
    if not known.any():
        return
    event_us = event_ms * 1000
    for name in ("first_seen", "last_seen"):
        columns[name] = np.where(known & (columns[name] == 0), event_us, columns[name])


def _settle_nsel(
    state: _FileState,
    columns: dict[str, np.ndarray],
    nsel: NselLedger | None,
    frame: int,
    offset: int,
    report: RunReport,
) -> None:
    """Cisco NSEL teardown totals less their connection's updates (nsel.py), the ledger
    kept across the run's nfcapd files (a collector rotates its file every 5 minutes)."""
    event = columns.pop("_nsel_event", None)
    connection = columns.pop("_nsel_connection", None)
    if nsel is None or event is None or connection is None or not event.any():
        return
    stream = nsel.stream_codes(state.streams)[columns["_stream"]]
    sent = {name: columns[name] for name in NSEL_COUNTERS}
    count = int(np.count_nonzero(nsel.settle_columns(stream, connection, event, columns)))
    if not count:
        return
    for name, values in sent.items():  # the exporters table counts what was sent
        columns[f"_sent_{name}"] = values
    report.repair(nsel_repair(count, state.source, offset, frame), count=count)


def _count_exporters(state: _FileState, columns: dict[str, np.ndarray], report: RunReport) -> None:
    stream = columns["_stream"]
    # what the exporter sent: NSEL teardowns' totals as they came, not as settled (nsel.py)
    sent = {name: columns.pop(f"_sent_{name}", columns[name]) for name in NSEL_COUNTERS}
    for index in np.unique(stream).tolist():
        text, domain = state.streams[index]
        stats = report.exporter(text, domain)
        mine = stream == index
        stats.records += int(np.count_nonzero(mine))
        # forward + reverse, as nfdump's own totals (UpdateStat, nfdump_inline.c); exact, as
        # the export readers' (numpy's sums wrapped past 2**64 on damaged counters)
        stats.packets += exact_sum(sent["packets"][mine]) + exact_sum(sent["reverse_packets"][mine])
        stats.octets += exact_sum(sent["octets"][mine]) + exact_sum(sent["reverse_octets"][mine])
        # the records' own versions too: an exporter record may be missing (nfpcapd writes
        # none) or this address and domain may also come from another file
        stats.versions.update(int(v) for v in np.unique(columns["export_version"][mine]) if v)


def _count_aggregates(flows: np.ndarray, stats: FileStats) -> None:
    """Records that stand for several flows (`nfdump -a`, `-A`, `-b`, `-B` output): nothing
    is lost from the counters, but each is one record to the sessionizer, so say so."""
    several = flows > 1
    if several.any():
        stats.aggregated_records += int(np.count_nonzero(several))
        stats.aggregated_flows += exact_sum(flows[several])


def _count_flags_put_back(
    state: _FileState, put_back: np.ndarray, frame: int, offset: int, report: RunReport
) -> None:
    """Say where an IPFIX biflow's TCP flags were given back to the reverse direction
    (`nfcapd_v3._put_back_reverse_flags`): the forward direction's were lost by nfcapd."""
    count = int(np.count_nonzero(put_back))
    if count:
        report.repair(
            MalformedInput(
                f"{count} IPFIX biflow record(s) whose TCP flags nfcapd stored in the forward "
                "field are the reverse direction's (nfcapd 1.7 writes reverseTcpControlBits over "
                "tcpControlBits): kept as the reverse flags, the forward flags lost",
                source=state.source,
                offset=offset,
                frame=frame,
                reason="nfcapd_reverse_flags",
            ),
            count=count,
        )


def _finish_exporters(state: _FileState, report: RunReport) -> None:
    for sysid, exporter in state.exporters.items():
        rate = state.default_rate.get(sysid)
        if rate is not None:
            report.exporter(exporter.text, exporter.domain).sampling_rate = rate


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _slice(columns: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {name: values[start:stop] for name, values in columns.items()}


def _batch(state: _FileState, columns: dict[str, np.ndarray]) -> pa.RecordBatch:
    stream = columns["_stream"]
    codes = np.asarray(state.stream_text, dtype=np.int32)[stream]
    public = {name: values for name, values in columns.items() if not name.startswith("_")}
    return flow_batch(
        len(stream), public, exporter=(codes, list(state.texts)), source_file=state.source
    )
