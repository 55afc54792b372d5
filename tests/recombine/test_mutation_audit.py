"""Behaviour of recombine's exports, run reading, twin check, report and chaining that no
test pinned, found by a mutation audit (the audit-recombine branch's: 60 small changes to
export.py, runs.py, overlap.py, report.py, chain.py and context.py, 33 of which no test
noticed, 3 of them equivalent). Most are in what an exported capture or flows
file holds: the frames' nanosecond times, original lengths and FCS, pcapng times, capture
order, which file is the evidence, and the flows' order and run_index. Each test fails with
its change applied and names it. The earlier audit's are in tests/test_mutation_audit.py."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from obserae_forensics.errors import UsageError
from obserae_forensics.readers.pcap import Frame
from obserae_forensics.recombine import export_flows, export_pcap, recombine_tables
from obserae_forensics.recombine.export import _cut_fragments
from obserae_forensics.recombine.overlap import OverlapCheck, twin_counts
from obserae_forensics.recombine.runs import DEFAULT_SETTINGS, Run, first_arrival
from obserae_forensics.tables.manifest import sha256_file
from tests.readers.test_pcap import pcap_bytes

from .conftest import SETTINGS, T0_US, flows_for, session, write_run
from .test_chain import SYN_ACK_PSH, conversations, one_run
from .test_export import SOURCE, frames_of
from .test_overlap import RUNS as TWIN_RUNS
from .test_overlap import sessions as twin_rows

NS = 1_700_000_000 * 10**9 + 123_456_789  # a capture time with nanoseconds


def datagram(number: int, *, ethernet: bool = True) -> bytes:
    """A UDP export datagram (its payload only tells it apart: nothing decodes it)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    packet = IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=2055, dport=2055)
    packet = packet / bytes([number] * 40)
    return bytes(Ether() / packet) if ethernet else bytes(packet)


def capture(path: Path, frames: list[tuple[int, bytes]], **kwargs: Any) -> list[Frame]:
    """A PCAP file of `frames` (capture time ns, bytes); pcap_bytes' options."""
    path.write_bytes(pcap_bytes(frames, **kwargs))
    return frames_of(path)


def placed(rows: list[dict[str, Any]], path: Path, frames: list[Frame]) -> pa.Table:
    """The flow rows of `rows`, each record carried by the next of `frames` of `path`."""
    return flows_for(
        rows,
        source_file=str(path),
        offsets=[f.offset for f in frames],
        arrivals_us=[f.ts_ns // 1000 for f in frames],
        frames=[f.number for f in frames],
    )


def pcap_run(tmp_path: Path, path: Path, frames: list[Frame]) -> Path:
    """Conversation A, its two records (ab, ba) in `frames` of the capture `path`."""
    rows = [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    inputs = [{"path": str(path), "format": "pcap"}]
    return write_run(tmp_path / "run", rows, flows=placed(rows, path, frames), inputs=inputs)


# --- recombine/export.py: --export-flows -------------------------------------------------


def test_exported_flows_are_in_first_seen_order_not_last_seen(tmp_path: Path) -> None:
    """Kills M01 (FLOW_ORDER `first_seen, last_seen` -> `last_seen, first_seen`): README,
    --export-flows writes every record "in time order", first_seen first (collect_flows);
    a late piece inside a long record ends before it but began after it."""
    rows = [
        session("A", 0, 100, flags=(SYN_ACK_PSH, 0x12)),
        session("L", 50, 60, late=True, follows="A", ab=(10, 1), ba=(0, 0), flow_count=1),
    ]
    run = write_run(tmp_path / "run", rows)
    assert export_flows([run], ["A"], tmp_path / "a.parquet") == 3
    written = pq.read_table(tmp_path / "a.parquet").to_pylist()
    assert [r["session_id"] for r in written] == ["A", "A", "L"]
    assert [r["direction"] for r in written] == ["ab", "ba", "ab"]


def test_one_record_read_by_two_runs_is_exported_in_run_order(tmp_path: Path) -> None:
    """Kills M02 (flows sort keys without the final `run_index`) and M05 (the `run_index`
    column `run.index` -> 0): README, the flows export has "`run_index` (which of the runs
    given it came from)"; two runs of one capture over windows that overlap both hold a
    record, whose two rows tie on every time and provenance column: they come out in the
    runs' order, not in the order of their directories' names."""
    first = [session("X", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    second = [session("Y", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    run0 = write_run(tmp_path / "z_first", first, window=(0, 10))
    run1 = write_run(tmp_path / "a_second", second, window=(0, 20))
    assert export_flows([run1, run0], ["X", "Y"], tmp_path / "a.parquet") == 4
    written = pq.read_table(tmp_path / "a.parquet")
    assert written.column("session_id").to_pylist() == ["X", "Y", "X", "Y"]
    assert written.column("run_index").to_pylist() == [0, 1, 0, 1]


def test_a_flows_table_with_more_records_than_the_sessions_count_is_refused(
    tmp_path: Path,
) -> None:
    """Kills M04 (`flows.num_rows != expected` -> `<`): README, "a flows table whose rows
    do not add up to the sessions' flow_count" is refused, one record too many as one too
    few (a row repeated by an edit would be exported, and cited, twice)."""
    rows = [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    flows = flows_for(rows)
    run = write_run(tmp_path / "run", rows, flows=pa.concat_tables([flows, flows.slice(0, 1)]))
    with pytest.raises(UsageError, match=r"holds 3 flow record\(s\) of these sessions, whose "):
        export_flows([run], ["A"], tmp_path / "a.csv")
    assert not (tmp_path / "a.csv").exists()


def test_a_flows_export_never_overwrites_a_file_the_run_read(tmp_path: Path) -> None:
    """Kills M25 (run_evidence without the run's `read_files`): the settings, Cartography
    and Flow Matrix files a run read are evidence (run_evidence: "what no export may
    overwrite"), refused as a target even with --force."""
    rows = [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    run = write_run(tmp_path / "run", rows)
    settings = tmp_path / "settings.csv"
    settings.write_text("sessions:\n  grace: 30s\n")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["settings_file"] = {"path": "settings.csv", "absolute": str(settings)}
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match="which this command reads"):
        export_flows([run], ["A"], settings, force=True)
    assert settings.read_text() == "sessions:\n  grace: 30s\n"


@pytest.mark.parametrize(("name", "parquet"), [("a.CSV", False), ("a.PARQUET", True)])
def test_a_flows_export_takes_its_format_from_the_suffix_in_any_case(
    tmp_path: Path, name: str, parquet: bool
) -> None:
    """Kills M26 (check_flows_target `suffix.lower()` -> `suffix`) and M27 (write_flow_table
    `path.suffix.lower()` -> `path.suffix`): `.parquet` or `.csv` by the file's extension,
    as any case writes it; `a.CSV` was refused, `a.PARQUET` written as CSV."""
    rows = [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    run = write_run(tmp_path / "run", rows)
    assert export_flows([run], ["A"], tmp_path / name) == 2
    if parquet:
        assert pq.read_table(tmp_path / name).column("session_id").to_pylist() == ["A", "A"]
    else:
        assert pacsv.read_csv(tmp_path / name).column("session_id").to_pylist() == ["A", "A"]


# --- recombine/export.py: --export-pcap -------------------------------------------------


def test_an_exported_capture_keeps_nanosecond_times(tmp_path: Path) -> None:
    """Kills M16 (`nanos = any(f.ts_ns % 1_000 ...)` -> `nanos = False`): the export holds
    the original datagrams as captured; a capture with nanosecond times is written with the
    nanosecond magic, not cut to microseconds (the times are what a responder cites)."""
    source = capture(
        tmp_path / "ns.pcap", [(NS, datagram(1)), (NS + 1_000_001, datagram(2))], nanos=True
    )
    out = tmp_path / "a.pcap"
    exported = export_pcap([pcap_run(tmp_path, tmp_path / "ns.pcap", source)], ["A"], out)
    assert (exported.format, exported.datagrams) == ("pcap", 2)
    assert [f.ts_ns for f in frames_of(out)] == [NS, NS + 1_000_001]
    assert [f.data for f in frames_of(out)] == [f.data for f in source]


def test_an_exported_capture_keeps_each_frames_original_length(tmp_path: Path) -> None:
    """Kills M18 (record `orig_len` `max(original_length, len(data))` -> `len(data)`): a
    frame the capture's snap length cut keeps its original length in the export, which
    says the datagram was longer than what was captured of it."""
    frames = [(NS, datagram(1)), (NS + 1_000, datagram(2))]
    source = capture(tmp_path / "cut.pcap", frames, caplen_cut=60)
    assert [f.original_length for f in source] == [82, 82]
    out = tmp_path / "a.pcap"
    export_pcap([pcap_run(tmp_path, tmp_path / "cut.pcap", source)], ["A"], out)
    written = frames_of(out)
    assert [(len(f.data), f.original_length) for f in written] == [(60, 82), (60, 82)]


def test_an_exported_capture_keeps_the_frames_fcs_length(tmp_path: Path) -> None:
    """Kills M17 (link type field `(fcs_bytes // 2) << 28` -> `fcs_bytes << 28`): pcap-linktype
    counts the FCS in 16-bit words; a capture of frames with a 4-byte FCS is exported with
    a 4-byte FCS, not an 8-byte one (its readers would cut 4 bytes of each datagram)."""
    linktype = 1 | (1 << 26) | (2 << 28)
    frames = [(NS, datagram(1) + bytes(4)), (NS + 1_000, datagram(2) + bytes(4))]
    source = capture(tmp_path / "fcs.pcap", frames, linktype=linktype)
    assert [f.fcs_bytes for f in source] == [4, 4]
    out = tmp_path / "a.pcap"
    export_pcap([pcap_run(tmp_path, tmp_path / "fcs.pcap", source)], ["A"], out)
    assert out.read_bytes()[20:24] == linktype.to_bytes(4, "little")
    assert [(f.fcs_bytes, f.data) for f in frames_of(out)] == [(4, f.data) for f in source]


def _two_captures_run(
    tmp_path: Path, first: tuple[str, list[Frame]], second: tuple[str, list[Frame]]
) -> Path:
    """A run that read the two captures in this order: conversation A's first fragment
    (cut by hard_timeout) from the first one's frame, its second from the second's."""
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("A1", 900, 950, split=1, conversation="A", flags=(0x18, 0x10)),
    ]
    flows = pa.concat_tables(
        [
            placed(rows[:1], tmp_path / first[0], first[1] * 2),
            placed(rows[1:], tmp_path / second[0], second[1] * 2),
        ]
    )
    inputs = [{"path": str(tmp_path / name), "format": "pcap"} for name, _ in (first, second)]
    return write_run(tmp_path / "run", rows, flows=flows, inputs=inputs)


def test_a_pcapng_export_keeps_each_frames_time(tmp_path: Path) -> None:
    """Kills M19 (pcapng timestamp high and low words swapped) and M20 (if_tsresol option
    code 9 -> 8, so no resolution is given and readers take microseconds): README, frames
    of two link types are written as pcapng, with their capture times as they were."""
    ethernet = capture(tmp_path / "eth.pcap", [(NS, datagram(1))], nanos=True)
    raw = capture(
        tmp_path / "raw.pcap",
        [(NS + 2_000_000_001, datagram(2, ethernet=False))],
        linktype=228,
        nanos=True,
    )
    run = _two_captures_run(tmp_path, ("eth.pcap", ethernet), ("raw.pcap", raw))
    out = tmp_path / "a.pcapng"
    exported = export_pcap([run], ["A"], out)
    assert (exported.format, exported.link_types, exported.datagrams) == ("pcapng", [1, 228], 2)
    written = frames_of(out)
    assert [(f.linktype, f.ts_ns) for f in written] == [(1, NS), (228, NS + 2_000_000_001)]
    assert [f.data for f in written] == [ethernet[0].data, raw[0].data]


def test_of_the_places_a_capture_may_be_the_one_of_the_manifests_size_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills M06 (_resolve without `if sized: return sized[0]`: the first file found): a
    manifest naming its capture relatively (and not where it was) is looked for from here,
    beside the run and beside its parent; another file of that name here, of another size,
    is not the evidence (it was called changed since sessionize and nothing exported)."""
    frames = [(NS, datagram(1)), (NS + 1_000, datagram(2))]
    source = capture(tmp_path / "x.pcap", frames)
    rows = [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    inputs = [{"path": "x.pcap", "format": "pcap", "size": (tmp_path / "x.pcap").stat().st_size}]
    flows = placed(rows, Path("x.pcap"), source)
    run = write_run(tmp_path / "run", rows, flows=flows, inputs=inputs)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    capture(elsewhere / "x.pcap", [(NS, datagram(3))])
    monkeypatch.chdir(elsewhere)
    exported = export_pcap([run], ["A"], tmp_path / "a.pcap")
    assert exported.datagrams == 2 and not exported.report.skipped
    assert [f.data for f in frames_of(tmp_path / "a.pcap")] == [f.data for f in source]


def test_an_export_of_several_captures_is_in_the_order_the_run_read_them(tmp_path: Path) -> None:
    """Kills M15 (captures taken by `(run, name)`, not by their place in the manifest's
    inputs): README, the datagrams are "written in capture order"; a run that read b.pcap,
    then a.pcap (a rotation's names need not sort) exports b's datagram first."""
    first = capture(tmp_path / "b.pcap", [(NS, datagram(1))])
    second = capture(tmp_path / "a.pcap", [(NS + 1_000_000_000, datagram(2))])
    run = _two_captures_run(tmp_path, ("b.pcap", first), ("a.pcap", second))
    exported = export_pcap([run], ["A"], tmp_path / "out.pcap")
    assert exported.datagrams == 2
    written = frames_of(tmp_path / "out.pcap")
    assert [f.data for f in written] == [first[0].data, second[0].data]
    assert [f.ts_ns for f in written] == [first[0].ts_ns, second[0].ts_ns]


def test_a_frame_earlier_than_the_flows_arrival_is_counted_not_written(tmp_path: Path) -> None:
    """Kills M12 (frame check `ts_ns // 1_000 != expected_us` -> `>`): README, "a datagram
    that cannot be read back where the flows say (the provenance was edited) is listed with
    its reason"; a frame at the offset whose capture time is a microsecond before the
    record's arrival is not the frame sessionize read, whichever side the time is off."""
    source = capture(tmp_path / "x.pcap", [(NS, datagram(1)), (NS + 1_000_000, datagram(2))])
    rows = [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    flows = placed(rows, tmp_path / "x.pcap", source)
    arrival = flows.column("arrival").cast(pa.int64()).to_pylist()
    arrival[1] += 1  # the flows say the second datagram came 1 µs after its frame's time
    index = flows.schema.get_field_index("arrival")
    flows = flows.set_column(
        index, "arrival", pa.array(arrival).cast(flows.schema.field(index).type)
    )
    inputs = [{"path": str(tmp_path / "x.pcap"), "format": "pcap"}]
    run = write_run(tmp_path / "run", rows, flows=flows, inputs=inputs)
    exported = export_pcap([run], ["A"], tmp_path / "a.pcap", with_templates=False)
    assert (exported.datagrams, exported.records) == (1, 1)
    assert exported.report.skipped == {"malformed": 1}
    assert "differs from the flows' arrival" in str(exported.report.examples[0])
    assert [f.data for f in frames_of(tmp_path / "a.pcap")] == [source[0].data]


def test_two_copies_of_one_capture_export_each_datagram_once(tmp_path: Path) -> None:
    """Kills M29 (a capture's identity always its path, not its SHA-256): README, datagrams
    are "deduplicated (once per capture and offset, whatever runs read it)"; two runs that
    read one capture under two names (the same SHA-256) hold one datagram once."""
    source = capture(tmp_path / "x.pcap", [(NS, datagram(1))])
    (tmp_path / "copy.pcap").write_bytes((tmp_path / "x.pcap").read_bytes())
    digest = sha256_file(tmp_path / "x.pcap")
    runs = []
    for name, sid, window in (("x.pcap", "X", (0, 10)), ("copy.pcap", "Y", (0, 20))):
        rows = [session(sid, 0, 10, flags=(SYN_ACK_PSH, 0x12))]
        inputs = [{"path": str(tmp_path / name), "format": "pcap", "sha256": digest}]
        flows = placed(rows, tmp_path / name, source * 2)
        runs.append(write_run(tmp_path / sid, rows, flows=flows, inputs=inputs, window=window))
    exported = export_pcap(runs, ["X", "Y"], tmp_path / "a.pcap", with_templates=False)
    assert (exported.datagrams, exported.records) == (1, 4)
    assert [f.data for f in frames_of(tmp_path / "a.pcap")] == [source[0].data]


def test_the_note_names_the_first_run_that_read_the_capture(tmp_path: Path, corpus: Path) -> None:
    """Kills M28 (_check_export's capture names `setdefault` -> the last run's): a datagram
    two runs of one capture read is written once (README), and the note on its records
    names "the first run that read it", run 0 here, not the last. And, from a later audit,
    E23 (template_datagrams counting each run's context, written or not): the template
    datagram both runs need is written once (README: "once per capture and offset,
    whatever runs read it"), and the count of datagrams added for templates says one."""
    path = corpus / SOURCE
    frames = frames_of(path)
    inputs = [{"path": str(path), "format": "pcap", "sha256": sha256_file(path)}]
    runs = []
    for sid, window in (("X", (0, 10)), ("Y", (0, 20))):
        rows = [session(sid, 0, 10, flags=(SYN_ACK_PSH, 0x12))]
        flows = placed(rows, path, [frames[1]] * 2)
        runs.append(write_run(tmp_path / sid, rows, flows=flows, inputs=inputs, window=window))
    exported = export_pcap(runs, ["X", "Y"], tmp_path / "a.pcap")
    # frame 2 once, and the template datagram it needs
    assert (exported.datagrams, exported.template_datagrams, exported.records) == (2, 1, 4)
    [note] = [n for n in exported.notes if "decode otherwise" in n]
    assert "than in run 0 (first: record 0 of the datagram at byte" in note


def test_a_fragment_older_than_the_reassembly_timeout_is_not_taken_from_the_file_before(
    tmp_path: Path,
) -> None:
    """Kills M21 (_cut_fragments' bound `max(frame times) - FRAGMENT_TIMEOUT_NS` -> `min`):
    a datagram's first fragment in the file before (a rotation's cut) is sought no further
    back than the run's reassembly waits, the timeout before its latest fragment; a
    fragment of an earlier datagram that reused the identification and never completed
    lies before that and is not exported with it."""
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.l2 import Ether

    from obserae_forensics.readers.pcap import FRAGMENT_TIMEOUT_NS

    def pieces(fill: int) -> list[bytes]:
        packet = IP(src="192.0.2.9", dst="192.0.2.1", id=77) / UDP(sport=9995, dport=2055)
        return [bytes(Ether() / p) for p in fragment(packet / bytes([fill] * 1400), fragsize=600)]

    stale, real = pieces(1), pieces(2)
    assert len(real) == 3
    start = 1_700_000_000 * 10**9
    before = capture(tmp_path / "r0.pcap", [(start, stale[0]), (start + 25 * 10**9, real[0])])
    after = capture(
        tmp_path / "r1.pcap",
        [(start + 26 * 10**9, real[1]), (start + FRAGMENT_TIMEOUT_NS + 10 * 10**9, real[2])],
    )
    found = {after[1].offset: after}
    names = ["r0.pcap", "r1.pcap"]
    files: list[Path | None] = [tmp_path / name for name in names]
    _cut_fragments(found, (0, "r1.pcap"), {0: Run(tmp_path / "run")}, (names, files), set())
    assert [f.data for f in found[after[1].offset]] == [before[1].data, *(f.data for f in after)]


def test_under_captures_the_longest_tail_of_the_path_is_taken_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills M23 (the path's tails under --captures, shortest first): README, captures are
    looked for under each `--captures DIR` "by the path as given and each of its tails,
    the longest first, down to the file's name"; a manifest with no size or SHA-256 to tell
    them apart takes share/day1/x.pcap, not another day's share/x.pcap."""
    share = tmp_path / "share"
    (share / "day1").mkdir(parents=True)
    source = capture(share / "day1" / "x.pcap", [(NS, datagram(1)), (NS + 1_000, datagram(2))])
    capture(share / "x.pcap", [(NS + 86_400 * 10**9, datagram(3))])
    rows = [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    flows = placed(rows, Path("day1/x.pcap"), source)
    inputs = [{"path": "day1/x.pcap", "format": "pcap"}]
    run = write_run(tmp_path / "case" / "run", rows, flows=flows, inputs=inputs)
    monkeypatch.chdir(tmp_path)
    exported = export_pcap([run], ["A"], tmp_path / "a.pcap", captures=[share])
    assert exported.datagrams == 2 and not exported.report.skipped
    assert [f.data for f in frames_of(tmp_path / "a.pcap")] == [f.data for f in source]


def test_where_sessionize_found_the_capture_is_looked_at_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills M24 (the manifest's `absolute` path appended after the others, not first):
    README, captures are looked for "where the manifest says `sessionize` read them (as
    given, and absolute)"; an export run from a directory holding another x.pcap, which the
    manifest's size cannot tell apart (it has none), takes the file sessionize read."""
    (tmp_path / "evidence").mkdir()
    real = tmp_path / "evidence" / "x.pcap"
    source = capture(real, [(NS, datagram(1)), (NS + 1_000, datagram(2))])
    rows = [session("A", 0, 10, flags=(SYN_ACK_PSH, 0x12))]
    inputs = [{"path": "x.pcap", "format": "pcap", "absolute": str(real)}]
    run = write_run(
        tmp_path / "run", rows, flows=placed(rows, Path("x.pcap"), source), inputs=inputs
    )
    (tmp_path / "elsewhere").mkdir()
    capture(tmp_path / "elsewhere" / "x.pcap", [(NS, datagram(3)), (NS + 1_000, datagram(4))])
    monkeypatch.chdir(tmp_path / "elsewhere")
    exported = export_pcap([run], ["A"], tmp_path / "a.pcap")
    assert exported.datagrams == 2 and not exported.report.skipped
    assert [f.data for f in frames_of(tmp_path / "a.pcap")] == [f.data for f in source]


# --- recombine/runs.py ------------------------------------------------------------------------


def test_a_run_made_with_no_grace_is_recombined(tmp_path: Path) -> None:
    """Kills M32 (a manifest setting `seconds < 0` refused -> `seconds <= 0`): sessionize
    takes `sessions.grace` >= 0 (policy.py: "must be >= 0"), so a run made with a grace of
    0 s is one recombine reads; its fragments join within the idle timeout as any other."""
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("B", 900.5, 1000, split=1, conversation="A"),
    ]
    result = one_run(tmp_path, rows, settings={**SETTINGS, "sessions.grace": 0.0})
    assert result.runs[0].settings["sessions.grace"] == 0.0
    assert conversations(result)["A"]["session_ids"] == ["A", "B"]


def test_a_runs_first_arrival_is_the_least_of_every_row_group(tmp_path: Path) -> None:
    """Kills M33 (first_arrival `min(found)` -> `found[0]`): runs are ordered by "the
    earliest `arrival`, from the flows table's footer" (README); an offline export's rows
    are not in arrival order, and the earliest may be in any row group."""
    rows = [session("A", 0, 10), session("B", 5, 20, a=("10.0.0.3", 5))]
    arrivals = [T0_US + 9_000_000, T0_US + 8_000_000, T0_US + 3_000_000, T0_US + 4_000_000]
    run = write_run(tmp_path / "run", rows, flows=flows_for(rows, arrivals_us=arrivals))
    flows = pq.read_table(run / "flows.parquet")
    pq.write_table(flows, run / "flows.parquet", row_group_size=1)
    assert pq.ParquetFile(run / "flows.parquet").metadata.num_row_groups == 4
    assert first_arrival(run) == T0_US + 3_000_000


# --- recombine/overlap.py -----------------------------------------------------------------


def test_a_copy_opened_exactly_the_grace_later_is_a_twin() -> None:
    """Kills M37 (twin `opened - opened_before <= grace` -> `<`): README, a twin is a
    session "opened within the grace" of one of an earlier run; 30 s later is within it."""
    table = twin_rows(
        [
            (0, "10.0.0.1", 5000, 100, 50),
            (1, "10.0.0.1", 5000, 130, 50),  # exactly the 30 s grace later: a twin
            (0, "10.0.0.2", 5001, 100, 60),
            (1, "10.0.0.2", 5001, 131, 60),  # 31 s: not
        ]
    )
    assert twin_counts(table, TWIN_RUNS) == ({(1, "192.0.2.1"): 1}, {(1, "192.0.2.1"): 0})


def test_a_twin_is_judged_by_the_later_runs_grace() -> None:
    """Kills M38 (twin grace `grace[maximum(run, run before)]` -> `minimum`): the copies are
    "opened within the later run's grace of each other" (overlap.py); a run made with a
    60 s grace repeating one of a 30 s run 45 s later repeats it."""
    runs = [
        Run(Path("r0"), index=0, settings=dict(DEFAULT_SETTINGS)),
        Run(Path("r1"), index=1, settings={**DEFAULT_SETTINGS, "sessions.grace": 60.0}),
    ]
    table = twin_rows([(0, "10.0.0.1", 5000, 100, 50), (1, "10.0.0.1", 5000, 145, 50)])
    assert twin_counts(table, runs) == ({(1, "192.0.2.1"): 1}, {(1, "192.0.2.1"): 0})


def test_the_run_a_twin_repeats_is_the_earliest_any_bucket_found() -> None:
    """Kills M40 (OverlapCheck.add `min(run, earlier)` -> `max`): the note names the
    earliest run repeated ("repeat one of run 0"), whichever bucket of keys found it."""
    check = OverlapCheck()
    place = (2, "192.0.2.1")
    check.sessions[place] = 10
    check.add((Counter({place: 3}), {place: 1}))
    check.add((Counter({place: 3}), {place: 0}))
    runs = [Run(Path(f"r{i}"), index=i, settings=dict(DEFAULT_SETTINGS)) for i in range(3)]
    check.note(runs)
    [note] = runs[2].overlaps
    assert note.startswith("6 of its 10 sessions of exporter 192.0.2.1 repeat one of run 0 ")


# --- recombine/report.py ------------------------------------------------------------------


def test_a_head_cut_conversation_from_fragment_0_is_told_to_start_before_the_window(
    tmp_path: Path,
) -> None:
    """Kills M45 (outside_window `first_split` `splits[0]` -> `splits[-1]`): README, "fragment
    0 is outside the window: widen the window to start before T"; for a conversation whose
    fragment 0 is there (split 0) but may have begun before the exporter's first record, T
    is that first record, not the conversation's own first_seen."""
    udp = {"protocol": 17, "ba": (0, 0)}
    rows = [
        session("FIRST", 0, 1, a=("10.0.0.3", 5), close="no_reply", **udp),
        session("U", 10, 899, close="hard_timeout", **udp),
        session("U1", 900, 950, split=1, conversation="U", close="no_reply", **udp),
    ]
    result = one_run(tmp_path, rows)
    [entry] = [
        e for e in result.report["outside_window"]["head_cut"] if e["conversation_id"] == "U"
    ]
    assert (entry["first_split"], entry["fragments"]) == (0, 2)
    assert entry["message"].startswith("may have begun before the window")
    assert entry["message"].endswith("start before 2024-03-01T12:00:00.000Z to know")


def test_the_report_gives_each_hard_timeout_the_runs_used(tmp_path: Path) -> None:
    """Kills M46 (current_hard_timeout of `sorted({every run's})` -> the first run's only):
    runs may have been made with different settings (runs.py); the report says how many
    conversations each setting the runs used keeps whole, not only the first run's."""
    first = write_run(tmp_path / "r0", [session("X", 0, 100, flags=(SYN_ACK_PSH, 0x12))])
    second = write_run(
        tmp_path / "r1",
        [session("Y", 2000, 3000, a=("10.9.9.9", 1), flags=(SYN_ACK_PSH, 0x12))],
        settings={**SETTINGS, "sessions.hard_timeout": 600.0},
    )
    durations = recombine_tables([second, first]).report["durations"]
    assert durations["current_hard_timeout"] == [
        {"seconds": 600.0, "keeps_whole_pct": 50.0},
        {"seconds": 900.0, "keeps_whole_pct": 50.0},
    ]


# --- recombine/chain.py -------------------------------------------------------------------


def test_of_two_fragments_ending_together_the_later_one_decides_the_state(
    tmp_path: Path,
) -> None:
    """Kills M56 (final fragment on a tie: the later in fragment order -> the earlier):
    chain.py, the fragment whose state is the conversation's is the non-late one with the
    latest record, "the later in fragment order on a tie"; an evicted fragment and the
    next one, which reached back into it and ended with it, closed idle: the conversation
    ended, it was not cut at the window's end."""
    rows = [
        session("A", 0, 200, close="evicted", flags=(SYN_ACK_PSH, 0x12)),
        session("B", 150, 200, split=1, conversation="A", close="idle", flags=(0x18, 0x10)),
    ]
    a = conversations(one_run(tmp_path, rows))["A"]
    assert a["session_ids"] == ["A", "B"]
    assert (a["state"], a["close_reason"], a["tail_cut"], a["state_inferred"]) == (
        "closed",
        "idle",
        False,
        False,
    )


def test_a_fragment_seen_the_other_way_round_gives_its_flags_to_the_right_side(
    tmp_path: Path,
) -> None:
    """Kills M52 (conversation flags: a flipped fragment's `ab_flags` not swapped): README,
    "a later fragment seen the other way round has its counters swapped", its flags too; the
    server's FIN in fragment 0 and the client's in fragment 1 (seen from the server: its
    `ba`) are FIN both ways: the last fragment's idle timeout closes the finished
    connection, `fin`."""
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(0x1A, 0x13)),
        session(
            "B",
            900,
            950,
            split=1,
            conversation="A",
            close="idle",
            a=("10.0.0.2", 443),
            b=("10.0.0.1", 40000),
            client=("10.0.0.1", 40000),
            server=("10.0.0.2", 443),
            flags=(0x10, 0x11),
        ),
    ]
    result = one_run(tmp_path, rows)
    a = conversations(result)["A"]
    assert [f["flipped"] for f in result.fragments.to_pylist()] == [False, True]
    assert (a["state"], a["close_reason"]) == ("closed", "fin")


def test_a_fragment_with_a_rst_of_its_own_is_a_finished_connection(tmp_path: Path) -> None:
    """Kills M54 (_finished_so_far without `| RST`): README rule (3), a cut fragment of "a
    finished TCP connection (a RST of its own, or FIN both ways ...)" is joined only within
    the grace (30 s); a record 40 s after its RST, inside the 60 s idle, is not."""
    rows = [
        session("R", 0, 100, close="hard_timeout", flags=(SYN_ACK_PSH | 0x04, 0x12)),
        session("K", 140, 140, close="no_reply", flags=(0x10, 0), ba=(0, 0)),
        session(
            "S", 0, 100, close="hard_timeout", flags=(SYN_ACK_PSH | 0x04, 0x12), a=("10.0.0.11", 1)
        ),
        session("T", 120, 120, close="no_reply", flags=(0x10, 0), ba=(0, 0), a=("10.0.0.11", 1)),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id["R"]["session_ids"] == ["R"] and by_id["K"]["session_ids"] == ["K"]
    assert by_id["S"]["session_ids"] == ["S", "T"]  # 20 s: within the grace
