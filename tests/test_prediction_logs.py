"""The PredictionLogs the predict pattern writes are exactly tfx-bsl's, for every kind of model output."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tensorflow_serving.apis import classification_pb2, model_pb2, predict_pb2, prediction_log_pb2, regression_pb2
from tfx_bsl.public.beam.run_inference import CreateModelHandler

from transforms.config import Batching
from transforms.inference.predict import inference_spec
from transforms.inference.prediction_logs import (
    serialized_prediction_logs,
    serialized_tensor_prediction_logs,
    with_model_name,
    with_version,
)

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_]


@pytest.fixture(scope="module")
def handler(demo_models):
    return CreateModelHandler(inference_spec(demo_models["multiply_by_5"], "serving_default", Batching()))


def assert_same_logs(handler, serialized: list[bytes], outputs: dict[str, np.ndarray], version: str | None = None):
    expected = handler._post_process(None, serialized, outputs)
    if version is not None:  # tfx-bsl leaves the version out; TF Serving names the one that answered
        for log in expected:
            log.predict_log.response.model_spec.version.value = int(version)
    alias, signature = handler._io_tensor_spec.input_tensor_alias, handler._signatures[0].name
    logs = serialized_prediction_logs(serialized, outputs, alias, signature, version)
    # Compared as bytes (NaN outputs make equal messages compare unequal), canonical: map entries sorted by key.
    assert logs == [log.SerializeToString(deterministic=True) for log in expected]


def test_the_shapes_and_dtypes_models_give(handler):
    serialized = [f"example-{i}".encode() for i in range(3)]
    outputs = {
        "y": np.array([1.5, 2.5, -3.0], dtype=np.float32),
        "column": np.arange(3, dtype=np.float32).reshape(3, 1),
        "scores": np.arange(12, dtype=np.float32).reshape(3, 4),
        "ids": np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int64),
        "classes": np.array([[b"cat", b"dog"], [b"a", b""], [b"\xff", b"z"]], dtype=object),
        "empty": np.zeros((3, 0), dtype=np.float32),
        "no_doubles": np.zeros((3, 0), dtype=np.float64),
        "cube": np.arange(24, dtype=np.float64).reshape(3, 2, 2, 2),
        "distance": np.array([0.1, -2.0, 1e300], dtype=np.float64),
    }
    assert_same_logs(handler, serialized, outputs)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), batch=st.integers(1, 5), dtype=st.sampled_from(DTYPES))
def test_any_numeric_output(handler, data, batch, dtype):
    shape = (batch, *data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)))
    values = data.draw(hnp.arrays(dtype, shape))
    assert_same_logs(handler, [b"x"] * batch, {"out": values})


def test_an_output_without_a_batch_dimension_is_refused(handler):
    with pytest.raises(ValueError, match="batch size 2"):
        serialized_prediction_logs([b"a", b"b"], {"y": np.float32(1.0).reshape(())}, "examples", "serving_default")


def test_the_response_names_the_version_that_answered_and_the_request_does_not(handler):
    outputs = {"y": np.array([5.0, 10.0], dtype=np.float32), "ids": np.array([[1, 2], [3, 4]], dtype=np.int64)}
    assert_same_logs(handler, [b"one", b"two"], outputs, version="1700000000")


# A length's varint takes one byte up to 127, two up to 16,383 (the second is 0x7F from 16,256), three up to 2**21 - 1
# (the third is 1 up to 16,511), then four: examples of these lengths put each boundary in a string_val's length.
@pytest.mark.parametrize("length", [127, 128, 255, 16_256, 16_383, 16_384, 16_511, 2**21])
def test_examples_of_lengths_at_the_varint_boundaries(handler, length):
    serialized = [b"e" * length, b"f" * (length - 1)]
    assert_same_logs(handler, serialized, {"y": np.array([1.0, 2.0], dtype=np.float32)}, version="3")


def tensor_log(inputs: dict, outputs: dict, i: int, signature: str, version: str | None) -> bytes:
    """Example i's PredictionLog as TF Serving logs a named-tensor request: a tensor per input, one per output."""
    response_spec = model_pb2.ModelSpec(signature_name=signature)
    if version is not None:
        response_spec.version.value = int(version)
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(
            request=predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name=signature),
                inputs={alias: tf.make_tensor_proto(values[i : i + 1]) for alias, values in inputs.items()},
            ),
            response=predict_pb2.PredictResponse(
                model_spec=response_spec,
                outputs={alias: tf.make_tensor_proto(values[i : i + 1]) for alias, values in outputs.items()},
            ),
        )
    )
    return log.SerializeToString(deterministic=True)


@pytest.mark.parametrize("version", [None, "42"])
def test_named_tensor_logs_carry_every_input_and_output(version):
    # Insertion order is not the aliases' order: the logs sort them, as deterministic serialization does.
    inputs = {
        "weight": np.array([0.5, -1.25, 3.0], dtype=np.float32),
        "city": np.array([b"Lyon", b"", b"\xff"], dtype=object),
        "coords": np.arange(6, dtype=np.float64).reshape(3, 2),
        "count": np.array([[7], [0], [-2]], dtype=np.int64),
    }
    outputs = {"minutes": np.array([[12.5], [3.0], [-1.0]], dtype=np.float64), "bucket": np.array([2, 0, 1])}
    logs = serialized_tensor_prediction_logs(inputs, outputs, "serving_default", version)
    assert logs == [tensor_log(inputs, outputs, i, "serving_default", version) for i in range(3)]


def classify_and_regress_logs() -> list[prediction_log_pb2.PredictionLog]:
    classify = classification_pb2.ClassificationResponse()
    classify.result.classifications.add().classes.add(label="cat", score=0.75)
    regress = regression_pb2.RegressionResponse()
    regress.result.regressions.add(value=5.0)
    return [
        prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog(response=classify)),
        prediction_log_pb2.PredictionLog(regress_log=prediction_log_pb2.RegressLog(response=regress)),
    ]


def test_classify_and_regress_logs_name_the_version_that_answered():
    expected = classify_and_regress_logs()
    expected[0].classify_log.response.model_spec.version.value = 3
    expected[1].regress_log.response.model_spec.version.value = 3
    assert with_version(classify_and_regress_logs(), "3") == expected


def test_classify_and_regress_logs_of_an_unversioned_model_are_left_as_they_are():
    assert with_version(classify_and_regress_logs(), None) == classify_and_regress_logs()


@pytest.mark.parametrize("log_type", ["predict_log", "classify_log", "regress_log"])
def test_a_routed_model_s_name_is_merged_into_each_log_leaving_the_rest_as_it_was(log_type):
    logs = []
    for version in (3, 4):
        log = prediction_log_pb2.PredictionLog()
        part = getattr(log, log_type)
        part.request.model_spec.signature_name = "serving_default"
        part.response.model_spec.version.value = version
        logs.append(log)
    named = with_model_name([log.SerializeToString() for log in logs], log_type, "tenant-7")
    for log, data in zip(logs, named, strict=True):
        getattr(log, log_type).request.model_spec.name = "tenant-7"
        getattr(log, log_type).response.model_spec.name = "tenant-7"
        assert prediction_log_pb2.PredictionLog.FromString(data) == log
