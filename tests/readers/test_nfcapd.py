"""nfcapd reader against nfdump itself: every corpus file, every compression, nfpcapd output.

The oracle is nfdump 1.7.1 (`-o pipe` for times in ms, numeric addresses and counters; `-o
csv` for reverse counters, exporter address and received time), run with TZ=UTC.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from obserae_forensics.addresses import address_texts
from obserae_forensics.errors import UnknownFormat
from obserae_forensics.readers import discover_inputs, read_flows
from obserae_forensics.readers.compression import ZSTD
from obserae_forensics.readers.nfcapd import is_nfcapd, nfcapd_time_span, read_nfcapd
from obserae_forensics.readers.nfcapd_write import read_raw, swap_record, write_v2
from obserae_forensics.report import RunReport
from obserae_forensics.schema import FLOW_SCHEMA
from tests.conftest import CORPUS, need_tool

CORPUS_FILES = sorted(p.name for p in (CORPUS / "nfcapd").glob("*.nfcapd"))


def read_table(path: Path, **options: object) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    batches = list(read_nfcapd(path, report, **options))  # type: ignore[arg-type]
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


def nfdump_records(path: Path, *options: str) -> list[tuple[object, ...]]:
    """One tuple per record, in file order, from nfdump -o pipe and -o csv."""
    nfdump = need_tool("nfdump")
    env = {**os.environ, "TZ": "UTC"}

    def run(mode: str) -> list[str]:
        out = subprocess.run(
            [nfdump, "-r", str(path), "-q", "-o", mode, *options],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        return [line for line in out.splitlines() if line.strip() and line != "No matching flows"]

    records = []
    for pipe, csv in zip(run("pipe"), run("csv"), strict=True):
        p = [int(v) for v in pipe.split("|")]
        c = csv.split(",")
        af, first, last, proto = p[0:4]
        if af == 2:
            src, dst = _v4_text(p[7]), _v4_text(p[12])
        else:
            src, dst = _v6_text(p[4:8]), _v6_text(p[9:13])
        received_ms = int(
            datetime.strptime(c[-1], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp() * 1000
            + 0.5
        )
        records.append(
            (
                first,
                last,
                src,
                dst,
                p[8],
                p[13],
                proto,
                p[18],
                p[19],
                p[20],
                p[21],
                int(c[13]),
                int(c[14]),
                p[16],
                p[17],
                p[14],
                p[15],
                c[-4],
                received_ms,
            )
        )
    return records


def our_records(table: pa.Table) -> list[tuple[object, ...]]:
    def ints(name: str) -> list[int]:
        return table.column(name).cast(pa.int64()).to_pylist()

    def texts(name: str) -> list[str]:
        return column_texts(table, name)

    first = [v // 1000 for v in ints("first_seen")]
    last = [v // 1000 for v in ints("last_seen")]
    arrival = [v // 1000 for v in ints("arrival")]
    exporter = [str(v) for v in table.column("exporter").to_pylist()]
    # the field nfcapd stored: an IPFIX biflow's flags are read back as the reverse ones
    # (test_nfcapd_stores_a_biflow_s_reverse_tcp_flags_in_the_forward_field), where nfdump
    # shows them as the forward flags
    stored = [f | r for f, r in zip(ints("tcp_flags"), ints("reverse_tcp_flags"), strict=True)]
    return list(
        zip(
            first,
            last,
            texts("src_addr"),
            texts("dst_addr"),
            ints("src_port"),
            ints("dst_port"),
            ints("protocol"),
            stored,
            ints("tos"),
            ints("packets"),
            ints("octets"),
            ints("reverse_packets"),
            ints("reverse_octets"),
            ints("input_if"),
            ints("output_if"),
            ints("src_as"),
            ints("dst_as"),
            exporter,
            arrival,
            strict=True,
        )
    )


def column_texts(table: pa.Table, name: str) -> list[str]:
    """An address column (16-byte binary) as the texts nfdump prints."""
    column = table.column(name).combine_chunks()
    matrix = np.frombuffer(column.buffers()[1], np.uint8).reshape(-1, 16)[
        column.offset : column.offset + len(column)
    ]
    return address_texts(matrix)


def _v4_text(value: int) -> str:
    return ".".join(str(b) for b in value.to_bytes(4, "big"))


def _v6_text(words: list[int]) -> str:
    return address_texts(
        np.frombuffer(b"".join(w.to_bytes(4, "big") for w in words), np.uint8).reshape(1, 16)
    )[0]


def assert_same_records(
    ours: list[tuple[object, ...]], theirs: list[tuple[object, ...]], exporter_known: bool
) -> None:
    assert len(ours) == len(theirs)
    for index, (mine, oracle) in enumerate(zip(ours, theirs, strict=True)):
        if not exporter_known:  # nfpcapd: no exporter; nfdump shows 0.0.0.0, we the ident
            mine, oracle = mine[:-2] + mine[-1:], oracle[:-2] + oracle[-1:]
        assert mine == oracle, f"record {index}"


@pytest.fixture(scope="module")
def figures(corpus: Path) -> dict[str, dict[str, object]]:
    return json.loads((corpus / "figures.json").read_text())


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_file_equals_nfdump_record_by_record(
    corpus: Path, name: str, figures: dict[str, dict[str, object]]
) -> None:
    path = corpus / "nfcapd" / name
    table, report = read_table(path)
    exporters = figures[f"nfcapd/{name}"]["exporters"]
    assert_same_records(our_records(table), nfdump_records(path), bool(exporters))
    assert not report.skipped
    info = subprocess.run(
        [need_tool("nfdump"), "-r", str(path), "-I"], capture_output=True, text=True, check=True
    ).stdout
    assert f"Ident: {report.files[str(path)].ident}\n" in info


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_readme_figures(
    corpus: Path, name: str, figures: dict[str, dict[str, object]]
) -> None:
    """Records, packets, bytes, exporters and sequence failures as corpus/figures.json says."""
    path = corpus / "nfcapd" / name
    expected = figures[f"nfcapd/{name}"]
    table, report = read_table(path)
    assert table.num_rows == expected["records_nfdump"]
    totals = report.exporters.values()
    assert sum(s.records for s in totals) == expected["records_nfdump"]
    assert sum(s.packets for s in totals) == expected["packets"]
    assert sum(s.octets for s in totals) == expected["bytes"]
    stats = report.files[str(path)]
    assert stats.format == "nfcapd-v2" and stats.records == 0  # read_flows counts records
    assert (stats.stat_flows, stats.stat_packets, stats.stat_bytes) == (
        expected["flows_stat"],
        expected["packets"],
        expected["bytes"],
    )
    assert stats.units >= 1
    exporters = expected["exporters"]
    assert isinstance(exporters, list)
    if not exporters:  # nfpcapd: one stream named after the file's ident
        assert [key for key in report.exporters] == [(name.removesuffix(".nfcapd"), 0)]
    for exporter in exporters:
        mine = report.exporters[(exporter["ip"], exporter["id"])]
        assert (mine.records, mine.version) == (exporter["flows"], exporter["version"])
        assert mine.datagrams == exporter["datagrams"]
        assert mine.sequence_gaps == exporter["seq_failures"]
    assert set(table.column("exporter_domain").to_pylist()) <= {e["id"] for e in exporters} | {0}


def test_time_span_comes_from_the_stat_record(
    corpus: Path, figures: dict[str, dict[str, object]]
) -> None:
    path = corpus / "nfcapd" / "nfpcapd_test.nfcapd"
    span = nfcapd_time_span(path)
    assert span is not None
    expected = figures["nfcapd/nfpcapd_test.nfcapd"]
    assert span[0] // 1_000_000 == expected["first"] and span[1] // 1_000_000 == expected["last"]
    table, _ = read_table(path)
    assert span == (
        table.column("first_seen").cast(pa.int64()).to_numpy().min(),
        table.column("last_seen").cast(pa.int64()).to_numpy().max(),
    )
    # nfcapd 1.7.1 leaves First at 0 in some live files: unknown, not 1970
    assert nfcapd_time_span(corpus / "nfcapd" / "sf_v9_synscan.nfcapd") is None


def test_every_compression_reads_to_the_same_records(corpus: Path, tmp_path: Path) -> None:
    """nfdump -J 0..3 writes none/LZO/BZ2/LZ4; ZSTD is built by recompressing the blocks."""
    nfdump = need_tool("nfdump")
    source = corpus / "nfcapd" / "sf_v9_varsvc.nfcapd"
    base, _ = read_table(source)
    expected = our_records(base)
    assert expected == nfdump_records(source)
    for code in range(4):
        copy = tmp_path / f"j{code}.nfcapd"
        shutil.copy(source, copy)
        copy.chmod(0o644)
        subprocess.run([nfdump, "-r", str(copy), "-J", str(code)], check=True, capture_output=True)
        assert copy.read_bytes()[16] == code
        table, report = read_table(copy)
        assert our_records(table) == expected and not report.skipped
        assert our_records(table) == nfdump_records(copy)
    raw = read_raw(source)
    raw.compression = ZSTD
    zstd = tmp_path / "zstd.nfcapd"
    write_v2(zstd, raw)
    assert zstd.read_bytes()[16] == ZSTD
    table, report = read_table(zstd)
    assert our_records(table) == expected and not report.skipped
    assert nfcapd_time_span(zstd) == nfcapd_time_span(source)


@pytest.mark.parametrize(
    "name",
    [
        "nfcapd/sf_v9_varsvc.nfcapd",  # 1.7.1: the exporter's address two host-order u64
        "fixtures/nfcapd178_sf_v9_varsvc.bz2.nfcapd",  # 1.7.8: 16 network-order bytes
    ],
)
def test_big_endian_file_reads_like_its_little_endian_original(
    corpus: Path, tmp_path: Path, name: str
) -> None:
    """The 1.7.8 case holds the writer too: swap_record once swapped a network-order
    address, and the file named its exporter ::100:7f:ffff:0."""
    folder, file_name = name.split("/")
    source = (FIXTURES if folder == "fixtures" else corpus / folder) / file_name
    raw = read_raw(source)
    raw.order = ">"
    raw.blocks = [[swap_record(record) for record in block] for block in raw.blocks]
    swapped = tmp_path / "be.nfcapd"
    write_v2(swapped, raw)
    assert swapped.read_bytes()[:4] == b"\xa5\x0c\x00\x02" and is_nfcapd(swapped.read_bytes())
    base, base_report = read_table(source)
    table, report = read_table(swapped)
    assert our_records(table) == our_records(base)
    assert nfcapd_time_span(swapped) == nfcapd_time_span(source)
    assert report.exporters.keys() == base_report.exporters.keys()
    assert table.column("exporter").to_pylist() == base.column("exporter").to_pylist()


@pytest.mark.parametrize(
    ("raw_name", "compress"),
    [
        ("zeek_var-services-std-ports.pcap", ["-z"]),  # IPv6 UDP, LZO
        ("chrissanders_icmp_traceroute.pcapng", ["-y"]),  # ICMP type/code, LZ4
        ("zeek_irc-dcc-send.pcapng", []),  # long connection, two 5-minute files
    ],
)  # (nfpcapd 1.7.1 exits 1 with -j; BZ2 is covered by nfdump -J 2 above)
def test_nfpcapd_output_equals_nfdump(
    corpus: Path, tmp_path: Path, raw_name: str, compress: list[str]
) -> None:
    nfpcapd = need_tool("nfpcapd")
    subprocess.run(
        [
            nfpcapd,
            "-r",
            str(corpus / "raw" / raw_name),
            "-w",
            str(tmp_path),
            "-e",
            "300,60",
            "-I",
            "test",
            *compress,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    files = sorted(p for p in tmp_path.rglob("nfcapd.*") if p.is_file())
    assert files
    for path in files:
        table, report = read_table(path)
        assert_same_records(our_records(table), nfdump_records(path), exporter_known=False)
        assert not report.skipped


def test_window_selects_like_nfdump_t(corpus: Path) -> None:
    """nfdump 1.7.1 -t keeps records with first >= start and last <= end."""
    path = corpus / "nfcapd" / "sf_v5_synscan.nfcapd"
    start, end = "2010/07/04.20:24:20", "2010/07/04.20:24:30"
    oracle = nfdump_records(path, "-t", f"{start}-{end}")

    def us(text: str) -> int:
        moment = datetime.strptime(text, "%Y/%m/%d.%H:%M:%S").replace(tzinfo=UTC)
        return int(moment.timestamp()) * 1_000_000

    def windowed(window: tuple[int | None, int | None]) -> pa.Table:
        report = RunReport()
        inputs = discover_inputs([path], report)
        return pa.Table.from_batches(
            list(read_flows(inputs, report, window=window)), schema=FLOW_SCHEMA
        )

    table = windowed((us(start), us(end)))
    everything, _ = read_table(path)
    assert 0 < len(oracle) < everything.num_rows
    assert our_records(table) == oracle
    assert windowed((us(end), None)).num_rows == len(nfdump_records(path, "-t", end))


def moment_us(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000


def test_a_window_is_judged_on_the_records_not_the_stat_record(corpus: Path) -> None:
    """Found by an audit: a file whose stat record put it wholly outside the window was not
    read, as nfdump -r does; but nfcapd 1.7 gives an NSEL file the collection slot there
    (2026-12-04 17:00-18:00 for records of 2023-11-14 22:12), and a window around its
    records left all 10 out, and its exporter uncounted. Every file is read; each record
    is judged on its own times, and the exporters count what was sent, window or not."""
    nsel = FIXTURES / "nfcapd171_nsel"
    path = corpus / "nfcapd" / "sf_v9_varsvc.nfcapd"
    span = nfcapd_time_span(path)
    assert span is not None
    for inputs, window, inside in (
        ([nsel], (moment_us("2023-11-14T22:00:00"), moment_us("2023-11-14T23:00:00")), 10),
        ([path], (span[1] + 1, None), 0),
    ):
        everything = RunReport()
        total = sum(b.num_rows for b in read_flows(discover_inputs(inputs, everything), everything))
        report = RunReport()
        table = pa.Table.from_batches(
            list(read_flows(discover_inputs(inputs, report), report, window=window)),
            schema=FLOW_SCHEMA,
        )
        assert table.num_rows == inside and report.outside_window == total - inside
        assert {key: stats.records for key, stats in report.exporters.items()} == {
            key: stats.records for key, stats in everything.exporters.items()
        }


def test_batch_size_changes_nothing_but_the_batches(corpus: Path) -> None:
    path = corpus / "nfcapd" / "sf_v9_synscan.nfcapd"
    whole, _ = read_table(path)
    report = RunReport()
    batches = list(read_nfcapd(path, report, batch_size=500))
    assert [b.num_rows for b in batches] == [500, 500, 500, 500, 2]
    assert pa.Table.from_batches(batches).equals(whole)


def test_provenance_points_at_the_block(corpus: Path) -> None:
    path = corpus / "nfcapd" / "sf_v9_varsvc.nfcapd"
    table, _ = read_table(path)
    assert set(table.column("source_frame").to_pylist()) == {1}
    assert set(table.column("source_offset").to_pylist()) == {40}  # first block after header
    index = table.column("record_index").to_pylist()
    assert index == sorted(index) and len(set(index)) == len(index)
    assert index[0] == 1  # record 0 of the block is the exporter-info record
    assert set(table.column("source_file").to_pylist()) == {str(path)}
    assert set(table.column("export_version").to_pylist()) == {9}


def test_not_nfcapd_raises_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "capture.pcap"
    path.write_bytes(bytes.fromhex("d4c3b2a102000400") + bytes(16))
    with pytest.raises(UnknownFormat, match=r"capture\.pcap@0: not an nfcapd file") as info:
        read_nfcapd(path, RunReport())
    assert "\n" not in str(info.value)
    assert not is_nfcapd(path.read_bytes()) and nfcapd_time_span(path) is None


def test_read_flows_recognises_nfcapd_by_magic_and_counts_once(
    corpus: Path, tmp_path: Path
) -> None:
    from obserae_forensics.readers import discover_inputs, read_flows

    renamed = tmp_path / "archive.bin"
    shutil.copy(corpus / "nfcapd" / "sf_v9_varsvc.nfcapd", renamed)
    later = corpus / "nfcapd" / "sf_v5_test.nfcapd"  # 2010 flows: ordered first
    report = RunReport()
    inputs = discover_inputs([renamed, later], report)
    assert [item.path for item in inputs] == [later, renamed]
    assert [item.format for item in inputs] == ["nfcapd", "nfcapd"]
    rows = sum(batch.num_rows for batch in read_flows(inputs, report))
    assert rows == report.records == 43 + 72
    assert report.files[str(renamed)].records == 72
    assert report.files[str(renamed)].format == "nfcapd-v2"


def test_records_ending_before_they_start_are_swapped_and_said(corpus: Path) -> None:
    """nfdump 1.7.1 swaps IPFIX's uptime start and end (element 160 with 21/22): in this file
    records end before they start, and their sessions ended before they opened, without a
    word, leaving the scan's SYNs half-open (audit against the raw packets)."""
    from obserae_forensics.readers import discover_inputs, read_flows

    path = corpus / "nfcapd" / "sf_v10_synscan.nfcapd"
    raw, _ = read_table(path)
    first = raw.column("first_seen").cast("int64").to_numpy()
    last = raw.column("last_seen").cast("int64").to_numpy()
    inverted = first > last
    assert inverted.sum() > 0
    report = RunReport()
    table = pa.Table.from_batches(list(read_flows(discover_inputs([path], report), report)))
    assert report.repaired["inverted_times"] == inverted.sum()
    assert "inverted_times" not in report.skipped  # kept, not skipped: --strict goes on
    assert f"{path}@" in next(str(p) for p in report.examples if p.reason == "inverted_times")
    timed = (first != 0) | (last != 0)  # the scan's first SYN has no time (below)
    assert table.num_rows == timed.sum()  # every inverted record kept
    swapped = table.column("first_seen").cast("int64").to_numpy()
    assert (swapped == np.minimum(first, last)[timed]).all()
    assert (
        table.column("last_seen").cast("int64").to_numpy() == np.maximum(first, last)[timed]
    ).all()


def test_a_record_without_times_is_left_out_and_said(corpus: Path) -> None:
    """nfcapd 1.7.1 stored the scan's first SYN with both times 0 (nfdump prints
    1970-01-01): a late session dated 1970 and a data window starting then, unsaid. The
    flows were made offline (softflowd -r over a 2011 capture): their receive time is not
    theirs, so it is not placed there either (the other records ended years before)."""
    from obserae_forensics.readers import discover_inputs, read_flows

    path = corpus / "nfcapd" / "sf_v9_synscan.nfcapd"
    raw, _ = read_table(path)
    timeless = (raw.column("first_seen").cast("int64").to_numpy() == 0) & (
        raw.column("last_seen").cast("int64").to_numpy() == 0
    )
    assert timeless.sum() == 1
    report = RunReport()
    table = pa.Table.from_batches(list(read_flows(discover_inputs([path], report), report)))
    assert table.num_rows == raw.num_rows - 1 == report.records
    assert report.skipped["no_times"] == 1
    assert table.column("first_seen").cast("int64").to_numpy().min() > 0


def test_nfcapd_stores_a_biflow_s_reverse_tcp_flags_in_the_forward_field(corpus: Path) -> None:
    """The corpus biflow capture and the file nfcapd collected from the same datagrams:
    for every TCP record the flags nfcapd stored (nfdump's Flags) are the datagram's
    reverseTcpControlBits, not its tcpControlBits (the 443 record: FIN|ACK forward, FIN|PSH|ACK
    reverse, FIN|PSH|ACK in the file). The reader gives them back to the reverse direction
    and says so; read as forward flags they made the answering side the SYN's sender."""
    from tests.readers.test_corpus_exports import decode_files

    datagrams, _ = decode_files(corpus / "exports" / "sf_v10_biflow_test.pcap")
    path = corpus / "nfcapd" / "sf_v10_biflow_test.nfcapd"
    table, report = read_table(path)
    oracle = nfdump_records(path)

    def tcp(rows: pa.Table) -> dict[tuple[object, ...], tuple[int, int]]:
        keys = our_records(rows)
        flags = zip(
            rows.column("tcp_flags").to_pylist(),
            rows.column("reverse_tcp_flags").to_pylist(),
            strict=True,
        )
        return {key[2:6]: flag for key, flag in zip(keys, flags, strict=True) if key[6] == 6}

    sent = tcp(datagrams)
    stored = {key[2:6]: key[7] for key in oracle if key[6] == 6}
    assert sent.keys() == stored.keys() and len(sent) == 7
    assert all(stored[key] == reverse for key, (_, reverse) in sent.items())
    assert any(forward != reverse for forward, reverse in sent.values())  # not a coincidence
    assert tcp(table) == {key: (0, reverse) for key, (_, reverse) in sent.items()}
    assert report.repaired["nfcapd_reverse_flags"] == sum(1 for f in stored.values() if f)
    # a non-biflow IPFIX file of the same traffic keeps its flags where nfcapd put them
    plain, plain_report = read_table(corpus / "nfcapd" / "sf_v10_test.nfcapd")
    assert not plain_report.repaired and not any(plain.column("reverse_tcp_flags").to_pylist())


def test_one_way_ipfix_with_flow_counts_keeps_its_flags_forward(fixtures: Path) -> None:
    """nfcapd gives a record reverse counters (EXcntFlow) for deltaFlowCount (IE 3) and
    postPacketDeltaCount (IE 24) too (fixtures/README.md). The IE 3 pair sent no reverse
    packets, so its flags are the forward ones and stay (moved, a client's SYN and a
    server's SYN|ACK changed sides); the IE 23/24 pair cannot be told from a biflow."""
    path = fixtures / "nfcapd171_oneway_ipfix.nfcapd"
    table, report = read_table(path)
    rows = {
        (r["src_port"], r["dst_port"]): (r["tcp_flags"], r["reverse_tcp_flags"])
        for r in table.to_pylist()
    }
    assert rows[(40000, 80)] == (0x02, 0) and rows[(80, 40000)] == (0x12, 0)
    assert rows[(40001, 443)] == (0, 0x02) and rows[(443, 40001)] == (0, 0x12)
    assert report.repaired == {"nfcapd_reverse_flags": 2}


def test_a_sampling_rate_changed_within_a_block(fixtures: Path) -> None:
    """An audit against nfdump: nfcapd 1.7.1 writes an exporter's new sampler record
    between the flows it scaled, in one block, and the reader gave every flow of the block
    the last rate (1:1 for flows nfcapd had scaled 1:10 and 1:20). Each flow now takes the
    rate in force where it lies; the counters are nfcapd's, as nfdump prints them."""
    table, report = read_table(fixtures / "nfcapd171_sampler_changes.nfcapd")
    rows = [
        (r["exporter"], r["packets"], r["sampling_rate"], r["counters_scaled"])
        for r in table.to_pylist()
    ]
    assert rows == [
        ("127.0.0.1", 100, 10, True),
        ("127.0.0.1", 100, 10, True),
        ("127.0.0.1", 200, 20, True),
        ("127.0.0.1", 200, 20, True),
        ("127.0.0.1", 10, 1, True),
        ("127.0.0.2", 10, 1, False),
        ("127.0.0.3", 40, 4, True),
        ("127.0.0.3", 40, 4, True),
        ("127.0.0.3", 40, 4, True),
        ("127.0.0.4", 10, 1, False),
        ("127.0.0.4", 10, 1, False),
    ]
    assert not report.skipped


def test_v9_egress_counters_keep_their_flags_forward(fixtures: Path) -> None:
    """NetFlow v9 OUT_BYTES/OUT_PKTS (IE 23, 24) land in nfcapd's reverse counters as the
    IPFIX ones do, but v9 has no reverse flags element: a SYN with egress counters is still
    its sender's SYN. Only IPFIX records are moved (fixtures/README.md)."""
    table, report = read_table(fixtures / "nfcapd171_oneway_v9.nfcapd")
    rows = {
        (r["src_port"], r["dst_port"]): (
            r["tcp_flags"],
            r["reverse_tcp_flags"],
            r["reverse_packets"],
        )
        for r in table.to_pylist()
    }
    assert rows == {(40002, 22): (0x02, 0, 1), (22, 40002): (0x12, 0, 1)}
    assert not report.repaired


def test_nfdump_bidirectional_output_keeps_the_scanner_the_client(
    fixtures: Path, tmp_path: Path
) -> None:
    """`nfdump -B -w` over the biflow scan: records it pairs stand for several flows and
    are left as nfdump wrote them; it swaps an unpaired record's addresses and counters by
    ports but not its flags. Moved regardless, 1813 of the scan's sessions named the
    target the client."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    paired = tmp_path / "paired.nfcapd"
    subprocess.run(
        [
            need_tool("nfdump"),
            "-r",
            str(fixtures / "sf_v10_biflow_synscan.lz4.nfcapd"),
            "-B",
            "-w",
            str(paired),
        ],
        check=True,
        capture_output=True,
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["sessionize", str(paired), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    clients = pq.read_table(out / "sessions.parquet").column("client_ip").to_pylist()
    assert clients.count("172.16.0.8") >= 1985 and len(clients) == 1993


def test_nfdump_pairs_keep_the_reverse_direction_s_flags(corpus: Path, tmp_path: Path) -> None:
    """`nfdump -b -w` writes each pair's reverse TCP flags in EXflowMisc's revTcpFlags
    (1.7.1; 1.7.8 made the byte padding): unread, the answering side of every paired
    connection had no flags, and connections that finished both ways stayed open. The
    pairs give the sessions of the records they pair, but for the flow count."""
    from tests.test_corpus_pairs import COMPARED, sessions_of

    original = corpus / "nfcapd" / "sf_v9_test.nfcapd"
    paired = tmp_path / "paired.nfcapd"
    subprocess.run(
        [need_tool("nfdump"), "-r", str(original), "-b", "-w", str(paired)],
        check=True,
        capture_output=True,
    )
    apart = sessions_of(original)
    together = sessions_of(paired)
    assert together.keys() == apart.keys()
    compared = [c for c in COMPARED if c != "flow_count"]
    for key, session in apart.items():
        assert {c: together[key][c] for c in compared} == {c: session[c] for c in compared}
    assert sum(s["close_reason"] == "fin" for s in together.values()) == 2


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
# fixtures/nfcapd171_timeless_ipfix.nfcapd: these two IPFIX messages, collected live
TIMELESS_EXPORT_S = 1_796_404_082
UPTIME_ONLY = [
    (60, 1),
    (22, 4),
    (21, 4),
    (2, 4),
    (1, 4),
    (7, 2),
    (11, 2),
    (10, 4),
    (14, 4),
    (4, 1),
    (6, 1),
    (8, 4),
    (12, 4),
    (15, 4),
    (225, 4),
    (226, 4),
]  # Mikrotik's
NO_TIMES = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4)]


def ipfix_message(export_s: int, *sets: bytes, sequence: int = 0) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_s, sequence, 0) + body


def ipfix_template(template_id: int, fields: list[tuple[int, int]]) -> bytes:
    record = struct.pack(">HH", template_id, len(fields)) + b"".join(
        struct.pack(">HH", element, length) for element, length in fields
    )
    return struct.pack(">HH", 2, 4 + len(record)) + record


def ipfix_data(template_id: int, *records: bytes) -> bytes:
    return struct.pack(">HH", template_id, 4 + sum(map(len, records))) + b"".join(records)


def timeless_messages() -> list[bytes]:
    def message(*sets: bytes) -> bytes:
        return ipfix_message(TIMELESS_EXPORT_S, *sets)

    template, data = ipfix_template, ipfix_data
    uptime = ">BIIIIHHIIBBIIIII"
    return [
        message(template(258, UPTIME_ONLY), template(256, NO_TIMES)),
        message(
            data(
                258,
                struct.pack(
                    uptime,
                    4,
                    5000,
                    9000,
                    3,
                    180,
                    53000,
                    53,
                    1,
                    2,
                    17,
                    0,
                    0x0A0A0A01,
                    0x08080808,
                    0,
                    0,
                    0,
                ),
                struct.pack(
                    uptime,
                    4,
                    6000,
                    9500,
                    5,
                    900,
                    40000,
                    443,
                    1,
                    2,
                    6,
                    0x1B,
                    0x0A0A0A01,
                    0x01010101,
                    0,
                    0,
                    0,
                ),
            ),
            data(256, struct.pack(">IIHHBII", 0x0A000005, 0x0A000006, 5353, 53, 17, 1, 81)),
        ),
    ]


# fixtures/nfcapd171_cisco_dual_stack.nfcapd: these IPFIX messages, collected live
DUAL_STACK_EXPORT_S = 1_796_412_000
DUAL_STACK = [
    (27, 16),
    (28, 16),
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (2, 8),
    (1, 8),
    (152, 8),
    (153, 8),
]  # Cisco ASR 9000's template 313: both families
FOUR_IN_SIX = [
    (2, 8),
    (1, 8),
    (27, 16),
    (28, 16),
    (152, 8),
    (153, 8),
    (7, 2),
    (11, 2),
    (4, 1),
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
]  # IOS-XR SRv6, template 340
SIX_IN_SIX = [
    (2, 8),
    (1, 8),
    (27, 16),
    (28, 16),
    (152, 8),
    (153, 8),
    (7, 2),
    (11, 2),
    (4, 1),
    (27, 16),
    (28, 16),
    (7, 2),
    (11, 2),
    (4, 1),
]  # template 341


def dual_stack_messages() -> list[bytes]:
    """Our own values in the layouts of pmacct's Cisco ASR 9000 and IOS-XR SRv6 captures."""

    def message(sequence: int, *sets: bytes) -> bytes:
        return ipfix_message(DUAL_STACK_EXPORT_S, *sets, sequence=sequence)

    template, data = ipfix_template, ipfix_data

    def v6(text: str) -> bytes:
        return ipaddress.IPv6Address(text).packed

    def v4(text: str) -> bytes:
        return ipaddress.IPv4Address(text).packed

    ms = DUAL_STACK_EXPORT_S * 1000
    times = struct.pack(">QQ", ms - 60_000, ms - 1_000)
    no_v6, no_v4 = b"\0" * 32, b"\0" * 8
    return [
        message(
            0, template(313, DUAL_STACK), template(340, FOUR_IN_SIX), template(341, SIX_IN_SIX)
        ),
        message(
            0,
            data(
                313,
                no_v6
                + v4("138.187.58.13")
                + v4("138.187.57.33")
                + struct.pack(">HHB", 10000, 58779, 6)
                + struct.pack(">QQ", 1, 60)
                + times,
                v6("2a02:a90:4007::11:1")
                + v6("2001:db8:90::1")
                + no_v4
                + struct.pack(">HHB", 10005, 10005, 6)
                + struct.pack(">QQ", 6, 444)
                + times,
            ),
        ),
        message(
            2,
            data(
                340,
                struct.pack(">QQ", 600, 134400)
                + v6("2001:db8:91::1")
                + v6("2001:db8:90:e002::")
                + times
                + struct.pack(">HHB", 0, 0, 4)
                + v4("192.0.2.13")
                + v4("192.0.2.12")
                + struct.pack(">HHB", 1111, 2222, 17),
            ),
            data(
                341,
                struct.pack(">QQ", 600, 146400)
                + v6("2001:db8:91::1")
                + v6("2001:db8:90:e003::")
                + times
                + struct.pack(">HHB", 0, 0, 41)
                + v6("2001:db8::13")
                + v6("2001:db8::12")
                + struct.pack(">HHB", 2222, 1111, 17),
            ),
        ),
    ]


def test_dual_stack_and_tunnel_records_read_from_nfcapd_as_from_their_export() -> None:
    """Found by auditing pmacct's Cisco captures: nfcapd 1.7 stores both address elements for
    a template with both families, the unused family zero, and the reader took the IPv6 one
    whenever it was there: every IPv4 flow of an ASR 9000 became :: -> ::, and a 4-in-6
    tunnel's the tunnel's endpoints. Now each record reads as the export reader reads the
    datagram: its own family, a tunnel's inner packet."""
    from obserae_forensics.readers import discover_inputs, read_flows
    from obserae_forensics.readers.datagrams import Datagram
    from obserae_forensics.readers.exports import ExportDecoder

    path = FIXTURES / "nfcapd171_cisco_dual_stack.nfcapd"
    report = RunReport()
    table = pa.Table.from_batches(list(read_flows(discover_inputs([path], report), report)))
    decoder = ExportDecoder(RunReport())
    batches = decoder.feed(
        [
            Datagram(m, "127.0.0.1", 40000, 2055, i + 1, 24, 0, "x")
            for i, m in enumerate(dual_stack_messages())
        ]
    )
    exported = pa.Table.from_batches([*batches, *decoder.finish()])
    compared = [
        "first_seen",
        "last_seen",
        "src_addr",
        "dst_addr",
        "ip_version",
        "src_port",
        "dst_port",
        "protocol",
        "packets",
        "octets",
    ]
    rows = table.select(compared).to_pylist()
    assert rows == exported.select(compared).to_pylist()
    assert [
        (
            *address_texts([r["src_addr"], r["dst_addr"]]),
            r["src_port"],
            r["protocol"],
            r["ip_version"],
        )
        for r in rows
    ] == [
        ("138.187.58.13", "138.187.57.33", 10000, 6, 4),
        ("2a02:a90:4007::11:1", "2001:db8:90::1", 10005, 6, 6),
        ("192.0.2.13", "192.0.2.12", 1111, 17, 4),
        ("2001:db8::13", "2001:db8::12", 2222, 17, 6),
    ]
    assert not report.skipped and not report.repaired


def test_records_nfcapd_stored_without_times_are_placed_at_their_receive_time() -> None:
    """An exporter that sends no time nfcapd can use (Mikrotik's uptimes without
    systemInitTime, a template without flow times) has every record stored with both times
    0: all of them were left out as `no_times`. The export reader places them at their
    datagram's export time; from nfcapd they now land at their receive time."""
    from obserae_forensics.readers import discover_inputs, read_flows
    from obserae_forensics.readers.datagrams import Datagram
    from obserae_forensics.readers.exports import ExportDecoder

    path = FIXTURES / "nfcapd171_timeless_ipfix.nfcapd"
    if shutil.which("nfdump"):  # the file holds 0 for every time
        out = subprocess.run(
            ["nfdump", "-r", str(path), "-q", "-o", "fmt:%ts|%te"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.splitlines() == ["1970-01-01 00:00:00.000|1970-01-01 00:00:00.000"] * 3
    report = RunReport()
    table = pa.Table.from_batches(list(read_flows(discover_inputs([path], report), report)))
    assert report.repaired == {"receive_time": 3} and not report.skipped
    firsts = table.column("first_seen").cast("int64").to_pylist()
    assert firsts == table.column("last_seen").cast("int64").to_pylist()
    assert firsts == table.column("arrival").cast("int64").to_pylist()
    # the export reader of the same messages: their export time, a second of the receive
    decoder = ExportDecoder(RunReport())
    batches = decoder.feed(
        [
            Datagram(m, "127.0.0.1", 40000, 2055, i + 1, 24, firsts[0], "x")
            for i, m in enumerate(timeless_messages())
        ]
    )
    exported = pa.Table.from_batches([*batches, *decoder.finish()])
    assert (
        exported.select(["packets", "octets", "src_port"]).to_pylist()
        == table.select(["packets", "octets", "src_port"]).to_pylist()
    )
    for ours, theirs in zip(
        firsts, exported.column("first_seen").cast("int64").to_pylist(), strict=True
    ):
        assert abs(ours - theirs) < 2_000_000


def test_the_layer2_ip_version_decides_a_record_with_both_families() -> None:
    """Found by auditing nfdump's own test generator: nfcapd 1.7.8 keeps the flow's IP
    version in EXlayer2, and nfdump 1.7.8 shows the IPv6 addresses of a record that has
    both families filled when it says 6 (a 6-in-4 tunnel's inner packet); we took IPv4
    whenever it was there. Without the element, or with one address family blank, the
    rule stands: IPv4 unless blank."""
    import numpy as np

    from obserae_forensics.addresses import address_text
    from obserae_forensics.readers.nfcapd_v3 import RECORD_HEADER_SIZE, decode_layout, layout_for

    with_l2 = ((1, 52), (2, 12), (3, 36), (38, 36))
    cases = (
        (with_l2, 6, 0x0A000001, 6),
        (with_l2, 4, 0x0A000001, 4),
        (with_l2, 6, 0, 6),
        (with_l2[:3], 6, 0x0A000001, 4),
    )
    for elements, version, v4, expected in cases:
        size = RECORD_HEADER_SIZE + sum(length for _, length in elements)
        layout = layout_for(elements, size, False)
        rows = np.zeros(2, dtype=layout.dtype)
        rows["src4"], rows["dst4"] = v4, v4 + 1
        rows["src6_hi"], rows["src6_lo"] = 0x20010DB8 << 32, 1
        rows["dst6_hi"], rows["dst6_lo"] = 0x20010DB8 << 32, 2
        if "l2_ip_version" in layout.fields:
            rows["l2_ip_version"] = version
        out = decode_layout(rows, layout)
        assert out["ip_version"].tolist() == [expected, expected], (elements, version, v4)
        assert address_text(out["src_addr"][0].tobytes()) == (
            "2001:db8::1" if expected == 6 else "10.0.0.1"
        )
