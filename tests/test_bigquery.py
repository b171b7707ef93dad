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
    assert "records read              22" in run.stdout and "reconciled" in run.stdout


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
