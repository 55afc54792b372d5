"""NetFlow v5 export datagrams: a 24-byte header and 1-30 fixed 48-byte records.

Layout: Cisco NetFlow Export Datagram Format (NDE v5), as read by nfdump
`src/netflow/netflow_v5_v7.c`. The surprising thing: record times are not clock times
but milliseconds of exporter uptime (First/Last), anchored by the header's wall clock
(unix_secs/unix_nsecs) minus sysUptime. We compute the age `sysUptime - First` modulo
2**32 and place it from a day after the export back to 48.7 days before it
(templates.UPTIME_SLACK_MS): that survives the sysUptime wrap, a Last a few ms ahead of
sysUptime (Cisco CSCei12353) and flows weeks old alike (older ones 32 bits cannot date);
softflowd without `-a` sends sysUptime 0 and First around 2.7e9, which this puts ~18 days
before export, exactly as nfdump does.

The v5 record is expressed as a built-in template of IPFIX elements, so v5 shares the
column code (templates.RecordPlan) with v9 and IPFIX. Exporter domain = engine_type << 8 |
engine_id; sequence numbers count flows (next = flow_sequence + count).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MalformedInput, TruncatedInput
from ._layout import Layout
from .datagrams import Datagram
from .templates import FieldSpec, Template

if TYPE_CHECKING:
    from .exports import ExportDecoder

VERSION = 5
MAX_RECORDS = 30

HEADER = Layout("NetFlow v5 header", ">", [
    ("version", "H"), ("count", "H"),  # count: records that follow, 1..30
    ("sys_uptime_ms", "I"), ("unix_secs", "I"), ("unix_nsecs", "I"),
    ("flow_sequence", "I"),  # flows exported before this datagram
    ("engine_type", "B"), ("engine_id", "B"),
    ("sampling", "H"),  # top 2 bits mode, low 14 bits interval (1 in N)
])
assert HEADER.size == 24

# The 48-byte record as (element, length): IPFIX ids with the same meaning (element 0 = pad).
RECORD_FIELDS = (
    FieldSpec(8, 4),  # srcaddr
    FieldSpec(12, 4),  # dstaddr
    FieldSpec(15, 4),  # nexthop
    FieldSpec(10, 2),  # input
    FieldSpec(14, 2),  # output
    FieldSpec(2, 4),  # dPkts
    FieldSpec(1, 4),  # dOctets
    FieldSpec(22, 4),  # First: sysUptime ms
    FieldSpec(21, 4),  # Last: sysUptime ms
    FieldSpec(7, 2),  # srcport
    FieldSpec(11, 2),  # dstport
    FieldSpec(0, 1),  # pad1
    FieldSpec(6, 1),  # tcp_flags
    FieldSpec(4, 1),  # prot
    FieldSpec(5, 1),  # tos
    FieldSpec(16, 2),  # src_as
    FieldSpec(17, 2),  # dst_as
    FieldSpec(9, 1),  # src_mask
    FieldSpec(13, 1),  # dst_mask
    FieldSpec(0, 2),  # pad2
)
RECORD_TEMPLATE = Template(0, RECORD_FIELDS, version=VERSION)
RECORD_SIZE = 48
assert RECORD_TEMPLATE.fixed_length == RECORD_SIZE


def sane_header(payload: bytes) -> bool:
    """True when `payload` starts like a v5 datagram (version 5, 1-30 records)."""
    return len(payload) >= HEADER.size and 1 <= int.from_bytes(payload[2:4], "big") <= MAX_RECORDS


def decode_datagram(state: ExportDecoder, datagram: Datagram) -> None:
    """Queue the records of one v5 datagram on `state`; count a cut-off tail."""
    payload = datagram.payload
    (_, count, uptime_ms, unix_secs, unix_nsecs, sequence, engine_type, engine_id,
     sampling) = HEADER.values(payload, 0, source=datagram.source, base=datagram.offset,
                               frame=datagram.frame)
    interval = sampling & 0x3FFF
    export_us = unix_secs * 1_000_000 + unix_nsecs // 1000
    if not state.begin_datagram(
        datagram, VERSION, engine_type << 8 | engine_id, sequence, export_us, uptime_ms,
        sampling_rate=max(interval, 1),  # the header is authoritative for every datagram
    ):
        return
    available = (len(payload) - HEADER.size) // RECORD_SIZE
    records = min(count, available)
    if records < count:
        needed = HEADER.size + count * RECORD_SIZE
        state.skip(
            TruncatedInput(
                f"header promises {count} records ({needed} bytes), got {len(payload)}",
                source=datagram.source, offset=datagram.offset, frame=datagram.frame,
            ),
            len(payload) - HEADER.size - records * RECORD_SIZE,
        )
    tail = len(payload) - HEADER.size - records * RECORD_SIZE
    if records == count and tail and any(payload[len(payload) - tail:]):
        # more than the count says, and not zero padding: a damaged count loses records
        state.skip(
            MalformedInput(
                f"header promises {count} records, {tail} bytes follow them",
                source=datagram.source, offset=datagram.offset, frame=datagram.frame,
                reason="bad_record",
            ),
            tail,
        )
    if records:
        state.add_set(RECORD_TEMPLATE, HEADER.size, records)
    state.end_datagram(count)
