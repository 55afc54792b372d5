"""The post-event report on split conversations: report.json, report.md, timeline.png.

Written for a person reading after the event, in the order of the questions they ask: how many
conversations were split and why; which are the largest and longest, and how their fragments
lie in time; which may have begun before the window ("fragment 0 is outside the window: widen
the window to start before T") or go on after it ("more may follow after T"); and what
`sessions.hard_timeout` would have kept 50/90/99 % of conversations whole.

The surprising thing: report.json is the report; report.md is rendered from the same dict
and adds nothing, so the two can never disagree. The figure is drawn with matplotlib's Agg
canvas directly (no pyplot global state) and without a Software/date stamp, so that the same
runs give the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..protocols import PORT_PROTOCOLS
from ..times import iso_us
from .chain import LINK_REASONS, nice_above
from .runs import Run

if TYPE_CHECKING:
    import numpy.typing as npt

    from .chain import Chains

TOP_CONVERSATIONS = 10  # rows in the "largest" and "longest" tables
LISTED_CUTS = 50  # conversations listed under "outside the window" (all are counted)
PERCENTS = (50, 90, 99)
DURATION_BUCKETS = (  # upper edge in seconds, label
    (1.0, "< 1 s"),
    (10.0, "1 s – 10 s"),
    (60.0, "10 s – 1 min"),
    (300.0, "1 – 5 min"),
    (900.0, "5 – 15 min"),
    (3600.0, "15 min – 1 h"),
    (21600.0, "1 – 6 h"),
    (86400.0, "6 – 24 h"),
    (math.inf, "≥ 1 day"),
)
REASON_COLOURS = {
    "hard_timeout": "#d95f02",
    "evicted": "#7570b3",
    "idle": "#1b9e77",
    "fin": "#66a61e",
    "rst": "#e7298a",
    "rejected": "#e7298a",
    "no_reply": "#a6761d",
    None: "#666666",
}


def human_seconds(seconds: float) -> str:
    """A duration as a person writes it: 950 ms, 42 s, 15 min, 2 h 5 min, 3 d 4 h."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def endpoint_text(ip: str, port: int, ported: bool) -> str:
    """An endpoint as text: an IPv6 address in brackets before its port, no port for a
    protocol that has none (ICMP's 0 read as a port)."""
    if not ported:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass
class Source:
    """Where the report reads what recombine found: the tables in memory, or the files it
    wrote (a column, or a few rows, at a time: the conversations of a day's runs are more
    than memory holds as whole rows)."""

    column: Callable[[str], pa.ChunkedArray[Any] | pa.Array[Any]]  # a whole conversations column
    take: Callable[[np.ndarray], pa.Table]  # conversations rows by position
    fragments_of: Callable[[pa.Array[Any]], pa.Table]  # the fragments of these conversations
    conversation_count: int
    sessions: int
    exporter_windows: dict[str, tuple[int, int]]
    anomalies: dict[str, int]

    @staticmethod
    def of(chains: Chains) -> Source:
        conversations, fragments = chains.conversations, chains.fragments
        return Source(
            column=conversations.column,
            take=lambda rows: conversations.take(pa.array(rows, pa.int64())),
            fragments_of=lambda ids: fragments.filter(
                pc.is_in(fragments.column("conversation_id"), value_set=ids)
            ),
            conversation_count=conversations.num_rows,
            sessions=fragments.num_rows,
            exporter_windows=chains.exporter_windows,
            anomalies=chains.anomalies,
        )


def build_report(runs: list[Run], found: Chains | Source) -> dict[str, Any]:
    """The whole report as plain data (what report.json holds)."""
    source = found if isinstance(found, Source) else Source.of(found)
    n = source.conversation_count
    count = np.asarray(source.column("fragment_count").to_numpy(), dtype=np.int64)
    duration = np.asarray(source.column("duration_s").to_numpy(), dtype=np.float64)
    split = count > 1
    head_cut = _bools(source, "head_cut")
    tail_cut = _bools(source, "tail_cut")

    by_reason: dict[str, int] = {}
    reasons = source.column("split_reasons")
    flat = pc.list_flatten(reasons)
    parent = pc.list_parent_indices(reasons)
    for name in LINK_REASONS[1:]:
        # (compute functions take Python scalars, as pa.scalar makes them; the stubs only
        # Arrow ones)
        equal = pc.equal(flat, name)  # type: ignore[call-overload]
        hit = np.asarray(equal.to_numpy(zero_copy_only=False), dtype=bool)
        owners = np.asarray(parent.to_numpy(), dtype=np.int64)[hit]
        by_reason[name] = len(np.unique(owners))

    report: dict[str, Any] = {
        "title": "Split sessions: recombination report",
        "runs": [run.describe() for run in runs],
        "window": {
            exporter: {
                "start": iso_us(first, trim_fraction=True),
                "end": iso_us(last, trim_fraction=True),
            }
            for exporter, (first, last) in sorted(source.exporter_windows.items())
        },
        "counts": {
            "sessions": source.sessions,
            "conversations": n,
            "split_conversations": int(np.count_nonzero(split)),
            "fragments_of_split_conversations": int(count[split].sum()),
            "complete": int(np.count_nonzero(_bools(source, "complete"))),
            "head_cut": int(np.count_nonzero(head_cut)),
            "tail_cut": int(np.count_nonzero(tail_cut)),
            "state_inferred": int(np.count_nonzero(_bools(source, "state_inferred"))),
            "orientation_conflicts": int(
                pc.sum(pc.list_value_length(source.column("orientation_conflicts"))).as_py() or 0
            ),
        },
        "split_by_reason": by_reason,
        "refused_links": dict(source.anomalies),
        "notes": _notes(runs, by_reason),
    }
    total_bytes = np.asarray(source.column("ab_bytes").to_numpy(), dtype=np.float64) + np.asarray(
        source.column("ba_bytes").to_numpy(), dtype=np.float64
    )
    # ranked by the traffic they stand for: a sampled conversation's counters times its rate
    # (one of a 1:30000 exporter ranked below an unsampled exporter's small ones)
    total_bytes *= np.where(
        _bools(source, "counters_scaled"),
        1.0,
        np.asarray(source.column("sampling_rate").to_numpy(), dtype=np.float64),
    )
    split_rows = np.flatnonzero(split)
    largest = split_rows[np.lexsort((split_rows, -total_bytes[split_rows]))][:TOP_CONVERSATIONS]
    longest = split_rows[np.lexsort((split_rows, -duration[split_rows]))][:TOP_CONVERSATIONS]
    shown = list(dict.fromkeys([*largest.tolist(), *longest.tolist()]))
    summaries = _summaries(source, shown)
    report["largest"] = [summaries[i] for i in largest.tolist()]
    report["longest"] = [summaries[i] for i in longest.tolist()]
    report["outside_window"] = _outside_window(source, head_cut, tail_cut)
    report["durations"] = _durations(duration, runs)
    return report


def _notes(runs: list[Run], by_reason: dict[str, int]) -> list[str]:
    """What the counts cannot say by themselves. Each run checked its exporters' sequence
    numbers within itself only, so a datagram lost at the cut between two runs' inputs was
    seen by neither, and the conversations it carried came out whole (a review). And a
    conversation the open-session cap split is kept whole by no `hard_timeout`: the
    report's "15 min keeps whole 100 %" beside 8 of 9 conversations split by the cap read
    as all was well (a review)."""
    notes = []
    exports = any(
        not str(entry.get("format", "")).startswith("nfcapd")
        for run in runs
        for entry in run.inputs
    )
    if len(runs) > 1 and exports:
        # nfcapd counted its sequence failures as it received, across the files it wrote:
        # a loss at the cut between two of them is in the next one's count
        notes.append(
            "Each run checked its exporters' sequence numbers within its own captures, and "
            "recombine compares each exporter's first message in a run with the last in the "
            "run before (a run's notes say what is missing between them), where each run "
            "saw it number over one transport session outside SCTP: for the others, a "
            "datagram lost at the cut is seen by neither run; sessionize the captures "
            "together to check it."
        )
    evicted = by_reason.get("evicted", 0)
    if evicted:
        caps = sorted(
            {run.max_open_ksessions for run in runs if run.max_open_ksessions is not None}
        )
        used = f" (these runs used {', '.join(f'{cap:g}' for cap in caps)})" if caps else ""
        notes.append(
            f"{evicted} conversation(s) were split at the open-session cap (evicted): no "
            "sessions.hard_timeout keeps them whole, a higher sessions.max_open_ksessions "
            f"does{used}; check first whether a scan or a flood filled the table."
        )
    return notes


def _bools(source: Source, name: str) -> npt.NDArray[np.bool_]:
    return np.asarray(source.column(name).to_numpy(zero_copy_only=False), dtype=bool)


def _summaries(source: Source, rows: list[int]) -> dict[int, dict[str, Any]]:
    """One entry per shown conversation, with its fragment timeline."""
    if not rows:
        return {}
    picked = rows_us(source.take(np.array(rows, dtype=np.int64)))
    ids = pa.array([row["conversation_id"] for row in picked], pa.string())
    timeline_rows = rows_us(source.fragments_of(ids))
    by_conversation: dict[str, list[dict[str, Any]]] = {}
    for fragment in timeline_rows:
        by_conversation.setdefault(fragment["conversation_id"], []).append(fragment)
    out: dict[int, dict[str, Any]] = {}
    for row_index, row in zip(rows, picked, strict=True):
        ported = row["protocol_number"] in PORT_PROTOCOLS
        start = row["first_seen"]
        timeline = []
        for fragment in sorted(
            by_conversation.get(row["conversation_id"], []), key=lambda f: f["fragment_index"]
        ):
            opened, last = fragment["opened_at"], fragment["last_seen_at"]
            timeline.append(
                {
                    "fragment": fragment["fragment_index"],
                    "session_id": fragment["session_id"],
                    "split": fragment["split"],
                    "run": fragment["run_index"],
                    "opened_at": iso_us(opened, trim_fraction=True),
                    "last_seen_at": iso_us(last, trim_fraction=True),
                    "offset_s": (opened - start) / 1e6,
                    "length_s": (last - opened) / 1e6,
                    "gap_s": fragment["gap_s"],
                    "bytes": fragment["ab_bytes"] + fragment["ba_bytes"],
                    "packets": fragment["ab_packets"] + fragment["ba_packets"],
                    "state": fragment["state"],
                    "close_reason": fragment["close_reason"],
                    "link_reason": fragment["link_reason"],
                    "joined_fragment": fragment["joined_fragment"],
                    "late": fragment["late"],
                    "flipped": fragment["flipped"],
                }
            )
        out[row_index] = {
            "conversation_id": row["conversation_id"],
            "exporter": row["exporter"],
            "protocol": row["protocol"],
            "client": endpoint_text(row["client_ip"], row["client_port"], ported),
            "server": endpoint_text(row["server_ip"], row["server_port"], ported),
            "fragments": row["fragment_count"],
            "split_reasons": sorted(set(row["split_reasons"])),
            "first_seen": iso_us(row["first_seen"], trim_fraction=True),
            "last_seen": iso_us(row["last_seen"], trim_fraction=True),
            "duration_s": row["duration_s"],
            "bytes": row["ab_bytes"] + row["ba_bytes"],
            "packets": row["ab_packets"] + row["ba_packets"],
            "sampling_rate": row["sampling_rate"],
            "counters_scaled": row["counters_scaled"],
            "role_method": row["role_method"],
            "role_confidence": row["role_confidence"],
            "state": row["state"],
            "close_reason": row["close_reason"],
            "state_inferred": row["state_inferred"],
            "complete": row["complete"],
            "recommended_hard_timeout": row["recommended_hard_timeout"],
            "timeline": timeline,
        }
    return out


def _volume(conversation: dict[str, Any], name: str) -> str:
    """A conversation's bytes or packets as a report cell: a sampled one's with the traffic
    they stand for beside them (`show` and the drawer say so; the report gave them bare)."""
    value, rate = conversation[name], conversation["sampling_rate"]
    if rate <= 1:
        return str(value)
    if conversation["counters_scaled"]:
        return f"{value} (an estimate: sampled 1:{rate}, scaled by the exporter's collector)"
    return f"{value} (sampled 1:{rate}: about {value * rate})"


def _recommended(conversation: dict[str, Any]) -> str:
    """The hard_timeout that keeps a conversation whole, for one that hard_timeout split: a
    conversation split only by a late record or at a run boundary got "1 s", a setting that
    has nothing to do with its split, beside a report that said 15 min keeps all whole (a
    review)."""
    if "hard_timeout" not in conversation["split_reasons"]:
        return "— (not split by it)"
    return human_seconds(conversation["recommended_hard_timeout"])


def rows_us(table: pa.Table) -> list[dict[str, Any]]:
    """table.to_pylist() with times as int µs: a damaged record's time can lie past year
    9999, where Python's datetime (what to_pylist makes of a timestamp) overflows."""
    for index, kind in enumerate(table.schema.types):
        if pa.types.is_timestamp(kind):
            table = table.set_column(
                index, table.schema.names[index], table.column(index).cast(pa.int64())
            )
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _outside_window(
    source: Source, head_cut: npt.NDArray[np.bool_], tail_cut: npt.NDArray[np.bool_]
) -> dict[str, Any]:
    columns = [
        "conversation_id",
        "exporter",
        "protocol",
        "protocol_number",
        "client_ip",
        "client_port",
        "server_ip",
        "server_port",
        "first_seen",
        "last_seen",
        "fragment_count",
        "splits",
    ]
    out: dict[str, Any] = {
        "head_cut_count": int(np.count_nonzero(head_cut)),
        "tail_cut_count": int(np.count_nonzero(tail_cut)),
    }
    for name, mask in (("head_cut", head_cut), ("tail_cut", tail_cut)):
        rows = np.flatnonzero(mask)[:LISTED_CUTS]
        entries = []
        for row in rows_us(source.take(rows).select(columns)):
            start_us, end_us = source.exporter_windows[row["exporter"]]
            ported = row["protocol_number"] in PORT_PROTOCOLS
            entry = {
                "conversation_id": row["conversation_id"],
                "exporter": row["exporter"],
                "protocol": row["protocol"],
                "client": endpoint_text(row["client_ip"], row["client_port"], ported),
                "server": endpoint_text(row["server_ip"], row["server_port"], ported),
                "first_seen": iso_us(row["first_seen"], trim_fraction=True),
                "last_seen": iso_us(row["last_seen"], trim_fraction=True),
                "fragments": row["fragment_count"],
                "first_split": row["splits"][0] if row["splits"] else 0,
            }
            entry["message"] = cut_message(
                name == "head_cut",
                entry["first_split"],
                entry["first_seen"],
                (iso_us(start_us, trim_fraction=True), iso_us(end_us, trim_fraction=True)),
            )
            entries.append(entry)
        out[name] = entries
    return out


_UNSHOWABLE = "a time past year 9999"


def cut_message(
    head: bool, first_split: int, first_seen: str | None, window: tuple[str | None, str | None]
) -> str:
    """What a conversation cut at its exporter's `window` (ISO text, as report["window"];
    None: a time past year 9999, a damaged record's) may lack: fragments
    before it (`head`; `first_split`: its earliest fragment's split, `first_seen` its ISO
    start) or after it. The report's lists and `recombine --session` say it alike."""
    window = (window[0] or _UNSHOWABLE, window[1] or _UNSHOWABLE)
    first_seen = first_seen or _UNSHOWABLE
    if head and first_split:
        return (
            f"fragment 0 is outside the window (the earliest fragment here is its split "
            f"{first_split}): widen the window to start before {first_seen}"
        )
    if head:
        # no split above 0, only a start within an idle timeout of the exporter's first
        # record with no opening seen: it may have begun before, or not (a whole DNS
        # exchange read "fragment 0 is outside the window": a review)
        return (
            "may have begun before the window (it starts within an idle timeout of the "
            "exporter's first record, no opening seen): widen the window to start before "
            f"{window[0]} to know"
        )
    return f"more may follow after {window[1]}"


def _durations(duration: npt.NDArray[np.float64], runs: list[Run]) -> dict[str, Any]:
    n = len(duration)
    out: dict[str, Any] = {"count": n}
    if n == 0:
        return out
    ordered = np.sort(duration)
    out["min_s"] = float(ordered[0])
    for percent in PERCENTS:
        out[f"p{percent}_s"] = float(ordered[max(0, math.ceil(percent / 100 * n) - 1)])
    out["max_s"] = float(ordered[-1])
    lower = 0.0
    histogram = []
    for upper, label in DURATION_BUCKETS:
        inside = int(np.count_nonzero((duration >= lower) & (duration < upper)))
        histogram.append({"bucket": label, "count": inside})
        lower = upper
    out["histogram"] = histogram
    # a conversation stays whole when the setting is above its duration (a record starting at
    # opened_at + hard_timeout opens the next fragment); k-th smallest covers k of n
    keeps = {}
    for percent in PERCENTS:
        kth = ordered[max(0, math.ceil(percent / 100 * n) - 1)]
        keeps[f"{percent}%"] = float(nice_above(np.array([kth]))[0])
    out["hard_timeout_keeping_whole_s"] = keeps
    current = sorted({run.hard_timeout_s for run in runs})
    out["current_hard_timeout"] = [
        {
            "seconds": value,
            "keeps_whole_pct": round(100.0 * int(np.count_nonzero(duration < value)) / n, 2),
        }
        for value in current
    ]
    return out


# what each reason means, under its table (the `split` row was read nowhere: a review)
_REASON_LEGEND = [
    "`hard_timeout`, `evicted`: the sessionizer cut the fragment before at "
    "sessions.hard_timeout or at the open-session cap; `late`: a late record's session "
    "joined the one it follows; `run_boundary`: the fragment before ended with an earlier "
    "run; `split`: linked by its run's split numbering alone, the fragment before closed "
    "for another reason (an edited table).",
]


def _measured(report: dict[str, Any]) -> str:
    """What the runs' setting did, beside what the durations say it would: the duration
    share read "5 s keeps 78.95 % whole" beside no conversation split, and "10 s keeps
    90.91 %" beside all 11 split by late records (a review)."""
    counts, by_reason = report["counts"], report["split_by_reason"]
    whole = counts["conversations"] - counts["split_conversations"]
    pct = 100.0 * whole / counts["conversations"]
    others = [
        f"{count} by {reason}"
        for reason, count in by_reason.items()
        if count and reason != "hard_timeout"
    ]
    return (
        f"Measured: {whole} of {counts['conversations']} conversation(s) ({pct:.4g} %) came "
        f"out in one fragment; {by_reason.get('hard_timeout', 0)} were split by "
        "hard_timeout"
        + (f", and {', '.join(others)}, which no hard_timeout keeps whole" if others else "")
        + " (Split conversations by reason)."
    )


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


# rows of the summary whose key alone misreads: the rows around it count conversations
_SUMMARY_LABELS = {"orientation_conflicts": "fragments whose server side disagrees"}


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: the same dict as report.json, laid out for reading."""
    out = [f"# {report['title']}", ""]
    out += ["## Runs", ""]
    out += _table(
        ["#", "run directory", "data window (UTC)", "hard_timeout", "notes"],
        [
            [
                run["index"],
                run["path"],
                # a manifest without one (edited) printed "None – None" (a review)
                f"{run['data_window']['start'] or 'not in its manifest'} – "
                f"{run['data_window']['end'] or 'not in its manifest'}",
                human_seconds(run["settings"]["sessions.hard_timeout"]),
                "; ".join(run["notes"]),
            ]
            for run in report["runs"]
        ],
    )
    out += ["", "Window per exporter:", ""]
    out += _table(
        ["exporter", "first record", "last record"],
        [[k, v["start"], v["end"]] for k, v in report["window"].items()],
    )
    counts = report["counts"]
    out += ["", "## Summary", ""]
    out += _table(
        ["what", "count"],
        [[_SUMMARY_LABELS.get(k, k.replace("_", " ")), v] for k, v in counts.items()],
    )
    if report["notes"]:
        out += ["", *(f"- {note}" for note in report["notes"])]
    out += [
        "",
        "## Split conversations by reason",
        "",
        "A conversation counts once under every reason that cut it.",
        "",
    ]
    out += _table(
        ["reason", "conversations"], [[k, v] for k, v in report["split_by_reason"].items()]
    )
    out += ["", *_REASON_LEGEND]
    refused = {k: v for k, v in report["refused_links"].items() if v}
    if refused:
        out += ["", "Links the tables asked for but recombine refused (kept apart):", ""]
        out += _table(["kind", "sessions"], [[k, v] for k, v in refused.items()])
    for key, title in (
        ("largest", "Largest split conversations (bytes)"),
        ("longest", "Longest split conversations (duration)"),
    ):
        out += ["", f"## {title}", ""]
        if not report[key]:
            out += ["No conversation was split."]
            continue
        out += _table(
            [
                "conversation",
                "protocol",
                "client → server",
                "server side by",
                "fragments",
                "first seen",
                "duration",
                "bytes",
                "packets",
                "complete",
                "recommended hard_timeout",
            ],
            [
                [
                    c["conversation_id"],
                    c["protocol"],
                    f"{c['client']} → {c['server']}",
                    f"{c['role_method']} ({c['role_confidence']:g})",
                    c["fragments"],
                    c["first_seen"],
                    human_seconds(c["duration_s"]),
                    _volume(c, "bytes"),
                    _volume(c, "packets"),
                    "yes" if c["complete"] else "no",
                    _recommended(c),
                ]
                for c in report[key]
            ],
        )
    shown: dict[str, dict[str, Any]] = {}
    for conversation in report["largest"] + report["longest"]:
        shown.setdefault(conversation["conversation_id"], conversation)
    if shown:
        out += ["", "## Fragment timelines", ""]
        if report.get("figure"):
            out += [f"![fragment timelines]({report['figure']})", ""]
    for conversation_id, conversation in shown.items():
        out += [
            f"### {conversation_id}: {conversation['protocol']} {conversation['client']} → "
            f"{conversation['server']} ({conversation['exporter']})",
            "",
            f"{conversation['fragments']} fragments, {conversation['first_seen']} – "
            f"{conversation['last_seen']}, split by {', '.join(conversation['split_reasons'])}"
            f"; final state {conversation['state']}"
            + (f" ({conversation['close_reason']})" if conversation["close_reason"] else "")
            # which rows the Summary's state_inferred counts (only the count was given)
            + (
                ", inferred: its last fragment was cut and nothing went on with it in the window"
                if conversation.get("state_inferred")
                else ""
            ),
            "",
        ]
        out += _table(
            [
                "#",
                "session",
                # its run's own numbering: the conversation's is `#` (a late fragment's 0
                # beside a #3 read as a second first fragment: a review)
                "split in its run",
                "run",
                "opened at",
                "+offset",
                "length",
                "gap before",
                "bytes",
                "packets",
                "closed by",
                "joined as",
            ],
            [
                [
                    f["fragment"],
                    f["session_id"],
                    f["split"],
                    f["run"],
                    f["opened_at"],
                    human_seconds(f["offset_s"]),
                    human_seconds(f["length_s"]),
                    "" if f["gap_s"] is None else human_seconds(f["gap_s"]),
                    f["bytes"],
                    f["packets"],
                    f["close_reason"] or f["state"],
                    (
                        f"{f['link_reason']} to #{f['joined_fragment']}"
                        if f["link_reason"]
                        else "first"
                    ),
                ]
                for f in conversation["timeline"]
            ],
        )
        out.append("")
    window = report["outside_window"]
    out += ["", "## Fragments outside the window", ""]
    for key, title in (
        ("head_cut", "May have begun before the window"),
        ("tail_cut", "May go on after the window"),
    ):
        total = window[f"{key}_count"]
        out += [f"### {title} ({total})", ""]
        if not total:
            out += ["None.", ""]
            continue
        if total > len(window[key]):
            out += [f"The first {len(window[key])} of {total}:", ""]
        out += _table(
            [
                "conversation",
                "protocol",
                "client → server",
                "first seen",
                "last seen",
                "fragments",
                "what to do",
            ],
            [
                [
                    e["conversation_id"],
                    e["protocol"],
                    f"{e['client']} → {e['server']}",
                    e["first_seen"],
                    e["last_seen"],
                    e["fragments"],
                    e["message"],
                ]
                for e in window[key]
            ],
        )
        out.append("")
    durations = report["durations"]
    out += ["## Conversation durations", ""]
    if durations["count"]:
        out += _table(
            ["conversations", "min", "p50", "p90", "p99", "max"],
            [
                [
                    durations["count"],
                    human_seconds(durations["min_s"]),
                    human_seconds(durations["p50_s"]),
                    human_seconds(durations["p90_s"]),
                    human_seconds(durations["p99_s"]),
                    human_seconds(durations["max_s"]),
                ]
            ],
        )
        out += [""]
        out += _table(
            ["duration", "conversations"],
            [[b["bucket"], b["count"]] for b in durations["histogram"]],
        )
        out += [
            "",
            "`sessions.hard_timeout` above the durations of this share of conversations "
            "(one shorter than the setting is never cut by it; a longer one only where its "
            "records go on past it: one long record is not):",
            "",
        ]
        out += _table(
            ["keeps whole", "sessions.hard_timeout"],
            [
                [k, f"{human_seconds(v)} ({v:g} s)"]
                for k, v in durations["hard_timeout_keeping_whole_s"].items()
            ],
        )
        out += ["", "With the setting these runs used:", ""]
        out += _table(
            ["sessions.hard_timeout", "conversations shorter than it"],
            [
                [human_seconds(c["seconds"]), f"{c['keeps_whole_pct']:g} %"]
                for c in durations["current_hard_timeout"]
            ],
        )
        out += ["", _measured(report)]
        evicted = report["split_by_reason"].get("evicted", 0)
        if evicted:
            out += [
                "",
                f"These figures are of durations: the {evicted} conversation(s) split at the "
                "open-session cap (evicted) stay split whatever the hard_timeout (Summary).",
            ]
    else:
        out += ["No conversations."]
    return "\n".join(out) + "\n"


def write_timeline(report: dict[str, Any], path: Path) -> None:
    """timeline.png: each shown conversation's fragments as bars from its first record."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    shown: dict[str, dict[str, Any]] = {}
    for conversation in report["largest"] + report["longest"]:
        shown.setdefault(conversation["conversation_id"], conversation)
    conversations = list(shown.values())
    height = max(2.5, 0.55 * len(conversations) + 1.6)
    figure = Figure(figsize=(11, height), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if not conversations:
        axes.text(0.5, 0.5, "No conversation was split.", ha="center", va="center")
        axes.set_axis_off()
    else:
        span = max(max(c["duration_s"] for c in conversations), 1e-6)
        minimum = span / 400.0  # a zero-length fragment still shows
        labels = []
        used: dict[str | None, str] = {}
        for row, conversation in enumerate(reversed(conversations)):
            # fragments that overlap in time (a record longer than hard_timeout, late
            # sessions) get lanes of their own inside the row, so that no fragment hides
            # another it overlaps; overlap is judged on the fragments' own spans, not the
            # bars' least width (by that, a conversation of more than 400 fragments spread
            # over dozens of lanes, as if its fragments overlapped), and two fragments of
            # no length at one instant overlap. So the bar of a fragment shorter than the
            # least width can cover the start of the next one in its lane: consecutive
            # fragments drawn as one band, as they went on one after the other
            lanes: list[tuple[float, bool]] = []  # each lane's end, and if it has a length
            placed = []
            for fragment in conversation["timeline"]:
                start, length = fragment["offset_s"], fragment["length_s"]
                lane = next(
                    (
                        i
                        for i, (end, lasted) in enumerate(lanes)
                        if start > end or (start == end and lasted)
                    ),
                    len(lanes),
                )
                if lane == len(lanes):
                    lanes.append((0.0, False))
                lanes[lane] = (start + length, length > 0)
                placed.append((fragment, max(length, minimum), lane))
            lane_height = 0.7 / len(lanes)
            # one collection of bars for each lane, colour and lateness: a call per fragment
            # took time growing with the square of the fragments (matplotlib rescans every
            # collection of the axes at each one: 16,667 fragments, 46 s)
            bars: dict[tuple[int, str, bool], list[tuple[float, float]]] = {}
            for fragment, width, lane in placed:
                reason = fragment["close_reason"]
                colour = REASON_COLOURS.get(reason, REASON_COLOURS[None])
                used[reason if reason in REASON_COLOURS else None] = colour
                bars.setdefault((lane, colour, bool(fragment["late"])), []).append(
                    (fragment["offset_s"], width)
                )
            for (lane, colour, late), spans in bars.items():
                axes.broken_barh(
                    spans,
                    (row + 0.35 - (lane + 1) * lane_height, lane_height),
                    facecolors=colour,
                    edgecolor="black",
                    linewidth=0.5,
                    alpha=0.6 if late else 1.0,
                )
            for fragment, width, lane in placed:
                bottom = row + 0.35 - (lane + 1) * lane_height
                if width > span / 40:
                    axes.text(
                        fragment["offset_s"] + width / 2,
                        bottom + lane_height / 2,
                        str(fragment["fragment"]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white",
                    )
            labels.append(
                f"{conversation['protocol']} {conversation['client']} → "
                f"{conversation['server']}\n{conversation['first_seen']}"
            )
        axes.set_yticks(range(len(labels)))
        axes.set_yticklabels(labels, fontsize=7)
        axes.set_xlabel("seconds since the conversation's first record")
        axes.set_xlim(-span * 0.01, span * 1.02)
        axes.set_title(
            "Fragments of the largest and longest split conversations "
            "(colour = what closed each fragment)",
            fontsize=9,
        )
        axes.grid(axis="x", linewidth=0.3)
        axes.set_axisbelow(True)
        axes.legend(
            handles=[
                Patch(facecolor=c, edgecolor="black", label=r or "still open")
                for r, c in sorted(used.items(), key=lambda i: str(i[0]))
            ],
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )
    figure.tight_layout()
    figure.savefig(path, format="png", metadata={"Software": None})
