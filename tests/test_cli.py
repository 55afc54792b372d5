"""The commands end to end on the bundled fixture and the corpus: exit codes, outputs, manifest."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from obserae_forensics.cli import app
from obserae_forensics.readers.pcap import iter_frames
from obserae_forensics.report import RunReport
from tests.conftest import need_tool, refuse_listing

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "sf_v9_varsvc.pcap"
runner = CliRunner()


def digest(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.glob("*.parquet"))
    }


def test_inspect_prints_the_exporter_and_writes_flows(tmp_path: Path) -> None:
    flows = tmp_path / "flows.parquet"
    result = runner.invoke(app, ["inspect", str(FIXTURE), "--flows", str(flows), "-q"])
    assert result.exit_code == 0, result.output
    assert "127.0.0.1" in result.stdout
    assert "72 flow records read from 1 file(s)" in result.stderr
    table = pq.read_table(flows)
    assert table.num_rows == 72
    assert sum(table.column("packets").to_pylist()) == 259
    assert sum(table.column("octets").to_pylist()) == 45779
    assert set(table.column("exporter").to_pylist()) == {"127.0.0.1"}
    # every value whole, however wide the table: it was cut to "…" in a log (an audit)
    assert "…" not in result.stdout
    assert "-486488428.3" in result.stdout  # the capture clock's lead, in seconds
    # both ends of it: the largest alone hid a span of 16 years (an audit)
    assert "clock offset min s" in result.stdout
    assert result.stdout.count("-486488428.313") == 2


def test_a_folder_of_an_earlier_run_alone_is_refused_as_that(tmp_path: Path) -> None:
    """An audit: `inspect RUN_DIR` said "an empty directory, or only hidden entries" of a
    folder holding an earlier run's tables, which are left out of the inputs on purpose."""
    result = runner.invoke(app, ["sessionize", str(FIXTURE), "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    for command in (
        ["inspect", str(tmp_path / "run")],
        ["sessionize", str(tmp_path / "run"), "--out", str(tmp_path / "again")],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "only the 5 output file(s) of an earlier run of this tool" in result.stderr
        assert "empty directory" not in result.stderr


def test_inspect_unknown_file_is_one_line_and_strict_fails(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a capture\n")
    result = runner.invoke(app, ["inspect", str(junk), str(FIXTURE), "-q"])
    assert result.exit_code == 0
    assert f"unknown_format: {junk}@0: not a PCAP, PCAPNG, nfcapd or IPFIX file" in result.stderr
    strict = runner.invoke(app, ["inspect", str(junk), "--strict", "-q"])
    assert strict.exit_code == 1
    assert f"error: {junk}@0: not a PCAP, PCAPNG, nfcapd or IPFIX file" in strict.stderr
    assert "Traceback" not in strict.output


def sessionize(out: Path, *extra: str) -> Result:
    return runner.invoke(app, ["sessionize", str(FIXTURE), "--out", str(out), "-q", *extra])


# the bundled example's Cartography and Flow Matrix, as `sessionize` options
FIXTURE_RULES = (
    "--cartography",
    str(FIXTURE.parent / "cartography.yaml"),
    "--flow-matrix",
    str(FIXTURE.parent / "flow_matrix.yaml"),
)


def test_sessionize_writes_every_table_and_a_citable_manifest(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = sessionize(out)
    assert result.exit_code == 0, result.output
    for name in ("sessions", "flows", "exporters"):
        assert (out / f"{name}.parquet").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["conservation"]["ok"] is True
    assert manifest["session_ids"] == {"unique": True, "repeated": 0, "examples": []}
    assert manifest["conservation"]["records_in"] == 72
    assert manifest["conservation"]["packets_in_sessions"] == 259
    assert manifest["conservation"]["bytes_in_sessions"] == 45779
    assert manifest["inputs"][0]["sha256"] == hashlib.sha256(FIXTURE.read_bytes()).hexdigest()
    assert manifest["settings"]["sessions.grace"] == 30
    # the libraries whose versions can change a table's bytes or a kernel's result
    assert set(manifest["tool"]) == {"name", "version", "python", "pyarrow", "numpy", "numba"}
    sessions = pq.read_table(out / "sessions.parquet")
    assert sum(sessions.column("flow_count").to_pylist()) == 72
    flows = pq.read_table(out / "flows.parquet")
    assert flows.num_rows == 72
    assert set(flows.column("session_id").to_pylist()) == set(
        sessions.column("session_id").to_pylist()
    )
    assert set(flows.column("direction").to_pylist()) <= {"ab", "ba"}
    assert not list(tmp_path.glob(".*partial"))
    # the manifest ties itself to every table it describes, as a report cites them (it
    # hashed the inputs alone: a table edited since the run could not be told, a review)
    assert sorted(manifest["outputs"]) == sorted(p.name for p in out.glob("*.parquet"))
    assert len(manifest["outputs"]) == 4
    for name, cited in manifest["outputs"].items():
        data = (out / name).read_bytes()
        assert cited == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def outputs_said(texts: Sequence[str]) -> list[str]:
    return [text for text in texts if "(outputs)" in text]


def test_a_table_changed_since_the_run_is_said_wherever_it_is_read(tmp_path: Path) -> None:
    """A review: recombine, show and load read tables edited since the run without a word,
    though the manifest cites each one's size and SHA-256. Here the sessions are written
    again with the same rows (another compression: every count still agrees with the
    flows); a run untouched says nothing, nor of the session_matches.parquet that a run
    made without a Flow Matrix never had."""
    from obserae_forensics.query import load

    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    untouched = runner.invoke(app, ["recombine", str(out), "--out", str(tmp_path / "r0")])
    assert untouched.exit_code == 0, untouched.output
    assert outputs_said(untouched.output.splitlines()) == []
    assert outputs_said(load(out).notes) == []
    assert outputs_said(runner.invoke(app, ["show", str(out)]).stdout.splitlines()) == []

    pq.write_table(
        pq.read_table(out / "sessions.parquet"), out / "sessions.parquet", compression="gzip"
    )
    said = (
        f"sessions.parquet is {(out / 'sessions.parquet').stat().st_size} bytes where the "
        "manifest cites"
    )
    recombined = runner.invoke(app, ["recombine", str(out), "--out", str(tmp_path / "r1")])
    assert recombined.exit_code == 0, recombined.output
    [warning] = outputs_said(recombined.output.splitlines())
    assert warning.startswith(f"warning: run 0 ({out}): {said}")
    assert said in (tmp_path / "r1" / "report.md").read_text()
    [note] = outputs_said(load(out).notes)
    assert note.startswith(f"{out}: {said}")
    assert said in runner.invoke(app, ["show", str(out)]).stdout
    assert (
        outputs_said(runner.invoke(app, ["show", str(out), "--table", "flows"]).stdout.splitlines())
        == []
    )


def test_a_table_of_the_cited_size_is_told_by_its_hash_where_read_whole(tmp_path: Path) -> None:
    """The size alone passes a table edited in place; recombine and load, which read the
    sessions whole, hash them. A cited table gone is said too: load gave None for a
    missing session_matches.parquet, which reads as "made without a Flow Matrix"."""
    from obserae_forensics.query import load

    out = tmp_path / "run"
    assert sessionize(out, *FIXTURE_RULES).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["outputs"]["sessions.parquet"]["sha256"] = "0" * 64  # as if the bytes changed
    (out / "manifest.json").write_text(json.dumps(manifest))
    said = "sessions.parquet's SHA-256 differs from the manifest's (outputs)"
    recombined = runner.invoke(app, ["recombine", str(out), "--out", str(tmp_path / "r1")])
    assert said in recombined.output
    (out / "session_matches.parquet").unlink()
    run = load(out)
    assert run.matches is None
    assert outputs_said(run.notes) == [
        f"{out}: {said}: the table was changed since the run, and what is read from it is "
        "not what sessionize wrote",
        f"{out}: session_matches.parquet is missing, though the manifest cites it (outputs)",
    ]
    # show reads a few rows: sizes alone, and the size is the cited one
    assert outputs_said(runner.invoke(app, ["show", str(out)]).stdout.splitlines()) == []


def one_traffic_twice(corpus: Path) -> list[str]:
    """The corpus's export captures: several hold the same 2010 test traffic exported from
    one address (127.0.0.1) by softflowd, pmacct and nfreplay, with 2025 traffic from that
    address between them. Later copies' records are late, and many reach back to sessions
    of an earlier copy that are forgotten by then (the watermark moved on to 2025)."""
    return [str(corpus / "exports")]


def test_rule_files_are_cited_as_read_when_edited_while_the_run_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: the settings, Cartography and Flow Matrix were hashed at the run's end, so
    a file edited while a long run went (the next version of the rules) was cited as the
    one the run had read, and load said nothing of matches made with the earlier one. The
    manifest cites the bytes read and says what changed; the summary warns."""
    import obserae_forensics.pipeline as pipeline
    from obserae_forensics.query import load

    rules = {}
    for name in ("cartography.yaml", "flow_matrix.yaml"):
        rules[name] = tmp_path / name
        rules[name].write_bytes((FIXTURE.parent / name).read_bytes())
    settings = tmp_path / "settings.yaml"
    settings.write_text("sessions:\r\n  grace: 20s\r\n")  # Windows line ends read alike
    read = {
        path: hashlib.sha256(path.read_bytes()).hexdigest() for path in [*rules.values(), settings]
    }
    manifest_of = pipeline._manifest

    def edit_then_cite(*args: object, **kwargs: object) -> object:
        with rules["flow_matrix.yaml"].open("a") as handle:
            handle.write("# edited while the run went\n")
        settings.unlink()
        return manifest_of(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "_manifest", edit_then_cite)
    out = tmp_path / "run"
    result = sessionize(
        out,
        "--cartography",
        str(rules["cartography.yaml"]),
        "--flow-matrix",
        str(rules["flow_matrix.yaml"]),
        "--config",
        str(settings),
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["sessions.grace"] == 20
    for key, path in (
        ("cartography", rules["cartography.yaml"]),
        ("flow_matrix", rules["flow_matrix.yaml"]),
        ("settings_file", settings),
    ):
        assert manifest[key]["sha256"] == read[path], key
    assert "changed" not in manifest["cartography"]
    now = hashlib.sha256(rules["flow_matrix.yaml"].read_bytes()).hexdigest()
    said = (
        f"changed since the run read it: it now hashes to {now}; the SHA-256 cited is of "
        "the bytes the run read"
    )
    assert manifest["flow_matrix"]["changed"] == said
    assert manifest["settings_file"]["changed"].startswith("could not be read at the run's end")
    assert f"warning: Flow Matrix {rules['flow_matrix.yaml']} {said}" in result.stderr
    assert f"warning: settings file {settings} could not be read" in result.stderr
    assert any("changed since the run" in note for note in load(out).notes)


def test_the_manifest_says_what_came_of_each_file(tmp_path: Path) -> None:
    """Counts per input (records, what was skipped in it), and the files found but not read,
    with why: a report cites which file each number came from (found by an audit: the
    manifest only had run totals, and a file of unknown format only as a count)."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (evidence / "a.pcap").write_bytes(FIXTURE.read_bytes())
    (evidence / "notes.txt").write_text("collected by the night shift\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["sessionize", str(evidence), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    [cited] = manifest["inputs"]
    assert (cited["records"], cited["skipped"]) == (72, {})
    assert manifest["counts"]["records_read"] == 72
    # cited by hash as the inputs are, evidence given and not used (sizes alone: a review)
    assert manifest["not_read"] == [
        {
            "path": str(evidence / "notes.txt"),
            "size": 29,
            "skipped": {"unknown_format": 1},
            "sha256": hashlib.sha256(b"collected by the night shift\n").hexdigest(),
        }
    ]
    assert manifest["counts"]["skipped"] == {"unknown_format": 1}
    assert manifest["counts"]["sequence_loss"] == []  # a whole export: no word of loss


def test_a_loss_the_sequence_numbers_show_is_in_the_summary_and_the_manifest(
    tmp_path: Path,
) -> None:
    """Live softflowd IPFIX with its third datagram (4 records) lost on the way: only the
    exporters table said so, and the summary and the manifest a report cites said
    nothing of evidence with a hole in it (a review)."""
    out = tmp_path / "run"
    lost = FIXTURE.parent / "live" / "sf_v10_frame3_lost.pcap"
    result = runner.invoke(app, ["sessionize", str(lost), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert (
        "the sequence numbers of 1 exporter(s) (127.0.0.1) show 1 gap(s), 4 unit(s) lost"
        in result.stderr
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["sequence_loss"] == [
        {"exporter": "127.0.0.1", "domain": 0, "gaps": 1, "lost": 4, "nfcapd_failures": 0}
    ]
    whole = runner.invoke(app, ["inspect", str(FIXTURE), "-q"])
    assert "sequence numbers" not in whole.stderr
    # an nfcapd file keeps nfcapd's failure count alone, which counts softflowd's IPFIX
    # numbering too: said as what it is, no loss claimed
    nfcapd = FIXTURE.parent / "nfcapd178_akvorado_sampled.nfcapd"
    counted = runner.invoke(app, ["inspect", str(nfcapd), "-q"])
    assert "nfcapd counted 2 sequence failure(s) of 1 exporter(s) (127.0.0.1)" in counted.stderr
    assert "lost" not in counted.stderr
    # the capture's gap and nfcapd's failures of one exporter, said apart: they read "3
    # gap(s), 4 unit(s) lost" and nfcapd's count went unsaid (a review)
    both = runner.invoke(app, ["inspect", str(lost), str(nfcapd), "-q"])
    assert "(127.0.0.1) show 1 gap(s), 4 unit(s) lost" in both.stderr
    assert "nfcapd counted 2 sequence failure(s) of 1 exporter(s) (127.0.0.1)" in both.stderr
    # and in the table, nfcapd's part of the gaps beside them (an audit: "seq gaps 8, seq
    # lost 0" of an nfcapd file read as gaps of nothing lost), only where there is one
    [titles] = [line for line in both.stdout.splitlines() if "seq gaps" in line]
    [cells] = [line for line in both.stdout.splitlines() if "127.0.0.1" in line]
    shown = dict(zip(titles.split("┃")[1:-1], cells.split("│")[1:-1], strict=True))
    assert {k.strip(): v.strip() for k, v in shown.items() if "seq" in k or "nfcapd" in k} == {
        "seq gaps": "3",
        "of them nfcapd's": "2",
        "seq lost": "4",
    }
    assert "seq gaps" in whole.stdout and "nfcapd's" not in whole.stdout
    out = tmp_path / "both"
    done = runner.invoke(app, ["sessionize", str(lost), str(nfcapd), "--out", str(out), "-q"])
    assert done.exit_code == 0, done.output
    [row] = pq.read_table(out / "exporters.parquet").to_pylist()
    assert (row["sequence_gaps"], row["nfcapd_failures"], row["sequence_lost"]) == (3, 2, 4)


def test_one_exporter_address_in_two_captures_gives_unique_session_ids(
    corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["sessionize", *one_traffic_twice(corpus), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["session_ids"]["unique"] is True
    sessions = pq.read_table(out / "sessions.parquet")
    ids = sessions.column("session_id").to_pylist()
    assert len(set(ids)) == len(ids)
    # the repeats the ids used to share: late sessions with one (key, opened_at) twice
    keys = [
        (
            s["ip_a"],
            s["port_a"],
            s["ip_b"],
            s["port_b"],
            s["protocol"],
            s["opened_at"],
            s["split"],
            s["late"],
        )
        for s in sessions.to_pylist()
    ]
    assert len(set(keys)) < len(keys)


def test_one_file_under_one_name_in_two_directories_gives_unique_session_ids(
    corpus: Path, tmp_path: Path
) -> None:
    """Found by a fuzzer: identities hashed only the file's name, so the second copy's deep
    sessions took the first copy's ids."""
    copies = []
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        copy = tmp_path / folder / "sf_v9_synscan.nfcapd"
        copy.write_bytes((corpus / "nfcapd" / "sf_v9_synscan.nfcapd").read_bytes())
        copies.append(str(copy))
    out = tmp_path / "run"
    result = runner.invoke(app, ["sessionize", *copies, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["session_ids"]["unique"] is True


def test_repeated_session_ids_fail_the_run_and_show_in_the_manifest(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The uniqueness check's plumbing: ids made to repeat (every session the same id)."""
    import numpy as np

    from obserae_forensics.sessionize import output

    monkeypatch.setattr(
        output, "session_ids", lambda seeds, cols: np.zeros(cols.shape[1], dtype=np.uint64)
    )
    out = tmp_path / "run"
    result = runner.invoke(app, ["sessionize", *one_traffic_twice(corpus), "--out", str(out), "-q"])
    assert result.exit_code == 1
    assert "session id check FAILED" in result.output
    check = json.loads((out / "manifest.json").read_text())["session_ids"]
    assert (check["unique"], check["examples"]) == (False, ["0000000000000000"])
    assert check["repeated"] >= 1


def test_the_cap_option_takes_fractions_like_the_yaml(tmp_path: Path) -> None:
    """Found by an audit: the option was an integer, so 0.002 (two sessions) was refused."""
    for value, shown in (("0.002", 0.002), ("500", 500)):
        out = tmp_path / value
        result = sessionize(out, "--max-open-ksessions", value)
        assert result.exit_code == 0, result.output
        settings = json.loads((out / "manifest.json").read_text())["settings"]
        assert settings["sessions.max_open_ksessions"] == shown
        assert type(settings["sessions.max_open_ksessions"]) is type(shown)


@pytest.mark.parametrize(
    "arguments",
    [
        ["sessionize", str(FIXTURE), "--out", "x", "--batch-size", "abc"],
        ["sessionize"],
        ["show", "no-such-directory"],
        ["no-such-command"],
    ],
)
def test_a_mistyped_command_line_ends_in_one_error_line(arguments: list[str]) -> None:
    """Found by fuzzing: typer framed click's own usage errors in a box over several lines
    (the project's errors are one line each), which a log or `2>&1 | tail -1` cut apart."""
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and len(last) > len("Error: ")
    assert "╭" not in result.stderr and "Traceback" not in result.output


def test_no_output_lands_on_the_evidence_even_with_force(tmp_path: Path) -> None:
    """Found by fuzzing: `inspect a.pcap --flows a.pcap` overwrote the capture (without even
    --force), `sessionize caps --out caps --force` deleted the captures with the old output,
    and `recombine --export-pcap` onto the capture, or `--export-flows` onto the run's own
    flows.parquet, replaced them. --force replaces earlier outputs, never the inputs."""
    caps = tmp_path / "caps"
    caps.mkdir()
    capture = caps / "a.pcap"
    capture.write_bytes(FIXTURE.read_bytes())
    original = capture.read_bytes()
    link = tmp_path / "link.pcap"
    link.symlink_to(capture)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "c.yaml").write_text("hosts:\n")

    def refused(*arguments: str) -> str:
        result = runner.invoke(
            app, [*arguments, "-q"] if arguments[0] != "recombine" else list(arguments)
        )
        assert result.exit_code == 2, result.output
        assert "refusing" in result.stderr
        return result.stderr

    assert "would overwrite" in refused("inspect", str(capture), "--flows", str(link), "--force")
    refused("sessionize", str(caps), "--out", str(caps), "--force")
    refused("sessionize", str(capture), "--out", str(tmp_path), "--force")
    refused(
        "sessionize",
        str(capture),
        "--out",
        str(rules),
        "--force",
        "--cartography",
        str(rules / "c.yaml"),
    )
    run = tmp_path / "run"
    assert runner.invoke(app, ["sessionize", str(capture), "--out", str(run), "-q"]).exit_code == 0
    session_id = pq.read_table(run / "sessions.parquet").column("session_id")[0].as_py()
    tables = {p.name: p.read_bytes() for p in run.iterdir()}
    refused("recombine", str(run), "--session", session_id, "--export-pcap", str(link), "--force")
    for name in ("flows.parquet", "sessions.parquet", "sessions_consolidated.parquet"):
        refused(
            "recombine",
            str(run),
            "--session",
            session_id,
            "--export-flows",
            str(run / ".." / "run" / name),
            "--force",
        )
    assert capture.read_bytes() == original and (rules / "c.yaml").exists()
    assert {p.name: p.read_bytes() for p in run.iterdir()} == tables
    # found by auditing the README: the files a run read besides its inputs were not
    # evidence to recombine (--export-flows over the run's Cartography replaced it)
    # (named .csv: an export's suffix says its format)
    settings, cartography = rules / "s.csv", rules / "c.csv"
    settings.write_text("sessions:\n  grace: 10s\n")
    cartography.write_text("hosts:\n")
    ruled = tmp_path / "ruled"
    assert (
        runner.invoke(
            app,
            [
                "sessionize",
                str(capture),
                "--out",
                str(ruled),
                "-q",
                "--config",
                str(settings),
                "--cartography",
                str(cartography),
            ],
        ).exit_code
        == 0
    )
    manifest = json.loads((ruled / "manifest.json").read_text())
    assert manifest["settings_file"]["absolute"] == str(settings.resolve())
    assert manifest["flow_matrix"] is None
    for target in (settings, cartography):
        before = target.read_bytes()
        refused(
            "recombine",
            str(ruled),
            "--session",
            session_id,
            "--export-flows",
            str(target),
            "--force",
        )
        assert target.read_bytes() == before
    # an output beside the evidence is fine, and an existing --flows file needs --force
    flows = tmp_path / "flows.parquet"
    for extra, code in (([], 0), ([], 2), (["--force"], 0)):
        result = runner.invoke(app, ["inspect", str(capture), "--flows", str(flows), "-q", *extra])
        assert result.exit_code == code, result.output


def test_outputs_that_cannot_be_written_end_in_one_line(tmp_path: Path) -> None:
    """Found by fuzzing: a path under /proc, a directory or a named pipe as the output gave
    tracebacks, and `inspect --flows NAME --force` turned a device or a pipe into a Parquet
    file (run as root, /dev/null)."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    directory = tmp_path / "dir"
    directory.mkdir()
    for target, message in ((pipe, "is not a regular file"), (directory, "is not a regular file")):
        result = runner.invoke(
            app, ["inspect", str(FIXTURE), "--flows", str(target), "--force", "-q"]
        )
        assert result.exit_code == 2 and message in result.stderr, result.output
    assert pipe.is_fifo()
    missing = Path("/proc/no-such-directory-here")
    cases = [
        ["inspect", str(FIXTURE), "--flows", str(missing / "f.parquet"), "-q"],
        ["sessionize", str(FIXTURE), "--out", str(missing / "run"), "-q"],
    ]
    for arguments in cases:
        result = runner.invoke(app, arguments)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: cannot write: ")
        assert "Traceback" not in result.output


def test_inspect_leaves_nothing_half_written_when_the_flows_cannot_be_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: a rename (or final flush) that fails left .flows.parquet.partial."""

    def full(self: Path, target: object) -> None:
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(Path, "replace", full)
    result = runner.invoke(
        app, ["inspect", str(FIXTURE), "--flows", str(tmp_path / "flows.parquet"), "-q"]
    )
    assert result.exit_code == 1, result.output
    assert "cannot write: " in result.stderr and "No space left on device" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_both_exports_to_one_file_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert sessionize(run_dir).exit_code == 0
    session_id = pq.read_table(run_dir / "sessions.parquet").column("session_id")[0].as_py()
    target = tmp_path / "x.parquet"
    result = runner.invoke(
        app,
        [
            "recombine",
            str(run_dir),
            "--session",
            session_id,
            "--export-flows",
            str(target),
            "--export-pcap",
            str(tmp_path / "." / "x.parquet"),
        ],
    )
    assert result.exit_code == 2 and "one would replace the other" in result.stderr
    assert not target.exists()


def test_existing_output_is_refused_without_force(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    result = sessionize(out)
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert sessionize(out, "--force").exit_code == 0


def test_force_replaces_only_an_earlier_output_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--force` deleted whatever directory --out named (`--out ~/cases --force` lost the
    cases), and `--out .` ran the whole job before failing at the rename, leaving its
    staging directory beside it."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "case.txt").write_text("keep me")
    result = sessionize(notes, "--force")
    assert result.exit_code == 2 and "holds case.txt, which no run writes" in result.stderr
    assert (notes / "case.txt").read_text() == "keep me"
    run = tmp_path / "run"
    assert sessionize(run).exit_code == 0
    before = digest(run)
    monkeypatch.chdir(run)
    result = sessionize(Path("."), "--force")
    assert result.exit_code == 2 and "is the current directory" in result.stderr
    assert digest(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "run"]  # no staging left
    monkeypatch.chdir(tmp_path)
    (run / ".recombine.k3j2_x.partial").mkdir()  # what a killed recombine --out run leaves
    (run / ".sessions_recombined.parquet.ab12cd").write_bytes(b"half")
    assert sessionize(run, "--force").exit_code == 0 and digest(run) == before
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_outputs_get_the_modes_the_umask_gives(tmp_path: Path) -> None:
    """The run directory was made by mkdtemp (0700) and recombine's files by mkstemp
    (0600): run as root, nobody else could read a case's tables."""
    mask = os.umask(0o022)
    try:
        run = tmp_path / "run"
        assert sessionize(run).exit_code == 0
        assert runner.invoke(app, ["recombine", str(run), "--out", str(run)]).exit_code == 0
    finally:
        os.umask(mask)
    assert oct(run.stat().st_mode & 0o777) == oct(0o755)
    assert {oct(path.stat().st_mode & 0o777) for path in run.iterdir()} == {oct(0o644)}


def test_the_summary_says_when_the_open_session_cap_closed_sessions(tmp_path: Path) -> None:
    """Found by a responder's audit: conversations cut by the cap were said only in
    manifest.json (`evicted`, `peak_open`), not in the summary a person reads."""
    result = sessionize(tmp_path / "capped", "--max-open-ksessions", "0.005")
    assert result.exit_code == 0, result.output
    evicted = (
        pq.read_table(tmp_path / "capped" / "sessions.parquet")
        .column("close_reason")
        .to_pylist()
        .count("evicted")
    )
    assert evicted > 0
    assert (
        f"{evicted} sessions were closed early at the open-session cap "
        "(sessions.max_open_ksessions = 0.005, per exporter; 1 exporter(s) reached it: "
        "127.0.0.1), close_reason evicted"
    ) in result.stderr
    # the seed's scan query finds evicted attempts in recombine's conversations (a review)
    assert "settles an evicted unanswered attempt no_reply again: query scans there" in (
        result.stderr
    )
    assert "open-session cap" not in sessionize(tmp_path / "whole").stderr


def test_a_capture_given_twice_is_said_not_dropped_silently(tmp_path: Path) -> None:
    """Found by a responder's audit: a copy of a capture beside it read as "45 flow records
    from 2 file(s)", the copy with 0 records and no reason in the manifest (only the
    exporters table's `duplicates` had it), and a name through a link was dropped without a
    word."""
    copies = tmp_path / "copies"
    copies.mkdir()
    (copies / "a.pcap").write_bytes(FIXTURE.read_bytes())
    (copies / "b.pcap").write_bytes(FIXTURE.read_bytes())
    (copies / "link.pcap").symlink_to("a.pcap")
    out = tmp_path / "run"
    result = runner.invoke(app, ["sessionize", str(copies), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    datagrams = sum(1 for _ in iter_frames(FIXTURE, RunReport()))
    assert (
        f"72 flow records read from 2 file(s); {datagrams} duplicate datagram(s) dropped "
        "(copies of ones already read"
    ) in result.stderr
    assert "1 other name(s) of files given twice, each file read once" in result.stderr
    inputs = {
        Path(i["path"]).name: i for i in json.loads((out / "manifest.json").read_text())["inputs"]
    }
    assert inputs["a.pcap"]["also_named"] == [str(copies / "link.pcap")]
    assert inputs["b.pcap"]["duplicate_datagrams"] == datagrams
    assert inputs["b.pcap"]["records"] == 0 and "link.pcap" not in inputs


def test_nothing_to_read_and_a_flows_file_that_is_not_parquet_are_usage_errors(
    tmp_path: Path,
) -> None:
    """Found by a responder's audit: an empty input directory (a wrong mount point) gave an
    empty run and exit 0, even with --strict; `inspect --flows f.csv` wrote Parquet under a
    CSV name."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".hidden.pcap").write_bytes(FIXTURE.read_bytes())
    result = runner.invoke(app, ["sessionize", str(empty), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "no input file in" in result.stderr
    assert not (tmp_path / "run").exists()
    # one empty among others: a problem, said, and --strict stops on it
    result = runner.invoke(
        app, ["sessionize", str(empty), str(FIXTURE), "--out", str(tmp_path / "some"), "-q"]
    )
    assert result.exit_code == 0 and "skipped: 1 empty_directory" in result.stderr
    result = runner.invoke(
        app, ["sessionize", str(empty), str(FIXTURE), "--out", str(tmp_path / "strict"), "--strict"]
    )
    assert result.exit_code == 1 and "a directory holding no file" in result.stderr
    result = runner.invoke(app, ["inspect", str(FIXTURE), "--flows", str(tmp_path / "f.csv")])
    assert result.exit_code == 2 and "written as Parquet" in result.stderr
    assert not (tmp_path / "f.csv").exists()
    run = tmp_path / "run"
    assert sessionize(run).exit_code == 0
    before = digest(run)
    result = runner.invoke(
        app, ["inspect", str(FIXTURE), "--flows", str(run / "flows.parquet"), "--force"]
    )
    assert result.exit_code == 2 and "is a file of the sessionize run in" in result.stderr
    assert digest(run) == before


def test_inputs_none_of_which_can_be_read_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: named inputs that were all skipped (an empty file, /dev/null, a
    pipe such as `<(zcat x.pcap.gz)`, a directory that cannot be listed) gave an empty run
    and exit 0, where an empty directory is refused; and a directory that could not be
    listed was said to be empty, alone, or counted twice, beside others."""

    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    table = tmp_path / "sessions.parquet"  # a run's table given back (a review)
    pq.write_table(pa.table({"session_id": ["a"]}), table)
    locked = tmp_path / "locked"
    locked.mkdir()
    refuse_listing(monkeypatch, locked)
    for inputs, said in (
        ([empty], "unrecognised magic in an empty file"),
        ([table], "a Parquet table, such as a run's (read one with show or query.load)"),
        ([Path(os.devnull)], "not a regular file"),
        ([locked], "cannot list this directory: Permission denied"),
        ([empty, locked], "cannot list this directory"),
    ):
        for command in (
            ["sessionize", *map(str, inputs), "--out", str(tmp_path / "run")],
            ["inspect", *map(str, inputs)],
        ):
            result = runner.invoke(app, command)
            assert result.exit_code == 2, result.output
            assert "nothing to read: no input could be read" in result.stderr
            assert said in result.stderr and "empty directory" not in result.stderr
            assert not (tmp_path / "run").exists()
    # beside a capture, alone or inside a case folder, it is `unreadable` alone, not also an
    # empty directory (a review: the folder holding it was)
    case = tmp_path / "case"
    case.mkdir()
    locked.rename(case / "locked")
    locked = case / "locked"
    refuse_listing(monkeypatch, locked)  # where it is now
    for given in (locked, case):
        result = runner.invoke(
            app,
            [
                "sessionize",
                str(given),
                str(FIXTURE),
                "--out",
                str(tmp_path / "run"),
                "-q",
                "--force",
            ],
        )
        assert result.exit_code == 0, result.output
        manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
        assert manifest["counts"]["skipped"] == {"unreadable": 1}
    # the refusal counts every input it does not show, not the examples kept (20 a reason)
    many = tmp_path / "many"
    many.mkdir()
    for number in range(30):
        (many / f"{number:02d}.pcap").write_bytes(b"")
    result = runner.invoke(app, ["inspect", str(many)])
    assert result.exit_code == 2 and "; and 27 more)" in result.stderr


def test_fragments_of_one_conversation_are_shown_once_and_without_nan(
    tmp_path: Path, corpus: Path
) -> None:
    """Found by a responder's audit: two fragments of one conversation given to --session
    printed it twice, the first fragment's missing link_reason showed as NaN, and `show
    --table nope` did not say which tables there are."""
    out = tmp_path / "run"
    assert (
        runner.invoke(
            app,
            [
                "sessionize",
                str(corpus / "exports" / "sf_v10_ircdcc.pcap"),
                "--out",
                str(out),
                "-q",
                "--hard-timeout",
                "1s",
            ],
        ).exit_code
        == 0
    )
    sessions = pq.read_table(out / "sessions.parquet").to_pylist()
    split = next(row for row in sessions if row["split"] == 1)
    ids = [
        row["session_id"] for row in sessions if row["conversation_id"] == split["conversation_id"]
    ]
    result = runner.invoke(app, ["recombine", str(out), "--session", ids[0], "--session", ids[1]])
    assert result.exit_code == 0, result.output
    assert result.stdout.count(f"conversation {split['conversation_id']}:") == 1
    assert "NaN" not in result.stdout and "None" not in result.stdout
    result = runner.invoke(app, ["show", str(out), "--table", "nope"])
    assert result.exit_code == 2
    assert "holds exporters, flows, sessions, sessions_consolidated" in result.stderr


def test_a_path_that_is_not_utf8_is_said_not_a_traceback(tmp_path: Path) -> None:
    """Found by an audit: a file or directory name that is not UTF-8 (an evidence disk's)
    ended the run with a traceback where it met the tables' text columns. Found in a
    directory it is a problem, counted, and the rest is read; given, or as --out, it is a
    usage error."""
    root = os.fsencode(tmp_path)
    directory = root + b"/caps/sub\xff"
    os.makedirs(directory)
    with open(directory + b"/cap\xe9.pcap", "wb") as handle:
        handle.write(FIXTURE.read_bytes())
    with open(root + b"/caps/good.pcap", "wb") as handle:
        handle.write(FIXTURE.read_bytes())
    caps = str(tmp_path / "caps")
    result = runner.invoke(app, ["sessionize", caps, "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    assert "its name is not valid UTF-8" in result.stderr and "72 flow records" in result.stderr
    for arguments in (
        [os.fsdecode(directory + b"/cap\xe9.pcap"), "--out", str(tmp_path / "r2")],
        [str(FIXTURE), "--out", os.fsdecode(root + b"/out\xff")],
    ):
        result = runner.invoke(app, ["sessionize", *arguments, "-q"])
        assert result.exit_code == 2 and "is not valid UTF-8" in result.output + result.stderr
        # its bytes as the manifest shows them (an audit: `\\udcff`)
        assert "\\udc" not in result.output + result.stderr
        assert (
            "\\xe9.pcap" in result.output + result.stderr
            or "out\\xff" in result.output + result.stderr
        )
    # --out a file: --force would not help, so it is not offered (an audit)
    afile = tmp_path / "afile"
    afile.write_text("notes\n")
    for force in ([], ["--force"]):
        result = runner.invoke(app, ["sessionize", str(FIXTURE), "--out", str(afile), "-q", *force])
        assert result.exit_code == 2 and "exists and is not a directory" in result.stderr
        assert "--force" not in result.stderr


def test_bad_settings_stop_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = sessionize(out, "--grace", "soon")
    assert result.exit_code == 2
    assert "sessions.grace" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "warned"),
    [
        ("", True),
        ("# sessions:\n#   hard_timeout: 1h\n", True),
        ("sessions:\n", True),
        ("sessions:\n  grace: 10s\n", False),
    ],
)
def test_a_settings_file_that_sets_nothing_is_said(tmp_path: Path, text: str, warned: bool) -> None:
    """A settings file whose settings are all commented out (or empty) ran the defaults
    without a word: valid, and said, as the user meant something by --config."""
    config = tmp_path / "settings.yaml"
    config.write_text(text)
    result = sessionize(tmp_path / "run", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert (f"warning: {config} sets nothing" in result.stderr) == warned


@pytest.mark.parametrize(
    ("cartography", "matrix", "warned"),
    [
        ("hosts:\n", "rules: []\n", ("declares no host", "has no rules")),
        ("networks: ~\ngroups:\n", "rules:\n", ("declares no host", "has no rules")),
        ("hosts:\n  lab: 172.16.238.131\n", "rules: []\n", ("has no rules",)),
        ("hosts:\n  lab: {addresses: [172.16.238.131], services: [tcp/22]}\n", None, ()),
        (
            "hosts:\n  lab: 172.16.238.131\n",
            "rules:\n  - {name: ssh, source: any, destination: lab, protocol: tcp, ports: 22}\n",
            (),
        ),
    ],
)
def test_rule_files_that_hold_nothing_are_said(
    tmp_path: Path, cartography: str, matrix: str | None, warned: tuple[str, ...]
) -> None:
    """Found by a review: a Flow Matrix of no rules and a Cartography of empty sections
    were taken without a word, and every session came out unmatched."""
    names = tmp_path / "cartography.yaml"
    names.write_text(cartography)
    arguments = ["--cartography", str(names)]
    if matrix is not None:
        (tmp_path / "flow_matrix.yaml").write_text(matrix)
        arguments += ["--flow-matrix", str(tmp_path / "flow_matrix.yaml")]
    result = sessionize(tmp_path / "run", *arguments)
    assert result.exit_code == 0, result.output
    said = tuple(text for text in ("declares no host", "has no rules") if text in result.stderr)
    assert said == warned


def test_a_run_that_dies_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import obserae_forensics.sessionize as sessionize_package

    class Boom(RuntimeError):
        pass

    def explode(self: object, batch: object) -> None:
        raise Boom("simulated crash")

    monkeypatch.setattr(sessionize_package.Sessionizer, "feed", explode)
    out = tmp_path / "run"
    result = sessionize(out)
    assert isinstance(result.exception, Boom)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def _interrupt_as_a_terminal_does() -> None:
    """preexec_fn: SIGINT at its default in the child, as a shell's foreground job has it.
    A background job of a non-interactive shell starts with SIGINT ignored, and Python,
    like the package, then leaves it so: a suite run that way failed these tests (the
    thirty-sixth session's first CI run, started with `( ... & )`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


SLOW_RUN = """
import sys, time
from pathlib import Path
import obserae_forensics.sessionize as package
import obserae_forensics.tables.parquet as parquet
started, where = Path(sys.argv[1]), sys.argv[2]
feed, commit = package.Sessionizer.feed, parquet._commit
def slow_feed(self, batch):
    if where == "feed":
        started.touch()  # the run is under way, its staging directory made
        time.sleep(0.3)
    return feed(self, batch)
def slow_commit(*arguments, **options):
    if where == "commit":
        started.touch()  # the run is being put in place
        time.sleep(1.5)
    return commit(*arguments, **options)
package.Sessionizer.feed, parquet._commit = slow_feed, slow_commit
import obserae_forensics.report as report
summary = report.RunReport.summary
def slow_summary(self):
    if where == "summary":
        started.touch()  # the run is in place, the command about to say so
        time.sleep(1.5)
    return summary(self)
report.RunReport.summary = slow_summary
import atexit
if where == "exit":  # the interpreter shutting down after the command
    atexit.register(lambda: (started.touch(), time.sleep(1.5)))
sys.argv = ["obserae-forensics", *sys.argv[3:]]
from obserae_forensics.cli import main
main()
"""


@pytest.mark.parametrize(
    ("sent", "code", "said"), [(15, 143, "terminated (SIGTERM)"), (2, 130, "interrupted")]
)
@pytest.mark.parametrize("where", ["feed", "commit"])
def test_a_run_stopped_by_a_signal_leaves_nothing_half_written_and_says_so(
    tmp_path: Path, sent: int, code: int, said: str, where: str
) -> None:
    """SIGTERM (kill, timeout, systemd) ended a run where it stood, and its hidden staging
    directory (318 MB on the 5.2 M-record set) stayed beside the output for good; it now
    unwinds as Ctrl-C does, a second signal does not interrupt the cleanup, and one that
    comes while the run is put in place waits for it (it used to leave the new output
    with the old one half-deleted, and say nothing was written). An earlier run replaced
    with --force is left as it was, or replaced whole."""
    import signal
    import time

    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    before = digest(out)
    started = tmp_path / "started"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_RUN,
            str(started),
            where,
            "sessionize",
            str(FIXTURE),
            "--out",
            str(out),
            "--batch-size",
            "7",
            "--force",
            "-q",
            "--hard-timeout",
            "1m",
        ],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interrupt_as_a_terminal_does,
    )
    deadline = time.monotonic() + 120
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.Signals(sent))
    time.sleep(0.1)
    if process.poll() is None:
        process.send_signal(signal.Signals(sent))  # a second one, as an impatient user sends
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert f"{said}: stopped, nothing left half-written" in stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "started"]
    if where == "feed":
        assert digest(out) == before
    else:  # put in place whole, as the command says
        assert f"{out} was written whole before it" in stderr
        assert (
            json.loads((out / "manifest.json").read_text())["settings"]["sessions.hard_timeout"]
            == 60
        )


@pytest.mark.parametrize(("sent", "where"), [(15, "summary"), (2, "exit")])
def test_a_signal_after_the_run_is_in_place_lets_the_command_finish(
    tmp_path: Path, sent: int, where: str
) -> None:
    """An audit: a signal in the last lines of a run (its summary), or as the interpreter
    shut down, ended the process with 130/143 and no message, the new run already in place
    over the earlier one (--force): a script took it for a run stopped before it. The
    command now finishes as it would have: its summary, exit 0."""
    import signal
    import time

    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    started = tmp_path / "started"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_RUN,
            str(started),
            where,
            "sessionize",
            str(FIXTURE),
            "--out",
            str(out),
            "--force",
            "-q",
            "--hard-timeout",
            "1m",
        ],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interrupt_as_a_terminal_does,
    )
    deadline = time.monotonic() + 120
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.Signals(sent))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "stopped" not in stderr and "Traceback" not in stderr
    assert f"-> {out}" in stderr  # the summary, whole
    assert (
        json.loads((out / "manifest.json").read_text())["settings"]["sessions.hard_timeout"] == 60
    )


def test_a_second_command_in_one_process_takes_its_signals_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A review: the first command left SIGINT and SIGTERM ignored for the rest of the
    process (so the interpreter's shutdown is not killed by them), and install() took over
    only the default handlers: a second main() in a script or notebook could not be
    stopped."""
    import signal

    from obserae_forensics import signals
    from obserae_forensics.cli import main

    saved = {signum: signal.getsignal(signum) for signum in signals.STOPS}
    try:
        # as an interactive process starts (not a background job's ignored SIGINT)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        monkeypatch.setattr(sys, "argv", ["obserae-forensics", "--help"])
        with pytest.raises(SystemExit):
            main()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        signals.install()
        assert signal.getsignal(signal.SIGINT) is signals._handler
        assert signal.getsignal(signal.SIGTERM) is signals._handler
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the host's own choice stays
        signals.finished()
        signals.install()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_tables_are_byte_identical_across_batch_sizes_and_hash_seeds(tmp_path: Path) -> None:
    runs = []
    for batch, seed in ((7, "1"), (65536, "2")):
        out = tmp_path / f"run{batch}"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "obserae_forensics",
                "sessionize",
                str(FIXTURE),
                "--out",
                str(out),
                "--batch-size",
                str(batch),
                "-q",
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        runs.append(digest(out))
    assert runs[0] == runs[1]
    assert "sessions.parquet" in runs[0] and "flows.parquet" in runs[0]


def test_version_is_the_one_the_manifest_cites(tmp_path: Path) -> None:
    """A review: a report cites the tool's version, which only manifest.json told."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert result.stdout == f"obserae-forensics {manifest['tool']['version']}\n"


def test_show_prints_rows(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    result = runner.invoke(app, ["show", str(out), "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert "client_ip" in result.stdout
    assert "rows in" in result.stdout


def test_show_of_a_recombine_output_shows_its_conversations(tmp_path: Path) -> None:
    """Found by a review: `show` of a `recombine --out` directory, which its help offers,
    failed "sessions.parquet does not exist" unless --table was given."""
    out, review = tmp_path / "run", tmp_path / "review"
    assert sessionize(out).exit_code == 0
    assert runner.invoke(app, ["recombine", str(out), "--out", str(review)]).exit_code == 0
    result = runner.invoke(app, ["show", str(review), "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert f"rows in {review / 'sessions_recombined.parquet'})" in result.stdout
    result = runner.invoke(app, ["show", str(out), "--limit", "2"])
    assert f"rows in {out / 'sessions.parquet'})" in result.stdout


def test_show_sorts_by_a_column_when_asked(tmp_path: Path) -> None:
    """A review: `show` lists sessions as they closed, and a responder wanted them by
    opened_at; --sort orders them (ties as in the table), --descending reverses."""
    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    table = pq.read_table(out / "sessions.parquet").to_pandas()
    expected = table.sort_values("opened_at", kind="stable")["session_id"].tolist()
    arguments = ["show", str(out), "--columns", "session_id,opened_at", "--limit", "1000"]
    result = runner.invoke(app, [*arguments, "--sort", "opened_at"])
    assert result.exit_code == 0, result.output
    shown = [line.split()[0] for line in result.stdout.splitlines()[1:-1]]
    assert shown == expected != table["session_id"].tolist()
    assert result.stdout.splitlines()[-1].endswith("sessions.parquet, by opened_at)")
    largest = table.sort_values("ab_bytes", ascending=False, kind="stable")["session_id"]
    result = runner.invoke(
        app, ["show", str(out), "--limit", "3", "--sort", "ab_bytes", "--descending",
              "--columns", "session_id,ab_bytes"],
    )  # fmt: skip
    assert [line.split()[0] for line in result.stdout.splitlines()[1:4]] == list(largest[:3])
    for wrong, said in (
        (["--sort", "nope"], "has no column(s) nope"),
        (["--descending"], "--descending orders by --sort, not given"),
    ):
        result = runner.invoke(app, ["show", str(out), *wrong])
        assert result.exit_code == 2 and said in result.stderr, result.output


def test_show_columns_name_the_client_server_counters_of_the_default_view(tmp_path: Path) -> None:
    """An audit: the default view shows cs_bytes/sc_bytes, and `--columns
    session_id,cs_bytes` said the table had no such column."""
    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    result = runner.invoke(
        app,
        [
            "show",
            str(out),
            "--limit",
            "100",
            "--columns",
            "session_id,sc_bytes,cs_bytes,cs_packets,sc_packets",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["session_id", "sc_bytes", "cs_bytes", "cs_packets", "sc_packets"]
    sessions = pq.read_table(out / "sessions.parquet").to_pylist()[:100]
    shown = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in lines[1:-1]}
    assert len(shown) == len(sessions)
    for s in sessions:
        forward = (s["client_ip"], s["client_port"]) == (s["ip_a"], s["port_a"])
        cs, sc = ("ab", "ba") if forward else ("ba", "ab")
        assert shown[s["session_id"]] == [
            s[f"{sc}_bytes"],
            s[f"{cs}_bytes"],
            s[f"{cs}_packets"],
            s[f"{sc}_packets"],
        ]
    assert any(s["client_ip"] != s["ip_a"] for s in sessions)  # both orientations checked


def test_show_names_a_damaged_table_in_one_line(tmp_path: Path) -> None:
    """Found by fuzzing the table readers: a sessions.parquet that is not Parquet (cut by a
    full disk, overwritten by hand) gave a Python traceback."""
    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    table = out / "sessions.parquet"
    whole = table.read_bytes()
    for damaged in (b"", b"garbage\n", whole[: len(whole) // 2]):
        table.write_bytes(damaged)
        result = runner.invoke(app, ["show", str(out)])
        assert result.exit_code == 2, result.output
        assert f"error: {table}: unreadable Parquet" in result.stderr
        assert "Traceback" not in result.output


def test_a_footer_damaged_into_other_text_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """Found by a responder's audit: one bit flipped in a footer gave text that is not
    UTF-8 (a traceback of UnicodeDecodeError from `show`), or a time zone `5TC` for `UTC`,
    which reads and then failed as a traceback when `show` or `--export-flows x.csv` put
    the times into text, and the CSV was left half-written."""
    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    flows = pq.read_table(out / "flows.parquet")
    index = flows.schema.get_field_index("last_seen")
    damaged = flows.schema.set(
        index, flows.schema.field(index).with_type(pa.timestamp("us", tz="5TC"))
    )
    pq.write_table(flows.cast(damaged), out / "flows.parquet")
    session = pq.read_table(out / "sessions.parquet").column("session_id")[0].as_py()
    csv = tmp_path / "conversation.csv"
    for arguments in (
        ["show", str(out), "--table", "flows", "--columns", "last_seen"],
        ["recombine", str(out), "--session", session, "--export-flows", str(csv)],
    ):
        result = runner.invoke(app, arguments)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().endswith(
            "column last_seen has the time zone '5TC', which is none (a damaged footer?)"
        )
        assert "Traceback" not in result.output and not csv.exists()
    table = out / "sessions.parquet"
    whole = bytearray(table.read_bytes())
    footer = len(whole) - 8 - int.from_bytes(whole[-8:-4], "little")
    name = whole.index(b"\x08protocol", footer)  # the schema's first "protocol" (thrift)
    whole[name + 2] ^= 0x80  # no longer UTF-8
    table.write_bytes(bytes(whole))
    result = runner.invoke(app, ["show", str(out)])
    assert result.exit_code == 2 and "unreadable Parquet" in result.stderr, result.output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--table", "../sessions"], "--table '../sessions' is not a table name"),
        (["--columns", "state,,protocol"], "names an empty column"),
        (["--columns", "state,nope"], "has no column(s) nope"),
        (["--limit", str(2**64)], "Invalid value for '--limit'"),
    ],
)
def test_show_refuses_what_is_not_a_table_or_column(
    tmp_path: Path, options: list[str], message: str
) -> None:
    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    result = runner.invoke(app, ["show", str(out), *options])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_show_reads_columns_as_written_once_each(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    result = runner.invoke(
        app, ["show", str(out), "--columns", "state, protocol,state", "--limit", "2"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["state", "protocol"]
    assert len(lines) == 4 and lines[-1].startswith("(38 rows in ")


def test_show_and_recombine_print_a_time_past_year_9999(tmp_path: Path) -> None:
    """Found by fuzzing: a damaged record's time in year 15760 (kept, as the manifest keeps
    it) made `show` and `recombine --session` die in pandas' printing."""
    from tests.readers.test_time_range import year_15760_capture

    capture = year_15760_capture(tmp_path / "year_15760.pcap")
    run = tmp_path / "run"
    made = runner.invoke(app, ["sessionize", str(capture), "--out", str(run), "-q"])
    assert made.exit_code == 0, made.output
    opened = pq.read_table(run / "sessions.parquet").column("opened_at").cast("int64")[0]
    shown = runner.invoke(app, ["show", str(run), "--columns", "opened_at,closed_at,state"])
    assert shown.exit_code == 0, shown.output
    assert f"{opened} µs since 1970" in shown.stdout
    session_id = pq.read_table(run / "sessions.parquet").column("session_id")[0].as_py()
    found = runner.invoke(app, ["recombine", str(run), "--session", session_id])
    assert found.exit_code == 0, found.output
    assert f"{opened} µs since 1970" in found.stdout
    # what may follow the window, its end past 9999 too (the conversation's row died
    # in Python's datetime: a review)
    assert "(more may follow after a time past year 9999)" in found.stdout
    normal = tmp_path / "normal"
    assert sessionize(normal).exit_code == 0
    listed = runner.invoke(app, ["show", str(normal), "--columns", "opened_at", "--limit", "1"])
    assert "2011-06-24T15:51:56.474000Z" in listed.stdout


def test_recombine_command_finds_and_exports_fragments(corpus: Path, tmp_path: Path) -> None:
    capture = corpus / "exports" / "sf_v5_ircdcc.pcap"
    run = tmp_path / "run"
    made = runner.invoke(
        app, ["sessionize", str(capture), "--out", str(run), "-q", "--hard-timeout", "30s"]
    )
    assert made.exit_code == 0, made.output
    sessions = pq.read_table(run / "sessions.parquet").to_pandas()
    fragment = sessions[sessions["split"] > 0].iloc[0]
    out = tmp_path / "recombined"
    result = runner.invoke(
        app,
        [
            "recombine",
            str(run),
            "--out",
            str(out),
            "--session",
            fragment["session_id"],
            "--export-flows",
            str(tmp_path / "c.csv"),
            "--export-pcap",
            str(tmp_path / "c.pcap"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"conversation {fragment['conversation_id']}" in result.stdout
    for name in ("sessions_recombined.parquet", "report.md", "report.json", "timeline.png"):
        assert (out / name).is_file()
    whole = sessions[sessions["conversation_id"] == fragment["conversation_id"]]
    exported = (tmp_path / "c.csv").read_text().splitlines()
    assert len(exported) - 1 == int(whole["flow_count"].sum())
    assert (tmp_path / "c.pcap").is_file()
    assert "1 frames carrying" in result.stderr


def test_recombine_with_nothing_to_do_is_a_usage_error(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert sessionize(run).exit_code == 0
    result = runner.invoke(app, ["recombine", str(run)])
    assert result.exit_code == 2
    assert "nothing to do" in result.stderr
    # options of the capture export without it were taken, and did nothing (a review)
    for option, said in (
        (["--no-templates"], "--no-templates applies to --export-pcap, not given"),
        (["--captures", str(tmp_path)], "--captures applies to --export-pcap, not given"),
    ):
        result = runner.invoke(app, ["recombine", str(run), "--out", str(tmp_path / "rc"), *option])
        assert result.exit_code == 2, result.output
        assert said in result.stderr and not (tmp_path / "rc").exists()
    # no split conversation to export: said, where nothing was written without a word
    result = runner.invoke(app, ["recombine", str(run), "--export-flows", str(tmp_path / "f.csv")])
    assert result.exit_code == 0, result.output
    assert "exporting the 0 split conversation(s): nothing to write (--session ID" in (
        result.stderr
    )
    assert not (tmp_path / "f.csv").exists()


def test_recombine_out_into_another_run_is_refused(tmp_path: Path) -> None:
    """A review: `recombine C --out D`, D another sessionize run, put C's conversations in
    D, and `show D --table sessions_recombined` showed them as D's."""
    mine, other = tmp_path / "mine", tmp_path / "other"
    assert sessionize(mine).exit_code == 0
    assert sessionize(other).exit_code == 0
    result = runner.invoke(app, ["recombine", str(mine), "--out", str(other)])
    assert result.exit_code == 2, result.output
    assert f"--out {other} is another sessionize run's directory" in result.stderr
    assert not (other / "sessions_recombined.parquet").exists()
    # beside its own run, as before; `show` of it shows the run's sessions still
    result = runner.invoke(app, ["recombine", str(mine), "--out", str(mine)])
    assert result.exit_code == 0, result.output
    assert (mine / "sessions_recombined.parquet").is_file()
    shown = runner.invoke(app, ["show", str(mine), "--limit", "1"])
    assert f"rows in {mine / 'sessions.parquet'})" in shown.stdout
    # a directory with a sessions table and no manifest is no run: taken
    (other / "manifest.json").unlink()
    result = runner.invoke(app, ["recombine", str(mine), "--out", str(other), "--force"])
    assert result.exit_code == 0, result.output


def test_late_sessions_keep_their_ids_when_the_evidence_is_moved(tmp_path: Path) -> None:
    """Found by a contract audit: the ids of late sessions hashed their records' absolute
    paths, so the same captures copied elsewhere (an analysis machine) gave other ids than
    a report cited. They hash the path below the inputs' common directory now."""
    fixtures = FIXTURE.parent
    names = ("sf_v9_varsvc.pcap", "sf_v9_zeek_ssh.pcap", "fprobe_v7.pcap")
    tables = []
    for place in ("case", "copy/on/another/disk"):
        evidence = tmp_path / place / "evidence"
        evidence.mkdir(parents=True)
        for name in names:
            (evidence / name).write_bytes((fixtures / name).read_bytes())
        out = tmp_path / place / "run"
        result = runner.invoke(app, ["sessionize", str(evidence), "-o", str(out), "-q"])
        assert result.exit_code == 0, result.output
        tables.append((out / "sessions.parquet").read_bytes())
    assert (
        pq.read_table(tmp_path / "case" / "run" / "sessions.parquet")
        .column("late")
        .to_pylist()
        .count(True)
        == 2
    )
    assert tables[0] == tables[1]


def test_exports_with_nothing_split_write_nothing_and_refuse_alike(tmp_path: Path) -> None:
    """Without --session, when no conversation is split, neither export writes a file, and
    both targets are refused as they would be with something to write (found by a README
    audit: an existing --export-flows file was refused, an existing --export-pcap file, or
    the run's own capture, passed with exit 0)."""
    run = tmp_path / "run"
    assert sessionize(run).exit_code == 0
    for option, name in (("--export-pcap", "x.pcap"), ("--export-flows", "x.parquet")):
        result = runner.invoke(app, ["recombine", str(run), option, str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert "exporting the 0 split conversation(s)" in result.stderr
        assert not (tmp_path / name).exists()
        (tmp_path / name).write_bytes(b"kept")
        result = runner.invoke(app, ["recombine", str(run), option, str(tmp_path / name)])
        assert result.exit_code == 2, result.output
        assert (tmp_path / name).read_bytes() == b"kept"
    result = runner.invoke(app, ["recombine", str(run), "--export-pcap", str(FIXTURE), "--force"])
    assert result.exit_code == 2 and "refusing" in result.stderr


def test_time_window_selects_the_same_records_from_capture_and_nfcapd(
    corpus: Path, tmp_path: Path
) -> None:
    """--from/--to keep records wholly inside the window (nfdump -t), whatever the input."""
    selected = []
    for name, source in (
        ("pcap", corpus / "exports" / "sf_v9_varsvc.pcap"),
        ("nfcapd", corpus / "nfcapd" / "sf_v9_varsvc.nfcapd"),
    ):
        flows = tmp_path / f"{name}.parquet"
        result = runner.invoke(
            app,
            [
                "inspect",
                str(source),
                "--flows",
                str(flows),
                "-q",
                "--from",
                "2011-06-24T15:51:40",
                "--to",
                "2011/06/24.15:52:00",
            ],
        )
        assert result.exit_code == 0, result.output
        table = pq.read_table(flows).to_pandas()
        assert (table["first_seen"] >= "2011-06-24T15:51:40Z").all()
        assert (table["last_seen"] <= "2011-06-24T15:52:00Z").all()
        selected.append(
            sorted(
                zip(
                    table["src_addr"],
                    table["src_port"],
                    table["dst_addr"],
                    table["dst_port"],
                    table["packets"],
                    strict=True,
                )
            )
        )
    assert selected[0] == selected[1]
    assert 0 < len(selected[0]) < 72


def test_records_outside_the_window_are_counted_alike_from_capture_and_nfcapd(
    corpus: Path, tmp_path: Path
) -> None:
    """Found by an audit: the records --from/--to left out were counted nowhere in the
    manifest, and the exporters table counted them from a capture (its reader counts what
    an exporter sent) but not from an nfcapd file: 2,601 records against 1,324 flows."""
    counted = []
    for name, source in (
        ("pcap", corpus / "exports" / "sf_v9_varsvc.pcap"),
        ("nfcapd", corpus / "nfcapd" / "sf_v9_varsvc.nfcapd"),
    ):
        out = tmp_path / name
        result = runner.invoke(
            app,
            [
                "sessionize",
                str(source),
                "--out",
                str(out),
                "-q",
                "--from",
                "2011-06-24T15:51:40",
                "--to",
                "2011/06/24.15:52:00",
            ],
        )
        assert result.exit_code == 0, result.output
        counts = json.loads((out / "manifest.json").read_text())["counts"]
        [item] = json.loads((out / "manifest.json").read_text())["inputs"]
        exporters = pq.read_table(out / "exporters.parquet").column("records").to_pylist()
        assert counts["records_read"] + counts["outside_window"] == sum(exporters) == 72
        assert item["outside_window"] == counts["outside_window"] > 0
        counted.append((counts["records_read"], counts["outside_window"]))
    assert counted[0] == counted[1]


@pytest.mark.parametrize("command", ["inspect", "sessionize"])
def test_a_window_ending_before_it_starts_is_a_usage_error(tmp_path: Path, command: str) -> None:
    # it was taken: every record left out, exit 0, nothing said
    extra = ["--out", str(tmp_path / "run")] if command == "sessionize" else []
    result = runner.invoke(
        app, [command, str(FIXTURE), *extra, "--from", "2011-06-25", "--to", "2011-06-24"]
    )
    assert result.exit_code == 2
    # with the times as read (a date alone is its midnight: a review met it)
    assert (
        "--from is later than --to (2011-06-25T00:00:00Z > 2011-06-24T00:00:00Z, UTC)"
        in result.stderr
    )
    assert not (tmp_path / "run").exists()


def conversation_totals(run: Path, key: tuple[str, int, str, int]) -> tuple[int, int, int]:
    sessions = pq.read_table(run / "sessions.parquet").to_pandas()
    ends = {(r.ip_a, r.port_a, r.ip_b, r.port_b) for r in sessions.itertuples()}
    mine = sessions[
        [
            (r.ip_a, r.port_a, r.ip_b, r.port_b) in {key, (key[2], key[3], key[0], key[1])}
            for r in sessions.itertuples()
        ]
    ]
    assert ends
    return (
        int(mine["flow_count"].sum()),
        int((mine["ab_packets"] + mine["ba_packets"]).sum()),
        int((mine["ab_bytes"] + mine["ba_bytes"]).sum()),
    )


@pytest.mark.parametrize("capture", ["sf_v9_synscan.pcap", "sf_v10_varsvc.pcap", "pm_v9_test.pcap"])
def test_exported_pcap_holds_exactly_the_datagrams_and_sessionizes_to_the_same_totals(
    corpus: Path, tmp_path: Path, capture: str
) -> None:
    """tshark sees exactly the conversation's datagrams (--no-templates); with the templates
    added, sessionizing the export gives the conversation's totals again."""
    tshark = need_tool("tshark")
    run = tmp_path / "run"
    source = corpus / "exports" / capture
    assert runner.invoke(app, ["sessionize", str(source), "--out", str(run), "-q"]).exit_code == 0
    sessions = pq.read_table(run / "sessions.parquet").to_pandas()
    chosen = sessions.sort_values(["flow_count", "session_id"]).iloc[-1]
    flows = pq.read_table(run / "flows.parquet").to_pandas()
    frames = sorted(
        set(
            flows[
                flows["conversation_id" if "conversation_id" in flows else "session_id"]
                == chosen["session_id"]
            ]["source_frame"]
        )
    )
    bare = tmp_path / "bare.pcap"
    result = runner.invoke(
        app,
        [
            "recombine",
            str(run),
            "--session",
            chosen["session_id"],
            "--export-pcap",
            str(bare),
            "--no-templates",
        ],
    )
    assert result.exit_code == 0, result.output
    original = subprocess.run(
        [tshark, "-r", str(source), "-T", "fields", "-e", "udp.payload"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    written = subprocess.run(
        [tshark, "-r", str(bare), "-T", "fields", "-e", "udp.payload"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert written == [original[frame - 1] for frame in frames]

    whole = tmp_path / "whole.pcap"
    result = runner.invoke(
        app, ["recombine", str(run), "--session", chosen["session_id"], "--export-pcap", str(whole)]
    )
    assert result.exit_code == 0, result.output
    again = tmp_path / "again"
    assert runner.invoke(app, ["sessionize", str(whole), "--out", str(again), "-q"]).exit_code == 0
    key = (chosen["ip_a"], int(chosen["port_a"]), chosen["ip_b"], int(chosen["port_b"]))
    assert conversation_totals(again, key) == conversation_totals(run, key)


def test_an_unreadable_input_is_counted_not_a_traceback(tmp_path: Path) -> None:
    dangling = tmp_path / "gone.pcap"
    dangling.symlink_to(tmp_path / "nowhere.pcap")
    result = runner.invoke(app, ["inspect", str(tmp_path), str(FIXTURE), "-q"])
    assert result.exit_code == 0, result.output
    assert f"unreadable: {dangling}@0: cannot read" in result.stderr
    assert "72 flow records" in result.stderr


def test_corpus_tables_are_byte_identical_across_batch_sizes(corpus: Path, tmp_path: Path) -> None:
    """Every export capture and nfcapd file of the corpus in one run, twice."""
    runs = []
    for batch in (997, 65536):
        out = tmp_path / f"run{batch}"
        result = runner.invoke(
            app,
            [
                "sessionize",
                str(corpus / "exports"),
                str(corpus / "nfcapd"),
                "--out",
                str(out),
                "-q",
                "--batch-size",
                str(batch),
            ],
        )
        assert result.exit_code == 0, result.output
        runs.append(digest(out))
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["conservation"]["ok"] is True
        assert manifest["session_ids"]["unique"] is True  # one exporter address, many captures
        # nothing is damaged but what nfdump 1.7.1 stored: records ending before they start
        # (its IPFIX uptime swap: softflowd's IPFIX captures, as nfcapd wrote them), and the
        # synscan's first SYN without times (in its v9 file, three compressed copies, and v10),
        # and the IPFIX biflow's TCP flags in the forward field
        assert manifest["counts"]["skipped"] == {"no_times": 5}
        assert manifest["counts"]["repaired"] == {  # kept
            "inverted_times": 157,
            "nfcapd_reverse_flags": 7,
        }
        assert all(
            "/nfcapd/sf_v10_" in problem or "/nfcapd/sf_v9_synscan" in problem
            for problem in manifest["problems"]
        )
    assert runs[0] == runs[1]


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"])
def test_a_window_outside_years_1_to_9999_is_a_usage_error(tmp_path: Path, text: str) -> None:
    # found by fuzzing: the window was applied, and the manifest said "from": null
    result = runner.invoke(
        app, ["sessionize", str(FIXTURE), "--out", str(tmp_path / "r"), "-q", "--from", text]
    )
    assert result.exit_code == 2
    assert "outside years 1-9999 in UTC" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["sessionize", "", "--out", "{tmp}/run"],
        ["sessionize", str(FIXTURE), "--out", ""],
        ["sessionize", str(FIXTURE), "--out", "{tmp}/run", "--config", ""],
        ["sessionize", str(FIXTURE), "--out", "{tmp}/run", "--flow-matrix", ""],
        ["inspect", ""],
        ["inspect", str(FIXTURE), "--flows", ""],
        ["show", ""],
        ["recombine", ""],
        ["recombine", "{tmp}", "--export-pcap", ""],
    ],
)
def test_an_empty_path_is_a_usage_error_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    # typer turned "" into Path("."): with an unset variable, `sessionize "$CAPS" --out x`
    # replayed whatever the current directory held (here, a capture that would give sessions)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.pcap").write_bytes(FIXTURE.read_bytes())
    result = runner.invoke(app, [arg.replace("{tmp}", str(tmp_path)) for arg in args])
    assert result.exit_code == 2, result.output
    assert "an empty path" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here.pcap"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sessionize", "{tmp}/none.pcap", "--out", "{tmp}/run"], "does not exist"),
        (
            ["sessionize", str(FIXTURE), "--out", "{tmp}/run", "--config", "{tmp}"],
            "is a directory, not a file",
        ),
        (["show", str(FIXTURE)], "is not a directory"),
        (["recombine", "{tmp}/gone"], "does not exist"),
        (
            ["sessionize", "{tmp}/loop", "--out", "{tmp}/run"],
            "is a link that leads nowhere (to a missing file, or in a loop)",
        ),
    ],
)
def test_missing_or_wrong_kind_of_path_is_a_usage_error(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")  # an audit: it "did not exist"
    result = runner.invoke(app, [arg.replace("{tmp}", str(tmp_path)) for arg in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["sessionize", str(FIXTURE), "--out", "{tmp}/case.pcap/run"],
        ["inspect", str(FIXTURE), "--flows", "{tmp}/case.pcap/sub/flows.parquet"],
        ["recombine", "{tmp}", "--out", "{tmp}/case.pcap/rc"],
        ["recombine", "{tmp}", "--export-pcap", "{tmp}/case.pcap/conv.pcap"],
        ["recombine", "{tmp}", "--export-flows", "{tmp}/case.pcap/conv.csv"],
    ],
)
def test_an_output_under_a_file_is_a_usage_error_before_any_work(
    tmp_path: Path, args: list[str]
) -> None:
    # an audit: `--out case.pcap/run` failed as "cannot write: ...: File exists" with exit 1,
    # and an export's path only once the whole recombine had run
    (tmp_path / "case.pcap").write_bytes(b"not a directory")
    result = runner.invoke(app, [arg.replace("{tmp}", str(tmp_path)) for arg in args])
    assert result.exit_code == 2, result.output
    assert "which is a file, not a directory" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.pcap"]


def test_an_output_path_with_a_name_too_long_is_one_line(tmp_path: Path) -> None:
    """A review: checking the directories above an output path raised for a name too long
    (a traceback) where writing said `cannot write: ... File name too long`."""
    flows = tmp_path / ("d" * 300) / "flows.parquet"
    result = runner.invoke(app, ["inspect", str(FIXTURE), "--flows", str(flows)])
    assert result.exit_code == 1, result.output
    assert "error: cannot write:" in result.stderr and "File name too long" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_recombine_checks_session_ids_before_writing_anything(tmp_path: Path) -> None:
    # it wrote the report and tables into --out, then exited 2 on the unknown id
    run = tmp_path / "run"
    assert sessionize(run).exit_code == 0
    out = tmp_path / "recombined"
    result = runner.invoke(
        app,
        [
            "recombine",
            str(run),
            "--out",
            str(out),
            "--session",
            "nope",
            "--export-flows",
            str(tmp_path / "f.csv"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "no session or conversation 'nope'" in result.stderr
    assert not out.exists()
    assert not (tmp_path / "f.csv").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    known = pq.read_table(run / "sessions.parquet").column("session_id")[0].as_py()
    result = runner.invoke(app, ["recombine", str(run), "--out", str(out), "--session", known])
    assert result.exit_code == 0, result.output
    assert (out / "report.md").is_file()


def test_an_output_directory_inside_the_inputs_is_not_read_as_input(tmp_path: Path) -> None:
    """`sessionize caps --out caps/run --force` read the earlier run's tables as inputs of
    unknown format: counted as skipped, cited in the manifest, fatal under --strict."""
    caps = tmp_path / "caps"
    caps.mkdir()
    (caps / "a.pcap").write_bytes(FIXTURE.read_bytes())
    first = runner.invoke(app, ["sessionize", str(caps), "--out", str(caps / "run"), "-q"])
    assert first.exit_code == 0, first.output
    digests = digest(caps / "run")
    again = runner.invoke(
        app, ["sessionize", str(caps), "--out", str(caps / "run"), "-q", "--force", "--strict"]
    )
    assert again.exit_code == 0, again.output
    manifest = json.loads((caps / "run" / "manifest.json").read_text())
    assert [Path(i["path"]).name for i in manifest["inputs"]] == ["a.pcap"]
    assert manifest["counts"]["skipped"] == {}
    assert digest(caps / "run") == digests
    # a capture kept in the output directory is still an input: the run refuses to replace
    # it (found by review: leaving the whole directory out deleted it with --force)
    (caps / "run" / "day2.pcap").write_bytes(FIXTURE.read_bytes())
    again = runner.invoke(
        app, ["sessionize", str(caps), "--out", str(caps / "run"), "-q", "--force"]
    )
    assert again.exit_code == 2 and "holds the input" in again.stderr
    assert (caps / "run" / "day2.pcap").is_file()


def test_a_changed_capture_stops_recombine_before_any_output(tmp_path: Path) -> None:
    """Found by review: --out and --export-flows were written before --export-pcap found the
    capture changed since the run (exit 1 with half the outputs there)."""
    capture = tmp_path / "cap.pcap"
    capture.write_bytes(FIXTURE.read_bytes())
    run = tmp_path / "run"
    assert (
        runner.invoke(
            app,
            [
                "sessionize",
                str(capture),
                "--out",
                str(run),
                "-q",
                "--hard-timeout",
                "2s",
                "--grace",
                "0",
            ],
        ).exit_code
        == 0
    )
    changed = bytearray(capture.read_bytes())
    changed[200:260] = bytes(b ^ 0xFF for b in changed[200:260])
    capture.write_bytes(bytes(changed))
    result = runner.invoke(
        app,
        [
            "recombine",
            str(run),
            "--out",
            str(tmp_path / "rec"),
            "--export-flows",
            str(tmp_path / "f.csv"),
            "--export-pcap",
            str(tmp_path / "x.pcap"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "SHA-256 differs" in result.stderr
    assert not any((tmp_path / name).exists() for name in ("rec", "f.csv", "x.pcap"))
    # the tables were written, into a staging directory in --out, and are gone with it
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_recombine_writes_out_last_and_leaves_nothing_when_refused(tmp_path: Path) -> None:
    """Found by review: --out was whole before --export-flows failed on the run's flows
    table, and a refused run left the directories --out asked for. The tables are staged
    in --out itself (a parent that cannot be written to, or a mount point, is no matter)."""
    run = tmp_path / "run"
    assert sessionize(run).exit_code == 0
    (run / "flows.parquet").write_bytes(b"not parquet")
    known = pq.read_table(run / "sessions.parquet").column("session_id")[0].as_py()
    out = tmp_path / "new" / "deep" / "rec"
    result = runner.invoke(
        app,
        [
            "recombine",
            str(run),
            "--out",
            str(out),
            "--session",
            known,
            "--export-flows",
            str(tmp_path / "f.csv"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "unreadable Parquet" in result.stderr
    assert not (tmp_path / "new").exists() and not (tmp_path / "f.csv").exists()
    result = runner.invoke(app, ["recombine", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "sessions_recombined.parquet",
            "recombined_fragments.parquet",
            "report.md",
            "report.json",
            "timeline.png",
        ]
    )


@pytest.mark.parametrize(
    "option,name",
    [
        ("--export-flows", "sessions_recombined.parquet"),
        ("--export-pcap", "report.md"),
        ("--export-flows", "recombined_fragments.parquet"),
    ],
)
def test_recombine_refuses_an_export_into_one_of_its_own_files(
    tmp_path: Path, option: str, name: str
) -> None:
    """Found by an audit: `--export-flows OUT/sessions_recombined.parquet --out OUT` wrote
    the flows there and was then refused (OUT "already holds" it), leaving them posing as the
    recombined table; with --force the table replaced the export it had announced."""
    run = tmp_path / "run"
    assert sessionize(run).exit_code == 0
    out = tmp_path / "rec"
    for force in ([], ["--force"]):
        result = runner.invoke(
            app, ["recombine", str(run), "--out", str(out), option, str(out / name), *force]
        )
        assert result.exit_code == 2, result.output
        assert "one would replace the other" in result.stderr
        assert not out.exists()


@pytest.mark.parametrize(
    "late,sessions,replay,said",
    [
        (2, 26, "arrival", True),
        (3, 60, "arrival", True),
        (3, 61, "arrival", False),
        (1, 1, "arrival", False),
        (40, 40, "event", False),
        (0, 0, "arrival", False),
    ],
)
def test_late_sessions_hint_only_when_arrival_replay_made_many(
    late: int, sessions: int, replay: str, said: bool
) -> None:
    """One late session in twenty or more, two at least: offline flows out of time order,
    not a collector's stray late record."""
    from obserae_forensics.cli import late_hint

    hint = late_hint(late, sessions, replay)
    assert (hint is not None) == said
    if said:
        assert f"{late} of {sessions} sessions are late" in hint and "--replay event" in hint


def test_a_run_with_a_flow_matrix_counts_each_rules_matches(tmp_path: Path) -> None:
    """A review: nothing said how many sessions each rule matched, so a rule that matched
    nothing (mistyped, a service moved) left no trace; nor how many closed sessions no rule
    accounts for. The manifest counts both, and the summary says them."""
    out = tmp_path / "run"
    result = sessionize(out, *FIXTURE_RULES)
    assert result.exit_code == 0, result.output
    counted = json.loads((out / "manifest.json").read_text())["counts"]["flow_matrix"]
    assert counted == {
        "matches_by_rule": {
            "lab-dns": 27,
            "lab-admin": 1,
            "lab-web": 2,
            "web-out": 1,
            "time-sync": 0,
            "local-discovery": 3,
        },
        "unmatched_closed": 2,
        "answers_alone": 0,
        "answers_alone_matched": 0,
    }
    matches = pq.read_table(out / "session_matches.parquet")
    assert sum(counted["matches_by_rule"].values()) == matches.num_rows
    assert (
        "Flow Matrix: 2 closed session(s) no rule accounts for; 1 of 6 rule(s) matched "
        "nothing: time-sync (manifest.json: counts.flow_matrix)"
    ) in result.stderr
    plain = tmp_path / "plain"
    result = runner.invoke(app, ["sessionize", str(FIXTURE), "--out", str(plain), "-q"])
    assert json.loads((plain / "manifest.json").read_text())["counts"]["flow_matrix"] is None
    assert "Flow Matrix" not in result.stderr
    # over several exporters the count is of sessions, each exporter's (a review read 5952
    # as conversations where 3 exporters had seen 1984)
    twice = tmp_path / "twice"
    arguments = ["sessionize", str(FIXTURE.parent / "sampled"), "--out", str(twice), "-q"]
    result = runner.invoke(
        app,
        [
            *arguments,
            "--flow-matrix",
            str(FIXTURE.parent / "flow_matrix.yaml"),
            "--cartography",
            str(FIXTURE.parent / "cartography.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "no rule accounts for (sessions are per exporter: a conversation several of the 2 "
        "exporters saw counts once for each)"
    ) in result.stderr


def test_the_summary_counts_matched_sessions_of_answers_alone(tmp_path: Path) -> None:
    """fixtures/unasked_answers_v9.pcap: three sessions of answers nobody was seen asking
    for match the lab's outbound rules; the summary says how many, and where to find them."""
    (tmp_path / "c.yaml").write_text("networks:\n  lab: [10.0.0.0/24]\n")
    (tmp_path / "m.yaml").write_text(
        "rules:\n  - name: out\n    source: lab\n    destination: internet4\n    protocol: any\n"
    )
    result = runner.invoke(
        app,
        [
            "sessionize",
            str(FIXTURE.parent / "unasked_answers_v9.pcap"),
            "--out",
            str(tmp_path / "run"),
            "-q",
            "--cartography",
            str(tmp_path / "c.yaml"),
            "--flow-matrix",
            str(tmp_path / "m.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "; 3 matched session(s) are answers alone, their client seen sending nothing: "
        "one-way routing, a loss, or answers nobody asked for (query: "
        "SessionQuery().answers_alone(), 3 matched or not)"
    ) in result.stderr


def test_show_of_a_run_with_a_flow_matrix_whose_matches_file_is_gone(tmp_path: Path) -> None:
    """An audit: with session_matches.parquet missing (a copy without it), show said "no
    Flow Matrix in this run" and hid matched_rules, which the sessions still hold."""
    out = tmp_path / "run"
    matrix = FIXTURE.parent / "flow_matrix.yaml"
    result = sessionize(out, *FIXTURE_RULES)
    assert result.exit_code == 0, result.output
    (out / "session_matches.parquet").unlink()
    result = runner.invoke(app, ["show", str(out), "--limit", "40"])
    assert result.exit_code == 0, result.output
    assert "matched_rules" in result.stdout.splitlines()[0].split()
    assert "no Flow Matrix" not in result.stdout
    assert (
        f"session_matches.parquet is missing from this run, which matched its sessions "
        f"against {matrix}" in result.stdout.replace("\n", " ")
    )

    # and with no manifest either, nothing tells whether there was a Flow Matrix: the
    # column as the table holds it, said so (it said "no Flow Matrix" and hid the matches)
    (out / "manifest.json").unlink()
    result = runner.invoke(app, ["show", str(out), "--limit", "40"])
    assert result.exit_code == 0, result.output
    assert "matched_rules" in result.stdout.splitlines()[0].split()
    assert "[lab-dns]" in result.stdout and "no Flow Matrix" not in result.stdout
    assert "cannot be told: matched_rules is shown as the table holds it" in result.stdout


def test_show_of_flows_gives_a_biflow_records_answer(tmp_path: Path) -> None:
    """A review: a bidirectional (IPFIX biflow) record's answer is in reverse_packets and
    reverse_octets, which the flows view left out: a multicast record of 3 answer packets
    showed as 0 packets and 0 bytes. They are shown, with a note, when a row has one."""
    out = tmp_path / "run"
    biflow = FIXTURE.parent / "nfcapd16_sf_v10_biflow.lz4.nfcapd"
    assert runner.invoke(app, ["sessionize", str(biflow), "--out", str(out), "-q"]).exit_code == 0
    flows = pq.read_table(out / "flows.parquet")
    answered = sum(
        1
        for packets, octets in zip(
            flows.column("reverse_packets").to_pylist(),
            flows.column("reverse_octets").to_pylist(),
            strict=True,
        )
        if packets or octets
    )
    assert answered > 0
    result = runner.invoke(app, ["show", str(out), "--table", "flows", "--limit", "1000"])
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split()
    assert header[header.index("octets") + 1 : header.index("octets") + 3] == [
        "reverse_packets",
        "reverse_octets",
    ]
    assert f"({answered} row(s) shown are bidirectional records" in result.stdout
    # a flows table of another version, without counters_scaled: the view goes without the
    # sampling column and still gives the answers (it raised KeyError: a review)
    pq.write_table(flows.drop_columns(["counters_scaled"]), out / "flows.parquet")
    result = runner.invoke(app, ["show", str(out), "--table", "flows", "--limit", "1000"])
    assert result.exit_code == 0, result.output
    assert "reverse_octets" in result.stdout.splitlines()[0]
    plain = tmp_path / "plain"
    assert (
        runner.invoke(app, ["sessionize", str(FIXTURE), "--out", str(plain), "-q"]).exit_code == 0
    )
    result = runner.invoke(app, ["show", str(plain), "--table", "flows"])
    assert "reverse_octets" not in result.stdout and "bidirectional" not in result.stdout


def test_show_says_what_its_default_view_cannot_show_alone(tmp_path: Path) -> None:
    """Found by an audit: sampled counters printed as if they were the traffic (akvorado's
    1-in-30000 sessions read 1.4 KB where the consolidated table says 42 MB), one
    conversation of two exporters as two identical rows, `[]` for matched_rules in a run
    without a Flow Matrix (as if no rule matched), and ICMP type 8 as 8.0."""
    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    result = runner.invoke(app, ["show", str(out), "--limit", "5"])
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split()
    assert header[:2] == ["opened_at", "protocol"] and "matched_rules" not in header
    assert "sampling_rate" not in header and "exporter" not in header
    assert "(no Flow Matrix in this run: sessions were not matched" in result.stdout
    path = out / "sessions.parquet"
    sessions = pq.read_table(path)
    rate = sessions.column("sampling_rate").to_numpy().copy()
    rate[1] = 30_000
    exporter = sessions.column("exporter").to_pylist()
    exporter[3] = "192.0.2.200"
    sessions = sessions.set_column(
        sessions.schema.get_field_index("sampling_rate"),
        sessions.schema.field("sampling_rate"),
        pa.array(rate),
    )
    sessions = sessions.set_column(
        sessions.schema.get_field_index("exporter"),
        sessions.schema.field("exporter"),
        pa.array(exporter, sessions.schema.field("exporter").type),
    )
    pq.write_table(sessions, path)
    lines = runner.invoke(app, ["show", str(out), "--limit", "5"]).stdout.splitlines()
    header = lines[0].split()
    assert header[1:3] == ["exporter", "protocol"]
    assert header[header.index("sc_bytes") + 1] == "sampling_rate"
    assert [line.split()[header.index("sampling_rate")] for line in lines[1:6]] == [
        "1",
        "30000",
        "1",
        "1",
        "1",
    ]
    assert any("1 row(s) shown are sampled 1-in-sampling_rate" in line for line in lines[-2:])
    assert "multiplied by it already" not in "\n".join(lines)
    # the same row from nfcapd, its counters scaled already: an estimate, said as one (a
    # review: 45,000,000 bytes of one sampled packet shown as measured, without a note)
    scaled = sessions.column("counters_scaled").to_numpy(zero_copy_only=False).copy()
    scaled[1] = True
    pq.write_table(
        sessions.set_column(
            sessions.schema.get_field_index("counters_scaled"),
            sessions.schema.field("counters_scaled"),
            pa.array(scaled),
        ),
        path,
    )
    lines = runner.invoke(app, ["show", str(out), "--limit", "5"]).stdout.splitlines()
    header = lines[0].split()
    assert header[header.index("sc_bytes") + 1] == "sampling_rate"
    notes = "\n".join(lines[6:])
    assert "1 row(s) shown are sampled 1-in-sampling_rate, their cs_bytes/sc_bytes " in notes
    assert "multiplied by it already (nfcapd does): an estimate" in notes
    assert "multiply by sampling_rate" not in notes
    pq.write_table(sessions, path)
    # --columns prints what it names, and no more
    named = runner.invoke(app, ["show", str(out), "--columns", "protocol,cs_bytes"]).stdout
    assert named.splitlines()[0].split() == ["protocol", "cs_bytes"]
    assert "sampled" not in named
    icmp_type = pa.array(
        [8] + [None] * (sessions.num_rows - 1), sessions.schema.field("icmp_type").type
    )
    pq.write_table(
        sessions.set_column(
            sessions.schema.get_field_index("icmp_type"),
            sessions.schema.field("icmp_type"),
            icmp_type,
        ),
        path,
    )
    typed = runner.invoke(app, ["show", str(out), "--columns", "icmp_type", "--limit", "2"])
    assert typed.stdout.splitlines()[1:3] == ["        8", "         "], typed.stdout


def test_show_gives_bytes_client_to_server_beside_the_client_and_server(tmp_path: Path) -> None:
    """Found by an audit: `show` put ab_bytes/ba_bytes beside client_ip/server_ip, which
    read as client->server; a DNS client's 62-byte query showed as 476 (the answer)."""
    out = tmp_path / "run"
    assert sessionize(out).exit_code == 0
    sessions = pq.read_table(out / "sessions.parquet").to_pylist()
    reversed_row = next(
        r for r in sessions if r["client_ip"] != r["ip_a"] and r["ab_bytes"] != r["ba_bytes"]
    )
    result = runner.invoke(app, ["show", str(out), "--limit", "1000"])
    header, *rows = result.stdout.splitlines()
    assert "cs_bytes" in header and "ab_bytes" not in header
    line = next(
        row
        for row in rows
        if f" {reversed_row['client_port']} " in row and reversed_row["client_ip"] in row
    )
    fields = line.split()
    at = header.split().index("cs_bytes")
    assert (int(fields[at]), int(fields[at + 1])) == (
        reversed_row["ba_bytes"],
        reversed_row["ab_bytes"],
    )


def test_the_summary_says_how_many_problems_it_did_not_show(tmp_path: Path) -> None:
    """Found by an audit: stderr showed five problems and not that there were more, and a
    file name holding a newline broke the one-line-per-problem promise."""
    case = tmp_path / "case"
    case.mkdir()
    (case / "capture.pcap").write_bytes(FIXTURE.read_bytes())
    for number in range(6):
        (case / f"notes{number}.txt").write_text("not a capture\n")
    (case / "a\nlines.txt").write_text("not a capture either\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["sessionize", str(case), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert f"  ... 2 more example(s) in {out / 'manifest.json'}: problems" in lines
    assert not any(line.startswith("lines.txt") for line in lines)
    assert any("a\\nlines.txt" in line for line in lines)


def test_sessionize_help_gives_the_defaults_in_force() -> None:
    """Found by an audit: `--help` gave no default for the session settings (and type
    names for metavars); the defaults it gives are the policy's."""
    import re

    from obserae_forensics.sessionize import SessionPolicy
    from obserae_forensics.sessionize.policy import parse_duration

    result = runner.invoke(app, ["sessionize", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    policy = SessionPolicy()
    for option, name in (
        ("hard-timeout", "hard_timeout_us"),
        ("grace", "grace_us"),
        ("idle-tcp-established", "idle_tcp_established_us"),
        ("idle-tcp-half-open", "idle_tcp_half_open_us"),
        ("idle-udp", "idle_udp_us"),
        ("idle-icmp", "idle_icmp_us"),
        ("idle-other", "idle_other_us"),
    ):
        found = re.search(rf"--{option} <duration> sessions\.\S+ \(default (\w+)", text)
        assert found is not None, option
        assert parse_duration(found.group(1), option) == getattr(policy, name)
    assert f"(default {policy.max_open_ksessions})" in text
    assert f"{policy.replay} (default)" in text
    assert "<str>" not in text and "<float>" not in text and "<int range>" not in text


def test_a_capture_of_the_traffic_itself_is_told_what_the_tool_reads(tmp_path: Path) -> None:
    """A raw packet capture (no flow export in it) gave 0 sessions, exit 0, and only
    "not flow exports: 3 not_udp ..." (a review): a hint now says what the tool reads."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    raw = tmp_path / "traffic.pcap"
    wrpcap(
        str(raw),
        [
            Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=443),
            Ether() / IP(src="10.0.0.1", dst="10.0.0.3") / ICMP(),
            Ether()
            / IP(src="10.0.0.1", dst="10.0.0.53")
            / UDP(sport=5353, dport=53)
            / DNS(qd=DNSQR(qname="example.org")),
        ],
    )
    for command in (
        ["sessionize", str(raw), "--out", str(tmp_path / "run")],
        ["inspect", str(raw)],
    ):
        result = runner.invoke(app, [*command, "-q"])
        assert result.exit_code == 0, result.output
        assert "no flow record in the inputs, and 3 frame(s) of other traffic" in result.stderr
    # a run with flows, beside the other traffic, says nothing of it; nor one whose flows
    # all lay outside --from/--to, or one whose export could not be read (a review)
    mixed = runner.invoke(app, ["inspect", str(raw), str(FIXTURE), "-q"])
    assert "no flow record" not in mixed.stderr
    outside = runner.invoke(app, ["inspect", str(raw), str(FIXTURE), "--from", "2099-01-01"])
    assert "0 flow records" in outside.stderr and "72 outside --from/--to" in outside.stderr
    assert "no flow record" not in outside.stderr
    from tests.readers.test_ipfix import EXPORT_S, message
    from tests.readers.test_ipfix import data as data_set
    from tests.readers.test_pcap import pcap_bytes

    # IPFIX data whose template never came: a flow export, unread (no_template)
    payload = message(data_set(300, bytes(20)))
    frame = bytes(IP(src="192.0.2.9", dst="198.51.100.7") / UDP(sport=4739, dport=4739) / payload)
    waiting = tmp_path / "waiting.pcap"
    waiting.write_bytes(pcap_bytes([(EXPORT_S * 10**9, frame)], linktype=101))
    unread = runner.invoke(app, ["inspect", str(raw), str(waiting), "-q"])
    assert "no_template" in unread.stderr and "no flow record" not in unread.stderr
    # a capture of no frame at all (a review: "0 sessions from 0 flow records", nothing more)
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(pcap_bytes([]))
    for command in (
        ["sessionize", str(empty), "--out", str(tmp_path / "empty_run")],
        ["inspect", str(empty)],
    ):
        result = runner.invoke(app, [*command, "-q"])
        assert result.exit_code == 0, result.output
        assert "no flow record in the inputs, and no frame of other traffic either" in (
            result.stderr
        )


def test_a_capture_of_templates_alone_is_not_called_a_capture_of_nothing(
    corpus: Path, tmp_path: Path
) -> None:
    """A review: export datagrams of a template alone were said to be "no frame of other
    traffic either: captures of nothing"."""
    template = corpus / "netflow_public" / "akvorado_template.pcap"
    result = runner.invoke(app, ["inspect", str(template), "-q"])
    assert result.exit_code == 0, result.output
    assert (
        "no flow record in the inputs: their 1 export frame(s) or block(s) held templates, "
        "options or other metadata only, no data record"
    ) in result.stderr
    assert "captures of nothing" not in result.stderr
    # beside a frame of other traffic, not "a capture of the traffic itself" either
    from scapy.layers.l2 import ARP, Ether
    from scapy.utils import wrpcap

    other = tmp_path / "arp.pcap"
    wrpcap(str(other), [Ether() / ARP()])
    result = runner.invoke(app, ["inspect", str(template), str(other), "-q"])
    assert result.exit_code == 0, result.output
    assert (
        "their 1 export frame(s) or block(s) held templates, options or other metadata only, "
        "no data record; 1 frame(s) of other traffic"
    ) in result.stderr
    assert "traffic itself" not in result.stderr


def test_show_of_an_empty_table_names_its_columns(tmp_path: Path) -> None:
    """A run of no flow record: `show` printed pandas' "Empty DataFrame / Columns: [...] /
    Index: []" (a review); it prints the view's columns and the count."""
    from tests.readers.test_pcap import pcap_bytes

    empty = tmp_path / "empty.pcap"
    empty.write_bytes(pcap_bytes([]))
    out = tmp_path / "run"
    assert runner.invoke(app, ["sessionize", str(empty), "--out", str(out), "-q"]).exit_code == 0
    shown = runner.invoke(app, ["show", str(out)])
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:2] == ["opened_at", "protocol"]
    assert lines[1] == f"(0 rows in {out / 'sessions.parquet'})"
    assert "Empty DataFrame" not in shown.stdout and "Index" not in shown.stdout
