"""Which template a v9/IPFIX message reads, and which messages are copies: one stream's rules.

A stream is an exporter's (address, observation domain, version). RFC 7011 §8 scopes
templates to the transport session, so two exporting processes behind one address (probes
on one host, routers behind one NAT) with one domain and template id keep their own
layouts: a data set reads the template its own port defined. A port that never defined
the id reads the one the exporter defined last from another port: a capture holding the
same export sent to two collectors from two ports, of which only the first copy of each
message is decoded. So does a port that *took over* from that one: a port that began when
every other port of the stream had been silent for TAKEOVER_GAP_US is the same exporting
process with a new socket (a restart), decided at its first datagram.

The surprising thing: two readers keep these rules. The decoder (exports.ExportDecoder)
keeps them to read the records; `recombine --export-pcap` (recombine/context.py) keeps them
to find, in a run's captures, the datagrams a conversation's datagrams were read with. Both
hold a TemplateScope per stream, the decoder with the Template as the value kept per
definition, the export's search with the datagram that brought it: a rule changed here
changes for both, and an export never takes a definition the decoder did not use.
"""

from __future__ import annotations

from typing import Generic, TypeVar, cast
from zlib import adler32, crc32

from .templates import Template

# sequence numbers remembered per stream for duplicates, each with its messages' sums: a
# copy of a capture read after it (a file beside its copy, two sensors' captures of one
# export) repeats the whole of it, and with 1,024 numbers (the messages themselves) every
# datagram past the first ~2,000 was decoded twice (found by an audit)
DUPLICATE_WINDOW = 1 << 20
SAME_NUMBER = 4  # payloads remembered per sequence number
# a port that begins when every other port of its stream has been silent this long
# (capture time) is the same exporter with a new socket: it keeps their templates
TAKEOVER_GAP_US = 2_000_000

Value = TypeVar("Value")


class TemplateScope(Generic[Value]):
    """The template definitions of one stream by (transport, template id), each with a
    `Value` (what its keeper needs of it), and the stream's recent messages and ports."""

    __slots__ = (
        "last_arrival",
        "last_port",
        "latest",
        "latest_port",
        "layouts",
        "lineage",
        "ports",
        "recent",
        "seen_ports",
        "values",
    )

    def __init__(self) -> None:
        # the definition in force per (transport, id) and its value; a refresh (the same
        # layout again) leaves both as they were
        self.layouts: dict[tuple[int, int], Template] = {}
        self.values: dict[tuple[int, int], Value] = {}
        # by id, from any transport: the last definition that was not a refresh
        self.latest: dict[int, Value] = {}
        self.latest_port: dict[int, int] = {}
        self.ports: set[int] = set()  # transports that defined templates: they use theirs
        self.seen_ports: set[int] = set()
        self.lineage: dict[int, int] = {}  # a port that took over -> its process's first
        self.last_arrival: int | None = None  # the stream's latest datagram, and its port
        self.last_port = 0
        self.recent: dict[int, int | tuple[int, ...]] = {}

    def duplicate(self, sequence: int | None, message: bytes) -> bool:
        """Whether `message` is a copy of one of the last SAME_NUMBER messages of its
        sequence number among the stream's recent ones (then not remembered again; None, a
        format that numbers nothing: of any recent message, known by its sums alone). They
        are remembered by their length and two checksums (CRC-32 and Adler-32, ~80 bytes a
        number): a copy has the same number, length and both sums, and two messages of one
        number that differ (an IPFIX message of templates and the next, a reboot's) have
        the same three by chance once in ~2**64. BLAKE2b took twice the time, a sixth of the
        decoders'."""
        recent = self.recent
        mark = len(message) << 64 | crc32(message) << 32 | adler32(message)
        if sequence is None:
            sequence = mark
        previous = recent.get(sequence)
        if previous is not None:
            # IPFIX messages of templates only share their number with the next message:
            # each payload of a number is remembered (a copy of the pair came in twice)
            if previous == mark or (type(previous) is tuple and mark in previous):
                return True
            recent[sequence] = (
                (*previous, mark)[-SAME_NUMBER:]
                if type(previous) is tuple
                else (cast(int, previous), mark)
            )
        else:
            recent[sequence] = mark
        if len(recent) > 2 * DUPLICATE_WINDOW:
            # keep the newest DUPLICATE_WINDOW entries; pruning in bulk keeps this O(1) a call
            self.recent = dict(list(recent.items())[-DUPLICATE_WINDOW:])
        return False

    def arrive(self, port: int, arrival_us: int) -> bool:
        """A datagram from transport `port` at capture time `arrival_us`; whether the port
        is new to the stream (a port that came after a silence of TAKEOVER_GAP_US took
        over from the port heard last)."""
        new = port not in self.seen_ports
        if new:
            if self.last_arrival is not None and arrival_us - self.last_arrival >= TAKEOVER_GAP_US:
                self.lineage[port] = self.lineage.get(self.last_port, self.last_port)
            self.seen_ports.add(port)
        if self.last_arrival is None or arrival_us >= self.last_arrival:
            self.last_arrival, self.last_port = arrival_us, port
        return new

    def forget_port(self, port: int) -> None:
        """A new transport session in a slot an earlier one held (an SCTP association):
        its first datagram decides again whether it took over. Its templates stay."""
        self.seen_ports.discard(port)
        self.lineage.pop(port, None)

    def took_over(self, new: int, old: int) -> bool:
        """Whether port `new` took over from port `old`, itself or through the ports
        between them (an exporter restarted twice): the same process's lineage."""
        root = self.lineage.get(new)
        return root is not None and root == self.lineage.get(old, old)

    def define(self, port: int, template: Template, value: Value) -> str:
        """A definition from `port`: 'new', 'changed', or 'refresh' (the same layout as the
        port's, which stays in force with its value)."""
        self.ports.add(port)
        key = (port, template.template_id)
        old = self.layouts.get(key)
        if old is not None and old.same_layout(template):
            return "refresh"
        self.layouts[key] = template
        self.values[key] = value
        self.latest[template.template_id] = value
        self.latest_port[template.template_id] = port
        return "new" if old is None else "changed"

    def port_of(self, port: int, template_id: int) -> int | None:
        """The transport whose definition of `template_id` a data set from `port` reads:
        its own, else the latest from another for a port that defines none or took over
        from that one; None when there is none."""
        if (port, template_id) in self.values:
            return port
        other = self.latest_port.get(template_id)
        if other is not None and (port not in self.ports or self.took_over(port, other)):
            return other
        return None

    def releases(self, held_port: int, port: int) -> bool:
        """Whether a definition from `port` is what data held by `held_port` waited for:
        its own, or any for a port that defines none."""
        return held_port == port or held_port not in self.ports
