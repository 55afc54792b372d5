"""Sessions tables (SESSIONS_SCHEMA) for the matching tests, built without the sessionizer.

`make_sessions` fills every column a test does not care about. `sessions_from_nfdump_csv`
turns the records of a corpus oracle (`nfdump -o csv`) into sessions by the contract's
plain rules, slowly and obviously: key = (protocol, unordered endpoints), one session
per key (the corpus files used here have at most one record per direction and key),
a = sender of the earliest record, server by known port, else the first record's
receiver, and the end-of-input rule for the state (closed once FIN went both ways or the
idle deadline has passed the last record's time, else active).
"""

from __future__ import annotations

import csv
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from obserae_forensics.schema import SESSIONS_SCHEMA

PROTOCOLS = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMP6": 58}
IDLE_US = {6: 60_000_000, 17: 30_000_000}
KNOWN_PORTS = {21, 22, 53, 80, 123, 443, 5353, 17500}

DEFAULTS: dict[str, Any] = {
    "conversation_id": "",
    "split": 0,
    "exporter": "127.0.0.1",
    "exporter_domain": 0,
    "protocol": "TCP",
    "protocol_number": 6,
    "port_a": 0,
    "port_b": 0,
    "role_method": "tcp_syn",
    "role_confidence": 0.95,
    "ab_bytes": 0,
    "ba_bytes": 0,
    "ab_packets": 0,
    "ba_packets": 0,
    "ab_flags": 0,
    "ba_flags": 0,
    "icmp_type": None,
    "icmp_code": None,
    "opened_at": 0,
    "last_seen_at": 0,
    "closed_at": None,
    "state": "closed",
    "close_reason": "fin",
    "flow_count": 1,
    "late_records": 0,
    "late": False,
    "follows_session_id": None,
    "sampling_rate": 1,
    "counters_scaled": False,
    "matched_rules": [],
}


def make_sessions(rows: list[dict[str, Any]]) -> pa.Table:
    """SESSIONS_SCHEMA table; each row needs at least session_id and the client/server.

    ip_a/port_a default to the client and ip_b/port_b to the server; times are µs.
    """
    full = []
    for row in rows:
        values = dict(DEFAULTS)
        values["ip_a"] = row.get("client_ip")
        values["port_a"] = row.get("client_port", 0)
        values["ip_b"] = row.get("server_ip")
        values["port_b"] = row.get("server_port", 0)
        values["conversation_id"] = row["session_id"]
        values.update(row)
        if values["state"] != "closed" and "close_reason" not in row:
            values["close_reason"] = None
        if values["state"] == "closed" and values["closed_at"] is None:
            values["closed_at"] = values["last_seen_at"]
        full.append(values)
    columns = {name: [values[name] for values in full] for name in SESSIONS_SCHEMA.names}
    return pa.Table.from_pydict(columns, schema=SESSIONS_SCHEMA)


def _us(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000


def sessions_from_nfdump_csv(path: Path, *, exporter: str = "127.0.0.1") -> pa.Table:
    """Sessions of one exporter from an nfdump CSV oracle (see the module docstring)."""
    with path.open(newline="") as handle:
        records = [row for row in csv.DictReader(handle) if row.get("pr") in PROTOCOLS]
    keyed: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in records:
        protocol = PROTOCOLS[row["pr"]]
        first = _us(row["ts"])
        record = {
            "src": (row["sa"], int(row["sp"])),
            "dst": (row["da"], int(row["dp"])),
            "first": first,
            "last": first + round(float(row["td"]) * 1_000_000),
            "packets": int(row["ipkt"]),
            "bytes": int(row["ibyt"]),
            "flags": row["flg"],
            "protocol": protocol,
        }
        key = (protocol, *sorted([record["src"], record["dst"]]))
        keyed.setdefault(key, []).append(record)
    watermark = max(record["last"] for group in keyed.values() for record in group)
    rows = []
    for key, group in keyed.items():
        group.sort(key=lambda r: (r["first"], r["src"]))
        protocol = key[0]
        a, b = group[0]["src"], group[0]["dst"]
        ab = [r for r in group if r["src"] == a]
        ba = [r for r in group if r["src"] == b]
        server, method, confidence = b, "first_sender", 0.3
        if a[1] in KNOWN_PORTS and b[1] not in KNOWN_PORTS:
            server, method, confidence = a, "known_port", 0.7
        elif b[1] in KNOWN_PORTS and a[1] not in KNOWN_PORTS:
            server, method, confidence = b, "known_port", 0.7
        client = a if server == b else b
        opened = min(r["first"] for r in group)
        last = max(r["last"] for r in group)
        finished = protocol == 6 and ab and ba and all("F" in r["flags"] for r in group)
        timed_out = last + IDLE_US.get(protocol, 60_000_000) <= watermark
        state = "closed" if finished or timed_out else "active"
        reason = None
        if finished:
            reason = "fin"
        elif timed_out:
            reason = "idle" if ab and ba else "no_reply"
        ident = hashlib.blake2b(repr((exporter, key, opened)).encode(), digest_size=8)
        rows.append(
            {
                "session_id": ident.hexdigest(),
                "exporter": exporter,
                "protocol": "TCP" if protocol == 6 else "UDP",
                "protocol_number": protocol,
                "ip_a": a[0],
                "port_a": a[1],
                "ip_b": b[0],
                "port_b": b[1],
                "client_ip": client[0],
                "client_port": client[1],
                "server_ip": server[0],
                "server_port": server[1],
                "role_method": method,
                "role_confidence": confidence,
                "ab_bytes": sum(r["bytes"] for r in ab),
                "ba_bytes": sum(r["bytes"] for r in ba),
                "ab_packets": sum(r["packets"] for r in ab),
                "ba_packets": sum(r["packets"] for r in ba),
                "opened_at": opened,
                "last_seen_at": last,
                "state": state,
                "close_reason": reason,
                "flow_count": len(group),
            }
        )
    rows.sort(key=lambda r: (r["opened_at"], r["session_id"]))
    return make_sessions(rows)
