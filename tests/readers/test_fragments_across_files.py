"""IP fragments of one export datagram cut apart by a capture's rotation.

`tcpdump -C` starts its next file after whichever frame passes the size, and an exporter
whose datagrams exceed the path MTU (8 KB IPFIX messages are six frames at 1,500 bytes)
has most of its frames in the middle of a datagram: each cut lost one, counted as
`incomplete_fragments` in the file before and again in the file after. Reassembly now goes
on across the run's files, as TCP streams do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow as pa
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.l2 import Ether

from obserae_forensics.readers import discover_inputs, read_flows
from obserae_forensics.readers.pcap import iter_datagrams
from obserae_forensics.report import RunReport
from obserae_forensics.schema import FLOW_SCHEMA
from tests.conftest import need_tool
from tests.readers.test_pcap import pcap_bytes

FIXTURE = Path(__file__).parents[2] / "fixtures" / "sf_v9_varsvc.pcap"  # softflowd v9


def fragment_frames(size: int = 600) -> list[tuple[int, bytes]]:
    """The fixture's three real v9 datagrams (1,352, 1,368 and 740 bytes), each sent as IP
    fragments of `size` bytes, as an exporter's stack sends them over a smaller MTU: 3, 3
    and 2 frames."""
    payloads = [d.payload for chunk in iter_datagrams(FIXTURE, RunReport()) for d in chunk]
    frames = []
    for number, payload in enumerate(payloads):
        packet = (
            IP(src="192.0.2.7", dst="198.51.100.1", id=4000 + number)
            / UDP(sport=4096, dport=2055)
            / payload
        )
        frames += [bytes(Ether() / piece) for piece in fragment(packet, fragsize=size)]
    return [(1_700_000_000 * 10**9 + i * 1000, frame) for i, frame in enumerate(frames)]


def fragmented_export(path: Path) -> Path:
    path.write_bytes(pcap_bytes(fragment_frames()))
    return path


def read_all(*paths: Path) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    batches = list(read_flows(discover_inputs(list(paths), report), report))
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


def records(table: pa.Table) -> list[tuple[object, ...]]:
    names = [
        "first_seen",
        "src_addr",
        "dst_addr",
        "src_port",
        "dst_port",
        "packets",
        "octets",
        "record_index",
    ]
    return sorted(zip(*(table.column(n).to_pylist() for n in names), strict=True))


def test_a_datagram_cut_between_its_fragments_by_a_rotation_is_read_whole(tmp_path: Path) -> None:
    whole = fragmented_export(tmp_path / "whole.pcap")
    expected, whole_report = read_all(whole)
    assert expected.num_rows == 72 and not whole_report.skipped
    editcap = need_tool("editcap")
    parts = tmp_path / "parts"
    parts.mkdir()
    # 3 frames a file: every datagram (3, 3 and 2 fragments) is cut but the first
    subprocess.run(
        [editcap, "-c", "4", str(whole), str(parts / "rot.pcap")], check=True, capture_output=True
    )
    files = sorted(parts.iterdir())
    assert len(files) == 2
    table, report = read_all(*files)
    assert not report.skipped, report.examples
    assert records(table) == records(expected)
    # each datagram named at its last fragment, in the file that holds it
    assert sorted(
        set(
            zip(
                table.column("source_file").to_pylist(),
                table.column("source_frame").to_pylist(),
                strict=True,
            )
        )
    ) == [(str(files[0]), 3), (str(files[1]), 2), (str(files[1]), 4)]


def test_fragments_the_run_never_completes_are_counted_in_the_file_of_the_first(
    tmp_path: Path,
) -> None:
    """Counted at the run's end, no longer at their file's: in the file, and at the frame,
    of the first fragment seen, not in the file being read then."""
    frames = fragment_frames()
    first = tmp_path / "a.pcap"
    first.write_bytes(pcap_bytes(frames[:5]))  # datagram 1, and 2 of datagram 2's 3
    other = tmp_path / "b.pcap"
    other.write_bytes(FIXTURE.read_bytes())
    table, report = read_all(first, other)
    files = table.column("source_file").to_pylist()
    assert (files.count(str(first)), files.count(str(other))) == (23, 72)  # datagram 1's
    assert report.skipped == {"incomplete_fragments": 1}
    [problem] = report.examples
    assert (problem.source, problem.frame) == (str(first), 4)


def test_a_fragment_left_from_long_ago_never_completes_a_later_datagram(tmp_path: Path) -> None:
    """Found by review: a last fragment whose datagram lost its others stayed pending for the
    run, and an hour later a datagram reusing its IPv4 identification took it for its own
    last bytes: two records of garbage, no word (within one file too, before reassembly
    went across files). A set is given up 30 s (capture time) after its first fragment,
    as a collector's stack does (Linux's ipfrag_time)."""
    frames = fragment_frames()
    payloads = [d.payload for chunk in iter_datagrams(FIXTURE, RunReport()) for d in chunk]
    other = bytes(reversed(payloads[1]))  # another datagram of the same size and id
    packet = IP(src="192.0.2.7", dst="198.51.100.1", id=4001) / UDP(sport=4096, dport=2055) / other
    stale = bytes(Ether() / fragment(packet, fragsize=600)[-1])
    hour = 3600 * 10**9
    for name, layout in (
        (
            "files",
            [
                [*frames[:3], (frames[2][0] + 1, stale)],
                [(ts + hour, frame) for ts, frame in frames[3:]],
            ],
        ),
        (
            "one file",
            [
                [
                    *frames[:3],
                    (frames[2][0] + 1, stale),
                    *[(ts + hour, frame) for ts, frame in frames[3:]],
                ]
            ],
        ),
    ):
        paths = []
        for number, part in enumerate(layout):
            path = tmp_path / f"{name}{number}.pcap"
            path.write_bytes(pcap_bytes(part))
            paths.append(path)
        table, report = read_all(*paths)
        expected, _ = read_all(fragmented_export(tmp_path / "whole.pcap"))
        assert records(table) == records(expected), name
        assert report.skipped == {"incomplete_fragments": 1}, name
        assert (report.examples[0].source, report.examples[0].frame) == (str(paths[0]), 4)


def test_time_going_back_or_unknown_never_gives_a_fragment_set_up(tmp_path: Path) -> None:
    """Found by review: the timeout compared capture times both ways, so a clock stepped
    back 40 s between two fragments, or a fragment without a time (a pcapng Simple Packet
    Block, time 0), lost the whole datagram; only time moving on counts."""
    frames = fragment_frames()
    whole, _ = read_all(fragmented_export(tmp_path / "whole.pcap"))
    for name, shift in (("back", -40 * 10**9), ("zero", None)):
        moved = [
            (ts if index != 4 else (0 if shift is None else ts + shift), frame)
            for index, (ts, frame) in enumerate(frames)
        ]  # datagram 2's second piece
        path = tmp_path / f"{name}.pcap"
        path.write_bytes(pcap_bytes(moved))
        table, report = read_all(path)
        assert records(table) == records(whole) and not report.skipped, name
