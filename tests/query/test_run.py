"""load(): tables as DataFrames with useful dtypes, several runs at once, rematch."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from obserae_forensics import query
from obserae_forensics.errors import UsageError
from obserae_forensics.query import SessionQuery

from ..conftest import CORPUS
from .run_dirs import FLOW_MATRIX, at, write_later_run, write_run


def test_tables_load_with_arrow_backed_strings_lists_and_nullable_integers(
    tmp_path: Path,
) -> None:
    run = query.load(write_run(tmp_path / "hand"))
    sessions = run.sessions
    assert len(sessions) == 9 and len(run.flows) == 18
    assert "run" not in sessions.columns
    assert isinstance(sessions["session_id"].dtype, pd.StringDtype)
    assert sessions["session_id"].dtype.storage == "pyarrow"
    assert isinstance(sessions["matched_rules"].dtype, pd.ArrowDtype)
    assert sessions.set_index("session_id").loc["s1", "matched_rules"] == ["web-to-api"]
    # a missing ICMP type stays missing instead of turning the column into floats
    assert isinstance(sessions["icmp_type"].dtype, pd.ArrowDtype)
    assert sessions["icmp_type"].isna().sum() == 8
    assert str(sessions["opened_at"].dtype) == "datetime64[us, UTC]"
    assert sessions["ab_bytes"].dtype == "uint64"
    assert run.manifest["data_window"]["end"] == "2024-03-01T11:00:00Z"
    assert run.data_start == at("08:45:00") and run.data_end == at("11:00:00")
    assert run.notes == ()


def test_several_runs_load_as_one_in_data_window_order(tmp_path: Path) -> None:
    early = write_run(tmp_path / "early")
    later = write_later_run(tmp_path / "later")

    run = query.load([later, early])  # given out of order
    assert run.paths == (early, later)
    assert len(run.sessions) == 18 and len(run.flows) == 36
    assert run.sessions.groupby("run")["session_id"].count().tolist() == [9, 9]
    assert run.sessions.loc[run.sessions["run"] == 1, "session_id"].str.startswith("later-").all()
    assert run.data_end == pd.Timestamp("2024-03-01T14:00:00Z")
    assert [m["data_window"]["end"] for m in run.manifest["runs"]] == [
        "2024-03-01T11:00:00Z",
        "2024-03-01T14:00:00Z",
    ]
    # last= counts back from the end of the later run's data
    assert sorted(SessionQuery().last(600).apply(run)["session_id"]) == [
        "later-s3",
        "later-s4",
        "later-s5b",
        "later-s7",
        "later-s8",
    ]
    assert sorted(SessionQuery().unmatched().apply(run)["session_id"]) == sorted(
        [*("s3", "s4", "s6", "s7"), *("later-s3", "later-s4", "later-s6", "later-s7")]
    )


def test_the_same_run_twice_is_refused(tmp_path: Path) -> None:
    first = write_run(tmp_path / "a")
    with pytest.raises(UsageError, match="given twice"):
        query.load([first, first])
    shutil.copytree(first, tmp_path / "copy")
    with pytest.raises(UsageError, match="appears in more than one"):
        query.load([first, tmp_path / "copy"], recombine=False)


def test_not_a_run_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no manifest\.json"):
        query.load(tmp_path)
    with pytest.raises(UsageError, match="not a directory"):
        query.load(tmp_path / "absent")
    run_dir = write_run(tmp_path / "hand")
    (run_dir / "flows.parquet").unlink()
    with pytest.raises(UsageError, match=r"flows\.parquet: missing"):
        query.load(run_dir)


def test_a_vanished_cartography_falls_back_to_builtin_names_and_says_so(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "hand")
    (run_dir / "cartography.yaml").unlink()
    run = query.load(run_dir)
    assert "not there" in run.notes[0]
    assert len(SessionQuery().entity("internet4", side="server").apply(run)) == 2
    with pytest.raises(UsageError, match="unknown name 'databases'"):
        SessionQuery().entity("databases").apply(run)


def test_rematch_applies_an_edited_flow_matrix_to_the_same_sessions(tmp_path: Path) -> None:
    run = query.load(write_run(tmp_path / "hand"))
    assert sorted(SessionQuery().unmatched().apply(run)["session_id"]) == ["s3", "s4", "s6", "s7"]
    edited = tmp_path / "edited.yaml"
    edited.write_text(
        FLOW_MATRIX
        + """\
  - name: lan-ntp
    description: hosts set their clocks from public NTP
    source: lan
    destination: internet4
    protocol: udp
    ports: [123]
"""
    )
    again = query.rematch(run, edited)
    assert sorted(SessionQuery().unmatched().apply(again)["session_id"]) == ["s3", "s4", "s6"]
    rules = again.sessions.set_index("session_id")["matched_rules"]
    assert rules.loc["s7"] == ["lan-ntp"] and rules.loc["s1"] == ["web-to-api"]
    assert again.matches is not None and len(again.matches) == 5
    # the original Run is unchanged
    assert run.matches is not None and len(run.matches) == 4


def test_recombine_false_and_a_recombine_directory(tmp_path: Path) -> None:
    from obserae_forensics.recombine import recombine_runs

    run_dir = write_run(tmp_path / "hand")
    assert query.load(run_dir, recombine=False).fragments is None
    recombine_runs([run_dir], tmp_path / "recombined")
    run = query.load(run_dir, recombine=tmp_path / "recombined")
    assert run.fragments is not None and run.recombined is not None
    assert len(run.fragments) == 9 and len(run.recombined) == 8
    with pytest.raises(UsageError, match="recombine output directory"):
        query.load(run_dir, recombine=tmp_path)


def test_times_pandas_cannot_show_are_nat_with_a_warning(tmp_path: Path) -> None:
    """Found by fuzzing: a run of a damaged capture (a time in year 15760, kept in the
    tables) made the Run's repr, the drawer and the plots raise deep in pandas, and a
    manifest window at year 9999 made load overflow."""
    from typer.testing import CliRunner

    from obserae_forensics.cli import app
    from tests.readers.test_time_range import year_15760_capture

    # the fuzzed capture's record is left out now (its set no longer fits the template
    # the flips changed): a record of that time of its own
    capture = year_15760_capture(tmp_path / "year_15760.pcap")
    run = tmp_path / "run"
    assert (
        CliRunner().invoke(app, ["sessionize", str(capture), "--out", str(run), "-q"]).exit_code
        == 0
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = query.load(run)
    said = [str(w.message) for w in caught]
    assert any(
        re.search(r"outside years 1-9999, shown as NaT .*1 in opened_at", m) for m in said
    ), said
    assert loaded.sessions["opened_at"].isna().all()
    repr(loaded.sessions)
    assert "opened NaT" in query.drawer(loaded, loaded.sessions.session_id.iloc[0]).summary()
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["data_window"] = {"start": "9999-12-31T23:59:58Z", "end": "9999-12-31T23:59:59Z"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(query.load(run).sessions) == 1


def test_iso_text_has_four_year_digits() -> None:
    from obserae_forensics.times import iso_us

    assert iso_us(-62_135_596_800_000_000) == "0001-01-01T00:00:00Z"
    assert iso_us(253_402_300_799_999_999) == "9999-12-31T23:59:59.999999Z"


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("sessions", "client_ip"),
        ("flows", "session_id"),
        ("sessions_consolidated", "sampler_count"),
        ("session_matches", "rule"),
    ],
)
def test_a_table_lacking_a_column_is_named_at_load(tmp_path: Path, table: str, column: str) -> None:
    """Found by fuzzing: an edited table without a column the query layer reads loaded, and
    the filters, the drawer or a plot failed later on a KeyError."""
    import pyarrow.parquet as pq

    run = write_run(tmp_path / "hand")
    path = run / f"{table}.parquet"
    pq.write_table(pq.read_table(path).drop([column]), path)
    with pytest.raises(
        UsageError,
        match=rf"{table}\.parquet: {table} table lacks column\(s\) "
        rf"{column}",
    ):
        query.load(run, recombine=False)


def test_flows_that_do_not_add_up_to_the_sessions_are_refused_at_load(tmp_path: Path) -> None:
    """Found by auditing the README, which said so: a flows table cut by a row loaded, and
    the drawer said "2 flow records" over one."""
    import pyarrow.parquet as pq

    early = write_run(tmp_path / "early")
    path = early / "flows.parquet"
    flows = pq.read_table(path)
    pq.write_table(flows.slice(0, flows.num_rows - 1), path)
    with pytest.raises(
        UsageError,
        match=rf"flows\.parquet holds {flows.num_rows - 1} flow "
        rf"record\(s\), the sessions' flow_count says "
        rf"{flows.num_rows}",
    ):
        query.load(early, recombine=False)


def test_a_run_of_an_earlier_version_without_reverse_tcp_flags_loads(tmp_path: Path) -> None:
    """flows.parquet gained reverse_tcp_flags; a run written before it must still load (and
    its flows still feed a Sessionizer), reading as "not sent" (review)."""
    import pyarrow.parquet as pq

    from obserae_forensics.schema import FLOW_SCHEMA, with_added_columns

    run = write_run(tmp_path / "run")
    old = pq.read_table(run / "flows.parquet").drop_columns(["reverse_tcp_flags"])
    pq.write_table(old, run / "flows.parquet")
    tables = query.load(run)
    assert set(tables.flows["reverse_tcp_flags"]) == {0}
    assert len(tables.flows) == len(old)
    assert (
        with_added_columns(
            old.drop_columns(["session_id", "direction"]).slice(0, 0), FLOW_SCHEMA
        ).schema.names
        == FLOW_SCHEMA.names
    )


def _sessionized(out: Path, capture: Path, *options: str) -> Path:
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    result = CliRunner().invoke(
        app, ["sessionize", str(capture), "--out", str(out), "-q", *options]
    )
    assert result.exit_code == 0, result.output
    return out


def test_load_refuses_a_recombination_of_other_runs_and_notes_what_mixing_runs_costs(
    tmp_path: Path,
) -> None:
    """Found by an audit: `load(run, recombine=DIR)` took a recombine output of other runs
    without a word; runs loaded together used the first one's Cartography, counted the
    sessions of a run made without a Flow Matrix as unmatched, and left sessions of one
    conversation in two runs unconsolidated, all unsaid; a Cartography edited since the
    run was used as it is now, unsaid."""
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    fixtures = Path(__file__).resolve().parents[2] / "fixtures"
    cartography = tmp_path / "cartography.yaml"
    shutil.copy(fixtures / "cartography.yaml", cartography)
    ruled = _sessionized(
        tmp_path / "ruled",
        fixtures / "sf_v9_varsvc.pcap",
        "--cartography",
        str(cartography),
        "--flow-matrix",
        str(fixtures / "flow_matrix.yaml"),
    )
    corpus = CORPUS / "exports"
    if not corpus.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    other = _sessionized(tmp_path / "other", corpus / "sf_v9_ircdcc.pcap")
    elsewhere = tmp_path / "elsewhere"
    assert (
        CliRunner().invoke(app, ["recombine", str(other), "--out", str(elsewhere)]).exit_code == 0
    )
    with pytest.raises(UsageError, match="was recombined from other runs"):
        query.load(ruled, recombine=elsewhere)
    both = query.load([ruled, other])
    said = " ".join(both.notes)
    assert "different Cartography files" in said and "ran without --flow-matrix" in said
    assert "sessions_consolidated is each run's own" in said
    assert query.load(ruled).notes == ()
    cartography.write_text(cartography.read_text() + "\n# edited after the run\n")
    assert any("changed since the run" in note for note in query.load(ruled).notes)


def test_the_data_end_past_year_9999_comes_from_its_microseconds(tmp_path: Path) -> None:
    """The manifest's end text is null past year 9999 (a damaged record's time) and its µs
    are kept; `last=` counted back from nothing and failed on such a run (an audit)."""
    run_dir = write_run(tmp_path / "run")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    end_us = (15760 - 1970) * 365 * 86_400 * 1_000_000
    manifest["data_window"].update({"end": None, "end_us": end_us})
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    run = query.load(run_dir)
    assert run.data_end is not None and run.data_end.year == 15750
    assert len(SessionQuery().last(3600).apply(run)) == 0  # every session ends long before
    # and the run says why (an audit: only a NaT warning went with the empty answer)
    assert any(
        "the data ends in year 15750" in note and "use window(start, end)" in note
        for note in run.notes
    )
    assert not any("data ends" in note for note in query.load(write_run(tmp_path / "r")).notes)


def test_loading_several_runs_says_sessions_are_each_runs_own(tmp_path: Path) -> None:
    """Over four slices' runs the seed's scans found 256 sessions where one run over the
    capture finds 1,986: each run's sessions are in that run's state. The note says so and
    names what asks the conversations (a review); the filters take `run.recombined`."""
    run = query.load([write_later_run(tmp_path / "later"), write_run(tmp_path / "early")])
    [note] = [n for n in run.notes if n.startswith("sessions are each run's own")]
    assert "apply(run, run.recombined)" in note
    assert run.recombined is not None
    view = query.SessionQuery().unmatched().apply(run, run.recombined)
    matched = set(run.matches["session_id"])
    assert len(view) > 0 and (view["state"] == "closed").all()
    assert not any(set(ids) & matched for ids in view["session_ids"])
    assert any(set(ids) & matched for ids in run.recombined["session_ids"])
    single = query.load(write_run(tmp_path / "single"))
    assert not any(n.startswith("sessions are each run's own") for n in single.notes)


def test_a_consolidated_table_of_an_earlier_version_is_loaded(
    fixtures: Path, tmp_path: Path
) -> None:
    """sessions_consolidated gained its rates in the forty-sixth session; a run written
    before was refused by load for the columns it lacks. Its rates come from the members,
    and a note says what its counters are."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    run_dir = tmp_path / "run"
    inputs = [str(fixtures / "sampled"), str(fixtures / "sf_v9_varsvc.pcap")]  # and one-way
    arguments = ["sessionize", *inputs, "--replay", "event", "-o", str(run_dir)]
    assert CliRunner().invoke(app, [*arguments, "-q"]).exit_code == 0
    written = query.load(run_dir, recombine=False)
    assert written.consolidated is not None
    assert (written.consolidated["sc_sampling_rate"] == 0).sum() > 0
    path = run_dir / "sessions_consolidated.parquet"
    rates = ["cs_sampling_rate", "sc_sampling_rate", "max_sampling_rate"]
    pq.write_table(pq.read_table(path).drop_columns(rates), path)
    earlier = query.load(run_dir, recombine=False)
    assert earlier.consolidated is not None
    largest = written.consolidated["max_sampling_rate"].tolist()
    assert sorted(set(largest)) == [1, 10]
    assert earlier.consolidated["max_sampling_rate"].tolist() == largest
    for side in ("cs", "sc"):
        silent = (written.consolidated[f"{side}_bytes"] == 0) & (
            written.consolidated[f"{side}_packets"] == 0
        )
        expected = [0 if quiet else rate for quiet, rate in zip(silent, largest, strict=True)]
        assert earlier.consolidated[f"{side}_sampling_rate"].tolist() == expected
    assert any("written by an earlier version" in note for note in earlier.notes)
    assert not any("earlier version" in note for note in written.notes)
    # the columns at their places, as written now (a mutation audit)
    assert list(earlier.consolidated.columns) == list(written.consolidated.columns)


def test_an_earlier_tables_rates_count_unknown_rates_as_counts() -> None:
    """A mutation audit: a member of rate 0 (unknown, as exporters send it) or not among
    the sessions fills rate 1, as sessionize writes such a session."""
    from obserae_forensics.query.run import _consolidated_rates

    consolidated = pd.DataFrame(
        {
            "session_ids": [["s1"], ["gone"], ["s1", "s2"]],
            "cs_bytes": [10, 10, 10],
            "cs_packets": [1, 1, 1],
            "sc_bytes": [0, 0, 5],
            "sc_packets": [0, 0, 1],
            "cs_sampling_rate": [0, 0, 0],
            "sc_sampling_rate": [0, 0, 0],
            "max_sampling_rate": [0, 0, 0],
        }
    )
    sessions = pd.DataFrame({"session_id": ["s1", "s2"], "sampling_rate": [0, 10]})
    assert _consolidated_rates(consolidated, sessions)
    assert consolidated["max_sampling_rate"].tolist() == [1, 1, 10]
    assert consolidated["cs_sampling_rate"].tolist() == [1, 1, 10]
    assert consolidated["sc_sampling_rate"].tolist() == [0, 0, 10]
    assert not _consolidated_rates(consolidated, sessions)  # filled: nothing more to do
