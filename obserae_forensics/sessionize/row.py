"""The session row: one int64 vector per session, shared by the kernel, the reference and output.

The numba kernel keeps its state in two int64 matrices. The *slot table* has one row per
key it knows (SLOT_WIDTH fields): the key, its hash chain, its status, the row of its open
session if it has one (in SL_STATUS) and the key's last closed session ("prev", the P_* fields),
remembered until it expires. The *session matrix* has one row per open session
(ROW_WIDTH fields, the F_* fields): a session's fields sit together in memory, the ones
every record touches first. A closed session leaves the kernel as its OUTPUT_FIELDS only
(the output row), written column by column so that output.py reads each field as one
contiguous vector, indexed by the O_* constants. The plain-Python reference fills the same
session row from its objects, and output.py turns output rows into SESSIONS_SCHEMA. Field
numbers are module constants because numba freezes module globals into the compiled code.

Directions are canonical: endpoint 0 ("lo") is the smaller (address, port), endpoint 1
("hi") the larger; `*0` counters go lo -> hi. Orientation (ip_a) and the server side are
decided from these at output. Addresses are stored as two 64-bit big-endian halves with the
sign bit flipped, so that a signed comparison orders them like the unsigned bytes.

The surprising thing: most keys the kernel knows have no open session. A closed session is
remembered (P_*) until last_seen + idle + grace, for late records' `follows_session_id`,
the next fragment's continuation and dup numbers; under a flood of new keys those
remembered-only keys outnumber the open sessions several times, so they live in the
compact slot table (128 bytes) and only open sessions hold a full row (512 bytes), whose
number the cap bounds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# Session row layout, hottest first: a record that extends a session reads and writes only
# fields 0..31 (four cache lines: rows start where a cache line does, new_rows).
# The key: first, so that a stray's key can be copied as a prefix.
F_PROTO = 0
F_LO_HI = 1
F_LO_LO = 2
F_LO_PORT = 3
F_HI_HI = 4
F_HI_LO = 5
F_HI_PORT = 6
KEY_END = 7
F_SLOT = 7  # the key's slot in the slot table
# The key's last closed session when this one opened (for `dup`, set at open, not zeroed by
# a new session): its opened_at (NO_TIME: none) and dup << 32 | split << 1 | late.
F_OPEN_PREV_OPENED = 8
F_OPEN_PREV_BITS = 9
# The session: fields F_SERIAL..SESSION_END-1 start at zero in a new session.
F_SERIAL = 10  # per-exporter running number of sessions (internal, never output)
F_OPENED = 11  # min first_seen
F_LAST = 12  # max last_seen
F_MAX_FIRST = 13  # max first_seen (for the hard_timeout span rule)
F_ORIENT_FS = 14  # first_seen of the orientation record (earliest record)
F_BYTES0 = 15
F_BYTES1 = 16
F_PACKETS0 = 17
F_PACKETS1 = 18
F_FLAGS0 = 19
F_FLAGS1 = 20
F_SEEN = 21  # bit d: traffic seen from endpoint d
F_FLOWS = 22
F_QUEUED = 23  # the deadline this session is queued under
F_SAMPLING = 24  # max sampling_rate
F_SCALED = 25  # any counters_scaled
F_ORIENT_DIR = 26  # direction of the orientation record: 0 = lo sent first
F_LATE_RECORDS = 27
F_SYN_FS0 = 28  # earliest first_seen of a record from lo carrying SYN (NO_TIME if none)
F_SYN_FS1 = 29
F_PURE_SYN = 30  # bit d: endpoint d sent a record with SYN and without ACK
F_LATE = 31
HOT_END = 32  # fields a record of an open session reads and writes: four cache lines
# touched when the orientation record changes, for ICMP, declared services, at open/close
F_FIRST_DST_PORT = 32  # dst_port of the orientation record (ICMP type << 8 | code)
F_DOMAIN = 33  # its exporter_domain
F_ECHO_REQUEST = 34  # bit d: endpoint d sent ICMP/ICMPv6 echo requests
F_ICMP_ANSWERS = 35  # bit d: endpoint d sent echo replies; bit 2 + d: ICMP errors
F_DECLARED = 36  # bit d: the Cartography declares endpoint d as this service
F_SPLIT = 37
F_ROOT_OPENED = 38  # fragment 0's (opened, late, dup): conversation_id
F_ROOT_LATE = 39
F_ROOT_DUP = 40
F_HAS_FOLLOW = 41  # follows_session_id = hash of (FOLLOW_OPENED, FOLLOW_SPLIT, ...)
F_FOLLOW_OPENED = 42
F_FOLLOW_SPLIT = 43
F_FOLLOW_LATE = 44
F_FOLLOW_DUP = 45
F_INHERITED = 46  # a later fragment: orientation and server side come from fragment 0;
# bits 1 + d: the conversation's fragments before it saw FIN from endpoint d (finished());
# bits 3 + 3d..: what they saw of endpoint d that tells a refusal (REFUSAL_BITS)
F_INH_ORIENT = 47
F_INH_SERVER = 48
F_INH_METHOD = 49
F_INH_CONFIDENCE = 50
# filled when the row becomes final
F_EMIT = 51  # arrival index after which the row became final
F_CLOSED_AT = 52
F_DUP = 53  # disambiguates sessions of a key that would otherwise hash alike
F_ORIENT = 54  # final orientation: 0 = ip_a is lo
F_SERVER = 55  # final server side: 0 = lo is the server
F_METHOD = 56
F_CONFIDENCE = 57  # per mille
F_STATE = 58  # STATE_* code
F_REASON = 59  # REASON_* code, OPEN while still open at end of input
F_PEAK0 = 60  # peak open sessions on endpoint 0 / 1 in its busy period, at this one's close
F_PEAK1 = 61
F_IDENTITY = 62  # the opening record's identity (keys.record_identities)
F_DEEP = 63  # some record of it started before W - idle - grace: its dup is its identity
SESSION_END = 64
ROW_WIDTH = SESSION_END
# A deep session's dup: its identity in the low 62 bits, bit 62 set, so that it never meets
# the small dups of sessions numbered from a remembered one.
DEEP_DUP_FLAG = 1 << 62
DEEP_DUP_MASK = (1 << 62) - 1

# Slot table layout: 16 fields, two cache lines (slots start on one, new_rows). The first
# line is all a lookup reads, and all a record extending an open session reads of its slot:
# the key (protocol and both ports in one word), status with the open session's row, the
# hash and the chain. The second holds the key's last closed session ("prev").
SL_PORTS = 0  # protocol << 32 | lo port << 16 | hi port
SL_LO_HI = 1
SL_LO_LO = 2
SL_HI_HI = 3
SL_HI_LO = 4
SL_STATUS = 5  # open session's row << 2 | STATUS_OPEN if it has one | STATUS_PREV if P_* valid
SL_HASH = 6
SL_NEXT = 7  # hash chain
P_OPENED = 8
P_CONT = 9  # last_seen + idle: a hard_timeout/evicted fragment's continuation limit
P_SPLIT = 10
P_DUP = 11
P_ROOT_OPENED = 12
P_ROOT_DUP = 13
P_BITS = 14  # the small fields, a byte each (PB_* shifts; confidence 10 bits, seen 2)
P_EXPIRY = 15  # last_seen + idle + grace: forgotten once a sweep's watermark passes it
SLOT_WIDTH = 16
PB_LATE = 0  # bit 0 of its byte; bits 1 and 2 are PB_HALF_OPEN and PB_FINISHED
PB_ROOT_LATE = 8
PB_REASON = 16  # stored + 1 (REASON_OPEN is -1)
PB_ORIENT = 24
PB_SERVER = 32
PB_METHOD = 40
PB_CONFIDENCE = 48  # per mille, 10 bits
# two bits, F_SEEN's: the directions the conversation has seen, its earlier fragments' too
PB_SEEN = 58
# two bits: the directions the conversation has seen FIN from, its earlier fragments' too (a
# connection whose FINs fall on both sides of a cut finishes in its last fragment)
PB_FIN = 60
# six bits, three an endpoint (REFUSAL_BITS): what the conversation has seen of each that
# tells a refused opening, its earlier fragments' too (a SYN in one fragment, the bare RST
# answering it in the next, or in a late session following it, is a refusal: `rejected`)
PB_REFUSAL = 9
# one bit each: the session closed half-open, so that last_seen = P_CONT - its idle (the
# half-open or the established one), and it was a finished connection (FIN both ways, or
# a RST), which a SYN after that last_seen does not go on with, late or as its next
# fragment (reference _reopens)
PB_HALF_OPEN = 1
PB_FINISHED = 2
BYTE_MASK = 0xFF
CONFIDENCE_MASK = 0x3FF
# A `hard_timeout` fragment is remembered until the watermark passes last_seen + idle + grace
# + the longest record its exporter has sent so far (at most this): the record that goes on
# with the conversation starts within idle of the fragment's last_seen but arrives at its
# own end, which an exporter's active timeout (minutes) puts far behind that.
MAX_CONTINUATION_SPAN_US = 3_600_000_000
# A late session is remembered for this many more records of its exporter, whatever the
# clocks say (reference rule 5): the other direction of its conversation, late alike, comes
# in the same datagram or block; a bound on records bounds memory where the clocks stand
# still (an exporter's flush of a capture's flows at its end: late, in no time order)
LATE_MEMORY_RECORDS = 4096
STATUS_ROW_SHIFT = 2

# The output row: the fields output.py reads, in this order; O_X is F_X's place in it.
OUTPUT_FIELDS = (
    F_PROTO,
    F_LO_HI,
    F_LO_LO,
    F_LO_PORT,
    F_HI_HI,
    F_HI_LO,
    F_HI_PORT,
    F_SERIAL,
    F_EMIT,
    F_OPENED,
    F_LAST,
    F_CLOSED_AT,
    F_SPLIT,
    F_LATE,
    F_DUP,
    F_ROOT_OPENED,
    F_ROOT_LATE,
    F_ROOT_DUP,
    F_HAS_FOLLOW,
    F_FOLLOW_OPENED,
    F_FOLLOW_SPLIT,
    F_FOLLOW_LATE,
    F_FOLLOW_DUP,
    F_ORIENT,
    F_SERVER,
    F_METHOD,
    F_CONFIDENCE,
    F_STATE,
    F_REASON,
    F_BYTES0,
    F_BYTES1,
    F_PACKETS0,
    F_PACKETS1,
    F_FLAGS0,
    F_FLAGS1,
    F_FIRST_DST_PORT,
    F_DOMAIN,
    F_FLOWS,
    F_LATE_RECORDS,
    F_SAMPLING,
    F_SCALED,
)
OUTPUT_FIELD_COUNT = len(OUTPUT_FIELDS)
OUTPUT_FIELD_INDEX = np.array(OUTPUT_FIELDS, dtype=np.int64)
(
    O_PROTO,
    O_LO_HI,
    O_LO_LO,
    O_LO_PORT,
    O_HI_HI,
    O_HI_LO,
    O_HI_PORT,
    O_SERIAL,
    O_EMIT,
    O_OPENED,
    O_LAST,
    O_CLOSED_AT,
    O_SPLIT,
    O_LATE,
    O_DUP,
    O_ROOT_OPENED,
    O_ROOT_LATE,
    O_ROOT_DUP,
    O_HAS_FOLLOW,
    O_FOLLOW_OPENED,
    O_FOLLOW_SPLIT,
    O_FOLLOW_LATE,
    O_FOLLOW_DUP,
    O_ORIENT,
    O_SERVER,
    O_METHOD,
    O_CONFIDENCE,
    O_STATE,
    O_REASON,
    O_BYTES0,
    O_BYTES1,
    O_PACKETS0,
    O_PACKETS1,
    O_FLAGS0,
    O_FLAGS1,
    O_FIRST_DST_PORT,
    O_DOMAIN,
    O_FLOWS,
    O_LATE_RECORDS,
    O_SAMPLING,
    O_SCALED,
) = range(OUTPUT_FIELD_COUNT)

STATUS_OPEN = 1
STATUS_PREV = 2

NO_TIME = np.iinfo(np.int64).max
TIME_MIN = np.iinfo(np.int64).min

# close reasons; the order is the one of schema.CLOSE_REASONS
REASON_OPEN = -1
REASON_FIN = 0
REASON_RST = 1
REASON_REJECTED = 2
REASON_NO_REPLY = 3
REASON_IDLE = 4
REASON_HARD_TIMEOUT = 5
REASON_EVICTED = 6
REASON_NAMES = ("fin", "rst", "rejected", "no_reply", "idle", "hard_timeout", "evicted")

STATE_ACTIVE = 0
STATE_HALF_OPEN = 1
STATE_CLOSED = 2
STATE_NAMES = ("active", "half_open", "closed")

# server-side inference (see inference.py for the ladder)
METHOD_TCP_HANDSHAKE = 0
METHOD_ICMP_ECHO = 1
METHOD_CARTOGRAPHY = 2
METHOD_SERVICE_PORT = 3
METHOD_TRAFFIC_SHAPE = 4
METHOD_FIRST_SENDER = 5
METHOD_ICMP_ERROR = 6
METHOD_NAMES = (
    "tcp_handshake",
    "icmp_echo",
    "cartography",
    "service_port",
    "traffic_shape",
    "first_sender",
    "icmp_error",
)

# TCP flag bits
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
# `rejected`: the opening side sent SYN and none of these (no data, no close: a stray ACK
# may come), the answer RST and none of these (no SYN-ACK, no data): a RST answering data,
# or answered by data, is `rst`
OPENING_ONLY = TCP_PSH | TCP_FIN
# an endpoint's flags as far as a refusal goes, in three bits: SYN, PSH or FIN, RST
REFUSAL_BITS = 3
REFUSAL_ONLY = TCP_SYN | TCP_PSH | TCP_FIN
# the RST bit of both endpoints' refusal bits (a RST from either)
REFUSAL_RST_EITHER = 4 | 4 << REFUSAL_BITS
# Records.tcp_flags: a record's forward flags, and its reverse direction's shifted above them
REVERSE_FLAGS_SHIFT = 16
FLAGS_MASK = (1 << REVERSE_FLAGS_SHIFT) - 1
# a SYN in either half of a record: after a finished connection, a new one on its 5-tuple
SYN_EITHER = TCP_SYN | TCP_SYN << REVERSE_FLAGS_SHIFT

SIGN_BIT = np.int64(-(2**63))


def new_rows(count: int, width: int = ROW_WIDTH) -> npt.NDArray[np.int64]:
    """`count` empty rows of `width` fields (session rows by default; SLOT_WIDTH for the
    slot table), the first one starting on a 64-byte boundary (zero pages: memory is only
    paid for once a row is used)."""
    buffer = np.zeros(count * width + 8, dtype=np.int64)
    skip = (-buffer.ctypes.data % 64) // 8
    return buffer[skip : skip + count * width].reshape(count, width)
