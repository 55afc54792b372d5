"""Session rows (row.py) -> SESSIONS_SCHEMA tables, with the deterministic session ids.

`session_id` is 16 lowercase hex digits of a 64-bit hash (id_hash below): the exporter text
is reduced once to a 64-bit seed (the first 8 bytes, little-endian, of BLAKE2b-64 over its
UTF-8 bytes), then protocol, the canonical endpoints (address halves and ports, the smaller
endpoint first), opened_at (µs), split, late and `dup` are folded in as int64s, one
splitmix64 round each — sessions.md's (exporter, key, opened_at, split, late). `dup`
tells apart sessions of one key with the very same (opened_at, split, late), which the
contract's five alone would not: it counts from the key's last closed session as the
kernel remembers it at the session's open and at its close, and a late, stray or deep
session takes its opening record's identity (where its bytes are) instead, since nothing
bounded remembers what it may repeat (reference.py, rules 5 and 6). Any repeat left is
counted by the run's uniqueness check (Consolidation, where every session of a key meets
the others). `conversation_id` is fragment 0's session_id, computed from the (opened_at,
late, dup) fragment 0 handed down. The hash is computed in numba over whole columns and
rendered as text with numpy, never per session in Python; the same input gives the same ids
on every machine (no hash seed, fixed byte order).

The surprising thing: rows come out sorted by (emit, session_id, exporter), where `emit` is
the arrival index of the record after which the row became final (end of input: the record
count). That order is a property of the input alone, so concatenating the tables of
successive `feed()` calls gives the same bytes whatever the batch sizes were. Because ids
are fixed-width lowercase hex, sorting the 64-bit values sorts the texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ..addresses import distinct_pairs, word_text_array
from ..ids import hex_ids, pair_hash_values, text_hashes, text_seed
from ..jit_cache import drop_stale_jit_cache, njit
from ..protocols import PORT_PROTOCOLS, protocol_keyword
from ..schema import SESSIONS_SCHEMA, TIMESTAMP
from . import row as R

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)

_KEY_FIELDS = (R.O_PROTO, R.O_LO_HI, R.O_LO_LO, R.O_LO_PORT, R.O_HI_HI, R.O_HI_LO, R.O_HI_PORT)


@njit(cache=True, nogil=True)
def _fold(h: Any, value: Any) -> Any:
    """One splitmix64 round folding `value` into `h` (uint64 arithmetic wraps)."""
    z = h + np.uint64(value) + _K1
    z = (z ^ (z >> _S30)) * _K2
    z = (z ^ (z >> _S27)) * _K3
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True)
def _id_hashes(
    seeds: npt.NDArray[np.uint64],
    key: npt.NDArray[np.int64],
    opened: npt.NDArray[np.int64],
    split: npt.NDArray[np.int64],
    late: npt.NDArray[np.int64],
    dup: npt.NDArray[np.int64],
) -> npt.NDArray[np.uint64]:
    n = len(opened)
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        h = seeds[i]
        for f in range(7):
            h = _fold(h, key[f, i])
        h = _fold(h, opened[i])
        h = _fold(h, split[i])
        h = _fold(h, late[i])
        out[i] = _fold(h, dup[i])
    return out


def exporter_seed(exporter: str) -> int:
    """The exporter's part of every id: BLAKE2b-64 of its text, read little-endian."""
    return text_seed(exporter)


def id_hash(
    seeds: npt.NDArray[np.uint64],
    cols: npt.NDArray[np.int64],
    opened: npt.NDArray[np.int64],
    split: npt.NDArray[np.int64],
    late: npt.NDArray[np.int64],
    dup: npt.NDArray[np.int64],
) -> npt.NDArray[np.uint64]:
    """uint64 ids of the keys in `cols` (session rows transposed: [field, row]) at (opened_at,
    split, late, dup); `seeds` holds each row's exporter_seed."""
    key = np.ascontiguousarray(cols[list(_KEY_FIELDS)], dtype=np.int64)
    values = [np.ascontiguousarray(v, dtype=np.int64) for v in (opened, split, late, dup)]
    return _id_hashes(np.ascontiguousarray(seeds, dtype=np.uint64), key, *values)


def id_texts(
    ids: npt.NDArray[np.uint64], valid: npt.NDArray[np.bool_] | None = None
) -> pa.StringArray:
    """uint64 ids -> Arrow strings of 16 hex digits (null where `valid` is False)."""
    return hex_ids(ids, valid)


def session_ids(
    seeds: npt.NDArray[np.uint64], cols: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """uint64 session ids of final rows (transposed: [field, row])."""
    return id_hash(seeds, cols, cols[R.O_OPENED], cols[R.O_SPLIT], cols[R.O_LATE], cols[R.O_DUP])


def _joined(parts: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
    """Output rows of the parts side by side, as a strided view (one spare column behind).
    The kernel's own rows are a slice of its output buffer, which numba types apart from a
    C-contiguous array: joined parts made contiguous compiled _session_numbers a second time
    (seconds on the first run after install)."""
    if len(parts) == 1 and not parts[0].flags.c_contiguous:
        return parts[0]
    n = sum(part.shape[1] for part in parts)
    joined = np.empty((parts[0].shape[0], n + 1), dtype=np.int64)
    np.concatenate(parts, axis=1, out=joined[:, :n])
    return joined[:, :n]


def _conversation_ids(
    seeds: npt.NDArray[np.uint64], cols: npt.NDArray[np.int64], own: npt.NDArray[np.uint64]
) -> npt.NDArray[np.uint64]:
    roots = id_hash(
        seeds,
        cols,
        cols[R.O_ROOT_OPENED],
        np.zeros(cols.shape[1], np.int64),
        cols[R.O_ROOT_LATE],
        cols[R.O_ROOT_DUP],
    )
    return np.where(cols[R.O_SPLIT] > 0, roots, own)


def _follow_ids(
    seeds: npt.NDArray[np.uint64], cols: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    return id_hash(
        seeds,
        cols,
        cols[R.O_FOLLOW_OPENED],
        cols[R.O_FOLLOW_SPLIT],
        cols[R.O_FOLLOW_LATE],
        cols[R.O_FOLLOW_DUP],
    )


# -> a bool, typed Any: numpy's stubs type an element of an array as Any
@njit(cache=True, nogil=True)
def _before(
    a: int,
    b: int,
    ids: npt.NDArray[np.uint64],
    rank: npt.NDArray[np.int64],
    serial: npt.NDArray[np.int64],
) -> Any:
    """Row a sorts before row b by (id, exporter rank, serial)."""
    if ids[a] != ids[b]:
        return ids[a] < ids[b]
    if rank[a] != rank[b]:
        return rank[a] < rank[b]
    return serial[a] < serial[b]


@njit(cache=True, nogil=True)
def _sort_tied_runs(
    order: npt.NDArray[np.intp],
    emit: npt.NDArray[np.int64],
    ids: npt.NDArray[np.uint64],
    rank: npt.NDArray[np.int64],
    serial: npt.NDArray[np.int64],
) -> None:
    """Within each run of equal emit in `order`, sort by (id, exporter rank, serial): a
    stable merge sort, insertion-sorted blocks of 16 merged bottom-up through a scratch
    array. Written out rather than numba's argsort and slice assignment, which compiled
    their error paths (text formatting) for ~7 s on the first run after install."""
    n = len(order)
    scratch = np.empty(0, order.dtype)  # as long as the longest run merged so far
    i = 0
    while i < n:
        j = i + 1
        while j < n and emit[order[j]] == emit[order[i]]:
            j += 1
        if j - i > 16 and j - i > len(scratch):
            scratch = np.empty(j - i, order.dtype)
        for start in range(i, j, 16):
            stop = min(start + 16, j)
            for a in range(start + 1, stop):
                row = order[a]
                b = a - 1
                while b >= start and _before(row, order[b], ids, rank, serial):
                    order[b + 1] = order[b]
                    b -= 1
                order[b + 1] = row
        width = 16
        while width < j - i:
            # merge pairs of sorted blocks of `width` from order[i:j] into scratch, then back
            for lo in range(i, j, 2 * width):
                mid = min(lo + width, j)
                hi = min(lo + 2 * width, j)
                a = lo
                b = mid
                k = lo - i
                while a < mid and b < hi:
                    if _before(order[b], order[a], ids, rank, serial):
                        scratch[k] = order[b]
                        b += 1
                    else:  # ties keep the left block's row first: stable
                        scratch[k] = order[a]
                        a += 1
                    k += 1
                while a < mid:
                    scratch[k] = order[a]
                    a += 1
                    k += 1
                while b < hi:
                    scratch[k] = order[b]
                    b += 1
                    k += 1
            for k in range(j - i):
                order[i + k] = scratch[k]
            width *= 2
        i = j


def _output_order(
    emit: npt.NDArray[np.int64],
    ids: npt.NDArray[np.uint64],
    exporter_rank: npt.NDArray[np.int64],
    serial: npt.NDArray[np.int64],
) -> npt.NDArray[np.intp]:
    """The permutation sorting rows by (emit, session_id, exporter, serial).

    Rows leave the kernel nearly sorted by emit, so a stable sort by emit is cheap; only the
    runs sharing an emit (several sessions final after one record, or every session still
    open at the end) need the rest of the key, each sorted on its own.
    """
    order = np.argsort(emit, kind="stable")
    _sort_tied_runs(
        order,
        np.ascontiguousarray(emit),
        ids,
        np.ascontiguousarray(exporter_rank),
        np.ascontiguousarray(serial),
    )
    return order


def _vocabulary(
    names: tuple[str | None, ...], codes: npt.NDArray[np.integer[Any]]
) -> pa.StringArray:
    """Strings of a small vocabulary picked by integer codes (no Python object per row)."""
    # pa.array of int32 values is an Int32Array (the stubs read any ndarray as booleans)
    return pa.array(list(names), pa.string()).take(
        cast(pa.Int32Array, pa.array(codes.astype(np.int32)))
    )


def _address_text_array(high: npt.NDArray[np.int64], low: npt.NDArray[np.int64]) -> pa.StringArray:
    """Text of addresses given as row.py halves (addresses.word_text_array)."""
    return word_text_array((high ^ R.SIGN_BIT).view(np.uint64), (low ^ R.SIGN_BIT).view(np.uint64))


def _endpoint_texts(cols: npt.NDArray[np.int64]) -> tuple[pa.StringArray, npt.NDArray[np.int64]]:
    """(text of each distinct address, index [2, n] of endpoint lo/hi of each row into it).

    Each distinct address is formatted once: a scan's million sessions share few hosts.
    """
    n = cols.shape[1]
    high = np.concatenate([cols[R.O_LO_HI], cols[R.O_HI_HI]])
    low = np.concatenate([cols[R.O_LO_LO], cols[R.O_HI_LO]])
    first, index = distinct_pairs(high.view(np.uint64), low.view(np.uint64))
    return _address_text_array(high[first], low[first]), index.reshape(2, n)


class _Numbers(NamedTuple):
    """The sessions table's number columns, in output order, as _session_numbers makes them."""

    split: npt.NDArray[np.uint32]
    domain: npt.NDArray[np.uint32]
    protocol: npt.NDArray[np.uint8]
    port_a: npt.NDArray[np.uint16]
    port_b: npt.NDArray[np.uint16]
    client_port: npt.NDArray[np.uint16]
    server_port: npt.NDArray[np.uint16]
    address_a: npt.NDArray[np.int64]
    address_b: npt.NDArray[np.int64]
    client_address: npt.NDArray[np.int64]
    server_address: npt.NDArray[np.int64]
    method: npt.NDArray[np.int32]
    confidence: npt.NDArray[np.float64]
    ab_bytes: npt.NDArray[np.uint64]
    ba_bytes: npt.NDArray[np.uint64]
    ab_packets: npt.NDArray[np.uint64]
    ba_packets: npt.NDArray[np.uint64]
    ab_flags: npt.NDArray[np.uint16]
    ba_flags: npt.NDArray[np.uint16]
    icmp: npt.NDArray[np.bool_]
    icmp_type: npt.NDArray[np.uint8]
    icmp_code: npt.NDArray[np.uint8]
    opened: npt.NDArray[np.int64]
    last: npt.NDArray[np.int64]
    closed: npt.NDArray[np.int64]
    still_open: npt.NDArray[np.bool_]
    state: npt.NDArray[np.int32]
    reason: npt.NDArray[np.int32]
    flows: npt.NDArray[np.uint64]
    late_records: npt.NDArray[np.uint64]
    late: npt.NDArray[np.bool_]
    sampling: npt.NDArray[np.uint32]
    scaled: npt.NDArray[np.bool_]
    serial: npt.NDArray[np.int64]
    orient: npt.NDArray[np.int64]


@njit(cache=True, nogil=True)
def _session_numbers(
    cols: npt.NDArray[np.int64], order: npt.NDArray[np.intp], endpoint: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[Any], ...]:
    """Every number column of the sessions table, row i from output row order[i]: one pass
    that gathers, orients (a/b, client/server) and narrows, instead of a gather of all the
    output fields and a numpy pass per column. Endpoint d of row j is `endpoint[d, j]` (an
    index into the address texts), the lo endpoint being d = 0."""
    n = len(order)
    split = np.empty(n, np.uint32)
    domain = np.empty(n, np.uint32)
    protocol = np.empty(n, np.uint8)
    port_a = np.empty(n, np.uint16)
    port_b = np.empty(n, np.uint16)
    client_port = np.empty(n, np.uint16)
    server_port = np.empty(n, np.uint16)
    address_a = np.empty(n, np.int64)
    address_b = np.empty(n, np.int64)
    client_address = np.empty(n, np.int64)
    server_address = np.empty(n, np.int64)
    method = np.empty(n, np.int32)
    confidence = np.empty(n, np.float64)
    ab_bytes = np.empty(n, np.uint64)
    ba_bytes = np.empty(n, np.uint64)
    ab_packets = np.empty(n, np.uint64)
    ba_packets = np.empty(n, np.uint64)
    ab_flags = np.empty(n, np.uint16)
    ba_flags = np.empty(n, np.uint16)
    icmp = np.empty(n, np.bool_)
    icmp_type = np.empty(n, np.uint8)
    icmp_code = np.empty(n, np.uint8)
    opened = np.empty(n, np.int64)
    last = np.empty(n, np.int64)
    closed = np.empty(n, np.int64)
    still_open = np.empty(n, np.bool_)
    state = np.empty(n, np.int32)
    reason = np.empty(n, np.int32)
    flows = np.empty(n, np.uint64)
    late_records = np.empty(n, np.uint64)
    late = np.empty(n, np.bool_)
    sampling = np.empty(n, np.uint32)
    scaled = np.empty(n, np.bool_)
    serial = np.empty(n, np.int64)
    orient = np.empty(n, np.int64)
    for i in range(n):
        j = order[i]
        a = cols[R.O_ORIENT, j]  # endpoint a: 0 = lo
        b = 1 - a
        server = cols[R.O_SERVER, j]
        client = 1 - server
        port_of = (cols[R.O_LO_PORT, j], cols[R.O_HI_PORT, j])
        split[i] = cols[R.O_SPLIT, j]
        domain[i] = cols[R.O_DOMAIN, j]
        proto = cols[R.O_PROTO, j]
        protocol[i] = proto
        port_a[i] = port_of[a]
        port_b[i] = port_of[b]
        client_port[i] = port_of[client]
        server_port[i] = port_of[server]
        address_a[i] = endpoint[a, j]
        address_b[i] = endpoint[b, j]
        client_address[i] = endpoint[client, j]
        server_address[i] = endpoint[server, j]
        method[i] = cols[R.O_METHOD, j]
        confidence[i] = cols[R.O_CONFIDENCE, j] / 1000.0
        ab_bytes[i] = cols[R.O_BYTES0 + a, j]
        ba_bytes[i] = cols[R.O_BYTES0 + b, j]
        ab_packets[i] = cols[R.O_PACKETS0 + a, j]
        ba_packets[i] = cols[R.O_PACKETS0 + b, j]
        ab_flags[i] = cols[R.O_FLAGS0 + a, j]
        ba_flags[i] = cols[R.O_FLAGS0 + b, j]
        first_dst_port = cols[R.O_FIRST_DST_PORT, j]
        # -1: the record that oriented the session was the silent half of a biflow record
        icmp[i] = (proto == 1 or proto == 58) and first_dst_port >= 0
        icmp_type[i] = (first_dst_port >> 8) & 0xFF
        icmp_code[i] = first_dst_port & 0xFF
        opened[i] = cols[R.O_OPENED, j]
        last[i] = cols[R.O_LAST, j]
        closed[i] = cols[R.O_CLOSED_AT, j]
        is_open = cols[R.O_REASON, j] == R.REASON_OPEN
        still_open[i] = is_open
        state[i] = cols[R.O_STATE, j]
        reason[i] = len(R.REASON_NAMES) if is_open else cols[R.O_REASON, j]
        flows[i] = cols[R.O_FLOWS, j]
        late_records[i] = cols[R.O_LATE_RECORDS, j]
        late[i] = cols[R.O_LATE, j] != 0
        sampling[i] = max(cols[R.O_SAMPLING, j], 1)
        scaled[i] = cols[R.O_SCALED, j] != 0
        serial[i] = cols[R.O_SERIAL, j]
        orient[i] = a
    return (
        split,
        domain,
        protocol,
        port_a,
        port_b,
        client_port,
        server_port,
        address_a,
        address_b,
        client_address,
        server_address,
        method,
        confidence,
        ab_bytes,
        ba_bytes,
        ab_packets,
        ba_packets,
        ab_flags,
        ba_flags,
        icmp,
        icmp_type,
        icmp_code,
        opened,
        last,
        closed,
        still_open,
        state,
        reason,
        flows,
        late_records,
        late,
        sampling,
        scaled,
        serial,
        orient,
    )


def _list_of_nothing(n: int) -> pa.ListArray[Any]:
    """n empty string lists, built from offsets alone."""
    # pa.array of int32 values is an Int32Array (the stubs read any ndarray as booleans)
    offsets = cast(pa.Int32Array, pa.array(np.zeros(n + 1, dtype=np.int32)))
    return pa.ListArray.from_arrays(offsets, pa.array([], pa.string()))


@dataclass(frozen=True)
class SessionKeys:
    """Per row of a sessions table, what the sessionizer holds as numbers and consolidation
    would otherwise work out again from the row's texts (Consolidation.rows): hashing two
    address texts per row, comparing two more, and encoding three text columns cost it
    about a third of its time on a scan.

    `pair` is ids.endpoint_pair_hashes of the row (ports of PORT_PROTOCOLS only),
    `client_is_a` whether (client_ip, client_port) is (ip_a, port_a), and the exporter,
    protocol and role_method columns are given as codes into the texts beside them.
    """

    pair: npt.NDArray[np.uint64]
    client_is_a: npt.NDArray[np.bool_]
    exporters: tuple[str, ...]
    exporter: npt.NDArray[np.int64]
    protocols: tuple[str, ...]
    protocol: npt.NDArray[np.intp]
    role_methods: tuple[str, ...]
    role_method: npt.NDArray[np.int32]


def sessions_table(
    parts: list[tuple[str, npt.NDArray[np.int64]]],
) -> tuple[
    pa.Table,
    npt.NDArray[np.intp],
    npt.NDArray[np.uint64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    SessionKeys | None,
]:
    """SESSIONS_SCHEMA rows for (exporter, output rows) parts, sorted; the order applied;
    their ids, serials and orientations (0: ip_a is the lo endpoint), in table order; and
    the rows' SessionKeys (None when there are no rows).

    Output rows come transposed ([field, session]: row.py's OUTPUT_FIELDS, indexed by the
    O_* constants), as the kernel writes them, so that every field is one contiguous
    vector. The returned order indexes the concatenation of the parts' sessions; the ids
    (uint64, see id_hash) are the sorted table's `session_id` values.
    """
    parts = [(exporter, cols) for exporter, cols in parts if cols.shape[1]]
    if not parts:
        return (
            SESSIONS_SCHEMA.empty_table(),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.uint64),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            None,
        )
    cols = _joined([c for _, c in parts])
    n = cols.shape[1]
    names = sorted({exporter for exporter, _ in parts})
    rank_of = {name: rank for rank, name in enumerate(names)}
    lengths = [part.shape[1] for _, part in parts]
    exporter_rank = np.repeat(np.array([rank_of[e] for e, _ in parts], dtype=np.int64), lengths)
    seeds = np.array([exporter_seed(name) for name in names], dtype=np.uint64)[exporter_rank]

    ids = session_ids(seeds, cols)
    conversations = _conversation_ids(seeds, cols, ids)
    has_follow = cols[R.O_HAS_FOLLOW] != 0
    follows = _follow_ids(seeds, cols)

    # the order first, so that every column is built once, already sorted, in one pass
    order = _output_order(cols[R.O_EMIT], ids, exporter_rank, cols[R.O_SERIAL])
    ids = ids[order]
    conversations = conversations[order]
    has_follow = has_follow[order]
    follows = follows[order]
    exporter_rank = exporter_rank[order]
    texts, endpoint = _endpoint_texts(cols)  # endpoint[d, j]: address of endpoint d of row j
    number = _Numbers(*_session_numbers(cols, order, endpoint))
    protocols, protocol_code = np.unique(number.protocol, return_inverse=True)
    keywords = tuple(protocol_keyword(int(p)) for p in protocols)

    def times(
        values: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_] | None = None
    ) -> pa.Array[Any]:
        return pa.array(values, type=pa.int64(), mask=mask).cast(TIMESTAMP)

    def address(index: npt.NDArray[np.int64]) -> pa.StringArray:
        # pa.array of int64 values is an Int64Array (the stubs read any ndarray as booleans)
        return texts.take(cast(pa.Int64Array, pa.array(index)))

    columns: dict[str, pa.Array[Any]] = {
        "session_id": id_texts(ids),
        "conversation_id": id_texts(conversations),
        "split": pa.array(number.split),
        "exporter": _vocabulary(tuple(names), exporter_rank),
        "exporter_domain": pa.array(number.domain),
        "protocol": _vocabulary(keywords, protocol_code.ravel()),
        "protocol_number": pa.array(number.protocol),
        "ip_a": address(number.address_a),
        "port_a": pa.array(number.port_a),
        "ip_b": address(number.address_b),
        "port_b": pa.array(number.port_b),
        "client_ip": address(number.client_address),
        "client_port": pa.array(number.client_port),
        "server_ip": address(number.server_address),
        "server_port": pa.array(number.server_port),
        "role_method": _vocabulary(R.METHOD_NAMES, number.method),
        "role_confidence": pa.array(number.confidence),
        "ab_bytes": pa.array(number.ab_bytes),
        "ba_bytes": pa.array(number.ba_bytes),
        "ab_packets": pa.array(number.ab_packets),
        "ba_packets": pa.array(number.ba_packets),
        "ab_flags": pa.array(number.ab_flags),
        "ba_flags": pa.array(number.ba_flags),
        "icmp_type": pa.array(number.icmp_type, mask=~number.icmp),
        "icmp_code": pa.array(number.icmp_code, mask=~number.icmp),
        "opened_at": times(number.opened),
        "last_seen_at": times(number.last),
        "closed_at": times(number.closed, mask=number.still_open),
        "state": _vocabulary(R.STATE_NAMES, number.state),
        "close_reason": _vocabulary((*R.REASON_NAMES, None), number.reason),
        "flow_count": pa.array(number.flows),
        "late_records": pa.array(number.late_records),
        "late": pa.array(number.late),
        "follows_session_id": id_texts(follows, has_follow),
        "sampling_rate": pa.array(number.sampling),
        "counters_scaled": pa.array(number.scaled),
        "matched_rules": _list_of_nothing(n),
    }
    table = pa.Table.from_arrays([columns[f.name] for f in SESSIONS_SCHEMA], schema=SESSIONS_SCHEMA)
    address_hashes = text_hashes(texts)  # each distinct address once
    keys = SessionKeys(
        pair=pair_hash_values(
            number.protocol,
            address_hashes[number.address_a],
            number.port_a,
            address_hashes[number.address_b],
            number.port_b,
            port_protocols=PORT_PROTOCOLS,
        ),
        # one index per distinct address, and a canonical text per address: equal indices
        # are equal texts
        client_is_a=(
            (number.client_address == number.address_a) & (number.client_port == number.port_a)
        ),
        exporters=tuple(names),
        exporter=exporter_rank,
        protocols=keywords,
        protocol=protocol_code.ravel(),
        role_methods=R.METHOD_NAMES,
        role_method=number.method,
    )
    return table, order, ids, number.serial, number.orient, keys


# numba's cache ignores the modules this one compiles in (jit_cache.py): last, so that
# every name is bound
drop_stale_jit_cache(globals())
