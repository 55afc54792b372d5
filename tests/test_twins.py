"""Input files that hold one export twice (twins.py): found, said, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from obserae_forensics import twins
from obserae_forensics.cli import app
from obserae_forensics.twins import TwinRecords
from tests.sessionize.scenario import batch, rec

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def in_file(records: list[dict[str, Any]], *names: str) -> pa.RecordBatch:
    """The records as read from `names` (one name for all, or one per record)."""
    made = batch(records)
    files = list(names) if len(names) == len(records) else [names[0]] * len(records)
    column = pa.array(files, pa.string()).dictionary_encode()
    arrays = [
        column if field.name == "source_file" else made.column(i)
        for i, field in enumerate(made.schema)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=made.schema)


def traffic(n: int, start: float = 1_700_000_000.0, **changes: Any) -> list[dict[str, Any]]:
    """n records of other endpoints and times: no two alike."""
    return [rec(start + i, start + i + 0.5, sport=10_000 + i, **changes) for i in range(n)]


def pairs(*batches: pa.RecordBatch) -> list[dict[str, Any]]:
    found = TwinRecords()
    for one in batches:
        found.add(one)
    return found.pairs()


def test_a_copy_in_another_file_is_named_with_its_counts() -> None:
    records = traffic(10)
    [pair] = pairs(in_file(records, "a.pcap"), in_file(records[::-1], "b.nfcapd"))
    assert pair == {
        "files": ["a.pcap", "b.nfcapd"],
        "records_compared": [10, 10],
        "twin_records": 10,
        "sample": 1,
    }


def test_other_records_are_no_twins() -> None:
    """Consecutive files, another exporter's records of the same traffic, and records one
    millisecond apart are other evidence; microseconds inside one millisecond are not (an
    nfcapd file keeps milliseconds, the v5 capture it came from microseconds)."""
    records = traffic(10)
    assert pairs(in_file(records, "a"), in_file(traffic(10, start=1_700_000_100.0), "b")) == []
    assert pairs(in_file(records, "a"), in_file(traffic(10, exporter="192.0.2.9"), "b")) == []
    later = [rec(1_700_000_000.001 + i, 1_700_000_000.501 + i, sport=10_000 + i) for i in range(10)]
    assert pairs(in_file(records, "a"), in_file(later, "b")) == []
    within = [
        rec(1_700_000_000.0004 + i, 1_700_000_000.5004 + i, sport=10_000 + i) for i in range(10)
    ]
    assert pairs(in_file(records, "a"), in_file(within, "b"))[0]["twin_records"] == 10
    # every counter counts: one byte more in either direction is another record
    for change in ({"octets": 101}, {"packets": 2}, {"roctets": 1}, {"rpackets": 1}):
        assert pairs(in_file(records, "a"), in_file(traffic(10, **change), "b")) == []
    for change in ({"dport": 444}, {"dst": "10.0.0.3"}, {"src": "10.0.0.4"}, {"proto": 17}):
        assert pairs(in_file(records, "a"), in_file(traffic(10, **change), "b")) == []


def test_half_of_the_smaller_file_and_three_records_at_the_least() -> None:
    records = traffic(12)
    # 6 of 12 (the smaller file's half): twins; 5 of 12 not
    assert pairs(in_file(records, "a"), in_file(records[:6] + traffic(6, 1_800_000_000), "b"))
    assert not pairs(in_file(records, "a"), in_file(records[:5] + traffic(7, 1_800_000_000), "b"))
    # a capture of 2 records, both in the day's file: too few to tell
    assert not pairs(in_file(records, "a"), in_file(records[:2], "b"))
    assert pairs(in_file(records, "a"), in_file(records[:3], "b"))[0]["records_compared"] == [
        12,
        3,
    ]


def test_a_record_repeated_in_one_file_is_no_copy() -> None:
    records = traffic(5)
    assert pairs(in_file(records + records, "a"), in_file(traffic(5, 1_800_000_000), "b")) == []


def test_sampled_past_the_budget_alike_whatever_the_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past BUDGET hashes the check keeps those below a threshold: the same ones however
    the records are cut into batches or ordered, so the manifest does not change with
    --batch-size; a copy is still found, and the sample says how thin."""
    monkeypatch.setattr(twins, "BUDGET", 16)
    records = traffic(200)
    whole = pairs(in_file(records + records, *(["a"] * 200 + ["b"] * 200)))
    assert whole and whole[0]["sample"] > 1
    assert whole[0]["twin_records"] == whole[0]["records_compared"][0] <= 16
    cut = [in_file(records[i : i + 7], "a") for i in range(0, 200, 7)]
    cut += [in_file(records[::-1][i : i + 13], "b") for i in range(0, 200, 13)]
    assert pairs(*cut) == whole
    # one batch of both files, the later file's records first: numbered in the given order
    mixed = in_file(records[::-1] + records, *(["b"] * 200 + ["a"] * 200))
    assert pairs(mixed) == whole


def test_a_run_of_a_capture_and_its_nfcapd_file_says_so(tmp_path: Path) -> None:
    """The bundled capture and the nfcapd file a collector wrote of it, read together (a
    review: 2 x the bytes, without a word). Both copies stay in the tables; the summary
    and the manifest name the pair."""
    nfcapd = FIXTURES / "nfcapd178_sf_v9_varsvc.bz2.nfcapd"
    capture = FIXTURES / "sf_v9_varsvc.pcap"
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["sessionize", str(capture), str(nfcapd), "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    [pair] = manifest["twin_inputs"]
    assert sorted(pair["files"]) == sorted([str(capture), str(nfcapd)])
    assert pair["twin_records"] == 72 and pair["records_compared"] == [72, 72]
    assert manifest["conservation"]["records_in"] == 144
    assert "1 pair(s) of files hold the same flow records" in result.stderr
    alone = tmp_path / "alone"
    result = CliRunner().invoke(app, ["sessionize", str(capture), "--out", str(alone), "-q"])
    assert json.loads((alone / "manifest.json").read_text())["twin_inputs"] == []
    assert "same flow records" not in result.stderr


def test_a_capture_and_the_nfcapd_file_a_sampler_scaled_are_twins(
    tmp_path: Path, corpus: Path
) -> None:
    """A review: nfcapd -s 10 wrote the capture's records with their counters multiplied
    by 10 (counters_scaled), so no record hashed as its copy: read together, the pair went
    unnamed and the sessions counted the traffic twice (1,716 packets where the capture
    holds 156). Scaled counters are hashed as the exporter counted them."""
    capture = corpus / "exports" / "sf_v5_test.pcap"
    scaled = FIXTURES / "nfcapd178_sf_v5_test_sampled.zstd.nfcapd"
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["sessionize", str(capture), str(scaled), "--out", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    [pair] = json.loads((out / "manifest.json").read_text())["twin_inputs"]
    assert sorted(pair["files"]) == sorted([str(capture), str(scaled)])
    assert pair["twin_records"] == 43 and pair["records_compared"] == [43, 43]


def test_scaled_counters_are_compared_as_counted_only_when_they_divide() -> None:
    """A record scaled at 1:10 is its unscaled copy's twin; one whose counters are no
    multiple of its rate cannot be a scaled copy, and is compared as it is."""
    records = traffic(6, packets=3, octets=300)
    copies = traffic(6, packets=30, octets=3000, sampling=10, scaled=True)
    [pair] = pairs(in_file(records, "a.pcap"), in_file(copies, "b.nfcapd"))
    assert pair["twin_records"] == 6
    odd = traffic(6, packets=31, octets=3000, sampling=10, scaled=True)
    assert pairs(in_file(records, "a.pcap"), in_file(odd, "b.nfcapd")) == []
    unscaled = traffic(6, packets=30, octets=3000, sampling=10)  # as sent, 1:10
    assert pairs(in_file(records, "a.pcap"), in_file(unscaled, "b.nfcapd")) == []


def test_the_kernel_hashes_as_its_numpy_reference() -> None:
    """_hash_records against hash_columns, over values at the edges: times before 1970
    (floor division: -1 µs is millisecond -1 in both), counters past 2**63, IPv6."""
    records = [
        rec(-0.000001, 0.0, packets=2**64 - 1, octets=2**63 + 5),
        rec(1_700_000_000.9999, 1_700_000_001.0, src="2001:db8::1", dst="ff02::1", proto=58),
        rec(0.0, 0.0, sport=0, dport=0, proto=0, packets=0, octets=0),
        *traffic(50, rpackets=3, roctets=2**40),
    ]
    made = batch(records)
    columns = twins._columns(made)
    assert twins.record_hashes(made).tolist() == twins.hash_columns(columns).tolist()
    assert len(set(twins.record_hashes(made).tolist())) == len(records)


def test_every_two_files_holding_one_export_are_a_pair() -> None:
    """A day's nfcapd file, its capture and a second collector's copy: each pair of them is
    named. Pairing each copy with the first file of a record alone hid the capture and
    the copy when the first file held few of their records (a review: the corpus's pmacct
    capture and its nfcapd file went unnamed beside softflowd's file of the same traffic)."""
    records = traffic(20)
    found = pairs(in_file(records[:12], "a"), in_file(records, "b"), in_file(records, "c"))
    assert [(p["files"], p["twin_records"]) for p in found] == [
        (["a", "b"], 12),
        (["a", "c"], 12),
        (["b", "c"], 20),
    ]


def test_neighbouring_addresses_hash_apart() -> None:
    """A multiply alone carried a change of an IPv4 address's last octet, the top byte of
    its word, to the hash's top byte only: 1 in 256 pairs of neighbours hashed alike."""
    records = [
        rec(1_700_000_000.0, src=f"10.0.0.{s}", dst=f"10.0.1.{d}")
        for s in range(64)
        for d in range(256)
    ]
    hashes = twins.record_hashes(batch(records))
    assert len(set(hashes.tolist())) == len(records)


def test_an_answer_asked_before_more_records_came_is_not_kept() -> None:
    """pairs() keeps its last answer for the summary and the manifest, which both ask: a
    batch added after it makes it stale."""
    records = traffic(8)
    found = TwinRecords()
    found.add(in_file(records, "a"))
    assert found.pairs() == []
    found.add(in_file(records, "b"))
    assert [p["files"] for p in found.pairs()] == [["a", "b"]]
    assert found.pairs() == found.pairs()
    assert [p["files"] for p in found.pairs(order=lambda name: name != "b")] == [["b", "a"]]
