"""A datagram lost at the cut between two runs' captures was seen by neither run's sequence
check, and the conversations it carried came out whole (a responder's review): recombine
compares each exporter's first message in a run with the last message of the run before
it in the numbering (runs.cut_losses), from the manifests' `counts.sequence_ends`."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.recombine import recombine_tables
from obserae_forensics.recombine.runs import Run, _units_between, cut_losses
from tests.conftest import FIXTURES

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
