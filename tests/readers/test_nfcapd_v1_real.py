"""Real nfdump 1.6.25 files (fixtures/nfcapd16_*, see fixtures/README.md) against nfdump 1.7.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from obserae_forensics.readers.nfcapd import nfcapd_time_span
from tests.readers.test_nfcapd import (
    assert_same_records,
    nfdump_records,
    our_records,
    read_table,
)

FILES = {  # name: (records, packets, bytes, sampling rate) from fixtures/README.md
    "nfcapd16_sf_v9_varsvc.nfcapd": (72, 259, 45779, 1),
    "nfcapd16_sf_v5_test_sampled.lzo.nfcapd": (43, 1560, 621280, 10),
    "nfcapd16_sf_v10_biflow.lz4.nfcapd": (26, 166, 63620, 1),
    "nfcapd16_pm_v9_test.bz2.nfcapd": (45, 166, 63677, 1),
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_real_1_6_file_equals_nfdump_record_by_record(fixtures: Path, name: str) -> None:
    path = fixtures / name
    table, report = read_table(path)
    assert_same_records(our_records(table), nfdump_records(path), exporter_known=True)
    assert not report.skipped and report.files[str(path)].format == "nfcapd-v1"


@pytest.mark.parametrize("name", sorted(FILES))
def test_real_1_6_file_figures(fixtures: Path, name: str) -> None:
    records, packets, octets, rate = FILES[name]
    path = fixtures / name
    table, report = read_table(path)
    stats = report.exporters[("127.0.0.1", 0)]
    assert (stats.records, stats.packets, stats.octets) == (records, packets, octets)
    assert set(table.column("sampling_rate").to_pylist()) == {rate}
    assert set(table.column("counters_scaled").to_pylist()) == {rate > 1}
    assert stats.sampling_rate == rate
    span = nfcapd_time_span(path)
    assert span is not None
    first = table.column("first_seen").cast("int64").to_numpy().min()
    last = table.column("last_seen").cast("int64").to_numpy().max()
    assert span[0] <= first and span[1] >= last


@pytest.mark.parametrize("name", sorted(FILES))
def test_1_6_file_reads_like_nfdumps_own_conversion_to_1_7(
    fixtures: Path, tmp_path: Path, name: str
) -> None:
    """nfdump 1.7.1 -w rewrites a 1.6 file as layout 2 (records converted to V3)."""
    import subprocess

    from tests.conftest import need_tool

    converted = tmp_path / "converted.nfcapd"
    subprocess.run(
        [need_tool("nfdump"), "-r", str(fixtures / name), "-w", str(converted)],
        check=True,
        capture_output=True,
    )
    original, _ = read_table(fixtures / name)
    table, report = read_table(converted)
    assert report.files[str(converted)].format == "nfcapd-v2"
    assert our_records(table) == our_records(original)
