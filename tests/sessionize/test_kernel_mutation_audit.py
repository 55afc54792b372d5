"""Behaviour of the numba sessionizer kernel (sessionize/kernel.py) that no test pinned, found
by a mutation audit: the forty-first session's audit of kernel.py. 38 changes (K01-K38), 16 of
which no test noticed: 12 real gaps (K04, K06, K11, K12, K14, K15, K18, K19, K27, K31, K34,
K38), each pinned here, and 4 equivalent:

* K26 (`_canonical`: `sport <= dport` -> `<`): it differs only for a record whose source and
  destination are one endpoint (address and port); the key is the same, and every column
  (ab_/ba_, direction, flags, server) is relative to the orientation, which flips with it;
* K28 (`_advance`: `event and` dropped before `last > S_NEWEST_LAST`): S_NEWEST_LAST is read
  only under event replay (the victim's close time, the end of input);
* K29 (stray test `first < opened` -> `<=`): a record starting at opened_at is never a stray:
  last + idle >= opened, and an open session always has max_first < opened + hard_timeout
  (a record starting at opened + hard_timeout closes it; one reaching back lowers opened
  only when first + hard_timeout > max_first);
* K30 (`_wheel_move`: `bucket <= passed_bucket` -> `<`): the last bucket the watermark
  passed whole goes to the near heap instead of the due list; its entries are all before
  the watermark, so the same sweep closes them, and the order of one sweep's closes is not
  observable (_sweep_due).

The other 22 were noticed by test_rules.py and test_rule_boundaries.py (14), by
test_keys_mutation_audit.py (K25), or only by the hypothesis properties, by their draw
(test_kernel_equals_reference: K01, K02, K08, K16, K32; test_crowded_cap_equals_reference:
K21; test_kernel_equals_reference_across_long_gaps: K35). The tests here kill some of those
too (K01, K02, K03, K08, K09, K10, K16, K17, K20, K21, K32, K36: their docstrings say which
test noticed them first). Each test names the change it kills
("Kills K07 ...") and runs on both engines: the reference (reference.py) passes it too, so
each is a rule of sessions.md or of reference.py's docstring, not a quirk of the kernel.
"""

from __future__ import annotations

import pytest

from obserae_forensics.sessionize import SessionPolicy

from .scenario import ACK, FIN, RST, SECOND, SYN, at, by_key, rec, run, tick

pytestmark = pytest.mark.parametrize("engine", ["numba", "reference"])

A, B = "10.0.0.1", "10.0.0.2"  # A is the smaller endpoint of every key below
PSH = 0x08


# -- TCP states and close reasons, from the larger endpoint's side ---------------------------
def test_an_unanswered_syn_from_the_larger_endpoint_is_half_open(engine: str) -> None:
    """Kills K01 (`_half_open`: `seen != 1 and seen != 2` -> `seen != 1`): "the initiator
    sent SYN without ACK and nothing came back yet" whichever endpoint of the key it is. A
    scan from 10.0.0.2 came out `active` and waited the established 60 s idle timeout, not
    tcp_half_open's 5 s. test_kernel_equals_reference noticed K01 too, by its draw."""
    syn = rec(0, src=B, sport=40000, dst=A, dport=443, flags=SYN)
    [s] = by_key(run([syn, tick(4)], engine=engine)[0])
    assert (s["state"], s["closed_at"]) == ("half_open", None)
    [s] = by_key(run([syn, tick(40)], engine=engine)[0])
    assert (s["state"], s["close_reason"], s["closed_at"]) == ("closed", "no_reply", at(5))


def test_a_refused_opening_from_the_larger_endpoint_is_rejected(engine: str) -> None:
    """Kills K02 (`_state_reason`: the branch for an opening from endpoint 1 dropped):
    `rejected` is "the only answer to a TCP opening was RST" whichever side opened; with B
    (the larger endpoint) connecting to A:443, the refusal closed `rst`, an established
    exchange reset, and left the refused-connection queries. test_kernel_equals_reference
    noticed K02 too, by its draw."""
    records = [
        rec(0, src=B, sport=40000, dst=A, dport=443, flags=SYN),
        rec(0.001, sport=443, dport=40000, flags=RST | ACK),
        tick(40),
    ]
    [s] = by_key(run(records, engine=engine)[0])
    assert (s["close_reason"], s["server_ip"], s["server_port"]) == ("rejected", A, 443)


def test_one_way_midstream_from_the_larger_endpoint_is_idle_not_no_reply(engine: str) -> None:
    """Kills K32 (`_state_reason`: `(f0 | f1) & ACK` -> `f0 & ACK`): one direction of an
    established connection (ACK and data, no SYN) is no attempt, whichever endpoint sent
    it; the server's half (B:443 -> A) closed `no_reply`, a "Likely TCP scan".
    test_kernel_equals_reference noticed K32 too, by its draw."""
    records = [
        rec(0, 20, src=B, sport=443, dst=A, dport=40000, flags=ACK | PSH, packets=50),
        tick(200),
    ]
    [s] = by_key(run(records, engine=engine)[0])
    assert (s["close_reason"], s["ab_packets"], s["ba_packets"]) == ("idle", 50, 0)


def test_fins_on_both_sides_of_a_cut_finish_when_the_larger_endpoint_fins_first(
    engine: str,
) -> None:
    """Kills K03 (`_inherit`: inherited FINs `& 3` -> `& 1`): the FINs a conversation saw
    carry over into its next fragment from either side. With the server's (endpoint 1's)
    FIN before the cut and the client's after it, fragment 1 never finished: it waited the
    60 s idle timeout and closed `idle`. test_rules.py noticed K03 too (a late SYN's
    inherited FINs)."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = [
        rec(0, 50, flags=SYN | ACK),
        rec(0.1, 55, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN),
        rec(61, 70, flags=ACK | FIN),
        tick(200),
    ]
    fragments = by_key(run(records, policy, engine=engine)[0])
    assert [(f["split"], f["close_reason"]) for f in fragments] == [(0, "hard_timeout"), (1, "fin")]
    assert (fragments[1]["closed_at"], fragments[1]["ba_flags"]) == (at(70), 0)


# -- joining, new sessions and fragments at their exact boundaries ----------------------------
def test_a_session_due_exactly_at_the_watermark_takes_its_next_record(engine: str) -> None:
    """Kills K34 (`_sweep_entry`: `deadline < watermark` -> `<=`): the sweep closes a session
    whose deadline is *behind* the watermark. Here the session's queued deadline (31) comes
    due while its real one (40, after the second record) equals the watermark: it stays
    open, and a record starting at 40 (= last_seen + idle) joins it. The kernel closed it
    at 40 and opened a second one-way session."""
    records = [rec(0, 1, proto=17), rec(5, 10, proto=17), tick(70), rec(40, proto=17), tick(300)]
    [s] = by_key(run(records, engine=engine)[0], "UDP")
    assert (s["flow_count"], s["closed_at"], s["late_records"]) == (3, at(70), 0)


def test_a_record_starting_exactly_hard_timeout_after_the_opening_is_the_next_fragment(
    engine: str,
) -> None:
    """Kills K17 (`first >= opened + hard` -> `>`): sessions.md, "it starts at or after
    opened_at + hard_timeout: the open session closes as a fragment". At equality the record
    joined, and the fragment held three records with one past its hard deadline.
    test_rules.py noticed K17 too
    (test_a_fragment_of_an_answered_conversation_is_no_one_way_attempt)."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = [rec(0, 10, proto=17), rec(30, 40, proto=17), rec(60, 61, proto=17), tick(200)]
    fragments = by_key(run(records, policy, engine=engine)[0], "UDP")
    assert [(f["split"], f["flow_count"], f["close_reason"]) for f in fragments] == [
        (0, 2, "hard_timeout"),
        (1, 1, "no_reply"),
    ]
    assert fragments[0]["closed_at"] == at(60)


def test_a_udp_fragment_continues_within_the_udp_idle_timeout_only(engine: str) -> None:
    """Kills K36 (`_remember`: P_CONT = last_seen + idle(state) -> + idle.other): the next
    fragment must start "within the idle timeout of the fragment's last_seen", the UDP one
    (30 s) for UDP. A record 45 s after a cut UDP fragment went on with it as split 1,
    inheriting its answered state (closing `idle`). test_rules.py noticed K36 too (a
    late record's continuation, through P_CONT)."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = [
        rec(0, 50, proto=17),
        rec(0, 50, proto=17, src=B, sport=443, dst=A, dport=40000),
        rec(95, 96, proto=17),
        tick(300),
    ]
    first, second = by_key(run(records, policy, engine=engine)[0], "UDP")
    assert (first["split"], first["close_reason"]) == (0, "hard_timeout")
    assert (second["split"], second["close_reason"]) == (0, "no_reply")
    assert second["conversation_id"] == second["session_id"]


def test_a_record_starting_hard_timeout_before_the_latest_start_is_a_stray(engine: str) -> None:
    """Kills K19 (stray: `first + hard <= max_first` -> `<`): a record that cannot join
    without making the session span more than hard_timeout is a stray (reference rule 2c),
    at equality too. It joined, and the session spanned 61 s under a 60 s hard_timeout
    (sessions.md invariant 4). On the reference engine it kills
    R06, the same boundary in reference.py (the sessionizer audit's)."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = [
        rec(100, 101, proto=17),
        rec(125, 126, proto=17),
        rec(150, 151, proto=17),
        rec(90, 95, proto=17),
        tick(400),
    ]
    sessions = by_key(run(records, policy, engine=engine)[0], "UDP")
    assert sorted((s["opened_at"], s["flow_count"], s["late"]) for s in sessions) == [
        (at(90), 1, True),
        (at(100), 3, False),
    ]


def test_a_stray_is_never_the_next_fragment_of_the_session_before(engine: str) -> None:
    """Kills K27 (`_new_links`: `if stray: return` dropped): a stray is a session of its own
    (reference rule 2c), closed at once, not the next fragment of the key's cut session.
    A long record reaching back over fragment 1 came out as split 1 of fragment 0's
    conversation, beside the real fragment 1."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = [
        rec(0, 30, proto=17),
        rec(30, 59, proto=17),
        rec(60, 61, proto=17),
        rec(0, 61, proto=17),
        tick(400),
    ]
    sessions = by_key(run(records, policy, engine=engine)[0], "UDP")
    assert sorted((s["split"], s["flow_count"]) for s in sessions) == [(0, 1), (0, 2), (1, 1)]
    [stray] = [s for s in sessions if s["split"] == 0 and s["flow_count"] == 1]
    assert stray["conversation_id"] == stray["session_id"]


# -- new connections on a finished connection's 5-tuple ---------------------------------------
def test_a_biflow_whose_reverse_half_opens_anew_is_a_new_connection(engine: str) -> None:
    """Kills K18 (the open-session check `tcp_flags & SYN_EITHER` -> `& TCP_SYN`): a record
    starting after a finished connection "with a SYN" in either half of a biflow record is
    a new connection (reference 2b'). A biflow record (lower address first, as softflowd -b
    writes them) whose reverse half carries B's new SYN joined the finished connection."""
    records = [
        rec(0, 1, src=B, sport=40000, dst=A, dport=443, flags=SYN | ACK | FIN),
        rec(0.1, 1, sport=443, dport=40000, flags=SYN | ACK | FIN),
        rec(2, 3, sport=443, dport=40000, flags=0, packets=0, octets=0, rflags=SYN, rpackets=1),
        tick(100),
    ]
    sessions = by_key(run(records, engine=engine)[0])
    assert [(s["close_reason"], s["flow_count"]) for s in sessions] == [
        ("fin", 2),
        ("no_reply", 1),
    ]


def test_a_late_syn_at_the_very_instant_a_connection_finished_goes_on_with_it(
    engine: str,
) -> None:
    """Kills K06 (`_reopens`: `first > P_CONT - idle` -> `>=`): a late SYN is a new
    connection only when it starts *after* the finished connection's last_seen (reference
    `_reopens`, as B-reopen pins for the open session); one at that very instant goes on
    with it and closes `fin`, not as a one-way attempt."""
    records = [
        rec(0, 1, flags=SYN | ACK | FIN),
        rec(0.1, 1, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN),
        tick(100),
        rec(1, flags=SYN),
        tick(300),
    ]
    first, late = by_key(run(records, engine=engine)[0])
    assert (late["late"], late["follows_session_id"]) == (True, first["session_id"])
    assert (late["close_reason"], late["closed_at"]) == ("fin", at(1))


# -- late records and the remembered session -------------------------------------------------
def test_a_late_record_starting_exactly_idle_after_the_closed_one_goes_on_with_it(
    engine: str,
) -> None:
    """Kills K04 (`_new_links`, late: `first <= P_CONT` -> `<`): a late session goes on with
    the conversation it follows when it starts within that one's idle timeout (reference
    rule 3), at exactly last_seen + idle too: answered, it closes `idle`; the kernel made
    it a one-way `no_reply` session. On the reference engine it kills
    R08, the same boundary in reference.py (the sessionizer audit's)."""
    records = [
        rec(0, 1, proto=17),
        rec(0.5, 1, proto=17, src=B, sport=443, dst=A, dport=40000),
        tick(80),
        rec(31, proto=17),
        tick(300),
    ]
    first, late = by_key(run(records, engine=engine)[0], "UDP")
    assert (late["late"], late["follows_session_id"]) == (True, first["session_id"])
    assert (late["close_reason"], late["client_ip"]) == ("idle", A)


def test_a_closed_session_is_remembered_while_the_watermark_is_at_its_expiry(engine: str) -> None:
    """Kills K12 (`_prev_alive`: `P_EXPIRY >= swept` -> `>`) and K10 (the expiry without the
    grace): a closed session is forgotten once the watermark passes last_seen + idle +
    grace (reference rule 5: `expiry < W`), not when it reaches it. At W = 1 + 30 + 30 the
    late record still follows it. test_rule_boundaries.py noticed K10 (B-follows'
    test), not K12. On the reference engine it kills
    R22, the same boundary in reference.py (the sessionizer audit's)."""
    records = [rec(0, 1, proto=17), tick(91), rec(5, proto=17), tick(300)]
    first, late = by_key(run(records, engine=engine)[0], "UDP")
    assert (late["late"], late["follows_session_id"]) == (True, first["session_id"])


def test_a_fragment_of_a_late_conversation_keeps_its_conversation_id(engine: str) -> None:
    """Kills K31 (`_new_links`: fragment 2's root `late` taken from fragment 1's own late bit,
    not from fragment 1's root): `conversation_id` is fragment 0's session_id for every
    fragment. Fragment 0 is late (its records arrived behind the watermark), fragment 1
    not; fragment 2 got a conversation_id that names no session."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = [
        tick(200),
        rec(100, 130, proto=17),
        rec(150, 200, proto=17),
        rec(211, 215, proto=17),
        tick(500),
    ]
    fragments = by_key(run(records, policy, engine=engine)[0], "UDP")
    assert [(f["split"], f["late"]) for f in fragments] == [(0, True), (1, False), (2, False)]
    assert {f["conversation_id"] for f in fragments} == {fragments[0]["session_id"]}


def test_records_within_min_idle_plus_grace_behind_the_watermark_are_not_deep(
    engine: str,
) -> None:
    """Kills K15 (deep: `first < W - min_idle - grace` -> `<=`) and K16 (one of the two
    graces dropped from that bound): only a record starting before W - (smallest idle) -
    grace makes its session deep, numbered by its record's identity (reference rule 6).
    With W = 70 the bound is 35: sessions opened at 35 and at 50 keep dup 0, and with it
    the session_id they get without the watermark. test_kernel_equals_reference
    noticed K16 (not K15), by its draw. On the reference engine it kills
    R02, the same boundary in reference.py (the sessionizer audit's)."""
    alone = {
        port: by_key(run([rec(start, 100, proto=17, sport=port)], engine=engine)[0], "UDP")[0]
        for port, start in ((1001, 35), (1002, 50))
    }
    records = [tick(100), rec(35, 100, proto=17, sport=1001), rec(50, 100, proto=17, sport=1002)]
    sessions = by_key(run(records, engine=engine)[0], "UDP")
    assert {s["port_a"]: s["session_id"] for s in sessions} == {
        port: s["session_id"] for port, s in alone.items()
    }
    assert not any(s["late"] for s in sessions)


# -- counters and orientation -----------------------------------------------------------------
def test_a_record_without_any_counters_was_sent_by_its_source(engine: str) -> None:
    """Kills K08 (`forward = not (packets == 0 and octets == 0 and reverse)`: `and reverse`
    dropped): only a biflow record whose forward half is silent *and* whose reverse half
    carried something was sent by its destination. A record of zero counters (a damaged
    or template-only export) was oriented from its destination. test_kernel_equals_reference
    noticed K08 too, by its draw."""
    records = [rec(0, src=B, sport=40000, dst=A, dport=53, proto=17, packets=0, octets=0)]
    [s] = by_key(run(records, engine=engine)[0], "UDP")
    assert (s["ip_a"], s["port_a"], s["ip_b"], s["port_b"]) == (B, 40000, A, 53)


def test_a_reverse_half_with_bytes_and_no_packets_is_an_answer(engine: str) -> None:
    """Kills K09 (`reverse = reverse_packets != 0 or reverse_octets != 0` -> packets only):
    a biflow record's reverse half counts as an answer when either of its counters is set
    (an exporter that reports reverse octets only); the exchange closed `no_reply`.
    test_damaged_counters_past_2_64_stop_at_the_ceiling noticed K09 too."""
    records = [rec(0, 1, proto=17, rpackets=0, roctets=50), tick(100)]
    [s] = by_key(run(records, engine=engine)[0], "UDP")
    assert (s["close_reason"], s["ab_bytes"], s["ba_bytes"]) == ("idle", 100, 50)


# -- the cap ----------------------------------------------------------------------------------
def test_a_victim_closes_at_the_newest_last_seen_when_a_late_session_evicts_it(
    engine: str,
) -> None:
    """Kills K20 (the newest clock left out of `now` at a new session: the record's own
    last_seen): the victim closes "at the exporter's newest last_seen" (reference rule 4),
    200 here, not at the late record's 140, and the pressure is reported at 200.
    test_rules.py noticed K20 too (test_a_session_due_at_its_own_opening_evicts_nobody)."""
    policy = SessionPolicy(max_open_ksessions=0.001)
    records = [rec(100, 200, proto=17, sport=1001), rec(140, proto=17, sport=1002)]
    sessions, _, sessionizer = run(records, policy, engine=engine)
    by_port = {s["port_a"]: s for s in by_key(sessions, "UDP")}
    assert (by_port[1001]["close_reason"], by_port[1001]["closed_at"]) == ("evicted", at(200))
    pressure = sessionizer.pressure()["192.0.2.1"]
    assert (pressure["first_eviction_us"], pressure["last_eviction_us"]) == (200 * SECOND,) * 2


def test_the_victim_is_oldest_by_its_current_last_seen(engine: str) -> None:
    """Kills K21 (the eviction heap's stale-entry refresh dropped): the victim is the open
    session with the oldest last_seen *now*. 1002 was queued at last_seen 3 when the cap
    was first reached and seen again at 7 since: 1003 (last_seen 5) is the victim.
    test_crowded_cap_equals_reference noticed K21 too, by its draw."""
    policy = SessionPolicy(max_open_ksessions=0.002)
    records = [
        rec(0, 1, proto=17, sport=1001),
        rec(2, 3, proto=17, sport=1002),
        rec(4, 5, proto=17, sport=1003),
        rec(6, 7, proto=17, sport=1002),
        rec(8, 9, proto=17, sport=1004),
    ]
    sessions, _, _ = run(records, policy, engine=engine)
    evicted = [s for s in by_key(sessions, "UDP") if s["close_reason"] == "evicted"]
    assert sorted((s["port_a"], s["closed_at"]) for s in evicted) == [
        (1001, at(5)),
        (1003, at(9)),
    ]


def test_eviction_ties_on_last_seen_go_to_the_smallest_key_down_to_its_last_port(
    engine: str,
) -> None:
    """Kills K38 (`_eviction_less` compares 7 of the key's 8 fields: the larger endpoint's
    port left out): ties on last_seen are "broken by key", the whole key. Two sessions of
    A:1000 that differ only in the peer's port: the one to B:1001 is the victim, not the
    one the heap happened to hold first."""
    policy = SessionPolicy(max_open_ksessions=0.002)
    records = [
        rec(0, 1, proto=17, sport=1000, dport=1002),
        rec(0, 1, proto=17, sport=1000, dport=1001),
        rec(2, proto=17, sport=1003),
    ]
    sessions, _, _ = run(records, policy, engine=engine)
    evicted = [s["port_b"] for s in by_key(sessions, "UDP") if s["close_reason"] == "evicted"]
    assert evicted == [1001]


def test_a_late_session_is_remembered_for_exactly_the_next_4096_records(engine: str) -> None:
    """Kills K11 (`_remember`: a late session's expiry `records + LATE_MEMORY_RECORDS` ->
    `- 1`): a late session is remembered "for the next R.LATE_MEMORY_RECORDS records of its
    exporter" (reference rule 5): a late record of its key 4,096 records later still
    follows it, one a record later does not. On the reference engine it kills
    R23, the same boundary in reference.py (the sessionizer audit's)."""
    for fillers, follows in ((4096, True), (4097, False)):
        records = [tick(200), rec(0, proto=17), *[tick(200)] * fillers, rec(5, proto=17)]
        first, again = by_key(run(records, engine=engine)[0], "UDP")
        assert (first["late"], again["late"]) == (True, True)
        assert (again["follows_session_id"] == first["session_id"]) is follows, fillers


def test_a_stray_is_numbered_by_its_own_record(engine: str) -> None:
    """Kills K14 (`_stray`: the stray's F_DEEP = 1 -> 0): a stray's dup is its opening
    record's identity (reference rule 6), so its session_id changes with where its record
    lies (source_offset here) and the other sessions' do not. The kernel numbered a stray
    that shares (opened_at, split, late) with the key's remembered fragment 0 as that one's
    dup + 1, a session_id the reference never gives."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    ids: list[dict[tuple[int, int], str]] = []
    for tag in (7000, 8000):
        records = [
            rec(0, 30, proto=17),
            rec(30, 59, proto=17),
            rec(60, 61, proto=17),
            {**rec(0, 61, proto=17), "tag": tag},
            tick(400),
        ]
        sessions = by_key(run(records, policy, engine=engine)[0], "UDP")
        ids.append({(s["split"], s["flow_count"]): s["session_id"] for s in sessions})
    assert ids[0][(0, 2)] == ids[1][(0, 2)] and ids[0][(1, 1)] == ids[1][(1, 1)]
    assert ids[0][(0, 1)] != ids[1][(0, 1)]
