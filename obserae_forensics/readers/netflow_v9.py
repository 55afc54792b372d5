"""NetFlow v9 export packets (RFC 3954): a 20-byte header, then FlowSets.

FlowSet 0 carries templates, 1 options templates, >= 256 data records of that template;
templates are scoped per (exporter address, source ID) and UDP source port (exports.py).
The surprising things, all seen in
the corpus: the header `count` is unreliable (softflowd) and FlowSets are not always padded
to 4 bytes, so FlowSets are walked by their length field only, never by count; v9 has no
enterprise bit (a type >= 32768 is a plain vendor type); options-template scope fields are
scope *types* (1 System, 2 Interface, ...), not elements. Times are uptime-relative
(FIRST/LAST_SWITCHED, IE 22/21) against the header's sysUptime, as v5's (an age modulo
2**32, from a day after the export back to 48.7 days before it);
absolute IE 150-153 (pmacct, Cisco ASA) are used when a template carries them. Sequence
numbers count export packets (next = sequence + 1). RFC 3954 has no variable-length
fields, but H3C's NetStream sends IPFIX's (length 65535, then a 1- or 3-byte length in each
record), and nfdump reads them: so do we. Some exporters pad the datagram with zeros after
the last FlowSet (Palo Alto, Cisco ACI): a FlowSet "header" of zeros that runs to the end
is that padding, not a zero-length FlowSet.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..errors import TruncatedInput
from ._layout import Layout
from .datagrams import Datagram
from .templates import (
    FieldSpec,
    Template,
    TemplateSink,
    after_templates,
    field_length_problem,
    skip_malformed,
)

if TYPE_CHECKING:
    from .exports import ExportDecoder

VERSION = 9
TEMPLATE_SET = 0
OPTIONS_TEMPLATE_SET = 1
FIRST_DATA_SET = 256

HEADER = Layout(
    "NetFlow v9 header",
    ">",
    [
        ("version", "H"),
        ("count", "H"),  # template + data records: wrong in practice, never used to bound
        ("sys_uptime_ms", "I"),
        ("unix_secs", "I"),
        ("sequence", "I"),  # export packets sent by this source ID
        ("source_id", "I"),  # observation domain
    ],
)
SET_HEADER = Layout("FlowSet header", ">", [("flowset_id", "H"), ("length", "H")])
TEMPLATE_HEADER = Layout("v9 template record", ">", [("template_id", "H"), ("field_count", "H")])
OPTIONS_HEADER = Layout(
    "v9 options template record",
    ">",
    [
        ("template_id", "H"),
        ("option_scope_length", "H"),  # bytes of scope (type, length) pairs
        ("option_length", "H"),  # bytes of option (type, length) pairs
    ],
)
assert HEADER.size == 20 and SET_HEADER.size == 4 and OPTIONS_HEADER.size == 6

_set_header = SET_HEADER.struct.unpack_from


def sane_header(payload: bytes, *, first_set: bool = True) -> bool:
    """True when `payload` starts like a v9 export packet (version 9, a plausible FlowSet
    id; the id only with `first_set`: a proven exporter's packet is walked whatever its
    first FlowSet, and a reserved one counted there)."""
    if len(payload) < HEADER.size:
        return False
    if len(payload) < HEADER.size + SET_HEADER.size or not first_set:
        return True
    flowset_id = payload[20] << 8 | payload[21]
    return flowset_id <= OPTIONS_TEMPLATE_SET or flowset_id >= FIRST_DATA_SET


def decode_datagram(state: ExportDecoder, datagram: Datagram) -> None:
    """Walk one v9 packet by FlowSet lengths; queue data, learn templates, count problems."""
    payload = datagram.payload
    (_, _, uptime_ms, unix_secs, sequence, source_id) = HEADER.values(
        payload, 0, source=datagram.source, base=datagram.offset, frame=datagram.frame
    )
    if not state.begin_datagram(
        datagram, VERSION, source_id, sequence, unix_secs * 1_000_000, uptime_ms
    ):
        return
    at = HEADER.size
    end = len(payload)
    while end - at >= 4:  # fewer than 4 bytes left: trailing padding
        flowset_id, length = _set_header(payload, at)
        if length < 4:
            if not any(payload[at:end]):
                break  # zeros to the end: the datagram is padded (Palo Alto, Cisco ACI)
            reason = "zero_length_set" if length == 0 else "bad_set_length"
            skip_malformed(
                state,
                datagram,
                f"FlowSet {flowset_id} at payload byte {at} has length {length}",
                end - at,
                reason,
            )
            break
        set_end = at + length
        if set_end > end:
            state.skip(
                TruncatedInput(
                    f"FlowSet {flowset_id} at payload byte {at} has length {length}, "
                    f"{end - at} bytes left",
                    source=datagram.source,
                    offset=datagram.offset,
                    frame=datagram.frame,
                ),
                end - at,
            )
            break
        if flowset_id >= FIRST_DATA_SET:
            state.data_set(
                flowset_id, payload, at + 4, set_end, f"FlowSet {flowset_id} at payload byte {at}"
            )
        elif flowset_id == TEMPLATE_SET:
            read_templates(state, datagram, payload, at + 4, set_end)
        elif flowset_id == OPTIONS_TEMPLATE_SET:
            read_options_templates(state, datagram, payload, at + 4, set_end)
        else:
            skip_malformed(
                state,
                datagram,
                f"reserved FlowSet id {flowset_id} at payload byte {at}",
                length,
                "reserved_set_id",
            )
        at = set_end
    state.end_datagram(1, per_datagram=True)


def read_templates(
    state: TemplateSink, datagram: Datagram, payload: bytes, at: int, end: int
) -> None:
    body, records = at, 0
    while end - at >= TEMPLATE_HEADER.size:
        template_id, field_count = TEMPLATE_HEADER.struct.unpack_from(payload, at)
        if template_id == 0 and field_count == 0:
            break  # padding
        size = TEMPLATE_HEADER.size + 4 * field_count
        if template_id < FIRST_DATA_SET or field_count == 0 or at + size > end:
            skip_malformed(
                state,
                datagram,
                f"template record {template_id} with {field_count} "
                f"fields at payload byte {at} does not fit its FlowSet",
                end - at,
                "bad_template",
            )
            return
        pairs = struct.unpack_from(f">{2 * field_count}H", payload, at + 4)
        fields = tuple(FieldSpec(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2))
        problem = field_length_problem(fields)
        if problem is not None:
            skip_malformed(
                state,
                datagram,
                f"template {template_id} at payload byte {at}: {problem}",
                size,
                "bad_template",
            )
        else:
            state.define_template(Template(template_id, fields, version=VERSION))
        at += size
        records += 1
    after_templates(
        state, payload, body, at, end, records, f"template FlowSet at payload byte {body - 4}"
    )


def read_options_templates(
    state: TemplateSink, datagram: Datagram, payload: bytes, at: int, end: int
) -> None:
    body, records = at, 0
    while end - at >= OPTIONS_HEADER.size:
        template_id, scope_length, option_length = OPTIONS_HEADER.struct.unpack_from(payload, at)
        if template_id == 0 and scope_length == 0 and option_length == 0:
            break  # padding (zero octets, RFC 3954 §5.3; id 0 with lengths is damage)
        size = OPTIONS_HEADER.size + scope_length + option_length
        if template_id < FIRST_DATA_SET or scope_length % 4 or option_length % 4 or at + size > end:
            skip_malformed(
                state,
                datagram,
                f"options template {template_id} at payload byte {at}: "
                f"scope {scope_length} / option {option_length} bytes do not fit",
                end - at,
                "bad_template",
            )
            return
        count = (scope_length + option_length) // 4
        pairs = struct.unpack_from(f">{2 * count}H", payload, at + OPTIONS_HEADER.size)
        fields = tuple(FieldSpec(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2))
        state.define_template(
            Template(
                template_id, fields, scope_count=scope_length // 4, options=True, version=VERSION
            )
        )
        at += size
        records += 1
    after_templates(
        state,
        payload,
        body,
        at,
        end,
        records,
        f"options template FlowSet at payload byte {body - 4}",
    )
