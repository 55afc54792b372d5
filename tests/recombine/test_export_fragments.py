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
    records = [
        NetflowRecordV5(
            src="10.0.0.1",
            dst="10.0.0.2",
            srcport=40000 + i,
            dstport=443,
            prot=6,
            tcpFlags=0x1B,
            dpkts=3,
            dOctets=300,
            first=1000 + i,
            last=2000 + i,
        )
        for i in range(30)
    ]
    datagram = (
        NetflowHeader(version=5)
        / NetflowHeaderV5(count=30, sysUptime=5000, unixSecs=1_700_000_000)
        / b"".join(bytes(r) for r in records)
    )
    packet = IP(src="192.0.2.9", dst="192.0.2.1", id=4242) / UDP(sport=9995, dport=2055) / datagram
    pieces = [Ether() / p for p in fragment(packet, fragsize=600)]
    assert len(pieces) == 3
    other = (
        Ether()
        / IP(src="192.0.2.9", dst="192.0.2.1")
        / UDP(sport=9995, dport=2055)
        / (
            NetflowHeader(version=5)
            / NetflowHeaderV5(count=1, sysUptime=6000, unixSecs=1_700_000_001)
            / NetflowRecordV5(
                src="10.9.9.9",
                dst="10.8.8.8",
                srcport=1,
                dstport=2,
                prot=17,
                dpkts=1,
                dOctets=60,
                first=5500,
                last=5500,
            )
        )
    )
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
    result = runner.invoke(
        app, ["recombine", str(run), "--session", wanted, "--export-pcap", str(exported)]
    )
    assert result.exit_code == 0, result.output
    frames = rdpcap(str(exported))
    assert [bytes(f) for f in frames] == [bytes(p) for p in pieces]


def split_run(tmp_path: Path, frames_per_file: int) -> tuple[list[Path], Path, list[dict]]:
    """softflowd's real v9 datagrams fragmented at 600 bytes (3, 3 and 2 frames), cut into
    files by `editcap -c N` and sessionized as one run: the files, the run, its flows."""
    import subprocess

    import pyarrow.parquet as pq

    from tests.conftest import need_tool
    from tests.readers.test_fragments_across_files import fragmented_export

    editcap = need_tool("editcap")
    whole = fragmented_export(tmp_path / "whole.pcap")
    parts = tmp_path / "parts"
    parts.mkdir()
    subprocess.run(
        [editcap, "-c", str(frames_per_file), str(whole), str(parts / "rot.pcap")],
        check=True,
        capture_output=True,
    )
    files = sorted(parts.iterdir())
    run = tmp_path / "run"
    made = runner.invoke(app, ["sessionize", *map(str, files), "--out", str(run), "-q"])
    assert made.exit_code == 0, made.output
    return files, run, pq.read_table(run / "flows.parquet").to_pylist()


def test_a_datagram_a_rotation_cut_between_its_fragments_exports_whole(tmp_path: Path) -> None:
    """The run reassembles a datagram whose first fragments are in the file before
    (`tcpdump -C`, editcap -c); its provenance names its last fragment, in the later file,
    and the export held only the fragments of that file: a datagram that could not be
    reassembled. Now the earlier file's tail gives the rest, and the export decoded alone
    gives the run's records."""
    from obserae_forensics.recombine import export_pcap

    files, run, flows = split_run(tmp_path, 4)
    # the second datagram: fragments 4 (first file), 5 and 6 (frames 1 and 2 of the second)
    cut = sorted(
        {
            row["session_id"]
            for row in flows
            if (row["source_file"], row["source_frame"]) == (str(files[1]), 2)
        }
    )
    assert cut
    exported = export_pcap([run], cut[:1], tmp_path / "cut.pcap")
    frames = rdpcap(str(tmp_path / "cut.pcap"))
    # the first datagram (templates; all in the first file), then the three of the second
    assert [(frame[IP].id, frame[IP].frag) for frame in frames] == [
        (4000, 0),
        (4000, 75),
        (4000, 150),
        (4001, 0),
        (4001, 75),
        (4001, 150),
    ]
    count = sum(row["session_id"] == cut[0] for row in flows)
    assert (exported.checked_records, exported.differing_records) == (count, 0)


def test_a_datagram_over_three_files_exports_whole(tmp_path: Path) -> None:
    """Found by review: a file per frame (`editcap -c 1`; small `-G` files do it too): the
    second datagram's three fragments lie in three files, and the export looked one file
    back only (its first fragment was missing, 0 of 2 records as in the run)."""
    from obserae_forensics.recombine import export_pcap

    files, run, flows = split_run(tmp_path, 1)
    wanted = sorted({row["session_id"] for row in flows if row["source_file"] == str(files[5])})
    exported = export_pcap([run], wanted[:1], tmp_path / "cut.pcap")
    frames = rdpcap(str(tmp_path / "cut.pcap"))
    assert [(frame[IP].id, frame[IP].frag) for frame in frames][-3:] == [
        (4001, 0),
        (4001, 75),
        (4001, 150),
    ]
    assert exported.differing_records == 0 and exported.checked_records > 0
