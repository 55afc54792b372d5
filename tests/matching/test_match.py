"""Flow Matrix matching: session_matches, matched_rules, and the "unmatched" anti-join."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from obserae_forensics.matching import (
    SESSION_MATCHES_SCHEMA,
    AddressSet,
    Cartography,
    FlowMatrix,
    Rule,
    Service,
    load_cartography,
    load_flow_matrix,
    match_sessions,
    matched_rules_column,
)
from obserae_forensics.matching.match import answers_alone_of
from obserae_forensics.query import answers_alone
from obserae_forensics.schema import SESSIONS_SCHEMA

from .session_tables import make_sessions, sessions_from_nfdump_csv

CARTOGRAPHY = """\
hosts:
  server131:
    addresses: [172.16.238.131]
    services: [tcp/21-22, tcp/80]
  resolver: 172.16.238.2
  gateway: 172.16.238.1
networks:
  lab: [172.16.238.0/24]
  link-local: ["fe80::/64"]
groups:
  admins: [gateway]
  admin-sources: [admins]          # nested twice: admin-sources -> admins -> gateway
  both-families: [lab, link-local]
"""

MATRIX = """\
rules:
  - name: dns
    source: lab
    destination: resolver
    protocol: udp
    ports: 53
  - name: dns-backwards             # the resolver as client: wrong direction, no match
    source: resolver
    destination: lab
    protocol: udp
    ports: 53
  - name: admin
    source: admin-sources
    destination: server131
    protocol: tcp
    ports: 20-23                    # a range: SSH and FTP, not HTTP
  - name: anything-to-resolver     # overlaps dns: DNS sessions match both
    source: both-families
    destination: resolver
    protocol: any
  - name: mdns6
    source: link-local
    destination: ff02::/16
    protocol: udp
    ports: [5353]
  - name: mdns4
    source: lab
    destination: multicast
    protocol: udp
    ports: [5353-5353]
"""


@pytest.fixture(scope="module")
def varsvc_sessions(corpus: Path) -> pa.Table:
    """Sessions of zeek's var-services trace as softflowd exported it (corpus oracle)."""
    return sessions_from_nfdump_csv(corpus / "oracle" / "sf_v9_varsvc.csv")


@pytest.fixture
def matrix(tmp_path: Path) -> FlowMatrix:
    (tmp_path / "c.yaml").write_text(CARTOGRAPHY)
    (tmp_path / "m.yaml").write_text(MATRIX)
    return load_flow_matrix(tmp_path / "m.yaml", load_cartography(tmp_path / "c.yaml"))


def with_rules(sessions: pa.Table, matches: pa.Table) -> pa.Table:
    column = matched_rules_column(sessions, matches)
    index = sessions.schema.get_field_index("matched_rules")
    return sessions.set_column(index, SESSIONS_SCHEMA.field("matched_rules"), column)


def described(sessions: pa.Table) -> dict[str, list[str]]:
    """client:port->server:port/protocol -> matched rules."""
    return {
        f"{r['client_ip']}:{r['client_port']}->{r['server_ip']}:{r['server_port']}"
        f"/{r['protocol']}": r["matched_rules"]
        for r in sessions.to_pylist()
    }


def test_rules_over_real_sessions(varsvc_sessions: pa.Table, matrix: FlowMatrix) -> None:
    matches = match_sessions(varsvc_sessions, matrix)
    assert matches.schema == SESSION_MATCHES_SCHEMA
    rules = described(with_rules(varsvc_sessions, matches))
    assert len(rules) == 38
    dns = {k: v for k, v in rules.items() if k.endswith("172.16.238.2:53/UDP")}
    assert len(dns) == 27
    assert all(v == ["dns", "anything-to-resolver"] for v in dns.values())  # several rules
    assert rules["172.16.238.1:49656->172.16.238.131:22/TCP"] == ["admin"]
    assert rules["172.16.238.1:49659->172.16.238.131:21/TCP"] == ["admin"]
    assert rules["172.16.238.1:49657->172.16.238.131:80/TCP"] == []  # outside the range
    assert rules["fe80::20c:29ff:febd:6f01:5353->ff02::fb:5353/UDP"] == ["mdns6"]
    assert rules["172.16.238.1:5353->224.0.0.251:5353/UDP"] == ["mdns4"]
    assert rules["172.16.238.131:5353->224.0.0.251:5353/UDP"] == ["mdns4"]
    assert "dns-backwards" not in set(matches.column("rule").to_pylist())
    assert matches.num_rows == 27 * 2 + 2 + 1 + 2


def test_a_rule_in_the_other_direction_does_not_match(varsvc_sessions: pa.Table) -> None:
    cartography = Cartography.builtin()
    backwards = FlowMatrix(
        (
            Rule(
                0,
                "ssh-in",
                source=cartography.resolve("172.16.238.131"),
                destination=cartography.resolve("172.16.238.1"),
                service=Service((6,), ((22, 22),)),
            ),
        )
    )
    assert match_sessions(varsvc_sessions, backwards).num_rows == 0


def test_unmatched_closed_sessions_are_one_pandas_anti_join(
    varsvc_sessions: pa.Table, matrix: FlowMatrix
) -> None:
    sessions = varsvc_sessions.to_pandas()
    matches = match_sessions(varsvc_sessions, matrix).to_pandas()
    # the seed's "Sessions not covered by the Flow Matrix"
    unmatched = sessions[
        (sessions.state == "closed") & ~sessions.session_id.isin(matches.session_id)
    ]
    assert sorted(
        zip(unmatched.client_ip, unmatched.server_ip, unmatched.server_port, strict=True)
    ) == [
        ("172.16.238.1", "172.16.238.131", 80),
        ("172.16.238.1", "172.16.238.131", 80),
        ("172.16.238.131", "141.142.192.39", 22),  # outbound SSH: no rule for it
    ]
    # active sessions without a match exist, and the anti-join leaves them out
    active_unmatched = sessions[
        (sessions.state == "active") & ~sessions.session_id.isin(matches.session_id)
    ]
    assert len(active_unmatched) == 3  # Dropbox LAN sync, NTP, HTTP to 74.125.225.81


def test_unmatched_closed_sessions_with_the_bundled_example(
    varsvc_sessions: pa.Table, fixtures: Path
) -> None:
    cartography = load_cartography(fixtures / "cartography.yaml")
    matrix = load_flow_matrix(fixtures / "flow_matrix.yaml", cartography)
    sessions = varsvc_sessions.to_pandas()
    matches = match_sessions(varsvc_sessions, matrix).to_pandas()
    unmatched = sessions[
        (sessions.state == "closed") & ~sessions.session_id.isin(matches.session_id)
    ]
    assert unmatched[["client_ip", "server_ip", "server_port"]].values.tolist() == [
        ["172.16.238.1", "172.16.238.131", 21],  # FTP: left out of the example on purpose
        ["172.16.238.131", "141.142.192.39", 22],
    ]
    closed = sessions[sessions.state == "closed"]
    assert len(closed) == 6


def test_unmatched_closed_sessions_in_duckdb(varsvc_sessions: pa.Table, matrix: FlowMatrix) -> None:
    duckdb = pytest.importorskip("duckdb")
    sessions = varsvc_sessions  # noqa: F841 (read by DuckDB by name)
    session_matches = match_sessions(varsvc_sessions, matrix)  # noqa: F841
    rows = duckdb.sql(
        "SELECT count(*) FROM sessions WHERE state = 'closed' "
        "AND session_id NOT IN (SELECT session_id FROM session_matches)"
    ).fetchall()
    assert rows == [(3,)]


def session(session_id: str, client: str, server: str, **fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "session_id": session_id,
        "client_ip": client,
        "client_port": 40000,
        "server_ip": server,
        "server_port": 443,
    }
    row.update(fields)
    return row


def web_matrix() -> FlowMatrix:
    cartography = Cartography.builtin()
    return FlowMatrix(
        (
            Rule(0, "web", cartography.resolve("internal4"), cartography.resolve("internet4"),
                 Service((6,), ((443, 443),))),
            Rule(1, "any-out", cartography.resolve("any"), cartography.resolve("internet4"),
                 Service(None)),
        )
    )  # fmt: skip


def test_active_and_closed_sessions_match_half_open_ones_do_not() -> None:
    sessions = make_sessions(
        [
            session("s-closed", "10.0.0.1", "8.8.8.8", state="closed", opened_at=5, last_seen_at=9),
            session("s-active", "10.0.0.1", "8.8.8.8", state="active", opened_at=6),
            session("s-half", "10.0.0.1", "8.8.8.8", state="half_open", opened_at=7),
        ]
    )
    matches = match_sessions(sessions, web_matrix())
    assert [(r["session_id"], r["rule"], r["rule_index"]) for r in matches.to_pylist()] == [
        ("s-closed", "web", 0),
        ("s-closed", "any-out", 1),
        ("s-active", "web", 0),
        ("s-active", "any-out", 1),
    ]
    first = matches.to_pylist()[0]
    assert (first["opened_at"].timestamp(), first["last_seen_at"].timestamp()) == (5e-6, 9e-6)


def test_answers_nobody_was_seen_asking_for_match_and_are_told() -> None:
    """A review: DNS answers from port 53, echo replies and a SYN-ACK from 443 that the lab
    host never asked for have it as their client (their sender is the server) and match
    its outbound rules, as the contract has it ("every rule its client, server and service
    satisfy"), so "Unmatched only" never shows them. answers_alone tells them: sessions
    standing alone whose client sent nothing, not later fragments, late sessions or
    sampled ones, whose silence is their conversation's or sampling's."""
    client_sent = {"ab_packets": 1, "ab_bytes": 60}
    answers = {"ba_packets": 3, "ba_bytes": 180}
    b_side = {"ip_a": "8.8.8.8", "port_a": 443, "ip_b": "10.0.0.1", "port_b": 40000}
    sessions = make_sessions(
        [
            session("asked", "10.0.0.1", "8.8.8.8", **client_sent, **answers),
            session("unasked", "10.0.0.1", "8.8.8.8", **answers),
            # the client is b: its counters are ba's
            session("unasked-b", "10.0.0.1", "8.8.8.8", **b_side, ab_packets=3, ab_bytes=180),
            session("asked-b", "10.0.0.1", "8.8.8.8", **b_side, ba_packets=1, ba_bytes=60),
            session("later-fragment", "10.0.0.1", "8.8.8.8", split=1, **answers),
            session("late", "10.0.0.1", "8.8.8.8", late=True, **answers),
            session("sampled", "10.0.0.1", "8.8.8.8", sampling_rate=100, **answers),
        ]
    )  # fmt: skip
    matched = {row["session_id"] for row in match_sessions(sessions, web_matrix()).to_pylist()}
    assert len(matched) == 7
    told = answers_alone_of(sessions)
    ids = sessions.column("session_id").to_pylist()
    assert [sid for sid, t in zip(ids, told, strict=True) if t] == ["unasked", "unasked-b"]
    frame = sessions.to_pandas()
    assert answers_alone(frame).tolist() == told.tolist()


def test_matched_rules_follow_session_rows_and_rule_order() -> None:
    sessions = make_sessions(
        [
            session("a", "10.0.0.1", "8.8.8.8"),
            session("b", "8.8.8.8", "10.0.0.1"),  # inbound: no rule
            session("c", "10.0.0.2", "1.1.1.1", server_port=53, protocol_number=17),
        ]
    )
    matches = match_sessions(sessions, web_matrix())
    reversed_matches = matches.take(pa.array(range(matches.num_rows - 1, -1, -1)))
    column = matched_rules_column(sessions, reversed_matches)
    assert column.type == SESSIONS_SCHEMA.field("matched_rules").type
    assert column.to_pylist() == [["web", "any-out"], [], ["any-out"]]


def test_matches_naming_unknown_sessions_are_refused() -> None:
    sessions = make_sessions([session("a", "10.0.0.1", "8.8.8.8")])
    stray = match_sessions(sessions, web_matrix())
    with pytest.raises(ValueError, match="not in the sessions table"):
        matched_rules_column(make_sessions([session("b", "10.0.0.1", "8.8.8.8")]), stray)


def test_empty_inputs_give_empty_tables_with_the_schema() -> None:
    empty = match_sessions(SESSIONS_SCHEMA.empty_table(), web_matrix())
    assert empty.schema == SESSION_MATCHES_SCHEMA and empty.num_rows == 0
    sessions = make_sessions([session("a", "10.0.0.1", "8.8.8.8")])
    assert match_sessions(sessions, FlowMatrix(())).num_rows == 0
    assert matched_rules_column(sessions, empty).to_pylist() == [[]]
    assert matched_rules_column(SESSIONS_SCHEMA.empty_table(), empty).to_pylist() == []


def test_chunked_sessions_tables_match_like_one_chunk() -> None:
    rows = [session(f"s{i}", f"10.0.0.{i}", "8.8.4.4") for i in range(6)]
    one = make_sessions(rows)
    chunked = pa.concat_tables([make_sessions(rows[:2]), make_sessions(rows[2:])])
    assert chunked.column("session_id").num_chunks == 2
    assert match_sessions(chunked, web_matrix()).equals(match_sessions(one, web_matrix()))


POOL = ["10.0.0.1", "10.0.0.200", "10.0.1.5", "192.168.1.1", "8.8.8.8", "fd00::1",
        "fd00::1:0:0:1", "2001:db8::5", "::ffff:10.0.0.9"]  # fmt: skip
NETWORKS = ["10.0.0.0/24", "10.0.0.0/8", "10.0.0.128/25", "192.168.0.0/16", "0.0.0.0/0",
            "fd00::/64", "fd00::/16", "::/0", "8.8.8.8", "10.0.0.1"]  # fmt: skip
PORT_RANGES = [(22, 22), (50, 90), (443, 8080)]

rules_strategy = st.lists(
    st.tuples(
        st.lists(st.sampled_from(NETWORKS), min_size=1, max_size=3),
        st.lists(st.sampled_from(NETWORKS), min_size=1, max_size=3),
        st.sampled_from([None, (6,), (17,), (6, 17), (1,)]),
        st.one_of(st.none(), st.lists(st.sampled_from(PORT_RANGES), min_size=1, max_size=2)),
    ),
    max_size=6,
)
sessions_strategy = st.lists(
    st.tuples(
        st.sampled_from(POOL),
        st.sampled_from(POOL),
        st.sampled_from([1, 6, 17]),
        st.sampled_from([0, 22, 53, 80, 443, 8080, 9000]),
        st.sampled_from(["active", "closed", "half_open"]),
    ),
    max_size=25,
)


def reference_matches(
    sessions: list[tuple[str, str, int, int, str]], rules: list[tuple]
) -> list[tuple[int, int]]:
    """The same rules, one session and one rule at a time with the ipaddress module."""
    found = []
    for row, (client, server, protocol, port, state) in enumerate(sessions):
        for index, (sources, destinations, protocols, ports) in enumerate(rules):
            if protocols in (None, (1,)):
                ports = None
            inside = [
                any(within(address, network) for network in networks)
                for address, networks in ((client, sources), (server, destinations))
            ]
            if (
                state in ("active", "closed")
                and all(inside)
                and (protocols is None or protocol in protocols)
                and (ports is None or any(a <= port <= b for a, b in ports))
            ):
                found.append((row, index))
    return found


def within(address: str, network: str) -> bool:
    """Address in network, both as 128-bit numbers with IPv4 mapped (::ffff:0:0/96)."""

    def number(value: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
        return int(value) + (0xFFFF << 32 if value.version == 4 else 0)

    parsed = ipaddress.ip_network(network)
    first, last = number(parsed.network_address), number(parsed.broadcast_address)
    value = number(ipaddress.ip_address(address))
    mapped = ipaddress.ip_network("::ffff:0:0/96")
    if (
        parsed.version == 6
        and parsed.prefixlen < 96
        and parsed.supernet_of(mapped)
        and (int(mapped.network_address) <= value <= int(mapped.broadcast_address))
    ):
        return False  # an IPv6 CIDR wider than the mapped /96 holds no IPv4
    return first <= value <= last


@settings(max_examples=150, deadline=None)
@given(sessions_strategy, rules_strategy)
@example(  # overlapping port ranges once gave a session twice
    [("10.0.0.1", "10.0.0.1", 6, 22, "active")],
    [(["10.0.0.0/24"], ["10.0.0.0/24"], (6,), [(22, 22), (22, 22)])],
)
def test_vectorized_matching_agrees_with_a_plain_reference(
    sessions: list[tuple[str, str, int, int, str]], rules: list[tuple]
) -> None:
    table = make_sessions(
        [
            session(f"s{i}", client, server, protocol_number=protocol, server_port=port,
                    state=state)
            for i, (client, server, protocol, port, state) in enumerate(sessions)
        ]
    )  # fmt: skip
    matrix = FlowMatrix(
        tuple(
            Rule(
                index,
                f"rule{index}",
                AddressSet.from_networks(sources),
                AddressSet.from_networks(destinations),
                Service(
                    protocols, None if protocols in (None, (1,)) or not ports else tuple(ports)
                ),
            )
            for index, (sources, destinations, protocols, ports) in enumerate(rules)
        )
    )
    matches = match_sessions(table, matrix)
    rows = {f"s{i}": i for i in range(len(sessions))}
    got = [(rows[r["session_id"]], r["rule_index"]) for r in matches.to_pylist()]
    assert got == reference_matches(sessions, rules)


def test_answers_alone_reads_a_null_alike_in_arrow_and_pandas() -> None:
    """A table that does not keep the schema (edited, another tool's) may hold nulls: a
    null counter is 0 in both readings (Arrow read it as sent, pandas as not: a review)."""
    table = pa.table(
        {
            "client_ip": ["10.0.0.1", "10.0.0.1"],
            "client_port": [40000, 40000],
            "ip_a": ["10.0.0.1", "10.0.0.1"],
            "port_a": [40000, 40000],
            "ab_packets": pa.array([None, 1], pa.uint64()),
            "ba_packets": pa.array([3, 3], pa.uint64()),
            "ab_bytes": pa.array([0, 60], pa.uint64()),
            "ba_bytes": pa.array([180, 180], pa.uint64()),
            "split": pa.array([0, 0], pa.uint32()),
            "late": pa.array([False, None]),
            "sampling_rate": pa.array([None, 1], pa.uint32()),
        }
    )
    assert answers_alone_of(table).tolist() == [True, False]
    assert answers_alone(table.to_pandas()).tolist() == [True, False]
