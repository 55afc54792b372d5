"""ICMPv6 type/code given in the low byte of the destination port (IOS-XR, Procera): read
as the type, ICMPv6 type 0 being reserved. ICMP's is left as sent: an echo reply of
code 9 (Linux answering nmap's OS probe) is as real as Procera's echo request sent as 8."""

from __future__ import annotations

import ipaddress
import json
import struct
from pathlib import Path

import pyarrow.parquet as pq
from scapy.layers.inet import IP, UDP
from typer.testing import CliRunner

from obserae_forensics.cli import app

from .test_ipfix import EXPORT_S, message, template
from .test_ipfix import data as data_set
from .test_pcap import pcap_bytes

V4 = [
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
V6 = [
    (27, 16, 0),
    (28, 16, 0),
    (4, 1, 0),
    (7, 2, 0),
    (11, 2, 0),
    (1, 8, 0),
    (2, 8, 0),
    (152, 8, 0),
    (153, 8, 0),
]
START_MS = EXPORT_S * 1000 - 20_000


def record(src: str, dst: str, protocol: int, dst_port: int, at_ms: int) -> bytes:
    return (
        ipaddress.ip_address(src).packed
        + ipaddress.ip_address(dst).packed
        + struct.pack(">BHHQQQQ", protocol, 0, dst_port, 84, 1, at_ms, at_ms)
    )


def run(tmp_path: Path) -> tuple[list[dict[str, object]], dict[str, object]]:
    payload = message(
        template(300, V4),
        template(301, V6),
        data_set(
            300,
            # nmap's OS probe, an echo request of code 9, and Linux's reply, which
            # keeps the request's code: type 0 code 9, not type 9 (router advert.)
            record("10.0.0.1", "10.0.0.2", 1, 0x0809, START_MS),
            record("10.0.0.2", "10.0.0.1", 1, 9, START_MS + 1),
            record("10.0.0.3", "10.0.0.4", 1, 0x0303, START_MS + 2),
        ),  # port unreach.
        data_set(301, record("2001:db8::1", "2001:db8::2", 58, 135, START_MS + 3)),
    )
    frame = bytes(IP(src="192.0.2.9", dst="198.51.100.7") / UDP(sport=4739, dport=4739) / payload)
    path = tmp_path / "icmp.pcap"
    path.write_bytes(pcap_bytes([(EXPORT_S * 10**9, frame)], linktype=101))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["sessionize", str(path), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    sessions = (
        pq.read_table(out / "sessions.parquet")
        .sort_by("opened_at")
        .select(["client_ip", "server_ip", "role_method", "icmp_type", "icmp_code"])
        .to_pylist()
    )
    flows = pq.read_table(out / "flows.parquet").sort_by("record_index")
    assert flows.column("dst_port").to_pylist() == [0x0809, 9, 0x0303, 135 << 8]
    return sessions, json.loads((out / "manifest.json").read_text())


def test_an_icmpv6_type_in_the_low_byte_is_the_type_not_an_icmp_code(tmp_path: Path) -> None:
    sessions, manifest = run(tmp_path)
    assert sessions == [
        {
            "client_ip": "10.0.0.1",
            "server_ip": "10.0.0.2",
            "role_method": "icmp_echo",
            "icmp_type": 8,
            "icmp_code": 9,
        },
        {
            "client_ip": "10.0.0.4",
            "server_ip": "10.0.0.3",
            "role_method": "icmp_error",
            "icmp_type": 3,
            "icmp_code": 3,
        },
        # neighbour solicitation, not the reserved type 0
        {
            "client_ip": "2001:db8::1",
            "server_ip": "2001:db8::2",
            "role_method": "first_sender",
            "icmp_type": 135,
            "icmp_code": 0,
        },
    ]
    assert manifest["counts"]["repaired"] == {"icmp_type_low_byte": 1}
    assert manifest["conservation"]["ok"] is True
