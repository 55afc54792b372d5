"""IPFIX over TCP in a capture (tcp_streams.py): a real exporter's stream, and the same
bytes cut, reordered, repeated, holed and begun late.

fixtures/ipfix_tcp_python_ipfix.pcap: python-ipfix (Debian python3-ipfix) exporting 210
records over TCP, messages cut across segments (fixtures/README.md). Its records were
`not_udp` before: none read.
"""

from __future__ import annotations

import itertools
import struct
import subprocess
from collections import Counter
from pathlib import Path

import dpkt
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.addresses import address_text
from obserae_forensics.readers import discover_inputs, read_flows
from obserae_forensics.report import RunReport
from obserae_forensics.schema import FLOW_SCHEMA
from tests.conftest import need_tool

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "ipfix_tcp_python_ipfix.pcap"
EXPORTER, COLLECTOR = b"\x7f\x00\x00\x01", b"\x7f\x00\x00\x01"


def read(path: Path) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    batches = list(read_flows(discover_inputs([path], report), report))
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


def records(table: pa.Table) -> Counter[tuple[object, ...]]:
    return Counter(
        (
            address_text(r["src_addr"]),
            address_text(r["dst_addr"]),
            r["src_port"],
            r["dst_port"],
            r["packets"],
            r["octets"],
            r["exporter_domain"],
        )
        for r in table.to_pylist()
    )


def exported_stream() -> tuple[bytes, int, int]:
    """The exporter's bytes in order, its first sequence number and port."""
    data, first, port = b"", None, 0
    with FIXTURE.open("rb") as handle:
        for _, frame in dpkt.pcap.Reader(handle):
            tcp = dpkt.ethernet.Ethernet(frame).data.data
            if tcp.dport != 4739:
                continue
            if tcp.flags & dpkt.tcp.TH_SYN:
                first, port = tcp.seq + 1, tcp.sport
            data += bytes(tcp.data)
    assert first is not None
    return data, first, port


def capture(
    path: Path,
    segments: list[tuple[int, bytes]] | list[tuple[int, bytes, int]],
    port: int,
    *,
    syn: int | None,
    collector_port: int = 4739,
) -> Path:
    """A capture of `segments` (sequence number, bytes[, TCP flags]) from the exporter, in
    that order, after a SYN of sequence number `syn` when given."""
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle)

        def packet(seq: int, payload: bytes, flags: int, when: float) -> None:
            tcp = dpkt.tcp.TCP(sport=port, dport=collector_port, seq=seq, flags=flags, data=payload)
            ip = dpkt.ip.IP(src=EXPORTER, dst=COLLECTOR, p=dpkt.ip.IP_PROTO_TCP, data=tcp)
            ip.len = len(bytes(ip))
            writer.writepkt(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip), when)

        if syn is not None:
            packet(syn, b"", dpkt.tcp.TH_SYN, 1_700_000_000.0)
        for k, (seq, payload, *flags) in enumerate(segments):
            packet(
                seq % (1 << 32),
                payload,
                flags[0] if flags else dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH,
                1_700_000_000.0 + k / 1000,
            )
    return path


def test_ipfix_over_tcp_from_a_real_exporter_equals_tshark() -> None:
    table, report = read(FIXTURE)
    assert table.num_rows == 210 and not report.skipped
    listing = subprocess.run(
        [
            need_tool("tshark"),
            "-r",
            str(FIXTURE),
            "-d",
            "tcp.port==4739,cflow",
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
        v4, v6, packets, octets = line.split("\t")
        if not packets:
            continue  # a message of templates only
        for src, p, o in zip(
            (v4 or v6).split(","), packets.split(","), octets.split(","), strict=True
        ):
            theirs[(src, int(p), int(o))] += 1
    ours = Counter(
        (address_text(r["src_addr"]), r["packets"], r["octets"]) for r in table.to_pylist()
    )
    assert ours == theirs and sum(theirs.values()) == 210
    assert {r["exporter_domain"] for r in table.to_pylist()} == {1, 2}
    # the frames with no exporter bytes (handshake, the collector's ACKs, FINs) are what
    # they were: other traffic
    assert report.ignored == {"not_udp": 24}


@settings(max_examples=60, deadline=None)
@given(draw=st.data())
def test_any_segmentation_order_and_repeats_give_the_same_records(
    draw: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    stream, first, port = exported_stream()
    cuts = sorted(set(draw.draw(st.lists(st.integers(1, len(stream) - 1), max_size=40))))
    bounds = [0, *cuts, len(stream)]
    segments = [(first + a, stream[a:b]) for a, b in itertools.pairwise(bounds)]
    # swap neighbours and repeat some (retransmissions, overlapping copies included)
    for _ in range(draw.draw(st.integers(0, 10))):
        k = draw.draw(st.integers(0, len(segments) - 2)) if len(segments) > 1 else 0
        segments[k : k + 2] = segments[k : k + 2][::-1]
    for _ in range(draw.draw(st.integers(0, 5))):
        seq, payload = segments[draw.draw(st.integers(0, len(segments) - 1))]
        start = draw.draw(st.integers(0, len(payload) - 1))
        segments.insert(draw.draw(st.integers(0, len(segments))), (seq + start, payload[start:]))
    path = capture(tmp_path_factory.mktemp("tcp") / "cut.pcap", segments, port, syn=first - 1)
    table, report = read(path)
    expected, _ = read(FIXTURE)
    assert records(table) == records(expected) and table.num_rows == 210
    assert not report.skipped


def test_a_hole_a_late_start_and_a_cut_end_are_counted(tmp_path: Path) -> None:
    stream, first, port = exported_stream()
    messages, at = [], 0
    while at < len(stream):
        (length,) = struct.unpack_from(">H", stream, at + 2)
        messages.append((at, length))
        at += length
    assert len(messages) == 10
    # a hole inside message 3: it is lost, the others are read
    a3, n3 = messages[3]
    assert n3 == 16 + 4 + 29 * 47  # header, set header, 29 IPv4 records of 47 bytes
    segments = [(first, stream[: a3 + 40]), (first + a3 + 60, stream[a3 + 60 :])]
    table, report = read(capture(tmp_path / "hole.pcap", segments, port, syn=first - 1))
    expected, _ = read(FIXTURE)
    lost = 29
    assert report.skipped["tcp_gap"] == 1 and report.skipped_bytes["tcp_gap"] == 40
    assert table.num_rows == 210 - lost
    assert records(table) <= records(expected)
    # a capture begun inside message 2 (no handshake) on the IPFIX port: resync at 3
    a2, _ = messages[2]
    table, report = read(
        capture(tmp_path / "late.pcap", [(first + a2 + 7, stream[a2 + 7 :])], port, syn=None)
    )
    assert report.skipped["ipfix_stream_resync"] == 1
    assert report.skipped_bytes["ipfix_stream_resync"] == messages[3][0] - a2 - 7
    assert 0 < table.num_rows < 210 and records(table) <= records(expected)
    # a capture that ends inside the last message
    last, _ = messages[-1]
    table, report = read(
        capture(tmp_path / "cut.pcap", [(first, stream[: last + 50])], port, syn=first - 1)
    )
    assert report.skipped["truncated"] == 1 and report.skipped_bytes["truncated"] == 50
    # a collector on another port: IPFIX from the header that a second one follows
    table, report = read(
        capture(tmp_path / "port.pcap", [(first, stream)], port, syn=first - 1, collector_port=2055)
    )
    assert table.num_rows == 210 and not report.skipped
    # one header-like start not followed by another, on another port: other traffic
    fake = stream[:16] + bytes(range(200))
    table, report = read(
        capture(tmp_path / "fake.pcap", [(first, fake)], port, syn=None, collector_port=80)
    )
    assert table.num_rows == 0 and not report.skipped and report.ignored == {"not_udp": 1}
    # the same bytes on a port that is not IPFIX's, with no handshake: other traffic
    table, report = read(
        capture(
            tmp_path / "other.pcap",
            [(first + a2 + 7, stream[a2 + 7 :])],
            port,
            syn=None,
            collector_port=179,
        )
    )
    assert table.num_rows == 0 and not report.skipped and report.ignored == {"not_udp": 1}


def test_a_hole_before_the_second_header_on_another_port_is_counted_not_other_traffic(
    tmp_path: Path,
) -> None:
    """Found by fuzzing: on a collector port other than 4739 a stream is IPFIX once a second
    message header follows the first; a segment lost before that second header (or the
    first data segment lost) made the whole connection other traffic, 210 records unread
    and not a byte counted as lost. With its SYN, bytes beyond the hole that hold a header
    another follows prove it as well."""
    stream, first, port = exported_stream()
    expected, _ = read(FIXTURE)
    size = 700
    segments = [(first + at, stream[at : at + size]) for at in range(0, len(stream), size)]
    for lost in (0, 1):
        kept = segments[:lost] + segments[lost + 1 :]
        table, report = read(
            capture(tmp_path / f"lost{lost}.pcap", kept, port, syn=first - 1, collector_port=18000)
        )
        assert 0 < table.num_rows < 210 and records(table) <= records(expected)
        assert report.skipped["tcp_gap"] == 1
        assert report.ignored == {"not_udp": 1}  # the SYN alone: no bytes of the stream
    # without its SYN nothing fixes where it begins: other traffic, as documented
    table, report = read(
        capture(
            tmp_path / "nosyn.pcap",
            segments[:1] + segments[2:],
            port,
            syn=None,
            collector_port=18000,
        )
    )
    assert table.num_rows == 0 and not report.skipped


def test_a_segment_the_snap_length_cut_is_truncated_where_it_was_cut(tmp_path: Path) -> None:
    """Found by fuzzing: a segment of an IPFIX stream cut by the snap length was counted as
    other traffic (`not_udp`); its frame is `truncated` now, and the bytes of the message
    its loss cuts are counted as ever (`tcp_gap`). A cut segment of a connection not shown
    to be IPFIX stays other traffic (a review: a cut HTTPS connection read as a problem)."""
    stream, first, port = exported_stream()
    size = 700
    segments = [(first + at, stream[at : at + size]) for at in range(0, len(stream), size)]
    whole = capture(tmp_path / "whole.pcap", segments, port, syn=first - 1)
    cut_frame = 7  # the SYN is frame 1
    out = bytearray(whole.read_bytes()[:24])
    with whole.open("rb") as handle:
        for number, (when, frame) in enumerate(dpkt.pcap.Reader(handle), start=1):
            kept = frame[:100] if number == cut_frame else frame
            seconds = int(when)
            out += (
                struct.pack("<IIII", seconds, round((when - seconds) * 1e6), len(kept), len(frame))
                + kept
            )
    path = tmp_path / "snapped.pcap"
    path.write_bytes(bytes(out))
    table, report = read(path)
    assert report.skipped["truncated"] == 1 and report.skipped["tcp_gap"] == 1
    assert "cut by the capture's snap length" in str(report.examples[0])
    assert report.examples[0].frame == cut_frame
    assert report.ignored == {"not_udp": 1}  # the SYN, which carries no stream bytes
    assert 0 < table.num_rows < 210
    noise = bytes((k * 7919 + k // 251) % 256 for k in range(len(stream)))  # no IPFIX
    web = capture(
        tmp_path / "web.pcap",
        [(first + at, noise[at : at + size]) for at in range(0, len(noise), size)],
        port,
        syn=first - 1,
        collector_port=443,
    )
    https = bytearray(web.read_bytes()[:24])
    with web.open("rb") as handle:
        for number, (when, frame) in enumerate(dpkt.pcap.Reader(handle), start=1):
            kept = frame[:100] if number in (2, cut_frame) else frame
            seconds = int(when)
            https += (
                struct.pack("<IIII", seconds, round((when - seconds) * 1e6), len(kept), len(frame))
                + kept
            )
    path.write_bytes(bytes(https))
    table, report = read(path)
    assert table.num_rows == 0 and not report.skipped


def test_retransmitted_segments_are_counted_once_read(tmp_path: Path) -> None:
    """Found by fuzzing: a frame whose bytes were all read already was counted nowhere (IP
    fragments and SCTP chunks count theirs)."""
    stream, first, port = exported_stream()
    size = 700
    segments = [(first + at, stream[at : at + size]) for at in range(0, len(stream), size)]
    twice = [segment for segment in segments for _ in range(2)]
    table, report = read(capture(tmp_path / "twice.pcap", twice, port, syn=first - 1))
    assert table.num_rows == 210 and not report.skipped
    assert report.ignored == {"not_udp": 1, "tcp_retransmission": len(segments)}


def _frame_sizes(path: Path) -> list[int]:
    with path.open("rb") as handle:
        return [len(frame) for _, frame in dpkt.pcap.Reader(handle)]


def test_a_copy_after_the_fin_is_counted_as_a_retransmission(tmp_path: Path) -> None:
    """A helper's audit: bytes the connection read, sent again after its FIN, were read
    once (right) and counted nowhere, where the same copy before the FIN counts as a
    retransmission. Each frame is counted once: the SYN and the FIN as other traffic, the
    copy as a retransmission with its frame's bytes."""
    stream, first, port = exported_stream()
    push, fin = dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK
    segments = [(first, stream, push), (first + len(stream), b"", fin), (first, stream[:700], push)]
    path = capture(tmp_path / "after_fin.pcap", segments, port, syn=first - 1)
    table, report = read(path)
    assert table.num_rows == 210 and not report.skipped
    assert report.ignored == {"not_udp": 2, "tcp_retransmission": 1}
    assert report.ignored_bytes["tcp_retransmission"] == _frame_sizes(path)[3]


@pytest.mark.parametrize("collector_port", [4739, 18000])
def test_a_repeat_before_the_stream_is_told_apart_is_a_retransmission(
    tmp_path: Path, collector_port: int
) -> None:
    """A helper's audit: on a port other than IPFIX's a stream is told apart by its bytes,
    and a frame repeated before that was counted with the stream's frames, then forgotten
    with them once they proved IPFIX: counted nowhere. It is a retransmission, as on port
    4739."""
    stream, first, port = exported_stream()
    push = dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH
    segments = [
        (first, stream[:10], push),
        (first, stream[:10], push),
        (first + 10, stream[10:], push),
    ]
    path = capture(
        tmp_path / f"{collector_port}.pcap",
        segments,
        port,
        syn=first - 1,
        collector_port=collector_port,
    )
    table, report = read(path)
    assert table.num_rows == 210 and not report.skipped
    assert report.ignored == {"not_udp": 1, "tcp_retransmission": 1}
    assert report.ignored_bytes["tcp_retransmission"] == _frame_sizes(path)[2]


def test_a_stream_on_another_port_ends_at_its_fin(tmp_path: Path) -> None:
    """A helper's audit: a segment with no payload reached the streams only with a SYN or
    while an IPFIX stream was open, so the FIN of a stream on another port not yet told
    apart was not seen; the stream ended at the run's end and its one message was named
    at the ACK after the FIN (frame 4) instead of the FIN (frame 3) that completed it."""
    stream, first, port = exported_stream()
    (length,) = struct.unpack_from(">H", stream, 2)
    push, fin = dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK
    segments = [
        (first, stream[:length], push),
        (first + length, b"", fin),
        (first + length + 1, b"", dpkt.tcp.TH_ACK),
    ]
    path = capture(tmp_path / "fin.pcap", segments, port, syn=first - 1, collector_port=18000)
    table, report = read(path)
    assert table.num_rows > 0 and not report.skipped
    assert set(table.column("source_frame").to_pylist()) == {3}


def test_data_before_where_the_syn_says_the_stream_begins_is_read_or_counted(
    tmp_path: Path,
) -> None:
    """Found by fuzzing the CLI: a SYN whose sequence number lay ahead of the data (damaged,
    or another connection's) made every byte read as a retransmission of bytes read
    already: 0 of 210 records, nothing counted. With nothing read yet, the stream now
    starts at that data (a repair that says so); bytes before the start that come after
    it was read from there (a capture begun inside the connection, reordered) are
    counted."""
    stream, first, port = exported_stream()
    for ahead in (1000, 100_000, 1 << 30):
        table, report = read(
            capture(
                tmp_path / f"syn{ahead}.pcap",
                segments_of(stream, first),
                port,
                syn=first - 1 + ahead,
            )
        )
        assert table.num_rows == 210 and not report.skipped, ahead
        assert report.repaired == {"tcp_start_moved": 1}
    # begun inside the connection, its first bytes captured after the rest began
    (length,) = struct.unpack_from(">H", stream, 2)
    table, report = read(
        capture(
            tmp_path / "reordered.pcap",
            [(first + length, stream[length:]), (first, stream[:length])],
            port,
            syn=None,
        )
    )
    assert report.skipped["tcp_before_start"] == 1
    assert report.skipped_bytes["tcp_before_start"] == length
    # (the first message defined the templates: the rest waits for them, as the run says)
    assert table.num_rows < 210


def test_a_retransmitted_fast_open_syn_and_a_reused_port_pair_start_no_stream_again(
    tmp_path: Path,
) -> None:
    """Found by review of the start rule above: a retransmitted SYN carrying data (TCP
    Fast Open) placed its data a byte early, and a segment of the connection before on the
    same port pair, retransmitted after the new SYN, moved the new stream's start: counted
    problems (and a hole) where the bytes are read whole."""
    stream, first, port = exported_stream()
    (length,) = struct.unpack_from(">H", stream, 2)
    syn, data = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH
    rest = [(seq, chunk, data) for seq, chunk in segments_of(stream[length:], first + length)]
    for name, opening in (
        ("tfo", [(first - 1, stream[:length], syn)] * 2),
        ("tfo2", [(first - 1, b"", syn), (first - 1, stream[:length], syn)]),
    ):
        table, report = read(capture(tmp_path / f"{name}.pcap", [*opening, *rest], port, syn=None))
        assert table.num_rows == 210 and not report.skipped and not report.repaired, name
    before = first - 100_000
    old = (before, stream[:length], data)
    reused = [
        (before - 1, b"", syn),
        old,
        (before + length, b"", dpkt.tcp.TH_FIN | data),
        (first - 1, b"", syn),
        old,
        *((seq, chunk, data) for seq, chunk in segments_of(stream, first)),
    ]
    table, report = read(capture(tmp_path / "reuse.pcap", reused, port, syn=None))
    assert table.num_rows == 210 and not report.skipped and not report.repaired


def test_exporting_a_tcp_conversation_writes_its_flows_not_a_broken_capture(tmp_path: Path) -> None:
    """A message's provenance is the segment that completed it, which holds pieces of other
    messages and needs the stream before it: `recombine --export-pcap` copied that one
    segment into a capture that decodes to nothing (a resync and a cut message). Such
    records go to the flows file beside it, as nfcapd records do, and say why."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    assert runner.invoke(app, ["sessionize", str(FIXTURE), "--out", str(run), "-q"]).exit_code == 0
    session = pq.read_table(run / "sessions.parquet").column("session_id")[5].as_py()
    capture = tmp_path / "one.pcap"
    result = runner.invoke(
        app, ["recombine", str(run), "--session", session, "--export-pcap", str(capture)]
    )
    assert result.exit_code == 0, result.output
    assert "came in IPFIX messages over TCP" in result.output + result.stderr
    assert not capture.exists()
    flows = pq.read_table(tmp_path / "one.flows.parquet")
    assert flows.num_rows == 2 and set(flows.column("session_id").to_pylist()) == {session}


def test_tcp_control_segments_and_coalescing_read_as_the_stream_says(tmp_path: Path) -> None:
    """Review of the first version: a FIN captured before the last data closed the stream
    early, a retransmitted SYN reset it, a SYN on another port opened nothing (so a
    reordered start lost the stream), a longer retransmission at a held sequence number was
    dropped, data on a SYN (Fast Open) lost its first byte, and messages completed by one
    segment numbered their records alike."""
    stream, first, port = exported_stream()
    expected, _ = read(FIXTURE)
    ack, fin, syn = dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, dpkt.tcp.TH_SYN
    half = len(stream) // 2
    cases = {
        "fin_first": [
            (first + len(stream), b"", fin),
            (first, stream[:half]),
            (first + half, stream[half:]),
        ],
        "syn_again": [(first, stream[:half]), (first - 1, b"", syn), (first + half, stream[half:])],
        "other_port_swapped": [(first + half, stream[half:]), (first, stream[:half])],
        "longer_copy": [
            (first + half, stream[half : half + 10]),
            (first + half, stream[half:]),
            (first, stream[:half]),
        ],
        "fast_open": [(first - 1, stream[:half], syn), (first + half, stream[half:], ack)],
        "one_segment": [(first, stream)],
    }
    for name, segments in cases.items():
        collector = 2055 if name == "other_port_swapped" else 4739
        syn_at = None if name == "fast_open" else first - 1
        table, report = read(
            capture(tmp_path / f"{name}.pcap", segments, port, syn=syn_at, collector_port=collector)
        )
        assert records(table) == records(expected), name
        assert not report.skipped, name
        keys = list(
            zip(table["source_offset"].to_pylist(), table["record_index"].to_pylist(), strict=True)
        )
        assert len(set(keys)) == len(keys), name
    # a web server's reply whose later segments begin like IPFIX messages (a file of them
    # served over HTTP) is other traffic from its first bytes on, not 210 invented records
    reply = b"HTTP/1.1 200 OK\r\n\r\n"
    table, report = read(
        capture(
            tmp_path / "http.pcap",
            [(first, reply), (first + len(reply), stream)],
            port,
            syn=first - 1,
            collector_port=80,
        )
    )
    assert table.num_rows == 0 and report.ignored == {"not_udp": 3}


def read_all(*paths: Path) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    batches = list(read_flows(discover_inputs(list(paths), report), report))
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


@pytest.mark.parametrize("collector_port", [4739, 18_000])
def test_a_connection_goes_on_into_the_next_capture_file(
    tmp_path: Path, collector_port: int
) -> None:
    """`tcpdump -C/-G` rotates its capture while the exporter's connection stays up, and
    each file after the first begins inside it. Streams ended with their file: on port
    4739 a message was lost at each cut (`truncated`, then `ipfix_stream_resync`), on
    another (YAF to super_mediator on 18000) the rest of the connection was never
    recognised, and every later record was lost as other traffic."""
    stream, first, port = exported_stream()
    segments = [(first + at, stream[at : at + 700]) for at in range(0, len(stream), 700)]
    whole = capture(
        tmp_path / "whole.pcap", segments, port, syn=first - 1, collector_port=collector_port
    )
    expected, whole_report = read_all(whole)
    assert expected.num_rows == 210
    third = len(segments) // 3
    parts = [
        capture(
            tmp_path / "a.pcap",
            segments[:third],
            port,
            syn=first - 1,
            collector_port=collector_port,
        ),
        capture(
            tmp_path / "b.pcap",
            segments[third : 2 * third],
            port,
            syn=None,
            collector_port=collector_port,
        ),
        capture(
            tmp_path / "c.pcap",
            segments[2 * third :],
            port,
            syn=None,
            collector_port=collector_port,
        ),
    ]
    table, report = read_all(*reversed(parts))
    assert records(table) == records(expected)
    assert not report.skipped and report.ignored == whole_report.ignored  # the SYN
    # each message named at the frame that completed it, in the file that holds that frame
    assert set(table.column("source_file").to_pylist()) == {str(p) for p in parts}


def test_a_connection_cut_by_its_file_and_never_continued(tmp_path: Path) -> None:
    """The cut message of a connection the next file does not continue is counted at the
    end of the run, in the file that held it, at that file's last frame."""
    stream, first, port = exported_stream()
    segments = [(first + at, stream[at : at + 700]) for at in range(0, len(stream), 700)]
    cut = capture(tmp_path / "a.pcap", segments[:5], port, syn=first - 1)
    other = tmp_path / "z.pcap"
    other.write_bytes((FIXTURE.parent / "sf_v9_varsvc.pcap").read_bytes())
    table, report = read_all(cut, other)
    assert report.skipped == {"truncated": 1}
    [problem] = report.examples
    assert (problem.source, problem.frame) == (str(cut), 6)  # the SYN and 5 segments
    assert table.num_rows > 72


ROTATED = FIXTURE.parent / "ipfix_tcp_rotated"


def test_a_real_rotated_and_gzipped_capture_equals_tshark_on_the_merged_files(
    tmp_path: Path,
) -> None:
    """fixtures/ipfix_tcp_rotated: python-ipfix exporting 240 records over one TCP
    connection to port 18000 (YAF's to super_mediator), captured by `tcpdump -G 1 -z
    gzip`: eight files, gzipped but the last, two rotations inside a message. Read as a
    directory, it gives what tshark reads from the files merged into one capture
    (mergecap); before, the files after those two cuts were never recognised (144
    records, 2 `truncated`)."""
    table, report = read(ROTATED)
    assert table.num_rows == 240 and not report.skipped
    assert sorted({report.files[str(p)].compression for p in ROTATED.iterdir()}) == ["", "gzip"]
    merged = tmp_path / "merged.pcap"
    subprocess.run(
        [need_tool("mergecap"), "-w", str(merged), *sorted(str(p) for p in ROTATED.iterdir())],
        check=True,
    )
    listing = subprocess.run(
        [
            need_tool("tshark"),
            "-r",
            str(merged),
            "-d",
            "tcp.port==18000,cflow",
            "-T",
            "fields",
            "-e",
            "cflow.srcaddr",
            "-e",
            "cflow.srcport",
            "-e",
            "cflow.packets",
            "-e",
            "cflow.octets",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    theirs: Counter[tuple[str, int, int, int]] = Counter()
    for line in listing.splitlines():
        src, port, packets, octets = line.split("\t")
        if packets:
            for address, sport, count, size in zip(
                src.split(","), port.split(","), packets.split(","), octets.split(","), strict=True
            ):
                theirs[(address, int(sport), int(count), int(size))] += 1
    ours = Counter(
        (address_text(r["src_addr"]), r["src_port"], r["packets"], r["octets"])
        for r in table.to_pylist()
    )
    assert ours == theirs and sum(theirs.values()) == 240


def segments_of(stream: bytes, first: int, size: int = 700) -> list[tuple[int, bytes]]:
    return [(first + at, stream[at : at + size]) for at in range(0, len(stream), size)]


@pytest.mark.parametrize("collector_port", [4739, 18_000])
def test_a_hole_at_a_file_s_end_is_given_up_there_and_counted(
    tmp_path: Path, collector_port: int
) -> None:
    """Two segments the wire swapped across a rotation: the hole at the first file's end is
    given up there, as at the end of a single file, counted (`tcp_gap`), and what follows
    read after it; the datagrams keep the order and the file of the frames they name,
    whatever the batch size (found by review: holes kept across files gave up their
    messages at the run's end, named in an earlier file, and the decoder then put them in
    the wrong file or, by batch size, in another order)."""
    stream, first, port = exported_stream()
    segments = segments_of(stream, first)
    k = len(segments) - 3
    swapped = [*segments[:k], segments[k + 1], segments[k], *segments[k + 2 :]]
    a = capture(
        tmp_path / "a.pcap", swapped[: k + 1], port, syn=first - 1, collector_port=collector_port
    )
    b = capture(
        tmp_path / "b.pcap", swapped[k + 1 :], port, syn=None, collector_port=collector_port
    )
    tables = []
    for batch_size in (1, 7, 65_536):
        report = RunReport()
        tables.append(
            pa.Table.from_batches(
                list(read_flows(discover_inputs([a, b], report), report, batch_size=batch_size)),
                schema=FLOW_SCHEMA,
            )
        )
        assert report.skipped["tcp_gap"] == 1
    assert tables[0].equals(tables[1]) and tables[0].equals(tables[2])
    assert 0 < tables[0].num_rows < 210
    files = tables[0].column("source_file").to_pylist()
    frames = list(zip(files, tables[0].column("source_frame").to_pylist(), strict=True))
    assert frames == sorted(frames, key=lambda f: (f[0] != str(a), f[1]))


@pytest.mark.parametrize("collector_port", [4739, 18_000])
@pytest.mark.parametrize("distance", [5_000_000, -5_000_000])
def test_a_new_connection_on_the_same_ports_without_its_syn(
    tmp_path: Path, collector_port: int, distance: int
) -> None:
    """Found by review: once a connection ended, any later bytes on its port pair were
    taken for retransmissions, unread and uncounted, whatever their sequence numbers: a
    later file beginning inside a new connection from the same exporter port (a restart
    from a fixed port, the files of a ring buffer between lost) lost all its records.
    Bytes the ended connection did not read are a connection of their own, wherever its
    sequence numbers fall (a second review: "at or past its end" missed one numbered
    below the old one, half of them)."""
    stream, first, port = exported_stream()
    ended = [*segments_of(stream, first), (first + len(stream), b"", dpkt.tcp.TH_FIN)]
    a = capture(tmp_path / "a.pcap", ended, port, syn=first - 1, collector_port=collector_port)
    later = bytearray(stream)  # its messages numbered on (not the same export again)
    at = 0
    while at < len(later):
        number = struct.unpack_from(">I", later, at + 8)[0]
        struct.pack_into(">I", later, at + 8, number + 100_000)
        at += struct.unpack_from(">H", later, at + 2)[0]
    again = segments_of(bytes(later), first + len(stream) + distance)
    b = capture(tmp_path / "b.pcap", again, port, syn=None, collector_port=collector_port)
    table, report = read_all(a, b)
    assert table.num_rows == 420 and not report.skipped
    assert report.files[str(b)].records == 210
    # a retransmission of the ended connection's bytes is still read once
    late = capture(
        tmp_path / "late.pcap",
        segments_of(stream, first)[-2:],
        port,
        syn=None,
        collector_port=collector_port,
    )
    table, report = read_all(a, late)
    assert table.num_rows == 210 and not report.skipped


def test_what_a_connection_s_end_cuts_is_counted_where_its_bytes_are(tmp_path: Path) -> None:
    """Found by review: a message the first file's end cut, of a connection the next file
    holds only a bare ACK and a keepalive of, was counted `truncated` in the next file, at
    the keepalive, which holds none of its bytes: it is counted in the first file, at its
    last bytes' frame."""
    stream, first, port = exported_stream()
    segments = segments_of(stream, first)
    a = capture(tmp_path / "a.pcap", segments[:5], port, syn=first - 1)
    after = segments[5][0]
    b = capture(
        tmp_path / "b.pcap",
        [
            (after, b"", dpkt.tcp.TH_ACK),
            (after - 1, stream[after - first - 1 : after - first], dpkt.tcp.TH_ACK),
        ],
        port,
        syn=None,
    )  # a keepalive
    _, report = read_all(a, b)
    [problem] = report.examples
    assert (problem.reason, problem.source, problem.frame) == ("truncated", str(a), 6)


def test_a_connection_closed_for_room_is_counted_in_its_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: the least recently fed of too many connections was closed, and
    its cut message counted, in the file and at the frame being read."""
    from obserae_forensics.readers import tcp_streams

    monkeypatch.setattr(tcp_streams, "MAX_STREAMS", 2)
    stream, first, port = exported_stream()
    segments = segments_of(stream, first)
    a = capture(tmp_path / "a.pcap", segments[:3], port, syn=first - 1)
    others = [
        capture(tmp_path / f"b{k}.pcap", segments[:2], port + 1 + k, syn=first - 1)
        for k in range(2)
    ]
    _, report = read_all(a, *others)
    cut = [p for p in report.examples if p.reason == "truncated"]
    assert [(p.source, p.frame) for p in cut if f"127.0.0.1:{port}:" in p.message] == [(str(a), 4)]


def test_a_false_header_does_not_hold_the_rest_of_a_connection_that_ends(tmp_path: Path) -> None:
    """Found by review: resync waits at the first header it finds for the one its length
    says follows, and the python-ipfix stream has 00 0a 44 00 at byte 2184 ("17,408
    bytes", more than the connection has left). A capture that lost the bytes before 2100
    read none of the 7 whole messages after it and counted them `truncated`; at the
    connection's end the false header is passed over and they are read."""
    stream, first, port = exported_stream()
    assert stream[2184:2188] == b"\x00\x0a\x44\x00"
    template_message = struct.unpack_from(">H", stream, 2)[0]
    segments = [(first, stream[:template_message]), *segments_of(stream[2100:], first + 2100)]
    table, report = read(capture(tmp_path / "hole.pcap", segments, port, syn=first - 1))
    whole = read(FIXTURE)[0]
    assert table.num_rows >= 180 and set(records(table)) <= set(records(whole))
    assert "truncated" not in report.skipped
    assert report.skipped["tcp_gap"] == 1 and report.skipped["ipfix_stream_resync"] >= 1


def _without_frame(path: Path, dropped: int, out: Path) -> Path:
    """`path` with its frame number `dropped` (from 1) left out, the rest byte for byte."""
    data = path.read_bytes()
    kept, at, number = bytearray(data[:24]), 24, 0
    while at < len(data):
        (caplen,) = struct.unpack_from("<I", data, at + 8)
        number += 1
        if number != dropped:
            kept += data[at : at + 16 + caplen]
        at += 16 + caplen
    out.write_bytes(bytes(kept))
    return out


@pytest.mark.parametrize("collector_port", [4739, 18_000])
def test_bytes_lost_before_the_exporter_s_fin_are_a_gap(
    tmp_path: Path, collector_port: int
) -> None:
    """Found by fuzzing: only a hole before a segment held beyond it was counted, so the
    segments lost just before the exporter's FIN, whose sequence number says where the
    stream ends, passed without a word (the fixture without frame 38, its last message:
    209 records of 210, nothing counted, `--strict` passing). They are a `tcp_gap`, the
    message they cut lost with them (not `truncated`), also across sequence number 2**32;
    a FIN that lost nothing counts nothing."""
    table, report = read(_without_frame(FIXTURE, 38, tmp_path / "no38.pcap"))
    assert table.num_rows == 209 and report.skipped == {"tcp_gap": 1}
    [problem] = report.examples
    assert "89 bytes missing from the capture before the FIN" in problem.message
    assert problem.frame == 41  # the run's last frame, where the connection is closed
    stream, first, port = exported_stream()
    push, fin = dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK
    expected, _ = read(FIXTURE)
    for base in (first, (1 << 32) - len(stream) + 25):  # 2**32 inside the hole
        # the last message's last 50 bytes lost: the rest of it lost with them
        segments = [(base, stream[:-50], push), (base + len(stream), b"", fin)]
        table, report = read(
            capture(
                tmp_path / f"cut{base}.pcap",
                segments,
                port,
                syn=base - 1,
                collector_port=collector_port,
            )
        )
        (length,) = struct.unpack_from(">H", stream, len(stream) - 89 + 2)
        assert length == 89  # the last message, of one record
        assert table.num_rows == 209 and records(table) <= records(expected)
        assert report.skipped == {"tcp_gap": 1}
        assert report.skipped_bytes == {"tcp_gap": 89 - 50}
        # nothing lost: nothing counted
        segments = [(base, stream, push), (base + len(stream), b"", fin)]
        table, report = read(
            capture(
                tmp_path / f"whole{base}.pcap",
                segments,
                port,
                syn=base - 1,
                collector_port=collector_port,
            )
        )
        assert table.num_rows == 210 and not report.skipped


def test_a_number_behind_on_one_connection_is_the_exporter_numbering_afresh() -> None:
    """Found by an audit: python-ipfix numbers observation domain 2's messages 150, 19, 39,
    59 on one connection (tshark: its first message takes domain 1's count, the rest their
    own). TCP delivers a connection's messages in the order they were sent, so a number
    behind is no late message: it read as 3 reorders, and a loss after them would have
    been hidden while the numbers caught up."""
    _, report = read(FIXTURE)
    stats = report.exporters[("127.0.0.1", 2)]
    assert (stats.reorders, stats.restarts, stats.sequence_gaps) == (0, 1, 0)
    assert (report.exporters[("127.0.0.1", 1)].restarts, stats.records) == (0, 60)
