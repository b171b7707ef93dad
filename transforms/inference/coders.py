"""Beam's coder for a Pending record on its way through the models, and the element types of its batches.

As for Records (transforms/records/coders.py): a batch is one element, and Beam's element-size sampling
pickled every Pending of a sampled batch, 5 microseconds a record, more than the rest of its way through a
model on the toy model. With this coder a batch is a list whose size is a sum of lengths.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam import typehints

from transforms.inference.predict import Pending
from transforms.records.coders import RecordCoder, SizedPickleCoder

_RECORD = RecordCoder()


class PendingCoder(SizedPickleCoder):
    """A Pending pickled where it must be encoded (as RecordCoder), sized from its bytes and output values."""

    def estimate_size(self, pending: Pending) -> int:
        """Its record's estimate, its Example, and about 8 bytes per output value of each prediction."""
        values = sum(len(values) for p in pending.predictions for values in p.outputs.values())
        return _RECORD.estimate_size(pending.record) + len(pending.example or b"") + 8 * values

    def to_type_hint(self):
        return Pending


beam.coders.registry.register_coder(Pending, PendingCoder)

# A batch of records on their way through the models, and the same paired with each one's model input.
PENDING_BATCH = typehints.List[Pending]
EXAMPLE_BATCH = typehints.List[typehints.Tuple[Pending, Any]]
