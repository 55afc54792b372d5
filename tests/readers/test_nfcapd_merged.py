"""Files nfdump merged (`nfdump -R dir -w`, `nfdump -M a:b:c -r f -w`): each source file's
exporter and sampler records are appended under new sysids, every flow record keeps the
sysid of its source file. Read separately, the source files are the oracle
(fixtures/README.md, `nfcapd171_merged/`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from obserae_forensics.readers.nfcapd import EXPORTER_INFO_RECORD, read_nfcapd
from obserae_forensics.readers.nfcapd_write import RawFile, read_raw, swap_record, write_v2
from obserae_forensics.report import RunReport
from obserae_forensics.schema import FLOW_SCHEMA
from tests.conftest import FIXTURES

MERGED = FIXTURES / "nfcapd171_merged"
# the record itself: 5-tuple, times, counters
RECORD = (
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "protocol",
    "first_seen",
    "last_seen",
    "packets",
    "octets",
    "reverse_packets",
    "reverse_octets",
    "export_version",
)
# what the reader makes of its sysid
ATTRIBUTION = ("exporter", "exporter_domain", "sampling_rate", "counters_scaled")
# merged file, its sources, records whose sysid the merge left stale
CASES = [
    ("merged_R.nfcapd", ("R",), 78),  # ::1 then 127.0.0.1, both v9
    ("merged_M.nfcapd", ("M/a", "M/b", "M/c"), 57),  # ::1 v9; 127.0.0.1 v5 1:10, v9 1:5
    ("merged_R2.nfcapd", ("R2",), 86),  # 127.0.0.1 only: v9 1:5, v5 1:10, v10
]


def read(path: Path) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    return pa.Table.from_batches(list(read_nfcapd(path, report)), schema=FLOW_SCHEMA), report


def read_written(path: Path, raw: RawFile) -> tuple[pa.Table, RunReport]:
    """`raw` as edited, written to `path` and read."""
    write_v2(path, raw)
    return read(path)


def records(table: pa.Table) -> Counter[tuple[object, ...]]:
    return Counter(
        tuple(row[name] for name in RECORD + ATTRIBUTION)
        for row in table.select(list(RECORD + ATTRIBUTION)).to_pylist()
    )


def sources(folders: tuple[str, ...]) -> tuple[Counter[tuple[object, ...]], Counter[object]]:
    """Records and records per exporter of the source files, each read on its own."""
    rows: Counter[tuple[object, ...]] = Counter()
    exporters: Counter[object] = Counter()
    for folder in folders:
        for path in sorted((MERGED / folder).iterdir()):
            table, report = read(path)
            rows += records(table)
            exporters.update({key: stats.records for key, stats in report.exporters.items()})
    return rows, exporters


@pytest.mark.parametrize(("name", "folders", "stale"), CASES)
def test_merged_file_reads_as_its_source_files(
    name: str, folders: tuple[str, ...], stale: int
) -> None:
    """Each record keeps the exporter, domain and sampling rate it has in its source file,
    and the records moved are counted (they read as the exporter of the first source file
    with the sysid, 1-in-10 v5 records at the v9 sampler's 1 in 5)."""
    table, report = read(MERGED / name)
    expected, per_exporter = sources(folders)
    assert sum(expected.values()) == len(table)
    assert records(table) == expected
    assert report.repaired["stale_sysid"] == stale
    assert {key: stats.records for key, stats in report.exporters.items()} == dict(per_exporter)


def test_merged_records_take_their_own_exporter_and_rate() -> None:
    """The evidence spelled out: merged_M's 127.0.0.1 records (exporterID 1, the ::1
    exporter's) read as 127.0.0.1 at 10 (v5) and 5 (v9), as nfdump's `ra` and the sources."""
    table, _ = read(MERGED / "merged_M.nfcapd")
    rows = table.select(["exporter", "export_version", "sampling_rate"]).to_pylist()
    seen = Counter((row["exporter"], row["export_version"], row["sampling_rate"]) for row in rows)
    assert seen == {("::1", 9, 1): 72, ("127.0.0.1", 5, 10): 12, ("127.0.0.1", 9, 5): 45}


def exporter_records(raw: RawFile) -> list[tuple[int, int, bytes]]:
    """(block, record index, record) of each exporter-info record."""
    return [
        (b, i, record)
        for b, block in enumerate(raw.blocks)
        for i, record in enumerate(block)
        if int(np.frombuffer(record, "<u2", 1)[0]) == EXPORTER_INFO_RECORD
    ]


def with_sysid(record: bytes, sysid: int) -> bytes:
    out = bytearray(record)
    out[26:28] = sysid.to_bytes(2, "little")
    return bytes(out)


def test_no_exporter_that_agrees_keeps_the_sysid(tmp_path: Path) -> None:
    """merged_R's 127.0.0.1 exporter record moved to 127.0.0.2: no exporter record agrees
    with the 127.0.0.1 records, so they keep their sysid's (::1), as before, and that is
    said."""
    raw = read_raw(MERGED / "merged_R.nfcapd")
    block, index, record = exporter_records(raw)[1]
    assert record[16:20] == bytes([1, 0, 0, 127])  # AF_INET, host-order u32 in ip_lo
    raw.blocks[block][index] = record[:16] + bytes([2]) + record[17:]
    table, report = read_written(tmp_path / "none.nfcapd", raw)
    assert set(table.column("exporter").to_pylist()) == {"::1"}
    assert "stale_sysid" not in report.repaired
    # kept under an exporter record they contradict: said (a review), not kept unsaid
    assert report.repaired["stale_sysid_unresolved"] == 78


def test_several_exporters_that_agree_keep_the_sysid(tmp_path: Path) -> None:
    """A second 127.0.0.1 v9 exporter record (sysid 3, another domain): two agree with the
    stale records, none is chosen, they keep their sysid's, and that is said."""
    raw = read_raw(MERGED / "merged_R.nfcapd")
    block, index, record = exporter_records(raw)[1]
    twin = bytearray(with_sysid(record, 3))
    twin[28:32] = (7).to_bytes(4, "little")  # exporter id (domain)
    raw.blocks[block].insert(index + 1, bytes(twin))
    table, report = read_written(tmp_path / "several.nfcapd", raw)
    assert set(table.column("exporter").to_pylist()) == {"::1"}
    assert "stale_sysid" not in report.repaired
    assert report.repaired["stale_sysid_unresolved"] == 78


def test_a_v7_exporters_records_are_no_contradiction(corpus: Path, tmp_path: Path) -> None:
    """nfcapd gives a v7 exporter record version 7 and writes its records as nfversion 5
    (netflow_v5_v7.c): beside a v5 exporter of the same address, the v7 exporter's records
    were moved to the v5 one, its domain and samplers, and counted as repaired (a review).
    A v7 exporter record (sysid 9, engine 257) beside the corpus's v5 one, every other
    record naming it."""
    raw = read_raw(corpus / "nfcapd" / "sf_v5_test.nfcapd")
    block, index, record = exporter_records(raw)[0]
    v7 = bytearray(with_sysid(record, 9))
    v7[4:8] = (7).to_bytes(4, "little")  # version
    v7[28:32] = (257).to_bytes(4, "little")  # exporter id (domain)
    raw.blocks[block].insert(index + 1, bytes(v7))
    named = 0
    for records_of in raw.blocks:
        for at, flow in enumerate(records_of):
            if int(np.frombuffer(flow, "<u2", 1)[0]) == 11:  # V3 record, nfversion 5
                assert flow[11] == 5
                named += 1
                if named % 2 == 0:
                    records_of[at] = flow[:8] + (9).to_bytes(2, "little") + flow[10:]
    table, report = read_written(tmp_path / "v5v7.nfcapd", raw)
    domains = Counter(table.column("exporter_domain").to_pylist())
    assert domains == {0: named - named // 2, 257: named // 2}
    assert not report.repaired


def test_merged_file_in_big_endian_reads_the_same(tmp_path: Path) -> None:
    """Addresses compared as the bytes of the exporter record and of EXipReceived, in
    either byte order."""
    raw = read_raw(MERGED / "merged_M.nfcapd")
    raw.order = ">"
    raw.blocks = [[swap_record(record) for record in block] for block in raw.blocks]
    base, base_report = read(MERGED / "merged_M.nfcapd")
    table, report = read_written(tmp_path / "be.nfcapd", raw)
    assert records(table) == records(base)
    assert report.repaired["stale_sysid"] == base_report.repaired["stale_sysid"] == 57


def test_a_file_whose_records_agree_with_their_sysid_has_no_repair() -> None:
    """The source files themselves: every record agrees with its own exporter record."""
    for folder in ("R", "R2", "M/a", "M/b", "M/c"):
        for path in sorted((MERGED / folder).iterdir()):
            assert "stale_sysid" not in read(path)[1].repaired
