"""Flow Matrix matching: sessions x rules -> session_matches, and sessions.matched_rules.

A session matches a rule when its client is in the rule's source, its server in the rule's
destination, and its (protocol, server port) in the rule's service; only sessions in state
`active` or `closed` match (sessions.md: a half-open attempt has no answering server yet).
`session_matches` has one row per (session, rule) and carries the session's times, so
"closed sessions with no match" is one anti-join.

How it stays vectorized: client and server texts are parsed once per distinct address;
the bounds of every address set the rules use cut the address space into elementary
cells (address_sets.AddressCells); each distinct address is placed in its cell with one
`np.searchsorted`. Then a rule is three gathers from small boolean tables over the whole
column of sessions, and services shared by several rules are computed once.

The surprising thing: rows of sessions that may not match (half_open) are sent to an
extra cell that no set contains, so the per-rule loop never needs a state mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
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


def match_rows(sessions: pa.Table, matrix: FlowMatrix) -> tuple[np.ndarray, np.ndarray]:
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

    protocols = column_values(sessions.column("protocol_number"))
    ports = column_values(sessions.column("server_port"))
    tables: dict[AddressSet, np.ndarray] = {}
    services: dict[Service, np.ndarray] = {}
    found_rows: list[np.ndarray] = []
    found_rules: list[np.ndarray] = []
    for rule in matrix.rules:
        if rule.service not in services:
            services[rule.service] = rule.service.mask(protocols, ports)
        for side in (rule.source, rule.destination):
            if side not in tables:
                tables[side] = cells.table(side)
        matched = tables[rule.source][client_cells]
        matched &= tables[rule.destination][server_cells]
        matched &= services[rule.service]
        rows = np.flatnonzero(matched)
        if len(rows):
            found_rows.append(rows)
            found_rules.append(np.full(len(rows), rule.index, dtype=np.int64))
    if not found_rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    all_rows = np.concatenate(found_rows).astype(np.int64)
    all_rules = np.concatenate(found_rules)
    order = np.argsort(all_rows, kind="stable")  # rules were appended in file order
    return all_rows[order], all_rules[order]


def matched_rules_column(sessions: pa.Table, matches: pa.Table) -> pa.Array:
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
    values = pc.take(matches.column("rule"), pa.array(order)).combine_chunks()
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values.cast(pa.string()))
