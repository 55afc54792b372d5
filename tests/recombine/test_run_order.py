"""Runs are recombined in the order their records arrived, not by the flows' own times."""

from __future__ import annotations

import struct
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.recombine import recombine_tables
from tests.readers.test_pcap import pcap_bytes

T0 = 1_700_000_000  # the exporter's clock at boot


def datagram(
    sequence: int,
    export_s: float,
    src: str,
    dst: str,
    ports: tuple[int, int],
    first_s: float,
    last_s: float,
    octets: int,
) -> bytes:
    """One NetFlow v5 record in its own datagram; times in seconds after T0."""
    uptime_ms = round(export_s * 1000)
    header = struct.pack(
        ">HHIIIIBBH",
        5,
        1,
        uptime_ms,
        T0 + int(export_s),
        round((export_s % 1) * 1e9),
        sequence,
        0,
        0,
        0,
    )
    record = struct.pack(
        ">4s4s4sHHIIIIHHBBBBHHBBH",
        bytes(map(int, src.split("."))),
        bytes(map(int, dst.split("."))),
        bytes(4),
        0,
        0,
        1,
        octets,
        round(first_s * 1000),
        round(last_s * 1000),
        ports[0],
        ports[1],
        0,
        0,
        17,
        0,
        0,
        0,
        0,
        0,
        0,
    )
    return header + record


def sessionize_slices(
    tmp_path: Path, frames: list[tuple[int, bytes]], cuts: tuple[tuple[int, int], ...]
) -> list[Path]:
    """Each (start, end) slice of the frames as a capture of its own, sessionized: the runs."""
    runs = []
    for number, (start, end) in enumerate(cuts):
        capture = tmp_path / f"slice{number}.pcap"
        capture.write_bytes(pcap_bytes(frames[start:end]))
        out = tmp_path / f"run{number}"
        result = CliRunner().invoke(app, ["sessionize", str(capture), "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
        runs.append(out)
    return runs


def test_a_late_record_does_not_put_a_slice_before_the_one_before_it(tmp_path: Path) -> None:
    """Found by an audit: one record of another key, begun at 50 s and exported at 250 s,
    gave the third slice of a capture a data window starting before the second's; runs
    were ordered by it, and a steady conversation through all three slices came out in two
    conversations (one run over the capture: one). Runs now go in the order their records
    arrived."""
    records = [
        (10 * i + 9.5, "10.31.0.1", "10.31.0.2", (1, 2), 10 * i, 10 * i + 9, 50) for i in range(30)
    ]
    records.append((250.0, "10.40.0.1", "10.40.0.2", (3, 4), 50, 51, 7))
    records.sort()
    frames = [
        (
            round((T0 + export_s + 0.01) * 1e9),
            bytes(
                Ether()
                / IP(src="192.0.2.1", dst="192.0.2.9")
                / UDP(sport=5000, dport=2055)
                / datagram(number, export_s, *rest)
            ),
        )
        for number, (export_s, *rest) in enumerate(records)
    ]
    runs = sessionize_slices(tmp_path, frames, ((0, 10), (10, 20), (20, len(frames))))
    result = recombine_tables(list(reversed(runs)))
    assert [run.path for run in result.runs] == runs
    assert "come before" not in result.summary()  # its window starts earlier, ends later
    steady = [row for row in result.conversations.to_pylist() if row["port_a"] in (1, 2)]
    assert len(steady) == 1 and steady[0]["flow_count"] == 30
    # query.load numbers the runs as recombine does: a Run's `run` and its fragments'
    # `run_index` name the same runs (a review: they differed)
    from obserae_forensics import query

    loaded = query.load(list(reversed(runs)))
    assert list(loaded.paths) == runs
    assert loaded.fragments is not None
    both = loaded.fragments.merge(loaded.sessions, on="session_id")
    assert len(both) == len(loaded.sessions)
    assert (both["run_index"].astype(int) == both["run"].astype(int)).all()

    # a damaged flows table gives no arrival: the run goes by its data window, its
    # conversation across the cut unjoined, and that is said, not passed over (a review)
    third = runs[2] / "flows.parquet"
    third.write_bytes(third.read_bytes()[:300])
    damaged = recombine_tables(list(reversed(runs)))
    assert [run.path for run in damaged.runs] == [runs[0], runs[2], runs[1]]
    [said] = [
        line
        for line in damaged.summary().splitlines()
        if "placed among the others by its data window" in line
    ]
    assert said.startswith(f"warning: run 1 ({runs[2]}): flows.parquet is unreadable (")
    (runs[2] / "flows.parquet").unlink()
    said = [
        line
        for line in recombine_tables(list(reversed(runs))).summary().splitlines()
        if "flows.parquet is missing" in line
    ]
    assert len(said) == 1 and "flows.parquet is missing: the run is placed" in said[0]


def test_a_slice_whose_capture_clock_was_set_back_is_said(tmp_path: Path) -> None:
    """Found by a review: the second of two slices captured on a host whose clock was 400 s
    behind arrived "first", and the steady conversation across the cut came out in two
    without a word. The arrival order stands (the test above); the run whose flows come
    before the run it follows says so, and why."""
    frames = []
    for number in range(20):
        export_s = 10 * number + 9.5
        skew = -400 if number >= 10 else 0
        payload = datagram(
            number, export_s, "10.31.0.1", "10.31.0.2", (1, 2), 10 * number, 10 * number + 9, 50
        )
        packet = Ether() / IP(src="192.0.2.1", dst="192.0.2.9") / UDP(sport=5000, dport=2055)
        frames.append((round((T0 + export_s + 0.01 + skew) * 1e9), bytes(packet / payload)))
    runs = sessionize_slices(tmp_path, frames, ((0, 10), (10, 20)))
    result = recombine_tables(runs)
    assert [run.path for run in result.runs] == [runs[1], runs[0]]
    [said] = [line for line in result.summary().splitlines() if "come before" in line]
    assert said.startswith(f"warning: run 1 ({runs[0]}): its flows' times (")
    assert "check the capture hosts' clocks" in said
    assert said.split("): ", 1)[1] in result.runs[1].describe()["notes"]
    # the clocks set right: in order, one conversation, nothing said
    frames = [
        (stamp + (400 * 10**9 if k >= 10 else 0), data) for k, (stamp, data) in enumerate(frames)
    ]
    (tmp_path / "slice1.pcap").write_bytes(pcap_bytes(frames[10:]))
    done = CliRunner().invoke(
        app, ["sessionize", str(tmp_path / "slice1.pcap"), "--out", str(runs[1]), "-q", "--force"]
    )
    assert done.exit_code == 0, done.output
    result = recombine_tables(runs)
    assert "come before" not in result.summary()
    assert result.conversations.num_rows == 1
