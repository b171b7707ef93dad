"""Model inference: Beam's RunInference around tfx-bsl's model handler, keyed, batched, with dead letters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, RunInference
from tfx_bsl.public.beam.run_inference import CreateModelHandler
from tfx_bsl.public.proto import model_spec_pb2

from transforms.config import Batching, ModelSpec
from transforms.dead_letters import record_dead_letter
from transforms.inference.model_cache import stage_model, stage_saved_model_proto
from transforms.inference.named_tensors import NamedTensorModelHandler
from transforms.inference.postprocess import outputs_by_example
from transforms.inference.prediction_logs import build_prediction_logs
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


class OutputsModelHandler(_DelegatingModelHandler):
    """tfx-bsl's handler without its PredictionLog post-processing: each example's outputs as plain lists.

    tfx-bsl still loads the model, resolves the signature and runs the session; only the step that
    builds one TensorProto per example per output (which the rows would read straight back) is left
    out. It was half of a pipeline's time (benchmarks/README.md).
    """

    def run_inference(self, batch: Sequence[Any], model: Any, inference_args=None) -> list[dict[str, list]]:
        serialized = [e if isinstance(e, bytes) else e.SerializeToString() for e in batch]
        return outputs_by_example(self._base._run_inference(batch, serialized, model), len(batch))


class PredictionLogModelHandler(_DelegatingModelHandler):
    """tfx-bsl's predict handler, its PredictionLogs built once per batch instead of once per example.

    tfx-bsl still loads the model, resolves the signature and runs the session; the logs are the same
    (transforms/inference/prediction_logs.py), without a `tf.make_tensor_proto` call per example per output.
    """

    def run_inference(self, batch: Sequence[Any], model: Any, inference_args=None) -> list[Any]:
        serialized = [e if isinstance(e, bytes) else e.SerializeToString() for e in batch]
        outputs = self._base._run_inference(batch, serialized, model)
        input_alias = self._base._io_tensor_spec.input_tensor_alias
        return build_prediction_logs(serialized, outputs, input_alias, self._base._signatures[0].name)


class StagedModelHandler(_DelegatingModelHandler):
    """Stages a gs:// model into the worker's local cache before the wrapped handler loads it from there."""

    def __init__(self, base: ModelHandler, uri: str, local_path: str):
        super().__init__(base)
        self._uri = uri
        self._local_path = local_path

    def load_model(self) -> Any:
        stage_model(self._uri, self._local_path)
        return self._base.load_model()


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


def model_handler(local_path: str, signature: Signature, batching: Batching, prediction_logs: bool) -> ModelHandler:
    """The engine for the signature's kind: ours for named tensors, tfx-bsl's for the others.

    tfx-bsl's own PredictionLogs are kept for classify and regress (classify_log, regress_log), which it builds
    from its Classification and Regression results.
    """
    if signature.kind == NAMED_TENSORS:
        return NamedTensorModelHandler(local_path, signature, prediction_logs)
    base = CreateModelHandler(inference_spec(local_path, signature.name, batching))
    if not prediction_logs:
        return OutputsModelHandler(base)
    return PredictionLogModelHandler(base) if signature.kind == EXAMPLES else base


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
    Out come batches of (Pending, PredictionLog) pairs with `prediction_logs`, else of (Pending, {alias: values}).
    The signature's kind picks the engine (`model_handler`); Beam's RunInference around it runs each batch as the
    source made it and pairs each example with its Pending record, so nothing needs joining back afterwards.
    """

    def __init__(self, model: ModelSpec, signature: Signature, batching: Batching, prediction_logs: bool = False):
        super().__init__()
        self._model = model
        # tfx-bsl reads the model's signatures (saved_model.pb) when its handler is built: only that file is
        # copied here, in the launcher; every worker stages the whole model into the same local path to load it.
        local_path = stage_saved_model_proto(model.uri)
        handler = model_handler(local_path, signature, batching, prediction_logs)
        self._handler = RecordBatchHandler(IsolatingModelHandler(StagedModelHandler(handler, model.uri, local_path)))

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
