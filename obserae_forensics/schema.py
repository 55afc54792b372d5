"""The seams: FLOW_SCHEMA between readers and everything else, and one schema per table.

Every reader yields `pa.RecordBatch`es of FLOW_SCHEMA and nothing after the readers sees a
format-specific object. Conventions every reader follows:

* Times are UTC microseconds. `arrival` is when the collector got the datagram (capture
  time) or, for nfcapd, the record's received time, else the file's slot time.
* Addresses are 16 bytes: IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), `ip_version` says
  which family the exporter sent. They become text only in output tables.
* ICMP/ICMPv6: `src_port` 0 and `dst_port` = type << 8 | code (nfdump's convention), so the
  ICMP type/code travels without extra columns.
* Counters are what the source recorded. `sampling_rate` is the 1-in-N rate in force (1 =
  unsampled or unknown); `counters_scaled` is true when the source already multiplied the
  counters by it (nfcapd does), so nothing is scaled twice.
* `reverse_packets`/`reverse_octets` are the RFC 5103 reverse counters (or nfcapd's out
  counters), 0 when the exporter sent none; `reverse_tcp_flags` the reverse direction's
  TCP flags (RFC 5103 reverseTcpControlBits), 0 when not sent.
* Provenance: `source_file`, `source_frame` (1-based capture frame, or nfcapd block number),
  `source_offset` (byte offset of the frame record or block in the file) and `record_index`
  (the record's place in its datagram or block) find the bytes again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
ADDRESS = pa.binary(16)
DICT_STRING = pa.dictionary(pa.int32(), pa.string())

_flow_fields: list[pa.Field[Any]] = [
    # when: UTC microseconds
    pa.field("first_seen", TIMESTAMP, nullable=False),
    pa.field("last_seen", TIMESTAMP, nullable=False),
    # who
    pa.field("src_addr", ADDRESS, nullable=False),
    pa.field("dst_addr", ADDRESS, nullable=False),
    pa.field("ip_version", pa.uint8(), nullable=False),
    pa.field("src_port", pa.uint16(), nullable=False),
    pa.field("dst_port", pa.uint16(), nullable=False),
    pa.field("protocol", pa.uint8(), nullable=False),  # IANA protocol number
    pa.field("tcp_flags", pa.uint16(), nullable=False),  # OR of the flags the exporter saw
    pa.field("reverse_tcp_flags", pa.uint16(), nullable=False),  # RFC 5103: dst -> src's
    pa.field("tos", pa.uint8(), nullable=False),
    # how much
    pa.field("packets", pa.uint64(), nullable=False),
    pa.field("octets", pa.uint64(), nullable=False),
    pa.field("reverse_packets", pa.uint64(), nullable=False),
    pa.field("reverse_octets", pa.uint64(), nullable=False),
    # where in the network
    pa.field("input_if", pa.uint32(), nullable=False),
    pa.field("output_if", pa.uint32(), nullable=False),
    pa.field("src_as", pa.uint32(), nullable=False),
    pa.field("dst_as", pa.uint32(), nullable=False),
    pa.field("next_hop", ADDRESS, nullable=False),  # all zero when not sent
    # how it was measured
    pa.field("sampling_rate", pa.uint32(), nullable=False),
    pa.field("counters_scaled", pa.bool_(), nullable=False),
    pa.field("flow_end_reason", pa.uint8(), nullable=False),  # IPFIX IE 136, 0 = unknown
    pa.field("export_version", pa.uint8(), nullable=False),  # 5, 9, 10 (nfcapd: nfversion)
    # who reported it
    pa.field("exporter", DICT_STRING, nullable=False),  # exporter address as text
    pa.field("exporter_domain", pa.uint32(), nullable=False),  # v9 source ID / IPFIX ODID
    # where it came from: enough to find the bytes again
    pa.field("source_file", DICT_STRING, nullable=False),
    pa.field("source_frame", pa.uint64(), nullable=False),
    pa.field("source_offset", pa.uint64(), nullable=False),
    pa.field("record_index", pa.uint32(), nullable=False),
    pa.field("arrival", TIMESTAMP, nullable=False),
]
FLOW_SCHEMA = pa.schema(_flow_fields)

# numpy dtypes of the FLOW_SCHEMA columns that are plain numbers (times as int64 µs).
FLOW_NUMERIC_DTYPES: dict[str, str] = {
    "first_seen": "int64",
    "last_seen": "int64",
    "ip_version": "uint8",
    "src_port": "uint16",
    "dst_port": "uint16",
    "protocol": "uint8",
    "tcp_flags": "uint16",
    "reverse_tcp_flags": "uint16",
    "tos": "uint8",
    "packets": "uint64",
    "octets": "uint64",
    "reverse_packets": "uint64",
    "reverse_octets": "uint64",
    "input_if": "uint32",
    "output_if": "uint32",
    "src_as": "uint32",
    "dst_as": "uint32",
    "sampling_rate": "uint32",
    "counters_scaled": "bool",
    "flow_end_reason": "uint8",
    "export_version": "uint8",
    "exporter_domain": "uint32",
    "source_frame": "uint64",
    "source_offset": "uint64",
    "record_index": "uint32",
    "arrival": "int64",
}
FLOW_ADDRESS_COLUMNS = ("src_addr", "dst_addr", "next_hop")
FLOW_STRING_COLUMNS = ("exporter", "source_file")

# Columns added after the first tables were written, with the value a table of an earlier
# version, which lacks them, reads as: FLOW_SCHEMA's as a record whose exporter sent none;
# sessions_consolidated's sampling rates (version 0.2.0) as 0, unknown, which query.load
# then works out from the members (query.run._consolidated_rates)
ADDED_COLUMNS: dict[str, int] = {
    "reverse_tcp_flags": 0,
    "cs_sampling_rate": 0,
    "sc_sampling_rate": 0,
    "max_sampling_rate": 0,
}


def with_added_columns(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` (of `schema`, or of an earlier version of it) with every ADDED_COLUMNS column
    of `schema` it lacks, at its place, holding its earlier-version value."""
    for name, value in ADDED_COLUMNS.items():
        if name in schema.names and name not in table.column_names:
            field = schema.field(name)
            filled = pa.array(np.full(table.num_rows, value), field.type)
            table = table.add_column(
                min(schema.get_field_index(name), table.num_columns), field, filled
            )
    return table


_session_fields: list[pa.Field[Any]] = [
    pa.field("session_id", pa.string(), nullable=False),
    pa.field("conversation_id", pa.string(), nullable=False),
    pa.field("split", pa.uint32(), nullable=False),
    pa.field("exporter", pa.string(), nullable=False),
    pa.field("exporter_domain", pa.uint32(), nullable=False),
    pa.field("protocol", pa.string(), nullable=False),  # IANA keyword: TCP, UDP, ICMP ...
    pa.field("protocol_number", pa.uint8(), nullable=False),
    pa.field("ip_a", pa.string(), nullable=False),
    pa.field("port_a", pa.uint16(), nullable=False),
    pa.field("ip_b", pa.string(), nullable=False),
    pa.field("port_b", pa.uint16(), nullable=False),
    pa.field("client_ip", pa.string(), nullable=False),
    pa.field("client_port", pa.uint16(), nullable=False),
    pa.field("server_ip", pa.string(), nullable=False),
    pa.field("server_port", pa.uint16(), nullable=False),
    pa.field("role_method", pa.string(), nullable=False),
    pa.field("role_confidence", pa.float64(), nullable=False),
    pa.field("ab_bytes", pa.uint64(), nullable=False),
    pa.field("ba_bytes", pa.uint64(), nullable=False),
    pa.field("ab_packets", pa.uint64(), nullable=False),
    pa.field("ba_packets", pa.uint64(), nullable=False),
    pa.field("ab_flags", pa.uint16(), nullable=False),
    pa.field("ba_flags", pa.uint16(), nullable=False),
    pa.field("icmp_type", pa.uint8(), nullable=True),
    pa.field("icmp_code", pa.uint8(), nullable=True),
    pa.field("opened_at", TIMESTAMP, nullable=False),
    pa.field("last_seen_at", TIMESTAMP, nullable=False),
    pa.field("closed_at", TIMESTAMP, nullable=True),
    pa.field("state", pa.string(), nullable=False),
    pa.field("close_reason", pa.string(), nullable=True),
    pa.field("flow_count", pa.uint64(), nullable=False),
    pa.field("late_records", pa.uint64(), nullable=False),
    pa.field("late", pa.bool_(), nullable=False),
    pa.field("follows_session_id", pa.string(), nullable=True),
    pa.field("sampling_rate", pa.uint32(), nullable=False),
    pa.field("counters_scaled", pa.bool_(), nullable=False),
    pa.field("matched_rules", pa.list_(pa.string()), nullable=False),
]
SESSIONS_SCHEMA = pa.schema(_session_fields)

STATES = ("active", "half_open", "closed")
CLOSE_REASONS = ("fin", "rst", "rejected", "no_reply", "idle", "hard_timeout", "evicted")


# flows.parquet: every record with the session it landed in and its direction there
FLOWS_SCHEMA = FLOW_SCHEMA.append(pa.field("session_id", pa.string(), nullable=False)).append(
    pa.field("direction", pa.string(), nullable=False)
)


def text_address_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with its address columns as text, as the output tables store them."""
    return pa.schema(
        [
            pa.field(f.name, pa.string(), f.nullable) if f.name in FLOW_ADDRESS_COLUMNS else f
            for f in schema
        ]
    )
