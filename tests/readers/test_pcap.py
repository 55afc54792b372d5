"""The capture container: every container and link layer the issue lists, built with scapy."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import CookedLinux, Dot1AD, Dot1Q, Ether, Loopback

from obserae_forensics.errors import TruncatedInput, UnknownFormat
from obserae_forensics.readers.pcap import iter_datagrams, iter_frames, read_frames
from obserae_forensics.report import RunReport

PAYLOAD = b"\x00\x0a" + bytes(range(200))


def udp4(payload: bytes = PAYLOAD, src: str = "192.0.2.1") -> IP:
    return IP(src=src, dst="198.51.100.7") / UDP(sport=50000, dport=4739) / payload


def pcap_bytes(
    frames: list[tuple[int, bytes]],
    *,
    order: str = "<",
    nanos: bool = False,
    linktype: int = 1,
    caplen_cut: int | None = None,
) -> bytes:
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for ts, data in frames:
        kept = data if caplen_cut is None else data[:caplen_cut]
        out += (
            struct.pack(
                order + "IIII",
                ts // 10**9,
                (ts % 10**9) // (1 if nanos else 1000),
                len(kept),
                len(data),
            )
            + kept
        )
    return out


def block(order: str, block_type: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack(order + "II", block_type, total) + body + struct.pack(order + "I", total)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def option(order: str, code: int, value: bytes) -> bytes:
    """A pcapng option, its value padded to 4 bytes."""
    return struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def idb(
    order: str,
    linktype: int,
    tsresol: int | None = None,
    *,
    options: tuple[bytes, ...] = (),
    snaplen: int = 0,
) -> bytes:
    """An interface description block: `options`, if_tsresol when given, then
    opt_endofopt (none of them when neither is given)."""
    given = [*options, *([option(order, 9, bytes([tsresol]))] if tsresol is not None else [])]
    end = option(order, 0, b"") if given else b""
    fields = struct.pack(order + "HHI", linktype, 0, snaplen)
    return block(order, 1, fields + b"".join(given) + end)


def epb(order: str, interface: int, ticks: int, data: bytes) -> bytes:
    return block(
        order,
        6,
        struct.pack(
            order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
        )
        + data,
    )


def datagrams(path: Path) -> tuple[list, RunReport]:
    report = RunReport()
    found = [d for chunk in iter_datagrams(path, report) for d in chunk]
    return found, report


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_pcap_both_byte_orders_and_resolutions(tmp_path: Path, order: str, nanos: bool) -> None:
    path = tmp_path / "a.pcap"
    ts = 1_700_000_000_123_456_000
    path.write_bytes(pcap_bytes([(ts, bytes(Ether() / udp4()))], order=order, nanos=nanos))
    found, report = datagrams(path)
    assert len(found) == 1
    assert found[0].payload == PAYLOAD
    assert found[0].exporter == "192.0.2.1"
    assert found[0].arrival_us == ts // 1000
    assert (found[0].frame, found[0].offset) == (1, 24)
    assert report.files[str(path)].format == "pcap"


@pytest.mark.parametrize(
    "linktype,frame",
    [
        (1, Ether() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / udp4()),
        (1, Ether() / Dot1Q(vlan=5) / Dot1Q(vlan=6) / Dot1Q(vlan=7) / udp4()),
        (113, CookedLinux(proto=0x0800) / udp4()),
        (101, udp4()),
        (228, udp4()),
        (0, Loopback(type=2) / udp4()),
        (108, struct.pack(">I", 2) + bytes(udp4())),
    ],
)
def test_link_layers(tmp_path: Path, linktype: int, frame: object) -> None:
    path = tmp_path / "l.pcap"
    path.write_bytes(pcap_bytes([(10**18, bytes(frame))], linktype=linktype))  # type: ignore[call-overload]
    found, report = datagrams(path)
    assert [d.payload for d in found] == [PAYLOAD], report.skipped


def test_a_link_type_field_with_reserved_bits_set_is_a_problem(tmp_path: Path) -> None:
    """Found by fuzzing the CLI: a header's link-type field damaged to 0xffffffff read as
    link type 65535, every frame other traffic and nothing said. Bits 16-25 and 27 must be
    zero (draft-ietf-opsawg-pcap: an error); the FCS bits (26, 28-31) are no damage."""
    frame = (10**18, bytes(Ether() / udp4()))
    for field in (0xFFFF_FFFF, 1 | 1 << 16, 1 | 1 << 27):
        path = tmp_path / f"bad{field:x}.pcap"
        path.write_bytes(pcap_bytes([frame], linktype=field))
        found, report = datagrams(path)
        assert not found and report.skipped == {"bad_header": 1}, hex(field)
        assert report.skipped_bytes["bad_header"] == path.stat().st_size
        assert report.examples[0].offset == 20
    path = tmp_path / "fcs.pcap"
    path.write_bytes(
        pcap_bytes([(10**18, bytes(Ether() / udp4()) + b"\0" * 4)], linktype=1 | 1 << 26 | 2 << 28)
    )
    found, report = datagrams(path)
    assert [d.payload for d in found] == [PAYLOAD] and not report.skipped


def test_sll2_with_vlan_and_ipv6(tmp_path: Path) -> None:
    inner = IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2) / PAYLOAD
    sll2 = struct.pack(">HHIHBB8s", 0x8100, 0, 3, 1, 0, 6, b"\x00" * 8)
    frame = sll2 + struct.pack(">HH", 42, 0x86DD) + bytes(inner)
    path = tmp_path / "s.pcap"
    path.write_bytes(pcap_bytes([(10**18, frame)], linktype=276))
    found, _ = datagrams(path)
    assert [d.exporter for d in found] == ["2001:db8::1"]
    assert found[0].payload == PAYLOAD


def test_an_ipv4_mapped_ipv6_exporter_is_named_with_a_dotted_tail(tmp_path: Path) -> None:
    """A review: an IPv6 packet from ::ffff:192.0.2.1 named its exporter ::ffff:c000:201
    (ipaddress before Python 3.13). RFC 5952 section 5's form, as tshark shows it; still
    apart from the same host's IPv4 packets, whose templates are another transport's."""
    frames = [
        (10**18, bytes(Ether() / IPv6(src=src, dst="::1") / UDP(sport=1, dport=2) / PAYLOAD))
        for src in ("::ffff:192.0.2.1", "::ffff:0:c000:201", "::c000:201")
    ]
    path = tmp_path / "mapped.pcap"
    path.write_bytes(pcap_bytes([*frames, (10**18, bytes(Ether() / udp4()))]))
    found, _ = datagrams(path)
    assert [d.exporter for d in found] == [
        "::ffff:192.0.2.1",
        "::ffff:0:c000:201",
        "::c000:201",
        "192.0.2.1",
    ]


def test_ipv4_fragments_reassembled_out_of_order(tmp_path: Path) -> None:
    big = b"\x00\x0a" + bytes(i % 251 for i in range(3000))
    packet = IP(src="10.1.1.1", dst="10.2.2.2", id=77) / UDP(sport=9, dport=2055) / big
    pieces = [bytes(Ether() / p) for p in fragment(packet, fragsize=1000)]
    assert len(pieces) == 4
    order = [pieces[2], pieces[0], pieces[3], pieces[1]]
    path = tmp_path / "f.pcap"
    path.write_bytes(pcap_bytes([(10**18 + i, p) for i, p in enumerate(order)]))
    found, report = datagrams(path)
    assert [d.payload for d in found] == [big]
    assert found[0].frame == 4
    assert not report.skipped


def test_ipv6_fragments_reassembled(tmp_path: Path) -> None:
    big = b"\x00\x0a" + bytes(i % 13 for i in range(2500))
    udp = bytes(UDP(sport=9, dport=4739, len=8 + len(big)) / big)
    first = (
        IPv6(src="2001:db8::9", dst="2001:db8::1", nh=44)
        / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=5)
        / udp[:1200]
    )
    second = (
        IPv6(src="2001:db8::9", dst="2001:db8::1", nh=44)
        / IPv6ExtHdrFragment(nh=17, offset=150, m=0, id=5)
        / udp[1200:]
    )
    path = tmp_path / "f6.pcap"
    path.write_bytes(
        pcap_bytes([(10**18, bytes(Ether() / first)), (10**18 + 1, bytes(Ether() / second))])
    )
    found, report = datagrams(path)
    assert [d.payload for d in found] == [big], report.skipped


def test_ipv6_fragments_whose_fragmentable_part_has_extension_headers(tmp_path: Path) -> None:
    """Found by fuzzing: RFC 8200 lets Destination Options follow the fragment header (they
    are part of what was fragmented); each fragment was walked as if they were its own, so
    a later fragment's data read as a header and every record was lost (tshark reads
    them). An atomic fragment (offset 0, no more) is read the same way."""
    big = b"\x00\x0a" + bytes(i % 13 for i in range(2500))
    options = bytes([17, 0]) + bytes([1, 4, 0, 0, 0, 0])  # next UDP, 8 bytes: PadN
    inner = options + bytes(UDP(sport=9, dport=4739, len=8 + len(big)) / big)
    first = (
        IPv6(src="2001:db8::9", dst="2001:db8::1", nh=44)
        / IPv6ExtHdrFragment(nh=60, offset=0, m=1, id=6)
        / inner[:1200]
    )
    second = (
        IPv6(src="2001:db8::9", dst="2001:db8::1", nh=44)
        / IPv6ExtHdrFragment(nh=60, offset=150, m=0, id=6)
        / inner[1200:]
    )
    small = options + bytes(UDP(sport=9, dport=4739, len=10) / b"\x00\x0a")
    atomic = (
        IPv6(src="2001:db8::9", dst="2001:db8::1", nh=44)
        / IPv6ExtHdrFragment(nh=60, offset=0, m=0, id=7)
        / small
    )
    path = tmp_path / "f6.pcap"
    path.write_bytes(
        pcap_bytes(
            [
                (10**18, bytes(Ether() / first)),
                (10**18 + 1, bytes(Ether() / second)),
                (10**18 + 2, bytes(Ether() / atomic)),
            ]
        )
    )
    found, report = datagrams(path)
    assert [d.payload for d in found] == [big, b"\x00\x0a"], report.examples
    assert not report.skipped and not report.ignored
    # fragmented TCP behind Destination Options is other traffic, each of its fragments,
    # and its first alone is no incomplete datagram (a review: reassembled, counted at its
    # last frame only, and a lone fragment a problem); its later fragments before it, too
    tcp = bytes([6, 0]) + bytes([1, 4, 0, 0, 0, 0]) + bytes(2000)
    head = (
        IPv6(src="2001:db8::9", dst="2001:db8::1", nh=44)
        / IPv6ExtHdrFragment(nh=60, offset=0, m=1, id=8)
        / tcp[:1200]
    )
    tail = (
        IPv6(src="2001:db8::9", dst="2001:db8::1", nh=44)
        / IPv6ExtHdrFragment(nh=60, offset=150, m=0, id=8)
        / tcp[1200:]
    )
    for frames in ([head, tail], [tail, head], [head]):
        path.write_bytes(
            pcap_bytes([(10**18 + k, bytes(Ether() / f)) for k, f in enumerate(frames)])
        )
        found, report = datagrams(path)
        assert not found and not report.skipped
        assert report.ignored == {"not_udp": len(frames)}


def test_incomplete_fragments_are_counted(tmp_path: Path) -> None:
    packet = IP(src="10.1.1.1", dst="10.2.2.2", id=9) / UDP(sport=9, dport=2055) / bytes(3000)
    pieces = [bytes(Ether() / p) for p in fragment(packet, fragsize=1000)]
    path = tmp_path / "f.pcap"
    path.write_bytes(pcap_bytes([(10**18, pieces[0]), (10**18, pieces[1])]))
    found, report = datagrams(path)
    assert found == []
    assert report.skipped["incomplete_fragments"] == 1
    assert report.examples[0].frame == 1


def test_ethernet_padding_is_trimmed(tmp_path: Path) -> None:
    frame = bytes(Ether() / udp4(b"\x00\x05")) + b"\xee" * 20
    path = tmp_path / "p.pcap"
    path.write_bytes(pcap_bytes([(10**18, frame)]))
    found, _ = datagrams(path)
    assert [d.payload for d in found] == [b"\x00\x05"]


def test_bytes_after_a_short_udp_length_are_counted_unless_padding(tmp_path: Path) -> None:
    # UDP length 10 (2 bytes of payload) in an IP packet carrying 202: the 200 bytes after
    # the datagram were dropped without a word; zero bytes there are padding
    hidden = IP(bytes(udp4()))
    hidden[UDP].len = 10
    hidden[UDP].chksum = 0
    padded = IP(bytes(udp4(b"\x00\x05" + bytes(20))))
    padded[UDP].len = 10
    padded[UDP].chksum = 0
    path = tmp_path / "u.pcap"
    path.write_bytes(
        pcap_bytes([(10**18, bytes(Ether() / hidden)), (10**18, bytes(Ether() / padded))])
    )
    for indexed in (True, False):
        report = RunReport()
        found = [d for chunk in iter_datagrams(path, report, indexed=indexed) for d in chunk]
        assert [d.payload for d in found] == [PAYLOAD[:2], b"\x00\x05"]
        assert report.skipped == {"bad_udp_header": 1}
        assert report.skipped_bytes["bad_udp_header"] == 200
        assert report.examples[0].frame == 1


def test_other_traffic_is_counted_not_decoded(tmp_path: Path) -> None:
    tcp = bytes(Ether() / IP(proto=6) / (b"x" * 20))
    arp = bytes(Ether(type=0x0806) / (b"\x00" * 28))
    path = tmp_path / "o.pcap"
    path.write_bytes(pcap_bytes([(10**18, tcp), (10**18, arp), (10**18, bytes(Ether() / udp4()))]))
    found, report = datagrams(path)
    assert len(found) == 1
    assert report.ignored["not_udp"] == 1
    assert report.ignored["not_ip"] == 1
    assert not report.skipped_problems()


def test_truncated_file_says_where(tmp_path: Path) -> None:
    whole = pcap_bytes([(10**18, bytes(Ether() / udp4()))] * 2)
    path = tmp_path / "t.pcap"
    path.write_bytes(whole[:-30])
    found, report = datagrams(path)
    assert len(found) == 1
    assert report.skipped["truncated"] == 1
    assert str(report.examples[0]).startswith(f"{path}@")
    assert report.examples[0].frame == 2


def test_truncated_file_under_strict_stops(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    path.write_bytes(pcap_bytes([(10**18, bytes(Ether() / udp4()))])[:-5])
    with pytest.raises(TruncatedInput, match=r"t\.pcap@24 \(frame 1\): packet record promises"):
        datagrams_strict(path)


def datagrams_strict(path: Path) -> None:
    report = RunReport(strict=True)
    for _ in iter_datagrams(path, report):
        pass


def test_snaplen_cut_frame_keeps_what_was_captured(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    path.write_bytes(pcap_bytes([(10**18, bytes(Ether() / udp4()))], caplen_cut=14 + 20 + 8 + 50))
    found, _ = datagrams(path)
    assert [d.payload for d in found] == [PAYLOAD[:50]]


def test_not_a_capture_is_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "n.bin"
    path.write_bytes(b"hello world, not a capture")
    with pytest.raises(UnknownFormat, match=r"n\.bin@0: not a PCAP/PCAPNG"):
        list(iter_frames(path, RunReport()))


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_resolutions_and_unknown_blocks(tmp_path: Path, order: str) -> None:
    ts_us = 1_700_000_000_000_001
    content = (
        shb(order)
        + idb(order, 1)  # Ethernet, µs
        + idb(order, 101, tsresol=9)  # raw IP, ns
        + block(order, 0x0BAD, b"custom!!")  # custom block: skipped by length, counted
        + epb(order, 1, ts_us * 1000 + 7, bytes(udp4(src="192.0.2.2")))
        + block(order, 4, b"\x00" * 8)  # name resolution block
        + epb(order, 0, ts_us, bytes(Ether() / udp4(src="192.0.2.3")))
        + block(order, 3, struct.pack(order + "I", 42 + 202) + bytes(Ether() / udp4()))
        + block(
            order,
            5,
            struct.pack(order + "IQ", 1, 0)  # interface statistics, options:
            + struct.pack(order + "HHQ", 4, 8, 1)
            + struct.pack(order + "HH", 0, 0),
        )
        + block(order, 0xA, struct.pack(order + "II", 0x544C534B, 5) + b"keys!")  # secrets
    )
    path = tmp_path / "n.pcapng"
    path.write_bytes(content)
    found, report = datagrams(path)
    assert [d.exporter for d in found] == ["192.0.2.2", "192.0.2.3", "192.0.2.1"]
    assert [d.arrival_us for d in found] == [ts_us, ts_us, 0]
    assert [d.frame for d in found] == [1, 2, 3]
    assert report.files[str(path)].format == "pcapng"
    assert not report.skipped and report.ignored == {"pcapng_custom_block": 1}


def test_pcapng_captured_length_damaged_short_is_a_bad_block(tmp_path: Path) -> None:
    # found by fuzzing: a captured length damaged from 45 to 3 read as a 3-byte frame
    # (`short_frame`, 3 bytes), the rest of the packet taken for options and counted nowhere
    packet = bytearray(epb("<", 0, 1, bytes(udp4())))
    packet[20:24] = struct.pack("<I", 3)
    path = tmp_path / "short.pcapng"
    path.write_bytes(shb("<") + idb("<", 101) + bytes(packet))
    found, report = datagrams(path)
    assert not found and report.skipped_bytes == {"bad_block": len(packet)}
    assert "claims 3 captured bytes, and what follows them" in str(report.examples[0])


def test_pcapng_interface_options_that_do_not_fit_are_a_bad_block(tmp_path: Path) -> None:
    """Found by fuzzing: an interface block whose if_description claims 260 bytes hid the
    if_tsresol after it, so every arrival time read milliseconds as microseconds (1970
    where 2023 was) and nothing was counted; tshark refuses the file."""
    description = struct.pack("<HH", 2, 0x0104) + b"eth0"
    resolution = struct.pack("<HH", 9, 1) + bytes([3]) + b"\x00" * 3
    damaged = block(
        "<", 1, struct.pack("<HHI", 101, 0, 0) + description + resolution + struct.pack("<HH", 0, 0)
    )
    path = tmp_path / "idb.pcapng"
    path.write_bytes(shb("<") + damaged + epb("<", 0, 1_700_000_000_123, bytes(udp4())))
    found, report = datagrams(path)
    assert len(found) == 1  # link type and snap length are fixed fields: still read
    options = 28 + 16  # the section header block, the interface block's header and fields
    assert report.skipped_bytes == {"bad_block": len(damaged) - 16 - 4}  # options on
    assert report.examples[0].offset == options
    assert "interface 0: its options do not fit the block" in str(report.examples[0])
    fine = shb("<") + idb("<", 101, tsresol=3) + epb("<", 0, 1_700_000_000_123, bytes(udp4()))
    path.write_bytes(fine)
    found, report = datagrams(path)
    assert found[0].arrival_us == 1_700_000_000_123_000 and not report.skipped


def test_simple_packet_block_bytes_past_its_packet_are_counted(tmp_path: Path) -> None:
    """Found by fuzzing: a simple packet block holding more than its packet (the snap
    length, or its original length, and padding allow) lost the rest without a word."""
    packet = bytes(udp4())
    body = struct.pack("<I", len(packet)) + packet + b"\x00" * (-len(packet) % 4) + b"\xee" * 8
    path = tmp_path / "spb.pcapng"
    path.write_bytes(shb("<") + idb("<", 101) + block("<", 3, body))
    found, report = datagrams(path)
    assert [d.payload for d in found] == [PAYLOAD]
    assert report.skipped_bytes == {"bad_block": 8}
    assert "holds 8 bytes past its" in str(report.examples[0])


@pytest.mark.parametrize(
    ("block_type", "reason", "packet_body"),
    [
        (0x2406, "pcapng_unknown_block", False),
        (0xBAD, "pcapng_custom_block", True),
        (0x40000BAD, "pcapng_custom_block", True),
        (0x80000001, "pcapng_custom_block", True),
    ],
)
def test_pcapng_block_of_an_unknown_or_custom_type_is_counted(
    tmp_path: Path, block_type: int, reason: str, packet_body: bool
) -> None:
    # found by fuzzing: a damaged type byte made a packet block one of no known type, or a
    # custom or local one (which no check can vouch for); it is skipped by its length as
    # the format wants, and its datagram vanished without a word
    packet = epb("<", 0, 1, bytes(udp4()))
    retyped = (
        struct.pack("<I", block_type) + packet[4:]
        if packet_body
        else block("<", block_type, b"\x07" * 24)
    )
    path = tmp_path / "retyped.pcapng"
    path.write_bytes(shb("<") + idb("<", 101) + packet + retyped)
    found, report = datagrams(path)
    assert len(found) == 1 and not report.skipped
    assert report.ignored == {reason: 1}
    assert report.ignored_bytes == {reason: len(retyped)}


@pytest.mark.parametrize("block_type", [14, 0x2406, 0x80000006])
def test_pcapng_packet_block_retyped_as_an_unknown_one_is_a_problem(
    tmp_path: Path, block_type: int
) -> None:
    """Found by an audit: one bit makes an enhanced packet block (6) one of no known type
    (14), skipped by its length and counted run-wide, no file, no place, `--strict`
    passing; a block of no known type that reads as a packet block is that damage."""
    packet = epb("<", 0, 1, bytes(udp4()))
    retyped = struct.pack("<I", block_type) + packet[4:]
    path = tmp_path / "retyped.pcapng"
    path.write_bytes(shb("<") + idb("<", 101) + packet + retyped + packet)
    found, report = datagrams(path)
    assert len(found) == 2 and not report.ignored
    assert report.skipped_bytes == {"bad_block": len(retyped)}
    assert report.examples[0].offset == len(shb("<") + idb("<", 101) + packet)
    assert "reads as an enhanced packet block" in str(report.examples[0])


def spb(order: str, data: bytes, origlen: int | None = None) -> bytes:
    """A simple packet block of `data` (its original length `origlen`, else its own)."""
    return block(
        order, 3, struct.pack(order + "I", len(data) if origlen is None else origlen) + data
    )


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("block_type", [0x103, 0x80000003, 0x200003])
@pytest.mark.parametrize("snaplen", [0, 64])
def test_pcapng_simple_packet_block_retyped_as_an_unknown_one_is_a_problem(
    tmp_path: Path, order: str, block_type: int, snaplen: int
) -> None:
    """Found by fuzzing: one bit makes a simple packet block (3) one of no known type
    (0x103), skipped by its length, its datagram's records lost to a run-wide
    `pcapng_unknown_block` (an enhanced or obsolete packet block so damaged was a
    `bad_block` with its place): its original length, cut to the snap length, fills it."""
    frame = bytes(udp4())
    kept = frame[:snaplen] if snaplen else frame
    packet = spb(order, kept, len(frame))
    retyped = struct.pack(order + "I", block_type) + packet[4:]
    head = shb(order) + idb(order, 101, snaplen=snaplen)
    path = tmp_path / "retyped.pcapng"
    path.write_bytes(head + packet + retyped + packet)
    found, report = datagrams(path)
    assert len(found) == 2 and not report.ignored
    assert report.skipped == {"bad_block": 1}
    assert report.skipped_bytes == {"bad_block": len(retyped)}
    assert report.examples[0].offset == len(head + packet)
    assert f"reads as a simple packet block ({len(kept)} bytes captured)" in str(report.examples[0])


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(
    ("block_type", "body", "interface", "reason"),
    [
        (0x2406, struct.pack("<I", 8) + b"abcdefgh", False, "pcapng_unknown_block"),
        (0x2406, struct.pack("<I", 4) + b"abcdefgh", True, "pcapng_unknown_block"),
        (0x2406, struct.pack("<I", 12) + b"abcdefgh", True, "pcapng_unknown_block"),
        (0x2406, struct.pack("<I", 0), True, "pcapng_unknown_block"),
        (0xBAD, struct.pack("<I", 8) + b"abcdefgh", True, "pcapng_custom_block"),
        (0x40000BAD, struct.pack("<I", 8) + b"abcdefgh", True, "pcapng_custom_block"),
    ],
    ids=["no_interface", "short_length", "long_length", "empty", "custom", "custom_copyable"],
)
def test_pcapng_block_that_does_not_fit_a_simple_packet_block_stays_as_it_was(
    tmp_path: Path, order: str, block_type: int, body: bytes, interface: bool, reason: str
) -> None:
    """A block read as a damaged simple packet block only when it fits one exactly, in a
    section with an interface: its first word (in the section's byte order) the length of
    a non-empty packet that fills the rest; custom blocks are a vendor's, whatever they
    hold."""
    body = struct.pack(order + "I", struct.unpack("<I", body[:4])[0]) + body[4:]
    other = block(order, block_type, body)
    path = tmp_path / "other.pcapng"
    path.write_bytes(shb(order) + (idb(order, 101) if interface else b"") + other)
    found, report = datagrams(path)
    assert not found and not report.skipped
    assert report.ignored == {reason: 1} and report.ignored_bytes == {reason: len(other)}


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_simple_packet_block_retyped_as_a_name_resolution_block_is_counted(
    tmp_path: Path, order: str
) -> None:
    """Found by fuzzing: a simple packet block whose type became 4 (name resolution) was a
    `bad_block` in a little-endian section, but in a big-endian one its original length
    (00 00 01 d2) read as nrb_record_end with a length that spans its packet exactly: its
    records lost, nothing counted. The end record has no value (length 0)."""
    packet = spb(order, bytes(udp4()))
    retyped = struct.pack(order + "I", 4) + packet[4:]
    record = struct.pack(order + "HH", 1, 12) + bytes([192, 0, 2, 1]) + b"host.a\0\0"
    names = block(order, 4, record + struct.pack(order + "HH", 0, 0))
    head = shb(order) + idb(order, 101)
    path = tmp_path / "nrb.pcapng"
    path.write_bytes(head + names + packet + retyped + packet)
    found, report = datagrams(path)
    assert len(found) == 2 and not report.ignored  # the real name block passes
    assert report.skipped == {"bad_block": 1}
    assert report.skipped_bytes == {"bad_block": len(retyped)}
    assert report.examples[0].offset == len(head + names + packet)


@pytest.mark.parametrize("block_type", [4, 5, 0xA])
def test_pcapng_packet_block_retyped_as_a_known_one_is_counted(
    tmp_path: Path, block_type: int
) -> None:
    # found by fuzzing: one bit makes an enhanced packet block (6) a name resolution (4) or
    # interface statistics (5) block; its packet does not read as their fields
    packet = epb("<", 0, 1, bytes(udp4()))
    retyped = struct.pack("<I", block_type) + packet[4:]
    path = tmp_path / "retyped.pcapng"
    path.write_bytes(shb("<") + idb("<", 101) + packet + retyped + packet)
    found, report = datagrams(path)
    assert len(found) == 2
    assert report.skipped == {"bad_block": 1}
    assert report.skipped_bytes == {"bad_block": len(retyped)}
    assert report.examples[0].offset == len(shb("<") + idb("<", 101) + packet)


def test_pcapng_second_section_other_byte_order(tmp_path: Path) -> None:
    content = (
        shb("<")
        + idb("<", 101)
        + epb("<", 0, 1, bytes(udp4()))
        + shb(">")
        + idb(">", 101)
        + epb(">", 0, 2, bytes(udp4()))
    )
    path = tmp_path / "two.pcapng"
    path.write_bytes(content)
    found, report = datagrams(path)
    assert len(found) == 2 and not report.skipped


def test_pcapng_blocks_too_short_for_their_fields_are_counted(tmp_path: Path) -> None:
    # found by fuzzing: an interface or packet block of 12 bytes (no body) had its fixed
    # fields read from the next block, or past the end of the file (struct.error)
    frame = bytes(Ether() / udp4())
    empty_idb = block("<", 1, b"")
    empty_epb = block("<", 6, b"")
    for tail in (b"", epb("<", 1, 5, frame)):  # at the end of the file, and in the middle
        path = tmp_path / "short.pcapng"
        path.write_bytes(shb("<") + empty_idb + idb("<", 1) + empty_epb + tail)
        found, report = datagrams(path)
        assert [d.payload for d in found] == ([PAYLOAD] if tail else [])
        assert report.skipped == {"bad_block": 2}
        assert [p.offset for p in report.examples] == [28, 28 + 12 + 20]
    # a packet of the malformed interface is counted, not given another's link type
    path.write_bytes(shb("<") + empty_idb + idb("<", 1) + epb("<", 0, 5, frame))
    found, report = datagrams(path)
    assert found == [] and report.skipped == {"bad_block": 2}


def test_pcapng_trailing_length_copy_is_compared(tmp_path: Path) -> None:
    packet = epb("<", 0, 5, bytes(Ether() / udp4()))
    damaged = packet[:-4] + struct.pack("<I", len(packet) + 4)
    path = tmp_path / "copy.pcapng"
    path.write_bytes(shb("<") + idb("<", 1) + damaged + packet)
    found, report = datagrams(path)
    assert len(found) == 2  # the damaged block is still read, by its leading length
    assert report.skipped == {"bad_block": 1}
    assert report.examples[0].offset == 28 + 20 + len(packet) - 4


def test_pcapng_time_past_int64_is_counted(tmp_path: Path) -> None:
    # if_tsresol 0 (ticks of a second) and a large tick count: 1.8e24 ns overflowed later
    path = tmp_path / "late.pcapng"
    frame = bytes(Ether() / udp4())
    path.write_bytes(
        shb("<")
        + idb("<", 1, tsresol=0)
        + epb("<", 0, 2**60, frame)
        + epb("<", 0, 1_700_000_000, frame)
    )
    found, report = datagrams(path)
    assert [d.arrival_us for d in found] == [1_700_000_000 * 10**6]
    assert report.skipped == {"bad_timestamp": 1}
    assert report.examples[0].frame == 1


def test_read_frames_by_offset(tmp_path: Path) -> None:
    frames = [(10**18 + i, bytes(Ether() / udp4(bytes([i]) * 10))) for i in range(3)]
    path = tmp_path / "r.pcap"
    path.write_bytes(pcap_bytes(frames))
    found, _ = datagrams(path)
    back = read_frames(path, {found[2].offset})
    assert back[found[2].offset].data == frames[2][1]


def test_corpus_captures_give_the_readme_datagram_counts(corpus: Path) -> None:
    expected = {
        "sf_v5_synscan.pcap": 69,
        "sf_v9_synscan.pcap": 64,
        "pm_v9_test.pcap": 7,
        "nfreplay_v9_test.pcap": 3,
        "sf_v10_varsvc.pcap": 3,
    }
    for name, count in expected.items():
        found, report = datagrams(corpus / "exports" / name)
        assert len(found) == count, name
        assert not report.skipped


def all_datagrams(path: Path, indexed: bool) -> tuple[list, dict, dict]:
    report = RunReport()
    found = [d for chunk in iter_datagrams(path, report, indexed=indexed) for d in chunk]
    return found, dict(report.skipped), dict(report.ignored)


@pytest.mark.parametrize("cut", [None, 5, 30, 200])
def test_indexed_path_equals_general_path_on_built_captures(
    tmp_path: Path, cut: int | None
) -> None:
    frames = [
        (10**18, bytes(Ether() / udp4())),
        (10**18 + 1, bytes(Ether() / Dot1Q(vlan=3) / udp4(src="192.0.2.5"))),
        (10**18 + 2, bytes(Ether() / IP(proto=6) / (b"x" * 20))),
        *[
            (10**18 + 3 + i, bytes(Ether() / p))
            for i, p in enumerate(
                fragment(
                    IP(src="10.1.1.1", dst="10.2.2.2", id=7)
                    / UDP(sport=9, dport=2055)
                    / bytes(3000),
                    fragsize=1000,
                )
            )
        ],
        (10**18 + 9, bytes(Ether() / udp4(b"\x00\x05")) + b"\xee" * 20),
        (10**18 + 10, bytes(Ether() / IPv6() / UDP() / PAYLOAD)),
    ]
    whole = pcap_bytes(frames, order=">", nanos=True)
    path = tmp_path / "mix.pcap"
    path.write_bytes(whole if cut is None else whole[:-cut])
    assert all_datagrams(path, True) == all_datagrams(path, False)


def test_indexed_path_equals_general_path_on_the_corpus(corpus: Path) -> None:
    for path in sorted((corpus / "exports").glob("*.pcap")) + sorted(
        (corpus / "raw").glob("*.pcap")
    ):
        assert all_datagrams(path, True) == all_datagrams(path, False), path.name


def test_retransmitted_fragment_does_not_rewrite_bytes(tmp_path: Path) -> None:
    big = b"\x00\x0a" + bytes(i % 251 for i in range(2000))
    packet = IP(src="10.1.1.1", dst="10.2.2.2", id=78) / UDP(sport=9, dport=2055) / big
    first, second, third = (bytes(Ether() / p) for p in fragment(packet, fragsize=800))
    forged = bytearray(second)
    forged[-10:] = b"X" * 10  # same offset, other bytes: must not win over the first copy
    path = tmp_path / "dup.pcap"
    path.write_bytes(
        pcap_bytes(
            [
                (10**18, first),
                (10**18 + 1, second),
                (10**18 + 2, bytes(forged)),
                (10**18 + 3, third),
            ]
        )
    )
    found, report = datagrams(path)
    assert [d.payload for d in found] == [big]
    # the conflicting copy is counted where it came; an identical one would not be
    assert report.skipped == {"conflicting_fragment": 1}
    assert report.examples[0].frame == 3
    path.write_bytes(
        pcap_bytes(
            [(10**18, first), (10**18 + 1, second), (10**18 + 2, second), (10**18 + 3, third)]
        )
    )
    found, report = datagrams(path)
    assert [d.payload for d in found] == [big] and not report.skipped
    assert report.ignored == {"duplicate_fragment": 1}


def test_fragments_of_a_reused_identification_are_counted_byte_for_byte(tmp_path: Path) -> None:
    """Found by fuzzing: a datagram that lost its last fragment, then another with the same
    identification within the timeout (above ~2,200 datagrams/s to one collector). The
    first one's fragments past the second's end appended themselves to its bytes, and of
    1,516 fragment bytes 580 were counted nowhere; a conflicting fragment counted all its
    bytes, though those not overlapping an earlier one were used (counted twice)."""
    lost = (
        IP(src="10.1.1.1", dst="10.2.2.2", id=104)
        / UDP(sport=9, dport=2055)
        / (b"\x00\x0a" + bytes(range(200)) * 6)
    )
    reused = (
        IP(src="10.1.1.1", dst="10.2.2.2", id=104)
        / UDP(sport=9, dport=2055)
        / (b"\x00\x0a" + b"\xee" * 306)
    )
    first = [bytes(Ether() / p) for p in fragment(lost, fragsize=400)][:-1]  # 3 x 400 bytes
    second = [bytes(Ether() / p) for p in fragment(reused, fragsize=200)]  # 200 + 116 bytes
    path = tmp_path / "reused.pcap"
    path.write_bytes(pcap_bytes([(10**18 + i, f) for i, f in enumerate(first + second)]))
    found, report = datagrams(path)
    assert found == []  # the 316 bytes are the first copy's: a UDP header claiming 1,210
    assert report.skipped_bytes == {
        "conflicting_fragment": 200 + 116,
        "fragment_past_end": 1200 - 316,
        "bad_udp_header": 316,
    }
    assert sum(report.skipped_bytes.values()) == 3 * 400 + 200 + 116
    assert "UDP length 1210 but IP carries 316 bytes" in str(report.examples[-1])
    # a conflicting fragment of which only part overlaps: that part is counted, the rest used
    big = b"\x00\x0a" + bytes(i % 251 for i in range(2000))
    packet = IP(src="10.1.1.1", dst="10.2.2.2", id=80) / UDP(sport=9, dport=2055) / big
    pieces = [bytes(Ether() / p) for p in fragment(packet, fragsize=800)]
    garbage = IP(src="10.1.1.1", dst="10.2.2.2", id=80, flags="MF", frag=50, proto=17) / (
        b"\x99" * 400
    )  # bytes 400..800, before the real ones
    path.write_bytes(
        pcap_bytes(
            [(10**18, bytes(Ether() / garbage))]
            + [(10**18 + 1 + i, f) for i, f in enumerate(pieces)]
        )
    )
    found, report = datagrams(path)
    assert len(found) == 1 and found[0].payload[392:792] == b"\x99" * 400  # first copy kept
    assert report.skipped_bytes == {"conflicting_fragment": 400}
    assert report.skipped == {"conflicting_fragment": 1}  # the real fragment it overlaps
    # a review: a longer copy at an offset already filled had its tail glued to the first
    # copy, and written over the part that came before it; and an incomplete set counted
    # its overlapping bytes a second time
    udp = bytes(UDP(sport=9, dport=2055, len=48) / (b"\x00\x0a" + b"P" * 38))

    def piece(offset: int, data: bytes, more: bool = True) -> bytes:
        return bytes(
            Ether()
            / IP(
                src="10.1.1.1",
                dst="10.2.2.2",
                id=81,
                proto=17,
                flags="MF" if more else 0,
                frag=offset // 8,
            )
            / data
        )

    pieces = [
        piece(0, udp[:16]),
        piece(16, udp[16:32]),
        piece(0, udp[:16] + b"X" * 16),
        piece(32, udp[32:], more=False),
    ]
    path.write_bytes(pcap_bytes([(10**18 + i, f) for i, f in enumerate(pieces)]))
    found, report = datagrams(path)
    assert [d.payload for d in found] == [b"\x00\x0a" + b"P" * 38]
    assert report.skipped_bytes == {"conflicting_fragment": 32}
    path.write_bytes(pcap_bytes([(10**18, piece(0, udp[:16])), (10**18 + 1, piece(8, udp[8:24]))]))
    found, report = datagrams(path)
    assert report.skipped_bytes == {"incomplete_fragments": 24}
    assert report.ignored_bytes == {"duplicate_fragment": 8}


def test_a_fragment_repeated_after_its_datagram_is_whole_is_a_duplicate(tmp_path: Path) -> None:
    """A capture that holds each frame twice (a SPAN port, two merged captures) repeats
    fragments after their datagram was reassembled: it was counted as a set of fragments
    that never completed a datagram, as if something were lost."""
    big = b"\x00\x0a" + bytes(i % 251 for i in range(2000))
    packet = IP(src="10.1.1.1", dst="10.2.2.2", id=79) / UDP(sport=9, dport=2055) / big
    pieces = [bytes(Ether() / p) for p in fragment(packet, fragsize=800)]
    path = tmp_path / "twice.pcap"
    frames = [*pieces, *pieces]
    path.write_bytes(pcap_bytes([(10**18 + i, f) for i, f in enumerate(frames)]))
    found, report = datagrams(path)
    assert [d.payload for d in found] == [big]
    assert not report.skipped
    assert report.ignored == {"duplicate_fragment": 3}
    # the same IP id reused for another datagram afterwards: reassembled, not a duplicate
    other = b"\x00\x0a" + bytes(i % 7 for i in range(2000))
    again = IP(src="10.1.1.1", dst="10.2.2.2", id=79) / UDP(sport=9, dport=2055) / other
    frames += [bytes(Ether() / p) for p in fragment(again, fragsize=800)]
    path.write_bytes(pcap_bytes([(10**18 + i, f) for i, f in enumerate(frames)]))
    found, report = datagrams(path)
    assert [d.payload for d in found] == [big, other]
    assert not report.skipped and report.ignored == {"duplicate_fragment": 3}


def test_indexing_in_small_windows_changes_nothing(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import obserae_forensics.readers.pcap as pcap_module

    monkeypatch.setattr(pcap_module, "INDEX_WINDOW_BYTES", 700)
    for name in ("sf_v9_synscan.pcap", "sf_v5_synscan.pcap", "pm_v9_test.pcap"):
        path = corpus / "exports" / name
        assert all_datagrams(path, True) == all_datagrams(path, False), name


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_reassembly_counts_every_fragment_byte_once(draw: st.DataObject) -> None:
    """Every byte of every fragment is in exactly one place: a datagram made whole, or
    counted with a reason (duplicate, conflicting, past the end, never completed), however
    the fragments overlap, repeat, conflict, go missing or reuse an identification."""
    from obserae_forensics.readers.pcap import Frame, _Reassembly

    reassembly = _Reassembly()
    report = RunReport()
    total_in = made = 0
    for number in range(draw.draw(st.integers(1, 25))):
        key = ("k", draw.draw(st.integers(0, 2)))
        offset = 8 * draw.draw(st.integers(0, 12))
        length = 8 * draw.draw(st.integers(0, 6)) + draw.draw(st.sampled_from([0, 0, 3]))
        fill = draw.draw(st.sampled_from([b"a", b"a", b"b"]))
        data = fill * length
        more = draw.draw(st.booleans())
        frame = Frame(number + 1, 24 * number, 101, number * 10**9, data, len(data), 0)
        total_in += len(data)
        whole = reassembly.add(key, offset, more, data, frame, "f.pcap", report)
        if whole is not None:
            made += len(whole)
    reassembly.flush(report)
    counted = sum(report.skipped_bytes.values()) + sum(report.ignored_bytes.values())
    assert made + counted == total_in, (report.skipped_bytes, report.ignored_bytes)
