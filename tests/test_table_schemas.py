"""The BigQuery schema files (read by Terraform) describe the rows the pipeline really writes."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np

from transforms.dead_letters import dead_letter, dead_letter_json
from transforms.inference.batches import Batch, ModelOutputs
from transforms.records.parsing import Record
from transforms.writing.rows import batch_predictions, prediction_row, row_json

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "bigquery"
_PYTHON_TYPES = {"STRING": str, "FLOAT64": (float, int), "INT64": int, "BOOL": bool}


def schema(name: str) -> list[dict]:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def problems(row: dict, fields: list[dict], where: str = "") -> list[str]:
    """What keeps `row` (as JSON would carry it) from loading into a table with these fields."""
    found = []
    by_name = {field["name"]: field for field in fields}
    found += [f"{where}{name}: not in the schema" for name in row.keys() - by_name.keys()]
    for name, field in by_name.items():
        value = row.get(name)
        if value is None:
            if field.get("mode") == "REQUIRED":
                found.append(f"{where}{name}: REQUIRED but missing")
            continue
        values = value if field.get("mode") == "REPEATED" else [value]
        if field.get("mode") == "REPEATED" and not isinstance(value, list):
            found.append(f"{where}{name}: REPEATED but not a list")
            continue
        for item in values:
            if field["type"] == "RECORD":
                found += problems(item, field["fields"], f"{where}{name}.")
            elif field["type"] == "TIMESTAMP":
                datetime.fromisoformat(item)
            elif field["type"] != "JSON" and not isinstance(item, _PYTHON_TYPES[field["type"]]):
                found.append(f"{where}{name}: {type(item).__name__} is not {field['type']}")
    return found


def test_prediction_rows_fit_the_predictions_table():
    record = Record("id", "device-1", {"x": 2.0, "name": "a", "raw": b"\xff"}, b"raw", "src")
    outputs = (
        ModelOutputs("multiply_by_5", None, {"y": np.array([10.0], np.float32)}),
        ModelOutputs("m10", "1732700000", {"y": np.array([[20.0]]), "c": np.array([b"a"], object)}),
    )
    (predictions,) = batch_predictions(Batch([record], outputs))
    row = json.loads(row_json(prediction_row(record, predictions)))
    assert problems(row, schema("predictions")) == []
    assert row["predictions"][1] == {"model": "m10", "version": "1732700000", "outputs": {"c": ["a"], "y": [20.0]}}
    unkeyed = json.loads(row_json(prediction_row(record._replace(key=None), predictions[:1])))
    assert problems(unkeyed, schema("predictions")) == []


def test_dead_letters_fit_the_dead_letter_table():
    for raw, model in ((b'{"x": ', None), (b"\xff\xfe", "multiply_by_5")):
        letter = dead_letter("parse", ValueError("bad"), raw, "gs://b/in.jsonl", model=model)
        assert problems(json.loads(dead_letter_json(letter, "keyed")), schema("dead_letters")) == []


def test_the_keyed_input_table_holds_the_demo_records(demo_data):
    for line in (demo_data / "numbers.jsonl").read_text().splitlines():
        assert problems(json.loads(line), schema("keyed_input")) == []


def test_the_checker_itself_catches_drift():
    assert problems({"key": 1, "extra": 2}, schema("predictions")) == [
        "extra: not in the schema",
        "key: int is not STRING",
        "input: REQUIRED but missing",
    ]


def test_table_rows_fit_their_tables_in_both_write_methods():
    from transforms.writing.bigquery import dead_letter_table_row, prediction_table_row

    record = Record("id", "device-1", {"x": 2.0}, b"raw", "src")
    payload = row_json(prediction_row(record, [{"model": "m", "version": None, "outputs": {"y": [10.0]}}]))
    letter = dead_letter_json(dead_letter("write", ValueError("refused"), b"{}", "p:d.t"), "keyed").encode()
    for json_as_text in (False, True):
        row = prediction_table_row(payload, "message-1", json_as_text)
        assert problems(row, schema("predictions")) == []
        assert row["record_id"] == "message-1"
        assert (json.loads(row["input"]) if json_as_text else row["input"]) == {"x": 2.0}
        assert isinstance(row["input"], str) == json_as_text
        assert problems(dead_letter_table_row(letter, None, json_as_text), schema("dead_letters")) == []
