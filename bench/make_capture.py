"""Write a large PCAP of NetFlow v9 or IPFIX export datagrams for the benchmarks.

    python bench/make_capture.py bench/data/v9.pcap --version 9 --records 5000000
    python bench/make_capture.py bench/data/ipfix.pcap --version 10
    python bench/make_capture.py bench/data/big/big_export_v9.pcap --from bench/data/big/big.nfcapd

Every frame is Ethernet / IPv4 / UDP / one export datagram of RECORDS_PER_DATAGRAM records
of one template (softflowd-like, 40 bytes a record), so all data frames have
the same size and the whole file is filled column by column with numpy: a few seconds for
5 million records. The template is sent in the first datagram and every TEMPLATE_EVERY
datagrams, sequence numbers follow each version's rule, and record contents are random
(addresses, ports, counters) with uptime-relative times, so the decoder does its real work:
every record is a conversation of its own, the open-session cap's worst case. With --from,
the records are those of an nfcapd file instead (IPv4 only), so that `sessionize` can be
timed on the same traffic as a PCAP export and as nfcapd (bench_sessionize.py).
Not committed: bench/data/ is gitignored.
"""

from __future__ import annotations

import argparse
import struct
import time
from pathlib import Path

import numpy as np

RECORDS_PER_DATAGRAM = 30
TEMPLATE_EVERY = 1000
TEMPLATE_ID = 1024
START_S = 1_700_000_000
EXPORTER = bytes([192, 0, 2, 10])
COLLECTOR = bytes([192, 0, 2, 1])
# (element, length): src, dst, first, last, octets, packets, in, out, sport, dport, proto,
# flags, tos, flowEndReason
FIELDS = [
    (8, 4),
    (12, 4),
    (22, 4),
    (21, 4),
    (1, 4),
    (2, 4),
    (10, 4),
    (14, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (5, 1),
    (136, 1),
]
RECORD = np.dtype(
    [
        ("src", ">u4"),
        ("dst", ">u4"),
        ("first", ">u4"),
        ("last", ">u4"),
        ("octets", ">u4"),
        ("packets", ">u4"),
        ("input", ">u4"),
        ("output", ">u4"),
        ("sport", ">u2"),
        ("dport", ">u2"),
        ("proto", "u1"),
        ("flags", "u1"),
        ("tos", "u1"),
        ("reason", "u1"),
    ]
)
assert RECORD.itemsize == sum(length for _, length in FIELDS) == 40


def export_header(
    version: int, length: int, sequence: int, export_s: int, uptime_ms: int, count: int
) -> bytes:
    if version == 9:
        return struct.pack(">HHIIII", 9, count, uptime_ms, export_s, sequence, 0)
    return struct.pack(">HHIII", 10, length, export_s, sequence, 0)


def template_set(version: int) -> bytes:
    body = struct.pack(">HH", TEMPLATE_ID, len(FIELDS)) + b"".join(
        struct.pack(">HH", element, length) for element, length in FIELDS
    )
    return struct.pack(">HH", 0 if version == 9 else 2, 4 + len(body)) + body


def frame(udp_payload: bytes, identification: int) -> bytes:
    """Ethernet + IPv4 + UDP around one payload (IPv4 header checksum filled in)."""
    udp = struct.pack(">HHHH", 40000, 2055, 8 + len(udp_payload), 0) + udp_payload
    header = bytearray(
        struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            identification,
            0x4000,
            64,
            17,
            0,
            EXPORTER,
            COLLECTOR,
        )
    )
    words = np.frombuffer(bytes(header), dtype=">u2").astype(np.uint32).sum()
    words = (words & 0xFFFF) + (words >> 16)
    header[10:12] = struct.pack(">H", ~((words & 0xFFFF) + (words >> 16)) & 0xFFFF)
    ethernet = bytes.fromhex("0000000000020000000000010800")
    return ethernet + bytes(header) + udp


def random_records(datagrams: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
    """(records, datagram times in µs, boot time in µs): random softflowd-like records, a
    datagram every millisecond; every record its own conversation (the cap's worst case)."""
    rng = np.random.default_rng(seed)
    per = RECORDS_PER_DATAGRAM
    ts_us = START_S * 1_000_000 + np.arange(datagrams, dtype=np.int64) * 1000
    boot_us = START_S * 1_000_000 - 3_600_000_000
    uptime_ms = (ts_us - boot_us) // 1000
    n = datagrams * per
    flat = np.zeros(n, dtype=RECORD)
    flat["src"] = rng.integers(0x0A000000, 0x0AFFFFFF, n, dtype=np.uint32)
    flat["dst"] = rng.integers(0xC0A80000, 0xC0A8FFFF, n, dtype=np.uint32)
    age = rng.integers(0, 60_000, n, dtype=np.int64)
    up = np.repeat(uptime_ms, per)
    flat["last"] = up - age
    flat["first"] = up - age - rng.integers(0, 30_000, n, dtype=np.int64)
    flat["packets"] = rng.integers(1, 1000, n, dtype=np.uint32)
    flat["octets"] = flat["packets"] * rng.integers(40, 1500, n, dtype=np.uint32)
    flat["input"] = rng.integers(1, 48, n, dtype=np.uint32)
    flat["output"] = rng.integers(1, 48, n, dtype=np.uint32)
    flat["sport"] = rng.integers(1024, 65535, n, dtype=np.uint32)
    flat["dport"] = rng.choice(np.array([53, 80, 443, 22, 123], dtype=np.uint16), n)
    flat["proto"] = rng.choice(np.array([6, 17], dtype=np.uint8), n)
    flat["flags"] = np.where(flat["proto"] == 6, 0x1B, 0)
    flat["reason"] = 1
    return flat, ts_us, boot_us


def nfcapd_records(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(records, datagram times in µs, boot time in µs) re-exporting an nfcapd file's IPv4
    records in file order, RECORDS_PER_DATAGRAM a datagram (a last partial datagram is left
    out). Each datagram is sent on the whole second after the newest last_seen so far, so
    that the uptime times decode back to the same milliseconds."""
    import pyarrow as pa

    from obserae_forensics.pipeline import discover_inputs
    from obserae_forensics.readers import read_flows
    from obserae_forensics.report import RunReport

    report = RunReport()
    table = pa.Table.from_batches(list(read_flows(discover_inputs([path], report), report)))
    n = table.num_rows - table.num_rows % RECORDS_PER_DATAGRAM

    def column(name: str) -> np.ndarray:
        return table.column(name).slice(0, n).to_numpy()

    def ipv4(name: str) -> np.ndarray:
        raw = np.frombuffer(table.column(name).combine_chunks().buffers()[1], np.uint8)
        matrix = raw[: table.num_rows * 16].reshape(-1, 16)[:n]
        if not (matrix[:, 10:12] == 0xFF).all():
            raise SystemExit(f"{path}: only IPv4 records can be re-exported")
        return matrix[:, 12:].copy().view(">u4").ravel()

    first = column("first_seen").astype("datetime64[us]").astype(np.int64)
    last = column("last_seen").astype("datetime64[us]").astype(np.int64)
    boot_us = (int(first.min()) // 1_000_000 - 3600) * 1_000_000
    flat = np.zeros(n, dtype=RECORD)
    flat["src"] = ipv4("src_addr")
    flat["dst"] = ipv4("dst_addr")
    flat["first"] = (first - boot_us) // 1000
    flat["last"] = (last - boot_us) // 1000
    for name, field in (("packets", "packets"), ("octets", "octets")):
        values = column(name)
        if values.max() >= 2**32:
            raise SystemExit(f"{path}: {name} does not fit 32 bits")
        flat[field] = values
    flat["input"] = column("input_if")
    flat["output"] = column("output_if")
    flat["sport"] = column("src_port")
    flat["dport"] = column("dst_port")
    flat["proto"] = column("protocol")
    flat["flags"] = column("tcp_flags").astype(np.uint8)
    flat["tos"] = column("tos")
    flat["reason"] = 1
    newest = np.maximum.accumulate(last.reshape(-1, RECORDS_PER_DATAGRAM).max(axis=1))
    ts_us = (newest // 1_000_000 + 1) * 1_000_000
    return flat, ts_us, boot_us


def write_capture(
    path: Path, version: int, body: np.ndarray, ts_us: np.ndarray, boot_us: int
) -> int:
    """Write `body` (RECORD records, RECORDS_PER_DATAGRAM a datagram sent at `ts_us`, uptimes
    counted from `boot_us`) as a capture; returns the number of flow records in it."""
    per = RECORDS_PER_DATAGRAM
    datagrams = len(ts_us)
    header_size = 20 if version == 9 else 16
    data_set_size = 4 + per * RECORD.itemsize
    payload_size = header_size + data_set_size
    sample = frame(bytes(payload_size), 0)
    frame_size = len(sample)
    payload_at = frame_size - payload_size
    rows = np.zeros((datagrams, 16 + frame_size), dtype=np.uint8)
    rows[:, 16:] = np.frombuffer(sample, dtype=np.uint8)
    record_header = np.zeros(
        datagrams, dtype=[("s", "<u4"), ("us", "<u4"), ("cap", "<u4"), ("len", "<u4")]
    )
    record_header["s"] = ts_us // 1_000_000
    record_header["us"] = ts_us % 1_000_000
    record_header["cap"] = frame_size
    record_header["len"] = frame_size
    rows[:, :16] = record_header.view(np.uint8).reshape(datagrams, 16)
    # IPv4 identification (bytes 18-19 of the IP header) and its checksum stay consistent:
    # identification is left 0 for every frame, so the sample's checksum is valid for all.
    export_s = (ts_us // 1_000_000).astype(np.int64)
    uptime_ms = ((ts_us - boot_us) // 1000).astype(np.int64)
    head = np.zeros(
        datagrams,
        dtype=[("v", ">u2"), ("a", ">u2"), ("b", ">u4"), ("c", ">u4"), ("d", ">u4"), ("e", ">u4")]
        if version == 9
        else [("v", ">u2"), ("a", ">u2"), ("b", ">u4"), ("c", ">u4"), ("d", ">u4")],
    )
    head["v"] = version
    if version == 9:
        head["a"] = per
        head["b"] = uptime_ms
        head["c"] = export_s
        # export packets, the template packet before every TEMPLATE_EVERY data packets included
        index = np.arange(datagrams, dtype=np.int64)
        head["d"] = index + index // TEMPLATE_EVERY + 1
    else:
        head["a"] = payload_size
        head["b"] = export_s
        head["c"] = np.arange(datagrams, dtype=np.int64) * per  # data records before
    start = 16 + payload_at
    rows[:, start : start + header_size] = head.view(np.uint8).reshape(datagrams, header_size)
    set_header = np.frombuffer(struct.pack(">HH", TEMPLATE_ID, data_set_size), dtype=np.uint8)
    rows[:, start + header_size : start + header_size + 4] = set_header
    records_at = start + header_size + 4
    rows[:, records_at:] = body.view(np.uint8).reshape(datagrams, per * RECORD.itemsize)
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for at in range(0, datagrams, TEMPLATE_EVERY):
            template_payload = template_set(version)
            # v9: the packet just before data packet `at`; IPFIX: no data records in it
            sequence = int(head["d"][at]) - 1 if version == 9 else int(head["c"][at])
            template_payload = (
                export_header(
                    version,
                    header_size + len(template_payload),
                    sequence,
                    int(export_s[at]),
                    int(uptime_ms[at]),
                    1,
                )
                + template_payload
            )
            template_frame = frame(template_payload, 0)
            out.write(
                struct.pack(
                    "<IIII",
                    int(record_header["s"][at]),
                    int(record_header["us"][at]),
                    len(template_frame),
                    len(template_frame),
                )
            )
            out.write(template_frame)
            out.write(rows[at : at + TEMPLATE_EVERY].tobytes())
    return datagrams * per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--version", type=int, choices=(9, 10), default=9)
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="re-export this nfcapd file's IPv4 records instead of random ones",
    )
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    if args.source is not None:
        body, ts_us, boot_us = nfcapd_records(args.source)
    else:
        body, ts_us, boot_us = random_records(-(-args.records // RECORDS_PER_DATAGRAM))
    records = write_capture(args.out, args.version, body, ts_us, boot_us)
    print(
        f"{args.out}: {records} v{args.version} records, {args.out.stat().st_size} bytes, "
        f"{time.perf_counter() - began:.1f} s"
    )


if __name__ == "__main__":
    main()
