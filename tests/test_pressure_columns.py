"""Session pressure as the exporters table and the manifest report it: a mutation audit
swapped the first and last eviction in the exporters table, and read peak_open_sessions
from another counter, and no test failed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from obserae_forensics.cli import app

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "sf_v9_varsvc.pcap"
runner = CliRunner()


def test_exporters_table_reports_the_pressure_the_manifest_reports(tmp_path: Path) -> None:
    out = tmp_path / "capped"
    result = runner.invoke(
        app, ["sessionize", str(FIXTURE), "--out", str(out), "-q", "--max-open-ksessions", "0.005"]
    )
    assert result.exit_code == 0, result.output
    sessions = pq.read_table(out / "sessions.parquet").to_pylist()
    evicted = [s for s in sessions if s["close_reason"] == "evicted"]
    assert len(evicted) >= 2
    pressure = json.loads((out / "manifest.json").read_text())["counts"]["session_pressure"]
    [(exporter, entry)] = pressure.items()
    assert entry["evictions"] == len(evicted) and entry["peak_open"] == 5
    # an evicted session closes at the exporter's newest last_seen when it is evicted: the
    # first and last eviction are the earliest and latest closed_at of the evicted sessions
    closes = sorted(s["closed_at"] for s in evicted)
    rows = [
        r for r in pq.read_table(out / "exporters.parquet").to_pylist() if r["exporter"] == exporter
    ]
    assert rows
    for row in rows:
        assert (row["evictions"], row["peak_open_sessions"]) == (len(evicted), 5)
        assert (row["first_eviction"], row["last_eviction"]) == (closes[0], closes[-1])
        assert row["first_eviction"] < row["last_eviction"]
    # below the cap the peak is the open sessions' own, not the cap (at a full cap the two
    # are one number, and the test above could not tell them apart: a review)
    out = tmp_path / "uncapped"
    result = runner.invoke(app, ["sessionize", str(FIXTURE), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    [entry] = json.loads((out / "manifest.json").read_text())["counts"]["session_pressure"].values()
    peaks = {
        row["peak_open_sessions"] for row in pq.read_table(out / "exporters.parquet").to_pylist()
    }
    assert entry["evictions"] == 0 and peaks == {entry["peak_open"]}
    # the capture's 38 sessions are all open before end of input closes any: not the cap
    # (500), nor the capped run's 5
    assert entry["peak_open"] == 38
