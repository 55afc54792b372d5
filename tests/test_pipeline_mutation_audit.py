"""What the sessionize job of pipeline.py does that no test pinned, found by a mutation
audit (the audit-pipeline branch's, letter L: 60 small changes to sessionize_inputs,
_Totals, exporters_table, inspect_inputs, _coalesced/_joined, _text_flows, _input_digest,
_cited_input and _cited_file; 27 killed by the tests before this file, 33 not, 4 of those
equivalent). What no test looked at: the data window over several batches, the conservation
check's packets, the exporters table's columns from their own fields, its row order and its
clamp past 2**64, its sessions per exporter, the manifest's sessions by state, an nfcapd
input's layout, a compressed input's compression and decompressed size, the absolute path
of a file given relatively, an input rewritten at its size, discovery's stale SHA-256, an
input gone at the end, and a run with no records (its empty flows table's columns, its
session_matches table); and _coalesced's boundaries. Left, with no effect on what the tool
writes: an empty batch in _Totals.add_input (L07: read_flows yields no empty batch, so
_coalesced makes none); _joined without unify_dictionaries (L17: combine_chunks unifies a
dictionary column's chunks itself, as test_pipeline checks); one consolidation bucket
instead of 128 (L55: the same consolidated rows, in another order across buckets, which the
README tells a reader to sort by first_seen); the sessionizer fed batches of 4 times the
batch size (L56: the tables do not depend on the batching,
tests/sessionize/test_properties.py, and the manifest cites the option given). Each test
fails with its change applied and names it."""

from __future__ import annotations

import gzip
import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from obserae_forensics.pipeline import (
    ReadOptions,
    SessionizeConfig,
    _cited_file,
    _cited_input,
    _coalesced,
    _input_digest,
    exporters_table,
    sessionize_inputs,
)
from obserae_forensics.readers import InputFile
from obserae_forensics.report import RunReport
from obserae_forensics.sessionize import SessionPolicy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PCAP = FIXTURES / "sf_v9_varsvc.pcap"
BIFLOW = FIXTURES / "nfcapd178_sf_v10_biflow_test.lz4.nfcapd"


def _sessionize(out: Path, *inputs: Path, **options: Any) -> dict[str, Any]:
    """The manifest of a run of `inputs` into `out` (config fields in `options`)."""
    config = SessionizeConfig(inputs=inputs, out=out, policy=SessionPolicy(), **options)
    return sessionize_inputs(config, RunReport()).manifest


def _numbers(n: int) -> pa.RecordBatch:
    return pa.record_batch({"n": pa.array(range(n), pa.int64())})


# --- _coalesced: the batches the sessionizer and the sums see ----------------------------


def test_batches_that_fill_the_size_exactly_are_joined() -> None:
    """Kills L14 (`>=` for `>`): two batches of 4 make one of 8 at a size of 8, not two
    (the tables are the same either way; the batches, and the ~3 ms each costs, are not)."""
    joined = list(_coalesced(iter([_numbers(4), _numbers(4), _numbers(1)]), 8))
    assert [part.num_rows for part in joined] == [8, 1]


def test_a_first_batch_larger_than_the_size_passes_alone() -> None:
    """Kills L15 (`if pending and` dropped): a first batch over the size made an empty
    join of nothing before it (read_flows hands none over today; test_pipeline's batch
    over the size comes second)."""
    big = _numbers(10)
    joined = list(_coalesced(iter([big, _numbers(3)]), 8))
    assert joined[0] is big and [part.num_rows for part in joined] == [10, 3]


# --- exporters_table: each column from its own field -------------------------------------


def test_exporters_table_takes_each_column_from_its_own_field() -> None:
    """Kills L19 (packets from octets), L20 (sessions 0), L24 (the maximum clock offset
    from the minimum), L27 (records_before_sampling from records), L28 (domain 0), L29
    (sequence_lost from sequence_gaps), L30 (duplicates from reorders), L31 (first export
    from the last) and L32 (templates from template_changes): every counter set to a
    value of its own, where a capture has most at 0 and equal to each other."""
    report = RunReport()
    stats = report.exporter("192.0.2.7", 3)
    stats.versions = {10, 5, 9}
    names = [
        "datagrams",
        "records",
        "packets",
        "octets",
        "templates",
        "template_changes",
        "template_withdrawals",
        "options_records",
        "sequence_gaps",
        "sequence_lost",
        "nfcapd_failures",
        "duplicates",
        "reorders",
        "restarts",
        "undecodable_sets",
        "records_without_template",
        "enterprise_fields_skipped",
        "sampling_rate",
        "records_before_sampling",
    ]
    for value, name in enumerate(names, start=1):
        setattr(stats, name, value)
    stats.first_export_us, stats.last_export_us = 1_000_000, 2_000_000
    stats.clock_offset_min_us, stats.clock_offset_max_us = -1_500_000, 2_500_000
    pressure = {
        "192.0.2.7": {
            "evictions": 19,
            "first_eviction_us": 3_000_000,
            "last_eviction_us": 4_000_000,
            "peak_open": 20,
        }
    }
    table = exporters_table(report, pressure, Counter({"192.0.2.7": 21, "192.0.2.8": 22}))
    for column in ("first_export", "last_export", "first_eviction", "last_eviction"):
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, table.column(column).cast(pa.int64()))
    [row] = table.to_pylist()
    assert row == {
        "exporter": "192.0.2.7",
        "exporter_domain": 3,
        "version": 10,
        "versions": "5,9,10",
        **{name: value for value, name in enumerate(names, start=1)},
        "first_export": 1_000_000,
        "last_export": 2_000_000,
        "clock_offset_min_s": -1.5,
        "clock_offset_max_s": 2.5,
        "sessions": 21,
        "evictions": 19,
        "first_eviction": 3_000_000,
        "last_eviction": 4_000_000,
        "peak_open_sessions": 20,
    }


def test_exporters_table_rows_are_sorted_and_totals_past_uint64_clamped() -> None:
    """Kills L25 (rows in the order the exporters were met) and L26 (no clamp: a total
    past 2**64, from damaged counters, raised instead of showing as the largest uint64)."""
    report = RunReport()
    for exporter, domain in (("198.51.100.2", 0), ("192.0.2.1", 5), ("192.0.2.1", 1)):
        report.exporter(exporter, domain).records = 1
    report.exporter("192.0.2.1", 5).octets = 2**64 + 5
    table = exporters_table(report)
    rows = table.select(["exporter", "exporter_domain"]).to_pylist()
    assert [(row["exporter"], row["exporter_domain"]) for row in rows] == [
        ("192.0.2.1", 1),
        ("192.0.2.1", 5),
        ("198.51.100.2", 0),
    ]
    assert table["octets"].to_pylist() == [0, 2**64 - 1, 0]


# --- sessionize_inputs: what the manifest and the exporters table say --------------------


@pytest.fixture(scope="module")
def biflow_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("biflow") / "run"
    return out, _sessionize(out, BIFLOW, read=ReadOptions(batch_size=7))


def test_the_data_window_spans_every_batch(tmp_path: Path) -> None:
    """Kills L04 (the start kept as the latest batch start), L05 (the end as the earliest
    batch end) and L06 (the start from last_seen): in batches of 7 the window is still
    the flows' earliest first_seen and latest last_seen (the capture's earliest last_seen
    is 99 ms after its earliest first_seen)."""
    out = tmp_path / "run"
    window = _sessionize(out, PCAP, read=ReadOptions(batch_size=7))["data_window"]
    flows = pq.read_table(out / "flows.parquet", columns=["first_seen", "last_seen"])
    first = flows["first_seen"].cast(pa.int64()).to_pylist()
    last = flows["last_seen"].cast(pa.int64()).to_pylist()
    assert min(first) < min(last)
    assert (window["start_us"], window["end_us"]) == (min(first), max(last))


def test_exporters_table_counts_the_sessions_of_each_exporter(
    biflow_run: tuple[Path, dict[str, Any]],
) -> None:
    """Kills L33 (sessions per exporter never counted): the exporters table's `sessions`
    are the sessions table's rows of that exporter."""
    out, manifest = biflow_run
    sessions = Counter(pq.read_table(out / "sessions.parquet")["exporter"].to_pylist())
    rows = pq.read_table(out / "exporters.parquet").to_pylist()
    assert rows and {row["exporter"]: row["sessions"] for row in rows} == dict(sessions)
    assert sum(sessions.values()) == manifest["counts"]["sessions"] > 0


def test_the_manifest_counts_sessions_by_state_and_by_close_reason(
    biflow_run: tuple[Path, dict[str, Any]],
) -> None:
    """Kills L35 (sessions by state counted from `close_reason`): both counts are the
    sessions table's (an open session has no close reason)."""
    out, manifest = biflow_run
    sessions = pq.read_table(out / "sessions.parquet")
    counts = manifest["counts"]
    assert counts["sessions_by_state"] == dict(
        sorted(Counter(sessions["state"].to_pylist()).items())
    )
    reasons = Counter(r for r in sessions["close_reason"].to_pylist() if r is not None)
    assert counts["sessions_by_close_reason"] == dict(sorted(reasons.items()))


def test_an_nfcapd_input_is_cited_with_its_layout(biflow_run: tuple[Path, dict[str, Any]]) -> None:
    """Kills L40 (the format as discovery found it): the manifest cites the layout the
    reader read, nfcapd-v2 for nfdump 1.7's files."""
    _, manifest = biflow_run
    [cited] = manifest["inputs"]
    assert cited["format"] == "nfcapd-v2"
    assert cited["sha256"] == hashlib.sha256(BIFLOW.read_bytes()).hexdigest()


def test_a_compressed_input_is_cited_as_given_and_as_read(tmp_path: Path) -> None:
    """Kills L41 (no `compression`) and L42 (no `unpacked_size`): a capture gzipped whole
    is cited with the size and SHA-256 of its compressed bytes, its compression, and the
    size its offsets count in."""
    packed = tmp_path / "case" / "sf_v9_varsvc.pcap.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(PCAP.read_bytes()))
    manifest = _sessionize(tmp_path / "run", packed)
    [cited] = manifest["inputs"]
    assert cited["size"] == packed.stat().st_size
    assert cited["sha256"] == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert (cited["compression"], cited["unpacked_size"]) == ("gzip", PCAP.stat().st_size)
    assert cited["records"] == 72


def test_packets_lost_between_the_records_and_the_sessions_fail_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills L13 (the packets not compared): fault injection, the sessions' packets summed
    above the records'; records and bytes agree. The check is not ok."""
    from obserae_forensics import pipeline

    add_sessions = pipeline._Totals.add_sessions

    def skewed(self: Any, sessions: pa.Table) -> None:
        add_sessions(self, sessions)
        self.packets_out += 1

    monkeypatch.setattr(pipeline._Totals, "add_sessions", skewed)
    check = _sessionize(tmp_path / "run", PCAP)["conservation"]
    assert check["packets_in_sessions"] > check["packets_in"] == 259
    assert (check["records_in"], check["bytes_in"]) == (72, check["bytes_in_sessions"])
    assert check["ok"] is False


# --- a run with nothing in its window -----------------------------------------------------


def test_a_run_with_no_records_still_writes_every_table(tmp_path: Path) -> None:
    """Kills L52 (no session_matches.parquet when no session came) and L53 (the empty
    flows table without `direction`): a window that holds none of the records still
    gives every table, with the columns of a run that had some."""
    from obserae_forensics.matching import load_cartography, load_flow_matrix

    cartography = load_cartography(FIXTURES / "cartography.yaml")
    out = tmp_path / "run"
    manifest = _sessionize(
        out,
        PCAP,
        read=ReadOptions(window=(0, 1)),
        cartography=cartography,
        flow_matrix=load_flow_matrix(FIXTURES / "flow_matrix.yaml", cartography),
    )
    assert manifest["counts"]["sessions"] == 0 and manifest["counts"]["outside_window"] == 72
    full = tmp_path / "full"
    _sessionize(full, PCAP)
    assert pq.read_schema(out / "flows.parquet").names == (
        pq.read_schema(full / "flows.parquet").names
    )
    assert pq.read_table(out / "session_matches.parquet").num_rows == 0


# --- _input_digest, _cited_file, _cited_input --------------------------------------------


def _found(path: Path, **fields: Any) -> InputFile:
    status = path.stat()
    return InputFile(path, "pcap", status.st_size, None, mtime_ns=status.st_mtime_ns, **fields)


def test_an_input_rewritten_in_place_at_its_size_is_said(tmp_path: Path) -> None:
    """Kills L37 (the mtime discovery saw not compared): a file rewritten with as many
    bytes changed only its mtime, and was cited with the hash of its new bytes in silence."""
    path = tmp_path / "a.pcap"
    path.write_bytes(PCAP.read_bytes())
    item = _found(path)
    path.write_bytes(bytes(reversed(PCAP.read_bytes())))
    os.utime(path, ns=(item.mtime_ns + 10**9, item.mtime_ns + 10**9))
    digest, said = _input_digest(item)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert said.startswith("changed while the run read it")


def test_discoverys_digest_is_not_cited_for_a_file_that_changed_since(tmp_path: Path) -> None:
    """Kills L38 (discovery's SHA-256 cited whatever the file is now): it is the hash of
    the file as found, and the file changed; the hash cited is of its bytes at the end."""
    path = tmp_path / "a.pcap"
    path.write_bytes(PCAP.read_bytes())
    item = _found(path, sha256=hashlib.sha256(PCAP.read_bytes()).hexdigest())
    assert _input_digest(item) == (item.sha256, "")
    with open(path, "ab") as handle:
        handle.write(b"\0" * 16)
    digest, said = _input_digest(item)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() != item.sha256
    assert said


def test_an_input_gone_at_the_end_is_said(tmp_path: Path) -> None:
    """Kills L39 (nothing said of an input that could not be hashed at the end)."""
    path = tmp_path / "a.pcap"
    path.write_bytes(PCAP.read_bytes())
    item = _found(path)
    path.unlink()
    digest, said = _input_digest(item)
    assert digest is None
    assert said.startswith("could not be read at the run's end to hash it")


def test_files_given_by_relative_paths_are_cited_with_their_absolute_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kills L43 (a settings, Cartography or Flow Matrix file cited without its absolute
    path) and L44 (an input so cited): `sessionize case -o run` run from the case's
    directory names files that a report read elsewhere cannot find."""
    monkeypatch.chdir(FIXTURES)
    digest = hashlib.sha256(PCAP.read_bytes()).hexdigest()
    assert _cited_file("sf_v9_varsvc.pcap") == {
        "path": "sf_v9_varsvc.pcap",
        "absolute": str(PCAP),
        "sha256": digest,
    }
    item = InputFile(Path("sf_v9_varsvc.pcap"), "pcap", PCAP.stat().st_size, None)
    assert _cited_input(item, None, digest) == {
        "path": "sf_v9_varsvc.pcap",
        "absolute": str(PCAP),
        "format": "pcap",
        "size": PCAP.stat().st_size,
        "sha256": digest,
    }
