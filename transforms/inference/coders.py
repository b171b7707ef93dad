"""Beam's coders for the batches on their way through the models: sized from their lengths, never pickled to be.

As for Records (transforms/records/coders.py): a batch is one element, and Beam's element-size sampling pickles
whatever its coder cannot size, a whole batch of records each time it samples one. These coders sum lengths, of
a few records of a batch (`sampled_size`): summing every record's cost a tenth of the pipeline's time.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np

from transforms.inference.batches import Batch, ModelAnswer, ModelFeed, ModelOutputs
from transforms.records.coders import RecordCoder, SizedPickleCoder, sampled_size

_RECORD = RecordCoder()


def _outputs_size(outputs: ModelOutputs | None) -> int:
    if outputs is None:
        return 0
    return sum(values.nbytes for values in outputs.arrays.values()) + sampled_size(outputs.logs or (), len)


def input_size(value) -> int:
    """A serialized Example's bytes; named tensors' array bytes; a JSON instance's values, at 16 bytes each."""
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(_value_size(item) for item in value.values())
    return 64


def _value_size(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    return 16 * len(value) if isinstance(value, (list, str)) else 16


def batch_size_estimate(batch: Batch) -> int:
    """Its records' estimates, its outputs' bytes, and its Examples."""
    records = sampled_size(batch.records, _RECORD.estimate_size)
    examples = sampled_size(batch.examples or (), len)
    return records + examples + sum(_outputs_size(outputs) for outputs in batch.outputs)


class BatchCoder(SizedPickleCoder):
    def estimate_size(self, batch: Batch) -> int:
        return batch_size_estimate(batch)

    def to_type_hint(self):
        return Batch


class ModelFeedCoder(SizedPickleCoder):
    def estimate_size(self, feed: ModelFeed) -> int:
        return batch_size_estimate(feed.batch) + sampled_size(feed.inputs, input_size)

    def to_type_hint(self):
        return ModelFeed


class ModelAnswerCoder(SizedPickleCoder):
    def estimate_size(self, answer: ModelAnswer) -> int:
        return batch_size_estimate(answer.batch) + _outputs_size(answer.outputs)

    def to_type_hint(self):
        return ModelAnswer


for _type, _coder in ((Batch, BatchCoder), (ModelFeed, ModelFeedCoder), (ModelAnswer, ModelAnswerCoder)):
    beam.coders.registry.register_coder(_type, _coder)
