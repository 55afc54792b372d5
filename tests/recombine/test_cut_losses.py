"""A datagram lost at the cut between two runs' captures was seen by neither run's sequence
check, and the conversations it carried came out whole (a responder's review): recombine
compares each exporter's first message in a run with the last message of the run before
it in the numbering (runs.cut_losses), from the manifests' `counts.sequence_ends`."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.netflow import NetflowHeader, NetflowHeaderV5, NetflowRecordV5
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.recombine import recombine_tables
from obserae_forensics.recombine.runs import Run, _units_behind, _units_between, cut_losses
from tests.conftest import FIXTURES
from tests.readers.test_pcap import pcap_bytes

EXPORT_S = 1_700_000_000
PM_V5 = FIXTURES / "restarts" / "pm_v5.pcap"


def frames_of(path: Path) -> tuple[bytes, list[bytes]]:
    """A classic pcap's header and its records (16-byte header and data each)."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"  # little-endian, µs
    records, at = [], 24
    while at < len(data):
        length = struct.unpack_from("<I", data, at + 8)[0]
        records.append(data[at : at + 16 + length])
        at += 16 + length
    return data[:24], records


def write_frames(path: Path, header: bytes, records: list[bytes]) -> Path:
    path.write_bytes(header + b"".join(records))
    return path


def sessionize(capture: Path, out: Path) -> Path:
    said = CliRunner().invoke(app, ["sessionize", str(capture), "--out", str(out), "-q"])
    assert said.exit_code == 0, said.output
    return out


def test_a_datagram_lost_at_the_cut_is_said_on_the_later_run(tmp_path: Path) -> None:
    """pmacct's v5 capture misses one datagram of 29 flows between its frames 13 and 14:
    one run over it says so; cut there, neither run did."""
    header, records = frames_of(PM_V5)
    whole = sessionize(PM_V5, tmp_path / "whole")
    first = sessionize(write_frames(tmp_path / "a.pcap", header, records[:13]), tmp_path / "a")
    second = sessionize(write_frames(tmp_path / "b.pcap", header, records[13:]), tmp_path / "b")
    result = recombine_tables([second, first])
    notes = {run["path"]: run["notes"] for run in result.report["runs"]}
    assert notes[str(first)] == []
    assert notes[str(second)] == [
        "the sequence numbers of 127.0.0.1 (domain 0, v5) go on 29 unit(s) past where run 0 "
        "ended: neither run's captures hold what they number (lost at the cut, or sent "
        "between the captures)"
    ]
    assert "29 unit(s) lost" in recombine_tables([whole]).report["runs"][0]["notes"][0]
    # cut where nothing is missing, the two runs follow one another: no note
    third = sessionize(write_frames(tmp_path / "c.pcap", header, records[:6]), tmp_path / "c")
    fourth = sessionize(write_frames(tmp_path / "d.pcap", header, records[6:13]), tmp_path / "d")
    quiet = recombine_tables([third, fourth])
    assert [run["notes"] for run in quiet.report["runs"]] == [[], []]


def test_a_run_whose_first_datagrams_came_swapped_starts_at_the_earlier(
    tmp_path: Path,
) -> None:
    """The first message numbered is the run's start unless a message numbered before it
    arrives late: swapped, the later one read the earlier's flows as lost at the cut."""
    header, records = frames_of(PM_V5)
    first = sessionize(write_frames(tmp_path / "a.pcap", header, records[:5]), tmp_path / "a")
    swapped = [records[6], records[5], *records[7:13]]
    second = sessionize(write_frames(tmp_path / "b.pcap", header, swapped), tmp_path / "b")
    result = recombine_tables([first, second])
    assert [run["notes"] for run in result.report["runs"]] == [[], []]


def end(first: int, last: int, expected: int | None, **more: Any) -> dict[str, Any]:
    return {
        "exporter": "192.0.2.1",
        "domain": 0,
        "version": 10,
        "first": first,
        "first_units": more.pop("units", None),
        "first_flow_units": more.pop("flow_units", None),
        "last": last,
        "expected": expected,
        "expected_flows": more.pop("expected_flows", None),
        "inclusive": more.pop("inclusive", 0),
        "counts_messages": more.pop("counts_messages", False),
    }


@pytest.mark.parametrize(
    ("before", "after", "units"),
    [
        (end(0, 90, 100), end(100, 200, 210), 0),  # RFC: the units before it
        (end(0, 90, 100), end(130, 200, 210), 30),
        (end(0, 90, 100, expected_flows=95), end(95, 200, 210), 0),  # flow records alone
        (end(0, 90, 100), end(50, 200, 210), None),  # behind: overlapping runs, a restart
        (end(0, 90, None), end(130, 200, 210), None),  # the last message's count unknown
        # softflowd's IPFIX: a message numbers its own records too
        (end(0, 90, 100, inclusive=2), end(100, 200, 210, units=10), 0),
        (end(0, 90, 100, inclusive=2), end(120, 200, 210, units=10), 20),
        (end(0, 90, 100, inclusive=1), end(130, 200, 210), None),  # its records unknown
        # an exporter that numbers messages
        (end(0, 90, 100, counts_messages=True), end(91, 200, 210), 0),
        # the numbering wraps at 2**32
        (end(0, 2**32 - 10, 5), end(9, 20, 30), 4),
    ],
)
def test_units_between_two_runs(
    before: dict[str, Any], after: dict[str, Any], units: int | None
) -> None:
    assert _units_between(before, after) == units


def test_each_run_is_paired_with_the_run_next_in_the_numbering(tmp_path: Path) -> None:
    """Runs ordered by when their records arrived need not be in the exporter's order
    (three slices of a softflowd capture came out 0, 2, 1): each run's end is compared with
    the first message nearest ahead of it, and the last run's end with none."""
    runs = [Run(path=tmp_path / name, index=index) for index, name in enumerate("abc")]
    runs[0].sequence_ends = [end(0, 90, 100)]
    runs[1].sequence_ends = [end(250, 290, 300)]
    runs[2].sequence_ends = [end(100, 190, 200)]
    cut_losses(runs)
    assert runs[0].losses == runs[2].losses == []
    assert runs[1].losses == [
        "the sequence numbers of 192.0.2.1 (domain 0, v10) go on 50 unit(s) past where run 2 "
        "ended: neither run's captures hold what they number (lost at the cut, or sent "
        "between the captures)"
    ]


def v5_capture(path: Path, datagrams: range) -> Path:
    """One exporter's TCP conversation, a record every 10 s, each in a v5 datagram numbered
    by the flows before it; the datagrams of `datagrams` are written."""
    frames = []
    for i in datagrams:
        uptime = 100_000 + i * 10_000
        header = NetflowHeader(version=5) / NetflowHeaderV5(
            count=1, sysUptime=uptime, unixSecs=EXPORT_S + i * 10, flowSequence=i
        )
        flow = NetflowRecordV5(
            src="10.0.0.1",
            dst="10.0.0.2",
            srcport=40000,
            dstport=443,
            prot=6,
            tcpFlags=0x18,
            dpkts=3,
            dOctets=180,
            first=uptime - 9_000,
            last=uptime - 1_000,
        )
        packet = Ether() / IP(src="192.0.2.9", dst="198.51.100.7") / UDP(sport=40000, dport=2055)
        frames.append(((EXPORT_S + i * 10) * 10**9, bytes(packet / header / flow)))
    path.write_bytes(pcap_bytes(frames))
    return path


def test_captures_that_overlap_are_said_on_the_later_run(tmp_path: Path) -> None:
    """Two captures that share datagrams: both runs read their records, and recombined,
    the conversation counted them twice without a word (a review: 42 flows of 40). The
    later run starts where the earlier one had already read: said with the units, on
    stderr and in the report."""
    first = sessionize(v5_capture(tmp_path / "a.pcap", range(4)), tmp_path / "a")
    second = sessionize(v5_capture(tmp_path / "b.pcap", range(2, 6)), tmp_path / "b")
    said = (
        "the sequence numbers of 192.0.2.9 (domain 0, v5) start 2 unit(s) before where "
        "run 0 ended: those records may be in both runs (captures that overlap), and "
        "recombined, their conversations count them twice"
    )
    result = recombine_tables([second, first])
    assert [run["notes"] for run in result.report["runs"]] == [[], [said]]
    command = CliRunner().invoke(
        app, ["recombine", str(first), str(second), "--out", str(tmp_path / "out")]
    )
    assert command.exit_code == 0, command.output
    assert f"warning: run 1 ({second}): {said}" in command.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [run["notes"] for run in report["runs"]] == [[], [said]]
    assert said in (tmp_path / "out" / "report.md").read_text()
    # the next capture, or one after a datagram lost: no overlap
    third = sessionize(v5_capture(tmp_path / "c.pcap", range(5, 8)), tmp_path / "c")
    assert [run["notes"] for run in recombine_tables([first, third]).report["runs"]] == [
        [],
        [
            "the sequence numbers of 192.0.2.9 (domain 0, v5) go on 1 unit(s) past where run 0 "
            "ended: neither run's captures hold what they number (lost at the cut, or sent "
            "between the captures)"
        ],
    ]


def test_runs_that_start_at_one_number_are_said_once(tmp_path: Path) -> None:
    """Two runs of the same numbers (one capture read twice) start inside each other: the
    later one says so; an exporter restarted, numbering afresh behind all the run before
    read, says nothing; nor do runs over --from/--to windows, which read the records of a
    datagram across the cut within their own (nfreplay's capture cut at an instant)."""
    runs = [Run(path=tmp_path / name, index=index) for index, name in enumerate("abc")]
    runs[0].sequence_ends = [end(100, 190, 200)]
    runs[1].sequence_ends = [end(100, 190, 200)]
    runs[2].sequence_ends = [end(3, 90, 100)]
    runs[0].arrivals, runs[1].arrivals, runs[2].arrivals = (0, 100), (0, 100), (200, 300)
    cut_losses(runs)
    assert runs[0].overlaps == runs[2].overlaps == []
    assert runs[1].overlaps == [
        "the sequence numbers of 192.0.2.1 (domain 0, v10) start 100 unit(s) before where "
        "run 0 ended: those records may be in both runs (captures that overlap), and "
        "recombined, their conversations count them twice"
    ]
    # numbers within another run's, captured after it: the exporter numbering afresh (a
    # review: slices of pmacct's restart capture, the later ones after the restart within
    # the earlier ones' numbers, read as overlapping); and arrivals unknown say nothing
    for later in ((101, 200), None):
        runs = [Run(path=tmp_path / name, index=index) for index, name in enumerate("ab")]
        runs[0].sequence_ends = [end(100, 190, 200)]
        runs[1].sequence_ends = [end(120, 130, 140)]
        runs[0].arrivals, runs[1].arrivals = (0, 100), later
        cut_losses(runs)
        assert [run.overlaps for run in runs] == [[], []]
    runs[1].arrivals = (100, 200)  # the last frame of one, the first of the other
    cut_losses(runs)
    assert len(runs[1].overlaps) == 1 and "start 80 unit(s) before" in runs[1].overlaps[0]
    windowed = [Run(path=tmp_path / name, index=index) for index, name in enumerate("ab")]
    windowed[0].window, windowed[1].window = (None, 5), (5, None)
    windowed[0].sequence_ends = [end(0, 90, 100)]
    windowed[1].sequence_ends = [end(95, 190, 200)]
    cut_losses(windowed)
    assert [run.overlaps for run in windowed] == [[], []]


@pytest.mark.parametrize(
    ("before", "after", "units"),
    [
        (end(0, 90, 100), end(95, 200, 210), 5),  # RFC: the last 5 units read twice
        (end(0, 90, 100), end(0, 90, 100), 100),  # the same capture
        (end(10, 90, 100), end(5, 200, 210), None),  # behind all it read: a restart
        (end(1000, 1090, 1100), end(5, 200, 210), None),
        # restarted within the run: 174 on to 58 are no numbers it read (pmacct's v5)
        (end(174, 29, 58), end(0, 145, 174), None),
        (end(0, 90, 100), end(100, 200, 210), None),  # follows
        (end(0, 90, 100), end(130, 200, 210), None),  # ahead: a loss
        (end(0, 90, 100, expected_flows=95), end(97, 200, 210), None),  # flow records ahead
        (end(0, 90, 100, expected_flows=95), end(93, 200, 210), 2),  # the fewer
        (end(0, 90, None), end(50, 200, 210), None),  # the last message's count unknown
        # softflowd's IPFIX: a message numbers its own records too
        (end(0, 90, 100, inclusive=2), end(100, 200, 210, units=10), None),
        (end(10, 90, 100, inclusive=2, units=10), end(85, 200, 210, units=10), 15),
        (end(0, 90, 100, inclusive=1), end(50, 200, 210), None),  # its records unknown
        # an exporter that numbers messages
        (end(0, 90, 100, counts_messages=True), end(91, 200, 210), None),
        (end(0, 90, 100, counts_messages=True), end(89, 200, 210), 2),
        # the numbering wraps at 2**32
        (end(2**32 - 50, 2**32 - 10, 5), end(2**32 - 5, 20, 30), 10),
        (end(2**32 - 50, 2**32 - 10, 5), end(2, 20, 30), 3),
        (end(2**32 - 50, 2**32 - 10, 5), end(2**32 - 60, 20, 30), None),
    ],
)
def test_units_behind_where_another_run_ended(
    before: dict[str, Any], after: dict[str, Any], units: int | None
) -> None:
    assert _units_behind(before, after) == units
