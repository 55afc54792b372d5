"""Build sessionize run directories from hand-made rows, until the real command writes them.

`session(...)` gives one SESSIONS_SCHEMA row with readable defaults (times in seconds after
T0); `write_run(dir, sessions, flows=...)` writes manifest.json, sessions.parquet and
flows.parquet as sessionize lays them out (see /work/notes/h5_recombine.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from obserae_forensics.addresses import parse_address
from obserae_forensics.readers._batch import flow_batch
from obserae_forensics.schema import SESSIONS_SCHEMA

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
T0_US = int(T0.timestamp() * 1_000_000)

SETTINGS: dict[str, Any] = {
    "sessions.hard_timeout": 900.0,
    "sessions.grace": 30.0,
    "sessions.max_open_ksessions": 500,
    "sessions.idle.tcp_established": 60.0,
    "sessions.idle.tcp_half_open": 5.0,
    "sessions.idle.udp": 30.0,
    "sessions.idle.icmp": 10.0,
    "sessions.idle.other": 60.0,
    "sessions.replay": "arrival",
}
PROTOCOL_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "IPv6-ICMP"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(microseconds=round(seconds * 1_000_000))


def session(
    session_id: str,
    start: float,
    end: float,
    *,
    close: str | None = "idle",
    state: str = "closed",
    split: int = 0,
    conversation: str | None = None,
    a: tuple[str, int] = ("10.0.0.1", 40000),
    b: tuple[str, int] = ("10.0.0.2", 443),
    client: tuple[str, int] | None = None,
    server: tuple[str, int] | None = None,
    protocol: int = 6,
    exporter: str = "192.0.2.1",
    ab: tuple[int, int] = (1000, 10),
    ba: tuple[int, int] = (5000, 8),
    flags: tuple[int, int] = (0x1A, 0x1A),
    late: bool = False,
    follows: str | None = None,
    closed_at: float | None = None,
    flow_count: int = 2,
) -> dict[str, Any]:
    """One sessions.parquet row; open sessions (state active/half_open) have no closed_at."""
    client = client or a
    server = server or b
    is_open = state != "closed"
    return {
        "session_id": session_id,
        "conversation_id": conversation or session_id,
        "split": split,
        "exporter": exporter,
        "exporter_domain": 0,
        "protocol": PROTOCOL_NAMES.get(protocol, str(protocol)),
        "protocol_number": protocol,
        "ip_a": a[0],
        "port_a": a[1],
        "ip_b": b[0],
        "port_b": b[1],
        "client_ip": client[0],
        "client_port": client[1],
        "server_ip": server[0],
        "server_port": server[1],
        "role_method": "tcp_syn" if protocol == 6 else "first_sender",
        "role_confidence": 0.9,
        "ab_bytes": ab[0],
        "ba_bytes": ba[0],
        "ab_packets": ab[1],
        "ba_packets": ba[1],
        "ab_flags": flags[0],
        "ba_flags": flags[1],
        "icmp_type": None,
        "icmp_code": None,
        "opened_at": at(start),
        "last_seen_at": at(end),
        "closed_at": None if is_open else at(closed_at if closed_at is not None else end),
        "state": state,
        "close_reason": None if is_open else close,
        "flow_count": flow_count,
        "late_records": 0,
        "late": late,
        "follows_session_id": follows,
        "sampling_rate": 1,
        "counters_scaled": False,
        "matched_rules": [],
    }


def flows_for(
    rows: Sequence[dict[str, Any]],
    *,
    source_file: str = "capture.pcap",
    offsets: Sequence[int] | None = None,
    arrivals_us: Sequence[int] | None = None,
    frames: Sequence[int] | None = None,
) -> pa.Table:
    """One flow record per direction with packets of each session row (FLOW_SCHEMA +
    session_id, direction); offsets/arrivals/frames are per record, in that order."""
    tables = []
    index = -1
    for row in rows:
        directions = [
            (
                "ab",
                row["ip_a"],
                row["port_a"],
                row["ip_b"],
                row["port_b"],
                row["ab_bytes"],
                row["ab_packets"],
            ),
            (
                "ba",
                row["ip_b"],
                row["port_b"],
                row["ip_a"],
                row["port_a"],
                row["ba_bytes"],
                row["ba_packets"],
            ),
        ]
        for direction, src, sport, dst, dport, octets, packets in directions:
            if packets == 0:
                continue
            index += 1
            first = int(row["opened_at"].timestamp() * 1_000_000)
            last = int(row["last_seen_at"].timestamp() * 1_000_000)
            columns = {
                "first_seen": np.array([first]),
                "last_seen": np.array([last]),
                "src_addr": np.frombuffer(parse_address(src), np.uint8).reshape(1, 16),
                "dst_addr": np.frombuffer(parse_address(dst), np.uint8).reshape(1, 16),
                "ip_version": np.array([4]),
                "src_port": np.array([sport]),
                "dst_port": np.array([dport]),
                "protocol": np.array([row["protocol_number"]]),
                "packets": np.array([packets]),
                "octets": np.array([octets]),
                "source_offset": np.array([offsets[index] if offsets else 24 + index]),
                "source_frame": np.array([frames[index] if frames else index + 1]),
                "arrival": np.array([arrivals_us[index] if arrivals_us else last]),
            }
            batch = flow_batch(1, columns, exporter=row["exporter"], source_file=source_file)
            table = pa.Table.from_batches([batch])
            table = table.append_column("session_id", pa.array([row["session_id"]]))
            table = table.append_column("direction", pa.array([direction]))
            tables.append(table)
    return pa.concat_tables(tables) if tables else pa.table({})


def write_run(
    path: Path,
    rows: Sequence[dict[str, Any]],
    *,
    flows: pa.Table | None = None,
    settings: dict[str, Any] | None = None,
    window: tuple[float, float] | None = None,
    inputs: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a run directory; the data window defaults to the sessions' time span."""
    path.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(list(rows), schema=SESSIONS_SCHEMA)
    pq.write_table(table, path / "sessions.parquet")
    pq.write_table(flows if flows is not None else flows_for(rows), path / "flows.parquet")
    if window is None and rows:
        start = min(r["opened_at"] for r in rows)
        end = max(r["last_seen_at"] for r in rows)
    elif window is not None:
        start, end = at(window[0]), at(window[1])
    else:
        start = end = T0
    manifest = {
        "tool": {"name": "obserae-forensics", "command": "sessionize"},
        "settings": dict(settings if settings is not None else SETTINGS),
        "inputs": inputs if inputs is not None else [{"path": "capture.pcap", "format": "pcap"}],
        "data_window": {
            "start": start.isoformat().replace("+00:00", "Z"),
            "end": end.isoformat().replace("+00:00", "Z"),
        },
        "counts": {"sessions": len(rows)},
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path
