"""Session counts on real captures against tshark's conversations of the raw traffic.

Each export in ../shared/corpus was made from a raw capture there; tshark counts that
capture's TCP and UDP conversations. A session is one conversation per exporter, so the
counts must agree: every exporter (softflowd v5/v9/IPFIX, pmacct, nfdump's nfreplay,
nfpcapd) sees every packet of these captures. NetFlow v5 cannot carry IPv6, so its counts
are compared with tshark's IPv4 conversations only.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from obserae_forensics.cli import app
from tests.conftest import need_tool

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

CASES = [
    ("exports/sf_v9_test.pcap", "tcpreplay_test.pcap", ""),
    ("exports/sf_v10_test.pcap", "tcpreplay_test.pcap", ""),
    ("exports/sf_v10_biflow_test.pcap", "tcpreplay_test.pcap", ""),
    ("exports/pm_v9_test.pcap", "tcpreplay_test.pcap", ""),
    ("exports/nfreplay_v9_test.pcap", "tcpreplay_test.pcap", ""),
    ("nfcapd/nfpcapd_test.nfcapd", "tcpreplay_test.pcap", ""),
    ("exports/sf_v5_test.pcap", "tcpreplay_test.pcap", ",ip"),
    ("exports/sf_v9_varsvc.pcap", "zeek_var-services-std-ports.pcap", ""),
    ("exports/sf_v5_varsvc.pcap", "zeek_var-services-std-ports.pcap", ",ip"),
    ("exports/sf_v9_ircdcc.pcap", "zeek_irc-dcc-send.pcapng", ""),
    ("exports/pm_v10_ircdcc.pcap", "zeek_irc-dcc-send.pcapng", ""),
    ("nfcapd/nfpcapd_ircdcc.nfcapd", "zeek_irc-dcc-send.pcapng", ""),
    ("exports/sf_v9_synscan.pcap", "chrissanders_synscan.pcapng", ""),
]


def tshark_conversations(raw: Path, protocol: str, extra: str) -> int:
    tshark = need_tool("tshark")
    out = subprocess.run(
        [tshark, "-r", str(raw), "-q", "-z", f"conv,{protocol}{extra}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sum(1 for line in out.splitlines() if "<->" in line)


def both_replays(path: Path, tmp_path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Sessions (a DataFrame) and the run's output under each replay, in tmp_path/REPLAY."""
    runs, said = {}, {}
    for replay in ("arrival", "event"):
        out = tmp_path / replay
        result = CliRunner().invoke(
            app, ["sessionize", str(path), "--out", str(out), "-q", "--replay", replay]
        )
        assert result.exit_code == 0, result.output
        runs[replay] = pq.read_table(out / "sessions.parquet").to_pandas()
        said[replay] = result.output
    return runs, said


@pytest.mark.parametrize("export,raw,extra", CASES, ids=[c[0].split("/")[1] for c in CASES])
def test_sessions_match_tshark_conversations(
    corpus: Path, tmp_path: Path, export: str, raw: str, extra: str
) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["sessionize", str(corpus / export), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    sessions = pq.read_table(out / "sessions.parquet").to_pandas()
    for protocol in ("tcp", "udp"):
        ours = int((sessions["protocol"] == protocol.upper()).sum())
        assert ours == tshark_conversations(corpus / "raw" / raw, protocol, extra), protocol


def test_a_traceroute_s_tracer_is_the_client_of_every_router_that_answered(
    corpus: Path, tmp_path: Path
) -> None:
    """nfpcapd's flows of a real traceroute: each router's time-exceeded messages are a
    session of their own, one-way, whose first (and only) sender is the router. The
    tracer, which tshark shows sending every echo request, is the client of all of them
    (icmp_error; first_sender made each router the client)."""
    raw = corpus / "raw" / "chrissanders_icmp_traceroute.pcapng"
    subprocess.run(
        [need_tool("nfpcapd"), "-r", str(raw), "-w", str(tmp_path)], check=True, capture_output=True
    )
    [flows] = tmp_path.glob("nfcapd.*")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["sessionize", str(flows), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    fields = subprocess.run(
        [
            need_tool("tshark"),
            "-r",
            str(raw),
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-e",
            "ip.src",
            "-e",
            "icmp.type",
            "-Y",
            "icmp.type == 8 || icmp.type == 11",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    # the outer header only: an error quotes the datagram it answers
    senders = dict(zip(fields[1::2], fields[0::2], strict=True))  # type -> its last sender
    routers = {ip for ip, kind in zip(fields[0::2], fields[1::2], strict=True) if kind == "11"}
    sessions = pq.read_table(out / "sessions.parquet").to_pylist()
    answered = [s for s in sessions if s["icmp_type"] == 11]
    assert {s["server_ip"] for s in answered} == routers and len(routers) >= 8
    assert {ip for ip, kind in zip(fields[0::2], fields[1::2], strict=True) if kind == "8"} == {
        senders["8"]
    }
    assert {(s["client_ip"], s["role_method"], s["role_confidence"]) for s in answered} == {
        (senders["8"], "icmp_error", 0.8)
    }


def test_a_softflowd_biflow_scan_collected_by_nfcapd_names_the_scanner_the_client(
    corpus: Path, fixtures: Path, tmp_path: Path
) -> None:
    """softflowd `-b` puts the lower address first, here every target, so each scan probe
    is a biflow whose reverse half holds the SYN; nfcapd 1.7.1 stores those reverse flags
    as the forward ones. Read as written, every target was the client of its scanner at
    0.90; the scanner tshark shows sending every SYN is the client of every session."""
    out = tmp_path / "run"
    scan = fixtures / "sf_v10_biflow_synscan.lz4.nfcapd"
    result = CliRunner().invoke(app, ["sessionize", str(scan), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    syn_senders = set(
        subprocess.run(
            [
                need_tool("tshark"),
                "-r",
                str(corpus / "raw" / "chrissanders_synscan.pcapng"),
                "-T",
                "fields",
                "-e",
                "ip.src",
                "-Y",
                "tcp.flags.syn == 1 && tcp.flags.ack == 0",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    )
    sessions = pq.read_table(out / "sessions.parquet").to_pandas()
    assert len(sessions) == 1993  # 1994 records, one of them stored without a time
    assert set(sessions["client_ip"]) == syn_senders and len(syn_senders) == 1
    assert set(sessions["role_method"]) == {"tcp_handshake"}
    # the targets' answers (RST|ACK, SYN|ACK) were the lost forward flags: those sessions
    # stay open where the export capture closes five `rejected`
    assert (sessions["close_reason"] == "no_reply").sum() == 1985
    manifest = json.loads((out / "manifest.json").read_text())
    # every kept record (the one without times is left out, and its repair not counted)
    assert manifest["counts"]["repaired"]["nfcapd_reverse_flags"] == 1993


def test_softflowd_v9_flushing_years_of_flows_keeps_them_before_their_export(
    corpus: Path, fixtures: Path, tmp_path: Path
) -> None:
    """softflowd -r flushes a capture's flows when it ends, so flows of three years travel
    in one datagram. v9 gives their starts as 32-bit uptime ms: read as signed ages, the
    two older than 49.7 days (134 and 1122 days, which 32 bits cannot date) came out after
    their own export, past the capture's last packet; the watermark jumped there, and 44 of
    48 records were late, one session each. Every younger flow starts at its SYN."""
    raw = corpus / "raw" / "zeek_ssh.pcap"
    tshark = need_tool("tshark")
    times = subprocess.run(
        [tshark, "-r", str(raw), "-T", "fields", "-e", "frame.time_epoch"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    last_packet = datetime.fromtimestamp(float(times[-1]) + 0.001, UTC)
    syns = subprocess.run(
        [
            tshark,
            "-r",
            str(raw),
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "frame.time_epoch",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "tcp.dstport",
            "-Y",
            "tcp.flags.syn == 1 && tcp.flags.ack == 0",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    syn_at = {}
    for line in syns:
        at, *key = line.split(",")
        syn_at.setdefault(tuple(key), float(at))  # a retried SYN keeps the first
    runs, said = both_replays(fixtures / "sf_v9_zeek_ssh.pcap", tmp_path)
    for replay in ("arrival", "event"):
        # the run says what the late sessions suggest, under arrival replay only
        assert ("2 of 26 sessions are late" in said[replay]) == (replay == "arrival")
        manifest = json.loads((tmp_path / replay / "manifest.json").read_text())
        assert manifest["counts"]["late_sessions"] == (2 if replay == "arrival" else 0)
    flows = pq.read_table(tmp_path / "arrival" / "flows.parquet").to_pandas()
    assert len(flows) == 48
    assert flows["last_seen"].max() <= last_packet
    off = set()
    for row in flows.itertuples():
        key = (row.src_addr, str(row.src_port), row.dst_addr, str(row.dst_port))
        if key in syn_at and abs(row.first_seen.timestamp() - syn_at[key]) > 1:
            off.add(key)
    assert off == {
        ("192.168.1.79", "51880", "131.159.21.1", "22"),
        ("10.0.0.18", "40184", "128.2.6.88", "41644"),
    }  # 1122 and 134 days old
    assert len(syn_at) == 22
    # the first conversation flushed comes after flows five days younger: its two halves
    # are late, and only they; the second follows the first, oriented as the SYN says (it
    # followed nothing, oriented backwards, closed no_reply), and closes fin
    late = runs["arrival"][runs["arrival"]["late"]]
    assert len(late) == 2
    assert set(late["client_ip"]) == {"10.0.0.18"} and set(late["client_port"]) == {40184}
    second = late[late["follows_session_id"].notna()]
    assert list(second["follows_session_id"]) == list(
        late[late["follows_session_id"].isna()]["session_id"]
    )
    assert list(second["close_reason"]) == ["fin"]
    for protocol in ("tcp", "udp"):
        assert (runs["event"]["protocol"] == protocol.upper()).sum() == tshark_conversations(
            raw, protocol, ""
        )


def test_collector_files_are_replayed_in_the_order_their_records_arrived(
    corpus: Path, fixtures: Path, tmp_path: Path
) -> None:
    """nfpcapd 1.7.8 over the IRC capture rotates while the IRC connection goes on: its
    second file (20:50) holds that connection, begun at 20:48, so ordered by the flows'
    first times it came first and the first file's DCC transfer (20:49) was late, each
    direction a one-way session of its own (5 sessions, 3 late). By arrival (the records'
    receive times), only the DCC transfer's last ACK, flushed after younger records, is."""
    raw = corpus / "raw" / "zeek_irc-dcc-send.pcapng"
    runs, _ = both_replays(fixtures / "nfpcapd178_ircdcc", tmp_path)
    manifest = json.loads((tmp_path / "arrival" / "manifest.json").read_text())
    assert [Path(i["path"]).name for i in manifest["inputs"]] == [
        "nfcapd.202507282045",
        "nfcapd.202507282050",
    ]
    assert len(runs["arrival"]) == 4 and runs["arrival"]["late"].sum() == 1
    assert len(runs["event"]) == tshark_conversations(raw, "tcp", "") == 3


def test_late_halves_of_a_live_softflowd_export_follow_one_another(tmp_path: Path) -> None:
    """softflowd live (fixtures/live/sf_v9_late_halves.pcap): both directions of 10 short
    conversations arrive in one datagram 125 s behind a long connection's record, late by
    more than idle + grace. Each direction's session closed in the sweep after its record
    and, forgotten there at once, the other direction's followed nothing and came out a
    one-way attempt, 4 of them oriented backwards. Remembered for the records that come
    next, it follows the first and goes on with its conversation: the client is the
    host that sent every SYN, the answer is seen. The first direction's session stays
    closed, as it closed before the answer arrived (README, Sessions): `idle`, or `rst` when
    a RST ended it, where its SYN stood beside ACK and data, saying it was answered (each
    closed `no_reply`, a one-way attempt, until a review); a bare SYN or a record of no
    flags stays `no_reply`. `--replay event` gives one session per conversation."""
    runs, _ = both_replays(FIXTURES / "live" / "sf_v9_late_halves.pcap", tmp_path)
    sessions = runs["arrival"]
    assert len(sessions) == 21
    late = sessions[sessions["late"]]
    assert len(late) == 20
    by_id = late.set_index("session_id")
    seconds = late[late["follows_session_id"].notna()]
    assert len(seconds) == 10
    for _, second in seconds.iterrows():
        first = by_id.loc[second["follows_session_id"]]
        assert (first["ip_a"], first["port_a"], first["ip_b"], first["port_b"]) == (
            second["ip_a"],
            second["port_a"],
            second["ip_b"],
            second["port_b"],
        )
        pushed = first["ab_flags"] & 0x18 == 0x18  # ACK and PSH: an answered connection
        expected = ("rst" if first["ab_flags"] & 0x04 else "idle") if pushed else "no_reply"
        assert first["close_reason"] == expected and second["close_reason"] != "no_reply"
    firsts = by_id.loc[seconds["follows_session_id"]]
    assert sorted(firsts["close_reason"]) == ["idle"] * 5 + ["no_reply"] * 4 + ["rst"]
    assert set(late["client_ip"]) == {"10.99.0.1", "fd99::1"}
    assert len(runs["event"]) == 11
