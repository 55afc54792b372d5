"""The numba kernel: the per-record session state machine of one exporter, over numpy arrays.

Same rules as reference.py (read its docstring first); this is the fast machinery:

* sessions are rows of an int64 matrix (row.py); keys find their row through a chained hash
  table (`buckets` + SL_NEXT) over a compact slot table; an open session's fields live in
  a row of a second matrix (bounded by the cap), which its slot points to; free slots and
  free rows sit on stacks;
* a slot's remembered closed session ("prev") expires lazily: it is ignored once the last
  sweep's watermark passed its expiry, and its slot is taken back in bulk (_collect, when
  the free stack runs out) instead of by a second timer, sweep and chain walk per session;
* deadlines are *lazy*: a session is queued once under the deadline it had when opened and
  re-queued only when its deadline moved earlier (TCP finish) or when the queued entry
  comes due early and the real deadline turns out later — so a record that merely extends
  a session costs no queue operation. The queue is a timer wheel of ~1 s buckets (constant
  time per entry, whatever the number of open sessions) in front of a small "near" min-heap
  holding the entries of buckets the watermark has reached (and deadlines queued behind
  it); the entries of buckets it passed whole (a jump in exporter time) are all due and
  skip the heap (the "due list");
* the cap's victim (oldest last_seen, ties by key) comes from a second lazy heap whose
  entries hold the key, re-queued with the current last_seen when found stale; it exists
  only near the cap: built from every open session when the cap is first reached, then
  dropped when the open count falls under half the cap, so that a run far from the cap
  never pays a heap push per new session;
* endpoint occupancy for the traffic-shape rung is a refcounted open-addressing table
  (entries in place, found again by the session's key when it closes);
* most of a session's cost is cache misses (its row is cold when it opens and again when
  it closes a minute later), so memory is prefetched ahead of use, in stages where one
  address needs another: a record's hash bucket, then the first slot of its chain, then
  its open session's hot row lines (LOOKAHEAD, SLOT_AHEAD, ROW_AHEAD); the record columns
  themselves (two dozen streams, more than the hardware follows); the rows of sessions
  whose wheel bucket the watermark reaches; the next entry to come due, its row, slot and
  endpoint entries; the next free row, slot and wheel entry.

The surprising thing: the kernel never allocates. When a table could overflow it stops
*before* the record that needs the room and returns a status; KernelReplay (in Python)
grows the arrays and calls again from that record, so results do not depend on capacities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import config as numba_config
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..jit_cache import drop_stale_jit_cache, njit, read_only
from . import row as R
from .inference import icmp_evidence, infer_server
from .keys import RECORD_FIELDS, Records
from .policy import SessionPolicy

if TYPE_CHECKING:
    from typing import TypeAlias

    # An integer argument of a compiled helper: a Python int, or one of the numpy int64
    # constants below (_ZERO, _ROW0), which numba types alike.
    Int64: TypeAlias = int | np.int64

# The tables the compiled helpers work on are typed Any, and numpy's stubs type an element
# of an array as Any anyway: a helper that returns a value read from them (an int64 or a
# bool to numba) is typed as returning Any.

# status codes returned by replay()
DONE = 0
NEED_SLOTS = 1
NEED_OUTPUT = 2
NEED_DEADLINES = 3
NEED_EVICTIONS = 4
NEED_ENDPOINTS = 5
NEED_ROWS = 6

# policy vector
P_HARD = 0
P_GRACE = 1
P_CAP = 2
P_IDLE_ESTABLISHED = 3
P_IDLE_HALF_OPEN = 4
P_IDLE_UDP = 5
P_IDLE_ICMP = 6
P_IDLE_OTHER = 7
P_EVENT = 8  # --replay event: the watermark follows first_seen (reference rule 5)

# scalar state vector
S_MAX_LAST = 0  # the newest clock: last_seen (arrival replay) or first_seen (event)
S_HAS_MAX_LAST = 1
S_SERIALS = 2
S_OPEN = 3
S_EVICTIONS = 4
S_FIRST_EVICTION = 5
S_LAST_EVICTION = 6
S_PEAK_OPEN = 7
S_FREE_TOP = 8
S_DEADLINES = 9
S_EVICTION_ENTRIES = 10
S_ENDPOINTS = 11  # entries in use in the endpoint table
S_OUT = 12
S_USED = 13
S_EVICTION_ON = 14  # the eviction heap is kept only while the open count is near the cap
S_WHEEL_CUR = 15  # timer wheel: every entry of a bucket below this one has left the wheel
S_TIMERS = 16  # entries on the wheel
S_TIMER_FREE = 17  # head of the free list of wheel entries
S_SLOTS = 18  # slots in use or on the free stack; rows of S beyond are untouched zeros
S_SWEPT = 19  # watermark of the last finished sweep: remembered sessions expiring before it
# are gone (they keep their slot until _collect frees it)
S_ROWS_FREE = 20  # session rows on the free stack G
S_DUE = 21  # entries of the due list, at the far end of D (only within a sweep)
S_MAX_SPAN = 22  # longest last_seen - first_seen of the records so far (R.P_EXPIRY)
S_NEWEST_LAST = 23  # event replay: the newest last_seen, the watermark at the end of input
S_RECORDS = 24  # records replayed so far: a remembered late session's expiry counts them
S_LATE_SWEPT = 25  # S_RECORDS at the last sweep (reference rule 5)
SCALAR_COUNT = 26

# Every table of a new exporter's replay starts this small and grows on demand. A start
# sized for busy exporters (16,384 rows, a 64 MB slot reserve) cost ~2 MB of touched memory
# per exporter however few its records, as numpy asks for huge pages for large arrays:
# 1,000 exporters of ten records each took 4 GB and 16 s, 10,000 took 23 GB.
INITIAL_CAPACITY = 64
# Once an exporter needs more than BUSY_SLOTS slots, its slot table's array jumps to
# SLOT_RESERVE rows of untouched zero pages (paid for only once used), and growing within
# them copies nothing; beyond, the array at least doubles, so that copies stay within twice
# its final size. (Doubling from the start copied ~5% of the kernel's time away on
# generated traffic.)
BUSY_SLOTS = 4096
SLOT_RESERVE = 1 << 19

# Timer wheel (deadlines): 2**20 µs (~1 s) buckets, 2048 of them (~36 min, more than the
# default hard_timeout plus grace; later deadlines wait on the wheel for their round).
# Rows 0..WHEEL_BUCKETS-1 of Q hold the bucket heads (column Q_NEXT), the rest are entries.
WHEEL_SHIFT = 20
WHEEL_BUCKETS = 2048
WHEEL_MASK = WHEEL_BUCKETS - 1
Q_TIME = 0
Q_REF = 1
Q_TAG = 2
Q_NEXT = 3

# Endpoint table: open addressing with linear probing, entries in place (two to a cache
# line), kept at most half full. E_TAG is 0 for an empty entry, else ENDPOINT_USED | proto
# << 16 | port; E_COUNTS is open sessions | peak << 32 (peak of the current busy period).
E_TAG = 0
E_HI = 1
E_LO = 2
E_COUNTS = 3
ENDPOINT_FIELDS = 4
ENDPOINT_USED = 1 << 40
COUNT_MASK = (1 << 32) - 1

# A record's memory is loaded in stages ahead of its replay, each stage reading what the
# one before fetched: its hash bucket (and endpoint entries) LOOKAHEAD records ahead, the
# first slot of that bucket's chain SLOT_AHEAD ahead, and, when that slot holds an open
# session, the session row's hot lines ROW_AHEAD ahead. The hash of each record ahead waits
# in a ring (H) for its later stages, with its direction and canonical key. With the
# prefetch of the record columns and of what the next closes touch (below and in _sweep),
# measured with bench/compare_kernel.py against the single stage before: 0.87x the time
# on the SYN scan's first 2 M records, 0.73x on generated traffic, 0.85x under a flood.
LOOKAHEAD = 8
SLOT_AHEAD = 5
ROW_AHEAD = 2
RING_MASK = 15  # 16 records in the ring: at most LOOKAHEAD + 1 are in use at once
RECORD_AHEAD = 32  # records between the prefetch of a record's columns and its replay
DUE_AHEAD = 4  # due-list entries between the prefetch for a close and the close
OUTPUT_AHEAD = 32  # output columns between the prefetch of an OUT line and its writes

EVICTION_FIELDS = 10  # last, proto, lo_hi, lo_lo, lo_port, hi_hi, hi_lo, hi_port, row, serial
# The eviction heap is 4-ary: at the cap it holds every open session (500,000 entries of
# 80 bytes by default, far beyond the caches), and a sift down pays a cache miss per level
# below the cached top. Four children sit in five adjacent lines, fetched together, and
# the heap is half as deep. With the in-place refresh of a stale top and the prefetch of
# the next victim (below), measured on the records of bench/data/v9_5M.pcap (a flood at the
# cap), kernel alone, binary and 4-ary runs interleaved on the same machine: 2,110-2,260 ->
# 1,990-2,090 ns per record (a first, not interleaved, measurement had shown 3,100 -> 2,400:
# that was the machine speeding up between the runs).
EVICTION_ARITY = 4

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_SIGN = np.int64(-(1 << 63))  # flips the sign bit: unsigned order by signed comparison
_REFUSALS_MASK = (1 << (2 * R.REFUSAL_BITS)) - 1  # both endpoints' refusal bits
# F_INHERITED's bits of a RST from either endpoint (refusal bit 2 of each, from bit 3)
_INHERITED_RST = R.REFUSAL_RST_EITHER << 3

_jit = njit(cache=True, nogil=True)
# Helpers run without numba's reference counting: they never allocate, and every array
# they are handed is kept alive by replay()'s caller. With it, each call paid an atomic
# increment and decrement per array argument, which measured as two thirds of the replay.
_helper = njit(cache=True, nogil=True, _nrt=False)
# The helpers every record or every session runs are inlined into replay at numba's level:
# left as calls, each passes its arrays as a dozen scalars apiece (_sweep, called after
# every record, takes ten arrays) and LLVM's own inliner declines the larger ones. Measured
# on the first 2 M SYN-scan records, medians of 24 alternating runs: 920 -> 720 ns/record,
# for ~15 s more compilation on the first run after install. The rarely run helpers
# (eviction heap, wheel moves, session close and output) stay calls: inlining everything
# was a little faster again but took the kernel's compilation from ~25 s to ~140 s.
_inline = njit(cache=True, nogil=True, _nrt=False, inline="always")
_infer = njit(cache=True, nogil=True, _nrt=False)(infer_server)
# Arguments of the helpers called (not inlined) that are constants at the call: numba
# compiles a helper again for each literal type it is handed (Literal[int](0) beside int64,
# Literal[bool](True) beside Literal[bool](False)), seconds each on the first run. numpy
# scalars are typed int64 and bool, the types the other calls pass.
_ZERO = np.int64(0)
_ROW0 = np.int64(0)  # the one row of the scratch tables X and tmp
_STRAY = np.bool_(True)
_NOT_STRAY = np.bool_(False)
_icmp_evidence = _inline(icmp_evidence)


def _prefetch_intrinsic(write: int) -> Any:
    """An intrinsic (array, row, column) that asks the CPU to start loading the cache line of
    array[row, column] (array[row] for a 1-D array, `column` unused): llvm.prefetch, for a
    read or for a write, kept in all cache levels. Nothing waits for it and an address
    past the end is harmless, so memory needed a little later is fetched meanwhile."""

    def prefetch(typingctx: Any, array: Any, row: Any, column: Any) -> Any:
        if not isinstance(array, types.Array) or array.ndim not in (1, 2):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            kind = signature.args[0]
            data = context.make_array(kind)(context, builder, args[0])
            indices = [
                context.cast(builder, value, given, types.intp)
                for value, given in zip(args[1:], signature.args[1:], strict=True)
            ]
            # ignored: numba's cgutils (which says it is typed) has no annotations
            pointer = cgutils.get_item_pointer2(  # type: ignore[no-untyped-call]
                context,
                builder,
                data=data.data,
                shape=cgutils.unpack_tuple(builder, data.shape),  # type: ignore[no-untyped-call]
                strides=cgutils.unpack_tuple(  # type: ignore[no-untyped-call]
                    builder, data.strides
                ),
                layout=kind.layout,
                inds=indices[: kind.ndim],
                wraparound=False,
            )
            byte_pointer = ir.IntType(8).as_pointer()
            word = ir.IntType(32)
            function = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
                builder.module,
                ir.FunctionType(ir.VoidType(), [byte_pointer, word, word, word]),
                "llvm.prefetch.p0",
            )
            builder.call(
                function, [builder.bitcast(pointer, byte_pointer), word(write), word(3), word(1)]
            )
            return context.get_dummy_value()

        return types.void(array, row, column), codegen

    prefetch.__name__ = "_prefetch_write" if write else "_prefetch"
    return intrinsic(prefetch)


def _no_prefetch(array: Any, row: Any, column: Any) -> None:
    """The hint's stand-in when numba runs the kernel as Python (NUMBA_DISABLE_JIT=1, to
    step through it in a debugger): an intrinsic cannot be called from Python."""


# (numba sets its config's attributes from the environment at import: the stubs know none)
if getattr(numba_config, "DISABLE_JIT", False):
    _prefetch = _prefetch_write = _no_prefetch
else:
    _prefetch = _prefetch_intrinsic(0)
    _prefetch_write = _prefetch_intrinsic(1)


@_inline
def _prefetch_row(M: Any, r: int) -> None:
    """Every cache line of session row M[r] (a row spans at most ROW_WIDTH // 8 + 1 lines)."""
    for f in range(0, R.ROW_WIDTH, 8):
        _prefetch(M, r, f)
    _prefetch(M, r, R.ROW_WIDTH - 1)


@_inline
def _prefetch_slot(S: Any, slot: int) -> None:
    """Every cache line of slot S[slot]."""
    for f in range(0, R.SLOT_WIDTH, 8):
        _prefetch(S, slot, f)
    _prefetch(S, slot, R.SLOT_WIDTH - 1)


@_inline
def _mix(h: Any, value: Any) -> Any:
    """splitmix64 step folding `value` into `h` (uint64 arithmetic wraps)."""
    z = h + np.uint64(value) + _K1
    z = (z ^ (z >> _S30)) * _K2
    z = (z ^ (z >> _S27)) * _K3
    return z ^ (z >> _S31)


@_inline
def _key_hash(proto: int, a: int, b: int, c: int, d: int, e: int, f: int) -> np.int64:
    """Hash of a key (proto, lo address halves a b, lo port c, hi address halves d e, hi
    port f). Three splitmix rounds, not one per field: every record pays this hash, and
    the rounds are one chain of dependent multiplies. The low address halves, which vary
    most, get rounds of their own; protocol and ports share one word and the high halves
    (mostly alike: IPv4-mapped) another."""
    h = _mix(np.uint64(proto << 32 | c << 16 | f), b)
    h = _mix(h, e)
    h = _mix(h, np.uint64(a) ^ (np.uint64(d) << np.uint64(1) | np.uint64(d) >> np.uint64(63)))
    return np.int64(h >> np.uint64(1))


@_inline
def _canonical(
    proto: int, sh: int, sl: int, sport: int, dh: int, dl: int, dport: int
) -> tuple[int, int, int, int, int, int, int]:
    """(direction, key without protocol) of a record: the smaller endpoint first; ports
    only for the protocols that have them."""
    if not (proto == 6 or proto == 17 or proto == 132 or proto == 136):
        sport = 0
        dport = 0
    if sh < dh or (sh == dh and (sl < dl or (sl == dl and sport <= dport))):
        return 0, sh, sl, sport, dh, dl, dport
    return 1, dh, dl, dport, sh, sl, sport


@_inline
def _ring_key(
    H: Any,
    i: int,
    protocol: Any,
    src_hi: Any,
    src_lo: Any,
    src_port: Any,
    dst_hi: Any,
    dst_lo: Any,
    dst_port: Any,
) -> None:
    """Record i's hash, direction and canonical key into its place in the ring H."""
    p = protocol[i]
    d, k1, k2, k3, k4, k5, k6 = _canonical(
        p, src_hi[i], src_lo[i], src_port[i], dst_hi[i], dst_lo[i], dst_port[i]
    )
    ring = i & RING_MASK
    H[ring, 0] = _key_hash(p, k1, k2, k3, k4, k5, k6)
    H[ring, 1] = d
    H[ring, 2] = k1
    H[ring, 3] = k2
    H[ring, 4] = k3
    H[ring, 5] = k4
    H[ring, 6] = k5
    H[ring, 7] = k6


# -- session rules on rows --------------------------------------------------------------
@_inline
def _finished(M: Any, s: Int64) -> Any:
    if M[s, R.F_PROTO] != 6:
        return False
    both = M[s, R.F_FLAGS0] | M[s, R.F_FLAGS1]
    if both & R.TCP_RST:
        return True
    return _fins(M, s) == 3


@_inline
def _fins(M: Any, s: Int64) -> Any:
    """Bit d: FIN seen from endpoint d in the conversation, this fragment or one before."""
    return (
        (M[s, R.F_FLAGS0] & R.TCP_FIN)
        | (M[s, R.F_FLAGS1] & R.TCP_FIN) << 1
        | M[s, R.F_INHERITED] >> 1
    ) & 3


@_inline
def _refusal_of(flags: Any) -> Any:
    """An endpoint's flags as far as a refusal goes (R.REFUSAL_BITS): SYN, PSH or FIN, RST
    (reference.refusal_of)."""
    return (
        (1 if flags & R.TCP_SYN else 0)
        | (2 if flags & R.OPENING_ONLY else 0)
        | (4 if flags & R.TCP_RST else 0)
    )


@_inline
def _refusal_flags(bits: Any) -> Any:
    """R.REFUSAL_BITS back as flags: PSH stands for PSH or FIN (the refusal tests take
    them alike)."""
    return (
        (R.TCP_SYN if bits & 1 else 0)
        | (R.TCP_PSH if bits & 2 else 0)
        | (R.TCP_RST if bits & 4 else 0)
    )


@_inline
def _refusals(M: Any, s: Int64) -> Any:
    """Endpoint d's refusal bits at 3d: the conversation's, this fragment and the ones
    before (reference RefSession.refusals)."""
    return (
        _refusal_of(M[s, R.F_FLAGS0])
        | _refusal_of(M[s, R.F_FLAGS1]) << R.REFUSAL_BITS
        | M[s, R.F_INHERITED] >> 3
    ) & _REFUSALS_MASK


@_inline
def _half_open(M: Any, s: Int64) -> Any:
    seen = M[s, R.F_SEEN]
    if M[s, R.F_PROTO] != 6 or (seen != 1 and seen != 2):
        return False
    sent = M[s, R.F_FLAGS0] if seen == 1 else M[s, R.F_FLAGS1]
    return (sent & R.TCP_SYN) != 0 and (sent & R.TCP_ACK) == 0


@_inline
def _idle(M: Any, s: Int64, P: Any) -> Any:
    proto = M[s, R.F_PROTO]
    if proto == 6:
        return P[P_IDLE_HALF_OPEN] if _half_open(M, s) else P[P_IDLE_ESTABLISHED]
    if proto == 17 or proto == 136:
        return P[P_IDLE_UDP]
    if proto == 1 or proto == 58:
        return P[P_IDLE_ICMP]
    return P[P_IDLE_OTHER]


@_inline
def _state_reason(M: Any, s: Int64) -> int:
    f0 = M[s, R.F_FLAGS0]
    f1 = M[s, R.F_FLAGS1]
    if M[s, R.F_PROTO] == 6:
        # a RST of its own, or of the fragments before (a late record after a reset goes
        # on with a reset connection, as one session of both: a review)
        if (f0 | f1) & R.TCP_RST or M[s, R.F_INHERITED] & _INHERITED_RST:
            # a bare opening answered by a bare RST, in the conversation's flags: the SYN
            # can be a fragment's before (reference.state_reason)
            refusals = _refusals(M, s)
            g0 = _refusal_flags(refusals & 7)
            g1 = _refusal_flags(refusals >> R.REFUSAL_BITS)
            if (
                (g0 & R.TCP_SYN)
                and not (g0 & R.OPENING_ONLY)
                and (g1 & R.TCP_RST)
                and not (g1 & R.REFUSAL_ONLY)
            ):
                return R.REASON_REJECTED
            if (
                (g1 & R.TCP_SYN)
                and not (g1 & R.OPENING_ONLY)
                and (g0 & R.TCP_RST)
                and not (g0 & R.REFUSAL_ONLY)
            ):
                return R.REASON_REJECTED
            if M[s, R.F_SEEN] == 3 or ((f0 | f1) & R.TCP_ACK and (f0 | f1) & R.TCP_PSH):
                return R.REASON_RST  # after an exchange, seen both ways or data pushed
            return R.REASON_NO_REPLY
        if _fins(M, s) == 3:
            return R.REASON_FIN
        if (f0 | f1) & R.TCP_ACK and (
            not (f0 | f1) & R.TCP_SYN or (f0 | f1) & R.TCP_PSH
        ):  # one-way midstream, or established and pushing data: no attempt
            return R.REASON_IDLE  # (reference.state_reason)
    return R.REASON_IDLE if M[s, R.F_SEEN] == 3 else R.REASON_NO_REPLY


@_inline
def _deadline(M: Any, s: Int64, P: Any) -> tuple[int, int]:
    if _finished(M, s):
        natural = M[s, R.F_LAST]
    else:
        natural = M[s, R.F_LAST] + _idle(M, s, P)
    hard = M[s, R.F_OPENED] + P[P_HARD]
    if hard <= natural:
        return hard, R.REASON_HARD_TIMEOUT
    return natural, _state_reason(M, s)


@_inline
def _init_session(M: Any, s: Int64, serial: int, late: int) -> None:
    for f in range(R.F_SERIAL, R.SESSION_END):
        M[s, f] = 0
    M[s, R.F_SERIAL] = serial
    M[s, R.F_OPENED] = R.NO_TIME
    M[s, R.F_LAST] = R.TIME_MIN
    M[s, R.F_MAX_FIRST] = R.TIME_MIN
    M[s, R.F_ORIENT_FS] = R.NO_TIME
    M[s, R.F_ORIENT_DIR] = 2
    M[s, R.F_SYN_FS0] = R.NO_TIME
    M[s, R.F_SYN_FS1] = R.NO_TIME
    M[s, R.F_LATE] = late
    M[s, R.F_QUEUED] = R.NO_TIME
    M[s, R.F_REASON] = R.REASON_OPEN


@_inline
def _has_prev(S: Any, slot: int, C: Any) -> bool:
    """S[slot] remembers a closed session that has not expired at the last sweep.

    Expiry is lazy: the reference forgets a remembered session once a sweep's watermark
    passes its expiry (a late session's: a count of records, _prev_alive); here it
    stays in its slot, ignored, until a new session of its key overwrites it or _collect
    frees the slot, so no timer or chain walk is paid per session.
    """
    return slot >= 0 and (S[slot, R.SL_STATUS] & R.STATUS_PREV) != 0 and _prev_alive(S, slot, C)


@_inline
def _prev_alive(S: Any, slot: int, C: Any) -> Any:
    """S[slot]'s remembered session had not expired at the last sweep: a late one by the
    records that came since its close (reference rule 5)."""
    return S[slot, R.P_EXPIRY] >= (C[S_LATE_SWEPT] if _prev_bit(S, slot, R.PB_LATE) else C[S_SWEPT])


@_inline
def _prev_bit(S: Any, slot: int, shift: int) -> Any:
    """One of the one-bit fields packed in P_BITS."""
    return (S[slot, R.P_BITS] >> shift) & 1


@_inline
def _prev_byte(S: Any, slot: int, shift: int) -> Any:
    """One of the small fields packed in P_BITS."""
    return (S[slot, R.P_BITS] >> shift) & R.BYTE_MASK


@_inline
def _inherit(M: Any, s: Int64, S: Any, slot: int) -> None:
    """M[s] goes on with the conversation of the closed session in S[slot] (the next
    fragment, or a late session following it): its orientation and server side, so that it
    never comes out reversed, and the directions the conversation has seen: a piece that
    sees one direction only (the other's records fell in the sessions before) is no one-way
    attempt (no_reply, half_open)."""
    M[s, R.F_INHERITED] = (
        1
        | ((S[slot, R.P_BITS] >> R.PB_FIN) & 3) << 1
        | ((S[slot, R.P_BITS] >> R.PB_REFUSAL) & _REFUSALS_MASK) << 3
    )
    M[s, R.F_INH_ORIENT] = _prev_byte(S, slot, R.PB_ORIENT)
    M[s, R.F_INH_SERVER] = _prev_byte(S, slot, R.PB_SERVER)
    M[s, R.F_INH_METHOD] = _prev_byte(S, slot, R.PB_METHOD)
    M[s, R.F_INH_CONFIDENCE] = (S[slot, R.P_BITS] >> R.PB_CONFIDENCE) & R.CONFIDENCE_MASK
    M[s, R.F_SEEN] = (S[slot, R.P_BITS] >> R.PB_SEEN) & 3


@_helper
def _new_links(
    M: Any,
    s: Int64,
    S: Any,
    slot: int,
    C: Any,
    P: Any,
    first: int,
    last: int,
    late: int,
    flags: int,
    stray: bool | np.bool_,
) -> None:
    """Follow / continuation links of a session opened in M[s] from the prev of S[slot],
    which the session also keeps for its `dup` (F_OPEN_PREV_*); `flags`: its record's."""
    if not _has_prev(S, slot, C):
        M[s, R.F_OPEN_PREV_OPENED] = R.NO_TIME
        return
    M[s, R.F_OPEN_PREV_OPENED] = S[slot, R.P_OPENED]
    M[s, R.F_OPEN_PREV_BITS] = (
        S[slot, R.P_DUP] << 32 | S[slot, R.P_SPLIT] << 1 | _prev_bit(S, slot, R.PB_LATE)
    )
    if late:
        # it reaches the closed session: falls into it or follows it (reference)
        if S[slot, R.P_OPENED] <= last:
            M[s, R.F_HAS_FOLLOW] = 1
            M[s, R.F_FOLLOW_OPENED] = S[slot, R.P_OPENED]
            M[s, R.F_FOLLOW_SPLIT] = S[slot, R.P_SPLIT]
            M[s, R.F_FOLLOW_LATE] = _prev_bit(S, slot, R.PB_LATE)
            M[s, R.F_FOLLOW_DUP] = S[slot, R.P_DUP]
            # within its idle timeout: its conversation, unless a new connection after a
            # finished one (reference rule 3)
            if first <= S[slot, R.P_CONT] and not _reopens(S, slot, P, first, flags):
                _inherit(M, s, S, slot)
        return
    if stray:
        return
    reason = _prev_byte(S, slot, R.PB_REASON) - 1
    if (
        (reason == R.REASON_HARD_TIMEOUT or reason == R.REASON_EVICTED)
        and first <= S[slot, R.P_CONT]
        and not _reopens(S, slot, P, first, flags)
    ):
        M[s, R.F_SPLIT] = S[slot, R.P_SPLIT] + 1
        if S[slot, R.P_SPLIT] > 0:
            M[s, R.F_ROOT_OPENED] = S[slot, R.P_ROOT_OPENED]
            M[s, R.F_ROOT_LATE] = _prev_bit(S, slot, R.PB_ROOT_LATE)
            M[s, R.F_ROOT_DUP] = S[slot, R.P_ROOT_DUP]
        else:
            M[s, R.F_ROOT_OPENED] = S[slot, R.P_OPENED]
            M[s, R.F_ROOT_LATE] = _prev_bit(S, slot, R.PB_LATE)
            M[s, R.F_ROOT_DUP] = S[slot, R.P_DUP]
        _inherit(M, s, S, slot)


@_inline
def _reopens(S: Any, slot: int, P: Any, first: int, flags: int) -> Any:
    """A record starting at `first` with `flags` is a new connection after the closed
    session of S[slot]: that one finished (FIN both ways, or a RST), and the record starts
    after its last_seen with a SYN (reference _reopens)."""
    if not _prev_bit(S, slot, R.PB_FINISHED) or not (flags & R.SYN_EITHER):
        return False
    half_open = _prev_bit(S, slot, R.PB_HALF_OPEN)
    idle = P[P_IDLE_HALF_OPEN] if half_open else P[P_IDLE_ESTABLISHED]
    return first > S[slot, R.P_CONT] - idle


@_inline
def _flags(M: Any, s: Int64, d: int, first: int, flags: int) -> None:
    """TCP flags seen from direction d by a record starting at `first`."""
    M[s, R.F_FLAGS0 + d] |= flags
    if flags & R.TCP_SYN:
        if first < M[s, R.F_SYN_FS0 + d]:
            M[s, R.F_SYN_FS0 + d] = first
        if not (flags & R.TCP_ACK):
            M[s, R.F_PURE_SYN] |= 1 << d


@_inline
def _counter_sum(total: int, value: int) -> int:
    """total + value as unsigned 64-bit counters (int64 bits), stopping at 2**64 - 1 (all
    ones): a session of damaged counters past 2**64 wrapped around to a plausible number
    (218 bytes, an audit found) where sessions_consolidated and recombine, which sum its
    counters, stop at the ceiling. Unsigned order is the signed order of the bits with the
    sign flipped: the sum wrapped when it came out below the value added."""
    result = total + value
    if (result ^ _SIGN) < (value ^ _SIGN):
        return -1
    return result


@_inline
def _apply(
    M: Any,
    s: Int64,
    d: int,
    first: int,
    last: int,
    dst_port: int,
    domain: int,
    flags: int,
    packets: int,
    octets: int,
    reverse_packets: int,
    reverse_octets: int,
    sampling: int,
    scaled: int,
    src_declared: int,
    dst_declared: int,
) -> None:
    if first < M[s, R.F_OPENED]:
        M[s, R.F_OPENED] = first
    if last > M[s, R.F_LAST]:
        M[s, R.F_LAST] = last
    if first > M[s, R.F_MAX_FIRST]:
        M[s, R.F_MAX_FIRST] = first
    e = 1 - d
    # unsigned counters in int64 bits: a damaged one past 2**63 is negative here, and "> 0"
    # read its reverse half as empty
    reverse = reverse_packets != 0 or reverse_octets != 0
    forward = not (packets == 0 and octets == 0 and reverse)
    # who sent the record: its source, unless the forward half of a biflow record carried
    # nothing (softflowd -b puts the lower address first): then its destination
    sender = d if forward else e
    if first < M[s, R.F_ORIENT_FS] or (
        first == M[s, R.F_ORIENT_FS] and sender < M[s, R.F_ORIENT_DIR]
    ):
        M[s, R.F_ORIENT_FS] = first
        M[s, R.F_ORIENT_DIR] = sender
        M[s, R.F_FIRST_DST_PORT] = dst_port if forward else -1  # its ICMP type: unknown
        M[s, R.F_DOMAIN] = domain
    M[s, R.F_BYTES0 + d] = _counter_sum(M[s, R.F_BYTES0 + d], octets)
    M[s, R.F_PACKETS0 + d] = _counter_sum(M[s, R.F_PACKETS0 + d], packets)
    M[s, R.F_BYTES0 + e] = _counter_sum(M[s, R.F_BYTES0 + e], reverse_octets)
    M[s, R.F_PACKETS0 + e] = _counter_sum(M[s, R.F_PACKETS0 + e], reverse_packets)
    if forward:
        M[s, R.F_SEEN] |= 1 << d
    if reverse:
        M[s, R.F_SEEN] |= 1 << e
    _flags(M, s, d, first, flags & R.FLAGS_MASK)
    _flags(M, s, e, first, flags >> R.REVERSE_FLAGS_SHIFT)  # a biflow record's other half
    # the type of a forward half that sent nothing is no message (0 would read "echo reply")
    if forward:
        requests, answers = _icmp_evidence(M[s, R.F_PROTO], dst_port >> 8, d)
        M[s, R.F_ECHO_REQUEST] |= requests
        M[s, R.F_ICMP_ANSWERS] |= answers
    if src_declared:
        M[s, R.F_DECLARED] |= 1 << d
    if dst_declared:
        M[s, R.F_DECLARED] |= 1 << e
    M[s, R.F_FLOWS] += 1
    if sampling > M[s, R.F_SAMPLING]:
        M[s, R.F_SAMPLING] = sampling
    if scaled:
        M[s, R.F_SCALED] = 1


@_helper
def _finalize(
    M: Any,
    s: Int64,
    S: Any,
    slot: int,
    C: Any,
    closed_at: Int64,
    reason: int,
    emit: int,
    peak0: Int64,
    peak1: Int64,
    known: Any,
) -> None:
    """Fill the output fields of M[s]; S[slot] holds the key's previous closed session.

    `dup` is one more than that of the key's last closed session now or when M[s] opened,
    whichever has M[s]'s very (opened_at, split, late): a long session can outlive the
    memory of the closed one it reaches back to. A deep, late or stray session's is its
    opening record's identity instead (reference.py, rule 6)."""
    M[s, R.F_PEAK0] = peak0
    M[s, R.F_PEAK1] = peak1
    if M[s, R.F_DEEP] or M[s, R.F_LATE]:
        M[s, R.F_DUP] = (M[s, R.F_IDENTITY] & R.DEEP_DUP_MASK) | R.DEEP_DUP_FLAG
    else:
        dup = 0
        if (
            _has_prev(S, slot, C)
            and S[slot, R.P_OPENED] == M[s, R.F_OPENED]
            and S[slot, R.P_SPLIT] == M[s, R.F_SPLIT]
            and _prev_bit(S, slot, R.PB_LATE) == M[s, R.F_LATE]
        ):
            dup = S[slot, R.P_DUP] + 1
        bits = M[s, R.F_OPEN_PREV_BITS]
        if (
            M[s, R.F_OPEN_PREV_OPENED] == M[s, R.F_OPENED]
            and (bits & COUNT_MASK) == (M[s, R.F_SPLIT] << 1 | M[s, R.F_LATE])
            and (bits >> 32) + 1 > dup
        ):
            dup = (bits >> 32) + 1
        M[s, R.F_DUP] = dup
    if M[s, R.F_INHERITED]:
        M[s, R.F_ORIENT] = M[s, R.F_INH_ORIENT]
        M[s, R.F_SERVER] = M[s, R.F_INH_SERVER]
        M[s, R.F_METHOD] = M[s, R.F_INH_METHOD]
        M[s, R.F_CONFIDENCE] = M[s, R.F_INH_CONFIDENCE]
    else:
        port0 = M[s, R.F_LO_PORT]
        port1 = M[s, R.F_HI_PORT]
        server, method, confidence = _infer(
            M[s, R.F_PROTO],
            M[s, R.F_ORIENT_DIR],
            M[s, R.F_SYN_FS0],
            M[s, R.F_SYN_FS1],
            M[s, R.F_PURE_SYN],
            M[s, R.F_ECHO_REQUEST],
            M[s, R.F_ICMP_ANSWERS],
            M[s, R.F_DECLARED],
            port0,
            port1,
            known[port0],
            known[port1],
            peak0,
            peak1,
        )
        M[s, R.F_ORIENT] = M[s, R.F_ORIENT_DIR]
        M[s, R.F_SERVER] = server
        M[s, R.F_METHOD] = method
        M[s, R.F_CONFIDENCE] = confidence
    M[s, R.F_CLOSED_AT] = closed_at
    M[s, R.F_REASON] = reason
    M[s, R.F_EMIT] = emit
    if reason != R.REASON_OPEN:
        M[s, R.F_STATE] = R.STATE_CLOSED
    elif _half_open(M, s):
        M[s, R.F_STATE] = R.STATE_HALF_OPEN
    else:
        M[s, R.F_STATE] = R.STATE_ACTIVE


@_inline
def _rememberable(S: Any, slot: int, C: Any, M: Any, s: Int64) -> bool:
    """A late session does not replace a remembered session that is not late (reference
    rule 3): it would hide the fragment a later record continues."""
    return not (M[s, R.F_LATE] and _has_prev(S, slot, C) and _prev_bit(S, slot, R.PB_LATE) == 0)


@_inline
def _add_refusals(S: Any, slot: int, M: Any, s: Int64) -> None:
    """A late session that went on with the remembered one, and is not remembered in its
    place, leaves what it saw that tells a refusal there, for the late sessions after it
    (reference _close): a SYN-ACK in one late session, the RST in the next, read `rejected`
    for the SYN-ACK forgotten (a review)."""
    if (
        M[s, R.F_INHERITED] & 1
        and M[s, R.F_HAS_FOLLOW]
        and M[s, R.F_FOLLOW_LATE] == 0
        and M[s, R.F_FOLLOW_OPENED] == S[slot, R.P_OPENED]
        and M[s, R.F_FOLLOW_SPLIT] == S[slot, R.P_SPLIT]
        and M[s, R.F_FOLLOW_DUP] == S[slot, R.P_DUP]
    ):
        S[slot, R.P_BITS] |= _refusals(M, s) << R.PB_REFUSAL


@_helper
def _remember(S: Any, slot: int, M: Any, s: Int64, P: Any, C: Any) -> None:
    """Make the final session M[s] the last closed session of the key in S[slot]. The small
    fields (flags, codes, per mille) share one word: a slot stays two cache lines."""
    S[slot, R.P_OPENED] = M[s, R.F_OPENED]
    S[slot, R.P_CONT] = M[s, R.F_LAST] + _idle(M, s, P)
    S[slot, R.P_SPLIT] = M[s, R.F_SPLIT]
    S[slot, R.P_DUP] = M[s, R.F_DUP]
    root_late = _prev_bit(S, slot, R.PB_ROOT_LATE)
    if M[s, R.F_SPLIT] > 0:
        S[slot, R.P_ROOT_OPENED] = M[s, R.F_ROOT_OPENED]
        root_late = M[s, R.F_ROOT_LATE]
        S[slot, R.P_ROOT_DUP] = M[s, R.F_ROOT_DUP]
    S[slot, R.P_BITS] = (
        M[s, R.F_LATE] << R.PB_LATE
        | root_late << R.PB_ROOT_LATE
        | (M[s, R.F_REASON] + 1) << R.PB_REASON
        | M[s, R.F_ORIENT] << R.PB_ORIENT
        | M[s, R.F_SERVER] << R.PB_SERVER
        | M[s, R.F_METHOD] << R.PB_METHOD
        | M[s, R.F_CONFIDENCE] << R.PB_CONFIDENCE
        | (M[s, R.F_SEEN] & 3) << R.PB_SEEN
        | _fins(M, s) << R.PB_FIN
        | _refusals(M, s) << R.PB_REFUSAL
        | (1 if _half_open(M, s) else 0) << R.PB_HALF_OPEN
        | (1 if _finished(M, s) else 0) << R.PB_FINISHED
    )
    if M[s, R.F_LATE]:  # for the records that come next (reference rule 5)
        S[slot, R.P_EXPIRY] = C[S_RECORDS] + R.LATE_MEMORY_RECORDS
    else:
        S[slot, R.P_EXPIRY] = S[slot, R.P_CONT] + P[P_GRACE]
        if M[s, R.F_REASON] == R.REASON_HARD_TIMEOUT:
            S[slot, R.P_EXPIRY] += min(C[S_MAX_SPAN], R.MAX_CONTINUATION_SPAN_US)
    S[slot, R.SL_STATUS] |= R.STATUS_PREV


# -- heaps ------------------------------------------------------------------------------
@_helper
def _deadline_push(D: Any, C: Any, t: int, ref: int, tag: int) -> None:
    i = C[S_DEADLINES]
    C[S_DEADLINES] = i + 1
    while i > 0:
        parent = (i - 1) >> 1
        if D[parent, 0] <= t:
            break
        D[i, 0] = D[parent, 0]
        D[i, 1] = D[parent, 1]
        D[i, 2] = D[parent, 2]
        i = parent
    D[i, 0] = t
    D[i, 1] = ref
    D[i, 2] = tag


@_helper
def _deadline_pop(D: Any, C: Any) -> None:
    n = C[S_DEADLINES] - 1
    C[S_DEADLINES] = n
    if n == 0:
        return
    t = D[n, 0]
    ref = D[n, 1]
    tag = D[n, 2]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and D[child + 1, 0] < D[child, 0]:
            child += 1
        if D[child, 0] >= t:
            break
        D[i, 0] = D[child, 0]
        D[i, 1] = D[child, 1]
        D[i, 2] = D[child, 2]
        i = child
    D[i, 0] = t
    D[i, 1] = ref
    D[i, 2] = tag


@_inline
def _timer_push(D: Any, Q: Any, C: Any, t: int, ref: int, tag: int) -> None:
    """Queue (t, ref, tag): on the wheel, or in the near heap when its bucket has passed."""
    bucket = t >> WHEEL_SHIFT
    if bucket < C[S_WHEEL_CUR]:
        _deadline_push(D, C, t, ref, tag)
        return
    q = C[S_TIMER_FREE]
    C[S_TIMER_FREE] = Q[q, Q_NEXT]
    _prefetch_write(Q, C[S_TIMER_FREE], 0)  # the next push's entry, cold since freed
    C[S_TIMERS] += 1
    Q[q, Q_TIME] = t
    Q[q, Q_REF] = ref
    Q[q, Q_TAG] = tag
    head = bucket & WHEEL_MASK
    Q[q, Q_NEXT] = Q[head, Q_NEXT]
    Q[head, Q_NEXT] = q


@_helper
def _wheel_move(
    D: Any, Q: Any, C: Any, M: Any, head: int, last_bucket: int, passed_bucket: int
) -> None:
    """Entries of one wheel bucket due by `last_bucket` leave the wheel; later rounds stay.
    Those of buckets up to `passed_bucket`, which the watermark has passed whole, are due
    now: they go to the due list, unordered; the others to the near heap.

    Their rows are prefetched on the way: a session is due about a minute after it was last
    touched, so its row has long left the caches, and the sweeps of the next second of
    exporter time (thousands of records) will read every line of it. Fetching them all
    now overlaps the misses instead of taking them one after another.
    """
    q = Q[head, Q_NEXT]
    Q[head, Q_NEXT] = -1
    while q >= 0:
        following = Q[q, Q_NEXT]
        bucket = Q[q, Q_TIME] >> WHEEL_SHIFT
        if bucket <= last_bucket:
            _prefetch_row(M, Q[q, Q_REF])
            if bucket <= passed_bucket:
                j = len(D) - 1 - C[S_DUE]
                C[S_DUE] += 1
                D[j, 0] = Q[q, Q_TIME]
                D[j, 1] = Q[q, Q_REF]
                D[j, 2] = Q[q, Q_TAG]
            else:
                _deadline_push(D, C, Q[q, Q_TIME], Q[q, Q_REF], Q[q, Q_TAG])
            Q[q, Q_NEXT] = C[S_TIMER_FREE]
            C[S_TIMER_FREE] = q
            C[S_TIMERS] -= 1
        else:
            Q[q, Q_NEXT] = Q[head, Q_NEXT]
            Q[head, Q_NEXT] = q
        q = following


@_inline
def _wheel_advance(D: Any, Q: Any, C: Any, M: Any, watermark: int) -> None:
    """Bring every entry that may be due before `watermark` into the near heap, or into the
    due list when its whole bucket is (the bucket ends at or before the watermark)."""
    if (C[S_WHEEL_CUR] << WHEEL_SHIFT) >= watermark:
        return
    last_bucket = (watermark - 1) >> WHEEL_SHIFT
    passed_bucket = (watermark >> WHEEL_SHIFT) - 1
    if C[S_TIMERS] > 0:
        if last_bucket - C[S_WHEEL_CUR] + 1 > WHEEL_BUCKETS:
            for head in range(WHEEL_BUCKETS):  # a jump over a whole turn of the wheel
                _wheel_move(D, Q, C, M, head, last_bucket, passed_bucket)
        else:
            for bucket in range(C[S_WHEEL_CUR], last_bucket + 1):
                _wheel_move(D, Q, C, M, bucket & WHEEL_MASK, last_bucket, passed_bucket)
    C[S_WHEEL_CUR] = last_bucket + 1


@_helper
def _eviction_less(V: Any, a: Int64, W: Any, b: Int64) -> Any:
    for f in range(8):
        if V[a, f] != W[b, f]:
            return V[a, f] < W[b, f]
    return False


@_helper
def _eviction_sift_up(V: Any, i: int, tmp: Any) -> None:
    for f in range(EVICTION_FIELDS):
        tmp[0, f] = V[i, f]
    while i > 0:
        parent = (i - 1) // EVICTION_ARITY
        if not _eviction_less(tmp, _ROW0, V, parent):
            break
        for f in range(EVICTION_FIELDS):
            V[i, f] = V[parent, f]
        i = parent
    for f in range(EVICTION_FIELDS):
        V[i, f] = tmp[0, f]


@_helper
def _eviction_sift_down(V: Any, i: Int64, n: Int64, tmp: Any) -> None:
    for f in range(EVICTION_FIELDS):
        tmp[0, f] = V[i, f]
    while True:
        first = EVICTION_ARITY * i + 1
        if first >= n:
            break
        child = first
        for other in range(first + 1, min(first + EVICTION_ARITY, n)):
            if _eviction_less(V, other, V, child):
                child = other
        if not _eviction_less(V, child, tmp, _ROW0):
            break
        for f in range(EVICTION_FIELDS):
            V[i, f] = V[child, f]
        i = child
    for f in range(EVICTION_FIELDS):
        V[i, f] = tmp[0, f]


@_helper
def _eviction_push(V: Any, C: Any, M: Any, r: int, tmp: Any) -> None:
    i = C[S_EVICTION_ENTRIES]
    C[S_EVICTION_ENTRIES] = i + 1
    _eviction_entry(V, i, M, r)
    _eviction_sift_up(V, i, tmp)


@_helper
def _eviction_entry(V: Any, i: Int64, M: Any, r: int) -> None:
    """V[i] := (last_seen, key, row, serial) of the open session in M[r]."""
    V[i, 0] = M[r, R.F_LAST]
    V[i, 1] = M[r, R.F_PROTO]
    V[i, 2] = M[r, R.F_LO_HI]
    V[i, 3] = M[r, R.F_LO_LO]
    V[i, 4] = M[r, R.F_LO_PORT]
    V[i, 5] = M[r, R.F_HI_HI]
    V[i, 6] = M[r, R.F_HI_LO]
    V[i, 7] = M[r, R.F_HI_PORT]
    V[i, 8] = r
    V[i, 9] = M[r, R.F_SERIAL]


@_helper
def _eviction_pop(V: Any, C: Any, tmp: Any) -> None:
    n = C[S_EVICTION_ENTRIES] - 1
    C[S_EVICTION_ENTRIES] = n
    if n > 0:
        for f in range(EVICTION_FIELDS):
            V[0, f] = V[n, f]
        _eviction_sift_down(V, _ZERO, n, tmp)


@_helper
def _eviction_refresh_top(V: Any, C: Any, M: Any, tmp: Any) -> None:
    """The top entry's session was seen since it was queued: its last_seen now, sifted down
    in place (what a pop and a push of the same entry would give, for one sift)."""
    V[0, 0] = M[V[0, 8], R.F_LAST]
    _eviction_sift_down(V, _ZERO, C[S_EVICTION_ENTRIES], tmp)


@_inline
def _eviction_prefetch_top(V: Any, C: Any, M: Any, E: Any) -> None:
    """Start loading what evicting the top entry's session will read: its row and its two
    endpoint entries (home positions, from the key the entry holds). At the cap every new
    session evicts one, and these are cold: the oldest session was last touched long ago."""
    if C[S_EVICTION_ENTRIES] > 0:
        _prefetch_row(M, V[0, 8])
        tag = ENDPOINT_USED | V[0, 1] << 16
        _prefetch(E, _endpoint_home(E, tag | V[0, 4], V[0, 2], V[0, 3]), 0)
        _prefetch(E, _endpoint_home(E, tag | V[0, 7], V[0, 5], V[0, 6]), 0)


@_inline
def _eviction_valid(V: Any, i: int, M: Any) -> Any:
    """The entry's session is still open (a freed row's serial is -1, a reused one's new)."""
    return M[V[i, 8], R.F_SERIAL] == V[i, 9]


@_helper
def _eviction_rebuild(V: Any, C: Any, M: Any, tmp: Any) -> None:
    """Drop entries of sessions that closed otherwise; keeps the heap near the open count."""
    n = C[S_EVICTION_ENTRIES]
    kept = _ZERO
    for i in range(n):
        if _eviction_valid(V, i, M):
            for f in range(EVICTION_FIELDS):
                V[kept, f] = V[i, f]
            V[kept, 0] = M[V[kept, 8], R.F_LAST]
            kept += 1
    C[S_EVICTION_ENTRIES] = kept
    for i in range((kept - 2) // EVICTION_ARITY, -1, -1):
        _eviction_sift_down(V, i, kept, tmp)


@_helper
def _eviction_build(V: Any, C: Any, S: Any, M: Any, tmp: Any) -> None:
    """Queue every open session (the cap is reached: from now on victims are needed)."""
    kept = _ZERO
    for slot in range(C[S_SLOTS]):
        if S[slot, R.SL_STATUS] & R.STATUS_OPEN:
            _eviction_entry(V, kept, M, S[slot, R.SL_STATUS] >> R.STATUS_ROW_SHIFT)
            kept += 1
    C[S_EVICTION_ENTRIES] = kept
    for i in range((kept - 2) // EVICTION_ARITY, -1, -1):
        _eviction_sift_down(V, i, kept, tmp)
    C[S_EVICTION_ON] = 1


# -- hash tables --------------------------------------------------------------------------
@_inline
def _endpoint_home(E: Any, tag: int, hi: int, lo: int) -> np.int64:
    return np.int64(_mix(_mix(np.uint64(tag), hi), lo) >> np.uint64(1)) & (len(E) - 1)


@_inline
def _prefetch_close(S: Any, E: Any, M: Any, r: int) -> None:
    """Start loading what closing the session in row r touches besides its row: its slot
    (status and the remembered session) and its two endpoint entries, all cold since it
    opened. Reads the row's first line: call it once that line has been asked for. A
    stale r (its session gone) is harmless: the addresses are only a hint."""
    _prefetch_slot(S, M[r, R.F_SLOT])
    tag = ENDPOINT_USED | M[r, R.F_PROTO] << 16
    _prefetch(E, _endpoint_home(E, tag | M[r, R.F_LO_PORT], M[r, R.F_LO_HI], M[r, R.F_LO_LO]), 0)
    _prefetch(E, _endpoint_home(E, tag | M[r, R.F_HI_PORT], M[r, R.F_HI_HI], M[r, R.F_HI_LO]), 0)


@_helper
def _endpoint_find(E: Any, tag: int, hi: int, lo: int) -> np.int64:
    """Entry of an endpoint known to be in the table."""
    mask = len(E) - 1
    e = _endpoint_home(E, tag, hi, lo)
    while E[e, E_TAG] != tag or E[e, E_HI] != hi or E[e, E_LO] != lo:
        e = (e + 1) & mask
    return e


@_helper
def _endpoint_acquire(E: Any, C: Any, proto: int, hi: int, lo: int, port: int) -> None:
    """One more open session on the endpoint (a new entry if it had none)."""
    tag = ENDPOINT_USED | proto << 16 | port
    mask = len(E) - 1
    e = _endpoint_home(E, tag, hi, lo)
    while True:
        found = E[e, E_TAG]
        if found == 0:
            E[e, E_TAG] = tag
            E[e, E_HI] = hi
            E[e, E_LO] = lo
            E[e, E_COUNTS] = 1 | 1 << 32
            C[S_ENDPOINTS] += 1
            return
        if found == tag and E[e, E_HI] == hi and E[e, E_LO] == lo:
            counts = E[e, E_COUNTS]
            count = (counts & COUNT_MASK) + 1
            peak = counts >> 32
            E[e, E_COUNTS] = count | (count if count > peak else peak) << 32
            return
        e = (e + 1) & mask


@_helper
def _endpoint_peak(E: Any, proto: int, hi: int, lo: int, port: int) -> Any:
    return E[_endpoint_find(E, ENDPOINT_USED | proto << 16 | port, hi, lo), E_COUNTS] >> 32


@_helper
def _endpoint_release(E: Any, C: Any, proto: int, hi: int, lo: int, port: int) -> Any:
    """One open session fewer on the endpoint; -> its peak. The entry goes with its last
    session, and the entries after it in its run move back (backward-shift deletion), so
    that the table needs no tombstones."""
    e = _endpoint_find(E, ENDPOINT_USED | proto << 16 | port, hi, lo)
    counts = E[e, E_COUNTS]
    peak = counts >> 32
    if counts & COUNT_MASK > 1:
        E[e, E_COUNTS] = counts - 1
        return peak
    C[S_ENDPOINTS] -= 1
    mask = len(E) - 1
    hole = e
    j = e
    while True:
        j = (j + 1) & mask
        if E[j, E_TAG] == 0:
            break
        home = _endpoint_home(E, E[j, E_TAG], E[j, E_HI], E[j, E_LO])
        # the entry at j may fill the hole unless its home lies cyclically in (hole, j]
        if (j - home) & mask >= (j - hole) & mask:
            E[hole, E_TAG] = E[j, E_TAG]
            E[hole, E_HI] = E[j, E_HI]
            E[hole, E_LO] = E[j, E_LO]
            E[hole, E_COUNTS] = E[j, E_COUNTS]
            hole = j
    E[hole, E_TAG] = 0
    return peak


@_helper
def _output(OUT: Any, C: Any, M: Any, s: Int64) -> None:
    """The output row of the final session M[s] becomes column C[S_OUT] of OUT."""
    o = C[S_OUT]
    C[S_OUT] = o + 1
    if o & 7 == 0:
        # a column is one word in each of the 41 rows of OUT, so a session written
        # misses in 41 cache lines once per 8 sessions (the largest cost of a session that
        # opens and closes at once, as in a scan): start loading those of a later column
        for k in range(R.OUTPUT_FIELD_COUNT):
            _prefetch_write(OUT, k, o + OUTPUT_AHEAD)
    for k in range(R.OUTPUT_FIELD_COUNT):
        OUT[k, o] = M[s, R.OUTPUT_FIELD_INDEX[k]]


@_helper
def _close(
    S: Any,
    M: Any,
    G: Any,
    r: int,
    closed_at: int,
    reason: int,
    emit: int,
    P: Any,
    C: Any,
    OUT: Any,
    E: Any,
    known: Any,
) -> None:
    """The open session in M[r] leaves: row to OUT, remembered in its slot as the key's last
    closed one; the row goes back on the free stack G with serial -1, so that queued timer
    and eviction entries naming it fail their serial check."""
    slot = M[r, R.F_SLOT]
    proto = M[r, R.F_PROTO]
    peak0 = _endpoint_release(E, C, proto, M[r, R.F_LO_HI], M[r, R.F_LO_LO], M[r, R.F_LO_PORT])
    peak1 = _endpoint_release(E, C, proto, M[r, R.F_HI_HI], M[r, R.F_HI_LO], M[r, R.F_HI_PORT])
    _finalize(M, r, S, slot, C, closed_at, reason, emit, peak0, peak1, known)
    _output(OUT, C, M, r)
    if _rememberable(S, slot, C, M, r):
        _remember(S, slot, M, r, P, C)
    else:
        _add_refusals(S, slot, M, r)
    S[slot, R.SL_STATUS] &= R.STATUS_PREV
    M[r, R.F_SERIAL] = -1
    G[C[S_ROWS_FREE]] = r
    C[S_ROWS_FREE] += 1
    C[S_OPEN] -= 1


@_inline
def _sweep_entry(
    S: Any,
    M: Any,
    G: Any,
    P: Any,
    C: Any,
    OUT: Any,
    D: Any,
    Q: Any,
    E: Any,
    known: Any,
    watermark: int,
    emit: int,
    t: int,
    ref: int,
    tag: int,
) -> None:
    """A queued deadline (t, session row, serial) that came due: close the session, or queue
    it again under its real, later deadline."""
    r = ref  # a session row; stale once its session closed (serial -1 or another's)
    if M[r, R.F_SERIAL] != tag or M[r, R.F_QUEUED] != t:
        return
    deadline, reason = _deadline(M, r, P)
    if deadline < watermark:
        _close(S, M, G, r, deadline, reason, emit, P, C, OUT, E, known)
    else:
        M[r, R.F_QUEUED] = deadline
        _timer_push(D, Q, C, deadline, ref, tag)


@_helper
def _sweep_due(
    S: Any,
    M: Any,
    G: Any,
    P: Any,
    C: Any,
    OUT: Any,
    D: Any,
    Q: Any,
    E: Any,
    known: Any,
    watermark: int,
    emit: int,
) -> None:
    """The due list's entries (wheel buckets the watermark passed whole: all due), last in
    first out, without the near heap's sift per entry: a jump of the watermark, a gap in
    the traffic, closes whole buckets at once. Nothing observable depends on the order of
    the closes of one sweep: they share the record after which they are final (output rows
    are sorted later), every key has at most one of them, and an endpoint's peak is not
    changed by a release. A call, not inlined: a second inlined copy of _sweep_entry in
    each of replay's sweeps added ~12 s to the kernel's first compilation."""
    while C[S_DUE] > 0:
        C[S_DUE] -= 1
        j = len(D) - 1 - C[S_DUE]
        if C[S_DUE] > 2 * DUE_AHEAD:
            # the wheel's prefetch of the rows of a large due list is gone by the time
            # their turn comes: again, twice as far ahead
            _prefetch_row(M, D[j + 2 * DUE_AHEAD, 1])
        if C[S_DUE] > DUE_AHEAD:
            _prefetch_close(S, E, M, D[j + DUE_AHEAD, 1])
        _sweep_entry(S, M, G, P, C, OUT, D, Q, E, known, watermark, emit, D[j, 0], D[j, 1], D[j, 2])


@_inline
def _sweep(
    S: Any,
    M: Any,
    G: Any,
    P: Any,
    C: Any,
    OUT: Any,
    D: Any,
    Q: Any,
    E: Any,
    known: Any,
    watermark: int,
    emit: int,
) -> None:
    _wheel_advance(D, Q, C, M, watermark)
    if C[S_DUE] > 0:
        _sweep_due(S, M, G, P, C, OUT, D, Q, E, known, watermark, emit)
    while C[S_DEADLINES] > 0 and D[0, 0] < watermark:
        t = D[0, 0]
        ref = D[0, 1]
        tag = D[0, 2]
        _deadline_pop(D, C)
        if C[S_DEADLINES] > 0:
            # the next entry to come due, a record or more from now (the wheel's prefetch
            # of its row is long gone): its row's serial and queued deadline, read first,
            # and what its close touches; the first line of its row was asked for at the
            # pop before, as a child of the top, and so are its children's now
            _prefetch_row(M, D[0, 1])
            _prefetch_close(S, E, M, D[0, 1])
            if C[S_DEADLINES] > 2:
                _prefetch(M, D[1, 1], 0)
                _prefetch(M, D[2, 1], 0)
        _sweep_entry(S, M, G, P, C, OUT, D, Q, E, known, watermark, emit, t, ref, tag)
    # the reference forgets remembered sessions after the closes of its sweep
    C[S_SWEPT] = watermark
    C[S_LATE_SWEPT] = C[S_RECORDS]


@_helper
def _sweep_call(
    S: Any,
    M: Any,
    G: Any,
    P: Any,
    C: Any,
    OUT: Any,
    D: Any,
    Q: Any,
    E: Any,
    known: Any,
    watermark: int,
    emit: int,
) -> None:
    """_sweep as a call, for the rare paths (a record meeting a full cap, a stray, the end of
    input): each inlined copy of the sweep added ~8 s to the kernel's first compilation."""
    _sweep(S, M, G, P, C, OUT, D, Q, E, known, watermark, emit)


@_helper
def _stray(
    X: Any,
    M: Any,
    r: int,
    S: Any,
    slot: int,
    C: Any,
    P: Any,
    OUT: Any,
    known: Any,
    late: int,
    identity: int,
    emit: int,
    d: int,
    first: int,
    last: int,
    dst_port: int,
    domain: int,
    flags: int,
    packets: int,
    octets: int,
    reverse_packets: int,
    reverse_octets: int,
    sampling: int,
    scaled: int,
    src_declared: int,
    dst_declared: int,
) -> Any:
    """A stray record of the open session in M[r]: a session of its own, built in the
    scratch row X[_ROW0] and closed at once; -> its serial. A call, not inlined: strays are
    rare, and the inlined copies of _apply and the rest cost seconds of compilation."""
    for f in range(R.KEY_END):
        X[_ROW0, f] = M[r, f]
    _init_session(X, _ROW0, C[S_SERIALS], late)
    X[_ROW0, R.F_IDENTITY] = identity
    X[_ROW0, R.F_DEEP] = 1  # a stray's dup is its identity too (rule 6)
    C[S_SERIALS] += 1
    _new_links(X, _ROW0, S, slot, C, P, first, last, late, flags, _STRAY)
    _apply(
        X,
        _ROW0,
        d,
        first,
        last,
        dst_port,
        domain,
        flags,
        packets,
        octets,
        reverse_packets,
        reverse_octets,
        sampling,
        scaled,
        src_declared,
        dst_declared,
    )
    deadline, reason = _deadline(X, _ROW0, P)
    _finalize(X, _ROW0, S, slot, C, deadline, reason, emit, _ZERO, _ZERO, known)
    _output(OUT, C, X, _ROW0)
    if _rememberable(S, slot, C, X, _ROW0):
        _remember(S, slot, X, _ROW0, P, C)
    else:
        _add_refusals(S, slot, X, _ROW0)
    return X[_ROW0, R.F_SERIAL]


@_helper
def replay(
    first_seen: Any,
    last_seen: Any,
    src_hi: Any,
    src_lo: Any,
    dst_hi: Any,
    dst_lo: Any,
    src_port: Any,
    dst_port: Any,
    protocol: Any,
    tcp_flags: Any,
    packets: Any,
    octets: Any,
    reverse_packets: Any,
    reverse_octets: Any,
    sampling_rate: Any,
    counters_scaled: Any,
    exporter_domain: Any,
    src_declared: Any,
    dst_declared: Any,
    index: Any,
    identity: Any,
    start: int,
    serial_out: Any,
    direction_out: Any,
    S: Any,
    B: Any,
    F: Any,
    M: Any,
    G: Any,
    P: Any,
    C: Any,
    OUT: Any,
    D: Any,
    Q: Any,
    V: Any,
    E: Any,
    known: Any,
    tmp: Any,
    X: Any,
    H: Any,
) -> tuple[int, int]:
    """Replay records start.. of one exporter; -> (status, next record to process).

    `tmp` (1 x EVICTION_FIELDS), `X` (1 x ROW_WIDTH) and `H` (RING_MASK + 1 x 8: each
    record ahead's hash, direction and canonical key, computed once) are scratch,
    passed in so that the replay allocates nothing and runs without reference counting too.
    """
    n = len(first_seen)
    hard = P[P_HARD]
    # a record starting before watermark - min_idle - grace makes its session deep (rule 6)
    min_idle = min(
        P[P_IDLE_ESTABLISHED], P[P_IDLE_HALF_OPEN], P[P_IDLE_UDP], P[P_IDLE_ICMP], P[P_IDLE_OTHER]
    )
    event = P[P_EVENT] != 0
    # the longest record so far, in a register: C[S_MAX_SPAN] (which closes read) is stored
    # only when it grows; loading it from C for every record cost ~10% on the SYN scan
    max_span = C[S_MAX_SPAN]
    for j in range(start, min(start + LOOKAHEAD, n)):
        _ring_key(H, j, protocol, src_hi, src_lo, src_port, dst_hi, dst_lo, dst_port)
    for i in range(start, n):
        # room for the worst case of one record: a new slot, a stray, an eviction and a
        # sweep that closes every open session
        if C[S_FREE_TOP] < 2:
            return NEED_SLOTS, i
        if C[S_ROWS_FREE] < 1:  # a new session's row is taken before the cap's victim leaves
            return NEED_ROWS, i
        if C[S_OUT] + C[S_OPEN] + 4 > OUT.shape[1]:
            return NEED_OUTPUT, i
        if C[S_DEADLINES] + C[S_TIMERS] + C[S_OPEN] + 8 > len(D):
            return NEED_DEADLINES, i
        if C[S_EVICTION_ON]:
            if 2 * C[S_OPEN] < P[P_CAP]:
                # far from the cap again: stop paying a heap push per new session
                C[S_EVICTION_ON] = 0
                C[S_EVICTION_ENTRIES] = 0
            elif C[S_EVICTION_ENTRIES] + 4 > len(V):
                if C[S_EVICTION_ENTRIES] > 2 * C[S_OPEN] + 64:
                    _eviction_rebuild(V, C, M, tmp)
                if C[S_EVICTION_ENTRIES] + 4 > len(V):
                    return NEED_EVICTIONS, i
        elif C[S_OPEN] >= P[P_CAP] and C[S_OPEN] + 8 > len(V):
            return NEED_EVICTIONS, i
        if 2 * (C[S_ENDPOINTS] + 2) > len(E):
            return NEED_ENDPOINTS, i

        if (i & 7) == 0 and i + RECORD_AHEAD < n:
            # the record columns a few cache lines ahead: two dozen input columns and the
            # output columns are more streams than the hardware prefetchers follow
            j = i + RECORD_AHEAD
            _prefetch(first_seen, j, 0)
            _prefetch(last_seen, j, 0)
            _prefetch(src_hi, j, 0)
            _prefetch(src_lo, j, 0)
            _prefetch(dst_hi, j, 0)
            _prefetch(dst_lo, j, 0)
            _prefetch(src_port, j, 0)
            _prefetch(dst_port, j, 0)
            _prefetch(protocol, j, 0)
            _prefetch(tcp_flags, j, 0)
            _prefetch(packets, j, 0)
            _prefetch(octets, j, 0)
            _prefetch(reverse_packets, j, 0)
            _prefetch(reverse_octets, j, 0)
            _prefetch(sampling_rate, j, 0)
            _prefetch(counters_scaled, j, 0)
            _prefetch(exporter_domain, j, 0)
            _prefetch(src_declared, j, 0)
            _prefetch(dst_declared, j, 0)
            _prefetch(index, j, 0)
            _prefetch(identity, j, 0)
            _prefetch_write(serial_out, j, 0)
            if (i & 63) == 0:
                # int8, 64 records a line: at most half a line ahead (the line about to
                # be written when aligned); a whole line ahead measured ~4% slower on the
                # SYN scan (compare_kernel.py, two runs of 8 rounds), cause not looked into
                _prefetch_write(direction_out, j, 0)
        first = first_seen[i]
        last = last_seen[i]
        if last - first > max_span:  # idempotent: a record replayed after a NEED_* too
            max_span = last - first
            C[S_MAX_SPAN] = max_span
        clock = first if event else last
        C[S_RECORDS] += 1
        emit = index[i]
        proto = protocol[i]
        ring = i & RING_MASK
        h = H[ring, 0]
        d = H[ring, 1]
        k1 = H[ring, 2]
        k2 = H[ring, 3]
        k3 = H[ring, 4]
        k4 = H[ring, 5]
        k5 = H[ring, 6]
        k6 = H[ring, 7]
        ahead = i + LOOKAHEAD
        if ahead < n:
            # a record a little ahead: its key and hash into the ring, and start loading its
            # hash bucket and the endpoint entries it would touch if it opens a session
            # (cold for a new key)
            _ring_key(H, ahead, protocol, src_hi, src_lo, src_port, dst_hi, dst_lo, dst_port)
            ra = ahead & RING_MASK
            p = protocol[ahead]
            _prefetch(B, H[ra, 0] & (len(B) - 1), 0)
            _prefetch(
                E, _endpoint_home(E, ENDPOINT_USED | p << 16 | H[ra, 4], H[ra, 2], H[ra, 3]), 0
            )
            _prefetch(
                E, _endpoint_home(E, ENDPOINT_USED | p << 16 | H[ra, 7], H[ra, 5], H[ra, 6]), 0
            )
        ahead = i + SLOT_AHEAD
        if ahead < n:
            # its bucket has arrived: start loading the first slot of its chain
            sa = B[H[ahead & RING_MASK, 0] & (len(B) - 1)]
            if sa >= 0:
                _prefetch(S, sa, 0)
        ahead = i + ROW_AHEAD
        if ahead < n:
            # its slot has arrived: if it holds an open session, start loading the row's
            # hot lines (a record of a known conversation reads and writes them)
            ha = H[ahead & RING_MASK, 0]
            sa = B[ha & (len(B) - 1)]
            if sa >= 0 and S[sa, R.SL_HASH] == ha:
                status = S[sa, R.SL_STATUS]
                if status & R.STATUS_OPEN:
                    ra = status >> R.STATUS_ROW_SHIFT
                    for f in range(0, R.HOT_END, 8):
                        _prefetch(M, ra, f)
        late = 0
        deep = 0
        if C[S_HAS_MAX_LAST]:
            if last < C[S_MAX_LAST] - P[P_GRACE]:
                late = 1
            if first < C[S_MAX_LAST] - P[P_GRACE] - min_idle - P[P_GRACE]:
                deep = 1
        b = h & (len(B) - 1)
        ports = proto << 32 | k3 << 16 | k6
        slot = B[b]
        while slot >= 0:
            if (
                S[slot, R.SL_HASH] == h
                and S[slot, R.SL_PORTS] == ports
                and S[slot, R.SL_LO_HI] == k1
                and S[slot, R.SL_LO_LO] == k2
                and S[slot, R.SL_HI_HI] == k4
                and S[slot, R.SL_HI_LO] == k5
            ):
                break
            slot = S[slot, R.SL_NEXT]

        target = -1  # the session row that takes the record
        is_new = True
        if slot >= 0 and (S[slot, R.SL_STATUS] & R.STATUS_OPEN):
            r = S[slot, R.SL_STATUS] >> R.STATUS_ROW_SHIFT
            idle = _idle(M, r, P)
            if (
                first > M[r, R.F_LAST] + idle
                or first >= M[r, R.F_OPENED] + hard
                or (first > M[r, R.F_LAST] and (tcp_flags[i] & R.SYN_EITHER) and _finished(M, r))
            ):  # a new connection on the 5-tuple (reference 2b')
                deadline, reason = _deadline(M, r, P)
                _close(S, M, G, r, deadline, reason, emit, P, C, OUT, E, known)
            elif first < M[r, R.F_OPENED] and (
                last + idle < M[r, R.F_OPENED] or first + hard <= M[r, R.F_MAX_FIRST]
            ):
                # a stray: a session of its own, built in a scratch row and closed at once
                serial_out[i] = _stray(
                    X,
                    M,
                    r,
                    S,
                    slot,
                    C,
                    P,
                    OUT,
                    known,
                    late,
                    identity[i],
                    emit,
                    d,
                    first,
                    last,
                    dst_port[i],
                    exporter_domain[i],
                    tcp_flags[i],
                    packets[i],
                    octets[i],
                    reverse_packets[i],
                    reverse_octets[i],
                    sampling_rate[i],
                    counters_scaled[i],
                    src_declared[i],
                    dst_declared[i],
                )
                direction_out[i] = d
                _advance(C, clock, last, event)
                _sweep_call(S, M, G, P, C, OUT, D, Q, E, known, C[S_MAX_LAST] - P[P_GRACE], emit)
                continue
            else:
                target = r
                is_new = False
                if late:
                    M[r, R.F_LATE_RECORDS] += 1

        if is_new:
            if slot < 0:
                C[S_FREE_TOP] -= 1
                slot = F[C[S_FREE_TOP]]
                if C[S_FREE_TOP] > 0:  # the next new key's slot, cold since its last use
                    _prefetch_slot(S, F[C[S_FREE_TOP] - 1])
                C[S_USED] += 1
                S[slot, R.SL_STATUS] = 0
                S[slot, R.SL_HASH] = h
                S[slot, R.SL_PORTS] = ports
                S[slot, R.SL_LO_HI] = k1
                S[slot, R.SL_LO_LO] = k2
                S[slot, R.SL_HI_HI] = k4
                S[slot, R.SL_HI_LO] = k5
                S[slot, R.SL_NEXT] = B[b]
                B[b] = slot
            C[S_ROWS_FREE] -= 1
            target = G[C[S_ROWS_FREE]]
            if C[S_ROWS_FREE] > 0:  # the next new session's row
                _prefetch_row(M, G[C[S_ROWS_FREE] - 1])
            M[target, R.F_PROTO] = proto
            M[target, R.F_LO_HI] = k1
            M[target, R.F_LO_LO] = k2
            M[target, R.F_LO_PORT] = k3
            M[target, R.F_HI_HI] = k4
            M[target, R.F_HI_LO] = k5
            M[target, R.F_HI_PORT] = k6
            M[target, R.F_SLOT] = slot
            _init_session(M, target, C[S_SERIALS], late)
            M[target, R.F_IDENTITY] = identity[i]
            C[S_SERIALS] += 1
            _new_links(M, target, S, slot, C, P, first, last, late, tcp_flags[i], _NOT_STRAY)

        # a new session takes its record before the cap is checked (its deadline decides it)
        _apply(
            M,
            target,
            d,
            first,
            last,
            dst_port[i],
            exporter_domain[i],
            tcp_flags[i],
            packets[i],
            octets[i],
            reverse_packets[i],
            reverse_octets[i],
            sampling_rate[i],
            counters_scaled[i],
            src_declared[i],
            dst_declared[i],
        )

        if is_new:
            now = clock
            if C[S_HAS_MAX_LAST] and C[S_MAX_LAST] > now:
                now = C[S_MAX_LAST]
            # a victim closes at the newest last_seen (in arrival replay the clock itself):
            # under event replay the clock lags it, and a victim would close before its end
            evict_at = max(last, C[S_NEWEST_LAST]) if event else now
            if C[S_OPEN] >= P[P_CAP]:
                # sessions the watermark of this record closes anyway leave by their own
                # deadline first; only a session still open is a victim (reference rule 4)
                _sweep_call(S, M, G, P, C, OUT, D, Q, E, known, now - P[P_GRACE], emit)
            # a session that watermark has passed already (a late record's, or a fragment due
            # at its opening) closes in the sweep after its record: it takes no live one's
            # place, and the peak never counts it beyond the cap (reference rule 4)
            if C[S_OPEN] >= P[P_CAP] and _deadline(M, target, P)[0] >= now - P[P_GRACE]:
                if not C[S_EVICTION_ON]:
                    _eviction_build(V, C, S, M, tmp)
                while True:
                    if not _eviction_valid(V, 0, M):
                        _eviction_pop(V, C, tmp)
                        continue
                    victim = V[0, 8]
                    if V[0, 0] != M[victim, R.F_LAST]:
                        _eviction_refresh_top(V, C, M, tmp)
                        continue
                    _eviction_pop(V, C, tmp)
                    _close(S, M, G, victim, evict_at, R.REASON_EVICTED, emit, P, C, OUT, E, known)
                    _eviction_prefetch_top(V, C, M, E)
                    break
                C[S_EVICTIONS] += 1
                if C[S_EVICTIONS] == 1:
                    C[S_FIRST_EVICTION] = evict_at
                C[S_LAST_EVICTION] = evict_at
            S[slot, R.SL_STATUS] |= target << R.STATUS_ROW_SHIFT | R.STATUS_OPEN
            C[S_OPEN] += 1
            if C[S_PEAK_OPEN] < C[S_OPEN] <= P[P_CAP]:
                C[S_PEAK_OPEN] = C[S_OPEN]
            _endpoint_acquire(E, C, proto, k1, k2, k3)
            _endpoint_acquire(E, C, proto, k4, k5, k6)

        if deep:
            M[target, R.F_DEEP] = 1
        if is_new and C[S_EVICTION_ON]:
            _eviction_push(V, C, M, target, tmp)
        deadline, reason = _deadline(M, target, P)
        if deadline < M[target, R.F_QUEUED]:
            M[target, R.F_QUEUED] = deadline
            _timer_push(D, Q, C, deadline, target, M[target, R.F_SERIAL])
        serial_out[i] = M[target, R.F_SERIAL]
        direction_out[i] = d
        _advance(C, clock, last, event)
        _sweep(S, M, G, P, C, OUT, D, Q, E, known, C[S_MAX_LAST] - P[P_GRACE], emit)
    return DONE, n


@_inline
def _advance(C: Any, clock: int, last: int, event: bool) -> None:
    """After a record: the newest clock (the watermark plus grace), and under event replay
    the newest last_seen apart (in arrival replay they are one)."""
    if clock > C[S_MAX_LAST] or not C[S_HAS_MAX_LAST]:
        C[S_MAX_LAST] = clock
        C[S_HAS_MAX_LAST] = 1
    if event and last > C[S_NEWEST_LAST]:
        C[S_NEWEST_LAST] = last


@_jit
def finish(
    S: Any, M: Any, G: Any, P: Any, C: Any, OUT: Any, D: Any, Q: Any, E: Any, known: Any, emit: int
) -> None:
    """End of input: sweep just past the newest last_seen (nothing can arrive after it, so a
    session due at that very instant closes: a connection whose FINs end the capture), then
    every open session leaves as is."""
    if C[S_HAS_MAX_LAST]:
        _sweep_call(
            S,
            M,
            G,
            P,
            C,
            OUT,
            D,
            Q,
            E,
            known,
            (C[S_NEWEST_LAST] if P[P_EVENT] else C[S_MAX_LAST]) + 1,
            emit,
        )
    for slot in range(C[S_SLOTS]):
        if S[slot, R.SL_STATUS] & R.STATUS_OPEN:
            r = S[slot, R.SL_STATUS] >> R.STATUS_ROW_SHIFT
            proto = M[r, R.F_PROTO]
            peak0 = _endpoint_peak(E, proto, M[r, R.F_LO_HI], M[r, R.F_LO_LO], M[r, R.F_LO_PORT])
            peak1 = _endpoint_peak(E, proto, M[r, R.F_HI_HI], M[r, R.F_HI_LO], M[r, R.F_HI_PORT])
            _finalize(M, r, S, slot, C, _ZERO, R.REASON_OPEN, emit, peak0, peak1, known)
            _output(OUT, C, M, r)


@_jit
def _collect(S: Any, B: Any, F: Any, C: Any) -> int:
    """Free the slots that only remember an expired session; rebuild the free stack (lowest
    slot on top, so that new sessions fill memory in order) and the hash chains.
    -> free slots."""
    B[:] = -1
    top = 0
    for slot in range(C[S_SLOTS] - 1, -1, -1):
        status = S[slot, R.SL_STATUS]
        if status == R.STATUS_PREV and not _prev_alive(S, slot, C):
            status = 0
            S[slot, R.SL_STATUS] = 0
        if status == 0:
            F[top] = slot
            top += 1
        else:
            b = S[slot, R.SL_HASH] & (len(B) - 1)
            S[slot, R.SL_NEXT] = B[b]
            B[b] = slot
    C[S_FREE_TOP] = top
    C[S_USED] = C[S_SLOTS] - top
    return top


@_jit
def _rehash(S: Any, B: Any, slots: int) -> None:
    B[:] = -1
    for slot in range(slots):
        if S[slot, R.SL_STATUS] != 0:
            b = S[slot, R.SL_HASH] & (len(B) - 1)
            S[slot, R.SL_NEXT] = B[b]
            B[b] = slot


@_jit
def _endpoint_rehash(old: Any, E: Any) -> None:
    """Every entry of `old` into the empty table E (twice as large)."""
    mask = len(E) - 1
    for k in range(len(old)):
        tag = old[k, E_TAG]
        if tag != 0:
            e = _endpoint_home(E, tag, old[k, E_HI], old[k, E_LO])
            while E[e, E_TAG] != 0:
                e = (e + 1) & mask
            E[e, E_TAG] = tag
            E[e, E_HI] = old[k, E_HI]
            E[e, E_LO] = old[k, E_LO]
            E[e, E_COUNTS] = old[k, E_COUNTS]


def _policy_vector(policy: SessionPolicy) -> npt.NDArray[np.int64]:
    vector = np.zeros(9, dtype=np.int64)
    vector[P_HARD] = policy.hard_timeout_us
    vector[P_GRACE] = policy.grace_us
    vector[P_CAP] = policy.max_open_sessions
    vector[P_IDLE_ESTABLISHED] = policy.idle_tcp_established_us
    vector[P_IDLE_HALF_OPEN] = policy.idle_tcp_half_open_us
    vector[P_IDLE_UDP] = policy.idle_udp_us
    vector[P_IDLE_ICMP] = policy.idle_icmp_us
    vector[P_IDLE_OTHER] = policy.idle_other_us
    vector[P_EVENT] = policy.replay == "event"
    return vector


class OutputRows:
    """The output buffer the kernel writes closed sessions to (OUT, [field, session]),
    shared by every exporter's replay of one Sessionizer: each writes its rows after the
    rows the others wrote in the same round (the records of one batch, or the end of input),
    and the Sessionizer consumes all of them before the next round. One buffer, sized for
    the busiest round, where a buffer per exporter kept each exporter's largest batch
    (~24 MB at 65,536 records) for the rest of the run: captures read one router after
    another held 40 MB for every router already read."""

    def __init__(self) -> None:
        self.OUT = np.empty((R.OUTPUT_FIELD_COUNT, 0), dtype=np.int64)
        self.used = 0  # columns written this round

    def new_round(self) -> None:
        """The rows of the last round are consumed: write from the start again."""
        self.used = 0

    def reserve(self, rows: int) -> None:
        """Room for `rows` more columns this round. A new buffer when short, sized for this
        round's rows so far as well (the next round of the same shape then fits), and an
        eighth more, so that rounds of one size do not grow it again (and touch fresh pages)
        each time the open count creeps up; the rows written before stay in the old buffer,
        alive while the views taken of them are."""
        if self.OUT.shape[1] < self.used + rows:
            self._fresh(self.used + rows)

    def move(self, end: int, rows: int) -> int:
        """The rows written since `used` (up to `end`) moved to the start of a new buffer
        with room for `rows` more; -> where the next row goes."""
        kept: np.ndarray[tuple[int, int], np.dtype[np.int64]] = self.OUT[:, self.used : end]
        self._fresh(end + rows)
        self.OUT[:, : kept.shape[1]] = kept
        return kept.shape[1]

    def _fresh(self, rows: int) -> None:
        """A new, empty buffer for `rows` columns and an eighth more."""
        self.OUT = np.empty((R.OUTPUT_FIELD_COUNT, rows * 9 // 8), dtype=np.int64)
        self.used = 0


class KernelReplay:
    """One exporter's kernel state, grown on demand; same interface as ReferenceReplay.
    `output`: the buffer it writes its closed sessions to, shared with the other exporters'
    replays, whose owner starts its rounds (OutputRows; if none, its own, each process() and
    finish() a round)."""

    def __init__(
        self,
        policy: SessionPolicy,
        known_ports: npt.NDArray[np.bool_],
        capacity: int = INITIAL_CAPACITY,
        output: OutputRows | None = None,
    ) -> None:
        self.policy = policy
        self.known = np.ascontiguousarray(known_ports, dtype=np.bool_)
        self.P = _policy_vector(policy)
        self.C = np.zeros(SCALAR_COUNT, dtype=np.int64)
        self.S = R.new_rows(capacity, R.SLOT_WIDTH)
        self.B = np.full(_buckets_for(capacity), -1, dtype=np.int64)
        self.F = np.arange(capacity - 1, -1, -1, dtype=np.int64)
        self.C[S_FREE_TOP] = capacity
        self.C[S_SLOTS] = capacity
        self.C[S_SWEPT] = R.TIME_MIN
        self.C[S_NEWEST_LAST] = R.TIME_MIN
        self.M = R.new_rows(capacity)
        self.G = np.arange(capacity - 1, -1, -1, dtype=np.int64)
        self.C[S_ROWS_FREE] = capacity
        self._own_output = output is None
        self.output = OutputRows() if output is None else output
        self.D = np.zeros((2 * capacity + 16, 3), dtype=np.int64)
        self.Q = np.zeros((WHEEL_BUCKETS + len(self.D), 4), dtype=np.int64)
        self.Q[:WHEEL_BUCKETS, Q_NEXT] = -1
        self.Q[WHEEL_BUCKETS:, Q_NEXT] = np.arange(
            WHEEL_BUCKETS + 1, WHEEL_BUCKETS + len(self.D) + 1
        )
        self.Q[-1, Q_NEXT] = -1
        self.C[S_TIMER_FREE] = WHEEL_BUCKETS
        self.C[S_WHEEL_CUR] = R.TIME_MIN >> WHEEL_SHIFT
        self.V = np.zeros((capacity + 16, EVICTION_FIELDS), dtype=np.int64)
        self.E = _endpoint_table(_buckets_for(2 * capacity))
        self._scratch_eviction = np.zeros((1, EVICTION_FIELDS), dtype=np.int64)
        self._scratch_row = R.new_rows(1)
        self._ring = np.zeros((RING_MASK + 1, 8), dtype=np.int64)

    def process(
        self, records: Records
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8], npt.NDArray[np.int64]]:
        """Replay `records` (arrival order); -> (session serial, direction) per record, rows out."""
        n = len(records)
        # a batch closes at most the sessions open before it and those it opens
        self._start_output(int(self.C[S_OPEN]) + n + 8)
        serials = np.zeros(n, dtype=np.int64)
        directions = np.zeros(n, dtype=np.int8)
        # read-only, all of them: one compiled replay (jit_cache.read_only)
        columns = [read_only(getattr(records, name), np.int64) for name in RECORD_FIELDS]
        start = 0
        while True:
            # cast: mypy fills every parameter from a list of unknown length (the columns)
            status, start = cast("Callable[..., tuple[int, int]]", replay)(
                *columns,
                start,
                serials,
                directions,
                self.S,
                self.B,
                self.F,
                self.M,
                self.G,
                self.P,
                self.C,
                self.output.OUT,
                self.D,
                self.Q,
                self.V,
                self.E,
                self.known,
                self._scratch_eviction,
                self._scratch_row,
                self._ring,
            )
            if status == DONE:
                break
            self._make_room(status)
        return serials, directions, self._take_rows()

    def finish(self, emit: int) -> npt.NDArray[np.int64]:
        """End of input: the watermark becomes the newest last_seen; the rest stays open."""
        self._start_output(int(self.C[S_OPEN]) + 8)
        finish(
            self.S,
            self.M,
            self.G,
            self.P,
            self.C,
            self.output.OUT,
            self.D,
            self.Q,
            self.E,
            self.known,
            emit,
        )
        self._release()
        return self._take_rows()

    def _release(self) -> None:
        """Drop the tables once every session has left: the run goes on (other exporters'
        finish, output, consolidation) and should not carry the slot table, the session
        rows and the queues along; only the counters stay. The replay takes no more
        records."""
        empty = np.zeros((0, 1), dtype=np.int64)
        self.S = self.M = self.D = self.Q = self.V = self.E = empty
        self.B = self.F = self.G = np.zeros(0, dtype=np.int64)

    def pressure(self) -> dict[str, Any]:
        evictions = int(self.C[S_EVICTIONS])
        return {
            "evictions": evictions,
            "first_eviction_us": int(self.C[S_FIRST_EVICTION]) if evictions else None,
            "last_eviction_us": int(self.C[S_LAST_EVICTION]) if evictions else None,
            "peak_open": int(self.C[S_PEAK_OPEN]),
        }

    def _start_output(self, rows: int) -> None:
        """Room in the output buffer for `rows` sessions, written after this round's rows."""
        if self._own_output:
            self.output.new_round()
        self.output.reserve(rows)
        self.C[S_OUT] = self.output.used

    def _take_rows(self) -> npt.NDArray[np.int64]:
        """Output rows written since _start_output ([field, session]): a view of the output
        buffer, valid until its next round (the Sessionizer consumes them at once)."""
        start, count = self.output.used, int(self.C[S_OUT])
        self.output.used = count
        self.C[S_OUT] = 0
        return self.output.OUT[:, start:count]

    def _make_room(self, status: int) -> None:
        if status == NEED_OUTPUT:  # not reached: process() and finish() reserve enough
            self.C[S_OUT] = self.output.move(int(self.C[S_OUT]), int(self.C[S_OPEN]) + 8)
        elif status == NEED_SLOTS:
            # remembered sessions expire lazily: first take back the slots of those that
            # have, and grow only when that leaves less than an eighth of the table free;
            # then to half again the keys in use (not to twice the table: under a flood of
            # new keys the slots are most of the kernel's memory, and every slot a collect
            # hands out gets touched before the next one)
            old = len(self.F)
            free = _collect(self.S, self.B, self.F, self.C)
            if free >= max(2, old // 8):
                return
            new = max(old + max(2, old // 4), (old - free) * 3 // 2)
            if len(self.S) < new:
                reserve = SLOT_RESERVE if new > BUSY_SLOTS else 0
                grown = R.new_rows(max(new, 2 * len(self.S), reserve), R.SLOT_WIDTH)
                grown[:old] = self.S[:old]  # the rest are untouched zeros: left so
                self.S = grown
            self.B = np.full(_buckets_for(new), -1, dtype=np.int64)
            _rehash(self.S, self.B, old)
            self.C[S_SLOTS] = new
            top = int(self.C[S_FREE_TOP])
            self.F = np.concatenate(
                [self.F[:top], np.arange(new - 1, old - 1, -1), np.zeros(old - top, dtype=np.int64)]
            )
            self.C[S_FREE_TOP] = top + new - old
        elif status == NEED_ROWS:
            # every row is open: the open count passed a power of two (the cap bounds it)
            old = len(self.M)
            grown = R.new_rows(2 * old)
            grown[:old] = self.M
            self.M = grown
            top = int(self.C[S_ROWS_FREE])
            self.G = np.concatenate(
                [
                    self.G[:top],
                    np.arange(2 * old - 1, old - 1, -1),
                    np.zeros(old - top, dtype=np.int64),
                ]
            )
            self.C[S_ROWS_FREE] = top + old
        elif status == NEED_DEADLINES:
            old = len(self.D)
            self.D = _grown(self.D, 2 * old)
            more = np.zeros((old, 4), dtype=np.int64)
            start = len(self.Q)
            more[:, Q_NEXT] = np.arange(start + 1, start + old + 1)
            more[-1, Q_NEXT] = self.C[S_TIMER_FREE]
            self.Q = np.concatenate([self.Q, more])
            self.C[S_TIMER_FREE] = start
        elif status == NEED_EVICTIONS:
            self.V = _grown(self.V, 2 * len(self.V))
        elif status == NEED_ENDPOINTS:
            grown = _endpoint_table(2 * len(self.E))
            _endpoint_rehash(self.E, grown)
            self.E = grown
        else:
            raise AssertionError(f"unknown kernel status {status}")


def _grown(array: npt.NDArray[np.int64], rows: int) -> npt.NDArray[np.int64]:
    """`array` with at least `rows` rows, the new ones zero pages that are not touched yet
    (np.concatenate would write them: first touches of memory are what growth costs)."""
    if len(array) >= rows:
        return array
    grown = np.zeros((max(rows, 2 * len(array)), *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _endpoint_table(entries: int) -> npt.NDArray[np.int64]:
    """An empty endpoint table of `entries` (a power of two), starting on a cache line so
    that each pair of entries shares one."""
    buffer = np.zeros(entries * ENDPOINT_FIELDS + 8, dtype=np.int64)
    skip = (-buffer.ctypes.data % 64) // 8
    return buffer[skip : skip + entries * ENDPOINT_FIELDS].reshape(entries, ENDPOINT_FIELDS)


def _buckets_for(capacity: int) -> int:
    return 1 << max(4, (2 * capacity - 1).bit_length())


# numba's cache ignores the modules this one compiles in (jit_cache.py): last, so that
# every name is bound
drop_stale_jit_cache(globals())
