"""The bundled example end to end: sessionize the fixture with its Cartography and Flow Matrix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from obserae_forensics.matching import load_cartography, load_flow_matrix
from obserae_forensics.report import RunReport


@pytest.fixture(scope="module")
def run(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from obserae_forensics.pipeline import SessionizeConfig, sessionize_inputs
    from obserae_forensics.sessionize import load_policy

    cartography = load_cartography(fixtures / "cartography.yaml")
    out = tmp_path_factory.mktemp("fixture-run") / "out"
    config = SessionizeConfig(
        inputs=(fixtures / "sf_v9_varsvc.pcap",),
        out=out,
        policy=load_policy(None),
        cartography=cartography,
        flow_matrix=load_flow_matrix(fixtures / "flow_matrix.yaml", cartography),
    )
    sessionize_inputs(config, RunReport())
    return out


def test_unmatched_closed_sessions_of_the_bundled_example(run: Path) -> None:
    sessions = pd.read_parquet(run / "sessions.parquet")
    matches = pd.read_parquet(run / "session_matches.parquet")
    # the seed's "Sessions not covered by the Flow Matrix", as one pandas anti-join
    unmatched = sessions[
        (sessions.state == "closed") & ~sessions.session_id.isin(matches.session_id)
    ]
    assert sorted(
        unmatched[["client_ip", "server_ip", "server_port", "close_reason"]].values.tolist()
    ) == [
        ["172.16.238.1", "172.16.238.131", 21, "fin"],  # FTP, left out of the matrix on purpose
        # SSH to the internet, left out too: its FINs are the capture's last records, and it
        # closes at the end of input (it stayed active, out of this view, until an audit)
        ["172.16.238.131", "141.142.192.39", 22, "fin"],
    ]
    closed = sessions[sessions.state == "closed"]
    assert len(closed) > len(unmatched)


def test_matched_rules_agree_with_session_matches(run: Path) -> None:
    sessions = pd.read_parquet(run / "sessions.parquet")
    matches = pd.read_parquet(run / "session_matches.parquet")
    from_matches = matches.sort_values("rule_index").groupby("session_id")["rule"].agg(list)
    for session_id, rules in zip(sessions.session_id, sessions.matched_rules, strict=True):
        assert list(rules) == from_matches.get(session_id, [])
    assert set(matches.session_id) <= set(sessions.session_id)
    half_open = sessions[sessions.state == "half_open"]
    assert not set(half_open.session_id) & set(matches.session_id)


def test_one_exporter_consolidates_to_one_row_per_session(run: Path) -> None:
    sessions = pd.read_parquet(run / "sessions.parquet")
    consolidated = pd.read_parquet(run / "sessions_consolidated.parquet")
    assert len(consolidated) == len(sessions)
    assert set(consolidated.sampler_count) == {1}
    assert set(consolidated.coherence_pct) == {100.0}
