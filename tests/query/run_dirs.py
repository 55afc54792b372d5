"""A small hand-made run directory whose answers can be worked out on paper.

Times are 2024-03-01 UTC; the data ends at 11:00:00 (manifest data_window.end), more than a
year before any wall clock these tests run under, so a window anchored on the wall clock
would find nothing.

id   proto  a (client)        b (server)         state / reason       opened - last seen   rules
s1   TCP    10.0.0.42:53124   10.0.10.12:443     closed fin          10:00:00 - 10:00:38 web-to-api
s2   UDP    10.0.0.42:5353    10.0.0.53:53       closed idle         10:10:00 - 10:10:01 lan-dns
s3   TCP    10.0.0.99:40000   93.184.216.34:22   closed no_reply      10:50:00 - 10:50:00
s4   TCP    10.0.0.99:40001   10.0.10.12:3389    closed rejected      10:50:01 - 10:50:01
s5a  TCP    10.0.0.7:50000    10.1.0.5:5432      closed hard_timeout 08:45:00 - 09:00:00 db-access
s5b  TCP    10.0.0.7:50000    10.1.0.5:5432      active (split 1)    09:00:10 - 10:59:00 db-access
s6   ICMP   2001:db8::1       2001:db8::2        closed idle          10:30:00 - 10:30:05
s7   UDP    10.0.0.42:123     9.9.9.9:123        closed no_reply      10:59:30 - 10:59:59
s8   TCP    10.0.0.99:40002   10.0.10.12:80      half_open            10:59:58 - 10:59:58

Every session is exporter 192.0.2.1 domain 0 except s6 (192.0.2.2 domain 256).

Cartography: hosts db1 10.1.0.5 (tcp/5432), resolver 10.0.0.53, api 10.0.10.12; network lan
10.0.0.0/24; groups databases [db1], servers [api, resolver, databases].
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from obserae_forensics.matching.consolidate import SESSIONS_CONSOLIDATED_SCHEMA
from obserae_forensics.schema import FLOW_SCHEMA, SESSIONS_SCHEMA

DAY = "2024-03-01T"
DATA_START = DAY + "08:45:00Z"
DATA_END = DAY + "11:00:00Z"

CARTOGRAPHY = """\
hosts:
  db1:
    addresses: [10.1.0.5]
    services: [tcp/5432]
  resolver: 10.0.0.53
  api: 10.0.10.12
networks:
  lan: [10.0.0.0/24]
groups:
  databases: [db1]
  servers: [api, resolver, databases]
"""

FLOW_MATRIX = """\
rules:
  - name: web-to-api
    source: lan
    destination: api
    protocol: tcp
    ports: [443]
  - name: lan-dns
    source: lan
    destination: resolver
    protocol: udp
    ports: [53]
  - name: db-access
    source: lan
    destination: databases
    protocol: tcp
    ports: [5432]
"""

# id, protocol, number, a, port a, b, port b, state, reason, opened, last seen, exporter,
# domain, rules, split, conversation
SESSIONS: list[tuple[Any, ...]] = [
    (
        "s1",
        "TCP",
        6,
        "10.0.0.42",
        53124,
        "10.0.10.12",
        443,
        "closed",
        "fin",
        "10:00:00",
        "10:00:38",
        "192.0.2.1",
        0,
        ["web-to-api"],
        0,
        "s1",
    ),
    (
        "s2",
        "UDP",
        17,
        "10.0.0.42",
        5353,
        "10.0.0.53",
        53,
        "closed",
        "idle",
        "10:10:00",
        "10:10:01",
        "192.0.2.1",
        0,
        ["lan-dns"],
        0,
        "s2",
    ),
    (
        "s3",
        "TCP",
        6,
        "10.0.0.99",
        40000,
        "93.184.216.34",
        22,
        "closed",
        "no_reply",
        "10:50:00",
        "10:50:00",
        "192.0.2.1",
        0,
        [],
        0,
        "s3",
    ),
    (
        "s4",
        "TCP",
        6,
        "10.0.0.99",
        40001,
        "10.0.10.12",
        3389,
        "closed",
        "rejected",
        "10:50:01",
        "10:50:01",
        "192.0.2.1",
        0,
        [],
        0,
        "s4",
    ),
    (
        "s5a",
        "TCP",
        6,
        "10.0.0.7",
        50000,
        "10.1.0.5",
        5432,
        "closed",
        "hard_timeout",
        "08:45:00",
        "09:00:00",
        "192.0.2.1",
        0,
        ["db-access"],
        0,
        "s5a",
    ),
    (
        "s5b",
        "TCP",
        6,
        "10.0.0.7",
        50000,
        "10.1.0.5",
        5432,
        "active",
        None,
        "09:00:10",
        "10:59:00",
        "192.0.2.1",
        0,
        ["db-access"],
        1,
        "s5a",
    ),
    (
        "s6",
        "ICMP",
        1,
        "2001:db8::1",
        0,
        "2001:db8::2",
        0,
        "closed",
        "idle",
        "10:30:00",
        "10:30:05",
        "192.0.2.2",
        256,
        [],
        0,
        "s6",
    ),
    (
        "s7",
        "UDP",
        17,
        "10.0.0.42",
        123,
        "9.9.9.9",
        123,
        "closed",
        "no_reply",
        "10:59:30",
        "10:59:59",
        "192.0.2.1",
        0,
        [],
        0,
        "s7",
    ),
    (
        "s8",
        "TCP",
        6,
        "10.0.0.99",
        40002,
        "10.0.10.12",
        80,
        "half_open",
        None,
        "10:59:58",
        "10:59:58",
        "192.0.2.1",
        0,
        [],
        0,
        "s8",
    ),
]
RULE_INDEX = {"web-to-api": 0, "lan-dns": 1, "db-access": 2}


def at(clock: str) -> pd.Timestamp:
    return pd.Timestamp(DAY + clock + "Z")


def session_rows() -> list[dict[str, Any]]:
    rows = []
    for (
        sid,
        name,
        number,
        a,
        port_a,
        b,
        port_b,
        state,
        reason,
        opened,
        last,
        exporter,
        domain,
        rules,
        split,
        conversation,
    ) in SESSIONS:
        closed = state == "closed"
        rows.append(
            {
                "session_id": sid,
                "conversation_id": conversation,
                "split": split,
                "exporter": exporter,
                "exporter_domain": domain,
                "protocol": name,
                "protocol_number": number,
                "ip_a": a,
                "port_a": port_a,
                "ip_b": b,
                "port_b": port_b,
                "client_ip": a,
                "client_port": port_a,
                "server_ip": b,
                "server_port": port_b,
                "role_method": "tcp_syn" if number == 6 else "first_sender",
                "role_confidence": 0.95 if number == 6 else 0.3,
                "ab_bytes": 1000 * (1 + len(rows)),
                "ba_bytes": 0 if reason == "no_reply" else 5000,
                "ab_packets": 3,
                "ba_packets": 0 if reason == "no_reply" else 4,
                "ab_flags": 0x02 if number == 6 else 0,
                "ba_flags": 0x12 if number == 6 else 0,
                "icmp_type": 128 if number == 1 else None,
                "icmp_code": 0 if number == 1 else None,
                "opened_at": at(opened),
                "last_seen_at": at(last),
                "closed_at": at(last) if closed else None,
                "state": state,
                "close_reason": reason,
                "flow_count": 2,
                "late_records": 0,
                "late": False,
                "follows_session_id": None,
                "sampling_rate": 1,
                "counters_scaled": False,
                "matched_rules": rules,
            }
        )
    return rows


def flow_rows(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two records per session: a->b at its opening, b->a at its last sighting."""
    rows = []
    zero = {
        name: 0
        for name in (
            "tos",
            "reverse_packets",
            "reverse_octets",
            "reverse_tcp_flags",
            "input_if",
            "output_if",
            "src_as",
            "dst_as",
            "flow_end_reason",
        )
    }
    for frame, session in enumerate(sessions, start=1):
        for index, direction in enumerate(("ab", "ba")):
            forward = direction == "ab"
            rows.append(
                {
                    **zero,
                    "first_seen": session["opened_at"] if forward else session["last_seen_at"],
                    "last_seen": session["opened_at"] if forward else session["last_seen_at"],
                    "src_addr": session["ip_a"] if forward else session["ip_b"],
                    "dst_addr": session["ip_b"] if forward else session["ip_a"],
                    "ip_version": 6 if ":" in session["ip_a"] else 4,
                    "src_port": session["port_a"] if forward else session["port_b"],
                    "dst_port": session["port_b"] if forward else session["port_a"],
                    "protocol": session["protocol_number"],
                    "tcp_flags": 0x02 if forward else 0x10,
                    "packets": session["ab_packets"] if forward else session["ba_packets"],
                    "octets": session["ab_bytes"] if forward else session["ba_bytes"],
                    "next_hop": "::",
                    "sampling_rate": 1,
                    "counters_scaled": False,
                    "export_version": 9,
                    "exporter": session["exporter"],
                    "exporter_domain": session["exporter_domain"],
                    "source_file": "hand.pcap",
                    "source_frame": frame,
                    "source_offset": 24 + 100 * frame,
                    "record_index": index,
                    "arrival": session["last_seen_at"],
                    "session_id": session["session_id"],
                    "direction": direction,
                }
            )
    return rows


def flows_schema() -> pa.Schema:
    fields = [
        pa.field(f.name, pa.string(), f.nullable)
        if f.name in ("src_addr", "dst_addr", "next_hop")
        else pa.field(
            f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type, f.nullable
        )
        for f in FLOW_SCHEMA
    ]
    return pa.schema(
        [*fields, pa.field("session_id", pa.string()), pa.field("direction", pa.string())]
    )


def write_run(
    out: Path,
    *,
    with_matches: bool = True,
    sessions: list[dict[str, Any]] | None = None,
    data_end: str = DATA_END,
) -> Path:
    """Write the hand-made run (or `sessions` in its place) into `out`; return `out`."""
    out.mkdir(parents=True, exist_ok=True)
    rows = session_rows() if sessions is None else sessions
    pq.write_table(pa.Table.from_pylist(rows, schema=SESSIONS_SCHEMA), out / "sessions.parquet")
    pq.write_table(
        pa.Table.from_pylist(flow_rows(rows), schema=flows_schema()), out / "flows.parquet"
    )
    if with_matches:
        matches = [
            {
                "session_id": row["session_id"],
                "rule": name,
                "rule_index": RULE_INDEX[name],
                "opened_at": row["opened_at"],
                "last_seen_at": row["last_seen_at"],
            }
            for row in rows
            for name in row["matched_rules"]
        ]
        schema = pa.schema(
            [
                ("session_id", pa.string()),
                ("rule", pa.string()),
                ("rule_index", pa.uint32()),
                ("opened_at", pa.timestamp("us", tz="UTC")),
                ("last_seen_at", pa.timestamp("us", tz="UTC")),
            ]
        )
        pq.write_table(
            pa.Table.from_pylist(matches, schema=schema), out / "session_matches.parquet"
        )
    consolidated = [
        {
            "consolidated_id": row["session_id"],
            "protocol": row["protocol"],
            "protocol_number": row["protocol_number"],
            "client_ip": row["client_ip"],
            "client_port": row["client_port"],
            "server_ip": row["server_ip"],
            "server_port": row["server_port"],
            "sampler_count": 1,
            "exporters": [row["exporter"]],
            "session_ids": [row["session_id"]],
            "session_count": 1,
            "first_seen": row["opened_at"],
            "last_seen": row["last_seen_at"],
            "cs_bytes": row["ab_bytes"],
            "sc_bytes": row["ba_bytes"],
            "cs_packets": row["ab_packets"],
            "sc_packets": row["ba_packets"],
            "coherence_pct": 100.0,
            "cs_sampling_rate": row["sampling_rate"],
            "sc_sampling_rate": row["sampling_rate"],
            "max_sampling_rate": row["sampling_rate"],
            "role_method": row["role_method"],
            "role_confidence": row["role_confidence"],
        }
        for row in rows
    ]
    pq.write_table(
        pa.Table.from_pylist(consolidated, schema=SESSIONS_CONSOLIDATED_SCHEMA),
        out / "sessions_consolidated.parquet",
    )
    (out / "cartography.yaml").write_text(CARTOGRAPHY, encoding="utf-8")
    (out / "flow_matrix.yaml").write_text(FLOW_MATRIX, encoding="utf-8")
    manifest = {
        "command": "sessionize",
        "cartography": str(out / "cartography.yaml"),
        "flow_matrix": str(out / "flow_matrix.yaml") if with_matches else None,
        "data_window": {"start": DATA_START, "end": data_end},
    }
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out


def write_later_run(out: Path) -> Path:
    """The hand-made run three hours later, its ids prefixed "later-": data from 11:45 to
    14:00, to load beside write_run's."""
    rows = session_rows()
    for row in rows:
        row["session_id"] = "later-" + row["session_id"]
        row["conversation_id"] = "later-" + row["conversation_id"]
        for column in ("opened_at", "last_seen_at", "closed_at"):
            if row[column] is not None:
                row[column] += pd.Timedelta(hours=3)
    later = write_run(out, sessions=rows, data_end="2024-03-01T14:00:00Z")
    manifest = json.loads((later / "manifest.json").read_text())
    manifest["data_window"]["start"] = "2024-03-01T11:45:00Z"
    (later / "manifest.json").write_text(json.dumps(manifest))
    return later
