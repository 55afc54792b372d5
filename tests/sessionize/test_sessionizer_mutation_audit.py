"""Behaviour of sessionizer.py, output.py and reference.py that no test pinned, found by a
mutation audit: the forty-first session's audit of sessionizer.py, output.py and
reference.py, 75 changes, 16 unnoticed, 16 real gaps, 0 equivalent (among those run;
changes argued equivalent were not run: dropping `& self.alive` in `_Held.pick`, since an
emitted owner never comes back; `finish(count - 1)`, since every row of one finish shares
its emit; the exporter names sorted in reverse, which keeps texts, seeds and codes
consistent; reference.py `src <= dst` -> `<`, which for a record from an endpoint to
itself only swaps two equal endpoints; `_HELD_BATCHES`, the merge threshold and the
gather path, which change cost, not output). 10 of the 16 are in reference.py, the oracle
the kernel is compared with: each test here runs on both engines and pins the exact
expected output, so the reference can no longer drift at a boundary where the hypothesis
comparison never lands. Each test's docstring names the change it kills. Five of the
reference's (R02, R06, R08, R22, R23: the deep bound, the stray bound, a late record at
exactly idle, a closed session's expiry, the 4,096 records of a late session's memory)
are the twins of the kernel's K15, K19, K04, K12 and K11, and the tests of
tests/sessionize/test_kernel_mutation_audit.py that kill those, run on the reference
engine, fail with them too: they are named there and not repeated here."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from obserae_forensics.sessionize import SessionPolicy
from obserae_forensics.times import TIME_LIMIT_US

from .scenario import RST, SECOND, at, by_key, documented_id, rec, run, tick

pytestmark = pytest.mark.parametrize("engine", ["numba", "reference"])
A, B, C, D = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"


# -- sessionizer.py: feed() ---------------------------------------------------------------
def test_a_record_at_exactly_minus_the_time_limit_is_replayed(engine: str) -> None:
    """Kills S02 (`feed()` `times.min() < -TIME_LIMIT_US` -> `<=`): the readers keep times
    within ±TIME_LIMIT_US and the sessionizer refuses only what lies beyond; a record at
    the lower limit itself (an exporter clock at its earliest) is replayed."""
    edge = {**rec(0), "first_seen": -TIME_LIMIT_US, "last_seen": -TIME_LIMIT_US + 10_000_000}
    sessions, flows, _ = run([edge], engine=engine)
    assert sessions.num_rows == 1 and flows.num_rows == 1
    assert sessions.column("opened_at").cast("int64").to_pylist() == [-TIME_LIMIT_US]
    beyond = {**edge, "first_seen": -TIME_LIMIT_US - 1}
    with pytest.raises(ValueError, match="TIME_LIMIT_US"):
        run([beyond], engine=engine)


# -- sessionizer.py: --replay event -----------------------------------------------------------
def test_event_replay_breaks_first_seen_ties_by_arrival(engine: str) -> None:
    """Kills S03 (`_replay_waiting` ties on first_seen by reverse arrival): sessions.md,
    `--replay event` sorts by first_seen, "ties by arrival". Two records of one
    conversation sent by one side at one instant: the first to arrive gives the session
    its observation domain (the first record's, as in arrival replay)."""
    records = [
        rec(5, 6, proto=17, domain=7),
        rec(5, 7, proto=17, domain=3),
        rec(1, 2, src=C, dst=D, proto=17),
    ]
    sessions, _, _ = run(records, SessionPolicy(replay="event"), engine=engine)
    [s] = [s for s in sessions.to_pylist() if s["ip_a"] == A]
    assert (s["exporter_domain"], s["flow_count"]) == (7, 2)


def test_event_replay_keeps_each_record_with_its_exporter(engine: str) -> None:
    """Kills S04 (`_replay_waiting` replays the sorted records with the exporters of the
    unsorted ones): sessions never mix exporters (sessions.md, "Words"). Sorted by
    first_seen, records of two exporters interleave differently than they arrived."""
    records = [
        rec(30, proto=17, exporter="192.0.2.1"),
        rec(31, proto=17, exporter="192.0.2.1"),
        rec(0, proto=17, exporter="198.51.100.7"),
        rec(1, proto=17, exporter="198.51.100.7"),
    ]
    sessions, flows, _ = run(records, SessionPolicy(replay="event"), engine=engine)
    got = sorted((s["exporter"], s["opened_at"], s["flow_count"]) for s in sessions.to_pylist())
    assert got == [("192.0.2.1", at(30), 2), ("198.51.100.7", at(0), 2)]
    by_id = {s["session_id"]: s["exporter"] for s in sessions.to_pylist()}
    assert {(f["source_frame"], by_id[f["session_id"]]) for f in flows.to_pylist()} == {
        (0, "192.0.2.1"),
        (1, "192.0.2.1"),
        (2, "198.51.100.7"),
        (3, "198.51.100.7"),
    }


# -- sessionizer.py: the Cartography's questions ---------------------------------------------
def test_the_cartography_is_asked_about_port_0_for_a_protocol_without_ports(engine: str) -> None:
    """Kills S09 (`_declared` passes the record's port fields whatever the protocol):
    sessions.md, "Words", GRE and other protocols have no ports, so a service declared on
    the address alone (port 0) is asked about and found, whatever the record's port
    fields hold."""
    asked: list[tuple[int, int]] = []

    def services(
        addresses: npt.NDArray[np.uint8], protocols: npt.NDArray[np.uint8], ports: npt.NDArray[Any]
    ) -> npt.NDArray[np.bool_]:
        asked.extend(zip(protocols.tolist(), ports.tolist(), strict=True))
        return (addresses[:, 15] == 1) & (protocols == 47) & (ports == 0)

    records = [rec(0, proto=47, src=B, dst=A, sport=40000, dport=40001)]
    [s] = run(records, engine=engine, services=services)[0].to_pylist()
    assert set(asked) == {(47, 0)}
    assert (s["server_ip"], s["role_method"]) == (A, "cartography")


# -- output.py: ids -------------------------------------------------------------------------
def test_a_fragment_of_a_deep_first_fragment_names_it_as_its_conversation(engine: str) -> None:
    """Kills O21 (`_conversation_ids` hashes fragment 0 with dup 0): conversation_id is
    fragment 0's session_id (sessions.md, "Fragments"), dup included; a deep fragment 0
    (a record starting far behind the watermark, cut at once by hard_timeout) is numbered
    by its identity, and fragment 1 has to name that very id, or an analyst following the
    conversation finds no session of that id."""
    policy = SessionPolicy(hard_timeout_us=60 * SECOND)
    records = [tick(200), rec(0, 200, proto=17), rec(201, proto=17), tick(400)]
    sessions = by_key(run(records, policy, engine=engine)[0], "UDP")
    first, second = sorted(sessions, key=lambda s: s["split"])
    assert (first["split"], first["close_reason"], second["split"]) == (0, "hard_timeout", 1)
    assert first["session_id"] != documented_id((A, 40000), (B, 443), 0)  # deep: dup != 0
    assert second["conversation_id"] == first["session_id"] == first["conversation_id"]


# -- output.py / reference.py: counters and sampling -----------------------------------------
def test_a_sampling_rate_of_0_reads_as_unsampled(engine: str) -> None:
    """Kills O11 (`_session_numbers` writes the records' sampling rate as it is): the
    README, `sampling_rate` is 1-in-N, "1 = unsampled or unknown"; a rate of 0 fed from
    elsewhere would read as "every counter times 0" in consolidation."""
    [s] = run([rec(0, proto=17, sampling=0)], engine=engine)[0].to_pylist()
    assert s["sampling_rate"] == 1


def test_sampling_rate_is_the_largest_and_scaled_stays_once_seen(engine: str) -> None:
    """Kills R20 (reference.py `s.scaled |= ...` -> `=`, the last record's flag): README,
    a session's sampling_rate and counters_scaled are "of its records (largest rate if
    mixed)"; test_rules' scenario has the scaled record last, where the last one's flag is
    right too. Consolidation multiplies unscaled counters by the rate: a session whose
    scaled records came first read as unscaled, its scaled counters scaled again. (R19, the
    last record's rate, was caught by test_properties' kernel-against-reference only.)"""
    records = [rec(0, proto=17, sampling=100, scaled=True), rec(1, proto=17, sampling=10)]
    [s] = run(records, engine=engine)[0].to_pylist()
    assert (s["sampling_rate"], s["counters_scaled"]) == (100, True)


# -- reference.py: the rules' boundaries ------------------------------------------------------
def test_an_earlier_record_arriving_second_gives_the_session_its_domain(engine: str) -> None:
    """Kills R42 (reference.py keeps the first arrival's nonzero domain): exporter_domain,
    like icmp_type, is the earliest record's (the one that orients the session), not the
    first to arrive; an earlier record of domain 0 arriving second sets it to 0."""
    records = [rec(5, proto=17, domain=5), rec(3, proto=17, domain=0)]
    [s] = run(records, engine=engine)[0].to_pylist()
    assert (s["exporter_domain"], s["opened_at"], s["flow_count"]) == (0, at(3), 2)


def test_a_cut_fragment_is_remembered_at_most_an_hour_longer(engine: str) -> None:
    """Kills R24 (reference.py rule 5, a hard_timeout fragment remembered longer by the
    longest record without the hour's cap): after a two-hour record the fragment is
    forgotten an hour (plus idle and grace) after its last_seen, so a record continuing it
    later opens a conversation of its own (split 0) instead of fragment 1."""
    records = [
        rec(0, 899, proto=17),
        rec(0, 7200, proto=17, src=C, dst=D),
        rec(920, 7200, proto=17),
    ]
    sessions = by_key(run(records, engine=engine)[0], "UDP")
    mine = sorted((s for s in sessions if s["ip_a"] == A), key=lambda s: s["opened_at"])
    assert [(s["opened_at"], s["split"]) for s in mine] == [(at(0), 0), (at(920), 0)]
    assert mine[0]["close_reason"] == "hard_timeout"
    assert mine[1]["conversation_id"] == mine[1]["session_id"]


def test_the_smallest_idle_of_deep_can_be_idle_other(engine: str) -> None:
    """Kills R38 (reference.py's smallest idle without idle.other): rule 6, deep is
    "before W - (smallest idle) - grace", the smallest of all five idle timeouts. With
    idle.other at 2 s the smallest, a record starting at 37 s under W = 70 s is deep (dup
    by identity, not 0)."""
    policy = SessionPolicy(idle_other_us=2 * SECOND)
    records = [tick(100), rec(37, 100, src=A, dst=B, sport=40000, dport=53, proto=17)]
    [s] = by_key(run(records, policy, engine=engine)[0], "UDP")
    assert s["session_id"] != documented_id((A, 40000), (B, 53), 37)
    edge_records = [tick(100), {**records[1], "first_seen": 38 * SECOND}]
    [edge] = by_key(run(edge_records, policy, engine=engine)[0], "UDP")
    assert edge["session_id"] == documented_id((A, 40000), (B, 53), 38)


def test_a_session_repeating_a_closed_ones_opening_gets_the_next_dup(engine: str) -> None:
    """Kills R27 (reference.py rule 6 `dup = earlier dup + 1` -> `earlier dup`): a session
    of a key whose last closed session had the very same (opened_at, split, late) (here
    a record reaching back to the opening of a refused connection) takes dup 1, so the two
    get distinct session_ids; with dup 0 both rows carried one id, and every table citing
    it (flows, follows_session_id, consolidation, matches) named two sessions at once."""
    records = [
        rec(10, flags=RST),
        tick(41),
        rec(45),
        rec(10, 45),
    ]
    first, second = by_key(run(records, engine=engine)[0])
    assert (first["opened_at"], second["opened_at"]) == (at(10), at(10))
    assert first["session_id"] == documented_id((A, 40000), (B, 443), 10, proto=6)
    assert second["session_id"] == documented_id((A, 40000), (B, 443), 10, proto=6, dup=1)
