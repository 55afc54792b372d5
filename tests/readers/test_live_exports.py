"""Exporters run live, in configurations the corpus lacks (fixtures/live/, fixtures/README.md):
softflowd's inclusive IPFIX numbering across a loss and a reorder, pmacct's 16-byte
microsecond times, and NTP-format fractions read to the nearest microsecond."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

import dpkt
import numpy as np
import pyarrow as pa
import pytest

from obserae_forensics.pipeline import ReadOptions, inspect_inputs
from obserae_forensics.readers import discover_inputs, read_flows
from obserae_forensics.readers.information_elements import IANA
from obserae_forensics.readers.templates import FieldSpec, RecordMeta, RecordPlan
from obserae_forensics.report import RunReport
from tests.conftest import need_tool

LIVE = Path(__file__).resolve().parents[2] / "fixtures" / "live"


def accounting(name: str) -> tuple[int, int, int, int]:
    report = RunReport()
    inspect_inputs(
        [LIVE / name], ReadOptions(batch_size=3, window=(None, None), strict=False), report
    )
    (stats,) = report.exporters.values()
    return stats.restarts, stats.sequence_gaps, stats.sequence_lost, stats.reorders


def flows(name: str) -> tuple[pa.Table, RunReport]:
    report = RunReport()
    table = pa.Table.from_batches(list(read_flows(discover_inputs([LIVE / name], report), report)))
    return table, report


def test_softflowd_ipfix_loss_before_a_smaller_message_is_a_loss() -> None:
    """Numbers 8, 32, 40, 44, each counting its own message's records: the message of 4
    records numbered 36 is missing. From the RFC's expectation (32 + the last message's 24
    records = 56), 40 read as behind: 2 reorders, the loss unseen (a live audit)."""
    assert accounting("sf_v10_frame3_lost.pcap") == (0, 1, 4, 0)


def test_softflowd_ipfix_reorder_is_a_reorder() -> None:
    """8, 32, 40, 36, 44: 36 came after 40; it read as 1 gap and 4 lost beside the reorder."""
    assert accounting("sf_v10_frames3_4_swapped.pcap") == (0, 0, 0, 1)


def _first_packet_us(raw: Path, src: str, icmp_type: int) -> int:
    """Capture time (µs) of the first ICMP packet of `icmp_type` from `src` in `raw`."""
    with raw.open("rb") as handle:
        for ts, frame in dpkt.pcap.Reader(handle):
            ip = dpkt.ethernet.Ethernet(frame).data
            if (
                isinstance(ip, dpkt.ip.IP)
                and isinstance(ip.data, dpkt.icmp.ICMP)
                and ip.src == bytes(map(int, src.split(".")))
                and ip.data.type == icmp_type
            ):
                return round(ts * 1_000_000)
    raise AssertionError(f"no ICMP type {icmp_type} from {src} in {raw}")


def test_pmacct_microsecond_times_in_sixteen_bytes() -> None:
    """pmacct's nfprobe_tstamp_usec writes flowStart/EndMicroseconds as a struct timeval in
    16 bytes: read as none, all 6 records took their export time, up to 10 s after the
    flow, and were counted as repaired "for want of a time"."""
    table, report = flows("pm_v10_tstamp_usec.pcap")
    assert table.num_rows == 6 and not report.repaired
    raw = LIVE / "pm_v10_tstamp_usec_raw.pcap"
    rows = table.to_pylist()
    icmp = {
        (str(ipaddress.IPv6Address(r["src_addr"]).ipv4_mapped), r["dst_port"] >> 8): r
        for r in rows
        if r["protocol"] == 1
    }
    assert set(icmp) == {("127.0.32.1", 8), ("127.0.32.2", 0)}
    for (src, icmp_type), row in icmp.items():
        first = row["first_seen"].timestamp() * 1_000_000
        assert round(first) == _first_packet_us(raw, src, icmp_type)
        assert row["first_seen"] <= row["last_seen"]
    reply = icmp[("127.0.32.2", 0)]
    assert round(reply["first_seen"].timestamp() * 1e6) == 1796542643_020029
    assert round(reply["last_seen"].timestamp() * 1e6) == 1796542644_060892


def test_softflowd_psamp_observation_time_is_its_packet_time() -> None:
    """observationTimeMicroseconds `eebf8ea3 4ce76859` is softflowd's floor(300,406 µs x
    2**32 / 10**6); read down it was 300,405, a µs before the packet it samples."""
    table, _ = flows("sf_psamp.pcap")
    (first,) = table.column("first_seen").to_pylist()
    with (LIVE / "sf_psamp_raw.pcap").open("rb") as handle:
        ts = next(iter(dpkt.pcap.Reader(handle)))[0]
    assert round(first.timestamp() * 1_000_000) == round(ts * 1_000_000) == 1796542499_300406


def _ntp_plan(element: int) -> RecordPlan:
    return RecordPlan(
        [FieldSpec(8, 4), FieldSpec(12, 4), FieldSpec(element, 8), FieldSpec(element + 1, 8)], 10
    )


@pytest.mark.parametrize(("element", "units_per_s"), [(154, 10**6), (156, 10**9)])
def test_ntp_fractions_read_back_the_microsecond_an_exporter_wrote(
    element: int, units_per_s: int
) -> None:
    """Every µs of a second, written as exporters do, floor(µs x 2**32 / 10**6) (softflowd
    -A micro; -A nano: floor(ns x 2**32 / 10**9)), with dateTimeMicroseconds' low 11 bits
    cleared as RFC 7011 §6.1.9 lets them be, reads back as that µs (they read 1 µs early)."""
    micros = np.arange(0, 1_000_000, 7, dtype=np.uint64)
    units = micros * np.uint64(units_per_s // 10**6)
    fraction = (units << np.uint64(32)) // np.uint64(units_per_s)
    if element == 154:
        fraction &= np.uint64(0xFFFF_F800)
    seconds = np.uint64(1796542499 + 2_208_988_800)  # NTP era 0
    stamp = (seconds << np.uint64(32)) | fraction
    plan = _ntp_plan(element)
    rows = np.zeros(len(micros), dtype=plan.dtype)
    for field in (element, element + 1):
        rows[plan.where[(IANA, field)][0]] = stamp
    n = len(micros)
    meta = RecordMeta(
        np.full(n, 1796542500_000000),
        np.zeros(n, np.int64),
        np.full(n, -1),
        np.ones(n, np.uint32),
        np.zeros(n, np.int64),
        [],
    )
    first, _last, _guessed = plan._times(rows, meta)
    assert (first - 1796542499_000000 == micros.astype(np.int64)).all()


def test_softflowd_microsecond_times_are_the_microseconds_tshark_shows_in_ns() -> None:
    """softflowd -A micro (fixtures/live/sf_v10_amicro.pcap): tshark shows every one of the
    88 times as whole µs less a ns (07:29:30.447636999), the floor of floor(µs x 2**32 /
    10**6) read back in ns; each reads as that whole µs."""
    tshark = need_tool("tshark")
    path = LIVE / "sf_v10_amicro.pcap"
    shown = []
    for name in ("cflow.abstimestart", "cflow.abstimeend"):
        out = subprocess.run(
            [tshark, "-r", str(path), "-d", "udp.port==31011,cflow", "-T", "fields", "-e", name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for clock, fraction in re.findall(r"(\d\d:\d\d:\d\d)\.(\d{9}) UTC", out):
            nanos = int(fraction)
            assert nanos % 1000 == 999  # what tshark makes of the floored fraction
            shown.append((clock, (nanos + 1) // 1000))
    table, _ = flows("sf_v10_amicro.pcap")
    got = [
        (t.strftime("%H:%M:%S"), t.microsecond)
        for name in ("first_seen", "last_seen")
        for t in table.column(name).to_pylist()
    ]
    assert len(got) == 88 and sorted(got) == sorted(shown)
