"""Behaviour of consolidation (matching/consolidate.py) and Flow Matrix matching
(matching/match.py) that no test pinned, found by a mutation audit (the thirty-ninth
session's: 93 small changes, 66 to consolidate.py (C01-C68, less C55 and C57) and 27 to
match.py (M01-M27); 36 of them no test in tests/matching or tests/test_mutation_audit.py
noticed, 17 of those real gaps, which the 21 test files that use either module missed too,
and 19 equivalent; C56 is killed by a case added to test_consolidate.py). Each test
fails with its change applied and names it; the ids are this audit's own
(tests/test_mutation_audit.py numbers its matching changes M01-M15 too).
Most gaps were a claim of the README that the tests only ever met on its easy side: the
most confident member opening first, the latest last_seen_at belonging to the last member,
sampling at 1:10 and 1:100 but never 1:2, one repeated session id at a time, too few
matches for an unstable sort to upset their rule order.

The 19 equivalent changes, and why no output can show them:

* C01 (every session through the grouping, not only pairs of several): a lone session's
  grouped row is its own row (own orientation, 100 % coherence, the same id); slower only.
* C11 (the low and high endpoint keys swapped): they are sort keys and compared for
  equality; `a_is_low` and `client_is_low` flip together, so `same_side` does not.
* C18 (first_seen = the first member's opened_at, not the least): members are in
  opened_at order, so the first is the earliest.
* C20 (conversations numbered without the high endpoint): the numbering only keeps a
  conversation's arrays together; the table is sorted by (first_seen, id) afterwards.
* C28 (the per-(conversation, exporter) sort not stable): sums stopped at the ceiling are
  min(sum, 2**64 - 1), whatever the order.
* C35 (`end - start > _SMALL_RUN` -> `>=`) and C36 (`_SMALL_RUN = 0`): both branches put a
  run of equal first_seen in (id, position) order.
* C45 (Vocabulary.recode codes every text it is given, used or not): codes never show,
  only the texts of the codes rows hold are rendered.
* C49 (`_pair_counts`' table at least n slots, not 2n): the probing still ends at the
  key or a free slot; slower only.
* C53 (ranks, not values, for tables of up to two ids): 16 lowercase hex digits sort as
  text as they do as numbers.
* C62 (no early return for no rows): the rest builds the same empty table.
* C68 (a portless protocol's server key + 1, not + 0): addresses are 65536 apart in the
  keys, so a constant under that changes no comparison; with both ends on one address, a
  portless session's client is always its a side.
* M02 (half-open sessions sent to the extra cell by their server, not their client): no
  address set holds that cell and every rule checks both sides.
* M05 (the least selective condition read, not the most) and M23 (the client side never
  the one read): every condition's rows hold all the matches, each checked in full.
* M06 (a rule's rows not sorted): the final stable sort orders them; a rule's rows are
  distinct (port ranges are merged, cell runs disjoint).
* M11 (cell runs one cell longer): more candidates, each checked in full.
* M18 (no early return when there are no rules): the rule loop finds nothing (the
  addresses are parsed for nothing: a malformed one, which the sessionizer never writes,
  would now be refused).
* M25 (the rows of each key not in row order): the rows read are sorted afterwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from obserae_forensics.ids import endpoint_pair_hashes, hash_words
from obserae_forensics.matching import (
    Cartography,
    FlowMatrix,
    Rule,
    Service,
    consolidate_sessions,
    match_sessions,
)
from obserae_forensics.matching.consolidate import Consolidation
from obserae_forensics.protocols import PORT_PROTOCOLS

from .session_tables import make_sessions
from .test_consolidate import GRACE_US, reversed_view, tcp
from .test_match import session

CEILING = 2**64 - 1


def consolidated(rows: list[dict[str, object]]) -> list[dict[str, Any]]:
    return consolidate_sessions(make_sessions(rows), GRACE_US).to_pylist()


# --- consolidate.py: the run's session id check ---------------------------------------


def repeated_ids(names: list[str], port: int = 40000) -> list[dict[str, object]]:
    """Two sessions of one endpoint pair under each name (a pair of its own per name)."""
    return [
        tcp(name, "192.0.2.1", opened, opened + 5, client_port=port + i)
        for i, name in enumerate(names)
        for opened in (0, 100)
    ]


def check_ids(consolidation: Consolidation, rows: list[dict[str, object]]) -> None:
    consolidation.consolidate(consolidation.rows(make_sessions(rows), 1)[0])


def test_every_repeated_id_counts_and_five_examples_are_kept_in_text_order() -> None:
    """Kills C04 (`max(5 - len(examples), 0)` -> `max(4 - ...)`), C05
    (`repeated_session_ids += len(repeated)` -> `+= 1`) and C06 (the new examples not
    sorted): README, run manifest, `session_ids` holds "how many ids more than one session
    holds, with up to five examples"; sorted, the examples do not depend on which order the
    sessions came in."""
    consolidation = Consolidation(GRACE_US)
    check_ids(consolidation, repeated_ids(["f", "e", "d", "c", "b", "a"]))
    assert consolidation.repeated_session_ids == 6
    assert consolidation.repeated_examples == ["a", "b", "c", "d", "e"]


def test_examples_add_up_to_five_over_buckets() -> None:
    """Kills C04 (`max(5 - len(examples), 0)` -> `max(4 - ...)`) and C05 (`+= 1`): one
    Consolidation sees a run's buckets one after the other; the count goes on and the
    examples stop at five."""
    consolidation = Consolidation(GRACE_US)
    check_ids(consolidation, repeated_ids(["z", "y", "x"]))
    assert (consolidation.repeated_session_ids, consolidation.repeated_examples) == (
        3,
        ["x", "y", "z"],
    )
    check_ids(consolidation, repeated_ids(["c", "b", "a"], port=50000))
    assert consolidation.repeated_session_ids == 6
    assert consolidation.repeated_examples == ["x", "y", "z", "a", "b"]


# --- consolidate.py: the grouping ------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "name"), [(6, "TCP"), (17, "UDP"), (132, "SCTP"), (136, "UDPLite")]
)
def test_a_host_talking_to_itself_is_oriented_by_port(protocol: int, name: str) -> None:
    """Kills C08 (SCTP left out of the grouping's port protocols): README, endpoints are
    (address, port) for TCP, UDP, SCTP and UDP-Lite. With both ends on one address only
    the ports tell the client from the server, so an exporter that took the server for the
    client has its counters turned round to the row's client."""
    rows = [
        tcp("s1", "192.0.2.1", 0, 10, protocol=name, protocol_number=protocol,
            server_ip="10.0.0.1"),
        reversed_view(tcp("s2", "192.0.2.2", 1, 11, protocol=name, protocol_number=protocol,
                          server_ip="10.0.0.1", ab_bytes=900, ba_bytes=4800)),
    ]  # fmt: skip
    [row] = consolidated(rows)
    assert row["session_ids"] == ["s1", "s2"]
    assert (row["client_port"], row["server_port"]) == (40000, 443)
    assert (row["cs_bytes"], row["sc_bytes"]) == (1000, 5000)
    assert row["coherence_pct"] == pytest.approx(100 * 5700 / 6000)


def test_last_seen_is_the_latest_of_all_members_not_of_the_last_one() -> None:
    """Kills C19 (`last_seen` = the last_seen_at of the conversation's last member by
    opened_at): README, last_seen is the "latest last_seen_at"; a short session opened
    inside a long one ends first."""
    [row] = consolidated([tcp("long", "192.0.2.1", 0, 100), tcp("short", "192.0.2.2", 10, 20)])
    assert row["session_ids"] == ["long", "short"]
    assert (row["first_seen"].timestamp(), row["last_seen"].timestamp()) == (0, 100)


# C56 (the row oriented by its first member by opened_at, not its most confident) is killed
# by test_consolidate.py's test_orientation_comes_from_the_most_confident_member, with the
# surer member opening second.


def test_consolidated_ids_hash_the_protocol_the_pair_and_first_seen() -> None:
    """Kills C60 (a grouped conversation's id from its last_seen) and C61 (a lone
    session's id from its last_seen_at): README, consolidated_id is the "hash of protocol,
    the unordered endpoint pair and first_seen" (ids.hash_words of the three), so a
    conversation that goes on keeps its id."""
    sessions = make_sessions(
        [
            tcp("a", "192.0.2.1", 0, 10),
            tcp("b", "192.0.2.2", 5, 20),
            tcp("c", "192.0.2.1", 3, 8, client_port=40001),  # alone in its pair
        ]
    )
    pair = endpoint_pair_hashes(sessions, port_protocols=PORT_PROTOCOLS)
    words = np.array([[6, pair[0], 0], [6, pair[2], 3_000_000]], dtype=np.uint64)
    rows = consolidate_sessions(sessions, GRACE_US).to_pylist()
    assert [r["session_ids"] for r in rows] == [["a", "b"], ["c"]]
    assert [r["consolidated_id"] for r in rows] == [f"{h:016x}" for h in hash_words(words)]


# --- consolidate.py: what is kept of each session ------------------------------------


def test_a_counter_just_under_the_ceiling_once_scaled_is_kept_exactly() -> None:
    """Kills C39 (`_scaled` `value > COUNTER_CEILING // scale` -> `>=`): README, only a
    scaled counter past 2**64 stops at 2**64 - 1; (2**64 - 1) // 100 at 1:100 is
    18446744073709551600, 15 short of it. Also kills C63 (ab_packets not scaled)."""
    largest = CEILING // 100
    [row] = consolidated(
        [tcp("a", "192.0.2.1", 0, 10, ab_bytes=largest, ab_packets=largest + 1, sampling_rate=100)]
    )
    assert row["cs_bytes"] == largest * 100 == CEILING - 15
    assert row["cs_packets"] == CEILING


def test_one_in_two_sampling_doubles_the_counters() -> None:
    """Kills C40 (`sampling_rate > 1` -> `> 2` before scaling) and C63 (ab_packets not
    scaled): README, "each session's counters times its sampling_rate", packets as bytes;
    1:2 is the smallest rate that scales."""
    [row] = consolidated([tcp("a", "192.0.2.1", 0, 10, sampling_rate=2)])
    assert (row["cs_bytes"], row["sc_bytes"], row["cs_packets"], row["sc_packets"]) == (
        2000,
        10000,
        20,
        40,
    )


@pytest.mark.parametrize(
    "ids",
    [
        ["0000000000000001", "000000000000000A"],  # 16 characters, not all lowercase hex
        ["0000000000000001", "00000000000000010"],  # 17 characters, the first 16 alike
    ],
)
def test_members_opened_together_are_listed_in_session_id_text_order(ids: list[str]) -> None:
    """Kills C47 (`_parse_hex` `bad < 16` -> `<= 16`) and C48 (`_parse_hex` length
    `!= 16` -> `< 16`): README, session_ids are "by opened_at then session_id"; only ids
    of exactly 16 lowercase hex digits are compared as numbers, anything else (hand-made
    tables) as text. Mutated, `000000000000000A` read as 0 and `00000000000000010` as 1."""
    for names in (ids, ids[::-1]):
        [row] = consolidated([tcp(name, f"192.0.2.{i}", 0, 10) for i, name in enumerate(names)])
        assert row["session_ids"] == ids


def test_a_text_of_several_bytes_per_character_comes_back_whole() -> None:
    """Kills C59 (Vocabulary.strings, one text: offsets stepped by the text's characters,
    not its bytes): the texts of a table with one exporter, protocol or role method are
    rendered without a take, and must come back as they went in."""
    [row] = consolidated([tcp("a", "192.0.2.1", 0, 10, role_method="méthode_à_part")])
    assert row["role_method"] == "méthode_à_part"


# --- match.py ---------------------------------------------------------------------------


def open_rules(*services: Service) -> FlowMatrix:
    """A rule per service, from any address to any address."""
    anywhere = Cartography.builtin().resolve("any")
    return FlowMatrix(
        tuple(
            Rule(index, f"rule{index}", anywhere, anywhere, service)
            for index, service in enumerate(services)
        )
    )


def matched(sessions: pa.Table, matrix: FlowMatrix) -> list[tuple[str, str]]:
    return [(r["session_id"], r["rule"]) for r in match_sessions(sessions, matrix).to_pylist()]


def test_a_rule_on_any_service_matches_protocol_255() -> None:
    """Kills M12 (`_service_key_ranges` of any service up to `0xFE_FFFF`, not
    `0xFF_FFFF`): a protocol is a number 0-255 (README), and a service of any protocol
    takes them all. Mutated, the service looked the most selective side (one session
    fewer) and only its rows were read."""
    sessions = make_sessions(
        [
            session("tcp", "10.0.0.1", "8.8.8.8"),
            session("p255", "10.0.0.1", "8.8.8.8", protocol="255", protocol_number=255,
                    client_port=0, server_port=0),
        ]
    )  # fmt: skip
    assert matched(sessions, open_rules(Service(None))) == [("tcp", "rule0"), ("p255", "rule0")]


def test_a_service_without_ports_takes_port_65535() -> None:
    """Kills M14 (`_service_key_ranges` of a service without ports up to port 0xFFFE, not
    0xFFFF): README, a port is 0-65535, and `protocol: tcp` alone is every TCP port."""
    sessions = make_sessions(
        [
            session("top", "10.0.0.1", "8.8.8.8", server_port=65535),
            session("udp", "10.0.0.1", "8.8.8.8", protocol="UDP", protocol_number=17),
        ]
    )
    assert matched(sessions, open_rules(Service((6,)))) == [("top", "rule0")]


def test_matches_of_one_session_come_in_rule_order() -> None:
    """Kills M07 (`np.argsort(all_rows, kind="stable")` -> the default, unstable sort):
    session_matches is "in session row order then rule order" (match_sessions); rules are
    gathered one after the other, so only a stable sort by row keeps their order."""
    sessions = make_sessions(
        [session(f"s{i:03d}", f"10.0.{i // 256}.{i % 256}", "8.8.8.8") for i in range(300)]
    )
    matrix = open_rules(Service(None), Service((6,)), Service((6,), ((443, 443),)))
    expected = [(f"s{i:03d}", f"rule{k}") for i in range(300) for k in range(3)]
    assert matched(sessions, matrix) == expected
