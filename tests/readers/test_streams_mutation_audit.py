"""Behaviour of the stream transports of export messages (readers/tcp_streams.py: IPFIX over
TCP cut back into messages; readers/sctp.py: IPFIX over SCTP) that no test pinned, found by
a mutation audit (73 small changes, 48 to tcp_streams.py and 25 to sctp.py, to sequence and
TSN wraps, retransmissions and overlaps, holes, FIN, RST and SYN, message headers and
boundaries, a stream's end, chunk types, padding and flags, problem accounting and the
per-stream bounds). 54 of them no test of tcp_streams, sctp, ipfix_file, the pcap audit or
the TCP and SCTP cases of test_mutation_audit noticed: 47 real gaps, killed here, and 7
equivalent: t_prev_notipfix (an ended connection's verdict _NOT_IPFIX kept as `previous`:
(-1, -1) spans no byte, _inside never matches), t_retx_behind_gt (a repeat ending exactly at
next_seq appended as 0 bytes: nothing read, counted as the same retransmission),
t_unknown_limit (the 2 * 65,536-byte cap while waiting for a second header: a buffer then is
under 65,539 bytes, dead code), t_unknown_synced (synced not set when a stream off port 4739
is told IPFIX: the resync that follows finds the same header at byte 0, nothing skipped),
t_close_synced_only (the last whole message at a stream's end taken only when synced: the
final resync before it syncs any buffer that holds one), s_was_le (a TSN RECENT_TSNS back
looked up: the bitmap is masked below it) and t_forget_counted (the count of IPFIX streams
not lowered at a stream's end: only `open` reads it, which routes bare segments to
TcpStreams, where one of no stream or an ended one is `not_udp` as before; it differed
for a bare FIN of a stream not yet told apart, which pcap.py did not route while no IPFIX
stream was open, and now routes whatever `open` says, as it routes RSTs and SYNs:
test_a_stream_on_another_port_ends_at_its_fin in test_tcp_streams.py). Most gaps are at a
boundary (the 2**32 wrap, a bound reached, not passed; a
header's 4th or 18th byte), in an ended connection's bytes met again, in associations and
streams off the IPFIX ports, and in where a problem is counted. Each test fails with its
change applied and names it. Segments and packets are packed with struct by the helpers of
tests/readers/test_mutation_audit.py, and fed to TcpStreams and SctpAssociations directly."""

from __future__ import annotations

import struct

import pytest

from obserae_forensics.readers import sctp, tcp_streams
from obserae_forensics.readers.datagrams import Datagram
from obserae_forensics.readers.pcap import _address_text
from obserae_forensics.readers.sctp import TSN_SPACE, SctpAssociations
from obserae_forensics.readers.tcp_streams import SEQUENCE_SPACE, Place, TcpStreams
from obserae_forensics.report import RunReport
from tests.readers.test_mutation_audit import (
    COLLECTOR_IP,
    EXPORT_US,
    EXPORTER_IP,
    IPFIX_MESSAGE,
    data,
    ipfix,
    ipfix_template,
    sctp_data,
    sctp_messages,
    tcp_messages,
    tcp_segment,
)

SYN, FIN, RST, PUSH = 0x02, 0x11, 0x14, 0x18  # FIN and RST with ACK, as sent
FIRST = ipfix(ipfix_template(300, [(8, 4), (2, 4)]), sequence=0)  # 32 bytes
SECOND = ipfix(data(300, struct.pack(">II", 1, 5)), sequence=0)  # 28 bytes
THIRD = ipfix(data(300, struct.pack(">II", 2, 6)), sequence=1)
ISN = 999  # the SYN's sequence number: data begins at 1000


class Wire:
    """TcpStreams fed segments one a frame, from the exporter's `sport` to `dport` unless
    told otherwise, in files named as `source` says (a file's end: pause())."""

    def __init__(self, sport: int = 50_000, dport: int = 4739) -> None:
        self.report = RunReport()
        self.streams = TcpStreams("a.pcap", self.report, _address_text)
        self.texts: dict[bytes, str] = {}
        self.sport, self.dport = sport, dport
        self.number = 0
        self.out: list[Datagram] = []

    def send(
        self, seq: int, payload: bytes = b"", flags: int = PUSH, sport: int = 0, dport: int = 0
    ) -> None:
        self.number += 1
        segment = tcp_segment(
            seq % SEQUENCE_SPACE, payload, sport or self.sport, dport or self.dport, flags
        )
        self.out += self.streams.segment(
            self.number,
            24 + 100 * self.number,
            EXPORT_US * 1000 + self.number,
            EXPORTER_IP,
            COLLECTOR_IP,
            segment,
            54 + len(segment),
            self.texts,
        )

    def place(self) -> Place:
        return Place(self.number, 24 + 100 * self.number, EXPORT_US)

    def next_file(self, source: str) -> None:
        self.out += self.streams.pause(self.place())
        self.streams.source = source

    def finish(self) -> list[bytes]:
        self.out += self.streams.finish(self.place())
        return [d.payload for d in self.out]


def stream_of(*payloads: bytes, start: int = ISN + 1) -> list[tuple[int, bytes, int]]:
    """`payloads` as consecutive segments from sequence number `start`."""
    out, seq = [], start
    for payload in payloads:
        out.append((seq, payload, PUSH))
        seq += len(payload)
    return out


# -- IPFIX over TCP: message headers -------------------------------------------------------


def test_a_message_of_its_header_alone_is_a_message() -> None:
    """Kills t_msglen_min (message_length refusing a 16-byte message): RFC 7011 §3 makes a
    message a header and zero or more sets, so a bare header is one; refused, the stream
    lost its place at it and counted it as bytes skipped to the next header."""
    bare = struct.pack(">HHIII", 10, 16, 1_700_000_000, 0, 42)
    found, report = tcp_messages([(ISN, b"", SYN), *stream_of(FIRST, bare, SECOND)], 50_000, 4739)
    assert [d.payload for d in found] == [FIRST, bare, SECOND]
    assert not report.skipped


def test_a_second_header_split_after_its_version_still_proves_the_stream() -> None:
    """Kills t_unknown_second_split (a stream off port 4739 told apart once 2 bytes, not 4,
    of its second header are there): a segment that ends inside the second header's length
    field made a YAF export to another port other traffic, all its records unread."""
    segments = [(ISN, b"", SYN), *stream_of(FIRST + SECOND[:3], SECOND[3:])]
    found, report = tcp_messages(segments, 50_000, 18_000)
    assert [d.payload for d in found] == [FIRST, SECOND]
    assert not report.skipped and report.ignored == {"not_udp": 1}  # the SYN


def test_a_false_header_at_a_late_start_on_port_4739_is_passed_over() -> None:
    """Kills t_4739_synced (a stream on port 4739 taken to begin at a message boundary
    whenever its first bytes look like a header, its SYN missing): a capture begun inside
    a message at bytes that read as a header of 16,384 bytes waited for them, and counted
    every message after as one cut by the connection's end (`truncated`); it is
    resynchronised at the first header another follows."""
    false = b"\x00\x0a\x40\x00" + bytes(12) + b"\x00\x02\x00\x04"  # set id 2: plausible
    found, report = tcp_messages(stream_of(false + FIRST, SECOND, start=5_000), 50_000, 4739)
    assert [d.payload for d in found] == [FIRST, SECOND]
    assert report.skipped == {"ipfix_stream_resync": 1}
    assert report.skipped_bytes["ipfix_stream_resync"] == len(false)


def test_a_second_header_of_18_bytes_is_checked_for_its_set_id() -> None:
    """Kills t_msglen_avail (the first set id checked only with more than 18 bytes there,
    not 18): off port 4739 a stream is IPFIX when a second header follows the first; one
    whose set id, there to read, is a reserved one (1) is none, and the stream other
    traffic, not an IPFIX stream with a message cut at its end."""
    follower = struct.pack(">HHIII", 10, 40, 1_700_000_000, 0, 42) + struct.pack(">H", 1)
    found, report = tcp_messages([(ISN, b"", SYN), (ISN + 1, FIRST + follower, PUSH)], 50_000, 9000)
    assert found == [] and not report.skipped and report.ignored == {"not_udp": 2}


def test_a_resync_decides_as_soon_as_4_bytes_of_the_next_header_are_there() -> None:
    """Kills t_boundary_wait (message_boundary waiting for a fifth byte of the next header):
    4 bytes tell a header (version and length); a capture begun inside a connection
    hands its first message on at the frame that brought them, not a frame later."""
    segments = stream_of(b"\x55" * 9 + FIRST + SECOND[:4], SECOND[4:], start=5_000)
    found, report = tcp_messages(segments, 50_000, 4739)
    assert [(d.payload, d.frame) for d in found] == [(FIRST, 1), (SECOND, 2)]
    assert report.skipped_bytes == {"ipfix_stream_resync": 9}


@pytest.mark.parametrize("port", [4739, 18_000])
def test_held_bytes_past_the_wrap_are_read_after_a_hole(port: int) -> None:
    """Kills t_beyond_chain_wrap (_ipfix_beyond_hole following the held segments without
    `% SEQUENCE_SPACE`) and t_nearest_wrap (_nearest_held not measuring from the hole
    modulo 2**32): off port 4739, a connection whose first segment was lost is IPFIX when
    the bytes held beyond the hole hold a header another follows; across the wrap the
    stream was taken for other traffic, its records unread. On any port, the hole given up
    on is the one before the nearest held segment: the one past the wrap was taken, and
    the segment before it dropped uncounted."""
    isn = SEQUENCE_SPACE - 1 - len(FIRST) - len(SECOND)  # SECOND ends at the wrap
    segments = [
        (isn, b"", SYN),
        (isn + 1 + len(FIRST), SECOND, PUSH),  # FIRST lost
        (0, THIRD, PUSH),
    ]
    found, report = tcp_messages(segments, 50_000, port)
    assert [d.payload for d in found] == [SECOND, THIRD]
    assert report.skipped == {"tcp_gap": 1}


# -- IPFIX over TCP: connections that end ----------------------------------------------------


def test_a_connection_of_one_message_to_another_port_is_read() -> None:
    """Kills t_close_one_message (a stream off port 4739 that ends before a second header
    taken for other traffic): a connection whose SYN the capture holds and that sends one
    whole message, then FIN, is IPFIX (an exporter's single template message, or one
    export per connection); its records were lost as `not_udp`."""
    end = ISN + 1 + len(FIRST)
    found, report = tcp_messages(
        [(ISN, b"", SYN), (ISN + 1, FIRST, PUSH), (end, b"", FIN)], 50_000, 9000
    )
    assert [d.payload for d in found] == [FIRST]
    assert not report.skipped


@pytest.mark.parametrize("isn", [ISN, SEQUENCE_SPACE - 20])
@pytest.mark.parametrize("flags", [FIN, RST])
def test_a_fin_or_rst_ends_the_stream_where_it_is(flags: int, isn: int) -> None:
    """Kills t_rst_ignored (the stream not ended by a RST) and t_wrap_next (the next
    sequence number not taken modulo 2**32, so that a stream past the wrap never met its
    FIN; t_fin_ignored, no FIN at all, test_tcp_streams catches): a message the
    connection's end cuts is counted `truncated` at the frame that ended it, not at the
    capture's last frame, and bytes after it on the port pair (a new connection from the
    same port, its SYN not captured) are read as a stream of their own, not as more of the
    ended one."""
    wire = Wire()
    wire.send(isn, flags=SYN)
    wire.send(isn + 1, FIRST + SECOND[:10])
    wire.send(isn + 1 + len(FIRST) + 10, flags=flags)  # frame 3
    wire.send(77_000, THIRD)  # another connection's first message, no SYN
    wire.send(77_000 + len(THIRD), FIRST)
    assert wire.finish() == [FIRST, THIRD, FIRST]
    [cut] = [p for p in wire.report.examples if p.reason == "truncated"]
    assert cut.frame == 3
    assert wire.report.skipped == {"truncated": 1}


def test_a_bare_ack_after_the_end_keeps_its_retransmissions_read_once() -> None:
    """Kills t_verdict_bare (a segment without payload of an ended connection taken for a
    new connection's bytes): the exporter's last ACK after its FIN forgot what the ended
    stream had read, so a retransmission of its data after that opened a stream again and
    its messages were read twice (records counted twice)."""
    end = ISN + 1 + len(FIRST) + len(SECOND)
    segments = [
        (ISN, b"", SYN),
        *stream_of(FIRST, SECOND),
        (end, b"", FIN),
        (end + 1, b"", 0x10),  # the last ACK
        *stream_of(FIRST, SECOND),  # retransmitted late
    ]
    found, report = tcp_messages(segments, 50_000, 4739)
    assert [d.payload for d in found] == [FIRST, SECOND]
    assert not report.skipped


def test_a_retransmission_ending_where_the_ended_stream_ended_is_read_once() -> None:
    """Kills t_verdict_beyond0 (a repeat of an ended stream's bytes that ends exactly at its
    end taken for new bytes): the retransmitted last segment forgot what the stream had
    read, and a later repeat of its first message was read again."""
    end = ISN + 1 + len(FIRST) + len(SECOND)
    segments = [
        (ISN, b"", SYN),
        *stream_of(FIRST, SECOND),
        (end, b"", FIN),
        (ISN + 1 + len(FIRST), SECOND, PUSH),  # ends where the stream ended
        (ISN + 1, FIRST, PUSH),
    ]
    found, report = tcp_messages(segments, 50_000, 4739)
    assert [d.payload for d in found] == [FIRST, SECOND]
    assert not report.skipped


def test_bytes_that_run_past_an_ended_stream_are_read_from_its_end() -> None:
    """Kills t_verdict_trim (of a segment that overlaps an ended stream's last bytes and
    runs past them, the wrong part kept): its bytes past the end are a connection of their
    own and begin where the ended one stopped."""
    end = ISN + 1 + len(FIRST)
    segments = [
        (ISN, b"", SYN),
        (ISN + 1, FIRST, PUSH),
        (end, b"", FIN),
        (end - 8, FIRST[-8:] + SECOND + THIRD, PUSH),  # 8 bytes read already
    ]
    found, report = tcp_messages(segments, 50_000, 4739)
    assert [d.payload for d in found] == [FIRST, SECOND, THIRD]
    assert not report.skipped


def test_a_new_syn_on_a_port_pair_ends_the_connection_before_it() -> None:
    """Kills t_synretx_any (any SYN of a live stream taken for its retransmission): an
    exporter that restarts and connects again from the same port (no FIN or RST seen)
    sends a SYN of another sequence number: a new connection whose bytes are read from
    its start, the old one ended (its cut message counted), not a hole in the old one."""
    wire = Wire()
    wire.send(ISN, flags=SYN)
    wire.send(ISN + 1, FIRST + SECOND[:5])
    wire.send(500_000, flags=SYN)  # frame 3
    wire.send(500_001, FIRST + SECOND)
    assert wire.finish() == [FIRST, FIRST, SECOND]
    assert wire.report.skipped == {"truncated": 1}
    assert wire.report.examples[0].frame == 3


def test_a_syn_after_other_traffic_on_the_port_pair_opens_a_stream() -> None:
    """Kills t_syn_verdict_kept (a SYN off port 4739 not forgetting how the connection
    before it on its port pair ended): a port pair that carried other traffic once and then
    an exporter's connection lost the connection's records as other traffic too."""
    wire = Wire(dport=18_000)
    http = b"GET / HTTP/1.1\r\n\r\n"
    wire.send(ISN, flags=SYN)
    wire.send(ISN + 1, http)
    wire.send(ISN + 1 + len(http), flags=FIN)
    wire.send(800_000, flags=SYN)
    wire.send(800_001, FIRST)
    wire.send(800_001 + len(FIRST), SECOND)
    assert wire.finish() == [FIRST, SECOND]
    assert not wire.report.skipped


def test_fast_open_data_on_a_syn_to_another_port_is_read() -> None:
    """Kills t_syn_other_payload (a SYN off port 4739 remembered for its sequence number
    only, its data dropped): TCP Fast Open sends the first bytes on the SYN; dropped, the
    stream began with a hole and its first message (the templates) was lost."""
    segments = [(ISN, FIRST, SYN), (ISN + 1 + len(FIRST), SECOND, PUSH)]
    found, report = tcp_messages(segments, 50_000, 18_000)
    assert [d.payload for d in found] == [FIRST, SECOND]
    assert not report.skipped


def test_a_connection_the_previous_one_did_not_read_up_to_its_start_is_read() -> None:
    """Kills t_inside_le (the byte just past what an ended connection read taken for one it
    read): data of a new connection on the port pair that lies before its SYN's number,
    nothing read yet, starting exactly where the old connection stopped, was dropped as the
    old one's retransmission; it is read from there, the start moved (`tcp_start_moved`)."""
    old_end = 100_001 + len(FIRST)
    segments = [
        (100_000, b"", SYN),
        (100_001, FIRST, PUSH),
        (old_end, b"", FIN),
        (old_end + 50, b"", SYN),  # a damaged SYN: its number lies past the data
        *stream_of(FIRST, SECOND, start=old_end),
    ]
    found, report = tcp_messages(segments, 50_000, 4739)
    assert [d.payload for d in found] == [FIRST, FIRST, SECOND]
    assert report.repaired == {"tcp_start_moved": 1}


# -- IPFIX over TCP: holes, copies, bytes before the start ---------------------------------


def test_the_first_copy_of_held_bytes_stands() -> None:
    """Kills t_held_equal (a second copy of held bytes, as long as the first, taking its
    place): as for retransmitted and overlapping bytes read in order, and IP fragments,
    the first copy of bytes beyond a hole stands."""
    other = SECOND[:-4] + b"\xff" * 4
    segments = [
        (ISN, b"", SYN),
        (ISN + 1 + len(FIRST), SECOND, PUSH),
        (ISN + 1 + len(FIRST), other, PUSH),
        (ISN + 1, FIRST, PUSH),
    ]
    found, _ = tcp_messages(segments, 50_000, 4739)
    assert [d.payload for d in found] == [FIRST, SECOND]


def test_bytes_before_the_start_are_counted_once_and_only_theirs() -> None:
    """Kills t_before_min (bytes before the start counted up to the start, not as many as
    the segment holds) and t_before_once (their retransmission counted again): a capture
    begun inside a connection, reordered, counts each lost segment once, by its own
    size."""
    start = 10_000
    segments = [
        *stream_of(FIRST, SECOND, start=start),
        (start - 100, b"\x01" * 30, PUSH),  # 100 bytes before the start, 30 of them here
        (start - 100, b"\x01" * 30, PUSH),  # again
    ]
    _, report = tcp_messages(segments, 50_000, 4739)
    assert report.skipped == {"tcp_before_start": 1}
    assert report.skipped_bytes["tcp_before_start"] == 30


# -- IPFIX over TCP: frames counted ----------------------------------------------------------


def test_the_frames_of_a_stream_told_other_traffic_count_their_bytes() -> None:
    """Kills t_undecided_bytes (the frames of a stream found to be other traffic counted
    by their payload, not their size): `not_udp` counts frames' bytes everywhere else."""
    http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    segments = [(ISN + 1, http[:10], PUSH), (ISN + 11, http[10:], PUSH)]
    _, report = tcp_messages(segments, 50_000, 80)
    assert report.ignored == {"not_udp": 2}
    assert report.ignored_bytes["not_udp"] == 2 * (54 + 20) + len(http)


def test_a_repeat_before_a_stream_is_told_apart_is_not_counted_twice() -> None:
    """Kills t_retx_undecided (a repeated segment of a stream not yet told apart counted as
    a retransmission at once): off port 4739 a stream that proves other traffic counts
    its frames `not_udp` then, the repeat with them; counted as a retransmission as well,
    the frame was counted twice."""
    start = b"\x00\x0a\x00\x40"  # a header's first bytes: not told apart yet
    segments = [(ISN, b"", SYN), (ISN + 1, start, PUSH), (ISN + 1, start, PUSH)]
    segments.append((ISN + 5, b"\x16\x03\x01" + bytes(40), PUSH))
    _, report = tcp_messages(segments, 50_000, 443)
    assert report.ignored == {"not_udp": 4}


# -- IPFIX over SCTP -------------------------------------------------------------------------


def chunk(tsn: int, payload: bytes, *, flags: int = 3, stream: int = 0, protocol: int = 0) -> bytes:
    """A DATA chunk (flags: B 2, E 1) of payload protocol `protocol`, padded."""
    raw = struct.pack(">BBHIHHI", 0, flags, 16 + len(payload), tsn, stream, 0, protocol) + payload
    return raw + bytes(-len(raw) % 4)


class Link:
    """SctpAssociations fed packets one a frame: the exporter's port 33000 to `dport`, with
    verification tag 7, unless told otherwise."""

    def __init__(self, dport: int = 4739) -> None:
        self.report = RunReport()
        self.associations = SctpAssociations("a.pcap", self.report, _address_text)
        self.texts: dict[bytes, str] = {}
        self.dport = dport
        self.number = 0
        self.out: list[Datagram] = []

    def send(
        self,
        *chunks: bytes,
        sport: int = 33_000,
        dport: int = 0,
        tag: int = 7,
        back: bool = False,
        cut: bool = False,
    ) -> None:
        """`back`: the collector's packet to the exporter."""
        self.number += 1
        ports = (dport or self.dport, sport) if back else (sport, dport or self.dport)
        packet = struct.pack(">HHII", *ports, tag, 0) + b"".join(chunks)
        src, dst = (COLLECTOR_IP, EXPORTER_IP) if back else (EXPORTER_IP, COLLECTOR_IP)
        self.out += self.associations.packet(
            self.number,
            24 + 100 * self.number,
            EXPORT_US * 1000 + self.number,
            src,
            dst,
            packet,
            34 + len(packet),
            self.texts,
            cut=cut,
        )

    def finish(self) -> list[bytes]:
        self.associations.finish()
        return [d.payload for d in self.out]


OFF_PORT = 18_000  # no IPFIX port: the association shows IPFIX by its first message


def test_a_short_data_chunk_of_an_association_off_the_ipfix_ports_is_counted() -> None:
    """Kills s_known_port_only (a DATA chunk with no user data counted only on the IPFIX
    ports): of an association shown to carry IPFIX elsewhere, its bytes are as much lost."""
    link = Link(OFF_PORT)
    link.send(chunk(1, FIRST))
    link.send(struct.pack(">BBHIHHI", 0, 3, 16, 2, 0, 0, 0))
    assert link.finish() == [FIRST]
    assert link.report.skipped == {"bad_sctp_chunk": 1} and not link.report.ignored


def test_a_damaged_chunk_alone_in_an_association_off_the_ipfix_ports_is_counted() -> None:
    """Kills s_damage_assoc (damage counted only with a chunk read or on an IPFIX port): a
    packet of an IPFIX association off the IPFIX ports whose only chunk runs past its end
    lost IPFIX bytes, not other traffic's."""
    link = Link(OFF_PORT)
    link.send(chunk(1, FIRST))
    link.send(struct.pack(">BBH", 0, 3, 400) + bytes(12))
    assert link.finish() == [FIRST]
    assert link.report.skipped == {"bad_sctp_chunk": 1} and not link.report.ignored


def test_another_protocol_s_chunk_in_an_association_off_the_ipfix_ports_is_not_read() -> None:
    """Kills s_protocol_any (every chunk of an association off the IPFIX ports read): only
    payload protocol 0, as IPFIX exporters send, is read there; a chunk that names another
    protocol is that protocol's, however its bytes begin."""
    link = Link(OFF_PORT)
    link.send(chunk(1, FIRST))
    link.send(chunk(2, SECOND, protocol=46))
    assert link.finish() == [FIRST]
    assert link.report.ignored == {"not_udp": 1}


def test_only_a_first_fragment_of_a_whole_header_shows_ipfix_off_the_ipfix_ports() -> None:
    """Kills s_shows_no_begin (a middle fragment taken to show IPFIX) and s_shows_first_any
    (a first fragment shown IPFIX whatever its header's length): off the IPFIX ports an
    association carries IPFIX when its first message seen begins a message whose length
    runs past the fragment; other chunks that begin 00 0a are another protocol's, never
    held nor counted as fragments lost."""
    link = Link(OFF_PORT)
    link.send(chunk(1, SECOND[:20], flags=0))  # a middle fragment
    link.send(chunk(5, FIRST + bytes(8), flags=2), sport=33_001)  # its length 32 of 40
    assert link.finish() == []
    assert not link.report.skipped and link.report.ignored == {"not_udp": 2}


def test_an_i_data_chunk_of_an_association_off_the_ipfix_ports_is_counted() -> None:
    """Kills s_idata_port_only (I-DATA counted only on the IPFIX ports): in an association
    shown to carry IPFIX elsewhere an I-DATA chunk (RFC 8260), not read, is counted."""
    link = Link(OFF_PORT)
    link.send(chunk(1, FIRST))
    link.send(struct.pack(">BBHIHHII", 64, 3, 20 + len(SECOND), 2, 0, 0, 0, 0) + SECOND)
    assert link.finish() == [FIRST]
    assert link.report.skipped == {"sctp_idata_unread": 1} and not link.report.ignored


def test_bytes_after_the_last_chunk_are_counted_only_when_not_zero() -> None:
    """Kills s_tail_zero (any 1 to 3 bytes after the last chunk counted as damage; and
    s_chunk_loop_lt, a 4-byte chunk that ends the packet taken for such bytes, which
    test_sctp catches with an ABORT alone): zero bytes
    after the chunks are padding, a SHUTDOWN COMPLETE bundled last is a chunk; other
    bytes there are counted."""
    link = Link()
    link.send(chunk(1, FIRST), b"\x00\x00")
    link.send(chunk(2, SECOND), struct.pack(">BBH", 14, 0, 4))
    link.send(chunk(3, THIRD), b"\x07\x00")
    assert link.finish() == [FIRST, SECOND, THIRD]
    assert link.report.skipped == {"bad_sctp_chunk": 1}
    assert link.report.skipped_bytes["bad_sctp_chunk"] == 2


def test_a_chunk_length_below_its_header_in_a_cut_frame_is_damage() -> None:
    """Kills s_cut_short_len (a chunk whose length field is below 4 counted `truncated` in a
    frame the capture cut): no capture makes a length field wrong; the chunk is damaged
    (`bad_sctp_chunk`) whatever the snap length did."""
    link = Link()
    link.send(chunk(1, FIRST) + struct.pack(">BBH", 0, 3, 2) + bytes(8), cut=True)
    assert link.finish() == [FIRST]
    assert link.report.skipped == {"bad_sctp_chunk": 1}


def test_a_tsn_delivered_out_of_order_is_remembered() -> None:
    """Kills s_back_forgotten (a TSN below the newest delivered not remembered) and
    s_ahead_wrap (a TSN past the 2**32 wrap not taken as the newest): a retransmission of
    a message delivered after a later one, or just after the wrap, is read once."""
    for tsns in ((5, 3), (TSN_SPACE - 1, 0)):
        found, report = sctp_messages(
            [sctp_data(tsns[0], FIRST, begin=True, end=True)]
            + [sctp_data(tsns[1], SECOND, begin=True, end=True)] * 2
        )
        assert [d.payload for d in found] == [FIRST, SECOND], tsns
        assert report.ignored == {"sctp_retransmission": 1}, tsns


def test_a_first_fragment_that_comes_last_completes_across_the_wrap() -> None:
    """Kills s_fwd_wrap_cond and s_fwd_wrap_walk (the walk from a first fragment to its last
    without `% TSN_SPACE`): a message whose fragments have TSNs 2**32 - 1 and 0 and whose
    first fragment is captured after the last completes."""
    found, report = sctp_messages(
        [
            sctp_data(0, IPFIX_MESSAGE[20:], begin=False, end=True),
            sctp_data(TSN_SPACE - 1, IPFIX_MESSAGE[:20], begin=True, end=False),
        ]
    )
    assert [d.payload for d in found] == [IPFIX_MESSAGE] and not report.skipped


def test_fragments_never_completed_are_counted_at_the_first() -> None:
    """Kills s_giveup_last_frame (fragments given up counted at the newest's frame): they
    are counted at the frame of the first of them, where the lost message began."""
    found, report = sctp_messages(
        [
            sctp_data(1, IPFIX_MESSAGE[:20], begin=True, end=False),
            sctp_data(2, IPFIX_MESSAGE[20:30], begin=False, end=False),
        ]
    )
    assert found == [] and [p.frame for p in report.examples] == [1]


# -- bounds -----------------------------------------------------------------------------------


def test_held_bytes_and_segments_up_to_their_bounds_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills t_held_bytes_bound and t_held_segments_bound (a hole given up on when the
    bytes or segments held beyond it reach their bound, not pass it): HELD_BYTES and
    HELD_SEGMENTS are what a stream may hold."""
    monkeypatch.setattr(tcp_streams, "HELD_BYTES", len(SECOND) + len(THIRD))
    monkeypatch.setattr(tcp_streams, "HELD_SEGMENTS", 2)
    after = ISN + 1 + len(FIRST)
    segments = [(ISN, b"", SYN), *stream_of(SECOND, THIRD, start=after), (ISN + 1, FIRST, PUSH)]
    found, report = tcp_messages(segments, 50_000, 4739)
    assert [d.payload for d in found] == [FIRST, SECOND, THIRD] and not report.skipped


def test_bytes_no_longer_held_leave_room_for_other_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills t_drain_total (bytes held beyond a hole that filled still counted in
    HELD_TOTAL) and t_release_total (those of a stream found to be other traffic): the
    total bounds what is held now; counted on, it made later streams give their holes up
    (`tcp_gap`, their messages lost) with nothing held."""
    monkeypatch.setattr(tcp_streams, "HELD_TOTAL", len(SECOND) + len(THIRD) + 10)
    wire = Wire(dport=4739)
    after = ISN + 1 + len(FIRST)
    # to a web server: bytes held beyond a hole, then found to be other traffic
    wire.send(ISN, flags=SYN, sport=40_001, dport=80)
    wire.send(after, SECOND, sport=40_001, dport=80)
    wire.send(ISN + 1, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[: len(FIRST)], sport=40_001, dport=80)
    for sport in (50_001, 50_002):  # held, then filled
        wire.send(ISN, flags=SYN, sport=sport)
        wire.send(after, SECOND, sport=sport)
        wire.send(after + len(SECOND), THIRD, sport=sport)
        wire.send(ISN + 1, FIRST, sport=sport)
    assert wire.finish() == [FIRST, SECOND, THIRD] * 2
    assert not wire.report.skipped


def test_the_least_recently_fed_stream_is_closed_for_room_and_only_past_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills t_lru_no_touch (streams closed for room in the order they opened, not by when
    they were last fed) and t_open_bound (one closed when their number reaches
    MAX_STREAMS, not passes it): with room for two, two connections each in the middle of
    a message are both read whole; a third closes the one fed least recently, whose cut
    message is counted."""
    monkeypatch.setattr(tcp_streams, "MAX_STREAMS", 2)
    wire = Wire()
    for sport in (50_001, 50_002):
        wire.send(ISN, flags=SYN, sport=sport)
        wire.send(ISN + 1, FIRST[:10], sport=sport)
    wire.send(ISN + 11, FIRST[10:20], sport=50_001)
    wire.send(ISN + 11, FIRST[10:], sport=50_002)  # 50_002 fed last
    wire.send(ISN + 21, FIRST[20:], sport=50_001)  # 50_001 fed last
    assert wire.finish() == [FIRST, FIRST] and not wire.report.skipped
    wire = Wire()
    for sport in (50_001, 50_002):
        wire.send(ISN, flags=SYN, sport=sport)
        wire.send(ISN + 1, FIRST[:10], sport=sport)
    wire.send(ISN + 11, FIRST[10:20], sport=50_001)
    wire.send(ISN, flags=SYN, sport=50_003)
    wire.send(ISN + 1, FIRST, sport=50_003)
    wire.finish()
    assert ":50002:" in wire.report.examples[0].message


def test_a_stream_not_yet_told_apart_does_not_carry_ipfix() -> None:
    """Kills t_carries_undecided (a stream off port 4739 not yet shown to be IPFIX taken to
    carry it): a segment of it the snap length cut would be counted `truncated`, a problem
    of the export, where it may be any TCP (an HTTPS connection); once a second header
    follows the first, it carries IPFIX."""
    wire = Wire(dport=18_000)
    ports = struct.pack(">HH", 50_000, 18_000)
    wire.send(ISN, flags=SYN)
    wire.send(ISN + 1, FIRST)
    assert not wire.streams.carries(EXPORTER_IP, COLLECTOR_IP, ports)
    wire.send(ISN + 1 + len(FIRST), SECOND)
    assert wire.streams.carries(EXPORTER_IP, COLLECTOR_IP, ports)


def test_a_whole_message_at_a_file_s_end_is_named_in_that_file() -> None:
    """Kills t_pause_no_whole (a stream's last whole message, which only its end can prove
    IPFIX off port 4739, left to the run's end): it is taken when its file ends, named at
    that file's last frame, so that datagrams keep the file and order of their frames."""
    wire = Wire(dport=18_000)
    wire.send(ISN, flags=SYN)
    wire.send(ISN + 1, FIRST)
    wire.next_file("b.pcap")
    wire.send(5, b"\x01", sport=1)
    assert wire.finish() == [FIRST]
    assert [(d.source, d.frame) for d in wire.out] == [("a.pcap", 2)]


def test_sctp_bounds_keep_what_they_allow_and_give_up_the_least_recently_fed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills s_total_ge (fragments given up when all held reach HELD_TOTAL, not pass it)
    and s_assoc_lru (associations forgotten for room in the order they began, not by when
    they were last fed): two associations each holding half of HELD_TOTAL keep it, and a
    third association forgets the one fed least recently, not one in the middle of a
    message."""
    monkeypatch.setattr(sctp, "HELD_TOTAL", 40)
    monkeypatch.setattr(sctp, "MAX_ASSOCIATIONS", 2)
    message = IPFIX_MESSAGE
    link = Link()
    link.send(chunk(1, message[:20], flags=2), sport=33_001)
    link.send(chunk(1, message[:20], flags=2), sport=33_002)
    link.send(chunk(2, message[20:30], flags=0), sport=33_001)  # 33_001 fed last
    link.send(chunk(3, message[30:], flags=1), sport=33_001)
    assert link.finish() == [message]
    [lost] = link.report.examples  # the other's, at the end
    assert ":33002 " in lost.message and lost.reason == "incomplete_fragments"
    link = Link()
    link.send(chunk(1, message[:20], flags=2), sport=33_001)
    link.send(chunk(1, FIRST), sport=33_002)
    link.send(chunk(2, message[20:30], flags=0), sport=33_001)  # 33_001 fed last
    link.send(chunk(1, SECOND), sport=33_003)  # 33_002 forgotten
    link.send(chunk(3, message[30:], flags=1), sport=33_001)
    assert link.finish() == [FIRST, SECOND, message] and not link.report.skipped


def test_an_exporter_port_s_slots_are_taken_again_only_past_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills s_slots_bound (a port's associations allowed one more than SLOTS live) and
    s_slots_lru (the slot given up by the association that began first, not the one fed
    least recently): the decoder keeps state per transport session, bounded per exporter
    port; past SLOTS the least recently fed association gives its slot up, and a live one
    keeps its own (its templates and numbering with it)."""
    monkeypatch.setattr(sctp, "SLOTS", 2)
    link = Link()
    for tag in (1, 2, 3):
        link.send(chunk(1, FIRST), tag=tag)
    link.finish()
    assert [d.session for d in link.out] == [1, 2, 1]
    link = Link()
    for tsn, tag in enumerate((1, 2, 1, 3, 1), start=1):
        link.send(chunk(tsn, FIRST), tag=tag)
    link.finish()
    assert [(d.session, d.fresh) for d in link.out] == [
        (1, True),
        (2, True),
        (1, False),
        (2, True),
        (1, False),
    ]


def test_held_fragments_past_the_byte_bound_are_given_up_down_to_half(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills s_trim_half_bytes (fragments given up only down to HELD_BYTES, not half of
    it): one count for many chunks, not one each time a new fragment passes the bound."""
    monkeypatch.setattr(sctp, "HELD_BYTES", 1_000)
    found, report = sctp_messages(
        [sctp_data(tsn, b"x" * 300, begin=False, end=False) for tsn in range(1, 5)]
    )
    assert found == []
    assert ["(3 chunk(s))" in p.message for p in report.examples] == [True, False]
