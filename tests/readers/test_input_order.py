"""Which file is read first when their first records arrived at one instant: the answer
changes sessions (a record read after another's can be late), so it may depend on the
files alone, never on how they were named."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.netflow import NetflowRecordV5
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.errors import InputError, UsageError
from obserae_forensics.readers import (
    NFCAPD_FIRST_ROWS,
    discover_inputs,
    refuse_nothing_to_read,
)
from obserae_forensics.readers.nfcapd import V3_RECORD, first_arrival, read_nfcapd
from obserae_forensics.readers.nfcapd_write import read_raw, write_v2
from obserae_forensics.report import RunReport

from ..conftest import CORPUS, FIXTURES, refuse_listing
from .test_netflow_v5 import EXPORT_S, v5
from .test_pcap import pcap_bytes


def capture(path: Path, source: str, start_ms: int, sequence: int) -> Path:
    """One v5 datagram of one record, exported at EXPORT_S (uptime 200 s), its frame
    captured at EXPORT_S whatever the record: every such capture ties on first arrival."""
    record = NetflowRecordV5(
        src=source,
        dst="10.0.0.9",
        srcport=40000,
        dstport=53,
        prot=17,
        dpkts=1,
        dOctets=60,
        first=start_ms,
        last=start_ms,
    )
    frame = bytes(
        IP(src="192.0.2.1", dst="198.51.100.7")
        / UDP(sport=40000, dport=2055)
        / v5([record], uptime_ms=200_000, sequence=sequence)
    )
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
    evidence: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    for paths in (
        [evidence / "case", evidence / "link" / "a.pcap", evidence / "hard.pcap"],
        [evidence / "hard.pcap", evidence / "link" / "a.pcap", evidence / "case"],
    ):
        names.append([str(f.path) for f in discover_inputs(paths, RunReport())])
    assert names[0] == names[1]
    assert len(names[0]) == 2  # a.pcap under one of its three names, and b.pcap


def test_the_sessions_do_not_depend_on_how_the_files_were_named(
    evidence: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(evidence / "case")
    spellings = (
        [str(evidence / "case" / "a.pcap"), str(evidence / "case" / "b.pcap")],
        [str(evidence / "case" / "b.pcap"), "a.pcap"],
        [str(evidence / "link" / "b.pcap"), str(evidence / "case" / "a.pcap")],
    )
    tables = []
    for number, inputs in enumerate(spellings):
        out = evidence / f"run{number}"
        result = CliRunner().invoke(app, ["sessionize", *inputs, "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
        tables.append((out / "sessions.parquet").read_bytes())
    assert tables[0] == tables[1] == tables[2]
    late = pq.read_table(evidence / "run0" / "sessions.parquet").column("late").to_pylist()
    assert sorted(late) == [False, True]  # b.pcap's record is read second, and late


def test_a_case_folder_is_walked_through_its_links_and_what_it_leaves_is_said(
    evidence: Path,
) -> None:
    """Found by an audit: a link to a sensor's directory inside the case folder was never
    walked (its captures unread, --strict content), a link loop ended the run with a
    traceback, and hidden entries left no trace a report could cite."""
    case = evidence / "folder"
    case.mkdir()
    os.symlink(evidence / "case", case / "sensor1")  # a link to a directory: walked
    os.symlink(case, evidence / "case" / "back")  # a loop back: each directory walked once
    os.symlink("l1", case / "l2")
    os.symlink("l2", case / "l1")  # a loop of file links: unreadable, and the run goes on
    (case / ".sensor2").mkdir()
    capture(case / ".sensor2" / "c.pcap", "10.0.0.3", 1_000, 2)
    report = RunReport()
    found = discover_inputs([case], report)
    assert sorted(os.path.realpath(f.path) for f in found) == [
        str(evidence / "case" / "a.pcap"),
        str(evidence / "case" / "b.pcap"),
    ]
    assert report.skipped == {"unreadable": 2}
    assert "Too many levels of symbolic links" in str(report.examples[0])
    assert report.hidden == [str(case / ".sensor2")] and report.ignored["hidden_entry"] == 1
    alone = RunReport()
    assert len(discover_inputs([evidence / "link"], alone)) == 2  # a directory's link too


def test_a_utf8_name_is_preferred_and_odd_names_are_escaped(evidence: Path) -> None:
    """Found by an audit: of a file's names (hard links, links), the first in text order was
    taken; a name that is not UTF-8 sorted first, was refused, and the file was not read
    at all; its other names went into the manifest as lone surrogates."""
    a = evidence / "case" / "a.pcap"
    odd = Path(os.fsdecode(bytes(evidence / "case") + b"/\x41\xff.pcap"))
    os.link(a, odd)
    report = RunReport()
    found = discover_inputs([evidence / "case"], report)
    assert sorted(str(f.path) for f in found) == [str(a), str(evidence / "case" / "b.pcap")]
    assert not report.skipped
    assert report.files[str(a)].also_named == [str(evidence / "case") + "/A\\xff.pcap"]


def test_an_input_gone_after_it_was_found_is_counted_and_the_run_goes_on(
    evidence: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: a file deleted (or made unreadable) between discovery and its
    reading ended the run as "cannot write: <the input>", with no output."""
    import obserae_forensics.readers as readers

    found = discover_inputs([evidence / "case"], RunReport())
    (evidence / "case" / "b.pcap").unlink()
    report = RunReport()
    batches = list(readers.read_flows(found, report))
    assert sum(b.num_rows for b in batches) == 1
    assert report.skipped == {"unreadable": 1}
    assert "b.pcap@0: cannot read: No such file or directory" in str(report.examples[0])


def test_an_input_that_changed_while_it_was_read_is_said(
    evidence: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: a capture still being written (nfcapd.current, a tcpdump that
    goes on) was cited with its size when found, the records of a later state and the
    SHA-256 of a third, without a word. The change is a problem; --strict stops on it."""
    import dataclasses
    import json

    import obserae_forensics.pipeline as pipeline

    found = pipeline.discover_inputs

    def grown_since(*args: object, **kwargs: object) -> list[object]:
        items = found(*args, **kwargs)  # type: ignore[arg-type]
        return [dataclasses.replace(item, size=item.size - 10) for item in items]

    monkeypatch.setattr(pipeline, "discover_inputs", grown_since)
    out = evidence / "run"
    result = CliRunner().invoke(
        app, ["sessionize", str(evidence / "case"), "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == {"input_changed": 2}
    assert "changed while the run read it" in result.stderr
    strict = CliRunner().invoke(
        app,
        ["sessionize", str(evidence / "case"), "--out", str(evidence / "strict"), "-q", "--strict"],
    )
    assert strict.exit_code == 1 and "changed while the run read it" in strict.stderr
    assert not (evidence / "strict").exists()


def test_a_directory_that_cannot_be_listed_and_a_full_tmpdir_are_counted(
    evidence: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: a subdirectory the run could not list was passed over without a
    word (os.walk swallows the error; --strict content), and a compressed nfcapd file
    whose head could not be spooled to a full TMPDIR ended the run as "cannot write"."""
    import errno
    import gzip
    import tempfile

    locked = evidence / "case" / "locked"
    capture(locked / "c.pcap", "10.0.0.3", 1_000, 2)
    listing = refuse_listing(monkeypatch, locked)
    report = RunReport()
    assert len(discover_inputs([evidence / "case"], report)) == 2
    assert report.skipped == {"unreadable": 1}
    assert f"{locked}@0: cannot list this directory: Permission denied" in str(report.examples[0])
    monkeypatch.setattr(os, "scandir", listing)

    nfcapd = Path(__file__).resolve().parents[2] / "fixtures" / "nfcapd16_sf_v9_varsvc.nfcapd"
    packed = evidence / "packed" / "n.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(nfcapd.read_bytes()))

    def full(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", full)
    report = RunReport()
    assert discover_inputs([packed.parent], report) == []
    with pytest.raises(UsageError, match="nothing to read: no input could be read"):
        refuse_nothing_to_read([], report)  # the commands refuse it: it was the only input
    assert report.skipped == {"unreadable": 1}
    assert report.skipped_bytes == {"unreadable": packed.stat().st_size}


def test_an_earlier_run_inside_the_case_folder_is_not_read_as_evidence(evidence: Path) -> None:
    """Found by an audit: after `sessionize case -o case/run`, a second run over `case` read
    case/run's tables (and a recombine output's) as inputs of unknown format, and --strict
    stopped on them. A capture kept beside them is still read."""
    import json

    runner = CliRunner()
    case = evidence / "case"
    assert (
        runner.invoke(app, ["sessionize", str(case), "--out", str(case / "run"), "-q"]).exit_code
        == 0
    )
    assert (
        runner.invoke(app, ["recombine", str(case / "run"), "--out", str(case / "rc")]).exit_code
        == 0
    )
    capture(case / "run" / "kept.pcap", "10.0.0.4", 5_000, 3)
    out = evidence / "again"
    result = runner.invoke(app, ["sessionize", str(case), "--out", str(out), "-q", "--strict"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(Path(i["path"]).name for i in manifest["inputs"]) == [
        "a.pcap",
        "b.pcap",
        "kept.pcap",
    ]
    assert {Path(e["path"]).name: e["ignored"] for e in manifest["not_read"]} == {
        "run": {"obserae_output": 5},
        "rc": {"obserae_output": 5},
    }  # no Flow Matrix: 5


def test_an_nfcapd_file_copied_twice_into_the_case_is_read_once(tmp_path: Path) -> None:
    """Found by an audit: two byte-identical nfcapd files (a folder copied twice) counted
    every record twice, where a capture's copy loses its datagrams as duplicates."""
    import json

    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "nfcapd16_sf_v9_varsvc.nfcapd"
    case = tmp_path / "case"
    (case / "copy").mkdir(parents=True)
    for place in (case / "nfcapd.201106241550", case / "copy" / "nfcapd.201106241550"):
        place.write_bytes(fixture.read_bytes())
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["sessionize", str(case), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["records_read"] == 72
    assert manifest["not_read"] == [
        {
            "path": str(case / "nfcapd.201106241550"),
            "size": fixture.stat().st_size,
            "skipped": {},
            "ignored": {"duplicate_file": 1},
            "copy_of": str(case / "copy" / "nfcapd.201106241550"),
        }
    ]
    # inspect writes no manifest: its summary names the paths it did not read (an audit:
    # it sent the reader to manifest.json), and a copy is no "not flow export"
    (case / ".notes").write_text("hidden\n")
    result = CliRunner().invoke(app, ["inspect", str(case), "-q"])
    assert result.exit_code == 0, result.output
    assert "manifest.json" not in result.stderr and "not flow exports" not in result.stderr
    assert "other path(s) not read" not in result.stderr  # the copy is said once, as one
    assert f"1 hidden entry of the directories left out ({case / '.notes'})" in result.stderr
    assert (
        "1 nfcapd file(s) not read, byte for byte copies of others read (duplicate_file: "
        f"{case / 'nfcapd.201106241550'} (a copy of "
        f"{case / 'copy' / 'nfcapd.201106241550'}))"
    ) in result.stderr


def test_what_a_walk_counts_is_counted_once_and_files_keep_all_their_names(evidence: Path) -> None:
    """A review: hidden entries were counted once per input path that led to them, a run
    over its own earlier --out (with --force) counted that output as an earlier one's, and
    a directory reached first through a link was not walked under its own name, which
    then went missing from the file's names."""
    import json

    case = evidence / "case"
    (case / ".notes").write_text("hidden\n")
    os.symlink(case, evidence / "a_link")
    report = RunReport()
    found = discover_inputs([evidence], report)
    assert report.ignored["hidden_entry"] == 1  # under the first name the walk met it by
    assert report.hidden == [str(evidence / "a_link" / ".notes")]
    a = next(f for f in found if f.path.name == "a.pcap")
    assert a.path == evidence / "a_link" / "a.pcap"  # the first name in text order
    assert report.files[str(a.path)].also_named == [
        str(case / "a.pcap"),
        str(evidence / "link" / "a.pcap"),
    ]
    report = RunReport()
    discover_inputs([case, case / "..", evidence / "link"], report)
    assert report.ignored["hidden_entry"] == 1
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(
            app, ["sessionize", str(case), "--out", str(case / "run"), "-q", "--force"]
        )
        assert result.exit_code == 0, result.output
        manifest = json.loads((case / "run" / "manifest.json").read_text())
        assert manifest["not_read"] == [] and "obserae_output" not in manifest["counts"]["ignored"]


def _nfcapd_files() -> list[Path]:
    found = [
        path
        for root in (FIXTURES, CORPUS)
        for path in sorted(root.rglob("*"))
        if path.is_file() and "nfcapd" in path.name and not path.name.endswith(".ndjson")
    ]
    return found


def _records_reversed(path: Path, out: Path) -> Path:
    """`path` with each block's flow records in the reverse order: their receive times
    decrease, which no nfcapd file here has (its first record is always the earliest)."""
    raw = read_raw(path)
    for block in raw.blocks:
        flows = [r for r in block if int.from_bytes(r[:2], "little") == V3_RECORD]
        block[:] = [r for r in block if int.from_bytes(r[:2], "little") != V3_RECORD]
        block += flows[::-1]
    write_v2(out, raw)
    return out


@pytest.mark.parametrize("rows", [1, 7, NFCAPD_FIRST_ROWS])
def test_an_nfcapd_files_first_arrival_is_its_first_batchs(rows: int, tmp_path: Path) -> None:
    """The input order rests on an nfcapd file's first batch's earliest arrival, now found
    without building the batch (first_arrival): on every nfcapd file here, damaged ones
    included, it is what read_nfcapd's first batch of the same size gives, or both refuse
    the file."""
    reversed_ = _records_reversed(
        FIXTURES / "nfcapd178_pm_v9_test.lzo.nfcapd", tmp_path / "reversed.nfcapd"
    )
    first = next(read_nfcapd(reversed_, RunReport(), batch_size=NFCAPD_FIRST_ROWS))
    arrivals = first.column("arrival").cast(pa.int64()).to_numpy()
    assert arrivals[0] > arrivals.min()  # the earliest is not the first record's
    files = [*_nfcapd_files(), reversed_]
    assert len(files) > 30
    for path in files:
        try:
            batch = next(
                (b for b in read_nfcapd(path, RunReport(), batch_size=rows) if b.num_rows), None
            )
            expected = (
                (batch.num_rows, int(pc.min(batch.column("arrival").cast(pa.int64())).as_py()))
                if batch is not None
                else (0, None)
            )
        except InputError:
            with pytest.raises(InputError):
                first_arrival(path, rows)
            continue
        assert first_arrival(path, rows) == expected, path
