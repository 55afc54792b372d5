"""One small hand-made scenario per rule and close reason of docs/sessions.md, on both engines."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest

from obserae_forensics.sessionize import SessionPolicy

from .scenario import ACK, FIN, RST, SECOND, SYN, at, by_key, rec, run, tick

pytestmark = pytest.mark.parametrize("engine", ["numba", "reference"])

A, B, C, D = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"


def test_fin_both_ways_closes_when_watermark_passes_last_seen(engine: str) -> None:
    records = [
        rec(0, 1, flags=SYN | ACK | FIN),
        rec(0.1, 1.5, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN),
        tick(31.6),
    ]
    sessions, _, _ = run(records, engine=engine)
    [s] = by_key(sessions)
    assert (s["state"], s["close_reason"], s["closed_at"]) == ("closed", "fin", at(1.5))
    assert (s["ip_a"], s["port_a"], s["server_ip"], s["server_port"]) == (A, 40000, B, 443)
    assert (s["role_method"], s["role_confidence"]) == ("tcp_handshake", 0.95)
    assert (s["ab_packets"], s["ba_packets"], s["flow_count"]) == (1, 1, 2)


def test_fin_session_stays_open_until_grace_has_passed(engine: str) -> None:
    """A watermark 0.1 s short of the finish's last_seen leaves the session open; 0.1 s past
    it, it closes (end of input closed it either way: the mutation audit found this test
    could not fail on a grace bug)."""
    from obserae_forensics.sessionize import Sessionizer

    from .scenario import batch

    sessionizer = Sessionizer(SessionPolicy(), engine=engine)
    records = [
        rec(0, 1, flags=SYN | ACK | FIN),
        rec(0.1, 1.5, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN),
        tick(31.4),
    ]
    assert by_key(sessionizer.feed(batch(records)).sessions) == []
    [s] = by_key(sessionizer.feed(batch([tick(31.6)], first_frame=3)).sessions)
    assert (s["close_reason"], s["closed_at"]) == ("fin", at(1.5))


def test_rst_after_exchange_closes_as_rst(engine: str) -> None:
    records = [
        rec(0, 2, flags=SYN | ACK | RST),
        rec(0.1, 1, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK),
        tick(40),
    ]
    [s] = by_key(run(records, engine=engine)[0])
    assert s["close_reason"] == "rst"


def test_rst_as_only_answer_to_syn_is_rejected(engine: str) -> None:
    records = [
        rec(0, flags=SYN),
        rec(0.001, src=B, sport=443, dst=A, dport=40000, flags=RST | ACK),
        tick(40),
    ]
    [s] = by_key(run(records, engine=engine)[0])
    assert (s["close_reason"], s["server_ip"], s["role_confidence"]) == ("rejected", B, 0.9)


def test_a_rst_answering_an_exchange_whose_syn_ack_went_unseen_is_rst(engine: str) -> None:
    """Found by an audit: a client's SYN and 50 packets of data, answered by 100 packets of
    data and a RST (an exporter that missed the SYN-ACK, or sampled it away), closed
    `rejected`, which the reason table keeps for a RST that was the only answer."""
    PSH = 0x08
    exchange = [
        rec(0, 2, flags=SYN | ACK | PSH, packets=50),
        rec(0.1, 2, src=B, sport=443, dst=A, dport=40000, flags=ACK | PSH | RST, packets=100),
        tick(40),
    ]
    [s] = by_key(run(exchange, engine=engine)[0])
    assert s["close_reason"] == "rst"
    # an answer of data without a SYN (its SYN-ACK unseen) to a bare SYN: not a refusal
    data_back = [
        rec(0, flags=SYN),
        rec(0.1, 2, src=B, sport=443, dst=A, dport=40000, flags=ACK | PSH | RST, packets=100),
        tick(40),
    ]
    [s] = by_key(run(data_back, engine=engine)[0])
    assert s["close_reason"] == "rst"
    # SYNs sent again after the refusal, and a stray ACK, are still an opening
    retried = [
        rec(0, 3, flags=SYN | ACK, packets=3),
        rec(0.001, 3, src=B, sport=443, dst=A, dport=40000, flags=RST | ACK, packets=3),
        tick(40),
    ]
    [s] = by_key(run(retried, engine=engine)[0])
    assert s["close_reason"] == "rejected"


def test_a_new_connection_on_a_finished_connections_5_tuple_is_a_session_of_its_own(
    engine: str,
) -> None:
    """Found by a contract audit: a finished connection (FIN both ways, or a RST) stayed
    open until the watermark passed its last_seen, and took a new SYN on its 5-tuple in the
    meantime: a refused attempt and its retry on one port came out as one `rst` session
    (the refusal gone), two connections as one `fin`. A record starting after a finished
    connection with a SYN now opens a session; one without (a trailing ACK) still joins."""
    retry = [
        rec(0, flags=SYN),
        rec(0.001, src=B, sport=443, dst=A, dport=40000, flags=RST | ACK),
        rec(1, 3, flags=SYN | ACK | FIN, packets=5),
        rec(1.001, 3, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN, packets=5),
        tick(40),
    ]
    sessions = by_key(run(retry, engine=engine)[0])
    assert [(s["close_reason"], s["flow_count"]) for s in sessions] == [("rejected", 2), ("fin", 2)]
    trailing = [
        rec(0, 1, flags=SYN | ACK | FIN),
        rec(0.1, 1, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN),
        rec(2, flags=ACK),
        tick(40),
    ]
    [s] = by_key(run(trailing, engine=engine)[0])
    assert (s["close_reason"], s["flow_count"]) == ("fin", 3)


def test_a_late_new_connection_after_a_finished_one_does_not_go_on_with_it(engine: str) -> None:
    """A late SYN after a finished connection went on with it (rule 3): it inherited the
    connection's FINs and a bare, unanswered SYN closed `fin`, hidden from the seed's
    no_reply query. It still follows the connection; a late record starting inside the
    connection, or without a SYN, still goes on with it."""
    done = [
        rec(0, 2, flags=SYN | ACK | FIN),
        rec(0.1, 2, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN),
        tick(100),
    ]
    for flags, start, reason in ((SYN, 5, "no_reply"), (ACK, 5, "fin"), (SYN | ACK, 1, "fin")):
        sessions = by_key(run([*done, rec(start, flags=flags), tick(300)], engine=engine)[0])
        first, late = sessions
        assert (late["late"], late["follows_session_id"]) == (True, first["session_id"])
        assert (late["close_reason"], late["client_ip"]) == (reason, A), flags
    # the same after a refused attempt, whose last record came before its half-open idle
    refused = [
        rec(0, flags=SYN),
        rec(0.001, src=B, sport=443, dst=A, dport=40000, flags=RST | ACK),
        tick(100),
    ]
    first, late = by_key(run([*refused, rec(3, flags=SYN), tick(300)], engine=engine)[0])
    assert (first["close_reason"], late["close_reason"]) == ("rejected", "no_reply")
    # a refusal seen in a biflow record's reverse flags alone closes half-open (5 s idle):
    # the kernel finds its last_seen (1) behind P_CONT (6) by that idle, not the
    # established one, so the server's late SYN-ACK at 0.5 goes on with it (answered, after
    # the conversation's RST: `rst`, as one session of the three) and one at 3 is a new
    # attempt, one-way
    half = [rec(0, 1, flags=SYN, rflags=RST), tick(40)]  # remembered until W passes 1 + 5 + 30
    for start, reason in ((0.5, "rst"), (3, "no_reply")):
        first, late = by_key(
            run(
                [
                    *half,
                    rec(start, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK),
                    tick(300),
                ],
                engine=engine,
            )[0]
        )
        assert (first["close_reason"], first["ab_packets"], first["ba_packets"]) == (
            "rejected",
            1,
            0,
        )
        assert (late["late"], late["close_reason"]) == (True, reason), start


def test_a_refusal_split_across_sessions_is_rejected_where_its_rst_lands(engine: str) -> None:
    """A review (live/sf_v9_late_halves.pcap, and a SYN flood at the open-session cap):
    the SYN in one session, the bare RST answering it in the late session that follows
    it, or in the next fragment of the evicted one, closed `rst`, "RST seen after an
    established exchange", where one session of both reads `rejected`. The conversation's
    flags decide, its earlier pieces' too; a RST after data stays `rst`."""
    refusal = rec(0.001, src=B, sport=443, dst=A, dport=40000, flags=RST | ACK)
    # (each closed, its half-open or established idle past, and still remembered)
    for opening, reason, closed in ((SYN, "rejected", 40), (SYN | ACK | 0x08, "rst", 100)):
        first, late = by_key(
            run([rec(0, flags=opening), tick(closed), refusal, tick(300)], engine=engine)[0]
        )
        assert (late["late"], late["follows_session_id"]) == (True, first["session_id"])
        assert (late["ab_packets"], late["ba_packets"], late["close_reason"]) == (0, 1, reason)
        # at the cap: another key's record evicts the SYN's session, the RST goes on with it
        sessions = run(
            [rec(0, flags=opening), rec(0.0005, sport=40001, flags=opening), refusal, tick(300)],
            SessionPolicy(max_open_ksessions=0.001),
            engine=engine,
        )[0]
        split = [s for s in by_key(sessions) if s["port_a"] == 40000 or s["port_b"] == 40000]
        assert [(s["split"], s["close_reason"]) for s in split] == [(0, "evicted"), (1, reason)]
    # one session of both, for the record
    [whole] = by_key(run([rec(0, flags=SYN), refusal, tick(300)], engine=engine)[0])
    assert whole["close_reason"] == "rejected"
    # the SYN-ACK in a late session the cap evicts, the RST in the next: answered, a reset
    # (a review: the evicted late session is not remembered, and what it saw was lost)
    answer = rec(0.001, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK)
    flood = rec(41, sport=40001, flags=SYN)
    sessions = run(
        [rec(0, flags=SYN), tick(40), answer, flood, refusal, tick(400)],
        SessionPolicy(max_open_ksessions=0.001),
        engine=engine,
    )[0]
    mine = [s for s in by_key(sessions) if 40000 in (s["port_a"], s["port_b"])]
    assert [(s["late"], s["close_reason"]) for s in mine] == [
        (False, "no_reply"),
        (True, "evicted"),
        (True, "rst"),
    ]


def test_a_late_record_after_a_reset_goes_on_with_a_reset_connection(engine: str) -> None:
    """A review (live/sf_v9_late_halves.pcap, port 5002): the client's half, reset, closed
    `rst`; the server's half, late and following it, inherited its FINs but not its RST
    and closed `idle`, where one session of both reads `rst`. The RST is carried as the
    FINs are; the late session still waits its idle timeout, for the late records of the
    conversation after it (closed at its last record, each came out a session of its own:
    a review)."""
    client = rec(0, 1, flags=SYN | ACK | 0x08 | RST)
    server = rec(0.001, 0.5, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | 0x08)
    more = rec(0.5, 0.9, src=B, sport=443, dst=A, dport=40000, flags=ACK | 0x08)
    first, late = by_key(run([client, tick(40), server, more, tick(400)], engine=engine)[0])
    assert first["close_reason"] == "rst"
    assert (late["late"], late["follows_session_id"]) == (True, first["session_id"])
    assert (late["flow_count"], late["close_reason"], late["closed_at"]) == (2, "rst", at(60.9))
    [whole] = by_key(run([client, server, tick(400)], engine=engine)[0])
    assert whole["close_reason"] == "rst"


def test_a_late_half_starting_before_the_closed_half_it_belongs_with_follows_it(
    engine: str,
) -> None:
    """A review (nfpcapd's export of a RAT's connections, each direction a record of its
    own, exported long after): the server's half came first and closed, then the client's,
    starting 1 ms before it (the SYN precedes the SYN-ACK), followed nothing and inherited
    nothing, two one-way sessions of one connection. A late record reaching the closed
    session, falling into it or following it, follows it (sessions.md); one ending before
    it opened does not."""
    server = rec(0.001, 1, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK, packets=33)
    for client_last, linked in ((0.9, True), (0.0005, False)):
        client = rec(0, client_last, flags=SYN | ACK | 0x08, packets=87)
        sessions = by_key(run([tick(200), server, client, tick(400)], engine=engine)[0])
        first, second = sorted(sessions, key=lambda s: s["ba_packets"])
        assert (first["late"], second["late"]) == (True, True)
        if linked:
            assert second["follows_session_id"] == first["session_id"]
            # its conversation's: oriented and sided as the half it follows, and no one-way
            # attempt for having seen one direction
            assert (second["ip_a"], second["client_ip"]) == (first["ip_a"], first["client_ip"])
            assert (second["ab_packets"], second["ba_packets"]) == (0, 87)
            assert second["close_reason"] == "idle"
        else:
            assert second["follows_session_id"] is None


def test_a_new_connection_after_a_finished_fragment_is_no_next_fragment(engine: str) -> None:
    """Found in review: a finished connection cut by hard_timeout or evicted (it waited
    the grace for the watermark) took a new SYN on its 5-tuple as its next fragment,
    inheriting its FINs: a bare SYN closed `fin`, in the old conversation, where without
    the cut it opens a session of its own (rule 2b')."""
    done = [
        rec(0, 25, flags=SYN | ACK | FIN),
        rec(0.1, 25, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN),
    ]
    cut = by_key(
        run(
            [*done, rec(30, flags=SYN), tick(300)],
            SessionPolicy(hard_timeout_us=20 * SECOND),
            engine=engine,
        )[0]
    )
    assert [(s["split"], s["close_reason"]) for s in cut] == [(0, "hard_timeout"), (0, "no_reply")]
    assert cut[1]["conversation_id"] == cut[1]["session_id"]
    crowded = [
        *done[:1],
        rec(0.1, 2, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK | FIN),
        rec(3, sport=1, flags=ACK),
    ]
    crowded[0] = rec(0, 2, flags=SYN | ACK | FIN)
    evicted = by_key(
        run(
            [*crowded, rec(5, flags=SYN), tick(300)],
            SessionPolicy(max_open_ksessions=0.001),
            engine=engine,
        )[0]
    )
    mine = [s for s in evicted if s["port_a"] == 40000]
    assert [(s["split"], s["close_reason"]) for s in mine] == [(0, "evicted"), (0, "no_reply")]
    # a trailing ACK still goes on with it
    ack = by_key(
        run(
            [*done, rec(26, flags=ACK), tick(300)],
            SessionPolicy(hard_timeout_us=20 * SECOND),
            engine=engine,
        )[0]
    )
    assert [(s["split"], s["close_reason"]) for s in ack] == [(0, "hard_timeout"), (1, "fin")]


def test_rst_having_seen_one_direction_is_no_reply_closed_at_once(engine: str) -> None:
    # found by an audit: these were `rst`, which the reason table keeps for a RST after an
    # exchange, and hid scans from the seed's no_reply query
    own_reset = [rec(0, flags=SYN), rec(0.5, flags=RST), tick(40)]  # the scanner resets
    backscatter = [rec(0, src=B, sport=443, dst=A, dport=40000, flags=RST), tick(40)]
    for records in (own_reset, backscatter):
        [s] = by_key(run(records, engine=engine)[0])
        assert (s["close_reason"], s["closed_at"], s["ab_packets"] * s["ba_packets"]) == (
            "no_reply",
            s["last_seen_at"],
            0,
        )


def test_unanswered_syn_is_half_open_then_no_reply_after_tcp_half_open(engine: str) -> None:
    sessions, _, _ = run([rec(0, flags=SYN), tick(40)], engine=engine)
    [s] = by_key(sessions)
    assert (s["state"], s["close_reason"], s["closed_at"]) == ("closed", "no_reply", at(5))
    sessions, _, _ = run([rec(0, flags=SYN), tick(4)], engine=engine)
    [s] = by_key(sessions)
    assert (s["state"], s["closed_at"], s["close_reason"]) == ("half_open", None, None)


def test_one_way_midstream_tcp_is_no_attempt_a_one_way_opening_is(engine: str) -> None:
    """Found by auditing: one direction of an established connection (asymmetric routing,
    an exporter that sees one side: ACK and data, no SYN) closed `no_reply`, and filled the
    seed's "Likely TCP scans" with established conversations. Without a SYN it is no
    half-open attempt (Zeek's OTH, not S0): idle. A direction that sent a SYN, no flags at
    all (an exporter that sends none), or probes without ACK stay no_reply."""

    def reason(flags: int, packets: int = 50) -> str:
        records = [rec(0, 20, flags=flags, packets=packets, octets=40_000), tick(200)]
        [s] = by_key(run(records, engine=engine)[0])
        assert (s["state"], s["ab_packets"], s["ba_packets"]) == ("closed", packets, 0)
        return s["close_reason"]

    assert reason(ACK | 0x08) == "idle"  # PSH|ACK: data of an established connection
    assert reason(ACK | FIN) == "idle"
    assert reason(ACK, packets=1) == "idle"  # a keepalive, an ACK probe: no opening either
    # the client's whole half in one record: its ACKs and data say the opening was answered,
    # on the path not seen (a 1.37 MB DCC transfer seen one way sat among the seed's
    # "Likely TCP scans": a review); without data, an answered probe or backscatter
    assert reason(SYN | ACK | 0x08 | FIN) == "idle"
    assert reason(SYN | ACK | 0x08) == "idle"
    assert reason(SYN | ACK, packets=1) == "no_reply"  # a SYN-ACK: backscatter
    assert reason(SYN | ACK | FIN, packets=3) == "no_reply"  # no data pushed
    assert reason(SYN | 0x08, packets=1) == "no_reply"  # data on a SYN, no answer (TFO)
    assert reason(SYN, packets=1) == "no_reply"
    assert reason(0) == "no_reply"
    assert reason(FIN | 0x08 | 0x20, packets=1) == "no_reply"  # an Xmas probe
    assert reason(RST | ACK, packets=1) == "no_reply"  # backscatter
    # a RST after data pushed under ACK: an established connection reset, seen one way
    assert reason(SYN | ACK | 0x08 | RST) == "rst"
    assert reason(ACK | 0x08 | RST) == "rst"
    assert reason(SYN | ACK | RST, packets=3) == "no_reply"  # a connect() scan's half


def test_udp_exchange_closes_idle_one_way_closes_no_reply(engine: str) -> None:
    records = [
        rec(0, 1, proto=17, dport=53, sport=5353 + 1000),
        rec(0.5, 1, proto=17, src=B, dst=A, sport=53, dport=6353),
        rec(0, proto=17, src=C, dst=D, sport=5000, dport=5001),
        tick(100),
    ]
    found = {
        (s["ip_a"], s["close_reason"], s["closed_at"])
        for s in by_key(run(records, engine=engine)[0], "UDP")
    }
    assert found == {(A, "idle", at(31)), (C, "no_reply", at(30))}


def test_record_after_the_idle_gap_starts_a_new_session(engine: str) -> None:
    records = [rec(0, proto=17), rec(31, proto=17), tick(200)]
    first, second = by_key(run(records, engine=engine)[0], "UDP")
    assert (first["opened_at"], first["closed_at"], first["close_reason"]) == (
        at(0),
        at(30),
        "no_reply",
    )
    assert (second["opened_at"], second["split"], second["conversation_id"]) == (
        at(31),
        0,
        second["session_id"],
    )


def test_hard_timeout_fragments_chain_and_inherit_orientation(engine: str) -> None:
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = []
    for t in range(0, 150, 10):
        # from fragment 1 on the server speaks first in each record pair: a fresh inference
        # would flip ip_a; contextual fragment parsing must not
        if t >= 60:
            records.append(rec(t, t + 1, proto=17, src=B, dst=A, sport=9999, dport=40000))
            records.append(rec(t + 0.5, t + 1, proto=17, sport=40000, dport=9999))
        else:
            records.append(rec(t, t + 1, proto=17, sport=40000, dport=9999))
            records.append(rec(t + 0.5, t + 1, proto=17, src=B, dst=A, sport=9999, dport=40000))
    sessions, _, _ = run(records, policy, engine=engine)
    fragments = by_key(sessions, "UDP")
    assert [f["split"] for f in fragments] == [0, 1, 2]
    assert [f["close_reason"] for f in fragments] == ["hard_timeout", "hard_timeout", None]
    assert {f["conversation_id"] for f in fragments} == {fragments[0]["session_id"]}
    assert {(f["ip_a"], f["client_ip"], f["server_port"]) for f in fragments} == {(A, A, 9999)}
    assert fragments[0]["closed_at"] == at(60)
    for f in fragments:
        assert (f["last_seen_at"] - f["opened_at"]).total_seconds() <= 60 + 1


def test_a_connection_whose_fins_fall_on_both_sides_of_a_cut_finishes(engine: str) -> None:
    """Found by a contract audit: the client's FIN in fragment 0 and the server's in
    fragment 1 left fragment 1 unfinished (flags are each fragment's own), so it waited
    the 60 s idle timeout and closed `idle`. The FINs a conversation saw carry over into
    its next fragment, as the directions it saw do; its flags stay its own."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = [
        rec(0, 50, flags=SYN | ACK | FIN),
        rec(0.1, 55, src=B, sport=443, dst=A, dport=40000, flags=SYN | ACK),
        rec(61, 70, src=B, sport=443, dst=A, dport=40000, flags=ACK | FIN),
        tick(200),
    ]
    fragments = by_key(run(records, policy, engine=engine)[0])
    assert [(f["split"], f["close_reason"]) for f in fragments] == [(0, "hard_timeout"), (1, "fin")]
    assert fragments[1]["closed_at"] == at(70) and fragments[1]["ab_flags"] == 0


def test_a_long_record_continues_a_fragment_on_a_busy_exporter(engine: str) -> None:
    """Found by auditing against sessions.md ("goes on in the next fragment when its next
    record starts within the idle timeout"): an exporter with a 250 s active timeout sends
    the record that continues a hard_timeout fragment at its end, when other traffic has
    moved the watermark past last_seen + idle + grace. The fragment was forgotten by then:
    the record opened a new conversation, oriented afresh (here reversed)."""
    records = []
    for k in range(6):
        t = 250 * k
        if k < 4:  # biflow records from the client; the first carries its SYN
            records.append(
                rec(
                    t,
                    t + 250,
                    flags=ACK | (SYN if k == 0 else 0),
                    sport=40000,
                    dport=5000,
                    rpackets=5,
                    roctets=500,
                )
            )
        else:  # the exporter now reports the biflow from the other side
            records.append(
                rec(t, t + 250, src=B, dst=A, sport=5000, dport=40000, rpackets=5, roctets=500)
            )
        if k == 4:
            records.insert(len(records) - 1, tick(t + 250))  # other traffic arrives first
        else:
            records.append(tick(t + 250))
    sessions, _, _ = run(records, engine=engine)
    fragments = by_key(sessions)
    assert [f["split"] for f in fragments] == [0, 1]
    assert fragments[0]["close_reason"] == "hard_timeout"
    assert {f["conversation_id"] for f in fragments} == {fragments[0]["session_id"]}
    # one orientation for the conversation: fragment 1 inherits it, though its record
    # comes from the other side
    assert len({(f["ip_a"], f["client_ip"], f["role_method"]) for f in fragments}) == 1
    assert fragments[1]["client_ip"] == A


def test_a_fragment_of_an_answered_conversation_is_no_one_way_attempt(engine: str) -> None:
    """Found by auditing: the direction whose record fell after the cut made a fragment of
    one direction only, closed `no_reply`: an established conversation listed among the
    seed's "Likely TCP scans" (closed, no_reply, TCP)."""
    policy = SessionPolicy(hard_timeout_us=100 * SECOND, grace_us=5 * SECOND)
    records = [
        rec(0, 50, flags=SYN | ACK),
        rec(0, 50, src=B, dst=A, sport=443, dport=40000, flags=SYN | ACK),
        rec(95, 110),
        rec(95, 110, src=B, dst=A, sport=443, dport=40000),
        tick(300),
    ]
    sessions, _, _ = run(records, policy, engine=engine)
    first, second = by_key(sessions)
    assert (first["split"], first["close_reason"]) == (0, "hard_timeout")
    assert (second["split"], second["ab_packets"], second["ba_packets"]) == (1, 0, 1)
    assert (second["state"], second["close_reason"]) == ("closed", "idle")
    # found by fuzzing recombine: A->B only before the cut, B->A only after it; fragment 1
    # inherited "not answered" and closed no_reply, though the conversation saw both ways
    records = [
        rec(0, 50, proto=17),
        rec(60, 110, proto=17),
        rec(61, 110, proto=17, src=B, dst=A, sport=443, dport=40000),
        tick(300),
    ]
    sessions, _, _ = run(records, policy, engine=engine)
    assert [
        (s["split"], s["ab_packets"], s["ba_packets"], s["close_reason"])
        for s in by_key(sessions, "UDP")
    ] == [(0, 2, 0, "hard_timeout"), (1, 0, 1, "idle")]
    # a conversation that never had an answer stays one-way in its fragments
    records = [rec(0, 50, flags=SYN | ACK), rec(100, 110, flags=SYN), tick(300)]
    sessions, _, _ = run(records, policy, engine=engine)
    assert [s["close_reason"] for s in by_key(sessions)] == ["hard_timeout", "no_reply"]


def test_one_sides_cumulative_syn_ack_alone_names_no_client(engine: str) -> None:
    """Found by auditing: an exporter seeing only the server's half of a connection
    (asymmetric routing; cumulative SYN|ACK|PSH|FIN from :443) made the server the client
    by `tcp_handshake` at 0.90, over the service port. A SYN without ACK still does."""
    server_half = rec(0, 5, src=B, dst=A, sport=443, dport=40000, flags=SYN | ACK | FIN)
    sessions, _, _ = run([server_half, tick(100)], engine=engine)
    (only,) = by_key(sessions)
    assert (only["client_ip"], only["server_port"], only["role_method"]) == (A, 443, "service_port")
    scan = rec(0, src=B, dst=A, sport=443, dport=40000, flags=SYN)
    sessions, _, _ = run([scan, tick(100)], engine=engine)
    (only,) = by_key(sessions)
    assert (only["client_ip"], only["role_method"], only["role_confidence"]) == (
        B,
        "tcp_handshake",
        0.9,
    )


def test_late_record_joins_its_open_session_and_is_counted(engine: str) -> None:
    records = [
        rec(0, 10, proto=17),
        rec(50, proto=17, src=C, dst=D),
        rec(5, 8, proto=17, src=B, dst=A, sport=443, dport=40000),
    ]
    sessions, _, _ = run(records, engine=engine)
    s = next(s for s in by_key(sessions, "UDP") if s["ip_a"] == A)
    assert (s["late_records"], s["flow_count"], s["late"]) == (1, 2, False)


def test_late_record_after_close_opens_late_session_following_it(engine: str) -> None:
    # closed at 31 once the watermark (70 - 30) passes it, remembered until 1 + 30 + 30
    records = [rec(0, 1, proto=17), tick(70), rec(5, proto=17)]
    sessions, _, _ = run(records, engine=engine)
    first, late = by_key(sessions, "UDP")
    assert (first["late"], late["late"]) == (False, True)
    assert late["follows_session_id"] == first["session_id"]
    assert late["session_id"] != first["session_id"]


def test_a_late_session_goes_on_with_the_conversation_it_follows(engine: str) -> None:
    """Found by auditing: a conversation cut by hard_timeout at 30 s, whose next records
    (35-60 s, the server's first) arrive behind the watermark, became late sessions oriented
    afresh: the server's half reversed (server 10.0.0.1:40000 by first_sender, beside the
    tcp_handshake session it names in follows_session_id) and closed no_reply, so it missed
    the Flow Matrix rule its conversation matched and listed among the "Likely TCP scans"."""
    policy = SessionPolicy(hard_timeout_us=30 * SECOND)
    records = [
        rec(0, 10, flags=SYN | ACK, dport=5555),
        rec(1, 10, src=B, dst=A, sport=5555, dport=40000, flags=SYN | ACK),
        rec(20, 30, dport=5555),
        tick(100),
        rec(35, 60, src=B, dst=A, sport=5555, dport=40000),
        rec(36, 60, dport=5555),
        tick(300),
    ]
    sessions, _, _ = run(records, policy, engine=engine)
    first, *late = by_key(sessions)
    assert (first["close_reason"], first["role_method"]) == ("hard_timeout", "tcp_handshake")
    assert [s["late"] for s in late] and all(s["late"] for s in late)
    for s in late:
        assert s["follows_session_id"] is not None
        assert (s["ip_a"], s["client_ip"], s["server_ip"], s["server_port"]) == (A, A, B, 5555)
        assert (s["role_method"], s["role_confidence"]) == ("tcp_handshake", 0.95)
        assert (s["state"], s["close_reason"]) == ("closed", "hard_timeout")  # not no_reply
    # past the idle timeout of the session it follows, a late record is a conversation of
    # its own (found by review: it inherited "answered" and closed idle, one-way)
    records = [
        rec(0, 1, proto=17),
        rec(0.5, 1, proto=17, src=B, dst=A, sport=443, dport=40000),
        tick(80),
        rec(45, proto=17),
        tick(300),
    ]
    sessions, _, _ = run(records, engine=engine)
    late = [s for s in by_key(sessions, "UDP") if s["late"]]
    assert [(s["follows_session_id"] is not None, s["close_reason"]) for s in late] == [
        (True, "no_reply")
    ]
    # a late session of a conversation never answered stays a one-way attempt
    records = [
        rec(0, 10, flags=SYN, dport=5555),
        tick(100),
        rec(12, 14, flags=SYN, dport=5555),
        tick(300),
    ]
    sessions, _, _ = run(records, engine=engine)
    assert [(s["late"], s["close_reason"]) for s in by_key(sessions)] == [
        (False, "no_reply"),
        (True, "no_reply"),
    ]


def test_late_request_and_reply_with_one_first_seen_get_two_ids(engine: str) -> None:
    # found by an audit: both records are late and their sessions close at once (31 < 170):
    # late sessions take their record's identity as dup. The reply follows the request,
    # remembered for the records that come next: it was forgotten at once, and the reply
    # followed nothing (a live softflowd export)
    records = [
        tick(200),
        rec(0, 1, proto=17, dport=53),
        rec(0, 1, proto=17, src=B, sport=53, dst=A, dport=40000),
        tick(300),
    ]
    sessions, flows, _ = run(records, engine=engine)
    request, reply = by_key(sessions, "UDP")
    assert (request["late"], reply["late"]) == (True, True)
    assert request["session_id"] != reply["session_id"]
    assert reply["follows_session_id"] == request["session_id"]
    ids = sessions.column("session_id").to_pylist()
    assert len(set(ids)) == len(ids) and set(flows.column("session_id").to_pylist()) <= set(ids)


def test_long_record_reaching_back_to_a_forgotten_session_gets_its_own_id(engine: str) -> None:
    # the first session closes at 30 and is forgotten at 100; the long record (not late)
    # starts exactly at its opened_at while it is still remembered, and stays open past 100
    records = [
        rec(0, 0, proto=17, dport=53),
        tick(100),
        rec(0, 200, proto=17, src=B, sport=53, dst=A, dport=40000),
        tick(400),
    ]
    sessions, _, _ = run(records, engine=engine)
    first, long = by_key(sessions, "UDP")
    assert (first["opened_at"], long["opened_at"], long["late"]) == (at(0), at(0), False)
    assert first["session_id"] != long["session_id"]


def test_the_same_late_record_fed_again_gets_its_own_id(engine: str) -> None:
    # found in the corpus: captures of one exporter address replayed in one run. The second
    # copy reaches back beyond the exporter's watermark (200 -> 270), so its dup is its
    # record's identity (deep); a late session is remembered for the records that come
    # next, whatever the watermark, so it follows the first
    records = [
        tick(200),
        rec(0, 1, proto=17, dport=53),
        tick(300),
        rec(0, 1, proto=17, dport=53),
        tick(400),
    ]
    sessions, _, _ = run(records, engine=engine)
    first, again = by_key(sessions, "UDP")
    assert (first["opened_at"], again["opened_at"], first["late"], again["late"]) == (
        at(0),
        at(0),
        True,
        True,
    )
    assert again["follows_session_id"] == first["session_id"] != again["session_id"]


def test_one_late_flow_from_two_domains_around_a_session_gets_two_ids(engine: str) -> None:
    # found by a fuzzer: the first copy is a stray of A; A's close then replaces it as the
    # key's remembered session, so the second copy (not deep) could not number its dup
    records = [
        rec(100, proto=17),
        rec(66, proto=17, domain=0),
        rec(130.5, proto=17),
        rec(66, proto=17, domain=1),
    ]
    sessions, _, _ = run(records, engine=engine)
    copies = [s for s in by_key(sessions, "UDP") if s["opened_at"] == at(66)]
    assert [(s["late"], s["split"]) for s in copies] == [(True, 0), (True, 0)]
    assert copies[0]["session_id"] != copies[1]["session_id"]


def test_a_late_session_between_fragments_does_not_break_the_conversation(engine: str) -> None:
    # found by a fuzzer: the late session closed at once and became the key's remembered
    # session, so the next record did not continue the hard_timeout fragment (split 0, and
    # the same id as fragment 0: same key, opened_at, split and late)
    policy = SessionPolicy(hard_timeout_us=10 * SECOND)
    records = [
        rec(0, 20, proto=17),
        tick(45),
        rec(-50, -49, proto=17),
        rec(5, 50, proto=17, src=B, sport=443, dst=A, dport=40000),
        tick(200),
    ]
    sessions, _, _ = run(records, policy, engine=engine)
    udp = by_key(sessions, "UDP")
    first = next(s for s in udp if s["split"] == 0 and not s["late"])
    late = next(s for s in udp if s["late"])
    assert first["close_reason"] == "hard_timeout"
    assert late["follows_session_id"] is None  # starts before the fragment it could follow
    [second] = [s for s in udp if s["split"] == 1]
    assert second["conversation_id"] == first["session_id"] != second["session_id"]


def test_late_record_before_the_open_session_is_a_stray_of_its_own(engine: str) -> None:
    records = [
        rec(100, proto=17),
        rec(200, proto=17, src=C, dst=D),
        rec(150, proto=17),
        rec(0, proto=17),
    ]
    sessions, flows, _ = run(records, engine=engine)
    stray = next(s for s in by_key(sessions, "UDP") if s["opened_at"] == at(0))
    assert (stray["late"], stray["flow_count"], stray["state"]) == (True, 1, "closed")
    assert flows.num_rows == 4


def test_a_session_the_new_watermark_closes_is_not_evicted(engine: str) -> None:
    # found by an audit: with the cap full and exporter time jumping, the old session was
    # closed `evicted` at 100 (counted as pressure) although its deadline (31) lay behind
    # the watermark the new record brings (70)
    policy = SessionPolicy(max_open_ksessions=0.001)
    records = [rec(0, 1, proto=17, sport=1001), rec(100, proto=17, sport=1002)]
    sessions, _, sessionizer = run(records, policy, engine=engine)
    first = next(s for s in by_key(sessions, "UDP") if s["port_a"] == 1001)
    assert (first["close_reason"], first["closed_at"]) == ("no_reply", at(31))
    assert sessionizer.pressure()["192.0.2.1"]["evictions"] == 0


def test_a_session_due_at_its_own_opening_evicts_nobody(engine: str) -> None:
    # a late record opens a session the watermark has already passed: it closes in the
    # sweep after its record, so at a full cap it used to push out a live conversation
    # (closed `evicted`, counted as pressure) for a session that was never open between
    # two records
    policy = SessionPolicy(max_open_ksessions=0.001)
    records = [
        rec(100, 200, proto=17, sport=1001),
        rec(10, proto=17, sport=1002),
        rec(201, proto=17, sport=1001),
    ]
    sessions, _, sessionizer = run(records, policy, engine=engine)
    udp = by_key(sessions, "UDP")
    late = next(s for s in udp if s["port_a"] == 1002)
    assert (late["late"], late["close_reason"], late["closed_at"]) == (True, "no_reply", at(40))
    live = [s for s in udp if s["port_a"] == 1001]
    assert [(s["flow_count"], s["state"]) for s in live] == [(2, "active")]
    assert sessionizer.pressure()["192.0.2.1"] == {
        "evictions": 0,
        "first_eviction_us": None,
        "last_eviction_us": None,
        "peak_open": 1,
    }


def test_a_long_record_due_at_its_own_opening_evicts_nobody(engine: str) -> None:
    # not late (it ends at the newest last_seen) but it starts more than hard_timeout
    # before the watermark: its fragment is due at once, as a late session is
    policy = SessionPolicy(max_open_ksessions=0.001)
    records = [rec(1990, 2000, proto=17, sport=1001), rec(10, 2000, proto=17, sport=1002)]
    sessions, _, sessionizer = run(records, policy, engine=engine)
    udp = by_key(sessions, "UDP")
    cut = next(s for s in udp if s["port_a"] == 1002)
    assert (cut["close_reason"], cut["closed_at"]) == ("hard_timeout", at(10 + 900))
    assert next(s for s in udp if s["port_a"] == 1001)["state"] == "active"
    assert sessionizer.pressure()["192.0.2.1"]["evictions"] == 0


def test_cap_evicts_oldest_last_seen_and_reports_pressure(engine: str) -> None:
    policy = SessionPolicy(max_open_ksessions=0.002)
    records = [
        rec(0, 3, proto=17, sport=1001),
        rec(1, 2, proto=17, sport=1002),
        rec(4, proto=17, sport=1003),
        rec(5, proto=17, sport=1002),
    ]
    sessions, _, sessionizer = run(records, policy, engine=engine)
    udp = by_key(sessions, "UDP")
    evicted = [s for s in udp if s["close_reason"] == "evicted"]
    # 1003 opening evicts 1002 (oldest last_seen); 1002 coming back evicts 1001
    assert [(s["port_a"], s["closed_at"]) for s in evicted] == [(1002, at(4)), (1001, at(5))]
    continued = next(s for s in udp if s["port_a"] == 1002 and s["split"] == 1)
    assert continued["conversation_id"] == evicted[0]["session_id"]
    pressure = sessionizer.pressure()["192.0.2.1"]
    assert pressure == {
        "evictions": 2,
        "first_eviction_us": 4 * SECOND,
        "last_eviction_us": 5 * SECOND,
        "peak_open": 2,
    }


def test_end_of_input_leaves_unfinished_sessions_open(engine: str) -> None:
    records = [
        rec(0, 2, flags=SYN | ACK),
        rec(0.1, 2, src=B, dst=A, sport=443, dport=40000, flags=SYN | ACK),
    ]
    [s] = by_key(run(records, engine=engine)[0])
    assert (s["state"], s["closed_at"], s["close_reason"]) == ("active", None, None)


def test_ip_a_is_the_earliest_sender_even_when_it_arrives_second(engine: str) -> None:
    records = [
        rec(1, 2, proto=17, src=B, dst=A, sport=5000, dport=6000),
        rec(0.5, 2, proto=17, sport=6000, dport=5000),
    ]
    [s] = by_key(run(records, engine=engine)[0], "UDP")
    assert (s["ip_a"], s["port_a"], s["opened_at"]) == (A, 6000, at(0.5))
    assert (s["role_method"], s["client_ip"]) == ("first_sender", A)


def test_same_time_both_ways_orients_from_the_smaller_endpoint(engine: str) -> None:
    records = [
        rec(1, proto=17, src=B, dst=A, sport=5000, dport=6000),
        rec(1, proto=17, sport=6000, dport=5000),
    ]
    [s] = by_key(run(records, engine=engine)[0], "UDP")
    assert s["ip_a"] == A


def test_biflow_reverse_counters_go_the_other_way(engine: str) -> None:
    records = [
        rec(0, 1, proto=17, dport=53, sport=50000, packets=2, octets=120, rpackets=3, roctets=900),
        tick(100),
    ]
    [s] = by_key(run(records, engine=engine)[0], "UDP")
    assert (s["ab_packets"], s["ab_bytes"], s["ba_packets"], s["ba_bytes"]) == (2, 120, 3, 900)
    assert s["close_reason"] == "idle"


def test_damaged_counters_past_2_64_stop_at_the_ceiling(engine: str) -> None:
    """Found by an audit: two records near 2**63 summed to 2**64 + 218 bytes, which the
    session showed as 218 (sessions_consolidated and recombine, summing its counters, showed
    218 too, beside their own sums stopped at 2**64 - 1). A reverse half of 2**63 bytes and
    no packets read as empty: the sign bit made it negative."""
    ceiling = 2**64 - 1
    records = [
        rec(
            0,
            1,
            proto=17,
            dport=53,
            sport=50000,
            packets=2**63 + 4,
            octets=2**63 + 100,
            roctets=2**63,
        ),
        rec(
            2,
            3,
            proto=17,
            dport=53,
            sport=50000,
            packets=2**63 + 4,
            octets=2**63 + 118,
            roctets=2**63 - 1,
        ),
        rec(4, 5, proto=17, dport=53, sport=50000, packets=0, octets=0),
        rec(10, 11, proto=17, dport=53, sport=50001, octets=0, roctets=2**63),
        tick(100),
    ]
    sessions = by_key(run(records, engine=engine)[0], "UDP")
    whole, reverse_only = sorted(sessions, key=lambda s: s["port_a"])
    assert (whole["ab_packets"], whole["ab_bytes"]) == (ceiling, ceiling)
    assert (whole["ba_packets"], whole["ba_bytes"]) == (0, ceiling)
    assert whole["flow_count"] == 3
    # the one-record session's reverse half was sent: the server answered
    assert reverse_only["ba_bytes"] == 2**63 and reverse_only["close_reason"] == "idle"


def test_a_biflow_records_reverse_flags_are_the_other_directions(engine: str) -> None:
    """One RFC 5103 record of a whole connection: SYN/FIN both ways, the answer's in the
    reverse flags; it finished, and the SYN's sender is the client."""
    records = [
        rec(
            0,
            1,
            src=B,
            dst=A,
            sport=443,
            dport=40000,
            flags=SYN | ACK | FIN,
            packets=4,
            rpackets=5,
            roctets=900,
            rflags=SYN | FIN,
        ),
        tick(100),
    ]
    [s] = by_key(run(records, engine=engine)[0], "TCP")
    assert (s["state"], s["close_reason"]) == ("closed", "fin")
    assert (s["client_ip"], s["role_method"]) == (A, "tcp_handshake")


def test_a_biflow_record_whose_forward_half_is_silent_was_sent_by_its_destination(
    engine: str,
) -> None:
    """softflowd -b puts the lower address first: a multicast group "sent" an IGMP report
    with 0 packets to its member, which sent 3 back, and an unreachable's forward half
    (type 0, no packets) read as an echo reply (audit against the raw packets)."""
    records = [
        rec(
            0,
            1,
            proto=2,
            src="224.0.0.1",
            dst=B,
            sport=0,
            dport=0,
            packets=0,
            octets=0,
            rpackets=3,
            roctets=96,
        ),
        rec(
            0,
            1,
            proto=1,
            src="10.0.0.9",
            dst="10.0.0.12",
            sport=0,
            dport=0,
            packets=0,
            octets=0,
            rpackets=6,
            roctets=600,
        ),
        tick(100),
    ]
    sessions = run(records, engine=engine)[0]
    [igmp] = by_key(sessions, "IGMP")
    assert (igmp["ip_a"], igmp["ab_packets"], igmp["ba_packets"]) == (B, 3, 0)
    assert igmp["client_ip"] == B
    [icmp] = by_key(sessions, "ICMP")
    assert (icmp["ip_a"], icmp["role_method"], icmp["icmp_type"]) == (
        "10.0.0.12",
        "first_sender",
        None,
    )


def test_icmp_echo_pairs_into_one_session_with_type_and_server(engine: str) -> None:
    records = [
        rec(0, proto=1, sport=0, dport=8 << 8),
        rec(0.01, proto=1, src=B, dst=A, sport=0, dport=0),
    ]
    [s] = by_key(run(records, engine=engine)[0], "ICMP")
    assert (s["icmp_type"], s["icmp_code"], s["port_a"], s["port_b"]) == (8, 0, 0, 0)
    assert (s["server_ip"], s["role_method"], s["protocol_number"]) == (B, "icmp_echo", 1)


@pytest.mark.parametrize(
    ("proto", "icmp_type"), [(1, 3), (1, 11), (1, 5), (1, 40), (58, 1), (58, 3), (58, 127)]
)
def test_an_icmp_error_s_sender_is_the_server(engine: str, proto: int, icmp_type: int) -> None:
    """A port unreachable (or a traceroute's time exceeded) answers the other endpoint's
    traffic: its receiver is the client, though the error is the session's first record."""
    records = [rec(0, proto=proto, src=B, dst=A, sport=0, dport=icmp_type << 8 | 3)]
    [s] = run(records, engine=engine)[0].to_pylist()
    assert (s["ip_a"], s["client_ip"], s["server_ip"]) == (B, A, B)
    assert (s["role_method"], s["role_confidence"], s["icmp_type"]) == (
        "icmp_error",
        0.8,
        icmp_type,
    )


def test_echo_decides_before_errors_and_errors_both_ways_decide_nothing(engine: str) -> None:
    """B pings A, A answers with an unreachable: the echo request names the client. Errors
    from both sides (routers' time exceeded crossing) leave the ICMP rung to the next."""
    pinged = [
        rec(0, proto=1, src=B, dst=A, sport=0, dport=8 << 8),
        rec(0.1, proto=1, src=A, dst=B, sport=0, dport=3 << 8 | 1),
    ]
    [s] = run(pinged, engine=engine)[0].to_pylist()
    assert (s["client_ip"], s["role_method"]) == (B, "icmp_echo")
    crossed = [
        rec(0, proto=1, src=B, dst=A, sport=0, dport=11 << 8),
        rec(0.1, proto=1, src=A, dst=B, sport=0, dport=3 << 8 | 3),
    ]
    [s] = run(crossed, engine=engine)[0].to_pylist()
    assert (s["client_ip"], s["role_method"]) == (B, "first_sender")
    # a type that is neither echo nor error (a timestamp request, an ICMPv6 neighbor
    # solicitation) is no evidence either
    for proto, icmp_type in ((1, 13), (58, 135)):
        [s] = run(
            [rec(0, proto=proto, src=B, dst=A, sport=0, dport=icmp_type << 8)], engine=engine
        )[0].to_pylist()
        assert s["role_method"] == "first_sender"
    # RFC 8335's extended echo (PROBE) is echo
    probed = [
        rec(0, proto=58, src=B, dst=A, sport=0, dport=160 << 8),
        rec(0.1, proto=58, src=A, dst=B, sport=0, dport=161 << 8),
    ]
    [s] = run(probed, engine=engine)[0].to_pylist()
    assert (s["client_ip"], s["role_method"], s["role_confidence"]) == (B, "icmp_echo", 0.9)


def test_protocol_column_is_the_iana_keyword(engine: str) -> None:
    records = [rec(0, proto=47), rec(0, proto=58, dport=128 << 8), rec(0, proto=253)]
    sessions, _, _ = run(records, engine=engine)
    assert sorted(sessions.column("protocol").to_pylist()) == ["253", "GRE", "IPv6-ICMP"]
    icmp6 = next(s for s in sessions.to_pylist() if s["protocol"] == "IPv6-ICMP")
    assert icmp6["icmp_type"] == 128
    assert next(s for s in sessions.to_pylist() if s["protocol"] == "GRE")["icmp_type"] is None


def test_cartography_declared_service_names_the_server(engine: str) -> None:
    def services(addresses: np.ndarray, protocols: np.ndarray, ports: np.ndarray) -> np.ndarray:
        return (addresses[:, 15] == 1) & (ports == 40001)

    records = [rec(0, proto=17, src=B, dst=A, sport=50000, dport=40001)]
    [s] = by_key(run(records, engine=engine, services=services)[0], "UDP")
    assert (s["server_ip"], s["server_port"], s["role_method"]) == (A, 40001, "cartography")


def test_many_peers_on_one_endpoint_is_traffic_shape(engine: str) -> None:
    records = [
        rec(i, proto=17, src=f"10.0.1.{i}", dst=A, sport=50000 + i, dport=40001)
        for i in range(1, 5)
    ]
    sessions, _, _ = run(records, engine=engine)
    assert {(s["server_ip"], s["role_method"]) for s in sessions.to_pylist()[2:]} == {
        (A, "traffic_shape")
    }


def test_a_busy_endpoint_seen_only_sending_is_the_server_by_traffic_shape(engine: str) -> None:
    """traffic_shape counts an endpoint's open sessions whoever sent in them, not only those
    in which peers sent to it (sessions.md's "an endpoint that many peers talk to", as an
    audit read it): an exporter on one side of an asymmetric route sees a server only
    answering. Counting only the sessions a peer sent in turned 141 sessions of pmacct's
    test capture around (138.187.58.13:10000 sending ACK, PSH and FIN to many clients'
    ephemeral ports, the clients' side unseen), at the price of a one-port fan-out that
    no peer answers (a UDP scan, a traceroute from one port) reading its sender as the
    server, at 0.60 (the README says so)."""
    answers = [
        rec(i, proto=17, src=A, sport=45000, dst=f"10.0.1.{i}", dport=50000 + i)
        for i in range(1, 5)
    ]
    sessions = run(answers, engine=engine)[0].to_pylist()
    assert {(s["server_ip"], s["server_port"], s["role_method"]) for s in sessions[2:]} == {
        (A, 45000, "traffic_shape")
    }


def test_service_port_against_ephemeral(engine: str) -> None:
    [s] = run([rec(0, proto=17, src=B, dst=A, sport=5432, dport=50123)], engine=engine)[
        0
    ].to_pylist()
    assert (s["server_ip"], s["server_port"], s["role_method"], s["role_confidence"]) == (
        B,
        5432,
        "service_port",
        0.7,
    )


def test_sampling_rate_is_the_max_and_scaled_is_kept(engine: str) -> None:
    records = [rec(0, proto=17, sampling=10), rec(1, proto=17, sampling=100, scaled=True)]
    [s] = run(records, engine=engine)[0].to_pylist()
    assert (s["sampling_rate"], s["counters_scaled"]) == (100, True)


def test_exporters_never_share_a_session(engine: str) -> None:
    records = [
        rec(0, proto=17, exporter="192.0.2.1"),
        rec(0, proto=17, exporter="192.0.2.9", domain=7),
    ]
    sessions, flows, _ = run(records, engine=engine)
    assert sorted(
        zip(
            sessions.column("exporter").to_pylist(),
            sessions.column("exporter_domain").to_pylist(),
            strict=True,
        )
    ) == [("192.0.2.1", 0), ("192.0.2.9", 7)]
    assert len(set(flows.column("session_id").to_pylist())) == 2


def test_session_ids_are_16_hex_and_stable(engine: str) -> None:
    records = [rec(0, proto=17), rec(40, proto=17)]
    first = run(records, engine=engine)[0].column("session_id").to_pylist()
    again = run(records, engine=engine)[0].column("session_id").to_pylist()
    assert first == again and len(set(first)) == 2
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in first)


def test_flows_carry_session_id_and_direction(engine: str) -> None:
    records = [
        rec(0, 1, flags=SYN | ACK),
        rec(0.1, 1, src=B, dst=A, sport=443, dport=40000, flags=SYN | ACK),
    ]
    sessions, flows, _ = run(records, engine=engine)
    assert flows.column("direction").to_pylist() == ["ab", "ba"]
    assert set(flows.column("session_id").to_pylist()) == {sessions["session_id"][0].as_py()}
    assert flows.column("source_frame").to_pylist() == [0, 1]


def test_event_replay_sorts_by_first_seen(engine: str) -> None:
    records = [rec(50, proto=17), rec(0, proto=17)]
    arrival = run(records, engine=engine)[0]
    event = run(records, SessionPolicy(replay="event"), engine=engine)[0]
    assert sorted(arrival.column("late").to_pylist()) == [False, True]
    assert event.column("late").to_pylist() == [False, False]
    assert event.column("close_reason").to_pylist() == ["no_reply", None]


def test_event_replay_keeps_short_flows_after_a_long_one_together(engine: str) -> None:
    """Found by auditing: with the watermark on last_seen, event replay (records sorted by
    first_seen) made every short flow after a long one late: a DNS query and its reply
    became two unlinked one-way late sessions, and on nfpcapd's ircdcc file a connection
    fell apart. Under event replay the watermark follows first_seen."""
    records = [
        rec(0, 600, flags=SYN | ACK | FIN, rpackets=9, roctets=900),
        rec(10, src=A, sport=5353, dst=D, dport=53, proto=17),
        rec(10.01, src=D, sport=53, dst=A, dport=5353, proto=17),
    ]
    sessions, _, _ = run(records, SessionPolicy(replay="event"), engine=engine)
    dns = by_key(sessions, "UDP")
    assert len(dns) == 1 and not dns[0]["late"]
    assert (dns[0]["ab_packets"], dns[0]["ba_packets"]) == (1, 1)
    assert (dns[0]["close_reason"], dns[0]["closed_at"]) == ("idle", at(40.01))
    assert not any(sessions.column("late").to_pylist())
    # the end of input sweeps at the newest last_seen (600), as in arrival replay: the FIN
    # flow that ends there is still going
    (tcp,) = by_key(sessions)
    assert (tcp["state"], tcp["close_reason"]) == ("active", None)


def test_event_replay_evicts_at_the_newest_last_seen(engine: str) -> None:
    """Found in review: with the clock on first_seen, an evicted session holding a long
    record closed at the next record's first_seen, before its own last_seen."""
    policy = SessionPolicy(replay="event", max_open_ksessions=0.001)
    records = [rec(0, 100, proto=17), rec(1, 2, src=C, dst=D, proto=17)]
    sessions, _, sessionizer = run(records, policy, engine=engine)
    evicted = [s for s in sessions.to_pylist() if s["close_reason"] == "evicted"]
    assert [(s["last_seen_at"], s["closed_at"]) for s in evicted] == [(at(100), at(100))]
    assert sessionizer.pressure()["192.0.2.1"]["last_eviction_us"] == 100 * SECOND


def test_times_at_the_edge_of_the_range_close_after_they_open(engine: str) -> None:
    """Found by fuzzing: a time near the int64 limit wrapped the idle deadline around, and a
    session closed before it opened. Readers leave times beyond times.TIME_LIMIT_US out;
    the sessionizer works up to it and refuses what lies beyond."""
    from obserae_forensics.times import TIME_LIMIT_US

    limit = TIME_LIMIT_US / SECOND  # seconds
    for edge in (limit - 1000, 1000 - limit):
        sessions, _, _ = run([rec(edge), rec(edge + 70), rec(edge + 900)], engine=engine)
        opened = sessions.column("opened_at").cast(pa.int64()).to_pylist()
        closed = sessions.column("closed_at").cast(pa.int64()).to_pylist()
        assert len(opened) == 3
        assert all(c is None or c > o for o, c in zip(opened, closed, strict=True))
    for beyond in (limit + 1, -limit - 1):
        with pytest.raises(ValueError, match="TIME_LIMIT_US"):
            run([rec(limit - 1000), rec(beyond)], engine=engine)


def test_a_record_that_ends_before_it_starts_is_refused(engine: str) -> None:
    """An audit: fed past the readers (which swap such times, repaired.inverted_times), a
    record ending before it started opened a session whose last_seen_at lay before its
    opened_at. feed() refuses it, naming the row, as it does times out of range."""
    with pytest.raises(ValueError, match=r"first_seen <= last_seen: 1 record\(s\).* row 1\)"):
        run([rec(0, 2), rec(10, 5, proto=17), rec(20)], engine=engine)
    sessions, _, _ = run([rec(0, 2), rec(5, 5, proto=17), rec(20)], engine=engine)
    assert sessions.num_rows == 2  # an instant (first_seen == last_seen) is a record
