"""One function per command, wiring readers -> sessionize -> tables. Nothing else does I/O.

`inspect_inputs` reads and accounts; `sessionize_inputs` runs the whole job into a staged
output directory that appears only when complete. Both take a frozen options object and
a RunReport, and return what the CLI prints.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import __version__
from .addresses import with_text_addresses
from .counters import exact_sum
from .errors import InputError, UsageError
from .readers import InputFile, discover_inputs, read_flows, refuse_nothing_to_read
from .readers.background import read_ahead
from .report import FileStats, RunReport
from .schema import (
    FLOW_ADDRESS_COLUMNS,
    FLOW_SCHEMA,
    FLOWS_SCHEMA,
    SESSIONS_SCHEMA,
    text_address_schema,
)
from .tables.evidence import check_output_file, refuse_directory_over_evidence
from .tables.layout import (
    CONSOLIDATED_FILE,
    EXPORTERS_FILE,
    FLOWS_FILE,
    MANIFEST_FILE,
    MATCHES_FILE,
    RUN_FILES,
    SESSIONS_FILE,
)
from .tables.manifest import sha256_file
from .tables.parquet import TableWriter, staged_directory, write_json, write_table
from .tables.partitioned import BucketedWriter, transform_buckets
from .tables.scratch import staged_file
from .times import iso_us

if TYPE_CHECKING:
    from .matching.consolidate import Consolidation

EXPORTER_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("exporter", pa.string()),
    ("exporter_domain", pa.uint32()),
    ("version", pa.uint8()),
    ("versions", pa.string()),
    ("datagrams", pa.uint64()),
    ("records", pa.uint64()),
    ("packets", pa.uint64()),
    ("octets", pa.uint64()),
    ("templates", pa.uint64()),
    ("template_changes", pa.uint64()),
    ("template_withdrawals", pa.uint64()),
    ("options_records", pa.uint64()),
    ("sequence_gaps", pa.uint64()),
    ("sequence_lost", pa.uint64()),
    ("nfcapd_failures", pa.uint64()),
    ("duplicates", pa.uint64()),
    ("reorders", pa.uint64()),
    ("restarts", pa.uint64()),
    ("undecodable_sets", pa.uint64()),
    ("records_without_template", pa.uint64()),
    ("enterprise_fields_skipped", pa.uint64()),
    ("sampling_rate", pa.uint32()),
    ("records_before_sampling", pa.uint64()),
    ("first_export", pa.timestamp("us", tz="UTC")),
    ("last_export", pa.timestamp("us", tz="UTC")),
    ("clock_offset_min_s", pa.float64()),
    ("clock_offset_max_s", pa.float64()),
    ("sessions", pa.uint64()),
    ("evictions", pa.uint64()),
    ("first_eviction", pa.timestamp("us", tz="UTC")),
    ("last_eviction", pa.timestamp("us", tz="UTC")),
    ("peak_open_sessions", pa.uint64()),
]
EXPORTERS_SCHEMA = pa.schema([pa.field(n, t) for n, t in EXPORTER_COLUMNS])


@dataclass(frozen=True)
class ReadOptions:
    """How inputs are read: batch size, UTC time window (µs), strictness."""

    batch_size: int = 65_536
    window: tuple[int | None, int | None] = (None, None)
    strict: bool = False

    def __post_init__(self) -> None:
        start, end = self.window
        if start is not None and end is not None and start > end:
            # every record would be left out, and the run would say nothing about why
            from .times import iso_us

            raise UsageError(
                f"--from is later than --to ({iso_us(start)} > {iso_us(end)}, UTC): the "
                "window holds no time"
            )


# provenance: a file's frames and record numbers grow with arrival, which flows follow
# within a session and sessions roughly across (the 5.2 M SYN-scan flows: 7% smaller,
# 80.4 -> 75.0 MB, and no slower to encode)
FLOW_DELTA_COLUMNS = ("source_frame", "record_index", "arrival")
# sessions_consolidated: within a bucket rows are by first_seen, so its steps are small and
# last_seen's follow (SYN scan: 130.3 -> 128.0 MB, no slower)
CONSOLIDATED_DELTA_COLUMNS = ("first_seen", "last_seen")


def inspect_inputs(
    paths: Sequence[Path],
    options: ReadOptions,
    report: RunReport,
    *,
    flows_path: Path | None = None,
    progress: bool = False,
    force: bool = False,
) -> pa.Table:
    """Read every input, optionally write the flows table, return the exporters table."""
    report.strict = options.strict
    inputs = discover_inputs(paths, report)
    refuse_nothing_to_read(inputs, report)
    writer = None
    with ExitStack() as stack:
        if flows_path is not None:
            check_output_file(
                flows_path, [*paths, *(found.path for found in inputs)], "--flows", force=force
            )
            if flows_path.name in RUN_FILES and (flows_path.parent / MANIFEST_FILE).is_file():
                # found by a responder's audit: `--flows run/flows.parquet --force` replaced
                # a run's own table, which then no longer matched its sessions
                raise UsageError(
                    f"--flows {flows_path} is a file of the sessionize run in "
                    f"{flows_path.parent}; refusing to replace it (even with "
                    "--force): give another path"
                )
            flows_path.parent.mkdir(parents=True, exist_ok=True)
            # removed with its directory once renamed or failed: nothing half-written stays
            staging = stack.enter_context(staged_file(flows_path))
            writer = TableWriter(
                staging, text_address_schema(FLOW_SCHEMA), delta_columns=FLOW_DELTA_COLUMNS
            )
        closed = False
        try:
            for batch in _with_progress(
                read_flows(inputs, report, batch_size=options.batch_size, window=options.window),
                inputs,
                progress,
                report,
            ):
                if writer is not None:
                    writer.write(
                        with_text_addresses(pa.Table.from_batches([batch]), FLOW_ADDRESS_COLUMNS)
                    )
            if writer is not None and flows_path is not None:
                closed = True  # a close that fails (a full disk) is not tried again below
                writer.close()
                writer.path.replace(flows_path)
        finally:
            if writer is not None and not closed:
                writer.close()
    return exporters_table(report)


def exporters_table(
    report: RunReport,
    pressure: dict[str, dict[str, Any]] | None = None,
    sessions: Counter[str] | None = None,
) -> pa.Table:
    """One row per (exporter, domain): the readers' accounting plus session pressure."""
    rows: dict[str, list[Any]] = {name: [] for name, _ in EXPORTER_COLUMNS}
    pressure = pressure or {}
    sessions = sessions or Counter()
    for (exporter, domain), stats in sorted(report.exporters.items()):
        p = pressure.get(exporter, {})
        values = {
            "exporter": exporter,
            "exporter_domain": domain,
            "version": stats.version,
            "versions": ",".join(str(v) for v in sorted(stats.versions)),
            "datagrams": stats.datagrams,
            "records": stats.records,
            "packets": stats.packets,
            "octets": stats.octets,
            "templates": stats.templates,
            "template_changes": stats.template_changes,
            "template_withdrawals": stats.template_withdrawals,
            "options_records": stats.options_records,
            "sequence_gaps": stats.sequence_gaps,
            "sequence_lost": stats.sequence_lost,
            "nfcapd_failures": stats.nfcapd_failures,
            "duplicates": stats.duplicates,
            "reorders": stats.reorders,
            "restarts": stats.restarts,
            "undecodable_sets": stats.undecodable_sets,
            "records_without_template": stats.records_without_template,
            "enterprise_fields_skipped": stats.enterprise_fields_skipped,
            "sampling_rate": stats.sampling_rate,
            "records_before_sampling": stats.records_before_sampling,
            "first_export": stats.first_export_us,
            "last_export": stats.last_export_us,
            "clock_offset_min_s": None
            if stats.clock_offset_min_us is None
            else stats.clock_offset_min_us / 1e6,
            "clock_offset_max_s": None
            if stats.clock_offset_max_us is None
            else stats.clock_offset_max_us / 1e6,
            # sessions are per exporter address: shown on every domain row of that address
            "sessions": sessions.get(exporter, 0),
            "evictions": int(p.get("evictions", 0)),
            "first_eviction": p.get("first_eviction_us"),
            "last_eviction": p.get("last_eviction_us"),
            "peak_open_sessions": int(p.get("peak_open", 0)),
        }
        for name in rows:
            rows[name].append(values[name])
    arrays: list[pa.Array[Any]] = []
    for name, kind in EXPORTER_COLUMNS:
        if pa.types.is_timestamp(kind):
            arrays.append(pa.array(rows[name], pa.int64()).cast(kind))
        elif kind == pa.uint64():
            # exact totals past 2**64 (damaged counters) show as the largest uint64; the
            # manifest's conservation block keeps the exact figures
            arrays.append(
                pa.array([None if v is None else min(int(v), 2**64 - 1) for v in rows[name]], kind)
            )
        else:
            arrays.append(pa.array(rows[name], kind))
    return pa.Table.from_arrays(arrays, schema=EXPORTERS_SCHEMA)


def _coalesced(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch | pa.Table]:
    """Consecutive batches joined up to `size` records. A reader ends a batch at the end of
    each file, and the sessionizer and the conservation sums cost ~3 ms a batch whatever
    its size: 16,000 nfcapd files of 43 records took 64 s. What the sessionizer makes does
    not depend on how the records are batched (tests/sessionize/test_properties.py)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if pending and rows + batch.num_rows > size:
            yield _joined(pending)
            pending, rows = [], 0
        pending.append(batch)
        rows += batch.num_rows
    if pending:
        yield _joined(pending)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch | pa.Table:
    """The batches as one, in one chunk (their dictionaries unified)."""
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).unify_dictionaries().combine_chunks()


def _with_progress(
    batches: Iterator[pa.RecordBatch],
    inputs: Sequence[InputFile],
    enabled: bool,
    report: RunReport,
) -> Iterator[pa.RecordBatch]:
    """tqdm over input bytes, advanced by how far into each file the batches have got (in
    a compressed file, the same share of its size as of its decompressed bytes)."""
    if not enabled:
        yield from batches
        return
    from tqdm import tqdm

    order = {str(item.path): i for i, item in enumerate(inputs)}
    starts = np.cumsum([0] + [item.size for item in inputs])
    total = int(starts[-1])
    done = 0
    with tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, leave=False) as bar:
        for batch in batches:
            if batch.num_rows:
                source = batch.column("source_file")[batch.num_rows - 1].as_py()
                offset = batch.column("source_offset")[batch.num_rows - 1].as_py()
                index = order.get(source)
                if index is not None:
                    unpacked = report.file(source).unpacked_size
                    if unpacked:
                        offset = offset * inputs[index].size // unpacked
                    position = int(min(starts[index] + offset, starts[index + 1]))
                    if position > done:
                        bar.update(position - done)
                        done = position
            yield batch
        bar.update(total - done)


@dataclass(frozen=True)
class SessionizeConfig:
    """Everything `sessionize` needs, validated before any work starts."""

    inputs: tuple[Path, ...]
    out: Path
    policy: Any  # sessionize.SessionPolicy
    read: ReadOptions = ReadOptions()
    cartography: Any = None  # matching.Cartography
    flow_matrix: Any = None  # matching.FlowMatrix
    force: bool = False
    progress: bool = False
    # files the run reads besides its inputs (settings, Cartography, Flow Matrix): --force
    # never replaces an output directory that holds them or an input
    protected: tuple[Path, ...] = ()
    settings_file: Path | None = None  # --config, cited in the manifest
    settings_sha256: str | None = None  # of the bytes its settings were read from


@dataclass
class SessionizeResult:
    out: Path
    sessions: int = 0
    flows: int = 0
    states: Counter[str] = field(default_factory=Counter)
    close_reasons: Counter[str] = field(default_factory=Counter)
    late_sessions: int = 0  # opened by a record behind the watermark (`late`)
    conservation_ok: bool = True
    repeated_session_ids: int = 0  # ids held by more than one session (should be none)
    repeated_examples: list[str] = field(default_factory=list)
    # with a Flow Matrix: sessions each rule matched (every rule, in file order) and the
    # closed sessions none did (the seed's "Unmatched only"): a rule that matched nothing
    # left no trace anywhere (a review)
    matches_by_rule: dict[str, int] | None = None
    unmatched_closed: int = 0
    # matched sessions whose client sent nothing the exporter saw (matching.answers_alone):
    # matched by the rule of the client's requests, which "Unmatched only" does not show
    answers_alone: int = 0  # all of them, matched or not
    answers_alone_matched: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)
    # staging directories of killed runs into the same --out, removed (tables/scratch.py)
    swept: list[Path] = field(default_factory=list)


def _count_matches(
    result: SessionizeResult, names: Sequence[str], sessions: pa.Table, matches: pa.Table
) -> None:
    """Add a batch's matches to the run's counts: per rule, closed unmatched sessions, and
    sessions of answers alone (matching.answers_alone), matched or not."""
    if result.matches_by_rule is None:
        result.matches_by_rule = dict.fromkeys(names, 0)
    hits = np.bincount(
        np.asarray(matches.column("rule_index").to_numpy(zero_copy_only=False), dtype=np.int64),
        minlength=len(names),
    )
    for name, count in zip(names, hits.tolist(), strict=True):
        result.matches_by_rule[name] += count
    lengths = np.asarray(
        pc.list_value_length(sessions.column("matched_rules")).to_numpy(zero_copy_only=False)
    )
    closed = pc.equal(sessions.column("state"), pa.scalar("closed")).to_numpy(zero_copy_only=False)
    result.unmatched_closed += int(np.count_nonzero((lengths == 0) & closed))
    from .matching.match import answers_alone_of

    told = answers_alone_of(sessions)
    result.answers_alone += int(np.count_nonzero(told))
    result.answers_alone_matched += int(np.count_nonzero(told & (lengths > 0)))


class _Totals:
    """Running sums for the conservation check and the data window."""

    def __init__(self) -> None:
        self.records_in = 0
        self.packets_in = 0
        self.octets_in = 0
        self.records_out = 0
        self.packets_out = 0
        self.octets_out = 0
        self.first_us: int | None = None
        self.last_us: int | None = None

    def add_input(self, batch: pa.RecordBatch | pa.Table) -> None:
        if not batch.num_rows:
            return
        self.records_in += batch.num_rows
        self.packets_in += _column_sum(batch.column("packets"))
        self.packets_in += _column_sum(batch.column("reverse_packets"))
        self.octets_in += _column_sum(batch.column("octets"))
        self.octets_in += _column_sum(batch.column("reverse_octets"))
        first = pc.min(batch.column("first_seen").cast(pa.int64())).as_py()
        last = pc.max(batch.column("last_seen").cast(pa.int64())).as_py()
        self.first_us = first if self.first_us is None else min(self.first_us, first)
        self.last_us = last if self.last_us is None else max(self.last_us, last)

    def add_sessions(self, sessions: pa.Table) -> None:
        if not sessions.num_rows:
            return
        self.records_out += _column_sum(sessions.column("flow_count"))
        for column in ("ab_packets", "ba_packets"):
            self.packets_out += _column_sum(sessions.column(column))
        for column in ("ab_bytes", "ba_bytes"):
            self.octets_out += _column_sum(sessions.column(column))


def _column_sum(column: pa.Array[Any] | pa.ChunkedArray[Any]) -> int:
    """counters.exact_sum of an Arrow counter column (nulls count 0), chunk by chunk: read
    in place, where filling nulls that are not there and joining chunks would copy it."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    return sum(
        exact_sum(
            (chunk.fill_null(0) if chunk.null_count else chunk).to_numpy(zero_copy_only=False)
        )
        for chunk in chunks
    )


def sessionize_inputs(config: SessionizeConfig, report: RunReport) -> SessionizeResult:
    """Read every input, sessionize, and write the tables and manifest into config.out."""
    from .matching.consolidate import Consolidation
    from .sessionize import Sessionizer, policy_settings
    from .sessionize.keys import evidence_root

    report.strict = config.read.strict
    inputs = discover_inputs(
        config.inputs, report, exclude=[config.out / name for name in RUN_FILES]
    )
    refuse_nothing_to_read(inputs, report)
    refuse_directory_over_evidence(
        config.out, [*config.inputs, *(found.path for found in inputs), *config.protected], "--out"
    )
    services = None if config.cartography is None else config.cartography.declared_services
    # late sessions' ids hash their records' files relative to the inputs' directory: the
    # same ids when the evidence is copied or moved elsewhere whole
    sessionizer = Sessionizer(
        config.policy,
        services=services,
        identity_root=evidence_root([item.path for item in inputs]),
    )
    result = SessionizeResult(config.out)
    totals = _Totals()
    per_exporter: Counter[str] = Counter()
    with staged_directory(config.out, force=config.force, swept=result.swept) as staging:
        # Parquet encoding and the consolidation buckets run on writer threads of their own
        # (each one worker, so each file is written in order), so that the busiest of them
        # is not the longest thread of the run; leaving this block waits for them, so
        # nothing writes into the staging directory once it is kept or removed
        with ExitStack() as threads:
            io, io_flows, io_buckets = (
                threads.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix=name))
                for name in ("parquet", "parquet-flows", "consolidation")
            )
            sessions_writer = TableWriter(staging / SESSIONS_FILE, SESSIONS_SCHEMA, executor=io)
            consolidation = Consolidation(config.policy.grace_us)
            consolidation_buckets = BucketedWriter(
                staging / ".consolidation",
                CONSOLIDATION_BUCKETS,
                consolidation.rows,
                executor=io_buckets,
            )
            flows_writer: TableWriter | None = None
            matches_writer: TableWriter | None = None

            def emit(output: Any) -> None:
                nonlocal flows_writer, matches_writer
                sessions = output.sessions
                if sessions.num_rows and config.flow_matrix is not None:
                    from .matching import match_sessions, matched_rules_column

                    matches = match_sessions(sessions, config.flow_matrix)
                    rules = matched_rules_column(sessions, matches)
                    sessions = sessions.set_column(
                        sessions.schema.get_field_index("matched_rules"), "matched_rules", rules
                    )
                    _count_matches(result, config.flow_matrix.rule_names, sessions, matches)
                    if matches_writer is None:
                        matches_writer = TableWriter(
                            staging / MATCHES_FILE, matches.schema, executor=io
                        )
                    matches_writer.write(matches)
                if sessions.num_rows:
                    sessions_writer.write(sessions)
                    consolidation_buckets.write(sessions, output.keys)
                    totals.add_sessions(sessions)
                    result.late_sessions += pc.sum(sessions.column("late")).as_py() or 0
                    for counter, name in (
                        (result.states, "state"),
                        (result.close_reasons, "close_reason"),
                        (per_exporter, "exporter"),
                    ):
                        for entry in pc.value_counts(sessions.column(name)).to_pylist():
                            if entry["values"] is not None:
                                counter[entry["values"]] += entry["counts"]
                if output.flows.num_rows:
                    flows = output.flows
                    if flows_writer is None:
                        # address texts are rendered on the writer thread, a row group at a
                        # time: the main thread is the busier one while records come in
                        flows_writer = TableWriter(
                            staging / FLOWS_FILE,
                            _text_flows(flows.slice(0, 0)).schema,
                            prepare=_text_flows,
                            executor=io_flows,
                            delta_columns=FLOW_DELTA_COLUMNS,
                        )
                    flows_writer.write(flows)

            # decoded on a thread of their own, so reading overlaps the sessionizer
            batches = read_ahead(
                read_flows(
                    inputs, report, batch_size=config.read.batch_size, window=config.read.window
                )
            )
            for batch in _coalesced(
                _with_progress(batches, inputs, config.progress, report), config.read.batch_size
            ):
                totals.add_input(batch)
                emit(sessionizer.feed(batch))
            emit(sessionizer.finish())
            # the manifest's input hashes, read while the tables are still being finished
            unread = _unread_with_problems(report, inputs)
            digests = io_flows.submit(
                lambda: (
                    {item.path: _input_digest(item) for item in inputs},
                    {path: _unread_digest(path) for path in unread},
                )
            )
            # consolidate while the writer thread still encodes the last sessions and flows
            _write_consolidated(staging, consolidation_buckets.close(), consolidation, io)
            result.repeated_session_ids = consolidation.repeated_session_ids
            result.repeated_examples = consolidation.repeated_examples
            sessions_writer.close()
            if flows_writer is None:
                flows_writer = TableWriter(
                    staging / FLOWS_FILE, _empty_flows_schema(), delta_columns=FLOW_DELTA_COLUMNS
                )
            flows_writer.close()
            result.flows = flows_writer.rows
            result.sessions = sessions_writer.rows
            if config.flow_matrix is not None:
                if matches_writer is None:
                    from .matching import match_sessions

                    empty = match_sessions(SESSIONS_SCHEMA.empty_table(), config.flow_matrix)
                    matches_writer = TableWriter(staging / MATCHES_FILE, empty.schema)
                matches_writer.close()
            write_table(
                staging / EXPORTERS_FILE,
                exporters_table(report, sessionizer.pressure(), per_exporter),
            )
            totals_ok = (
                totals.records_in == totals.records_out == result.flows
                and totals.packets_in == totals.packets_out
                and totals.octets_in == totals.octets_out
            )
            result.conservation_ok = totals_ok
            hashed, unread_digests = digests.result()
            for item in inputs:
                if hashed[item.path][1]:
                    report.skip(
                        InputChanged(hashed[item.path][1], source=str(item.path), offset=0),
                        nbytes=0,
                    )
            result.manifest = _manifest(
                config,
                inputs,
                report,
                result,
                totals,
                policy_settings(config.policy),
                sessionizer.pressure(),
                {path: digest for path, (digest, _) in hashed.items()},
                unread_digests,
            )
            result.manifest["outputs"] = _cited_outputs(staging, (io, io_flows, io_buckets))
            write_json(staging / MANIFEST_FILE, result.manifest)
    return result


def _text_flows(flows: pa.Table) -> pa.Table:
    """Flows as flows.parquet stores them: addresses as text."""
    return with_text_addresses(flows, FLOW_ADDRESS_COLUMNS)


def _empty_flows_schema() -> pa.Schema:
    """flows.parquet's schema when no flow was read: a run with flows writes its session_id
    and direction required, and so must this one (they were optional here: two runs' tables
    of two schemas, an audit)."""
    return text_address_schema(FLOWS_SCHEMA)


# sessions_consolidated: conversations hashed into this many buckets, each consolidated alone
CONSOLIDATION_BUCKETS = 128


def _write_consolidated(
    staging: Path, buckets: list[Path], consolidation: Consolidation, executor: Executor
) -> None:
    """sessions_consolidated, a bucket of conversations at a time (encoded on `executor`
    while the next bucket is consolidated)."""
    from .matching import SESSIONS_CONSOLIDATED_SCHEMA

    writer = TableWriter(
        staging / CONSOLIDATED_FILE,
        SESSIONS_CONSOLIDATED_SCHEMA,
        executor=executor,
        delta_columns=CONSOLIDATED_DELTA_COLUMNS,
    )
    transform_buckets(buckets, consolidation.consolidate, writer)  # each by first_seen, id
    writer.close()
    shutil.rmtree(staging / ".consolidation", ignore_errors=True)


class InputChanged(InputError):
    """An input that changed, or went, while the run read it (a collector still writing
    nfcapd.current): its size, counts and SHA-256 describe different states of it."""

    reason = "input_changed"


def _input_digest(item: InputFile) -> tuple[str | None, str]:
    """The SHA-256 of an input at the run's end, and what changed since it was found ("":
    nothing). An audit: a file growing during the run was cited with its size at the
    start, the records of a later state and the hash of a third, without a word."""

    def changed(status: os.stat_result) -> bool:
        return (status.st_size, status.st_mtime_ns) != (
            item.size,
            item.mtime_ns or status.st_mtime_ns,
        )

    try:  # discovery's digest (copies of nfcapd files) when the file is as it was then
        digest = (
            item.sha256 if item.sha256 and not changed(item.path.stat()) else sha256_file(item.path)
        )
        after = item.path.stat()
    except OSError as exc:
        return None, (
            f"could not be read at the run's end to hash it "
            f"({exc.strerror or exc}): gone or changed since it was read"
        )
    if changed(after):
        return digest, (
            f"changed while the run read it: {item.size} bytes when found, "
            f"{after.st_size} at the end; the records read, the size and the "
            "SHA-256 cited may each describe another state of it"
        )
    return digest, ""


def _unread_with_problems(report: RunReport, inputs: Sequence[InputFile]) -> list[str]:
    """The files found and not read for a problem (unknown format, unreadable, a header
    no reader knows): a report names them as evidence given and not used, and cites them
    by hash as it cites the inputs (not_read had their sizes alone: a review). Files left
    out on purpose (an earlier run's tables, a copy of an input) are not hashed."""
    read = {str(item.path) for item in inputs}
    return [
        path for path, stats in sorted(report.files.items()) if path not in read and stats.skipped
    ]


def _unread_digest(path: str) -> str | None:
    """The SHA-256 of a file not read, or None when it cannot be read (or is no file)."""
    try:
        return sha256_file(Path(path)) if Path(path).is_file() else None
    except OSError:
        return None


def _cited_file(path: Path | str | None, read: str | None = None) -> dict[str, str] | None:
    """Where the settings, Cartography or Flow Matrix came from: as given, absolute, and the
    SHA-256 of the bytes `read` from it (recombine's exports also refuse to overwrite it).

    The file as it is at the run's end is hashed too: edited meanwhile (the next version of
    the rules, written while a long run went), it is said under `changed`, and `load` says
    the run's matches were made with the earlier one. It was hashed at the end alone, and
    the manifest cited the edit as what the run had read (a review)."""
    if path is None:
        return None
    path = Path(path)
    try:
        now = sha256_file(path)
    except OSError as exc:
        if read is None:
            raise
        now, changed = "", f"could not be read at the run's end ({exc.strerror or exc})"
    else:
        changed = f"changed since the run read it: it now hashes to {now}"
    cited = {"path": str(path), "absolute": str(path.resolve()), "sha256": read or now}
    if read is not None and now != read:
        cited["changed"] = f"{changed}; the SHA-256 cited is of the bytes the run read"
    return cited


def _cited_input(item: InputFile, stats: FileStats | None, sha256: str | None) -> dict[str, Any]:
    """An input as the manifest cites it: the file as given (size and SHA-256 of its bytes,
    compressed or not), then what was read from it, so that a report can say which file
    each count came from: its records, what was skipped in it by reason, the size its
    offsets count in when it was decompressed whole, and the records of nfdump's
    aggregations (each stands for several flows)."""
    cited: dict[str, Any] = {
        "path": str(item.path),
        "absolute": str(item.path.resolve()),
        "format": stats.format if stats is not None else item.format,
        "size": item.size,
        "sha256": sha256,
    }
    if item.compression:
        cited["compression"] = item.compression
        if stats is not None and stats.unpacked_size is not None:
            cited["unpacked_size"] = stats.unpacked_size
    return cited if stats is None else {**cited, **stats.read_counts()}


def _cited_outputs(staging: Path, executors: Sequence[Executor]) -> dict[str, dict[str, Any]]:
    """Each table written, by file name, with its size and SHA-256: a report cites the
    manifest, and the manifest ties itself to the tables it describes (it named the inputs'
    hashes alone, and a table edited or swapped since the run could not be told: a
    review). The tables are byte-identical for the same inputs, and so are these. Hashed
    on the writer threads, idle by now, the largest first (hashlib lets go of the GIL)."""
    tables = sorted(
        (path for path in staging.iterdir() if path.is_file() and path.suffix == ".parquet"),
        key=lambda path: (-path.stat().st_size, path.name),
    )
    digests = {
        path.name: executors[number % len(executors)].submit(sha256_file, path)
        for number, path in enumerate(tables)
    }
    return {
        name: {"size": (staging / name).stat().st_size, "sha256": digests[name].result()}
        for name in sorted(digests)
    }


def _manifest(
    config: SessionizeConfig,
    inputs: Sequence[InputFile],
    report: RunReport,
    result: SessionizeResult,
    totals: _Totals,
    settings: dict[str, Any],
    pressure: dict[str, dict[str, Any]],
    digests: dict[Path, str | None],
    unread_digests: dict[str, str | None],
) -> dict[str, Any]:
    """What a forensic report cites: tool, settings, inputs with hashes, counts, checks."""
    read = {str(item.path) for item in inputs}
    return {
        "tool": {
            "name": "obserae-forensics",
            "version": __version__,
            "python": sys.version.split()[0],
            "pyarrow": pa.__version__,
            "numpy": np.__version__,
            "numba": numba.__version__,
        },
        "command": "sessionize",
        "settings": settings,
        "read": {
            "batch_size": config.read.batch_size,
            "from": iso_us(config.read.window[0]),
            "to": iso_us(config.read.window[1]),
            "strict": config.read.strict,
        },
        "settings_file": _cited_file(config.settings_file, config.settings_sha256),
        "cartography": _cited_file(
            getattr(config.cartography, "path", None), getattr(config.cartography, "sha256", None)
        ),
        "flow_matrix": _cited_file(
            getattr(config.flow_matrix, "path", None), getattr(config.flow_matrix, "sha256", None)
        ),
        "inputs": [
            _cited_input(item, report.files.get(str(item.path)), digests[item.path])
            for item in inputs
        ],
        # files found but not read (no reader knew them, unreadable, a pipe): what and why
        "not_read": [
            {
                "path": path,
                "size": stats.size,
                "skipped": dict(sorted(stats.skipped.items())),
                **({"sha256": unread_digests[path]} if path in unread_digests else {}),
                **({"ignored": dict(sorted(stats.ignored.items()))} if stats.ignored else {}),
                **({"copy_of": stats.copy_of} if stats.copy_of else {}),
            }
            for path, stats in sorted(report.files.items())
            if path not in read
        ],
        # hidden entries (a leading dot) the directory walks left out, as documented
        "hidden": sorted(report.hidden),
        # files holding one export twice, both copies in the sessions (twins.py)
        "twin_inputs": report.twin_inputs(),
        "data_window": {
            "start": iso_us(totals.first_us),
            "end": iso_us(totals.last_us),
            "start_us": totals.first_us,
            "end_us": totals.last_us,
        },
        "counts": {
            "records_read": report.records,
            "outside_window": report.outside_window,
            **report.reason_counts(),
            "sessions": result.sessions,
            "flows": result.flows,
            "sessions_by_state": dict(sorted(result.states.items())),
            "sessions_by_close_reason": dict(sorted(result.close_reasons.items())),
            "late_sessions": result.late_sessions,
            "records_before_sampling": sum(
                stats.records_before_sampling for stats in report.exporters.values()
            ),
            "session_pressure": {k: pressure[k] for k in sorted(pressure)},
            "sequence_loss": report.sequence_loss(),
            "sequence_ends": report.sequence_ends(),
            # with a Flow Matrix: sessions per rule, every rule in file order, the closed
            # sessions no rule accounts for, and the matched sessions whose client sent
            # nothing; null without one
            "flow_matrix": (
                None
                if config.flow_matrix is None
                else {
                    "matches_by_rule": result.matches_by_rule
                    or dict.fromkeys(config.flow_matrix.rule_names, 0),
                    "unmatched_closed": result.unmatched_closed,
                    "answers_alone": result.answers_alone,
                    "answers_alone_matched": result.answers_alone_matched,
                }
            ),
        },
        "conservation": {
            "ok": result.conservation_ok,
            "records_in": totals.records_in,
            "records_in_sessions": totals.records_out,
            "flow_rows": result.flows,
            "packets_in": totals.packets_in,
            "packets_in_sessions": totals.packets_out,
            "bytes_in": totals.octets_in,
            "bytes_in_sessions": totals.octets_out,
        },
        "session_ids": {
            "unique": not result.repeated_session_ids,
            "repeated": result.repeated_session_ids,
            "examples": result.repeated_examples,
        },
        "problems": [str(p) for p in report.examples],
    }
