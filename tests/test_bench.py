"""The bench/ scripts still run, on tiny inputs (no figures asserted: timings live in bench/).

A script nobody runs rots: bench_matching.py stopped at its 52nd generated rule (rule-51)
once the Flow Matrix reader learned to refuse rules that can never match, and nothing said so
until the next session that measured it. Each case checks that its script did the work, not
only that it exited 0. compare_kernel.py is run in-process on this checkout's kernel (its
other half, `git archive` of a revision, writes under bench/data and compiles a second
kernel).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO, need_tool

BENCH = REPO / "bench"
PCAP = str(FIXTURES / "sf_v9_varsvc.pcap")
NFCAPD = str(FIXTURES / "nfcapd16_sf_v9_varsvc.nfcapd")

CASES = {
    # 300 rules: the generator's first refused rule was its 52nd
    "matching": (
        ["bench_matching.py", "--sessions", "2000", "--rules", "300"],
        r"match_sessions: .* [1-9][\d,]* matches",
    ),
    "recombine": (
        ["bench_recombine.py", "--sessions", "2000", "--dir", "rec"],
        r"2000 sessions from 2 run\(s\) -> [1-9]",
    ),
    "kernel": (
        ["bench_kernel.py", "--records", "20000"],
        r"kernel: 20,000 records, [1-9][\d,]* sessions(.|\n)*feed: 20,000 records",
    ),
    "sessionize": (["bench_sessionize.py", PCAP], r"72 records -> 38 sessions .* conservation ok"),
    "phases": (["bench_phases.py", PCAP], r"72 records(.|\n)*KernelReplay.process"),
    "decoders": (["bench_decoders.py", PCAP], r"sf_v9_varsvc.pcap +72 "),
    "make_capture": (
        ["make_capture.py", "capture.pcap", "--records", "1000"],
        r"capture.pcap: 10\d\d v9 records",
    ),
    # the fixture's templates in its first datagram, the conversations of the third file
    "export": (
        ["bench_export.py", PCAP, "--files", "3", "--dir", "exp"],
        r"export of 1 conversation .*\(1 added\), decoded alone ([1-9]\d*) of \1 ",
    ),
}


def run_script(arguments: list[str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / arguments[0]), *arguments[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


@pytest.mark.parametrize("name", CASES)
def test_a_bench_script_runs(name: str, tmp_path: Path) -> None:
    arguments, pattern = CASES[name]
    out = run_script(arguments, tmp_path)
    assert re.search(pattern, out), out[-2000:]


def test_the_nfcapd_bench_runs_beside_nfdump(tmp_path: Path) -> None:
    need_tool("nfdump")
    out = run_script(["bench_nfcapd.py", "--repeat", "1", NFCAPD], tmp_path)
    assert re.search(r"nfcapd16_sf_v9_varsvc.nfcapd +[\d.]+ +72 ", out) and "!" not in out, out


def test_the_consolidation_bench_rebuilds_a_run_s_table(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    result = CliRunner().invoke(app, ["sessionize", PCAP, "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    out = run_script(["bench_consolidation.py", "run"], tmp_path)
    assert "sessions_consolidated.parquet: yes" in out


def test_compare_kernel_replays_blocks_with_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import compare_kernel

    from obserae_forensics.sessionize import kernel

    blocks = compare_kernel.record_blocks(None, 3000)
    seconds, _ = compare_kernel.replay_seconds(kernel, blocks)  # this short, nothing closes
    assert sum(len(block) for block in blocks) == 3000 and seconds > 0


def test_the_many_exporters_capture_sessionizes(tmp_path: Path) -> None:
    """make_exporters.py's capture decodes to its records, one exporter per source, and
    each datagram's ten conversations go on in the exporter's next round."""
    out = run_script(
        ["make_exporters.py", "exporters.pcap", "--exporters", "40", "--datagrams", "3"], tmp_path
    )
    assert "1,200 v5 records from 40 exporters" in out, out
    out = run_script(["bench_sessionize.py", "exporters.pcap"], tmp_path)
    assert re.search(r"1,200 records -> 400 sessions .* conservation ok", out), out


def test_the_small_nfcapd_files_hold_their_share_of_the_records(tmp_path: Path) -> None:
    """make_nfcapd_files.py cuts a layout-2 file into files of so many records, every one
    of which nfcapd's reader reads back whole."""
    source = str(FIXTURES / "nfcapd178_sf_v9_varsvc.bz2.nfcapd")
    out = run_script(["make_nfcapd_files.py", source, "small", "--records", "10"], tmp_path)
    assert "small: 7 files of 10 flow records" in out, out
    from typer.testing import CliRunner

    from obserae_forensics.cli import app

    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["sessionize", str(tmp_path / "small"), "-o", str(run)])
    assert result.exit_code == 0, result.output
    assert "70 flow records read from 7 file(s)" in result.stderr, result.stderr
    assert json.loads((run / "manifest.json").read_text())["conservation"]["ok"]
