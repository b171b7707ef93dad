"""BigQuery end to end against bqemulator: tables read with the Storage Read API, rows and dead letters
appended with file loads (batch) and streaming inserts (streaming), numbers, keys and counts checked."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from expect import assert_close

pytestmark = pytest.mark.slow

INPUT_FIELDS = [
    {"name": "key", "type": "STRING", "mode": "NULLABLE"},
    {"name": "x", "type": "FLOAT64", "mode": "NULLABLE"},
]
GOOD = [{"key": f"device-{i}", "x": float(i)} for i in range(20)]
BAD = [{"key": "device-null", "x": None}, {"key": None, "x": 3.0}]


@pytest.fixture(scope="module")
def tables(bigquery, gcs) -> dict:
    gcs.client.create_bucket("bq-temp")
    source = bigquery.dataset("source")
    return {
        "input": bigquery.table(source, "devices", INPUT_FIELDS, GOOD + BAD),
        "temp_location": "gs://bq-temp/tmp",
    }


def table_args(bigquery, tables, name: str) -> list[str]:
    dataset = bigquery.dataset(f"out_{name}")
    return [
        f"--output_table={bigquery.project}:{dataset}.predictions",
        f"--dead_letter_table={bigquery.project}:{dataset}.dead_letters",
        f"--project={bigquery.project}",
        f"--temp_location={tables['temp_location']}",
    ]


def outputs(row: dict) -> dict[str, list[float]]:
    return {p["model"]: json_value(p["outputs"])["y"] for p in row["predictions"]}


def test_keyed_from_a_table_to_tables(run_main, bigquery, tables, models_for):
    args = table_args(bigquery, tables, "keyed")
    run = run_main(
        "--pattern=keyed",
        f"--model_uris={models_for('keyed')}",
        f"--input_table={tables['input']}",
        *args,
        output=None,
        env=bigquery.env,
    )
    assert run.returncode == 0, run.stderr
    rows = bigquery.rows(args[0].split("=", 1)[1])
    assert sorted(row["key"] for row in rows) == sorted(g["key"] for g in GOOD), "every good row, keys intact"
    for row in rows:
        assert_close(outputs(row)["multiply_by_5"][0], 5 * json_value(row["input"])["x"])
        assert row["record_id"]
    letters = bigquery.rows(args[1].split("=", 1)[1])
    messages = {d["key"]: d["message"] for d in letters if d["stage"] == "parse" and d["source"] == tables["input"]}
    assert messages.keys() == {None, "device-null"} and len(letters) == 2
    assert "feature 'x' is null" in messages["device-null"]
    assert "which --pattern=keyed needs" in messages[None]
    assert "records read              22" in run.stdout and "reconciled               yes" in run.stdout


def json_value(column) -> dict:
    """A JSON column as the client returns it: parsed, or JSON text."""
    return json.loads(column) if isinstance(column, str) else column


def test_multi_parallel_from_a_table_on_two_worker_processes(run_main, bigquery, tables, models_for):
    args = table_args(bigquery, tables, "parallel")
    run = run_main(
        "--pattern=multi_parallel",
        f"--model_uris={models_for('multi_parallel')}",
        f"--input_table={tables['input']}",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
        *args,
        output=None,
        env=bigquery.env,
    )
    assert run.returncode == 0, run.stderr
    rows = bigquery.rows(args[0].split("=", 1)[1])
    assert len(rows) == 21, "the 20 good rows, and the keyless row (multi_parallel does not need a key)"
    for row in rows:
        x = json_value(row["input"])["x"]
        assert [p["model"] for p in row["predictions"]] == ["multiply_by_5", "multiply_by_10"]
        assert_close(outputs(row)["multiply_by_5"][0], 5 * x)
        assert_close(outputs(row)["multiply_by_10"][0], 10 * x)
    assert [d["key"] for d in bigquery.rows(args[1].split("=", 1)[1])] == ["device-null"]


def test_streaming_inserts_from_pubsub(pubsub, bigquery, start_main, models_for):
    from test_streaming import stop

    topic, subscription = pubsub.topic_with_subscription("bq-stream-input")
    dataset = bigquery.dataset("out_stream")
    predictions = f"{bigquery.project}:{dataset}.predictions"
    dead_letters = f"{bigquery.project}:{dataset}.dead_letters"
    ids = {pubsub.publish(topic, json.dumps({"key": f"dev-{i}", "x": float(i)}).encode()): f"dev-{i}" for i in range(8)}
    bad_id = pubsub.publish(topic, b'{"key": "dev-bad", "x": "seven"}')
    process = start_main(
        "--pattern=keyed",
        f"--model_uris={models_for('keyed')}",
        f"--input_subscription={subscription}",
        f"--output_table={predictions}",
        f"--dead_letter_table={dead_letters}",
        f"--project={bigquery.project}",
        env={**pubsub.env, **bigquery.env},
    )
    rows, letters = wait_for_rows(bigquery, predictions, 8), wait_for_rows(bigquery, dead_letters, 1)
    stop(process)
    assert {row["record_id"]: row["key"] for row in rows} == ids, "record id = Pub/Sub message id, keys intact"
    for row in rows:
        assert_close(outputs(row)["multiply_by_5"][0], 5 * json_value(row["input"])["x"])
    assert [(d["record_id"], d["key"], d["stage"]) for d in letters] == [(bad_id, "dev-bad", "parse")]


def wait_for_rows(bigquery, table: str, count: int, seconds: float = 120) -> list[dict]:
    """The table's rows once it has `count` (the pipeline creates the table when its first row arrives)."""
    from google.api_core.exceptions import NotFound

    rows, deadline = [], time.monotonic() + seconds
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(1)
        with contextlib.suppress(NotFound):
            rows = bigquery.rows(table)
    return rows


def schema_with_int64_key(name: str) -> list[dict]:
    """A table of schemas/bigquery/ whose key column is INT64: made by hand, it refuses rows with text keys."""
    from transforms.writing.bigquery import table_schema

    return [{**f, "type": "INT64"} if f["name"] == "key" else f for f in table_schema(name)["fields"]]


def test_a_row_a_streaming_insert_refuses_is_a_write_dead_letter(pubsub, bigquery, start_main, models_for):
    from test_streaming import stop

    topic, subscription = pubsub.topic_with_subscription("bq-refused-rows")
    dataset = bigquery.dataset("refused_rows")
    predictions = bigquery.table(dataset, "predictions", schema_with_int64_key("predictions"), [])
    dead_letters = f"{bigquery.project}:{dataset}.dead_letters"
    numbers = {pubsub.publish(topic, json.dumps({"key": i, "x": float(i)}).encode()): str(i) for i in range(1, 5)}
    texts = {pubsub.publish(topic, json.dumps({"key": f"dev-{c}", "x": 1.0}).encode()): f"dev-{c}" for c in "ab"}
    process = start_main(
        "--pattern=keyed",
        f"--model_uris={models_for('keyed')}",
        f"--input_subscription={subscription}",
        f"--output_table={predictions}",
        f"--dead_letter_table={dead_letters}",
        f"--project={bigquery.project}",
        env={**pubsub.env, **bigquery.env},
    )
    rows, letters = wait_for_rows(bigquery, predictions, 4), wait_for_rows(bigquery, dead_letters, 2)
    stdout, _ = stop(process)
    assert sorted((row["record_id"], str(row["key"])) for row in rows) == sorted(numbers.items())
    assert sorted((d["record_id"], d["key"], d["stage"], d["source"]) for d in letters) == sorted(
        (record_id, key, "write", predictions) for record_id, key in texts.items()
    ), "the refused rows, by record id and key, and nothing else"
    for letter in letters:
        assert letter["message"].startswith(f"BigQuery refused the row for {predictions}: ")
        refused = json.loads(letter["raw"])
        assert refused["key"] == letter["key"] and json.loads(refused["input"]) == {"x": 1.0}
        assert json.loads(refused["predictions"][0]["outputs"])["y"][0] == pytest.approx(5.0, abs=0.1)
    # The refused rows are no longer counted as written. (Their dead letters' own counts can be missing from a
    # local streaming summary, whose metrics lag; the table above holds them.)
    assert "records read               6" in stdout and "rows written               4" in stdout, stdout


def test_a_dead_letter_its_table_refuses_is_logged_at_error_and_counted(pubsub, bigquery, start_main, models_for):
    from test_streaming import stop

    topic, subscription = pubsub.topic_with_subscription("bq-refused-dead-letters")
    dataset = bigquery.dataset("refused_dead_letters")
    predictions = f"{bigquery.project}:{dataset}.predictions"
    dead_letters = bigquery.table(dataset, "dead_letters", schema_with_int64_key("dead_letters"), [])
    good = {pubsub.publish(topic, json.dumps({"key": i, "x": float(i)}).encode()) for i in range(3)}
    landed = pubsub.publish(topic, b'{"key": 7, "x": "seven"}')
    pubsub.publish(topic, b'{"key": "dev-lost", "x": "eight", "note": "' + b"z" * 3000 + b'"}')
    process = start_main(
        "--pattern=keyed",
        f"--model_uris={models_for('keyed')}",
        f"--input_subscription={subscription}",
        f"--output_table={predictions}",
        f"--dead_letter_table={dead_letters}",
        f"--project={bigquery.project}",
        "--log_level=ERROR",
        env={**pubsub.env, **bigquery.env},
    )
    rows, letters = wait_for_rows(bigquery, predictions, 3), wait_for_rows(bigquery, dead_letters, 1)
    time.sleep(5)  # the refused dead letter's insert is tried (and refused) alongside the one that landed
    stdout, stderr = stop(process)
    assert {row["record_id"] for row in rows} == good
    assert [(d["record_id"], d["key"], d["stage"]) for d in letters] == [(landed, 7, "parse")]
    logged = [line for line in stderr.splitlines() if "a dead letter could not be written either" in line]
    assert len(logged) == 1, stderr
    assert "ERROR" in logged[0] and f"BigQuery refused the row for {dead_letters}" in logged[0]
    assert "dev-lost" in logged[0] and "z" * 1500 in logged[0] and "z" * 3000 not in logged[0], "raw, up to 2000 bytes"
    # Its dead_letters_unwritable count is left out of a local streaming summary, whose metrics lag (counted in
    # tests/test_sinks.py); both dead letters were counted as handed to the sink.
    assert "dead letters               2  (parse 2)" in stdout, stdout


@pytest.fixture(scope="module")
def three_output_model(tmp_path_factory) -> str:
    """A model with several outputs of several kinds: y = 5x (float), label (string), pair = [x, 2x] (two values)."""
    import keras
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples):
        x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        return {"y": 5 * x, "label": tf.where(x > 0, "positive", "not positive"), "pair": tf.concat([x, 2 * x], 1)}

    path = str(tmp_path_factory.mktemp("three_outputs") / "three_outputs")
    archive = keras.export.ExportArchive()
    archive.add_endpoint("serving_default", serve)
    archive.write_out(path, verbose=False)
    return path


def test_rows_of_every_kind_load_into_the_predictions_table(run_main, bigquery, tables, three_output_model, tmp_path):
    import tensorflow as tf

    from transforms.records.examples import encode_example

    source = tmp_path / "kinds.tfrecord"
    features = [
        {"x": 1.5, "name": "sensor ü", "raw": b"\xff\x00\x01", "ids": [3, 4]},
        {"x": -2.0, "name": "квартира", "raw": b"\x80", "ids": [5, 6]},
    ]
    with tf.io.TFRecordWriter(str(source)) as writer:
        for feature in features:
            writer.write(encode_example(feature))
    args = table_args(bigquery, tables, "kinds")
    run = run_main(
        "--pattern=postprocess",
        f"--model_uris={three_output_model}",
        f"--input={source}",
        *args,
        env=bigquery.env,
    )
    assert run.returncode == 0, run.stderr
    files = {row["input"]["name"]: row for row in run.rows()}
    loaded = {json_value(row["input"])["name"]: row for row in bigquery.rows(args[0].split("=", 1)[1])}
    assert files.keys() == loaded.keys() == {"sensor ü", "квартира"}
    for name, row in loaded.items():
        assert row["key"] is None and row["record_id"], "no key: a null key column; the record id is kept"
        assert json_value(row["input"]) == files[name]["input"], "bytes (base64), text and lists as in the files"
        assert [(p["model"], json_value(p["outputs"])) for p in row["predictions"]] == [
            (p["model"], p["outputs"]) for p in files[name]["predictions"]
        ]
    assert json_value(loaded["sensor ü"]["input"])["raw"] == "/wAB", "non-UTF-8 bytes are base64"
    outputs = json_value(loaded["квартира"]["predictions"][0]["outputs"])
    assert outputs == {"label": ["not positive"], "pair": [-2.0, -4.0], "y": [-10.0]}


def test_the_readme_query_removes_duplicate_rows_by_record_id(bigquery):
    from transforms.writing.bigquery import table_schema

    dataset = bigquery.dataset("duplicates")
    row = {"input": '{"x": 1.0}', "predictions": [{"model": "m", "outputs": '{"y": [5.0]}'}]}
    table = bigquery.table(
        dataset,
        "predictions",
        table_schema("predictions")["fields"],
        [{"record_id": "m-1", "key": "a", **row}, {"record_id": "m-1", "key": "a", **row}, {"record_id": "m-2", **row}],
    )
    query = (
        f"SELECT record_id, key FROM `{table.replace(':', '.')}` "
        "WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY record_id ORDER BY record_id) = 1"
    )
    rows = sorted((r["record_id"], r["key"]) for r in bigquery.client.query(query).result())
    assert rows == [("m-1", "a"), ("m-2", None)]
