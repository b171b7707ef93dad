"""The five inference patterns, each a composition of building the models' inputs, Predict and post-processing."""

from __future__ import annotations

from typing import Any, Protocol

import apache_beam as beam
import numpy as np

from transforms.config import InferenceConfig, ModelSpec
from transforms.dead_letters import record_dead_letter
from transforms.inference.batches import Batch, ModelFeed
from transforms.inference.instances import RecordInstances
from transforms.inference.named_tensors import RecordTensors
from transforms.inference.predict import DEAD_LETTERS, Predict
from transforms.inference.signatures import NAMED_TENSORS, REMOTE, Signature
from transforms.records.examples import encode_example, with_feature
from transforms.records.parsing import Record

ENCODE_STAGE = "encode"
CHAIN_STAGE = "chain"


class ModelInputs(Protocol):
    """What a model is fed for a batch: every record's input at once, or one record's, which says why it cannot be."""

    def batch(self, batch: Batch) -> list[Any]:
        """Every record's input; raises if any record's cannot be built (each is then built alone to find which)."""

    def one(self, batch: Batch, position: int) -> Any:
        """The input of the record at `position`; raises with what is wrong with it."""


def record_example(record: Record) -> bytes:
    """What the first (or only) model sees: the record's own features, as a serialized Example."""
    return record.model_input or encode_example(record.features)


class RecordExamples:
    """Each record's serialized Example: as read from a TFRecord, or encoded from its features."""

    def batch(self, batch: Batch) -> list[bytes]:
        return [record_example(record) for record in batch.records]

    def one(self, batch: Batch, position: int) -> bytes:
        return record_example(batch.records[position])


class RecordTensorsInput:
    """What a named-tensor model sees first: the record's features as its named inputs, built a batch at a time."""

    def __init__(self, tensors: RecordTensors):
        self._tensors = tensors

    def batch(self, batch: Batch) -> list[dict[str, np.ndarray]]:
        return self._tensors.batch([record.features for record in batch.records])

    def one(self, batch: Batch, position: int) -> dict[str, np.ndarray]:
        return self._tensors(batch.records[position].features)


class ChainedInput:
    """multi_sequence: the record's features, `feature` set to the previous model's `output`, as the next model's
    input: a serialized Example, or with `build`, what `build` makes of them: a named-tensor model's inputs
    (RecordTensors), or an endpoint's JSON instance (RecordInstances), the chained one among them; a one-value
    output is chained as a scalar, as a one-value feature is read. A float32 or integer output chained into an
    Example is set in the batch's Examples a column at a time by tfx-bsl's coders (transforms/records/examples.py),
    without a features dict per record.
    """

    def __init__(self, feature: str, output: str, build: RecordTensors | RecordInstances | None = None):
        self.feature = feature
        self.output = output
        self._build = build

    def _previous(self, batch: Batch):
        previous = batch.outputs[-1]
        if self.output not in previous.arrays:
            raise ValueError(
                f"model {previous.model} returned no output {self.output!r} to chain; its outputs: "
                f"{', '.join(sorted(previous.arrays))} (choose one with --chain_output)"
            )
        return previous

    def batch(self, batch: Batch) -> list[Any]:
        previous = self._previous(batch)
        values = previous.arrays[self.output]
        if self._build is None and values.size:
            try:
                examples = [record_example(record) for record in batch.records]
                return with_feature(examples, self.feature, values.reshape(len(batch), -1))
            except ValueError:
                pass  # a dtype or a batch tfx-bsl's coders do not take: each record's features are merged below
        chained = previous.values(len(batch))[self.output]
        return [self._input(batch, position, chained[position]) for position in range(len(batch))]

    def one(self, batch: Batch, position: int) -> Any:
        previous = self._previous(batch)
        return self._input(batch, position, previous.take([position]).values(1)[self.output][0])

    def _input(self, batch: Batch, position: int, values: list) -> Any:
        features = {**batch.records[position].features, self.feature: values[0] if len(values) == 1 else values}
        try:
            return self._build(features) if self._build else encode_example(features)
        except (TypeError, ValueError) as error:
            target = {RecordTensors: "the next model's inputs", RecordInstances: "the endpoint's instance"}.get(
                type(self._build), "a tf.train.Example"
            )
            raise ValueError(
                f"output {self.output!r} of model {batch.outputs[-1].model} ({str(values)[:80]}) cannot be feature "
                f"{self.feature!r} of {target}: {error}"
            ) from None


def first_input(signature: Signature, config: InferenceConfig) -> ModelInputs:
    """What a model fed straight from the record sees: its Example, its named tensors, or its JSON instance."""
    if signature.kind == NAMED_TENSORS:
        return RecordTensorsInput(RecordTensors(signature, config.input_features))
    if signature.kind == REMOTE:
        return RecordInstances(config.input_features)
    return RecordExamples()


def chained_input(signature: Signature, config: InferenceConfig, output: str) -> ChainedInput:
    """What a model after the first in multi_sequence sees: the previous model's `output` chained in."""
    build = None
    if signature.kind == NAMED_TENSORS:
        build = RecordTensors(signature, config.input_features)
    elif signature.kind == REMOTE:
        build = RecordInstances(config.input_features)
    return ChainedInput(config.chain_feature, output, build)


class ModelFeeds(beam.DoFn):
    """A batch in, the batch fed its model's inputs out (a ModelFeed), and a dead letter per record not fed.

    The batch's inputs are built at once; if one record's cannot be, each is built on its own, so that it costs
    only itself. Its dead letter names the model whose input it was, when the input is one model's alone
    (`model_name`).
    """

    def __init__(self, stage: str, inputs: ModelInputs, model_name: str | None = None):
        self._stage = stage
        self._inputs = inputs
        self._model_name = model_name

    def process(self, batch: Batch):
        try:
            yield ModelFeed(batch, self._inputs.batch(batch))
            return
        except Exception:
            pass  # some record does not fit: each is built on its own below, to find which
        inputs, kept = [], []
        for position, record in enumerate(batch.records):
            try:
                inputs.append(self._inputs.one(batch, position))
            except Exception as error:
                letter = record_dead_letter(self._stage, error, record, self._model_name)
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
                continue
            kept.append(position)
        if kept:
            yield ModelFeed(batch.take(kept), inputs)


def encode(
    batches: beam.PCollection, label: str, stage: str, inputs: ModelInputs, model_name: str | None = None
) -> tuple:
    """Batches fed their model's inputs (ModelFeed), and dead letters for records whose input cannot be built."""
    model_input = beam.ParDo(ModelFeeds(stage, inputs, model_name)).with_output_types(ModelFeed)
    return batches | label >> model_input.with_outputs(DEAD_LETTERS, main="feeds")


def batched(records: list[Record]) -> Batch:
    """A batch of parsed records, on its way to the models with no outputs yet."""
    return Batch(records)


def _predict(model: ModelSpec, signature: Signature, config: InferenceConfig, prediction_logs: bool = False) -> Predict:
    return Predict(
        model,
        signature,
        config.batching,
        prediction_logs=prediction_logs,
        model_refresh_seconds=config.model_refresh_seconds,
        input_features=config.input_features,
        remote=config.remote,
        model_copies=config.model_copies,
    )


class PredictionLogs(beam.PTransform):
    """Pattern 1, predict: batches of records in, batches with each record's serialized PredictionLog out."""

    def __init__(self, config: InferenceConfig, signature: Signature):
        super().__init__()
        self._config = config
        self._signature = signature

    def expand(self, records: beam.PCollection):
        model = self._config.models[0]
        batches = records | "Batch" >> beam.Map(batched).with_output_types(Batch)
        inputs = first_input(self._signature, self._config)
        feeds, encode_failures = encode(batches, "Encode", ENCODE_STAGE, inputs, model.name)
        logs, failures = feeds | model.name >> _predict(model, self._signature, self._config, prediction_logs=True)
        return logs, (encode_failures, failures) | "DeadLetters" >> beam.Flatten()


class SequentialPredictions(beam.PTransform):
    """Patterns 2, 3 and 5: each model in turn, the next fed the previous one's output.

    With one model this is post-processing (and, with the key required, the keyed pattern): the
    key rides along in the batch's records and never reaches the model.
    """

    def __init__(self, config: InferenceConfig, chain_outputs: tuple[str, ...], signatures: tuple[Signature, ...]):
        super().__init__()
        self._config = config
        self._chain_outputs = chain_outputs
        self._signatures = signatures

    def expand(self, records: beam.PCollection):
        batches = records | "Batch" >> beam.Map(batched).with_output_types(Batch)
        dead_letters = []
        for index, (model, signature) in enumerate(zip(self._config.models, self._signatures, strict=True)):
            if index == 0:
                stage, inputs = ENCODE_STAGE, first_input(signature, self._config)
            else:
                stage = CHAIN_STAGE
                inputs = chained_input(signature, self._config, self._chain_outputs[index - 1])
            feeds, encode_failures = encode(batches, f"Encode {model.name}", stage, inputs, model.name)
            batches, failures = feeds | model.name >> _predict(model, signature, self._config)
            dead_letters += [encode_failures, failures]
        return batches, dead_letters | "DeadLetters" >> beam.Flatten()


# Models fed inputs of their own, built just before them, rather than the Example every other model shares.
_OWN_INPUTS = (NAMED_TENSORS, REMOTE)


def _keeping_examples(feed: ModelFeed) -> Batch:
    return feed.batch.with_examples(feed.inputs)


def _fed_its_examples(batch: Batch) -> ModelFeed:
    return ModelFeed(batch, batch.examples)


class ParallelPredictions(beam.PTransform):
    """Pattern 4, multi_parallel: every model on the same Example, predictions in model order.

    Each batch is encoded once and carries its Examples and its models' outputs from model to model in
    one fused pass, so its results are "joined" without a shuffle or state, records with equal keys
    can never mix, and a record is complete the moment its last model answers (streaming included).
    The first model that fails on a record makes it one dead letter. A named-tensor model's inputs (or an
    endpoint's instances) are built just before it, as each such model takes its own; a record whose inputs cannot
    be is an `encode` dead letter.
    """

    def __init__(self, config: InferenceConfig, signatures: tuple[Signature, ...]):
        super().__init__()
        self._config = config
        self._signatures = signatures

    def expand(self, records: beam.PCollection):
        batches = records | "Batch" >> beam.Map(batched).with_output_types(Batch)
        dead_letters = []
        if any(signature.kind not in _OWN_INPUTS for signature in self._signatures):
            feeds, encode_failures = encode(batches, "Encode", ENCODE_STAGE, RecordExamples())
            batches = feeds | "KeepExample" >> beam.Map(_keeping_examples).with_output_types(Batch)
            dead_letters.append(encode_failures)
        for model, signature in zip(self._config.models, self._signatures, strict=True):
            if signature.kind in _OWN_INPUTS:
                tensors = first_input(signature, self._config)
                feeds, encode_failures = encode(batches, f"Encode {model.name}", ENCODE_STAGE, tensors, model.name)
                dead_letters.append(encode_failures)
            else:
                feeds = batches | f"Input {model.name}" >> beam.Map(_fed_its_examples).with_output_types(ModelFeed)
            batches, failures = feeds | model.name >> _predict(model, signature, self._config)
            dead_letters.append(failures)
        return batches, dead_letters | "DeadLetters" >> beam.Flatten()


def pattern_transform(
    config: InferenceConfig, chain_outputs: tuple[str, ...], signatures: tuple[Signature, ...]
) -> beam.PTransform:
    """The composite PTransform of --pattern: batches of records in, (batches of results, dead letters) out.

    `signatures` are the models' checked serving signatures, in model order: their kinds say what each is fed.
    """
    if config.pattern == "predict":
        return PredictionLogs(config, signatures[0])
    if config.pattern == "multi_parallel":
        return ParallelPredictions(config, signatures)
    return SequentialPredictions(config, chain_outputs, signatures)
