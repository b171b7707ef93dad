"""The three kinds of signature through every pattern: named tensors (our handler), classify and regress (tfx-bsl's).

The named-tensor model takes four inputs of mixed dtypes and shapes; the classify and regress signatures are
written as Estimator-era models are, with a TF1 graph and SavedModelBuilder. Each test runs main.py as a user
does and checks the numbers, the dead letters (with their keys) and that the counts reconcile.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from test_end_to_end import read_prediction_logs
from test_patterns import export_exact_multipliers

from transforms.config import ParameterError
from transforms.inference.named_tensors import NamedInput, RecordTensors
from transforms.inference.signatures import (
    CLASSIFY,
    EXAMPLES,
    NAMED_TENSORS,
    REGRESS,
    TensorInfo,
    serving_signature,
)

pytestmark = pytest.mark.slow


class Scorer(tf.Module):
    """score = age + 10 * visits + sum(history) + 1000 if color is "red": every input shows in the answer."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 1], tf.float32, name="age"),
            tf.TensorSpec([None], tf.int64, name="visits"),
            tf.TensorSpec([None, 3], tf.float64, name="history"),
            tf.TensorSpec([None, 1], tf.string, name="color"),
        ]
    )
    def serve(self, age, visits, history, color):
        red = tf.cast(tf.equal(color[:, 0], "red"), tf.float32)
        score = age[:, 0] + 10.0 * tf.cast(visits, tf.float32) + tf.cast(tf.reduce_sum(history, 1), tf.float32)
        return {"score": tf.expand_dims(score + 1000.0 * red, 1)}


def expected_score(record: dict) -> float:
    """The scorer's answer for a record as written, exact in float32 for the records here (sums of halves)."""
    return record["age"] + 10 * record["visits"] + sum(record["history"]) + (1000 if record["color"] == "red" else 0)


# TensorFlow's float32 sigmoid and NumPy's float64 one agree to a few units in float32's last place, not to the bit.
FLOAT32_ROUNDING = 1e-6


def sigmoid(x: float) -> float:
    return 1 / (1 + np.exp(-x))


def classify_and_regress_model(path: str) -> str:
    """An Estimator-style SavedModel on feature x: `classify` (neg/pos by sigmoid(x)) and `regress` (3x)."""
    with tf.Graph().as_default():
        examples = tf.compat.v1.placeholder(tf.string, [None], name="examples")
        x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        positive = tf.sigmoid(x)
        scores = tf.concat([1 - positive, positive], 1)
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(x)[0], 1])
        builder = tf.compat.v1.saved_model.Builder(path)
        with tf.compat.v1.Session() as session:
            builder.add_meta_graph_and_variables(
                session,
                ["serve"],
                signature_def_map={
                    "classify": tf.compat.v1.saved_model.classification_signature_def(examples, classes, scores),
                    "regress": tf.compat.v1.saved_model.regression_signature_def(examples, 3 * x),
                },
            )
        builder.save()
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("signature_kinds")
    scorer = Scorer()
    tf.saved_model.save(scorer, str(folder / "scorer"), signatures={"serving_default": scorer.serve})
    return {
        "scorer": str(folder / "scorer"),
        "estimator": classify_and_regress_model(str(folder / "estimator")),
        "x5": export_exact_multipliers(folder)["multiply_by_5"],
    }


GOOD = [
    {"key": "k1", "age": 30.0, "visits": 3, "history": [1.0, 2.0, 3.0], "color": "red"},
    {"key": "k2", "age": 40.5, "visits": 0, "history": [0.5, 0.0, 1.0], "color": "blue"},
]
BAD = [
    ({"key": "k3", "age": 1.0, "visits": 3.7, "history": [0.0, 0.0, 0.0], "color": "red"}, "takes whole numbers"),
    ({"key": "k4", "age": 1.0, "visits": 1, "history": [0.0, 1.0], "color": "red"}, "takes 3 value(s)"),
    ({"key": "k5", "age": [1.0, 2.0], "visits": 1, "history": [0.0, 1.0, 2.0], "color": "red"}, "takes 1 value(s)"),
    ({"key": "k6", "visits": 1, "history": [0.0, 1.0, 2.0], "color": "red"}, "no feature 'age'"),
]


def write_jsonl(path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def check_dead_letters(run, stage: str = "encode") -> None:
    letters = sorted(run.dead_letters(), key=lambda letter: letter["key"])
    assert [(d["key"], d["stage"]) for d in letters] == [(r["key"], stage) for r, _ in BAD]
    for letter, (_, message) in zip(letters, BAD, strict=True):
        assert message in letter["message"]
    assert f"dead letters               {len(BAD)}  ({stage} {len(BAD)})" in run.stdout
    assert "reconciled               yes" in run.stdout


def test_signature_kinds(models):
    assert serving_signature(models["x5"], "serving_default").kind == EXAMPLES
    assert serving_signature(models["scorer"], "serving_default").kind == NAMED_TENSORS
    assert serving_signature(models["estimator"], "classify").kind == CLASSIFY
    assert serving_signature(models["estimator"], "regress").kind == REGRESS
    as_text = serving_signature(models["x5"], "serving_default", {"examples": "review"})
    assert as_text.kind == NAMED_TENSORS, "a single DT_STRING input named in --input_features is fed text"


def test_named_inputs_the_template_cannot_build_are_refused_before_the_run(tmp_path):
    module = tf.Module()
    module.serve = tf.function(
        lambda flags, rows: {"y": tf.cast(flags, tf.float32) + tf.reduce_sum(rows, 1)},
        input_signature=[tf.TensorSpec([None], tf.bool, name="flags"), tf.TensorSpec([None, None], tf.float32)],
    )
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.serve})
    with pytest.raises(ParameterError, match="input 'flags' of signature 'serving_default' is DT_BOOL"):
        serving_signature(str(tmp_path / "m"), "serving_default")


@pytest.mark.parametrize(
    ("dtype", "shape", "value", "expected"),
    [
        ("DT_INT32", (-1,), 3.0, np.array(3, np.int32)),
        ("DT_FLOAT", (-1, 2), [1, 2.5], np.array([1.0, 2.5], np.float32)),
        ("DT_UINT8", (-1, 2, 1), [0, 255], np.array([[0], [255]], np.uint8)),
        ("DT_STRING", (-1, 1), "red", np.array([b"red"], object)),
        ("DT_FLOAT", (-1, 2, 3), [[1, 2, 3], [4, 5, 6.5]], np.array([[1, 2, 3], [4, 5, 6.5]], np.float32)),
        ("DT_FLOAT", (-1, 2, 3), [1, 2, 3, 4, 5, 6.5], np.array([[1, 2, 3], [4, 5, 6.5]], np.float32)),
        ("DT_INT64", (-1, 1, 2, 1), [[[7], [8]]], np.array([[[7], [8]]], np.int64)),
        ("DT_STRING", (-1, 2, 1), [["a"], ["b"]], np.array([[b"a"], [b"b"]], object)),
    ],
)
def test_values_become_arrays_of_the_inputs_dtype_and_shape(dtype, shape, value, expected):
    array = NamedInput(TensorInfo("in", dtype, shape, "in:0"), "f").value(value)
    assert array.dtype == expected.dtype and array.shape == expected.shape
    assert array.tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("dtype", "value", "message"),
    [
        ("DT_INT64", 3.7, "takes whole numbers (DT_INT64) but feature 'f' holds 3.7"),
        ("DT_INT32", 2**40, "does not fit input 'in' (DT_INT32, -2147483648 to 2147483647)"),
        ("DT_UINT8", -1, "does not fit input 'in' (DT_UINT8"),
        ("DT_FLOAT", 1e39, "overflows input 'in' (DT_FLOAT)"),
        ("DT_FLOAT", 2**24 + 1, "cannot hold exactly"),
        ("DT_FLOAT", "3.5", "takes numbers (DT_FLOAT) but feature 'f' holds 3.5"),
        ("DT_STRING", 3.0, "takes strings (DT_STRING)"),
        ("DT_INT64", [1, 2], "takes 1 value(s) (shape []) but feature 'f' has 2"),
    ],
)
def test_values_the_input_cannot_hold_exactly_are_refused(dtype, value, message):
    with pytest.raises(ValueError) as error:
        NamedInput(TensorInfo("in", dtype, (-1,), "in:0"), "f").value(value)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([[1, 2], [3, 4], [5, 6]], "input 'grid' takes shape [2, 3] but feature 'f' is a nested list of shape [3, 2]"),
        ([[1, 2, 3], [4, 5]], "input 'grid' takes shape [2, 3] but feature 'f' is a ragged nested list"),
        ([[1, 2, 3], [4, 5, [6]]], "input 'grid' takes shape [2, 3] but feature 'f' is a ragged nested list"),
        (
            [[[1, 2, 3], [4, 5, 6]]],
            "input 'grid' takes shape [2, 3] but feature 'f' is a nested list of shape [1, 2, 3]",
        ),
        ([1, 2, 3, 4, 5], "input 'grid' takes 6 value(s) (shape [2, 3]) but feature 'f' has 5"),
        (
            [[1, 2, 3], [4, 5, 6.5]],
            "takes whole numbers (DT_INT64) but feature 'f' holds [1.0, 2.0, 3.0, 4.0, 5.0, 6.5]",
        ),
    ],
)
def test_a_value_not_of_the_inputs_shape_is_refused_naming_both_shapes(value, message):
    with pytest.raises(ValueError) as error:
        NamedInput(TensorInfo("grid", "DT_INT64", (-1, 2, 3), "grid:0"), "f").value(value)
    assert str(error.value).endswith(message)


def test_a_batch_of_nested_and_flat_values_is_built_at_once_or_record_by_record():
    grid = NamedInput(TensorInfo("grid", "DT_FLOAT", (-1, 2, 3), "grid:0"), "f")
    nested, flat = [[1, 2, 3], [4, 5, 6]], [6, 5, 4, 3, 2, 1]
    assert grid.batch_values([nested, nested]).tolist() == [nested, nested]
    assert grid.batch_values([flat, flat]).tolist() == [[[6, 5, 4], [3, 2, 1]]] * 2
    for mixed in ([nested, flat], [nested, [[1, 2], [3, 4], [5, 6]]], [[[1, 2], [3, 4], [5, 6]]] * 2):
        with pytest.raises(ValueError):
            grid.batch_values(mixed)


@pytest.fixture(scope="module")
def grid_model(tmp_path_factory) -> str:
    """A Keras 3 export taking a (2, 3) input `grid`: y = sum of grid's values weighted 1 to 6, row-major."""
    import keras

    grid = keras.Input(shape=(2, 3), name="grid")
    y = keras.layers.Dense(1, use_bias=False, name="y")(keras.layers.Flatten()(grid))
    model = keras.Model(grid, y)
    model.get_layer("y").set_weights([np.arange(1, 7, dtype=np.float32).reshape(6, 1)])
    path = str(tmp_path_factory.mktemp("grid") / "grid")
    model.export(path, verbose=False)
    return path


def test_a_keras_export_of_a_2_by_3_input_takes_nested_json_and_flat_examples(run_main, grid_model, tmp_path):
    from transforms.records.examples import encode_example

    lines = [
        {"key": "a", "grid": [[1, 2, 3], [4, 5, 6]]},
        {"key": "b", "grid": [[0, 0, 0], [0, 0, 1]]},
        {"key": "flat", "grid": [1, 0, 0, 0, 0, 2]},
        {"key": "turned", "grid": [[1, 2], [3, 4], [5, 6]]},
        {"key": "ragged", "grid": [[1, 2, 3], [4, 5]]},
        {"key": "text", "grid": [[1, 2, 3], [4, 5, "x"]]},
    ]
    source = write_jsonl(tmp_path / "grids.jsonl", lines)
    run = run_main("--pattern=postprocess", f"--model_uris={grid_model}", f"--input={source}", "--progress=off")
    assert run.returncode == 0, run.stderr
    rows = {row["key"]: row for row in run.rows()}
    assert {key: row["predictions"][0]["outputs"]["output_0"] for key, row in rows.items()} == {
        "a": [91.0],
        "b": [6.0],
        "flat": [13.0],
    }
    assert rows["a"]["input"] == {"grid": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}, "the row echoes the nested list"
    letters = {letter["key"]: (letter["stage"], letter["message"]) for letter in run.dead_letters()}
    assert letters == {
        "turned": ("encode", "input 'grid' takes shape [2, 3] but feature 'grid' is a nested list of shape [3, 2]"),
        "ragged": ("encode", "input 'grid' takes shape [2, 3] but feature 'grid' is a ragged nested list"),
        "text": ("parse", "feature 'grid' should be a number (float feature), got \"x\""),
    }
    examples = tmp_path / "grids.tfrecord"
    with tf.io.TFRecordWriter(str(examples)) as writer:
        writer.write(encode_example({"key": "a", "grid": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]}))
        writer.write(encode_example({"key": "nested", "grid": [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]}))
        writer.write(encode_example({"key": "short", "grid": [1.0, 2.0, 3.0, 4.0, 5.0]}))
    run = run_main("--pattern=keyed", f"--model_uris={grid_model}", f"--input={examples}", "--progress=off")
    assert run.returncode == 0, run.stderr
    rows = {row["key"]: row["predictions"][0]["outputs"]["output_0"] for row in run.rows()}
    assert rows == {"a": [91.0], "nested": [5.0]}, "an Example holds a nested list flat, row-major"
    (letter,) = run.dead_letters()
    assert (letter["key"], letter["stage"]) == ("short", "encode")
    assert letter["message"].endswith("input 'grid' takes 6 value(s) (shape [2, 3]) but feature 'grid' has 5")


def test_a_batch_is_built_at_once_as_each_record_alone_would_be(models):
    tensors = RecordTensors(serving_signature(models["scorer"], "serving_default"), {})
    features = [{name: value for name, value in record.items() if name != "key"} for record in GOOD]
    whole = tensors.batch(features)
    for built, alone in zip(whole, [tensors(f) for f in features], strict=True):
        assert built.keys() == alone.keys()
        for alias, value in alone.items():
            assert built[alias].dtype == value.dtype and built[alias].tolist() == value.tolist()
    for record, _ in BAD:
        with pytest.raises(ValueError):
            tensors.batch([*features, {name: value for name, value in record.items() if name != "key"}])


def run_scored(run_main, pattern: str, model_uris: str, source, *extra: str, **options):
    """main.py on the scorer's records, whose `color` feature is text (a bytes feature)."""
    return run_main(
        f"--pattern={pattern}",
        f"--model_uris={model_uris}",
        f"--input={source}",
        "--feature_types=color:bytes",
        *extra,
        **options,
    )


@pytest.mark.parametrize("pattern", ["postprocess", "keyed"])
def test_named_tensor_model_on_csv_with_mixed_dtypes(run_main, models, tmp_path, pattern):
    source = tmp_path / "in.csv"
    source.write_text("key,years,visits,color\nk1,30,3,red\nk2,40.5,0,blue\nk3,2,1.5,red\n")
    scalar_history = tmp_path / "scalar_history"
    module = Scorer()
    single = tf.function(
        lambda age, visits, color: module.serve(age, visits, tf.zeros([tf.shape(age)[0], 3], tf.float64), color),
        input_signature=[
            tf.TensorSpec([None, 1], tf.float32, name="age"),
            tf.TensorSpec([None], tf.int64, name="visits"),
            tf.TensorSpec([None, 1], tf.string, name="color"),
        ],
    )
    tf.saved_model.save(module, str(scalar_history), signatures={"serving_default": single})
    run = run_scored(run_main, pattern, scalar_history, source, "--input_features=age:years")
    assert run.returncode == 0, run.stderr
    rows = {row["key"]: row for row in run.rows()}
    assert sorted(rows) == ["k1", "k2"]
    assert rows["k1"]["predictions"][0]["outputs"]["score"] == [30 + 10 * 3 + 1000]
    assert rows["k2"]["predictions"][0]["outputs"]["score"] == [40.5]
    (letter,) = run.dead_letters()
    assert (letter["key"], letter["stage"]) == ("k3", "encode")
    assert "input 'visits' takes whole numbers (DT_INT64) but feature 'visits' holds 1.5" in letter["message"]
    assert "reconciled               yes" in run.stdout


def test_a_named_input_without_a_csv_column_is_refused_before_the_run(run_main, models, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("key,age,visits,color\nk1,30,3,red\n")
    run = run_main("--pattern=postprocess", f"--model_uris={models['scorer']}", f"--input={source}")
    assert run.returncode != 0
    assert "input 'history' of model" in run.stderr and "has no feature of that name in the CSV header" in run.stderr
    run = run_main(
        "--pattern=postprocess", f"--model_uris={models['scorer']}", f"--input={source}", "--input_features=agee:age"
    )
    assert "--input_features maps input(s) agee, which no model takes as a named tensor" in run.stderr


def test_named_tensor_model_postprocess_and_multi_parallel(run_main, models, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD + [record for record, _ in BAD])
    run = run_scored(run_main, "postprocess", models["scorer"], source)
    assert run.returncode == 0, run.stderr
    rows = {row["key"]: row for row in run.rows()}
    assert sorted(rows) == [record["key"] for record in GOOD]
    for record in GOOD:
        assert rows[record["key"]]["predictions"][0]["outputs"]["score"] == [expected_score(record)]
    check_dead_letters(run)

    # multi_parallel: a serialized-Example model and the named-tensor one on each record (x5 reads feature x).
    records = [{**record, "x": 2.0} for record in GOOD]
    source = write_jsonl(tmp_path / "both.jsonl", records + [r for r, _ in BAD])
    both = f"{models['x5']},{models['scorer']}"
    run = run_scored(run_main, "multi_parallel", both, source, output=str(tmp_path / "parallel" / "result"))
    assert run.returncode == 0, run.stderr
    rows = {row["key"]: row for row in run.rows()}
    assert sorted(rows) == [record["key"] for record in records]
    for record in records:
        x5, scorer = rows[record["key"]]["predictions"]
        assert x5["outputs"]["y"] == [5 * record["x"]]
        assert scorer["outputs"]["score"] == [expected_score(record)]
    letters = run.dead_letters()
    assert {d["key"] for d in letters} == {r["key"] for r, _ in BAD}, "records without x fail x5's Example or inputs"
    assert "reconciled               yes" in run.stdout


def test_multi_sequence_chains_into_a_named_input(run_main, models, tmp_path):
    # x5's output y becomes the scorer's input `age` (--chain_feature=age): score = 5x + 10 visits + ...
    records = [{**record, "x": 2.0} for record in GOOD]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    chain = f"{models['x5']},{models['scorer']}"
    run = run_scored(run_main, "multi_sequence", chain, source, "--chain_feature=age")
    assert run.returncode == 0, run.stderr
    rows = {row["key"]: row for row in run.rows()}
    assert sorted(rows) == [record["key"] for record in records]
    for record in records:
        x5, scorer = rows[record["key"]]["predictions"]
        assert x5["outputs"]["y"] == [5 * record["x"]]
        assert scorer["outputs"]["score"] == [expected_score({**record, "age": 5 * record["x"]})]
    assert "reconciled               yes" in run.stdout


def test_named_tensor_predict_logs_hold_the_inputs_as_tensor_protos(run_main, models, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", GOOD + [record for record, _ in BAD])
    run = run_scored(run_main, "predict", models["scorer"], source)
    assert run.returncode == 0, run.stderr
    logs = read_prediction_logs(run.output)
    assert len(logs) == len(GOOD)
    by_age = {tf.make_ndarray(log.predict_log.request.inputs["age"]).item(): log for log in logs}
    for record in GOOD:
        log = by_age[record["age"]].predict_log
        inputs = {alias: tf.make_ndarray(tensor) for alias, tensor in log.request.inputs.items()}
        assert inputs["age"].shape == (1, 1) and inputs["age"].dtype == np.float32
        assert inputs["visits"].tolist() == [record["visits"]] and inputs["visits"].dtype == np.int64
        assert inputs["history"].tolist() == [record["history"]] and inputs["history"].dtype == np.float64
        assert inputs["color"].tolist() == [[record["color"].encode()]]
        assert tf.make_ndarray(log.response.outputs["score"]).item() == expected_score(record)
        assert log.request.model_spec.signature_name == "serving_default"
    check_dead_letters(run)


def test_classify_and_regress_rows(run_main, models, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"key": "k1", "x": 2.0}, {"key": "k2", "x": -1.0}])
    run = run_main(
        "--pattern=postprocess", f"--model_uris={models['estimator']}", f"--input={source}", "--signature_name=classify"
    )
    assert run.returncode == 0, run.stderr
    rows = {row["key"]: row["predictions"][0]["outputs"] for row in run.rows()}
    assert rows["k1"]["classes"] == ["neg", "pos"]
    assert rows["k1"]["scores"][1] == pytest.approx(sigmoid(2.0), rel=FLOAT32_ROUNDING)
    assert rows["k2"]["scores"][0] == pytest.approx(1 - sigmoid(-1.0), rel=FLOAT32_ROUNDING)
    run = run_main(
        "--pattern=keyed",
        f"--model_uris={models['estimator']}",
        f"--input={source}",
        "--signature_name=regress",
        output=str(tmp_path / "regress" / "result"),
    )
    assert run.returncode == 0, run.stderr
    rows = {row["key"]: row["predictions"][0]["outputs"] for row in run.rows()}
    assert rows == {"k1": {"outputs": [6.0]}, "k2": {"outputs": [-3.0]}}


def test_classify_and_regress_prediction_logs(run_main, models, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"key": "k1", "x": 2.0}])
    for signature in ("classify", "regress"):
        output = str(tmp_path / signature / "logs")
        run = run_main(
            "--pattern=predict",
            f"--model_uris={models['estimator']}",
            f"--input={source}",
            f"--signature_name={signature}",
            output=output,
        )
        assert run.returncode == 0, run.stderr
        (log,) = read_prediction_logs(output)
        assert log.WhichOneof("log_type") == f"{signature}_log"
        if signature == "classify":
            (request,) = log.classify_log.request.input.example_list.examples
            assert request.features.feature["x"].float_list.value == [2.0]
            (result,) = log.classify_log.response.result.classifications
            assert [c.label for c in result.classes] == ["neg", "pos"]
            assert result.classes[1].score == pytest.approx(sigmoid(2.0), rel=FLOAT32_ROUNDING)
        else:
            (result,) = log.regress_log.response.result.regressions
            assert result.value == 6.0


def test_classify_and_regress_in_multi_model_patterns(run_main, models, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"key": "k1", "x": 2.0}])
    two = (f"--model_uris={models['estimator']},{models['estimator']}", "--model_names=first,second")
    run = run_main("--pattern=multi_sequence", *two, f"--input={source}", "--signature_name=regress")
    assert run.returncode == 0, run.stderr
    (row,) = run.rows()
    assert [p["outputs"] for p in row["predictions"]] == [{"outputs": [6.0]}, {"outputs": [18.0]}]
    run = run_main(
        "--pattern=multi_parallel",
        *two,
        f"--input={source}",
        "--signature_name=classify",
        output=str(tmp_path / "parallel" / "result"),
    )
    assert run.returncode == 0, run.stderr
    (row,) = run.rows()
    assert [p["outputs"]["classes"] for p in row["predictions"]] == [["neg", "pos"], ["neg", "pos"]]


def test_the_demo_keras_export_serves_its_csv(run_main, demo_models, demo_data):
    from tools.demo import delivery_minutes

    run = run_main(
        "--pattern=postprocess",
        f"--model_uris={demo_models['delivery_minutes']}",
        f"--input={demo_data}/deliveries.csv",
        "--feature_types=weather:bytes",
        "--input_features=distance_km:km",
    )
    assert run.returncode == 0, run.stderr
    rows = run.rows()
    assert len(rows) == 97
    for row in rows:
        record = row["input"]
        expected = delivery_minutes(record["km"], int(record["items"]), record["weather"])
        assert abs(row["predictions"][0]["outputs"]["minutes"][0] - expected) < 0.5
    letters = sorted((d["key"], d["stage"]) for d in run.dead_letters())
    assert letters == [("order-010", "encode"), ("order-020", "parse"), ("order-030", "parse")]
    assert "reconciled               yes" in run.stdout


def test_a_record_the_named_tensor_model_fails_on_costs_only_itself(run_main, tmp_path):
    """The batch is halved until the record the model refuses stands alone: one `inference` dead letter."""
    module = tf.Module()

    def below_1000(x):
        with tf.control_dependencies([tf.debugging.assert_less(x, 1000.0, message="x must be below 1000")]):
            return {"y": 10 * x}

    module.serve = tf.function(below_1000, input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path / "below_1000"), signatures={"serving_default": module.serve})
    records = [{"key": f"k{x}", "x": float(x)} for x in (1, 2, 999, 1000, 3, 5000, 4)]
    run = run_main(
        "--pattern=postprocess",
        f"--model_uris={tmp_path / 'below_1000'}",
        f"--input={write_jsonl(tmp_path / 'in.jsonl', records)}",
    )
    assert run.returncode == 0, run.stderr
    assert sorted(row["key"] for row in run.rows()) == ["k1", "k2", "k3", "k4", "k999"]
    assert all(row["predictions"][0]["outputs"]["y"] == [10 * row["input"]["x"]] for row in run.rows())
    letters = sorted((d["key"], d["stage"], d["model"]) for d in run.dead_letters())
    assert letters == [("k1000", "inference", "below_1000"), ("k5000", "inference", "below_1000")]
    assert all("x must be below 1000" in d["message"] for d in run.dead_letters())
    assert "reconciled               yes" in run.stdout
