"""Beam's coder for a parsed Record: its fields encoded without pickle, its size estimated from its bytes.

Records travel in batches, one element each, and Beam samples the size of elements as they pass: for a
batch of NamedTuples its default coder pickles every record of the sampled batch, which cost more than
parsing them. Registered for Record, this coder makes a batch (typed `RECORD_BATCH`) a list of Records
whose size is a sum of lengths, and whose encoding, where a runner needs one, is Beam's own for tuples.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam import typehints

from transforms.records.parsing import Record

_FIELDS = beam.coders.FastPrimitivesCoder()


class RecordCoder(beam.coders.Coder):
    """A Record as the tuple of its fields (text, bytes, a dict of features: all Beam encodes natively)."""

    def encode(self, record: Record) -> bytes:
        return _FIELDS.encode(tuple(record))

    def decode(self, encoded: bytes) -> Record:
        return Record(*_FIELDS.decode(encoded))

    def estimate_size(self, record: Record) -> int:
        """The record as read, twice (its raw bytes and, about as large, its features), and its model input."""
        return 2 * len(record.raw) + len(record.model_input or b"") + len(record.id) + len(record.source)

    def is_deterministic(self) -> bool:
        return False  # the features are a dict

    def to_type_hint(self):
        return Record


beam.coders.registry.register_coder(Record, RecordCoder)

# The element type of a batch of Records: Beam codes it as a list, each record with RecordCoder.
RECORD_BATCH = typehints.List[Record]
