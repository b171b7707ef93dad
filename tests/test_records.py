"""Record parsing: typed features from CSV, JSON and Example records, and a clear error for every bad one."""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tensorflow.core.example import example_pb2, feature_pb2

from transforms.config import FeatureTypes
from transforms.records.examples import decode_example, encode_example
from transforms.records.parsing import (
    Parsed,
    RecordError,
    parse_csv,
    parse_fields,
    parse_jsonl,
    parse_jsonl_batch,
    parse_tfrecord,
    parse_tfrecords,
)

FLOATS = FeatureTypes()
MIXED = FeatureTypes.parse("float", "count:int,name:bytes")


def test_jsonl_separates_the_key_and_types_the_features():
    key, features = parse_jsonl(b'{"key": "dev-1", "x": 3, "count": 2, "name": "a", "v": [1, 2.5]}', "key", MIXED)
    assert key == "dev-1"
    assert features == {"x": 3.0, "count": 2, "name": "a", "v": [1.0, 2.5]}
    assert isinstance(features["x"], float) and isinstance(features["count"], int)


def test_nested_json_arrays_stay_nested_typed_to_their_leaves_and_become_a_flat_example_list():
    key, features = parse_jsonl(b'{"key": "g", "grid": [[1, 2, 3], [4, 5, 6.5]], "count": [[1], [2]]}', "key", MIXED)
    assert (key, features) == ("g", {"grid": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]], "count": [[1], [2]]})
    assert [type(v) for v in features["grid"][0]] == [float] * 3 and [type(v) for v in features["count"][1]] == [int]
    assert decode_example(encode_example(features)) == {"grid": [1.0, 2.0, 3.0, 4.0, 5.0, 6.5], "count": [1, 2]}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"grid": [[1, 2], []]}', "feature 'grid' is an empty list"),
        (b'{"grid": [[1, 2], [3, "x"]]}', "feature 'grid' should be a number (float feature), got \"x\""),
        (b'{"grid": [[1, 2], [3, null]]}', "feature 'grid' is null"),
        (b'{"grid": [[1, 2], [3, {"a": 1}]]}', "feature 'grid' should be a number (float feature), got {\"a\": 1}"),
        (b'{"count": [[1, 2], [3, 4.5]]}', "feature 'count' should be a whole number (int feature), got 4.5"),
    ],
)
def test_a_bad_value_anywhere_in_a_nested_array_is_named(line, message):
    with pytest.raises(RecordError) as refused:
        parse_jsonl(line, "key", MIXED)
    assert str(refused.value) == message


def test_integer_keys_become_text_and_missing_or_empty_keys_none():
    assert parse_jsonl(b'{"key": 42, "x": 1}', "key", FLOATS)[0] == "42"
    assert parse_jsonl(b'{"x": 1}', "key", FLOATS)[0] is None
    assert parse_jsonl(b'{"key": "", "x": 1}', "key", FLOATS)[0] is None
    assert parse_jsonl('{"key": "устройство-7", "x": 1}'.encode(), "key", FLOATS)[0] == "устройство-7"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"x": ', "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"x": "seven"}', "should be a number"),
        (b'{"x": null}', "is null"),
        (b'{"x": true}', "should be a number"),
        (b'{"x": NaN}', "not a finite number"),
        (b'{"x": Infinity}', "not a finite number"),
        (b'{"x": 1e300}', "overflows a 32-bit float"),
        (b'{"x": []}', "empty list"),
        (b'{"x": {"nested": 1}}', "should be a number"),
        (b'{"key": "only-a-key"}', "no features"),
        (b'{"key": [1], "x": 1}', "key field 'key' should be a string or an integer"),
        (b'{"count": 1.5}', "whole number"),
        (b'{"count": 1e30}', "does not fit a 64-bit int"),
        (b'{"name": 5}', "should be a string"),
        (b'{"x": "\xe9"}', "not valid UTF-8"),
    ],
)
def test_bad_json_records_raise_record_errors(line, message):
    with pytest.raises(RecordError, match=message):
        parse_jsonl(line, "key", MIXED)


def test_csv_reads_against_the_header():
    header = ("key", "x", "name")
    assert parse_csv(b'dev-1,2.5,"a, b"', header, "key", MIXED) == ("dev-1", {"x": 2.5, "name": "a, b"})
    with pytest.raises(RecordError, match="2 columns, the header has 3"):
        parse_csv(b"dev-1,2.5", header, "key", MIXED)
    with pytest.raises(RecordError, match="is empty"):
        parse_csv(b"dev-1,,a", header, "key", MIXED)
    with pytest.raises(RecordError, match="should be a number"):
        parse_csv(b"dev-1,abc,a", header, "key", MIXED)
    with pytest.raises(RecordError, match="not a finite number"):
        parse_csv(b"dev-1,nan,a", header, "key", MIXED)
    assert parse_csv(b"2.5,a", ("x", "name"), "key", MIXED) == (None, {"x": 2.5, "name": "a"}), "a file without keys"


def test_bigquery_rows_keep_their_column_types():
    row = {"key": 7, "x": Decimal("2.5"), "count": 3, "name": b"\xff\x00", "v": [1.0, 2.0]}
    key, features, model_input = parse_fields(row, "key", MIXED)
    assert (key, model_input) == ("7", None)
    assert features == {"x": 2.5, "count": 3, "name": b"\xff\x00", "v": [1.0, 2.0]}, "BYTES stay bytes"
    assert row["key"] == 7, "the row itself is left as read"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"key": "k", "x": None}, "is null"),
        ({"key": "k", "x": datetime.datetime(2026, 1, 1)}, "should be a number"),
        ({"key": "k", "x": float("nan")}, "not a finite number"),
        ({"key": "k", "x": Decimal("1e400")}, "not a finite number"),
        ({"key": "k", "x": Decimal("1e39")}, "overflows a 32-bit float"),
        ({"key": "k", "x": "7.5"}, "should be a number"),
        ({"key": "k", "x": []}, "empty list"),
        ({"key": "k", "x": {"nested": 1.0}}, "should be a number"),
        ({"key": "k"}, "no features"),
        ({"key": "k", "count": 2.5}, "whole number"),
        ({"key": "k", "name": 5}, "should be a string"),
        ({"key": b"k", "x": 1.0}, "key field 'key' should be a string or an integer"),
    ],
)
def test_bad_bigquery_rows_raise_record_errors_that_keep_the_key(row, message):
    with pytest.raises(RecordError, match=message) as raised:
        parse_fields(row, "key", MIXED)
    if isinstance(row["key"], str):
        assert raised.value.key == "k", "the dead letter still says whose row it was"


def test_tfrecord_key_feature_is_taken_out():
    raw = encode_example({"key": "dev-9", "x": 4.0, "ids": [1, 2]})
    key, features, model_input = parse_tfrecord(raw, "key")
    assert (key, features) == ("dev-9", {"x": 4.0, "ids": [1, 2]})
    assert decode_example(model_input) == {"x": 4.0, "ids": [1, 2]}, "the key never reaches the model"
    unkeyed = encode_example({"x": 4.0})
    assert parse_tfrecord(unkeyed, "key").model_input is unkeyed, "an Example without a key goes to the model as read"
    with pytest.raises(RecordError, match="not a serialized tf.train.Example"):
        parse_tfrecord(b"\xff\xfe garbage", "key")
    with pytest.raises(RecordError, match="no features"):
        parse_tfrecord(encode_example({"key": "only"}), "key")


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).filter(lambda n: n != "key")


@given(st.dictionaries(names, st.one_of(st.none(), st.booleans(), st.floats(), st.text(), st.integers()), min_size=1))
def test_json_parsing_either_succeeds_with_finite_floats_or_raises_record_error(fields):
    import json

    line = json.dumps(fields).encode()
    try:
        _, features = parse_jsonl(line, "key", FLOATS)
    except RecordError:
        return
    assert all(isinstance(v, float) and math.isfinite(v) for v in features.values())
    assert decode_example(encode_example(features)).keys() == features.keys()


def _alone(raw: bytes) -> Parsed | RecordError:
    try:
        return parse_tfrecord(raw, "key")
    except RecordError as error:
        return error


def _assert_parsed_as_alone(raws: list[bytes]) -> None:
    for raw, batched in zip(raws, parse_tfrecords(raws, "key"), strict=True):
        alone = _alone(raw)
        if isinstance(alone, RecordError):
            assert isinstance(batched, RecordError) and str(batched) == str(alone)
        else:
            assert (batched.key, batched.features) == (alone.key, alone.features)
            assert isinstance(batched.features, Mapping) and all(
                type(batched.features[name]) is type(value) for name, value in alone.features.items()
            ), "a float stays a float, an int an int, text text and bytes bytes"
            assert decode_example(batched.model_input) == decode_example(alone.model_input)
            assert "key" not in decode_example(batched.model_input), "the key never reaches the model"


def test_a_batch_of_examples_is_parsed_in_columns_exactly_as_each_alone():
    no_kind = example_pb2.Example()
    no_kind.features.feature["x"].CopyFrom(feature_pb2.Feature())
    no_kind.features.feature["y"].float_list.value.append(2.0)
    vector = [0.1, -2.5, 1e-30]  # a vector feature: every record's list of one length, converted by NumPy
    raws = [
        encode_example({"key": f"k{i}", "x": float(i), "ids": [1, 2], "v": vector, "s": "é", "b": b"\xff"})
        for i in range(5)
    ]
    raws += [
        b"not an example \xff",
        encode_example({"x": 1.0, "ids": [3], "s": "t", "b": b"a"}),
        encode_example({"key": ["a", "b"], "x": 1.0, "ids": [1], "s": "u", "b": b"c"}),
        no_kind.SerializeToString(),
        encode_example({"key": "only"}),
        encode_example({"key": 7, "x": 2}),
        b"",
        encode_example({"key": "", "x": [1.5, 2.5]}),
    ]
    _assert_parsed_as_alone(raws)
    parsed = parse_tfrecords(raws, "key")
    assert [i for i, p in enumerate(parsed) if isinstance(p, RecordError)] == [5, 7, 9, 11]


def test_a_feature_of_another_kind_than_its_batch_mates_splits_the_batch_but_costs_nothing():
    raws = [encode_example({"key": f"k{i}", "x": float(i)}) for i in range(6)] + [encode_example({"key": "i", "x": 3})]
    parsed = parse_tfrecords(raws, "key")
    assert [p.features["x"] for p in parsed] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 3]
    _assert_parsed_as_alone(raws)


_feature_values = st.one_of(
    st.lists(st.floats(width=32, allow_nan=False), min_size=0, max_size=3),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=3),
    st.lists(st.binary(max_size=4) | st.text(max_size=4), min_size=1, max_size=3),
)


@given(
    st.lists(
        st.one_of(
            st.dictionaries(st.sampled_from(["key", "a", "b", "c"]), _feature_values, max_size=4).map(
                lambda features: encode_example({k: v[0] if len(v) == 1 else v for k, v in features.items()})
            ),
            st.binary(max_size=12),
        ),
        max_size=12,
    )
)
def test_any_batch_of_examples_and_garbage_parses_as_each_record_alone(raws):
    _assert_parsed_as_alone(raws)


def test_a_column_with_one_value_that_is_not_utf8_keeps_its_batch_mates_as_text():
    """A bytes column is checked for UTF-8 at once; one value that is not makes each be looked at on its own."""
    raws = [encode_example({"key": f"k{i}", "s": "é" if i != 3 else b"\xff\xfe"}) for i in range(6)]
    parsed = parse_tfrecords(raws, "key")
    assert [p.features["s"] for p in parsed] == ["é", "é", "é", b"\xff\xfe", "é", "é"]
    assert [p.key for p in parsed] == [f"k{i}" for i in range(6)]
    _assert_parsed_as_alone(raws)


def test_keys_that_are_not_utf8_keep_their_other_bytes_escaped_in_a_batch():
    raws = [encode_example({"key": b"k\xff" if i == 1 else f"k{i}".encode(), "x": 1.0}) for i in range(3)]
    assert [p.key for p in parse_tfrecords(raws, "key")] == ["k0", "k\\xff", "k2"]
    _assert_parsed_as_alone(raws)


def _jsonl_alone(raw: bytes, types: FeatureTypes) -> tuple | RecordError:
    try:
        return parse_jsonl(raw, "key", types)
    except RecordError as error:
        return error


def _same_example(model_input: bytes, features: dict) -> bool:
    """The serialized Example is the one encode_example makes of the features, value for value (float32 bits)."""
    return example_pb2.Example.FromString(model_input) == example_pb2.Example.FromString(encode_example(features))


def _assert_jsonl_parsed_as_alone(raws: list[bytes], types: FeatureTypes = MIXED) -> list[Parsed | RecordError]:
    parsed = parse_jsonl_batch(raws, "key", types)
    assert len(parsed) == len(raws)
    for raw, batched in zip(raws, parsed, strict=True):
        alone = _jsonl_alone(raw, types)
        if isinstance(alone, RecordError):
            assert isinstance(batched, RecordError), raw
            assert (str(batched), batched.key) == (str(alone), alone.key), raw
        else:
            assert (batched.key, batched.features) == alone[:2], raw
            assert repr(batched.features) == repr(alone[1]), "a float stays a float, an int an int, in the same order"
            # A line parsed with its batch-mates comes with its Example, encoded from the batch's columns: the
            # Example encode_example makes of its features (its features map perhaps in another order). One
            # parsed alone leaves that to the model's step.
            assert batched.model_input is None or _same_example(batched.model_input, alone[1]), raw
    return parsed


def test_a_json_bool_among_numbers_of_its_batch_is_that_records_dead_letter_never_a_one():
    """NumPy would make [1.5, true] the numbers [1.5, 1.0]: a line holding a JSON bool is parsed alone."""
    scalars = [b'{"key": "a", "x": 1.5}', b'{"key": "b", "x": true}', b'{"key": "c", "x": 2.5}']
    lists = [b'{"key": "a", "x": [1.5, false]}', b'{"key": "b", "x": [1.0, 2.0]}']
    for raws, bad in ((scalars, 1), (lists, 0)):
        parsed = _assert_jsonl_parsed_as_alone(raws)
        assert isinstance(parsed[bad], RecordError) and "should be a number" in str(parsed[bad]), raws[bad]
        assert all(isinstance(p, Parsed) for i, p in enumerate(parsed) if i != bad)


def test_a_batch_of_json_lines_is_parsed_a_feature_at_a_time_exactly_as_each_line_alone():
    good = [
        b'{"key": "k%d", "x": %d.5, "v": [0.1, -2, 1e-30], "count": 3, "name": "a", "grid": [[1, 2], [3, 4]]}'
        % (
            i,
            i,
        )
        for i in range(6)
    ]
    raws = [
        *good,
        b'{"key": "k", "x": ',  # not JSON
        b'{"key": "k", "x": "seven", "v": [1, 2, 3], "count": 3, "name": "a", "grid": [[1, 2], [3, 4]]}',
        b'{"key": "k", "x": null}',
        b'{"key": "k", "x": NaN}',  # json reads it, orjson does not: the record's own check names it
        b'{"key": "k", "x": 1e400}',
        b'{"key": "k", "x": 1e39}',  # past float32
        b'{"key": "k", "x": true}',
        b'{"key": "truth", "x": 1.0}',  # "true" in a key: parsed alone, and fine
        b"[1, 2, 3]",
        b'{"key": "k", "x": "\xe9"}',
        b'{"key": 123456789012345678901234567890, "x": 1.0}',  # a key past 64 bits stays exact text
        b'{"key": 1.5, "x": 1.0}',
        b'{"key": "k", "count": 123456789012345678901234567890}',
        b'{"key": "k", "count": 2.0}',
        b'{"key": "k", "name": 5}',
        b'{"key": "k", "x": []}',
        b'{"key": "only-a-key"}',
        b'{"key": "", "x": [1, 2, 3]}',
        b'{"key": "k", "x": [1, 2]}',
        b'{"key": "k", "grid": [[1, 2], [3]]}',
        b'{"key": "k", "x": {"nested": 1}}',
        b'{"x": 1, "key": 7}',
        b'{"key": "k", "x": "\\ud800"}',  # a lone surrogate: orjson refuses it, json reads it
    ]
    parsed = _assert_jsonl_parsed_as_alone(raws)
    assert [p.features["x"] for p in parsed[:6]] == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]
    assert all(_same_example(p.model_input, p.features) for p in parsed[:6])
    assert parsed[0].features == {
        "x": 0.5,
        "v": [0.1, -2.0, 1e-30],
        "count": 3,
        "name": "a",
        "grid": [[1.0, 2.0], [3.0, 4.0]],
    }
    assert str(parsed[9]) == "feature 'x' is not a finite number: nan"
    assert parsed[16].key == "123456789012345678901234567890"


def test_a_bad_line_in_a_large_batch_costs_only_itself():
    raws = [b'{"key": "k%d", "x": [%d, 2.5]}' % (i, i) for i in range(100)]
    raws[37] = b'{"key": "k37", "x": [37, "2.5"]}'
    parsed = _assert_jsonl_parsed_as_alone(raws, FLOATS)
    assert [i for i, p in enumerate(parsed) if isinstance(p, RecordError)] == [37]
    assert (str(parsed[37]), parsed[37].key) == ("feature 'x' should be a number (float feature), got \"2.5\"", "k37")
    assert parsed[38].features == {"x": [38.0, 2.5]}


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3),
    max_leaves=6,
)


@given(
    st.lists(
        st.dictionaries(st.sampled_from(["key", "x", "count", "name"]), _json_values, max_size=4).map(
            lambda fields: json.dumps(fields).encode()
        )
        | st.binary(max_size=12),
        max_size=12,
    )
)
def test_any_batch_of_json_lines_and_garbage_parses_as_each_line_alone(raws):
    _assert_jsonl_parsed_as_alone(raws)
