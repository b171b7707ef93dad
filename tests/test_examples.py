"""Features to tf.train.Example and back, kinds included: an int stays an int64 feature, a float a float one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tensorflow.core.example import example_pb2

from transforms.records.examples import decode_example, encode_example, with_feature

float32s = st.floats(width=32, allow_nan=False, allow_infinity=False)
values = st.one_of(
    float32s,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(min_size=1, max_size=20),
    st.binary(min_size=1, max_size=20).filter(lambda b: not is_utf8(b)),
    st.lists(float32s, min_size=2, max_size=5),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=2, max_size=5),
    st.lists(st.text(min_size=1, max_size=5), min_size=2, max_size=5),
)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def kinds(value):
    """The value with the type of each item beside it: 3 == 3.0, but (int, 3) != (float, 3.0)."""
    if isinstance(value, list):
        return [kinds(item) for item in value]
    return type(value).__name__, value


@given(st.dictionaries(names, values, min_size=1, max_size=6))
def test_features_round_trip_through_examples_kinds_included(features):
    decoded = decode_example(encode_example(features))
    assert {name: kinds(v) for name, v in decoded.items()} == {name: kinds(v) for name, v in features.items()}


def test_each_python_kind_becomes_its_example_feature_kind():
    example = example_pb2.Example.FromString(
        encode_example({"x": 3.0, "count": 3, "name": "three", "raw": b"\xff\x03", "ids": [1, 2], "v": [1.5, 2.0]})
    )
    kind_of = {name: feature.WhichOneof("kind") for name, feature in example.features.feature.items()}
    assert kind_of == {
        "x": "float_list",
        "count": "int64_list",
        "name": "bytes_list",
        "raw": "bytes_list",
        "ids": "int64_list",
        "v": "float_list",
    }
    assert example.features.feature["raw"].bytes_list.value == [b"\xff\x03"]


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
@pytest.mark.parametrize("name", ["x", "chained"])
def test_a_column_set_in_a_batch_of_examples_is_the_feature_each_would_get_alone(dtype, name):
    rows = (np.arange(15).reshape(5, 3) * 1.5 - 4).astype(dtype)
    features = [{"x": float(i), "s": "abc" * (i + 1), "ids": [i, i + 1]} for i in range(5)]
    examples = with_feature([encode_example(f) for f in features], name, rows)
    for example, alone, row in zip(examples, features, rows, strict=True):
        assert decode_example(example) == decode_example(encode_example({**alone, name: row.tolist()}))


def test_a_column_tfx_bsl_cannot_set_is_refused_so_each_record_is_built_alone():
    examples = [encode_example({"x": 1.0}), encode_example({"x": 2})]  # x a float, then an int
    with pytest.raises(ValueError, match="do not decode together"):
        with_feature(examples, "y", np.ones((2, 1), np.float32))
    with pytest.raises(ValueError, match="float64"):
        with_feature(examples[:1], "y", np.ones((1, 1)))
