"""Sessionizer: FLOW_SCHEMA batches in, final session rows and their flow records out.

Streaming: each `feed()` replays its batch through one replay per exporter (kernel.py, or
reference.py for the tests) and returns the sessions that became final while doing so,
with exactly the flow records behind them. Records of sessions still open are held, in
the Arrow tables of the batches they came in (folded together as they empty), until their
session is final; memory is bounded by open sessions and their records, not by the input.

`--replay event` (policy.replay == "event") is the exception: every record has to be seen
before the first can be replayed in first_seen order, so `feed()` only holds batches and
`finish()` does all the work. Its memory is the whole input — the Arrow columns (~190 bytes
per record) plus the replay's int64 columns (~160 bytes per record) — so use it for
inputs that fit in memory several times over (10 million records: ~3.5 GB).

The surprising thing: nothing here depends on how the input was cut into batches. Every
time and tie-break comes from the records (arrival index included), and output rows are
ordered by the record after which they became final (output.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..addresses import address_matrix
from ..jit_cache import drop_stale_jit_cache, njit
from ..protocols import PORT_PROTOCOLS
from ..schema import FLOW_SCHEMA, FLOWS_SCHEMA, SESSIONS_SCHEMA, with_added_columns
from ..times import TIME_LIMIT_US
from .kernel import KernelReplay, OutputRows
from .keys import Records, batch_records, known_service_ports
from .output import SessionKeys, id_texts, sessions_table
from .policy import SessionPolicy
from .reference import ReferenceReplay

if TYPE_CHECKING:
    from typing_extensions import Buffer

ServiceLookup = Callable[
    [npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint16]], npt.NDArray[np.bool_]
]
"""(addresses (n,16) uint8, protocols uint8[n], ports uint16[n]) -> bool[n]: declared services."""


_SERIAL_BITS = 40  # owner = exporter number << 40 | per-exporter session serial
_HELD_BATCHES = 16  # held batches beyond which the older ones are merged


class Replay(Protocol):
    def process(
        self, records: Records
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8], npt.NDArray[np.int64]]: ...
    def finish(self, emit: int) -> npt.NDArray[np.int64]: ...
    def pressure(self) -> dict[str, Any]: ...


@dataclass
class SessionBatch:
    """Sessions whose row is final, and the flow records behind them (FLOWS_SCHEMA); `keys`
    (when given) holds numbers of the sessions' rows that consolidation can use instead of
    the texts."""

    sessions: pa.Table
    flows: pa.Table
    keys: SessionKeys | None = None


def empty_session_batch() -> SessionBatch:
    return SessionBatch(_EMPTY_SESSIONS, _EMPTY_FLOWS)


# Arrow tables are immutable: made once (0.8 ms each time, for every batch that closed
# nothing: a run over thousands of small files paid it for each)
_EMPTY_SESSIONS = SESSIONS_SCHEMA.empty_table()
_EMPTY_FLOWS = FLOWS_SCHEMA.empty_table()


class Sessionizer:
    """Deterministic replay of flow records into per-exporter sessions (sessions.md).

    `engine` is "numba" (the kernel) or "reference" (plain Python, for tests).
    `identity_root`: the directory holding the inputs (keys.evidence_root), which the
    identities of records name their files relative to; else absolute paths.
    """

    def __init__(
        self,
        policy: SessionPolicy,
        *,
        services: ServiceLookup | None = None,
        engine: str = "numba",
        identity_root: str | None = None,
    ) -> None:
        if engine not in ("numba", "reference"):
            raise ValueError(f"engine must be 'numba' or 'reference', not {engine!r}")
        self.policy = policy
        self.services = services
        self._engine = engine
        self._identity_root = identity_root
        self._known = known_service_ports()
        self._exporter_numbers: dict[str, int] = {}
        self._exporters: list[str] = []
        self._replays: list[Replay] = []
        self._output = OutputRows()  # the kernel replays' closed sessions, one round's
        self._count = 0
        self._held: list[_Held] = []
        self._waiting: list[tuple[pa.Table, Records, npt.NDArray[np.int64]]] = []  # event
        self._finished = False

    # -- public API -----------------------------------------------------------------------
    def feed(self, batch: pa.RecordBatch | pa.Table) -> SessionBatch:
        """Replay one FLOW_SCHEMA batch (arrival order); -> sessions that became final."""
        if self._finished:
            raise RuntimeError("Sessionizer.feed() after finish()")
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        table = with_added_columns(table, FLOW_SCHEMA)  # a flow table of an earlier version
        if table.schema.names != FLOW_SCHEMA.names:
            raise ValueError("Sessionizer.feed() needs FLOW_SCHEMA batches")
        if table.num_rows == 0:
            return empty_session_batch()
        if table.schema != FLOW_SCHEMA:  # the readers' batches already are (a column at a
            table = table.cast(FLOW_SCHEMA)  # time, 0.3 ms a batch)
        exporters = self._exporter_column(table)
        src_declared, dst_declared = self._declared(table)
        records = batch_records(table, self._count, src_declared, dst_declared, self._identity_root)
        for times in (records.first_seen, records.last_seen):
            if len(times) and (times.min() < -TIME_LIMIT_US or times.max() > TIME_LIMIT_US):
                # read_flows leaves such records out (bad_timestamp); fed from elsewhere, they
                # would wrap the deadlines around and close sessions before they opened
                raise ValueError(
                    "Sessionizer.feed() needs record times within "
                    f"±{TIME_LIMIT_US} µs of 1970 (times.TIME_LIMIT_US)"
                )
        inverted = np.flatnonzero(records.first_seen > records.last_seen)
        if len(inverted):
            # read_flows swaps them (repaired.inverted_times); fed from elsewhere, such a
            # record opened a session whose last_seen_at lay before its opened_at (an audit)
            raise ValueError(
                f"Sessionizer.feed() needs first_seen <= last_seen: "
                f"{len(inverted)} record(s) of this batch end before they "
                f"start (the first at row {int(inverted[0])})"
            )
        self._count += table.num_rows
        if self.policy.replay == "event":
            self._waiting.append((table, records, exporters))
            return empty_session_batch()
        return self._replay(table, records, exporters)

    def finish(self) -> SessionBatch:
        """End of input: close what the final watermark closes; the rest comes out open."""
        if self._finished:
            raise RuntimeError("Sessionizer.finish() called twice")
        self._finished = True
        early = empty_session_batch()
        if self._waiting:
            early = self._replay_waiting()
        self._output.new_round()
        parts = [
            (number, replay.finish(self._count)) for number, replay in enumerate(self._replays)
        ]
        last = self._emit(parts)
        left = sum(held.alive_count for held in self._held)
        if left:
            raise AssertionError(f"{left} flow records left without a session")
        if not early.sessions.num_rows and not early.flows.num_rows:
            return last
        return SessionBatch(
            pa.concat_tables([early.sessions, last.sessions]),
            pa.concat_tables([early.flows, last.flows]),
        )  # keys: the texts

    def pressure(self) -> dict[str, dict[str, Any]]:
        """Per exporter: evictions, first/last eviction time (µs), peak open sessions."""
        return {self._exporters[n]: replay.pressure() for n, replay in enumerate(self._replays)}

    # -- machinery --------------------------------------------------------------------------
    def _exporter_column(self, table: pa.Table) -> npt.NDArray[np.int64]:
        column = table.column("exporter").combine_chunks()
        if isinstance(column, pa.ChunkedArray):  # pyarrow < 16 keeps a chunked result
            column = pa.concat_arrays(column.chunks)
        if pa.types.is_dictionary(column.type):
            column = cast("pa.DictionaryArray[Any, Any]", column)
            texts = cast("list[str]", column.dictionary.to_pylist())  # not nullable
            indices = column.indices.to_numpy(zero_copy_only=False)
        else:
            encoded = column.dictionary_encode()
            texts = cast("list[str]", encoded.dictionary.to_pylist())
            indices = encoded.indices.to_numpy(zero_copy_only=False)
        numbers = np.array([self._exporter_number(t) for t in texts], dtype=np.int64)
        return numbers[indices.astype(np.int64)]

    def _exporter_number(self, exporter: str) -> int:
        number = self._exporter_numbers.get(exporter)
        if number is None:
            number = self._exporter_numbers[exporter] = len(self._exporters)
            self._exporters.append(exporter)
            if self._engine == "numba":
                self._replays.append(KernelReplay(self.policy, self._known, output=self._output))
            else:
                self._replays.append(ReferenceReplay(self.policy, self._known))
        return number

    def _declared(
        self, table: pa.Table
    ) -> tuple[npt.NDArray[np.bool_] | None, npt.NDArray[np.bool_] | None]:
        """Ask the Cartography, once per record and side, whether that side is a service."""
        if self.services is None:
            return None, None
        protocols = table.column("protocol").to_numpy().astype(np.uint8)
        with_ports = np.isin(protocols, PORT_PROTOCOLS)
        answers = []
        for side in ("src", "dst"):
            ports = table.column(f"{side}_port").to_numpy().astype(np.uint16)
            ports = np.where(with_ports, ports, 0).astype(np.uint16)
            addresses = address_matrix(table.column(f"{side}_addr"))
            answers.append(np.asarray(self.services(addresses, protocols, ports), dtype=bool))
        return answers[0], answers[1]

    def _replay(
        self, table: pa.Table, records: Records, exporters: npt.NDArray[np.int64]
    ) -> SessionBatch:
        n = len(records)
        owner = np.zeros(n, dtype=np.int64)
        direction = np.zeros(n, dtype=np.int8)
        parts = []
        order = np.argsort(exporters, kind="stable")
        bounds = np.flatnonzero(np.diff(exporters[order])) + 1
        self._output.new_round()
        for rows in np.split(order, bounds):
            number = int(exporters[rows[0]])
            # one exporter (the usual batch): its records are the batch, nothing to gather
            mine = records if len(rows) == n else records.take(rows)
            serials, directions, closed = self._replays[number].process(mine)
            owner[rows] = (number << _SERIAL_BITS) | serials
            direction[rows] = directions
            parts.append((number, closed))
        self._held.append(_Held(table, owner, direction, records.index))
        return self._emit(parts)

    def _replay_waiting(self) -> SessionBatch:
        """--replay event: every record, sorted by first_seen (ties: arrival), at once."""
        tables = [t for t, _, _ in self._waiting]
        records = [r for _, r, _ in self._waiting]
        exporters = np.concatenate([e for _, _, e in self._waiting])
        self._waiting = []
        table = pa.concat_tables(tables)
        merged = Records(
            **{
                name: np.concatenate([getattr(r, name) for r in records])
                for name in Records.__dataclass_fields__
            }
        )
        order = np.lexsort((merged.index, merged.first_seen))
        return self._replay(table.take(order), merged.take(order), exporters[order])

    def _emit(self, parts: list[tuple[int, npt.NDArray[np.int64]]]) -> SessionBatch:
        """Sessions of `parts` as a table, with their held flow records, both in output order."""
        parts = [(number, cols) for number, cols in parts if cols.shape[1]]
        if not parts:
            return empty_session_batch()
        sessions, order, ids, serials, orients, keys = sessions_table(
            [(self._exporters[n], rows) for n, rows in parts]
        )
        numbers = np.concatenate([np.full(c.shape[1], n, dtype=np.int64) for n, c in parts])[order]
        owners = (numbers << _SERIAL_BITS) | serials
        finder = _OwnerFinder(owners)
        tables: list[pa.Table] = []
        rows: list[npt.NDArray[np.intp]] = []  # picked rows, numbered across `tables`
        ranks: list[npt.NDArray[np.int64]] = []
        indices: list[npt.NDArray[np.int64]] = []
        same: list[npt.NDArray[np.bool_]] = []
        offset = 0
        for held in self._held:
            picked, rank = held.pick(finder)
            if len(picked):
                tables.append(held.table)
                rows.append(picked + offset)
                offset += held.table.num_rows
                ranks.append(rank)
                indices.append(held.index[picked])
                same.append(held.direction[picked] == orients[rank])
                held.release(picked)
        self._held = [held for held in self._held if held.alive_count]
        older = self._held[:-1]
        retained = sum(len(held.alive) for held in older)
        if len(older) > _HELD_BATCHES or retained > 2 * sum(h.alive_count for h in older) + 1024:
            # long sessions keep old batches alive: fold them into one, keeping only live
            # rows, so that memory stays within twice the held records (plus the newest
            # batch) and an emit looks at a bounded number of tables; each fold at least
            # halves what it reads, so its cost is amortized over the records it drops
            self._held = [_Held.merged(older), self._held[-1]]
        if not tables:
            return SessionBatch(sessions, FLOWS_SCHEMA.empty_table(), keys)
        rank = np.concatenate(ranks)
        flow_order = _by_session_then_arrival(rank, np.concatenate(indices), len(ids))
        rank = rank[flow_order]
        held_rows = [table.num_rows for table in tables]
        if len(tables) == 1 or sum(held_rows) < 4 * len(flow_order):
            # one gather straight into output order, across the held tables as chunks (was
            # a take per table, a concatenation and a second take: three copies)
            flows = pa.concat_tables(tables).take(pa.array(np.concatenate(rows)[flow_order]))
        else:
            # a few records of many held: Arrow joins the chunks of a table before a take,
            # so the gather above read every held record (64 ms to pick 1,000 of 2 M held
            # in two tables); each table's picked rows first, then into output order (4.5 M
            # records of 50,000 long sessions: 6.5-7.3 s against 7.4-9.9)
            starts = np.cumsum([0, *held_rows[:-1]])
            gathered = pa.concat_tables(
                [
                    table.take(pa.array(mine - start))
                    for table, mine, start in zip(tables, rows, starts, strict=True)
                ]
            )
            flows = gathered.take(pa.array(flow_order))
        flows = flows.append_column(FLOWS_SCHEMA.field("session_id"), id_texts(ids[rank]))
        flows = flows.append_column(
            FLOWS_SCHEMA.field("direction"), _direction_texts(np.concatenate(same)[flow_order])
        )
        return SessionBatch(sessions, _canonical_dictionaries(flows).cast(FLOWS_SCHEMA), keys)


@njit(cache=True, nogil=True)
def _counting_order(rank: npt.NDArray[np.int64], sessions: int) -> npt.NDArray[np.int64]:
    """Stable permutation sorting `rank` (0 <= rank < sessions), in O(n)."""
    start = np.zeros(sessions + 1, dtype=np.int64)
    for r in rank:
        start[r + 1] += 1
    for k in range(sessions):
        start[k + 1] += start[k]
    order = np.empty(len(rank), dtype=np.int64)
    for i in range(len(rank)):
        order[start[rank[i]]] = i
        start[rank[i]] += 1
    return order


def _by_session_then_arrival(
    rank: npt.NDArray[np.int64], index: npt.NDArray[np.int64], sessions: int
) -> npt.NDArray[np.signedinteger[Any]]:
    """The permutation sorting held records by (session rank, arrival index). Held tables
    are kept in arrival order and picked in order, so the records usually come in arrival
    order already: then a stable counting sort by rank is the whole sort."""
    if len(index) < 2 or bool((index[1:] > index[:-1]).all()):
        return _counting_order(rank, sessions)
    return np.lexsort((index, rank))


class _OwnerFinder:
    """Rank of each owner (exporter << 40 | serial) among the sessions of one emit, -1 if not
    there. Serials of sessions final together are close, so usually a direct table over
    their range answers with one gather per held record; a sorted search otherwise."""

    _TABLE_LIMIT = 1 << 24

    def __init__(self, owners: npt.NDArray[np.int64]) -> None:
        self.low = int(owners.min())
        span = int(owners.max()) - self.low + 1
        self.table: npt.NDArray[np.int64] | None = None
        if span <= self._TABLE_LIMIT:
            self.table = np.full(span, -1, dtype=np.int64)
            self.table[owners - self.low] = np.arange(len(owners))
        else:
            self.by_owner = np.argsort(owners)
            self.sorted_owners = owners[self.by_owner]

    def rank(self, owner: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        if self.table is not None:
            offset = owner - self.low
            inside = (offset >= 0) & (offset < len(self.table))
            return np.where(inside, self.table[np.where(inside, offset, 0)], -1)
        position = np.minimum(
            np.searchsorted(self.sorted_owners, owner), len(self.sorted_owners) - 1
        )
        found = self.sorted_owners[position] == owner
        return np.where(found, self.by_owner[position], -1)


class _Held:
    """Flow records of one fed batch whose sessions may still be open.

    Records leave as their sessions become final, marked in `alive`; the table is never
    rewritten here (the Sessionizer folds older batches into one, keeping only live rows,
    once they retain twice their live records or number more than _HELD_BATCHES), so an
    emit costs the records it emits, not every record held.
    """

    def __init__(
        self,
        table: pa.Table,
        owner: npt.NDArray[np.int64],
        direction: npt.NDArray[np.int8],
        index: npt.NDArray[np.int64],
    ) -> None:
        self.table = table
        self.owner = owner
        self.direction = direction
        self.index = index
        self.alive = np.ones(len(owner), dtype=bool)
        self.alive_count = len(owner)

    @staticmethod
    def merged(batches: list[_Held]) -> _Held:
        """The records still held in `batches`, as one."""
        keeps = [np.flatnonzero(held.alive) for held in batches]
        # pa.array of intp values is an Int64Array (the stubs read any ndarray as booleans)
        table = pa.concat_tables(
            [
                held.table.take(cast(pa.Int64Array, pa.array(keep)))
                for held, keep in zip(batches, keeps, strict=True)
            ]
        )
        return _Held(
            table,
            np.concatenate([h.owner[k] for h, k in zip(batches, keeps, strict=True)]),
            np.concatenate([h.direction[k] for h, k in zip(batches, keeps, strict=True)]),
            np.concatenate([h.index[k] for h, k in zip(batches, keeps, strict=True)]),
        )

    def pick(self, finder: _OwnerFinder) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]:
        """(rows held here whose session `finder` knows, that session's rank)."""
        rank = finder.rank(self.owner)
        picked = np.flatnonzero((rank >= 0) & self.alive)
        return picked, rank[picked]

    def release(self, picked: npt.NDArray[np.intp]) -> None:
        self.alive[picked] = False
        self.alive_count -= len(picked)


def _direction_texts(same: npt.NDArray[np.bool_]) -> pa.StringArray:
    """ "ab" where the record went from ip_a to ip_b, else "ba", built from buffers."""
    n = len(same)
    letters = np.empty((n, 2), dtype=np.uint8)
    letters[:, 0] = np.where(same, ord("a"), ord("b"))
    letters[:, 1] = np.where(same, ord("b"), ord("a"))
    offsets = np.arange(0, 2 * (n + 1), 2, dtype=np.int32)
    # numpy's stubs declare ndarray's buffer protocol (__buffer__) only for Python 3.12 on
    return pa.StringArray.from_buffers(
        n, pa.py_buffer(cast("Buffer", offsets)), pa.py_buffer(letters.tobytes())
    )


def _canonical_dictionaries(flows: pa.Table) -> pa.Table:
    """Re-encode dictionary columns from their values, in order of first use.

    Held rows keep the dictionaries of the batches they came in, so without this the same
    rows would be encoded differently depending on how the input was batched.
    """
    for position, field in enumerate(flows.schema):
        if pa.types.is_dictionary(field.type):
            flows = flows.set_column(
                position, field, _first_use_encoding(flows.column(position), field.type)
            )
    return flows.combine_chunks()


def _first_use_encoding(
    column: pa.ChunkedArray[Any], kind: pa.DictionaryType[Any, Any]
) -> pa.Array[Any]:
    """pc.dictionary_encode of the column's values, reached through its indices: the values
    themselves (source_file: a path per record) are never spelled out row by row. By value
    where that shortcut does not hold: nulls (none of the readers' own; Arrow cannot unify
    dictionaries that hold one), or a dictionary holding a value twice."""
    if (
        not len(column)
        or column.null_count
        or any(
            chunk.dictionary.null_count
            for chunk in cast("list[pa.DictionaryArray[Any, Any]]", column.chunks)
        )
    ):
        return pc.dictionary_encode(column.cast(kind.value_type).combine_chunks())
    # one dictionary for all the chunks
    array = cast("pa.DictionaryArray[Any, Any]", column.combine_chunks())
    used, renumbered = _first_use(
        np.asarray(array.indices.to_numpy(zero_copy_only=False)), len(array.dictionary)
    )
    # pa.array of int64 (int32) values is an Int64Array (Int32Array): the stubs read any
    # ndarray as booleans
    dictionary = array.dictionary.take(cast(pa.Int64Array, pa.array(used)))
    if len(pc.unique(dictionary)) < len(dictionary):
        return pc.dictionary_encode(array.cast(kind.value_type))
    return pa.DictionaryArray.from_arrays(cast(pa.Int32Array, pa.array(renumbered)), dictionary)


@njit(cache=True, nogil=True)
def _first_use(
    indices: npt.NDArray[np.integer[Any]], size: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """(dictionary entries in order of first use, indices renumbered in that order)."""
    number = np.full(size, -1, dtype=np.int64)
    used = np.empty(size, dtype=np.int64)
    out = np.empty(len(indices), dtype=np.int32)
    count = 0
    for i in range(len(indices)):
        k = indices[i]
        if number[k] < 0:
            number[k] = count
            used[count] = k
            count += 1
        out[i] = number[k]
    return used[:count], out


# numba's cache ignores the modules this one compiles in (jit_cache.py): last, so that
# every name is bound
drop_stale_jit_cache(globals())
