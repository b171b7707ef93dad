"""The output row contract shared by files, BigQuery and Pub/Sub: key, input features, predictions."""

from __future__ import annotations

import base64
import datetime
from decimal import Decimal
from typing import Any

import orjson

from transforms.config import RowInput
from transforms.inference.batches import Batch
from transforms.inference.postprocess import row_values
from transforms.records.parsing import Record


def prediction_row(
    record: Record, predictions: list[dict[str, Any]], row_input: RowInput = RowInput()
) -> dict[str, Any]:
    """`{"key": ..., "input": {...}, "predictions": [{"model": name, "version": v, "outputs": {alias: [values]}}]}`.

    `predictions` are the record's, as `batch_predictions` gives them; `input` holds the features `row_input`
    chooses (`{}` for none: the row keeps one shape, and the table's REQUIRED JSON column a value).
    """
    return {"key": record.key, "input": row_input.of(record.features), "predictions": predictions}


def batch_predictions(batch: Batch) -> list[list[dict[str, Any]]]:
    """Each record's predictions, a model each in model order: `{"model", "version", "outputs": {alias: [values]}}`.

    `version` is the model version that made the outputs, null for a model given as a plain SavedModel directory.
    Each output is split into its records once for the whole batch; numbers stay NumPy rows in their dtype
    (`row_values`), for `row_json` to write.
    """
    size = len(batch)
    models = [(outputs.model, outputs.version, row_values(outputs.arrays, size)) for outputs in batch.outputs]
    return [
        [
            {"model": model, "version": version, "outputs": {alias: rows[i] for alias, rows in values.items()}}
            for model, version, values in models
        ]
        for i in range(size)
    ]


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (datetime.date, datetime.time)):  # BigQuery DATE, DATETIME, TIME and TIMESTAMP columns
        return value.isoformat()
    if isinstance(value, Decimal):  # BigQuery NUMERIC and BIGNUMERIC columns
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def row_json(row: dict[str, Any]) -> bytes:
    """The row as one line of UTF-8 JSON; bytes are base64, dates and times ISO 8601, decimals strings.

    orjson (already in the stack, through Beam) encodes a row of 256 floats 14 times faster than the json
    module, which was most of a compute-heavy model's pipeline time. NumPy values are written in their own
    dtype: a float32 as the shortest text that reads back as that float32. A NaN or infinite model output,
    which JSON cannot hold, is written as null.
    """
    return orjson.dumps(row, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
