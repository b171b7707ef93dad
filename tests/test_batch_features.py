"""A batch's features stay columns until read: a key-only row never makes Python values of them, any reader does."""

from __future__ import annotations

import pickle

import pytest

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


def test_pickled_features_are_the_plain_dict_without_their_batch():
    many = BatchFeatures(["x"], [list(range(10_000))], CountingConvert()).records(10_000)
    restored = pickle.loads(pickle.dumps(many[7], pickle.HIGHEST_PROTOCOL))
    assert type(restored) is dict and restored == {"x": 7}
    assert len(pickle.dumps(many[7])) < 100
    record = Record("id", "k", many[8], b"raw", "source")
    assert pickle.loads(pickle.dumps(record)) == record._replace(features={"x": 8})


@pytest.fixture
def counted_columns(monkeypatch):
    """Counts the conversions of Example columns to Python values (parsing._column_values)."""
    calls = []
    original = parsing._column_values

    def counting(column):
        calls.append(column)
        return original(column)

    monkeypatch.setattr(parsing, "_column_values", counting)
    return calls


def _rows(records, row_input: RowInput) -> list[bytes]:
    return [row_json(prediction_row(record_of(parsed), PREDICTIONS, row_input)) for parsed in records]


def record_of(parsed) -> Record:
    return Record("id", parsed.key, parsed.features, b"", "source", parsed.model_input)


def test_key_only_rows_from_examples_never_convert_the_features(counted_columns):
    raws = [encode_example({"key": f"k{i}", "x": [float(i)] * 256}) for i in range(4)]
    parsed = parse_tfrecords(raws, "key")
    assert [p.model_input for p in parsed] == [encode_example({"x": [float(i)] * 256}) for i in range(4)]
    assert _rows(parsed, RowInput("none"))[0] == b'{"key":"k0","input":{},"predictions":' + (
        b'[{"model":"m","version":null,"outputs":{"y":[0.5]}}]}'
    )
    assert counted_columns == []
    echoed = _rows(parsed, RowInput("all"))
    assert len(counted_columns) == 1  # the batch's one feature column, once
    assert echoed[3].startswith(b'{"key":"k3","input":{"x":[3.0,3.0,')


def test_key_only_rows_from_json_lines_never_convert_the_features(monkeypatch):
    calls = []
    original = parsing._python_values
    monkeypatch.setattr(parsing, "_python_values", lambda column: calls.append(1) or original(column))
    lines = [b'{"key": "a", "x": [1, 2], "s": "t"}', b'{"key": "b", "x": [3.5, 4], "s": "u"}']
    parsed = parse_jsonl_batch(lines, "key", FeatureTypes("float", {"s": "bytes"}))
    _rows(parsed, RowInput("none"))
    assert calls == []
    assert [dict(p.features) for p in parsed] == [{"x": [1.0, 2.0], "s": "t"}, {"x": [3.5, 4.0], "s": "u"}]
    assert len(calls) == 2
