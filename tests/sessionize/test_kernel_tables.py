"""The kernel's split storage (slot table + open-session rows) against the reference.

KernelReplay starts its tables at INITIAL_CAPACITY rows, so small inputs never grow them;
here they start at two, so that slot growth (with its own row width), session-row growth,
_collect and rehashing all run on every generated input.
"""

from __future__ import annotations

import functools
from unittest import mock

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from obserae_forensics.sessionize import Sessionizer, SessionPolicy
from obserae_forensics.sessionize import kernel as K
from obserae_forensics.sessionize.kernel import KernelReplay

from .scenario import ACK, FIN, RST, SYN, batch, rec, run
from .test_properties import SETTINGS, policies, records


def _tiny_run(flows: list, policy: SessionPolicy) -> tuple:
    tiny = functools.partial(KernelReplay, capacity=2)
    with mock.patch("obserae_forensics.sessionize.sessionizer.KernelReplay", tiny):
        return run(flows, policy, engine="numba")


def _assert_tiny_run_equals_reference(flows: list, policy: SessionPolicy) -> None:
    kernel_sessions, kernel_flows, kernel = _tiny_run(flows, policy)
    reference_sessions, reference_flows, reference = run(flows, policy, engine="reference")
    assert kernel_sessions.equals(reference_sessions)
    assert kernel_flows.equals(reference_flows)
    assert kernel.pressure() == reference.pressure()


@SETTINGS
@given(records(), policies)
def test_kernel_with_tiny_tables_equals_reference(flows: list, policy: SessionPolicy) -> None:
    _assert_tiny_run_equals_reference(flows, policy)


class _Recording(KernelReplay):
    """KernelReplay that notes its table sizes when it releases them at finish."""

    final: dict[str, int]

    def _release(self) -> None:
        self.final = {
            "rows": len(self.M),
            "slots": int(self.C[K.S_SLOTS]),
            "width": self.S.shape[1],
            "used": int(self.C[K.S_USED]),
        }
        super()._release()


def _recorded_run(
    flows: list, policy: SessionPolicy | None = None, batch_size: int | None = None
) -> tuple[tuple, list[_Recording]]:
    """run() on the kernel with tables of two rows; -> (run's result,
    each exporter's replay)."""
    made: list[_Recording] = []

    def tiny(*args: object, **kwargs: object) -> KernelReplay:
        made.append(_Recording(*args, **kwargs, capacity=2))  # type: ignore[arg-type]
        return made[-1]

    with mock.patch("obserae_forensics.sessionize.sessionizer.KernelReplay", tiny):
        result = run(flows, policy, engine="numba", batch_size=batch_size)
    return result, made


def test_remembered_keys_keep_no_session_row() -> None:
    """A flood of one-record conversations under a cap of 4: session rows stay at the cap
    plus one (rounded up to a power of two) while the slots grow with the remembered keys,
    and the result is the reference's."""
    policy = SessionPolicy(max_open_ksessions=0.004)
    flows = [
        rec(i / 10, src=f"10.0.{i // 250}.{i % 250 + 1}", dst="192.0.2.1", dport=53, proto=17)
        for i in range(300)
    ]
    (kernel_sessions, kernel_flows, kernel), made = _recorded_run(flows, policy)
    reference_sessions, reference_flows, reference = run(flows, policy, engine="reference")
    assert kernel_sessions.equals(reference_sessions)
    assert kernel_flows.equals(reference_flows)
    assert kernel.pressure() == reference.pressure()
    [replay] = made
    assert replay.pressure()["evictions"] == 296
    assert replay.final["rows"] == 8
    assert replay.final["slots"] >= 300
    assert replay.final["width"] * 8 == 128
    assert len(replay.S) == len(replay.M) == 0  # released at finish


@st.composite
def crowded(draw: st.DrawFn) -> list:
    """Many conversations at once, most of them touched again later and many ending in the
    same second, under a cap far below their number: the cap's heap fills, entries go
    stale (their session went on) and ties on last_seen fall to the key."""
    out = []
    clock = 0
    for _ in range(draw(st.integers(20, 150))):
        clock += draw(st.sampled_from((0, 0, 0, 1, 2)))
        host = draw(st.integers(1, 40))
        out.append(
            rec(
                clock,
                clock + draw(st.sampled_from((0, 0, 1, 3))),
                src=f"10.0.0.{host}",
                sport=draw(st.sampled_from((1024, 2048, 4096))),
                dst=draw(st.sampled_from(("192.0.2.1", "192.0.2.2"))),
                dport=draw(st.sampled_from((53, 443))),
                proto=draw(st.sampled_from((6, 17))),
            )
        )
    return out


@SETTINGS
@given(crowded(), st.sampled_from((0.004, 0.012, 0.03)))
def test_crowded_cap_equals_reference(flows: list, cap: float) -> None:
    """The cap's lazy heap under pressure (stale entries requeued, ties on last_seen), its
    growth from two rows included: the victims are the reference's (oldest last_seen, ties
    by key). The smaller property inputs rarely requeue a stale top: a kernel variant that
    requeued it without restoring the heap order passed them and failed here."""
    policy = SessionPolicy(max_open_ksessions=cap)
    _assert_tiny_run_equals_reference(flows, policy)


@st.composite
def bursts(draw: st.DrawFn) -> list:
    """Bursts of conversations separated by jumps of the watermark that pass whole wheel
    buckets (~1 s each): their deadlines come due together and leave through the sweep's
    due list, unordered. Sessions go on after their first deadline was queued (the entry
    comes due early and is queued again) or finish (FIN, RST: the deadline moves earlier
    and the older entry goes stale), long records reach back, and keys meet again in later
    bursts (remembered sessions, fragments)."""
    out = []
    clock = 0.0
    for _ in range(draw(st.integers(2, 6))):
        clock += draw(st.sampled_from((0.5, 3.0, 40.0, 95.0, 400.0, 2500.0)))
        for _ in range(draw(st.integers(1, 40))):
            at = clock + draw(st.sampled_from((0.0, 0.3, 1.1, 2.5)))
            host = draw(st.integers(1, 12))
            out.append(
                rec(
                    at,
                    at + draw(st.sampled_from((0, 0, 4, 70))),
                    src=f"10.0.0.{host}",
                    sport=draw(st.sampled_from((1024, 2048))),
                    dst=draw(st.sampled_from(("192.0.2.1", "192.0.2.2"))),
                    dport=draw(st.sampled_from((53, 443))),
                    proto=draw(st.sampled_from((6, 6, 17, 1))),
                    flags=draw(st.sampled_from((ACK, ACK, SYN, SYN | ACK, FIN | ACK, RST))),
                )
            )
    return out


@SETTINGS
@given(bursts(), policies)
def test_watermark_jumps_close_whole_buckets_as_the_reference(
    flows: list, policy: SessionPolicy
) -> None:
    """Closes taken from the due list (last in, first out) give the reference's sessions: the
    order of the closes of one sweep is not observable. (Checked to fail when the due list
    drops its entries, or one entry in three.)"""
    _assert_tiny_run_equals_reference(flows, policy)


def test_late_sessions_behind_a_watermark_that_runs_ahead_are_forgotten() -> None:
    """Memory stays bounded when every record is late: one record far ahead, then 12,000
    one-record conversations behind it. A rule that kept a closed session until the
    watermark had moved on since its close kept all of them (the 20.8 M-record benchmark
    grew to 3.6 GB). A late session is remembered for the next LATE_MEMORY_RECORDS records
    (4,096), whatever the clocks say: the slot table holds about half the keys (their slots
    are taken back lazily), whether 6,000 or 24,000 came."""
    flows = [rec(100_000, proto=17)] + [
        rec(
            i / 10,
            src=f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}",
            dst="192.0.2.1",
            dport=53,
            proto=17,
        )
        for i in range(12_000)
    ]
    (sessions, _, _), made = _recorded_run(flows, batch_size=64)
    assert sessions.num_rows == 12_001
    [replay] = made
    assert replay.final["slots"] < 6600


def test_late_sessions_whose_times_stand_still_are_forgotten() -> None:
    """A review: late records of 6,000 keys, all stamped at 50 s (a clock stuck at the
    exporter's boot), between the records of a live conversation that moves the watermark a
    second each: on the late records' own watermark, which stands still, every one was
    kept (and on the watermarks added up, an exporter's flush of a capture's flows at its
    end, where neither moves, kept 1.1 M sessions of the 5.2 M-record benchmark)."""
    flows = []
    for i in range(6000):
        flows.append(rec(100_000 + i, 100_000.5 + i, src="10.0.0.1", sport=1111, dport=22))
        flows.append(
            rec(
                50, src=f"10.1.{i // 250}.{i % 250}", sport=5000, dst="10.9.9.9", dport=53, proto=17
            )
        )
    (sessions, _, _), made = _recorded_run(flows, batch_size=64)
    assert sessions.num_rows == 6007  # and the live conversation in 7 fragments of 15 min
    [replay] = made
    assert replay.final["slots"] < 3000  # 4,096 records: 2,048 late ones, and lazily more


def test_replay_takes_the_record_columns_in_records_order() -> None:
    """KernelReplay.process hands replay the Records columns in RECORD_FIELDS order."""
    from obserae_forensics.sessionize.keys import RECORD_FIELDS

    names = K.replay.py_func.__code__.co_varnames[: len(RECORD_FIELDS)]
    assert names == RECORD_FIELDS


def test_each_kernel_function_is_compiled_once() -> None:
    """Every numba function of the kernel has one compiled signature, whatever the records:
    the columns of a one-exporter batch (some lent read-only by Arrow), those gathered for
    each exporter of a mixed batch (all made by numpy), event replay, a stray, evictions at
    a cap. Each further signature is another compilation on the first run after install:
    replay's takes over a minute, and it was compiled twice once a run met a mixed batch;
    a literal 0 handed to a helper compiled that helper again."""
    flows = [
        rec(100, flags=SYN),
        rec(101, flags=SYN | ACK, src="10.0.0.2", sport=443, dst="10.0.0.1", dport=40000),
        rec(1, 2),  # a stray of the session opened at 100
        *[rec(102 + i, sport=41000 + i, flags=SYN) for i in range(6)],
        rec(103, exporter="192.0.2.99", dport=53, proto=17),
    ]
    for options in ({}, {"replay": "event"}, {"max_open_ksessions": 0.002}):
        sessions, _, sessionizer = run(flows, SessionPolicy(**options))
        assert sessions.num_rows >= 8
    assert run(flows[:-1], batch_size=3)[0].num_rows >= 8  # one exporter: lent columns
    assert sessionizer.pressure()["192.0.2.1"]["evictions"] > 0
    compiled = {
        name: len(value.signatures)
        for name, value in vars(K).items()
        if getattr(value, "signatures", None)
    }
    # helpers appear only when compiled here (a fresh checkout, as in CI): a replay loaded
    # from numba's cache brings them along inside it
    assert {"replay", "finish"} <= set(compiled)
    assert {name: count for name, count in compiled.items() if count > 1} == {}


def test_no_kernel_helper_is_handed_a_literal() -> None:
    """A literal argument (0, True) makes numba compile a helper once more for its literal
    type. The compiled-once test sees helpers only when replay is compiled in the process
    (a fresh cache, as in CI); this reads the source, so it holds on a warm cache too."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(K))
    called = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(
            isinstance(d, ast.Name) and d.id in ("_helper", "_jit") for d in node.decorator_list
        )
    } | {"_infer"}
    assert {"replay", "_finalize", "_stray", "_eviction_sift_down"} <= called
    literal = [
        f"line {node.lineno}: {ast.unparse(node)[:60]}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in called
        and any(
            isinstance(a, ast.Constant)
            or (isinstance(a, ast.UnaryOp) and isinstance(a.operand, ast.Constant))
            for a in node.args
        )
    ]
    assert literal == []


def _table_bytes(sessionizer: Sessionizer) -> int:
    """Bytes of every array the sessionizer's replays hold, each array counted once."""
    arrays: dict[int, np.ndarray] = {}
    for replay in sessionizer._replays:
        for value in [*vars(replay).values(), *vars(replay.output).values()]:
            if isinstance(value, np.ndarray):
                arrays[id(value)] = value
    return sum(array.nbytes for array in arrays.values())


def test_an_exporter_costs_memory_by_its_sessions_not_by_a_busy_exporters_start() -> None:
    """Found by a scale check: every exporter's replay started with tables sized for a busy
    one (a 64 MB slot reserve, 16,384 session rows) and kept an output buffer sized for its
    largest batch, so captures of 1,000 exporters with ten records each took 4 GB and 16 s
    (numpy asks for huge pages for large arrays: ~2 MB touched for each), and 10,000 took
    23 GB. Here 200 exporters, one after another as captures of one router after another
    are read: their tables hold ~130 kB each (mostly the timer wheel), where they held 82 MB;
    the output buffer is one, sized for a round."""
    flows = [
        rec(i * 0.5, src=f"10.0.{i}.1", flags=SYN, exporter=f"192.0.{e // 250}.{e % 250}")
        for e in range(200)
        for i in range(30)
    ]
    sessionizer = Sessionizer(SessionPolicy())
    for start in range(0, len(flows), 30):
        sessionizer.feed(batch(flows[start : start + 30], first_frame=start))
    assert len(sessionizer._replays) == 200
    assert _table_bytes(sessionizer) < 200 * 256 * 1024
    assert len({id(replay.output) for replay in sessionizer._replays}) == 1


def test_output_buffer_moves_when_a_round_outgrows_it() -> None:
    """The kernel's NEED_OUTPUT (not reached when each replay reserves its worst case): with
    reservations of one row, the kernel stops for room again and again, and each time this
    replay's rows move to a new buffer while the rows the other exporters wrote in the round
    stay in the old one. The tables are the reference's."""
    flows = [
        rec(
            i * 0.2,
            (i + 1) * 0.2,
            src=f"10.0.{i % 7}.1",
            sport=1000 + i % 3,
            flags=(SYN, SYN | ACK, ACK, FIN | ACK, RST)[i % 5],
            exporter=("192.0.2.1", "192.0.2.2", "192.0.2.3")[i % 3],
            proto=(6, 6, 17)[i % 3],
        )
        for i in range(400)
    ]
    flows += [rec(1000 + i, src=f"10.1.0.{i}", exporter="192.0.2.1") for i in range(50)]
    moved = []
    real_move = K.OutputRows.move

    def move(self: K.OutputRows, end: int, rows: int) -> int:
        moved.append(self.used)  # > 0: other exporters' rows of the round stay behind
        return real_move(self, end, rows)

    original = K.KernelReplay._start_output

    def stingy(self: K.KernelReplay, rows: int) -> None:
        # process() reserves open + records + 8 and finish() open + 8: finish cannot stop
        # for room, so only process() is kept short
        original(self, 1 if rows > int(self.C[K.S_OPEN]) + 8 else rows)

    with (
        mock.patch.object(K.KernelReplay, "_start_output", stingy),
        mock.patch.object(K.OutputRows, "move", move),
    ):
        for size in (7, 64, None):
            kernel_sessions, kernel_flows, _ = run(flows, batch_size=size)
            reference_sessions, reference_flows, _ = run(flows, engine="reference", batch_size=size)
            assert kernel_sessions.equals(reference_sessions)
            assert kernel_flows.equals(reference_flows)
    assert len(moved) > 10 and max(moved) > 0
