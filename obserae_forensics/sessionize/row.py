"""The session row: one int64 vector per session, shared by the kernel, the reference and output.

The numba kernel keeps every session (open or remembered after closing) as one row of an
int64 matrix, so that a session's fields sit together in memory; a closed session leaves
the kernel as its first OUTPUT_FIELD_COUNT fields only (the output row: 328 of 648 bytes),
written column by column so that output.py reads each field as one contiguous vector. The
plain-Python reference fills the same row from its objects, and output.py turns output rows
into SESSIONS_SCHEMA. Field numbers are module
constants because numba freezes module globals into the compiled code.

Directions are canonical: endpoint 0 ("lo") is the smaller (address, port), endpoint 1
("hi") the larger; `*0` counters go lo -> hi. Orientation (ip_a) and the server side are
decided from these at output. Addresses are stored as two 64-bit big-endian halves with the
sign bit flipped, so that a signed comparison orders them like the unsigned bytes.

The surprising thing: a slot carries two sessions at once, the open one (`F_*`) and the
last closed one of the same key (`P_*`, "prev"), which late records name in
`follows_session_id` and the next fragment inherits orientation and server side from.
"""

from __future__ import annotations

import numpy as np

# The key: first, so that a stray's key can be copied as a prefix.
F_PROTO = 0
F_LO_HI = 1
F_LO_LO = 2
F_LO_PORT = 3
F_HI_HI = 4
F_HI_LO = 5
F_HI_PORT = 6
KEY_END = 7
# The session fields output.py reads: together they are the output row (fields
# 0..OUTPUT_FIELD_COUNT-1), the only part of a session that leaves the kernel.
F_SERIAL = 7  # per-exporter running number of sessions (internal, never output)
F_EMIT = 8  # arrival index after which the row became final
F_OPENED = 9  # min first_seen
F_LAST = 10  # max last_seen
F_CLOSED_AT = 11
F_SPLIT = 12
F_LATE = 13
F_DUP = 14  # disambiguates sessions of a key that would otherwise hash alike
F_ROOT_OPENED = 15  # fragment 0's (opened, late, dup): conversation_id
F_ROOT_LATE = 16
F_ROOT_DUP = 17
F_HAS_FOLLOW = 18  # follows_session_id = hash of (FOLLOW_OPENED, FOLLOW_SPLIT, ...)
F_FOLLOW_OPENED = 19
F_FOLLOW_SPLIT = 20
F_FOLLOW_LATE = 21
F_FOLLOW_DUP = 22
F_ORIENT = 23  # final orientation: 0 = ip_a is lo
F_SERVER = 24  # final server side: 0 = lo is the server
F_METHOD = 25
F_CONFIDENCE = 26  # per mille
F_STATE = 27  # STATE_* code
F_REASON = 28  # REASON_* code, OPEN while still open at end of input
F_BYTES0 = 29
F_BYTES1 = 30
F_PACKETS0 = 31
F_PACKETS1 = 32
F_FLAGS0 = 33
F_FLAGS1 = 34
F_FIRST_DST_PORT = 35  # dst_port of the orientation record (ICMP type << 8 | code)
F_DOMAIN = 36  # its exporter_domain
F_FLOWS = 37
F_LATE_RECORDS = 38
F_SAMPLING = 39  # max sampling_rate
F_SCALED = 40  # any counters_scaled
OUTPUT_FIELD_COUNT = 41
# The rest of the open session (kernel and reference only).
F_MAX_FIRST = 41  # max first_seen (for the hard_timeout span rule)
F_ORIENT_FS = 42  # first_seen of the orientation record (earliest record)
F_ORIENT_DIR = 43  # direction of that record: 0 = lo sent first
F_ORIENT_INDEX = 44  # its arrival index
F_SEEN = 45  # bit d: traffic seen from endpoint d
F_SYN_FS0 = 46  # earliest first_seen of a record from lo carrying SYN (NO_TIME if none)
F_SYN_FS1 = 47
F_PURE_SYN = 48  # bit d: endpoint d sent a record with SYN and without ACK
F_ECHO_REQUEST = 49  # bit d: endpoint d sent ICMP/ICMPv6 echo requests
F_ECHO_REPLY = 50  # bit d: endpoint d sent echo replies
F_DECLARED = 51  # bit d: the Cartography declares endpoint d as this service
F_INHERITED = 52  # a later fragment: orientation and server side come from fragment 0
F_INH_ORIENT = 53
F_INH_SERVER = 54
F_INH_METHOD = 55
F_INH_CONFIDENCE = 56
F_QUEUED = 57  # the deadline this session is queued under in the deadline heap
F_ENDPOINT0 = 58  # endpoint-table entries (traffic shape)
F_ENDPOINT1 = 59
F_PEAK0 = 60  # peak open sessions on endpoint 0 / 1 while this one was open
F_PEAK1 = 61
SESSION_END = 62  # fields F_SERIAL..SESSION_END-1 start at zero in a new session
# slot bookkeeping
F_STATUS = 62  # bit 0: an open session lives here; bit 1: the P_* fields are valid
F_GEN = 63  # bumped when the slot is freed, so stale heap entries can be recognised
F_NEXT = 64  # hash chain
F_HASH = 65
# the last closed session of this key ("prev")
P_OPENED = 66
P_LAST = 67
P_SPLIT = 68
P_LATE = 69
P_DUP = 70
P_REASON = 71
P_IDLE = 72
P_ROOT_OPENED = 73
P_ROOT_LATE = 74
P_ROOT_DUP = 75
P_ORIENT = 76
P_SERVER = 77
P_METHOD = 78
P_CONFIDENCE = 79
P_EXPIRY = 80
FIELD_COUNT = 81

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
METHOD_NAMES = ("tcp_handshake", "icmp_echo", "cartography", "service_port", "traffic_shape",
                "first_sender")

# TCP flag bits
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

SIGN_BIT = np.int64(-(2**63))


def new_rows(count: int) -> np.ndarray:
    """`count` empty rows."""
    return np.zeros((count, FIELD_COUNT), dtype=np.int64)
