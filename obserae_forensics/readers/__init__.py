"""Readers: any mix of captures and nfcapd files -> FLOW_SCHEMA batches in arrival order.

A file's format is recognised by its magic bytes, never by its name. Inputs are replayed in
the order their first records arrived (a capture's first frame, an nfcapd file's first
receive time: _first_time), then by where the file is (_place: its path with links
resolved), so neither the order given on the command line or found in a directory nor how
a file was named changes anything. Template state
is kept across consecutive captures, as a collector would keep it.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError, MalformedInput, UnknownFormat, UsageError
from ..report import RunReport, path_text, utf8_path
from ..tables.layout import (
    FRAGMENTS_FILE,
    MANIFEST_FILE,
    RECOMBINE_FILES,
    RECOMBINED_FILE,
    SESSIONIZE_FILES,
)
from ..tables.manifest import sha256_file
from ..times import UNUSABLE_TIME, beyond_limit, time_faults
from .packed import CannotUnpack, packing_of_file, unpacked_head
from .pcap import (
    Transports,
    capture_format,
    iter_datagrams,
    iter_frames,
    new_transports,
    walk_frames,
)

__all__ = [
    "InputFile",
    "discover_inputs",
    "input_format",
    "read_flows",
    "refuse_nothing_to_read",
    "settled",
]


@dataclass(frozen=True)
class InputFile:
    """One input file, its recognised format, size, and first time (µs) for ordering."""

    path: Path
    format: str  # "pcap", "pcapng", "nfcapd", "ipfix" (an IPFIX file, RFC 5655)
    size: int
    first_us: int | None
    compression: str = ""  # the whole file's, "gzip" ... (packed.py); format is what it holds
    mtime_ns: int = 0  # when it was last written, as discovery saw it (a change is said)
    sha256: str = ""  # when discovery hashed it already (_without_copies): not hashed again


def input_format(head: bytes) -> str:
    """ "pcap", "pcapng", "nfcapd" or "ipfix" from a file's first bytes (magic, never the
    name); "" for anything else."""
    from .ipfix_file import is_ipfix_file
    from .nfcapd import is_nfcapd

    found = capture_format(head)
    if found:
        return found
    if is_nfcapd(head):
        return "nfcapd"
    if is_ipfix_file(head):
        return "ipfix"
    return ""


def _expand(
    path: Path,
    report: RunReport,
    exclude: Sequence[Path] = (),
    counted: set[str] | None = None,
    unlisted: set[str] | None = None,
) -> list[Path]:
    """The files of `path`: itself, or those its directory tree holds. Links to
    directories are followed (a case folder links its sensors' mounts: they were never
    walked, found by an audit), but not back into a directory the walk is inside (a loop
    ended the run with a traceback); a file reached by two ways is found under both names
    (discover_inputs reads it once). A directory that cannot be listed, the hidden entries
    left out and an earlier output's files are counted, once each however many inputs or
    links lead to them (`counted`: their real paths); `unlisted` gets the real paths of the
    directories that could not be listed."""
    if not path.is_dir():
        return [path]
    counted = set() if counted is None else counted
    files: list[Path] = []
    skipped = {os.path.realpath(p) for p in exclude}
    ancestors: dict[str, frozenset[tuple[int, int]]] = {}

    def first_time(where: str) -> bool:
        real = os.path.realpath(where)
        if real in counted:
            return False
        counted.add(real)
        return True

    def unlistable(error: OSError) -> None:
        where = os.fspath(error.filename or path)
        if unlisted is not None:
            unlisted.add(os.path.realpath(where))
        if first_time(where):
            report.skip(
                InputError(
                    f"cannot list this directory: {error.strerror or error}",
                    source=path_text(where),
                    offset=0,
                ),
                nbytes=0,
            )

    for root, dirs, names in os.walk(path, onerror=unlistable, followlinks=True):
        try:
            status = os.stat(root)
        except OSError as error:
            unlistable(error)
            dirs[:] = []
            continue
        here = (status.st_dev, status.st_ino)
        above = ancestors.pop(root, frozenset())
        if here in above:  # a link back to a directory the walk is inside: a loop
            dirs[:] = []
            continue
        for name in sorted(n for n in [*dirs, *names] if n.startswith(".")):
            if first_time(os.path.join(root, name)):
                report.ignore_hidden(os.path.join(root, name))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in dirs:
            ancestors[os.path.join(root, name)] = above | {here}
        own = {
            n for n in _own_outputs(root, names) if os.path.realpath(Path(root) / n) not in skipped
        }  # this run's: not counted
        if own and first_time(
            os.path.join(root, MANIFEST_FILE if MANIFEST_FILE in own else RECOMBINED_FILE)
        ):
            report.ignore("obserae_output", path_text(root), 0, count=len(own))
        files.extend(
            Path(root) / n
            for n in sorted(names)
            if not n.startswith(".")
            and n not in own
            and os.path.realpath(Path(root) / n) not in skipped
        )
    return files


def _own_outputs(root: str, names: list[str]) -> set[str]:
    """The files of an earlier run of this tool that `root` holds: a sessionize output (its
    manifest.json says so) or a recombine one. An audit: `sessionize case -o case/run` then
    `sessionize case -o case/run2` read case/run's tables as inputs of unknown format,
    and --strict stopped on them. Other files beside them are read as ever."""
    present = set(names)
    own: set[str] = set()
    if MANIFEST_FILE in present:
        try:
            with open(os.path.join(root, MANIFEST_FILE), encoding="utf-8") as handle:
                tool = json.load(handle).get("tool", {})
            if isinstance(tool, dict) and tool.get("name") == "obserae-forensics":
                own |= present & set(SESSIONIZE_FILES)
        except (OSError, ValueError, AttributeError):
            pass  # not ours: read (and counted) as any other file
    if {RECOMBINED_FILE, FRAGMENTS_FILE} <= present:
        own |= present & set(RECOMBINE_FILES)
    return own


def discover_inputs(
    paths: Sequence[Path], report: RunReport, exclude: Sequence[Path] = ()
) -> list[InputFile]:
    """Expand directories, recognise each file by magic and order them by when their first
    record arrived (_first_time; files with none last, then by _place).

    Files no reader recognises are counted as `unknown_format` (and raise under --strict);
    the same file named twice is read once (_spellings). Files in `exclude` are left out of
    directory walks: `sessionize caps --out caps/run --force` read the earlier run's tables
    as inputs of unknown format (and --strict failed on them). Only those files: a capture
    kept in the output directory is still found, and the run refuses to replace it.
    """
    found: list[InputFile] = []
    counted: set[str] = set()
    unlisted: set[str] = set()
    expanded = [_expand(path, report, exclude, counted, unlisted) for path in paths]
    spellings = _spellings([file for files in expanded for file in files])
    if spellings:
        for path, files in zip(paths, expanded, strict=True):
            # one that could not be listed, or held one that could not, is that problem,
            # not an empty one too (an audit, then a review)
            real = os.path.realpath(path)
            if not files and not any(
                where == real or where.startswith(real + os.sep) for where in unlisted
            ):
                # a review: one empty directory among several (a sensor's mount missing)
                # went without a word; all of them empty is a usage error, below
                report.skip(
                    MalformedInput(
                        "a directory holding no file (hidden entries left out): a wrong mount "
                        "point, or a copy not made?",
                        source=str(path),
                        offset=0,
                        reason="empty_directory",
                    ),
                    nbytes=0,
                )
    for path, others in spellings.items():
        if others:
            report.file(str(path)).also_named.extend(path_text(other) for other in others)
    for path in spellings:
        if not utf8_path(str(path)):
            # found by an audit: a file name that is not UTF-8 (an evidence disk's) ended
            # the run with a traceback where it met a text column
            report.skip(
                InputError(
                    "its name is not valid UTF-8 and the tables hold paths as "
                    "UTF-8 text: not read (give it a UTF-8 name, a link "
                    "of its own is enough)",
                    source=path_text(path),
                    offset=0,
                ),
                nbytes=0,
            )
            continue
        if path.exists() and not path.is_file():
            # a FIFO, socket or device: opening a FIFO would wait for a writer forever
            report.skip(
                InputError(
                    "not a regular file (a pipe, socket or device): write "
                    "what it carries to a file, and give that",
                    source=str(path),
                    offset=0,
                ),
                nbytes=0,
            )
            continue
        try:
            with open(path, "rb") as handle:
                head = handle.read(64)
                packing = packing_of_file(handle)
                status = os.fstat(handle.fileno())
            size = status.st_size
        except OSError as exc:  # unreadable, vanished, a dangling link: say so, go on
            try:  # its size, when it has one (not_read gave 0 for a file of 2,476 bytes)
                size = path.stat().st_size
            except OSError:
                size = 0
            report.file(str(path)).size = size
            report.skip(
                InputError(f"cannot read: {exc.strerror or exc}", source=str(path), offset=0),
                nbytes=size,
            )
            continue
        damage = None
        if packing:
            head, damage = unpacked_head(path, packing, 64)
        kind = input_format(head)
        if not kind and damage is not None:  # damaged before it shows what it holds
            stats = report.file(str(path))
            stats.size, stats.compression = size, packing
            report.skip(damage, nbytes=size)
            continue
        if not kind:
            report.file(str(path)).size = size
            what = (
                f"a {packing} file holding no PCAP, PCAPNG, nfcapd or IPFIX file"
                if packing
                else "not a PCAP, PCAPNG, nfcapd or IPFIX file"
            )
            if head[:4] == b"PAR1":  # a run's table given back as input (a review)
                what += ": a Parquet table, such as a run's (read one with show or query.load)"
            report.skip(
                UnknownFormat(
                    f"{what} (unrecognised magic {head[:4].hex() or 'in an empty file'})",
                    source=str(path),
                    offset=0,
                ),
                nbytes=size,
            )
            continue
        try:
            first = _first_time(path, kind, packing)
        except OSError as exc:  # a full TMPDIR for a compressed nfcapd file's head, say
            stats = report.file(str(path))
            stats.size, stats.compression = size, packing
            report.skip(
                InputError(f"cannot read: {exc.strerror or exc}", source=str(path), offset=0),
                nbytes=size,
            )
            continue
        found.append(InputFile(path, kind, size, first, packing, status.st_mtime_ns))
    found.sort(key=lambda f: (f.first_us is None, f.first_us or 0, _place(f.path)))
    found = _without_copies(found, report)
    report.order_files([str(item.path) for item in found])  # the examples' order
    if not spellings and not report.examples:
        # found by a responder's audit: an empty directory (a wrong mount point, a copy not
        # yet made) gave an empty run and exit 0, even with --strict
        earlier = report.ignored.get("obserae_output", 0)
        raise UsageError(
            f"no input file in {', '.join(map(str, paths))}: nothing to read "
            + (
                f"(only the {earlier} output file(s) of an earlier run of this "
                "tool, which are never read as input, or hidden entries)"
                if earlier
                else "(an empty directory, or only hidden entries)"
            )
        )
    return found


def refuse_nothing_to_read(found: list[InputFile], report: RunReport) -> None:
    """The commands' check after discover_inputs: inputs none of which can be read (an
    empty file, a pipe such as `<(zcat x.pcap.gz)`, an unreadable file or directory) are
    a usage error naming why; they gave an empty run and exit 0, where an empty directory
    is refused (found by an audit)."""
    problems = report.examples
    if found or not problems:
        return
    # every problem, not the examples kept (20 of each reason: a review)
    left = report.skipped_problems() - min(len(problems), 3)
    more = f"; and {left} more" if left > 0 else ""
    shown = "; ".join(map(str, problems[:3]))
    raise UsageError(f"nothing to read: no input could be read ({shown}{more})")


def _without_copies(found: list[InputFile], report: RunReport) -> list[InputFile]:
    """The inputs less the nfcapd files that are byte for byte another one (a folder copied
    twice into the case): each of their records was counted twice, where a capture's
    copy loses its datagrams as duplicates (found by an audit). Only files of one size are
    hashed; the first in reading order is read, a copy is counted as `duplicate_file`."""
    by_size: dict[int, list[InputFile]] = {}
    for item in found:
        if item.format == "nfcapd":
            by_size.setdefault(item.size, []).append(item)
    copies: set[Path] = set()
    hashed: dict[Path, str] = {}
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        first_of: dict[str, Path] = {}
        for item in same_size:
            try:
                digest = hashed[item.path] = sha256_file(item.path)
            except OSError:
                continue  # counted when it is read
            if digest in first_of:
                copies.add(item.path)
                report.ignore("duplicate_file", str(item.path), item.size)
                stats = report.file(str(item.path))
                stats.copy_of, stats.size = str(first_of[digest]), item.size
            else:
                first_of[digest] = item.path
    return [
        replace(item, sha256=hashed.get(item.path, "")) for item in found if item.path not in copies
    ]


def _place(path: Path) -> tuple[str, ...]:
    """Where a file is, however it was named: its path with links resolved, compared part
    by part. It breaks ties between files whose first records arrived at one instant (the
    path as given did: `caps/a.pcap` and `/cases/7/caps/b.pcap` swapped places with the
    spelling, and with them their exporter's sessions), and it keeps its order when the
    evidence is copied or moved elsewhere whole."""
    return Path(os.path.realpath(path)).parts


def _spellings(paths: Sequence[Path]) -> dict[Path, list[Path]]:
    """Each file once, in the order of _place, named by the first of its spellings in text
    order: the same file named twice (directly and through its directory, through a link,
    as a hard link) is read once, under one name whatever the order it was given in. With
    each, its other names (the manifest cites them: they were dropped without a word)."""
    names: dict[object, list[Path]] = {}
    for path in paths:
        same: object = Path(os.path.realpath(path))
        try:
            status = path.stat()
            if status.st_ino:  # 0 where a file system numbers none: the path decides
                same = (status.st_dev, status.st_ino)
        except OSError:  # reported as unreadable below
            pass
        names.setdefault(same, []).append(path)
    spelled = {}
    for given in names.values():
        # a UTF-8 name first: a hard link or link of another encoding beside the file took
        # its place, was refused, and the file was not read at all (found by an audit)
        ordered = sorted(dict.fromkeys(given), key=lambda p: (not utf8_path(str(p)), str(p)))
        spelled[ordered[0]] = ordered[1:]
    return dict(sorted(spelled.items(), key=lambda item: (_place(item[0]), str(item[0]))))


def _first_time(path: Path, kind: str, packing: str = "") -> int | None:
    """When the file's first record arrived: a capture's first frame, an nfcapd file's first
    records' receive time (else its slot time, as their `arrival`).

    Not the flows' own times: a collector's next file holds flows that began before this
    one ended (an active timeout exports a long flow at its end, nfpcapd rotates while a
    connection goes on), and ordered by their start, the earlier file's records all came
    late (nfpcapd 1.7.8 over the corpus IRC capture: 5 sessions, 3 late, against 3).

    A compressed capture or IPFIX file is not decompressed whole for this: its first bytes
    hold the first frame or message (its first 64 KiB, else 4 MiB; a capture whose first
    4 MiB hold no whole frame is decompressed whole)."""
    if kind == "ipfix":
        from .ipfix_file import first_export_us

        return first_export_us(path, unpacked_head(path, packing, 16)[0] if packing else None)
    if kind == "nfcapd":
        for nbytes in (FIRST_FRAME_BYTES // 4, FIRST_FRAME_BYTES * 4) if packing else ():
            # the first bytes decompressed, as a file of their own: its first batch is the
            # whole file's when it is full, or when the file holds no more
            head = unpacked_head(path, packing, nbytes)[0]
            with tempfile.NamedTemporaryFile(prefix="obserae-head-") as spool:
                spool.write(head)
                spool.flush()
                rows, first = _first_nfcapd_batch(Path(spool.name))
            if rows == NFCAPD_FIRST_ROWS or len(head) < nbytes:
                return first
        return _first_nfcapd_batch(path)[1]
    for nbytes in (FIRST_FRAME_BYTES // 64, FIRST_FRAME_BYTES) if packing else ():
        head = unpacked_head(path, packing, nbytes)[0]
        if len(head) >= 4:  # its magic, known to be a capture's
            for frame in walk_frames(head, str(path), RunReport()):
                return frame.ts_ns // 1_000
        if len(head) < nbytes:
            return None
    for frame in iter_frames(path, RunReport()):
        return frame.ts_ns // 1_000
    return None


FIRST_FRAME_BYTES = 4 << 20
NFCAPD_FIRST_ROWS = 4096


def _first_nfcapd_batch(path: Path) -> tuple[int, int | None]:
    """The rows of an nfcapd file's first batch and their first arrival (µs)."""
    from .nfcapd import first_arrival

    try:
        return first_arrival(path, NFCAPD_FIRST_ROWS)
    except InputError:  # damage is counted when the file is read for real
        return 0, None


def read_flows(
    inputs: Sequence[InputFile],
    report: RunReport,
    *,
    batch_size: int = 65_536,
    window: tuple[int | None, int | None] = (None, None),
) -> Iterator[pa.RecordBatch]:
    """Yield FLOW_SCHEMA batches of every input, in arrival order; count what is skipped."""
    from .exports import ExportDecoder
    from .nfcapd import read_nfcapd
    from .nsel import NselLedger

    decoder = ExportDecoder(report)
    # TCP connections and SCTP associations go on across the capture files, as the
    # decoder's templates do
    transports = new_transports(report)
    nsel = NselLedger()  # the nfcapd files' (the export decoder keeps its own)
    if len(inputs) > 1 and report.twins is None:
        from ..twins import TwinRecords

        report.twins = TwinRecords()
    for item in inputs:
        stats = report.file(str(item.path))
        stats.size = item.size
        stats.format = stats.format or item.format
        yielded = False
        try:
            if item.format == "nfcapd":
                batches: Iterator[pa.RecordBatch] = read_nfcapd(
                    item.path, report, batch_size=batch_size, nsel=nsel
                )
            else:
                batches = _capture_batches(
                    item.path,
                    decoder,
                    report,
                    batch_size,
                    ipfix_file=item.format == "ipfix",
                    transports=transports,
                )
            for batch in batches:
                # the window judges the times the flow table holds (a record with one
                # time 0, kept at the other, is inside when that one is)
                batch = _window(settled(batch, report), window, report)
                if batch.num_rows:
                    _count(report, batch)
                    yielded = True
                    yield batch
        except (UnknownFormat, CannotUnpack) as error:
            report.skip(error, nbytes=item.size)
        except OSError as exc:
            # gone or unreadable since it was found (an audit: the run ended as "cannot
            # write" that file, with no output); what it gave before stays counted
            report.skip(
                InputError(
                    f"cannot read: {exc.strerror or exc}"
                    + (" (after some of its records were read)" if yielded else ""),
                    source=str(item.path),
                    offset=0,
                ),
                nbytes=0 if yielded else item.size,
            )
    # what only the end of the run completes (a connection's held segments), then the
    # records still held for a template
    for batch in [*decoder.feed(transports.finish()), *decoder.finish()]:
        batch = _window(settled(batch, report), window, report)
        if batch.num_rows:
            _count(report, batch)
            yield batch


def settled(batch: pa.RecordBatch, report: RunReport) -> pa.RecordBatch:
    """A decoded batch as the flow table holds it: times the sessionizer can place
    (_usable_times) and ICMPv6 types in the port's high byte (_icmp_type_in_low_byte);
    what the decoders alone give differs (recombine's check of an export compares it)."""
    batch = _icmp_type_in_low_byte(_usable_times(batch, report), report)
    _impossible_counters(batch, report)
    return batch


def _usable_times(batch: pa.RecordBatch, report: RunReport) -> pa.RecordBatch:
    """`batch` with times the sessionizer can place, each repair or removal counted against
    its file with the first record's place:

    - a first_seen or last_seen beyond times.TIME_LIMIT_US (~73,000 years from 1970) is a
      damaged field (or one the reader could not bring into µs), on which deadlines and gaps
      would wrap around: left out (bad_timestamp);
    - both times exactly 1970-01-01: none was sent (nfdump stores an unknown time as 0; one
      nfcapd 1.7.1 wrote for a scan's first SYN made a session dated 1970): left out
      (no_times);
    - one time 0 and the other not: kept at the instant it gives (missing_time), not as a
      record spanning from 1970;
    - one time beyond the limit and the other usable (Antrea sent Go's zero time,
      year 1, as flowStartSeconds): kept at the instant the usable one gives
      (missing_time), its counters not lost with the damaged field;
    - last_seen before first_seen (nfdump 1.7.1 swaps IPFIX's uptime start and end, a v9
      exporter's sysUptime can wrap between them): kept with the two swapped
      (inverted_times), so that no session ends before it opens; but a first_seen more
      than a day after the record arrived and after its own last_seen is no start at all
      (Antrea 0.12 sent a start in 2042 beside a right end: swapped, a flow of 19 years):
      kept at its last_seen (future_start);
    - more than a year from first_seen to last_seen, as the record stands after these:
      kept, and said (long_record, _long_records)."""
    if batch.num_rows == 0:
        return batch
    first = batch.column("first_seen").cast(pa.int64()).to_numpy()
    last = batch.column("last_seen").cast(pa.int64()).to_numpy()
    index = batch.column("record_index")

    def which(row: int) -> str:
        first_seen, last_seen = (
            f"{int(v)} µs" if v != UNUSABLE_TIME else "past the int64 µs range"
            for v in (first[row], last[row])
        )
        return (
            f"the first record {index[row].as_py()} here (first_seen {first_seen}, "
            f"last_seen {last_seen})"
        )

    beyond, timeless, salvaged = time_faults(first, last)
    if salvaged.any():  # one damaged time beside a usable one: that one stands
        _report_per_file(
            batch,
            salvaged,
            "missing_time",
            lambda row: (
                f"one time unusable (more than 73,000 years from 1970), {which(row)}: kept "
                "at the instant the other gives"
            ),
            report,
            kept=True,
        )
        unusable_first = salvaged & beyond_limit(first)
        first = np.where(unusable_first, 0, first)
        last = np.where(salvaged & ~unusable_first, 0, last)
    zero_first, zero_last = (first == 0) & ~beyond, (last == 0) & ~beyond
    half = zero_first ^ zero_last
    inverted = ~beyond & ~timeless & ~half & (first > last)
    future = np.zeros(len(first), dtype=bool)
    if inverted.any():
        # a start a day after its record arrived and a day after its own end: no start (an
        # exporter clock ahead by days still swaps a flow's times; so does a sysUptime wrap,
        # placed at most a day after its export)
        arrival = batch.column("arrival").cast(pa.int64()).to_numpy()
        future = (
            inverted
            & (arrival != 0)
            & (first - arrival > FUTURE_START_US)
            & (first - last > FUTURE_START_US)
        )
        inverted &= ~future
    if (half & ~salvaged).any():
        _report_per_file(
            batch,
            half & ~salvaged,
            "missing_time",
            lambda row: (
                f"one time only, the other 1970-01-01 (unknown), {which(row)}: kept at the "
                "instant it gives"
            ),
            report,
            kept=True,
            variant="zero",
        )
    if inverted.any():
        _report_per_file(
            batch,
            inverted,
            "inverted_times",
            lambda row: (
                f"last_seen before first_seen, {which(row)}: kept, with the two times swapped"
            ),
            report,
            kept=True,
        )
    if future.any():
        _report_per_file(
            batch,
            future,
            "future_start",
            lambda row: (
                f"last_seen before first_seen, and first_seen more than a day after the record "
                f"arrived, {which(row)}: kept at its last_seen"
            ),
            report,
            kept=True,
        )
    kept_first, kept_last = first, last  # the times the records are kept at
    if half.any() or inverted.any() or future.any() or salvaged.any():
        known = np.where(zero_first, last, first)
        kept_first = np.where(half, known, np.where(inverted | future, last, first))
        kept_last = np.where(half, known, np.where(inverted, first, last))
        batch = _with_columns(batch, first_seen=kept_first, last_seen=kept_last)
    _long_records(batch, kept_first, kept_last, ~(beyond | timeless), report)
    if timeless.any():
        _report_per_file(
            batch,
            timeless,
            "no_times",
            lambda row: (
                f"no time (first_seen and last_seen both 1970-01-01), the first record "
                f"{index[row].as_py()} here: left out, as a time is what places a record in a "
                "session"
            ),
            report,
        )
    if beyond.any():
        _report_per_file(
            batch,
            beyond,
            "bad_timestamp",
            lambda row: f"a time more than 73,000 years from 1970, {which(row)}",
            report,
        )
    drop = beyond | timeless
    return batch.filter(pa.array(~drop)) if drop.any() else batch


FUTURE_START_US = 86_400_000_000  # a start this far after its record arrived is no start
# longer than a flow cache keeps a flow (a router's active timeout is minutes, softflowd's
# longest lifetime a week, a firewall's connection lives while it is used): a damaged time
LONG_RECORD_US = 366 * 86_400_000_000


def _long_records(
    batch: pa.RecordBatch, first: np.ndarray, last: np.ndarray, kept: np.ndarray, report: RunReport
) -> None:
    """Count the records, among those `kept`, whose last_seen comes more than a year after
    their first_seen: a start in 1966 beside an end in 2026 (a damaged absolute time, found
    by fuzzing) opened a session sixty years long without a word. Which of the two times is
    wrong the record does not tell, so it is kept at its times (those the checks above
    left it: an inverted record swapped first, and counted under both), its session with
    it, and said with its place (`long_record` under repaired). `first` and `last`: the
    times the batch holds, as _usable_times left them."""
    # kept: a time past the limit is left out (bad_timestamp), and the gap would overflow
    span = np.subtract(last, first, where=kept, out=np.zeros(len(first), dtype=np.int64))
    mask = kept & (span > LONG_RECORD_US)
    if mask.any():
        index = batch.column("record_index")
        _report_per_file(
            batch,
            mask,
            "long_record",
            lambda row: (
                f"more than a year from first_seen to last_seen, the first record "
                f"{index[row].as_py()} here (first_seen {int(first[row])} µs, last_seen "
                f"{int(last[row])} µs): kept at these times, one of them damaged (no flow "
                "cache keeps a flow that long)"
            ),
            report,
            kept=True,
        )


# the most bytes one packet can count: an IPv6 jumbogram's (a 32-bit payload length and its
# 40-byte header), with room for link headers, as exporters that count frames do
MAX_PACKET_BYTES = 2**32 + 2**16


def _impossible_counters(batch: pa.RecordBatch, report: RunReport) -> None:
    """Count the records whose bytes no number of packets they say they had could carry: a
    damaged counter (a DNS exchange of 2**63 bytes in 1 packet passed without a word, a
    review). Nothing tells which of the two counters is wrong, so the record is kept as
    sent, its sessions' volumes with it, and said with its place (`impossible_counters`
    under repaired). A record without a packet count (0) says nothing: some exporters send
    none."""
    if batch.num_rows == 0:
        return
    mask = np.zeros(batch.num_rows, dtype=bool)
    for octets, packets in (("octets", "packets"), ("reverse_octets", "reverse_packets")):
        sent = batch.column(octets).to_numpy(zero_copy_only=False)
        count = batch.column(packets).to_numpy(zero_copy_only=False)
        mask |= (count > 0) & (sent // np.maximum(count, 1) > MAX_PACKET_BYTES)
    if not mask.any():
        return
    index = batch.column("record_index")

    def what(row: int) -> str:
        sent = (batch.column(name)[row].as_py() for name in ("packets", "octets"))
        back = (batch.column(name)[row].as_py() for name in ("reverse_packets", "reverse_octets"))
        return (
            f"more bytes than their packets can carry (over {MAX_PACKET_BYTES} a packet, "
            f"an IPv6 jumbogram's most), the first record {index[row].as_py()} here "
            "(packets, bytes: {}, {}; reverse {}, {}): kept as sent, damaged counters".format(
                *sent, *back
            )
        )

    _report_per_file(batch, mask, "impossible_counters", what, report, kept=True)


def _icmp_type_in_low_byte(batch: pa.RecordBatch, report: RunReport) -> pa.RecordBatch:
    """ICMPv6 records whose type/code (dst_port, type << 8 | code) has a zero high byte and
    a nonzero low one hold their type in the low byte: IOS-XR and Procera send neighbour
    discovery as 135 and 136. Read as they stand they were type 0, which ICMPv6 reserves
    (RFC 4443): no message has it, so the low byte is taken as the type, code 0, and
    counted (`icmp_type_low_byte` under repaired). ICMP is left as sent: Procera's echo
    request comes as 8, but Linux answers an echo request of code 9 (nmap's OS probe) with
    an echo reply of code 9, type 0 with a code, and which one a record is cannot be told
    from its bytes."""
    if batch.num_rows == 0:
        return batch
    protocol = batch.column("protocol").to_numpy()
    port = batch.column("dst_port").to_numpy()
    low = (protocol == 58) & (port > 0) & (port < 256)
    if not low.any():
        return batch
    _report_per_file(
        batch,
        low,
        "icmp_type_low_byte",
        lambda row: (
            "the ICMPv6 type in the low byte of the type/code (as type 0, reserved, with a "
            f"code: no such message), read as the type, code 0: the first, record "
            f"{batch.column('record_index')[row].as_py()} here, {int(port[row])} -> type "
            f"{int(port[row])}"
        ),
        report,
        kept=True,
    )
    return _with_columns(batch, dst_port=np.where(low, port << 8, port))


def _with_columns(batch: pa.RecordBatch, **values: np.ndarray) -> pa.RecordBatch:
    """`batch` with the named columns replaced by `values`, each cast to its column's type."""
    names = batch.schema.names
    columns = batch.columns
    for name, array in values.items():
        columns[names.index(name)] = pa.array(array).cast(batch.schema.field(name).type)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def _report_per_file(
    batch: pa.RecordBatch,
    mask: np.ndarray,
    reason: str,
    what: Callable[[int], str],
    report: RunReport,
    *,
    kept: bool = False,
    variant: str = "",
) -> None:
    """Count the `mask` records as `reason`, each file once at its first such record, in the
    order of those: grouped by the file's code, not by a Python pass over every record (a
    damaged file can hold millions). `what(row)` describes them from that first row; the
    report keeps the file's first (RunReport.file_records), with all its records counted,
    and tells one check of a reason from another by `variant`."""
    rows = np.flatnonzero(mask)
    # (pyarrow-stubs type an array of a numpy array of any dtype as a BooleanArray, and
    # dictionary_encode's result as its input's type)
    files = cast(
        "pa.DictionaryArray[Any, Any]",
        pc.dictionary_encode(
            batch.column("source_file").take(cast(pa.Int64Array, pa.array(rows))).cast(pa.string())
        ),
    )
    codes = files.indices.to_numpy(zero_copy_only=False)
    _, firsts, counts = np.unique(codes, return_index=True, return_counts=True)
    for at, count in sorted(zip(firsts.tolist(), counts.tolist(), strict=True)):
        row = int(rows[at])
        description = what(row)
        problem = MalformedInput(
            _records_with(description, count),
            source=files.dictionary[codes[at]].as_py(),
            offset=batch.column("source_offset")[row].as_py(),
            frame=batch.column("source_frame")[row].as_py(),
            reason=reason,
        )
        report.file_records(
            problem,
            count,
            functools.partial(_records_with, description),
            kept=kept,
            variant=variant,
        )


def _records_with(description: str, count: int) -> str:
    return f"{count} record(s) with {description}"


def _count(report: RunReport, batch: pa.RecordBatch) -> None:
    """Count rows against the file each came from: data held for a late template can arrive
    in a batch while a later file is being read."""
    report.records += batch.num_rows
    if report.twins is not None:
        report.twins.add(batch)
    sources = batch.column("source_file")
    if pa.types.is_dictionary(sources.type):
        encoded = cast("pa.DictionaryArray[Any, Any]", sources)
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        names = cast("list[str]", encoded.dictionary.to_pylist())
        for code, rows in zip(*np.unique(codes, return_counts=True), strict=True):
            report.file(names[int(code)]).records += int(rows)
    else:
        # pyarrow-stubs refuse a StructArray's to_pylist (a self type of plain values only)
        for item in cast(
            "list[dict[str, Any]]",  # {"values": ..., "counts": ...}
            pc.value_counts(sources).to_pylist(),  # type: ignore[misc]
        ):
            report.file(item["values"]).records += item["counts"]


def _capture_batches(
    path: Path,
    decoder: object,
    report: RunReport,
    batch_size: int,
    *,
    ipfix_file: bool = False,
    transports: Transports | None = None,
) -> Iterator[pa.RecordBatch]:
    from .ipfix_file import iter_ipfix_file

    pending: list[pa.RecordBatch] = []
    rows = 0
    chunk_size = max(16, min(2048, batch_size // 16))
    chunks = (
        iter_ipfix_file(path, report, chunk_size=chunk_size)
        if ipfix_file
        else iter_datagrams(path, report, chunk_size=chunk_size, transports=transports)
    )
    for chunk in chunks:
        for batch in decoder.feed(chunk):  # type: ignore[attr-defined]
            if batch.num_rows:
                pending.append(batch)
                rows += batch.num_rows
        if rows >= batch_size:
            yield from _rebatch(pending, batch_size)
            pending, rows = [], 0
    if pending:
        yield from _rebatch(pending, batch_size)


def _rebatch(batches: list[pa.RecordBatch], batch_size: int) -> Iterator[pa.RecordBatch]:
    table = pa.Table.from_batches(batches).unify_dictionaries()
    yield from table.combine_chunks().to_batches(max_chunksize=batch_size)


def _window(
    batch: pa.RecordBatch, window: tuple[int | None, int | None], report: RunReport
) -> pa.RecordBatch:
    """Keep records wholly inside [from, to], as nfdump 1.7.1's -t does: first_seen >=
    from and last_seen <= to, for captures and nfcapd files alike; the others are counted
    against their files (outside_window): they were decoded, and left out by choice."""
    start, end = window
    if (start is None and end is None) or batch.num_rows == 0:
        return batch
    first = batch.column("first_seen").cast(pa.int64()).to_numpy()
    last = batch.column("last_seen").cast(pa.int64()).to_numpy()
    keep = np.ones(batch.num_rows, dtype=bool)
    if start is not None:
        keep &= first >= start
    if end is not None:
        keep &= last <= end
    if keep.all():
        return batch
    # (pyarrow-stubs refuse a StructArray's to_pylist: a self type of plain values only)
    for item in cast(
        "list[dict[str, Any]]",
        pc.value_counts(
            batch.column("source_file").filter(pa.array(~keep)).cast(pa.string())
        ).to_pylist(),  # type: ignore[misc]
    ):
        report.outside(item["values"], item["counts"])
    # (pyarrow-stubs take no Python scalar in a compute function; pyarrow does)
    return batch.filter(pc.equal(pa.array(keep), True))  # type: ignore[call-overload]
