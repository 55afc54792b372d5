"""Benchmark: Flow Matrix matching and consolidation over synthetic sessions.

    python bench/bench_matching.py [--sessions 1000000] [--rules 1000] [--seed 1]

Builds a Cartography (hosts, networks, nested groups, IPv4 and IPv6) and a Flow Matrix of
`--rules` rules as YAML files, loads them with the real loaders, and matches a sessions
table of `--sessions` rows (SESSIONS_SCHEMA) drawn from 200,000 distinct addresses. Prints
the time of each step, sessions/s, match counts and peak memory (ru_maxrss). The issue's
target: 1 million sessions x 1,000 rules in under a minute.
"""

from __future__ import annotations

import argparse
import ipaddress
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from obserae_forensics.matching import (
    consolidate_sessions,
    load_cartography,
    load_flow_matrix,
    match_sessions,
    matched_rules_column,
)
from obserae_forensics.schema import SESSIONS_SCHEMA

ADDRESS_POOL = 200_000
SERVICE_PORTS = np.array(
    [
        22,
        25,
        53,
        80,
        123,
        389,
        443,
        445,
        636,
        993,
        1433,
        3306,
        3389,
        5432,
        5353,
        6379,
        8080,
        8443,
        9200,
        27017,
    ],
    dtype=np.uint16,
)


def address_pool(rng: np.random.Generator) -> list[str]:
    """Distinct addresses: 70% in 10.0.0.0/12, 20% public IPv4, 10% IPv6 in 2001:db8::/48."""
    private = rng.choice(1 << 20, size=int(ADDRESS_POOL * 0.7), replace=False) + (10 << 24)
    public = rng.choice(1 << 24, size=int(ADDRESS_POOL * 0.2), replace=False) + (52 << 24)
    v6 = rng.choice(1 << 32, size=ADDRESS_POOL - len(private) - len(public), replace=False)
    base6 = int(ipaddress.IPv6Address("2001:db8::"))
    return (
        [str(ipaddress.IPv4Address(int(a))) for a in private]
        + [str(ipaddress.IPv4Address(int(a))) for a in public]
        + [str(ipaddress.IPv6Address(base6 + int(a))) for a in v6]
    )


def write_cartography(path: Path, rng: np.random.Generator, pool: list[str]) -> list[bool]:
    """-> for each host, whether its address is IPv6 (rules must not pair families)."""
    lines = ["hosts:"]
    host_v6 = []
    for i in range(300):
        port = int(rng.integers(1, 65536))
        address = pool[int(rng.integers(len(pool)))]
        host_v6.append(":" in address)
        lines.append(f"  host{i}:\n    addresses: [{address!r}]")
        lines.append(f"    services: [tcp/{port}]")
    lines.append("networks:")
    for i in range(300):
        prefix = int(rng.integers(16, 29))
        base = (10 << 24) + (int(rng.integers(1 << 20)) >> (32 - prefix) << (32 - prefix))
        lines.append(f"  net{i}: [{ipaddress.IPv4Address(base)}/{prefix}]")
    for i in range(20):
        lines.append(f"  net6_{i}: ['2001:db8:0:{i:x}::/64', '2001:db8::{i:x}:0:0/96']")
    lines.append("groups:")
    for i in range(100):
        members = [f"net{int(j)}" for j in rng.integers(0, 300, 3)]
        members += [f"host{int(j)}" for j in rng.integers(0, 300, 2)]
        if i:
            members.append(f"group{int(rng.integers(0, i))}")  # nesting
        lines.append(f"  group{i}: [{', '.join(members)}]")
    path.write_text("\n".join(lines) + "\n")
    return host_v6


def write_flow_matrix(
    path: Path, rng: np.random.Generator, rules: int, host_v6: list[bool]
) -> None:
    """Rules of one address family each: a rule whose source can only be IPv6 and whose
    destination only IPv4 is refused by the Flow Matrix reader (it can never match)."""
    hosts = [f"host{i}" for i, v6 in enumerate(host_v6) if not v6]
    names4 = (
        [f"net{i}" for i in range(300)]
        + [f"group{i}" for i in range(100)]
        + hosts
        + ["internal4", "internet4", "any"]
    )
    names6 = (
        [f"net6_{i}" for i in range(20)]
        + [f"host{i}" for i, v6 in enumerate(host_v6) if v6]
        + ["any"]
    )
    lines = ["rules:"]
    for i in range(rules):
        names = names6 if rng.random() < 0.03 else names4
        # a third of the rules allow any internal client, as real matrices often do
        source = (
            "internal4"
            if names is names4 and rng.random() < 0.33
            else names[int(rng.integers(len(names)))]
        )
        destination = [names[int(rng.integers(len(names)))] for _ in range(2)]
        protocol = ["tcp", "udp", "[tcp, udp]"][int(rng.integers(3))]
        low = int(rng.integers(1, 60000))
        service = int(SERVICE_PORTS[int(rng.integers(len(SERVICE_PORTS)))])
        ports = f"[{service}, {low}-{low + int(rng.integers(0, 2000))}]"
        lines += [
            f"  - name: rule-{i}",
            f"    source: {source}",
            f"    destination: [{', '.join(destination)}]",
            f"    protocol: {protocol}",
            f"    ports: {ports}",
        ]
    path.write_text("\n".join(lines) + "\n")


def sessions_table(rng: np.random.Generator, pool: list[str], n: int) -> pa.Table:
    texts = pa.array(pool, pa.string())
    client = rng.integers(0, len(pool), n)
    server = rng.integers(0, len(pool), n)
    exporter = rng.integers(0, 3, n)
    opened = 1_700_000_000_000_000 + np.sort(rng.integers(0, 3_600_000_000, n))
    ids = pa.array([f"{i:016x}" for i in range(n)], pa.string())
    protocol = np.where(rng.random(n) < 0.8, 6, 17).astype(np.uint8)
    states = pa.array(["closed", "active", "half_open"]).take(
        pa.array(rng.choice(3, n, p=[0.8, 0.15, 0.05]))
    )
    server_port = np.where(
        rng.random(n) < 0.8,
        SERVICE_PORTS[rng.integers(0, len(SERVICE_PORTS), n)],
        rng.integers(1024, 65536, n),
    ).astype(np.uint16)
    client_port = rng.integers(1024, 65536, n).astype(np.uint16)
    counters = {k: rng.integers(0, 1 << 20, n).astype(np.uint64) for k in ("ab", "ba")}
    columns = {
        "session_id": ids,
        "conversation_id": ids,
        "split": pa.array(np.zeros(n, np.uint32)),
        "exporter": pa.array(["192.0.2.1", "192.0.2.2", "192.0.2.3"]).take(pa.array(exporter)),
        "exporter_domain": pa.array(np.zeros(n, np.uint32)),
        "protocol": pa.array(np.where(protocol == 6, "TCP", "UDP")),
        "protocol_number": pa.array(protocol),
        "ip_a": texts.take(pa.array(client)),
        "port_a": pa.array(client_port),
        "ip_b": texts.take(pa.array(server)),
        "port_b": pa.array(server_port),
        "client_ip": texts.take(pa.array(client)),
        "client_port": pa.array(client_port),
        "server_ip": texts.take(pa.array(server)),
        "server_port": pa.array(server_port),
        "role_method": pa.array(["tcp_syn"] * n),
        "role_confidence": pa.array(np.full(n, 0.95)),
        "ab_bytes": pa.array(counters["ab"]),
        "ba_bytes": pa.array(counters["ba"]),
        "ab_packets": pa.array(counters["ab"] >> np.uint64(10)),
        "ba_packets": pa.array(counters["ba"] >> np.uint64(10)),
        "ab_flags": pa.array(np.zeros(n, np.uint16)),
        "ba_flags": pa.array(np.zeros(n, np.uint16)),
        "icmp_type": pa.nulls(n, pa.uint8()),
        "icmp_code": pa.nulls(n, pa.uint8()),
        "opened_at": pa.array(opened).cast(pa.timestamp("us", tz="UTC")),
        "last_seen_at": pa.array(opened + rng.integers(0, 60_000_000, n)).cast(
            pa.timestamp("us", tz="UTC")
        ),
        "closed_at": pa.nulls(n, pa.timestamp("us", tz="UTC")),
        "state": states,
        "close_reason": pa.nulls(n, pa.string()),
        "flow_count": pa.array(np.ones(n, np.uint64)),
        "late_records": pa.array(np.zeros(n, np.uint64)),
        "late": pa.array(np.zeros(n, bool)),
        "follows_session_id": pa.nulls(n, pa.string()),
        "sampling_rate": pa.array(np.ones(n, np.uint32)),
        "counters_scaled": pa.array(np.zeros(n, bool)),
        "matched_rules": pa.array([[]] * n, pa.list_(pa.string())),
    }
    return pa.Table.from_pydict(columns, schema=SESSIONS_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--rules", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-consolidate", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    pool = address_pool(rng)
    with tempfile.TemporaryDirectory() as tmp:
        cartography_path, matrix_path = Path(tmp, "cartography.yaml"), Path(tmp, "matrix.yaml")
        host_v6 = write_cartography(cartography_path, rng, pool)
        write_flow_matrix(matrix_path, rng, args.rules, host_v6)
        started = time.perf_counter()
        cartography = load_cartography(cartography_path)
        matrix = load_flow_matrix(matrix_path, cartography)
        load_s = time.perf_counter() - started
    sessions = sessions_table(rng, pool, args.sessions)
    print(
        f"sessions: {sessions.num_rows:,}  rules: {len(matrix.rules):,}  "
        f"distinct addresses: {len(pool):,}"
    )
    print(f"load Cartography + Flow Matrix: {load_s:.2f} s")

    started = time.perf_counter()
    matches = match_sessions(sessions, matrix)
    match_s = time.perf_counter() - started
    rate = sessions.num_rows / match_s
    print(
        f"match_sessions: {match_s:.2f} s  ({rate:,.0f} sessions/s, "
        f"{rate * len(matrix.rules):,.0f} session-rule pairs/s), {matches.num_rows:,} matches"
    )

    started = time.perf_counter()
    column = matched_rules_column(sessions, matches)
    column_s = time.perf_counter() - started
    matched = int((np.diff(column.offsets.to_numpy()) > 0).sum())
    print(f"matched_rules_column: {column_s:.2f} s, {matched:,} sessions with a match")

    if not args.skip_consolidate:
        started = time.perf_counter()
        consolidated = consolidate_sessions(sessions, 30_000_000)
        consolidate_s = time.perf_counter() - started
        print(
            f"consolidate_sessions: {consolidate_s:.2f} s "
            f"({sessions.num_rows / consolidate_s:,.0f} sessions/s), "
            f"{consolidated.num_rows:,} rows"
        )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak_mib:,.0f} MiB")
    print(
        f"total match + column: {match_s + column_s:.2f} s "
        f"({'under' if match_s + column_s < 60 else 'OVER'} the 60 s target)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
