"""Server-side inference: which endpoint of a session is the server, how we know, how sure.

The ladder (sessions.md, "Orientation and server side"); the first rung with evidence
decides, `role_method` names it and `role_confidence` is fixed per rung:

1. `tcp_handshake` (TCP): the endpoint whose SYN came first (the earliest `first_seen` of a
   record carrying SYN; flags are cumulative per record) is the client. 0.95 when both sides
   sent SYN (SYN, then SYN-ACK); 0.90 when only one side ever did, in a record without ACK
   (scan, half-open, rejected; one side's cumulative SYN|ACK alone is no evidence: the
   client's whole connection and the server's SYN-ACK look alike); 0.85 when both SYNs
   share a time and only one record had SYN without ACK.
   `icmp_echo` (ICMP, ICMPv6) sits on the same rung: the side that sent echo requests
   (type 8 / 128), the other sending none, is the client (0.90); with replies only
   (type 0 / 129), their sender is the server (0.80).
   `icmp_error` (ICMP, ICMPv6), same rung, when neither side sent echo messages: an error
   message (destination unreachable, time exceeded, redirect, parameter problem, source
   quench, packet too big: icmp_evidence lists the types) answers traffic the other
   endpoint sent, so the side that alone sent errors is the server (0.80): the host whose
   datagram bounced, or the tracer, is the client.
2. `cartography`: exactly one endpoint is declared as this service (address +
   protocol/port) in the Cartography. 0.80.
3. `service_port` (TCP, UDP, SCTP, UDP-Lite): one port is a known service port (below 1024,
   or a registered server port from keys.py) and the other is ephemeral (1024 or above and
   not known). 0.70.
4. `traffic_shape`: one endpoint had at least 3 sessions open at once on this exporter
   and at least twice the other's peak. The peak is the endpoint's busiest moment in its
   busy period up to this session's close: the run of time during which the endpoint
   always had a session open (so a burst long before still counts while one session of it
   lasts). 0.60. Sessions count whoever sent in them, not only those peers sent to the
   endpoint in: an exporter on one side of an asymmetric route sees a busy server only
   answering (pmacct's test capture: 141 sessions came out reversed that way), while a
   port sending to many peers that never answer (a UDP scan) reads as their server.
5. `first_sender`: nothing else; the endpoint that sent the earliest record (`ip_a`) is the
   client. 0.50.

Later fragments of a conversation (split > 0) do not infer: they inherit orientation and
server side from fragment 0 (contextual fragment parsing), so a fragment never comes out
reversed. The function below is plain Python on integers so that the numba kernel compiles
this very function and the reference calls it: the ladder exists once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .row import (
    METHOD_CARTOGRAPHY,
    METHOD_FIRST_SENDER,
    METHOD_ICMP_ECHO,
    METHOD_ICMP_ERROR,
    METHOD_SERVICE_PORT,
    METHOD_TCP_HANDSHAKE,
    METHOD_TRAFFIC_SHAPE,
    NO_TIME,
)

if TYPE_CHECKING:
    import numpy as np

TRAFFIC_SHAPE_MIN_PEAK = 3


def icmp_evidence(protocol: int, icmp_type: int, sender: int) -> tuple[int, int]:
    """(echo_request bits, icmp_answers bits) that a message of this type from endpoint
    `sender` adds: bit d for echo requests, bit d for echo replies, bit 2 + d for errors
    (infer_server reads them); (0, 0) for anything else, and for other protocols.

    Echo: ICMP 8/0, ICMPv6 128/129, and RFC 8335's extended echo (42/43, 160/161).
    Errors: ICMP destination unreachable 3, source quench 4, redirect 5, time exceeded 11,
    parameter problem 12, and IANA's other two (31 conversion error, 40 Photuris); every
    ICMPv6 type below 128 (RFC 4443 2.1). Timestamp and address mask requests are no
    evidence. Like infer_server, numba compiles this very function for the kernel and the
    reference calls it, so the evidence is gathered one way."""
    if protocol == 1:
        if icmp_type == 8 or icmp_type == 42:
            return 1 << sender, 0
        if icmp_type == 0 or icmp_type == 43:
            return 0, 1 << sender
        if (
            (3 <= icmp_type <= 5)
            or icmp_type == 11
            or icmp_type == 12
            or icmp_type == 31
            or icmp_type == 40
        ):
            return 0, 4 << sender
    elif protocol == 58:
        if icmp_type == 128 or icmp_type == 160:
            return 1 << sender, 0
        if icmp_type == 129 or icmp_type == 161:
            return 0, 1 << sender
        if 1 <= icmp_type <= 127:
            return 0, 4 << sender
    return 0, 0


def infer_server(
    protocol: int,
    orient: int,
    syn_first_seen0: int,
    syn_first_seen1: int,
    pure_syn: int,
    echo_request: int,
    icmp_answers: int,
    declared: int,
    port0: int,
    port1: int,
    port0_known: bool,
    port1_known: bool,
    peak0: int | np.int64,  # the kernel's stray sessions pass a numpy 0 (kernel._ZERO)
    peak1: int | np.int64,
) -> tuple[int, int, int]:
    """(server endpoint 0/1 in canonical order, METHOD_* code, confidence per mille).

    Bit masks (`pure_syn`, `echo_request`, `declared`) have bit d set for canonical
    endpoint d; `icmp_answers` has bit d for echo replies and bit 2 + d for error messages;
    `orient` is the endpoint that sent the earliest record.
    """
    if protocol == 6:
        # one side's SYN alone names the client only when it came without ACK: a cumulative
        # SYN|ACK is the client's whole connection or the server's SYN-ACK alike (an
        # exporter that sees one direction of an asymmetric route)
        if syn_first_seen0 < syn_first_seen1:
            if syn_first_seen1 != NO_TIME:
                return 1, METHOD_TCP_HANDSHAKE, 950
            if pure_syn & 1:
                return 1, METHOD_TCP_HANDSHAKE, 900
        elif syn_first_seen1 < syn_first_seen0:
            if syn_first_seen0 != NO_TIME:
                return 0, METHOD_TCP_HANDSHAKE, 950
            if pure_syn & 2:
                return 0, METHOD_TCP_HANDSHAKE, 900
        elif syn_first_seen0 != NO_TIME:
            if pure_syn == 1:
                return 1, METHOD_TCP_HANDSHAKE, 850
            if pure_syn == 2:
                return 0, METHOD_TCP_HANDSHAKE, 850
    if protocol == 1 or protocol == 58:
        if echo_request == 1:
            return 1, METHOD_ICMP_ECHO, 900
        if echo_request == 2:
            return 0, METHOD_ICMP_ECHO, 900
        replies = icmp_answers & 3
        errors = icmp_answers >> 2
        if echo_request == 0 and replies == 1:
            return 0, METHOD_ICMP_ECHO, 800
        if echo_request == 0 and replies == 2:
            return 1, METHOD_ICMP_ECHO, 800
        if echo_request == 0 and replies == 0:
            if errors == 1:
                return 0, METHOD_ICMP_ERROR, 800
            if errors == 2:
                return 1, METHOD_ICMP_ERROR, 800
    if declared == 1:
        return 0, METHOD_CARTOGRAPHY, 800
    if declared == 2:
        return 1, METHOD_CARTOGRAPHY, 800
    if protocol == 6 or protocol == 17 or protocol == 132 or protocol == 136:
        if port0_known and not port1_known and port1 >= 1024:
            return 0, METHOD_SERVICE_PORT, 700
        if port1_known and not port0_known and port0 >= 1024:
            return 1, METHOD_SERVICE_PORT, 700
    if peak0 >= TRAFFIC_SHAPE_MIN_PEAK and peak0 >= 2 * peak1:
        return 0, METHOD_TRAFFIC_SHAPE, 600
    if peak1 >= TRAFFIC_SHAPE_MIN_PEAK and peak1 >= 2 * peak0:
        return 1, METHOD_TRAFFIC_SHAPE, 600
    return 1 - orient, METHOD_FIRST_SENDER, 500
