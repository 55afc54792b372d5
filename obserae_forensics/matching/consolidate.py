"""sessions_consolidated: the per-exporter sessions of one conversation, grouped across exporters.

Contract (sessions.md, "Consolidated sessions"): sessions with the same protocol and
endpoints whose time spans overlap, once widened by the grace, are one conversation.
Rules as implemented (README, "Consolidated sessions"):

* Endpoints are compared as the unordered pair of (address, port) for TCP, UDP, SCTP and
  UDP-Lite, of addresses alone for other protocols, so two exporters that disagree about
  which side is the client still land together; the row is then oriented by its most
  confident member (highest role_confidence, then earliest opened_at, then session_id),
  whose client/server, role_method and role_confidence it shows.
* Two sessions overlap when the later one opens at most `grace_us` after the latest
  last_seen_at of the sessions before it (sorted by opened_at), chained: a conversation
  ends at the first gap longer than the grace. Same-exporter fragments chain the same way.
* Counters are scaled per session by its sampling rate (not again when counters_scaled),
  summed per exporter, and oriented client->server (cs_) / server->client (sc_). The row
  shows per direction the largest exporter total: exporters see the same conversation,
  so adding them would double count, and one that sees only one direction (asymmetric
  routing) must not hide the other. coherence_pct = 100 x smallest / largest exporter byte
  total (100 with one exporter, or when no exporter counted a byte).

The surprising thing: grouping needs every session at once, so this runs on the whole
sessions table after the sessionizer; a chained group's time span can exceed any single
member's, which is the point: it is what all the exporters saw together.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..ids import endpoint_pair_hashes, hash_words, hex_ids, id_sort_keys
from ..schema import TIMESTAMP
from .address_sets import unique_address_values
from .columns import column_values
from .services import PORT_PROTOCOLS

_consolidated_fields: list[pa.Field[Any]] = [
    pa.field("consolidated_id", pa.string(), nullable=False),
    pa.field("client_ip", pa.string(), nullable=False),
    pa.field("client_port", pa.uint16(), nullable=False),
    pa.field("server_ip", pa.string(), nullable=False),
    pa.field("server_port", pa.uint16(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),
    pa.field("protocol_number", pa.uint8(), nullable=False),
    pa.field("sampler_count", pa.uint32(), nullable=False),  # distinct exporters
    pa.field("exporters", pa.list_(pa.string()), nullable=False),  # sorted
    pa.field("session_ids", pa.list_(pa.string()), nullable=False),  # by opened_at
    pa.field("session_count", pa.uint32(), nullable=False),
    pa.field("first_seen", TIMESTAMP, nullable=False),
    pa.field("last_seen", TIMESTAMP, nullable=False),
    pa.field("cs_bytes", pa.uint64(), nullable=False),  # client -> server, scaled
    pa.field("sc_bytes", pa.uint64(), nullable=False),  # server -> client, scaled
    pa.field("cs_packets", pa.uint64(), nullable=False),
    pa.field("sc_packets", pa.uint64(), nullable=False),
    pa.field("coherence_pct", pa.float64(), nullable=False),
    pa.field("role_method", pa.string(), nullable=False),
    pa.field("role_confidence", pa.float64(), nullable=False),
]
SESSIONS_CONSOLIDATED_SCHEMA = pa.schema(_consolidated_fields)


def consolidate_sessions(sessions: pa.Table, grace_us: int) -> pa.Table:
    """sessions_consolidated: one row per conversation, by first_seen then consolidated_id.

    Most sessions are the only one of their protocol and endpoint pair in the table (a scan
    is nothing else): their rows are built straight from the session, and only pairs with
    several sessions go through the grouping.
    """
    if sessions.num_rows == 0:
        return SESSIONS_CONSOLIDATED_SCHEMA.empty_table()
    pair = endpoint_pair_hashes(sessions, port_protocols=PORT_PROTOCOLS)
    _, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)
    alone = counts[inverse.ravel()] == 1
    parts = []
    if alone.any():
        mask = pa.array(alone)
        parts.append(_single_sessions(sessions.filter(mask), pair[alone]))
    if not alone.all():
        mask = pa.array(~alone)
        parts.append(_grouped_sessions(sessions.filter(mask), pair[~alone], grace_us))
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    order = np.lexsort((id_sort_keys(table.column("consolidated_id")),
                        column_values(table.column("first_seen").cast(pa.int64()))))
    return table.take(pa.array(order))


def _consolidated_ids(protocol: np.ndarray, pair: np.ndarray, first_seen: np.ndarray
                      ) -> pa.StringArray:
    """Deterministic id per conversation: hash of protocol, endpoint pair and first_seen;
    two conversations of one pair never share a first_seen, since they would overlap."""
    words = np.stack([protocol.astype(np.uint64), pair.astype(np.uint64),
                      first_seen.astype(np.int64).view(np.uint64)], axis=1)
    return hex_ids(hash_words(words))


def _single_sessions(sessions: pa.Table, pair: np.ndarray) -> pa.Table:
    """Rows of conversations made of one session: the session itself, scaled and oriented."""
    n = sessions.num_rows

    def column(name: str) -> np.ndarray:
        return column_values(sessions.column(name))

    sampling = np.maximum(column("sampling_rate").astype(np.uint64), np.uint64(1))
    scale = np.where(column("counters_scaled"), np.uint64(1), sampling)
    client_is_a = column_values(pc.and_(
        pc.equal(sessions.column("client_ip"), sessions.column("ip_a")),
        pc.equal(sessions.column("client_port"), sessions.column("port_a"))))
    ab_bytes, ba_bytes = column("ab_bytes") * scale, column("ba_bytes") * scale
    ab_packets, ba_packets = column("ab_packets") * scale, column("ba_packets") * scale
    opened = sessions.column("opened_at").cast(pa.int64())
    offsets = pa.array(np.arange(n + 1, dtype=np.int32))
    return pa.Table.from_arrays(
        [
            _consolidated_ids(column("protocol_number"), pair, column_values(opened)),
            sessions.column("client_ip"),
            sessions.column("client_port"),
            sessions.column("server_ip"),
            sessions.column("server_port"),
            sessions.column("protocol"),
            sessions.column("protocol_number"),
            pa.array(np.ones(n, dtype=np.uint32)),
            pa.ListArray.from_arrays(offsets, sessions.column("exporter").combine_chunks()),
            pa.ListArray.from_arrays(offsets, sessions.column("session_id").combine_chunks()),
            pa.array(np.ones(n, dtype=np.uint32)),
            sessions.column("opened_at").cast(TIMESTAMP),
            sessions.column("last_seen_at").cast(TIMESTAMP),
            pa.array(np.where(client_is_a, ab_bytes, ba_bytes).astype(np.uint64)),
            pa.array(np.where(client_is_a, ba_bytes, ab_bytes).astype(np.uint64)),
            pa.array(np.where(client_is_a, ab_packets, ba_packets).astype(np.uint64)),
            pa.array(np.where(client_is_a, ba_packets, ab_packets).astype(np.uint64)),
            pa.array(np.full(n, 100.0)),
            sessions.column("role_method"),
            sessions.column("role_confidence"),
        ],
        schema=SESSIONS_CONSOLIDATED_SCHEMA,
    )


def _grouped_sessions(sessions: pa.Table, pair_hash: np.ndarray, grace_us: int) -> pa.Table:
    """Rows of pairs with several sessions: chained by time overlap, across exporters."""
    n = sessions.num_rows

    def column(name: str, cast: pa.DataType | None = None) -> np.ndarray:
        values = sessions.column(name)
        return column_values(values.cast(cast) if cast is not None else values)

    protocol = column("protocol_number").astype(np.int64)
    opened = column("opened_at", pa.int64())
    last = column("last_seen_at", pa.int64())

    # endpoints as integer keys: address rank (in address order) x 65536 + port
    texts = pa.chunked_array(
        sessions.column("ip_a").chunks
        + sessions.column("ip_b").chunks
        + sessions.column("client_ip").chunks,
        pa.string(),
    )
    unique, index = unique_address_values(texts, column="ip_a/ip_b/client_ip")
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(unique, kind="stable")] = np.arange(len(unique))
    address_rank = rank[index]
    has_ports = np.isin(protocol, list(PORT_PROTOCOLS))
    key_a = address_rank[:n] * 65536 + np.where(has_ports, column("port_a"), 0)
    key_b = address_rank[n : 2 * n] * 65536 + np.where(has_ports, column("port_b"), 0)
    key_client = address_rank[2 * n :] * 65536 + np.where(has_ports, column("client_port"), 0)
    low = np.minimum(key_a, key_b)
    high = np.maximum(key_a, key_b)
    a_is_low = key_a == low
    client_is_low = key_client == low

    # a total order on sessions, independent of the table's row order
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[column_values(pc.sort_indices(sessions.column("session_id")))] = np.arange(n)

    order = np.lexsort((id_rank, opened, high, low, protocol))
    same_pair = np.ones(n, dtype=bool)  # same protocol and endpoints as the row before
    same_pair[0] = False
    for key in (protocol[order], low[order], high[order]):
        same_pair[1:] &= key[1:] == key[:-1]
    pair = np.cumsum(~same_pair) - 1
    reach = pd.Series(last[order]).groupby(pair).cummax().to_numpy()
    starts = ~same_pair
    starts[1:] |= opened[order][1:] > reach[:-1] + grace_us
    cluster_starts = np.flatnonzero(starts)
    first_seen = np.minimum.reduceat(opened[order], cluster_starts)
    last_seen = np.maximum.reduceat(last[order], cluster_starts)
    # number conversations in output order (first_seen, then protocol and endpoints), so
    # that every per-conversation array below comes out in that order without a final take
    head = order[cluster_starts]
    output_order = np.lexsort((high[head], low[head], protocol[head], first_seen))
    number = np.empty(len(cluster_starts), dtype=np.int64)
    number[output_order] = np.arange(len(cluster_starts))
    first_seen, last_seen = first_seen[output_order], last_seen[output_order]
    cluster = np.empty(n, dtype=np.int64)
    cluster[order] = number[np.cumsum(starts) - 1]

    # the most confident member orients the row
    confidence = column("role_confidence").astype(np.float64)
    by_confidence = np.lexsort((id_rank, opened, -confidence, cluster))
    first_of_cluster = np.ones(n, dtype=bool)
    first_of_cluster[1:] = cluster[by_confidence][1:] != cluster[by_confidence][:-1]
    chosen = by_confidence[first_of_cluster]  # one session row per cluster, cluster order

    # per-session counters, scaled and oriented to the chosen client
    sampling = np.maximum(column("sampling_rate").astype(np.uint64), np.uint64(1))
    scale = np.where(column("counters_scaled"), np.uint64(1), sampling)
    same_side = a_is_low == client_is_low[chosen][cluster]
    ab_bytes, ba_bytes = column("ab_bytes") * scale, column("ba_bytes") * scale
    ab_packets, ba_packets = column("ab_packets") * scale, column("ba_packets") * scale
    counters = np.stack(
        [
            np.where(same_side, ab_bytes, ba_bytes),
            np.where(same_side, ba_bytes, ab_bytes),
            np.where(same_side, ab_packets, ba_packets),
            np.where(same_side, ba_packets, ab_packets),
        ],
        axis=1,
    ).astype(np.uint64)

    # per (cluster, exporter) sums; exporter codes follow exporter text order
    exporter_texts, exporter_code = _sorted_codes(sessions.column("exporter"))
    pair_key = cluster * len(exporter_texts) + exporter_code
    by_pair = np.argsort(pair_key, kind="stable")
    pair_starts = np.flatnonzero(np.r_[True, np.diff(pair_key[by_pair]) != 0])
    per_exporter = np.add.reduceat(counters[by_pair], pair_starts, axis=0)
    pair_cluster = cluster[by_pair][pair_starts]
    pair_exporter = exporter_code[by_pair][pair_starts]
    cluster_pair_starts = np.flatnonzero(np.r_[True, np.diff(pair_cluster) != 0])
    totals = np.maximum.reduceat(per_exporter, cluster_pair_starts, axis=0)
    exporter_bytes = per_exporter[:, 0] + per_exporter[:, 1]
    smallest = np.minimum.reduceat(exporter_bytes, cluster_pair_starts).astype(np.float64)
    largest = np.maximum.reduceat(exporter_bytes, cluster_pair_starts).astype(np.float64)
    coherence = np.where(largest > 0, 100.0 * smallest / np.where(largest > 0, largest, 1), 100.0)
    sampler_count = np.diff(np.r_[cluster_pair_starts, len(pair_cluster)])

    # member lists, chronological: opened_at, then session_id
    session_count = np.bincount(cluster, minlength=len(first_seen))
    members = np.lexsort((id_rank, opened, cluster))
    session_ids = pa.ListArray.from_arrays(
        pa.array(np.r_[0, np.cumsum(session_count)].astype(np.int32)),
        sessions.column("session_id").take(pa.array(members)).combine_chunks(),
    )
    exporters = pa.ListArray.from_arrays(
        pa.array(np.r_[0, np.cumsum(sampler_count)].astype(np.int32)),
        pa.array(exporter_texts, pa.string()).take(pa.array(pair_exporter)),
    )

    ids = _consolidated_ids(protocol[chosen], pair_hash[chosen], first_seen)
    take = pa.array(chosen)
    table = pa.Table.from_arrays(
        [
            ids,
            sessions.column("client_ip").take(take),
            sessions.column("client_port").take(take),
            sessions.column("server_ip").take(take),
            sessions.column("server_port").take(take),
            sessions.column("protocol").take(take),
            sessions.column("protocol_number").take(take),
            pa.array(sampler_count.astype(np.uint32)),
            exporters,
            session_ids,
            pa.array(session_count.astype(np.uint32)),
            pa.array(first_seen, pa.int64()).cast(TIMESTAMP),
            pa.array(last_seen, pa.int64()).cast(TIMESTAMP),
            *(pa.array(totals[:, i].astype(np.uint64)) for i in range(4)),
            pa.array(coherence),
            sessions.column("role_method").take(take),
            sessions.column("role_confidence").take(take),
        ],
        schema=SESSIONS_CONSOLIDATED_SCHEMA,
    )
    return table


def _sorted_codes(values: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """Strings -> (distinct texts in sorted order, int64 code per row)."""
    encoded = pc.dictionary_encode(values.combine_chunks())
    texts = encoded.dictionary.to_pylist()
    order = sorted(range(len(texts)), key=texts.__getitem__)
    remap = np.empty(len(texts), dtype=np.int64)
    remap[order] = np.arange(len(texts))
    codes = remap[column_values(encoded.indices).astype(np.int64)]
    return [texts[i] for i in order], codes
