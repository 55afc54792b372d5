"""Flow fields from the header of a sampled packet (IPFIX dataLinkFrameSection, 315).

Packet-sampling exporters (Cisco IOS XR and NX-OS, Juniper MX with inline monitoring) send
a record per sampled packet holding no flow fields at all: its interface, the frame's
size, and its first bytes as they crossed the wire (RFC 7133 §4.7, IANA element 315).
Everything a session needs is in those bytes. Read as a template of no address fields,
each such record was a `::` -> `::` flow of 0 bytes: a router's whole sample one session.

The walk, the same in the numba kernel (`read_frames`) and in the plain-Python reference
(`read_frame_reference`) the tests hold it to:

- Ethernet, then any 802.1Q / 802.1ad / QinQ tags (0x8100, 0x88A8, 0x9100);
- MPLS (0x8847, 0x8848): labels to the bottom of the stack, then IPv4 or IPv6 by the
  first nibble, or a pseudowire control word (nibble 0) and the Ethernet frame it
  carries (EVPN / Ethernet over MPLS);
- IPv4 (a header length of at least 20 bytes) and IPv6 (its hop-by-hop, routing,
  destination options, fragment and authentication headers walked to the payload);
- a tunnel's inner packet, as a template's repeated fields are read (templates.py): IP in
  IP (4, 41: SRv6's encapsulation too) and GRE (IPv4, IPv6 or bridged Ethernet) of a first
  fragment or a whole packet. The innermost IP header whose 20 or 40 bytes were captured
  is the record's: a section cut inside an inner header reads as its outer one;
- the ports of TCP, UDP, UDP-Lite and SCTP, TCP's flags, ICMP's and ICMPv6's type and
  code (as dst_port, type * 256 + code), when the section holds them and the packet is
  not a later fragment.

A record counts its packet (packets 1) and that IP header's length in octets (IPv4's
total length, IPv6's payload length + 40), unless the template carries its own counters.
A section with no IP header (another link type, or cut short) leaves the record as it
was, and says so.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..jit_cache import drop_stale_jit_cache, njit

FRAME_BYTES = 256  # of a section kept per record: headers, not payload
MAX_STEPS = 16  # headers walked per section: a bound, not a limit real frames reach

# out[:, k] of read_frames
OK, VERSION, PROTOCOL, SRC_PORT, DST_PORT, TOS, TCP_FLAGS, IP_LENGTH = range(8)
OUT_COLUMNS = 8

_ETHERNET, _MPLS, _IPV4, _IPV6, _GRE, _DONE = range(6)
_VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
_PORTS = (6, 17, 132, 136)  # TCP, UDP, SCTP, UDP-Lite
_IPV6_EXTENSIONS = (0, 43, 44, 51, 60)


class FrameHeader(NamedTuple):
    """What the reference reads from one section (None: no IP header)."""

    version: int
    src: bytes  # 4 or 16 bytes
    dst: bytes
    protocol: int
    src_port: int
    dst_port: int
    tos: int
    tcp_flags: int
    ip_length: int


def read_frame_reference(section: bytes) -> FrameHeader | None:
    """The plain-Python reading of one section: the kernel's specification."""
    n = len(section)

    def u16(at: int) -> int:
        return int.from_bytes(section[at : at + 2], "big")

    found: tuple[int, bytes, bytes, int, int, int, int, bool] | None = None
    # (version, src, dst, tos, protocol, ip length, L4 offset or -1, a later fragment)
    kind, at = _ETHERNET, 0
    for _ in range(MAX_STEPS):
        if kind == _ETHERNET:
            if at + 14 > n:
                break
            ethertype, at = u16(at + 12), at + 14
            while ethertype in _VLAN_TYPES and at + 4 <= n:
                ethertype, at = u16(at + 2), at + 4
            kind = {0x0800: _IPV4, 0x86DD: _IPV6, 0x8847: _MPLS, 0x8848: _MPLS}.get(
                ethertype, _DONE
            )
        elif kind == _MPLS:
            labels = 0
            while at + 4 <= n and labels < MAX_STEPS:
                bottom = section[at + 2] & 1
                at, labels = at + 4, labels + 1
                if bottom:
                    break
            else:
                break  # cut inside the stack, or too deep
            if at >= n:
                break
            nibble = section[at] >> 4
            if nibble == 0:
                kind, at = _ETHERNET, at + 4  # a pseudowire's control word, then Ethernet
            else:
                kind = {4: _IPV4, 6: _IPV6}.get(nibble, _DONE)
        elif kind == _IPV4:
            if at + 20 > n or section[at] >> 4 != 4 or (section[at] & 15) < 5:
                break
            header = (section[at] & 15) * 4
            later = (u16(at + 6) & 0x1FFF) != 0
            protocol = section[at + 9]
            found = (
                4,
                section[at + 12 : at + 16],
                section[at + 16 : at + 20],
                section[at + 1],
                protocol,
                u16(at + 2),
                at + header,
                later,
            )
            kind, at = _inner(protocol, later), at + header
        elif kind == _IPV6:
            if at + 40 > n or section[at] >> 4 != 6:
                break
            traffic_class = (section[at] & 15) << 4 | section[at + 1] >> 4
            following, l4, later = section[at + 6], at + 40, False
            for _ in range(MAX_STEPS):
                if following not in _IPV6_EXTENSIONS:
                    break
                if l4 + 8 > n:
                    l4 = -1  # cut inside the extension headers: no ports
                    break
                if following == 44:
                    later = (u16(l4 + 2) >> 3) != 0
                    size = 8
                elif following == 51:
                    size = (section[l4 + 1] + 2) * 4
                else:
                    size = (section[l4 + 1] + 1) * 8
                following, l4 = section[l4], l4 + size
            else:
                l4 = -1
            found = (
                6,
                section[at + 8 : at + 24],
                section[at + 24 : at + 40],
                traffic_class,
                following,
                u16(at + 4) + 40,
                l4,
                later,
            )
            if l4 < 0:
                break
            kind, at = _inner(following, later), l4
        elif kind == _GRE:
            if at + 4 > n:
                break
            flags = u16(at)
            if flags & 7:
                break  # GRE version 1 (PPTP) carries PPP
            size = 4 + 4 * ((flags >> 15) & 1) + 4 * ((flags >> 13) & 1) + 4 * ((flags >> 12) & 1)
            kind = {0x0800: _IPV4, 0x86DD: _IPV6, 0x6558: _ETHERNET}.get(u16(at + 2), _DONE)
            at += size
        else:
            break
    if found is None:
        return None
    version, src, dst, tos, protocol, length, l4, later = found
    src_port = dst_port = flags = 0
    if not later and l4 >= 0:
        if protocol in _PORTS and l4 + 4 <= n:
            src_port, dst_port = u16(l4), u16(l4 + 2)
            if protocol == 6 and l4 + 14 <= n:
                flags = section[l4 + 13] | (section[l4 + 12] & 1) << 8
        elif protocol in (1, 58) and l4 + 2 <= n:
            dst_port = section[l4] << 8 | section[l4 + 1]
    return FrameHeader(
        version, bytes(src), bytes(dst), protocol, src_port, dst_port, tos, flags, length
    )


def _inner(protocol: int, later: bool) -> int:
    if later:
        return _DONE
    return {4: _IPV4, 41: _IPV6, 47: _GRE}.get(protocol, _DONE)


@njit(cache=True, nogil=True)
def _u16(section: np.ndarray, at: int | np.int64) -> np.int64:
    return (np.int64(section[at]) << 8) | np.int64(section[at + 1])


@njit(cache=True, nogil=True)
def _inner_kind(protocol: int | np.int64) -> int:
    """The header a tunnel carries next (IP in IP, IPv6 in IP, GRE), -1 when none."""
    if protocol == 4:
        return 2
    if protocol == 41:
        return 3
    if protocol == 47:
        return 4
    return -1


@njit(cache=True, nogil=True)
def _read_one(
    section: np.ndarray, n: np.int64, src: np.ndarray, dst: np.ndarray, out: np.ndarray
) -> None:
    """One section into out (OK.. IP_LENGTH) and src/dst (16 bytes, IPv4 mapped)."""
    kind = 0  # _ETHERNET
    at: int | np.int64 = 0
    have = False
    version = 0
    tos = 0
    protocol: int | np.int64 = 0
    length: int | np.int64 = 0
    l4: int | np.int64 = -1
    later = False
    header_at: int | np.int64 = 0
    for _ in range(MAX_STEPS):
        if kind == 0:  # Ethernet
            if at + 14 > n:
                break
            ethertype = _u16(section, at + 12)
            at += 14
            while (
                ethertype == 0x8100 or ethertype == 0x88A8 or ethertype == 0x9100
            ) and at + 4 <= n:
                ethertype = _u16(section, at + 2)
                at += 4
            if ethertype == 0x0800:
                kind = 2
            elif ethertype == 0x86DD:
                kind = 3
            elif ethertype == 0x8847 or ethertype == 0x8848:
                kind = 1
            else:
                break
        elif kind == 1:  # MPLS
            labels = 0
            bottom = False
            while at + 4 <= n and labels < MAX_STEPS:
                bottom = (section[at + 2] & 1) == 1
                at += 4
                labels += 1
                if bottom:
                    break
            if not bottom or at >= n:
                break
            nibble = section[at] >> 4
            if nibble == 0:
                kind = 0
                at += 4
            elif nibble == 4:
                kind = 2
            elif nibble == 6:
                kind = 3
            else:
                break
        elif kind == 2:  # IPv4
            if at + 20 > n or section[at] >> 4 != 4 or (section[at] & 15) < 5:
                break
            header = np.int64(section[at] & 15) * 4
            have = True
            version = 4
            header_at = at
            tos = section[at + 1]
            length = _u16(section, at + 2)
            later = (_u16(section, at + 6) & 0x1FFF) != 0
            protocol = section[at + 9]
            l4 = at + header
            at = l4
            if later:
                break
            kind = _inner_kind(protocol)
            if kind < 0:
                break
        elif kind == 3:  # IPv6
            if at + 40 > n or section[at] >> 4 != 6:
                break
            following = np.int64(section[at + 6])
            p = at + 40
            fragment_later = False
            cut = False
            walked = False
            for _ in range(MAX_STEPS):
                if not (
                    following == 0
                    or following == 43
                    or following == 44
                    or following == 51
                    or following == 60
                ):
                    walked = True
                    break
                if p + 8 > n:
                    cut = True
                    break
                if following == 44:
                    fragment_later = (_u16(section, p + 2) >> 3) != 0
                    size: int | np.int64 = 8
                elif following == 51:
                    size = (np.int64(section[p + 1]) + 2) * 4
                else:
                    size = (np.int64(section[p + 1]) + 1) * 8
                following = np.int64(section[p])
                p += size
            have = True
            version = 6
            header_at = at
            tos = ((section[at] & 15) << 4) | (section[at + 1] >> 4)
            length = _u16(section, at + 4) + 40
            protocol = following
            later = fragment_later
            l4 = p if (walked and not cut) else -1
            if l4 < 0 or later:
                break
            at = p
            kind = _inner_kind(protocol)
            if kind < 0:
                break
        elif kind == 4:  # GRE
            if at + 4 > n:
                break
            flags = _u16(section, at)
            if flags & 7:
                break
            size = 4 + 4 * ((flags >> 15) & 1) + 4 * ((flags >> 13) & 1) + 4 * ((flags >> 12) & 1)
            carried = _u16(section, at + 2)
            at += size
            if carried == 0x0800:
                kind = 2
            elif carried == 0x86DD:
                kind = 3
            elif carried == 0x6558:
                kind = 0
            else:
                break
        else:
            break
    if not have:
        return
    out[OK] = 1
    out[VERSION] = version
    out[PROTOCOL] = protocol
    out[TOS] = tos
    out[IP_LENGTH] = length
    if version == 4:
        src[10] = 0xFF
        src[11] = 0xFF
        dst[10] = 0xFF
        dst[11] = 0xFF
        for i in range(4):
            src[12 + i] = section[header_at + 12 + i]
            dst[12 + i] = section[header_at + 16 + i]
    else:
        for i in range(16):
            src[i] = section[header_at + 8 + i]
            dst[i] = section[header_at + 24 + i]
    if later or l4 < 0:
        return
    if (protocol == 6 or protocol == 17 or protocol == 132 or protocol == 136) and l4 + 4 <= n:
        out[SRC_PORT] = _u16(section, l4)
        out[DST_PORT] = _u16(section, l4 + 2)
        if protocol == 6 and l4 + 14 <= n:
            out[TCP_FLAGS] = section[l4 + 13] | ((np.int64(section[l4 + 12]) & 1) << 8)
    elif (protocol == 1 or protocol == 58) and l4 + 2 <= n:
        out[DST_PORT] = _u16(section, l4)


@njit(cache=True, nogil=True)
def _read_all(
    sections: np.ndarray, lengths: np.ndarray, src: np.ndarray, dst: np.ndarray, out: np.ndarray
) -> None:
    for i in range(sections.shape[0]):
        n = min(np.int64(lengths[i]), np.int64(sections.shape[1]))
        _read_one(sections[i], n, src[i], dst[i], out[i])


def read_frames(
    sections: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src (n, 16) uint8, dst (n, 16) uint8, out (n, OUT_COLUMNS) int64) of the sections
    `sections` (n, width) uint8, each `lengths` bytes long (at most width)."""
    n = len(lengths)
    src = np.zeros((n, 16), dtype=np.uint8)
    dst = np.zeros((n, 16), dtype=np.uint8)
    out = np.zeros((n, OUT_COLUMNS), dtype=np.int64)
    if n:
        _read_all(
            np.ascontiguousarray(sections, dtype=np.uint8),
            np.ascontiguousarray(lengths, dtype=np.int64),
            src,
            dst,
            out,
        )
    return src, dst, out


drop_stale_jit_cache(globals())
