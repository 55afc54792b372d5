"""Export everything behind recombined conversations: their flow records, or their datagrams.

`export_flows` writes every flow record of the named conversations (all fragments, all runs)
in time order, as Parquet or CSV by the file's extension. `export_pcap` reads back, by
provenance (`source_file` + `source_offset`), the export datagrams that carried those records
and writes them as one capture in capture order: PCAP (libpcap savefile) when every frame has
the same link type, else pcapng (draft-ietf-opsawg-pcapng) with one interface per link type,
because a PCAP file has exactly one link type in its header.

The surprising thing: one datagram carries many records (up to 30 in v5, more in v9/IPFIX),
often of different conversations, so datagrams are deduplicated by (file, offset) and the
export holds other conversations' records too; and nfcapd files have no datagrams at all:
their records are written as flows instead, and the result says so.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..addresses import address_matrix, address_texts
from ..errors import InputError, MalformedInput, UsageError
from ..readers import input_format, settled
from ..readers.exports import ExportDecoder
from ..readers.packed import packing_of_path, unpacked_head
from ..readers.pcap import (
    FRAGMENT_TIMEOUT_NS,
    Frame,
    covers,
    fragment_of,
    iter_datagrams,
    iter_frames,
    over_connection,
    read_datagram_frames,
    tail_fragments,
)
from ..report import RunReport
from ..schema import FLOW_ADDRESS_COLUMNS, TIMESTAMP
from ..tables.evidence import check_output_file, run_files
from ..tables.layout import FLOWS_FILE
from ..tables.manifest import sha256_file
from ..tables.parquet import (
    check_columns,
    read_parquet,
    read_parquet_schema,
    write_atomically,
    write_parquet,
)
from .context import COMPARED, differing, record_table, template_context
from .conversations import RecombineResult, conversation_sessions, recombined
from .runs import Run, order_runs

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
FLOW_ORDER = ("first_seen", "last_seen", "arrival", "source_file", "source_frame", "record_index")
PCAP_SNAPLEN = 262_144


@dataclass
class PcapExport:
    """What export_pcap wrote, and why anything behind the conversations is not in it."""

    path: Path | None  # None when no record had a datagram (nfcapd inputs only)
    format: str = ""  # "pcap" or "pcapng"
    datagrams: int = 0  # frames written
    records: int = 0  # flow records those frames carry for the conversations
    link_types: list[int] = field(default_factory=list)
    # datagrams added beside the conversations' own, for what reading them needs: the
    # templates, the options in force, where a port began (recombine/context.py)
    template_datagrams: int = 0
    # the records of the conversations decoded again from the export alone (with its
    # templates), and those that came out otherwise than in the run
    checked_records: int = 0
    differing_records: int = 0
    # every record the capture decodes to alone: the conversations' and the others their
    # datagrams carry (a datagram holds many conversations' records)
    decoded_records: int = 0
    nfcapd_records: int = 0  # records that came from nfcapd files: no datagram exists
    tcp_records: int = 0  # records of IPFIX over TCP or SCTP: no datagram of their own
    flows_path: Path | None = None  # where those records were written instead
    notes: list[str] = field(default_factory=list)
    report: RunReport = field(default_factory=RunReport)  # frames that could not be read back


# what an export reads of each flow row: which conversation, and where its bytes are
PROVENANCE_TYPES: dict[str, pa.DataType] = {
    "session_id": pa.string(),
    "first_seen": TIMESTAMP,
    "arrival": TIMESTAMP,
    "source_file": pa.string(),
    "source_offset": pa.uint64(),
}
# what a capture export reads of each flow row beside those and FLOW_ORDER: the values
# compared once the export is decoded again (context.COMPARED)
PLACED = (*PROVENANCE_TYPES, "record_index", *COMPARED)


def _candidates(run: Run, source_file: str, search: Sequence[Path] = ()) -> list[Path]:
    """Where an input capture of `run` may be: in the directories the user named
    (`search`, `--captures`: by its name, or its path as given under them), where the
    manifest says sessionize found it, as given (absolute, or from here), else beside the
    run directory or its parent (the evidence moved with its runs). Each place once.
    Evidence copied elsewhere (another machine, a case share) was found only through a
    symbolic link or by running from a directory that held it by its relative name."""
    given = Path(source_file)
    places = [given] if given.is_absolute() else [given, run.path / given, run.path.parent / given]
    absolute = run.input_absolute(source_file)
    if absolute is not None:
        places.insert(0, Path(absolute))
    named = [directory / tail for directory in search for tail in _tails(given)]
    return list(dict.fromkeys(named + places))


def _tails(given: Path) -> list[Path]:
    """The path's tails, the longest first: an evidence tree copied whole (day1/x.pcap and
    day2/x.pcap) is found under its root, each file by its own directories."""
    parts = given.parts[1:] if given.is_absolute() else given.parts
    return [Path(*parts[start:]) for start in range(len(parts))]


def _moved_candidates(run: Run, source_file: str) -> list[Path]:
    """Where a capture may be when a case folder moved whole with its runs: the tails of the
    path sessionize read it by (and of where it found it), beside the run directory and its
    parent, those of the manifest's size (a short tail names any file of that name). A case
    copied to a share (/cases/x/day1/c.pcap, the run /cases/x/run, now /mnt/share/x/...)
    was found only with --captures, where a relative path was found."""
    size = run.input_size(source_file)
    if size is None:
        return []
    paths = [Path(source_file)]
    absolute = run.input_absolute(source_file)
    if absolute is not None:
        paths.append(Path(absolute))
    places = [
        root / tail
        for path in paths
        for tail in _tails(path)
        for root in (run.path, run.path.parent)
    ]
    return [
        place for place in dict.fromkeys(places) if place.is_file() and place.stat().st_size == size
    ]


def run_evidence(runs: Sequence[Run], search: Sequence[Path] = ()) -> list[Path]:
    """Every file the runs consist of or were made from (their tables and manifests, their
    input captures wherever they are found, also under `search`, the settings and rule
    files they read): what no export may overwrite."""
    captures = [
        candidate
        for run in runs
        for entry in run.inputs
        for candidate in _candidates(run, str(entry.get("path")), search)
        if candidate.is_file()
    ] + [
        candidate
        for run in runs
        for entry in run.inputs
        for candidate in _moved_candidates(run, str(entry.get("path")))
    ]
    read = [path for run in runs for path in run.read_files if path.is_file()]
    return [*run_files(run.path for run in runs), *captures, *read]


def _runs_of(source: RecombineResult | Sequence[Path]) -> dict[str, Run]:
    runs = (
        source.runs
        if isinstance(source, RecombineResult)
        else order_runs([Path(p) for p in source])
    )
    return {str(run.path): run for run in runs}


def collect_flows(source: RecombineResult | Sequence[Path], ids: Sequence[str]) -> pa.Table:
    """Every flow row of the named conversations, with `conversation_id` and `run_index`,
    in time order (first_seen, then arrival order as the total tie breaker)."""
    with recombined(source) as result:  # run directories: a bucket of keys at a time
        fragments = conversation_sessions(result, ids)
        runs = _runs_of(result)
    return _flow_rows(fragments, runs)


def _flow_rows(
    fragments: pa.Table, runs: dict[str, Run], columns: Sequence[str] | None = None
) -> pa.Table:
    """collect_flows over the conversations' `fragments`; only `columns` of the flows
    tables (and what ordering them reads) when given."""
    parts: list[pa.Table] = []
    for run_dir in sorted(set(cast(list[str], fragments.column("run_dir").to_pylist()))):
        run = runs[run_dir]
        # (compute functions take Python scalars, as pa.scalar makes them; the stubs only
        # Arrow ones)
        mine = fragments.filter(pc.equal(fragments.column("run_dir"), run_dir))  # type: ignore[call-overload]
        session_ids = mine.column("session_id")
        path = run.path / FLOWS_FILE
        if not path.is_file():
            raise UsageError(
                f"{run.path}: no {FLOWS_FILE}; cannot export the flows behind its sessions"
            )
        schema = read_parquet_schema(path)
        check_columns(path, schema, PROVENANCE_TYPES, what="flows table")
        read = (
            None
            if columns is None
            else [
                name
                for name in schema.names
                if name in columns or name in PROVENANCE_TYPES or name in FLOW_ORDER
            ]
        )
        flows = read_parquet(
            path,
            columns=read,
            filters=pc.is_in(pc.field("session_id"), value_set=session_ids.combine_chunks()),
        )
        check_columns(
            path, flows, PROVENANCE_TYPES, what="flows table", non_null=list(PROVENANCE_TYPES)
        )
        expected = pc.sum(mine.column("flow_count")).as_py() or 0
        if expected and flows.num_rows != expected:
            raise UsageError(
                f"{path} holds {flows.num_rows} flow record(s) of these sessions, whose "
                f"flow_count says {expected}: the flows table does not belong to this "
                "sessions table (edited, cut, or from another run)"
            )
        where = pc.index_in(flows.column("session_id"), value_set=session_ids)
        flows = flows.append_column(
            "conversation_id", pc.take(mine.column("conversation_id"), where)
        )
        flows = flows.append_column(
            "run_index", pa.array(np.full(flows.num_rows, run.index, dtype=np.uint32))
        )
        if columns is None:
            flows = _conversation_direction(flows, mine, where)
        parts.append(flows)
    if not parts:
        raise UsageError("the named conversations have no sessions in these runs")
    table = pa.concat_tables(parts, promote_options="permissive")
    names = [name for name in FLOW_ORDER if name in table.column_names] + ["run_index"]
    keys = pa.table([_sortable(table.column(name)) for name in names], names=names)
    order = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in names])
    return table.take(order)


def _conversation_direction(flows: pa.Table, fragments: pa.Table, where: pa.Array[Any]) -> pa.Table:
    """`fragment_index`, and `conversation_direction`: `direction` in the conversation's
    orientation. A flows table's `direction` is its own session's, and a fragment whose
    first record came from the server (`flipped` in recombined_fragments) has it the other
    way round: one conversation's export mixed client and server bytes under one
    direction (a review)."""
    flows = flows.append_column(
        "fragment_index", pc.take(fragments.column("fragment_index"), where)
    )
    flipped = pc.take(fragments.column("flipped"), where)
    direction = _sortable(flows.column("direction"))
    other = pc.if_else(pc.equal(direction, "ab"), "ba", "ab")  # type: ignore[call-overload]
    return flows.append_column("conversation_direction", pc.if_else(flipped, other, direction))


def _sortable(column: pa.ChunkedArray[Any]) -> pa.ChunkedArray[Any]:
    """Arrow sorts no dictionary columns: sort on their text."""
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


def export_flows(
    source: RecombineResult | Sequence[Path], ids: Sequence[str], path: Path, *, force: bool = False
) -> int:
    """Write the flow records of the named conversations to `path` (.parquet or .csv); an
    existing file is replaced only with `force`, and never one the runs consist of."""
    path = Path(path)
    check_flows_target(source, path, force=force)
    table = collect_flows(source, ids)
    write_flow_table(table, path)
    return table.num_rows


def check_flows_target(
    source: RecombineResult | Sequence[Path],
    path: Path,
    *,
    force: bool = False,
    captures: Sequence[Path] = (),
) -> None:
    """Refuse a flows export `path` export_flows would refuse, before anything is written
    (`captures`: directories of source captures, evidence too)."""
    suffix = Path(path).suffix.lower()
    if suffix not in PARQUET_SUFFIXES + CSV_SUFFIXES:
        raise UsageError(f"{path}: flows are exported as .parquet or .csv, not {suffix or '?'}")
    check_output_file(
        Path(path),
        run_evidence(list(_runs_of(source).values()), captures),
        "--export-flows",
        force=force,
    )


def check_pcap_target(
    source: RecombineResult | Sequence[Path],
    path: Path,
    *,
    force: bool = False,
    evidence: Sequence[Path] | None = None,
    captures: Sequence[Path] = (),
) -> None:
    """Refuse a capture export `path` export_pcap refuses, before anything is written (and
    when there turns out to be nothing to export: the flows export is refused alike).
    `evidence`: the runs' files, when the caller has them already; `captures`: the
    directories export_pcap searches for the source captures."""
    if evidence is None:
        evidence = run_evidence(list(_runs_of(source).values()), captures)
    check_output_file(Path(path), evidence, "--export-pcap", force=force)


def write_flow_table(table: pa.Table, path: Path) -> None:
    """Parquet as is; CSV with addresses as text and dictionaries decoded.

    Run directories store addresses as text already; binary(16) columns (flows straight from
    a reader) are rendered here.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        write_atomically(path, lambda staged: write_parquet(table, staged))
        return
    columns = []
    for name in table.column_names:
        column = table.column(name)
        if name in FLOW_ADDRESS_COLUMNS and pa.types.is_fixed_size_binary(column.type):
            column = pa.chunked_array(
                [pa.array(address_texts(address_matrix(column)), pa.string())]
            )
        elif pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        columns.append(column)
    text = pa.table(columns, names=table.column_names)
    write_atomically(path, lambda staged: pacsv.write_csv(text, staged))


def _resolve(
    run: Run,
    source_file: str,
    search: Sequence[Path] = (),
    checked: set[tuple[int, str]] | None = None,
) -> Path:
    """Find an input capture (_candidates: the first of the manifest's size, else the first
    found) or say where it was looked for. A relative path taken from here first found
    another file of that name (`recombine` run from elsewhere) and called the evidence
    changed. One found by its SHA-256 goes into `checked` (_unchanged: hashed once)."""
    candidates = _candidates(run, source_file, search)
    size = run.input_size(source_file)
    found = [candidate for candidate in candidates if candidate.is_file()]
    sized = [candidate for candidate in found if size is None or candidate.stat().st_size == size]
    if not any(place.is_file() for place in _candidates(run, source_file)):
        # nothing where the manifest names it: moved with the run? (a file there of another
        # size is the capture changed, refused as that; one of its name under --captures
        # is no reason not to look)
        sized = sized or _moved_candidates(run, source_file)
    digest = run.input_sha256(source_file)
    if len({candidate.resolve() for candidate in sized}) > 1 and digest is not None:
        # several of its size (another day's capture of that name, a copy beside the
        # original): the one whose SHA-256 is the manifest's, not the first (a review: the
        # first was taken and the export refused as changed, the right file present)
        for candidate in sized:
            if sha256_file(candidate) == digest:
                if checked is not None:
                    checked.add((run.index, source_file))
                return candidate
    if sized:
        return sized[0]
    if found:
        return found[0]
    raise UsageError(
        f"source capture {source_file} (from {run.path}) not found; looked at "
        + ", ".join(str(c) for c in candidates)
        + f", and by the tails of its path under {run.path} and {run.path.parent}"
        + ("" if search else " (--captures DIR names where the captures are now)")
    )


def _format_of(run: Run, source_file: str, path: Path) -> str:
    """The input's format from its own first bytes, which must agree with the manifest's."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    packing = packing_of_path(path)
    if packing:  # what a compressed input holds
        head = unpacked_head(path, packing, 64)[0]
    found = input_format(head)
    if not found:
        raise UsageError(
            f"{path} (an input of {run.path}, as its flows say) is not a PCAP, "
            "PCAPNG, nfcapd or IPFIX file: the flows table does not point at its "
            "captures"
        )
    listed = run.input_format(source_file)
    if listed and listed.split("-")[0] != found:  # "nfcapd-v2" names the layout too
        raise UsageError(
            f"{path} is {found}, {run.path}'s manifest says {listed}: the "
            "manifest does not belong to this run or the file was replaced"
        )
    return found


def _check_unchanged(run: Run, source_file: str, path: Path) -> None:
    """The capture must be the bytes the run read: the manifest's size and SHA-256. A capture
    changed in place (same size, frame headers intact) read back as datagrams that decode to
    other records, and was exported without a word."""
    size = run.input_size(source_file)
    actual = path.stat().st_size
    if size is not None and size != actual:
        raise InputError(
            f"{actual} bytes, {run.path}'s manifest says {size}: the capture "
            "changed since sessionize; nothing exported",
            source=str(path),
            offset=0,
        )
    digest = run.input_sha256(source_file)
    if digest is not None and sha256_file(path) != digest:
        raise InputError(
            f"SHA-256 differs from {run.path}'s manifest: the capture changed "
            "since sessionize; nothing exported",
            source=str(path),
            offset=0,
        )


def pcap_flows_path(path: Path) -> Path:
    """Where export_pcap writes the flows of nfcapd records, which have no datagram."""
    return path.with_name(path.stem + ".flows.parquet")


def export_pcap(
    source: RecombineResult | Sequence[Path],
    ids: Sequence[str],
    path: Path,
    *,
    flows_fallback: Path | None = None,
    strict: bool = False,
    with_templates: bool = True,
    force: bool = False,
    captures: Sequence[Path] = (),
    taken: Sequence[tuple[str, Path]] = (),
) -> PcapExport:
    """Write the datagrams that carried the named conversations' records as one capture.

    The source captures are found where the runs' manifests say they were read, beside the
    runs, or under the directories `captures` names (checked against the manifest's size
    and SHA-256 wherever they are found).

    With `with_templates`, the datagrams that defined the templates of the v9/IPFIX ones and
    carried the options data in force, from any capture of the run (context.py), are
    written with them, so the capture decodes (and sessionizes) again on its own; they are
    counted in `template_datagrams`, and the records decoded again from the export alone in
    `checked_records` (`differing_records` came out otherwise than in the run).

    `taken`: (option, path) of the other files the same command writes. The flows of
    records no datagram carried go to `flows_fallback` (else beside the capture), which is
    refused, before anything is written, only when there are such records and it is one
    of them: `--export-pcap x.pcap --export-flows x.flows.parquet` was refused outright,
    though most exports have no such record and write no flows file.
    """
    path = Path(path)
    runs = {
        run.index: run
        for run in _runs_of(
            source if isinstance(source, RecombineResult) else [Path(p) for p in source]
        ).values()
    }
    search = tuple(Path(directory) for directory in captures)
    evidence = run_evidence(list(runs.values()), search)
    check_pcap_target(source, path, force=force, evidence=evidence)
    with recombined(source) as recombination:
        fragments = conversation_sessions(recombination, ids)
        by_dir = _runs_of(recombination)
    # what finding, reading back and checking the datagrams reads of each record: the rest
    # of the flow rows is read again only for records written as flows instead
    table = _flow_rows(fragments, by_dir, columns=PLACED)
    result = PcapExport(path=None, report=RunReport(strict=strict))
    plan = _Plan.of(runs, table, search)
    found = _captures(runs, plan.wanted, plan.resolved, search, plan.checked)
    contexts = (
        _contexts(runs, found, plan.wanted, table, result, plan.checked) if with_templates else {}
    )
    identities = _identities(runs, plan)
    frames, origins, written, tcp_rows = _gather(runs, plan, found, contexts, result, identities)
    if len(plan.nfcapd_rows) or len(tcp_rows):
        fallback = flows_fallback or pcap_flows_path(path)
        for option, other in taken:
            if Path(other).resolve() == fallback.resolve():
                raise UsageError(
                    f"--export-pcap {path} writes the {len(plan.nfcapd_rows) + len(tcp_rows)}"
                    f" flow record(s) no datagram carried to {fallback}, where {option} "
                    "writes: one would replace the other"
                )
        _write_flows_instead(
            result,
            plan,
            _whole_rows(table, fragments, by_dir, runs, plan.nfcapd_rows, tcp_rows),
            tcp_rows,
            fallback,
            evidence,
            force=force,
        )
    if not frames:
        if not len(plan.nfcapd_rows) and not len(tcp_rows):
            result.notes.append("no datagram could be read back; nothing written")
        return result
    _write_capture(result, path, frames)
    if with_templates:
        _check_export(result, origins, table, written, identities)
    return result


def _identities(runs: dict[int, Run], plan: _Plan) -> dict[tuple[int, str], str]:
    """Per (run, capture) of the plan, what names the capture whatever run read it: its
    SHA-256 where the manifest keeps one, else where it is now. Two runs of one capture
    (`--from/--to` windows) wrote a datagram holding records of both once for each (an
    audit): datagrams are written once per capture and offset, not per run."""
    identities: dict[tuple[int, str], str] = {}
    for key, path in plan.resolved.items():
        digest = runs[key[0]].input_sha256(key[1])
        identities[key] = f"sha256:{digest}" if digest else f"path:{path.resolve()}"
    return identities


def _whole_rows(
    table: pa.Table,
    fragments: pa.Table,
    by_dir: dict[str, Run],
    runs: dict[int, Run],
    *rows: np.ndarray,
) -> pa.Table:
    """Every column of `rows` of `table` (the PLACED columns of the conversations' flow
    rows), read again for the sessions that hold them only: ordered alike, a session's
    rows are a subsequence of the whole, so each row's place among them is found by
    counting (a review: all the conversations' rows were read whole beside the rest)."""
    wanted = np.sort(np.concatenate(rows))
    run_index = table.column("run_index").to_numpy()
    owners: dict[int, pa.Array[Any]] = {}
    for run_number in np.unique(run_index[wanted]).tolist():
        mine = wanted[run_index[wanted] == run_number]
        owners[run_number] = pc.unique(
            table.column("session_id").take(pa.array(mine)).combine_chunks()
        )
    keep = pa.array(np.zeros(fragments.num_rows, dtype=bool))
    inside = np.zeros(table.num_rows, dtype=bool)
    for run_number, sessions in owners.items():
        run_dir = str(runs[run_number].path)
        # (pc.equal takes a Python scalar, as pa.scalar makes it; the stubs Arrow ones only)
        in_run = pc.equal(fragments.column("run_dir"), run_dir)  # type: ignore[call-overload]
        keep = pc.or_(
            keep, pc.and_(in_run, pc.is_in(fragments.column("session_id"), value_set=sessions))
        )
        inside |= (run_index == run_number) & np.asarray(
            pc.is_in(table.column("session_id"), value_set=sessions).to_numpy(zero_copy_only=False),
            dtype=bool,
        )
    whole = _flow_rows(fragments.filter(keep), by_dir)
    return whole.take(pa.array(np.searchsorted(np.flatnonzero(inside), wanted), pa.int64()))


@dataclass
class _Plan:
    """Where each of the conversations' flow records came from: the datagrams wanted, by
    (run, capture) and offset, or none (nfcapd and IPFIX files). Numpy over the rows, not a
    Python object per record: an export can hold millions of them."""

    wanted: dict[tuple[int, str], dict[int, int]]  # (run, file) -> offset -> arrival µs
    # per (run, file) of a capture: its rows by datagram offset (stable), the offsets in
    # that order, and where each wanted offset's rows begin in them (bisected by rows_at)
    grouped: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]
    nfcapd_rows: np.ndarray  # rows of records no datagram carried, ascending
    nfcapd_files: dict[tuple[int, str], int]  # their (run, file) -> rows of it
    resolved: dict[tuple[int, str], Path]  # where each capture is now
    formats: dict[tuple[int, str], str]
    checked: set[tuple[int, str]]  # captures found unchanged (each hashed once)

    @staticmethod
    def of(runs: dict[int, Run], table: pa.Table, search: Sequence[Path] = ()) -> _Plan:
        source_file = table.column("source_file")
        if pa.types.is_dictionary(source_file.type):
            source_file = source_file.cast(source_file.type.value_type)
        encoded = cast(
            "pa.DictionaryArray[Any, Any]", pc.dictionary_encode(source_file.combine_chunks())
        )
        names = cast(list[str], encoded.dictionary.to_pylist())  # (nulls are in none)
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        run_index = table.column("run_index").to_numpy().astype(np.int64)
        offsets = table.column("source_offset").to_numpy().astype(np.int64)
        arrival = table.column("arrival").cast(pa.int64()).to_numpy()
        plan = _Plan({}, {}, np.zeros(0, np.int64), {}, {}, {}, set())
        # each (run, file) once, in the order its first row comes: the order the files are
        # resolved and checked in (the first error a user sees)
        composite = (run_index << 32) | codes
        uniques, first_rows, which = np.unique(composite, return_index=True, return_inverse=True)
        other: list[np.ndarray] = []
        # each file's rows, ascending: one sort, not a pass over every row per file
        by_file = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[by_file], np.arange(len(uniques) + 1))
        for unique in np.argsort(first_rows, kind="stable").tolist():
            key = (int(uniques[unique] >> 32), names[int(uniques[unique] & 0xFFFFFFFF)])
            run = runs[key[0]]
            plan.resolved[key] = _resolve(run, key[1], search, plan.checked)
            plan.formats[key] = _format_of(run, key[1], plan.resolved[key])
            _unchanged(runs, plan.checked, key, plan.resolved[key])
            rows = by_file[bounds[unique] : bounds[unique + 1]]
            if plan.formats[key] not in ("pcap", "pcapng"):
                other.append(rows)
                plan.nfcapd_files[key] = len(rows)
                continue
            order = rows[np.argsort(offsets[rows], kind="stable")]
            plan.grouped[key] = (order, offsets[order])
            # the arrival of each datagram's last row, as a dict keeps the last assigned
            ends = np.flatnonzero(np.diff(offsets[order], append=-1) != 0)
            plan.wanted[key] = dict(
                zip(offsets[order[ends]].tolist(), arrival[order[ends]].tolist(), strict=True)
            )
        if other:
            plan.nfcapd_rows = np.sort(np.concatenate(other))
        return plan

    def rows_at(self, key: tuple[int, str], offset: int) -> np.ndarray:
        """The rows of the records the datagram at `offset` of `key` carried, in table
        order."""
        order, sorted_offsets = self.grouped[key]
        begin, end = np.searchsorted(sorted_offsets, [offset, offset + 1])
        return order[begin:end]


def _gather(
    runs: dict[int, Run],
    plan: _Plan,
    captures: dict[int, tuple[list[str], list[Path | None]]],
    contexts: dict[tuple[int, str], set[int]],
    result: PcapExport,
    identities: dict[tuple[int, str], str],
) -> tuple[list[Frame], list[tuple[str, int] | None], np.ndarray, np.ndarray]:
    """Read the wanted datagrams and their context back, capture by capture in the runs'
    order, each capture's in capture order, each datagram of a capture once whatever runs
    read it (`identities`): (the frames, per frame the (capture identity, offset) of the
    datagram it ends or None, the rows of the records written, the rows of records that
    came over TCP or SCTP). What cannot be read back is counted in the result's report."""
    frames: list[Frame] = []
    origins: list[tuple[str, int] | None] = []
    written: list[np.ndarray] = []
    tcp_rows: list[np.ndarray] = []  # IPFIX messages over TCP or SCTP: no datagram of their own
    placed: set[tuple[str, int]] = set()  # (capture identity, offset) of datagrams written
    for key in sorted(
        set(plan.wanted) | set(contexts), key=lambda k: (k[0], _input_rank(runs[k[0]], k[1]), k[1])
    ):
        identity = identities[key]
        offsets_wanted = plan.wanted.get(key, {})
        context = {
            offset
            for offset in contexts.get(key, set())
            if (identity, offset) not in placed and offset not in offsets_wanted
        }
        result.template_datagrams += len(context)
        unread = {offset for offset in offsets_wanted if (identity, offset) not in placed}
        found = read_datagram_frames(plan.resolved[key], unread | context)
        _cut_fragments(found, key, runs, captures[key[0]], plan.checked)
        in_file: list[tuple[int, list[Frame]]] = [
            (offset, found[offset])
            for offset in context
            if offset in found and not over_connection(found[offset][-1])
        ]
        for offset in sorted(offsets_wanted):
            if offset not in unread:  # written for an earlier run of the same capture
                written.append(plan.rows_at(key, offset))
                result.records += len(written[-1])
                continue
            carried = found.get(offset)
            frame = carried[-1] if carried else None
            if carried is None or frame is None:
                result.report.skip(
                    MalformedInput(
                        "no frame record starts at this offset; the capture changed since "
                        "sessionize, or the flows table's provenance is wrong",
                        source=key[1],
                        offset=offset,
                    )
                )
                continue
            expected_us = offsets_wanted[offset]
            if expected_us and frame.ts_ns // 1_000 != expected_us:
                result.report.skip(
                    MalformedInput(
                        f"frame time {frame.ts_ns // 1_000} µs differs from the flows' arrival "
                        f"{expected_us} µs: not the frame sessionize read",
                        source=key[1],
                        offset=offset,
                        frame=frame.number,
                    ),
                    nbytes=len(frame.data),
                )
                continue
            if over_connection(frame):
                # a message of an IPFIX-over-TCP stream or SCTP association: its frame
                # holds pieces of others, and what came before it is not in an export of
                # this conversation
                tcp_rows.append(plan.rows_at(key, offset))
                continue
            in_file.append((offset, carried))  # earlier IP fragments come first
            written.append(plan.rows_at(key, offset))
            result.records += len(written[-1])
        for offset, carried in sorted(in_file, key=lambda entry: entry[0]):  # capture order
            frames.extend(carried)
            origins += [None] * (len(carried) - 1) + [(identity, offset)]
            placed.add((identity, offset))
    return frames, origins, _joined(written), _joined(tcp_rows)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _write_flows_instead(
    result: PcapExport,
    plan: _Plan,
    table: pa.Table,
    tcp_rows: np.ndarray,
    fallback: Path,
    evidence: list[Path],
    *,
    force: bool,
) -> None:
    """The flow records no datagram of their own carried (nfcapd and IPFIX files, IPFIX
    over TCP or SCTP), written beside the capture, with a note saying why. `table`: those
    rows, every column (_whole_rows)."""
    result.nfcapd_records = len(plan.nfcapd_rows)
    result.tcp_records = len(tcp_rows)
    check_output_file(fallback, evidence, "--export-pcap's flows file", force=force)
    write_flow_table(table, fallback)
    result.flows_path = fallback
    for kind, name, holds in (
        ("nfcapd", "nfcapd", "flow records, not export datagrams"),
        ("ipfix", "IPFIX", "export messages, not captured packets"),
    ):
        files = {
            key: rows
            for key, rows in plan.nfcapd_files.items()
            if plan.formats[key].split("-")[0] == kind
        }
        if files:
            named = sorted({file for _, file in files})
            result.notes.append(
                f"{sum(files.values())} flow record(s) came from {name} file(s) "
                f"({', '.join(named)}), which hold {holds}: no datagram exists for "
                f"them; their flows were written to {fallback} instead"
            )
    if len(tcp_rows):
        result.notes.append(
            f"{len(tcp_rows)} flow record(s) came in IPFIX messages over TCP or SCTP, "
            "whose segments and packets carry pieces of other messages and need the "
            "connection before them: "
            f"no datagram of their own exists; their flows were written to {fallback} "
            "instead"
        )


def _write_capture(result: PcapExport, path: Path, frames: list[Frame]) -> None:
    """PCAP when the frames share a link type, else pcapng with one interface per type."""
    link_types = sorted({(f.linktype, f.fcs_bytes) for f in frames})
    result.link_types = sorted({lt for lt, _ in link_types})
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(link_types) == 1:
        write_atomically(path, lambda staged: _write_pcap(staged, frames, *link_types[0]))
        result.format = "pcap"
    else:
        write_atomically(path, lambda staged: _write_pcapng(staged, frames, link_types))
        result.format = "pcapng"
        # by interface: Ethernet with and without an FCS was "2 link types (1, 1)"
        interfaces = ", ".join(
            f"{lt} with a {fcs}-byte FCS" if fcs else str(lt) for lt, fcs in link_types
        )
        result.notes.append(
            f"the frames have {len(link_types)} link types or FCS lengths ({interfaces}); "
            f"a PCAP file holds one, so {path} is pcapng with one interface for each"
        )
    result.path = path
    result.datagrams = len(frames)


def _check_export(
    result: PcapExport,
    origins: list[tuple[str, int] | None],
    table: pa.Table,
    written: np.ndarray,
    identities: dict[tuple[int, str], str],
) -> None:
    """Decode the written capture alone, as `sessionize` would, and compare each of the
    conversations' records it carries (`written`, rows of `table`) with the run's
    (context.COMPARED): the figure the command gives, and a note naming the first that
    came out otherwise, or not at all. Captures are numbered by identity, so that the
    records of one datagram that two runs read are compared with its one copy."""
    assert result.path is not None
    numbers = {
        identity: number
        for number, identity in enumerate(
            sorted({origin[0] for origin in origins if origin is not None})
        )
    }
    moved: list[tuple[int, int, int]] = []  # export offset, capture number, offset
    for frame, origin in zip(iter_frames(result.path, RunReport()), origins, strict=True):
        if origin is not None:
            moved.append((frame.offset, numbers[origin[0]], origin[1]))
    places = (
        np.array([entry[0] for entry in moved], dtype=np.int64),
        np.array([entry[1] for entry in moved], dtype=np.int64),
        np.array([entry[2] for entry in moved], dtype=np.int64),
    )
    run_index = table.column("run_index").to_numpy()[written]
    named = {key: numbers[identity] for key, identity in identities.items() if identity in numbers}
    expected = pa.concat_tables(
        [
            record_table(
                table.take(pa.array(written[run_index == run_number])),
                {name: number for (run, name), number in named.items() if run == run_number},
            )
            for run_number in np.unique(run_index).tolist()
        ]
        or [record_table(table.slice(0, 0), {})]
    )
    report = RunReport()
    # each decoded batch kept only as its compared values: the whole flow schema of
    # every record exported cost ~700 bytes a record at once
    decoded = pa.concat_tables(
        [
            record_table(settled(batch, report), {}, places)
            for batch in _decoded(result.path, report)
        ]
        or [expected.slice(0, 0)]
    )
    count, first = differing(expected, decoded)
    result.checked_records = expected.num_rows
    result.differing_records = count
    result.decoded_records = decoded.num_rows
    if first is not None:
        names: dict[int, tuple[int, str]] = {}
        for key, number in sorted(named.items()):  # the first run that read it
            names.setdefault(number, key)
        number, offset, record = first
        run, name = names[number]
        result.notes.append(
            f"{count} of the {expected.num_rows} flow record(s) written decode otherwise "
            f"from {result.path} alone than in run {run} (first: record {record} of the "
            f"datagram at byte {offset} of {name}): a template, options data or IP "
            "fragment they need was not found, or their values depend on records the "
            "export does not hold (a Cisco ASA teardown's totals on its connection's "
            "updates), or its datagrams read otherwise without those that came between "
            "them (identical ones, of two captures or of an exporter that numbers none, "
            "taken for one sent twice; a silence taken for the exporter's restart)"
        )


def _decoded(path: Path, report: RunReport) -> Iterator[pa.RecordBatch]:
    """A capture's records decoded batch by batch, as `sessionize` decodes them."""
    decoder = ExportDecoder(report)
    for chunk in iter_datagrams(path, report):
        yield from decoder.feed(chunk)
    yield from decoder.finish()  # only once every datagram is fed: it drains the queues


def _captures(
    runs: dict[int, Run],
    wanted: dict[tuple[int, str], dict[int, int]],
    resolved: dict[tuple[int, str], Path],
    search: Sequence[Path] = (),
    checked: set[tuple[int, str]] | None = None,
) -> dict[int, tuple[list[str], list[Path | None]]]:
    """Per run holding wanted datagrams: its captures (PCAP, PCAPNG) in the order it read
    them (the manifest's), and where each is now (None: no longer found)."""
    out: dict[int, tuple[list[str], list[Path | None]]] = {}
    for run_number in sorted({number for number, _ in wanted}):
        run = runs[run_number]
        names = [
            str(entry.get("path"))
            for entry in run.inputs
            if str(entry.get("format", "")).split("-")[0] in ("pcap", "pcapng")
        ]
        names += sorted(
            {name for number, name in wanted if number == run_number and name not in names},
            key=lambda name: (_input_rank(run, name), name),
        )
        files: list[Path | None] = []
        for name in names:
            key = (run_number, name)
            if key not in resolved:
                try:
                    resolved[key] = _resolve(run, name, search, checked)
                except UsageError:
                    files.append(None)
                    continue
            files.append(resolved[key])
        out[run_number] = (names, files)
    return out


def _unchanged(
    runs: dict[int, Run], checked: set[tuple[int, str]], key: tuple[int, str], path: Path
) -> None:
    """_check_unchanged, once per capture of an export (a SHA-256 of gigabytes is not done
    again for each use)."""
    if key not in checked:
        _check_unchanged(runs[key[0]], key[1], path)
        checked.add(key)


def _unfinished(frames: list[Frame]) -> tuple[object, ...] | None:
    """The reassembly key of a datagram whose frames are fragments that do not hold all of
    it, else None."""
    pieces = [fragment_of(frame) for frame in frames]
    if not pieces or any(piece is None for piece in pieces):
        return None
    if covers([piece[1:] for piece in pieces if piece is not None]):
        return None
    first = pieces[0]
    return None if first is None else first[0]


def _cut_fragments(
    found: dict[int, list[Frame]],
    key: tuple[int, str],
    runs: dict[int, Run],
    captures: tuple[list[str], list[Path | None]],
    checked: set[tuple[int, str]],
) -> None:
    """Give the datagrams whose first fragments a rotation left in the captures before
    (the run reassembles across its files) those fragments, first: the export holds every
    frame of each datagram. Captures are searched back while fragments are missing and the
    one before held some, no further back than the run's reassembly waits (pcap.py's
    FRAGMENT_TIMEOUT_NS)."""
    cut: dict[int, tuple[tuple[object, ...], int]] = {}  # offset -> (key, earliest time)
    for offset, carried in found.items():
        fragment_key = _unfinished(carried)
        if fragment_key is not None:
            # the run's reassembly gives a set up when a fragment comes more than the
            # timeout after its first: no earlier fragment is older than that
            cut[offset] = (
                fragment_key,
                max(frame.ts_ns for frame in carried) - FRAGMENT_TIMEOUT_NS,
            )
    names, files = captures
    index = names.index(key[1]) if key[1] in names else 0
    while cut and index > 0 and files[index - 1] is not None:
        before = files[index - 1]
        assert before is not None
        since: dict[tuple[object, ...], int] = {}
        for fragment_key, bound in cut.values():  # two datagrams may share an identification
            since[fragment_key] = min(bound, since.get(fragment_key, bound))
        tails = tail_fragments(before, since)
        if not tails:
            return
        _unchanged(runs, checked, (key[0], names[index - 1]), before)
        for offset, (fragment_key, _) in list(cut.items()):
            found[offset] = [*tails.get(fragment_key, []), *found[offset]]
            if _unfinished(found[offset]) is None:
                del cut[offset]
        index -= 1


def _contexts(
    runs: dict[int, Run],
    captures: dict[int, tuple[list[str], list[Path | None]]],
    wanted: dict[tuple[int, str], dict[int, int]],
    table: pa.Table,
    result: PcapExport,
    checked: set[tuple[int, str]],
) -> dict[tuple[int, str], set[int]]:
    """The datagrams, by (run, capture), that define the templates of the wanted ones and
    carry the options data in force (context.template_context), over each run's captures in
    the order it read them: a rotated capture's templates are in an earlier file. Each
    capture the search reads is checked unchanged, as the wanted ones are: what it finds
    depends on all of them."""
    found: dict[tuple[int, str], set[int]] = {}
    run_index = table.column("run_index").to_numpy()
    for run_number, (names, files) in captures.items():
        run = runs[run_number]
        missing = [name for name, path in zip(names, files, strict=True) if path is None]
        index_of = {name: index for index, name in enumerate(names)}
        mine = {
            index_of[name]: set(offsets)
            for (number, name), offsets in wanted.items()
            if number == run_number
        }
        mask = run_index == run_number
        rows = table if mask.all() else table.filter(pa.array(mask))  # one run: no copy
        expected = record_table(rows, index_of)

        def unchanged(
            index: int,
            run_number: int = run_number,
            names: list[str] = names,
            files: list[Path | None] = files,
        ) -> None:
            path = files[index]
            if path is not None:
                _unchanged(runs, checked, (run_number, names[index]), path)

        for index, offsets in template_context(files, mine, expected, check=unchanged).items():
            found[run_number, names[index]] = offsets
        if missing:
            result.notes.append(
                f"{len(missing)} capture(s) {run.path} read are no longer found "
                f"({', '.join(missing)}): templates or options data they carried are not in "
                "the export, which may not decode on its own"
            )
    return found


def _input_rank(run: Run, source_file: str) -> int:
    for index, entry in enumerate(run.inputs):
        if str(entry.get("path")) == source_file:
            return index
    return len(run.inputs)


def _write_pcap(path: Path, frames: list[Frame], linktype: int, fcs_bytes: int) -> None:
    """libpcap savefile, little endian; nanosecond magic only when a time needs it."""
    nanos = any(f.ts_ns % 1_000 for f in frames)
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    linktype_field = linktype
    if fcs_bytes:  # the FCS-present bit and its length in 16-bit words (pcap-linktype)
        linktype_field |= (1 << 26) | ((fcs_bytes // 2) << 28)
    snaplen = max(PCAP_SNAPLEN, *(len(f.data) for f in frames))
    header = struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype_field)
    record = struct.Struct("<IIII")
    with open(path, "wb") as handle:
        handle.write(header)
        for frame in frames:
            seconds, rest = divmod(frame.ts_ns, 1_000_000_000)
            fraction = rest if nanos else rest // 1_000
            handle.write(
                record.pack(
                    seconds, fraction, len(frame.data), max(frame.original_length, len(frame.data))
                )
            )
            handle.write(frame.data)


def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def _write_pcapng(path: Path, frames: list[Frame], link_types: list[tuple[int, int]]) -> None:
    """One section, one interface per (link type, FCS length), nanosecond timestamps."""
    interface_of = {key: index for index, key in enumerate(link_types)}
    snaplen = max(PCAP_SNAPLEN, *(len(f.data) for f in frames))
    with open(path, "wb") as handle:
        # section header: byte-order magic, version 1.0, section length unknown (-1)
        handle.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        for linktype, fcs_bytes in link_types:
            options = struct.pack("<HH", 9, 1) + _pad(b"\x09")  # if_tsresol = 10^-9
            if fcs_bytes:
                options += struct.pack("<HH", 13, 1) + _pad(bytes([fcs_bytes * 8]))
            options += struct.pack("<HH", 0, 0)
            handle.write(_block(1, struct.pack("<HHI", linktype, 0, snaplen) + options))
        for frame in frames:
            ticks = frame.ts_ns
            body = struct.pack(
                "<IIIII",
                interface_of[(frame.linktype, frame.fcs_bytes)],
                ticks >> 32,
                ticks & 0xFFFFFFFF,
                len(frame.data),
                max(frame.original_length, len(frame.data)),
            )
            handle.write(_block(6, body + _pad(frame.data)))
