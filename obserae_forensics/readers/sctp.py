"""IPFIX over SCTP (RFC 7011 §10.2) in a capture: DATA chunks back into messages.

RFC 7011 makes SCTP the transport every IPFIX exporter and collector must implement
(softflowd `-P sctp`, YAF and libfixbuf offer it), and a collector's capture of it holds
SCTP packets, which the UDP path read as other traffic (`not_udp`): every record lost
without a word. SCTP keeps message boundaries: an IPFIX message is one user message
(§10.2.4), sent in one DATA chunk or, when larger than the path allows, in fragments of
consecutive TSNs (RFC 9260 §6.9: B on the first, E on the last), and a packet may bundle
several chunks. Each user message is handed on as a Datagram of its own, with the
exporter's address and SCTP port (its association: RFC 7011 §8 scopes templates to it) and
the frame that completed it, so messages keep frame order whatever the batch size.

What is read: DATA chunks (type 0) on the IPFIX ports (4739; 4740, IPFIX over DTLS, whose
bytes then decode as nothing and are counted so), or elsewhere with payload protocol
identifier 0, unspecified, as IPFIX exporters send them. A user message with another
identifier belongs to a protocol that names itself (Diameter 46, S1AP 18, M3UA 3 ...) and
stays other traffic, as do control chunks (INIT, SACK, HEARTBEAT ...). The decoders judge
what is read by its content, as they do a UDP payload (`not_flow_export` otherwise).

Nothing passes silently: a chunk whose length runs past its packet (`bad_sctp_chunk`, or
`truncated` in a frame the capture cut short), the fragments of a message that never
completed (`incomplete_fragments`, as for IP), an I-DATA chunk (RFC 8260: interleaved
messages, which no IPFIX exporter is known to send) of an IPFIX port or association
(`sctp_idata_unread`). A DATA chunk seen again with a TSN its
association already delivered is a retransmission, read once (`sctp_retransmission`, not a
problem). An INIT starts the association afresh (a new TSN space).

Bounds: at most MAX_ASSOCIATIONS associations (the least recently fed forgotten first,
its unfinished fragments counted), RECENT_TSNS delivered TSNs remembered per association,
HELD_BYTES and HELD_CHUNKS of unfinished fragments per association (then they are given
up on, counted), so that putting a message together walks a bounded run of fragments.
Associations do not span files.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable

from ..errors import MalformedInput, TruncatedInput
from ..report import RunReport
from .datagrams import Datagram
from .tcp_streams import Place

IPFIX_PORTS = (4739, 4740)
MAX_ASSOCIATIONS = 1 << 16
RECENT_TSNS = 4096  # delivered TSNs remembered per association, to read a retransmission once
HELD_BYTES = 1 << 20  # unfinished fragments held per association
HELD_CHUNKS = 256  # and as many chunks (a 64 KiB message is ~45 fragments at 1500 bytes)
TSN_SPACE = 1 << 32

_DATA, _INIT, _IDATA = 0, 1, 64
_BEGIN, _END = 0x02, 0x01
_common = struct.Struct(">HH")
_chunk = struct.Struct(">BBH")
_data = struct.Struct(">IHHI")  # TSN, stream, stream sequence number, payload protocol

Key = tuple[bytes, int, bytes, int]


class _Association:
    """One direction of one SCTP association: what it delivered, what it holds."""

    __slots__ = ("exporter", "held", "held_bytes", "ports", "recent")

    def __init__(self, exporter: str, ports: tuple[int, int]) -> None:
        self.exporter = exporter
        self.ports = ports
        self.recent: OrderedDict[int, None] = OrderedDict()  # delivered TSNs, oldest first
        # TSN -> (flags, stream, payload, place) of fragments waiting for the rest
        self.held: dict[int, tuple[int, int, bytes, Place]] = {}
        self.held_bytes = 0


class SctpAssociations:
    """The IPFIX messages of the SCTP associations of one capture file."""

    def __init__(self, source: str, report: RunReport,
                 address_text: Callable[[bytes], str]) -> None:
        """`address_text`: the capture reader's own (an exporter reads alike over UDP)."""
        self.source = source
        self.report = report
        self._address_text = address_text
        self._associations: OrderedDict[Key, _Association] = OrderedDict()

    def packet(self, number: int, offset: int, ts_ns: int, src: bytes, dst: bytes,
               packet: bytes | memoryview, frame_bytes: int, exporter_texts: dict[bytes, str],
               *, cut: bool) -> list[Datagram]:
        """One SCTP packet (common header and chunks); the IPFIX messages it completes.
        `cut`: the capture kept less of the frame than it had."""
        place = Place(number, offset, ts_ns // 1_000)
        if len(packet) < 12:
            self.report.skip(TruncatedInput("SCTP common header cut off", source=self.source,
                                            offset=offset, frame=number), nbytes=frame_bytes)
            return []
        sport, dport = _common.unpack_from(packet, 0)
        key = (src, sport, dst, dport)
        ipfix_port = sport in IPFIX_PORTS or dport in IPFIX_PORTS
        out: list[Datagram] = []
        read = False
        damage: tuple[int, bool, str] | None = None  # (bytes, cut by the capture, what)
        at = 12
        while at + 4 <= len(packet):
            kind, flags, length = _chunk.unpack_from(packet, at)
            if length < 4 or at + length > len(packet):
                damage = (len(packet) - at, cut and length >= 4,
                          f"chunk of type {kind} with length {length} at byte {at} of a "
                          f"{len(packet)}-byte packet")
                break
            if kind == _INIT:
                self._forget(key, place)
            elif kind == _IDATA and (ipfix_port or key in self._associations):
                # interleaved user messages (RFC 8260): no IPFIX exporter is known to send
                # them, and they are not put together here; counted, never silent
                self.report.skip(MalformedInput(
                    f"an SCTP I-DATA chunk of {length} bytes (RFC 8260): not read",
                    source=self.source, offset=offset, frame=number,
                    reason="sctp_idata_unread"), nbytes=length)
                read = True
            elif kind == _DATA and length >= 16:
                tsn, stream, _ssn, protocol = _data.unpack_from(packet, at + 4)
                if ipfix_port or protocol == 0:
                    read = True
                    association = self._association(key, src, sport, dport, exporter_texts,
                                                    place)
                    out += self._chunk_data(association, tsn, flags, stream,
                                            bytes(packet[at + 16:at + length]), place)
            at += (length + 3) & ~3
        else:
            tail = packet[at:]
            if any(tail):  # at most 3 bytes: no chunk header fits
                damage = (len(tail), cut, f"{len(tail)} bytes after the last chunk")
        if damage is not None and (read or ipfix_port or key in self._associations):
            # an IPFIX association's packet: its bytes could not be read (of another
            # protocol's, the damage is not ours to count)
            self._bad_chunk(place, *damage)
            read = True
        if not read:  # no IPFIX chunk in it: other traffic, as before
            self.report.ignore("not_udp", self.source, frame_bytes)
        return out

    def flush(self, place: Place) -> None:
        """End of the file: the fragments still held never completed a message."""
        for association in self._associations.values():
            self._give_up(association, place)
        self._associations.clear()

    # -- internals ---------------------------------------------------------------------

    def _bad_chunk(self, place: Place, nbytes: int, cut: bool, what: str) -> None:
        if cut:
            self.report.skip(TruncatedInput(f"SCTP {what}: the capture cut the frame",
                                            source=self.source, offset=place.offset,
                                            frame=place.number), nbytes=nbytes)
        else:
            self.report.skip(MalformedInput(f"SCTP {what}", source=self.source,
                                            offset=place.offset, frame=place.number,
                                            reason="bad_sctp_chunk"), nbytes=nbytes)

    def _association(self, key: Key, src: bytes, sport: int, dport: int,
                     exporter_texts: dict[bytes, str], place: Place) -> _Association:
        association = self._associations.get(key)
        if association is not None:
            self._associations.move_to_end(key)
            return association
        exporter = exporter_texts.get(src)
        if exporter is None:
            exporter = exporter_texts[src] = self._address_text(src)
        association = self._associations[key] = _Association(exporter, (sport, dport))
        if len(self._associations) > MAX_ASSOCIATIONS:
            self._forget(next(iter(self._associations)), place)
        return association

    def _forget(self, key: Key, place: Place) -> None:
        """An INIT begins the association again, or it is the least recently fed of too
        many: what it holds never completes."""
        association = self._associations.pop(key, None)
        if association is not None:
            self._give_up(association, place)

    def _give_up(self, association: _Association, place: Place) -> None:
        if not association.held:
            return
        first = min(association.held.values(), key=lambda held: (held[3].number,
                                                                  held[3].offset))[3]
        self.report.skip(MalformedInput(
            f"SCTP fragments from {association.exporter}:{association.ports[0]} never "
            f"completed a message ({len(association.held)} chunk(s))", source=self.source,
            offset=first.offset, frame=first.number, reason="incomplete_fragments"),
            nbytes=association.held_bytes)
        association.held.clear()
        association.held_bytes = 0

    def _delivered(self, association: _Association, tsn: int) -> None:
        recent = association.recent
        recent[tsn] = None
        if len(recent) > RECENT_TSNS:
            recent.popitem(last=False)

    def _chunk_data(self, association: _Association, tsn: int, flags: int, stream: int,
                    payload: bytes, place: Place) -> list[Datagram]:
        if tsn in association.recent or tsn in association.held:
            self.report.ignore("sctp_retransmission", self.source, len(payload))
            return []
        if flags & (_BEGIN | _END) == _BEGIN | _END:  # a whole message in one chunk
            self._delivered(association, tsn)
            return [self._message(association, payload, place)]
        association.held[tsn] = (flags, stream, payload, place)
        association.held_bytes += len(payload)
        message = self._assemble(association, tsn)
        if message is not None:
            return [self._message(association, message, place)]
        if association.held_bytes > HELD_BYTES or len(association.held) > HELD_CHUNKS:
            self._give_up(association, place)
        return []

    def _assemble(self, association: _Association, tsn: int) -> bytes | None:
        """The message `tsn` completes, taken out of the held fragments, or None: the
        fragments from a B to an E over consecutive TSNs, all of one stream."""
        held = association.held
        stream = held[tsn][1]
        first = tsn
        while not held[first][0] & _BEGIN:
            first = (first - 1) % TSN_SPACE
            if first not in held or held[first][1] != stream or held[first][0] & _END:
                return None
        last = tsn
        while not held[last][0] & _END:
            last = (last + 1) % TSN_SPACE
            if last not in held or held[last][1] != stream or held[last][0] & _BEGIN:
                return None
        parts: list[bytes] = []
        at = first
        while True:
            part = held.pop(at)[2]
            association.held_bytes -= len(part)
            self._delivered(association, at)
            parts.append(part)
            if at == last:
                return b"".join(parts)
            at = (at + 1) % TSN_SPACE

    def _message(self, association: _Association, payload: bytes, place: Place) -> Datagram:
        return Datagram(payload, association.exporter, association.ports[0],
                        association.ports[1], place.number, place.offset, place.arrival_us,
                        self.source)
