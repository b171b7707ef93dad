"""PredictionLogs of every kind tfx-bsl writes, turned into plain output lists."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from transforms.postprocess import prediction_outputs


def test_predict_log_outputs_are_flat_lists_by_alias():
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.response.outputs["y"].CopyFrom(tf.make_tensor_proto(np.array([[2.5]], dtype=np.float32)))
    log.predict_log.response.outputs["ids"].CopyFrom(tf.make_tensor_proto(np.array([[1, 2, 3]], dtype=np.int64)))
    log.predict_log.response.outputs["label"].CopyFrom(tf.make_tensor_proto(np.array([b"cat"])))
    assert prediction_outputs(log) == {"ids": [1, 2, 3], "label": ["cat"], "y": [2.5]}


def test_regress_and_classify_logs():
    regress = prediction_log_pb2.PredictionLog()
    regress.regress_log.response.result.regressions.add(value=0.25)
    assert prediction_outputs(regress) == {"outputs": [0.25]}
    classify = prediction_log_pb2.PredictionLog()
    classification = classify.classify_log.response.result.classifications.add()
    classification.classes.add(label="a", score=0.75)
    classification.classes.add(label="b", score=0.25)
    assert prediction_outputs(classify) == {"classes": ["a", "b"], "scores": [0.75, 0.25]}


def test_unsupported_log_kinds_are_named():
    log = prediction_log_pb2.PredictionLog()
    log.multi_inference_log.SetInParent()
    with pytest.raises(ValueError, match="multi_inference_log"):
        prediction_outputs(log)
