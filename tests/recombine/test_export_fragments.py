"""A datagram that arrived in IP fragments is exported whole: every fragment frame."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.l2 import Ether
from scapy.layers.netflow import NetflowHeader, NetflowHeaderV5, NetflowRecordV5
from scapy.utils import rdpcap, wrpcap
from typer.testing import CliRunner

from obserae_forensics.cli import app

runner = CliRunner()


def test_fragmented_datagram_exports_all_its_fragments(tmp_path: Path) -> None:
    records = [NetflowRecordV5(src="10.0.0.1", dst="10.0.0.2", srcport=40000 + i, dstport=443,
                               prot=6, tcpFlags=0x1B, dpkts=3, dOctets=300, first=1000 + i,
                               last=2000 + i) for i in range(30)]
    datagram = NetflowHeader(version=5) / NetflowHeaderV5(
        count=30, sysUptime=5000, unixSecs=1_700_000_000) / b"".join(bytes(r) for r in records)
    packet = IP(src="192.0.2.9", dst="192.0.2.1", id=4242) / UDP(sport=9995, dport=2055) / datagram
    pieces = [Ether() / p for p in fragment(packet, fragsize=600)]
    assert len(pieces) == 3
    other = Ether() / IP(src="192.0.2.9", dst="192.0.2.1") / UDP(sport=9995, dport=2055) / (
        NetflowHeader(version=5) / NetflowHeaderV5(count=1, sysUptime=6000,
                                                   unixSecs=1_700_000_001)
        / NetflowRecordV5(src="10.9.9.9", dst="10.8.8.8", srcport=1, dstport=2, prot=17,
                          dpkts=1, dOctets=60, first=5500, last=5500))
    capture = tmp_path / "frag.pcap"
    for index, frame in enumerate([*pieces, other]):
        frame.time = 1_700_000_000 + index
    wrpcap(str(capture), [*pieces, other])

    run = tmp_path / "run"
    made = runner.invoke(app, ["sessionize", str(capture), "--out", str(run), "-q"])
    assert made.exit_code == 0, made.output
    import pyarrow.parquet as pq

    sessions = pq.read_table(run / "sessions.parquet").to_pandas()
    assert int(sessions["flow_count"].sum()) == 31
    wanted = sessions[sessions["port_a"] == 40007].iloc[0]["session_id"]
    exported = tmp_path / "one.pcap"
    result = runner.invoke(app, ["recombine", str(run), "--session", wanted,
                                 "--export-pcap", str(exported)])
    assert result.exit_code == 0, result.output
    frames = rdpcap(str(exported))
    assert [bytes(f) for f in frames] == [bytes(p) for p in pieces]
