"""Inputs compressed whole (readers/packed.py): a gzip, bzip2, xz, zstd or LZ4 (frame or
legacy) file holding a capture, an IPFIX file or an nfcapd file reads as the file it holds;
damage to the
compression is counted with its place in the compressed file, and what came out before it
is read."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import shutil
import subprocess
import tempfile
import tracemalloc
from pathlib import Path

import lz4.block
import lz4.frame
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.readers import discover_inputs, packed, read_flows
from obserae_forensics.readers.pcap import iter_frames
from obserae_forensics.report import RunReport
from obserae_forensics.schema import FLOW_SCHEMA
from tests.conftest import need_tool

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CAPTURE = FIXTURES / "sf_v9_varsvc.pcap"  # softflowd v9, 72 records


def lz4_legacy(data: bytes) -> bytes:
    """What `lz4 -l` writes (the tool is not on every machine the tests run on; the test
    below checks this against it where it is): the magic, then blocks of 8 MiB at most,
    each a 4-byte little-endian compressed size and the LZ4 block."""
    out = [packed.LZ4_LEGACY_MAGIC]
    for at in range(0, len(data), packed.LZ4_LEGACY_BLOCK):
        block = lz4.block.compress(data[at : at + packed.LZ4_LEGACY_BLOCK], store_size=False)
        out += [len(block).to_bytes(4, "little"), block]
    return b"".join(out)


COMPRESS = {
    "gz": lambda data: gzip.compress(data, mtime=0),
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda data: zstandard.ZstdCompressor().compress(data),
    "lz4": lz4.frame.compress,
    "l4l": lz4_legacy,
}


def read(*paths: Path, batch_size: int = 65_536) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    batches = list(read_flows(discover_inputs(list(paths), report), report, batch_size=batch_size))
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


def without_source(table: pa.Table) -> pa.Table:
    return table.drop(["source_file"])


def packed_copy(tmp_path: Path, source: Path, ext: str, data: bytes | None = None) -> Path:
    out = tmp_path / f"{source.name}.{ext}"
    out.write_bytes(COMPRESS[ext](source.read_bytes() if data is None else data))
    return out


@pytest.mark.parametrize("ext", sorted(COMPRESS))
def test_a_compressed_capture_reads_as_the_capture(tmp_path: Path, ext: str) -> None:
    plain, plain_report = read(CAPTURE)
    path = packed_copy(tmp_path, CAPTURE, ext)
    table, report = read(path)
    assert table.num_rows == 72
    assert without_source(table).equals(without_source(plain))
    assert set(table.column("source_file").to_pylist()) == {str(path)}
    stats = report.files[str(path)]
    kind = packed.packing_of(path.read_bytes()[:10])
    assert (stats.format, stats.compression, stats.size, stats.unpacked_size) == (
        "pcap",
        kind,
        path.stat().st_size,
        CAPTURE.stat().st_size,
    )
    assert report.reason_counts() == plain_report.reason_counts()
    assert report.as_dict()["files"][str(path)]["compression"] == kind


def test_the_gzip_tool_and_tshark_agree(tmp_path: Path) -> None:
    """A file the gzip tool wrote (tcpdump -z gzip runs it on each capture it rotates) reads
    to the datagrams tshark reads from it (tshark 4.0 reads gzip itself)."""
    tshark = need_tool("tshark")
    path = tmp_path / CAPTURE.name
    shutil.copy(CAPTURE, path)
    subprocess.run([need_tool("gzip"), "-9", str(path)], check=True)
    path = path.with_name(path.name + ".gz")
    listed = subprocess.run(
        [tshark, "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "udp.length"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    frames = list(iter_frames(path, RunReport()))
    assert [(f.number, len(f.data) - 42 + 8) for f in frames] == [
        (int(n), int(length)) for n, length in zip(listed[::2], listed[1::2], strict=True)
    ]
    assert read(path)[0].num_rows == 72


def test_pcapng_ipfix_file_and_nfcapd_compressed(tmp_path: Path, corpus: Path) -> None:
    editcap = need_tool("editcap")
    pcapng = tmp_path / "pm_v9_test.pcapng"
    subprocess.run(
        [editcap, "-F", "pcapng", str(corpus / "exports" / "pm_v9_test.pcap"), str(pcapng)],
        check=True,
        capture_output=True,
    )
    for source, ext, format in (
        (pcapng, "zst", "pcapng"),
        (FIXTURES / "ipfix_file_python_ipfix.ipfix", "xz", "ipfix"),
        (FIXTURES / "nfcapd171_cisco_dual_stack.nfcapd", "gz", "nfcapd-v2"),
    ):
        plain = read(source)[0]
        path = packed_copy(tmp_path, source, ext)
        table, report = read(path)
        assert table.num_rows == plain.num_rows > 0, source
        assert without_source(table).equals(without_source(plain)), source
        assert report.files[str(path)].format == format


def test_members_frames_padding_and_batches(tmp_path: Path) -> None:
    """pigz and `cat a.gz b.gz` write several gzip members, zstd a frame per input and may
    hold skippable frames; the gzip tool ignores zero padding after the last member."""
    data = CAPTURE.read_bytes()
    plain = read(CAPTURE)[0]
    multi = tmp_path / "multi.pcap.gz"
    multi.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]) + b"\0" * 512)
    frames = tmp_path / "frames.pcap.zst"
    zstd = zstandard.ZstdCompressor()
    frames.write_bytes(
        zstd.compress(data[:77]) + b"\x5a\x2a\x4d\x18\x03\0\0\0abc" + zstd.compress(data[77:])
    )
    xz = tmp_path / "two.pcap.xz"
    xz.write_bytes(lzma.compress(data[:2000]) + lzma.compress(data[2000:]))
    for path in (multi, frames, xz):
        for batch_size in (1, 7, 65_536):
            table, report = read(path, batch_size=batch_size)
            assert without_source(table).equals(without_source(plain)), (path, batch_size)
            assert not report.skipped
    report = read(multi)[1]
    assert (report.ignored["compression_padding"], report.ignored_bytes["compression_padding"]) == (
        1,
        512,
    )
    assert read(frames)[1].ignored_bytes["compression_padding"] == 11


def test_a_cut_gzip_file_reads_what_came_out(tmp_path: Path) -> None:
    whole = gzip.compress(CAPTURE.read_bytes(), mtime=0)
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(whole[:700])
    table, report = read(path)
    assert 0 < table.num_rows < 72
    assert report.skipped["truncated"] == 2  # the stream, and the capture's last record
    cut = [p for p in report.examples if "end marker" in p.message]
    assert [(p.reason, p.offset) for p in cut] == [("truncated", 700)]
    # the records that came out are the plain capture's first ones
    plain = read(CAPTURE)[0]
    assert without_source(table).equals(without_source(plain.slice(0, table.num_rows)))


def test_a_damaged_gzip_file_is_read_up_to_its_damage(tmp_path: Path) -> None:
    data = CAPTURE.read_bytes()
    whole = gzip.compress(data, mtime=0)
    crc = tmp_path / "crc.pcap.gz"  # the member's CRC-32 damaged: every byte came out
    crc.write_bytes(whole[:-8] + bytes([whole[-8] ^ 1]) + whole[-7:])
    table, report = read(crc)
    assert table.num_rows == 72
    [problem] = report.examples
    assert (problem.reason, problem.offset) == ("bad_compression", len(whole) - 8)
    assert "CRC-32" in problem.message and report.skipped_bytes["bad_compression"] == 8
    # a damaged deflate stream: the bytes before the damage are salvaged to the byte.
    # Stored blocks (level 0) hold the bytes as they are, behind a 5-byte header whose
    # length and its complement zlib checks: damage the second block's.
    records = data[24:]
    big = data + records * (200_000 // len(records))
    level0 = gzip.compress(big, compresslevel=0, mtime=0)
    first_length = int.from_bytes(level0[11:13], "little")
    assert first_length < len(big)
    second = 10 + 5 + first_length
    damaged = bytearray(level0)
    damaged[second + 1] ^= 0xFF
    bad = tmp_path / "bad.pcap.gz"
    bad.write_bytes(bytes(damaged))
    table, report = read(bad)
    assert report.files[str(bad)].unpacked_size == first_length
    problem = next(p for p in report.examples if p.reason == "bad_compression")
    assert problem.offset == second + 4  # found at the complement's last byte
    assert report.skipped_bytes["bad_compression"] == len(level0) - second - 4
    assert 0 < table.num_rows < 72 * (1 + 200_000 // len(records))
    # damaged before anything came out: counted as such, not as an unknown format
    early = bytearray(level0)
    early[12] ^= 0xFF
    bad.write_bytes(bytes(early))
    report = RunReport()
    assert discover_inputs([bad], report) == []
    assert report.skipped["bad_compression"] == 1 and not report.skipped["unknown_format"]


def test_bytes_after_the_stream_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "junk.pcap.bz2"
    compressed = bz2.compress(CAPTURE.read_bytes())
    path.write_bytes(compressed + b"not bzip2")
    table, report = read(path)
    assert table.num_rows == 72
    assert [(p.reason, p.offset) for p in report.examples] == [("bad_compression", len(compressed))]
    assert report.skipped_bytes["bad_compression"] == 9


def test_what_is_not_a_known_input_inside(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt.gz"
    text.write_bytes(gzip.compress(b"incident notes\n" * 10))
    empty = tmp_path / "empty.gz"
    empty.write_bytes(gzip.compress(b""))
    report = RunReport()
    assert discover_inputs([text, empty], report) == []
    assert report.skipped["unknown_format"] == 2
    assert all("gzip file holding no PCAP" in p.message for p in report.examples)


@pytest.mark.parametrize("ext", sorted(set(COMPRESS) - {"l4l"}))  # (legacy: 8 MiB blocks)
def test_a_bomb_is_taken_out_in_bounded_pieces(ext: str) -> None:
    """A file of zeros compresses 1000:1 and more: the decompressed bytes go to the spool a
    bounded piece at a time, never all at once into memory."""
    zeros = COMPRESS[ext](bytes(48 << 20))
    member = packed._Member(
        {"gz": "gzip", "bz2": "bzip2", "xz": "xz", "zst": "zstd", "lz4": "lz4"}[ext]
    )
    sizes = [len(piece) for piece in member.pieces(zeros)]
    assert sum(sizes) == 48 << 20 and member.done
    assert max(sizes) <= (32 << 20 if ext == "zst" else packed.OUT_BYTES)


def test_rotated_compressed_captures_are_replayed_in_their_order(tmp_path: Path) -> None:
    """tcpdump -G/-C -z gzip: the captures it rotated, named in any order, are read in the
    order of their first frames, which are found without decompressing a file whole."""
    data = CAPTURE.read_bytes()
    frames = list(iter_frames(CAPTURE, RunReport()))
    cut = frames[len(frames) // 2].offset
    first, second = data[:cut], data[:24] + data[cut:]
    names = []
    for name, part in (("b_first.pcap", first), ("a_second.pcap", second)):
        (tmp_path / name).write_bytes(part)
        names.append(packed_copy(tmp_path, tmp_path / name, "gz", part))
    plain = read(tmp_path / "a_second.pcap", tmp_path / "b_first.pcap")[0]
    table = read(*names)[0]
    assert without_source(table).equals(without_source(plain))
    assert table.column("source_file")[0].as_py().endswith("b_first.pcap.gz")


@pytest.mark.parametrize("head", [64 * 30, 64 * 2, 64])
def test_a_first_frame_beyond_the_head_is_still_found(
    tmp_path: Path, head: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first 1/64 of FIRST_FRAME_BYTES decompressed, then all of them, then the whole
    file: a first frame beyond the first two is still found."""
    import obserae_forensics.readers as readers

    path = packed_copy(tmp_path, CAPTURE, "gz")
    expected = next(iter_frames(CAPTURE, RunReport())).ts_ns // 1_000
    monkeypatch.setattr(readers, "FIRST_FRAME_BYTES", head)
    assert discover_inputs([path], RunReport())[0].first_us == expected


def test_no_room_to_decompress_skips_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Full:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *args: object) -> None:
            pass

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    path = packed_copy(tmp_path, CAPTURE, "gz")
    inputs = discover_inputs([path, FIXTURES / "fprobe_v1.pcap"], RunReport())
    monkeypatch.setattr(tempfile, "TemporaryFile", Full)
    report = RunReport()
    table = pa.Table.from_batches(list(read_flows(inputs, report)), schema=FLOW_SCHEMA)
    assert table.num_rows > 0  # the other input is read
    assert set(table.column("source_file").to_pylist()) == {str(FIXTURES / "fprobe_v1.pcap")}
    [problem] = [p for p in report.examples if p.source == str(path)]
    assert problem.reason == "unreadable" and "No space left" in problem.message
    assert report.skipped_bytes["unreadable"] == path.stat().st_size


def test_sessionize_cites_the_compressed_file(tmp_path: Path) -> None:
    path = packed_copy(tmp_path, CAPTURE, "zst")
    plain_out, out = tmp_path / "plain", tmp_path / "packed"
    for source, target in ((CAPTURE, plain_out), (path, out)):
        result = CliRunner().invoke(app, ["sessionize", str(source), "--out", str(target), "-q"])
        assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    [cited] = manifest["inputs"]
    assert (cited["format"], cited["compression"], cited["size"]) == (
        "pcap",
        "zstd",
        path.stat().st_size,
    )
    # the size its offsets count in (found by an audit: the README promised it, only the
    # in-memory report held it)
    assert cited["unpacked_size"] == CAPTURE.stat().st_size
    assert cited["records"] == manifest["counts"]["records_read"]
    assert pq.read_table(out / "sessions.parquet").equals(
        pq.read_table(plain_out / "sessions.parquet")
    )


def test_recombine_exports_from_a_compressed_capture(tmp_path: Path) -> None:
    """`recombine --export-pcap` reads the frames back from the capture the run read: from
    a compressed one, the same frames as from the capture it holds."""
    path = packed_copy(tmp_path, CAPTURE, "gz")
    exports = []
    for source, run in ((CAPTURE, tmp_path / "plain"), (path, tmp_path / "packed")):
        assert (
            CliRunner().invoke(app, ["sessionize", str(source), "--out", str(run), "-q"]).exit_code
            == 0
        )
        sessions = pq.read_table(run / "sessions.parquet").to_pylist()
        busiest = max(sessions, key=lambda row: (row["flow_count"], row["session_id"]))
        out = tmp_path / f"{run.name}.pcap"
        result = CliRunner().invoke(
            app,
            ["recombine", str(run), "--session", busiest["session_id"], "--export-pcap", str(out)],
        )
        assert result.exit_code == 0, result.output
        exports.append(out.read_bytes())
    assert exports[0] == exports[1] and len(exports[0]) > 24


def test_many_tiny_members_and_a_long_padding_run(tmp_path: Path) -> None:
    """A member's end is found without copying the rest of a read for each one (a file of
    tiny members took a megabyte's copy per member), and a run of zeros longer than a read
    is one padding, not one per read."""
    data = CAPTURE.read_bytes()
    empty = gzip.compress(b"", mtime=0)
    members = b"".join(
        gzip.compress(data[at : at + 20], mtime=0) + empty * 50 for at in range(0, len(data), 20)
    )
    path = tmp_path / "tiny.pcap.gz"
    path.write_bytes(members + bytes(3 * packed.READ_BYTES + 5))
    table, report = read(path)
    assert without_source(table).equals(without_source(read(CAPTURE)[0]))
    assert (report.ignored["compression_padding"], report.ignored_bytes["compression_padding"]) == (
        1,
        3 * packed.READ_BYTES + 5,
    )
    assert not report.skipped


def skippable(payload: bytes) -> bytes:
    return b"\x5a\x2a\x4d\x18" + len(payload).to_bytes(4, "little") + payload


def test_skippable_frames_and_stream_padding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the tools accept between and around members (found by review: a zstd file
    beginning with a skippable frame was unknown_format, an LZ4 skippable frame or xz
    stream padding between members lost all after it, a large skippable frame was held in
    memory and re-joined at each read)."""
    data = CAPTURE.read_bytes()
    plain = read(CAPTURE)[0]
    zstd = zstandard.ZstdCompressor()
    cases = {
        "first.pcap.zst": skippable(b"meta") + zstd.compress(data),
        "between.pcap.lz4": (
            lz4.frame.compress(data[:500]) + skippable(b"x" * 9) + lz4.frame.compress(data[500:])
        ),
        "padded.pcap.xz": lzma.compress(data[:900])
        + bytes(4)
        + lzma.compress(data[900:])
        + bytes(8),
        "large.pcap.zst": zstd.compress(data[:300])
        + skippable(bytes(3 << 20))
        + zstd.compress(data[300:]),
    }
    monkeypatch.setattr(packed, "READ_BYTES", 1 << 16)
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        tracemalloc.start()
        table, report = read(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert without_source(table).equals(without_source(plain)), name
        assert not report.skipped and report.ignored["compression_padding"] >= 1, name
        if name == "large.pcap.zst":  # a 3 MiB skippable frame passed over, not held
            assert peak < 2 << 20, peak
    cut = tmp_path / "cut.pcap.zst"
    cut.write_bytes(zstd.compress(data) + skippable(b"y" * 100)[:50])
    table, report = read(cut)
    assert table.num_rows == 72 and report.skipped == {"truncated": 1}
    assert "skippable frame" in report.examples[0].message


def test_damage_names_the_stretch_it_lies_in(tmp_path: Path) -> None:
    """Found by review: damage is found after it (at a block's end, at a checksum), and
    the problem named a place after the damage as where it began; what came out before the
    check failed is read, so the problem names the decompressed bytes that may be wrong."""
    data = CAPTURE.read_bytes()
    records = data[24:]
    big = data + records * 60
    # as the tools write them: zstd's and LZ4's with their content checksums (the Python
    # libraries' defaults leave them out, and damage that still decodes then goes unseen)
    checked = {
        **COMPRESS,
        "zst": zstandard.ZstdCompressor(write_checksum=True).compress,
        "lz4": lambda data: lz4.frame.compress(data, content_checksum=True),
    }
    for ext in ("gz", "bz2", "xz", "zst", "lz4"):
        compressed = checked[ext](big)
        flip = len(compressed) // 2
        damaged = bytearray(compressed)
        damaged[flip] ^= 0x10
        path = tmp_path / f"flip.pcap.{ext}"
        path.write_bytes(bytes(damaged))
        _, report = read(path)
        [problem] = [p for p in report.examples if p.reason == "bad_compression"]
        words = problem.message.split()
        start = int(words[words.index("between") + 3])
        end = int(words[words.index("between") + 5].rstrip(","))
        assert start <= flip < end and problem.offset <= end, (ext, problem.message)
        written = report.files[str(path)].unpacked_size
        if written:
            assert f"decompressed bytes 0 up to {written}" in problem.message, ext
            assert "may hold damaged values" in problem.message


def test_a_compressed_nfcapd_file_is_decompressed_whole_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: ordering a compressed nfcapd file among the inputs decompressed it
    whole, then reading it did again."""
    path = packed_copy(tmp_path, FIXTURES / "nfcapd171_cisco_dual_stack.nfcapd", "gz")
    whole = []
    inflate = packed._inflate

    def counted(*args: object, **kwargs: object) -> int:
        whole.append(kwargs.get("limit") is None)
        return inflate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(packed, "_inflate", counted)
    table, _ = read(path)
    assert table.num_rows > 0 and whole.count(True) == 1


def test_lz4_legacy_streams_as_the_lz4_tool_writes_and_joins_them(tmp_path: Path) -> None:
    """`lz4 -l` (the Linux kernel's and old tools' format) was `unknown_format`. Blocks of
    8 MiB, no end marker, no checksum; `cat` of two streams repeats the magic between
    them; a cut block is `truncated`, a damaged one `bad_compression`, what came before
    is read."""
    data = bytes(range(256)) * 70_000  # 17.9 MB: three blocks
    joined = tmp_path / "two.lz4"
    joined.write_bytes(lz4_legacy(data) + lz4_legacy(CAPTURE.read_bytes()))
    spooled: list[bytes] = []
    problems: list[object] = []
    with open(joined, "rb") as handle:
        written = packed._inflate(
            handle,
            "lz4-legacy",
            spooled.append,
            "x",
            lambda error, _: problems.append(error),
            lambda _: None,
        )
    assert written == len(data) + CAPTURE.stat().st_size and not problems
    assert max(map(len, spooled)) <= packed.LZ4_LEGACY_BLOCK
    assert b"".join(spooled) == data + CAPTURE.read_bytes()
    lz4_tool = shutil.which("lz4")
    if lz4_tool is not None:  # the tool's own output reads the same
        subprocess.run(
            [lz4_tool, "-q", "-l", "-f", str(CAPTURE), str(tmp_path / "t.lz4")], check=True
        )
        table, report = read(tmp_path / "t.lz4")
        assert table.num_rows == 72 and report.files[str(tmp_path / "t.lz4")].compression == (
            "lz4-legacy"
        )
    whole = lz4_legacy(CAPTURE.read_bytes())
    cut = tmp_path / "cut.lz4"
    cut.write_bytes(whole[:-10])
    _, report = read(cut)
    assert report.skipped == {"truncated": 1}
    damaged = tmp_path / "damaged.lz4"
    bad = bytearray(whole)
    bad[8:28] = b"\xff" * 20  # the block's first token: literals running past its end
    damaged.write_bytes(whole + bytes(bad))
    table, report = read(damaged)
    assert table.num_rows == 72 and report.skipped == {"bad_compression": 1}
    assert f"between compressed bytes {len(whole)} and {2 * len(whole)}" in (
        report.examples[0].message
    )


def test_lz4_legacy_sizes_no_block_has_and_frames_joined_to_it(tmp_path: Path) -> None:
    """Found by review: a damaged first block size (0xFFFFFFF0) held the rest of the file
    in memory before it was `truncated`; a cut inside a later block's size was counted
    twice; `cat` of a legacy stream and an LZ4 frame (either order), which `lz4 -dc`
    reads whole, lost its second part."""
    data = CAPTURE.read_bytes()

    def inflate(blob: bytes) -> tuple[bytes, list[str]]:
        path = tmp_path / "x.lz4"
        path.write_bytes(blob)
        out: list[bytes] = []
        reasons: list[str] = []
        with open(path, "rb") as handle:
            packed._inflate(
                handle,
                packed.packing_of(blob[:10]),
                out.append,
                "x",
                lambda error, _: reasons.append(error.reason),
                lambda _: None,
            )
        return b"".join(out), reasons

    legacy, frame = lz4_legacy(data), lz4.frame.compress(data)
    assert inflate(legacy + frame) == (data + data, [])
    assert inflate(frame + legacy) == (data + data, [])
    assert inflate(packed.LZ4_LEGACY_MAGIC + b"\xf0\xff\xff\xff" + bytes(1 << 20)) == (
        b"",
        ["bad_compression"],
    )
    two = lz4_legacy(data) + lz4_legacy(data)[4:]  # two blocks in one stream
    assert inflate(two[: len(legacy) + 2]) == (data, ["truncated"])
