"""Batches of Records, Pending records and Encoded rows: coded by Beam as lists, sized without pickling each record."""

from __future__ import annotations

import apache_beam as beam
from apache_beam import typehints

from transforms.inference.coders import PENDING_BATCH, PendingCoder
from transforms.inference.postprocess import ModelPrediction
from transforms.inference.predict import Pending
from transforms.records.coders import RECORD_BATCH, RecordCoder
from transforms.records.parsing import Record
from transforms.writing.sinks import Encoded, EncodedCoder

RECORDS = [
    Record("id0", "k0", {"x": 1.5, "ids": [1, 2], "s": "é", "b": b"\xff"}, b'{"key": "k0"}', "in.jsonl"),
    Record("id1", None, {"x": 2.5}, b"\n\x0f", "in.tfrecord", model_input=b"\n\x0d"),
]


def test_a_batch_of_records_is_a_list_coded_record_by_record_and_back_unchanged():
    coder = beam.coders.registry.get_coder(RECORD_BATCH)
    assert coder == beam.coders.ListCoder(RecordCoder())
    decoded = coder.decode(coder.encode(RECORDS))
    assert decoded == RECORDS and all(type(record) is Record for record in decoded)


def test_the_size_of_a_sampled_batch_is_its_records_estimates_not_their_pickles():
    impl = beam.coders.registry.get_coder(RECORD_BATCH).get_impl()
    size, observables = impl.get_estimated_size_and_observables(RECORDS)
    record_sizes = [2 * len(r.raw) + len(r.model_input or b"") + len(r.id) + len(r.source) for r in RECORDS]
    # 4 bytes of list length, and a byte of length prefix for each record (its size under 128 bytes)
    assert size == 4 + sum(size + 1 for size in record_sizes) and not observables


def test_a_batch_of_encoded_rows_round_trips_and_is_sized_by_its_payloads():
    batch = [Encoded(b'{"key": "k"}', "id0", "k"), Encoded(b"\x00\x01", None, None)]
    coder = beam.coders.registry.get_coder(typehints.List[Encoded])
    assert coder == beam.coders.ListCoder(EncodedCoder())
    assert coder.decode(coder.encode(batch)) == batch
    size, _ = coder.get_impl().get_estimated_size_and_observables(batch)
    assert size == 4 + (12 + 3 + 1 + 1) + (2 + 1)


def test_text_utf8_cannot_hold_survives_encoding():
    """A JSON \\udc00 escape reads as a lone surrogate; the record must still cross a stage boundary intact."""
    record = Record("id", "\udc00", {"s": "\ud800"}, b'{"key": "\\udc00"}', "in.jsonl")
    coder = beam.coders.registry.get_coder(RECORD_BATCH)
    assert coder.decode(coder.encode([record])) == [record]


def test_a_batch_of_pending_records_round_trips_and_is_sized_by_its_records_and_outputs():
    pending = [
        Pending(RECORDS[0]),
        Pending(RECORDS[1], (ModelPrediction("m5", {"y": [1.0, 2.0]}), ModelPrediction("m10", {"y": [3.0]})), b"ex"),
    ]
    coder = beam.coders.registry.get_coder(PENDING_BATCH)
    assert coder == beam.coders.ListCoder(PendingCoder())
    assert coder.decode(coder.encode(pending)) == pending
    size, _ = coder.get_impl().get_estimated_size_and_observables(pending)
    records = [RecordCoder().estimate_size(p.record) for p in pending]
    assert size == 4 + (records[0] + 1) + (records[1] + 2 + 8 * 3 + 1)
