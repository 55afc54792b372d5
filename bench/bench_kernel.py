"""Sessionizer benchmark without I/O: the numba kernel alone, then Sessionizer.feed end to end.

    python bench/bench_kernel.py [--records 5000000] [--part kernel|feed|both] [--chunk N]
    python bench/bench_kernel.py --part kernel --input bench/data/big/big.nfcapd [--records N]

Records are generated in memory, a chunk at a time, and only the replay is timed: `kernel`
times KernelReplay.process on prepared int64 columns (the per-record loop, table growth
included; the warm-up loads every compiled function first) in chunks of `--chunk` records
(default 65,536, the CLI's batch size; at most 2**20), and says how much of that time
the system spent giving the process memory (first touches of fresh pages: with transparent
huge pages they cost anything from nothing to most of the run, depending on how fragmented
the machine's memory is) and the rate over the second half of the records alone: by then
the tables have grown to what the traffic needs, as for most of a run over days of flows
(on the generated traffic, the first quarter ran at ~3/4 of the rate of the others, a
third of its time clearing fresh pages), `feed` times
Sessionizer.feed + finish on FLOW_SCHEMA batches of 65,536 records (column extraction,
kernel, session rows, session ids, flow retention and emission). Each part runs in its own
child process so that its peak RSS (ru_maxrss) is its own.

Traffic: one exporter, ~10,000 records/s of exporter time; every record belongs to one of
the ~2,000 most recent conversations (client 10.x.y.z:ephemeral -> one of 1,000 servers on
443/TCP, 80/TCP or 53/UDP), either direction, so sessions open, grow, go idle and close
all the time, as on a busy edge router. With `--input FILE` the kernel part replays the
records of a capture instead (one exporter's records, read before timing starts), e.g. the
nmap SYN scan of bench/data/big/big.nfcapd, where nearly every record is a session of its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHUNK = 1 << 16
RATE_PER_S = 10_000
RECENT = 2_000


def generate(start: int, n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """FLOW_SCHEMA-like numpy columns for records start..start+n (deterministic)."""
    rng = np.random.default_rng(seed + start)
    i = np.arange(start, start + n, dtype=np.int64)
    newest = i // 5
    conversation = np.maximum(newest - rng.integers(0, RECENT, n), 0)
    first = i * (1_000_000 // RATE_PER_S) - rng.integers(0, 2_000_000, n)
    length = rng.choice(np.array([0, 1_000, 500_000, 5_000_000]), n)
    service = conversation % 3
    server_port = np.array([443, 80, 53])[service]
    protocol = np.where(service == 2, 17, 6).astype(np.uint8)
    client = (0x0A000000 + (conversation * 2654435761 % 0xFFFFFF)).astype(np.uint32)
    server = (0xC0A80000 + conversation % 1000).astype(np.uint32)
    client_port = (1024 + conversation * 7919 % 60000).astype(np.uint16)
    backwards = rng.random(n) < 0.5
    src = np.where(backwards, server, client)
    dst = np.where(backwards, client, server)
    flags = np.where(
        protocol == 6, rng.choice(np.array([0x02, 0x12, 0x10, 0x18, 0x11, 0x1B]), n), 0
    )
    packets = rng.integers(1, 40, n)
    return {
        "first_seen": first,
        "last_seen": first + length,
        "src": src,
        "dst": dst,
        "src_port": np.where(backwards, server_port, client_port).astype(np.uint16),
        "dst_port": np.where(backwards, client_port, server_port).astype(np.uint16),
        "protocol": protocol,
        "tcp_flags": flags.astype(np.uint16),
        "packets": packets.astype(np.uint64),
        "octets": (packets * rng.integers(40, 1500, n)).astype(np.uint64),
        "source_frame": i.astype(np.uint64),
    }


def _records(columns: dict[str, np.ndarray], start: int) -> object:
    from obserae_forensics.addresses import v4_to_mapped
    from obserae_forensics.sessionize.keys import Records, address_halves

    n = len(columns["first_seen"])
    src_hi, src_lo = address_halves(v4_to_mapped(columns["src"]))
    dst_hi, dst_lo = address_halves(v4_to_mapped(columns["dst"]))
    zero = np.zeros(n, dtype=np.int64)
    return Records(
        first_seen=columns["first_seen"],
        last_seen=columns["last_seen"],
        src_hi=src_hi,
        src_lo=src_lo,
        dst_hi=dst_hi,
        dst_lo=dst_lo,
        src_port=columns["src_port"].astype(np.int64),
        dst_port=columns["dst_port"].astype(np.int64),
        protocol=columns["protocol"].astype(np.int64),
        tcp_flags=columns["tcp_flags"].astype(np.int64),
        packets=columns["packets"].astype(np.int64),
        octets=columns["octets"].astype(np.int64),
        reverse_packets=zero,
        reverse_octets=zero,
        sampling_rate=zero + 1,
        counters_scaled=zero,
        exporter_domain=zero,
        src_declared=zero,
        dst_declared=zero,
        index=np.arange(start, start + n, dtype=np.int64),
        identity=np.arange(start, start + n, dtype=np.int64),
    )


def capture_records(path: str, limit: int) -> list[object]:
    """The records of one capture, as kernel input in chunks of 2**20 (read outside timing)."""
    from pathlib import Path

    from obserae_forensics.readers import discover_inputs, read_flows
    from obserae_forensics.report import RunReport
    from obserae_forensics.sessionize.keys import RECORD_FIELDS, Records, batch_records

    report = RunReport()
    inputs = discover_inputs([Path(path)], report)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in RECORD_FIELDS}
    exporters: set[str] = set()
    count = 0
    for batch in read_flows(inputs, report, batch_size=1 << 20):
        exporters.update(batch.column("exporter").unique().to_pylist())
        records = batch_records(batch, count)
        count += batch.num_rows
        for name in RECORD_FIELDS:
            parts[name].append(getattr(records, name))
        if count >= limit:
            break
    if len(exporters) > 1:
        raise SystemExit(f"{path}: {len(exporters)} exporters; the kernel bench replays one")
    columns = {name: np.concatenate(chunks)[:limit] for name, chunks in parts.items()}
    return [
        Records(**{name: column[start : start + (1 << 20)] for name, column in columns.items()})
        for start in range(0, len(columns["index"]), 1 << 20)
    ]


def run_kernel(total: int, chunk: int, source: str | None) -> dict[str, float]:
    from obserae_forensics.sessionize import SessionPolicy
    from obserae_forensics.sessionize.kernel import KernelReplay
    from obserae_forensics.sessionize.keys import known_service_ports

    # compile (or load the cache of) every kernel function, growth paths included: a tiny
    # capacity makes the warm-up grow each table, so no JIT work lands in the timed part
    replay = KernelReplay(SessionPolicy(), known_service_ports(), capacity=16)
    replay.process(_records(generate(0, 1000, seed=99), 0))
    replay.finish(1000)
    if source is not None:
        blocks = capture_records(source, total)
        total = sum(len(block) for block in blocks)
    replay = KernelReplay(SessionPolicy(), known_service_ports())
    elapsed = system = 0.0
    sessions = 0
    later = later_records = 0.0  # the chunks that start in the second half of the records
    for start in range(0, total, 1 << 20):
        if source is None:
            block = _records(generate(start, min(1 << 20, total - start)), start)
        else:
            block = blocks[start >> 20]
        for first in range(0, len(block), chunk):
            records = (
                block.take(np.arange(first, min(first + chunk, len(block))))
                if chunk < len(block)
                else block
            )
            usage = resource.getrusage(resource.RUSAGE_SELF).ru_stime
            began = time.perf_counter()
            _, _, rows = replay.process(records)
            spent = time.perf_counter() - began
            elapsed += spent
            if 2 * (start + first) >= total:
                later += spent
                later_records += len(records)
            system += resource.getrusage(resource.RUSAGE_SELF).ru_stime - usage
            sessions += rows.shape[1]
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    began = time.perf_counter()
    sessions += replay.finish(total).shape[1]
    elapsed += time.perf_counter() - began
    system += resource.getrusage(resource.RUSAGE_SELF).ru_stime - usage
    return {
        "records": total,
        "sessions": sessions,
        "seconds": elapsed,
        "system_seconds": system,
        "records_per_s": total / elapsed,
        "later_records_per_s": later_records / later if later else 0.0,
        "peak_open": replay.pressure()["peak_open"],
    }


def run_feed(total: int) -> dict[str, float]:
    from obserae_forensics.addresses import v4_to_mapped
    from obserae_forensics.readers._batch import flow_batch
    from obserae_forensics.sessionize import Sessionizer, SessionPolicy

    warm = Sessionizer(SessionPolicy())
    elapsed = 0.0
    sessions = flows = 0
    for sessionizer, count in ((warm, 1000), (Sessionizer(SessionPolicy()), total)):
        elapsed = 0.0
        sessions = flows = 0
        for start in range(0, count, CHUNK):
            columns = generate(start, min(CHUNK, count - start))
            n = len(columns["first_seen"])
            columns["src_addr"] = v4_to_mapped(columns.pop("src"))
            columns["dst_addr"] = v4_to_mapped(columns.pop("dst"))
            batch = flow_batch(n, columns, exporter="192.0.2.1", source_file="generated")
            began = time.perf_counter()
            out = sessionizer.feed(batch)
            elapsed += time.perf_counter() - began
            sessions += out.sessions.num_rows
            flows += out.flows.num_rows
        began = time.perf_counter()
        out = sessionizer.finish()
        elapsed += time.perf_counter() - began
        sessions += out.sessions.num_rows
        flows += out.flows.num_rows
    assert flows == total, (flows, total)
    return {
        "records": total,
        "sessions": sessions,
        "seconds": elapsed,
        "records_per_s": total / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--records",
        type=int,
        default=None,
        help="records to replay (default 5,000,000; with --input, all)",
    )
    parser.add_argument("--part", choices=("kernel", "feed", "both"), default="both")
    parser.add_argument(
        "--chunk",
        type=int,
        default=1 << 16,
        help="records per KernelReplay.process call (default: the CLI's "
        "batch size, 65,536; at most 2**20)",
    )
    parser.add_argument("--input", help="kernel part: replay this capture's records instead")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 < args.chunk <= 1 << 20:
        parser.error("--chunk must be between 1 and 2**20")
    if args.input is not None and args.part != "kernel":
        parser.error("--input goes with --part kernel")
    if args.records is None:
        args.records = 5_000_000 if args.input is None else 1 << 62
    if args.child:
        result = (
            run_kernel(args.records, args.chunk, args.input)
            if args.part == "kernel"
            else run_feed(args.records)
        )
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        import obserae_forensics  # which code ran: an editable install elsewhere decides

        result["package"] = str(Path(obserae_forensics.__file__).resolve().parent)
        print(json.dumps(result))
        return
    parts = ("kernel", "feed") if args.part == "both" else (args.part,)
    for part in parts:
        extra = ["--chunk", str(args.chunk)] + (["--input", args.input] if args.input else [])
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--records",
                str(args.records),
                "--part",
                part,
                "--child",
                *extra,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{part:>6}: {result['records']:,} records, {result['sessions']:,} sessions in "
            f"{result['seconds']:.2f} s = {result['records_per_s'] / 1e6:.2f} M records/s, "
            f"peak RSS {result['peak_rss_mb']:.0f} MB"
            + (
                f" ({result['system_seconds']:.2f} s of it in the system: page faults; "
                f"second half of the records, the tables grown: "
                f"{result['later_records_per_s'] / 1e6:.2f} M records/s)"
                if "system_seconds" in result
                else ""
            )
            + f"; measured: {result['package']}"
        )


if __name__ == "__main__":
    main()
