"""Hand-made flow records for sessionizer tests: one dict per record, times in seconds."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from obserae_forensics.addresses import parse_address
from obserae_forensics.readers._batch import flow_batch
from obserae_forensics.sessionize import Sessionizer, SessionPolicy
from obserae_forensics.sessionize.keys import address_halves

SECOND = 1_000_000
EXPORTER = "192.0.2.1"
SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
COUNTERS = ("packets", "octets", "reverse_packets", "reverse_octets")


def rec(
    first: float,
    last: float | None = None,
    *,
    src: str = "10.0.0.1",
    sport: int = 40000,
    dst: str = "10.0.0.2",
    dport: int = 443,
    proto: int = 6,
    flags: int = ACK,
    packets: int = 1,
    octets: int = 100,
    rpackets: int = 0,
    roctets: int = 0,
    exporter: str = EXPORTER,
    sampling: int = 1,
    scaled: bool = False,
    domain: int = 0,
    rflags: int = 0,
) -> dict[str, Any]:
    """One flow record; `last` defaults to `first`."""
    return {
        "first_seen": round(first * SECOND),
        "last_seen": round((first if last is None else last) * SECOND),
        "src_addr": parse_address(src),
        "dst_addr": parse_address(dst),
        "src_port": sport,
        "dst_port": dport,
        "protocol": proto,
        "tcp_flags": flags,
        "packets": packets,
        "octets": octets,
        "reverse_packets": rpackets,
        "reverse_octets": roctets,
        "reverse_tcp_flags": rflags,
        "exporter": exporter,
        "sampling_rate": sampling,
        "counters_scaled": scaled,
        "exporter_domain": domain,
    }


def batch(records: Sequence[dict[str, Any]], first_frame: int = 0) -> pa.RecordBatch:
    """A FLOW_SCHEMA batch; source_frame numbers the records from `first_frame`."""
    n = len(records)
    columns: dict[str, np.ndarray] = {}
    for name in (
        "first_seen",
        "last_seen",
        "src_port",
        "dst_port",
        "protocol",
        "tcp_flags",
        "packets",
        "octets",
        "reverse_packets",
        "reverse_octets",
        "reverse_tcp_flags",
        "sampling_rate",
        "counters_scaled",
        "exporter_domain",
    ):
        # counters as uint64: a list mixing values past 2**63 with small ones became float64
        # (2**63 + 4 read as 2**63: a review)
        kind = np.uint64 if name in COUNTERS else None
        columns[name] = np.array([r[name] for r in records], dtype=kind)
    for name in ("src_addr", "dst_addr"):
        columns[name] = np.frombuffer(b"".join(r[name] for r in records), dtype=np.uint8).reshape(
            n, 16
        )
    columns["source_frame"] = np.arange(first_frame, first_frame + n)
    # a tag that stays with the record when a test reorders the input (where the record's
    # bytes are: part of its identity, keys.record_identities), else its frame
    columns["source_offset"] = np.array(
        [r.get("tag", first_frame + i) for i, r in enumerate(records)], dtype=np.uint64
    )
    texts = sorted({r["exporter"] for r in records}) or [EXPORTER]
    codes = np.array([texts.index(r["exporter"]) for r in records], dtype=np.int32)
    return flow_batch(n, columns, exporter=(codes, texts), source_file="scenario")


def run(
    records: Sequence[dict[str, Any]],
    policy: SessionPolicy | None = None,
    *,
    engine: str = "numba",
    batch_size: int | None = None,
    services: Any = None,
) -> tuple[pa.Table, pa.Table, Sessionizer]:
    """(sessions, flows, sessionizer) after feeding `records` in batches and finishing."""
    sessionizer = Sessionizer(policy or SessionPolicy(), services=services, engine=engine)
    size = batch_size or max(len(records), 1)
    sessions = []
    flows = []
    for start in range(0, len(records), size):
        out = sessionizer.feed(batch(records[start : start + size], first_frame=start))
        sessions.append(out.sessions)
        flows.append(out.flows)
    out = sessionizer.finish()
    sessions.append(out.sessions)
    flows.append(out.flows)
    return pa.concat_tables(sessions), pa.concat_tables(flows), sessionizer


def rows(sessions: pa.Table) -> list[dict[str, Any]]:
    return sessions.to_pylist()


def at(seconds: float) -> datetime:
    """A session time as the tables give it."""
    return datetime.fromtimestamp(seconds, UTC)


def tick(t: float) -> dict[str, Any]:
    """An unrelated one-way UDP record that only moves the watermark to t - grace."""
    return rec(t, src="192.168.99.1", dst="192.168.99.2", sport=7, dport=7, proto=17)


def by_key(sessions: pa.Table, proto: str | None = "TCP") -> list[dict[str, Any]]:
    """The sessions of `proto` (None: any) but the ticks'."""
    return [
        s
        for s in sessions.to_pylist()
        if (proto is None or s["protocol"] == proto) and s["ip_a"] != "192.168.99.1"
    ]


_M = (1 << 64) - 1


def _fold(h: int, value: int) -> int:
    """splitmix64, written out independently of output.py."""
    z = (h + (value & _M) + 0x9E3779B97F4A7C15) & _M
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M
    return z ^ (z >> 31)


def documented_id(
    lo: tuple[str, int],
    hi: tuple[str, int],
    opened: float,
    *,
    proto: int = 17,
    split: int = 0,
    late: int = 0,
    dup: int = 0,
    exporter: str = EXPORTER,
) -> str:
    """session_id as output.py's docstring and the README spell it out: BLAKE2b-64 of the
    exporter text as seed, then the protocol, the canonical endpoints (lo: the smaller),
    opened_at (here in seconds), split, late and dup folded in by splitmix64."""
    seed = int.from_bytes(hashlib.blake2b(exporter.encode(), digest_size=8).digest(), "little")
    matrix = np.frombuffer(parse_address(lo[0]) + parse_address(hi[0]), np.uint8).reshape(2, 16)
    high, low = address_halves(matrix)
    h = seed
    key = (proto, int(high[0]), int(low[0]), lo[1], int(high[1]), int(low[1]), hi[1])
    for value in (*key, round(opened * SECOND), split, late, dup):
        h = _fold(h, value)
    return f"{h:016x}"
