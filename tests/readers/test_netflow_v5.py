"""NetFlow v5 decoding, with scapy's NetflowHeaderV5/NetflowRecordV5 as the independent encoder."""

from __future__ import annotations

import ipaddress

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.netflow import NetflowHeader, NetflowHeaderV5, NetflowRecordV5

from obserae_forensics.addresses import address_text
from obserae_forensics.errors import TruncatedInput
from obserae_forensics.readers.datagrams import Datagram
from obserae_forensics.readers.exports import ExportDecoder, export_version
from obserae_forensics.report import RunReport
from obserae_forensics.schema import FLOW_SCHEMA

EXPORT_S = 1_700_000_000


def datagram(payload: bytes, frame: int = 1, exporter: str = "192.0.2.1") -> Datagram:
    return Datagram(
        payload,
        exporter,
        40000,
        2055,
        frame,
        24 + 100 * frame,
        EXPORT_S * 1_000_000 + frame,
        "v5.pcap",
    )


def v5(
    records: list[NetflowRecordV5],
    *,
    uptime_ms: int = 100_000,
    sequence: int = 0,
    sampling: int = 0,
    count: int | None = None,
    nsecs: int = 0,
) -> bytes:
    header = NetflowHeader(version=5) / NetflowHeaderV5(
        count=len(records) if count is None else count,
        sysUptime=uptime_ms,
        unixSecs=EXPORT_S,
        unixNanoSeconds=nsecs,
        flowSequence=sequence,
        engineType=1,
        engineID=2,
        samplingInterval=sampling,
    )
    packet = header
    for record in records:
        packet = packet / record
    return bytes(packet)


def decode(*payloads: bytes, report: RunReport | None = None) -> tuple[pa.Table, RunReport]:
    report = report or RunReport()
    decoder = ExportDecoder(report)
    batches = decoder.feed([datagram(p, frame=i + 1) for i, p in enumerate(payloads)])
    batches += decoder.finish()
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


def test_v5_fields_and_uptime_anchored_times() -> None:
    payload = v5(
        [
            NetflowRecordV5(
                src="10.0.0.1",
                dst="10.0.0.2",
                nexthop="10.0.0.254",
                input=3,
                output=4,
                dpkts=7,
                dOctets=900,
                first=90_000,
                last=99_500,
                srcport=1234,
                dstport=80,
                tcpFlags=0x1B,
                prot=6,
                tos=8,
                src_as=65001,
                dst_as=65002,
            ),
            NetflowRecordV5(
                src="10.0.0.2",
                dst="10.0.0.1",
                dpkts=1,
                dOctets=40,
                first=95_000,
                last=95_000,
                prot=17,
                srcport=53,
                dstport=5353,
                tcpFlags=0,
            ),
        ],
        uptime_ms=100_000,
        nsecs=250_000_000,
    )
    assert export_version(payload) == 5
    table, report = decode(payload)
    rows = table.to_pylist()
    assert len(rows) == 2
    first = rows[0]
    assert address_text(first["src_addr"]) == "10.0.0.1"
    assert address_text(first["dst_addr"]) == "10.0.0.2"
    assert address_text(first["next_hop"]) == "10.0.0.254"
    assert (first["src_port"], first["dst_port"], first["protocol"]) == (1234, 80, 6)
    assert (first["tcp_flags"], first["tos"]) == (0x1B, 8)
    assert (first["packets"], first["octets"]) == (7, 900)
    assert (first["input_if"], first["output_if"], first["src_as"], first["dst_as"]) == (
        3,
        4,
        65001,
        65002,
    )
    export_us = EXPORT_S * 1_000_000 + 250_000
    # boot = export - sysUptime; First 90 000 ms after boot = 10 s before export
    assert int(table["first_seen"][0].value) == export_us - 10_000_000
    assert int(table["last_seen"][0].value) == export_us - 500_000
    assert first["export_version"] == 5 and first["ip_version"] == 4
    assert first["exporter"] == "192.0.2.1" and first["exporter_domain"] == 1 << 8 | 2
    assert [r["record_index"] for r in rows] == [0, 1]
    assert first["source_frame"] == 1 and first["source_offset"] == 124
    stats = report.exporters[("192.0.2.1", 258)]
    assert (stats.datagrams, stats.records, stats.packets, stats.octets) == (1, 2, 8, 940)
    assert stats.first_export_us == export_us


def test_v5_sysuptime_wrap_keeps_flow_before_export() -> None:
    # sysUptime wrapped to 1 000 ms; the flow started 5 000 ms before the wrap
    payload = v5([NetflowRecordV5(first=(1 << 32) - 5_000, last=500)], uptime_ms=1_000)
    table, _ = decode(payload)
    export_us = EXPORT_S * 1_000_000
    assert int(table["first_seen"][0].value) == export_us - 6_000_000
    assert int(table["last_seen"][0].value) == export_us - 500_000


def test_v5_last_slightly_after_uptime_is_not_49_days_old() -> None:
    payload = v5([NetflowRecordV5(first=100_000, last=100_040)], uptime_ms=100_000)
    table, _ = decode(payload)
    assert int(table["last_seen"][0].value) == EXPORT_S * 1_000_000 + 40_000


def test_v5_sampling_interval_from_header() -> None:
    payload = v5([NetflowRecordV5()], sampling=(1 << 14) | 100)
    table, report = decode(payload)
    assert table["sampling_rate"].to_pylist() == [100]
    assert table["counters_scaled"].to_pylist() == [False]
    assert report.exporters[("192.0.2.1", 258)].sampling_rate == 100


def test_v5_icmp_type_code_in_dst_port() -> None:
    """Cisco's PFC3B NDE sends the ICMP code and type in the source port, code first:
    nfdump 1.7.1 swaps the bytes (srcport 0x0008 is echo request 8.0, checked against
    nfcapd by an audit); moved as it stood, it read as an echo reply of code 8."""
    payload = v5(
        [
            NetflowRecordV5(prot=1, srcport=0, dstport=0x0800),
            NetflowRecordV5(prot=1, srcport=0x0008, dstport=0),
            NetflowRecordV5(prot=1, srcport=0x0103, dstport=0),
            NetflowRecordV5(prot=1, srcport=0x0008, dstport=0x0303),
        ]
    )
    table, _ = decode(payload)
    assert table["dst_port"].to_pylist() == [0x0800, 0x0800, 0x0301, 0x0303]
    assert table["src_port"].to_pylist() == [0, 0, 0, 0]


def test_v5_cut_off_datagram_keeps_whole_records_and_says_where() -> None:
    payload = v5([NetflowRecordV5(dpkts=1), NetflowRecordV5(dpkts=2), NetflowRecordV5(dpkts=3)])
    table, report = decode(payload[: 24 + 48 * 2 + 20])
    assert table["packets"].to_pylist() == [1, 2]
    assert report.skipped["truncated"] == 1
    assert report.skipped_bytes["truncated"] == 20
    problem = report.examples[0]
    assert (problem.source, problem.offset, problem.frame) == ("v5.pcap", 124, 1)
    assert "header promises 3 records" in problem.message


def test_v5_strict_stops_at_the_cut() -> None:
    payload = v5([NetflowRecordV5(), NetflowRecordV5()])[:100]
    with pytest.raises(TruncatedInput, match=r"^v5\.pcap@124 \(frame 1\): header promises 2"):
        decode(payload, report=RunReport(strict=True))


def test_v5_sequence_counts_flows_gaps_and_duplicates() -> None:
    first = v5([NetflowRecordV5(), NetflowRecordV5()], sequence=0)
    second = v5([NetflowRecordV5()], sequence=2)
    third = v5([NetflowRecordV5()], sequence=10)  # 7 flows (3..9) never arrived
    table, report = decode(first, second, third, first)
    stats = report.exporters[("192.0.2.1", 258)]
    assert table.num_rows == 4  # the repeated first datagram is not decoded twice
    assert (stats.sequence_gaps, stats.sequence_lost, stats.duplicates) == (1, 7, 1)


def test_v5_reordered_datagram_is_a_reorder_not_a_gap() -> None:
    a = v5([NetflowRecordV5()], sequence=0)
    b = v5([NetflowRecordV5()], sequence=1)
    c = v5([NetflowRecordV5()], sequence=2)
    _, report = decode(a, c, b)
    stats = report.exporters[("192.0.2.1", 258)]
    # b fills the gap c opened: nothing is missing (an audit: it stayed "1 lost")
    assert (stats.reorders, stats.sequence_gaps, stats.sequence_lost) == (1, 0, 0)
    d = v5([NetflowRecordV5()] * 3, sequence=6)  # 3..5 never come; c's copy is late again
    _, report = decode(a, d, b, c)
    stats = report.exporters[("192.0.2.1", 258)]
    assert (stats.reorders, stats.sequence_gaps, stats.sequence_lost) == (2, 1, 3)


def test_not_a_flow_export_is_counted_not_decoded() -> None:
    dns = bytes.fromhex("00050100000100000000000003777777076578616d706c6503636f6d0000010001")
    table, report = decode(dns)
    assert table.num_rows == 0
    assert report.ignored["not_flow_export"] == 1
    assert not report.skipped


def test_a_damaged_header_on_an_export_path_is_a_problem_not_other_traffic() -> None:
    """Found by fuzzing: a v5 datagram whose record count was damaged (0, or past 30) was
    listed as other traffic, so a lost datagram of records passed without a problem. Once
    the same exporter and ports sent good v5 exports, it is counted as bad_export_header;
    from anyone else the version bytes alone prove nothing (DNS id 5 above)."""
    good = v5([NetflowRecordV5()], sequence=0)
    damaged = bytearray(v5([NetflowRecordV5()] * 2, sequence=1))
    damaged[2:4] = (0).to_bytes(2, "big")
    table, report = decode(good, bytes(damaged))
    assert table.num_rows == 1
    assert report.skipped == {"bad_export_header": 1}
    assert report.skipped_bytes["bad_export_header"] == len(damaged)
    assert report.examples[0].frame == 2 and "192.0.2.1:40000 to port 2055" in str(
        report.examples[0]
    )
    assert not report.ignored
    # the damaged one first: other traffic until the good one proves the path an export's
    # (it stayed other traffic, found by fuzzing v1/v7, whose first datagram has no other
    # check than its length)
    table, report = decode(bytes(damaged), good)
    assert table.num_rows == 1 and report.skipped == {"bad_export_header": 1}
    assert not report.ignored and report.examples[0].frame == 1
    # the same bytes from another exporter port: other traffic
    report = RunReport()
    decoder = ExportDecoder(report)
    other = Datagram(bytes(damaged), "192.0.2.1", 53, 2055, 2, 224, EXPORT_S * 1_000_000, "v5.pcap")
    decoder.feed([datagram(good), other])
    decoder.finish()
    assert not report.skipped and report.ignored == {"not_flow_export": 1}


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**16 - 1),
            st.integers(0, 2**16 - 1),
            st.integers(0, 2**32 - 1),
            st.integers(0, 2**32 - 1),
            st.sampled_from([6, 17]),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_v5_encode_decode_round_trip(records: list[tuple[int, ...]]) -> None:
    payload = v5(
        [
            NetflowRecordV5(
                src=str(ipaddress.IPv4Address(src)),
                dst=str(ipaddress.IPv4Address(dst)),
                srcport=sport,
                dstport=dport,
                dpkts=packets,
                dOctets=octets,
                prot=proto,
                tcpFlags=flags,
                first=50_000,
                last=60_000,
            )
            for src, dst, sport, dport, packets, octets, proto, flags in records
        ]
    )
    table, _ = decode(payload)
    got = [
        (
            int(ipaddress.IPv4Address(address_text(r["src_addr"]))),
            int(ipaddress.IPv4Address(address_text(r["dst_addr"]))),
            r["src_port"],
            r["dst_port"],
            r["packets"],
            r["octets"],
            r["protocol"],
            r["tcp_flags"],
        )
        for r in table.to_pylist()
    ]
    assert got == [tuple(r) for r in records]
