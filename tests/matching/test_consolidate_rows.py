"""What consolidation keeps of each session (Consolidation.rows), bucket by bucket, and the
numba helpers held to their plain numpy definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obserae_forensics.ids import endpoint_pair_hashes, hash_words
from obserae_forensics.jit_cache import read_only
from obserae_forensics.matching.consolidate import (
    CONSOLIDATION_ROWS_SCHEMA,
    Consolidation,
    Vocabulary,
    _bucket_order,
    _bucket_places,
    _consolidated_ids,
    _id_order_key,
    _most_confident,
    _output_order,
    _pair_counts,
    _running_max,
    consolidate_sessions,
)
from obserae_forensics.protocols import PORT_PROTOCOLS
from obserae_forensics.sessionize import Sessionizer, SessionPolicy

from ..sessionize.scenario import batch, rec
from ..sessionize.test_properties import records
from .session_tables import make_sessions

GRACE_US = 30_000_000
ENDPOINTS = [
    ("10.0.0.1", 40000),
    ("10.0.0.1", 40001),
    ("192.0.2.80", 443),
    ("2001:db8::1", 443),
    ("10.0.0.2", 0),
]
PROTOCOLS = {6: "TCP", 17: "UDP", 1: "ICMP", 47: "GRE"}


def session(
    i: int,
    client: tuple[str, int],
    server: tuple[str, int],
    protocol: int,
    exporter: str,
    opened_s: int,
    duration_s: int,
    confidence: float,
    a_is_client: bool,
    sampling: int,
    scaled: bool,
) -> dict[str, object]:
    a, b = (client, server) if a_is_client else (server, client)
    return {
        "session_id": f"{(i * 0x9E3779B97F4A7C15) & (2**64 - 1):016x}" if i % 7 else f"s{i}",
        "exporter": exporter, "protocol": PROTOCOLS[protocol], "protocol_number": protocol,
        "client_ip": client[0], "client_port": client[1],
        "server_ip": server[0], "server_port": server[1],
        "ip_a": a[0], "port_a": a[1], "ip_b": b[0], "port_b": b[1],
        "role_method": "tcp_syn" if confidence > 0.9 else "first_sender",
        "role_confidence": confidence,
        "opened_at": opened_s * 1_000_000, "last_seen_at": (opened_s + duration_s) * 1_000_000,
        "ab_bytes": 100 * i + 7, "ba_bytes": 3 * i, "ab_packets": i + 1, "ba_packets": i // 2,
        "sampling_rate": sampling, "counters_scaled": scaled,
    }  # fmt: skip


sessions_tables = st.lists(
    st.tuples(
        st.sampled_from(ENDPOINTS),
        st.sampled_from(ENDPOINTS),
        st.sampled_from(list(PROTOCOLS)),
        st.sampled_from(["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
        st.integers(0, 200),
        st.integers(0, 60),
        st.sampled_from([0.3, 0.5, 0.95]),
        st.booleans(),
        st.sampled_from([0, 1, 10]),
        st.booleans(),
    ),
    max_size=40,
).map(lambda rows: make_sessions([session(i, *row) for i, row in enumerate(rows)]))


@settings(max_examples=60, deadline=None)
@given(sessions_tables, st.sampled_from([1, 2, 3, 7, 128]))
def test_buckets_keep_conversations_whole(sessions: pa.Table, buckets: int) -> None:
    """Consolidating bucket by bucket gives the whole table's rows, each bucket in order."""
    whole = consolidate_sessions(sessions, GRACE_US)
    consolidation = Consolidation(GRACE_US)
    rows, counts = consolidation.rows(sessions, buckets)
    assert rows.schema == CONSOLIDATION_ROWS_SCHEMA
    assert counts.sum() == sessions.num_rows and len(counts) == buckets
    expected = endpoint_pair_hashes(sessions, port_protocols=PORT_PROTOCOLS) % np.uint64(buckets)
    # grouped by bucket, each in the sessions' order, numbers on the row of their texts
    by_bucket = np.argsort(expected, kind="stable")
    for name in ("session_id", "client_ip", "opened_at", "client_port"):
        assert (
            rows.column(name).to_pylist()
            == pc.take(
                sessions.column(name).cast(rows.schema.field(name).type), by_bucket
            ).to_pylist()
        )
    start, parts = 0, []
    for number, count in enumerate(counts.tolist()):
        bucket = rows.slice(start, count)
        start += count
        ids = set(bucket.column("session_id").to_pylist())
        assert {
            s
            for s, b in zip(
                sessions.column("session_id").to_pylist(), expected.tolist(), strict=True
            )
            if b == number
        } == ids
        parts.append(consolidation.consolidate(bucket))
    merged = pa.concat_tables(parts)
    merged = merged.take(
        pc.sort_indices(
            merged, sort_keys=[("first_seen", "ascending"), ("consolidated_id", "ascending")]
        )
    )
    assert merged.equals(whole)


def test_both_directions_of_a_pair_share_a_bucket() -> None:
    forward = session(1, ("10.0.0.1", 1234), ("10.0.0.2", 80), 6, "e1", 0, 1, 0.95, True, 1, False)
    backward = session(2, ("10.0.0.2", 80), ("10.0.0.1", 1234), 6, "e2", 0, 1, 0.3, False, 1, False)
    other = session(3, ("10.0.0.1", 1234), ("10.0.0.2", 80), 17, "e1", 0, 1, 0.95, True, 1, False)
    _, counts = Consolidation(GRACE_US).rows(make_sessions([forward, backward, other]), 1024)
    assert sorted(counts[counts > 0].tolist()) == [1, 2]
    [row] = consolidate_sessions(make_sessions([forward, backward]), GRACE_US).to_pylist()
    assert row["session_count"] == 2


def test_rows_scale_and_orient_counters_to_the_client() -> None:
    rows = [
        session(5, ("10.0.0.1", 40000), ("192.0.2.80", 443), 6, "e", 0, 1, 0.95, a, rate, scaled)
        for a in (True, False)
        for rate in (0, 1, 10)
        for scaled in (True, False)
    ]
    sessions = make_sessions(rows)
    table, _ = Consolidation(GRACE_US).rows(sessions)
    for row, got in zip(rows, table.to_pylist(), strict=True):
        scale = 1 if row["counters_scaled"] else max(int(row["sampling_rate"]), 1)  # type: ignore[call-overload]
        ab, ba = 507 * scale, 15 * scale
        assert (got["cs_bytes"], got["sc_bytes"]) == (
            (ab, ba) if row["ip_a"] == "10.0.0.1" else (ba, ab)
        )
        assert got["client_is_a"] == (row["ip_a"] == "10.0.0.1")


def test_vocabulary_codes_come_back_as_their_texts() -> None:
    vocabulary = Vocabulary()
    first = vocabulary.encode(pa.array(["b", "a", "b"]))
    second = vocabulary.encode(pa.chunked_array([["c"], ["a", "", "c", "é"]]))
    assert vocabulary.strings(np.r_[first, second]).to_pylist() == [
        "b",
        "a",
        "b",
        "c",
        "a",
        "",
        "c",
        "é",
    ]
    assert vocabulary.text_ranks().tolist() == [2, 1, 3, 0, 4]
    assert vocabulary.strings(np.zeros(0, dtype=np.uint32)).to_pylist() == []
    for text in ("", "192.0.2.1"):  # one text: built by repetition
        one = Vocabulary()
        assert one.strings(one.encode(pa.array([text] * 3))).to_pylist() == [text] * 3


@settings(deadline=None)  # the first call loads numba code
@given(st.lists(st.tuples(st.booleans(), st.integers(-5, 5)), min_size=1, max_size=60))
def test_running_max_restarts_at_each_pair(rows: list[tuple[bool, int]]) -> None:
    starts = np.array([True] + [r[0] for r in rows[1:]])
    values = np.array([r[1] for r in rows], dtype=np.int64)
    expected = pd.Series(values).groupby(np.cumsum(starts)).cummax().to_numpy()
    assert (_running_max(values, starts) == expected).all()


@settings(deadline=None)  # the first call loads numba code
@given(
    st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 2**64 - 1), st.integers(-(2**62), 2**62)),
        max_size=50,
    )
)
def test_consolidated_ids_are_hash_words(rows: list[tuple[int, int, int]]) -> None:
    protocol = np.array([r[0] for r in rows], dtype=np.uint8)
    pair = np.array([r[1] for r in rows], dtype=np.uint64)
    first_seen = np.array([r[2] for r in rows], dtype=np.int64)
    words = np.stack([protocol.astype(np.uint64), pair, first_seen.view(np.uint64)], axis=1)
    expected = hash_words(words) if rows else np.zeros(0, dtype=np.uint64)
    assert (_consolidated_ids(protocol, pair, first_seen) == expected).all()


@settings(deadline=None)  # the first call loads numba code
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), max_size=200))
def test_output_order_is_a_stable_lexsort(keys: list[tuple[int, int]]) -> None:
    first_seen = np.array([k[0] for k in keys], dtype=np.int64)
    ids = np.array([k[1] for k in keys], dtype=np.uint64)  # few values: long tied runs
    assert (_output_order(first_seen, ids) == np.lexsort((ids, first_seen))).all()


@settings(deadline=None)  # the first call loads numba code
@given(st.lists(st.integers(0, 5), max_size=100), st.integers(1, 8))
def test_pair_counts_and_bucket_order(values: list[int], buckets: int) -> None:
    pair = np.array(values, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    _, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)
    assert (_pair_counts(read_only(pair, np.uint64)) == counts[inverse.ravel()]).all()
    bucket = np.array(values, dtype=np.int64) % buckets
    places, per_bucket = _bucket_places(bucket, buckets)
    order = _bucket_order(bucket, places)
    assert (order == np.argsort(bucket, kind="stable")).all()
    assert (per_bucket == np.bincount(bucket, minlength=buckets)).all()


@settings(deadline=None)  # the first call loads numba code
@given(
    st.lists(
        st.lists(
            st.sampled_from([0.3, 0.5, 0.95, float("nan"), float("-inf")]), min_size=1, max_size=6
        ),
        min_size=1,
        max_size=20,
    )
)
def test_most_confident_is_the_first_of_a_descending_sort(runs: list[list[float]]) -> None:
    confidence = np.array([value for run in runs for value in run])
    starts = np.cumsum([0] + [len(run) for run in runs[:-1]])
    run_of = np.repeat(np.arange(len(runs)), [len(run) for run in runs])
    position = np.arange(len(confidence))
    by_confidence = np.lexsort((position, -confidence, run_of))  # as the grouping sorted
    first = by_confidence[np.r_[True, run_of[by_confidence][1:] != run_of[by_confidence][:-1]]]
    assert (_most_confident(confidence, starts) == first).all()


@given(
    st.lists(
        st.one_of(
            st.integers(0, 2**64 - 1).map(lambda v: f"{v:016x}"),
            st.text("0123456789abcdefABG", max_size=17),
        ),
        max_size=30,
    )
)
def test_id_order_key_sorts_like_the_texts(ids: list[str]) -> None:
    key = _id_order_key(pa.array(ids, pa.string()))
    by_key = sorted(range(len(ids)), key=lambda i: (int(key[i]), i))
    by_text = sorted(range(len(ids)), key=lambda i: (ids[i].encode(), i))
    assert by_key == by_text


def _decoded(rows: pa.Table, consolidation: Consolidation) -> pa.Table:
    """`rows` with the vocabulary codes as their texts (codes depend on the order texts came)."""
    for name, vocabulary in (
        ("protocol", consolidation.protocols),
        ("exporter", consolidation.exporters),
        ("role_method", consolidation.role_methods),
    ):
        texts = vocabulary.strings(rows.column(name).to_numpy())
        rows = rows.set_column(rows.schema.get_field_index(name), name, texts)
    return rows


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(records(), st.sampled_from([1, 3, 128]), st.sampled_from([None, 7]))
def test_the_sessionizers_keys_give_the_rows_of_the_texts(
    flows: list[dict[str, object]], buckets: int, batch_size: int | None
) -> None:
    """Consolidation.rows from the sessionizer's SessionKeys equals rows from the texts:
    pair hashes (IPv6, ICMP and GRE ports ignored), the client's side, the codes' texts."""
    sessionizer = Sessionizer(SessionPolicy())
    size = batch_size or max(len(flows), 1)
    outputs = [
        sessionizer.feed(batch(flows[start : start + size], first_frame=start))
        for start in range(0, len(flows), size)
    ] + [sessionizer.finish()]
    from_texts, from_keys = Consolidation(GRACE_US), Consolidation(GRACE_US)
    for output in outputs:
        if not output.sessions.num_rows:
            continue
        assert output.keys is not None
        texts_rows, texts_counts = from_texts.rows(output.sessions, buckets)
        keys_rows, keys_counts = from_keys.rows(output.sessions, buckets, output.keys)
        assert (texts_counts == keys_counts).all()
        assert _decoded(keys_rows, from_keys).equals(_decoded(texts_rows, from_texts))


def test_keys_name_exporters_numbered_out_of_text_order() -> None:
    """The sessionizer numbers exporters as they come (198.51.100.7 first here) while a
    batch's names are sorted: the keys' codes must still name each row's own exporter."""
    sessionizer = Sessionizer(SessionPolicy())
    outputs = [
        sessionizer.feed(batch([rec(0, exporter="198.51.100.7")])),
        sessionizer.feed(batch([rec(1, exporter="192.0.2.1", dport=53, proto=17)], first_frame=1)),
        sessionizer.finish(),
    ]
    [output] = [output for output in outputs if output.sessions.num_rows]
    assert output.sessions.num_rows == 2 and output.keys is not None
    from_texts, from_keys = Consolidation(GRACE_US), Consolidation(GRACE_US)
    texts_rows, _ = from_texts.rows(output.sessions, 1)
    keys_rows, _ = from_keys.rows(output.sessions, 1, output.keys)
    assert _decoded(keys_rows, from_keys).equals(_decoded(texts_rows, from_texts))
