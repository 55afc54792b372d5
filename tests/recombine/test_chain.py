"""Chaining rules, one hand-made scenario per reason, plus the invariants every input keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obserae_forensics.errors import UsageError
from obserae_forensics.recombine import nice_above, recombine_tables
from obserae_forensics.recombine.chain import chain_sessions
from obserae_forensics.recombine.export import collect_flows
from obserae_forensics.recombine.report import render_markdown
from obserae_forensics.recombine.runs import Run, read_sessions

from .conftest import SETTINGS, T0_US, flows_for, session, write_run

SYN_ACK_PSH = 0x1A | 0x02


def conversations(result: Any) -> dict[str, dict[str, Any]]:
    return {row["conversation_id"]: row for row in result.conversations.to_pylist()}


def one_run(tmp_path: Path, rows: list[dict[str, Any]], **kwargs: Any) -> Any:
    return recombine_tables([write_run(tmp_path / "run", rows, **kwargs)])


def test_hard_timeout_fragments_become_one_conversation(tmp_path: Path) -> None:
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("B", 900.5, 1799, close="hard_timeout", split=1, conversation="A"),
        session("C", 1800.2, 1850, close="fin", split=2, conversation="A"),
        session(
            "X", 3000, 3010, a=("10.9.9.9", 1234), b=("10.0.0.2", 443), flags=(SYN_ACK_PSH, 0x12)
        ),
    ]
    result = one_run(tmp_path, rows)
    by_id = conversations(result)
    assert set(by_id) == {"A", "X"}
    a = by_id["A"]
    assert a["fragment_count"] == 3
    assert a["splits"] == [0, 1, 2]
    assert a["session_ids"] == ["A", "B", "C"]
    assert a["split_reasons"] == ["hard_timeout", "hard_timeout"]
    assert a["ab_bytes"] == 3000 and a["ba_bytes"] == 15000
    assert a["ab_packets"] == 30 and a["ba_packets"] == 24
    assert a["gaps_s"] == pytest.approx([1.5, 1.2])
    assert a["state"] == "closed" and a["close_reason"] == "fin"
    assert a["complete"] and not a["head_cut"] and not a["tail_cut"]
    assert a["duration_s"] == 1850
    assert a["recommended_hard_timeout"] == 2700  # 30 min 50 s -> 45 min
    assert by_id["X"]["fragment_count"] == 1


@pytest.mark.parametrize("first", ["A", "Z"])
def test_hard_timeout_links_without_the_sessionizer_split(tmp_path: Path, first: str) -> None:
    """A sessionizer that did not number fragments: the idle rule still links them, taking
    a key's conversations in time order, whatever their ids (Z after B: the chain audit's
    H17 and H63, tests/recombine/test_chain_mutation_audit.py)."""
    rows = [
        session(first, 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("B", 930, 1000, close="idle"),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id[first]["session_ids"] == [first, "B"]
    assert by_id[first]["split_reasons"] == ["hard_timeout"]


def test_next_fragment_beyond_the_idle_timeout_is_another_conversation(tmp_path: Path) -> None:
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("B", 899 + 60.001, 1000, close="idle"),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert set(by_id) == {"A", "B"}
    assert by_id["A"]["complete"]  # its hard deadline cut nothing: nothing came in time


def test_idle_timeout_follows_protocol_and_state(tmp_path: Path) -> None:
    udp = {"protocol": 17, "a": ("10.0.0.5", 5000), "b": ("10.0.0.6", 53)}
    half = {"flags": (0x02, 0), "ba": (0, 0), "a": ("10.0.0.7", 1), "b": ("10.0.0.8", 22)}
    rows = [
        session("U1", 0, 100, close="evicted", **udp),
        session("U2", 129, 140, **udp),  # within udp idle (30 s)
        session("H1", 0, 100, close="evicted", **half),
        session("H2", 106, 110, **half),  # beyond tcp_half_open (5 s)
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id["U1"]["session_ids"] == ["U1", "U2"]
    assert by_id["U1"]["split_reasons"] == ["evicted"]
    assert "H2" in by_id and by_id["H1"]["fragment_count"] == 1


def test_late_session_joins_the_session_it_follows(tmp_path: Path) -> None:
    rows = [
        session("A", 0, 100, flags=(SYN_ACK_PSH, 0x12)),
        session("L", 50, 60, late=True, follows="A", ab=(10, 1), ba=(0, 0)),
        session("M", 70, 80, late=True, follows="ghost"),  # names a session not in the runs
        session("O", 500, 510, a=("10.1.1.1", 1), b=("10.1.1.2", 2)),
        session("W", 520, 530, late=True, follows="O"),  # other key: refused
    ]
    result = one_run(tmp_path, rows)
    by_id = conversations(result)
    assert by_id["A"]["session_ids"] == ["A", "L"]
    assert by_id["A"]["split_reasons"] == ["late"]
    assert by_id["A"]["ab_bytes"] == 1010
    assert by_id["A"]["state"] == "closed"  # the late piece does not decide the final state
    assert by_id["A"]["gaps_s"] == [0.0]  # a late piece inside the span leaves no gap
    assert "M" in by_id and "W" in by_id
    assert result.report["refused_links"] == {
        "late_follows_missing": 1,
        "late_follows_other_key": 1,
        "split_link_missing": 0,
    }


def test_each_fragment_names_the_fragment_it_joined(tmp_path: Path) -> None:
    """A late session follows the session it was late for, not always the fragment just
    before it: L, late for A, opens after A's hard_timeout continuation A1, so it is
    fragment 2 and joined fragment 0. The report said "joined as late" beside a gap
    measured from A1, as if it had joined A1 (a responder review)."""
    rows = [
        session("A", 0, 100, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("A1", 100, 190, split=1, conversation="A"),
        session("L", 150, 160, late=True, follows="A", ab=(10, 1), ba=(0, 0)),
    ]
    result = one_run(tmp_path, rows)
    assert [
        (f["session_id"], f["fragment_index"], f["link_reason"], f["joined_fragment"])
        for f in result.fragments.to_pylist()
    ] == [("A", 0, None, None), ("A1", 1, "hard_timeout", 0), ("L", 2, "late", 0)]
    lines = render_markdown(result.report).splitlines()
    assert any(line.endswith("| hard_timeout to #0 |") and "| A1 |" in line for line in lines)
    assert any(line.endswith("| late to #0 |") and "| L |" in line for line in lines)


def test_a_fragment_that_opens_before_the_one_it_continues_is_no_loop(tmp_path: Path) -> None:
    """Found by an audit: the next fragment of an evicted session can open before it (its
    first record reached back), so the key's sessions in time order put it first; both
    evicted, the idle rule linked fragment 0 after fragment 1 and the sessionizer's link
    fragment 1 after fragment 0: `recombine` refused the run as a loop (exit 2)."""
    rows = [
        session("F0", 10, 20, close="evicted", flags=(SYN_ACK_PSH, 0x12)),
        session("F1", 9, 30, close="evicted", split=1, conversation="F0"),
        session("F2", 31, 40, split=2, conversation="F0"),
        session("N", 45, 50),  # the key's next conversation, in the idle timeout of F2
    ]
    result = one_run(tmp_path, rows)
    by_id = conversations(result)
    # its first fragment first (then by opened_at): F1 joined F0, the fragment before it
    assert by_id["F0"]["session_ids"] == ["F0", "F1", "F2"]
    assert by_id["F0"]["splits"] == [0, 1, 2]
    assert not by_id["F0"]["head_cut"]  # with F1 first, fragment 0 had a split above 0
    assert set(by_id) == {"F0", "N"}  # F2 closed idle: N is another conversation
    fragments = result.fragments.to_pylist()
    assert [
        (f["session_id"], f["link_reason"], f["gap_s"])
        for f in fragments
        if f["conversation_id"] == "F0"
    ] == [("F0", None, None), ("F1", "evicted", 0.0), ("F2", "evicted", 1.0)]


def test_a_cap_split_conversation_is_oriented_by_its_earliest_record(tmp_path: Path) -> None:
    """A review (an IRC DCC transfer under --max-open-ksessions): the evicted session held
    the receiver's records, opened 1 ms after the SYN's sender's record that its
    continuation holds alone, in the orientation it inherited. The conversation read
    receiver -> sender with a first_sender guess of 0.5 each; its ip_a sends the earliest
    record (sessions.md), and a first_sender guess follows it."""
    rows = [
        session(
            "E0",
            10.001,
            10.2,
            close="evicted",
            a=("10.0.0.7", 59130),
            b=("10.0.0.22", 43614),
            ab=(1370247, 962),
            ba=(0, 0),
            flags=(27, 0),
        ),
        session(
            "E1",
            10.0,
            10.2,
            close="fin",
            split=1,
            conversation="E0",
            a=("10.0.0.7", 59130),
            b=("10.0.0.22", 43614),
            ab=(0, 0),
            ba=(6964, 127),
            flags=(0, 27),
        ),
    ]
    for row in rows:
        row["role_method"], row["role_confidence"] = "first_sender", 0.5
    result = one_run(tmp_path, rows)
    [row] = result.conversations.to_pylist()
    assert (row["ip_a"], row["port_a"], row["ip_b"], row["port_b"]) == (
        "10.0.0.22",
        43614,
        "10.0.0.7",
        59130,
    )
    assert (row["client_ip"], row["client_port"], row["server_port"]) == ("10.0.0.22", 43614, 59130)
    assert (row["ab_bytes"], row["ba_bytes"]) == (6964, 1370247)
    # each fragment's own guess is of the orientation it inherited: said, not hidden
    assert row["orientation_conflicts"] == ["E0", "E1"]
    assert [f["flipped"] for f in result.fragments.to_pylist()] == [True, True]
    # a confident fragment's side stands: it is no guess of who sent first
    rows[1]["role_method"], rows[1]["role_confidence"] = "tcp_syn", 0.9
    rows[1]["client_ip"], rows[1]["client_port"] = "10.0.0.7", 59130
    rows[1]["server_ip"], rows[1]["server_port"] = "10.0.0.22", 43614
    [row] = recombine_tables([write_run(tmp_path / "sure", rows)]).conversations.to_pylist()
    assert (row["ip_a"], row["client_ip"], row["role_method"]) == (
        "10.0.0.22",
        "10.0.0.7",
        "tcp_syn",
    )
    assert row["orientation_conflicts"] == []  # E0's guess agrees with it


def test_a_late_half_across_the_cut_reaching_the_session_it_belongs_with_joins_it(
    tmp_path: Path,
) -> None:
    """A review: the sessionizer links a late record whose span reaches the closed session
    of its key though it starts before it (a client's half exported after its server's,
    starting 1 ms earlier); across two runs, where the late session names nothing,
    recombine looked only for a session opened at or before its start, and one
    conversation came out two, the server's half reversed. One run and two agree."""
    a, b = ("10.0.0.2", 443), ("10.0.0.1", 40000)
    server = session("S", 0.001, 1, a=a, b=b, client=b, server=a, ba=(0, 0), flags=(0x12, 0))
    client = session(
        "L",
        0.0,
        0.9,
        late=True,
        a=a,
        b=b,
        client=b,
        server=a,
        ab=(0, 0),
        ba=(8700, 87),
        flags=(0, 0x1A),
    )
    late_arrival = [T0_US + 5_000_000]  # exported after the server's half
    runs = [
        write_run(tmp_path / "r1", [server], window=(0, 1)),
        write_run(
            tmp_path / "r2",
            [client],
            window=(0, 1),
            flows=flows_for([client], arrivals_us=late_arrival),
        ),
    ]
    [row] = recombine_tables(runs).conversations.to_pylist()
    assert row["session_ids"] == ["S", "L"]
    assert (row["ip_a"], row["port_a"], row["client_ip"]) == ("10.0.0.1", 40000, "10.0.0.1")
    assert (row["ab_packets"], row["ba_packets"]) == (87, 10)
    # a late record ending before the session opened reaches nothing: its own
    early = dict(client, last_seen_at=client["opened_at"])
    runs[1] = write_run(
        tmp_path / "r3", [early], window=(0, 1), flows=flows_for([early], arrivals_us=late_arrival)
    )
    assert len(recombine_tables(runs).conversations) == 2


def test_a_refused_connection_in_late_halves_is_rejected_not_reset(tmp_path: Path) -> None:
    """A review (live/sf_v9_late_halves.pcap at a 10 s hard_timeout): the SYN's record in
    one fragment, the RST|ACK answer late in another, whose own reason is rst; one session
    of both reads `rejected` (sessions.md: the only answer to a TCP opening was RST), and
    so does the conversation. A reset after data stays `rst`."""

    def answered(name: str, port: int, opening: int) -> list[dict[str, Any]]:
        """The opening's fragment, and the late RST|ACK answering it."""
        server = ("10.0.0.2", port)
        return [
            session(
                name + "0", 0, 0.1, close="hard_timeout", b=server, ba=(0, 0), flags=(opening, 0)
            ),
            session(
                name + "1",
                0.05,
                0.05,
                close="rst",
                b=server,
                ab=(0, 0),
                ba=(40, 1),
                flags=(0, 0x14),
                late=True,
            ),
        ]

    rows = [*answered("R", 9, 0x02), *answered("P", 80, 0x1A)]
    by_id = conversations(one_run(tmp_path, rows, window=(0, 60)))
    assert by_id["R0"]["session_ids"] == ["R0", "R1"]
    assert by_id["R0"]["close_reason"] == "rejected"
    assert by_id["P0"]["session_ids"] == ["P0", "P1"]
    assert by_id["P0"]["close_reason"] == "rst"  # its opener pushed data: a reset


def test_a_late_new_connection_after_a_finished_one_is_its_own_conversation(tmp_path: Path) -> None:
    # as the sessionizer has it: it follows the finished connection, it does not go on
    # with it; a late trailing ACK does
    rows = [
        session("A", 0, 2, close="fin", flags=(0x1B, 0x1B)),
        session("S", 5, 5, close="no_reply", late=True, follows="A", flags=(0x02, 0), ba=(0, 0)),
        session("B", 100, 102, close="fin", flags=(0x1B, 0x1B)),
        session("K", 105, 105, close="fin", late=True, follows="B", flags=(0x10, 0), ba=(0, 0)),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id["A"]["session_ids"] == ["A"] and by_id["S"]["session_ids"] == ["S"]
    assert by_id["B"]["session_ids"] == ["B", "K"]


def test_a_connection_whose_fins_fall_on_both_sides_of_a_cut_is_finished(tmp_path: Path) -> None:
    """Found in review: recombine judged a fragment finished by its own flags, where the
    sessionizer counts the FINs of the fragments before it: a new connection's SYN after
    such a fragment (on time, or late) was joined to the finished conversation."""
    cut = [
        session("F0", 0, 25, close="hard_timeout", flags=(0x13, 0x12)),
        session("F1", 26, 47, close="hard_timeout", split=1, conversation="F0", flags=(0, 0x11)),
    ]
    for extra in (
        session("N", 48, 48, close="no_reply", flags=(0x02, 0), ba=(0, 0)),
        session("N", 48, 48, close="no_reply", late=True, follows="F1", flags=(0x02, 0), ba=(0, 0)),
    ):
        by_id = conversations(one_run(tmp_path / f"late{extra['late']}", [*cut, extra]))
        assert by_id["F0"]["session_ids"] == ["F0", "F1"]
        assert by_id["N"]["session_ids"] == ["N"]
    trailing = session("K", 48, 48, close="no_reply", flags=(0x10, 0), ba=(0, 0))
    by_id = conversations(one_run(tmp_path / "ack", [*cut, trailing]))
    assert by_id["F0"]["session_ids"] == ["F0", "F1", "K"]


def test_fragments_after_a_late_fragment_0_stay_its_conversation(tmp_path: Path) -> None:
    """Found by an audit: a late session cut by hard_timeout goes on in fragment 1, which is
    not late; the sessionizer's own link was looked up among sessions that are not late,
    so fragment 1 came out as a conversation of its own (`split_link_missing`)."""
    rows = [
        session("A", 0, 100, flags=(SYN_ACK_PSH, 0x12)),
        session("L", 110, 1009, close="hard_timeout", late=True, follows="A"),
        session("L1", 1010, 1020, split=1, conversation="L"),
    ]
    result = one_run(tmp_path, rows)
    by_id = conversations(result)
    assert by_id["A"]["session_ids"] == ["A", "L", "L1"]
    assert by_id["A"]["split_reasons"] == ["late", "hard_timeout"]
    assert result.report["refused_links"]["split_link_missing"] == 0


def test_conversation_counters_past_2_64_stop_at_the_ceiling(tmp_path: Path) -> None:
    # found in review: two fragments of 2**63 + 5 bytes added up to 10
    rows = [
        session("F0", 0, 899, close="hard_timeout", ab=(2**63 + 5, 10)),
        session("F1", 900, 950, split=1, conversation="F0", ab=(2**63 + 5, 10)),
    ]
    [row] = one_run(tmp_path, rows).conversations.to_pylist()
    assert (row["session_ids"], row["ab_bytes"], row["ab_packets"]) == (["F0", "F1"], 2**64 - 1, 20)


def test_run_boundary_continuation_with_flipped_orientation(tmp_path: Path) -> None:
    first = write_run(
        tmp_path / "r1",
        [
            session("A", 0, 500, state="active", flags=(SYN_ACK_PSH, 0x12)),
        ],
    )
    # the next run saw the server speak first: its own a/b and client/server are reversed
    second = write_run(
        tmp_path / "r2",
        [
            session(
                "B",
                520,
                600,
                a=("10.0.0.2", 443),
                b=("10.0.0.1", 40000),
                ab=(7000, 7),
                ba=(300, 3),
                flags=(0x18, 0x11),
            ),
        ],
    )
    result = recombine_tables([second, first])  # given out of order: data windows decide
    assert [run.path for run in result.runs] == [first, second]
    by_id = conversations(result)
    assert list(by_id) == ["A"]
    a = by_id["A"]
    assert a["split_reasons"] == ["run_boundary"]
    assert (a["ip_a"], a["port_a"]) == ("10.0.0.1", 40000)
    assert a["ab_bytes"] == 1000 + 300 and a["ba_bytes"] == 5000 + 7000
    assert a["orientation_conflicts"] == ["B"]
    assert a["state"] == "closed" and a["close_reason"] == "idle"
    fragments = result.fragments.to_pylist()
    assert [f["flipped"] for f in fragments] == [False, True]
    assert [f["run_index"] for f in fragments] == [0, 1]
    # the flows export says each record's direction in the conversation's orientation
    # too: a review found the flipped fragment's server records read `ab` beside the first
    # fragment's client records, with nothing to tell them apart
    flows = collect_flows(result, ["A"]).to_pylist()
    seen = {
        (f["fragment_index"], f["src_addr"][-1], f["direction"], f["conversation_direction"])
        for f in flows  # (the address's last byte: 10.0.0.1 is the client)
    }
    assert seen == {(0, 1, "ab", "ab"), (0, 2, "ba", "ba"), (1, 2, "ab", "ba"), (1, 1, "ba", "ab")}


def test_open_session_without_continuation_is_settled_when_the_next_run_covers_it(
    tmp_path: Path,
) -> None:
    first = write_run(
        tmp_path / "r1",
        [
            session("A", 0, 500, state="active", flags=(SYN_ACK_PSH, 0x12)),
            session(
                "Q",
                450,
                480,
                state="active",
                protocol=17,
                a=("10.0.0.5", 5000),
                b=("10.0.0.6", 53),
                ba=(0, 0),
            ),
        ],
    )
    second = write_run(
        tmp_path / "r2",
        [
            session("Z", 505, 700, a=("10.3.3.3", 1), b=("10.3.3.4", 2), flags=(SYN_ACK_PSH, 0x12)),
        ],
    )
    by_id = conversations(recombine_tables([first, second]))
    assert by_id["A"]["state"] == "closed" and by_id["A"]["close_reason"] == "idle"
    assert by_id["A"]["state_inferred"] and by_id["A"]["complete"]
    assert by_id["Q"]["close_reason"] == "no_reply"  # one direction only


def test_settled_reasons_are_the_sessionizers(tmp_path: Path) -> None:
    """A conversation settled by the next run closes as the sessionizer would have closed
    it: one-way midstream TCP (ACK, no SYN) idle, a one-way RST no_reply (it said rst)."""
    first = write_run(
        tmp_path / "r1",
        [
            session("MID", 0, 500, state="active", ba=(0, 0), flags=(0x18, 0)),
            session("RST", 0, 500, state="active", a=("10.0.0.7", 1), ba=(0, 0), flags=(0x14, 0)),
            session("SYN", 0, 500, state="active", a=("10.0.0.8", 1), ba=(0, 0), flags=(0x12, 0)),
            # SYN, ACK and data one way: answered on the path not seen, no attempt
            session("DATA", 0, 500, state="active", a=("10.0.0.9", 1), ba=(0, 0), flags=(0x1A, 0)),
        ],
    )
    second = write_run(
        tmp_path / "r2",
        [
            session("Z", 505, 700, a=("10.3.3.3", 1), b=("10.3.3.4", 2), flags=(SYN_ACK_PSH, 0x12)),
        ],
    )
    by_id = conversations(recombine_tables([first, second]))
    assert {
        i: (by_id[i]["close_reason"], by_id[i]["state_inferred"])
        for i in ("MID", "RST", "SYN", "DATA")
    } == {
        "MID": ("idle", True),
        "RST": ("no_reply", True),
        "SYN": ("no_reply", True),
        "DATA": ("idle", True),
    }


def test_recombining_slices_agrees_with_one_run(tmp_path: Path) -> None:
    """Found by fuzzing (sessionize the whole capture, and its slices, recombine both): the
    rules recombine applies across runs disagreed with the sessionizer's inside one."""
    other = ("10.3.3.3", 1), ("10.3.3.4", 2)
    # a connection finished (FIN both ways) at the end of run 1 is not continued by the
    # next connection on its 5-tuple in run 2
    first = write_run(
        tmp_path / "r1",
        [
            session("DONE", 0, 5, state="active", flags=(0x1B, 0x1B)),
            # one direction of a UDP exchange seen in run 1, the other in run 2
            session(
                "ASK",
                0,
                6,
                state="active",
                protocol=17,
                a=("10.0.0.5", 5000),
                b=("10.0.0.6", 53),
                ba=(0, 0),
            ),
            # SYN, then RST|ACK and a stray ACK of the client: the sessionizer's rejected
            session("REJ", 0, 1, state="active", a=("10.0.0.9", 4000), flags=(0x12, 0x14)),
            session("FINISHED", 0, 5, state="active", a=("10.0.0.11", 1), flags=(0x1B, 0x1B)),
        ],
    )
    second = write_run(
        tmp_path / "r2",
        [
            session("NEXT", 40, 41, state="active", flags=(0x1B, 0x1B)),
            session(
                "ANSWER",
                7,
                8,
                close="no_reply",
                protocol=17,
                a=("10.0.0.6", 53),
                b=("10.0.0.5", 5000),
                ba=(0, 0),
            ),
            session("Z", 505, 700, a=other[0], b=other[1], flags=(SYN_ACK_PSH, 0x12)),
            # a trailing ACK within the grace still joins the finished connection (review)
            session("TRAIL", 6, 6, a=("10.0.0.11", 1), ba=(0, 0), flags=(0x10, 0)),
        ],
    )
    by_id = conversations(recombine_tables([first, second]))
    assert by_id["FINISHED"]["session_ids"] == ["FINISHED", "TRAIL"]
    assert by_id["DONE"]["fragment_count"] == 1 and "NEXT" in by_id
    assert (by_id["DONE"]["close_reason"], by_id["NEXT"]["fragment_count"]) == ("fin", 1)
    assert (by_id["ASK"]["fragment_count"], by_id["ASK"]["close_reason"]) == (2, "idle")
    assert by_id["REJ"]["close_reason"] == "rejected"


def test_a_new_connection_after_a_finished_one_across_runs_is_its_own(tmp_path: Path) -> None:
    """As inside one run (the sessionizer's rule 2b'): a connection that opens with a SYN
    after a finished one on its 5-tuple, within the grace, is a new conversation; a
    trailing ACK there still joins."""
    first = write_run(
        tmp_path / "r1",
        [
            session("DONE", 0, 5, state="active", flags=(0x1B, 0x1B)),
            session("ALSO", 0, 5, state="active", a=("10.0.0.11", 1), flags=(0x1B, 0x1B)),
        ],
    )
    second = write_run(
        tmp_path / "r2",
        [
            session("AGAIN", 6, 9, state="active", flags=(0x1B, 0x1B)),
            session("TRAIL", 6, 6, a=("10.0.0.11", 1), ba=(0, 0), flags=(0x10, 0)),
        ],
    )
    by_id = conversations(recombine_tables([first, second]))
    assert by_id["DONE"]["session_ids"] == ["DONE"] and "AGAIN" in by_id
    assert by_id["ALSO"]["session_ids"] == ["ALSO", "TRAIL"]


def test_the_conversations_state_is_its_latest_fragments(tmp_path: Path) -> None:
    # a short fragment opened inside a long one is not the conversation's end
    rows = [
        session("LONG", 0, 45, close="hard_timeout", ba=(0, 0), flags=(0x10, 0)),
        session(
            "SHORT",
            30,
            31,
            close="no_reply",
            split=1,
            conversation="LONG",
            ba=(0, 0),
            flags=(0x10, 0),
        ),
        session("END", 46, 47, a=("10.9.9.9", 1), b=("10.0.0.2", 443)),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert (by_id["LONG"]["close_reason"], by_id["LONG"]["tail_cut"]) == ("hard_timeout", True)


def test_a_late_session_past_the_idle_timeout_is_its_own_conversation(tmp_path: Path) -> None:
    rows = [
        session("UDP", 0, 5, close="no_reply", protocol=17, ba=(0, 0)),
        session("NEAR", 20, 25, close="no_reply", protocol=17, ba=(0, 0), late=True, follows="UDP"),
        session("FAR", 40, 45, close="no_reply", protocol=17, ba=(0, 0), late=True, follows="UDP"),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id["UDP"]["session_ids"] == ["UDP", "NEAR"]  # 20 - 5 <= udp idle 30 s
    assert by_id["FAR"]["fragment_count"] == 1  # 40 - 5 > 30 s


def test_run_boundary_needs_an_open_session_and_the_idle_timeout(tmp_path: Path) -> None:
    first = write_run(
        tmp_path / "r1",
        [
            # closed for good while the run went on (due at 560, the watermark reached 570)
            session("A", 0, 500, close="idle"),
            session("P", 0, 560, state="active", a=("10.5.5.5", 1), b=("10.5.5.6", 2)),
            session("Q", 0, 600, state="active", a=("10.5.5.7", 1), b=("10.5.5.6", 2)),
        ],
    )
    second = write_run(
        tmp_path / "r2",
        [
            session("B", 520, 600),
            session("R", 621, 700, a=("10.5.5.6", 2), b=("10.5.5.5", 1)),  # 61 s > 60 s idle
        ],
    )
    by_id = conversations(recombine_tables([first, second]))
    assert set(by_id) == {"A", "B", "P", "Q", "R"}


def test_a_session_the_runs_end_closed_goes_on_in_the_next_run(tmp_path: Path) -> None:
    """Found by fuzzing: at its end a run's watermark jumps to its last record and closes
    sessions one run over both captures kept open, for records delayed across the cut."""
    udp = {"protocol": 17, "a": ("10.0.0.5", 5000), "b": ("10.0.0.6", 53)}
    fin = {"a": ("10.0.0.11", 1)}
    other = {"protocol": 17, "a": ("10.0.0.99", 7), "b": ("10.0.0.98", 8)}
    whole = write_run(
        tmp_path / "whole",
        [
            session("S", 0, 46, ab=(600, 6), ba=(3000, 5), **udp),
            session(
                "F", 0, 40, close="fin", ab=(1100, 11), ba=(5000, 8), flags=(0x1B, 0x1B), **fin
            ),
            session("X", 0, 60, **other),
            session("Y", 95, 100, **other),  # 35 s after X: past the UDP idle
        ],
        window=(0, 100),
    )
    r1 = write_run(
        tmp_path / "r1",
        [
            # due at 50, after the last watermark (60 - 30 s of grace): closed by the end only
            session("S", 0, 20, ab=(500, 5), ba=(2500, 4), **udp),
            # FIN both ways at 35, within the grace of the end: closed by the end only
            session("F", 0, 35, close="fin", flags=(0x1B, 0x1B), **fin),
            session("X", 0, 60, state="active", **other),
        ],
        window=(0, 60),
    )
    r2 = write_run(
        tmp_path / "r2",
        [
            session("S-r2", 45, 46, ab=(100, 1), ba=(500, 1), **udp),  # delayed past the cut
            session("F-r2", 40, 40, ab=(100, 1), ba=(0, 0), flags=(0x10, 0), **fin),  # last ACK
            session("Y", 95, 100, **other),
        ],
        window=(40, 100),
    )
    columns = [
        "conversation_id",
        "first_seen",
        "last_seen",
        "ab_bytes",
        "ba_bytes",
        "ab_packets",
        "ba_packets",
        "state",
        "close_reason",
    ]
    one = recombine_tables([whole]).conversations.select(columns).to_pylist()
    assert recombine_tables([r1, r2]).conversations.select(columns).to_pylist() == one


def test_chains_never_mix_exporters_or_keys(tmp_path: Path) -> None:
    rows = [
        session("A", 0, 899, close="hard_timeout"),
        session("B", 900, 950, exporter="192.0.2.99"),
        session("C", 900, 950, b=("10.0.0.2", 444)),
        session("D", 900, 950, protocol=17),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert all(row["fragment_count"] == 1 for row in by_id.values())


def test_three_runs_over_slices_equal_one_run_over_everything(tmp_path: Path) -> None:
    """One capture split at 700 s and 1500 s gives the conversations of one whole run."""
    syn = {"flags": (SYN_ACK_PSH, 0x12)}
    udp = {"protocol": 17, "a": ("10.0.0.5", 5000), "b": ("10.0.0.6", 53)}
    other = {"a": ("10.7.7.7", 3333), "b": ("10.0.0.2", 80)}
    whole = write_run(
        tmp_path / "whole",
        [
            session("X0", 0, 899.9, close="hard_timeout", ab=(900, 9), ba=(9000, 9), **syn),
            session(
                "X1",
                900.0,
                1799.5,
                close="hard_timeout",
                split=1,
                conversation="X0",
                ab=(900, 9),
                ba=(9000, 9),
            ),
            session(
                "X2",
                1800.0,
                2000,
                close="fin",
                split=2,
                conversation="X0",
                ab=(200, 2),
                ba=(2000, 2),
            ),
            session("U0", 650, 720, **udp),  # crosses the first cut, quiet before the second
            session("Y0", 1200, 1400, close="idle", **other, **syn),
        ],
        window=(0, 2000),
    )
    r1 = write_run(
        tmp_path / "r1",
        [
            session("X0", 0, 699.9, state="active", ab=(700, 7), ba=(7000, 7), **syn),
            session("U0", 650, 690, state="active", ab=(600, 6), ba=(3000, 5), **udp),
        ],
        window=(0, 699.9),
    )
    r2 = write_run(
        tmp_path / "r2",
        [
            session("X-r2", 700.0, 1499.5, state="active", ab=(900, 9), ba=(9000, 9)),
            session("U-r2", 700.2, 720, ab=(400, 4), ba=(2000, 3), **udp),
            session("Y0", 1200, 1400, close="idle", **other, **syn),
        ],
        window=(700.0, 1499.5),
    )
    r3 = write_run(
        tmp_path / "r3",
        [
            session("X-r3", 1500.0, 2000, close="fin", ab=(400, 4), ba=(4000, 4)),
        ],
        window=(1500.0, 2000),
    )

    columns = [
        "conversation_id",
        "exporter",
        "protocol",
        "ip_a",
        "port_a",
        "ip_b",
        "port_b",
        "first_seen",
        "last_seen",
        "ab_bytes",
        "ba_bytes",
        "ab_packets",
        "ba_packets",
        "state",
        "close_reason",
        "complete",
        "head_cut",
        "tail_cut",
    ]
    one = recombine_tables([whole]).conversations.select(columns)
    three = recombine_tables([r3, r1, r2]).conversations.select(columns)
    assert three.to_pylist() == one.to_pylist()


@pytest.mark.parametrize("replay", ["arrival", "event", None])
def test_closed_by_the_end_at_the_exact_tie_and_not_under_event_replay(
    tmp_path: Path, replay: str | None
) -> None:
    """Due exactly at the last watermark (80 - 30 s): the sweeps close only what is due
    before it, so the end closed it; under event replay the watermark followed first_seen,
    which the tables do not keep, so nothing is inferred (review). A manifest without
    `sessions.replay` is one of arrival replay, sessionize's default (the audit's R05)."""
    udp = {"protocol": 17, "a": ("10.0.0.5", 5000), "b": ("10.0.0.6", 53)}
    other = {"protocol": 17, "a": ("10.0.0.99", 7), "b": ("10.0.0.98", 8)}
    r1 = write_run(
        tmp_path / "r1",
        [
            session("T", 0, 20, **udp),  # udp idle 30 s: due at 50
            session("X", 0, 80, state="active", **other),
        ],
        window=(0, 80),
        settings={
            **{k: v for k, v in SETTINGS.items() if k != "sessions.replay"},
            **({} if replay is None else {"sessions.replay": replay}),
        },
    )
    r2 = write_run(tmp_path / "r2", [session("T-r2", 45, 46, **udp)], window=(45, 90))
    by_id = conversations(recombine_tables([r1, r2]))
    linked = by_id["T"]["session_ids"] == ["T", "T-r2"]
    assert linked == (replay != "event")


def test_a_record_delayed_across_the_cut_joins_the_earlier_runs_session(tmp_path: Path) -> None:
    """A late session of run 2 names nothing (run 2 never saw its key before), yet one run
    over both captures would have counted its record in the session it falls into."""
    udp = {"protocol": 17, "a": ("10.0.0.5", 5000), "b": ("10.0.0.6", 53)}
    far = {"protocol": 17, "a": ("10.0.0.7", 5000), "b": ("10.0.0.6", 53)}
    whole = write_run(
        tmp_path / "whole",
        [
            session("A", 0, 40, ab=(700, 7), ba=(3500, 6), **udp),
            session("F", 0, 5, ab=(100, 1), ba=(0, 0), close="no_reply", **far),
            session(
                "F-late",
                50,
                51,
                ab=(100, 1),
                ba=(0, 0),
                close="no_reply",
                late=True,
                follows="F",
                **far,
            ),
        ],
        window=(0, 51),
    )
    r1 = write_run(
        tmp_path / "r1",
        [
            session("A", 0, 20, state="active", ab=(500, 5), ba=(2500, 4), **udp),
            session("F", 0, 5, ab=(100, 1), ba=(0, 0), close="no_reply", **far),
        ],
        window=(0, 20),
    )
    r2 = write_run(
        tmp_path / "r2",
        [
            # delayed across the cut, inside A's span: late in run 2, following nothing there
            session("A-late", 10, 12, ab=(100, 1), ba=(500, 1), late=True, **udp),
            session("A-r2", 30, 40, ab=(100, 1), ba=(500, 1), **udp),
            # 45 s after F's last record, past the UDP idle of 30 s: a conversation of its own
            session("F-late", 50, 51, ab=(100, 1), ba=(0, 0), close="no_reply", late=True, **far),
        ],
        window=(25, 51),
    )
    columns = [
        "conversation_id",
        "first_seen",
        "last_seen",
        "ab_bytes",
        "ba_bytes",
        "ab_packets",
        "ba_packets",
        "state",
        "close_reason",
    ]
    one = recombine_tables([whole]).conversations.select(columns).to_pylist()
    two = recombine_tables([r1, r2])
    assert two.conversations.select(columns).to_pylist() == one
    by_id = conversations(two)
    assert by_id["A"]["session_ids"] == ["A", "A-late", "A-r2"]
    assert by_id["A"]["split_reasons"] == ["late", "run_boundary"]
    # inside one run too: the sessionizer names only the key's last closed session, so a
    # record falling into the one before names nothing (found by fuzzing this rule)
    alone = recombine_tables(
        [
            write_run(
                tmp_path / "alone",
                [
                    session("A", 0, 40, close="hard_timeout", **udp),
                    session("B", 50, 60, **udp),
                    session("A-late", 10, 12, late=True, **udp),
                    session(
                        "C", 0, 1, a=("10.9.9.9", 1), **{k: v for k, v in udp.items() if k != "a"}
                    ),
                    session(
                        "C-late",
                        40,
                        41,
                        late=True,
                        a=("10.9.9.9", 1),  # 39 s after C: past idle
                        **{k: v for k, v in udp.items() if k != "a"},
                    ),
                ],
            )
        ]
    )
    by_id = conversations(alone)
    assert by_id["A"]["session_ids"] == ["A", "A-late", "B"]
    assert by_id["C-late"]["fragment_count"] == 1


def test_head_and_tail_outside_the_window(tmp_path: Path) -> None:
    rows = [
        session("MID", 0, 899, close="hard_timeout", flags=(0x18, 0x10)),  # no SYN at start
        session("MID1", 900, 1000, split=1, conversation="MID", flags=(0x18, 0x10)),
        session("SYN", 2, 50, a=("10.8.8.8", 1), b=("10.0.0.2", 22), flags=(0x1B, 0x13)),
        session("LATE1", 300, 400, split=3, conversation="gone", a=("10.6.6.6", 1)),
        session("END", 1100, 1999, close="hard_timeout", a=("10.4.4.4", 9), flags=(0x1A, 0x12)),
        session("OPEN", 1950, 2000, state="active", a=("10.4.4.5", 9), flags=(0x1A, 0x12)),
        # FIN both ways: a hard_timeout cut of a finished conversation cuts nothing
        session("DONE", 1100, 1999, close="hard_timeout", a=("10.4.4.6", 9), flags=(0x1B, 0x13)),
    ]
    result = one_run(tmp_path, rows)
    by_id = conversations(result)
    assert by_id["MID"]["head_cut"] and not by_id["MID"]["complete"]
    assert not by_id["SYN"]["head_cut"] and by_id["SYN"]["complete"]
    assert by_id["LATE1"]["head_cut"]  # its fragment 0 is in no table
    assert by_id["END"]["tail_cut"] and by_id["OPEN"]["tail_cut"]
    assert by_id["DONE"]["complete"]
    # found by auditing: a cut that nothing continued said hard_timeout beside complete
    assert (by_id["DONE"]["close_reason"], by_id["DONE"]["state_inferred"]) == ("fin", True)
    assert (by_id["END"]["close_reason"], by_id["END"]["state_inferred"]) == (
        "hard_timeout",
        False,
    )  # more may follow: the cut stands
    window = result.report["outside_window"]
    heads = {e["conversation_id"]: e["message"] for e in window["head_cut"]}
    # no split above 0: it may have begun before, not "fragment 0 is outside" (a review)
    assert heads["MID"] == (
        "may have begun before the window (it starts within an idle timeout of the "
        "exporter's first record, no opening seen): widen the window to start before "
        "2024-03-01T12:00:00.000Z to know"
    )
    assert heads["LATE1"].startswith(
        "fragment 0 is outside the window (the earliest fragment here is its split"
    )
    assert heads["LATE1"].endswith("start before 2024-03-01T12:05:00.000Z")
    tails = {e["conversation_id"]: e["message"] for e in window["tail_cut"]}
    assert tails["OPEN"] == "more may follow after 2024-03-01T12:33:20.000Z"


def test_a_cut_nothing_continued_inside_the_window_ended_as_it_timed_out(tmp_path: Path) -> None:
    rows = [
        session("CUT", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("ONEWAY", 0, 899, close="evicted", a=("10.4.4.7", 9), ba=(0, 0), flags=(0x10, 0)),
        session(
            "LATER", 2000, 2010, a=("10.9.9.9", 1), b=("10.0.0.2", 443), flags=(SYN_ACK_PSH, 0x12)
        ),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert [
        (
            by_id[i]["state"],
            by_id[i]["close_reason"],
            by_id[i]["state_inferred"],
            by_id[i]["complete"],
        )
        for i in ("CUT", "ONEWAY")
    ] == [
        ("closed", "idle", True, True),
        ("closed", "idle", True, False),
    ]  # midstream; no SYN at the window's start: head cut


def test_duplicate_sessions_across_runs_are_refused(tmp_path: Path) -> None:
    rows = [session("A", 0, 10)]
    first = write_run(tmp_path / "r1", rows)
    second = write_run(tmp_path / "r2", rows)
    with pytest.raises(UsageError, match="session A appears 2 times"):
        recombine_tables([first, second])
    with pytest.raises(UsageError, match="given twice"):
        recombine_tables([first, first])


def test_a_directory_that_is_not_a_run_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no manifest\.json"):
        recombine_tables([tmp_path])


def test_missing_settings_fall_back_to_defaults_and_say_so(tmp_path: Path) -> None:
    partial = {k: v for k, v in SETTINGS.items() if k != "sessions.idle.udp"}
    result = recombine_tables([write_run(tmp_path / "r", [session("A", 0, 1)], settings=partial)])
    assert result.runs[0].settings["sessions.idle.udp"] == 30.0
    assert result.report["runs"][0]["notes"] == [
        "manifest has no sessions.idle.udp; used the default 30 s"
    ]


def test_nice_hard_timeouts() -> None:
    got = nice_above(np.array([0.0, 0.5, 59.0, 60.0, 899.0, 900.0, 3600.0, 8 * 86400.5]))
    assert got.tolist() == [1, 1, 60, 120, 900, 1200, 7200, 9 * 86400]


# ---- invariants on generated inputs -------------------------------------------------------

KEYS = [
    ("10.0.0.1", 1000, "10.0.0.2", 80, 6),
    ("10.0.0.2", 80, "10.0.0.1", 1000, 6),
    ("10.0.0.3", 53, "10.0.0.4", 5353, 17),
    ("10.0.0.5", 0, "10.0.0.6", 0, 1),
]
REASONS = ["hard_timeout", "evicted", "idle", "fin", None]


@st.composite
def session_tables(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 40))
    rows = []
    for index in range(count):
        key = draw(st.sampled_from(KEYS))
        start = draw(st.integers(0, 5000))
        length = draw(st.integers(0, 900))
        reason = draw(st.sampled_from(REASONS))
        late = draw(st.booleans()) and index > 0
        rows.append(
            session(
                f"s{index:03d}",
                start,
                start + length,
                a=(key[0], key[1]),
                b=(key[2], key[3]),
                protocol=key[4],
                exporter=draw(st.sampled_from(["192.0.2.1", "192.0.2.2"])),
                state="closed" if reason else "active",
                close=reason,
                ab=(draw(st.integers(0, 10**6)), draw(st.integers(0, 50))),
                ba=(draw(st.integers(0, 10**6)), draw(st.integers(0, 50))),
                late=late,
                follows=f"s{draw(st.integers(0, index - 1)):03d}" if late else None,
            )
        )
    return rows


def chain_rows(rows: list[dict[str, Any]], tmp: Path) -> Any:
    run = Run(
        path=write_run(tmp, rows),
        settings={
            k: float(v)
            for k, v in SETTINGS.items()
            if k.startswith("sessions.") and isinstance(v, float)
        },
    )
    return chain_sessions(read_sessions(run), [run])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(session_tables(), st.randoms(use_true_random=False))
def test_every_session_in_one_conversation_and_totals_conserved(
    tmp_path: Path, rows: list[dict[str, Any]], shuffle: Any
) -> None:
    chains = chain_rows(rows, tmp_path / "a")
    fragments = chains.fragments.to_pylist()
    assert sorted(f["session_id"] for f in fragments) == sorted(r["session_id"] for r in rows)
    conversations = chains.conversations
    total_in = sum(r["ab_bytes"] + r["ba_bytes"] for r in rows)
    total_out = sum(c["ab_bytes"] + c["ba_bytes"] for c in conversations.to_pylist())
    assert total_in == total_out
    assert sum(conversations.column("fragment_count").to_pylist()) == len(rows)
    by_session = {r["session_id"]: r for r in rows}
    for conversation in conversations.to_pylist():
        members = [by_session[s] for s in conversation["session_ids"]]
        assert len({m["exporter"] for m in members}) == 1
        assert (
            len(
                {
                    (
                        m["protocol_number"],
                        frozenset([(m["ip_a"], m["port_a"]), (m["ip_b"], m["port_b"])]),
                    )
                    for m in members
                }
            )
            == 1
        )
    # the input's row order changes nothing
    shuffled = list(rows)
    shuffle.shuffle(shuffled)
    again = chain_rows(shuffled, tmp_path / "b")
    assert again.conversations.equals(chains.conversations)
    assert again.fragments.drop_columns(["run_dir"]).equals(
        chains.fragments.drop_columns(["run_dir"])
    )


def test_empty_run(tmp_path: Path) -> None:
    result = recombine_tables([write_run(tmp_path / "r", [])])
    assert result.conversations.num_rows == 0
    assert result.report["counts"]["conversations"] == 0
    assert isinstance(result.conversations, pa.Table)


def test_settled_reasons_are_the_sessionizers_for_every_flag_combination() -> None:
    """recombine restates the sessionizer's close-reason rule for conversations it settles;
    the two drifted apart twice (a one-way RST, rejected, FIN with RST): one table of TCP
    flag and direction combinations, both rules."""
    import itertools

    from obserae_forensics.recombine.chain import _settled_reasons
    from obserae_forensics.sessionize import row as R
    from obserae_forensics.sessionize.reference import RefSession

    flag_values = [0, 0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0x1B, 0x16]
    cases = [
        (ab, ba, seen)
        for ab, ba in itertools.product(flag_values, repeat=2)
        for seen in (1, 2, 3)
        if (seen & 1 or not ab) and (seen & 2 or not ba)
    ]
    expected = []
    for ab, ba, seen in cases:
        session = RefSession(key=(6, 0, 1, 40000, 0, 2, 443), serial=0, flags=[ab, ba], seen=seen)
        expected.append(R.REASON_NAMES[session.state_reason()])
        half = session.half_open()
        assert not half or expected[-1] == "no_reply"
    ab_flags, ba_flags, seen = (
        np.array(column, dtype=np.int64) for column in zip(*cases, strict=True)
    )
    half_open = np.array(
        [
            RefSession(key=(6, 0, 1, 40000, 0, 2, 443), serial=0, flags=[a, b], seen=s).half_open()
            for a, b, s in cases
        ]
    )
    settled = _settled_reasons(
        tcp=np.ones(len(cases), dtype=bool),
        half_open=half_open,
        ab_flags=ab_flags,
        ba_flags=ba_flags,
        ab_packets=(seen & 1).astype(np.uint64),
        ba_packets=(seen >> 1).astype(np.uint64),
    )
    mismatches = [
        (hex(a), hex(b), s, e, g)
        for (a, b, s), e, g in zip(cases, expected, settled.tolist(), strict=True)
        if e != g
    ]
    assert mismatches == []


def test_a_one_way_reset_after_data_settles_as_rst(tmp_path: Path) -> None:
    """One direction of an established connection (ACK and data) cut by hard_timeout, then
    its RST (ACK|RST, closed no_reply alone): a connection reset, as the sessionizer has a
    one-way RST after data pushed under ACK, not a one-way attempt (a review found no test
    held recombine's `pushed` to it)."""
    rows = [
        session("X", 0, 899, close="hard_timeout", ba=(0, 0), flags=(0x18, 0)),
        session(
            "X1", 900, 950, split=1, conversation="X", close="no_reply", ba=(0, 0), flags=(0x14, 0)
        ),
    ]
    [row] = one_run(tmp_path, rows).conversations.to_pylist()
    assert (row["state"], row["close_reason"]) == ("closed", "rst")
