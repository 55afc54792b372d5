"""Behaviour of recombine's exports, export context, run reading and twin check that no test
pinned, found by a mutation audit (the audit-recombine-export branch's: 84 small changes to
export.py, context.py, runs.py and overlap.py, E01-E36, X01-X15, R01-R25, O01-O14, the
numbers E29, X03, X04, X11, R19 and O13 not used; 61 of them the recombine tests did not
notice: 53 real gaps, killed here (R05 by a case added to test_chain.py's
test_closed_by_the_end_at_the_exact_tie_and_not_under_event_replay, E23 by an assertion
added to test_mutation_audit.py's M28 test and E31 by one added to test_export.py's nfcapd
test, whose runs they shared), 6 equivalent and 2
the audit left unpinned: E11, since fixed and pinned, and X06). The earlier audit's tests
(tests/recombine/test_mutation_audit.py) are not repeated. Most gaps are in the bytes of
an exported capture (the libpcap and pcapng headers, interfaces and records), in the
manifest checks of runs.py and in the manifests' shared-records count of overlap.py.

The equivalent ones: E30 (the nfcapd note comparing the format whole: the formats it
reads are input_format's, from the file's own bytes, never with a "-v2"), E35 (context
datagrams not filtered for TCP/SCTP: template_context never takes a datagram over a
connection), X07 (keep's limit 4096 -> 16: how often the search forgets, not what; only
what nothing refers to. So the tests of the forgetting set FORGET_PAST to 16 and send 20
datagrams, not 4100), X08 (_hold checking the whole held list, not its last: places
come in pass order, so one already held is the last), R25 (first_arrival without
`has_min_max`: a column chunk without them has no min_raw), O04 (an input of 0 records
counted: a + b - max(totals) is then never above 0). E11 (the pcapng note counting
interfaces, not link types) showed the note wrong either way for the one case telling them
apart, Ethernet frames with and without an FCS: "2 link types (1, 1)"; the note names each
interface now, and E10's test holds it. Left unpinned: X06 (keep
forgetting where a port began and the exporter's datagram before it: those are kept only
when they define templates or carry options data; a test needs one of them superseded as
both, before more than 4096 others, in a pass that began after the run's first file).
Each test fails with its change applied and names it."""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.errors import InputError, UsageError
from obserae_forensics.recombine import context, export_flows, export_pcap, recombine_tables
from obserae_forensics.recombine.context import _datagrams as context_datagrams
from obserae_forensics.recombine.context import _pass as context_pass
from obserae_forensics.recombine.overlap import OverlapCheck, shared_records, twin_counts
from obserae_forensics.recombine.runs import (
    DEFAULT_SETTINGS,
    Run,
    first_arrival,
    read_run,
    run_order_key,
)
from tests.readers.test_ipfix import EXPORT_S, data, message, options_template, template
from tests.readers.test_pcap import block, option, shb
from tests.readers.test_tcp_streams import FIXTURE as TCP_FIXTURE

from .conftest import SETTINGS, T0_US, session, write_run
from .test_chain import SYN_ACK_PSH
from .test_export import frames_of
from .test_export_context import (
    FIELDS,
    FLOW,
    RATE_100,
    SAMPLER,
    offsets,
    one_record_export,
    record,
    session_of,
    sessionize,
)
from .test_export_context import capture as capture_of
from .test_mutation_audit import NS, _two_captures_run, capture, datagram, pcap_run, placed
from .test_overlap import RUNS as TWIN_RUNS
from .test_overlap import sessions as twin_rows
from .test_runs import trimmed_run


@pytest.fixture
def forget_soon(monkeypatch: pytest.MonkeyPatch) -> int:
    """A context pass forgets past 16 kept datagrams, not 4096 (X07: how often it forgets,
    not what), and the number of template refreshes that takes it past that."""
    monkeypatch.setattr(context, "FORGET_PAST", 16)
    return 20


def edited_run(tmp_path: Path, change: dict[str, Any]) -> Path:
    """A run of one conversation A whose manifest has the top-level keys of `change`."""
    run = write_run(tmp_path / "run", [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))])
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(change)
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


# --- recombine/runs.py: the manifest ---------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "said"),
    [
        # R01
        ({"settings": ["sessions.grace", 30]}, r"manifest\.json: 'settings' is not an object"),
        # R02
        (
            {"settings": {**SETTINGS, "sessions.grace": "half a minute"}},
            r"setting sessions\.grace = 'half a minute' is not seconds",
        ),
        # R03
        (
            {"settings": {**SETTINGS, "sessions.idle.udp": "inf"}},
            r"setting sessions\.idle\.udp = 'inf' is not a duration",
        ),
        # R08
        (
            {"data_window": {"start": "2024-03-01T12:00:00", "end": "2024-03-01T12:00:10Z"}},
            r"data_window\.start: time '2024-03-01T12:00:00' has no time zone",
        ),
        # R22
        (
            {"data_window": {"start": "2024-03-01T12:00:00Z", "end": 1709294410}},
            r"data_window\.end: expected an ISO-8601 time, got 1709294410",
        ),
    ],
)
def test_a_manifest_that_is_not_sessionizes_is_refused_with_its_words(
    tmp_path: Path, change: dict[str, Any], said: str
) -> None:
    """Kills R01 (no refusal of `settings` that is not an object: AttributeError), R02 (a
    setting that is no number let through as ValueError), R03 (an infinite duration taken),
    R08 (a time without a zone: TypeError on subtracting), R22 (a time that is no text taken
    for none): runs.py reads a run's settings "in seconds" and its window in UTC; a manifest
    that says otherwise was edited or is not sessionize's, and recombine says which value
    (a UsageError naming the manifest), not a traceback or a wrong chain."""
    run = edited_run(tmp_path, change)
    with pytest.raises(UsageError, match=said):
        read_run(run)
    with pytest.raises(UsageError, match=said):
        recombine_tables([run])


def test_a_manifest_without_a_window_or_with_odd_inputs_is_read(tmp_path: Path) -> None:
    """Kills R06 (a `data_window` that is not an object read as one), R07 (a null window
    end refused, not taken as unknown) and R10 (inputs entries that are not objects kept:
    `.get` on a string): these manifests say nothing, which runs.py takes as nothing, and
    the run is recombined."""
    changes: list[dict[str, Any]] = [
        {"data_window": ["2024-03-01T12:00:00Z"]},
        {"data_window": {"start": "2024-03-01T12:00:00Z", "end": None}},
        {"inputs": ["capture.pcap", {"path": "capture.pcap", "format": "pcap"}]},
    ]
    for number, change in enumerate(changes):
        run = edited_run(tmp_path / str(number), change)
        assert read_run(run).inputs == [{"path": "capture.pcap", "format": "pcap"}]
        result = recombine_tables([run])
        assert result.conversations.column("conversation_id").to_pylist() == ["A"]
    assert read_run(edited_run(tmp_path / "end", {"data_window": {"end": None}})).end_us is None


def test_the_data_window_is_read_to_the_microsecond(tmp_path: Path) -> None:
    """Kills R09 (the window's times divided by a millisecond, not a microsecond): Run's
    start_us and end_us are UTC µs; the report's runs give the window as the manifest
    says it."""
    run = edited_run(
        tmp_path,
        {"data_window": {"start": "2024-03-01T12:00:00.000250Z", "end": "2024-03-01T12:00:10Z"}},
    )
    assert (read_run(run).start_us, read_run(run).end_us) == (T0_US + 250, T0_US + 10_000_000)
    window = recombine_tables([run]).report["runs"][0]["data_window"]
    assert window == {"start": "2024-03-01T12:00:00.000250Z", "end": "2024-03-01T12:00:10.000Z"}


def test_the_default_settings_are_the_documented_ones(tmp_path: Path) -> None:
    """Kills R23 (ICMP idle default 10 s -> 60 s) and R24 (hard_timeout default 15 min -> 30):
    sessions.md, "ICMP/ICMPv6 `icmp` (10 s)", and the default hard timeout of 15 minutes;
    a manifest without settings is read with them, and says so."""
    run = read_run(edited_run(tmp_path, {"settings": {}}))
    assert run.settings == {
        "sessions.hard_timeout": 900.0,
        "sessions.grace": 30.0,
        "sessions.idle.tcp_established": 60.0,
        "sessions.idle.tcp_half_open": 5.0,
        "sessions.idle.udp": 30.0,
        "sessions.idle.icmp": 10.0,
        "sessions.idle.other": 60.0,
    }
    assert "manifest has no sessions.idle.icmp; used the default 10 s" in run.notes
    assert "manifest has no sessions.hard_timeout; used the default 900 s" in run.notes


def test_no_run_directory_and_one_given_twice_are_refused(tmp_path: Path) -> None:
    """Kills R12 (no refusal of an empty list of runs) and R13 (the same run directory told
    by its path as given, not resolved): recombine "needs at least one sessionize run
    directory", and one run named twice (`run` and `run/../run`) would chain each of its
    conversations with itself."""
    run = edited_run(tmp_path, {})
    with pytest.raises(UsageError, match="recombine needs at least one sessionize run directory"):
        recombine_tables([])
    with pytest.raises(UsageError, match="the same run directory was given twice"):
        recombine_tables([run, run / ".." / "run"])


def test_a_run_without_its_sessions_table_is_named_for_it(tmp_path: Path) -> None:
    """Kills R21 (the refusal naming flows.parquet, not sessions.parquet): the message says
    which file of the run directory is missing."""
    run = edited_run(tmp_path, {})
    (run / "sessions.parquet").unlink()
    with pytest.raises(UsageError, match=r"run: no sessions\.parquet; is this a sessionize"):
        recombine_tables([run])


def test_a_damaged_flows_table_does_not_stop_the_runs_being_ordered(tmp_path: Path) -> None:
    """Kills R17 (first_arrival lets Arrow's error through): a flows table whose footer
    cannot be read gives no first arrival (runs.py: "refused with its words where the
    table is read"); recombine, which reads the sessions only, goes on, and an export of
    flows refuses it by name."""
    run = edited_run(tmp_path, {})
    (run / "flows.parquet").write_bytes(b"no Parquet magic at its end")  # Arrow's ArrowInvalid
    assert first_arrival(run) is None
    assert recombine_tables([run]).conversations.num_rows == 1
    with pytest.raises(UsageError, match=r"flows\.parquet"):
        export_flows([run], ["A"], tmp_path / "a.csv")


def test_an_input_whose_size_the_manifest_gives_as_null_is_exported(tmp_path: Path) -> None:
    """Kills R18 (Run.input_size taking a `size` of null for one: int(None)): a manifest
    entry without a size (null) is one whose size is unknown; the capture is found and
    exported."""
    frames = capture(tmp_path / "x.pcap", [(NS, datagram(1)), (NS + 1_000, datagram(2))])
    run = pcap_run(tmp_path, tmp_path / "x.pcap", frames)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["inputs"][0]["size"] = None
    (run / "manifest.json").write_text(json.dumps(manifest))
    exported = export_pcap([run], ["A"], tmp_path / "a.pcap")
    assert exported.datagrams == 2 and not exported.report.skipped


def test_a_flow_matrix_file_the_run_read_is_evidence(tmp_path: Path) -> None:
    """Kills R11 (the manifest's `flow_matrix` not among the files a run read): the Flow
    Matrix file sessionize read is evidence like its settings file (M25), which no export
    may overwrite, even with --force."""
    matrix = tmp_path / "matrix.csv"
    matrix.write_text("name,src,dst\n")
    run = edited_run(tmp_path, {"flow_matrix": {"path": "matrix.csv", "absolute": str(matrix)}})
    with pytest.raises(UsageError, match="which this command reads"):
        export_flows([run], ["A"], matrix, force=True)
    assert matrix.read_text() == "name,src,dst\n"


# --- recombine/overlap.py ------------------------------------------------------------------------


def read_runs(*inputs: list[dict[str, Any]]) -> list[Run]:
    """Runs (no directories) whose manifests listed these inputs."""
    return [
        Run(Path(f"r{index}"), index=index, settings=dict(DEFAULT_SETTINGS), inputs=entries)
        for index, entries in enumerate(inputs)
    ]


DIGEST = "ab" * 32


def shared(read: int, outside: int) -> dict[str, Any]:
    return {"path": "x.pcap", "sha256": DIGEST, "records": read, "outside_window": outside}


def test_records_in_both_runs_are_counted_from_the_larger_total() -> None:
    """Kills O02 (`max(total, before's total)` -> `min`): at least a + b - total records are
    in both runs, with the capture's total of records; manifests giving two totals (one run
    stopped short) take the larger, which claims fewer records twice."""
    runs = read_runs([shared(10, 20)], [shared(22, 15)])  # 30 and 37 records in all
    shared_records(runs)
    assert runs[1].overlaps == []
    runs = read_runs([shared(10, 20)], [shared(26, 0)])  # 30 and 26
    shared_records(runs)
    [note] = runs[1].overlaps
    assert note.startswith("at least 6 of the 26 flow records it read from x.pcap run 0 read")
    assert f"(the same capture, SHA-256 {DIGEST[:16]}..., read over windows" in note


def test_a_copy_of_a_capture_within_one_run_is_counted_once_by_its_first_name() -> None:
    """Kills O05 (a byte-for-byte copy within a run counted again, the last one's name
    kept) and O06 (the note's digest cut to 12 hex digits): a run reads a copy of a capture
    once (overlap.py, "read once"); its note names the first path it read it by, and the
    capture by the first 16 hex digits of its SHA-256."""
    copy = {**shared(30, 0), "path": "y.pcap"}
    runs = read_runs([shared(30, 0)], [shared(30, 0), {**copy, "records": 5}])
    shared_records(runs)
    [note] = runs[1].overlaps
    assert note.startswith("at least 30 of the 30 flow records it read from x.pcap run 0 ")
    assert f"SHA-256 {DIGEST[:16]}..., read" in note


def test_a_loopback_copy_seen_the_other_way_round_is_a_twin() -> None:
    """Kills O07 (the orientation by addresses only): a copy whose two endpoints share an
    address (loopback: 127.0.0.1:5000 and 127.0.0.1:80) names the other port `a`; ordered
    by port too, the two copies are one session and one twin."""
    loop = twin_rows([(0, "10.0.0.9", 5000, 100, 50)])  # to 10.0.0.9:80
    other = loop.set_column(0, "run_index", pa.array([1], pa.uint32()))
    other = other.set_column(4, "port_a", pa.array([80], pa.uint16()))
    other = other.set_column(6, "port_b", pa.array([5000], pa.uint16()))
    other = other.set_column(8, "ab_bytes", pa.array([7], pa.uint64()))
    other = other.set_column(9, "ba_bytes", pa.array([50], pa.uint64()))
    assert twin_counts(pa.concat_tables([loop, other]), TWIN_RUNS) == (
        {(1, "192.0.2.1"): 1},
        {(1, "192.0.2.1"): 0},
    )


def test_a_copy_is_of_the_same_protocol_and_packets_each_way() -> None:
    """Kills O08 (the protocol not among the twin's keys) and O14 (the packets of a copy seen
    the other way round not swapped with its bytes): a twin has "the same exporter,
    protocol, endpoints and counters" (overlap.py); a UDP session on a TCP one's ports is
    another session, and so is one whose packets differ each way."""
    first = twin_rows([(0, "10.0.0.1", 5000, 100, 50)])
    udp = first.set_column(0, "run_index", pa.array([1], pa.uint32())).set_column(
        2, "protocol_number", pa.array([17], pa.uint8())
    )
    assert twin_counts(pa.concat_tables([first, udp]), TWIN_RUNS) == ({}, {})
    # 10.0.0.1 sent 50 bytes in 3 packets, 10.0.0.9 7 in 1; the later run names 10.0.0.9 `a`
    first = first.set_column(10, "ab_packets", pa.array([3], pa.uint64()))
    turned = pa.table(
        {
            "run_index": pa.array([1], pa.uint32()),
            "exporter": ["192.0.2.1"],
            "protocol_number": pa.array([6], pa.uint8()),
            "ip_a": ["10.0.0.9"],
            "port_a": pa.array([80], pa.uint16()),
            "ip_b": ["10.0.0.1"],
            "port_b": pa.array([5000], pa.uint16()),
            "opened_at": first.column("opened_at").combine_chunks(),
            "ab_bytes": pa.array([7], pa.uint64()),
            "ba_bytes": pa.array([50], pa.uint64()),
            "ab_packets": pa.array([1], pa.uint64()),
            "ba_packets": pa.array([3], pa.uint64()),
        }
    )
    assert twin_counts(pa.concat_tables([first, turned]), TWIN_RUNS) == (
        {(1, "192.0.2.1"): 1},
        {(1, "192.0.2.1"): 0},
    )


def test_a_twin_between_two_earlier_runs_copies_repeats_the_earliest() -> None:
    """Kills O09 (of a twin's two neighbours in time, the later-in-order run kept, not the
    earliest): run 2's copy opened between run 0's and run 1's; it repeats run 0 (the note
    names "the earliest run a twin was found in")."""
    table = twin_rows(
        [
            (0, "10.0.0.1", 5000, 100, 50),
            (2, "10.0.0.1", 5000, 101, 50),
            (1, "10.0.0.1", 5000, 102, 50),
        ]
    )
    counts, earlier = twin_counts(table, TWIN_RUNS)
    assert earlier[2, "192.0.2.1"] == 0 and counts[2, "192.0.2.1"] == 1


def test_sessions_counted_in_batches_add_up() -> None:
    """Kills O10 (OverlapCheck.count keeps the last batch's count): sessions are counted "in
    any batches" (a bucket of keys at a time); the note's "of its N sessions" is all of
    them, and five twins of twelve are under half: no note."""
    runs = read_runs([], [])
    check = OverlapCheck()
    for batch in range(2):
        check.count(twin_rows([(1, f"10.0.{batch}.{n}", 5000, 100, 50) for n in range(6)]))
    check.add((Counter({(1, "192.0.2.1"): 5}), {(1, "192.0.2.1"): 0}))
    check.note(runs)
    assert runs[1].overlaps == []
    check.add((Counter({(1, "192.0.2.1"): 1}), {(1, "192.0.2.1"): 0}))
    check.note(runs)
    [note] = runs[1].overlaps
    assert note.startswith("6 of its 12 sessions of exporter 192.0.2.1 repeat one of run 0 ")


# --- recombine/export.py: the capture written --------------------------------------------------

US = 1_700_000_000 * 10**9 + 123_456_000  # a capture time in whole microseconds, not ms


def test_a_microsecond_capture_is_exported_as_a_microsecond_libpcap_file(tmp_path: Path) -> None:
    """Kills E01 (the snap length 262144 -> 65535), E02 (version 2.4 -> 2.3), E03 (the
    nanosecond magic for a time that is not whole milliseconds) and E04 (the nanosecond
    magic always): export.py writes a libpcap savefile, "nanosecond magic only when a time
    needs it"; a capture of microsecond times is exported as tcpdump writes one: magic
    a1b2c3d4, version 2.4, snap length 262144, the frames' microseconds as they were."""
    frames = capture(tmp_path / "us.pcap", [(US, datagram(1)), (US + 1_000, datagram(2))])
    out = tmp_path / "a.pcap"
    export_pcap([pcap_run(tmp_path, tmp_path / "us.pcap", frames)], ["A"], out)
    written = out.read_bytes()
    assert written[:24] == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262_144, 1)
    assert struct.unpack_from("<II", written, 24) == (1_700_000_000, 123_456)
    assert [f.ts_ns for f in frames_of(out)] == [US, US + 1_000]


def test_a_pcapng_export_describes_each_interface_as_its_frames_were_captured(
    tmp_path: Path,
) -> None:
    """Kills E05 (the section header's length -1, unknown, -> 0), E06 (an interface's snap
    length 0), E07 (if_fcslen in bytes: pcapng gives it in bits) and E08 (an enhanced packet
    block's original length -> its captured length): README, frames of two link types are
    written as pcapng with one interface per link type; each keeps its FCS (32 bits on the
    Ethernet one) and each frame its original length (a raw IP frame cut at 30 of its 68
    bytes), and the section's length, which the writer does not count, is -1."""
    linktype = 1 | (1 << 26) | (2 << 28)  # Ethernet, frames with a 4-byte FCS
    ethernet = capture(tmp_path / "eth.pcap", [(NS, datagram(1) + bytes(4))], linktype=linktype)
    raw = capture(
        tmp_path / "raw.pcap",
        [(NS + 2_000_000_001, datagram(2, ethernet=False))],
        linktype=228,
        nanos=True,
        caplen_cut=30,
    )
    run = _two_captures_run(tmp_path, ("eth.pcap", ethernet), ("raw.pcap", raw))
    out = tmp_path / "a.pcapng"
    assert export_pcap([run], ["A"], out).format == "pcapng"
    fields = struct.Struct("<HHI")
    interfaces = [
        block("<", 1, fields.pack(1, 0, 262_144) + tsresol + option("<", 13, bytes([32])) + end)
        for tsresol, end in [(option("<", 9, b"\x09"), option("<", 0, b""))]
    ] + [
        block("<", 1, fields.pack(228, 0, 262_144) + option("<", 9, b"\x09") + option("<", 0, b""))
    ]
    assert out.read_bytes().startswith(shb("<") + b"".join(interfaces))
    assert [(f.linktype, f.fcs_bytes, len(f.data), f.original_length) for f in frames_of(out)] == [
        (1, 4, 86, 86),
        (228, 0, 30, 68),
    ]


# --- recombine/export.py: what an export says and refuses ---------------------------------------


def test_an_export_of_which_no_datagram_can_be_read_back_says_so(tmp_path: Path) -> None:
    """Kills E12 (no note when nothing was written): the conversation's two records point
    at an offset where no frame record starts (the provenance was edited); nothing is
    written, and the result says why beside the frames it counts."""
    frames = capture(tmp_path / "x.pcap", [(NS, datagram(1)), (NS + 1_000, datagram(2))])
    rows = [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    flows = placed(rows, tmp_path / "x.pcap", frames)
    at = flows.schema.get_field_index("source_offset")
    flows = flows.set_column(at, "source_offset", pa.array([25, 25], pa.uint64()))
    inputs = [{"path": str(tmp_path / "x.pcap"), "format": "pcap"}]
    run = write_run(tmp_path / "run", rows, flows=flows, inputs=inputs)
    exported = export_pcap([run], ["A"], tmp_path / "a.pcap")
    assert exported.path is None and not (tmp_path / "a.pcap").exists()
    assert exported.notes == ["no datagram could be read back; nothing written"]
    assert exported.report.skipped == {"malformed": 1}


def test_the_flows_of_a_sessions_table_without_flow_count_are_exported(tmp_path: Path) -> None:
    """Kills E14 (the flows checked against a flow_count of 0): a sessions table of the
    required columns only (tests/recombine/test_runs.py) has no flow_count, filled with 0
    (unknown): there is nothing to check the flows against, and they are exported."""
    run = trimmed_run(tmp_path)
    assert export_flows([run], ["A"], tmp_path / "a.parquet") == 2
    assert pq.read_table(tmp_path / "a.parquet").column("session_id").to_pylist() == ["A", "A"]


def test_a_run_without_its_flows_table_is_refused_by_name(tmp_path: Path) -> None:
    """Kills E15 (no refusal of a missing flows.parquet of its own): the run directory
    and what it lacks are named, and nothing is written."""
    run = edited_run(tmp_path, {})
    (run / "flows.parquet").unlink()
    with pytest.raises(
        UsageError, match=r"run: no flows\.parquet; cannot export the flows behind its sessions"
    ):
        export_flows([run], ["A"], tmp_path / "a.csv")
    assert not (tmp_path / "a.csv").exists()


def test_a_flows_export_without_a_suffix_says_what_it_was_given(tmp_path: Path) -> None:
    """Kills E16 (the refusal of a name without a suffix ending in an empty one): flows are
    exported "as .parquet or .csv, not ?" for a file named without any."""
    run = edited_run(tmp_path, {})
    with pytest.raises(UsageError, match=r"flows are exported as \.parquet or \.csv, not \?$"):
        export_flows([run], ["A"], tmp_path / "conversation")


def test_a_capture_cut_short_since_the_run_is_refused(tmp_path: Path) -> None:
    """Kills E19 (the size compared only for a capture that grew): the capture must be
    "the manifest's size and SHA-256"; one cut short (a copy that stopped) is refused as
    changed, though its first frames, which the export wants, are still there."""
    frames = capture(
        tmp_path / "x.pcap",
        [(NS, datagram(1)), (NS + 1_000, datagram(2)), (NS + 2_000, datagram(3))],
    )
    size = (tmp_path / "x.pcap").stat().st_size
    run = pcap_run(tmp_path, tmp_path / "x.pcap", frames[:2])
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["inputs"][0]["size"] = size
    (run / "manifest.json").write_text(json.dumps(manifest))
    with open(tmp_path / "x.pcap", "r+b") as handle:
        handle.truncate(size - len(frames[2].data) - 16)
    with pytest.raises(InputError, match=rf"\d+ bytes, {run}'s manifest says {size}: the capture"):
        export_pcap([run], ["A"], tmp_path / "a.pcap")
    assert not (tmp_path / "a.pcap").exists()


# --- recombine/context.py -----------------------------------------------------------------------


def test_options_data_held_past_the_searchs_memory_limit_still_count(
    tmp_path: Path, forget_soon: int
) -> None:
    """Kills X01 (the datagrams held for a template not yet defined not among those the
    search keeps once it forgets: context.py's `keep`, past FORGET_PAST datagrams): a sampling
    rate sent before its options template (the capture began mid-stream), then more than
    FORGET_PAST datagrams that each define the flow template (an exporter sending templates in
    every datagram), then the options template and the conversation's record. The run
    read it 1-in-100; the export takes the rate's datagram, its options template, the
    flow template and the port's first definition (without it the held rate would read
    another port's template), and decodes alone to what the run read."""
    flow_template = template(FLOW, FIELDS)
    # (each its own sequence number: the same message twice is a copy the decoder drops)
    refreshes = [message(flow_template, sequence=1 + i) for i in range(forget_soon)]
    assert one_record_export(
        tmp_path,
        message(template(400, [(8, 4, 0)]), sequence=0),  # where the port began: not the rate
        message(RATE_100, sequence=0),
        *refreshes,
        message(SAMPLER, sequence=forget_soon + 1),
        message(data(FLOW, record(2)), sequence=forget_soon + 1),
    ) == (4, 1, 0)


def test_frames_of_one_link_type_with_and_without_an_fcs_are_one_link_type(
    tmp_path: Path,
) -> None:
    """Kills E10 (the export's link_types listed per interface, the link type twice): a
    PCAP file's header gives one FCS length, so Ethernet frames with a 4-byte FCS and
    Ethernet frames without one are written as pcapng, an interface each; they are of one
    link type, which the result lists once."""
    linktype = 1 | (1 << 26) | (2 << 28)
    with_fcs = capture(tmp_path / "fcs.pcap", [(NS, datagram(1) + bytes(4))], linktype=linktype)
    plain = capture(tmp_path / "plain.pcap", [(NS + 2_000_000_000, datagram(2))])
    run = _two_captures_run(tmp_path, ("fcs.pcap", with_fcs), ("plain.pcap", plain))
    exported = export_pcap([run], ["A"], tmp_path / "a.pcapng")
    assert (exported.format, exported.link_types, exported.datagrams) == ("pcapng", [1], 2)
    written = frames_of(tmp_path / "a.pcapng")
    assert [(f.linktype, f.fcs_bytes, f.data) for f in written] == [
        (1, 4, with_fcs[0].data),
        (1, 0, plain[0].data),
    ]
    # E11: the note said "2 link types (1, 1)"
    assert exported.notes[0].startswith(
        "the frames have 2 link types or FCS lengths (1, 1 with a 4-byte FCS); a PCAP file "
        "holds one, so "
    )


def test_records_whose_arrival_is_unknown_are_exported_from_their_offsets(tmp_path: Path) -> None:
    """Kills E21 (the frame's time checked against an arrival of 0): a flows table whose
    `arrival` is 0 (unknown: the readers take a zero arrival for none) says nothing of when
    the frame came; its frames, found where the provenance says, are exported, not
    counted as other frames than sessionize read."""
    frames = capture(tmp_path / "x.pcap", [(NS, datagram(1)), (NS + 1_000, datagram(2))])
    rows = [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    flows = placed(rows, tmp_path / "x.pcap", frames)
    at = flows.schema.get_field_index("arrival")
    flows = flows.set_column(
        at, "arrival", pa.array([0, 0], pa.int64()).cast(flows.schema.field(at).type)
    )
    inputs = [{"path": str(tmp_path / "x.pcap"), "format": "pcap"}]
    run = write_run(tmp_path / "run", rows, flows=flows, inputs=inputs)
    exported = export_pcap([run], ["A"], tmp_path / "a.pcap", with_templates=False)
    assert (exported.datagrams, exported.records) == (2, 2) and not exported.report.skipped
    assert [f.data for f in frames_of(tmp_path / "a.pcap")] == [f.data for f in frames]


def test_a_capture_beside_the_run_is_taken_before_one_beside_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills E28 (the run's parent looked in before the run directory): a capture named
    relatively is looked for "as given ..., else beside the run directory or its parent",
    in that order; a manifest with no size or SHA-256 to tell them apart takes the copy in
    the run directory (the evidence moved with its run), not another x.pcap beside it."""
    case = tmp_path / "case"
    run_dir = case / "run"
    run_dir.mkdir(parents=True)
    source = capture(run_dir / "x.pcap", [(NS, datagram(1)), (NS + 1_000, datagram(2))])
    capture(case / "x.pcap", [(NS, datagram(3)), (NS + 1_000, datagram(4))])
    rows = [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    inputs = [{"path": "x.pcap", "format": "pcap"}]
    run = write_run(run_dir, rows, flows=placed(rows, Path("x.pcap"), source), inputs=inputs)
    monkeypatch.chdir(tmp_path)
    exported = export_pcap([run], ["A"], tmp_path / "a.pcap")
    assert exported.datagrams == 2 and not exported.report.skipped
    assert [f.data for f in frames_of(tmp_path / "a.pcap")] == [f.data for f in source]


def test_a_capture_the_manifest_does_not_list_comes_after_those_it_does(tmp_path: Path) -> None:
    """Kills E24 (a capture the manifest's inputs do not list ranked first): the datagrams
    are written in the order the run read its captures, the manifest's; one its flows cite
    that the manifest does not list (a manifest cut down by hand) has no place in that
    order, and comes after the listed ones."""
    first = capture(tmp_path / "b.pcap", [(NS, datagram(1))])
    second = capture(tmp_path / "a.pcap", [(NS + 1_000_000_000, datagram(2))])
    run = _two_captures_run(tmp_path, ("b.pcap", first), ("a.pcap", second))
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["inputs"][1]
    (run / "manifest.json").write_text(json.dumps(manifest))
    exported = export_pcap([run], ["A"], tmp_path / "out.pcap")
    assert exported.datagrams == 2
    assert [f.data for f in frames_of(tmp_path / "out.pcap")] == [first[0].data, second[0].data]


def test_the_records_over_tcp_are_counted(tmp_path: Path) -> None:
    """Kills E32 (tcp_records never counted): README, records with no datagram of their
    own (IPFIX over TCP, as nfcapd files' are) are written to the flows file beside the
    capture "and the result says so": how many records. E31 (the nfcapd note counting
    files, not records) is killed in test_export.py's nfcapd test."""
    tcp_run = tmp_path / "tcp_run"
    said = CliRunner().invoke(app, ["sessionize", str(TCP_FIXTURE), "--out", str(tcp_run), "-q"])
    assert said.exit_code == 0, said.output
    session_id = pq.read_table(tcp_run / "sessions.parquet").column("session_id")[5].as_py()
    exported = export_pcap([tcp_run], [session_id], tmp_path / "t.pcap")
    assert (exported.tcp_records, exported.nfcapd_records, exported.datagrams) == (2, 0, 0)
    assert exported.notes[0].startswith("2 flow record(s) came in IPFIX messages over TCP")


def test_a_frame_longer_than_the_usual_snap_length_raises_the_files(tmp_path: Path) -> None:
    """Kills E36 (the PCAP header's snap length 262144 whatever the frames): libpcap's
    snap length bounds every record's captured length; a frame of 300,000 bytes (the
    reader takes up to four times 262144) is exported whole, in a file whose snap
    length is at least its length."""
    big = datagram(1) + bytes(300_000)
    frames = capture(tmp_path / "big.pcap", [(NS, big), (NS + 1_000, datagram(2))], nanos=True)
    out = tmp_path / "a.pcap"
    export_pcap([pcap_run(tmp_path, tmp_path / "big.pcap", frames)], ["A"], out)
    assert struct.unpack_from("<I", out.read_bytes(), 16)[0] == len(big)
    assert [f.data for f in frames_of(out)] == [big, frames[1].data]


def test_what_the_search_chose_is_still_there_to_decode_once_it_forgets(
    tmp_path: Path, forget_soon: int
) -> None:
    """Kills X02 (the datagrams the search chose not among those it keeps once it forgets,
    past FORGET_PAST): a pass decodes the wanted datagrams with what it chose, from what it kept
    (context.py's _agrees), to see whether it went back far enough. The conversation's
    datagram reads the flow template of the datagram before it and holds a set for
    template 300, which comes only after the flow template is defined anew and sent more
    than FORGET_PAST times: the datagram before, chosen and no longer the port's
    definition, is still kept, as is every datagram chosen."""
    swapped = [*FIELDS[:5], FIELDS[6], FIELDS[5], *FIELDS[7:]]  # octets before packets
    path = capture_of(
        tmp_path / "held.pcap",
        EXPORT_S,
        message(template(400, [(8, 4, 0)]), sequence=0),  # the port's first definition
        message(template(FLOW, FIELDS), sequence=0),
        message(data(FLOW, record(2)), data(300, bytes(4)), sequence=0),
        *[message(template(FLOW, swapped), sequence=2 + i) for i in range(forget_soon)],
        message(template(300, [(8, 4, 0)]), sequence=forget_soon + 2),
    )
    at = offsets(path)
    state = context_pass([path], {0: {at[2]}}, 0, context_datagrams, lambda index: None)
    assert {(0, at[1]), (0, at[2]), (0, at[-1])} <= state.needed
    assert state.needed <= set(state.kept)


def test_the_definitions_options_data_were_read_with_are_kept_as_long_as_they(
    tmp_path: Path, forget_soon: int
) -> None:
    """Kills X05 (what kept options data were read with not kept once the search forgets):
    sampler 5's rate is read with options template 262 of the second datagram, sampler 1's
    with template 260 of the third, which carries that rate; 262 is defined anew (another
    layout) with another rate, then the flow template is refreshed past FORGET_PAST. The export
    holds sampler 1's rate, so the third datagram, so the second (context.py's
    with_definitions: each options set applies where it did in the run); the pass still
    keeps it to decode."""
    sampler_262 = options_template(262, [(302, 4)], [(305, 4), (306, 4)])
    sampler_262_again = options_template(262, [(302, 4)], [(306, 4), (305, 4)])
    flow_template = template(FLOW, FIELDS)
    path = capture_of(
        tmp_path / "read_with.pcap",
        EXPORT_S,
        message(flow_template, sequence=0),
        message(sampler_262, sequence=0),
        message(SAMPLER, data(262, struct.pack(">III", 5, 1, 9)), sequence=0),
        message(RATE_100, sequence=1),
        message(sampler_262_again, data(262, struct.pack(">III", 5, 19, 1)), sequence=2),
        *[message(flow_template, sequence=3 + i) for i in range(forget_soon)],
        message(data(FLOW, record(2)), sequence=forget_soon + 3),
    )
    at = offsets(path)
    state = context_pass([path], {0: {at[-1]}}, 0, context_datagrams, lambda index: None)
    assert {(0, at[1]), (0, at[2]), (0, at[3]), (0, at[4])} <= state.needed
    assert state.needed <= set(state.kept)


def test_runs_are_put_in_order_by_their_first_arrival_else_their_window() -> None:
    """Kills R15 (a run whose flows give no arrival put after all the others, not placed by
    its window's start) and R16 (within one millisecond, the window's end before its
    start): run_order_key, "by its first arrival, or its data window's start where its
    flows table gives none (in one slot, so such a run is not put after all the others),
    then its window, then its path"."""
    assert run_order_key(None, 5_000, 6_000, "z") < run_order_key(7_000, 0, 10_000, "a")
    assert run_order_key(None, 100, 900, "b") < run_order_key(None, 400, 500, "a")


def test_a_pass_that_began_late_looks_one_file_ahead_for_a_template(tmp_path: Path) -> None:
    """Kills X12 (a pass begun after the run's first file stops at the last wanted file):
    the conversation's data came before their template, which is in the next file (the run
    read them there); the pass from the conversation's file looks one file ahead and has
    all it needs. Without that it went back to the run's first file, and the export took
    the exporter's boot time from there too, which these records (absolute times) do not
    read: one datagram added, not two."""
    boot = options_template(270, [(149, 4)], [(160, 8)])  # systemInitTimeMilliseconds
    files = [
        capture_of(
            tmp_path / "r0.pcap",
            EXPORT_S,
            message(boot, data(270, struct.pack(">IQ", 5, EXPORT_S * 1000 - 10**6)), sequence=0),
        ),
        capture_of(tmp_path / "r1.pcap", EXPORT_S + 60, message(data(FLOW, record(2)), sequence=1)),
        capture_of(
            tmp_path / "r2.pcap", EXPORT_S + 120, message(template(FLOW, FIELDS), sequence=2)
        ),
    ]
    run = sessionize(tmp_path, *files)
    exported = export_pcap([run], [session_of(run, 2)], tmp_path / "conv.pcap")
    assert (exported.template_datagrams, exported.checked_records, exported.differing_records) == (
        1,
        1,
        0,
    )


def test_records_across_the_cut_between_two_slices_are_said_lost() -> None:
    """A capture sessionized as `--to T` and `--from T` and recombined: --from/--to keep the
    records wholly inside a window, so those crossing T are in neither run, and recombine
    said nothing (a review: 7 of 72 records). Said when the windows cover all time, one
    from the start and the other to the end, meeting or overlapping; a gap between them,
    time left out at either end, or a run without a window, says nothing."""
    cut = 1_000
    for windows, said in (
        (((None, cut), (cut, None)), True),  # cut at one instant
        (((None, cut + 5), (cut, None)), True),  # overlapping
        (((cut, None), (None, cut)), True),  # given the other way round
        (((None, cut), (cut + 1, None)), False),  # a gap left out by choice
        (((None, cut), (None, None)), False),  # the second read every record
        # time left out at either end: what neither read need not cross the cut (a review:
        # "40 of 100" lost of windows [100, 200] and [200, 300] around the capture's 100)
        (((cut - 100, cut), (cut, cut + 100)), False),
        (((None, cut), (None, cut + 100)), False),
        (((cut - 100, None), (cut, None)), False),
    ):
        runs = read_runs([shared(60, 12)], [shared(5, 67)])  # 72 records, 7 in neither
        runs[0].window, runs[1].window = windows
        shared_records(runs)
        notes = [note for note in runs[1].overlaps if "neither" in note]
        assert bool(notes) is said, windows
        if said:
            assert notes[0].startswith("at least 7 of the 72 flow records of x.pcap neither it")
