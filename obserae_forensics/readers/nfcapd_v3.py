"""nfdump 1.7 V3 flow records: element table and the decoder of one layout's records at once.

Source: nfdump `src/libnffile/nfxV3.h` at v1.7.8 and `src/lib/nfxV3.h` at v1.7.1 (record
header L58-73, elements L137-600), `nfxV3.c` for the address byte order. Digest in
docs/formats.md §8.4.

A V3 record is a 12-byte header (type 11, size, numElements, engine type/ID, exporter sysid,
flags, nfversion) followed by elements `type u16 | length u16 | payload`, unaligned. Fields
are in the writer's byte order; an IPv6 address is two host-order u64 with the most
significant half first.

The surprising thing is version drift under the same element ID: EXsamplerInfo (18) is 16
bytes in 1.7.0/1.7.1 (id i32, interval u32, mode u16, sysid u16) and 20 bytes from 1.7.8
(selector id u64, sysid u16, padding); EXflowMisc (4) kept its size but its last bytes changed
meaning (revTcpFlags/fill → align). Elements are therefore keyed by (ID, length): a known ID
with an unexpected length is skipped and counted like an unknown ID.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import numpy as np

from ..times import scaled_time_us

RECORD_HEADER_SIZE: Final = 12
# (name, numpy code, offset) of the V3 record header; little-endian, swapped for BE files
RECORD_HEADER_FIELDS: Final = (
    ("record_type", "<u2", 0),
    ("record_size", "<u2", 2),
    ("num_elements", "<u2", 4),
    ("engine_type", "u1", 6),
    ("engine_id", "u1", 7),
    ("exporter_sysid", "<u2", 8),
    ("flags", "u1", 10),
    ("nfversion", "u1", 11),
)
FLAG_EVENT: Final = 0x1
FLAG_SAMPLED: Final = 0x2  # counters already multiplied by the sampling rate
FLAG_ANONYMIZED: Final = 0x4

# Element (ID, length incl. 4-byte header) -> fields (name, numpy code, offset in payload).
ELEMENTS: Final[dict[tuple[int, int], tuple[tuple[str, str, int], ...]]] = {
    (1, 52): (  # EXgenericFlow
        ("msec_first", "<u8", 0),
        ("msec_last", "<u8", 8),
        ("msec_received", "<u8", 16),
        ("in_packets", "<u8", 24),
        ("in_bytes", "<u8", 32),
        ("src_port", "<u2", 40),
        ("dst_port", "<u2", 42),  # ICMP: type << 8 | code
        ("protocol", "u1", 44),
        ("tcp_flags", "u1", 45),
        ("fwd_status", "u1", 46),
        ("src_tos", "u1", 47),
    ),
    (2, 12): (("src4", "<u4", 0), ("dst4", "<u4", 4)),  # EXipv4Flow
    (3, 36): (  # EXipv6Flow: two host-order u64 per address, high half first
        ("src6_hi", "<u8", 0),
        ("src6_lo", "<u8", 8),
        ("dst6_hi", "<u8", 16),
        ("dst6_lo", "<u8", 24),
    ),
    (4, 20): (  # EXflowMisc
        ("input_if", "<u4", 0),
        ("output_if", "<u4", 4),
        ("src_mask", "u1", 8),
        ("dst_mask", "u1", 9),
        ("direction", "u1", 10),
        ("dst_tos", "u1", 11),
        ("biflow_direction", "u1", 12),
        ("flow_end_reason", "u1", 13),
        # 1.7.0/1.7.1: revTcpFlags, which only nfdump's -b/-B pairing writes (nflowcache.c
        # L1186); 1.7.8 made the byte alignment padding, and no writer of it sets it
        ("rev_tcp_flags", "u1", 14),
    ),
    (5, 28): (
        ("aggregated_flows", "<u8", 0),
        ("out_packets", "<u8", 8),  # EXcntFlow
        ("out_bytes", "<u8", 16),
    ),
    (7, 12): (("src_as", "<u4", 0), ("dst_as", "<u4", 4)),  # EXasRouting
    (8, 8): (("bgp_next_hop4", "<u4", 0),),  # EXbgpNextHopV4
    (9, 20): (("bgp_next_hop6_hi", "<u8", 0), ("bgp_next_hop6_lo", "<u8", 8)),
    (10, 8): (("next_hop4", "<u4", 0),),  # EXipNextHopV4
    (11, 20): (("next_hop6_hi", "<u8", 0), ("next_hop6_lo", "<u8", 8)),
    (12, 8): (("router4", "<u4", 0),),  # EXipReceivedV4: exporter the datagram came from
    (13, 20): (("router6_hi", "<u8", 0), ("router6_lo", "<u8", 8)),
    # EXsamplerInfo, 1.7.0/1.7.1: the sampler itself travels in the record
    (18, 16): (
        ("sampler_id", "<i4", 0),
        ("sampler_interval", "<u4", 4),
        ("sampler_mode", "<u2", 8),
        ("sampler_sysid", "<u2", 10),
    ),
    # EXsamplerInfo, 1.7.8: a reference to a sampler record (type 15)
    (18, 20): (("selector_id", "<i8", 0), ("sampler_sysid", "<u2", 8)),
    # EXobservation: no column reads it (the exporter record's id is the domain); listed so
    # an element 33 of another length counts as unknown and nfcapd_write can swap it
    (33, 20): (("observation_point", "<u8", 0), ("observation_domain", "<u4", 8)),
    # EXlayer2 (1.7.8): VLANs, physical interfaces, VXLAN, ethertype, and the IP version
    # the exporter gave the flow (IPFIX ipVersion, 60)
    (38, 36): (("l2_ip_version", "u1", 26),),
    # EXnselCommon (Cisco NSEL): event time NF_F_EVENT_TIME_MSEC, connection id, extended
    # event, event; 1.7.8 appends NAT fields (type, natEvent, natPoolID)
    (19, 20): (
        ("nsel_event_ms", "<u8", 0),
        ("nsel_connection", "<u4", 8),
        ("nsel_event", "u1", 14),
    ),
    (19, 28): (
        ("nsel_event_ms", "<u8", 0),
        ("nsel_connection", "<u4", 8),
        ("nsel_event", "u1", 14),
    ),
}
# IDs nfdump 1.7.0-1.7.8 define (0 = EXnull padding). Their other lengths/elements are
# valid data we do not map into FLOW_SCHEMA (VLAN, MPLS, MAC, NSEL, payload, ...).
KNOWN_ELEMENT_IDS: Final = frozenset(range(43))
DECODED_ELEMENT_IDS: Final = frozenset(element_id for element_id, _ in ELEMENTS)


@dataclass(frozen=True)
class Layout:
    """Where every decoded field of one V3 record layout sits, as a structured dtype."""

    dtype: np.dtype
    fields: frozenset[str]
    unknown_elements: int  # elements skipped by length that no nfdump version defines so
    unknown_bytes: int


@lru_cache(maxsize=4096)
def layout_for(elements: tuple[tuple[int, int], ...], record_size: int, big_endian: bool) -> Layout:
    """The structured dtype for a record of `record_size` bytes with these (type, length) elements.

    A later element of the same ID wins, as in nfdump's ExpandRecord_v3.
    """
    placed: dict[str, tuple[str, int]] = {
        name: (code, offset) for name, code, offset in RECORD_HEADER_FIELDS
    }
    unknown = unknown_bytes = 0
    at = RECORD_HEADER_SIZE
    for element_type, length in elements:
        fields = ELEMENTS.get((element_type, length))
        if fields is not None:
            for name, code, offset in fields:
                placed[name] = (code, at + 4 + offset)
            if element_type == 18:  # the two sampler layouts must not mix within one record
                for stale in ("sampler_id", "sampler_interval", "sampler_mode", "selector_id"):
                    if stale not in {name for name, _, _ in fields}:
                        placed.pop(stale, None)
        elif element_type not in KNOWN_ELEMENT_IDS or element_type in DECODED_ELEMENT_IDS:
            unknown += 1
            unknown_bytes += length
        at += length
    dtype = placed_dtype(placed, record_size, big_endian)
    return Layout(dtype, frozenset(placed), unknown, unknown_bytes)


def placed_dtype(
    placed: dict[str, tuple[str, int]], record_size: int, big_endian: bool
) -> np.dtype:
    """A structured dtype from field name -> (little-endian code, byte offset), in the file's
    byte order: one record layout read by one np.frombuffer."""
    order = ">" if big_endian else "<"
    names = list(placed)
    return np.dtype(
        {
            "names": names,
            "formats": [placed[name][0].replace("<", order) for name in names],
            "offsets": [placed[name][1] for name in names],
            "itemsize": record_size,
        }
    )


def _v4(addresses: np.ndarray) -> np.ndarray:
    """Host-order u32 IPv4 addresses -> (n, 16) IPv4-mapped bytes, one pass per word."""
    words = np.zeros((len(addresses), 4), dtype=">u4")
    words[:, 2] = 0xFFFF
    words[:, 3] = addresses
    return words.view(np.uint8)


def _v6(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Two host-order u64 halves -> (n, 16) network-order address bytes."""
    n = len(hi)
    out = np.empty((n, 16), dtype=np.uint8)
    out[:, :8] = hi.astype(">u8").view(np.uint8).reshape(n, 8)
    out[:, 8:] = lo.astype(">u8").view(np.uint8).reshape(n, 8)
    return out


def decode_layout(rows: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """FLOW_SCHEMA columns (plus `_`-prefixed helpers for the container) of records of one layout.

    Columns the layout lacks are left out; the container fills them with defaults.
    `_msec_received` is 0 where the record has none, `_router` is the EXipReceived address.
    """
    present = layout.fields
    n = len(rows)
    out: dict[str, np.ndarray] = {
        "_sysid": rows["exporter_sysid"].astype(np.uint16),
        "_flags": rows["flags"].astype(np.uint8),
        "export_version": rows["nfversion"].astype(np.uint8),
    }
    if "msec_first" in present:
        out["first_seen"] = scaled_time_us(rows["msec_first"], 1000)
        out["last_seen"] = scaled_time_us(rows["msec_last"], 1000)
        out["_msec_received"] = rows["msec_received"].astype(np.int64)
        out["packets"] = rows["in_packets"].astype(np.uint64)
        out["octets"] = rows["in_bytes"].astype(np.uint64)
        out["src_port"] = rows["src_port"].astype(np.uint16)
        out["dst_port"] = rows["dst_port"].astype(np.uint16)
        out["protocol"] = rows["protocol"].astype(np.uint8)
        out["tcp_flags"] = rows["tcp_flags"].astype(np.uint16)
        out["tos"] = rows["src_tos"].astype(np.uint8)
    if "src6_hi" in present and "src4" in present:
        # nfcapd 1.7 stores both elements for a template with both families (Cisco's
        # dual-stack and 4-in-6 tunnel templates), the other family's fields left zero in a
        # dual-stack flow: a record's IPv4 addresses are its own unless they are blank (as
        # nfdump prints it; an IPv6 flow of such a template read as 0.0.0.0, an IPv4 one
        # as :: -> ::). A tunnel's inner IPv4 packet wins over its IPv6 outer header too.
        # When both are filled, the IP version nfcapd 1.7.8 keeps in EXlayer2 says which
        # is the flow's, as nfdump 1.7.8 reads it (a 6-in-4 tunnel's inner packet).
        v4 = (rows["src4"] != 0) | (rows["dst4"] != 0)
        if "l2_ip_version" in present:
            six_filled = (
                (rows["src6_hi"] != 0)
                | (rows["src6_lo"] != 0)
                | (rows["dst6_hi"] != 0)
                | (rows["dst6_lo"] != 0)
            )
            v4 &= ~(six_filled & (rows["l2_ip_version"] == 6))
        six = _v6(rows["src6_hi"], rows["src6_lo"]), _v6(rows["dst6_hi"], rows["dst6_lo"])
        four = _v4(rows["src4"]), _v4(rows["dst4"])
        out["src_addr"] = np.where(v4[:, None], four[0], six[0])
        out["dst_addr"] = np.where(v4[:, None], four[1], six[1])
        out["ip_version"] = np.where(v4, 4, 6).astype(np.uint8)
    elif "src6_hi" in present:
        out["src_addr"] = _v6(rows["src6_hi"], rows["src6_lo"])
        out["dst_addr"] = _v6(rows["dst6_hi"], rows["dst6_lo"])
        out["ip_version"] = np.full(n, 6, dtype=np.uint8)
    elif "src4" in present:
        out["src_addr"] = _v4(rows["src4"])
        out["dst_addr"] = _v4(rows["dst4"])
        out["ip_version"] = np.full(n, 4, dtype=np.uint8)
    if "input_if" in present:
        out["input_if"] = rows["input_if"].astype(np.uint32)
        out["output_if"] = rows["output_if"].astype(np.uint32)
        out["flow_end_reason"] = rows["flow_end_reason"].astype(np.uint8)
    if "rev_tcp_flags" in present:  # a 1.6 common record has none
        out["reverse_tcp_flags"] = rows["rev_tcp_flags"].astype(np.uint16)
    if "out_packets" in present:
        out["reverse_packets"] = rows["out_packets"].astype(np.uint64)
    if "out_bytes" in present:
        out["reverse_octets"] = rows["out_bytes"].astype(np.uint64)
    if "src_as" in present:
        out["src_as"] = rows["src_as"].astype(np.uint32)
        out["dst_as"] = rows["dst_as"].astype(np.uint32)
    # FLOW_SCHEMA has one next hop: the IP next hop, else the BGP next hop
    if "next_hop6_hi" in present:
        out["next_hop"] = _v6(rows["next_hop6_hi"], rows["next_hop6_lo"])
    elif "next_hop4" in present:
        out["next_hop"] = _v4(rows["next_hop4"])
    elif "bgp_next_hop6_hi" in present:
        out["next_hop"] = _v6(rows["bgp_next_hop6_hi"], rows["bgp_next_hop6_lo"])
    elif "bgp_next_hop4" in present:
        out["next_hop"] = _v4(rows["bgp_next_hop4"])
    if "router6_hi" in present:
        out["_router"] = _v6(rows["router6_hi"], rows["router6_lo"])
    elif "router4" in present:
        out["_router"] = _v4(rows["router4"])
    if "sampler_interval" in present:
        out["_sampler_interval"] = rows["sampler_interval"].astype(np.uint32)
        # the sampler the record names, of its own exporter (1.7.1 leaves the element's
        # sysid unset); its interval, when the record carries one, still comes first
        out["_selector_id"] = rows["sampler_id"].astype(np.int64)
        out["_sampler_sysid"] = rows["exporter_sysid"].astype(np.uint16)
    if "selector_id" in present:
        out["_selector_id"] = rows["selector_id"].astype(np.int64)
        out["_sampler_sysid"] = rows["sampler_sysid"].astype(np.uint16)
    if "nsel_event" in present:
        out["_nsel_event"] = rows["nsel_event"].astype(np.uint64)
        out["_nsel_connection"] = rows["nsel_connection"].astype(np.uint64)
        out["_nsel_event_ms"] = rows["nsel_event_ms"].astype(np.int64)
    if "aggregated_flows" in present:
        out["_aggregated_flows"] = rows["aggregated_flows"].astype(np.uint64)
        if "msec_first" in present:
            _put_back_reverse_flags(rows, out)
    return out


def _put_back_reverse_flags(rows: np.ndarray, out: dict[str, np.ndarray]) -> None:
    """Give an IPFIX biflow record's TCP flags back to the direction that sent them.

    nfcapd 1.7 maps RFC 5103 reverse elements (enterprise 29305) onto their forward element
    unless they are counters (`ipfixReverseMap` in `src/netflow/ipfix.c`, unchanged from
    1.7.1 to today's source), and each element of a template writes its field in template
    order: reverseTcpControlBits (29305/6) lands on tcpFlags and the later one stays. Every
    RFC 5103 exporter we have bytes of sends it after tcpControlBits (softflowd 1.1.0 `-b`,
    ipfixprobe in akvorado's capture), so the field holds the reverse direction's flags and
    the forward's are lost: proven on the corpus biflow capture, whose 443 record is FIN|ACK
    forward and FIN|PSH|ACK reverse in the datagram and FIN|PSH|ACK in nfcapd's file. Left
    where they were, the flags are the other side's: a softflowd `-b` SYN scan collected by
    nfcapd named every target the client of its scanner.

    Which records: IPFIX, TCP, one flow a record (nfdump's `-b`/`-B` pairs are left as
    nfdump wrote them), whose reverse direction sent packets. nfcapd gives a record reverse
    counters (EXcntFlow) for other elements too (deltaFlowCount, postPacketDeltaCount ...),
    and a reverse direction without packets sent no flags: non-zero flags there are the
    forward ones (a one-way template with deltaFlowCount, an unpaired record of `-B`). A
    one-way template whose postPacketDeltaCount (egress counters, not a reverse direction) is
    non-zero cannot be told from a biflow record by record: its flags move too.
    `_flags_put_back` marks the records whose non-zero flags moved, for the reader to count.
    """
    moved = (
        (rows["nfversion"] == 10)
        & (rows["protocol"] == 6)
        & (rows["aggregated_flows"] <= 1)
        & (rows["out_packets"] > 0)
    )
    if not moved.any():
        return
    flags = out["tcp_flags"]
    out["reverse_tcp_flags"] = np.where(moved, flags, out.get("reverse_tcp_flags", 0)).astype(
        np.uint16
    )
    out["tcp_flags"] = np.where(moved, 0, flags).astype(np.uint16)
    out["_flags_put_back"] = moved & (flags != 0)
