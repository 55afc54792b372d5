"""The bench/ scripts still run, on tiny inputs (no figures asserted: timings live in bench/).

A script nobody runs rots: bench_matching.py stopped at its 51st generated rule once the
Flow Matrix reader learned to refuse rules that can never match, and nothing said so until
the next session that measured it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO, need_tool

BENCH = REPO / "bench"
PCAP = str(FIXTURES / "sf_v9_varsvc.pcap")
NFCAPD = str(FIXTURES / "nfcapd16_sf_v9_varsvc.nfcapd")

CASES = {
    "matching": (["bench_matching.py", "--sessions", "2000", "--rules", "50"], "match_sessions"),
    "recombine": (["bench_recombine.py", "--sessions", "2000", "--dir", "rec"], "sessions/s"),
    "kernel": (["bench_kernel.py", "--records", "20000"], "feed: 20,000 records"),
    "sessionize": (["bench_sessionize.py", PCAP], "conservation ok"),
    "phases": (["bench_phases.py", PCAP], "Sessionizer.feed"),
    "decoders": (["bench_decoders.py", PCAP], "sf_v9_varsvc.pcap"),
    "make_capture": (["make_capture.py", "capture.pcap", "--records", "1000"], "v9 records"),
}


def run_script(arguments: list[str], cwd: Path) -> str:
    done = subprocess.run([sys.executable, str(BENCH / arguments[0]), *arguments[1:]],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


@pytest.mark.parametrize("name", CASES)
def test_a_bench_script_runs(name: str, tmp_path: Path) -> None:
    arguments, marker = CASES[name]
    assert marker in run_script(arguments, tmp_path)


def test_the_nfcapd_bench_runs_beside_nfdump(tmp_path: Path) -> None:
    need_tool("nfdump")
    assert "nfcapd16_sf_v9_varsvc" in run_script(
        ["bench_nfcapd.py", "--repeat", "1", NFCAPD], tmp_path)


def test_the_consolidation_bench_rebuilds_a_run_s_table(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    result = CliRunner().invoke(app, ["sessionize", PCAP, "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    out = run_script(["bench_consolidation.py", "run"], tmp_path)
    assert "sessions_consolidated.parquet: yes" in out
