"""Behaviour the reader tests left unpinned, found by a mutation audit (the thirty-fourth
session's: 78 small changes to the decoders, 26 of which no test noticed); each test
here fails with its change applied and says, in its docstring, which change it was.
Headers, templates and records are packed with struct, as the v9/IPFIX tests pack their
data records; nfcapd files are real fixtures (fixtures/README.md), one record edited with
nfcapd_write."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyarrow as pa

from obserae_forensics.addresses import address_text
from obserae_forensics.readers.datagrams import Datagram
from obserae_forensics.readers.exports import ExportDecoder
from obserae_forensics.report import ExporterStats, RunReport
from obserae_forensics.schema import FLOW_SCHEMA

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
if not (FIXTURES / "README.md").is_file():  # run from outside the repository
    import obserae_forensics

    FIXTURES = Path(obserae_forensics.__file__).resolve().parents[1] / "fixtures"

EXPORT_S = 1_700_000_000
EXPORT_US = EXPORT_S * 1_000_000
UPTIME_MS = 3_600_000
EXPORTER = "198.51.100.7"
DOMAIN = 42


# -- NetFlow v9 / IPFIX messages -------------------------------------------------------------


def v9(*flowsets: bytes, sequence: int = 0) -> bytes:
    return struct.pack(">HHIIII", 9, 0, UPTIME_MS, EXPORT_S, sequence, DOMAIN) + b"".join(flowsets)


def v9_template(template_id: int, fields: list[tuple[int, int]]) -> bytes:
    body = struct.pack(">HH", template_id, len(fields)) + b"".join(
        struct.pack(">HH", *f) for f in fields
    )
    return struct.pack(">HH", 0, 4 + len(body)) + body


def v9_options(
    template_id: int, scope: list[tuple[int, int]], options: list[tuple[int, int]]
) -> bytes:
    body = struct.pack(">HHH", template_id, 4 * len(scope), 4 * len(options)) + b"".join(
        struct.pack(">HH", *f) for f in scope + options
    )
    body += bytes(-len(body) % 4)
    return struct.pack(">HH", 1, 4 + len(body)) + body


def ipfix(*sets: bytes, sequence: int = 0) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), EXPORT_S, sequence, DOMAIN) + body


def ipfix_template(template_id: int, fields: list[tuple[int, int]]) -> bytes:
    body = struct.pack(">HH", template_id, len(fields)) + b"".join(
        struct.pack(">HH", *f) for f in fields
    )
    return struct.pack(">HH", 2, 4 + len(body)) + body


def data(set_id: int, *records: bytes) -> bytes:
    body = b"".join(records)
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def decode(*payloads: bytes) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    decoder = ExportDecoder(report)
    batches = decoder.feed(
        [
            Datagram(p, EXPORTER, 50000, 2055, i + 1, 24 + 300 * i, EXPORT_US + i, "mutants.pcap")
            for i, p in enumerate(payloads)
        ]
    )
    batches += decoder.finish()
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


def stats(report: RunReport) -> ExporterStats:
    return report.exporters[(EXPORTER, DOMAIN)]


V4_FIELDS = [(8, 4), (12, 4), (4, 1), (2, 4), (1, 4)]  # src, dst, protocol, packets, octets


def v4_record(packets: int, octets: int, protocol: int = 17) -> bytes:
    return bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack(">BII", protocol, packets, octets)


def test_v9_template_record_of_id_0_with_fields_is_a_bad_template() -> None:
    """Kills v9_tmpl_pad (netflow_v9.read_templates: `template_id == 0` alone taken for
    padding): a record of id 0 that has fields is a damaged template, counted as one, not
    padding followed by a bad record."""
    damaged = struct.pack(">HHHH", 0, 16, 0, 2) + struct.pack(">HHHH", 8, 4, 12, 4)
    table, report = decode(v9(damaged, v9_template(256, V4_FIELDS), data(256, v4_record(3, 300))))
    assert table["packets"].to_pylist() == [3]
    assert report.skipped == {"bad_template": 1}
    assert report.skipped_bytes["bad_template"] == 12


def test_v9_options_template_whose_scope_length_is_no_multiple_of_4_is_refused() -> None:
    """Kills v9_opt_mod4 (netflow_v9.read_options_templates without `scope_length % 4`):
    a scope of 2 bytes holds no whole (type, length) pair; the template is refused, and
    its options never declare a sampling rate."""
    damaged = struct.pack(">HHHHHH", 257, 2, 4, 1, 34, 4)
    damaged = struct.pack(">HH", 1, 4 + len(damaged)) + damaged
    table, report = decode(
        v9(
            damaged,
            data(257, struct.pack(">I", 100)) + b"",
            v9_template(256, V4_FIELDS),
            data(256, v4_record(3, 300)),
        )
    )
    assert report.skipped.get("bad_template") == 1
    assert table["sampling_rate"].to_pylist() == [1]


def test_v9_interface_scoped_rate_applies_to_its_interface_only() -> None:
    """Kills v9_scope0 (an options template's scope fields counted as options: scope type
    2, Interface, no longer scopes the rate): records of interface 7 take its 1:10, those
    of interface 8 its 1:20, whatever was declared last."""
    options = v9_options(258, [(2, 4)], [(34, 4)])
    fields = [*V4_FIELDS, (10, 2)]
    payload = v9(
        options,
        v9_template(256, fields),
        data(258, struct.pack(">II", 7, 10), struct.pack(">II", 8, 20)),
        data(256, v4_record(1, 60) + struct.pack(">H", 7), v4_record(1, 60) + struct.pack(">H", 8)),
    )
    table, report = decode(payload)
    assert table["sampling_rate"].to_pylist() == [10, 20]
    assert not report.skipped


def test_an_ipfix_message_of_its_header_alone_is_no_problem() -> None:
    """Kills ipfix_hdrlen (`length <= HEADER.size` refused): RFC 7011 §3 lets a message
    hold zero sets; a 16-byte message (a keepalive, a message whose sets were all
    withdrawn) is a message of no records, not `trailing_bytes`."""
    fields = [(8, 4), (2, 4)]
    table, report = decode(
        ipfix(ipfix_template(300, fields), sequence=0),
        ipfix(sequence=0),
        ipfix(data(300, struct.pack(">II", 1, 7)), sequence=0),
    )
    assert table["packets"].to_pylist() == [7]
    assert not report.skipped
    assert stats(report).datagrams == 3


def test_an_ipfix_withdrawal_among_templates_keeps_every_template() -> None:
    """Kills ipfix_withdraw (the withdrawal's `continue` dropped: it was read as a template
    of no fields, which replaced the one withdrawn and swallowed the next record's
    header). Over UDP a withdrawal is ignored (RFC 7011 §8.1), and the set goes on."""
    fields = [(8, 4), (2, 4)]
    withdraw_then_define = struct.pack(">HH", 300, 0) + struct.pack(">HHHHHH", 301, 2, 8, 4, 1, 4)
    withdraw_then_define = (
        struct.pack(">HH", 2, 4 + len(withdraw_then_define)) + withdraw_then_define
    )
    table, report = decode(
        ipfix(ipfix_template(300, fields), sequence=0),
        ipfix(withdraw_then_define, sequence=0),
        ipfix(
            data(300, struct.pack(">II", 1, 7)), data(301, struct.pack(">II", 2, 900)), sequence=0
        ),
    )
    assert table["packets"].to_pylist() == [7, 0]
    assert table["octets"].to_pylist() == [0, 900]
    assert not report.skipped
    assert stats(report).template_withdrawals == 1


def test_a_records_own_packet_interval_and_space_give_its_rate() -> None:
    """Kills tpl_space (RecordPlan._sampling: `space // taken` for `(taken + space) //
    taken`): 1 packet taken of every 100 (samplingPacketInterval 1, samplingPacketSpace
    99 in the record itself) is 1:100, not 1:99."""
    fields = [(8, 4), (2, 4), (305, 4), (306, 4)]
    table, _ = decode(
        ipfix(
            ipfix_template(320, fields),
            data(320, struct.pack(">IIII", 1, 5, 1, 99), struct.pack(">IIII", 1, 5, 10, 10)),
        )
    )
    assert table["sampling_rate"].to_pylist() == [100, 2]


def test_four_nonzero_bytes_after_a_record_are_a_bad_record_not_padding() -> None:
    """Kills tpl_aligned (templates.padding_problem: `tail <= 4`): alignment padding is
    at most 3 bytes (RFC 7011 §3.3.1); 4 bytes after a 9-byte record make a set that is
    not whole records of its template, even where they leave the set 4-byte aligned: left
    out whole (templates.misfit)."""
    fields = [(8, 4), (2, 4), (4, 1)]  # 9-byte records
    records = struct.pack(">IIB", 1, 1, 6) * 4  # 36 bytes, then 4: the set body is aligned
    table, report = decode(
        ipfix(ipfix_template(300, fields), data(300, records + b"\x01\x02\x03\x04"))
    )
    assert table.num_rows == 0
    assert report.skipped == {"bad_record": 1}
    assert report.skipped_bytes["bad_record"] == 40
    assert "nonzero_padding" not in report.repaired
    # 2 such bytes are the exporter's padding (Mikrotik's): said, nothing lost
    table, report = decode(
        ipfix(ipfix_template(300, fields), data(300, records[:18] + b"\x01\x02"))
    )
    assert table.num_rows == 2 and not report.skipped
    assert report.repaired["nonzero_padding"] == 1


def test_total_counters_fill_packets_and_octets() -> None:
    """Kills ie_octet_total (octetTotalCount, IE 85, dropped from the octets column's
    elements): a template of packetTotalCount/octetTotalCount (86/85) only, as some
    exporters send, reads its counters."""
    fields = [(8, 4), (12, 4), (4, 1), (86, 8), (85, 8)]
    record = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + struct.pack(">BQQ", 17, 4, 4000)
    table, report = decode(ipfix(ipfix_template(330, fields), data(330, record)))
    assert (table["packets"].to_pylist(), table["octets"].to_pylist()) == ([4], [4000])
    assert (stats(report).packets, stats(report).octets) == (4, 4000)


def test_icmpv6_type_and_code_elements_give_type_then_code() -> None:
    """Kills ie_icmp6_swap (icmpTypeIPv6/icmpCodeIPv6, IE 178/179, swapped): an echo
    request (type 128, code 0) is dst_port 0x8000, a destination unreachable / port
    unreachable (1, 4) 0x0104, as with icmpTypeCodeIPv6 (139)."""
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    fields = [(27, 16), (28, 16), (4, 1), (178, 1), (179, 1)]
    table, _ = decode(
        ipfix(
            ipfix_template(331, fields),
            data(331, src + dst + bytes([58, 128, 0]), src + dst + bytes([58, 1, 4])),
        )
    )
    assert table["dst_port"].to_pylist() == [0x8000, 0x0104]
    assert table["src_port"].to_pylist() == [0, 0]


def test_ingress_interface_wins_over_the_physical_one() -> None:
    """Kills ie_if_order (information_elements.COLUMN_ELEMENTS: ingressPhysicalInterface,
    IE 252, put before ingressInterface, 10): "best first", the logical interface that
    nfdump reads as its input interface comes first when a template has both."""
    fields = [*V4_FIELDS, (10, 4), (252, 4), (14, 4), (253, 4)]
    table, _ = decode(
        ipfix(
            ipfix_template(332, fields),
            data(332, v4_record(1, 60) + struct.pack(">IIII", 3, 7, 4, 8)),
        )
    )
    assert (table["input_if"].to_pylist(), table["output_if"].to_pylist()) == ([3], [4])


# -- nfcapd files --------------------------------------------------------------------------


def test_an_nfcapd_record_with_only_its_start_missing_keeps_its_end(tmp_path: Path) -> None:
    """Kills nfc_timeless (nfcapd._receive_times: a record with either time 0 taken for one
    stored without times, `|` for `&`): only a record whose exporter sent no time at all
    is placed at its receive time; one whose start alone is 0 keeps its end, and its start
    is taken from it (`missing_time`), as for the export readers' records."""
    from obserae_forensics.readers import discover_inputs, read_flows
    from obserae_forensics.readers.nfcapd_write import read_raw, write_v2

    raw = read_raw(FIXTURES / "nfcapd171_oneway_ipfix.nfcapd")  # live collection
    record = bytearray(raw.blocks[0][1])  # the first V3 record: EXipv4Flow, EXgenericFlow
    assert struct.unpack_from("<HH", record, 12 + 12) == (1, 52)
    end_ms = struct.unpack_from("<Q", record, 12 + 12 + 4 + 8)[0]
    record[28:36] = bytes(8)  # msecFirst = 0
    raw.blocks[0][1] = bytes(record)
    path = tmp_path / "start_missing.nfcapd"
    write_v2(path, raw)
    report = RunReport()
    table = pa.Table.from_batches(list(read_flows(discover_inputs([path], report), report)))
    assert table.num_rows == 4
    first = table.column("first_seen").cast(pa.int64()).to_pylist()
    last = table.column("last_seen").cast(pa.int64()).to_pylist()
    assert first[0] == last[0] == end_ms * 1000
    assert report.repaired["missing_time"] == 1
    assert "receive_time" not in report.repaired


def test_an_nfcapd_block_flagged_uncompressed_is_read_as_stored(tmp_path: Path) -> None:
    """Kills nfc_codec (nfcapd._block_codec testing flag bit 1 for bit 0): a 1.7 block
    whose flags say "stored uncompressed" is read as it is in a file whose header names
    a compression (nfdump -v honours the flag)."""
    from obserae_forensics.readers.compression import LZ4
    from obserae_forensics.readers.nfcapd import read_nfcapd
    from obserae_forensics.readers.nfcapd_write import read_raw, write_v2

    source = FIXTURES / "nfcapd178_sf_v10_biflow_test.lz4.nfcapd"
    raw = read_raw(source)
    assert raw.compression == LZ4 and len(raw.blocks) == 1
    raw.compression, raw.ident, raw.stat = 0, "", None
    path = tmp_path / "stored.nfcapd"
    write_v2(path, raw)  # one block, no appendix
    data = bytearray(path.read_bytes())
    data[16] = LZ4  # the file's compression ...
    data[40 + 10] = 0x1  # ... which this block's flags say it was not given
    path.write_bytes(bytes(data))
    expected = pa.Table.from_batches(list(read_nfcapd(source, RunReport())), schema=FLOW_SCHEMA)
    report = RunReport()
    table = pa.Table.from_batches(list(read_nfcapd(path, report)), schema=FLOW_SCHEMA)
    assert not report.skipped
    assert table.num_rows == expected.num_rows == 26
    assert (
        table.select(["packets", "octets", "src_port"]).to_pylist()
        == expected.select(["packets", "octets", "src_port"]).to_pylist()
    )


def test_an_nfcapd_dual_stack_record_with_one_ipv4_address_zero_is_ipv4() -> None:
    """Kills v3_dual (nfcapd_v3.decode_layout: `&` for `|`): of a template with both
    address families, a record's IPv4 addresses are its own unless both are blank; a DHCP
    discover (0.0.0.0 -> 255.255.255.255) is an IPv4 flow, not :: -> ::."""
    from obserae_forensics.readers.nfcapd_v3 import RECORD_HEADER_SIZE, decode_layout, layout_for

    elements = ((1, 52), (2, 12), (3, 36))
    layout = layout_for(elements, RECORD_HEADER_SIZE + 100, False)
    rows = np.zeros(2, dtype=layout.dtype)
    rows["src4"], rows["dst4"] = [0, 0x0A000001], [0xFFFFFFFF, 0]
    out = decode_layout(rows, layout)
    assert out["ip_version"].tolist() == [4, 4]
    assert [address_text(a.tobytes()) for a in out["dst_addr"]] == ["255.255.255.255", "0.0.0.0"]
    assert address_text(out["src_addr"][1].tobytes()) == "10.0.0.1"


# -- captures ------------------------------------------------------------------------------


def pcap_file(frames: list[bytes], linktype: int = 1) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for number, frame in enumerate(frames):
        out += struct.pack("<IIII", EXPORT_S, number, len(frame), len(frame)) + frame
    return out


def pcapng_block(block_type: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("<II", block_type, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def ethernet(ethertype: int, packet: bytes) -> bytes:
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + struct.pack(">H", ethertype) + packet


IPFIX_MESSAGE = ipfix(
    ipfix_template(300, [(8, 4), (2, 4)]), data(300, struct.pack(">II", 0x0A000001, 5))
)


def test_the_pcap_header_fcs_length_counts_16_bit_words(tmp_path: Path) -> None:
    """Kills pcap_fcs (pcap._pcap_header: the FCS length field read as bytes): bits 28-31
    of the link-type field give the FCS in 16-bit words (pcap-linktype), so 2 is a 4-byte
    Ethernet FCS, as a PCAPNG interface's if_fcslen of 32 bits is; recombine writes the
    field back from this number."""
    from obserae_forensics.readers.pcap import iter_frames

    udp = struct.pack(">HHHH", 50000, 4739, 8 + len(IPFIX_MESSAGE), 0) + IPFIX_MESSAGE
    ip = (
        struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            1,
            0,
            64,
            17,
            0,
            bytes([192, 0, 2, 1]),
            bytes([198, 51, 100, 7]),
        )
        + udp
    )
    frame = ethernet(0x0800, ip) + b"\xde\xad\xbe\xef"
    path = tmp_path / "fcs.pcap"
    path.write_bytes(pcap_file([frame], linktype=1 | 1 << 26 | 2 << 28))
    frames = list(iter_frames(path, RunReport()))
    ng = tmp_path / "fcs.pcapng"
    ng.write_bytes(
        pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
        + pcapng_block(
            1,
            struct.pack("<HHI", 1, 0, 0)
            + struct.pack("<HH", 13, 1)
            + b"\x20\x00\x00\x00"
            + struct.pack("<HH", 0, 0),
        )
        + pcapng_block(6, struct.pack("<IIIII", 0, 0, 0, len(frame), len(frame)) + frame)
    )
    frames_ng = list(iter_frames(ng, RunReport()))
    assert [f.fcs_bytes for f in frames] == [f.fcs_bytes for f in frames_ng] == [4]


def test_an_ipv6_authentication_header_is_walked_by_its_own_length_unit(tmp_path: Path) -> None:
    """Kills pcap_ah_len (pcap._walk_ipv6: AH measured as (length + 1) * 4): RFC 4302 §2.2
    gives the AH's length in 4-byte words minus 2 (unlike the other extension headers'
    8-byte words minus 1); an IPFIX datagram behind an AH of a 12-byte ICV is read whole."""
    from obserae_forensics.readers.pcap import iter_datagrams

    udp = struct.pack(">HHHH", 50000, 4739, 8 + len(IPFIX_MESSAGE), 0) + IPFIX_MESSAGE
    ah = struct.pack(">BBHII", 17, 4, 0, 0x1000, 1) + bytes(range(1, 13))  # 24 bytes
    src = bytes.fromhex("20010db8000000000000000000000009")
    dst = bytes.fromhex("20010db8000000000000000000000001")
    ip6 = struct.pack(">IHBB16s16s", 6 << 28, len(ah) + len(udp), 51, 64, src, dst)
    path = tmp_path / "ah.pcap"
    path.write_bytes(pcap_file([ethernet(0x86DD, ip6 + ah + udp)]))
    report = RunReport()
    found = [d for chunk in iter_datagrams(path, report) for d in chunk]
    assert [(d.exporter, d.exporter_port, d.payload) for d in found] == [
        ("2001:db8::9", 50000, IPFIX_MESSAGE)
    ]
    assert not report.skipped


def test_a_simple_packet_block_keeps_at_most_the_interface_snap_length(tmp_path: Path) -> None:
    """Kills pcap_snaplen (pcap._packet_block: the interface's snap length not applied to a
    Simple Packet Block): its packet data is the lesser of the original length and the
    snap length (pcapng §4.4); bytes beyond them in the block are counted, not read as
    the frame's."""
    from obserae_forensics.readers.pcap import iter_frames

    packet = bytes(range(100))
    path = tmp_path / "spb.pcapng"
    path.write_bytes(
        pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
        + pcapng_block(1, struct.pack("<HHI", 1, 0, 64))
        + pcapng_block(3, struct.pack("<I", len(packet)) + packet)
    )
    report = RunReport()
    frames = list(iter_frames(path, report))
    assert [bytes(f.data) for f in frames] == [packet[:64]]
    assert report.skipped == {"bad_block": 1}
    assert report.skipped_bytes["bad_block"] == 36


# -- IPFIX over TCP --------------------------------------------------------------------------

EXPORTER_IP, COLLECTOR_IP = bytes([192, 0, 2, 9]), bytes([192, 0, 2, 1])


def tcp_segment(seq: int, payload: bytes, sport: int, dport: int, flags: int = 0x18) -> bytes:
    return struct.pack(">HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload


def tcp_messages(
    segments: list[tuple[int, bytes, int]], sport: int, dport: int
) -> tuple[list[Datagram], RunReport]:
    """The datagrams TcpStreams makes of (sequence number, payload, TCP flags) segments."""
    from obserae_forensics.readers.pcap import _address_text
    from obserae_forensics.readers.tcp_streams import Place, TcpStreams

    report = RunReport()
    streams = TcpStreams("tcp.pcap", report, _address_text)
    texts: dict[bytes, str] = {}
    out: list[Datagram] = []
    for number, (seq, payload, flags) in enumerate(segments, 1):
        segment = tcp_segment(seq, payload, sport, dport, flags)
        out += streams.segment(
            number,
            24 + 100 * number,
            EXPORT_US * 1000 + number,
            EXPORTER_IP,
            COLLECTOR_IP,
            segment,
            54 + len(segment),
            texts,
        )
    out += streams.finish(Place(len(segments), 0, EXPORT_US))
    return out, report


def test_a_resync_keeps_the_last_three_bytes_where_a_header_may_begin() -> None:
    """Kills tcp_resync3 (TcpStreams._resync keeping 4 bytes, not 3, when no header is
    found yet): a capture begun inside a connection on port 4739, its first segment ending
    with the first 3 bytes of a message header; the garbage before them is skipped once,
    all of it, and the message is read whole when the rest arrives."""
    first = ipfix(ipfix_template(300, [(8, 4), (2, 4)]), sequence=0)
    second = ipfix(data(300, struct.pack(">II", 1, 5)), sequence=0)
    garbage = b"\x55" * 50
    found, report = tcp_messages(
        [(1000, garbage + first[:3], 0x18), (1053, first[3:] + second, 0x18)], 50000, 4739
    )
    assert [d.payload for d in found] == [first, second]
    assert report.skipped == {"ipfix_stream_resync": 1}
    assert report.skipped_bytes["ipfix_stream_resync"] == 50


def test_a_twenty_byte_header_with_a_reserved_set_id_is_no_ipfix_message() -> None:
    """Kills tcp_msglen (tcp_streams.message_length checking the first set id only of
    messages longer than 20 bytes): off port 4739 a stream is IPFIX when it starts with a
    message header another follows; one whose first 20-byte "message" holds set id 1
    (reserved in IPFIX) is other traffic, whatever follows."""
    fake = struct.pack(">HHIII", 10, 20, EXPORT_S, 0, DOMAIN) + struct.pack(">HH", 1, 4)
    real = ipfix(ipfix_template(300, [(8, 4), (2, 4)]), sequence=0)
    found, report = tcp_messages([(999, b"", 0x02), (1000, fake + real, 0x18)], 40000, 9000)
    assert found == []
    assert not report.skipped
    assert report.ignored["not_udp"] == 2
    # on a valid first set id the same stream is IPFIX (the rule, not the port, decides)
    valid = fake[:16] + struct.pack(">HH", 2, 4)
    found, report = tcp_messages([(999, b"", 0x02), (1000, valid + real, 0x18)], 40000, 9000)
    assert [d.payload for d in found] == [valid, real]


# -- IPFIX over SCTP -------------------------------------------------------------------------


def sctp_data(tsn: int, payload: bytes, *, begin: bool, end: bool, stream: int = 0) -> bytes:
    flags = (0x02 if begin else 0) | (0x01 if end else 0)
    chunk = struct.pack(">BBHIHHI", 0, flags, 16 + len(payload), tsn, stream, 0, 0) + payload
    return chunk + bytes(-len(chunk) % 4)


def sctp_messages(packets: list[bytes], tag: int = 7) -> tuple[list[Datagram], RunReport]:
    """The datagrams SctpAssociations makes of packets of DATA chunks to port 4739."""
    from obserae_forensics.readers.pcap import _address_text
    from obserae_forensics.readers.sctp import SctpAssociations

    report = RunReport()
    associations = SctpAssociations("sctp.pcap", report, _address_text)
    texts: dict[bytes, str] = {}
    out: list[Datagram] = []
    for number, chunks in enumerate(packets, 1):
        packet = struct.pack(">HHII", 33000, 4739, tag, 0) + chunks
        out += associations.packet(
            number,
            24 + 100 * number,
            EXPORT_US * 1000 + number,
            EXPORTER_IP,
            COLLECTOR_IP,
            packet,
            34 + len(packet),
            texts,
            cut=False,
        )
    associations.finish()
    return out, report


def test_sctp_fragments_across_the_tsn_wrap_make_one_message() -> None:
    """Kills sctp_wrap (SctpAssociations._assemble walking back to its first fragment
    without `% TSN_SPACE`): a message whose first fragment has TSN 2**32 - 1 and whose
    last has TSN 0 (RFC 9260 §3.3.1: TSNs wrap) completes when its last fragment comes."""
    message = IPFIX_MESSAGE
    found, report = sctp_messages(
        [
            sctp_data(0xFFFF_FFFF, message[:20], begin=True, end=False),
            sctp_data(0, message[20:], begin=False, end=True),
        ]
    )
    assert [d.payload for d in found] == [message]
    assert not report.skipped


def test_sctp_fragments_of_two_streams_are_no_message() -> None:
    """Kills sctp_stream (SctpAssociations._assemble no longer asking that the fragments
    be of one stream): the fragments of a user message share its stream (RFC 9260 §6.9);
    a first fragment on stream 1 and a last one on stream 2 (a damaged stream number) do
    not make a message, and are counted as fragments never completed."""
    message = IPFIX_MESSAGE
    found, report = sctp_messages(
        [
            sctp_data(10, message[:20], begin=True, end=False, stream=1),
            sctp_data(11, message[20:], begin=False, end=True, stream=2),
        ]
    )
    assert found == []
    assert report.skipped == {"incomplete_fragments": 1}
    assert report.skipped_bytes["incomplete_fragments"] == len(message)


def test_an_association_in_a_slot_an_earlier_one_held_is_numbered_afresh() -> None:
    """Kills dg_transport (Datagram.transport without its SCTP session: the decoder forgot
    the exporter's UDP port instead of the slot's transport session when a new association
    took the slot): each association numbers its records from 0 (RFC 7011 §3.1, §10.2);
    the second read the first's numbering and its messages were reorders."""
    fields = [(8, 4), (2, 4)]
    decoder_report = RunReport()
    decoder = ExportDecoder(decoder_report)
    datagrams = []
    frame = 0
    for association in range(2):  # other flows each (a byte-for-byte copy is a duplicate)
        flows = [struct.pack(">II", 100 * association + k, 1) for k in range(40)]
        messages = [
            ipfix(ipfix_template(300, fields), sequence=0),
            ipfix(data(300, *flows[:20]), sequence=0),
            ipfix(data(300, *flows[20:]), sequence=20),
        ]
        for index, message in enumerate(messages):
            frame += 1
            datagrams.append(
                Datagram(
                    message,
                    EXPORTER,
                    4739,
                    40000,
                    frame,
                    24 + 100 * frame,
                    EXPORT_US + frame,
                    "sctp.pcap",
                    session=1,
                    lane=0,
                    fresh=index == 0,
                    connection=True,
                )
            )
    batches = decoder.feed(datagrams) + decoder.finish()
    assert sum(batch.num_rows for batch in batches) == 80
    s = stats(decoder_report)
    assert (s.reorders, s.sequence_gaps, s.sequence_lost, s.restarts) == (0, 0, 0, 0)


# -- template scope --------------------------------------------------------------------------


def test_data_held_from_a_port_that_defines_no_templates_is_released_by_another() -> None:
    """Kills scope_releases (TemplateScope.releases: only the holding port's own
    definition releases its data): an exporter that sends its data from one port and its
    templates from another (one export sent to two collectors, the copy from a second
    socket) has the data that came first decoded when the template arrives, not counted
    as `no_template` at the end."""
    fields = [(8, 4), (2, 4)]
    report = RunReport()
    decoder = ExportDecoder(report)
    first = Datagram(
        ipfix(data(300, struct.pack(">II", 1, 7)), sequence=0),
        EXPORTER,
        50001,
        4739,
        1,
        24,
        EXPORT_US,
        "ports.pcap",
    )
    second = Datagram(
        ipfix(ipfix_template(300, fields), sequence=0),
        EXPORTER,
        50000,
        4739,
        2,
        124,
        EXPORT_US + 1,
        "ports.pcap",
    )
    batches = decoder.feed([first, second]) + decoder.finish()
    table = pa.Table.from_batches(batches, schema=FLOW_SCHEMA)
    assert table["packets"].to_pylist() == [7]
    assert not report.skipped


def test_a_time_based_selector_declares_no_packet_rate_whatever_else_it_sends() -> None:
    """Kills exp_alg (exports._options_rate reading the packet parameters of any
    selectorAlgorithm): a time-based selector (algorithm 2) has no 1-in-N rate, even if
    its options record also carries samplingSize/samplingPopulation; the exporter stays
    unsampled (the reader's test sends an interval of 50 alone, which reads 1 either way)."""
    options_fields = [(302, 4), (305, 4), (304, 2), (309, 4), (310, 4)]
    body = struct.pack(">HHH", 257, len(options_fields), 1) + b"".join(
        struct.pack(">HH", *f) for f in options_fields
    )
    options = struct.pack(">HH", 3, 4 + len(body)) + body
    for algorithm, rate in ((2, 1), (3, 256)):
        table, report = decode(
            ipfix(
                options,
                ipfix_template(342, [(8, 4), (2, 4), (302, 4)]),
                data(257, struct.pack(">IIHII", 1, 0, algorithm, 1, 256)),
                data(342, struct.pack(">III", 1, 5, 1)),
            )
        )
        assert table["sampling_rate"].to_pylist() == [rate], algorithm
        assert stats(report).sampling_rate == rate, algorithm


# -- sequence numbers ------------------------------------------------------------------------


def test_a_late_message_larger_than_its_hole_takes_back_only_the_hole() -> None:
    """Kills exp_fill_min (_Numbering._fill taking back all the late message's units, not
    at most what its hole lacks): 10 records at 0, then 10 at 15 (5 counted lost), then a
    late 10 at 10; the 5 lost are found, and no more: a loss never goes below 0, and the
    gap it filled is no gap."""
    fields = [(8, 4), (2, 4)]

    def records(base: int) -> bytes:
        return data(300, *[struct.pack(">II", base + k, 1) for k in range(10)])

    _, report = decode(
        ipfix(ipfix_template(300, fields), records(0), sequence=0),
        ipfix(records(100), sequence=15),
        ipfix(records(200), sequence=10),
    )
    s = stats(report)
    assert (s.reorders, s.sequence_gaps, s.sequence_lost) == (1, 0, 0)


def test_a_message_exactly_the_reorder_window_behind_is_a_reorder() -> None:
    """Kills exp_reorder (end_datagram: `<` for `<=` against REORDER_WINDOW): a message
    REORDER_WINDOW (65,536) records behind the expected number is the last a reorder can
    be, as _export_clock's window says (`REORDER_WINDOW < behind` is past it); read as a
    restart, it numbered the stream afresh."""
    from obserae_forensics.readers.exports import REORDER_WINDOW

    fields = [(8, 4), (2, 4)]
    one = data(300, struct.pack(">II", 1, 1))
    _, report = decode(
        ipfix(ipfix_template(300, fields), one, sequence=100_000),
        ipfix(data(300, struct.pack(">II", 2, 1)), sequence=100_001 - REORDER_WINDOW),
    )
    s = stats(report)
    assert (s.reorders, s.restarts) == (1, 0)
    _, report = decode(
        ipfix(ipfix_template(300, fields), one, sequence=100_000),
        ipfix(data(300, struct.pack(">II", 2, 1)), sequence=100_000 - REORDER_WINDOW),
    )
    s = stats(report)
    assert (s.reorders, s.restarts) == (0, 1)  # one more behind: numbered afresh


# -- block compression -----------------------------------------------------------------------


def test_bytes_after_a_bzip2_block_stream_are_damage(tmp_path: Path) -> None:
    """Kills cmp_bz2_tail (compression._decompress_bz2 without its unused_data check): a
    BZ2 block's payload is one bzip2 stream; bytes after it are damage, counted with the
    block (`bad_compression`), as nfdump's BZ2_bzDecompress refuses them, not passed over
    without a word."""
    import bz2

    import pytest

    from obserae_forensics.readers.compression import BZ2, BadCompression, decompress_block
    from obserae_forensics.readers.nfcapd import read_nfcapd
    from obserae_forensics.readers.nfcapd_write import read_raw, write_v2

    raw_bytes = bytes(range(256)) * 40
    with pytest.raises(BadCompression, match="8 bytes after the bzip2 stream"):
        decompress_block(BZ2, bz2.compress(raw_bytes) + bytes(8), source="f", offset=8)
    raw = read_raw(FIXTURES / "nfcapd178_sf_v9_varsvc.bz2.nfcapd")
    assert raw.compression == BZ2 and len(raw.blocks) == 1
    raw.ident, raw.stat = "", None
    path = tmp_path / "tail.nfcapd"
    write_v2(path, raw)  # one BZ2 block, no appendix
    data_bytes = bytearray(path.read_bytes())
    size = struct.unpack_from("<I", data_bytes, 40 + 4)[0]
    struct.pack_into("<I", data_bytes, 40 + 4, size + 16)
    path.write_bytes(bytes(data_bytes) + b"\x42" * 16)
    report = RunReport()
    table = pa.Table.from_batches(list(read_nfcapd(path, report)), schema=FLOW_SCHEMA)
    assert table.num_rows == 0
    assert report.skipped == {"bad_compression": 1}
