"""SavedModel signatures read from the model's own protobuf, to check a model before any pipeline runs.

A signature is one of three kinds, and the kind picks the engine: a predict signature taking one DT_STRING
input of serialized tf.train.Examples, or a classify or regress signature (which always take serialized
Examples), runs in tfx-bsl's handler; a predict signature taking named tensors (what Keras 3's `model.export`
writes) runs in our own (transforms/inference/named_tensors.py), each input built from a feature. A Vertex AI
endpoint has no SavedModel to read: its signature is a kind of its own, REMOTE, fed JSON instances.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from apache_beam.io.filesystems import FileSystems
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from transforms.config import ParameterError

SERVE_TAG = "serve"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
# A Vertex AI endpoint's "signature": its predict method, taking JSON instances (transforms/inference/instances.py).
VERTEX_PREDICT_METHOD = "google.cloud.aiplatform.v1.PredictionService.Predict"

# The kinds of signature the template serves.
EXAMPLES = "serialized Example"
CLASSIFY = "classify"
REGRESS = "regress"
NAMED_TENSORS = "named tensors"
REMOTE = "Vertex AI endpoint"

# The dtypes a named input can be built from a feature with: numbers from int and float features, text from
# bytes features. Each is checked per record to hold its value exactly (transforms/inference/named_tensors.py).
NAMED_INPUT_DTYPES = (
    "DT_FLOAT",
    "DT_DOUBLE",
    "DT_HALF",
    "DT_INT8",
    "DT_INT16",
    "DT_INT32",
    "DT_INT64",
    "DT_UINT8",
    "DT_UINT16",
    "DT_UINT32",
    "DT_UINT64",
    "DT_STRING",
)


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: its alias, dtype, shape (-1 for any) and graph tensor."""

    alias: str
    dtype: str
    shape: tuple[int, ...] | None
    tensor: str


@dataclass(frozen=True)
class Signature:
    """A serving signature of a SavedModel.

    `feeds_by_name` marks a single DT_STRING input that --input_features maps to a feature: a model taking
    one string tensor (a text model) and one taking serialized Examples look the same from their signature.
    """

    name: str
    method: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    feeds_by_name: bool = False

    @property
    def takes_serialized_examples(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0].dtype == "DT_STRING" and not self.feeds_by_name

    @property
    def kind(self) -> str:
        """EXAMPLES, CLASSIFY, REGRESS, NAMED_TENSORS or REMOTE: what the template builds for it and what runs it."""
        if self.method == CLASSIFY_METHOD:
            return CLASSIFY
        if self.method == REGRESS_METHOD:
            return REGRESS
        if self.method == VERTEX_PREDICT_METHOD:
            return REMOTE
        return EXAMPLES if self.takes_serialized_examples else NAMED_TENSORS

    @property
    def output_aliases(self) -> tuple[str, ...]:
        return tuple(output.alias for output in self.outputs)


# The output alias of an endpoint whose predictions are plain values, as Vertex AI batch prediction names them;
# an endpoint answering JSON objects (a model of several named outputs) has an alias per key.
PREDICTION = "prediction"


def endpoint_signature(resource: str) -> Signature:
    """A Vertex AI endpoint's signature: JSON instances in; its outputs are only known from its answers."""
    return Signature(resource, VERTEX_PREDICT_METHOD, (), ())


def _tensor_infos(infos) -> tuple[TensorInfo, ...]:
    result = []
    for alias in sorted(infos):
        info = infos[alias]
        shape = None if info.tensor_shape.unknown_rank else tuple(dim.size for dim in info.tensor_shape.dim)
        result.append(TensorInfo(alias, types_pb2.DataType.Name(info.dtype), shape, info.name))
    return tuple(result)


def read_saved_model(uri: str) -> saved_model_pb2.SavedModel:
    """The SavedModel protobuf of the model directory `uri` (a local path or gs://)."""
    path = FileSystems.join(uri, "saved_model.pb")
    try:
        with FileSystems.open(path) as f:
            data = f.read()
    except Exception as error:  # FileSystems raises BeamIOError, IOError or a client error by scheme.
        raise ParameterError(
            f"model {uri} has no readable saved_model.pb ({type(error).__name__}: {error}); "
            "expected a SavedModel directory"
        ) from None
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(data)
    except Exception as error:
        raise ParameterError(f"model {uri}: saved_model.pb is not a SavedModel protobuf ({error})") from None
    return saved_model


def signatures_by_tags(saved_model: saved_model_pb2.SavedModel) -> dict[tuple[str, ...], list[Signature]]:
    """Every signature of every MetaGraph, keyed by the MetaGraph's tag set."""
    result = {}
    for meta_graph in saved_model.meta_graphs:
        tags = tuple(sorted(meta_graph.meta_info_def.tags))
        result[tags] = [
            Signature(name, sig.method_name, _tensor_infos(sig.inputs), _tensor_infos(sig.outputs))
            for name, sig in sorted(meta_graph.signature_def.items())
        ]
    return result


def input_feature(alias: str, input_features: Mapping[str, str]) -> str:
    """The feature a named input is built from: its --input_features mapping, else the feature of its own name."""
    return input_features.get(alias, alias)


def _check_named_inputs(uri: str, signature: Signature) -> None:
    for info in signature.inputs:
        where = f"model {uri}: input {info.alias!r} of signature {signature.name!r}"
        if info.dtype not in NAMED_INPUT_DTYPES:
            raise ParameterError(
                f"{where} is {info.dtype}; named inputs the template can build are {', '.join(NAMED_INPUT_DTYPES)}"
            )
        if info.shape is None or not info.shape or info.shape[0] != -1:
            raise ParameterError(
                f"{where} has shape {_shown_shape(info.shape)}; expected a first (batch) dimension of any size"
            )
        if any(size < 1 for size in info.shape[1:]):
            raise ParameterError(
                f"{where} has shape {_shown_shape(info.shape)}; every dimension but the batch one must be fixed, "
                "as each record's value is checked against it and the batch stacked into one array"
            )


def _shown_shape(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return "of unknown rank"
    return "[" + ", ".join("None" if size < 0 else str(size) for size in shape) + "]"


def serving_signature(
    uri: str, signature_name: str, input_features: Mapping[str, str] = MappingProxyType({})
) -> Signature:
    """The signature RunInference will call, checked for its kind (see the module docstring).

    A single DT_STRING input is read as serialized Examples unless `input_features` maps it to a feature.
    """
    by_tags = signatures_by_tags(read_saved_model(uri))
    serving = [signatures for tags, signatures in by_tags.items() if SERVE_TAG in tags]
    if not serving:
        raise ParameterError(f"model {uri} has no MetaGraph tagged {SERVE_TAG!r}; tag sets found: {list(by_tags)}")
    signatures = {signature.name: signature for signature in serving[0]}
    if signature_name not in signatures:
        raise ParameterError(
            f"model {uri} has no signature {signature_name!r}; signatures found: {', '.join(signatures) or 'none'}"
        )
    return checked_signature(uri, signatures[signature_name], input_features)


def checked_signature(
    uri: str, signature: Signature, input_features: Mapping[str, str] = MappingProxyType({})
) -> Signature:
    """The signature if the template can serve it (its kind settled by `input_features`), else ParameterError."""
    signature_name = signature.name
    if signature.method not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
        raise ParameterError(
            f"model {uri}: signature {signature_name!r} has method {signature.method!r}; the template serves "
            f"{PREDICT_METHOD}, {CLASSIFY_METHOD} and {REGRESS_METHOD}"
        )
    if not signature.inputs:
        raise ParameterError(f"model {uri}: signature {signature_name!r} has no inputs")
    if len(signature.inputs) == 1 and signature.inputs[0].alias in input_features:
        signature = replace(signature, feeds_by_name=True)
    if signature.kind in (CLASSIFY, REGRESS) and not signature.takes_serialized_examples:
        found = ", ".join(f"{i.alias} ({i.dtype})" for i in signature.inputs)
        raise ParameterError(
            f"model {uri}: {signature.kind} signature {signature_name!r} takes {found}; a {signature.kind} "
            "signature takes one DT_STRING input of serialized tf.train.Examples"
        )
    if signature.kind == NAMED_TENSORS:
        _check_named_inputs(uri, signature)
    if not signature.outputs:
        raise ParameterError(f"model {uri}: signature {signature_name!r} has no outputs")
    unbatched = [output.alias for output in signature.outputs if output.shape == ()]
    if unbatched:
        raise ParameterError(
            f"model {uri}: signature {signature_name!r} output(s) {', '.join(unbatched)} are scalars, without the "
            "batch dimension RunInference needs to give each example its own value"
        )
    return signature
