"""Input files that hold the same flow records: one export read twice.

A case folder often holds an export twice over: the tcpdump of the datagrams a collector
received and the nfcapd files that collector wrote from them, or two collectors' files of
one exporter. Read together, every record of the traffic came twice, each copy went into
the same session, and the sessions counted the traffic twice without a word (a review:
a capture and its nfcapd file gave 2 x 63,620 bytes; the whole corpus in one run gave
18,496 sessions where its traffic has 2,190). Byte-for-byte copies are caught before
(a copied nfcapd file is not read, a copied capture's datagrams are dropped as
duplicates); copies in another format are not, and only their records tell.

A twin is a record of another file alike in exporter, protocol, both endpoints, both
times to the millisecond (nfcapd keeps milliseconds; a v5 capture gives microseconds) and
all four counters: a conversation's records differ in their times or counters, and two
collectors of one export decode its records alike. Files are called twins when at least
half of the records of the smaller one (and MIN_TWINS) have a twin in the other. The
tables are left as they are, both copies in them: which copy is the evidence is the
responder's call, said in the summary and the manifest (`twin_inputs`).

Memory stays bounded whatever the input: a record's 64-bit hash is kept only while it is
below a threshold, halved whenever more than BUDGET hashes are kept. The hashes kept at
the end are every record's below the final threshold, which depends on the records alone,
not on their order or the batches they came in, so the verdict is deterministic; up to
BUDGET records, every record is compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .addresses import address_matrix
from .ids import _mix, dictionary_text, fold, text_seeds
from .jit_cache import drop_stale_jit_cache, njit, read_only

BUDGET = 1 << 21  # hashes kept at most (16 MiB, and 4 MiB of file codes)
MIN_TWINS = 3  # records with a twin, at the least, before two files are called copies
SHARE = 0.5  # of the smaller file's records (those compared) with a twin in the other
COUNTER_COLUMNS = ("packets", "octets", "reverse_packets", "reverse_octets")
UINT64_COLUMNS = ("seed", "ports", "src", "dst", *COUNTER_COLUMNS)


def record_hashes(batch: pa.RecordBatch | pa.Table) -> npt.NDArray[np.uint64]:
    """A 64-bit hash per record of what a copy of it keeps (see the module), in numba
    (_hash_records; hash_columns is its numpy reference, which the tests hold it to)."""
    columns = _columns(batch)
    words = {name: read_only(columns[name], np.uint64) for name in UINT64_COLUMNS}
    return _hash_records(
        words["seed"],
        words["ports"],
        words["src"],
        words["dst"],
        read_only(columns["first_seen"], np.int64),
        read_only(columns["last_seen"], np.int64),
        words["packets"],
        words["octets"],
        words["reverse_packets"],
        words["reverse_octets"],
    )


def _columns(batch: pa.RecordBatch | pa.Table) -> dict[str, npt.NDArray[Any]]:
    """The columns a record's hash reads, as numpy: `seed` the exporter's text hash, `ports`
    both ports and the protocol in one word, `src`/`dst` the addresses as (n, 2) words."""

    def column(name: str) -> npt.NDArray[Any]:
        values = batch.column(name)
        if pa.types.is_timestamp(values.type):
            values = values.cast(pa.int64())
        return np.asarray(values.to_numpy(zero_copy_only=False))

    found = {
        "seed": text_seeds(batch.column("exporter")),
        "ports": column("src_port").astype(np.uint64) << np.uint64(24)
        | column("dst_port").astype(np.uint64) << np.uint64(8)
        | column("protocol").astype(np.uint64),
        "first_seen": column("first_seen"),
        "last_seen": column("last_seen"),
        **_as_counted(batch, {name: column(name) for name in COUNTER_COLUMNS}),
    }
    for name in ("src", "dst"):
        matrix = np.ascontiguousarray(address_matrix(batch.column(f"{name}_addr")))
        found[name] = matrix.view(np.uint64).reshape(len(matrix), 2)
    return found


def _as_counted(
    batch: pa.RecordBatch | pa.Table, counters: dict[str, npt.NDArray[Any]]
) -> dict[str, npt.NDArray[Any]]:
    """The counters as the exporter counted them: an nfcapd file written with a sampler
    (`nfcapd -s`) holds them multiplied by the rate (`counters_scaled`), its capture holds
    them as sent, and the two copies of each record hashed apart (a review: a capture and
    its 1:10 nfcapd file, read together, went unnamed and their traffic counted twice).
    Divided back only where every counter of the record is a multiple of the rate, as
    nfcapd's are: what is not cannot be its copy."""
    if "counters_scaled" not in batch.column_names or "sampling_rate" not in batch.column_names:
        return counters
    rate = np.asarray(batch.column("sampling_rate").to_numpy(zero_copy_only=False)).astype(
        np.uint64
    )
    scaled = np.array(batch.column("counters_scaled").to_numpy(zero_copy_only=False), bool)
    scaled &= rate > 1
    if not scaled.any():
        return counters
    values = {name: np.asarray(array).astype(np.uint64) for name, array in counters.items()}
    divisor = np.where(scaled, rate, np.uint64(1))
    whole = np.logical_and.reduce([values[name] % divisor == 0 for name in values])
    divisor = np.where(whole, divisor, np.uint64(1))
    return {name: array // divisor for name, array in values.items()}


def hash_columns(columns: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.uint64]:
    """_hash_records in numpy, a column at a time: a splitmix64 round a word (ids.fold). A
    multiply alone carries a difference only upwards: an IPv4 address's last octet, in
    the top byte of its word, changed the hash's top byte alone, and 1 in 256 pairs of
    neighbouring addresses hashed alike (a review)."""
    words = [
        columns["ports"],
        columns["first_seen"] // 1000,  # milliseconds: what nfcapd keeps
        columns["last_seen"] // 1000,
        *(columns[name] for name in COUNTER_COLUMNS),
        columns["src"][:, 0],
        columns["src"][:, 1],
        columns["dst"][:, 0],
        columns["dst"][:, 1],
    ]
    h = columns["seed"].astype(np.uint64)
    for word in words:
        h = fold(h, word.astype(np.uint64))
    return h


@njit(cache=True, nogil=True)
def _hash_records(
    seed: npt.NDArray[np.uint64],
    ports: npt.NDArray[np.uint64],
    src: npt.NDArray[np.uint64],
    dst: npt.NDArray[np.uint64],
    first_seen: npt.NDArray[np.int64],
    last_seen: npt.NDArray[np.int64],
    packets: npt.NDArray[np.uint64],
    octets: npt.NDArray[np.uint64],
    reverse_packets: npt.NDArray[np.uint64],
    reverse_octets: npt.NDArray[np.uint64],
) -> npt.NDArray[np.uint64]:
    """hash_columns, one record at a time in one pass (a pass a column cost 0.8 s over 5.2
    M records): ids._mix(h + word) is ids.fold(h, word). The words go in hash_columns's
    order."""
    out = np.empty(len(seed), dtype=np.uint64)
    thousand = np.int64(1000)
    for i in range(len(seed)):
        h = _mix(seed[i] + ports[i])
        h = _mix(h + np.uint64(first_seen[i] // thousand))
        h = _mix(h + np.uint64(last_seen[i] // thousand))
        h = _mix(h + packets[i])
        h = _mix(h + octets[i])
        h = _mix(h + reverse_packets[i])
        h = _mix(h + reverse_octets[i])
        h = _mix(h + src[i, 0])
        h = _mix(h + src[i, 1])
        h = _mix(h + dst[i, 0])
        out[i] = _mix(h + dst[i, 1])
    return out


@dataclass
class TwinRecords:
    """The sampled record hashes of a run's files, and what they say of file pairs."""

    shift: int = 0  # hashes below 2**(64 - shift) are kept
    files: list[str] = field(default_factory=list)  # those with records, as they came
    _codes: dict[str, int] = field(default_factory=dict)
    _hashes: list[npt.NDArray[np.uint64]] = field(default_factory=list)
    _owners: list[npt.NDArray[np.int32]] = field(default_factory=list)
    _kept: int = 0
    # the last pairs() answer, and the order it was given: the summary and the manifest
    # both ask, and a sort of 2 million hashes is not free
    _answer: tuple[Callable[[str], Any], list[dict[str, Any]]] | None = None

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """The records of a FLOW_SCHEMA batch, as they go into the sessions."""
        if batch.num_rows == 0:
            return
        self._answer = None
        encoded = dictionary_text(batch.column("source_file"))
        names = [str(name) for name in encoded.dictionary.to_pylist()]
        indices = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        present = np.flatnonzero(np.bincount(indices, minlength=len(names)))
        for code in present.tolist():
            if names[code] not in self._codes:
                self._codes[names[code]] = len(self.files)
                self.files.append(names[code])
        mapping = np.array([self._codes.get(name, -1) for name in names], dtype=np.int32)
        hashes = record_hashes(batch)
        if self.shift:
            keep = self._below(hashes)
            hashes, indices = hashes[keep], indices[keep]
        self._hashes.append(hashes)
        self._owners.append(mapping[indices])
        self._kept += len(hashes)
        while self._kept > BUDGET:
            self.shift += 1
            hashes, owners = self._joined()
            keep = self._below(hashes)
            self._hashes, self._owners = [hashes[keep]], [owners[keep]]
            self._kept = int(np.count_nonzero(keep))

    def _below(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        below: npt.NDArray[np.bool_] = (hashes >> np.uint64(64 - self.shift)) == 0
        return below

    def _joined(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int32]]:
        if not self._hashes:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int32)
        return np.concatenate(self._hashes), np.concatenate(self._owners)

    def pairs(self, order: Callable[[str], Any] = str) -> list[dict[str, Any]]:
        """Each pair of files that hold the same records (see the module), the earlier by
        `order` (of a file's path) first, and the pairs in that order: both paths, the
        records compared in each (every one, or those whose hash fell below the threshold:
        `sample` is 1 in how many) and how many of them have a twin in the other file."""
        if self._answer is None or self._answer[0] != order:
            self._answer = (order, self._pairs(order))
        return [dict(pair) for pair in self._answer[1]]

    def _pairs(self, order: Callable[[str], Any]) -> list[dict[str, Any]]:
        hashes, owners = self._joined()
        if len(self.files) < 2 or len(hashes) == 0:
            return []
        # files numbered in `order`, not as their records came: a batch of two files'
        # records (data held for a template) numbers them by its dictionary
        files = sorted(self.files, key=order)
        position = {name: place for place, name in enumerate(files)}
        rank = np.array([position[name] for name in self.files], dtype=np.int32)
        owners = rank[owners]
        # each file's distinct records (a record repeated in one file is no copy of another)
        sort = np.lexsort((owners, hashes))
        hashes, owners = hashes[sort], owners[sort]
        distinct = np.ones(len(hashes), dtype=bool)
        distinct[1:] = (hashes[1:] != hashes[:-1]) | (owners[1:] != owners[:-1])
        hashes, owners = hashes[distinct], owners[distinct]
        compared = np.bincount(owners, minlength=len(files))
        # a record held by several files: every two of them (a group is the files holding
        # one record, in file order; the one before a file d places back in the same
        # group). Pairing each with the group's first alone hid the pair of the second and
        # third copies (a review)
        count = len(files)
        pair_codes = []
        apart = 1
        while apart < len(hashes):
            same = hashes[apart:] == hashes[:-apart]
            if not same.any():
                break
            low = owners[:-apart][same].astype(np.int64)
            high = owners[apart:][same].astype(np.int64)
            pair_codes.append(low * count + high)
            apart += 1
        if not pair_codes:
            return []
        places, shared = np.unique(np.concatenate(pair_codes), return_counts=True)
        found = []
        for place, twins in zip(places.tolist(), shared.tolist(), strict=True):
            a, b = divmod(place, count)
            if twins < max(MIN_TWINS, SHARE * min(compared[a], compared[b])):
                continue
            found.append(
                {
                    "files": [files[a], files[b]],
                    "records_compared": [int(compared[a]), int(compared[b])],
                    "twin_records": twins,
                    "sample": 1 << self.shift,
                }
            )
        return found


drop_stale_jit_cache(globals())
