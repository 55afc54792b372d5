"""Behaviour of the query API (load, rematch, the drawer, the plots) and of the CLI's
show, inspect and summary that no test pinned, found by a mutation audit (the thirty-fifth
session's: 83 small changes to query/run.py, drawer.py, plots.py and cli.py, 45 of which no
test noticed; 36 were real gaps, killed here and one in test_drawer.py, D07). Left: 6
changes with no effect on any table the tool writes (fragments and consolidated rows come
ordered and unique, rates are at least 1, ids are unique across runs), the 5% bins of the
coherence histogram, the bin cap's exact bound (a plot of 100,000 bars, too slow for a
test), and the note on a data end in year 9999, which is given only past it. Each test
fails with its change applied and names it. The filters' own are in
tests/test_mutation_audit.py."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.patches import Rectangle
from typer.testing import CliRunner

from obserae_forensics import query
from obserae_forensics.cli import _cell, _print_problems, app, eviction_hint
from obserae_forensics.errors import MalformedInput, UsageError
from obserae_forensics.pipeline import SessionizeResult
from obserae_forensics.query import plots
from obserae_forensics.query.run import to_frame
from obserae_forensics.report import RunReport
from obserae_forensics.tables.manifest import sha256_file
from obserae_forensics.times import SHOWABLE_MAX_US, SHOWABLE_MIN_US

from .run_dirs import CARTOGRAPHY, FLOW_MATRIX, session_rows, write_later_run, write_run

# --- query/run.py ----------------------------------------------------------------------


def test_several_runs_span_from_the_earliest_start_to_the_latest_end(tmp_path: Path) -> None:
    """Kills R01 (`data_start` the latest start) and R25 (the joint window's end its start):
    the joint manifest of several runs is what a report cites for the data examined."""
    run = query.load([write_later_run(tmp_path / "later"), write_run(tmp_path / "early")])
    assert run.data_start == pd.Timestamp("2024-03-01T08:45:00Z")
    assert run.manifest["data_window"] == {
        "start": "2024-03-01T08:45:00Z",
        "end": "2024-03-01T14:00:00Z",
    }


def test_one_run_directory_under_two_names_is_refused_as_given_twice(tmp_path: Path) -> None:
    """Kills R03 (paths compared as spelt, not resolved): a run named through two links is
    the same run; refused as such, not as an unexplained repeated session id."""
    run_dir = write_run(tmp_path / "run")
    for name in ("one", "two"):
        (tmp_path / name).symlink_to(run_dir)
    with pytest.raises(UsageError, match="given twice"):
        query.load([tmp_path / "one", tmp_path / "two"])


def test_flows_holding_more_records_than_the_sessions_count_are_refused(tmp_path: Path) -> None:
    """Kills R06 (only a flows table short of records refused): one with a record too many
    (a row copied in, or another run's) made the drawer list a record the session never
    had."""
    run_dir = write_run(tmp_path / "run")
    flows = pq.read_table(run_dir / "flows.parquet")
    pq.write_table(pa.concat_tables([flows, flows.slice(0, 1)]), run_dir / "flows.parquet")
    with pytest.raises(UsageError, match=rf"holds {flows.num_rows + 1} flow record\(s\)"):
        query.load(run_dir, recombine=False)


def test_rematch_of_several_runs_names_the_run_of_each_match(tmp_path: Path) -> None:
    """Kills R08 (rematch's matches without their `run`): loaded together, every table
    carries the run each row came from, the new matches too."""
    run = query.load([write_run(tmp_path / "early"), write_later_run(tmp_path / "later")])
    (tmp_path / "m.yaml").write_text(FLOW_MATRIX)
    matches = query.rematch(run, tmp_path / "m.yaml").matches
    assert matches is not None and len(matches)
    later = matches["session_id"].str.startswith("later-")
    assert matches.loc[later, "run"].eq(1).all() and matches.loc[~later, "run"].eq(0).all()


def test_the_first_and_last_showable_microseconds_are_shown() -> None:
    """Kills R11 and R12 (`<` / `>` to `<=` / `>=` at years 1 and 9999): the bounds
    themselves are times pandas holds; only beyond them does a time load as NaT."""
    times = pa.array(
        [SHOWABLE_MIN_US - 1, SHOWABLE_MIN_US, SHOWABLE_MAX_US, SHOWABLE_MAX_US + 1],
        pa.timestamp("us", tz="UTC"),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = to_frame(pa.table({"t": times}))
    assert frame["t"].isna().tolist() == [True, False, False, True]
    assert [str(w.message) for w in caught] == [
        "time(s) outside years 1-9999, shown as NaT (damaged time fields; the Parquet "
        "tables keep them): 2 in t"
    ]


def test_a_recombination_of_fewer_or_of_more_runs_is_refused(tmp_path: Path) -> None:
    """Kills R14 and R15 (a recombine directory refused only for sessions it lacks, or only
    for fragments of no loaded session): either way its conversations are not those of the
    runs loaded."""
    early, later = write_run(tmp_path / "early"), write_later_run(tmp_path / "later")
    of_early, of_both = tmp_path / "of_early", tmp_path / "of_both"
    for out, runs in ((of_early, [early]), (of_both, [early, later])):
        result = CliRunner().invoke(app, ["recombine", *map(str, runs), "--out", str(out)])
        assert result.exit_code == 0, result.output
    with pytest.raises(UsageError, match=r": 0 of its fragment.* and 9 of their session"):
        query.load([early, later], recombine=of_early)
    with pytest.raises(UsageError, match=r": 9 of its fragment.* and 0 of their session"):
        query.load(early, recombine=of_both)
    assert len(query.load([early, later], recombine=of_both).fragments) == 18


def test_runs_all_made_without_a_flow_matrix_get_no_note_that_one_lacks_it(
    tmp_path: Path,
) -> None:
    """Kills R17 (`len(without) < len(paths)` to `<=`): the note says that some runs'
    sessions count as unmatched beside others' matches; with no Flow Matrix anywhere there
    is nothing to tell apart, and a note naming every run was noise."""
    runs = [write_run(tmp_path / "early", with_matches=False), write_later_run(tmp_path / "l")]
    for run_dir in runs:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        manifest["flow_matrix"] = None
        (run_dir / "manifest.json").write_text(json.dumps(manifest))
        (run_dir / "session_matches.parquet").unlink(missing_ok=True)
    notes = " ".join(query.load(runs).notes)
    assert "sessions_consolidated is each run's own" in notes
    assert "ran without --flow-matrix" not in notes


@pytest.mark.parametrize(
    ("cited", "absolute"),
    [("no/such/c.yaml", "case/rules/c.yaml"), ("rules/c.yaml", "/old/machine/rules/c.yaml")],
)
def test_a_rules_file_is_found_by_its_absolute_path_or_from_the_run_directory(
    tmp_path: Path, cited: str, absolute: str
) -> None:
    """Kills R20 (the manifest's absolute path never tried) and R21 (a relative path tried
    from the current directory only). A run made with a relative `--cartography`, loaded
    from elsewhere: the relative path leads nowhere from there, the absolute one still
    names the file. A case folder copied to another machine: the absolute path is the old
    machine's, and the relative one is found from the run directory's ancestors."""
    case = tmp_path / "case"
    run_dir = write_run(case / "runs" / "monday")
    chart = case / "rules" / "c.yaml"
    chart.parent.mkdir()
    chart.write_text(CARTOGRAPHY.replace("hosts:\n", "hosts:\n  vault: 10.9.9.9\n", 1))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["cartography"] = {
        "path": cited,
        "absolute": str(tmp_path / absolute),
        "sha256": sha256_file(chart),
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    run = query.load(run_dir, recombine=False)
    assert run.cartography.path == chart and run.cartography.kinds["vault"] == "host"
    assert run.notes == ()


def test_runs_first_arriving_together_are_ordered_by_their_windows_start(tmp_path: Path) -> None:
    """Kills R23 (the window's start and end swapped in the order key): runs whose first
    records arrived in one millisecond go by where their data begins, as recombine orders
    them, so that a Run's `run` numbers name the runs recombine's `run_index` names."""
    rows = session_rows()
    for row in rows:
        row["session_id"] = "inner-" + row["session_id"]
        row["conversation_id"] = "inner-" + row["conversation_id"]
    outer = write_run(tmp_path / "outer", data_end="2024-03-01T14:00:00Z")
    inner = write_run(tmp_path / "inner", sessions=rows, data_end="2024-03-01T12:00:00Z")
    manifest = json.loads((inner / "manifest.json").read_text())
    manifest["data_window"]["start"] = "2024-03-01T09:00:00Z"
    (inner / "manifest.json").write_text(json.dumps(manifest))
    run = query.load([inner, outer])
    assert run.paths == (outer, inner)
    assert run.fragments is not None
    assert set(run.fragments.loc[run.fragments["run_index"] == 0, "session_id"]) == set(
        run.sessions.loc[run.sessions["run"] == 0, "session_id"]
    )


# --- query/drawer.py -------------------------------------------------------------------


def _host_to_itself() -> list[dict[str, Any]]:
    """The hand-made sessions with s1 from 10.0.0.42:53124 to 10.0.0.42:443, the client on
    side b: its 5000 bytes (ba) went client to server, its 1000 (ab) back."""
    rows = session_rows()
    rows[0].update(ip_a="10.0.0.42", port_a=443, ip_b="10.0.0.42", port_b=53124)
    rows[0].update(client_ip="10.0.0.42", client_port=53124)
    rows[0].update(server_ip="10.0.0.42", server_port=443)
    return rows


def test_a_host_talking_to_itself_has_its_client_told_by_the_port(tmp_path: Path) -> None:
    """Kills D01 (the client side told by its address alone): when both ends share an
    address (a host to itself, a NAT hairpin) only the port says which side is the client;
    told by the address, the summary gave the server's bytes as the client's."""
    run = query.load(write_run(tmp_path / "run", sessions=_host_to_itself()), recombine=False)
    assert query.drawer(run, "s1").summary().splitlines()[1:3] == [
        "client 10.0.0.42:53124 -> server 10.0.0.42:443 TCP "
        "(server side by tcp_syn, confidence 0.95)",
        "duration 38s, 5.0 KB client->server (4 packets), 1.0 KB server->client (3 packets)",
    ]


def test_counters_scaled_by_a_1_in_2_source_are_said_to_be_estimates(tmp_path: Path) -> None:
    """Kills D04 (`rate > 1` to `> 2` for counters the source scaled): 1 in 2 is sampling
    too; the reader must know the counters are estimates."""
    rows = session_rows()
    rows[1].update(sampling_rate=2, counters_scaled=True)
    run = query.load(write_run(tmp_path / "run", sessions=rows), recombine=False)
    assert query.drawer(run, "s2").summary().splitlines()[3] == (
        "sampled 1 in 2: the counters above are already scaled by the source (estimates of "
        "the traffic)"
    )


def test_the_summary_numbers_fragments_from_zero_and_only_of_split_conversations(
    tmp_path: Path,
) -> None:
    """Kills D05 (`len(fragments) > 1` to `>= 1`) and D06 (the place off by one): the
    second fragment is "fragment 1 (fragments 0 to 1)", numbered from 0 as fragment_index
    and the seed's session.split are (it said "2 of 2" until a review), and a session
    never cut is no fragment at all."""
    run = query.load(write_run(tmp_path / "run"))
    assert "fragment 1 (fragments 0 to 1) of conversation" in query.drawer(run, "s5b").summary()
    assert "fragment" not in query.drawer(run, "s1").summary()


@pytest.mark.parametrize(("records", "shown"), [(50, 50), (51, 50), (52, 50)])
def test_the_html_drawer_shows_fifty_records_and_says_how_many_more(
    tmp_path: Path, records: int, shown: int
) -> None:
    """Kills D08 (49 records shown) and D09 (one record more left unsaid): a notebook's
    drawer shows the first 50 flow records and says how many it did not show."""
    run = query.load(write_run(tmp_path / "run"), recombine=False)
    one = run.flows.loc[run.flows["session_id"] == "s1"].iloc[[0]]
    flows = pd.concat([one] * records, ignore_index=True)
    html = query.drawer(replace(run, flows=flows), "s1")._repr_html_()
    table = html.split(f"<h4>flow records ({records})</h4>")[1]
    assert table.count("<tr") == 1 + shown  # its header row, then the records
    more = records - shown
    assert (f"… {more} more in <code>.flows</code>" in html) == bool(more)
    assert ("more in" in html) == bool(more)


def test_the_drawer_lists_rules_in_the_flow_matrix_order(tmp_path: Path) -> None:
    """Kills D10 (matches left in the table's order): a session matching two rules shows
    them as the Flow Matrix lists them (its `rule_index`), whatever order the matches
    table holds them in, as `matched_rules` does."""
    rows = session_rows()
    rows[0]["matched_rules"] = ["lan-dns", "web-to-api"]  # written in this order
    run = query.load(write_run(tmp_path / "run", sessions=rows), recombine=False)
    found = query.drawer(run, "s1")
    assert found.matches["rule"].tolist() == ["web-to-api", "lan-dns"]
    assert "matched rules: web-to-api, lan-dns" in found.summary()


def test_without_recombination_fragments_come_in_split_order(tmp_path: Path) -> None:
    """Kills D13 (the fallback's fragments left in the table's order): a sessions table
    holding a conversation's second fragment first still shows it second."""
    rows = session_rows()
    first, second = (
        [r["session_id"] for r in rows].index("s5a"),
        [r["session_id"] for r in rows].index("s5b"),
    )
    rows[first], rows[second] = rows[second], rows[first]
    run = query.load(write_run(tmp_path / "run", sessions=rows), recombine=False)
    assert query.drawer(run, "s5a").fragments["session_id"].tolist() == ["s5a", "s5b"]


# --- query/plots.py --------------------------------------------------------------------


def _two_records_an_hour_apart(run: query.Run, reverse_octets: int = 0) -> query.Run:
    """s1's first record twice, at 10:00 and at 11:00, with `reverse_octets` besides."""
    one = run.flows.loc[run.flows["session_id"] == "s1"].iloc[[0, 0]].reset_index(drop=True)
    one["first_seen"] = pd.to_datetime(["2024-03-01T10:00:00Z", "2024-03-01T11:00:00Z"])
    one["reverse_octets"] = reverse_octets
    return replace(run, flows=one)


def test_an_hour_of_records_is_drawn_in_sixty_bins_of_a_minute(tmp_path: Path) -> None:
    """Kills P01 (`span / width <= 60` to `<`): the default width is the smallest round one
    giving at most 60 bins; an hour is exactly 60 minutes, not 30 bins of two."""
    run = _two_records_an_hour_apart(query.load(write_run(tmp_path / "run"), recombine=False))
    axes = plots.traffic_over_time(run)
    assert axes.get_ylabel() == "bytes per 1 min"
    plt.close("all")


def test_traffic_over_time_counts_a_biflow_records_reverse_bytes(tmp_path: Path) -> None:
    """Kills P04 (only `octets` drawn): a bidirectional (IPFIX biflow) record carries the
    answer's bytes in `reverse_octets`; left out, an answered download drew as its
    request."""
    run = query.load(write_run(tmp_path / "run"), recombine=False)
    biflow = _two_records_an_hour_apart(run, reverse_octets=7_000)
    axes = plots.traffic_over_time(biflow)
    drawn = sum(p.get_height() for p in axes.patches if isinstance(p, Rectangle))
    assert drawn == pytest.approx(float(biflow.flows["octets"].sum()) + 14_000)
    plt.close("all")


def test_coherence_of_exactly_90_is_not_below_90() -> None:
    """Kills P09 (`< 90` to `<= 90`): the title counts the conversations whose exporters
    disagree by more than 10%; one at exactly 90% is at the line, not below it."""
    consolidated = pd.DataFrame(
        {
            "coherence_pct": [90.0, 89.9, 100.0],
            "sampler_count": [2, 2, 2],
            "max_sampling_rate": [1, 1, 1],
        }
    )
    axes = plots.coherence_histogram(consolidated)
    assert axes.get_title() == "multi-exporter coherence: 1 of 3 counted below 90%"
    plt.close("all")


def test_traffic_by_rule_goes_to_all_of_a_sessions_rules(tmp_path: Path) -> None:
    """Kills P12 (a session's last matching rule): as plots.py says, each record's bytes are
    labelled with the rules its session matched, in the Flow Matrix order (its first rule
    alone gave rule order a priority the README denies: a review)."""
    rows = session_rows()
    rows[0]["matched_rules"] = ["web-to-api", "lan-dns"]
    run = query.load(write_run(tmp_path / "run", sessions=rows), recombine=False)
    chosen = run.sessions.loc[run.sessions["session_id"] == "s1"]
    axes = plots.traffic_over_time(run, by="rule", sessions=chosen)
    assert [t.get_text().split(" (")[0] for t in axes.get_legend().get_texts()] == [
        "web-to-api + lan-dns"
    ]
    plt.close("all")


def test_a_width_that_is_no_whole_unit_is_given_in_seconds(tmp_path: Path) -> None:
    """Kills P13 (minutes or hours whenever the width reaches one): 90 s is no whole number
    of minutes; the axis said "bytes per 1.5 min"."""
    run = _two_records_an_hour_apart(query.load(write_run(tmp_path / "run"), recombine=False))
    assert plots.traffic_over_time(run, bin_s=90).get_ylabel() == "bytes per 90 s"
    assert plots.traffic_over_time(run, bin_s=7200).get_ylabel() == "bytes per 2 h"
    plt.close("all")


def test_traffic_of_a_selection_counts_its_own_records_in_the_title(tmp_path: Path) -> None:
    """Kills P17 (every flow record drawn, whatever the selection): the other sessions'
    bytes fell out for want of a label, but the title counted all the run's records."""
    run = query.load(write_run(tmp_path / "run"), recombine=False)
    chosen = run.sessions.loc[run.sessions["session_id"].isin(["s1", "s2"])]
    title = plots.traffic_over_time(run, sessions=chosen).get_title()
    assert title.endswith(", 4 flow records)"), title
    plt.close("all")


# --- cli.py: show ----------------------------------------------------------------------


def _show(run_dir: Path, *arguments: str) -> list[str]:
    result = CliRunner().invoke(app, ["show", str(run_dir), *arguments])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_show_tells_the_client_side_by_its_port_when_both_ends_share_an_address(
    tmp_path: Path,
) -> None:
    """Kills S01 (`show` tells a client on side a by its address alone): cs_bytes is the
    client's, and a host talking to itself has the client on side b here."""
    run_dir = write_run(tmp_path / "run", sessions=_host_to_itself())
    lines = _show(run_dir, "--columns", "session_id,cs_bytes,sc_bytes")
    assert lines[1].split() == ["s1", "5000", "1000"]


def test_show_tells_counters_the_source_scaled_from_those_to_scale(tmp_path: Path) -> None:
    """Kills S03 (every row of a rate above 1 called sampled): counters the exporter
    already scaled (`counters_scaled`) are the traffic's estimates; the view said to
    multiply them by the rate again. They show their rate, said to be an estimate (a
    review: nfcapd's 45,000,000 bytes of one sampled packet read as measured)."""
    rows = session_rows()
    rows[0].update(sampling_rate=100, counters_scaled=True)
    lines = _show(write_run(tmp_path / "run", sessions=rows))
    assert "sampling_rate" in lines[0].split()
    assert not any("multiply by sampling_rate" in line for line in lines)
    assert any("multiplied by it already (nfcapd does): an estimate" in line for line in lines)


@pytest.mark.parametrize(
    ("evicting", "named"),
    [(3, "10.0.0.1, 10.0.0.2, 10.0.0.3)"), (4, "10.0.0.1, 10.0.0.2, 10.0.0.3 ...)")],
)
def test_the_cap_hint_names_three_exporters_that_evicted_and_marks_more(
    tmp_path: Path, evicting: int, named: str
) -> None:
    """Kills S08 (" ..." after exactly three), S09 (two named) and S10 (every exporter of
    the pressure counts, whether it evicted or not): the summary names the exporters that
    reached the cap, the first three of them, and says when there are more."""
    pressure = {f"10.0.0.{n}": {"evictions": 5 if n <= evicting else 0} for n in range(1, 7)}
    result = SessionizeResult(
        out=tmp_path,
        close_reasons=Counter(evicted=5 * evicting),
        manifest={"counts": {"session_pressure": pressure}},
    )
    hint = eviction_hint(result, 0.5)
    assert hint is not None
    assert f"{evicting} exporter(s) reached it: {named}, close_reason evicted" in hint


def test_show_refuses_a_limit_of_no_rows(tmp_path: Path) -> None:
    """Kills S13 (`--limit` from 0): a view of no rows is a mistaken option, refused with
    exit code 2 as every usage error is."""
    result = CliRunner().invoke(app, ["show", str(write_run(tmp_path / "run")), "--limit", "0"])
    assert result.exit_code == 2 and "--limit" in result.output


@pytest.mark.parametrize(("problems", "more"), [(5, ""), (6, "  ... 1 more example(s) in X\n")])
def test_the_summary_says_more_only_when_problems_were_left_unshown(
    capsys: pytest.CaptureFixture[str], problems: int, more: str
) -> None:
    """Kills S14 (`len(examples) > shown` to `>=`): five problems shown of five is all of
    them; "... 0 more example(s)" sent a reader to the manifest for nothing."""
    report = RunReport()
    for offset in range(problems):
        report.skip(MalformedInput("bad", source="f.pcap", offset=offset, reason="bad_thing"))
    _print_problems(report, "X")
    err = capsys.readouterr().err
    assert err.count("  bad_thing: ") == 5
    assert err.endswith(more or "f.pcap@4: bad\n"), err


def test_inspect_gives_export_times_to_the_second() -> None:
    """Kills S15 (inspect's times to the minute): an exporter's first and last export are
    what a responder lines up against other logs; the minute alone hid an hour of 59 s."""
    assert _cell(datetime(2024, 3, 1, 10, 0, 38, tzinfo=UTC)) == "2024-03-01 10:00:38"
