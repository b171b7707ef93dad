"""The model tool: inspect shows what saved_model_cli shows; add-signature makes any Keras model usable."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tools.model import main as model_tool
from transforms.inference.signatures import serving_signature
from transforms.records.examples import encode_example


def test_inspect_prints_signatures_inputs_outputs_and_dtypes(demo_models, capsys):
    assert model_tool(["inspect", demo_models["multiply_by_10"]]) == 0
    out = capsys.readouterr().out
    assert "MetaGraph with tag-set: serve" in out
    assert "signature 'serving_default' (tensorflow/serving/predict): takes serialized tf.train.Examples" in out
    assert "examples: DT_STRING (-1)" in out
    assert "y: DT_FLOAT (-1, 1)" in out


def test_inspect_of_a_missing_model_is_an_error(tmp_path, capsys):
    assert model_tool(["inspect", str(tmp_path / "missing")]) == 2
    assert "no readable saved_model.pb" in capsys.readouterr().err


def test_add_signature_wraps_a_two_input_keras_model(tmp_path, capsys):
    a, b = keras.Input((1,), name="a"), keras.Input((2,), name="b")
    total = keras.layers.Concatenate()([a, b])
    model = keras.Model({"a": a, "b": b}, keras.layers.Dense(1, kernel_initializer="ones", use_bias=False)(total))
    model.save(tmp_path / "sum.keras")
    export_dir = str(tmp_path / "exported")
    assert (
        model_tool(
            ["add-signature", str(tmp_path / "sum.keras"), export_dir, "--feature", "a", "--feature", "b:float:2"]
        )
        == 0
    )
    assert serving_signature(export_dir, "serving_default").takes_serialized_examples
    session = tf.compat.v1.Session(graph=tf.compat.v1.Graph())
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
    signature = meta_graph.signature_def["serving_default"]
    result = session.run(
        signature.outputs["y"].name,
        feed_dict={signature.inputs["examples"].name: [encode_example({"a": 1.0, "b": [2.0, 3.0]})]},
    )
    np.testing.assert_allclose(result, [[6.0]])


def test_add_signature_rejects_a_bad_feature_spec(tmp_path, capsys):
    assert model_tool(["add-signature", "unused.keras", str(tmp_path / "x"), "--feature", "a:double"]) == 2
    assert "has type 'double'" in capsys.readouterr().err


def test_inspect_shows_the_kind_and_the_inputs_the_template_builds(float_input_model, capsys):
    assert model_tool(["inspect", float_input_model, "--input_features=x:celsius"]) == 0
    out = capsys.readouterr().out
    assert "signature 'serving_default' (tensorflow/serving/predict): takes named tensors" in out
    assert "the template builds, per record:\n      x <- feature 'celsius': 1 value(s), DT_FLOAT of shape (1)" in out
