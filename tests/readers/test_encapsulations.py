"""Real export payloads in other encapsulations decode to the same records.

The datagrams of a corpus capture are re-wrapped (IPv6 transport behind QinQ tags, IPv4
fragments behind Linux SLL2, a pcapng with two interfaces) and must decode to exactly the
flow records the original capture gives: the container changes, nothing else may.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pyarrow as pa
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from obserae_forensics.readers import discover_inputs, read_flows
from obserae_forensics.readers.pcap import iter_datagrams
from obserae_forensics.report import RunReport
from tests.readers.test_pcap import block, epb, idb, pcap_bytes, shb

KEY = [
    "first_seen",
    "last_seen",
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "protocol",
    "tcp_flags",
    "packets",
    "octets",
]


def records(path: Path) -> tuple[list[tuple[object, ...]], RunReport]:
    report = RunReport()
    table = pa.Table.from_batches(list(read_flows(discover_inputs([path], report), report)))
    rows = sorted(tuple(r[k] for k in KEY) for r in table.select(KEY).to_pylist())
    return rows, report


def sll2(protocol: int) -> bytes:
    return struct.pack(">HHIHBB8s", protocol, 0, 2, 1, 0, 6, b"\x00" * 8)


def test_ipv6_qinq_and_sll2_fragments_decode_like_the_original(
    corpus: Path, tmp_path: Path
) -> None:
    original = corpus / "exports" / "sf_v9_test.pcap"
    expected, _ = records(original)
    assert len(expected) == 45
    payloads = [d for chunk in iter_datagrams(original, RunReport()) for d in chunk]

    v6_frames = [
        (
            d.arrival_us * 1000,
            bytes(
                Ether()
                / Dot1AD(vlan=100)
                / Dot1Q(vlan=200)
                / IPv6(src="2001:db8::9", dst="2001:db8::1")
                / UDP(sport=9995, dport=2055)
                / d.payload
            ),
        )
        for d in payloads
    ]
    v6 = tmp_path / "v6.pcap"
    v6.write_bytes(pcap_bytes(v6_frames))
    got, report = records(v6)
    assert got == expected
    assert not report.skipped_problems()
    assert [e[0] for e in report.exporters] == ["2001:db8::9"]

    fragments = []
    for index, d in enumerate(payloads):
        packet = (
            IP(src="192.0.2.50", dst="192.0.2.1", id=index + 1)
            / UDP(sport=9995, dport=2055)
            / d.payload
        )
        fragments += [
            (d.arrival_us * 1000, sll2(0x0800) + bytes(piece))
            for piece in fragment(packet, fragsize=400)
        ]
    assert len(fragments) > len(payloads)
    sll = tmp_path / "sll2.pcap"
    sll.write_bytes(pcap_bytes(fragments, linktype=276))
    got, report = records(sll)
    assert got == expected
    assert not report.skipped_problems()

    content = shb("<") + idb("<", 1) + idb("<", 101, tsresol=9)
    for index, d in enumerate(payloads):
        packet = IP(src="192.0.2.60", dst="192.0.2.1") / UDP(sport=9995, dport=2055) / d.payload
        if index % 2:
            content += epb("<", 1, d.arrival_us * 1000, bytes(packet))
        else:
            content += epb("<", 0, d.arrival_us, bytes(Ether() / packet))
        content += block("<", 5, bytes(12))  # interface statistics (no options): skipped
    ng = tmp_path / "two.pcapng"
    ng.write_bytes(content)
    got, report = records(ng)
    assert got == expected
    assert not report.skipped_problems()
