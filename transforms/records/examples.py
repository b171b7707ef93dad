"""Features to serialized tf.train.Example and back: the model's input format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tensorflow.core.example import example_pb2, feature_pb2


def _feature(value: Any) -> feature_pb2.Feature:
    values = value if isinstance(value, list) else [value]
    if not values:
        return feature_pb2.Feature()
    first = values[0]
    if isinstance(first, float):
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=values))
    if isinstance(first, int):
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=values))
    return feature_pb2.Feature(
        bytes_list=feature_pb2.BytesList(value=[v.encode("utf-8") if isinstance(v, str) else v for v in values])
    )


def encode_example(features: Mapping[str, Any]) -> bytes:
    """A serialized tf.train.Example; floats become float_list, ints int64_list, strings and bytes bytes_list."""
    example = example_pb2.Example()
    for name, value in features.items():
        example.features.feature[name].CopyFrom(_feature(value))
    return example.SerializeToString()


def _values(feature: feature_pb2.Feature) -> list:
    kind = feature.WhichOneof("kind")
    if kind is None:
        return []
    values = list(getattr(feature, kind).value)
    if kind == "bytes_list":
        return [text_if_utf8(v) for v in values]
    return values


def text_if_utf8(value: bytes) -> str | bytes:
    """A bytes feature value as text when it is UTF-8 (the rows' JSON shows it as written), else as bytes."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def decode_example(data: bytes) -> dict[str, Any]:
    """The features of a serialized tf.train.Example: one value as a scalar, several as a list."""
    return example_features(example_pb2.Example.FromString(data))


def example_features(example: example_pb2.Example) -> dict[str, Any]:
    """The features of a tf.train.Example: one value as a scalar, several as a list."""
    features = {}
    for name, feature in example.features.feature.items():
        values = _values(feature)
        features[name] = values[0] if len(values) == 1 else values
    return features
