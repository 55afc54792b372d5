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

Its two fixed-format siblings are read here too, as nfdump reads them (`netflow_v1.c`,
`netflow_v5_v7.c`; fprobe still exports both): v1 (a 16-byte header with no sequence,
domain or sampling, 1-24 records of 48 bytes without AS numbers or masks) and v7 (the
Catalyst switches': v5's header with its engine and sampling bytes reserved, 1-30 records
of 52 bytes, v5's and the address of the router the switch bypassed; Cisco's header table
allows 30, and nfdump and tshark read them, though nfdump's header names 28: 29 and 30
were refused whole, and counted lost, found by an audit). Their version numbers are
common first bytes of other UDP payloads, so they are taken only with a datagram exactly
as long as their count says and a plausible clock; before, their datagrams were counted
as `not_flow_export`, read by nobody.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..errors import MalformedInput, TruncatedInput
from ._layout import Layout
from .datagrams import Datagram
from .templates import FieldSpec, Template

if TYPE_CHECKING:
    from .exports import ExportDecoder

VERSION = 5
MAX_RECORDS = 30

# what v1, v5 and v7 headers begin with: count = records that follow (v5: 1..30), then
# the exporter's uptime and wall clock
CLOCK_FIELDS = [
    ("version", "H"),
    ("count", "H"),
    ("sys_uptime_ms", "I"),
    ("unix_secs", "I"),
    ("unix_nsecs", "I"),
]
HEADER = Layout(
    "NetFlow v5 header",
    ">",
    [
        *CLOCK_FIELDS,
        ("flow_sequence", "I"),  # flows exported before this datagram
        ("engine_type", "B"),
        ("engine_id", "B"),
        ("sampling", "H"),  # top 2 bits mode, low 14 bits interval (1 in N)
    ],
)
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


V1_HEADER = Layout("NetFlow v1 header", ">", CLOCK_FIELDS)  # 1..24 records
assert V1_HEADER.size == 16
V1_RECORD_FIELDS = (
    *RECORD_FIELDS[:11],  # srcaddr .. dstport, as v5's
    FieldSpec(0, 2),  # pad1
    FieldSpec(4, 1),  # prot
    FieldSpec(5, 1),  # tos
    FieldSpec(6, 1),  # tcp_flags
    FieldSpec(0, 7),  # pad2, pad3, reserved
)
V7_HEADER = Layout(
    "NetFlow v7 header",
    ">",
    [  # 1..30 records
        *CLOCK_FIELDS,
        ("flow_sequence", "I"),  # flows exported before this datagram, as v5's
        ("reserved", "4x"),
    ],
)
assert V7_HEADER.size == 24
V7_RECORD_FIELDS = (
    *RECORD_FIELDS,  # v5's, its pad1 the switch's flags byte (0: a valid flow)
    FieldSpec(0, 4),  # router_sc: the router the switch bypassed, no flow field
)


class Fixed(NamedTuple):
    """One fixed-format version: its header and its records as a built-in template."""

    version: int
    header: Layout
    template: Template
    max_records: int

    @property
    def record_size(self) -> int:
        assert self.template.fixed_length is not None
        return self.template.fixed_length


FORMATS = {
    1: Fixed(1, V1_HEADER, Template(0, V1_RECORD_FIELDS, version=1), 24),
    5: Fixed(VERSION, HEADER, RECORD_TEMPLATE, MAX_RECORDS),
    7: Fixed(7, V7_HEADER, Template(0, V7_RECORD_FIELDS, version=7), 30),
}
assert FORMATS[1].record_size == 48 and FORMATS[7].record_size == 52


# bytes the specs leave unused, zero in the first record (and v7's reserved header word):
# (offset, length) from the start of the datagram
_UNUSED = {1: ((16 + 36, 2), (16 + 41, 7)), 7: ((20, 4), (24 + 46, 2))}


def sane_header(payload: bytes, version: int = VERSION) -> bool:
    """True when `payload` starts like a datagram of `version` (1, 5 or 7): a record count
    in its range and, for the rarer v1 and v7, a datagram exactly that long with a
    nanosecond field below 10**9 and the unused bytes of its first record zero (their
    version numbers begin many other payloads: memcached frames of those lengths passed
    the rest, 13 in 100,000)."""
    fixed = FORMATS[version]
    if len(payload) < fixed.header.size:
        return False
    count = int.from_bytes(payload[2:4], "big")
    if not 1 <= count <= fixed.max_records:
        return False
    if version == VERSION:
        return True
    return (
        len(payload) == fixed.header.size + count * fixed.record_size
        and _plausible_clock(payload)
        and not any(any(payload[at : at + size]) for at, size in _UNUSED[version])
    )


def cut_or_padded(payload: bytes, version: int) -> bool:
    """A v1 or v7 header whose datagram is shorter or longer than its count says: read
    (the cut or the extra bytes counted) when its sender's good datagrams came before."""
    return (
        version in _UNUSED
        and len(payload) >= FORMATS[version].header.size
        and 1 <= int.from_bytes(payload[2:4], "big") <= FORMATS[version].max_records
        and _plausible_clock(payload)
    )


def _plausible_clock(payload: bytes) -> bool:
    """v1/v7: a header's unix_nsecs below 10**9."""
    return int.from_bytes(payload[12:16], "big") < 1_000_000_000


def decode_datagram(state: ExportDecoder, datagram: Datagram, version: int = VERSION) -> None:
    """Queue the records of one v1, v5 or v7 datagram on `state`; count a cut-off tail."""
    payload = datagram.payload
    fixed = FORMATS[version]
    header = fixed.header.values(
        payload, 0, source=datagram.source, base=datagram.offset, frame=datagram.frame
    )
    count, uptime_ms, unix_secs, unix_nsecs = header[1:5]
    export_us = unix_secs * 1_000_000 + unix_nsecs // 1000
    units: int | None  # what the datagram adds to its sequence (None: v1 numbers nothing)
    if version == VERSION:
        sequence, engine_type, engine_id, sampling = header[5:]
        domain, rate, units = engine_type << 8 | engine_id, max(sampling & 0x3FFF, 1), count
    else:  # v1 numbers nothing; v7 counts flows, as v5; neither samples
        sequence, domain, rate = (header[5] if version == 7 else 0), 0, 1
        units = count if version == 7 else None
    if not state.begin_datagram(
        datagram,
        version,
        domain,
        sequence,
        export_us,
        uptime_ms,
        sampling_rate=rate,  # the header is authoritative for every datagram
    ):
        return
    size, start = fixed.record_size, fixed.header.size
    available = (len(payload) - start) // size
    records = min(count, available)
    if records < count:
        needed = start + count * size
        state.skip(
            TruncatedInput(
                f"header promises {count} records ({needed} bytes), got {len(payload)}",
                source=datagram.source,
                offset=datagram.offset,
                frame=datagram.frame,
            ),
            len(payload) - start - records * size,
        )
    tail = len(payload) - start - records * size
    if records == count and tail and any(payload[len(payload) - tail :]):
        # more than the count says, and not zero padding: a damaged count loses records
        state.skip(
            MalformedInput(
                f"header promises {count} records, {tail} bytes follow them",
                source=datagram.source,
                offset=datagram.offset,
                frame=datagram.frame,
                reason="bad_record",
            ),
            tail,
        )
    if records:
        state.add_set(fixed.template, start, records)
    state.end_datagram(units)
