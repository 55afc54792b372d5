"""Deterministic 64-bit ids and their 16-hex-digit text, whole columns at a time.

Ids in the tables are hashes of what identifies a row (sessions.md: "the same input always
gives the same ids"), so they must not depend on Python's hash seed, the platform or the
row's position. splitmix64 folds over uint64 columns are cheap, well mixed and portable;
numpy's uint64 arithmetic wraps exactly as the algorithm needs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def fold(h: np.ndarray, value: np.ndarray) -> np.ndarray:
    """One splitmix64 round folding `value` into `h`, elementwise (uint64, wrapping)."""
    with np.errstate(over="ignore"):
        z = h + value.astype(np.uint64) + _K1
        z = (z ^ (z >> np.uint64(30))) * _K2
        z = (z ^ (z >> np.uint64(27))) * _K3
    return z ^ (z >> np.uint64(31))


def hash_words(words: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, k) uint64 words -> n uint64 hashes, folding the k columns in order."""
    h = np.full(len(words), seed, dtype=np.uint64)
    for column in range(words.shape[1]):
        h = fold(h, words[:, column])
    return h


def hex_ids(values: np.ndarray) -> pa.StringArray:
    """uint64 -> Arrow strings of 16 lowercase hex digits, most significant first."""
    n = len(values)
    nibbles = np.empty((n, 16), dtype=np.uint8)
    big_endian = np.ascontiguousarray(values, dtype=">u8").view(np.uint8).reshape(n, 8)
    nibbles[:, 0::2] = _HEX[big_endian >> 4]
    nibbles[:, 1::2] = _HEX[big_endian & 0x0F]
    offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()),
                                       pa.py_buffer(nibbles.tobytes()))
