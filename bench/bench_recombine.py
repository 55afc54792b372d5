"""Benchmark: recombine 1 million sessions from two runs (target: under 30 s end to end).

Generates two sessionize-like run directories with numpy (not timed): conversations of 1 to 6
fragments cut by hard_timeout, a share of late sessions, and chains that cross the run boundary
(still `active` at the end of run 0), then times recombine_runs (what `recombine --out` runs:
read, chain a bucket of keys at a time, write Parquet, report.md/json and timeline.png) and
recombine_tables (the same tables in memory, no files).
Prints sessions/s per phase and the peak RSS.

    python bench/bench_recombine.py [--sessions 1000000] [--dir bench/data/recombine]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from obserae_forensics.recombine import recombine_runs, recombine_tables
from obserae_forensics.schema import SESSIONS_SCHEMA

T0_US = 1_709_294_400_000_000  # 2024-03-01T12:00:00Z
HARD_US = 900_000_000
DAY_US = 86_400_000_000
SETTINGS = {
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


def generate(n: int, seed: int = 7) -> dict[str, np.ndarray]:
    """Columns of n fragments; conversation c has 1..6 fragments 900 s long, 0.5 s apart."""
    rng = np.random.default_rng(seed)
    per = np.where(rng.random(n) < 0.7, 1, rng.integers(2, 7, n))
    ends = np.cumsum(per)
    conversations = int(np.searchsorted(ends, n)) + 1
    per = per[:conversations]
    per[-1] -= int(ends[conversations - 1] - n)
    conversation = np.repeat(np.arange(conversations), per)
    first = np.repeat(np.cumsum(per) - per, per)
    split = np.arange(n) - first
    last_split = np.repeat(per - 1, per)
    start = np.repeat(rng.integers(0, DAY_US, conversations), per)
    opened = T0_US + start + split * (HARD_US + 500_000)
    length = np.where(split < last_split, HARD_US - 1, rng.integers(0, HARD_US, n))
    last = opened + length
    late = (split == last_split) & (last_split > 0) & (rng.random(n) < 0.05)
    return {
        "conversation": conversation,
        "split": split,
        "last_split": last_split,
        "opened": opened,
        "last": last,
        "late": late,
    }


def texts(values: np.ndarray, fmt: str) -> pa.Array:
    unique, inverse = np.unique(values, return_inverse=True)
    return pa.DictionaryArray.from_arrays(
        pa.array(inverse.astype(np.int32)), pa.array([fmt.format(int(v)) for v in unique])
    ).cast(pa.string())


def write_runs(directory: Path, n: int) -> list[Path]:
    g = generate(n)
    conversation, split, opened, last = g["conversation"], g["split"], g["opened"], g["last"]
    boundary = T0_US + DAY_US // 2
    run = (opened >= boundary).astype(np.int64)
    # the fragment of a chain that is open across the boundary stays active in run 0
    crosses = (run == 0) & (split < g["last_split"]) & (opened + HARD_US >= boundary)
    last = np.where(crosses, np.minimum(last, boundary - 1), last)
    # in run 1 a crossing chain starts again at split 0 with its own conversation id
    restart = np.zeros(len(split), dtype=bool)
    restart[1:] = (run[1:] == 1) & (run[:-1] == 0) & (conversation[1:] == conversation[:-1])
    # ... right at the start of run 1, as a sessionizer over the second capture sees it
    opened = np.where(restart, boundary + 200_000, opened)
    last = np.maximum(last, opened)
    head = np.maximum.accumulate(np.where((split == 0) | restart, np.arange(len(split)), 0))
    new_split = np.arange(len(split)) - head
    session_id = texts(np.arange(len(split)), "s{:09d}")
    conversation_id = pa.array(np.array(session_id.to_pylist(), dtype=object)[head])
    client = conversation % 200_000
    late = g["late"]
    rng = np.random.default_rng(11)
    n_rows = len(split)
    is_open = crosses.copy()
    closed = ~is_open
    close_reason = np.where(split < g["last_split"], "hard_timeout", "fin").astype(object)
    close_reason[is_open] = None
    follows = np.array([None] * n_rows, dtype=object)
    follows[late] = np.array(session_id.to_pylist(), dtype=object)[np.flatnonzero(late) - 1]
    ab_bytes = rng.integers(40, 10**7, n_rows).astype(np.uint64)
    ba_bytes = rng.integers(40, 10**7, n_rows).astype(np.uint64)
    table = pa.table(
        {
            "session_id": session_id,
            "conversation_id": conversation_id,
            "split": pa.array(np.where(late, 0, new_split).astype(np.uint32)),
            "exporter": texts(conversation % 4, "192.0.2.{}"),
            "exporter_domain": pa.array(np.zeros(n_rows, np.uint32)),
            "protocol": pa.array(["TCP"] * n_rows),
            "protocol_number": pa.array(np.full(n_rows, 6, np.uint8)),
            "ip_a": texts(client, "10.{}.0.1"),
            "port_a": pa.array((1024 + conversation % 60_000).astype(np.uint16)),
            "ip_b": texts(conversation % 1000, "172.16.{}.1"),
            "port_b": pa.array(np.full(n_rows, 443, np.uint16)),
            "client_ip": texts(client, "10.{}.0.1"),
            "client_port": pa.array((1024 + conversation % 60_000).astype(np.uint16)),
            "server_ip": texts(conversation % 1000, "172.16.{}.1"),
            "server_port": pa.array(np.full(n_rows, 443, np.uint16)),
            "role_method": pa.array(["tcp_syn"] * n_rows),
            "role_confidence": pa.array(np.full(n_rows, 0.95)),
            "ab_bytes": pa.array(ab_bytes),
            "ba_bytes": pa.array(ba_bytes),
            "ab_packets": pa.array(ab_bytes // 500 + 1),
            "ba_packets": pa.array(ba_bytes // 500 + 1),
            "ab_flags": pa.array(np.where(split == 0, 0x1B, 0x18).astype(np.uint16)),
            "ba_flags": pa.array(np.full(n_rows, 0x1A, np.uint16)),
            "icmp_type": pa.nulls(n_rows, pa.uint8()),
            "icmp_code": pa.nulls(n_rows, pa.uint8()),
            "opened_at": pa.array(opened).cast(pa.timestamp("us", tz="UTC")),
            "last_seen_at": pa.array(last).cast(pa.timestamp("us", tz="UTC")),
            "closed_at": pa.array(last, mask=~closed).cast(pa.timestamp("us", tz="UTC")),
            "state": pa.array(np.where(is_open, "active", "closed").astype(object)),
            "close_reason": pa.array(close_reason, pa.string()),
            "flow_count": pa.array(np.full(n_rows, 4, np.uint64)),
            "late_records": pa.array(np.zeros(n_rows, np.uint64)),
            "late": pa.array(late),
            "follows_session_id": pa.array(follows, pa.string()),
            "sampling_rate": pa.array(np.ones(n_rows, np.uint32)),
            "counters_scaled": pa.array(np.zeros(n_rows, bool)),
            "matched_rules": pa.array([[]] * n_rows, pa.list_(pa.string())),
        }
    ).cast(SESSIONS_SCHEMA)
    paths = []
    for index in (0, 1):
        path = directory / f"run{index}"
        path.mkdir(parents=True, exist_ok=True)
        part = table.filter(pa.array(run == index))
        pq.write_table(part, path / "sessions.parquet")
        pq.write_table(pa.table({"session_id": pa.array([], pa.string())}), path / "flows.parquet")
        opened_part = part.column("opened_at").cast(pa.int64()).to_numpy()
        last_part = part.column("last_seen_at").cast(pa.int64()).to_numpy()
        window = {"start": _iso(int(opened_part.min())), "end": _iso(int(last_part.max()))}
        manifest = {
            "tool": {"name": "bench"},
            "settings": SETTINGS,
            "inputs": [],
            "data_window": window,
            "counts": {"sessions": part.num_rows},
        }
        (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        paths.append(path)
    return paths


def _iso(us: int) -> str:
    from datetime import UTC, datetime, timedelta

    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    return moment.isoformat().replace("+00:00", "Z")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=Path("bench/data/recombine"))
    options = parser.parse_args()
    shutil.rmtree(options.dir, ignore_errors=True)
    began = time.perf_counter()
    runs = write_runs(options.dir, options.sessions)
    print(
        f"generated {options.sessions} sessions in two runs: "
        f"{time.perf_counter() - began:.1f} s (not timed below)"
    )

    # recombine_runs first: ru_maxrss only grows, and it is what `recombine --out` runs
    began = time.perf_counter()
    result = recombine_runs(runs, options.dir / "out", force=True)
    written = time.perf_counter() - began
    print(
        f"recombine_runs (a bucket of keys at a time; tables + report + png): {written:.2f} s, "
        f"{options.sessions / written:,.0f} sessions/s"
    )
    print("  " + result.summary())
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")

    began = time.perf_counter()
    result = recombine_tables(runs)
    in_memory = time.perf_counter() - began
    print(
        f"recombine_tables (in memory, no files): {in_memory:.2f} s, "
        f"{options.sessions / in_memory:,.0f} sessions/s"
    )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
