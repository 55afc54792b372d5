"""The Cartography's built-in names and the exact ranges behind them (data, no logic).

Sources: RFC 1918 (private IPv4), RFC 6598 (shared address space), RFC 3927 (IPv4 link
local), RFC 1122 (loopback, "this network"), RFC 5737 / RFC 3849 / RFC 9637
(documentation), RFC 2544 / RFC 5180 (benchmarking), RFC 6890 and the IANA IPv4/IPv6
Special-Purpose Address Registries, RFC 4193 (unique local), RFC 4291 (link local,
loopback, multicast, global unicast 2000::/3).

The surprising thing: `internet4` is not the complement of `internal4`. Documentation,
benchmarking, multicast and reserved space are neither internal nor public, so traffic to
203.0.113.7 or 224.0.0.251 matches neither name. `any` covers IPv4 and IPv6 alike, since
IPv4 is held as IPv4-mapped IPv6.
"""

from __future__ import annotations

from .address_sets import AddressSet

# Addresses that belong to a site: what an analyst calls "our side" of a conversation.
INTERNAL4 = (
    "10.0.0.0/8",  # RFC 1918
    "172.16.0.0/12",  # RFC 1918
    "192.168.0.0/16",  # RFC 1918
    "100.64.0.0/10",  # RFC 6598 carrier-grade NAT shared space
    "169.254.0.0/16",  # RFC 3927 link local
    "127.0.0.0/8",  # RFC 1122 loopback
)

# IPv4 that is not globally routable unicast (IANA registry, "Globally Reachable: False",
# plus multicast and the reserved class E block). internet4 = IPv4 minus these.
NON_PUBLIC4 = (
    *INTERNAL4,
    "0.0.0.0/8",  # RFC 1122 "this network"
    "192.0.0.0/24",  # RFC 6890 IETF protocol assignments (but PUBLIC_IN_NON_PUBLIC4)
    "192.0.2.0/24",  # RFC 5737 TEST-NET-1
    "192.88.99.0/24",  # RFC 7526 deprecated 6to4 relay anycast
    "198.18.0.0/15",  # RFC 2544 benchmarking
    "198.51.100.0/24",  # RFC 5737 TEST-NET-2
    "203.0.113.0/24",  # RFC 5737 TEST-NET-3
    "224.0.0.0/4",  # RFC 5771 multicast
    "240.0.0.0/4",  # RFC 1112 reserved, includes 255.255.255.255 broadcast
)
# Globally reachable blocks inside NON_PUBLIC4 (the registry's "True" under 192.0.0.0/24):
# a rule on internet4 saw the anycast NAT-PMP/PCP and TURN servers as not public (audit).
PUBLIC_IN_NON_PUBLIC4 = (
    "192.0.0.9/32",  # RFC 7723 Port Control Protocol anycast
    "192.0.0.10/32",  # RFC 8155 Traversal Using Relays around NAT anycast
)

INTERNAL6 = (
    "fc00::/7",  # RFC 4193 unique local
    "fe80::/10",  # RFC 4291 link local
    "::1/128",  # RFC 4291 loopback
)

# Global unicast space minus the parts of it that never appear on the Internet, as the
# IANA IPv6 Special-Purpose Address Registry marks them ("Globally Reachable: False").
GLOBAL_UNICAST6 = ("2000::/3",)
# RFC 6052 NAT64 well-known prefix: IPv4 hosts seen from IPv6, public when the IPv4 address
# it embeds is (the prefix must not embed others: RFC 6052 §3.1, found by a review)
NAT64_PREFIX = 0x0064FF9B << 96
IPV4_MAPPED = 0xFFFF << 32
NON_PUBLIC_IN_GLOBAL6 = (
    "2001:db8::/32",  # RFC 3849 documentation
    "3fff::/20",  # RFC 9637 documentation
    "2001::/23",  # RFC 2928 IETF protocol assignments, but PUBLIC_IN_NON_PUBLIC6
)
# The blocks of 2001::/23 the registry calls globally reachable, and Teredo ("N/A": its
# addresses are Internet hosts behind NAT, reached across the Internet). What stays out:
# 2001:2::/48 benchmarking (RFC 5180), 2001:10::/28 deprecated ORCHID (RFC 4843), and
# unassigned space of the block (found by an audit: 2001:10::1 counted as internet6).
PUBLIC_IN_NON_PUBLIC6 = (
    "2001::/32",  # RFC 4380 Teredo
    "2001:1::1/128",  # RFC 7723 Port Control Protocol anycast
    "2001:1::2/128",  # RFC 8155 TURN anycast
    "2001:1::3/128",  # RFC 9665 DNS-SD Service Registration Protocol anycast
    "2001:3::/32",  # RFC 7450 AMT
    "2001:4:112::/48",  # RFC 7535 AS112-v6
    "2001:20::/28",  # RFC 7343 ORCHIDv2
    "2001:30::/28",  # RFC 9374 drone remote ID
)

MULTICAST = (
    "224.0.0.0/4",  # RFC 5771
    "ff00::/8",  # RFC 4291
)

IPV4 = ("0.0.0.0/0",)  # as IPv4-mapped: ::ffff:0:0/96


def builtin_sets() -> dict[str, AddressSet]:
    """Built-in name -> its address set."""
    internet4 = (
        AddressSet.from_networks(NON_PUBLIC4)
        .complement(AddressSet.from_networks(IPV4))
        .union(AddressSet.from_networks(PUBLIC_IN_NON_PUBLIC4))
    )
    nat64 = AddressSet.from_intervals(
        [
            (NAT64_PREFIX + first - IPV4_MAPPED, NAT64_PREFIX + last - IPV4_MAPPED)
            for first, last in internet4.intervals
        ]
    )
    return {
        "internal4": AddressSet.from_networks(INTERNAL4),
        "internet4": internet4,
        "internal6": AddressSet.from_networks(INTERNAL6),
        "internet6": AddressSet.from_networks(NON_PUBLIC_IN_GLOBAL6)
        .complement(AddressSet.from_networks(GLOBAL_UNICAST6))
        .union(AddressSet.from_networks(PUBLIC_IN_NON_PUBLIC6), nat64),
        "multicast": AddressSet.from_networks(MULTICAST),
        "any": AddressSet.from_networks(("::/0", "0.0.0.0/0")),  # both families
    }


BUILTIN_NAMES = ("internal4", "internet4", "internal6", "internet6", "multicast", "any")
