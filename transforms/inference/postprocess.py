"""Post-processing: a batch of model outputs turned into each example's outputs as plain lists of values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np


class ModelPrediction(NamedTuple):
    """One model's outputs for one record: output alias -> flat list of values, and the model version that made them.

    `version` is the numbered version directory the outputs came from (transforms/inference/model_versions.py),
    None for a model given as a plain SavedModel directory.
    """

    model: str
    outputs: dict[str, list]
    version: str | None = None


def _rows(alias: str, values: np.ndarray, batch_size: int) -> list[list]:
    if values.ndim < 1 or values.shape[0] != batch_size:
        raise ValueError(
            f"output {alias!r} has shape {values.shape}; expected a first (batch) dimension of {batch_size}"
        )
    rows = values.reshape(batch_size, -1)
    if rows.dtype.kind in "SO":
        return [
            [v.decode("utf-8", errors="backslashreplace") if isinstance(v, bytes) else v for v in row] for row in rows
        ]
    return rows.tolist()


def outputs_by_example(outputs: Mapping[str, np.ndarray], batch_size: int) -> list[dict[str, list]]:
    """Per example of the batch: output alias -> that example's values, flattened, as Python numbers or text."""
    rows = {alias: _rows(alias, values, batch_size) for alias, values in sorted(outputs.items())}
    return [{alias: values[i] for alias, values in rows.items()} for i in range(batch_size)]
