"""Behaviour of sessionize/keys.py, row.py, inference.py and ids.py that no test pinned,
found by a mutation audit (the audit-keys branch's: 55 small changes, K01-K27 in keys.py,
D01-D11 in ids.py, I01-I26 in inference.py and W03-W05 in row.py, each run against
tests/sessionize, tests/test_ids.py and tests/matching/test_consolidate_rows.py; 30 of them
no test there noticed, 3 of those (K18, K20, K24) only tests/test_cli.py's end-to-end
test_late_sessions_keep_their_ids_when_the_evidence_is_moved: 23 real gaps, killed here
with the 3 (I16 by a case added to test_rule_boundaries.py), and 4 equivalent). The
equivalent ones: I02 and I03 (rung 1's one-sided SYN tests `pure_syn & 1` / `pure_syn &
2` -> `pure_syn`: where the other side's SYN time is NO_TIME it sent no SYN, so its
pure-SYN bit is clear), D08 (pair_hash_values keeping
`port_b` for portless protocols: every sessions table the package writes or reads carries
port 0 for them, their key is addresses alone) and D10 (hash_words ignoring its
seed: no caller passes one). Each test fails with its change applied and names it; the
ladder's tests run the reference engine first, which calls the very inference.py the
kernel compiles. The sessionizer's other Python-side audit is
tests/sessionize/test_mutation_audit.py (M01-M62), the kernel's rule boundaries are in
tests/sessionize/test_rule_boundaries.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from obserae_forensics.ids import endpoint_pair_hashes, pair_hash_values
from obserae_forensics.readers._batch import flow_batch
from obserae_forensics.sessionize.keys import evidence_root, identity_name, record_identities
from tests.sessionize.scenario import ACK, SYN, rec, run, tick

A, B = "10.0.0.1", "10.0.0.2"
# the reference engine first: it calls the very inference.py the kernel compiles, and a
# change there fails it without a minute of compiling
ENGINES = pytest.mark.parametrize("engine", ["reference", "numba"])
# keys.REGISTERED_SERVICE_PORTS as the audit found it, written out: a port dropped from the
# table must fail a test, not drop out of it
REGISTERED = (
    1080, 1194, 1433, 1434, 1521, 1701, 1723, 1812, 1813, 1883, 2049, 2181, 2375, 2376,
    3128, 3268, 3269, 3306, 3389, 3478, 4369, 4500, 4789, 5060, 5061, 5222, 5353, 5432,
    5601, 5671, 5672, 5900, 5985, 5986, 6379, 6443, 6514, 6667, 6697, 8000, 8008, 8080,
    8081, 8443, 8883, 8888, 9000, 9042, 9090, 9092, 9093, 9200, 9300, 9418, 11211, 27017,
)  # fmt: skip


def provenance(offsets: list[int], indices: list[int], files: pa.Array | str) -> pa.RecordBatch:
    """A FLOW_SCHEMA batch whose records differ only in where their bytes are."""
    n = len(offsets)
    batch = flow_batch(
        n,
        {
            "source_offset": np.array(offsets, dtype=np.uint64),
            "record_index": np.array(indices, dtype=np.uint32),
        },
        exporter="192.0.2.1",
        source_file=files if isinstance(files, str) else "unused",
    )
    if isinstance(files, str):
        return batch
    return batch.set_column(batch.schema.get_field_index("source_file"), "source_file", files)


# --- keys.py: the key -----------------------------------------------------------------


@ENGINES
@pytest.mark.parametrize("proto", [132, 136])
def test_sctp_and_udp_lite_endpoints_carry_ports(engine: str, proto: int) -> None:
    """Kills K01 (`PORT_PROTOCOLS` without 136) and K02 (without 132): sessions.md, "Words",
    endpoints are (address, port) for TCP, UDP, SCTP and UDP-Lite; two SCTP (or UDP-Lite)
    associations between the same hosts on other ports are two sessions."""
    records = [
        rec(0, proto=proto, sport=40000, dport=5000),
        rec(1, proto=proto, sport=40001, dport=5000),
    ]
    sessions = run(records, engine=engine)[0].to_pylist()
    assert sorted((s["port_a"], s["port_b"]) for s in sessions) == [(40000, 5000), (40001, 5000)]


def test_the_kernel_keys_ports_of_the_port_protocols_only() -> None:
    """The kernel spells the port protocols out (numba reads no module tuple): for every
    protocol number, it keeps the ports exactly when protocols.PORT_PROTOCOLS, which the
    reference, the tables and recombine use, names it."""
    from obserae_forensics.protocols import PORT_PROTOCOLS
    from obserae_forensics.sessionize.kernel import _canonical

    kept = [
        proto
        for proto in range(256)
        if _canonical.py_func(proto, 0, 1, 40000, 0, 2, 443)[3] == 40000
    ]
    assert kept == sorted(PORT_PROTOCOLS)


# --- keys.py: known service ports -------------------------------------------------------


@ENGINES
def test_every_registered_server_port_and_port_1_are_service_ports(engine: str) -> None:
    """Kills K04 (27017 dropped from REGISTERED_SERVICE_PORTS), K05 (1080 dropped) and K07
    (`table[1:1024]` -> `table[2:1024]`): README, server side rung 3, a known service port
    is one "1 to 1023, or a registered server port" (keys.py lists them: SOCKS, OpenVPN,
    the databases, RDP, SIP, AMQP, MQTT, the web ports above 1023, ...); a reply from any of
    them to an ephemeral port names its sender the server at 0.70."""
    ports = [1, *REGISTERED]
    records = [
        rec(i, proto=17, src=f"10.1.{i // 250}.{i % 250 + 1}", sport=port, dst=A, dport=50000)
        for i, port in enumerate(ports)
    ]
    sessions = run(records, engine=engine)[0].to_pylist()
    assert len(sessions) == len(ports)
    shown = {(s["server_port"], s["client_port"], s["role_method"]) for s in sessions}
    assert shown == {(port, 50000, "service_port") for port in ports}


@ENGINES
def test_port_0_is_neither_a_service_port_nor_an_ephemeral_one(engine: str) -> None:
    """Kills K06 (`table[1:1024]` -> `table[0:1024]`) and I13 (`port0 >= 1024` dropped
    from rung 3's second test): port 0 is no port a server listens on (an exporter
    writes it for IP fragments and portless records of a port protocol), and it is below
    1024, so not ephemeral either: no `service_port` evidence either way."""
    records = [
        rec(0, proto=17, src=B, sport=0, dst=A, dport=50000),
        rec(1, proto=17, src="10.0.0.3", sport=0, dst="10.0.0.4", dport=53),
    ]
    sessions = run(records, engine=engine)[0].to_pylist()
    assert {(s["ip_a"], s["client_ip"], s["role_method"]) for s in sessions} == {
        (B, B, "first_sender"),
        ("10.0.0.3", "10.0.0.3", "first_sender"),
    }


# --- keys.py: record identities ---------------------------------------------------------


def test_a_records_identity_tells_apart_its_offset_its_place_and_its_file() -> None:
    """Kills K18 (`record_index` left out of the identity) and K27 (every record hashed
    under the batch's first file's name): README, a late, stray or
    deep session's `dup` is its opening record's identity, "a hash of where its bytes
    are (the file's path ..., frame or block offset, place in it)"; two records of one
    datagram, of one offset in two datagrams, or of one place in two files are apart."""
    same_frame = record_identities(provenance([100, 100, 200], [0, 1, 0], "a.pcap"))
    assert len(set(same_frame.tolist())) == 3
    files = pa.DictionaryArray.from_arrays(
        pa.array([0, 1], pa.int32()), pa.array(["/evidence/a.pcap", "/evidence/b.pcap"])
    )
    two_files = record_identities(provenance([100, 100], [0, 0], files), "/evidence")
    assert two_files[0] != two_files[1]
    alone = [
        record_identities(provenance([100], [0], f"/evidence/{name}"), "/evidence")[0]
        for name in ("a.pcap", "b.pcap")
    ]
    assert two_files.tolist() == alone


def test_identities_name_files_below_the_root_whatever_the_path_to_it(tmp_path: Path) -> None:
    """Kills K20 (identity_name never relative to the root), K21 (`os.path.realpath` ->
    `os.path.abspath` in identity_name) and K24 (record_identities hashing the name as
    given, not identity_name's): README, the path "relative to the deepest directory
    holding all the run's inputs, links resolved in both"; evidence copied elsewhere, or
    named through a link, gives the same identities (a report cites late sessions' ids)."""
    tmp_path = Path(os.path.realpath(tmp_path))
    for place in ("case", "copy/elsewhere"):
        (tmp_path / place / "evidence").mkdir(parents=True)
        (tmp_path / place / "evidence" / "a.pcap").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "case" / "evidence")
    names = [
        (tmp_path / "case" / "evidence", tmp_path / "case" / "evidence" / "a.pcap"),
        (tmp_path / "copy/elsewhere/evidence", tmp_path / "copy/elsewhere/evidence/a.pcap"),
        (tmp_path / "case" / "evidence", tmp_path / "link" / "a.pcap"),
    ]
    for root, name in names:
        assert identity_name(str(name), str(root)) == "a.pcap"
    identities = {
        int(record_identities(provenance([24], [3], str(name)), str(root))[0])
        for root, name in names
    }
    assert len(identities) == 1


def test_the_evidence_root_is_the_real_directory_holding_the_inputs(tmp_path: Path) -> None:
    """Kills K22 (`os.path.realpath` -> `os.path.abspath` in evidence_root) and K23 (the
    inputs' own paths, not their directories, in evidence_root): one capture's root is
    its directory (so its name stays in its records' identities), and inputs named
    through a linked directory have the root they have by their own path."""
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    (tmp_path / "link").symlink_to(evidence)
    for name in ("a.pcap", "b.pcap"):
        (evidence / name).write_bytes(b"")
    real = os.path.realpath(evidence)
    assert evidence_root([evidence / "a.pcap"]) == real
    assert evidence_root([tmp_path / "link" / "a.pcap", tmp_path / "link" / "b.pcap"]) == real
    assert evidence_root([]) is None


# --- ids.py ---------------------------------------------------------------------------------


def test_a_pair_hash_is_one_whichever_side_is_a() -> None:
    """Kills D07 (`_pair_hashes` without its ordering of the two endpoints):
    ids.endpoint_pair_hashes gives "one value for a protocol and unordered endpoint pair,
    whichever side is a"; consolidation and recombine route sessions to buckets by it, so
    two exporters' sessions of one conversation, oriented apart (ip_a is whoever each saw
    send first), must meet in one bucket."""
    protocol = np.array([6, 17, 1])
    a = np.array([11, 11, 11], dtype=np.uint64)
    b = np.array([22, 22, 22], dtype=np.uint64)
    port_a = np.array([40000, 53, 0])
    port_b = np.array([443, 50000, 0])
    forward = pair_hash_values(protocol, a, port_a, b, port_b, port_protocols=(6, 17))
    backward = pair_hash_values(protocol, b, port_b, a, port_a, port_protocols=(6, 17))
    assert forward.tolist() == backward.tolist()
    table = pa.table(
        {
            "protocol_number": pa.array([6, 6], pa.uint8()),
            "ip_a": ["10.0.0.1", "10.0.0.2"],
            "port_a": pa.array([40000, 443], pa.uint16()),
            "ip_b": ["10.0.0.2", "10.0.0.1"],
            "port_b": pa.array([443, 40000], pa.uint16()),
        }
    )
    first, second = endpoint_pair_hashes(table).tolist()
    assert first == second


# --- inference.py: the server-side ladder -------------------------------------------------


@ENGINES
def test_syns_at_one_time_name_the_pure_syns_sender_the_client_at_0_85(engine: str) -> None:
    """Kills I01 (`syn_first_seen0 < syn_first_seen1` -> `<=`) and I05 (the tie's
    `pure_syn == 2` case dropped): README, rung 1, "0.85 both SYNs at one time and only one
    record had SYN without ACK" (softflowd and pmacct give both halves one start); its
    sender is the client, whether it is the smaller endpoint or the larger."""
    for client, server in ((A, B), (B, A)):
        records = [
            rec(0, src=client, sport=40000, dst=server, dport=8443, flags=SYN),
            rec(0, src=server, sport=8443, dst=client, dport=40000, flags=SYN | ACK),
        ]
        [s] = run(records, engine=engine)[0].to_pylist()
        assert (s["client_ip"], s["server_port"]) == (client, 8443)
        assert (s["role_method"], s["role_confidence"]) == ("tcp_handshake", 0.85)


@ENGINES
def test_echo_requests_both_ways_are_no_echo_evidence_even_with_a_reply(engine: str) -> None:
    """Kills I08 (`echo_request == 0 and` dropped from the replies-only test): README, rung
    1, echo replies name their sender the server only with "replies only"; when both sides
    sent echo requests, one side's reply decides nothing."""
    records = [
        rec(0, proto=1, src=B, dst=A, sport=0, dport=8 << 8),
        rec(0.1, proto=1, src=A, dst=B, sport=0, dport=8 << 8),
        rec(0.2, proto=1, src=A, dst=B, sport=0, dport=0),
    ]
    [s] = run(records, engine=engine)[0].to_pylist()
    assert (s["client_ip"], s["role_method"], s["role_confidence"]) == (B, "first_sender", 0.5)


@ENGINES
def test_errors_decide_nothing_where_echo_replies_went_both_ways(engine: str) -> None:
    """Kills I09 (`replies == 0` dropped from the icmp_error test): README, rung 1,
    `icmp_error` applies when "neither side sent echo messages"; replies both ways and an
    unreachable from one side leave the ICMP rung to the next."""
    records = [
        rec(0, proto=1, src=B, dst=A, sport=0, dport=0),
        rec(0.1, proto=1, src=A, dst=B, sport=0, dport=0),
        rec(0.2, proto=1, src=A, dst=B, sport=0, dport=3 << 8 | 1),
    ]
    [s] = run(records, engine=engine)[0].to_pylist()
    assert (s["client_ip"], s["role_method"]) == (B, "first_sender")


@ENGINES
def test_icmpv6_type_0_is_no_error_message(engine: str) -> None:
    """Kills I26 (ICMPv6 errors `1 <= icmp_type` -> `0 <= icmp_type`): README, rung 1,
    "every ICMPv6 type from 1 to 127" is an error message; type 0 is reserved, no
    evidence."""
    records = [rec(0, proto=58, src="2001:db8::2", dst="2001:db8::1", sport=0, dport=0)]
    [s] = run(records, engine=engine)[0].to_pylist()
    assert (s["client_ip"], s["role_method"]) == ("2001:db8::2", "first_sender")


@ENGINES
def test_both_endpoints_declared_is_no_cartography_evidence(engine: str) -> None:
    """Kills I11 (`declared == 2` -> `declared & 2`): sessions.md and README, rung 2, a
    service "exactly one endpoint" declares; where the Cartography declares both, the
    ladder goes on (two ephemeral ports: first_sender)."""

    def services(addresses: np.ndarray, protocols: np.ndarray, ports: np.ndarray) -> np.ndarray:
        return np.ones(len(ports), dtype=bool)

    records = [rec(0, proto=17, src=B, sport=50000, dst=A, dport=40001)]
    [s] = run(records, engine=engine, services=services)[0].to_pylist()
    assert (s["client_ip"], s["role_method"]) == (B, "first_sender")


@ENGINES
def test_port_1024_is_ephemeral_against_a_service_port(engine: str) -> None:
    """Kills I12 (`port1 >= 1024` -> `port1 > 1024`): README, rung 3, ephemeral is "1024
    or above and not known"; 53 against 1024 is service_port, whichever side is the
    smaller endpoint."""
    records = [
        rec(0, proto=17, src=B, sport=1024, dst=A, dport=53),
        rec(0, proto=17, src="10.0.0.5", sport=1024, dst="10.0.0.6", dport=53),
    ]
    sessions = run(records, engine=engine)[0].to_pylist()
    assert {(s["server_port"], s["client_port"], s["role_method"]) for s in sessions} == {
        (53, 1024, "service_port")
    }


@ENGINES
@pytest.mark.parametrize("proto", [132, 136])
def test_sctp_and_udp_lite_have_service_ports(engine: str, proto: int) -> None:
    """Kills I14 (rung 3 for TCP and UDP only): README, rung 3 applies to the protocols
    whose endpoints carry ports, SCTP and UDP-Lite too (inference.py's docstring): a
    SIP server's answer to an ephemeral port names it the server."""
    records = [rec(0, proto=proto, src=B, sport=5060, dst=A, dport=50000)]
    [s] = run(records, engine=engine)[0].to_pylist()
    assert (s["server_ip"], s["server_port"], s["role_method"]) == (B, 5060, "service_port")


@ENGINES
def test_traffic_shape_at_a_peak_of_exactly_three_on_the_smaller_endpoint(engine: str) -> None:
    """Kills I15 (`peak0 >= TRAFFIC_SHAPE_MIN_PEAK` -> `>`): README, rung 4, "at least 3
    sessions open at once"; A:40001, the smaller endpoint of each, talks with three peers
    at once (each of them with one session): A is their server, at 0.60."""
    records = [
        rec(k, proto=17, src=f"10.0.1.{k}", sport=50000 + k, dst=A, dport=40001) for k in (1, 2, 3)
    ]
    sessions = run(records, engine=engine)[0].to_pylist()
    assert {(s["server_ip"], s["role_method"], s["role_confidence"]) for s in sessions} == {
        (A, "traffic_shape", 0.6)
    }


# I16 (`peak1 >= 2 * peak0` -> `>`) is killed by test_rule_boundaries.py's
# test_traffic_shape_at_exactly_twice_the_other_peak, with the larger endpoint busy.


# --- row.py: how long a closed late session is remembered -------------------------------


@ENGINES
def test_a_late_session_is_remembered_for_the_next_4096_records(engine: str) -> None:
    """Kills W05 (`LATE_MEMORY_RECORDS` 4096 -> 16): reference.py, rule 5, a late session
    is remembered for the exporter's next 4,096 records, whatever the clocks say: the
    other direction of its conversation, late alike and 100 records behind here, follows
    it and keeps its orientation (forgotten, it came out a one-way exchange of its own,
    oriented afresh)."""
    records = [tick(1000), rec(0, 0.5, proto=17, src=A, sport=40000, dst=B, dport=53)]
    records += [
        rec(900, proto=17, src=f"10.2.0.{i + 1}", sport=5000, dst="10.3.0.1", dport=9999)
        for i in range(100)
    ]
    records.append(rec(0.1, 0.6, proto=17, src=B, sport=53, dst=A, dport=40000))
    request, reply = [s for s in run(records, engine=engine)[0].to_pylist() if s["ip_b"] == B]
    assert request["late"] and reply["late"]
    assert reply["follows_session_id"] == request["session_id"]
    assert (reply["ip_a"], reply["close_reason"]) == (A, "idle")
