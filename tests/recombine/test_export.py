"""--export-flows and --export-pcap: real corpus captures as sources, tshark as the judge.

The flows rows are built by hand from the frame offsets of real export captures (read with
readers.pcap.iter_frames), as sessionize will write them: source_file, source_offset (the
frame's record header / pcapng block), arrival (the frame's capture time).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.errors import InputError, UsageError
from obserae_forensics.readers.pcap import Frame, iter_frames
from obserae_forensics.recombine import export_flows, export_pcap, recombine_tables
from obserae_forensics.report import RunReport
from obserae_forensics.tables.manifest import sha256_file
from tests.conftest import need_tool

from .conftest import flows_for, session, write_run

SOURCE = "exports/pm_v9_test.pcap"  # pmacctd v9: 7 datagrams, 45 records


def frames_of(path: Path) -> list[Frame]:
    return list(iter_frames(path, RunReport()))


def tshark_datagrams(tshark: str, path: Path, frames: list[int] | None = None) -> list[str]:
    """(capture time, UDP payload hex) per frame as tshark decodes the file."""
    command = [
        tshark,
        "-r",
        str(path),
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "udp.payload",
    ]
    if frames is not None:
        command += ["-Y", "frame.number in {" + ",".join(map(str, frames)) + "}"]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def conversation_ids(run: Path) -> list[str]:
    """The conversations of a run's sessions table, sorted."""
    return sorted(
        set(pq.read_table(run / "sessions.parquet").column("conversation_id").to_pylist())
    )


def assert_read_back_whole(exported: Any) -> None:
    """Every record the export wrote was decoded again as in the run, nothing skipped."""
    assert exported.records == exported.checked_records > 0
    assert exported.differing_records == 0 and not exported.report.skipped


def conversation_run(
    tmp_path: Path,
    capture: Path,
    frames: list[Frame],
    *,
    record_frames: list[int],
    name: str = "run",
    input_format: str = "pcap",
    a1_close: str = "idle",
) -> Path:
    """Conversation A (two hard_timeout fragments) and B, their records in the given frames.

    record_frames lists the 1-based frame of each record in order: A ab, A ba, A1 ab, A1 ba,
    B ab, B ba.
    """
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(0x1B, 0x12)),
        session("A1", 900, 950, split=1, conversation="A", close=a1_close),
        session("B", 10, 20, a=("10.9.9.9", 5), b=("10.0.0.2", 443)),
    ]
    chosen = [frames[number - 1] for number in record_frames]
    flows = flows_for(
        rows,
        source_file=str(capture),
        offsets=[f.offset for f in chosen],
        arrivals_us=[f.ts_ns // 1000 for f in chosen],
        frames=[f.number for f in chosen],
    )
    inputs = [
        {
            "path": str(capture),
            "format": input_format,
            "size": capture.stat().st_size,
            "sha256": sha256_file(capture),
        }
    ]
    return write_run(tmp_path / name, rows, flows=flows, inputs=inputs)


def test_export_pcap_holds_exactly_the_conversations_datagrams(
    tmp_path: Path, corpus: Path
) -> None:
    tshark = need_tool("tshark")
    capture = corpus / SOURCE
    frames = frames_of(capture)
    # A's records sit in frames 2, 5 (twice: one datagram, two records) and 7; B's in 1 and 3
    run = conversation_run(tmp_path, capture, frames, record_frames=[7, 5, 5, 2, 1, 3])
    result = recombine_tables([run])
    out = tmp_path / "a.pcap"
    # any fragment names the conversation
    exported = export_pcap(result, ["A1"], out, with_templates=False)
    assert exported.format == "pcap" and exported.path == out
    assert exported.datagrams == 3 and exported.records == 4
    assert exported.link_types == [1]
    assert exported.notes == [] and not exported.report.skipped
    # capture order, deduplicated, byte for byte what tshark sees in the source
    assert tshark_datagrams(tshark, out) == tshark_datagrams(tshark, capture, [2, 5, 7])
    assert [f.data for f in frames_of(out)] == [frames[i - 1].data for i in (2, 5, 7)]


def test_export_pcap_from_pcapng_source(tmp_path: Path, corpus: Path) -> None:
    tshark = need_tool("tshark")
    editcap = need_tool("editcap")
    capture = tmp_path / "pm_v9_test.pcapng"
    subprocess.run(
        [editcap, "-F", "pcapng", str(corpus / SOURCE), str(capture)],
        check=True,
        capture_output=True,
    )
    frames = frames_of(capture)
    run = conversation_run(
        tmp_path, capture, frames, record_frames=[4, 4, 6, 6, 1, 1], input_format="pcapng"
    )
    out = tmp_path / "a.pcap"
    exported = export_pcap([run], ["A"], out, with_templates=False)
    assert (exported.format, exported.datagrams) == ("pcap", 2)
    assert tshark_datagrams(tshark, out) == tshark_datagrams(tshark, capture, [4, 6])


def test_mixed_link_types_are_written_as_pcapng(tmp_path: Path, corpus: Path) -> None:
    tshark = need_tool("tshark")
    editcap = need_tool("editcap")
    ethernet = corpus / SOURCE
    raw = tmp_path / "pm_v9_test.rawip4.pcap"  # the same datagrams without Ethernet headers
    subprocess.run(
        [editcap, "-F", "pcap", "-C", "14", "-T", "rawip4", str(ethernet), str(raw)],
        check=True,
        capture_output=True,
    )
    first = conversation_run(
        tmp_path,
        ethernet,
        frames_of(ethernet),
        record_frames=[2, 2, 3, 3, 1, 1],
        name="r1",
        a1_close="hard_timeout",
    )
    rows = [session("A2", 960, 990, split=0)]
    raw_frames = frames_of(raw)
    flows = flows_for(
        rows,
        source_file=str(raw),
        offsets=[raw_frames[5].offset] * 2,
        arrivals_us=[raw_frames[5].ts_ns // 1000] * 2,
    )
    second = write_run(
        tmp_path / "r2", rows, flows=flows, inputs=[{"path": str(raw), "format": "pcap"}]
    )
    # A1 is cut by hard_timeout at 950 with 60 s idle: A2 at 960 in the next run continues it
    result = recombine_tables([first, second])
    out = tmp_path / "a.pcap"
    exported = export_pcap(result, ["A"], out, with_templates=False)
    assert exported.format == "pcapng" and exported.link_types == [1, 228]
    assert "a PCAP file holds one" in exported.notes[0]
    assert exported.datagrams == 3
    decoded = tshark_datagrams(tshark, out)
    assert [line.split("\t")[1] for line in decoded] == [
        line.split("\t")[1]
        for line in (
            tshark_datagrams(tshark, ethernet, [2, 3]) + tshark_datagrams(tshark, raw, [6])
        )
    ]


def test_nfcapd_inputs_have_no_datagrams_and_export_flows_instead(
    tmp_path: Path, corpus: Path
) -> None:
    capture = corpus / "nfcapd" / "sf_v9_test.nfcapd"
    rows = [session("A", 0, 10)]
    flows = flows_for(rows, source_file=str(capture), offsets=[0, 0])
    run = write_run(
        tmp_path / "run", rows, flows=flows, inputs=[{"path": str(capture), "format": "nfcapd-v2"}]
    )
    out = tmp_path / "a.pcap"
    exported = export_pcap([run], ["A"], out, with_templates=False)
    assert exported.path is None and not out.exists()
    assert exported.nfcapd_records == 2
    assert exported.flows_path == tmp_path / "a.flows.parquet"
    assert pq.read_table(exported.flows_path).num_rows == 2
    # by record, not by file (the export audit's E31: "1 flow record(s)")
    assert exported.notes[0].startswith(
        f"2 flow record(s) came from nfcapd file(s) ({capture}), which hold flow records, "
        "not export datagrams"
    )


def test_a_run_of_a_capture_and_an_nfcapd_file_exports_datagrams_and_whole_flow_rows(
    tmp_path: Path, corpus: Path
) -> None:
    """The capture export reads only the columns it places and checks records by; the
    records no datagram carried (here an nfcapd file's, beside a capture's in one run) go to
    the flows file with every column of the run's flows table, as --export-flows writes
    them."""
    capture = corpus / "exports" / "sf_v9_test.pcap"
    nfcapd = corpus / "nfcapd" / "sf_v5_test.nfcapd"
    run = tmp_path / "run"
    assert (
        CliRunner()
        .invoke(app, ["sessionize", str(capture), str(nfcapd), "--out", str(run), "-q"])
        .exit_code
        == 0
    )
    ids = sorted(set(pq.read_table(run / "sessions.parquet").column("conversation_id").to_pylist()))
    exported = export_pcap([run], ids, tmp_path / "all.pcap")
    flows = pq.read_table(run / "flows.parquet")
    from_nfcapd = [row for row in flows.to_pylist() if row["source_file"] == str(nfcapd)]
    assert len(from_nfcapd) and len(from_nfcapd) < flows.num_rows
    assert exported.records == exported.checked_records == flows.num_rows - len(from_nfcapd)
    assert exported.differing_records == 0 and exported.nfcapd_records == len(from_nfcapd)
    assert exported.flows_path is not None
    written = pq.read_table(exported.flows_path)
    assert set(flows.column_names) <= set(written.column_names)
    export_flows([run], ids, tmp_path / "all.parquet")
    whole = pq.read_table(tmp_path / "all.parquet")
    assert written.equals(whole.filter(pc.equal(whole.column("source_file"), str(nfcapd))))


def test_an_export_run_from_elsewhere_finds_the_capture_the_run_read(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest cited inputs only as given: a run made from `case/` with `caps/x.pcap`
    and exported from a directory holding another `caps/x.pcap` took that file, and said the
    evidence had changed since sessionize (exit 1). The manifest now keeps where the file
    was, and of the places a capture may be, the one of its size is taken."""
    case, elsewhere = tmp_path / "case", tmp_path / "elsewhere"
    for directory, name in ((case, "sf_v9_ircdcc.pcap"), (elsewhere, "sf_v5_ircdcc.pcap")):
        (directory / "caps").mkdir(parents=True)
        shutil.copy(corpus / "exports" / name, directory / "caps" / "x.pcap")
    monkeypatch.chdir(case)
    assert (
        CliRunner()
        .invoke(app, ["sessionize", "caps/x.pcap", "--out", "run", "-q", "--hard-timeout", "30s"])
        .exit_code
        == 0
    )
    manifest = json.loads((case / "run" / "manifest.json").read_text())
    assert manifest["inputs"][0]["absolute"] == str(case / "caps" / "x.pcap")
    monkeypatch.chdir(elsewhere)
    ids = conversation_ids(case / "run")
    exported = export_pcap([case / "run"], ids, tmp_path / "all.pcap")
    assert_read_back_whole(exported)


def test_captures_moved_since_the_run_are_found_under_captures_dirs(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evidence copied elsewhere after the run (another machine, a case share) was found
    only through a symbolic link, or by running from a directory holding it by its relative
    name: the export said where it had looked and stopped. `--captures DIR` names where it
    is now; what is found there is checked as the run's capture (size, SHA-256)."""
    case = tmp_path / "case"
    (case / "caps").mkdir(parents=True)
    shutil.copy(corpus / "exports" / "sf_v9_ircdcc.pcap", case / "caps" / "x.pcap")
    monkeypatch.chdir(case)
    assert (
        CliRunner()
        .invoke(app, ["sessionize", "caps/x.pcap", "--out", "run", "-q", "--hard-timeout", "30s"])
        .exit_code
        == 0
    )
    share = tmp_path / "share"
    share.mkdir()
    (case / "caps" / "x.pcap").rename(share / "x.pcap")
    monkeypatch.chdir(tmp_path)
    ids = conversation_ids(case / "run")
    with pytest.raises(UsageError, match=r"not found; looked at .*--captures DIR"):
        export_pcap([case / "run"], ids, tmp_path / "all.pcap")
    exported = export_pcap([case / "run"], ids, tmp_path / "all.pcap", captures=[share])
    assert_read_back_whole(exported)
    result = CliRunner().invoke(
        app,
        [
            "recombine",
            str(case / "run"),
            "--session",
            ids[0],
            "--export-pcap",
            str(tmp_path / "one.pcap"),
            "--captures",
            str(share),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "as in the run" in result.stderr
    # the capture under the directory is evidence: no export writes over it
    result = CliRunner().invoke(
        app,
        [
            "recombine",
            str(case / "run"),
            "--session",
            ids[0],
            "--export-pcap",
            str(share / "x.pcap"),
            "--force",
            "--captures",
            str(share),
        ],
    )
    assert result.exit_code == 2 and "which this command reads" in result.stderr
    # another file of that name there is no evidence of the run
    shutil.copy(corpus / "exports" / "sf_v5_ircdcc.pcap", share / "x.pcap")
    with pytest.raises(InputError, match="changed since sessionize"):
        export_pcap([case / "run"], ids, tmp_path / "other.pcap", captures=[share])


def test_a_frame_that_is_not_where_the_flows_say_is_counted_not_written(
    tmp_path: Path, corpus: Path
) -> None:
    capture = corpus / SOURCE
    frames = frames_of(capture)
    run = conversation_run(tmp_path, capture, frames, record_frames=[2, 2, 3, 3, 1, 1])
    flows = pq.read_table(run / "flows.parquet")
    offsets = flows.column("source_offset").to_pylist()
    offsets[2] += 1  # A1 ab: no record header starts there
    flows = flows.set_column(
        flows.schema.get_field_index("source_offset"), "source_offset", [offsets]
    )
    pq.write_table(flows.cast(flows.schema), run / "flows.parquet")
    exported = export_pcap([run], ["A"], tmp_path / "a.pcap", with_templates=False)
    assert exported.datagrams == 2  # frame 2, and frame 3 through A1's other record
    assert exported.records == 3  # not A1 ab's: no frame of it was written
    assert exported.report.skipped == {"malformed": 1}
    assert "no frame record starts at this offset" in str(exported.report.examples[0])
    # the command says so and fails: the export is not all the flows say
    result = CliRunner().invoke(
        app,
        [
            "recombine",
            str(run),
            "--session",
            "A",
            "--export-pcap",
            str(tmp_path / "b.pcap"),
            "--no-templates",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "1 datagram(s) behind these flows could not be read back" in result.stderr
    assert "no frame record starts at this offset" in result.stderr
    assert "carrying 3 records" in result.stderr


def test_a_flows_table_that_does_not_match_the_sessions_is_refused(
    tmp_path: Path, corpus: Path
) -> None:
    """Found by fuzzing: a flows table without the conversation's records exported
    "0 flow records" and exit 0, though the sessions count 2."""
    capture = corpus / SOURCE
    run = conversation_run(tmp_path, capture, frames_of(capture), record_frames=[2, 2, 3, 3, 1, 1])
    _edit(run / "flows.parquet", lambda t: t.slice(1))
    with pytest.raises(
        UsageError,
        match=r"holds 3 flow record\(s\) of these sessions, "
        r"whose flow_count says 4",
    ):
        export_flows([run], ["A"], tmp_path / "a.csv")


def test_a_changed_capture_is_refused(tmp_path: Path, corpus: Path) -> None:
    capture = tmp_path / "copy.pcap"
    shutil.copy(corpus / SOURCE, capture)
    run = conversation_run(tmp_path, capture, frames_of(capture), record_frames=[2, 2, 3, 3, 1, 1])
    original = capture.read_bytes()
    with open(capture, "ab") as handle:
        handle.write(b"\0" * 16)
    with pytest.raises(InputError, match=r"says \d+: the capture changed since sessionize"):
        export_pcap([run], ["A"], tmp_path / "a.pcap")
    # found by auditing the README: bytes changed in place, same size and frame headers
    # intact, were exported with exit 0 (the capture decoded to other records)
    changed = bytearray(original)
    changed[200:260] = bytes(b ^ 0xFF for b in changed[200:260])
    capture.write_bytes(bytes(changed))
    with pytest.raises(InputError, match="SHA-256 differs"):
        export_pcap([run], ["A"], tmp_path / "a.pcap")
    assert not (tmp_path / "a.pcap").exists()


def test_a_case_folder_moved_whole_finds_its_captures_beside_its_runs(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case folder (its captures and its runs) copied to a share: the manifest names the
    captures by their old absolute paths. They were found only with --captures; by the
    tails of those paths beside the run and its parent they are found as a relative path
    is, each checked as the run's capture (size, SHA-256). Another file of the same name
    and another size beside the run is no candidate."""
    case = tmp_path / "cases" / "x"
    (case / "day1").mkdir(parents=True)
    (case / "day2").mkdir()
    shutil.copy(corpus / "exports" / "sf_v9_ircdcc.pcap", case / "day1" / "c.pcap")
    shutil.copy(corpus / "exports" / "sf_v5_ircdcc.pcap", case / "day2" / "c.pcap")
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(
        app,
        ["sessionize", str(case / "day1" / "c.pcap"), "--out", str(case / "run"), "-q"],
    )
    assert done.exit_code == 0, done.output
    share = tmp_path / "share" / "x"
    shutil.copytree(case, share)
    shutil.rmtree(tmp_path / "cases")
    (share / "c.pcap").write_bytes(b"another file of that name")  # a short tail's
    ids = conversation_ids(share / "run")
    exported = export_pcap([share / "run"], ids, tmp_path / "all.pcap")
    assert_read_back_whole(exported)
    # the capture found there is evidence: no export writes over it
    result = CliRunner().invoke(
        app,
        [
            "recombine",
            str(share / "run"),
            "--session",
            ids[0],
            "--export-pcap",
            str(share / "day1" / "c.pcap"),
            "--force",
        ],
    )
    assert result.exit_code == 2 and "which this command reads" in result.stderr
    # another file of that name under --captures does not keep it from being found (a
    # review: it was taken, and the export said the evidence had changed)
    (tmp_path / "other").mkdir()
    shutil.copy(corpus / "exports" / "sf_v5_ircdcc.pcap", tmp_path / "other" / "c.pcap")
    assert_read_back_whole(
        export_pcap([share / "run"], ids, tmp_path / "b.pcap", captures=[tmp_path / "other"])
    )
    # a file of another size where the manifest names it is the capture changed, refused
    # as that, whatever copy is beside the run
    (tmp_path / "cases" / "x" / "day1").mkdir(parents=True)
    shutil.copy(corpus / "exports" / "sf_v5_ircdcc.pcap", tmp_path / "cases/x/day1/c.pcap")
    with pytest.raises(InputError, match="changed since sessionize"):
        export_pcap([share / "run"], ids, tmp_path / "changed.pcap")
    shutil.rmtree(tmp_path / "cases")
    (share / "day1" / "c.pcap").unlink()
    with pytest.raises(UsageError, match=r"not found; .*tails of its path under"):
        export_pcap([share / "run"], ids, tmp_path / "none.pcap")


def test_relative_source_paths_are_found_beside_the_run(tmp_path: Path, corpus: Path) -> None:
    shutil.copy(corpus / SOURCE, tmp_path / "capture.pcap")
    frames = frames_of(tmp_path / "capture.pcap")
    rows = [session("A", 0, 10)]
    flows = flows_for(
        rows,
        source_file="capture.pcap",
        offsets=[frames[0].offset] * 2,
        arrivals_us=[frames[0].ts_ns // 1000] * 2,
    )
    run = write_run(tmp_path / "run", rows, flows=flows)
    exported = export_pcap([run], ["A"], tmp_path / "out" / "a.pcap", with_templates=False)
    assert exported.datagrams == 1


def flow_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".csv":
        return pacsv.read_csv(path).to_pylist()
    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("name", ["a.parquet", "a.csv"])
def test_export_flows_in_time_order(tmp_path: Path, corpus: Path, name: str) -> None:
    capture = corpus / SOURCE
    run = conversation_run(tmp_path, capture, frames_of(capture), record_frames=[7, 5, 5, 2, 1, 3])
    path = tmp_path / name
    assert export_flows([run], ["A"], path) == 4
    rows = flow_rows(path)
    assert [r["session_id"] for r in rows] == ["A", "A", "A1", "A1"]
    assert {r["conversation_id"] for r in rows} == {"A"}
    assert [r["source_frame"] for r in rows] == [5, 7, 2, 5]  # same first_seen: arrival order
    if name.endswith(".csv"):
        assert (rows[0]["src_addr"], rows[0]["dst_addr"]) == ("10.0.0.2", "10.0.0.1")


@pytest.mark.parametrize("name", ["a.parquet", "a.csv", "a.pcap"])
def test_an_export_that_fails_midway_leaves_no_file(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A CSV export that failed while writing (a time zone pandas could not read) left half
    a file, which the next try refused as "already exists"; every export is now written
    aside and renamed when whole."""
    import obserae_forensics.recombine.export as export

    capture = corpus / SOURCE
    run = conversation_run(tmp_path, capture, frames_of(capture), record_frames=[7, 5, 5, 2, 1, 3])

    def half(*arguments: object) -> None:
        where = next(a for a in arguments if isinstance(a, (str, Path)))
        Path(where).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "write_parquet", half)
    monkeypatch.setattr(export.pacsv, "write_csv", half)
    monkeypatch.setattr(export, "_write_pcap", half)
    path = tmp_path / name
    with pytest.raises(OSError, match="No space left"):
        if name.endswith(".pcap"):
            export_pcap([run], ["A"], path, with_templates=False)
        else:
            export_flows([run], ["A"], path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in tmp_path.iterdir() if p.name != name and not p.name.startswith(".")
    )


def test_export_flows_refuses_unknown_ids_and_formats(tmp_path: Path, corpus: Path) -> None:
    capture = corpus / SOURCE
    run = conversation_run(tmp_path, capture, frames_of(capture), record_frames=[1, 1, 1, 1, 1, 1])
    with pytest.raises(UsageError, match="no session or conversation 'nope'"):
        export_flows([run], ["nope"], tmp_path / "a.parquet")
    with pytest.raises(UsageError, match=r"as \.parquet or \.csv"):
        export_flows([run], ["A"], tmp_path / "a.json")


def _edit(path: Path, change: Any) -> None:
    pq.write_table(change(pq.read_table(path)), path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(["source_offset"]), r"flows table lacks column\(s\) source_offset"),
        (
            lambda t: t.rename_columns(["sid" if c == "session_id" else c for c in t.column_names]),
            r"flows table lacks column\(s\) session_id",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("arrival"), "arrival", t.column("arrival").cast("int64")
            ),
            "column arrival is int64",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("source_offset"),
                "source_offset",
                pa.array([None] * t.num_rows, pa.uint64()),
            ),
            r"column source_offset has \d+ null value",
        ),
    ],
)
def test_an_edited_flows_table_is_named_in_one_line(
    tmp_path: Path, corpus: Path, change: Any, message: str
) -> None:
    """Found by fuzzing the table readers: a flows table without its provenance columns,
    with nulls in them or other types crashed the export (KeyError, a NaN to int), or its
    error printed the whole schema."""
    capture = corpus / SOURCE
    run = conversation_run(tmp_path, capture, frames_of(capture), record_frames=[2, 2, 3, 3, 1, 1])
    _edit(run / "flows.parquet", change)
    for export in (
        lambda: export_pcap([run], ["A", "B"], tmp_path / "a.pcap"),
        lambda: export_flows([run], ["A", "B"], tmp_path / "a.csv"),
    ):
        with pytest.raises(UsageError, match=message) as raised:
            export()
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.set_column(
                t.schema.get_field_index("ip_a"), "ip_a", pa.array([None] * t.num_rows, pa.string())
            ),
            r"column ip_a has \d+ null value",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("session_id"),
                "session_id",
                pa.array(range(t.num_rows), pa.int64()),
            ),
            "column session_id is int64, not string",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("opened_at"),
                "opened_at",
                t.column("opened_at").cast("int64").cast("string"),
            ),
            "column opened_at is string, not timestamp",
        ),
    ],
)
def test_an_edited_sessions_table_is_named_in_one_line(
    tmp_path: Path, corpus: Path, change: Any, message: str
) -> None:
    """Found by fuzzing: nulls in the sessions columns sessionize never leaves null crashed
    recombine (and query.load) deep in its chains; integer ids were cast to text silently
    and chained wrongly."""
    capture = corpus / SOURCE
    run = conversation_run(tmp_path, capture, frames_of(capture), record_frames=[2, 2, 3, 3, 1, 1])
    _edit(run / "sessions.parquet", change)
    with pytest.raises(UsageError, match=message):
        recombine_tables([run])


def test_a_source_that_is_no_capture_or_another_format_is_refused(
    tmp_path: Path, corpus: Path
) -> None:
    """Found by fuzzing: a flows table whose source_file named a file that is no capture
    (a manifest) was taken for an nfcapd file and its records exported as if from one."""
    rows = [session("A", 0, 10)]
    notes = tmp_path / "notes.txt"
    notes.write_text("not a capture at all\n")
    run = write_run(
        tmp_path / "run",
        rows,
        flows=flows_for(rows, source_file=str(notes), offsets=[0, 0]),
        inputs=[{"path": str(notes), "format": "pcap"}],
    )
    with pytest.raises(UsageError, match="is not a PCAP, PCAPNG, nfcapd or IPFIX file"):
        export_pcap([run], ["A"], tmp_path / "a.pcap")
    capture = corpus / SOURCE
    run = write_run(
        tmp_path / "run2",
        rows,
        flows=flows_for(rows, source_file=str(capture), offsets=[0, 0]),
        inputs=[{"path": str(capture), "format": "nfcapd-v2"}],
    )
    with pytest.raises(UsageError, match=r"is pcap, .* manifest says nfcapd-v2"):
        export_pcap([run], ["A"], tmp_path / "b.pcap")


def test_an_export_replaces_its_own_earlier_output_only_with_force(
    tmp_path: Path, corpus: Path
) -> None:
    """Found in review: every file of a run directory counted as evidence, so an export
    written there once could not be written again, even with --force; and the flows of
    nfcapd records beside an --export-pcap replaced an existing file without --force."""
    capture = corpus / SOURCE
    run = conversation_run(tmp_path, capture, frames_of(capture), record_frames=[2, 2, 3, 3, 1, 1])
    target = run / "conversation.csv"
    assert export_flows([run], ["A"], target) == 4
    with pytest.raises(UsageError, match="already exists"):
        export_flows([run], ["A"], target)
    assert export_flows([run], ["A"], target, force=True) == 4
    nfcapd = corpus / "nfcapd" / "sf_v9_test.nfcapd"
    rows = [session("N", 0, 10)]
    run2 = write_run(
        tmp_path / "run2",
        rows,
        flows=flows_for(rows, source_file=str(nfcapd), offsets=[0, 0]),
        inputs=[{"path": str(nfcapd), "format": "nfcapd-v2"}],
    )
    beside = tmp_path / "x.flows.parquet"
    beside.write_text("precious")
    with pytest.raises(UsageError, match=r"flows file .* already exists"):
        export_pcap([run2], ["N"], tmp_path / "x.pcap")
    assert beside.read_text() == "precious"
    result = CliRunner().invoke(
        app,
        [
            "recombine",
            str(run2),
            "--session",
            "N",
            "--export-flows",
            str(beside),
            "--export-pcap",
            str(tmp_path / "x.pcap"),
            "--force",
        ],
    )
    assert result.exit_code == 2 and "one would replace the other" in result.stderr
    assert beside.read_text() == "precious" and not (tmp_path / "x.pcap").exists()


def test_the_flows_export_may_take_the_name_beside_the_capture_when_free(
    tmp_path: Path, corpus: Path
) -> None:
    """`--export-pcap x.pcap --export-flows x.flows.parquet` was refused outright, though
    only records no datagram carried (nfcapd, IPFIX over TCP) are written beside the capture:
    an export of captured datagrams writes both; one with nfcapd records is still refused
    (above), before anything is written."""
    capture = corpus / SOURCE
    run = conversation_run(tmp_path, capture, frames_of(capture), record_frames=[2, 2, 3, 3, 1, 1])
    flows, pcap = tmp_path / "x.flows.parquet", tmp_path / "x.pcap"
    result = CliRunner().invoke(
        app,
        [
            "recombine",
            str(run),
            "--session",
            "A",
            "--export-flows",
            str(flows),
            "--export-pcap",
            str(pcap),
        ],
    )
    assert result.exit_code == 0, result.output
    assert pq.read_table(flows).num_rows == 4
    assert "carrying 4 records" in result.stderr and len(frames_of(pcap)) >= 3


def test_a_column_of_nulls_only_passes_as_its_type(tmp_path: Path, corpus: Path) -> None:
    """Found in review: pandas writes an all-None column (follows_session_id, in most runs)
    as Arrow's null type, which the column check refused."""
    capture = corpus / SOURCE
    run = conversation_run(tmp_path, capture, frames_of(capture), record_frames=[2, 2, 3, 3, 1, 1])
    _edit(
        run / "sessions.parquet",
        lambda t: t.set_column(
            t.schema.get_field_index("follows_session_id"),
            "follows_session_id",
            pa.nulls(t.num_rows),
        ),
    )
    assert recombine_tables([run]).report["counts"]["sessions"] == 3


def test_the_template_datagram_of_an_export_is_its_transport_sessions(tmp_path: Path) -> None:
    """Found by review: the datagram prepended for its templates was the exporter's latest
    from any port, which can be another exporting process's layout (templates belong to
    the transport session, as the decoder keys them)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    from obserae_forensics.recombine.context import template_context
    from tests.readers.test_ipfix import data, message, template
    from tests.readers.test_pcap import pcap_bytes

    fields = [(8, 4, 0), (2, 4, 0)]
    record = struct.pack(">II", 1, 5)
    sent = [
        (50000, message(template(256, fields), data(256, record))),
        (50001, message(template(256, fields[::-1]), data(256, record))),
        (50000, message(data(256, record), sequence=1)),
        (50002, message(data(256, record), sequence=9)),
    ]  # never sends templates
    frames = [
        (
            1_700_000_000 * 10**9 + i,
            bytes(
                Ether()
                / IP(src="192.0.2.1", dst="198.51.100.7")
                / UDP(sport=port, dport=4739)
                / payload
            ),
        )
        for i, (port, payload) in enumerate(sent)
    ]
    path = tmp_path / "two.pcap"
    path.write_bytes(pcap_bytes(frames))
    offsets = [24 + sum(16 + len(f) for _, f in frames[:i]) for i in range(len(frames))]
    assert template_context([path], {0: {offsets[2], offsets[3]}}) == {0: {offsets[0], offsets[1]}}
