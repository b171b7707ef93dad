"""Batches of Records and of Encoded rows: coded by Beam as lists, each record without pickle, sized cheaply."""

from __future__ import annotations

import apache_beam as beam
from apache_beam import typehints

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
