"""Arrow columns as numpy arrays, for the matching and consolidation arithmetic.

The surprising thing: a table read back from Parquet or concatenated from batches holds
chunked columns, so every column is combined into one array before numpy sees it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa


def column_values(values: pa.Array[Any] | pa.ChunkedArray[Any]) -> npt.NDArray[Any]:
    """One Arrow column (chunked or not) -> numpy array (a copy only where Arrow needs one)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return np.asarray(values.to_numpy(zero_copy_only=False))
