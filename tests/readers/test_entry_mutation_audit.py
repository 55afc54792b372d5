"""Behaviour of the readers' entry (readers/__init__.py: input discovery, read_flows, the
time and ICMPv6 repairs of settled, the counting and the window) that no test pinned,
found by a mutation audit (62 small changes, 36 of which the reader, pipeline and command
tests noticed; of the 26 they did not, 22 were real gaps, killed here, and 4 are
equivalent). Equivalent: the salvaged record's damaged side told by its other side
being usable (R33: time_faults calls a record salvaged only when exactly one side is past
the limit); the files of a repair not sorted by their first row (R49: dictionary_encode
numbers them in the order they first appear, so np.unique's order is already that); a
capture's records flushed one batch later (R55: _rebatch cuts at batch_size all the same);
_rebatch's dictionaries not unified first (R57: combine_chunks unifies them, pyarrow 15 to
29). The records only the end of the run gives, left unsettled or unwindowed (R31, R32),
were pinned by a later session: the audit's inputs had theirs given at their file's end
(TcpStreams.pause), but the messages behind a false header wait for the run's end
(TcpStreams.finish). Most gaps are in what a forensic report says of what it did not
read: the bytes of an unreadable or unknown file, an empty directory beside a locked one,
a file named twice that was its own other name, a file gone midway; the rest in the order
of the inputs (a capture with no frame, a tie through a link), the bounds of the repairs (a
start a day after its end, no arrival, ICMPv6 types 0 and 256), the place a repair is cited
at, and the window's bounds. Each test fails with its change applied and names it (R).
Inputs are the real fixtures (fixtures/README.md), the captures the reader tests build, and
batches built as the decoders build them."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scapy.layers.inet import IP, UDP

import obserae_forensics.readers.nfcapd as nfcapd
from obserae_forensics.readers import (
    _count,
    _rebatch,
    discover_inputs,
    read_flows,
    settled,
)
from obserae_forensics.readers._batch import flow_batch
from obserae_forensics.report import RunReport
from tests.conftest import FIXTURES, refuse_listing
from tests.readers.test_input_order import capture
from tests.readers.test_ipfix import EXPORT_S, message, template
from tests.readers.test_ipfix import data as data_set
from tests.readers.test_pcap import pcap_bytes
from tests.readers.test_tcp_streams import capture as tcp_capture
from tests.readers.test_tcp_streams import exported_stream, segments_of
from tests.readers.test_time_range import GOOD_MS, MS_FIELDS, ms_record, usable_times

X = 1_700_000_000_000_000  # a time (µs) of the exporters'
DAY_US = 86_400_000_000  # FUTURE_START_US, written out: the tests pin its value
VARSVC = FIXTURES / "sf_v9_varsvc.pcap"  # 72 records
NFCAPD = FIXTURES / "nfcapd16_sf_v9_varsvc.nfcapd"  # the same 72, as nfcapd 1.6.25 kept them


def hand(files: list[str], **columns: list[int]) -> pa.RecordBatch:
    """One batch of len(files) records, record i of files[i] (at offset i, frame i + 1),
    joined as _rebatch joins a file's records with another's (data held for a late
    template reaches a batch of the next file)."""
    parts = [
        flow_batch(
            1,
            {
                **{name: np.array([values[i]]) for name, values in columns.items()},
                "source_offset": np.array([i]),
                "source_frame": np.array([i + 1]),
            },
            exporter="192.0.2.1",
            source_file=name,
        )
        for i, name in enumerate(files)
    ]
    [batch] = list(_rebatch(parts, len(files)))
    return batch


def ipfix_capture(path: Path, *records: bytes) -> Path:
    """One IPFIX datagram (MS_FIELDS) of `records`, captured at EXPORT_S."""
    payload = message(template(300, MS_FIELDS), data_set(300, *records))
    frame = bytes(IP(src="192.0.2.9", dst="198.51.100.7") / UDP(sport=4739, dport=4739) / payload)
    path.write_bytes(pcap_bytes([(EXPORT_S * 10**9, frame)], linktype=101))
    return path


def read(paths: list[Path], **options: object) -> tuple[list[pa.RecordBatch], RunReport]:
    report = RunReport()
    batches = list(read_flows(discover_inputs(paths, report), report, **options))  # type: ignore[arg-type]
    return batches, report


# -- discovery ---------------------------------------------------------------------------------


def test_a_file_named_as_a_recombine_output_alone_is_read_not_taken_as_one(
    tmp_path: Path,
) -> None:
    """R07: a file named sessions_recombined.parquet without recombined_fragments.parquet
    beside it (a recombine output is both) was taken as an earlier output, and not read."""
    capture(tmp_path / "case" / "a.pcap", "10.0.0.1", 200_000, 0)
    (tmp_path / "case" / "sessions_recombined.parquet").write_bytes(b"not ours")
    report = RunReport()
    found = discover_inputs([tmp_path / "case"], report)
    assert [f.path.name for f in found] == ["a.pcap"]
    assert report.skipped == {"unknown_format": 1} and "obserae_output" not in report.ignored


def test_an_empty_directory_is_said_beside_one_that_cannot_be_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R12: an empty directory was left unsaid when another input's locked directory's
    path began with its path (`sensor` and `sensor2/locked`). A locked one given is
    not said empty too (R11, which the command tests also catch)."""
    empty, sensor2 = tmp_path / "sensor", tmp_path / "sensor2"
    empty.mkdir()
    capture(sensor2 / "a.pcap", "10.0.0.1", 200_000, 0)
    locked = sensor2 / "locked"
    capture(locked / "c.pcap", "10.0.0.3", 1_000, 2)
    refuse_listing(monkeypatch, locked)
    report = RunReport()
    found = discover_inputs([empty, locked, sensor2], report)
    assert [f.path.name for f in found] == ["a.pcap"]
    assert report.skipped == {"empty_directory": 1, "unreadable": 1}
    assert sorted(p.source for p in report.examples) == [str(empty), str(locked)]


def test_a_file_that_cannot_be_opened_is_counted_with_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R14: a file that could be found (its size known) but not opened was counted with 0
    bytes: the manifest's skipped bytes fell short of the evidence by its size."""
    import obserae_forensics.readers as readers

    path = capture(tmp_path / "a.pcap", "10.0.0.1", 200_000, 0)

    def refused(file: object, *args: object, **kwargs: object) -> object:
        if os.fspath(file) == str(path):  # type: ignore[arg-type]
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(readers, "open", refused, raising=False)
    report = RunReport()
    assert discover_inputs([path], report) == []
    size = path.stat().st_size
    assert report.skipped_bytes == {"unreadable": size} and report.files[str(path)].size == size


def test_a_file_of_no_known_format_is_counted_with_its_bytes(tmp_path: Path) -> None:
    """R15: a file of unknown format was counted with 0 bytes."""
    capture(tmp_path / "a.pcap", "10.0.0.1", 200_000, 0)
    (tmp_path / "notes.txt").write_bytes(b"not an export" * 10)
    report = RunReport()
    discover_inputs([tmp_path], report)
    assert report.skipped_bytes == {"unknown_format": 130}


def test_a_capture_with_no_frame_is_read_last(tmp_path: Path) -> None:
    """R16: a capture holding no frame (no first time) was read first, as if its first
    record had arrived in 1970, not last as documented."""
    (tmp_path / "a.pcap").write_bytes(pcap_bytes([], linktype=101))
    capture(tmp_path / "b.pcap", "10.0.0.1", 200_000, 0)
    found = discover_inputs([tmp_path], RunReport())
    assert [(f.path.name, f.first_us) for f in found] == [
        ("b.pcap", EXPORT_S * 10**6),
        ("a.pcap", None),
    ]


def test_ties_are_broken_by_where_a_file_is_with_links_resolved(tmp_path: Path) -> None:
    """R21: a tie broken by the path made absolute but with its links kept: `0/b.pcap`
    (0 a link to `case`) went before `case/a.pcap`, and b's sessions changed with the name
    it was given by."""
    a = capture(tmp_path / "case" / "a.pcap", "10.0.0.1", 200_000, 0)
    capture(tmp_path / "case" / "b.pcap", "10.0.0.2", 10_000, 1)
    os.symlink(tmp_path / "case", tmp_path / "0")
    found = discover_inputs([tmp_path / "0" / "b.pcap", a], RunReport())
    assert [f.path.name for f in found] == ["a.pcap", "b.pcap"]


def test_a_path_given_twice_is_not_its_own_other_name(tmp_path: Path) -> None:
    """R23: `sessionize a.pcap a.pcap` read it once, but said it had another name, itself
    (the manifest's also_named, the summary's "other name(s) of files given twice")."""
    a = capture(tmp_path / "a.pcap", "10.0.0.1", 200_000, 0)
    report = RunReport()
    assert [f.path for f in discover_inputs([a, a], report)] == [a]
    assert all(not stats.also_named for stats in report.files.values())


# -- read_flows --------------------------------------------------------------------------------


def test_a_file_gone_after_some_of_its_records_says_so_and_counts_no_bytes_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R28 (its whole size counted as skipped beside the records it gave) and R29 (no word
    that some of its records were read): an nfcapd file that failed after its first batch."""
    path = tmp_path / "nfcapd.201106241550"
    path.write_bytes(NFCAPD.read_bytes())
    reader = nfcapd.read_nfcapd

    def failing(*args: object, **kwargs: object) -> Iterator[pa.RecordBatch]:
        yield next(reader(*args, **kwargs))  # type: ignore[arg-type]
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(nfcapd, "read_nfcapd", failing)
    batches, report = read([path], batch_size=10)
    assert sum(b.num_rows for b in batches) == report.records == 10
    assert report.skipped == {"unreadable": 1} and report.skipped_bytes == {"unreadable": 0}
    assert report.examples[0].message == (
        "cannot read: Input/output error (after some of its records were read)"
    )


def test_batches_hold_at_most_the_batch_size(tmp_path: Path) -> None:
    """R56: a capture's records came in batches of any size (the memory bound
    --batch-size gives)."""
    for size in (7, 64):
        batches, report = read([VARSVC], batch_size=size)
        assert max(b.num_rows for b in batches) == size and report.records == 72


# -- settled: times and ICMPv6 types -----------------------------------------------------------


def test_a_record_with_no_arrival_is_never_a_future_start() -> None:
    """R37: a record whose arrival is unknown (0: what a decoder without one gives) and
    whose first_seen is days after its last_seen lost its first_seen as a future start,
    measured from 1970; it is an inverted record, swapped."""
    times, report = usable_times([X + 2 * DAY_US], [X])
    assert times == [(X, X + 2 * DAY_US)]
    assert report.repaired == {"inverted_times": 1}


def test_a_start_exactly_a_day_after_its_end_is_swapped() -> None:
    """R39: a start exactly a day (FUTURE_START_US) after its own end, long after its
    arrival, was taken as no start; only more than a day is."""
    arrival = X - 10 * DAY_US
    times, report = usable_times([X + DAY_US, X + DAY_US + 1], [X, X], arrival=arrival)
    assert times == [(X, X + DAY_US), (X, X)]
    assert report.repaired == {"inverted_times": 1, "future_start": 1}


def test_a_repair_is_cited_in_each_file_at_its_first_repaired_record() -> None:
    """R46, R47 (cited at the batch's first record's offset and frame, not the first
    repaired one's) and R48 (a batch of two files' records, data held for a late template
    beside the next file's, cited every file's repairs against the first file)."""
    report = RunReport()
    batch = settled(
        hand(
            ["a.pcap", "a.pcap", "b.pcap", "b.pcap"],
            first_seen=[X, X + 5, X, X + 7],
            last_seen=[X + 1, X, X + 1, X],
        ),
        report,
    )
    assert batch.column("last_seen").cast(pa.int64()).to_pylist() == [X + 1, X + 5, X + 1, X + 7]
    assert report.repaired == {"inverted_times": 2}
    assert [(p.source, p.offset, p.frame) for p in report.examples] == [
        ("a.pcap", 1, 2),
        ("b.pcap", 3, 4),
    ]


def test_only_an_icmpv6_type_of_1_to_255_in_the_low_byte_is_moved() -> None:
    """R50 (type 0 code 0, 0 in the port, counted as repaired) and R51 (256, type 1 code 0,
    shifted out of the 16-bit port: the run failed)."""
    report = RunReport()
    batch = settled(
        hand(
            ["a.pcap"] * 3,
            protocol=[58, 58, 58],
            dst_port=[0, 256, 136],
            first_seen=[X] * 3,
            last_seen=[X] * 3,
        ),
        report,
    )
    assert batch.column("dst_port").to_pylist() == [0, 256, 136 << 8]
    assert report.repaired == {"icmp_type_low_byte": 1}
    assert report.examples[0].offset == 2


# -- counting and the window -------------------------------------------------------------------


def test_a_batch_of_two_files_counts_each_its_own_records() -> None:
    """R53: a batch holding records of two files (data held for a late template, read
    with the next file) counted them all against the first file."""
    report = RunReport()
    _count(report, hand(["a.pcap", "b.pcap", "b.pcap"], first_seen=[X] * 3, last_seen=[X] * 3))
    assert report.records == 3
    assert (report.files["a.pcap"].records, report.files["b.pcap"].records) == (1, 2)


def test_the_window_keeps_records_at_its_bounds_and_counts_all_the_others(tmp_path: Path) -> None:
    """R58, R59 (a record starting at --from, or ending at --to, left out: nfdump's -t
    keeps both) and R60 (records outside counted as one per batch and file)."""
    path = ipfix_capture(
        tmp_path / "window.pcap",
        ms_record(1, GOOD_MS, GOOD_MS + 10),
        ms_record(2, GOOD_MS + 20, GOOD_MS + 30),
        ms_record(3, GOOD_MS - 5, GOOD_MS),
        ms_record(4, GOOD_MS + 30, GOOD_MS + 40),
        ms_record(5, GOOD_MS - 9, GOOD_MS + 31),
    )
    batches, report = read([path], window=(GOOD_MS * 1000, (GOOD_MS + 30) * 1000))
    table = pa.Table.from_batches(batches)
    assert table.column("first_seen").cast(pa.int64()).to_pylist() == [
        GOOD_MS * 1000,
        (GOOD_MS + 20) * 1000,
    ]
    assert report.outside_window == report.files[str(path)].outside_window == 3


# -- the run's end -----------------------------------------------------------------------------


def resync_capture(path: Path, *, swap_times: bool = False) -> Path:
    """The python-ipfix connection with its bytes 28 to 2100 lost (test_tcp_streams'
    false header): the 153 records of the whole messages after the false header at byte
    2184 are given only by the run's end (TcpStreams.finish passes over it), in the
    loop after the last file's. With `swap_times`, each record's flowStart and flowEnd
    milliseconds are swapped (template 256: 47-byte records, the two at bytes 31 and 39),
    as nfdump 1.7.1 swaps them."""
    stream, first, port = exported_stream()
    data = bytearray(stream)
    for record in records_of_template_256(data) if swap_times else ():
        data[record + 31 : record + 47] = (
            data[record + 39 : record + 47] + data[record + 31 : record + 39]
        )
    assert data[2184:2188] == b"\x00\x0a\x44\x00"  # the false header is still there
    template_message = struct.unpack_from(">H", data, 2)[0]
    segments = [
        (first, bytes(data[:template_message])),
        *segments_of(bytes(data[2100:]), first + 2100),
    ]
    return tcp_capture(path, segments, port, syn=first - 1)


def records_of_template_256(data: bytearray) -> list[int]:
    """Where each data record of template 256 starts in the IPFIX messages of `data`."""
    starts = []
    at = 0
    while at < len(data):
        length = struct.unpack_from(">H", data, at + 2)[0]
        inner = at + 16
        while inner < at + length:
            set_id, set_length = struct.unpack_from(">HH", data, inner)
            if set_id == 256:
                starts += range(inner + 4, inner + set_length - 46, 47)
            inner += set_length
        at += length
    return starts


def times(batches: list[pa.RecordBatch]) -> list[tuple[int, int, int]]:
    table = pa.Table.from_batches(batches)
    return list(
        zip(
            table.column("record_index").to_pylist(),
            table.column("first_seen").cast(pa.int64()).to_pylist(),
            table.column("last_seen").cast(pa.int64()).to_pylist(),
            strict=True,
        )
    )


def test_records_only_the_run_s_end_gives_are_settled(tmp_path: Path) -> None:
    """R31 (the end-of-run loop's batches not put through settled): the records behind a
    false header, given at the run's end, kept last_seen before first_seen; the swapped
    ones elsewhere were put right."""
    plain, plain_report = read([resync_capture(tmp_path / "plain.pcap")])
    swapped, report = read([resync_capture(tmp_path / "swapped.pcap", swap_times=True)])
    assert len(times(plain)) == 181 and not plain_report.repaired
    assert times(swapped) == times(plain)
    differing = sum(first != last for _, first, last in times(plain))
    assert dict(report.repaired) == {"inverted_times": differing} and differing > 100


def test_records_only_the_run_s_end_gives_are_windowed(tmp_path: Path) -> None:
    """R32 (the end-of-run loop's batches not put through _window): the 153 records behind
    a false header, given at the run's end, passed a window that leaves out every record."""
    path = resync_capture(tmp_path / "resync.pcap")
    batches, report = read([path], window=(None, 0))
    assert batches == []
    assert report.outside_window == report.files[str(path)].outside_window == 181
