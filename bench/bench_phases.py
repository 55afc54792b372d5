"""Where `sessionize` spends its CPU: thread CPU seconds of each phase, per thread.

    python bench/bench_phases.py INPUT [--batch-size N] [--timeline]

Runs the whole job once on INPUT (into a temporary directory) with the phases wrapped in
timers of the calling thread's CPU time (time.thread_time), then prints them per thread,
largest first, with the run's wall and CPU seconds. `--timeline` adds, per thread, the CPU
seconds its outermost timed phases spent in each second of the run (a call's CPU spread
evenly over its wall span): where the threads overlap and where one works alone. A run
uses five threads (main, read ahead, and the writers of sessions + sessions_consolidated,
of flows, and of the consolidation buckets) on a machine that may have two cores: then the
wall time is at least half the CPU seconds, and a phase only makes the run faster by the
CPU it gives back. Wrapped phases nest (Sessionizer.feed holds KernelReplay.process and
_emit, which holds sessions_table), so the lines do not add up to the total.

The numba functions compile or load their cache on first use: the first run after an edit
of a kernel file includes that time; run twice.
"""

from __future__ import annotations

import argparse
import functools
import resource
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

_spent: dict[tuple[str, str], float] = defaultdict(float)
_lock = threading.Lock()
_calls: list[tuple[str, float, float, float]] = []  # thread, wall start, wall end, CPU
_depth = threading.local()
_start = time.perf_counter()


def _timed(owner: Any, name: str) -> None:
    """Replace owner.name by a wrapper adding the thread CPU time of each call to _spent."""
    function: Callable[..., Any] = getattr(owner, name)
    label = f"{getattr(owner, '__name__', owner)}.{name}"

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.thread_time()
        wall = time.perf_counter()
        depth = getattr(_depth, "value", 0)
        _depth.value = depth + 1
        try:
            return function(*args, **kwargs)
        finally:
            _depth.value = depth
            spent = time.thread_time() - began
            thread = threading.current_thread().name.split("_")[0]
            with _lock:
                _spent[(thread, label)] += spent
                if depth == 0:
                    _calls.append((thread, wall, time.perf_counter(), spent))

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--batch-size", type=int, default=65_536)  # the CLI default
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="CPU seconds of each thread in each second of the run",
    )
    args = parser.parse_args()

    from obserae_forensics import pipeline
    from obserae_forensics.matching import consolidate
    from obserae_forensics.readers import background, nfcapd
    from obserae_forensics.sessionize import kernel, sessionizer
    from obserae_forensics.tables import parquet, partitioned

    for owner, name in (
        (kernel.KernelReplay, "process"),
        (sessionizer.Sessionizer, "feed"),
        (sessionizer.Sessionizer, "_emit"),
        (sessionizer, "sessions_table"),
        (sessionizer, "batch_records"),
        (parquet.TableWriter, "write"),
        (parquet.TableWriter, "_write_group"),
        (partitioned.BucketedWriter, "_route"),
        (partitioned, "read_scratch"),
        (consolidate.Consolidation, "consolidate"),
        (pipeline, "sha256_file"),
        (nfcapd, "_decode_block"),
    ):
        if hasattr(owner, name):
            _timed(owner, name)
    # the read-ahead thread's own total: everything the readers do
    produce = background.read_ahead

    def read_ahead(items: Any, *rest: Any, **kwargs: Any) -> Any:
        def counted() -> Any:
            iterator = iter(items)
            while True:
                began = time.thread_time()
                wall = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    with _lock:
                        spent = time.thread_time() - began
                        _spent[("read-ahead", "reading (all of it)")] += spent
                        _calls.append(("read-ahead", wall, time.perf_counter(), spent))
                yield item

        return produce(counted(), *rest, **kwargs)

    pipeline.read_ahead = read_ahead

    from obserae_forensics.report import RunReport
    from obserae_forensics.sessionize import SessionPolicy

    report = RunReport()
    with tempfile.TemporaryDirectory() as scratch:
        began, cpu = time.perf_counter(), time.process_time()
        global _start
        _start = began
        pipeline.sessionize_inputs(
            pipeline.SessionizeConfig(
                inputs=(args.input,),
                out=Path(scratch) / "run",
                policy=SessionPolicy(),
                read=pipeline.ReadOptions(batch_size=args.batch_size),
                force=True,
            ),
            report,
        )
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    print(
        f"{args.input.name}: {report.records:,} records, wall {wall:.2f} s, CPU {cpu:.2f} s "
        f"(main thread {time.thread_time():.2f} s), peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; measured: "
        f"{Path(pipeline.__file__).resolve().parent}"
    )  # which code ran (see bench_sessionize)
    # every phase that ran, the short ones too: on a small input the kernel's share rounds
    # to 0.00 s, and leaving it out made the suite's run of this script fail by chance
    for (thread, label), seconds in sorted(_spent.items(), key=lambda item: -item[1]):
        print(f"  {seconds:7.2f} s  {thread:<14} {label}")
    if args.timeline:
        _print_timeline(wall)


def _print_timeline(wall: float) -> None:
    """One line per thread: tenths of a CPU second spent in each second of the run."""
    seconds = int(wall) + 1
    usage: dict[str, list[float]] = defaultdict(lambda: [0.0] * seconds)
    for thread, began, ended, cpu in _calls:
        first, last = began - _start, max(ended - _start, began - _start + 1e-9)
        for second in range(max(int(first), 0), min(int(last) + 1, seconds)):
            overlap = min(last, second + 1) - max(first, second)
            usage[thread][second] += cpu * max(overlap, 0.0) / (last - first)
    print("timeline: tenths of a CPU second per second of the run (9 = a whole core)")
    for thread, per_second in sorted(usage.items()):
        cells = "".join(" " if x < 0.05 else str(min(int(x * 10 + 0.5), 9)) for x in per_second)
        print(f"  {thread:<14} {cells}")


if __name__ == "__main__":
    main()
