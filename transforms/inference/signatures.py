"""SavedModel signatures read from the model's own protobuf, to check a model before any pipeline runs."""

from __future__ import annotations

from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from transforms.config import ParameterError

SERVE_TAG = "serve"


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: its alias, dtype, shape (-1 for any) and graph tensor."""

    alias: str
    dtype: str
    shape: tuple[int, ...] | None
    tensor: str


@dataclass(frozen=True)
class Signature:
    """A serving signature of a SavedModel."""

    name: str
    method: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @property
    def takes_serialized_examples(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0].dtype == "DT_STRING"

    @property
    def output_aliases(self) -> tuple[str, ...]:
        return tuple(output.alias for output in self.outputs)


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


def serving_signature(uri: str, signature_name: str) -> Signature:
    """The signature RunInference will call, checked to take one DT_STRING input of serialized Examples."""
    by_tags = signatures_by_tags(read_saved_model(uri))
    serving = [signatures for tags, signatures in by_tags.items() if SERVE_TAG in tags]
    if not serving:
        raise ParameterError(f"model {uri} has no MetaGraph tagged {SERVE_TAG!r}; tag sets found: {list(by_tags)}")
    signatures = {signature.name: signature for signature in serving[0]}
    if signature_name not in signatures:
        raise ParameterError(
            f"model {uri} has no signature {signature_name!r}; signatures found: {', '.join(signatures) or 'none'}"
        )
    signature = signatures[signature_name]
    if not signature.takes_serialized_examples:
        found = ", ".join(f"{i.alias} ({i.dtype})" for i in signature.inputs) or "none"
        raise ParameterError(
            f"model {uri} has no serving signature taking a serialized tf.Example (one DT_STRING input): "
            f"signature {signature_name!r} takes {found}. Wrap it with `python -m tools.model add-signature`"
        )
    if not signature.outputs:
        raise ParameterError(f"model {uri}: signature {signature_name!r} has no outputs")
    unbatched = [output.alias for output in signature.outputs if output.shape == ()]
    if unbatched:
        raise ParameterError(
            f"model {uri}: signature {signature_name!r} output(s) {', '.join(unbatched)} are scalars, without the "
            "batch dimension RunInference needs to give each example its own value"
        )
    return signature
