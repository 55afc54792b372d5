"""Behaviour of the `sessionize` and `recombine` commands (cli.py: options, parse_time, the
end-of-run summary and hints, exit codes, the fragment listing of `recombine --session`, the
export lines) and of recombine's report (recombine/report.py) that no test pinned, found by
a mutation audit (the audit-cli branch's: 105 small changes, C01-C65 to cli.py and P01-P40
to recombine/report.py, 68 of which no test noticed: 60 real gaps, killed here, and 8
equivalent). The earlier audits' `show`, `inspect` and summary changes
(tests/query/test_mutation_audit.py) are not repeated. The equivalent ones: C06
(parse_time without `Z` -> `+00:00`: Python 3.11's fromisoformat, the oldest the project
runs on, reads `Z`), C26 (the late hint given the replay "arrival" always: under
`--replay event` records come in first_seen order and none is late, as
test_corpus_sessions asserts), C33 (the strict exit on `report.skipped`, not
`skipped_problems()`: under --strict the first problem raises before anything is counted,
so both are empty), C35 (`replay == "event"` for `!= "arrival"`: the policy accepts those
two only), C52 (_refuse_exports_into without the capture export's `NAME.flows.parquet`:
no file `--out` gets ends so), C64 (the cap hint's exporters unsorted: the manifest's
session_pressure is sorted already, pipeline.py), P28 (the report's exporter windows
unsorted: RunsContext sorts the exporters), P34 (`first_split` 1 for a conversation of no
fragment: every conversation has one). Each test fails with its change applied and names
it."""

from __future__ import annotations

import errno
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import Result

import obserae_forensics.recombine as recombine_package
from obserae_forensics.cli import _print_problems, app, eviction_hint, parse_time
from obserae_forensics.errors import MalformedInput
from obserae_forensics.pipeline import SessionizeResult
from obserae_forensics.recombine import human_seconds, recombine_runs, recombine_tables
from obserae_forensics.recombine.export import PcapExport
from obserae_forensics.recombine.report import render_markdown
from obserae_forensics.report import RunReport
from obserae_forensics.tables.scratch import OwnedDirectory
from tests.recombine.conftest import T0_US, session, write_run
from tests.recombine.test_report import sample_run
from tests.tables.test_scratch import dead
from tests.test_cli import FIXTURE, runner, sessionize

FIXTURES = FIXTURE.parent
LATE_HALVES = FIXTURES / "live" / "sf_v9_late_halves.pcap"


def recombine(*arguments: str | Path) -> Result:
    return runner.invoke(app, ["recombine", *map(str, arguments)])


# --- cli.py: parse_time -----------------------------------------------------------------


@pytest.mark.parametrize("text", [" 2024-03-01T12:00:00Z ", "2024/03/01.12:00:00\n"])
def test_a_window_time_with_spaces_around_it_is_read(text: str) -> None:
    """Kills C02 (parse_time without `text.strip()`): a time pasted or read from a file
    with a blank or a newline around it is the same time, not a usage error."""
    assert parse_time(text, "--from") == T0_US


def test_a_window_time_that_cannot_be_read_is_a_usage_error(tmp_path: Path) -> None:
    """Kills C04 (an unreadable --from an InputError, exit 1): README, exit 2 is a "usage
    error (bad option ...)", said before any work."""
    result = sessionize(tmp_path / "run", "--from", "yesterday")
    assert result.exit_code == 2, result.output
    assert "error: --from: cannot read 'yesterday' as a UTC time" in result.stderr
    assert not (tmp_path / "run").exists()


# --- cli.py: errors and problems -----------------------------------------------------------


def test_an_output_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    """Kills C07 (`cannot write:` without the path): _os_failure's promise, "one line naming
    it"; "cannot write: No such file or directory" leaves the reader to guess which of the
    outputs."""
    result = sessionize(Path("/proc/no-such-directory-here/run"))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: cannot write: /proc/no-such-directory-here")


def test_a_carriage_return_in_a_problem_is_shown_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Kills C11 (a problem's `\\r` printed as it is): the problems are one line each; a
    carriage return in a file name sent the terminal back over the line it was on."""
    report = RunReport()
    report.skip(MalformedInput("bad", source="a\rb.pcap", offset=0, reason="bad_thing"))
    _print_problems(report, "")
    assert capsys.readouterr().err == "  bad_thing: a\\rb.pcap@0: bad\n"


def test_recombine_that_cannot_write_its_out_ends_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills C58 (recombine catching FileNotFoundError only): README, "an output could not
    be written (`error: cannot write: ...`)" is exit 1, whatever the OSError (a full disk
    here), not a traceback."""
    run = sample_run(tmp_path)

    def full(source: object, target: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(os, "replace", full)
    result = recombine(run, "--out", tmp_path / "rc")
    assert result.exit_code == 1, result.output
    assert "error: cannot write: " in result.stderr
    assert "No space left on device" in result.stderr


# --- cli.py: sessionize's options ---------------------------------------------------------


def test_a_cap_of_a_fraction_above_one_is_kept_whole(tmp_path: Path) -> None:
    """Kills C12 (a cap above one thousand made an integer, fraction or not): README,
    `--max-open-ksessions` is thousands of sessions "as the YAML gives them"; 2.5 is 2,500
    sessions, not 2,000."""
    out = tmp_path / "run"
    assert sessionize(out, "--max-open-ksessions", "2.5").exit_code == 0
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["sessions.max_open_ksessions"] == 2.5


def test_a_cap_of_zero_is_refused_not_taken_for_the_default(tmp_path: Path) -> None:
    """Kills C15 (options dropped when falsy, not when absent): README, "negative or zero
    where it must be positive ... stops the run with exit code 2 and the setting's name";
    `--max-open-ksessions 0` ran with the default cap of 500."""
    result = sessionize(tmp_path / "run", "--max-open-ksessions", "0")
    assert result.exit_code == 2, result.output
    assert "sessions.max_open_ksessions" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option", ["--config", "--flow-matrix"])
def test_force_never_replaces_a_directory_holding_the_settings_or_rules(
    tmp_path: Path, option: str
) -> None:
    """Kills C18 and C19 (--config, --flow-matrix left out of what --out may not hold):
    README, "No command writes over what it reads, `--force` or not"; the settings file and
    the Flow Matrix are read as the Cartography is."""
    case = tmp_path / "case"
    case.mkdir()
    given = {
        "--config": case / "settings.yaml",
        "--flow-matrix": case / "flow_matrix.yaml",
    }[option]
    if option == "--config":
        given.write_text("sessions:\n  grace: 10s\n")
        extra = [option, str(given)]
    else:
        given.write_bytes((FIXTURES / "flow_matrix.yaml").read_bytes())
        extra = ["--cartography", str(FIXTURES / "cartography.yaml"), option, str(given)]
    result = sessionize(case, "--force", *extra)
    assert result.exit_code == 2, result.output
    assert f"holds the input {given}; refusing" in result.stderr
    assert given.is_file()


def test_a_batch_size_of_zero_is_a_usage_error(tmp_path: Path) -> None:
    """Kills C21 (`--batch-size` from 0): README, a bad option is exit 2 and "Every error is
    one line on stderr"; a batch of no records ended the run in a traceback from pyarrow."""
    result = sessionize(tmp_path / "run", "--batch-size", "0")
    assert result.exit_code == 2, result.output
    assert (
        result.stderr.strip().splitlines()[-1].startswith("Error: Invalid value for '--batch-size'")
    )
    assert not (tmp_path / "run").exists()


def test_a_flow_matrix_of_built_in_names_needs_no_cartography(tmp_path: Path) -> None:
    """Kills C22 (no Cartography at all when --cartography is not given): README, both are
    optional (`[--cartography C] [--flow-matrix M]`), and a rule may name "a built-in name
    (internal4, internet4, ..., any)"; without a Cartography the run ended in a traceback."""
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "rules:\n  - name: dns\n    source: any\n    destination: any\n"
        "    protocol: udp\n    ports: [53]\n"
    )
    out = tmp_path / "run"
    result = sessionize(out, "--flow-matrix", str(matrix))
    assert result.exit_code == 0, result.output
    matches = pq.read_table(out / "session_matches.parquet")
    assert set(matches.column("rule").to_pylist()) == {"dns"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sessionize", str(FIXTURE), "-o", "{tmp}/run", "--cartography", "{tmp}"], "not a file"),
        (["recombine", str(FIXTURE), "--session", "x"], "is not a directory"),
        (
            ["recombine", "{run}", "--export-pcap", "{tmp}/x.pcap", "--captures", str(FIXTURE)],
            "is not a directory",
        ),
    ],
    ids=["cartography", "run_dir", "captures"],
)
def test_a_path_of_the_wrong_kind_is_a_usage_error(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Kills C53 (--captures any path), C54 (RUN_DIR any path) and C55 (--cartography any
    path): README, exit 2 for a bad option, said as the option's path, before any work."""
    run = sample_run(tmp_path)
    filled = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(run)) for a in args]
    result = runner.invoke(app, filled)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "run").exists() or run == tmp_path / "run"
    assert not (tmp_path / "x.pcap").exists()


# --- cli.py: the end-of-run summary and hints ------------------------------------------------


def test_the_summary_counts_sessions_by_state_and_the_late_ones_of_all(tmp_path: Path) -> None:
    """Kills C23 (states as `closed 20`), C24 (states in the order met, not sorted) and C25
    (the flow records counted as the sessions): the line a responder reads after the run,
    `N sessions (n active, m closed) from F flow records -> DIR`, and README's late hint,
    "when at least one session in twenty ... is late"; softflowd -r's halves of
    conversations flushed out of time order."""
    out = tmp_path / "run"
    result = runner.invoke(app, ["sessionize", str(LATE_HALVES), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    sessions = pq.read_table(out / "sessions.parquet")
    states = Counter(sessions.column("state").to_pylist())
    late = sessions.column("late").to_pylist().count(True)
    assert (states, late, sessions.num_rows) == (Counter(closed=20, active=1), 20, 21)
    assert f"21 sessions (1 active, 20 closed) from 22 flow records -> {out}" in result.stderr
    assert "20 of 21 sessions are late (their records arrived behind the watermark)" in (
        result.stderr
    )


def test_two_work_directories_removed_are_said_in_the_plural(tmp_path: Path) -> None:
    """Kills C34 (`directory` for two): README, "`removed 1 hidden work directory that
    killed runs had left: PATH`", and for more, directories, each named."""
    run = sample_run(tmp_path)
    out = tmp_path / "rc"
    out.mkdir()
    gone = sorted(dead(OwnedDirectory(out, ".recombine.", ".partial")) for _ in range(2))
    result = recombine(run, "--out", out)
    assert result.exit_code == 0, result.output
    said = next(line for line in result.stderr.splitlines() if line.startswith("removed"))
    assert said.startswith("removed 2 hidden work directories that killed runs had left: ")
    assert all(str(path) in said for path in gone)


def test_the_cap_hint_gives_a_whole_cap_as_the_option_takes_it(tmp_path: Path) -> None:
    """Kills C37 (the cap as Python prints a float): a settings file's `max_open_ksessions:
    2.0` is the option's `2`; "2.0" read as another setting than the one given."""
    result = SessionizeResult(
        out=tmp_path,
        close_reasons=Counter(evicted=3),
        manifest={"counts": {"session_pressure": {"10.0.0.1": {"evictions": 3}}}},
    )
    hint = eviction_hint(result, 2.0)
    assert hint is not None and "(sessions.max_open_ksessions = 2, per exporter;" in hint


# --- cli.py: recombine --session and the exports ----------------------------------------------


def test_recombine_session_lists_every_fragment_with_its_split_and_gap(tmp_path: Path) -> None:
    """Kills C39 (the listing without gap_s), C40 (without split) and C41 (the fragments
    counted one short): README, "Find Session Fragments" shows the conversation's
    fragments, each with its own `split` and the gap after which it joined."""
    result = recombine(sample_run(tmp_path), "--session", "A1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert (
        lines[0] == "conversation A: TCP 10.0.0.1:40000 → 10.0.0.2:443 (192.0.2.1), 3 fragment(s)"
    )
    assert lines[1].split() == [
        "fragment_index",
        "split",
        "session_id",
        "opened_at",
        "last_seen_at",
        "closed_at",
        "state",
        "close_reason",
        "ab_bytes",
        "ba_bytes",
        "ab_packets",
        "ba_packets",
        "link_reason",
        "joined_fragment",
        "gap_s",
    ]
    assert [line.split()[:3] for line in lines[2:5]] == [
        ["0", "0", "A"],
        ["1", "1", "A1"],
        ["2", "2", "A2"],
    ]
    assert [line.split()[-2:] for line in lines[3:5]] == [["0", "1.0"], ["1", "1.0"]]
    # split is its run's numbering, not the conversation's (a review: two 0s)
    assert lines[5].startswith("(fragment_index: the fragment's place in the conversation;")


def test_an_export_of_named_conversations_says_what_it_wrote(tmp_path: Path) -> None:
    """Kills C42 (`exporting the N split conversation(s)` said with --session too) and C43
    (the flows export unsaid): README, `--export-flows` writes "every flow record behind
    the selected conversations (`--session` ...; without it, every split conversation)"."""
    flows = tmp_path / "a.csv"
    result = recombine(sample_run(tmp_path), "--session", "A1", "--export-flows", flows)
    assert result.exit_code == 0, result.output
    assert "exporting the" not in result.stderr
    assert f"6 flow records -> {flows}" in result.stderr.splitlines()
    assert len(flows.read_text().splitlines()) == 1 + 6


def test_recombine_checks_an_unknown_session_before_writing_out(tmp_path: Path) -> None:
    """Kills C60 (the --session ids checked only when listed): README, "every id known
    before anything is written"; `--out rc --session nope` wrote rc whole, then exit 2."""
    out = tmp_path / "rc"
    result = recombine(sample_run(tmp_path), "--out", out, "--session", "nope")
    assert result.exit_code == 2, result.output
    assert "no session or conversation 'nope'" in result.stderr
    assert not out.exists()


def test_both_exports_to_one_file_through_a_link_are_refused(tmp_path: Path) -> None:
    """Kills C63 (the two export paths compared as spelt): README, the exports refuse
    "each other's" paths "whatever the symlinks ... on the way"; the capture export
    written first was replaced by the flows, exit 0."""
    (tmp_path / "link").symlink_to(tmp_path)
    flows, capture = tmp_path / "x.csv", tmp_path / "link" / "x.csv"
    run = sample_run(tmp_path)
    result = recombine(run, "--session", "A1", "--export-flows", flows, "--export-pcap", capture)
    assert result.exit_code == 2, result.output
    assert f"--export-flows {flows} is where --export-pcap {capture} writes" in result.stderr
    assert not flows.exists()


def test_the_capture_export_says_what_it_added_and_how_many_records_decode_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills C45 (`decoded alone, 12 of 12` whatever differed) and C46 (`including 0
    datagram(s) added` for a capture that needed none): README, "the
    command says how many came out as in the run (`decoded alone, 12 of 12 records as in
    the run`)". export_pcap's result is made up here: what a capture gives is
    export.py's to test; how the command words it is cli.py's."""
    capture = tmp_path / "x.pcap"

    def export(*arguments: object, **options: object) -> PcapExport:
        return PcapExport(
            path=capture,
            format="pcap",
            datagrams=2,
            records=12,
            template_datagrams=0,
            checked_records=12,
            differing_records=1,
        )

    monkeypatch.setattr(recombine_package, "export_pcap", export)
    result = recombine(sample_run(tmp_path), "--session", "A1", "--export-pcap", capture)
    assert result.exit_code == 0, result.output
    assert (
        f"2 frames carrying 12 records -> {capture} (pcap); decoded alone, 11 of 12 records as"
        " in the run"
    ) in result.stderr.splitlines()


def test_recombine_into_an_earlier_output_is_refused_before_any_export(tmp_path: Path) -> None:
    """Kills C49 (--out checked only as the tables are moved in, last): README, exit 2 for
    an "existing output without `--force`", and recombine's outputs are whole or absent
    ("a refused run leaves no directory it made"); the flows export was written, then the
    command refused the --out it could have refused first."""
    run, out, flows = sample_run(tmp_path), tmp_path / "rc", tmp_path / "f.csv"
    assert recombine(run, "--out", out).exit_code == 0
    result = recombine(run, "--out", out, "--session", "A1", "--export-flows", flows)
    assert result.exit_code == 2, result.output
    assert "use --force" in result.stderr
    assert not flows.exists()


# --- recombine/report.py ---------------------------------------------------------------------


def sample_report(tmp_path: Path) -> tuple[dict[str, Any], str]:
    """recombine's report of test_report.py's sample run (A cut twice by hard_timeout, B
    once by the cap, 20 UDP conversations of 1-7 s): report.json's dict and report.md."""
    recombine_runs([sample_run(tmp_path)], tmp_path / "out")
    out = tmp_path / "out"
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_the_report_counts_complete_conversations_and_inferred_states(tmp_path: Path) -> None:
    """Kills P03 (state_inferred counted from `complete`) and P36 (complete counted from
    the incomplete ones): README, `complete` and `state_inferred` of
    sessions_recombined, which the summary counts; every conversation of the sample is
    whole, and each ended in its own records."""
    report, markdown = sample_report(tmp_path)
    assert report["counts"] == {
        "sessions": 25,
        "conversations": 22,
        "split_conversations": 2,
        "fragments_of_split_conversations": 5,
        "complete": 22,
        "head_cut": 0,
        "tail_cut": 0,
        "state_inferred": 0,
        "orientation_conflicts": 0,
    }
    assert "| fragments of split conversations | 5 |" in markdown.splitlines()


def test_the_report_gives_the_shortest_duration_and_each_percentile_in_its_column(
    tmp_path: Path,
) -> None:
    """Kills P21 (p90 and p99 swapped in report.md) and P31 (min the first conversation's
    duration, not the shortest): README, "the duration distribution"; 22 conversations: 20
    of 1-7 s, B 1000 s, A 1900 s, A first in the table."""
    report, markdown = sample_report(tmp_path)
    durations = report["durations"]
    assert (durations["min_s"], durations["p50_s"], durations["p90_s"], durations["p99_s"]) == (
        1.0,
        4.0,
        7.0,
        1900.0,
    )
    assert [b["count"] for b in durations["histogram"][:6]] == [0, 20, 0, 0, 0, 2]
    assert "| 22 | 1 s | 4 s | 7 s | 31 min 40 s | 31 min 40 s |" in markdown.splitlines()


def test_the_reports_timeline_gives_each_fragments_own_figures(tmp_path: Path) -> None:
    """Kills P10 (a fragment's bytes one direction's), P11 (its packets a->b twice), P12
    and P32 (a conversation's packets and bytes from one direction), P13 (the offset in
    ms read as s), P14 (a fragment's length from the conversation's start), P22 (`closed
    by` the state, not the close reason), P23 (the first fragment joined as nothing, not
    "first") and P40 (the gap column named as after): README, the report's "fragment
    timelines"; B sent 10**6 bytes in 900 packets a->b and 5000 in 8 back, then 1000/10
    and 5000/8 in B1, 11 s after, lasting 90 s."""
    report, markdown = sample_report(tmp_path)
    [b] = [c for c in report["largest"] if c["conversation_id"] == "B"]
    assert (b["bytes"], b["packets"]) == (1_011_000, 926)
    assert [(f["bytes"], f["packets"], f["offset_s"], f["length_s"]) for f in b["timeline"]] == [
        (1_005_000, 908, 0.0, 899.0),
        (6_000, 18, 910.0, 90.0),
    ]
    lines = markdown.splitlines()
    assert (
        "| # | session | split in its run | run | opened at | +offset | length | gap before "
        "| bytes | packets | closed by | joined as |"
    ) in lines
    assert (
        "| 0 | B | 0 | 0 | 2024-03-01T12:01:40.000Z | 0 ms | 14 min 59 s |  | 1005000 | 908 "
        "| evicted | first |"
    ) in lines
    assert (
        "| 1 | B1 | 0 | 0 | 2024-03-01T12:16:50.000Z | 15 min 10 s | 1 min 30 s | 11 s | 6000 | 18 "
        "| idle | evicted to #0 |"
    ) in lines


def test_the_reports_markdown_says_the_runs_and_reasons_as_a_person_reads_them(
    tmp_path: Path,
) -> None:
    """Kills P19 (every kind of refused link listed, none refused), P29 (a conversation
    "split by hard_timeout, hard_timeout") and P30 (its final state without the close
    reason) and P35 (a run's hard_timeout in bare seconds): README, report.md is "laid out
    for reading"; A was cut twice by hard_timeout and closed by FIN."""
    _, markdown = sample_report(tmp_path)
    lines = markdown.splitlines()
    assert "Links the tables asked for but recombine refused (kept apart):" not in lines
    assert (
        "3 fragments, 2024-03-01T12:00:00.000Z – 2024-03-01T12:31:40.000Z, split by hard_timeout; "
        "final state closed (fin)"
    ) in lines
    assert any(line.startswith("| 0 | ") and line.endswith(" | 15 min |  |") for line in lines)


def test_the_report_says_where_conversations_may_begin_or_go_on(tmp_path: Path) -> None:
    """Kills P08 (`more may follow after` the conversation's last record, not the
    window's end) and P20 (`The first N of N:` over a list that is whole): README, "more
    may follow after T", T the end of the data, after which the conversation could go on;
    and report.md says `The first N of M` only when it lists fewer than all."""
    udp: dict[str, Any] = {"protocol": 17, "ba": (0, 0)}
    rows = [
        session("FIRST", 0, 1, a=("10.0.0.3", 5), close="no_reply", **udp),
        session("H1", 50, 60, split=1, conversation="H", a=("10.0.0.4", 6)),
        session("T", 1000, 1899, close="hard_timeout", a=("10.0.0.5", 7)),
        session("T1", 1900, 1995, split=1, conversation="T", state="active", a=("10.0.0.5", 7)),
        session("LAST", 1999, 2000, a=("10.0.0.6", 8), close="no_reply", **udp),
    ]
    report = recombine_tables([write_run(tmp_path / "run", rows)]).report
    assert (report["counts"]["head_cut"], report["counts"]["tail_cut"]) == (2, 1)
    window = report["outside_window"]
    [missing] = [e for e in window["head_cut"] if e["first_split"] == 1]
    assert missing["message"].endswith("start before 2024-03-01T12:00:50.000Z")
    [going_on] = window["tail_cut"]
    assert going_on["message"] == "more may follow after 2024-03-01T12:33:20.000Z"
    assert "The first" not in render_markdown(report)


def test_the_report_lists_the_first_ten_split_and_fifty_cut_conversations(
    tmp_path: Path,
) -> None:
    """Kills P05 (conversations of equal bytes taken last first), P06 (11 in the "largest"
    table), P07 (49 cut conversations listed) and P39 (the last 50 listed, not the first):
    recombine/report.py, TOP_CONVERSATIONS 10 and LISTED_CUTS 50, "all are counted", in the
    tables' order (first_seen) where the figures tie."""
    rows = []
    for i in range(12):  # 12 split conversations of the same bytes and length
        key: dict[str, Any] = {"a": (f"10.1.0.{i}", 1000), "b": ("10.0.0.2", 443)}
        rows += [
            session(f"S{i:02d}", 10 * i, 10 * i + 899, close="hard_timeout", **key),
            session(
                f"S{i:02d}b", 10 * i + 900, 10 * i + 950, split=1, conversation=f"S{i:02d}", **key
            ),
        ]
    for i in range(51):  # 51 conversations whose fragment 0 is not in the run
        key = {"a": (f"10.2.0.{i}", 1000), "b": ("10.0.0.2", 443)}
        rows.append(session(f"H{i:02d}", 300 + i, 310 + i, split=1, **key))
    report = recombine_tables([write_run(tmp_path / "run", rows)]).report
    assert [c["conversation_id"] for c in report["largest"]] == [f"S{i:02d}" for i in range(10)]
    cut = report["outside_window"]
    assert cut["head_cut_count"] == 51
    assert [e["conversation_id"] for e in cut["head_cut"]] == [f"H{i:02d}" for i in range(50)]
    assert "The first 50 of 51:" in render_markdown(report).splitlines()


def test_the_report_writes_endpoints_as_their_protocol_has_them(tmp_path: Path) -> None:
    """Kills P26 (an IPv6 endpoint's port not set apart by brackets) and P27 (ICMP
    endpoints given a port): report.py's _endpoint, `[ip]:port`, and the address alone for
    a protocol without ports."""
    v6: dict[str, Any] = {"a": ("2001:db8::1", 40000), "b": ("2001:db8::2", 443)}
    icmp: dict[str, Any] = {"protocol": 1, "a": ("10.0.0.7", 0), "b": ("10.0.0.8", 0)}
    rows = [
        session("V", 0, 899, close="hard_timeout", **v6),
        session("V1", 900, 950, split=1, conversation="V", **v6),
        session("I", 0, 899, close="hard_timeout", **icmp),
        session("I1", 900, 905, split=1, conversation="I", **icmp),
    ]
    report = recombine_tables([write_run(tmp_path / "run", rows)]).report
    ends = {c["conversation_id"]: (c["client"], c["server"]) for c in report["largest"]}
    assert ends == {
        "V": ("[2001:db8::1]:40000", "[2001:db8::2]:443"),
        "I": ("10.0.0.7", "10.0.0.8"),
    }


def test_a_report_without_split_conversations_says_so(tmp_path: Path) -> None:
    """Kills P37 (the "largest" and "longest" sections left empty): README, the report says
    "how many conversations were split"; an empty section reads as one cut off."""
    report = recombine_tables([write_run(tmp_path / "run", [session("W", 0, 10)])]).report
    assert render_markdown(report).count("No conversation was split.") == 2


def test_the_reports_timeline_follows_the_fragments_order_not_their_ids(tmp_path: Path) -> None:
    """Kills P15 (a timeline ordered by session id): README, fragments are placed "the
    conversation's first fragment, then the rest by `opened_at`"; session ids are hashes,
    in no time order."""
    rows = [
        session("Z", 0, 899, close="hard_timeout"),
        session("M", 900, 1799, split=1, conversation="Z", close="hard_timeout"),
        session("A", 1800, 1850, split=2, conversation="Z"),
    ]
    report = recombine_tables([write_run(tmp_path / "run", rows)]).report
    assert [f["session_id"] for f in report["largest"][0]["timeline"]] == ["Z", "M", "A"]


def test_orientation_conflicts_are_counted_per_fragment(tmp_path: Path) -> None:
    """Kills P04 (conflicts counted per conversation): the summary's `orientation
    conflicts` is the fragments whose own inference disagreed, as recombined_fragments'
    `orientation_conflict` marks them (README); two here, in one conversation."""
    turned: dict[str, Any] = {"client": ("10.0.0.2", 443), "server": ("10.0.0.1", 40000)}
    rows = [
        session("O", 0, 899, close="hard_timeout"),
        session("O1", 900, 1799, split=1, conversation="O", close="hard_timeout", **turned),
        session("O2", 1800, 1900, split=2, conversation="O", **turned),
    ]
    report = recombine_tables([write_run(tmp_path / "run", rows)]).report
    assert report["counts"]["orientation_conflicts"] == 2


@pytest.mark.parametrize(
    ("seconds", "said"), [(1.0, "1 s"), (60.0, "1 min"), (172_800.0, "2 d"), (0.999, "999 ms")]
)
def test_durations_at_a_units_edge_are_said_in_the_larger_unit(seconds: float, said: str) -> None:
    """Kills P24 (60 s as "60 s"), P25 (1 s as "1000 ms") and P38 (two days as "2 d 0 h"):
    human_seconds writes a duration "as a person writes it"."""
    assert human_seconds(seconds) == said
