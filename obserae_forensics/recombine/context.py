"""The datagrams an export of v9/IPFIX datagrams needs beside its own to decode again.

A data set is read with the template its exporter defined last (RFC 7011 §8: of its
transport session; the decoder falls back to the exporter's latest from another port, see
readers/exports.py), and a record's sampling rate, or its times, may come from options
data sent long before it. `recombine --export-pcap` writes a conversation's datagrams;
without the datagrams that defined their templates and carried the options data in force,
the file does not decode on its own, or decodes to other values.

The surprising thing: a run's decoder keeps templates and options across its capture
files, and evidence is rotated (`tcpdump -G/-C`, a collector's files by the minute), so
what an export needs often lies in an earlier file of the run; and a data set that came
before its template (the capture began between the two: akvorado's `data` and `template`
captures) was read when the template came, in a later datagram, maybe a later file.

What is taken: a pass over the run's captures, from the first one holding a wanted
datagram, takes for each wanted datagram the latest definition of each template its data
sets use (its transport session's, else its exporter's from any port), and the latest data
of each options table of its exporter (an id and its layout: an id defined again as another
table leaves the first one's rate in force, as the decoder does), with that data's own
template. Data a template came after (held by the decoder) take the datagram that defined
it and the options in force then; options data sent before its options template count from
that template on.

How far back: the pass starts again further back (one file, then two, four ...; at worst
from the run's first file) while it is not enough: a template a wanted data set uses was
defined nowhere before it in the pass, or one its exporter's data sets use was defined
nowhere in the pass (an options template sent once, at the exporter's start), or an
options table's data came only before the pass, or a wanted datagram was not found whole
(its first fragments in the file before); and, when the records the run read are given,
while the wanted datagrams, decoded alone with what the pass chose, do not give those
records (a table the pass could not see).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..readers import settled
from ..readers.datagrams import Datagram
from ..readers.exports import ExportDecoder, ExportSets, OptionsLayout, export_sets
from ..readers.pcap import Transports, iter_datagrams, new_transports
from ..report import RunReport

Stream = tuple[str, int, int]  # exporter, version (9, 10), source ID / observation domain
Place = tuple[int, int]  # (index of the file among the run's captures, datagram offset)
# what a record must decode to again from the export alone (addresses follow the template
# that gives these; the flows table holds them as text, the decoder as bytes)
COMPARED = ("first_seen", "last_seen", "protocol", "src_port", "dst_port", "packets",
            "octets", "reverse_packets", "reverse_octets", "sampling_rate")
# a capture's datagrams, read with the pass's IP fragments and TCP/SCTP streams, which go on
# from one file into the next as in the run
Reading = Callable[[Path, Transports], Iterator[list[Datagram]]]


KEYS = ("file", "offset", "record")


def record_table(table: pa.Table | pa.RecordBatch, files: dict[str, int],
                 moved: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> pa.Table:
    """The COMPARED values of a flow table's records, keyed by (file index, datagram offset,
    record_index): `files` gives a source_file's index (records of other files are left
    out); `moved` (offsets in an export, sorted; the file index and offset of the datagram
    each began as) places the records of an export by where their datagrams came from.
    Arrow columns, not Python objects: an export can hold millions of records."""
    names = table.column("source_file")
    if pa.types.is_dictionary(names.type):
        names = names.cast(names.type.value_type)
    offsets = table.column("source_offset").to_numpy(zero_copy_only=False).astype(np.int64)
    if moved is None:
        encoded = pc.dictionary_encode(names)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        lookup = np.array([files.get(name, -1) for name in encoded.dictionary.to_pylist()]
                          + [-1], dtype=np.int64)
        indices = encoded.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
        file_index = lookup[indices]
    elif len(moved[0]) == 0:
        file_index = np.full(len(offsets), -1, dtype=np.int64)
    else:
        export_offsets, origin_file, origin_offset = moved
        at = np.minimum(np.searchsorted(export_offsets, offsets), len(export_offsets) - 1)
        found = export_offsets[at] == offsets
        file_index = np.where(found, origin_file[at], -1)
        offsets = np.where(found, origin_offset[at], 0)
    keep = pa.array(file_index >= 0)
    columns = {"file": pa.array(file_index, pa.int64()),
               "offset": pa.array(offsets, pa.int64()),
               "record": table.column("record_index").cast(pa.int64())}
    for name in COMPARED:
        column = table.column(name)
        columns[name] = column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column
    return pa.table(columns).filter(keep)


def differing(expected: pa.Table, decoded: pa.Table) -> tuple[int, tuple[int, int, int] | None]:
    """How many expected records come out otherwise (or not at all) in `decoded`, and the
    first of them by (file, offset, record)."""
    if expected.num_rows == 0:
        return 0, None
    got = decoded.rename_columns([name if name in KEYS else f"got_{name}"
                                  for name in decoded.column_names])
    joined = expected.join(got, keys=list(KEYS), join_type="left outer")
    same = pa.array(np.ones(joined.num_rows, dtype=bool))
    for name in COMPARED:
        same = pc.and_(same, pc.fill_null(pc.equal(joined[name], joined[f"got_{name}"]),
                                          False))
    wrong = joined.filter(pc.invert(same)).select(list(KEYS))
    if wrong.num_rows == 0:
        return 0, None
    first = wrong.sort_by([(key, "ascending") for key in KEYS]).slice(0, 1).to_pylist()[0]
    return wrong.num_rows, (first["file"], first["offset"], first["record"])


@dataclass
class _Pass:
    """What one pass over the run's captures, from one of them on, has seen."""

    start: int
    needed: set[Place] = field(default_factory=set)
    own: dict[tuple[Stream, int, int], Place] = field(default_factory=dict)  # + port, id
    latest: dict[tuple[Stream, int], Place] = field(default_factory=dict)  # any port
    ports: dict[Stream, set[int]] = field(default_factory=dict)  # that defined templates
    # the layout of each id an options template defines now
    layout: dict[tuple[Stream, int], OptionsLayout] = field(default_factory=dict)
    # every options table (id, layout CRC) of the exporter the pass saw defined: the latest
    # data of each is in force (an id defined again with another layout is another table;
    # the rate an earlier table declared stays in force while the new one declares none)
    tables: dict[Stream, set[tuple[int, int]]] = field(default_factory=dict)
    # per table of a stream, per scope (a sampler's, an interface's: the bytes of a
    # record's scope fields), the latest data and the datagram that defined its template
    option_data: dict[tuple[Stream, int, int], dict[bytes, tuple[Place, Place | None]]] = (
        field(default_factory=dict))
    waiting: set[tuple[Stream, int, int]] = field(default_factory=set)  # wanted, undefined
    undefined: set[tuple[Stream, int]] = field(default_factory=set)  # used, defined nowhere
    # the latest data of a template not defined yet, which the decoder holds until it is:
    # options data so held (sent before its options template) is in force once it comes
    held: dict[tuple[Stream, int], Place] = field(default_factory=dict)
    wanted_streams: set[Stream] = field(default_factory=set)
    seen: set[Place] = field(default_factory=set)  # the wanted datagrams found
    passed: set[Place] = field(default_factory=set)  # wanted messages over TCP or SCTP
    kept: dict[Place, Datagram] = field(default_factory=dict)  # those that may be needed
    limit: int = 4096  # kept beyond it: forget what nothing refers to (keep())
    complete: bool = True  # False: an earlier file may hold what this pass did not see

    def template(self, stream: Stream, port: int, template_id: int) -> Place | None:
        """As the decoder finds it: the transport session's own, else the exporter's latest
        from another port, but for a port that defines templates of its own."""
        own = self.own.get((stream, port, template_id))
        if own is not None or port in self.ports.get(stream, ()):
            return own
        return self.latest.get((stream, template_id))

    def want(self, stream: Stream, port: int, data: frozenset[int], defined: frozenset[int]
             ) -> None:
        """A wanted datagram: the templates of its data sets (not those it brings itself)
        and the latest options data of its exporter, with that data's template."""
        self.wanted_streams.add(stream)
        for template_id in data - defined:
            place = self.template(stream, port, template_id)
            if place is None:
                self.waiting.add((stream, port, template_id))
                self.complete = False
            else:
                self.needed.add(place)
        self.options_in_force(stream)

    def options_in_force(self, stream: Stream) -> None:
        """The latest data of each of the exporter's options tables, with the datagram that
        defined its template: what gives a record decoded now its sampling rate, its boot
        time."""
        for template_id, crc in self.tables.get(stream, ()):
            found = self.option_data.get((stream, template_id, crc))
            if not found:
                self.complete = False  # its options data came before the pass began
                continue
            self.needed.update(place for pair in found.values() for place in pair
                               if place is not None)

    def see(self, stream: Stream, port: int, place: Place, sets: ExportSets, payload: bytes
            ) -> bool:
        """Any datagram, after what it is wanted for: the templates it defines, the options
        data it carries. Whether it may be needed later."""
        defined = sets.templates | sets.options
        if defined:
            self.ports.setdefault(stream, set()).add(port)
        layouts = {layout.template_id: layout for layout in sets.layouts}
        for template_id in defined:
            self.own[stream, port, template_id] = self.latest[stream, template_id] = place
            self.undefined.discard((stream, template_id))
            layout = layouts.get(template_id)
            if layout is None:  # a flow template now: its data are flows
                self.layout.pop((stream, template_id), None)
                self.held.pop((stream, template_id), None)
                continue
            self.layout[stream, template_id] = layout
            self.tables.setdefault(stream, set()).add((template_id, layout.crc))
            waited = self.held.pop((stream, template_id), None)
            if waited is not None:  # options data sent before its template, read now
                self.option_data.setdefault((stream, template_id, layout.crc), {})[b""] = (
                    waited, place)
        # held data sets are read at the datagram that defines their template (another
        # port's too: the decoder's fallback), with the options in force then
        resolved = [key for key in self.waiting if key[0] == stream and key[2] in defined]
        for key in resolved:
            self.waiting.discard(key)
            self.needed.add(place)
        if resolved:
            self.options_in_force(stream)
        carries = False
        for template_id, start, end in sets.sets:
            layout = self.layout.get((stream, template_id))
            if layout is not None:
                carries = True
                source = (place, None if template_id in defined
                          else self.template(stream, port, template_id))
                scopes = self.option_data.setdefault((stream, template_id, layout.crc), {})
                for scope in _scopes(payload, start, end, layout):
                    scopes[scope] = source
            elif template_id not in defined and self.template(
                    stream, port, template_id) is None:
                self.undefined.add((stream, template_id))
                self.held[stream, template_id] = place
                carries = True
        return bool(defined) or carries

    def keep(self, place: Place, datagram: Datagram) -> None:
        """Keep a datagram the export may need; forget those nothing refers to any more
        once they are twice what was live at the last count (an exporter that sends
        templates in every datagram): amortised, whatever the live ones number."""
        self.kept[place] = datagram
        if len(self.kept) > self.limit:
            live = {*self.own.values(), *self.latest.values(), *self.needed, *self.seen,
                    *self.held.values()}
            live.update(place for scopes in self.option_data.values()
                        for pair in scopes.values() for place in pair if place is not None)
            self.kept = {place: kept for place, kept in self.kept.items() if place in live}
            self.limit = max(4096, 2 * len(self.kept))


def template_context(files: Sequence[Path | None], wanted: dict[int, set[int]],
                     expected: pa.Table | None = None, reading: Reading | None = None,
                     check: Callable[[int], None] | None = None) -> dict[int, set[int]]:
    """The datagrams, by file index, that the `wanted` ones (file index among the run's
    captures `files`, in the order the run read them -> datagram offsets) need beside them
    (the module's docstring says how far back it looks). `expected`: the records the run
    read from the wanted datagrams (record_table), which the search goes back for until
    the chosen datagrams give them. `check(index)` is called before a file is first read
    (that it is the file the run read). A file that is None (no longer found) is passed
    over; messages over TCP or SCTP are neither wanted nor added (they have no datagram).

    Passes begin one file further back, then two, four ..., and never fewer than the wanted
    files span (an export of many conversations across the run goes back to its start at
    the second pass, not after log2(files) passes over all of it); a pass that has all it
    looked for and still decodes otherwise is followed by one from the run's start only
    (what no pass found, or what depends on records outside the export, is not found by
    going back a file at a time)."""
    if not wanted:
        return {}
    checked: set[int] = set()

    def checking(index: int) -> None:
        if check is not None and index not in checked:
            check(index)
            checked.add(index)

    start, step = min(wanted), max(1, max(wanted) - min(wanted) + 1)
    while True:
        state = _pass(files, wanted, start, reading or _datagrams, checking)
        if start == 0 or (state.complete and (expected is None or _agrees(state, expected))):
            break
        start = 0 if state.complete else max(0, start - step)
        step *= 2
    found: dict[int, set[int]] = {}
    for index, offset in state.needed:
        if offset not in wanted.get(index, ()):
            found.setdefault(index, set()).add(offset)
    return found


def _scopes(payload: bytes, start: int, end: int, layout: OptionsLayout) -> Iterator[bytes]:
    """The scope of each record of an options data set (payload[start:end]): the rate of
    one sampler or interface stays in force while another's is declared. b"" when records
    cannot be told apart (no scope, a variable-length field): the set's latest stands for
    all."""
    if not layout.scope or not layout.size:
        yield b""
        return
    for at in range(start, end - layout.size + 1, layout.size):
        yield payload[at:at + layout.scope]


def _datagrams(path: Path, transports: Transports) -> Iterator[list[Datagram]]:
    return iter_datagrams(path, transports.report, transports=transports)


def _pass(files: Sequence[Path | None], wanted: dict[int, set[int]], start: int,
          reading: Reading, check: Callable[[int], None]) -> _Pass:
    state = _Pass(start)
    transports = new_transports(RunReport())
    last_file = max(wanted)
    last_offset = max(wanted[last_file])
    for index in range(start, len(files)):
        path = files[index]
        if index > last_file and not state.waiting:
            break
        if path is None:
            continue
        check(index)
        if not _read(state, index, reading(path, transports), wanted.get(index, set()),
                     (last_file, last_offset)):
            break
    # a wanted datagram not found whole: its first fragments are in a file before the pass
    found = state.seen | state.passed
    if any((index, offset) not in found for index, offsets in wanted.items()
           for offset in offsets):
        state.complete = False
    # from the run's first file there is nothing further back to look in: what is still
    # undefined never came (no_template, as the run counted it)
    state.complete = start == 0 or (state.complete and not any(
        stream in state.wanted_streams for stream, _ in state.undefined))
    return state


def _read(state: _Pass, index: int, chunks: Iterable[list[Datagram]], mine: set[int],
          last: Place) -> bool:
    """One file of a pass; False once the pass is over (past the last wanted datagram,
    nothing waiting for a template, or a pass that began too late, done again anyway)."""
    for chunk in chunks:
        for datagram in chunk:
            place = (index, datagram.offset)
            if place > last and (not state.waiting or state.start > 0):
                return False
            if datagram.connection:
                if datagram.offset in mine:
                    state.passed.add(place)
                continue
            sets = export_sets(datagram.payload)
            if sets is None:
                continue
            stream = (datagram.exporter, sets.version, sets.domain)
            port = datagram.transport
            wanted = datagram.offset in mine
            if wanted:
                state.want(stream, port, sets.data, sets.templates | sets.options)
                state.seen.add(place)
            if state.see(stream, port, place, sets, datagram.payload) or wanted:
                state.keep(place, datagram)
    return True


def _agrees(state: _Pass, expected: pa.Table) -> bool:
    """Decode the wanted datagrams and what the pass chose, alone, in capture order: do the
    expected records of the wanted datagrams found come out as the run read them?"""
    chosen = sorted(state.needed | state.seen)
    report = RunReport()
    decoder = ExportDecoder(report)
    batches: list[pa.RecordBatch] = []
    by_file: dict[int, list[Datagram]] = {}
    for place in chosen:
        if place in state.kept:
            by_file.setdefault(place[0], []).append(state.kept[place])
    for index, datagrams in sorted(by_file.items()):  # the decoder takes a file at a time
        # the file's index stands for its name, so that records say which file they came from
        batches += decoder.feed([datagram._replace(source=str(index))
                                 for datagram in datagrams])
    batches += decoder.finish()
    files = {str(index): index for index in by_file}
    decoded = pa.concat_tables([record_table(settled(batch, report), files)
                                for batch in batches] or [expected.slice(0, 0)])
    seen = np.array(sorted(index << 40 | offset for index, offset in state.seen),
                    dtype=np.int64)
    keys = (expected["file"].to_numpy() << 40) | expected["offset"].to_numpy()
    return differing(expected.filter(pa.array(np.isin(keys, seen))), decoded)[0] == 0
