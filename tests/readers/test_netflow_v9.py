"""NetFlow v9 decoding. scapy encodes headers, templates and options templates; data records
are packed with struct from the same field lists (scapy has no generic v9 record encoder)."""

from __future__ import annotations

import struct

import pyarrow as pa
from scapy.layers.netflow import (
    NetflowDataflowsetV9,
    NetflowFlowsetV9,
    NetflowHeader,
    NetflowHeaderV9,
    NetflowOptionsFlowsetOptionV9,
    NetflowOptionsFlowsetScopeV9,
    NetflowOptionsFlowsetV9,
    NetflowTemplateFieldV9,
    NetflowTemplateV9,
)
from scapy.packet import Packet, Raw

from obserae_forensics.addresses import address_text
from obserae_forensics.readers.datagrams import Datagram
from obserae_forensics.readers.exports import ExportDecoder, export_version
from obserae_forensics.report import ExporterStats, RunReport
from obserae_forensics.schema import FLOW_SCHEMA

EXPORT_S = 1_700_000_000
UPTIME_MS = 3_600_000
EXPORTER = "198.51.100.7"
SOURCE_ID = 42

# (type, length): src addr, dst addr, src port, dst port, protocol, packets, bytes, first, last
FLOW_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (22, 4), (21, 4)]
FLOW_FORMAT = ">IIHHBIIII"
# another layout for the same id: IPv6 addresses, 8-byte counters, tcp flags
FLOW_FIELDS_V6 = [(27, 16), (28, 16), (4, 1), (6, 1), (2, 8), (1, 8)]


def datagram(payload: bytes, frame: int, source: str = "v9.pcap") -> Datagram:
    return Datagram(
        payload,
        EXPORTER,
        50000,
        2055,
        frame,
        24 + 200 * frame,
        EXPORT_S * 1_000_000 + 1000 * frame,
        source,
    )


def packet(*flowsets: Packet | bytes, sequence: int = 0, uptime_ms: int = UPTIME_MS) -> bytes:
    header = NetflowHeader(version=9) / NetflowHeaderV9(
        sysUptime=uptime_ms, unixSecs=EXPORT_S, packageSequence=sequence, SourceID=SOURCE_ID
    )
    raw = bytes(header)
    return raw + b"".join(bytes(f) for f in flowsets)


def template(template_id: int, fields: list[tuple[int, int]]) -> Packet:
    return NetflowFlowsetV9(
        templates=[
            NetflowTemplateV9(
                templateID=template_id,
                template_fields=[
                    NetflowTemplateFieldV9(fieldType=t, fieldLength=n) for t, n in fields
                ],
            )
        ]
    )


def data(template_id: int, *records: bytes, pad: bool = True) -> bytes:
    if pad:
        return bytes(NetflowDataflowsetV9(templateID=template_id, records=[Raw(b"".join(records))]))
    body = b"".join(records)
    return struct.pack(">HH", template_id, 4 + len(body)) + body


def flow(
    src: int,
    dst: int,
    sport: int,
    dport: int,
    proto: int,
    packets: int,
    octets: int,
    first_ms: int = UPTIME_MS - 2000,
    last_ms: int = UPTIME_MS - 1000,
) -> bytes:
    return struct.pack(
        FLOW_FORMAT, src, dst, sport, dport, proto, packets, octets, first_ms, last_ms
    )


def decode(
    *payloads: bytes, report: RunReport | None = None, split: bool = False
) -> tuple[pa.Table, RunReport]:
    report = report or RunReport()
    decoder = ExportDecoder(report)
    datagrams = [datagram(p, i + 1) for i, p in enumerate(payloads)]
    batches = []
    if split:
        for one in datagrams:
            batches += decoder.feed([one])
    else:
        batches += decoder.feed(datagrams)
    batches += decoder.finish()
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


def stats(report: RunReport) -> ExporterStats:
    return report.exporters[(EXPORTER, SOURCE_ID)]


def test_v9_template_and_data_in_one_packet() -> None:
    payload = packet(
        template(256, FLOW_FIELDS),
        data(
            256,
            flow(0x0A000001, 0x0A000002, 1000, 443, 6, 10, 5000),
            flow(0x0A000003, 0x0A000004, 53, 5353, 17, 1, 80),
        ),
    )
    assert export_version(payload) == 9
    table, report = decode(payload)
    rows = table.to_pylist()
    assert [address_text(r["src_addr"]) for r in rows] == ["10.0.0.1", "10.0.0.3"]
    assert [(r["src_port"], r["dst_port"], r["protocol"]) for r in rows] == [
        (1000, 443, 6),
        (53, 5353, 17),
    ]
    assert [(r["packets"], r["octets"]) for r in rows] == [(10, 5000), (1, 80)]
    export_us = EXPORT_S * 1_000_000
    assert int(table["first_seen"][0].value) == export_us - 2_000_000
    assert int(table["last_seen"][0].value) == export_us - 1_000_000
    assert rows[0]["exporter_domain"] == SOURCE_ID and rows[0]["export_version"] == 9
    s = stats(report)
    assert (s.datagrams, s.records, s.templates, s.packets, s.octets) == (1, 2, 1, 11, 5080)


def test_v9_unpadded_flowsets_and_wrong_count_are_walked_by_length() -> None:
    # softflowd sends FlowSets of odd length and a header count that does not match
    body = template(256, FLOW_FIELDS)
    records = data(256, flow(1, 2, 3, 4, 6, 5, 6), flow(7, 8, 9, 10, 17, 11, 12), pad=False)
    assert len(records) % 4 != 0
    payload = bytearray(packet(body, records, records))
    payload[2:4] = struct.pack(">H", 99)
    table, report = decode(bytes(payload))
    assert table["packets"].to_pylist() == [5, 11, 5, 11]
    assert not report.skipped


def test_v9_data_before_template_is_decoded_when_it_arrives() -> None:
    early = packet(data(256, flow(1, 2, 3, 4, 6, 7, 8)), sequence=0)
    later = packet(template(256, FLOW_FIELDS), data(256, flow(5, 6, 7, 8, 17, 9, 10)), sequence=1)
    for split in (False, True):
        table, report = decode(early, later, split=split)
        rows = sorted(table.to_pylist(), key=lambda r: r["source_frame"])
        assert [(r["source_frame"], r["packets"]) for r in rows] == [(1, 7), (2, 9)]
        assert rows[0]["arrival"].timestamp() == EXPORT_S + 0.001  # its own arrival
        assert not report.skipped
        assert stats(report).records == 2


def test_v9_data_whose_template_never_comes_is_counted_at_finish() -> None:
    table, report = decode(
        packet(data(300, flow(1, 2, 3, 4, 6, 7, 8)), sequence=0),
        packet(data(300, flow(1, 2, 3, 4, 6, 7, 8)), sequence=1),
    )
    assert table.num_rows == 0
    assert report.skipped["no_template"] == 2
    assert stats(report).missing_templates[300] == 2
    assert stats(report).records_without_template == 2


def test_v9_template_id_reuse_uses_the_layout_in_force() -> None:
    v6_record = (
        (bytes(15) + b"\x01")
        + (bytes(15) + b"\x02")
        + bytes([6, 0x12])
        + struct.pack(">QQ", 3, 300)
    )
    first = packet(template(256, FLOW_FIELDS), data(256, flow(1, 2, 3, 4, 17, 1, 100)), sequence=0)
    second = packet(template(256, FLOW_FIELDS_V6), data(256, v6_record), sequence=1)
    third = packet(data(256, v6_record), sequence=2)
    table, report = decode(first, second, third)
    rows = table.to_pylist()
    assert [r["ip_version"] for r in rows] == [4, 6, 6]
    assert [r["packets"] for r in rows] == [1, 3, 3]
    assert address_text(rows[1]["dst_addr"]) == "::2"
    assert rows[1]["tcp_flags"] == 0x12
    assert stats(report).template_changes == 1


def test_v9_sampling_options_apply_to_later_records() -> None:
    options = NetflowOptionsFlowsetV9(
        templateID=257,
        option_scope_length=4,
        option_field_length=8,
        scopes=[NetflowOptionsFlowsetScopeV9(scopeFieldType=1, scopeFieldlength=4)],
        options=[
            NetflowOptionsFlowsetOptionV9(optionFieldType=34, optionFieldlength=4),
            NetflowOptionsFlowsetOptionV9(optionFieldType=35, optionFieldlength=1),
        ],
    )
    option_data = data(257, struct.pack(">IIB", 1, 512, 2))
    payload = packet(
        options, template(256, FLOW_FIELDS), option_data, data(256, flow(1, 2, 3, 4, 6, 1, 60))
    )
    table, report = decode(payload)
    assert table["sampling_rate"].to_pylist() == [512]
    assert table["counters_scaled"].to_pylist() == [False]
    assert stats(report).sampling_rate == 512
    assert stats(report).options_records == 1


def test_v9_records_before_the_first_sampling_declaration_are_counted() -> None:
    """A capture begun between two of a router's sampling announcements (IOS sends its
    options every few minutes) holds records no rate is known for: they read 1-in-1, as
    nfdump and pmacct read them, and the exporters table says how many, where nothing did.
    Not records that carry their own rate, nor records of an exporter that never declares a
    rate above 1; records held for a template released before the declaration count too."""
    options = NetflowOptionsFlowsetV9(
        templateID=257,
        option_scope_length=4,
        option_field_length=8,
        scopes=[NetflowOptionsFlowsetScopeV9(scopeFieldType=1, scopeFieldlength=4)],
        options=[
            NetflowOptionsFlowsetOptionV9(optionFieldType=34, optionFieldlength=4),
            NetflowOptionsFlowsetOptionV9(optionFieldType=35, optionFieldlength=1),
        ],
    )

    def rate(n: int) -> bytes:
        return data(257, struct.pack(">IIB", 1, n, 2))

    one = flow(1, 2, 3, 4, 6, 1, 60)
    own_fields = [*FLOW_FIELDS, (34, 4)]  # a record that carries its own interval
    own = struct.pack(
        FLOW_FORMAT + "I", 5, 6, 7, 8, 17, 1, 60, UPTIME_MS - 2000, UPTIME_MS - 1000, 100
    )
    first = packet(
        template(256, FLOW_FIELDS),
        template(258, own_fields),
        data(256, one, one),
        data(258, own),
        sequence=0,
    )
    declared = packet(options, rate(512), data(256, one), sequence=1)
    for split in (False, True):
        table, report = decode(first, declared, packet(data(256, one), sequence=2), split=split)
        assert table["sampling_rate"].to_pylist() == [1, 1, 100, 512, 512]
        assert stats(report).records_before_sampling == 2
        assert "2 records of 1 exporter(s) came before" in report.summary()
    # options after the data in one datagram declare it: nothing read unsampled
    _, report = decode(packet(template(256, FLOW_FIELDS), data(256, one), options, rate(512)))
    assert stats(report).records_before_sampling == 0
    # an exporter that declares itself unsampled, or never declares: nothing to say
    _, report = decode(first, packet(options, rate(1), data(256, one), sequence=1))
    assert stats(report).records_before_sampling == 0
    assert "declared its sampling" not in report.summary()
    _, report = decode(first, packet(data(256, one), sequence=1))
    assert stats(report).records_before_sampling == 0
    # held for a template whose datagram declares nothing: read unsampled, counted
    held = packet(data(256, one, one, one), sequence=0)
    table, report = decode(
        held,
        packet(template(256, FLOW_FIELDS), sequence=1),
        packet(options, rate(64), data(256, one), sequence=2),
    )
    assert table["sampling_rate"].to_pylist() == [1, 1, 1, 64]
    assert stats(report).records_before_sampling == 3
    # one row, two streams (review): an IPFIX stream's declaration is not the v9 stream's
    ipfix = bytearray(16)
    ipfix[0:4] = struct.pack(">HH", 10, 16)
    ipfix[4:16] = struct.pack(">III", EXPORT_S, 0, SOURCE_ID)
    options_ipfix = struct.pack(">HHHHHHHHH", 3, 18, 300, 2, 1, 149, 4, 34, 4)
    rate_ipfix = struct.pack(">HHII", 300, 12, SOURCE_ID, 100)
    message = bytes(ipfix) + options_ipfix + rate_ipfix
    message = message[:2] + struct.pack(">H", len(message)) + message[4:]
    _, report = decode(
        message,
        packet(template(256, FLOW_FIELDS), data(256, one), sequence=0),
        packet(data(256, one), sequence=1),
    )
    assert stats(report).versions == {9, 10}
    assert stats(report).records_before_sampling == 0


def test_v9_sampling_rates_scoped_to_a_sampler_or_an_interface() -> None:
    """Found by auditing: the exporter's last options rate applied to every record, whatever
    sampler (Cisco's FLOW_SAMPLER_ID in the options and in each record) or interface
    (scope type Interface) it belonged to: 1:1000 for a 1:100 sampler's records."""
    samplers = NetflowOptionsFlowsetV9(
        templateID=257,
        option_scope_length=4,
        option_field_length=12,
        scopes=[NetflowOptionsFlowsetScopeV9(scopeFieldType=1, scopeFieldlength=4)],
        options=[
            NetflowOptionsFlowsetOptionV9(optionFieldType=48, optionFieldlength=1),
            NetflowOptionsFlowsetOptionV9(optionFieldType=49, optionFieldlength=1),
            NetflowOptionsFlowsetOptionV9(optionFieldType=50, optionFieldlength=4),
        ],
    )
    interfaces = NetflowOptionsFlowsetV9(
        templateID=258,
        option_scope_length=4,
        option_field_length=4,
        scopes=[NetflowOptionsFlowsetScopeV9(scopeFieldType=2, scopeFieldlength=4)],
        options=[NetflowOptionsFlowsetOptionV9(optionFieldType=34, optionFieldlength=4)],
    )
    fields = [*FLOW_FIELDS, (48, 1), (10, 2)]

    def record(sport: int, sampler: int, interface: int) -> bytes:
        return flow(1, 2, sport, 80, 6, 1, 60) + struct.pack(">BH", sampler, interface)

    payload = packet(
        samplers,
        interfaces,
        template(256, fields),
        data(256, record(1, 1, 7)),  # before the options, in their datagram
        data(257, struct.pack(">IBBI", 1, 1, 2, 100), struct.pack(">IBBI", 1, 2, 2, 1000)),
        data(258, struct.pack(">II", 7, 10), struct.pack(">II", 8, 20)),
        data(256, record(2, 1, 7), record(3, 2, 7), record(4, 0, 8), record(5, 0, 9)),
    )
    table, report = decode(payload)
    # sampler ids beat interfaces; a record of neither takes the last rate declared; one
    # sent before any options takes what its datagram declares (review: it read 1, where
    # the same data held for its template read the options beside that template)
    assert table["sampling_rate"].to_pylist() == [100, 100, 1000, 20, 20]
    assert report.skipped == {}


def test_v9_out_counters_are_the_reverse_direction() -> None:
    """Found by auditing: OUT_PKTS/OUT_BYTES (23/24), which nfdump files as its out counters
    (reverse_* when read from nfcapd) and nProbe's biflow templates fill, were dropped."""
    fields = [*FLOW_FIELDS, (24, 4), (23, 4)]
    payload = packet(
        template(256, fields), data(256, flow(1, 2, 3, 4, 6, 4, 400) + struct.pack(">II", 5, 500))
    )
    table, _ = decode(payload)
    assert [
        (r["packets"], r["octets"], r["reverse_packets"], r["reverse_octets"])
        for r in table.to_pylist()
    ] == [(4, 400, 5, 500)]


def test_v9_sampling_rate_past_32_bits_is_counted_not_wrapped() -> None:
    # an 8-byte samplingInterval of 2**40 was stored modulo 2**32: rate 0 on every record
    options = NetflowOptionsFlowsetV9(
        templateID=257,
        option_scope_length=4,
        option_field_length=4,
        scopes=[NetflowOptionsFlowsetScopeV9(scopeFieldType=1, scopeFieldlength=4)],
        options=[NetflowOptionsFlowsetOptionV9(optionFieldType=34, optionFieldlength=8)],
    )
    payload = packet(
        options,
        template(256, FLOW_FIELDS),
        data(257, struct.pack(">IQ", 1, 1 << 40)),
        data(256, flow(1, 2, 3, 4, 6, 1, 60)),
    )
    table, report = decode(payload)
    assert table["sampling_rate"].to_pylist() == [1]
    assert report.skipped == {"bad_sampler_record": 1}
    assert "sampling rate 1099511627776" in report.examples[0].message
    assert report.examples[0].frame == 1


def test_v9_options_records_of_no_length_are_counted_not_read_forever() -> None:
    # an options template whose every field has length 0 (found by fuzzing): its records
    # take no bytes, and reading its data set never ended, before or after the template
    options = NetflowOptionsFlowsetV9(
        templateID=257,
        option_scope_length=0,
        option_field_length=4,
        scopes=[],
        options=[NetflowOptionsFlowsetOptionV9(optionFieldType=34, optionFieldlength=0)],
    )
    for payloads in (
        (packet(options, data(257, bytes(4), pad=False)),),
        (packet(data(257, bytes(4), pad=False), sequence=0), packet(options, sequence=1)),
    ):
        table, report = decode(
            *payloads, packet(template(256, FLOW_FIELDS), data(256, flow(1, 2, 3, 4, 6, 1, 60)))
        )
        assert table.num_rows == 1
        assert report.skipped == {"bad_record": 1}
        assert report.skipped_bytes["bad_record"] == 4
        assert "options template 257 gives its records no length" in report.examples[0].message


def test_v9_bytes_after_the_records_are_counted_unless_zero_padding() -> None:
    record = flow(1, 2, 3, 4, 6, 1, 60)
    padded = packet(template(256, FLOW_FIELDS), data(256, record + bytes(3)), sequence=0)
    table, report = decode(padded)
    assert table.num_rows == 1 and not report.skipped
    cut = packet(
        template(256, FLOW_FIELDS),
        data(256, record + b"\x01\x02\x03\x04\x05", pad=False),
        sequence=0,
    )
    table, report = decode(cut)
    # not whole records of its template: the set is left out whole (templates.misfit)
    assert table.num_rows == 0
    assert report.skipped == {"bad_record": 1}
    assert report.skipped_bytes["bad_record"] == len(record) + 5
    assert "not zero padding" in report.examples[0].message
    assert "its 1 record(s) left out" in report.examples[0].message


def test_v9_template_with_an_impossible_field_length_is_refused() -> None:
    # a 2-byte IPv4 source address left every address 0.0.0.0 without a word
    fields = [(8, 2), *FLOW_FIELDS[1:]]
    table, report = decode(packet(template(256, fields), data(256, bytes(64))))
    assert table.num_rows == 0
    assert report.skipped["bad_template"] == 1
    assert "element 8, an address) has length 2, not 4" in report.examples[0].message


def test_v9_sysuptime_wrap_signed_age() -> None:
    # sysUptime wrapped to 2 000 ms; the flow began 3 000 ms before the wrap
    payload = packet(
        template(256, FLOW_FIELDS),
        data(256, flow(1, 2, 3, 4, 6, 1, 1, first_ms=(1 << 32) - 3000, last_ms=1500)),
        uptime_ms=2000,
    )
    table, _ = decode(payload)
    export_us = EXPORT_S * 1_000_000
    assert int(table["first_seen"][0].value) == export_us - 5_000_000
    assert int(table["last_seen"][0].value) == export_us - 500_000


def test_v9_flow_weeks_old_is_read_in_the_past_not_after_its_export() -> None:
    """A 30-day-old flow's age passes 2**31 ms: read as a signed 32-bit age it came out 19.7
    days after the datagram that exported it (softflowd -r over a month-long capture)."""
    day_ms = 86_400_000
    uptime = 40 * day_ms
    payload = packet(
        template(256, FLOW_FIELDS),
        data(
            256,
            flow(1, 2, 3, 4, 6, 1, 1, first_ms=uptime - 30 * day_ms, last_ms=uptime - 29 * day_ms),
        ),
        data(
            256, flow(1, 2, 3, 4, 6, 1, 1, first_ms=uptime - 1000, last_ms=uptime + 5)
        ),  # Last 5 ms past sysUptime
        # the window's edges, as IPFIX's laps: a day after the export, and a
        # day and 1 ms after it, which is 48.7 days before
        data(256, flow(1, 2, 3, 4, 6, 1, 1, first_ms=uptime + day_ms, last_ms=uptime + day_ms + 1)),
        uptime_ms=uptime,
    )
    table, _ = decode(payload)
    export_us = EXPORT_S * 1_000_000
    wrap_us = (1 << 32) * 1000
    assert [int(v.value) for v in table["first_seen"]] == [
        export_us - 30 * day_ms * 1000,
        export_us - 1_000_000,
        export_us + day_ms * 1000,
    ]
    assert [int(v.value) for v in table["last_seen"]] == [
        export_us - 29 * day_ms * 1000,
        export_us + 5_000,
        export_us + day_ms * 1000 + 1000 - wrap_us,
    ]


def test_v9_zero_length_flowset_stops_but_keeps_what_came_before() -> None:
    payload = packet(
        template(256, FLOW_FIELDS),
        data(256, flow(1, 2, 3, 4, 6, 1, 1)),
        struct.pack(">HH", 256, 0),
        data(256, flow(1, 2, 3, 4, 6, 2, 2)),
    )
    table, report = decode(payload)
    assert table["packets"].to_pylist() == [1]
    assert report.skipped["zero_length_set"] == 1
    assert report.examples[0].frame == 1 and report.examples[0].source == "v9.pcap"
    assert stats(report).undecodable_sets == 1


def test_v9_flowset_longer_than_datagram_is_truncation() -> None:
    good = data(256, flow(1, 2, 3, 4, 6, 1, 1))
    lying = struct.pack(">HH", 256, 400) + flow(1, 2, 3, 4, 6, 2, 2)
    table, report = decode(packet(template(256, FLOW_FIELDS), good, lying))
    assert table["packets"].to_pylist() == [1]
    assert report.skipped["truncated"] == 1
    assert "has length 400" in report.examples[0].message


def test_v9_reserved_flowset_id_is_skipped_by_length() -> None:
    garbage = struct.pack(">HH", 7, 8) + b"\xde\xad\xbe\xef"
    table, report = decode(
        packet(template(256, FLOW_FIELDS), garbage, data(256, flow(1, 2, 3, 4, 6, 9, 9)))
    )
    assert table["packets"].to_pylist() == [9]
    assert report.skipped["reserved_set_id"] == 1


def test_v9_sequence_counts_export_packets() -> None:
    t = template(256, FLOW_FIELDS)
    _, report = decode(
        packet(t, sequence=5), packet(t, sequence=6), packet(t, sequence=9), packet(t, sequence=9)
    )
    s = stats(report)
    assert (s.sequence_gaps, s.sequence_lost, s.duplicates, s.datagrams) == (1, 2, 1, 3)
    assert s.templates == 3


# H3C NetStream's v9 template (its field types and lengths, as logstash-codec-netflow's
# capture of one holds them): 28 fields, the last VRFname (236) of length 65535, which
# RFC 3954 does not define but H3C sends, with IPFIX's encoding in the records.
H3C_FIELDS = [
    (2, 8),
    (1, 8),
    (22, 4),
    (21, 4),
    (10, 4),
    (14, 4),
    (8, 4),
    (12, 4),
    (15, 4),
    (16, 4),
    (17, 4),
    (7, 2),
    (11, 2),
    (60, 1),
    (6, 1),
    (4, 1),
    (5, 1),
    (9, 1),
    (13, 1),
    (61, 1),
    (89, 1),
    (43, 2),
    (35, 1),
    (0, 1),
    (34, 4),
    (93, 4),
    (92, 4),
    (236, 65535),
]
H3C_FIXED = ">QQIIIIIIIIIHHBBBBBBBBHBBIII"


def h3c_record(packets: int, octets: int, src: int, vrf: bytes, *, long_form: bool) -> bytes:
    fixed = struct.pack(
        H3C_FIXED,
        packets,
        octets,
        UPTIME_MS - 30_000,
        UPTIME_MS - 500,
        17,
        0,
        src,
        0x14141414,
        0,
        0,
        0,
        137,
        137,
        4,
        0,
        17,
        0,
        32,
        32,
        0,
        0,
        0,
        0,
        0,
        0,
        0xFFFFFFFF,
        0,
    )
    length = b"\xff" + struct.pack(">H", len(vrf)) if long_form else bytes([len(vrf)])
    return fixed + length + vrf


def test_v9_variable_length_fields_as_h3c_sends_them() -> None:
    """nfdump reads them, and H3C's NetStream sends them: we used to refuse the template,
    and every record of it was lost as `no_template`."""
    assert struct.calcsize(H3C_FIXED) == sum(n for _, n in H3C_FIELDS[:-1])
    records = (
        h3c_record(9, 702, 0x14141414, b"\x00", long_form=True)  # H3C's own form
        + h3c_record(3, 180, 0x0A000001, b"red", long_form=False)
    )
    assert len(records) % 4 == 0
    late = packet(data(3281, records, pad=False), sequence=0)
    for payloads in (
        (packet(template(3281, H3C_FIELDS), data(3281, records, pad=False)),),
        (late, packet(template(3281, H3C_FIELDS), sequence=1)),
    ):
        table, report = decode(*payloads)
        rows = table.to_pylist()
        assert [
            (
                address_text(r["src_addr"]),
                address_text(r["dst_addr"]),
                r["src_port"],
                r["dst_port"],
                r["protocol"],
                r["packets"],
                r["octets"],
                r["input_if"],
            )
            for r in rows
        ] == [
            ("20.20.20.20", "20.20.20.20", 137, 137, 17, 9, 702, 17),
            ("10.0.0.1", "20.20.20.20", 137, 137, 17, 3, 180, 17),
        ]
        export_us = EXPORT_S * 1_000_000
        assert int(table["first_seen"][0].value) == export_us - 30_000_000
        assert not report.skipped and not report.repaired


def test_v9_variable_length_field_past_its_flowset_is_a_bad_record() -> None:
    record = h3c_record(9, 702, 1, b"abcd", long_form=False)
    cut = record[:-2]
    table, report = decode(packet(template(3281, H3C_FIELDS), data(3281, record + cut, pad=False)))
    assert table["packets"].to_pylist() == [9]
    assert report.skipped == {"bad_record": 1}
    assert report.skipped_bytes["bad_record"] == len(cut)


def test_v9_zeros_after_the_last_flowset_are_padding() -> None:
    """Palo Alto (PAN-OS 8.1) sends one FlowSet in a datagram filled up with zeros, Cisco ACI
    zeros after its templates: each datagram was counted as a `zero_length_set` problem, and
    --strict stopped at the first."""
    payload = packet(template(256, FLOW_FIELDS), data(256, flow(1, 2, 3, 4, 6, 1, 60)))
    for tail in (bytes(4), bytes(1220)):
        table, report = decode(payload + tail, report=RunReport(strict=True))
        assert table.num_rows == 1 and not report.skipped and not report.repaired
    # not zeros to the end: the zero-length FlowSet is still one
    table, report = decode(payload + bytes(8) + b"\x01")
    assert report.skipped == {"zero_length_set": 1}


def test_v9_nonzero_alignment_padding_is_said_but_loses_nothing() -> None:
    """nProbe pads a FlowSet to 4 bytes with bytes it does not zero: said as
    `nonzero_padding` (under `repaired`, so --strict goes on), not a skipped record. More
    bytes than the alignment, or a FlowSet that does not end aligned, are a FlowSet that is
    not whole records of its template: `bad_record`, its records left out."""
    record = flow(1, 2, 3, 4, 6, 1, 60)  # 29 bytes: the FlowSet is 33, aligned 36
    aligned = packet(template(256, FLOW_FIELDS), data(256, record + b"\x0d\x00\x01", pad=False))
    table, report = decode(aligned, report=RunReport(strict=True))
    assert table.num_rows == 1 and not report.skipped
    assert report.repaired == {"nonzero_padding": 1}
    assert report.examples[0].message == (
        "FlowSet 256 at payload byte 64: 3 bytes after 1 record(s) of 29 bytes are not zero padding"
    )
    for tail in (b"\x0d\x00", b"\x0d\x00\x01\x02\x03\x04\x05"):
        table, report = decode(
            packet(template(256, FLOW_FIELDS), data(256, record + tail, pad=False))
        )
        assert table.num_rows == 0 and not report.repaired
        assert report.skipped == {"bad_record": 1}
    # a FlowSet that waited for its template says it with its own datagram
    early = packet(data(256, record + b"\x0d\x00\x01", pad=False), sequence=0)
    table, report = decode(early, packet(template(256, FLOW_FIELDS), sequence=1))
    assert table.num_rows == 1 and report.repaired == {"nonzero_padding": 1}
    assert report.examples[0].frame == 1


def test_a_zero_padded_datagram_carries_no_template() -> None:
    """recombine --export-pcap adds the datagrams that carry templates: a padded data
    datagram's zeros read as FlowSet id 0, v9's template id, and every one was added."""
    from obserae_forensics.readers.exports import export_sets

    padded = export_sets(packet(data(256, flow(1, 2, 3, 4, 6, 1, 60))) + bytes(64))
    assert padded is not None and not padded.templates and padded.data == {256}
    both = export_sets(
        packet(data(256, flow(1, 2, 3, 4, 6, 1, 60)), template(256, FLOW_FIELDS)) + bytes(64)
    )
    assert both is not None and both.templates == {256} and both.domain == SOURCE_ID


def test_v9_cisco_nsel_event_time_ends_a_teardown() -> None:
    """Cisco ASA NSEL sends no flow end: NF_F_EVENT_TIME_MSEC (323, observationTime) is when
    the event happened, a teardown's the flow's end. Its records used to end at their start
    (and records of templates without 152 sat at the datagram's export time)."""
    # the layout of the ASA's flow-teardown template: conn id, addresses, ports, protocol,
    # event, extended event, event time, initiator/responder bytes, flow create time
    teardown = [
        (148, 4),
        (8, 4),
        (7, 2),
        (12, 4),
        (11, 2),
        (4, 1),
        (233, 1),
        (33002, 2),
        (323, 8),
        (231, 4),
        (232, 4),
        (152, 8),
    ]
    created = [(148, 4), (8, 4), (7, 2), (12, 4), (11, 2), (4, 1), (233, 1), (33002, 2), (323, 8)]
    start_ms = EXPORT_S * 1000 - 3_600_000  # an hour-long connection, torn down 5 s ago
    end_ms = EXPORT_S * 1000 - 5_000
    payload = packet(
        template(263, teardown),
        template(256, created),
        data(256, struct.pack(">IIHIHBBHQ", 7, 1, 40000, 2, 443, 6, 1, 0, start_ms)),
        data(
            263,
            struct.pack(
                ">IIHIHBBHQIIQ", 7, 1, 40000, 2, 443, 6, 2, 2030, end_ms, 81, 6207, start_ms
            ),
        ),
    )
    table, report = decode(payload)
    assert [
        (int(a.value) // 1000, int(b.value) // 1000)
        for a, b in zip(table["first_seen"], table["last_seen"], strict=True)
    ] == [(start_ms, start_ms), (start_ms, end_ms)]
    assert table["octets"].to_pylist() == [0, 81]
    assert table["reverse_octets"].to_pylist() == [0, 6207]
    assert not report.skipped and not report.repaired


def test_v9_observation_time_never_overrides_a_duration_nor_starts_after_an_end() -> None:
    """Found by review: the observation time (323) was taken for a side before a duration
    (161) could give it, and as the start of a template that has only an end: the record
    began after it ended."""
    export_ms = EXPORT_S * 1000
    with_duration = [(8, 4), (12, 4), (4, 1), (152, 8), (161, 4), (323, 8), (1, 4)]
    end_only = [(8, 4), (12, 4), (4, 1), (153, 8), (323, 8), (1, 4)]
    payload = packet(
        template(300, with_duration),
        template(301, end_only),
        data(
            300,
            struct.pack(">IIBQIQI", 1, 2, 6, export_ms - 60_000, 10_000, export_ms - 1_000, 5),
            pad=False,
        ),
        data(
            301,
            struct.pack(">IIBQQI", 1, 2, 6, export_ms - 60_000, export_ms - 1_000, 5),
            pad=False,
        ),
    )
    table, report = decode(payload)
    spans = [
        ((int(a.value) // 1000 - export_ms), (int(b.value) // 1000 - export_ms))
        for a, b in zip(table["first_seen"], table["last_seen"], strict=True)
    ]
    assert spans == [(-60_000, -50_000), (-60_000, -60_000)]
    assert not report.repaired


def test_template_ids_in_reads_every_kind_of_template_record() -> None:
    """The ids a message defines decide whether a data set that would take another port's
    template waits for its own (exports.template): v9 templates and options templates
    (lengths in bytes), IPFIX ones with enterprise fields (8-byte specifiers), padding."""
    from obserae_forensics.readers.exports import template_ids_in

    options = NetflowOptionsFlowsetV9(
        templateID=300,
        option_scope_length=4,
        option_field_length=4,
        scopes=[NetflowOptionsFlowsetScopeV9(scopeFieldType=1, scopeFieldlength=4)],
        options=[NetflowOptionsFlowsetOptionV9(optionFieldType=34, optionFieldlength=4)],
    )
    v9 = packet(
        template(256, FLOW_FIELDS),
        options,
        template(257, FLOW_FIELDS_V6),
        data(256, flow(1, 2, 3, 4, 6, 1, 60)),
    )
    assert template_ids_in(v9) == {256, 257, 300}
    # v9 has no enterprise bit: Cisco ASA's NSEL fields (33000 and up) are 4-byte
    # specifiers like any other (they were read as 8: every template after the first lost)
    # (raw: scapy's v9 field type keeps 15 bits)
    nsel = [(148, 4), (8, 4), (12, 4), (4, 1), (233, 1), (33002, 2), (323, 8)]
    records = b"".join(
        struct.pack(">HH", template_id, len(nsel))
        + b"".join(struct.pack(">HH", *field) for field in nsel)
        for template_id in (263, 264, 265)
    )
    asa = packet() + struct.pack(">HH", 0, 4 + len(records)) + records
    assert template_ids_in(asa) == {263, 264, 265}
    assert template_ids_in(packet(data(256, flow(1, 2, 3, 4, 6, 1, 60)))) == set()
    body = struct.pack(">HHHHHHI", 400, 2, 8, 4, 0x8000 | 1, 4, 9) + bytes(2)  # + padding
    options_set = struct.pack(">HHHHHHH", 401, 2, 1, 149, 4, 34, 4)
    ipfix = (
        struct.pack(">HHIII", 10, 0, EXPORT_S, 0, SOURCE_ID)
        + struct.pack(">HH", 2, 4 + len(body))
        + body
        + struct.pack(">HH", 3, 4 + len(options_set))
        + options_set
    )
    ipfix = ipfix[:2] + struct.pack(">H", len(ipfix)) + ipfix[4:]
    assert template_ids_in(ipfix) == {400, 401}
