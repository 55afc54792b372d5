"""Benchmark: `recombine --export-pcap` from a capture rotated into files, as evidence comes.

Cuts a PCAP export capture into FILES files of equal frame counts (as `tcpdump -C` or
`editcap -c` would; not timed), sessionizes them as one run (not timed), then times
recombine_runs over the run (as the command does), the export of one conversation of the
last file (whose templates lie in the first: softflowd and pmacct send them once), and of up to
--conversations conversations of the last file at once. Prints the seconds of each, how
many datagrams were added for templates and options, how many records decoded alone as in
the run, and the peak RSS.

    python bench/bench_export.py bench/data/big/big_export_v9.pcap [--files 8]
        [--conversations 2000] [--dir bench/data/export]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import struct
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from typer.testing import CliRunner

from obserae_forensics.cli import app
from obserae_forensics.recombine import export_pcap, recombine_runs


def split_capture(capture: Path, files: int, out: Path) -> list[Path]:
    """A libpcap file cut into `files` files of (nearly) equal frame counts, each with the
    file's own header (a PCAP file of either byte order and resolution)."""
    data = capture.read_bytes()
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    record = struct.Struct(order + "IIII")
    starts = []
    at = 24
    while at + 16 <= len(data):
        starts.append(at)
        at += 16 + record.unpack_from(data, at)[2]
    per = -(-len(starts) // files)
    paths = []
    for number in range(0, len(starts), per):
        begin = starts[number]
        end = starts[number + per] if number + per < len(starts) else at
        path = out / f"part{number // per:03d}.pcap"
        path.write_bytes(data[:24] + data[begin:end])
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=Path("bench/data/export"))
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    parts = args.dir / "parts"
    parts.mkdir(parents=True)
    files = split_capture(args.capture, args.files, parts)
    run = args.dir / "run"
    made = CliRunner().invoke(app, ["sessionize", *map(str, files), "-o", str(run), "-q"])
    if made.exit_code:
        raise SystemExit(made.output)
    print(f"{args.capture.name}: {len(files)} files, sessionized as one run (not timed)")

    started = time.perf_counter()
    result = recombine_runs([run], args.dir / "recombined")  # as the command does
    print(f"recombine_runs: {time.perf_counter() - started:.2f} s")
    flows = pq.read_table(run / "flows.parquet", columns=["session_id", "source_file"])
    last = flows.filter(pc.equal(flows["source_file"], str(files[-1])))
    ids = list(dict.fromkeys(last.column("session_id").to_pylist()))
    for label, chosen in (
        ("1 conversation", ids[:1]),
        (f"{min(len(ids), args.conversations)} conversations", ids[: args.conversations]),
    ):
        started = time.perf_counter()
        exported = export_pcap(result, chosen, args.dir / "export.pcap", force=True)
        print(
            f"export of {label} of the last file: {time.perf_counter() - started:.2f} s, "
            f"{exported.datagrams} datagrams ({exported.template_datagrams} added), "
            f"decoded alone {exported.checked_records - exported.differing_records} of "
            f"{exported.checked_records} records as in the run"
        )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
