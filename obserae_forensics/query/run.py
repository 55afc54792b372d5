"""Load `sessionize` run directories into pandas for notebooks and the CLI's queries.

A run directory holds sessions.parquet, flows.parquet, session_matches.parquet (only with a
Flow Matrix), sessions_consolidated.parquet, exporters.parquet and manifest.json. `load`
turns them into DataFrames: strings, lists and nullable integers become Arrow-backed
columns (no object columns, no float NaN standing in for a missing ICMP code), times stay
`datetime64[us, UTC]` so comparisons and matplotlib work on them directly.

The surprising thing: "the last hour" means the last hour of the *data*, not of the wall
clock. A capture examined a week after the incident has nothing in the wall clock's last
hour, so `Run.data_end` (the manifest's `data_window.end`, the largest record `last_seen`)
anchors every relative window.

Several runs load as one: rows are concatenated in data-window order with a `run` column
(the run's place in that order), and the same session id appearing twice is refused
because it means the same capture was loaded twice and every count would double.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..matching.cartography import Cartography, load_cartography
from ..matching.consolidate import SESSIONS_CONSOLIDATED_SCHEMA
from ..matching.flow_matrix import FlowMatrix, load_flow_matrix
from ..matching.match import SESSION_MATCHES_SCHEMA, match_sessions, matched_rules_column
from ..recombine import recombine_tables
from ..recombine.runs import first_arrival, run_order_key
from ..schema import FLOWS_SCHEMA, SESSIONS_SCHEMA, text_address_schema, with_added_columns
from ..tables.layout import (
    CONSOLIDATED_FILE,
    EXPORTERS_FILE,
    FLOWS_FILE,
    FRAGMENTS_FILE,
    MATCHES_FILE,
    RECOMBINED_FILE,
    SESSIONS_FILE,
)
from ..tables.manifest import changed_tables, read_manifest, sha256_file
from ..tables.parquet import check_columns, read_parquet
from ..times import SHOWABLE_MAX_US, SHOWABLE_MIN_US

TABLE_FILES = {
    "sessions": SESSIONS_FILE,
    "flows": FLOWS_FILE,
    "matches": MATCHES_FILE,
    "consolidated": CONSOLIDATED_FILE,
    "exporters": EXPORTERS_FILE,
}
RECOMBINED_FILES = (RECOMBINED_FILE, FRAGMENTS_FILE)
# columns sessions_consolidated gained in version 0.2.0, with its counters' rule
EARLIER_CONSOLIDATED_LACKS = ("cs_sampling_rate", "sc_sampling_rate", "max_sampling_rate")


# each table as sessionize writes it: load refuses a table lacking one of its columns or
# holding it in another type family (an edited table), naming it, rather than letting a
# filter, the drawer or a plot fail later on a KeyError; a column added since an earlier
# version wrote the table is filled in first (schema.with_added_columns)
TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "sessions": SESSIONS_SCHEMA,
    "flows": text_address_schema(FLOWS_SCHEMA),
    "matches": SESSION_MATCHES_SCHEMA,
    "consolidated": SESSIONS_CONSOLIDATED_SCHEMA,
}
# Columns match_sessions reads; rematch sends only these to Arrow.
MATCH_INPUT_COLUMNS = (
    "session_id",
    "client_ip",
    "server_ip",
    "state",
    "protocol_number",
    "server_port",
    "opened_at",
    "last_seen_at",
)


@dataclass(frozen=True)
class Run:
    """The tables of one or more sessionize runs, as DataFrames, with their manifests.

    `matches` is None when the run was made without a Flow Matrix (then "unmatched" has no
    meaning until `rematch` supplies one); `consolidated` and `exporters` are None when the
    directory lacks the table. `recombined` (one row per conversation) and `fragments` (one
    row per session: its conversation and place in it) come from recombine, across all the
    loaded runs; None when load was told not to recombine.
    """

    paths: tuple[Path, ...]
    manifests: tuple[dict[str, Any], ...]
    sessions: pd.DataFrame
    flows: pd.DataFrame
    matches: pd.DataFrame | None
    consolidated: pd.DataFrame | None
    exporters: pd.DataFrame | None
    recombined: pd.DataFrame | None = None
    fragments: pd.DataFrame | None = None
    cartography: Cartography = field(default_factory=Cartography.builtin, repr=False)
    flow_matrix: FlowMatrix | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()  # what load had to assume, e.g. a Cartography file not found

    @property
    def manifest(self) -> dict[str, Any]:
        """The run's manifest; for several runs, each one under "runs" and the joint window."""
        if len(self.manifests) == 1:
            return self.manifests[0]
        return {
            "runs": list(self.manifests),
            "data_window": {"start": _iso(self.data_start), "end": _iso(self.data_end)},
        }

    @property
    def data_start(self) -> pd.Timestamp | None:
        starts = [_window_time(m, "start") for m in self.manifests]
        known = [t for t in starts if t is not None]
        return min(known) if known else None

    @property
    def data_end(self) -> pd.Timestamp | None:
        """The largest record `last_seen` of the data: what `last=` windows count back from."""
        ends = [_window_time(m, "end") for m in self.manifests]
        known = [t for t in ends if t is not None]
        return max(known) if known else None


def load(
    run_dirs: Path | str | Sequence[Path | str],
    *,
    cartography: Path | str | Cartography | None = None,
    flow_matrix: Path | str | FlowMatrix | None = None,
    recombine: bool | Path | str = True,
) -> Run:
    """Read one run directory, or several as one Run.

    Args:
        cartography: names for entity filters. Default: the file the manifest names if it
            can be found, else the built-in names (internal4, internet4, ...) and a note.
        flow_matrix: kept on the Run for rule descriptions (default: the manifest's); the
            matches are the run's own. Use `rematch` to apply a different Flow Matrix.
        recombine: True chains the fragments of the loaded runs in memory (recombine's
            `recombine_tables`); a path reads a `recombine --out` directory instead; False
            skips it (the drawer then finds fragments by conversation_id within a run).
    """
    paths = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(p) for p in run_dirs]
    if not paths:
        raise UsageError("load needs at least one run directory")
    manifests = [read_manifest(path) for path in paths]
    order = sorted(range(len(paths)), key=lambda i: _order_key(manifests[i], paths[i]))
    paths = [paths[i] for i in order]
    manifests = [manifests[i] for i in order]
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            raise UsageError(f"{path}: the same run directory was given twice")
        seen.add(path.resolve())

    frames: dict[str, pd.DataFrame | None] = {}
    for name, file_name in TABLE_FILES.items():
        parts = [
            _read_table(path / file_name, index, TABLE_SCHEMAS.get(name))
            for index, path in enumerate(paths)
        ]
        present = [p for p in parts if p is not None]
        if name in ("sessions", "flows") and len(present) < len(parts):
            missing = paths[[p is None for p in parts].index(True)] / file_name
            raise UsageError(f"{missing}: missing; is this a sessionize output directory?")
        frames[name] = _concat(present, multiple=len(paths) > 1) if present else None
    sessions = frames["sessions"]
    assert sessions is not None and frames["flows"] is not None
    duplicated = sessions["session_id"].duplicated()
    if duplicated.any():
        first = sessions.loc[duplicated, "session_id"].iloc[0]
        raise UsageError(
            f"session {first} appears in more than one of the runs given to load "
            "(the same capture loaded twice?)"
        )

    _check_flow_counts(paths, sessions, frames["flows"])
    earlier_consolidation = frames["consolidated"] is not None and _consolidated_rates(
        frames["consolidated"], sessions
    )

    recombined, fragments = _recombination(recombine, paths)
    if fragments is not None and not isinstance(recombine, bool):
        _check_recombination(Path(recombine), sessions, fragments)
    # the tables are read whole, so each is hashed against what its manifest cites
    notes: list[str] = [
        f"{path}: {text}"
        for path, manifest in zip(paths, manifests, strict=True)
        for text in changed_tables(path, manifest, TABLE_FILES.values())
    ]
    chart = _cartography(cartography, manifests[0], paths[0], notes)
    matrix = _flow_matrix(flow_matrix, manifests[0], paths[0], chart, notes)
    if earlier_consolidation:
        notes.append(
            "sessions_consolidated was written by an earlier version: each direction's "
            "counters are the largest exporter total, a sampled estimate where an exporter "
            "beside it counted less; cs_/sc_sampling_rate give the largest rate among the "
            "members (sessionize again for the counters of the exporter of the lowest rate)"
        )
    _note_mixed_runs(manifests, paths, notes)
    _note_unshowable_end(manifests, notes)
    return Run(
        paths=tuple(paths),
        manifests=tuple(manifests),
        sessions=sessions,
        flows=frames["flows"],
        matches=frames["matches"],
        consolidated=frames["consolidated"],
        exporters=frames["exporters"],
        recombined=recombined,
        fragments=fragments,
        cartography=chart,
        flow_matrix=matrix,
        notes=tuple(notes),
    )


def rematch(run: Run, flow_matrix: Path | str | FlowMatrix) -> Run:
    """The same run with matches and `matched_rules` recomputed against another Flow Matrix.

    This is the seed's "add it to the Flow Matrix, look at what remains" loop without a new
    sessionize: the sessions are final, only the rules changed. Names in the Flow Matrix
    resolve against the run's Cartography.
    """
    matrix = (
        flow_matrix
        if isinstance(flow_matrix, FlowMatrix)
        else load_flow_matrix(Path(flow_matrix), run.cartography)
    )
    columns = {
        name: pa.array(run.sessions[name]).cast(SESSIONS_SCHEMA.field(name).type)
        for name in MATCH_INPUT_COLUMNS
    }
    table = pa.table(columns)
    matches = match_sessions(table, matrix)
    rules = matched_rules_column(table, matches)
    sessions = run.sessions.copy()
    sessions["matched_rules"] = pd.Series(
        pd.arrays.ArrowExtensionArray(rules), index=sessions.index
    )
    frame = to_frame(matches)
    if "run" in run.sessions.columns:
        run_of = pd.Series(run.sessions["run"].to_numpy(), index=run.sessions["session_id"])
        frame["run"] = run_of.loc[frame["session_id"]].to_numpy()
    return replace(run, sessions=sessions, matches=frame, flow_matrix=matrix)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow table -> DataFrame: Arrow-backed strings, lists and nullable integers.

    A time outside years 1-9999 (a damaged record's time field, which the tables keep) is
    NaT here, with a warning: pandas holds it but cannot print it, and showing the frame,
    the drawer or a plot raised deep in pandas."""
    table = _showable_times(table)
    frame = table.to_pandas(types_mapper=_arrow_dtype)
    for position, arrow_field in enumerate(table.schema):
        kind = arrow_field.type
        if pa.types.is_integer(kind) and table.column(position).null_count:
            frame[arrow_field.name] = pd.Series(
                pd.arrays.ArrowExtensionArray(table.column(position)), index=frame.index
            )
    return frame


def _showable_times(table: pa.Table) -> pa.Table:
    hidden: dict[str, int] = {}
    for position, arrow_field in enumerate(table.schema):
        if not pa.types.is_timestamp(arrow_field.type) or arrow_field.type.unit == "ns":
            continue  # nanoseconds reach years 1677-2262 only: always showable
        column = table.column(position)
        scale = {"s": 1_000_000, "ms": 1_000, "us": 1}[arrow_field.type.unit]
        raw = column.cast(pa.int64())
        # (pyarrow-stubs take no Python scalar in a compute function, nor booleans in sum;
        # pyarrow does)
        outside = pc.or_(
            pc.less(raw, SHOWABLE_MIN_US // scale),  # type: ignore[call-overload]
            pc.greater(raw, SHOWABLE_MAX_US // scale),  # type: ignore[call-overload]
        )
        count: int = pc.sum(outside).as_py() or 0  # type: ignore[arg-type]
        if count:
            hidden[arrow_field.name] = count
            table = table.set_column(
                position, arrow_field, pc.if_else(outside, pa.scalar(None, column.type), column)
            )
    if hidden:
        warnings.warn(
            "time(s) outside years 1-9999, shown as NaT (damaged time fields; the "
            "Parquet tables keep them): "
            + ", ".join(f"{count} in {name}" for name, count in hidden.items()),
            stacklevel=3,
        )
    return table


def _arrow_dtype(kind: pa.DataType) -> Any:
    """Arrow type -> pandas dtype for to_pandas; None keeps pandas' default (numbers, times)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pd.StringDtype("pyarrow")
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_struct(kind):
        return pd.ArrowDtype(kind)
    return None


def _read_table(path: Path, index: int, schema: pa.Schema | None = None) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    table = read_parquet(path)
    if schema is not None:
        table = with_added_columns(table, schema)
        check_columns(
            path,
            table,
            dict(zip(schema.names, schema.types, strict=True)),
            what=f"{path.stem} table",
        )
    frame = to_frame(table)
    frame["run"] = np.full(len(frame), index, dtype=np.uint32)
    return frame


def _consolidated_rates(consolidated: pd.DataFrame, sessions: pd.DataFrame) -> bool:
    """Fill the rates a table of an earlier version lacks (0 as read; a run of an earlier
    version was refused for the columns it lacked): max_sampling_rate, the largest of its
    members' rates as sessionize now writes it, and, not knowing which exporter's counters
    each direction shows, that rate for each direction that counted something (0 for one
    that counted nothing, as now written). True when it filled them."""
    unknown = consolidated["max_sampling_rate"].to_numpy() == 0
    if not unknown.any():
        return False
    rates = pd.Series(
        sessions["sampling_rate"].to_numpy(dtype=np.int64).clip(min=1),
        index=sessions["session_id"].astype(object).to_numpy(),
    )
    members = consolidated.loc[unknown, "session_ids"].explode()
    found = members.map(rates).fillna(1).astype(np.int64)
    largest = found.groupby(level=0).max()
    for name in EARLIER_CONSOLIDATED_LACKS:
        consolidated.loc[largest.index, name] = largest.to_numpy().astype(np.uint32)
    for side in ("cs", "sc"):  # 0 where nobody counted anything that way, as now written
        silent = (consolidated[f"{side}_bytes"] == 0) & (consolidated[f"{side}_packets"] == 0)
        consolidated.loc[silent & unknown, f"{side}_sampling_rate"] = 0
    return True


def _check_flow_counts(paths: list[Path], sessions: pd.DataFrame, flows: pd.DataFrame) -> None:
    """Each run's flows add up to its sessions' flow_count (as recombine's exports check): a
    flows table cut or edited, or from another run, loaded beside the sessions and the
    drawer showed "2 flow records" over one row."""
    if "run" in sessions.columns:
        expected = sessions.groupby("run")["flow_count"].sum().to_dict()
        found = flows.groupby("run").size().to_dict()
    else:
        expected = {0: sessions["flow_count"].sum()}
        found = {0: len(flows)}
    for index, path in enumerate(paths):
        want, have = int(expected.get(index, 0)), int(found.get(index, 0))
        if want != have:
            raise UsageError(
                f"{path / FLOWS_FILE} holds {have} flow record(s), the sessions' "
                f"flow_count says {want}: the flows table does not belong to "
                "this sessions table (edited, cut, or from another run)"
            )


def _concat(frames: list[pd.DataFrame], *, multiple: bool) -> pd.DataFrame:
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if not multiple:
        frame = frame.drop(columns="run")
    return frame


def _recombination(
    recombine: bool | Path | str, paths: list[Path]
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(conversations, fragments) from recombine, or (None, None) when not wanted."""
    if recombine is False:
        return None, None
    if recombine is True:
        result = recombine_tables(paths)
        return to_frame(result.conversations), to_frame(result.fragments)
    directory = Path(recombine)
    frames: list[pd.DataFrame] = []
    for name in RECOMBINED_FILES:
        frame = _read_table(directory / name, 0)
        if frame is None:
            raise UsageError(f"{directory}: no {name}; is this a recombine output directory?")
        frames.append(frame.drop(columns="run"))
    return frames[0], frames[1]


def _check_recombination(directory: Path, sessions: pd.DataFrame, fragments: pd.DataFrame) -> None:
    """A `recombine --out` directory must be of these runs: one of other runs loaded
    beside them without a word, its conversations next to unrelated sessions (found by an
    audit). Every fragment is a session of theirs, and every session a fragment."""
    loaded = set(sessions["session_id"].astype(str))
    named = set(fragments["session_id"].astype(str))
    foreign, missing = len(named - loaded), len(loaded - named)
    if foreign or missing:
        raise UsageError(
            f"{directory} was recombined from other runs: {foreign} of its fragment(s) are "
            f"no session of the runs loaded, and {missing} of their session(s) are in none "
            "of its conversations (recombine these runs, or load the runs it was made from)"
        )


def _note_mixed_runs(manifests: list[dict[str, Any]], paths: list[Path], notes: list[str]) -> None:
    """What loading runs together cannot give, said (found by an audit): the Cartography
    and Flow Matrix are the first run's, "unmatched" means nothing for a run made without a
    Flow Matrix, and each run's sessions_consolidated groups its own exporters only."""
    if len(paths) < 2:
        return
    files = {
        key: [
            (m.get(key) or {}).get("sha256") if isinstance(m.get(key), dict) else None
            for m in manifests
        ]
        for key in ("cartography", "flow_matrix")
    }
    for key, what in (("cartography", "Cartography"), ("flow_matrix", "Flow Matrix")):
        if len(set(files[key])) > 1:
            notes.append(
                f"the runs were made with different {what} files (or some without "
                f"one); the first run's ({paths[0]}) is the one loaded"
            )
    without = [
        str(path)
        for path, digest in zip(paths, files["flow_matrix"], strict=True)
        if digest is None
    ]
    if without and len(without) < len(paths):
        notes.append(
            f"{', '.join(without)} ran without --flow-matrix: its sessions have no "
            "matches, and `unmatched` counts them as no rule accounted for"
        )
    notes.append(
        "sessions are each run's own: a conversation crossing the cut between two runs is a "
        "session in each, the earlier half_open or active at the cut, so a filter of "
        "sessions counts it in each run's state (scans, unmatched); `recombined` holds one "
        "row per conversation, its state settled across the runs, and the filters take it "
        "too (`SessionQuery().last(3600).unmatched().apply(run, run.recombined)`)"
    )
    notes.append(
        "sessions_consolidated is each run's own: sessions of one conversation seen "
        "by exporters in different runs are not grouped across them (sessionize "
        "their inputs together for that)"
    )


def _note_unshowable_end(manifests: Sequence[dict[str, Any]], notes: list[str]) -> None:
    """Say when the data's end is a time past year 9999: a damaged record's, which `last=`
    windows count back from (an audit: last(3600) held none of the run's real sessions,
    with only a NaT warning to go by)."""
    ends = [_window_time(m, "end") for m in manifests]
    late = max((t for t in ends if t is not None), default=None)
    if late is not None and late.year > 9999:
        notes.append(
            f"the data ends in year {late.year}, a time past year 9999 (a damaged "
            "record's): last= windows count back from there and hold none of the "
            "other sessions; use window(start, end)"
        )


def _window_time(manifest: dict[str, Any], which: str) -> pd.Timestamp | None:
    window = manifest.get("data_window")
    if not isinstance(window, dict):
        return None
    if window.get(which) is None:
        # the text is null past year 9999 (a damaged record's time), the µs are kept: last=
        # counted back from nothing and failed on such a run (found by an audit)
        micros = window.get(f"{which}_us")
        if not isinstance(micros, int) or isinstance(micros, bool):
            return None
        try:
            return pd.Timestamp(np.datetime64(micros, "us")).tz_localize("UTC")
        except (OverflowError, ValueError):
            return None
    try:
        moment = pd.Timestamp(window[which])
    except ValueError as exc:
        raise UsageError(f"manifest data_window.{which}: not a time: {window[which]!r}") from exc
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def _order_key(manifest: dict[str, Any], path: Path) -> tuple[int, int, int, str]:
    """recombine's order of runs (runs.run_order_key), so that a Run's `run` numbers and
    its fragments' `run_index` name the same runs (a review: they differed once recombine
    ordered by first arrival)."""
    start = _window_time(manifest, "start")
    end = _window_time(manifest, "end")
    # µs, not `.value` (ns): a window at year 9999 (a damaged record's time) overflowed it
    return run_order_key(
        first_arrival(path),
        None if start is None else int(start.as_unit("us").asm8.astype(np.int64)),
        None if end is None else int(end.as_unit("us").asm8.astype(np.int64)),
        str(path),
    )


def _cartography(
    given: Path | str | Cartography | None,
    manifest: dict[str, Any],
    run_dir: Path,
    notes: list[str],
) -> Cartography:
    if isinstance(given, Cartography):
        return given
    if given is not None:
        return load_cartography(Path(given))
    named = _named_file(manifest, "cartography", run_dir)
    if isinstance(named, Path):
        _note_changed(manifest, "cartography", "Cartography", named, notes)
        return load_cartography(named)
    if named:
        notes.append(
            f"the manifest names the Cartography {named}, which is not there; "
            "entity filters know only the built-in names (pass cartography=)"
        )
    return Cartography.builtin()


def _flow_matrix(
    given: Path | str | FlowMatrix | None,
    manifest: dict[str, Any],
    run_dir: Path,
    chart: Cartography,
    notes: list[str],
) -> FlowMatrix | None:
    if isinstance(given, FlowMatrix):
        return given
    if given is not None:
        return load_flow_matrix(Path(given), chart)
    named = _named_file(manifest, "flow_matrix", run_dir)
    if isinstance(named, Path):
        _note_changed(manifest, "flow_matrix", "Flow Matrix", named, notes)
        try:
            return load_flow_matrix(named, chart)
        except UsageError as exc:
            notes.append(
                f"the run's Flow Matrix no longer loads ({exc}); rule descriptions "
                "are not shown (pass flow_matrix=)"
            )
            return None
    if named:
        notes.append(
            f"the manifest names the Flow Matrix {named}, which is not there; rule "
            "descriptions are not shown (pass flow_matrix=)"
        )
    return None


def _note_changed(
    manifest: dict[str, Any], key: str, what: str, path: Path, notes: list[str]
) -> None:
    """A rules file edited since the run is used as it is now, and said (found by an audit:
    an entity filter found no session of a name the run's matches were made with)."""
    named = manifest.get(key)
    recorded = named.get("sha256") if isinstance(named, dict) else None
    if recorded and sha256_file(path) != recorded:
        notes.append(
            f"the {what} {path} changed since the run (its SHA-256 differs from the "
            "manifest's): filters use it as it is now, the run's server sides and "
            "matches were made with the earlier one"
        )


def _named_file(manifest: dict[str, Any], key: str, run_dir: Path) -> Path | str | None:
    """The manifest's file for `key`: a Path when found, the text when not, None if unset.

    The manifest records the path as given and its absolute form; when the absolute file is
    gone (run directory moved to another machine), the relative path is tried from the
    current directory and the ancestors of the run directory.
    """
    named = manifest.get(key)
    if isinstance(named, dict):  # {"path", "absolute", "sha256"}
        absolute = Path(str(named.get("absolute", "")))
        if absolute.is_absolute() and absolute.is_file():
            return absolute
        named = named.get("path")
    if not isinstance(named, str) or not named:
        return None
    candidate = Path(named)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else named
    for base in (Path.cwd(), *run_dir.resolve().parents):
        if (base / candidate).is_file():
            return base / candidate
    return named


def _iso(moment: pd.Timestamp | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
