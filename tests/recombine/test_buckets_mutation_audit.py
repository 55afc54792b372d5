"""Behaviour of recombine's bucketed chaining and its entry that no test pinned, found by a
mutation audit (the audit-recombine-buckets branch's: 66 small changes to partitioned.py,
P01-P48, and conversations.py, C01-C18, 28 of which no test noticed: 18 real gaps, killed
here, and 10 equivalent). The equivalent ones: P06 (_route's bincount `minlength=1`:
BucketedWriter reads only the buckets that have rows), P15 (Partitioned.existing without
its empty case: the general path gives 0), P17 (_Rows drops a batch only when past it,
`>`: one batch more held, the same rows), P26 (chain_buckets chains the buckets after a
loop fully: the loop is raised all the same), P27 (_chained holds one bucket more), P43
(_id_batches without its dictionary cast: the cast to string after it decodes one), P45
(_scratch in one record batch: memory only), C08, C09 (_named not matching conversation
ids: a conversation's id is always its first fragment's session id, chain.py), C10
(find_fragments not sorting by fragment_index: the fragments table is in that order
already). Four more were killed only by the property test of test_partitioned.py, after
minutes of shrinking (P13, P14, P21, P32): tests here pin them in a fraction of a second.
Each test fails with its change applied and names it. The earlier audits' are in
tests/recombine/test_mutation_audit.py; addresses.py's in tests/test_addresses_mutation_audit.py."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from obserae_forensics.errors import LinkCycle, UsageError
from obserae_forensics.recombine import (
    conversations,
    find_fragments,
    partitioned,
    recombine_runs,
    recombine_tables,
    write_recombined,
)
from obserae_forensics.recombine.conversations import (
    conversation_sessions,
    move_recombined,
    split_conversation_ids,
)
from obserae_forensics.signals import Interrupted
from obserae_forensics.tables.layout import RECOMBINE_FILES, REPORT_MD

from .conftest import session, write_run
from .test_partitioned import outputs


def _keyed(name: str, start: float, host: int, **kwargs: Any) -> dict[str, Any]:
    """A session of its own key (client 10.0.<host>.1)."""
    return session(name, start, start + 1, a=(f"10.0.{host}.1", 9), **kwargs)


# --- recombine/partitioned.py -------------------------------------------------------------


def test_buckets_are_bounded_when_the_open_files_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kills P04 (_open_files without its RLIM_INFINITY case, `int(soft)`): under
    `ulimit -n unlimited` getrlimit says -1, which left one bucket for every run however
    large (the memory bound lost); unlimited files are plenty, MAX_BUCKETS decides."""
    monkeypatch.setattr(
        resource, "getrlimit", lambda _: (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    )
    assert partitioned.bucket_count(10**12) == partitioned.MAX_BUCKETS
    assert partitioned.bucket_count(10, 2) == 5


def test_the_bucket_size_asked_for_is_the_one_chained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills P41 (recombine_partitioned's `bucket_count(total)`, without `bucket_sessions`)
    and C15 (recombine_runs handing `bucket_sessions=None` on): the sessions chained at a
    time are what memory holds; asked for 2 of 10 sessions, 5 buckets are made (the
    output is the same whatever the buckets, so only their number tells)."""
    made: list[int] = []
    original = partitioned.Partitioned

    class Counted(original):  # type: ignore[misc,valid-type]
        def __init__(self, runs: Any, scratch: Path, buckets: int) -> None:
            made.append(buckets)
            super().__init__(runs, scratch, buckets)

    monkeypatch.setattr(partitioned, "Partitioned", Counted)
    run = write_run(tmp_path / "run", [_keyed(f"s{i}", i, i) for i in range(10)])
    recombine_runs([run], tmp_path / "out", bucket_sessions=2)
    assert made == [5]


def test_a_bucket_keeps_its_sessions_in_table_order(tmp_path: Path) -> None:
    """Kills P05 (_route's order within a bucket reversed: not stable): an edited table
    giving two fragments of one key the same conversation_id and split links the next
    fragment to the first of them in the table, as chaining everything at once does; a
    bucket holding them the other way round linked it to the second."""
    key = {"a": ("10.0.0.1", 40000)}
    rows = [
        session("A", 0, 899, close="hard_timeout", conversation="c", **key),
        session("B", 2000, 2899, close="hard_timeout", conversation="c", **key),
        session("C", 900, 950, split=1, conversation="c", **key),
    ]
    rows += [_keyed(f"s{i}", i, i + 20) for i in range(6)]
    run = write_run(tmp_path / "run", rows)
    whole = write_recombined(recombine_tables([run]), tmp_path / "whole")
    joined = [c["session_ids"] for c in whole.conversations.to_pylist() if "C" in c["session_ids"]]
    assert joined == [["A", "C"]]
    for k in (1, 3, 100):
        recombine_runs([run], tmp_path / f"parts{k}", bucket_sessions=k)
        assert outputs(tmp_path / f"parts{k}") == outputs(tmp_path / "whole"), k


def test_conversations_of_one_instant_merge_by_exporter_then_id_a_few_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills P21 (the merge sorting conversation_id before exporter) and P32 (the output's
    row groups of MERGE_ROWS conversations, not OUTPUT_ROWS rows) without the minutes of
    shrinking the property test took: conversations opened at one instant, whose exporters'
    order is their ids' reversed, merged two at a time, come out as chaining everything at
    once writes them, byte for byte."""
    monkeypatch.setattr(partitioned, "MERGE_ROWS", 2)
    rows = [_keyed(f"c{i}", 100 + i // 4, i, exporter=f"192.0.2.{9 - i % 4}") for i in range(12)]
    run = write_run(tmp_path / "run", rows)
    write_recombined(recombine_tables([run]), tmp_path / "whole")
    for k in (1, 2, 5):
        recombine_runs([run], tmp_path / f"parts{k}", bucket_sessions=k)
        assert outputs(tmp_path / f"parts{k}") == outputs(tmp_path / "whole"), k


def test_of_several_repeated_sessions_the_least_id_is_named_with_every_copy(
    tmp_path: Path,
) -> None:
    """Kills P10 (_refuse_duplicates names the `max` id repeated, not the `min`) and P12
    (its count fixed at 2): a capture given in three runs repeats many ids; the error is
    the whole table's, word for word: the least id, how many times, in which runs."""
    rows = [_keyed(f"s{i}", i, i) for i in range(6)]
    runs = [write_run(tmp_path / f"r{k}", rows) for k in range(3)]
    with pytest.raises(UsageError) as whole:
        recombine_tables(runs)
    with pytest.raises(UsageError) as parts:
        recombine_runs(runs, tmp_path / "out", bucket_sessions=1)
    assert str(whole.value).startswith("session s0 appears 3 times (in ")
    assert str(parts.value) == str(whole.value)


def test_a_loop_in_a_later_run_is_placed_after_the_earlier_runs_sessions(tmp_path: Path) -> None:
    """Kills P07 (each batch's ROW counted from 0, not from the sessions before it) and P44
    (the stuck rows of all buckets not sorted): late sessions in a loop in two runs; the
    error names the first of them in the runs' tables one after the other (run 0's), and
    `stuck` holds their rows there, in order, as the whole table's error does."""

    def loop(tag: str, host: int, at: float) -> list[dict[str, Any]]:
        names = [f"{tag}{i}" for i in range(3)]
        return [
            _keyed(name, at + i, host, late=True, follows=names[(i + 1) % 3])
            for i, name in enumerate(names)
        ]

    first = write_run(tmp_path / "r0", [_keyed(f"s{i}", i, i) for i in range(8)] + loop("x", 50, 5))
    second = write_run(tmp_path / "r1", [*loop("y", 60, 5005), _keyed("t", 5009, 61)])
    with pytest.raises(LinkCycle) as whole:
        recombine_tables([first, second])
    with pytest.raises(LinkCycle) as parts:
        recombine_runs([first, second], tmp_path / "out", bucket_sessions=1)
    assert "(session x0 among 6)" in str(whole.value)
    assert str(parts.value) == str(whole.value)
    assert parts.value.stuck.tolist() == whole.value.stuck.tolist() == [8, 9, 10, 11, 12, 13]


def test_late_sessions_naming_another_keys_session_of_an_earlier_run(tmp_path: Path) -> None:
    """Kills P13 (Partitioned.existing keeps only the last batch's finds, `found =`) and P14
    (it counts the distinct ids named, not the sessions naming them), which only the
    property test found, after minutes of shrinking: two late sessions of run 1 name one
    session of run 0, of another key; both are late_follows_other_key, as the whole table
    counts them, not missing."""
    first = write_run(tmp_path / "r0", [_keyed(f"s{i}", i, i) for i in range(12)])
    second = write_run(
        tmp_path / "r1",
        [
            _keyed("t", 3000, 40),
            _keyed("late1", 3001, 41, late=True, follows="s3"),
            _keyed("late2", 3002, 42, late=True, follows="s3"),
            _keyed("lost", 3003, 43, late=True, follows="gone"),
        ],
    )
    whole = recombine_tables([first, second]).report
    assert whole["refused_links"]["late_follows_other_key"] == 2
    assert whole["refused_links"]["late_follows_missing"] == 1
    parts = recombine_runs([first, second], tmp_path / "out", bucket_sessions=1).report
    assert parts["refused_links"] == whole["refused_links"]


def test_fragments_are_found_in_any_batch_of_the_written_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills P35 (RowsByPosition.where without `at += batch.num_rows`: each batch's
    positions counted from 0): Find Session Fragments over what recombine_runs wrote reads
    the fragments a batch at a time (READ_ROWS, 131072 rows); a session past the first
    batch was answered with another conversation's fragments."""
    monkeypatch.setattr(partitioned, "READ_ROWS", 2)
    rows = [_keyed(f"s{i}", i, i) for i in range(5)]
    rows += [
        session("A", 10, 899, close="hard_timeout", a=("10.0.9.1", 9)),
        session("A1", 900, 950, split=1, conversation="A", a=("10.0.9.1", 9)),
    ]
    run = write_run(tmp_path / "run", rows)
    result = recombine_runs([run], tmp_path / "out")
    expected = find_fragments(recombine_tables([run]), "A1")
    assert expected["session_id"].tolist() == ["A", "A1"]
    assert find_fragments(result, "A1").equals(expected)


# --- recombine/conversations.py -----------------------------------------------------------


def test_an_output_written_while_recombine_ran_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills C01 (recombine_runs without its second check_out_dir, "again: time has
    passed"): a report another process put in OUT while the runs were chained is refused
    (without --force), not silently replaced."""
    run = write_run(tmp_path / "run", [_keyed("s", 0, 1)])
    out = tmp_path / "out"
    chain = conversations.recombine_partitioned

    def meanwhile(*args: Any, **kwargs: Any) -> dict[str, Any]:
        (out / REPORT_MD).write_text("another's", encoding="utf-8")
        return chain(*args, **kwargs)

    monkeypatch.setattr(conversations, "recombine_partitioned", meanwhile)
    with pytest.raises(UsageError, match=r"already holds report\.md; use --force"):
        recombine_runs([run], out)
    assert (out / REPORT_MD).read_text(encoding="utf-8") == "another's"
    assert sorted(p.name for p in out.iterdir()) == [REPORT_MD]


def test_an_output_directory_that_is_a_file_is_refused_by_name(tmp_path: Path) -> None:
    """Kills C03 (check_out_dir without its `exists and is not a directory` case): OUT
    naming a file is refused in words, before any work, and the file is left as it was
    (an OSError from deep in the writing said neither)."""
    run = write_run(tmp_path / "run", [_keyed("s", 0, 1)])
    out = tmp_path / "out"
    out.write_text("evidence", encoding="utf-8")
    with pytest.raises(UsageError, match="out: exists and is not a directory"):
        recombine_runs([run], out)
    with pytest.raises(UsageError, match="out: exists and is not a directory"):
        write_recombined(recombine_tables([run]), out, force=True)
    assert out.read_text(encoding="utf-8") == "evidence"


def test_recombined_tables_are_written_into_a_directory_not_made_yet(tmp_path: Path) -> None:
    """Kills C04 (write_recombined's `mkdir` without `parents=True`): OUT may lie in
    directories that do not exist yet, as recombine_runs makes them."""
    run = write_run(tmp_path / "run", [_keyed("s", 0, 1)])
    out = tmp_path / "case" / "day1" / "out"
    written = write_recombined(recombine_tables([run]), out)
    assert sorted(p.name for p in out.iterdir()) == sorted(RECOMBINE_FILES)
    assert written.out_dir == out
    recombine_runs([run], tmp_path / "case2" / "day1" / "out")
    assert outputs(tmp_path / "case2" / "day1" / "out") == outputs(out)


def test_a_signal_while_moving_the_outputs_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills C06 (move_recombined without `stop.kept.append(out_dir)`): a signal waits
    until the five files are in place; the Interrupted then raised says OUT holds them
    whole (`kept`), so that the command leaves them there and says so."""
    run = write_run(tmp_path / "run", [_keyed("s", 0, 1)])
    result = recombine_runs([run], tmp_path / "staged")

    @contextmanager
    def signalled() -> Iterator[None]:
        yield
        raise Interrupted(2)

    monkeypatch.setattr(conversations, "held", signalled)
    with pytest.raises(Interrupted) as stop:
        move_recombined(result, tmp_path / "out")
    assert stop.value.kept == [tmp_path / "out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(RECOMBINE_FILES)


def test_the_summary_counts_conversations_cut_at_either_end(tmp_path: Path) -> None:
    """Kills C12 (summary's `cut` the head_cut alone): a conversation that may go on after
    the window, and none before it, is said in the summary line."""
    rows = [session("A", 0, 100, state="active", close=None), _keyed("s", 0, 1)]
    result = recombine_tables([write_run(tmp_path / "run", rows)])
    counts = result.report["counts"]
    assert (counts["head_cut"], counts["tail_cut"]) == (0, 1)
    assert result.summary().endswith("; 0 may have begun before the window, 1 may go on after it")


def test_split_conversations_are_those_of_more_than_one_fragment(tmp_path: Path) -> None:
    """Kills C14 (split_conversation_ids `fragment_count > 1` -> `>= 1`): a conversation
    of one fragment is not split, whether the result is held or was written."""
    rows = [
        session("A", 0, 899, close="hard_timeout"),
        session("A1", 900, 950, split=1, conversation="A"),
        _keyed("s", 10, 5),
    ]
    run = write_run(tmp_path / "run", rows)
    assert split_conversation_ids(recombine_tables([run])) == ["A"]
    assert split_conversation_ids(recombine_runs([run], tmp_path / "out")) == ["A"]


def test_naming_no_conversation_is_refused(tmp_path: Path) -> None:
    """Kills C11 (conversation_sessions without its `if not ids` refusal): asked for no
    conversation, it says so rather than handing back no rows (an export of nothing)."""
    run = write_run(tmp_path / "run", [_keyed("s", 0, 1)])
    with pytest.raises(UsageError, match="name at least one conversation or session id"):
        conversation_sessions(recombine_tables([run]), [])
    assert conversation_sessions([run], ["s"]).column("session_id").to_pylist() == ["s"]


def test_every_unknown_id_is_named(tmp_path: Path) -> None:
    """Kills C16 (conversation_sessions naming the first unknown id only): a list of ids
    with two typos is refused naming both, so that one pass corrects them."""
    run = write_run(tmp_path / "run", [_keyed("s", 0, 1)])
    with pytest.raises(UsageError, match="no session or conversation 'x', 'y' in these runs"):
        conversation_sessions(recombine_tables([run]), ["s", "y", "x"])


def test_any_file_recombine_writes_needs_force(tmp_path: Path) -> None:
    """Kills C17 (check_out_dir looking at the two tables only): OUT holding any
    of recombine's outputs (a timeline.png of an earlier run here) is refused without
    --force, as a report would be silently replaced by another run's."""
    run = write_run(tmp_path / "run", [_keyed("s", 0, 1)])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "timeline.png").write_bytes(b"earlier")
    with pytest.raises(UsageError, match=r"already holds timeline\.png; use --force"):
        recombine_runs([run], tmp_path / "out")
    assert (tmp_path / "out" / "timeline.png").read_bytes() == b"earlier"
