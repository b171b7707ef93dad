"""Model inference: Beam's RunInference around tfx-bsl's model handler, keyed, batched, with dead letters."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference
from tfx_bsl.public.beam.run_inference import CreateModelHandler
from tfx_bsl.public.proto import model_spec_pb2

from transforms.config import Batching, ModelSpec
from transforms.dead_letters import record_dead_letter
from transforms.inference.model_cache import local_model_path, stage_model, stage_saved_model_proto
from transforms.inference.model_refresh import SERVED, LoadedModel, Refresh, ServingModel, count_model_event
from transforms.inference.named_tensors import NamedTensorModelHandler
from transforms.inference.postprocess import ModelPrediction, outputs_by_example
from transforms.inference.prediction_logs import build_prediction_logs, build_tensor_prediction_logs, with_version
from transforms.inference.signatures import EXAMPLES, NAMED_TENSORS, Signature
from transforms.records.parsing import Record

INFERENCE_STAGE = "inference"
DEAD_LETTERS = "dead_letters"


class Pending(NamedTuple):
    """A record on its way through the models, with the predictions it has collected so far.

    `example` keeps the serialized Example when several models read the same one (multi_parallel).
    """

    record: Record
    predictions: tuple = ()
    example: bytes | None = None


class InferenceFailure(Exception):
    """The model raised on this one example (found by halving its failed batch until the example stood alone)."""


class _DelegatingModelHandler(ModelHandler):
    """Delegates everything to the wrapped handler, so batching and metrics stay tfx-bsl's."""

    def __init__(self, base: ModelHandler):
        super().__init__()
        self._base = base

    def load_model(self) -> Any:
        return self._base.load_model()

    def run_inference(self, batch: Sequence[Any], model: Any, inference_args=None) -> Iterable[Any]:
        return self._base.run_inference(batch, model, inference_args)

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return self._base.get_num_bytes(batch)

    def get_metrics_namespace(self) -> str:
        return self._base.get_metrics_namespace()

    def batch_elements_kwargs(self):
        return self._base.batch_elements_kwargs()

    def get_resource_hints(self) -> dict:
        return self._base.get_resource_hints()

    def share_model_across_processes(self) -> bool:
        return self._base.share_model_across_processes()


class IsolatingModelHandler(_DelegatingModelHandler):
    """Runs a batch through the wrapped handler; if the batch fails, runs each half of it, and so on down.

    A poison example then costs only itself: its result is the InferenceFailure, and its batch-mates get
    their predictions. Halving finds one bad example of a batch of 512 in 19 model calls, not 513.
    """

    def run_inference(self, batch: Sequence[Any], model: Any, inference_args=None) -> list[Any]:
        try:
            return list(self._base.run_inference(batch, model, inference_args))
        except Exception as error:
            if len(batch) == 1:
                return [_failure(error)]
            middle = len(batch) // 2
            return self.run_inference(batch[:middle], model, inference_args) + self.run_inference(
                batch[middle:], model, inference_args
            )


def _model_outputs(loaded: LoadedModel, batch: Sequence[Any]) -> tuple[Any, dict]:
    """The batch as the model was fed it (serialized Examples, or stacked named inputs), and its raw outputs."""
    if isinstance(loaded.handler, NamedTensorModelHandler):
        return loaded.handler.run(batch, loaded.model)
    serialized = [e if isinstance(e, bytes) else e.SerializeToString() for e in batch]
    return serialized, loaded.handler._run_inference(batch, serialized, loaded.model)


class OutputsModelHandler(_DelegatingModelHandler):
    """The engine's outputs without PredictionLog post-processing: each example's outputs as a ModelPrediction.

    tfx-bsl (or, for named tensors, our own handler) still loads the model, resolves the signature and runs
    the session; only the step that builds one TensorProto per example per output (which the rows would read
    straight back) is left out. It was half of a pipeline's time (benchmarks/README.md).
    """

    def __init__(self, base: ModelHandler, model_name: str):
        super().__init__(base)
        self._model_name = model_name

    def run_inference(self, batch: Sequence[Any], model: ServingModel, inference_args=None) -> list[ModelPrediction]:
        loaded = model.current()  # this version answers for the whole call, and the predictions name it
        _, outputs = _model_outputs(loaded, batch)
        count_model_event(loaded.spec, SERVED, len(batch))
        return [
            ModelPrediction(self._model_name, example_outputs, loaded.version)
            for example_outputs in outputs_by_example(outputs, len(batch))
        ]


class PredictionLogModelHandler(_DelegatingModelHandler):
    """PredictionLogs built once per batch instead of once per example, each naming the version that answered.

    For serialized Examples and named tensors the logs are those of tfx-bsl's predict handler and TF Serving
    (transforms/inference/prediction_logs.py), without a `tf.make_tensor_proto` call per example per output;
    classify and regress signatures keep tfx-bsl's own classify_log and regress_log.
    """

    def __init__(self, base: ModelHandler, signature: Signature):
        super().__init__(base)
        self._signature = signature

    def run_inference(self, batch: Sequence[Any], model: ServingModel, inference_args=None) -> list[Any]:
        loaded = model.current()  # this version answers for the whole call, and the logs name it
        kind, name = self._signature.kind, self._signature.name
        if kind in (EXAMPLES, NAMED_TENSORS):
            inputs, outputs = _model_outputs(loaded, batch)
            if kind == NAMED_TENSORS:
                logs = build_tensor_prediction_logs(inputs, outputs, name, loaded.version)
            else:
                logs = build_prediction_logs(inputs, outputs, self._signature.inputs[0].alias, name, loaded.version)
        else:
            logs = with_version(list(loaded.handler.run_inference(batch, loaded.model)), loaded.version)
        count_model_event(loaded.spec, SERVED, len(batch))
        return logs


def engine(local_path: str, signature: Signature, batching: Batching) -> ModelHandler:
    """The handler that loads and runs one model version: ours for named tensors, tfx-bsl's for the other kinds."""
    if signature.kind == NAMED_TENSORS:
        return NamedTensorModelHandler(local_path, signature)
    return CreateModelHandler(inference_spec(local_path, signature.name, batching))


class StagedModelHandler(_DelegatingModelHandler):
    """Stages the model (a gs:// one into the worker's local cache) and loads it with an engine of its own.

    The model it returns is a ServingModel; with `refresh`, newer versions of the model's base are swapped into
    it as they appear (transforms/inference/model_refresh.py), each loaded by an engine of its own, built from
    that version's own signature (its tensor names may differ from the launch version's).
    """

    def __init__(self, model: ModelSpec, signature: Signature, batching: Batching, refresh: Refresh | None = None):
        self._model = model
        self._signature = signature
        self._batching = batching
        self._refresh = refresh
        # tfx-bsl reads the model's signatures (saved_model.pb) when its handler is built: only that file is
        # copied here, in the launcher; every worker stages the whole model into the same local path to load it.
        local_path = stage_saved_model_proto(model.uri)
        super().__init__(engine(local_path, signature, batching))

    def _load(self, model: ModelSpec) -> LoadedModel:
        local_path = stage_model(model.uri, local_model_path(model.uri))
        if model.uri == self._model.uri:
            handler = self._base
        else:
            handler = engine(local_path, self._refresh.signature_of(local_path), self._batching)
        return LoadedModel(handler, handler.load_model(), model)

    def load_model(self) -> ServingModel:
        return ServingModel(self._load(self._model), self._load, self._refresh)


class RecordBatchHandler(_DelegatingModelHandler):
    """Each element is already a batch of (Pending, example) pairs, made at the source: it is the model's batch.

    RunInference's own batching is skipped, and the whole batch comes back as one element, the records
    paired with their results, so Beam handles one element per batch on either side of the model. Its
    metrics still count examples, and the batch size metric the model's input bytes only (pickling every
    Pending record to count them cost more than the model call on the toy model).
    """

    def should_skip_batching(self) -> bool:
        return True

    def run_inference(
        self, batch: Sequence[tuple[Pending, Any]], model: Any, inference_args=None
    ) -> list[list[tuple[Pending, Any]]]:
        results = self._base.run_inference([example for _, example in batch], model, inference_args)
        return [list(zip((pending for pending, _ in batch), results, strict=True))]

    def get_num_bytes(self, batch: Sequence[tuple[Pending, Any]]) -> int:
        return self._base.get_num_bytes([example for _, example in batch])


def _failure(error: Exception) -> InferenceFailure:
    return InferenceFailure(f"{type(error).__name__}: {error_summary(error)}")


def error_summary(error: Exception) -> str:
    """The error's message without TensorFlow's wrapping ("Graph execution error:") and graph node lines."""
    lines = [line.strip() for line in str(error).splitlines()]
    kept = [line for line in lines if line and line != "Graph execution error:" and not line.startswith("[[")]
    return " ".join(kept) or repr(error)


def inference_spec(model_path: str, signature_name: str, batching: Batching) -> model_spec_pb2.InferenceSpecType:
    return model_spec_pb2.InferenceSpecType(
        saved_model_spec=model_spec_pb2.SavedModelSpec(model_path=model_path, signature_name=[signature_name]),
        batch_parameters=model_spec_pb2.BatchParameters(
            min_batch_size=batching.min_batch_size, max_batch_size=batching.max_batch_size
        ),
    )


class _SplitFailures(beam.DoFn):
    def __init__(self, model_name: str):
        self._model_name = model_name

    def process(self, batch: list[tuple[Pending, Any]]) -> Iterable[Any]:
        if not any(isinstance(result, InferenceFailure) for _, result in batch):
            yield batch  # the usual case: the model answered for every example of the batch
            return
        predictions = []
        for pending, result in batch:
            if isinstance(result, InferenceFailure):
                letter = record_dead_letter(INFERENCE_STAGE, result, pending.record, self._model_name)
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
            else:
                predictions.append((pending, result))
        if predictions:
            yield predictions


def _batch_dead_letters(failed: tuple[list, BaseException], model_name: str) -> Iterable[Any]:
    batch, error = failed
    for pending, _ in batch:
        yield record_dead_letter(INFERENCE_STAGE, error, pending.record, model_name)


class Predict(beam.PTransform):
    """Batches of (Pending, model input) through one model, and dead letters for the records it fails on.

    The model input is a serialized Example, or for a named-tensor signature a dict of the record's NumPy values.
    Out come batches of (Pending, PredictionLog) pairs with `prediction_logs`, else of (Pending, ModelPrediction).
    The signature's kind picks the engine (`engine`); Beam's RunInference around it runs each batch as the source
    made it and pairs each example with its Pending record, so nothing needs joining back afterwards. With
    `model_refresh_seconds` and a base of numbered versions, newer versions are swapped in as they appear
    (transforms/inference/model_refresh.py).
    """

    def __init__(
        self,
        model: ModelSpec,
        signature: Signature,
        batching: Batching,
        prediction_logs: bool = False,
        model_refresh_seconds: int | None = None,
        input_features: Mapping[str, str] = MappingProxyType({}),
    ):
        super().__init__()
        self._model = model
        refresh = None
        if model_refresh_seconds and model.base:
            refresh = Refresh(model_refresh_seconds, signature, signature.output_aliases, dict(input_features))
        staged = StagedModelHandler(model, signature, batching, refresh)
        if prediction_logs:
            handler = PredictionLogModelHandler(staged, signature)
        else:
            handler = OutputsModelHandler(staged, model.name)
        self._handler = RecordBatchHandler(IsolatingModelHandler(handler))

    def expand(self, examples: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        results, failed = (
            examples
            | "RunInference"
            >> RunInference(
                self._handler, metrics_namespace=f"RunInference.{self._model.name}"
            ).with_exception_handling()
        )
        predictions, failures = results | "SplitFailures" >> beam.ParDo(_SplitFailures(self._model.name)).with_outputs(
            DEAD_LETTERS, main="predictions"
        )
        batch_failures = failed.failed_inferences | "BatchFailures" >> beam.FlatMap(
            _batch_dead_letters, self._model.name
        )
        return predictions, (failures, batch_failures) | "DeadLetters" >> beam.Flatten()
