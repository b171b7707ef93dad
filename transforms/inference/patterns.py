"""The five inference patterns, each a composition of encoding, Predict and post-processing."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import apache_beam as beam

from transforms.config import InferenceConfig, ModelSpec
from transforms.dead_letters import record_dead_letter
from transforms.inference.coders import EXAMPLE_BATCH, PENDING_BATCH
from transforms.inference.postprocess import ModelPrediction
from transforms.inference.predict import DEAD_LETTERS, Pending, Predict
from transforms.records.examples import encode_example
from transforms.records.parsing import Record

ENCODE_STAGE = "encode"
CHAIN_STAGE = "chain"


def record_example(pending: Pending) -> bytes:
    """What the first (or only) model sees: the record's own features, as a serialized Example."""
    return pending.record.model_input or encode_example(pending.record.features)


class ChainedExample:
    """multi_sequence: the record's features, `feature` set to the previous model's `output`, as an Example."""

    def __init__(self, feature: str, output: str):
        self.feature = feature
        self.output = output

    def __call__(self, pending: Pending) -> bytes:
        previous = pending.predictions[-1]
        if self.output not in previous.outputs:
            raise ValueError(f"model {previous.model} returned no output {self.output!r} to chain")
        values = previous.outputs[self.output]
        try:
            return encode_example({**pending.record.features, self.feature: values})
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"output {self.output!r} of model {previous.model} ({str(values)[:80]}) cannot be feature "
                f"{self.feature!r} of a tf.train.Example: {error}"
            ) from None


class _ModelInput(beam.DoFn):
    """A batch of Pending records in, a batch of (Pending, Example) out, and a dead letter per record not encoded.

    Each record is encoded on its own, so one that cannot be costs only itself.
    """

    def __init__(self, stage: str, example_of: Callable[[Pending], bytes]):
        self._stage = stage
        self._example_of = example_of

    def process(self, batch: list[Pending]) -> Iterable:
        examples = []
        for pending in batch:
            try:
                examples.append((pending, self._example_of(pending)))
            except Exception as error:
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, record_dead_letter(self._stage, error, pending.record))
        if examples:
            yield examples


def encode(pending: beam.PCollection, label: str, stage: str, example_of) -> tuple:
    """Batches of (Pending, serialized Example) pairs, and dead letters for records whose Example cannot be built."""
    model_input = beam.ParDo(_ModelInput(stage, example_of)).with_output_types(EXAMPLE_BATCH)
    return pending | label >> model_input.with_outputs(DEAD_LETTERS, main="examples")


def pending_batch(records: list[Record]) -> list[Pending]:
    """A batch of parsed records, each on its way to the models with no predictions yet."""
    return [Pending(record) for record in records]


class _Collected:
    def __init__(self, model_name: str):
        self._model_name = model_name

    def __call__(self, batch: list[tuple[Pending, dict]]) -> list[Pending]:
        name = self._model_name
        return [
            Pending(pending.record, (*pending.predictions, ModelPrediction(name, outputs)), pending.example)
            for pending, outputs in batch
        ]


class PredictAndCollect(beam.PTransform):
    """Batches of (Pending, Example) through one model; each Pending comes out with that model's outputs added."""

    def __init__(self, model: ModelSpec, config: InferenceConfig):
        super().__init__()
        self._model = model
        self._config = config

    def expand(self, examples: beam.PCollection):
        outputs, failures = examples | "Predict" >> Predict(
            self._model, self._config.signature_name, self._config.batching
        )
        collected = beam.Map(_Collected(self._model.name)).with_output_types(PENDING_BATCH)
        return outputs | "Collect" >> collected, failures


class PredictionLogs(beam.PTransform):
    """Pattern 1, predict: batches of records in, batches of (Pending, PredictionLog) out."""

    def __init__(self, config: InferenceConfig):
        super().__init__()
        self._config = config

    def expand(self, records: beam.PCollection):
        model = self._config.models[0]
        examples, encode_failures = encode(
            records | "Pending" >> beam.Map(pending_batch).with_output_types(PENDING_BATCH),
            "Encode",
            ENCODE_STAGE,
            record_example,
        )
        logs, failures = examples | model.name >> Predict(
            model, self._config.signature_name, self._config.batching, prediction_logs=True
        )
        return logs, (encode_failures, failures) | "DeadLetters" >> beam.Flatten()


class SequentialPredictions(beam.PTransform):
    """Patterns 2, 3 and 5: each model in turn, the next fed the previous one's output.

    With one model this is post-processing (and, with the key required, the keyed pattern): the
    key rides along in the Pending record and never reaches the model.
    """

    def __init__(self, config: InferenceConfig, chain_outputs: tuple[str, ...]):
        super().__init__()
        self._config = config
        self._chain_outputs = chain_outputs

    def expand(self, records: beam.PCollection):
        pending = records | "Pending" >> beam.Map(pending_batch).with_output_types(PENDING_BATCH)
        dead_letters = []
        for index, model in enumerate(self._config.models):
            if index == 0:
                stage, example_of = ENCODE_STAGE, record_example
            else:
                stage = CHAIN_STAGE
                example_of = ChainedExample(self._config.chain_feature, self._chain_outputs[index - 1])
            examples, encode_failures = encode(pending, f"Encode {model.name}", stage, example_of)
            pending, failures = examples | model.name >> PredictAndCollect(model, self._config)
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
    The first model that fails on a record makes it one dead letter.
    """

    def __init__(self, config: InferenceConfig):
        super().__init__()
        self._config = config

    def expand(self, records: beam.PCollection):
        examples, encode_failures = encode(
            records | "Pending" >> beam.Map(pending_batch).with_output_types(PENDING_BATCH),
            "Encode",
            ENCODE_STAGE,
            record_example,
        )
        pending = examples | "KeepExample" >> beam.Map(_keeping_example).with_output_types(PENDING_BATCH)
        dead_letters = [encode_failures]
        for model in self._config.models:
            inputs = pending | f"Input {model.name}" >> beam.Map(_with_its_example).with_output_types(EXAMPLE_BATCH)
            pending, failures = inputs | model.name >> PredictAndCollect(model, self._config)
            dead_letters.append(failures)
        return pending, dead_letters | "DeadLetters" >> beam.Flatten()


def pattern_transform(config: InferenceConfig, chain_outputs: tuple[str, ...]) -> beam.PTransform:
    """The composite PTransform of --pattern: batches of records in, (batches of results, dead letters) out."""
    if config.pattern == "predict":
        return PredictionLogs(config)
    if config.pattern == "multi_parallel":
        return ParallelPredictions(config)
    return SequentialPredictions(config, chain_outputs)
