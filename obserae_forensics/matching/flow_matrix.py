"""The Flow Matrix: named rules saying which clients may reach which servers on which service.

Format: one YAML mapping with a `rules` list (README, "Flow Matrix file"):

    rules:
      - name: lan-dns                  # unique; becomes session_matches.rule
        description: hosts resolve through the lab resolver
        source: lan                    # the CLIENT side: names, CIDRs, addresses, or a list
        destination: [resolver, "2001:db8::53"]   # the SERVER side
        protocol: udp                  # a name, a number 0-255, a list, or any
        ports: [53, 5353-5354]         # server ports or ranges; omit for every port

Names come from the Cartography (load_cartography), built-ins included. A rule is about
orientation: it matches a session whose client is in `source` and whose server is in
`destination`, never the reverse, so "lan may query the resolver" does not also allow
the resolver to open connections into the lan.

The surprising thing: rule order carries no priority. A session matches every rule it
satisfies (session_matches has one row per session and rule); `rule_index` is the rule's
place in the file, kept so that outputs list a session's rules in file order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .address_sets import AddressSet
from .cartography import Cartography, unknown_name_message
from .services import (
    PROTOCOL_FAMILIES,
    PROTOCOL_NUMBERS,
    Service,
    merge_port_ranges,
    parse_port_range,
    parse_protocol,
)
from .yaml_nodes import YamlFile, is_empty, line_of

RULE_KEYS = ("name", "description", "source", "destination", "protocol", "ports")


@dataclass(frozen=True)
class Rule:
    """One Flow Matrix rule, its references resolved to address sets."""

    index: int  # place in the file, from 0
    name: str
    source: AddressSet  # client side
    destination: AddressSet  # server side
    service: Service
    description: str = ""
    source_names: tuple[str, ...] = ()
    destination_names: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class FlowMatrix:
    """The rules of one Flow Matrix file, in file order."""

    rules: tuple[Rule, ...]
    path: Path | None = None
    sha256: str | None = None  # of the bytes read from `path` (the manifest cites it)

    @property
    def rule_names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.rules)


def load_flow_matrix(path: Path, cartography: Cartography) -> FlowMatrix:
    """Read and check a Flow Matrix YAML file against `cartography`.

    Raises UsageError "file:line: problem" for YAML syntax, unknown names, bad CIDRs, bad
    ports or protocols, missing fields, duplicate rule names and rules whose source and
    destination share no IP version.
    """
    source = YamlFile(path, what="Flow Matrix")
    top = source.mapping(source.root, "the Flow Matrix", allowed=("rules",))
    if "rules" not in top:
        source.fail(source.root, "the Flow Matrix has no 'rules' list")
    rules_node = top["rules"][1]
    if is_empty(rules_node):  # `rules:` with nothing under it, or `rules: ~`
        return FlowMatrix((), path, source.sha256)
    if not isinstance(rules_node, yaml.SequenceNode):
        source.fail(rules_node, "'rules' must be a list of rules (lines starting with '- ')")
    rules: list[Rule] = []
    first_lines: dict[str, int] = {}
    for index, node in enumerate(rules_node.value):
        rule = _read_rule(source, node, index, cartography)
        if rule.name in first_lines:
            source.fail(
                node,
                f"duplicate rule name {rule.name!r} (first at line {first_lines[rule.name]})",
            )
        first_lines[rule.name] = rule.line
        rules.append(rule)
    return FlowMatrix(tuple(rules), path, source.sha256)


def _read_rule(source: YamlFile, node: yaml.Node, index: int, cartography: Cartography) -> Rule:
    fields = source.mapping(node, f"rule #{index + 1}", allowed=RULE_KEYS)
    for required in ("name", "source", "destination", "protocol"):
        if required not in fields:
            source.fail(node, f"rule #{index + 1} has no {required!r}")
    name = source.scalar(fields["name"][1], "the rule name")
    what = f"rule {name!r}"
    source_set, source_names = _read_side(
        source, fields["source"][1], f"{what} source", cartography
    )
    destination_set, destination_names = _read_side(
        source, fields["destination"][1], f"{what} destination", cartography
    )
    _check_families(source, node, what, source_set, destination_set)
    service = _read_service(source, fields, what)
    _check_protocol_families(
        source, fields["protocol"][1], what, service, source_set.families & destination_set.families
    )
    description = ""
    if "description" in fields:
        description = source.scalar(fields["description"][1], f"{what} description")
    return Rule(
        index=index,
        name=name,
        source=source_set,
        destination=destination_set,
        service=service,
        description=description,
        source_names=source_names,
        destination_names=destination_names,
        line=line_of(node),
    )


def _read_side(
    source: YamlFile, node: yaml.Node, what: str, cartography: Cartography
) -> tuple[AddressSet, tuple[str, ...]]:
    sets = []
    names = []
    for item, reference in source.scalars(node, what):
        try:
            found = cartography.lookup(reference)
        except ValueError as exc:
            source.fail(item, f"{what}: bad address or CIDR: {exc}")
        if found is None:
            # a Flow Matrix naming hosts and networks without --cartography said only
            # "unknown name 'lab'" (a review)
            hint = (
                "; no Cartography file was read (--cartography)" if cartography.path is None else ""
            )
            source.fail(item, f"{what}: {unknown_name_message(reference)}{hint}")
        sets.append(found)
        names.append(reference)
    return sets[0].union(*sets[1:]), tuple(names)


def _check_families(
    source: YamlFile, node: yaml.Node, what: str, client: AddressSet, server: AddressSet
) -> None:
    """Refuse a rule that no session can match for its address families alone (a v4-only
    group as source, a v6-only one as destination): accepted, it would sit silent in every
    report as a rule nothing broke."""
    # (a side is never empty: the Cartography refuses empty hosts, networks and groups)
    if not client.families & server.families:

        def named(families: frozenset[int]) -> str:
            return " and ".join(f"IPv{family}" for family in sorted(families))

        source.fail(
            node,
            f"{what} can never match: its source holds only "
            f"{named(client.families)} addresses and its destination only "
            f"{named(server.families)} (a session's client and server "
            "are of one IP version)",
        )


def _check_protocol_families(
    source: YamlFile, node: yaml.Node, what: str, service: Service, families: frozenset[int]
) -> None:
    """Refuse a rule whose every protocol is of an IP version its endpoints cannot hold
    (`icmp` between IPv6 networks, for IPv6 ping: that is `icmpv6`), for the reason
    _check_families gives (an audit found them accepted)."""
    if service.protocols is None:
        return
    possible = [
        number for number in service.protocols if PROTOCOL_FAMILIES.get(number) in (None, *families)
    ]
    if not possible:
        names = {number: name for name, number in reversed(PROTOCOL_NUMBERS.items())}
        listed = ", ".join(names.get(number, str(number)) for number in service.protocols)
        versions = " and ".join(f"IPv{family}" for family in sorted(families))
        hint = " (IPv6's is icmpv6)" if 1 in service.protocols and families == {6} else ""
        source.fail(
            node,
            f"{what} can never match: {listed} is not carried over {versions}, "
            f"the only IP version its source and destination share{hint}",
        )


def _read_service(
    source: YamlFile, fields: dict[str, tuple[yaml.Node, yaml.Node]], what: str
) -> Service:
    protocol_node = fields["protocol"][1]
    protocols: list[int] = []
    any_protocol = False
    for item, text in source.scalars(protocol_node, f"{what} protocol"):
        try:
            number = parse_protocol(text)
        except ValueError as exc:
            source.fail(item, f"{what}: {exc}")
        if number is None:
            any_protocol = True
        elif number not in protocols:
            protocols.append(number)
    if any_protocol and protocols:
        source.fail(protocol_node, f"{what}: 'any' cannot be listed with other protocols")
    ports = None
    if "ports" in fields:
        ranges = []
        for item, text in source.scalars(fields["ports"][1], f"{what} ports"):
            try:
                ranges.append(parse_port_range(text))
            except ValueError as exc:
                source.fail(item, f"{what}: {exc}")
        ports = merge_port_ranges(ranges)
    try:
        return Service(None if any_protocol else tuple(sorted(protocols)), ports)
    except ValueError as exc:
        source.fail(fields["ports"][0], f"{what}: {exc}")
