"""Cisco NSEL (ASA/FTD NetFlow Secure Event Logging): its records' counters, made summable.

An NSEL exporter sends events, not flows: flow-create (event 1, no counters), flow-update
(5: the bytes and packets since the connection's last update, NF_F_FWD/REV_FLOW_DELTA_BYTES
231/232 and 298/299), flow-teardown (2) and flow-denied (3). The teardown carries the
connection's *totals*, and when updates are configured the ASA sends a last update "with"
it (Cisco's NetFlow implementation guide; nfdump issue 116 shows CREATE, UPDATE, UPDATE,
DELETE with totals). Summed as they come, as the sessionizer sums every record (and nfdump's
aggregation does), a connection's bytes counted twice: logstash-codec-netflow's capture of
an ASA 9 holds, for each of its 7 connections, an update and a teardown of the same bytes.

So a teardown counts what its connection's updates did not: its totals less the updates
already read for the same connection (NF_F_CONN_ID, IE 148) of the same exporter stream,
never below 0. That is all of it when the exporter sends no updates, nothing when every
update arrived, and the missing part when some were lost (a total smaller than updates past
2**32 wrapped in the ASA's 4-byte field: the difference mod 2**32). The flows table holds
what each record adds; the records so changed are counted as `nsel_teardown_totals` under
`repaired`, and the exporters table keeps what the exporter sent.

Which templates: an event (233) and a connection id (148) of at most 8 bytes, an event time
(323) and the ASA's counters (231/232, 298/299), not octet/packetDeltaCount: Palo Alto
sends 148 and 233 with deltas (1/2) and no event time, and its records are summed as sent.
In nfcapd files, records with EXnselCommon and an event time.

Updates always count whole. A teardown does not take updates that arrived after it (the
ledger forgets a connection at its teardown), nor updates more than a day before its
connection's next event (a reused connection id must not take an old connection's
updates; an ASA sends an update a minute while traffic flows and tears an idle connection
down within hours), nor records that waited for their template (the export reader does not
settle those: where they are decoded depends on where batches end). Nothing is forgotten
by age alone, which would depend on where batches end too: a connection whose teardown
never comes keeps its 48 bytes in the ledger to the end.

The work is numpy over whole batches: records are grouped by (stream, connection) with a
stable sort, the updates summed per stretch between teardowns, and the ledger (sorted keys
and their sums) merged once per batch, never a Python step per record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np

from ..errors import MalformedInput
from .information_elements import IANA, Element

if TYPE_CHECKING:
    import numpy.typing as npt

FIREWALL_EVENT: Element = (IANA, 233)  # NF_F_FW_EVENT
CONNECTION_ID: Element = (IANA, 148)  # NF_F_CONN_ID (flowId)
# the ASA's counters: NF_F_FWD/REV_FLOW_DELTA_BYTES and its initiator/responder packets
NSEL_COUNTER_ELEMENTS: tuple[Element, ...] = ((IANA, 231), (IANA, 232), (IANA, 298), (IANA, 299))
# octet/packetDeltaCount: a template with them reports deltas (Palo Alto's, with 148 and 233)
DELTA_COUNTER_ELEMENTS: tuple[Element, ...] = ((IANA, 1), (IANA, 2))
WRAP_32 = 1 << 32
EVENT_TEARDOWN = 2
EVENT_UPDATE = 5
# ledger key: stream code << CONNECTION_BITS | connection id (the ASA's are 32-bit)
CONNECTION_BITS = 44
STREAM_LIMIT = 1 << (64 - CONNECTION_BITS)
FORGET_AFTER_US = 86_400_000_000
# the counters settled, in this order
COUNTERS = ("octets", "reverse_octets", "packets", "reverse_packets")


class NselLedger:
    """Update counters read so far per open connection, for the teardowns still to come."""

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.uint64)  # sorted
        self.sums = np.empty((0, len(COUNTERS)), dtype=np.uint64)
        self.seen = np.empty(0, dtype=np.int64)  # last_seen of the connection's last update
        # stream codes of readers whose own are not run-wide (the nfcapd reader's are per file)
        self.streams: dict[tuple[str, int], int] = {}

    def stream_codes(self, streams: list[tuple[str, int]]) -> np.ndarray:
        """Run-wide codes of (exporter, domain) streams, in their order."""
        return np.array(
            [self.streams.setdefault(stream, len(self.streams)) for stream in streams],
            dtype=np.uint64,
        )

    def settle_columns(
        self,
        stream: np.ndarray,
        connection: np.ndarray,
        event: np.ndarray,
        columns: dict[str, np.ndarray],
    ) -> np.ndarray:
        """`settle` over a reader's flow columns, in place: a counter column a template lacks
        is 0 (and stays so: a teardown only loses); the mask of the rows changed."""
        n = len(event)
        sent = [columns.get(name) for name in COUNTERS]
        counters = np.stack(
            [
                np.zeros(n, dtype=np.uint64) if values is None else values.astype(np.uint64)
                for values in sent
            ],
            axis=1,
        )
        changed = self.settle(stream, connection, event, columns["last_seen"], counters)
        if changed.any():
            for i, (name, values) in enumerate(zip(COUNTERS, sent, strict=True)):
                if values is not None:
                    columns[name] = counters[:, i].astype(values.dtype)
        return changed

    def settle(
        self,
        stream: np.ndarray,
        connection: np.ndarray,
        event: np.ndarray,
        last_seen: np.ndarray,
        counters: np.ndarray,
    ) -> np.ndarray:
        """Reduce the teardowns' totals in `counters` ((n, 4) uint64, COUNTERS order, rows in
        arrival order) by their connection's updates; returns the mask of the rows changed.
        The same records give the same result however they are cut into batches
        (`settle_reference` is the rule, a record at a time)."""
        n = len(event)
        changed = np.zeros(n, dtype=bool)
        rows = np.flatnonzero(_settled(stream, connection, event))
        if len(rows) == 0:
            return changed
        key = (stream[rows].astype(np.uint64) << np.uint64(CONNECTION_BITS)) | connection[rows]
        order = np.argsort(key, kind="stable")  # by connection, then arrival
        rows, key = rows[order], key[order]
        m = len(rows)
        index = np.arange(m)
        teardown = event[rows] == EVENT_TEARDOWN
        times = last_seen[rows].astype(np.int64)
        values = counters[rows]
        updates = np.where(teardown[:, None], np.uint64(0), values)
        group_start = np.ones(m, dtype=bool)
        group_start[1:] = key[1:] != key[:-1]
        # a stretch of updates starts a connection's group, follows a teardown (which
        # settled the stretch before), or follows a silence of more than a day
        stretch_start = group_start.copy()
        stretch_start[1:] |= teardown[:-1] | (times[1:] - times[:-1] > FORGET_AFTER_US)
        stretch_first = np.maximum.accumulate(np.where(stretch_start, index, 0))
        group_first = np.maximum.accumulate(np.where(group_start, index, 0))
        running = np.cumsum(updates, axis=0, dtype=np.uint64)
        before = running - updates  # updates before each row, from the batch's start
        prior = before - before[stretch_first]  # ... within its stretch
        # the ledger's sums continue a group's first stretch, unless a day old
        stretches = np.cumsum(stretch_start)
        first_stretch = stretches == stretches[group_first]
        group_keys = key[group_start]
        at = np.searchsorted(self.keys, group_keys)
        carried = np.zeros((len(group_keys), len(COUNTERS)), dtype=np.uint64)
        known = np.zeros(len(group_keys), dtype=bool)
        if len(self.keys):
            clipped = np.minimum(at, len(self.keys) - 1)
            known = (at < len(self.keys)) & (self.keys[clipped] == group_keys)
            recent = times[group_start] - self.seen[clipped] <= FORGET_AFTER_US
            carried = np.where((known & recent)[:, None], self.sums[clipped], carried)
        group_of_row = np.cumsum(group_start) - 1
        prior = prior + np.where(first_stretch[:, None], carried[group_of_row], np.uint64(0))
        settled = _settled_counters(values, prior)
        new_values = np.where(teardown[:, None], settled, values)
        counters[rows] = new_values
        changed[rows] = teardown & (new_values != values).any(axis=1)
        # the ledger: a connection met here leaves it; one whose last stretch is still
        # open (no teardown after it) is back with that stretch's sum
        group_last = np.flatnonzero(np.append(group_start[1:], True))
        open_end = ~teardown[group_last]
        keep = np.ones(len(self.keys), dtype=bool)
        keep[at[known]] = False
        keys, sums, seen = self.keys[keep], self.sums[keep], self.seen[keep]
        # both sorted: a merge, linear in the ledger (no sort of it every batch)
        new_keys = key[group_last][open_end]
        where = np.searchsorted(keys, new_keys)
        self.keys = np.insert(keys, where, new_keys)
        self.sums = np.insert(
            sums, where, (prior[group_last] + updates[group_last])[open_end], axis=0
        )
        self.seen = np.insert(seen, where, times[group_last][open_end])
        return changed


def _settled_counters(totals: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """What a teardown's totals add to its connection's updates: the difference, never below
    0; but when the updates passed 2**32 and the total is smaller, the ASA's 4-byte total
    wrapped (231/232 and 298/299 are 4 bytes in its templates): the difference mod 2**32.
    Sums past 2**64 wrap (the reference does the same; no connection comes near)."""
    difference = totals - prior
    wrapped = (totals < prior) & (prior >= np.uint64(WRAP_32))
    return np.where(
        totals >= prior,
        difference,
        np.where(wrapped, difference & np.uint64(WRAP_32 - 1), np.uint64(0)),
    )


def nsel_repair(count: int, source: str, offset: int, frame: int) -> MalformedInput:
    """The `nsel_teardown_totals` repair both readers report, with the first record's place."""
    return MalformedInput(
        f"{count} Cisco NSEL flow-teardown record(s): their totals repeat the bytes and "
        "packets of their connection's flow-update records; counted for what those did not "
        "(the flows table holds that)",
        source=source,
        offset=offset,
        frame=frame,
        reason="nsel_teardown_totals",
    )


def _settled(
    stream: np.ndarray, connection: np.ndarray, event: np.ndarray
) -> npt.NDArray[np.bool_]:
    """The records the ledger settles: updates and teardowns of a connection id it can key."""
    return cast(
        "npt.NDArray[np.bool_]",
        ((event == EVENT_TEARDOWN) | (event == EVENT_UPDATE))
        & (connection < np.uint64(1 << CONNECTION_BITS))
        & (stream < STREAM_LIMIT),
    )


def settle_reference(
    ledger: dict[tuple[int, int], tuple[list[int], int]],
    stream: np.ndarray,
    connection: np.ndarray,
    event: np.ndarray,
    last_seen: np.ndarray,
    counters: np.ndarray,
) -> np.ndarray:
    """NselLedger.settle's rule, a record at a time, for the tests to hold it to."""
    changed = np.zeros(len(event), dtype=bool)
    use = _settled(stream, connection, event)
    for i in range(len(event)):
        if not use[i]:
            continue
        key = (int(stream[i]), int(connection[i]))
        entry = ledger.pop(key, None)
        sums = [0] * len(COUNTERS)
        if entry is not None and int(last_seen[i]) - entry[1] <= FORGET_AFTER_US:
            sums = entry[0]
        values = [int(v) for v in counters[i]]
        if event[i] == EVENT_UPDATE:
            ledger[key] = (
                [(s + v) % (1 << 64) for s, v in zip(sums, values, strict=True)],
                int(last_seen[i]),
            )
            continue
        settled = [
            v - s if v >= s else (v - s) % WRAP_32 if s >= WRAP_32 else 0
            for s, v in zip(sums, values, strict=True)
        ]
        if settled != values:
            counters[i] = settled
            changed[i] = True
    return changed
