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

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP
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
from tests.conftest import need_tool

from .test_tcp_streams import FIXTURE, exported_stream, read, records

EXPORTER, COLLECTOR = "192.0.2.9", "198.51.100.7"
PORT = 33_000


def messages() -> list[bytes]:
    """The real exporter's IPFIX messages, in the order it sent them."""
    stream, _, _ = exported_stream()
    out, at = [], 0
    while at < len(stream):
        (length,) = struct.unpack_from(">H", stream, at + 2)
        out.append(stream[at:at + length])
        at += length
    return out


def data(tsn: int, payload: bytes, *, begin: bool = True, end: bool = True, stream: int = 0,
         protocol: int = 0) -> SCTPChunkData:
    return SCTPChunkData(tsn=tsn, stream_id=stream, stream_seq=0, proto_id=protocol,
                         data=payload, beginning=int(begin), ending=int(end))


def packet(*chunks: Packet, sport: int = PORT, dport: int = 4739, src: str = EXPORTER,
           dst: str = COLLECTOR) -> Packet:
    sctp = SCTP(sport=sport, dport=dport, tag=7)
    for chunk in chunks:
        sctp = sctp / chunk
    return IP(src=src, dst=dst) / sctp


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
        out.append(packet(SCTPChunkSACK(cumul_tsn_ack=chunks[-1][0]), sport=4739, dport=PORT,
                          src=COLLECTOR, dst=EXPORTER))
    return out


def chunked(cuts: list[list[int]], bundle: list[int]) -> list[list[tuple[int, bytes, bool, bool]]]:
    """Each message cut at `cuts[i]` into fragments of consecutive TSNs; `bundle[k]` chunks
    in the k-th packet (the rest one per packet)."""
    chunks, tsn = [], 1
    for message, at in zip(messages(), cuts, strict=True):
        bounds = [0, *sorted(set(at)), len(message)]
        for k in range(len(bounds) - 1):
            chunks.append((tsn, message[bounds[k]:bounds[k + 1]], k == 0,
                           k == len(bounds) - 2))
            tsn += 1
    parts, at = [], 0
    for size in [*bundle, *[1] * len(chunks)]:
        if at >= len(chunks):
            break
        parts.append(chunks[at:at + size])
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
        [need_tool("tshark"), "-r", str(path), "-T", "fields", "-e", "cflow.srcaddr",
         "-e", "cflow.srcaddrv6", "-e", "cflow.packets", "-e", "cflow.octets"],
        check=True, capture_output=True, text=True).stdout
    theirs: Counter[tuple[str, int, int]] = Counter()
    for line in listing.splitlines():
        v4, v6, packet_counts, octets = line.split("\t")
        for src, p, o in zip((v4 or v6).split(","), packet_counts.split(","),
                             octets.split(","), strict=True) if packet_counts else ():
            theirs[(src, int(p), int(o))] += 1
    ours = Counter((address_text(r["src_addr"]), r["packets"], r["octets"])
                   for r in table.to_pylist())
    assert ours == theirs and sum(theirs.values()) == 210


@settings(max_examples=40, deadline=None)
@given(draw=st.data())
def test_any_fragmenting_bundling_and_retransmission_gives_the_same_records(
        draw: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    found = messages()
    cuts = [draw.draw(st.lists(st.integers(1, len(m) - 1), max_size=3)) for m in found]
    bundle = draw.draw(st.lists(st.integers(1, 4), max_size=10))
    parts = chunked(cuts, bundle)
    packets = [packet(*(data(tsn, b, begin=s, end=e) for tsn, b, s, e in chunks))
               for chunks in parts]
    if len(packets) > 1 and draw.draw(st.booleans()):  # two packets of fragments swapped
        k = draw.draw(st.integers(0, len(packets) - 2))
        if all(not (s and e) for p in parts[k:k + 2] for _, _, s, e in p):
            packets[k:k + 2] = packets[k:k + 2][::-1]
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
        # a payload protocol of 0 elsewhere is judged by its bytes: not an export
        packet(data(5, b"hello world!"), sport=5000, dport=5001),
        # a chunk claiming more than its packet holds
        packet(data(2, second[:20]) / bytes(4), sport=PORT),
        # the first fragment of a message whose rest never came
        packet(data(3, second[:50], end=False)),
        # an I-DATA chunk (RFC 8260) on the IPFIX port: not read, counted
        packet(Raw(struct.pack(">BBHIHHII", 64, 3, 20 + len(first), 4, 0, 0, 0, 0) + first)),
    ]
    raw = bytes(packets[3])
    packets[3] = IP(raw[:20 + 12 + 2] + struct.pack(">H", 200) + raw[20 + 12 + 4:])
    table, report = read(write(tmp_path / "damaged.pcap", packets))
    alone, _ = read(write(tmp_path / "first.pcap", packets[:1]))
    assert records(table) == records(alone) and table.num_rows == 28
    assert dict(report.skipped) == {"bad_sctp_chunk": 1, "incomplete_fragments": 1,
                                    "sctp_idata_unread": 1}
    assert report.ignored["not_udp"] == 1
    assert report.ignored["not_flow_export"] == 1
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
    result = runner.invoke(app, ["recombine", str(run), "--session", session,
                                 "--export-pcap", str(tmp_path / "one.pcap")])
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
    assert dict(report.skipped) == {"incomplete_fragments": 2}  # 257 given up, 43 at the end
    assert report.skipped_bytes["incomplete_fragments"] == 3000
