"""Which file is read first when their first records arrived at one instant: the answer
changes sessions (a record read after another's can be late), so it may depend on the
files alone, never on how they were named."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.netflow import NetflowRecordV5
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.readers import discover_inputs
from obserae_forensics.report import RunReport

from .test_netflow_v5 import EXPORT_S, v5
from .test_pcap import pcap_bytes


def capture(path: Path, source: str, start_ms: int, sequence: int) -> Path:
    """One v5 datagram of one record, exported at EXPORT_S (uptime 200 s), its frame
    captured at EXPORT_S whatever the record: every such capture ties on first arrival."""
    record = NetflowRecordV5(src=source, dst="10.0.0.9", srcport=40000, dstport=53, prot=17,
                             dpkts=1, dOctets=60, first=start_ms, last=start_ms)
    frame = bytes(IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=40000, dport=2055)
                  / v5([record], uptime_ms=200_000, sequence=sequence))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pcap_bytes([(EXPORT_S * 10**9, frame)], linktype=101))
    return path


@pytest.fixture
def evidence(tmp_path: Path) -> Path:
    """a.pcap's record ends at 200 s; b.pcap's at 10 s, late when read after a.pcap's."""
    capture(tmp_path / "case" / "a.pcap", "10.0.0.1", 200_000, 0)
    capture(tmp_path / "case" / "b.pcap", "10.0.0.2", 10_000, 1)
    os.symlink(tmp_path / "case", tmp_path / "link")
    return tmp_path


def order(paths: list[Path]) -> list[str]:
    return [os.path.realpath(f.path) for f in discover_inputs(paths, RunReport())]


def test_tied_files_are_ordered_by_where_they_are_not_by_their_spelling(
        evidence: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by an audit: ties were broken by the path as given, so `a.pcap` named relative
    beside `/.../b.pcap` came after it, and its exporter's sessions changed (pmacct's
    test captures: 1,508 sessions against 1,537)."""
    monkeypatch.chdir(evidence / "case")
    a, b = evidence / "case" / "a.pcap", evidence / "case" / "b.pcap"
    expected = [str(a), str(b)]
    assert order([a, b]) == expected
    assert order([b, Path("a.pcap")]) == expected
    assert order([evidence / "link" / "b.pcap", a]) == expected
    assert order([evidence / "link"]) == expected


def test_a_file_named_twice_is_read_once_under_one_name(evidence: Path) -> None:
    a = evidence / "case" / "a.pcap"
    os.link(a, evidence / "hard.pcap")
    names = []
    for paths in ([evidence / "case", evidence / "link" / "a.pcap", evidence / "hard.pcap"],
                  [evidence / "hard.pcap", evidence / "link" / "a.pcap", evidence / "case"]):
        names.append([str(f.path) for f in discover_inputs(paths, RunReport())])
    assert names[0] == names[1]
    assert len(names[0]) == 2  # a.pcap under one of its three names, and b.pcap


def test_the_sessions_do_not_depend_on_how_the_files_were_named(
        evidence: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(evidence / "case")
    spellings = ([str(evidence / "case" / "a.pcap"), str(evidence / "case" / "b.pcap")],
                 [str(evidence / "case" / "b.pcap"), "a.pcap"],
                 [str(evidence / "link" / "b.pcap"), str(evidence / "case" / "a.pcap")])
    tables = []
    for number, inputs in enumerate(spellings):
        out = evidence / f"run{number}"
        result = CliRunner().invoke(app, ["sessionize", *inputs, "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
        tables.append((out / "sessions.parquet").read_bytes())
    assert tables[0] == tables[1] == tables[2]
    late = pq.read_table(evidence / "run0" / "sessions.parquet").column("late").to_pylist()
    assert sorted(late) == [False, True]  # b.pcap's record is read second, and late
