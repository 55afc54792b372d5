"""IPFIX over TCP (RFC 7011 §10.4) in a capture: the byte stream cut back into messages.

YAF, ipfixprobe and nProbe export over TCP by default or on request, and a collector's
capture then holds TCP segments, not datagrams: a message split over segments, several in
one, retransmitted, reordered. The UDP path read none of it (`not_udp`, as if no flow
export were there). Each direction of each connection is reassembled in sequence order
and every complete IPFIX message is handed on as a Datagram of its own, with the frame
being read when it completed (so messages come in frame order, whatever the batch size;
one completed only when a file ended names the file's last frame), the exporter's
address and port (its transport session: RFC 7011 §8 scopes templates to it).

What a stream is: on the IPFIX port 4739, any (a connection the capture began inside is
resynchronised at the first header another follows); on another port, one whose first
bytes are a message header that a second follows, or, bytes missing before that second
header, whose SYN the capture holds and whose bytes beyond the hole hold a header another
follows. A connection to another port that the capture began inside a message is not
recognised; neither is an IPFIX file copied over
HTTP, FTP or SMB (its first bytes are the protocol's). Anything else on TCP (BGP, BMP, a
web server) stays `not_udp`, unread, as before.

Lost bytes never pass silently: a hole in the sequence (`tcp_gap`), bytes skipped to find
the next message (`ipfix_stream_resync`), a message the connection or capture ends inside
(`truncated`), each with its frame and bytes. Retransmitted or overlapping bytes are read
once: the first copy stands, as for IP fragments. A FIN ends the stream where its sequence
number says, not where it was captured; a SYN seen again with the connection's first
sequence number is a retransmission; data on a SYN (TCP Fast Open) starts after it. Data
before where the SYN says the stream begins, while nothing was read, starts it there (a
damaged SYN read nothing: `tcp_start_moved`, repaired), unless the connection before it
on the port pair read those bytes (its retransmission); bytes before the start that come
after it are counted (`tcp_before_start`).

Bounds: at most MAX_STREAMS streams (the least recently fed closed first), out-of-order
segments held up to HELD_BYTES and HELD_SEGMENTS per stream and HELD_TOTAL over all (then
the hole is given up on), and the verdicts and first sequence numbers remembered for
connections without a stream in LRU tables of MAX_STREAMS entries: a raw capture of a SYN
scan keeps a bounded table. Streams go on across the run's files (TcpStreams).
"""

from __future__ import annotations

import mmap
import struct
from collections import OrderedDict
from collections.abc import Callable

from ..errors import MalformedInput, TruncatedInput
from ..report import RunReport
from .datagrams import Datagram
from .ipfix import FIRST_DATA_SET, OPTIONS_TEMPLATE_SET, TEMPLATE_SET

IPFIX_PORT = 4739
MAX_STREAMS = 1 << 16  # open streams kept; beyond, the least recently fed is closed
HELD_BYTES = 1 << 20  # out-of-order bytes held per stream before a hole is given up
HELD_SEGMENTS = 4096  # out-of-order segments held per stream
HELD_TOTAL = 64 << 20  # out-of-order bytes held over all streams
MESSAGE_HEADER = 16
SEQUENCE_SPACE = 1 << 32
HALF = SEQUENCE_SPACE // 2

_tcp_header = struct.Struct(">HHIIBB")
_PORT_BYTES = IPFIX_PORT.to_bytes(2, "big")
_UNKNOWN, _IPFIX, _OTHER = range(3)
# a verdict: other traffic; an ended stream's is the sequence numbers it read (first, end)
_NOT_IPFIX = (-1, -1)
_FIN, _SYN, _RST = 0x01, 0x02, 0x04

Key = tuple[bytes, int, bytes, int]


def message_length(buf: bytes | bytearray | mmap.mmap, at: int) -> int:
    """Length of the IPFIX message header at `at`, or 0: version 10, a length of at least
    a header, and a first set id that can be one (when the set header is there)."""
    if len(buf) - at < 4 or buf[at] != 0 or buf[at + 1] != 10:
        return 0
    length = buf[at + 2] << 8 | buf[at + 3]
    if length < MESSAGE_HEADER:
        return 0
    if len(buf) - at >= MESSAGE_HEADER + 2 and length >= MESSAGE_HEADER + 4:
        set_id = buf[at + 16] << 8 | buf[at + 17]
        if set_id not in (TEMPLATE_SET, OPTIONS_TEMPLATE_SET) and set_id < FIRST_DATA_SET:
            return 0
    return length


def message_boundary(
    buf: bytes | bytearray | mmap.mmap, start: int, *, final: bool
) -> tuple[int, bool]:
    """Where the next message begins at or after `start`, for a reader that lost its place:
    (offset, True) at a header another header follows (or, when `final`, one that ends
    exactly at the end of `buf`: a file's last message); (offset, False) at a header whose
    follower has not arrived yet (only when not `final`: wait there); (-1, False) when no
    header begins in `buf`."""
    while True:
        at = buf.find(b"\x00\x0a", start)
        if at < 0 or at + 4 > len(buf):
            return -1, False
        length = message_length(buf, at)
        if length:
            after = at + length
            if final and after == len(buf):
                return at, True
            if not final and after + 4 > len(buf):
                return at, False
            if message_length(buf, after):
                return at, True
        start = at + 1


class Place:
    """A frame: where a message completed, or a problem was seen (`source`: its file, where
    it may be another than the one being read)."""

    __slots__ = ("arrival_us", "number", "offset", "source")

    def __init__(self, number: int, offset: int, arrival_us: int, source: str = "") -> None:
        self.number = number
        self.offset = offset
        self.arrival_us = arrival_us
        self.source = source


def _ipfix_beyond_hole(stream: _Stream) -> bool:
    """Whether a stream not yet told apart because bytes are missing before its second
    message header is IPFIX all the same: on port 4739 any is; on another, one whose SYN
    fixes where it starts and whose bytes held beyond the hole hold a message header
    another follows (the proof asked of any stream elsewhere). An audit: one segment lost
    early in such a connection lost all of it as other traffic, not a byte counted."""
    if IPFIX_PORT in stream.ports:
        return True
    if stream.isn is None or not stream.held:
        return False
    run = bytearray()
    seq = _nearest_held(stream)
    while (part := stream.held.get(seq)) is not None:  # the held bytes that follow on
        run += part
        seq = (seq + len(part)) % SEQUENCE_SPACE
    start = 0
    while (at := message_boundary(run, start, final=True)[0]) >= 0:
        if message_length(run, at + message_length(run, at)):  # a header, another after it
            return True
        start = at + 1
    return False


def _nearest_held(stream: _Stream) -> int:
    """The sequence number of the held segment nearest after the hole."""
    return min(stream.held, key=lambda s: (s - stream.next_seq) % SEQUENCE_SPACE)


def _inside(span: tuple[int, int], seq: int) -> int | None:
    """How far into the bytes an ended connection read, (first, end) sequence numbers,
    `seq` lies; None outside them."""
    first, end = span
    inside = (seq - first) % SEQUENCE_SPACE
    return inside if inside < (end - first) % SEQUENCE_SPACE else None


class _Stream:
    """One direction of one TCP connection."""

    __slots__ = (
        "buffer",
        "counted",
        "exporter",
        "fin_seq",
        "held",
        "held_bytes",
        "isn",
        "kind",
        "lost",
        "next_seq",
        "place",
        "ports",
        "previous",
        "source",
        "start_seq",
        "synced",
        "undecided",
    )

    def __init__(
        self,
        next_seq: int,
        isn: int | None,
        exporter: str,
        ports: tuple[int, int],
        source: str,
        place: Place,
    ) -> None:
        self.next_seq = next_seq
        self.start_seq = next_seq  # its first byte's sequence number
        self.lost: set[int] | None = None  # sequence numbers counted as before the start
        # (first, end) of what the connection before it on its port pair read, if any
        self.previous: tuple[int, int] | None = None
        self.isn = isn  # the SYN's sequence number, when the capture holds it
        self.synced = isn is not None  # the buffer starts at a message boundary
        self.kind = _UNKNOWN
        self.buffer = bytearray()
        self.held: dict[int, bytes] = {}  # seq -> segment beyond a hole
        self.held_bytes = 0
        self.exporter = exporter
        self.ports = ports
        self.fin_seq: int | None = None  # where the exporter's FIN ends the stream
        # file -> [frames, bytes, repeats, their bytes] of its frames while it may be other
        # traffic (the repeats are retransmissions if it proves IPFIX)
        self.undecided: dict[str, list[int]] = {}
        self.counted = False  # in TcpStreams._ipfix
        # its latest segment that brought bytes, and that segment's file: where what its
        # end cuts is counted when it ends in a later file
        self.source = source
        self.place = place


class TcpStreams:
    """The IPFIX messages of the TCP connections of a capture file, or of a run's capture
    files: a connection goes on from one file into the next (`tcpdump -C/-G` rotates its
    files while an exporter's connection stays up; a stream the next file began inside was
    resynchronised on port 4739 with a message lost, and not recognised on another port,
    where all its records were lost). `source` is the file being read.

    At a file's end what cannot wait is done as at the run's end (holes given up, a last
    whole message taken, named at the file's last frame, so that datagrams keep the order
    and the file of the frames they name); a message the file's end cut waits for the next
    file. A connection's end in a later file that brought none of its bytes counts what it
    cut in the file, and at the frame, of its last bytes."""

    def __init__(
        self, source: str, report: RunReport, address_text: Callable[[bytes], str]
    ) -> None:
        """`address_text`: the capture reader's own (an exporter reads alike over UDP)."""
        self.source = source
        self.report = report
        self._address_text = address_text
        self._streams: OrderedDict[Key, _Stream] = OrderedDict()
        self._ipfix = 0  # streams known to be IPFIX, or opened by a SYN of the IPFIX port
        self._syns: dict[Key, int] = {}  # first sequence numbers of connections not yet fed
        # how ended streams ended: _NOT_IPFIX, or the sequence numbers they read
        self._verdicts: OrderedDict[Key, tuple[int, int]] = OrderedDict()
        self._held_total = 0

    def carries(self, src: bytes, dst: bytes, ports: bytes) -> bool:
        """Whether a segment of these addresses and `ports` (its header's first 4 bytes)
        belongs to an IPFIX stream: the IPFIX port's, or a stream shown to be IPFIX (a
        segment the snap length cut is then lost bytes of it, not other traffic: found by
        fuzzing)."""
        if len(ports) < 4:
            return False
        sport, dport = struct.unpack_from(">HH", ports)
        if IPFIX_PORT in (sport, dport):
            return True
        # (one not yet told apart may be any TCP: a review saw an HTTPS connection cut by a
        # snap length read as IPFIX's lost bytes)
        stream = self._streams.get((src, sport, dst, dport))
        return stream is not None and stream.kind == _IPFIX

    @property
    def open(self) -> bool:
        """Whether a segment without payload or SYN can matter: it may end an IPFIX stream."""
        return self._ipfix > 0

    def segment(
        self,
        number: int,
        offset: int,
        ts_ns: int,
        src: bytes,
        dst: bytes,
        tcp: bytes | memoryview,
        frame_bytes: int,
        exporter_texts: dict[bytes, str],
    ) -> list[Datagram]:
        """One TCP segment (its header and payload); the IPFIX messages it completes.
        Segments of no IPFIX stream are counted as `not_udp` (what they were before)."""
        header = (tcp[12] >> 4) * 4 if len(tcp) >= 20 else 0
        if header < 20 or header > len(tcp):
            self.report.ignore("not_udp", self.source, frame_bytes)
            return []
        sport, dport, seq, _ack, _, flags = _tcp_header.unpack_from(tcp, 0)
        key = (src, sport, dst, dport)
        stream = self._streams.get(key)
        if (
            flags & _SYN
            and stream is None
            and header == len(tcp)
            and IPFIX_PORT not in (sport, dport)
        ):
            # a SYN elsewhere (a scan sends millions): its sequence number, in case data
            # follows, and nothing else; the table is emptied when full, not kept in order
            syns = self._syns
            syns[key] = seq
            if len(syns) > MAX_STREAMS:
                syns.clear()
                syns[key] = seq
            self._verdicts.pop(key, None)
            self.report.ignore("not_udp", self.source, frame_bytes)
            return []
        payload = bytes(tcp[header:])
        place = Place(number, offset, ts_ns // 1_000)
        out: list[Datagram] = []
        # data on a SYN (TCP Fast Open) starts after it, a retransmitted SYN's too
        data_seq = (seq + 1) % SEQUENCE_SPACE if flags & _SYN else seq
        if flags & _SYN:
            if stream is not None and stream.isn == seq:
                flags &= ~_SYN  # a retransmitted SYN: nothing new
            else:
                if stream is not None:  # the port pair reused by a new connection
                    out += self._forget(key, stream, place)
                    stream = None
                # what the connection before it read: its retransmissions are no data
                # before this one's start (the new SYN's number lies above them)
                previous = self._verdicts.pop(key, None)
                if IPFIX_PORT in (sport, dport):
                    stream = self._open(
                        key,
                        (seq + 1) % SEQUENCE_SPACE,
                        seq,
                        src,
                        sport,
                        dport,
                        exporter_texts,
                        place,
                        out,
                    )
                    stream.counted = True
                    self._ipfix += 1
                    if previous is not None and previous != _NOT_IPFIX:
                        stream.previous = previous
                else:
                    self._syns[key] = seq
        verdict = self._verdicts.get(key) if stream is None else None
        if verdict is not None:
            self._verdicts.move_to_end(key)
            if verdict == _NOT_IPFIX or not payload:
                self.report.ignore("not_udp", self.source, frame_bytes)
                return out
            first, end = verdict
            inside = _inside(verdict, seq)
            if inside is not None:
                beyond = inside + len(payload) - (end - first) % SEQUENCE_SPACE
                if beyond <= 0:
                    # bytes the ended stream read: a retransmission, read once and counted
                    # as one before the FIN is (a copy after it was counted nowhere: an
                    # audit)
                    self.report.ignore("tcp_retransmission", self.source, frame_bytes)
                    return out
                payload, seq = payload[len(payload) - beyond :], end
            # bytes the ended stream did not read: a connection on the same port pair
            # whose SYN the run does not hold (an exporter reconnecting from a fixed port,
            # a ring buffer's lost file between, a stream closed for room going on), read
            # as one the capture began inside; all were taken for retransmissions, unread
            # and uncounted
            del self._verdicts[key]
        if stream is None and payload:
            isn = self._syns.pop(key, None)
            stream = self._open(
                key,
                seq if isn is None else (isn + 1) % SEQUENCE_SPACE,
                isn,
                src,
                sport,
                dport,
                exporter_texts,
                place,
                out,
            )
        read = False
        if stream is not None:
            self._streams.move_to_end(key)
            if payload:
                undecided = stream.kind == _UNKNOWN
                if undecided:  # counted when the stream is told apart
                    counts = stream.undecided.setdefault(self.source, [0, 0, 0, 0])
                    counts[0] += 1
                    counts[1] += frame_bytes
                read = True
                before = (stream.next_seq, stream.held_bytes)
                out += self._data(stream, data_seq, payload, place)
                if (stream.next_seq, stream.held_bytes) != before:  # not a repeat
                    stream.source, stream.place = self.source, place
                elif undecided:
                    # a repeat of a stream not yet told apart: a retransmission if it
                    # proves IPFIX (it was counted nowhere then: an audit), other
                    # traffic with the rest of its frames if not
                    counts[2] += 1
                    counts[3] += frame_bytes
                elif stream.kind == _IPFIX:
                    # bytes read already: counted, as SCTP's and IP's repeats are (a
                    # retransmitted frame was counted nowhere, found by fuzzing)
                    self.report.ignore("tcp_retransmission", self.source, frame_bytes)
            if flags & _FIN and stream.fin_seq is None:
                stream.fin_seq = (data_seq + len(payload)) % SEQUENCE_SPACE
            if stream.kind == _OTHER or flags & _RST or stream.next_seq == stream.fin_seq:
                out += self._forget(key, stream, place)
        if not read:  # no IPFIX bytes in it: what it was before, other traffic
            self.report.ignore("not_udp", self.source, frame_bytes)
        return out

    def pause(self, place: Place) -> list[Datagram]:
        """End of a file that another may follow (`place`: its last frame): what cannot
        wait, as at the run's end (holes given up, a last whole message taken), stream by
        stream in the order the run's end closes them, named at the file's last frame; a
        message cut by the file's end, and a stream not yet told apart, wait for the next
        file."""
        out: list[Datagram] = []
        for stream in list(self._streams.values()):
            if stream.kind == _UNKNOWN:
                if _ipfix_beyond_hole(stream):
                    self._decided(stream, _IPFIX)  # its bytes beyond a hole: IPFIX's
                elif not (
                    stream.synced and message_length(stream.buffer, 0) == len(stream.buffer) > 0
                ):
                    continue
            while stream.held and stream.kind != _OTHER:
                out += self._skip_hole(stream, place)
            buffer = stream.buffer
            if (
                buffer
                and stream.kind != _OTHER
                and message_length(buffer, 0) == len(buffer)
                and (stream.synced or stream.kind == _IPFIX)
            ):
                self._decided(stream, _IPFIX)  # one whole message: all a connection sent
                out.append(self._message(stream, len(buffer), place))
        return out

    def finish(self, place: Place) -> list[Datagram]:
        """End of the run (`place`: its last frame): what the held segments still give,
        and the cut tails counted."""
        out: list[Datagram] = []
        for key, stream in list(self._streams.items()):
            out += self._forget(key, stream, place)
        self._syns.clear()
        self._verdicts.clear()
        return out

    # -- internals ---------------------------------------------------------------------

    def _open(
        self,
        key: Key,
        next_seq: int,
        isn: int | None,
        src: bytes,
        sport: int,
        dport: int,
        exporter_texts: dict[bytes, str],
        place: Place,
        out: list[Datagram],
    ) -> _Stream:
        exporter = exporter_texts.get(src)
        if exporter is None:
            exporter = exporter_texts[src] = self._address_text(src)
        stream = self._streams[key] = _Stream(
            next_seq, isn, exporter, (sport, dport), self.source, place
        )
        if len(self._streams) > MAX_STREAMS:
            oldest = next(iter(self._streams))
            out += self._forget(oldest, self._streams[oldest], place)
        return stream

    @staticmethod
    def _remember(
        table: OrderedDict[Key, tuple[int, int]], key: Key, value: tuple[int, int]
    ) -> None:
        table[key] = value
        table.move_to_end(key)
        if len(table) > MAX_STREAMS:
            table.popitem(last=False)

    def _forget(self, key: Key, stream: _Stream, place: Place) -> list[Datagram]:
        """The connection ended (FIN reached, RST, a new SYN), is not IPFIX, the run ended,
        or it is the least recently fed of too many: close it, remember only how it ended.
        One fed last in an earlier file holds only a message that file's end cut (its
        pause() did the rest): that is counted in that file, at its last bytes' frame."""
        if stream.source == self.source:
            out = self._close(stream, place)
        else:
            reading, self.source = self.source, stream.source
            try:
                out = self._close(stream, stream.place)
            finally:
                self.source = reading
            # (none: pause() took every message such a stream could give; named here if so,
            # to keep the order and the file of the frames datagrams name)
            out = [
                datagram._replace(
                    frame=place.number,
                    offset=place.offset,
                    arrival_us=place.arrival_us,
                    source=reading,
                )
                for datagram in out
            ]
        if self._streams.pop(key, None) is not None and stream.counted:
            self._ipfix -= 1
            stream.counted = False
        self._remember(
            self._verdicts,
            key,
            _NOT_IPFIX if stream.kind == _OTHER else (stream.start_seq, stream.next_seq),
        )
        return out

    def _close(self, stream: _Stream, place: Place) -> list[Datagram]:
        """Give up on holes, take a last whole message, count a cut one."""
        if stream.kind == _UNKNOWN:
            if _ipfix_beyond_hole(stream):
                self._decided(stream, _IPFIX)  # its bytes beyond a hole: IPFIX's
            elif not (stream.synced and message_length(stream.buffer, 0) == len(stream.buffer) > 0):
                self._decided(stream, _OTHER)  # never shown to be IPFIX: other traffic
        out: list[Datagram] = []
        while stream.held and stream.kind != _OTHER:
            out += self._skip_hole(stream, place)
        if stream.kind == _IPFIX:
            # with no more bytes to come, a resync waiting at bytes that only look like a
            # header (the python-ipfix fixture's stream has 00 0a 44 00 at byte 2184,
            # "17,408 bytes") passes over them: a capture begun there read none of the 7
            # whole messages after it, counted `truncated`
            out += self._whole_messages(stream, place, final=True)
        buffer = stream.buffer
        if (
            buffer
            and stream.kind != _OTHER
            and message_length(buffer, 0) == len(buffer)
            and (stream.synced or stream.kind == _IPFIX)
        ):
            # one whole message left: after a resync, or all a new connection sent
            self._decided(stream, _IPFIX)
            out.append(self._message(stream, len(buffer), place))
        if stream.kind == _IPFIX:
            self._gap_before_fin(stream, place)
        if stream.buffer and stream.kind == _IPFIX:
            self.report.skip(
                TruncatedInput(
                    f"IPFIX over TCP from {stream.exporter}:{stream.ports[0]}: "
                    f"{len(stream.buffer)} bytes of a message the connection or capture ends in",
                    source=self.source,
                    offset=place.offset,
                    frame=place.number,
                ),
                nbytes=len(stream.buffer),
            )
        stream.buffer.clear()
        self._release_held(stream)
        if stream.kind == _UNKNOWN:
            self._decided(stream, _OTHER)
        return out

    def _gap_before_fin(self, stream: _Stream, place: Place) -> None:
        """Bytes missing between the last one read and where the exporter's FIN says the
        stream ends: a hole like any other (`tcp_gap`, the message it cut lost with it).
        Only a hole before a held segment was counted, so a lost last segment (one whole
        message) passed without a word (found by fuzzing). A FIN behind what was read (data
        past it, a stale number) says nothing is missing."""
        if stream.fin_seq is None:
            return
        if 0 < (stream.fin_seq - stream.next_seq) % SEQUENCE_SPACE < HALF:
            self._count_gap(stream, place, stream.fin_seq, "the FIN at ")

    def _decided(self, stream: _Stream, kind: int) -> None:
        """The stream is IPFIX, or other traffic: its frames so far are counted so."""
        stream.kind = kind
        if kind == _IPFIX and not stream.counted:
            stream.counted = True
            self._ipfix += 1
        if kind == _OTHER:
            for source, (frames, nbytes, _, _) in stream.undecided.items():
                self.report.ignore("not_udp", source, nbytes, count=frames)
            stream.buffer.clear()
            self._release_held(stream)
        elif kind == _IPFIX:
            for source, (_, _, repeats, repeated_bytes) in stream.undecided.items():
                if repeats:
                    self.report.ignore("tcp_retransmission", source, repeated_bytes, count=repeats)
        stream.undecided = {}

    def _release_held(self, stream: _Stream) -> None:
        self._held_total -= stream.held_bytes
        stream.held.clear()
        stream.held_bytes = 0

    def _message(self, stream: _Stream, length: int, place: Place) -> Datagram:
        """The message at the head of the buffer, taken out of it."""
        message = bytes(stream.buffer[:length])
        del stream.buffer[:length]
        return Datagram(
            message,
            stream.exporter,
            stream.ports[0],
            stream.ports[1],
            place.number,
            place.offset,
            place.arrival_us,
            self.source,
            connection=True,
        )

    def _data(self, stream: _Stream, seq: int, payload: bytes, place: Place) -> list[Datagram]:
        relative = (seq - stream.next_seq) % SEQUENCE_SPACE
        if (
            relative >= HALF
            and stream.previous is not None
            and _inside(stream.previous, seq) is not None
        ):
            return []  # the connection before it on the port pair: read by it, once
        if relative >= HALF and stream.next_seq == stream.start_seq:
            # data before the stream's first byte while nothing was read: no retransmission,
            # the SYN's number does not fit it (a damaged SYN, one of another connection):
            # the stream starts at this data instead, its place found again (all of a
            # stream was taken for retransmissions, unread and uncounted)
            self.report.repair(
                MalformedInput(
                    f"IPFIX over TCP from {stream.exporter}:{stream.ports[0]}: data at sequence "
                    f"number {seq}, {SEQUENCE_SPACE - relative} bytes before where the "
                    "connection's SYN says it begins; read from there",
                    source=self.source,
                    offset=place.offset,
                    frame=place.number,
                    reason="tcp_start_moved",
                )
            )
            stream.start_seq = stream.next_seq = seq
            stream.synced = False
            relative = 0
        if relative >= HALF:  # before next_seq: retransmitted, or overlapping
            behind = SEQUENCE_SPACE - relative
            before_start = (stream.start_seq - seq) % SEQUENCE_SPACE
            if 0 < before_start < HALF:
                self._before_start(stream, seq, min(before_start, len(payload)), place)
            if behind >= len(payload):
                return []  # all of it already read
            payload = payload[behind:]
            seq = stream.next_seq
            relative = 0
        out: list[Datagram] = []
        if relative > 0:  # beyond a hole: held until the hole fills or is given up
            kept = stream.held.get(seq)
            if kept is not None and len(kept) >= len(payload):
                return out
            grown = len(payload) - (0 if kept is None else len(kept))
            stream.held[seq] = payload  # a longer copy (coalesced retransmission) wins
            stream.held_bytes += grown
            self._held_total += grown
            while (
                stream.held
                and stream.kind != _OTHER
                and (
                    stream.held_bytes > HELD_BYTES
                    or len(stream.held) > HELD_SEGMENTS
                    or self._held_total > HELD_TOTAL
                )
            ):
                out += self._skip_hole(stream, place)
            return out
        stream.buffer += payload
        stream.next_seq = (stream.next_seq + len(payload)) % SEQUENCE_SPACE
        out += self._messages(stream, place)
        out += self._drain_held(stream, place)
        return out

    def _before_start(self, stream: _Stream, seq: int, nbytes: int, place: Place) -> None:
        """Bytes before the stream's first one, come after it was read from there (a
        capture begun inside the connection, reordered): never read, so counted, once for
        each sequence number (a retransmission of them is not counted again)."""
        if stream.lost is None:
            stream.lost = set()
        if seq in stream.lost:
            return
        if len(stream.lost) >= HELD_SEGMENTS:
            stream.lost.clear()
        stream.lost.add(seq)
        self.report.skip(
            MalformedInput(
                f"IPFIX over TCP from {stream.exporter}:{stream.ports[0]}: {nbytes} bytes at "
                f"sequence number {seq}, before where the stream was read from, came after it",
                source=self.source,
                offset=place.offset,
                frame=place.number,
                reason="tcp_before_start",
            ),
            nbytes=nbytes,
        )

    def _drain_held(self, stream: _Stream, place: Place) -> list[Datagram]:
        """Held segments that now follow on: the one at next_seq, else any that overlaps
        it (a scan only when none starts there)."""
        out: list[Datagram] = []
        held = stream.held
        while held and stream.kind != _OTHER:
            payload = held.pop(stream.next_seq, None)
            behind = 0
            if payload is None:
                for seq in held:
                    relative = (seq - stream.next_seq) % SEQUENCE_SPACE
                    if relative >= HALF:
                        behind = SEQUENCE_SPACE - relative
                        payload = held.pop(seq)
                        break
                else:
                    break
            stream.held_bytes -= len(payload)
            self._held_total -= len(payload)
            if behind < len(payload):
                stream.buffer += payload[behind:]
                stream.next_seq = (stream.next_seq + len(payload) - behind) % SEQUENCE_SPACE
                out += self._messages(stream, place)
        return out

    def _count_gap(self, stream: _Stream, place: Place, seq: int, what: str = "") -> None:
        """Count the bytes missing from the stream's next byte up to `seq` (`tcp_gap`), and
        the message they cut, lost with them."""
        missing = (seq - stream.next_seq) % SEQUENCE_SPACE
        lost = len(stream.buffer)
        self.report.skip(
            MalformedInput(
                f"IPFIX over TCP from {stream.exporter}:{stream.ports[0]}: {missing} bytes "
                f"missing from the capture before {what}sequence number {seq}; the {lost} "
                "bytes of the message they cut are lost with them",
                source=self.source,
                offset=place.offset,
                frame=place.number,
                reason="tcp_gap",
            ),
            nbytes=lost,
        )
        stream.buffer.clear()

    def _skip_hole(self, stream: _Stream, place: Place) -> list[Datagram]:
        """Give up on the bytes missing before the nearest held segment."""
        seq = _nearest_held(stream)
        self._count_gap(stream, place, seq)
        stream.synced = False
        stream.next_seq = seq
        return self._drain_held(stream, place)

    def _messages(self, stream: _Stream, place: Place) -> list[Datagram]:
        out: list[Datagram] = []
        buffer = stream.buffer
        if stream.kind == _UNKNOWN:
            if len(buffer) < 4:
                return out
            length = message_length(buffer, 0)
            if IPFIX_PORT in stream.ports:
                # the IPFIX port: a connection the capture began inside is resynchronised
                self._decided(stream, _IPFIX)
                stream.synced = stream.synced and bool(length)
            elif not length:
                self._decided(stream, _OTHER)
                return out
            elif len(buffer) < length + 4:
                if len(buffer) > 2 * 65_536:
                    self._decided(stream, _OTHER)
                return out  # another port: IPFIX only if a second header follows the first
            elif message_length(buffer, length):
                self._decided(stream, _IPFIX)
                stream.synced = True
            else:
                self._decided(stream, _OTHER)
                return out
        return self._whole_messages(stream, place)

    def _whole_messages(
        self, stream: _Stream, place: Place, *, final: bool = False
    ) -> list[Datagram]:
        """The whole messages at the head of an IPFIX stream's buffer, resynchronising
        where it lost its place (`final`: no more bytes will come, message_boundary)."""
        out: list[Datagram] = []
        buffer = stream.buffer
        while True:
            if not stream.synced and not self._resync(stream, place, final=final):
                break
            if len(buffer) < MESSAGE_HEADER:
                break
            length = message_length(buffer, 0)
            if not length:
                stream.synced = False
                continue
            if length > len(buffer):
                break
            out.append(self._message(stream, length, place))
        return out

    def _resync(self, stream: _Stream, place: Place, *, final: bool = False) -> bool:
        """Find the next message boundary: a header followed by another header (`final`:
        or the buffer's end). Bytes before it are counted; False when more bytes are
        needed to tell, or, `final`, when none is there (the tail is counted as cut)."""
        buffer = stream.buffer
        at, found = message_boundary(buffer, 0, final=final)
        if at < 0:
            if final:
                return False
            at = max(0, len(buffer) - 3)  # a header may begin in the last 3 bytes
        if at:
            self.report.skip(
                MalformedInput(
                    f"IPFIX over TCP from {stream.exporter}:{stream.ports[0]}: {at} bytes before "
                    "the next message header skipped",
                    source=self.source,
                    offset=place.offset,
                    frame=place.number,
                    reason="ipfix_stream_resync",
                ),
                nbytes=at,
            )
            del buffer[:at]
        stream.synced = found
        return found
