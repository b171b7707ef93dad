"""main.py run as a user runs it, for every pattern: the numbers, the keys, the joins, the dead letters."""

from __future__ import annotations

import gzip
import json

import pytest
import tensorflow as tf
from expect import assert_close
from tensorflow_serving.apis import prediction_log_pb2

from transforms.records.examples import decode_example, encode_example

pytestmark = pytest.mark.slow


def read_prediction_logs(prefix: str) -> list[prediction_log_pb2.PredictionLog]:
    return [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(tf.io.gfile.glob(f"{prefix}-*.tfrecord"))
    ]


def _y(row: dict, index: int = 0) -> float:
    return row["predictions"][index]["outputs"]["y"][0]


def test_predict_writes_prediction_logs(run_main, demo_models, demo_data, tmp_path):
    run = run_main(
        "--pattern=predict", f"--model_uris={demo_models['multiply_by_5']}", f"--input={demo_data}/numbers.tfrecord"
    )
    assert run.returncode == 0, run.stderr
    logs = read_prediction_logs(run.output)
    assert len(logs) == 100
    for log in logs:
        example = decode_example(log.predict_log.request.inputs["examples"].string_val[0])
        assert "key" not in example, "the key must never reach the model"
        assert_close(log.predict_log.response.outputs["y"].float_val[0], 5 * example["x"])
    assert "records read             100" in run.stdout


@pytest.mark.parametrize("source", ["numbers.csv", "numbers.jsonl", "numbers.tfrecord"])
def test_keyed_keeps_keys_and_multiplies_by_five(run_main, demo_models, demo_data, source):
    run = run_main(
        "--pattern=keyed",
        f"--model_uris={demo_models['multiply_by_5']}",
        f"--input={demo_data}/{source}",
        "--progress=off",  # the progress lines a slow run would show are not logs
    )
    assert run.returncode == 0, run.stderr
    rows = run.rows()
    assert sorted(row["key"] for row in rows) == [f"device-{i:03d}" for i in range(100)]
    for row in rows:
        assert row["input"] == {"x": float(int(row["key"].split("-")[1]))}
        assert row["predictions"][0]["model"] == "multiply_by_5"
        assert_close(_y(row), 5 * row["input"]["x"])
    assert run.dead_letters() == []
    assert run.stderr == "", "a healthy local run logs nothing at the default --log_level"


def test_postprocess_rows_have_null_key_for_unkeyed_input(run_main, demo_models, tmp_path):
    source = tmp_path / "unkeyed.jsonl"
    source.write_text("".join(json.dumps({"x": x}) + "\n" for x in (-1000, -2.5, 0, 7, 999.5)))
    run = run_main("--pattern=postprocess", f"--model_uris={demo_models['multiply_by_5']}", f"--input={source}")
    assert run.returncode == 0, run.stderr
    rows = sorted(run.rows(), key=lambda row: row["input"]["x"])
    assert [row["key"] for row in rows] == [None] * 5
    for row in rows:
        assert_close(_y(row), 5 * row["input"]["x"])


def test_multi_parallel_joins_per_record_even_with_repeated_keys(run_main, demo_models, tmp_path):
    source = tmp_path / "repeated.jsonl"
    records = [{"key": "same-device", "x": float(x)} for x in range(50)] + [{"key": "other", "x": 3.0}]
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    models = f"{demo_models['multiply_by_5']},{demo_models['multiply_by_10']}"
    run = run_main("--pattern=multi_parallel", f"--model_uris={models}", f"--input={source}")
    assert run.returncode == 0, run.stderr
    rows = run.rows()
    assert len(rows) == 51
    assert sorted(row["input"]["x"] for row in rows) == sorted(r["x"] for r in records)
    for row in rows:
        assert [p["model"] for p in row["predictions"]] == ["multiply_by_5", "multiply_by_10"]
        assert_close(_y(row, 0), 5 * row["input"]["x"])
        assert_close(_y(row, 1), 10 * row["input"]["x"])


def test_multi_sequence_chains_x5_then_x10_into_x50(run_main, demo_models, demo_data):
    models = f"{demo_models['multiply_by_5']},{demo_models['multiply_by_10']}"
    run = run_main("--pattern=multi_sequence", f"--model_uris={models}", f"--input={demo_data}/numbers.jsonl")
    assert run.returncode == 0, run.stderr
    rows = run.rows()
    assert len(rows) == 100
    for row in rows:
        assert [p["model"] for p in row["predictions"]] == ["multiply_by_5", "multiply_by_10"]
        assert_close(_y(row, 0), 5 * row["input"]["x"])
        assert_close(_y(row, 1), 50 * row["input"]["x"])


@pytest.mark.parametrize("pattern", ["postprocess", "keyed", "multi_parallel", "multi_sequence", "predict"])
def test_bad_records_become_dead_letters_and_counts_reconcile(run_main, models_for, tmp_path, pattern):
    good = [{"key": f"k{i}", "x": float(i)} for i in range(30)]
    bad_lines = [
        '{"key": "k-bad-json", "x": ',  # malformed JSON
        '{"key": "k-text", "x": "seven"}',  # non-numeric value
        '{"key": "k-null", "x": null}',  # null feature
        '{"key": "k-nan", "x": NaN}',  # not finite
        "[1, 2, 3]",  # JSON but not an object
        '{"key": "k-poison", "z": 1.0}',  # the model needs x: fails at inference, alone
    ]
    lines = [json.dumps(r) for r in good]
    for offset, line in enumerate(bad_lines):
        lines.insert(offset * 5 + 2, line)
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(("\n".join(lines) + "\n").encode() + b'{"key": "k-latin1", "x": "\xe9"}\n')
    models = models_for(pattern)
    run = run_main(f"--pattern={pattern}", f"--model_uris={models}", f"--input={source}")
    assert run.returncode == 0, run.stderr
    letters = run.dead_letters()
    assert len(letters) == len(bad_lines) + 1
    by_stage = {}
    for letter in letters:
        by_stage.setdefault(letter["stage"], []).append(letter)
    assert len(by_stage["parse"]) == 6
    assert [letter["key"] for letter in by_stage["inference"]] == ["k-poison"]
    assert by_stage["inference"][0]["model"] == "multiply_by_5"
    assert "Feature: x" in by_stage["inference"][0]["message"]
    assert {letter["raw_encoding"] for letter in by_stage["parse"]} == {"utf-8", "base64"}
    written = 30
    if pattern != "predict":
        rows = run.rows()
        assert sorted(row["key"] for row in rows) == sorted(r["key"] for r in good)
        written = len(rows)
    assert f"records read              {written + len(letters)}" in run.stdout
    assert "reconciled               yes" in run.stdout


@pytest.mark.parametrize("pattern", ["predict", "postprocess", "keyed", "multi_parallel", "multi_sequence"])
def test_each_pattern_runs_on_two_worker_processes(run_main, models_for, demo_data, pattern):
    """Workers unpickle everything from the installed package: no save_main_session needed."""
    models = models_for(pattern)
    run = run_main(
        f"--pattern={pattern}",
        f"--model_uris={models}",
        f"--input={demo_data}/numbers.csv",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    )
    assert run.returncode == 0, run.stderr
    assert "rows written             100" in run.stdout
    loads = {
        line.split()[0]: int(line.split()[6]) for line in run.stdout.splitlines() if line.startswith("  multiply_")
    }
    expected = {uri.rsplit("/", 1)[-1]: 2 for uri in models.split(",")}
    assert loads == expected, "each of the 2 worker processes loads each model once"
    if pattern == "predict":
        logs = read_prediction_logs(run.output)
        assert len(logs) == 100
        for log in logs:
            x = decode_example(log.predict_log.request.inputs["examples"].string_val[0])["x"]
            assert_close(log.predict_log.response.outputs["y"].float_val[0], 5 * x)
        return
    rows = run.rows()
    assert sorted(row["key"] for row in rows) == [f"device-{i:03d}" for i in range(100)]
    factor = {"multi_parallel": 10, "multi_sequence": 50}.get(pattern, 5)
    for row in rows:
        assert_close(row["predictions"][-1]["outputs"]["y"][0], factor * row["input"]["x"])


def test_batch_sizes_are_honoured(run_main, demo_models, demo_data):
    run = run_main(
        "--pattern=postprocess",
        f"--model_uris={demo_models['multiply_by_5']}",
        f"--input={demo_data}/numbers.jsonl",
        "--min_batch_size=10",
        "--max_batch_size=10",
    )
    assert run.returncode == 0, run.stderr
    model_line = next(line for line in run.stdout.splitlines() if line.strip().startswith("multiply_by_5"))
    inferences, batches, mean_batch = model_line.split()[1:4]
    assert (int(inferences), int(batches), float(mean_batch)) == (100, 10, 10.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pattern=nonsense", "--model_uris=m", "--input=x.csv"], "invalid choice: 'nonsense'"),
        (["--pattern=keyed", "--model_uris=MODEL5,MODEL10", "--input=DATA/numbers.csv"], "runs exactly one model"),
        (["--pattern=multi_parallel", "--model_uris=MODEL5", "--input=DATA/numbers.csv"], "runs two or more models"),
        (
            ["--pattern=keyed", "--model_uris=/nowhere/model", "--input=DATA/numbers.csv"],
            "has no readable saved_model.pb",
        ),
        (
            ["--pattern=keyed", "--model_uris=FLOATMODEL", "--input=DATA/numbers.csv", "--input_features=x:celsius"],
            "input 'x' (mapped to feature 'celsius' by --input_features) of model",
        ),
        (["--pattern=keyed", "--model_uris=MODEL5", "--input=DATA/numbers.parquet"], "no files match"),
        (["--pattern=keyed", "--model_uris=MODEL5", "--input=DATA/numbers.*"], "cannot tell the format"),
        (["--pattern=keyed", "--model_uris=MODEL5", "--input=DATA/nothing-*.csv"], "no files match"),
        (
            ["--pattern=keyed", "--model_uris=s3://bucket/model", "--input=DATA/numbers.csv"],
            "neither a local path, a gs:// URI nor a Vertex AI endpoint",
        ),
        (["--pattern=keyed", "--model_uris=MODEL5", "--input=DATA/numbers.csv", "--max_batch_size=0"], "batch sizes"),
        (
            [
                "--pattern=keyed",
                "--model_uris=MODEL5",
                "--input_query=SELECT 1 AS x; DELETE FROM d.t WHERE true",
                "--temp_dataset=d",
            ],
            "must be one SELECT (or WITH ... SELECT) query and nothing else; it holds 2 statement(s): SELECT, DELETE",
        ),
    ],
)
def test_bad_parameters_fail_before_the_pipeline_runs(
    run_main, demo_models, demo_data, float_input_model, args, message
):
    replacements = {
        "MODEL5": demo_models["multiply_by_5"],
        "MODEL10": demo_models["multiply_by_10"],
        "FLOATMODEL": float_input_model,
        "DATA": str(demo_data),
    }
    for placeholder, value in replacements.items():
        args = [arg.replace(placeholder, value) for arg in args]
    run = run_main(*args)
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert "records read" not in run.stdout


def test_chain_output_must_name_an_output_of_the_models_it_chains(run_main, models_for, demo_data):
    run = run_main(
        "--pattern=multi_sequence",
        f"--model_uris={models_for('multi_sequence')}",
        f"--input={demo_data}/numbers.jsonl",
        "--chain_output=scores",
    )
    assert run.returncode == 2
    assert "--chain_output=scores is not an output of model" in run.stderr and "its outputs are y" in run.stderr


def test_truncated_corrupt_and_empty_files_cost_only_their_unreadable_part(run_main, models_for, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name, count in (("good", 5), ("cut", 5), ("flipped", 5)):
        with tf.io.TFRecordWriter(str(folder / f"{name}.tfrecord")) as writer:
            for i in range(count):
                writer.write(encode_example({"key": f"{name}-{i}", "x": float(i)}))
    cut = (folder / "cut.tfrecord").read_bytes()
    (folder / "cut.tfrecord").write_bytes(cut[:-10])  # the last record loses its end
    flipped = bytearray((folder / "flipped.tfrecord").read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # a bit error in the third record
    (folder / "flipped.tfrecord").write_bytes(bytes(flipped))
    (folder / "empty.tfrecord").write_bytes(b"")
    run = run_main("--pattern=keyed", f"--model_uris={models_for('keyed')}", f"--input={folder}/*.tfrecord")
    assert run.returncode == 0, run.stderr
    keys = sorted(row["key"] for row in run.rows())
    assert keys == sorted([f"good-{i}" for i in range(5)] + [f"cut-{i}" for i in range(4)] + ["flipped-0", "flipped-1"])
    letters = sorted((d["stage"], d["source"].rsplit("/", 1)[-1]) for d in run.dead_letters())
    assert letters == [("read", "cut.tfrecord"), ("read", "flipped.tfrecord")]
    assert "reconciled               yes" in run.stdout

    broken = tmp_path / "broken"
    broken.mkdir()
    compressed = gzip.compress(b"".join(b'{"key": "k%d", "x": 1.0}\n' % i for i in range(2000)))
    (broken / "cut.jsonl.gz").write_bytes(compressed[: len(compressed) // 2])  # stops mid-line
    corrupt = bytearray(compressed)
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 8] = b"\xff" * 8
    (broken / "corrupt.jsonl.gz").write_bytes(bytes(corrupt))
    run = run_main("--pattern=keyed", f"--model_uris={models_for('keyed')}", f"--input={broken}/*.jsonl.gz")
    assert run.returncode == 0, run.stderr
    stages = {}
    for letter in run.dead_letters():
        stages.setdefault(letter["source"].rsplit("/", 1)[-1], []).append(letter["stage"])
    assert stages["cut.jsonl.gz"] == ["read"], "a cut gzip stream ends without its end-of-stream marker"
    # Deflate can decode garbage for a while before it notices the damage: those lines fail to parse.
    assert stages["corrupt.jsonl.gz"].count("read") == 1 and set(stages["corrupt.jsonl.gz"]) <= {"read", "parse"}
    assert len(run.rows()) > 500
    assert "reconciled               yes" in run.stdout


# Each record of the catalogue and its outcome under --pattern=keyed: a row, or a dead letter saying why.
CATALOGUE = [
    ('{"key": "plain", "x": 1.0}', "row"),
    ('{"key": "extra", "x": 2.0, "unused": 5.0}', "row"),  # features the model does not read are ignored
    ('{"key": "устройство-7 📟", "x": 3.0}', "row"),  # unicode keys
    ('{"key": "' + "k" * 20000 + '", "x": 4.0}', "row"),  # a very long key
    ('{"key": "twice", "x": 5.0}', "row"),  # repeated keys: each record is its own row
    ('{"key": "twice", "x": 6.0}', "row"),
    ('{"key": 42, "x": 7.0}', "row"),  # an integer key becomes text
    ('{"key": "huge", "x": 3.0e38}', "row"),  # the largest float32 values
    ('{"key": "too-huge", "x": 1.0e39}', "overflows a 32-bit float"),
    ('{"key": "inf", "x": Infinity}', "not a finite number"),
    ('{"key": "", "x": 8.0}', "--pattern=keyed needs"),  # an empty key is no key
    ('{"x": 9.0}', "--pattern=keyed needs"),
    ('{"key": "text", "x": "' + "long text " * 5000 + '"}', "should be a number"),  # a very long string
    ('{"key": "no-x"}', "no features"),
    ('{"key": "list", "x": []}', "empty list"),
]


def test_the_record_catalogue(run_main, demo_models, tmp_path):
    source = tmp_path / "catalogue.jsonl"
    source.write_text("\n".join(line for line, _ in CATALOGUE) + "\n", encoding="utf-8")
    run = run_main("--pattern=keyed", f"--model_uris={demo_models['multiply_by_5']}", f"--input={source}")
    assert run.returncode == 0, run.stderr
    rows, letters = run.rows(), run.dead_letters()
    expected_rows = [json.loads(line) for line, outcome in CATALOGUE if outcome == "row"]
    assert sorted((row["key"], row["input"]["x"]) for row in rows) == sorted(
        (str(r["key"]), r["x"]) for r in expected_rows
    )
    for row in rows:
        if row["key"] == "huge":
            assert _y(row, 0) is None, "5 x 3e38 overflows float32: the infinite output is written as null"
        else:
            assert_close(_y(row, 0), 5 * row["input"]["x"])
    assert next(row for row in rows if row["key"] == "extra")["input"] == {"x": 2.0, "unused": 5.0}
    expected_messages = sorted(outcome for _, outcome in CATALOGUE if outcome != "row")
    found = sorted(next(m for m in expected_messages if m in letter["message"]) for letter in letters)
    assert found == expected_messages, [letter["message"][:100] for letter in letters]
    assert all(letter["stage"] == "parse" for letter in letters)
    assert "reconciled               yes" in run.stdout
