"""v9/IPFIX templates: their layouts, the compiled record plans that turn many records into
FLOW_SCHEMA columns at once, and the buffer for data that arrives before its template
(which definition a data set reads is scope.py's).

NetFlow v9 (RFC 3954 §5.2-§6) and IPFIX (RFC 7011 §3.4) describe each data record by a
template sent earlier (or later) in the same stream; v5 is modelled here as one built-in
template so that every version shares the column code. The surprising things:

* a template id is only unique per (exporter, observation domain) and transport session
  (the exporter's UDP port: two exporting processes on one address), and a new definition for
  a known id replaces the old one at that point of the capture. scope.TemplateScope keeps
  the current `Template` per (transport, id) of each stream; data already queued keeps a
  reference to the version it was read with, so the layout in force at that point wins
  (RFC 7011 §8.4, RFC 3954 §7);
* data sets whose template has not arrived yet are kept (bounded, see PENDING_LIMIT_BYTES)
  and decoded when it does; whatever is left at the end is counted as `no_template` per
  (exporter, domain, template id), in data sets because records cannot be counted without
  the template that gives their length;
* v9 and IPFIX share field numbers, so one element table serves both; the key also carries
  the export version so a v9 and an IPFIX exporter on one address never share templates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, cast

import numpy as np

from ..addresses import v4_to_mapped
from ..errors import MalformedInput
from ..schema import FLOW_SCHEMA
from ..times import TIME_LIMIT_MS, TIME_LIMIT_US, UNUSABLE_TIME, scaled_time_us
from . import frames
from .information_elements import (
    ADDRESS_ELEMENTS,
    COLUMN_ELEMENTS,
    DURATION_MICROSECONDS,
    DURATION_MILLISECONDS,
    FRAME_SECTION,
    IANA,
    ICMP_ELEMENTS,
    IP_DSCP,
    IP_PRECEDENCE,
    IP_VERSION,
    NETSCALER_PEN,
    OBSERVATION_TIMES,
    POST_COUNTERS,
    SAMPLER_ID_ELEMENTS,
    SAMPLING_INTERVAL_ELEMENTS,
    SAMPLING_PACKET_INTERVAL,
    SAMPLING_PACKET_SPACE,
    SAMPLING_POPULATION,
    SAMPLING_SIZE,
    SELECTOR_ALGORITHM,
    SELECTOR_N_OUT_OF_N,
    SYSTEM_INIT_MILLISECONDS,
    TIME_DELTA_MICROSECONDS,
    TIME_MILLISECONDS,
    TIME_NTP_MICROSECONDS,
    TIME_NTP_NANOSECONDS,
    TIME_SECONDS,
    TIME_UPTIME_MS,
    VARIABLE_LENGTH,
    Element,
)
from .nsel import (
    CONNECTION_ID,
    DELTA_COUNTER_ELEMENTS,
    FIREWALL_EVENT,
    NSEL_COUNTER_ELEMENTS,
)

if TYPE_CHECKING:
    from ..errors import InputError
    from .datagrams import Datagram
    from .exports import HeldMessage

TemplateKey = tuple[str, int, int, int]  # (exporter, domain, export version, template id)
# TemplateKey and the exporter's UDP port: the transport session a template belongs to
SessionTemplateKey = tuple[str, int, int, int, int]
# what an options record scopes a sampling rate to: (SAMPLER, sampler or selector id) or
# (INTERFACE, ifIndex); a table maps them to rates
SamplerKey = tuple[int, int]
SamplerTable = dict[SamplerKey, int]
INTERFACE, SAMPLER = 0, 1  # in the order _scoped_sampling applies them: a sampler id wins
INGRESS_INTERFACE: Element = (IANA, 10)
V9_SCOPE_INTERFACE = 2  # RFC 3954 §6.1 scope field types: 1 System, 2 Interface, ...

NTP_UNIX_OFFSET_S = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
PENDING_LIMIT_BYTES = 64 * 1024 * 1024  # data held back waiting for templates, whole run
UPTIME_WRAP_MS = 1 << 32
# Uptime times (IE 22/21: against IPFIX's 160 or the v5/v9 header's sysUptime) may wrap:
# pick the 2^32 multiple that puts the time at most this far after the export time (a flow
# cannot end after it is exported; a day of slack absorbs exporter clock jitter without
# ever choosing the wrong lap).
UPTIME_SLACK_MS = 86_400_000

_TIME_KINDS: tuple[tuple[str, tuple[Element, Element]], ...] = (
    ("ms", TIME_MILLISECONDS),
    ("ntp_us", TIME_NTP_MICROSECONDS),
    ("ntp_ns", TIME_NTP_NANOSECONDS),
    ("sec", TIME_SECONDS),
    ("delta_us", TIME_DELTA_MICROSECONDS),
    ("uptime", TIME_UPTIME_MS),
)


class FieldSpec(NamedTuple):
    """One field specifier of a template: element id, length in bytes, enterprise (0 = IANA)."""

    element: int
    length: int
    enterprise: int = IANA


class RecordMeta(NamedTuple):
    """Per-record context from the datagram header and exporter state, as numpy arrays."""

    export_us: np.ndarray  # int64: header export time
    uptime_ms: np.ndarray  # int64: v5/v9 header sysUptime
    sysinit_ms: np.ndarray  # int64: IPFIX systemInitTimeMilliseconds in force, -1 unknown
    sampling_rate: np.ndarray  # uint32: 1-in-N in force
    sampler_table: np.ndarray  # int64: index in sampler_tables of the scoped rates in force
    sampler_tables: Sequence[SamplerTable]


# the largest value each number column holds: a field wider than that (a port in 4 bytes,
# a protocol in 2) can carry what the column cannot, and casting it kept the low bytes
# (protocol 262 read as 6, TCP)
_COLUMN_MAX: dict[str, int] = {
    field.name: (1 << field.type.bit_width) - 1
    for field in FLOW_SCHEMA
    if field.name in COLUMN_ELEMENTS and field.type.bit_width < 64
}


class RecordPlan:
    """How to read FLOW_SCHEMA columns out of fixed-size records: built once per template.

    `dtype` is a structured numpy dtype holding only the fields some column needs, at their
    offsets inside an `itemsize`-byte record, so a whole set (or many sets) of records is
    read by one gather and then column by column.
    """

    def __init__(
        self, fields: Sequence[FieldSpec], version: int, *, frame_prefixed: bool = False
    ) -> None:
        """`frame_prefixed`: the template's dataLinkFrameSection is variable-length, and
        `fixed_part` gives it as a 2-byte length and FRAME_BYTES bytes (see frames.py)."""
        self.version = version
        self.itemsize = max(sum(f.length for f in fields), 1)  # >= 1: see Template.fixed_part
        # An element a template repeats is read from its last field. RFC 7011 §8 lists
        # repeats in the order the metering process met them: Cisco's SRv6/MPLS tunnel
        # templates give the outer header's addresses, ports and protocol, then the inner
        # packet's, and the conversation is the inner one (nfdump and pmacct read the last
        # too; the first made IP-in-IP records of a UDP flow's addresses).
        where: dict[Element, tuple[str, int]] = {}
        placed: dict[str, int] = {}  # field name -> its offset in the record
        # the header of a sampled packet, read when the template has no flow fields
        self.frame: tuple[str, int, bool] | None = None  # (name, bytes read, prefixed)
        offset = 0
        for index, spec in enumerate(fields):
            element = (spec.enterprise, spec.element)
            if 1 <= spec.length <= 16:
                where[element] = (f"f{index}", spec.length)
                placed[f"f{index}"] = offset
            if element == FRAME_SECTION and spec.length:
                width = spec.length if frame_prefixed else min(spec.length, frames.FRAME_BYTES)
                self.frame = (f"s{index}", width, frame_prefixed)
                placed[f"s{index}"] = offset
            offset += spec.length
        names = [name for name, _ in where.values()]
        formats = [
            np.dtype(f">u{length}") if length in (1, 2, 4, 8) else np.dtype(("u1", (length,)))
            for _, length in where.values()
        ]
        if self.frame is not None:
            names.append(self.frame[0])
            formats.append(np.dtype(("u1", (self.frame[1],))))
        self.dtype = np.dtype(
            {
                "names": names,
                "formats": formats,
                "offsets": [placed[name] for name in names],
                "itemsize": max(offset, 1),
            }
        )
        self.where = where
        # the columns whose field here is wider than the column (RFC 7011 §6.2 allows only
        # shorter ones): their values are checked per record
        read_from = {
            column: next((e for e in choices if self._number(e)), None)
            for column, choices in COLUMN_ELEMENTS.items()
            if column in _COLUMN_MAX
        }
        self.too_wide = tuple(
            column
            for column, element in read_from.items()
            if element is not None and where[element][1] * 8 > _COLUMN_MAX[column].bit_length()
        )
        used: set[Element] = set()
        for choices in COLUMN_ELEMENTS.values():
            used.update(choices)
        for v4, v6 in ADDRESS_ELEMENTS.values():
            used.update(v4)
            used.update(v6)
        self.enterprise_skipped = sum(
            1 for f in fields if f.enterprise != IANA and (f.enterprise, f.element) not in used
        )
        self.has_ipv4 = (IANA, 8) in where or (IANA, 12) in where
        self.has_ipv6 = (IANA, 27) in where or (IANA, 28) in where
        # records of a template with no IP address, nor a sampled packet's header to read
        # them from, are no IP flow (an application table, interface names): they became
        # rows of :: to ::, protocol 0, at their export time (an audit)
        self.carries_flows = self.has_ipv4 or self.has_ipv6 or self.frame is not None
        # which family's addresses come last (field index): a tunnel's inner packet
        listed = {element: int(name[1:]) for element, (name, _) in where.items()}
        self.ipv6_listed_last = max(listed.get((IANA, e), -1) for e in (27, 28)) > max(
            listed.get((IANA, e), -1) for e in (8, 12)
        )
        # NetScaler writes microseconds, not 1/2**32 s, in its NTP fractions: every one of
        # its records' fractions is below 10**6 (a chance of 1 in 4,300 each for a real
        # fraction), so its times were up to a second early (as tshark reads them)
        self.decimal_fraction = any(f.enterprise == NETSCALER_PEN for f in fields)
        self.start_time = self._time_source(0)
        self.end_time = self._time_source(1)
        self.observation_time = next(
            ((kind, element) for kind, element in OBSERVATION_TIMES if element in self.where), None
        )
        # Cisco ASA/FTD NSEL semantics (nsel.py): an event and a connection id, the ASA's
        # event time, and counters in its initiator/responder elements. Palo Alto sends 148
        # and 233 too, but octetDeltaCount and no event time: its counters are deltas
        # (an event or connection id wider than 8 bytes reads as no number: all records of
        # the template would have shared connection 0, found by fuzzing)
        self.nsel = (
            self._number(FIREWALL_EVENT)
            and self._number(CONNECTION_ID)
            and self.observation_time is not None
            and any(element in self.where for element in NSEL_COUNTER_ELEMENTS)
            and not any(element in self.where for element in DELTA_COUNTER_ELEMENTS)
        )

    def _number(self, element: Element) -> bool:
        """Whether the template carries `element` in a width `unsigned` reads (1-8 bytes)."""
        found = self.where.get(element)
        return found is not None and found[1] <= 8

    def _time_source(self, side: int) -> tuple[str, Element] | None:
        for kind, pair in _TIME_KINDS:
            if pair[side] in self.where:
                return kind, pair[side]
        return None

    def unsigned(self, rows: np.ndarray, element: Element) -> np.ndarray | None:
        """The element as uint64 per record (any width 1-8, RFC 7011 §6.2), or None."""
        found = self.where.get(element)
        if found is None or found[1] > 8:
            return None
        name, width = found
        values = rows[name]
        if width in (1, 2, 4, 8):
            return values.astype(np.uint64)
        out = np.zeros(len(rows), dtype=np.uint64)
        for i in range(width):
            out = (out << np.uint64(8)) | values[:, i].astype(np.uint64)
        return out

    def first_unsigned(self, rows: np.ndarray, choices: Sequence[Element]) -> np.ndarray | None:
        for element in choices:
            values = self.unsigned(rows, element)
            if values is not None:
                return values
        return None

    def _addresses(
        self, rows: np.ndarray, choices: Sequence[Element], width: int
    ) -> np.ndarray | None:
        """(n, 16) uint8 addresses (IPv4 mapped) of the first of `choices` the template
        carries at `width` bytes, or None."""
        for element in choices:
            found = self.where.get(element)
            if found is not None and found[1] == width:
                values = rows[found[0]]
                return (
                    v4_to_mapped(values.astype(np.uint32))
                    if width == 4
                    else np.ascontiguousarray(values)
                )
        return None

    def _ipv6_rows(
        self, rows: np.ndarray, families: dict[str, tuple[np.ndarray | None, np.ndarray | None]]
    ) -> np.ndarray | None:
        """bool per record: its addresses are the IPv6 fields, in a template that carries
        both IPv4 and IPv6 addresses (nProbe's dual-stack templates: an IPv6 flow leaves the
        IPv4 fields zero, and ipVersion, when present, says which). A record with both
        filled is a tunnel's (Cisco's 4-in-6 SRv6 templates): its inner packet is the family
        the template lists last, as a repeated element is read from its last field.
        None: one family only.
        `families`: each address column's (IPv4, IPv6) arrays, read once by columns()."""
        if not (self.has_ipv4 and self.has_ipv6):
            return None
        blank_v4 = np.ones(len(rows), dtype=bool)
        some_v6 = np.zeros(len(rows), dtype=bool)
        for column in ("src_addr", "dst_addr"):
            v4, v6 = families[column]
            if v4 is not None:
                blank_v4 &= ~v4[:, 12:].any(axis=1)
            if v6 is not None:
                some_v6 |= v6.any(axis=1)
        filled_v6 = some_v6 & (blank_v4 | self.ipv6_listed_last)
        version = self.unsigned(rows, IP_VERSION)
        if version is None:
            return filled_v6
        # ipVersion decides where it says 4 or 6; an exporter that leaves it 0 does not
        return np.where((version == 4) | (version == 6), version == 6, filled_v6)

    def columns(self, rows: np.ndarray, meta: RecordMeta) -> dict[str, np.ndarray]:
        """FLOW_SCHEMA columns (numbers and addresses) for `rows`, a structured array."""
        n = len(rows)
        out: dict[str, np.ndarray] = {}
        for column, choices in COLUMN_ELEMENTS.items():
            values = self.first_unsigned(rows, choices)
            if values is not None:
                out[column] = values
        if self.too_wide:
            over = np.zeros(n, dtype=bool)
            for column in self.too_wide:
                beyond = out[column] > np.uint64(_COLUMN_MAX[column])
                out[column] = np.where(beyond, np.uint64(0), out[column])
                over |= beyond
            if over.any():
                out["_too_wide"] = over.astype(np.uint64)  # said by the exports reader
        if "tos" not in out:
            out_tos = self._tos_from_dscp(rows)
            if out_tos is not None:
                out["tos"] = out_tos
        for column, element in POST_COUNTERS.items():
            target = f"reverse_{column}" if self.version == 9 else column
            if target not in out and (values := self.unsigned(rows, element)) is not None:
                out[target] = values
        families = {
            column: (self._addresses(rows, v4_choices, 4), self._addresses(rows, v6_choices, 16))
            for column, (v4_choices, v6_choices) in ADDRESS_ELEMENTS.items()
        }
        ipv6 = self._ipv6_rows(rows, families)
        for column, (v4, v6) in families.items():
            if v4 is not None and v6 is not None and ipv6 is not None:
                out[column] = np.where(ipv6[:, None], v6, v4)  # per record, its family
            elif v4 is not None or v6 is not None:
                out[column] = v4 if v4 is not None else cast(np.ndarray, v6)
        if ipv6 is not None:
            out["ip_version"] = np.where(ipv6, 6, 4).astype(np.uint8)
        elif self.has_ipv4:
            out["ip_version"] = np.full(n, 4, dtype=np.uint8)
        elif self.has_ipv6:
            out["ip_version"] = np.full(n, 6, dtype=np.uint8)
        elif (version := self.unsigned(rows, IP_VERSION)) is not None:
            out["ip_version"] = version.astype(np.uint8)
        if self.frame is not None and not (self.has_ipv4 or self.has_ipv6):
            self._frame_columns(rows, out)
        self._icmp(rows, out, n)
        first_us, last_us, placed = self._times(rows, meta)
        out["first_seen"] = first_us
        out["last_seen"] = last_us
        if placed is not None and placed.any():
            out["_export_time"] = placed.astype(np.uint64)  # said by the exports reader
        out["sampling_rate"] = self._sampling(rows, meta)
        out["export_version"] = np.full(n, self.version, dtype=np.uint8)
        if self.nsel:
            # Cisco NSEL: the exports reader settles teardown totals against updates (nsel.py)
            # (both elements are there, in a width `unsigned` reads: self.nsel says so)
            out["_nsel_event"] = cast(np.ndarray, self.unsigned(rows, FIREWALL_EVENT))
            out["_nsel_connection"] = cast(np.ndarray, self.unsigned(rows, CONNECTION_ID))
        return out

    def _frame_columns(self, rows: np.ndarray, out: dict[str, np.ndarray]) -> None:
        """A record of a sampled packet's header and no flow fields (frames.py): its
        addresses, protocol, ports, ToS and flags from that header, where the template
        gives none of its own, one packet of the header's IP length."""
        assert self.frame is not None
        name, width, prefixed = self.frame
        sections = rows[name]
        if prefixed:
            lengths = sections[:, 0].astype(np.int64) << 8 | sections[:, 1]
            sections = sections[:, 2:]
        else:
            lengths = np.full(len(rows), width, dtype=np.int64)
        src, dst, read = frames.read_frames(sections, lengths)
        found = read[:, frames.OK] == 1
        out["_frame"] = np.where(found, 1, 2).astype(np.uint64)  # said by the exports reader
        if "packets" not in out:  # each record is one sampled packet, read or not
            out["packets"] = np.ones(len(rows), dtype=np.uint64)
        if not found.any():
            return
        out["src_addr"], out["dst_addr"] = src, dst
        # a record whose section could not be read keeps what its template gave (found by
        # fuzzing: its ip_version followed the other records of its batch)
        version = out.get("ip_version", np.zeros(len(rows), dtype=np.uint8))
        out["ip_version"] = np.where(found, read[:, frames.VERSION], version).astype(np.uint8)
        for column, index in (
            ("protocol", frames.PROTOCOL),
            ("src_port", frames.SRC_PORT),
            ("dst_port", frames.DST_PORT),
            ("tos", frames.TOS),
            ("tcp_flags", frames.TCP_FLAGS),
        ):
            if column not in out:
                out[column] = read[:, index].astype(np.uint64)
        if "octets" not in out:
            out["octets"] = read[:, frames.IP_LENGTH].astype(np.uint64)

    def _tos_from_dscp(self, rows: np.ndarray) -> np.ndarray | None:
        """The ToS / traffic-class byte from ipDiffServCodePoint (195) or ipPrecedence (196)
        when the template has no ipClassOfService (Cisco's IPv6 templates send the DSCP
        alone: every IPv6 record read ToS 0 where the IPv4 records of the same traffic read
        192). RFC 7012: the DSCP is the byte's upper six bits, the precedence its upper
        three; a value too wide for its field is taken as the byte itself."""
        for element, bits in ((IP_DSCP, 6), (IP_PRECEDENCE, 3)):
            value = self.unsigned(rows, element)
            if value is not None:
                return np.where(
                    value < np.uint64(1 << bits),
                    value << np.uint64(8 - bits),
                    value & np.uint64(0xFF),
                )
        return None

    def _sampling(self, rows: np.ndarray, meta: RecordMeta) -> np.ndarray:
        """The rate of each record: its own samplingInterval (34), samplerRandomInterval (50),
        samplingPacketInterval/Space (305/306) or samplingSize/Population (309/310, which
        its selectorAlgorithm 3 prefers) when the template carries one (a v9
        template with SAMPLING_INTERVAL in every record, which options never repeat); else
        the rate its exporter's options gave the sampler or selector id it names (48, 302),
        or its ingress interface (Cisco's flow-samplers, one per interface or class); else
        the exporter's last rate from its options."""
        default = self._scoped_sampling(rows, meta)
        rate = None
        for element in SAMPLING_INTERVAL_ELEMENTS:
            rate = self.unsigned(rows, element)
            if rate is not None:
                break
        if rate is None:
            taken = self.unsigned(rows, SAMPLING_PACKET_INTERVAL)
            size = self.unsigned(rows, SAMPLING_SIZE)
            population = self.unsigned(rows, SAMPLING_POPULATION)
            psamp = None
            if size is not None and population is not None:  # random n-out-of-N: N / n
                psamp = np.where(size > 0, population // np.maximum(size, np.uint64(1)), 0)
            if taken is None and psamp is None:
                return default
            if taken is not None:
                space = self.unsigned(rows, SAMPLING_PACKET_SPACE)
                if space is None:
                    space = np.zeros(len(rows), dtype=np.uint64)
                rate = np.where(taken > 0, (taken + space) // np.maximum(taken, np.uint64(1)), 0)
                # a record's selectorAlgorithm says which it means, as an options record's
                algorithm = self.unsigned(rows, SELECTOR_ALGORITHM)
                if psamp is not None and algorithm is not None:
                    rate = np.where(algorithm == SELECTOR_N_OUT_OF_N, psamp, rate)
            else:
                rate = cast(np.ndarray, psamp)  # taken is None here: psamp is not
        usable = (rate > 0) & (rate <= np.uint64(0xFFFF_FFFF))  # 0 or past 32 bits: unknown
        return np.where(usable, rate, default).astype(meta.sampling_rate.dtype)

    def _scoped_sampling(self, rows: np.ndarray, meta: RecordMeta) -> np.ndarray:
        rate = meta.sampling_rate
        if not meta.sampler_table.any():
            return rate  # no scoped rate declared: the common case
        tables = np.unique(meta.sampler_table)
        scoped = {
            INTERFACE: self.unsigned(rows, INGRESS_INTERFACE),
            SAMPLER: self.first_unsigned(rows, SAMPLER_ID_ELEMENTS),
        }
        rate = rate.copy()
        for index in tables[tables > 0].tolist():
            in_table = meta.sampler_table == index
            for (kind, scope), value in sorted(meta.sampler_tables[index].items()):
                # interfaces first, then sampler ids, which override them
                named = scoped[kind]
                if named is not None:
                    rate[in_table & (named == np.uint64(scope))] = value
        return rate

    def _icmp_type_code(self, rows: np.ndarray, family: int, n: int) -> np.ndarray | None:
        combined, (type_element, code_element) = ICMP_ELEMENTS[family]
        type_code = self.unsigned(rows, combined)
        if type_code is not None:
            return type_code
        icmp_type = self.unsigned(rows, type_element)
        if icmp_type is None:
            return None
        icmp_code = self.unsigned(rows, code_element)
        code = icmp_code if icmp_code is not None else np.zeros(n, np.uint64)
        return (icmp_type << np.uint64(8)) | code

    def _icmp(self, rows: np.ndarray, out: dict[str, np.ndarray], n: int) -> None:
        """ICMP type/code into dst_port, src_port 0 (FLOW_SCHEMA convention, as nfdump).
        Each protocol's own elements first (ICMPv6's in a template that carries ICMP's too
        read as 0 before), the other's if the template has only those."""
        protocol = out.get("protocol")
        if protocol is None:
            return
        icmp = (protocol == 1) | (protocol == 58)
        if not icmp.any():
            return
        v4 = self._icmp_type_code(rows, 1, n)
        v6 = self._icmp_type_code(rows, 58, n)
        if v4 is None or v6 is None:
            type_code = v4 if v4 is not None else v6
        else:
            type_code = np.where(protocol == 58, v6, v4)
        src = out.get("src_port", np.zeros(n, dtype=np.uint64))
        dst = out.get("dst_port", np.zeros(n, dtype=np.uint64))
        if type_code is None:
            # Cisco's PFC3B/PFC3BXL NDE puts the ICMP "code and type", code first, in the
            # source port; nfdump swaps its bytes into type << 8 | code, and so do we (moved
            # as it stood, an echo request, 0x0008, read as an echo reply of code 8, and
            # the pinged host became the ping's client: an audit)
            swapped = (src & np.uint64(0xFF)) << np.uint64(8) | (src >> np.uint64(8))
            type_code = np.where(dst == 0, swapped, dst)
        out["dst_port"] = np.where(icmp, type_code, dst)
        out["src_port"] = np.where(icmp, 0, src)

    def _times(
        self, rows: np.ndarray, meta: RecordMeta
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(first_seen, last_seen, the records given their export time for want of a time
        of their own, or None when none is)."""
        guessed: list[np.ndarray] = []
        start = self._time(rows, meta, self.start_time, guessed)
        end = self._time(rows, meta, self.end_time, guessed)
        # flowDurationMilliseconds, else flowDurationMicroseconds (it was not read: a start
        # and a duration in µs gave a record of no length, without a word; an audit)
        duration, per_unit = self.unsigned(rows, DURATION_MILLISECONDS), 1000
        if duration is None:
            duration, per_unit = self.unsigned(rows, DURATION_MICROSECONDS), 1
        if duration is not None:
            duration_us = scaled_time_us(duration, per_unit)
            unusable = duration_us == UNUSABLE_TIME
            if start is not None:
                start = np.where(unusable, UNUSABLE_TIME, start)
            if end is not None:
                end = np.where(unusable, UNUSABLE_TIME, end)
            duration_us = np.where(unusable, 0, duration_us)
            if end is None and start is not None:
                end = start + duration_us
            elif start is None and end is not None:
                start = end - duration_us
        if end is None or start is None:
            # RFC 5477's observation time, where a flow time and a duration give none: Cisco
            # NSEL's NF_F_EVENT_TIME_MSEC (323) ends a teardown whose start is its create
            # time (152), and places an event of no flow time; never a start before a known
            # end (it is the event's time, at or after the flow's)
            observed = self._time(rows, meta, self.observation_time)
            if start is None and end is None:
                if observed is None:  # no time at all in the template
                    return meta.export_us, meta.export_us, np.ones(len(rows), dtype=bool)
                return observed, observed, None
            if end is None:
                end = observed if observed is not None else start
        if start is None:
            start = end
        assert start is not None and end is not None
        return start, end, np.logical_or.reduce(guessed) if guessed else None

    def _timeval(self, rows: np.ndarray, element: Element) -> np.ndarray:
        """flowStart/EndMicroseconds in 16 bytes, as pmacct's nfprobe_tstamp_usec writes them:
        a struct timeval, Unix seconds and microseconds, each a big-endian uint64 (RFC 7011
        gives the element 8 bytes, NTP format; read as none, every record took its export
        time, up to a timeout after the flow). Microseconds of a million or more, or seconds
        past the µs range, are damage."""
        pairs = np.ascontiguousarray(rows[self.where[element][0]], dtype=np.uint8).view(">u8")
        seconds, micros = pairs[:, 0].astype(np.uint64), pairs[:, 1].astype(np.uint64)
        usable = (micros < np.uint64(1_000_000)) & (
            seconds <= np.uint64(TIME_LIMIT_US // 1_000_000)
        )
        at = np.where(usable, seconds, 0).astype(np.int64) * 1_000_000 + np.where(
            usable, micros, 0
        ).astype(np.int64)
        return np.where(usable, at, UNUSABLE_TIME)

    def _time(
        self,
        rows: np.ndarray,
        meta: RecordMeta,
        source: tuple[str, Element] | None,
        guessed: list[np.ndarray] | None = None,
    ) -> np.ndarray | None:
        """`source`'s times in µs; records whose time only the export time could give (an
        IPFIX uptime with no systemInitTime known) are added to `guessed`."""
        if source is None:
            return None
        kind, element = source
        if kind == "ntp_us" and self.where[element][1] == 16:
            return self._timeval(rows, element)
        element_values = self.unsigned(rows, element)
        if element_values is None:
            return None
        values = element_values.astype(np.int64)
        if kind == "ms":
            return scaled_time_us(element_values, 1000)
        if kind == "sec":
            return scaled_time_us(element_values, 1_000_000)
        if kind in ("ntp_us", "ntp_ns"):
            raw = element_values
            if kind == "ntp_us":
                # RFC 7011 §6.1.9: the low 11 fraction bits of dateTimeMicroseconds are ignored
                raw = raw & np.uint64(0xFFFF_FFFF_FFFF_F800)
            seconds = (raw >> np.uint64(32)).astype(np.int64) - NTP_UNIX_OFFSET_S
            fraction = raw & np.uint64(0xFFFF_FFFF)
            # to the nearest µs (ns), not down: an exporter writes floor(µs * 2**32 / 10**6),
            # below the µs it means by up to 1/4295 µs (and by the masked bits' < 0.48 µs),
            # and floored, every time read 1 µs early (softflowd -A micro/nano, -v psamp)
            per_second = 1_000_000 if kind == "ntp_us" else 1_000_000_000
            micros = (
                (fraction * np.uint64(per_second) + np.uint64(1 << 31)) >> np.uint64(32)
            ).astype(np.int64) // (per_second // 1_000_000)
            if kind == "ntp_us" and self.decimal_fraction:
                count = element_values & np.uint64(0xFFFF_FFFF)  # unmasked
                micros = np.where(count < np.uint64(1_000_000), count.astype(np.int64), micros)
            # NTP era 1 starts in 2036: trust the export time to say which era is meant
            export_s = meta.export_us // 1_000_000
            seconds = np.where(seconds < export_s - (1 << 31), seconds + (1 << 32), seconds)
            return seconds * 1_000_000 + micros
        if kind == "delta_us":
            return np.where(
                element_values <= np.uint64(TIME_LIMIT_US), meta.export_us - values, UNUSABLE_TIME
            )
        # uptime-relative (IE 22/21)
        if self.version in (1, 5, 7, 9):
            # the age from the header's sysUptime, modulo the 49.7-day wrap, in the window
            # IPFIX's laps use: from UPTIME_SLACK_MS after the export (a Last a few ms
            # past sysUptime, Cisco CSCei12353) back to 48.7 days before it. Read as a
            # signed 32-bit age, a flow 24.8 to 48.7 days old came out weeks after its own
            # export, and older ones, which 32 bits cannot date, up to 24.8 days after it:
            # softflowd -r flushing a capture of three years put its first flows there, and
            # the watermark made every record after them late
            age: np.ndarray = (meta.uptime_ms - values) & 0xFFFF_FFFF
            return _uptime_lap(meta.export_us - age * 1000, meta.export_us)
        sysinit = self.unsigned(rows, SYSTEM_INIT_MILLISECONDS)
        if sysinit is None:
            sysinit_ms = meta.sysinit_ms
            known = sysinit_ms >= 0
            unusable = np.zeros(len(values), dtype=bool)
        else:
            # a boot time in the record past the µs range is damage, not "no boot time"
            unusable = (sysinit > np.uint64(TIME_LIMIT_MS)) | (
                element_values > np.uint64(TIME_LIMIT_MS)
            )
            sysinit_ms = np.where(unusable, 0, sysinit.astype(np.int64))
            known = np.ones(len(values), dtype=bool)
        at_us = _uptime_lap((sysinit_ms + np.where(unusable, 0, values)) * 1000, meta.export_us)
        if guessed is not None and not known.all():
            guessed.append(~known)
        return np.where(unusable, UNUSABLE_TIME, np.where(known, at_us, meta.export_us))


def _uptime_lap(at_us: np.ndarray, export_us: np.ndarray) -> np.ndarray:
    """`at_us` moved by whole 32-bit uptime wraps into the window a flow of this export can
    lie in: at most UPTIME_SLACK_MS after the export, less than one wrap before that. One
    window for v5/v9 (ages from the header's sysUptime) and IPFIX (boot time plus uptime)."""
    wrap_us = UPTIME_WRAP_MS * 1000
    laps = np.floor_divide(export_us + UPTIME_SLACK_MS * 1000 - at_us, wrap_us)
    return cast(np.ndarray, at_us + laps * wrap_us)


class Template:
    """One received template or options template (a version of its key)."""

    __slots__ = (
        "_plan",
        "fields",
        "fixed_length",
        "min_length",
        "options",
        "rates_itself",
        "scope_count",
        "template_id",
        "version",
    )

    def __init__(
        self,
        template_id: int,
        fields: tuple[FieldSpec, ...],
        *,
        scope_count: int = 0,
        options: bool = False,
        version: int = 9,
    ) -> None:
        self.template_id = template_id
        self.fields = fields
        self.scope_count = scope_count
        self.options = options
        self.version = version
        variable = any(f.length == VARIABLE_LENGTH for f in fields)
        fixed = sum(f.length for f in fields if f.length != VARIABLE_LENGTH)
        self.fixed_length: int | None = None if variable else fixed
        # a variable-length field takes at least its 1-byte length prefix
        self.min_length = fixed + sum(1 for f in fields if f.length == VARIABLE_LENGTH)
        self._plan: RecordPlan | None = None
        # records that carry their own sampling rate (RecordPlan._sampling) need no declared
        # one (ExporterStats.records_before_sampling): a rate RecordPlan.unsigned reads, in
        # 1 to 8 bytes (9 to 16 were taken for one, and the records went uncounted)
        read = {(f.enterprise, f.element) for f in fields if 1 <= f.length <= 8}
        self.rates_itself = (
            any(element in read for element in SAMPLING_INTERVAL_ELEMENTS)
            or SAMPLING_PACKET_INTERVAL in read
            or (SAMPLING_SIZE in read and SAMPLING_POPULATION in read)
        )

    def same_layout(self, other: Template) -> bool:
        return (self.fields, self.scope_count, self.options) == (
            other.fields,
            other.scope_count,
            other.options,
        )

    @property
    def plan(self) -> RecordPlan:
        """Plan over the fixed-size fields (variable ones are cut out by `fixed_part`)."""
        if self._plan is None:
            # a variable-length frame section is kept as a 2-byte length and FRAME_BYTES
            # bytes (fixed_part), the rest of the variable fields cut out
            sections = [f for f in self.fields if (f.enterprise, f.element) == FRAME_SECTION]
            # the plan reads the last section (a repeated element's last field): whether
            # that one is prefixed (found by fuzzing: a variable section, then a fixed one)
            prefixed = bool(sections) and sections[-1].length == VARIABLE_LENGTH
            fields = [
                FieldSpec(f.element, 2 + frames.FRAME_BYTES, f.enterprise)
                if f.length == VARIABLE_LENGTH and (f.enterprise, f.element) == FRAME_SECTION
                else f
                for f in self.fields
                if f.length != VARIABLE_LENGTH or (f.enterprise, f.element) == FRAME_SECTION
            ]
            self._plan = RecordPlan(fields, self.version, frame_prefixed=prefixed)
            # the variable-length enterprise fields cut out are skipped too (an audit: a
            # template's three fields of one vendor counted two, its fixed ones)
            self._plan.enterprise_skipped += sum(
                1 for f in self.fields if f.length == VARIABLE_LENGTH and f.enterprise != IANA
            )
        return self._plan

    def field_spans(self, buf: bytes, at: int, end: int) -> tuple[list[tuple[int, int]], int]:
        """(offset, length) of every field of the record at `at`, and where the next starts.

        Raises ValueError when a variable-length field runs past `end` (RFC 7011 §9.1).
        """
        spans: list[tuple[int, int]] = []
        for spec in self.fields:
            length = spec.length
            if length == VARIABLE_LENGTH:
                if at >= end:
                    raise ValueError("variable-length prefix past the end of the set")
                length = buf[at]
                at += 1
                if length == 255:
                    if at + 2 > end:
                        raise ValueError("3-byte variable-length prefix past the end of the set")
                    length = int.from_bytes(buf[at : at + 2], "big")
                    at += 2
            if at + length > end:
                raise ValueError(f"field of {length} bytes runs past the end of the set")
            spans.append((at, length))
            at += length
        return spans, at

    def fixed_part(self, buf: bytes, spans: list[tuple[int, int]]) -> bytes:
        """The record without its variable-length fields: the bytes `plan` reads."""
        parts = []
        for (offset, length), spec in zip(spans, self.fields, strict=True):
            if spec.length != VARIABLE_LENGTH:
                parts.append(buf[offset : offset + length])
            elif (spec.enterprise, spec.element) == FRAME_SECTION:
                kept = min(length, frames.FRAME_BYTES)
                parts.append(
                    kept.to_bytes(2, "big")
                    + buf[offset : offset + kept].ljust(frames.FRAME_BYTES, b"\0")
                )
        return b"".join(parts) or b"\0"  # a record of only variable fields still takes one plan row

    def sampler_scope(self, buf: bytes, spans: list[tuple[int, int]]) -> SamplerKey | None:
        """What this options record's sampling rate applies to: the sampler or selector id
        it names (v9 FLOW_SAMPLER_ID 48 among its options, IPFIX selectorId 302 in its
        scope), else the interface it is scoped to (v9 scope type Interface, IPFIX
        ingressInterface as a scope field); None: the whole exporter."""
        interface = None
        for index, ((offset, length), spec) in enumerate(zip(spans, self.fields, strict=True)):
            if not 1 <= length <= 8:
                continue
            value = int.from_bytes(buf[offset : offset + length], "big")
            element = (spec.enterprise, spec.element)
            in_scope = index < self.scope_count
            if element in SAMPLER_ID_ELEMENTS and not (in_scope and self.version == 9):
                return SAMPLER, value
            if (
                in_scope
                and interface is None
                and (
                    (self.version == 9 and spec.element == V9_SCOPE_INTERFACE)
                    or (self.version != 9 and element == INGRESS_INTERFACE)
                )
            ):
                interface = value
        return None if interface is None else (INTERFACE, interface)

    def values(self, buf: bytes, spans: list[tuple[int, int]]) -> dict[Element, int]:
        """Integer values (width 1-8) of one record by element: for options records."""
        out: dict[Element, int] = {}
        for index, ((offset, length), spec) in enumerate(zip(spans, self.fields, strict=True)):
            if index < self.scope_count and self.version == 9:
                continue  # v9 scope types (RFC 3954 §6.1: System, Interface...) are no elements
            element = (spec.enterprise, spec.element)
            if 1 <= length <= 8 and element not in out:
                out[element] = int.from_bytes(buf[offset : offset + length], "big")
        return out


# what a field of these elements must measure: an address cannot be shortened, and the
# counters, ports and codes this reader takes are unsigned integers of 1..8 bytes (RFC 7011
# §6.2 reduced-size encoding); other lengths leave the column empty without a word
_ADDRESS_LENGTH: dict[Element, int] = {
    **{element: 4 for v4, _ in ADDRESS_ELEMENTS.values() for element in v4},
    **{element: 16 for _, v6 in ADDRESS_ELEMENTS.values() for element in v6},
}
_NUMBER_ELEMENTS: frozenset[Element] = frozenset(
    element for choices in COLUMN_ELEMENTS.values() for element in choices
) | frozenset(POST_COUNTERS.values())


# what a field of an absolute time must measure (RFC 7011 §6.1.7-6.1.10: dateTimeSeconds
# is 4 octets, the others 8; reduced-size encoding is for numbers only, §6.2); seconds in 8
# bytes are still seconds, and pmacct writes dateTimeMicroseconds as a 16-byte timeval.
# Other lengths were read as a number (IE 152 in 4 bytes: every flow started in January
# 1970) or, past 8 bytes, not at all (the record's start taken from its end: every duration
# 0), without a word (a fuzzing run).
_TIME_LENGTHS: dict[Element, tuple[int, ...]] = {
    **{element: (4, 8) for element in TIME_SECONDS},
    **{element: (8,) for element in TIME_MILLISECONDS + TIME_NTP_NANOSECONDS},
    **{element: (8, 16) for element in TIME_NTP_MICROSECONDS},
    **{
        element: {"sec": (4, 8), "ntp_us": (8, 16)}.get(kind, (8,))
        for kind, element in OBSERVATION_TIMES
    },
}
# (systemInitTimeMilliseconds, IE 160, is not among them: in 4 bytes it still times the
# uptimes, whose 2**32 ms lap the export time picks; a review)


def field_length_problem(fields: Sequence[FieldSpec]) -> str | None:
    """What is wrong with a template whose field gives an address, a time or a number this
    reader decodes a length it cannot have (a damaged template), else None."""
    for index, spec in enumerate(fields, 1):
        element = (spec.enterprise, spec.element)
        wanted = _ADDRESS_LENGTH.get(element)
        if wanted is not None and spec.length != wanted:
            return (
                f"field {index} (element {spec.element}, an address) has length "
                f"{spec.length}, not {wanted}"
            )
        lengths = _TIME_LENGTHS.get(element)
        if lengths is not None and spec.length not in lengths:
            return (
                f"field {index} (element {spec.element}, a time) has length "
                f"{spec.length}, not {' or '.join(map(str, lengths))}"
            )
        if element in _NUMBER_ELEMENTS and not 1 <= spec.length <= 8:
            return (
                f"field {index} (element {spec.element}, an unsigned number) has length "
                f"{spec.length}"
            )
    return None


class Leftover(NamedTuple):
    """Bytes after a set's last whole record that are not zero padding."""

    text: str
    nbytes: int
    # They are exactly what rounds the set up to 4 bytes: the exporter's alignment padding
    # (RFC 3954 §5.3, RFC 7011 §3.3.1), which it did not zero. Mikrotik's IPFIX and nProbe's
    # v9 do so; no record is lost, so it is said but does not stop --strict.
    padding: bool


def padding_problem(
    buf: bytes, body: int, at: int, end: int, records: int, record_size: int | None = None
) -> Leftover | None:
    """What is wrong with the bytes [at, end) left after the last whole record of the set
    whose records start at `body` (after its 4-byte header), or None when they are padding
    (none, or all zero: RFC 3954 §5.3, RFC 7011 §3.3.1)."""
    if at >= end or not any(buf[at:end]):
        return None
    tail = end - at
    size = "" if record_size is None else f" of {record_size} bytes"
    aligned = tail < 4 and (end - body + 4) % 4 == 0
    return Leftover(
        f"{tail} bytes after {records} record(s){size} are not zero padding", tail, aligned
    )


class LeftoverSink(Protocol):
    """What the template walkers tell of bytes after a set's last record (ExportDecoder)."""

    def leftover(self, message: str, problem: Leftover) -> None: ...


class TemplateSink(LeftoverSink, Protocol):
    """What the template walkers (netflow_v9.read_templates and read_options_templates,
    ipfix.read_templates) need of the state they define templates in: the ExportDecoder,
    or exports._Definitions, which keeps only the templates."""

    def define_template(self, template: Template) -> None: ...

    def withdraw(self) -> None: ...

    def skip(self, error: InputError, nbytes: int) -> None: ...


def skip_malformed(
    state: TemplateSink, datagram: Datagram, message: str, nbytes: int, reason: str
) -> None:
    """Count `nbytes` the v9 and IPFIX walkers gave up on as MalformedInput of `reason`. The
    walkers know only where in the payload they stopped (the message says it); the problem
    is placed at the datagram's file, offset and frame, which a report can cite."""
    state.skip(
        MalformedInput(
            message,
            source=datagram.source,
            offset=datagram.offset,
            frame=datagram.frame,
            reason=reason,
        ),
        nbytes,
    )


def after_templates(
    state: LeftoverSink, buf: bytes, body: int, at: int, end: int, records: int, where: str
) -> None:
    """Bytes after a template set's last record that are not zero padding: told as after a
    data set's (they were passed over without a word: an audit). `body`: where the set's
    records begin, after its 4-byte header; `where`: the set, for the message."""
    problem = padding_problem(buf, body, at, end, records)
    if problem is not None:
        state.leftover(f"{where}: {problem.text}", problem)


def fixed_set_records(
    template: Template, buf: bytes, at: int, end: int
) -> tuple[int, Leftover | None]:
    """(whole records in the fixed-length data set body [at, end), and what is wrong with
    the rest and the bytes lost, or None when the rest is padding).

    Padding (RFC 3954 §5.3, RFC 7011 §3.3.1) is what follows the last whole record, shorter
    than a record, and zero octets. Anything else there is records the template does not
    describe (a wrong template ID, a template whose lengths were damaged, a cut record), and
    was dropped as padding without a word; unless it is exactly the set's 4-byte alignment
    (Leftover.padding).
    """
    fixed = template.fixed_length
    if not fixed:
        return 0, (
            (
                Leftover(
                    f"template {template.template_id} gives its records no length; "
                    f"{end - at} bytes unread",
                    end - at,
                    False,
                )
            )
            if end > at
            else None
        )
    records = (end - at) // fixed
    return records, padding_problem(buf, at, at + records * fixed, end, records, fixed)


def misfit(template: Template, buf: bytes, at: int, end: int) -> tuple[int, Leftover | None, bool]:
    """fixed_set_records of a data or options set, and whether the set is left out whole:
    (records, what follows the last of them, left out). A set whose bytes after its last
    whole record are not padding is not whole records of its template: its set id was
    damaged, or another template sent the set. Read as they fit, a set pointed at a
    template of longer records made up a record, a session of 520 bytes between addresses
    no traffic had, kept in the tables (a review); so its records are left out whole and
    the problem counts the set's bytes. A set shorter than one record has none to leave
    out: its problem is the leftover's."""
    records, problem = fixed_set_records(template, buf, at, end)
    if problem is None or problem.padding or not records:
        return records, problem, False
    whole = Leftover(
        f"{problem.text}: the set is not whole records of template {template.template_id} "
        f"(a damaged set id, or a set of another template), its {records} record(s) left out",
        end - at,
        False,
    )
    return records, whole, True


def variable_records(
    template: Template, buf: bytes, at: int, end: int
) -> tuple[bytes, int, Leftover | None]:
    """Fixed-size parts of the records of a variable-length template between `at` and `end`.

    Returns the joined fixed parts, how many records, and what was wrong with the rest of
    the set and the bytes lost (None when all fit, or the rest is padding); records before
    a bad one are kept.
    """
    parts: list[bytes] = []
    body = at
    minimum = max(template.min_length, 1)
    while end - at >= minimum:
        try:
            spans, at = template.field_spans(buf, at, end)
        except ValueError as exc:
            return (
                b"".join(parts),
                len(parts),
                Leftover(f"record {len(parts) + 1}: {exc}", end - at, False),
            )
        parts.append(template.fixed_part(buf, spans))
    return b"".join(parts), len(parts), padding_problem(buf, body, at, end, len(parts))


class PendingSet(NamedTuple):
    """A data set held back until its template arrives, with everything needed to decode it."""

    body: bytes  # records and padding, without the 4-byte set header
    source: str
    frame: int
    datagram_offset: int
    arrival_us: int
    export_us: int
    uptime_ms: int
    sysinit_ms: int
    sampling_rate: int
    samplers: int  # sampler table index (RecordMeta.sampler_table)
    exporter: str
    domain: int
    first_index: int  # record_index of its first record (see exports.py on numbering)
    # released with no sampling rate declared yet: read unsampled, counted as such
    undeclared: bool = False
    # its IPFIX message, whose sequence number counts its records (exports.HeldMessage)
    held: HeldMessage | None = None
    # its place among all the sets the run held, in the order they arrived: what the sets
    # one datagram releases are read in, whatever their template, port or file
    arrived: int = 0


class PendingData:
    """Data sets waiting for their template, bounded by PENDING_LIMIT_BYTES over the run."""

    def __init__(self, limit_bytes: int = PENDING_LIMIT_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self.size = 0
        self._sets: dict[SessionTemplateKey, list[PendingSet]] = {}
        # the keys of each template's waiting data: every template defined asks, and a scan
        # of all the keys held made data waiting for templates that never came, then as many
        # definitions, quadratic (20,000 of each took a minute: an audit)
        self._by_template: dict[TemplateKey, set[SessionTemplateKey]] = {}

    def waiting(self, key: TemplateKey) -> list[SessionTemplateKey]:
        """The keys (one per exporter port) of the data waiting for template `key`."""
        return sorted(self._by_template.get(key, ()))

    def add(self, key: SessionTemplateKey, item: PendingSet) -> bool:
        """Keep `item`; False (and nothing kept) when the buffer is full."""
        if self.size + len(item.body) > self.limit_bytes:
            return False
        self._sets.setdefault(key, []).append(item)
        self._by_template.setdefault(key[:4], set()).add(key)
        self.size += len(item.body)
        return True

    def take(self, key: SessionTemplateKey) -> list[PendingSet]:
        items = self._sets.pop(key, [])
        keys = self._by_template.get(key[:4])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_template[key[:4]]
        self.size -= sum(len(item.body) for item in items)
        return items

    def drain(self) -> dict[SessionTemplateKey, list[PendingSet]]:
        """Everything still waiting (end of input); the buffer is empty afterwards."""
        left, self._sets, self.size = self._sets, {}, 0
        self._by_template = {}
        return left
