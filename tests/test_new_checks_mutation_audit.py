"""Mutation audit of the checks added on 2026-12-07 (twins.py, impossible counters,
templates.misfit, the summary's sequence loss and twin inputs, the no-flows hint, show's
estimate note, recombine's windows and recommended hard_timeout, the empty flows schema).

Mutants (single-point edits; "new" = a test of this file):

- N01 twins._hash_records last_seen in µs, not ms: test_twins (other_records_are_no_twins)
- N02 kernel drops reverse_octets: test_twins (other_records_are_no_twins)
- N03 kernel hashes dst word 0 twice: test_twins (other_records_are_no_twins)
- N04 _columns src_port << 16, not 24 (overlaps dst_port): real gap, new
  test_ports_do_not_overlap_in_the_hash
- N05 _below keeps hashes under 2**(63 - shift): real gap, new
  test_the_sample_said_is_the_threshold_kept
- N06 add does not filter batches once sampling: test_twins (sampled_past_the_budget)
- N07 add leaves the kept answer: test_twins (an_answer_asked_before...)
- N08 pairs() keeps its answer whatever the order: test_twins (an_answer_asked_before...)
- N09 pairs() returns its kept answer itself, not a copy: real gap, new
  test_a_kept_answer_is_not_changed_by_its_caller
- N10 distinct records without the owner: test_twins (a_copy_in_another_file)
- N11 pair code high * count + low: test_twins (a_copy_in_another_file)
- N12 `twins <= max(...)`: test_twins (half_of_the_smaller_file)
- N13 share of the larger file: test_twins (half_of_the_smaller_file)
- N14 MIN_TWINS 2: test_twins (half_of_the_smaller_file)
- N15 only adjacent copies paired: test_twins (every_two_files)
- N16 the `if not same.any(): break` dropped: equivalent. hashes are sorted, so no equal
  pair at distance d means none at d + 1; the loop only appends empty arrays (cost only)
- N17 owners not renumbered in `order` (rank[owners] dropped): real gap, new
  test_twin_inputs_in_the_reading_order (asymmetric counts, files came in another order)
- N18 sampled from `>= BUDGET`: real gap, new test_up_to_the_budget_every_record_is_compared
- N19 _kept = the last batch's count: test_twins (sampled_past_the_budget)
- N20 SHARE 0.4: test_twins (half_of_the_smaller_file)
- N21 read_flows twins from 3 inputs on: test_twins (a_run_of_a_capture_and_its_nfcapd_file)
- N22 impossible counters `>=` MAX_PACKET_BYTES: test_impossible_counters
- N23 `count > 0` dropped: test_impossible_counters
- N24 reverse counters not checked: test_impossible_counters (biflow)
- N25 _report_per_file kept=False: test_impossible_counters
- N26 misfit without `problem.padding`: test_netflow_v9 (nonzero_alignment_padding)
- N27 misfit without `not records`: real gap (a set shorter than one record said to leave
  "0 record(s)" out), new test_a_set_shorter_than_one_record_is_not_said_to_leave_records_out
- N28 data_set returns 0 for a misfit set: real gap (IPFIX sequence then shows a false
  loss), new test_a_set_left_out_counts_its_records_for_the_sequence
- N29 _late_records without misfit: test_exports_mutation_audit (a_bad_tail_counts...)
- N30 sequence_loss keeps `sequence_lost` only: test_cli (a_loss_the_sequence_numbers_show)
- N31 _exporters " ..." from `>= shown`: real gap, new
  test_sequence_loss_by_exporter_and_three_named
- N32 summary's twins "of max(records_compared)": real gap, new
  test_the_summary_names_the_twins_against_the_smaller_file
- N33 "(manifest.json: twin_inputs)" also without a manifest (inspect): real gap, same test
- N34 twin_inputs in path order, not reading order: real gap, new
  test_twin_inputs_in_the_reading_order
- N35 sequence_loss unsorted: real gap, new test_sequence_loss_by_exporter_and_three_named
- N36 OTHER_TRAFFIC without not_ip: real gap, new
  test_frames_not_ip_are_other_traffic_for_the_hint
- N37 no_flows_hint without outside_window: test_cli (a_capture_of_the_traffic_itself)
- N38 `estimated` without `rate > 1`: real gap (nfcapd flags a 1:1 sampler's records
  scaled), new test_counters_flagged_scaled_at_rate_one_are_no_estimate
- N39 sampling_rate column only for unscaled samples: test_cli (show_says_what...)
- N40 show's empty-table branch dropped: test_cli (show_of_an_empty_table)
- N41 _joined `second[0] < first[1]`: test_export_mutation_audit (across_the_cut)
- N42 _joined without `one == (None, None)`: equivalent for manifests a run writes: a run
  without --from/--to has no record outside a window, so it read the capture's total and
  `neither` = total - total - other's read <= 0; the note cannot be given either way
- N43 `neither` from this run's total alone, not max of both: equivalent for runs of one
  reader: one capture (one SHA-256) gives both runs the same read + outside_window total
- N44 Run.window read.from/read.to swapped: real gap, new
  test_a_run_window_is_read_from_its_manifest
- N45 _recommended condition inverted: test_report (outputs_are_written_and_agree)
- N46 _empty_flows_schema optional session_id/direction: test_seam_mutation_audit
- N47 manifest counts.sequence_loss dropped: test_cli (a_loss_the_sequence_numbers_show)
- N48 _count does not feed the twins: test_twins (a_run_of_a_capture_and_its_nfcapd_file)
- N49 nfcapd failures counted as exporters: test_cli (a_loss_the_sequence_numbers_show)
- N50 counters' names of the other table: test_cli (show_says_what...)
- N51 no_flows_hint without skipped: test_cli (a_capture_of_the_traffic_itself)
- N52 _joined `return second[0] <= first[1]` alone: equivalent: `first[1] is None` means
  first is (None, None) and `second[0] is None` (second[1] None past the check above) means
  second is, both returned False before
- N53 _joined windows not put in order: test_export_mutation_audit (across_the_cut)
- N54 impossible counters `mask =` (reverse overrides): test_impossible_counters
- N55 misfit's Leftover counts the tail's bytes, not the set's: test_netflow_v9
- N56 manifest twin_inputs always []: test_twins (a_run_of_a_capture_and_its_nfcapd_file)
- N57 inspect's no-flows hint dropped: test_cli (a_capture_of_the_traffic_itself)
- N58 sessionize's no-flows hint dropped: test_cli (a_capture_of_the_traffic_itself)
- N59 TwinRecords.add without the empty-batch return: equivalent: an empty batch lists no
  file (bincount empty) and adds no hash; only the kept answer is dropped and recomputed
  alike

No bug found in the package: every real gap's test passes on the package as it is.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from obserae_forensics import twins
from obserae_forensics.cli import app, no_flows_hint
from obserae_forensics.recombine.runs import read_run
from obserae_forensics.report import RunReport
from obserae_forensics.twins import TwinRecords
from tests.readers.test_mutation_audit import data, decode, ipfix, ipfix_template, stats
from tests.recombine.conftest import T0_US, write_run
from tests.sessionize.scenario import batch, rec


def in_file(records: list[dict[str, Any]], name: str) -> pa.RecordBatch:
    """The records as read from the file `name`."""
    made = batch(records)
    column = pa.array([name] * len(records), pa.string()).dictionary_encode()
    arrays = [
        column if field.name == "source_file" else made.column(i)
        for i, field in enumerate(made.schema)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=made.schema)


def traffic(n: int, start: float = 1_700_000_000.0, **changes: Any) -> list[dict[str, Any]]:
    """n records of other times: no two alike."""
    return [rec(start + i, start + i + 0.5, **changes) for i in range(n)]


def found(*batches: pa.RecordBatch) -> TwinRecords:
    twin_records = TwinRecords()
    for one in batches:
        twin_records.add(one)
    return twin_records


def test_ports_do_not_overlap_in_the_hash() -> None:
    """Kills N04 (the source port shifted 16 bits, not 24, over the destination port's 8-23):
    source port 1 to port 0 and source port 0 to port 256 are other conversations."""
    one = traffic(10, sport=1, dport=0)
    other = traffic(10, sport=0, dport=256)
    assert found(in_file(one, "a"), in_file(other, "b")).pairs() == []
    assert found(in_file(one, "a"), in_file(one, "b")).pairs()


def test_the_sample_said_is_the_threshold_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills N05 (hashes kept below 2**(63 - shift), half what `sample` says): the records
    compared are exactly those whose hash is below 2**64 / sample."""
    monkeypatch.setattr(twins, "BUDGET", 16)
    records = traffic(200)
    [pair] = found(in_file(records, "a"), in_file(records, "b")).pairs()
    shift = pair["sample"].bit_length() - 1
    assert shift > 0
    hashes = twins.record_hashes(batch(records))
    below = int(np.count_nonzero((hashes >> np.uint64(64 - shift)) == 0))
    assert pair["records_compared"] == [below, below] and pair["twin_records"] == below


def test_up_to_the_budget_every_record_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills N18 (sampled from BUDGET hashes on, not past it): 2 x 8 records with a budget
    of 16 are all compared, sample 1."""
    monkeypatch.setattr(twins, "BUDGET", 16)
    records = traffic(8)
    [pair] = found(in_file(records, "a"), in_file(records, "b")).pairs()
    assert (pair["sample"], pair["records_compared"], pair["twin_records"]) == (1, [8, 8], 8)


def test_a_kept_answer_is_not_changed_by_its_caller() -> None:
    """Kills N09 (the kept answer returned itself, not a copy): a caller changing what
    pairs() gave does not change the next answer."""
    records = traffic(8)
    twin_records = found(in_file(records, "a"), in_file(records, "b"))
    expected = twin_records.pairs()
    for _ in range(2):
        given = twin_records.pairs()
        given[0]["twin_records"] = 0
        given.append({})
    assert twin_records.pairs() == expected


def twin_report(paths: list[str] | None = None) -> RunReport:
    """A report whose twins hold 12 records of a.pcap and 6 of them in b.nfcapd."""
    report = RunReport()
    if paths is not None:
        report.order_files(paths)
    records = traffic(12)
    report.twins = found(in_file(records, "b.nfcapd"), in_file(records[:6], "a.pcap"))
    return report


def test_the_summary_names_the_twins_against_the_smaller_file() -> None:
    """Kills N32 (the records compared said of the larger file) and N33 (the manifest named
    by inspect, which writes none)."""
    report = twin_report()
    line = report.summary(manifest=False)
    assert "(6 of 6 records compared alike" in line
    assert "manifest.json" not in line
    assert "(manifest.json: twin_inputs)" in report.summary()


def test_twin_inputs_in_the_reading_order() -> None:
    """Kills N34 (pairs in path order, not the inputs' reading order) and N17."""
    [pair] = twin_report(["b.nfcapd", "a.pcap"]).twin_inputs()
    assert pair["files"] == ["b.nfcapd", "a.pcap"]
    assert pair["records_compared"] == [12, 6]
    # the files numbered in that order, not as their records came (b.nfcapd first): kills
    # N17 (each file's counts given to the other's name)
    [pair] = twin_report(["a.pcap", "b.nfcapd"]).twin_inputs()
    assert pair["files"] == ["a.pcap", "b.nfcapd"]
    assert pair["records_compared"] == [6, 12]


def test_sequence_loss_by_exporter_and_three_named() -> None:
    """Kills N35 (sequence_loss in the order exporters came, not sorted) and N31 (" ..."
    after exactly three exporters named)."""
    report = RunReport()
    for exporter in ("192.0.2.9", "192.0.2.1", "192.0.2.5"):
        stats = report.exporter(exporter, 0)
        stats.sequence_gaps, stats.sequence_lost = 1, 2
    assert [entry["exporter"] for entry in report.sequence_loss()] == [
        "192.0.2.1",
        "192.0.2.5",
        "192.0.2.9",
    ]
    assert "3 exporter(s) (192.0.2.1, 192.0.2.5, 192.0.2.9) show 3 gap(s)" in report.summary()
    report.exporter("192.0.2.7", 0).sequence_gaps = 1
    report.exporter("192.0.2.7", 0).sequence_lost = 1
    assert "4 exporter(s) (192.0.2.1, 192.0.2.5, 192.0.2.7 ...) show 4 gap(s)" in (report.summary())


def test_frames_not_ip_are_other_traffic_for_the_hint() -> None:
    """Kills N36 (not_ip left out of the other traffic counted): a capture of frames that
    are not IP at all (ARP, spanning tree) holds no flow export either."""
    report = RunReport()
    report.ignored["not_ip"] = 2
    hint = no_flows_hint(report)
    assert hint is not None and hint.startswith("no flow record in the inputs, and 2 frame(s)")


def test_a_run_window_is_read_from_its_manifest(tmp_path: Path) -> None:
    """Kills N44 (read.from and read.to swapped): a run's --from/--to as given."""
    path = write_run(tmp_path / "run", [])
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["read"] = {"from": "2024-03-01T12:00:00Z", "to": "2024-03-01T12:01:00.5Z"}
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert read_run(path).window == (T0_US, T0_US + 60_500_000)
    manifest["read"] = {"from": None, "to": "2024-03-01T12:00:00Z"}
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert read_run(path).window == (None, T0_US)


NINE_BYTES = [(8, 4), (2, 4), (4, 1)]  # sourceIPv4Address, packetDeltaCount, protocol


def test_a_set_left_out_counts_its_records_for_the_sequence() -> None:
    """Kills N28 (a set that is not whole records of its template counted 0 records): its
    records were exported, so the next IPFIX message's sequence number counts them, and a
    whole export shows no loss."""
    records = struct.pack(">IIB", 1, 1, 6) * 4
    table, report = decode(
        ipfix(ipfix_template(300, NINE_BYTES), data(300, records + b"\x01\x02\x03\x04")),
        ipfix(data(300, records[:9]), sequence=4),
    )
    assert table.num_rows == 1
    assert report.skipped == {"bad_record": 1}
    assert (stats(report).sequence_gaps, stats(report).sequence_lost) == (0, 0)


def test_a_set_shorter_than_one_record_is_not_said_to_leave_records_out() -> None:
    """Kills N27 (misfit without `not records`): a set of fewer bytes than one record left
    no record out, and is not said to have ("its 0 record(s) left out")."""
    _, report = decode(ipfix(ipfix_template(300, NINE_BYTES), data(300, b"\x01" * 5)))
    assert report.skipped == {"bad_record": 1}
    said = " ".join(str(problem) for problem in report.examples)
    assert "record(s) left out" not in said and "not whole records" not in said


def test_counters_flagged_scaled_at_rate_one_are_no_estimate(tmp_path: Path) -> None:
    """Kills N38 (`estimated` without `rate > 1`): nfcapd flags a record sampled by a 1:1
    sampler too (its rate in force); counters multiplied by 1 are measured, and show says
    nothing of an estimate nor adds the rate column."""
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "sf_v9_varsvc.pcap"
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["sessionize", str(fixture), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    path = out / "sessions.parquet"
    sessions = pq.read_table(path)
    field = sessions.schema.field("counters_scaled")
    index = sessions.schema.get_field_index("counters_scaled")
    pq.write_table(
        sessions.set_column(index, field, pa.array([True] * sessions.num_rows, field.type)), path
    )
    shown = runner.invoke(app, ["show", str(out), "--limit", "5"])
    assert shown.exit_code == 0, shown.output
    assert "sampling_rate" not in shown.stdout.splitlines()[0].split()
    assert "estimate" not in shown.stdout and "sampled" not in shown.stdout
