"""A batch's features stay columns until read: a key-only row never makes Python values of them, any reader does."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from tensorflow.core.example import example_pb2

from transforms.config import FeatureTypes, RowInput
from transforms.records import parsing
from transforms.records.batch_features import BatchFeatures
from transforms.records.examples import encode_example
from transforms.records.parsing import Record, parse_jsonl_batch, parse_tfrecords
from transforms.writing.rows import prediction_row, row_json

PREDICTIONS = [{"model": "m", "version": None, "outputs": {"y": [0.5]}}]


class CountingConvert:
    def __init__(self):
        self.calls = 0

    def __call__(self, column):
        self.calls += 1
        return list(column)


def test_features_read_as_the_dict_they_stand_for():
    convert = CountingConvert()
    first, second = BatchFeatures(["x", "s"], [[1.5, 2.5], ["a", "b"]], convert).records(2)
    assert first == {"x": 1.5, "s": "a"}
    assert {"x": 2.5, "s": "b"} == second  # noqa: SIM300 -- a dict on the left compares through the reflection
    assert dict(second) == {**second} == {"x": 2.5, "s": "b"}
    assert list(first) == ["x", "s"] and len(first) == 2 and "s" in first and first.get("t") is None
    assert first["x"] == 1.5 and repr(first) == "{'x': 1.5, 's': 'a'}"
    assert first != {"x": 1.5}


def test_nothing_is_converted_until_read_and_the_batch_once():
    convert = CountingConvert()
    features = BatchFeatures(["x", "s"], [[1.5, 2.5, 3.5], ["a", "b", "c"]], convert).records(3)
    assert convert.calls == 0
    assert features[2]["s"] == "c"
    assert convert.calls == 2  # a call per column, for the whole batch
    assert [f["x"] for f in features] == [1.5, 2.5, 3.5]
    assert convert.calls == 2


def test_pickled_features_are_a_dict_without_their_batch():
    many = BatchFeatures(["x"], [list(range(10_000))], CountingConvert()).records(10_000)
    restored = pickle.loads(pickle.dumps(many[7], pickle.HIGHEST_PROTOCOL))
    assert isinstance(restored, dict) and restored == {"x": 7}
    assert len(pickle.dumps(many[7])) < 200
    record = Record("id", "k", many[8], b"raw", "source")
    assert pickle.loads(pickle.dumps(record)) == record._replace(features={"x": 8})


def test_a_row_echoes_the_same_bytes_after_its_record_crossed_a_shuffle():
    """A routed job groups its records by route (pickled between stages): its rows are an unrouted job's."""
    raws = [encode_example({"key": f"k{i}", "x": [0.1 * i, 1 / 3], "n": i}) for i in range(3)]
    records = [record_of(parsed) for parsed in parse_tfrecords(raws, "key")]
    for record in records:
        dict(record.features)  # read once, as a named-tensor model or a route would
    shuffled = pickle.loads(pickle.dumps(pickle.loads(pickle.dumps(records))))
    assert shuffled == records
    for row_input in (RowInput("all"), RowInput.parse("exclude:n")):
        rows = [row_json(prediction_row(record, PREDICTIONS, row_input)) for record in records]
        assert [row_json(prediction_row(record, PREDICTIONS, row_input)) for record in shuffled] == rows
    assert rows[1].startswith(b'{"key":"k1","input":{"x":[0.1,0.33333334]}')


@pytest.fixture
def conversions(monkeypatch):
    """The names of the parser's column conversions as they run: to Python values, or to the values a row echoes."""
    calls = []

    def counted(name, original):
        return lambda column: calls.append(name) or original(column)

    for name in ("_column_values", "_column_row_values", "_python_values", "_row_values"):
        monkeypatch.setattr(parsing, name, counted(name, getattr(parsing, name)))
    return calls


def _rows(records, row_input: RowInput) -> list[bytes]:
    return [row_json(prediction_row(record_of(parsed), PREDICTIONS, row_input)) for parsed in records]


def record_of(parsed) -> Record:
    return Record("id", parsed.key, parsed.features, b"", "source", parsed.model_input)


def test_key_only_rows_from_examples_never_convert_the_features(conversions):
    raws = [encode_example({"key": f"k{i}", "x": [0.1 * i] * 256, "n": i}) for i in range(4)]
    parsed = parse_tfrecords(raws, "key")
    fed = [example_pb2.Example.FromString(p.model_input) for p in parsed]
    assert fed == [example_pb2.Example.FromString(encode_example({"x": [0.1 * i] * 256, "n": i})) for i in range(4)]
    assert _rows(parsed, RowInput("none"))[0] == b'{"key":"k0","input":{},"predictions":' + (
        b'[{"model":"m","version":null,"outputs":{"y":[0.5]}}]}'
    )
    assert conversions == []
    echoed = _rows(parsed, RowInput("all"))
    assert conversions == ["_column_row_values"] * 2  # each of the batch's feature columns, once
    # An Example holds float32: the row echoes each in its shortest text, as outputs are written.
    assert echoed[1].startswith(b'{"key":"k1","input":{"n":1,"x":[0.1,0.1,')
    assert dict(parsed[1].features)["x"][0] == float(np.float32(0.1)), "readers get the float32's exact value"
    assert conversions[2:] == ["_column_values"] * 2


def test_key_only_rows_from_json_lines_never_convert_the_features(conversions):
    lines = [b'{"key": "a", "x": [1, 2.5e-7], "s": "t"}', b'{"key": "b", "x": [3.5, 4], "s": "u"}']
    parsed = parse_jsonl_batch(lines, "key", FeatureTypes("float", {"s": "bytes"}))
    _rows(parsed, RowInput("none"))
    assert conversions == []
    assert _rows(parsed, RowInput.parse("include:x"))[0].startswith(b'{"key":"a","input":{"x":[1.0,2.5e-7]},')
    assert conversions == ["_row_values"] * 2
    assert [dict(p.features) for p in parsed] == [{"x": [1.0, 2.5e-7], "s": "t"}, {"x": [3.5, 4.0], "s": "u"}]
    assert conversions[2:] == ["_python_values"] * 2
