"""Flow Matrix matching: sessions x rules -> session_matches, and sessions.matched_rules.

A session matches a rule when its client is in the rule's source, its server in the rule's
destination, and its (protocol, server port) in the rule's service; only sessions in state
`active` or `closed` match (sessions.md: a half-open attempt has no answering server yet).
A session whose client sent nothing the exporter saw matches too, as the contract has it;
`answers_alone` tells such sessions, for the summary and the query API to say.
`session_matches` has one row per (session, rule) and carries the session's times, so
"closed sessions with no match" is one anti-join.

How it stays vectorized: client and server texts are parsed once per distinct address;
the bounds of every address set the rules use cut the address space into elementary
cells (address_sets.AddressCells); each distinct address is placed in its cell with one
`np.searchsorted`. Sessions are then sorted three ways: by client cell, by server cell
and by (protocol, server port). For each rule, `searchsorted` counts how many sessions
each of its three conditions admits; the rows of the most selective one are gathered as
slices of that order and the whole rule is checked on them with boolean tables. A
typical rule names a service, so it reads a few percent of the sessions, not all of them;
a rule open on every side reads them all, and that is also when it matches them all.

The surprising thing: rows of sessions that may not match (half_open) are sent to an
extra cell that no set contains, so the per-rule loop never needs a state mask.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import TIMESTAMP
from .address_sets import AddressCells, AddressSet, unique_address_values
from .columns import column_values
from .flow_matrix import FlowMatrix
from .services import Service

MATCHING_STATES = ("active", "closed")

_match_fields: list[pa.Field[Any]] = [
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("rule", pa.string(), nullable=False),
    pa.field("rule_index", pa.uint32(), nullable=False),  # the rule's place in the file, from 0
    pa.field("opened_at", TIMESTAMP, nullable=False),  # the session's times, for windows
    pa.field("last_seen_at", TIMESTAMP, nullable=False),
]
SESSION_MATCHES_SCHEMA = pa.schema(_match_fields)


def match_sessions(sessions: pa.Table, matrix: FlowMatrix) -> pa.Table:
    """session_matches: one row per (session, rule), in session row order then rule order."""
    rows, rule_indices = match_rows(sessions, matrix)
    names = pa.array(matrix.rule_names, pa.string())
    return pa.Table.from_arrays(
        [
            sessions.column("session_id").take(rows),
            names.take(rule_indices),
            pa.array(rule_indices.astype(np.uint32), pa.uint32()),
            sessions.column("opened_at").take(rows),
            sessions.column("last_seen_at").take(rows),
        ],
        schema=SESSION_MATCHES_SCHEMA,
    )


# what answers_alone_of reads (a table without them, of an older version: none is said)
ANSWERS_ALONE_COLUMNS = (
    "client_ip",
    "client_port",
    "ip_a",
    "port_a",
    "ab_packets",
    "ba_packets",
    "ab_bytes",
    "ba_bytes",
    "split",
    "late",
    "sampling_rate",
)


def answers_alone(
    client_is_a: npt.NDArray[np.bool_],
    counters: dict[str, npt.NDArray[Any]],
    split: npt.NDArray[Any],
    late: npt.NDArray[Any],
    sampling_rate: npt.NDArray[Any],
) -> npt.NDArray[np.bool_]:
    """Sessions standing alone whose client sent nothing the exporter saw: fragment 0, not
    late, unsampled, no packet or byte from the client's side (`counters`: ab_/ba_packets
    and ab_/ba_bytes). Their server side was inferred from answers alone (DNS answers from
    port 53, echo replies, a SYN-ACK from 443) and they match the rules of the client's
    requests, as the contract has it: one-way routing, a loss, or answers nobody asked
    for, which "Unmatched only" does not show (a review). A later fragment's or a late
    session's silence is its conversation's, and a sampled exporter may miss every packet
    of one side: those are not told."""
    sent = np.where(
        client_is_a,
        (counters["ab_packets"] != 0) | (counters["ab_bytes"] != 0),
        (counters["ba_packets"] != 0) | (counters["ba_bytes"] != 0),
    )
    alone = (split == 0) & ~late.astype(bool) & (sampling_rate <= 1)
    told: npt.NDArray[np.bool_] = ~sent & alone
    return told


def answers_alone_of(sessions: pa.Table) -> npt.NDArray[np.bool_]:
    """answers_alone over a sessions table (all False without its columns)."""
    if not set(ANSWERS_ALONE_COLUMNS) <= set(sessions.column_names):
        return np.zeros(sessions.num_rows, dtype=bool)

    def values(name: str) -> npt.NDArray[Any]:
        # a null as 0 (False), as query.answers_alone reads one: the same sessions told
        column = sessions.column(name)
        filler = pa.scalar(False) if name == "late" else pa.scalar(0, column.type)
        return column_values(cast("pa.ChunkedArray[Any]", pc.fill_null(column, filler)))

    same_ip = column_values(pc.equal(sessions.column("client_ip"), sessions.column("ip_a")))
    client_is_a = same_ip.astype(bool) & (values("client_port") == values("port_a"))
    counters = {name: values(name) for name in ANSWERS_ALONE_COLUMNS[4:8]}
    return answers_alone(
        client_is_a, counters, values("split"), values("late"), values("sampling_rate")
    )


def match_rows(
    sessions: pa.Table, matrix: FlowMatrix
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(session row, rule index) of every match, as int64 arrays, rows ascending."""
    n = sessions.num_rows
    if n == 0 or not matrix.rules:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cells = AddressCells([s for rule in matrix.rules for s in (rule.source, rule.destination)])
    endpoints = pa.chunked_array(
        sessions.column("client_ip").chunks + sessions.column("server_ip").chunks, pa.string()
    )
    unique, index = unique_address_values(endpoints, column="client_ip/server_ip")
    endpoint_cells = cells.locate(unique)[index]
    client_cells = endpoint_cells[:n]
    server_cells = endpoint_cells[n:]
    may_match = pc.is_in(sessions.column("state"), pa.array(MATCHING_STATES)).to_numpy(
        zero_copy_only=False
    )
    client_cells[~may_match] = cells.nowhere

    protocols = column_values(sessions.column("protocol_number")).astype(np.int64)
    ports = column_values(sessions.column("server_port")).astype(np.int64)
    by_client = _SortedKeys(client_cells)
    by_server = _SortedKeys(server_cells)
    by_service = _SortedKeys(protocols << 16 | ports)
    tables: dict[
        AddressSet, tuple[npt.NDArray[np.bool_], npt.NDArray[np.intp], npt.NDArray[np.intp]]
    ] = {}
    found_rows: list[npt.NDArray[np.intp]] = []
    found_rules: list[npt.NDArray[np.int64]] = []
    for rule in matrix.rules:
        for side in (rule.source, rule.destination):
            if side not in tables:
                tables[side] = (cells.table(side), *_true_runs(cells.table(side)))
        source, source_lows, source_highs = tables[rule.source]
        destination, destination_lows, destination_highs = tables[rule.destination]
        # read only the rows that satisfy the most selective of the three conditions
        choices = [
            (by_client, *by_client.slices(source_lows, source_highs)),
            (by_server, *by_server.slices(destination_lows, destination_highs)),
            (by_service, *by_service.slices(*_service_key_ranges(rule.service))),
        ]
        keys, starts, stops = min(choices, key=lambda c: int((c[2] - c[1]).sum()))
        candidates = keys.rows(starts, stops)
        matched = source[client_cells[candidates]]
        matched &= destination[server_cells[candidates]]
        matched &= rule.service.mask(protocols[candidates], ports[candidates])
        rows = np.sort(candidates[matched])
        if len(rows):
            found_rows.append(rows)
            found_rules.append(np.full(len(rows), rule.index, dtype=np.int64))
    if not found_rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    all_rows = np.concatenate(found_rows).astype(np.int64)
    all_rules = np.concatenate(found_rules)
    order = np.argsort(all_rows, kind="stable")  # rules were appended in file order
    return all_rows[order], all_rules[order]


class _SortedKeys:
    """Session rows sorted by one integer key: the rows whose key falls in given ranges."""

    def __init__(self, keys: npt.NDArray[np.integer[Any]]) -> None:
        # int64 throughout: searchsorted with a needle of another dtype converts the whole
        # haystack on every call
        keys = keys.astype(np.int64)
        self.order = np.argsort(keys, kind="stable")
        self.sorted = keys[self.order]

    def slices(
        self, lows: npt.NDArray[np.integer[Any]], highs: npt.NDArray[np.integer[Any]]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """(start, stop) positions in the sorted keys of each inclusive range [low, high]."""
        starts = np.searchsorted(self.sorted, lows.astype(np.int64), side="left")
        stops = np.searchsorted(self.sorted, highs.astype(np.int64), side="right")
        return starts, stops

    def rows(
        self, starts: npt.NDArray[np.intp], stops: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.intp]:
        """The session rows of all the slices, without a Python loop over slices."""
        lengths = stops - starts
        total = int(lengths.sum())
        before = np.cumsum(lengths) - lengths
        positions = np.repeat(starts - before, lengths) + np.arange(total)
        rows: npt.NDArray[np.intp] = self.order[positions]
        return rows


def _true_runs(table: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Inclusive (first, last) cell of each run of True in a cell table."""
    edges = np.diff(np.concatenate([[0], table.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1


def _service_key_ranges(service: Service) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Inclusive ranges of protocol << 16 | server port that the service accepts."""
    if service.protocols is None:
        return np.array([0]), np.array([0xFF_FFFF])
    ports = service.ports if service.ports is not None else ((0, 0xFFFF),)
    lows = [protocol << 16 | first for protocol in service.protocols for first, _ in ports]
    highs = [protocol << 16 | last for protocol in service.protocols for _, last in ports]
    return np.array(lows, dtype=np.int64), np.array(highs, dtype=np.int64)


def matched_rules_column(sessions: pa.Table, matches: pa.Table) -> pa.ListArray[Any]:
    """sessions.matched_rules: list of rule names per session row, in rule order; [] if none."""
    n = sessions.num_rows
    rows_or_null = pc.index_in(
        matches.column("session_id"), value_set=sessions.column("session_id")
    )
    if rows_or_null.null_count:
        raise ValueError("session_matches names sessions that are not in the sessions table")
    rows = column_values(rows_or_null).astype(np.int64)
    order = np.lexsort((column_values(matches.column("rule_index")), rows))
    counts = np.bincount(rows, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = pc.take(matches.column("rule"), cast(pa.Int64Array, pa.array(order))).combine_chunks()
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values.cast(pa.string()))
