"""NetFlow v1 and v7: fprobe's real datagrams against tshark, and the checks that keep
other UDP payloads that begin with 1 or 7 from being read as them."""

from __future__ import annotations

import struct
import subprocess
from collections import Counter
from pathlib import Path

import pyarrow as pa

from obserae_forensics.readers import discover_inputs, read_flows
from obserae_forensics.readers.datagrams import Datagram
from obserae_forensics.readers.exports import ExportDecoder, export_version
from obserae_forensics.readers.netflow_v5 import FORMATS
from obserae_forensics.report import RunReport
from obserae_forensics.schema import FLOW_SCHEMA
from tests.conftest import need_tool

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def read(path: Path) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    batches = list(read_flows(discover_inputs([path], report), report))
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


def fixture_datagrams(name: str, source: str) -> list[Datagram]:
    """The UDP datagrams of a fixture capture, as the capture reader hands them on (the
    offsets stand in for the frames' places)."""
    import dpkt

    datagrams = []
    with open(FIXTURES / name, "rb") as handle:
        for frame, (ts, buf) in enumerate(dpkt.pcap.Reader(handle), 1):
            udp = dpkt.ethernet.Ethernet(buf).data.data
            datagrams.append(
                Datagram(
                    bytes(udp.data),
                    "127.0.0.1",
                    udp.sport,
                    udp.dport,
                    frame,
                    24 * frame,
                    int(ts * 1e6),
                    source,
                )
            )
    return datagrams


def tshark_records(path: Path, port: int) -> Counter[tuple[int, ...]]:
    fields = [
        "cflow.srcport",
        "cflow.dstport",
        "cflow.protocol",
        "cflow.packets",
        "cflow.octets",
        "cflow.tcpflags",
    ]
    listing = subprocess.run(
        [
            need_tool("tshark"),
            "-r",
            str(path),
            "-d",
            f"udp.port=={port},cflow",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=;",
            *(a for f in fields for a in ("-e", f)),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    records: Counter[tuple[int, ...]] = Counter()
    for line in listing.splitlines():
        columns = [column.split(";") for column in line.split("\t")]
        for values in zip(*columns, strict=True):
            records[tuple(int(v, 0) for v in values)] += 1
    return records


def test_fprobe_v1_and_v7_equal_tshark() -> None:
    """Found by running Debian's fprobe (it exports v1, v5 and v7): v1 and v7 datagrams
    were counted as `not_flow_export`, 0 records, where tshark and nfdump read 44 and 34."""
    for name, port, version, totals in (
        ("fprobe_v1.pcap", 29301, 1, (44, 220, 78606)),
        ("fprobe_v7.pcap", 29307, 7, (34, 170, 60741)),
    ):
        table, report = read(FIXTURES / name)
        rows = table.to_pylist()
        assert (
            len(rows),
            sum(r["packets"] for r in rows),
            sum(r["octets"] for r in rows),
        ) == totals
        assert not report.skipped and not report.ignored
        assert {r["export_version"] for r in rows} == {version}
        ours = Counter(
            (r["src_port"], r["dst_port"], r["protocol"], r["packets"], r["octets"], r["tcp_flags"])
            for r in rows
        )
        assert ours == tshark_records(FIXTURES / name, port)
        stats = report.exporters[("127.0.0.1", 0)]
        assert stats.versions == {version} and stats.datagrams == 2
        # v1 numbers nothing; fprobe's v7 numbering skips 27 flows it never sent, as
        # `nfdump -I` counts one sequence failure
        assert (stats.sequence_gaps, stats.sequence_lost) == ((0, 0) if version == 1 else (1, 27))


def test_v1_and_v7_need_their_exact_length_and_a_clock() -> None:
    """Their version numbers begin many other payloads (a DNS query with id 1 or 7): a
    datagram of another length, a nanosecond field past 10**9, or unused bytes that are not
    zero, is no export."""
    for version in (1, 7):
        fixed = FORMATS[version]
        header = struct.pack(">HHIII", version, 2, 1000, 1_700_000_000, 0)
        header += bytes(fixed.header.size - len(header))
        payload = header + bytes(2 * fixed.record_size)
        assert export_version(payload) == version
        assert export_version(payload + b"\0") == 0
        assert export_version(payload[:-1]) == 0
        late = payload[:12] + struct.pack(">I", 1_000_000_000) + payload[16:]
        assert export_version(late) == 0
        many = payload[:2] + struct.pack(">H", fixed.max_records + 1) + payload[4:]
        assert export_version(many) == 0
        # the unused bytes of the first record (v7: and the reserved header word) are zero:
        # a memcached frame of a v1/v7 length passed the checks above (review)
        unused = fixed.header.size + 46 if version == 7 else fixed.header.size + 44
        assert export_version(payload[:unused] + b"x" + payload[unused + 1 :]) == 0
        flags = fixed.header.size + 40  # v1's tcp_flags, v7's src_as: not unused
        assert export_version(payload[:flags] + b"\x12" + payload[flags + 1 :]) == version
        # and one that is no export stays other traffic, counted as such
        report = RunReport()
        decoder = ExportDecoder(report)
        decoder.feed([Datagram(payload + b"\0", "192.0.2.1", 53000, 53, 1, 24, 0, "x.pcap")])
        assert report.ignored == {"not_flow_export": 1}


def test_a_cut_or_padded_v1_v7_datagram_of_a_known_sender_is_read_and_counted() -> None:
    """Found by review: known by their exact length, a v7 datagram cut short (a snap
    length) after good ones was counted whole as `bad_export_header`, its 14 whole records
    lost; it is read, the cut counted as `truncated`, as v5's is."""
    first, second = fixture_datagrams("fprobe_v7.pcap", "v7.pcap")
    cut = second._replace(payload=second.payload[:-100])
    padded = second._replace(payload=second.payload + bytes(3))
    for damaged, rows, skipped in ((cut, 20 + 12, {"truncated": 1}), (padded, 34, {})):
        report = RunReport()
        decoder = ExportDecoder(report)
        batches = decoder.feed([first, damaged]) + decoder.finish()
        assert sum(b.num_rows for b in batches) == rows
        assert dict(report.skipped) == skipped and not report.ignored


def test_a_damaged_first_datagram_of_a_v1_v7_sender_is_counted_once_it_is_known() -> None:
    """Found by fuzzing: a sender's first v1/v7 datagram with a damaged count fails the
    exact-length check, and nothing before it shows the sender exports: it was counted as
    other traffic (`not_flow_export`, no place given), its records lost without a problem
    counted. Once the same path sends a good datagram of that version, it is
    `bad_export_header` with its file, frame and offset."""
    datagrams = fixture_datagrams("fprobe_v1.pcap", "v1.pcap")
    first = datagrams[0].payload
    damaged = datagrams[0]._replace(payload=first[:2] + bytes([0, first[3] - 1]) + first[4:])
    report = RunReport()
    decoder = ExportDecoder(report)
    batches = decoder.feed([damaged]) + decoder.feed(datagrams[1:]) + decoder.finish()
    assert sum(b.num_rows for b in batches) == 44 - first[3]
    assert dict(report.skipped) == {"bad_export_header": 1} and not report.ignored
    assert report.skipped_bytes["bad_export_header"] == len(first)
    problem = report.examples[0]
    assert (problem.source, problem.frame, problem.offset) == ("v1.pcap", 1, 24)
    assert not report.file("v1.pcap").ignored
    # alone, nothing shows it was an export: other traffic, as a DNS answer would be
    report = RunReport()
    ExportDecoder(report).feed([damaged])
    assert dict(report.ignored) == {"not_flow_export": 1} and not report.skipped


def test_the_damaged_datagrams_remembered_before_a_path_proves_itself_are_bounded() -> None:
    """At most SUSPECTS_PER_PATH per path are moved to problems; the rest stay other
    traffic, as they were (a sender of garbage cannot grow the memory)."""
    from obserae_forensics.readers.exports import SUSPECTS_PER_PATH

    datagrams = fixture_datagrams("fprobe_v1.pcap", "v1.pcap")
    first = datagrams[0].payload
    damaged = [
        datagrams[0]._replace(
            payload=first[:3] + bytes([first[3] - 1]) + first[4:], offset=1_000 + k
        )
        for k in range(SUSPECTS_PER_PATH + 1)
    ]
    report = RunReport()
    decoder = ExportDecoder(report)
    decoder.feed(damaged)
    decoder.feed(datagrams[1:])
    decoder.finish()
    assert dict(report.skipped) == {"bad_export_header": SUSPECTS_PER_PATH}
    assert dict(report.ignored) == {"not_flow_export": 1}


def test_a_v7_datagram_of_30_records_is_read() -> None:
    """Found by an audit: Cisco's v7 header table allows 1-30 records, and nfdump and
    tshark read 30; 29 and 30 were refused whole, `bad_export_header`, and the numbers
    after them counted the records lost."""

    def v7(sequence: int, count: int) -> bytes:
        header = struct.pack(">HHIIIII", 7, count, 1000, 1_700_000_000, 0, sequence, 0)
        return header + bytes(count * FORMATS[7].record_size)

    report = RunReport()
    decoder = ExportDecoder(report)
    payloads = [v7(0, 27), v7(27, 30), v7(57, 29), v7(86, 2)]
    batches = decoder.feed(
        [
            Datagram(p, "192.0.2.1", 53000, 2055, frame, 24, 0, "v7.pcap")
            for frame, p in enumerate(payloads, start=1)
        ]
    )
    batches += decoder.finish()
    assert sum(batch.num_rows for batch in batches) == 88
    (stats,) = report.exporters.values()
    assert (stats.datagrams, stats.sequence_gaps, stats.sequence_lost) == (4, 0, 0)
    assert report.skipped_problems() == 0 and not report.ignored
    assert export_version(v7(0, 30)) == 7 and export_version(v7(0, 31)) == 0


def test_a_copy_of_a_v1_capture_is_dropped_whole() -> None:
    """Found by an audit: v1 numbers nothing, so every datagram was remembered under
    sequence 0, four at most: a copy of a v1 capture read after it (a file beside its
    copy) was decoded again, every counter doubled, and its first datagram's sysUptime,
    going back, counted a restart. Its copies are known by their header clocks."""

    def v1(at: int, first_byte: int) -> bytes:
        header = struct.pack(">HHIII", 1, 3, 100_000 + 1000 * at, 1_700_000_000 + at, 5000)
        return header + b"".join(bytes([10, first_byte, at, k]) + bytes(44) for k in range(3))

    payloads = [v1(at, 1) for at in range(10)]
    # others with the same clocks and other records are no copies: a burst of six in one
    # millisecond pushed each other out of a memory by clocks alone (a review)
    payloads += [v1(9, k) for k in range(2, 8)]
    report = RunReport()
    decoder = ExportDecoder(report)
    batches = decoder.feed(
        [
            Datagram(p, "192.0.2.1", 53000, 2055, frame, 24, 0, "a.pcap")
            for frame, p in enumerate(payloads, start=1)
        ]
    )
    batches += decoder.feed(
        [
            Datagram(p, "192.0.2.1", 53000, 2055, frame, 24, 0, "b.pcap")
            for frame, p in enumerate(payloads, start=1)
        ]
    )
    batches += decoder.finish()
    assert sum(batch.num_rows for batch in batches) == 48
    (stats,) = report.exporters.values()
    assert (stats.datagrams, stats.duplicates, stats.restarts) == (16, 16, 0)
