"""Writing: a result that cannot become a row is a `postprocess` dead letter, and every dead letter is UTF-8."""

from __future__ import annotations

import json

import pytest

from transforms.dead_letters import DeadLetter, dead_letter_json
from transforms.inference.batches import ModelOutputs
from transforms.writing.sinks import Encoded, EncodeDeadLetter, pubsub_message, version_attribute


def test_a_dead_letter_with_a_lone_surrogate_is_still_utf8_json():
    letter = DeadLetter("parse", "RecordError", "bad \udc00", b'{"key": "\\udc00"}', "in.jsonl", key="\udc00")
    payload = EncodeDeadLetter("keyed")(letter).payload
    payload.decode("utf-8")
    fields = json.loads(payload)
    assert (fields["key"], fields["message"], fields["raw"]) == ("\udc00", "bad \udc00", '{"key": "\\udc00"}')
    assert json.loads(dead_letter_json(letter._replace(key="устройство"), "keyed"))["key"] == "устройство"
    assert "устройство" in dead_letter_json(letter._replace(key="устройство", message="m"), "keyed"), "kept readable"


def test_a_key_pubsub_cannot_carry_as_an_attribute_stays_in_the_payload_only():
    message = pubsub_message(Encoded(b"{}", "id-1", "\udc00"))
    assert message.attributes == {"record_id": "id-1"}
    assert pubsub_message(Encoded(b"{}", "id-2", "k")).attributes == {"record_id": "id-2", "key": "k"}
    versioned = pubsub_message(Encoded(b"{}", "id-3", None, "1732700000"))
    assert versioned.attributes == {"record_id": "id-3", "version": "1732700000"}


def test_the_version_attribute_names_each_models_version():
    one = [ModelOutputs("fraud", "7", {})]
    several = [ModelOutputs("fraud", "7", {}), ModelOutputs("plain", None, {}), ModelOutputs("risk", "12", {})]
    assert version_attribute(one) == "7"
    assert version_attribute(several) == "fraud=7,risk=12"
    assert version_attribute([ModelOutputs("plain", None, {})]) is None


@pytest.mark.slow
@pytest.mark.parametrize("pattern", ["postprocess", "keyed", "multi_parallel", "multi_sequence"])
def test_a_result_that_cannot_be_a_row_is_a_postprocess_dead_letter(run_main, models_for, tmp_path, pattern):
    # A JSON \udc00 escape reads as a lone surrogate: the model scores the record, but no UTF-8 row can hold its key.
    source = tmp_path / "keys.jsonl"
    source.write_text('{"key": "k1", "x": 1.0}\n{"key": "\\udc00", "x": 2.0}\n{"key": "k3", "x": 3.0}\n')
    run = run_main(f"--pattern={pattern}", f"--model_uris={models_for(pattern)}", f"--input={source}")
    assert run.returncode == 0, run.stderr
    assert sorted(row["key"] for row in run.rows()) == ["k1", "k3"]
    letters = run.dead_letters()
    assert [(d["key"], d["stage"], d["error"]) for d in letters] == [("\udc00", "postprocess", "TypeError")]
    assert "surrogates not allowed" in letters[0]["message"]
    assert "rows written               2" in run.stdout and "(postprocess 1)" in run.stdout
    assert "reconciled               yes" in run.stdout


def test_unwritable_dead_letters_are_logged_at_error_and_counted(caplog):
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    from transforms import counters
    from transforms.runner import local_runner
    from transforms.writing.sinks import LogUnwritable

    letters = [
        DeadLetter("write", "RuntimeError", "BigQuery refused the row for p:d.dead_letters: [...]", b"z" * 3000, "t"),
        DeadLetter("parse", "RuntimeError", "BigQuery refused the row for p:d.dead_letters: [...]", b"raw", "t"),
    ]
    with caplog.at_level("ERROR"):
        options = PipelineOptions([])
        pipeline = beam.Pipeline(runner=local_runner(options), options=options)
        _ = pipeline | beam.Create(letters) | LogUnwritable()
        result = pipeline.run()
        result.wait_until_finish()
    [counted] = result.metrics().query(MetricsFilter().with_name(counters.DEAD_LETTERS_UNWRITABLE))["counters"]
    assert counted.committed == 2
    logged = sorted(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert len(logged) == 2 and all("a dead letter could not be written either (BigQuery refused" in m for m in logged)
    assert "z" * 2000 in logged[1] and "z" * 2001 not in logged[1], "the raw input, up to 2000 bytes"


def test_a_dead_letter_carries_the_documented_fields():
    from transforms.writing.bigquery import dead_letter_table_row

    letter = DeadLetter("inference", "InferenceFailure", "m", b"\xff", "in.tfrecord", "k", "multiply_by_5", 0.0, "id-7")
    payload = EncodeDeadLetter("keyed")(letter).payload
    fields = json.loads(payload)
    assert fields == {
        "stage": "inference",
        "error": "InferenceFailure",
        "message": "m",
        "pattern": "keyed",
        "model": "multiply_by_5",
        "key": "k",
        "source": "in.tfrecord",
        "raw": "/w==",
        "raw_encoding": "base64",
        "timestamp": "1970-01-01T00:00:00+00:00",
    }
    assert dead_letter_table_row(payload, "id-7", json_as_text=False) == {"record_id": "id-7", **fields}
