"""Services: an IP protocol (IANA protocol number) and, for TCP/UDP/SCTP/UDP-Lite, ports.

Shared by the Cartography (`services: [tcp/5432]` on a host) and the Flow Matrix
(`protocol: tcp`, `ports: [80, 8000-8099]`). Names follow the IANA "Protocol Numbers"
registry keywords, case-insensitive; any number 0-255 is accepted as well.

The surprising thing: ports only mean something for the port-carrying protocols. ICMP
sessions carry no ports (their type/code travels in their own columns), so a service on
ICMP, GRE, ESP... is the protocol alone, and giving it ports is an error rather than a
rule that could never match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..protocols import PORT_PROTOCOLS, PROTOCOL_KEYWORDS, protocol_keyword

# names a rule or a query may give a protocol: IANA's keywords, which the sessions table
# writes (`EIGRP`, `HOPOPT` were refused: an audit), and the usual short names
# (the short names first: a rule's message names a protocol by its first name here)
PROTOCOL_NUMBERS: dict[str, int] = {
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "ospf": 89,
    "pim": 103,
    "vrrp": 112,
    "sctp": 132,
    "udplite": 136,
}
# IANA's keywords of the tunnels IPv4 (4, IP in IP) and IPv6 (41, IPv6 in IPv4): a rule or a
# query naming them means the IP version far more often, which the addresses tell (a review)
TUNNEL_KEYWORDS: dict[str, int] = {"ipv4": 4, "ipv6": 41}
PROTOCOL_NUMBERS.update(
    {
        keyword.lower(): number
        for number, keyword in PROTOCOL_KEYWORDS.items()
        if keyword.lower() not in PROTOCOL_NUMBERS and keyword.lower() not in TUNNEL_KEYWORDS
    }
)
# protocols of one IP version only: ICMP and IGMP are IPv4's (IPv6 has ICMPv6 and MLD in it)
PROTOCOL_FAMILIES: dict[int, int] = {1: 4, 2: 4, 58: 6}
PORT_MAX = 65535


def parse_protocol(text: str) -> int | None:
    """`tcp`, `UDP`, `47` -> protocol number; `any` -> None. ValueError when unknown."""
    word = text.strip().lower()
    if word == "any":
        return None
    if word.isascii() and word.isdigit():  # str.isdigit() took Arabic-Indic ٦ for tcp
        number = int(word)
        if number > 255:
            raise ValueError(f"protocol number {number} is out of range (0-255)")
        return number
    if word in TUNNEL_KEYWORDS:
        raise ValueError(
            f"protocol {text!r} is ambiguous: IANA's keyword of protocol "
            f"{TUNNEL_KEYWORDS[word]}, a tunnel; write that number for the tunnel "
            "(IPv4 or IPv6 traffic is told by its addresses)"
        )
    if word not in PROTOCOL_NUMBERS:
        known = ", ".join(sorted(PROTOCOL_NUMBERS))
        raise ValueError(f"unknown protocol {text!r} (a number 0-255, any, or one of {known})")
    return PROTOCOL_NUMBERS[word]


def parse_port_range(text: str) -> tuple[int, int]:
    """`443` or `8000-8099` -> inclusive (first, last). ValueError with the reason."""
    first_text, dash, last_text = text.strip().partition("-")
    bounds = [first_text.strip(), last_text.strip()] if dash else [first_text.strip()]
    for bound in bounds:
        # ASCII digits only: str.isdigit() took Arabic-Indic ٥٣ for port 53
        if not (bound.isascii() and bound.isdigit()) or int(bound) > PORT_MAX:
            raise ValueError(f"bad port {text!r} (a port 0-65535 or a range like 8000-8099)")
    first, last = int(bounds[0]), int(bounds[-1])
    if first > last:
        raise ValueError(f"bad port range {text!r}: {first} > {last}")
    return first, last


def merge_port_ranges(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, merged inclusive port ranges."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return tuple(merged)


@dataclass(frozen=True)
class Service:
    """Protocols (None: any) and server ports (None: any port)."""

    protocols: tuple[int, ...] | None
    ports: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        # one normal form: equal services compare and hash equal, and ranges never overlap
        if self.protocols is not None:
            object.__setattr__(self, "protocols", tuple(sorted(set(self.protocols))))
        if self.ports is not None:
            object.__setattr__(self, "ports", merge_port_ranges(list(self.ports)))
        if self.ports is not None:
            if self.protocols is None:
                raise ValueError("ports need a protocol (tcp, udp, sctp or udplite), not any")
            portless = [p for p in self.protocols if p not in PORT_PROTOCOLS]
            if portless:
                number = portless[0]
                name = protocol_keyword(number).lower()
                label = name if name == str(number) else f"{name} ({number})"
                raise ValueError(
                    f"protocol {label} has no ports; only tcp, udp, sctp and udplite do"
                )

    def mask(
        self, protocols: npt.NDArray[np.integer[Any]], ports: npt.NDArray[np.integer[Any]]
    ) -> npt.NDArray[np.bool_]:
        """bool per row: does (protocol number, server port) fall in this service?"""
        if self.protocols is None:
            result = np.ones(len(protocols), dtype=bool)
        else:
            result = np.isin(protocols, np.asarray(self.protocols, dtype=protocols.dtype))
        if self.ports is not None:
            table = np.zeros(PORT_MAX + 1, dtype=bool)
            for first, last in self.ports:
                table[first : last + 1] = True
            result &= table[ports]
        return result

    def describe(self) -> str:
        names = {number: name for name, number in reversed(PROTOCOL_NUMBERS.items())}
        protocols = (
            "any"
            if self.protocols is None
            else ",".join(names.get(p, str(p)) for p in self.protocols)
        )
        if self.ports is None:
            return protocols
        ports = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in self.ports)
        return f"{protocols}/{ports}"
