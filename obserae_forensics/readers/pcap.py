"""Capture container: PCAP and PCAPNG files -> complete UDP datagrams with their provenance.

Formats: libpcap savefile (draft-ietf-opsawg-pcap; both byte orders, µs and ns magic) and
pcapng (draft-ietf-opsawg-pcapng; sections with their own byte order, several interfaces
with their own link type and timestamp resolution, EPB/SPB/obsolete PB, unknown blocks
skipped by length). Link layers: Ethernet with any stack of 802.1Q/802.1ad tags, Linux
SLL/SLL2, raw IP, BSD null/loopback. IPv4 fragments and IPv6 fragments are reassembled,
because large IPFIX messages are fragmented by the exporter's IP stack, and across the
run's files (Transports), because a rotation cuts between fragments as anywhere else.

The surprising thing: nothing here knows NetFlow. Every UDP datagram on any port goes to
the decoders, which recognise exports by content; everything else is counted by reason.
UDP checksums are never verified: exports captured on loopback carry wrong ones.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import numpy as np

from ..addresses import V4_MAPPED_PREFIX
from ..errors import MalformedInput, TruncatedInput, UnknownFormat
from ..report import RunReport
from .datagrams import Datagram
from .packed import opened
from .sctp import SctpAssociations
from .tcp_streams import Place, TcpStreams

PCAP_MAGIC = {
    b"\xa1\xb2\xc3\xd4": (">", 1_000),  # byte order, nanoseconds per fraction unit
    b"\xd4\xc3\xb2\xa1": ("<", 1_000),
    b"\xa1\xb2\x3c\x4d": (">", 1),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_RAW_ALT = 12  # OpenBSD's DLT_RAW value that some writers leak into files

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
VLAN_TAG_TYPES = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
NULL_FAMILY_IPV6 = frozenset((24, 28, 30))

IPPROTO_UDP = 17
IPPROTO_TCP = 6
IPPROTO_SCTP = 132
IPV6_EXTENSION_HEADERS = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
IPV6_FRAGMENT = 44
IPV6_AH = 51

MAX_PENDING_FRAGMENT_SETS = 4096  # incomplete reassemblies kept before the oldest is dropped
# capture time after a datagram's first fragment beyond which its set is given up (Linux's
# ipfrag_time): a lost fragment never completes a later datagram that reuses its IPv4
# identification, within a file or files apart (time going back never gives a set up)
FRAGMENT_TIMEOUT_NS = 30 * 10**9
# reassembled datagrams kept to recognise a fragment repeated after its datagram was whole
# (a capture taken twice, a SPAN port mirroring both directions): at most this many,
# and at most this many bytes of them
MAX_RECENT_DATAGRAMS = 256
MAX_RECENT_BYTES = 4 << 20

_u16be = struct.Struct(">H")
_udp = struct.Struct(">HHH")


def is_capture(head: bytes) -> bool:
    """True when the first bytes are a PCAP or PCAPNG magic."""
    return head[:4] in PCAP_MAGIC or head[:4] == PCAPNG_MAGIC


def capture_format(head: bytes) -> str:
    if head[:4] == PCAPNG_MAGIC:
        return "pcapng"
    if head[:4] in PCAP_MAGIC:
        return "pcap"
    return ""


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame: where it is in the file and what the capture header said."""

    number: int  # 1-based, counting every packet block of the file
    offset: int  # byte offset of the record header / block in the file
    linktype: int
    ts_ns: int  # capture time, UTC nanoseconds
    data: bytes
    original_length: int
    fcs_bytes: int  # trailing FCS bytes that are not payload


def iter_frames(path: Path, report: RunReport) -> Iterator[Frame]:
    """Yield every frame of a PCAP or PCAPNG file (compressed whole or not: packed.py);
    damage is counted on `report`."""
    with opened(path, report) as handle:
        yield from _frames_of(handle, str(path), report)


def _frames_of(handle: IO[bytes], source: str, report: RunReport) -> Iterator[Frame]:
    if os.fstat(handle.fileno()).st_size == 0:
        raise UnknownFormat("empty file, not a PCAP/PCAPNG capture", source=source, offset=0)
    with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        yield from walk_frames(buf, source, report)


def walk_frames(buf: mmap.mmap | bytes, source: str, report: RunReport) -> Iterator[Frame]:
    """The frames of a capture's bytes (a whole file, or the first bytes of one)."""
    head = bytes(buf[:4])
    if head in PCAP_MAGIC:
        yield from _pcap_frames(buf, source, report)
    elif head == PCAPNG_MAGIC:
        yield from _pcapng_frames(buf, source, report)
    else:
        raise UnknownFormat(
            f"not a PCAP/PCAPNG capture (magic {head.hex()})", source=source, offset=0
        )


MAX_CAPLEN = 262_144 * 4
# bits of the PCAP header's link-type field that must be zero: 16-25 and 27 (28-31 and 26
# are the FCS length and its flag)
LINKTYPE_RESERVED = 0x03FF_0000 | 1 << 27


def _pcap_header(
    buf: mmap.mmap | bytes, source: str, report: RunReport
) -> tuple[str, int, int, int] | None:
    """(byte order, ns per fraction unit, link type, FCS bytes), or None if cut off."""
    order, ns_per_unit = PCAP_MAGIC[bytes(buf[:4])]
    stats = report.file(source)
    stats.format = "pcap"
    if not stats.compression:
        stats.size = len(buf)
    if len(buf) < 24:
        report.skip(
            TruncatedInput(
                f"PCAP file header needs 24 bytes, file has {len(buf)}", source=source, offset=0
            ),
            nbytes=len(buf),
        )
        return None
    linktype_field = struct.unpack_from(order + "I", buf, 20)[0]
    if linktype_field & LINKTYPE_RESERVED:
        # found by fuzzing: 0xffffffff read as link type 65535, every frame other traffic
        # (unsupported_linktype) and nothing said; the field's reserved bits make it an
        # error (draft-ietf-opsawg-pcap): which link type the frames are is not known
        report.skip(
            MalformedInput(
                f"PCAP file header's link-type field 0x{linktype_field:08x} has reserved bits "
                "set (16-25, 27): the frames' link type is not known",
                source=source,
                offset=20,
                reason="bad_header",
            ),
            nbytes=len(buf),
        )
        return None
    fcs_bytes = ((linktype_field >> 28) & 0xF) * 2 if linktype_field & (1 << 26) else 0
    return order, ns_per_unit, linktype_field & 0xFFFF, fcs_bytes


def _pcap_frames(
    buf: mmap.mmap | bytes, source: str, report: RunReport, *, start: int = 24, number: int = 0
) -> Iterator[Frame]:
    header = _pcap_header(buf, source, report)
    if header is None:
        return
    order, ns_per_unit, linktype, fcs_bytes = header
    record = struct.Struct(order + "IIII")
    stats = report.file(source)
    size = len(buf)
    at = start
    while at < size:
        if size - at < 16:
            report.skip(
                TruncatedInput(
                    f"packet record header cut off ({size - at} of 16 bytes)",
                    source=source,
                    offset=at,
                ),
                nbytes=size - at,
            )
            return
        seconds, fraction, caplen, origlen = record.unpack_from(buf, at)
        number += 1
        if caplen > MAX_CAPLEN:
            report.skip(
                MalformedInput(
                    f"packet record claims {caplen} captured bytes",
                    source=source,
                    offset=at,
                    frame=number,
                    reason="bad_record_length",
                ),
                nbytes=size - at,
            )
            return
        end = at + 16 + caplen
        if end > size:
            report.skip(
                TruncatedInput(
                    f"packet record promises {caplen} bytes, {size - at - 16} left in file",
                    source=source,
                    offset=at,
                    frame=number,
                ),
                nbytes=size - at,
            )
            return
        stats.units += 1
        yield Frame(
            number,
            at,
            linktype,
            seconds * 1_000_000_000 + fraction * ns_per_unit,
            buf[at + 16 : end],
            origlen,
            fcs_bytes,
        )
        at = end


@dataclass
class _Interface:
    linktype: int
    ns_num: int  # timestamp unit = ns_num / ns_den nanoseconds
    ns_den: int
    offset_ns: int
    fcs_bytes: int
    snaplen: int


# stands for an interface whose description block was malformed: its packets are counted
_UNUSABLE_INTERFACE = _Interface(-1, 1, 1, 0, 0, 0)


def _pcapng_frames(buf: mmap.mmap | bytes, source: str, report: RunReport) -> Iterator[Frame]:
    size = len(buf)
    stats = report.file(source)
    stats.format = "pcapng"
    if not stats.compression:
        stats.size = size
    order = "<"
    interfaces: list[_Interface] = []
    at = 0
    number = 0
    while at < size:
        if size - at < 12:
            report.skip(
                TruncatedInput(
                    f"pcapng block header cut off ({size - at} bytes left)",
                    source=source,
                    offset=at,
                ),
                nbytes=size - at,
            )
            return
        block_type_raw = bytes(buf[at : at + 4])
        if block_type_raw == PCAPNG_MAGIC:
            magic = bytes(buf[at + 8 : at + 12])
            if magic == b"\x1a\x2b\x3c\x4d":
                order = ">"
            elif magic == b"\x4d\x3c\x2b\x1a":
                order = "<"
            else:
                text = f"section header with bad byte-order magic {magic.hex()}"
                report.skip(
                    MalformedInput(text, source=source, offset=at, reason="bad_block"),
                    nbytes=size - at,
                )
                return
            interfaces = []  # interface IDs restart in each section
        block_type, total = struct.unpack_from(order + "II", buf, at)
        if total < 12 or total % 4 or at + total > size:
            problem: type[MalformedInput] = (
                TruncatedInput if at + total > size and total >= 12 else MalformedInput
            )
            report.skip(
                problem(
                    f"pcapng block of type {block_type:#x} claims {total} bytes, "
                    f"{size - at} left in file",
                    source=source,
                    offset=at,
                ),
                nbytes=size - at,
            )
            return
        body = at + 8
        end = at + total - 4
        (trailing,) = struct.unpack_from(order + "I", buf, end)
        if trailing != total:
            # the block is read by its leading length; a damaged copy is worth a word
            report.skip(
                MalformedInput(
                    f"pcapng block of type {block_type:#x} ends with length "
                    f"{trailing}, begins with {total}",
                    source=source,
                    offset=end,
                    reason="bad_block",
                ),
                nbytes=4,
            )
        fixed = _BLOCK_FIXED_BYTES.get(block_type, 0)
        if end - body < fixed:
            # its fixed fields would be read from the next block (or past the file's end)
            report.skip(
                MalformedInput(
                    f"pcapng block of type {block_type:#x} has {end - body} "
                    f"body bytes, its fixed fields need {fixed}",
                    source=source,
                    offset=at,
                    reason="bad_block",
                ),
                nbytes=total,
            )
            if block_type == 1:
                interfaces.append(_UNUSABLE_INTERFACE)  # keep the later interfaces' numbers
            at += total
            continue
        if block_type == 1:  # interface description
            interface, damaged = _interface(buf, order, body, end)
            interfaces.append(interface)
            if damaged is not None:
                # its packets are still read (link type and snap length are fixed fields),
                # but a time resolution or offset in the lost options changes every arrival
                # time: said, where it passed without a word (found by fuzzing)
                report.skip(
                    MalformedInput(
                        f"pcapng interface {len(interfaces) - 1}: its options do not fit the "
                        f"block from offset {damaged}; its packets' arrival times assume what "
                        "was read before (microseconds, no offset, unless given there)",
                        source=source,
                        offset=damaged,
                        reason="bad_block",
                    ),
                    nbytes=end - damaged,
                )
        elif block_type in (6, 2, 3):  # enhanced, obsolete, simple packet
            number += 1
            frame = _packet_block(
                buf, order, block_type, body, end, interfaces, at, number, source, report
            )
            if frame is not None:
                stats.units += 1
                yield frame
        elif block_type not in _OTHER_KNOWN_BLOCKS:
            # skipped by its length as the format wants, but counted: a damaged type byte
            # made a packet block one of these, and its datagram vanished without a word;
            # one that reads as an enhanced or simple packet block is that damage, a problem
            # with its place (an audit: 6 -> 14, one bit, lost 32 records to a run-wide
            # count; fuzzing: 3 -> 0x103 lost a simple packet block's so)
            packet = _reads_as_packet(buf, order, body, end, interfaces)
            if packet is None:
                report.ignore("pcapng_unknown_block", source, total)
            else:
                layout, caplen = packet
                report.skip(
                    MalformedInput(
                        f"pcapng block of unknown type {block_type:#x} reads as {layout} "
                        f"packet block ({caplen} bytes captured): a damaged type",
                        source=source,
                        offset=at,
                        reason="bad_block",
                    ),
                    nbytes=total,
                )
        elif block_type in _CUSTOM_BLOCKS:
            # a vendor's data this reader cannot check: counted, as a packet block whose type
            # was damaged into one (0xBAD, 0x80000001) lost its datagram without a word
            report.ignore("pcapng_custom_block", source, total)
        elif (
            problem_text := _layout_problem(buf, order, block_type, body, end, len(interfaces))
        ) is not None:
            # a packet block whose type was damaged into a known one (6 -> 4 or 5 is one
            # bit): its packet does not read as that block's fields
            report.skip(
                MalformedInput(
                    f"pcapng block of type {block_type:#x}: {problem_text}",
                    source=source,
                    offset=at,
                    reason="bad_block",
                ),
                nbytes=total,
            )
        at += total


def _reads_as_packet(
    buf: mmap.mmap | bytes, order: str, body: int, end: int, interfaces: list[_Interface]
) -> tuple[str, int] | None:
    """The packet block that the body from `body` to `end` reads as ("an enhanced" or "a
    simple"), and its captured length, else None: an enhanced packet block names an
    interface described, holds its packet, and its options walk to its end; a simple one
    needs an interface described, and its original length (cut to the first interface's
    snap length) padded to 4 bytes fills the block exactly, a non-empty packet, the
    trailing length copy equal (having no fields to walk, a loose fit would take a
    legitimate unknown block for one)."""
    if end - body >= 20:
        interface, _high, _low, caplen, _origlen = struct.unpack_from(order + "IIIII", buf, body)
        data_at = body + 20
        if (
            interface < len(interfaces)
            and data_at + caplen <= end
            and _options_end(buf, order, data_at + caplen + (-caplen % 4), end)
        ):
            return "an enhanced", cast(int, caplen)
    if not interfaces or end - body < 4:
        return None
    (origlen,) = struct.unpack_from(order + "I", buf, body)
    (trailing,) = struct.unpack_from(order + "I", buf, end)
    snaplen = interfaces[0].snaplen
    caplen = min(origlen, snaplen) if snaplen else origlen
    if caplen == 0 or end - body - 4 != caplen + (-caplen % 4) or trailing != end + 12 - body:
        return None
    return "a simple", cast(int, caplen)


def _options_end(buf: mmap.mmap | bytes, order: str, at: int, end: int) -> bool:
    """Whether options from `at` walk exactly to the block's end by their lengths (each
    value padded to 4 bytes), the last one possibly opt_endofopt."""
    while at < end:
        if end - at < 4:
            return False
        code, length = struct.unpack_from(order + "HH", buf, at)
        if code == 0:
            return length == 0 and at + 4 == end
        at += 4 + length + (-length % 4)
    return at == end


def _layout_problem(
    buf: mmap.mmap | bytes, order: str, block_type: int, body: int, end: int, interfaces: int
) -> str | None:
    """What does not fit the layout of a name resolution (4), interface statistics (5) or
    decryption secrets (0xA) block, else None; other non-packet blocks are free-form."""
    if block_type == 4:  # name records (type, length, value padded) up to nrb_record_end
        at = body
        while True:
            if end - at < 4:
                return "name records run past the block"
            kind, length = struct.unpack_from(order + "HH", buf, at)
            if kind == 0 and length:
                # nrb_record_end has no value; in a big-endian section a simple packet
                # block's original length (00 00 01 d2) reads as one of length 466 that
                # spans its packet exactly, found by fuzzing
                return f"its name records' end record claims {length} bytes, not 0"
            at += 4 + length + (-length % 4)
            if kind == 0:
                break
            if at > end:
                return "a name record runs past the block"
        return (
            None
            if at <= end and _options_end(buf, order, at, end)
            else ("its options do not fit the block")
        )
    if block_type == 5:
        if end - body < 12:
            return "shorter than its interface id and timestamp"
        (interface,) = struct.unpack_from(order + "I", buf, body)
        if interface >= interfaces:
            return f"statistics of interface {interface}, of {interfaces} described"
        return (
            None
            if _options_end(buf, order, body + 12, end)
            else ("its options do not fit the block")
        )
    if block_type == 0xA:
        if end - body < 8:
            return "shorter than its secrets type and length"
        (length,) = struct.unpack_from(order + "I", buf, body + 4)
        at = body + 8 + length + (-length % 4)
        return (
            None
            if at <= end and _options_end(buf, order, at, end)
            else ("its secrets or options do not fit the block")
        )
    return None


# bytes before the options / packet data of each pcapng block type this reader uses
_BLOCK_FIXED_BYTES = {1: 8, 6: 20, 2: 20, 3: 4}
# pcapng blocks that hold no packets (draft-ietf-opsawg-pcapng: section header, name resolution,
# interface statistics, systemd journal export, decryption secrets, custom, Apple process info)
_OTHER_KNOWN_BLOCKS = frozenset(
    {0x0A0D0D0A, 4, 5, 9, 0xA, 0xBAD, 0x40000BAD, 0x80000001, 0x80000002}
)
# custom blocks (copyable or not) and the local types Apple's tools write: bytes no layout
# check can vouch for
_CUSTOM_BLOCKS = frozenset({0xBAD, 0x40000BAD, 0x80000001, 0x80000002})
_INT64_RANGE = range(-(2**63), 2**63)


def _interface(
    buf: mmap.mmap | bytes, order: str, body: int, end: int
) -> tuple[_Interface, int | None]:
    """The interface, and where its options stop fitting the block (None: they fit)."""
    linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, body)
    ns_num, ns_den, offset_ns, fcs_bytes = 1_000, 1, 0, 0
    at = body + 8
    damaged = None if _options_end(buf, order, at, end) else at
    while at + 4 <= end:
        code, length = struct.unpack_from(order + "HH", buf, at)
        value = at + 4
        if code == 0 or value + length > end:
            break
        if code == 9 and length >= 1:  # if_tsresol
            resolution = buf[value]
            if resolution & 0x80:
                ns_num, ns_den = 1_000_000_000, 2 ** (resolution & 0x7F)
            else:
                exponent = resolution
                if exponent <= 9:
                    ns_num, ns_den = 10 ** (9 - exponent), 1
                else:
                    ns_num, ns_den = 1, 10 ** (exponent - 9)
        elif code == 14 and length >= 8:  # if_tsoffset, seconds
            offset_ns = struct.unpack_from(order + "q", buf, value)[0] * 1_000_000_000
        elif code == 13 and length >= 1:  # if_fcslen, bits
            fcs_bytes = buf[value] // 8
        at = value + ((length + 3) & ~3)
    if damaged is not None:
        damaged = min(at, end)  # the first option that does not fit
    return _Interface(linktype, ns_num, ns_den, offset_ns, fcs_bytes, snaplen), damaged


def _packet_block(
    buf: mmap.mmap | bytes,
    order: str,
    block_type: int,
    body: int,
    end: int,
    interfaces: list[_Interface],
    at: int,
    number: int,
    source: str,
    report: RunReport,
) -> Frame | None:
    if block_type == 3:  # simple packet: interface 0, no timestamp
        interface_id = 0
        (origlen,) = struct.unpack_from(order + "I", buf, body)
        ticks = 0
        data_at = body + 4
        caplen = min(origlen, end - data_at)
        if interfaces and interfaces[0].snaplen:
            caplen = min(caplen, interfaces[0].snaplen)
        beyond = end - data_at - caplen - (-caplen % 4)
        if beyond > 0:
            # bytes past the packet the snap length or its length allows, and its padding:
            # no field of the block says what they are (they went uncounted: fuzzing)
            report.skip(
                MalformedInput(
                    f"simple packet block holds {beyond} bytes past its "
                    f"{caplen}-byte packet and padding",
                    source=source,
                    offset=data_at + caplen,
                    frame=number,
                    reason="bad_block",
                ),
                nbytes=beyond,
            )
    else:
        if block_type == 6:
            interface_id, high, low, caplen, origlen = struct.unpack_from(
                order + "IIIII", buf, body
            )
        else:
            interface_id, _drops, high, low, caplen, origlen = struct.unpack_from(
                order + "HHIIII", buf, body
            )
        ticks = (high << 32) | low
        data_at = body + 20
    if interface_id >= len(interfaces):
        report.skip(
            MalformedInput(
                f"packet block names interface {interface_id}, section has {len(interfaces)}",
                source=source,
                offset=at,
                frame=number,
                reason="bad_block",
            ),
            nbytes=end + 4 - at,
        )
        return None
    if data_at + caplen > end:
        report.skip(
            MalformedInput(
                f"packet block claims {caplen} captured bytes, block has {end - data_at}",
                source=source,
                offset=at,
                frame=number,
                reason="bad_block",
            ),
            nbytes=end + 4 - at,
        )
        return None
    if block_type != 3 and not _options_end(buf, order, data_at + caplen + (-caplen % 4), end):
        # found by fuzzing: a captured length damaged short (45 -> 3) read as a 3-byte frame,
        # the rest of the packet taken for options and counted nowhere
        report.skip(
            MalformedInput(
                f"packet block claims {caplen} captured bytes, and what "
                f"follows them up to its end ({end - data_at} bytes of "
                "data and options) is no options",
                source=source,
                offset=at,
                frame=number,
                reason="bad_block",
            ),
            nbytes=end + 4 - at,
        )
        return None
    interface = interfaces[interface_id]
    if interface is _UNUSABLE_INTERFACE:
        report.skip(
            MalformedInput(
                f"packet block names interface {interface_id}, whose "
                "description block is malformed",
                source=source,
                offset=at,
                frame=number,
                reason="bad_block",
            ),
            nbytes=end + 4 - at,
        )
        return None
    ts_ns = ticks * interface.ns_num // interface.ns_den + interface.offset_ns
    if ts_ns not in _INT64_RANGE:
        # a tick count in seconds (if_tsresol 0) or an if_tsoffset past 292 years from 1970
        report.skip(
            MalformedInput(
                f"packet time {ts_ns} ns is past the int64 range",
                source=source,
                offset=at,
                frame=number,
                reason="bad_timestamp",
            ),
            nbytes=end + 4 - at,
        )
        return None
    return Frame(
        number,
        at,
        interface.linktype,
        ts_ns,
        buf[data_at : data_at + caplen],
        origlen,
        interface.fcs_bytes,
    )


@dataclass
class Transports:
    """What can span frames and files: IP fragments, TCP connections and SCTP associations,
    of a run (new_transports()) or of one capture file. `tcpdump -C` cuts a file between
    two fragments of one datagram as readily as between any two frames (an 8 KB datagram
    is six frames at a 1,500-byte MTU)."""

    tcp: TcpStreams
    sctp: SctpAssociations
    report: RunReport
    ip: _Reassembly = field(default_factory=lambda: _Reassembly())
    last: Place = field(default_factory=lambda: Place(0, 0, 0))  # the last file's last frame

    def finish(self) -> list[Datagram]:
        """End of the run: what only it completes, named at its last frame, and what it
        cut counted (fragments never completed, in the file of the first; TcpStreams,
        SctpAssociations)."""
        self.ip.flush(self.report)
        out = self.tcp.finish(self.last)
        self.sctp.finish()
        return out


def new_transports(report: RunReport) -> Transports:
    """The IP fragments, TCP connections and SCTP associations of a run, which go on from
    one of its capture files into the next (iter_datagrams' `transports`; finish() at the
    run's end)."""
    return Transports(
        TcpStreams("", report, _address_text), SctpAssociations("", report, _address_text), report
    )


@dataclass
class _FragmentSet:
    """The fragments of one IP datagram seen so far, and where the first one was."""

    first_frame: int
    first_offset: int
    source: str  # the file of the first fragment seen
    first_ns: int  # its capture time
    # (byte offset, payload) in arrival order: the first copy of a byte wins, and a later
    # fragment's bytes no earlier one covers are used
    parts: list[tuple[int, bytes]] = field(default_factory=list)
    total: int | None = None  # known once the last fragment (MF = 0) arrived


def _repeats(whole: bytes, offset: int, more: bool, data: bytes) -> bool:
    """Is the fragment (offset, more, data) a piece of the reassembled `whole`, exactly?"""
    end = offset + len(data)
    return end <= len(whole) and (more or end == len(whole)) and whole[offset:end] == data


def _covered(parts: list[tuple[int, bytes]], low: int, high: int) -> int:
    """How many bytes of [low, high) the parts ((byte offset, bytes) each) cover."""
    spans = sorted(
        (max(start, low), min(start + len(part), high))
        for start, part in parts
        if start < high and start + len(part) > low
    )
    covered, cursor = 0, low
    for first, last in spans:
        first = max(first, cursor)
        if last > first:
            covered += last - first
            cursor = last
    return covered


def _end(parts: list[tuple[int, bytes]]) -> int:
    """Where the parts' last byte ends (0 for none)."""
    return max((start + len(part) for start, part in parts), default=0)


class _Reassembly:
    """IPv4/IPv6 fragment reassembly by byte ranges, bounded in the number of open sets."""

    def __init__(self) -> None:
        self.pending: OrderedDict[tuple[object, ...], _FragmentSet] = OrderedDict()
        self.recent: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self.recent_bytes = 0
        # IPv6 datagrams whose first fragment showed other traffic behind its extension
        # headers: their other fragments are other traffic too, not a set to complete
        self.others: OrderedDict[tuple[object, ...], None] = OrderedDict()

    def other_traffic(
        self, key: tuple[object, ...], upper: int | None, report: RunReport, source: str
    ) -> bool:
        """Whether the IPv6 fragment of `key` is of a datagram of other traffic: `upper`, the
        protocol its first fragment shows behind the fragmentable part's extension headers
        (None: not the first fragment, or not shown). A review: fragmented TCP behind
        Destination Options was reassembled, counted at its last frame only, and a lone
        fragment of it made an `incomplete_fragments` problem. Fragments of it held
        already are counted as other traffic."""
        if upper is None:
            return key in self.others
        if upper in (IPPROTO_UDP, IPPROTO_SCTP):
            return False
        self.others[key] = None
        if len(self.others) > MAX_PENDING_FRAGMENT_SETS:
            self.others.popitem(last=False)
        held = self.pending.pop(key, None)
        if held is not None:
            report.ignore(
                "not_udp",
                held.source,
                _covered(held.parts, 0, _end(held.parts)),
                count=len(held.parts),
            )
        return True

    def add(
        self,
        key: tuple[object, ...],
        offset: int,
        more: bool,
        data: bytes,
        frame: Frame,
        source: str,
        report: RunReport,
    ) -> bytes | None:
        """Add one fragment's payload; return the whole payload once every byte is there.

        The first copy of a byte range wins: a retransmitted or overlapping fragment never
        rewrites bytes already placed. A fragment that repeats one already placed (same offset,
        same bytes), or an exact piece of a datagram reassembled a moment ago, is counted as
        `duplicate_fragment` (not a problem: nothing is lost), rather than opening a set that
        could never complete. (A re-fragmentation at other offsets is not recognised.)
        """
        entry = self.pending.get(key)
        if (
            entry is not None
            and entry.first_ns > 0
            and (frame.ts_ns - entry.first_ns > FRAGMENT_TIMEOUT_NS)
        ):
            # a set given up long ago: this fragment is of another datagram with the same
            # identification (the one before lost a fragment), never bytes of that one.
            # Only time moving on counts: a clock stepped back, a merged capture's other
            # interface, a Simple Packet Block's unknown time (0) never give a set up
            del self.pending[key]
            self._drop(entry, report)
            entry = None
        recent = self.recent.get(key) if entry is None else None
        if recent is not None and _repeats(recent, offset, more, data):
            report.ignore("duplicate_fragment", source, len(data))
            return None
        if (
            entry is not None
            and (offset, data) in entry.parts
            and (more or entry.total == offset + len(data))
        ):
            report.ignore("duplicate_fragment", source, len(data))
            return None
        if entry is None:
            if len(self.pending) >= MAX_PENDING_FRAGMENT_SETS:
                _old_key, old = self.pending.popitem(last=False)
                self._drop(old, report)
            entry = self.pending[key] = _FragmentSet(
                frame.number, frame.offset, source, frame.ts_ns
            )
        # the bytes of this fragment that earlier ones placed already: one copy of each is
        # used, so they are counted once here (only they: the rest of the fragment is used,
        # and counting all of it counted those bytes twice, found by fuzzing)
        overlap = _covered(entry.parts, offset, offset + len(data))
        if overlap:
            conflict = next(
                (
                    (low, high)
                    for start, part in entry.parts
                    if (low := max(start, offset))
                    < (high := min(start + len(part), offset + len(data)))
                    and part[low - start : high - start] != data[low - offset : high - offset]
                ),
                None,
            )
            if conflict is not None:
                # an identical retransmission is harmless; other bytes for the same range
                # are a forged or damaged copy, and which one is true cannot be known
                report.skip(
                    MalformedInput(
                        f"IP fragment at byte {offset} carries other bytes than an earlier one for "
                        f"bytes {conflict[0]}..{conflict[1]}; the first copy is kept",
                        source=source,
                        offset=frame.offset,
                        frame=frame.number,
                        reason="conflicting_fragment",
                    ),
                    nbytes=overlap,
                )
            else:
                report.ignore("duplicate_fragment", source, overlap)
        if overlap < len(data):  # bytes no earlier fragment brought
            entry.parts.append((offset, data))
        if not more:
            entry.total = offset + len(data)
        total = entry.total
        if total is None or _covered(entry.parts, 0, total) < total:
            return None
        whole = bytearray(total)
        for start, part in reversed(entry.parts):  # the first to arrive written last
            if start < total:  # (a part wholly past the end appended itself to the bytes)
                whole[start : start + len(part[: total - start])] = part[: total - start]
        beyond = _covered(entry.parts, total, _end(entry.parts))
        if beyond:
            report.skip(
                MalformedInput(
                    f"IP fragments carry {beyond} byte(s) past byte {total}, where the last "
                    "fragment ends the datagram",
                    source=source,
                    offset=frame.offset,
                    frame=frame.number,
                    reason="fragment_past_end",
                ),
                nbytes=beyond,
            )
        del self.pending[key]
        payload = bytes(whole)
        self._keep(key, payload)
        return payload

    def _keep(self, key: tuple[object, ...], whole: bytes) -> None:
        old = self.recent.pop(key, None)
        if old is not None:
            self.recent_bytes -= len(old)
        self.recent[key] = whole
        self.recent_bytes += len(whole)
        while len(self.recent) > MAX_RECENT_DATAGRAMS or self.recent_bytes > MAX_RECENT_BYTES:
            _key, dropped = self.recent.popitem(last=False)
            self.recent_bytes -= len(dropped)

    def _drop(self, entry: _FragmentSet, report: RunReport) -> None:
        report.skip(
            MalformedInput(
                "IP fragments never completed a datagram",
                source=entry.source,
                offset=entry.first_offset,
                frame=entry.first_frame,
                reason="incomplete_fragments",
            ),
            # each byte once: those that overlapped were counted as they came
            nbytes=_covered(entry.parts, 0, _end(entry.parts)),
        )

    def flush(self, report: RunReport) -> None:
        for entry in self.pending.values():
            self._drop(entry, report)
        self.pending.clear()


def iter_datagrams(
    path: Path,
    report: RunReport,
    *,
    chunk_size: int = 2048,
    indexed: bool = True,
    transports: Transports | None = None,
) -> Iterator[list[Datagram]]:
    """Yield the UDP datagrams of a capture, in frame order, in lists of up to `chunk_size`.

    `indexed=False` turns off the numba fast path for PCAP files (tests compare the two).
    `transports`: the run's IP fragments, TCP connections and SCTP associations, which go
    on across its files (new_transports(); the caller finishes them after the last file);
    this file's own when not given, finished at its end.
    """
    source = str(path)
    own = transports is None
    streams = new_transports(report) if transports is None else transports
    streams.tcp.source = streams.sctp.source = source
    reassembly = streams.ip
    chunk: list[Datagram] = []
    exporter_texts: dict[bytes, str] = {}
    item: Frame | Datagram | None = None
    with opened(path, report) as handle:
        head = handle.read(4)
        handle.seek(0)
        frames_or_datagrams: Iterator[Frame | Datagram] = (
            _indexed_pcap(handle, source, report)
            if indexed and head in PCAP_MAGIC and os.fstat(handle.fileno()).st_size >= 24
            else _frames_of(handle, source, report)
        )
        for item in frames_or_datagrams:
            if isinstance(item, Frame):
                datagram = _datagram(item, source, report, reassembly, streams, exporter_texts)
                if datagram is None:
                    continue
                if isinstance(datagram, list):  # IPFIX messages a TCP segment completed
                    chunk += datagram
                else:
                    chunk.append(datagram)
            else:
                chunk.append(item)
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
    # what only the end of the file (or of the run) gives is named at the file's last frame;
    # fragments still incomplete wait for the next file (Transports.finish: the run's end)
    streams.last = (
        Place(0, 0, 0)
        if item is None
        else Place(item.number, item.offset, item.ts_ns // 1_000)
        if isinstance(item, Frame)
        else Place(item.frame, item.offset, item.arrival_us)
    )
    chunk += streams.finish() if own else streams.tcp.pause(streams.last)
    if chunk:
        yield chunk


INDEX_WINDOW_BYTES = 64 << 20


def _indexed_pcap(handle: IO[bytes], source: str, report: RunReport) -> Iterator[Frame | Datagram]:
    """Plain UDP-over-IPv4 frames become Datagrams straight from the index; the rest Frames.

    The file is indexed a window at a time and each finished window's pages are given back
    (MADV_DONTNEED), so a capture of many gigabytes never becomes resident at once. Damage
    at the end of the file (a cut record) is reported by the general walker, which resumes
    where the index stopped, so both paths say the same thing about bad bytes.
    """
    from .pcap_index import FAST_LINKS, STOP_CLEAN, index_records

    with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        header = _pcap_header(buf, source, report)
        if header is None:
            return
        order, ns_per_unit, linktype, fcs_bytes = header
        link_length, type_at = FAST_LINKS.get(linktype, (0, -1))
        data = np.frombuffer(buf, dtype=np.uint8)
        size = len(buf)
        at, number = 24, 0
        texts: dict[int, str] = {}
        try:
            while True:
                (
                    offsets,
                    seconds,
                    fractions,
                    caplens,
                    origlens,
                    payload_start,
                    payload_end,
                    sources,
                    ports,
                    stop_at,
                    stop,
                ) = index_records(
                    data,
                    at,
                    at + INDEX_WINDOW_BYTES,
                    order == "<",
                    MAX_CAPLEN,
                    link_length,
                    type_at,
                    fcs_bytes,
                    linktype in FAST_LINKS,
                )
                report.file(source).units += len(offsets)
                arrival_us = seconds * 1_000_000 + fractions * ns_per_unit // 1_000
                columns = zip(
                    offsets.tolist(),
                    arrival_us.tolist(),
                    fractions.tolist(),
                    caplens.tolist(),
                    origlens.tolist(),
                    payload_start.tolist(),
                    payload_end.tolist(),
                    sources.tolist(),
                    ports.tolist(),
                    strict=True,
                )
                for offset, arrival, fraction, caplen, origlen, start, end, src, port in columns:
                    number += 1
                    if start >= 0:
                        exporter = texts.get(src)
                        if exporter is None:
                            exporter = texts[src] = _address_text(src.to_bytes(4, "big"))
                        yield Datagram(
                            buf[start:end],
                            exporter,
                            port >> 16,
                            port & 0xFFFF,
                            number,
                            offset,
                            arrival,
                            source,
                        )
                    else:
                        ts_ns = arrival * 1_000 + (0 if ns_per_unit == 1_000 else fraction % 1_000)
                        yield Frame(
                            number,
                            offset,
                            linktype,
                            ts_ns,
                            buf[offset + 16 : offset + 16 + caplen],
                            origlen,
                            fcs_bytes,
                        )
                if stop != STOP_CLEAN:
                    yield from _pcap_frames(buf, source, report, start=stop_at, number=number)
                    return
                if stop_at >= size:
                    return
                done = (stop_at // mmap.PAGESIZE) * mmap.PAGESIZE
                first = (at // mmap.PAGESIZE) * mmap.PAGESIZE
                if done > first:
                    buf.madvise(mmap.MADV_DONTNEED, first, done - first)
                at = stop_at
        finally:
            del data  # the mmap cannot close while numpy holds a view of it


def _network_layer(frame: Frame, source: str, report: RunReport) -> tuple[int, int] | None:
    """(IP version, offset of the IP header in frame.data), or None when it is not IP."""
    data = frame.data
    linktype = frame.linktype
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            _not_ip(frame, source, report, "short_frame")
            return None
        return _ethertype_chain(frame, 12, source, report)
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_ALT, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not data:
            _not_ip(frame, source, report, "short_frame")
            return None
        return (data[0] >> 4, 0)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            _not_ip(frame, source, report, "short_frame")
            return None
        if linktype == LINKTYPE_LOOP:
            family = struct.unpack_from(">I", data, 0)[0]
        else:  # host byte order of the capturing machine: accept either
            family = struct.unpack_from("<I", data, 0)[0]
            if family > 0xFFFF:
                family = struct.unpack_from(">I", data, 0)[0]
        if family == 2:
            return (4, 4)
        if family in NULL_FAMILY_IPV6:
            return (6, 4)
        _not_ip(frame, source, report, "not_ip")
        return None
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            _not_ip(frame, source, report, "short_frame")
            return None
        return _ethertype_chain(frame, 14, source, report)
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            _not_ip(frame, source, report, "short_frame")
            return None
        ethertype = _u16be.unpack_from(data, 0)[0]
        if ethertype in VLAN_TAG_TYPES:
            return _ethertype_chain(frame, 16, source, report, first=ethertype, start=20)
        return _ip_for_ethertype(ethertype, 20, frame, source, report)
    _not_ip(frame, source, report, "unsupported_linktype")
    return None


def _ethertype_chain(
    frame: Frame,
    type_at: int,
    source: str,
    report: RunReport,
    first: int | None = None,
    start: int | None = None,
) -> tuple[int, int] | None:
    """Follow VLAN tags from the EtherType at `type_at` to the network layer."""
    data = frame.data
    if first is None:
        ethertype = _u16be.unpack_from(data, type_at)[0]
        at = type_at + 2
    else:
        ethertype, at = first, start if start is not None else type_at + 2
    while ethertype in VLAN_TAG_TYPES:
        if len(data) < at + 4:
            _not_ip(frame, source, report, "short_frame")
            return None
        ethertype = _u16be.unpack_from(data, at + 2)[0]
        at += 4
    return _ip_for_ethertype(ethertype, at, frame, source, report)


def _ip_for_ethertype(
    ethertype: int, at: int, frame: Frame, source: str, report: RunReport
) -> tuple[int, int] | None:
    if ethertype == ETHERTYPE_IPV4:
        return (4, at)
    if ethertype == ETHERTYPE_IPV6:
        return (6, at)
    _not_ip(frame, source, report, "not_ip")
    return None


def _not_ip(frame: Frame, source: str, report: RunReport, reason: str) -> None:
    report.ignore(reason, source, len(frame.data))


def _datagram(
    frame: Frame,
    source: str,
    report: RunReport,
    reassembly: _Reassembly,
    streams: Transports,
    exporter_texts: dict[bytes, str],
) -> Datagram | list[Datagram] | None:
    located = _network_layer(frame, source, report)
    if located is None:
        return None
    version, at = located
    data = frame.data
    if frame.fcs_bytes and len(data) >= frame.fcs_bytes:
        data = data[: len(data) - frame.fcs_bytes]
    if version == 4:
        return _ipv4(frame, data, at, source, report, reassembly, streams, exporter_texts)
    if version == 6:
        return _ipv6(frame, data, at, source, report, reassembly, streams, exporter_texts)
    report.ignore("not_ip", source, len(frame.data))
    return None


def _ipv4(
    frame: Frame,
    data: bytes,
    at: int,
    source: str,
    report: RunReport,
    reassembly: _Reassembly,
    streams: Transports,
    exporter_texts: dict[bytes, str],
) -> Datagram | list[Datagram] | None:
    if len(data) < at + 20:
        _cut(frame, source, report, "IPv4 header cut off")
        return None
    ihl = (data[at] & 0x0F) * 4
    total_length = _u16be.unpack_from(data, at + 2)[0]
    if ihl < 20 or total_length < ihl:
        report.skip(
            MalformedInput(
                f"IPv4 header length {ihl}, total length {total_length}",
                source=source,
                offset=frame.offset,
                frame=frame.number,
                reason="bad_ip_header",
            ),
            nbytes=len(frame.data),
        )
        return None
    protocol = data[at + 9]
    if protocol != IPPROTO_UDP and protocol != IPPROTO_SCTP:
        tcp = at + ihl
        if (
            protocol == IPPROTO_TCP
            and tcp + 20 <= at + total_length <= len(data)
            and not data[at + 6] & 0x3F
            and not data[at + 7]
            and (
                streams.tcp.open
                or data[tcp + 13] & 0x07
                or ihl + (data[tcp + 12] >> 4) * 4 < total_length
            )
        ):
            # a whole, unfragmented segment that may carry IPFIX (tcp_streams.py); one
            # without payload, SYN, FIN or RST is other traffic at once while no IPFIX
            # stream is open (a FIN too was, and a stream on another port not yet told
            # apart did not end at it: its one message was named at a later frame, an
            # audit; FINs and RSTs are a connection's last frames, few beside its ACKs)
            return _tcp_segment(
                frame,
                data[tcp : at + total_length],
                bytes(data[at + 12 : at + 16]),
                bytes(data[at + 16 : at + 20]),
                streams.tcp,
                exporter_texts,
            )
        if (
            protocol == IPPROTO_TCP
            and at + total_length > len(data)
            and streams.tcp.carries(
                bytes(data[at + 12 : at + 16]), bytes(data[at + 16 : at + 20]), data[tcp : tcp + 4]
            )
        ):
            _cut(frame, source, report, TCP_SEGMENT_CUT)
            return None
        report.ignore("not_udp", source, len(frame.data))
        return None
    # trim Ethernet padding/FCS: the IP total length is the truth, unless the capture is short
    end = min(len(data), at + total_length)
    src = bytes(data[at + 12 : at + 16])
    flags_offset = _u16be.unpack_from(data, at + 6)[0]
    more = bool(flags_offset & 0x2000)
    fragment_offset = (flags_offset & 0x1FFF) * 8
    payload = data[at + ihl : end]
    if more or fragment_offset:
        whole = reassembly.add(
            _ipv4_key(data, at), fragment_offset, more, bytes(payload), frame, source, report
        )
        if whole is None:
            return None
        payload = whole
    if protocol == IPPROTO_SCTP:
        return streams.sctp.packet(
            frame.number,
            frame.offset,
            frame.ts_ns,
            src,
            bytes(data[at + 16 : at + 20]),
            payload,
            len(frame.data),
            exporter_texts,
            cut=at + total_length > len(data),
        )
    return _udp_datagram(
        frame, payload, src, source, report, exporter_texts, cut=at + total_length > len(data)
    )


def _ipv6(
    frame: Frame,
    data: bytes,
    at: int,
    source: str,
    report: RunReport,
    reassembly: _Reassembly,
    streams: Transports,
    exporter_texts: dict[bytes, str],
) -> Datagram | list[Datagram] | None:
    if len(data) < at + 40:
        _cut(frame, source, report, "IPv6 header cut off")
        return None
    payload_length = _u16be.unpack_from(data, at + 4)[0]
    src = bytes(data[at + 8 : at + 24])
    end = min(len(data), at + 40 + payload_length)
    cut = at + 40 + payload_length > len(data)
    walked = _ipv6_chain(data, at, end)
    if isinstance(walked, str):
        _cut(frame, source, report, walked)
        return None
    next_header, position, fragment = walked
    payload = data[position:end]
    if fragment is not None:
        # what follows a fragment header is the fragmentable part, whose own extension
        # headers (RFC 8200 lets Destination Options come there) are read once it is whole:
        # walked in each fragment, a later fragment's data read as a header (found by
        # fuzzing: every record of such a capture lost)
        if fragment[0] or fragment[1]:
            key = _ipv6_key(data, at, fragment[2])
            if next_header not in _IPV6_REASSEMBLED or reassembly.other_traffic(
                key, _upper_protocol(payload, next_header, fragment[0]), report, source
            ):
                report.ignore("not_udp", source, len(frame.data))
                return None
            whole = reassembly.add(
                key, fragment[0], fragment[1], bytes(payload), frame, source, report
            )
            if whole is None:
                return None
            payload = whole
        inner = _walk_ipv6(payload, next_header, 0, len(payload))
        if isinstance(inner, str) or inner[2] is not None:
            _cut(
                frame,
                source,
                report,
                inner
                if isinstance(inner, str)
                else "IPv6 fragment header inside a fragmentable part",
            )
            return None
        next_header, position, _ = inner
        payload = payload[position:]
    if next_header == IPPROTO_TCP and (fragment is None or not (fragment[0] or fragment[1])):
        if not cut:
            return _tcp_segment(
                frame, payload, src, data[at + 24 : at + 40], streams.tcp, exporter_texts
            )
        if streams.tcp.carries(src, bytes(data[at + 24 : at + 40]), payload[:4]):
            _cut(frame, source, report, TCP_SEGMENT_CUT)
            return None
    if next_header != IPPROTO_UDP and next_header != IPPROTO_SCTP:
        report.ignore("not_udp", source, len(frame.data))
        return None
    if next_header == IPPROTO_SCTP:
        return streams.sctp.packet(
            frame.number,
            frame.offset,
            frame.ts_ns,
            src,
            bytes(data[at + 24 : at + 40]),
            payload,
            len(frame.data),
            exporter_texts,
            cut=cut,
        )
    return _udp_datagram(frame, payload, src, source, report, exporter_texts, cut=cut)


def _tcp_segment(
    frame: Frame,
    segment: bytes,
    src: bytes,
    dst: bytes,
    streams: TcpStreams,
    exporter_texts: dict[bytes, str],
) -> list[Datagram]:
    """A whole TCP segment: IPFIX over TCP, cut back into messages (tcp_streams.py). A
    segment the capture cut short is left as other traffic: its bytes are not all there."""
    return streams.segment(
        frame.number, frame.offset, frame.ts_ns, src, dst, segment, len(frame.data), exporter_texts
    )


TCP_SEGMENT_CUT = (
    "a TCP segment of an IPFIX stream cut by the capture's snap length: its bytes are not all there"
)


def _cut(frame: Frame, source: str, report: RunReport, message: str) -> None:
    report.skip(
        TruncatedInput(message, source=source, offset=frame.offset, frame=frame.number),
        nbytes=len(frame.data),
    )


def _udp_datagram(
    frame: Frame,
    payload: bytes,
    src: bytes,
    source: str,
    report: RunReport,
    exporter_texts: dict[bytes, str],
    *,
    cut: bool,
) -> Datagram | None:
    if len(payload) < 8:
        _cut(frame, source, report, "UDP header cut off")
        return None
    src_port, dst_port, udp_length = _udp.unpack_from(payload, 0)
    if udp_length < 8:
        if udp_length == 0 and len(payload) > 65_535:  # IPv6 jumbogram: length from IP
            udp_length = len(payload)
        else:
            report.skip(
                MalformedInput(
                    f"UDP length {udp_length} below its own header",
                    source=source,
                    offset=frame.offset,
                    frame=frame.number,
                    reason="bad_udp_header",
                ),
                nbytes=len(payload),
            )
            return None
    if udp_length > len(payload) and not cut:
        report.skip(
            MalformedInput(
                f"UDP length {udp_length} but IP carries {len(payload)} bytes",
                source=source,
                offset=frame.offset,
                frame=frame.number,
                reason="bad_udp_header",
            ),
            nbytes=len(payload),
        )
        return None
    tail = len(payload) - udp_length
    if tail > 0 and not cut and any(payload[udp_length:]):
        # the IP packet carries more than its UDP datagram: a damaged UDP length hides
        # the rest of the export (zero bytes there are padding)
        report.skip(
            MalformedInput(
                f"UDP length {udp_length} but IP carries {len(payload)} "
                f"bytes; the {tail} after the datagram are not padding",
                source=source,
                offset=frame.offset,
                frame=frame.number,
                reason="bad_udp_header",
            ),
            nbytes=tail,
        )
    # a snap-length-cut frame still goes on: the decoders keep every complete set in it
    body = bytes(payload[8:udp_length])
    exporter = exporter_texts.get(src)
    if exporter is None:
        exporter = _address_text(src)
        exporter_texts[src] = exporter
    return Datagram(
        body, exporter, src_port, dst_port, frame.number, frame.offset, frame.ts_ns // 1_000, source
    )


def _address_text(raw: bytes) -> str:
    """An exporter's source address as text. An IPv6 packet from an IPv4-mapped address
    (a dual-stack exporter's socket) keeps its IPv6 form, apart from the same host's IPv4
    packets, in RFC 5952's dotted tail (section 5), as tshark shows it: ipaddress before
    Python 3.13 gave ::ffff:c000:201, which no one reads as 192.0.2.1."""
    if len(raw) == 4:
        return ".".join(str(b) for b in raw)
    if raw[:12] == V4_MAPPED_PREFIX:
        return "::ffff:" + ".".join(str(b) for b in raw[12:])
    import ipaddress

    return str(ipaddress.IPv6Address(raw))


# what a fragment header may lead to that reassembly is worth it for: UDP and SCTP (flow
# exports), or extension headers of the fragmentable part before them
_IPV6_REASSEMBLED = frozenset({IPPROTO_UDP, IPPROTO_SCTP, *IPV6_EXTENSION_HEADERS, IPV6_AH})


def _upper_protocol(payload: bytes, next_header: int, offset: int) -> int | None:
    """The protocol a first IPv6 fragment (`offset` 0) shows behind the extension headers
    its fragmentable part begins with; None for a later fragment or headers it cuts."""
    if offset:
        return None
    if next_header in (IPPROTO_UDP, IPPROTO_SCTP):
        return next_header
    walked = _walk_ipv6(payload, next_header, 0, len(payload))
    return None if isinstance(walked, str) or walked[2] is not None else walked[0]


def _ipv4_key(data: bytes, at: int) -> tuple[object, ...]:
    """Reassembly key of an IPv4 fragment: (src, dst, protocol, identification)."""
    return (
        4,
        bytes(data[at + 12 : at + 16]),
        bytes(data[at + 16 : at + 20]),
        data[at + 9],
        bytes(data[at + 4 : at + 6]),
    )


def _ipv6_key(data: bytes, at: int, identification: bytes) -> tuple[object, ...]:
    """Reassembly key of an IPv6 fragment: (src, dst, identification)."""
    return (6, bytes(data[at + 8 : at + 24]), bytes(data[at + 24 : at + 40]), identification)


def _ipv6_chain(
    data: bytes, at: int, end: int
) -> tuple[int, int, tuple[int, bool, bytes] | None] | str:
    """Walk the extension headers of the IPv6 packet at `at` (_walk_ipv6)."""
    return _walk_ipv6(data, data[at + 6], at + 40, end)


def _walk_ipv6(
    data: bytes, next_header: int, position: int, end: int
) -> tuple[int, int, tuple[int, bool, bytes] | None] | str:
    """Walk extension headers from `position`: (upper protocol, its offset, None), or, at a
    fragment header, (the header after it, where its fragmentable part starts, (offset,
    more, identification)); or what is cut off."""
    while True:
        if next_header in IPV6_EXTENSION_HEADERS or next_header == IPV6_AH:
            if end < position + 2:
                return "IPv6 extension header cut off"
            if next_header == IPV6_AH:
                length = (data[position + 1] + 2) * 4
            else:
                length = (data[position + 1] + 1) * 8
            next_header = data[position]
            position += length
        elif next_header == IPV6_FRAGMENT:
            if end < position + 8:
                return "IPv6 fragment header cut off"
            offset_flags = _u16be.unpack_from(data, position + 2)[0]
            fragment = (
                (offset_flags & 0xFFF8),
                bool(offset_flags & 1),
                bytes(data[position + 4 : position + 8]),
            )
            return data[position], position + 8, fragment
        else:
            return next_header, position, None


def fragment_key(frame: Frame) -> tuple[object, ...] | None:
    """The reassembly key of an IPv4/IPv6 fragment (the same key reassembly uses), else None."""
    found = fragment_of(frame)
    return None if found is None else found[0]


def fragment_of(frame: Frame) -> tuple[tuple[object, ...], int, bool, int] | None:
    """(reassembly key, byte offset, more fragments, payload length) of an IPv4/IPv6
    fragment, else None."""
    located = _network_layer(frame, "", RunReport())
    if located is None:
        return None
    version, at = located
    data = frame.data
    if version == 4 and len(data) >= at + 20:
        flags_offset = _u16be.unpack_from(data, at + 6)[0]
        if not flags_offset & 0x3FFF:
            return None
        header = (data[at] & 0x0F) * 4
        length = _u16be.unpack_from(data, at + 2)[0] - header
        return (
            _ipv4_key(data, at),
            (flags_offset & 0x1FFF) * 8,
            bool(flags_offset & 0x2000),
            length,
        )
    if version == 6 and len(data) >= at + 40:
        walked = _ipv6_chain(data, at, len(data))
        if not isinstance(walked, str) and walked[2] is not None and (walked[2][0] or walked[2][1]):
            length = _u16be.unpack_from(data, at + 4)[0] + at + 40 - walked[1]
            return _ipv6_key(data, at, walked[2][2]), walked[2][0], walked[2][1], length
    return None


def tail_fragments(
    path: Path, since: dict[tuple[object, ...], int]
) -> dict[tuple[object, ...], list[Frame]]:
    """The fragments of the datagrams `since` names (reassembly key -> the earliest capture
    time they can have, FRAGMENT_TIMEOUT_NS before the datagram's latest fragment) that a
    capture ends before completing: a rotation's cut between fragments (their datagram
    completed in a later file, whose provenance names its last fragment there). Fragments
    of a datagram the file completes (identifications are reused), or older, are not among
    them."""
    held: dict[tuple[object, ...], list[tuple[Frame, int, bool, int]]] = {}
    for frame in iter_frames(path, RunReport()):
        found = fragment_of(frame)
        if found is None or found[0] not in since or 0 < frame.ts_ns < since[found[0]]:
            continue
        key, offset, more, length = found
        pieces = held.setdefault(key, [])
        pieces.append((frame, offset, more, length))
        if covers([piece[1:] for piece in pieces]):
            del held[key]
    return {key: [piece[0] for piece in pieces] for key, pieces in held.items()}


def covers(spans: list[tuple[int, bool, int]]) -> bool:
    """Whether fragments (byte offset, more fragments, length) hold every byte of their
    datagram."""
    ends = [offset + length for offset, more, length in spans if not more]
    if not ends:
        return False
    covered = 0
    for offset, _, length in sorted(spans):
        if offset > covered:
            return False
        covered = max(covered, offset + length)
    return covered >= ends[0]


def over_connection(frame: Frame) -> bool:
    """Whether the frame is a TCP segment or an SCTP packet (an IPFIX message's provenance
    over a connection: the frame that completed it, which may hold pieces of other
    messages), not the UDP datagram, or its last fragment, that export provenance otherwise
    names."""
    located = _network_layer(frame, "", RunReport())
    if located is None:
        return False
    version, at = located
    data = frame.data
    if version == 4:
        return len(data) >= at + 20 and data[at + 9] in (IPPROTO_TCP, IPPROTO_SCTP)
    if version == 6 and len(data) >= at + 40:
        walked = _ipv6_chain(data, at, len(data))
        return not isinstance(walked, str) and walked[0] in (IPPROTO_TCP, IPPROTO_SCTP)
    return False


def read_datagram_frames(path: Path, offsets: set[int]) -> dict[int, list[Frame]]:
    """For each offset, every frame that carried that datagram, in capture order.

    A datagram's provenance names the frame that completed it; when that frame is an IP
    fragment, the earlier fragments of the same datagram are found by their reassembly key
    so that an export holds the whole datagram.
    """
    wanted = set(offsets)
    found: dict[int, list[Frame]] = {}
    if not wanted:
        return found
    last = max(wanted)
    pending: OrderedDict[tuple[object, ...], list[Frame]] = OrderedDict()
    for frame in iter_frames(path, RunReport()):
        key = fragment_key(frame)
        if frame.offset in wanted:
            found[frame.offset] = [*pending.pop(key, []), frame] if key is not None else [frame]
        elif key is not None:
            pending.setdefault(key, []).append(frame)
            pending.move_to_end(key)
            if len(pending) > MAX_PENDING_FRAGMENT_SETS:
                pending.popitem(last=False)
        if frame.offset >= last:
            break
    return found


def read_frames(path: Path, offsets: set[int]) -> dict[int, Frame]:
    """Read back the frames whose record header or block starts at one of `offsets`, in one pass."""
    wanted = set(offsets)
    found: dict[int, Frame] = {}
    if not wanted:
        return found
    last = max(wanted)
    for frame in iter_frames(path, RunReport()):
        if frame.offset in wanted:
            found[frame.offset] = frame
        if frame.offset >= last:
            break
    return found
