"""Input records: one CSV record, one JSON line, or one serialized tf.train.Example, parsed into typed features."""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow.core.example import example_pb2

from transforms.config import FeatureTypes
from transforms.records.batch_features import BatchFeatures
from transforms.records.examples import (
    DECODER,
    ENCODER,
    encode_columns,
    example_column,
    example_features,
    text_if_utf8,
)

Value = float | int | str | bytes
_FLOAT32_MAX = 3.4028234663852886e38
# A list may nest (a JSON [[1, 2, 3], [4, 5, 6]]): a model input of more than one dimension, kept as given for
# the model's shape to check (transforms/inference/named_tensors.py) and flattened into an Example.
FeatureValue = Value | list


class Record(NamedTuple):
    """A parsed input record: a unique id, its key, its typed features, and the record as read.

    `model_input` is the serialized Example to feed the model when the record already was one.
    """

    id: str
    key: str | None
    features: Mapping[str, FeatureValue]
    raw: bytes
    source: str
    model_input: bytes | None = None


class Parsed(NamedTuple):
    """What parsing a record yields: its key, its features, and a ready model input when there is one."""

    key: str | None
    features: Mapping[str, FeatureValue]
    model_input: bytes | None = None


class RecordError(ValueError):
    """The record cannot be turned into model input; the message says what is wrong with it.

    `key` is the record's key when it was read before the error, so that its dead letter carries it.
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def _keyed_features(
    key: str | None, fields: dict[str, Any], types: FeatureTypes, from_text: bool
) -> tuple[str | None, dict[str, FeatureValue]]:
    try:
        return key, typed_features(fields, types, from_text)
    except RecordError as error:
        raise RecordError(str(error), key) from None


def _shown(value: Any) -> str:
    """A value as an error message quotes it: JSON where it can be, and never more than 80 characters."""
    return json.dumps(value, default=repr, ensure_ascii=False)[:80]


def _typed(name: str, value: Any, kind: str, from_text: bool) -> Value:
    if value is None:
        raise RecordError(f"feature {name!r} is null")
    if from_text and value == "":
        raise RecordError(f"feature {name!r} is empty")
    if kind == "bytes":
        if isinstance(value, str) or (isinstance(value, bytes) and not from_text):
            return value
        raise RecordError(f"feature {name!r} should be a string (bytes feature), got {type(value).__name__}")
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, str, Decimal))
        or (isinstance(value, str) and not from_text)
    ):
        raise RecordError(f"feature {name!r} should be a number ({kind} feature), got {_shown(value)}")
    try:
        number = int(value) if kind == "int" else float(value)
    except (ValueError, OverflowError):
        raise RecordError(f"feature {name!r} should be a number ({kind} feature), got {str(value)[:80]!r}") from None
    if kind == "int" and number != float(value):
        raise RecordError(f"feature {name!r} should be a whole number (int feature), got {value}")
    if kind == "int" and not -(2**63) <= number < 2**63:
        raise RecordError(f"feature {name!r} does not fit a 64-bit int feature: {value}")
    if kind == "float" and not math.isfinite(number):
        raise RecordError(f"feature {name!r} is not a finite number: {value}")
    if kind == "float" and abs(number) > _FLOAT32_MAX:
        raise RecordError(f"feature {name!r} overflows a 32-bit float feature: {value}")
    return number


def _typed_list(name: str, values: list, kind: str, from_text: bool) -> list:
    if not values:
        raise RecordError(f"feature {name!r} is an empty list")
    return [
        _typed_list(name, item, kind, from_text) if isinstance(item, list) else _typed(name, item, kind, from_text)
        for item in values
    ]


def typed_features(fields: dict[str, Any], types: FeatureTypes, from_text: bool) -> dict[str, FeatureValue]:
    """Each field converted to its feature type; lists stay lists (multi-valued features), nested ones nested."""
    features = {}
    for name, value in fields.items():
        kind = types.of(name)
        if isinstance(value, list):
            features[name] = _typed_list(name, value, kind, from_text)
        else:
            features[name] = _typed(name, value, kind, from_text)
    if not features:
        raise RecordError("record has no features")
    return features


def _key_text(key: Any, key_field: str) -> str | None:
    if key is None or key == "":
        return None
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise RecordError(f"key field {key_field!r} should be a string or an integer, got {_shown(key)}")
    return str(key)


def _decode_utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(f"line is not valid UTF-8 ({error.reason} at byte {error.start})") from None


def parse_jsonl(raw: bytes, key_field: str, types: FeatureTypes) -> tuple[str | None, dict[str, FeatureValue]]:
    """A JSON object line: the key field apart, every other field a feature."""
    try:
        fields = json.loads(_decode_utf8(raw))
    except json.JSONDecodeError as error:
        raise RecordError(f"line is not valid JSON: {error}") from None
    if not isinstance(fields, dict):
        raise RecordError(f"line is JSON but not an object: {type(fields).__name__}")
    key, features, _ = parse_fields(fields, key_field, types)
    return key, features


def parse_fields(fields: dict[str, Any], key_field: str, types: FeatureTypes) -> Parsed:
    """Named values (a JSON object or a BigQuery row): the key field apart, every other field a feature."""
    fields = dict(fields)
    return Parsed(*_keyed_features(_key_text(fields.pop(key_field, None), key_field), fields, types, from_text=False))


def csv_fields(raw: bytes) -> list[str]:
    """The fields of one CSV record, by RFC 4180: quoted fields may hold delimiters, quotes and line breaks.

    Lines split on LF only, so a lone CR outside quotes is an error rather than a second record.
    """
    try:
        rows = list(csv.reader(io.StringIO(_decode_utf8(raw), newline="\n"), strict=True))
    except csv.Error as error:
        raise RecordError(f"record is not valid CSV: {error}") from None
    if len(rows) > 1:
        raise RecordError(f"record holds {len(rows)} CSV rows; expected one")
    return rows[0] if rows else []


def parse_csv(
    raw: bytes, header: Sequence[str], key_field: str, types: FeatureTypes
) -> tuple[str | None, dict[str, FeatureValue]]:
    """A CSV record read against the file's header row."""
    values = csv_fields(raw)
    if len(values) != len(header):
        raise RecordError(f"record has {len(values)} columns, the header has {len(header)}")
    fields = dict(zip(header, values, strict=True))
    return _keyed_features(_key_text(fields.pop(key_field, None), key_field), fields, types, from_text=True)


def parse_tfrecord(raw: bytes, key_field: str) -> Parsed:
    """A serialized tf.train.Example; the key, when present, is its `key_field` feature.

    The Example goes to the model as it came, re-serialized only when its key must be taken out.
    """
    try:
        example = example_pb2.Example.FromString(raw)
    except Exception as error:
        raise RecordError(f"record is not a serialized tf.train.Example: {error}") from None
    features = example_features(example)
    model_input = raw
    if key_field in example.features.feature:
        del example.features.feature[key_field]
        model_input = example.SerializeToString()
    key = features.pop(key_field, None)
    if isinstance(key, list):
        raise RecordError(f"key feature {key_field!r} has {len(key)} values; expected one")
    if isinstance(key, bytes):
        key = key.decode("utf-8", errors="backslashreplace")
    if not features:
        raise RecordError("record has no features")
    return Parsed(_key_text(key, key_field), features, model_input)


def _decoded_batch(raws: Sequence[bytes]) -> pa.RecordBatch | None:
    try:
        return DECODER.DecodeBatch(list(raws))
    except RuntimeError:  # a record that is not an Example, or a feature whose kind differs between records
        return None


def _feature_value(values: list) -> FeatureValue:
    if values and isinstance(values[0], bytes):
        values = [text_if_utf8(v) for v in values]
    return values[0] if len(values) == 1 else values


def _texts_if_utf8(values: pa.Array) -> list:
    """Bytes values as text when they are UTF-8, as text_if_utf8 gives them: checked at once for the column."""
    try:
        return values.cast(pa.large_string()).to_pylist()
    except pa.ArrowInvalid:  # some value is not UTF-8: each is looked at on its own
        return [text_if_utf8(v) for v in values.to_pylist()]


def _shape(column: pa.Array) -> tuple[int | None, pa.Array]:
    """The number of values every record of a feature column has (None when they differ), and its values flat."""
    lengths = pc.list_value_length(column)
    shortest, longest = pc.min(lengths).as_py(), pc.max(lengths).as_py()
    return (shortest if shortest == longest else None), column.flatten()


def _numbers(length: int | None, flat: pa.Array, records: int) -> np.ndarray | None:
    """A numeric column of `length` values a record as an array, a row per record (flat for one value each); None
    for text, an empty or a ragged column."""
    if not length or pa.types.is_large_binary(flat.type):
        return None
    return flat.to_numpy() if length == 1 else flat.to_numpy().reshape(records, length)


def _converted(column: pa.Array, for_rows: bool) -> list:
    length, flat = _shape(column)
    numbers = _numbers(length, flat, len(column))
    if numbers is not None:
        return list(numbers) if for_rows else numbers.tolist()
    if length == 1:
        return _texts_if_utf8(flat)
    return [_feature_value(values) for values in column.to_pylist()]


def _column_values(column: pa.Array) -> list[FeatureValue]:
    """Each record's value of one feature column: a scalar where it has one value, else a list.

    A numeric column of one length (the usual case: one value, or a vector) is converted at once by NumPy, twice
    as fast as Arrow; a text column of one value each is checked for UTF-8 at once; only a ragged one pays a
    list per record.
    """
    return _converted(column, for_rows=False)


def _column_row_values(column: pa.Array) -> list:
    """Each record's value of one feature column as its row echoes it: numbers as NumPy values of the Example's
    own dtype (a float32 written in its shortest text, as outputs are), anything else as `_column_values` has it."""
    return _converted(column, for_rows=True)


def _parsed_columns(batch: pa.RecordBatch, raws: Sequence[bytes], key_field: str) -> list[Parsed | RecordError | None]:
    """Each record of a decoded batch as parse_tfrecord would parse it, or None where only it can say.

    That is a record lacking one of the batch's features, or whose key is not a single value: its
    features differ from its batch-mates', and parse_tfrecord settles it (or names what is wrong). The
    rest are converted a column at a time.
    """
    names = [name for name in batch.schema.names if name != key_field]
    columns = [batch.column(name) for name in names]
    if not names or any(pa.types.is_null(column.type) for column in batch.columns):
        return [None] * len(raws)
    incomplete = functools.reduce(pc.or_, [column.is_null() for column in columns])
    model_inputs: Sequence[bytes] = raws
    if key_field in batch.schema.names:
        key_column = batch.column(key_field)
        one_key = pc.equal(pc.fill_null(pc.list_value_length(key_column), 0), 1)
        incomplete = pc.or_(incomplete, pc.invert(one_key))
    if incomplete.true_count:  # the complete records alone are converted a column at a time
        complete = pc.invert(incomplete)
        parsed: list[Parsed | RecordError | None] = [None] * len(raws)
        indexes = [i for i, ok in enumerate(complete.to_pylist()) if ok]
        if indexes:
            subset = _parsed_columns(batch.filter(complete), [raws[i] for i in indexes], key_field)
            for i, result in zip(indexes, subset, strict=True):
                parsed[i] = result
        return parsed
    keys: list = [None] * len(raws)
    if key_field in batch.schema.names:
        keys = _keys(batch.column(key_field).flatten(), key_field)
        model_inputs = ENCODER.encode(batch.drop_columns([key_field]))
    features = BatchFeatures(names, columns, _column_values, _column_row_values).records(len(raws))
    return [
        key if isinstance(key, RecordError) else Parsed(key, record_features, model_input)
        for key, record_features, model_input in zip(keys, features, model_inputs, strict=True)
    ]


def _keys(values: pa.Array, key_field: str) -> list[str | RecordError | None]:
    """One key per record, as parse_tfrecord reads it: text (bytes decoded), a whole number as text, or the error."""
    if pa.types.is_large_binary(values.type):
        try:
            texts = values.cast(pa.large_string()).to_pylist()
        except pa.ArrowInvalid:  # a key that is not UTF-8 keeps its other bytes escaped
            texts = [v.decode("utf-8", errors="backslashreplace") for v in values.to_pylist()]
        return [text or None for text in texts]
    keys: list[str | RecordError | None] = []
    for value in values.to_pylist():
        try:
            keys.append(_key_text(value, key_field))
        except RecordError as error:
            keys.append(error)
    return keys


def parse_tfrecords(raws: Sequence[bytes], key_field: str) -> list[Parsed | RecordError]:
    """A batch of serialized Examples parsed at once, each as parse_tfrecord parses it, or the error it raises.

    tfx-bsl decodes the whole batch into columns in C++ and takes the key out of every model input at once.
    A batch that does not decode (a record that is not an Example, a feature of another kind than in the
    rest of the batch) is halved until each bad record stands alone; a record unlike its batch-mates (a
    feature missing, a key that is not one value) is parsed on its own.
    """
    batch = _decoded_batch(raws)
    if batch is None:
        if len(raws) == 1:
            return [_parsed_alone(raws[0], key_field)]
        middle = len(raws) // 2
        return parse_tfrecords(raws[:middle], key_field) + parse_tfrecords(raws[middle:], key_field)
    columns = _parsed_columns(batch, raws, key_field)
    return [
        _parsed_alone(raw, key_field) if parsed is None else parsed for parsed, raw in zip(columns, raws, strict=True)
    ]


def _parsed_alone(raw: bytes, key_field: str) -> Parsed | RecordError:
    try:
        return parse_tfrecord(raw, key_field)
    except RecordError as error:
        return error


def _json_object(raw: bytes) -> dict | None:
    """The line's object as orjson reads it, or None where only parse_jsonl can say what it is.

    orjson refuses what the json module reads and the record's checks then name (NaN, 1e400, lone surrogates), and
    reads a whole number past 64 bits as a float, and `true` as a bool NumPy would make a number: such lines are
    left to parse_jsonl, whose messages the dead letters keep.
    """
    # A one-byte search first: a line without a `t` (or `f`) is passed over at memchr speed, 15 times faster than
    # looking for the words in every line of 256 floats.
    if (b"t" in raw and b"true" in raw) or (b"f" in raw and b"false" in raw):
        return None
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return fields if isinstance(fields, dict) else None


def _typed_column(name: str, values: list, kind: str) -> np.ndarray | list[str]:
    """One feature of records that all have it, typed as `typed_features` types it; ValueError where it cannot say.

    A number column is one NumPy conversion (an array, its first axis the records): a float feature's values must
    be finite float32 magnitudes, an int feature's JSON integers; a bytes feature's must be strings (a list of
    them). Anything else (a string in a number column, lists of differing lengths, an empty list) is left to
    each record's own parse.
    """
    if kind == "bytes":
        if all(type(value) is str for value in values):
            return values
        raise ValueError(f"feature {name!r} is not one string per record")
    array = np.array(values)  # ValueError for ragged lists
    if array.dtype.kind not in ("i" if kind == "int" else "iuf") or 0 in array.shape:
        raise ValueError(f"feature {name!r} is not {kind} numbers of one shape")
    if kind == "float":
        array = array.astype(np.float64)
        if not (np.abs(array) <= _FLOAT32_MAX).all():
            raise ValueError(f"feature {name!r} has a value past float32")
    return array


def _parsed_objects(objects: list[dict], key_field: str, types: FeatureTypes) -> list[Parsed]:
    """Records of one field list, typed a feature at a time; ValueError when some record must be parsed alone.

    Their model inputs are encoded from the same columns, as a TFRecord batch's are (tfx-bsl, in C++): the
    Examples `encode_example` would build from each record's features, without a Python step per value.
    """
    names = [name for name in objects[0] if name != key_field]
    if not names:
        raise ValueError("records without features")
    keys = []
    for fields in objects:
        key = fields.get(key_field)
        if not (key is None or type(key) is str or type(key) is int):
            raise ValueError("a key parse_jsonl must name")
        keys.append(None if key is None or key == "" else str(key))
    columns = [_typed_column(name, [fields[name] for fields in objects], types.of(name)) for name in names]
    model_inputs = encode_columns({name: example_column(column) for name, column in zip(names, columns, strict=True)})
    features = BatchFeatures(names, columns, _python_values, _row_values).records(len(objects))
    return [
        Parsed(key, record_features, model_input)
        for key, record_features, model_input in zip(keys, features, model_inputs, strict=True)
    ]


def _python_values(column: np.ndarray | list[str]) -> list:
    return column.tolist() if isinstance(column, np.ndarray) else column


def _row_values(column: np.ndarray | list[str]) -> list:
    """Each record's value as its row echoes it: a number column's NumPy rows, written as the numbers read."""
    return list(column) if isinstance(column, np.ndarray) else column


def _parsed_or_halved(
    raws: Sequence[bytes], objects: list[dict], key_field: str, types: FeatureTypes
) -> list[Parsed | RecordError]:
    try:
        return _parsed_objects(objects, key_field, types)
    except ValueError:
        if len(raws) == 1:
            return [_jsonl_alone(raws[0], key_field, types)]
    middle = len(raws) // 2
    return _parsed_or_halved(raws[:middle], objects[:middle], key_field, types) + _parsed_or_halved(
        raws[middle:], objects[middle:], key_field, types
    )


def _jsonl_alone(raw: bytes, key_field: str, types: FeatureTypes) -> Parsed | RecordError:
    try:
        return Parsed(*parse_jsonl(raw, key_field, types))
    except RecordError as error:
        return error


def parse_jsonl_batch(raws: Sequence[bytes], key_field: str, types: FeatureTypes) -> list[Parsed | RecordError]:
    """A batch of JSON Lines parsed at once, each as parse_jsonl parses it, or the error it raises.

    orjson reads each line (in C), and records with the same fields are typed a feature at a time, a column
    per NumPy conversion, instead of a Python check per value: 256 floats a record were 80% of a heavy model's
    JSON pipeline. A group that does not convert (a bad value, lists of differing lengths) is halved until each
    record that needs it is parsed alone by parse_jsonl, whose messages its dead letter keeps.
    """
    results: list[Parsed | RecordError | None] = [None] * len(raws)
    groups: dict[tuple[str, ...], list[int]] = {}
    objects: list[dict | None] = [_json_object(raw) for raw in raws]
    for position, fields in enumerate(objects):
        if fields is None:
            results[position] = _jsonl_alone(raws[position], key_field, types)
        else:
            groups.setdefault(tuple(fields), []).append(position)
    for positions in groups.values():
        parsed = _parsed_or_halved([raws[i] for i in positions], [objects[i] for i in positions], key_field, types)
        for position, result in zip(positions, parsed, strict=True):
            results[position] = result
    return results


def parse_record(kind: str, raw: bytes, key_field: str, types: FeatureTypes, header: Sequence[str] = ()) -> Parsed:
    """One record of `kind` (csv, jsonl or tfrecord): its key, typed features and any ready model input."""
    if kind == "csv":
        return Parsed(*parse_csv(raw, header, key_field, types))
    if kind == "jsonl":
        return Parsed(*parse_jsonl(raw, key_field, types))
    return parse_tfrecord(raw, key_field)
