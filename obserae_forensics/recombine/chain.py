"""Chain session fragments into conversations, with whole-table numpy sorts (no loop per session).

Input: the sessions of one or more `sessionize` runs (sessions.parquet, SESSIONS_SCHEMA) in
data-window order. A fragment's *parent* is the fragment it continues; conversations are the
trees the parent links make, found by pointer jumping (log2(depth) passes over the arrays).
Per exporter and key (protocol + unordered endpoints), a fragment's parent is, in this order:

1. `late`: the session named by its `follows_session_id` (same exporter and key only), within
   that one's idle timeout; a late session that names nothing (the sessionizer remembers a
   key's last closed session only, and a run never sees an earlier run's) follows the
   non-late session of its key, of its run or an earlier one, that opened last at or before
   it;
2. `split`: the fragment of the same run with the same `conversation_id` and `split - 1`
   (the sessionizer's own hard_timeout/evicted links, kept as it made them);
3. the previous non-late session of the key in time order, when that one was cut
   (`hard_timeout`, `evicted`, or still open at the end of an earlier run, or closed only
   because that run ended: `run_boundary`) and
   this one opened within the previous one's idle timeout (`first_seen <= last_seen + idle`,
   as sessions.md states the join rule; idle by protocol and state, from the earlier run's
   manifest).

A chain never mixes exporters or keys. Orientation comes from the chain's root (the first
non-late fragment): a fragment whose own `ip_a`/`port_a` is the root's `b` side has its counters
swapped. The server side comes from the fragment whose own inference was the most confident
(the earliest on a tie), and a fragment whose own client/server disagrees with it is listed in
`orientation_conflicts`.

The surprising thing: a conversation still `active` at the end of one run that the next run
shows going quiet (no continuation within the idle timeout, although the next run covers that
time) ended there; its final state is settled as the sessionizer would have closed it on one
run over both captures (`state_inferred` = true), so that recombining consecutive runs gives the
same conversations as one run over the whole capture. So is a conversation whose last fragment
was cut (`hard_timeout`, `evicted`) and that nothing continued although the window goes on:
its close reason is how it ended, not where the sessionizer cut it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..counters import ceiling_sums
from ..errors import LinkCycle, UsageError
from ..protocols import PORT_PROTOCOLS
from ..schema import SESSIONS_SCHEMA, TIMESTAMP
from ..sessionize.row import OPENING_ONLY, REFUSAL_ONLY
from ..sessionize.row import TCP_ACK as ACK
from ..sessionize.row import TCP_FIN as FIN
from ..sessionize.row import TCP_PSH as PSH
from ..sessionize.row import TCP_RST as RST
from ..sessionize.row import TCP_SYN as SYN
from .runs import Run

if TYPE_CHECKING:
    from pyarrow.lib import Int32Type, StringType

_Bools: TypeAlias = npt.NDArray[np.bool_]
_Int64s: TypeAlias = npt.NDArray[np.int64]

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58

IDLE_NAMES = ("tcp_established", "tcp_half_open", "udp", "icmp", "other")
# link reasons: why a fragment is not part of the one before it (index = code, 0 = root)
LINK_REASONS = ("", "hard_timeout", "evicted", "late", "run_boundary", "split")
# links the tables asked for and chaining refused, by kind (the report's refused_links)
ANOMALIES = ("late_follows_missing", "late_follows_other_key", "split_link_missing")
CUT_REASONS = ("hard_timeout", "evicted")

# "nice" hard_timeout values, seconds: what a person would type into the setting
NICE_SECONDS = np.array(
    [
        1,
        2,
        5,
        10,
        15,
        20,
        30,
        60,
        120,
        300,
        600,
        900,
        1200,
        1800,
        2700,
        3600,
        7200,
        10800,
        14400,
        21600,
        28800,
        43200,
        64800,
        86400,
        2 * 86400,
        3 * 86400,
        4 * 86400,
        5 * 86400,
        6 * 86400,
        7 * 86400,
    ],
    dtype=np.float64,
)


def _session_fields(*names: str) -> list[pa.Field[Any]]:
    """Columns that mean what they mean in `sessions`, with the same types."""
    return [SESSIONS_SCHEMA.field(name) for name in names]


_ENDPOINTS = (
    "protocol",
    "protocol_number",
    "ip_a",
    "port_a",
    "ip_b",
    "port_b",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
)
_COUNTERS = ("ab_bytes", "ba_bytes", "ab_packets", "ba_packets")  # in the conversation's
# orientation: a fragment seen the other way round has its counters swapped

RECOMBINED_SCHEMA = pa.schema(
    [
        pa.field("conversation_id", pa.string(), nullable=False),
        *_session_fields(
            "exporter", "exporter_domain", *_ENDPOINTS, "role_method", "role_confidence"
        ),
        pa.field("fragment_count", pa.uint32(), nullable=False),
        pa.field("splits", pa.list_(pa.uint32()), nullable=False),
        pa.field("session_ids", pa.list_(pa.string()), nullable=False),
        pa.field("split_reasons", pa.list_(pa.string()), nullable=False),
        pa.field("first_seen", TIMESTAMP, nullable=False),
        pa.field("last_seen", TIMESTAMP, nullable=False),
        pa.field("duration_s", pa.float64(), nullable=False),
        *_session_fields(
            *_COUNTERS,
            "sampling_rate",
            "counters_scaled",
            "flow_count",
            "late_records",
            "state",
            "close_reason",
        ),
        pa.field("state_inferred", pa.bool_(), nullable=False),
        pa.field("complete", pa.bool_(), nullable=False),
        pa.field("head_cut", pa.bool_(), nullable=False),
        pa.field("tail_cut", pa.bool_(), nullable=False),
        pa.field("gaps_s", pa.list_(pa.float64()), nullable=False),
        pa.field("orientation_conflicts", pa.list_(pa.string()), nullable=False),
        pa.field("recommended_hard_timeout", pa.float64(), nullable=False),
    ]
)

_fragment_fields: list[pa.Field[Any]] = [
    pa.field("conversation_id", pa.string(), nullable=False),
    pa.field("fragment_index", pa.uint32(), nullable=False),
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("run_index", pa.uint32(), nullable=False),
    pa.field("run_dir", pa.string(), nullable=False),
    pa.field("split", pa.uint32(), nullable=False),
    pa.field("late", pa.bool_(), nullable=False),
    pa.field("link_reason", pa.string(), nullable=True),
    pa.field("joined_fragment", pa.uint32(), nullable=True),
    pa.field("gap_s", pa.float64(), nullable=True),
    pa.field("flipped", pa.bool_(), nullable=False),
    pa.field("orientation_conflict", pa.bool_(), nullable=False),
    *_session_fields(
        "exporter",
        *[e for e in _ENDPOINTS if e != "protocol_number"],
        "opened_at",
        "last_seen_at",
        "closed_at",
        "state",
        "close_reason",
        *_COUNTERS,
        "flow_count",
        "follows_session_id",
    ),
]
FRAGMENTS_SCHEMA = pa.schema(_fragment_fields)


@dataclass
class Chains:
    """The recombined conversations, their fragments, and what chaining noticed on the way."""

    conversations: pa.Table  # RECOMBINED_SCHEMA, ordered by first_seen, exporter, id
    fragments: pa.Table  # FRAGMENTS_SCHEMA, grouped like `conversations`, fragments in order
    exporter_windows: dict[str, tuple[int, int]]  # exporter -> (first µs, last µs) seen
    anomalies: dict[str, int]  # links the tables asked for and recombine refused, by kind
    # follows_session_id of late sessions naming no session of these: counted in
    # late_follows_missing; when these were a part of the runs, the caller knows whether
    # the id is of another part (then of another key: late_follows_other_key)
    unfollowed: pa.Array[Any] = field(default_factory=lambda: pa.array([], pa.string()))


@dataclass(frozen=True)
class RunsContext:
    """What chaining needs to know about all the runs' sessions, not only those it chains:
    the exporters (a code is the rank of the name), each one's window (earliest opened_at,
    latest last_seen_at) and its latest record in each run (where that run's end closed
    sessions). Chaining a part of the sessions (a bucket of keys) with the context of all
    of them gives the rows chaining all of them gives."""

    exporters: pa.Array[Any]  # names, sorted
    first_us: _Int64s  # per exporter code
    last_us: _Int64s  # per exporter code
    # (runs, exporters): latest last_seen_at, int64 min where none
    run_latest: _Int64s

    @staticmethod
    def of(parts: Iterable[pa.Table], runs: int) -> RunsContext:
        """From the sessions, whole or a batch at a time."""
        return RunsContext.from_reduced([RunsContext.reduce(part) for part in parts], runs)

    @staticmethod
    def reduce(sessions: pa.Table) -> pa.Table:
        """What the context keeps of some sessions: per exporter and run, the earliest
        opened_at and the latest last_seen_at."""
        return sessions.group_by(["exporter", "run_index"]).aggregate(
            [("opened_at", "min"), ("last_seen_at", "max")]
        )

    @staticmethod
    def from_reduced(reduced: Sequence[pa.Table], runs: int) -> RunsContext:
        table = (
            pa.concat_tables(reduced)
            if reduced
            else pa.table(
                {
                    "exporter": pa.array([], pa.string()),
                    "run_index": pa.array([], pa.uint32()),
                    "opened_at_min": pa.array([], TIMESTAMP),
                    "last_seen_at_max": pa.array([], TIMESTAMP),
                }
            )
        )
        # (the distinct values of a chunked array are one array; the stubs keep it chunked)
        exporters = cast("pa.Array[Any]", pc.unique(table.column("exporter")))
        exporters = pc.take(exporters, pc.array_sort_indices(exporters))
        code = np.asarray(
            pc.index_in(table.column("exporter"), value_set=exporters).to_numpy(), dtype=np.int64
        )
        run = numpy_of(table.column("run_index"), "int64")
        opened = numpy_of(table.column("opened_at_min"), "int64")
        last = numpy_of(table.column("last_seen_at_max"), "int64")
        count = len(exporters)
        first_us = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
        last_us = np.full(count, np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(first_us, code, opened)
        np.maximum.at(last_us, code, last)
        run_latest = np.full((max(runs, 1), count), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(run_latest, (run, code), last)
        return RunsContext(exporters, first_us, last_us, run_latest)

    def windows(self) -> dict[str, tuple[int, int]]:
        return {
            str(name): (int(self.first_us[i]), int(self.last_us[i]))
            for i, name in enumerate(self.exporters.to_pylist())
        }


def nice_above(seconds: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Smallest "nice" duration strictly above each value (a whole day count past a week)."""
    seconds = np.asarray(seconds, dtype=np.float64)
    index = np.searchsorted(NICE_SECONDS, seconds, side="right")
    beyond = index >= len(NICE_SECONDS)
    out = NICE_SECONDS[np.minimum(index, len(NICE_SECONDS) - 1)]
    days = (np.floor(seconds / 86400.0) + 1.0) * 86400.0
    return np.where(beyond, days, out)


def numpy_of(column: pa.ChunkedArray[Any] | pa.Array[Any], dtype: str) -> npt.NDArray[Any]:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    if column.null_count:
        column = column.fill_null(False if pa.types.is_boolean(column.type) else 0)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)


def _flag(column: pa.ChunkedArray[Any] | pa.Array[Any], value: str) -> _Bools:
    # (Arrow's compute functions take a Python value for a scalar; the stubs do not)
    equal: Any = pc.equal(column, value)  # type: ignore[call-overload]
    return np.asarray(pc.fill_null(equal, False).to_numpy(zero_copy_only=False), dtype=bool)


def _codes(*columns: pa.ChunkedArray[Any]) -> list[_Int64s]:
    """Shared integer codes for several string columns: equal text -> equal code, and codes
    ordered like the texts (null -> -1)."""
    joined = pa.chunked_array(
        [chunk for column in columns for chunk in column.chunks], type=pa.string()
    )
    encoded = cast(
        "pa.DictionaryArray[Int32Type, StringType]", pc.dictionary_encode(joined.combine_chunks())
    )
    # codes by sorted text, not by first appearance: the input's row order must not matter
    order = np.asarray(pc.array_sort_indices(encoded.dictionary).to_numpy(), dtype=np.int64)
    rank = np.empty(len(order) + 1, dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    rank[-1] = -1
    codes = rank[
        np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    ]
    out: list[_Int64s] = []
    at = 0
    for column in columns:
        out.append(codes[at : at + len(column)])
        at += len(column)
    return out


def _sorted_rank(column: pa.ChunkedArray[Any]) -> tuple[_Int64s, int]:
    """Rank of each text in sorted order (a total, hash-free tie breaker), and how many
    distinct texts there are."""
    # (a string column encodes to int32 indices)
    encoded = cast(
        "pa.DictionaryArray[Int32Type, StringType]", pc.dictionary_encode(column.combine_chunks())
    )
    order = np.asarray(pc.array_sort_indices(encoded.dictionary).to_numpy(), dtype=np.int64)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return rank[codes], len(order)


def _group_starts(keys: list[npt.NDArray[Any]]) -> npt.NDArray[np.intp]:
    """Row positions where any of the (already sorted) key arrays changes value."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(change)


def chain_sessions(
    sessions: pa.Table, runs: list[Run], context: RunsContext | None = None
) -> Chains:
    """Recombine the sessions of `runs` (the table read_sessions built, all runs
    concatenated), or, given the `context` of all of them, those of a part holding whole
    keys (exporter, protocol, endpoint pair): no chain crosses keys."""
    n = sessions.num_rows
    anomalies = dict.fromkeys(ANOMALIES, 0)
    if n == 0:
        return Chains(
            RECOMBINED_SCHEMA.empty_table(),
            FRAGMENTS_SCHEMA.empty_table(),
            context.windows() if context is not None else {},
            anomalies,
        )
    sessions = sessions.combine_chunks()
    col = sessions.column
    if context is None:
        context = RunsContext.of([sessions], len(runs))

    session_rank, distinct = _sorted_rank(col("session_id"))
    if distinct != n:
        _refuse_duplicates(sessions, session_rank, runs)

    run = numpy_of(col("run_index"), "int64")
    protocol = numpy_of(col("protocol_number"), "int64")
    split = numpy_of(col("split"), "int64")
    late = numpy_of(col("late"), "bool")
    opened = numpy_of(col("opened_at"), "int64")
    last = numpy_of(col("last_seen_at"), "int64")
    is_open = np.asarray(pc.is_null(col("closed_at")).to_numpy(zero_copy_only=False), dtype=bool)
    ab_flags = numpy_of(col("ab_flags"), "int64")
    ba_flags = numpy_of(col("ba_flags"), "int64")
    ab_packets = numpy_of(col("ab_packets"), "uint64")
    ba_packets = numpy_of(col("ba_packets"), "uint64")
    hard = _flag(col("close_reason"), "hard_timeout")
    evicted = _flag(col("close_reason"), "evicted")
    half_open_state = _flag(col("state"), "half_open")

    exporter = np.asarray(
        pc.index_in(col("exporter"), value_set=context.exporters).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    ip_a, ip_b, client_ip, server_ip = _codes(
        col("ip_a"), col("ip_b"), col("client_ip"), col("server_ip")
    )
    ported = np.isin(protocol, PORT_PROTOCOLS)

    def endpoint(ip: _Int64s, port_name: str) -> _Int64s:
        port = np.where(ported, numpy_of(col(port_name), "int64"), 0)
        end: _Int64s = (ip << 16) | port
        return end

    end_a = endpoint(ip_a, "port_a")
    end_b = endpoint(ip_b, "port_b")
    low = np.minimum(end_a, end_b)
    high = np.maximum(end_a, end_b)
    client = endpoint(client_ip, "client_port")
    server = endpoint(server_ip, "server_port")

    # idle timeout each fragment was judged by: its run's setting for its protocol and state
    tcp = protocol == TCP
    half_open = tcp & (
        half_open_state
        | (~is_open & (ba_packets == 0) & ((ab_flags & SYN) != 0) & ((ab_flags & ACK) == 0))
    )
    category = np.select(
        [tcp & ~half_open, half_open, protocol == UDP, (protocol == ICMP) | (protocol == ICMPV6)],
        [0, 1, 2, 3],
        default=4,
    )
    idle_table = np.array([[r.idle_us(name) for name in IDLE_NAMES] for r in runs], dtype=np.int64)
    idle = idle_table[run, category]

    def same_key(x: npt.NDArray[np.integer[Any]], y: npt.NDArray[np.integer[Any]]) -> _Bools:
        same: _Bools = (
            (exporter[x] == exporter[y])
            & (protocol[x] == protocol[y])
            & (low[x] == low[y])
            & (high[x] == high[y])
        )
        return same

    parent = np.full(n, -1, dtype=np.int64)
    reason = np.zeros(n, dtype=np.int8)

    # 3. the previous non-late session of the key, when it was cut and this one is in time:
    # a key's sessions taken conversation by conversation (by the earliest opening of each
    # of a run's conversations), fragments in split order. Not in opened_at order: the
    # next fragment of an evicted session can open before it (a record reaching back),
    # and this rule then linked fragment 0 after fragment 1, a loop with rule 2's link
    conversation = _codes(col("conversation_id"))[0]
    by_key = np.lexsort((high, low, protocol, exporter))
    new_key = np.zeros(n, dtype=bool)
    new_key[_group_starts([exporter[by_key], protocol[by_key], low[by_key], high[by_key]])] = True
    key_group = np.empty(n, dtype=np.int64)
    key_group[by_key] = np.cumsum(new_key)
    # a conversation is one key's in one run (an edited or merged table may give two keys
    # one id, and the part of a bucketed recombine that holds one of them sees only that
    # one); (key, run) as one dense number, whatever the number of runs
    place, _ = _dense_pairs((key_group, run), (np.zeros(0, np.int64), np.zeros(0, np.int64)))
    fragments_of = _conversation_groups(place, conversation)
    start = _conversation_starts(fragments_of, opened)
    steady = np.flatnonzero(~late)
    order = steady[
        np.lexsort(
            (
                session_rank[steady],
                split[steady],
                conversation[steady],
                run[steady],
                start[steady],
                high[steady],
                low[steady],
                protocol[steady],
                exporter[steady],
            )
        )
    ]
    before, after = order[:-1], order[1:]
    cut_closed = hard[before] | evicted[before]
    # a finished TCP session (FIN both ways, or a RST) closes once the watermark passes its
    # last record: only a record within the grace after it (a trailing ACK) still joins
    # it; later, the same 5-tuple is another connection
    finished_session = tcp & _finished_so_far(
        fragments_of, split, end_a <= end_b, ab_flags, ba_flags
    )
    grace = np.array(
        [round(r.settings["sessions.grace"] * 1_000_000) for r in runs], dtype=np.int64
    )[run]
    reach = np.where(finished_session, grace, idle)
    # at a run's end the watermark jumps to the exporter's last record there, closing what
    # one run over both captures would have kept open for a record delayed across the cut
    event_runs = np.array([r.event_replay for r in runs])
    ended = _closed_by_the_end(
        context.run_latest[run, exporter],
        is_open | hard | evicted | event_runs[run],
        due=last + np.where(finished_session, 0, idle),
        grace=grace,
    )
    cut_open = (is_open[before] | ended[before]) & (run[before] < run[after])
    either_flags = ab_flags | ba_flags
    # a new connection after a finished one is no continuation, even within the grace
    link = (
        same_key(before, after)
        & (cut_closed | cut_open)
        & (opened[after] - last[before] <= reach[before])
        & ~_reconnects(finished_session, before, after, opened, last, either_flags)
    )
    parent[after[link]] = before[link]
    reason[after[link]] = np.where(hard[before[link]], 1, np.where(evicted[before[link]], 2, 4))

    # 2. the sessionizer's own fragment links win inside a run: the fragment of the same
    # conversation_id and split - 1, of the same run and key (sessionize never gives two
    # keys one conversation_id, an edited or merged table may: the key decides, whatever
    # else the table holds), late or not (a late session cut by hard_timeout goes on in a
    # fragment that is not late)
    children = steady[split[steady] > 0]
    if len(children):
        keys, wanted = _dense_pairs(
            ((conversation << 32) | split, place),
            ((conversation[children] << 32) | (split[children] - 1), place[children]),
        )
        key_order = np.argsort(keys, kind="stable")
        sorted_keys = keys[key_order]
        where = np.minimum(np.searchsorted(sorted_keys, wanted), len(sorted_keys) - 1)
        found = (sorted_keys[where] == wanted) & (conversation[children] >= 0)
        target = key_order[where]
        anomalies["split_link_missing"] = int(np.count_nonzero(~found))
        kids, parents = children[found], target[found]
        parent[kids] = parents
        reason[kids] = np.where(hard[parents], 1, np.where(evicted[parents], 2, 5))

    # 1. late sessions join the session they follow
    follows = pc.index_in(col("follows_session_id"), value_set=col("session_id"))
    follows_at = np.asarray(follows.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    named = late & np.asarray(
        pc.is_valid(col("follows_session_id")).to_numpy(zero_copy_only=False), dtype=bool
    )
    unfollowed = pc.filter(col("follows_session_id"), pa.array(named & (follows_at < 0)))
    # a late session that names nothing: the sessionizer remembers only a key's last closed
    # session, and a run never sees the sessions of an earlier one (a record delayed across
    # the cut); sessions.md has it follow the session of its key it falls into or just
    # follows, which is the non-late one opened last at or before it, else the first one
    # its record reaches (as the sessionizer links one: its last_seen past that opening)
    strays = np.flatnonzero(late & ~named)
    follows_at[strays] = _session_it_falls_into(
        strays, steady, keys=(exporter, protocol, low, high), opened=opened, last=last, run=run
    )
    named[strays] = follows_at[strays] >= 0
    anomalies["late_follows_missing"] = int(np.count_nonzero(named & (follows_at < 0)))
    candidates = np.flatnonzero(named & (follows_at >= 0))
    fits = same_key(candidates, follows_at[candidates])
    anomalies["late_follows_other_key"] = int(np.count_nonzero(~fits))
    candidates = candidates[fits]
    # "falls into or just follows": one that starts past the idle timeout of the session it
    # follows is a conversation of its own, as an on-time record there would have been
    followed = follows_at[candidates]
    # nor is a late SYN after a finished connection's last record (closed fin, rst or
    # rejected, or finished by its flags and those of the fragments before it) the same
    # conversation: a new connection on the 5-tuple, which the sessionizer has follow it
    # without going on with it
    finished_close = (
        _flag(col("close_reason"), "fin")
        | _flag(col("close_reason"), "rst")
        | _flag(col("close_reason"), "rejected")
        | finished_session
    )
    candidates = candidates[
        (opened[candidates] - last[followed] <= idle[followed])
        & ~_reconnects(finished_close, followed, candidates, opened, last, either_flags)
    ]
    parent[candidates] = follows_at[candidates]
    reason[candidates] = 3

    root = _roots(parent, col("session_id"))

    # fragments in order: conversation by conversation, each its first fragment then the
    # rest in time order (a fragment can open before the evicted one it continues: first,
    # it said it joined a fragment after it, and made fragment 0 one with a split above 0)
    joined = root != np.arange(n)
    by_root = np.lexsort((session_rank, split, run, late, opened, joined, root))
    group_start = _group_starts([root[by_root]])
    root_of_group = root[by_root[group_start]]
    # conversations by first_seen, their earliest opening (not their first fragment's: it
    # can open after another, and the bucketed merge orders on first_seen)
    first_of_group = np.minimum.reduceat(opened[by_root], group_start)
    group_order = np.lexsort((session_rank[root_of_group], exporter[root_of_group], first_of_group))
    rank_of_group = np.empty(len(group_order), dtype=np.int64)
    rank_of_group[group_order] = np.arange(len(group_order))
    group_id = np.repeat(np.arange(len(group_start)), np.diff(np.append(group_start, n)))
    rows = by_root[np.argsort(rank_of_group[group_id], kind="stable")]

    root_rows = root[rows]
    starts = _group_starts([root_rows])
    counts = np.diff(np.append(starts, n))
    group = np.repeat(np.arange(len(starts)), counts)
    fragment_index = np.arange(n) - starts[group]
    roots = root_rows[starts]  # the root session of each conversation
    # the fragment each one continues, the one its link reason is of: a late fragment joins
    # the session it follows, not always the fragment just before it (the gap before is
    # from the latest end of all before it)
    position_of = np.empty(n, dtype=np.int64)
    position_of[rows] = np.arange(n)
    joined_fragment = fragment_index[position_of[np.maximum(parent[rows], 0)]]
    del position_of

    # the conversation's ip_a sent its earliest record (sessions.md): the fragment that
    # opened first holds it (the first in fragment order on a tie), sent by its ip_a, or by
    # its ip_b when it holds ip_b's records alone: a continuation keeps the orientation of
    # the session it continues. The root's read a connection the open-session cap split
    # backwards, its SYN's sender as port_b, when the continuation held the answer
    # and the SYN's own record, earlier than the evicted answer's (a review)
    opened_rows = opened[rows]
    earliest = rows[
        _first_where(opened_rows == np.minimum.reduceat(opened_rows, starts)[group], starts)
    ]
    swap_ends = (ab_packets[earliest] == 0) & (ba_packets[earliest] > 0)
    conversation_a = np.where(swap_ends, end_b[earliest], end_a[earliest])
    conversation_b = np.where(swap_ends, end_a[earliest], end_b[earliest])
    flipped = end_a[rows] != conversation_a[group]
    # the server side is the fragment's whose own inference was the most confident, the
    # one that opened first on a tie: the root's alone turned a C2 channel round when its
    # first slice saw only a guess (first_sender, 0.5) and the later ones its traffic's
    # shape (0.6), as one run over the whole capture had it (a review)
    confidence = np.nan_to_num(numpy_of(col("role_confidence"), "float64")[rows], nan=-1.0)
    most_confident = confidence >= np.maximum.reduceat(confidence, starts)[group]
    first_opened = np.minimum.reduceat(
        np.where(most_confident, opened_rows, np.iinfo(np.int64).max), starts
    )
    sided = rows[_first_where(most_confident & (opened_rows == first_opened[group]), starts)]
    # a first_sender guess is the conversation's first sender, its ip_a: a fragment's is of
    # the orientation it inherited
    first_sender = _flag(col("role_method"), "first_sender")[sided]
    conversation_client = np.where(first_sender, conversation_a, client[sided])
    conversation_server = np.where(first_sender, conversation_b, server[sided])
    conflict = (client[rows] != conversation_client[group]) | (
        server[rows] != conversation_server[group]
    )

    def oriented(name: str, swapped: str) -> npt.NDArray[np.uint64]:
        own = numpy_of(col(name), "uint64")[rows]
        other = numpy_of(col(swapped), "uint64")[rows]
        counter: npt.NDArray[np.uint64] = np.where(flipped, other, own)
        return counter

    ab_bytes_f = oriented("ab_bytes", "ba_bytes")
    ba_bytes_f = oriented("ba_bytes", "ab_bytes")
    ab_packets_f = oriented("ab_packets", "ba_packets")
    ba_packets_f = oriented("ba_packets", "ab_packets")
    ab_flags_f = np.where(flipped, ba_flags[rows], ab_flags[rows])
    ba_flags_f = np.where(flipped, ab_flags[rows], ba_flags[rows])

    opened_f, last_f = opened[rows], last[rows]
    first_seen = np.minimum.reduceat(opened_f, starts)
    last_seen = np.maximum.reduceat(last_f, starts)

    # gap before each fragment: from the latest last_seen of the fragments before it
    running_last = pd.Series(last_f).groupby(group).cummax().to_numpy()
    previous_last = np.empty(n, dtype=np.int64)
    previous_last[0] = 0
    previous_last[1:] = running_last[:-1]
    has_gap = fragment_index > 0
    gap_us = np.where(has_gap, np.maximum(opened_f - previous_last, 0), 0)

    # the fragment whose state is the conversation's: the non-late one that saw its latest
    # record (not the one opened last: a short fragment can open inside a long one), the
    # later in fragment order on a tie; all late: the last
    score = np.where(late[rows], np.iinfo(np.int64).min, last_f)
    is_latest = score == np.maximum.reduceat(score, starts)[group]
    final_position = np.maximum.reduceat(np.where(is_latest, np.arange(n), -1), starts)
    final = rows[final_position]

    window_start = context.first_us[exporter[roots]]
    window_end = context.last_us[exporter[final]]
    opening_seen = (protocol[roots] == TCP) & (((ab_flags[roots] | ba_flags[roots]) & SYN) != 0)
    head_cut = (split[roots] > 0) | (~opening_seen & (opened[roots] - window_start <= idle[roots]))
    conversation_ab_flags = _or_reduce(ab_flags_f, starts)
    conversation_ba_flags = _or_reduce(ba_flags_f, starts)
    final_tcp = protocol[final] == TCP
    # a finished TCP conversation closes as soon as the watermark passes its last record
    finished = final_tcp & _finished(conversation_ab_flags, conversation_ba_flags)
    deadline = last[final] + np.where(finished, 0, idle[final])
    maybe_more = is_open[final] | hard[final] | evicted[final]
    # the sessionizer's end of input passes the last record: one due at it has ended
    tail_cut = maybe_more & (deadline > window_end)
    # ended inside the window: an open last fragment, or a cut one that nothing continued
    # (its `hard_timeout`/`evicted` says where the sessionizer cut, not how the
    # conversation ended, and read "cut" beside complete = true)
    state_inferred = maybe_more & (deadline <= window_end)

    # (as Arrow text, not a Python string per conversation: 1.2 GB at 5.2 M sessions)
    state = _as_array(pc.take(col("state"), cast(pa.Int64Array, pa.array(final))))
    close_reason = _as_array(pc.take(col("close_reason"), cast(pa.Int64Array, pa.array(final))))
    # a last fragment that saw one direction of a conversation that saw both (its run
    # never saw the other): no one-way attempt, as inside one run (the sessionizer's
    # fragments inherit the directions seen)
    # the conversation's counters, stopped at 2**64 - 1 rather than wrapped (damaged
    # records), as sessions_consolidated's
    totals = ceiling_sums(
        np.stack(
            [
                ab_bytes_f,
                ba_bytes_f,
                ab_packets_f,
                ba_packets_f,
                numpy_of(col("flow_count"), "uint64")[rows],
                numpy_of(col("late_records"), "uint64")[rows],
            ],
            axis=1,
        ),
        starts,
    )
    # a sampled conversation's counters stand for about its rate's times the traffic: the
    # rate beside them, the largest if its fragments differ, as a session's of its records
    # (the report and the table gave 1:100 sampled counters bare: a review)
    sampling_rate = np.maximum.reduceat(numpy_of(col("sampling_rate"), "int64")[rows], starts)
    counters_scaled = np.logical_or.reduceat(numpy_of(col("counters_scaled"), "bool")[rows], starts)
    answered = (totals[:, 2] > 0) & (totals[:, 3] > 0)
    state = pc.if_else(pa.array(answered & _flag(state, "half_open")), "active", state)
    # and a last fragment that timed out after its conversation finished (a trailing ACK
    # after the FINs, the other run's) closed as the finished connection it belongs to
    # and a last fragment reset that held the answer alone, its opening another
    # fragment's (late halves of a refused connection): `rejected` if the conversation's
    # flags say so, as one session of both had it (it read `rst`: a review)
    reset = final_tcp & _flag(close_reason, "rst")
    resettled = (
        (answered & _flag(close_reason, "no_reply"))
        | (finished & (_flag(close_reason, "idle") | _flag(close_reason, "no_reply")))
        | reset
    )
    if state_inferred.any() or resettled.any():
        settled = _settled_reasons(
            tcp=final_tcp,
            half_open=half_open[final] & ~answered,
            ab_flags=conversation_ab_flags,
            ba_flags=conversation_ba_flags,
            ab_packets=totals[:, 2],
            ba_packets=totals[:, 3],
        )
        state = pc.if_else(pa.array(state_inferred), "closed", state)
        # a reset stays one unless the conversation was refused
        kept = reset & ~_flag(settled, "rejected")
        close_reason = pc.if_else(
            pa.array((state_inferred | resettled) & ~kept), settled, close_reason
        )

    # the working arrays done with, freed before the output tables are built (each is one
    # value per session: ~1.5 GB of the peak at 5.2 M sessions)
    # (what the closures endpoint and same_key use stays: ported, exporter, protocol, low, high)
    del (
        session_rank,
        opened,
        last,
        is_open,
        ab_flags,
        ba_flags,
        hard,
        evicted,
        half_open_state,
        ip_a,
        ip_b,
        client_ip,
        server_ip,
        end_a,
        end_b,
        client,
        server,
        tcp,
        half_open,
        category,
        idle,
        parent,
        steady,
        order,
        before,
        after,
        cut_closed,
        finished_session,
        grace,
        reach,
        ended,
        cut_open,
        link,
        conversation,
        by_key,
        new_key,
        key_group,
        place,
        fragments_of,
        start,
        either_flags,
        finished_close,
        joined,
        children,
        follows,
        follows_at,
        named,
        strays,
        candidates,
        fits,
        followed,
        root,
        by_root,
        group_start,
        root_of_group,
        first_of_group,
        group_order,
        rank_of_group,
        group_id,
        ab_flags_f,
        ba_flags_f,
        opened_f,
        last_f,
        running_last,
        previous_last,
        score,
        is_latest,
        final_position,
        window_start,
        window_end,
        opening_seen,
        conversation_ab_flags,
        conversation_ba_flags,
        final_tcp,
        finished,
        deadline,
        maybe_more,
        answered,
        resettled,
        reset,
        confidence,
        most_confident,
        first_opened,
        opened_rows,
        conversation_a,
        conversation_b,
        conversation_client,
        conversation_server,
    )
    duration_s = (last_seen - first_seen) / 1_000_000.0
    session_id = col("session_id")
    session_ids = pc.take(session_id, cast(pa.Int64Array, pa.array(rows)))
    conversation_id = pc.take(session_id, cast(pa.Int64Array, pa.array(roots)))

    fragment_reasons = np.array(LINK_REASONS, dtype=object)[reason[rows]]
    not_root = rows != root_rows
    conversations = _conversation_table(
        sessions,
        roots,
        (earliest, swap_ends),
        (sided, first_sender),
        conversation_id,
        counts=counts,
        starts=starts,
        splits=split[rows].astype(np.uint32),
        session_ids=session_ids,
        reasons=fragment_reasons[not_root],
        reason_offsets=_offsets(np.add.reduceat(not_root.astype(np.int64), starts)),
        first_seen=first_seen,
        last_seen=last_seen,
        duration_s=duration_s,
        ab_bytes=totals[:, 0],
        ba_bytes=totals[:, 1],
        ab_packets=totals[:, 2],
        ba_packets=totals[:, 3],
        flow_count=totals[:, 4],
        late_records=totals[:, 5],
        sampling_rate=sampling_rate,
        counters_scaled=counters_scaled,
        state=state,
        close_reason=close_reason,
        state_inferred=state_inferred,
        head_cut=head_cut,
        tail_cut=tail_cut,
        gaps=(gap_us[has_gap] / 1_000_000.0),
        gap_offsets=_offsets(counts - 1),
        conflicts=pc.filter(session_ids, pa.array(conflict)),
        conflict_offsets=_offsets(np.add.reduceat(conflict.astype(np.int64), starts)),
    )

    run_dirs = np.array([str(r.path) for r in runs], dtype=object)
    fragments = _fragment_table(
        sessions,
        rows,
        pc.take(conversation_id, cast(pa.Int64Array, pa.array(group))),
        fragment_index,
        run=run,
        run_dirs=run_dirs,
        split=split,
        late=late,
        reasons=np.where(not_root, fragment_reasons, np.array(None, dtype=object)),
        joined_fragment=joined_fragment,
        not_root=not_root,
        gap_s=np.where(has_gap, gap_us / 1_000_000.0, np.nan),
        has_gap=has_gap,
        flipped=flipped,
        conflict=conflict,
        counters=(ab_bytes_f, ba_bytes_f, ab_packets_f, ba_packets_f),
    )
    return Chains(conversations, fragments, context.windows(), anomalies, _as_array(unfollowed))


def _closed_by_the_end(latest: _Int64s, kept: _Bools, *, due: _Int64s, grace: _Int64s) -> _Bools:
    """Sessions the end of their run closed: due (idle deadline, or last record of a finished
    TCP connection) at or after the run's last watermark, the exporter's `latest` record
    there less the grace (the sweeps close what is due strictly before it). `kept` sessions
    were not closed that way (still open, or cut, or of an event replay, whose watermark
    follows first_seen, which the tables do not keep: not linked, as before)."""
    return ~kept & (due >= latest - grace)


def _session_it_falls_into(
    strays: npt.NDArray[np.intp],
    steady: npt.NDArray[np.intp],
    *,
    keys: tuple[_Int64s, ...],
    opened: _Int64s,
    last: _Int64s,
    run: _Int64s,
) -> _Int64s:
    """For each of `strays`, the non-late session of its key that opened last at or before
    it, else the first that opened after it within its span (its record reaches into it:
    a client's half, exported after its server's in another run, starts 1 ms before it, a
    review), in its run or an earlier one; else -1."""
    rows = np.concatenate([steady, strays])
    is_stray = np.repeat([False, True], [len(steady), len(strays)])
    # by key, then time; a non-late session opened at the same instant comes first
    order = np.lexsort((is_stray, opened[rows], *[key[rows] for key in reversed(keys)]))
    rows, is_stray = rows[order], is_stray[order]
    positions = np.arange(len(rows))
    latest = np.maximum.accumulate(np.where(is_stray, -1, positions))
    following = np.minimum.accumulate(np.where(is_stray, len(rows), positions)[::-1])[::-1]
    found = np.full(len(strays), -1, dtype=np.int64)
    stray_at = np.flatnonzero(is_stray)
    mine = rows[stray_at]

    def of_its_key(at: npt.NDArray[np.intp]) -> _Int64s:
        candidate = np.where((at >= 0) & (at < len(rows)), rows[np.clip(at, 0, len(rows) - 1)], -1)
        fits = candidate >= 0
        for key in keys:
            fits &= key[np.maximum(candidate, 0)] == key[mine]
        fits &= run[np.maximum(candidate, 0)] <= run[mine]
        chosen: _Int64s = np.where(fits, candidate, -1)
        return chosen

    before = of_its_key(latest[stray_at])
    after = of_its_key(following[stray_at])
    after = np.where((after >= 0) & (opened[np.maximum(after, 0)] <= last[mine]), after, -1)
    found[order[stray_at] - len(steady)] = np.where(before >= 0, before, after)
    return found


def _or_reduce(values: npt.NDArray[np.integer[Any]], starts: npt.NDArray[np.intp]) -> _Int64s:
    reduced: _Int64s = np.bitwise_or.reduceat(values.astype(np.int64), starts)
    return reduced


def _first_where(chosen: _Bools, starts: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """The first position in each group (`starts`) where `chosen` holds (one always does)."""
    positions = np.where(chosen, np.arange(len(chosen)), len(chosen))
    first: npt.NDArray[np.intp] = np.minimum.reduceat(positions, starts)
    return first


def _finished(ab_flags: _Int64s, ba_flags: _Int64s) -> _Bools:
    """TCP flags of a finished connection (kernel._finished): FIN both ways, or a RST."""
    finished: _Bools = (((ab_flags & FIN) != 0) & ((ba_flags & FIN) != 0)) | (
        ((ab_flags | ba_flags) & RST) != 0
    )
    return finished


def _settled_reasons(
    *,
    tcp: _Bools,
    half_open: _Bools,
    ab_flags: _Int64s,
    ba_flags: _Int64s,
    ab_packets: npt.NDArray[np.uint64],
    ba_packets: npt.NDArray[np.uint64],
) -> pa.Array[Any]:
    """The close reason the sessionizer gives a session that times out (sessions.md table)."""
    both = (ab_packets > 0) & (ba_packets > 0)
    rst = tcp & (((ab_flags | ba_flags) & RST) != 0)
    fin = tcp & _finished(ab_flags, ba_flags) & ~rst

    def refused(opener: _Int64s, answer: _Int64s) -> _Bools:
        """An opening (SYN, no PSH or FIN) met a bare RST (no SYN, PSH or FIN) from the
        other side (kernel._state_reason)."""
        refusal: _Bools = (
            ((opener & SYN) != 0)
            & ((opener & OPENING_ONLY) == 0)
            & ((answer & RST) != 0)
            & ((answer & REFUSAL_ONLY) == 0)
        )
        return refusal

    rejected = tcp & (refused(ab_flags, ba_flags) | refused(ba_flags, ab_flags))
    either = ab_flags | ba_flags
    # one-way, no attempt: midstream, or established and pushing data (kernel._state_reason)
    midstream = tcp & ((either & ACK) != 0) & (((either & SYN) == 0) | ((either & PSH) != 0))
    # a RST after data pushed under ACK, seen one way: an established connection reset
    pushed = ((either & ACK) != 0) & ((either & PSH) != 0)
    # in the order of kernel._state_reason: a RST decides before a FIN does
    reasons = ["no_reply", "rejected", "rst", "fin", "idle"]
    codes = np.select(
        [tcp & half_open, rejected, rst & (both | pushed), rst, fin, both | midstream],
        [0, 1, 2, 0, 3, 4],
        default=0,
    ).astype(np.int32)
    # (Arrow takes a list of texts for a dictionary; the stubs only arrays)
    return pa.DictionaryArray.from_arrays(codes, reasons).cast(pa.string())  # type: ignore[arg-type]


def _reconnects(
    finished: _Bools,
    earlier: npt.NDArray[np.integer[Any]],
    later: npt.NDArray[np.integer[Any]],
    opened: _Int64s,
    last: _Int64s,
    flags: _Int64s,
) -> _Bools:
    """`later` opens with a SYN (in `flags`, both directions') after the last record of
    `earlier`, a `finished` connection: a new connection on the 5-tuple (the sessionizer's
    rule 2b', and its _reopens for late sessions)."""
    new: _Bools = finished[earlier] & (opened[later] > last[earlier]) & ((flags[later] & SYN) != 0)
    return new


def _conversation_groups(place: _Int64s, conversation: _Int64s) -> _Int64s:
    """A number for each (`place`: key and run, conversation_id): the sessionizer's
    fragments of one conversation; -1 without a conversation_id."""
    group = np.full(len(conversation), -1, dtype=np.int64)
    named = conversation >= 0
    if named.any():
        none = np.zeros(0, dtype=np.int64)
        pairs, _ = _dense_pairs((place[named], conversation[named]), (none, none))
        group[named] = np.unique(pairs, return_inverse=True)[1]
    return group


def _conversation_starts(group: _Int64s, opened: _Int64s) -> _Int64s:
    """Each session's conversation's earliest opened_at (_conversation_groups; its own
    without one)."""
    named = group >= 0
    earliest = np.full(int(group.max(initial=-1)) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(earliest, group[named], opened[named])
    start = opened.copy()
    start[named] = earliest[group[named]]
    return start


def _finished_so_far(
    group: _Int64s, split: _Int64s, a_is_low: _Bools, ab_flags: _Int64s, ba_flags: _Int64s
) -> _Bools:
    """TCP flags of a finished connection as the sessionizer judges a fragment (its
    _finished): a RST of its own, or FIN from both endpoints in the fragment or the
    fragments before it (a connection whose FINs fall on both sides of a cut finishes in
    the fragment after it; its own flags alone said unfinished, and a new connection
    after it was joined to the conversation)."""
    low_fin: _Bools = (np.where(a_is_low, ab_flags, ba_flags) & FIN) != 0
    high_fin: _Bools = (np.where(a_is_low, ba_flags, ab_flags) & FIN) != 0
    named = np.flatnonzero(group >= 0)
    order = named[np.lexsort((split[named], group[named]))]
    if len(order):
        groups = group[order]
        for fins in (low_fin, high_fin):
            fins[order] = pd.Series(fins[order]).groupby(groups).cummax().to_numpy()
    finished: _Bools = (low_fin & high_fin) | (((ab_flags | ba_flags) & RST) != 0)
    return finished


def _dense_pairs(
    values: tuple[_Int64s, _Int64s], wanted: tuple[_Int64s, _Int64s]
) -> tuple[_Int64s, _Int64s]:
    """Pairs of int64 as one int64 each, equal pairs equal and ordered like the pairs:
    `values` and `wanted` ranked together."""
    ranks = []
    for ours, theirs in zip(values, wanted, strict=True):
        _, inverse = np.unique(np.concatenate([ours, theirs]), return_inverse=True)
        ranks.append(inverse.astype(np.int64))
    width = int(ranks[1].max()) + 1
    combined = ranks[0] * width + ranks[1]
    return combined[: len(values[0])], combined[len(values[0]) :]


def _roots(parent: _Int64s, session_id: pa.ChunkedArray[Any]) -> _Int64s:
    """Each fragment's chain root, by pointer jumping; a cycle in the links is an input error.
    (A cycle whose length is a power of two jumps to a fixed point of its own sessions:
    what is told is whether each one's root is a session that follows none.)"""
    n = len(parent)
    root = np.where(parent >= 0, parent, np.arange(n))
    for _ in range(max(8, int(np.log2(max(n, 2))) + 3)):
        jumped = root[root]
        if np.array_equal(jumped, root):
            break
        root = jumped
    stuck = np.flatnonzero(parent[root] >= 0)
    if len(stuck):
        example = session_id.combine_chunks()[int(stuck[0])].as_py()
        raise LinkCycle(stuck, str(example), len(stuck))
    return root


def _refuse_duplicates(sessions: pa.Table, rank: _Int64s, runs: list[Run]) -> None:
    """A session id seen twice means one capture was given in two runs: refuse to double-count."""
    counts = np.bincount(rank)
    duplicate = int(np.flatnonzero(counts > 1)[0])
    where = np.flatnonzero(rank == duplicate)
    run_index = sessions.column("run_index").to_numpy()
    in_runs = sorted({str(runs[int(run_index[i])].path) for i in where})
    raise overlap(sessions.column("session_id")[int(where[0])].as_py(), len(where), in_runs)


def overlap(session: str, count: int, in_runs: list[str]) -> UsageError:
    """The error of a session seen `count` times, in the runs `in_runs` (sorted)."""
    return UsageError(
        f"session {session} appears {count} times (in {', '.join(in_runs)}): "
        "the runs overlap; recombine runs over distinct, consecutive captures"
    )


def _offsets(lengths: npt.NDArray[Any]) -> pa.Int32Array:
    out = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=out[1:])
    return pa.array(out, pa.int32())


def _list(offsets: pa.Int32Array, values: pa.Array[Any]) -> pa.ListArray[Any]:
    return pa.ListArray.from_arrays(offsets, values)


def _conversation_table(
    sessions: pa.Table,
    roots: _Int64s,
    ends: tuple[_Int64s, _Bools],
    side: tuple[_Int64s, _Bools],
    conversation_id: pa.ChunkedArray[Any],
    **values: Any,
) -> pa.Table:
    """One row per conversation: its exporter and protocol its root's (`roots`), its
    endpoints the fragment's that opened first, swapped where it holds ip_b's records
    alone (`ends`), its server side from the fragment whose inference was the most
    confident, a first_sender guess the conversation's own ip_a (`side`)."""
    take = cast(pa.Int64Array, pa.array(roots))
    take_ends = cast(pa.Int64Array, pa.array(ends[0]))
    take_side = cast(pa.Int64Array, pa.array(side[0]))
    col = sessions.column
    counts: _Int64s = values["counts"]
    columns: dict[str, Any] = {"conversation_id": conversation_id}
    for name in ("exporter", "exporter_domain", "protocol", "protocol_number"):
        columns[name] = pc.take(col(name), take)
    swap, guessed = pa.array(ends[1]), pa.array(side[1])
    for name, other in (("ip_a", "ip_b"), ("port_a", "port_b")):
        own, swapped = pc.take(col(name), take_ends), pc.take(col(other), take_ends)
        columns[name] = pc.if_else(swap, swapped, own)
        columns[other] = pc.if_else(swap, own, swapped)
    for name, guess in (
        ("client_ip", "ip_a"),
        ("client_port", "port_a"),
        ("server_ip", "ip_b"),
        ("server_port", "port_b"),
    ):
        columns[name] = pc.if_else(guessed, columns[guess], pc.take(col(name), take_side))
    for name in ("role_method", "role_confidence"):
        columns[name] = pc.take(col(name), take_side)
    columns["fragment_count"] = pa.array(counts.astype(np.uint32))
    columns["splits"] = _list(_offsets(counts), pa.array(values["splits"], pa.uint32()))
    columns["session_ids"] = _list(
        _offsets(counts),
        values["session_ids"].combine_chunks()
        if isinstance(values["session_ids"], pa.ChunkedArray)
        else values["session_ids"],
    )
    columns["split_reasons"] = _list(
        values["reason_offsets"], pa.array(values["reasons"], pa.string())
    )
    columns["first_seen"] = pa.array(values["first_seen"], pa.int64()).cast(TIMESTAMP)
    columns["last_seen"] = pa.array(values["last_seen"], pa.int64()).cast(TIMESTAMP)
    columns["duration_s"] = pa.array(values["duration_s"], pa.float64())
    for name in ("ab_bytes", "ba_bytes", "ab_packets", "ba_packets", "flow_count", "late_records"):
        columns[name] = pa.array(values[name], pa.uint64())
    columns["sampling_rate"] = pa.array(values["sampling_rate"], pa.int64())
    columns["counters_scaled"] = pa.array(values["counters_scaled"], pa.bool_())
    columns["state"] = _as_array(values["state"])
    columns["close_reason"] = _as_array(values["close_reason"])
    columns["state_inferred"] = pa.array(values["state_inferred"], pa.bool_())
    columns["complete"] = pa.array(~values["head_cut"] & ~values["tail_cut"], pa.bool_())
    columns["head_cut"] = pa.array(values["head_cut"], pa.bool_())
    columns["tail_cut"] = pa.array(values["tail_cut"], pa.bool_())
    columns["gaps_s"] = _list(values["gap_offsets"], pa.array(values["gaps"], pa.float64()))
    conflicts = values["conflicts"]
    if isinstance(conflicts, pa.ChunkedArray):
        conflicts = conflicts.combine_chunks()
    columns["orientation_conflicts"] = _list(values["conflict_offsets"], conflicts)
    columns["recommended_hard_timeout"] = pa.array(nice_above(values["duration_s"]), pa.float64())
    arrays = [_as_array(columns[field.name]).cast(field.type) for field in RECOMBINED_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=RECOMBINED_SCHEMA)


def _as_array(value: pa.Array[Any] | pa.ChunkedArray[Any]) -> pa.Array[Any]:
    if isinstance(value, pa.ChunkedArray):
        return value.combine_chunks()
    return value


def _fragment_table(
    sessions: pa.Table,
    rows: npt.NDArray[np.intp],
    conversation_id: pa.ChunkedArray[Any],
    fragment_index: npt.NDArray[Any],
    **values: Any,
) -> pa.Table:
    take = cast(pa.Int64Array, pa.array(rows))
    col = sessions.column
    run = values["run"][rows]
    columns: dict[str, Any] = {
        "conversation_id": conversation_id,
        "fragment_index": pa.array(fragment_index.astype(np.uint32)),
        "session_id": pc.take(col("session_id"), take),
        "run_index": pa.array(run.astype(np.uint32)),
        "run_dir": pa.array(values["run_dirs"][run], pa.string()),
        "split": pa.array(values["split"][rows].astype(np.uint32)),
        "late": pa.array(values["late"][rows]),
        "link_reason": pa.array(values["reasons"], pa.string()),
        "joined_fragment": pa.array(
            values["joined_fragment"].astype(np.uint32), mask=~values["not_root"]
        ),
        "gap_s": pa.array(values["gap_s"], pa.float64(), mask=~values["has_gap"]),
        "flipped": pa.array(values["flipped"]),
        "orientation_conflict": pa.array(values["conflict"]),
    }
    for name in (
        "exporter",
        "protocol",
        "ip_a",
        "port_a",
        "ip_b",
        "port_b",
        "client_ip",
        "client_port",
        "server_ip",
        "server_port",
        "opened_at",
        "last_seen_at",
        "closed_at",
        "state",
        "close_reason",
        "flow_count",
        "follows_session_id",
    ):
        columns[name] = pc.take(col(name), take)
    for name, array in zip(
        ("ab_bytes", "ba_bytes", "ab_packets", "ba_packets"), values["counters"], strict=True
    ):
        columns[name] = pa.array(array, pa.uint64())
    arrays = [_as_array(columns[field.name]).cast(field.type) for field in FRAGMENTS_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=FRAGMENTS_SCHEMA)
