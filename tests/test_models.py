"""Model checks before the pipeline: signatures read from saved_model.pb, with errors that name the fix."""

from __future__ import annotations

import numpy as np
import pytest

from transforms.config import ParameterError
from transforms.inference.signatures import NAMED_TENSORS, serving_signature


def test_demo_model_signature_takes_serialized_examples(demo_models):
    signature = serving_signature(demo_models["multiply_by_5"], "serving_default")
    assert signature.takes_serialized_examples
    assert signature.method == "tensorflow/serving/predict"
    assert signature.output_aliases == ("y",)
    assert signature.inputs[0].alias == "examples"


def test_missing_corrupt_and_unsuitable_models_are_refused(tmp_path, demo_models, float_input_model):
    with pytest.raises(ParameterError, match="has no readable saved_model.pb"):
        serving_signature(str(tmp_path / "nothing"), "serving_default")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "saved_model.pb").write_bytes(b"\x0a\xff\xff\xff not a protobuf")
    with pytest.raises(ParameterError, match="not a SavedModel protobuf"):
        serving_signature(str(corrupt), "serving_default")
    with pytest.raises(ParameterError, match="no signature 'predict'; signatures found: .*serving_default"):
        serving_signature(demo_models["multiply_by_5"], "predict")
    assert serving_signature(float_input_model, "serving_default").kind == NAMED_TENSORS


def saved_module(path, input_signature, serve) -> str:
    import tensorflow as tf

    module = tf.Module()
    module.serve = tf.function(serve, input_signature=input_signature)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return str(path)


def test_two_string_inputs_are_named_tensors_and_an_output_without_a_batch_dimension_is_refused(tmp_path):
    import tensorflow as tf

    examples = tf.TensorSpec([None], tf.string, name="examples")
    two_inputs = saved_module(
        tmp_path / "two", [examples, tf.TensorSpec([None], tf.string, name="more")], lambda a, b: {"y": a}
    )
    assert serving_signature(two_inputs, "serving_default").kind == NAMED_TENSORS
    scalar = saved_module(tmp_path / "scalar", [examples], lambda a: {"count": tf.size(a), "echo": a})
    with pytest.raises(ParameterError, match="output\\(s\\) count are scalars, without the batch dimension"):
        serving_signature(scalar, "serving_default")


@pytest.mark.parametrize("factor", [5, 10])
def test_demo_models_are_accurate_from_minus_to_plus_a_thousand(factor):
    from tools.demo import train_multiplier

    model = train_multiplier(factor)
    x = np.linspace(-1000, 1000, 4001, dtype="float32").reshape(-1, 1)
    y = model.predict(x, verbose=0)
    assert np.all(np.abs(y - factor * x) <= 0.01 * np.abs(x) + 0.05)
