"""Record times: the range a run works in, and UTC microseconds as ISO-8601 text.

A damaged record's time field can lie outside years 1..9999, where Python's datetime
cannot go: such a time has no text (None), and the caller keeps the µs beside it. Further
out, past TIME_LIMIT_US, a time is not kept at all (see below).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

# Record times the sessionizer can work with: ~73,000 years either side of 1970. Within it,
# a time plus a duration (at most 1000 years, policy.MAX_DURATION_US) or the gap between
# two times stays inside int64 µs; past it a deadline wrapped around to the far past (a
# session closed before it opened). Readers give a time field they cannot bring into int64
# µs UNUSABLE_TIME, and read_flows counts every record outside the range as bad_timestamp.
TIME_LIMIT_US = 1 << 61
TIME_LIMIT_MS = TIME_LIMIT_US // 1000  # the same bound for a field in milliseconds
UNUSABLE_TIME = np.iinfo(np.int64).min
# what Python's datetime (and so pandas' printing) can show: years 1 to 9999, in UTC µs
SHOWABLE_MIN_US = -62_135_596_800_000_000
SHOWABLE_MAX_US = 253_402_300_799_999_999


# nfdump's time text (-t 2011/06/24.15:52:00), which sessionize --from/--to and the query
# API take beside ISO-8601
NFDUMP_TIME_LAYOUTS = ("%Y/%m/%d.%H:%M:%S", "%Y/%m/%d.%H:%M", "%Y/%m/%d")


def nfdump_time(text: str) -> datetime | None:
    """nfdump's `2011/06/24.15:52:00` (or without seconds, or a day alone) as UTC; None
    for any other text."""
    for layout in NFDUMP_TIME_LAYOUTS:
        try:
            return datetime.strptime(text.strip(), layout).replace(tzinfo=UTC)
        except ValueError:
            pass
    return None


def iso_us(value: int | None, *, trim_fraction: bool = False) -> str | None:
    """UTC µs -> ISO-8601 text with a Z: six fraction digits, none for a whole second, or
    with `trim_fraction` three always (milliseconds, what most exporters keep; `.000` for
    a whole second) unless a microsecond needs six: times one above another in a report
    line up (trimmed to the last non-zero digit, `.86Z` stood beside `.861Z`); None for no
    time or one datetime cannot show."""
    if value is None:
        return None
    seconds, micros = divmod(int(value), 1_000_000)
    try:
        moment = datetime.fromtimestamp(seconds, tz=UTC)
        # four year digits always (strftime's %Y gives "1-01-01" for year 1 on glibc)
        text = f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S")
    except (ValueError, OverflowError, OSError):
        return None
    if trim_fraction and not micros % 1000:
        fraction = f".{micros // 1000:03d}"
    elif not micros:
        fraction = ""
    else:
        fraction = f".{micros:06d}"
    return f"{text}{fraction}Z"


def scaled_time_us(values: np.ndarray, micros_per_unit: int) -> np.ndarray:
    """Unsigned time field values (ms: 1000, s: 1_000_000) -> int64 µs; UNUSABLE_TIME where
    the product would pass TIME_LIMIT_US (an 8-byte field of garbage wrapped around in the
    multiplication and passed for a plausible time)."""
    raw = np.asarray(values).astype(np.uint64)
    fits = raw <= np.uint64(TIME_LIMIT_US // micros_per_unit)
    return np.where(fits, raw.astype(np.int64) * micros_per_unit, UNUSABLE_TIME)


def beyond_limit(us: np.ndarray) -> np.ndarray:
    """Times past TIME_LIMIT_US either way (UNUSABLE_TIME included)."""
    return (us < -TIME_LIMIT_US) | (us > TIME_LIMIT_US)


def time_faults(
    first_us: np.ndarray, last_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beyond, timeless, salvaged) masks: the records the readers leave out (bad_timestamp,
    no_times) for a time past TIME_LIMIT_US (UNUSABLE_TIME included) with no usable time
    beside it, or both times exactly 0; and those kept at their one usable time, the other
    past the limit. One definition, for the reader that says so and for a reader that
    counts repairs only of records that are kept."""
    first_bad, last_bad = beyond_limit(first_us), beyond_limit(last_us)
    beyond = first_bad | last_bad
    salvaged = np.zeros(len(first_us), dtype=bool)
    if beyond.any():
        salvaged = (first_bad ^ last_bad) & (np.where(first_bad, last_us, first_us) != 0)
        beyond &= ~salvaged
    return beyond, (first_us == 0) & (last_us == 0), salvaged
