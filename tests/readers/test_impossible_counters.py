"""Records whose bytes no packet count can carry are said, kept as sent (readers.settled)."""

from __future__ import annotations

import numpy as np

from obserae_forensics.readers import MAX_PACKET_BYTES, settled
from obserae_forensics.readers._batch import flow_batch
from obserae_forensics.report import RunReport

T = 1_700_000_000_000_000


def read(
    packets: list[int], octets: list[int], back: tuple[list[int], list[int]] | None = None
) -> RunReport:
    """The report of settling hand-made counters, and whether the batch came back whole."""
    n = len(packets)
    columns = {
        "first_seen": np.full(n, T),
        "last_seen": np.full(n, T),
        "packets": np.array(packets, dtype=np.uint64),
        "octets": np.array(octets, dtype=np.uint64),
        "record_index": np.arange(n),
        "source_offset": np.arange(n) * 100,
        "source_frame": np.arange(n),
    }
    if back is not None:
        columns["reverse_packets"] = np.array(back[0], dtype=np.uint64)
        columns["reverse_octets"] = np.array(back[1], dtype=np.uint64)
    batch = flow_batch(n, columns, exporter="192.0.2.1", source_file="hand.pcap")
    report = RunReport()
    out = settled(batch, report)
    assert out.equals(batch)  # kept as sent, whatever is said of them
    return report


def test_a_packet_can_hold_a_jumbogram_and_not_a_byte_more() -> None:
    """The bound is the average a packet: MAX_PACKET_BYTES each passes, one byte over does
    not; a record without a packet count (some exporters send none) says nothing."""
    report = read([1, 2, 0, 3], [MAX_PACKET_BYTES, 2 * MAX_PACKET_BYTES + 1, 2**63, 1500])
    assert dict(report.repaired) == {}
    report = read([1, 5, 2], [MAX_PACKET_BYTES + 1, 500, 2**63 + 7])
    assert dict(report.repaired) == {"impossible_counters": 2}
    assert not report.skipped
    [problem] = report.examples
    # the file's first such record, with its place and counters
    assert problem.source == "hand.pcap" and problem.offset == 0
    assert f"packets, bytes: 1, {MAX_PACKET_BYTES + 1}; reverse 0, 0" in str(problem)
    assert "2 record(s)" in str(problem)
    assert "kept, a problem noted (put right where it can be): 2 impossible_counters" in (
        report.summary()
    )


def test_a_biflow_reverse_half_is_checked_too() -> None:
    report = read([1, 1], [100, 100], back=([1, 0], [2**40, 2**40]))
    assert dict(report.repaired) == {"impossible_counters": 1}
    assert "packets, bytes: 1, 100; reverse 1, 1099511627776" in str(report.examples[0])
