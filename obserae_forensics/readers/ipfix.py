"""IPFIX messages (RFC 7011): a 16-byte header, then sets of templates, options templates
and data records.

Set 2 carries templates, 3 options templates, >= 256 data records of that template.
Field specifiers may carry an enterprise number (top bit of the element id, RFC 7011 §3.2)
and a length of 65535 announcing a variable-length field (1-byte length, or 255 then a
2-byte length, §7). The surprising things:

* withdrawals (a template record with field count 0) MUST NOT be sent over UDP and MUST be
  ignored there (§8.1, §8.4). We count them (ExporterStats.template_withdrawals) and keep
  the template: in an offline replay a later data set can only be decoded with it, and a
  redefinition still replaces it at that point of the capture;
* enterprise fields are skipped by length and counted per record, except the RFC 5103
  reverse counters (PEN 29305), which fill reverse_packets / reverse_octets;
* a record's times may come in any of IE 150-159 or as uptime offsets (IE 22/21) from
  systemInitTimeMilliseconds (IE 160) sent in the same record or, as softflowd does, in an
  options record; templates.RecordPlan converts them all;
* sequence numbers count data records sent before the message (options data included);
  softflowd counts the current message's records too, which exports.py accepts as well.

Records of variable-length templates are cut to their fixed-size fields in Python (rare in
flow data); fixed-size templates go through the numpy path in exports.py. Zeros after the
last set or message are padding, as in v9.
"""

from __future__ import annotations

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

VERSION = 10
TEMPLATE_SET = 2
OPTIONS_TEMPLATE_SET = 3
FIRST_DATA_SET = 256
ENTERPRISE_BIT = 0x8000

HEADER = Layout(
    "IPFIX message header",
    ">",
    [
        ("version", "H"),
        ("length", "H"),  # whole message including this header
        ("export_time", "I"),  # seconds since 1970
        ("sequence", "I"),  # data records sent before this message, mod 2^32
        ("observation_domain_id", "I"),
    ],
)
SET_HEADER = Layout("IPFIX set header", ">", [("set_id", "H"), ("length", "H")])
TEMPLATE_HEADER = Layout("IPFIX template record", ">", [("template_id", "H"), ("field_count", "H")])
OPTIONS_HEADER = Layout(
    "IPFIX options template record",
    ">",
    [
        ("template_id", "H"),
        ("field_count", "H"),
        ("scope_field_count", "H"),
    ],
)
assert HEADER.size == 16 and SET_HEADER.size == 4

_set_header = SET_HEADER.struct.unpack_from
_field_specifier = Layout("field specifier", ">", [("element", "H"), ("length", "H")]).struct
_enterprise = Layout("enterprise number", ">", [("enterprise", "I")]).struct


def sane_header(payload: bytes, *, first_set: bool = True) -> bool:
    """True when `payload` starts like an IPFIX message (version 10, length, a valid set
    id; the set id only with `first_set`: a proven exporter's message is walked whatever
    its first set, and a reserved one counted there)."""
    if len(payload) < HEADER.size or (payload[2] << 8 | payload[3]) < HEADER.size:
        return False
    if len(payload) < HEADER.size + SET_HEADER.size or not first_set:
        return True
    set_id = payload[16] << 8 | payload[17]
    return set_id in (TEMPLATE_SET, OPTIONS_TEMPLATE_SET) or set_id >= FIRST_DATA_SET


def decode_datagram(state: ExportDecoder, datagram: Datagram) -> None:
    """Walk every IPFIX message of one datagram (normally exactly one)."""
    payload = datagram.payload
    at = 0
    ordinal = state.first_ordinal(datagram)  # messages over TCP can share a frame
    while len(payload) - at >= HEADER.size:
        version, length, export_time, sequence, domain = HEADER.values(
            payload, at, source=datagram.source, base=datagram.offset, frame=datagram.frame
        )
        if version != VERSION or length < HEADER.size:
            if not any(payload[at:]):
                return  # zeros after the last message: the datagram is padded
            skip_malformed(
                state,
                datagram,
                f"no IPFIX message at payload byte {at} (version {version}, length {length})",
                len(payload) - at,
                "trailing_bytes",
            )
            return
        message = payload if at == 0 and length == len(payload) else payload[at : at + length]
        if state.begin_datagram(
            datagram,
            VERSION,
            domain,
            sequence,
            export_time * 1_000_000,
            0,
            message=message,
            ordinal=ordinal,
        ):
            if length > len(message):
                # no bytes: its complete sets are still decoded, and a set it cuts is
                # counted with its bytes by the walk (they were counted twice)
                state.skip(
                    TruncatedInput(
                        f"IPFIX message at payload byte {at} has length {length}, "
                        f"{len(message)} bytes left",
                        source=datagram.source,
                        offset=datagram.offset,
                        frame=datagram.frame,
                    ),
                    0,
                )
            records = _walk_sets(state, datagram, message)
            ordinal = state.ordinal
            flows = records - state.options_in_datagram
            state.end_datagram(records, flow_units=flows, inclusive=True)
        at += length
    if 0 < len(payload) - at and any(payload[at:]):
        skip_malformed(
            state,
            datagram,
            f"{len(payload) - at} bytes after the last IPFIX message",
            len(payload) - at,
            "trailing_bytes",
        )


def _walk_sets(state: ExportDecoder, datagram: Datagram, message: bytes) -> int:
    """Walk the sets of one message; the data records it carried that were read (those of
    sets that wait for their template are added when it comes: end_datagram)."""
    at = HEADER.size
    end = len(message)
    records = 0
    while end - at >= 4:
        set_id, length = _set_header(message, at)
        if length < 4:
            if not any(message[at:end]):
                break  # zeros to the end of the message: padding
            reason = "zero_length_set" if length == 0 else "bad_set_length"
            skip_malformed(
                state,
                datagram,
                f"set {set_id} at message byte {at} has length {length}",
                end - at,
                reason,
            )
            break
        set_end = at + length
        if set_end > end:
            state.skip(
                TruncatedInput(
                    f"set {set_id} at message byte {at} has length {length}, {end - at} bytes left",
                    source=datagram.source,
                    offset=datagram.offset,
                    frame=datagram.frame,
                ),
                end - at,
            )
            break
        if set_id >= FIRST_DATA_SET:
            found = state.data_set(set_id, message, at + 4, set_end, f"data set {set_id}")
            records += found or 0  # None: it waits (a review: a held message's count
            # lost the records of its sets read at once, and the next read them lost)
        elif set_id == TEMPLATE_SET:
            read_templates(state, datagram, message, at + 4, set_end, options=False)
        elif set_id == OPTIONS_TEMPLATE_SET:
            read_templates(state, datagram, message, at + 4, set_end, options=True)
        else:
            skip_malformed(
                state,
                datagram,
                f"reserved set id {set_id} at message byte {at}",
                length,
                "reserved_set_id",
            )
        at = set_end
    return records


def read_templates(
    state: TemplateSink,
    datagram: Datagram,
    message: bytes,
    at: int,
    end: int,
    *,
    options: bool,
) -> None:
    header_size = OPTIONS_HEADER.size if options else TEMPLATE_HEADER.size
    kind = "options template" if options else "template"
    body, records = at, 0
    while end - at >= TEMPLATE_HEADER.size:
        template_id, field_count = TEMPLATE_HEADER.struct.unpack_from(message, at)
        if template_id == 0 and field_count == 0:
            break  # padding
        if field_count == 0:
            state.withdraw()  # ids 2 / 3 withdraw all; over UDP ignored either way (RFC 7011 §8.1)
            at += TEMPLATE_HEADER.size
            continue
        if template_id < FIRST_DATA_SET or end - at < header_size:
            skip_malformed(
                state,
                datagram,
                f"{kind} record {template_id} at message byte {at} is invalid",
                end - at,
                "bad_template",
            )
            return
        scope_count = (message[at + 4] << 8 | message[at + 5]) if options else 0
        fields: list[FieldSpec] = []
        position = at + header_size
        for _ in range(field_count):
            if end - position < 4:
                break
            element, length = _field_specifier.unpack_from(message, position)
            position += 4
            enterprise = 0
            if element & ENTERPRISE_BIT:
                if end - position < 4:
                    break
                (enterprise,) = _enterprise.unpack_from(message, position)
                position += 4
                element &= ~ENTERPRISE_BIT
            fields.append(FieldSpec(element, length, enterprise))
        if len(fields) < field_count:
            skip_malformed(
                state,
                datagram,
                f"{kind} {template_id} at message byte {at} promises "
                f"{field_count} fields, its set ends after {len(fields)}",
                end - at,
                "bad_template",
            )
            return
        problem = None if options else field_length_problem(fields)
        if options and not 1 <= scope_count <= field_count:
            # RFC 7011 §3.4.2.2: at least one scope field; the record is rejected, not its set
            skip_malformed(
                state,
                datagram,
                f"options template {template_id} at message byte {at} "
                f"has scope field count {scope_count}",
                position - at,
                "bad_template",
            )
        elif problem is not None:
            skip_malformed(
                state,
                datagram,
                f"template {template_id} at message byte {at}: {problem}",
                position - at,
                "bad_template",
            )
        else:
            state.define_template(
                Template(
                    template_id,
                    tuple(fields),
                    scope_count=scope_count,
                    options=options,
                    version=VERSION,
                )
            )
        at = position
        records += 1
    after_templates(
        state, message, body, at, end, records, f"{kind} set at message byte {body - 4}"
    )
