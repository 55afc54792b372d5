"""Exact sums of uint64 counters.

numpy's and Arrow's sums of uint64 wrap modulo 2**64, and a damaged record can carry a
counter near 2**64: totals summed batch by batch then depended on how records fell into
batches (the conservation check passed at one batch size and failed at another), or came
out 0. The 32-bit halves are summed apart, which is exact for fewer than 2**32 values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .jit_cache import drop_stale_jit_cache, njit, read_only

_LOW = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
# where a uint64 column stops: a scaled or summed counter past it (damaged records) stays
# there rather than wrapping around to a small number
COUNTER_CEILING = np.uint64(0xFFFFFFFFFFFFFFFF)


def exact_sum(values: npt.NDArray[Any]) -> int:
    """The sum of unsigned counters as a Python int, never wrapped."""
    low, high = _half_sums(read_only(np.ravel(values), np.uint64))
    return (int(high) << 32) + int(low)


@njit(cache=True, nogil=True)
def _half_sums(values: npt.NDArray[np.uint64]) -> Any:
    """(sum of the low 32-bit halves, sum of the high ones), in one pass and without the
    two temporary arrays numpy's masks would make (the run sums every counter column of
    every batch for the conservation check)."""
    low = np.uint64(0)
    high = np.uint64(0)
    for value in values:
        low += value & _LOW
        high += value >> _SHIFT
    return low, high


def ceiling_sums(
    values: npt.NDArray[Any], starts: npt.NDArray[np.integer[Any]]
) -> npt.NDArray[np.uint64]:
    """np.add.reduceat(values, starts, axis=0) for a 2-D uint64 array, each sum stopped at
    COUNTER_CEILING instead of wrapping."""
    out = np.empty((len(starts), values.shape[1]), dtype=np.uint64)
    _ceiling_sums(read_only(values, np.uint64), read_only(starts, np.int64), out)
    return out


@njit(cache=True, nogil=True)
def _ceiling_sums(
    values: npt.NDArray[np.uint64], starts: npt.NDArray[np.int64], out: npt.NDArray[np.uint64]
) -> None:
    for group in range(len(starts)):
        end = starts[group + 1] if group + 1 < len(starts) else len(values)
        for column in range(values.shape[1]):
            total = np.uint64(0)
            for row in range(starts[group], end):
                value = values[row, column]
                total = COUNTER_CEILING if total > COUNTER_CEILING - value else total + value
            out[group, column] = total


# numba's cache ignores the modules this one compiles in (jit_cache.py): last, so that
# every name is bound
drop_stale_jit_cache(globals())
