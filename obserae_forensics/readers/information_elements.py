"""IANA IPFIX / Cisco NetFlow v9 information elements this package reads: data, no logic.

Sources: the IANA "IP Flow Information Export (IPFIX) Entities" registry (RFC 7012), RFC 3954
§8 for the v9 names, RFC 5103 for reverse (biflow) elements. v9 field types 1-127 share their
numbers with the IPFIX elements, and v9 exporters use IPFIX ids >= 128 (136, 150-160, 302-306)
as well, so one table serves both. The surprising thing: v9 has no enterprise bit, so a v9
type >= 32768 is a plain vendor type, while in IPFIX the same top bit announces a 4-byte
Private Enterprise Number after the field specifier. Elements are keyed here by
(enterprise number, element id); IANA elements have enterprise 0.
"""

from __future__ import annotations

IANA = 0
REVERSE_PEN = 29305  # RFC 5103 §6.1: reverse of IANA element X is (29305, X)
# Citrix NetScaler's AppFlow: its dateTimeMicroseconds fractions count microseconds
NETSCALER_PEN = 5951
VARIABLE_LENGTH = 65535  # RFC 7011 §7: length announced in each record

# id -> (IANA name, abstract data type) of every IANA element the tables below read (a test
# holds it to them) and of some exporters send that no column keeps (masks, MACs, VLANs,
# engine ids, interface names); v9 names (RFC 3954) in comments where they differ.
ELEMENTS: dict[int, tuple[str, str]] = {
    1: ("octetDeltaCount", "unsigned64"),  # IN_BYTES
    2: ("packetDeltaCount", "unsigned64"),  # IN_PKTS
    3: ("deltaFlowCount", "unsigned64"),  # FLOWS
    4: ("protocolIdentifier", "unsigned8"),  # PROTOCOL
    5: ("ipClassOfService", "unsigned8"),  # SRC_TOS
    6: ("tcpControlBits", "unsigned16"),  # TCP_FLAGS (1 byte in v9)
    7: ("sourceTransportPort", "unsigned16"),  # L4_SRC_PORT
    8: ("sourceIPv4Address", "ipv4Address"),  # IPV4_SRC_ADDR
    9: ("sourceIPv4PrefixLength", "unsigned8"),  # SRC_MASK
    10: ("ingressInterface", "unsigned32"),  # INPUT_SNMP
    11: ("destinationTransportPort", "unsigned16"),  # L4_DST_PORT
    12: ("destinationIPv4Address", "ipv4Address"),  # IPV4_DST_ADDR
    13: ("destinationIPv4PrefixLength", "unsigned8"),  # DST_MASK
    14: ("egressInterface", "unsigned32"),  # OUTPUT_SNMP
    15: ("ipNextHopIPv4Address", "ipv4Address"),  # IPV4_NEXT_HOP
    16: ("bgpSourceAsNumber", "unsigned32"),  # SRC_AS
    17: ("bgpDestinationAsNumber", "unsigned32"),  # DST_AS
    18: ("bgpNextHopIPv4Address", "ipv4Address"),  # BGP_IPV4_NEXT_HOP
    21: ("flowEndSysUpTime", "unsigned32"),  # LAST_SWITCHED, ms of exporter uptime
    22: ("flowStartSysUpTime", "unsigned32"),  # FIRST_SWITCHED
    23: ("postOctetDeltaCount", "unsigned64"),  # OUT_BYTES
    24: ("postPacketDeltaCount", "unsigned64"),  # OUT_PKTS
    27: ("sourceIPv6Address", "ipv6Address"),  # IPV6_SRC_ADDR
    28: ("destinationIPv6Address", "ipv6Address"),  # IPV6_DST_ADDR
    29: ("sourceIPv6PrefixLength", "unsigned8"),
    30: ("destinationIPv6PrefixLength", "unsigned8"),
    32: ("icmpTypeCodeIPv4", "unsigned16"),  # ICMP_TYPE: type * 256 + code
    34: ("samplingInterval", "unsigned32"),  # SAMPLING_INTERVAL: 1 in N
    35: ("samplingAlgorithm", "unsigned8"),  # 1 deterministic, 2 random
    38: ("engineType", "unsigned8"),
    39: ("engineId", "unsigned8"),
    48: ("samplerId", "unsigned8"),  # FLOW_SAMPLER_ID
    49: ("samplerMode", "unsigned8"),  # FLOW_SAMPLER_MODE
    50: ("samplerRandomInterval", "unsigned32"),  # FLOW_SAMPLER_RANDOM_INTERVAL: 1 in N
    56: ("sourceMacAddress", "macAddress"),
    58: ("vlanId", "unsigned16"),
    60: ("ipVersion", "unsigned8"),  # IP_PROTOCOL_VERSION
    61: ("flowDirection", "unsigned8"),  # DIRECTION
    62: ("ipNextHopIPv6Address", "ipv6Address"),
    63: ("bgpNextHopIPv6Address", "ipv6Address"),
    80: ("destinationMacAddress", "macAddress"),
    82: ("interfaceName", "string"),
    85: ("octetTotalCount", "unsigned64"),
    86: ("packetTotalCount", "unsigned64"),
    89: ("forwardingStatus", "unsigned32"),
    130: ("exporterIPv4Address", "ipv4Address"),
    131: ("exporterIPv6Address", "ipv6Address"),
    136: ("flowEndReason", "unsigned8"),
    139: ("icmpTypeCodeIPv6", "unsigned16"),
    145: ("templateId", "unsigned16"),
    148: ("flowId", "unsigned64"),
    149: ("observationDomainId", "unsigned32"),
    150: ("flowStartSeconds", "dateTimeSeconds"),
    151: ("flowEndSeconds", "dateTimeSeconds"),
    152: ("flowStartMilliseconds", "dateTimeMilliseconds"),
    153: ("flowEndMilliseconds", "dateTimeMilliseconds"),
    154: ("flowStartMicroseconds", "dateTimeMicroseconds"),  # NTP format
    155: ("flowEndMicroseconds", "dateTimeMicroseconds"),
    156: ("flowStartNanoseconds", "dateTimeNanoseconds"),  # NTP format
    157: ("flowEndNanoseconds", "dateTimeNanoseconds"),
    158: ("flowStartDeltaMicroseconds", "unsigned32"),  # µs before the message's exportTime
    159: ("flowEndDeltaMicroseconds", "unsigned32"),
    160: ("systemInitTimeMilliseconds", "dateTimeMilliseconds"),
    161: ("flowDurationMilliseconds", "unsigned32"),
    162: ("flowDurationMicroseconds", "unsigned32"),
    176: ("icmpTypeIPv4", "unsigned8"),
    177: ("icmpCodeIPv4", "unsigned8"),
    178: ("icmpTypeIPv6", "unsigned8"),
    179: ("icmpCodeIPv6", "unsigned8"),
    195: ("ipDiffServCodePoint", "unsigned8"),
    196: ("ipPrecedence", "unsigned8"),
    231: ("initiatorOctets", "unsigned64"),
    232: ("responderOctets", "unsigned64"),
    239: ("biflowDirection", "unsigned8"),
    252: ("ingressPhysicalInterface", "unsigned32"),
    253: ("egressPhysicalInterface", "unsigned32"),
    298: ("initiatorPackets", "unsigned64"),
    299: ("responderPackets", "unsigned64"),
    302: ("selectorId", "unsigned64"),
    304: ("selectorAlgorithm", "unsigned16"),
    305: ("samplingPacketInterval", "unsigned32"),
    306: ("samplingPacketSpace", "unsigned32"),
    309: ("samplingSize", "unsigned32"),
    310: ("samplingPopulation", "unsigned32"),
    311: ("samplingProbability", "float64"),
    315: ("dataLinkFrameSection", "octetArray"),  # RFC 7133
    322: ("observationTimeSeconds", "dateTimeSeconds"),
    323: ("observationTimeMilliseconds", "dateTimeMilliseconds"),  # Cisco NSEL's event time
    324: ("observationTimeMicroseconds", "dateTimeMicroseconds"),  # NTP format
    325: ("observationTimeNanoseconds", "dateTimeNanoseconds"),  # NTP format
}

Element = tuple[int, int]  # (enterprise number, element id)

# FLOW_SCHEMA numeric column -> elements that fill it, best first. The first element the
# template carries wins; the others are alternatives some exporters send instead.
COLUMN_ELEMENTS: dict[str, tuple[Element, ...]] = {
    "packets": ((IANA, 2), (IANA, 86), (IANA, 298)),
    "octets": ((IANA, 1), (IANA, 85), (IANA, 231)),
    "reverse_packets": ((REVERSE_PEN, 2), (REVERSE_PEN, 86), (IANA, 299)),
    "reverse_octets": ((REVERSE_PEN, 1), (REVERSE_PEN, 85), (IANA, 232)),
    "src_port": ((IANA, 7),),
    "dst_port": ((IANA, 11),),
    "protocol": ((IANA, 4),),
    "tcp_flags": ((IANA, 6),),
    "reverse_tcp_flags": ((REVERSE_PEN, 6),),
    "tos": ((IANA, 5),),
    "input_if": ((IANA, 10), (IANA, 252)),
    "output_if": ((IANA, 14), (IANA, 253)),
    "src_as": ((IANA, 16),),
    "dst_as": ((IANA, 17),),
    "flow_end_reason": ((IANA, 136),),
}

# the ToS byte's parts, read when a template sends them instead of ipClassOfService (5)
IP_DSCP: Element = (IANA, 195)  # ipDiffServCodePoint: the byte's upper six bits
IP_PRECEDENCE: Element = (IANA, 196)  # ipPrecedence: its upper three

# v9 OUT_PKTS/OUT_BYTES, IPFIX postPacketDeltaCount/postOctetDeltaCount: in v9 the reverse
# counters when none of the above is there (nfdump files them as its "out" counters, which
# the nfcapd reader reads as reverse_*; nProbe's biflow templates send the server's direction
# in them); in IPFIX the same direction after middlebox treatment (RFC 7012), so only the
# forward counters of a template that has no others (read as reverse, a template with pre-
# and post-NAT counters made every one-way flow two-way)
POST_COUNTERS: dict[str, Element] = {"packets": (IANA, 24), "octets": (IANA, 23)}

# Address columns: (IPv4 elements, IPv6 elements), best first.
ADDRESS_ELEMENTS: dict[str, tuple[tuple[Element, ...], tuple[Element, ...]]] = {
    "src_addr": (((IANA, 8),), ((IANA, 27),)),
    "dst_addr": (((IANA, 12),), ((IANA, 28),)),
    "next_hop": (((IANA, 15), (IANA, 18)), ((IANA, 62), (IANA, 63))),
}

# ICMP type/code, per IP version: (type * 256 + code element, (type element, code element)).
# A dual-stack template carries both; a record takes its protocol's (1 ICMP, 58 ICMPv6).
ICMP_ELEMENTS: dict[int, tuple[Element, tuple[Element, Element]]] = {
    1: ((IANA, 32), ((IANA, 176), (IANA, 177))),
    58: ((IANA, 139), ((IANA, 178), (IANA, 179))),
}
IP_VERSION: Element = (IANA, 60)
# the first bytes of a sampled packet's frame (RFC 7133 dataLinkFrameSection): frames.py
FRAME_SECTION: Element = (IANA, 315)

# Flow times, by encoding. Values are (start element, end element).
TIME_UPTIME_MS = ((IANA, 22), (IANA, 21))  # exporter uptime ms (v5/v9 header, IPFIX IE 160)
TIME_SECONDS = ((IANA, 150), (IANA, 151))
TIME_MILLISECONDS = ((IANA, 152), (IANA, 153))
TIME_NTP_MICROSECONDS = ((IANA, 154), (IANA, 155))
TIME_NTP_NANOSECONDS = ((IANA, 156), (IANA, 157))
TIME_DELTA_MICROSECONDS = ((IANA, 158), (IANA, 159))
# When an event happened (RFC 5477): Cisco ASA/FTD NSEL records carry no flow end, but
# NF_F_EVENT_TIME_MSEC (323): a teardown's is the flow's end, a create's its start. Read
# for whichever side a template has no flow time for.
OBSERVATION_TIMES: tuple[tuple[str, Element], ...] = (
    ("ms", (IANA, 323)),
    ("sec", (IANA, 322)),
    ("ntp_us", (IANA, 324)),
    ("ntp_ns", (IANA, 325)),
)
DURATION_MILLISECONDS: Element = (IANA, 161)
DURATION_MICROSECONDS: Element = (IANA, 162)
SYSTEM_INIT_MILLISECONDS: Element = (IANA, 160)

# Options records that set the sampling rate of an exporter (values are 1-in-N unless noted);
# in a data record, the rate of that record.
SAMPLING_INTERVAL_ELEMENTS: tuple[Element, ...] = ((IANA, 34), (IANA, 50))
SAMPLING_PACKET_INTERVAL: Element = (IANA, 305)  # P packets taken ...
SAMPLING_PACKET_SPACE: Element = (IANA, 306)  # ... then S skipped: rate (P + S) / P
# PSAMP random n-out-of-N (RFC 5476): samplingSize of samplingPopulation, rate N / n; and
# uniform probabilistic sampling: samplingProbability (float64), rate 1 / p
# selectorAlgorithm (304) says which of these parameters an options record means (IANA
# PSAMP registry): 1 systematic count-based (305/306), 3 random n-out-of-N (309/310),
# 4 uniform probabilistic (311). Cisco IOS-XR's random samplers send 305 = 1 beside 309/310.
SELECTOR_ALGORITHM: Element = (IANA, 304)
SELECTOR_COUNT_BASED, SELECTOR_N_OUT_OF_N, SELECTOR_PROBABILISTIC = 1, 3, 4
SAMPLING_SIZE: Element = (IANA, 309)
SAMPLING_POPULATION: Element = (IANA, 310)
SAMPLING_PROBABILITY: Element = (IANA, 311)
SAMPLER_ID_ELEMENTS: tuple[Element, ...] = ((IANA, 48), (IANA, 302))
