"""The datagrams an export of v9/IPFIX datagrams needs beside its own to decode again.

A data set is read with the template its exporter defined last (RFC 7011 §8: of its
transport session; the decoder falls back to the exporter's latest from another port, see
readers/scope.py, whose rules this search keeps with the same class), and a record's
sampling rate, or its times, may come from options data sent long before it.
`recombine --export-pcap` writes a conversation's datagrams; without the datagrams that
defined their templates and carried the options data in force, the file does not decode
on its own, or decodes to other values.

The surprising thing: a run's decoder keeps templates and options across its capture
files, and evidence is rotated (`tcpdump -G/-C`, a collector's files by the minute), so
what an export needs often lies in an earlier file of the run; and a data set that came
before its template (the capture began between the two: akvorado's `data` and `template`
captures) was read when the template came, in a later datagram, maybe a later file.

What is taken: a pass over the run's captures, from the first one holding a wanted
datagram, takes for each wanted datagram the latest definition of each template its data
sets use (as ExportDecoder.template finds it: its transport session's, else its exporter's
from another port, for a port that defines none or took over from that one), and, for
each thing options records change in the decoder (exports.options_effects: the exporter's
sampling rate, each sampler's or interface's, its boot time), the latest datagram that
changed it, with that datagram's options template; options records that change nothing
are not needed. Data a template came after (held by the decoder) take the datagram that
defined it and the options in force then; options data sent before its options template
take effect from that template on. Each message is walked set by set, as the decoder walks
it: a data set before its message's own definition of its id reads the port's one
before (a port with none of its own holds it to the message's end, as the decoder
does, and reads the message's). A
datagram taken for its options data takes the definitions they were read with: without
them the export would hold those data and read them later, in another order.

How far back: the pass starts again further back (one file, then two, four ...; at worst
from the run's first file) while it is not enough: a template a wanted data set uses was
defined nowhere before it in the pass, or one its exporter's data sets use was defined
nowhere in the pass (an options template sent once, at the exporter's start), or a wanted
datagram was not found whole (its first fragments in the file before); and, when the
records the run read are given, while the wanted datagrams, decoded alone with what the
pass chose, do not give those records (options the pass could not see: a sampling rate
declared once, long before). A port whose wanted data read another port's template, as a
port that defines none, and which then defines templates in the pass, may have defined
that one too before the pass: that pass is not enough either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..addresses import address_matrix, address_texts
from ..readers import settled
from ..readers.datagrams import Datagram
from ..readers.exports import (
    PENDING_INDEX_STRIDE,
    ExportDecoder,
    ExportSets,
    export_messages,
    options_effects,
)
from ..readers.pcap import Transports, iter_datagrams, new_transports
from ..readers.scope import TemplateScope
from ..readers.templates import Template
from ..report import RunReport

if TYPE_CHECKING:
    import numpy.typing as npt

Stream = tuple[str, int, int]  # exporter, version (9, 10), source ID / observation domain
Place = tuple[int, int]  # (index of the file among the run's captures, datagram offset)
# what a record must decode to again from the export alone (addresses compared as text:
# the flows table holds them so, the decoder as 16 bytes)
COMPARED = (
    "first_seen",
    "last_seen",
    "src_addr",
    "dst_addr",
    "protocol",
    "src_port",
    "dst_port",
    "packets",
    "octets",
    "reverse_packets",
    "reverse_octets",
    "sampling_rate",
)
# a capture's datagrams, read with the pass's IP fragments and TCP/SCTP streams, which go on
# from one file into the next as in the run
Reading = Callable[[Path, Transports], Iterator[list[Datagram]]]
HELD = 4096  # data held for a template not yet defined, per port and id (the newest kept)
# datagrams a pass keeps before it first forgets those nothing refers to (keep()); how often
# it forgets, not what: a module constant, so a test reaches the forgetting in a few dozen
FORGET_PAST = 4096


KEYS = ("file", "offset", "record")


def record_table(
    table: pa.Table | pa.RecordBatch,
    files: dict[str, int],
    moved: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
) -> pa.Table:
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
        codes = cast("pa.DictionaryArray[Any, Any]", encoded)
        dictionary = cast(list[str], codes.dictionary.to_pylist())  # (nulls are in none)
        lookup = np.array([files.get(name, -1) for name in dictionary] + [-1], dtype=np.int64)
        indices = codes.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
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
    columns: dict[str, pa.Array[Any] | pa.ChunkedArray[Any]] = {
        "file": pa.array(file_index, pa.int64()),
        "offset": pa.array(offsets, pa.int64()),
        "record": table.column("record_index").cast(pa.int64()),
    }
    for name in COMPARED:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        elif pa.types.is_fixed_size_binary(column.type):  # the decoder's; the table's is text
            column = pa.array(address_texts(address_matrix(column)), pa.string())
        elif pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        columns[name] = column
    # pa.table(columns) hands a dict to from_pydict, whose stubs (not pa.table's) take
    # chunked arrays
    return pa.Table.from_pydict(columns).filter(keep)


def differing(expected: pa.Table, decoded: pa.Table) -> tuple[int, tuple[int, int, int] | None]:
    """How many expected records come out otherwise (or not at all) in `decoded`, and the
    first of them by (file, offset, record). Each is compared with the first decoded record
    of its key (an export holds each datagram once); found by sorting both sides' keys
    together, which holds ~50 bytes a record where a hash join held ~400.

    The key is (file, offset, record), but in a datagram where either side numbers a record
    as held for its template (PENDING_INDEX_STRIDE on, after the datagram's other records),
    the record number says how the decoder came to it, not which record it is: the k-th
    record of those values in the datagram is matched with the k-th of the same values
    (one left over is one decoded otherwise). A run whose capture began between an
    exporter's data and its template refresh held the data; exported with the run before
    it, whose datagram defined the template first, they decoded at once, numbered from 0,
    and all came out "decoded otherwise" (a review: 6 of 22, the export correct)."""
    if expected.num_rows == 0:
        return 0, None
    matched = _matched(_match_keys(expected, decoded), expected.num_rows)
    # (the stubs type pa.array of any ndarray as a BooleanArray: these are positions)
    got = decoded.take(cast(pa.Int64Array, pa.array(matched, mask=matched < 0)))
    same = np.ones(expected.num_rows, dtype=bool)
    for name in COMPARED:
        # (x.fill_null(v) is pc.fill_null(x, v), which the stubs type as coalesce: Arrow
        # values only)
        equal = pc.equal(expected[name], got[name]).fill_null(False)
        same &= np.asarray(equal.to_numpy(zero_copy_only=False), dtype=bool)
    wrong = np.flatnonzero(~same)
    if len(wrong) == 0:
        return 0, None
    keys = [expected[key].to_numpy()[wrong] for key in KEYS]
    first = int(wrong[np.lexsort(keys[::-1])[0]])
    return len(wrong), cast(
        tuple[int, int, int], tuple(int(expected[key][first].as_py()) for key in KEYS)
    )


def _match_keys(expected: pa.Table, decoded: pa.Table) -> list[npt.NDArray[np.int64]]:
    """The keys records are matched by, expected rows then decoded ones: (file, offset,
    record); in a datagram with a held record on either side (differing), (file, offset,
    its values' code, which of the datagram's records of those values on its side)."""
    count = expected.num_rows
    keys = [
        np.concatenate([expected[key].to_numpy(), decoded[key].to_numpy()]).astype(
            np.int64, copy=False
        )
        for key in KEYS
    ]
    held = keys[2] >= PENDING_INDEX_STRIDE
    if not held.any():
        return keys  # (the usual export: no fourth key to hold)
    datagram, _ = _groups(keys[:2])
    rows = np.flatnonzero(np.isin(datagram, datagram[held]))
    mine, theirs = rows[rows < count], rows[rows >= count] - count
    codes = []
    for name in COMPARED:
        column = expected[name].take(mine).combine_chunks()
        other = decoded[name].take(theirs).combine_chunks()
        if other.type != column.type:
            other = other.cast(column.type)
        encoded = cast(
            "pa.DictionaryArray[Any, Any]",
            pc.dictionary_encode(pa.concat_arrays([column, other])),
        )
        codes.append(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False))
    values, _ = _groups(codes)
    side = (rows < count).astype(np.int64)
    _, nth = _groups([side, datagram[rows], values])
    value_key = np.zeros(len(keys[0]), dtype=np.int64)
    value_key[rows] = values
    keys[2][rows] = nth
    return [keys[0], keys[1], value_key, keys[2]]


def _groups(
    keys: Sequence[npt.NDArray[np.int64]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per row, a number shared by the rows of equal keys, and its place among them (in
    row order: lexsort is stable)."""
    order = np.lexsort(keys[::-1])
    starts = np.zeros(len(order), dtype=bool)
    starts[:1] = True
    for key in keys:
        ordered = key[order]
        starts[1:] |= ordered[1:] != ordered[:-1]
    position = np.arange(len(order))
    group_start = np.maximum.accumulate(np.where(starts, position, 0))
    group, nth = np.empty(len(order), np.int64), np.empty(len(order), np.int64)
    group[order] = np.cumsum(starts) - 1
    nth[order] = position - group_start
    return group, nth


def _matched(keys: list[npt.NDArray[np.int64]], count: int) -> npt.NDArray[np.int64]:
    """Per expected row (the first `count` of the keys), the first decoded row of its
    keys, or -1."""
    group, _ = _groups(keys)
    decoded = group[count:]
    none = len(decoded)
    first = np.full(int(group.max()) + 1 if len(group) else 0, none, dtype=np.int64)
    np.minimum.at(first, decoded, np.arange(none))  # each group's first decoded row
    return np.where(first == none, -1, first)[group[:count]]


@dataclass
class _Pass:
    """What one pass over the run's captures, from one of them on, has seen."""

    needed: set[Place] = field(default_factory=set)
    # per stream, the decoder's own rules (readers/scope.py: which port's definition a data
    # set reads, take-overs, duplicates), each definition kept as the datagram that brought it
    scopes: dict[Stream, TemplateScope[Place]] = field(default_factory=dict)
    # the newest datagram defining each (stream, port, id), refreshes included: the nearest
    # one to take
    own: dict[tuple[Stream, int, int], Place] = field(default_factory=dict)
    # the datagram that first made a port one that defines templates: without it in the
    # export, the port would take another's templates where the run's waited for its own
    first_def: dict[tuple[Stream, int], Place] = field(default_factory=dict)
    # where each port began and the exporter's datagram before it: an export without the
    # datagrams between them has a longer silence there, which the decoder can take for a
    # restart the run never saw (a port reading another's templates)
    entry: dict[tuple[Stream, int], tuple[Place, Place | None]] = field(default_factory=dict)
    last_place: dict[Stream, Place] = field(default_factory=dict)
    # the options templates in force, per (stream, port, id)
    option_template: dict[tuple[Stream, int, int], Template] = field(default_factory=dict)
    # what options records change (exports.options_effects: the exporter's rate, a sampler's
    # or interface's, its boot time): the value, the datagram that set it to that value
    # (a record repeating it changes nothing) and its template's datagram
    effects: dict[Stream, dict[tuple[object, ...], tuple[int, Place, Place | None]]] = field(
        default_factory=dict
    )
    waiting: set[tuple[Stream, int, int]] = field(default_factory=set)  # wanted, undefined
    undefined: set[tuple[Stream, int]] = field(default_factory=set)  # used, defined nowhere
    # ports whose wanted data read another port's definition as ports that define none: one
    # seen to define templates later in the pass may have defined its own before the pass
    borrowed: set[tuple[Stream, int]] = field(default_factory=set)
    # the data of a template not defined yet, which the decoder holds until it is (the
    # newest HELD of each): options data so held take effect, in order, once it comes
    held: dict[tuple[Stream, int, int], list[Place]] = field(default_factory=dict)
    wanted_streams: set[Stream] = field(default_factory=set)
    seen: set[Place] = field(default_factory=set)  # the wanted datagrams found
    passed: set[Place] = field(default_factory=set)  # wanted messages over TCP or SCTP
    kept: dict[Place, Datagram] = field(default_factory=dict)  # those that may be needed
    # kept beyond it: forget what nothing refers to (keep())
    limit: int = field(default_factory=lambda: FORGET_PAST)
    complete: bool = True  # False: an earlier file may hold what this pass did not see
    # the datagrams whose definitions each datagram's options data were read with, and, for
    # data it held for its port's own, the one that made its port one with templates of its
    # own: in the export without them, it would hold its options data until a later
    # definition and apply them then, in another order than the run's, or read another
    # port's at once (with_definitions)
    reads: dict[Place, set[Place]] = field(default_factory=dict)

    def scope(self, stream: Stream) -> TemplateScope[Place]:
        found = self.scopes.get(stream)
        if found is None:
            found = self.scopes[stream] = TemplateScope()
        return found

    def duplicate(self, stream: Stream, sets: ExportSets, payload: bytes) -> bool:
        """Whether the decoder drops this message as a copy of one it decoded."""
        return self.scope(stream).duplicate(sets.sequence, payload[sets.span[0] : sets.span[1]])

    def arrive(self, stream: Stream, port: int, arrival_us: int, place: Place) -> None:
        """The decoder's bookkeeping of a datagram's transport session, for take-overs; and
        where each port began, after which datagram of its exporter (entry)."""
        if self.scope(stream).arrive(port, arrival_us):
            self.entry[stream, port] = (place, self.last_place.get(stream))
        self.last_place[stream] = place

    def message(
        self,
        stream: Stream,
        port: int,
        place: Place,
        sets: ExportSets,
        payload: bytes,
        wanted: bool,
    ) -> bool:
        """One message, its sets walked in order as the decoder walks them. A wanted one
        takes the definitions its data sets read and the options in force for its exporter;
        any one brings definitions and options data. Whether its datagram may be needed
        later (it defines templates, or carries options data or data held for a template)."""
        scope = self.scope(stream)
        if wanted:
            self.wanted_streams.add(stream)
            if len(scope.seen_ports) > 1 and port in scope.ports:
                # several ports, this one with templates of its own: whether it took over
                # from another is decided at its first datagram, by the silence before it
                entry = self.entry.get((stream, port))
                if entry is not None:
                    self.needed.update(place for place in entry if place is not None)
            # the options in force as the message begins (its own options data, taken
            # below, may change them for the sets after it)
            self.options_in_force(stream)
        defined = sets.templates | sets.options
        if defined and port not in scope.ports:
            self.first_def[stream, port] = place
        carries = False
        # data sets the decoder holds to the message's end: another port's definition of an
        # id the message defines (its own will stand), or none in force yet
        deferred: list[tuple[int, int, int]] = []
        for item in sets.in_order():
            if isinstance(item, Template):
                self._define(stream, port, place, item)
                continue
            owner = scope.port_of(port, item[0])
            if owner is None or (owner != port and item[0] in defined):
                deferred.append(item)
            elif self._data(stream, port, owner, place, item, payload, wanted):
                carries = True
        for item in deferred:
            owner = scope.port_of(port, item[0])
            if owner is not None:
                carries = self._data(stream, port, owner, place, item, payload, wanted) or carries
            else:
                self._hold(stream, port, place, item[0], wanted)
                carries = True
        # held data sets are read at the datagram that defines their template (the port's
        # own, or any for a port that defines none), with the options in force then
        resolved = [
            key
            for key in self.waiting
            if key[0] == stream and key[2] in defined and scope.releases(key[1], port)
        ]
        for key in resolved:
            self.waiting.discard(key)
            self.needed.add(place)
        if resolved:
            self.options_in_force(stream)
        return bool(defined) or carries

    def options_in_force(self, stream: Stream) -> None:
        """The latest datagram of each change options records made to the exporter's
        state, with the datagram that defined its template: what gives a record decoded
        now its sampling rate, its boot time."""
        for _, place, template_place in self.effects.get(stream, {}).values():
            self.needed.add(place)
            if template_place is not None:
                self.needed.add(template_place)

    def _hold(
        self, stream: Stream, port: int, place: Place, template_id: int, wanted: bool
    ) -> None:
        """A data set the decoder holds until a definition comes: an earlier file may hold
        one (the pass is then incomplete, _pass), else a later datagram does."""
        self.undefined.add((stream, template_id))
        held = self.held.setdefault((stream, port, template_id), [])
        if place not in held[-1:]:
            held.append(place)
            del held[:-HELD]
        # held for the port's own: what made it a port with templates of its own keeps it
        # from taking another's in the export (reads: wherever this datagram goes)
        first = self.first_def.get((stream, port)) if port in self.scope(stream).ports else None
        if first is not None and first != place:
            self.reads.setdefault(place, set()).add(first)
        if wanted:
            self.waiting.add((stream, port, template_id))
            if first is not None:
                self.needed.add(first)

    def _define(self, stream: Stream, port: int, place: Place, template: Template) -> None:
        """A definition, where the decoder's walk reaches it; options data held for it are
        read now."""
        template_id = template.template_id
        key = (stream, port, template_id)
        scope = self.scope(stream)
        scope.define(port, template, place)  # a refresh leaves the decoder's as it was
        self.own[key] = place
        self.undefined.discard((stream, template_id))
        if not template.options:  # a flow template now: its data are flows
            self.option_template.pop(key, None)
            return
        self.option_template[key] = template
        # options data sent before it, by this port or one that defines none, read now
        for held in [
            held
            for held in self.held
            if held[0] == stream and held[2] == template_id and scope.releases(held[1], port)
        ]:
            for waited in self.held.pop(held):
                if waited in self.kept:
                    self._options(
                        stream, template, self.kept[waited].payload, template_id, (waited, place)
                    )

    def _data(
        self,
        stream: Stream,
        port: int,
        owner: int,
        place: Place,
        data: tuple[int, int, int],
        payload: bytes,
        wanted: bool,
    ) -> bool:
        """A data set read with `owner`'s definition: a wanted one needs the datagram that
        brought it; an options set records what it changed. Whether it changed anything."""
        template_id, start, end = data
        defined_by = self.own[stream, owner, template_id]
        if wanted:
            self.needed.add(defined_by)
            if owner != port and port not in self.scope(stream).ports:
                self.borrowed.add((stream, port))
        options = self.option_template.get((stream, owner, template_id))
        return options is not None and self._effects(
            stream,
            options_effects(options, payload, start, end),
            (place, None if defined_by == place else defined_by),
        )

    def _options(
        self,
        stream: Stream,
        template: Template,
        payload: bytes,
        template_id: int,
        source: tuple[Place, Place | None],
    ) -> None:
        """Options data held for `template`, read now that it came."""
        for sets in export_messages(payload):
            if (sets.version, sets.domain) != stream[1:]:
                continue
            for set_id, start, end in sets.sets:
                if set_id == template_id:
                    self._effects(stream, options_effects(template, payload, start, end), source)

    def _effects(
        self,
        stream: Stream,
        effects: dict[tuple[object, ...], int],
        source: tuple[Place, Place | None],
    ) -> bool:
        """Record what an options set changed; whether it changed anything (a value the
        same as before leaves the datagram that set it in force)."""
        if source[1] is not None:
            self.reads.setdefault(source[0], set()).add(source[1])
        found = self.effects.setdefault(stream, {})
        changed = False
        for effect, value in effects.items():
            before = found.get(effect)
            if before is None or before[0] != value:
                found[effect] = (value, *source)
                changed = True
        return changed

    def keep(self, place: Place, datagram: Datagram) -> None:
        """Keep a datagram the export may need; forget those nothing refers to any more
        once they are twice what was live at the last count (an exporter that sends
        templates in every datagram): amortised, whatever the live ones number."""
        self.kept[place] = datagram
        if len(self.kept) > self.limit:
            live = {
                *self.own.values(),
                *(place for scope in self.scopes.values() for place in scope.latest.values()),
                *(place for pair in self.entry.values() for place in pair if place is not None),
                *self.needed,
                *self.seen,
                *self.first_def.values(),
                *(place for places in self.held.values() for place in places),
            }
            live.update(
                place
                for found in self.effects.values()
                for entry in found.values()
                for place in entry[1:]
                if place is not None
            )
            live = self.with_definitions(live)
            self.kept = {place: kept for place, kept in self.kept.items() if place in live}
            self.reads = {place: read for place, read in self.reads.items() if place in live}
            self.limit = max(FORGET_PAST, 2 * len(self.kept))

    def with_definitions(self, places: set[Place]) -> set[Place]:
        """`places` and, in turn, the datagrams whose definitions their options data were
        read with (reads): what an export holding them needs so that each options set
        applies where it did in the run."""
        found = set(places)
        todo = [place for place in found if place in self.reads]
        while todo:
            for read in self.reads.get(todo.pop(), ()):
                if read not in found:
                    found.add(read)
                    todo.append(read)
        return found


def template_context(
    files: Sequence[Path | None],
    wanted: dict[int, set[int]],
    expected: pa.Table | None = None,
    reading: Reading | None = None,
    check: Callable[[int], None] | None = None,
) -> dict[int, set[int]]:
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


def _datagrams(path: Path, transports: Transports) -> Iterator[list[Datagram]]:
    return iter_datagrams(path, transports.report, transports=transports)


def _pass(
    files: Sequence[Path | None],
    wanted: dict[int, set[int]],
    start: int,
    reading: Reading,
    check: Callable[[int], None],
) -> _Pass:
    state = _Pass()
    transports = new_transports(RunReport())
    last_file = max(wanted)
    last_offset = max(wanted[last_file])
    for index in range(start, len(files)):
        path = files[index]
        if (index > last_file and not state.waiting) or (start > 0 and index > last_file + 1):
            break  # (a pass that may begin too late looks one file ahead, no further)
        if path is None:
            continue
        check(index)
        if not _read(
            state,
            index,
            reading(path, transports),
            wanted.get(index, set()),
            (last_file, last_offset),
        ):
            break
    # a wanted datagram whose template no datagram read defined: an earlier file may hold it
    if state.waiting:
        state.complete = False
    # a wanted datagram not found whole: its first fragments are in a file before the pass
    found = state.seen | state.passed
    if any((index, offset) not in found for index, offsets in wanted.items() for offset in offsets):
        state.complete = False
    # from the run's first file there is nothing further back to look in: what is still
    # undefined never came (no_template, as the run counted it)
    # a datagram taken for what its options data set takes the definitions they read
    state.needed = state.with_definitions(state.needed | state.seen)
    state.complete = start == 0 or (
        state.complete
        and not any(stream in state.wanted_streams for stream, _ in state.undefined)
        and not any(port in state.scopes[stream].ports for stream, port in state.borrowed)
    )
    return state


def _read(
    state: _Pass, index: int, chunks: Iterable[list[Datagram]], mine: set[int], last: Place
) -> bool:
    """One file of a pass; False once the pass is over (past the last wanted datagram,
    nothing waiting for a template, or a pass that began too late, done again anyway)."""
    for chunk in chunks:
        for datagram in chunk:
            place = (index, datagram.offset)
            if place > last and not state.waiting:
                return False
            if datagram.connection:
                if datagram.offset in mine:
                    state.passed.add(place)
                continue
            wanted = datagram.offset in mine
            keep = False
            for sets in export_messages(datagram.payload):
                stream = (datagram.exporter, sets.version, sets.domain)
                if state.duplicate(stream, sets, datagram.payload):
                    continue
                port = datagram.transport
                state.arrive(stream, port, datagram.arrival_us, place)
                keep = state.message(stream, port, place, sets, datagram.payload, wanted) or keep
            if wanted:
                state.seen.add(place)
            if keep or wanted:
                state.keep(place, datagram)
            else:  # never taken: what it read with needs no remembering
                state.reads.pop(place, None)
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
        batches += decoder.feed([datagram._replace(source=str(index)) for datagram in datagrams])
    batches += decoder.finish()
    files = {str(index): index for index in by_file}
    decoded = pa.concat_tables(
        [record_table(settled(batch, report), files) for batch in batches] or [expected.slice(0, 0)]
    )
    seen = np.array(sorted(index << 40 | offset for index, offset in state.seen), dtype=np.int64)
    keys = (expected["file"].to_numpy() << 40) | expected["offset"].to_numpy()
    return differing(expected.filter(pa.array(np.isin(keys, seen))), decoded)[0] == 0
