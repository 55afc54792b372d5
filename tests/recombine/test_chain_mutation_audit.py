"""Behaviour of recombine's chaining (recombine/chain.py) that no test pinned, found by a
mutation audit (the audit-chain branch's: 70 small changes to chain.py, H01-H70, 34 of
which the recombine tests did not notice: 25 real gaps, killed here, and 9 equivalent).
The earlier audit's chain.py tests (M52, M54, M56, tests/recombine/test_mutation_audit.py)
are not repeated. The equivalent ones: H19 (rule 2 without `conversation >= 0`:
conversation_id is not nullable, so no session has the code -1), H21 (rule 2's children
among late sessions too: a late session opens fragment 0 of its own conversation, and rule
1 decides a late session's parent after rule 2 anyway), H24, H25 (finished_close without
the `rst` or `rejected` close reason: a session closed so saw a RST itself, which
_finished_so_far counts already), H31 (orientation conflict judged by the client alone:
in one key the client is one endpoint of the pair and the server the other, so the server
differs when the client does), H43 (resettling the `no_reply` last fragment of an
unanswered conversation: the settled reason of one direction is `no_reply` again, but for
a midstream one, which the sessionizer closes `idle`, never `no_reply`), H44 (resettling
`no_reply` for a finished conversation: FIN both ways is both directions, which the first
clause has; a one-way RST settles to `no_reply`), H61 (_codes giving a null text 0, not
-1: the address columns are not nullable), H64 (flipped by the `b` endpoint: in one key
`a` differs from the root's exactly when `b` does). H17 and H63 (_conversation_starts with
`maximum.at` over int64 max: every conversation starts at the same instant) are killed by
a case added to test_chain.py. Each test fails with its change applied and names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from obserae_forensics.recombine import recombine_tables

from .conftest import SETTINGS, at, session, write_run
from .test_chain import SYN_ACK_PSH, chain_rows, conversations, one_run


def test_icmpv6_fragments_are_judged_by_the_icmp_idle_timeout(tmp_path: Path) -> None:
    """Kills H06 (idle category: ICMPv6 as `other`, 60 s): sessions.md, "ICMP/ICMPv6 `icmp`
    (10 s)"; an evicted ICMPv6 session and one 20 s after it are two conversations."""
    v6: dict[str, Any] = {"protocol": 58, "a": ("2001:db8::1", 0), "b": ("2001:db8::2", 0)}
    rows = [
        session("P", 0, 100, close="evicted", **v6),
        session("Q", 120, 130, **v6),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert set(by_id) == {"P", "Q"}


def test_a_fragment_opening_exactly_at_the_idle_deadline_continues_the_cut(
    tmp_path: Path,
) -> None:
    """Kills H08 (rule 3's `first_seen <= last_seen + idle` as `<`): sessions.md's join rule
    includes the deadline itself; a next fragment opening exactly 60 s after the cut one's
    last record (no split numbering) continues it."""
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("B", 959, 1000, close="idle"),
    ]
    assert conversations(one_run(tmp_path, rows))["A"]["session_ids"] == ["A", "B"]


def test_a_connection_that_finished_before_the_runs_end_is_not_continued_after_it(
    tmp_path: Path,
) -> None:
    """Kills H13 (_closed_by_the_end judging a finished connection by its idle deadline,
    not its last record): sessions.md, a finished TCP session "closes as soon as the
    watermark passes its `last_seen`"; FIN both ways at 20, run 1's last watermark at 30
    (60 - 30 s of grace) closed it inside the run, so a trailing ACK of run 2 at 45 is no
    continuation across the cut."""
    other: dict[str, Any] = {"protocol": 17, "a": ("10.0.0.99", 7), "b": ("10.0.0.98", 8)}
    r1 = write_run(
        tmp_path / "r1",
        [
            session("F", 0, 20, close="fin", flags=(0x1B, 0x1B)),
            session("X", 0, 60, state="active", **other),
        ],
        window=(0, 60),
    )
    r2 = write_run(
        tmp_path / "r2",
        [session("G", 45, 45, close="no_reply", ab=(100, 1), ba=(0, 0), flags=(0x10, 0))],
        window=(40, 100),
    )
    by_id = conversations(recombine_tables([r1, r2]))
    assert by_id["F"]["session_ids"] == ["F"] and by_id["G"]["session_ids"] == ["G"]


# H17 (rule 3's order without the conversation's earliest opening: by conversation_id
# text) and H63 (_conversation_starts taking the maximum over int64 max: every start the
# same) are killed by test_chain.py's test_hard_timeout_links_without_the_sessionizer_split,
# with the first conversation's id sorting after the next one's.


def test_a_conversations_fragments_are_taken_in_split_order_not_id_order(
    tmp_path: Path,
) -> None:
    """Kills H18 (rule 3's order without `split`: a conversation's fragments by session id):
    README rule (3), "fragments in `split` order"; fragment 1's id sorting before fragment
    0's put it first, and rule 3 linked fragment 0 after it (cut, and opening before its
    last record), a loop with rule 2's link that refused the run."""
    rows = [
        session("Z", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("Y", 900, 1799, close="hard_timeout", split=1, conversation="Z"),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id["Z"]["session_ids"] == ["Z", "Y"]
    assert by_id["Z"]["split_reasons"] == ["hard_timeout"]


def test_a_split_link_to_a_fragment_that_was_not_cut_says_split(tmp_path: Path) -> None:
    """Kills H20 (rule 2's reason, when the fragment before was neither `hard_timeout` nor
    `evicted`: `run_boundary` instead of `split`): LINK_REASONS, the sessionizer's own
    link kept as it made it is `split`; nothing about it crosses a run."""
    rows = [
        session("A", 0, 100, close="idle", flags=(SYN_ACK_PSH, 0x12)),
        session("B", 120, 200, split=1, conversation="A"),
    ]
    result = one_run(tmp_path, rows)
    assert conversations(result)["A"]["split_reasons"] == ["split"]
    assert [f["link_reason"] for f in result.fragments.to_pylist()] == [None, "split"]


def test_only_late_sessions_naming_an_absent_session_are_unfollowed(tmp_path: Path) -> None:
    """Kills H22 (Chains.unfollowed without `named &`: every session following nothing,
    nulls for the on-time ones): Chains.unfollowed holds "follows_session_id of late
    sessions naming no session of these", which a bucketed recombine looks up in the other
    buckets."""
    rows = [
        session("A", 0, 100, flags=(SYN_ACK_PSH, 0x12)),
        session("M", 70, 80, late=True, follows="ghost"),
        session("O", 500, 510, a=("10.1.1.1", 1), b=("10.1.1.2", 2)),
    ]
    chains = chain_rows(rows, tmp_path / "run")
    assert chains.unfollowed.to_pylist() == ["ghost"]
    assert chains.anomalies["late_follows_missing"] == 1


def test_a_late_session_exactly_at_the_idle_deadline_joins_the_one_it_follows(
    tmp_path: Path,
) -> None:
    """Kills H23 (rule 1's `first_seen <= last_seen + idle` as `<`): sessions.md, a late
    record opens a session following the one "it falls into or just follows"; one opening
    exactly the UDP idle timeout (30 s) after that one's last record is inside it."""
    rows = [
        session("UDP", 0, 5, close="no_reply", protocol=17, ba=(0, 0)),
        session("EDGE", 35, 36, close="no_reply", protocol=17, ba=(0, 0), late=True, follows="UDP"),
    ]
    assert conversations(one_run(tmp_path, rows))["UDP"]["session_ids"] == ["UDP", "EDGE"]


def test_a_late_session_naming_nothing_follows_one_opened_at_the_same_instant(
    tmp_path: Path,
) -> None:
    """Kills H27 (_session_it_falls_into putting the late session before an on-time one of
    the same instant): the module's rule 1, a late session that names nothing follows "the
    non-late session of its key ... that opened last at or before it"; at the same instant
    counts."""
    rows = [
        session("B", 200, 300, flags=(SYN_ACK_PSH, 0x12)),
        session("L", 200, 210, late=True, ab=(10, 1), ba=(0, 0)),
    ]
    result = one_run(tmp_path, rows)
    assert conversations(result)["B"]["session_ids"] == ["B", "L"]
    assert result.report["refused_links"]["late_follows_missing"] == 0


def test_the_gap_before_a_fragment_is_from_the_latest_record_before_it(tmp_path: Path) -> None:
    """Kills H34 (gap from the fragment just before, not the latest last_seen of all those
    before): chain.py, "gap before each fragment: from the latest last_seen of the fragments
    before it"; a late piece inside fragment 0 leaves fragment 1's gap at 1 s, not 880 s."""
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("L", 10, 20, late=True, follows="A", ab=(10, 1), ba=(0, 0)),
        session("B", 900, 1000, split=1, conversation="A"),
    ]
    a = conversations(one_run(tmp_path, rows))["A"]
    assert a["session_ids"] == ["A", "L", "B"]
    assert a["gaps_s"] == pytest.approx([0.0, 1.0])


def test_a_late_piece_ending_last_does_not_decide_the_state(tmp_path: Path) -> None:
    """Kills H35 (the final fragment chosen among late ones too): README, "the
    conversation's final state is its non-late fragment with the latest record"; a late
    piece that ended after the session it follows, evicted, does not make the conversation
    cut: it closed `idle`, complete."""
    rows = [
        session("A", 0, 100, flags=(SYN_ACK_PSH, 0x12)),
        session("L", 90, 150, close="evicted", late=True, follows="A", flags=(0x10, 0), ba=(0, 0)),
    ]
    a = conversations(one_run(tmp_path, rows))["A"]
    assert a["session_ids"] == ["A", "L"]
    assert (a["close_reason"], a["tail_cut"], a["last_seen"]) == ("idle", False, at(150))


def test_a_cut_due_a_microsecond_after_the_last_record_may_go_on(tmp_path: Path) -> None:
    """Kills H36 (the window's end a microsecond later): sessions.md, at the end of input the
    watermark becomes the exporter's largest last_seen and closes what is due by then; a
    cut whose idle deadline (100 + 60 s) is a microsecond past the last record was not
    closed: it is tail-cut, its `hard_timeout` stands."""
    rows = [
        session("A", 0, 100, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("X", 150, 159.999999, a=("10.9.9.9", 1), flags=(SYN_ACK_PSH, 0x12)),
    ]
    a = conversations(one_run(tmp_path, rows))["A"]
    assert (a["tail_cut"], a["state_inferred"], a["close_reason"]) == (True, False, "hard_timeout")


def test_head_cut_reaches_exactly_one_idle_timeout_into_the_window(tmp_path: Path) -> None:
    """Kills H37 (head_cut's `opened - window start <= idle` as `<`): README, fragment 0 is
    outside the window when it "starts within the idle timeout of the exporter's first
    record with no SYN seen"; exactly 60 s after it, a record could still have joined a
    session opened before the window (the join rule's `<=`)."""
    rows = [
        session("X", 0, 10, a=("10.9.9.9", 1), flags=(SYN_ACK_PSH, 0x12)),
        session("MID", 60, 100, flags=(0x18, 0x10)),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert (by_id["MID"]["head_cut"], by_id["MID"]["complete"]) == (True, False)


def test_a_syn_seen_only_from_the_server_is_an_opening_seen(tmp_path: Path) -> None:
    """Kills H39 (head_cut looking for the SYN in `ab_flags` only): README, head_cut needs
    "no SYN seen"; a first fragment whose only SYN is the answer's (SYN-ACK, `ba`) saw the
    connection open."""
    rows = [
        session("X", 0, 10, a=("10.9.9.9", 1), flags=(SYN_ACK_PSH, 0x12)),
        session("S", 5, 100, flags=(0x18, 0x12)),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert (by_id["S"]["head_cut"], by_id["S"]["complete"]) == (False, True)


def test_a_cut_due_at_the_last_record_ended_there(tmp_path: Path) -> None:
    """Kills H40 (tail_cut's `deadline > window end` as `>=`): chain.py, "the sessionizer's
    end of input passes the last record: one due at it has ended"; a cut whose idle deadline
    is the exporter's last record is settled, not tail-cut."""
    rows = [
        session("A", 0, 100, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("X", 150, 160, a=("10.9.9.9", 1), flags=(SYN_ACK_PSH, 0x12)),
    ]
    a = conversations(one_run(tmp_path, rows))["A"]
    assert (a["tail_cut"], a["state_inferred"], a["close_reason"]) == (False, True, "idle")


def test_an_unanswered_opening_still_open_at_the_end_stays_half_open(tmp_path: Path) -> None:
    """Kills H42 (`answered` as packets in either direction): README, only "a last fragment
    that saw one direction of a conversation that saw both" stops being half_open; a SYN
    with no answer, open at the end of the window, is half_open."""
    rows = [session("H", 0, 1, state="half_open", flags=(0x02, 0), ab=(60, 1), ba=(0, 0))]
    h = conversations(one_run(tmp_path, rows))["H"]
    assert (h["state"], h["close_reason"], h["tail_cut"]) == ("half_open", None, True)


def test_an_answered_conversation_is_no_attempt_for_a_last_fragment_with_a_bare_syn(
    tmp_path: Path,
) -> None:
    """Kills H45 (the settled reason judging the last fragment half-open although the
    conversation was answered): README, "a last fragment that saw one direction of a
    conversation that saw both is no one-way attempt (not `no_reply`, not `half_open`)";
    a cut conversation whose last fragment saw only a SYN from the client, nothing
    following it, ended `idle`."""
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session(
            "B", 900, 950, close="no_reply", split=1, conversation="A", flags=(0x02, 0), ba=(0, 0)
        ),
    ]
    a = conversations(one_run(tmp_path, rows))["A"]
    assert a["session_ids"] == ["A", "B"]
    assert (a["state"], a["close_reason"]) == ("closed", "idle")


def test_a_syn_at_the_finished_connections_last_instant_is_no_new_connection(
    tmp_path: Path,
) -> None:
    """Kills H51 (_reconnects' `opened > last` as `>=`): the sessionizer's _reopens (rule
    2b') takes a record for a new connection after a finished one only when it starts after
    that one's last record; a late piece with a SYN at that very instant is part of it."""
    rows = [
        session("F", 0, 100, close="fin", flags=(0x1B, 0x1B)),
        session("L", 100, 100, late=True, follows="F", flags=(0x02, 0), ab=(60, 1), ba=(0, 0)),
    ]
    assert conversations(one_run(tmp_path, rows))["F"]["session_ids"] == ["F", "L"]


def test_fins_on_both_sides_of_a_cut_count_by_endpoint_not_by_column(tmp_path: Path) -> None:
    """Kills H52 (_finished_so_far taking the lower endpoint's FIN from `ab_flags` whatever
    the fragment's orientation): README rule (3), a finished connection is "FIN both ways in
    it and the fragments of its conversation before it"; the server's FIN in fragment 0
    and the client's in fragment 1, seen the other way round (its `ba`), finish it, so a
    record 40 s later (past the 30 s grace, inside the 60 s idle) is no continuation."""
    flipped: dict[str, Any] = {
        "a": ("10.0.0.2", 443),
        "b": ("10.0.0.1", 40000),
        "client": ("10.0.0.1", 40000),
        "server": ("10.0.0.2", 443),
    }
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x11)),
        session(
            "B",
            900,
            1000,
            close="hard_timeout",
            split=1,
            conversation="A",
            flags=(0x10, 0x11),
            **flipped,
        ),
        session("C", 1040, 1050, flags=(0x10, 0x10)),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id["A"]["session_ids"] == ["A", "B"]
    assert by_id["C"]["session_ids"] == ["C"]


def test_udp_conversations_on_other_ports_never_chain(tmp_path: Path) -> None:
    """Kills H58 (endpoints with ports for TCP only): sessions.md, "Endpoints are (address,
    port) for TCP, UDP, SCTP, UDP-Lite"; an evicted UDP session and one of the same
    addresses but another client port 10 s after it are two keys, two conversations."""
    rows = [
        session("U1", 0, 100, close="evicted", protocol=17, a=("10.0.0.5", 5000)),
        session("U2", 110, 120, protocol=17, a=("10.0.0.5", 5001)),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert set(by_id) == {"U1", "U2"}


def test_conversations_are_ordered_by_their_earliest_opening(tmp_path: Path) -> None:
    """Kills H65 (conversations ordered by their first fragment's opening, not their
    earliest): Chains.conversations is "ordered by first_seen"; a conversation whose next
    fragment reached back before its evicted first one starts then, before another
    conversation that opened between the two."""
    rows = [
        session("A", 100, 200, close="evicted", flags=(SYN_ACK_PSH, 0x12)),
        session("A1", 50, 300, split=1, conversation="A"),
        session("Z", 70, 80, a=("10.9.9.9", 1), flags=(SYN_ACK_PSH, 0x12)),
    ]
    table = one_run(tmp_path, rows).conversations
    assert table.column("conversation_id").to_pylist() == ["A", "Z"]
    assert table.column("first_seen").to_pylist() == [at(50), at(70)]


def test_tcp_and_udp_on_the_same_endpoints_never_chain(tmp_path: Path) -> None:
    """Kills H66 (same_key without the protocol): sessions.md, the key is "(exporter,
    protocol, the two endpoints as an unordered pair)"; an evicted TCP session and a UDP
    one between the same addresses and ports 10 s later are two conversations."""
    rows = [
        session("T", 0, 100, close="evicted", flags=(SYN_ACK_PSH, 0x12)),
        session("U", 110, 120, protocol=17),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert set(by_id) == {"T", "U"}


def test_each_runs_own_idle_timeouts_judge_its_fragments(tmp_path: Path) -> None:
    """Kills H67 (every fragment judged by the first run's idle timeouts): the module's rule
    3, "idle by protocol and state, from the earlier run's manifest"; the second run's 60 s
    TCP idle, not the first run's 120 s, decides that a record 90 s after an evicted
    session of the second run is no continuation."""
    r1 = write_run(
        tmp_path / "r1",
        [session("X", 0, 10, a=("10.9.9.9", 1), flags=(SYN_ACK_PSH, 0x12))],
        settings={**SETTINGS, "sessions.idle.tcp_established": 120.0},
    )
    r2 = write_run(
        tmp_path / "r2",
        [
            session("B", 1000, 1100, close="evicted", flags=(SYN_ACK_PSH, 0x12)),
            session("C", 1190, 1200, flags=(0x10, 0x10)),
        ],
    )
    by_id = conversations(recombine_tables([r1, r2]))
    assert by_id["B"]["session_ids"] == ["B"] and by_id["C"]["session_ids"] == ["C"]


def test_a_conversation_starting_at_fragment_1_is_head_cut(tmp_path: Path) -> None:
    """Kills H69 (head_cut only for a first fragment of split above 1): README, fragment 0
    is outside the window when "its split is above 0"; a conversation whose first fragment
    is fragment 1 is head-cut, SYN or not."""
    rows = [
        session("X", 0, 10, a=("10.9.9.9", 1), flags=(SYN_ACK_PSH, 0x12)),
        session("F1", 500, 600, split=1, conversation="gone", flags=(SYN_ACK_PSH, 0x12)),
    ]
    f1 = conversations(one_run(tmp_path, rows))["F1"]
    assert (f1["head_cut"], f1["complete"]) == (True, False)
