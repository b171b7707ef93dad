"""The five inference patterns, each a composition of encoding, Predict and post-processing."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import apache_beam as beam

from transforms.config import InferenceConfig, ModelSpec
from transforms.dead_letters import record_dead_letter
from transforms.inference.coders import EXAMPLE_BATCH, PENDING_BATCH
from transforms.inference.named_tensors import ModelInput, RecordTensors
from transforms.inference.postprocess import ModelPrediction
from transforms.inference.predict import DEAD_LETTERS, Pending, Predict
from transforms.inference.signatures import NAMED_TENSORS, Signature
from transforms.records.examples import encode_example
from transforms.records.parsing import Record

ENCODE_STAGE = "encode"
CHAIN_STAGE = "chain"


def record_example(pending: Pending) -> bytes:
    """What the first (or only) model sees: the record's own features, as a serialized Example."""
    return pending.record.model_input or encode_example(pending.record.features)


class RecordTensorsInput:
    """What a named-tensor model sees first: the record's features as its named inputs."""

    def __init__(self, tensors: RecordTensors):
        self._tensors = tensors

    def __call__(self, pending: Pending) -> ModelInput:
        return self._tensors(pending.record.features)

    def batch(self, batch: list[Pending]) -> list[ModelInput]:
        return self._tensors.batch([pending.record.features for pending in batch])


class ChainedExample:
    """multi_sequence: the record's features, `feature` set to the previous model's `output`, as an Example.

    With `tensors`, the features become a named-tensor model's inputs instead, the chained one among them.
    """

    def __init__(self, feature: str, output: str, tensors: RecordTensors | None = None):
        self.feature = feature
        self.output = output
        self._tensors = tensors

    def __call__(self, pending: Pending) -> bytes | ModelInput:
        previous = pending.predictions[-1]
        if self.output not in previous.outputs:
            raise ValueError(f"model {previous.model} returned no output {self.output!r} to chain")
        values = previous.outputs[self.output]
        features = {**pending.record.features, self.feature: values}
        try:
            return self._tensors(features) if self._tensors else encode_example(features)
        except (TypeError, ValueError) as error:
            target = "the next model's inputs" if self._tensors else "a tf.train.Example"
            raise ValueError(
                f"output {self.output!r} of model {previous.model} ({str(values)[:80]}) cannot be feature "
                f"{self.feature!r} of {target}: {error}"
            ) from None


def first_input(signature: Signature, config: InferenceConfig) -> Callable[[Pending], bytes | ModelInput]:
    """What a model fed straight from the record sees: its Example, or its named tensors."""
    if signature.kind == NAMED_TENSORS:
        return RecordTensorsInput(RecordTensors(signature, config.input_features))
    return record_example


def chained_input(signature: Signature, config: InferenceConfig, output: str) -> ChainedExample:
    """What a model after the first in multi_sequence sees: the previous model's `output` chained in."""
    tensors = RecordTensors(signature, config.input_features) if signature.kind == NAMED_TENSORS else None
    return ChainedExample(config.chain_feature, output, tensors)


class _ModelInput(beam.DoFn):
    """A batch of Pending records in, a batch of (Pending, Example) out, and a dead letter per record not encoded.

    Each record is encoded on its own, so one that cannot be costs only itself. Its dead letter names the model
    whose input it was, when the input is one model's alone (`model_name`).
    """

    def __init__(self, stage: str, example_of: Callable[[Pending], bytes], model_name: str | None = None):
        self._stage = stage
        self._example_of = example_of
        self._model_name = model_name

    def process(self, batch: list[Pending]) -> Iterable:
        whole_batch = getattr(self._example_of, "batch", None)
        if whole_batch is not None:  # named tensors: one NumPy conversion per input for the whole batch
            try:
                yield list(zip(batch, whole_batch(batch), strict=True))
                return
            except ValueError:
                pass  # some record does not fit: each is built on its own below, to find which
        examples = []
        for pending in batch:
            try:
                examples.append((pending, self._example_of(pending)))
            except Exception as error:
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTERS, record_dead_letter(self._stage, error, pending.record, self._model_name)
                )
        if examples:
            yield examples


def encode(pending: beam.PCollection, label: str, stage: str, example_of, model_name: str | None = None) -> tuple:
    """Batches of (Pending, serialized Example) pairs, and dead letters for records whose Example cannot be built."""
    model_input = beam.ParDo(_ModelInput(stage, example_of, model_name)).with_output_types(EXAMPLE_BATCH)
    return pending | label >> model_input.with_outputs(DEAD_LETTERS, main="examples")


def pending_batch(records: list[Record]) -> list[Pending]:
    """A batch of parsed records, each on its way to the models with no predictions yet."""
    return [Pending(record) for record in records]


def _collected(batch: list[tuple[Pending, ModelPrediction]]) -> list[Pending]:
    return [
        Pending(pending.record, (*pending.predictions, prediction), pending.example) for pending, prediction in batch
    ]


class PredictAndCollect(beam.PTransform):
    """Batches of (Pending, model input) through one model; each Pending comes out with its outputs added."""

    def __init__(self, model: ModelSpec, signature: Signature, config: InferenceConfig):
        super().__init__()
        self._model = model
        self._signature = signature
        self._config = config

    def expand(self, examples: beam.PCollection):
        config = self._config
        outputs, failures = examples | "Predict" >> Predict(
            self._model,
            self._signature,
            config.batching,
            model_refresh_seconds=config.model_refresh_seconds,
            input_features=config.input_features,
        )
        return outputs | "Collect" >> beam.Map(_collected).with_output_types(PENDING_BATCH), failures


class PredictionLogs(beam.PTransform):
    """Pattern 1, predict: batches of records in, batches of (Pending, PredictionLog) out."""

    def __init__(self, config: InferenceConfig, signature: Signature):
        super().__init__()
        self._config = config
        self._signature = signature

    def expand(self, records: beam.PCollection):
        model = self._config.models[0]
        example_of = first_input(self._signature, self._config)
        examples, encode_failures = encode(
            records | "Pending" >> beam.Map(pending_batch).with_output_types(PENDING_BATCH),
            "Encode",
            ENCODE_STAGE,
            example_of,
            model.name,
        )
        logs, failures = examples | model.name >> Predict(
            model,
            self._signature,
            self._config.batching,
            prediction_logs=True,
            model_refresh_seconds=self._config.model_refresh_seconds,
            input_features=self._config.input_features,
        )
        return logs, (encode_failures, failures) | "DeadLetters" >> beam.Flatten()


class SequentialPredictions(beam.PTransform):
    """Patterns 2, 3 and 5: each model in turn, the next fed the previous one's output.

    With one model this is post-processing (and, with the key required, the keyed pattern): the
    key rides along in the Pending record and never reaches the model.
    """

    def __init__(self, config: InferenceConfig, chain_outputs: tuple[str, ...], signatures: tuple[Signature, ...]):
        super().__init__()
        self._config = config
        self._chain_outputs = chain_outputs
        self._signatures = signatures

    def expand(self, records: beam.PCollection):
        pending = records | "Pending" >> beam.Map(pending_batch).with_output_types(PENDING_BATCH)
        dead_letters = []
        for index, (model, signature) in enumerate(zip(self._config.models, self._signatures, strict=True)):
            if index == 0:
                stage, example_of = ENCODE_STAGE, first_input(signature, self._config)
            else:
                stage = CHAIN_STAGE
                example_of = chained_input(signature, self._config, self._chain_outputs[index - 1])
            examples, encode_failures = encode(pending, f"Encode {model.name}", stage, example_of, model.name)
            pending, failures = examples | model.name >> PredictAndCollect(model, signature, self._config)
            dead_letters += [encode_failures, failures]
        return pending, dead_letters | "DeadLetters" >> beam.Flatten()


def _keeping_example(batch: list[tuple[Pending, bytes]]) -> list[Pending]:
    return [pending._replace(example=example) for pending, example in batch]


def _with_its_example(batch: list[Pending]) -> list[tuple[Pending, bytes]]:
    return [(pending, pending.example) for pending in batch]


class ParallelPredictions(beam.PTransform):
    """Pattern 4, multi_parallel: every model on the same Example, predictions in model order.

    Each record is encoded once and carries its Example and its predictions from model to model in
    one fused pass, so its results are "joined" without a shuffle or state, records with equal keys
    can never mix, and a record is complete the moment its last model answers (streaming included).
    The first model that fails on a record makes it one dead letter. A named-tensor model's inputs are built
    just before it, as each such model takes its own; a record whose inputs cannot be is an `encode` dead letter.
    """

    def __init__(self, config: InferenceConfig, signatures: tuple[Signature, ...]):
        super().__init__()
        self._config = config
        self._signatures = signatures

    def expand(self, records: beam.PCollection):
        pending = records | "Pending" >> beam.Map(pending_batch).with_output_types(PENDING_BATCH)
        dead_letters = []
        if any(signature.kind != NAMED_TENSORS for signature in self._signatures):
            examples, encode_failures = encode(pending, "Encode", ENCODE_STAGE, record_example)
            pending = examples | "KeepExample" >> beam.Map(_keeping_example).with_output_types(PENDING_BATCH)
            dead_letters.append(encode_failures)
        for model, signature in zip(self._config.models, self._signatures, strict=True):
            if signature.kind == NAMED_TENSORS:
                tensors = first_input(signature, self._config)
                inputs, encode_failures = encode(pending, f"Encode {model.name}", ENCODE_STAGE, tensors, model.name)
                dead_letters.append(encode_failures)
            else:
                with_example = beam.Map(_with_its_example).with_output_types(EXAMPLE_BATCH)
                inputs = pending | f"Input {model.name}" >> with_example
            pending, failures = inputs | model.name >> PredictAndCollect(model, signature, self._config)
            dead_letters.append(failures)
        return pending, dead_letters | "DeadLetters" >> beam.Flatten()


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
