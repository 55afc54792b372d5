"""Kernel A/B: another revision's kernel against this checkout's, interleaved in one process.

    python bench/compare_kernel.py REV [--input FILE] [--records N] [--rounds R]

On these noisy machines two separate runs of one command differ by up to 2x within an
hour, so alternating processes needs many runs to see a 10% change. Here both kernels
replay the very same records in one process, one after the other, round after round
(the order flips every round), and the script prints each one's CPU time per record
(thread time: the hypervisor's steal is not counted) and the median of the per-round
ratios, whose range shows how far the noise reaches. Page faults of table growth are
included, as in bench_kernel.py.

REV is checked out with `git archive` into bench/data/compare/<commit>/ as a package of
its own name (obserae_forensics_<commit>), which its relative imports allow; its numba
cache stays there, so only the first comparison with a revision compiles it. Records are
prepared by this checkout (bench_kernel.py's traffic model in 65,536-record chunks, or
`--input`, one exporter's records), so REV's kernel must take the same Records fields. The
session counts it prints (sessions closed during the replay) are a sanity check that both
kernels saw the same records, not a check of their results: the tests do that.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# this checkout's package, whatever an editable install elsewhere points to
sys.path.insert(0, str(ROOT))
CHUNK = 1 << 16


def revision_kernel(revision: str) -> ModuleType:
    """REV's kernel module, imported under a package name of its own."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    package = f"obserae_forensics_{commit[:12]}"
    home = ROOT / "bench" / "data" / "compare" / commit
    if not (home / package).is_dir():
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "obserae_forensics"],
            check=True,
            capture_output=True,
        ).stdout
        home.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
                tar.extractall(home, filter="data")
            else:
                tar.extractall(home)  # our own repository's archive
        (home / "obserae_forensics").rename(home / package)
    sys.path.insert(0, str(home))
    return importlib.import_module(f"{package}.sessionize.kernel")


def record_blocks(source: str | None, total: int) -> list[object]:
    """The records to replay, in batches of 65,536 (the CLI's batch size)."""
    from bench_kernel import _records, capture_records, generate

    if source is None:
        return [
            _records(generate(start, min(CHUNK, total - start)), start)
            for start in range(0, total, CHUNK)
        ]
    blocks = []
    for block in capture_records(source, total):
        for first in range(0, len(block), CHUNK):
            blocks.append(block.take(np.arange(first, min(first + CHUNK, len(block)))))
    return blocks


def replay_seconds(kernel: ModuleType, blocks: list[object]) -> tuple[float, int]:
    """Thread CPU seconds of one replay of every block with a fresh KernelReplay; sessions."""
    from obserae_forensics.sessionize import SessionPolicy
    from obserae_forensics.sessionize.keys import known_service_ports

    replay = kernel.KernelReplay(SessionPolicy(), known_service_ports())
    sessions = 0
    began = time.thread_time()
    for block in blocks:
        sessions += replay.process(block)[2].shape[1]
    return time.thread_time() - began, sessions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="the revision to compare with (e.g. HEAD~1)")
    parser.add_argument(
        "--input",
        default=None,
        help="a capture's records instead of generated traffic, e.g. bench/data/big/big.nfcapd",
    )
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()

    from obserae_forensics.sessionize import kernel as current

    kernels = {args.revision: revision_kernel(args.revision), "this checkout": current}
    warm = record_blocks(None, 1000)
    for kernel in kernels.values():  # compile, or load the cache, outside the timing
        replay_seconds(kernel, warm)
    blocks = record_blocks(args.input, args.records)
    total = sum(len(block) for block in blocks)
    seconds: dict[str, list[float]] = {name: [] for name in kernels}
    counts: dict[str, set[int]] = {name: set() for name in kernels}
    for round_ in range(args.rounds):
        names = list(kernels) if round_ % 2 == 0 else list(kernels)[::-1]
        for name in names:
            elapsed, sessions = replay_seconds(kernels[name], blocks)
            seconds[name].append(elapsed)
            counts[name].add(sessions)
    base = np.array(seconds[args.revision])
    print(
        f"{total:,} records, {args.rounds} rounds; sessions: "
        + ", ".join(f"{name} {sorted(found)}" for name, found in counts.items())
    )
    for name, values in seconds.items():
        times = np.array(values)
        ratio = times / base
        print(
            f"{name:>16}: {1e9 * times.min() / total:6.0f} ns/record at best, "
            f"{1e9 * np.median(times) / total:6.0f} median; time / {args.revision}'s: "
            f"median {np.median(ratio):.3f} (rounds {ratio.min():.2f}-{ratio.max():.2f})"
        )


if __name__ == "__main__":
    main()
