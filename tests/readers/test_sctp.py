"""IPFIX over SCTP in a capture (sctp.py). No exporter could be run over SCTP here (the
machine's kernel has no SCTP sockets), so the messages are a real exporter's: those of the
IPFIX-over-TCP fixture (fixtures/README.md), put into SCTP DATA chunks as RFC 7011 §10.2
and RFC 9260 send them (one message per user message; fragments of consecutive TSNs;
chunks bundled; retransmissions; control chunks). tshark decodes the same capture."""

from __future__ import annotations

import json
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.sctp import (
    SCTP,
    SCTPChunkData,
    SCTPChunkInit,
    SCTPChunkSACK,
)
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap
from typer.testing import CliRunner

from obserae_forensics.addresses import address_text
from obserae_forensics.cli import app
from obserae_forensics.readers import discover_inputs, read_flows, sctp
from obserae_forensics.readers.sctp import TSN_SPACE
from obserae_forensics.report import RunReport
from obserae_forensics.schema import FLOW_SCHEMA
from tests.conftest import need_tool

from .test_ipfix import EXPORT_S, template
from .test_ipfix import data as ipfix_data
from .test_ipfix import message as ipfix_message
from .test_tcp_streams import FIXTURE, exported_stream, read, records

EXPORTER, COLLECTOR = "192.0.2.9", "198.51.100.7"
PORT = 33_000


def messages() -> list[bytes]:
    """The real exporter's IPFIX messages, in the order it sent them."""
    stream, _, _ = exported_stream()
    out, at = [], 0
    while at < len(stream):
        (length,) = struct.unpack_from(">H", stream, at + 2)
        out.append(stream[at : at + length])
        at += length
    return out


def data(
    tsn: int,
    payload: bytes,
    *,
    begin: bool = True,
    end: bool = True,
    stream: int = 0,
    protocol: int = 0,
) -> SCTPChunkData:
    return SCTPChunkData(
        tsn=tsn,
        stream_id=stream,
        stream_seq=0,
        proto_id=protocol,
        data=payload,
        beginning=int(begin),
        ending=int(end),
    )


def packet(
    *chunks: Packet,
    sport: int = PORT,
    dport: int = 4739,
    src: str = EXPORTER,
    dst: str = COLLECTOR,
    tag: int = 7,
) -> Packet:
    layer = SCTP(sport=sport, dport=dport, tag=tag)
    for chunk in chunks:
        layer = layer / chunk
    return IP(src=src, dst=dst) / layer


def write(path: Path, packets: list[Packet]) -> Path:
    for k, p in enumerate(packets):
        p.time = 1_700_000_000 + k / 1000
    wrpcap(str(path), packets)
    return path


def sent(parts: list[list[tuple[int, bytes, bool, bool]]]) -> list[Packet]:
    """Packets of (tsn, bytes, begin, end) chunks, after the association's INIT, each
    acknowledged by the collector (SACKs are other traffic)."""
    out = [packet(SCTPChunkInit(init_tag=7, n_in_streams=1, n_out_streams=1, init_tsn=1))]
    for chunks in parts:
        out.append(packet(*(data(tsn, b, begin=s, end=e) for tsn, b, s, e in chunks)))
        out.append(
            packet(
                SCTPChunkSACK(cumul_tsn_ack=chunks[-1][0]),
                sport=4739,
                dport=PORT,
                src=COLLECTOR,
                dst=EXPORTER,
            )
        )
    return out


def chunked(cuts: list[list[int]], bundle: list[int]) -> list[list[tuple[int, bytes, bool, bool]]]:
    """Each message cut at `cuts[i]` into fragments of consecutive TSNs; `bundle[k]` chunks
    in the k-th packet (the rest one per packet)."""
    chunks, tsn = [], 1
    for message, at in zip(messages(), cuts, strict=True):
        bounds = [0, *sorted(set(at)), len(message)]
        for k in range(len(bounds) - 1):
            chunks.append((tsn, message[bounds[k] : bounds[k + 1]], k == 0, k == len(bounds) - 2))
            tsn += 1
    parts, at = [], 0
    for size in [*bundle, *[1] * len(chunks)]:
        if at >= len(chunks):
            break
        parts.append(chunks[at : at + size])
        at += size
    return parts


def test_ipfix_over_sctp_reads_as_over_tcp_and_as_tshark_reads_it(tmp_path: Path) -> None:
    """Before, every record of an SCTP export was lost as `not_udp`, without a word."""
    count = len(messages())
    cuts = [[] for _ in range(count)]
    cuts[3] = [40, 41, 300]  # a message in four fragments
    parts = chunked(cuts, [2, 1, 3])  # two messages bundled, one, three fragments bundled
    packets = sent(parts)
    packets.insert(6, packets[5].copy())  # the packet of three fragments retransmitted
    path = write(tmp_path / "sctp.pcap", packets)

    table, report = read(path)
    expected, _ = read(FIXTURE)
    assert records(table) == records(expected) and table.num_rows == 210
    assert not report.skipped
    retransmitted = sum(len(c[1]) for c in parts[2])
    assert dict(report.ignored) == {"not_udp": 1 + len(parts), "sctp_retransmission": 3}
    assert report.ignored_bytes["sctp_retransmission"] == retransmitted
    assert set(table.column("exporter").to_pylist()) == {EXPORTER}
    frames = table.column("source_frame").to_pylist()
    assert frames == sorted(frames)

    listing = subprocess.run(
        [
            need_tool("tshark"),
            "-r",
            str(path),
            "-T",
            "fields",
            "-e",
            "cflow.srcaddr",
            "-e",
            "cflow.srcaddrv6",
            "-e",
            "cflow.packets",
            "-e",
            "cflow.octets",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    theirs: Counter[tuple[str, int, int]] = Counter()
    for line in listing.splitlines():
        v4, v6, packet_counts, octets = line.split("\t")
        for src, p, o in (
            zip((v4 or v6).split(","), packet_counts.split(","), octets.split(","), strict=True)
            if packet_counts
            else ()
        ):
            theirs[(src, int(p), int(o))] += 1
    ours = Counter(
        (address_text(r["src_addr"]), r["packets"], r["octets"]) for r in table.to_pylist()
    )
    assert ours == theirs and sum(theirs.values()) == 210


@settings(max_examples=40, deadline=None)
@given(draw=st.data())
def test_any_fragmenting_bundling_and_retransmission_gives_the_same_records(
    draw: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    found = messages()
    cuts = [draw.draw(st.lists(st.integers(1, len(m) - 1), max_size=3)) for m in found]
    bundle = draw.draw(st.lists(st.integers(1, 4), max_size=10))
    parts = chunked(cuts, bundle)
    packets = [
        packet(*(data(tsn, b, begin=s, end=e) for tsn, b, s, e in chunks)) for chunks in parts
    ]
    if len(packets) > 1 and draw.draw(st.booleans()):  # two packets of fragments swapped
        k = draw.draw(st.integers(0, len(packets) - 2))
        if all(not (s and e) for p in parts[k : k + 2] for _, _, s, e in p):
            packets[k : k + 2] = packets[k : k + 2][::-1]
    for _ in range(draw.draw(st.integers(0, 5))):  # copies, sent again after the original
        k = draw.draw(st.integers(0, len(packets) - 1))
        packets.insert(draw.draw(st.integers(k + 1, len(packets))), packets[k].copy())
    table, report = read(write(tmp_path_factory.mktemp("sctp") / "cut.pcap", packets))
    expected, _ = read(FIXTURE)
    assert records(table) == records(expected) and table.num_rows == 210
    assert not report.skipped


def test_damage_and_other_protocols_are_counted(tmp_path: Path) -> None:
    first, second, *_ = messages()
    packets = [
        packet(data(1, first)),
        # Diameter (46) on its port: another protocol's traffic
        packet(data(9, b"\x01\x00\x00\x14" + bytes(16), protocol=46), sport=3868, dport=3868),
        # off the IPFIX ports a payload protocol of 0 is read when it begins with a whole
        # IPFIX message: S1AP's Paging begins 00 0a, IPFIX's version, but is none
        packet(data(5, b"\x00\x0a\x40\x33" + bytes(53)), sport=36412, dport=36412),
        # a chunk claiming more than its packet holds
        packet(data(2, second[:20]) / bytes(4), sport=PORT),
        # the first fragment of a message whose rest never came
        packet(data(3, second[:50], end=False)),
        # an I-DATA chunk (RFC 8260) on the IPFIX port: not read, counted
        packet(Raw(struct.pack(">BBHIHHII", 64, 3, 20 + len(first), 4, 0, 0, 0, 0) + first)),
    ]
    raw = bytes(packets[3])
    packets[3] = IP(raw[: 20 + 12 + 2] + struct.pack(">H", 200) + raw[20 + 12 + 4 :])
    table, report = read(write(tmp_path / "damaged.pcap", packets))
    alone, _ = read(write(tmp_path / "first.pcap", packets[:1]))
    assert records(table) == records(alone) and table.num_rows == 28
    assert dict(report.skipped) == {
        "bad_sctp_chunk": 1,
        "incomplete_fragments": 1,
        "sctp_idata_unread": 1,
    }
    assert dict(report.ignored) == {"not_udp": 2}
    where = {p.reason: (p.frame, p.offset) for p in report.examples}
    assert where["bad_sctp_chunk"][0] == 4 and where["incomplete_fragments"][0] == 5


def test_exporting_an_sctp_conversation_writes_its_flows(tmp_path: Path) -> None:
    """A message's frame may hold only its last fragment: the records go to the flows file
    beside the capture, as those of IPFIX over TCP do."""
    path = write(tmp_path / "sctp.pcap", sent(chunked([[] for _ in messages()], [])))
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["sessionize", str(path), "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["counts"]["records_read"] == 210
    session = pq.read_table(run / "sessions.parquet").column("session_id")[5].as_py()
    result = runner.invoke(
        app,
        ["recombine", str(run), "--session", session, "--export-pcap", str(tmp_path / "one.pcap")],
    )
    assert result.exit_code == 0, result.output
    assert "came in IPFIX messages over TCP or SCTP" in result.output + result.stderr
    flows = pq.read_table(tmp_path / "one.flows.parquet")
    assert set(flows.column("session_id").to_pylist()) == {session}


def test_fragments_that_never_begin_are_given_up_on_and_counted(tmp_path: Path) -> None:
    """Middle fragments without a first one cannot make a message; held without bound,
    every new one would walk all the others back."""
    packets = [packet(data(tsn, b"x" * 10, begin=False, end=False)) for tsn in range(300)]
    table, report = read(write(tmp_path / "middles.pcap", packets))
    assert table.num_rows == 0
    # past 256 held, the oldest 129 given up; 171 at the end
    assert dict(report.skipped) == {"incomplete_fragments": 2}
    assert report.skipped_bytes["incomplete_fragments"] == 3000


def v6_packet(*chunks: Packet) -> Packet:
    layer = SCTP(sport=PORT, dport=4739, tag=7)
    for chunk in chunks:
        layer = layer / chunk
    return IPv6(src="2001:db8::9", dst="2001:db8::7") / layer


def test_ipv6_ip_fragments_and_a_tsn_wrap_read_alike_in_any_batch(tmp_path: Path) -> None:
    found = messages()
    packets, tsn = [], TSN_SPACE - 2  # the TSNs wrap inside the fragmented message
    for k, message in enumerate(found):
        if k == 2:
            parts = [message[:100], message[100:200], message[200:300], message[300:]]
            for j, part in enumerate(parts):
                packets.append(v6_packet(data(tsn % TSN_SPACE, part, begin=j == 0, end=j == 3)))
                tsn += 1
        elif k == 5:  # two messages in one SCTP packet, cut into IPv6 fragments
            whole = v6_packet(data(tsn % TSN_SPACE, message), data((tsn + 1) % TSN_SPACE, found[6]))
            packets += fragment6(
                IPv6(src="2001:db8::9", dst="2001:db8::7")
                / IPv6ExtHdrFragment(id=5)
                / whole[IPv6].payload,
                700,
            )
            tsn += 2
        elif k != 6:
            packets.append(v6_packet(data(tsn % TSN_SPACE, message)))
            tsn += 1
    path = write(tmp_path / "v6.pcap", packets)
    expected, _ = read(FIXTURE)
    tables = []
    for batch_size in (16, 65_536):
        report = RunReport()
        tables.append(
            pa.Table.from_batches(
                list(read_flows(discover_inputs([path], report), report, batch_size=batch_size)),
                schema=FLOW_SCHEMA,
            )
        )
        assert not report.skipped
    assert records(tables[0]) == records(expected) and tables[0].equals(tables[1])


@pytest.mark.parametrize("tags", [(9, 11), (9, 9)])
def test_a_new_association_on_the_same_ports_is_read_afresh(
    tmp_path: Path, tags: tuple[int, int]
) -> None:
    """The collector opens the association (roles reversed: the exporter sends from 4739),
    twice, and the exporter numbers its TSNs from 1 each time. Before, the second
    association's messages were taken for retransmissions of the first's: records lost,
    counted as no problem. Its verification tag tells the new association (with its start
    not in the capture); a tag used again is new from the INIT that gives it."""
    found = messages()
    packets: list[Packet] = []
    for tag, sent_now in zip(tags, (found[:5], found[5:]), strict=True):
        if tag == tags[0] == tags[1] or sent_now is found[:5]:
            packets.append(
                packet(
                    SCTPChunkInit(init_tag=tag, n_in_streams=1, n_out_streams=1, init_tsn=1),
                    sport=40_001,
                    dport=4739,
                    src=COLLECTOR,
                    dst=EXPORTER,
                    tag=0,
                )
            )
            packets.append(
                packet(
                    Raw(struct.pack(">BBHIIHHI", 2, 0, 20, 77, 65_536, 1, 1, 1)),
                    sport=4739,
                    dport=40_001,
                    tag=tag,
                )
            )
        for k, one in enumerate(sent_now):
            packets.append(
                IP(src=EXPORTER, dst=COLLECTOR)
                / SCTP(sport=4739, dport=40_001, tag=tag)
                / data(1 + k, one)
            )
    table, report = read(write(tmp_path / "again.pcap", packets))
    expected, over_tcp = read(FIXTURE)
    assert records(table) == records(expected) and table.num_rows == 210
    assert "sctp_retransmission" not in report.ignored and not report.skipped
    # python-ipfix numbers domain 2 150, 19, 39, 59: 3 reorders over SCTP, whose messages
    # may come unordered; over TCP, which keeps the order they were sent in, the exporter
    # numbering afresh (1 restart, no reorder)
    assert sequence(report) == [(0, 0, 0), (3, 0, 0)]
    assert sequence(over_tcp) == [(0, 0, 0), (0, 0, 0)]
    assert [stats.restarts for _, stats in sorted(over_tcp.exporters.items())] == [0, 1]


FIELDS = [
    (8, 4, 0),
    (12, 4, 0),
    (4, 1, 0),
    (7, 2, 0),
    (11, 2, 0),
    (1, 8, 0),
    (2, 8, 0),
    (152, 8, 0),
    (153, 8, 0),
]


def flow(i: int) -> bytes:
    """Record `i` of template 300 (FIELDS): a flow of its own."""
    return (
        bytes([10, 0, i // 200 % 256, i % 200 + 1])
        + bytes([10, 1, 0, 1])
        + struct.pack(
            ">BHHQQQQ",
            6,
            1_000 + i % 60_000,
            80,
            100,
            1,
            EXPORT_S * 1000 - 5_000 + i,
            EXPORT_S * 1000 - 4_000 + i,
        )
    )


def sequence(run: RunReport) -> list[tuple[int, int, int]]:
    """(reorders, gaps, records lost) of each exporter row."""
    return [
        (stats.reorders, stats.sequence_gaps, stats.sequence_lost)
        for _, stats in sorted(run.exporters.items())
    ]


def test_an_association_that_starts_again_is_a_new_transport_session(tmp_path: Path) -> None:
    """An exporter restarted, or a collector opening a new association: its numbering and
    templates start again (RFC 7011 §8, §10.2). Taken for the same session, the restart
    read as reorders."""
    packets, sent = [], 0
    for tag, collector_port in ((9, 40_001), (12, 40_002)):
        chunks = [ipfix_message(template(300, FIELDS), sequence=0)]
        for k in range(8):
            chunks.append(
                ipfix_message(
                    ipfix_data(300, *[flow(sent + j) for j in range(20)]), sequence=20 * k
                )
            )
            sent += 20
        packets += [
            IP(src=EXPORTER, dst=COLLECTOR)
            / SCTP(sport=4739, dport=collector_port, tag=tag)
            / data(5 + k, one)
            for k, one in enumerate(chunks)
        ]
    table, report = read(write(tmp_path / "restart.pcap", packets))
    assert table.num_rows == sent == 320
    assert sequence(report) == [(0, 0, 0)]


@pytest.mark.parametrize("per_stream", [True, False])
def test_sequence_numbers_per_sctp_stream_or_per_session_are_no_gaps(
    tmp_path: Path, per_stream: bool
) -> None:
    """RFC 7011 §3.1 counts the records sent on each SCTP stream; libfixbuf counts those of
    the session, its templates on stream 0 and data on stream 1 (a template refresh on
    stream 0 carries the session's count). Either numbering is no loss."""
    packets = [packet(data(1, ipfix_message(template(300, FIELDS), sequence=0)))]
    counted, sent = {0: 0, 1: 0}, 0
    for k in range(10):
        stream = k % 2
        size = 5 if stream == 0 else 20
        number = counted[stream] if per_stream else sent
        packets.append(
            packet(
                data(
                    2 + 2 * k,
                    ipfix_message(
                        ipfix_data(300, *[flow(sent + j) for j in range(size)]), sequence=number
                    ),
                    stream=stream,
                )
            )
        )
        if not per_stream and k % 3 == 2:  # a template refresh on stream 0
            packets.append(
                packet(
                    data(
                        3 + 2 * k,
                        ipfix_message(template(300, FIELDS), sequence=sent + size),
                        stream=0,
                    )
                )
            )
        counted[stream] += size
        sent += size
    table, report = read(write(tmp_path / "streams.pcap", packets))
    assert table.num_rows == sent == 125
    assert sequence(report) == [(0, 0, 0)]


def test_stray_control_chunks_and_a_late_copy_leave_the_live_association_be(tmp_path: Path) -> None:
    """An ABORT or SHUTDOWN COMPLETE out of the blue (T bit, another association's tag), an
    INIT ACK answering a duplicate INIT, and a late copy from the association before: none
    ends the live one, whose message being put together completes."""
    first, second = messages()[:2]
    half = len(second) // 2
    strays = [
        packet(Raw(struct.pack(">BBH", 6, 1, 4)), tag=99),  # ABORT, T=1
        packet(Raw(struct.pack(">BBH", 14, 1, 4)), tag=99),  # SHUTDOWN COMPLETE, T=1
        packet(Raw(struct.pack(">BBHIIHHI", 2, 0, 20, 5, 65_536, 1, 1, 1))),  # INIT ACK
        IP(src=EXPORTER, dst=COLLECTOR) / SCTP(sport=PORT, dport=4739, tag=3) / data(2, first),
    ]
    packets = [
        packet(data(1, first)),
        packet(data(2, second[:half], end=False)),
        *strays,
        packet(data(3, second[half:], begin=False)),
    ]
    table, report = read(write(tmp_path / "strays.pcap", packets))
    alone, _ = read(
        write(tmp_path / "alone.pcap", [packet(data(1, first)), packet(data(2, second))])
    )
    assert records(table) == records(alone) and not report.skipped


def test_held_fragments_are_given_up_oldest_first(tmp_path: Path) -> None:
    """Fragments of messages whose first fragment the capture missed pile up; past the
    bound the oldest go, not the message being put together (it was lost with them)."""
    packets, tsn = [], 1
    for _ in range(85):
        tsn += 1  # the first fragment, not captured
        for j in range(3):
            packets.append(packet(data(tsn, b"o" * 300, begin=False, end=j == 2)))
            tsn += 1
    first = messages()[0]
    quarter = -(-len(first) // 4)
    parts = [first[at : at + quarter] for at in range(0, len(first), quarter)]
    for j, part in enumerate(parts):
        packets.append(packet(data(tsn, part, begin=j == 0, end=j == len(parts) - 1)))
        tsn += 1
    table, report = read(write(tmp_path / "orphans.pcap", packets))
    alone, _ = read(write(tmp_path / "alone.pcap", [packet(data(1, first))]))
    assert records(table) == records(alone) and table.num_rows == alone.num_rows > 0
    assert report.skipped_bytes["incomplete_fragments"] == 255 * 300


def test_data_chunks_too_short_on_the_ipfix_port_are_counted(tmp_path: Path) -> None:
    packets = [
        packet(Raw(struct.pack(">BBHIHH", 0, 3, 12, 1, 0, 0))),  # shorter than its header
        packet(Raw(struct.pack(">BBHIHHI", 0, 3, 16, 2, 0, 0, 0))),
    ]  # no user data
    table, report = read(write(tmp_path / "short.pcap", packets))
    assert table.num_rows == 0
    assert dict(report.skipped) == {"bad_sctp_chunk": 2} and not report.ignored
    # both in one packet, and a chunk running past it: each counted (found by fuzzing: the
    # last took the place of the first, whose bytes went uncounted)
    both = packet(
        Raw(
            struct.pack(">BBHIHH", 0, 3, 12, 1, 0, 0)
            + struct.pack(">BBHIHHI", 0, 3, 16, 2, 0, 0, 0)
            + struct.pack(">BBH", 0, 3, 400)
            + b"\x00" * 8
        )
    )
    table, report = read(write(tmp_path / "both.pcap", [both]))
    assert dict(report.skipped) == {"bad_sctp_chunk": 3}
    assert report.skipped_bytes["bad_sctp_chunk"] == 12 + 16 + 12


def test_held_fragments_over_all_associations_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past HELD_TOTAL over every association, the least recently fed gives its up."""
    monkeypatch.setattr(sctp, "HELD_TOTAL", 2_500)
    packets = [packet(data(1, b"a" * 1_000, end=False), sport=PORT + port) for port in range(3)]
    table, report = read(write(tmp_path / "held.pcap", packets))
    assert table.num_rows == 0
    # the first association's 1,000 bytes at the third; the other two at the end
    assert report.skipped == {"incomplete_fragments": 3}
    assert [p.frame for p in report.examples] == [1, 2, 3]


FIELDS_SWAPPED = [
    (12, 4, 0),
    (8, 4, 0),
    (4, 1, 0),
    (11, 2, 0),
    (7, 2, 0),
    (2, 8, 0),
    (1, 8, 0),
    (152, 8, 0),
    (153, 8, 0),
]  # same length, each pair swapped


def flows_of(table: pa.Table) -> list[tuple[str, int, int]]:
    return [(address_text(r["src_addr"]), r["src_port"], r["octets"]) for r in table.to_pylist()]


def test_an_association_goes_on_into_the_next_capture_file(tmp_path: Path) -> None:
    """A collector's rotated captures cut associations. Found by review: the association
    numbering restarted in each file, so file B's data of the live association took the
    slot, and the template, of a dead association of file A (its columns swapped)."""
    first = [
        packet(data(1, ipfix_message(template(300, FIELDS_SWAPPED))), tag=1),
        packet(data(1, ipfix_message(template(300, FIELDS))), tag=2),
        packet(data(2, ipfix_message(ipfix_data(300, flow(0)), sequence=0)), tag=2),
    ]
    second = [packet(data(3, ipfix_message(ipfix_data(300, flow(1)), sequence=1)), tag=2)]
    paths = [write(tmp_path / "a.pcap", first), write(tmp_path / "b.pcap", second)]
    report = RunReport()
    table = pa.Table.from_batches(
        list(read_flows(discover_inputs(paths, report), report)), schema=FLOW_SCHEMA
    )
    assert flows_of(table) == [("10.0.0.1", 1_000, 100), ("10.0.0.2", 1_001, 100)]
    assert sequence(report) == [(0, 0, 0)]


def test_a_slot_taken_again_starts_afresh_and_a_live_association_keeps_its_own(
    tmp_path: Path,
) -> None:
    """Found by review: one exporter port, 66 associations one after another, each
    numbered from 0 with the same template message, and one association live beside 63
    that come and go. A slot taken again kept the dead association's numbering (reorders),
    and the live association's slot was handed to another (its data read with that one's
    template)."""
    packets, tsn, sent = [], 1, 0
    for tag in range(1_000, 1_066):
        packets.append(packet(data(tsn, ipfix_message(template(300, FIELDS))), tag=tag))
        for number in (0, 10):
            packets.append(
                packet(
                    data(
                        tsn + 1 + number // 10,
                        ipfix_message(
                            ipfix_data(300, *[flow(sent + j) for j in range(10)]), sequence=number
                        ),
                        stream=1,
                    ),
                    tag=tag,
                )
            )
            sent += 10
        tsn += 3
    table, report = read(write(tmp_path / "churn.pcap", packets))
    assert table.num_rows == sent == 1_320
    assert sequence(report) == [(0, 0, 0)] and not report.skipped

    live = {"dport": 40_000, "tag": 1, "sport": 4739}
    packets = [
        packet(data(1, ipfix_message(template(300, FIELDS))), **live),
        packet(data(2, ipfix_message(ipfix_data(300, flow(0)), sequence=0)), **live),
    ]
    for k in range(64):
        packets.append(
            packet(
                data(1, ipfix_message(template(300, FIELDS_SWAPPED))),
                sport=4739,
                dport=41_000 + k,
                tag=2 + k,
            )
        )
    packets.append(packet(data(3, ipfix_message(ipfix_data(300, flow(1)), sequence=1)), **live))
    table, report = read(write(tmp_path / "live.pcap", packets))
    assert flows_of(table) == [("10.0.0.1", 1_000, 100), ("10.0.0.2", 1_001, 100)]


@pytest.mark.parametrize(
    "lost,expected",
    [
        (None, (0, 0, 0)),  # nothing lost
        ((1, 30), (0, 1, 10)),  # a message of 10 records on stream 1: one gap of 10
        ((2, 2), (0, 1, 1)),  # a message of 1 record on stream 2: one gap of 1
    ],
)
def test_a_loss_on_one_sctp_stream_is_measured_from_that_stream(
    tmp_path: Path, lost: tuple[int, int] | None, expected: tuple[int, int, int]
) -> None:
    """Found by review: a loss on a stream numbered on its own (RFC 7011 §3.1) was measured
    from the other stream's count (36 lost for 10), or taken for a reorder from then on."""
    # stream 1 numbers 10-record messages, stream 2 1-record ones, each on its own
    sent = [
        (stream, number * (10 if stream == 1 else 1)) for number in range(5) for stream in (1, 2)
    ]
    packets = [packet(data(1, ipfix_message(template(300, FIELDS), template(301, FIELDS))))]
    for k, (stream, number) in enumerate(sent):
        if (stream, number) == lost:
            continue
        size, template_id = (10, 300) if stream == 1 else (1, 301)
        packets.append(
            packet(
                data(
                    2 + k,
                    ipfix_message(
                        ipfix_data(
                            template_id, *[flow(100 * stream + number + j) for j in range(size)]
                        ),
                        sequence=number,
                    ),
                    stream=stream,
                )
            )
        )
    _, report = read(write(tmp_path / "lanes.pcap", packets))
    assert sequence(report) == [expected]


def test_a_loss_before_a_stream_s_first_message_is_no_start(tmp_path: Path) -> None:
    """Found by review: a stream's first message was taken for the start of its own count
    whatever its number, so libfixbuf's first data message (stream 1; templates on stream
    0, the session counted), lost, went unseen. A first number ahead of the session's count
    is a loss."""

    def message_on(stream: int, start: int, size: int) -> Packet:
        return packet(
            data(
                2 + start,
                ipfix_message(
                    ipfix_data(300, *[flow(start + j) for j in range(size)]), sequence=start
                ),
                stream=stream,
            )
        )

    opening = packet(data(1, ipfix_message(template(300, FIELDS), sequence=0)))
    for stream in (1, 0):  # libfixbuf's data stream, and the same on one stream
        packets = [opening, message_on(stream, 10, 5), message_on(stream, 15, 5)]
        table, report = read(write(tmp_path / f"first{stream}.pcap", packets))
        assert table.num_rows == 10 and sequence(report) == [(0, 1, 10)]


def test_a_message_fragmented_across_two_capture_files_completes(tmp_path: Path) -> None:
    """A rotation cut inside a fragmented message: it was `incomplete_fragments` in both
    files; the held fragments now wait for the next file, and a message the run never
    completes is counted in the file of its first fragment."""
    message = ipfix_message(template(300, FIELDS), ipfix_data(300, flow(0), flow(1)))
    half = len(message) // 2
    first = write(tmp_path / "a.pcap", [packet(data(1, message[:half], end=False))])
    second = write(tmp_path / "b.pcap", [packet(data(2, message[half:], begin=False))])
    report = RunReport()
    table = pa.Table.from_batches(
        list(read_flows(discover_inputs([second, first], report), report)), schema=FLOW_SCHEMA
    )
    assert flows_of(table) == [("10.0.0.1", 1_000, 100), ("10.0.0.2", 1_001, 100)]
    assert not report.skipped
    assert set(table.column("source_file").to_pylist()) == {str(second)}
    # never completed: counted once, where it began
    lone = write(tmp_path / "c.pcap", [packet(data(1, message[:half], end=False), tag=9)])
    report = RunReport()
    list(read_flows(discover_inputs([lone, FIXTURE.parent / "sf_v9_varsvc.pcap"], report), report))
    assert report.skipped == {"incomplete_fragments": 1}
    assert report.examples[0].source == str(lone)
