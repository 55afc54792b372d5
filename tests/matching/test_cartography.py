"""Cartography files: names, nesting, built-ins, declared services, located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from obserae_forensics.addresses import parse_address
from obserae_forensics.errors import UsageError
from obserae_forensics.matching import Cartography, load_cartography
from obserae_forensics.matching.address_sets import values_from_ints


def write(tmp_path: Path, text: str, name: str = "cartography.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def matrix(*texts: str) -> np.ndarray:
    return np.frombuffer(b"".join(parse_address(t) for t in texts), np.uint8).reshape(-1, 16)


def members(cartography: Cartography, name: str, *texts: str) -> list[bool]:
    return cartography.resolve(name).contains(matrix(*texts)).tolist()


NESTED = """
    hosts:
      db1:
        addresses: [10.1.0.5, "2001:db8::5"]
        services: [tcp/5432, udp/5060-5061, gre]
      resolver: 10.1.0.53
    networks:
      office: [192.168.10.0/24, "fd00:10::/48"]
      branch:
        cidrs: 192.168.20.0/24
        description: the branch office
    groups:
      everyone: [sites, servers, 198.51.100.0/28]
      sites: [office, branch]
      servers: [db1, resolver]
"""


def test_nested_groups_resolve_in_any_order(tmp_path: Path) -> None:
    cartography = load_cartography(write(tmp_path, NESTED))
    assert members(
        cartography,
        "everyone",
        "192.168.10.7",
        "192.168.20.1",
        "fd00:10::1",
        "10.1.0.5",
        "2001:db8::5",
        "198.51.100.15",
        "198.51.100.16",
        "10.1.0.6",
    ) == [True, True, True, True, True, True, False, False]
    assert cartography.kinds["sites"] == "group"
    assert cartography.kinds["db1"] == "host"
    assert cartography.kinds["any"] == "builtin"
    assert cartography.descriptions["branch"] == "the branch office"


def test_resolve_takes_names_cidrs_and_addresses(tmp_path: Path) -> None:
    cartography = load_cartography(write(tmp_path, NESTED))
    assert cartography.resolve("office") == cartography.resolve("192.168.10.0/24").union(
        cartography.resolve("fd00:10::/48")
    )
    assert members(cartography, "10.1.0.53", "10.1.0.53", "10.1.0.54") == [True, False]
    with pytest.raises(UsageError, match=r"unknown name 'nowhere'"):
        cartography.resolve("nowhere")
    with pytest.raises(UsageError, match=r"host bits set"):
        cartography.resolve("10.1.0.5/16")


def test_declared_services_by_address_protocol_and_port(tmp_path: Path) -> None:
    cartography = load_cartography(write(tmp_path, NESTED))
    rows = [
        ("10.1.0.5", 6, 5432, True),
        ("2001:db8::5", 6, 5432, True),  # every address of the host
        ("10.1.0.5", 17, 5432, False),  # wrong protocol
        ("10.1.0.5", 17, 5061, True),  # port range
        ("10.1.0.5", 17, 5062, False),
        ("10.1.0.5", 47, 0, True),  # GRE: protocol only
        ("10.1.0.53", 17, 53, False),  # resolver declares nothing
        ("192.168.10.7", 6, 5432, False),
    ]
    found = cartography.declared_services(
        matrix(*(r[0] for r in rows)),
        np.array([r[1] for r in rows], np.uint8),
        np.array([r[2] for r in rows], np.uint16),
    )
    assert found.tolist() == [r[3] for r in rows]


def test_no_services_and_no_rows_are_fine() -> None:
    builtin = Cartography.builtin()
    empty = np.zeros((0, 16), np.uint8)
    assert builtin.declared_services(empty, np.zeros(0, np.uint8), np.zeros(0, np.uint16)).size == 0
    assert not builtin.declared_services(matrix("10.0.0.1"), np.array([6]), np.array([22])).any()


@pytest.mark.parametrize(
    ("name", "inside", "outside"),
    [
        ("internal4", ["10.1.2.3", "172.31.0.1", "192.168.1.1", "100.64.0.1", "169.254.1.1",
                       "127.0.0.1"],
         ["172.32.0.1", "8.8.8.8", "224.0.0.251", "fd00::1"]),
        # the IANA special-purpose registries' globally reachable blocks inside reserved
        # ones are public (192.0.0.9/.10, the NAT64 prefix, 2001::/23's anycast, AMT,
        # AS112, ORCHIDv2 and Teredo); their unreachable ones are not (an audit)
        ("internet4", ["8.8.8.8", "74.125.225.81", "141.142.192.39", "1.1.1.1",
                       "192.0.0.9", "192.0.0.10"],
         ["10.0.0.1", "203.0.113.5", "192.0.2.1", "224.0.0.251", "255.255.255.255",
          "0.1.2.3", "198.18.0.1", "2606:4700::1", "192.0.0.8", "192.0.0.11",
          "192.0.0.170"]),
        ("internal6", ["fd12:3456::1", "fe80::20c:29ff:febd:6f01", "::1"],
         ["2001:db8::1", "10.0.0.1", "ff02::fb"]),
        ("internet6", ["2606:4700::1111", "2a00:1450::1", "64:ff9b::808:808", "2001::1",
                       "2001:1::1", "2001:1::3", "2001:3::1", "2001:4:112::1", "2001:20::1",
                       "2001:3f::1", "2001:200::1"],
         ["2001:db8::1", "fe80::1", "ff02::fb", "8.8.8.8", "3fff::1", "2001:2::1",
          "2001:10::1", "2001:1::4", "2001:4::1", "2001:1ff::1", "64:ff9b:1::1",
          "::ffff:8.8.8.8", "64:ff9b::a00:1", "64:ff9b::c0a8:101"]),  # 10.0.0.1, 192.168.1.1
        ("multicast", ["224.0.0.251", "239.255.255.250", "ff02::fb"],
         ["172.16.238.255", "10.0.0.1"]),
        ("any", ["0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
         []),
    ],
)  # fmt: skip
def test_builtin_names(name: str, inside: list[str], outside: list[str]) -> None:
    cartography = Cartography.builtin()
    assert all(members(cartography, name, *inside))
    if outside:
        assert not any(members(cartography, name, *outside))


def test_the_bundled_example_loads(fixtures: Path) -> None:
    cartography = load_cartography(fixtures / "cartography.yaml")
    assert members(cartography, "lab-everything", "172.16.238.1", "fe80::20c:29ff:febd:6f01") == [
        True,
        True,
    ]
    assert members(cartography, "time-servers", "69.50.219.51", "192.0.2.123") == [True, True]


ERRORS = [
    ("hosts:\n  a: [10.0.0.1\n",
     # PyYAML and libyaml word it differently; both say where the sequence began
     r":3: YAML syntax error: .*expected ',' or '\]'.* \(while parsing a flow "
     r"sequence at line 2\)"),
    ("hosts:\n  a: 10.0.0.1\n b: 10.0.0.2\n", r":3: YAML syntax error"),
    ("", r":1: Cartography is empty"),
    ("# only a comment\n", r":1: Cartography is empty"),
    ("~\n", r":1: Cartography is empty"),  # a null document, not a mapping (an audit: Y10)
    ("- 10.0.0.1\n", r":1: the Cartography must be a mapping"),
    ("host:\n  a: 10.0.0.1\n", r":1: unknown key 'host' in the Cartography"),
    ("hosts:\n  a: 10.0.0.1\n  b: 10.0.0.2\n  a: 10.0.0.3\n",
     r":4: duplicate 'a' in hosts \(first at line 2\)"),
    ("hosts:\n  a: 10.0.0.1\nnetworks:\n  a: 10.0.0.0/8\n",
     r":4: 'a' is defined twice \(first as a host at line 2\)"),
    ("networks:\n  internal4: 10.0.0.0/8\n", r":2: 'internal4' is a built-in name"),
    ("networks:\n  1st-floor: 10.0.0.0/8\n", r":2: bad network name '1st-floor'"),
    ("networks:\n  lan:\n    - 10.0.0.0/8\n    - 10.1.0.1/16\n",
     r":4: bad address or CIDR: '10\.1\.0\.1/16' has host bits set"),
    ("networks:\n  lan: [10.0.0.0/40]\n", r":2: bad address or CIDR: bad prefix length '40'"),
    ("networks:\n  lan: [lan2]\n", r":2: 'lan2' is not an address or CIDR"),
    ("networks:\n  lan: []\n", r":2: network 'lan' is an empty list"),
    ("networks:\n  lan:\n    description: x\n", r":3: network 'lan' has no 'cidrs'"),
    ("hosts:\n  a: 10.0.0.0/24\n", r":2: host 'a': '10\.0\.0\.0/24' is a network"),
    ("hosts:\n  a:\n    addresses: 10.0.0.1\n    services: [tcp]\n",
     r":4: bad service 'tcp': 'tcp' needs a port"),
    ("hosts:\n  a:\n    addresses: 10.0.0.1\n    services: [tcp/70000]\n",
     r":4: bad service 'tcp/70000': bad port '70000'"),
    ("hosts:\n  a:\n    addresses: 10.0.0.1\n    services:\n      - tcp/22\n      - xtp/1\n",
     r":6: bad service 'xtp/1': unknown protocol 'xtp'"),
    ("hosts:\n  a:\n    addresses: 10.0.0.1\n    services: [icmp/8]\n",
     r":4: bad service 'icmp/8': protocol icmp \(1\) has no ports"),
    ("hosts:\n  a:\n    adresses: 10.0.0.1\n", r":3: unknown key 'adresses' in host 'a'"),
    ("groups:\n  g: [lan, nowhere]\nnetworks:\n  lan: 10.0.0.0/8\n",
     r":2: group 'g': unknown name 'nowhere'"),
    ("groups:\n  a: [b]\n  b: [c]\n  c:\n    - 10.0.0.0/8\n    - a\n",
     r":6: group cycle: a -> b -> c -> a"),
    ("groups:\n  a: [10.0.0.0/8, a]\n", r":2: group cycle: a -> a"),
    ("groups:\n  a: [10.0.0.1/8]\n", r":2: bad address or CIDR: '10\.0\.0\.1/8' has host bits"),
    # found by fuzzing: 40,000 brackets overflowed libyaml's C stack (a segmentation fault),
    # and a control character gave a two-line message without a line
    ("hosts:\n  h1: " + "[" * 40_000 + "]" * 40_000 + "\n", r": Cartography nests \d+ levels"),
    ("hosts:\n  h1: 10.0.0.1\x00\n", r":2: character U\+0000 is not allowed in YAML"),
    # found by fuzzing: these passed for 10.0.0.0/8, fe80::1 and port 53
    ("networks:\n  lan: 10.0.0.0/08\n", r":2: bad address or CIDR: bad prefix length '08'"),
    ("networks:\n  lan: 10.0.0.0/\u0668\n", r":2: bad address or CIDR: bad prefix length"),
    ("hosts:\n  h: fe80::1%eth0\n", r":2: bad address or CIDR: .* has a zone \(scope\) id"),
    ("hosts:\n  h:\n    addresses: 10.0.0.1\n    services: [udp/\u0665\u0663]\n",
     r":4: bad service 'udp/\u0665\u0663': bad port"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_bad_files_name_file_line_and_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=r"^" + str(path).replace(".", r"\.") + message):
        load_cartography(path)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot read Cartography"):
        load_cartography(tmp_path / "absent.yaml")


def test_values_are_read_as_written_not_as_yaml_types(tmp_path: Path) -> None:
    # unquoted IPv6 and names YAML 1.1 would turn into booleans stay text
    path = write(
        tmp_path,
        """
        hosts:
          no: 10.0.0.1
          v6: 2001:db8::1
        groups:
          g: [no, v6]
        """,
    )
    cartography = load_cartography(path)
    assert members(cartography, "g", "10.0.0.1", "2001:db8::1") == [True, True]
    assert values_from_ints([1]).dtype == np.dtype("V16")


def test_a_chain_of_a_thousand_groups_resolves(tmp_path: Path) -> None:
    """Found by fuzzing: groups nest to any depth, but resolving them recursed, and a chain
    of 1,200 went past Python's recursion limit."""
    lines = ["groups:"] + [f"  g{k}: [g{k + 1}]" for k in range(1200)]
    lines += ["  g1200: [10.9.0.0/16]"]
    cartography = load_cartography(write(tmp_path, "\n".join(lines) + "\n"))
    assert members(cartography, "g0", "10.9.1.1", "10.8.1.1") == [True, False]


@pytest.mark.parametrize("seed", range(6))
def test_declared_services_equal_a_plain_reading(tmp_path: Path, seed: int) -> None:
    """The sparse cell index (a dense table per distinct service took cells x services of
    memory: 617 MB for 20,000 hosts of their own services, found by fuzzing) answers as a
    plain loop over every declared service does."""
    rng = np.random.default_rng(seed)
    choices = [
        "tcp/22",
        "tcp/80,443",
        "udp/5000-5100",
        "tcp/1-1024",
        "gre",
        "icmp",
        "udp/53",
        "sctp/2905",
        "tcp/8080-8090,9000",
    ]
    lines = ["hosts:"]
    for k in range(40):
        addresses = [
            f"10.0.{rng.integers(0, 4)}.{rng.integers(0, 16)}" for _ in range(rng.integers(1, 3))
        ]
        services = sorted(set(rng.choice(choices, size=rng.integers(1, 4)).tolist()))
        lines += [
            f"  h{k}:",
            f"    addresses: [{', '.join(sorted(set(addresses)))}]",
            f"    services: [{', '.join(repr(x) for x in services)}]",
        ]
    cartography = load_cartography(write(tmp_path, "\n".join(lines) + "\n"))
    n = 3000
    texts = [f"10.0.{rng.integers(0, 5)}.{rng.integers(0, 20)}" for _ in range(n)]
    addresses = matrix(*texts)
    protocols = rng.choice(np.array([6, 17, 47, 1, 132], np.uint8), size=n)
    ports = rng.choice(
        np.array([22, 80, 443, 53, 5050, 2905, 8085, 9000, 1024, 0, 70], np.uint16), size=n
    )
    expected = np.zeros(n, dtype=bool)
    for declared in cartography.services:
        expected |= declared.addresses.contains(addresses) & declared.service.mask(protocols, ports)
    assert expected.any() and not expected.all()
    assert cartography.declared_services(addresses, protocols, ports).tolist() == expected.tolist()


@pytest.mark.parametrize("empty", ["", " ~", " null", " Null", " NULL"])  # Y11: an audit
def test_an_empty_section_is_the_same_however_written(tmp_path: Path, empty: str) -> None:
    """Found by fuzzing: `hosts:` was an empty section and `hosts: ~`, which YAML reads the
    same, an error. A quoted '' is text, not nothing, and stays an error."""
    path = write(tmp_path, f"hosts:{empty}\nnetworks:{empty}\ngroups:\n  g: [10.0.0.0/8]\n")
    assert members(load_cartography(path), "g", "10.1.1.1") == [True]
    path = write(tmp_path, "hosts: ''\n")
    with pytest.raises(UsageError, match=r":1: hosts must be a mapping"):
        load_cartography(path)
