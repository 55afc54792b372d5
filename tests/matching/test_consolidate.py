"""sessions_consolidated: one row per conversation across exporters."""

from __future__ import annotations

from pathlib import Path
from random import Random

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obserae_forensics.matching import SESSIONS_CONSOLIDATED_SCHEMA, consolidate_sessions
from obserae_forensics.matching.consolidate import Consolidation
from obserae_forensics.schema import SESSIONS_SCHEMA

from .session_tables import make_sessions, sessions_from_nfdump_csv

GRACE_US = 30_000_000
SAMPLING = 10
COUNTERS = ("ab_bytes", "ba_bytes", "ab_packets", "ba_packets")


def sampled(sessions: pa.Table, rate: int, *, scaled: bool = False) -> pa.Table:
    """The same sessions as a 1:rate sampling exporter reports them: counters / rate."""
    for name in COUNTERS:
        index = sessions.schema.get_field_index(name)
        kept = pc.divide(sessions.column(name), rate)
        if scaled:
            kept = pc.multiply(kept, rate)
        sessions = sessions.set_column(index, SESSIONS_SCHEMA.field(name), kept.cast(pa.uint64()))
    n = sessions.num_rows
    sessions = sessions.set_column(
        sessions.schema.get_field_index("sampling_rate"),
        SESSIONS_SCHEMA.field("sampling_rate"),
        pa.array([rate] * n, pa.uint32()),
    )
    return sessions.set_column(
        sessions.schema.get_field_index("counters_scaled"),
        SESSIONS_SCHEMA.field("counters_scaled"),
        pa.array([scaled] * n),
    )


def client_to_server(row: dict[str, object]) -> object:
    a_is_client = (row["client_ip"], row["client_port"]) == (row["ip_a"], row["port_a"])
    return row["ab_bytes"] if a_is_client else row["ba_bytes"]


@pytest.fixture(scope="module")
def two_exporters(corpus: Path) -> tuple[pa.Table, pa.Table]:
    """var-services sessions seen by an unsampled switch and a 1:10 sampling firewall."""
    oracle = corpus / "oracle" / "sf_v9_varsvc.csv"
    switch = sessions_from_nfdump_csv(oracle, exporter="192.0.2.1")
    firewall = sampled(sessions_from_nfdump_csv(oracle, exporter="192.0.2.2"), SAMPLING)
    return switch, firewall


def test_two_exporters_give_one_row_per_conversation(
    two_exporters: tuple[pa.Table, pa.Table],
) -> None:
    switch, firewall = two_exporters
    sessions = pa.concat_tables([switch, firewall])
    assert sessions.num_rows == 76  # sessions keeps both exporters' rows
    consolidated = consolidate_sessions(sessions, GRACE_US)
    assert consolidated.schema == SESSIONS_CONSOLIDATED_SCHEMA
    assert consolidated.num_rows == 38
    rows = consolidated.to_pylist()
    assert {r["sampler_count"] for r in rows} == {2}
    assert {tuple(r["exporters"]) for r in rows} == {("192.0.2.1", "192.0.2.2")}
    assert len({r["consolidated_id"] for r in rows}) == 38

    def by_endpoints(table: pa.Table) -> dict[tuple[object, ...], dict[str, object]]:
        return {
            (r["client_ip"], r["client_port"], r["server_ip"], r["server_port"]): r
            for r in table.to_pylist()
        }

    thin_rows = by_endpoints(firewall)
    expected = {}
    for key, full in by_endpoints(switch).items():
        thin = thin_rows[key]
        full_bytes = full["ab_bytes"] + full["ba_bytes"]
        thin_bytes = (thin["ab_bytes"] + thin["ba_bytes"]) * SAMPLING
        coherence = 100.0 * min(full_bytes, thin_bytes) / max(full_bytes, thin_bytes)
        cs = max(client_to_server(full), client_to_server(thin) * SAMPLING)
        expected[key] = (sorted([full["session_id"], thin["session_id"]]), coherence, cs)
    for row in rows:
        ids, coherence, cs = expected[
            (row["client_ip"], row["client_port"], row["server_ip"], row["server_port"])
        ]
        assert sorted(row["session_ids"]) == ids
        assert row["coherence_pct"] == pytest.approx(coherence)
        assert row["cs_bytes"] == cs
    # the sampling shows: 1:10 keeps a tenth of each counter, rounded down, so the scaled
    # totals fall short (a 71+71-byte DNS exchange comes back as 70+70: 98.6%)
    assert sum(r["coherence_pct"] < 100 for r in rows) >= 30
    assert all(0 < r["coherence_pct"] <= 100 for r in rows)


def test_counters_already_scaled_are_not_scaled_again(corpus: Path) -> None:
    oracle = corpus / "oracle" / "sf_v9_varsvc.csv"
    switch = sessions_from_nfdump_csv(oracle, exporter="192.0.2.1")
    nfcapd = sampled(sessions_from_nfdump_csv(oracle, exporter="192.0.2.3"), SAMPLING, scaled=True)
    consolidated = consolidate_sessions(pa.concat_tables([switch, nfcapd]), GRACE_US)
    totals = pc.sum(pc.add(switch.column("ab_bytes"), switch.column("ba_bytes"))).as_py()
    shown = pc.sum(pc.add(consolidated.column("cs_bytes"), consolidated.column("sc_bytes")))
    assert shown.as_py() == totals  # never more than the unsampled exporter saw
    assert max(consolidated.column("coherence_pct").to_pylist()) == 100.0


def test_a_single_exporter_is_coherent_with_itself(corpus: Path) -> None:
    sessions = sessions_from_nfdump_csv(corpus / "oracle" / "sf_v9_varsvc.csv")
    consolidated = consolidate_sessions(sessions, GRACE_US)
    assert consolidated.num_rows == sessions.num_rows
    assert set(consolidated.column("sampler_count").to_pylist()) == {1}
    assert set(consolidated.column("coherence_pct").to_pylist()) == {100.0}


def tcp(session_id: str, exporter: str, opened_s: float, last_s: float, **fields: object) -> dict:
    row: dict[str, object] = {
        "session_id": session_id,
        "exporter": exporter,
        "client_ip": "10.0.0.1",
        "client_port": 40000,
        "server_ip": "192.0.2.80",
        "server_port": 443,
        "opened_at": round(opened_s * 1e6),
        "last_seen_at": round(last_s * 1e6),
        "ab_bytes": 1000,
        "ba_bytes": 5000,
        "ab_packets": 10,
        "ba_packets": 20,
    }
    row.update(fields)
    return row


def reversed_view(row: dict) -> dict:
    """The same session as an exporter that took the server for the client reports it."""
    row = dict(row)
    row.update(
        client_ip=row["server_ip"],
        client_port=row["server_port"],
        server_ip=row["client_ip"],
        server_port=row["client_port"],
        ab_bytes=row["ba_bytes"],
        ba_bytes=row["ab_bytes"],
        ab_packets=row["ba_packets"],
        ba_packets=row["ab_packets"],
        role_method="first_sender",
        role_confidence=0.3,
    )
    return row


@pytest.mark.parametrize("sure_opens_first", [True, False])
def test_orientation_comes_from_the_most_confident_member(sure_opens_first: bool) -> None:
    """Whichever member opens first (the consolidate audit's C56: a row oriented by its
    first member by opened_at passed while the surer one opened first)."""
    sure_id, unsure_id = ("s1", "s2") if sure_opens_first else ("s2", "s1")
    sure_at, unsure_at = (("192.0.2.1", 0, 10), ("192.0.2.2", 1, 11))[
        :: 1 if sure_opens_first else -1
    ]
    sure = tcp(sure_id, *sure_at, role_method="tcp_syn", role_confidence=0.95)
    unsure = reversed_view(tcp(unsure_id, *unsure_at, ab_bytes=900, ba_bytes=4800))
    [row] = consolidate_sessions(make_sessions([unsure, sure]), GRACE_US).to_pylist()
    assert (row["client_ip"], row["client_port"], row["server_ip"], row["server_port"]) == (
        "10.0.0.1",
        40000,
        "192.0.2.80",
        443,
    )
    assert (row["role_method"], row["role_confidence"]) == ("tcp_syn", 0.95)
    assert (row["cs_bytes"], row["sc_bytes"], row["cs_packets"], row["sc_packets"]) == (
        1000,
        5000,
        10,
        20,
    )
    assert row["coherence_pct"] == pytest.approx(100 * 5700 / 6000)
    assert row["session_ids"] == ["s1", "s2"]
    assert row["first_seen"].timestamp() == 0 and row["last_seen"].timestamp() == 11


def test_spans_further_apart_than_the_grace_are_separate_conversations() -> None:
    sessions = make_sessions(
        [
            tcp("a", "192.0.2.1", 0, 10),
            tcp("b", "192.0.2.2", 39, 50),  # opens 29 s after a's last: within 30 s
            tcp("c", "192.0.2.1", 45, 60),  # overlaps b: chained to a through b
            tcp("d", "192.0.2.2", 91, 95),  # 31 s after the latest last_seen (60): new
        ]
    )
    rows = consolidate_sessions(sessions, GRACE_US).to_pylist()
    assert [r["session_ids"] for r in rows] == [["a", "b", "c"], ["d"]]
    assert [r["sampler_count"] for r in rows] == [2, 1]
    assert rows[0]["exporters"] == ["192.0.2.1", "192.0.2.2"]


def test_ports_tell_conversations_apart_except_for_icmp() -> None:
    sessions = make_sessions(
        [
            tcp("a", "192.0.2.1", 0, 10),
            tcp("b", "192.0.2.2", 0, 10, client_port=40001),
            tcp("p1", "192.0.2.1", 0, 5, protocol="ICMP", protocol_number=1, client_port=0,
                server_port=0, icmp_type=8, icmp_code=0),
            tcp("p2", "192.0.2.2", 0, 5, protocol="ICMP", protocol_number=1, client_port=7,
                server_port=9),
        ]
    )  # fmt: skip
    rows = consolidate_sessions(sessions, GRACE_US).to_pylist()
    assert sorted(tuple(r["session_ids"]) for r in rows) == [("a",), ("b",), ("p1", "p2")]


def test_the_table_does_not_depend_on_row_order() -> None:
    rows = [
        tcp("a", "192.0.2.1", 0, 10),
        reversed_view(tcp("b", "192.0.2.2", 2, 12)),
        tcp("c", "192.0.2.1", 100, 110, client_ip="2001:db8::1", server_ip="2001:db8::2"),
        tcp("d", "192.0.2.2", 100, 110, client_ip="2001:db8::1", server_ip="2001:db8::2",
            role_confidence=0.95),
        tcp("e", "192.0.2.1", 5, 6, server_ip="192.0.2.81"),
    ]  # fmt: skip
    forward = consolidate_sessions(make_sessions(rows), GRACE_US)
    backward = consolidate_sessions(make_sessions(rows[::-1]), GRACE_US)
    assert forward.equals(backward)
    assert forward.column("first_seen").to_pylist() == sorted(
        forward.column("first_seen").to_pylist()
    )
    assert all(len(i) == 16 for i in forward.column("consolidated_id").to_pylist())


def test_no_bytes_at_all_is_full_coherence() -> None:
    sessions = make_sessions(
        [
            tcp("a", "192.0.2.1", 0, 1, ab_bytes=0, ba_bytes=0),
            tcp("b", "192.0.2.2", 0, 1, ab_bytes=0, ba_bytes=0),
        ]
    )
    [row] = consolidate_sessions(sessions, GRACE_US).to_pylist()
    assert row["coherence_pct"] == 100.0


def test_an_empty_sessions_table_gives_an_empty_table() -> None:
    empty = consolidate_sessions(SESSIONS_SCHEMA.empty_table(), GRACE_US)
    assert empty.schema == SESSIONS_CONSOLIDATED_SCHEMA and empty.num_rows == 0


ENDPOINTS = [("10.0.0.1", 40000), ("10.0.0.1", 40001), ("192.0.2.80", 443), ("2001:db8::1", 443)]
session_rows = st.lists(
    st.tuples(
        st.sampled_from(ENDPOINTS),
        st.sampled_from(ENDPOINTS),
        st.sampled_from([6, 17]),
        st.sampled_from(["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
        st.integers(0, 200),  # opened, s
        st.integers(0, 60),  # duration, s
        st.sampled_from([0.3, 0.5, 0.95]),
        st.integers(0, 10_000),
    ),
    max_size=30,
)


def reference_conversations(rows: list[tuple]) -> list[list[str]]:
    """Plain grouping: same protocol and endpoint pair, then a sweep by opened time."""
    groups: dict[tuple, list[tuple[int, int, str]]] = {}
    for i, (a, b, protocol, _, opened, duration, _, _) in enumerate(rows):
        key = (protocol, frozenset([a, b]))
        groups.setdefault(key, []).append((opened, opened + duration, f"s{i:02d}"))
    conversations = []
    for members in groups.values():
        members.sort()
        current: list[str] = []
        reach = None
        for opened, last, name in members:
            if reach is not None and opened > reach + GRACE_US // 1_000_000:
                conversations.append(sorted(current))
                current, reach = [], None
            current.append(name)
            reach = last if reach is None else max(reach, last)
        conversations.append(sorted(current))
    return sorted(conversations)


@settings(max_examples=100, deadline=None)
@given(session_rows, st.randoms(use_true_random=False))
def test_consolidation_agrees_with_a_plain_grouping(rows: list[tuple], shuffler: Random) -> None:
    table_rows = [
        tcp(f"s{i:02d}", exporter, opened, opened + duration, client_ip=a[0], client_port=a[1],
            server_ip=b[0], server_port=b[1], protocol_number=protocol,
            protocol="TCP" if protocol == 6 else "UDP", role_confidence=confidence,
            ab_bytes=size)
        for i, (a, b, protocol, exporter, opened, duration, confidence, size) in enumerate(rows)
    ]  # fmt: skip
    consolidated = consolidate_sessions(make_sessions(table_rows), GRACE_US)
    found = consolidated.to_pylist()
    assert sorted(sorted(r["session_ids"]) for r in found) == reference_conversations(rows)
    exporters_of = {f"s{i:02d}": row[3] for i, row in enumerate(rows)}
    for row in found:
        assert row["exporters"] == sorted({exporters_of[s] for s in row["session_ids"]})
        assert row["sampler_count"] == len(row["exporters"])
        assert 0 <= row["coherence_pct"] <= 100
    shuffler.shuffle(table_rows)
    assert consolidate_sessions(make_sessions(table_rows), GRACE_US).equals(consolidated)


def test_session_ids_held_by_several_sessions_are_counted() -> None:
    """The run's uniqueness check: copies of an id meet in the grouping of their key."""
    consolidation = Consolidation(GRACE_US)
    sessions = make_sessions(
        [
            tcp("same", "192.0.2.1", 0, 10),
            tcp("same", "192.0.2.1", 20, 30),
            tcp("other", "192.0.2.1", 40, 50),
            tcp("alone", "192.0.2.1", 0, 1, client_port=40001),
        ]
    )
    rows, _ = consolidation.rows(sessions, 1)
    consolidation.consolidate(rows)
    assert (consolidation.repeated_session_ids, consolidation.repeated_examples) == (1, ["same"])
    unique = Consolidation(GRACE_US)
    unique.consolidate(
        unique.rows(
            make_sessions([tcp("a", "192.0.2.1", 0, 10), tcp("b", "192.0.2.1", 20, 30)]), 1
        )[0]
    )
    assert unique.repeated_session_ids == 0


def test_counters_past_2_64_stop_at_the_ceiling() -> None:
    """Found by an audit: a damaged counter near 2**64 at 1:100 sampling wrapped around to
    another number (logstash's Mikrotik capture: ab_bytes 13814858835926960441 gave
    cs_bytes 16426822138189224516), as did two of one exporter's sessions summed."""
    ceiling = 2**64 - 1
    sessions = make_sessions(
        [
            tcp("a", "192.0.2.1", 0, 10, ab_bytes=13814858835926960441, sampling_rate=100),
            tcp("b", "192.0.2.2", 0, 10, ab_bytes=2**63, ab_packets=2**63 + 1),
            tcp("c", "192.0.2.2", 20, 30, ab_bytes=2**63, ab_packets=2**63),
        ]
    )
    [row] = consolidate_sessions(sessions, GRACE_US).to_pylist()
    # the unsampled exporter's counts, b's and c's summed, beat a's estimate
    assert (row["cs_bytes"], row["cs_packets"]) == (ceiling, ceiling)
    assert row["sc_bytes"] == 2 * 5000
    assert row["coherence_pct"] == pytest.approx(100.0)
    [alone] = consolidate_sessions(sessions.slice(0, 1), GRACE_US).to_pylist()
    assert (alone["cs_bytes"], alone["sc_bytes"]) == (ceiling, 5000 * 100)


def test_an_exact_count_beats_a_sampled_estimate(fixtures: Path, tmp_path: Path) -> None:
    """softflowd -s 10 (1:10 packet sampling, exporter 192.0.2.61) and unsampled
    (192.0.2.62) over the same capture. Found by a review: each direction took the largest
    exporter total, so a 1:10 estimate won over the exact count: one 58-byte DNS query
    read as 10 packets and 580 bytes, and the table held 819,747 bytes of 638,797."""
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    run = tmp_path / "run"
    arguments = ["sessionize", str(fixtures / "sampled"), "--replay", "event", "-o", str(run)]
    result = CliRunner().invoke(app, [*arguments, "-q"])
    assert result.exit_code == 0, result.output
    sessions = pq.read_table(run / "sessions.parquet").to_pylist()
    consolidated = pq.read_table(run / "sessions_consolidated.parquet").to_pylist()
    exact = [s for s in sessions if s["exporter"] == "192.0.2.62"]
    assert {s["sampling_rate"] for s in exact} == {1}
    assert {s["sampling_rate"] for s in sessions if s["exporter"] == "192.0.2.61"} == {10}
    assert sum(r["sampler_count"] == 2 for r in consolidated) == 24
    # every conversation is the unsampled exporter's session, counted as it counted it
    assert len(consolidated) == len(exact) == 39
    for name in ("bytes", "packets"):
        shown = sum(r[f"cs_{name}"] + r[f"sc_{name}"] for r in consolidated)
        assert shown == sum(s[f"ab_{name}"] + s[f"ba_{name}"] for s in exact)
    assert sum(r["cs_bytes"] + r["sc_bytes"] for r in consolidated) == 638_797
    [query] = [r for r in consolidated if r["client_port"] == 56346 and r["server_port"] == 53]
    assert (query["cs_packets"], query["cs_bytes"], query["sampler_count"]) == (1, 58, 2)
    # the rates: of the counters shown (counts), and the coarsest among the members
    both = [r for r in consolidated if r["sampler_count"] == 2]
    assert {(r["cs_sampling_rate"], r["sc_sampling_rate"]) for r in both} == {(1, 1)}
    assert {r["max_sampling_rate"] for r in both} == {10}
    alone = [r for r in consolidated if r["sampler_count"] == 1]
    assert {r["max_sampling_rate"] for r in alone} == {1}


def test_each_direction_comes_from_one_exporter_that_saw_it() -> None:
    """Asymmetric routing: the unsampled exporter saw the client's half only, so the
    server's half is the 1:10 exporter's estimate. Bytes and packets of a direction come
    from one exporter: of equal rates, the most bytes."""
    sessions = make_sessions(
        [
            tcp(
                "exact", "192.0.2.1", 0, 10, ab_bytes=1200, ab_packets=10, ba_bytes=0, ba_packets=0
            ),
            tcp("rough", "192.0.2.2", 0, 10, ab_bytes=150, ab_packets=2, sampling_rate=10),
            tcp(
                "other", "192.0.2.3", 0, 10, ab_bytes=1100, ab_packets=12, ba_bytes=0, ba_packets=0
            ),
        ]
    )
    [row] = consolidate_sessions(sessions, GRACE_US).to_pylist()
    assert (row["cs_bytes"], row["cs_packets"]) == (1200, 10)  # not 1500 nor 12 packets
    assert (row["sc_bytes"], row["sc_packets"]) == (5000 * 10, 20 * 10)
    assert row["sampler_count"] == 3
    # the server's half is an estimate, said as such
    assert (row["cs_sampling_rate"], row["sc_sampling_rate"], row["max_sampling_rate"]) == (
        1,
        10,
        10,
    )
    # a session alone: its own rate where it counted something, 0 where nothing was seen
    [lone] = consolidate_sessions(sessions.slice(1, 1), GRACE_US).to_pylist()
    assert (lone["cs_sampling_rate"], lone["sc_sampling_rate"]) == (10, 10)
    silent = make_sessions(
        [tcp("q", "192.0.2.2", 0, 1, ba_bytes=0, ba_packets=0, sampling_rate=10)]
    )
    [one_way] = consolidate_sessions(silent, GRACE_US).to_pylist()
    assert (one_way["cs_sampling_rate"], one_way["sc_sampling_rate"]) == (10, 0)


def _one_row(*rows: dict[str, object]) -> dict[str, object]:
    [row] = consolidate_sessions(make_sessions(list(rows)), GRACE_US).to_pylist()
    return row


def test_a_direction_counted_in_bytes_or_packets_alone_is_counted() -> None:
    """A mutation audit: a direction is the exporter's when it counted bytes or packets
    there; one that counted packets alone (an exporter without octet counters) or bytes
    alone still beats a coarser estimate, and a direction nobody counted has rate 0."""
    estimate = {"ab_bytes": 1000, "ab_packets": 10, "sampling_rate": 10}
    bytes_only = _one_row(
        tcp("a", "192.0.2.1", 0, 10, ab_bytes=500, ab_packets=0),
        tcp("b", "192.0.2.2", 0, 10, **estimate),
    )
    assert (bytes_only["cs_bytes"], bytes_only["cs_packets"]) == (500, 0)
    assert bytes_only["cs_sampling_rate"] == 1
    packets_only = _one_row(
        tcp("a", "192.0.2.1", 0, 10, ab_bytes=0, ab_packets=3),
        tcp("b", "192.0.2.2", 0, 10, **estimate),
    )
    assert (packets_only["cs_bytes"], packets_only["cs_packets"]) == (0, 3)
    silent = {"ba_bytes": 0, "ba_packets": 0}
    one_way = _one_row(
        tcp("a", "192.0.2.1", 0, 10, **silent), tcp("b", "192.0.2.2", 0, 10, **silent)
    )
    assert (one_way["sc_bytes"], one_way["sc_packets"], one_way["sc_sampling_rate"]) == (0, 0, 0)
    # a session alone: its rate where it counted bytes or packets
    lone = _one_row(tcp("q", "192.0.2.2", 0, 1, ab_bytes=100, ab_packets=0, ba_bytes=0,
                        ba_packets=2, sampling_rate=10))  # fmt: skip
    assert (lone["cs_sampling_rate"], lone["sc_sampling_rate"], lone["max_sampling_rate"]) == (
        10,
        10,
        10,
    )
    # a rate of 0 (unknown, as an exporter may send it) is a count: 1
    unknown = _one_row(tcp("u", "192.0.2.2", 0, 1, sampling_rate=0))
    assert (unknown["cs_sampling_rate"], unknown["max_sampling_rate"]) == (1, 1)


def test_an_exporter_is_as_precise_as_its_coarsest_session() -> None:
    """A mutation audit: exporter a's two fragments of one conversation, counted, then
    sampled 1 in 10, make an estimate, which b's smaller count beats."""
    row = _one_row(
        tcp("a1", "192.0.2.1", 0, 10, ab_bytes=9000, ab_packets=90),
        tcp("a2", "192.0.2.1", 20, 30, ab_bytes=9000, ab_packets=9, sampling_rate=10),
        tcp("b", "192.0.2.2", 0, 30, ab_bytes=4000, ab_packets=40),
    )
    assert (row["cs_bytes"], row["cs_packets"], row["cs_sampling_rate"]) == (4000, 40, 1)
    assert row["max_sampling_rate"] == 10
