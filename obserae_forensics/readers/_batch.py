"""Build FLOW_SCHEMA record batches from numpy columns, filling what a format lacks.

Every decoder ends here, so defaults (sampling 1, counters 0, empty next hop) are decided
once for all formats.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pyarrow as pa

from ..addresses import address_array
from ..schema import FLOW_ADDRESS_COLUMNS, FLOW_NUMERIC_DTYPES, FLOW_SCHEMA, TIMESTAMP

_DEFAULTS: dict[str, int] = {"sampling_rate": 1}


def flow_batch(
    n: int,
    columns: dict[str, np.ndarray],
    *,
    exporter: str | tuple[np.ndarray, list[str]],
    source_file: str,
) -> pa.RecordBatch:
    """Assemble one FLOW_SCHEMA batch of `n` rows.

    `columns` maps FLOW_SCHEMA names to numpy arrays of length n (times as int64 µs,
    addresses as (n, 16) uint8). Missing numeric columns get their default, missing
    addresses are all zero. `exporter` is one text for all rows, or (int32 codes per row,
    texts) so that a batch from many exporters costs no per-row strings.
    """
    unknown = set(columns) - set(FLOW_SCHEMA.names)
    if unknown:
        raise KeyError(f"not FLOW_SCHEMA columns: {sorted(unknown)}")
    arrays: list[pa.Array[Any]] = []
    for field in FLOW_SCHEMA:
        name = field.name
        if name in FLOW_ADDRESS_COLUMNS:
            values = columns.get(name)
            if values is None:
                values = np.zeros((n, 16), dtype=np.uint8)
            arrays.append(address_array(values))
        elif name == "exporter":
            arrays.append(_dictionary_column(exporter, n))
        elif name == "source_file":
            arrays.append(_dictionary_column(source_file, n))
        else:
            dtype = FLOW_NUMERIC_DTYPES[name]
            values = columns.get(name)
            if values is None:
                values = np.full(n, _DEFAULTS.get(name, 0), dtype=dtype)
            else:
                values = np.asarray(values).astype(dtype, copy=False)
            if field.type == TIMESTAMP:
                arrays.append(
                    pa.array(values.astype("int64", copy=False), type=pa.int64()).cast(TIMESTAMP)
                )
            else:
                arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=FLOW_SCHEMA)


def _dictionary_column(
    values: str | tuple[np.ndarray, list[str]], n: int
) -> pa.DictionaryArray[Any, Any]:
    # (pyarrow-stubs type an array of a numpy array of any dtype as a BooleanArray)
    if isinstance(values, str):
        return pa.DictionaryArray.from_arrays(
            cast(pa.Int32Array, pa.array(np.zeros(n, dtype=np.int32))),
            pa.array([values], pa.string()),
        )
    codes, texts = values
    return pa.DictionaryArray.from_arrays(
        cast(pa.Int32Array, pa.array(np.asarray(codes, dtype=np.int32))),
        pa.array(texts, pa.string()),
    )


def empty_flow_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=FLOW_SCHEMA)
