"""Exact sums of uint64 counters.

numpy's and Arrow's sums of uint64 wrap modulo 2**64, and a damaged record can carry a
counter near 2**64: totals summed batch by batch then depended on how records fell into
batches (the conservation check passed at one batch size and failed at another), or came
out 0. The 32-bit halves are summed apart, which is exact for fewer than 2**32 values.
"""

from __future__ import annotations

import numpy as np


def exact_sum(values: np.ndarray) -> int:
    """The sum of unsigned counters as a Python int, never wrapped."""
    values = np.asarray(values).astype(np.uint64, copy=False)
    low = int((values & np.uint64(0xFFFFFFFF)).sum(dtype=np.uint64))
    high = int((values >> np.uint64(32)).sum(dtype=np.uint64))
    return (high << 32) + low
