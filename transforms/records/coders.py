"""Beam's coder for a parsed Record: its size estimated from its bytes, without encoding it.

Records travel in batches, one element each, and Beam samples the size of elements as they pass: for a
batch of NamedTuples its default coder pickles every record of the sampled batch, which cost more than
parsing them. Registered for Record, this coder makes a batch (typed `RECORD_BATCH`) a list of Records
whose size is a sum of lengths. Where a runner does encode one (between stages), it is pickled, as Beam's
default coder pickles it: text read from a JSON escape may hold a lone surrogate, which UTF-8 cannot.
"""

from __future__ import annotations

import pickle

import apache_beam as beam
from apache_beam import typehints

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

# The element type of a batch of Records: Beam codes it as a list, each record with RecordCoder.
RECORD_BATCH = typehints.List[Record]
