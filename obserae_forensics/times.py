"""UTC microseconds as ISO-8601 text, for manifests and reports.

A damaged record's time field can lie outside years 1..9999, where Python's datetime
cannot go: such a time has no text (None), and the caller keeps the µs beside it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso_us(value: int | None, *, trim_fraction: bool = False) -> str | None:
    """UTC µs -> ISO-8601 text with a Z: six fraction digits, none for a whole second, or
    with `trim_fraction` only the digits up to the last non-zero one; None for no time or
    one datetime cannot show."""
    if value is None:
        return None
    seconds, micros = divmod(int(value), 1_000_000)
    try:
        text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (ValueError, OverflowError, OSError):
        return None
    fraction = f".{micros:06d}" if micros else ""
    return f"{text}{fraction.rstrip('0') if trim_fraction else fraction}Z"
