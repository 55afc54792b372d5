"""Flow Matrix files: rules, services, references, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from obserae_forensics.errors import UsageError
from obserae_forensics.matching import (
    Cartography,
    Service,
    load_cartography,
    load_flow_matrix,
)
from obserae_forensics.matching.address_sets import AddressSet

CARTOGRAPHY = """\
hosts:
  resolver: 10.0.0.53
networks:
  lan: [10.0.0.0/24, "fd00::/64"]
groups:
  clients: [lan]
"""


@pytest.fixture
def cartography(tmp_path: Path) -> Cartography:
    path = tmp_path / "cartography.yaml"
    path.write_text(CARTOGRAPHY)
    return load_cartography(path)


def test_the_bundled_example_loads(fixtures: Path) -> None:
    cartography = load_cartography(fixtures / "cartography.yaml")
    matrix = load_flow_matrix(fixtures / "flow_matrix.yaml", cartography)
    assert matrix.rule_names == (
        "lab-dns",
        "lab-admin",
        "lab-web",
        "web-out",
        "time-sync",
        "local-discovery",
    )
    assert [rule.index for rule in matrix.rules] == list(range(6))
    dns = matrix.rules[0]
    assert dns.service == Service((6, 17), ((53, 53),))
    assert dns.source_names == ("lab",)
    assert dns.line == 9
    web = matrix.rules[2]
    assert web.service.ports == ((80, 80), (8000, 8099))
    assert matrix.rules[1].service == Service((6,), ((22, 22),))
    assert matrix.rules[3].destination == cartography.resolve("internet4")


def test_rule_fields_and_lists(tmp_path: Path, cartography: Cartography) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "rules:\n"
        "  - name: dns\n"
        "    description: lan resolves names\n"
        "    source: [clients, 192.0.2.0/24, '2001:db8::7']\n"
        "    destination: resolver\n"
        "    protocol: [UDP, tcp, 6]\n"
        "    ports: [53, '5300-5310', 5305]\n"
        "  - name: anything\n"
        "    source: any\n"
        "    destination: any\n"
        "    protocol: any\n"
        "  - name: gre\n"
        "    source: lan\n"
        "    destination: 10.0.0.1\n"
        "    protocol: 47\n"
    )
    dns, anything, gre = load_flow_matrix(path, cartography).rules
    assert dns.description == "lan resolves names"
    assert dns.source == cartography.resolve("lan").union(
        AddressSet.from_networks(["192.0.2.0/24", "2001:db8::7"])
    )
    assert dns.service == Service((6, 17), ((53, 53), (5300, 5310)))
    assert anything.service == Service(None, None)
    assert gre.service == Service((47,), None)
    assert (dns.line, anything.line, gre.line) == (2, 8, 12)


def test_an_empty_rules_list_is_a_matrix_without_rules(
    tmp_path: Path, cartography: Cartography
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("rules: []\n")
    assert load_flow_matrix(path, cartography).rules == ()
    path.write_text("rules:\n")
    assert load_flow_matrix(path, cartography).rules == ()
    path.write_text("rules: ~\n")  # YAML's null, as the empty value above
    assert load_flow_matrix(path, cartography).rules == ()
    path.write_text("rules: ''\n")  # text, not nothing
    with pytest.raises(UsageError, match=r":1: 'rules' must be a list"):
        load_flow_matrix(path, cartography)


RULE = "rules:\n  - name: r\n    source: lan\n    destination: resolver\n    protocol: udp\n"

ERRORS = [
    ("rules:\n  - name: r\n    source: lan\n    destination: [resolver, dbs]\n    protocol: udp\n",
     r":4: rule 'r' destination: unknown name 'dbs'"),
    ("rules:\n  - name: r\n    source: 10.0.0.1/8\n    destination: resolver\n    protocol: udp\n",
     r":3: rule 'r' source: bad address or CIDR: '10\.0\.0\.1/8' has host bits set"),
    ("rules:\n  - name: r\n    source: 10.0.0.0/99\n    destination: resolver\n    protocol: udp\n",
     r":3: rule 'r' source: bad address or CIDR: bad prefix length '99'"),
    (RULE + "    ports: [53, 65536]\n", r":6: rule 'r': bad port '65536'"),
    (RULE + "    ports:\n      - 53\n      - 90-80\n", r":8: rule 'r': bad port range '90-80'"),
    (RULE + "    ports: 0x35\n", r":6: rule 'r': bad port '0x35'"),
    (RULE + "    ports: []\n", r":6: rule 'r' ports is an empty list"),
    (RULE + "  - name: r\n    source: lan\n    destination: lan\n    protocol: tcp\n",
     r":6: duplicate rule name 'r' \(first at line 2\)"),
    ("rules:\n  - name: r\n    source: lan\n    protocol: udp\n",
     r":2: rule #1 has no 'destination'"),
    ("rules:\n  - source: lan\n    destination: lan\n    protocol: udp\n",
     r":2: rule #1 has no 'name'"),
    (RULE.replace("udp", "udq"), r":5: rule 'r': unknown protocol 'udq'"),
    (RULE.replace("udp", "300"), r":5: rule 'r': protocol number 300 is out of range"),
    (RULE.replace("udp", "icmp") + "    ports: 8\n",
     r":6: rule 'r': protocol icmp \(1\) has no ports"),
    (RULE.replace("udp", "any") + "    ports: 53\n",
     r":6: rule 'r': ports need a protocol"),
    (RULE.replace("udp", "[any, udp]"), r":5: rule 'r': 'any' cannot be listed"),
    (RULE + "    port: 53\n", r":6: unknown key 'port' in rule #1"),
    (RULE.replace("name: r", "name: ''"), r":2: the rule name is empty"),
    (RULE.replace("source: lan", "source:"), r":3: an entry of rule 'r' source is empty"),
    ("rule:\n  - name: r\n", r":1: unknown key 'rule' in the Flow Matrix"),
    ("description: x\n", r":1: unknown key 'description'"),
    ("rules:\n  name: r\n", r":2: 'rules' must be a list"),
    ("rules:\n  - name: r\n    source: [lan\n", r":4: YAML syntax error"),
    ("rules:\n  - lan\n", r":2: rule #1 must be a mapping"),
    (RULE.replace("source: lan", "source: '2001:db8::/32'"),
     r":2: rule 'r' can never match: its source holds only IPv6 addresses and its"
     r" destination only IPv4 \(a session's client and server are of one IP version\)"),
    # a protocol of the other IP version only, and digits of another script (an audit)
    (RULE.replace("source: lan", "source: '2001:db8::/32'").replace(
        "destination: resolver", "destination: '2001:db8::/32'").replace("udp", "icmp"),
     r":5: rule 'r' can never match: icmp is not carried over IPv6, the only IP version its"
     r" source and destination share \(IPv6's is icmpv6\)"),
    (RULE.replace("source: lan", "source: 10.0.0.0/8").replace("udp", "[icmpv6, 58]"),
     r":5: rule 'r' can never match: icmpv6 is not carried over IPv4"),
    (RULE.replace("udp", "\u0666"), r":5: rule 'r': unknown protocol '\u0666'"),
    (RULE.replace("udp", "\u00b2"), r":5: rule 'r': unknown protocol '\u00b2'"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_bad_files_name_file_line_and_problem(
    tmp_path: Path, cartography: Cartography, text: str, message: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=r"^" + str(path).replace(".", r"\.") + message):
        load_flow_matrix(path, cartography)


def test_a_rule_needs_one_ip_version_on_both_sides(
    tmp_path: Path, cartography: Cartography
) -> None:
    """lan holds v4 and v6 networks: a v6 destination shares a version with it."""
    path = tmp_path / "m.yaml"
    path.write_text(RULE.replace("destination: resolver", "destination: '2001:db8::/32'"))
    (rule,) = load_flow_matrix(path, cartography).rules
    assert rule.source.families == {4, 6} and rule.destination.families == {6}
    assert AddressSet.from_networks(["::ffff:0:0/96"]).families == {4}
    # an IPv6 CIDR wider than the mapped /96 holds no IPv4 (::/0 took in every IPv4
    # session, found by an audit); the built-in `any` is both
    assert AddressSet.from_networks(["::fffe:0:0/95"]).families == {6}
    assert AddressSet.from_networks(["::/0"]).families == {6}
    assert Cartography.builtin().lookup("any").families == {4, 6}  # type: ignore[union-attr]
    assert AddressSet.from_networks(["0.0.0.0/0"]).families == {4}
    assert AddressSet().families == frozenset()


def test_names_resolve_against_the_cartography_given(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(RULE)
    with pytest.raises(UsageError, match=r":3: rule 'r' source: unknown name 'lan'") as caught:
        load_flow_matrix(path, Cartography.builtin())
    # without a Cartography file the message says so (it said "unknown name" alone)
    assert str(caught.value).endswith("; no Cartography file was read (--cartography)")
    (tmp_path / "c.yaml").write_text("hosts:\n  other: 10.0.0.9\n")
    with pytest.raises(UsageError, match="unknown name 'lan'") as caught:
        load_flow_matrix(path, load_cartography(tmp_path / "c.yaml"))
    assert "no Cartography file was read" not in str(caught.value)


def test_services_have_one_normal_form() -> None:
    assert Service((17, 6, 6), ((80, 90), (85, 100), (22, 22), (23, 23))) == Service(
        (6, 17), ((22, 23), (80, 100))
    )
