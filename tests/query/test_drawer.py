"""drawer(): one session's row, matches, fragments, consolidated row and raw flow records."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from obserae_forensics import query
from obserae_forensics.errors import UsageError

from .run_dirs import at, session_rows, write_run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> query.Run:
    run_dir = write_run(tmp_path_factory.mktemp("run") / "hand")
    return query.load(run_dir, flow_matrix=run_dir / "flow_matrix.yaml")


def test_drawer_of_a_fragment_shows_its_whole_conversation(run: query.Run) -> None:
    found = query.drawer(run, "s5b")
    assert found.session["session_id"] == "s5b"
    assert found.fragments["session_id"].tolist() == ["s5a", "s5b"]
    assert found.fragments["link_reason"].tolist()[1] == "hard_timeout"
    assert found.conversation is not None
    assert found.conversation["fragment_count"] == 2
    assert found.matches["rule"].tolist() == ["db-access"]
    assert found.flows["direction"].tolist() == ["ab", "ba"]
    assert (found.flows["session_id"] == "s5b").all()
    assert found.consolidated["consolidated_id"].tolist() == ["s5b"]
    assert found.related.empty


def test_summary_reads_like_the_sessions_page(run: query.Run) -> None:
    text = query.drawer(run, "s1").summary()
    assert text.splitlines()[:3] == [
        "session s1",
        "client 10.0.0.42:53124 -> server 10.0.10.12:443 TCP "
        "(server side by tcp_syn, confidence 0.95)",
        "duration 38s, 1.0 KB client->server (3 packets), 5.0 KB server->client (4 packets)",
    ]
    assert "matched rules: web-to-api" in text
    assert "state closed (fin)" in text
    six = query.drawer(run, "s6").summary()
    assert "client [2001:db8::1]:0 -> server [2001:db8::2]:0 ICMP" in six
    assert "matched rules: none" in six and "closed -" not in six


def test_summary_of_a_sampled_session_gives_the_traffic_it_stands_for(tmp_path: Path) -> None:
    """Found by an audit: a 1-in-30000 exporter's session read "1.4 KB server->client" in
    the drawer, where the consolidated table and traffic_over_time said 42 MB."""
    rows = session_rows()
    rows[0]["sampling_rate"] = 100
    rows[1]["sampling_rate"] = 10
    rows[1]["counters_scaled"] = True
    run = query.load(write_run(tmp_path / "hand", sessions=rows))
    text = query.drawer(run, "s1").summary().splitlines()
    assert text[3] == (
        "sampled 1 in 100: the counters above are what the exporter counted; "
        "the traffic was about 100.0 KB client->server (300 packets), "
        "500.0 KB server->client (400 packets)"
    )
    assert "already scaled by the source" in query.drawer(run, "s2").summary()
    assert "sampled" not in query.drawer(run, "s3").summary()
    # a damaged counter: numpy's uint64 product wrapped past 2**64 (1.8e19 bytes read as
    # 8.4 KB: a second audit)
    rows[0]["ba_bytes"] = 184467440737095600
    run = query.load(write_run(tmp_path / "damaged", sessions=rows))
    assert "18446744.1 TB server->client" in query.drawer(run, "s1").summary()


def test_drawer_lists_flow_records_in_arrival_order_not_by_file_name(tmp_path: Path) -> None:
    """Found by an audit: the drawer sorted a session's records by file name, so the
    records of a capture split as z_first.pcap then a_second.pcap (or tcpdump -C's cap10
    before cap2) came out of arrival order; the flows table holds them in it already."""
    run_dir = write_run(tmp_path / "hand")
    flows = pq.read_table(run_dir / "flows.parquet")
    names = ["z_first.pcap" if row % 2 == 0 else "a_second.pcap" for row in range(flows.num_rows)]
    at_column = flows.schema.get_field_index("source_file")
    flows = flows.set_column(
        at_column,
        flows.schema.field(at_column),
        pa.array(names, flows.schema.field(at_column).type),
    )
    pq.write_table(flows, run_dir / "flows.parquet")
    found = query.drawer(query.load(run_dir), "s1").flows
    assert found["source_file"].tolist() == ["z_first.pcap", "a_second.pcap"]
    assert found["direction"].tolist() == ["ab", "ba"]


def test_drawer_html_has_the_flow_records(run: query.Run) -> None:
    html = query.drawer(run, "s3")._repr_html_()
    assert "flow records (2)" in html and "hand.pcap" in html


def test_rule_descriptions_come_from_the_flow_matrix(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "hand")
    (run_dir / "flow_matrix.yaml").write_text(
        (run_dir / "flow_matrix.yaml")
        .read_text()
        .replace("  - name: lan-dns\n", "  - name: lan-dns\n    description: the lab resolver\n")
    )
    run = query.load(run_dir, flow_matrix=run_dir / "flow_matrix.yaml")
    assert query.drawer(run, "s2").matches["description"].tolist() == ["the lab resolver"]


def test_without_recombination_fragments_follow_conversation_id(tmp_path: Path) -> None:
    run = query.load(write_run(tmp_path / "hand"), recombine=False)
    found = query.drawer(run, "s5a")
    assert found.fragments["session_id"].tolist() == ["s5a", "s5b"]
    assert found.conversation is None
    assert query.drawer(run, "s1").fragments["session_id"].tolist() == ["s1"]


def test_late_sessions_are_related_and_in_the_conversation(tmp_path: Path) -> None:
    rows = session_rows()
    late = dict(
        rows[0],
        session_id="s1-late",
        conversation_id="s1-late",
        late=True,
        follows_session_id="s1",
        opened_at=at("10:00:20"),
        last_seen_at=at("10:00:30"),
        closed_at=at("10:00:30"),
        matched_rules=[],
    )
    run = query.load(write_run(tmp_path / "hand", sessions=[*rows, late]))
    assert query.drawer(run, "s1").related["session_id"].tolist() == ["s1-late"]
    from_late = query.drawer(run, "s1-late")
    assert from_late.related["session_id"].tolist() == ["s1"]
    assert from_late.fragments["session_id"].tolist() == ["s1", "s1-late"]
    # recombine's conversation, not the late session's own id (the query mutation audit's
    # D07: tests/query/test_mutation_audit.py)
    assert "fragment 1 (fragments 0 to 1) of conversation s1\n" in from_late.summary()


def test_unknown_session_is_a_usage_error(run: query.Run) -> None:
    with pytest.raises(UsageError, match="no session 'nope'"):
        query.drawer(run, "nope")


def test_summary_says_when_coherence_compares_a_sampled_estimate(
    fixtures: Path, tmp_path: Path
) -> None:
    """A review: beside a 1:10 exporter the drawer read "seen by 2 exporter(s), coherence
    18%", the reading the coherence histogram sets apart as sampling's."""
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    out = tmp_path / "run"
    arguments = ["sessionize", str(fixtures / "sampled"), "--replay", "event", "-o", str(out)]
    assert CliRunner().invoke(app, [*arguments, "-q"]).exit_code == 0
    run = query.load(out, recombine=False)
    assert run.consolidated is not None
    both = run.consolidated.loc[run.consolidated["sampler_count"] == 2].iloc[0]
    text = query.drawer(run, str(both["session_ids"][0])).summary()
    assert "seen by 2 exporter(s), coherence" in text
    assert "(an exporter sampled 1 in 10: it compares an estimate)" in text
    alone = run.consolidated.loc[run.consolidated["sampler_count"] == 1].iloc[0]
    text = query.drawer(run, str(alone["session_ids"][0])).summary()
    assert "seen by 1 exporter(s), coherence 100%" in text and "estimate)" not in text
    # one exporter that samples compares nothing; two that count compare counts
    edited = replace(run, consolidated=run.consolidated.assign(max_sampling_rate=1))
    text = query.drawer(edited, str(both["session_ids"][0])).summary()
    assert "seen by 2 exporter(s)" in text and "estimate)" not in text
    lone = run.consolidated.assign(sampler_count=1)
    text = query.drawer(replace(run, consolidated=lone), str(both["session_ids"][0])).summary()
    assert "seen by 1 exporter(s)" in text and "estimate)" not in text
