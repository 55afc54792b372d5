"""Session rows (row.py) -> SESSIONS_SCHEMA tables, with the deterministic session ids.

`session_id` is the first 8 bytes (16 hex digits) of BLAKE2b over the exporter text, a NUL,
then little-endian int64s: protocol, the canonical endpoints (address halves and ports, the
smaller endpoint first), opened_at (µs), split and late — sessions.md's (exporter, key,
opened_at, split, late) — followed by a ninth int64 `dup` only when it is non-zero.
`dup` counts earlier closed sessions of the same key with the very same (opened_at, split,
late), which only happens when a long record reaches back to the start of a session that
already closed; without it two rows could share an id. `conversation_id` is fragment 0's
session_id, computed from the (opened_at, late, dup) fragment 0 handed down.

The surprising thing: rows come out sorted by (emit, session_id, exporter), where `emit` is
the arrival index of the record after which the row became final (end of input: the record
count). That order is a property of the input alone, so concatenating the tables of
successive `feed()` calls gives the same bytes whatever the batch sizes were.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..addresses import address_texts
from ..schema import SESSIONS_SCHEMA, TIMESTAMP
from . import row as R
from .keys import address_bytes, protocol_keyword

_KEY_FIELDS = (R.F_PROTO, R.F_LO_HI, R.F_LO_LO, R.F_LO_PORT, R.F_HI_HI, R.F_HI_LO, R.F_HI_PORT)


def hash_ids(exporter: str, rows: np.ndarray, opened: np.ndarray, split: np.ndarray,
             late: np.ndarray, dup: np.ndarray) -> list[str]:
    """Session ids for the keys of `rows` with the given (opened_at, split, late, dup)."""
    n = len(rows)
    if n == 0:
        return []
    packed = np.empty((n, 10), dtype="<i8")
    for column, field in enumerate(_KEY_FIELDS):
        packed[:, column] = rows[:, field]
    packed[:, 7] = opened
    packed[:, 8] = split
    packed[:, 9] = late
    prefix = exporter.encode("utf-8") + b"\x00"
    data = packed.tobytes()
    width = 80
    ids: list[str] = []
    for i in range(n):
        digest = hashlib.blake2b(prefix, digest_size=8)
        digest.update(data[i * width:(i + 1) * width])
        if dup[i]:
            digest.update(int(dup[i]).to_bytes(8, "little", signed=True))
        ids.append(digest.hexdigest())
    return ids


def session_ids(exporter: str, rows: np.ndarray) -> list[str]:
    return hash_ids(exporter, rows, rows[:, R.F_OPENED], rows[:, R.F_SPLIT], rows[:, R.F_LATE],
                    rows[:, R.F_DUP])


def _conversation_ids(exporter: str, rows: np.ndarray, own: list[str]) -> list[str]:
    later = np.flatnonzero(rows[:, R.F_SPLIT] > 0)
    result = list(own)
    if len(later):
        sub = rows[later]
        roots = hash_ids(exporter, sub, sub[:, R.F_ROOT_OPENED], np.zeros(len(sub), np.int64),
                         sub[:, R.F_ROOT_LATE], sub[:, R.F_ROOT_DUP])
        for i, text in zip(later.tolist(), roots, strict=True):
            result[i] = text
    return result


def _follow_ids(exporter: str, rows: np.ndarray) -> list[str | None]:
    having = np.flatnonzero(rows[:, R.F_HAS_FOLLOW] != 0)
    result: list[str | None] = [None] * len(rows)
    if len(having):
        sub = rows[having]
        texts = hash_ids(exporter, sub, sub[:, R.F_FOLLOW_OPENED], sub[:, R.F_FOLLOW_SPLIT],
                         sub[:, R.F_FOLLOW_LATE], sub[:, R.F_FOLLOW_DUP])
        for i, text in zip(having.tolist(), texts, strict=True):
            result[i] = text
    return result


def _pick(choose_hi: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.where(choose_hi, hi, lo)


def sessions_table(parts: list[tuple[str, np.ndarray]]) -> tuple[pa.Table, np.ndarray]:
    """SESSIONS_SCHEMA rows for (exporter, rows) parts, sorted; and the order applied.

    The returned order indexes the concatenation of the parts' rows.
    """
    parts = [(exporter, rows) for exporter, rows in parts if len(rows)]
    if not parts:
        return SESSIONS_SCHEMA.empty_table(), np.zeros(0, dtype=np.int64)
    rows = np.concatenate([r for _, r in parts])
    exporters: list[str] = []
    ids: list[str] = []
    conversations: list[str] = []
    follows: list[str | None] = []
    for exporter, part in parts:
        own = session_ids(exporter, part)
        ids.extend(own)
        conversations.extend(_conversation_ids(exporter, part, own))
        follows.extend(_follow_ids(exporter, part))
        exporters.extend([exporter] * len(part))
    n = len(rows)
    lo_text = address_texts(address_bytes(rows[:, R.F_LO_HI], rows[:, R.F_LO_LO]))
    hi_text = address_texts(address_bytes(rows[:, R.F_HI_HI], rows[:, R.F_HI_LO]))
    texts = np.array([lo_text, hi_text], dtype=object)  # [endpoint, row]
    ports = np.stack([rows[:, R.F_LO_PORT], rows[:, R.F_HI_PORT]])
    everyone = np.arange(n)
    a = rows[:, R.F_ORIENT]
    server = rows[:, R.F_SERVER]
    a_is_hi = a == 1
    protocol = rows[:, R.F_PROTO]
    icmp = (protocol == 1) | (protocol == 58)
    first_dst_port = rows[:, R.F_FIRST_DST_PORT]
    is_open = rows[:, R.F_REASON] == R.REASON_OPEN
    keywords = {int(p): protocol_keyword(int(p)) for p in np.unique(protocol)}
    method_names = np.array(R.METHOD_NAMES, dtype=object)
    state_names = np.array(R.STATE_NAMES, dtype=object)
    reason_names = np.array((*R.REASON_NAMES, None), dtype=object)  # -1 (open) -> None

    def times(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
        return pa.array(values.astype(np.int64), type=pa.int64(), mask=mask).cast(TIMESTAMP)

    columns = {
        "session_id": pa.array(ids, pa.string()),
        "conversation_id": pa.array(conversations, pa.string()),
        "split": pa.array(rows[:, R.F_SPLIT].astype(np.uint32)),
        "exporter": pa.array(exporters, pa.string()),
        "exporter_domain": pa.array(rows[:, R.F_DOMAIN].astype(np.uint32)),
        "protocol": pa.array([keywords[int(p)] for p in protocol], pa.string()),
        "protocol_number": pa.array(protocol.astype(np.uint8)),
        "ip_a": pa.array(texts[a, everyone].tolist(), pa.string()),
        "port_a": pa.array(ports[a, everyone].astype(np.uint16)),
        "ip_b": pa.array(texts[1 - a, everyone].tolist(), pa.string()),
        "port_b": pa.array(ports[1 - a, everyone].astype(np.uint16)),
        "client_ip": pa.array(texts[1 - server, everyone].tolist(), pa.string()),
        "client_port": pa.array(ports[1 - server, everyone].astype(np.uint16)),
        "server_ip": pa.array(texts[server, everyone].tolist(), pa.string()),
        "server_port": pa.array(ports[server, everyone].astype(np.uint16)),
        "role_method": pa.array(method_names[rows[:, R.F_METHOD]].tolist(), pa.string()),
        "role_confidence": pa.array(rows[:, R.F_CONFIDENCE] / 1000.0),
        "ab_bytes": pa.array(_pick(a_is_hi, rows[:, R.F_BYTES0], rows[:, R.F_BYTES1])
                             .astype(np.uint64)),
        "ba_bytes": pa.array(_pick(a_is_hi, rows[:, R.F_BYTES1], rows[:, R.F_BYTES0])
                             .astype(np.uint64)),
        "ab_packets": pa.array(_pick(a_is_hi, rows[:, R.F_PACKETS0], rows[:, R.F_PACKETS1])
                               .astype(np.uint64)),
        "ba_packets": pa.array(_pick(a_is_hi, rows[:, R.F_PACKETS1], rows[:, R.F_PACKETS0])
                               .astype(np.uint64)),
        "ab_flags": pa.array(_pick(a_is_hi, rows[:, R.F_FLAGS0], rows[:, R.F_FLAGS1])
                             .astype(np.uint16)),
        "ba_flags": pa.array(_pick(a_is_hi, rows[:, R.F_FLAGS1], rows[:, R.F_FLAGS0])
                             .astype(np.uint16)),
        "icmp_type": pa.array((first_dst_port >> 8).astype(np.uint8), mask=~icmp),
        "icmp_code": pa.array((first_dst_port & 0xFF).astype(np.uint8), mask=~icmp),
        "opened_at": times(rows[:, R.F_OPENED]),
        "last_seen_at": times(rows[:, R.F_LAST]),
        "closed_at": times(rows[:, R.F_CLOSED_AT], mask=is_open),
        "state": pa.array(state_names[rows[:, R.F_STATE]].tolist(), pa.string()),
        "close_reason": pa.array(reason_names[rows[:, R.F_REASON]].tolist(), pa.string()),
        "flow_count": pa.array(rows[:, R.F_FLOWS].astype(np.uint64)),
        "late_records": pa.array(rows[:, R.F_LATE_RECORDS].astype(np.uint64)),
        "late": pa.array(rows[:, R.F_LATE] != 0),
        "follows_session_id": pa.array(follows, pa.string()),
        "sampling_rate": pa.array(np.maximum(rows[:, R.F_SAMPLING], 1).astype(np.uint32)),
        "counters_scaled": pa.array(rows[:, R.F_SCALED] != 0),
        "matched_rules": pa.array([[] for _ in range(n)], pa.list_(pa.string())),
    }
    table = pa.Table.from_arrays([columns[f.name] for f in SESSIONS_SCHEMA],
                                 schema=SESSIONS_SCHEMA)
    keys = pa.table({"emit": rows[:, R.F_EMIT], "session_id": columns["session_id"],
                     "exporter": columns["exporter"], "serial": rows[:, R.F_SERIAL]})
    order = pc.sort_indices(keys, sort_keys=[("emit", "ascending"), ("session_id", "ascending"),
                                             ("exporter", "ascending"),
                                             ("serial", "ascending")]).to_numpy()
    return table.take(order), order
