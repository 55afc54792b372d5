"""IANA's protocol keywords, in a module of their own: the sessions table writes them
(sessionize) and the Cartography, the Flow Matrix and the queries read them back (matching),
and neither side should import the other's machinery for a table of names."""

from __future__ import annotations

# IANA "Assigned Internet Protocol Numbers", Keyword column (protocol-numbers.xhtml)
PROTOCOL_KEYWORDS: dict[int, str] = {
    0: "HOPOPT",
    1: "ICMP",
    2: "IGMP",
    3: "GGP",
    4: "IPv4",
    6: "TCP",
    8: "EGP",
    9: "IGP",
    17: "UDP",
    27: "RDP",
    33: "DCCP",
    41: "IPv6",
    43: "IPv6-Route",
    44: "IPv6-Frag",
    46: "RSVP",
    47: "GRE",
    50: "ESP",
    51: "AH",
    58: "IPv6-ICMP",
    59: "IPv6-NoNxt",
    60: "IPv6-Opts",
    88: "EIGRP",
    89: "OSPFIGP",
    94: "IPIP",
    103: "PIM",
    108: "IPComp",
    112: "VRRP",
    115: "L2TP",
    132: "SCTP",
    136: "UDPLite",
    137: "MPLS-in-IP",
}


# the protocols whose endpoints carry ports (sessions.md, "Words"): TCP, UDP, SCTP, UDP-Lite.
# The kernel's _canonical spells them out (numba reads no tuple of a module's); a test holds
# it to this one.
PORT_PROTOCOLS: tuple[int, ...] = (6, 17, 132, 136)


def protocol_keyword(number: int) -> str:
    """IANA keyword of a protocol number, or the number as text when it has none here."""
    return PROTOCOL_KEYWORDS.get(number, str(number))
