"""Hand-made scenarios at the boundaries of the rules (ties, equalities, the ladder's rungs
and confidences, ids): a mutation audit changed each rule a little, in the kernel and the
reference alike, and no test failed. Each test names the change it catches."""

from __future__ import annotations

import pytest

from obserae_forensics.sessionize import SessionPolicy

from .scenario import ACK, FIN, RST, SECOND, SYN, at, by_key, documented_id, rec, run, tick

pytestmark = pytest.mark.parametrize("engine", ["numba", "reference"])

A, B, C, D = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"


# -- server-side ladder -------------------------------------------------------------------
def test_echo_replies_alone_name_their_sender_the_server_at_0_80(engine: str) -> None:
    """Catches I-replyconf (replies-only confidence 0.80 -> 0.90 for the lo endpoint)."""
    for sender, receiver in ((A, B), (B, A)):  # the lo and the hi endpoint sending replies
        [s] = by_key(
            run([rec(0, proto=1, src=sender, dst=receiver, sport=0, dport=0)], engine=engine)[0],
            None,
        )
        assert (s["server_ip"], s["client_ip"], s["role_method"], s["role_confidence"]) == (
            sender,
            receiver,
            "icmp_echo",
            0.8,
        )


def test_a_declared_service_beats_a_known_port_on_the_other_side(engine: str) -> None:
    """Rung 2 (cartography) before rung 3 (service_port): A:40001 is declared, its peer
    talks from port 53. Catches I-cartoorder and I-cartoconf (0.80)."""

    def services(addresses, protocols, ports):
        return (addresses[:, 15] == 1) & (ports == 40001)

    [s] = by_key(
        run(
            [rec(0, proto=17, src=B, sport=53, dst=A, dport=40001)],
            engine=engine,
            services=services,
        )[0],
        None,
    )
    assert (s["server_ip"], s["server_port"], s["role_method"], s["role_confidence"]) == (
        A,
        40001,
        "cartography",
        0.8,
    )


def test_traffic_shape_needs_a_peak_of_three(engine: str) -> None:
    """Two peers at once on A:40001 is no traffic shape (peak 2 < 3): first_sender, 0.50.
    Catches I-shapemin (3 -> 2) and I-firstconf (0.50)."""
    records = [
        rec(1, proto=17, src=C, sport=50001, dst=A, dport=40001),
        rec(2, proto=17, src=D, sport=50002, dst=A, dport=40001),
    ]
    sessions = by_key(run(records, engine=engine)[0], None)
    assert sorted((s["client_ip"], s["role_method"], s["role_confidence"]) for s in sessions) == [
        (C, "first_sender", 0.5),
        (D, "first_sender", 0.5),
    ]


@pytest.mark.parametrize("busy", [A, "10.0.9.9"])
def test_traffic_shape_at_exactly_twice_the_other_peak(engine: str, busy: str) -> None:
    """busy:40001 peaks at 4 sessions, its peer C:50001 at 2: 4 >= 2 x 2 is traffic_shape,
    0.60, whether the busy endpoint is the smaller of the two (A) or the larger (10.0.9.9).
    Catches I-shapetwice (>= -> >), I-shapeconf (0.60) and, with the larger, the keys
    audit's I16 (`peak1 >= 2 * peak0` -> `>`, test_keys_mutation_audit.py)."""
    records = [
        rec(0, proto=17, src=C, sport=50001, dst="10.0.0.5", dport=40002),
        rec(1, proto=17, src=C, sport=50001, dst=busy, dport=40001),
    ]
    records += [
        rec(1 + k, proto=17, src=f"10.0.1.{k}", sport=50010 + k, dst=busy, dport=40001)
        for k in (1, 2, 3)
    ]
    sessions = by_key(run(records, engine=engine)[0], None)
    [s] = [s for s in sessions if {s["ip_a"], s["ip_b"]} == {busy, C}]
    assert (s["server_ip"], s["server_port"], s["role_method"], s["role_confidence"]) == (
        busy,
        40001,
        "traffic_shape",
        0.6,
    )


def test_icmp_extended_echo_request_names_the_client(engine: str) -> None:
    """RFC 8335 PROBE over ICMPv4 (42 request, 43 reply) is echo. Catches I-extecho4."""
    records = [
        rec(0, proto=1, src=B, dst=A, sport=0, dport=42 << 8),
        rec(0.1, proto=1, src=A, dst=B, sport=0, dport=43 << 8),
    ]
    [s] = by_key(run(records, engine=engine)[0], None)
    assert (s["client_ip"], s["role_method"], s["role_confidence"]) == (B, "icmp_echo", 0.9)


# -- idle by state --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("proto", "dport", "idle"),
    [
        (17, 5001, 30),
        (136, 5001, 30),
        (1, 8 << 8, 10),
        (58, 128 << 8, 10),
        (132, 5001, 60),
        (47, 0, 60),
    ],
)
def test_idle_timeout_by_protocol(engine: str, proto: int, dport: int, idle: int) -> None:
    """UDP-Lite takes idle.udp, ICMPv6 idle.icmp, SCTP and GRE idle.other (README).
    Catches B-udplite (UDP-Lite -> other) and B-icmp6 (ICMPv6 -> other)."""
    [s] = by_key(
        run([rec(0, proto=proto, sport=5000, dport=dport), tick(500)], engine=engine)[0], None
    )
    assert (s["state"], s["close_reason"], s["closed_at"]) == ("closed", "no_reply", at(idle))


# -- hard_timeout ---------------------------------------------------------------------------
def test_hard_deadline_wins_a_tie_with_the_idle_deadline(engine: str) -> None:
    """opened_at + hard_timeout == last_seen + idle (both 60 s): `hard_timeout`, which also
    wins a tie (reference.py), so the next record within idle goes on as fragment 1.
    Catches B-hardtie (hard <= natural -> hard < natural)."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = [
        rec(0, 30, proto=17),
        rec(0, 30, proto=17, src=B, dst=A, sport=443, dport=40000),
        tick(200),
    ]
    [s] = by_key(run(records, policy, engine=engine)[0], None)
    assert (s["close_reason"], s["closed_at"]) == ("hard_timeout", at(60))
    # the same with the finish: FIN both ways with last_seen at the hard deadline
    records = [
        rec(0, 60, flags=SYN | ACK | FIN),
        rec(0.1, 60, src=B, dst=A, sport=443, dport=40000, flags=SYN | ACK | FIN),
        tick(200),
    ]
    [s] = by_key(run(records, policy, engine=engine)[0], None)
    assert (s["close_reason"], s["closed_at"]) == ("hard_timeout", at(60))


def test_next_fragment_starting_exactly_idle_after_the_cut_fragments_last_seen(engine: str) -> None:
    """ "goes on in the next fragment when its next record starts within the idle timeout of
    the fragment's last_seen": at exactly last_seen + idle it still does (<=).
    Catches B-cont (<= -> <)."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = [
        rec(0, 50, proto=17),
        rec(0, 50, proto=17, src=B, dst=A, sport=443, dport=40000),
        rec(80, 81, proto=17, src=B, dst=A, sport=443, dport=40000),
        tick(300),
    ]
    fragments = by_key(run(records, policy, engine=engine)[0], None)
    assert [(f["split"], f["close_reason"]) for f in fragments] == [
        (0, "hard_timeout"),
        (1, "idle"),
    ]
    assert fragments[1]["conversation_id"] == fragments[0]["session_id"]
    assert fragments[1]["client_ip"] == A  # inherited, though B sent the fragment's record


# -- joining --------------------------------------------------------------------------------
def test_a_record_starting_exactly_at_the_idle_deadline_still_joins(engine: str) -> None:
    """A new session only when first_seen > last_seen + idle (sessions.md): at equality the
    record joins. Catches B-idlejoin (> -> >=)."""
    records = [rec(0, 1, proto=17), rec(31, 32, proto=17), tick(300)]
    [s] = by_key(run(records, engine=engine)[0], None)
    assert (s["flow_count"], s["opened_at"], s["last_seen_at"]) == (2, at(0), at(32))


def test_a_record_ending_exactly_idle_before_the_session_joins_it(engine: str) -> None:
    """A stray only when r.last_seen + idle < opened_at: a record ending exactly idle
    before the open session's start joins it (no internal gap beyond idle).
    Catches B-stray (< -> <=)."""
    records = [rec(100, proto=17), rec(70, proto=17), tick(300)]
    [s] = by_key(run(records, engine=engine)[0], None)
    assert (s["flow_count"], s["opened_at"], s["late"]) == (2, at(70), False)


def test_a_syn_at_the_very_instant_a_connection_finished_joins_it(engine: str) -> None:
    """A new connection on the 5-tuple only for a SYN that starts *after* the finished
    connection's last record (README): one at that very instant joins it.
    Catches B-reopen (first > last -> first >= last)."""
    records = [
        rec(0, flags=SYN),
        rec(0.001, src=B, sport=443, dst=A, dport=40000, flags=RST | ACK),
        rec(0.001, flags=SYN),
        tick(40),
    ]
    [s] = by_key(run(records, engine=engine)[0], "TCP")
    assert (s["flow_count"], s["close_reason"]) == (3, "rejected")


# -- TCP finish -----------------------------------------------------------------------------
def test_a_refusal_of_an_opening_that_also_sent_fin_is_rst_not_rejected(engine: str) -> None:
    """`rejected`: the opening side sent SYN and no PSH or FIN (README). A SYN|FIN opening
    answered by RST is `rst`. Catches B-rejfin (FIN dropped from OPENING_ONLY)."""
    records = [
        rec(0, flags=SYN | FIN),
        rec(0.001, src=B, sport=443, dst=A, dport=40000, flags=RST | ACK),
        tick(40),
    ]
    [s] = by_key(run(records, engine=engine)[0], "TCP")
    assert s["close_reason"] == "rst"


# -- late records ---------------------------------------------------------------------------
def test_a_record_ending_exactly_at_the_watermark_is_not_late(engine: str) -> None:
    """Late means last_seen < watermark (strictly behind it). Catches B-late (< -> <=)."""
    records = [tick(100), rec(60, 70, proto=17), tick(300)]  # watermark 100 - 30 = 70
    [s] = by_key(run(records, engine=engine)[0], "UDP")
    assert (s["late"], s["follows_session_id"]) == (False, None)


def test_a_late_record_starting_at_the_closed_sessions_opening_follows_it(engine: str) -> None:
    """follows_session_id names the closed session a late record "falls into or just
    follows": one starting at that session's very opened_at falls into it.
    Catches B-follows (prev.opened <= first -> <)."""
    records = [rec(0, 1, proto=17), tick(70), rec(0, 0.5, proto=17), tick(300)]
    first, late = by_key(run(records, engine=engine)[0], "UDP")
    assert (late["late"], late["follows_session_id"]) == (True, first["session_id"])


# -- cap ------------------------------------------------------------------------------------
def test_eviction_ties_on_last_seen_go_to_the_smallest_key(engine: str) -> None:
    """ "the open session with the oldest last_seen (ties broken by key)": the smaller key
    (A:1001 before A:1002) is the victim. Catches B-evtie (ties by largest key)."""
    policy = SessionPolicy(max_open_ksessions=0.002)
    records = [
        rec(0, 1, proto=17, sport=1002),
        rec(0, 1, proto=17, sport=1001),
        rec(2, proto=17, sport=1003),
    ]
    sessions, _, _ = run(records, policy, engine=engine)
    evicted = [s["port_a"] for s in by_key(sessions, None) if s["close_reason"] == "evicted"]
    assert evicted == [1001]


def test_a_late_session_due_exactly_at_the_watermark_still_takes_a_place(engine: str) -> None:
    """A late session whose deadline equals the watermark it arrives with is not passed
    (the sweep closes deadline < watermark): it stays open after its record, so at a full
    cap it evicts the oldest session. Catches B-passing (< -> <=: the cap is exceeded between
    records and no pressure is counted)."""
    policy = SessionPolicy(max_open_ksessions=0.001)
    records = [rec(100, 200, proto=17, sport=1001), rec(140, proto=17, sport=1002)]
    sessions, _, sessionizer = run(records, policy, engine=engine)
    by_port = {s["port_a"]: s for s in by_key(sessions, None)}
    assert (by_port[1001]["close_reason"], by_port[1002]["late"]) == ("evicted", True)
    assert sessionizer.pressure()["192.0.2.1"]["evictions"] == 1


# -- end of input ---------------------------------------------------------------------------
def test_a_connection_whose_fins_are_the_last_records_closes_fin(engine: str) -> None:
    """End of input: the watermark passes the newest last_seen, so a connection whose FINs
    are the capture's last records closes `fin` (README). Catches B-eoi (+1 dropped)."""
    records = [
        rec(0, 1, flags=SYN | ACK | FIN),
        rec(0.1, 1.5, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN),
    ]
    [s] = by_key(run(records, engine=engine)[0], None)
    assert (s["state"], s["close_reason"], s["closed_at"]) == ("closed", "fin", at(1.5))


# -- orientation ----------------------------------------------------------------------------
def test_icmp_type_and_domain_come_from_the_first_record(engine: str) -> None:
    """Two records from one sender with one first_seen: the first one's ICMP type and
    exporter_domain are kept. Catches B-orient ((first, sender) < ... -> <=)."""
    records = [
        rec(0, proto=1, sport=0, dport=8 << 8, domain=1),
        rec(0, proto=1, sport=0, dport=3 << 8 | 1, domain=2),
    ]
    [s] = by_key(run(records, engine=engine)[0], None)
    assert (s["icmp_type"], s["icmp_code"], s["exporter_domain"]) == (8, 0, 1)


# -- inheritance by later fragments ----------------------------------------------------------
def test_later_fragments_keep_fragment_0s_role_method_and_confidence(engine: str) -> None:
    """Fragment 1 sees only ACKs (a fresh inference would say service_port, 0.70): it keeps
    fragment 0's tcp_handshake at 0.95. Catches B-conf (confidence re-inferred)."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = [
        rec(0, 50, flags=SYN | ACK),
        rec(0.1, 50, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK),
        rec(61, 70, flags=ACK),
        rec(61, 70, src=B, sport=443, dst=A, dport=40000, flags=ACK),
        tick(300),
    ]
    fragments = by_key(run(records, policy, engine=engine)[0], None)
    assert [(f["split"], f["role_method"], f["role_confidence"]) for f in fragments] == [
        (0, "tcp_handshake", 0.95),
        (1, "tcp_handshake", 0.95),
    ]


# -- session_id / follows_session_id ---------------------------------------------------------


def test_session_id_is_the_documented_hash_of_its_inputs(engine: str) -> None:
    """README: BLAKE2b-64 of the exporter text as seed, then protocol, the canonical
    endpoints, opened_at, split, late (and dup, 0 here) folded in by splitmix64.
    Catches O-idlate / O-idsplit / O-idopened (an input dropped from the hash)."""
    [s] = by_key(run([rec(7, 8, proto=17, sport=40000, dport=443)], engine=engine)[0], None)
    assert s["session_id"] == documented_id((A, 40000), (B, 443), 7) == s["conversation_id"]


def test_a_late_session_after_fragment_1_names_fragment_1(engine: str) -> None:
    """follows_session_id is the id of the session followed, its split included.
    Catches O-followsplit (follows id hashed with split 0)."""
    policy = SessionPolicy(hard_timeout_us=30 * SECOND)
    records = [
        rec(0, 10, proto=17),
        rec(20, 29, proto=17),
        rec(31, 40, proto=17),
        tick(100),
        rec(45, 50, proto=17),
        tick(400),
    ]
    sessions = by_key(run(records, policy, engine=engine)[0], None)
    [fragment1] = [s for s in sessions if s["split"] == 1]
    [late] = [s for s in sessions if s["late"]]
    assert late["follows_session_id"] == fragment1["session_id"]
