"""The session row: one int64 vector per session, shared by the kernel, the reference and output.

The numba kernel keeps every session (open or remembered after closing) as one row of an
int64 matrix, so that a session's fields sit together in memory and a closed session
leaves the kernel as a copy of its row. The plain-Python reference fills the same row
from its objects, and output.py turns rows into SESSIONS_SCHEMA. Field numbers are module
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

# slot bookkeeping
F_STATUS = 0  # bit 0: an open session lives here; bit 1: the P_* fields are valid
F_GEN = 1  # bumped when the slot is freed, so stale heap entries can be recognised
F_NEXT = 2  # hash chain
F_HASH = 3
# the key
F_PROTO = 4
F_LO_HI = 5
F_LO_LO = 6
F_HI_HI = 7
F_HI_LO = 8
F_LO_PORT = 9
F_HI_PORT = 10
# the open session
F_SERIAL = 11  # per-exporter running number of sessions (internal, never output)
F_OPENED = 12  # min first_seen
F_LAST = 13  # max last_seen
F_MAX_FIRST = 14  # max first_seen (for the hard_timeout span rule)
F_ORIENT_FS = 15  # first_seen of the orientation record (earliest record)
F_ORIENT_DIR = 16  # direction of that record: 0 = lo sent first
F_ORIENT_INDEX = 17  # its arrival index
F_FIRST_DST_PORT = 18  # its dst_port (ICMP type << 8 | code)
F_DOMAIN = 19  # its exporter_domain
F_BYTES0 = 20
F_BYTES1 = 21
F_PACKETS0 = 22
F_PACKETS1 = 23
F_FLAGS0 = 24
F_FLAGS1 = 25
F_SEEN = 26  # bit d: traffic seen from endpoint d
F_SYN_FS0 = 27  # earliest first_seen of a record from lo carrying SYN (NO_TIME if none)
F_SYN_FS1 = 28
F_PURE_SYN = 29  # bit d: endpoint d sent a record with SYN and without ACK
F_ECHO_REQUEST = 30  # bit d: endpoint d sent ICMP/ICMPv6 echo requests
F_ECHO_REPLY = 31  # bit d: endpoint d sent echo replies
F_DECLARED = 32  # bit d: the Cartography declares endpoint d as this service
F_FLOWS = 33
F_LATE_RECORDS = 34
F_SAMPLING = 35  # max sampling_rate
F_SCALED = 36  # any counters_scaled
F_LATE = 37
F_SPLIT = 38
F_DUP = 39  # disambiguates sessions of a key that would otherwise hash alike
F_ROOT_OPENED = 40  # fragment 0's (opened, late, dup): conversation_id
F_ROOT_LATE = 41
F_ROOT_DUP = 42
F_HAS_FOLLOW = 43  # follows_session_id = hash of (FOLLOW_OPENED, FOLLOW_SPLIT, ...)
F_FOLLOW_OPENED = 44
F_FOLLOW_SPLIT = 45
F_FOLLOW_LATE = 46
F_FOLLOW_DUP = 47
F_INHERITED = 48  # a later fragment: orientation and server side come from fragment 0
F_INH_ORIENT = 49
F_INH_SERVER = 50
F_INH_METHOD = 51
F_INH_CONFIDENCE = 52
F_QUEUED = 53  # the deadline this session is queued under in the deadline heap
F_ENDPOINT0 = 54  # endpoint-table entries (traffic shape)
F_ENDPOINT1 = 55
# filled when the row leaves the kernel
F_CLOSED_AT = 56
F_REASON = 57  # REASON_* code, OPEN while still open at end of input
F_EMIT = 58  # arrival index after which the row became final
F_PEAK0 = 59  # peak open sessions on endpoint 0 / 1 while this one was open
F_PEAK1 = 60
F_ORIENT = 61  # final orientation: 0 = ip_a is lo
F_SERVER = 62  # final server side: 0 = lo is the server
F_METHOD = 63
F_CONFIDENCE = 64  # per mille
F_STATE = 65  # STATE_* code
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
