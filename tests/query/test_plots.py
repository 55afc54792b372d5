"""Plot helpers draw what the tables say: bar heights, fragment bars, heatmap cells (Agg)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.patches import Rectangle

from obserae_forensics import query
from obserae_forensics.errors import UsageError
from obserae_forensics.query import plots

from .run_dirs import write_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> query.Run:
    return query.load(write_run(tmp_path_factory.mktemp("run") / "hand"))


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def bar_total(axes: plt.Axes) -> float:
    return float(sum(p.get_height() for p in axes.patches if isinstance(p, Rectangle)))


def test_traffic_by_state_conserves_bytes(run: query.Run, tmp_path: Path) -> None:
    axes = plots.traffic_over_time(run)
    total = float((run.sessions["ab_bytes"] + run.sessions["ba_bytes"]).sum())
    assert bar_total(axes) == pytest.approx(total)
    labels = [t.get_text() for t in axes.get_legend().get_texts()]
    assert [label.split()[0] for label in labels] == ["closed", "active", "half_open"]
    plots.figure_of(axes).savefig(tmp_path / "traffic.png")
    assert (tmp_path / "traffic.png").stat().st_size > 1000


def test_traffic_by_rule_labels_sessions_without_a_rule(run: query.Run) -> None:
    axes = plots.traffic_over_time(run, by="rule", bin_s=3600)
    labels = [t.get_text().split(" (")[0] for t in axes.get_legend().get_texts()]
    assert labels == ["db-access", "lan-dns", "web-to-api", "no rule"]
    assert axes.get_ylabel() == "bytes per 1 h"


def test_traffic_of_a_selection_only(run: query.Run) -> None:
    scans = query.SessionQuery().close_reason("no_reply", "rejected").apply(run)
    axes = plots.traffic_over_time(run, sessions=scans)
    assert bar_total(axes) == pytest.approx(float((scans["ab_bytes"] + scans["ba_bytes"]).sum()))
    with pytest.raises(UsageError, match="'state' or 'rule'"):
        plots.traffic_over_time(run, by="exporter")


def test_fragment_timeline_has_one_bar_per_fragment(run: query.Run) -> None:
    axes = plots.fragment_timeline(run, "s5a")  # a conversation id works as well as a session
    assert [t.get_text() for t in axes.get_yticklabels()] == [
        "split 0 · 192.0.2.1",
        "split 1 · 192.0.2.1",
    ]
    assert "2 fragment(s), 4 flow records" in axes.get_title()
    with pytest.raises(UsageError, match="no session or conversation"):
        plots.fragment_timeline(run, "nope")


def test_heatmap_cells_are_client_server_byte_totals(run: query.Run) -> None:
    axes = plots.talker_heatmap(run.sessions, top=2)
    assert [t.get_text() for t in axes.get_yticklabels()] == ["10.0.0.99", "10.0.0.42"]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["10.0.10.12", "10.1.0.5"]
    grid = axes.get_images()[0].get_array()
    # 10.0.0.99 -> 10.0.10.12: s4 (4000 + 5000) and s8 (9000 + 5000); 10.0.0.42 -> api: s1
    assert grid[0, 0] == 23000 and grid[1, 0] == 6000
    assert np.ma.is_masked(grid[0, 1]) or np.isnan(grid[0, 1])
    counted = plots.talker_heatmap(run.sessions, value="sessions").get_images()[0].get_array()
    assert np.nansum(counted.filled(np.nan) if np.ma.isMaskedArray(counted) else counted) == 9
    # sampled sessions count as the traffic they stand for, as traffic_over_time and the
    # consolidated table count them, but not twice when the source scaled them (an audit)
    sampled = run.sessions.copy()
    sampled.loc[sampled["session_id"] == "s4", "sampling_rate"] = 10
    sampled.loc[sampled["session_id"] == "s8", ["sampling_rate", "counters_scaled"]] = [10, True]
    grid = plots.talker_heatmap(sampled, top=2).get_images()[0].get_array()
    assert grid[0, 0] == 9000 * 10 + 14000 and grid[1, 0] == 6000


def test_coherence_histogram_splits_single_and_multi_exporter(run: query.Run) -> None:
    axes = plots.coherence_histogram(run.consolidated)
    assert bar_total(axes) == len(run.sessions)
    assert "one exporter only" in axes.get_title()
    multi = run.consolidated.copy()
    multi.loc[:3, "sampler_count"] = 2
    multi.loc[:1, "coherence_pct"] = 40.0
    axes = plots.coherence_histogram(multi)
    assert axes.get_title() == "multi-exporter coherence: 2 of 4 counted below 90%"
    assert "no consolidated" in plots.coherence_histogram(None).get_title()


def test_coherence_histogram_sets_sampled_estimates_apart(run: query.Run) -> None:
    """Found by a review: real 1:10 sampling beside an unsampled export of the same traffic
    gives coherence far below 90 % on small conversations, and the title read it as
    devices that disagree."""
    multi = run.consolidated.copy()
    multi.loc[:3, "sampler_count"] = 2
    multi.loc[:3, "coherence_pct"] = [40.0, 40.0, 95.0, 20.0]
    multi.loc[2:3, "max_sampling_rate"] = 10
    axes = plots.coherence_histogram(multi)
    assert bar_total(axes) == len(run.sessions)
    assert axes.get_title() == (
        "multi-exporter coherence: 2 of 2 counted below 90%; 2 compare sampled estimates"
    )
    labels = axes.get_legend_handles_labels()[1]
    assert "several exporters, some sampling: estimates (2)" in labels
    earlier = multi.drop(columns=["cs_sampling_rate", "sc_sampling_rate", "max_sampling_rate"])
    assert (
        plots.coherence_histogram(earlier)
        .get_title()
        .endswith("; sampling unknown (an earlier version's table: query.load tells it)")
    )
    plt.close("all")


def test_arguments_that_cannot_make_a_plot_are_usage_errors(run: query.Run) -> None:
    """Found by fuzzing: bin_s=0 divided by zero, bin_s=1e-9 asked for exabytes, top=0 and
    sessions of no bytes (akvorado's NAT-event capture) hit an empty array, last=1e30
    overflowed pandas."""
    for bin_s in (0, -5, float("nan"), float("inf"), 1e-9):
        with pytest.raises(UsageError, match="bin_s"):
            plots.traffic_over_time(run, bin_s=bin_s)
    with pytest.raises(UsageError, match="top=0"):
        plots.talker_heatmap(run.sessions, top=0)
    silent = run.sessions.assign(ab_bytes=0, ba_bytes=0)
    assert "sent no bytes" in plots.talker_heatmap(silent).get_title()
    for seconds in (float("nan"), float("inf"), 1e30, -1):
        with pytest.raises(UsageError, match="last="):
            query.SessionQuery().last(seconds).apply(run)


def test_plots_of_records_whose_times_are_not_showable(run: query.Run) -> None:
    """Found by an audit: on a run whose record had a damaged time past year 9999 (loaded
    as NaT), traffic_over_time raised "cannot convert float NaN to integer" and
    fragment_timeline a TypeError."""
    flows = run.flows.copy()
    flows["first_seen"] = flows["first_seen"].where(flows["session_id"] != "s1")
    some = replace(run, flows=flows)
    title = plots.traffic_over_time(some).get_title()
    assert "16 flow records; 2 outside years 1-9999 left out)" in title
    none = replace(run, flows=flows.assign(first_seen=pd.NaT))
    assert (
        "no flow records of a showable time (18 outside years 1-9999)"
        in plots.traffic_over_time(none).get_title()
    )
    sessions = run.sessions.copy()
    sessions["opened_at"] = sessions["opened_at"].where(sessions["session_id"] != "s1")
    axes = plots.fragment_timeline(replace(some, sessions=sessions), "s1")
    assert "1 fragment(s), 2 flow records" in axes.get_title()


def test_the_bin_cap_allows_exactly_max_bins(
    run: query.Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cap refuses more than MAX_BINS bins, not MAX_BINS itself: a width of a quarter
    of the span, under a cap of 4, draws; the next float down is refused. (The cap was
    only ever tried with 1e-9 over a day, which no bound of it would let through.)"""
    monkeypatch.setattr(plots, "MAX_BINS", 4)
    first_seen = run.flows["first_seen"]
    span_s = max((first_seen.max() - first_seen.min()).total_seconds(), 1.0)
    width_s = span_s / 4  # a power of two: span_s / width_s is exactly 4
    axes = plots.traffic_over_time(run, bin_s=width_s)
    assert bar_total(axes) == pytest.approx(
        float((run.sessions["ab_bytes"] + run.sessions["ba_bytes"]).sum())
    )
    with pytest.raises(UsageError, match=r"at most 4$"):
        plots.traffic_over_time(run, bin_s=float(np.nextafter(width_s, 0)))


def _spread_one_by_one(
    first_s: np.ndarray, last_s: np.ndarray, amount: np.ndarray, width_s: float, bins: int
) -> np.ndarray:
    """The reference: each record's share of each bin as the overlap of its span with the bin."""
    total = np.zeros(bins)
    for first, last, value in zip(first_s, last_s, amount, strict=True):
        if last == first:
            total[int(first // width_s)] += value
            continue
        for index in range(bins):
            overlap = min(last, (index + 1) * width_s) - max(first, index * width_s)
            total[index] += value * max(overlap, 0.0) / (last - first)
    return total


@given(
    st.lists(
        st.tuples(
            st.floats(0, 1000), st.floats(0, 1000), st.floats(0, 1e12, allow_subnormal=False)
        ),
        max_size=30,
    ),
    st.sampled_from([1.0, 7.5, 60.0, 1500.0]),
)
def test_spreading_a_record_over_bins_is_its_overlap_with_each(
    records: list[tuple[float, float, float]], width_s: float
) -> None:
    first_s = np.array([min(a, b) for a, b, _ in records])
    last_s = np.array([max(a, b) for a, b, _ in records])
    amount = np.array([value for _, _, value in records])
    bins = int(max(last_s.max(), first_s.max()) // width_s) + 1 if records else 1
    spread = plots.spread_over_bins(first_s, last_s, amount, width_s, bins)
    reference = _spread_one_by_one(first_s, last_s, amount, width_s, bins)
    assert spread.shape == (1, bins)
    assert spread[0] == pytest.approx(reference, rel=1e-9, abs=1e-3)
    assert spread.sum() == pytest.approx(amount.sum(), rel=1e-12, abs=1e-3)
    # in groups, each group's row is its own records' spread
    group = np.arange(len(records)) % 3
    grouped = plots.spread_over_bins(first_s, last_s, amount, width_s, bins, group, 3)
    for index in range(3):
        mine = group == index
        alone = _spread_one_by_one(first_s[mine], last_s[mine], amount[mine], width_s, bins)
        assert grouped[index] == pytest.approx(alone, rel=1e-9, abs=1e-3)


def test_a_long_record_is_drawn_across_the_minutes_it_lasted(run: query.Run) -> None:
    """A 30-minute record (softflowd's active timeout) of 1.8 MB: 60 kB in each minute from
    10:00 to 10:30, where it drew 1.8 MB in the 10:00 bar and nothing after."""
    one = run.flows.loc[run.flows["session_id"] == "s1"].iloc[[0]].reset_index(drop=True)
    one["first_seen"] = pd.to_datetime(["2024-03-01T10:00:00Z"])
    one["last_seen"] = pd.to_datetime(["2024-03-01T10:30:00Z"])
    one["octets"], one["reverse_octets"] = 1_800_000, 0
    axes = plots.traffic_over_time(replace(run, flows=one), bin_s=60)
    heights = [p.get_height() for p in axes.patches if isinstance(p, Rectangle)]
    assert heights == pytest.approx([60_000.0] * 30)


def test_a_record_lasting_years_is_drawn_over_its_first_day(run: query.Run) -> None:
    """A review: a damaged end ten years on stretched the axis to 1,464-hour bars, the
    traffic in one, and with bin_s=60 refused as millions of bins. A record is drawn over
    at most its first day, and the title says how many were."""
    two = run.flows.loc[run.flows["session_id"] == "s1"].iloc[[0, 0]].reset_index(drop=True)
    two["first_seen"] = pd.to_datetime(["2024-03-01T10:00:00Z", "2024-03-01T10:30:00Z"])
    two["last_seen"] = pd.to_datetime(["2034-03-01T10:00:00Z", "2024-03-01T10:31:00Z"])
    two["octets"], two["reverse_octets"] = 86_400, 0
    axes = plots.traffic_over_time(replace(run, flows=two), bin_s=60)
    heights = [p.get_height() for p in axes.patches if isinstance(p, Rectangle)]
    assert len(heights) == 1440 and sum(heights) == pytest.approx(2 * 86_400)
    assert heights[0] == pytest.approx(60.0)
    assert "1 lasting over a day drawn over their first day" in axes.get_title()


def test_spreading_many_groups_in_blocks_gives_the_same_bins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many labels over fine bins are spread a block of groups at a time, to bound memory
    (a review: 200 rules over a day of 1 s bins took twice the memory in one pass); the
    bins are the same as in one pass."""
    rng = np.random.default_rng(7)
    first_s = rng.uniform(0, 500, 2_000)
    last_s = first_s + rng.exponential(30, 2_000)
    amount = rng.uniform(0, 1e6, 2_000)
    group = rng.integers(0, 9, 2_000)
    bins = int(last_s.max() // 2.0) + 1
    whole = plots.spread_over_bins(first_s, last_s, amount, 2.0, bins, group, 9)
    monkeypatch.setattr(plots, "SPREAD_CELLS", 2 * (bins + 1))  # blocks of two groups
    blocked = plots.spread_over_bins(first_s, last_s, amount, 2.0, bins, group, 9)
    assert blocked == pytest.approx(whole, rel=1e-12, abs=1e-6)


def test_plots_say_when_they_add_exporters(fixtures: Path, tmp_path: Path) -> None:
    """Found by a review: over several exporters of the same traffic the plots drew each
    exporter's copy, without a word (a 64 KB conversation drawn as 876 KB)."""
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    out = tmp_path / "run"
    arguments = ["sessionize", str(fixtures / "sampled"), "--replay", "event", "-o", str(out)]
    assert CliRunner().invoke(app, [*arguments, "-q"]).exit_code == 0
    run = query.load(out, recombine=False)
    title = plots.traffic_over_time(run).get_title()
    assert "\n2 exporters added: what several saw is drawn once by each" in title
    core = query.SessionQuery().exporter("192.0.2.62").apply(run)
    axes = plots.traffic_over_time(run, sessions=core)
    assert "exporters added" not in axes.get_title()
    assert bar_total(axes) == pytest.approx(638_797)
    assert "\n2 exporters added" in plots.talker_heatmap(run.sessions).get_title()
    # the consolidated table: each conversation once, its counters one exporter's
    axes = plots.talker_heatmap(run.consolidated, top=1000)
    assert "exporters added" not in axes.get_title()
    assert float(np.nansum(axes.get_images()[0].get_array().filled(np.nan))) == 638_797
    title = plots.talker_heatmap(run.consolidated, value="sessions").get_title()
    assert "by conversations" in title
    plt.close("all")
