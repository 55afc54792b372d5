"""End-to-end `sessionize` benchmark: read + sessionize + write, next to nfdump -B.

    python bench/bench_sessionize.py INPUT [INPUT...] [--batch-size N]

Each INPUT (a PCAP or nfcapd file) is sessionized in a child process (so peak RSS is the
job's own), and for nfcapd inputs `nfdump -r FILE -q -B -o pipe > /dev/null` (nfdump's
bidirectional pairing, the nearest thing it has to sessions) runs on the same file. Prints
records/s, peak RSS and the ratio to nfdump. Build inputs with
../shared/bench-data/make_big.sh bench/data/big (kept out of git).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from pathlib import Path
from obserae_forensics.pipeline import ReadOptions, SessionizeConfig, sessionize_inputs
from obserae_forensics.report import RunReport
from obserae_forensics.sessionize import SessionPolicy
path, out, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
report = RunReport()
start = time.perf_counter()
result = sessionize_inputs(SessionizeConfig(inputs=(path,), out=out, policy=SessionPolicy(),
                           read=ReadOptions(batch_size=batch), force=True), report)
elapsed = time.perf_counter() - start
print(json.dumps({"records": report.records, "sessions": result.sessions, "seconds": elapsed,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "conservation_ok": result.conservation_ok}))
"""


def run_child(path: Path, batch_size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(out), str(batch_size)],
                              check=True, capture_output=True, text=True)
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
    args = parser.parse_args()
    for path in args.inputs:
        figures = run_child(path, args.batch_size)
        rate = figures["records"] / figures["seconds"]
        line = (f"{path.name}: {figures['records']:,.0f} records -> {figures['sessions']:,.0f} "
                f"sessions in {figures['seconds']:.2f} s = {rate / 1e6:.2f} M records/s, "
                f"peak RSS {figures['peak_rss_mb']:.0f} MB, "
                f"conservation {'ok' if figures['conservation_ok'] else 'FAILED'}")
        with open(path, "rb") as handle:
            is_nfcapd = handle.read(2) in (b"\x0c\xa5", b"\xa5\x0c")
        if is_nfcapd:
            seconds = nfdump_seconds(path)
            if seconds is not None:
                theirs = figures["records"] / seconds / 1e6
                line += (f"; nfdump -B {seconds:.2f} s = {theirs:.2f} M records/s; "
                         f"ours is {seconds / figures['seconds']:.2f}x nfdump -B's rate")
        print(line, flush=True)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(driver peak RSS {own:.0f} MB)")


if __name__ == "__main__":
    main()
