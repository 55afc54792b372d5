"""Records of a sampled packet's header (dataLinkFrameSection, 315): the numba walk against
its plain-Python reference, and the records the exports reader makes of them.

Found by auditing akvorado's captures (Cisco IOS XR datalink and SRv6, EVPN over MPLS,
Juniper inline monitoring): templates of an interface, a frame size and the frame's first
bytes, no flow field; every record was a `::` -> `::` flow of 0 bytes, said nowhere.
"""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.addresses import address_text
from obserae_forensics.readers.frames import (
    DST_PORT,
    FRAME_BYTES,
    IP_LENGTH,
    OK,
    PROTOCOL,
    SRC_PORT,
    TCP_FLAGS,
    TOS,
    VERSION,
    read_frame_reference,
    read_frames,
)
from tests.readers.test_ipfix import data, decode, message, template

MACS = bytes.fromhex("182ad36e503f b402165592f4".replace(" ", ""))


def ethernet(ethertype: int, payload: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    return tagged(tuple((0x8100, vlan) for vlan in vlans), ethertype, payload)


def ipv4(
    src: str,
    dst: str,
    protocol: int,
    payload: bytes,
    *,
    tos: int = 0,
    fragment: int = 0,
    total: int | None = None,
) -> bytes:
    length = 20 + len(payload) if total is None else total
    return (
        struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            tos,
            length,
            0x8F00,
            fragment,
            64,
            protocol,
            0,
            ipaddress.IPv4Address(src).packed,
            ipaddress.IPv4Address(dst).packed,
        )
        + payload
    )


def ipv6(
    src: str,
    dst: str,
    following: int,
    payload: bytes,
    *,
    traffic_class: int = 0,
    payload_length: int | None = None,
) -> bytes:
    length = len(payload) if payload_length is None else payload_length
    first = 0x60000000 | traffic_class << 20
    return (
        struct.pack(
            ">IHBB16s16s",
            first,
            length,
            following,
            64,
            ipaddress.IPv6Address(src).packed,
            ipaddress.IPv6Address(dst).packed,
        )
        + payload
    )


def with_options(packet: bytes, options: bytes) -> bytes:
    """An IPv4 packet with `options` (a multiple of 4 bytes) after its 20-byte header."""
    words = 5 + len(options) // 4
    total = int.from_bytes(packet[2:4], "big") + len(options)
    return (
        bytes([0x40 | words, packet[1]])
        + total.to_bytes(2, "big")
        + packet[4:20]
        + options
        + packet[20:]
    )


def tagged(tags: tuple[tuple[int, int], ...], ethertype: int, payload: bytes) -> bytes:
    """An Ethernet frame of (TPID, tag) tags: 802.1ad's 0x88A8 and the older 0x9100 too."""
    return (
        MACS
        + b"".join(struct.pack(">HH", tpid, tag) for tpid, tag in tags)
        + struct.pack(">H", ethertype)
        + payload
    )


def extension(following: int, kind: int, payload: bytes = b"") -> bytes:
    """An IPv6 extension header: hop-by-hop (0) and destination options (60) of 8 bytes
    (a router alert, PadN), a fragment header (44) of `payload` (offset and M flag), an
    authentication header (51) of 24 bytes (HMAC-SHA1-96)."""
    if kind in (0, 60):
        return struct.pack(">BB", following, 0) + b"\x05\x02\x00\x00\x01\x00"
    if kind == 44:
        return struct.pack(">BB", following, 0) + payload + b"\x8f\x00\x00\x01"
    assert kind == 51
    return struct.pack(">BBHII", following, 4, 0, 0x1000, 7) + b"\xaa" * 12


def udp(src: int, dst: int) -> bytes:
    return struct.pack(">HHHH", src, dst, 8, 0)


def tcp(src: int, dst: int, flags: int) -> bytes:
    """A TCP header of `flags` (9 bits: NS, the ECN nonce, is bit 8, in the offset byte)."""
    return struct.pack(">HHIIBBHHH", src, dst, 1, 0, 0x50 | flags >> 8, flags & 0xFF, 1024, 0, 0)


def mpls(*labels: int) -> bytes:
    return b"".join(
        struct.pack(">I", label << 12 | (1 if i == len(labels) - 1 else 0) << 8 | 64)
        for i, label in enumerate(labels)
    )


def gre(dst: str, header: bytes, inner: bytes) -> bytes:
    """An Ethernet frame of an IPv4 packet from 192.0.2.1 carrying GRE: `header`, `inner`."""
    return ethernet(0x0800, ipv4("192.0.2.1", dst, 47, header + inner))


def srh(following: int, segments: int = 2) -> bytes:
    """An SRv6 routing header (type 4) of `segments` segments."""
    return (
        struct.pack(">BBBBBBH", following, 2 * segments, 4, segments - 1, segments - 1, 0, 0)
        + b"\x20\x01\x0d\xb8"
        + b"\0" * (16 * segments - 4)
    )


def kernel(section: bytes, width: int = FRAME_BYTES) -> tuple[str, str, tuple[int, ...]]:
    buf = np.zeros((1, width), dtype=np.uint8)
    kept = section[:width]
    buf[0, : len(kept)] = np.frombuffer(kept, dtype=np.uint8)
    src, dst, out = read_frames(buf, np.array([len(kept)]))
    return (
        address_text(src[0].tobytes()),
        address_text(dst[0].tobytes()),
        tuple(int(v) for v in out[0]),
    )


def reference(section: bytes) -> tuple[str, str, tuple[int, ...]]:
    found = read_frame_reference(section[:FRAME_BYTES])
    if found is None:
        return "::", "::", (0,) * 8
    mapped = (lambda a: b"\0" * 10 + b"\xff\xff" + a) if found.version == 4 else (lambda a: a)
    out = [0] * 8
    out[OK], out[VERSION], out[PROTOCOL] = 1, found.version, found.protocol
    out[SRC_PORT], out[DST_PORT], out[TOS] = found.src_port, found.dst_port, found.tos
    out[TCP_FLAGS], out[IP_LENGTH] = found.tcp_flags, found.ip_length
    return address_text(mapped(found.src)), address_text(mapped(found.dst)), tuple(out)


CASES = [  # (section, (src, dst, version, protocol, src port, dst port, tos, flags, length))
    # Cisco IOS XR datalink: 802.1Q, IPv4, UDP (akvorado's datalink capture, its values)
    (
        ethernet(
            0x0800,
            ipv4("51.51.51.51", "52.52.52.52", 17, udp(55501, 11777), total=96),
            vlans=(231,),
        ),
        ("51.51.51.51", "52.52.52.52", 4, 17, 55501, 11777, 0, 0, 96),
    ),
    # EVPN: MPLS labels, a control word, the customer's Ethernet frame, IPv4, TCP ACK
    (
        ethernet(
            0x8847,
            mpls(300012, 17)
            + b"\0\0\0\0"
            + ethernet(
                0x0800,
                ipv4("198.51.100.1", "198.51.100.2", 6, tcp(443, 55427, 0x10), tos=32, total=1492),
            ),
        ),
        ("198.51.100.1", "198.51.100.2", 4, 6, 443, 55427, 32, 0x10, 1492),
    ),
    # SRv6: IPv6 with a routing header carrying IPv4, ICMP echo request: the inner packet
    (
        ethernet(
            0x86DD,
            ipv6(
                "fc30:2200:1b::f",
                "fc30:2200:23:e009::",
                43,
                srh(4) + ipv4("8.8.8.8", "213.36.140.100", 1, b"\x08\x00\0\0", total=64),
            ),
        ),
        ("8.8.8.8", "213.36.140.100", 4, 1, 0, 0x0800, 0, 0, 64),
    ),
    # MPLS straight to IPv6, UDP; a later IPv4 fragment has no ports
    (
        ethernet(
            0x8847,
            mpls(16, 24)
            + ipv6("2001:db8::1", "2001:db8::2", 17, udp(5353, 53), traffic_class=0xB8),
        ),
        ("2001:db8::1", "2001:db8::2", 6, 17, 5353, 53, 0xB8, 0, 48),
    ),
    (
        ethernet(0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2), fragment=185)),
        ("10.0.0.1", "10.0.0.2", 4, 17, 0, 0, 0, 0, 28),
    ),
    # GRE carrying IPv4 (key present): the inner packet
    (
        gre(
            "192.0.2.2",
            struct.pack(">HHI", 0x2000, 0x0800, 7),
            ipv4("10.1.1.1", "10.2.2.2", 6, tcp(40000, 22, 0x02)),
        ),
        ("10.1.1.1", "10.2.2.2", 4, 6, 40000, 22, 0, 0x02, 40),
    ),
    # IPv4 in IPv6 cut inside the inner header: the outer one
    (
        ethernet(0x86DD, ipv6("2001:db8::a", "2001:db8::b", 4, b"\x45\0\0\x54", payload_length=84)),
        ("2001:db8::a", "2001:db8::b", 6, 4, 0, 0, 0, 0, 124),
    ),
    # The thirty-sixth session's mutation audit: each header the walk knows, once at least.
    # 802.1ad then 802.1Q (QinQ), IPv4, TCP SYN with ECN's CWR, ECE and NS (flags 0x1C2)
    (
        tagged(
            ((0x88A8, 100), (0x8100, 200)),
            0x0800,
            ipv4("203.0.113.5", "198.51.100.7", 6, tcp(51000, 443, 0x1C2)),
        ),
        ("203.0.113.5", "198.51.100.7", 4, 6, 51000, 443, 0, 0x1C2, 40),
    ),
    # the older QinQ tag 0x9100, IPv4, UDP-Lite (136)
    (
        tagged(((0x9100, 7),), 0x0800, ipv4("10.9.0.1", "10.9.0.2", 136, udp(5004, 5006))),
        ("10.9.0.1", "10.9.0.2", 4, 136, 5004, 5006, 0, 0, 28),
    ),
    # MPLS multicast (0x8848), IPv4, UDP (BFD)
    (
        ethernet(0x8848, mpls(16) + ipv4("10.0.0.5", "10.0.0.6", 17, udp(49152, 3784), tos=0xC0)),
        ("10.0.0.5", "10.0.0.6", 4, 17, 49152, 3784, 0xC0, 0, 28),
    ),
    # SR-MPLS: six labels to the bottom of the stack
    (
        ethernet(
            0x8847,
            mpls(16001, 16002, 16003, 16004, 16005, 24001)
            + ipv4("10.3.0.1", "10.4.0.1", 17, udp(4789, 4789)),
        ),
        ("10.3.0.1", "10.4.0.1", 4, 17, 4789, 4789, 0, 0, 28),
    ),
    # IPv6 hop-by-hop (a router alert), ICMPv6 MLDv2 report (143, 0)
    (
        ethernet(0x86DD, ipv6("fe80::1", "ff02::16", 0, extension(58, 0) + b"\x8f\0" + b"\0" * 6)),
        ("fe80::1", "ff02::16", 6, 58, 0, 143 << 8, 0, 0, 56),
    ),
    # IPv6 AH (IPsec transport), BGP over TCP: the ports past AH's 4-byte units
    (
        ethernet(
            0x86DD,
            ipv6("2001:db8:1::1", "2001:db8:1::2", 51, extension(6, 51) + tcp(49152, 179, 0x18)),
        ),
        ("2001:db8:1::1", "2001:db8:1::2", 6, 6, 49152, 179, 0, 0x18, 84),
    ),
    # IPv6 destination options, SCTP (Diameter)
    (
        ethernet(
            0x86DD,
            ipv6(
                "2001:db8:2::1",
                "2001:db8:2::2",
                60,
                extension(132, 60) + struct.pack(">HHII", 36412, 3868, 0x5EED, 0),
            ),
        ),
        ("2001:db8:2::1", "2001:db8:2::2", 6, 132, 36412, 3868, 0, 0, 60),
    ),
    # IPv6 fragments: the first (offset 0, more) has ports; a later one at byte 8 (offset
    # field 1: a tiny-fragment overlap) has none
    (
        ethernet(
            0x86DD,
            ipv6("2001:db8::5", "2001:db8::6", 44, extension(17, 44, b"\x00\x01") + udp(53, 33000)),
        ),
        ("2001:db8::5", "2001:db8::6", 6, 17, 53, 33000, 0, 0, 56),
    ),
    (
        ethernet(
            0x86DD,
            ipv6("2001:db8::5", "2001:db8::6", 44, extension(17, 44, b"\x00\x08") + udp(53, 33000)),
        ),
        ("2001:db8::5", "2001:db8::6", 6, 17, 0, 0, 0, 0, 56),
    ),
    # GRE with a checksum, carrying IPv6: the inner packet
    (
        gre(
            "192.0.2.2",
            struct.pack(">HHHH", 0x8000, 0x86DD, 0xBEEF, 0),
            ipv6("2001:db8:9::1", "2001:db8:9::2", 17, udp(123, 123)),
        ),
        ("2001:db8:9::1", "2001:db8:9::2", 6, 17, 123, 123, 0, 0, 48),
    ),
    # GRE with a key and a sequence number, bridged Ethernet (0x6558): the inner frame
    (
        gre(
            "192.0.2.3",
            struct.pack(">HHII", 0x3000, 0x6558, 42, 9),
            ethernet(0x0800, ipv4("172.16.0.1", "172.16.0.2", 6, tcp(50000, 80, 0x02))),
        ),
        ("172.16.0.1", "172.16.0.2", 4, 6, 50000, 80, 0, 0x02, 40),
    ),
    # 6in4 (protocol 41): the inner IPv6 packet
    (
        ethernet(
            0x0800,
            ipv4(
                "192.0.2.10",
                "192.88.99.1",
                41,
                ipv6("2002:c000:20a::1", "2001:db8::80", 6, tcp(443, 50001, 0x12)),
            ),
        ),
        ("2002:c000:20a::1", "2001:db8::80", 6, 6, 443, 50001, 0, 0x12, 60),
    ),
    # IPv4 with options (a router alert): the ports past the 24-byte header
    (
        ethernet(
            0x0800, with_options(ipv4("10.5.0.1", "10.5.0.2", 17, udp(646, 646)), b"\x94\x04\0\0")
        ),
        ("10.5.0.1", "10.5.0.2", 4, 17, 646, 646, 0, 0, 32),
    ),
    # a later IPv4 fragment at byte 32768 (offset field 0x1000): no ports
    (
        ethernet(0x0800, ipv4("10.6.0.1", "10.6.0.2", 17, udp(2049, 800), fragment=0x1000)),
        ("10.6.0.1", "10.6.0.2", 4, 17, 0, 0, 0, 0, 28),
    ),
    # sections cut exactly after the bytes a field takes: UDP's ports, ICMP's type and
    # code, TCP's flags
    (
        ethernet(0x0800, ipv4("10.7.0.1", "10.7.0.2", 17, udp(5060, 5060)))[:38],
        ("10.7.0.1", "10.7.0.2", 4, 17, 5060, 5060, 0, 0, 28),
    ),
    (
        ethernet(0x0800, ipv4("10.7.0.1", "10.7.0.2", 1, b"\x03\x01\0\0"))[:36],
        ("10.7.0.1", "10.7.0.2", 4, 1, 0, 0x0301, 0, 0, 24),
    ),
    (
        ethernet(0x0800, ipv4("10.7.0.1", "10.7.0.2", 6, tcp(40001, 25, 0x18)))[:48],
        ("10.7.0.1", "10.7.0.2", 4, 6, 40001, 25, 0, 0x18, 40),
    ),
]
NOT_IP = [
    ethernet(0x0806, b"\0" * 28),  # ARP
    ethernet(0x0800, b"\x45\0\0")[:20],  # cut before its IP header
    b"",
    # an IPv4 header length of 4 words, less than its fixed 20 bytes
    ethernet(0x0800, b"\x44" + ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2))[1:]),
    # a stack of more labels than the walk takes (16), none the bottom, then IPv4
    ethernet(0x8847, b"\x00\x01\x00\x40" * 16 + ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2))),
]


def test_frame_sections_of_real_layouts() -> None:
    for section, want in CASES:
        src, dst, out = kernel(section)
        assert (
            src,
            dst,
            out[VERSION],
            out[PROTOCOL],
            out[SRC_PORT],
            out[DST_PORT],
            out[TOS],
            out[TCP_FLAGS],
            out[IP_LENGTH],
        ) == want, want
        assert out[OK] == 1
        assert reference(section) == (src, dst, out)
    for section in NOT_IP:
        assert kernel(section) == reference(section) == ("::", "::", (0,) * 8)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_frame_kernel_equals_reference(draw: st.DataObject) -> None:
    """Random cuts and byte damage of real layouts, and random bytes: the kernel reads
    what the reference reads, never past the bytes it was given."""
    base = draw.draw(st.sampled_from([section for section, _ in CASES] + NOT_IP))
    cut = draw.draw(st.integers(0, len(base)))
    section = bytearray(base[:cut])
    for _ in range(draw.draw(st.integers(0, 4))):
        if section:
            section[draw.draw(st.integers(0, len(section) - 1))] = draw.draw(st.integers(0, 255))
    section += draw.draw(st.binary(max_size=8))
    for candidate in (bytes(section), draw.draw(st.binary(max_size=300))):
        assert kernel(candidate) == reference(candidate)
        # a narrower kept width reads the same as the section cut to it
        width = draw.draw(st.integers(1, FRAME_BYTES))
        assert kernel(candidate, width) == reference(candidate[:width])


def test_exports_reader_takes_flow_fields_from_the_frame_section() -> None:
    """Cisco's template: ingress interface, flow direction, frame size, the section (variable
    length); and the same with a fixed 128-byte section. One packet each, of the IP length;
    a frame without IP is kept without addresses, and said."""
    datalink, evpn = CASES[0][0], CASES[1][0]
    arp = ethernet(0x0806, b"\0" * 28)
    fields = [(10, 4, 0), (61, 1, 0), (312, 2, 0), (315, 65535, 0)]

    def variable(interface: int, section: bytes) -> bytes:
        return (
            struct.pack(">IBH", interface, 0, len(section))
            + b"\xff"
            + struct.pack(">H", len(section))
            + section
        )

    table, report = decode(
        message(
            template(384, fields),
            data(384, variable(582, datalink), variable(1022, evpn), variable(9, arp)),
        )
    )
    rows = table.to_pylist()
    assert [
        (
            address_text(r["src_addr"]),
            address_text(r["dst_addr"]),
            r["ip_version"],
            r["protocol"],
            r["src_port"],
            r["dst_port"],
            r["packets"],
            r["octets"],
            r["input_if"],
        )
        for r in rows
    ] == [
        ("51.51.51.51", "52.52.52.52", 4, 17, 55501, 11777, 1, 96, 582),
        ("198.51.100.1", "198.51.100.2", 4, 6, 443, 55427, 1, 1492, 1022),
        ("::", "::", 0, 0, 0, 0, 1, 0, 9),  # unread, still one sampled packet
    ]
    assert rows[1]["tcp_flags"] == 0x10 and rows[1]["tos"] == 32
    assert report.repaired["frame_section"] == 2
    assert report.repaired["frame_section_unread"] == 1
    assert not report.skipped
    fixed = [(10, 4, 0), (2, 8, 0), (315, 128, 0)]
    table, report = decode(
        message(
            template(385, fixed), data(385, struct.pack(">IQ", 582, 3) + datalink.ljust(128, b"\0"))
        )
    )
    (row,) = table.to_pylist()
    # the template's own packet counter stands; the octets are the header's
    assert (address_text(row["src_addr"]), row["packets"], row["octets"]) == ("51.51.51.51", 3, 96)


def test_two_sections_read_the_last_and_unread_records_keep_their_own_fields() -> None:
    """Found by fuzzing: a variable section then a fixed one crashed (the fixed one was read
    as length-prefixed), and a record whose section could not be read took its batch's
    ip_version (0) over its template's ipVersion."""
    datalink = CASES[0][0]
    arp = ethernet(0x0806, b"\0" * 28)
    fixed = datalink.ljust(64, b"\0")
    for fields, record in (
        ([(10, 4, 0), (315, 65535, 0), (315, 64, 0)], struct.pack(">I", 5) + b"\x05abcde" + fixed),
        (
            [(10, 4, 0), (315, 64, 0), (315, 65535, 0)],
            struct.pack(">I", 5) + arp.ljust(64, b"\0") + bytes([len(fixed)]) + fixed,
        ),
        ([(10, 4, 0), (315, 1, 0)], struct.pack(">I", 5) + b"\x00"),
    ):
        table, report = decode(message(template(386, fields), data(386, record)))
        (row,) = table.to_pylist()
        if fields[-1][1] == 1:
            assert address_text(row["src_addr"]) == "::"
            assert report.repaired["frame_section_unread"] == 1
        else:
            assert (address_text(row["src_addr"]), row["octets"]) == ("51.51.51.51", 96)
    with_version = [(10, 4, 0), (60, 1, 0), (315, 64, 0)]
    table, _ = decode(
        message(
            template(387, with_version),
            data(
                387,
                struct.pack(">IB", 1, 4) + fixed,
                struct.pack(">IB", 2, 4) + arp.ljust(64, b"\0"),
            ),
        )
    )
    assert [(r["ip_version"], r["packets"]) for r in table.to_pylist()] == [(4, 1), (4, 1)]
