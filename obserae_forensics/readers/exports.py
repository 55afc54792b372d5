"""Dispatch UDP payloads to the NetFlow v5 / v9 / IPFIX decoders and decode their records
many datagrams at a time.

Content, not port, decides: `export_version` looks at the version field *and* a sane
header; anything else is counted as `not_flow_export`. The version modules walk each
datagram's header and sets in plain Python (a few `struct` calls per datagram) and queue
the data sets here, grouped by template; at the end of a `feed` call each group is read
with one numpy gather over the joined payloads and turned into FLOW_SCHEMA columns by the
template's compiled plan (templates.RecordPlan). So per-record work is numpy only.

Accounting per exporter stream (exporter address, domain, version), with each version's
sequence semantics: v5 counts flows, v9 export packets, IPFIX data records (options data
records included, RFC 7011 §3.1). softflowd's IPFIX sequence number already includes the
records of the current message; a message whose number fits that convention is accepted
too, so such streams show no false gaps. A datagram repeating a recent (stream, sequence)
with identical bytes is a duplicate: counted, never decoded twice. A sequence number a
little behind the expected one is a reorder; far behind, an exporter restart (resync).

record_index numbers the data records (flow and options) of a datagram in wire order. The
surprising case: a set whose template is not known yet cannot be counted, so later sets of
that datagram are numbered as if it were empty, and its records, once its template arrives,
are numbered after all of the datagram's other records (its k-th such set, counting every
message of the datagram from 1, from records + k * 65536), keeping (source_offset,
record_index) unique (review: with k counted per message from 0, two messages of one
datagram numbered their held sets and their first records alike).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from ..counters import exact_sum
from ..errors import InputError, MalformedInput, UnknownTemplate
from ..report import ExporterStats, RunReport
from ..schema import FLOW_ADDRESS_COLUMNS, FLOW_NUMERIC_DTYPES
from ..times import TIME_LIMIT_MS
from . import ipfix, netflow_v5, netflow_v9
from ._batch import flow_batch
from .datagrams import Datagram
from .information_elements import (
    SAMPLING_INTERVAL_ELEMENTS,
    SAMPLING_PACKET_INTERVAL,
    SAMPLING_PACKET_SPACE,
    SAMPLING_POPULATION,
    SAMPLING_PROBABILITY,
    SAMPLING_SIZE,
    SELECTOR_ALGORITHM,
    SELECTOR_COUNT_BASED,
    SELECTOR_N_OUT_OF_N,
    SELECTOR_PROBABILISTIC,
    SYSTEM_INIT_MILLISECONDS,
    Element,
)
from .nsel import NselLedger, nsel_repair
from .scope import TemplateScope
from .templates import (
    Leftover,
    PendingData,
    PendingSet,
    RecordMeta,
    SamplerKey,
    SamplerTable,
    SessionTemplateKey,
    Template,
    fixed_set_records,
    misfit,
    padding_problem,
    variable_records,
)

SEQUENCE_MASK = 0xFFFF_FFFF
REORDER_WINDOW = 1 << 16  # units behind the expected sequence still taken as a reorder
MAX_NUMBERINGS = 256  # transport sessions followed per stream, the oldest go first
MAX_MISSING = 64  # gaps remembered per transport session for messages that come late
# sysUptime (ms) going back by more than this is a reboot, unless it wrapped at 2**32 ms
UPTIME_JITTER_MS = 1_000
UPTIME_WRAP_MS = 1 << 32
# back by more than this is a reboot even when the number could be a reorder's
REBOOT_UPTIME_MS = 300_000
# boot times (export time - sysUptime) this close are one boot: v9's export time is whole
# seconds, and two of them may round apart
BOOT_CLOCK_MS = 2_000
# a boot time moved on by 2**32 ms give or take this is sysUptime's wrap: the drift of the
# two clocks between two messages (a reboot within it of the wrap would read as one)
WRAP_CLOCK_MS = 60_000
# what a message's header clocks say (_Numbering.clocks)
RESTART, LATE = "restart", "late"
PENDING_INDEX_STRIDE = 1 << 16  # record_index spacing of late-decoded sets in one datagram
CLAIMED_VERSIONS = frozenset((1, 5, 7, 9, 10))
# what a proven exporter's socket may send beside what is read, and is no damage: NetFlow
# v6 and v8 (aggregation caches), and sFlow's 32-bit version (its first two bytes 0)
OTHER_VERSIONS = frozenset((0, 6, 8))
SUSPECTS_PER_PATH = 4  # datagrams of a path remembered before its first good export
SUSPECT_PATHS = 4096
# where a problem lies: source file, datagram offset, frame
_Place = tuple[str, int, int | None]

# Columns of a queued set's metadata row (one int64 row per data set).
_FRAME, _OFFSET, _ARRIVAL, _EXPORT, _UPTIME, _EXPORTER, _DOMAIN, _STREAM = range(8)
_POS, _COUNT, _FIRST, _SYSINIT, _RATE, _SAMPLERS = range(8, 14)


def export_version(payload: bytes, *, first_set: bool = True) -> int:
    """1, 5, 7, 9 or 10 when `payload` looks like a flow export (version field and a sane
    header). `first_set` False: a v9/IPFIX message whose first set id is reserved counts,
    as the decoder reads one from a proven exporter (for what walks the sets of datagrams
    already known to be exports)."""
    if len(payload) < 4:
        return 0
    version = payload[0] << 8 | payload[1]
    if version in netflow_v5.FORMATS and netflow_v5.sane_header(payload, version):
        return version
    if version == 9 and netflow_v9.sane_header(payload, first_set=first_set):
        return 9
    if version == 10 and ipfix.sane_header(payload, first_set=first_set):
        return 10
    return 0


# messages in a row that only softflowd's numbering explains (a first one numbered as its
# own records counts as one) before a stream is measured by it: one could be a standard
# exporter's loss as large as the difference of two messages' records (a review)
INCLUSIVE_EVIDENCE = 2


def _inclusive_first(
    sequence: int, last: int, units: int, flow_units: int | None
) -> tuple[int, int]:
    """(first unit's number, how far ahead of `last` it is) of an inclusively numbered
    message, whose number counts its own units, with or without its options records: the
    nearer of the two ahead of `last`, else the first (behind it: a late message)."""
    firsts = [
        (sequence - count) & SEQUENCE_MASK for count in (units, flow_units) if count is not None
    ]
    aheads = [(first - last) & SEQUENCE_MASK for first in firsts]
    best = min(range(len(firsts)), key=lambda i: (aheads[i] >= 1 << 31, aheads[i]))
    return firsts[best], aheads[best]


def _renumbered_on_tcp(datagram: Datagram, numbering: _Numbering, sequence: int) -> bool:
    """A number behind the last message's on one TCP connection: TCP delivers a
    connection's messages in the order they were sent, so it is the exporter numbering
    afresh, no late message (python-ipfix went 150, 19, 39, 59 on one connection: 3
    "reorders", an audit). A number between the last one and the one expected is no
    restart there either: no convention numbers below the message before (_went_back)."""
    return (
        datagram.connection
        and not datagram.session
        and 0 < (numbering.last_sequence - sequence) & SEQUENCE_MASK < 1 << 31
    )


def _set_records(template: Template, body: bytes) -> int:
    """The records of a data set held for its template, as `data_set` counts them for an
    IPFIX message's sequence number (what `_late_records` reads of them comes later, at
    the batch's end: the count is wanted where the template came, whatever the batch)."""
    if template.fixed_length is None:
        return variable_records(template, body, 0, len(body))[1]
    if template.plan.carries_flows:
        return misfit(template, body, 0, len(body))[0]
    return fixed_set_records(template, body, 0, len(body))[0]


class HeldMessage:
    """An IPFIX message some of whose data sets wait for their template: what its sequence
    number counts, its data records, is known only once the last of them is read, and the
    check of the message numbered after it waits till then. The check was skipped: a loss
    right after a message whose data came before its template (a capture starting between
    two template refreshes, or a template first sent mid-stream) was never counted, 1,000
    records lost read as none (an audit). A set that will never be read (its template never
    comes, or it overflowed the data held) leaves the message unknown, and the check after
    it undone (the check of it after the one before is made at the end: never_read)."""

    __slots__ = (
        "after",
        "before",
        "flow_units",
        "numbering",
        "own",
        "sequence",
        "stats",
        "units",
        "waiting",
    )

    def __init__(
        self, numbering: _Numbering, stats: ExporterStats, sequence: int, units: int, flows: int
    ) -> None:
        self.numbering = numbering
        self.stats = stats
        self.sequence = sequence
        self.units = units  # its records read so far (options records among them)
        self.flow_units = flows
        self.waiting = 0  # its data sets still waiting for their template
        # the message numbered next: its number, its units and flow units (so far), and
        # itself when it is held too (an inclusive number counts that one's units)
        self.after: tuple[int, int, int, HeldMessage | None] | None = None
        self.before: HeldMessage | None = None  # held, its check waiting for this one
        # its own check, when its number may count its own records too (an inclusive
        # numbering): the number before it and what the RFC's numbering expected
        self.own: tuple[int, int, int | None] | None = None

    def read(self, units: int, flows: int) -> None:
        """One of its waiting sets was read: `units` records, `flows` of them data."""
        self.units += units
        self.flow_units += flows
        self.waiting -= 1
        if not self.waiting:
            self._known()

    def _known(self) -> None:
        numbering = self.numbering
        first = numbering.first
        if first is not None and first[0] == self.sequence and first[1] is None:
            numbering.first = (self.sequence, self.units, self.flow_units)
        if numbering.unknown is self:  # still the last numbered: the next is checked as any
            numbering.unknown = None
            # (an exporter that numbers messages expects one on, as end_datagram has it)
            units, flows = (1, 1) if numbering.counts_messages else (self.units, self.flow_units)
            numbering.expected = (self.sequence + units) & SEQUENCE_MASK
            numbering.expected_flows = (self.sequence + flows) & SEQUENCE_MASK
        if self.own is not None:
            last, expected, expected_flows = self.own
            self.own = None
            numbering.check_own(self.stats, self, last, expected, expected_flows)
        self._check()
        before = self.before
        if before is not None:
            self.before = None
            before._check()
        numbering.retake(self.stats)  # itself late, in a gap counted while it waited

    def _check(self) -> None:
        if self.after is None or self.waiting:
            return
        sequence, units, flows, held = self.after
        if held is not None:
            if held.waiting:
                held.before = self
                return
            units, flows = held.units, held.flow_units
        self.after = None
        self.numbering.check_after(self.stats, self, sequence, units, flows)

    def never_read(self) -> None:
        """End of input, a set of this message still waiting (its template never came):
        the check of this message after the one before, which waited for this one's count
        (an inclusive number counts it), is made with the records it was read with. By the
        RFC's numbering its count is not needed: found by fuzzing, 100 records lost before
        it were counted when the message before was known at once, and not when that one
        too waited for its template. Left undone when its numbering has shown it counts
        the message's own records (softflowd's IPFIX): the count would be needed."""
        before, self.before = self.before, None
        if before is None or before.after is None or before.numbering.inclusive:
            return
        sequence, _, _, _ = before.after
        before.after = None
        before.numbering.check_after(before.stats, before, sequence, self.units, self.flow_units)


class _Numbering:
    """What the sequence numbers of one transport session of a stream expect next: RFC 7011
    §3.1 numbers each transport session's messages (and RFC 3954 a v9 exporting process's)
    on their own. Kept per stream, two exporting processes behind one address and domain
    (probes on one host, routers behind a NAT) took each other's numbers for losses
    (400,002 "lost") or hid a real one as a reorder (found by an audit)."""

    __slots__ = (
        "ambiguous_gaps",
        "boot_ms",
        "counts_messages",
        "expected",
        "expected_flows",
        "export_ms",
        "first",
        "gaps_counted",
        "inclusive",
        "lanes",
        "last_sequence",
        "missing",
        "numbered",
        "unfilled",
        "unknown",
        "uptime_ms",
    )

    def __init__(self) -> None:
        self.counts_messages = False  # its sequence numbers count messages (VPP)
        # messages in a row that told the conventions apart and numbered their own records
        # too (softflowd's IPFIX), not only those before them (RFC 7011 §3.1); one that
        # numbers as the RFC does sets it back to 0
        self.inclusive = 0
        self.ambiguous_gaps = 0  # gaps of one that counting messages would explain
        self.expected: int | None = None
        self.expected_flows: int | None = None
        # the first message numbered: (its number, its units, its flow units), what the run
        # of the captures before is compared with across the cut (sequence_ends)
        self.first: tuple[int, int | None, int | None] | None = None
        self.last_sequence = 0
        self.numbered = False  # last_sequence is a message's (none yet, or since a reboot)
        # per SCTP stream of the transport session, what its own numbering expects next
        # (expected, expected_flows): empty for UDP and TCP
        self.lanes: dict[int, tuple[int | None, int | None]] = {}
        # the holes of the latest gaps, [first, length, the gap's number] each, as counted
        # lost: a message of them that comes late takes its units back (it was counted lost
        # for good); one inside a gap leaves two holes of the one gap counted
        self.missing: list[list[int]] = []
        self.gaps_counted = 0
        # the last message numbered, while what its number counts is not known (some of its
        # data sets wait for their template): the next one is checked once it is
        self.unknown: HeldMessage | None = None
        # late messages that fell in no gap counted yet, (number, units, the message while
        # its count waits): a gap a deferred check finds later (check_after) takes them
        # back as it would have on arrival
        self.unfilled: list[tuple[int, int | None, HeldMessage | None]] = []
        self.uptime_ms = -1  # the latest sysUptime (v1/v5/v7/v9): a reboot sets it back
        self.boot_ms = 0  # its message's export time - sysUptime: when the exporter booted
        self.export_ms = -1  # the latest export time of its messages (ms; -1: none yet)

    def clocks(self, uptime_ms: int, sequence: int, export_ms: int) -> str:
        """What the header's clocks say of this message (v1/v5/v7/v9; IPFIX has no
        sysUptime, `uptime_ms` 0): RESTART when the exporter rebooted before it, its
        sysUptime went back by more than jitter, not by its wrap at 2**32 ms, to another
        boot time, and far, or with a number that is no reorder's (a message a little
        behind in both is a reorder: captures of one exporter read out of its order,
        akvorado's test files). Then it numbers afresh, from this message: no loss
        (3,000,000,000 -> 0 was "1,294,967,293 lost"; a restart from a low count read
        every message after it as a reorder).

        The boot time is what the header's clocks give, export time - sysUptime. Gone back
        with it moved on by 2**32 ms, sysUptime wrapped (as it does when the last message
        came within jitter of 2**32 ms): an exporter whose messages came more than a second
        apart crossed the wrap as a restart, and the loss at it went unseen (an audit). A
        message of the same boot time is a late one, however far behind: no reboot, but
        LATE, for the sequence check. "" when they say neither.

        Before all that, the export time (_stamped_after): a message behind the expected
        number but stamped a second after every one before it is no late one, whatever
        sysUptime says: softflowd and pmacct restarted within five minutes of their start
        read as reorders, and a loss after them went unseen (real captures of both, an
        audit); pmacct's second process exported at the very sysUptime of the first. (The
        boot time moving by a few seconds is no proof alone: akvorado's router moved it by
        2 s in a plain reorder.) A sysUptime of 0 after others is one (softflowd's, as it
        starts exporting: 302 s back read as a reorder); an exporter that sends no other
        has none (_export_clock). A message in the first second of a boot that is not the
        one seen starts another: a late message of the boot seen keeps its boot time, and
        one from before it would have to come after the whole boot since."""
        latest = self.export_ms
        if export_ms > 0:
            self.export_ms = max(latest, export_ms)
        went_back = self._went_back(sequence)
        if not uptime_ms:
            if self.uptime_ms <= 0:
                return self._export_clock(sequence, export_ms, latest, went_back)
            if not went_back:
                # a 0 among sysUptimes (an exporter's template refreshes) says nothing
                # while the numbers go on (a review: two restarts in a continuous stream)
                return ""
        boot_ms = export_ms - uptime_ms
        if self.uptime_ms < 0:
            self.uptime_ms, self.boot_ms = uptime_ms, boot_ms
            return ""
        if went_back and self._stamped_after(export_ms, latest):
            return self._restart(uptime_ms, boot_ms)
        back = self.uptime_ms - uptime_ms
        moved = boot_ms - self.boot_ms
        if back <= UPTIME_JITTER_MS:
            if went_back and back >= 0 and abs(moved) <= BOOT_CLOCK_MS:
                # behind in number and in sysUptime, by under a second, of the same boot:
                # late (a v5 datagram 0.8 s late, 80,000 flows behind at 100,000 flows a
                # second, was counted a restart and 80,100 lost: a review)
                return LATE
            # ahead (a late message of the lap before a wrap is ahead by nearly 2**32)
            if uptime_ms > self.uptime_ms and -back < UPTIME_WRAP_MS // 2:
                self.uptime_ms, self.boot_ms = uptime_ms, boot_ms
            return ""
        if (
            self.uptime_ms >= UPTIME_WRAP_MS - UPTIME_JITTER_MS
            or abs(moved - UPTIME_WRAP_MS) <= WRAP_CLOCK_MS
        ):
            self.uptime_ms, self.boot_ms = uptime_ms, boot_ms  # the next lap
            return ""
        if abs(moved) <= BOOT_CLOCK_MS:
            return LATE
        expected = self.expected
        # in the first second of another boot, numbered back: no late message of this one
        # (softflowd exports at sysUptime 0 as it starts; restarted within a second, it
        # read as reorders)
        if (
            (uptime_ms < UPTIME_JITTER_MS and went_back)
            or back > REBOOT_UPTIME_MS
            or expected is None
            or not 0 < (expected - sequence) & SEQUENCE_MASK <= REORDER_WINDOW
        ):
            return self._restart(uptime_ms, boot_ms)
        return ""

    def _went_back(self, sequence: int) -> bool:
        """Whether `sequence` is behind the last message's number (within half the
        numbers): no numbering convention numbers a message below the one before (an
        inclusive exporter's smaller message, a templates-only one at the last number,
        VPP's message count, a flow-only count after options records all lie between it
        and the expected number, where a review found them taken for restarts). Not for
        SCTP, whose streams may each be numbered on their own (lanes): a restart there
        is a new association."""
        return (
            self.numbered
            and not self.lanes
            and 0 < (self.last_sequence - sequence) & SEQUENCE_MASK < 1 << 31
        )

    @staticmethod
    def _stamped_after(export_ms: int, latest: int) -> bool:
        """Stamped a second or more after every message before it (`latest`): an exporter
        stamps its messages in the order it numbers them, so a late one would be stamped
        no later. Export time 0 (exporters without a clock) says nothing."""
        return export_ms > 0 and latest > 0 and export_ms >= latest + UPTIME_JITTER_MS

    def _restart(self, uptime_ms: int, boot_ms: int) -> str:
        self.renumber()
        self.uptime_ms, self.boot_ms = uptime_ms, boot_ms
        return RESTART

    def _export_clock(self, sequence: int, export_ms: int, latest: int, went_back: bool) -> str:
        """What the export time alone says (IPFIX, and an exporter whose sysUptime is
        always 0), from the latest of the numbering (`latest`): RESTART when the number
        went back and _stamped_after. An IPFIX exporter that restarted before its
        65,536th record read as reorders until its new numbers caught up with the old,
        and a loss among them went unseen (an audit); one that had sent more was
        numbered afresh without a word. A message far behind (past the reorder window),
        stamped no later than the latest, that falls in a gap counted lost is LATE:
        numbered from it, the next message on time read every record between as lost.
        (One that falls in none is no late one: a restart after a damaged future stamp,
        or the exporter's clock set back, read as reorders for good: a review.)"""
        if went_back and self._stamped_after(export_ms, latest):
            self.renumber()
            return RESTART
        expected = self.expected
        if export_ms <= 0 or latest <= 0 or expected is None:
            return ""
        behind = (expected - sequence) & SEQUENCE_MASK
        return (
            LATE
            if export_ms <= latest
            and REORDER_WINDOW < behind < 1 << 31
            and self._hole(sequence) is not None
            else ""
        )

    def renumber(self) -> None:
        """Forget what the numbering expected: the exporter numbers afresh."""
        self.expected = self.expected_flows = None
        self.numbered = False
        self.unknown = None
        self.unfilled.clear()
        self.lanes.clear()
        self.missing.clear()

    def check_after(
        self,
        stats: ExporterStats,
        held: HeldMessage,
        sequence: int,
        units: int,
        flow_units: int,
    ) -> None:
        """The check of the message numbered `sequence` after `held`, made once what `held`
        counts is known (see HeldMessage): a loss between them is counted as a gap, as the
        check on arrival counts it (a message behind is a reorder, said nothing of, as it
        was when it came)."""
        last = held.sequence
        miss = self._misfit(
            sequence,
            last,
            (last + held.units) & SEQUENCE_MASK,
            (last + held.flow_units) & SEQUENCE_MASK,
            units,
            flow_units,
        )
        if miss is not None and miss[1] < 1 << 31:
            start, difference, _ = miss
            stats.sequence_gaps += 1
            stats.sequence_lost += difference
            self.lost(start, difference)
            # a message of the gap that came before it was known (a review: 0 held, 5,
            # then 2 late read 3 lost once the template told 0's count)
            self.retake(stats)

    def check_own(
        self,
        stats: ExporterStats,
        held: HeldMessage,
        last: int,
        expected: int,
        expected_flows: int | None,
    ) -> None:
        """The check of `held` after the message numbered `last`, made once its count is
        known, when its numbering counts each message's own records too (softflowd's
        IPFIX): checked on arrival by the RFC's numbering alone, such a message read a
        loss, or a reorder, of its count less the last one's (found by fuzzing)."""
        miss = self._misfit(
            held.sequence, last, expected, expected_flows, held.units, held.flow_units
        )
        if miss is None:
            return
        start, difference, first = miss
        if difference < 1 << 31:
            stats.sequence_gaps += 1
            stats.sequence_lost += difference
            self.lost(start, difference)
        else:
            self.came_late(stats, first, held.units)

    def _misfit(
        self,
        sequence: int,
        last: int,
        expected: int,
        expected_flows: int | None,
        units: int,
        flow_units: int,
    ) -> tuple[int, int, int] | None:
        """For a message numbered `sequence` of `units` records (`flow_units` of them
        data) after the message numbered `last`, of which the RFC's numbering expects
        `expected` (`expected_flows` counting data records only): None when it fits any
        convention (its number counting its own records too, or VPP's message count once
        shown); else where the gap before it begins, how far ahead of there it is (behind:
        2**31 or more) and its first unit's number, by the stream's convention."""
        fits = sequence in (
            expected,
            expected_flows,
            (last + units) & SEQUENCE_MASK,  # inclusive: its number counts its own too
            (last + flow_units) & SEQUENCE_MASK,
        ) or (self.counts_messages and sequence == (last + 1) & SEQUENCE_MASK)
        if fits:
            return None
        if self.inclusive >= INCLUSIVE_EVIDENCE and not self.counts_messages:
            first, difference = _inclusive_first(sequence, last, units, flow_units)
            return last, difference, first
        return expected, (sequence - expected) & SEQUENCE_MASK, sequence

    def lost(self, first: int, count: int) -> None:
        """`count` units from number `first` counted lost: remembered for late messages."""
        self.gaps_counted += 1
        self.missing.append([first, count, self.gaps_counted])
        if len(self.missing) > MAX_MISSING:
            del self.missing[0]

    def behind_first(self, sequence: int, units: int | None, flow_units: int | None) -> None:
        """A late message numbered before the first one numbered: the run's start came
        out of order, and its first message is this one (compared across the cut with the
        run before, the one numbered first read the units between as lost)."""
        if self.first is not None and 0 < (self.first[0] - sequence) & SEQUENCE_MASK <= (
            REORDER_WINDOW
        ):
            self.first = (sequence, units, flow_units)

    def came_late(
        self,
        stats: ExporterStats,
        sequence: int,
        units: int | None,
        held: HeldMessage | None = None,
    ) -> None:
        """A message behind the expected number: a reorder, which takes back from `stats`
        the units counted lost of a gap it lies in (0,1,3,2,4 read "1 lost" with nothing
        missing: found by an audit); a gap it fills whole is no gap."""
        stats.reorders += 1
        found, filled = self._fill(sequence, units)
        stats.sequence_lost -= found
        stats.sequence_gaps -= filled
        if not found and (units or held is not None):
            self.unfilled.append((sequence, units, held))
            if len(self.unfilled) > MAX_MISSING:
                del self.unfilled[0]

    def retake(self, stats: ExporterStats) -> None:
        """The late messages of `unfilled` that fall in a gap now counted take their units
        back from it, as on arrival (came_late); one whose own count waits for its template
        (`held`) once it is known."""
        for late in list(self.unfilled):
            sequence, units, held = late
            if held is not None:
                if held.waiting:
                    continue
                units = held.units
            found, filled = self._fill(sequence, units)
            if found:
                self.unfilled.remove(late)
                stats.sequence_lost -= found
                stats.sequence_gaps -= filled

    def _hole(self, sequence: int) -> list[int] | None:
        """The first hole of a gap counted lost that `sequence` falls in, if any."""
        for gap in self.missing:
            if (sequence - gap[0]) & SEQUENCE_MASK < gap[1]:
                return gap
        return None

    def _fill(self, sequence: int, units: int | None) -> tuple[int, int]:
        """(units, gaps) a late message takes back from the hole it lies in."""
        gap = self._hole(sequence)
        if gap is None or not units:
            return 0, 0
        first, length, number = gap
        into = (sequence - first) & SEQUENCE_MASK
        found = min(units, length - into)
        if into == 0:  # from the gap's start: it starts later
            gap[0], gap[1] = (first + found) & SEQUENCE_MASK, length - found
        elif into + found == length:  # to its end: it ends earlier
            gap[1] = into
        else:  # inside: two holes, still one gap as counted
            gap[1] = into
            self.missing.append([(sequence + found) & SEQUENCE_MASK, length - into - found, number])
            if len(self.missing) > MAX_MISSING:
                del self.missing[0]
        if gap[1]:
            return found, 0
        self.missing.remove(gap)
        # the gap is no more when its last hole is filled (each of two holes filled took
        # one gap back: -1 gaps, and the exporters table failed; an audit)
        return found, int(not any(other[2] == number for other in self.missing))


class _Stream:
    """Sequence, duplicate and option state of one (exporter, domain, version) stream."""

    __slots__ = (
        "chunk",
        "chunk_code",
        "code",
        "first_rate",
        "numbering",
        "samplers",
        "sampling_declared",
        "sampling_rate",
        "scope",
        "stats",
        "sysinit_ms",
        "undeclared_records",
    )

    def __init__(self, stats: ExporterStats, code: int) -> None:
        self.stats = stats
        self.code = code
        # read before any sampling declaration, and the first rate declared (0: none yet):
        # ExporterStats.records_before_sampling when that rate is above 1
        self.undeclared_records = 0
        self.first_rate = 0
        # per transport session (Datagram.transport), the oldest first
        self.numbering: dict[int, _Numbering] = {}
        self.sampling_rate = 1
        self.sampling_declared = False  # a header or options record has given a rate
        self.samplers = 0  # index of the sampler table in force (ExportDecoder.samplers)
        self.sysinit_ms = -1
        # the templates in force by transport, the ports, the recent messages (scope.py:
        # the export's search keeps the same rules with the same class)
        self.scope: TemplateScope[Template] = TemplateScope()
        self.chunk: _Chunk | None = None  # the chunk `chunk_code` (exporter code) belongs to
        self.chunk_code = 0

    def declared_since(
        self, sysinit_ms: int, rate: int, samplers: int, *, sampling: bool
    ) -> tuple[int, int, int]:
        """(boot time, rate, sampler table) of records queued before their exporter declared
        them: an unknown boot time (< 0) and, with `sampling`, the rate and samplers become
        what it has declared since (the rest of their datagram, or their template's)."""
        if sysinit_ms < 0:
            sysinit_ms = self.sysinit_ms
        if sampling:
            rate, samplers = self.sampling_rate, samplers or self.samplers
        return sysinit_ms, rate, samplers


class _Chunk:
    """Data sets of one file waiting to be decoded together, grouped by template."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.parts: list[bytes] = []
        self.size = 0
        self.extra = bytearray()  # fixed parts of variable-length records
        self.groups: dict[Template, list[tuple[int, ...]]] = {}  # keyed by identity
        self.variable_groups: dict[Template, list[tuple[int, ...]]] = {}
        self.exporters: dict[str, int] = {}
        self.seen: list[tuple[int, int, int]] = []  # (stream code, export µs, arrival µs)

    def exporter_code(self, exporter: str) -> int:
        code = self.exporters.get(exporter)
        if code is None:
            code = self.exporters[exporter] = len(self.exporters)
        return code

    def add_payload(self, payload: bytes) -> int:
        base = self.size
        self.parts.append(payload)
        self.size += len(payload)
        return base

    def add(
        self, template: Template, row: tuple[int, ...], variable: bool = False
    ) -> tuple[list[tuple[int, ...]], int]:
        """Queue one set's row; where it went (to put its sampling right, see
        ExportDecoder._declare_late)."""
        groups = self.variable_groups if variable else self.groups
        sets = groups.get(template)
        if sets is None:
            sets = groups[template] = []
        sets.append(row)
        return sets, len(sets) - 1

    def decode(
        self,
        streams: list[_Stream],
        samplers: list[SamplerTable],
        nsel: NselLedger | None,
        report: RunReport,
    ) -> tuple[pa.RecordBatch | None, int]:
        """One FLOW_SCHEMA batch in arrival order (frame, record_index), and its row count."""
        buf = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        extra = bytes(self.extra)
        pieces: list[dict[str, np.ndarray]] = []
        for groups, data in ((self.groups, buf), (self.variable_groups, extra)):
            for template, sets in groups.items():
                columns = _decode_group(template, sets, data, streams, samplers)
                if columns is not None:
                    pieces.append(columns)
        if not pieces:
            return None, 0
        columns = _concatenate(pieces)
        n = len(columns["source_frame"])
        if len(pieces) > 1:
            order = np.lexsort((columns["record_index"], columns["source_frame"]))
            if not np.array_equal(order, np.arange(n)):
                columns = {name: values[order] for name, values in columns.items()}
        codes = columns.pop("exporter_code")
        if "_nsel_event" in columns:
            self._settle_nsel(columns, nsel, report)
        if "_export_time" in columns:
            self._say_export_times(columns.pop("_export_time").astype(bool), columns, report)
        if "_frame" in columns:
            self._say_frames(columns.pop("_frame"), columns, report)
        if "_too_wide" in columns:
            self._say_too_wide(columns.pop("_too_wide").astype(bool), columns, report)
        texts = list(self.exporters)
        batch = flow_batch(
            n, columns, exporter=(codes.astype(np.int32), texts), source_file=self.source
        )
        return batch, n

    def _say_repaired(
        self,
        chosen: np.ndarray,
        columns: dict[str, np.ndarray],
        report: RunReport,
        text: str,
        reason: str,
    ) -> None:
        """Count the `chosen` records as kept with a field put right, located at the first."""
        count = int(np.count_nonzero(chosen))
        if not count:
            return
        row = int(np.argmax(chosen))
        report.repair(
            MalformedInput(
                f"{count} record(s) {text}",
                source=self.source,
                offset=int(columns["source_offset"][row]),
                frame=int(columns["source_frame"][row]),
                reason=reason,
            ),
            count=count,
        )

    def _say_export_times(
        self, placed: np.ndarray, columns: dict[str, np.ndarray], report: RunReport
    ) -> None:
        """Records whose exporter gave no time of their own (a template without one, an
        IPFIX uptime whose systemInitTime never came, as Mikrotik's): they sit at their
        datagram's export time, which is said, as the nfcapd reader says `receive_time`."""
        self._say_repaired(
            placed,
            columns,
            report,
            "without a time of their own (their template has none, or an uptime "
            "without the exporter's boot time): placed at their datagram's "
            "export time",
            "export_time",
        )

    def _say_too_wide(
        self, over: np.ndarray, columns: dict[str, np.ndarray], report: RunReport
    ) -> None:
        """Records whose template gives a number more bytes than its column holds (a port
        in 4, a protocol in 2: RFC 7011 §6.2 allows only shorter encodings) and whose value
        needs them: it means nothing the column could hold, and is 0 there (the low bytes
        were kept: protocol 262 read as 6, TCP, without a word)."""
        self._say_repaired(
            over,
            columns,
            report,
            "with a number larger than its column holds (a template field wider "
            "than its element's type): kept with 0 in that column",
            "number_too_wide",
        )

    def _say_frames(
        self, frame: np.ndarray, columns: dict[str, np.ndarray], report: RunReport
    ) -> None:
        """Records of a sampled packet's header (frames.py): their flow fields were read
        from it (`frame_section`), or could not be, and they stay without addresses
        (`frame_section_unread`: not Ethernet, or cut before an IP header)."""
        for code, reason, text in (
            (
                1,
                "frame_section",
                "flow fields read from the header of the sampled "
                "packet they carry (dataLinkFrameSection), one packet each",
            ),
            (
                2,
                "frame_section_unread",
                "no IP header found in the sampled packet's "
                "header they carry (dataLinkFrameSection): kept without addresses",
            ),
        ):
            self._say_repaired(
                frame == code, columns, report, f"without flow fields: {text}", reason
            )

    def _settle_nsel(
        self, columns: dict[str, np.ndarray], nsel: NselLedger | None, report: RunReport
    ) -> None:
        """Cisco NSEL teardowns count what their connection's updates did not (nsel.py)."""
        event = columns.pop("_nsel_event")
        connection = columns.pop("_nsel_connection")
        stream = columns.pop("_nsel_stream")
        if nsel is None:
            return
        changed = nsel.settle_columns(stream, connection, event, columns)
        if not changed.any():
            return
        row = int(np.argmax(changed))
        report.repair(
            nsel_repair(
                int(changed.sum()),
                self.source,
                int(columns["source_offset"][row]),
                int(columns["source_frame"][row]),
            ),
            count=int(changed.sum()),
        )


def _decode_group(
    template: Template,
    sets: list[tuple[int, ...]],
    buf: bytes,
    streams: list[_Stream],
    samplers: list[SamplerTable],
) -> dict[str, np.ndarray] | None:
    """Columns of every record of `sets` (all read with `template`) from `buf`."""
    plan = template.plan
    meta = np.array(sets, dtype=np.int64)
    counts = meta[:, _COUNT]
    total = int(counts.sum())
    if total == 0:
        return None
    set_of_record = np.repeat(np.arange(len(sets)), counts)
    first_of_set = np.cumsum(counts) - counts
    within = np.arange(total, dtype=np.int64) - first_of_set[set_of_record]
    itemsize = plan.dtype.itemsize
    record_meta = meta[set_of_record]
    starts = record_meta[:, _POS] + within * plan.itemsize
    window = np.ndarray(
        shape=(len(buf) - itemsize + 1,), dtype=plan.dtype, buffer=buf, strides=(1,)
    )
    rows = window[starts]
    columns = plan.columns(
        rows,
        RecordMeta(
            export_us=record_meta[:, _EXPORT],
            uptime_ms=record_meta[:, _UPTIME],
            sysinit_ms=record_meta[:, _SYSINIT],
            sampling_rate=record_meta[:, _RATE],
            sampler_table=record_meta[:, _SAMPLERS],
            sampler_tables=samplers,
        ),
    )
    columns["source_frame"] = record_meta[:, _FRAME]
    columns["source_offset"] = record_meta[:, _OFFSET]
    columns["arrival"] = record_meta[:, _ARRIVAL]
    columns["exporter_domain"] = record_meta[:, _DOMAIN]
    columns["record_index"] = record_meta[:, _FIRST] + within
    columns["exporter_code"] = record_meta[:, _EXPORTER]
    if "_nsel_event" in columns:
        columns["_nsel_stream"] = record_meta[:, _STREAM].astype(np.uint64)
    stream_codes = meta[:, _STREAM]
    # exporter totals count both directions the exporter reported (RFC 5103 reverse counters
    # included), as nfdump's statistics and the nfcapd reader do
    packets = _both_directions(columns, "packets", "reverse_packets")
    octets = _both_directions(columns, "octets", "reverse_octets")
    first_code = int(stream_codes[0])
    if (stream_codes == first_code).all():
        groups = [(first_code, slice(None))]
    else:
        per_record = record_meta[:, _STREAM]
        groups = [(int(code), per_record == code) for code in np.unique(stream_codes)]
    for code, selection in groups:
        stats = streams[code].stats
        if packets is not None:
            stats.packets += exact_sum(packets[selection])
        if octets is not None:
            stats.octets += exact_sum(octets[selection])
        if plan.enterprise_skipped:
            selected = total if isinstance(selection, slice) else int(selection.sum())
            stats.enterprise_fields_skipped += plan.enterprise_skipped * selected
    return columns


def _concatenate(pieces: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join column dicts, filling what a template lacked with the FLOW_SCHEMA default."""
    if len(pieces) == 1:
        names = set(pieces[0])
    else:
        names = set().union(*pieces)
    out: dict[str, np.ndarray] = {}
    for name in names:
        parts = []
        for piece in pieces:
            values = piece.get(name)
            if values is None:
                n = len(piece["source_frame"])
                if name in FLOW_ADDRESS_COLUMNS:
                    values = np.zeros((n, 16), dtype=np.uint8)
                elif name.startswith("_"):  # a reader's own column (NSEL's): 0, none
                    values = np.zeros(n, dtype=np.uint64)
                else:
                    values = np.full(
                        n, 1 if name == "sampling_rate" else 0, dtype=FLOW_NUMERIC_DTYPES[name]
                    )
            parts.append(values)
        out[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return out


class ExportDecoder:
    """Decodes UDP payloads of NetFlow v1/v5/v7/v9/IPFIX into FLOW_SCHEMA batches; holds template
    state.

    It fills the per-exporter ExporterStats and counts problems; the caller (read_flows)
    counts the rows it yields in report.records / FileStats.records.

    The version modules call back into it while walking a datagram: `begin_datagram`,
    then `add_set` / `add_variable_records` / `options_records` / `define_template` /
    `defer_set` / `skip`, then `end_datagram`.
    """

    def __init__(self, report: RunReport) -> None:
        self.report = report
        self.nsel = NselLedger()  # Cisco NSEL update counters, for their teardowns
        self.pending = PendingData()
        self._streams: dict[tuple[str, int, int], _Stream] = {}
        self._stream_list: list[_Stream] = []
        self._streams_of: dict[str, list[_Stream]] = {}  # an exporter's, by its address
        # held data sets resolved, by the frame of the datagram that brought their template
        # and the record_index they go before (_resolve_released)
        self._resolved: list[tuple[int, int, list[tuple[Template, PendingSet, int]]]] = []
        self._message_first = 0  # record_index of the current message's first record
        # sampling rates scoped to a sampler/selector id or an interface, as options records
        # declared them; a stream points at the table in force, and each queued set keeps
        # the index it was read under (a new table per change: earlier sets keep theirs)
        self.samplers: list[SamplerTable] = [{}]
        # (exporter, its port, collector port, version) of every datagram decoded so far: a
        # later datagram of that conversation whose header fails the checks is a damaged
        # export, not other traffic (for other senders the version bytes alone prove nothing)
        self._export_paths: set[tuple[str, int, int, int]] = set()
        # the (exporter, its port, collector port) of those paths, whatever the version:
        # a datagram of one whose version bytes are no export's is a damaged export
        self._export_senders: set[tuple[str, int, int]] = set()
        # datagrams counted as other traffic whose first bytes claimed a version their
        # header then failed, by that path: when the path proves to send that version,
        # they were damaged exports (a sender's first datagram, cut or with a damaged
        # count, has no good one before it), and are counted so (`bad_export_header`)
        # (source, offset, frame, size) of each
        self._suspects: dict[tuple[str, int, int, int], list[tuple[str, int, int, int]]] = {}
        self._chunk = _Chunk("")
        self._datagram: Datagram | None = None
        self._transport = 0  # the current datagram's transport session (Datagram.transport)
        self._version = 0
        self._stream: _Stream | None = None
        self._numbering: _Numbering | None = None  # the stream's, of the datagram's transport
        self._row: tuple[int, ...] = ()
        self._message = b""
        self._base = -1
        self._ordinal = 0
        self.options_in_datagram = 0  # options data records in the current message
        self._sequence = 0
        self._behind = False  # the current message is late by its exporter's clocks
        # data sets of the current message whose template has not arrived (yet), each with
        # what its exporter had declared then (boot time, rate, sampler table) and the
        # record_index it arrived at
        self._waiting: list[tuple[SessionTemplateKey, bytes, tuple[int, int, int], int]] = []
        # held data whose template the current datagram brought, each with the record_index
        # it goes before: resolved at the datagram's end
        self._released: list[tuple[Template, PendingSet, int, int]] = []
        self._held_frame: tuple[str, int] | None = None  # the frame _held_sets counts in
        self._held_sets = 0
        self._arrivals = 0  # sets held so far, over the run (PendingSet.arrived)
        self._frame: tuple[str, int] | None = None  # the frame being numbered
        # rows of this datagram queued before a sampling rate or boot time was declared
        self._undeclared: list[tuple[list[tuple[int, ...]], int, bool, int]] = []
        self._brought: set[int] | None = None  # template ids the message defines, when asked
        self._parking = False  # _park_waiting is deciding what the datagram held

    # -- public API ------------------------------------------------------------------

    def feed(self, datagrams: Sequence[Datagram]) -> list[pa.RecordBatch]:
        """Decode one chunk of datagrams (all from one file) into FLOW_SCHEMA batches."""
        if not datagrams:
            return []
        chunk = self._chunk = _Chunk(datagrams[0].source)
        ignore = self.report.ignore
        paths = self._export_paths
        for datagram in datagrams:
            payload = datagram.payload
            version = export_version(payload)
            if datagram.fresh:
                self._fresh_transport(datagram)
            if version:
                path = (datagram.exporter, datagram.exporter_port, datagram.collector_port, version)
                problems = -1 if path in paths else self._first_of_path(path, paths)
                if version == 9:
                    netflow_v9.decode_datagram(self, datagram)
                elif version == 10:
                    ipfix.decode_datagram(self, datagram)
                else:
                    netflow_v5.decode_datagram(self, datagram, version)  # v1, v5, v7
                if problems >= 0:
                    self._damaged_before(path, problems, paths)
            elif (
                len(payload) >= 2
                and (
                    datagram.exporter,
                    datagram.exporter_port,
                    datagram.collector_port,
                    claimed := payload[0] << 8 | payload[1],
                )
                in paths
            ):
                if netflow_v5.cut_or_padded(payload, claimed):
                    # v1/v7 are known by their exact length: a cut or padded one of a sender
                    # known for them is read, what is missing or extra counted
                    netflow_v5.decode_datagram(self, datagram, claimed)
                    continue
                if claimed in (9, 10) and export_version(payload, first_set=False) == claimed:
                    # a reserved first set id tells other traffic from an export; a sender
                    # known for them is walked, the set counted (its templates and data
                    # after it were lost with it as `bad_export_header`: an audit)
                    (netflow_v9 if claimed == 9 else ipfix).decode_datagram(self, datagram)
                    continue
                self._bad_header(
                    (datagram.exporter, datagram.exporter_port, datagram.collector_port, claimed),
                    "before",
                    datagram.source,
                    datagram.offset,
                    datagram.frame,
                    len(payload),
                )
            elif (
                len(payload) >= 2
                and (payload[0] << 8 | payload[1]) not in OTHER_VERSIONS
                and (datagram.exporter, datagram.exporter_port, datagram.collector_port)
                in self._export_senders
            ):
                # found by fuzzing: one version byte damaged (0x0009 -> 0x0029) in the
                # middle of an exporter's datagrams lost its records as other traffic
                self._bad_version(datagram, payload[0] << 8 | payload[1])
            else:
                ignore("not_flow_export", datagram.source, len(payload))
                if len(payload) >= 2 and payload[0] == 0 and payload[1] in CLAIMED_VERSIONS:
                    self._suspect(datagram, payload[1])
        batch, _ = chunk.decode(self._stream_list, self.samplers, self.nsel, self.report)
        self._see_exports(chunk)
        out = self._interleave(batch)
        self._count_undeclared()
        return out

    def _fresh_transport(self, datagram: Datagram) -> None:
        """An SCTP association's first message, in a slot an earlier association of its
        exporter port may have held: its numbering starts afresh (begin_datagram finds a
        new transport session). The templates stay until it sends its own, which RFC 7011
        §8 has it do before its data (one it sends byte for byte as the earlier one did is
        a duplicate, and the same templates serve)."""
        transport = datagram.transport
        for stream in self._streams_of.get(datagram.exporter, ()):
            stream.scope.forget_port(transport)

    def _first_of_path(
        self, path: tuple[str, int, int, int], paths: set[tuple[str, int, int, int]]
    ) -> int:
        """A path's first datagram with a good header: -1 when it is an export's at once,
        else (it sent suspects before) the problems counted so far, for the proof."""
        if self._suspects and path in self._suspects:
            return self.report.skipped_problems()
        paths.add(path)
        self._export_senders.add(path[:3])
        return -1

    def _suspect(self, datagram: Datagram, claimed: int) -> None:
        """Remember a datagram taken for other traffic though it begins with a version
        number (bounded: SUSPECTS_PER_PATH per path, SUSPECT_PATHS paths)."""
        path = (datagram.exporter, datagram.exporter_port, datagram.collector_port, claimed)
        kept = self._suspects.pop(path, [])  # re-inserted last: the oldest path goes first
        if len(kept) < SUSPECTS_PER_PATH:
            kept.append((datagram.source, datagram.offset, datagram.frame, len(datagram.payload)))
        self._suspects[path] = kept
        if len(self._suspects) > SUSPECT_PATHS:
            del self._suspects[next(iter(self._suspects))]

    def _damaged_before(
        self, path: tuple[str, int, int, int], problems: int, paths: set[tuple[str, int, int, int]]
    ) -> None:
        """`path` just sent its first good header of its version after suspects, and
        `problems` were counted before its datagram was decoded. Decoded without a new one,
        it proves the path an export's and what it sent before that claimed the version but
        failed the header checks damaged exports, not other traffic (a v1/v7 sender's first
        datagram cut short, or with a damaged count); with one, the suspects stay other
        traffic (a memcached reply's second part can pass v5's header checks, not the rest
        of them)."""
        suspects = self._suspects.pop(path, [])
        if self.report.skipped_problems() != problems:
            return
        paths.add(path)
        self._export_senders.add(path[:3])
        for source, offset, frame, size in suspects:
            self.report.unignore("not_flow_export", source, size)
            self._bad_header(path, "after", source, offset, frame, size)

    def _bad_version(self, datagram: Datagram, claimed: int) -> None:
        """Count a datagram of a proven export sender (its exporter, port and collector
        port) whose version bytes are no export's: damaged, not other traffic."""
        sent = sorted(
            version
            for *sender, version in self._export_paths
            if tuple(sender) == (datagram.exporter, datagram.exporter_port, datagram.collector_port)
        )
        what = (
            f"version {claimed} header that fails its checks (record count, length or "
            "first set id),"
            if claimed in CLAIMED_VERSIONS
            else f"version bytes {claimed:#06x}, no export's,"
        )
        self.report.skip(
            MalformedInput(
                f"{what} from {datagram.exporter}:{datagram.exporter_port} to port "
                f"{datagram.collector_port}, which sent exports of version "
                f"{', '.join(map(str, sent))}",
                source=datagram.source,
                offset=datagram.offset,
                frame=datagram.frame,
                reason="bad_export_header",
            ),
            len(datagram.payload),
        )

    def _bad_header(
        self,
        path: tuple[str, int, int, int],
        when: str,
        source: str,
        offset: int,
        frame: int,
        size: int,
    ) -> None:
        """Count a datagram of an export path whose header fails its version's checks."""
        exporter, port, collector_port, version = path
        self.report.skip(
            MalformedInput(
                f"version {version} header that fails its checks (record count, length or first "
                f"set id), from {exporter}:{port} to port {collector_port}, which sent good "
                f"exports of that version {when} it",
                source=source,
                offset=offset,
                frame=frame,
                reason="bad_export_header",
            ),
            size,
        )

    def _count_undeclared(self) -> None:
        """Bring each stream's count of records read before any sampling declaration to
        its exporter's row (ExporterStats.records_before_sampling); kept on the stream,
        where the per-datagram path counts it cheaply."""
        for stream in self._stream_list:
            stream.stats.records_before_sampling = 0
        for stream in self._stream_list:  # a row's streams: one per export version
            if stream.first_rate > 1:
                stream.stats.records_before_sampling += stream.undeclared_records

    def _interleave(self, batch: pa.RecordBatch | None) -> list[pa.RecordBatch]:
        """The chunk's records with the held ones released among them, each group right
        before the records of the message whose template released it (or, held within that
        message, where it came: _resolve_released). Placed by frame and
        record_index, they reach the sessionizer at the same place whatever the batch size
        (found by fuzzing: appended after the chunk, they came after more or fewer later
        datagrams, and a session's `late` changed). Before that message's records, which
        arrived after them (after them, a capture begun between template refreshes made
        the held records a `late` session that the whole capture, its templates read
        first, did not), and after the messages ahead of it in its frame (a payload of
        several messages, a TCP segment's), which arrived before them."""
        points, self._resolved = self._resolved, []
        if not points:
            return [] if batch is None else [batch]
        frames = (
            np.empty(0, dtype=np.int64)
            if batch is None
            else batch.column("source_frame").to_numpy()
        )
        index = (
            np.empty(0, dtype=np.int64)
            if batch is None
            else batch.column("record_index").to_numpy()
        )
        out: list[pa.RecordBatch] = []
        start = 0
        for frame, first, items in points:
            lo = int(np.searchsorted(frames, frame, side="left"))
            hi = int(np.searchsorted(frames, frame, side="right"))
            stop = lo + int(np.searchsorted(index[lo:hi], first, side="left"))
            if batch is not None and stop > start:
                out.append(batch.slice(start, stop - start))
            start = max(start, stop)
            out.extend(self._decode_resolved(items))
        if batch is not None and start < batch.num_rows:
            out.append(batch.slice(start))
        return out

    def finish(self) -> list[pa.RecordBatch]:
        """End of all input: decode what is still queued, count data whose template never came."""
        batches = self._interleave(None)
        self._count_undeclared()
        self._sequence_ends()
        for key, items in sorted(self.pending.drain().items()):
            exporter, domain, _, template_id, _port = key
            stats = self.report.exporter(exporter, domain)
            stats.records_without_template += len(items)
            stats.missing_templates[template_id] += len(items)
            for item in items:
                if item.held is not None:
                    item.held.never_read()
            first = items[0]
            self.report.skip(
                UnknownTemplate(
                    f"{len(items)} data set(s) for template {template_id} of exporter "
                    f"{exporter} domain {domain}: the template never arrived",
                    source=first.source,
                    offset=first.datagram_offset,
                    frame=first.frame,
                ),
                sum(len(item.body) for item in items),
                count=len(items),
            )
        return batches

    def _sequence_ends(self) -> None:
        """Each stream's first message and what its numbering expected after its last, for
        a stream numbered over one transport session outside SCTP: a run of the captures
        after these compares its first message with them (recombine), where a datagram
        lost at the cut between two runs' captures was seen by neither (a review). Several
        transport sessions, or SCTP's streams, leave no one end to compare."""
        for (exporter, domain, version), stream in self._streams.items():
            if len(stream.numbering) != 1:
                continue
            [numbering] = stream.numbering.values()
            if numbering.first is None or numbering.lanes:
                continue
            sequence, units, flow_units = numbering.first
            stream.stats.sequence_ends.append(
                {
                    "exporter": exporter,
                    "domain": domain,
                    "version": version,
                    "first": sequence,
                    "first_units": units,
                    "first_flow_units": flow_units,
                    "last": numbering.last_sequence,
                    "expected": numbering.expected,
                    "expected_flows": numbering.expected_flows,
                    # messages that numbered their own records too (softflowd's IPFIX):
                    # one is a hint, INCLUSIVE_EVIDENCE the proof the run's check took
                    "inclusive": numbering.inclusive,
                    "counts_messages": numbering.counts_messages,
                }
            )

    # -- called by the version modules while walking one datagram ------------------

    def begin_datagram(
        self,
        datagram: Datagram,
        version: int,
        domain: int,
        sequence: int,
        export_us: int,
        uptime_ms: int,
        *,
        sampling_rate: int | None = None,
        message: bytes | None = None,
        ordinal: int | None = None,
    ) -> bool:
        """Start one export message; False when it duplicates one already decoded."""
        payload = datagram.payload if message is None else message
        key = (datagram.exporter, domain, version)
        stream = self._streams.get(key)
        if stream is None:
            stats = self.report.exporter(datagram.exporter, domain)
            stats.versions.add(version)
            stream = self._streams[key] = _Stream(stats, len(self._stream_list))
            self._stream_list.append(stream)
            self._streams_of.setdefault(datagram.exporter, []).append(stream)
        stats = stream.stats
        scope = stream.scope
        # v1 numbers nothing: its copies are known by their bytes alone (under sequence 0,
        # four were remembered, and a copy of a capture was read twice: an audit)
        if scope.duplicate(None if version == 1 else sequence, payload):
            stats.duplicates += 1
            self.report.file(datagram.source).duplicate_datagrams += 1
            return False
        stats.datagrams += 1
        # Datagram.transport, without the call: this runs for every message
        port = self._transport = datagram.exporter_port | datagram.session << 16
        numbering = stream.numbering.get(port)
        if scope.arrive(port, datagram.arrival_us) or numbering is None:
            # a new transport session is a new stream, numbered afresh (RFC 7011 §3.1):
            # a restart's jump is no loss (pmacct's test 112: 1,278,157 "lost")
            numbering = stream.numbering[port] = _Numbering()
            if len(stream.numbering) > MAX_NUMBERINGS:  # the oldest session's goes
                del stream.numbering[next(iter(stream.numbering))]
        verdict = numbering.clocks(uptime_ms, sequence, export_us // 1000)
        stats.restarts += verdict == RESTART
        self._behind = verdict == LATE
        self._numbering = numbering
        self._brought = None
        if sampling_rate is not None:
            stream.sampling_rate = sampling_rate
            stream.sampling_declared = True
            stats.sampling_rate = sampling_rate
        chunk = self._chunk
        self._datagram = datagram
        self._version = version
        self._stream = stream
        self._message = payload
        self._base = -1
        # record_index goes on where the frame's previous datagram left it (TCP messages,
        # and a message completed only at the end of a file, share a frame with others)
        self._ordinal = self.first_ordinal(datagram) if ordinal is None else ordinal
        self._message_first = self._ordinal
        self.options_in_datagram = 0
        if self._waiting or self._released or self._undeclared:  # a walk that raised
            self._waiting, self._released, self._undeclared = [], [], []
        self._sequence = sequence
        if stream.chunk is not chunk:
            stream.chunk = chunk
            stream.chunk_code = chunk.exporter_code(datagram.exporter)
        self._row = (
            datagram.frame,
            datagram.offset,
            datagram.arrival_us,
            export_us,
            uptime_ms,
            stream.chunk_code,
            domain,
            stream.code,
        )
        chunk.seen.append((stream.code, export_us, datagram.arrival_us))
        return True

    def first_ordinal(self, datagram: Datagram) -> int:
        """record_index of a datagram's first record: 0, or where the previous one of the
        same frame left off (IPFIX messages over TCP completed by one segment are datagrams
        of one frame: they numbered their records alike)."""
        frame = (datagram.source, datagram.offset)
        if frame == self._frame:
            return self._ordinal
        self._frame = frame
        return 0

    @property
    def ordinal(self) -> int:
        """record_index the next data record of the current datagram gets."""
        return self._ordinal

    def add_set(self, template: Template, at: int, records: int) -> None:
        """Queue `records` fixed-size records starting at byte `at` of the message."""
        if self._base < 0:
            self._base = self._chunk.add_payload(self._message)
        stream = self._stream
        assert stream is not None
        where = self._chunk.add(
            template,
            (
                *self._row,
                self._base + at,
                records,
                self._ordinal,
                stream.sysinit_ms,
                stream.sampling_rate,
                stream.samplers,
            ),
        )
        self._note_undeclared(stream, template, where, records)
        self._ordinal += records
        stream.stats.records += records

    def add_variable_records(self, template: Template, fixed_parts: bytes, records: int) -> None:
        """Queue records of a variable-length template, already cut to their fixed fields."""
        chunk = self._chunk
        stream = self._stream
        assert stream is not None
        where = chunk.add(
            template,
            (
                *self._row,
                len(chunk.extra),
                records,
                self._ordinal,
                stream.sysinit_ms,
                stream.sampling_rate,
                stream.samplers,
            ),
            variable=True,
        )
        self._note_undeclared(stream, template, where, records)
        chunk.extra += fixed_parts
        self._ordinal += records
        stream.stats.records += records

    def _note_undeclared(
        self,
        stream: _Stream,
        template: Template,
        where: tuple[list[tuple[int, ...]], int],
        records: int,
    ) -> None:
        """Remember a set queued before its exporter declared a sampling rate (or, in
        IPFIX, its boot time): the rest of the datagram may declare it (_declare_late)."""
        if not stream.sampling_declared or (stream.sysinit_ms < 0 and self._version == 10):
            counted = 0 if stream.sampling_declared or template.rates_itself else records
            stream.undeclared_records += counted  # taken back if the datagram declares
            self._undeclared.append((*where, not stream.sampling_declared, counted))

    def options_records(self, template: Template, buf: bytes, at: int, end: int) -> int:
        """Read an options data set now (sampling rate, system init time); records read."""
        stream = self._stream
        assert stream is not None
        records = self._apply_options(template, buf, at, end, stream)
        self._ordinal += records
        self.options_in_datagram += records
        return records

    def data_set(self, set_id: int, buf: bytes, at: int, end: int, where: str) -> int | None:
        """Decode a v9 or IPFIX data set whose records lie in buf[at:end] (buf: the current
        message); records read, or None when its template has not arrived (it waits)."""
        template = self.template(set_id)
        if template is None:
            self.defer_set(set_id, buf[at:end])
            return None
        if template.options:
            return self.options_records(template, buf, at, end)
        if not template.plan.carries_flows:
            assert self._datagram is not None
            records, problem = self._not_flows(template, buf, at, end, self._datagram.source)
            if problem is not None:  # checked as any set's (a damaged set id lands here)
                self.leftover(f"{where}: {problem.text}", problem)
            self._ordinal += records
            return records
        if template.fixed_length is not None:
            records, problem, left_out = misfit(template, buf, at, end)
            if left_out:
                assert problem is not None
                self.leftover(f"{where}: {problem.text}", problem)
                # its records as this template counts them: what an IPFIX message's
                # sequence number was checked against before
                return records
            if records:
                self.add_set(template, at, records)
        else:
            # variable-length fields: IPFIX's, and v9's from exporters that send them (H3C)
            parts, records, problem = variable_records(template, buf, at, end)
            if records:
                self.add_variable_records(template, parts, records)
        if problem is not None:
            self.leftover(f"{where}: {problem.text}", problem)
        return records

    def _not_flows(
        self, template: Template, buf: bytes, at: int, end: int, source: str
    ) -> tuple[int, Leftover | None]:
        """Count the records of a data set whose template holds no IP flow (RecordPlan.
        carries_flows) as other content; (their number, what follows the last of them)."""
        if template.fixed_length is not None:
            records, problem = fixed_set_records(template, buf, at, end)
        else:
            _, records, problem = variable_records(template, buf, at, end)
        if records:
            self.report.ignore(
                "not_flow_records",
                source,
                end - at - (problem.nbytes if problem else 0),
                count=records,
            )
        return records, problem

    def leftover(self, message: str, problem: Leftover, place: _Place | None = None) -> None:
        """What followed a set's last record: its exporter's padding, or a bad record."""
        if not self._padding(message, problem, place):
            self._malformed(message, problem.nbytes, "bad_record", place)

    def _padding(self, message: str, problem: Leftover, place: _Place | None = None) -> bool:
        """Say a set's non-zero alignment padding (no record lost, so not a skip: --strict
        goes on); False when `problem` is not that."""
        if not problem.padding:
            return False
        if place is None:
            datagram = self._datagram
            assert datagram is not None
            place = (datagram.source, datagram.offset, datagram.frame)
        source, offset, frame = place
        self.report.repair(
            MalformedInput(
                message, source=source, offset=offset, frame=frame, reason="nonzero_padding"
            )
        )
        return True

    def define_template(self, template: Template) -> None:
        """A template or options template record arrived: store it, decode what waited for it."""
        stream = self._stream
        datagram = self._datagram
        assert stream is not None and datagram is not None
        key = (datagram.exporter, stream.stats.domain, self._version, template.template_id)
        stats = stream.stats
        stats.templates += 1
        port = self._transport
        scope = stream.scope
        outcome = scope.define(port, template, template)
        if outcome == "changed":
            stats.template_changes += 1
        if outcome != "refresh":
            # data of this port that waited, and of ports that never define templates, in
            # the order it came (taken port by port, options records held on two ports
            # declared their rates out of order: the older one stood)
            items = sorted(
                (
                    item
                    for waiting in self.pending.waiting(key)
                    if scope.releases(waiting[-1], port)
                    for item in self.pending.take(waiting)
                ),
                key=lambda item: item.arrived,
            )
            for item in items:
                if template.options:
                    # problems found now belong to the datagram that brought the data
                    records = self._apply_options(
                        template,
                        item.body,
                        0,
                        len(item.body),
                        stream,
                        place=(item.source, item.datagram_offset, item.frame),
                    )
                    if item.held is not None:
                        item.held.read(records, 0)
                else:  # arrived in an earlier message: before all of this one's records
                    self._released.append((template, item, stream.code, self._message_first))

    def template(self, template_id: int) -> Template | None:
        """The template in force for `template_id` in the current transport session, else
        the one the exporter defined last from another port (scope.TemplateScope.port_of)."""
        stream = self._stream
        datagram = self._datagram
        assert stream is not None and datagram is not None
        port = self._transport
        scope = stream.scope
        owner = scope.port_of(port, template_id)
        if owner is None:
            return None
        if owner != port:
            if not self._parking:
                if self._brought is None:
                    self._brought = template_ids_in(self._message)
                if template_id in self._brought:
                    return None  # held to the datagram's end, where its own stands
            return scope.latest[template_id]
        return scope.values[port, template_id]

    def withdraw(self) -> None:
        """Count an IPFIX template withdrawal (ignored over UDP, see ipfix.py)."""
        assert self._stream is not None
        self._stream.stats.template_withdrawals += 1

    def defer_set(self, template_id: int, body: bytes) -> None:
        """Keep a data set whose template has not arrived (decoded if it does)."""
        datagram = self._datagram
        stream = self._stream
        assert datagram is not None and stream is not None
        key = (datagram.exporter, stream.stats.domain, self._version, template_id, self._transport)
        # what its exporter had declared where it came (a rate declared after it in its
        # message is not its own, as it is not a set's read at once: _declare_late)
        declared = (
            stream.sysinit_ms,
            stream.sampling_rate if stream.sampling_declared else 0,
            stream.samplers,
        )
        self._waiting.append((key, body, declared, self._ordinal))

    def skip(self, error: InputError, nbytes: int) -> None:
        """Count a bad part of the current datagram (raises under --strict)."""
        if self._stream is not None:
            self._stream.stats.undecodable_sets += 1
        self.report.skip(error, nbytes)

    def end_datagram(
        self,
        units: int | None,
        *,
        flow_units: int | None = None,
        inclusive: bool = False,
        per_datagram: bool = False,
    ) -> None:
        """Check the sequence number; `units` = what this message adds (None = unknown).

        IPFIX passes `flow_units` (its data records without options records: nfdump and
        softflowd count those) and `inclusive` (softflowd counts the current message too,
        and VPP's flowprobe counts messages, not records); a sequence number that fits any
        of these conventions is no gap. v9 passes `per_datagram`: its numbers count export
        packets, whatever their records, so sets held for their template leave the count
        known (an audit: every loss before the template arrived went unseen).
        """
        stream = self._stream
        datagram = self._datagram
        numbering = self._numbering
        assert stream is not None and datagram is not None and numbering is not None
        sequence = self._sequence
        held = None
        if self._waiting:
            if not per_datagram and not datagram.session:
                # what its held sets hold is added as they are read (SCTP's numbering per
                # stream too is left as it was: unknown, unchecked after)
                held = HeldMessage(numbering, stream.stats, sequence, units or 0, flow_units or 0)
            if not per_datagram:  # the records the held sets hold are not known yet
                units = flow_units = None
            self._park_waiting(stream, datagram, held)
        if self._released:
            self._resolve_released(stream)
        if held is not None and not held.waiting:  # their templates came in this message
            units, flow_units, held = held.units, held.flow_units, None
        if self._undeclared:
            self._declare_late(stream)
        expected = numbering.expected
        if expected is None or sequence not in (expected, numbering.expected_flows):
            # one numbering over several ports (an exporter that sends from more than one):
            # a number another port's numbering expects continues that one, shared
            shared = self._shared_numbering(stream, numbering, sequence)
            if shared is not None:
                stream.numbering[self._transport] = self._numbering = numbering = shared
                expected = numbering.expected
                if held is not None:  # its count goes to the numbering it continues
                    held.numbering = numbering
        if numbering.numbered and units == 0 and sequence == numbering.last_sequence:
            # a message of no records (templates only) at the number last numbered: it came
            # before that one, or after it by the inclusive convention; either way it moves
            # no expectation (late, it set it back, and the next message read the records
            # of the one it shares its number with lost: a review)
            return
        if (
            expected is None
            and numbering.numbered
            and 0 < (numbering.last_sequence - sequence) & SEQUENCE_MASK <= REORDER_WINDOW
        ):
            if _renumbered_on_tcp(datagram, numbering, sequence):
                stream.stats.restarts += 1
                numbering.renumber()
            else:
                # behind a message whose count is not known (its data waited for a
                # template): a reorder, which leaves the numbering to that one; numbered
                # from it, the next message read that one's records lost (softflowd's first
                # two datagrams swapped read 39 lost: an audit); it takes back the gap it
                # falls in, as any late one
                numbering.came_late(stream.stats, sequence, units, held)
                numbering.behind_first(sequence, units, flow_units)
                return
        unknown = numbering.unknown
        if expected is None and unknown is not None and unknown.sequence == numbering.last_sequence:
            # after a message whose count is not known yet: checked when it is
            unknown.after = (sequence, units or 0, flow_units or 0, held)
        if expected is not None:
            last = numbering.last_sequence
            standard = sequence == expected or (
                numbering.expected_flows is not None and sequence == numbering.expected_flows
            )
            counted = inclusive and (
                (units is not None and sequence == (last + units) & SEQUENCE_MASK)
                or (flow_units is not None and sequence == (last + flow_units) & SEQUENCE_MASK)
            )
            if standard != counted and not datagram.session and units is not None:
                # (a message whose count waits for a template tells nothing)
                numbering.inclusive = (
                    min(numbering.inclusive + 1, INCLUSIVE_EVIDENCE) if counted else 0
                )
            fits = standard or counted
            lane = None
            if not fits and datagram.session:  # SCTP: each stream's own numbering too
                lane = numbering.lanes.get(datagram.lane)
                fits = lane is not None and sequence in lane
            # VPP's flowprobe numbers messages: last + 1 after a message of two records or
            # more says so (a record-counting exporter never sends it), and from then on
            # it is no gap; after a message of no records it could be one lost record, and
            # is counted as that until the stream shows it counts messages
            ambiguous = False
            if not fits and inclusive and sequence == (last + 1) & SEQUENCE_MASK:
                if numbering.counts_messages:
                    fits = True
                elif (expected - last) & SEQUENCE_MASK >= 2 and (
                    numbering.expected_flows is None
                    or (numbering.expected_flows - last) & SEQUENCE_MASK >= 2
                ):
                    numbering.counts_messages = fits = True
                    stream.stats.sequence_gaps -= numbering.ambiguous_gaps
                    stream.stats.sequence_lost -= numbering.ambiguous_gaps
                    numbering.ambiguous_gaps = 0
                else:
                    ambiguous = True
            first = sequence  # the number of the message's first unit, as RFC 7011 numbers
            if not fits and datagram.session:
                fits, difference = self._lane_fit(numbering, sequence, lane)
            elif (
                not fits
                and numbering.inclusive >= INCLUSIVE_EVIDENCE
                and not numbering.counts_messages
                and units is not None
            ):
                # numbered inclusive, its first unit is its number less its units, and the
                # last message's number the first expected: from the RFC's expectation (the
                # last number plus the last message's units), a message lost before a
                # smaller one read as a reorder, and a reorder as a loss (a live softflowd)
                first, difference = _inclusive_first(sequence, last, units, flow_units)
                expected = last
            else:
                difference = (sequence - expected) & SEQUENCE_MASK
            if (
                not fits
                and held is not None
                and units is None
                and numbering.inclusive
                and not numbering.counts_messages
                and not datagram.session
                and (sequence - last) & SEQUENCE_MASK < 1 << 31
            ):
                # its number may count its own records too, which wait for their
                # template: checked when they are known (HeldMessage.own)
                held.own = (last, expected, numbering.expected_flows)
                fits = True
            if not fits:
                stats = stream.stats
                if difference < 1 << 31:
                    stats.sequence_gaps += 1
                    stats.sequence_lost += difference
                    numbering.ambiguous_gaps += ambiguous
                    if not ambiguous:
                        numbering.lost(expected, difference)
                elif (
                    (1 << 32) - difference <= REORDER_WINDOW or self._behind
                ) and not _renumbered_on_tcp(datagram, numbering, sequence):
                    # behind: a late message, its units taken back from a gap they fall
                    # in; one of the same boot by its clocks however far (an 87,000-flow
                    # jump back and forth read as lost: a review)
                    numbering.came_late(stats, first, units, held)
                    numbering.behind_first(sequence, units, flow_units)
                    return
                else:
                    # behind past any reorder, and not late by the clocks: the exporter
                    # numbers afresh (restarted with no clock to say so, or its process did
                    # on a box whose sysUptime went on); it was so without a word
                    stats.restarts += 1
                    numbering.renumber()
        if (
            not numbering.numbered
            and inclusive
            and units
            and not datagram.session
            and sequence in (units, flow_units)
        ):
            # a stream's first message numbered as its own records: softflowd's start (the
            # RFC's numbering starts from 0 or anywhere); one piece of evidence
            numbering.inclusive = 1
        numbering.last_sequence = sequence
        numbering.numbered = True
        if numbering.first is None:
            numbering.first = (sequence, units, flow_units)
        if numbering.counts_messages and inclusive:
            units = flow_units = 1  # its numbers count messages: a lost one is a gap of one
        numbering.expected = None if units is None else (sequence + units) & SEQUENCE_MASK
        numbering.expected_flows = (
            None if flow_units is None else (sequence + flow_units) & SEQUENCE_MASK
        )
        numbering.unknown = held if units is None else None
        if datagram.session:
            # SCTP: RFC 7011 §3.1 numbers the records of each SCTP stream, libfixbuf (and
            # any v9 exporter) those of the whole session: a number that fits either is no
            # gap, nor is a stream's first (numbered per stream only, libfixbuf's templates
            # on stream 0 and data on stream 1 showed a loss at each template refresh)
            numbering.lanes[datagram.lane] = (numbering.expected, numbering.expected_flows)

    @staticmethod
    def _shared_numbering(
        stream: _Stream, numbering: _Numbering, sequence: int
    ) -> _Numbering | None:
        """Another transport session's numbering of the stream that expects `sequence`."""
        for other in stream.numbering.values():
            if (
                other is not numbering
                and other.expected is not None
                and sequence in (other.expected, other.expected_flows)
            ):
                return other
        return None

    # -- internals -----------------------------------------------------------------

    @staticmethod
    def _lane_fit(
        numbering: _Numbering, sequence: int, lane: tuple[int | None, int | None] | None
    ) -> tuple[bool, int]:
        """For an SCTP message whose number fits no expectation: whether it is its SCTP
        stream's first (its own count starts at or below the session's: a number ahead of
        the session's is a loss), and else how far ahead of the nearest expectation it is,
        the session's or its stream's (behind all of them: a reorder)."""
        expected = numbering.expected
        assert expected is not None
        if lane is None and (expected - sequence) & SEQUENCE_MASK < 1 << 31:
            return True, 0
        ahead = [
            (sequence - mark) & SEQUENCE_MASK
            for mark in (expected, numbering.expected_flows, *(lane or ()))
            if mark is not None
        ]
        return False, min((d for d in ahead if d < 1 << 31), default=ahead[0])

    def _park_waiting(self, stream: _Stream, datagram: Datagram, held: HeldMessage | None) -> None:
        """Hold the data sets of this datagram that came before their template, or decode
        them when a later set of the same datagram brought it (Cisco IOS XE sends a data
        set before its template: its records were lost as `no_template`, the template
        "never arrived")."""
        self._parking = True
        try:
            self._park_sets(stream, datagram, held)
        finally:
            self._parking = False

    def _park_sets(self, stream: _Stream, datagram: Datagram, held: HeldMessage | None) -> None:
        overflow = 0
        if (datagram.source, datagram.offset) != self._held_frame:  # counted per frame
            self._held_frame, self._held_sets = (datagram.source, datagram.offset), 0
        templates = [self.template(key[3]) for key, *_ in self._waiting]
        # options records whose template came later in the message first: what they declare
        # is declared by the message's end, for the sets below that came before it
        for (_, body, _, _), template in zip(self._waiting, templates, strict=True):
            if template is not None and template.options:
                records = self._apply_options(template, body, 0, len(body), stream)
                if held is not None:
                    held.units += records
        for k, (key, body, (sysinit_ms, rate, samplers), arrived) in enumerate(self._waiting):
            template = templates[k]
            if template is not None and template.options:
                continue
            if sysinit_ms < 0:  # declared by the message's end, as _declare_late has it
                sysinit_ms = stream.sysinit_ms
            if not rate:
                rate = stream.sampling_rate if stream.sampling_declared else 0
                samplers = stream.samplers
            item = PendingSet(
                body=body,
                source=datagram.source,
                frame=datagram.frame,
                datagram_offset=datagram.offset,
                arrival_us=datagram.arrival_us,
                export_us=self._row[_EXPORT],
                uptime_ms=self._row[_UPTIME],
                sysinit_ms=sysinit_ms,
                sampling_rate=rate,
                samplers=samplers,
                exporter=datagram.exporter,
                domain=stream.stats.domain,
                first_index=self._ordinal + (self._held_sets + k + 1) * PENDING_INDEX_STRIDE,
                held=held,
                arrived=self._arrivals + k,
            )
            if held is not None:
                held.waiting += 1  # for good if it overflows: then never known
            if template is not None:  # a later set of this message brought it: read where it came
                self._released.append((template, item, stream.code, arrived))
                continue
            if not self.pending.add(key, item):
                overflow += 1
                stream.stats.records_without_template += 1
                stream.stats.missing_templates[key[3]] += 1
                self.report.skip(
                    UnknownTemplate(
                        f"data set for template {key[3]} dropped: {self.pending.limit_bytes} "
                        "bytes already wait for templates",
                        source=datagram.source,
                        offset=datagram.offset,
                        frame=datagram.frame,
                        reason="pending_overflow",
                    ),
                    len(body),
                )
        self._held_sets += len(self._waiting)
        self._arrivals += len(self._waiting)
        self._waiting = []

    def _declare_late(self, stream: _Stream) -> None:
        """Records queued before their exporter declared a sampling rate or its boot time
        take what the rest of their datagram declares (options sent after the data in one
        datagram, or beside the template), as the held records it releases do."""
        undeclared, self._undeclared = self._undeclared, []
        if not stream.sampling_declared and stream.sysinit_ms < 0:
            return  # still nothing declared: the rows stand (most exporters never sample)
        if stream.sampling_declared:  # not read unsampled after all
            stream.undeclared_records -= sum(entry[3] for entry in undeclared)
        for sets, index, sampling, _ in undeclared:
            row = sets[index]
            sets[index] = (*row[:-3], *stream.declared_since(*row[-3:], sampling=sampling))

    def _resolve_released(self, stream: _Stream) -> None:
        """Queue the held data sets this datagram's templates released. Sampling declared
        by then stands for sets held before their exporter declared any (the options a
        router sends beside its templates: held records read 1-in-1 where they were
        1-in-10); their times stay their own datagram's. Decided at the end of the
        template's datagram, so whatever the batch size. Each goes before the record_index
        it was given: a set of an earlier message before this message's records, one of
        this message where it came (before: [a, b, b's template, c] read b, a, c)."""
        datagram = self._datagram
        assert datagram is not None
        resolved: list[tuple[Template, PendingSet, int]] = []
        place = -1
        for template, item, code, before in self._released:
            if before != place and resolved:
                self._resolved.append((datagram.frame, place, resolved))
                resolved = []
            place = before
            if item.held is not None:
                records = _set_records(template, item.body)
                item.held.read(records, records)
            # the boot time and rate known by then, not at the batch's end
            sysinit, rate, samplers = stream.declared_since(
                item.sysinit_ms, item.sampling_rate, item.samplers, sampling=not item.sampling_rate
            )
            undeclared = not item.sampling_rate and not stream.sampling_declared
            resolved.append(
                (
                    template,
                    item._replace(
                        sysinit_ms=sysinit,
                        sampling_rate=rate,
                        samplers=samplers,
                        undeclared=undeclared,
                    ),
                    code,
                )
            )
        self._released = []
        if resolved:
            self._resolved.append((datagram.frame, place, resolved))

    def _apply_options(
        self,
        template: Template,
        buf: bytes,
        at: int,
        end: int,
        stream: _Stream,
        place: _Place | None = None,
    ) -> int:
        records = 0
        if template.fixed_length == 0:
            # every field of length 0: a record takes no bytes, so the set would hold
            # records without end (as fixed_set_records says of data sets)
            if end > at:
                self._malformed(
                    f"options template {template.template_id} gives its records "
                    f"no length; {end - at} bytes unread",
                    end - at,
                    "bad_record",
                    place,
                )
            return 0
        if template.fixed_length is not None:
            whole, problem, left_out = misfit(template, buf, at, end)
            if left_out:
                # a damaged set id can point a data or another options set here, and its
                # bytes read as a sampling rate would scale every record after it: none of
                # it is applied, as a data set's records are left out
                assert problem is not None
                self.leftover(
                    f"options data set {template.template_id}: {problem.text}", problem, place
                )
                return whole  # what an IPFIX message's sequence number counts
        minimum = max(template.min_length, 1)
        body = at
        while end - at >= minimum:
            try:
                spans, at = template.field_spans(buf, at, end)
            except ValueError as exc:
                self._malformed(f"options record: {exc}", end - at, "bad_record", place)
                break
            self._use_options(
                template.values(buf, spans), stream, place, template.sampler_scope(buf, spans)
            )
            records += 1
        else:
            problem = padding_problem(buf, body, at, end, records)
            if problem is not None:
                self.leftover(
                    f"options data set {template.template_id}: {problem.text}", problem, place
                )
        stream.stats.options_records += records
        return records

    def _use_options(
        self,
        values: dict[Element, int],
        stream: _Stream,
        place: _Place | None = None,
        scope: SamplerKey | None = None,
    ) -> None:
        rate = _options_rate(values)
        if rate > 0xFFFFFFFF:  # an interval field wider than its 32 bits: damage
            self._malformed(
                f"options record: sampling rate {rate} does not fit 32 bits",
                0,
                "bad_sampler_record",
                place,
            )
        elif rate:
            # the exporter's rate for records that name no sampler (last declared wins) ...
            stream.sampling_rate = rate
            stream.sampling_declared = True
            stream.stats.sampling_rate = rate
            stream.first_rate = stream.first_rate or rate
            # ... and the rate of the sampler or interface the record is scoped to
            if scope is not None and self.samplers[stream.samplers].get(scope) != rate:
                self.samplers.append({**self.samplers[stream.samplers], scope: rate})
                stream.samplers = len(self.samplers) - 1
        sysinit = values.get(SYSTEM_INIT_MILLISECONDS)
        if sysinit is not None and sysinit > TIME_LIMIT_MS:
            # past the times the readers keep, as a record's own is (RecordPlan._time): kept,
            # the uptime lap moved its records to plausible times; past int64 µs every
            # record timed from it would overflow
            past = (
                "the int64 µs range"
                if sysinit >= 2**63 // 1000
                else f"the times the readers keep ({TIME_LIMIT_MS} ms)"
            )
            self._malformed(
                f"options record: systemInitTimeMilliseconds {sysinit} is past {past}",
                0,
                "bad_timestamp",
                place,
            )
        elif sysinit is not None:
            stream.sysinit_ms = sysinit

    def _malformed(
        self, message: str, nbytes: int, reason: str, place: _Place | None = None
    ) -> None:
        """Count a problem of the datagram being decoded, or of the one at `place` (source,
        datagram offset, frame): data that waited for its template."""
        if place is None:
            datagram = self._datagram
            assert datagram is not None
            place = (datagram.source, datagram.offset, datagram.frame)
        source, offset, frame = place
        self.skip(
            MalformedInput(message, source=source, offset=offset, frame=frame, reason=reason),
            nbytes,
        )

    def _decode_resolved(
        self, resolved: list[tuple[Template, PendingSet, int]]
    ) -> list[pa.RecordBatch]:
        """Decode data that waited for a template, one batch per source file, the files
        in the order their sets arrived (in the order their templates came, a message that
        released held sets of two files gave the later file's first).

        Their NSEL teardowns are not settled (nsel.py) and their updates not remembered:
        they are decoded where their template arrived, not where they did, and what the
        ledger saw before them would depend on where the batches end."""
        if not resolved:
            return []
        chunks: dict[str, _Chunk] = {}
        # in the order they arrived (a template's sets are taken port by port), so the files'
        # chunks too are made in that order
        for template, item, code in sorted(resolved, key=lambda entry: entry[1].arrived):
            chunk = chunks.get(item.source)
            if chunk is None:
                chunk = chunks[item.source] = _Chunk(item.source)
            stream = self._stream_list[code]
            row = (
                item.frame,
                item.datagram_offset,
                item.arrival_us,
                item.export_us,
                item.uptime_ms,
                chunk.exporter_code(item.exporter),
                item.domain,
                code,
            )
            records = self._late_records(template, item, chunk, row, stream.stats)
            stream.stats.records += records
            if item.undeclared and not template.rates_itself:
                # held past their template's datagram with no rate declared by its end
                stream.undeclared_records += records
        batches = []
        for chunk in chunks.values():
            batch, _ = chunk.decode(self._stream_list, self.samplers, None, self.report)
            if batch is not None:
                batches.append(batch)
        return batches

    def _late_records(
        self,
        template: Template,
        item: PendingSet,
        chunk: _Chunk,
        row: tuple[int, ...],
        stats: ExporterStats,
    ) -> int:
        sysinit_ms = item.sysinit_ms
        body = item.body
        if not template.plan.carries_flows:  # as data_set says of them
            _, problem = self._not_flows(template, body, 0, len(body), item.source)
            if problem is not None:
                self._late_problem(template, item, problem, stats)
            return 0
        if template.fixed_length is not None:
            records, problem, left_out = misfit(template, body, 0, len(body))
            if problem is not None:
                self._late_problem(template, item, problem, stats)
            if left_out:
                return 0
            if records:
                base = chunk.add_payload(body)
                chunk.add(
                    template,
                    (
                        *row,
                        base,
                        records,
                        item.first_index,
                        sysinit_ms,
                        item.sampling_rate,
                        item.samplers,
                    ),
                )
            return records
        parts, records, problem = variable_records(template, body, 0, len(body))
        if problem is not None:
            self._late_problem(template, item, problem, stats)
        if records:
            chunk.add(
                template,
                (
                    *row,
                    len(chunk.extra),
                    records,
                    item.first_index,
                    sysinit_ms,
                    item.sampling_rate,
                    item.samplers,
                ),
                variable=True,
            )
            chunk.extra += parts
        return records

    def _late_problem(
        self, template: Template, item: PendingSet, problem: Leftover, stats: ExporterStats
    ) -> None:
        """A problem of a data set that waited for its template, told with the datagram that
        brought it and counted on its own stream's undecodable_sets (not on whatever stream
        is being decoded now: a helper's audit found it counted on none, where the same set
        after its template counts one)."""
        message = f"data set {template.template_id}: {problem.text}"
        if not self._padding(message, problem, (item.source, item.datagram_offset, item.frame)):
            stats.undecodable_sets += 1
            self.report.skip(
                MalformedInput(
                    message,
                    source=item.source,
                    offset=item.datagram_offset,
                    frame=item.frame,
                    reason="bad_record",
                ),
                problem.nbytes,
            )

    def _see_exports(self, chunk: _Chunk) -> None:
        """First/last export time and clock offset per stream, from whole arrays."""
        if not chunk.seen:
            return
        seen = np.array(chunk.seen, dtype=np.int64)
        # export time 0, as exporters without a clock send, says nothing: it made the
        # first export 1970 and the clock offset -1.7e9 s (an audit)
        seen = seen[seen[:, 1] != 0]
        for code in np.unique(seen[:, 0]):
            rows = seen[seen[:, 0] == code]
            stats = self._stream_list[int(code)].stats
            offsets = rows[:, 1] - rows[:, 2]
            for index in {
                int(np.argmin(rows[:, 1])),
                int(np.argmax(rows[:, 1])),
                int(np.argmin(offsets)),
                int(np.argmax(offsets)),
            }:
                stats.see_export(int(rows[index, 1]), int(rows[index, 2]))


def _options_rate(values: dict[Element, int]) -> int:
    """1-in-N an options record declares, 0 when none. Its selectorAlgorithm, when sent,
    says which parameters are meant: a random n-out-of-N sampler's samplingPacketInterval
    of 1 (Cisco IOS-XR sends it beside samplingSize 1 of samplingPopulation 256) does not
    make it unsampled; a time-based sampler or a filter has no packet rate."""
    for element in SAMPLING_INTERVAL_ELEMENTS:
        if rate := values.get(element, 0):
            return rate
    algorithm = values.get(SELECTOR_ALGORITHM)
    if algorithm in (SELECTOR_N_OUT_OF_N, SELECTOR_PROBABILISTIC):
        return _psamp_rate(values)
    if algorithm not in (None, SELECTOR_COUNT_BASED):
        return 0
    if taken := values.get(SAMPLING_PACKET_INTERVAL, 0):
        return (taken + values.get(SAMPLING_PACKET_SPACE, 0)) // taken
    return _psamp_rate(values)


def _psamp_rate(values: dict[Element, int]) -> int:
    """1-in-N of a PSAMP random sampler (RFC 5476): n-out-of-N (309/310), or a probability
    (311, an IEEE float64 held as its 8 bytes); 0 when neither is there or makes sense."""
    size = values.get(SAMPLING_SIZE, 0)
    if size:
        return values.get(SAMPLING_POPULATION, 0) // size
    bits = values.get(SAMPLING_PROBABILITY)
    if bits is None:
        return 0
    # float64, or float32 in reduced-size encoding (RFC 7011 §6.2): a float64 in (0, 1]
    # has its exponent in the top bytes, so a value below 2**32 is the 4-byte form
    (probability,) = (
        struct.unpack(">f", bits.to_bytes(4, "big"))
        if bits < 1 << 32
        else struct.unpack(">d", bits.to_bytes(8, "big"))
    )
    # a subnormal probability has no 1-in-N (found by fuzzing: 1 / p overflowed)
    return round(1 / probability) if 2.0**-32 <= probability <= 1 else 0


def _both_directions(
    columns: dict[str, np.ndarray], forward: str, reverse: str
) -> np.ndarray | None:
    values = columns.get(forward)
    back = columns.get(reverse)
    if values is None:
        return back
    if back is None:
        return values
    return values.astype(np.uint64) + back.astype(np.uint64)


class ExportSets(NamedTuple):
    """What a v9/IPFIX message holds, its templates defined as the decoders define them,
    its data sets by id and place, no record decoded: what an export of some of a run's
    datagrams needs beside them to decode again (the datagrams that defined their
    templates, and the options data in force; recombine/context.py)."""

    version: int  # 9 or 10
    domain: int  # v9 source ID / IPFIX observation domain
    # each template and options template the decoder defines from it (those it refuses
    # define nothing): the same layout sent again (Template.same_layout) is a refresh, and
    # an options template's records change what options_effects says
    definitions: tuple[Template, ...]
    sets: tuple[tuple[int, int, int], ...]  # each data set: (id, body start, end)
    sequence: int  # the header's sequence number (duplicates are told by it)
    span: tuple[int, int]  # where the message lies in its datagram
    # where the set of each definition begins, to walk them among the data sets in the
    # message's order (in_order), as the decoder does
    defined_at: tuple[int, ...]

    def in_order(self) -> Iterator[Template | tuple[int, int, int]]:
        """Its definitions and data sets in the message's order, as the decoder walks them: a
        data set before a definition of its id in the same message was read with the one in
        force before the message, or held to the message's end."""
        definitions = iter(zip(self.defined_at, self.definitions, strict=True))
        definition = next(definitions, None)
        for data in self.sets:
            while definition is not None and definition[0] < data[1]:
                yield definition[1]
                definition = next(definitions, None)
            yield data
        while definition is not None:
            yield definition[1]
            definition = next(definitions, None)

    @property
    def templates(self) -> frozenset[int]:
        """The ids of the (flow) templates it defines."""
        return frozenset(t.template_id for t in self.definitions if not t.options)

    @property
    def options(self) -> frozenset[int]:
        """The ids of the options templates it defines."""
        return frozenset(t.template_id for t in self.definitions if t.options)

    @property
    def data(self) -> frozenset[int]:
        """The ids of its data sets."""
        return frozenset(set_id for set_id, _, _ in self.sets)


class _Definitions:
    """What the decoders' template walkers (netflow_v9.read_templates and
    read_options_templates, ipfix.read_templates) need of an ExportDecoder, keeping only the
    templates they define: export_sets reads a message's templates by the decoders' own
    rules."""

    def __init__(self) -> None:
        self.templates: list[Template] = []

    def define_template(self, template: Template) -> None:
        self.templates.append(template)

    def skip(self, error: InputError, nbytes: int = 0) -> None:
        """A template record the decoder refuses defines nothing."""

    def withdraw(self) -> None:
        """Withdrawals are ignored over UDP, as by the decoder."""

    def leftover(self, message: str, problem: Leftover) -> None:
        """What follows a template set's last record is counted by the decoder."""


_NO_DATAGRAM = Datagram(b"", "", 0, 0, 0, 0, 0, "")  # for the walkers' problems, dropped


def options_effects(
    template: Template, buf: bytes, at: int, end: int
) -> dict[tuple[object, ...], int]:
    """What the records of an options data set change in their exporter's state, as
    _use_options does, and to what: ("rate",) its rate, ("scope", key) a sampler's or an
    interface's, ("sysinit",) its boot time (the last record's value of each). An export of
    records read after them needs the datagram that last changed each (recombine/context.py);
    records that change nothing are not needed."""
    effects: dict[tuple[object, ...], int] = {}
    if template.fixed_length == 0:
        return effects
    if template.fixed_length is not None and misfit(template, buf, at, end)[2]:
        return effects  # left out whole, as _apply_options leaves it
    minimum = max(template.min_length, 1)
    while end - at >= minimum:
        try:
            spans, at = template.field_spans(buf, at, end)
        except ValueError:
            break
        values = template.values(buf, spans)
        rate = _options_rate(values)
        if 0 < rate <= 0xFFFFFFFF:
            effects["rate",] = rate
            scope = template.sampler_scope(buf, spans)
            if scope is not None:
                effects["scope", scope] = rate
        sysinit = values.get(SYSTEM_INIT_MILLISECONDS)
        if sysinit is not None and sysinit <= TIME_LIMIT_MS:
            effects["sysinit",] = sysinit
    return effects


def export_messages(payload: bytes) -> list[ExportSets]:
    """ExportSets of each message of a v9/IPFIX datagram (IPFIX over UDP may carry several,
    each with its own length and domain, as ipfix.decode_datagram walks them)."""
    first = export_sets(payload)
    if first is None or first.version != 10:
        return [] if first is None else [first]
    out = [first]
    at = first.span[1]
    while len(payload) - at >= 16 and payload[at : at + 2] == b"\x00\x0a":
        length = int.from_bytes(payload[at + 2 : at + 4], "big")
        if length < 16:
            break
        out.append(_message_sets(payload, at, min(at + length, len(payload)), 10))
        at += length
    return out


def export_sets(payload: bytes) -> ExportSets | None:
    """What a v9/IPFIX message's sets hold (ExportSets), else None: the datagram's first
    message (export_messages gives each). Sets are walked by their lengths; a set length
    under 4 ends the walk: the zeros a datagram is padded with (Palo Alto) read as v9's
    template FlowSet id 0 and are no template."""
    version = export_version(payload, first_set=False)
    if version not in (9, 10):
        return None
    end = len(payload)
    if version == 10:
        end = min(end, max(16, int.from_bytes(payload[2:4], "big")))
    return _message_sets(payload, 0, end, version)


def _message_sets(payload: bytes, begin: int, end: int, version: int) -> ExportSets:
    at = begin + (20 if version == 9 else 16)
    domain = struct.unpack_from(">I", payload, begin + (16 if version == 9 else 12))[0]
    sequence = struct.unpack_from(">I", payload, begin + (12 if version == 9 else 8))[0]
    defined = _Definitions()
    sets: list[tuple[int, int, int]] = []
    defined_at: list[int] = []
    while at + 4 <= end:
        set_id, length = struct.unpack_from(">HH", payload, at)
        if length < 4 or at + length > end:
            break  # (as the decoders stop: padding, a bad length, a set cut short)
        if set_id >= 256:
            sets.append((set_id, at + 4, at + length))
        elif version == 9 and set_id == netflow_v9.TEMPLATE_SET:
            netflow_v9.read_templates(defined, _NO_DATAGRAM, payload, at + 4, at + length)
        elif version == 9 and set_id == netflow_v9.OPTIONS_TEMPLATE_SET:
            netflow_v9.read_options_templates(defined, _NO_DATAGRAM, payload, at + 4, at + length)
        elif version == 10 and set_id in (ipfix.TEMPLATE_SET, ipfix.OPTIONS_TEMPLATE_SET):
            ipfix.read_templates(
                defined,
                _NO_DATAGRAM,
                payload,
                at + 4,
                at + length,
                options=set_id == ipfix.OPTIONS_TEMPLATE_SET,
            )
        defined_at += [at] * (len(defined.templates) - len(defined_at))
        at += length
    return ExportSets(
        version,
        domain,
        tuple(defined.templates),
        tuple(sets),
        sequence,
        (begin, end),
        tuple(defined_at),
    )


def template_ids_in(payload: bytes) -> set[int]:
    """The template ids a v9/IPFIX message's template and options-template sets define
    (withdrawals included): whether a template a data set needs comes in its own message."""
    version = export_version(payload, first_set=False)
    if version not in (9, 10):
        return set()
    at, kinds = (20, (0, 1)) if version == 9 else (16, (2, 3))
    found: set[int] = set()
    end = len(payload)
    while at + 4 <= end:
        set_id, length = struct.unpack_from(">HH", payload, at)
        if length < 4:
            break
        if set_id in kinds:
            record, stop = at + 4, min(at + length, end)
            while record + 4 <= stop:
                template_id, count = struct.unpack_from(">HH", payload, record)
                if template_id < 256:
                    break  # padding
                found.add(template_id)
                record = _template_record_end(
                    payload,
                    record,
                    stop,
                    count,
                    v9_options=version == 9 and set_id == 1,
                    options=set_id == kinds[1],
                    ipfix=version == 10,
                )
        at += length
    return found


def _template_record_end(
    payload: bytes,
    record: int,
    stop: int,
    count: int,
    *,
    v9_options: bool,
    options: bool,
    ipfix: bool,
) -> int:
    """Where the template record at `record` ends: a v9 options template gives its scope
    and option lengths in bytes; others count field specifiers of 4 bytes, in IPFIX 8 with
    an enterprise number (an IPFIX options template has a scope count besides). v9 has no
    enterprise bit: Cisco's NSEL fields (33000 and up) have the high bit set and are 4
    bytes (read as 8, an ASA's templates after its first were lost)."""
    if v9_options:
        if record + 6 > stop:
            return stop
        return record + 6 + count + int.from_bytes(payload[record + 4 : record + 6], "big")
    record += 6 if options and count else 4
    if not ipfix:
        return min(record + 4 * count, stop)
    for _ in range(count):
        if record + 4 > stop:
            return stop
        record += 8 if payload[record] & 0x80 else 4
    return record
