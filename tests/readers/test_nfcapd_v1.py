"""nfdump 1.6 (LAYOUT_VERSION_1) files, built here from the format sources.

No nfdump 1.6 binary exists on this machine (Debian ships 1.7.1, which reads but never writes
layout 1), so the records are packed with `struct` straight from docs/formats.md §7
(nfdump v1.6.25 `bin/nffile.h`, `bin/nfx.c`) — independently of the reader's dtypes — using the
flows of a corpus file (already checked against nfdump) plus synthetic interfaces, AS numbers,
next hops and reverse counters.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from obserae_forensics.addresses import address_texts
from obserae_forensics.readers.compression import BZ2, LZ4, LZO, NONE
from obserae_forensics.readers.nfcapd import nfcapd_time_span, read_nfcapd
from obserae_forensics.readers.nfcapd_write import extension_map_v1, write_v1
from obserae_forensics.report import RunReport
from obserae_forensics.schema import FLOW_SCHEMA

V4_MAP = (5, 7, 9, 14, 16, 23, 27)  # 4-byte ifs and AS, next hop, out pkts/bytes, router, recv
V6_MAP = (4, 6, 10, 15, 17, 27)  # 2-byte ifs and AS, v6 next hop, 8-byte out counters
V4_MAP_LATER = (4, 6, 27)  # map 1 redefined halfway through block 2


def read_table(path: Path) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    batches = list(read_nfcapd(path, report))
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


def corpus_flows(corpus: Path) -> list[dict[str, object]]:
    """The flows of a 1.7 corpus file (IPv4 and IPv6) with synthetic routing fields."""
    report = RunReport()
    table = pa.Table.from_batches(
        list(read_nfcapd(corpus / "nfcapd" / "sf_v9_varsvc.nfcapd", report))
    )
    flows = []
    for i, row in enumerate(table.to_pylist()):
        flows.append(
            {
                "first_ms": int(row["first_seen"].timestamp() * 1000 + 0.5),
                "last_ms": int(row["last_seen"].timestamp() * 1000 + 0.5),
                "received_ms": int(row["arrival"].timestamp() * 1000 + 0.5),
                "src": row["src_addr"],
                "dst": row["dst_addr"],
                "v6": row["ip_version"] == 6,
                "src_port": row["src_port"],
                "dst_port": row["dst_port"],
                "protocol": row["protocol"],
                "tcp_flags": row["tcp_flags"],
                "tos": row["tos"],
                "packets": row["packets"],
                "octets": row["octets"],
                "input_if": i + 1,
                "output_if": i + 2,
                "src_as": 64500 + i,
                "dst_as": 64600 + i,
                "next_hop": bytes(10) + b"\xff\xff" + bytes([10, 0, 0, i]),
                "reverse_packets": i,
                "reverse_octets": 100 * i,
                "end_reason": i % 4,
                "sampled": i % 10 == 0,
            }
        )
    return flows


def pack_common(
    flow: dict[str, object], map_id: int, extensions: tuple[int, ...], order: str
) -> bytes:
    """A 1.6 common record (type 10), fields as in formats.md §7.2."""
    v6 = bool(flow["v6"])
    flags = (0x1 | 0x2 | 0x4 if v6 else 0) | (0x80 if flow["sampled"] else 0)
    first_ms, last_ms = int(flow["first_ms"]), int(flow["last_ms"])
    fixed = struct.pack(
        order + "BBHHHIIBBBBHHHBB",
        flags,
        9,
        map_id,
        first_ms % 1000,
        last_ms % 1000,
        first_ms // 1000,
        last_ms // 1000,
        0,
        flow["tcp_flags"],
        flow["protocol"],
        flow["tos"],
        flow["src_port"],
        flow["dst_port"],
        1,
        0,
        flow["end_reason"],
    )
    src, dst = bytes(flow["src"]), bytes(flow["dst"])  # type: ignore[arg-type]
    if v6:
        body = struct.pack(
            order + "QQQQ",
            *(int.from_bytes(a[k : k + 8], "big") for a in (src, dst) for k in (0, 8)),
        )
        body += struct.pack(order + "QQ", flow["packets"], flow["octets"])
    else:
        body = struct.pack(
            order + "II", int.from_bytes(src[12:], "big"), int.from_bytes(dst[12:], "big")
        )
        body += struct.pack(order + "II", flow["packets"], flow["octets"])
    hop = bytes(flow["next_hop"])  # type: ignore[arg-type]
    packers = {
        4: lambda: struct.pack(order + "HH", flow["input_if"], flow["output_if"]),
        5: lambda: struct.pack(order + "II", flow["input_if"], flow["output_if"]),
        6: lambda: struct.pack(order + "HH", flow["src_as"], flow["dst_as"]),
        7: lambda: struct.pack(order + "II", flow["src_as"], flow["dst_as"]),
        9: lambda: struct.pack(order + "I", int.from_bytes(hop[12:], "big")),
        10: lambda: struct.pack(
            order + "QQ", int.from_bytes(hop[:8], "big"), int.from_bytes(hop[8:], "big")
        ),
        14: lambda: struct.pack(order + "I", flow["reverse_packets"]),
        15: lambda: struct.pack(order + "Q", flow["reverse_packets"]),
        16: lambda: struct.pack(order + "I", flow["reverse_octets"]),
        17: lambda: struct.pack(order + "Q", flow["reverse_octets"]),
        23: lambda: struct.pack(order + "I", 0x7F000001),
        27: lambda: struct.pack(order + "Q", flow["received_ms"]),
    }
    for extension in extensions:
        body += packers[extension]()
    return struct.pack(order + "HH", 10, 4 + len(fixed) + len(body)) + fixed + body


def exporter_v1(order: str) -> bytes:
    """Exporter info: version 9, ip_addr_t holding 127.0.0.1, AF_INET, sysid 1, id 0."""
    return struct.pack(order + "HHIQQHHI", 7, 32, 9, 0, 0x7F000001, 2, 1, 0)


def build_blocks(
    flows: list[dict[str, object]], order: str
) -> tuple[list[list[bytes]], list[dict[str, object]]]:
    """Two blocks; map 1 changes halfway through block 2; one record names an unknown map."""
    half = len(flows) // 2
    quarter = half + len(flows) // 4
    first: list[bytes] = [
        exporter_v1(order),
        extension_map_v1(1, V4_MAP, order),
        extension_map_v1(2, V6_MAP, order),
    ]
    expected = []
    for flow in flows[:half]:
        first.append(
            pack_common(flow, 2 if flow["v6"] else 1, V6_MAP if flow["v6"] else V4_MAP, order)
        )
        expected.append(flow)
    second: list[bytes] = []
    for index, flow in enumerate(flows[half:], start=half):
        if index == quarter:
            second.append(extension_map_v1(1, V4_MAP_LATER, order))
        v4_map = V4_MAP_LATER if index >= quarter else V4_MAP
        second.append(
            pack_common(flow, 2 if flow["v6"] else 1, V6_MAP if flow["v6"] else v4_map, order)
        )
        if not flow["v6"] and index >= quarter:  # the later map carries no hop/reverse
            flow = {**flow, "next_hop": bytes(16), "reverse_packets": 0, "reverse_octets": 0}
        expected.append(flow)
    second.append(pack_common(flows[0], 9, V4_MAP, order))  # map 9 was never defined
    return [first, second], expected


@pytest.mark.parametrize("compression", [NONE, LZO, BZ2, LZ4], ids=["none", "lzo", "bz2", "lz4"])
@pytest.mark.parametrize("order", ["<", ">"], ids=["le", "be"])
def test_layout_1_file_reads_every_field(
    corpus: Path, tmp_path: Path, compression: int, order: str
) -> None:
    flows = corpus_flows(corpus)
    assert any(f["v6"] for f in flows) and not all(f["v6"] for f in flows)
    blocks, expected = build_blocks(flows, order)
    path = tmp_path / "nfcapd.201106241550"
    stat = {
        "flows": len(flows),
        "msec_first": min(int(f["first_ms"]) for f in flows),
        "msec_last": max(int(f["last_ms"]) for f in flows),
    }
    write_v1(path, blocks, compression=compression, ident="legacy", stat=stat, order=order)
    table, report = read_table(path)
    assert report.skipped == {"no_extension_map": 1}
    assert report.files[str(path)].format == "nfcapd-v1"
    assert report.files[str(path)].units == 2
    assert nfcapd_time_span(path) == (stat["msec_first"] * 1000, stat["msec_last"] * 1000)
    rows = table.to_pylist()
    assert len(rows) == len(expected)
    matrix = np.frombuffer(
        table.column("src_addr").combine_chunks().buffers()[1], np.uint8
    ).reshape(-1, 16)
    assert address_texts(matrix[:3]) == address_texts(
        np.frombuffer(
            b"".join(bytes(f["src"]) for f in expected[:3]),  # type: ignore[arg-type]
            np.uint8,
        ).reshape(-1, 16)
    )
    for row, flow in zip(rows, expected, strict=True):
        assert int(row["first_seen"].timestamp() * 1000 + 0.5) == flow["first_ms"]
        assert int(row["last_seen"].timestamp() * 1000 + 0.5) == flow["last_ms"]
        assert int(row["arrival"].timestamp() * 1000 + 0.5) == flow["received_ms"]
        assert (row["src_addr"], row["dst_addr"]) == (flow["src"], flow["dst"])
        assert row["ip_version"] == (6 if flow["v6"] else 4)
        for name in (
            "src_port",
            "dst_port",
            "protocol",
            "tcp_flags",
            "tos",
            "packets",
            "octets",
            "input_if",
            "output_if",
            "src_as",
            "dst_as",
            "reverse_packets",
            "reverse_octets",
        ):
            assert row[name] == flow[name], name
        assert row["next_hop"] == flow["next_hop"] or flow["v6"]
        assert row["flow_end_reason"] == flow["end_reason"]
        assert row["counters_scaled"] == flow["sampled"]
        assert (row["exporter"], row["exporter_domain"], row["export_version"]) == (
            "127.0.0.1",
            0,
            9,
        )
    stats = report.exporters[("127.0.0.1", 0)]
    assert stats.records == len(expected) and stats.version == 9
    assert stats.packets == sum(int(f["packets"]) + int(f["reverse_packets"]) for f in expected)
