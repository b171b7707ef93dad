"""Features to tf.train.Example and back, kinds included: an int stays an int64 feature, a float a float one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from tensorflow.core.example import example_pb2

from transforms.records.examples import decode_example, encode_example

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
