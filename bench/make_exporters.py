"""Write a PCAP of NetFlow v5 datagrams from many exporters, for timing `sessionize` on them.

    python bench/make_exporters.py bench/data/exporters_3000.pcap --exporters 3000
    python bench/bench_sessionize.py bench/data/exporters_3000.pcap

A collector of a large network hears thousands of exporters, and a capture of spoofed
export datagrams names a new one in every frame. Each exporter costs the sessionizer its
own tables, so this input measures what an exporter costs apart from its records: every
exporter (its own source address, 172.16.0.0 on) sends DATAGRAMS datagrams of ten records,
one round of all exporters after another, a round every ten seconds; the records of one
datagram are ten conversations of one client, which each round continues. Before the
tables of a new exporter started small, 3,000 exporters of 30 records took 44.5 s and
17.2 GB. Not committed: bench/data/ is gitignored.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

RECORDS_PER_DATAGRAM = 10
START_S = 1_700_000_000
ROUND_S = 10
COLLECTOR = bytes([10, 0, 0, 1])
HEADER = np.dtype(
    [
        ("version", ">u2"),
        ("count", ">u2"),
        ("uptime", ">u4"),
        ("secs", ">u4"),
        ("nsecs", ">u4"),
        ("sequence", ">u4"),
        ("engine_type", "u1"),
        ("engine_id", "u1"),
        ("sampling", ">u2"),
    ]
)
RECORD = np.dtype(
    [
        ("src", ">u4"),
        ("dst", ">u4"),
        ("nexthop", ">u4"),
        ("input", ">u2"),
        ("output", ">u2"),
        ("packets", ">u4"),
        ("octets", ">u4"),
        ("first", ">u4"),
        ("last", ">u4"),
        ("sport", ">u2"),
        ("dport", ">u2"),
        ("pad1", "u1"),
        ("flags", "u1"),
        ("proto", "u1"),
        ("tos", "u1"),
        ("src_as", ">u2"),
        ("dst_as", ">u2"),
        ("src_mask", "u1"),
        ("dst_mask", "u1"),
        ("pad2", ">u2"),
    ]
)
assert HEADER.itemsize == 24 and RECORD.itemsize == 48


def datagrams(exporters: int, rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """(v5 payloads [datagram, byte], exporter number of each), round after round."""
    count = exporters * rounds
    exporter = np.tile(np.arange(exporters, dtype=np.int64), rounds)
    round_ = np.repeat(np.arange(rounds, dtype=np.int64), exporters)
    head = np.zeros(count, dtype=HEADER)
    head["version"] = 5
    head["count"] = RECORDS_PER_DATAGRAM
    uptime_ms = 3_600_000 + round_ * ROUND_S * 1000
    head["uptime"] = uptime_ms
    head["secs"] = START_S + round_ * ROUND_S
    head["sequence"] = round_ * RECORDS_PER_DATAGRAM  # flows this exporter sent before
    body = np.zeros((count, RECORDS_PER_DATAGRAM), dtype=RECORD)
    body["src"] = (0x0A010000 + exporter % 0x10000)[:, None]
    body["dst"] = 0xC0000200 + np.arange(RECORDS_PER_DATAGRAM, dtype=np.uint32)
    body["packets"] = 3
    body["octets"] = 1500
    body["first"] = (uptime_ms - 9000)[:, None]
    body["last"] = (uptime_ms - 1000)[:, None]
    body["sport"] = 40000 + np.arange(RECORDS_PER_DATAGRAM, dtype=np.uint16)
    body["dport"] = 443
    body["flags"] = 0x1B
    body["proto"] = 6
    payload = np.concatenate(
        [head.view(np.uint8).reshape(count, -1), body.view(np.uint8).reshape(count, -1)], axis=1
    )
    return payload, exporter


def frames(payload: np.ndarray, exporter: np.ndarray) -> np.ndarray:
    """Ethernet + IPv4 + UDP around each payload, from 172.16.0.0 + exporter, checksums
    of the IPv4 headers filled in. -> [frame, byte]."""
    count, size = payload.shape
    ip = np.zeros((count, 20), dtype=np.uint8)
    ip[:, :12] = np.frombuffer(
        struct.pack(">BBHHHBBH", 0x45, 0, 28 + size, 0, 0x4000, 64, 17, 0), dtype=np.uint8
    )
    source = (0xAC100000 + exporter).astype(">u4")
    ip[:, 12:16] = source.view(np.uint8).reshape(count, 4)
    ip[:, 16:20] = np.frombuffer(COLLECTOR, dtype=np.uint8)
    words = ip.view(">u2").astype(np.uint32).sum(axis=1)
    words = (words & 0xFFFF) + (words >> 16)
    checksum = (~((words & 0xFFFF) + (words >> 16)) & 0xFFFF).astype(">u2")
    ip[:, 10:12] = checksum.view(np.uint8).reshape(count, 2)
    udp = np.frombuffer(struct.pack(">HHHH", 2055, 2055, 8 + size, 0), dtype=np.uint8)
    ethernet = np.frombuffer(bytes.fromhex("0000000000020000000000010800"), dtype=np.uint8)
    return np.concatenate(
        [np.broadcast_to(ethernet, (count, 14)), ip, np.broadcast_to(udp, (count, 8)), payload],
        axis=1,
    )


def write_capture(path: Path, exporters: int, rounds: int) -> int:
    """The capture; -> flow records in it."""
    payload, exporter = datagrams(exporters, rounds)
    body = frames(payload, exporter)
    count, size = body.shape
    record_header = np.zeros(
        count, dtype=[("s", "<u4"), ("us", "<u4"), ("cap", "<u4"), ("len", "<u4")]
    )
    round_ = np.arange(count) // exporters
    record_header["s"] = START_S + round_ * ROUND_S
    record_header["us"] = np.arange(count) % exporters  # a µs apart within a round
    record_header["cap"] = record_header["len"] = size
    rows = np.concatenate([record_header.view(np.uint8).reshape(count, 16), body], axis=1)
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        out.write(rows.tobytes())
    return count * RECORDS_PER_DATAGRAM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--exporters", type=int, default=3000)
    parser.add_argument("--datagrams", type=int, default=3, help="per exporter")
    args = parser.parse_args()
    if not 1 <= args.exporters <= 1_000_000 or args.datagrams < 1:  # a µs apart in a round
        parser.error("--exporters: 1 to 1,000,000; --datagrams: at least 1")
    records = write_capture(args.out, args.exporters, args.datagrams)
    print(f"{args.out}: {records:,} v5 records from {args.exporters:,} exporters")


if __name__ == "__main__":
    main()
