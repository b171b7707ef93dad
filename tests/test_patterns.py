"""The patterns' own dead letters, triggered by real records and real models: `encode` (a record's features
cannot make a tf.train.Example), `chain` (a model's output cannot feed the next model) and multi_parallel's
second model failing on a record its first model scored."""

from __future__ import annotations

import json

import keras
import pytest
import tensorflow as tf
from expect import assert_close

pytestmark = pytest.mark.slow


def export_model(path: str, outputs, x_dtype=tf.float32) -> str:
    """A SavedModel whose serving signature parses feature x from serialized Examples: y = outputs(x)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples):
        x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], x_dtype)})["x"]
        return {"y": outputs(x)}

    archive = keras.export.ExportArchive()
    archive.add_endpoint("serving_default", serve)
    archive.write_out(path, verbose=False)
    return path


def below_1000_times_10(x):
    """x10 that refuses x >= 1000, as a model with an input check does (a tf.debugging assertion)."""
    with tf.control_dependencies([tf.debugging.assert_less(x, 1000.0, message="x must be below 1000")]):
        return 10 * x


def times_2_to_the_54_unsigned(x):
    """uint64 outputs: x * 2^54, which an int64 Example feature can hold only for x < 512."""
    return tf.cast(x, tf.uint64) * tf.constant(2**54, tf.uint64)


def halved(x):
    """An int64 x, halved."""
    return x // 2


def export_exact_multipliers(folder) -> dict[str, str]:
    """x5 and x10 as one float32 multiplication each, named as the demo's, exported under `folder`.

    The demo's models learn their factor and answer only to within 1%, which would accept a neighbouring record's
    answer; these answer exactly, so a test can compare exactly.
    """
    return {
        f"multiply_by_{factor}": export_model(str(folder / f"multiply_by_{factor}"), lambda x, k=factor: k * x)
        for factor in (5, 10)
    }


def export_strict_models(folder) -> dict[str, str]:
    """x10 that fails on x >= 1000, and two models that cannot chain for x >= 512, exported under `folder`."""
    return {
        "below_1000": export_model(str(folder / "below_1000"), below_1000_times_10),
        "unsigned": export_model(str(folder / "unsigned"), times_2_to_the_54_unsigned),
        "halved": export_model(str(folder / "halved"), halved, tf.int64),
    }


@pytest.fixture(scope="module")
def strict_models(tmp_path_factory) -> dict[str, str]:
    return export_strict_models(tmp_path_factory.mktemp("strict_models"))


def write_jsonl(path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def test_multi_parallel_record_the_second_model_fails_is_one_dead_letter(
    run_main, demo_models, strict_models, tmp_path
):
    records = [{"key": f"k{x}", "x": float(x)} for x in (1, 2, 999, 1000, 5000)]
    models = f"{demo_models['multiply_by_5']},{strict_models['below_1000']}"
    run = run_main(
        "--pattern=multi_parallel", f"--model_uris={models}", f"--input={write_jsonl(tmp_path / 'in.jsonl', records)}"
    )
    assert run.returncode == 0, run.stderr
    rows = run.rows()
    assert sorted(row["key"] for row in rows) == ["k1", "k2", "k999"]
    for row in rows:
        assert [p["model"] for p in row["predictions"]] == ["multiply_by_5", "below_1000"]
        assert_close(row["predictions"][0]["outputs"]["y"][0], 5 * row["input"]["x"])
        assert row["predictions"][1]["outputs"]["y"] == [10 * row["input"]["x"]]
    letters = sorted(run.dead_letters(), key=lambda letter: letter["key"])
    assert [(d["key"], d["stage"], d["model"]) for d in letters] == [
        ("k1000", "inference", "below_1000"),
        ("k5000", "inference", "below_1000"),
    ], "the first model's answer is not written: the record is one dead letter, from the model that failed"
    assert all("x must be below 1000" in d["message"] for d in letters)
    assert "dead letters               2  (inference 2)" in run.stdout
    assert "reconciled               yes" in run.stdout


def test_an_output_that_cannot_feed_the_next_model_is_a_chain_dead_letter(run_main, strict_models, tmp_path):
    records = [{"key": f"k{x}", "x": float(x)} for x in (0, 1, 511, 512, 700)]
    models = f"{strict_models['unsigned']},{strict_models['halved']}"
    run = run_main(
        "--pattern=multi_sequence", f"--model_uris={models}", f"--input={write_jsonl(tmp_path / 'in.jsonl', records)}"
    )
    assert run.returncode == 0, run.stderr
    rows = {row["key"]: row for row in run.rows()}
    assert sorted(rows) == ["k0", "k1", "k511"]
    for row in rows.values():
        chained = row["predictions"][0]["outputs"]["y"][0]
        assert chained == int(row["input"]["x"]) * 2**54
        assert row["predictions"][1]["outputs"]["y"] == [chained // 2]
    letters = sorted(run.dead_letters(), key=lambda letter: letter["key"])
    assert [(d["key"], d["stage"], d["model"]) for d in letters] == [
        ("k512", "chain", "halved"),
        ("k700", "chain", "halved"),
    ]
    assert letters[0]["message"].startswith(
        "output 'y' of model unsigned ([9223372036854775808]) cannot be feature 'x' of a tf.train.Example: "
        "Value out of range"
    )
    assert "dead letters               2  (chain 2)" in run.stdout
    assert "reconciled               yes" in run.stdout


@pytest.mark.parametrize("pattern", ["predict", "keyed", "multi_parallel", "multi_sequence"])
def test_features_that_cannot_make_an_example_are_encode_dead_letters(run_main, models_for, tmp_path, pattern):
    # A JSON \ud800 escape reads as a lone surrogate, which no tf.train.Example bytes feature (UTF-8) can hold.
    source = tmp_path / "names.jsonl"
    source.write_text(
        '{"key": "k1", "x": 1.0, "name": "sensor one"}\n'
        '{"key": "k2", "x": 2.0, "name": "\\ud800"}\n'
        '{"key": "k3", "x": 3.0, "name": ["ok", "\\udfff"]}\n'
    )
    run = run_main(
        f"--pattern={pattern}", f"--model_uris={models_for(pattern)}", f"--input={source}", "--feature_types=name:bytes"
    )
    assert run.returncode == 0, run.stderr
    letters = sorted(run.dead_letters(), key=lambda letter: letter["key"])
    assert [(d["key"], d["stage"], d["error"]) for d in letters] == [
        ("k2", "encode", "UnicodeEncodeError"),
        ("k3", "encode", "UnicodeEncodeError"),
    ]
    assert json.loads(letters[0]["raw"]) == {"key": "k2", "x": 2.0, "name": "\ud800"}, "the raw line, as read"
    # The model whose input could not be built; multi_parallel's one Example is every model's input.
    assert {d["model"] for d in letters} == {None if pattern == "multi_parallel" else "multiply_by_5"}
    if pattern != "predict":
        assert [(row["key"], row["input"]["name"]) for row in run.rows()] == [("k1", "sensor one")]
    assert "rows written               1" in run.stdout and "(encode 2)" in run.stdout
    assert "reconciled               yes" in run.stdout
