"""Behaviour of the Cartography and its address sets that no test pinned, found by a
mutation audit (the audit-cartography branch's: 86 small changes, 25 to address_sets.py
(A01-A25), 22 to cartography.py (G01-G22), 15 to services.py (S01-S15), 11 to
yaml_nodes.py (Y01-Y11) and 13 to builtin_networks.py (B01-B13)). Each was run against
tests/matching/test_cartography.py, test_address_sets.py, test_flow_matrix.py and
test_match.py, which noticed 26; the other 60 against the earlier audits
(tests/sessionize/test_mutation_audit.py, tests/test_mutation_audit.py,
tests/query/test_filters_mutation_audit.py, tests/matching/test_consolidate_mutation_audit.py,
tests/test_addresses_mutation_audit.py), tests/query/test_filters.py, test_run.py,
tests/sessionize/test_rules.py, test_policy.py and tests/matching/test_fixture_run.py,
which noticed two more (G07, a CIDR looked up keeping IPv4 in `::/0`, and S03, the tunnel
keywords). Of the 58 no test noticed, 49 are real gaps, killed here, 8 are equivalent and
one, G17, showed a fault of the package, fixed with its test (sections were read hosts,
networks, groups, whatever their order in the file). The ids are this audit's
own (tests/sessionize/test_mutation_audit.py's M33 and M62 and tests/test_mutation_audit.py's
M07 and M08 are earlier audits' and are not repeated).

Most gaps were at the far end of a range (the last address of a built-in CIDR, the
address 0 or the last one in a complement, 255.255.255.255, exactly 100 levels, exactly
MAX_VALUES values), or in the wording and the line of an error a user reads.

The 8 equivalent changes, and why no output can show them:

* A04 (without_mapped `first <= V4_MAPPED_BASE` -> `<`): it only sees CIDRs, and
  ::ffff:0:0's lowest set bit is bit 32, so a CIDR starting there is /96 or narrower and
  covers the /96 only when it is the /96, which the next clause leaves whole anyway.
* A12 (complement's `cursor = max(cursor, end + 1)` -> `end + 1`): the intervals are sorted
  and disjoint, and one not skipped ends at or after the cursor.
* A19 (AddressCells keeps 0 among its bounds): an empty cell 0 no address is placed in;
  every other cell starts where it did, and tables, NOWHERE and the service index count
  from the same bounds.
* A20 (the bulk dotted-quad pattern leaves octet 255 to ipaddress): the slower path
  gives the same 16 bytes.
* G15 (the service index's starts one shorter): locate() gives at most NOWHERE - 1, so
  `cells + 1` indexes at most NOWHERE, which the shorter starts still hold.
* G18 (resolve_group without its already-resolved shortcut): a group resolved again is
  resolved from the same members to the same intervals.
* G19 (a declared service's port ranges left unmerged): Service puts them in one normal
  form itself.
* S04 (the short name `ipv6-icmp` dropped): IANA's keyword IPv6-ICMP puts it back, and
  protocol 58 is still described by its first name, `icmpv6`.

Y10 and Y11 are killed by cases added to test_cartography.py (`~` as a whole file, and
`Null` and `NULL` as an empty section). Each test fails with its change applied and names
it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from obserae_forensics.errors import UsageError
from obserae_forensics.matching import (
    AddressSet,
    Cartography,
    DeclaredService,
    Service,
    load_cartography,
    yaml_nodes,
)
from obserae_forensics.matching.address_sets import ADDRESS_TOP
from obserae_forensics.matching.builtin_networks import BUILTIN_NAMES
from tests.matching.test_cartography import matrix, members, write
from tests.matching.test_flow_matrix import RULE
from tests.query.test_filters_mutation_audit import write_matrix


def refusal(path: Path) -> str:
    """The UsageError loading the Cartography at `path` gives, less the path itself."""
    with pytest.raises(UsageError) as caught:
        load_cartography(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:")
    return message[len(str(path)) :]


# --- matching/address_sets.py ----------------------------------------------------------


def test_a_cidr_inside_the_mapped_96_names_ipv4() -> None:
    """Kills A02 (IPv4 told by a dot in the text, not by the parsed version): README, "the
    /96 itself or a CIDR inside it still names IPv4"; `::ffff:10.0.0.0/104` is 10.0.0.0/8
    already mapped, and it was mapped a second time, out of IPv4 altogether."""
    builtin = Cartography.builtin()
    assert builtin.resolve("::ffff:10.0.0.0/104") == builtin.resolve("10.0.0.0/8")
    assert members(builtin, "::ffff:10.0.0.0/104", "10.1.2.3", "11.0.0.1") == [True, False]


def test_the_complement_keeps_every_address_at_the_ends_of_its_universe() -> None:
    """Kills A10 (`complement` skips an interval that ends where the cursor is) and A11
    (and one that starts at the universe's last address): the complement of the address 0
    alone is every other address, of the last one alone every other one; each kept the
    one address it should have left out."""
    assert AddressSet.from_intervals([(0, 0)]).complement().intervals == ((1, ADDRESS_TOP),)
    top = AddressSet.from_intervals([(ADDRESS_TOP, ADDRESS_TOP)])
    assert top.complement().intervals == ((0, ADDRESS_TOP - 1),)
    within = AddressSet.from_intervals([(10, 20)])
    assert AddressSet.from_intervals([(10, 10)]).complement(within).intervals == ((11, 20),)
    assert AddressSet.from_intervals([(20, 20)]).complement(within).intervals == ((10, 19),)


def test_a_set_counts_its_addresses() -> None:
    """Kills A13 (`size` one short per interval): a /24 holds 256 addresses, a host one."""
    assert AddressSet.from_networks(["10.0.0.0/24"]).size == 256
    assert AddressSet.from_networks(["10.0.0.1", "10.0.0.3", "2001:db8::/126"]).size == 6


def test_the_broadcast_address_alone_is_ipv4(tmp_path: Path) -> None:
    """Kills A16 (`families` `first <= v4_last` -> `<`): 255.255.255.255 is the last IPv4
    address; without a family, a Flow Matrix rule to the broadcast address was refused as
    one no session can match."""
    assert AddressSet.from_networks(["255.255.255.255"]).families == {4}
    text = RULE.replace("destination: resolver", "destination: 255.255.255.255")
    _, flow_matrix, problem = write_matrix(tmp_path, text)
    assert problem == ""
    assert flow_matrix is not None and flow_matrix.rules[0].destination.families == {4}


def test_a_cidr_is_in_a_set_when_all_of_it_is() -> None:
    """Kills A17 (`in` when any part of the CIDR is covered, not all) and A18 (`covers`
    `last <= end` -> `<`): a set holds the CIDR it was made of, and `::/0` (IPv6 both below
    and above the mapped /96) is not in a set of its lower half."""
    lan = AddressSet.from_networks(["10.0.0.0/8", "2001:db8::/32"])
    assert "10.0.0.0/8" in lan
    assert "2001:db8::/32" in lan
    assert "10.255.255.255" in lan
    assert "::/0" not in AddressSet.from_networks(["::/1"])
    assert "::/0" in AddressSet.from_networks(["::/1", "8000::/1"])


def test_an_address_with_spaces_around_it_is_read() -> None:
    """Kills A21 (parse_network without `strip()`): a name, CIDR or address is read as the
    analyst typed it, spaces around it aside (as ports are); " 10.0.0.1" was an unknown
    name."""
    builtin = Cartography.builtin()
    assert builtin.resolve(" 10.0.0.1 ") == builtin.resolve("10.0.0.1")
    assert builtin.resolve("2001:db8::/32 ") == builtin.resolve("2001:db8::/32")


def test_a_bad_ipv6_prefix_names_the_ipv6_range(tmp_path: Path) -> None:
    """Kills A23 (the prefix message's range always 0..32): an IPv6 prefix is 0..128."""
    path = write(tmp_path, "networks:\n  lab6: '2001:db8::/129'\n")
    assert refusal(path) == (
        ":2: bad address or CIDR: bad prefix length '129' in '2001:db8::/129' (0..128)"
    )


# --- matching/cartography.py -----------------------------------------------------------


def test_a_name_may_hold_dots_but_not_end_in_a_newline(tmp_path: Path) -> None:
    """Kills G01 (no `.` in names) and G02 (NAME_PATTERN's `\\Z` -> `$`): README, a name
    "continues with letters, digits, `_`, `.` or `-`"; `$` let a quoted name end in a line
    break, which no reference can write."""
    path = write(tmp_path, "hosts:\n  ntp.pool.lab: 10.0.0.1\n")
    assert members(load_cartography(path), "ntp.pool.lab", "10.0.0.1") == [True]
    path = write(tmp_path, 'networks:\n  "lab\\n": 10.0.0.0/8\n')
    assert refusal(path).startswith(":2: bad network name 'lab\\n'")


def test_a_name_defined_twice_points_at_the_line_of_its_first_name(tmp_path: Path) -> None:
    """Kills G03 (a name's line taken from its value): a host written as a block mapping
    has its name on line 2 and its addresses on line 3; the message points at the name."""
    path = write(tmp_path, "hosts:\n  a:\n    addresses: 10.0.0.1\nnetworks:\n  a: 10.0.0.0/8\n")
    assert refusal(path) == ":5: 'a' is defined twice (first as a host at line 2)"


@pytest.mark.parametrize(
    ("written", "cidr"), [("10.0.0.0/31", "10.0.0.0/31"), ("'2001:db8::/127'", "2001:db8::/127")]
)
def test_a_host_of_two_addresses_is_a_network(tmp_path: Path, written: str, cidr: str) -> None:
    """Kills G04 (a host refused only a CIDR of more than two addresses): README, "a host
    holds single addresses; a CIDR belongs under networks"."""
    path = write(tmp_path, f"hosts:\n  pair: {written}\n")
    assert refusal(path).startswith(f":2: host 'pair': '{cidr}' is a network")


@pytest.mark.parametrize("reference", ["v6", "g"])
def test_ipv6_everywhere_holds_no_ipv4_in_a_network_or_a_group(
    tmp_path: Path, reference: str
) -> None:
    """Kills G05 (a network's CIDRs kept whole) and G06 (a group's CIDR members kept
    whole): README, "an IPv6 CIDR wider than `::ffff:0:0/96` holds IPv6 only", in a
    network or a group as in a rule's side (a CIDR looked up, which test_filters.py holds);
    `::/0` took in every IPv4 address through either."""
    path = write(tmp_path, "networks:\n  v6: ['::/0']\ngroups:\n  g: ['::/0']\n")
    cartography = load_cartography(path)
    assert members(cartography, reference, "2001:db8::1", "10.0.0.1") == [True, False]
    assert cartography.resolve(reference).families == {6}


def test_a_cycle_is_named_from_where_it_closes(tmp_path: Path) -> None:
    """Kills G08 (the cycle's path from the group resolution started at): README, a cycle
    is refused "with its path"; z only leads into the cycle a -> b -> a."""
    path = write(tmp_path, "groups:\n  z: [a]\n  a: [b]\n  b: [a]\n")
    assert refusal(path) == ":4: group cycle: a -> b -> a"


def test_a_group_reached_twice_is_no_cycle(tmp_path: Path) -> None:
    """Kills G09 (a resolved group left on the chain): both a and b hold c, so c is
    reached twice from top; that is a diamond, not a cycle, and top holds c's addresses."""
    path = write(
        tmp_path, "groups:\n  top: [a, b]\n  a: [c]\n  b: [c, 10.2.0.0/16]\n  c: [10.1.0.0/16]\n"
    )
    cartography = load_cartography(path)
    assert members(cartography, "top", "10.1.0.1", "10.2.0.1", "10.3.0.1") == [True, True, False]


def test_an_unknown_member_is_named_under_its_own_group(tmp_path: Path) -> None:
    """Kills G10 (the unknown member reported under the group resolution started at): inner
    names 'nowhere', outer only names inner."""
    path = write(tmp_path, "groups:\n  outer: [inner]\n  inner: [10.0.0.0/8, nowhere]\n")
    assert refusal(path).startswith(":3: group 'inner': unknown name 'nowhere'")


NO_PORTS = "has no ports; only tcp, udp, sctp and udplite do"


def hosts_service(service: str) -> str:
    """A Cartography of one host, 10.0.0.1, declaring `service` (on line 4)."""
    return f"hosts:\n  h:\n    addresses: 10.0.0.1\n    services: [{service}]\n"


@pytest.mark.parametrize(
    ("service", "problem"),
    [
        ("sctp", ":4: bad service 'sctp': 'sctp' needs a port, like sctp/443"),
        ("udplite", ":4: bad service 'udplite': 'udplite' needs a port, like udplite/443"),
        ("gre/80", f":4: bad service 'gre/80': protocol gre (47) {NO_PORTS}"),
        ("esp/500", f":4: bad service 'esp/500': protocol esp (50) {NO_PORTS}"),
        ("any", ":4: bad service 'any': a declared service needs one protocol, not any"),
    ],
)  # fmt: skip
def test_which_declared_services_take_ports(tmp_path: Path, service: str, problem: str) -> None:
    """Kills G11 (only tcp and udp services need a port), S10 (only ICMP refuses ports) and
    G12 (`any` accepted as a declared service): README, "TCP, UDP, SCTP and UDP-Lite
    services need a port; ICMP, GRE, ESP... take none", and a declared service is the
    evidence that a host serves one protocol (`any` broke the service index's integers)."""
    assert refusal(write(tmp_path, hosts_service(service))) == problem


def test_a_declared_service_of_any_protocol_serves_every_protocol() -> None:
    """Kills G13 (the index's any-protocol atom never matching): a Cartography built in
    code may declare Service(None), every protocol of the host, as `_service_index` says."""
    host = AddressSet.from_networks(["10.0.0.1"])
    cartography = Cartography(
        {"h": host}, {"h": "host"}, (DeclaredService("h", host, Service(None)),)
    )
    found = cartography.declared_services(
        matrix("10.0.0.1", "10.0.0.1", "10.0.0.2"),
        np.array([47, 6, 47], np.uint8),
        np.array([0, 443, 0], np.uint16),
    )
    assert found.tolist() == [True, True, False]


def test_a_portless_service_is_declared_whatever_the_port(tmp_path: Path) -> None:
    """Kills G14 (a service without ports spanning 0-65534): declared_services ignores the
    port of protocols without ports, whatever it holds, 65535 too."""
    cartography = load_cartography(write(tmp_path, hosts_service("gre")))
    found = cartography.declared_services(
        matrix("10.0.0.1", "10.0.0.1"),
        np.array([47, 47], np.uint8),
        np.array([0, 65535], np.uint16),
    )
    assert found.tolist() == [True, True]


def test_the_unknown_name_message_lists_every_builtin() -> None:
    """Kills G16 (the message's built-in names less `any`): README, an unknown name is
    "not a Cartography host, network or group, a built-in name (...), an address or a
    CIDR", the built-ins listed so that the analyst sees what exists."""
    with pytest.raises(UsageError) as caught:
        Cartography.builtin().resolve("lab")
    assert str(caught.value) == (
        "unknown name 'lab' (not a Cartography host, network or group, a built-in name "
        "(internal4, internet4, internal6, internet6, multicast, any), an address or a CIDR)"
    )
    assert BUILTIN_NAMES[-1] == "any"


def test_a_name_defined_twice_is_refused_where_the_file_repeats_it(tmp_path: Path) -> None:
    """G17 (sections read in the file's order, not hosts, networks, groups) was no gap but a
    fault of the package, fixed: with networks above hosts, the network at line 2 is the
    first definition, and the refusal said "'a' is defined twice (first as a host at line
    4)" at line 2, the first pointing below the repeat. It names line 4 and the network of
    line 2 now."""
    path = write(tmp_path, "networks:\n  a: 10.0.0.0/8\nhosts:\n  a: 10.0.0.1\n")
    assert refusal(path) == ":4: 'a' is defined twice (first as a network at line 2)"


# --- matching/services.py --------------------------------------------------------------


@pytest.mark.parametrize("word", ["ANY", "Any"])
def test_any_protocol_in_any_case(tmp_path: Path, word: str) -> None:
    """Kills S01 (`any` recognised in lower case only): README, protocol names are read "in
    any case", `any` among them; `ANY` was an unknown protocol."""
    _, flow_matrix, problem = write_matrix(tmp_path, RULE.replace("udp", word))
    assert problem == ""
    assert flow_matrix is not None and flow_matrix.rules[0].service == Service(None)


def test_a_service_describes_itself_as_it_is_written() -> None:
    """Kills S12 (a single port described as `80-80`) and S13 (a protocol described by its
    last name, `ipv6-icmp`, not its first, `icmpv6`)."""
    assert Service((6,), ((80, 80), (8000, 8099))).describe() == "tcp/80,8000-8099"
    assert Service((58,)).describe() == "icmpv6"
    assert Service((17, 6), ((53, 53),)).describe() == "tcp,udp/53"


def test_a_port_range_may_have_spaces_around_its_dash(tmp_path: Path) -> None:
    """Kills S15 (a range's bounds not stripped): `8000 - 8099` is the range 8000-8099, in a
    declared service as in a rule's ports."""
    cartography = load_cartography(write(tmp_path, hosts_service("tcp/8000 - 8099")))
    assert cartography.services[0].service == Service((6,), ((8000, 8099),))
    _, flow_matrix, problem = write_matrix(tmp_path, RULE + "    ports: 5300 - 5310\n")
    assert problem == ""
    assert flow_matrix is not None and flow_matrix.rules[0].service.ports == ((5300, 5310),)


# --- matching/yaml_nodes.py ------------------------------------------------------------


def test_a_duplicate_key_points_at_the_line_of_the_first_key(tmp_path: Path) -> None:
    """Kills Y01 (the first's line taken from its value): host a's name is on line 2, its
    addresses on line 3."""
    path = write(tmp_path, "hosts:\n  a:\n    addresses: 10.0.0.1\n  a: 10.0.0.2\n")
    assert refusal(path) == ":4: duplicate 'a' in hosts (first at line 2)"


def test_an_unknown_key_lists_the_keys_expected(tmp_path: Path) -> None:
    """Kills Y02 (the unknown key's message without the keys expected): README, errors name
    the problem, and `adresses` is best answered with the keys a host takes."""
    path = write(tmp_path, "hosts:\n  a:\n    adresses: 10.0.0.1\n")
    assert refusal(path) == (
        ":3: unknown key 'adresses' in host 'a' (expected: addresses, description, services)"
    )


def test_a_blank_value_is_empty(tmp_path: Path) -> None:
    """Kills Y03 (a value of spaces taken for a value): a description or an address of
    spaces alone is as empty as none."""
    text = "networks:\n  lab:\n    cidrs: 10.0.0.0/8\n    description: '   '\n"
    assert refusal(write(tmp_path, text)) == ":4: description is empty"
    assert refusal(write(tmp_path, "hosts:\n  h: ' '\n")) == ":2: an entry of host 'h' is empty"


def test_nesting_of_exactly_100_levels_is_read(tmp_path: Path) -> None:
    """Kills Y04 (`depth > MAX_NESTING` -> `>=`): the limit is "at most" 100 levels; 99
    brackets under a one-level key are 100 and read (then refused for what they hold)."""
    text = "hosts:\n  h: " + "[" * 99 + "10.0.0.1" + "]" * 99 + "\n"
    assert yaml_nodes.nesting_depth(text) == yaml_nodes.MAX_NESTING
    assert refusal(write(tmp_path, text)) == (
        ":2: an entry of host 'h' must be a single value, not a list or mapping"
    )


def test_block_nesting_counts_two_columns_a_level(tmp_path: Path) -> None:
    """Kills Y05 (indentation counted at four columns a level): each block level indents at
    least one more column, two as these files are written, so 101 block levels are refused
    before libyaml's recursive composer sees them, as 101 brackets are."""
    lines = [f"{'  ' * level}k{level}:" for level in range(101)] + [f"{'  ' * 101}x"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    assert refusal(path) == ": Cartography nests 101 levels deep (at most 100)"


def plain(tmp_path: Path, text: str) -> object:
    """`text` as plain_values types it, read from a file in `tmp_path`."""
    path = tmp_path / "values.yaml"
    path.write_text(text)
    source = yaml_nodes.YamlFile(path, what="a file")
    return yaml_nodes.plain_values(source, source.root)


def test_plain_values_read_negative_numbers_and_every_boolean_spelling(tmp_path: Path) -> None:
    """Kills Y06 (a negative integer left as text) and Y07 (`True`, `FALSE`... left as
    text): plain_values types "plain integers, decimals, true/false" as YAML writes them;
    a settings file's `-5` is refused as a negative number, not as a word."""
    assert plain(tmp_path, "a: -5\nb: True\nc: FALSE\nd: False\ne: TRUE\n") == {
        "a": -5,
        "b": True,
        "c": False,
        "d": False,
        "e": True,
    }


def test_exactly_max_values_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills Y09 (`budget[0] < 0` -> `<= 0`): the limit refuses "more than" MAX_VALUES
    values; `a: [1, 2]` is five (the mapping, its key, the list and its two items)."""
    monkeypatch.setattr(yaml_nodes, "MAX_VALUES", 5)
    assert plain(tmp_path, "a: [1, 2]\n") == {"a": [1, 2]}
    monkeypatch.setattr(yaml_nodes, "MAX_VALUES", 4)
    with pytest.raises(UsageError, match=r":1: more than 4 values"):
        plain(tmp_path, "a: [1, 2]\n")


# --- matching/builtin_networks.py ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "inside", "outside"),
    [
        ("internal4", ["100.127.255.255", "127.255.255.254"], ["100.128.0.0", "128.0.0.1"]),
        ("internet4", ["198.20.0.1", "192.88.98.255", "192.88.100.0"],
         ["198.19.255.255", "192.88.99.1", "239.255.255.255", "240.0.0.1"]),
        ("internal6", ["fc00::1", "febf:ffff::1"], ["fbff::1", "fec0::1"]),
        ("internet6", ["3fff:1000::1", "3000::1", "2001:4:112:ffff::1", "2001:3:ffff::1",
                       "2001:200::1"],
         ["3fff:fff::1", "4000::1", "2001:4:113::1", "2001:4::1", "2001:1ff::1"]),
        ("multicast", ["ff3e::1", "ffff::1"], ["fe80::1"]),
    ],
)  # fmt: skip
def test_builtin_names_to_the_far_end_of_their_ranges(
    name: str, inside: list[str], outside: list[str]
) -> None:
    """Kills B01 (100.64.0.0/10 as /11), B09 (127.0.0.0/8 as /16), B02 (198.18.0.0/15 as
    /16), B03 (192.88.99.0/24 left out of the non-public blocks), B05 (fc00::/7 as
    fd00::/8), B04 (fe80::/10 as /16), B06 (3fff::/20 as /16), B08 (2000::/3 as /4), B10
    (2001:4:112::/48 as /64), B11 (2001:3::/32 as /48) and B07 (ff00::/8 as /12): README,
    the built-in names hold exactly these CIDRs, to their last address; test_cartography.py
    only looked near their first."""
    builtin = Cartography.builtin()
    assert all(members(builtin, name, *inside))
    assert not any(members(builtin, name, *outside))
