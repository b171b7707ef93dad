"""Features to serialized tf.train.Example and back: the model's input format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from tensorflow.core.example import example_pb2, feature_pb2
from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder, RecordBatchToExamplesEncoder

# tfx-bsl's coders, stateless and schema-free: each batch's own features settle its columns.
DECODER = ExamplesToRecordBatchDecoder()
ENCODER = RecordBatchToExamplesEncoder()


def flat_values(values: list) -> list:
    """A nested list's values in row-major order, as an Example's flat list holds an input of several dimensions."""
    if not any(isinstance(value, list) for value in values):
        return values
    return [item for value in values for item in (flat_values(value) if isinstance(value, list) else [value])]


def _feature(value: Any) -> feature_pb2.Feature:
    values = flat_values(value) if isinstance(value, list) else [value]
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


def example_column(values: np.ndarray | Sequence[str]) -> pa.LargeListArray:
    """One feature of a batch of Examples as tfx-bsl's encoder takes it: each record's list of values.

    From an array whose first axis is the records (the rest flattened, row-major, as `flat_values` flattens):
    floats become a float_list (cast to float32, as the Example stores them), integers an int64_list; from one
    text per record, a bytes_list of its UTF-8. Raises ValueError for other dtypes and for empty lists.
    """
    if not isinstance(values, np.ndarray):
        return pa.LargeListArray.from_arrays(
            np.arange(len(values) + 1, dtype=np.int64), pa.array(values, pa.large_binary())
        )
    rows = values.reshape(len(values), -1)
    if rows.dtype.kind == "f":
        flat = pa.array(rows.ravel().astype(np.float32, copy=False), pa.float32())
    elif rows.dtype.kind in "iu" and rows.dtype.itemsize <= 8 and rows.dtype != np.uint64:
        flat = pa.array(rows.ravel().astype(np.int64, copy=False), pa.int64())
    else:
        raise ValueError(f"a {rows.dtype} column is set record by record")
    if not rows.shape[1]:
        raise ValueError("records without values are set record by record")
    return pa.LargeListArray.from_arrays(np.arange(0, rows.size + 1, rows.shape[1], dtype=np.int64), flat)


def encode_columns(columns: Mapping[str, pa.Array]) -> list[bytes]:
    """Serialized Examples of a batch from its feature columns (`example_column`s), encoded by tfx-bsl in C++."""
    return ENCODER.encode(pa.RecordBatch.from_arrays(list(columns.values()), list(columns)))


def with_feature(examples: Sequence[bytes], name: str, rows: np.ndarray) -> list[bytes]:
    """Each serialized Example with feature `name` set to its row of `rows` (2-D: a row per Example).

    The batch is decoded into columns by tfx-bsl (in C++), the column set or added, and encoded again: no
    features dict per record. float32 rows become a float_list, integer rows an int64_list, as `encode_example`
    writes them. Raises ValueError for other dtypes, and for Examples whose features differ in kind from one
    record to the next (tfx-bsl's decoder refuses those); `encode_example` then builds each on its own.
    """
    if rows.dtype.kind == "f" and rows.dtype != np.float32:
        raise ValueError(f"a {rows.dtype} column is set record by record")
    column = example_column(rows)
    try:
        batch = DECODER.DecodeBatch(list(examples))
    except RuntimeError as error:
        raise ValueError(f"the batch's Examples do not decode together: {error}") from None
    index = batch.schema.get_field_index(name)
    batch = batch.set_column(index, name, column) if index >= 0 else batch.append_column(name, column)
    return ENCODER.encode(batch)


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
