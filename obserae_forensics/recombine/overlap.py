"""Runs that hold the same traffic twice.

`recombine` joins runs over consecutive captures. Given two runs of the same traffic (two
collectors of one exporter, the v5 and v9 exports of one capture, one capture read twice
under other names), it chained each conversation's two copies across the run boundary and
counted its bytes twice, without a word: the session-id check catches only copies whose
ids are equal, and another export of the same flows differs in its times by milliseconds.

Times alone do not tell such runs from consecutive ones: an offline export (softflowd -r)
sends its records out of time order, so the runs of consecutive slices of it overlap in
time as much as two copies do (all 664 sessions of the corpus SYN scan's middle slice
open before another slice's last record). What a copy has and a continuation has not is
a twin: a session of an earlier run with the same exporter, protocol, endpoints and
counters, opened within the grace of it. A conversation crossing a cut goes on with other
counters; a SYN scan's probes, alike in their counters, differ in their ports.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .runs import Run

if TYPE_CHECKING:
    import numpy.typing as npt

SHARE = 0.5  # of a run's sessions of an exporter, twins of an earlier run's
# and at least this many: a probe every 10-30 s on fixed ports makes a twin now and then
MIN_TWINS = 5
TWIN_COLUMNS = ("ab_bytes", "ba_bytes", "ab_packets", "ba_packets")
# per (run, exporter): sessions with a twin in an earlier run, and the earliest such run
Twins = tuple[Counter[tuple[int, str]], dict[tuple[int, str], int]]


@dataclass
class OverlapCheck:
    """Per run and exporter: its sessions, and those with a twin in an earlier run."""

    sessions: Counter[tuple[int, str]] = field(default_factory=Counter)
    twins: Counter[tuple[int, str]] = field(default_factory=Counter)
    # (run, exporter) -> the earlier run its first twin was found in (the lowest)
    earlier: dict[tuple[int, str], int] = field(default_factory=dict)

    def count(self, sessions: pa.Table) -> None:
        """Sessions of the runs (with run_index), each counted once, in any batches."""
        grouped = sessions.group_by(["run_index", "exporter"]).aggregate([([], "count_all")])
        for run, exporter, count in zip(
            *(grouped.column(name).to_pylist() for name in ("run_index", "exporter", "count_all")),
            strict=True,
        ):
            self.sessions[int(run), str(exporter)] += int(count)

    def add(self, found: Twins) -> None:
        """What twin_counts found in some sessions (every run's of some keys)."""
        counts, earlier = found
        self.twins.update(counts)
        for place, run in earlier.items():
            self.earlier[place] = min(run, self.earlier.get(place, run))

    def note(self, runs: list[Run]) -> None:
        """Give each run holding an earlier run's traffic a note of it (Run.overlaps: the
        report's run notes, and the command's warnings)."""
        for (run_index, exporter), twins in sorted(self.twins.items()):
            total = self.sessions[run_index, exporter]
            if twins < max(MIN_TWINS, SHARE * total):
                continue
            runs[run_index].overlaps.append(
                f"{twins} of its {total} sessions of exporter {exporter} repeat one of run "
                f"{self.earlier[run_index, exporter]} (the same endpoints and counters, "
                "opened within the grace): the runs hold the same traffic (two collectors, "
                "or one capture exported or read twice), and recombined, its conversations "
                "count it twice (joined across the run boundary where the rules allow); "
                "recombine joins runs over consecutive captures"
            )
        shared_records(runs)


def shared_records(runs: list[Run]) -> None:
    """Give each run that read records of a capture an earlier run read too a note of how
    many (Run.overlaps). Two runs of one capture over `--from/--to` windows that overlap
    (or none) hold those records twice: recombined, a conversation's were counted twice,
    without a word when too few sessions repeat whole for a twin to show (an audit: one
    record of 62, 30 ms of overlap). From the manifests alone: a capture (by SHA-256) of
    `total` records (read and outside the window), of which two runs read `a` and `b`,
    has at least a + b - total of them in both."""
    inputs = [_records_by_input(run) for run in runs]
    for later, run in enumerate(runs):
        for first, earlier in enumerate(runs[:later]):
            for digest, (read, total, name) in sorted(inputs[later].items()):
                before = inputs[first].get(digest)
                if before is None:
                    continue
                both = read + before[0] - max(total, before[1])
                if both > 0:
                    run.overlaps.append(
                        f"at least {both} of the {read} flow records it read from {name} "
                        f"run {earlier.index} read too (the same capture, SHA-256 "
                        f"{digest[:16]}..., read over windows that overlap): recombined, "
                        "their conversations count them twice; give the runs --from/--to "
                        "windows that do not overlap"
                    )
                neither = max(total, before[1]) - read - before[0]
                if neither > 0 and _joined(earlier.window, run.window):
                    run.overlaps.append(
                        f"at least {neither} of the {max(total, before[1])} flow records of "
                        f"{name} neither it nor run {earlier.index} read (the same capture, "
                        f"SHA-256 {digest[:16]}..., read over windows that meet): --from/--to "
                        "keep the records wholly inside a window, so a record that crosses "
                        "the cut between the two is in neither, and recombined, the "
                        "conversations crossing it lack those records"
                    )


def _joined(one: tuple[int | None, int | None], other: tuple[int | None, int | None]) -> bool:
    """Whether two --from/--to windows (None: open) together cover all time, one from the
    start and the other to the end, meeting or overlapping: slices of one capture cut at
    an instant, so that what neither run read crossed the cut (a review: 7 of 72 records
    lost without a word). Windows that leave time out (a gap between them, a bounded
    first start or last end) left records out by choice, and the count could not tell
    them from those across a cut (a review of the note: 40 of 100 "lost" of windows
    [100, 200] and [200, 300])."""
    if one == (None, None) or other == (None, None):
        return False  # a run without a window read every record: none is in neither
    first, second = (one, other) if one[0] is None else (other, one)
    if first[0] is not None or second[1] is not None:
        return False  # neither starts at the beginning, or the other does not run on
    # the first from the beginning, the second to the end: they cover all time when
    # the second starts no later than the first ends
    return first[1] is None or second[0] is None or second[0] <= first[1]


def _records_by_input(run: Run) -> dict[str, tuple[int, int, str]]:
    """Per input's SHA-256: (records read, records read and outside the window, path)."""
    found: dict[str, tuple[int, int, str]] = {}
    for entry in run.inputs:
        digest = entry.get("sha256")
        read = entry.get("records")
        if not digest or not isinstance(read, int) or read <= 0:
            continue
        outside = entry.get("outside_window")
        total = read + (outside if isinstance(outside, int) else 0)
        if digest in found:  # a byte-for-byte copy within the run: read once
            continue
        found[str(digest)] = (read, total, str(entry.get("path")))
    return found


def twin_counts(sessions: pa.Table, runs: list[Run]) -> Twins:
    """Per (run, exporter), its sessions with a twin in an earlier run (see the module),
    and the earliest run a twin was found in. `sessions`: every run's sessions of some
    keys (all of a key's: a recombine bucket, or all sessions)."""
    if sessions.num_rows == 0 or len(runs) < 2:
        return Counter(), {}
    run = np.asarray(sessions.column("run_index").to_numpy(), dtype=np.int64)
    (exporter,) = _codes(sessions.column("exporter"))
    ip_a, ip_b = _codes(sessions.column("ip_a"), sessions.column("ip_b"))
    port_a = np.asarray(sessions.column("port_a").to_numpy(), dtype=np.int64)
    port_b = np.asarray(sessions.column("port_b").to_numpy(), dtype=np.int64)
    ab_bytes, ba_bytes, ab_packets, ba_packets = (
        np.asarray(sessions.column(name).to_numpy(), dtype=np.uint64) for name in TWIN_COLUMNS
    )
    # one orientation for both copies, whichever endpoint each took for `a`
    swap = (ip_a > ip_b) | ((ip_a == ip_b) & (port_a > port_b))
    low_ip, high_ip = np.where(swap, ip_b, ip_a), np.where(swap, ip_a, ip_b)
    low_port, high_port = np.where(swap, port_b, port_a), np.where(swap, port_a, port_b)
    out_bytes, in_bytes = np.where(swap, ba_bytes, ab_bytes), np.where(swap, ab_bytes, ba_bytes)
    out_packets = np.where(swap, ba_packets, ab_packets)
    in_packets = np.where(swap, ab_packets, ba_packets)
    protocol = np.asarray(sessions.column("protocol_number").to_numpy(), dtype=np.int64)
    opened = np.asarray(sessions.column("opened_at").cast(pa.int64()).to_numpy(), dtype=np.int64)
    keys = (
        exporter,
        protocol,
        low_ip,
        low_port,
        high_ip,
        high_port,
        out_bytes,
        in_bytes,
        out_packets,
        in_packets,
    )
    order = np.lexsort((run, opened, *keys[::-1]))
    same = np.ones(len(order) - 1, dtype=bool)
    for key in keys:
        ordered = key[order]
        same &= ordered[1:] == ordered[:-1]
    grace = np.array(
        [round(r.settings["sessions.grace"] * 1_000_000) for r in runs], dtype=np.int64
    )
    run_o, opened_o = run[order], opened[order]
    # a session and the one before it in time: a twin when the other is of an earlier run
    # and they opened within the later run's grace of each other
    near = same & (opened_o[1:] - opened_o[:-1] <= grace[np.maximum(run_o[1:], run_o[:-1])])
    later_second = near & (run_o[:-1] < run_o[1:])
    later_first = near & (run_o[1:] < run_o[:-1])
    twin = np.zeros(len(order), dtype=bool)
    twin[1:] |= later_second
    twin[:-1] |= later_first
    other = np.full(len(order), -1, dtype=np.int64)
    other[1:] = np.where(later_second, run_o[:-1], -1)
    other[:-1] = np.where(
        later_first & ((other[:-1] < 0) | (run_o[1:] < other[:-1])), run_o[1:], other[:-1]
    )
    # per (run, exporter): the twins and the earliest run they repeat, grouped in numpy (a
    # copy of a run is millions of twins)
    rows = order[twin]
    group = run[rows] * (int(exporter.max()) + 1) + exporter[rows]
    _, first_row, inverse = np.unique(group, return_index=True, return_inverse=True)
    sizes = np.bincount(inverse)
    soonest = np.full(len(first_row), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(soonest, inverse, other[twin])
    # (the stubs type pa.array of any ndarray as a BooleanArray: these are positions)
    names = (
        sessions.column("exporter").take(cast(pa.Int64Array, pa.array(rows[first_row]))).to_pylist()
    )
    places = [
        (int(index), str(name))
        for index, name in zip(run[rows[first_row]].tolist(), names, strict=True)
    ]
    return (
        Counter(dict(zip(places, sizes.tolist(), strict=True))),
        dict(zip(places, soonest.tolist(), strict=True)),
    )


def _codes(*columns: pa.ChunkedArray[Any]) -> list[npt.NDArray[np.int64]]:
    """Integer codes shared by text columns: equal text, equal code."""
    joined = pa.chunked_array(
        [chunk for column in columns for chunk in column.chunks], type=pa.string()
    ).combine_chunks()
    encoded = cast("pa.DictionaryArray[Any, Any]", pc.dictionary_encode(joined))
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    sizes = np.cumsum([0, *(len(column) for column in columns)])
    return [codes[sizes[i] : sizes[i + 1]] for i in range(len(columns))]
