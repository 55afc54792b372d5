"""IPFIX over SCTP (RFC 7011 §10.2) in a capture: DATA chunks back into messages.

RFC 7011 makes SCTP the transport every IPFIX exporter and collector must implement
(softflowd `-P sctp`, YAF and libfixbuf offer it), and a collector's capture of it holds
SCTP packets, which the UDP path read as other traffic (`not_udp`): every record lost
without a word. SCTP keeps message boundaries: an IPFIX message is one user message
(§10.2.4), sent in one DATA chunk or, when larger than the path allows, in fragments of
consecutive TSNs (RFC 9260 §6.9: B on the first, E on the last), and a packet may bundle
several chunks. Each user message is handed on as a Datagram of its own, with the
exporter's address and SCTP port, its association (RFC 7011 §8 scopes templates to it) and
its SCTP stream (§3.1 numbers the records of each; libfixbuf those of the session), and
the frame that completed it, so messages keep frame order whatever the batch size.
An association is told by its verification tag, which every packet carries: a new one
(the collector opening associations to the exporter's port 4739, a restart, a start the
capture missed) is read afresh, while a straggler of an old one, or a stray INIT ACK,
ABORT or SHUTDOWN COMPLETE (RFC 9260 §8.5.1: out of the blue, with another's tag), leaves
the live one be. Of the control chunks only an INIT or INIT ACK counts: the tag it gives
the peer to send with begins a new association of the peer's, even if an old one used it.

What is read: DATA chunks (type 0) on the IPFIX ports (4739; 4740, IPFIX over DTLS, whose
bytes then decode as nothing and are counted so), and elsewhere the chunks of payload
protocol identifier 0 (unspecified, as IPFIX exporters send them) of an association whose
first message seen is one whole IPFIX message (version 10, its length the message's).
Other protocols' traffic stays other traffic (`not_udp`): messages of a protocol that
names itself (Diameter 46, S1AP 18, M3UA 3 ...), of one that does not but is no IPFIX
(S1AP's Paging begins 00 0a, IPFIX's version), and control chunks (INIT, SACK, HEARTBEAT
...).

Nothing passes silently: a chunk whose length runs past its packet or a DATA chunk too
short for its header or with no data (`bad_sctp_chunk`, or `truncated` in a frame the
capture cut short), the fragments of a message that never completed
(`incomplete_fragments`, as for IP), an I-DATA chunk (RFC 8260: interleaved messages, which
no IPFIX exporter is known to send) of an IPFIX port or association (`sctp_idata_unread`).
A DATA chunk whose TSN its association already delivered is a retransmission, read once
(`sctp_retransmission`, not a problem).

Not handled: messages are read in the order they complete in the capture, not
re-sequenced by stream sequence number (a message retransmitted after later ones is read
where its copy arrives); a multihomed association (RFC 9260 §6.4) is one association per
address pair, so a fragment sent to the peer's other address does not meet the rest of its
message, and an exporter that moves to its other address is another exporter.

Bounds: at most MAX_ASSOCIATIONS associations (the least recently fed forgotten first, its
unfinished fragments counted), each holding one of SLOTS transport sessions of its exporter
port in the decoder (its state per session stays bounded, as UDP's ports bound it; a slot
taken again starts afresh there);
RECENT_TSNS delivered TSNs remembered per association, as a bitmap below the newest;
unfinished fragments held up to HELD_BYTES and HELD_CHUNKS per association, the oldest
given up first down to half (a message being put together walks a bounded run, and only
once the chunks on both sides of the newest are there), and HELD_TOTAL over all (the least
recently fed association's given up). Associations, and the fragments they hold, go on
across the run's files: a message fragmented across two files completes in the second.
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
HELD_TOTAL = 64 << 20  # unfinished fragments held over all associations
TSN_SPACE = 1 << 32
HALF = TSN_SPACE // 2
_RECENT_MASK = (1 << RECENT_TSNS) - 1

_DATA, _INIT, _INIT_ACK, _IDATA = 0, 1, 2, 64
_BEGIN, _END = 0x02, 0x01
_common = struct.Struct(">HHI")  # source port, destination port, verification tag
_chunk = struct.Struct(">BBH")
_data = struct.Struct(">IHHI")  # TSN, stream, stream sequence number, payload protocol
_DATA_HEADER = 16

Key = tuple[bytes, int, bytes, int, int]  # source, its port, destination, its port, tag
# associations live at once from one exporter port (Datagram.session 1..SLOTS): past it the
# least recently fed gives its slot up (the control chunks that end one are not trusted:
# a stray ABORT ended the live one)
SLOTS = 1024


class _Association:
    """One direction of one SCTP association: what it delivered, what it holds."""

    __slots__ = ("exporter", "fresh", "held", "held_bytes", "ports", "seen", "session", "top")

    def __init__(self, exporter: str, ports: tuple[int, int], slot: int) -> None:
        self.exporter = exporter
        self.ports = ports
        # Datagram.session: a slot no other live association from this exporter port holds
        # (the decoder keeps state per transport session: a bounded number per port, as
        # UDP's ports are), never 0, which UDP and TCP use; `fresh` until its first message
        self.session = slot
        self.fresh = True
        self.top: int | None = None  # the newest TSN delivered
        self.seen = 0  # bit d: TSN top - d was delivered (d < RECENT_TSNS)
        # TSN -> (flags, stream, payload, place) of fragments waiting for the rest, oldest
        # first
        self.held: OrderedDict[int, tuple[int, int, bytes, Place]] = OrderedDict()
        self.held_bytes = 0

    def delivered(self, tsn: int) -> None:
        if self.top is None:
            self.top, self.seen = tsn, 1
            return
        ahead = (tsn - self.top) % TSN_SPACE
        if 0 < ahead < HALF:
            self.seen = ((self.seen << ahead) | 1) & _RECENT_MASK if ahead < RECENT_TSNS else 1
            self.top = tsn
        else:
            back = (self.top - tsn) % TSN_SPACE
            if back < RECENT_TSNS:
                self.seen |= 1 << back

    def was_delivered(self, tsn: int) -> bool:
        if self.top is None:
            return False
        back = (self.top - tsn) % TSN_SPACE
        return back < RECENT_TSNS and bool(self.seen >> back & 1)


class _PortSlots:
    """The transport-session slots of one exporter port: which association holds each
    (least recently fed first), and the free ones (O(1) to take or give back)."""

    __slots__ = ("free", "live", "top")

    def __init__(self) -> None:
        self.live: OrderedDict[Key, int] = OrderedDict()
        self.free: list[int] = []  # given back, taken again first
        self.top = 0  # slots 1..top have been handed out

    def take(self, key: Key) -> int:
        if self.free:
            slot = self.free.pop()
        else:
            self.top += 1
            slot = self.top
        self.live[key] = slot
        return slot

    def give_back(self, key: Key, slot: int) -> None:
        del self.live[key]
        self.free.append(slot)


class SctpAssociations:
    """The IPFIX messages of the SCTP associations of a run's capture files (associations
    and their held fragments go on across files, as a collector's rotated captures cut
    them)."""

    def __init__(
        self, source: str, report: RunReport, address_text: Callable[[bytes], str]
    ) -> None:
        """`address_text`: the capture reader's own (an exporter reads alike over UDP)."""
        self.source = source
        self.report = report
        self._address_text = address_text
        self._associations: OrderedDict[Key, _Association] = OrderedDict()
        # the slots per (exporter address, port)
        self._slots: dict[tuple[bytes, int], _PortSlots] = {}
        self._held_total = 0

    def packet(
        self,
        number: int,
        offset: int,
        ts_ns: int,
        src: bytes,
        dst: bytes,
        packet: bytes | memoryview,
        frame_bytes: int,
        exporter_texts: dict[bytes, str],
        *,
        cut: bool,
    ) -> list[Datagram]:
        """One SCTP packet (common header and chunks); the IPFIX messages it completes.
        `cut`: the capture kept less of the frame than it had."""
        place = Place(number, offset, ts_ns // 1_000, self.source)
        if len(packet) < 12:
            self.report.skip(
                TruncatedInput(
                    "SCTP common header cut off", source=self.source, offset=offset, frame=number
                ),
                nbytes=frame_bytes,
            )
            return []
        sport, dport, tag = _common.unpack_from(packet, 0)
        # the tag in the key: a new association (its start captured or not) is read afresh,
        # and a straggler of the old one, or a stray control chunk, leaves the live one be
        key = (src, sport, dst, dport, tag)
        ipfix_port = sport in IPFIX_PORTS or dport in IPFIX_PORTS
        association = self._associations.get(key)
        out: list[Datagram] = []
        read = False
        # (bytes, cut by the capture, what) of each damaged chunk: a second one took the
        # place of the first, whose bytes went uncounted (found by fuzzing)
        damages: list[tuple[int, bool, str]] = []
        at = 12
        while at + 4 <= len(packet):
            kind, flags, length = _chunk.unpack_from(packet, at)
            if length < 4 or at + length > len(packet):
                damages.append(
                    (
                        len(packet) - at,
                        cut and length >= 4,
                        f"chunk of type {kind} with length {length} at byte {at} of "
                        f"a {len(packet)}-byte packet",
                    )
                )
                break
            if kind in (_INIT, _INIT_ACK) and length >= 8:
                # the tag the peer will send with: an association of the peer's that still
                # holds it is an old one (an exporter that reuses its tags, and restarts)
                (initiate,) = struct.unpack_from(">I", packet, at + 4)
                self._forget((dst, dport, src, sport, initiate))
            elif kind == _DATA:
                known = ipfix_port or association is not None
                if length <= _DATA_HEADER:
                    if known:  # no room for its header, or no data (RFC 9260 §3.3.1)
                        damages.append(
                            (
                                length,
                                False,
                                f"DATA chunk of length {length} at byte {at}: no user data",
                            )
                        )
                else:
                    tsn, stream, _ssn, protocol = _data.unpack_from(packet, at + 4)
                    payload = bytes(packet[at + _DATA_HEADER : at + length])
                    if association is None and (
                        ipfix_port or self._shows_ipfix(protocol, flags, payload)
                    ):
                        association = self._association(key, exporter_texts)
                    elif association is not None:
                        self._associations.move_to_end(key)
                        self._slots[key[:2]].live.move_to_end(key)
                    if association is not None and (ipfix_port or protocol == 0):
                        read = True
                        out += self._chunk_data(association, tsn, flags, stream, payload, place)
            elif kind == _IDATA and (ipfix_port or association is not None):
                # interleaved user messages (RFC 8260): no IPFIX exporter is known to send
                # them, and they are not put together here; counted, never silent
                self.report.skip(
                    MalformedInput(
                        f"an SCTP I-DATA chunk of {length} bytes (RFC 8260): not read",
                        source=self.source,
                        offset=offset,
                        frame=number,
                        reason="sctp_idata_unread",
                    ),
                    nbytes=length,
                )
                read = True
            at += (length + 3) & ~3
        else:
            tail = packet[at:]
            if any(tail):  # at most 3 bytes: no chunk header fits
                damages.append((len(tail), cut, f"{len(tail)} bytes after the last chunk"))
        if damages and (read or ipfix_port or association is not None):
            # an IPFIX association's packet: its bytes could not be read (of another
            # protocol's, the damage is not ours to count)
            for damage in damages:
                self._bad_chunk(place, *damage)
            read = True
        if not read:  # no IPFIX chunk in it: other traffic, as before
            self.report.ignore("not_udp", self.source, frame_bytes)
        return out

    def finish(self) -> None:
        """End of the run: the fragments still held never completed a message (a message
        fragmented across two files of the run completes in the second, as the
        associations go on into it)."""
        for association in self._associations.values():
            self._give_up(association, len(association.held))

    # -- internals ---------------------------------------------------------------------

    def _bad_chunk(self, place: Place, nbytes: int, cut: bool, what: str) -> None:
        if cut:
            self.report.skip(
                TruncatedInput(
                    f"SCTP {what}: the capture cut the frame",
                    source=self.source,
                    offset=place.offset,
                    frame=place.number,
                ),
                nbytes=nbytes,
            )
        else:
            self.report.skip(
                MalformedInput(
                    f"SCTP {what}",
                    source=self.source,
                    offset=place.offset,
                    frame=place.number,
                    reason="bad_sctp_chunk",
                ),
                nbytes=nbytes,
            )

    @staticmethod
    def _shows_ipfix(protocol: int, flags: int, payload: bytes) -> bool:
        """Whether a chunk off the IPFIX ports shows its association carries IPFIX: no
        payload protocol of its own, and the first chunk of a user message that is one
        whole IPFIX message (version 10, its length the message's, or beyond the chunk
        when more fragments follow)."""
        if protocol != 0 or not flags & _BEGIN or len(payload) < 16:
            return False
        if payload[0] != 0 or payload[1] != 10:
            return False
        length = payload[2] << 8 | payload[3]
        return length == len(payload) if flags & _END else length > len(payload)

    def _association(self, key: Key, exporter_texts: dict[bytes, str]) -> _Association:
        src, sport, _, dport, _ = key
        exporter = exporter_texts.get(src)
        if exporter is None:
            exporter = exporter_texts[src] = self._address_text(src)
        if len(self._associations) >= MAX_ASSOCIATIONS:
            self._forget(next(iter(self._associations)))
        slots = self._slots.get((src, sport))
        if slots is None:
            slots = self._slots[src, sport] = _PortSlots()
        if len(slots.live) >= SLOTS:  # the least recently fed of this port's gives its slot up
            self._forget(next(iter(slots.live)))
        slot = slots.take(key)
        association = self._associations[key] = _Association(exporter, (sport, dport), slot)
        return association

    def _forget(self, key: Key) -> None:
        """The association is the least recently fed of too many: what it holds never
        completes."""
        association = self._associations.pop(key, None)
        if association is not None:
            self._give_up(association, len(association.held))
            slots = self._slots[key[:2]]
            slots.give_back(key, association.session)
            if not slots.live:
                del self._slots[key[:2]]

    def _give_up(self, association: _Association, count: int) -> None:
        """Count the `count` oldest held fragments as a message never completed, and drop
        them."""
        if not count:
            return
        dropped = [association.held.popitem(last=False)[1] for _ in range(count)]
        nbytes = sum(len(held[2]) for held in dropped)
        association.held_bytes -= nbytes
        self._held_total -= nbytes
        first = dropped[0][3]
        self.report.skip(
            MalformedInput(
                f"SCTP fragments from {association.exporter}:{association.ports[0]} never "
                f"completed a message ({count} chunk(s))",
                source=first.source or self.source,
                offset=first.offset,
                frame=first.number,
                reason="incomplete_fragments",
            ),
            nbytes=nbytes,
        )

    def _chunk_data(
        self,
        association: _Association,
        tsn: int,
        flags: int,
        stream: int,
        payload: bytes,
        place: Place,
    ) -> list[Datagram]:
        if association.was_delivered(tsn) or tsn in association.held:
            self.report.ignore("sctp_retransmission", self.source, len(payload))
            return []
        if flags & (_BEGIN | _END) == _BEGIN | _END:  # a whole message in one chunk
            association.delivered(tsn)
            return [self._message(association, payload, stream, place)]
        held = association.held
        held[tsn] = (flags, stream, payload, place)
        association.held_bytes += len(payload)
        self._held_total += len(payload)
        # a message can only be whole once the chunks on both sides of this one are here
        # (or it is the first or last): no walk for each fragment that arrives in order
        if (flags & _BEGIN or (tsn - 1) % TSN_SPACE in held) and (
            flags & _END or (tsn + 1) % TSN_SPACE in held
        ):
            message = self._assemble(association, tsn)
            if message is not None:
                return [self._message(association, message, stream, place)]
        self._trim(association)
        return []

    def _trim(self, association: _Association) -> None:
        """Past a bound, the oldest held fragments are given up on down to half of it (the
        message being put together, the newest, last; in one count, not one per chunk)."""
        if association.held_bytes > HELD_BYTES or len(association.held) > HELD_CHUNKS:
            excess = 0
            nbytes = association.held_bytes
            for held in association.held.values():
                if nbytes <= HELD_BYTES // 2 and len(association.held) - excess <= (
                    HELD_CHUNKS // 2
                ):
                    break
                excess += 1
                nbytes -= len(held[2])
            self._give_up(association, excess)
        while self._held_total > HELD_TOTAL:
            oldest = next(key for key, a in self._associations.items() if a.held)
            stale = self._associations[oldest]
            self._give_up(stale, len(stale.held))

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
            self._held_total -= len(part)
            association.delivered(at)
            parts.append(part)
            if at == last:
                return b"".join(parts)
            at = (at + 1) % TSN_SPACE

    def _message(
        self, association: _Association, payload: bytes, stream: int, place: Place
    ) -> Datagram:
        fresh, association.fresh = association.fresh, False
        return Datagram(
            payload,
            association.exporter,
            association.ports[0],
            association.ports[1],
            place.number,
            place.offset,
            place.arrival_us,
            self.source,
            association.session,
            stream,
            fresh,
            connection=True,
        )
