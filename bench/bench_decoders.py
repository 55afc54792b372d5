"""Records per second and peak memory of the export decoders, end to end from PCAP.

    python bench/bench_decoders.py                       # corpus exports + generated captures
    python bench/bench_decoders.py bench/data/v9.pcap    # just these files

For each input, a fresh process runs iter_datagrams (the container) and ExportDecoder.feed /
finish (the decoders) over the whole file, streaming, and prints records, wall seconds,
records/s and peak RSS (resource.getrusage ru_maxrss); a second fresh process only walks
the container, so "decoders s" = end to end minus container is the decoders' share. One
core: the process is single-threaded. The generated captures (5 million records each)
are written by make_capture.py when missing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "exports"
DATA = REPO / "bench" / "data"
GENERATED = {DATA / "v9_5M.pcap": 9, DATA / "ipfix_5M.pcap": 10}


def measure(path: Path, decode: bool = True) -> dict[str, float]:
    """Read one file in this process (decoding it unless `decode` is False); its figures."""
    from obserae_forensics.readers.exports import ExportDecoder
    from obserae_forensics.readers.pcap import iter_datagrams
    from obserae_forensics.report import RunReport

    report = RunReport()
    decoder = ExportDecoder(report)
    records = 0
    began = time.perf_counter()
    for chunk in iter_datagrams(path, report):
        if decode:
            for batch in decoder.feed(chunk):
                records += batch.num_rows
    if decode:
        for batch in decoder.finish():
            records += batch.num_rows
    seconds = time.perf_counter() - began
    return {
        "records": records,
        "seconds": seconds,
        "records_per_s": records / seconds if seconds else 0.0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_one(path: Path, decode: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--one", str(path)]
    if not decode:
        command.append("--container-only")
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", type=Path)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--container-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, decode=not args.container_only)))
        return
    inputs = list(args.inputs)
    if not inputs:
        inputs = sorted(CORPUS.glob("*.pcap")) if CORPUS.is_dir() else []
        for path, version in GENERATED.items():
            if not path.exists():
                subprocess.run(
                    [
                        sys.executable,
                        str(REPO / "bench" / "make_capture.py"),
                        str(path),
                        "--version",
                        str(version),
                    ],
                    check=True,
                )
            inputs.append(path)
    print(
        f"{'file':<24} {'records':>9} {'seconds':>8} {'records/s':>11} {'container s':>11} "
        f"{'decoders s':>10} {'decoders rec/s':>14} {'peak RSS MiB':>12}"
    )
    for path in inputs:
        figures = run_one(path, decode=True)
        container = run_one(path, decode=False)
        decoders = max(figures["seconds"] - container["seconds"], 1e-9)
        print(
            f"{path.name:<24} {figures['records']:>9.0f} {figures['seconds']:>8.3f} "
            f"{figures['records_per_s']:>11,.0f} {container['seconds']:>11.3f} "
            f"{decoders:>10.3f} {figures['records'] / decoders:>14,.0f} "
            f"{figures['peak_rss_mib']:>12.1f}"
        )


if __name__ == "__main__":
    main()
