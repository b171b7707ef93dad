"""Model inference: Beam's RunInference around tfx-bsl's model handler, keyed, batched, with dead letters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference
from tfx_bsl.public.beam.run_inference import CreateModelHandler
from tfx_bsl.public.proto import model_spec_pb2

from transforms.config import Batching, ModelSpec, RemoteCalls
from transforms.dead_letters import record_dead_letter
from transforms.inference import coders  # noqa: F401 -- registers the coders of the batch types below
from transforms.inference.batches import Batch, InferenceFailure, ModelAnswer, ModelFeed, ModelOutputs, joined
from transforms.inference.model_cache import local_model_path, stage_model, stage_saved_model_proto
from transforms.inference.model_refresh import SERVED, LoadedModel, Refresh, ServingModel, count_model_event
from transforms.inference.named_tensors import NamedTensorModelHandler
from transforms.inference.postprocess import check_batch_dimension
from transforms.inference.prediction_logs import (
    serialized_prediction_logs,
    serialized_tensor_prediction_logs,
    with_version,
)
from transforms.inference.shared_graphs import SharedGraphs
from transforms.inference.signatures import EXAMPLES, NAMED_TENSORS, Signature

INFERENCE_STAGE = "inference"
DEAD_LETTERS = "dead_letters"


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


def isolated(
    run: Callable[[Sequence[Any]], ModelOutputs], inputs: Sequence[Any], offset: int = 0
) -> tuple[list[ModelOutputs], list[tuple[int, InferenceFailure]]]:
    """`run` on a batch of inputs; if the batch fails, on each half of it, and so on down.

    A poison example then costs only itself: it comes back as an InferenceFailure at its position, and its
    batch-mates' outputs come back in order, a part per successful call. Halving finds one bad example of a
    batch of 512 in 19 model calls, not 513.
    """
    try:
        return [run(inputs)], []
    except Exception as error:
        if len(inputs) == 1:
            return [], [(offset, _failure(error))]
    middle = len(inputs) // 2
    head, head_failures = isolated(run, inputs[:middle], offset)
    tail, tail_failures = isolated(run, inputs[middle:], offset + middle)
    return head + tail, head_failures + tail_failures


def _model_outputs(loaded: LoadedModel, batch: Sequence[Any]) -> tuple[Any, dict]:
    """The batch as the model was fed it (serialized Examples, or stacked named inputs), and its raw outputs."""
    if isinstance(loaded.handler, NamedTensorModelHandler):
        return loaded.handler.run(batch, loaded.model)
    serialized = [e if isinstance(e, bytes) else e.SerializeToString() for e in batch]
    return serialized, loaded.handler._run_inference(batch, serialized, loaded.model)


class OutputArrays:
    """A model's answer as its output arrays, checked to hold a row per example.

    tfx-bsl (or, for named tensors, our own handler) still loads the model, resolves the signature and runs
    the session; only its step that builds one TensorProto per example per output (which the rows would read
    straight back) is left out: it was half of a pipeline's time (benchmarks/README.md).
    """

    def __init__(self, model_name: str):
        self._model_name = model_name

    def __call__(self, loaded: LoadedModel, inputs: Sequence[Any]) -> ModelOutputs:
        _, outputs = _model_outputs(loaded, inputs)
        check_batch_dimension(outputs, len(inputs))
        return ModelOutputs(self._model_name, loaded.version, outputs)


class SerializedPredictionLogs:
    """A model's answer as each example's serialized PredictionLog, naming the version that answered.

    For serialized Examples and named tensors the logs are those of tfx-bsl's predict handler and TF Serving
    (transforms/inference/prediction_logs.py), built once per batch without a `tf.make_tensor_proto` call per
    example per output, and serialized as they are built; classify and regress signatures keep tfx-bsl's own
    classify_log and regress_log. The sink writes them as they are.
    """

    def __init__(self, model_name: str, signature: Signature):
        self._model_name = model_name
        self._signature = signature

    def __call__(self, loaded: LoadedModel, inputs: Sequence[Any]) -> ModelOutputs:
        kind, name = self._signature.kind, self._signature.name
        if kind == NAMED_TENSORS:
            fed, outputs = _model_outputs(loaded, inputs)
            logs = serialized_tensor_prediction_logs(fed, outputs, name, loaded.version)
        elif kind == EXAMPLES:
            fed, outputs = _model_outputs(loaded, inputs)
            logs = serialized_prediction_logs(fed, outputs, self._signature.inputs[0].alias, name, loaded.version)
        else:
            proto_logs = with_version(list(loaded.handler.run_inference(inputs, loaded.model)), loaded.version)
            logs = [log.SerializeToString() for log in proto_logs]
        return ModelOutputs(self._model_name, loaded.version, {}, tuple(logs))


def engine(local_path: str, signature: Signature, batching: Batching) -> ModelHandler:
    """The handler that loads and runs one model version: ours for named tensors, tfx-bsl's for the other kinds."""
    if signature.kind == NAMED_TENSORS:
        return NamedTensorModelHandler(local_path, signature)
    return CreateModelHandler(inference_spec(local_path, signature.name, batching))


class StagedModelHandler(_DelegatingModelHandler):
    """Stages the model (a gs:// one into the worker's local cache) and loads it with an engine of its own.

    The model it returns is a ServingModel; with `refresh`, newer versions of the model's base are swapped into
    it as they appear (transforms/inference/model_refresh.py), each loaded by an engine of its own, built from
    that version's own signature (its tensor names may differ from the launch version's). With `graphs` (routed
    models), a version whose graph another loaded model has shares that model's session
    (transforms/inference/shared_graphs.py).
    """

    def __init__(
        self,
        model: ModelSpec,
        signature: Signature,
        batching: Batching,
        refresh: Refresh | None = None,
        graphs: SharedGraphs | None = None,
    ):
        self._model = model
        self._signature = signature
        self._batching = batching
        self._refresh = refresh
        self._graphs = graphs
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
        if self._graphs is None:
            return LoadedModel(handler, handler.load_model(), model)
        return LoadedModel(handler, self._graphs.load(local_path, handler.load_model), model)

    def load_model(self) -> ServingModel:
        return ServingModel(self._load(self._model), self._load, self._refresh)


class IsolatedAnswer:
    """A model's answer to a batch, each example it fails on `isolated`: (answers in parts, failures by position).

    A class, not a closure, because with --model_copies it is pickled to the process holding the model.
    """

    def __init__(self, answer: Callable[[LoadedModel, Sequence[Any]], ModelOutputs]):
        self._answer = answer

    def __call__(self, loaded: LoadedModel, inputs: Sequence[Any]):
        return isolated(lambda part: self._answer(loaded, part), inputs)


def count_events(counters: list[tuple[str, str]]) -> None:
    """Counters a model handed back, (namespace, name) each, counted here, in the DoFn that asked it."""
    for namespace, name in counters:
        beam.metrics.Metrics.counter(namespace, name).inc()


class BatchModelHandler(_DelegatingModelHandler):
    """Each element is a batch the source made (a ModelFeed): it is the model's batch, and one ModelAnswer comes out.

    RunInference's own batching is skipped, so Beam handles one element per batch on either side of the model.
    The version serving when the batch starts answers for all of it, halves included, and its outputs name it.
    Its metrics still count examples, and the batch size metric the model's input bytes only. With `model_copies`,
    the model is Beam's large-model kind: that many copies per worker machine, shared by its SDK processes.
    """

    def __init__(
        self,
        staged: StagedModelHandler,
        answer: Callable[[LoadedModel, Sequence[Any]], ModelOutputs],
        model_copies: int | None = None,
    ):
        super().__init__(staged)
        self._answer = IsolatedAnswer(answer)
        self._model_copies = model_copies

    def should_skip_batching(self) -> bool:
        return True

    def share_model_across_processes(self) -> bool:
        return self._model_copies is not None

    def model_copies(self) -> int:
        return self._model_copies or 1

    def run_inference(self, feed: ModelFeed, model: ServingModel, inference_args=None) -> list[ModelAnswer]:
        (parts, failures), spec, events = model.served(self._answer, feed.inputs)
        count_events(events)
        count_model_event(spec, SERVED, len(feed) - len(failures))
        return [ModelAnswer(feed.batch, joined(parts), tuple(failures))]

    def get_num_bytes(self, feed: ModelFeed) -> int:
        return self._base.get_num_bytes(feed.inputs)


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


class Answered(beam.DoFn):
    """A model's answer in, the batch with its outputs out; each record the model failed on, a dead letter."""

    def __init__(self, model_name: str):
        self._model_name = model_name

    def process(self, answer: ModelAnswer) -> Iterable[Any]:
        batch = answer.batch
        if not answer.failures:
            yield batch.answered(answer.outputs)  # the usual case: the model answered for every record
            return
        for position, failure in answer.failures:
            letter = record_dead_letter(INFERENCE_STAGE, failure, batch.records[position], self._model_name)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        failed = {position for position, _ in answer.failures}
        kept = [position for position in range(len(batch)) if position not in failed]
        if kept:
            yield batch.take(kept).answered(answer.outputs)


def batch_dead_letters(failed: tuple[ModelFeed, BaseException], model_name: str) -> Iterable[Any]:
    """A dead letter naming the model for each record of a batch that failed as a whole (RunInference's failure)."""
    feed, error = failed
    for record in feed.batch.records:
        yield record_dead_letter(INFERENCE_STAGE, error, record, model_name)


class Predict(beam.PTransform):
    """Fed batches (ModelFeed) through one model: out come the batches with its outputs, and a dead letter per
    record it fails on.

    Each input is a serialized Example, or for a named-tensor signature a dict of the record's NumPy values. With
    `prediction_logs` the outputs are each record's serialized PredictionLog, else the model's output arrays. The
    signature's kind picks the engine (`engine`); Beam's RunInference around it runs each batch as the source made
    it, and the outputs stay beside their records, so nothing needs joining back afterwards. With
    `model_refresh_seconds` and a base of numbered versions, newer versions are swapped in as they appear
    (transforms/inference/model_refresh.py). A Vertex AI endpoint is fed JSON instances and called by
    EndpointModelHandler instead (transforms/inference/remote_predict.py), `remote` saying how.
    """

    def __init__(
        self,
        model: ModelSpec,
        signature: Signature,
        batching: Batching,
        prediction_logs: bool = False,
        model_refresh_seconds: int | None = None,
        input_features: Mapping[str, str] = MappingProxyType({}),
        remote: RemoteCalls = RemoteCalls(),
        model_copies: int | None = None,
    ):
        super().__init__()
        self._model = model
        if model.remote:
            # Imported here: google-cloud-aiplatform's clients cost every other job its import time and memory.
            from transforms.inference.remote_predict import EndpointModelHandler

            self._handler = EndpointModelHandler(model, remote, prediction_logs)
            return
        refresh = None
        if model_refresh_seconds and model.base:
            refresh = Refresh(model_refresh_seconds, signature, signature.output_aliases, dict(input_features))
        staged = StagedModelHandler(model, signature, batching, refresh)
        answer = SerializedPredictionLogs(model.name, signature) if prediction_logs else OutputArrays(model.name)
        self._handler = BatchModelHandler(staged, answer, model_copies)

    def expand(self, feeds: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        answers, failed = (
            feeds
            | "RunInference"
            >> RunInference(
                self._handler, metrics_namespace=f"RunInference.{self._model.name}"
            ).with_exception_handling()
        )
        # RunInference's output is untyped, and Beam would pickle whole sampled batches to size them: typed, the
        # ModelAnswer coder sizes one from its lengths (transforms/inference/coders.py).
        answers.element_type = ModelAnswer
        batches, failures = answers | "SplitFailures" >> beam.ParDo(Answered(self._model.name)).with_outputs(
            DEAD_LETTERS, main="batches"
        )
        batches.element_type = Batch
        batch_failures = failed.failed_inferences | "BatchFailures" >> beam.FlatMap(
            batch_dead_letters, self._model.name
        )
        return batches, (failures, batch_failures) | "DeadLetters" >> beam.Flatten()
