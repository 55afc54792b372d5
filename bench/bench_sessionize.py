"""End-to-end `sessionize` benchmark: read + sessionize + write, next to nfdump -B.

    python bench/bench_sessionize.py INPUT [INPUT...] [--batch-size N] [--repeat N]

Each INPUT (a PCAP or nfcapd file) is sessionized in a child process (so peak RSS is the
job's own), and for nfcapd inputs `nfdump -r FILE -q -B -o pipe > /dev/null` (nfdump's
bidirectional pairing, the nearest thing it has to sessions) runs on the same file. Prints
records/s, CPU seconds (all threads), peak RSS and the ratio to nfdump, and which package
ran ("measured:"): an editable install that points at another checkout, or PYTHONPATH,
decides that, and a benchmark of the wrong tree looks like any other. With --repeat N
both run N times, alternating, and the medians are printed: on a shared 2-core virtual
machine single runs vary by +-30%, and the ratio to nfdump is only meaningful when both
ran under the same conditions. Build inputs with
../shared/bench-data/make_big.sh "$PWD/bench/data/big" (kept out of git; the script wants
an absolute OUT_DIR for its export captures).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHILD = """
import json, resource, sys, time
from pathlib import Path
import obserae_forensics
from obserae_forensics.pipeline import ReadOptions, SessionizeConfig, sessionize_inputs
from obserae_forensics.report import RunReport
from obserae_forensics.sessionize import SessionPolicy
path, out, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
report = RunReport()
start = time.perf_counter()
cpu = time.process_time()
result = sessionize_inputs(SessionizeConfig(inputs=(path,), out=out, policy=SessionPolicy(),
                           read=ReadOptions(batch_size=batch), force=True), report)
elapsed = time.perf_counter() - start
print(json.dumps({"records": report.records, "sessions": result.sessions, "seconds": elapsed,
                  "cpu_seconds": time.process_time() - cpu,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "conservation_ok": result.conservation_ok,
                  "package": str(Path(obserae_forensics.__file__).resolve().parent)}))
"""


def run_child(path: Path, batch_size: int) -> dict[str, Any]:
    """The child's figures (numbers, and the package it ran as text)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), str(out), str(batch_size)],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def nfdump_seconds(path: Path) -> float | None:
    if shutil.which("nfdump") is None:
        return None
    start = time.perf_counter()
    subprocess.run(f"nfdump -r {path} -q -B -o pipe > /dev/null", shell=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--batch-size", type=int, default=65_536)  # the CLI default
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each (ours and nfdump, alternating); medians printed",
    )
    args = parser.parse_args()
    for path in args.inputs:
        with open(path, "rb") as handle:
            is_nfcapd = handle.read(2) in (b"\x0c\xa5", b"\xa5\x0c")
        runs: list[dict[str, Any]] = []
        theirs: list[float] = []
        for _ in range(max(1, args.repeat)):
            runs.append(run_child(path, args.batch_size))
            seconds = nfdump_seconds(path) if is_nfcapd else None
            if seconds is not None:
                theirs.append(seconds)
        figures = runs[-1]
        wall = statistics.median([run["seconds"] for run in runs])
        cpu = statistics.median([run["cpu_seconds"] for run in runs])
        rate = figures["records"] / wall
        line = (
            f"{path.name}: {figures['records']:,.0f} records -> {figures['sessions']:,.0f} "
            f"sessions in {wall:.2f} s = {rate / 1e6:.2f} M records/s "
            f"({cpu:.1f} CPU-s), peak RSS "
            f"{max(run['peak_rss_mb'] for run in runs):.0f} MB, conservation "
            f"{'ok' if all(run['conservation_ok'] for run in runs) else 'FAILED'}"
        )
        if theirs:
            seconds = statistics.median(theirs)
            line += (
                f"; nfdump -B {seconds:.2f} s = {figures['records'] / seconds / 1e6:.2f} "
                f"M records/s; ours is {seconds / wall:.2f}x nfdump -B's rate"
            )
        if len(runs) > 1:
            line += f" (medians of {len(runs)} runs)"
        print(line, flush=True)
        # an editable install elsewhere, or PYTHONPATH, decides which code ran: say which
        print(f"  measured: {', '.join(sorted({run['package'] for run in runs}))}")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(driver peak RSS {own:.0f} MB)")


if __name__ == "__main__":
    main()
