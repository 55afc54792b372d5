"""Benchmark: the consolidation phase of `sessionize` alone, on a real run's sessions.

    python bench/bench_consolidation.py RUN_DIR [--batch-rows 65536] [--buckets 128]

RUN_DIR is a `sessionize` output directory. Its sessions.parquet is loaded first (not
timed), then fed batch by batch to what `sessionize` does with each emitted sessions
table (Consolidation.rows + BucketedWriter, inline rather than on the writer thread),
then every bucket is read back, consolidated and encoded as `_write_consolidated` does.
Read back from Parquet, the sessions come without the sessionizer's SessionKeys, so the
feed times the text path (hashing, comparing and encoding the texts), which a run takes
only under `--replay event`: it overstates what a run spends routing (5.2 M SYN-scan
sessions: 2.5 CPU-s here, 1.7-1.9 in a run's bucket thread).
Prints CPU seconds per step (feed; read, consolidate, encode, unlink per bucket), sessions/s
of feed + consolidate, the scratch size and peak RSS (ru_maxrss, which includes the loaded
sessions), and whether the result is byte-identical to RUN_DIR/sessions_consolidated.parquet.
The machine is shared: CPU seconds move less than wall seconds when others are busy.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from obserae_forensics.matching import SESSIONS_CONSOLIDATED_SCHEMA
from obserae_forensics.matching.consolidate import Consolidation
from obserae_forensics.pipeline import CONSOLIDATED_DELTA_COLUMNS
from obserae_forensics.schema import SESSIONS_SCHEMA
from obserae_forensics.sessionize import SessionPolicy
from obserae_forensics.tables.parquet import TableWriter
from obserae_forensics.tables.partitioned import BucketedWriter, read_scratch


def sessions_batches(path: Path, batch_rows: int) -> list[pa.Table]:
    """The run's sessions as the sessionizer hands them over: one chunk per table."""
    source = pq.ParquetFile(path)
    batches = []
    for group in range(source.metadata.num_row_groups):
        table = source.read_row_group(group).cast(SESSIONS_SCHEMA).combine_chunks()
        batches += [
            table.slice(start, batch_rows) for start in range(0, table.num_rows, batch_rows)
        ]
    return batches


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--batch-rows", type=int, default=65_536)
    parser.add_argument("--buckets", type=int, default=128)  # pipeline.CONSOLIDATION_BUCKETS
    args = parser.parse_args()
    batches = sessions_batches(args.run / "sessions.parquet", args.batch_rows)
    sessions = sum(batch.num_rows for batch in batches)
    consolidation = Consolidation(SessionPolicy().grace_us)
    warm = Consolidation(SessionPolicy().grace_us)  # loads the numba code outside the timing
    warm.consolidate(warm.rows(batches[0].slice(0, 100), args.buckets)[0])

    scratch = Path(tempfile.mkdtemp(prefix="bench-consolidation-"))
    try:
        started = time.process_time()
        writer = BucketedWriter(scratch / "buckets", args.buckets, consolidation.rows)
        for batch in batches:
            writer.write(batch)
        paths = writer.close()
        feed_s = time.process_time() - started
        scratch_mb = sum(path.stat().st_size for path in paths) / 1e6

        steps = {"read": 0.0, "consolidate": 0.0, "encode": 0.0, "unlink": 0.0}
        output = scratch / "sessions_consolidated.parquet"
        table_writer = TableWriter(
            output, SESSIONS_CONSOLIDATED_SCHEMA, delta_columns=CONSOLIDATED_DELTA_COLUMNS
        )
        rows = 0
        for path in paths:
            mark = time.process_time()
            bucket = read_scratch(path)
            steps["read"] += time.process_time() - mark
            mark = time.process_time()
            result = consolidation.consolidate(bucket)
            steps["consolidate"] += time.process_time() - mark
            mark = time.process_time()
            table_writer.write(result)
            steps["encode"] += time.process_time() - mark
            mark = time.process_time()
            path.unlink()
            steps["unlink"] += time.process_time() - mark
            rows += result.num_rows
        mark = time.process_time()
        table_writer.close()
        steps["encode"] += time.process_time() - mark

        ours = feed_s + steps["read"] + steps["consolidate"] + steps["unlink"]
        print(
            f"{sessions:,} sessions -> {rows:,} consolidated rows, {args.buckets} buckets, "
            f"scratch {scratch_mb:,.0f} MB"
        )
        print(f"feed (rows + routing + scratch writes): {feed_s:.2f} s CPU")
        print(
            "per bucket: "
            + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in steps.items())
            + " (CPU)"
        )
        print(
            f"consolidation without encoding: {ours:.2f} s CPU = "
            f"{sessions / ours / 1e6:.2f} M sessions/s; with encoding "
            f"{ours + steps['encode']:.2f} s"
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS {peak:,.0f} MB (includes the loaded sessions)")
        reference = args.run / "sessions_consolidated.parquet"
        if reference.is_file():
            same = digest(reference) == digest(output)
            print(f"byte-identical to {reference}: {'yes' if same else 'NO'}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
