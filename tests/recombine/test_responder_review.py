"""What a responder reading `recombine`'s report and tables was misled by (a review of the
split-session workflow against the seeds), each pinned: a run's losses said, the limits of
the checks said, sampled counters with their rate, the server side from the most confident
fragment, and the query filters over recombined conversations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.query import filters
from obserae_forensics.readers import discover_inputs, read_flows
from obserae_forensics.recombine import export_pcap, recombine_tables, same_endpoints
from obserae_forensics.recombine.report import render_markdown
from obserae_forensics.report import RunReport

from .conftest import SETTINGS, session, write_run

SYN_ACK_PSH = 0x1A | 0x02


def _with_counts(run: Path, counts: dict[str, Any]) -> Path:
    manifest_path = run / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["counts"] = {**manifest["counts"], **counts}
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    return run


def test_a_runs_gaps_and_nfcapds_failures_of_one_exporter_are_said_apart(
    tmp_path: Path,
) -> None:
    """A manifest keeps nfcapd's failures apart (`nfcapd_failures`) from the captures'
    gaps: one exporter's capture gap and its nfcapd file's 8 failures are a loss of 29
    and nfcapd's count, not "9 gap(s)" (a review)."""
    run = _with_counts(
        write_run(tmp_path / "r0", [session("A", 0, 10)]),
        {
            "sequence_loss": [
                {
                    "exporter": "192.0.2.1",
                    "domain": 0,
                    "gaps": 1,
                    "lost": 29,
                    "nfcapd_failures": 8,
                },
                {"exporter": "192.0.2.9", "domain": 5, "gaps": 0, "lost": 0, "nfcapd_failures": 3},
            ],
        },
    )
    [notes] = [entry["notes"] for entry in recombine_tables([run]).report["runs"]]
    assert notes == [
        "the sequence numbers of 192.0.2.1 (domain 0) show 1 gap(s), 29 unit(s) lost (v5 "
        "and IPFIX number flow records, v9 export datagrams): its inputs lack part of what "
        "was exported",
        "nfcapd counted 11 sequence failure(s) of 192.0.2.1 (domain 0), 192.0.2.9 (domain 5): "
        "a loss, a late datagram or a numbering it misreads (softflowd's IPFIX)",
    ]


def test_what_a_run_could_not_read_is_in_its_row_and_on_stderr(tmp_path: Path) -> None:
    """A fragmented export datagram lost at the cut between two slices' runs: each run
    said `skipped: 1 incomplete_fragments`, the report said nothing and the conversation
    came out complete."""
    first = _with_counts(
        write_run(tmp_path / "r0", [session("A", 0, 10)]),
        {
            "records_read": 2,
            "skipped": {"incomplete_fragments": 1, "no_template": 3},
            "skipped_bytes": {"incomplete_fragments": 512, "no_template": 0},
            "sequence_loss": [
                {"exporter": "192.0.2.1", "domain": 0, "gaps": 2, "lost": 29},
                {"exporter": "192.0.2.9", "domain": 5, "gaps": 4, "lost": 0},
            ],
        },
    )
    second = _with_counts(
        write_run(tmp_path / "r1", [session("B", 100, 110, a=("10.9.9.9", 1))]),
        {"records_read": 0},
    )
    clean = write_run(tmp_path / "r2", [session("C", 200, 210, a=("10.8.8.8", 1))])
    result = recombine_tables([first, second, clean])
    notes = {run["path"]: run["notes"] for run in result.report["runs"]}
    assert notes[str(first)] == [
        "left out while reading: 1 incomplete_fragments (512 bytes), 3 no_template "
        "(manifest.json counts.skipped): its conversations may lack records",
        "the sequence numbers of 192.0.2.1 (domain 0) show 2 gap(s), 29 unit(s) lost (v5 "
        "and IPFIX number flow records, v9 export datagrams): its inputs lack part of what "
        "was exported",
        "nfcapd counted 4 sequence failure(s) of 192.0.2.9 (domain 5): a loss, a late "
        "datagram or a numbering it misreads (softflowd's IPFIX)",
    ]
    assert notes[str(second)] == ["read no flow record"]
    assert notes[str(clean)] == []
    said = result.summary().splitlines()
    assert f"warning: run 0 ({first}): read no flow record" not in said
    assert f"warning: run 1 ({second}): read no flow record" in said
    assert any(line.startswith(f"warning: run 0 ({first}): left out while") for line in said)
    assert "29 unit(s) lost" in render_markdown(result.report)
    # an edited manifest's text where a count stands is read as none, not a traceback
    edited = _with_counts(
        write_run(tmp_path / "r3", [session("D", 300, 310, a=("10.7.7.7", 1))]),
        {"sequence_loss": [{"exporter": "x", "domain": 0, "gaps": "2", "lost": 3}, "junk"]},
    )
    [note] = recombine_tables([edited]).report["runs"][0]["notes"]
    assert note.startswith("the sequence numbers of x (domain 0) show 0 gap(s), 3 unit(s)")


def test_the_report_says_what_no_run_checks_and_what_the_cap_split(tmp_path: Path) -> None:
    """Sequence numbers are checked within a run: a datagram lost at the cut is seen by
    neither run. And conversations the cap split are kept whole by no hard_timeout: the
    report's "15 min keeps whole 100 %" beside 8 of 9 split by the cap read as all well."""
    rows = [
        session("E", 0, 10, close="evicted", flags=(SYN_ACK_PSH, 0x12)),
        session("E1", 11, 20, split=1, conversation="E", close="fin"),
    ]
    one = recombine_tables(
        [write_run(tmp_path / "one", rows, settings={**SETTINGS, "sessions.max_open_ksessions": 2})]
    )
    [cap] = one.report["notes"]
    assert cap.startswith("1 conversation(s) were split at the open-session cap (evicted)")
    assert "(these runs used 2)" in cap
    text = render_markdown(one.report)
    assert f"- {cap}" in text
    assert "the 1 conversation(s) split at the open-session cap (evicted) stay split" in text

    two = recombine_tables(
        [
            write_run(tmp_path / "a", [session("A", 0, 10)]),
            write_run(tmp_path / "b", [session("B", 100, 110, a=("10.9.9.9", 1))]),
        ]
    )
    [checked] = two.report["notes"]
    assert checked.startswith("Each run checked its exporters' sequence numbers within its own")
    assert "stay split" not in render_markdown(two.report)
    # nfcapd counted failures across the files it wrote: a loss at the cut is in a count
    nfcapd = [{"path": "nfcapd.202401010000", "format": "nfcapd-v2"}]
    files = recombine_tables(
        [
            write_run(tmp_path / "n1", [session("A", 0, 10)], inputs=nfcapd),
            write_run(tmp_path / "n2", [session("B", 100, 110, a=("10.9.9.9", 1))], inputs=nfcapd),
        ]
    )
    assert files.report["notes"] == []
    alone = recombine_tables([write_run(tmp_path / "c", [session("C", 0, 10)])])
    assert alone.report["notes"] == []


def test_sampled_conversations_carry_their_rate_and_the_estimate(tmp_path: Path) -> None:
    """A 1:100 sampled exporter's conversation: the table had no rate, the report gave its
    counters bare, and ranked it by them below an unsampled one's larger counters."""
    sampled = [
        session("S", 0, 899, close="hard_timeout", ab=(100, 1), ba=(50, 1)),
        session("S1", 900, 950, split=1, conversation="S", ab=(30, 1), ba=(20, 1)),
    ]
    for row in sampled:
        row["sampling_rate"] = 100
    sampled[1]["sampling_rate"] = 50  # the largest of its fragments'
    scaled = [
        session("K", 0, 899, close="hard_timeout", a=("10.7.7.7", 1), ab=(10, 1), ba=(0, 0)),
        session(
            "K1", 900, 950, split=1, conversation="K", a=("10.7.7.7", 1), ab=(10, 1), ba=(0, 0)
        ),
    ]
    scaled[0].update(sampling_rate=4, counters_scaled=True)
    plain = [
        session("P", 0, 899, close="hard_timeout", a=("10.6.6.6", 1), ab=(9000, 9), ba=(0, 0)),
        session(
            "P1", 900, 950, split=1, conversation="P", a=("10.6.6.6", 1), ab=(100, 1), ba=(0, 0)
        ),
    ]
    result = recombine_tables([write_run(tmp_path / "run", sampled + scaled + plain)])
    table = result.conversations
    rows = {r["conversation_id"]: r for r in table.to_pylist()}
    assert (rows["S"]["sampling_rate"], rows["S"]["counters_scaled"]) == (100, False)
    assert (rows["K"]["sampling_rate"], rows["K"]["counters_scaled"]) == (4, True)
    assert (rows["P"]["sampling_rate"], rows["P"]["counters_scaled"]) == (1, False)
    assert str(table.schema.field("sampling_rate").type) == "uint32"
    largest = [c["conversation_id"] for c in result.report["largest"]]
    assert largest == ["S", "P", "K"]  # 200 bytes at 1:100 before 9,100 unsampled
    text = render_markdown(result.report)
    assert "| 200 (sampled 1:100: about 20000) | 4 (sampled 1:100: about 400) |" in text
    assert "| 20 (an estimate: sampled 1:4, scaled by the exporter's collector) |" in text
    assert "| 9100 | 10 |" in text


def test_the_server_side_is_the_most_confident_fragments(tmp_path: Path) -> None:
    """A C2 channel cut into slices: the first slice's fragment saw only a guess
    (first_sender 0.5) the wrong way round, the later ones its traffic's shape (0.6) the
    right way, as one run over the whole capture; the conversation took the guess."""
    c2 = ("172.16.0.111", 4433)
    rat = ("172.16.0.114", 6641)
    rows = [
        session("G", 0, 899, close="hard_timeout", a=c2, b=rat, flags=(0x18, 0x18)),
        session("G1", 900, 1700, split=1, conversation="G", a=c2, b=rat, flags=(0x18, 0x18)),
        session("G2", 1701, 1750, split=2, conversation="G", a=c2, b=rat, flags=(0x18, 0x18)),
    ]
    rows[0].update(role_method="first_sender", role_confidence=0.5)
    for row in rows[1:]:
        row.update(
            role_method="traffic_shape",
            role_confidence=0.6,
            client_ip=rat[0],
            client_port=rat[1],
            server_ip=c2[0],
            server_port=c2[1],
        )
    rows[2]["role_confidence"] = 0.6  # a tie: the earlier of the two
    rows[2]["role_method"] = "other_shape"
    result = recombine_tables([write_run(tmp_path / "run", rows)])
    [row] = result.conversations.to_pylist()
    assert (row["client_ip"], row["client_port"], row["server_ip"], row["server_port"]) == (
        *rat,
        *c2,
    )
    assert (row["role_method"], row["role_confidence"]) == ("traffic_shape", 0.6)
    assert (row["ip_a"], row["port_a"]) == c2  # the endpoints in the first one's orientation
    assert row["orientation_conflicts"] == ["G"]
    conflicted = {r["session_id"]: r["orientation_conflict"] for r in result.fragments.to_pylist()}
    assert conflicted == {"G": True, "G1": False, "G2": False}
    assert "| traffic_shape (0.6) |" in render_markdown(result.report)
    # a count of fragments among counts of conversations, said as such
    assert "| fragments whose server side disagrees | 1 |" in render_markdown(result.report)


def test_unmatched_and_rule_ask_recombined_conversations(tmp_path: Path) -> None:
    """Over several runs the seed's "Unmatched only" counted each run's fragments in its
    own state; on `run.recombined` it raised a KeyError."""
    conversations = pd.DataFrame(
        {
            "session_ids": [["a", "b"], ["c"], [], None],
            "state": ["closed", "closed", "closed", "closed"],
        },
        index=[3, 3, 4, 5],
    )
    matches = pd.DataFrame({"session_id": ["b"], "rule": ["web"]})
    assert filters.unmatched(conversations, matches).tolist() == [False, True, True, True]
    assert filters.rule(conversations, matches, "web").tolist() == [True, False, False, False]
    flows = pd.DataFrame({"state": ["closed"]})
    with pytest.raises(Exception, match="needs column session_id"):
        filters.unmatched(flows, matches)


def test_find_session_fragments_also_lists_the_endpoints_other_conversations(
    tmp_path: Path,
) -> None:
    """The seed's Find Session Fragments queries the selected session's addresses and ports:
    a connection's FIN after an idle gap, a conversation of its own, was not shown beside
    the fragment a responder asked for (a review)."""
    rat, c2 = ("172.16.0.114", 6642), ("172.16.0.111", 4433)
    rows = [
        session("IDLE", 0, 1, a=c2, b=rat, flags=(0x18, 0x18)),
        session("FIN", 130, 131, a=rat, b=c2, close="fin", flags=(0x11, 0x11)),
        session("PORT", 10, 11, a=c2, b=("172.16.0.114", 6643)),
        session("OTHER", 20, 21, a=c2, b=rat, exporter="192.0.2.99"),
    ]
    run = write_run(tmp_path / "run", rows)
    result = recombine_tables([run])
    assert same_endpoints(result, "IDLE")["conversation_id"].tolist() == ["FIN"]
    assert same_endpoints(result, "FIN")["conversation_id"].tolist() == ["IDLE"]
    assert same_endpoints(result, "PORT").empty
    assert same_endpoints(result, "nothing").empty
    said = CliRunner().invoke(app, ["recombine", str(run), "--session", "IDLE"])
    assert said.exit_code == 0, said.output
    assert (
        "conversation IDLE: TCP 172.16.0.111:4433 → 172.16.0.114:6642 (192.0.2.1), "
        "1 fragment(s)" in said.stdout
    )
    assert "1 other conversation(s) of the same exporter, protocol, addresses and ports" in (
        said.stdout
    )
    listed = said.stdout.split("not joined to it")[1]
    assert "FIN" in listed and "PORT" not in listed and "OTHER" not in listed
    alone = CliRunner().invoke(app, ["recombine", str(run), "--session", "PORT"])
    assert "other conversation(s)" not in alone.stdout


def test_a_capture_export_says_how_many_records_its_datagrams_hold_in_all(
    tmp_path: Path,
) -> None:
    """ "4 frames carrying 11 records" read as if the capture held those 11 only: its
    datagrams carried 6 records of other conversations too, a 1.37 MB transfer's among
    them (a review). The line gives the capture's whole count, as decoding it gives."""
    fixture = Path(__file__).parents[2] / "fixtures" / "sf_v9_varsvc.pcap"
    run = tmp_path / "run"
    made = CliRunner().invoke(app, ["sessionize", str(fixture), "--out", str(run), "-q"])
    assert made.exit_code == 0, made.output
    sessions = pq.read_table(run / "sessions.parquet", columns=["session_id"])
    wanted = sessions.column("session_id")[0].as_py()
    exported = export_pcap([run], [wanted], tmp_path / "conv.pcap")
    report = RunReport()
    inputs = discover_inputs([tmp_path / "conv.pcap"], report)
    holds = sum(batch.num_rows for batch in read_flows(inputs, report))
    assert exported.decoded_records == holds > exported.checked_records > 0
    said = CliRunner().invoke(
        app,
        ["recombine", str(run), "--session", wanted, "--export-pcap", str(tmp_path / "c2.pcap")],
    )
    assert said.exit_code == 0, said.output
    checked = exported.checked_records
    assert (
        f"decoded alone, {checked} of {checked} records as in the run, of {holds} the "
        "capture holds (the rest are other conversations' records" in said.output
    )


def test_the_session_listing_writes_endpoints_as_the_report_does(tmp_path: Path) -> None:
    """`2001:db8::1:40000` reads as one address: an IPv6 address goes in brackets before
    its port, and a protocol without ports shows none (ICMP's 0 read as a port)."""
    rows = [
        session("V6", 0, 1, a=("2001:db8::1", 40000), b=("2001:db8::2", 443)),
        session("PING", 5, 6, a=("10.0.0.5", 0), b=("10.0.0.6", 0), protocol=1, flags=(0, 0)),
    ]
    run = write_run(tmp_path / "run", rows)
    said = CliRunner().invoke(app, ["recombine", str(run), "--session", "V6", "--session", "PING"])
    assert said.exit_code == 0, said.output
    assert "conversation V6: TCP [2001:db8::1]:40000 → [2001:db8::2]:443 (192.0.2.1)" in (
        said.stdout
    )
    assert "conversation PING: ICMP 10.0.0.5 → 10.0.0.6 (192.0.2.1)" in said.stdout


def test_find_session_fragments_says_what_may_precede_or_follow_the_window(
    tmp_path: Path,
) -> None:
    """A review: `--session` listed a conversation whose first fragment here has split 1, or
    whose last was cut at the window's end, without a word; the seed asks to widen the time
    range for fragments that may precede or follow. It says what the report says, with
    the conversation's client -> server."""
    rows = [
        session("MID1", 0, 899, close="hard_timeout", split=1, conversation="MID0"),
        session("MID2", 900, 1000, close="hard_timeout", split=2, conversation="MID0"),
    ]
    run = write_run(tmp_path / "run", rows)
    said = CliRunner().invoke(app, ["recombine", str(run), "--session", "MID2"])
    assert said.exit_code == 0, said.output
    lines = said.stdout.splitlines()
    assert lines[:3] == [
        "conversation MID1: TCP 10.0.0.1:40000 → 10.0.0.2:443 (192.0.2.1), 2 fragment(s)",
        "(fragment 0 is outside the window (the earliest fragment here is its split 1): widen "
        "the window to start before 2024-03-01T12:00:00.000Z)",
        "(more may follow after 2024-03-01T12:16:40.000Z)",
    ]
    # an id as copied, padded or in capitals, is the same id
    rows = [session("7b240b4b084915f7", 0, 10, close="fin")]
    copied = write_run(tmp_path / "copied", rows, window=(0, 100))
    said = CliRunner().invoke(app, ["recombine", str(copied), "--session", " 7B240B4B084915F7\t"])
    assert said.exit_code == 0, said.output
    assert said.stdout.startswith("conversation 7b240b4b084915f7: TCP")
    whole = write_run(tmp_path / "whole", [session("DONE", 10, 20, close="fin")], window=(0, 100))
    said = CliRunner().invoke(app, ["recombine", str(whole), "--session", "DONE"])
    assert said.stdout.splitlines()[1].startswith("fragment_index")


def test_a_run_whose_manifest_lacks_its_window_says_so_not_none(tmp_path: Path) -> None:
    """A review: an edited manifest of `{}` gave the runs table "None – None"."""
    run = write_run(tmp_path / "run", [session("S", 0, 10)])
    (run / "manifest.json").write_text("{}")
    text = render_markdown(recombine_tables([run]).report)
    assert "None – None" not in text
    assert "| not in its manifest – not in its manifest |" in text
    assert "manifest has no sessions.hard_timeout; used the default 900 s" in text


def test_the_report_marks_each_conversation_whose_state_is_inferred(tmp_path: Path) -> None:
    """A review: the Summary counted conversations whose state recombine inferred (the last
    fragment cut, nothing going on with it in the window), and no conversation said it
    was one."""
    rows = [
        session("CUT", 0, 899, close="hard_timeout", flags=(0x1A, 0x12)),
        session("CUT1", 900, 1000, close="hard_timeout", split=1, conversation="CUT"),
        session("DONE", 0, 899, close="hard_timeout", a=("10.0.0.9", 1), flags=(0x1A, 0x12)),
        session("DONE1", 900, 950, close="fin", split=1, conversation="DONE", a=("10.0.0.9", 1)),
        session("LATER", 4000, 4010, a=("10.0.0.8", 2)),  # the exporter's window goes on
    ]
    report = recombine_tables([write_run(tmp_path / "run", rows, window=(0, 5000))]).report
    assert report["counts"]["state_inferred"] == 1
    text = render_markdown(report)
    [cut] = [line for line in text.splitlines() if "final state" in line and "(idle)" in line]
    assert cut.endswith(
        ", inferred: its last fragment was cut and nothing went on with it in the window"
    )
    [done] = [line for line in text.splitlines() if "final state closed (fin)" in line]
    assert "inferred" not in done
