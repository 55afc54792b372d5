"""Behaviour of matching, consolidation, recombine and the query filters that no test
pinned, found by a mutation audit (the thirty-fourth session's: 53 small changes, 18 of
which no test noticed, most at an exact boundary: the grace, the idle timeout, the window
ends, protocol 255, port 65535). Each test fails with its change applied and names it.
The readers' own are in tests/readers/test_mutation_audit.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from obserae_forensics import query
from obserae_forensics.matching import consolidate_sessions, load_cartography, load_flow_matrix
from obserae_forensics.matching.services import parse_port_range, parse_protocol
from obserae_forensics.recombine.conversations import split_conversation_ids
from tests.matching.session_tables import make_sessions
from tests.matching.test_consolidate import tcp
from tests.recombine.conftest import session
from tests.recombine.test_chain import SYN_ACK_PSH, conversations, one_run

GRACE_US = 30_000_000


# --- matching/services.py -------------------------------------------------------------


def test_protocol_255_is_a_protocol(tmp_path: Path) -> None:
    """Kills M07 (`number > 255` -> `>= 255`): README: a protocol is a number 0-255."""
    assert parse_protocol("255") == 255
    (tmp_path / "c.yaml").write_text("hosts:\n  h: 10.0.0.1\n")
    (tmp_path / "m.yaml").write_text(
        "rules:\n  - name: top-protocol\n    source: any\n    destination: h\n    protocol: 255\n"
    )
    matrix = load_flow_matrix(tmp_path / "m.yaml", load_cartography(tmp_path / "c.yaml"))
    assert matrix.rules[0].service.protocols == (255,)


def test_port_65535_is_a_port(tmp_path: Path) -> None:
    """Kills M08 (`int(bound) > PORT_MAX` -> `>=`): README: a port is 0-65535."""
    assert parse_port_range("65535") == (65535, 65535)
    assert parse_port_range("60000-65535") == (60000, 65535)
    (tmp_path / "c.yaml").write_text("hosts:\n  h: 10.0.0.1\n")
    (tmp_path / "m.yaml").write_text(
        "rules:\n  - name: top-port\n    source: any\n    destination: h\n"
        "    protocol: tcp\n    ports: 65535\n"
    )
    matrix = load_flow_matrix(tmp_path / "m.yaml", load_cartography(tmp_path / "c.yaml"))
    assert matrix.rules[0].service.ports == ((65535, 65535),)


# --- matching/consolidate.py ----------------------------------------------------------


def test_a_session_opening_exactly_the_grace_after_joins_the_conversation() -> None:
    """Kills M15 (`opened > reach + grace` -> `>=`): README "opens at most grace after the
    latest last_seen_at so far" joins; one microsecond more starts a new conversation."""
    sessions = make_sessions(
        [
            tcp("a", "192.0.2.1", 0, 10),
            tcp("b", "192.0.2.2", 40, 50),  # exactly 30 s after a's last: joins
            tcp("c", "192.0.2.1", 80.000001, 90),  # 30.000001 s after 50: new
        ]
    )
    rows = consolidate_sessions(sessions, GRACE_US).to_pylist()
    assert [r["session_ids"] for r in rows] == [["a", "b"], ["c"]]
    assert [r["sampler_count"] for r in rows] == [2, 1]


# --- recombine/chain.py -----------------------------------------------------------------


def test_a_cut_fragment_continued_exactly_at_the_idle_timeout_is_one_conversation(
    tmp_path: Path,
) -> None:
    """Kills C01 (`opened[after] - last[before] <= reach` -> `<`): sessions.md joins a record
    unless `first_seen > last_seen + idle`; at exactly + idle (60 s for TCP) it joins."""
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("B", 959, 1000, close="idle"),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id["A"]["session_ids"] == ["A", "B"]
    assert by_id["A"]["split_reasons"] == ["hard_timeout"]


def test_after_a_finished_connection_only_the_grace_reaches_not_the_idle_timeout(
    tmp_path: Path,
) -> None:
    """Kills C02 (`reach = np.where(finished_session, grace, idle)` -> `reach = idle`):
    README rule (3): a cut fragment of a finished TCP connection (FIN both ways) is joined
    only within the grace (30 s); an ACK 40 s after it (inside the 60 s idle) is not."""
    rows = [
        session("F", 0, 100, close="hard_timeout", flags=(0x1B, 0x1B)),
        session("K", 140, 140, close="no_reply", flags=(0x10, 0), ba=(0, 0)),
        session("G", 0, 100, close="hard_timeout", flags=(0x1B, 0x1B), a=("10.0.0.11", 1)),
        session("T", 120, 120, close="no_reply", flags=(0x10, 0), ba=(0, 0), a=("10.0.0.11", 1)),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id["F"]["session_ids"] == ["F"] and by_id["K"]["session_ids"] == ["K"]
    assert by_id["G"]["session_ids"] == ["G", "T"]  # 20 s: within the grace


def test_a_late_session_exactly_at_the_idle_timeout_joins_the_one_it_follows(
    tmp_path: Path,
) -> None:
    """Kills C04 (late rule `opened - last[followed] <= idle` -> `<`): README rule (1), a
    late session joins the one it names "when it starts within that one's idle timeout";
    at exactly 30 s (UDP) it does, 1 µs more it does not."""
    udp = {"protocol": 17, "ba": (0, 0)}
    rows = [
        session("UDP", 0, 5, close="no_reply", **udp),
        session("EDGE", 35, 36, close="no_reply", late=True, follows="UDP", **udp),
        session("V", 100, 105, close="no_reply", a=("10.0.0.3", 5), **udp),
        session(
            "PAST",
            135.000001,
            136,
            close="no_reply",
            late=True,
            follows="V",
            a=("10.0.0.3", 5),
            **udp,
        ),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id["UDP"]["session_ids"] == ["UDP", "EDGE"]
    assert by_id["UDP"]["split_reasons"] == ["late"]
    assert by_id["V"]["session_ids"] == ["V"] and by_id["PAST"]["session_ids"] == ["PAST"]


def test_a_gap_is_measured_from_the_latest_record_of_all_fragments_before(tmp_path: Path) -> None:
    """Kills C06 (`previous_last = running_last` -> the previous fragment's own last_seen):
    a late piece inside fragment 0 must not make the gap before fragment 1 look long."""
    rows = [
        session("A", 0, 100, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("L", 50, 60, late=True, follows="A", ab=(10, 1), ba=(0, 0)),
        session("B", 101, 150, split=1, conversation="A"),
    ]
    result = one_run(tmp_path, rows)
    a = conversations(result)["A"]
    assert a["session_ids"] == ["A", "L", "B"]
    assert a["gaps_s"] == pytest.approx([0.0, 1.0])
    assert [f["gap_s"] for f in result.fragments.to_pylist()] == [None, 0.0, 1.0]


def test_head_cut_reaches_exactly_the_idle_timeout_after_the_window_start(tmp_path: Path) -> None:
    """Kills C07 (head_cut `opened - window_start <= idle` -> `<`): README, head_cut when
    fragment 0 "starts within the idle timeout of the exporter's first record with no SYN
    seen"; a UDP conversation opening exactly 30 s after the exporter's first record is."""
    udp = {"protocol": 17, "ba": (0, 0), "close": "no_reply"}
    rows = [
        session("FIRST", 0, 1, a=("10.0.0.3", 5), **udp),
        session("EDGE", 30, 31, **udp),
        session("LATER", 30.000001, 31, a=("10.0.0.4", 5), **udp),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id["EDGE"]["head_cut"] and not by_id["EDGE"]["complete"]
    assert not by_id["LATER"]["head_cut"]


def test_a_cut_fragment_due_exactly_at_the_window_end_is_not_tail_cut(tmp_path: Path) -> None:
    """Kills C08 (tail_cut `deadline > window_end` -> `>=`): "the sessionizer's end of input
    passes the last record: one due at it has ended" (chain.py); a UDP fragment cut at 10 s
    is due at 40 s, the exporter's last record: it ended, its state is settled."""
    udp = {"protocol": 17, "ba": (0, 0)}
    rows = [
        session("CUT", 0, 10, close="hard_timeout", **udp),
        session("END", 35, 40, a=("10.0.0.3", 5), close="no_reply", **udp),
    ]
    cut = conversations(one_run(tmp_path, rows))["CUT"]
    assert not cut["tail_cut"]
    assert cut["state_inferred"] and cut["close_reason"] == "no_reply"


def test_a_syn_at_the_very_instant_of_a_finished_connections_last_record_is_no_new_one(
    tmp_path: Path,
) -> None:
    """Kills C10 (_reconnects `opened[later] > last[earlier]` -> `>=`): README, a new
    connection is one "opening with a SYN after its last record"; one at the same
    microsecond is not after it and joins (gap 0, within the grace)."""
    rows = [
        session("F", 0, 100, close="hard_timeout", flags=(0x1B, 0x1B)),
        session("S", 100, 100, close="no_reply", flags=(0x02, 0), ba=(0, 0)),
        session("G", 0, 100, close="hard_timeout", flags=(0x1B, 0x1B), a=("10.0.0.11", 1)),
        session(
            "N", 100.000001, 101, close="no_reply", flags=(0x02, 0), ba=(0, 0), a=("10.0.0.11", 1)
        ),
    ]
    by_id = conversations(one_run(tmp_path, rows))
    assert by_id["F"]["session_ids"] == ["F", "S"]
    assert by_id["G"]["session_ids"] == ["G"] and by_id["N"]["session_ids"] == ["N"]


def test_a_late_fragment_with_the_latest_record_does_not_decide_the_state(tmp_path: Path) -> None:
    """Kills X09 (final fragment `score = where(late, min, last_f)` -> `score = last_f`):
    README, "the conversation's final state is its non-late fragment with the latest
    record"; a late piece still open past it does not make the conversation open."""
    udp = {"protocol": 17}
    rows = [
        session("A", 0, 100, close="idle", **udp),
        session("L", 50, 120, state="active", late=True, follows="A", ba=(0, 0), **udp),
    ]
    a = conversations(one_run(tmp_path, rows))["A"]
    assert a["session_ids"] == ["A", "L"]
    assert (a["state"], a["close_reason"], a["tail_cut"]) == ("closed", "idle", False)


def test_only_conversations_of_several_fragments_are_split(tmp_path: Path) -> None:
    """Kills X01 (split_conversation_ids `fragment_count > 1` -> `>= 1`): what the exports
    take without --session is "every split conversation", not every conversation."""
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("B", 900.5, 1000, split=1, conversation="A"),
        session("X", 3000, 3010, a=("10.9.9.9", 1234), flags=(SYN_ACK_PSH, 0x12)),
    ]
    result = one_run(tmp_path, rows)
    assert split_conversation_ids(result) == ["A"]
    whole = one_run(tmp_path / "whole", [rows[2]])
    assert split_conversation_ids(whole) == []


# --- recombine/report.py ----------------------------------------------------------------


def test_report_counts_fragments_of_split_conversations_only(tmp_path: Path) -> None:
    """Kills R02 (`count[split].sum()` -> `count.sum()`): the report's
    fragments_of_split_conversations leaves conversations of one fragment out."""
    rows = [
        session("A", 0, 899, close="hard_timeout", flags=(SYN_ACK_PSH, 0x12)),
        session("B", 900.5, 1799, close="hard_timeout", split=1, conversation="A"),
        session("C", 1800.2, 1850, close="fin", split=2, conversation="A"),
        session("X", 3000, 3010, a=("10.9.9.9", 1234), flags=(SYN_ACK_PSH, 0x12)),
    ]
    counts = one_run(tmp_path, rows).report["counts"]
    assert (
        counts["sessions"],
        counts["conversations"],
        counts["split_conversations"],
        counts["fragments_of_split_conversations"],
    ) == (4, 2, 1, 3)


def test_a_conversation_as_long_as_the_hard_timeout_is_not_kept_whole_by_it(tmp_path: Path) -> None:
    """Kills R03 (keeps_whole_pct `duration < value` -> `<=`): report.py, "a record
    starting at opened_at + hard_timeout opens the next fragment", so a 900 s
    conversation is not kept whole by a 900 s hard_timeout."""
    rows = [
        session("X", 0, 900, flags=(SYN_ACK_PSH, 0x12)),
        session("Y", 1000, 1010, a=("10.9.9.9", 1234), flags=(SYN_ACK_PSH, 0x12)),
    ]
    durations = one_run(tmp_path, rows).report["durations"]
    assert durations["current_hard_timeout"] == [{"seconds": 900.0, "keeps_whole_pct": 50.0}]


def _of_0_and_10_seconds() -> list[dict[str, Any]]:
    """Two conversations, one of 0 s and one of 10 s (of other endpoints)."""
    return [
        session("Z", 0, 0, flags=(SYN_ACK_PSH, 0x12)),
        session("T", 100, 110, a=("10.9.9.9", 1234), flags=(SYN_ACK_PSH, 0x12)),
    ]


def test_duration_histogram_buckets_hold_their_lower_edge(tmp_path: Path) -> None:
    """Kills R04 (histogram `lower <= d < upper` -> `lower < d <= upper`): a 0 s
    conversation is "< 1 s" and one of exactly 10 s is "10 s – 1 min"."""
    rows = _of_0_and_10_seconds()
    histogram = {
        entry["bucket"]: entry["count"]
        for entry in one_run(tmp_path, rows).report["durations"]["histogram"]
    }
    assert (histogram["< 1 s"], histogram["1 s – 10 s"], histogram["10 s – 1 min"]) == (1, 0, 1)
    assert sum(histogram.values()) == 2


def test_duration_percentiles_are_the_kth_smallest(tmp_path: Path) -> None:
    """Kills R06 (p{percent}_s index `ceil(p/100*n) - 1` -> `int(p/100*n)`): of two
    conversations, 0 s and 10 s, the median (k = 1 of 2) is 0 s; p90 and p99 are 10 s."""
    rows = _of_0_and_10_seconds()
    durations = one_run(tmp_path, rows).report["durations"]
    assert (
        durations["min_s"],
        durations["p50_s"],
        durations["p90_s"],
        durations["p99_s"],
        durations["max_s"],
    ) == (0.0, 0.0, 10.0, 10.0, 10.0)
    assert durations["hard_timeout_keeping_whole_s"]["50%"] == 1.0


# --- query/filters.py -------------------------------------------------------------------


def test_a_day_as_the_windows_end_stops_before_the_next_midnight() -> None:
    """Kills F03 (whole day `+ 1 day - 1 µs` -> `+ 1 day`): README, `window("2011-06-24",
    "2011-06-24")` is that day; a session opening at the next midnight is not in it."""
    frame = pd.DataFrame(
        {
            "session_id": ["day", "midnight", "before"],
            "opened_at": pd.to_datetime(
                ["2011-06-24T23:59:59.999999Z", "2011-06-25T00:00:00Z", "2011-06-23T10:00:00Z"],
                format="ISO8601",
            ),
            "last_seen_at": pd.to_datetime(
                ["2011-06-25T00:00:05Z", "2011-06-25T00:00:05Z", "2011-06-23T23:59:59.999999Z"],
                format="ISO8601",
            ),
        }
    )
    for end in ("2011-06-24", "2011/06/24"):
        mask = query.time_window(frame, "2011-06-24", end)
        assert frame.loc[mask, "session_id"].tolist() == ["day"]


def test_protocol_any_holds_protocol_255() -> None:
    """Kills F06 (`protocol(..., "any")` numbers `np.arange(256)` -> `np.arange(255)`):
    `any` is every protocol 0-255, as the Flow Matrix's `any` is."""
    frame = pd.DataFrame({"session_id": ["tcp", "top", "zero"], "protocol_number": [6, 255, 0]})
    assert query.protocol(frame, "any").tolist() == [True, True, True]
    assert query.protocol(frame, "255").tolist() == [False, True, False]
