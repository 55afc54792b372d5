"""Behaviour of the numba sessionizer kernel (sessionize/kernel.py) that no test pinned, found
by a mutation audit: the forty-first session's second audit of kernel.py (the first is
test_kernel_mutation_audit.py, K01-K38). This one covers the rest: the endpoint table of
the traffic-shape rung, server-side inference as the kernel gathers its evidence, the timer
wheel, near heap and due list, counters and flags, the columns at close and at the end of
input, event replay and pressure(). 22 changes were run (K39-K42, K44-K48, K50,
K53, K56-K58, K60-K67; K43, K49, K51, K52, K54, K55 and K59 were drafted and not run, for
time), 6 of which no test noticed: 4 real gaps (K56, K57, K63, K67), each pinned here,
and 2 equivalent:

* K46 (`_wheel_advance`: `passed_bucket = (watermark >> WHEEL_SHIFT) - 1` -> without the
  `- 1`): the bucket the watermark lies in goes to the due list whole instead of the near
  heap; its entries at or after the watermark fail `_sweep_entry`'s `deadline < watermark`
  and go back, under the same deadline, to the near heap (their bucket is behind
  S_WHEEL_CUR), and the order of one sweep's closes is not observable (_sweep_due);
* K58 (`_apply`: the forward half's flags not masked with FLAGS_MASK, so a biflow record's
  reverse flags, 16 bits up, are ORed into the sender's direction too): every reader of
  F_FLAGS0/1 tests the low byte (SYN, ACK, FIN, RST, PSH: _finished, _fins, _half_open,
  _state_reason, the pure-SYN bit) and ab_flags/ba_flags are uint16 columns, which drop
  bits 16 and up.

The others were noticed by existing tests (with `-x`, the first failing one in collection
order is named; others may notice them too): test_kernel_endpoints.py's
test_endpoint_table_equals_a_dict (K39, K40), test_held.py (K44),
test_kernel_mutation_audit.py (K45, K61), test_sessionizer_mutation_audit.py's sampling
test (K53, K64), test_keys_mutation_audit.py (K66), and first by hypothesis draws:
test_kernel_with_tiny_tables_equals_reference (K41, K47, K48, K50, K60, K65) and
test_watermark_jumps_close_whole_buckets_as_the_reference (K42, K62). The tests
here kill K39-K41, K47, K48, K60, K62 and K66 too, with a hand-made scenario where only a
draw (or a unit test of the table alone) noticed them; each test's docstring says which.
Each test names the change it kills ("Kills K57 ...") and runs on both engines: the
reference passes it too, so each is a rule of sessions.md, inference.py or reference.py,
not a quirk of the kernel.
"""

from __future__ import annotations

import numpy as np
import pytest

from obserae_forensics.sessionize import SessionPolicy

from .scenario import ACK, FIN, SECOND, SYN, at, by_key, rec, run, tick

pytestmark = pytest.mark.parametrize("engine", ["numba", "reference"])

A, B = "10.0.0.1", "10.0.0.2"  # A is the smaller endpoint of every key below
PSH = 0x08
C, D = "10.0.0.3", "10.0.0.4"
PEERS = ("10.0.1.1", "10.0.1.2", "10.0.1.3")  # all larger than A: A is endpoint 0


def _burst_on_a() -> list[dict]:
    """Three peers, one UDP record each, on A:40001 at 1, 2 and 3 s: A:40001 has three
    sessions open at once, each peer one; they close idle at 31, 32 and 33 s."""
    return [
        rec(1 + k, proto=17, src=peer, sport=50001 + k, dst=A, dport=40001)
        for k, peer in enumerate(PEERS)
    ]


# -- traffic shape: the endpoint table at close --------------------------------------------
def test_every_session_of_a_burst_closes_traffic_shape_with_the_busy_endpoint_serving(
    engine: str,
) -> None:
    """Kills K40 (`_endpoint_release`: an endpoint still in use returns its count before
    the release instead of its peak) and K41 (`_close`: the two endpoints' peaks swapped).
    The peak is the endpoint's busiest moment in its busy period up to the session's close
    (inference.py, rung 4): the second of three sessions to close on A:40001 still saw 3 at
    once, not the 2 left; with K40 it came out first_sender, its server read from who sent
    first. With K41 every closed session named the one-session peer its server (the
    existing traffic-shape tests leave their sessions open: finish() passes the peaks
    itself). test_endpoint_table_equals_a_dict noticed K40 first (the table alone), and
    test_kernel_with_tiny_tables_equals_reference K41, by its draw."""
    sessions = by_key(run([*_burst_on_a(), tick(100)], engine=engine)[0], None)
    assert sorted((s["closed_at"], s["close_reason"]) for s in sessions) == [
        (at(31), "no_reply"),
        (at(32), "no_reply"),
        (at(33), "no_reply"),
    ]
    assert [
        (s["server_ip"], s["server_port"], s["role_method"], s["role_confidence"]) for s in sessions
    ] == [(A, 40001, "traffic_shape", 0.6)] * 3


def test_a_burst_that_ended_no_longer_makes_its_endpoint_a_server(engine: str) -> None:
    """Kills K39 (`_endpoint_release`: `count > 1` -> `>= 1`: an endpoint's entry stays
    after its last session left, and so does its peak). The peak is that of the endpoint's
    busy period, "the run of time during which the endpoint always had a session open": a
    burst of three sessions on A:40001 that closed at 33 s says nothing of a lone peer
    talking to it at 200 s, which is first_sender (0.50, the peer that sent first is the
    client). With K39 it read traffic_shape (0.60) for the rest of the capture: one scan
    of a host made every later session of the port look served.
    test_endpoint_table_equals_a_dict noticed K39 first (the table alone)."""
    records = [
        *_burst_on_a(),
        tick(100),
        rec(200, proto=17, src=D, sport=50009, dst=A, dport=40001),
        tick(400),
    ]
    sessions = by_key(run(records, engine=engine)[0], None)
    [lone] = [s for s in sessions if D in (s["ip_a"], s["ip_b"])]
    assert (lone["client_ip"], lone["role_method"], lone["role_confidence"]) == (
        D,
        "first_sender",
        0.5,
    )
    assert lone["opened_at"] == at(200)


# -- event replay -------------------------------------------------------------------------
def test_event_replay_ends_input_at_the_newest_last_seen_not_the_newest_first_seen(
    engine: str,
) -> None:
    """Kills K47 (`finish`: the end-of-input sweep at the newest clock + 1 whatever the
    replay, not the newest last_seen under event replay). Under event replay the clock is
    first_seen, but the end of input is still "just past the newest last_seen": a
    connection whose FINs both ways ended at 1 s, beside a long UDP record running to
    100 s, closed `fin` at 1 s. With K47 the sweep stopped at 0.8 s (the newest
    first_seen) and the finished connection came out open, `active`, no closed_at.
    test_kernel_with_tiny_tables_equals_reference noticed K47 first, by its draw."""
    records = [
        rec(0, 1, flags=SYN | ACK | FIN),
        rec(0.5, 1, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN),
        rec(0.8, 100, proto=17, src=C, sport=5000, dst=D, dport=5001),
    ]
    sessions = run(records, SessionPolicy(replay="event"), engine=engine)[0]
    [tcp] = by_key(sessions)
    assert (tcp["state"], tcp["close_reason"], tcp["closed_at"]) == ("closed", "fin", at(1))
    [udp] = by_key(sessions, "UDP")
    assert (udp["state"], udp["closed_at"]) == ("active", None)


def test_event_replay_evicts_at_the_new_records_own_last_seen_when_it_is_the_newest(
    engine: str,
) -> None:
    """Kills K48 (event replay's `evict_at = max(last, newest last_seen)` -> the newest
    last_seen before the record). The victim closes at the newest last_seen, and that of
    the record that opens the session taking its place counts: with cap 1, a UDP flow at
    0-10 s evicted by one at 1-50 s closed at 50 s, and pressure() said so; with K48 both
    said 10 s (test_event_replay_evicts_at_the_newest_last_seen has the victim hold the
    newest). test_kernel_with_tiny_tables_equals_reference noticed K48 first, by its
    draw."""
    policy = SessionPolicy(replay="event", max_open_ksessions=0.001)
    records = [rec(0, 10, proto=17), rec(1, 50, src=C, dst=D, proto=17)]
    sessions, _, sessionizer = run(records, policy, engine=engine)
    evicted = [s for s in sessions.to_pylist() if s["close_reason"] == "evicted"]
    assert [(s["ip_a"], s["last_seen_at"], s["closed_at"]) for s in evicted] == [
        (A, at(10), at(50))
    ]
    pressure = sessionizer.pressure()["192.0.2.1"]
    assert (pressure["first_eviction_us"], pressure["last_eviction_us"]) == (
        50 * SECOND,
        50 * SECOND,
    )


# -- counters and flags -------------------------------------------------------------------
def test_each_directions_flags_are_the_or_of_all_its_records(engine: str) -> None:
    """Kills K62 (`_flags`: `flags0/1 |= flags` -> `=`: the direction's last record's
    flags). ab_flags and ba_flags are every flag a direction sent over the session (the
    OR of its records): a responder reads SYN and PSH beside the FIN as "opened here, sent
    data, closed cleanly". With K62 both read FIN|ACK only; no test asserted a non-zero
    ab_flags or ba_flags: only test_watermark_jumps_close_whole_buckets_as_the_reference
    noticed K62, by its draw."""
    back = {"src": B, "sport": 443, "dst": A, "dport": 40000}
    records = [
        rec(0, flags=SYN),
        rec(0.01, **back, flags=SYN | ACK),
        rec(0.02, 1, flags=ACK | PSH),
        rec(0.03, 1, **back, flags=ACK | PSH),
        rec(2, flags=FIN | ACK),
        rec(2.01, **back, flags=FIN | ACK),
        tick(100),
    ]
    [s] = by_key(run(records, engine=engine)[0])
    assert (s["ip_a"], s["close_reason"], s["closed_at"]) == (A, "fin", at(2.01))
    assert (s["ab_flags"], s["ba_flags"]) == (SYN | ACK | PSH | FIN, SYN | ACK | PSH | FIN)


def test_damaged_reverse_counters_stop_at_the_ceiling_too(engine: str) -> None:
    """Kills K57 and K63 (`_apply`: the reverse half's octets, or packets, summed without
    `_counter_sum`'s ceiling). Two biflow records whose reverse halves claim 2**63 + 100
    bytes and 2**63 + 4 packets: ba_bytes and ba_packets stop at 2**64 - 1 as ab_ do,
    not wrapped around to 200 bytes and 8 packets, a plausible, wrong answer
    (test_damaged_counters_past_2_64_stop_at_the_ceiling sums reverse octets to exactly
    2**64 - 1, without wrapping, and no reverse packets)."""
    ceiling = 2**64 - 1
    damaged = {"proto": 17, "dport": 53, "sport": 50000, "rpackets": 2**63 + 4}
    records = [
        rec(0, 1, **damaged, roctets=2**63 + 100),
        rec(2, 3, **damaged, roctets=2**63 + 100),
        tick(100),
    ]
    [s] = by_key(run(records, engine=engine)[0], "UDP")
    assert (s["ab_packets"], s["ab_bytes"]) == (2, 200)
    assert (s["ba_packets"], s["ba_bytes"]) == (ceiling, ceiling)


# -- pressure -----------------------------------------------------------------------------
def test_peak_open_is_the_most_sessions_open_at_once_not_those_left_at_the_end(
    engine: str,
) -> None:
    """Kills K60 (`pressure()`: peak_open read from the open count, not the peak). Three
    sessions open at once on the exporter; the third peer comes back at 100 s, a new
    session after its idle gap, whose watermark closes the other two: peak_open is 3 (how
    close the exporter came to max_open_sessions), not the 1 left open at the end of
    input; no eviction, so no eviction times. test_kernel_with_tiny_tables_equals_reference
    noticed K60 first, by its draw."""
    again = rec(100, proto=17, src=PEERS[2], sport=50003, dst=A, dport=40001)
    records = [*_burst_on_a(), again]
    sessionizer = run(records, engine=engine)[2]
    assert sessionizer.pressure()["192.0.2.1"] == {
        "evictions": 0,
        "first_eviction_us": None,
        "last_eviction_us": None,
        "peak_open": 3,
    }


# -- server side as the kernel gathers its evidence ------------------------------------------
def test_a_declared_service_seen_answering_is_the_server(engine: str) -> None:
    """Kills K66 (`_apply`: a record's declared source marked on the other endpoint, bit
    `e` for `d`). Rung 2, cartography: A:40001 is declared, and the exporter saw only its
    answer to B:50000 (an asymmetric route): A is the server, 0.80, as when B's request is
    seen (test_cartography_declared_service_names_the_server, the declared destination).
    With K66 B:50000, the client, came out the declared server.
    test_both_endpoints_declared_is_no_cartography_evidence noticed K66 first."""

    def services(addresses: np.ndarray, protocols: np.ndarray, ports: np.ndarray) -> np.ndarray:
        return (addresses[:, 15] == 1) & (ports == 40001)

    records = [rec(0, proto=17, src=A, sport=40001, dst=B, dport=50000)]
    [s] = by_key(run(records, engine=engine, services=services)[0], None)
    assert (s["server_ip"], s["server_port"], s["role_method"], s["role_confidence"]) == (
        A,
        40001,
        "cartography",
        0.8,
    )


def test_a_retransmitted_syn_does_not_move_the_clients_first_syn(engine: str) -> None:
    """Kills K67 (`_flags`: a direction's SYN time the last SYN record's, not the earliest).
    Rung 1, tcp_handshake: the endpoint whose SYN came first is the client. A's SYN at 0,
    B's SYN-ACK at 0.01, A's SYN again at 1 s (a retransmission, or a second record of the
    opening): A is the client, 0.95. With K67 A's SYN dated 1 s and B, the server, came
    out the client."""
    records = [
        rec(0, flags=SYN),
        rec(0.01, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK),
        rec(1, 2, flags=SYN | ACK | PSH),
        tick(200),
    ]
    [s] = by_key(run(records, engine=engine)[0])
    assert (s["client_ip"], s["server_port"], s["role_method"], s["role_confidence"]) == (
        A,
        443,
        "tcp_handshake",
        0.95,
    )


# -- the near heap --------------------------------------------------------------------------
def test_every_session_the_watermark_passes_closes_in_that_sweep(engine: str) -> None:
    """Kills K56 (`_deadline_pop`: the sift-down takes the larger child, `<` -> `>`). Four
    one-way UDP flows at 100.1-100.4 s are due at 130.1-130.4 s, all in one wheel bucket
    (2**20 us), which the watermark enters at 130.05 s: all four go to the near heap. At
    130.25 s the sweep closes the first two; with K56 the broken heap showed 130.3 s on top
    after the first pop and the sweep stopped, hiding the flow due at 130.2 s, still open:
    at a cap of 5 two new sessions then evicted it (close_reason `evicted` instead of
    `no_reply` at its deadline, and an eviction counted as pressure that never was). No
    test noticed K56, not even the hypothesis properties."""
    flows = [
        rec(100.1 + k / 10, proto=17, src=A, sport=50001 + k, dst=B, dport=5000) for k in range(4)
    ]
    records = [
        *flows,
        tick(160.05),  # watermark 130.05: the four move to the near heap
        tick(160.25),  # watermark 130.25: the flows due at 130.1 and 130.2 close
        rec(160.25, proto=17, src=C, sport=6000, dst=D, dport=6001),
        rec(160.25, proto=17, src=C, sport=6002, dst=D, dport=6001),
        tick(300),
    ]
    sessions, _, sessionizer = run(records, SessionPolicy(max_open_ksessions=0.005), engine=engine)
    mine = [s for s in by_key(sessions, None) if s["ip_a"] == A]
    closes = sorted((s["port_a"], s["close_reason"], s["closed_at"]) for s in mine)
    assert closes == [(50001 + k, "no_reply", at(130.1 + k / 10)) for k in range(4)]
    assert sessionizer.pressure()["192.0.2.1"]["evictions"] == 0
