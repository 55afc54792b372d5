"""Damaged files found by a fuzzing run (fixtures/damaged, see its README entry), end to end.

Each one crashed `sessionize` or lost bytes without a word before its fix. A run must finish,
write every table, count what it could not decode with its file and offset, and give the
same tables and manifest counts whatever the batch size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from obserae_forensics.cli import app
from tests.readers.test_time_range import YEAR_15760_US, year_15760_capture

DAMAGED = Path(__file__).resolve().parent.parent / "fixtures" / "damaged"


def sessionize(name: str, out: Path, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["sessionize", str(DAMAGED / name), "--out", str(out), "--quiet", *extra]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.output
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    assert manifest["conservation"]["ok"]
    for table in ("sessions", "flows", "sessions_consolidated", "exporters"):
        assert (out / f"{table}.parquet").is_file()
    return manifest


def problems(manifest: dict[str, Any]) -> list[str]:
    return list(manifest["problems"])


def test_time_past_year_9999_keeps_the_run(tmp_path: Path) -> None:
    """A fuzzed IPFIX record timed in year 15760 made the manifest's ISO text raise after
    every table was computed: nothing was written. The fuzzed capture's record came from a
    template whose field lengths the flips changed, and its set no longer fits it: left out
    now (templates.misfit); the time is a record's of its own here."""
    damaged = sessionize("ipfix_time_in_year_15760.pcap", tmp_path / "damaged")
    assert damaged["counts"]["records_read"] == 0
    assert "its 1 record(s) left out" in damaged["problems"][0]
    capture = year_15760_capture(tmp_path / "year_15760.pcap")
    result = CliRunner().invoke(
        app, ["sessionize", str(capture), "--out", str(tmp_path / "run"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    window = manifest["data_window"]
    assert window["start"] is None and window["start_us"] == YEAR_15760_US
    assert manifest["counts"]["records_read"] == 1
    # recombine's report turned the times into Python datetimes (OverflowError)
    result = CliRunner().invoke(
        app, ["recombine", str(tmp_path / "run"), "--out", str(tmp_path / "recombined")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "recombined" / "report.json").read_text())
    assert report["runs"][0]["data_window"]["start"] is None


def test_counters_past_2_64_are_summed_exactly(tmp_path: Path) -> None:
    """Records with counters near 2**63 (bits flipped inside LZO literals): Arrow's uint64 sum
    wraps, so the conservation totals depended on the batch size and the check failed at
    one size and passed at another."""
    counts = []
    for size in ("7", "65536"):
        manifest = sessionize(
            "nfcapd_counters_past_2_64.lzo.nfcapd", tmp_path / size, "--batch-size", size
        )
        counts.append(manifest["conservation"])
    assert counts[0] == counts[1]
    assert counts[0]["packets_in"] > 2**64 and counts[0]["bytes_in"] > 2**64
    assert counts[0]["records_in"] == 72
    # said, not only summed: 2**63 bytes in one packet is damage (a review)
    assert manifest["counts"]["repaired"] == {"impossible_counters": 12}
    assert "12 record(s) with more bytes than their packets can carry" in manifest["problems"][0]
    for table in ("sessions", "flows", "sessions_consolidated"):
        assert (tmp_path / "7" / f"{table}.parquet").read_bytes() == (
            tmp_path / "65536" / f"{table}.parquet"
        ).read_bytes()


@pytest.mark.parametrize(
    ("name", "reason", "where", "says"),
    [
        # nfdump 1.6 common records (type 10) in a block of type 3, which the V3 decoder walked
        # as element lists past the end of the block (ValueError)
        (
            "nfcapd16_common_records_in_v3_block.nfcapd",
            "bad_record",
            276,
            "(type 10) in a block of type 3, which holds type 11 records",
        ),
        # an exporter record whose version does not fit exporters.parquet's uint8 (ArrowInvalid)
        (
            "nfcapd_exporter_version_2781413386.nfcapd",
            "bad_exporter_record",
            40,
            "exporter record with version 2781413386",
        ),
        # a sampler record of rate 2**32 (OverflowError storing it as uint32)
        (
            "nfcapd_sampler_rate_2_32.nfcapd",
            "bad_sampler_record",
            40,
            "sampler record with rate 4294967296",
        ),
        # cut inside the appendix: ident and stat records lost, nothing counted
        (
            "nfcapd_appendix_cut.bz2.nfcapd",
            "truncated",
            1164,
            "appendix block 1 promises 127 bytes, 22 left",
        ),
        # cut at a block boundary: the header's block count was never compared
        (
            "nfcapd16_last_block_missing.nfcapd",
            "truncated",
            6488,
            "header promises 2 data blocks, file holds 1",
        ),
        # the records after a lowered v5 count were dropped without a word
        ("v5_count_lowered.pcap", "bad_record", 24, "header promises 2 records, 192 bytes follow"),
        # a v9 template whose lengths were damaged: its data set, shorter than one record, was
        # taken as padding; the template itself is now refused (an 8-byte port field of 32768)
        (
            "v9_template_lengths_damaged.pcap",
            "bad_template",
            24,
            "template 2048 at payload byte 160: field 7 (element 14, an unsigned number) has "
            "length 32768",
        ),
        # an IPFIX template giving sourceIPv4Address 2 bytes: every address read as 0.0.0.0
        (
            "ipfix_address_field_of_2_bytes.pcap",
            "bad_template",
            24,
            "field 1 (element 8, an address) has length 2, not 4",
        ),
        # the same in IPFIX, a data set pointed at a template with longer records
        (
            "ipfix_set_id_retargeted.pcap",
            "bad_record",
            24,
            "data set 1024: 38 bytes after 1 record(s) of 42 bytes are not zero padding",
        ),
        # an IPFIX systemInitTimeMilliseconds past 2**63: every record timed from it overflowed
        (
            "ipfix_system_init_time_2_63.pcap",
            "bad_timestamp",
            24,
            "systemInitTimeMilliseconds 9223372036854775813 is past the int64 µs range",
        ),
        # flowStartMilliseconds in 16 bytes: not read, every start taken from the end; in 4
        # bytes: read as a number, every flow started in January 1970 (a third fuzzing run)
        (
            "ipfix_start_ms_in_16_bytes.pcap",
            "bad_template",
            24,
            "field 2 (element 152, a time) has length 16, not 8",
        ),
        (
            "ipfix_start_ms_in_4_bytes.pcap",
            "bad_template",
            24,
            "field 2 (element 152, a time) has length 4, not 8",
        ),
        # a 1.6 extension map type in a 1.7 block: neither decoded nor counted
        (
            "nfcapd_extension_map_type_in_v3_block.nfcapd",
            "bad_record",
            40,
            "record 22 (type 2, a 1.6 extension map) in a block of type 3",
        ),
    ],
)
def test_damage_is_counted_with_file_and_offset(
    tmp_path: Path, name: str, reason: str, where: int, says: str
) -> None:
    manifest = sessionize(name, tmp_path / "run")
    assert manifest["counts"]["skipped"].get(reason, 0) >= 1
    located = [p for p in problems(manifest) if f"{name}@{where}" in p and says in p]
    assert located, problems(manifest)


def test_problems_are_listed_in_the_inputs_order_whatever_the_batch_size(tmp_path: Path) -> None:
    """A fuzzing run: the capture's check of frame 21's IP length runs on frames read ahead
    of the decoder, which meets frame 1's bad template later at --batch-size 65536 and
    first at 7: the manifest's problems came in another order."""
    listed = []
    for size in ("65536", "7", "1"):
        manifest = sessionize(
            "v9_problems_met_out_of_order.pcap", tmp_path / size, "--batch-size", size
        )
        listed.append(problems(manifest))
    assert listed[0] == listed[1] == listed[2]
    assert [p.split(": ")[0].rsplit("/", 1)[1] for p in listed[0]] == [
        "v9_problems_met_out_of_order.pcap@24 (frame 1)",
        "v9_problems_met_out_of_order.pcap@28592 (frame 21)",
    ]


def test_problems_keep_their_order_however_the_inputs_are_named(tmp_path: Path) -> None:
    """An audit: a file named twice (its directory and a link to it) was registered when
    found, the others when read, and the problems were listed in that order: naming one
    input another way reordered the manifest's problems."""
    evidence = tmp_path / "ev"
    evidence.mkdir()
    names = (
        "v5_count_lowered.pcap",
        "ipfix_set_id_retargeted.pcap",
        "v9_template_lengths_damaged.pcap",
    )
    for name in names:
        (evidence / name).write_bytes((DAMAGED / name).read_bytes())
    (tmp_path / "link").symlink_to(evidence)
    listed = []
    for number, inputs in enumerate(
        (
            [evidence],
            [evidence, tmp_path / "link" / names[0]],
            [evidence / name for name in reversed(names)],
            [tmp_path / "link" / names[2], evidence],
        )
    ):
        result = CliRunner().invoke(
            app,
            ["sessionize", *map(str, inputs), "--out", str(tmp_path / f"run{number}"), "--quiet"],
        )
        assert result.exit_code == 0, result.output
        manifest = json.loads((tmp_path / f"run{number}" / "manifest.json").read_text())
        listed.append([p.split(": ", 1)[0].rsplit("/", 1)[1] for p in problems(manifest)])
    assert len(listed[0]) == 4  # two in one template's frame
    assert listed[1] == listed[0] and listed[2] == listed[0] and listed[3] == listed[0]


def test_whole_blocks_keep_their_records(tmp_path: Path) -> None:
    """The damage costs only what it touches: the intact files' figures otherwise."""
    cut = sessionize("nfcapd_appendix_cut.bz2.nfcapd", tmp_path / "cut")
    missing = sessionize("nfcapd16_last_block_missing.nfcapd", tmp_path / "missing")
    # both come from the 72-record sf_v9_varsvc captures; the lost parts hold no flows
    assert cut["counts"]["records_read"] == missing["counts"]["records_read"] == 72
    assert cut["conservation"]["packets_in"] == missing["conservation"]["packets_in"] == 259


def test_a_session_sum_past_2_64_fails_the_check_and_says_why(tmp_path: Path) -> None:
    """Two records of one session with counters near 2**63: the session's sums stop at
    2**64 - 1 (they wrapped to 8 packets and 18 bytes, a plausible session, before an audit),
    which the conservation check sees. The run writes its tables, says which totals differ
    and exits 1."""
    out = tmp_path / "run"
    source = DAMAGED / "v9_session_counters_past_2_64.pcap"
    result = CliRunner().invoke(app, ["sessionize", str(source), "--out", str(out), "--quiet"])
    assert result.exit_code == 1
    assert (
        "conservation check FAILED: packets 18446744073709551624 in, 18446744073709551615"
        " in sessions"
    ) in result.output
    assert "pass 2**64, and a session's sum stops at 2**64 - 1" in result.output
    check = json.loads((out / "manifest.json").read_text())["conservation"]
    assert not check["ok"] and check["records_in"] == check["records_in_sessions"] == 2
    [session] = pq.read_table(out / "sessions.parquet").to_pylist()
    assert max(session["ab_packets"], session["ba_packets"]) == 2**64 - 1
    [consolidated] = pq.read_table(out / "sessions_consolidated.parquet").to_pylist()
    assert 2**64 - 1 in (consolidated["cs_packets"], consolidated["sc_packets"])


def test_exporter_totals_past_2_64_are_written(tmp_path: Path) -> None:
    """Two records of 2**63 packets under two templates: the exporter's total (a numpy sum,
    which wraps) reached 2**64 and exporters.parquet's uint64 column raised OverflowError,
    so no table was written. Totals are exact now, shown as the largest uint64."""
    out = tmp_path / "run"
    source = DAMAGED / "v9_exporter_packets_past_2_64.pcap"
    result = CliRunner().invoke(app, ["sessionize", str(source), "--out", str(out), "--quiet"])
    assert result.exit_code == 1 and "pass 2**64" in result.output  # a session's sum stops
    exporters = pq.read_table(out / "exporters.parquet").to_pylist()
    assert [row["packets"] for row in exporters] == [2**64 - 1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["conservation"]["packets_in"] == 2**64


def test_a_fifo_in_an_input_directory_is_counted_not_waited_for(tmp_path: Path) -> None:
    """Opening a named pipe waits for a writer: the run hung forever."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    os.mkfifo(inputs / "capture.pcap")
    (inputs / "real.pcap").write_bytes((DAMAGED / "v5_count_lowered.pcap").read_bytes())
    result = CliRunner().invoke(
        app, ["sessionize", str(inputs), "--out", str(tmp_path / "run"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["counts"]["skipped"]["unreadable"] == 1
    assert any("capture.pcap@0: not a regular file" in p for p in problems(manifest))
    assert manifest["counts"]["records_read"] == 2


def test_batch_size_past_its_ceiling_is_a_usage_error(tmp_path: Path) -> None:
    """20 digits overflowed inside pyarrow once the first file was read."""
    result = CliRunner().invoke(
        app,
        [
            "sessionize",
            str(DAMAGED / "v5_count_lowered.pcap"),
            "--out",
            str(tmp_path / "run"),
            "--batch-size",
            "99999999999999999999",
        ],
    )
    assert result.exit_code == 2
    assert not (tmp_path / "run").exists()


def test_a_set_pointed_at_another_template_makes_up_no_session(tmp_path: Path) -> None:
    """Set ID 1025 -> 1024 in softflowd's IPFIX: its 80 bytes read as one 42-byte record of
    template 1024 (192.168.10.1:2048 -> 192.168.40.1:260, protocol 0, 520 bytes) and 38
    left over, and that record went into the tables as a session no traffic had (a
    review). The set is left out whole, with its two ICMP records: said, not made up."""
    manifest = sessionize("ipfix_set_id_retargeted.pcap", tmp_path / "run")
    assert manifest["counts"]["records_read"] == 43  # the capture's 45, less the set's 2
    assert manifest["counts"]["skipped"] == {"bad_record": 1}
    assert manifest["counts"]["skipped_bytes"] == {"bad_record": 80}
    sessions = pq.read_table(tmp_path / "run" / "sessions.parquet").to_pylist()
    assert not [s for s in sessions if s["protocol_number"] == 0]
    assert not [s for s in sessions if "192.168.40.1" in (s["ip_a"], s["ip_b"])]


def test_a_block_counting_more_records_than_its_bytes_hold_loses_none(tmp_path: Path) -> None:
    """Found by a differential with nfdump: a block header's record count with a flipped
    byte (4,278,190,154 for the 74 records its 7,576 bytes hold) said "skipped:
    4278190080 bad_record" of 0 bytes, though every record was read. Nothing is lost: the
    damaged count is said, under `repaired`."""
    manifest = sessionize("nfcapd_block_record_count_damaged.nfcapd", tmp_path / "run")
    counts = manifest["counts"]
    assert counts["records_read"] == 72 and counts["skipped"] == {}
    assert counts["repaired"] == {"nfcapd_record_count": 1}
    assert problems(manifest) == [
        f"{DAMAGED / 'nfcapd_block_record_count_damaged.nfcapd'}@40 (block 1): block header "
        "counts 4278190154 records, its 7576 bytes hold 74: all read"
    ]
