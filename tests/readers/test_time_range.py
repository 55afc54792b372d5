"""Record times a session can hold: ~73,000 years either side of 1970 (times.TIME_LIMIT_US).

Found by fuzzing: an 8-byte millisecond field of garbage wrapped around in the multiplication
to µs and passed for a time in 1969 or 2025 without a word, and a time near the int64 limit
made the sessionizer's deadline wrap around (a session closed before it opened). Such
records are now counted as bad_timestamp with their place, and never reach a session.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scapy.layers.inet import IP, UDP
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.readers import discover_inputs, read_flows
from obserae_forensics.report import RunReport
from obserae_forensics.times import TIME_LIMIT_US, UNUSABLE_TIME

from .test_ipfix import EXPORT_S, EXPORT_US, decode, message, template
from .test_ipfix import data as data_set
from .test_pcap import pcap_bytes

# src, dst, packets, flowStartMilliseconds (8 bytes), flowEndMilliseconds (8 bytes)
MS_FIELDS = [(8, 4, 0), (12, 4, 0), (2, 4, 0), (152, 8, 0), (153, 8, 0)]
GOOD_MS = EXPORT_US // 1000 - 5_000
PAST_LIMIT_MS = TIME_LIMIT_US // 1000 + 1  # fits int64 µs, but past what a session holds


def ms_record(src: int, first_ms: int, last_ms: int) -> bytes:
    return struct.pack(">IIIQQ", src, 2, 1, first_ms, last_ms)


def first_seen(table: pa.Table) -> list[int]:
    return table.column("first_seen").cast(pa.int64()).to_pylist()


def test_a_millisecond_field_past_the_range_is_unusable_not_wrapped() -> None:
    table, _ = decode(
        message(
            template(300, MS_FIELDS),
            data_set(
                300,
                ms_record(1, GOOD_MS, GOOD_MS + 10),
                ms_record(2, 2**64 - 1, 2**64 - 1),
                ms_record(3, 2**63, 2**63 + 5),
            ),
        )
    )
    assert first_seen(table) == [GOOD_MS * 1000, UNUSABLE_TIME, UNUSABLE_TIME]


def test_a_duration_or_boot_time_past_the_range_makes_the_time_unusable() -> None:
    duration = [(8, 4, 0), (152, 8, 0), (161, 8, 0)]  # start ms, flowDurationMilliseconds
    table, _ = decode(
        message(
            template(300, duration),
            data_set(
                300, struct.pack(">IQQ", 1, GOOD_MS, 7), struct.pack(">IQQ", 2, GOOD_MS, 2**64 - 1)
            ),
        )
    )
    assert table.column("last_seen").cast(pa.int64()).to_pylist() == [
        (GOOD_MS + 7) * 1000,
        UNUSABLE_TIME,
    ]
    # flowStartSysUpTime / flowEndSysUpTime with systemInitTimeMilliseconds in the record:
    # one past the µs range was taken for "no boot time" and the export time used instead
    uptime = [(8, 4, 0), (22, 4, 0), (21, 4, 0), (160, 8, 0)]
    boot_ms = EXPORT_US // 1000 - 60_000
    table, _ = decode(
        message(
            template(301, uptime),
            data_set(
                301,
                struct.pack(">IIIQ", 1, 1_000, 2_000, boot_ms),
                struct.pack(">IIIQ", 2, 1_000, 2_000, 2**63 + 1),
            ),
        )
    )
    assert first_seen(table) == [(boot_ms + 1_000) * 1000, UNUSABLE_TIME]


YEAR_15760_US = 435172692577536000  # a fuzzed record's start: kept, shown as µs since 1970


def year_15760_capture(path: Path) -> Path:
    """An IPFIX capture of one record that starts and ends in year 15760: a time a session
    holds (within ~73,000 years) that Python's datetime and pandas cannot."""
    ms = YEAR_15760_US // 1000
    payload = message(template(300, MS_FIELDS), data_set(300, ms_record(1, ms, ms)))
    frame = bytes(IP(src="192.0.2.9", dst="198.51.100.7") / UDP(sport=4739, dport=4739) / payload)
    path.write_bytes(pcap_bytes([(EXPORT_S * 10**9, frame)], linktype=101))
    return path


def capture(tmp_path: Path) -> Path:
    """An IPFIX capture: one good record between two whose times a session cannot hold."""
    payload = message(
        template(300, MS_FIELDS),
        data_set(
            300,
            ms_record(9, 2**64 - 1, 2**64 - 1),
            ms_record(1, GOOD_MS, GOOD_MS + 10),
            ms_record(9, PAST_LIMIT_MS, PAST_LIMIT_MS),
        ),
    )
    frame = bytes(IP(src="192.0.2.9", dst="198.51.100.7") / UDP(sport=4739, dport=4739) / payload)
    path = tmp_path / "times.pcap"
    path.write_bytes(pcap_bytes([(EXPORT_S * 10**9, frame)], linktype=101))
    return path


def read(path: Path) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    batches = list(read_flows(discover_inputs([path], report), report))
    return pa.Table.from_batches(batches), report


def test_records_past_the_range_are_counted_with_their_place(tmp_path: Path) -> None:
    table, report = read(capture(tmp_path))
    assert first_seen(table) == [GOOD_MS * 1000]
    assert report.records == 1
    assert report.skipped == {"bad_timestamp": 2}
    problem = report.examples[0]
    assert (problem.source, problem.frame) == (str(tmp_path / "times.pcap"), 1)
    assert "2 record(s)" in problem.message and "past the int64 µs range" in problem.message


def test_a_sessionized_run_never_sees_them(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["sessionize", str(capture(tmp_path)), "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    sessions = pq.read_table(out / "sessions.parquet")
    assert sessions.num_rows == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == {"bad_timestamp": 2}
    assert manifest["conservation"]["ok"] is True


def test_an_nfcapd_millisecond_time_past_the_range_is_counted(corpus: Path, tmp_path: Path) -> None:
    data = bytearray((corpus / "nfcapd" / "nfpcapd_ircdcc.nfcapd").read_bytes())
    # the first record's msec_first and msec_last (uncompressed block), raised by 2**64 // 1000
    # ms: year ~584 million, which wrapped to 0.6 ms before the true time
    times = np.frombuffer(bytes(data[68:84]), "<u8") + np.uint64(2**64 // 1000)
    data[68:84] = times.tobytes()
    path = tmp_path / "damaged.nfcapd"
    path.write_bytes(bytes(data))
    table, report = read(path)
    assert table.num_rows == 5 and report.skipped == {"bad_timestamp": 1}
    assert report.examples[0].offset == 40  # the block


def test_an_nfcapd_receive_time_past_the_range_is_counted(corpus: Path, tmp_path: Path) -> None:
    """Found by the second fuzzing round: the record is whole, its receive time is not;
    arrival falls back to the file's time slot (as for a record without one) and says so."""
    original = (corpus / "nfcapd" / "nfpcapd_ircdcc.nfcapd").read_bytes()
    table, _ = read(corpus / "nfcapd" / "nfpcapd_ircdcc.nfcapd")
    for value in (2**64 - 1, TIME_LIMIT_US // 1000 + 1):
        data = bytearray(original)
        data[84:92] = np.array([value], "<u8").tobytes()  # the first record's msec_received
        path = tmp_path / "received.nfcapd"
        path.write_bytes(bytes(data))
        damaged, report = read(path)
        assert damaged.num_rows == 6 and report.skipped == {"bad_timestamp": 1}
        assert "receive time" in report.examples[0].message
        arrival = damaged.column("arrival").cast(pa.int64()).to_pylist()
        assert arrival[1:] == table.column("arrival").cast(pa.int64()).to_pylist()[1:]
        assert arrival[0] != table.column("arrival").cast(pa.int64())[0].as_py()


def usable_times(
    first: list[int], last: list[int], arrival: int | None = None
) -> tuple[list[tuple[int, int]], RunReport]:
    """(first_seen, last_seen) of the records read_flows keeps, from hand-made times."""
    from obserae_forensics.readers import _usable_times
    from obserae_forensics.readers._batch import flow_batch

    n = len(first)
    columns = {
        "first_seen": np.array(first),
        "last_seen": np.array(last),
        "source_offset": np.arange(n),
        "source_frame": np.arange(n),
    }
    if arrival is not None:
        columns["arrival"] = np.full(n, arrival)
    report = RunReport()
    kept = _usable_times(
        flow_batch(n, columns, exporter="192.0.2.1", source_file="hand.pcap"), report
    )
    return list(
        zip(
            kept.column("first_seen").cast("int64").to_pylist(),
            kept.column("last_seen").cast("int64").to_pylist(),
            strict=True,
        )
    ), report


def test_a_record_with_one_time_is_kept_at_it_not_spanning_from_1970() -> None:
    """A zero (nfdump's unknown) on one side is no start in 1970: before, an inverted record
    whose end was 0 was swapped into a 53-year record (review)."""
    x = 1_700_000_000_000_000
    times, report = usable_times([x, 0, x + 5, 0, x + 9], [0, x + 1, x, 0, x + 10])
    assert times == [(x, x), (x + 1, x + 1), (x, x + 5), (x + 9, x + 10)]
    assert dict(report.skipped) == {"no_times": 1}
    assert dict(report.repaired) == {"missing_time": 2, "inverted_times": 1}
    assert (
        "kept, a problem noted (put right where it can be): 1 inverted_times, 2 missing_time"
        in report.summary()
    )


def test_a_start_long_after_arrival_or_unusable_gives_way_to_the_end() -> None:
    """Found by reading collectors' threads on Antrea's exporter: version 0.12 sent a start
    in 2042 beside a right end, which the swap of inverted times made a flow of 19 years
    (and the run's data window ended in 2042); its Go zero time (year 1) as flowStartSeconds
    is past the time limit, and the whole record, counters and all, was left out. A start
    more than a day after the record arrived is no start; one unusable time beside a usable
    one is a missing one. A start within the day of its arrival, or within a day of its own
    end (an exporter clock days ahead), stays an ordinary swap."""
    from obserae_forensics.readers import FUTURE_START_US

    x = 1_700_000_000_000_000
    arrive = x + 60_000_000
    ahead = arrive + 2 * FUTURE_START_US  # an exporter clock two days ahead
    times, report = usable_times(
        [
            2_289_000_000_000_000,
            x + 5,
            UNUSABLE_TIME,
            x + 3,
            UNUSABLE_TIME,
            arrive + FUTURE_START_US,
            ahead + 7,
        ],
        [x, x, x + 2, UNUSABLE_TIME, 0, x, ahead],
        arrival=arrive,
    )
    assert times == [
        (x, x),
        (x, x + 5),
        (x + 2, x + 2),
        (x + 3, x + 3),
        (x, arrive + FUTURE_START_US),
        (ahead, ahead + 7),
    ]
    assert dict(report.repaired) == {"future_start": 1, "inverted_times": 3, "missing_time": 2}
    assert dict(report.skipped) == {"bad_timestamp": 1}  # unusable beside nothing


def test_a_record_of_more_than_a_year_is_said_and_kept_as_sent() -> None:
    """Found by fuzzing: an IPFIX record whose start read 1966 beside an end in 2026 (a
    damaged absolute time) opened a session sixty years long without a word. A record
    lasting more than a year is said (`long_record`), with its place, and kept as sent:
    which time is wrong the record does not tell. A year to the microsecond passes; a
    record swapped into a long one (no arrival to tell a future start) is said too."""
    from obserae_forensics.readers import LONG_RECORD_US

    x = 1_795_000_000_000_000  # 2026
    sixties = -114_000_000_000_000  # 1966
    first = [sixties, x - LONG_RECORD_US, x - LONG_RECORD_US - 1, x, 0, x + LONG_RECORD_US + 9]
    last = [x, x, x, x + 5, x, x]
    times, report = usable_times(first, last)
    assert times == [
        (sixties, x),
        (x - LONG_RECORD_US, x),
        (x - LONG_RECORD_US - 1, x),
        (x, x + 5),
        (x, x),
        (x, x + LONG_RECORD_US + 9),
    ]
    assert dict(report.repaired) == {"long_record": 3, "missing_time": 1, "inverted_times": 1}
    [example] = [p for p in report.examples if p.reason == "long_record"]
    assert "3 record(s)" in str(example) and example.frame == 0
    assert f"first_seen {sixties} µs, last_seen {x} µs" in str(example)
    assert not report.skipped
    # the times said are those kept: a swapped record's, after the swap
    _, report = usable_times([x + LONG_RECORD_US + 9], [x])
    [example] = [p for p in report.examples if p.reason == "long_record"]
    assert f"first_seen {x} µs, last_seen {x + LONG_RECORD_US + 9} µs" in str(example)


def test_the_problems_said_do_not_depend_on_the_batch_size(tmp_path: Path) -> None:
    """Found by an audit: checks that run a batch at a time gave one example per batch,
    each with its own count ("1 record(s)" 22 times at --batch-size 7 where the default
    said "9 record(s)" once), so the manifest's problems changed with the batch size."""
    frames = []
    for number in range(6):  # two files of three datagrams: all three kinds in each
        payload = message(
            template(300, MS_FIELDS),
            data_set(
                300,
                ms_record(1, GOOD_MS, GOOD_MS + 10),
                ms_record(2, 0, GOOD_MS),
                ms_record(3, GOOD_MS, 2**64 - 1),
                ms_record(4, GOOD_MS + 9, GOOD_MS),
                ms_record(5, 0, GOOD_MS + 1),
                ms_record(6, 2**64 - 1, 2**64 - 1),
            ),
            sequence=6 * number,
        )
        frames.append(
            (
                EXPORT_S * 10**9 + number,
                bytes(
                    IP(src="192.0.2.9", dst="198.51.100.7") / UDP(sport=4739, dport=4739) / payload
                ),
            )
        )
    for name, part in (("a.pcap", frames[:3]), ("b.pcap", frames[3:])):
        (tmp_path / name).write_bytes(pcap_bytes(part, linktype=101))
    said = []
    for batch_size in (1, 2, 7, 65_536):
        report = RunReport()
        inputs = discover_inputs([tmp_path / "b.pcap", tmp_path / "a.pcap"], report)
        list(read_flows(inputs, report, batch_size=batch_size))
        said.append(([str(p) for p in report.examples], report.repaired, report.skipped))
        # every skipped reason has its bytes, 0 for records a check left out (a mutation
        # fuzz found the key missing from the manifest's skipped_bytes)
        assert report.skipped_bytes == {"bad_timestamp": 0}
    assert all(s == said[-1] for s in said)
    examples, repaired, skipped = said[-1]
    assert repaired == {"missing_time": 18, "inverted_times": 6}
    assert skipped == {"bad_timestamp": 6}
    assert len(examples) == 8  # each file once per check
    assert [e.split("@")[0].rsplit("/", 1)[-1] for e in examples[:2]] == ["a.pcap", "b.pcap"]
    assert all("6 record(s)" in e for e in examples if "one time only" in e)


def test_the_window_judges_the_times_the_flow_table_holds(tmp_path: Path) -> None:
    """Found in review: --from/--to judged the times as decoded, before a record with one
    time missing was placed at the other, so with --from it was left out as 1970 (and
    counted outside the window) although the flow table would hold it inside."""
    payload = message(
        template(300, MS_FIELDS),
        data_set(
            300,
            ms_record(1, 0, GOOD_MS),
            ms_record(2, GOOD_MS - 60_000, GOOD_MS - 60_000),
            ms_record(3, GOOD_MS + 9, GOOD_MS),
        ),
    )
    frame = bytes(IP(src="192.0.2.9", dst="198.51.100.7") / UDP(sport=4739, dport=4739) / payload)
    path = tmp_path / "window.pcap"
    path.write_bytes(pcap_bytes([(EXPORT_S * 10**9, frame)], linktype=101))
    report = RunReport()
    window = ((GOOD_MS - 1_000) * 1000, (GOOD_MS + 1_000) * 1000)
    table = pa.Table.from_batches(
        list(read_flows(discover_inputs([path], report), report, window=window))
    )
    # the one-time record at its time, the inverted one swapped into the window
    assert first_seen(table) == [GOOD_MS * 1000, GOOD_MS * 1000]
    assert report.outside_window == 1 and report.repaired == {
        "missing_time": 1,
        "inverted_times": 1,
    }
