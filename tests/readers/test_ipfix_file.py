"""IPFIX files (RFC 5655, readers/ipfix_file.py): a real writer's file against libfixbuf's
ipfixDump, and the same file damaged.

fixtures/ipfix_file_python_ipfix.ipfix: python-ipfix (Debian python3-ipfix) writing the
210 records of fixtures/ipfix_tcp_python_ipfix.pcap to a file (fixtures/README.md).
Before, such a file was `unknown_format`: nothing read.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from obserae_forensics.addresses import address_text
from obserae_forensics.errors import UsageError
from obserae_forensics.readers import discover_inputs, refuse_nothing_to_read
from obserae_forensics.report import RunReport
from tests.conftest import need_tool
from tests.readers.test_tcp_streams import read

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
FILE = FIXTURES / "ipfix_file_python_ipfix.ipfix"


def flows(table: pa.Table) -> Counter[tuple[object, ...]]:
    return Counter(
        (
            address_text(r["src_addr"]),
            address_text(r["dst_addr"]),
            r["src_port"],
            r["dst_port"],
            r["protocol"],
            r["packets"],
            r["octets"],
            r["first_seen"],
            r["last_seen"],
            r["exporter_domain"],
        )
        for r in table.to_pylist()
    )


def test_an_ipfix_file_reads_as_the_same_export_over_tcp() -> None:
    table, report = read(FILE)
    assert table.num_rows == 210 and not report.skipped and not report.ignored
    assert report.files[str(FILE)].format == "ipfix"
    assert {r["exporter"] for r in table.to_pylist()} == {"0.0.0.0"}
    over_tcp, _ = read(FIXTURES / "ipfix_tcp_python_ipfix.pcap")
    assert flows(table) == flows(over_tcp)


def test_an_ipfix_file_equals_ipfixdump() -> None:
    listing = subprocess.run(
        [need_tool("ipfixDump"), "--in", str(FILE)], check=True, capture_output=True, text=True
    ).stdout
    records = listing.count("--- data record")
    packets = sum(map(int, re.findall(r"packetDeltaCount : (\d+)", listing)))
    octets = sum(map(int, re.findall(r"octetDeltaCount : (\d+)", listing)))
    table, _ = read(FILE)
    assert (
        (records, packets, octets)
        == (
            table.num_rows,
            sum(table.column("packets").to_pylist()),
            sum(table.column("octets").to_pylist()),
        )
        == (210, 12735, 570045)
    )


def test_a_damaged_ipfix_file_says_what_it_skipped(tmp_path: Path) -> None:
    data = FILE.read_bytes()
    first = int.from_bytes(data[2:4], "big")
    second = int.from_bytes(data[first + 2 : first + 4], "big")
    # garbage inside: the second message's first 100 bytes overwritten
    damaged = tmp_path / "damaged.ipfix"
    damaged.write_bytes(data[:first] + b"\xee" * 100 + data[first + 100 :])
    table, report = read(damaged)
    assert report.skipped["ipfix_file_resync"] == 1
    assert report.skipped_bytes["ipfix_file_resync"] == second
    assert 0 < table.num_rows < 210
    # cut inside the last message
    cut = tmp_path / "cut.ipfix"
    cut.write_bytes(data[:-50])
    at = 0
    while at + int.from_bytes(data[at + 2 : at + 4], "big") < len(data):
        at += int.from_bytes(data[at + 2 : at + 4], "big")
    table, report = read(cut)
    assert report.skipped["truncated"] == 1
    assert report.skipped_bytes["truncated"] == len(data) - at - 50  # what is left of it
    assert table.num_rows < 210
    # a damaged length past the end of the file: the messages after it are still read
    # (review: one flipped bit in the second message's length lost 182 records)
    flipped = bytearray(data)
    flipped[first + 2] |= 0x80
    bad = tmp_path / "flipped.ipfix"
    bad.write_bytes(bytes(flipped))
    table, report = read(bad)
    assert report.skipped == {"ipfix_file_resync": 1} and "truncated" not in report.skipped
    assert report.skipped_bytes["ipfix_file_resync"] == second
    assert table.num_rows > 150
    # text is not an IPFIX file (alone it is nothing to read at all: refused, and counted)
    text = tmp_path / "notes.txt"
    text.write_text("not flows\n" * 10)
    report = RunReport()
    assert discover_inputs([text], report) == []
    with pytest.raises(UsageError, match="nothing to read"):
        refuse_nothing_to_read([], report)
    assert report.skipped == {"unknown_format": 1}
