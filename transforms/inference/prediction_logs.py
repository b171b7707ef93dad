"""PredictionLogs exactly as tfx-bsl's predict handler builds them, serialized a batch at a time.

tfx-bsl calls `tf.make_tensor_proto` once per example per output, and builds a PredictionLog message per example:
that was most of the predict pattern's time. Here every log of a batch has the same structure: the same model
spec, the same tensor names, dtypes and shapes, and (for fixed-width values) the same lengths. So each log's bytes
are assembled from parts serialized once per batch and each example's own bytes (its Example, its slice of each
output), in protobuf's canonical field order with map entries sorted by key, as `SerializeToString(deterministic
=True)` writes them. tests/test_prediction_logs.py checks the bytes against tfx-bsl's logs for every dtype and
shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow.python.framework import tensor_util
from tensorflow_serving.apis import model_pb2, prediction_log_pb2

_STRING = tf.string.as_datatype_enum
_FLOAT = tf.float32.as_datatype_enum
_DOUBLE = tf.float64.as_datatype_enum

# Protobuf tags (field number << 3 | 2, length-delimited) of the fields framed here.
_FIRST, _SECOND = 0x0A, 0x12  # map entry key and value; PredictRequest model_spec and inputs; PredictLog parts
_TENSOR_CONTENT, _FLOAT_VAL, _DOUBLE_VAL, _STRING_VAL = 0x22, 0x2A, 0x32, 0x42  # TensorProto fields 4, 5, 6, 8
_PREDICT_LOG = 0x32  # PredictionLog.predict_log, field 6

_SMALL_VARINTS = [bytes((n,)) for n in range(0x80)]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: its tag, its length, its bytes."""
    return _SMALL_VARINTS[tag] + _varint(len(payload)) + payload


def _check_batch_dimension(tensors: Mapping[str, np.ndarray], batch_size: int) -> None:
    """tfx-bsl's own check, with its message: every output has at least one dimension, the first the batch's."""
    for alias, values in tensors.items():
        if values.ndim < 1 or values.shape[0] != batch_size:
            raise ValueError(
                f"Expected output tensor {alias} to have at least one dimension, with the first having a size "
                f"equal to the input batch size {batch_size}. Instead found {values.shape}"
            )


def _tensor_entries(alias: str, values: np.ndarray, batch_size: int) -> list[bytes]:
    """Each example's map entry `alias -> TensorProto` (its slice, shape [1, ...]), serialized, as
    `tf.make_tensor_proto` fills a tensor: raw `tensor_content` for several values of a numeric dtype, else the
    dtype's typed values field."""
    dtype = tf.as_dtype(values.dtype)
    per_example = int(np.prod(values.shape[1:], dtype=np.int64))
    rows = values.reshape(batch_size, per_example)
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in (1, *values.shape[1:])]
    )
    head = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum, tensor_shape=shape)
    key = _field(_FIRST, alias.encode("utf-8"))
    if dtype in tensor_util._TENSOR_CONTENT_TYPES and per_example > 1:
        tag, data = _TENSOR_CONTENT, np.ascontiguousarray(rows)
    elif dtype.as_datatype_enum == _FLOAT and per_example == 1:
        # make_tensor_proto appends Python floats to float_val: a float32 NaN goes through a double and back.
        tag, data = _FLOAT_VAL, rows.astype(np.float64).astype("<f4")
    elif dtype.as_datatype_enum == _DOUBLE and per_example == 1:
        tag, data = _DOUBLE_VAL, rows.astype("<f8")
    else:  # other dtypes (varint-encoded, text, empty) are filled by TensorFlow's own append functions
        append = tensor_util.GetNumpyAppendFn(values.dtype)
        entries = []
        for row in rows:
            tensor = tensor_pb2.TensorProto()
            tensor.CopyFrom(head)
            append(tensor, row)
            entries.append(key + _field(_SECOND, tensor.SerializeToString()))
        return entries
    width = data.itemsize * per_example
    value_head = _SMALL_VARINTS[tag] + _varint(width)
    head_bytes = head.SerializeToString()
    tensor_size = len(head_bytes) + len(value_head) + width
    prefix = key + _SMALL_VARINTS[_SECOND] + _varint(tensor_size) + head_bytes + value_head
    raw = data.tobytes()
    return [prefix + raw[i * width : (i + 1) * width] for i in range(batch_size)]


def _model_spec(signature_name: str, version: str | None, model_name: str | None = None) -> bytes:
    """A ModelSpec: the version a number when it is one (int64), else its label (a Vertex AI deployed model's id
    always is a number: the label is only for an id no int64 holds)."""
    spec = model_pb2.ModelSpec(name=model_name or "", signature_name=signature_name)
    if version is not None:
        if version.isdigit() and int(version) < 2**63:
            spec.version.value = int(version)
        else:
            spec.version_label = version
    return spec.SerializeToString()


def _records(parts: list[list[bytes]], batch_size: int) -> list[bytes]:
    """Each record's bytes of every part, in the parts' order (a part: one serialized piece per record)."""
    if len(parts) == 1:
        return parts[0]
    return [b"".join(pieces) for pieces in zip(*parts, strict=True)] if parts else [b""] * batch_size


def _logs(
    request_parts: list[list[bytes]],
    outputs: Mapping[str, np.ndarray],
    signature_name: str,
    version,
    model_name: str | None = None,
) -> list:
    """The serialized PredictionLogs of a batch, from each example's request inputs (map entries, sorted by key)."""
    batch_size = len(request_parts[0]) if request_parts else len(next(iter(outputs.values())))
    _check_batch_dimension(outputs, batch_size)
    request_spec = _field(_FIRST, _model_spec(signature_name, None, model_name))
    response_spec = _field(_SECOND, _model_spec(signature_name, version, model_name))
    responses = [
        [_field(_FIRST, entry) for entry in _tensor_entries(alias, outputs[alias], batch_size)]
        for alias in sorted(outputs)
    ]
    # Per record only the lengths that vary are written: concatenations, no call but the varints.
    varint, second = _varint, _SMALL_VARINTS[_SECOND]
    framed = [[second + varint(len(entry)) + entry for entry in entries] for entries in request_parts]
    first, predict_log = _SMALL_VARINTS[_FIRST], _SMALL_VARINTS[_PREDICT_LOG]
    logs = []
    for request, response in zip(_records(framed, batch_size), _records(responses, batch_size), strict=True):
        request = request_spec + request
        response += response_spec
        body = first + varint(len(request)) + request + second + varint(len(response)) + response
        logs.append(predict_log + varint(len(body)) + body)
    return logs


def serialized_prediction_logs(
    serialized_examples: Sequence[bytes],
    outputs: Mapping[str, np.ndarray],
    input_tensor_alias: str,
    signature_name: str,
    version: str | None = None,
) -> list[bytes]:
    """One serialized PredictionLog per example: its request (the serialized Example) and its slice of every output.

    `version`, the numbered model version that answered, goes in the response's model_spec.version, as TF
    Serving reports it; a model given as a plain SavedModel directory leaves it unset.
    """
    tensor_head = tensor_pb2.TensorProto(
        dtype=_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]),
    ).SerializeToString()
    key = _field(_FIRST, input_tensor_alias.encode("utf-8"))
    inputs = [key + _field(_SECOND, tensor_head + _field(_STRING_VAL, example)) for example in serialized_examples]
    if not inputs:
        return []
    return _logs([inputs], outputs, signature_name, version)


def serialized_tensor_prediction_logs(
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    signature_name: str,
    version: str | None = None,
    model_name: str | None = None,
) -> list[bytes]:
    """One serialized PredictionLog per record of a named-tensor model: its inputs in the request, as TF Serving
    logs them. `version` goes in the response's model_spec.version, as in `serialized_prediction_logs`;
    `model_name`, when given, in both model_specs' name (a remote model's endpoint).
    """
    batch_size = len(next(iter(inputs.values()))) if inputs else len(next(iter(outputs.values())))
    request_parts = [_tensor_entries(alias, inputs[alias], batch_size) for alias in sorted(inputs)]
    return _logs(request_parts, outputs, signature_name, version, model_name)


def with_version(
    logs: list[prediction_log_pb2.PredictionLog], version: str | None
) -> list[prediction_log_pb2.PredictionLog]:
    """tfx-bsl's classify_log or regress_log PredictionLogs, their responses naming the model version that answered."""
    if version is not None:
        for log in logs:
            getattr(log, log.WhichOneof("log_type")).response.model_spec.version.value = int(version)
    return logs


def with_model_name(logs: Sequence[bytes], log_type: str, model_name: str) -> tuple[bytes, ...]:
    """Serialized PredictionLogs naming their model in the request's and the response's model_spec.name.

    Protobuf merges a message field that comes twice, so one serialized PredictionLog holding only the names,
    appended to each log, sets them in every log without parsing or serializing one again.
    """
    names = prediction_log_pb2.PredictionLog()
    part = getattr(names, log_type)
    part.request.model_spec.name = model_name
    part.response.model_spec.name = model_name
    tail = names.SerializeToString()
    return tuple(log + tail for log in logs)
