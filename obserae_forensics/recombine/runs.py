"""Read `sessionize` run directories: manifest.json, sessions.parquet, flows.parquet.

A run directory is what one `sessionize` call wrote (manifest.json, sessions.parquet,
flows.parquet). Runs over consecutive captures are put in time order by their manifest's
`data_window` (start, then end, then path), because the order the user typed them in means
nothing: run-boundary continuations are only looked for from an earlier run into a later one.

The surprising thing: the settings that decide whether two fragments are one conversation
(idle timeouts per protocol and state) belong to the run that wrote the earlier fragment, and
runs may have been made with different settings. Each run keeps its own; a setting missing
from a manifest falls back to the documented default and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import UsageError
from ..protocols import protocol_keyword
from ..report import SEQUENCE_UNITS
from ..schema import SESSIONS_SCHEMA, TIMESTAMP
from ..tables.layout import FLOWS_FILE, MANIFEST_FILE, SESSIONS_FILE
from ..tables.manifest import changed_tables, read_manifest
from ..tables.parquet import (
    check_columns,
    iter_parquet,
    parquet_rows,
    read_parquet,
    read_parquet_schema,
)
from ..times import iso_us

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# sessions.md defaults, in seconds; used only when a manifest lacks the setting (and said so)
DEFAULT_SETTINGS: dict[str, float] = {
    "sessions.hard_timeout": 15 * 60.0,
    "sessions.grace": 30.0,
    "sessions.idle.tcp_established": 60.0,
    "sessions.idle.tcp_half_open": 5.0,
    "sessions.idle.udp": 30.0,
    "sessions.idle.icmp": 10.0,
    "sessions.idle.other": 60.0,
}

# Columns recombine needs from sessions.parquet, and what fills an optional one that is absent.
REQUIRED_SESSION_COLUMNS = (
    "session_id",
    "conversation_id",
    "split",
    "exporter",
    "protocol_number",
    "ip_a",
    "port_a",
    "ip_b",
    "port_b",
    "ab_bytes",
    "ba_bytes",
    "ab_packets",
    "ba_packets",
    "opened_at",
    "last_seen_at",
    "closed_at",
    "state",
    "close_reason",
    "late",
    "follows_session_id",
)
_SESSION_TYPES: dict[str, pa.DataType] = {
    "session_id": pa.string(),
    "conversation_id": pa.string(),
    "split": pa.uint32(),
    "exporter": pa.string(),
    "exporter_domain": pa.uint32(),
    "protocol": pa.string(),
    "protocol_number": pa.uint8(),
    "ip_a": pa.string(),
    "port_a": pa.uint16(),
    "ip_b": pa.string(),
    "port_b": pa.uint16(),
    "client_ip": pa.string(),
    "client_port": pa.uint16(),
    "server_ip": pa.string(),
    "server_port": pa.uint16(),
    "role_method": pa.string(),
    "role_confidence": pa.float64(),
    "ab_bytes": pa.uint64(),
    "ba_bytes": pa.uint64(),
    "ab_packets": pa.uint64(),
    "ba_packets": pa.uint64(),
    "sampling_rate": pa.uint32(),
    "counters_scaled": pa.bool_(),
    "ab_flags": pa.uint16(),
    "ba_flags": pa.uint16(),
    "opened_at": TIMESTAMP,
    "last_seen_at": TIMESTAMP,
    "closed_at": TIMESTAMP,
    "state": pa.string(),
    "close_reason": pa.string(),
    "flow_count": pa.uint64(),
    "late_records": pa.uint64(),
    "late": pa.bool_(),
    "follows_session_id": pa.string(),
}


@dataclass
class Run:
    """One sessionize run directory, with what recombine needs from its manifest."""

    path: Path
    index: int = 0  # place in time order among the runs recombined together
    start_us: int | None = None  # data_window.start, UTC µs
    end_us: int | None = None
    settings: dict[str, float] = field(default_factory=dict)  # seconds, seed names
    event_replay: bool = False  # sessions.replay: event (the watermark follows first_seen)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    # its --from/--to (manifest read.from/read.to, UTC µs; None: not given)
    window: tuple[int | None, int | None] = (None, None)
    # the settings, Cartography and Flow Matrix files the run read (manifest, absolute)
    read_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # defaults used, oddities seen
    # traffic an earlier run holds too (overlap.py; cut_losses, by the sequence numbers): in
    # the notes, and said on stderr
    overlaps: list[str] = field(default_factory=list)
    # what it could not read or saw missing (manifest counts): in the notes, said on stderr
    losses: list[str] = field(default_factory=list)
    # where the flows' times contradict its place among the runs: in the notes, on stderr
    order: list[str] = field(default_factory=list)
    # the earliest and latest arrival of its flows (capture or receive time, µs), if known
    arrivals: tuple[int, int] | None = None

    # its tables as they differ from what the manifest cites (outputs): said like losses
    changed: list[str] = field(default_factory=list)
    # sessions.max_open_ksessions (None: the manifest does not say)
    max_open_ksessions: float | None = None
    # each exporter stream's first message and what it expected after its last (manifest
    # counts.sequence_ends): compared across the cut with the run before (cut_losses)
    sequence_ends: list[dict[str, Any]] = field(default_factory=list)

    def idle_us(self, name: str) -> int:
        return round(self.settings[f"sessions.idle.{name}"] * 1_000_000)

    @property
    def hard_timeout_s(self) -> float:
        return self.settings["sessions.hard_timeout"]

    def input_format(self, source_file: str) -> str:
        """The manifest's format for an input path as given to sessionize ("" if unlisted)."""
        for entry in self.inputs:
            if str(entry.get("path")) == source_file:
                return str(entry.get("format", ""))
        return ""

    def input_size(self, source_file: str) -> int | None:
        for entry in self.inputs:
            if str(entry.get("path")) == source_file and entry.get("size") is not None:
                return int(entry["size"])
        return None

    def input_absolute(self, source_file: str) -> str | None:
        """Where sessionize found the input (manifests from before this was kept: None)."""
        for entry in self.inputs:
            if str(entry.get("path")) == source_file and isinstance(entry.get("absolute"), str):
                return str(entry["absolute"])
        return None

    def input_sha256(self, source_file: str) -> str | None:
        for entry in self.inputs:
            if str(entry.get("path")) == source_file and entry.get("sha256") is not None:
                return str(entry["sha256"])
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "path": str(self.path),
            "data_window": {
                "start": iso_us(self.start_us, trim_fraction=True),
                "end": iso_us(self.end_us, trim_fraction=True),
            },
            "settings": dict(sorted(self.settings.items())),
            "inputs": [str(entry.get("path")) for entry in self.inputs],
            "notes": [*self.notes, *self.changed, *self.losses, *self.overlaps, *self.order],
        }


def _parse_time(text: object, where: str) -> int | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise UsageError(f"{where}: expected an ISO-8601 time, got {text!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{where}: not an ISO-8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise UsageError(f"{where}: time {text!r} has no time zone (UTC expected)")
    return (moment - EPOCH) // timedelta(microseconds=1)


def read_run(path: Path) -> Run:
    """Read one run directory's manifest; raise UsageError if it is not a run directory."""
    manifest_path = path / MANIFEST_FILE
    manifest = read_manifest(path)
    if not (path / SESSIONS_FILE).is_file():
        raise UsageError(f"{path}: no {SESSIONS_FILE}; is this a sessionize output directory?")
    run = Run(path=path)
    # the sessions are read whole, and hashed; the flows only in part, by export, so their
    # size alone is compared (a whole read of a day's flows to hash them)
    run.changed = [
        *changed_tables(path, manifest, [SESSIONS_FILE]),
        *changed_tables(path, manifest, [FLOWS_FILE], hashed=False),
    ]
    raw_settings = manifest.get("settings") or {}
    if not isinstance(raw_settings, dict):
        raise UsageError(f"{manifest_path}: 'settings' is not an object")
    for name, default in DEFAULT_SETTINGS.items():
        value = raw_settings.get(name)
        if value is None:
            run.settings[name] = default
            run.notes.append(f"manifest has no {name}; used the default {default:g} s")
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{manifest_path}: setting {name} = {value!r} is not seconds") from exc
        if not math.isfinite(seconds) or seconds < 0:
            raise UsageError(f"{manifest_path}: setting {name} = {value!r} is not a duration")
        run.settings[name] = seconds
    run.event_replay = raw_settings.get("sessions.replay") == "event"
    window = manifest.get("data_window") or {}
    if isinstance(window, dict):
        run.start_us = _parse_time(window.get("start"), f"{manifest_path} data_window.start")
        run.end_us = _parse_time(window.get("end"), f"{manifest_path} data_window.end")
    read = manifest.get("read") or {}
    if isinstance(read, dict):
        run.window = (
            _parse_time(read.get("from"), f"{manifest_path} read.from"),
            _parse_time(read.get("to"), f"{manifest_path} read.to"),
        )
    inputs = manifest.get("inputs") or []
    if isinstance(inputs, list):
        run.inputs = [entry for entry in inputs if isinstance(entry, dict)]
    for name in ("settings_file", "cartography", "flow_matrix"):
        cited = manifest.get(name)
        if isinstance(cited, dict) and isinstance(cited.get("absolute"), str):
            run.read_files.append(Path(cited["absolute"]))
    counts = manifest.get("counts")
    run.losses = _losses(counts)
    ends = counts.get("sequence_ends") if isinstance(counts, dict) else None
    if isinstance(ends, list):
        run.sequence_ends = [end for end in ends if isinstance(end, dict)]
    cap = raw_settings.get("sessions.max_open_ksessions")
    if isinstance(cap, int | float) and not isinstance(cap, bool):
        run.max_open_ksessions = float(cap)
    return run


def _losses(counts: object) -> list[str]:
    """What the run could not read or saw missing, from its manifest's counts: a
    conversation whose records were among them comes out cut short, or not at all, and its
    state is inferred from what is left. The report said nothing of it (a review: a
    fragmented export datagram lost at the cut between two slices' runs, and the
    conversation it carried came out "complete", closed by an idle it never had)."""
    if not isinstance(counts, dict):
        return []
    notes = []
    if counts.get("records_read") == 0:
        notes.append("read no flow record")
    skipped, skipped_bytes = counts.get("skipped"), counts.get("skipped_bytes")
    if isinstance(skipped, dict) and skipped:
        sizes = skipped_bytes if isinstance(skipped_bytes, dict) else {}
        parts = [
            f"{count} {reason}" + (f" ({sizes[reason]} bytes)" if sizes.get(reason) else "")
            for reason, count in sorted(skipped.items())
        ]
        notes.append(
            "left out while reading: "
            + ", ".join(parts)
            + " (manifest.json counts.skipped): its conversations may lack records"
        )
    loss = counts.get("sequence_loss")
    entries = [e for e in loss if isinstance(e, dict)] if isinstance(loss, list) else []
    lost = [e for e in entries if e.get("lost") or ("nfcapd_failures" in e and e.get("gaps"))]
    if lost:
        notes.append(
            f"the sequence numbers of {_exporters(lost)} show "
            f"{sum(_count(e.get('gaps')) for e in lost)} gap(s), "
            f"{sum(_count(e.get('lost')) for e in lost)} unit(s) lost {SEQUENCE_UNITS}: its "
            "inputs lack part of what was exported"
        )
    # nfcapd's failures apart from the captures' gaps (manifests before they were kept
    # apart: an entry with gaps and nothing lost was nfcapd's)
    failures = [
        e for e in entries if _failures(e) and ("nfcapd_failures" in e or not e.get("lost"))
    ]
    if failures:
        notes.append(
            f"nfcapd counted {sum(_failures(e) for e in failures)} sequence "
            f"failure(s) of {_exporters(failures)}: a loss, a late datagram or a numbering "
            "it misreads (softflowd's IPFIX)"
        )
    return notes


def _failures(entry: dict[str, Any]) -> int:
    """nfcapd's sequence failures of a manifest's sequence_loss entry."""
    return _count(entry["nfcapd_failures"] if "nfcapd_failures" in entry else entry.get("gaps"))


def _count(value: object) -> int:
    """A manifest's count, or 0 for what is none (an edited manifest's text)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _exporters(entries: list[dict[str, Any]]) -> str:
    names = sorted({f"{e.get('exporter')} (domain {e.get('domain')})" for e in entries})
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def order_runs(paths: Sequence[Path]) -> list[Run]:
    """Read the runs and put them in data-window order; the same directory twice is an error."""
    if not paths:
        raise UsageError("recombine needs at least one sessionize run directory")
    seen: dict[Path, Path] = {}
    runs: list[Run] = []
    for path in paths:
        resolved = Path(path).resolve()
        if resolved in seen:
            raise UsageError(f"{path}: the same run directory was given twice")
        seen[resolved] = Path(path)
        runs.append(read_run(Path(path)))
    # in the order their records arrived (the first frame's capture time, an nfcapd
    # record's receive time), as the captures were made: by the flows' own times, one late
    # record in a slice put it before the slice before it, and every conversation crossing
    # the two cuts went unjoined (found by an audit: 5 conversations came out 9); runs whose
    # flows table says nothing of it, by their data window
    for run in runs:
        run.arrivals = arrival_span(run.path)
    if len(runs) > 1:  # (alone, a run has no place to lose)
        for run in runs:
            if run.arrivals is None and (problem := _no_arrival(run.path)):
                # said once: "missing, though the manifest cites it" is this one's start
                missing = f"{FLOWS_FILE} is missing, though"
                run.changed = [t for t in run.changed if not t.startswith(missing)]
                run.changed.append(problem)
    runs.sort(
        key=lambda r: run_order_key(
            None if r.arrivals is None else r.arrivals[0], r.start_us, r.end_us, str(r.path)
        )
    )
    for index, run in enumerate(runs):
        run.index = index
    _order_contradicted(runs)
    cut_losses(runs)
    return runs


def _order_contradicted(runs: list[Run]) -> None:
    """Note a run placed by its first arrival after one whose flows come after its own:
    a capture clock set wrong (a sensor in another time zone, or never synchronised) put
    a slice 400 s before the slice it follows, and every conversation across the two cuts
    came out in two, without a word (a review). Its data window starts and ends earlier,
    and less than half of it reaches into the other's (slices of one capture share the
    records across their cut: 25 s of that slice's 185). The arrival order stands (one
    late record must not reorder slices, see above); flows made offline (nfpcapd over an
    old capture) read so too, and the note says what to check."""
    for before, after in pairwise(runs):
        if (
            before.arrivals is None
            or after.arrivals is None
            or before.start_us is None
            or before.end_us is None
            or after.start_us is None
            or after.end_us is None
        ):
            continue
        if (
            after.start_us < before.start_us
            and after.end_us < before.end_us
            and 2 * (after.end_us - before.start_us) < after.end_us - after.start_us
        ):
            after.order.append(
                f"its flows' times ({iso_us(after.start_us, trim_fraction=True)} to "
                f"{iso_us(after.end_us, trim_fraction=True)}) come before run "
                f"{before.index}'s ({iso_us(before.start_us, trim_fraction=True)} to "
                f"{iso_us(before.end_us, trim_fraction=True)}), though its captures' first "
                "frame came after: runs are placed by capture time, so a capture clock set "
                "wrong puts them out of order, and conversations across the cut are not "
                "joined (check the capture hosts' clocks)"
            )


SEQUENCE_MASK = 0xFFFF_FFFF


def cut_losses(runs: list[Run]) -> None:
    """Give each run whose exporter's first message does not follow the last message of
    another run (of that exporter, domain and version) a note of the units between: a
    datagram lost at the cut between two runs' captures was seen by neither run, and the
    conversations it carried came out whole (a review), as did a time between two
    captures. Each run's end is paired with the run whose first message is the nearest
    ahead of it in the numbering (runs ordered by arrival need not be in the exporter's
    order: three slices of a softflowd capture came out 0, 2, 1). A first message follows
    when its number is what the run before expected next (RFC numbering: the units before
    it; IPFIX's flow records alone, as nfdump and softflowd count), its own units on from
    the last number (softflowd's IPFIX numbers a message's own records), or the last
    number plus one (an exporter that numbers messages).

    The other way round, a run whose first message is numbered within what another run
    read, short of what that run expected next, starts inside it: the two captures overlap,
    the records numbered between are in both runs, and recombined, their conversations
    counted them twice without a word (a review: two slices of one capture sharing two
    datagrams, 42 flows of 40). It gets a note of the units (Run.overlaps); a number behind
    all the other run read is a restart, and says nothing, as do runs over --from/--to
    windows, which need not hold all the records of the datagrams they read."""
    by_key: dict[tuple[object, object, object], list[tuple[Run, dict[str, Any]]]] = {}
    for run in runs:
        for end in run.sequence_ends:
            key = (end.get("exporter"), end.get("domain"), end.get("version"))
            by_key.setdefault(key, []).append((run, end))
    for key, ends in by_key.items():
        for run, before in ends:
            distances = [
                (_units_between(before, after), other.index, other)
                for other, after in ends
                if other is not run
            ]
            ahead = [(d, index, other) for d, index, other in distances if d is not None]
            if not ahead:
                continue
            distance, _, after_run = min(ahead, key=lambda item: item[:2])
            if distance:
                after_run.losses.append(
                    f"the sequence numbers of {key[0]} (domain {key[1]}, v{key[2]}) go on "
                    f"{distance} unit(s) past where run {run.index} ended: neither run's "
                    "captures hold what they number (lost at the cut, or sent between the "
                    "captures)"
                )
        for run, after in ends:
            for other, before in ends:
                # runs over --from/--to windows read a datagram's records within theirs
                # only: two slices of one capture both read the datagrams across the cut,
                # each its own records of them (overlap.shared_records counts those read
                # twice)
                windowed = run.window != (None, None) or other.window != (None, None)
                if other is run or windowed or not _captured_together(run, other):
                    continue
                behind = _units_behind(before, after)
                # two runs that start at one number start inside each other: said once,
                # on the later
                if behind is None or (
                    after.get("first") == before.get("first") and run.index < other.index
                ):
                    continue
                run.overlaps.append(
                    f"the sequence numbers of {key[0]} (domain {key[1]}, v{key[2]}) start "
                    f"{behind} unit(s) before where run {other.index} ended: those records "
                    "may be in both runs (captures that overlap), and recombined, their "
                    "conversations count them twice"
                )


def _captured_together(one: Run, other: Run) -> bool:
    """Whether the two runs' records arrived over spans that meet: captures that overlap
    do, and numbers that fall in another run's range otherwise are an exporter's new
    numbering after a restart (a review: slices of pmacct's restart capture, and the runs
    either side of the restart, all read as overlapping). Unknown arrivals: False."""
    if one.arrivals is None or other.arrivals is None:
        return False
    return max(one.arrivals[0], other.arrivals[0]) <= min(one.arrivals[1], other.arrivals[1])


def _units_between(before: dict[str, Any], after: dict[str, Any]) -> int | None:
    """Units numbered between the last message of one run and the first of another: 0
    when the first follows, None when it is behind, or a number is missing."""
    first, last = after.get("first"), before.get("last")
    if not isinstance(first, int) or not isinstance(last, int):
        return None
    expected = [
        v for v in (before.get("expected"), before.get("expected_flows")) if isinstance(v, int)
    ]
    own = [
        v for v in (after.get("first_units"), after.get("first_flow_units")) if isinstance(v, int)
    ]
    gaps = [(first - mark) & SEQUENCE_MASK for mark in expected]
    if before.get("inclusive") or after.get("inclusive"):
        # softflowd's IPFIX numbers a message's own records too: its first message's
        # records are needed, and a message whose data waited for a template in vain has
        # none to tell (a slice's one message read 8 "lost")
        if not own:
            return None
        gaps += [(first - units - last) & SEQUENCE_MASK for units in own]
    if before.get("counts_messages") or after.get("counts_messages"):
        gaps.append((first - last - 1) & SEQUENCE_MASK)
    ahead = [gap for gap in gaps if gap < 1 << 31]
    return min(ahead) if ahead else None


def _units_behind(before: dict[str, Any], after: dict[str, Any]) -> int | None:
    """Units numbered by one run (`before`) that another's first message numbers again:
    how far that message's first unit is behind what `before` expected next, when it is
    behind in every numbering _units_between weighs and lies within what `before` read,
    from its first message's first unit on (the fewest units, of the numberings where it
    does); None otherwise: ahead in one (no overlap), outside (a restart, which numbers
    afresh from far behind), or a number missing."""
    first, last, start = after.get("first"), before.get("last"), before.get("first")
    if not isinstance(first, int) or not isinstance(last, int) or not isinstance(start, int):
        return None
    if _units_between(before, after) is not None:
        return None
    # (the first unit `after` numbers, the first unit `before` read, what it expected next)
    spans = [
        (first, start, mark)
        for mark in (before.get("expected"), before.get("expected_flows"))
        if isinstance(mark, int)
    ]
    if before.get("inclusive") or after.get("inclusive"):
        # softflowd's IPFIX: a message's number counts its own records, the last number
        # is what comes next; with the first message's records unknown, nothing is said
        # (as _units_between says nothing)
        own = [
            v
            for v in (after.get("first_units"), after.get("first_flow_units"))
            if isinstance(v, int)
        ]
        if not own:
            return None
        read = before.get("first_units")
        low = (start - read) & SEQUENCE_MASK if isinstance(read, int) else start
        spans += [((first - units) & SEQUENCE_MASK, low, last) for units in own]
    if before.get("counts_messages") or after.get("counts_messages"):
        spans.append((first, start, (last + 1) & SEQUENCE_MASK))
    # within [low, mark), a span of under half the numbers: a run an exporter restarted in
    # begins in one numbering and ends in another, and its span is no numbers it read (a
    # pmacct capture's slice, 174 on to 58, held every other run's first)
    behind = [
        (mark - unit) & SEQUENCE_MASK
        for unit, low, mark in spans
        if (unit - low) & SEQUENCE_MASK < (mark - low) & SEQUENCE_MASK < 1 << 31
    ]
    return min(behind) if behind else None


def run_order_key(
    arrival_us: int | None, start_us: int | None, end_us: int | None, path: str
) -> tuple[int, int, int, str]:
    """Where a run goes among others: by its first arrival, or its data window's start where
    its flows table gives none (in one slot, so such a run is not put after all the others),
    then its window, then its path. recombine and query.load number runs alike with it.
    Arrivals are compared to the millisecond, as nfcapd keeps them (a capture's µs): a run
    of a PCAP and one of the nfcapd file of the same collection, cut by `--from/--to`,
    first arrived in one millisecond, and the later window's nfcapd run went first
    (.896 before .896942), its conversations across the cut unjoined (an audit)."""
    far = 2**62
    first = arrival_us if arrival_us is not None else start_us
    return (
        far if first is None else first // 1000,
        far if start_us is None else start_us,
        far if end_us is None else end_us,
        path,
    )


def _no_arrival(path: Path) -> str | None:
    """Why a run's flows table gives no first arrival, when it is missing or unreadable: the
    run is placed among the others by its data window, which a late record can put before
    the run it follows, and its conversations across the cut go unjoined. Said: a damaged
    flows table changed the runs' order and the result without a word (a review)."""
    flows = path / FLOWS_FILE
    try:
        pq.read_metadata(flows)
    except (OSError, pa.ArrowException) as exc:
        what = "missing" if not flows.exists() else f"unreadable ({exc})"
        return (
            f"{FLOWS_FILE} is {what}: the run is placed among the others by its data "
            "window, not by when its records arrived, and conversations across its cuts "
            "may go unjoined"
        )
    return None


def first_arrival(path: Path) -> int | None:
    """The earliest `arrival` (µs) of a run's flows, from the row groups' statistics in the
    table's footer (nothing else is read); None when there are none."""
    span = arrival_span(path)
    return None if span is None else span[0]


def arrival_span(path: Path) -> tuple[int, int] | None:
    """The earliest and the latest `arrival` (µs) of a run's flows, from the footer's
    statistics as first_arrival; None when there are none."""
    flows = path / FLOWS_FILE
    if not flows.is_file():
        return None
    try:
        metadata = pq.ParquetFile(flows).metadata
    except (OSError, pa.ArrowException):
        return None  # refused with its words where the table is read
    columns = [
        i for i in range(metadata.num_columns) if metadata.schema.column(i).name == "arrival"
    ]
    lows, highs = [], []
    for group in range(metadata.num_row_groups) if columns else ():
        stats = metadata.row_group(group).column(columns[0]).statistics
        if (
            stats is not None
            and stats.has_min_max
            and isinstance(stats.min_raw, int)
            and isinstance(stats.max_raw, int)
        ):
            lows.append(stats.min_raw)
            highs.append(stats.max_raw)
    return (min(lows), max(highs)) if lows else None


def read_sessions(run: Run) -> pa.Table:
    """The run's sessions with recombine's columns in fixed types, plus `run_index`."""
    path = run.path / SESSIONS_FILE
    table = read_parquet(path)
    _check_sessions(path, table)
    return _normalized(path, table, run)


def session_batches(run: Run, rows: int) -> Iterator[pa.Table]:
    """The run's sessions as `read_sessions` gives them, `rows` at a time: a run of a day
    is hundreds of millions of sessions, which `recombine --out` never holds at once. A
    table read_sessions refuses is refused with its words, whichever batch shows it."""
    path = run.path / SESSIONS_FILE
    try:
        _check_sessions(path, read_parquet_schema(path))
    except UsageError:
        _readable(path, rows)
        raise
    for batch in iter_parquet(path, rows):
        table = pa.Table.from_batches([batch])
        if any(table.column(name).null_count for name in _non_null(table.schema)):
            _verdict(path, rows)  # raises: the nulls, or a damaged page before them
        try:
            normalized = _normalized(path, table, run)
        except UsageError:
            _verdict(path, rows)
            raise
        yield normalized


def _verdict(path: Path, rows: int) -> None:
    """Raise what read_sessions raises for the whole table (a damaged page first, then nulls
    counted over all of it before any type is cast, columns in order), a column at a time."""
    _readable(path, rows)
    schema = read_parquet_schema(path)
    for name in _non_null(schema):
        nulls = sum(
            batch.column(0).null_count for batch in iter_parquet(path, rows, columns=[name])
        )
        if nulls:
            raise UsageError(
                f"{path}: column {name} has {nulls} null value(s); the sessions "
                "table written by sessionize has none"
            )
    for name, kind in _SESSION_TYPES.items():
        if name in schema.names:
            for batch in iter_parquet(path, rows, columns=[name]):
                _cast(path, name, batch.column(0), kind)


def session_rows(run: Run) -> int:
    """How many sessions the run's table holds, from its footer."""
    return parquet_rows(run.path / SESSIONS_FILE)


def _non_null(schema: pa.Schema) -> list[str]:
    return [
        name
        for name in _SESSION_TYPES
        if name in schema.names and not SESSIONS_SCHEMA.field(name).nullable
    ]


def _check_sessions(path: Path, table: pa.Table | pa.Schema) -> None:
    schema = table if isinstance(table, pa.Schema) else table.schema
    present = {name: kind for name, kind in _SESSION_TYPES.items() if name in schema.names}
    check_columns(
        path,
        table,
        {name: _SESSION_TYPES[name] for name in REQUIRED_SESSION_COLUMNS},
        what="sessions table",
    )
    check_columns(path, table, present, what="sessions table", non_null=_non_null(schema))


def _normalized(path: Path, table: pa.Table, run: Run) -> pa.Table:
    n = table.num_rows
    # the columns present first, each in its type (a value it cannot hold refused with its
    # words), then the absent ones filled from them
    present = {
        name: _cast(path, name, table.column(name), kind)
        for name, kind in _SESSION_TYPES.items()
        if name in table.column_names
    }
    columns = {
        name: present[name] if name in present else _default_column(name, present, n)
        for name in _SESSION_TYPES
    }
    columns["run_index"] = pa.array(np.full(n, run.index, dtype=np.uint32))
    # pa.table(columns) hands a dict to from_pydict, whose stubs (not pa.table's) take
    # chunked arrays
    return pa.Table.from_pydict(columns)


def _readable(path: Path, rows: int) -> None:
    """Read every page (each checked): a damaged one is what reading the whole table says
    before anything about its columns."""
    for _ in iter_parquet(path, rows):
        pass


def _cast(
    path: Path, name: str, column: pa.ChunkedArray[Any] | pa.Array[Any], kind: pa.DataType
) -> pa.ChunkedArray[Any] | pa.Array[Any]:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    try:
        return column.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise UsageError(f"{path}: column {name} ({column.type}) is not {kind}") from exc


_PROTOCOL_KEYWORDS = pa.array([protocol_keyword(number) for number in range(256)])


def _default_column(
    name: str, present: dict[str, pa.ChunkedArray[Any] | pa.Array[Any]], n: int
) -> pa.Array[Any] | pa.ChunkedArray[Any]:
    """Fill an optional column the sessionizer did not write, from the columns it did
    (`present`, already in their types)."""
    fallbacks = {
        "client_ip": "ip_a",
        "client_port": "port_a",
        "server_ip": "ip_b",
        "server_port": "port_b",
    }
    if name in fallbacks:
        return present[fallbacks[name]]
    if name == "protocol":
        # the keyword sessionize writes (TCP, not 6: a trimmed table's conversations would
        # otherwise name their protocol unlike every other run's)
        return pc.take(_PROTOCOL_KEYWORDS, present["protocol_number"])
    if name == "role_method":
        return pa.array(["unknown"] * n, pa.string())
    if name == "flow_count" or name == "late_records" or name == "exporter_domain":
        return pa.array([0] * n, _SESSION_TYPES[name])
    if name in ("ab_flags", "ba_flags"):
        return pa.array([0] * n, pa.uint16())
    if name == "sampling_rate":  # unsampled or unknown, as the sessions table says it
        return pa.array(np.ones(n, dtype=np.uint32))
    if name == "counters_scaled":
        return pa.array(np.zeros(n, dtype=bool))
    if name == "role_confidence":
        return pa.array([0.0] * n, pa.float64())
    raise KeyError(name)


def empty_sessions() -> pa.Table:
    schema = pa.schema(
        [pa.field(name, kind) for name, kind in _SESSION_TYPES.items()]
        + [pa.field("run_index", pa.uint32())]
    )
    return schema.empty_table()
