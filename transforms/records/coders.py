"""Beam's coder for a parsed Record: its size estimated from its bytes, without encoding it.

Records travel in batches, one element each, and Beam samples the size of elements as they pass: for a
batch of NamedTuples its default coder pickles every record of the sampled batch, which cost more than
parsing them. A batch is a RecordBatch, sized from the lengths of a few of its Records. Where a runner does
encode one (between stages), it is pickled, as Beam's
default coder pickles it: text read from a JSON escape may hold a lone surrogate, which UTF-8 cannot.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

import apache_beam as beam

from transforms.records.parsing import Record


class SizedPickleCoder(beam.coders.Coder):
    """Pickles where a runner must encode; subclasses size an element from its lengths, without encoding it."""

    def encode(self, value) -> bytes:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes):
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False  # features, outputs and rows hold dicts


class RecordCoder(SizedPickleCoder):
    """A Record pickled where it must be encoded, and sized from its bytes where Beam only samples its size."""

    def estimate_size(self, record: Record) -> int:
        """The record as read, twice (its raw bytes and, about as large, its features), and its model input."""
        return 2 * len(record.raw) + len(record.model_input or b"") + len(record.id) + len(record.source)

    def to_type_hint(self):
        return Record


beam.coders.registry.register_coder(Record, RecordCoder)

# Beam wants a mean element size, and locally it samples nearly every batch (the first ten elements of each
# bundle): a batch is sized from this many of its elements, evenly spread, not from every one.
SIZE_SAMPLE = 8


def sampled_size(values: Sequence[Any], size_of: Callable[[Any], int]) -> int:
    """The size of all `values`, from an even sample of at most SIZE_SAMPLE of them."""
    if len(values) <= SIZE_SAMPLE:
        return sum(map(size_of, values))
    sample = values[:: len(values) // SIZE_SAMPLE][:SIZE_SAMPLE]
    return sum(map(size_of, sample)) * len(values) // len(sample)


class RecordBatch(list):
    """A batch of parsed Records, as the parser emits it: a list, sized by RecordBatchCoder."""


_RECORD = RecordCoder()


class RecordBatchCoder(SizedPickleCoder):
    """A batch of Records pickled whole where it must be encoded, sized from a sample of its records."""

    def estimate_size(self, batch: RecordBatch) -> int:
        return sampled_size(batch, _RECORD.estimate_size)

    def to_type_hint(self):
        return RecordBatch


beam.coders.registry.register_coder(RecordBatch, RecordBatchCoder)
