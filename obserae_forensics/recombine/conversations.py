"""recombine: sessionize run directories in, recombined conversations and a report out.

Reads the tables of one or more `sessionize` runs, chains their fragments (chain.py) and
writes, into one output directory:

- `sessions_recombined.parquet`: one row per conversation (RECOMBINED_SCHEMA), every session
  of the runs in exactly one conversation, so byte and packet totals are conserved;
- `recombined_fragments.parquet`: one row per session with its conversation, place, link
  reason and gap (FRAGMENTS_SCHEMA): what "Find Session Fragments" answers from;
- `report.md` / `report.json` (same content) and `timeline.png` (report.py).

The surprising thing: nothing is rewritten in the runs. The sessionizer's `sessions` rows stay
as they were (closed sessions are never modified); recombination is a view over them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..signals import Interrupted, held
from ..tables.layout import (
    FRAGMENTS_FILE,
    RECOMBINE_FILES,
    RECOMBINED_FILE,
    REPORT_JSON,
    REPORT_MD,
    TIMELINE_PNG,
)
from ..tables.parquet import (
    made_directory,
    read_parquet,
    write_atomically,
    write_parquet,
)
from ..tables.scratch import owned_directory, staged_file
from .chain import FRAGMENTS_SCHEMA, RECOMBINED_SCHEMA, chain_sessions
from .overlap import OverlapCheck, twin_counts
from .partitioned import RowsByPosition, recombine_partitioned
from .report import build_report, render_json, render_markdown, write_timeline
from .runs import Run, empty_sessions, order_runs, read_sessions


@dataclass
class RecombineResult:
    """What recombine found: the conversations, every fragment's place, and the report.

    `recombine_tables` holds both tables; `recombine_runs` wrote them without ever holding
    them whole, and `conversations` / `fragments` then read the files it wrote."""

    runs: list[Run]
    held: tuple[pa.Table, pa.Table] | None  # (conversations, fragments) in memory, or None
    report: dict[str, Any]
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def conversations(self) -> pa.Table:  # RECOMBINED_SCHEMA
        if self.held is not None:
            return self.held[0]
        return read_parquet(self.files[RECOMBINED_FILE])

    @property
    def fragments(self) -> pa.Table:  # FRAGMENTS_SCHEMA
        if self.held is not None:
            return self.held[1]
        return read_parquet(self.files[FRAGMENTS_FILE])

    def summary(self) -> str:
        counts = self.report["counts"]
        line = (
            f"{counts['sessions']} sessions from {len(self.runs)} run(s) -> "
            f"{counts['conversations']} conversations, {counts['split_conversations']} "
            f"of them split"
        )
        cut = counts["head_cut"] + counts["tail_cut"]
        if cut:
            line += (
                f"; {counts['head_cut']} may have begun before the window, "
                f"{counts['tail_cut']} may go on after it"
            )
        return "\n".join(
            [
                line,
                *(
                    f"warning: run {run.index} ({run.path}): {text}"
                    for run in self.runs
                    for text in [*run.changed, *run.losses, *run.overlaps, *run.order]
                ),
            ]
        )


def recombine_tables(run_dirs: Sequence[Path]) -> RecombineResult:
    """Recombine in memory: read the runs, chain their fragments, build the report (no files)."""
    runs = order_runs([Path(p) for p in run_dirs])
    tables = [read_sessions(run) for run in runs]
    # one contiguous copy of the sessions while they are chained: chain_sessions combines
    # the chunks, and the chunked tables kept alive beside it were a second copy (1.5 GB
    # of the peak at 5.2 M sessions)
    sessions = (pa.concat_tables(tables) if tables else empty_sessions()).combine_chunks()
    del tables
    overlaps = OverlapCheck()
    overlaps.count(sessions)
    overlaps.add(twin_counts(sessions, runs))
    overlaps.note(runs)
    chains = chain_sessions(sessions, runs)
    report = build_report(runs, chains)
    return RecombineResult(runs, (chains.conversations, chains.fragments), report)


def recombine_runs(
    run_dirs: Sequence[Path],
    out_dir: Path,
    *,
    force: bool = False,
    bucket_sessions: int | None = None,
) -> RecombineResult:
    """Recombine the runs and write the tables, the report and the timeline into `out_dir`,
    `bucket_sessions` sessions chained at a time (partitioned.py): the tables are those
    `recombine_tables` builds, byte for byte, and never held whole (its work files lie in
    a hidden directory in `out_dir` while it runs). `bucket_sessions` None: the default."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force=force)
    runs = order_runs([Path(p) for p in run_dirs])
    files = {name: out_dir / name for name in RECOMBINE_FILES}
    with made_directory(out_dir), ExitStack() as stack:
        # written aside, renamed when whole
        staged = {
            name: stack.enter_context(staged_file(files[name]))
            for name in (RECOMBINED_FILE, FRAGMENTS_FILE)
        }
        report = recombine_partitioned(
            runs,
            out_dir,
            staged[RECOMBINED_FILE],
            staged[FRAGMENTS_FILE],
            bucket_sessions=bucket_sessions,
        )
        check_out_dir(out_dir, force=force)  # again: time has passed
        for name, path in staged.items():
            os.replace(path, files[name])
        result = RecombineResult(runs, None, report)
        _write_report(result, out_dir, files)
    return result


def check_out_dir(out_dir: Path, *, force: bool = False) -> None:
    """Refuse an `out_dir` that is a file, or that holds a recombine output without `force`:
    before the work, so that a refusal costs nothing."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a directory")
    existing = [name for name in RECOMBINE_FILES if (out_dir / name).exists()]
    if existing and not force:
        raise UsageError(
            f"{out_dir} already holds {', '.join(existing)}; use --force to replace them"
        )


def write_recombined(
    result: RecombineResult, out_dir: Path, *, force: bool = False
) -> RecombineResult:
    """Write what `recombine_tables` found into `out_dir` (checked again: time has passed)."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force=force)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / name for name in RECOMBINE_FILES}
    write_atomically(files[RECOMBINED_FILE], lambda p: write_parquet(result.conversations, p))
    write_atomically(files[FRAGMENTS_FILE], lambda p: write_parquet(result.fragments, p))
    return _write_report(result, out_dir, files)


def _write_report(
    result: RecombineResult, out_dir: Path, files: dict[str, Path]
) -> RecombineResult:
    write_atomically(files[TIMELINE_PNG], lambda p: write_timeline(result.report, p))
    result.report["figure"] = TIMELINE_PNG
    write_atomically(
        files[REPORT_JSON], lambda p: p.write_text(render_json(result.report), encoding="utf-8")
    )
    write_atomically(
        files[REPORT_MD], lambda p: p.write_text(render_markdown(result.report), encoding="utf-8")
    )
    result.out_dir = out_dir
    result.files = files
    return result


def move_recombined(
    result: RecombineResult, out_dir: Path, *, force: bool = False
) -> RecombineResult:
    """Move what `recombine_runs` wrote into `out_dir`, a file at a time: a rename each,
    the staging directory lying in `out_dir` (the CLI's) or on its filesystem."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force=force)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / name for name in RECOMBINE_FILES}
    try:
        with held():  # a signal waits: the five files go in together
            for name, path in files.items():
                os.replace(result.files[name], path)
    except Interrupted as stop:
        stop.kept.append(out_dir)
        raise
    result.out_dir = out_dir
    result.files = files
    return result


def load_fragments(source: RecombineResult | Path | Sequence[Path]) -> pa.Table:
    """The fragments table from a result, a recombine output directory, or run directories."""
    if isinstance(source, RecombineResult):
        return source.fragments
    if isinstance(source, (str, Path)):
        path = Path(source)
        if (path / FRAGMENTS_FILE).is_file():
            return read_parquet(path / FRAGMENTS_FILE)
        return recombine_tables([path]).fragments
    return recombine_tables([Path(p) for p in source]).fragments


@contextmanager
def recombined(source: RecombineResult | Path | Sequence[Path]) -> Iterator[RecombineResult]:
    """`source` itself, or its run directories recombined a bucket at a time into a
    temporary directory (under TMPDIR) for the block: what the exports and "Find Session
    Fragments" read, given runs, without holding every session."""
    if isinstance(source, RecombineResult):
        yield source
        return
    paths = [Path(source)] if isinstance(source, (str, Path)) else [Path(p) for p in source]
    with owned_directory(None, ".recombine.", ".partial") as directory:
        yield recombine_runs(paths, directory)


def _named(
    source: RecombineResult | Path | Sequence[Path], ids: Sequence[str]
) -> tuple[pa.Table, pa.Table]:
    """(the fragments `ids` name, as session or conversation ids; every fragment of their
    conversations), in table order. What `recombine_runs` wrote, for a result of it or for
    run directories, is searched a column at a time, never read whole."""
    wanted = pa.array(sorted(set(ids)), pa.string())
    if not isinstance(source, RecombineResult) and not (
        isinstance(source, (str, Path)) and (Path(source) / FRAGMENTS_FILE).is_file()
    ):
        with recombined(source) as result:
            return _named(result, ids)
    if isinstance(source, RecombineResult) and source.held is None:
        rows = RowsByPosition(source.files[FRAGMENTS_FILE])
        matched = rows.take(rows.where(wanted, "session_id", "conversation_id"))
        # (pc.unique gives an Array, of a chunked one too; the stubs say what it was given)
        conversations = cast("pa.Array[Any]", pc.unique(matched.column("conversation_id")))
        return matched, rows.take(rows.where(conversations, "conversation_id"))
    fragments = load_fragments(source)
    matched = fragments.filter(
        pc.or_(
            pc.is_in(fragments.column("session_id"), value_set=wanted),
            pc.is_in(fragments.column("conversation_id"), value_set=wanted),
        )
    )
    conversations = cast("pa.Array[Any]", pc.unique(matched.column("conversation_id")))
    return matched, fragments.filter(
        pc.is_in(fragments.column("conversation_id"), value_set=conversations)
    )


def find_fragments(
    source: RecombineResult | Path | Sequence[Path], session_id: str
) -> pd.DataFrame:
    """Every fragment of the conversation that `session_id` (any fragment, or the
    conversation id) belongs to, in order: "Find Session Fragments"."""
    matched, rows = _named(source, [session_id])
    if matched.num_rows == 0:
        raise UsageError(f"no session or conversation {session_id!r} in these runs")
    frame = rows.to_pandas()
    return frame.sort_values("fragment_index", kind="stable").reset_index(drop=True)


def conversation_sessions(
    source: RecombineResult | Path | Sequence[Path], ids: Sequence[str]
) -> pa.Table:
    """Fragments (run_dir, session_id, conversation_id) of the conversations named by `ids`
    (conversation ids or any of their fragments' session ids)."""
    if not ids:
        raise UsageError("name at least one conversation or session id")
    matched, rows = _named(source, ids)
    known = set(matched.column("session_id").to_pylist()) | set(
        matched.column("conversation_id").to_pylist()
    )
    unknown = [i for i in sorted(set(ids)) if i not in known]
    if unknown:
        raise UsageError(
            f"no session or conversation {', '.join(map(repr, unknown))} in these runs"
        )
    return rows


SAME_ENDPOINTS_COLUMNS = [
    "conversation_id",
    "first_seen",
    "last_seen",
    "fragment_count",
    "state",
    "close_reason",
    "ab_bytes",
    "ba_bytes",
]


def same_endpoints(result: RecombineResult, conversation_id: str) -> pd.DataFrame:
    """The other conversations of the same exporter, protocol, addresses and ports (either
    way round), in table order: what the seed's Find Session Fragments shows, a query of
    the selected session's addresses and ports, where the fragments alone are what recombine
    joined (a connection's FIN after an idle gap is a conversation of its own, and a
    responder looking for the rest of it was shown one fragment: a review). What
    `recombine_runs` wrote is searched a column at a time, and only the rows of the two
    addresses are read whole (it read every conversation: 230 MB more for 2 M, a review)."""
    keys = ["exporter", "protocol_number", "ip_a", "port_a", "ip_b", "port_b"]
    wanted = [*keys, *SAME_ENDPOINTS_COLUMNS]
    if result.held is not None:
        held = result.conversations

        def where(values: pa.Array[Any], column: str) -> np.ndarray:
            hit = pc.is_in(held.column(column), value_set=values)
            return np.flatnonzero(np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool))

        def take(rows: np.ndarray) -> pa.Table:
            return held.take(pa.array(rows, pa.int64()))

    else:
        written = RowsByPosition(result.files[RECOMBINED_FILE])

        def where(values: pa.Array[Any], column: str) -> np.ndarray:
            return written.where(values, column)

        take = written.take
    this = where(pa.array([conversation_id], pa.string()), "conversation_id")
    if len(this) == 0:
        return take(this).select(SAME_ENDPOINTS_COLUMNS).to_pandas()
    [me] = take(this[:1]).select(keys).to_pylist()
    addresses = pa.array(sorted({me["ip_a"], me["ip_b"]}), pa.string())
    near = np.intersect1d(where(addresses, "ip_a"), where(addresses, "ip_b"))
    table = take(near).select(wanted)
    frame = table.select(keys).to_pandas()

    def at(side: str, other: str) -> npt.NDArray[np.bool_]:
        same_ip = (frame[f"ip_{side}"] == me[f"ip_{other}"]).to_numpy(dtype=bool)
        same_port = (frame[f"port_{side}"] == me[f"port_{other}"]).to_numpy(dtype=bool)
        both: npt.NDArray[np.bool_] = same_ip & same_port
        return both

    mask = (
        (frame["exporter"] == me["exporter"]).to_numpy(dtype=bool)
        & (frame["protocol_number"] == me["protocol_number"]).to_numpy(dtype=bool)
        & ((at("a", "a") & at("b", "b")) | (at("a", "b") & at("b", "a")))
        & (table.column("conversation_id").to_numpy(zero_copy_only=False) != conversation_id)
    )
    rows = pa.array(np.flatnonzero(mask), pa.int64())
    return table.select(SAME_ENDPOINTS_COLUMNS).take(rows).to_pandas()


def split_conversation_ids(result: RecombineResult) -> list[str]:
    """The ids of the conversations of more than one fragment, in table order."""
    if result.held is not None:
        table = result.conversations
    else:
        table = read_parquet(
            result.files[RECOMBINED_FILE], columns=["conversation_id", "fragment_count"]
        )
    # (pc.greater takes a Python scalar, as pa.scalar makes it; the stubs Arrow ones only)
    split = table.filter(pc.greater(table.column("fragment_count"), 1))  # type: ignore[call-overload]
    return [str(i) for i in split.column("conversation_id").to_pylist()]


__all__ = [
    "FRAGMENTS_SCHEMA",
    "RECOMBINED_SCHEMA",
    "RecombineResult",
    "conversation_sessions",
    "find_fragments",
    "load_fragments",
    "move_recombined",
    "recombine_runs",
    "recombine_tables",
    "recombined",
    "same_endpoints",
    "split_conversation_ids",
]
