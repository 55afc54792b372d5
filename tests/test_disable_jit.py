"""Every numba function also runs as plain Python (NUMBA_DISABLE_JIT=1), the way a
maintainer steps through the kernel in a debugger, and gives the same tables.

The sessionizer's kernel asks the CPU to prefetch with an LLVM intrinsic, which Python
cannot call: under NUMBA_DISABLE_JIT the run died with NotImplementedError before its
first session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from obserae_forensics.cli import app

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# late records, a refusal, a reset, FINs, the cap (0.005: 5 open sessions) and
# hard_timeout fragments, Cartography services and Flow Matrix matches
SESSIONIZE = [
    str(FIXTURES / "live" / "sf_v9_late_halves.pcap"),
    str(FIXTURES / "sf_v9_varsvc.pcap"),
    "--max-open-ksessions",
    "0.005",
    "--hard-timeout",
    "10s",
    "--cartography",
    str(FIXTURES / "cartography.yaml"),
    "--flow-matrix",
    str(FIXTURES / "flow_matrix.yaml"),
    "-q",
]
SESSIONIZE_TABLES = [
    "sessions.parquet",
    "flows.parquet",
    "exporters.parquet",
    "session_matches.parquet",
    "sessions_consolidated.parquet",
]
RECOMBINE_OUTPUTS = [
    "sessions_recombined.parquet",
    "recombined_fragments.parquet",
    "report.md",
    "report.json",
]


def _as_python(*arguments: str) -> None:
    environment = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    done = subprocess.run(
        # the splitmix hashes wrap their uint64 arithmetic by design: numpy's scalars warn
        [sys.executable, "-W", "ignore::RuntimeWarning", "-m", "obserae_forensics", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_kernels_run_as_python_and_give_the_same_tables(tmp_path: Path) -> None:
    compiled, python = tmp_path / "compiled", tmp_path / "python"
    runner = CliRunner()
    result = runner.invoke(app, ["sessionize", *SESSIONIZE, "--out", str(compiled / "run")])
    assert result.exit_code == 0, result.output
    _as_python("sessionize", *SESSIONIZE, "--out", str(python / "run"))
    for name in SESSIONIZE_TABLES:
        assert (python / "run" / name).read_bytes() == (compiled / "run" / name).read_bytes(), name

    # both recombine the same run: the reports and fragments cite its directory
    result = runner.invoke(app, ["recombine", str(compiled / "run"), "--out", str(compiled / "rc")])
    assert result.exit_code == 0, result.output
    _as_python("recombine", str(compiled / "run"), "--out", str(python / "rc"))
    for name in RECOMBINE_OUTPUTS:
        assert (python / "rc" / name).read_bytes() == (compiled / "rc" / name).read_bytes(), name
