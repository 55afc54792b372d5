"""Damaged and unusual nfcapd files, built from a corpus file with the test-file writer.

Every bad unit must be counted with its file, block offset and block number, and everything
else in the file must still be read.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.errors import UnknownFormat
from obserae_forensics.readers.compression import LZ4, NONE, ZSTD
from obserae_forensics.readers.nfcapd import (
    APPENDIX_IDENT,
    STAT_V2,
    is_nfcapd,
    nfcapd_time_span,
    read_nfcapd,
)
from obserae_forensics.readers.nfcapd_write import (
    RawFile,
    _record_header,
    block_bytes,
    read_raw,
    write_v2,
)
from obserae_forensics.report import RunReport
from obserae_forensics.schema import FLOW_SCHEMA
from tests.conftest import need_tool

SOURCE = "sf_v9_synscan.nfcapd"  # 2002 flows + exporter info + exporter stats, one block
PER_BLOCK = 400


def read_table(path: Path, **options: object) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    batches = list(read_nfcapd(path, report, **options))  # type: ignore[arg-type]
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


def multi_block(corpus: Path, compression: int) -> RawFile:
    """The corpus file re-cut into blocks of PER_BLOCK records (exporter info stays first)."""
    raw = read_raw(corpus / "nfcapd" / SOURCE)
    records = [record for block in raw.blocks for record in block]
    raw.blocks = [records[i : i + PER_BLOCK] for i in range(0, len(records), PER_BLOCK)]
    raw.compression = compression
    return raw


def block_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    count = int(np.frombuffer(data, "<u4", 1, 36)[0])
    offsets, pos = [], 40
    for _ in range(count):
        offsets.append(pos)
        pos += 12 + int(np.frombuffer(data, "<u4", 1, pos + 4)[0])
    return offsets


def flows_of(table: pa.Table) -> list[tuple[int, int, int]]:
    return list(
        zip(
            table.column("first_seen").cast(pa.int64()).to_pylist(),
            table.column("src_port").to_pylist(),
            table.column("dst_port").to_pylist(),
            strict=True,
        )
    )


@pytest.fixture(params=[NONE, LZ4], ids=["none", "lz4"])
def archive(request: pytest.FixtureRequest, corpus: Path, tmp_path: Path) -> Path:
    path = tmp_path / "multi.nfcapd"
    write_v2(path, multi_block(corpus, request.param))
    return path


def test_recut_file_reads_like_the_original(corpus: Path, archive: Path) -> None:
    original, _ = read_table(corpus / "nfcapd" / SOURCE)
    table, report = read_table(archive)
    assert flows_of(table) == flows_of(original) and not report.skipped
    assert report.files[str(archive)].units == len(block_offsets(archive)) == 6
    offsets = block_offsets(archive)
    assert set(table.column("source_offset").to_pylist()) == set(offsets)
    assert table.column("source_frame").to_pylist()[PER_BLOCK] == 2


def test_truncated_file_keeps_whole_blocks(archive: Path, tmp_path: Path) -> None:
    offsets = block_offsets(archive)
    cut = tmp_path / "cut.nfcapd"
    cut.write_bytes(archive.read_bytes()[: offsets[2] + 30])
    table, report = read_table(cut)
    assert table.num_rows == 2 * PER_BLOCK - 1  # block 1 starts with the exporter record
    # two losses: the cut block, and the appendix the header places past the end
    assert report.skipped == {"truncated": 2}
    located = {problem.offset: problem for problem in report.examples}
    assert located[offsets[2]].frame == 3
    # the cut block's records are said: they were lost with it, and counted nowhere
    assert located[offsets[2]].message.endswith(
        f": its header counts {PER_BLOCK} record(s), lost with it"
    )
    assert "appendix" in located[len(cut.read_bytes())].message
    assert nfcapd_time_span(cut) is None  # the appendix went with the cut


def test_corrupt_compressed_block_is_skipped_and_counted(corpus: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.nfcapd"
    write_v2(path, multi_block(corpus, LZ4))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    data[offsets[1] + 12 : offsets[1] + 40] = bytes(range(200, 228))
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert table.num_rows == 2002 - PER_BLOCK
    assert report.skipped == {"bad_compression": 1}
    assert (report.examples[0].offset, report.examples[0].frame) == (offsets[1], 2)
    assert str(path) in str(report.examples[0])


def test_a_zstd_block_is_read_frame_after_frame_as_nfdump_reads_it() -> None:
    """Found by fuzzing: bytes after a zstd block's first frame were ignored without a word
    (bz2, LZO and LZ4 refuse trailing bytes), and a block of two frames read only the
    first, where nfdump's ZSTD_decompress reads every frame and refuses what is no frame."""
    import zstandard

    from obserae_forensics.readers.compression import BadCompression, decompress_block

    raw = bytes(range(256)) * 4000
    one = zstandard.ZstdCompressor(level=3).compress(raw)
    bare = zstandard.ZstdCompressor(write_checksum=True, write_content_size=False).compress(
        raw[:5000]
    )
    assert decompress_block(ZSTD, one, source="f", offset=8) == raw
    assert decompress_block(ZSTD, bare + one, source="f", offset=8) == raw[:5000] + raw
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"note!"
    assert decompress_block(ZSTD, skippable + one, source="f", offset=8) == raw  # a review
    with pytest.raises(BadCompression, match="an empty block payload"):
        decompress_block(ZSTD, b"", source="f", offset=8)
    for damaged, said in (
        (one + b"\x00" * 32, "32 bytes at"),
        (one[:-7], "cut off"),
        (one + bare[:9], "cut off"),
    ):
        with pytest.raises(BadCompression, match=said):
            decompress_block(ZSTD, damaged, source="f", offset=8)
    with pytest.raises(BadCompression, match="did not decompress full frame"):  # > limit
        decompress_block(ZSTD, bare + bare, source="f", offset=8, limit=1000)


def test_a_damaged_lzo_block_is_named_by_its_fault_alone() -> None:
    """A helper's audit: lzallright's error carries the bytes it decoded before the fault,
    and the problem's text was its first 80 characters, `(EResult.InputNotConsumed,
    b'\\x00\\x01...`; it is the result code alone."""
    from obserae_forensics.readers.compression import (
        LZO,
        BadCompression,
        compress_block,
        decompress_block,
    )

    block = compress_block(LZO, bytes(range(256)) * 40)
    with pytest.raises(BadCompression) as trailing:
        decompress_block(LZO, block + b"\x00\x01\x02", source="f", offset=8)
    assert str(trailing.value).endswith("lzo stream does not decode: EResult.InputNotConsumed")


def test_block_header_claiming_too_much_loses_only_the_swallowed_block(
    corpus: Path, tmp_path: Path
) -> None:
    path = tmp_path / "lying.nfcapd"
    write_v2(path, multi_block(corpus, NONE))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    size = int(np.frombuffer(data, "<u4", 1, offsets[1] + 4)[0])
    data[offsets[1] + 4 : offsets[1] + 8] = np.array([size + 1000], "<u4").tobytes()
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    # block 2 still decodes its 400 records; block 3's header was swallowed, the reader
    # finds block 4 again by scanning forward
    assert table.num_rows == 2002 - PER_BLOCK
    assert report.skipped["bad_block_header"] == 1
    assert set(table.column("source_offset").to_pylist()) == set(offsets) - {offsets[2]}
    # the "header" read 1000 bytes into block 3 is bad; every byte from there to block 4's
    # header is counted, once
    bad = [p for p in report.examples if p.reason == "bad_block_header"]
    assert [p.offset for p in bad] == [offsets[2] + 1000]
    assert report.skipped_bytes["bad_block_header"] == offsets[3] - offsets[2] - 1000


def test_block_header_claiming_too_little_keeps_what_fits(corpus: Path, tmp_path: Path) -> None:
    path = tmp_path / "short.nfcapd"
    write_v2(path, multi_block(corpus, NONE))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    size = int(np.frombuffer(data, "<u4", 1, offsets[1] + 4)[0])
    data[offsets[1] + 4 : offsets[1] + 8] = np.array([size - 200], "<u4").tobytes()
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    # block numbers after a resync count the bad header too; offsets stay exact
    blocks = table.column("source_offset").to_pylist()
    kept = blocks.count(offsets[1])
    assert kept < PER_BLOCK and blocks.count(offsets[2]) == PER_BLOCK
    assert blocks.count(offsets[0]) == PER_BLOCK - 1 and table.num_rows == 2002 - (PER_BLOCK - kept)
    assert report.skipped["bad_record"] == PER_BLOCK - kept
    assert report.skipped["bad_block_header"] == 1


@pytest.mark.parametrize("shortened", [1, 11, 12, 200])
def test_blocks_after_a_damaged_size_keep_their_numbers(
    corpus: Path, tmp_path: Path, shortened: int
) -> None:
    """Found by a differential with nfdump: a block's size lowered by one made the reader
    take the byte before the next block's header as a bad header of a block of its own, so
    every later block was numbered one on (`source_frame`) and the file's last block was
    said to lie past the header's count ("1 more follow"), which it does not."""
    path = tmp_path / "short.nfcapd"
    write_v2(path, multi_block(corpus, NONE))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    size = int(np.frombuffer(data, "<u4", 1, offsets[1] + 4)[0])
    data[offsets[1] + 4 : offsets[1] + 8] = np.array([size - shortened], "<u4").tobytes()
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    frames = dict(
        zip(
            table.column("source_offset").to_pylist(),
            table.column("source_frame").to_pylist(),
            strict=True,
        )
    )
    # a byte short: the next block keeps its number; 200 bytes might be a block of their
    # own (a damaged header's), and the later blocks are numbered as if they were
    assert frames[offsets[0]] == 1 and frames[offsets[2]] == 3 + (shortened >= 12)
    assert [frames[offset] for offset in offsets[3:]] == [
        number + 1 + (shortened >= 12) for number in range(3, len(offsets))
    ]
    assert report.skipped["bad_block_header"] == 1
    assert "nfcapd_blocks_past_count" not in report.repaired  # none follows the count


def _record_sizes(data: bytes | bytearray, block: int) -> list[int]:
    """The sizes of the records of an uncompressed block at offset `block`, in order."""
    count = int(np.frombuffer(data, "<u4", 1, block)[0])
    sizes, at = [], block + 12
    for _ in range(count):
        sizes.append(int(np.frombuffer(data, "<u2", 1, at + 2)[0]))
        at += sizes[-1]
    return sizes


@pytest.mark.parametrize("kept", [2, 350, 399])
def test_a_size_lowered_onto_a_record_boundary_loses_records_said(
    corpus: Path, tmp_path: Path, kept: int
) -> None:
    """Found by a review: a block whose size was lowered to end on a record's boundary was
    taken for a block whose count was damaged ("all read", `repaired`), and the records
    past its new end were lost without a count. What follows it is no block header, so
    its size is not borne out and the count stands."""
    path = tmp_path / "lowered.nfcapd"
    write_v2(path, multi_block(corpus, NONE))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    sizes = _record_sizes(data, offsets[1])
    data[offsets[1] + 4 : offsets[1] + 8] = np.array([sum(sizes[:kept])], "<u4").tobytes()
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert table.column("source_offset").to_pylist().count(offsets[1]) == kept
    assert report.skipped["bad_record"] == PER_BLOCK - kept
    assert "nfcapd_record_count" not in report.repaired
    assert table.num_rows == 2002 - (PER_BLOCK - kept)


def test_a_count_no_block_holds_is_the_damage_beside_a_bad_record(
    corpus: Path, tmp_path: Path
) -> None:
    """A record count damaged past anything a block holds, and a record of size 0 in the
    block: the records lost are the bytes left at the records' mean size (300), not the
    4,278,190,380 the count says."""
    path = tmp_path / "both.nfcapd"
    write_v2(path, multi_block(corpus, NONE))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    sizes = _record_sizes(data, offsets[1])
    data[offsets[1] : offsets[1] + 4] = np.array([0xFF000000 + PER_BLOCK], "<u4").tobytes()
    at = offsets[1] + 12 + sum(sizes[:100])
    data[at + 2 : at + 4] = b"\0\0"
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert table.column("source_offset").to_pylist().count(offsets[1]) == 100
    assert report.skipped["bad_record"] == 300  # every record of the block is alike in size


def test_a_count_past_its_bytes_alone_is_repaired_not_lost(corpus: Path, tmp_path: Path) -> None:
    """A block's record count raised by 50, nothing else: every record is read, and the
    next block header bears out the block's size (a mutation audit: without that look
    the count's damage read as 50 records lost)."""
    path = tmp_path / "count.nfcapd"
    write_v2(path, multi_block(corpus, NONE))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    data[offsets[1] : offsets[1] + 4] = np.array([PER_BLOCK + 50], "<u4").tobytes()
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert table.num_rows == 2002
    assert report.repaired["nfcapd_record_count"] == 1 and "bad_record" not in report.skipped


def _count_and_record_damaged(
    corpus: Path, path: Path, count: int, record: int, *, next_type: int | None = None
) -> tuple[pa.Table, RunReport]:
    """Block 2's count set to `count` and its record `record` given size 0; the next
    block's type damaged too when `next_type` (its size then not borne out)."""
    write_v2(path, multi_block(corpus, NONE))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    sizes = _record_sizes(data, offsets[1])
    data[offsets[1] : offsets[1] + 4] = np.array([count], "<u4").tobytes()
    at = offsets[1] + 12 + sum(sizes[:record])
    data[at + 2 : at + 4] = b"\0\0"
    if next_type is not None:
        data[offsets[2] + 8 : offsets[2] + 10] = np.array([next_type], "<u2").tobytes()
    path.write_bytes(bytes(data))
    return read_table(path)


def test_losses_past_a_damaged_count_are_estimated_from_what_was_read(
    corpus: Path, tmp_path: Path
) -> None:
    """A mutation audit: the records lost where a walk stops, under a count more than the
    block could hold, are the bytes left at the records' mean size, whether or not the
    block's size is borne out when no block holds the count; a count that only this
    block could not hold is the damage only where the size is borne out."""
    _, report = _count_and_record_damaged(corpus, tmp_path / "a.nfcapd", 0xFF000000 + 400, 100)
    assert report.skipped["bad_record"] == 300
    _, report = _count_and_record_damaged(
        corpus, tmp_path / "b.nfcapd", 0xFF000000 + 400, 100, next_type=99
    )
    assert report.skipped["bad_record"] == 300  # no block holds that count
    _, report = _count_and_record_damaged(corpus, tmp_path / "c.nfcapd", 20_000, 200)
    assert report.skipped["bad_record"] == 200  # more than the block holds: estimated
    _, report = _count_and_record_damaged(corpus, tmp_path / "d.nfcapd", 20_000, 200, next_type=99)
    assert report.skipped["bad_record"] == 20_000 - 200  # the size may be the damage
    # the first record damaged: nothing walked to measure, 4 bytes a record at most
    first = tmp_path / "e.nfcapd"
    _, report = _count_and_record_damaged(corpus, first, 0xFF000000, 0)
    size_at = block_offsets(first)[1] + 4
    payload = int(np.frombuffer(first.read_bytes(), "<u4", 1, size_at)[0])
    assert report.skipped["bad_record"] == payload // 4


def test_a_block_losing_nothing_measurable_still_says_one() -> None:
    from obserae_forensics.readers.nfcapd import _records_lost

    assert _records_lost(5_000_000_000, 3, 14, 12, sized=False) == 1
    assert _records_lost(10, 10, 100, 100, sized=True) == 1


def test_a_damaged_header_spanning_its_stretch_is_one_block(corpus: Path, tmp_path: Path) -> None:
    """Found by a review: a damaged block header whose own size spans the bytes skipped to
    the next header was one block for certain, yet hid the notice of a block copied in
    past the file header's count."""
    path = tmp_path / "copied.nfcapd"
    write_v2(path, multi_block(corpus, NONE))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    appendix = int(np.frombuffer(data, "<i8", 1, 24)[0])
    copied = bytes(data[offsets[-1] : appendix])  # the last block, again after it
    data[appendix:appendix] = copied
    data[24:32] = np.array([appendix + len(copied)], "<i8").tobytes()
    data[offsets[3] + 8 : offsets[3] + 12] = np.array([0x00630063], "<u4").tobytes()  # type 99
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert report.skipped["bad_block_header"] == 1
    assert report.repaired["nfcapd_blocks_past_count"] == 1
    # the damaged block's records are lost with it, the copied one's three flows read again
    assert table.num_rows == 2002 - PER_BLOCK + 3


def test_records_past_the_block_count_are_counted(corpus: Path, tmp_path: Path) -> None:
    """Found by fuzzing: a block header whose record count was lowered dropped the records it
    no longer counted without a word (nfdump writes nothing after a block's records)."""
    path = tmp_path / "count.nfcapd"
    write_v2(path, multi_block(corpus, NONE))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    data[offsets[1] : offsets[1] + 4] = np.array([PER_BLOCK - 100], "<u4").tobytes()
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert table.num_rows == 2002 - 100
    assert report.skipped == {"bad_record": 1}
    assert (report.examples[0].offset, report.examples[0].frame) == (offsets[1], 2)
    assert "bytes after the block's 300 records" in report.examples[0].message


def test_a_file_cut_where_its_appendix_begins_is_counted(corpus: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.nfcapd"
    write_v2(path, multi_block(corpus, NONE))
    data = path.read_bytes()
    appendix = int(np.frombuffer(data, "<u8", 1, 24)[0])
    path.write_bytes(data[:appendix])
    table, report = read_table(path)
    assert table.num_rows == 2002
    assert report.skipped == {"truncated": 1}
    assert f"appendix at {appendix}, file ends at {appendix}" in report.examples[0].message


def test_elements_past_a_records_count_are_counted(corpus: Path, tmp_path: Path) -> None:
    """Found by fuzzing: a V3 record whose element count was lowered decoded without the
    elements it no longer counted (a flow from :: to ::, IP version 0), without a word."""
    path = tmp_path / "elements.nfcapd"
    write_v2(path, multi_block(corpus, NONE))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    first = offsets[1] + 12
    count = int(np.frombuffer(data, "<u2", 1, first + 4)[0])
    data[first + 4 : first + 6] = np.array([count - 1], "<u2").tobytes()
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert table.num_rows == 2002 - 1
    assert report.skipped == {"bad_record": 1}
    assert "elements inconsistent with its size" in report.examples[0].message
    assert 0 not in table.column("ip_version").to_pylist()


@pytest.mark.parametrize(
    ("record_type", "counted"),
    [
        (15, ("skipped", "bad_sampler_record")),
        (9, ("skipped", "bad_sampler_record")),
        (7, ("skipped", "bad_exporter_record")),
        (12, ("skipped", "unknown_record_type")),
        (256, ("ignored", "nfcapd_metadata_record")),
    ],
)
def test_a_flow_record_retyped_as_a_control_record_is_counted(
    corpus: Path, tmp_path: Path, record_type: int, counted: tuple[str, str]
) -> None:
    """Found by fuzzing: a V3 flow record whose type byte was damaged passed for a sampler
    (its rate taken from the flow's bytes) or for metadata, without a word."""
    path = tmp_path / "retyped.nfcapd"
    write_v2(path, multi_block(corpus, NONE))
    offsets = block_offsets(path)
    data = bytearray(path.read_bytes())
    first = offsets[1] + 12  # block 2 holds flow records only
    assert int(np.frombuffer(data, "<u2", 1, first)[0]) == 11
    data[first : first + 2] = np.array([record_type], "<u2").tobytes()
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert table.num_rows == 2002 - 1
    kind, reason = counted
    assert getattr(report, kind) == {reason: 1}
    assert set(table.column("sampling_rate").to_pylist()) == {1}


def test_bad_element_length_skips_only_that_record(corpus: Path, tmp_path: Path) -> None:
    raw = multi_block(corpus, NONE)
    record = bytearray(raw.blocks[0][5])
    assert np.frombuffer(record, "<u2", 1)[0] == 11
    record[14:16] = np.array([4000], "<u2").tobytes()  # first element runs past the record
    raw.blocks[0][5] = bytes(record)
    path = tmp_path / "element.nfcapd"
    write_v2(path, raw)
    table, report = read_table(path)
    assert table.num_rows == 2001 and report.skipped == {"bad_record": 1}
    assert 5 not in table.column("record_index").to_pylist()[:PER_BLOCK]


def test_unknown_elements_are_skipped_by_length_and_counted(corpus: Path, tmp_path: Path) -> None:
    raw = read_raw(corpus / "nfcapd" / "sf_v9_varsvc.nfcapd")
    extra = np.array([99, 12], "<u2").tobytes() + b"\xee" * 8  # ID no nfdump version defines
    changed = []
    for record in raw.blocks[0]:
        if np.frombuffer(record, "<u2", 1)[0] == 11:
            head = np.frombuffer(record, "<u2", 3).copy()
            head[1] += len(extra)
            head[2] += 1
            record = head.tobytes() + record[6:12] + extra + record[12:]
        changed.append(record)
    raw.blocks[0] = changed
    path = tmp_path / "unknown.nfcapd"
    write_v2(path, raw)
    base, _ = read_table(corpus / "nfcapd" / "sf_v9_varsvc.nfcapd")
    table, report = read_table(path)
    assert flows_of(table) == flows_of(base)
    assert table.column("octets").equals(base.column("octets"))
    assert report.ignored["nfcapd_unknown_element"] == 72 and not report.skipped


def _sampler_record(sampler_id: int, space: int) -> bytes:
    """A type-15 sampler record of sysid 1: algorithm 0, 1 packet of every 1 + `space`."""
    return (
        np.array([15, 24, 1, 0], "<u2").tobytes()
        + np.array([sampler_id], "<i8").tobytes()
        + np.array([1, space], "<u4").tobytes()
    )


def _sampled_file(
    corpus: Path, path: Path, samplers: list[bytes], *, unflagged: tuple[int, ...] = ()
) -> Path:
    """sf_v9_varsvc with `samplers` after its exporter record and every flow flagged sampled
    (counters scaled) but the `unflagged` ones; record 3 carries a 1.7.1 EXsamplerInfo
    element with its own interval 10 (sampler id 5)."""
    raw = read_raw(corpus / "nfcapd" / "sf_v9_varsvc.nfcapd")
    block = raw.blocks[0]
    assert np.frombuffer(block[0], "<u2", 1)[0] == 7  # exporter info, sysid 1
    element = (
        np.array([18, 16], "<u2").tobytes()
        + np.array([5, 10], "<u4").tobytes()
        + np.array([0, 1], "<u2").tobytes()
    )
    flows = []
    for index, record in enumerate(block[1:]):
        if np.frombuffer(record, "<u2", 1)[0] == 11:
            mutable = bytearray(record)
            if index not in unflagged:
                mutable[10] |= 0x2  # V3 flag: sampled, counters scaled
            if index == 3:
                head = np.frombuffer(bytes(mutable[:6]), "<u2").copy()
                head[1] += len(element)
                head[2] += 1
                mutable = bytearray(head.tobytes()) + mutable[6:] + element
            record = bytes(mutable)
        flows.append(record)
    raw.blocks[0] = [block[0], *samplers, *flows]
    write_v2(path, raw)
    return path


def test_sampler_records_give_the_rate_and_the_scaled_flag(corpus: Path, tmp_path: Path) -> None:
    path = _sampled_file(
        corpus, tmp_path / "sampled.nfcapd", [_sampler_record(-1, 99)], unflagged=(3, 6, 7)
    )
    table, report = read_table(path)
    rates = table.column("sampling_rate").to_pylist()
    scaled = table.column("counters_scaled").to_pylist()
    assert rates[3] == 10  # its own interval, flagged or not
    # nfcapd flags exactly the records it applied a sampler to: one it did not (data
    # before the exporter's sampling options) was stored unsampled (audit against nfdump)
    assert (rates[6], rates[7], scaled[6], scaled[7]) == (1, 1, False, False)
    others = [i for i in range(len(rates)) if i not in (3, 6, 7)]
    assert {rates[i] for i in others} == {100} and all(scaled[i] for i in others)
    assert report.exporters[("127.0.0.1", 0)].sampling_rate == 100


@pytest.mark.parametrize("order", [(-1, -3, -2), (-3, -2, -1), (-2, -1, -3)])
def test_the_overwrite_sampler_wins_as_in_nfcapd(
    corpus: Path, tmp_path: Path, order: tuple[int, ...]
) -> None:
    """nfcapd -s -N (overwrite, id -3) beats the exporter's generic sampler (-1), which
    beats nfcapd's static default (-s N, id -2), whatever their order in the file."""
    spaces = {-3: 9, -1: 3, -2: 49}
    path = _sampled_file(
        corpus, tmp_path / "samplers.nfcapd", [_sampler_record(i, spaces[i]) for i in order]
    )
    table, report = read_table(path)
    rates = table.column("sampling_rate").to_pylist()
    assert set(rates[:3] + rates[4:]) == {10}
    assert report.exporters[("127.0.0.1", 0)].sampling_rate == 10


def test_aggregated_records_are_said(corpus: Path, tmp_path: Path) -> None:
    """`nfdump -B -w` pairs a scan's SYNs with their answers into one record of two flows:
    nothing is lost from the counters, but the sessionizer sees one record, so the report
    says how many records stand for how many flows (audit: it passed without a word)."""
    out = tmp_path / "paired.nfcapd"
    subprocess.run(
        [
            need_tool("nfdump"),
            "-r",
            str(corpus / "nfcapd" / "sf_v9_synscan.nfcapd"),
            "-B",
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    listing = subprocess.run(
        [need_tool("nfdump"), "-r", str(out), "-o", "raw"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    flows = [int(n) for n in re.findall(r"aggr flows\s+=\s+(\d+)", listing)]
    several = [n for n in flows if n > 1]
    assert several
    table, report = read_table(out)
    assert table.num_rows == listing.count("Flow Record:")
    stats = report.files[str(out)]
    assert (stats.aggregated_records, stats.aggregated_flows) == (len(several), sum(several))
    assert f"{len(several)} records are aggregates of {sum(several)} flows" in report.summary()
    assert report.as_dict()["files"][str(out)]["aggregated_flows"] == sum(several)
    # and the manifest a report cites says it of the file (found by an audit: only the
    # summary on stderr did)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["sessionize", str(out), "-o", str(run), "-q"])
    assert result.exit_code == 0, result.output
    [cited] = json.loads((run / "manifest.json").read_text())["inputs"]
    assert (cited["aggregated_records"], cited["aggregated_flows"]) == (len(several), sum(several))


def test_file_cut_inside_the_header_is_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "stub.nfcapd"
    path.write_bytes(bytes.fromhex("0ca50200") + bytes(10))
    table, report = read_table(path)
    assert table.num_rows == 0 and report.skipped == {"truncated": 1}
    assert nfcapd_time_span(path) is None


def test_file_without_appendix_still_reads(corpus: Path, tmp_path: Path) -> None:
    """An nfcapd.current file: NumBlocks 0, no appendix; read blocks until the end."""
    raw = multi_block(corpus, NONE)
    raw.stat, raw.ident = None, ""
    path = tmp_path / "nfcapd.current"
    write_v2(path, raw)
    data = bytearray(path.read_bytes())
    data[36:40] = bytes(4)
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert table.num_rows == 2002 and not report.skipped
    assert nfcapd_time_span(path) is None
    assert set(table.column("exporter").to_pylist()) == {"127.0.0.1"}


def test_appendix_records_past_64_kib_are_read(corpus: Path, tmp_path: Path) -> None:
    """Found by fuzzing: the appendix records' 16-bit sizes were numpy scalars, and adding one
    to an offset past 65,535 raised OverflowError out of the reader (and out of input
    discovery, which reads the time span first)."""
    raw = read_raw(corpus / "nfcapd" / "nfpcapd_test.nfcapd")
    raw.compression = NONE
    path = tmp_path / "long_appendix.nfcapd"
    write_v2(path, raw)
    span = nfcapd_time_span(path)
    assert span is not None
    data = path.read_bytes()
    offset = int(np.frombuffer(data, "<u8", 1, 24)[0])  # appendix_offset
    stat = data[-(4 + STAT_V2.itemsize) :]  # write_v2 puts the stat record last
    idents = [_record_header(APPENDIX_IDENT, 4 + 40_000, "<") + b"x" * 39_999 + b"\0"] * 2
    path.write_bytes(data[:offset] + block_bytes([*idents, stat], NONE, "<"))  # stat at 80,008
    assert nfcapd_time_span(path) == span
    table, report = read_table(path)
    assert table.num_rows == sum(len(block) for block in raw.blocks) and not report.skipped


def test_exporter_totals_past_2_64_are_exact(corpus: Path, tmp_path: Path) -> None:
    """Found by fuzzing: the per-exporter packet total was a numpy sum, which wrapped past
    2**64 on damaged counters (the export readers' was exact already)."""
    data = bytearray((corpus / "nfcapd" / "nfpcapd_ircdcc.nfcapd").read_bytes())
    for record in (0, 1):  # in_packets of the first two (76-byte, uncompressed) records
        at = 92 + 76 * record
        data[at : at + 8] = np.array([2**63], "<u8").tobytes()
    path = tmp_path / "huge.nfcapd"
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert table.num_rows == 6
    rest = sum(table.column("packets").to_pylist()[2:])
    [stats] = report.exporters.values()
    assert stats.packets == 2**64 + rest + sum(table.column("reverse_packets").to_pylist())


@pytest.fixture(scope="module")
def small_files(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, bytes]:
    """sf_v9_varsvc cut into blocks of 10 records, uncompressed, LZ4 and ZSTD, as bytes."""
    raw = read_raw(corpus / "nfcapd" / "sf_v9_varsvc.nfcapd")
    records = [record for block in raw.blocks for record in block]
    raw.blocks = [records[i : i + 10] for i in range(0, len(records), 10)]
    out = {}
    for code in (NONE, LZ4, ZSTD):
        raw.compression = code
        path = tmp_path_factory.mktemp("small") / f"{code}.nfcapd"
        write_v2(path, raw)
        out[code] = path.read_bytes()
    return out


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    code=st.sampled_from([NONE, LZ4, ZSTD]),
    seed=st.integers(0, 2**32 - 1),
    flips=st.integers(1, 12),
    cut=st.booleans(),
)
def test_random_damage_is_counted_never_raised(
    small_files: dict[int, bytes], tmp_path: Path, code: int, seed: int, flips: int, cut: bool
) -> None:
    data = bytearray(small_files[code])
    rng = np.random.default_rng(seed)
    for position in rng.integers(0, len(data), flips):
        data[position] = int(rng.integers(0, 256))
    if cut:
        data = data[: int(rng.integers(4, len(data)))]
    path = tmp_path / f"damaged-{seed}.nfcapd"
    path.write_bytes(bytes(data))
    report = RunReport()
    try:
        batches = list(read_nfcapd(path, report))
    except UnknownFormat:
        assert not is_nfcapd(bytes(data[:4]))
        return
    rows = sum(batch.num_rows for batch in batches)
    assert rows <= 72 + 10 * flips  # a flipped count can invent records, never unbounded
    nfcapd_time_span(path)


APPENDIX_CASE = "sf_v10_biflow_test.nfcapd"  # one data block at 40, the appendix at 3572


def _patched(corpus: Path, tmp_path: Path, at: int, value: bytes, *, tail: bytes = b"") -> Path:
    data = bytearray((corpus / "nfcapd" / APPENDIX_CASE).read_bytes())
    data[at : at + len(value)] = value
    path = tmp_path / "damaged.nfcapd"
    path.write_bytes(bytes(data) + tail)
    return path


@pytest.mark.parametrize(
    "offset,where",
    [
        (40, "where no appendix block is"),
        (52, "inside the data block at 40"),
        (2000, "inside the data block at 40"),
    ],
)
def test_a_damaged_appendix_offset_loses_no_record(
    corpus: Path, tmp_path: Path, offset: int, where: str
) -> None:
    """Found by fuzzing: the header's appendix offset was taken as the end of the data, so
    an offset at or inside the data block lost all 26 records, said as a cut of 0 to 22
    bytes. nfdump reads its NumBlocks blocks from the header on, whatever the offset says."""
    path = _patched(corpus, tmp_path, 24, offset.to_bytes(8, "little"))
    table, report = read_table(path)
    assert table.num_rows == 26
    [problem] = [p for p in report.examples if p.reason == "bad_appendix"]
    assert where in problem.message and problem.offset == 24
    assert report.files[str(path)].ident == ""  # what the offset points at is no appendix
    # the real appendix, read as one more block, is the file's last 183 bytes
    assert report.ignored_bytes["nfcapd_other_record"] + 12 == 183


def test_bytes_after_the_appendix_are_counted(corpus: Path, tmp_path: Path) -> None:
    """Found by fuzzing: nothing after the appendix was read or counted (nfdump reads
    nothing there either), a whole data block appended included."""
    path = _patched(corpus, tmp_path, 0, b"", tail=b"\x5a" * 2000)
    table, report = read_table(path)
    assert table.num_rows == 26
    assert report.skipped_bytes["bad_appendix"] == 2000
    assert report.files[str(path)].ident == "sf_v10_biflow_test"


def test_appendix_records_past_its_count_are_counted(corpus: Path, tmp_path: Path) -> None:
    """Found by fuzzing: an appendix block whose record count was damaged to 0 dropped its
    ident and stat records without a word."""
    path = _patched(corpus, tmp_path, 3572, (0).to_bytes(4, "little"))
    table, report = read_table(path)
    assert table.num_rows == 26 and report.files[str(path)].ident == ""
    assert report.skipped_bytes["bad_appendix"] == 171  # the block's payload


def test_a_file_skipped_whole_counts_its_bytes_once(corpus: Path, tmp_path: Path) -> None:
    """Found by fuzzing: an unknown compression code counted the whole file, then the
    appendix (which it also cannot decompress) again."""
    path = _patched(corpus, tmp_path, 16, b"\xff")
    table, report = read_table(path)
    assert table.num_rows == 0
    assert sum(report.skipped_bytes.values()) == path.stat().st_size == 3755


def test_a_flow_record_retyped_beyond_nfdump_s_types_is_a_problem(
    corpus: Path, tmp_path: Path
) -> None:
    """Found by fuzzing: a flow record whose type was damaged to one no nfdump writes (255)
    was counted as other records, without a place; nfdump skips such a record with an
    error. Retyped to one only nfdump 1.5/1.6 wrote (a histogram, 4), or to an array record
    whose header does not add up (12), in a 1.7 block, it is a problem too (found by
    fuzzing the CLI: they passed as other records and metadata)."""
    first_flow = 52 + 32  # the block at 40: its header, the exporter record, then flows
    path = _patched(corpus, tmp_path, first_flow, (255).to_bytes(2, "little"))
    table, report = read_table(path)
    assert table.num_rows == 25
    assert dict(report.skipped) == {"unknown_record_type": 1}
    assert report.skipped_bytes["unknown_record_type"] == 132 and not report.ignored
    [problem] = [p for p in report.examples if p.reason == "unknown_record_type"]
    assert problem.offset == 40 and "record 1 of unknown type 255" in problem.message
    for retyped in (3, 4, 6, 12, 14):
        path = _patched(corpus, tmp_path, first_flow, retyped.to_bytes(2, "little"))
        table, report = read_table(path)
        assert table.num_rows == 25 and not report.ignored, retyped
        assert dict(report.skipped) == {"unknown_record_type": 1}, retyped
        assert report.skipped_bytes["unknown_record_type"] == 132


def test_a_flow_block_retyped_as_an_array_block_is_a_problem(corpus: Path, tmp_path: Path) -> None:
    """Found by fuzzing the CLI: a 1.7 flow block whose type was damaged to 4 (an array
    block, which the reader passes over as metadata) lost its 26 records without a word."""
    path = _patched(corpus, tmp_path, 48, (4).to_bytes(2, "little"))
    table, report = read_table(path)
    assert table.num_rows == 0 and not report.ignored
    assert dict(report.skipped) == {"unsupported_block": 1}
    [problem] = report.examples
    assert problem.offset == 40 and "26 of them flow records" in problem.message


def array_block_file(path: Path, count: int, element_size: int, elements: bytes) -> Path:
    """A 1.7.8 file of one array block (type 4) of `count` elements of `element_size` bytes
    after their record header, as maxmind.c's PushArrayHeader writes one; no appendix."""
    body = struct.pack("<HH", 2, element_size) + elements
    block = struct.pack("<IIHH", count, len(body), 4, 0) + body
    header = struct.pack("<HHIqBBHIqII", 0xA50C, 2, 0x01070800, 1_700_000_000, 0, 0, 0, 7, 0, 0, 1)
    path.write_bytes(header + block)
    return path


def test_an_array_block_as_nfdump_writes_one_is_not_a_problem(tmp_path: Path) -> None:
    """Found by review: nfdump's GeoDB files hold type-4 blocks (a record header giving the
    element size, then bare elements, maxmind.c's PushArrayHeader); walked as records, an
    element's bytes reading 11 made the block a damaged flow block. Only one that reads
    whole as its counted number of records, flow records among them, is."""
    elements = b"".join(
        struct.pack(
            "<II4BIddII",
            0x0A000000 + (i << 8),
            0xFFFFFF00,
            4,
            0,
            0,
            0,
            i,
            47.3,
            8.5,
            10,
            0x0028000B if i == 0 else 0,
        )
        for i in range(50)
    )
    path = array_block_file(tmp_path / "geodb.nfcapd", 50, 40, elements)
    table, report = read_table(path)
    assert table.num_rows == 0 and not report.skipped
    assert dict(report.ignored) == {"nfcapd_array_block": 1}


def test_exporter_statistics_of_thousands_of_exporters_are_read_whole(
    corpus: Path, tmp_path: Path
) -> None:
    """Found by a scale audit: nfcapd writes an exporter statistics record's size in the
    record header's 16 bits whatever its count, so with more than 2,730 exporters it wraps
    (nfcapd 1.7.1 over 4,800 exporters: 49,672 bytes written for 115,208). The record was
    counted bad_exporter_record and the walk went on inside its entries (65,536 bytes
    bad_record), losing every exporter's datagram and sequence counts. Read at its count's
    size when that is the written one modulo 2**16, and counted as put right."""
    raw = read_raw(corpus / "nfcapd" / SOURCE)
    [block] = raw.blocks
    [at] = [i for i, record in enumerate(block) if record[:2] == b"\x08\x00"]
    count = 2_731  # 8 + 24 * 2,731 = 65,552 bytes: written as 16
    entries = np.zeros(
        count, dtype=[("sysid", "<u4"), ("failures", "<u4"), ("packets", "<u8"), ("flows", "<u8")]
    )
    entries[0] = tuple(np.frombuffer(block[at], entries.dtype, 1, 8)[0])  # the real exporter
    entries["sysid"][1:] = np.arange(1_000, 1_000 + count - 1)  # exporters the file lacks
    size = 8 + entries.nbytes
    block[at] = _record_header(8, size & 0xFFFF, "<") + struct.pack("<I", count) + entries.tobytes()
    path = tmp_path / "many_exporters.nfcapd"
    write_v2(path, raw)
    table, report = read_table(path)
    original, _ = read_table(corpus / "nfcapd" / SOURCE)
    provenance = ["source_file", "source_offset"]  # the file, and its grown record
    assert table.drop_columns(provenance).equals(original.drop_columns(provenance))
    assert dict(report.repaired) == {"nfcapd_stat_size_wrapped": 1}
    assert not report.skipped and report.ignored["nfcapd_stats_unknown_exporter"] == count - 1
    [stats] = report.exporters.values()
    assert stats.datagrams == int(entries["packets"][0]) > 0
    assert "65552 bytes, its size written modulo 2**16 (16)" in str(report.examples[0])


@pytest.mark.parametrize("counted", [False, True], ids=["header-kept", "header-raised"])
def test_a_block_copied_into_a_file_is_read_and_said(
    corpus: Path, tmp_path: Path, counted: bool
) -> None:
    """Found by fuzzing: a data block copied in after the file's last one doubled its
    records without a word, whether the header's block count was left (nfdump stops at it)
    or raised to match; only the stat record, which still counts the flows once, showed
    it. The blocks past the count and the stat record's difference are said, under
    `repaired` (read: nothing lost)."""
    raw = multi_block(corpus, LZ4)
    original = tmp_path / "original.nfcapd"
    write_v2(original, raw)
    once, _ = read_table(original)
    raw.blocks = [*raw.blocks, raw.blocks[1]]  # 400 flow records
    path = tmp_path / "copied.nfcapd"
    write_v2(path, raw)
    data = bytearray(path.read_bytes())
    blocks = len(raw.blocks)
    if not counted:
        data[36:40] = struct.pack("<I", blocks - 1)
        path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert table.num_rows == once.num_rows + PER_BLOCK
    assert not report.skipped
    expected = {"nfcapd_stat_mismatch": 1}
    if not counted:
        expected["nfcapd_blocks_past_count"] = 1
    assert dict(report.repaired) == expected
    said = {str(error) for error in report.examples}
    if not counted:  # an nfcapd file's problems are numbered by block, not "frame"
        assert any(f"(block {blocks}): header says" in text for text in said)
    assert any(
        f"the stat record counts {once.num_rows} flows, the data blocks hold "
        f"{table.num_rows} flow records" in text
        for text in said
    )
    _, clean = read_table(original)
    assert not clean.repaired and not clean.skipped


def test_an_nfcapd_16_file_still_being_written_is_no_stat_mismatch(tmp_path: Path) -> None:
    """nfdump 1.6 writes a file's block count and stat record when it closes it: a file
    still being written (0 blocks, a zeroed stat record) is read, with nothing said about
    its stat record (a review caught the stat check calling it blocks copied or lost)."""
    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "nfcapd16_sf_v9_varsvc.nfcapd"
    data = bytearray(fixture.read_bytes())
    data[8:12] = bytes(4)  # NumBlocks
    data[140:276] = bytes(136)  # the stat record
    path = tmp_path / "open.nfcapd"
    path.write_bytes(bytes(data))
    table, report = read_table(path)
    assert table.num_rows == 72 and not report.skipped and not report.repaired


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 40), st.sampled_from([b"", b"\x00", b"ab"]))
def test_lzo_length_scan_equals_what_lzallright_decodes(
    data: bytes, repeat: int, filler: bytes
) -> None:
    """The LZO1X length scan, compiled and in plain Python, against another decoder."""
    import lzallright
    import numpy as np

    from obserae_forensics.readers.compression import lzo1x_length

    plain = (data + filler * 500) * repeat
    stream = lzallright.LZOCompressor().compress(plain)
    view = np.frombuffer(stream, dtype=np.uint8)
    assert lzo1x_length(view, 10**9) == lzo1x_length.py_func(view, 10**9) == len(plain)
    assert lzo1x_length(view, len(plain) - 1) == len(plain) if plain else True
    assert lzo1x_length(view[:-1], 10**9) == -1  # no end marker


def test_an_lzo_block_that_would_expand_past_the_limit_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by fuzzing: lzallright grows its buffer past the block limit, so a crafted
    5 MB block of compressed zeros (an M3 match whose length runs over 5 M zero bytes,
    ~1.3 GB) took ~10 s and ~2.3 GB before it was refused; its length is read first, and
    lzallright never sees it."""
    from obserae_forensics.readers import compression
    from obserae_forensics.readers.compression import LZO, BadCompression, decompress_block

    def bomb(extension: int) -> bytes:
        return (
            b"\x15"
            + b"\x00" * 4
            + b"\x20"
            + b"\x00" * extension
            + b"\x01\x00\x00"
            + b"\x11\x00\x00"
        )

    assert len(decompress_block(LZO, bomb(3), source="f", offset=0)) == 4 + 34 + 3 * 255

    class Refusing:
        def decompress(self, *args: object, **kwargs: object) -> bytes:
            raise AssertionError("handed to lzallright")

    monkeypatch.setattr(compression, "_lzo", Refusing())
    with pytest.raises(BadCompression, match="expands beyond 5242880 bytes"):
        decompress_block(LZO, bomb(5_000_000), source="f", offset=0)
