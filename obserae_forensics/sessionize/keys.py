"""Session keys: which records share a session, and the record columns the replay reads.

A key is (exporter, protocol, the two endpoints as an unordered pair) — sessions.md,
"Words". Endpoints are (address, port) for TCP, UDP, SCTP and UDP-Lite and the address
alone for everything else, so an ICMP echo and its reply (dst_port = type << 8 | code,
different in each direction) share one key. Both directions map to the same canonical key
by putting the smaller endpoint first; the surprising consequence is that "direction" of a
record is only meaningful against that canonical order, never as src/dst.

Also here: the table of known service ports that the server-side inference compares
against ephemeral ones (the IANA protocol keywords the `protocol` column shows are in
protocols.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ..addresses import address_matrix
from ..ids import fold, text_seeds
from .row import REVERSE_FLAGS_SHIFT, SIGN_BIT

# Registered service ports above 1023 that servers commonly listen on; every port below
# 1024 counts as a service port too. A port is "ephemeral" when it is in neither set.
REGISTERED_SERVICE_PORTS = (
    1080,
    1194,
    1433,
    1434,
    1521,
    1701,
    1723,
    1812,
    1813,
    1883,
    2049,
    2181,
    2375,
    2376,
    3128,
    3268,
    3269,
    3306,
    3389,
    3478,
    4369,
    4500,
    4789,
    5060,
    5061,
    5222,
    5353,
    5432,
    5601,
    5671,
    5672,
    5900,
    5985,
    5986,
    6379,
    6443,
    6514,
    6667,
    6697,
    8000,
    8008,
    8080,
    8081,
    8443,
    8883,
    8888,
    9000,
    9042,
    9090,
    9092,
    9093,
    9200,
    9300,
    9418,
    11211,
    27017,
)


def known_service_ports() -> npt.NDArray[np.bool_]:
    """bool[65536]: True for ports servers listen on (all below 1024, plus the list above)."""
    table = np.zeros(65536, dtype=np.bool_)
    table[1:1024] = True
    table[list(REGISTERED_SERVICE_PORTS)] = True
    return table


@dataclass
class Records:
    """The FLOW_SCHEMA columns the replay reads, as int64 numpy arrays of one length.

    Addresses are two big-endian 64-bit halves with the sign bit flipped (see row.py);
    `index` is the record's arrival index over the whole input, the tie-breaker of last
    resort. `src_declared`/`dst_declared` are the Cartography's answer for each side.
    `identity` names the record's bytes (record_identities): what tells apart sessions that
    reach back beyond the sessionizer's memory (reference.py, rule 6).
    """

    first_seen: npt.NDArray[np.int64]
    last_seen: npt.NDArray[np.int64]
    src_hi: npt.NDArray[np.int64]
    src_lo: npt.NDArray[np.int64]
    dst_hi: npt.NDArray[np.int64]
    dst_lo: npt.NDArray[np.int64]
    src_port: npt.NDArray[np.int64]
    dst_port: npt.NDArray[np.int64]
    protocol: npt.NDArray[np.int64]
    tcp_flags: npt.NDArray[np.int64]  # forward flags, and the reverse's << REVERSE_FLAGS_SHIFT
    packets: npt.NDArray[np.int64]
    octets: npt.NDArray[np.int64]
    reverse_packets: npt.NDArray[np.int64]
    reverse_octets: npt.NDArray[np.int64]
    sampling_rate: npt.NDArray[np.int64]
    counters_scaled: npt.NDArray[np.int64]
    exporter_domain: npt.NDArray[np.int64]
    src_declared: npt.NDArray[np.int64]
    dst_declared: npt.NDArray[np.int64]
    index: npt.NDArray[np.int64]
    identity: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.first_seen)

    def take(self, rows: npt.NDArray[np.integer[Any]]) -> Records:
        """The records at positions `rows`, in that order."""
        return Records(**{name: getattr(self, name)[rows] for name in RECORD_FIELDS})


RECORD_FIELDS = tuple(Records.__dataclass_fields__)


def address_halves(matrix: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(n, 16) uint8 addresses -> (high, low) int64 halves ordered like the bytes."""
    words = np.ascontiguousarray(matrix, dtype=np.uint8).view(">u8").reshape(len(matrix), 2)
    high = words[:, 0].astype(np.uint64).view(np.int64) ^ SIGN_BIT
    low = words[:, 1].astype(np.uint64).view(np.int64) ^ SIGN_BIT
    return high, low


def _int64(column: pa.Array[Any] | pa.ChunkedArray[Any]) -> npt.NDArray[np.int64]:
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return np.asarray(column.to_numpy(zero_copy_only=False)).astype(np.int64, copy=False)


def batch_records(
    batch: pa.RecordBatch | pa.Table,
    first_index: int,
    src_declared: npt.NDArray[np.bool_] | None = None,
    dst_declared: npt.NDArray[np.bool_] | None = None,
    root: str | None = None,
) -> Records:
    """The replay columns of a FLOW_SCHEMA batch; its first row has arrival index `first_index`."""
    n = batch.num_rows
    src_hi, src_lo = address_halves(address_matrix(batch.column("src_addr")))
    dst_hi, dst_lo = address_halves(address_matrix(batch.column("dst_addr")))
    no = np.zeros(n, dtype=np.int64)
    return Records(
        first_seen=_int64(batch.column("first_seen")),
        last_seen=_int64(batch.column("last_seen")),
        src_hi=src_hi,
        src_lo=src_lo,
        dst_hi=dst_hi,
        dst_lo=dst_lo,
        src_port=_int64(batch.column("src_port")),
        dst_port=_int64(batch.column("dst_port")),
        protocol=_int64(batch.column("protocol")),
        # the reverse direction's flags (RFC 5103 biflow) ride above the forward ones: the
        # kernel reads one column per record, not two
        tcp_flags=_int64(batch.column("tcp_flags"))
        | (_int64(batch.column("reverse_tcp_flags")) << REVERSE_FLAGS_SHIFT),
        packets=_int64(batch.column("packets")),
        octets=_int64(batch.column("octets")),
        reverse_packets=_int64(batch.column("reverse_packets")),
        reverse_octets=_int64(batch.column("reverse_octets")),
        sampling_rate=_int64(batch.column("sampling_rate")),
        counters_scaled=_int64(batch.column("counters_scaled")),
        exporter_domain=_int64(batch.column("exporter_domain")),
        src_declared=no if src_declared is None else src_declared.astype(np.int64),
        dst_declared=no if dst_declared is None else dst_declared.astype(np.int64),
        index=np.arange(first_index, first_index + n, dtype=np.int64),
        identity=record_identities(batch, root),
    )


def record_identities(
    batch: pa.RecordBatch | pa.Table, root: str | None = None
) -> npt.NDArray[np.int64]:
    """int64 hash of where each record's bytes are: its file's path relative to `root` (the
    directory holding the run's inputs, evidence_root), else its absolute path (however the
    path was spelled either way, through links or not; two copies of one file in two
    directories stay apart), the byte offset of its frame or block (`source_offset`) and its
    place there (`record_index`). It travels with the record whatever the replay order, unlike the
    arrival index; relative to the inputs' directory, it stays when the evidence is copied
    or moved elsewhere whole (the ids of late sessions hash it: a report cites them)."""
    n = batch.num_rows
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    h = text_seeds(batch.column("source_file"), lambda name: identity_name(name, root))
    for name in ("source_offset", "record_index"):
        h = fold(h, np.asarray(batch.column(name).to_numpy(zero_copy_only=False)))
    return h.view(np.int64)


def identity_name(name: str, root: str | None) -> str:
    """The name a record's identity hashes for its file: relative to `root` when the file
    lies under it, else absolute; both with symbolic links resolved, so that a directory
    named through a link and by its own path give one name."""
    absolute = Path(os.path.realpath(name))
    if root is not None and absolute.is_relative_to(root):
        return absolute.relative_to(root).as_posix()
    return str(absolute)


def evidence_root(paths: Sequence[str | os.PathLike[str]]) -> str | None:
    """The deepest directory holding every one of `paths` (input files): what record
    identities name files relative to, links resolved (identity_name). None without
    paths."""
    if not paths:
        return None
    return os.path.commonpath([os.path.dirname(os.path.realpath(path)) for path in paths])
