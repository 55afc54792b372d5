"""Behaviour of the package's small modules that no test pinned, found by the forty-first
session's mutation audit: times.py, errors.py, counters.py, signals.py and jit_cache.py
here, readers/pcap_index.py, scope.py, background.py, _batch.py and _layout.py in
tests/readers/test_small_readers_mutation_audit.py. 91 changes (T01-T15, E01-E10, C01-C05,
S01-S12, J01-J07 here; P01-P18, SC01-SC09, B01-B07, BA01-BA03, L01-L05 there), each a
boundary, an off-by-one, a swapped field, a dropped branch or a wrong constant; 57 went
unnoticed by the suite. 53 were real gaps, killed by the tests of the two files (each names
the changes it kills), and 4 equivalent: E01 (`frame is not None` -> its truth: frames and
nfcapd blocks are numbered from 1, no caller gives 0), C01 (`>` -> `>=` in ceiling_sums: a
sum exactly at the ceiling is the ceiling either way), J01 (file names left out of the
sources digest: the sources are hashed in a fixed order with separators, so only files
renamed with their bytes unchanged, which changes no compiled code, hash the same) and P18
(`total < ihl + 8` -> `total < ihl` in the pcap index: a UDP length under 8 or other than
the IP payload's sends such a frame the general way anyway). T12 (OverflowError no longer
caught in iso_us) differs on 64-bit Linux only for ints past int64 µs, where
fromtimestamp raises OSError first; it is counted a gap for the contract (any int) and for
platforms whose time_t raises OverflowError sooner. Most of pcap_index's gaps change only
which path a frame takes (the general one gives the same datagrams, slower), and P06, P07,
P09 and P17 a guard against reading as a datagram what the general path would not (a frame
of another EtherType, IPv6, a first fragment whose UDP length is its own, another
protocol): they are pinned on index_records itself. One fault in the code, fixed: a signal
held by a block that failed stayed held into the next command of the process
(test_a_signal_held_by_a_failed_block_does_not_stop_the_next_command)."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from obserae_forensics import jit_cache, signals
from obserae_forensics.counters import COUNTER_CEILING, ceiling_sums
from obserae_forensics.errors import (
    ForensicsError,
    InputError,
    LinkCycle,
    MalformedInput,
    TruncatedInput,
    UnknownFormat,
    UnknownTemplate,
    UsageError,
)
from obserae_forensics.signals import Interrupted
from obserae_forensics.times import (
    SHOWABLE_MAX_US,
    SHOWABLE_MIN_US,
    TIME_LIMIT_MS,
    TIME_LIMIT_US,
    UNUSABLE_TIME,
    beyond_limit,
    iso_us,
    nfdump_time,
    scaled_time_us,
    time_faults,
)

# -- times.py ------------------------------------------------------------------------------


def test_a_time_field_exactly_at_the_limit_is_kept() -> None:
    """Kills T01 (`<=` -> `<` in scaled_time_us): the largest field value whose product
    stays within TIME_LIMIT_US is a time beyond_limit keeps, and became UNUSABLE_TIME (a
    record counted bad_timestamp, where the nfcapd reader's TIME_LIMIT_MS check kept it);
    one unit more is refused."""
    values = np.array([TIME_LIMIT_MS, TIME_LIMIT_MS + 1, 5], dtype=np.uint64)
    kept = TIME_LIMIT_MS * 1000
    assert scaled_time_us(values, 1000).tolist() == [kept, UNUSABLE_TIME, 5000]
    assert not beyond_limit(np.array([kept]))[0]
    seconds = TIME_LIMIT_US // 1_000_000
    assert scaled_time_us(np.array([seconds], np.uint64), 1_000_000)[0] == seconds * 1_000_000


def test_the_time_limit_is_inclusive_on_both_sides() -> None:
    """Kills T02 and T03 (`<` -> `<=`, `>` -> `>=` in beyond_limit): ±TIME_LIMIT_US
    themselves are usable times (scaled_time_us hands the bound out as one); one µs
    further either way, and UNUSABLE_TIME, are not."""
    us = np.array([-TIME_LIMIT_US, TIME_LIMIT_US, -TIME_LIMIT_US - 1, TIME_LIMIT_US + 1])
    assert beyond_limit(us).tolist() == [False, False, True, True]
    assert beyond_limit(np.array([UNUSABLE_TIME]))[0]


def test_the_millisecond_limit_is_the_microsecond_one_in_milliseconds() -> None:
    """T04 (a wrong divisor for TIME_LIMIT_MS) is noticed by the nfcapd time tests; this
    names the relation the readers rely on."""
    assert TIME_LIMIT_MS * 1000 <= TIME_LIMIT_US < (TIME_LIMIT_MS + 1) * 1000


def _faults(first: list[int], last: list[int]) -> list[tuple[bool, bool, bool]]:
    beyond, timeless, salvaged = time_faults(np.array(first), np.array(last))
    return list(zip(beyond.tolist(), timeless.tolist(), salvaged.tolist(), strict=True))


def test_a_record_is_kept_at_its_one_usable_nonzero_time() -> None:
    """Kills T05 (`^` -> `|`), T06 (the usable time and the bad one swapped) and T07 (the
    `!= 0` dropped) in time_faults: a record with one time past the limit is kept at the
    other only when that one is usable and not 0; with both past, or the other 0, it is
    left out as bad_timestamp (a record salvaged at time 0 was placed in 1970, or one at
    two bad times kept at garbage)."""
    bad = UNUSABLE_TIME
    far = TIME_LIMIT_US + 1
    assert _faults([bad, 7, bad, 0, bad, 5], [7, far, far, bad, 0, 9]) == [
        (False, False, True),  # first bad, last usable: kept at last
        (False, False, True),  # last bad: kept at first
        (True, False, False),  # both bad
        (True, False, False),  # the usable one is 0
        (True, False, False),
        (False, False, False),  # nothing wrong
    ]


def test_only_a_record_with_both_times_zero_is_timeless() -> None:
    """Kills T08 (`&` -> `|`): a record with one time 0 (a v9 record whose start field is
    0, an uptime at boot) has a time; only both 0 is no_times."""
    assert [t for _, t, _ in _faults([0, 0, 5], [0, 5, 0])] == [True, False, False]


def test_iso_text_has_a_fraction_only_when_there_is_one() -> None:
    """Kills T09 (a whole second given `.000000`) and T10 (`trim_fraction` ignored): the
    report's and the CLI's times, compared as text by scripts."""
    assert iso_us(0) == "1970-01-01T00:00:00Z"
    assert iso_us(1_500_000) == "1970-01-01T00:00:01.500000Z"
    assert iso_us(1_500_000, trim_fraction=True) == "1970-01-01T00:00:01.500Z"
    assert iso_us(1_861_000, trim_fraction=True) == "1970-01-01T00:00:01.861Z"
    assert iso_us(1_000_001, trim_fraction=True) == "1970-01-01T00:00:01.000001Z"
    assert iso_us(2_000_000, trim_fraction=True) == "1970-01-01T00:00:02.000Z"
    assert iso_us(-1) == "1969-12-31T23:59:59.999999Z"
    assert iso_us(None) is None


def test_the_showable_range_is_exactly_what_iso_text_can_show() -> None:
    """Kills T11 (year not padded to four digits) and T15 (SHOWABLE_MAX_US one µs short):
    the bounds query hides times by are the first and last µs datetime shows, and year 1
    is written `0001` (strftime's %Y gave `1` on glibc)."""
    assert iso_us(SHOWABLE_MIN_US) == "0001-01-01T00:00:00Z"
    assert iso_us(SHOWABLE_MAX_US) == "9999-12-31T23:59:59.999999Z"
    assert iso_us(SHOWABLE_MIN_US - 1) is None
    assert iso_us(SHOWABLE_MAX_US + 1) is None


def test_a_time_no_platform_can_show_has_no_text() -> None:
    """Kills T12 (OverflowError no longer caught): a time past what the platform's time_t
    holds has no text (None) rather than an exception in the report."""
    assert iso_us(1 << 90) is None
    assert iso_us(-(1 << 90)) is None
    assert iso_us(1 << 62) is None


def test_nfdump_time_takes_a_day_alone_and_surrounding_blanks() -> None:
    """Kills T13 (the day-only layout dropped) and T14 (blanks not stripped): `--from
    2011/06/24` and a value pasted with a space are nfdump's own forms; the result is
    UTC, not a naive time the window compared with local time."""
    assert nfdump_time(" 2011/06/24 ") == datetime(2011, 6, 24, tzinfo=UTC)
    assert nfdump_time("2011/06/24.15:52") == datetime(2011, 6, 24, 15, 52, tzinfo=UTC)
    assert nfdump_time("2011-06-24") is None


# -- errors.py -----------------------------------------------------------------------------


def test_an_input_error_says_file_offset_and_frame_or_block() -> None:
    """Kills E02 (the offset left out), E03 (the unit ignored: an nfcapd block called a
    frame) and E10 (`message` giving the whole text): the place an incident report cites
    is `file@offset (unit n)`, and `message` is the problem alone (RunReport's examples
    print the two apart)."""
    error = InputError("bad bytes", source="cap.pcap", offset=40, frame=3)
    assert str(error) == "cap.pcap@40 (frame 3): bad bytes"
    assert error.message == "bad bytes"
    error.unit = "block"
    assert str(error) == "cap.pcap@40 (block 3): bad bytes"
    assert str(InputError("gone", source="f", offset=0)) == "f@0: gone"


def test_each_input_error_counts_under_its_own_reason() -> None:
    """Kills E04 (a MalformedInput's own reason ignored), E05, E06, E07 (a subclass's
    reason dropped): the skipped counts of the run's summary are keyed by them."""
    assert MalformedInput("x", source="f", offset=0).reason == "malformed"
    assert MalformedInput("x", source="f", offset=0, reason="bad_block_header").reason == (
        "bad_block_header"
    )
    assert TruncatedInput("x", source="f", offset=0).reason == "truncated"
    assert UnknownTemplate("x", source="f", offset=0).reason == "no_template"
    assert UnknownFormat("x", source="f", offset=0).reason == "unknown_format"
    assert InputError("x", source="f", offset=0).reason == "unreadable"


def test_a_link_cycle_is_a_usage_error_with_its_rows() -> None:
    """Kills E08 (LinkCycle no longer a UsageError: the CLI's exit 2 and message for an
    edited table) and E09 (`stuck` not kept: recombine's partitioned pass reads it)."""
    stuck = np.array([4, 9])
    error = LinkCycle(stuck, "s-1", 2)
    assert isinstance(error, UsageError) and isinstance(error, ForensicsError)
    assert error.stuck is stuck
    assert "session s-1 among 2" in str(error)
    assert issubclass(TruncatedInput, MalformedInput) and issubclass(UnknownFormat, InputError)
    assert not issubclass(UnknownFormat, MalformedInput)


# -- counters.py ---------------------------------------------------------------------------


def test_ceiling_sums_sum_every_row_of_every_group() -> None:
    """Kills C02 (the last group's last row left out) and C04 (each group's first row
    left out): the consolidated sessions' counters."""
    values = np.array([[1, 10], [2, 20], [4, 40], [8, 80]], dtype=np.uint64)
    sums = ceiling_sums(values, np.array([0, 1, 3]))
    assert sums.tolist() == [[1, 10], [6, 60], [8, 80]]


def test_ceiling_sums_stop_at_the_ceiling() -> None:
    """Kills C05 (a sum that would pass the ceiling kept at the total before it): damaged
    counters near 2**64 give the ceiling, not a smaller plausible number."""
    values = np.array([[5], [COUNTER_CEILING - 2], [1]], dtype=np.uint64)
    assert ceiling_sums(values, np.array([0])).tolist() == [[int(COUNTER_CEILING)]]
    exact = np.array([[COUNTER_CEILING - 3], [3]], dtype=np.uint64)  # exactly the ceiling
    assert ceiling_sums(exact, np.array([0])).tolist() == [[int(COUNTER_CEILING)]]


# -- signals.py ----------------------------------------------------------------------------


@pytest.fixture
def fresh_signals() -> Iterator[None]:
    """signals' process state as a command starts, and the host's handlers back after."""
    saved = {signum: signal.getsignal(signum) for signum in signals.STOPS}
    state = signals._State
    kept = (state.holding, state.held, state.stopping, state.settled, set(state.ignored))
    state.holding, state.held, state.stopping, state.settled = 0, None, False, False
    try:
        yield
    finally:
        state.holding, state.held, state.stopping, state.settled = kept[:4]
        state.ignored.clear()
        state.ignored.update(kept[4])
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.mark.usefixtures("fresh_signals")
def test_a_second_signal_does_not_interrupt_the_first_ones_cleanup() -> None:
    """Kills S06 (the handler not marking the run as stopping): a second Ctrl-C while the
    first unwinds raised again inside the cleanup, which left a staging directory."""
    with pytest.raises(Interrupted) as stop:
        signals._handler(signal.SIGTERM, None)
    assert stop.value.signum == signal.SIGTERM and stop.value.kept == []
    assert signals._handler(signal.SIGINT, None) is None


@pytest.mark.usefixtures("fresh_signals")
def test_a_held_signal_is_raised_once_at_the_blocks_end_and_is_the_first_one() -> None:
    """Kills S02 (the last signal held, not the first: the exit status 130/143 said the
    wrong one) and S05 (held() not marking the run as stopping: a second signal raised
    again in the cleanup)."""
    with pytest.raises(Interrupted) as stop:
        with signals.held():
            signals._handler(signal.SIGTERM, None)
            signals._handler(signal.SIGINT, None)
    assert stop.value.signum == signal.SIGTERM
    assert signals._handler(signal.SIGINT, None) is None


@pytest.mark.usefixtures("fresh_signals")
def test_a_signal_held_in_nested_blocks_waits_for_the_outermost() -> None:
    """Kills S03 (raised at the inner block's end): an output put in place by nested
    steps was interrupted between them."""
    done = []
    with pytest.raises(Interrupted):
        with signals.held():
            with signals.held():
                signals._handler(signal.SIGINT, None)
            done.append("inner")
            with signals.held():
                done.append("second")
    assert done == ["inner", "second"]


@pytest.mark.usefixtures("fresh_signals")
def test_a_signal_held_by_a_failed_block_does_not_interrupt_the_unwinding() -> None:
    """Kills S04 (a signal held raised even while the run already unwinds): a block
    that failed leaves its held signal; once a later signal has stopped the run, the
    cleanup's own held blocks must end quietly."""
    with pytest.raises(ValueError):
        with signals.held():
            signals._handler(signal.SIGINT, None)
            raise ValueError("the block's own error unwinds")
    with pytest.raises(Interrupted):
        signals._handler(signal.SIGTERM, None)
    with signals.held():  # the cleanup putting something back
        pass


@pytest.mark.usefixtures("fresh_signals")
def test_a_new_command_can_be_stopped_after_an_earlier_one_settled_or_stopped() -> None:
    """Kills S07 and S08 (install() not resetting `settled` / `stopping`): a second
    main() in one process (a notebook, a script) ignored every signal for good."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signals.install()
    signals.settle()
    assert signals._handler(signal.SIGINT, None) is None  # settled: it finishes
    signals.install()
    with pytest.raises(Interrupted):
        signals._handler(signal.SIGINT, None)
    signals.install()
    with pytest.raises(Interrupted):
        signals._handler(signal.SIGINT, None)


@pytest.mark.usefixtures("fresh_signals")
def test_a_signal_held_by_a_failed_block_does_not_stop_the_next_command() -> None:
    """A fault the audit found: Ctrl-C while a run was put in place (held()) and the
    putting in place then failed on its own (a full disk) left the signal in
    `_State.held`; install() reset `settled` and `stopping` but not it, so a second
    main() in the process (a notebook, a script) raised Interrupted at the end of its
    first held() block and said it was stopped, though nobody stopped it. install()
    clears it now."""
    with pytest.raises(OSError):
        with signals.held():
            signals._handler(signal.SIGINT, None)
            raise OSError("no space left on device")
    signals.install()  # the next command
    with signals.held():
        pass


# -- jit_cache.py --------------------------------------------------------------------------


def _package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, object]]:
    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "a.py").write_text("X = 1\n")
    monkeypatch.setattr(jit_cache, "PACKAGE_ROOT", package.resolve())
    return package, {"__file__": str(package / "a.py")}


def test_the_cache_of_a_module_whose_name_extends_anothers_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills J02 (`{stem}.*` -> `{stem}*`): dropping row.py's cache deleted that of a
    module named row_x.py too (a recompile of something that had not changed)."""
    package, namespace = _package(tmp_path, monkeypatch)
    own = package / "__pycache__" / "a.f-1.py311.nbi"
    other = package / "__pycache__" / "ab.g-1.py311.nbi"
    own.write_bytes(b"code")
    other.write_bytes(b"code")
    assert jit_cache.drop_stale_jit_cache(namespace)
    assert not own.exists() and other.exists()


def test_a_first_stamp_without_cache_files_drops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills J03 (always reporting a drop): the answer says whether cache files were
    deleted, and a module without any had nothing to drop."""
    package, namespace = _package(tmp_path, monkeypatch)
    assert not jit_cache.drop_stale_jit_cache(namespace)
    assert (package / "__pycache__" / "a.jit-sources").is_file()


def test_a_read_only_install_keeps_its_cache_and_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kills J04 (OSError no longer caught): where the stamp cannot be written (a system
    package, a read-only container image), importing the package raised."""
    _, namespace = _package(tmp_path, monkeypatch)

    def refused(*_: object, **__: object) -> tuple[int, str]:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    assert jit_cache.drop_stale_jit_cache(namespace) is False


def test_read_only_gives_one_read_only_contiguous_type_and_copies_only_when_needed() -> None:
    """Kills J05 (the view left writable) and J06 (a strided array passed as it is): each
    of those is a numba type of its own, and a new one compiled the kernel again."""
    array = np.arange(10, dtype=np.int64)
    view = jit_cache.read_only(array, np.int64)
    assert not view.flags.writeable and np.shares_memory(view, array)
    assert array.flags.writeable  # the caller's own array is left as it was
    strided = jit_cache.read_only(array[::2], np.int64)
    assert strided.flags.c_contiguous and not strided.flags.writeable
    assert strided.tolist() == [0, 2, 4, 6, 8]
