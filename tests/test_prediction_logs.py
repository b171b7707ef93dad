"""The PredictionLogs the predict pattern writes are exactly tfx-bsl's, for every kind of model output."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tfx_bsl.public.beam.run_inference import CreateModelHandler

from transforms.config import Batching
from transforms.inference.predict import inference_spec
from transforms.inference.prediction_logs import serialized_prediction_logs

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_]


@pytest.fixture(scope="module")
def handler(demo_models):
    return CreateModelHandler(inference_spec(demo_models["multiply_by_5"], "serving_default", Batching()))


def assert_same_logs(handler, serialized: list[bytes], outputs: dict[str, np.ndarray]) -> None:
    expected = handler._post_process(None, serialized, outputs)
    alias, signature = handler._io_tensor_spec.input_tensor_alias, handler._signatures[0].name
    logs = serialized_prediction_logs(serialized, outputs, alias, signature)
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
        "cube": np.arange(24, dtype=np.float64).reshape(3, 2, 2, 2),
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
