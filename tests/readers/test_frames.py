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
    tags = b"".join(struct.pack(">HH", 0x8100, vlan) for vlan in vlans)
    return MACS + tags + struct.pack(">H", ethertype) + payload


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


def udp(src: int, dst: int) -> bytes:
    return struct.pack(">HHHH", src, dst, 8, 0)


def tcp(src: int, dst: int, flags: int) -> bytes:
    return struct.pack(">HHIIBBHHH", src, dst, 1, 0, 0x50, flags, 1024, 0, 0)


def mpls(*labels: int) -> bytes:
    return b"".join(
        struct.pack(">I", label << 12 | (1 if i == len(labels) - 1 else 0) << 8 | 64)
        for i, label in enumerate(labels)
    )


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
        ethernet(
            0x0800,
            ipv4(
                "192.0.2.1",
                "192.0.2.2",
                47,
                struct.pack(">HHI", 0x2000, 0x0800, 7)
                + ipv4("10.1.1.1", "10.2.2.2", 6, tcp(40000, 22, 0x02)),
            ),
        ),
        ("10.1.1.1", "10.2.2.2", 4, 6, 40000, 22, 0, 0x02, 40),
    ),
    # IPv4 in IPv6 cut inside the inner header: the outer one
    (
        ethernet(0x86DD, ipv6("2001:db8::a", "2001:db8::b", 4, b"\x45\0\0\x54", payload_length=84)),
        ("2001:db8::a", "2001:db8::b", 6, 4, 0, 0, 0, 0, 124),
    ),
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
    # not IP: ARP, or a frame cut before its IP header
    for section in (ethernet(0x0806, b"\0" * 28), ethernet(0x0800, b"\x45\0\0")[:20], b""):
        assert kernel(section) == reference(section) == ("::", "::", (0,) * 8)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_frame_kernel_equals_reference(draw: st.DataObject) -> None:
    """Random cuts and byte damage of real layouts, and random bytes: the kernel reads
    what the reference reads, never past the bytes it was given."""
    base = draw.draw(st.sampled_from([section for section, _ in CASES]))
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
