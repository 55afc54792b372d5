"""IPFIX over TCP (RFC 7011 §10.4) in a capture: the byte stream cut back into messages.

YAF, ipfixprobe and nProbe export over TCP by default or on request, and a collector's
capture then holds TCP segments, not datagrams: a message split over segments, several in
one, retransmitted, reordered. The UDP path read none of it (`not_udp`, as if no flow
export were there). Each direction of each connection is reassembled in sequence order
and every complete IPFIX message is handed on as a Datagram of its own, with the frame in
which it completed (as a reassembled IP datagram carries its last fragment's), the
exporter's address and port (its transport session: RFC 7011 §8 scopes templates to it).

What a stream is: on the IPFIX port 4739, any (a connection the capture began inside is
resynchronised at the first header another follows); on another port, one whose first
bytes are a message header that a second follows. Anything else on TCP (BGP, BMP, a web
server) stays `not_udp`, unread, as before, and keeps no state: a SYN opens a stream only
on port 4739, a stream found to be other traffic is dropped, and at most MAX_STREAMS are
kept (the oldest closed first), so a raw capture of a SYN scan costs nothing to hold.
Lost bytes never pass silently: a hole in the sequence (`tcp_gap`), bytes skipped to
find the next message (`ipfix_stream_resync`), a message the capture ends inside
(`truncated`), each with its frame and bytes. Retransmitted or overlapping bytes are
read once: the first copy stands, as for IP fragments.

Memory: out-of-order segments are held up to HELD_BYTES per stream; beyond that the
hole is given up on. Streams do not span files.
"""

from __future__ import annotations

import ipaddress
import struct

from ..errors import MalformedInput, TruncatedInput
from ..report import RunReport
from .datagrams import Datagram

IPFIX_PORT = 4739
HELD_BYTES = 1 << 20  # out-of-order bytes held per stream before a hole is given up
MAX_STREAMS = 1 << 16  # open streams kept; beyond, the oldest is closed
MESSAGE_HEADER = 16
SEQUENCE_SPACE = 1 << 32

_tcp_header = struct.Struct(">HHIIBB")
_PORT_BYTES = IPFIX_PORT.to_bytes(2, "big")
_UNKNOWN, _IPFIX, _OTHER = range(3)
_FIN, _SYN, _RST = 0x01, 0x02, 0x04


def _address_text(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _plausible(buf: bytes | bytearray, at: int) -> int:
    """Length of the IPFIX message header at `at`, or 0: version 10, a length of at least
    a header, and a first set id that can be one (when the set header is there)."""
    if len(buf) - at < 4 or buf[at] != 0 or buf[at + 1] != 10:
        return 0
    length = buf[at + 2] << 8 | buf[at + 3]
    if length < MESSAGE_HEADER:
        return 0
    if len(buf) - at >= MESSAGE_HEADER + 2 and length >= MESSAGE_HEADER + 4:
        set_id = buf[at + 16] << 8 | buf[at + 17]
        if set_id not in (2, 3) and set_id < 256:
            return 0
    return length


class _Place:
    __slots__ = ("arrival_us", "number", "offset")

    def __init__(self, number: int, offset: int, arrival_us: int) -> None:
        self.number = number
        self.offset = offset
        self.arrival_us = arrival_us


class _Stream:
    """One direction of one TCP connection."""

    __slots__ = ("buffer", "counted", "exporter", "held", "held_bytes", "kind", "next_seq",
                 "place", "ports", "synced", "undecided")

    def __init__(self, next_seq: int, synced: bool, exporter: str, ports: tuple[int, int]
                 ) -> None:
        self.next_seq = next_seq
        self.synced = synced  # the buffer starts at a message boundary
        self.kind = _UNKNOWN
        self.buffer = bytearray()
        self.held: dict[int, tuple[bytes, _Place]] = {}  # seq -> segment beyond a hole
        self.held_bytes = 0
        self.exporter = exporter
        self.ports = ports
        self.place = _Place(0, 0, 0)  # the last segment that brought bytes
        self.undecided: list[int] = []  # sizes of its frames while it may be other traffic
        self.counted = False  # in TcpStreams._ipfix


class TcpStreams:
    """The IPFIX messages of the TCP connections of one capture file."""

    def __init__(self, source: str, report: RunReport) -> None:
        self.source = source
        self.report = report
        self._streams: dict[tuple[bytes, int, bytes, int], _Stream] = {}
        self._ipfix = 0  # streams known to be IPFIX, or opened by a SYN of the IPFIX port

    def segment(self, number: int, offset: int, arrival_us: int, src: bytes, dst: bytes,
                tcp: bytes | memoryview, frame_bytes: int, exporter_texts: dict[bytes, str]
                ) -> list[Datagram]:
        """One TCP segment (its header and payload); the IPFIX messages it completes.
        Segments of no IPFIX stream are counted as `not_udp` (what they were before)."""
        header = (tcp[12] >> 4) * 4 if len(tcp) >= 20 else 0
        if header < 20 or header > len(tcp) or (
                header == len(tcp) and not self._ipfix
                and not (tcp[13] & _SYN and _PORT_BYTES in (tcp[0:2], tcp[2:4]))):
            # no stream to feed or open (the common case of other traffic): nothing kept
            self.report.ignore("not_udp", self.source, frame_bytes)
            return []
        sport, dport, seq, _ack, _, flags = _tcp_header.unpack_from(tcp, 0)
        payload = bytes(tcp[header:])
        key = (src, sport, dst, dport)
        stream = self._streams.get(key)
        place = _Place(number, offset, arrival_us)
        out: list[Datagram] = []
        if flags & _SYN and stream is not None:  # the port pair reused by a new connection
            out += self._forget(key, stream, place)
            stream = None
        if stream is None and (payload or (flags & _SYN and IPFIX_PORT in (sport, dport))):
            # a stream begins at the IPFIX port's SYN, or at its first byte: a SYN alone
            # opens none elsewhere (a SYN scan of a million ports keeps no state)
            synced = bool(flags & _SYN)
            exporter = exporter_texts.get(src)
            if exporter is None:
                exporter = exporter_texts[src] = _address_text(src)
            stream = self._streams[key] = _Stream(
                (seq + 1) % SEQUENCE_SPACE if synced else seq, synced, exporter, (sport, dport))
            if synced and IPFIX_PORT in (sport, dport):  # IPFIX until told otherwise
                stream.counted = True
                self._ipfix += 1
            if len(self._streams) > MAX_STREAMS:
                oldest = next(iter(self._streams))
                out += self._forget(oldest, self._streams[oldest], place)
        read = False
        if stream is not None and stream.kind != _OTHER:
            if payload:
                if stream.kind == _UNKNOWN:  # counted when the stream is told apart
                    stream.undecided.append(frame_bytes)
                    read = True
                out += self._data(stream, seq, payload, place)
                read = read or stream.kind == _IPFIX
            if flags & (_FIN | _RST) or stream.kind == _OTHER:
                out += self._forget(key, stream, place)
        if not read:  # no IPFIX bytes in it: what it was before, other traffic
            self.report.ignore("not_udp", self.source, frame_bytes)
        return out

    @property
    def open(self) -> bool:
        """Whether a segment without payload can matter: it may end an IPFIX stream."""
        return self._ipfix > 0

    def flush(self) -> list[Datagram]:
        """End of the file: what the held segments still give, and the cut tails counted."""
        out: list[Datagram] = []
        for stream in self._streams.values():
            if stream.kind != _OTHER:
                out += self._close(stream, None)
        self._streams.clear()
        self._ipfix = 0
        return out

    # -- internals ---------------------------------------------------------------------

    def _forget(self, key: tuple[bytes, int, bytes, int], stream: _Stream, place: _Place
                ) -> list[Datagram]:
        """The connection ended (FIN, RST, a new SYN), is not IPFIX, or is the oldest of
        too many: close it and keep nothing of it."""
        out = self._close(stream, place) if stream.kind != _OTHER else []
        if self._streams.pop(key, None) is not None and stream.counted:
            self._ipfix -= 1
            stream.counted = False
        return out

    def _close(self, stream: _Stream, place: _Place | None) -> list[Datagram]:
        """The connection (or the file) ended: give up on holes, count a cut message."""
        out: list[Datagram] = []
        while stream.held and stream.kind != _OTHER:
            out += self._skip_hole(stream)
        buffer = stream.buffer
        if buffer and stream.kind != _OTHER and _plausible(buffer, 0) == len(buffer) and (
                stream.synced or stream.kind == _IPFIX):
            # one whole message left: after a resync, or all a new connection sent
            self._decided(stream, _IPFIX)
            out.append(self._message(stream, len(buffer), place or stream.place))
        if stream.buffer and stream.kind == _IPFIX:
            last = place or stream.place
            self.report.skip(TruncatedInput(
                f"IPFIX over TCP from {stream.exporter}:{stream.ports[0]}: "
                f"{len(stream.buffer)} bytes of a message the connection or capture ends in",
                source=self.source, offset=last.offset, frame=last.number),
                nbytes=len(stream.buffer))
        stream.buffer.clear()
        if stream.kind == _UNKNOWN:
            self._decided(stream, _OTHER)
        return out

    def _decided(self, stream: _Stream, kind: int) -> None:
        """The stream is IPFIX, or other traffic: its frames so far are counted so."""
        stream.kind = kind
        if kind == _IPFIX and not stream.counted:
            stream.counted = True
            self._ipfix += 1
        if kind == _OTHER:
            for size in stream.undecided:
                self.report.ignore("not_udp", self.source, size)
            stream.buffer.clear()
            stream.held.clear()
            stream.held_bytes = 0
        stream.undecided = []

    def _message(self, stream: _Stream, length: int, place: _Place) -> Datagram:
        """The message at the head of the buffer, taken out of it."""
        message = bytes(stream.buffer[:length])
        del stream.buffer[:length]
        return Datagram(message, stream.exporter, stream.ports[0], stream.ports[1],
                        place.number, place.offset, place.arrival_us, self.source)

    def _data(self, stream: _Stream, seq: int, payload: bytes, place: _Place
              ) -> list[Datagram]:
        relative = (seq - stream.next_seq) % SEQUENCE_SPACE
        if relative >= SEQUENCE_SPACE // 2:  # before next_seq: retransmitted, or overlapping
            behind = SEQUENCE_SPACE - relative
            if behind >= len(payload):
                return []  # all of it already read
            payload = payload[behind:]
            relative = 0
        if relative > 0:  # beyond a hole: held until the hole fills or is given up
            if seq in stream.held:
                return []
            stream.held[seq] = (payload, place)
            stream.held_bytes += len(payload)
            out: list[Datagram] = []
            while stream.held_bytes > HELD_BYTES and stream.kind != _OTHER:
                out += self._skip_hole(stream)
            return out
        stream.buffer += payload
        stream.next_seq = (stream.next_seq + len(payload)) % SEQUENCE_SPACE
        stream.place = place
        out = self._messages(stream, place)
        out += self._drain_held(stream)
        return out

    def _drain_held(self, stream: _Stream) -> list[Datagram]:
        out: list[Datagram] = []
        progress = True
        while progress and stream.held and stream.kind != _OTHER:
            progress = False
            for seq in sorted(stream.held, key=lambda s: (s - stream.next_seq) % SEQUENCE_SPACE):
                relative = (seq - stream.next_seq) % SEQUENCE_SPACE
                if relative == 0 or relative >= SEQUENCE_SPACE // 2:
                    payload, place = stream.held.pop(seq)
                    stream.held_bytes -= len(payload)
                    behind = 0 if relative == 0 else SEQUENCE_SPACE - relative
                    if behind < len(payload):
                        stream.place = place
                        stream.buffer += payload[behind:]
                        stream.next_seq = (stream.next_seq + len(payload) - behind) \
                            % SEQUENCE_SPACE
                        out += self._messages(stream, place)
                    progress = True
                    break
        return out

    def _skip_hole(self, stream: _Stream) -> list[Datagram]:
        """Give up on the bytes missing before the nearest held segment."""
        seq = min(stream.held, key=lambda s: (s - stream.next_seq) % SEQUENCE_SPACE)
        missing = (seq - stream.next_seq) % SEQUENCE_SPACE
        _, place = stream.held[seq]
        lost = len(stream.buffer)
        self.report.skip(MalformedInput(
            f"IPFIX over TCP from {stream.exporter}:{stream.ports[0]}: {missing} bytes "
            f"missing from the capture before this segment; the {lost} bytes of the message "
            "they cut are lost with them", source=self.source, offset=place.offset,
            frame=place.number, reason="tcp_gap"), nbytes=lost)
        stream.buffer.clear()
        stream.synced = False
        stream.next_seq = seq
        return self._drain_held(stream)

    def _messages(self, stream: _Stream, place: _Place) -> list[Datagram]:
        out: list[Datagram] = []
        buffer = stream.buffer
        if stream.kind == _UNKNOWN:
            if len(buffer) < 4:
                return out
            length = _plausible(buffer, 0)
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
            elif _plausible(buffer, length):
                self._decided(stream, _IPFIX)
                stream.synced = True
            else:
                self._decided(stream, _OTHER)
                return out
        while True:
            if not stream.synced and not self._resync(stream, place):
                break
            if len(buffer) < MESSAGE_HEADER:
                break
            length = _plausible(buffer, 0)
            if not length:
                stream.synced = False
                continue
            if length > len(buffer):
                break
            out.append(self._message(stream, length, place))
        return out

    def _resync(self, stream: _Stream, place: _Place) -> bool:
        """Find the next message boundary: a header followed by another header. Bytes
        before it are counted; False when more bytes are needed to tell."""
        buffer = stream.buffer
        at = 0
        found = False
        while at + 4 <= len(buffer):
            length = _plausible(buffer, at)
            if length:
                if at + length + 4 > len(buffer):
                    break  # a candidate whose follower has not arrived: wait here
                if _plausible(buffer, at + length):
                    found = True
                    break
            at += 1
        else:
            at = max(0, len(buffer) - 3)  # a header may begin in the last 3 bytes
        if at:
            self.report.skip(MalformedInput(
                f"IPFIX over TCP from {stream.exporter}:{stream.ports[0]}: {at} bytes before "
                "the next message header skipped", source=self.source, offset=place.offset,
                frame=place.number, reason="ipfix_stream_resync"), nbytes=at)
            del buffer[:at]
        stream.synced = found
        return found
