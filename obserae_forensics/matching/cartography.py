"""The Cartography: names for addresses (hosts, networks, groups) and declared services.

Format: one YAML mapping with up to three sections (README, "Cartography file"):

    hosts:                      # name -> addresses, optional services and description
      db1:
        addresses: [10.1.0.5, "2001:db8::5"]
        services: [tcp/5432]
      resolver: 172.16.238.2    # shorthand: just the address(es)
    networks:                   # name -> CIDRs (v4 and v6), or {cidrs: [...], description}
      lan: [172.16.238.0/24, "fe80::/64"]
    groups:                     # name -> hosts, networks, groups, built-ins, CIDRs
      servers: [db1, resolver, 192.0.2.0/28]

Hosts, networks and groups share one namespace with the built-in names (internal4,
internet4, internal6, internet6, multicast, any; see builtin_networks.py). A name is a
letter or `_` followed by letters, digits, `_`, `.`, `-`, so it can never be mistaken for
an address. Every problem is a UsageError "file:line: problem", raised before any work.

The surprising thing: groups may name groups defined further down the file, so they are
resolved after the whole file is read, depth first; a group reached again while it is
being resolved is a cycle and is refused with the path that closes it (`a -> b -> a`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from ..errors import UsageError
from ..protocols import PORT_PROTOCOLS
from .address_sets import (
    AddressCells,
    AddressSet,
    network_intervals,
    parse_network,
    values_from_ints,
    without_mapped,
)
from .builtin_networks import BUILTIN_NAMES, builtin_sets
from .services import (
    PORT_MAX,
    Service,
    merge_port_ranges,
    parse_port_range,
    parse_protocol,
)
from .yaml_nodes import YamlFile, is_empty, line_of

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
SECTIONS = ("hosts", "networks", "groups")


@dataclass(frozen=True)
class DeclaredService:
    """A host that listens on a service: the Cartography's evidence for the server side."""

    host: str
    addresses: AddressSet
    service: Service


class Cartography:
    """Resolved names (built-ins included), their kinds and the declared services."""

    def __init__(
        self,
        sets: dict[str, AddressSet],
        kinds: dict[str, str],
        services: tuple[DeclaredService, ...] = (),
        *,
        descriptions: dict[str, str] | None = None,
        path: Path | None = None,
        sha256: str | None = None,
    ) -> None:
        self._sets = sets
        self.kinds = kinds  # name -> "builtin", "host", "network" or "group"
        self.services = services
        self.descriptions = descriptions or {}
        self.path = path
        self.sha256 = sha256  # of the bytes read from `path` (the manifest cites it)
        # which (protocol, port range) each address cell declares, as a sparse index: a
        # dense table per distinct service took cells x services of memory, and a
        # Cartography of 20,000 hosts with services of their own took 617 MB and 10 s
        # (100,000 ran out of memory)
        self._service_cells = AddressCells(s.addresses for s in services)
        self._cell_starts, self._atoms = _service_index(self._service_cells, services)

    @classmethod
    def builtin(cls) -> Cartography:
        """The Cartography of a run without `--cartography`: the built-in names only."""
        sets = builtin_sets()
        return cls(sets, dict.fromkeys(sets, "builtin"))

    def names(self) -> tuple[str, ...]:
        return tuple(self._sets)

    def lookup(self, reference: str) -> AddressSet | None:
        """Name, CIDR or address -> its set; None for an unknown name.

        Raises ValueError (with the reason) for text that looks like an address but is wrong.
        """
        if reference in self._sets:
            return self._sets[reference]
        found = network_intervals(reference)
        if found is None:
            return None
        return AddressSet(tuple(found))

    def resolve(self, reference: str) -> AddressSet:
        """Name, CIDR or address -> the sorted disjoint intervals it covers."""
        try:
            found = self.lookup(reference)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if found is None:
            raise UsageError(unknown_name_message(reference))
        return found

    def declared_services(
        self, addresses: npt.NDArray[Any], protocols: npt.NDArray[Any], ports: npt.NDArray[Any]
    ) -> npt.NDArray[np.bool_]:
        """bool per row: does a host at this address declare this protocol/port?

        `addresses` is (n, 16) uint8 (IPv4 mapped), `protocols` uint8 protocol numbers,
        `ports` uint16 ports (ignored for protocols without ports).
        """
        result = np.zeros(len(protocols), dtype=bool)
        if not self.services:
            return result
        cells = self._service_cells.locate(addresses)
        protocols = np.asarray(protocols).astype(np.int64)
        ports = np.asarray(ports).astype(np.int64)
        counts = self._cell_starts[cells + 1] - self._cell_starts[cells]
        rows = np.flatnonzero(counts)
        # (row, atom) pairs a slice of rows at a time, so that a host declaring many
        # services in a busy batch stays within a few million pairs
        done = 0
        while done < len(rows):
            reach = np.cumsum(counts[rows[done:]])
            take = max(1, int(np.searchsorted(reach, _MAX_PAIRS, side="right")))
            chunk = rows[done : done + take]
            done += take
            per_row = counts[chunk]
            pair_row = np.repeat(chunk, per_row)
            first = np.repeat(
                self._cell_starts[cells[chunk]] - (np.cumsum(per_row) - per_row), per_row
            )
            atom = self._atoms[first + np.arange(len(pair_row))]
            hit = ((atom[:, 0] < 0) | (atom[:, 0] == protocols[pair_row])) & (
                (atom[:, 1] <= ports[pair_row]) & (ports[pair_row] <= atom[:, 2])
            )
            result[pair_row[hit]] = True
        return result


_MAX_PAIRS = 1 << 22
_ANY_PROTOCOL = -1


def _service_index(
    cells: AddressCells, services: tuple[DeclaredService, ...]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(start of each cell's atoms, atoms): the atoms of cell c are rows
    starts[c]:starts[c + 1] of the (protocol or -1 for any, first port, last port) array,
    one per protocol and port range of every service a host covering c declares (a service
    with no ports spans 0-65535). Protocol and ports both match, as Service.mask asks."""
    entries: set[tuple[int, int, int, int]] = set()
    for declared in services:
        service = declared.service
        atoms = [
            (protocol, first, last)
            for protocol in (service.protocols or (_ANY_PROTOCOL,))
            for first, last in (service.ports or ((0, PORT_MAX),))
        ]
        bounds = values_from_ints(
            [v for interval in declared.addresses.intervals for v in interval]
        )
        located = cells.locate(bounds).reshape(-1, 2)
        for low, high in located.tolist():
            for cell in range(low, high + 1):
                entries.update((cell, *atom) for atom in atoms)
    ordered = np.array(sorted(entries), dtype=np.int64).reshape(-1, 4)
    starts = np.searchsorted(ordered[:, 0], np.arange(cells.nowhere + 2))
    return starts.astype(np.int64), np.ascontiguousarray(ordered[:, 1:])


def unknown_name_message(reference: str) -> str:
    return (
        f"unknown name {reference!r} (not a Cartography host, network or group, a built-in "
        f"name ({', '.join(BUILTIN_NAMES)}), an address or a CIDR)"
    )


def empty_cartography() -> Cartography:
    """The Cartography of a run without `--cartography`: built-in names, no services."""
    return Cartography.builtin()


def load_cartography(path: Path) -> Cartography:
    """Read and check a Cartography YAML file; UsageError "file:line: problem" on any fault."""
    return _CartographyReader(YamlFile(path, what="Cartography")).read()


class _CartographyReader:
    """One pass over the sections to collect names, then group resolution."""

    def __init__(self, source: YamlFile) -> None:
        self.source = source
        self.sets: dict[str, AddressSet] = builtin_sets()
        self.kinds: dict[str, str] = dict.fromkeys(self.sets, "builtin")
        self.lines: dict[str, int] = {}
        self.descriptions: dict[str, str] = {}
        self.services: list[DeclaredService] = []
        self.group_members: dict[str, list[tuple[yaml.Node, str]]] = {}

    def read(self) -> Cartography:
        top = self.source.mapping(self.source.root, "the Cartography", allowed=SECTIONS)
        readers = {
            "hosts": self.read_host,
            "networks": self.read_network,
            "groups": self.read_group,
        }
        # in the file's order: read hosts first, networks, then groups whatever their order,
        # a host repeating the name of a network above it was refused at the network, "first
        # as a host" on a line below it
        for section, (_, body) in top.items():
            if is_empty(body):
                continue  # `groups:` with nothing under it, or `groups: ~`
            for name, (key_node, value_node) in self.source.mapping(body, section).items():
                self.declare(name, key_node, section)
                readers[section](name, value_node)
        for name in self.group_members:
            self.resolve_group(name, [])
        return Cartography(
            self.sets,
            self.kinds,
            tuple(self.services),
            descriptions=self.descriptions,
            path=self.source.path,
            sha256=self.source.sha256,
        )

    def declare(self, name: str, node: yaml.Node, section: str) -> None:
        kind = section[:-1]
        if name in BUILTIN_NAMES:
            self.source.fail(node, f"{name!r} is a built-in name and cannot be redefined")
        if not NAME_PATTERN.match(name):
            self.source.fail(
                node,
                f"bad {kind} name {name!r}: start with a letter or _, then letters, digits, "
                "_ . or -",
            )
        if name in self.kinds:
            first = self.lines[name]
            self.source.fail(
                node, f"{name!r} is defined twice (first as a {self.kinds[name]} at line {first})"
            )
        self.kinds[name] = kind
        self.lines[name] = line_of(node)

    def entries(
        self, name: str, node: yaml.Node, what: str, list_key: str, extra: tuple[str, ...]
    ) -> tuple[list[tuple[yaml.Node, str]], dict[str, tuple[yaml.Node, yaml.Node]]]:
        """`name: items` or `name: {list_key: items, description: ...}` -> items, mapping."""
        if not isinstance(node, yaml.MappingNode):
            return self.source.scalars(node, f"{what} {name!r}"), {}
        fields = self.source.mapping(
            node, f"{what} {name!r}", allowed=(list_key, "description", *extra)
        )
        if list_key not in fields:
            self.source.fail(node, f"{what} {name!r} has no {list_key!r}")
        if "description" in fields:
            self.descriptions[name] = self.source.scalar(fields["description"][1], "description")
        return self.source.scalars(fields[list_key][1], f"{list_key} of {name!r}"), fields

    def read_host(self, name: str, node: yaml.Node) -> None:
        items, fields = self.entries(name, node, "host", "addresses", ("services",))
        intervals = []
        for item, text in items:
            interval = self.network(item, text)
            if interval[0] != interval[1]:
                self.source.fail(
                    item,
                    f"host {name!r}: {text!r} is a network; hosts hold single addresses "
                    "(put CIDRs under networks)",
                )
            intervals.append(interval)
        addresses = AddressSet.from_intervals(intervals)
        self.sets[name] = addresses
        if "services" in fields:
            for item, text in self.source.scalars(fields["services"][1], f"services of {name!r}"):
                self.services.append(DeclaredService(name, addresses, self.service(item, text)))

    def read_network(self, name: str, node: yaml.Node) -> None:
        items, _ = self.entries(name, node, "network", "cidrs", ())
        self.sets[name] = AddressSet.from_intervals(
            part for i, t in items for part in self.networks(i, t)
        )

    def read_group(self, name: str, node: yaml.Node) -> None:
        items, _ = self.entries(name, node, "group", "members", ())
        self.group_members[name] = items

    def network(self, node: yaml.Node, text: str) -> tuple[int, int]:
        try:
            interval = parse_network(text)
        except ValueError as exc:
            self.source.fail(node, f"bad address or CIDR: {exc}")
        if interval is None:
            self.source.fail(node, f"{text!r} is not an address or CIDR")
        return interval

    def networks(self, node: yaml.Node, text: str) -> list[tuple[int, int]]:
        """A network's intervals (network_intervals: an IPv6 CIDR holds no IPv4)."""
        return without_mapped(text, self.network(node, text))

    def service(self, node: yaml.Node, text: str) -> Service:
        """`tcp/5432`, `udp/5060-5061`, `gre` -> Service; ports required for tcp/udp/..."""
        protocol_text, slash, ports_text = text.partition("/")
        try:
            protocol = parse_protocol(protocol_text)
            if protocol is None:
                raise ValueError("a declared service needs one protocol, not any")
            if not slash:
                if protocol in PORT_PROTOCOLS:
                    raise ValueError(f"{text!r} needs a port, like {protocol_text}/443")
                return Service((protocol,))
            ranges = [parse_port_range(part) for part in ports_text.split(",")]
            return Service((protocol,), merge_port_ranges(ranges))
        except ValueError as exc:
            self.source.fail(node, f"bad service {text!r}: {exc}")

    def resolve_group(self, name: str, path: list[str]) -> AddressSet:
        """The addresses of group `name`, its member groups resolved first. Depth-first with
        a stack of its own: groups nest to any depth, and a chain of a thousand went past
        Python's recursion limit."""
        if name in self.sets:
            return self.sets[name]
        chain = [*path, name]  # the groups being resolved, outermost first
        on_chain = set(chain)
        frames: list[tuple[str, int, list[tuple[int, int]]]] = [(name, 0, [])]
        while frames:
            group, index, intervals = frames[-1]
            members = self.group_members[group]
            if index == len(members):
                frames.pop()
                on_chain.discard(chain.pop())
                self.sets[group] = AddressSet.from_intervals(intervals)
                if frames:
                    frames[-1][2].extend(self.sets[group].intervals)
                continue
            frames[-1] = (group, index + 1, intervals)
            item, member = members[index]
            if member in on_chain:
                cycle = " -> ".join([*chain[chain.index(member) :], member])
                self.source.fail(item, f"group cycle: {cycle}")
            if member in self.sets:
                intervals.extend(self.sets[member].intervals)
            elif member in self.group_members:
                chain.append(member)
                on_chain.add(member)
                frames.append((member, 0, []))
            else:
                found = self.network_or_none(item, member)
                if found is None:
                    self.source.fail(item, f"group {group!r}: {unknown_name_message(member)}")
                intervals.extend(found)
        return self.sets[name]

    def network_or_none(self, node: yaml.Node, text: str) -> list[tuple[int, int]] | None:
        try:
            return network_intervals(text)
        except ValueError as exc:
            self.source.fail(node, f"bad address or CIDR: {exc}")
