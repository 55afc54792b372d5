"""Real captures through the real `sessionize` command, then recombine (the issue's checks).

- sessionized with a 30 s hard_timeout, recombination restores the conversation totals of a
  run whose hard_timeout is longer than the capture;
- three runs over consecutive slices of one capture (cut by editcap) recombine into the
  conversations of one run over the whole capture: same ids, times, totals, final states.
  (A v9/IPFIX capture cut after its template datagram leaves the later slices undecodable,
  so the slices are of softflowd's v9 export of the SYN scan, which repeats its templates.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.recombine import recombine_runs, recombine_tables
from tests.conftest import need_tool

TOTALS = [
    "exporter",
    "protocol",
    "ip_a",
    "port_a",
    "ip_b",
    "port_b",
    "first_seen",
    "last_seen",
    "ab_bytes",
    "ba_bytes",
    "ab_packets",
    "ba_packets",
]
WHOLE = ["conversation_id", *TOTALS, "state", "close_reason", "complete"]


def sessionize(inputs: list[Path], out: Path, *options: str) -> Path:
    result = CliRunner().invoke(app, ["sessionize", *map(str, inputs), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return out


def rows(table: object, columns: list[str]) -> list[dict[str, object]]:
    frame = table.to_pandas()[columns]  # type: ignore[attr-defined]
    return frame.sort_values(columns[1:] if columns[0] == "conversation_id" else columns).to_dict(
        "records"
    )


@pytest.mark.parametrize("name", ["sf_v5_ircdcc", "pm_v10_ircdcc", "sf_v9_varsvc"])
def test_short_hard_timeout_recombines_to_the_long_run_totals(
    tmp_path: Path, corpus: Path, name: str
) -> None:
    capture = corpus / "exports" / f"{name}.pcap"
    short = sessionize([capture], tmp_path / "short", "--hard-timeout", "30s")
    long = sessionize([capture], tmp_path / "long", "--hard-timeout", "1d")
    result = recombine_runs([short], tmp_path / "out")
    assert rows(result.conversations, TOTALS) == rows(
        recombine_tables([long]).conversations, TOTALS
    )
    if name.endswith("ircdcc"):
        # the 170 s IRC session was cut (softflowd -r exports it as one record per
        # direction; the second, arriving when the watermark is past the first fragment's
        # hard deadline, opens the next fragment). Under --replay event the watermark
        # follows first_seen and both records, starting together, join one session.
        assert result.report["counts"]["split_conversations"] == 1
        event = sessionize(
            [capture], tmp_path / "event", "--hard-timeout", "30s", "--replay", "event"
        )
        assert recombine_tables([event]).report["counts"]["split_conversations"] == 0
    assert (tmp_path / "out" / "report.md").is_file()


def test_a_crowded_run_recombines_every_fragment_into_its_conversation(
    tmp_path: Path, corpus: Path
) -> None:
    """Found by an audit: at a cap of 5 sessions, the corpus's nfcapd files (softflowd's
    exports of its test captures, all from 127.0.0.1) have fragments that open before the
    evicted fragment they continue (15 of them), and `recombine` refused the run as a loop
    of links (exit 2)."""
    run = sessionize(
        [corpus / "nfcapd"],
        tmp_path / "run",
        "--hard-timeout",
        "30s",
        "--grace",
        "1s",
        "--max-open-ksessions",
        "0.005",
    )
    sessions = pq.read_table(run / "sessions.parquet").to_pandas()
    before = sessions.merge(sessions, on="conversation_id", suffixes=("", "_before"))
    before = before[
        (before.split_before == before.split - 1) & (before.opened_at < before.opened_at_before)
    ]
    assert len(before) >= 10
    result = recombine_tables([run])
    fragments = result.fragments.to_pandas()
    conversation_of = dict(zip(fragments.session_id, fragments.conversation_id, strict=True))
    for _, group in sessions.groupby("conversation_id"):
        assert len({conversation_of[i] for i in group.session_id}) == 1
    assert result.report["refused_links"]["split_link_missing"] == 0


def test_three_slices_recombine_to_one_run_over_the_capture(tmp_path: Path, corpus: Path) -> None:
    editcap = need_tool("editcap")
    capture = corpus / "exports" / "sf_v9_synscan.pcap"  # 64 datagrams, 2002 records
    slices = []
    for index, frames in enumerate(("1-21", "22-42", "43-64")):
        part = tmp_path / f"slice{index}.pcap"
        subprocess.run(
            [editcap, "-r", str(capture), str(part), frames], check=True, capture_output=True
        )
        slices.append(sessionize([part], tmp_path / f"run{index}"))
    whole = sessionize([capture], tmp_path / "whole")
    three = recombine_tables(list(reversed(slices)))
    one = recombine_tables([whole])
    # softflowd exports each flow once, so no conversation has records in two slices; what
    # the slices cut is the end of input: sessions still open there, settled by the next run
    assert three.report["counts"]["state_inferred"] > 1000
    assert rows(three.conversations, WHOLE) == rows(one.conversations, WHOLE)
    # an offline export sends records out of time order: the slices overlap in time as
    # copies would (the middle one's 664 sessions all open before another's last record),
    # and hold no traffic twice
    assert not [run.overlaps for run in three.runs if run.overlaps]


def test_runs_of_the_same_traffic_are_said_to_overlap(tmp_path: Path, corpus: Path) -> None:
    """softflowd's v9 and v5 exports of one capture, sessionized as two runs, were
    recombined without a word into 23 conversations split at the run boundary, each
    counted twice (their session ids differ: the v5 times are 0.72 s later)."""
    runs = [
        sessionize([corpus / "exports" / f"sf_{version}_test.pcap"], tmp_path / version)
        for version in ("v9", "v5")
    ]
    # runs go in the order their captures were made: the v5 capture's frames came first
    said = "23 of its 24 sessions of exporter 127.0.0.1 repeat one of run 0"
    result = recombine_tables(runs)
    assert [run.path for run in result.runs] == [runs[1], runs[0]]
    assert [len(run.overlaps) for run in result.runs] == [0, 1]
    assert said in result.runs[1].overlaps[0] and said in result.summary()
    command = CliRunner().invoke(
        app, ["recombine", *map(str, runs), "--out", str(tmp_path / "out")]
    )
    assert command.exit_code == 0, command.output
    assert f"warning: run 1 ({result.runs[1].path}): " in command.stderr
    assert said in command.stderr and said in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("name", ["pm_v9_test", "sf_v10_varsvc"])
def test_an_export_from_a_rotated_capture_decodes_alone(
    tmp_path: Path, corpus: Path, name: str
) -> None:
    """pmacct and softflowd send their templates and options in their first datagram only:
    a capture rotated after it (editcap -c 1: a file per datagram, as `tcpdump -C` cuts)
    and sessionized as one run gave exports of the later files' conversations that did not
    decode on their own (their templates were in the first file)."""
    import pyarrow.parquet as pq

    from obserae_forensics.recombine import export_pcap

    editcap = need_tool("editcap")
    slices = tmp_path / "slices"
    slices.mkdir()
    subprocess.run(
        [editcap, "-c", "1", str(corpus / "exports" / f"{name}.pcap"), str(slices / "part.pcap")],
        check=True,
        capture_output=True,
    )
    parts = sorted(slices.iterdir())
    assert len(parts) >= 3
    run = sessionize(parts, tmp_path / "run")
    flows = pq.read_table(run / "flows.parquet").to_pylist()
    later = sorted({row["session_id"] for row in flows if row["source_file"] != str(parts[0])})
    assert later
    for number, session_id in enumerate(later):
        exported = export_pcap([run], [session_id], tmp_path / f"e{number}.pcap")
        count = sum(row["session_id"] == session_id for row in flows)
        assert (exported.checked_records, exported.differing_records) == (count, 0)
        assert exported.template_datagrams >= 1


def test_akvorados_data_capture_exports_with_its_later_template(
    tmp_path: Path, corpus: Path
) -> None:
    """akvorado's `data` capture holds data sets whose template is in its `template`
    capture, sent later: as one run the data are read when the template comes, and an
    export of one of their conversations holds the template datagram after the data."""
    import pyarrow.parquet as pq

    from obserae_forensics.recombine import export_pcap

    public = corpus / "netflow_public"
    run = sessionize(
        [public / "akvorado_template.pcap", public / "akvorado_data.pcap"], tmp_path / "run"
    )
    sessions = pq.read_table(run / "sessions.parquet").column("session_id").to_pylist()
    assert len(sessions) == 4  # the 4 records tshark decodes from the data capture
    exported = export_pcap([run], sessions[:1], tmp_path / "one.pcap")
    assert (exported.datagrams, exported.template_datagrams) == (2, 1)
    assert (exported.checked_records, exported.differing_records) == (1, 0)
    again = sessionize([tmp_path / "one.pcap"], tmp_path / "again")
    assert pq.read_table(again / "flows.parquet").num_rows == 4


def test_akvorados_four_captures_export_with_the_sampling_they_were_read_at(
    tmp_path: Path, corpus: Path
) -> None:
    """akvorado's `data`, `options-data`, `options-template` and `template` captures of one
    exporter, in that order: the data and the options data wait for their templates; the
    options template gives the sampler (1 in 30,000) in force when the data are read. The
    export held the template but not the options: read alone, 1 in 1."""
    import pyarrow.parquet as pq

    from obserae_forensics.recombine import export_pcap

    public = corpus / "netflow_public"
    names = ["data", "options-data", "options-template", "template"]
    run = sessionize([public / f"akvorado_{name}.pcap" for name in names], tmp_path / "run")
    flows = pq.read_table(run / "flows.parquet").to_pylist()
    assert {row["sampling_rate"] for row in flows} == {30000}
    exported = export_pcap([run], [flows[0]["session_id"]], tmp_path / "one.pcap")
    assert (exported.datagrams, exported.template_datagrams) == (4, 3)
    assert (exported.checked_records, exported.differing_records) == (1, 0)


def test_one_capture_in_two_windows_exports_each_datagram_once(
    tmp_path: Path, corpus: Path
) -> None:
    """An audit: nfreplay's capture sessionized as two runs, before and after
    03:16:21.7, and an ICMP conversation whose 10 records one datagram carries (3 before
    the cut, 7 after) exported its datagram twice, once per run, and the check said 3 of
    10 records decoded as in the run. Datagrams are written once per capture and offset."""
    from obserae_forensics.readers.pcap import iter_frames
    from obserae_forensics.recombine import export_pcap
    from obserae_forensics.report import RunReport

    capture = corpus / "exports" / "nfreplay_v9_test.pcap"
    runs = [
        sessionize([capture], tmp_path / "before", "--to", "2010-07-07T03:16:21.7"),
        sessionize([capture], tmp_path / "after", "--from", "2010-07-07T03:16:21.700001"),
    ]
    result = recombine_tables(runs)
    assert [run.overlaps for run in result.runs] == [[], []]  # windows that do not overlap
    fragments = result.fragments.to_pandas()
    split = fragments[fragments.duplicated("conversation_id", keep=False)]
    icmp = sorted(split[split["protocol"] == "ICMP"]["conversation_id"].unique())
    assert icmp == ["3c1c030cedcdba90", "542b4c8229325080"]  # 3 + 7 and 1 + 5 records
    for number, conversation in enumerate(icmp):
        exported = export_pcap(runs, [conversation], tmp_path / f"e{number}.pcap")
        frames = list(iter_frames(tmp_path / f"e{number}.pcap", RunReport()))
        assert len({frame.data for frame in frames}) == len(frames)  # each datagram once
        records = int(split[split["conversation_id"] == conversation]["flow_count"].sum())
        assert (exported.checked_records, exported.differing_records) == (records, 0)
        assert exported.records == records


def test_one_capture_in_overlapping_windows_is_said_to_count_records_twice(
    tmp_path: Path, corpus: Path
) -> None:
    """An audit: two runs of nfreplay's capture over windows 30 ms apart in overlap held
    one record each, and recombined, its ICMP conversation counted 11 records where one
    run over the capture has 10, without a word (too few sessions repeat whole for the
    twin check). The manifests' counts per capture say how many are in both."""
    capture = corpus / "exports" / "nfreplay_v9_test.pcap"
    runs = [
        sessionize([capture], tmp_path / "a", "--to", "2010-07-07T03:16:21.80"),
        sessionize([capture], tmp_path / "b", "--from", "2010-07-07T03:16:21.77"),
    ]
    result = recombine_tables(runs)
    assert result.runs[0].overlaps == []
    (said,) = result.runs[1].overlaps
    assert said.startswith(
        f"at least 1 of the 35 flow records it read from {capture} run 0 read too"
    )
    command = CliRunner().invoke(
        app, ["recombine", *map(str, runs), "--out", str(tmp_path / "out")]
    )
    assert command.exit_code == 0, command.output
    assert f"warning: run 1 ({runs[1]}): {said}" in command.stderr
    assert said in (tmp_path / "out" / "report.md").read_text()


def test_a_capture_and_its_nfcapd_file_cut_in_two_recombine_in_their_order(
    tmp_path: Path, corpus: Path
) -> None:
    """An audit: nfreplay's capture before 03:16:21.7 and its nfcapd file after, as two
    runs, were put in the wrong order (the nfcapd file keeps receive times to the
    millisecond, .896, the capture to the microsecond, .896942), and both ICMP
    conversations across the cut came out as two each. Arrivals are compared to the
    millisecond, the data windows decide within it."""
    before = sessionize(
        [corpus / "exports" / "nfreplay_v9_test.pcap"],
        tmp_path / "before",
        "--to",
        "2010-07-07T03:16:21.7",
    )
    after = sessionize(
        [corpus / "nfcapd" / "nfreplay_v9_test.nfcapd"],
        tmp_path / "after",
        "--from",
        "2010-07-07T03:16:21.700001",
    )
    for order in ([before, after], [after, before]):
        result = recombine_tables(order)
        assert [run.path for run in result.runs] == [before, after]
        assert (
            result.report["counts"]["conversations"],
            result.report["counts"]["split_conversations"],
        ) == (24, 2)
