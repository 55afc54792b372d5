"""Behaviour of the numba sessionizer kernel (sessionize/kernel.py) that no test pinned, found
by a mutation audit: the third audit of kernel.py (the first two are
test_kernel_mutation_audit.py, K01-K38, and test_kernel_mutation_audit_2.py, K39-K67). This
one covers what their docstrings name least: idle by protocol, the deadline's tie, the
orientation's tie, the endpoint table's deletion, the eviction heap's build and sift, the
cap's sweep, peak and pressure times, the slot table's collect, strays (their sweep, their
memory), late sessions (what they follow, what they replace, their dup), deep records,
_reopens, _inherit and the end of input. 38 changes were run (K68-K105), 5 of which no
test noticed: 4 real gaps (K74, K92, K103, K105), each pinned here, and 1 equivalent:

* K97 (`replay`: the eviction heap dropped at `2 * open <= cap` instead of `< cap`): when
  the heap is off, the next record that meets the cap rebuilds it from every open session
  (_eviction_build); while it is on, every new session is pushed and the top is checked
  against its session (serial, last_seen) before it is evicted. Either way the victim is
  the open session of least (last_seen, key): the change only moves when that work is done.

Five more were noticed only by a hypothesis draw of test_kernel_tables.py, after minutes:
K86 (test_crowded_cap_equals_reference), K87, K104
(test_kernel_with_tiny_tables_equals_reference), K100 and K101
(test_watermark_jumps_close_whole_buckets_as_the_reference); each has a hand-made scenario
here too. The other 28 were noticed by existing tests (with `-x`, the first failing one in
collection order is named):

* test_kernel_mutation_audit.py: K68 (`_finished`: `_fins == 3` -> `!= 0`), K69
  (`_deadline`: `hard <= natural` -> `<`), K75 (late: `last < W` -> `<=`), K77 (the cap:
  `deadline >= now - grace` -> `>`), K88 (late_records counted for every joined record),
  K94 (`_eviction_build`: heapify from one parent too few), K95 (`first > last + idle` ->
  `>=`), K96 (`_new_links`: fragment 1's root read from the slot's old root), K98 (arrival
  replay's victim closed at the record's clock, not the newest), K99 (`_inherit`: the
  directions seen `& 1`), K102 (`_timer_push`: `bucket < WHEEL_CUR` -> `< WHEEL_CUR - 1`);
* test_kernel_mutation_audit_2.py: K79 (`_wheel_move`: `bucket <= last_bucket` -> `<`);
* test_rules.py: K73 (`_flags`: the pure-SYN bit without its ACK test), K76 (peak_open
  without `<= cap`), K78 (the cap's sweep at `open > cap`), K82 (`_reopens`: the idle always
  tcp_established), K84 (a late session follows at `opened < first`), K85 (no next fragment
  after `evicted`), K90 (first_eviction_us set at every eviction), K91 (`_finished`: a RST
  from endpoint 0 only), K93 (the sampling rate's min);
* test_rule_boundaries.py: K70 (`_idle`: UDP-Lite, 136, dropped), K71 (ICMPv6, 58,
  dropped), K72 (the orientation's tie `sender <` -> `<=`), K81 (`finish`: the `+ 1`
  dropped), K83 (2b': `first > last_seen` -> `>=`), K89 (stray: `last + idle < opened` ->
  `<=`);
* test_sessionizer_mutation_audit.py: K80 (`_remember`: the hour's bound dropped).

Each test names the change it kills ("Kills K74 ...") and runs on both engines: the
reference passes it too, so each is a rule of sessions.md, inference.py or reference.py,
not a quirk of the kernel. No test here found the kernel and the reference apart.
"""

from __future__ import annotations

import pytest

from obserae_forensics.sessionize import SessionPolicy

from .scenario import ACK, FIN, SYN, at, by_key, rec, run, tick

pytestmark = pytest.mark.parametrize("engine", ["numba", "reference"])

A, B = "10.0.0.1", "10.0.0.2"  # A is the smaller endpoint of every key below
C, D = "10.0.0.3", "10.0.0.4"


# -- fragments and the memory of closed sessions ----------------------------------------------
def test_a_fragment_remembered_when_the_slot_table_fills_still_takes_its_next_piece(
    engine: str,
) -> None:
    """Kills K87 (`_collect`: a full slot table frees every slot that only remembers a
    closed session, not just the expired ones). A's UDP flow is cut at 60 s by a 60 s
    hard_timeout; seventy new keys then fill the slot table (64 at the start), and the
    kernel takes back the slots of forgotten sessions before it grows. A's fragment is not
    forgotten (until 59.9 + 30 + 30 + 59.9 s): its next record, starting within its idle
    timeout, is fragment 1. With K87 the fragment's slot was freed with the forgotten ones
    and the record opened a new conversation, split 0.
    test_kernel_with_tiny_tables_equals_reference noticed K87 first, by its draw."""
    policy = SessionPolicy(hard_timeout_us=60 * 1_000_000)
    fillers = [rec(91, proto=17, src=C, sport=10000 + k, dst=D, dport=53) for k in range(70)]
    records = [rec(0, 59.9, proto=17, dport=53), *fillers, rec(89, 91, proto=17, dport=53)]
    mine = [s for s in by_key(run(records, policy, engine=engine)[0], "UDP") if s["ip_a"] == A]
    mine.sort(key=lambda s: s["opened_at"])
    assert [(s["opened_at"], s["split"]) for s in mine] == [(at(0), 0), (at(89), 1)]


# -- the eviction heap ----------------------------------------------------------------------------
def test_the_victim_is_the_oldest_session_whichever_slot_it_holds(engine: str) -> None:
    """Kills K86 (`_eviction_sift_down`: the fourth child of a node never compared) and K94
    (`_eviction_build`: the heap built from the open sessions in slot order without the
    sift-down of its last parent). Rule 4: at the cap the victim is the open session with
    the oldest last_seen. Five UDP flows open at 0-0.4 s (slots 0-4); the first four are
    seen again at 1-1.3 s, so the fifth, last seen at 0.4 s, is the oldest when a sixth
    flow meets the cap of 5: it is evicted, at 2 s. With K86 or K94 the heap's top stayed
    the first flow (its last child never compared), evicted in the fifth's place.
    test_crowded_cap_equals_reference noticed K86 first, by its draw, and
    test_eviction_ties_on_last_seen_go_to_the_smallest_key_down_to_its_last_port K94."""
    flows = [rec(k / 10, proto=17, sport=50001 + k, dport=53) for k in range(5)]
    again = [rec(1 + k / 10, proto=17, sport=50001 + k, dport=53) for k in range(4)]
    records = [*flows, *again, rec(2, proto=17, src=C, dst=D, dport=53)]
    policy = SessionPolicy(max_open_ksessions=0.005)
    sessions, _, sessionizer = run(records, policy, engine=engine)
    evicted = [s for s in sessions.to_pylist() if s["close_reason"] == "evicted"]
    assert [(s["port_a"], s["last_seen_at"], s["closed_at"]) for s in evicted] == [
        (50005, at(0.4), at(2))
    ]
    assert sessionizer.pressure()["192.0.2.1"]["evictions"] == 1


# -- traffic shape: the endpoint table ------------------------------------------------------------
def test_an_endpoint_keeps_its_count_when_a_colliding_endpoint_leaves_the_table(
    engine: str,
) -> None:
    """Kills K74 (`_endpoint_release`: the backward-shift deletion's `>=` -> `>`: an entry
    whose home is the hole itself is left behind it). A:40014 and A:40016 (UDP) share their
    home position in the kernel's 256-entry endpoint table, so A:40016, added second, sits
    one after it. A:40014's only session closes at 30 s while A:40016 serves one peer; two
    more peers come at 60.5 s: A:40016 has three sessions at once, a server by traffic
    shape (0.60) for all three, as in test_every_session_of_a_burst_closes_traffic_shape_
    with_the_busy_endpoint_serving. With K74 A:40016's entry became unreachable from its
    home when A:40014's left, the new peers counted in a second entry (peak 2), and the
    first peer's session came out first_sender. (The ports are chosen for the kernel's
    hash: another hash would make this a plain traffic-shape test.)"""
    peers = [f"10.0.1.{k}" for k in range(1, 5)]
    records = [
        rec(0, proto=17, src=peers[0], sport=50000, dst=A, dport=40014),
        rec(1, proto=17, src=peers[1], sport=50001, dst=A, dport=40016),
        tick(60.5),  # watermark 30.5: A:40014's session closes no_reply at 30
        rec(60.5, proto=17, src=peers[2], sport=50002, dst=A, dport=40016),
        rec(60.6, proto=17, src=peers[3], sport=50003, dst=A, dport=40016),
        tick(200),
    ]
    sessions = by_key(run(records, engine=engine)[0], None)
    served = sorted(
        (s["closed_at"], s["server_ip"], s["server_port"], s["role_method"], s["role_confidence"])
        for s in sessions
        if s["port_a"] == 40016 or s["port_b"] == 40016
    )
    assert served == [
        (at(31), A, 40016, "traffic_shape", 0.6),
        (at(90.5), A, 40016, "traffic_shape", 0.6),
        (at(90.6), A, 40016, "traffic_shape", 0.6),
    ]


# -- strays -----------------------------------------------------------------------------------
def test_a_stray_is_remembered_and_a_late_session_does_not_replace_it(engine: str) -> None:
    """Kills K92 (`_stray`: the stray not remembered as its key's last closed session).
    Rule 3: a late session, a late stray too, does not replace a remembered session that is
    not late; a stray that is not late is one. With a 60 s hard_timeout: A's late flow opens
    at 950 s (the watermark is at 970 s); a two-minute record of its key, 880-1000 s, starts
    a hard_timeout before it: a stray, on time, closed at once and remembered. The late
    session closes at 990 s and does not replace it, so B's late answer at 960 s follows the
    stray. With K92 the stray was forgotten at once, the late session took its place, and
    the answer followed the late session."""
    policy = SessionPolicy(hard_timeout_us=60 * 1_000_000)
    records = [
        tick(1000),  # watermark 970
        rec(950, 960, proto=17, dport=53),  # late
        rec(880, 1000, proto=17, dport=53),  # starts hard_timeout before 950: a stray
        tick(1030),  # watermark 1000: the late session closes at 990
        rec(960, 965, proto=17, src=B, sport=53, dst=A, dport=40000),  # late
        tick(1100),
    ]
    sessions = by_key(run(records, policy, engine=engine)[0], "UDP")
    stray, late, answer = sorted(sessions, key=lambda s: s["opened_at"])
    assert [(s["opened_at"], s["late"], s["closed_at"]) for s in (stray, late, answer)] == [
        (at(880), False, at(940)),
        (at(950), True, at(990)),
        (at(960), True, at(995)),
    ]
    assert answer["follows_session_id"] == stray["session_id"]


# -- late sessions --------------------------------------------------------------------------------
def test_each_late_session_of_a_key_follows_the_late_one_before_it(engine: str) -> None:
    """Kills K100 (`_rememberable`: a late session never replaces a remembered one, late or
    not). Rule 3: a late session does not replace a remembered session that is not late;
    one that is late it does, "so that the late records of one conversation ... follow one
    another". Three late flows of one key at 100, 200 and 300 s (the watermark at 970 s),
    each closed in the sweep after its record: the second follows the first, the third the
    second. With K100 the first stayed remembered and the third followed it too.
    test_watermark_jumps_close_whole_buckets_as_the_reference noticed K100 first, by its
    draw."""
    records = [tick(1000), *(rec(t, t + 1, proto=17, dport=53) for t in (100, 200, 300))]
    sessions = by_key(run(records, engine=engine)[0], "UDP")
    first, second, third = sorted(sessions, key=lambda s: s["opened_at"])
    assert [(s["opened_at"], s["late"], s["closed_at"]) for s in (first, second, third)] == [
        (at(100), True, at(131)),
        (at(200), True, at(231)),
        (at(300), True, at(331)),
    ]
    assert (first["follows_session_id"], second["follows_session_id"]) == (
        None,
        first["session_id"],
    )
    assert third["follows_session_id"] == second["session_id"]


# -- session ids ----------------------------------------------------------------------------------
def test_a_session_a_deep_record_reaches_back_into_gets_its_own_id(engine: str) -> None:
    """Kills K101 (`replay`: a session deep only when its opening record is, not when a
    record that joins it starts that far back). Rule 6: a session is deep when *one of* its
    records starts before W - (smallest idle) - grace; only a deep session can share
    (opened_at, split, late) with a forgotten session of its key, so its dup is its opening
    record's identity. A's flow at 0-1 s closed at 31 s and was forgotten (at 61 s); a new
    flow at 200 s is joined by a long record starting at 0 s: both opened at 0 s, on time,
    split 0. Their session_ids differ; with K101 the second was not deep, both had dup 0
    and one session_id. test_watermark_jumps_close_whole_buckets_as_the_reference noticed
    K101 first, by its draw."""
    records = [
        rec(0, 1, proto=17, dport=53),
        tick(100),  # watermark 70: the flow closed at 31 is forgotten
        rec(200, 201, proto=17, dport=53),
        rec(0, 250, proto=17, dport=53),  # joins it, from before the watermark
        tick(400),
    ]
    sessions = by_key(run(records, engine=engine)[0], "UDP")
    assert sorted((s["opened_at"], s["split"], s["late"], s["flow_count"]) for s in sessions) == [
        (at(0), 0, False, 1),
        (at(0), 0, False, 2),
    ]
    assert len({s["session_id"] for s in sessions}) == 2


# -- a stray's sweep ---------------------------------------------------------------------------
def test_the_watermark_a_stray_brings_closes_what_it_passes_before_the_next_record(
    engine: str,
) -> None:
    """Kills K103 (the sweep after a stray record dropped: the watermark it brings waits for
    the next record's sweep). Rule 5: after every record, stray or not, every open session
    whose deadline the watermark passes closes. A long record of A's key starting a
    hard_timeout (60 s) before A's session is a stray that moves the watermark to 150 s:
    C's flow, due at 131 s, closes then, and C's late record starting at 125 s opens a late
    session that follows it and goes on with it. With K103 C's flow was still open when that
    record came and took it in (two flows, one late record, closed at 156 s)."""
    policy = SessionPolicy(hard_timeout_us=60 * 1_000_000)
    records = [
        rec(100, proto=17, dport=53),
        rec(101, proto=17, src=C, sport=5000, dst=D, dport=53),
        rec(39, 180, proto=17, dport=53),  # starts hard_timeout before A's: a stray
        rec(125, 126, proto=17, src=C, sport=5000, dst=D, dport=53),
        tick(400),
    ]
    flows = [s for s in by_key(run(records, policy, engine=engine)[0], "UDP") if s["ip_a"] == C]
    flows.sort(key=lambda s: s["opened_at"])
    assert [(s["opened_at"], s["flow_count"], s["late"], s["closed_at"]) for s in flows] == [
        (at(101), 1, False, at(131)),
        (at(125), 1, True, at(156)),
    ]
    assert flows[1]["follows_session_id"] == flows[0]["session_id"]


def test_two_late_sessions_of_one_key_and_opening_get_distinct_ids(engine: str) -> None:
    """Kills K104 (`_finalize`: a late session's dup counted like an on-time one's, not its
    opening record's identity). Rule 6: a late session's dup is its opening record's
    identity, because the key's last closed session it would count from is often not the
    one of its own opening: here A's on-time flow stays remembered (a late session does not
    replace it), and the same late answer reported twice (two observation domains) opens two
    late sessions of one key, opened_at, split and late (neither deep: 17 s is not before
    50 - 5 - 30 s). Their session_ids differ; with K104 both had dup 0 and one session_id.
    test_kernel_with_tiny_tables_equals_reference noticed K104 first, by its draw."""
    answer = {"proto": 17, "src": B, "sport": 53, "dst": A, "dport": 40000}
    records = [
        rec(0, 1, proto=17, dport=53),
        tick(80),  # watermark 50: A's flow closes no_reply at 31, remembered until 61
        rec(17, 18, **answer, domain=1),  # late, not deep, due at 48: closes in its sweep
        rec(17, 18, **answer, domain=2),
        tick(200),
    ]
    sessions = by_key(run(records, engine=engine)[0], "UDP")
    assert sorted((s["opened_at"], s["late"], s["exporter_domain"]) for s in sessions) == [
        (at(0), False, 0),
        (at(17), True, 1),
        (at(17), True, 2),
    ]
    assert len({s["session_id"] for s in sessions}) == 3


# -- a SYN after a finished connection ----------------------------------------------------------
def test_a_late_biflow_whose_answer_carries_the_syn_is_a_new_connection(engine: str) -> None:
    """Kills K105 (`_reopens`: the SYN looked for in the record's forward flags only, not
    in a biflow record's reverse half too). Rule 3: a late record after a finished
    connection (FIN both ways) that starts after its last_seen with a SYN is a new
    connection on the 5-tuple and does not go on with it (test_a_late_new_connection_after_
    a_finished_one_does_not_go_on_with_it, with the SYN in the forward flags). Here the SYN
    is the reverse half's, B's SYN-ACK in A's biflow record at 5 s: a new exchange, both
    directions seen, `idle` at 65 s. With K105 it inherited the finished connection's FINs
    and closed `fin` at its own last_seen, 5 s."""
    records = [
        rec(0, 2, flags=SYN | ACK | FIN),
        rec(0.1, 2, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN),
        tick(100),  # watermark 70: the connection closes fin at 2
        rec(5, flags=ACK, rflags=SYN | ACK, rpackets=1, roctets=60),  # late
        tick(300),
    ]
    first, late = sorted(by_key(run(records, engine=engine)[0]), key=lambda s: s["opened_at"])
    assert (first["close_reason"], first["closed_at"]) == ("fin", at(2))
    assert (late["late"], late["follows_session_id"]) == (True, first["session_id"])
    assert (late["close_reason"], late["closed_at"], late["ba_flags"]) == (
        "idle",
        at(65),
        SYN | ACK,
    )
