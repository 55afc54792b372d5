"""Behaviour of the export-datagram path (readers/exports.py, readers/templates.py) that no
test pinned, found by a mutation audit (the thirty-sixth session's: 70 small changes to
sequence tracking, duplicates, held data, template lifecycle, options and skipped-byte
accounting; 31 of them no reader test noticed, 2 of those caught by tests outside the
audit's list (v1 copies, TCP messages sharing a frame), 2 equivalent, 27 real gaps, most at
a boundary: the 2**32 wrap, a hole's end, a second exactly, a full buffer, a 3-byte
length prefix at a set's end; the equivalent ones: a data set held for its template read
as 0 records, which end_datagram makes unknown whenever a set waits, and an emptied key set
left in PendingData's index). Each test fails with its change applied and names it.
Datagrams are packed with struct by the helpers of tests/readers/test_exports.py,
test_ipfix.py and test_mutation_audit.py."""

from __future__ import annotations

import struct

import pyarrow as pa

from obserae_forensics.readers.datagrams import Datagram
from obserae_forensics.readers.exports import ExportDecoder
from obserae_forensics.readers.templates import PendingData, PendingSet
from obserae_forensics.report import ExporterStats, RunReport
from obserae_forensics.schema import FLOW_SCHEMA
from tests.readers.test_exports import (
    FIELDS,
    data_set,
    datagram,
    ipfix,
    ipfix_at,
    record,
    template_set,
    v5,
    v9,
    v9_up,
)
from tests.readers.test_ipfix import options_template
from tests.readers.test_mutation_audit import v9_options


def run(datagrams: list[Datagram], report: RunReport | None = None) -> tuple[pa.Table, RunReport]:
    """Decode `datagrams` as one feed, then finish."""
    report = report or RunReport()
    decoder = ExportDecoder(report)
    batches = decoder.feed(datagrams)
    batches += decoder.finish()
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), report


def only_stream(report: RunReport) -> ExporterStats:
    (stats,) = report.exporters.values()
    return stats


def framed(payloads: list[bytes]) -> list[Datagram]:
    """`payloads` as datagrams, one a frame."""
    return [datagram(p, frame) for frame, p in enumerate(payloads, start=1)]


def numbered(payloads: list[bytes]) -> ExporterStats:
    """The one stream's accounting of `payloads`, one a frame."""
    _, report = run(framed(payloads))
    return only_stream(report)


# -- sequence numbers ----------------------------------------------------------------------


def test_a_v9_sequence_number_wrapping_at_2_32_is_no_gap() -> None:
    """Kills exp_expected_wrap (end_datagram: the expected number not masked to 32 bits):
    after 2**32 - 1 the next export packet is numbered 0; expecting 2**32, it read as a gap
    (of 0 lost)."""
    template = template_set(0, 256, FIELDS)
    stats = numbered([v9(template, sequence=n) for n in (0xFFFF_FFFE, 0xFFFF_FFFF, 0, 1)])
    assert (stats.sequence_gaps, stats.sequence_lost, stats.reorders) == (0, 0, 0)


def test_an_ipfix_flow_count_wrapping_at_2_32_is_no_gap() -> None:
    """Kills exp_expected_flows_wrap (end_datagram: the expected number of the flow-only
    convention, nfdump's and softflowd's, not masked to 32 bits): a message of one options
    record and two flow records numbered 2**32 - 1 is followed, in that convention, by 1;
    expecting 2**32 + 1, it read as a reorder. (The next has three records: with two, the
    inclusive convention, last number plus its own records, explained it too.)"""
    options = options_template(301, [(302, 4)], [(34, 4)])
    first = ipfix(
        options,
        data_set(301, struct.pack(">II", 1, 1)),
        template_set(2, 300, FIELDS),
        data_set(300, record(1, 1), record(2, 1)),
        sequence=0xFFFF_FFFF,
    )
    second = ipfix(data_set(300, record(3, 1), record(4, 1), record(5, 1)), sequence=1)
    stats = numbered([first, second])
    assert (stats.sequence_gaps, stats.sequence_lost, stats.reorders) == (0, 0, 0)


def test_a_loss_larger_than_the_reorder_window_is_a_loss() -> None:
    """Kills exp_gap_half (end_datagram: a number ahead by 65,536 or more not taken as a
    gap): ahead by anything under 2**31 is units lost, however many; a jump of 100,000
    export packets read as a restart, and the loss went unseen."""
    template = template_set(0, 256, FIELDS)
    stats = numbered([v9(template, sequence=0), v9(template, sequence=100_001)])
    assert (stats.sequence_gaps, stats.sequence_lost, stats.restarts) == (1, 100_000, 0)


def test_sysuptime_far_back_with_a_reorders_number_is_a_reboot() -> None:
    """Kills exp_reboot_uptime (_Numbering.clocks: REBOOT_UPTIME_MS, 5 minutes, no longer
    deciding): a v9 message one number behind whose sysUptime went back 2.5 hours, to
    another boot, is a reboot whatever its number; read as a reorder, its exporter's
    numbering went on from the boot before."""
    template = template_set(0, 256, FIELDS)
    stats = numbered([v9_up(100, 10_000_000, template), v9_up(99, 1_000_000, template)])
    assert (stats.restarts, stats.reorders) == (1, 0)


def test_a_late_message_just_past_a_hole_is_not_in_it() -> None:
    """Kills exp_hole_le (_Numbering._hole: `<=` for `<`): a hole [first, first + length)
    does not hold the number just after it. An IPFIX message far behind (past the reorder
    window), numbered as the first message after an earlier gap, falls in no gap counted
    lost, so it is no late one by its export time: the exporter numbers afresh (a
    restart); taken as in the hole, it read as a reorder."""
    stats = numbered([ipfix_at(0, 0), ipfix_at(10, 0), ipfix_at(200_000, 0), ipfix_at(10, 0, 1)])
    assert (stats.restarts, stats.reorders) == (1, 0)


def test_an_ipfix_message_stamped_exactly_a_second_after_and_behind_is_a_restart() -> None:
    """Kills exp_stamped_after (_Numbering._stamped_after: `>` for `>=`): IPFIX stamps whole
    seconds, so a message numbered back and stamped one second after every one before it
    is a restart; read as a reorder, the loss after it went unseen."""
    stats = numbered([ipfix_at(2 * n, 0) for n in range(3)] + [ipfix_at(0, 1), ipfix_at(4, 1)])
    assert (stats.restarts, stats.reorders, stats.sequence_gaps, stats.sequence_lost) == (
        1,
        0,
        1,
        2,
    )


# -- data held for its template ------------------------------------------------------------

HELD = ("192.0.2.1", 0, 9, 256, 1000)  # (exporter, domain, version, template id, port)


def held(body: bytes) -> PendingSet:
    return PendingSet(body, "a.pcap", 1, 0, 0, 0, 0, -1, 1, 0, "192.0.2.1", 0, 0)


def test_a_set_that_exactly_fills_the_pending_buffer_is_kept() -> None:
    """Kills tpl_pending_limit (PendingData.add: `>=` for `>`): the limit is what may wait,
    inclusive; a set of exactly the bytes left was dropped as `pending_overflow`."""
    buffer = PendingData(limit_bytes=16)
    assert buffer.add(HELD, held(bytes(8)))
    assert buffer.add(HELD, held(bytes(8)))
    assert not buffer.add(HELD, held(bytes(1)))
    assert buffer.size == 16


def test_data_taken_from_the_pending_buffer_gives_its_room_back() -> None:
    """Kills tpl_pending_take_size (PendingData.take without `self.size -= ...`): data
    released by its template no longer waits; still counted, the buffer filled up for
    good and every later data set before its template was dropped as `pending_overflow`."""
    buffer = PendingData(limit_bytes=16)
    assert buffer.add(HELD, held(bytes(16)))
    assert len(buffer.take(HELD)) == 1
    assert buffer.size == 0
    assert buffer.add(HELD, held(bytes(16)))


def test_sets_whose_template_never_came_are_counted_with_all_their_bytes_at_the_first() -> None:
    """Kills exp_finish_bytes (ExportDecoder.finish: the bytes of the first set only) and
    exp_finish_offset (the problem placed at the last set, not the first): three data sets
    of one template that never arrived are 3 `no_template` units of all their bytes, told
    at the first."""
    sets = [data_set(256, record(1, 1)), data_set(256, record(4, 1), record(5, 1))]
    payloads = [v9(sets[0], sequence=0), v9(sets[1], sequence=1), v9(sets[0], sequence=2)]
    _, report = run(framed(payloads))
    assert report.skipped["no_template"] == 3
    # each set's body, without its 4-byte header
    assert report.skipped_bytes["no_template"] == 8 + 16 + 8
    (problem,) = [p for p in report.examples if p.reason == "no_template"]
    assert (problem.offset, problem.frame) == (124, 1)
    assert only_stream(report).records_without_template == 3


def test_a_set_dropped_for_a_full_pending_buffer_counts_its_bytes() -> None:
    """Kills exp_overflow_bytes (ExportDecoder._park_sets: the dropped set's bytes not
    counted): a set that found the buffer full is lost with its bytes."""
    report = RunReport()
    decoder = ExportDecoder(report)
    decoder.pending = PendingData(limit_bytes=8)
    payloads = [v9(data_set(256, record(n, 1)), sequence=n) for n in range(3)]
    decoder.feed(framed(payloads))
    decoder.finish()
    assert report.skipped["pending_overflow"] == 2
    assert report.skipped_bytes["pending_overflow"] == 2 * 8


def test_held_sets_of_three_messages_of_one_datagram_keep_record_index_unique() -> None:
    """Kills exp_held_sets_reset (_park_sets: the held sets of a frame set to the current
    message's, not added to those before): a datagram of three IPFIX messages, two sets
    held in the first and one in each other, numbered the third message's like the first's
    second (record_index 2 * 65536 twice in one frame)."""
    first = ipfix(data_set(300, record(1, 1)), data_set(300, record(2, 1)))
    second, third = (ipfix(data_set(300, record(n, 1)), sequence=n) for n in (2, 3))
    template = ipfix(template_set(2, 300, FIELDS), sequence=4)
    table, report = run([datagram(first + second + third, 1), datagram(template, 2)])
    keys = set(
        zip(table["source_frame"].to_pylist(), table["record_index"].to_pylist(), strict=True)
    )
    assert table.num_rows == 4 and len(keys) == 4 and not report.skipped


def test_records_released_by_a_later_template_keep_their_source_id() -> None:
    """Kills exp_resolved_domain (_decode_resolved: the row's domain 0): data held for its
    template comes out under its own v9 source id, as the records decoded at once."""
    template = template_set(0, 256, FIELDS)
    payloads = [
        v9(data_set(256, record(1, 1)), sequence=0, source_id=42),
        v9(template, data_set(256, record(2, 1)), sequence=1, source_id=42),
    ]
    table, _ = run(framed(payloads))
    assert table["exporter_domain"].to_pylist() == [42, 42]


def test_a_duplicate_datagram_is_counted_on_its_file() -> None:
    """Kills exp_dup_file (begin_datagram: FileStats.duplicate_datagrams not counted): a
    copy is told on the exporter's row and on the file that held it."""
    payload = v9(template_set(0, 256, FIELDS), data_set(256, record(1, 1)), sequence=3)
    _, report = run([datagram(payload, 1), datagram(payload, 2)])
    assert only_stream(report).duplicates == 1
    assert report.file("a.pcap").duplicate_datagrams == 1


# -- templates -----------------------------------------------------------------------------


def v9_options_set(template_id: int, scope_count: int, fields: list[tuple[int, int]]) -> bytes:
    """A v9 options template FlowSet whose first `scope_count` fields are its scope."""
    scope, options = fields[:scope_count], fields[scope_count:]
    return v9_options(template_id, scope, options)


def test_an_options_template_redefined_with_another_scope_replaces_the_old() -> None:
    """Kills tpl_same_layout_scope (Template.same_layout ignoring the scope count): the same
    fields with another split between scope and options is another layout; taken for a
    refresh, the old definition stayed, and its records kept declaring the rate that the
    new one's scope field no longer is."""
    fields = [(2, 4), (34, 4)]  # scope Interface, then samplingInterval
    first = v9_options_set(300, 1, fields)
    second = v9_options_set(300, 2, fields)  # both fields scope now: no rate declared
    rate = data_set(300, struct.pack(">II", 3, 10))
    other = data_set(300, struct.pack(">II", 3, 100))
    stats = numbered([v9(first, rate, sequence=0), v9(second, other, sequence=1)])
    assert (stats.template_changes, stats.sampling_rate) == (1, 10)


VARIABLE = [(8, 4), (2, 4), (82, 65535)]  # address, packets, interfaceName (variable)


def test_zeros_shorter_than_a_variable_records_prefix_are_padding() -> None:
    """Kills tpl_min_length (Template.min_length without the 1-byte length prefix of each
    variable field): 8 zero bytes after the last record cannot hold another (8 fixed bytes
    and a prefix), so they are padding; tried as a record, they were a `bad_record`."""
    payload = ipfix(
        template_set(2, 300, VARIABLE),
        data_set(300, record(1, 5) + b"\x02ab", bytes(8)),
    )
    table, report = run([datagram(payload, 1)])
    assert table["packets"].to_pylist() == [5]
    assert report.skipped == {}


def test_a_long_form_length_prefix_that_ends_the_set_is_read() -> None:
    """Kills tpl_prefix_past (Template.field_spans: `>=` for `>` on the 3-byte prefix): a
    variable field of length 0 in the long form (255, 0, 0) may end its set exactly."""
    payload = ipfix(
        template_set(2, 300, VARIABLE),
        data_set(300, record(1, 5) + b"\xff\x00\x00"),
    )
    table, report = run([datagram(payload, 1)])
    assert table["packets"].to_pylist() == [5]
    assert report.skipped == {}


NO_LENGTH = [(82, 0)]  # a template whose records take no bytes


def test_a_template_of_records_of_no_length_counts_its_sets_bytes_and_no_empty_set() -> None:
    """Kills tpl_zero_len_bytes (fixed_set_records: the unread bytes of a no-length
    template's set counted as 0) and tpl_zero_len_empty (`>=` for `>`: an empty set of it a
    problem of no bytes)."""
    payload = ipfix(template_set(2, 300, NO_LENGTH), data_set(300), data_set(300, bytes(6)))
    _, report = run([datagram(payload, 1)])
    assert (report.skipped["bad_record"], report.skipped_bytes["bad_record"]) == (1, 6)


def test_records_that_carry_their_own_packet_interval_need_no_declared_rate() -> None:
    """Kills tpl_rates_itself (Template.rates_itself without samplingPacketInterval, IE
    305): records that give their own rate are not `records_before_sampling` when the
    exporter declares a rate above 1 later."""
    fields = [*FIELDS, (305, 4)]
    own = ipfix(template_set(2, 300, fields), data_set(300, record(1, 5) + struct.pack(">I", 1)))
    options = ipfix(
        options_template(301, [(302, 4)], [(34, 4)]),
        data_set(301, struct.pack(">II", 1, 10)),
        sequence=1,
    )
    stats = numbered([own, options])
    assert (stats.sampling_rate, stats.records_before_sampling) == (10, 0)


def test_an_ipfix_rate_scoped_to_an_ingress_interface_applies_to_its_records() -> None:
    """Kills tpl_iface_ipfix (Template.sampler_scope: IPFIX's interface scope read from
    egressInterface, IE 14, not ingressInterface, IE 10): each interface's records take
    its own rate, not the last one declared."""
    rates = ipfix(
        options_template(301, [(10, 4)], [(34, 4)]),
        data_set(301, struct.pack(">II", 3, 100), struct.pack(">II", 4, 10)),
    )
    fields = [*FIELDS, (10, 4)]
    flows = ipfix(
        template_set(2, 300, fields),
        data_set(300, record(1, 1) + struct.pack(">I", 3), record(2, 1) + struct.pack(">I", 4)),
        sequence=2,
    )
    table, _ = run([datagram(rates, 1), datagram(flows, 2)])
    assert table["sampling_rate"].to_pylist() == [100, 10]


# -- skipped and ignored bytes -------------------------------------------------------------


def test_records_of_no_flow_are_ignored_without_the_bytes_of_a_bad_tail() -> None:
    """Kills exp_not_flows_bytes (ExportDecoder._not_flows: the set's every byte counted as
    ignored content): the junk after the last record of a template of no flow is a
    `bad_record` of its own bytes, not ignored content as well."""
    ids = template_set(2, 303, [(95, 4)])  # applicationId alone: no flow
    payload = ipfix(ids, data_set(303, struct.pack(">I", 1), b"\x01" * 3))
    _, report = run([datagram(payload, 1)])
    assert (report.ignored["not_flow_records"], report.ignored_bytes["not_flow_records"]) == (1, 4)
    assert (report.skipped["bad_record"], report.skipped_bytes["bad_record"]) == (1, 3)


def test_damaged_version_bytes_from_a_proven_exporter_lose_the_whole_datagram() -> None:
    """Kills exp_bad_version_bytes (_bad_version: the damaged datagram's bytes not counted):
    its every byte is skipped as `bad_export_header`."""
    damaged = bytearray(v9(data_set(256, record(5, 5)), sequence=1))
    damaged[1] = 0x29
    first = v9(template_set(0, 256, FIELDS), data_set(256, record(1, 1)))
    _, report = run([datagram(first, 1), datagram(bytes(damaged), 2)])
    assert report.skipped_bytes["bad_export_header"] == len(damaged)


def test_a_first_good_header_with_problems_proves_no_earlier_suspect_damaged() -> None:
    """Kills exp_damaged_before_check (_damaged_before without its check of the problems
    counted while the proving datagram was decoded): a sender's datagram that fails v5's
    header checks, then one that passes them but is cut short, proves nothing (a memcached
    reply can pass the header checks alone): the first stays other traffic."""
    suspect = b"\x00\x05\x00\x00" + bytes(20)  # version 5, a record count of 0
    cut = v5([1, 2])[: 24 + 48]  # promises two 48-byte records, holds one
    _, report = run([datagram(suspect, 1), datagram(cut, 2)])
    assert report.ignored["not_flow_export"] == 1
    assert report.skipped == {"truncated": 1}


# -- sampling declarations -----------------------------------------------------------------

OPTIONS = options_template(301, [(302, 4)], [(34, 4)])  # selectorId, samplingInterval


def rate_message(rate: int, sequence: int) -> bytes:
    """An IPFIX message declaring 1-in-`rate` for selector 1 (with its options template)."""
    return ipfix(OPTIONS, data_set(301, struct.pack(">II", 1, rate)), sequence=sequence)


def flows_message(sequence: int) -> bytes:
    return ipfix(template_set(2, 300, FIELDS), data_set(300, record(1, 5)), sequence=sequence)


def test_the_largest_32_bit_rate_is_a_rate() -> None:
    """Kills exp_rate_32 (_use_options: `>=` for `>`): 2**32 - 1 fits samplingInterval's
    32 bits; refused, the records read unsampled and a `bad_sampler_record` was said."""
    table, report = run([datagram(rate_message(0xFFFF_FFFF, 0), 1), datagram(flows_message(1), 2)])
    assert table["sampling_rate"].to_pylist() == [0xFFFF_FFFF]
    assert report.skipped == {}


def test_records_before_sampling_are_measured_by_the_first_rate_declared() -> None:
    """Kills exp_first_rate (_use_options: the first rate replaced by each later one):
    records read before any declaration are `records_before_sampling` when the first rate
    declared is above 1, whatever rate comes after it."""
    stats = numbered([flows_message(0), rate_message(10, 1), rate_message(1, 1)])
    assert (stats.sampling_rate, stats.records_before_sampling) == (1, 1)


def test_held_records_released_after_a_declaration_are_not_read_before_it() -> None:
    """Kills exp_resolved_undeclared (_resolve_released: held records counted as read
    before any sampling declaration though one came before their template): they take
    the rate declared since, so they are no `records_before_sampling`."""
    held = ipfix(data_set(300, record(1, 5)))
    template = ipfix(template_set(2, 300, FIELDS), sequence=1)
    table, report = run(
        [datagram(held, 1), datagram(rate_message(10, 1), 2), datagram(template, 3)]
    )
    assert table["sampling_rate"].to_pylist() == [10]
    assert only_stream(report).records_before_sampling == 0


def test_a_bad_tail_counts_on_its_exporter_whether_or_not_the_set_waited() -> None:
    """Found by this audit, and mended: junk after a data set's last record counted on its
    exporter's undecodable_sets when the template came first, on none when the set waited
    for it (the skipped counts and bytes were the same)."""
    template = ipfix(template_set(2, 300, FIELDS), sequence=0)
    data = ipfix(data_set(300, record(1, 5), b"\x07" * 5), sequence=0)
    for payloads in ([template, data], [data, template]):
        table, report = run(framed(payloads))
        # not whole records of its template: left out whole, its bytes counted alike
        assert table.num_rows == 0
        set_bytes = len(record(1, 5)) + 5
        assert (report.skipped, report.skipped_bytes) == (
            {"bad_record": 1},
            {"bad_record": set_bytes},
        )
        assert only_stream(report).undecodable_sets == 1
