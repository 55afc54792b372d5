"""Write nfcapd files that the nfdump installed here cannot: ZSTD, big-endian, 1.6 layout, damaged.

Same sources as nfcapd.py / nfcapd_v1.py; this module only ever writes what those read, so the
tests can build a file, read it with our reader and (where nfdump can read it) with nfdump.

The surprising thing: recompressing is not re-encoding. nfdump -J rewrites the payload of every
block and the appendix in the new compression and changes header byte 16, nothing else; so a
ZSTD file made here from an nfcapd file holds exactly the records nfdump wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..report import RunReport
from .compression import BZ2, LZ4, LZO, NONE, compress_block
from .nfcapd import (
    APPENDIX_IDENT,
    APPENDIX_STAT,
    BLOCK_HEADER,
    BLOCK_V1,
    BLOCK_V2,
    EXPORTER_INFO,
    EXPORTER_INFO_RECORD,
    EXPORTER_STAT,
    EXPORTER_STAT_RECORD,
    FILE_HEADER_V2,
    MAGIC,
    SAMPLER,
    SAMPLER_RECORD,
    SAMPLER_V0,
    SAMPLER_V0_RECORD,
    STAT_V2,
    V3_RECORD,
    _blocks,
    _read_header,
)
from .nfcapd_v1 import FLAG_BZ2, FLAG_LZ4, FLAG_LZO, HEADER_V1, STAT_V1
from .nfcapd_v3 import ELEMENTS, RECORD_HEADER_FIELDS


@dataclass
class RawFile:
    """An nfcapd file as records per block, with the header fields needed to write it again."""

    order: str = "<"
    compression: int = NONE
    created: int = 0
    nfdversion: int = 0x01070100
    creator: int = 4  # nfdump
    ident: str = ""
    stat: dict[str, int] | None = None
    blocks: list[list[bytes]] = field(default_factory=list)


def read_raw(path: Path) -> RawFile:
    """Every record of every data block of a layout-2 file, uncompressed."""
    with open(path, "rb") as f:
        header = _read_header(f, str(path), path.stat().st_size)
        raw = RawFile(
            header.order,
            header.compression,
            header.created,
            header.nfdversion,
            4,
            header.ident,
            header.stat,
        )
        for _, _, _, count, payload, _ in _blocks(f, header, str(path), RunReport()):
            raw.blocks.append(split_records(payload, header.order, count))
    return raw


def split_records(payload: bytes, order: str, count: int) -> list[bytes]:
    records = []
    at = 0
    for _ in range(count):
        size = int(np.frombuffer(payload, f"{order}u2", 1, at + 2)[0])
        records.append(payload[at : at + size])
        at += size
    return records


def block_bytes(
    records: list[bytes], compression: int, order: str, block_type: int = BLOCK_V2, flags: int = 0
) -> bytes:
    """One block: 12-byte header and the records' payload compressed as the file prescribes."""
    payload = compress_block(compression, b"".join(records))
    header = np.zeros(1, dtype=_order(BLOCK_HEADER, order))
    header["num_records"], header["size"] = len(records), len(payload)
    header["type"], header["flags"] = block_type, flags
    return header.tobytes() + payload


def write_v2(path: Path, raw: RawFile) -> None:
    """Write a layout-2 file: header, data blocks, one appendix block with ident and stat."""
    order = raw.order
    body = b"".join(block_bytes(records, raw.compression, order) for records in raw.blocks)
    appendix_records = []
    if raw.ident:
        ident = raw.ident.encode() + b"\0"
        appendix_records.append(_record_header(APPENDIX_IDENT, 4 + len(ident), order) + ident)
    if raw.stat is not None:
        stat = np.zeros(1, dtype=_order(STAT_V2, order))
        for name, value in raw.stat.items():
            stat[name] = value
        appendix_records.append(
            _record_header(APPENDIX_STAT, 4 + STAT_V2.itemsize, order) + stat.tobytes()
        )
    appendix = block_bytes(appendix_records, raw.compression, order) if appendix_records else b""
    header = np.zeros(1, dtype=_order(FILE_HEADER_V2, order))
    header["magic"], header["version"], header["nfdversion"] = MAGIC, 2, raw.nfdversion
    header["created"], header["compression"], header["creator"] = (
        raw.created,
        raw.compression,
        raw.creator,
    )
    header["appendix_blocks"] = 1 if appendix else 0
    header["appendix_offset"] = FILE_HEADER_V2.itemsize + len(body) if appendix else 0
    header["num_blocks"] = len(raw.blocks)
    path.write_bytes(header.tobytes() + body + appendix)


def write_v1(
    path: Path,
    blocks: list[list[bytes]],
    *,
    compression: int = NONE,
    ident: str = "",
    stat: dict[str, int] | None = None,
    order: str = "<",
) -> None:
    """Write a layout-1 (nfdump 1.6) file: 140-byte header, 136-byte stat, type-2 blocks."""
    header = np.zeros(1, dtype=_order(HEADER_V1, order))
    header["magic"], header["version"] = MAGIC, 1
    header["flags"] = {NONE: 0, LZO: FLAG_LZO, BZ2: FLAG_BZ2, LZ4: FLAG_LZ4}[compression]
    header["num_blocks"] = len(blocks)
    header["ident"] = ident.encode()
    stat_record = np.zeros(1, dtype=_order(STAT_V1, order))
    for name, value in (stat or {}).items():
        if name == "msec_first":
            stat_record["first_seen"], stat_record["msec_first"] = divmod(value, 1000)
        elif name == "msec_last":
            stat_record["last_seen"], stat_record["msec_last"] = divmod(value, 1000)
        else:
            stat_record[name] = value
    body = b"".join(block_bytes(records, compression, order, BLOCK_V1) for records in blocks)
    path.write_bytes(header.tobytes() + stat_record.tobytes() + body)


def extension_map_v1(map_id: int, extensions: tuple[int, ...], order: str = "<") -> bytes:
    """A 1.6 extension map record (type 2), padded to 4 bytes like nfdump's."""
    from .nfcapd_v1 import EXTENSIONS

    ids = [*extensions, 0]
    if len(ids) % 2:
        ids.append(0)
    body = np.array(
        [map_id, sum(EXTENSIONS[i][0] for i in extensions), *ids], dtype=f"{order}u2"
    ).tobytes()
    return _record_header(2, 4 + len(body), order) + body


def swap_record(record: bytes) -> bytes:
    """A little-endian record (V3 flow, exporter, exporter stats, sampler) in big-endian order."""
    record_type = int(np.frombuffer(record, "<u2", 1)[0])
    out = bytearray(record)
    if record_type == V3_RECORD:
        _swap_fields(record, out, 0, RECORD_HEADER_FIELDS)
        at = 12
        for _ in range(int(np.frombuffer(record, "<u2", 1, 4)[0])):
            element_type, length = (int(v) for v in np.frombuffer(record, "<u2", 2, at))
            fields = ELEMENTS.get((element_type, length))
            if fields is None and element_type != 0:
                raise ValueError(f"cannot swap element {element_type} of length {length}")
            _swap_fields(record, out, at, (("t", "<u2", 0), ("l", "<u2", 2)))
            _swap_fields(record, out, at + 4, fields or ())
            at += length
        return bytes(out)
    dtypes = {
        EXPORTER_INFO_RECORD: EXPORTER_INFO,
        SAMPLER_V0_RECORD: SAMPLER_V0,
        SAMPLER_RECORD: SAMPLER,
    }
    if (
        record_type == EXPORTER_INFO_RECORD
        and not np.frombuffer(record, EXPORTER_INFO, 1)[0]["sa_family"]
    ):
        # 1.7.8 on (sa_family 0): the address is 16 bytes in network order, in either file
        swapped = _swap_struct(record, EXPORTER_INFO)
        return swapped[:8] + record[8:24] + swapped[24:]
    if record_type in dtypes:
        return _swap_struct(record, dtypes[record_type])
    if record_type == EXPORTER_STAT_RECORD:
        count = int(np.frombuffer(record, "<u4", 1, 4)[0])
        head = _swap_fields(
            record, bytearray(record[:8]), 0, (("t", "<u2", 0), ("s", "<u2", 2), ("c", "<u4", 4))
        )
        entries = np.frombuffer(record, EXPORTER_STAT, count, 8)
        return bytes(head) + entries.astype(EXPORTER_STAT.newbyteorder(">")).tobytes()
    raise ValueError(f"cannot swap record type {record_type}")


def _swap_struct(record: bytes, dtype: np.dtype) -> bytes:
    values = np.frombuffer(record[: dtype.itemsize], dtype, 1)
    return values.astype(dtype.newbyteorder(">")).tobytes() + record[dtype.itemsize :]


def _swap_fields(
    src: bytes, out: bytearray, base: int, fields: tuple[tuple[str, str, int], ...]
) -> bytearray:
    for _, code, offset in fields:
        width = np.dtype(code).itemsize
        if width > 1:
            value = np.frombuffer(src, code, 1, base + offset)
            out[base + offset : base + offset + width] = value.astype(
                np.dtype(code).newbyteorder(">")
            ).tobytes()
    return out


def _record_header(record_type: int, size: int, order: str) -> bytes:
    return np.array([record_type, size], dtype=f"{order}u2").tobytes()


def _order(dtype: np.dtype, order: str) -> np.dtype:
    return dtype if order == "<" else dtype.newbyteorder(">")
