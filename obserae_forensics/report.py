"""RunReport: what a run decoded, what it skipped and why, per file and per exporter.

Readers never print: they count here. The CLI prints `summary()`, the manifest and the
exporters table are built from it, and tests assert on it. Every skipped unit is counted
by reason with its bytes, and the first few of each reason keep their file and offset so
a person can go and look at the bytes.
"""

from __future__ import annotations

import bisect
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    from .twins import TwinRecords

EXAMPLES_PER_REASON = 20


@dataclass
class ExporterStats:
    """Accounting of one exporter stream: (exporter address, source ID / observation domain).

    Sequence semantics follow each version: v5 counts flows, v9 export packets, IPFIX data
    records. `clock_offset_*` is exporter export time minus the capture (arrival) time.
    """

    exporter: str
    domain: int
    versions: set[int] = field(default_factory=set)  # export versions seen: 5, 9, 10
    datagrams: int = 0
    records: int = 0
    packets: int = 0
    octets: int = 0
    templates: int = 0  # template and options-template records received (incl. refreshes)
    template_changes: int = 0  # a template ID redefined with another layout
    template_withdrawals: int = 0
    options_records: int = 0
    sequence_gaps: int = 0  # number of discontinuities
    # of sequence_gaps, those nfcapd counted (its exporter stats records: failures, no loss
    # count, softflowd's IPFIX numbering among them), said apart from the captures' gaps
    nfcapd_failures: int = 0
    sequence_lost: int = 0  # units missing according to the sequence numbers
    duplicates: int = 0
    reorders: int = 0
    restarts: int = 0  # sysUptime set back (v5/v9): a reboot, numbered afresh, no loss
    undecodable_sets: int = 0
    records_without_template: int = 0
    enterprise_fields_skipped: int = 0
    sampling_rate: int = 1  # last sampling rate in force (1 = unsampled)
    # records read as unsampled because they came before their exporter's first sampling
    # declaration, when that declared a rate above 1 (routers send their sampling options
    # every few minutes: a capture begun between two has records the flows table cannot
    # scale, and says so here rather than nowhere); summed by the export reader over the
    # row's streams (ExportDecoder._count_undeclared)
    records_before_sampling: int = 0
    first_export_us: int | None = None
    last_export_us: int | None = None
    clock_offset_min_us: int | None = None
    clock_offset_max_us: int | None = None
    missing_templates: Counter[int] = field(default_factory=Counter)  # template id -> records
    # per version numbered over one transport session: its first message and what its
    # numbering expected after its last (ExportDecoder._sequence_ends)
    sequence_ends: list[dict[str, Any]] = field(default_factory=list)

    @property
    def version(self) -> int:
        """The highest export version seen (0: none). One address and domain can send
        several (v5 and v9 from one router, exports of one capture given together);
        `versions` holds them all, so a row never claims one version for another's data."""
        return max(self.versions, default=0)

    def see_export(self, export_us: int, arrival_us: int | None) -> None:
        """Track first/last export time and the exporter-minus-capture clock offset."""
        if self.first_export_us is None or export_us < self.first_export_us:
            self.first_export_us = export_us
        if self.last_export_us is None or export_us > self.last_export_us:
            self.last_export_us = export_us
        if arrival_us is not None:
            offset = export_us - arrival_us
            if self.clock_offset_min_us is None or offset < self.clock_offset_min_us:
                self.clock_offset_min_us = offset
            if self.clock_offset_max_us is None or offset > self.clock_offset_max_us:
                self.clock_offset_max_us = offset


@dataclass
class Problem:
    """One located problem, kept as an example for the summary and the manifest."""

    reason: str
    source: str
    offset: int
    frame: int | None
    message: str
    unit: str = "frame"  # what `frame` numbers: a capture's frames, an nfcapd file's blocks

    def __str__(self) -> str:
        where = f"{self.source}@{self.offset}"
        if self.frame is not None:
            where += f" ({self.unit} {self.frame})"
        return f"{where}: {self.message}"


# what a sequence number counts, said beside every loss it shows (the summary, recombine's
# run notes)
SEQUENCE_UNITS = "(v5 and IPFIX number flow records, v9 export datagrams)"


def _exporters(entries: list[dict[str, Any]], shown: int = 3) -> str:
    """'N exporter(s) (a, b, c ...)' of sequence_loss entries."""
    names = sorted({str(entry["exporter"]) for entry in entries})
    more = " ..." if len(names) > shown else ""
    return f"{len(names)} exporter(s) ({', '.join(names[:shown])}{more})"


def _listed(paths: list[str], shown: int = 5) -> str:
    """The first `shown` paths, and how many more."""
    more = f", ... {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


@dataclass
class FileStats:
    """Per input file: what kind it was and how much of it was read."""

    path: str
    format: str = ""
    size: int = 0
    compression: str = ""  # the whole file's: "gzip", "zstd" ... (readers/packed.py)
    unpacked_size: int | None = None  # then its decompressed size, which offsets count in
    units: int = 0  # frames (PCAP) or blocks (nfcapd)
    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    first_us: int | None = None
    last_us: int | None = None
    ident: str = ""  # nfcapd: the file's ident string (collector/source name)
    stat_flows: int | None = None  # nfcapd: flows/packets/bytes the file's stat record claims
    stat_packets: int | None = None
    stat_bytes: int | None = None
    aggregated_records: int = 0  # nfcapd: records standing for several flows (nfdump -a ...)
    aggregated_flows: int = 0  # the flows those records stand for
    # records left out by --from/--to (for an nfcapd file wholly outside the window, which
    # is not read, the flows its stat record claims)
    outside_window: int = 0
    # export datagrams dropped as copies of ones already read (a capture given twice under
    # two names, an exporter's resend): the file's records are not lost, they were read
    duplicate_datagrams: int = 0
    also_named: list[str] = field(default_factory=list)  # other names given for this file
    copy_of: str = ""  # the input this file is a byte-for-byte copy of (not read again)

    def read_counts(self) -> dict[str, Any]:
        """What was read from the file, as the manifest and as_dict cite it: its records,
        what was skipped in it by reason, and the records of nfdump's aggregations."""
        counts: dict[str, Any] = {
            "records": self.records,
            "skipped": dict(sorted(self.skipped.items())),
        }
        if self.aggregated_records:
            counts["aggregated_records"] = self.aggregated_records
            counts["aggregated_flows"] = self.aggregated_flows
        if self.outside_window:
            counts["outside_window"] = self.outside_window
        if self.duplicate_datagrams:
            counts["duplicate_datagrams"] = self.duplicate_datagrams
        if self.also_named:
            counts["also_named"] = list(self.also_named)
        return counts


@dataclass
class RecordExample:
    """One file's records with one problem: the first of them, how many so far, and the
    message for a count (RunReport.file_records)."""

    first: InputError
    count: int
    message: Callable[[int], str]
    unit: str = "frame"

    def problem(self) -> Problem:
        first = self.first
        return Problem(
            first.reason,
            first.source,
            first.offset,
            first.frame,
            self.message(self.count),
            self.unit,
        )


def utf8_path(text: str) -> bool:
    """Whether a path given or found is UTF-8 text (Python holds other bytes of a name as
    lone surrogates, which no Arrow column nor JSON writer takes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def path_text(path: os.PathLike[str] | str) -> str:
    """A path as text the tables and the manifest can hold: bytes of a name that are not
    UTF-8 as backslash escapes (lone surrogates broke the manifest's readers)."""
    text = os.fspath(path)
    if utf8_path(text):
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass
class RunReport:
    """What a run decoded and what it skipped. The CLI prints it; tests assert on it."""

    records: int = 0
    outside_window: int = 0  # records left out by --from/--to (FileStats.outside_window)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> units
    skipped_bytes: Counter[str] = field(default_factory=Counter)  # reason -> bytes
    ignored: Counter[str] = field(default_factory=Counter)  # other traffic: reason -> units
    ignored_bytes: Counter[str] = field(default_factory=Counter)
    # records kept with a field put right (times swapped ...): reason -> records
    repaired: Counter[str] = field(default_factory=Counter)
    # reason -> its first few problems in the input's order, with their places (_place)
    unit_examples: dict[str, list[tuple[tuple[Any, ...], Problem]]] = field(default_factory=dict)
    _said: int = 0  # problems said so far: orders those of one place as they were met
    # records of one file with one problem, reported a batch at a time (file_records)
    record_examples: dict[tuple[str, str, str], RecordExample] = field(default_factory=dict)
    files: dict[str, FileStats] = field(default_factory=dict)
    exporters: dict[tuple[str, int], ExporterStats] = field(default_factory=dict)
    # hidden entries (a leading dot) the directory walks left out, as paths
    hidden: list[str] = field(default_factory=list)
    strict: bool = False
    # the inputs' reading order (order_files), which orders the examples: (0, place) for a
    # file read, (1, path) for any other. Not the order `files` met them in: a file named
    # twice is met at discovery, the others when read, and the examples' order changed with
    # how the inputs were named (an audit)
    _file_order: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    # the records' hashes that tell files holding one export twice (twins.py): read_flows's,
    # when it reads more than one file
    twins: TwinRecords | None = field(default=None, repr=False)

    def file(self, path: str) -> FileStats:
        stats = self.files.get(path)
        if stats is None:
            stats = self.files[path] = FileStats(path)
        return stats

    def order_files(self, paths: Sequence[str]) -> None:
        """The files to read, in the order they will be read (discover_inputs's)."""
        self._file_order = {path: (0, place) for place, path in enumerate(paths)}

    def _file_key(self, source: str) -> tuple[int, int] | tuple[int, str]:
        return self._file_order.get(source) or (1, source)

    def exporter(self, exporter: str, domain: int) -> ExporterStats:
        key = (exporter, domain)
        stats = self.exporters.get(key)
        if stats is None:
            stats = self.exporters[key] = ExporterStats(exporter, domain)
        return stats

    def skip(self, error: InputError, nbytes: int = 0, count: int = 1) -> None:
        """Count a skipped unit; under --strict, stop the run with it instead."""
        self._skipped(error, nbytes, count)
        self._example(error)

    def _skipped(self, error: InputError, nbytes: int, count: int) -> None:
        if self.strict:
            error.unit = self._unit(error.source)
            raise error
        self.skipped[error.reason] += count
        self.skipped_bytes[error.reason] += nbytes  # the key, with 0 bytes (records' checks)
        self.file(error.source).skipped[error.reason] += count

    def repair(self, error: InputError, count: int = 1) -> None:
        """Count records kept with a field put right: a problem of the input said, with its
        place, but nothing lost, so --strict does not stop on it."""
        self.repaired[error.reason] += count
        self._example(error)

    def file_records(
        self,
        error: InputError,
        count: int,
        message: Callable[[int], str],
        *,
        kept: bool = False,
        variant: str = "",
    ) -> None:
        """`count` records of error.source with one problem (error: the first of them),
        counted as repair() (`kept`) or skip() count them. Checks that run a batch at a time
        call this for each batch: the file keeps one example per reason and `variant`, at
        its first record, whose `message(count)` counts all of them so far, so that the
        examples read the same whatever the batch size (one per batch, each with its own
        count, made the manifest's problems depend on --batch-size)."""
        if kept:
            self.repaired[error.reason] += count
        else:
            self._skipped(error, 0, count)
        key = (error.reason, error.source, variant)
        entry = self.record_examples.get(key)
        if entry is None:
            self.record_examples[key] = RecordExample(
                error, count, message, self._unit(error.source)
            )
        else:
            entry.count += count

    @property
    def examples(self) -> list[Problem]:
        """The problems a person can go and look at: the first EXAMPLES_PER_REASON of each
        reason, the units' in the input's order, then the files' whose records a check found
        (file_records), by reason, input file and place in the file."""
        out = [
            problem
            for _, problem in sorted(
                example for kept in self.unit_examples.values() for example in kept
            )
        ]
        taken = Counter(p.reason for p in out)

        def place(key: tuple[str, str, str]) -> tuple[Any, ...]:
            reason, source, variant = key
            first = self.record_examples[key].first
            return (reason, self._file_key(source), first.offset, first.frame or 0, variant)

        for key in sorted(self.record_examples, key=place):
            entry = self.record_examples[key]
            if taken[entry.first.reason] < EXAMPLES_PER_REASON:
                taken[entry.first.reason] += 1
                out.append(entry.problem())
        return out

    def _example(self, error: InputError) -> None:
        """Keep `error` if it is among the first EXAMPLES_PER_REASON of its reason in the
        input's order (the file's place in the reading order, then the place in it), not in
        the order the checks ran: the container's checks run on frames read ahead of the
        decoder's, by as many frames as a batch holds, so the first ones met, and their
        order, depended on --batch-size (a fuzzing run: a bad IP length in frame 21 listed
        before a bad template in frame 1)."""
        place = self._place(error.source, error.offset, error.frame)
        kept = self.unit_examples.setdefault(error.reason, [])
        if len(kept) >= EXAMPLES_PER_REASON:
            if place >= kept[-1][0]:
                return  # the usual case: read after every example kept
            kept.pop()
        # places differ (the count of problems said ends each): Problems are never compared
        bisect.insort(
            kept,
            (
                place,
                Problem(
                    error.reason,
                    error.source,
                    error.offset,
                    error.frame,
                    error.message,
                    self._unit(error.source),
                ),
            ),
        )

    def _place(self, source: str, offset: int, frame: int | None) -> tuple[Any, ...]:
        """Where a problem's unit is in the input: its file's place in the reading order
        (files not read after, by path), its place in the file, then the order the problems
        of one unit were met in."""
        self._said += 1
        return (self._file_key(source), offset, -1 if frame is None else frame, self._said)

    def _unit(self, source: str) -> str:
        """What a problem's number counts in its file: an nfcapd file's are data blocks
        (they read "(frame 2)" for block 2, found by a responder's audit)."""
        stats = self.files.get(source)
        return "block" if stats is not None and stats.format.startswith("nfcapd") else "frame"

    def outside(self, source: str, count: int) -> None:
        """Count records of `source` left out by the run's time window (--from/--to)."""
        self.outside_window += count
        self.file(source).outside_window += count

    def ignore_hidden(self, path: str) -> None:
        """A hidden entry a directory walk left out (as documented): counted and listed, so
        a report can tell that it was there (an audit: `.sensor2/` left no trace); never an
        error."""
        self.ignored["hidden_entry"] += 1
        self.hidden.append(path_text(path))

    def ignore(self, reason: str, source: str, nbytes: int, count: int = 1) -> None:
        """Count units that are not flow exports at all (other traffic): never an error."""
        self.ignored[reason] += count
        self.ignored_bytes[reason] += nbytes
        self.file(source).ignored[reason] += count

    def unignore(self, reason: str, source: str, nbytes: int) -> None:
        """Take back one unit counted as other traffic that later proved to be damage (the
        caller counts it as a problem instead)."""
        self.ignored[reason] -= 1
        self.ignored_bytes[reason] -= nbytes
        self.file(source).ignored[reason] -= 1
        for counter in (self.ignored, self.ignored_bytes, self.file(source).ignored):
            if counter[reason] == 0:
                del counter[reason]

    def skipped_problems(self) -> int:
        """Units that could not be decoded (other traffic is not a problem)."""
        return sum(self.skipped.values())

    def summary(self, manifest: bool = True) -> str:
        """The end-of-run line. Without a `manifest` (inspect writes none: its line sent
        a responder to a file that was not there, an audit) the paths not read and the
        hidden entries are named here."""
        read = sum(1 for stats in self.files.values() if stats.format)
        line = f"{self.records} flow records read from {read} file(s)"
        # the copies of files read are said below, once (a review: twice, as both)
        unread = [
            path
            for path, stats in sorted(self.files.items())
            if not stats.format and not stats.copy_of
        ]
        if unread:  # they were counted as read (an audit)
            line += f"; {len(unread)} other path(s) not read " + (
                "(manifest.json: not_read)" if manifest else f"({_listed(unread)})"
            )
        if self.outside_window:
            line += f"; {self.outside_window} outside --from/--to"
        problems = {k: v for k, v in self.skipped.items() if v}
        if problems:
            parts = ", ".join(f"{v} {k}" for k, v in sorted(problems.items()))
            line += f"; skipped: {parts}"
            if problems.get("no_template"):
                # a slice of a longer capture, sessionized alone, read nothing: the hint is
                # what to do about it (a review)
                line += (
                    " (no_template: data whose v9/IPFIX template never came in these inputs; "
                    "exporters send templates once or every few minutes, so give the captures "
                    "before a slice in the same run)"
                )
        repaired = {k: v for k, v in self.repaired.items() if v}
        if repaired:
            parts = ", ".join(f"{v} {k}" for k, v in sorted(repaired.items()))
            line += f"; kept, a problem noted (put right where it can be): {parts}"
        ignored = {
            k: v
            for k, v in self.ignored.items()
            if v and k not in ("hidden_entry", "duplicate_file")
        }
        if ignored:
            parts = ", ".join(f"{v} {k}" for k, v in sorted(ignored.items()))
            line += f"; not flow exports: {parts}"
        copies = [
            f"{path} (a copy of {stats.copy_of})"
            for path, stats in sorted(self.files.items())
            if stats.copy_of
        ]
        if copies:
            line += (
                f"; {len(copies)} nfcapd file(s) not read, byte for byte copies of others "
                "read (duplicate_file"
                + (", manifest.json: not_read)" if manifest else f": {_listed(copies)})")
            )
        if self.hidden:
            line += (
                f"; {len(self.hidden)} hidden entr{'y' if len(self.hidden) == 1 else 'ies'}"
                " of the directories left out "
                + ("(manifest.json: hidden)" if manifest else f"({_listed(sorted(self.hidden))})")
            )
        early = {
            key: stats.records_before_sampling
            for key, stats in self.exporters.items()
            if stats.records_before_sampling
        }
        if early:
            line += (
                f"; {sum(early.values())} records of {len(early)} exporter(s) came "
                "before their exporter declared its sampling rate and read as unsampled "
                "(exporters table: records_before_sampling)"
            )
        loss = self.sequence_loss()
        lost = [entry for entry in loss if entry["lost"] or entry["gaps"]]
        if lost:
            line += (
                f"; the sequence numbers of {_exporters(lost)} show "
                f"{sum(entry['gaps'] for entry in lost)} gap(s), "
                f"{sum(entry['lost'] for entry in lost)} unit(s) lost {SEQUENCE_UNITS}: the "
                "inputs lack part of what was exported (exporters table: sequence_gaps, "
                "sequence_lost)"
            )
        counted = [entry for entry in loss if entry["nfcapd_failures"]]
        if counted:
            # an nfcapd file keeps nfcapd's count of failures, no loss: it counts softflowd's
            # IPFIX numbering and a late datagram as failures too, so no loss is claimed (and
            # they are not the captures' gaps: a capture's 1 gap beside an nfcapd file's 8
            # failures of one exporter read "9 gap(s)", a review)
            line += (
                f"; nfcapd counted {sum(entry['nfcapd_failures'] for entry in counted)} sequence "
                f"failure(s) of {_exporters(counted)}: a loss, a late datagram or an "
                "exporter's numbering it misreads (softflowd's IPFIX) (exporters table: "
                "nfcapd_failures)"
            )
        twins = self.twin_inputs()
        if twins:
            first = twins[0]
            line += (
                f"; {len(twins)} pair(s) of files hold the same flow records, such as "
                f"{first['files'][0]} and {first['files'][1]} ({first['twin_records']} of "
                f"{min(first['records_compared'])} records compared alike in exporter, "
                "endpoints, times and counters): one export read twice (a capture and the "
                "nfcapd files made from it, two collectors' files), whose sessions count "
                "its traffic twice; give one copy"
                + (" (manifest.json: twin_inputs)" if manifest else "")
            )
        duplicates = sum(f.duplicate_datagrams for f in self.files.values())
        if duplicates:
            line += (
                f"; {duplicates} duplicate datagram(s) dropped (copies of ones already read: "
                "a capture given twice, an exporter's resend)"
            )
        aliases = sum(len(f.also_named) for f in self.files.values())
        if aliases:
            line += f"; {aliases} other name(s) of files given twice, each file read once"
        aggregated = sum(f.aggregated_records for f in self.files.values())
        if aggregated:
            flows = sum(f.aggregated_flows for f in self.files.values())
            line += (
                f"; {aggregated} records are aggregates of {flows} flows (nfdump "
                "aggregation: each is one record in its session)"
            )
        return line

    def twin_inputs(self) -> list[dict[str, Any]]:
        """The pairs of files read that hold the same flow records (twins.py), in the
        inputs' reading order."""
        return [] if self.twins is None else self.twins.pairs(self._file_key)

    def sequence_loss(self) -> list[dict[str, Any]]:
        """Per exporter and domain whose sequence numbers went missing: gaps and units
        lost. Whether the flow evidence is whole is what a report must state, and the
        exporters table alone said it: the summary and the manifest did not (a review)."""
        return [
            {
                "exporter": stats.exporter,
                "domain": stats.domain,
                "gaps": stats.sequence_gaps - stats.nfcapd_failures,
                "lost": stats.sequence_lost,
                "nfcapd_failures": stats.nfcapd_failures,
            }
            for _, stats in sorted(self.exporters.items())
            if stats.sequence_gaps or stats.sequence_lost
        ]

    def sequence_ends(self) -> list[dict[str, Any]]:
        """Every exporter stream's first message and the number it expected next, for
        `recombine` to compare one run's end with the next run's start."""
        return [end for _, stats in sorted(self.exporters.items()) for end in stats.sequence_ends]

    def reason_counts(self) -> dict[str, dict[str, int]]:
        """Units by reason, as the manifest's counts give them: skipped (and their bytes),
        repaired, ignored (and their bytes)."""
        return {
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_bytes": dict(sorted(self.skipped_bytes.items())),
            "repaired": dict(sorted(self.repaired.items())),
            "ignored": dict(sorted(self.ignored.items())),
            "ignored_bytes": dict(sorted(self.ignored_bytes.items())),
        }

    def as_dict(self) -> dict[str, Any]:
        """Plain data for manifest.json."""
        return {
            "records": self.records,
            "outside_window": self.outside_window,
            **self.reason_counts(),
            "examples": [str(p) for p in self.examples],
            "files": {
                path: {
                    "format": f.format,
                    "size": f.size,
                    **(
                        {"compression": f.compression, "unpacked_size": f.unpacked_size}
                        if f.compression
                        else {}
                    ),
                    "units": f.units,
                    **f.read_counts(),
                    "ignored": dict(sorted(f.ignored.items())),
                }
                for path, f in sorted(self.files.items())
            },
        }
