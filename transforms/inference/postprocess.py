"""Post-processing: a batch of model outputs turned into each record's outputs as plain lists of values."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def check_batch_dimension(outputs: Mapping[str, np.ndarray], batch_size: int) -> None:
    """Every output has a row per example of the batch; raises ValueError naming the first that does not."""
    for alias, values in sorted(outputs.items()):
        if values.ndim < 1 or values.shape[0] != batch_size:
            raise ValueError(
                f"output {alias!r} has shape {values.shape}; expected a first (batch) dimension of {batch_size}"
            )


def _per_record(values: np.ndarray, batch_size: int) -> list[list]:
    rows = values.reshape(batch_size, -1)
    if rows.dtype.kind in "SO":
        return [
            [v.decode("utf-8", errors="backslashreplace") if isinstance(v, bytes) else v for v in row] for row in rows
        ]
    return rows.tolist()


def output_values(outputs: Mapping[str, np.ndarray], batch_size: int) -> dict[str, list[list]]:
    """Per output alias (sorted), each record's values flattened to Python numbers or text: one `tolist` per output."""
    check_batch_dimension(outputs, batch_size)
    return {alias: _per_record(values, batch_size) for alias, values in sorted(outputs.items())}


def row_values(outputs: Mapping[str, np.ndarray], batch_size: int) -> dict[str, list]:
    """Per output alias (sorted), each record's values flattened, as a row writes them.

    A numeric output stays NumPy, a row view per record, for orjson to write in its own dtype: a float32 output
    as the shortest text that reads back as the same float32 (0.1, not the 0.10000000149011612 of the float64
    that `tolist` makes of it), in fewer bytes and, for wide outputs, less time. Text outputs are decoded as
    `output_values` decodes them.
    """
    check_batch_dimension(outputs, batch_size)
    rows = {}
    for alias, values in sorted(outputs.items()):
        if values.dtype == np.float16:  # orjson writes it as a float32 (0.099975586); NumPy's str is its shortest
            rows[alias] = [[float(str(v)) for v in row] for row in values.reshape(batch_size, -1)]
        elif values.dtype.kind in "fiub":
            # orjson writes only C-contiguous arrays in native byte order; other arrays are copied once per batch.
            rows[alias] = list(np.ascontiguousarray(values.reshape(batch_size, -1), values.dtype.newbyteorder("=")))
        else:
            rows[alias] = _per_record(values, batch_size)
    return rows


def outputs_by_example(outputs: Mapping[str, np.ndarray], batch_size: int) -> list[dict[str, list]]:
    """Per example of the batch: output alias -> that example's values, flattened, as Python numbers or text."""
    values = output_values(outputs, batch_size)
    return [{alias: rows[i] for alias, rows in values.items()} for i in range(batch_size)]
