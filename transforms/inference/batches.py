"""A batch of records on its way through the models: the records, and each model's outputs as arrays over them.

A batch is one element from parsing to the sink. A model's inputs are built for the whole batch, its outputs stay
the arrays it returned (a row per record), and rows and PredictionLogs are made from those columns at the sink:
nothing is built per record per model on the way (issue 15; benchmarks/README.md has the profile).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from transforms.inference.postprocess import output_values
from transforms.records.parsing import Record


class ModelOutputs(NamedTuple):
    """One model's answer for a batch: output alias -> array with the batch dimension first, and the version.

    `version` is the numbered version directory that computed them (transforms/inference/model_versions.py), None
    for a plain SavedModel directory. The predict pattern's answer is each record's serialized PredictionLog
    (`logs`) instead of arrays.
    """

    model: str
    version: str | None
    arrays: Mapping[str, np.ndarray]
    logs: tuple[bytes, ...] | None = None

    def take(self, positions: Sequence[int]) -> ModelOutputs:
        """The outputs of the records at `positions` (in that order)."""
        index = np.asarray(positions, dtype=np.intp)
        logs = None if self.logs is None else tuple(self.logs[i] for i in positions)
        return self._replace(arrays={alias: values[index] for alias, values in self.arrays.items()}, logs=logs)

    def values(self, size: int) -> dict[str, list[list]]:
        """Per output alias, each record's values as a list of Python numbers or text, as rows hold them."""
        return output_values(self.arrays, size)


def joined(parts: Sequence[ModelOutputs]) -> ModelOutputs | None:
    """Answers for consecutive parts of a batch (a failed batch's halves, in order) as one; None when there are none."""
    if len(parts) <= 1:
        return parts[0] if parts else None
    first = parts[0]
    arrays = {alias: np.concatenate([part.arrays[alias] for part in parts]) for alias in first.arrays}
    logs = None if first.logs is None else tuple(log for part in parts for log in part.logs)
    return first._replace(arrays=arrays, logs=logs)


class Batch:
    """Records, the outputs of each model that has answered for all of them (in model order), and their Examples.

    `examples` keeps each record's serialized Example when several models read the same one (multi_parallel).
    """

    __slots__ = ("examples", "outputs", "records")

    def __init__(
        self, records: list[Record], outputs: tuple[ModelOutputs, ...] = (), examples: list[Any] | None = None
    ):
        self.records = records
        self.outputs = outputs
        self.examples = examples

    def __len__(self) -> int:
        return len(self.records)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Batch) and _state(self) == _state(other)

    def __repr__(self) -> str:
        return f"Batch({len(self)} records, outputs of {[o.model for o in self.outputs]})"

    def __reduce__(self):
        return Batch, (self.records, self.outputs, self.examples)

    def take(self, positions: Sequence[int]) -> Batch:
        """The records at `positions`, with their outputs and Examples."""
        if len(positions) == len(self.records):
            return self
        examples = None if self.examples is None else [self.examples[i] for i in positions]
        outputs = tuple(outputs.take(positions) for outputs in self.outputs)
        return Batch([self.records[i] for i in positions], outputs, examples)

    def answered(self, outputs: ModelOutputs) -> Batch:
        """The batch with one more model's outputs, one row per record."""
        return Batch(self.records, (*self.outputs, outputs), self.examples)

    def with_examples(self, examples: list[Any]) -> Batch:
        return Batch(self.records, self.outputs, examples)


def _state(batch: Batch) -> tuple:
    outputs = [
        (o.model, o.version, o.logs, {alias: values.tolist() for alias, values in o.arrays.items()})
        for o in batch.outputs
    ]
    return batch.records, outputs, batch.examples


class ModelFeed:
    """A batch with what its model is fed, one input per record (a serialized Example, or named NumPy inputs).

    Its length is its number of inputs: RunInference counts the examples of a batch by it.
    """

    __slots__ = ("batch", "inputs")

    def __init__(self, batch: Batch, inputs: list[Any]):
        self.batch = batch
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.inputs)

    def __reduce__(self):
        return ModelFeed, (self.batch, self.inputs)


class InferenceFailure(Exception):
    """The model failed on this one record: its error, as the record's `inference` dead letter says it."""


class ModelAnswer(NamedTuple):
    """What a model made of a fed batch: outputs for the records it answered (in order), and each failure by position.

    `outputs` is None when it answered none of them.
    """

    batch: Batch
    outputs: ModelOutputs | None
    failures: tuple[tuple[int, Exception], ...] = ()
