"""The sessions.md rules in plain Python, one record at a time: slow, obvious, the tests' oracle.

One ReferenceReplay replays the records of one exporter. Open sessions live in a dict by
key; after every record it scans *all* of them for passed deadlines and, when the cap is
hit, looks for the eviction victim with `min()` — no heaps, no hash chains, no lazy
deadlines, nothing clever that could hide a bug the numba kernel (kernel.py) might share.
Both hand the same session rows (row.py) to output.py, so the hypothesis tests compare
them table for table.

The rules, in the order they are applied to a record r of key k (W = the exporter's
watermark before r, max(last_seen) - grace; max(first_seen) - grace under event replay, rule 5):

1. r is late when r.last_seen < W.
2. If k has an open session s:
   a. r.first_seen > s.last_seen + idle(s): s closes at its own deadline, r opens a new session;
   b. r.first_seen >= s.opened_at + hard_timeout: s closes at its deadline (a `hard_timeout`
      fragment), r opens the next fragment;
   b'. s is a finished TCP connection (FIN both ways, or a RST) and r starts after its
      last_seen with a SYN: a new connection on the 5-tuple; s closes at its deadline (as
      the watermark passing its last_seen would close it), r opens a new session (a refused
      attempt and its retry on one port used to come out as one `rst` session);
   c. r starts before s and cannot join it without an internal gap longer than idle, or without
      making s span more than hard_timeout (r.last_seen + idle < s.opened_at, or
      r.first_seen + hard_timeout <= latest first_seen of s): r is a *stray* — a session of
      its own, closed at once (late if r is late);
   d. otherwise r joins s (late records count in `late_records`).
3. A session opened by a late record is `late` and follows the last closed session of its key
   if r reaches it (r's last_seen at or after that one's opening: it falls into it or
   follows it); starting within that one's idle timeout, it
   goes on with that conversation as a fragment does (below: orientation, server side,
   directions seen, FINs, and what tells a refusal or a reset), so the server's half of
   a conversation arriving late does not come out reversed, or as a one-way attempt, beside
   the session it names in follows_session_id; not when that one is a finished connection
   (FIN both ways, or a RST) and r starts after its last_seen with a SYN: a new
   connection on the 5-tuple, as in 2b' (it inherited the FINs, and a bare late SYN closed
   `fin`). Nor is such a record the next fragment of a finished connection cut by
   `hard_timeout` or evicted (_reopens). A late session (a late stray too) does not
   replace a remembered session that is not late: it is out of the conversation's order, and
   remembered it hid the session a later record continues (the next fragment of a
   `hard_timeout` session, split + 1); when it went on with that session's conversation,
   what it saw that tells a refusal is added to it, for the late sessions after it. With
   nothing else remembered it is, so that the late records of one conversation (two
   directions arriving late) follow one another. A non-late
   record that starts within the idle timeout of a `hard_timeout`/`evicted` session's
   last_seen continues it as the next fragment, which inherits its orientation and server
   side and the directions the conversation has seen: a fragment that sees one direction
   after the cut (the other direction's records fell in the fragments before, or A->B
   before the cut and B->A after it) is no one-way attempt, neither `no_reply` nor
   `half_open`.
4. Opening a session when the exporter already has the cap open first sweeps (5) at the
   watermark r brings, then, if the cap is still full, evicts the open session with the oldest
   last_seen (ties: smallest key), closed at the exporter's newest last_seen (also under
   event replay, whose W follows first_seen: rule 5): a session whose
   deadline that watermark passes closes by its deadline, not as session pressure. Nor
   is there a victim when that watermark passes the new session's own deadline (a late
   record whose last_seen + idle is behind it, or a record starting hard_timeout before
   it): it closes in the sweep after r, and the cap, exceeded for that instant, holds
   between records (peak_open never counts beyond it).
5. After r, W moves to max(last_seen) - grace (under `--replay event`, max(first_seen) -
   grace: records come sorted by first_seen, so a session can close once the records reach
   past its deadline; on last_seen, every short flow after a long one was late and a
   conversation fell apart into one-way late sessions) and every open session whose
   deadline is < W closes at its deadline; remembered closed sessions expire at
   last_seen + idle + grace, a `hard_timeout` fragment later by the longest record
   (last_seen - first_seen) the exporter has sent so far, at most an hour: the record that
   continues it starts within idle of its last_seen but arrives at its own end, which an
   active timeout of minutes puts far behind. A late session is remembered instead for the
   next R.LATE_MEMORY_RECORDS records of its exporter, whatever the clocks say: one opened
   by a record late by more than idle + grace closes in the sweep after its record, and,
   forgotten there at once, the other direction of its conversation, arriving next,
   followed nothing and came out a one-way attempt, oriented afresh (live softflowd exports
   each UDP exchange 300 s after its last packet, both directions together, while other
   traffic keeps W current). No clock bounds that memory: W stands still while an
   exporter flushes a capture's flows at its end (late, in no time order; the watermarks
   added up kept 1.1 M late sessions of the 5.2 M-record benchmark at once, 250 MB), and
   the late records' own clock stands still when their times do (a review).
6. `dup` (part of session_id): one more than the dup of the key's last closed session at
   this session's close, or at its opening, whichever has the very same (opened_at, split,
   late) as this one (the larger if both); else 0. A long record that reaches back to the
   start of a closed session stays open long after that session is forgotten. A session is
   *deep* when one of its records starts before W - (smallest idle) - grace (W as the record
   arrives): only a deep session can share (opened_at, split, late) with a session of its key
   that is forgotten, since a forgotten one's last_seen lies that far behind. The key's last
   closed session also stops being remembered when another closes (a stray, a late session),
   which late sessions and strays meet all the time: the same late flow from two observation
   domains around a session of its key. So a deep, late or stray session's dup is its opening
   record's identity (where its bytes are: file, offset, place), bit 62 set; every other dup
   stays small.

A session's deadline is the earlier of opened_at + hard_timeout (reason `hard_timeout`, which
also wins a tie) and last_seen + idle (last_seen alone once TCP finished: FIN both ways or any
RST), the reason then following the state (fin, rst, rejected, idle, no_reply).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..counters import COUNTER_CEILING
from ..protocols import PORT_PROTOCOLS
from . import row as R
from .inference import icmp_evidence, infer_server
from .keys import Records
from .policy import SessionPolicy

COUNTER_MAX = int(COUNTER_CEILING)  # where a session's sum of damaged counters stops

# proto, lo_hi, lo_lo, lo_port, hi_hi, hi_lo, hi_port
Key = tuple[int, int, int, int, int, int, int]
Endpoint = tuple[int, int, int, int]  # proto, addr_hi, addr_lo, port


@dataclass
class RefSession:
    key: Key
    serial: int
    opened: int = R.NO_TIME
    last: int = R.TIME_MIN
    max_first: int = R.TIME_MIN
    orient_fs: int = R.NO_TIME
    orient_dir: int = 2
    first_dst_port: int = 0
    domain: int = 0
    octets: list[int] = field(default_factory=lambda: [0, 0])
    packets: list[int] = field(default_factory=lambda: [0, 0])
    flags: list[int] = field(default_factory=lambda: [0, 0])
    seen: int = 0
    syn_first_seen: list[int] = field(default_factory=lambda: [R.NO_TIME, R.NO_TIME])
    pure_syn: int = 0
    inherited_fins: int = 0  # bit d: a fragment before it saw FIN from endpoint d
    inherited_refusals: int = 0  # what fragments before it saw of each endpoint (refusals)
    added_refusals: int = 0  # closed: what late sessions going on with it saw (_close)
    echo_request: int = 0
    icmp_answers: int = 0  # bit d: echo replies, bit 2 + d: error messages
    declared: int = 0
    flows: int = 0
    late_records: int = 0
    sampling: int = 0
    scaled: int = 0
    late: int = 0
    split: int = 0
    dup: int = 0
    root: tuple[int, int, int] | None = None  # (opened, late, dup) of fragment 0
    follows: tuple[int, int, int, int] | None = None  # (opened, split, late, dup)
    open_prev: tuple[int, int, int, int] | None = None  # the key's prev when this opened, same
    identity: int = 0  # the opening record's (keys.record_identities)
    deep: int = 0  # some record started before W - min idle - grace (rule 6)
    inherited: tuple[int, int, int, int] | None = None  # orient, server, method, confidence
    # set when the session leaves
    closed_at: int | None = None
    reason: int = R.REASON_OPEN
    emit: int = 0
    peaks: tuple[int, int] = (0, 0)
    idle_at_close: int = 0
    expiry: int = 0

    @property
    def protocol(self) -> int:
        return self.key[0]

    def fins(self) -> int:
        """Bit d: FIN seen from endpoint d in the conversation, here or in a fragment before
        (a connection whose FINs fall on both sides of a cut finishes in its last one)."""
        return (
            bool(self.flags[0] & R.TCP_FIN)
            | bool(self.flags[1] & R.TCP_FIN) << 1
            | self.inherited_fins
        )

    def refusals(self) -> int:
        """Endpoint d's refusal bits (refusal_of) at 3d: what the conversation has seen of
        it, here or in a fragment before, that tells a refused opening."""
        return (
            refusal_of(self.flags[0])
            | refusal_of(self.flags[1]) << R.REFUSAL_BITS
            | self.inherited_refusals
            | self.added_refusals
        )

    def finished(self) -> bool:
        if self.protocol != 6:
            return False
        both = self.flags[0] | self.flags[1]
        return bool(both & R.TCP_RST) or self.fins() == 3

    def inherited_rst(self) -> bool:
        """A fragment before it in the conversation saw a RST: it goes on with a reset
        connection, as one session of both would be."""
        return bool(self.inherited_refusals & R.REFUSAL_RST_EITHER)

    def half_open(self) -> bool:
        if self.protocol != 6 or self.seen not in (1, 2):
            return False
        sent = self.flags[0 if self.seen == 1 else 1]
        return bool(sent & R.TCP_SYN) and not sent & R.TCP_ACK

    def idle(self, policy: SessionPolicy) -> int:
        if self.protocol == 6:
            return (
                policy.idle_tcp_half_open_us if self.half_open() else policy.idle_tcp_established_us
            )
        if self.protocol in (17, 136):
            return policy.idle_udp_us
        if self.protocol in (1, 58):
            return policy.idle_icmp_us
        return policy.idle_other_us

    def state_reason(self) -> int:
        """Why this session ends if its idle/finish deadline (not hard_timeout) ends it."""
        if self.protocol == 6:
            if (self.flags[0] | self.flags[1]) & R.TCP_RST or self.inherited_rst():
                # the conversation's flags: the SYN can be a fragment's before, the bare
                # RST answering it this one's (a late session following it, the next
                # fragment after the open-session cap): a refusal all the same (a review)
                refusals = self.refusals()
                conversation = [
                    refusal_flags(refusals & 7),
                    refusal_flags(refusals >> R.REFUSAL_BITS),
                ]
                for opener in (0, 1):
                    opening, answer = conversation[opener], conversation[1 - opener]
                    # "the only answer to a TCP opening was RST": a SYN (no data or FIN
                    # from its side), answered by RST without SYN or data (cumulative
                    # flags of a connection whose SYN-ACK went unseen hold PSH: a RST
                    # after that exchange is rst)
                    if (
                        opening & R.TCP_SYN
                        and not opening & R.OPENING_ONLY
                        and answer & R.TCP_RST
                        and not answer & R.REFUSAL_ONLY
                    ):
                        return R.REASON_REJECTED
                # rst is "RST seen after an established exchange"; one direction only (a
                # scanner's own RST, backscatter) is a one-way attempt: no_reply, unless
                # that direction pushed data under ACK (answered on the path not seen: an
                # established connection reset, seen one way)
                pushed = (self.flags[0] | self.flags[1]) & R.TCP_ACK and (
                    self.flags[0] | self.flags[1]
                ) & R.TCP_PSH
                return R.REASON_RST if self.seen == 3 or pushed else R.REASON_NO_REPLY
            if self.fins() == 3:
                return R.REASON_FIN
            both = self.flags[0] | self.flags[1]
            if both & R.TCP_ACK and (not both & R.TCP_SYN or both & R.TCP_PSH):
                # ACK without any SYN: the middle of an established connection, of which the
                # exporter saw one direction (asymmetric routing) or the start fell before
                # the capture; no attempt, so not no_reply ("for TCP, a half-open attempt"),
                # as Zeek's OTH is no S0. So is a SYN beside ACK and PSH: the opening was
                # answered, on the path not seen, and data pushed (a 1.37 MB DCC transfer
                # seen one way sat among the seed's "Likely TCP scans": a review). Flags 0
                # (an exporter that sends none) tell nothing and stay no_reply; so do SYN,
                # FIN-only or NULL probes, and a SYN-ACK or a connect() scan's SYN, ACK
                # without data (backscatter, an answered probe)
                return R.REASON_IDLE
        return R.REASON_IDLE if self.seen == 3 else R.REASON_NO_REPLY

    def deadline(self, policy: SessionPolicy) -> tuple[int, int]:
        """(time, reason) at which the watermark passing it closes this session."""
        natural = self.last if self.finished() else self.last + self.idle(policy)
        hard = self.opened + policy.hard_timeout_us
        if hard <= natural:
            return hard, R.REASON_HARD_TIMEOUT
        return natural, self.state_reason()

    def endpoints(self) -> tuple[Endpoint, Endpoint]:
        proto, lo_hi, lo_lo, lo_port, hi_hi, hi_lo, hi_port = self.key
        return (proto, lo_hi, lo_lo, lo_port), (proto, hi_hi, hi_lo, hi_port)


def canonical(records: Records, i: int) -> tuple[Key, int]:
    """The key of record i and its direction (0: the source is the smaller endpoint)."""
    proto = int(records.protocol[i])
    ports = proto in PORT_PROTOCOLS
    src = (int(records.src_hi[i]), int(records.src_lo[i]), int(records.src_port[i]) if ports else 0)
    dst = (int(records.dst_hi[i]), int(records.dst_lo[i]), int(records.dst_port[i]) if ports else 0)
    if src <= dst:
        return (proto, *src, *dst), 0
    return (proto, *dst, *src), 1


class ReferenceReplay:
    """Replays one exporter's records through the rules above, one Python object per session."""

    def __init__(self, policy: SessionPolicy, known_ports: npt.NDArray[np.bool_]) -> None:
        self.policy = policy
        self.known_ports = known_ports
        self.cap = policy.max_open_sessions
        self.min_idle = min(
            policy.idle_tcp_established_us,
            policy.idle_tcp_half_open_us,
            policy.idle_udp_us,
            policy.idle_icmp_us,
            policy.idle_other_us,
        )
        self.open: dict[Key, RefSession] = {}
        self.prev: dict[Key, RefSession] = {}
        self.endpoints: dict[Endpoint, list[int]] = {}  # -> [open sessions, peak]
        # the newest clock (last_seen; first_seen under --replay event: rule 5), whose
        # value less grace is the watermark, and the newest last_seen (end of input)
        self.max_clock: int | None = None
        self.records = 0  # records replayed so far (rule 5: the late sessions' memory)
        self.newest_last: int | None = None
        self.max_span = 0  # longest last_seen - first_seen so far (rule 5)
        self.serials = 0
        self.evictions = 0
        self.first_eviction: int | None = None
        self.last_eviction: int | None = None
        self.peak_open = 0
        self._out: list[RefSession] = []

    # -- the replay -------------------------------------------------------------------
    def process(
        self, records: Records
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8], npt.NDArray[np.int64]]:
        """Replay `records` (arrival order); -> (session serial, direction) per record, rows out."""
        n = len(records)
        serials = np.zeros(n, dtype=np.int64)
        directions = np.zeros(n, dtype=np.int8)
        for i in range(n):
            serial, direction = self._record(records, i)
            serials[i] = serial
            directions[i] = direction
        return serials, directions, self._take_rows()

    def finish(self, emit: int) -> npt.NDArray[np.int64]:
        """End of input: the watermark passes the newest last_seen (a session due at that
        instant closes: nothing can arrive after it); the rest stays open."""
        if self.newest_last is not None:
            self._sweep(self.newest_last + 1, emit)
        for session in sorted(self.open.values(), key=lambda s: s.serial):
            self._finalize(session, None, R.REASON_OPEN, emit)
        self.open.clear()
        return self._take_rows()

    def pressure(self) -> dict[str, Any]:
        return {
            "evictions": self.evictions,
            "first_eviction_us": self.first_eviction,
            "last_eviction_us": self.last_eviction,
            "peak_open": self.peak_open,
        }

    def _record(self, records: Records, i: int) -> tuple[int, int]:
        policy = self.policy
        first = int(records.first_seen[i])
        last = int(records.last_seen[i])
        self.max_span = max(self.max_span, last - first)
        index = int(records.index[i])
        key, direction = canonical(records, i)
        clock = first if policy.replay == "event" else last
        watermark = None if self.max_clock is None else self.max_clock - policy.grace_us
        late = watermark is not None and last < watermark
        self.records += 1
        deep = int(watermark is not None and first < watermark - self.min_idle - policy.grace_us)
        identity = int(records.identity[i])
        flags = int(records.tcp_flags[i])
        session = self.open.get(key)
        joined = False
        if session is not None:
            idle = session.idle(policy)
            if (
                first > session.last + idle
                or first >= session.opened + policy.hard_timeout_us
                or _reopens(session, first, flags)
            ):
                closed_at, reason = session.deadline(policy)
                self._close(session, closed_at, reason, index)
                session = None
            elif first < session.opened and (
                last + idle < session.opened or first + policy.hard_timeout_us <= session.max_first
            ):
                stray = self._new_session(key, first, last, late, flags, stray=True)
                stray.identity, stray.deep = identity, 1  # numbered by identity (rule 6)
                self._apply(stray, records, i, direction)
                closed_at, reason = stray.deadline(policy)
                self._close(stray, closed_at, reason, index, counted=False)
                self._after(clock, last, index)
                return stray.serial, direction
            else:
                joined = True
        if session is None:
            session = self._new_session(key, first, last, late, flags)
            session.identity = identity
            self._apply(session, records, i, direction)
            now = clock if self.max_clock is None else max(clock, self.max_clock)
            newest = last if self.newest_last is None else max(last, self.newest_last)
            self._open(session, now, newest, index)
        else:
            if late and joined:
                session.late_records += 1
            self._apply(session, records, i, direction)
        session.deep |= deep
        self._after(clock, last, index)
        return session.serial, direction

    def _new_session(
        self, key: Key, first: int, last: int, late: bool, flags: int, stray: bool = False
    ) -> RefSession:
        """`flags`: the opening record's (both halves of a biflow); `first`, `last`: its
        times."""
        session = RefSession(key, self.serials, late=int(late))
        self.serials += 1
        prev = self.prev.get(key)
        if prev is None:
            return session
        session.open_prev = (prev.opened, prev.split, prev.late, prev.dup)
        if late:
            # it falls into the closed session or follows it (sessions.md): it reaches it.
            # Starting before it was not enough: a server's half exported first, its
            # client's half 1 ms earlier, linked nothing and each came out one-way (a
            # review, on nfpcapd's export of a RAT's connection)
            if prev.opened <= last:
                session.follows = (prev.opened, prev.split, prev.late, prev.dup)
                # within its idle timeout: its conversation (rule 3), unless a new
                # connection on the 5-tuple after a finished one (as in rule 2b')
                if first <= prev.last + prev.idle_at_close and not _reopens(prev, first, flags):
                    _inherit(session, prev)
        elif (
            not stray
            and prev.reason in (R.REASON_HARD_TIMEOUT, R.REASON_EVICTED)
            and first <= prev.last + prev.idle_at_close
            and not _reopens(prev, first, flags)
        ):
            session.split = prev.split + 1
            session.root = prev.root if prev.split else (prev.opened, prev.late, prev.dup)
            _inherit(session, prev)
        return session

    def _open(self, session: RefSession, now: int, newest: int, index: int) -> None:
        """`session` holds its first record; `now`: the newest clock with this record's;
        `newest`: the newest last_seen."""
        watermark = now - self.policy.grace_us
        if len(self.open) >= self.cap:
            # the watermark this record brings closes some sessions anyway: they leave by
            # their own deadline first, and only a session still open is a victim (rule 4)
            self._sweep(watermark, index)
        # a session that watermark has passed already (a late record's, or a fragment due
        # at its opening) closes in the sweep after its record: it takes no live one's place
        passing = session.deadline(self.policy)[0] < watermark
        if len(self.open) >= self.cap and not passing:
            victim = min(self.open.values(), key=lambda s: (s.last, s.key))
            self._close(victim, newest, R.REASON_EVICTED, index)
            self.evictions += 1
            if self.first_eviction is None:
                self.first_eviction = newest
            self.last_eviction = newest
        self.open[session.key] = session
        # ... and the cap holds between records: the peak never counts it beyond
        self.peak_open = max(self.peak_open, min(len(self.open), self.cap))
        for endpoint in session.endpoints():
            entry = self.endpoints.setdefault(endpoint, [0, 0])
            entry[0] += 1
            entry[1] = max(entry[1], entry[0])

    def _apply(self, s: RefSession, records: Records, i: int, d: int) -> None:
        first = int(records.first_seen[i])
        flags = int(records.tcp_flags[i])
        # unsigned counters (the columns hold their bits as int64)
        packets = int(records.packets[i]) & COUNTER_MAX
        octets = int(records.octets[i]) & COUNTER_MAX
        reverse_packets = int(records.reverse_packets[i]) & COUNTER_MAX
        reverse_octets = int(records.reverse_octets[i]) & COUNTER_MAX
        s.opened = min(s.opened, first)
        s.last = max(s.last, int(records.last_seen[i]))
        s.max_first = max(s.max_first, first)
        reverse = reverse_packets != 0 or reverse_octets != 0
        forward = not (packets == 0 and octets == 0 and reverse)
        # the sender: the record's source, or its destination when the forward half of a
        # biflow record carried nothing
        sender = d if forward else 1 - d
        if (first, sender) < (s.orient_fs, s.orient_dir):
            s.orient_fs, s.orient_dir = first, sender
            s.first_dst_port = int(records.dst_port[i]) if forward else -1
            s.domain = int(records.exporter_domain[i])
        # a sum past 2**64 (damaged counters) stops at 2**64 - 1, as the consolidated and
        # recombined sums do
        s.octets[d] = min(s.octets[d] + octets, COUNTER_MAX)
        s.packets[d] = min(s.packets[d] + packets, COUNTER_MAX)
        s.octets[1 - d] = min(s.octets[1 - d] + reverse_octets, COUNTER_MAX)
        s.packets[1 - d] = min(s.packets[1 - d] + reverse_packets, COUNTER_MAX)
        if forward:
            s.seen |= 1 << d
        if reverse:
            s.seen |= 1 << (1 - d)
        # the forward direction's flags, and those of a biflow record's reverse half
        for side, seen in ((d, flags & R.FLAGS_MASK), (1 - d, flags >> R.REVERSE_FLAGS_SHIFT)):
            s.flags[side] |= seen
            if seen & R.TCP_SYN:
                s.syn_first_seen[side] = min(s.syn_first_seen[side], first)
                if not seen & R.TCP_ACK:
                    s.pure_syn |= 1 << side
        if forward:
            requests, answers = icmp_evidence(s.protocol, int(records.dst_port[i]) >> 8, d)
            s.echo_request |= requests
            s.icmp_answers |= answers
        if records.src_declared[i]:
            s.declared |= 1 << d
        if records.dst_declared[i]:
            s.declared |= 1 << (1 - d)
        s.flows += 1
        s.sampling = max(s.sampling, int(records.sampling_rate[i]))
        s.scaled |= int(records.counters_scaled[i])

    def _after(self, clock: int, last: int, index: int) -> None:
        self.max_clock = clock if self.max_clock is None else max(self.max_clock, clock)
        self.newest_last = last if self.newest_last is None else max(self.newest_last, last)
        self._sweep(self.max_clock - self.policy.grace_us, index)

    def _sweep(self, watermark: int, emit: int) -> None:
        for session in sorted(self.open.values(), key=lambda s: s.serial):
            deadline, reason = session.deadline(self.policy)
            if deadline < watermark:
                self._close(session, deadline, reason, emit)
        # a late session expires by the records that came since its close (rule 5)
        for key in [
            k for k, p in self.prev.items() if p.expiry < (self.records if p.late else watermark)
        ]:
            del self.prev[key]

    def _close(
        self, s: RefSession, closed_at: int, reason: int, emit: int, counted: bool = True
    ) -> None:
        """s leaves: final row out, remembered as its key's last closed session, unless it is
        late and an in-order one is remembered (rule 3)."""
        if counted:
            del self.open[s.key]
            peaks = []
            for endpoint in s.endpoints():
                entry = self.endpoints[endpoint]
                peaks.append(entry[1])
                entry[0] -= 1
                if entry[0] == 0:
                    del self.endpoints[endpoint]
            s.peaks = (peaks[0], peaks[1])
        self._finalize(s, closed_at, reason, emit)
        s.idle_at_close = s.idle(self.policy)
        if s.late:  # rule 5: for the records that come next, not by the clocks
            s.expiry = self.records + R.LATE_MEMORY_RECORDS
        else:
            s.expiry = s.last + s.idle_at_close + self.policy.grace_us
            if reason == R.REASON_HARD_TIMEOUT:  # rule 5: its next record may be a long one
                s.expiry += min(self.max_span, R.MAX_CONTINUATION_SPAN_US)
        prev = self.prev.get(s.key)
        if not (s.late and prev is not None and not prev.late):
            self.prev[s.key] = s
        elif s.inherited is not None and s.follows == (prev.opened, prev.split, 0, prev.dup):
            # it went on with prev's conversation and is not remembered in its place: what
            # it saw that tells a refusal is left there for the late sessions after it (a
            # SYN-ACK here, the RST in the next, read `rejected`: a review)
            prev.added_refusals |= s.refusals()

    def _finalize(self, s: RefSession, closed_at: int | None, reason: int, emit: int) -> None:
        if reason == R.REASON_OPEN:  # still open at end of input: peaks as they stand
            s.peaks = (self.endpoints[s.endpoints()[0]][1], self.endpoints[s.endpoints()[1]][1])
        if s.deep or s.late:
            s.dup = (s.identity & R.DEEP_DUP_MASK) | R.DEEP_DUP_FLAG
        else:
            prev = self.prev.get(s.key)
            mine = (s.opened, s.split, s.late)
            for earlier in (
                (prev.opened, prev.split, prev.late, prev.dup) if prev is not None else None,
                s.open_prev,
            ):
                if earlier is not None and earlier[:3] == mine:
                    s.dup = max(s.dup, earlier[3] + 1)
        if s.inherited is None:
            server, method, confidence = infer_server(
                s.protocol,
                s.orient_dir,
                s.syn_first_seen[0],
                s.syn_first_seen[1],
                s.pure_syn,
                s.echo_request,
                s.icmp_answers,
                s.declared,
                s.key[3],
                s.key[6],
                bool(self.known_ports[s.key[3]]),
                bool(self.known_ports[s.key[6]]),
                s.peaks[0],
                s.peaks[1],
            )
            s.inherited = (s.orient_dir, server, method, confidence)
        s.closed_at = closed_at
        s.reason = reason
        s.emit = emit
        self._out.append(s)

    def _take_rows(self) -> npt.NDArray[np.int64]:
        """Output rows, transposed ([field, session]) as the kernel hands them out."""
        rows = R.new_rows(len(self._out))
        for n, s in enumerate(self._out):
            _fill_row(rows[n], s)
        self._out = []
        return np.ascontiguousarray(rows[:, R.OUTPUT_FIELD_INDEX].T)


def _reopens(prev: RefSession, first: int, flags: int) -> bool:
    """A record starting at `first` with `flags` (both halves of a biflow) is a new
    connection after `prev`: that one finished (FIN both ways, or a RST), whatever closes
    or closed it (a `hard_timeout` or `evicted` one too), and the record starts after its
    last record with a SYN (rule 2b'; and for a session opened once `prev` has closed:
    late, or its next fragment)."""
    return prev.finished() and first > prev.last and bool(flags & R.SYN_EITHER)


def refusal_of(flags: int) -> int:
    """An endpoint's flags as far as a refusal goes, in R.REFUSAL_BITS: SYN, PSH or FIN
    (which the refusal tests take alike), RST."""
    return (
        bool(flags & R.TCP_SYN) | bool(flags & R.OPENING_ONLY) << 1 | bool(flags & R.TCP_RST) << 2
    )


def refusal_flags(bits: int) -> int:
    """refusal_of's bits back as flags, PSH standing for PSH or FIN."""
    return (
        (R.TCP_SYN if bits & 1 else 0)
        | (R.TCP_PSH if bits & 2 else 0)
        | (R.TCP_RST if bits & 4 else 0)
    )


def _inherit(session: RefSession, prev: RefSession) -> None:
    """`session` goes on with `prev`'s conversation (rule 3): orientation, server side and
    the directions the conversation has seen (no one-way attempt for having seen one
    direction since, or in each fragment: A->B before the cut, B->A after it)."""
    assert prev.inherited is not None
    session.inherited = prev.inherited
    session.seen = prev.seen
    session.inherited_fins = prev.fins()
    session.inherited_refusals = prev.refusals()


def _bits(counter: int) -> int:
    """An unsigned 64-bit counter as the int64 of its bits (the row's type)."""
    return counter - (1 << 64) if counter >> 63 else counter


def _fill_row(out: npt.NDArray[np.int64], s: RefSession) -> None:
    """The fields output.py reads, from a finished RefSession."""
    assert s.inherited is not None
    proto, lo_hi, lo_lo, lo_port, hi_hi, hi_lo, hi_port = s.key
    orient, server, method, confidence = s.inherited
    if s.reason == R.REASON_OPEN:
        state = R.STATE_HALF_OPEN if s.half_open() else R.STATE_ACTIVE
    else:
        state = R.STATE_CLOSED
    values = {
        R.F_PROTO: proto,
        R.F_LO_HI: lo_hi,
        R.F_LO_LO: lo_lo,
        R.F_LO_PORT: lo_port,
        R.F_HI_HI: hi_hi,
        R.F_HI_LO: hi_lo,
        R.F_HI_PORT: hi_port,
        R.F_SERIAL: s.serial,
        R.F_OPENED: s.opened,
        R.F_LAST: s.last,
        R.F_FIRST_DST_PORT: s.first_dst_port,
        R.F_DOMAIN: s.domain,
        R.F_BYTES0: _bits(s.octets[0]),
        R.F_BYTES1: _bits(s.octets[1]),
        R.F_PACKETS0: _bits(s.packets[0]),
        R.F_PACKETS1: _bits(s.packets[1]),
        R.F_FLAGS0: s.flags[0],
        R.F_FLAGS1: s.flags[1],
        R.F_FLOWS: s.flows,
        R.F_LATE_RECORDS: s.late_records,
        R.F_SAMPLING: s.sampling,
        R.F_SCALED: s.scaled,
        R.F_LATE: s.late,
        R.F_SPLIT: s.split,
        R.F_DUP: s.dup,
        R.F_CLOSED_AT: 0 if s.closed_at is None else s.closed_at,
        R.F_REASON: s.reason,
        R.F_EMIT: s.emit,
        R.F_ORIENT: orient,
        R.F_SERVER: server,
        R.F_METHOD: method,
        R.F_CONFIDENCE: confidence,
        R.F_STATE: state,
        R.F_PEAK0: s.peaks[0],
        R.F_PEAK1: s.peaks[1],
    }
    if s.root is not None:
        values[R.F_ROOT_OPENED], values[R.F_ROOT_LATE], values[R.F_ROOT_DUP] = s.root
    if s.follows is not None:
        values[R.F_HAS_FOLLOW] = 1
        (
            values[R.F_FOLLOW_OPENED],
            values[R.F_FOLLOW_SPLIT],
            values[R.F_FOLLOW_LATE],
            values[R.F_FOLLOW_DUP],
        ) = s.follows
    for index, value in values.items():
        out[index] = value
