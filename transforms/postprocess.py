"""Post-processing: a PredictionLog turned into the model's outputs as plain lists of values."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from tensorflow.python.framework.tensor_util import MakeNdarray
from tensorflow_serving.apis import prediction_log_pb2


class ModelPrediction(NamedTuple):
    """One model's outputs for one record: output alias -> flat list of values."""

    model: str
    outputs: dict[str, list]


def _plain(values: np.ndarray) -> list:
    if values.dtype.kind in "SO":
        return [v.decode("utf-8", errors="backslashreplace") if isinstance(v, bytes) else v for v in values.ravel()]
    return values.ravel().tolist()


def prediction_outputs(log: prediction_log_pb2.PredictionLog) -> dict[str, list]:
    """The outputs of one example's PredictionLog, by output alias (predict, regress and classify logs)."""
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        return {
            alias: _plain(MakeNdarray(tensor)) for alias, tensor in sorted(log.predict_log.response.outputs.items())
        }
    if kind == "regress_log":
        return {"outputs": [r.value for r in log.regress_log.response.result.regressions]}
    if kind == "classify_log":
        classes = [
            c for classification in log.classify_log.response.result.classifications for c in classification.classes
        ]
        return {
            "classes": [c.label for c in classes],
            "scores": [c.score for c in classes],
        }
    raise ValueError(f"PredictionLog of kind {kind!r} is not supported; expected a predict, regress or classify log")
