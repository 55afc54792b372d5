"""Plots for a post-event review (matplotlib): traffic over time, fragments, talkers, coherence.

Every helper takes a Run (or one of its frames), draws on the Axes it is given or on a new
figure, and returns the Axes, so a notebook can arrange several and a test can inspect the
artists. Times are drawn in UTC with the zone named on the axis.

The surprising thing: traffic over time is drawn from the flow records, not the sessions.
A session holds its bytes from `opened_at` to `last_seen_at`, so binning sessions by their
opening piles a two-hour database session's bytes into its first minute; the records
behind it were exported along the way and land where the bytes went. Each record's bytes
(both directions, scaled by its sampling rate unless the source already scaled them) are
spread evenly over its `first_seen`..`last_seen`, labelled with its session's state or the
rules it matched: a record is itself a summary, and an exporter's active timeout (30 min for
softflowd and many routers) put a half-hour transfer's bytes in one minute's bar before.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..errors import UsageError
from .drawer import drawer, human_bytes
from .run import Run

if TYPE_CHECKING:
    from matplotlib.ticker import Formatter, Locator

    # matplotlib.dates has no type hints (matplotlib's other modules have): the names used
    # here, as they are called
    def date2num(d: Any) -> Any: ...  # a float for a datetime, an array for many

    def AutoDateLocator() -> Locator: ...

    def ConciseDateFormatter(locator: Locator) -> Formatter: ...
else:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num

# bin widths a person would choose, seconds
NICE_BINS_S = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
)
TARGET_BINS = 60
MAX_BINS = 100_000  # a bin_s that asks for more is a mistake (a plot cannot show them)
MAX_SPREAD_S = 86_400  # a record is drawn over at most its first day (see traffic_over_time)
SPREAD_CELLS = 1 << 22  # (group, bin) cells spread_over_bins works on at once
STATE_COLOURS = {"closed": "#4c72b0", "active": "#55a868", "half_open": "#c44e52"}
REASON_COLOURS = {
    "fin": "#4c72b0",
    "rst": "#8172b2",
    "rejected": "#c44e52",
    "no_reply": "#dd8452",
    "idle": "#64b5cd",
    "hard_timeout": "#937860",
    "evicted": "#da8bc3",
}
NO_RULE = "no rule"


def traffic_over_time(
    run: Run,
    *,
    by: str = "state",
    sessions: pd.DataFrame | None = None,
    bin_s: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Stacked bytes per time bin, by session state or by the Flow Matrix rules matched.

    Each exporter's records are drawn: a conversation two devices exported is drawn twice,
    and the title says how many exporters were added (a review found a 64 KB conversation
    drawn as 876 KB over five exporters, without a word); `sessions=` of one exporter's
    sessions (`SessionQuery().exporter(...)`) draws what one device saw.

    Args:
        sessions: only the flows of these sessions (e.g. a SessionQuery's rows).
        bin_s: bin width in seconds; default a round width giving about 60 bins.
    """
    if by not in ("state", "rule"):
        raise UsageError(f"traffic_over_time by {by!r}: use 'state' or 'rule'")
    if bin_s is not None and not (math.isfinite(bin_s) and bin_s > 0):
        raise UsageError(f"traffic_over_time bin_s={bin_s!r}: a width in seconds above 0")
    chosen = run.sessions if sessions is None else sessions
    flows = run.flows.loc[run.flows["session_id"].isin(chosen["session_id"])]
    axes = ax if ax is not None else _new_axes((10, 4))
    if flows.empty:
        axes.set_title("traffic over time: no flow records")
        return axes
    # a damaged record's time past year 9999 loads as NaT: left out and said, where it
    # made a NaN bin width (an audit)
    timeless = int(flows["first_seen"].isna().sum())
    flows = flows.loc[flows["first_seen"].notna()]
    if flows.empty:
        axes.set_title(
            f"traffic over time: no flow records of a showable time ({timeless} "
            "outside years 1-9999)"
        )
        return axes
    labels = _session_labels(chosen, by)
    label = flows["session_id"].map(labels).astype(object).to_numpy()
    octets = flows["octets"].to_numpy(dtype=np.float64) + flows["reverse_octets"].to_numpy(
        dtype=np.float64
    )
    rate = _scale(flows)
    first_seen = _naive_utc(flows["first_seen"])
    # a record's last time past year 9999 (NaT), or before its first, spans nothing; one
    # past a day is drawn over its first day (a damaged end ten years on stretched the axis
    # and put the traffic in one bar: a review)
    last_seen = _naive_utc(flows["last_seen"]).fillna(first_seen)
    last_seen = last_seen.where(last_seen > first_seen, first_seen)
    longest = first_seen + pd.Timedelta(seconds=MAX_SPREAD_S)
    stretched = int((last_seen > longest).sum())
    last_seen = last_seen.where(last_seen <= longest, longest)
    start, end = first_seen.min(), last_seen.max()
    span_s = max((end - start).total_seconds(), 1.0)
    width_s = bin_s if bin_s is not None else _nice_bin(span_s)
    if span_s / width_s > MAX_BINS:  # bin_s=1e-9 over a day asked for exabytes of bins
        raise UsageError(
            f"traffic_over_time bin_s={bin_s!r} makes {span_s / width_s:.3g} bins "
            f"over {_human_seconds(span_s)}; at most {MAX_BINS:,}"
        )
    width = pd.Timedelta(seconds=width_s)
    origin = start.floor(width)
    first_s = (first_seen - origin).dt.total_seconds().to_numpy()
    last_s = (last_seen - origin).dt.total_seconds().to_numpy()
    bins = int(bin_span(first_s, last_s, width_s)[1].max()) + 1
    names, codes = np.unique(label.astype(str), return_inverse=True)
    spread = spread_over_bins(first_s, last_s, octets * rate, width_s, bins, codes, len(names))
    table = pd.DataFrame(
        {str(name): spread[index] for index, name in enumerate(names)},
        index=pd.date_range(origin, periods=bins, freq=width),
    )
    order = _label_order(list(table.columns), by)
    x = date2num(cast(pd.DatetimeIndex, table.index).to_pydatetime())
    bottom = np.zeros(len(table))
    colours = _colours(order, by)
    for name in order:
        heights = table[name].to_numpy()
        axes.bar(
            x,
            heights,
            width=width_s / 86400.0,
            bottom=bottom,
            align="edge",
            label=f"{name} ({human_bytes(heights.sum())})",
            color=colours[name],
            edgecolor="none",
        )
        bottom += heights
    _time_axis(axes)
    axes.set_ylabel(f"bytes per {_human_seconds(width_s)}")
    left_out = f"; {timeless} outside years 1-9999 left out" if timeless else ""
    if stretched:
        left_out += f"; {stretched} lasting over a day drawn over their first day"
    added = _exporters_added(
        flows, "is drawn once by each (sessions= of one exporter's draws what it saw)"
    )
    axes.set_title(
        f"traffic over time by {by} ({human_bytes(bottom.sum())}, "
        f"{len(flows)} flow records{left_out}){added}"
    )
    axes.legend(loc="upper left", fontsize="small", frameon=False)
    return axes


def fragment_timeline(run: Run, session_id: str, *, ax: Axes | None = None) -> Axes:
    """The fragments of the conversation `session_id` (any fragment, or the conversation id)
    belongs to: one bar per fragment, its flow records as ticks, the gaps between them."""
    session_id = _conversation_member(run, session_id)
    found = drawer(run, session_id)
    fragments = found.fragments
    axes = ax if ax is not None else _new_axes((10, 1.2 + 0.6 * len(fragments)))
    flows = run.flows.loc[run.flows["session_id"].isin(fragments["session_id"])]
    for position, fragment in enumerate(fragments.itertuples(index=False)):
        opened = _naive_utc(pd.Series([fragment.opened_at])).iloc[0]
        last = _naive_utc(pd.Series([fragment.last_seen_at])).iloc[0]
        if pd.isna(opened) or pd.isna(last):  # a damaged time past year 9999 (an audit)
            axes.annotate(
                " times outside years 1-9999 (damaged?)",
                (0, position),
                xycoords=("axes fraction", "data"),
                va="center",
                fontsize="small",
            )
            continue
        start = date2num(opened.to_pydatetime())
        length = max(date2num(last.to_pydatetime()) - start, 1e-9)
        reason = fragment.close_reason if isinstance(fragment.close_reason, str) else None
        state = cast(str, fragment.state)
        colour = REASON_COLOURS.get(reason or "", STATE_COLOURS.get(state, "grey"))
        axes.broken_barh([(start, length)], (position - 0.3, 0.6), facecolors=colour)
        ticks = _naive_utc(flows.loc[flows["session_id"] == fragment.session_id, "first_seen"])
        ticks = ticks.loc[ticks.notna()]
        axes.plot(
            date2num(ticks.dt.to_pydatetime()),
            np.full(len(ticks), position),
            "|",
            color="black",
            markersize=14,
        )
        ended = reason or state
        axes.annotate(f" {ended}", (start + length, position), va="center", fontsize="small")
    names = [
        f"split {f.split} · {f.exporter}" + (f" · run {f.run}" if "run" in fragments else "")
        for f in fragments.itertuples(index=False)
    ]
    axes.set_yticks(range(len(fragments)), names)
    axes.set_ylim(len(fragments) - 0.4, -0.6)
    _time_axis(axes)
    first = fragments.iloc[0]
    axes.set_title(
        f"conversation {found._conversation_id()}: {first['client_ip']} -> "
        f"{first['server_ip']}:{first['server_port']} {first['protocol']}, "
        f"{len(fragments)} fragment(s), {len(flows)} flow records"
    )
    present = list(
        dict.fromkeys(
            r if isinstance(r, str) else s
            for r, s in zip(fragments["close_reason"], fragments["state"], strict=True)
        )
    )
    axes.legend(
        handles=[
            Patch(color=REASON_COLOURS.get(n, STATE_COLOURS.get(n, "grey")), label=n)
            for n in present
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
        frameon=False,
    )
    axes.margins(x=0.08)
    return axes


def talker_heatmap(
    sessions: pd.DataFrame, *, top: int = 10, value: str = "bytes", ax: Axes | None = None
) -> Axes:
    """Client rows x server columns of the `top` talkers: bytes both ways, or session count.

    `sessions` is a sessions table (each exporter's sessions, counters scaled by their
    sampling rate: a conversation two devices exported counts twice, which the title says)
    or `run.consolidated` (one row per conversation, its counters one exporter's)."""
    if value not in ("bytes", "sessions"):
        raise UsageError(f"talker_heatmap value {value!r}: use 'bytes' or 'sessions'")
    if top < 1:
        raise UsageError(f"talker_heatmap top={top!r}: at least 1")
    axes = ax if ax is not None else _new_axes((9, 7))
    if sessions.empty:
        axes.set_title("talkers: no sessions")
        return axes
    consolidated = "cs_bytes" in sessions.columns
    if value == "sessions":
        amount = np.ones(len(sessions))
    elif consolidated:  # scaled already, one exporter's per direction
        amount = sessions["cs_bytes"].to_numpy(dtype=np.float64) + sessions["sc_bytes"].to_numpy(
            dtype=np.float64
        )
    else:
        # bytes scaled by each session's sampling rate, as traffic_over_time and the
        # consolidated table scale them (an audit: a 1-in-30000 exporter's sessions read 1.4 KB)
        amount = (
            sessions["ab_bytes"].to_numpy(dtype=np.float64)
            + sessions["ba_bytes"].to_numpy(dtype=np.float64)
        ) * _scale(sessions)
    frame = pd.DataFrame(
        {
            "client": sessions["client_ip"].astype(str).to_numpy(),
            "server": sessions["server_ip"].astype(str).to_numpy(),
            "amount": amount,
        }
    )
    clients = frame.groupby("client")["amount"].sum().sort_values(ascending=False, kind="stable")
    servers = frame.groupby("server")["amount"].sum().sort_values(ascending=False, kind="stable")
    top_clients = list(clients.index[:top])
    top_servers = list(servers.index[:top])
    kept = frame.loc[frame["client"].isin(top_clients) & frame["server"].isin(top_servers)]
    grid = kept.pivot_table(
        index="client", columns="server", values="amount", aggfunc="sum", fill_value=0.0
    ).reindex(index=top_clients, columns=top_servers, fill_value=0.0)
    values = grid.to_numpy()
    shown = np.where(values > 0, values, np.nan)
    positive = values[values > 0]
    if not positive.size:  # sessions of no bytes at all (a NAT-event export, say)
        axes.set_title(
            f"talkers: the top {len(top_clients)} clients and {len(top_servers)} "
            f"servers sent no {value}"
        )
        return axes
    norm = LogNorm(vmin=positive.min(), vmax=max(positive.max(), positive.min() * 10))
    image = axes.imshow(shown, cmap="viridis", norm=norm, aspect="auto")
    for row, column in zip(*np.nonzero(values), strict=True):
        cell = values[row, column]
        text = human_bytes(cell) if value == "bytes" else f"{cell:.0f}"
        bright = norm(cell) > 0.6
        axes.text(
            column,
            row,
            text,
            ha="center",
            va="center",
            fontsize="x-small",
            color="black" if bright else "white",
        )
    axes.set_xticks(range(len(top_servers)), top_servers, rotation=45, ha="right", fontsize="small")
    axes.set_yticks(range(len(top_clients)), top_clients, fontsize="small")
    axes.set_xlabel("server")
    axes.set_ylabel("client")
    colorbar = axes.figure.colorbar(image, ax=axes)
    colorbar.set_label(
        "bytes (both directions, scaled by sampling rate)" if value == "bytes" else "sessions"
    )
    # (the consolidated table has no exporter column: one row per conversation)
    added = _exporters_added(
        sessions, "counts once by each (run.consolidated counts each conversation once)"
    )
    counted = "conversations" if consolidated and value == "sessions" else value
    axes.set_title(
        f"top {len(top_clients)} of {len(clients)} clients x top {len(top_servers)} "
        f"of {len(servers)} servers by {counted}{added}"
    )
    return axes


def _exporters_added(rows: pd.DataFrame, what: str) -> str:
    """A title's second line when `rows` come from several exporters: what several saw
    is in them once per exporter (a review: a 64 KB conversation drawn as 876 KB)."""
    exporters = rows["exporter"].nunique() if "exporter" in rows.columns else 1
    return f"\n{exporters} exporters added: what several saw {what}" if exporters > 1 else ""


def _scale(rows: pd.DataFrame) -> np.ndarray:
    """What each row's (flow record's or session's) counters are multiplied by for the
    traffic: its sampling rate, 1 where the source scaled them already."""
    if "sampling_rate" not in rows.columns:
        return np.ones(len(rows))
    scaled = (
        rows["counters_scaled"].to_numpy(dtype=bool)
        if "counters_scaled" in rows.columns
        else np.zeros(len(rows), bool)
    )
    return np.where(scaled, 1.0, rows["sampling_rate"].to_numpy(dtype=np.float64).clip(min=1.0))


def coherence_histogram(consolidated: pd.DataFrame | None, *, ax: Axes | None = None) -> Axes:
    """coherence_pct of consolidated sessions: seen by several exporters that all counted,
    by several one of which sampled, and by one exporter.

    With one exporter coherence is 100 by definition, so those are drawn apart. Where an
    exporter sampled, coherence compares its estimate with the others' counts, and a 1:N
    estimate of a small conversation is often several times off (real 1:10 sampling beside
    an unsampled export of the same traffic: 3 to 93 %, a review); so the bars that say
    whether two devices agree are those of counts alone (`max_sampling_rate` 1).
    """
    axes = ax if ax is not None else _new_axes((8, 4))
    if consolidated is None or consolidated.empty:
        axes.set_title("coherence: no consolidated sessions")
        return axes
    coherence = consolidated["coherence_pct"].to_numpy(dtype=np.float64, na_value=np.nan)
    several = consolidated["sampler_count"].to_numpy(dtype=np.int64) > 1
    # (a table of an earlier version read otherwise than by load: taken as counts)
    sampled = (
        consolidated["max_sampling_rate"].to_numpy(dtype=np.int64) > 1
        if "max_sampling_rate" in consolidated.columns
        else np.zeros(len(consolidated), dtype=bool)
    )
    counted, estimated = several & ~sampled, several & sampled
    edges = [float(e) for e in np.linspace(0.0, 100.0, 21)]
    axes.hist(
        [coherence[counted], coherence[estimated], coherence[~several]],
        bins=edges,
        stacked=True,
        color=["#c44e52", "#dd8452", "#cccccc"],
        label=[
            f"several exporters, all counting ({int(counted.sum())})",
            f"several exporters, some sampling: estimates ({int(estimated.sum())})",
            f"one exporter, 100 by definition ({int((~several).sum())})",
        ],
    )
    axes.set_xlim(0, 100)
    axes.set_xlabel("coherence_pct (100 x smallest / largest scaled bytes among exporters)")
    axes.set_ylabel("consolidated sessions")
    if several.any():
        low = int((coherence[counted] < 90).sum())
        title = f"multi-exporter coherence: {low} of {int(counted.sum())} counted below 90%"
        if estimated.any():
            title += f"; {int(estimated.sum())} compare sampled estimates"
        if "max_sampling_rate" not in consolidated.columns:
            # an earlier version's table read without load: its estimates pass for counts
            title += "; sampling unknown (an earlier version's table: query.load tells it)"
        axes.set_title(title)
    else:
        axes.set_title("coherence: every conversation was seen by one exporter only")
    axes.legend(loc="upper left", fontsize="small", frameon=False)
    return axes


def _new_axes(size: tuple[float, float]) -> Axes:
    """A new pyplot figure: a notebook's inline backend shows it, Agg just keeps it."""
    import matplotlib.pyplot as plt

    _, axes = plt.subplots(figsize=size, layout="constrained")
    return axes


def _session_labels(sessions: pd.DataFrame, by: str) -> pd.Series:
    """session_id -> its state, or the rules it matched in file order, joined by " + " ("no
    rule"): a session two rules account for is labelled with both, as rule order carries
    no priority (its first rule alone took every byte a catch-all rule placed first
    matched: a review)."""
    if by == "state":
        values = sessions["state"].astype(str).to_numpy()
    else:
        rules = sessions["matched_rules"]
        values = np.array(
            [
                NO_RULE if rule is None or len(rule) == 0 else " + ".join(map(str, rule))
                for rule in rules.tolist()
            ],
            dtype=object,
        )
    return pd.Series(values, index=sessions["session_id"].astype(str).to_numpy())


def _label_order(labels: list[Any], by: str) -> list[Any]:
    if by == "state":
        known = [s for s in STATE_COLOURS if s in labels]
        return known + sorted(set(labels) - set(known))
    return sorted(label for label in labels if label != NO_RULE) + (
        [NO_RULE] if NO_RULE in labels else []
    )


def _colours(order: list[Any], by: str) -> dict[Any, Any]:
    if by == "state":
        return {name: STATE_COLOURS.get(name, "grey") for name in order}
    palette = [f"C{i % 10}" for i in range(len(order))]
    colours = dict(zip(order, palette, strict=True))
    if NO_RULE in colours:
        colours[NO_RULE] = "#bbbbbb"
    return colours


def spread_over_bins(
    first_s: np.ndarray,
    last_s: np.ndarray,
    amount: np.ndarray,
    width_s: float,
    bins: int,
    group: np.ndarray | None = None,
    groups: int = 1,
) -> np.ndarray:
    """Each record's amount spread evenly over its first..last time, summed per (group, bin
    of `width_s`): an array (groups, bins), times in seconds from the first bin's start; a
    record of no duration goes whole to the bin of its time. Every record's whole amount
    lands in the bins; the middle bins a record covers get theirs through one running sum
    of rates, not a loop over them (a six-hour record over 1 s bins), and every group in
    one pass (a pass a group was as slow as its labels were many: a review)."""
    group = np.zeros(len(first_s), dtype=np.int64) if group is None else group.astype(np.int64)
    if groups > 1 and groups * (bins + 1) > SPREAD_CELLS:
        # many labels over fine bins (200 rules over a day of 1 s bins): a block of groups
        # at a time, each block's arrays bounded (all at once took twice the memory)
        block = max(1, SPREAD_CELLS // (bins + 1))
        out = np.empty((groups, bins))
        for low in range(0, groups, block):
            high = min(low + block, groups)
            mine = (group >= low) & (group < high)
            out[low:high] = spread_over_bins(
                first_s[mine], last_s[mine], amount[mine], width_s, bins, group[mine] - low,
                high - low,
            )  # fmt: skip
        return out
    size = groups * (bins + 1)
    first_bin, last_bin = bin_span(first_s, last_s, width_s)
    first_bin, last_bin = np.minimum(first_bin, bins - 1), np.minimum(last_bin, bins - 1)
    row = group * (bins + 1)
    whole = first_bin == last_bin
    # (float whatever the counts: bincount of no element gives integers)
    total = np.bincount(
        row[whole] + first_bin[whole], weights=amount[whole], minlength=size
    ).astype(np.float64)
    first_s, last_s, amount = first_s[~whole], last_s[~whole], amount[~whole]
    first_bin, last_bin, row = first_bin[~whole], last_bin[~whole], row[~whole]
    per_s = amount / (last_s - first_s)
    total += np.bincount(
        row + first_bin, weights=per_s * ((first_bin + 1) * width_s - first_s), minlength=size
    )
    total += np.bincount(
        row + last_bin, weights=per_s * (last_s - last_bin * width_s), minlength=size
    )
    # the bins strictly between: per_s * width_s each, from first_bin + 1 up to last_bin
    steps = np.bincount(row + first_bin + 1, weights=per_s * width_s, minlength=size).astype(
        np.float64
    )
    steps -= np.bincount(row + last_bin, weights=per_s * width_s, minlength=size)
    spread: np.ndarray = total + np.cumsum(steps.reshape(groups, bins + 1), axis=1).ravel()
    return spread.reshape(groups, bins + 1)[:, :bins]


def bin_span(
    first_s: np.ndarray, last_s: np.ndarray, width_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """The first and last bin of each record's span; a span ending exactly on a bin's start
    ends in the bin before (it has nothing in that one: a 10:00-10:30 record in 1 min bins
    drew an empty 31st bar)."""
    first_bin = (first_s // width_s).astype(np.int64)
    last_bin = np.maximum(np.ceil(last_s / width_s).astype(np.int64) - 1, first_bin)
    return first_bin, last_bin


def _nice_bin(span_s: float) -> float:
    for width in NICE_BINS_S:
        if span_s / width <= TARGET_BINS:
            return float(width)
    return float(np.ceil(span_s / TARGET_BINS / 86400) * 86400)


def _human_seconds(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _naive_utc(times: pd.Series) -> pd.Series:
    """UTC-aware times -> naive UTC, which matplotlib's date axis draws without converting."""
    if getattr(times.dt, "tz", None) is not None:
        return cast(pd.Series, times.dt.tz_convert("UTC").dt.tz_localize(None))
    return times


def _time_axis(axes: Axes) -> None:
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_xlabel("time (UTC)")


def _conversation_member(run: Run, identifier: str) -> str:
    """A session id of the conversation named by a session id or a conversation id."""
    sessions = run.sessions
    if (sessions["session_id"] == identifier).any():
        return identifier
    if run.fragments is not None:
        members = run.fragments.loc[run.fragments["conversation_id"] == identifier]
        if len(members):
            return str(members["session_id"].iloc[0])
    members = sessions.loc[sessions["conversation_id"] == identifier]
    if len(members):
        return str(members["session_id"].iloc[0])
    raise UsageError(f"no session or conversation {identifier!r} in the loaded runs")


def figure_of(axes: Axes) -> Figure:
    """The Figure an Axes from these helpers belongs to (to save it or show it)."""
    figure = axes.figure
    assert isinstance(figure, Figure)
    return figure
