"""The unit a capture container hands to the payload decoders: one UDP datagram.

The container (pcap.py) knows link layers, IP and UDP, nothing of NetFlow; the decoders
(netflow_v5.py, netflow_v9.py, ipfix.py) know NetFlow, nothing of captures. This is all
they share.
"""

from __future__ import annotations

from typing import NamedTuple


class Datagram(NamedTuple):
    """One complete (reassembled) UDP payload, or a message of IPFIX over TCP or SCTP, with
    where and when it was captured."""

    payload: bytes
    exporter: str  # IP source address as text (the exporter's identity)
    exporter_port: int  # UDP source port
    collector_port: int  # UDP destination port (a hint only: content decides the format)
    frame: int  # 1-based frame number in the capture (of the last fragment if reassembled)
    offset: int  # byte offset of that frame's record header in the file
    arrival_us: int  # capture time, UTC microseconds
    source: str  # file path as given
    # SCTP only (sctp.py): the association's slot among those live from its exporter port
    # (1..sctp.SLOTS; 0: UDP and TCP, whose port says it), the SCTP stream (§3.1 numbers
    # each stream's records), and whether this is the association's first message (a slot
    # used before is numbered afresh: the old association's count is not its own)
    session: int = 0
    lane: int = 0
    fresh: bool = False
    # a message of a TCP connection or SCTP association: its frame holds pieces of others,
    # and no datagram of its own exists (recombine --export-pcap writes its flows instead)
    connection: bool = False

    @property
    def transport(self) -> int:
        """The transport session within the exporter (RFC 7011 §8 scopes templates to
        it): its port, and for SCTP its association."""
        return self.exporter_port | self.session << 16
