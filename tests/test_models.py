"""Model checks before the pipeline: signatures read from saved_model.pb, with errors that name the fix."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from transforms.config import ParameterError
from transforms.inference.signatures import (
    CLASSIFY,
    CLASSIFY_METHOD,
    EXAMPLES,
    NAMED_TENSORS,
    PREDICT_METHOD,
    REGRESS,
    REGRESS_METHOD,
    Signature,
    TensorInfo,
    checked_signature,
    serving_signature,
)


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


def tensor(alias: str, dtype: str = "DT_FLOAT", shape: tuple[int, ...] | None = (-1, 1)) -> TensorInfo:
    return TensorInfo(alias, dtype, shape, f"serving_{alias}:0")


def signature(*inputs: TensorInfo, method: str = PREDICT_METHOD, outputs=(tensor("y"),)) -> Signature:
    return Signature("serving_default", method, inputs, outputs)


def test_a_signatures_kind_is_settled_by_its_method_and_inputs_and_input_features():
    examples = signature(tensor("examples", "DT_STRING", (-1,)))
    assert checked_signature("m", examples).kind == EXAMPLES
    text = checked_signature("m", examples, {"examples": "note"})
    assert text.kind == NAMED_TENSORS and text.feeds_by_name, "a single string input named in --input_features"
    assert checked_signature("m", replace(examples, method=CLASSIFY_METHOD)).kind == CLASSIFY
    assert checked_signature("m", replace(examples, method=REGRESS_METHOD)).kind == REGRESS
    assert not checked_signature("m", signature(tensor("a"), tensor("b")), {"a": "x"}).feeds_by_name


NAMED_DTYPES = "DT_FLOAT, DT_DOUBLE, DT_HALF, DT_INT8, DT_INT16, DT_INT32, DT_INT64, DT_UINT8, DT_UINT16, DT_UINT32, "
WHERE = "model m: input 'x' of signature 'serving_default'"


@pytest.mark.parametrize(
    ("refused", "message"),
    [
        (
            signature(tensor("x"), method="tensorflow/serving/other"),
            "model m: signature 'serving_default' has method 'tensorflow/serving/other'; the template serves "
            "tensorflow/serving/predict, tensorflow/serving/classify and tensorflow/serving/regress",
        ),
        (signature(), "model m: signature 'serving_default' has no inputs"),
        (
            signature(tensor("a"), tensor("b", "DT_STRING"), method=CLASSIFY_METHOD),
            "model m: classify signature 'serving_default' takes a (DT_FLOAT), b (DT_STRING); a classify signature "
            "takes one DT_STRING input of serialized tf.train.Examples",
        ),
        (
            signature(tensor("x", "DT_BOOL")),
            f"{WHERE} is DT_BOOL; named inputs the template can build are {NAMED_DTYPES}DT_UINT64, DT_STRING",
        ),
        (
            signature(tensor("x", shape=None)),
            f"{WHERE} has shape of unknown rank; expected a first (batch) dimension of any size",
        ),
        (signature(tensor("x", shape=())), f"{WHERE} has shape []; expected a first (batch) dimension of any size"),
        (
            signature(tensor("x", shape=(3, 1))),
            f"{WHERE} has shape [3, 1]; expected a first (batch) dimension of any size",
        ),
        (
            signature(tensor("x", shape=(-1, -1))),
            f"{WHERE} has shape [None, None]; every dimension but the batch one must be fixed, as each record's value "
            "is checked against it and the batch stacked into one array",
        ),
        (signature(tensor("x"), outputs=()), "model m: signature 'serving_default' has no outputs"),
        (
            signature(tensor("x"), outputs=(tensor("count", shape=()), tensor("y"), tensor("n", shape=()))),
            "model m: signature 'serving_default' output(s) count, n are scalars, without the batch dimension "
            "RunInference needs to give each example its own value",
        ),
    ],
)
def test_a_signature_the_template_cannot_serve_is_refused_saying_why(refused, message):
    with pytest.raises(ParameterError) as error:
        checked_signature("m", refused)
    assert str(error.value) == message


def write_saved_model(path, tags: list[str], signature_defs: dict) -> str:
    """A saved_model.pb holding one MetaGraph of these tags and signatures, and nothing a model could run."""
    meta_graph = meta_graph_pb2.MetaGraphDef(meta_info_def=meta_graph_pb2.MetaGraphDef.MetaInfoDef(tags=tags))
    for name, signature_def in signature_defs.items():
        meta_graph.signature_def[name].CopyFrom(signature_def)
    path.mkdir()
    (path / "saved_model.pb").write_bytes(saved_model_pb2.SavedModel(meta_graphs=[meta_graph]).SerializeToString())
    return str(path)


def test_signatures_are_read_from_the_serving_metagraph_with_their_tensors(tmp_path):
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in (-1, 3)]
    predict = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    predict.inputs["text"].CopyFrom(
        meta_graph_pb2.TensorInfo(
            name="text_in:0", dtype=types_pb2.DT_STRING, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims[:1])
        )
    )
    predict.outputs["scores"].CopyFrom(
        meta_graph_pb2.TensorInfo(
            name="scores_out:0", dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims)
        )
    )
    predict.outputs["any"].CopyFrom(meta_graph_pb2.TensorInfo(name="any_out:0", dtype=types_pb2.DT_INT64))
    predict.outputs["any"].tensor_shape.unknown_rank = True
    uri = write_saved_model(tmp_path / "two", ["serve"], {"b": predict, "a": predict})
    with pytest.raises(ParameterError) as error:
        serving_signature(uri, "c")
    assert str(error.value) == f"model {uri} has no signature 'c'; signatures found: a, b"
    read = serving_signature(uri, "b", {"text": "note"})
    assert read == Signature(
        "b",
        PREDICT_METHOD,
        (TensorInfo("text", "DT_STRING", (-1,), "text_in:0"),),
        (TensorInfo("any", "DT_INT64", None, "any_out:0"), TensorInfo("scores", "DT_FLOAT", (-1, 3), "scores_out:0")),
        feeds_by_name=True,
    )
    empty = write_saved_model(tmp_path / "none", ["serve", "gpu"], {})
    with pytest.raises(ParameterError) as error:
        serving_signature(empty, "serving_default")
    assert str(error.value) == f"model {empty} has no signature 'serving_default'; signatures found: none"
    training = write_saved_model(tmp_path / "train", ["train"], {"serving_default": predict})
    with pytest.raises(ParameterError) as error:
        serving_signature(training, "serving_default")
    assert str(error.value) == f"model {training} has no MetaGraph tagged 'serve'; tag sets found: [('train',)]"


def test_a_missing_saved_model_is_named_with_the_error_that_hid_it(tmp_path):
    with pytest.raises(ParameterError) as error:
        serving_signature(str(tmp_path / "nothing"), "serving_default")
    assert str(error.value) == (
        f"model {tmp_path / 'nothing'} has no readable saved_model.pb (FileNotFoundError: [Errno 2] No such file or "
        f"directory: '{tmp_path / 'nothing' / 'saved_model.pb'}'); expected a SavedModel directory"
    )
