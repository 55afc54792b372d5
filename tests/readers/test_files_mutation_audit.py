"""Behaviour of the IPFIX file reader (ipfix_file.py) and of the decompression of whole
inputs (packed.py) that no test pinned, found by a mutation audit (the thirty-sixth
session's: 40 small changes to the two, 24 of which no test noticed; 21 were real gaps,
killed here, and 3 equivalent: the length of the lists of messages handed on, I14; a
file's head decompressed one piece further, P15; a cap on a damage's offset, which cannot
pass the file's end, P18). Most are in where a problem or a record says it came from: the
offsets, frame numbers and byte counts an incident report cites. Each test fails with its
change applied and names it. The same audit's 25 changes to the frame section walk
(frames.py, each made to the kernel and its reference alike), none of which a test
noticed, are killed by the cases it added to tests/readers/test_frames.py, but 2
equivalent: a GRE version other than 0 followed (PPTP's names PPP, which is not followed
anyway), and ports looked for past extension headers a section ends inside (their
protocol is an extension header's, which has none)."""

from __future__ import annotations

import bz2
import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zstandard

from obserae_forensics.readers import discover_inputs, packed
from obserae_forensics.readers.ipfix_file import first_export_us, is_ipfix_file
from obserae_forensics.report import RunReport
from tests.readers.test_ipfix_file import FILE
from tests.readers.test_packed import CAPTURE, lz4_legacy, read, skippable, without_source


def messages(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each message of an IPFIX file."""
    found, at = [], 0
    while at < len(data):
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        found.append((at, length))
        at += length
    return found


def written(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- ipfix_file.py -----------------------------------------------------------------------


def test_an_ipfix_file_is_a_header_and_a_set_header_with_an_export_time() -> None:
    """I01 (a zero export time accepted) and I02 (a head of exactly a message header and a
    set header refused)."""
    head = FILE.read_bytes()[:20]
    assert is_ipfix_file(head) and not is_ipfix_file(head[:19])
    assert not is_ipfix_file(head[:4] + bytes(4) + head[8:])


def test_an_ipfix_files_place_is_its_first_export_time_in_microseconds() -> None:
    """I03: the first export time in milliseconds placed a file 1000 times too early."""
    seconds = int.from_bytes(FILE.read_bytes()[4:8], "big")
    assert first_export_us(FILE) == seconds * 1_000_000


def test_each_record_cites_its_message_frame_offset_and_export_time(tmp_path: Path) -> None:
    """I07 (frames numbered from 0), I08 (the offset of the message's end), I09 (the
    messages not counted as the file's units) and I11 (every message at the first one's
    export time)."""
    data = bytearray(FILE.read_bytes())
    found = messages(bytes(data))
    first = int.from_bytes(data[4:8], "big")
    for number, (at, _) in enumerate(found):
        data[at + 4 : at + 8] = (first + 60 * number).to_bytes(4, "big")
    path = written(tmp_path, "timed.ipfix", bytes(data))
    table, report = read(path)
    cited = {
        (r["source_frame"], r["source_offset"], r["arrival"])
        for r in table.select(["source_frame", "source_offset", "arrival"]).to_pylist()
    }
    assert cited == {
        (number + 1, at, datetime.fromtimestamp(first + 60 * number, UTC))
        for number, (at, _) in enumerate(found)
    }
    assert report.files[str(path)].units == len(found) == 10


@pytest.mark.parametrize("extra", [15, 16])
def test_bytes_after_the_last_message(tmp_path: Path, extra: int) -> None:
    """I04 (16 bytes, a header's room, said to be too few for one) and I05 (their count
    one short): fewer than a header are a cut one, as many are bytes that are no header."""
    data = FILE.read_bytes()
    path = written(tmp_path, "tail.ipfix", data + b"\xee" * extra)
    table, report = read(path)
    reason = "truncated" if extra < 16 else "ipfix_file_resync"
    assert table.num_rows == 210
    assert report.skipped == {reason: 1} and report.skipped_bytes[reason] == extra
    assert [(p.reason, p.offset) for p in report.examples] == [(reason, len(data))]


def test_resync_problems_name_where_the_skipped_bytes_begin(tmp_path: Path) -> None:
    """I06 (the resync named the header it found) and I10 (a cut message named at the end
    of the file, not where it begins)."""
    data = FILE.read_bytes()
    (_, first), (second_at, second), *_, (last_at, _) = messages(data)
    damaged = written(tmp_path, "damaged.ipfix", data[:first] + b"\xee" * 100 + data[first + 100 :])
    report = read(damaged)[1]
    assert [(p.reason, p.offset) for p in report.examples] == [("ipfix_file_resync", second_at)]
    cut = written(tmp_path, "cut.ipfix", data[:-50])
    report = read(cut)[1]
    assert [(p.reason, p.offset) for p in report.examples] == [("truncated", last_at)]
    assert second == 1383


def test_one_stray_byte_between_messages_loses_nothing_else(tmp_path: Path) -> None:
    """I13: the search for the next header began two bytes on, and missed one a byte on."""
    data = FILE.read_bytes()
    _, (second_at, _), *_ = messages(data)
    path = written(tmp_path, "stray.ipfix", data[:second_at] + b"\x00" + data[second_at:])
    table, report = read(path)
    assert table.num_rows == 210
    assert report.skipped == {"ipfix_file_resync": 1}
    assert report.skipped_bytes["ipfix_file_resync"] == 1


# -- packed.py ---------------------------------------------------------------------------


def test_bzip2_is_known_by_its_block_size_digit_and_an_empty_stream_too(tmp_path: Path) -> None:
    """P01 (a block size digit 0 taken for bzip2) and P02 (an empty stream, joined by
    `cat` after another, was no bzip2 member: the rest counted as damage)."""
    whole = bz2.compress(b"x")
    assert packed.packing_of(whole) == "bzip2"
    assert packed.packing_of(whole[:3] + b"0" + whole[4:]) == ""
    data = CAPTURE.read_bytes()
    path = written(tmp_path, "joined.pcap.bz2", bz2.compress(data) + bz2.compress(b""))
    table, report = read(path)
    assert without_source(table).equals(without_source(read(CAPTURE)[0]))
    assert not report.skipped


def test_only_skippable_magics_are_skipped(tmp_path: Path) -> None:
    """P03: 0x184D2A4x is no skippable frame's magic; after a zstd frame it is damage."""
    frame = zstandard.ZstdCompressor().compress(CAPTURE.read_bytes())
    junk = b"\x4a" + skippable(b"meta")[1:]
    report = read(written(tmp_path, "junk.pcap.zst", frame + junk))[1]
    assert report.skipped == {"bad_compression": 1}
    assert report.skipped_bytes["bad_compression"] == len(junk)
    assert not report.ignored


def test_a_skippable_frame_before_gzip_is_no_compressed_file(tmp_path: Path) -> None:
    """P05: zstd's and LZ4's skippable frames lead only their own files; before a gzip
    member the file is no known format (not a gzip file damaged from its first byte)."""
    path = written(
        tmp_path, "odd.pcap.gz", skippable(b"meta") + gzip.compress(CAPTURE.read_bytes())
    )
    report = RunReport()
    assert discover_inputs([path], report) == []
    assert report.skipped == {"unknown_format": 1}


@pytest.mark.parametrize("excess", [0, 1])
def test_an_lz4_legacy_block_may_have_the_bound_size_and_no_more(
    tmp_path: Path, excess: int
) -> None:
    """P08: a block size equal to LZ4_compressBound(8 MiB), the largest `lz4 -l` can
    write, was taken for damage; one byte more is."""
    size = packed.LZ4_LEGACY_BOUND + excess
    head = lz4_legacy(CAPTURE.read_bytes())
    path = written(tmp_path, "bound.pcap.lz4", head + size.to_bytes(4, "little") + bytes(100))
    report = read(path)[1]
    if excess:
        assert report.skipped == {"bad_compression": 1}
    else:
        assert report.skipped == {"truncated": 1}  # a block the file ends inside
        assert "ends inside a block" in report.examples[0].message


def test_a_file_cut_inside_a_legacy_blocks_size_is_a_cut_block(tmp_path: Path) -> None:
    """P21: two bytes of a size (zero so far) were no block at all, counted as damage."""
    head = lz4_legacy(CAPTURE.read_bytes())
    report = read(written(tmp_path, "cut.pcap.lz4", head + b"\x00\x00"))[1]
    assert report.skipped == {"truncated": 1}
    assert report.skipped_bytes["truncated"] == 0
    assert "ends inside a block" in report.examples[0].message


def test_what_a_cut_skippable_frame_and_a_cut_stream_count(tmp_path: Path) -> None:
    """P12 (a cut skippable frame's bytes counted one short) and P14 (a stream cut short
    counted a byte that is not skipped: the bytes it held were all decompressed)."""
    data = CAPTURE.read_bytes()
    frame = zstandard.ZstdCompressor().compress(data)
    report = read(written(tmp_path, "cut.pcap.zst", frame + skippable(b"y" * 100)[:50]))[1]
    assert report.skipped_bytes == {"truncated": 50}
    whole = gzip.compress(data, mtime=0)
    path = written(tmp_path, "cut.pcap.gz", whole[:700])
    report = read(path)[1]
    plain = written(
        tmp_path, "plain.pcap", gzip.decompress(whole)[: report.files[str(path)].unpacked_size or 0]
    )
    assert report.skipped_bytes["truncated"] == read(plain)[1].skipped_bytes["truncated"]


def test_a_gzip_trailers_damage_spans_its_four_bytes(tmp_path: Path) -> None:
    """P17: the stretch named for a CRC-32 that does not match ended a byte after its
    first, not after its last."""
    whole = gzip.compress(CAPTURE.read_bytes(), mtime=0)
    path = written(tmp_path, "crc.pcap.gz", whole[:-8] + bytes([whole[-8] ^ 1]) + whole[-7:])
    [problem] = read(path)[1].examples
    assert f"between compressed bytes 0 and {len(whole) - 4}," in problem.message
